//! Differential test: the same main.cf and the same SMTP sessions against
//! the real Postfix 3.7 smtpd and our hub; every reply must match byte for
//! byte once queue IDs are masked.  Delivery is discarded on both sides:
//! the question here is the SMTP surface.

mod harness;
use harness::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn open_dir(p: &Path) {
    std::fs::create_dir_all(p).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Runs the sessions; one line per reply (multi-line replies joined by |).
const DRIVER: &str = r#"
import socket, sys, re
port = int(sys.argv[1])
sessions = [s.split('\n') for s in sys.stdin.read().split('\n\n') if s.strip()]
for sess in sessions:
    s = socket.create_connection(('127.0.0.1', port), timeout=20)
    f = s.makefile('rb')
    def reply():
        lines = []
        while True:
            try:
                l = f.readline().decode('utf-8', 'replace').rstrip('\r\n')
            except OSError:
                l = ''  # a reset after the server closed: the same as EOF
            lines.append(l)
            if len(l) < 4 or l[3] != '-':
                return '|'.join(lines)
    # PRE: bytes sent before the greeting (an up-stream proxy's header).
    if sess[0].startswith('PRE '):
        s.sendall(sess.pop(0)[4:].encode().decode('unicode_escape').encode('latin-1'))
    out = [reply()]
    for c in sess:
        try:
            if c.startswith('RAW '):
                s.sendall(c[4:].encode().decode('unicode_escape').encode('latin-1'))
            else:
                s.sendall(c.encode() + b'\r\n')
        except OSError:
            pass
        if c.startswith('RAW ') and not c.endswith('\\r\\n'):
            continue
        r = reply()
        out.append('%-40s => %s' % (c[:40], r))
        if r.startswith('221') or r.startswith('421'):
            break
    s.close()
    for o in out:
        print(re.sub(r'queued as [0-9A-Za-z]+', 'queued as ID', o))
    print('--')
"#;

const SESSIONS: &str = "EHLO client.example
MAIL FROM:<a@b.org> SIZE=99999999
RSET
MAIL FROM:<a@b.org> SIZE=abc
MAIL FROM:<a b@c>
MAIL FROM:<a@b.org> FOO=bar
MAIL FROM:<a@b.org> RET=XX
MAIL FROM:<a@b.org> ENVID=a+zz
MAIL FROM:<a@b.org> RET=HDRS ENVID=abc
RSET
MAIL FROM:<c@d.org>
MAIL FROM:<c@d.org>
RCPT TO:<u7@mumail.test> NOTIFY=BAD
RCPT TO:<u7@mumail.test> ORCPT=bad
RCPT TO:<u7@mumail.test> FOO=1
RCPT TO:<nobody@mumail.test>
RCPT TO:<u7@mumail.test>
RCPT TO:<u7+ext@mumail.test>
RCPT TO:<x@elsewhere.example>
RCPT TO:<@r1,@r2:yes1@mumail.test>
RCPT TO:yes1@mumail.test
RCPT TO:<postmaster@mumail.test>
RCPT TO:<rejected@mumail.test>
RCPT TO:<deferred@mumail.test>
RCPT TO:<custom@mumail.test>
RCPT TO:<x@spam.example>
RCPT TO:<>
RCPT TO:<u7@mumail.test
DATA
RAW Subject: t\\r\\n\\r\\nbody\\r\\n.\\r\\n
QUIT

HELO client.example
DATA
RCPT TO:<u7@mumail.test>
MAIL FROM:<a@b.org>
DATA
RCPT TO:<nobody@mumail.test>
DATA
RSET
NOOP
NOOP extra
RSET extra
VRFY u7@mumail.test
VRFY nobody@mumail.test
VRFY
ETRN mumail.test
ETRN
XYZZY
STARTTLS
AUTH PLAIN
DATA extra
HELO
EHLO
QUIT

EHLO client.example
MAIL FROM:<a@b.org>
RCPT TO:<u7@mumail.test>
RAW BDAT 12\\r\\nSubject: x\\r\\n
RCPT TO:<yes1@mumail.test>
MAIL FROM:<a@b.org>
DATA
RAW BDAT 0 LAST\\r\\n
BDAT x
QUIT

EHLO client.example
MAIL FROM:<spammer@spam.example>
RCPT TO:<u7@mumail.test>
RCPT TO:<u7>
RCPT TO:<a@b.org>
QUIT
";

fn main_cf(dir: &Path, extra: &str) -> String {
    format!(
        "compatibility_level = 3.6\nmyhostname = hub.mumail.test\nmydomain = mumail.test\nmydestination = mumail.test\n\
         mynetworks = 10.0.0.0/8\ninet_interfaces = loopback-only\nsmtpd_banner = $myhostname ESMTP $mail_name\n\
         local_recipient_maps = texthash:{d}/users\nlocal_transport = discard:\nrecipient_delimiter = +\n\
         maillog_file = {d}/maillog\nmaillog_file_prefixes = {d}\n\
         smtpd_recipient_restrictions = check_recipient_access texthash:{d}/access, check_sender_access texthash:{d}/access\n{extra}",
        d = dir.display()
    )
}

fn tables(dir: &Path) {
    std::fs::write(
        dir.join("footers.regexp"),
        "/Relay access denied/ \\c (relay footer)\n/Recipient address rejected/ see $$client_address\n",
    )
    .unwrap();
    std::fs::write(dir.join("users"), "u7 x\nyes1 x\nrejected x\ndeferred x\ncustom x\n").unwrap();
    std::fs::write(
        dir.join("access"),
        "rejected@mumail.test REJECT\ndeferred@mumail.test DEFER try later\ncustom@mumail.test 550 5.1.2 go away\nspam.example REJECT no spam here\nokay@mumail.test OK\n",
    )
    .unwrap();
}

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

#[test]
fn smtp_replies_match_real_postfix() {
    differential("", SESSIONS, 60);
}

const STRICT: &str = "smtpd_helo_required = yes\nsmtpd_recipient_limit = 3\n\
    smtpd_helo_restrictions = reject_invalid_helo_hostname, reject_non_fqdn_helo_hostname\n\
    smtpd_sender_restrictions = reject_non_fqdn_sender, check_sender_access inline:{{bad@b.org=450 4.7.1 slow down}}\n\
    smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n\
    smtpd_data_restrictions = reject_unauth_pipelining\ndisable_vrfy_command = yes\nmessage_size_limit = 2000\n";

const STRICT_SESSIONS: &str = "MAIL FROM:<a@b.org>
HELO bad_host!
MAIL FROM:<a@b.org>
RCPT TO:<u7@mumail.test>
RSET
HELO localhost
MAIL FROM:<a@b.org>
RCPT TO:<u7@mumail.test>
RSET
EHLO client.example
MAIL FROM:<a>
RCPT TO:<u7@mumail.test>
RSET
MAIL FROM:<bad@b.org>
RCPT TO:<u7@mumail.test>
RSET
MAIL FROM:<a@b.org>
RCPT TO:<x@elsewhere.example>
RCPT TO:<u7@mumail.test>
RCPT TO:<yes1@mumail.test>
RCPT TO:<u7+a@mumail.test>
RCPT TO:<u7+b@mumail.test>
VRFY u7@mumail.test
DATA
RAW Subject: big\\r\\n\\r\\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\\r\\n.\\r\\n
MAIL FROM:<a@b.org>
XCLIENT ADDR=10.0.0.1
XFORWARD ADDR=10.0.0.1
RSET
XCLIENT ADDR=10.0.0.1
XFORWARD ADDR=10.0.0.1
XCLIENT junk
QUIT
";

#[test]
fn strict_config_replies_match_real_postfix() {
    differential(STRICT, STRICT_SESSIONS, 20);
}

/// Waits until a log file has stopped growing (for up to 5 s).

/// The real Postfix logged each of `what` (the run exercised what a test
/// is about); nothing to check where it is not installed.
fn real_log_has(real: &str, what: &[&str]) {
    if !real.is_empty() {
        for w in what {
            assert!(real.contains(w), "{w}:\n{real}");
        }
    }
}

/// `name[addr]:port` (smtpd_client_port_logging) as `name[addr]:PORT`.
fn mask_ports(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find("]:") {
        out.push_str(&rest[..i + 2]);
        let after = &rest[i + 2..];
        rest = after.trim_start_matches(|c: char| c.is_ascii_digit());
        if rest.len() < after.len() {
            out.push_str("PORT");
        }
    }
    out.push_str(rest);
    out
}

/// The same sessions against both; the two maillogs are returned.
fn differential(extra: &str, sessions: &str, min: usize) -> (String, String) {
    differential_in(extra, sessions, min, None)
}

/// With `dns`: both servers resolve through that name server (the real
/// Postfix through a private /etc/resolv.conf in its own mount namespace,
/// ours through MUMAIL_DNS_SERVERS).
fn differential_in(extra: &str, sessions: &str, min: usize, dns: Option<&str>) -> (String, String) {
    if !can_run("hub vs postfix", &[POSTFIX]) {
        return Default::default();
    }
    let d = tempfile::tempdir().unwrap();
    open_dir(d.path());

    let pf = d.path().join("postfix");
    let pport = PostfixInstance::prepare(&pf);
    tables(&pf);
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
        // The real smtpd now and then drops a session (a fresh process per
        // connection under the test's burst); take the fullest of 3 runs.
        let mut best = String::new();
        for _ in 0..3 {
            let r = drive(pport, sessions);
            if r.lines().count() > best.lines().count() {
                best = r;
            }
            if best.matches("\n--\n").count() + usize::from(best.starts_with("--\n"))
                == sessions.split("\n\n").filter(|s| !s.trim().is_empty()).count()
                && !best.contains("Traceback")
            {
                break;
            }
        }
        // postlogd writes the log from datagrams: let it settle before
        // the instance stops.
        settle(&pf.join("maillog"));
        (best, std::fs::read_to_string(pf.join("maillog")).unwrap_or_default())
    };
    let (real, real_maillog) = real;

    let hub = d.path().join("hub");
    open_dir(&hub);
    tables(&hub);
    let hport = free_port();
    std::fs::write(
        hub.join("main.cf"),
        main_cf(&hub, &format!("queue_directory = {}\n{extra}", hub.join("queue").display())),
    )
    .unwrap();
    std::fs::write(
        hub.join("master.cf"),
        format!("127.0.0.1:{hport} inet n - n - - smtpd\ndiscard unix - - n - - discard\n"),
    )
    .unwrap();
    let ours = {
        let _p = spawn_postfix_master(&hub, dns);
        wait_tcp(hport);
        let r = drive(hport, sessions);
        settle(&hub.join("maillog"));
        r
    };

    let (r, o): (Vec<&str>, Vec<&str>) = (real.lines().collect(), ours.lines().collect());
    let mut diffs = Vec::new();
    for i in 0..r.len().max(o.len()) {
        let (a, b) = (r.get(i).copied().unwrap_or("<none>"), o.get(i).copied().unwrap_or("<none>"));
        if a != b {
            diffs.push(format!("real: {a}\nours: {b}"));
        }
    }
    println!("{ours}");
    // smtpd's policy lines (reject, reject_warning, warn, info, hold),
    // without time, host, pid and queue id.
    let policy_lines = |dir: &Path| -> Vec<String> {
        let log = std::fs::read_to_string(dir.join("maillog")).unwrap_or_default();
        log.lines()
            .filter_map(|l| l.split_once("]: ").map(|(_, rest)| rest))
            .filter_map(|rest| {
                let (_, tail) = rest.split_once(": ")?;
                [
                    ": reject: ",
                    ": permit: ",
                    ": reject_warning: ",
                    ": warn: ",
                    ": info: ",
                    ": hold: ",
                    ": milter-reject: ",
                    ": milter-discard: ",
                    ": milter-hold: ",
                    ": discard: ",
                    ": redirect: ",
                    ": filter: ",
                    ": bcc: ",
                ]
                .iter()
                .any(|k| rest.contains(k) && rest.find(k) == rest.find(": "))
                .then(|| mask_ports(tail).replace(&dir.display().to_string(), "DIR"))
            })
            .collect()
    };
    let (real_log, our_log) = (policy_lines(&pf), policy_lines(&hub));
    if std::env::var_os("MUMAIL_SHOW_LOGS").is_some() {
        eprintln!("REAL LOG\n{}\nOUR LOG\n{}", real_log.join("\n"), our_log.join("\n"));
    }
    // Every line the real smtpd logged must be in ours, in the same order.
    // (Not the other way round: the real postlogd drops lines in a burst,
    // so the real log can miss some.)
    let mut at = 0;
    for a in &real_log {
        match our_log[at..].iter().position(|b| b == a) {
            Some(k) => at += k + 1,
            None => diffs.push(format!("log real: {a}\nnot in ours after line {at}:\n{}", our_log[at..].join("\n"))),
        }
    }
    if std::env::var_os("MUMAIL_SHOW_LOGS").is_some() {
        eprintln!("REAL MAILLOG\n{real_maillog}");
    }
    assert!(r.len() > min, "too few replies from the real Postfix:\n{real}\nours:\n{ours}");
    if !diffs.is_empty() {
        eprintln!(
            "hub log:\n{}\nhub stderr:\n{}",
            std::fs::read_to_string(hub.join("maillog")).unwrap_or_default(),
            std::fs::read_to_string(hub.join("stderr")).unwrap_or_default()
        );
    }
    assert!(
        diffs.is_empty(),
        "{} of {} replies differ:\n{}",
        diffs.len(),
        r.len(),
        diffs.join("\n")
    );
    (real_maillog, std::fs::read_to_string(hub.join("maillog")).unwrap_or_default())
}

