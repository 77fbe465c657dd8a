//! Differential test of postscreen: the same main.cf, master.cf services
//! (`postscreen` in front of a `pass` smtpd) and the same client sessions
//! against the real Postfix 3.7 postscreen and our hub.  Each session
//! comes from its own loopback address (127.0.0.N), as the cache is per
//! client address; the replies must match byte for byte, and postscreen's
//! log lines (ports and delays masked) must be the same lines in the same
//! order.

mod harness;
use harness::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// Session lines: `FROM addr` (first: the client's address), `GREET`
/// (read the greeting), `READ` (read a reply), `LINE` (read one line:
/// the `220-` bait), `SLEEP secs`, `SEND text`
/// (a line, no reply read), `RAW text` (escapes, no reply read), `CLOSE`;
/// anything else is a command whose reply is read.
const DRIVER: &str = r#"
import socket, sys, time
port = int(sys.argv[1])
sessions = [s.split('\n') for s in sys.stdin.read().split('\n\n') if s.strip()]
for sess in sessions:
    src = sess.pop(0).split()[1]
    s = socket.socket()
    s.bind((src, 0))
    s.settimeout(20)
    s.connect(('127.0.0.1', port))
    f = s.makefile('rb')
    out = ['FROM ' + src]
    def reply():
        lines = []
        while True:
            try:
                l = f.readline()
            except OSError:
                l = b''
            if not l:
                lines.append('<EOF>')
                break
            l = l.decode('utf-8', 'replace').rstrip('\r\n')
            lines.append(l)
            if len(l) < 4 or l[3] != '-':
                break
        return '|'.join(lines)
    def send(b):
        try:
            s.sendall(b)
        except OSError:
            pass
    for c in sess:
        if c == 'GREET' or c == 'READ':
            r = reply()
        elif c == 'LINE':
            try:
                r = f.readline().decode('utf-8', 'replace').rstrip('\r\n') or '<EOF>'
            except OSError:
                r = '<EOF>'
            if r.startswith('220-'):
                out.append('%-30s => %s' % (c, r))
                continue
        elif c.startswith('SLEEP '):
            time.sleep(float(c[6:]))
            continue
        elif c.startswith('SEND '):
            send(c[5:].encode() + b'\r\n')
            continue
        elif c.startswith('RAW '):
            send(c[4:].encode().decode('unicode_escape').encode('latin-1'))
            continue
        elif c == 'CLOSE':
            break
        else:
            send(c.encode() + b'\r\n')
            r = reply()
        out.append('%-30s => %s' % (c[:30], r))
        if r.split('|')[-1][:3] in ('221', '421', '521') or r.endswith('<EOF>'):
            break
    s.close()
    print('\n'.join(out))
    print('--')
"#;

fn drive(port: u16, sessions: &str) -> String {
    use std::io::Write;
    let mut c = Command::new("python3")
        .args(["-c", DRIVER, &port.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(sessions.as_bytes()).unwrap();
    let o = c.wait_with_output().unwrap();
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn open_dir(p: &Path) {
    std::fs::create_dir_all(p).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn main_cf(dir: &Path, extra: &str) -> String {
    format!(
        "compatibility_level = 3.6\nmyhostname = hub.mumail.test\nmydomain = mumail.test\nmydestination = mumail.test\n\
         mynetworks = 10.0.0.0/8\ninet_interfaces = loopback-only\nsmtpd_banner = $myhostname ESMTP $mail_name\n\
         local_recipient_maps =\nlocal_transport = discard:\nalias_maps =\n\
         maillog_file = {d}/maillog\nmaillog_file_prefixes = {d}\n\
         postscreen_greet_wait = 1s\n\
         postscreen_access_list = permit_mynetworks, cidr:{d}/access.cidr\n{extra}",
        d = dir.display()
    )
}

fn access(dir: &Path) {
    std::fs::write(
        dir.join("access.cidr"),
        "127.0.0.2/32 reject\n127.0.0.20/32 permit\n127.0.0.21/32 dunno\n",
    )
    .unwrap();
    std::fs::write(dir.join("footers.regexp"), "/^450 4\\.3\\.2 / \\c (come back later)\n").unwrap();
}

/// postscreen's log lines, the parts that do not change between runs,
/// grouped by connection (in the order connections first appear): when
/// a client's hangup is noticed, next to another client's connect, is
/// a race.
fn screen_lines(log: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for t in text
        .lines()
        .filter(|l| l.contains("/postscreen["))
        .filter_map(|l| l.split_once("]: ").map(|(_, t)| t.to_string()))
        .filter(|t| !t.starts_with("cache ") && !t.starts_with("warning: "))
    {
        // The connection: the first `[addr]:port` in the line.
        let key = t
            .find('[')
            .map(|i| {
                let k = &t[i..];
                k[..k.find(' ').unwrap_or(k.len())].trim_end_matches(':').to_string()
            })
            .unwrap_or_default();
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(mask(&t)),
            None => groups.push((key, vec![mask(&t)])),
        }
    }
    groups.into_iter().flat_map(|(_, v)| v).collect()
}

/// `]:1234` → `]:PORT` (and postscreen's `]1234:` → `]PORT:`),
/// `after 0.31 from` → `after T from`.
fn mask(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find(']') {
        let colon = rest[i + 1..].starts_with(':');
        let skip = if colon { 2 } else { 1 };
        out.push_str(&rest[..i + skip]);
        let after = &rest[i + skip..];
        rest = after.trim_start_matches(|c: char| c.is_ascii_digit());
        if rest.len() < after.len() {
            out.push_str("PORT");
        }
    }
    out.push_str(rest);
    let words: Vec<&str> = out.split(' ').collect();
    let mut masked = Vec::new();
    for (i, w) in words.iter().enumerate() {
        let timed = i > 0 && words[i - 1] == "after" && w.parse::<f64>().is_ok();
        masked.push(if timed { "T" } else { w });
    }
    masked.join(" ")
}

/// Runs `sessions` against both with `extra` in main.cf (`dns`: both
/// resolve through that server); returns (real replies, our replies).
fn differential(extra: &str, sessions: &str, dns: Option<&str>) -> Option<(String, String)> {
    // One at a time: the real postscreen's timers (the greet wait) are
    // only kept when it gets the CPU in time.
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    if !can_run("postscreen vs postfix", &[POSTFIX, "/usr/lib/postfix/sbin/postscreen"]) {
        return None;
    }
    let d = tempfile::tempdir().unwrap();
    open_dir(d.path());
    let pf = d.path().join("postfix");
    let pport = PostfixInstance::prepare(&pf);
    let master = std::fs::read_to_string(pf.join("master.cf")).unwrap().replace(
        &format!("127.0.0.1:{pport} inet n - n - - smtpd"),
        &format!(
            "127.0.0.1:{pport} inet n - n - 1 postscreen\nsmtpd pass - - n - - smtpd\n\
             dnsblog unix - - n - 0 dnsblog\ntlsproxy unix - - n - 0 tlsproxy"
        ),
    );
    std::fs::write(pf.join("master.cf"), master).unwrap();
    access(&pf);
    std::fs::write(
        pf.join("main.cf"),
        main_cf(
            &pf,
            &format!(
                "queue_directory = {}\ndata_directory = {}\n{extra}",
                pf.join("queue").display(),
                pf.join("data").display()
            ),
        ),
    )
    .unwrap();
    let real = {
        let _inst = PostfixInstance::start_with_dns(&pf, dns, d.path());
        wait_tcp(pport);
        let r = drive(pport, sessions);
        settle(&pf.join("maillog"));
        r
    };

    let hub = d.path().join("hub");
    open_dir(&hub);
    access(&hub);
    let hport = free_port();
    std::fs::write(
        hub.join("main.cf"),
        main_cf(&hub, &format!("queue_directory = {}\n{extra}", hub.join("queue").display())),
    )
    .unwrap();
    std::fs::write(
        hub.join("master.cf"),
        format!("127.0.0.1:{hport} inet n - n - 1 postscreen\nsmtpd pass - - n - - smtpd\ndiscard unix - - n - - discard\n"),
    )
    .unwrap();
    let ours = {
        let _p = spawn_postfix_master(&hub, dns);
        wait_tcp(hport);
        let r = drive(hport, sessions);
        settle(&hub.join("maillog"));
        r
    };
    println!("{ours}");
    if let Some(dump) = std::env::var_os("MUMAIL_POSTSCREEN_DUMP") {
        std::fs::write(Path::new(&dump).join("real.out"), &real).unwrap();
        std::fs::write(Path::new(&dump).join("ours.out"), &ours).unwrap();
        let _ = std::fs::copy(pf.join("maillog"), Path::new(&dump).join("real.log"));
        let _ = std::fs::copy(hub.join("maillog"), Path::new(&dump).join("ours.log"));
    }
    let mut diffs = Vec::new();
    let (r, o): (Vec<&str>, Vec<&str>) = (real.lines().collect(), ours.lines().collect());
    for i in 0..r.len().max(o.len()) {
        let (a, b) = (r.get(i).copied().unwrap_or("<none>"), o.get(i).copied().unwrap_or("<none>"));
        if a != b {
            diffs.push(format!("real: {a}\nours: {b}"));
        }
    }
    let (rl, ol) = (screen_lines(&pf.join("maillog")), screen_lines(&hub.join("maillog")));
    for i in 0..rl.len().max(ol.len()) {
        let (a, b) = (
            rl.get(i).map(String::as_str).unwrap_or("<none>"),
            ol.get(i).map(String::as_str).unwrap_or("<none>"),
        );
        // The client that hangs up during the greet wait (127.0.0.7):
        // the real postscreen's greet timer sometimes fires before it
        // reads the hangup, and it then says "after SMTP handshake".
        let raced = a.starts_with("HANGUP after T from [127.0.0.7]:") && a.replace("after SMTP handshake", "before SMTP handshake") == b;
        if a != b && !raced {
            diffs.push(format!("log real: {a}\nlog ours: {b}"));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}\n\nreal log:\n{}\nour log:\n{}\nour stderr:\n{}",
        diffs.len(),
        diffs.join("\n"),
        rl.join("\n"),
        ol.join("\n"),
        std::fs::read_to_string(hub.join("stderr")).unwrap_or_default()
    );
    assert!(real.matches("\n--").count() >= sessions.split("\n\n").count(), "{real}");
    Some((real, ours))
}

const ENFORCE: &str = "postscreen_greet_action = enforce\npostscreen_denylist_action = enforce\n\
    postscreen_pipelining_enable = yes\npostscreen_bare_newline_enable = yes\npostscreen_bare_newline_action = enforce\n\
    postscreen_non_smtp_command_enable = yes\n";

const ENFORCE_SESSIONS: &str = "FROM 127.0.0.20
GREET
QUIT

FROM 127.0.0.2
GREET
EHLO deny.example
MAIL FROM:<a@b.org> SIZE=10
RCPT TO:<u@mumail.test>
VRFY u
VRFY
RSET
HELO h.example
MAIL FROM:a@b.org
MAIL FROM:<c@d.org>
RCPT TO:<@r1,@r2:v@mumail.test>
RCPT TO:\"q x\"@mumail.test
RCPT TO:<>
RCPT
RCPT FROM:<x>
ETRN
ETRN mumail.test
STARTTLS
AUTH PLAIN
XCLIENT ADDR=192.0.2.1
QUIT

FROM 127.0.0.2
GREET
DATA

FROM 127.0.0.2
GREET
MAIL FROM:<a@b.org>
BDAT 10

FROM 127.0.0.2
GREET
EHLO
HELO
MAIL
MAIL TO:<x>
BDAT
DATA x
MAIL FROM:<>
DATA

FROM 127.0.0.2
GREET
NOOP
NOOP
NOOP
NOOP
NOOP
NOOP
NOOP
NOOP
NOOP
NOOP
NOOP
NOOP
NOOP
NOOP
NOOP
NOOP
NOOP
NOOP
XYZZY
NOOP
NOOP
NOOP

FROM 127.0.0.2
GREET
GET / HTTP/1.0

FROM 127.0.0.2
GREET
NOOP xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx
NOOP

FROM 127.0.0.3
LINE
SEND EHLO early.example
READ
MAIL FROM:<a@b.org>
RCPT TO:<u@mumail.test>
QUIT

FROM 127.0.0.4
GREET
EHLO good.example
MAIL FROM:<a@b.org>
RCPT TO:<u@mumail.test>
QUIT

FROM 127.0.0.4
GREET
EHLO good.example
QUIT

FROM 127.0.0.5
GREET
RAW EHLO pipe.example\\r\\nMAIL FROM:<a@b.org>\\r\\n
READ
READ
RCPT TO:<u@mumail.test>
QUIT

FROM 127.0.0.6
GREET
RAW EHLO bare.example\\n
READ
MAIL FROM:<a@b.org>
RCPT TO:<u@mumail.test>
QUIT

FROM 127.0.0.8
GREET
EHLO half.example
QUIT

FROM 127.0.0.8
GREET
QUIT

FROM 127.0.0.9
GREET
hello there

FROM 127.0.0.10
GREET
Subject: hi

FROM 127.0.0.21
GREET
SLEEP 0.2
CLOSE

FROM 127.0.0.7
SLEEP 0.4
CLOSE
";

// (The client that hangs up during the greet wait comes last: the real
// postscreen's greet timer for it can still fire after the hangup, on the
// next client's connection.)
#[test]
fn postscreen_enforce_matches_real_postfix() {
    differential(ENFORCE, ENFORCE_SESSIONS, None);
}

const DROP: &str = "postscreen_greet_action = drop\npostscreen_denylist_action = drop\n\
    postscreen_pipelining_enable = yes\npostscreen_pipelining_action = drop\n\
    postscreen_bare_newline_enable = yes\npostscreen_bare_newline_action = drop\n\
    postscreen_reject_footer = \\c (help: http://help.example/$client_address)\n\
    postscreen_reject_footer_maps = regexp:${config_directory}/footers.regexp\n\
    postscreen_command_filter = inline:{ {xyzzy=NOOP} }\n\
    postscreen_discard_ehlo_keyword_address_maps = inline:{ {127.0.0.4=etrn, dsn} }\n";

const DROP_SESSIONS: &str = "FROM 127.0.0.2
GREET
QUIT

FROM 127.0.0.3
LINE
SEND EHLO early.example
READ
QUIT

FROM 127.0.0.5
GREET
RAW EHLO pipe.example\\r\\nNOOP\\r\\n
READ
READ

FROM 127.0.0.6
GREET
RAW EHLO bare.example\\n
READ
QUIT

FROM 127.0.0.4
GREET
EHLO good.example
MAIL FROM:<a@b.org>
RCPT TO:<u@mumail.test>
VRFY u
XYZZY
QUIT
";

#[test]
fn postscreen_drop_and_footer_match_real_postfix() {
    if let Some((_, ours)) = differential(DROP, DROP_SESSIONS, None) {
        // postscreen_command_filter and postscreen_reject_footer_maps.
        assert!(ours.contains("XYZZY                          => 250 2.0.0 Ok"), "{ours}");
        assert!(
            ours.contains("=> 450 4.3.2 Service currently unavailable (come back later)"),
            "{ours}"
        );
    }
}

const IGNORE: &str = "postscreen_greet_action = ignore\npostscreen_denylist_action = ignore\n";

const IGNORE_SESSIONS: &str = "FROM 127.0.0.3
LINE
SEND EHLO early.example
READ
NOOP
QUIT

FROM 127.0.0.3
GREET
QUIT

FROM 127.0.0.2
GREET
EHLO deny.example
QUIT

FROM 127.0.0.4
GREET
QUIT

FROM 127.0.0.4
GREET
QUIT
";

#[test]
fn postscreen_ignore_matches_real_postfix() {
    if let Some((real, _)) = differential(IGNORE, IGNORE_SESSIONS, None) {
        // The early client was handed to smtpd with what it sent.
        assert!(
            real.contains("NOOP                           => 250-hub.mumail.test|250-PIPELINING"),
            "{real}"
        );
    }
}

/// dnsmasq on `server` with DNS list entries for 127.0.0.11-15.
fn dnsbl_server(dir: &Path, server: &str) -> Option<Proc> {
    const DNSMASQ: &str = "/usr/sbin/dnsmasq";
    if !can_run("postscreen dnsbl", &[POSTFIX, DNSMASQ, "/usr/bin/unshare"]) {
        return None;
    }
    let p = dnsmasq(
        dir,
        server,
        &[
            "--host-record=11.0.0.127.bl.test,127.0.0.2",
            "--host-record=12.0.0.127.bl2.test,127.0.0.9",
            "--host-record=13.0.0.127.bl.test,127.0.0.2",
            "--host-record=13.0.0.127.bl2.test,127.0.0.3",
            "--host-record=14.0.0.127.wl.test,127.0.0.1",
            "--host-record=15.0.0.127.secret.bl3.test,127.0.0.2",
        ],
    );
    Some(p)
}

// (A longer greet wait: the real postscreen counts only the DNS answers
// that come within it.)
const DNSBL: &str =
    "postscreen_greet_wait = 2s\npostscreen_dnsbl_sites = bl.test*2, bl2.test=127.0.0.[2..4], wl.test*-5, secret.bl3.test*3\n\
    postscreen_dnsbl_threshold = 2\npostscreen_dnsbl_allowlist_threshold = -4\npostscreen_dnsbl_action = enforce\n\
    postscreen_dnsbl_reply_map = inline:{secret.bl3.test=bl3.example}\n";

// The first session starts the real Postfix's dnsblog, whose first
// answer may come after the greet wait.
const DNSBL_SESSIONS: &str = "FROM 127.0.0.17
GREET
QUIT

FROM 127.0.0.11
GREET
EHLO listed.example
MAIL FROM:<a@b.org>
RCPT TO:<u@mumail.test>
QUIT

FROM 127.0.0.12
GREET
QUIT

FROM 127.0.0.13
GREET
MAIL FROM:<a@b.org>
RCPT TO:<u@mumail.test>
QUIT

FROM 127.0.0.14
GREET
QUIT

FROM 127.0.0.15
GREET
HELO x
MAIL FROM:<a@b.org>
RCPT TO:<u@mumail.test>
QUIT

FROM 127.0.0.16
GREET
QUIT

FROM 127.0.0.11
GREET
QUIT
";

#[test]
fn postscreen_dnsbl_matches_real_postfix() {
    let server = "127.1.53.54";
    let d = tempfile::tempdir().unwrap();
    let Some(_dns) = dnsbl_server(d.path(), server) else {
        return;
    };
    differential(DNSBL, DNSBL_SESSIONS, Some(server));
    let drop = DNSBL.replace("dnsbl_action = enforce", "dnsbl_action = drop");
    differential(
        &drop,
        "FROM 127.0.0.17\nGREET\nQUIT\n\nFROM 127.0.0.11\nGREET\nQUIT\n\nFROM 127.0.0.15\nGREET\nQUIT\n",
        Some(server),
    );
}