const RATES: &str = "smtpd_client_message_rate_limit = 2\nsmtpd_client_recipient_rate_limit = 3\nsmtpd_client_connection_rate_limit = 3\n";

const RATE_SESSIONS: &str = "EHLO client.example
MAIL FROM:<a@b.org>
RCPT TO:<u7@mumail.test>
RCPT TO:<yes1@mumail.test>
RSET
MAIL FROM:<a@b.org>
RCPT TO:<u7@mumail.test>
RCPT TO:<yes1@mumail.test>
RSET
MAIL FROM:<a@b.org>
QUIT

EHLO client.example
QUIT

EHLO client.example
QUIT

EHLO client.example
QUIT
";

const EOD: &str = "smtpd_end_of_data_restrictions = check_sender_access inline:{ {eod@b.org=REJECT no thanks}, {later@b.org=DEFER try later} }, check_client_access inline:{ {127.0.0.1=WARN just a warning} }\n";

const EOD_SESSIONS: &str = "EHLO client.example
MAIL FROM:<eod@b.org>
RCPT TO:<u7@mumail.test>
DATA
RAW Subject: one\\r\\n\\r\\nbody\\r\\n.\\r\\n
RSET
MAIL FROM:<later@b.org>
RCPT TO:<u7@mumail.test>
RCPT TO:<yes1@mumail.test>
RAW BDAT 22 LAST\\r\\nSubject: two\\r\\n\\r\\nbody\\r\\n
RSET
MAIL FROM:<fine@b.org>
RCPT TO:<u7@mumail.test>
DATA
RAW Subject: three\\r\\n\\r\\nbody\\r\\n.\\r\\n
QUIT
";

const NO_DELAY: &str = "smtpd_delay_reject = no\n\
    smtpd_client_restrictions = check_client_access inline:{ {127.0.0.1=WARN client seen} }\n\
    smtpd_helo_restrictions = reject_invalid_helo_hostname, check_helo_access inline:{ {bad.example=REJECT go away}, {warn.example=WARN odd helo} }\n\
    smtpd_sender_restrictions = reject_non_fqdn_sender, check_sender_access inline:{ {spam@b.org=REJECT no spam} }\n";

const NO_DELAY_SESSIONS: &str = "HELO bad.example
HELO bad_host!
EHLO warn.example
MAIL FROM:<spam@b.org>
MAIL FROM:<a>
MAIL FROM:<a@b.org>
RCPT TO:<u7@mumail.test>
RCPT TO:<x@elsewhere.example>
DATA
RAW Subject: one\\r\\n\\r\\nbody\\r\\n.\\r\\n
QUIT

MAIL FROM:<a@b.org>
RCPT TO:<u7@mumail.test>
QUIT
";

const CLIENT_REJECT: &str = "smtpd_delay_reject = no\n\
    smtpd_client_restrictions = check_client_access inline:{ {127.0.0.1=REJECT not you} }\n";

const CLIENT_REJECT_SESSIONS: &str = "EHLO client.example
MAIL FROM:<a@b.org>
RCPT TO:<u7@mumail.test>
NOOP
RSET
DATA
QUIT
";

const HAPROXY: &str = "smtpd_upstream_proxy_protocol = haproxy\nsmtpd_peername_lookup = no\n";

/// Behind a load balancer: the client each PROXY header names (v1, v2,
/// UNKNOWN: the socket's) decides relaying (mynetworks is 10.0.0.0/8); a
/// bad header ends the connection.
const HAPROXY_SESSIONS: &str = "PRE PROXY TCP4 10.1.2.3 127.0.0.1 40000 25\\r\\n
EHLO client.example
MAIL FROM:<a@b.org>
RCPT TO:<a@b.org>
QUIT

PRE PROXY TCP4 192.0.2.9 127.0.0.1 40000 25\\r\\n
EHLO client.example
MAIL FROM:<a@b.org>
RCPT TO:<a@b.org>
QUIT

PRE \\r\\n\\r\\n\\x00\\r\\nQUIT\\n\\x21\\x11\\x00\\x0c\\x0a\\x01\\x02\\x03\\x7f\\x00\\x00\\x01\\x9c\\x40\\x00\\x19
EHLO client.example
MAIL FROM:<a@b.org>
RCPT TO:<a@b.org>
QUIT

PRE PROXY UNKNOWN\\r\\n
EHLO client.example
MAIL FROM:<a@b.org>
RCPT TO:<a@b.org>
QUIT

PRE EHLO client.example\\r\\n
QUIT

PRE \\r\\n\\r\\n\\x00\\r\\nQUIT\\n\\x20\\x00\\x00\\x00
EHLO client.example
MAIL FROM:<a@b.org>
RCPT TO:<a@b.org>
QUIT

PRE \\r\\n\\r\\n\\x00\\r\\nQUIT\\n\\x21\\x00\\x00\\x00
EHLO client.example
QUIT

PRE PROXY TCP6 ::ffff:10.1.2.3 ::1 40000 25\\r\\n
EHLO client.example
MAIL FROM:<a@b.org>
RCPT TO:<a@b.org>
QUIT

PRE PROXY TCP4 10.1.2.3 127.0.0.1 x 25\\r\\n
QUIT
";

#[test]
fn haproxy_clients_match_real_postfix() {
    let (real, ours) = differential(HAPROXY, HAPROXY_SESSIONS, 20);
    // The smtpd lines (the warnings with the header as read, connect
    // and disconnect with the client named), but for the wait_tcp
    // probes' EOFs and the queue IDs.
    let lines = |log: &str| -> Vec<String> {
        log.lines()
            .filter(|l| l.contains("/smtpd[") && !l.contains("haproxy read: EOF"))
            .filter_map(|l| l.split_once("]: ").map(|(_, m)| m.to_string()))
            .filter(|m| !m.contains(": client=") && !m.starts_with("connect from unknown[127.0.0.1]"))
            .collect()
    };
    let (r, o) = (lines(&real), lines(&ours));
    if !real.is_empty() {
        assert!(r.len() > 10, "{real}");
        assert_eq!(r, o, "real:\n{real}\nours:\n{ours}");
    }
}

const ERRORS: &str = "smtpd_hard_error_limit = 5\nsmtpd_soft_error_limit = 3\nsmtpd_error_sleep_time = 0\n\
    smtpd_junk_command_limit = 3\nsmtpd_noop_commands = XPING, xnothing\n\
    smtpd_recipient_limit = 2\nsmtpd_recipient_overshoot_limit = 2\n";

/// Junk commands count as errors past the junk limit; a received message
/// forgives errors and junk; a refused DATA is an error; the hard limit
/// ends the session where the real smtpd ends it; smtpd_noop_commands
/// get `250 2.0.0 Ok`; recipients past the limit are errors only past
/// the overshoot limit, counted per transaction.
const ERROR_SESSIONS: &str = "EHLO client.example
NOOP
XPING
xnothing args
RSET
NOOP
VRFY u7@mumail.test
ETRN mumail.test
HELO client.example
NOOP
NOOP
QUIT

EHLO client.example
XYZZY
XYZZY
MAIL FROM:<a@b.org>
RCPT TO:<nobody@mumail.test>
RCPT TO:<u7@mumail.test>
DATA
RAW Subject: t\\r\\n\\r\\nbody\\r\\n.\\r\\n
XYZZY
XYZZY
XYZZY
NOOP
NOOP
NOOP
NOOP
XYZZY
NOOP
QUIT

HELO client.example
MAIL FROM:<a@b.org>
DATA
XYZZY
MAIL FROM:<a@b.org>
RCPT TO:<u7@mumail.test>
RCPT TO:<rejected@mumail.test>
XYZZY
NOOP
QUIT

EHLO client.example
MAIL FROM:<a@b.org>
RCPT TO:<u7@mumail.test>
RCPT TO:<yes1@mumail.test>
RCPT TO:<u7+a@mumail.test>
RCPT TO:<u7+b@mumail.test>
RCPT TO:<u7+c@mumail.test>
RCPT TO:<u7+d@mumail.test>
RSET
MAIL FROM:<a@b.org>
RCPT TO:<u7@mumail.test>
RCPT TO:<yes1@mumail.test>
RCPT TO:<u7+a@mumail.test>
RCPT TO:<u7+b@mumail.test>
RCPT TO:<u7+c@mumail.test>
XYZZY
XYZZY
NOOP
QUIT
";

#[test]
fn error_limits_match_real_postfix() {
    let (real, ours) = differential(ERRORS, ERROR_SESSIONS, 30);
    // "too many errors after <command>" where each ended it.
    let ends = |log: &str| -> Vec<String> {
        log.lines()
            .filter_map(|l| l.split_once("]: ").map(|(_, m)| m))
            .filter(|m| m.starts_with("too many errors"))
            .map(str::to_string)
            .collect()
    };
    if !real.is_empty() {
        assert_eq!(ends(&real).len(), 4, "{real}");
        assert_eq!(ends(&real), ends(&ours), "real:\n{real}\nours:\n{ours}");
    }
}

const UNLISTED_SENDER_SESSIONS: &str = "EHLO client.example
MAIL FROM:<nobody@mumail.test>
RCPT TO:<u7@mumail.test>
RCPT TO:<yes1@mumail.test>
RSET
MAIL FROM:<u7@mumail.test>
RCPT TO:<u7@mumail.test>
RSET
MAIL FROM:<MAILER-DAEMON@mumail.test>
RCPT TO:<u7@mumail.test>
RSET
MAIL FROM:<u7+ext@mumail.test>
RCPT TO:<u7@mumail.test>
RSET
MAIL FROM:<>
RCPT TO:<u7@mumail.test>
RSET
MAIL FROM:<someone@elsewhere.example>
RCPT TO:<u7@mumail.test>
RCPT TO:<nobody@mumail.test>
QUIT
";

/// smtpd_reject_unlisted_sender at RCPT (delayed) and at MAIL, the
/// reject_unlisted_sender restriction in a list, and the null sender's
/// access key (smtpd_null_access_lookup_key).
#[test]
fn unlisted_senders_match_real_postfix() {
    differential(
        "smtpd_reject_unlisted_sender = yes\nsmtpd_null_access_lookup_key = <null>\n\
         smtpd_sender_restrictions = check_sender_access inline:{ {<null>=REJECT no bounces here} }\n",
        UNLISTED_SENDER_SESSIONS,
        20,
    );
    differential(
        "smtpd_delay_reject = no\nsmtpd_reject_unlisted_sender = yes\n",
        UNLISTED_SENDER_SESSIONS,
        20,
    );
    differential(
        "smtpd_recipient_restrictions = reject_unlisted_sender, permit_mynetworks, reject_unauth_destination\n",
        UNLISTED_SENDER_SESSIONS,
        20,
    );
}

const PORT_SESSIONS: &str = "EHLO client.example
MAIL FROM:<a@b.org>
RCPT TO:<nobody@mumail.test>
RCPT TO:<u7@mumail.test>
DATA
RAW Subject: t\\r\\n\\r\\nbody\\r\\n.\\r\\n
QUIT
";

/// smtpd_client_port_logging: `name[addr]:port` in the smtpd log lines.
#[test]
fn client_port_logging_matches_real_postfix() {
    let (real, ours) = differential("smtpd_client_port_logging = yes\n", PORT_SESSIONS, 6);
    // The session's lines, the port and queue ID made comparable (the
    // wait_tcp probes' sessions left out).
    let lines = |log: &str| -> Vec<String> {
        log.lines()
            .filter(|l| l.contains("/smtpd["))
            .filter_map(|l| l.split_once("]: ").map(|(_, m)| m.to_string()))
            .filter(|m| m.contains("reject:") || m.contains(": client=") || m.contains(" ehlo="))
            .map(|m| {
                let out = mask_ports(&m);
                out.split_once(": ")
                    .filter(|(q, _)| q.chars().all(|c| c.is_ascii_alphanumeric()) && q.len() > 8)
                    .map_or(out.clone(), |(_, t)| format!("QID: {t}"))
            })
            .collect()
    };
    let (r, o) = (lines(&real), lines(&ours));
    if !real.is_empty() {
        assert_eq!(r.len(), 3, "{real}");
        assert!(r.iter().all(|l| l.contains("[127.0.0.1]:PORT")), "{r:?}");
        assert_eq!(r, o, "real:\n{real}\nours:\n{ours}");
    }
}

const CLASSES: &str = "smtpd_authorized_xclient_hosts = 127.0.0.0/8\nsmtpd_sasl_auth_enable = yes\nsmtpd_discard_ehlo_keywords = auth\n\
    smtpd_restriction_classes = internal_only, strict_senders\n\
    internal_only = check_client_access inline:{ {10.1.2.3=OK} }, reject\n\
    strict_senders = reject_non_fqdn_sender, permit\n\
    smtpd_sender_login_maps = inline:{ {u7@mumail.test=u7}, {@shared.example=u7 yes1}, {yes1=yes1} }\n\
    smtpd_recipient_restrictions = check_recipient_access inline:{ {u7+staff@mumail.test=internal_only}, \
    {u7+list@mumail.test=strict_senders}, {u7+group@mumail.test=permit_mynetworks, reject} }, \
    reject_sender_login_mismatch, permit_mynetworks, reject_unauth_destination\n";

const LOGIN_SESSIONS: &str = "EHLO client.example
MAIL FROM:<a@b.org>
RCPT TO:<u7+staff@mumail.test>
RCPT TO:<u7+group@mumail.test>
RCPT TO:<u7@mumail.test>
RSET
MAIL FROM:<u7@mumail.test>
RCPT TO:<u7@mumail.test>
RSET
MAIL FROM:<x>
RCPT TO:<u7+list@mumail.test>
RCPT TO:<u7+staff@mumail.test>
QUIT

EHLO client.example
XCLIENT ADDR=10.1.2.3 LOGIN=yes1
EHLO client.example
MAIL FROM:<u7@mumail.test>
RCPT TO:<u7@mumail.test>
RSET
MAIL FROM:<someone@shared.example>
RCPT TO:<u7+staff@mumail.test>
RCPT TO:<u7@mumail.test>
RSET
MAIL FROM:<nobody@elsewhere.example>
RCPT TO:<u7@mumail.test>
RSET
MAIL FROM:<yes1@mumail.test>
RCPT TO:<u7@mumail.test>
RSET
MAIL FROM:<yes1+tag@mumail.test>
RCPT TO:<u7@mumail.test>
QUIT
";

/// smtpd_restriction_classes (named in a list and answered by an access
/// table, as is a list of restrictions), smtpd_sender_login_maps and the
/// four reject_*sender_login_mismatch restrictions, logged in through
/// XCLIENT LOGIN.
#[test]
fn restriction_classes_and_sender_logins_match_real_postfix() {
    let (real, _) = differential(CLASSES, LOGIN_SESSIONS, 25);
    real_log_has(
        &real,
        &[
            "<u7+staff@mumail.test>: Recipient address rejected: Access denied",
            "<u7@mumail.test>: Sender address rejected: not logged in",
            "<u7@mumail.test>: Sender address rejected: not owned by user yes1",
            "<x>: Sender address rejected: need fully-qualified address",
        ],
    );
    for r in [
        "reject_authenticated_sender_login_mismatch",
        "reject_unauthenticated_sender_login_mismatch",
        "reject_known_sender_login_mismatch",
    ] {
        differential(
            &CLASSES.replace("reject_sender_login_mismatch,", &format!("{r},")),
            LOGIN_SESSIONS,
            25,
        );
    }
}

const MISC: &str = "smtpd_authorized_xclient_hosts = 127.0.0.0/8\nsmtpd_sasl_auth_enable = yes\n\
    smtpd_discard_ehlo_keywords = auth\nsmtpd_helo_restrictions = permit_naked_ip_address, reject\n\
    smtpd_data_restrictions = reject_multi_recipient_bounce\n\
    smtpd_recipient_restrictions = check_sasl_access inline:{ {yes1=REJECT no yes1 here} }, \
    reject_multi_recipient_bounce, permit_inet_interfaces, permit_tls_clientcerts, \
    check_ccert_access inline:{ {x=OK} }, sleep 1, reject_unauth_destination\n";

const MISC_SESSIONS: &str = "EHLO 1.2.3.4
MAIL FROM:<>
RCPT TO:<u7@mumail.test>
RCPT TO:<yes1@mumail.test>
DATA
RAW Subject: t\\r\\n\\r\\nbody\\r\\n.\\r\\n
QUIT

EHLO client.example
MAIL FROM:<a@b.org>
RCPT TO:<u7@mumail.test>
QUIT

EHLO 1.2.3.4
XCLIENT ADDR=10.0.0.5 LOGIN=yes1
EHLO 1.2.3.4
MAIL FROM:<a@b.org>
RCPT TO:<u7@mumail.test>
QUIT

EHLO 1.2.3.4
XCLIENT ADDR=10.0.0.5
EHLO 1.2.3.4
MAIL FROM:<a@b.org>
RCPT TO:<u7@mumail.test>
QUIT
";

/// permit_naked_ip_address, reject_multi_recipient_bounce (at RCPT and
/// DATA), check_sasl_access, permit_inet_interfaces (the connection's own
/// address, not the one XCLIENT gives), reject_plaintext_session, and the
/// client-certificate restrictions (no certificate is asked for: they
/// never match).
#[test]
fn more_restrictions_match_real_postfix() {
    let (real, _) = differential(MISC, MISC_SESSIONS, 15);
    real_log_has(&real, &["Multi-recipient bounce", "no yes1 here", "Helo command rejected"]);
    let (real, _) = differential(
        "smtpd_recipient_restrictions = reject_plaintext_session, reject_unauth_destination\n",
        "EHLO a.b\nMAIL FROM:<a@b.org>\nRCPT TO:<u7@mumail.test>\nQUIT\n",
        3,
    );
    real_log_has(&real, &["450 4.7.1 Session encryption is required"]);
    // check_reverse_client_hostname_access: the unverified reverse name.
    let (real, _) = differential(
        "smtpd_authorized_xclient_hosts = 127.0.0.0/8\n\
         smtpd_client_restrictions = check_reverse_client_hostname_access inline:{ {ptr.example=REJECT bad ptr} }\n",
        "EHLO a.b\nXCLIENT ADDR=192.0.2.5 NAME=good.example REVERSE_NAME=ptr.example\nEHLO a.b\n\
         MAIL FROM:<a@b.org>\nRCPT TO:<u7@mumail.test>\nQUIT\n\n\
         EHLO a.b\nXCLIENT ADDR=192.0.2.5 NAME=ptr.example\nEHLO a.b\nMAIL FROM:<a@b.org>\nRCPT TO:<u7@mumail.test>\nQUIT\n",
        6,
    );
    real_log_has(&real, &["bad ptr"]);
}

/// smtpd_reject_footer on every 4XX/5XX reply (refusals, protocol
/// errors, the 421 of the error limit), with `\n` lines, a `\c` join and
/// the session's `$client_address` and `$server_name`.
#[test]
fn reject_footer_matches_real_postfix() {
    const SESSIONS: &str = "EHLO client.example
XYZZY
MAIL FROM:<a@b.org>
RCPT TO:<nobody@mumail.test>
RCPT TO:<deferred@mumail.test>
RCPT TO:<u7@mumail.test>
NOOP
QUIT
";
    let (real, _) = differential(
        "smtpd_reject_footer = For help, see http://help.mumail.test/?ip=$client_address\\nServer: ${server_name}\n",
        SESSIONS,
        6,
    );
    real_log_has(&real, &["Recipient address rejected"]);
    differential(
        "smtpd_reject_footer = \\c (client $client_address)\nsmtpd_hard_error_limit = 2\n",
        SESSIONS,
        3,
    );
}

/// `smtpd_delay_reject = no`: each list at its own command.
#[test]
fn undelayed_restrictions_match_real_postfix() {
    differential(CLIENT_REJECT, CLIENT_REJECT_SESSIONS, 5);
    differential(NO_DELAY, NO_DELAY_SESSIONS, 12);
}

const ACTIONS: &str = "smtpd_recipient_restrictions = check_recipient_access inline:{ {u7+discard@mumail.test=DISCARD}, \
    {u7+quiet@mumail.test=DISCARD not wanted}, {u7+prepend@mumail.test=PREPEND X-Tag: yes}, \
    {u7+redirect@mumail.test=REDIRECT yes1@mumail.test}, {u7+bcc@mumail.test=BCC yes1@mumail.test}, \
    {u7+filter@mumail.test=FILTER discard:}, {u7+hold@mumail.test=HOLD} }, reject_unauth_destination\n";

const ACTION_SESSIONS: &str = "EHLO client.example
MAIL FROM:<a@b.org>
RCPT TO:<u7+discard@mumail.test>
RCPT TO:<u7@mumail.test>
DATA
RAW Subject: one\\r\\n\\r\\nbody\\r\\n.\\r\\n
MAIL FROM:<a@b.org>
RCPT TO:<u7+quiet@mumail.test>
RCPT TO:<u7+prepend@mumail.test>
RCPT TO:<u7+redirect@mumail.test>
RCPT TO:<u7+bcc@mumail.test>
RCPT TO:<u7+filter@mumail.test>
RCPT TO:<u7+hold@mumail.test>
DATA
RAW Subject: two\\r\\n\\r\\nbody\\r\\n.\\r\\n
QUIT
";

/// access(5) message actions: DISCARD, PREPEND, REDIRECT, BCC, FILTER.
/// (One transaction each: the real smtpd does not log these actions again
/// for the same recipients in a later transaction of the session; ours
/// does.)
#[test]
fn access_message_actions_match_real_postfix() {
    differential(ACTIONS, ACTION_SESSIONS, 12);
}

/// The RSETs: Postfix keeps a transaction refused at END-OF-MESSAGE open
/// (a MAIL without RSET gets 503 nested MAIL); ours ends it.
#[test]
fn end_of_data_restrictions_match_real_postfix() {
    differential(EOD, EOD_SESSIONS, 12);
}

#[test]
fn rate_limits_match_real_postfix() {
    differential(RATES, RATE_SESSIONS, 12);
}

const DNS: &str = "smtpd_authorized_xclient_hosts = 127.0.0.0/8\nsmtpd_relay_restrictions =\n\
    smtpd_client_restrictions = reject_unknown_client_hostname, reject_unknown_reverse_client_hostname, reject_rhsbl_client dbl.test\n\
    smtpd_helo_restrictions = reject_unknown_helo_hostname, reject_rhsbl_helo dbl.test\n\
    smtpd_recipient_restrictions = check_sender_access inline:{ {slow@good.test=DEFER_IF_PERMIT later}, {soft@good.test=DEFER_IF_REJECT maybe} }, \
    reject_rbl_client bl.test=127.0.0.[2..11], reject_rhsbl_sender dbl.test, \
    reject_unknown_sender_domain, reject_unknown_recipient_domain, reject_unauth_destination\n\
    smtpd_data_restrictions = reject_unauth_pipelining\n";

const DNS_SESSIONS: &str = "EHLO mail.good.test
MAIL FROM:<a@nx.test>
RCPT TO:<u7@mumail.test>
RSET
MAIL FROM:<a@nullmx.test>
RCPT TO:<u7@mumail.test>
RSET
MAIL FROM:<a@good.test>
RCPT TO:<x@nx.test>
RCPT TO:<x@nullmx.test>
RCPT TO:<x@relay.test>
RCPT TO:<u7@mumail.test>
RSET
MAIL FROM:<a@spam.test>
RCPT TO:<u7@mumail.test>
RSET
MAIL FROM:<a@mx-only.test>
RCPT TO:<u7@mumail.test>
QUIT

EHLO mail.good.test
XCLIENT ADDR=192.0.2.7 NAME=client.good.test
EHLO mail.good.test
MAIL FROM:<a@good.test>
RCPT TO:<u7@mumail.test>
QUIT

EHLO mail.good.test
XCLIENT ADDR=192.0.2.9 NAME=client.good.test
EHLO mail.good.test
MAIL FROM:<a@good.test>
RCPT TO:<u7@mumail.test>
QUIT

EHLO mail.good.test
XCLIENT ADDR=192.0.2.8 NAME=[UNAVAILABLE]
EHLO mail.good.test
MAIL FROM:<a@good.test>
RCPT TO:<u7@mumail.test>
QUIT

EHLO mail.good.test
XCLIENT ADDR=192.0.2.8 NAME=[TEMPUNAVAIL]
EHLO mail.good.test
MAIL FROM:<a@good.test>
RCPT TO:<u7@mumail.test>
QUIT

EHLO nohost.test
MAIL FROM:<a@good.test>
RCPT TO:<u7@mumail.test>
QUIT

EHLO [127.0.0.1]
MAIL FROM:<a@good.test>
RCPT TO:<u7@mumail.test>
QUIT

EHLO mail.good.test
XCLIENT ADDR=192.0.2.10 NAME=client.good.test REVERSE_NAME=[UNAVAILABLE]
EHLO mail.good.test
MAIL FROM:<a@good.test>
RCPT TO:<u7@mumail.test>
QUIT

EHLO mail.good.test
XCLIENT ADDR=192.0.2.11 NAME=spam.test
EHLO mail.good.test
MAIL FROM:<a@good.test>
RCPT TO:<u7@mumail.test>
QUIT

EHLO spam.test
MAIL FROM:<a@good.test>
RCPT TO:<u7@mumail.test>
QUIT

EHLO mail.good.test
MAIL FROM:<slow@good.test>
RCPT TO:<x@relay.test>
RCPT TO:<u7@mumail.test>
RSET
MAIL FROM:<soft@good.test>
RCPT TO:<x@relay.test>
RCPT TO:<u7@mumail.test>
QUIT

HELO mail.good.test
RAW MAIL FROM:<a@good.test>\\r\\nRCPT TO:<u7@mumail.test>\\r\\nDATA\\r\\n
NOOP
NOOP
RSET
QUIT
";

/// The DNS restrictions against the real Postfix, both resolving through
/// one dnsmasq on a loopback address of its own (port 53: the C library's
/// resolver has no port setting).
#[test]
fn dns_restriction_replies_match_real_postfix() {
    const DNSMASQ: &str = "/usr/sbin/dnsmasq";
    if !can_run("hub vs postfix dns", &[POSTFIX, DNSMASQ, "/usr/bin/unshare"]) {
        return;
    }
    let server = "127.1.53.53";
    let d = tempfile::tempdir().unwrap();
    let _dns = dnsmasq(
        d.path(),
        server,
        &[
            "--mx-host=good.test,mail.good.test,10",
            "--host-record=mail.good.test,127.0.0.1",
            "--mx-host=relay.test,mail.good.test,10",
            "--mx-host=mx-only.test,mail.good.test,10",
            "--mx-host=nullmx.test,.,0",
            "--host-record=spam.test,127.0.0.1",
            "--host-record=spam.test.dbl.test,127.0.1.2",
            "--txt-record=spam.test.dbl.test,listed domain",
            "--host-record=7.2.0.192.bl.test,127.0.0.2",
            "--txt-record=7.2.0.192.bl.test,spam source",
            "--host-record=9.2.0.192.bl.test,127.0.0.99",
        ],
    );
    differential_in(DNS, DNS_SESSIONS, 30, Some(server));
    // permit_dnswl_client: a listed client passes, but not to relay.
    differential_in(DNSWL, DNSWL_SESSIONS, 5, Some(server));
    // check_*_{a,mx}_access (dnsmasq has no NS records to give), the
    // reverse name's checks.
    let (real, _) = differential_in(SERVERS, SERVERS_SESSIONS, 12, Some(server));
    real_log_has(
        &real,
        &[
            "<relay.test>: Unverified Client host rejected: ptr mx",
            "Unverified Client host [spam.test] blocked using dbl.test",
            "<a@relay.test>: Sender address rejected: bad mx host",
        ],
    );
}

const SERVERS: &str = "smtpd_relay_restrictions =\nsmtpd_authorized_xclient_hosts = 127.0.0.0/8\n\
    smtpd_client_restrictions = reject_rhsbl_reverse_client dbl.test, \
    check_reverse_client_hostname_mx_access inline:{ {mail.good.test=REJECT ptr mx} }\n\
    smtpd_helo_restrictions = check_helo_a_access inline:{ {127.0.0=REJECT helo on loopback} }\n\
    smtpd_sender_restrictions = check_sender_mx_access inline:{ {mail.good.test=REJECT bad mx host}, \
    {spam.test=DUNNO}, {127.0.0.1=REJECT loopback server} }\n\
    smtpd_recipient_restrictions = check_recipient_mx_access inline:{ {mail.good.test=OK} }, reject_unauth_destination\n";

const SERVERS_SESSIONS: &str = "EHLO client.example
MAIL FROM:<a@relay.test>
RCPT TO:<u7@mumail.test>
RSET
MAIL FROM:<a@spam.test>
RCPT TO:<u7@mumail.test>
RCPT TO:<x@relay.test>
RSET
MAIL FROM:<a@nullmx.test>
RCPT TO:<u7@mumail.test>
RSET
MAIL FROM:<a@[127.0.0.1]>
RCPT TO:<u7@mumail.test>
RSET
MAIL FROM:<a@nx.test>
RCPT TO:<u7@mumail.test>
QUIT

EHLO spam.test
MAIL FROM:<a@nx.test>
RCPT TO:<u7@mumail.test>
QUIT

EHLO client.example
XCLIENT ADDR=192.0.2.9 NAME=client.good.test REVERSE_NAME=spam.test
EHLO client.example
MAIL FROM:<a@nx.test>
RCPT TO:<u7@mumail.test>
QUIT

EHLO client.example
XCLIENT ADDR=192.0.2.9 NAME=client.good.test REVERSE_NAME=relay.test
EHLO client.example
MAIL FROM:<a@nx.test>
RCPT TO:<u7@mumail.test>
QUIT
";

const DNSWL: &str = "smtpd_authorized_xclient_hosts = 127.0.0.0/8\nsmtpd_relay_restrictions =\n\
    smtpd_recipient_restrictions = permit_dnswl_client bl.test=127.0.0.2, permit_rhswl_client dbl.test, \
    reject_rbl_client bl.test, reject_unauth_destination\n";

const DNSWL_SESSIONS: &str = "EHLO mail.good.test
XCLIENT ADDR=192.0.2.7 NAME=client.good.test
EHLO mail.good.test
MAIL FROM:<a@good.test>
RCPT TO:<u7@mumail.test>
RCPT TO:<x@elsewhere.test>
QUIT

EHLO mail.good.test
XCLIENT ADDR=192.0.2.9 NAME=spam.test
EHLO mail.good.test
MAIL FROM:<a@good.test>
RCPT TO:<u7@mumail.test>
QUIT
";

/// Sends the header-rewriting messages: argv[1] the port.
const HEADER_SENDER: &str = r#"
import smtplib, sys
port = int(sys.argv[1])
hdrs = ("From Sender Reply-To Resent-From Resent-Sender Resent-Reply-To Errors-To Return-Receipt-To "
        "Disposition-Notification-To To Cc Apparently-To Resent-To Resent-Cc Mail-Followup-To Mail-Reply-To "
        "Original-Recipient X-Original-To Delivered-To Envelope-To Return-Path Content-Length Resent-Bcc Bcc").split()
classes = "Subject: classes\n" + "".join("%s: s1@mumail.test, r1@host.mumail.test, joe\n" % h for h in hdrs) + \
    "Message-Id: <2@x>\nDate: Mon, 1 Jan 2024 00:00:00 +0000\n\nbody s1@mumail.test\n"
fold = ("Subject: fold\nFrom: Joe User <joe>\nReply-To: \"Quoted, Name\" <root@host.mumail.test>, x@host.mumail.test (comment here)\n"
        "To: averyveryverylongname@mumail.test, anotherveryverylongname@mumail.test, short@mumail.test, joe, "
        "\"Quoted Person\" <joe@host.mumail.test>, (only comment) joe, <joe>, joe <joe> , <@route1,@route2:joe@mumail.test>, "
        "\"odd local\"@legacy.org, x@[1.2.3.4], joe@host\n"
        "Cc: undisclosed-recipients:;\nCc: Folded\n Name <old@mumail.test>,\n\tother@example.net\n"
        "Bcc: a, Group: c@legacy.org, d;, rc@mumail.test\nSender: joe (a (nested) comment)\nX-Other: old@mumail.test\n"
        "Message-Id: <1@x>\nDate: Mon, 1 Jan 2024 00:00:00 +0000\n\nbody old@mumail.test\n")
def send(sender, rcpts, msg, xclient=None):
    s = smtplib.SMTP('127.0.0.1', port)
    s.ehlo('client.example')
    if xclient:
        code, text = s.docmd('XCLIENT ' + xclient)
        assert code == 220, (code, text)
        s.ehlo('client.example')
    s.sendmail(sender, rcpts, msg.replace('\n', '\r\n').encode())
    s.quit()
send('', ['t@y.test'], classes)
send('s@host.mumail.test', ['t@y.test'], fold)
send('s1@mumail.test', ['t@y.test', 'r1@mumail.test'], "Subject: missing\n\nbody\n")
send('', ['t@y.test'], "Subject: null sender\n\nbody\n")
send('root@host.mumail.test', ['t@y.test'], "Subject: resent\nTo: joe\nResent-To: q\n\nbody\n")
send('s@host.mumail.test', ['t@y.test'], "Subject: remote\nTo: a, old@mumail.test\nBcc: b\nReturn-Path: <x@y>\n\nbody\n",
     'ADDR=10.0.0.1 NAME=remote.example')
"#;

/// Prints the messages an smtp-sink dumped (argv[1] the directory), by
/// Subject: envelope, then the message after the hub's Received header,
/// with dates and queue IDs masked.
const HEADER_COLLECT: &str = r#"
import os, re, sys
out = {}
for f in os.listdir(sys.argv[1]):
    text = open(os.path.join(sys.argv[1], f), encoding='latin-1').read().replace('\r\n', '\n')
    env = [l for l in text.split('\n') if l.startswith(('X-Mail-Args', 'X-Rcpt-Args'))]
    lines = text.split('\n')
    # Skip the X- lines, the sink's Received and the hub's Received.
    i, seen = 0, 0
    while i < len(lines) and seen < 2:
        if lines[i].startswith('Received:'):
            seen += 1
        i += 1
    while i < len(lines) and lines[i][:1] in (' ', '\t'):
        i += 1
    msg = '\n'.join(lines[i:])
    msg = re.sub(r'<\d{14}\.[0-9A-Za-z]+@', '<STAMP.QID@', msg)
    msg = re.sub(r'\w{3}, [ \d]\d \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4} \(\w+\)', 'DATE', msg)
    subj = re.search(r'^Subject: (.*)$', msg, re.M)
    out[subj.group(1) if subj else f] = '\n'.join(sorted(env)) + '\n' + msg
for k in sorted(out):
    print('=== ' + k)
    print(out[k])
"#;

/// Header address rewriting (canonical maps per class, masquerading,
/// local_header_rewrite_clients), dropped headers and added ones: the
/// same messages through the real Postfix 3.7 and through our hub, each
/// relaying to its own smtp-sink; the dumped messages must match.
#[test]
fn header_rewriting_matches_real_postfix() {
    let Some((real, ours)) = through_both(HEADER_SENDER, "", &[], 6) else {
        return;
    };
    // The real run exercised what the test is about.
    assert!(real.contains("From: Joe User <joseph.user@mumail.test>"), "{real}");
    assert!(real.contains("=== remote\nX-Mail-Args: <s@mumail.test>"), "{real}");
    same(&real, &ours);
}

/// header_checks(5) actions, the SMTP replies they give and what reaches
/// the next hop, against the real Postfix 3.7.
#[test]
fn header_checks_match_real_postfix() {
    const CHECKS: &str = "/^Subject: reject me/ REJECT no spam here\n/^Subject: reject plain/ REJECT\n\
        /^Subject: reject code/ REJECT 4.7.1 try later\n/^X-Drop:/ IGNORE\n/^X-Old: (.*)/ REPLACE X-New: $1\n\
        /^X-Pre:/ PREPEND X-Added: yes\n/^Subject: warn me/ WARN careful\n/^Subject: hold me/ HOLD held it\n\
        /^Subject: discard me/ DISCARD gone\n/^Subject: info me/ INFO noted\n/^To: .*dunno/ DUNNO\n";
    const SEND: &str = r#"
import smtplib, sys
port = int(sys.argv[1])
for subj, extra in [("reject me", ""), ("reject plain", ""), ("reject code", ""), ("edits", "X-Drop: a\nX-Old: value\nX-Pre: p\nTo: joe, dunno\n"),
                    ("warn me", ""), ("hold me", ""), ("discard me", ""), ("info me", ""), ("folded", "X-Old: one\n two\n")]:
    s = smtplib.SMTP('127.0.0.1', port)
    s.ehlo('client.example')
    msg = "Subject: %s\n%sFrom: a@x.test\n\nbody\n" % (subj, extra)
    s.mail('s@x.test'); s.rcpt('t@y.test')
    try:
        code, text = s.data(msg.replace("\n", "\r\n").encode())
    except smtplib.SMTPDataError as e:
        code, text = e.smtp_code, e.smtp_error
    text = text.decode()
    print(subj, code, text.split(' queued as ')[0])
    s.quit()
"#;
    let Some((real, ours)) = through_both(SEND, "header_checks = regexp:{d}/hc\n", &[("hc", CHECKS)], 4) else {
        return;
    };
    assert!(real.contains("reject me 550 5.7.1 no spam here"), "{real}");
    assert!(real.contains("X-New: value\nX-Added: yes\nX-Pre: p\n"), "{real}");
    assert!(
        real.contains("reject: header Subject: reject me from localhost[127.0.0.1]; from=<s@x.test> to=<t@y.test> proto=ESMTP helo=<client.example>: 5.7.1 no spam here"),
        "{real}"
    );
    same(&real, &ours);
}

/// MIME-aware content checks against the real Postfix 3.7: header_checks
/// reach attachment headers through mime_header_checks (default
/// `$header_checks`: the classic rule against `.exe` attachments) and an
/// attached message's headers through nested_header_checks; body_checks
/// (REJECT, IGNORE, REPLACE, PREPEND, WARN, HOLD) see body lines but not
/// the headers of parts; REDIRECT and BCC change the recipients.
#[test]
fn mime_and_body_checks_match_real_postfix() {
    const HC: &str = "/^Content-(Disposition|Type):.*name *= *\"?[^\"]*\\.(exe|bat)\"?/ REJECT executables are not accepted\n\
        /^Subject: nested evil/ REJECT 5.7.0 nested message refused\n/^Content-Description: tag me/ PREPEND X-Tagged: part\n\
        /^Subject: redirect me/ REDIRECT other@z.test\n/^Subject: bcc me/ BCC copy@z.test\n/^Subject: bad redirect/ REDIRECT nobody\n\
        /^X-Strip-Me:/ STRIP stripped it\n/^X-Strip-Quiet:/ STRIP\n/^Subject: pass me/ PASS trusted sender\n";
    const BC: &str = "/^buy now/ REJECT no spam here\n/^drop this line/ IGNORE\n/^old line (.*)/ REPLACE new line $1\n\
        /^warn body/ WARN body warning\n/^hold body/ HOLD held body\n/^mark this/ PREPEND marked:\n/^Content-Type: text.plain/ REJECT never for part headers\n/^strip this line/ STRIP\n";
    const SEND: &str = r#"
import smtplib, sys
port = int(sys.argv[1])
def mp(subj, part_headers, body):
    return ("Subject: %s\nFrom: a@x.test\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"BB\"\n\n"
            "preamble\n--BB\nContent-Type: text/plain\n\n%s\n--BB\n%s\nAAAA\n--BB--\nepilogue\n" % (subj, body, part_headers))
msgs = [
    ("exe", mp("exe", "Content-Type: application/octet-stream; name=\"run.exe\"\nContent-Transfer-Encoding: base64\n", "hello")),
    ("pdf", mp("pdf", "Content-Type: application/pdf; name=\"doc.pdf\"\nContent-Description: tag me\n",
               "keep\ndrop this line\nold line one\nmark this\nlast")),
    ("spam", "Subject: spam\nFrom: a@x.test\n\nhello\nbuy now cheap\n"),
    ("nested", "Subject: nested\nFrom: a@x.test\nMIME-Version: 1.0\nContent-Type: message/rfc822\n\n"
               "Subject: nested evil\nFrom: b@x.test\n\ninner body\n"),
    ("nested ok", "Subject: nested ok\nFrom: a@x.test\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=O\n\n"
                  "--O\nContent-Type: message/rfc822\n\nSubject: inner\nFrom: b@x.test\nContent-Type: text/plain\n\nold line two\n--O--\n"),
    ("warn", "Subject: warn\nFrom: a@x.test\n\nwarn body here\n"),
    ("hold", "Subject: hold\nFrom: a@x.test\n\nhold body please\n"),
    ("plain header", "Subject: plain header\nFrom: a@x.test\nContent-Type: text/plain\n\nContent-Type: text/plain in the body\n"),
    ("redirect me", "Subject: redirect me\nFrom: a@x.test\n\nbody\n"),
    ("bcc me", "Subject: bcc me\nFrom: a@x.test\n\nbody\n"),
    ("bad redirect", "Subject: bad redirect\nFrom: a@x.test\n\nbody\n"),
    ("strip", "Subject: strip\nX-Strip-Me: yes\nX-Strip-Quiet: 1\nFrom: a@x.test\n\nkeep\nstrip this line now\nend\n"),
    ("pass me", "Subject: pass me\nFrom: a@x.test\n\nbuy now cheap\nold line three\n"),
    ("redirect me too", "Subject: redirect me too\nFrom: a@x.test\n\nbuy now cheap\n"),
]
"#;
    let extra = "header_checks = regexp:{d}/hc\nbody_checks = regexp:{d}/bc\n";
    let Some((real, ours)) = through_both(&send_each(SEND), extra, &[("hc", HC), ("bc", BC)], 6) else {
        return;
    };
    // The real run exercised what the test is about.
    assert!(real.contains("exe 550 5.7.1 executables are not accepted"), "{real}");
    assert!(real.contains("nested 550 5.7.0 nested message refused"), "{real}");
    assert!(real.contains("spam 550 5.7.1 no spam here"), "{real}");
    assert!(real.contains("new line one"), "{real}");
    same(&real, &ours);
}

/// A sender script for `through_both`: `msgs` (Python defining `msgs`,
/// a list of (subject, text with LF line ends)) then one session each,
/// printing the reply to DATA.
fn send_each(msgs: &str) -> String {
    format!(
        "{msgs}\nfor subj, msg in msgs:\n    s = smtplib.SMTP('127.0.0.1', port)\n    s.ehlo('client.example')\n\
         \x20   s.mail('s@x.test'); s.rcpt('t@y.test')\n    try:\n        code, text = s.data(msg.replace(\"\\n\", \"\\r\\n\").encode())\n\
         \x20   except smtplib.SMTPDataError as e:\n        code, text = e.smtp_code, e.smtp_error\n\
         \x20   print(subj, code, text.decode().split(' queued as ')[0])\n    s.quit()\n"
    )
}

fn same(real: &str, ours: &str) {
    let (r, o): (Vec<&str>, Vec<&str>) = (real.lines().collect(), ours.lines().collect());
    let diffs: Vec<String> = (0..r.len().max(o.len()))
        .filter_map(|i| {
            let (a, b) = (r.get(i).copied().unwrap_or("<none>"), o.get(i).copied().unwrap_or("<none>"));
            (a != b).then(|| format!("line {i}\nreal: {a}\nours: {b}"))
        })
        .collect();
    assert!(
        diffs.is_empty(),
        "{} lines differ:\n{}\n\nreal:\n{real}\nours:\n{ours}",
        diffs.len(),
        diffs.join("\n")
    );
}

/// Runs the Python `sender` (argv[1] the port) against the real Postfix
/// and against our hub, on the same main.cf (`extra` appended, `{d}` the
/// config directory; `files` written there), each relaying to its own
/// smtp-sink; returns each side's sender output and collected messages.
/// None when the real Postfix is not installed.
fn through_both(sender: &str, extra: &str, files: &[(&str, &str)], expect: usize) -> Option<(String, String)> {
    const SMTP_SINK: &str = "/usr/sbin/smtp-sink";
    if !can_run("messages vs postfix", &[POSTFIX, SMTP_SINK]) {
        return None;
    }
    let d = tempfile::tempdir().unwrap();
    open_dir(d.path());
    let sink = |name: &str| smtp_sink(&d.path().join(name));
    let (real_dir, real_sink, _s1) = sink("real-sink");
    let (our_dir, our_sink, _s2) = sink("our-sink");
    let conf = |dir: &Path, sink: u16| {
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        format!(
            "compatibility_level = 3.6\nmyhostname = hub.mumail.test\nmydomain = mumail.test\nmyorigin = $mydomain\n\
             mydestination =\nmynetworks = 127.0.0.0/8 10.0.0.0/8\ninet_interfaces = loopback-only\n\
             smtpd_authorized_xclient_hosts = 127.0.0.0/8\nrelayhost = [127.0.0.1]:{sink}\nalias_maps =\n\
             maillog_file = {d}/maillog\nmaillog_file_prefixes = {d}\n\
             canonical_maps = inline:{{ {{old@mumail.test = new@mumail.test}}, {{@legacy.org = @mumail.test}}, {{joe = joseph.user}} }}\n\
             sender_canonical_maps = inline:{{ {{s1@mumail.test = S@mumail.test}} }}\n\
             recipient_canonical_maps = inline:{{ {{r1@mumail.test = R@mumail.test}}, {{rc@mumail.test = rc2@mumail.test}} }}\n\
             masquerade_domains = mumail.test\nmasquerade_exceptions = root\n{}",
            extra.replace("{d}", &dir.display().to_string()),
            d = dir.display()
        )
    };
    let send = |port: u16| {
        let o = Command::new("python3").args(["-c", sender, &port.to_string()]).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    // cleanup's header_checks lines, queue IDs and process IDs masked.
    let actions = |log: &Path| {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let mut v: Vec<String> = text
            .lines()
            .filter_map(|l| l.split_once("]: ").map(|(_, rest)| rest))
            .filter_map(|l| {
                // `warning: QID: message rejected: ...` without its QID.
                if let (Some(i), Some(j)) = (l.find(": message rejected: "), l.find(": ")) {
                    return Some(format!("{}{}", &l[..j], &l[i..]));
                }
                l.split_once(": ")
                    .filter(|(_, r)| r.contains(": header ") || r.contains(": body "))
                    .map(|(_, r)| r.to_string())
            })
            .collect();
        v.sort();
        v.join("\n") + "\n"
    };
    let collect = |dir: &Path| {
        wait_for("messages at the sink", std::time::Duration::from_secs(60), || {
            std::fs::read_dir(dir).map(|r| r.count()).unwrap_or(0) >= expect
        });
        std::thread::sleep(std::time::Duration::from_millis(500));
        let o = Command::new("python3")
            .args(["-c", HEADER_COLLECT, dir.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };

    let pf = d.path().join("postfix");
    let pport = PostfixInstance::prepare(&pf);
    std::fs::write(
        pf.join("main.cf"),
        format!(
            "queue_directory = {}\ndata_directory = {}\n{}",
            pf.join("queue").display(),
            pf.join("data").display(),
            conf(&pf, real_sink)
        ),
    )
    .unwrap();
    let real = {
        let _inst = PostfixInstance::start(&pf);
        wait_tcp(pport);
        let replies = send(pport);
        replies + &collect(&real_dir) + &actions(&pf.join("maillog"))
    };

    let hub = d.path().join("hub");
    open_dir(&hub);
    let hport = free_port();
    std::fs::write(
        hub.join("main.cf"),
        format!("queue_directory = {}\n{}", hub.join("queue").display(), conf(&hub, our_sink)),
    )
    .unwrap();
    std::fs::write(
        hub.join("master.cf"),
        format!("127.0.0.1:{hport} inet n - n - - smtpd\nsmtp unix - - n - - smtp\nrelay unix - - n - - smtp\n"),
    )
    .unwrap();
    let ours = {
        let mut cmd = Command::new(bin("postfix-master"));
        let log = std::fs::File::create(hub.join("stderr")).unwrap();
        cmd.args(["-c", hub.to_str().unwrap()]).stdout(log.try_clone().unwrap()).stderr(log);
        let _p = Proc::spawn("postfix-master", &mut cmd);
        wait_tcp(hport);
        let replies = send(hport);
        replies + &collect(&our_dir) + &actions(&hub.join("maillog"))
    };
    println!("{ours}");
    Some((real, ours))
}

/// A scripted milter (the peer both Postfix and our hub talk to, so that
/// the real Postfix shows what each filter answer must do): it decides
/// from the HELO name, the addresses and the Subject.
const MILTER: &str = r#"
import socket, struct, sys, threading
def pkt(c, code, data=b''):
    c.sendall(struct.pack('>I', len(data) + 1) + code + data)
def handle(c):
    f = c.makefile('rb')
    subject = b''
    while True:
        h = f.read(4)
        if len(h) < 4:
            return
        d = f.read(struct.unpack('>I', h)[0])
        cmd, p = d[:1], d[1:]
        if cmd == b'O':
            pkt(c, b'O', struct.pack('>III', 6, 0x1ff, 0))
        elif cmd == b'H':
            pkt(c, b'r' if p.startswith(b'helo-reject') else b'c')
        elif cmd == b'M':
            if p.startswith(b'<mail-reply@'):
                pkt(c, b'y', b'550 5.7.0 go away\0')
            else:
                pkt(c, b'c')
        elif cmd == b'R':
            pkt(c, b'r' if p.startswith(b'<u7+rcpt-reject@') else b't' if p.startswith(b'<u7+rcpt-tempfail@') else b'c')
        elif cmd == b'L':
            name, value = p.split(b'\0')[:2]
            if name.lower() == b'subject':
                subject = value
            pkt(c, b'r' if value == b'hdr-reject' else b'c')
        elif cmd in (b'C', b'T', b'N', b'B'):
            pkt(c, b'c')
        elif cmd == b'E':
            if subject == b'eom-reject':
                pkt(c, b'r')
            elif subject == b'eom-tempfail':
                pkt(c, b'y', b'452 4.3.0 hold on\0')
            elif subject == b'eom-discard':
                pkt(c, b'd')
            elif subject == b'eom-quarantine':
                pkt(c, b'q', b'spammy\0'); pkt(c, b'c')
            elif subject == b'modify':
                pkt(c, b'i', struct.pack('>I', 1) + b'X-Ins1\0one\0')
                pkt(c, b'i', struct.pack('>I', 3) + b'X-Ins3\0three\0')
                pkt(c, b'm', struct.pack('>I', 1) + b'X-Mailer\0\0')
                pkt(c, b'm', struct.pack('>I', 1) + b'Comments\0changed\0')
                pkt(c, b'm', struct.pack('>I', 1) + b'X-New\0created\0')
                pkt(c, b'h', b'X-Multi\0a\n\tb\0')
                pkt(c, b'+', b'<added@y.test>\0')
                pkt(c, b'-', b'<t@y.test>\0')
                pkt(c, b'e', b'<new@x.test>\0')
                pkt(c, b'b', b'new body\r\nline2\r\n')
                pkt(c, b'c')
            else:
                pkt(c, b'c')
        elif cmd == b'Q':
            return
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', int(sys.argv[1])))
s.listen(20)
while True:
    c, _ = s.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
"#;

fn start_milter() -> (u16, Proc) {
    let port = free_port();
    let p = Proc::spawn("milter", Command::new("python3").args(["-c", MILTER, &port.to_string()]));
    wait_tcp(port);
    (port, p)
}

const MILTER_SESSIONS: &str = "EHLO helo-reject.example
EHLO client.example
MAIL FROM:<a@b.org>
HELO client.example
QUIT

EHLO client.example
MAIL FROM:<mail-reply@b.org>
MAIL FROM:<a@b.org>
RCPT TO:<u7+rcpt-reject@mumail.test>
RCPT TO:<u7+rcpt-tempfail@mumail.test>
RCPT TO:<u7@mumail.test>
DATA
RAW Subject: eom-reject\\r\\n\\r\\nbody\\r\\n.\\r\\n
MAIL FROM:<a@b.org>
RCPT TO:<u7@mumail.test>
DATA
RAW Subject: eom-tempfail\\r\\n\\r\\nbody\\r\\n.\\r\\n
MAIL FROM:<a@b.org>
RCPT TO:<u7@mumail.test>
DATA
RAW Subject: hdr-reject\\r\\n\\r\\nbody\\r\\n.\\r\\n
MAIL FROM:<a@b.org>
RCPT TO:<u7@mumail.test>
DATA
RAW Subject: eom-discard\\r\\n\\r\\nbody\\r\\n.\\r\\n
MAIL FROM:<a@b.org>
RCPT TO:<u7@mumail.test>
DATA
RAW Subject: eom-quarantine\\r\\n\\r\\nbody\\r\\n.\\r\\n
MAIL FROM:<a@b.org>
RCPT TO:<u7@mumail.test>
RAW BDAT 29 LAST\\r\\nSubject: eom-reject\\r\\n\\r\\nbody\\r\\n
RSET
MAIL FROM:<a@b.org>
RCPT TO:<u7@mumail.test>
DATA
RAW Subject: fine\\r\\n\\r\\nbody\\r\\n.\\r\\n
QUIT
";

/// smtpd_milters: each answer of a filter at each step gives the reply
/// and the log line the real Postfix gives.
#[test]
fn milter_replies_match_real_postfix() {
    let (port, _m) = start_milter();
    differential(&format!("smtpd_milters = inet:127.0.0.1:{port}\n"), MILTER_SESSIONS, 25);
}

/// A filter that cannot be reached: milter_default_action, per filter too.
#[test]
fn unreachable_milter_matches_real_postfix() {
    let dead = free_port();
    let sessions =
        "EHLO client.example\nMAIL FROM:<a@b.org>\nRCPT TO:<u7@mumail.test>\nDATA\nRAW Subject: x\\r\\n\\r\\nbody\\r\\n.\\r\\nQUIT\n";
    differential(
        &format!("smtpd_milters = inet:127.0.0.1:{dead}\nmilter_default_action = tempfail\n"),
        sessions,
        3,
    );
    differential(
        &format!("smtpd_milters = inet:127.0.0.1:{dead}\nmilter_default_action = reject\n"),
        sessions,
        3,
    );
    differential(
        &format!("smtpd_milters = {{ inet:127.0.0.1:{dead}, default_action=accept }}\n"),
        sessions,
        5,
    );
}

/// The filter's changes to the message: headers inserted, changed,
/// deleted and added, the body replaced, recipients and sender changed;
/// the delivered messages compared with the real Postfix's.
#[test]
fn milter_changes_match_real_postfix() {
    const SEND: &str = r#"
import smtplib, sys
port = int(sys.argv[1])
for subj in ("modify", "plain"):
    s = smtplib.SMTP('127.0.0.1', port)
    s.ehlo('client.example')
    s.mail('s@x.test'); s.rcpt('t@y.test'); s.rcpt('u@y.test')
    msg = "Subject: %s\r\nFrom: a@x.test\r\nComments: old\r\nX-Mailer: m\r\nDate: Thu, 03 Dec 2026 08:00:00 +0000\r\nMessage-Id: <fixed@x.test>\r\n\r\nhello\r\n" % subj
    code, text = s.data(msg.encode())
    print(subj, code, text.decode().split(' queued as ')[0])
    s.quit()
"#;
    let (port, _m) = start_milter();
    let extra = format!("smtpd_milters = inet:127.0.0.1:{port}\n");
    let Some((real, ours)) = through_both(SEND, &extra, &[], 2) else {
        return;
    };
    assert!(real.contains("X-Ins1: one") && real.contains("new body"), "{real}");
    same(&real, &ours);
}

/// An smtp-sink in `dir/sink` (each message a file): the directory, the
/// port and the process.
fn smtp_sink(dir: &Path) -> (std::path::PathBuf, u16, Proc) {
    let sink_dir = dir.join("sink");
    std::fs::create_dir_all(&sink_dir).unwrap();
    std::fs::set_permissions(&sink_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let port = free_port();
    let p = Proc::spawn(
        "smtp-sink",
        Command::new("/usr/sbin/smtp-sink")
            .args([
                "-u",
                "nobody",
                "-d",
                &format!("{}/m.", sink_dir.display()),
                &format!("127.0.0.1:{port}"),
                "10",
            ])
            .stdout(std::process::Stdio::null()),
    );
    wait_tcp(port);
    (sink_dir, port, p)
}

/// Our hub in `hub`, relaying everything to the sink on `sink_port`, with
/// `main` added to main.cf and `services` (plus the smtp and relay
/// transports) as master.cf; waits for `port`.
fn relay_hub(hub: &Path, sink_port: u16, main: &str, services: &str, port: u16) -> Proc {
    open_dir(hub);
    std::fs::write(
        hub.join("main.cf"),
        format!(
            "compatibility_level = 3.6\nmyhostname = hub.mumail.test\nmydomain = mumail.test\nmydestination =\n\
             mynetworks = 127.0.0.0/8\ninet_interfaces = loopback-only\nrelayhost = [127.0.0.1]:{sink_port}\nalias_maps =\n\
             queue_directory = {q}\nmaillog_file = {h}/maillog\n{main}",
            q = hub.join("queue").display(),
            h = hub.display()
        ),
    )
    .unwrap();
    std::fs::write(
        hub.join("master.cf"),
        format!("{services}smtp unix - - n - - smtp\nrelay unix - - n - - smtp\n"),
    )
    .unwrap();
    let mut cmd = Command::new(bin("postfix-master"));
    cmd.args(["-c", hub.to_str().unwrap()]);
    let p = Proc::spawn("postfix-master", &mut cmd);
    wait_tcp(port);
    p
}

/// The real OpenDKIM as `smtpd_milters` of our hub: every message from an
/// internal client is signed on its way through, the signature goes on
/// top (before our Received:, where Postfix puts it) and verifies with
/// the published key (Debian's dkimpy, the key given without DNS).
#[test]
fn opendkim_signs_mail_through_our_hub() {
    const OPENDKIM: &str = "/usr/sbin/opendkim";
    const GENKEY: &str = "/usr/sbin/opendkim-genkey";
    const SMTP_SINK: &str = "/usr/sbin/smtp-sink";
    const DKIMPY: &str = "/usr/lib/python3/dist-packages/dkim/__init__.py";
    if !can_run("opendkim milter", &[OPENDKIM, GENKEY, SMTP_SINK, DKIMPY]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    open_dir(d.path());
    let keys = d.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let st = Command::new(GENKEY)
        .args(["-b", "1024", "-d", "x.test", "-s", "sel", "-D", keys.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(st.success());
    let mport = free_port();
    std::fs::write(
        d.path().join("opendkim.conf"),
        format!(
            "Syslog no\nMode sv\nDomain x.test\nSelector sel\nKeyFile {k}/sel.private\nRequireSafeKeys false\n\
             Socket inet:{mport}@127.0.0.1\nPidFile {k}/pid\nUserID root\nCanonicalization relaxed/simple\n\
             InternalHosts 127.0.0.1\nBackground no\n",
            k = keys.display()
        ),
    )
    .unwrap();
    let _dkim = Proc::spawn(
        "opendkim",
        Command::new(OPENDKIM).args(["-f", "-x", d.path().join("opendkim.conf").to_str().unwrap()]),
    );
    wait_tcp(mport);

    let (sink_dir, sport, _sink) = smtp_sink(d.path());

    let hub = d.path().join("hub");
    let hport = free_port();
    let _hub = relay_hub(
        &hub,
        sport,
        &format!("smtpd_milters = inet:127.0.0.1:{mport}\nnon_smtpd_milters = $smtpd_milters\n"),
        &format!("127.0.0.1:{hport} inet n - n - - smtpd\n"),
        hport,
    );
    let send = r#"
import smtplib, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]))
s.ehlo('client.example')
msg = ("From: Alice <a@x.test>\r\nTo: c@y.test\r\nSubject: signed\r\nDate: Thu, 03 Dec 2026 08:00:00 +0000\r\n"
       "Message-Id: <m1@x.test>\r\nX-Folded: one\r\n two\r\n\r\nhello\r\n.leading dot\r\nbye\r\n")
print(s.sendmail('a@x.test', ['c@y.test'], msg))
s.quit()
"#;
    let o = Command::new("python3").args(["-c", send, &hport.to_string()]).output().unwrap();
    assert!(
        o.status.success(),
        "{}\nhub log:\n{}",
        String::from_utf8_lossy(&o.stderr),
        std::fs::read_to_string(hub.join("maillog")).unwrap_or_default()
    );
    // And local submission through sendmail: non_smtpd_milters.
    let mut c = Command::new(bin("sendmail"))
        .args(["-C", hub.to_str().unwrap(), "-f", "a@x.test", "c@y.test"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        c.stdin.as_mut().unwrap(),
        b"From: a@x.test\nTo: c@y.test\nSubject: local\nMessage-Id: <m2@x.test>\n\nlocal body\n",
    )
    .unwrap();
    drop(c.stdin.take());
    assert!(c.wait().unwrap().success());
    wait_for("the signed messages at the sink", std::time::Duration::from_secs(60), || {
        std::fs::read_dir(&sink_dir).map(|r| r.count()).unwrap_or(0) >= 2
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    for file in std::fs::read_dir(&sink_dir).unwrap() {
        verify_dkim(&file.unwrap().path(), &keys.join("sel.txt"));
    }
}

/// The message the sink stored carries a DKIM signature above our
/// Received: that verifies with the key in `key_txt`.
fn verify_dkim(file: &Path, key_txt: &Path) {
    let text = std::fs::read_to_string(file).unwrap();
    // The sink's own lines and Received: come first; then the signature,
    // then our Received:.
    let after_sink = text.split_once("Received: from hub.mumail.test").map(|x| x.1).unwrap_or("");
    let sig_at = after_sink.find("\nDKIM-Signature: ").expect(&text);
    let ours_at = after_sink.find("\nReceived: ").expect(&text);
    assert!(sig_at < ours_at, "the signature is not above our Received:\n{text}");
    let verify = r#"
import dkim, re, sys
raw = open(sys.argv[1], 'rb').read().replace(b'\r\n', b'\n').replace(b'\n', b'\r\n')
# From the DKIM-Signature on (the sink's lines and its Received: above it).
msg = raw[raw.index(b'DKIM-Signature: '):]
txt = open(sys.argv[2]).read()
key = ''.join(re.findall(r'"([^"]*)"', txt))
ok = dkim.verify(msg, dnsfunc=lambda name, timeout=5: key.encode())
print('verified' if ok else 'FAILED')
"#;
    let o = Command::new("/usr/bin/python3")
        .args(["-c", verify, file.to_str().unwrap(), key_txt.to_str().unwrap()])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(out.trim(), "verified", "{}{}\n{text}", out, String::from_utf8_lossy(&o.stderr));
}

/// The after-queue content filter pattern (amavisd-new's): main.cf's
/// `content_filter = smtp:[127.0.0.1]:port` sends every message to the
/// filter, which hands it back to a reinjection listener with
/// `-o content_filter=`; a header check's FILTER picks another filter.
#[test]
fn content_filter_and_filter_action_route_through_the_filter() {
    const SMTP_SINK: &str = "/usr/sbin/smtp-sink";
    if !can_run("content filter", &[SMTP_SINK]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    open_dir(d.path());
    let (sink_dir, sport, _sink) = smtp_sink(d.path());
    let hub = d.path().join("hub");
    open_dir(&hub);
    let (hport, reinject, reinject2) = (free_port(), free_port(), free_port());
    std::fs::write(
        hub.join("hc"),
        format!("/^Subject: refilter/ FILTER smtp:[127.0.0.1]:{reinject2}\n"),
    )
    .unwrap();
    let _hub = relay_hub(
        &hub,
        sport,
        &format!(
            "content_filter = smtp:[127.0.0.1]:{reinject}\nheader_checks = regexp:{}/hc\n",
            hub.display()
        ),
        &format!(
            "127.0.0.1:{hport} inet n - n - - smtpd\n\
             127.0.0.1:{reinject} inet n - n - - smtpd\n  -o content_filter=\n  -o receive_override_options=no_header_body_checks,no_unknown_recipient_checks\n\
             127.0.0.1:{reinject2} inet n - n - - smtpd -o content_filter= -o receive_override_options=no_header_body_checks\n"
        ),
        hport,
    );
    let send = r#"
import smtplib, sys
for subj in ("one", "refilter"):
    s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]))
    s.sendmail('a@x.test', ['c@y.test'], "Subject: %s\r\nFrom: a@x.test\r\n\r\nbody\r\n" % subj)
    s.quit()
"#;
    let o = Command::new("python3").args(["-c", send, &hport.to_string()]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let t0 = std::time::Instant::now();
    while std::fs::read_dir(&sink_dir).map(|r| r.count()).unwrap_or(0) < 2 {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(15),
            "not both messages at the sink; hub log:\n{}",
            std::fs::read_to_string(hub.join("maillog")).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let log = std::fs::read_to_string(hub.join("maillog")).unwrap_or_default();
    for f in std::fs::read_dir(&sink_dir).unwrap() {
        let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
        // Our Received: twice (the first listener, then the reinjection),
        // the envelope sender kept.
        assert_eq!(text.matches("by hub.mumail.test (Postfix)").count(), 2, "{text}\n{log}");
        assert!(text.contains("X-Mail-Args: <a@x.test>"), "{text}");
    }
    assert!(log.contains(&format!("relay=127.0.0.1[127.0.0.1]:{reinject},")), "{log}");
    assert!(log.contains(&format!("relay=127.0.0.1[127.0.0.1]:{reinject2},")), "{log}");
    assert!(
        log.contains(
            &": filter: header Subject: refilter from localhost[127.0.0.1]; from=<a@x.test> to=<c@y.test> proto=ESMTP helo=<".to_string()
        ),
        "{log}"
    );
}

/// A policy server (SMTPD_POLICY_README) that records each request
/// (argv[2]) and answers by the recipient's `+extension`.
const POLICY: &str = r#"
import socket, sys, threading
port, record = int(sys.argv[1]), sys.argv[2]
lock = threading.Lock()
def answer(req):
    rcpt = req.get("recipient", "")
    ext = rcpt.split("@")[0].partition("+")[2]
    return {"reject": "REJECT policy says no", "code": "554 5.7.2 custom refusal",
            "defer": "DEFER_IF_PERMIT Service temporarily unavailable", "prepend": "PREPEND X-Policy: tagged",
            "warn": "WARN policy warning", "okay": "OK", "hold": "HOLD held by policy",
            "empty": "", "lower": "reject lower case"}.get(ext, "DUNNO")
def serve(c):
    f = c.makefile("rb")
    while True:
        req, lines = {}, []
        while True:
            l = f.readline()
            if not l:
                return
            l = l.decode().rstrip("\n")
            if l == "":
                break
            k, _, v = l.partition("=")
            req[k] = v
            lines.append(l)
        with lock:
            with open(record, "a") as out:
                out.write("\n".join(lines) + "\n--\n")
        c.sendall(("action=%s\n\n" % answer(req)).encode())
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port)); s.listen(16)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// check_policy_service: both servers ask the same policy server.  The
/// replies and log lines match the real Postfix's, and so do the requests
/// (attribute names, order and values), but for the ports, the instance
/// and the queue ID's value.
#[test]
fn policy_service_matches_real_postfix() {
    if !can_run("policy vs postfix", &[POSTFIX]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let rec = d.path().join("requests");
    let port = free_port();
    let _p = Proc::spawn(
        "policy",
        Command::new("python3").args(["-c", POLICY, &port.to_string(), rec.to_str().unwrap()]),
    );
    wait_tcp(port);
    let sessions = "EHLO client.example\nMAIL FROM:<a@b.org> SIZE=100\nRCPT TO:<u7+reject@mumail.test>\n\
        RCPT TO:<u7+code@mumail.test>\nRCPT TO:<u7+warn@mumail.test>\nRCPT TO:<u7+lower@mumail.test>\n\
        RCPT TO:<u7+okay@mumail.test>\nRCPT TO:<u7+prepend@mumail.test>\nRCPT TO:<u7+empty@mumail.test>\n\
        RCPT TO:<u7+defer@mumail.test>\nDATA\nRAW Subject: x\\r\\n\\r\\nbody\\r\\n.\\r\\nQUIT\n\n\
        HELO other.example\nMAIL FROM:<>\nRCPT TO:<u7@mumail.test>\nRCPT TO:<u7+hold@mumail.test>\nDATA\n\
        RAW Subject: y\\r\\n\\r\\nbody\\r\\n.\\r\\nQUIT\n";
    differential(
        &format!(
            "smtpd_recipient_restrictions = check_policy_service inet:127.0.0.1:{port}, permit\n\
             smtpd_data_restrictions = check_policy_service {{ inet:127.0.0.1:{port}, policy_context=data }}\n"
        ),
        sessions,
        12,
    );
    // The requests, by server (server_port), volatile values masked.
    let text = std::fs::read_to_string(&rec).unwrap();
    let mut by_server: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for req in text.split("--\n").filter(|r| !r.trim().is_empty()) {
        let server = req.lines().find_map(|l| l.strip_prefix("server_port=")).unwrap_or("").to_string();
        let masked: Vec<String> = req
            .lines()
            .map(|l| match l.split_once('=') {
                Some((k @ ("client_port" | "server_port" | "instance"), _)) => format!("{k}=*"),
                Some(("queue_id", v)) => format!("queue_id={}", if v.is_empty() { "" } else { "*" }),
                _ => l.to_string(),
            })
            .collect();
        by_server.entry(server).or_default().push(masked.join("\n"));
    }
    assert_eq!(by_server.len(), 2, "requests from both servers:\n{text}");
    // Ours ran last: its server asked the last request.
    let last_port = text.rsplit("server_port=").next().unwrap().lines().next().unwrap().to_string();
    let ours = by_server.remove(&last_port).unwrap();
    let real = by_server.into_values().next().unwrap();
    assert!(ours.len() >= 12, "{ours:?}");
    // The real Postfix may have run the sessions more than once.
    let real = &real[real.len() - ours.len()..];
    for (r, o) in real.iter().zip(&ours) {
        assert_eq!(r, o, "request differs:\nreal:\n{r}\nours:\n{o}");
    }

    // A server that cannot be reached: its default action, per service too.
    let dead = free_port();
    let sessions = "EHLO client.example\nMAIL FROM:<a@b.org>\nRCPT TO:<u7@mumail.test>\nQUIT\n";
    differential(
        &format!(
            "smtpd_recipient_restrictions = check_policy_service inet:127.0.0.1:{dead}, permit\n\
             smtpd_policy_service_try_limit = 1\n"
        ),
        sessions,
        4,
    );
    differential(
        &format!(
            "smtpd_recipient_restrictions = check_policy_service {{ inet:127.0.0.1:{dead}, default_action=DUNNO, try_limit=1 }}, reject\n"
        ),
        sessions,
        4,
    );
}

/// smtpd_log_access_permit_actions (`permit:` lines, each naming what
/// the action looked at; an access table's OK names the table),
/// smtpd_command_filter, smtpd_discard_ehlo_keyword_address_maps,
/// smtpd_reject_footer_maps; VRFY under the recipient restrictions, ETRN
/// inside a transaction, HELO after EHLO keeping ESMTP.
#[test]
fn permit_logging_command_filter_and_footer_maps_match_real_postfix() {
    let (real, ours) = differential(
        "smtpd_log_access_permit_actions = static:all\nsmtpd_command_filter = inline:{ {xyzzy=NOOP}, {helo=HELO fixed.example} }\n\
         smtpd_discard_ehlo_keyword_address_maps = inline:{ {127.0.0.1=pipelining,etrn,vrfy} }\n\
         smtpd_reject_footer_maps = regexp:${config_directory}/footers.regexp\n\
         smtpd_authorized_xclient_hosts = 127.0.0.0/8\n\
         smtpd_relay_restrictions = permit_mynetworks, permit_auth_destination, reject\n",
        "EHLO client.example\nXYZZY\nHELO\nETRN mumail.test\nVRFY u7\nVRFY u7@mumail.test\nMAIL FROM:<a@b.org>\nRCPT TO:<u7@mumail.test>\n\
         RCPT TO:<x@elsewhere.example>\nRCPT TO:<rejected@mumail.test>\nRCPT TO:<okay@mumail.test>\nETRN mumail.test\nETRN\nQUIT\n\n\
         XCLIENT ADDR=10.1.2.3 NAME=[UNAVAILABLE]\nEHLO client.example\nMAIL FROM:<a@b.org>\nRCPT TO:<x@elsewhere.example>\nQUIT\n",
        16,
    );
    let lines = [
        "]: discarding EHLO keywords: ETRN PIPELINING VRFY",
        "]: localhost[127.0.0.1]: replacing command \"XYZZY\" with \"NOOP\"",
        "]: localhost[127.0.0.1]: replacing command \"HELO\" with \"HELO fixed.example\"",
    ];
    real_log_has(&real, &lines);
    for l in lines {
        assert!(ours.contains(l), "{l}:\n{ours}");
    }
}

/// permit_mx_backup against the same dnsmasq data: a domain whose backup
/// MX is this host (127.0.0.1, inet_interfaces = loopback-only), one whose
/// primary MX is, one without MX whose address is this host's, one that
/// has nothing to do with it; then permit_mx_backup_networks.
#[test]
fn permit_mx_backup_matches_real_postfix() {
    const DNSMASQ: &str = "/usr/sbin/dnsmasq";
    if !can_run("hub vs postfix mx backup", &[POSTFIX, DNSMASQ, "/usr/bin/unshare"]) {
        return;
    }
    let server = "127.1.53.55";
    let d = tempfile::tempdir().unwrap();
    let _dns = dnsmasq(
        d.path(),
        server,
        &[
            "--host-record=mx1.backup.test,192.0.2.10",
            "--host-record=mx2.backup.test,127.0.0.1",
            "--mx-host=backup.test,mx1.backup.test,10",
            "--mx-host=backup.test,mx2.backup.test,20",
            "--mx-host=primary.test,mx2.backup.test,10",
            "--mx-host=primary.test,mx1.backup.test,20",
            "--host-record=nomx.test,127.0.0.1",
            "--mx-host=other.test,mx1.backup.test,10",
        ],
    );
    const SESSIONS: &str = "EHLO client.example\nMAIL FROM:<a@b.org>\nRCPT TO:<a@backup.test>\nRCPT TO:<a@primary.test>\n\
        RCPT TO:<a@nomx.test>\nRCPT TO:<a@other.test>\nRCPT TO:<a%b@backup.test>\nRCPT TO:<u7@mumail.test>\nQUIT\n";
    let base =
        "smtpd_relay_restrictions = permit_mx_backup, reject_unauth_destination\nsmtpd_log_access_permit_actions = permit_mx_backup\n";
    let (real, _) = differential_in(base, SESSIONS, 8, Some(server));
    real_log_has(&real, &["action=permit_mx_backup for Recipient address=a@backup.test"]);
    // The primary MX (192.0.2.10) must be in permit_mx_backup_networks.
    differential_in(
        &format!("{base}permit_mx_backup_networks = 198.51.100.0/24\n"),
        SESSIONS,
        8,
        Some(server),
    );
    differential_in(
        &format!("{base}permit_mx_backup_networks = 192.0.2.0/24\n"),
        SESSIONS,
        8,
        Some(server),
    );
}

/// `hopcount_limit` (a mail loop's Received: headers) and
/// `header_size_limit` (one header too big), against the real Postfix
/// 3.7: the replies to DATA and what reaches the next hop.
#[test]
fn hop_and_header_limits_match_real_postfix() {
    const SEND: &str = r#"
import smtplib, sys
port = int(sys.argv[1])
def hops(n):
    return "".join("Received: from hop%d.example (hop%d.example [192.0.2.%d])\n\tby relay.example; Tue, 1 Dec 2026 10:00:%02d +0000\n" % (i, i, i, i) for i in range(n))
msgs = [("hops %d" % n, hops(n) + "Subject: hops %d\nFrom: a@x.test\n\nbody\n" % n) for n in (3, 4, 5, 6)]
msgs.append(("delivered", "Delivered-To: a@x.test\n" * 6 + "Subject: delivered\nFrom: a@x.test\n\nbody\n"))
big = "X-Big: " + "\n ".join("word%04d" % i + "x" * 40 for i in range(60)) + "\n"
msgs.append(("big header", "Subject: big header\n" + big + "X-After: kept\nFrom: a@x.test\n\nbody\n"))
msgs.append(("long line", "Subject: long line\nX-Long: " + "y" * 1500 + "\nX-After: kept\nFrom: a@x.test\n\nbody\n"))
msgs.append(("two", "Subject: two\nX-Two: " + "a" * 893 + "\n " + "b" * 299 + "\nX-After: kept\nFrom: a@x.test\n\nbody\n"))
msgs.append(("three", "Subject: three\nX-Three: " + "a" * 980 + "\n cc\n dd\n ee\nX-After: kept\nFrom: a@x.test\n\nbody\n"))
msgs.append(("exact", "Subject: exact\nX-Exact: " + "e" * 991 + "\nX-Over: " + "o" * 993 + "\nFrom: a@x.test\n\nbody\n"))
msgs.append(("four", "Subject: four\nX-Four: " + "a" * 950 + "\n " + "b" * 100 + "\n cc\n " + "d" * 30 + "\n ee\nX-After: kept\nFrom: a@x.test\n\nbody\n"))
msgs.append(("fits", "Subject: fits\nX-Fits: " + "a" * 950 + "\n " + "b" * 40 + "\n c\nX-After: kept\nFrom: a@x.test\n\nbody\n"))
msgs.append(("body lines", "Subject: body lines\nFrom: a@x.test\n\nshort\n" + "z" * 2500 + "\n." + "d" * 1200 + "\n" + "q" * 998 + "\nend\n"))
msgs.append(("verylong", "Subject: verylong\nX-VL: " + "v" * 3000 + "\n more\nFrom: a@x.test\n\nbody\n"))
"#;
    let extra = "hopcount_limit = 5\nheader_size_limit = 1000\n";
    let Some((real, ours)) = through_both(&send_each(SEND), extra, &[], 11) else {
        return;
    };
    // The real run exercised what the test is about: with the server's
    // own Received: header, 4 earlier ones reach the limit of 5;
    // Delivered-To: does not count; a header's continuation lines past
    // 1,000 bytes are gone, a first line is cut at 1,000 bytes.
    assert!(
        real.contains("hops 3 250 2.0.0 Ok") && real.contains("hops 4 554 5.4.0 Error: too many hops"),
        "{real}"
    );
    assert!(real.contains("delivered 250 2.0.0 Ok"), "{real}");
    assert!(real.contains(" word0018") && !real.contains("word0019"), "{real}");
    assert!(real.contains("X-Three: ") && real.contains("\n dd\nX-After: kept"), "{real}");
    assert_eq!(real.matches("warning: message rejected: hopcount exceeded").count(), 3, "{real}");
    // Lines past smtp_line_length_limit (998) go out broken with CRLF SPACE.
    assert!(real.contains(&format!("\n {}\nqqq", "d".repeat(203))), "{real}");
    same(&real, &ours);
}

/// The SMTP client's `smtp_tcp_port` (a next hop without a port),
/// `smtp_bind_address` (the sink sees the message come from that
/// address) and `smtp_data_done_timeout` (a server mute after the final
/// dot: deferred with Postfix's reason), and smtpd's `queue_minfree` (less
/// free queue space than that: 452 at MAIL, as Postfix's
/// smtpd_check_queue).
#[test]
fn client_port_bind_address_timeout_and_queue_minfree() {
    const SMTP_SINK: &str = "/usr/sbin/smtp-sink";
    if !can_run("client port and bind address", &[SMTP_SINK]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    open_dir(d.path());
    let (sink_dir, sink_port, _sink) = smtp_sink(&d.path().join("sink"));
    let port = free_port();
    let services = format!("127.0.0.1:{port} inet n - n - - smtpd\n");
    let main = format!("relayhost = [127.0.0.1]\nsmtp_tcp_port = {sink_port}\nsmtp_bind_address = 127.0.0.2\n");
    let _hub = relay_hub(&d.path().join("hub"), sink_port, &main, &services, port);
    const SEND: &str = r#"
import smtplib, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]))
try:
    s.sendmail('s@x.test', ['t@y.test'], b'Subject: bound\r\n\r\nbody\r\n'); print('sent')
except smtplib.SMTPException as e:
    print('refused', e)
s.quit()
"#;
    let out = python(SEND, &[&port.to_string()]);
    assert!(out.contains("sent"), "{out}");
    wait_for("the message at the sink", std::time::Duration::from_secs(60), || {
        std::fs::read_dir(&sink_dir).map(|r| r.count()).unwrap_or(0) >= 1
    });
    let file = std::fs::read_dir(&sink_dir).unwrap().next().unwrap().unwrap().path();
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.contains("X-Client-Addr: 127.0.0.2"), "{text}");
    assert!(text.contains("Subject: bound"), "{text}");

    let port2 = free_port();
    let services = format!("127.0.0.1:{port2} inet n - n - - smtpd\n");
    let _full = relay_hub(
        &d.path().join("hub2"),
        sink_port,
        "queue_minfree = 1000000000000000000\n",
        &services,
        port2,
    );
    let out = python(SEND, &[&port2.to_string()]);
    assert!(
        out.contains("refused") && out.contains("4.3.1 Insufficient system storage"),
        "{out}"
    );

    // smtp_data_done_timeout: a server that never answers the final dot;
    // the message waits in the queue with Postfix's reason.
    const MUTE: &str = r#"
import socket, sys, threading, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(5)
def serve(c):
    f = c.makefile('rb'); c.sendall(b'220 mute ESMTP\r\n')
    while True:
        l = f.readline()
        if not l:
            return
        if l.upper().startswith(b'DATA'):
            c.sendall(b'354 go\r\n')
            while f.readline() not in (b'.\r\n', b''):
                pass
            time.sleep(60)
            return
        c.sendall(b'250 ok\r\n')
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;
    let mute_port = free_port();
    let _mute = Proc::spawn("mute server", Command::new("python3").args(["-c", MUTE, &mute_port.to_string()]));
    wait_tcp(mute_port);
    let port3 = free_port();
    let services = format!("127.0.0.1:{port3} inet n - n - - smtpd\n");
    let hub3 = d.path().join("hub3");
    let main = format!("relayhost = [127.0.0.1]:{mute_port}\nsmtp_data_done_timeout = 2s\n");
    let _slow = relay_hub(&hub3, sink_port, &main, &services, port3);
    let out = python(SEND, &[&port3.to_string()]);
    assert!(out.contains("sent"), "{out}");
    let want = format!(
        "conversation with 127.0.0.1[127.0.0.1]:{mute_port} timed out while sending end of data -- message may be sent more than once"
    );
    wait_for("the timeout in the log", std::time::Duration::from_secs(30), || {
        std::fs::read_to_string(hub3.join("maillog")).unwrap_or_default().contains(&want)
    });
    let log = std::fs::read_to_string(hub3.join("maillog")).unwrap_or_default();
    assert!(log.contains("status=deferred"), "{log}");
}

/// `strict_rfc821_envelopes = yes`: an address not in angle brackets is
/// refused, with smtpd's warning; text after one is an unsupported
/// option (quoted as the client wrote it).
#[test]
fn strict_envelopes_match_real_postfix() {
    const SESSIONS: &str = "EHLO client.example
MAIL FROM: a@b.org
MAIL FROM:a@b.org
MAIL FROM:<a@b.org> (comment)
MAIL FROM:<a@b.org>
RCPT TO:u7@mumail.test
RCPT TO:<u7@mumail.test> junk
RCPT TO:<u7@mumail.test>
RSET
MAIL FROM:<a b@c>
MAIL FROM:<a@b
MAIL FROM:<>
QUIT
";
    let (real, ours) = differential("strict_rfc821_envelopes = yes\n", SESSIONS, 13);
    // smtpd's warnings: the address as given, none for an unterminated one.
    let warnings = |log: &str| -> Vec<String> {
        log.lines()
            .filter_map(|l| l.split_once("]: warning: Illegal address syntax").map(|(_, w)| w.to_string()))
            .collect()
    };
    if !real.is_empty() {
        assert_eq!(warnings(&real).len(), 4, "{real}");
        assert_eq!(warnings(&real), warnings(&ours), "{ours}");
    }
}
