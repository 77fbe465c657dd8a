//! The hub end to end: swaks and Python's smtplib into our postfix-master,
//! LMTP into our lmtpd, the mail read back over IMAP.  Replies, log lines,
//! restrictions, SMTP smuggling, deferral while the back end is down, and
//! no acknowledged message lost across a kill -9 under load.

mod harness;
use harness::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const SWAKS: &str = "/usr/bin/swaks";

fn open_dir(p: &Path) {
    std::fs::create_dir_all(p).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

struct Hub {
    dir: PathBuf,
    port: u16,
    proc: Option<Proc>,
}

impl Hub {
    /// A hub config in `dir` delivering `mumail.test` to the back end's
    /// LMTP socket; `extra` lines are appended to main.cf.
    fn new(dir: &Path, lmtp_sock: &Path, extra: &str) -> Hub {
        open_dir(dir);
        let port = free_port();
        std::fs::write(dir.join("users"), "u7 x\nyes1 x\nghost x\n").unwrap();
        if !dir.join("aliases").exists() {
            std::fs::write(dir.join("aliases"), "postmaster: u7\n").unwrap();
        }
        std::fs::write(
            dir.join("main.cf"),
            format!(
                "compatibility_level = 3.6\nqueue_directory = {d}/queue\nmaillog_file = {d}/maillog\nmyhostname = hub.mumail.test\n\
                 mydomain = mumail.test\nmydestination = mumail.test\nmynetworks = 10.0.0.0/8\n\
                 local_recipient_maps = hash:{d}/users\nmailbox_transport = lmtp:unix:{s}\nrecipient_delimiter = +\n\
                 alias_maps = hash:{d}/aliases\nalias_database = hash:{d}/aliases\n\
                 minimal_backoff_time = 1s\nmaximal_backoff_time = 2s\nqueue_run_delay = 1s\n{extra}",
                d = dir.display(),
                s = lmtp_sock.display()
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("master.cf"),
            format!(
                "127.0.0.1:{port} inet n - n - - smtpd\nlmtp unix - - n - - lmtp\nerror unix - - n - - error\n\
                 local unix - n n - - local\ndiscard unix - - n - - discard\n"
            ),
        )
        .unwrap();
        let mut h = Hub {
            dir: dir.to_path_buf(),
            port,
            proc: None,
        };
        h.start();
        h
    }

    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("stderr"))
            .unwrap();
        let mut cmd = Command::new(bin("postfix-master"));
        cmd.args(["-c", self.dir.to_str().unwrap()])
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.proc = Some(Proc::spawn("postfix-master", &mut cmd));
        wait_tcp(self.port);
    }

    fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("maillog")).unwrap_or_default()
    }

    fn swaks(&self, args: &[&str]) -> String {
        let o = Command::new(SWAKS)
            .args(["--server", &format!("127.0.0.1:{}", self.port), "--timeout", "20"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

/// The back end with INBOXes for u7 and yes1, its dirs open to the
/// hub's mail_owner.
fn backend(root: &Path) -> Backend {
    let be = root.join("backend");
    open_dir(&be);
    let b = Backend::start(&be, "");
    for sub in ["conf", "conf/socket"] {
        open_dir(&be.join(sub));
    }
    python(
        "import imaplib, sys\nfor u in ('u7', 'yes1'):\n    M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1])); M.login(u, 'testpw'); M.logout()\n",
        &[&b.imap_port.to_string()],
    );
    b
}

/// Message-IDs (or Subjects) in a user's INBOX, one per line.
fn inbox_headers(imap_port: u16, user: &str, header: &str) -> Vec<String> {
    let out = python(
        r#"
import imaplib, sys
M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1])); M.login(sys.argv[2], 'testpw')
typ, data = M.select('INBOX')
if int(data[0]) == 0:
    sys.exit(0)
typ, data = M.fetch('1:*', '(BODY.PEEK[HEADER.FIELDS (%s)])' % sys.argv[3])
for item in data:
    if isinstance(item, tuple):
        v = item[1].decode().strip()
        print(v.split(':', 1)[1].strip() if ':' in v else '')
"#,
        &[&imap_port.to_string(), user, header],
    );
    out.lines().map(str::to_string).filter(|l| !l.is_empty()).collect()
}

#[test]
fn hub_replies_restrictions_and_delivery() {
    if !can_run("hub smtp", &[SWAKS, "/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    open_dir(d.path());
    let b = backend(d.path());
    let hub = Hub::new(&d.path().join("hub"), &b.lmtp_sock, "");

    // EHLO keywords in Postfix's order; a message delivered to u7+detail.
    let out = hub.swaks(&[
        "--helo",
        "client.example",
        "--from",
        "a@b.org",
        "--to",
        "u7+x@mumail.test",
        "--h-Subject",
        "first",
        "--h-Message-Id",
        "<first@t>",
    ]);
    let ehlo: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("<-  250"))
        .map(|l| l[5..].trim_start_matches(['-', ' '].as_ref()))
        .collect();
    assert!(out.contains("<-  220 hub.mumail.test ESMTP Postfix"), "{out}");
    let kw = [
        "PIPELINING",
        "SIZE 10240000",
        "VRFY",
        "ETRN",
        "ENHANCEDSTATUSCODES",
        "8BITMIME",
        "DSN",
        "SMTPUTF8",
        "CHUNKING",
    ];
    let pos: Vec<usize> = kw
        .iter()
        .map(|k| ehlo.iter().position(|l| l.ends_with(k)).unwrap_or_else(|| panic!("{k} in {out}")))
        .collect();
    assert!(pos.windows(2).all(|w| w[0] < w[1]), "{out}");
    assert!(out.contains("<-  250 2.1.0 Ok") && out.contains("<-  250 2.1.5 Ok"), "{out}");
    let qid = out
        .lines()
        .find_map(|l| l.strip_prefix("<-  250 2.0.0 Ok: queued as "))
        .unwrap_or_else(|| panic!("{out}"))
        .trim()
        .to_string();
    assert!(qid.len() >= 10 && qid.chars().all(|c| c.is_ascii_hexdigit()), "{qid}");
    wait_for("delivery", Duration::from_secs(20), || {
        inbox_headers(b.imap_port, "u7", "SUBJECT").contains(&"first".to_string())
    });
    let log = hub.log();
    for want in [
        "postfix/smtpd[".to_string(),
        "connect from localhost[127.0.0.1]".to_string(),
        format!("{qid}: client=localhost[127.0.0.1]"),
        "postfix/cleanup[".to_string(),
        format!("{qid}: message-id=<first@t>"),
        format!("{qid}: from=<a@b.org>, size="),
        "nrcpt=1 (queue active)".to_string(),
        format!(
            "{qid}: to=<u7+x@mumail.test>, relay=hub.mumail.test[{}], delay=",
            b.lmtp_sock.display()
        ),
        "status=sent (250 2.1.5 ".to_string(),
        format!("{qid}: removed"),
        "disconnect from localhost[127.0.0.1] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5".to_string(),
    ] {
        assert!(log.contains(&want), "{want} not in\n{log}");
    }
    // The Received header in Postfix's form, for the one recipient.
    let recv = python(
        r#"
import imaplib, sys
M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1])); M.login('u7', 'testpw'); M.select('INBOX')
typ, data = M.fetch('1', '(BODY.PEEK[HEADER.FIELDS (RECEIVED)])')
print(data[0][1].decode())
"#,
        &[&b.imap_port.to_string()],
    );
    assert!(
        recv.contains(&format!("from client.example (localhost [127.0.0.1])\r\n\tby hub.mumail.test (Postfix) with ESMTP id {qid}\r\n\tfor <u7+x@mumail.test>; ")),
        "{recv}"
    );

    // Restrictions: unknown user, relay from outside mynetworks, bad syntax.
    let out = hub.swaks(&["--from", "a@b.org", "--to", "nobody@mumail.test"]);
    assert!(
        out.contains("<** 550 5.1.1 <nobody@mumail.test>: Recipient address rejected: User unknown in local recipient table"),
        "{out}"
    );
    let out = hub.swaks(&["--from", "a@b.org", "--to", "x@elsewhere.example"]);
    assert!(out.contains("<** 454 4.7.1 <x@elsewhere.example>: Relay access denied"), "{out}");
    let log = hub.log();
    assert!(
        log.contains("NOQUEUE: reject: RCPT from localhost[127.0.0.1]: 454 4.7.1 <x@elsewhere.example>: Relay access denied; from=<a@b.org> to=<x@elsewhere.example> proto=ESMTP helo=<"),
        "{log}"
    );

    // A raw session: pipelining, syntax errors, SMTP smuggling (a bare-LF
    // dot and a CR dot never end DATA), BDAT, limits.
    let script = r#"
import socket, sys
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=20)
f = s.makefile('rb')
def reply():
    lines = []
    while True:
        l = f.readline().decode().rstrip('\r\n')
        lines.append(l)
        if len(l) < 4 or l[3] != '-':
            return lines
def cmd(c):
    s.sendall(c.encode() + b'\r\n')
    return reply()
reply()
print(cmd('EHLO client.example')[-1])
print(cmd('MAIL FROM:<a@b.org> SIZE=99999999')[0])
print(cmd('MAIL FROM:<a b@c>')[0])
print(cmd('MAIL FROM:<a@b.org> FOO=1')[0])
print(cmd('RCPT TO:<u7@mumail.test>')[0])
print(cmd('DATA')[0])
print(cmd('MAIL FROM:<a@b.org>')[0])
print(cmd('MAIL FROM:<a@b.org>')[0])
print(cmd('RCPT TO:<u7@mumail.test>')[0])
print(cmd('DATA')[0])
s.sendall(b'Subject: smuggle\r\n\r\nline\n.\nMAIL FROM:<evil@x>\r\nRCPT TO:<yes1@mumail.test>\r\nDATA\r\nx\r.\rMAIL FROM:<evil2@x>\r\n.\r\n')
print(reply()[0])
print(cmd('MAIL FROM:<a@b.org>')[0])
print(cmd('RCPT TO:<yes1@mumail.test>')[0])
s.sendall(b'BDAT 21\r\nSubject: chunked\r\n\r\nB')
print(reply()[0])
s.sendall(b'BDAT 3 LAST\r\nx\r\n')
print(reply()[0])
print(cmd('RCPT TO:<u7@mumail.test>')[0])
print(cmd('X' * 3000)[0])
print(cmd('NOOP')[0])
print(cmd('QUIT')[0])
"#;
    let out = python(script, &[&hub.port.to_string()]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "250 CHUNKING", "{out}");
    assert_eq!(lines[1], "552 5.3.4 Message size exceeds fixed limit", "{out}");
    assert_eq!(lines[2], "501 5.1.7 Bad sender address syntax", "{out}");
    assert_eq!(lines[3], "555 5.5.4 Unsupported option: FOO=1", "{out}");
    assert_eq!(lines[4], "503 5.5.1 Error: need MAIL command", "{out}");
    assert_eq!(lines[5], "503 5.5.1 Error: need RCPT command", "{out}");
    assert_eq!(lines[6], "250 2.1.0 Ok", "{out}");
    assert_eq!(lines[7], "503 5.5.1 Error: nested MAIL command", "{out}");
    assert_eq!(lines[8], "250 2.1.5 Ok", "{out}");
    assert_eq!(lines[9], "354 End data with <CR><LF>.<CR><LF>", "{out}");
    assert!(lines[10].starts_with("250 2.0.0 Ok: queued as "), "{out}");
    assert_eq!(lines[11], "250 2.1.0 Ok", "{out}");
    assert_eq!(lines[12], "250 2.1.5 Ok", "{out}");
    assert_eq!(lines[13], "250 2.0.0 Ok: 21 bytes", "{out}");
    assert!(lines[14].starts_with("250 2.0.0 Ok: 24 bytes queued as "), "{out}");
    assert_eq!(lines[15], "503 5.5.1 Error: need MAIL command", "{out}");
    assert_eq!(lines[16], "500 5.5.2 Error: command not recognized", "{out}");
    assert_eq!(lines[17], "250 2.0.0 Ok", "{out}");
    assert_eq!(lines[18], "221 2.0.0 Bye", "{out}");
    // The smuggled commands stayed content: u7 got one message holding
    // them, yes1 got only the BDAT message.
    wait_for("smuggle delivered", Duration::from_secs(20), || {
        inbox_headers(b.imap_port, "u7", "SUBJECT").contains(&"smuggle".to_string())
    });
    wait_for("bdat delivered", Duration::from_secs(20), || {
        inbox_headers(b.imap_port, "yes1", "SUBJECT") == ["chunked"]
    });
    assert!(!hub.log().contains("evil"), "{}", hub.log());
    let body = python(
        r#"
import imaplib, sys
M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1])); M.login('u7', 'testpw'); M.select('INBOX')
typ, data = M.search(None, 'SUBJECT', 'smuggle')
typ, data = M.fetch(data[0].split()[0], '(BODY.PEEK[TEXT])')
print(repr(data[0][1]))
"#,
        &[&b.imap_port.to_string()],
    );
    assert!(
        body.contains(r"line\r\n\r\nMAIL FROM:<evil@x>\r\nRCPT TO:<yes1@mumail.test>\r\nDATA\r\nx\r.\rMAIL FROM:<evil2@x>\r\n"),
        "{body}"
    );
}

#[test]
fn hub_defers_while_backend_is_down_and_loses_nothing_on_kill9() {
    if !can_run("hub durability", &[SWAKS, "/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    open_dir(d.path());
    let mut b = backend(d.path());
    let mut hub = Hub::new(&d.path().join("hub"), &b.lmtp_sock, "");

    // Back end down for a minute: accepted, deferred with Postfix's log
    // line and retried meanwhile, then delivered when it returns.
    let down = std::time::Instant::now();
    if let Some(mut p) = b.lmtpd.take() {
        p.stop();
    }
    let out = hub.swaks(&["--from", "a@b.org", "--to", "yes1@mumail.test", "--h-Subject", "while-down"]);
    assert!(out.contains("Ok: queued as"), "{out}");
    wait_for("deferred", Duration::from_secs(20), || {
        hub.log().contains("status=deferred (connect to hub.mumail.test[")
    });
    // The delivery agent's line comes first, the move into deferred/
    // after it (as in Postfix), and each retry passes through active/:
    // the message is in exactly one of the two, and settles in deferred/.
    let queued = |hub: &Hub| {
        let mut v = walk(&hub.dir.join("queue/deferred"));
        v.extend(walk(&hub.dir.join("queue/active")));
        v
    };
    wait_for("in deferred/", Duration::from_secs(10), || {
        walk(&hub.dir.join("queue/deferred")).len() == 1
    });
    std::thread::sleep(Duration::from_secs(60).saturating_sub(down.elapsed()));
    let retries = hub.log().matches("status=deferred (connect to hub.mumail.test[").count();
    assert!(retries >= 10, "{retries} attempts in a minute");
    let held = queued(&hub);
    assert_eq!(held.len(), 1, "{held:?}");
    b.start_lmtpd();
    wait_for("delivered after return", Duration::from_secs(30), || {
        inbox_headers(b.imap_port, "yes1", "SUBJECT") == ["while-down"]
    });

    // Load from 8 clients; kill -9 the hub in the middle, restart it.
    let acked = hub.dir.join("acked");
    let script = r#"
import smtplib, sys, threading, time
port, n, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
acked = []; lock = threading.Lock()
def worker(k):
    i = k
    while i < n:
        try:
            s = smtplib.SMTP('127.0.0.1', port, timeout=20)
            while i < n:
                mid = '<m%d@load>' % i
                s.sendmail('a@b.org', ['u7@mumail.test'], 'Message-ID: %s\r\nSubject: load %d\r\n\r\nbody %d\r\n' % (mid, i, i))
                with lock:
                    acked.append(mid)
                i += 8
            s.quit()
        except Exception:
            i += 8
            time.sleep(0.05)
ts = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
[t.start() for t in ts]; [t.join() for t in ts]
open(out, 'w').write('\n'.join(acked))
"#;
    let base = hub.log().matches(": removed").count();
    let mut load = Command::new("python3")
        .args(["-c", script, &hub.port.to_string(), "5000", acked.to_str().unwrap()])
        .spawn()
        .unwrap();
    wait_for("load under way", Duration::from_secs(60), || {
        hub.log().matches(": removed").count() > base + 300
    });
    hub.kill9();
    std::thread::sleep(Duration::from_millis(300));
    hub.start();
    assert!(load.wait().unwrap().success());
    let acked: Vec<String> = std::fs::read_to_string(&acked).unwrap().lines().map(str::to_string).collect();
    assert!(acked.len() > 300, "only {} acknowledged", acked.len());
    let mut missing = Vec::new();
    wait_for("every acknowledged message delivered", Duration::from_secs(120), || {
        let have: std::collections::HashSet<String> = inbox_headers(b.imap_port, "u7", "MESSAGE-ID").into_iter().collect();
        missing = acked.iter().filter(|m| !have.contains(*m)).cloned().collect();
        missing.is_empty()
    });
    let all = inbox_headers(b.imap_port, "u7", "MESSAGE-ID");
    let dups = all.len() - all.iter().collect::<std::collections::HashSet<_>>().len();
    eprintln!(
        "load: {} acknowledged of 5000, {} delivered, {dups} duplicates",
        acked.len(),
        all.len()
    );
    // At-least-once: only messages in flight at the kill may come twice.
    assert!(dups <= 64, "{dups} duplicates");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                todo.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

fn tool(name: &str, args: &[&str]) -> (String, String, i32) {
    let o = Command::new(bin(name)).args(args).output().unwrap();
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        o.status.code().unwrap_or(-1),
    )
}

/// pipe(8): a master.cf `pipe` service runs its command as `user=`
/// (the hub itself has dropped to mail_owner), with the message on
/// stdin and its macros expanded; the exit status decides sent, bounced
/// or deferred as in Postfix.
#[test]
fn hub_pipe_transport() {
    if !can_run("hub pipe transport", &[SWAKS]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    open_dir(d.path());
    let out = d.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
    let script = d.path().join("tolist.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n{{ echo \"uid=$(id -u) args=$*\"; cat; }} > {o}/$2.msg\n\
             case \"$2\" in\n  nouser) echo 'no such list'; exit 67;;\n  later) exit 75;;\n  broken) echo oops; exit 1;;\nesac\nexit 0\n",
            o = out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let b = backend(d.path());
    // local(8): aliases to commands run as default_privs.
    let hdir = d.path().join("hub");
    open_dir(&hdir);
    std::fs::write(
        hdir.join("aliases"),
        format!(
            "postmaster: u7\nlistcmd: \"|{s} x listcmd y\", yes1@mumail.test\ncmdonly: \"|{s} x cmdok y\"\n\
             badcmd: \"|{s} x nouser y\"\n",
            s = script.display()
        ),
    )
    .unwrap();
    let mut hub = Hub::new(
        &hdir,
        &b.lmtp_sock,
        &format!(
            "relay_domains = lists.test\ntransport_maps = inline:{{ {{lists.test = tolist:lists.test}} }}\n\
             tolist_destination_recipient_limit = 1\nlocal_recipient_maps = hash:{d}/users, hash:{d}/aliases\n",
            d = hdir.display()
        ),
    );
    let master = std::fs::read_to_string(hub.dir.join("master.cf")).unwrap();
    std::fs::write(
        hub.dir.join("master.cf"),
        format!(
            "{master}tolist unix - n n - - pipe flags=FR user=nobody argv={} ${{nexthop}} ${{user}} ${{sender}}\n",
            script.display()
        ),
    )
    .unwrap();
    hub.kill9();
    hub.start();
    for to in [
        "ok@lists.test",
        "nouser@lists.test",
        "later@lists.test",
        "broken@lists.test",
        "listcmd@mumail.test",
        "cmdonly@mumail.test",
        "badcmd@mumail.test",
    ] {
        let o = hub.swaks(&["--from", "a@b.org", "--to", to, "--h-Subject", to]);
        assert!(o.contains("queued as"), "{o}");
    }
    let want = [
        "to=<ok@lists.test>, relay=tolist, delay=",
        "dsn=2.0.0, status=sent (delivered via tolist service)",
        "dsn=5.1.1, status=bounced (user unknown. Command output: no such list)",
        "dsn=4.3.0, status=deferred (temporary failure)",
        &format!(
            "dsn=5.3.0, status=bounced (Command died with status 1: \"{}\". Command output: oops)",
            script.display()
        ),
        "to=<cmdonly@mumail.test>, relay=local, delay=",
        &format!("dsn=2.0.0, status=sent (delivered to command: {} x cmdok y)", script.display()),
        "to=<badcmd@mumail.test>, relay=local, delay=",
    ];
    let t0 = std::time::Instant::now();
    while !want.iter().all(|w| hub.log().contains(w)) {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "missing {:?}\n{}",
            want.iter().filter(|w| !hub.log().contains(*w)).collect::<Vec<_>>(),
            hub.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let msg = std::fs::read_to_string(out.join("ok.msg")).unwrap();
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap().uid;
    let mut lines = msg.lines();
    assert_eq!(
        lines.next(),
        Some(format!("uid={nobody} args=lists.test ok a@b.org").as_str()),
        "{msg}"
    );
    assert!(lines.next().unwrap().starts_with("From a@b.org  "), "{msg}");
    assert_eq!(lines.next(), Some("Return-Path: <a@b.org>"), "{msg}");
    assert!(msg.contains("\nSubject: ok@lists.test\n") && !msg.contains('\r'), "{msg}");
    // The alias's command got the message as local(8) gives it; the alias's
    // address member still got its forwarded copy.
    let msg = std::fs::read_to_string(out.join("cmdok.msg")).unwrap();
    let head: Vec<&str> = msg.lines().take(5).collect();
    assert_eq!(head[0], format!("uid={nobody} args=x cmdok y"), "{msg}");
    assert!(head[1].starts_with("From a@b.org  "), "{msg}");
    assert_eq!(
        &head[2..],
        [
            "Return-Path: <a@b.org>",
            "X-Original-To: cmdonly@mumail.test",
            "Delivered-To: cmdonly@mumail.test"
        ],
        "{msg}"
    );
    assert!(out.join("listcmd.msg").exists());
    wait_for("alias member's copy", Duration::from_secs(30), || {
        inbox_headers(b.imap_port, "yes1", "SUBJECT") == ["listcmd@mumail.test"]
    });
    let log = hub.log();
    assert!(log.contains("status=bounced (user unknown. Command output: no such list)"), "{log}");
}

#[test]
fn hub_queue_commands() {
    if !can_run("hub queue commands", &[SWAKS, "/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    open_dir(d.path());
    let mut b = backend(d.path());
    let mut hub = Hub::new(
        &d.path().join("hub"),
        &b.lmtp_sock,
        "smtpd_recipient_restrictions = check_recipient_access inline:{yes1+held@mumail.test=HOLD}\nminimal_backoff_time = 300s\nmaximal_backoff_time = 600s\n",
    );
    let c = hub.dir.to_str().unwrap().to_string();
    let (out, _, rc) = tool("mailq", &["-C", &c]);
    assert_eq!((out.as_str(), rc), ("Mail queue is empty\n", 0));

    let out = hub.swaks(&["--from", "a@b.org", "--to", "yes1+held@mumail.test", "--h-Subject", "held"]);
    let held = out
        .lines()
        .find_map(|l| l.strip_prefix("<-  250 2.0.0 Ok: queued as "))
        .unwrap_or_else(|| panic!("{out}"))
        .trim()
        .to_string();
    assert!(hub.log().contains("NOQUEUE: hold: RCPT from localhost[127.0.0.1]: <yes1+held@mumail.test>: Recipient address triggers HOLD action; from=<a@b.org> to=<yes1+held@mumail.test> proto=ESMTP helo=<"), "{}", hub.log());
    if let Some(mut p) = b.lmtpd.take() {
        p.stop();
    }
    let out = hub.swaks(&[
        "--from",
        "c@d.org",
        "--to",
        "u7@mumail.test,yes1@mumail.test",
        "--h-Subject",
        "deferred",
    ]);
    let deferred = out
        .lines()
        .find_map(|l| l.strip_prefix("<-  250 2.0.0 Ok: queued as "))
        .unwrap_or_else(|| panic!("{out}"))
        .trim()
        .to_string();
    wait_for("deferred", Duration::from_secs(20), || {
        !walk(&hub.dir.join("queue/deferred")).is_empty()
    });

    let (out, err, rc) = tool("postqueue", &["-c", &c, "-p"]);
    assert_eq!((rc, err.as_str()), (0, ""), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0], "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------",
        "{out}"
    );
    let dline = lines
        .iter()
        .position(|l| l.starts_with(&format!("{deferred} ")))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(lines[dline].ends_with("  c@d.org"), "{out}");
    let why = lines[dline + 1]
        .trim_start()
        .trim_start_matches('(')
        .trim_end_matches(')')
        .to_string();
    assert!(
        why.starts_with(&format!("connect to hub.mumail.test[{}]: ", b.lmtp_sock.display())),
        "{out}"
    );
    assert_eq!(
        lines[dline + 1],
        format!("{:pad$}({why})", "", pad = 76usize.saturating_sub(why.len())),
        "{out}"
    );
    assert_eq!(lines[dline + 2], format!("{:41}u7@mumail.test", ""), "{out}");
    assert_eq!(lines[dline + 3], format!("{:41}yes1@mumail.test", ""), "{out}");
    let hline = lines
        .iter()
        .position(|l| l.starts_with(&format!("{held}! ")))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(lines[hline].ends_with("  a@b.org"), "{out}");
    assert_eq!(lines[hline + 1], format!("{:41}yes1+held@mumail.test", ""), "{out}");
    assert_eq!(*lines.last().unwrap(), "-- 0 Kbytes in 2 Requests.", "{out}");
    let (mq, _, _) = tool("mailq", &["-C", &c]);
    assert_eq!(mq, out);

    let (out, _, rc) = tool("postqueue", &["-c", &c, "-j"]);
    assert_eq!(rc, 0);
    assert!(
        out.contains(&format!("{{\"queue_name\": \"hold\", \"queue_id\": \"{held}\", \"arrival_time\": ")),
        "{out}"
    );
    assert!(out.contains(&format!("\"forced_expire\": false, \"sender\": \"c@d.org\", \"recipients\": [{{\"address\": \"u7@mumail.test\", \"delay_reason\": \"{why}\"}}, {{\"address\": \"yes1@mumail.test\", \"delay_reason\": \"{why}\"}}]}}")), "{out}");

    // postsuper -r: the deferred message comes back under a new queue ID
    // (pickup logs orig_id), with its sender and recipients.
    let (_, err, rc) = tool("postsuper", &["-c", &c, "-r", &deferred]);
    assert_eq!((err.as_str(), rc), ("postsuper: Requeued: 1 message\n", 0));
    let log = hub.log();
    assert!(
        log.contains(&"postsuper[".to_string()) && log.contains(&format!(": {deferred}: requeued")),
        "{log}"
    );
    let tail = format!(": uid=0 from=<c@d.org> orig_id={deferred}");
    let requeued = log
        .lines()
        .find_map(|l| l.strip_suffix(tail.as_str()).filter(|h| h.contains("postfix/pickup[")))
        .and_then(|h| h.rsplit(' ').next())
        .unwrap_or_else(|| panic!("{log}"))
        .to_string();
    assert_ne!(requeued, deferred);
    wait_for("requeued message deferred again", Duration::from_secs(20), || {
        walk(&hub.dir.join("queue/deferred")).iter().any(|p| p.ends_with(&requeued))
    });
    let (out, _, _) = tool("postqueue", &["-c", &c, "-p"]);
    let at = out.find(&format!("{requeued} ")).unwrap_or_else(|| panic!("{out}"));
    assert!(!out.contains(&format!("{deferred} ")), "{out}");
    assert!(
        out[at..].contains("u7@mumail.test") && out[at..].contains("yes1@mumail.test"),
        "{out}"
    );
    let deferred = requeued;

    // postsuper: delete the deferred one; release the held one once the
    // back end is back.
    let (_, err, rc) = tool("postsuper", &["-c", &c, "-d", &deferred]);
    assert_eq!((err.as_str(), rc), ("postsuper: Deleted: 1 message\n", 0));
    let (_, err, _) = tool("postsuper", &["-c", &c, "-d", "NOSUCHID"]);
    assert_eq!(err, "postsuper: Deleted: 0 messages\n");
    let (_, err, rc) = tool("postsuper", &["-c", &c, "-x"]);
    assert!(
        err.starts_with("postsuper: invalid option -- 'x'\npostsuper: fatal: usage: postsuper ") && rc != 0,
        "{err}"
    );
    let (out, _, _) = tool("postqueue", &["-c", &c, "-p"]);
    assert!(out.ends_with("-- 0 Kbytes in 1 Request.\n"), "{out}");
    b.start_lmtpd();
    let (_, err, _) = tool("postsuper", &["-c", &c, "-H", "ALL"]);
    assert_eq!(err, "postsuper: Released from hold: 1 message\n");
    wait_for("released message delivered", Duration::from_secs(30), || {
        inbox_headers(b.imap_port, "yes1", "SUBJECT") == ["held"]
    });
    wait_for("queue empty", Duration::from_secs(20), || {
        tool("mailq", &["-C", &c]).0 == "Mail queue is empty\n"
    });
    let (_, _, rc) = tool("postqueue", &["-c", &c, "-f"]);
    assert_eq!(rc, 0);
    let (_, err, rc) = tool("postqueue", &["-c", &c, "-s", "nowhere.example"]);
    assert_eq!(
        (err.as_str(), rc),
        (
            "postqueue: fatal: Flush service is not configured for destination \"nowhere.example\"\n",
            69
        )
    );

    // The hub down: listing straight from the files; no flush.
    hub.kill9();
    let (out, err, rc) = tool("postqueue", &["-c", &c, "-p"]);
    assert_eq!(
        (out.as_str(), err.as_str(), rc),
        (
            "Mail queue is empty\n",
            "postqueue: warning: Mail system is down -- accessing queue directly\n",
            0
        )
    );
    let (_, err, rc) = tool("postqueue", &["-c", &c, "-f"]);
    assert_eq!(
        (err.as_str(), rc),
        ("postqueue: fatal: Cannot flush mail queue - mail system is down\n", 69)
    );
}

/// pflogsumm (Debian's) reads our log and counts what the test did.
#[test]
fn pflogsumm_counts_our_log() {
    if !can_run("pflogsumm", &[SWAKS, "/usr/sbin/pflogsumm", "/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    open_dir(d.path());
    let b = backend(d.path());
    let hub = Hub::new(&d.path().join("hub"), &b.lmtp_sock, "");
    std::fs::write(hub.dir.join("users"), "u7 x\nyes1 x\nghost x\n").unwrap();
    for s in ["one", "two"] {
        let out = hub.swaks(&["--from", "a@b.org", "--to", "u7@mumail.test", "--h-Subject", s]);
        assert!(out.contains("queued as"), "{out}");
    }
    // Accepted by the hub, refused by the back end: bounced; the notice to
    // b.org has no smtp transport here: deferred.
    let out = hub.swaks(&["--from", "a@b.org", "--to", "ghost@mumail.test"]);
    assert!(out.contains("queued as"), "{out}");
    let out = hub.swaks(&["--from", "a@b.org", "--to", "nobody@mumail.test"]);
    assert!(out.contains("<** 550 5.1.1"), "{out}");
    wait_for("bounce notice deferred", Duration::from_secs(30), || {
        hub.log().contains("from=<>, size=") && hub.log().contains("status=deferred (mail transport unavailable)")
    });
    wait_for("delivered", Duration::from_secs(30), || {
        hub.log().matches("status=sent").count() == 2
    });
    let log = hub.log();
    assert!(log.contains("status=bounced (host hub.mumail.test["), "{log}");
    assert!(log.contains(": sender non-delivery notification: "), "{log}");
    let o = Command::new("/usr/sbin/pflogsumm").arg(hub.dir.join("maillog")).output().unwrap();
    let rep = String::from_utf8_lossy(&o.stdout).to_string();
    let count = |what: &str| -> usize {
        rep.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(what))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {what} in\n{rep}"))
    };
    // 3 from clients (pflogsumm counts what came through smtpd, not the
    // notice, as for Postfix's own log); 2 delivered; the notice deferred;
    // the ghost bounced; nobody rejected.
    assert_eq!(
        (
            count("received"),
            count("delivered"),
            count("deferred"),
            count("bounced"),
            count("rejected")
        ),
        (3, 2, 1, 1, 1),
        "{rep}"
    );
}

struct Mount(PathBuf);
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A full queue file system: 452 4.3.1, and nothing acknowledged is lost.
#[test]
fn hub_disk_full_gives_452_and_keeps_what_it_accepted() {
    if !can_run("hub disk full", &[SWAKS, "/usr/bin/unshare", "/usr/bin/mount"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    open_dir(d.path());
    let mut b = backend(d.path());
    let hdir = d.path().join("hub");
    open_dir(&hdir.join("queue"));
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=3m,mode=0755", "tmpfs"])
        .arg(hdir.join("queue"))
        .status()
        .unwrap();
    assert!(st.success(), "mount tmpfs");
    let _m = Mount(hdir.join("queue"));
    if let Some(mut p) = b.lmtpd.take() {
        p.stop();
    }
    let hub = Hub::new(&hdir, &b.lmtp_sock, "message_size_limit = 1000000\n");
    let out = python(
        r#"
import smtplib, sys
ok = full = 0
for i in range(12):
    s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=30)
    s.ehlo('client.example')
    code, msg = s.mail('a@b.org')
    if code != 250:
        print('MAIL', code, msg.decode()); full += 1; s.quit(); continue
    s.rcpt('u7@mumail.test')
    code, msg = s.data(('Subject: big %d\r\n\r\n' % i) + ('x' * 76 + '\r\n') * 5000)
    print('DATA', code, msg.decode())
    ok += code == 250
    full += code == 452
    s.quit()
print('ok', ok, 'full', full)
"#,
        &[&hub.port.to_string()],
    );
    let last = out.lines().last().unwrap_or("");
    let ok: usize = last.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(ok >= 1 && last.ends_with(&format!("full {}", 12 - ok)), "{out}");
    for l in out.lines().filter(|l| !l.starts_with("ok ")) {
        assert!(
            l.starts_with("DATA 250 2.0.0 Ok: queued as ")
                || l == "MAIL 452 4.3.1 Insufficient system storage"
                || l == "DATA 452 4.3.1 Insufficient system storage",
            "{out}"
        );
    }
    assert!(out.contains("MAIL 452 4.3.1 Insufficient system storage"), "{out}");
    // Every acknowledged message is queued, then delivered.
    let c = hub.dir.to_str().unwrap().to_string();
    let (j, _, _) = tool("postqueue", &["-c", &c, "-j"]);
    assert_eq!(j.lines().count(), ok, "{j}");
    b.start_lmtpd();
    let _ = tool("postqueue", &["-c", &c, "-f"]);
    wait_for("all delivered", Duration::from_secs(60), || {
        inbox_headers(b.imap_port, "u7", "SUBJECT").len() == ok
    });
}

fn tool_in(name: &str, args: &[&str], input: &str) -> (String, String, i32) {
    run_with_input(Command::new(bin(name)).args(args), input)
}

/// sendmail, postmap and the postfix control command against a hub.
#[test]
fn hub_sendmail_postmap_and_control() {
    if !can_run("hub sendmail", &[SWAKS, "/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    open_dir(d.path());
    let b = backend(d.path());
    let mut hub = Hub::new(&d.path().join("hub"), &b.lmtp_sock, "");
    let c = hub.dir.to_str().unwrap().to_string();

    let (_, err, rc) = tool_in(
        "sendmail",
        &["-C", &c, "-f", "a@b.org", "-FSome One", "u7@mumail.test"],
        "Subject: via sendmail\n\nhello\n.\nnot sent\n",
    );
    assert_eq!((err.as_str(), rc), ("", 0));
    let (_, err, rc) = tool_in(
        "sendmail",
        &["-C", &c, "-t", "-oi"],
        "To: yes1@mumail.test\nBcc: u7@mumail.test\nSubject: extracted\n\n.\nkept\n",
    );
    assert_eq!((err.as_str(), rc), ("", 0));
    let (_, err, rc) = tool_in("sendmail", &["-C", &c], "Subject: nobody\n\nx\n");
    assert_eq!(
        (err.as_str(), rc),
        (
            "sendmail: fatal: root(0): Recipient addresses must be specified on the command line or via the -t option\n",
            75
        )
    );
    // -bs: an SMTP session on stdin/stdout, access controls off.
    let (out, err, rc) = tool_in(
        "sendmail",
        &["-C", &c, "-bs"],
        "EHLO local\r\nMAIL FROM:<a@b.org>\r\nRCPT TO:<u7@mumail.test>\r\nRCPT TO:<someone@elsewhere.example>\r\n\
         DATA\r\nSubject: via bs\r\n\r\nhi\r\n.\r\nQUIT\r\n",
    );
    assert_eq!((err.as_str(), rc), ("", 0), "{out}");
    let replies: Vec<&str> = out.lines().collect();
    assert!(replies[0].starts_with("220 hub.mumail.test ESMTP"), "{out}");
    assert!(
        out.contains("\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as "),
        "{out}"
    );
    assert!(out.ends_with("221 2.0.0 Bye\r\n"), "{out}");
    let delivered =
        || inbox_headers(b.imap_port, "u7", "SUBJECT").len() == 3 && inbox_headers(b.imap_port, "yes1", "SUBJECT") == ["extracted"];
    let end = std::time::Instant::now() + Duration::from_secs(30);
    while !delivered() {
        // On a timeout, the hub's log says where the mail stopped.
        assert!(
            std::time::Instant::now() < end,
            "timed out waiting for sendmail mail delivered\n{}",
            hub.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let msg = python(
        r#"
import imaplib, sys
M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1])); M.login('u7', 'testpw'); M.select('INBOX')
typ, data = M.search(None, 'SUBJECT', '"via sendmail"')
typ, data = M.fetch(data[0].split()[0], '(BODY.PEEK[])')
print(data[0][1].decode())
"#,
        &[&b.imap_port.to_string()],
    );
    assert!(
        msg.contains("Received: by hub.mumail.test (Postfix, from userid 0)\r\n\tid "),
        "{msg}"
    );
    assert!(
        msg.contains("From: Some One <a@b.org>\r\n") && msg.contains("Message-Id: <") && msg.contains("Date: "),
        "{msg}"
    );
    assert!(msg.contains("\r\n\r\nhello\r\n") && !msg.contains("not sent"), "{msg}");
    let log = hub.log();
    assert!(log.contains("postfix/pickup[") && log.contains(": uid=0 from=<a@b.org>"), "{log}");
    let yes1 = python(
        r#"
import imaplib, sys
M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1])); M.login('yes1', 'testpw'); M.select('INBOX')
typ, data = M.fetch('1', '(BODY.PEEK[])')
print(data[0][1].decode())
"#,
        &[&b.imap_port.to_string()],
    );
    assert!(!yes1.contains("Bcc:") && yes1.contains("\r\n\r\n.\r\nkept\r\n"), "{yes1}");

    // postmap on the hub's recipient table.
    let users = format!("hash:{}/users", c);
    let (out, _, rc) = tool("postmap", &["-c", &c, "-q", "U7", &users]);
    assert_eq!((out.as_str(), rc), ("x\n", 0));
    let (_, _, rc) = tool("postmap", &["-c", &c, "-q", "nobody", &users]);
    assert_eq!(rc, 1);

    // The control command: status, stop, start, status, stop.
    let (_, err, rc) = tool("postfix", &["-c", &c, "status"]);
    assert!(
        err.starts_with("postfix/postfix-script: the Postfix mail system is running: PID: ") && rc == 0,
        "{err}"
    );
    let (_, err, rc) = tool("postfix", &["-c", &c, "stop"]);
    assert_eq!(
        (err.as_str(), rc),
        ("postfix/postfix-script: stopping the Postfix mail system\n", 0)
    );
    if let Some(mut p) = hub.proc.take() {
        let _ = p.child.wait();
    }
    let (_, err, rc) = tool("postfix", &["-c", &c, "status"]);
    assert_eq!(
        (err.as_str(), rc),
        ("postfix/postfix-script: the Postfix mail system is not running\n", 1)
    );
    let (_, err, rc) = tool("postfix", &["-c", &c, "start"]);
    assert_eq!(
        (err.as_str(), rc),
        ("postfix/postfix-script: starting the Postfix mail system\n", 0)
    );
    let (_, err, rc) = tool("postfix", &["-c", &c, "start"]);
    assert_eq!(
        (err.as_str(), rc),
        ("postfix/postfix-script: fatal: the Postfix mail system is already running\n", 1)
    );
    let out = hub.swaks(&["--from", "a@b.org", "--to", "yes1@mumail.test", "--h-Subject", "after restart"]);
    assert!(out.contains("queued as"), "{out}");
    wait_for("delivered after restart", Duration::from_secs(30), || {
        inbox_headers(b.imap_port, "yes1", "SUBJECT").len() == 2
    });
    let (_, _, rc) = tool("postfix", &["-c", &c, "stop"]);
    assert_eq!(rc, 0);
    let (_, _, rc) = tool("postfix", &["-c", &c, "check"]);
    assert_eq!(rc, 0);
}

/// The real Postfix relays into our hub; our hub relays to the real
/// Postfix (SMTP client, relayhost); both paths end in our lmtpd.
#[test]
fn hub_and_real_postfix_relay_to_each_other() {
    if !can_run("hub <-> postfix", &[SWAKS, POSTFIX, "/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    open_dir(d.path());
    let b = backend(d.path());
    // Real Postfix: final destination for other.test (into our lmtpd),
    // relaying everything else to our hub.
    let pf = d.path().join("postfix");
    let pport = PostfixInstance::prepare(&pf);
    let hub_port = free_port();
    std::fs::write(
        pf.join("main.cf"),
        format!(
            "compatibility_level = 3.6\nqueue_directory = {q}\ndata_directory = {dd}\nmyhostname = pf.other.test\nmydomain = other.test\n\
             inet_interfaces = loopback-only\nmydestination = other.test\nlocal_recipient_maps =\nmynetworks = 127.0.0.0/8\n\
             local_transport = lmtp:unix:{sock}\nrelayhost = [127.0.0.1]:{hub_port}\n\
             maillog_file = {p}/maillog\nmaillog_file_prefixes = {p}\n",
            q = pf.join("queue").display(),
            dd = pf.join("data").display(),
            sock = b.lmtp_sock.display(),
            p = pf.display()
        ),
    )
    .unwrap();
    let _pf = PostfixInstance::start(&pf);
    wait_tcp(pport);
    // Our hub on a fixed port: mumail.test locally, other.test relayed to
    // the real Postfix.
    let hdir = d.path().join("hub");
    let mut hub = Hub {
        dir: hdir.clone(),
        port: hub_port,
        proc: None,
    };
    open_dir(&hdir);
    std::fs::write(hdir.join("users"), "u7 x\nyes1 x\n").unwrap();
    std::fs::write(
        hdir.join("main.cf"),
        format!(
            "compatibility_level = 3.6\nqueue_directory = {h}/queue\nmaillog_file = {h}/maillog\nmyhostname = hub.mumail.test\n\
             mydomain = mumail.test\nmydestination = mumail.test\nmynetworks = 127.0.0.0/8\nlocal_recipient_maps = hash:{h}/users\n\
             mailbox_transport = lmtp:unix:{s}\nrelayhost = [127.0.0.1]:{pport}\nalias_maps =\n\
             transport_maps = inline:{{ {{ blocked.test=error:5.1.2 no such domain }} }}\n",
            h = hdir.display(),
            s = b.lmtp_sock.display()
        ),
    )
    .unwrap();
    std::fs::write(
        hdir.join("master.cf"),
        format!(
            "127.0.0.1:{hub_port} inet n - n - - smtpd\nlmtp unix - - n - - lmtp\nsmtp unix - - n - - smtp\nerror unix - - n - - error\n\
             local unix - n n - - local\n"
        ),
    )
    .unwrap();
    hub.start();

    // Postfix -> hub -> lmtpd.
    let o = Command::new(SWAKS)
        .args([
            "--server",
            &format!("127.0.0.1:{pport}"),
            "--from",
            "a@other.test",
            "--to",
            "u7@mumail.test",
            "--h-Subject",
            "via postfix",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("queued as"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    wait_for("postfix -> hub -> lmtpd", Duration::from_secs(30), || {
        inbox_headers(b.imap_port, "u7", "SUBJECT") == ["via postfix"]
    });
    assert!(hub.log().contains("client=localhost[127.0.0.1]"), "{}", hub.log());

    // hub -> Postfix -> lmtpd (yes1@other.test is yes1 in the store).
    let out = hub.swaks(&["--from", "a@mumail.test", "--to", "yes1@other.test", "--h-Subject", "via hub"]);
    assert!(out.contains("queued as"), "{out}");
    wait_for("hub -> postfix -> lmtpd", Duration::from_secs(30), || {
        inbox_headers(b.imap_port, "yes1", "SUBJECT") == ["via hub"]
    });
    let log = hub.log();
    assert!(
        log.contains(&format!("to=<yes1@other.test>, relay=127.0.0.1[127.0.0.1]:{pport}, delay="))
            && log.contains("status=sent (250 2.0.0 Ok: queued as "),
        "{log}"
    );
    assert!(log.contains("postfix/smtp["), "{log}");

    // transport_maps: a domain routed to error: bounces with its text.
    let out = hub.swaks(&["--from", "a@mumail.test", "--to", "x@blocked.test"]);
    assert!(out.contains("queued as"), "{out}");
    wait_for("transport_maps error:", Duration::from_secs(30), || {
        hub.log().contains("to=<x@blocked.test>, relay=none, delay=")
    });
    let log = hub.log();
    assert!(log.contains("dsn=5.1.2, status=bounced (no such domain)"), "{log}");
}

/// Our hub delivering by LMTP into the real Cyrus 3.6 lmtpd.
#[test]
fn hub_delivers_into_real_cyrus_lmtpd() {
    if !can_run("hub -> cyrus lmtpd", &[SWAKS, CYRUS_MASTER, "/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    open_dir(d.path());
    // Our back end only lends its saslauthd (private accounts) to Cyrus.
    let b = backend(d.path());
    for p in ["backend", "backend/sasl"] {
        open_dir(&d.path().join(p));
    }
    let cyrus = CyrusServer::start(
        &d.path().join("cyrus"),
        &d.path().join("backend/sasl/mux"),
        "autocreate_post: yes\n",
    );
    let hub = Hub::new(&d.path().join("hub"), &cyrus.lmtp_sock, "");
    let out = hub.swaks(&[
        "--from",
        "a@b.org",
        "--to",
        "u7@mumail.test,ghost@mumail.test",
        "--h-Subject",
        "into cyrus",
    ]);
    assert!(out.contains("queued as"), "{out}");
    wait_for("delivered into cyrus", Duration::from_secs(30), || {
        inbox_headers(cyrus.imap_port, "u7", "SUBJECT") == ["into cyrus"]
    });
    let log = hub.log();
    assert!(
        log.contains(&format!(
            "to=<u7@mumail.test>, relay=hub.mumail.test[{}], delay=",
            cyrus.lmtp_sock.display()
        )),
        "{log}"
    );
    assert!(log.contains("dsn=2.1.5, status=sent (250 2.1.5 Success SESSIONID=<"), "{log}");
    drop(b);
}

/// Address rewriting and the table types: canonical_maps (regexp),
/// virtual_alias_maps (hash with a list, a catch-all, a pcre rule),
/// alias_maps with :include: and owner- senders, a forwarding loop, a
/// cidr client table and a regexp sender table; the rewritten addresses
/// are delivered and logged with orig_to as Postfix logs them.
#[test]
fn hub_rewrites_addresses_and_expands_aliases() {
    if !can_run("hub rewriting", &[SWAKS, "/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    open_dir(d.path());
    let b = backend(d.path());
    let h = d.path().join("hub");
    open_dir(&h);
    std::fs::write(h.join("canonical"), "/^old\\.(.*)@mumail\\.test$/ ${1}@mumail.test\n").unwrap();
    std::fs::write(
        h.join("virtual"),
        "team@mumail.test u7@mumail.test, yes1@mumail.test\n@corp.test u7@mumail.test\nloop@mumail.test back@mumail.test\n",
    )
    .unwrap();
    std::fs::write(h.join("virtual.pcre"), "/^sales\\+(\\w+)@mumail\\.test$/ $1@mumail.test\n").unwrap();
    std::fs::write(h.join("list"), "# members\nu7, yes1\n").unwrap();
    std::fs::write(
        h.join("aliases"),
        format!(
            "postmaster: u7\nstaff: :include:{}\nowner-staff: u7\nboss: yes1\nchief: boss\ngone: nowhere@blackhole.test\n\
             cmd: \"|/bin/cat\"\nself: self, u7\nback: loop\n",
            h.join("list").display()
        ),
    )
    .unwrap();
    std::fs::write(h.join("clients.cidr"), "192.0.2.0/24 REJECT test net\n127.0.0.0/8 DUNNO\n").unwrap();
    std::fs::write(h.join("senders.re"), "/^spam[0-9]+@/ REJECT numbered spammer\n").unwrap();
    let hub = Hub::new(
        &h,
        &b.lmtp_sock,
        &format!(
            "myorigin = mumail.test\nlocal_recipient_maps = hash:{h}/users, $alias_maps\n\
             canonical_maps = regexp:{h}/canonical\nvirtual_alias_maps = hash:{h}/virtual, pcre:{h}/virtual.pcre\n\
             virtual_alias_domains = corp.test, valias.test\ntransport_maps = inline:{{ blackhole.test=discard:gone }}\n\
             relay_domains = blackhole.test\n\
             smtpd_client_restrictions = check_client_access cidr:{h}/clients.cidr\n\
             smtpd_sender_restrictions = check_sender_access regexp:{h}/senders.re\n",
            h = h.display()
        ),
    );
    let send = |to: &str, subject: &str| {
        let out = hub.swaks(&["--from", "a@b.org", "--to", to, "--h-Subject", subject]);
        assert!(out.contains("queued as"), "{to}: {out}");
    };
    // Unknown in the virtual alias domain; a regexp sender rule.
    let out = hub.swaks(&["--from", "a@b.org", "--to", "nobody@valias.test", "--quit-after", "RCPT"]);
    assert!(
        out.contains("<** 550 5.1.1 <nobody@valias.test>: Recipient address rejected: User unknown in virtual alias table"),
        "{out}"
    );
    let out = hub.swaks(&["--from", "spam42@x.org", "--to", "u7@mumail.test", "--quit-after", "RCPT"]);
    assert!(
        out.contains("<** 554 5.7.1 <spam42@x.org>: Sender address rejected: numbered spammer"),
        "{out}"
    );
    // A virtual alias that is not in local_recipient_maps is still known.
    send("team@mumail.test", "to team");
    send("boss@corp.test", "catch-all");
    send("old.yes1@mumail.test", "canonical");
    send("sales+u7@mumail.test", "pcre");
    send("staff@mumail.test", "include");
    send("chief@mumail.test", "nested");
    send("self@mumail.test", "self");
    send("gone@mumail.test", "gone");
    send("cmd@mumail.test", "command");
    send("back@mumail.test", "looping");
    wait_for("rewritten deliveries", Duration::from_secs(30), || {
        let mut u7 = inbox_headers(b.imap_port, "u7", "SUBJECT");
        let mut y = inbox_headers(b.imap_port, "yes1", "SUBJECT");
        u7.sort();
        y.sort();
        u7 == ["catch-all", "include", "pcre", "self", "to team"] && y == ["canonical", "include", "nested", "to team"]
    });
    let log = hub.log();
    for want in [
        "to=<yes1@mumail.test>, orig_to=<old.yes1@mumail.test>, relay=hub.mumail.test[",
        "to=<u7@mumail.test>, orig_to=<team@mumail.test>, relay=",
        "to=<u7@mumail.test>, orig_to=<boss@corp.test>, relay=",
        "to=<u7@mumail.test>, orig_to=<sales+u7@mumail.test>, relay=",
        "passing <u7@mumail.test> to transport=lmtp",
        "to=<staff@mumail.test>, relay=local, delay=",
        "to=<yes1@mumail.test>, orig_to=<staff@mumail.test>, relay=",
        "to=<yes1@mumail.test>, orig_to=<chief@mumail.test>, relay=",
        "to=<nowhere@blackhole.test>, orig_to=<gone@mumail.test>, relay=none, delay=",
        "status=sent (gone)",
        "to=<cmd@mumail.test>, relay=local, delay=",
        "status=sent (delivered to command: /bin/cat)",
        "status=bounced (mail forwarding loop for back@mumail.test)",
    ] {
        assert!(log.contains(want), "{want} in\n{log}");
    }
    assert!(log.contains("dsn=2.0.0, status=sent (forwarded as "), "{log}");
    // The include forward is sent from owner-staff.
    assert!(log.contains("from=<owner-staff@mumail.test>"), "{log}");
    // A client in the cidr table is refused (XCLIENT is not needed: the
    // table is checked against the real address, so test the DUNNO path
    // above and the table itself through postmap).
    let (o, _, rc) = tool(
        "postmap",
        &[
            "-c",
            h.to_str().unwrap(),
            "-q",
            "192.0.2.9",
            &format!("cidr:{}/clients.cidr", h.display()),
        ],
    );
    assert_eq!((o.as_str(), rc), ("REJECT test net\n", 0));
    let (o, _, rc) = tool(
        "postalias",
        &["-c", h.to_str().unwrap(), "-q", "chief", &format!("hash:{}/aliases", h.display())],
    );
    assert_eq!((o.as_str(), rc), ("boss\n", 0));
    let (_, e, rc) = tool("newaliases", &["-C", h.to_str().unwrap()]);
    assert_eq!((e.as_str(), rc), ("", 0));
    drop(b);
}

/// TLS per master.cf service: STARTTLS on port 25, `encrypt` on a
/// submission-style service (MAIL refused before STARTTLS, AUTH not
/// offered in clear), and an smtps service in wrapper mode; swaks talks
/// to each, and what it sent is delivered.
#[test]
fn hub_tls_services() {
    if !can_run("hub tls", &[SWAKS, "/usr/bin/openssl", "/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    open_dir(d.path());
    let b = backend(d.path());
    let certs = d.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let (_ca, cert, key) = make_certs(&certs);
    for f in [&cert, &key] {
        std::fs::set_permissions(f, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    }
    open_dir(&certs);
    let h = d.path().join("hub");
    let mut hub = Hub::new(
        &h,
        &b.lmtp_sock,
        &format!(
            "smtpd_tls_cert_file = {}\nsmtpd_tls_key_file = {}\nsmtpd_tls_security_level = may\nsmtpd_tls_received_header = yes\n\
             smtpd_sasl_auth_enable = yes\nsmtpd_sasl_path = smtpd\ncyrus_sasl_config_path = {}\nbroken_sasl_auth_clients = yes\n",
            cert.display(),
            key.display(),
            h.display()
        ),
    );
    open_dir(&b.dir.join("sasl"));
    std::fs::write(
        h.join("smtpd.conf"),
        format!("pwcheck_method: saslauthd\nsaslauthd_path: {}\n", b.dir.join("sasl/mux").display()),
    )
    .unwrap();
    let (sub, smtps, noplain) = (free_port(), free_port(), free_port());
    let master = std::fs::read_to_string(h.join("master.cf")).unwrap();
    std::fs::write(
        h.join("master.cf"),
        format!(
            "{master}127.0.0.1:{sub} inet n - n - - smtpd\n  -o smtpd_tls_security_level=encrypt\n\
             \x20 -o smtpd_tls_mandatory_protocols=>=TLSv1.3\n  -o smtpd_sasl_authenticated_header=yes\n\
             127.0.0.1:{smtps} inet n - n - - smtpd\n  -o smtpd_tls_wrappermode=yes\n\
             127.0.0.1:{noplain} inet n - n - - smtpd\n  -o smtpd_sasl_security_options=noanonymous,noplaintext\n\
             \x20 -o smtpd_sasl_tls_security_options=noanonymous\n  -o smtpd_sasl_mechanism_filter=!plain,static:all\n"
        ),
    )
    .unwrap();
    hub.kill9();
    hub.start();
    wait_tcp(sub);
    wait_tcp(smtps);
    wait_tcp(noplain);
    let swaks = |port: u16, args: &[&str]| {
        let o = Command::new(SWAKS)
            .args([
                "--server",
                &format!("127.0.0.1:{port}"),
                "--timeout",
                "20",
                "--from",
                "a@b.org",
                "--to",
                "u7@mumail.test",
            ])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    // Port 25 style: STARTTLS offered, AUTH offered in clear (auth_only no).
    let out = swaks(hub.port, &["--tls", "--h-Subject", "starttls"]);
    assert!(
        out.contains("<-  220 2.0.0 Ready to start TLS") && out.contains("queued as"),
        "{out}"
    );
    // broken_sasl_auth_clients: the mechanisms also as AUTH=.
    assert!(
        out.contains("250-AUTH PLAIN LOGIN\n") && out.contains("250-AUTH=PLAIN LOGIN\n"),
        "{out}"
    );
    // encrypt: no AUTH before TLS, MAIL refused.
    let out = swaks(sub, &["--quit-after", "MAIL"]);
    assert!(out.contains("STARTTLS") && !out.contains("250-AUTH"), "{out}");
    assert!(out.contains("<** 530 5.7.0 Must issue a STARTTLS command first"), "{out}");
    let out = swaks(
        sub,
        &[
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            "u7",
            "--auth-password",
            "testpw",
            "--h-Subject",
            "encrypt",
        ],
    );
    assert!(
        out.contains("235 2.7.0 Authentication successful") && out.contains("queued as"),
        "{out}"
    );
    // noplaintext before TLS: no AUTH offered, PLAIN refused; under TLS
    // (smtpd_sasl_tls_security_options) LOGIN, PLAIN being filtered out
    // (smtpd_sasl_mechanism_filter).
    let out = swaks(noplain, &["--quit-after", "EHLO"]);
    assert!(out.contains("STARTTLS") && !out.contains("AUTH"), "{out}");
    let out = swaks(noplain, &["--auth", "PLAIN", "--auth-user", "u7", "--auth-password", "testpw"]);
    assert!(!out.contains("235 "), "{out}");
    let out = python(
        r#"
import smtplib, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=20)
s.ehlo('client.example')
print(s.docmd('AUTH', 'PLAIN AHU3AHRlc3Rwdw=='))
"#,
        &[&noplain.to_string()],
    );
    assert!(
        out.contains("(535, b'5.7.8 Error: authentication failed: Invalid authentication mechanism')"),
        "{out}"
    );
    let out = swaks(
        noplain,
        &[
            "--tls",
            "--auth",
            "LOGIN",
            "--auth-user",
            "u7",
            "--auth-password",
            "testpw",
            "--h-Subject",
            "noplaintext",
        ],
    );
    assert!(
        out.contains("250-AUTH LOGIN\n") && out.contains("235 2.7.0 Authentication successful") && out.contains("queued as"),
        "{out}"
    );
    // smtpd_tls_mandatory_protocols = >=TLSv1.3 on the encrypt service:
    // a TLS 1.2 client fails its handshake, the opportunistic port 25
    // takes it.
    let out = python(
        r#"
import smtplib, ssl, sys
for port in sys.argv[1:]:
    ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    s = smtplib.SMTP('127.0.0.1', int(port), timeout=20); s.ehlo('client.example')
    try:
        s.starttls(context=ctx); print(port, s.sock.version())
    except (ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError) as e:
        print(port, 'refused'); continue
    s.sendmail('a@b.org', ['u7@mumail.test'], 'Subject: tls12\r\n\r\nhello\r\n')
"#,
        &[&sub.to_string(), &hub.port.to_string()],
    );
    assert_eq!(out.trim(), format!("{sub} refused\n{} TLSv1.2", hub.port), "{out}");
    // smtps: TLS before the greeting.
    let out = swaks(smtps, &["--tlsc", "--h-Subject", "wrapper"]);
    assert!(
        out.contains("<~  220 hub.mumail.test ESMTP Postfix") && out.contains("queued as"),
        "{out}"
    );
    wait_for("tls deliveries", Duration::from_secs(30), || {
        let mut v = inbox_headers(b.imap_port, "u7", "SUBJECT");
        v.sort();
        v == ["encrypt", "noplaintext", "starttls", "tls12", "wrapper"]
    });
    // smtpd_tls_received_header: Postfix's lines in the hub's Received
    // header (the key exchange and signature for TLS 1.3 only), then
    // smtpd_sasl_authenticated_header's.
    let received = python(
        r#"
import imaplib, sys, email
M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1])); M.login('u7', 'testpw'); M.select('INBOX')
typ, data = M.fetch('1:*', '(BODY.PEEK[HEADER])')
for item in data:
    if isinstance(item, tuple):
        text = item[1].decode()
        subject = [l for l in text.split('\r\n') if l.startswith('Subject:')][0][9:]
        i = text.find('(using ')
        if subject in ('starttls', 'tls12', 'encrypt') and i > 0:
            # (From the client's name on: the HELO names differ by client.)
            start = text.find('(localhost', text.rfind('Received:', 0, i))
            print('===', subject); print(text[start:text.find(' id ', i)])
"#,
        &[&b.imap_port.to_string()],
    );
    assert!(
        received.contains(
            "=== starttls\n(localhost [127.0.0.1])\r\n\
             \t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)\r\n\
             \t key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA512)\r\n\
             \t(No client certificate requested)\r\n\tby hub.mumail.test (Postfix) with ESMTPS\n"
        ) && received.contains(
            "=== encrypt\n(localhost [127.0.0.1])\r\n\
             \t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)\r\n\
             \t key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA512)\r\n\
             \t(No client certificate requested)\r\n\t(Authenticated sender: u7)\r\n\
             \tby hub.mumail.test (Postfix) with ESMTPSA\n"
        ) && received.contains(
            "=== tls12\n(localhost [127.0.0.1])\r\n\
             \t(using TLSv1.2 with cipher ECDHE-RSA-AES256-GCM-SHA384 (256/256 bits))\r\n\
             \t(No client certificate requested)\r\n\tby hub.mumail.test (Postfix) with ESMTPS\n"
        ),
        "{received}"
    );
    let log = hub.log();
    assert!(log.contains("sasl_method=PLAIN, sasl_username=u7"), "{log}");
    drop(b);
}

/// Full text of every message in a user's INBOX.
fn inbox_texts(imap_port: u16, user: &str) -> Vec<String> {
    let out = python(
        r#"
import imaplib, sys
M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1])); M.login(sys.argv[2], 'testpw')
typ, data = M.select('INBOX')
if int(data[0]) > 0:
    typ, data = M.fetch('1:*', '(BODY.PEEK[])')
    for item in data:
        if isinstance(item, tuple):
            print(item[1].decode('utf-8', 'replace').replace('\r\n', '\n'))
            print('=====END=====')
"#,
        &[&imap_port.to_string(), user],
    );
    out.split("=====END=====\n")
        .filter(|m| !m.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// Delay warnings (once, after delay_warning_time), success reports for
/// NOTIFY=SUCCESS, no report for NOTIFY=NEVER, the postmaster's copies
/// per notify_classes and a double bounce when a bounce bounces.
#[test]
fn hub_delay_warnings_and_dsn_notices() {
    if !can_run("hub notices", &[SWAKS]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    open_dir(d.path());
    let b = backend(d.path());
    let hub = Hub::new(
        &d.path().join("hub"),
        &b.lmtp_sock,
        &format!(
            "myorigin = mumail.test\nmynetworks = 127.0.0.0/8\ndelay_warning_time = 2s\nnotify_classes = bounce, 2bounce, delay, resource, software\n\
             transport_maps = inline:{{ {{dead.test=lmtp:unix:{}/none}}, {{bad.test=error:5.1.1 no such user here}} }}\n",
            d.path().display()
        ),
    );
    let c = hub.dir.to_str().unwrap().to_string();
    // Deferred (dead LMTP socket): one delay warning once it is 2s old.
    let out = hub.swaks(&["--from", "u7@mumail.test", "--to", "x@dead.test", "--h-Subject", "slow one"]);
    assert!(out.contains("250 2.0.0 Ok: queued as"), "{out}");
    // NOTIFY=SUCCESS: a delivery report.
    let out = python(
        r#"
import smtplib, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=30)
s.ehlo('client.example')
s.sendmail('u7@mumail.test', ['yes1@mumail.test'], b'Subject: tell me\r\n\r\nhi\r\n', rcpt_options=['NOTIFY=SUCCESS'])
s.sendmail('u7@mumail.test', ['never@bad.test'], b'Subject: notify-never\r\n\r\nhi\r\n', rcpt_options=['NOTIFY=NEVER'])
s.sendmail('u7@mumail.test', ['default@bad.test'], b'Subject: notify-default\r\n\r\nhi\r\n')
s.quit()
print('ok')
"#,
        &[&hub.port.to_string()],
    );
    assert!(out.contains("ok"), "{out}");
    // A bounce that bounces: the postmaster gets the double bounce.
    let (_, err, rc) = tool_in(
        "sendmail",
        &["-C", &c, "-f", "z@bad.test", "y@bad.test"],
        "Subject: bounce twice\n\nx\n",
    );
    assert_eq!((err.as_str(), rc), ("", 0));

    let subjects = || {
        let mut v = inbox_headers(b.imap_port, "u7", "SUBJECT");
        v.sort();
        v
    };
    wait_for("notices", Duration::from_secs(60), || {
        let s = subjects();
        s.iter().filter(|x| x.starts_with("Delayed Mail")).count() == 1
            && s.iter().any(|x| x == "Successful Mail Delivery Report")
            && s.iter().filter(|x| x.starts_with("Postmaster Copy")).count() >= 3
    });
    // Retries go on, but the warning is sent once.
    std::thread::sleep(Duration::from_secs(4));
    let texts = inbox_texts(b.imap_port, "u7");
    // By the notice's own Subject (copies quote other notices' headers).
    let find = |subject: &str| -> Vec<&String> {
        texts
            .iter()
            .filter(|t| t.split("\n\n").next().unwrap_or("").contains(&format!("\nSubject: {subject}\n")))
            .collect()
    };
    let delayed = find("Delayed Mail (still being retried)");
    assert_eq!(delayed.len(), 1, "{texts:?}");
    let w = delayed[0];
    assert!(
        w.contains("# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #"),
        "{w}"
    );
    assert!(
        w.contains("Your message could not be delivered for more than 0 hour(s).\nIt will be retried until it is 5 day(s) old."),
        "{w}"
    );
    assert!(
        w.contains("Final-Recipient: rfc822; x@dead.test\nAction: delayed\nStatus: 4.4.1\n"),
        "{w}"
    );
    assert!(
        w.contains("Will-Retry-Until: ") && w.contains("Content-Description: Delayed Message Headers"),
        "{w}"
    );
    assert!(
        w.contains("Subject: slow one") && w.contains("From: Mail Delivery System <MAILER-DAEMON@mumail.test>"),
        "{w}"
    );
    let ok = find("Successful Mail Delivery Report");
    assert_eq!(ok.len(), 1, "{texts:?}");
    // LMTP without DSN (as Cyrus's lmtpd): "relayed" (lmtp_assume_final = no).
    assert!(
        ok[0].contains("Final-Recipient: rfc822; yes1@mumail.test\nAction: relayed\nStatus: 2.")
            && ok[0].contains("Remote-MTA: dns; hub.mumail.test"),
        "{}",
        ok[0]
    );
    assert!(
        ok[0].contains("Your message was successfully delivered to the destination(s)"),
        "{}",
        ok[0]
    );
    // Only the default-NOTIFY bounce reaches the sender.
    let undelivered = find("Undelivered Mail Returned to Sender");
    assert_eq!(undelivered.len(), 1, "{texts:?}");
    assert!(undelivered[0].contains("Subject: notify-default") && !undelivered[0].contains("notify-never"));
    assert!(
        undelivered[0].contains("<default@bad.test>: no such user here"),
        "{}",
        undelivered[0]
    );
    // The postmaster (u7 by alias) got copies of both bounces, the double
    // bounce, and the delay warning.
    let copies = find("Postmaster Copy: Undelivered Mail");
    assert!(copies.iter().any(|t| t.contains("never@bad.test")), "{copies:?}");
    assert!(
        copies.iter().any(|t| t.contains("Final-Recipient: rfc822; z@bad.test")),
        "{copies:?}"
    );
    assert!(copies.iter().all(|t| t.contains("Content-Type: text/rfc822-headers")), "{copies:?}");
    assert_eq!(find("Postmaster Warning: Delayed Mail").len(), 1, "{texts:?}");
    let log = hub.log();
    assert!(log.contains(": sender delay notification: "), "{log}");
    assert!(log.contains(": sender delivery status notification: "), "{log}");
    assert!(log.contains(": postmaster non-delivery notification: "), "{log}");
    assert_eq!(log.matches(": sender non-delivery notification: ").count(), 2, "{log}");
}

/// The SMTP client logs in to its relayhost with SASL PLAIN (credentials
/// from smtp_sasl_password_maps) when the security options allow it, and
/// defers when they allow no offered mechanism.
#[test]
fn hub_relays_to_a_relayhost_with_sasl() {
    if !can_run("hub sasl client", &[SWAKS, "/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    open_dir(d.path());
    let b = backend(d.path());
    open_dir(&b.dir.join("sasl"));
    let rh = d.path().join("relayhost");
    open_dir(&rh);
    std::fs::write(
        rh.join("smtpd.conf"),
        format!("pwcheck_method: saslauthd\nsaslauthd_path: {}\n", b.dir.join("sasl/mux").display()),
    )
    .unwrap();
    // The relayhost takes mail only from authenticated clients.
    let relay = Hub::new(
        &rh,
        &b.lmtp_sock,
        &format!(
            "smtpd_sasl_auth_enable = yes\nsmtpd_sasl_path = smtpd\ncyrus_sasl_config_path = {}\n\
             smtpd_relay_restrictions = permit_sasl_authenticated, reject\n",
            rh.display()
        ),
    );
    let rp = relay.port;
    let sh = d.path().join("sender");
    let mut sender = Hub::new(
        &sh,
        &b.lmtp_sock,
        &format!(
            "mydestination = sender.invalid\nmynetworks = 127.0.0.0/8\nrelayhost = [127.0.0.1]:{rp}\n\
             smtp_sasl_auth_enable = yes\nsmtp_sasl_password_maps = inline:{{[127.0.0.1]:{rp}=u7:testpw}}\n\
             smtp_sasl_security_options = noanonymous\ntransport_maps = inline:{{strict.test=strict:[127.0.0.1]:{rp}}}\n"
        ),
    );
    let master = std::fs::read_to_string(sh.join("master.cf")).unwrap();
    std::fs::write(
        sh.join("master.cf"),
        format!("{master}smtp unix - - n - - smtp\nstrict unix - - n - - smtp\n  -o smtp_sasl_security_options=noplaintext\n"),
    )
    .unwrap();
    sender.kill9();
    sender.start();
    let out = sender.swaks(&["--from", "a@b.org", "--to", "yes1@mumail.test", "--h-Subject", "via relayhost"]);
    assert!(out.contains("250 2.0.0 Ok: queued as"), "{out}");
    let out = sender.swaks(&["--from", "a@b.org", "--to", "x@strict.test"]);
    assert!(out.contains("250 2.0.0 Ok: queued as"), "{out}");
    wait_for("relayed by the relayhost", Duration::from_secs(30), || {
        inbox_headers(b.imap_port, "yes1", "SUBJECT") == ["via relayhost"]
    });
    let rlog = relay.log();
    assert!(rlog.contains("sasl_method=PLAIN, sasl_username=u7"), "{rlog}");
    wait_for("strict deferred", Duration::from_secs(30), || {
        sender.log().contains("to=<x@strict.test>")
    });
    let slog = sender.log();
    let line = slog.lines().find(|l| l.contains("to=<x@strict.test>")).unwrap_or("");
    assert!(
        line.contains(&format!(
            "dsn=4.7.0, status=deferred (SASL authentication failed; cannot authenticate to server 127.0.0.1[127.0.0.1]:{rp}: no mechanism available)"
        )),
        "{slog}"
    );
    // Without credentials the relayhost refuses the mail.
    let out = relay.swaks(&["--from", "a@b.org", "--to", "yes1@mumail.test"]);
    assert!(
        out.contains("<** 554 5.7.1 <yes1@mumail.test>: Recipient address rejected: Access denied"),
        "{out}"
    );
}

/// `postfix reload`: main.cf is read again; new sessions and deliveries
/// use it, a session open across the reload finishes with the old one, and
/// a broken main.cf leaves the running configuration in place.
#[test]
fn hub_reload_applies_new_configuration() {
    if !can_run("hub reload", &[SWAKS]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    open_dir(d.path());
    let b = backend(d.path());
    let hub = Hub::new(&d.path().join("hub"), &b.lmtp_sock, "mynetworks = 127.0.0.0/8\n");
    let c = hub.dir.to_str().unwrap().to_string();
    let out = hub.swaks(&["--from", "a@b.org", "--to", "u7@mumail.test", "--h-Subject", "before"]);
    assert!(out.contains("queued as"), "{out}");
    // A session opened before the reload.
    let mut old = std::net::TcpStream::connect(("127.0.0.1", hub.port)).unwrap();
    old.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut rd = std::io::BufReader::new(old.try_clone().unwrap());
    let mut line = String::new();
    use std::io::{BufRead, Write};
    rd.read_line(&mut line).unwrap();
    assert!(line.starts_with("220 "), "{line}");

    let main = std::fs::read_to_string(hub.dir.join("main.cf")).unwrap();
    std::fs::write(
        hub.dir.join("main.cf"),
        format!(
            "{main}smtpd_recipient_restrictions = check_recipient_access inline:{{ {{u7@mumail.test=REJECT closed by reload}} }}\n\
             transport_maps = inline:{{ {{yes1@mumail.test=discard:reloaded}} }}\n"
        ),
    )
    .unwrap();
    let (_, err, rc) = tool("postfix", &["-c", &c, "reload"]);
    assert_eq!(
        (err.as_str(), rc),
        ("postfix/postfix-script: refreshing the Postfix mail system\n", 0)
    );
    wait_for("reload logged", Duration::from_secs(10), || {
        hub.log().contains("reload -- version mumail, configuration ")
    });
    let out = hub.swaks(&["--from", "a@b.org", "--to", "u7@mumail.test", "--quit-after", "RCPT"]);
    assert!(
        out.contains("<** 554 5.7.1 <u7@mumail.test>: Recipient address rejected: closed by reload"),
        "{out}"
    );
    let out = hub.swaks(&["--from", "a@b.org", "--to", "yes1@mumail.test"]);
    assert!(out.contains("queued as"), "{out}");
    wait_for("discarded by the new transport_maps", Duration::from_secs(20), || {
        hub.log()
            .lines()
            .any(|l| l.contains("to=<yes1@mumail.test>") && l.contains("status=sent (reloaded)"))
    });
    // The old session still has the old restrictions.
    for cmd in ["HELO old.example", "MAIL FROM:<a@b.org>", "RCPT TO:<u7@mumail.test>"] {
        old.write_all(format!("{cmd}\r\n").as_bytes()).unwrap();
        line.clear();
        rd.read_line(&mut line).unwrap();
    }
    assert!(line.starts_with("250 2.1.5 Ok"), "{line}");
    old.write_all(b"QUIT\r\n").unwrap();
    // A broken main.cf: the running configuration stays.
    // (postfix reload refuses it at its own check; the hub is signalled
    // directly, as by an admin's kill -HUP.)
    std::fs::write(hub.dir.join("main.cf"), format!("{main}message_size_limit = lots\n")).unwrap();
    let (_, _, rc) = tool("postfix", &["-c", &c, "reload"]);
    assert_ne!(rc, 0);
    let pid = std::fs::read_to_string(hub.dir.join("queue/pid/master.pid")).unwrap();
    let st = Command::new("kill").args(["-HUP", pid.trim()]).status().unwrap();
    assert!(st.success());
    wait_for("failed reload logged", Duration::from_secs(10), || {
        hub.log().contains("reload failed, keeping the running configuration")
    });
    let out = hub.swaks(&["--from", "a@b.org", "--to", "u7@mumail.test", "--quit-after", "RCPT"]);
    assert!(out.contains("closed by reload"), "{out}");
    let log = hub.log();
    assert!(log.contains("reload failed, keeping the running configuration"), "{log}");
}

/// A master.cf with postscreen(8) in front of smtpd (`inet ...
/// postscreen` and `smtpd pass ... smtpd`): the client named by the
/// load balancer's PROXY header is screened (the `220-` bait, then PASS
/// NEW) and reaches the pass service with that service's settings; its
/// second connection passes at once (PASS OLD).  postscreen's replies and
/// log lines are compared with the real one in postscreen_vs_postfix.
#[test]
fn hub_postscreen_service_hands_clients_to_smtpd() {
    if !can_run("hub postscreen", &["/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    open_dir(d.path());
    let b = backend(d.path());
    let h = d.path().join("hub");
    let mut hub = Hub::new(&h, &b.lmtp_sock, "");
    let ps = free_port();
    let master = std::fs::read_to_string(h.join("master.cf")).unwrap();
    std::fs::write(
        h.join("master.cf"),
        format!(
            "{master}127.0.0.1:{ps} inet n - n - 1 postscreen\n  -o postscreen_upstream_proxy_protocol=haproxy\n  -o postscreen_greet_wait=1s\n\
             smtpd pass - - n - - smtpd\n  -o smtpd_helo_required=yes\n  -o mail_name=Behind\n  -o smtpd_peername_lookup=no\n\
             dnsblog unix - - n - 0 dnsblog\ntlsproxy unix - - n - 0 tlsproxy\n"
        ),
    )
    .unwrap();
    let (out, err, status) = tool("postfix", &["-c", h.to_str().unwrap(), "check"]);
    assert_eq!(status, 0, "{out}{err}");
    hub.kill9();
    hub.start();
    wait_tcp(ps);
    let out = python(
        r#"
import smtplib, socket, sys
class Proxied(smtplib.SMTP):
    # A load balancer's PROXY header first (postscreen_upstream_proxy_protocol).
    def _get_socket(self, host, port, timeout):
        s = socket.create_connection((host, port), timeout)
        s.sendall(b'PROXY TCP4 192.0.2.7 127.0.0.1 5000 25\r\n')
        return s
s = Proxied(); print(s.connect('127.0.0.1', int(sys.argv[1])))
print(s.docmd('MAIL FROM:<a@b.org>'))
s.ehlo('client.example.org')
s.sendmail('a@b.org', ['u7@mumail.test'], 'Subject: through postscreen\r\n\r\nhello\r\n')
print('sent')
s = Proxied(); print(s.connect('127.0.0.1', int(sys.argv[1])))
"#,
        &[&ps.to_string()],
    );
    // postscreen's bait (main.cf's banner), then the pass service's -o
    // settings: its banner, HELO required; the second time, no bait.
    assert!(
        out.contains("(220, b'hub.mumail.test ESMTP Postfix\\nhub.mumail.test ESMTP Behind')"),
        "{out}"
    );
    assert!(out.trim_end().ends_with("(220, b'hub.mumail.test ESMTP Behind')"), "{out}");
    assert!(out.contains("(503, b'5.5.1 Error: send HELO/EHLO first')"), "{out}");
    assert!(out.contains("sent"), "{out}");
    wait_for("postscreen delivery", Duration::from_secs(30), || {
        inbox_headers(b.imap_port, "u7", "SUBJECT") == ["through postscreen"]
    });
    let log = hub.log();
    assert!(
        log.contains("postfix/smtpd[") && log.contains("]: connect from unknown[192.0.2.7]"),
        "{log}"
    );
    for line in [
        "postfix/postscreen[",
        "]: CONNECT from [192.0.2.7]:5000 to [127.0.0.1]:25",
        "]: PASS NEW [192.0.2.7]:5000",
        "]: PASS OLD [192.0.2.7]:5000",
    ] {
        assert!(log.contains(line), "{line}: {log}");
    }
    drop(b);
}

/// `smtpd_soft_error_limit`/`smtpd_error_sleep_time`: from the limit on,
/// every reply waits; before it, none does.  (The counting itself is
/// compared with the real Postfix in hub_vs_postfix.)
#[test]
fn hub_slows_down_a_client_past_the_soft_error_limit() {
    let d = tempfile::tempdir().unwrap();
    open_dir(d.path());
    let h = d.path().join("hub");
    let hub = Hub::new(
        &h,
        &d.path().join("no-lmtp"),
        "smtpd_soft_error_limit = 2\nsmtpd_error_sleep_time = 2s\nsmtpd_hard_error_limit = 3\n",
    );
    let out = python(
        r#"
import smtplib, sys, time
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=30)
s.ehlo('client.example')
def timed(cmd):
    t = time.monotonic(); r = s.docmd(cmd); return r[0], time.monotonic() - t
for cmd in ['XYZZY', 'XYZZY', 'NOOP', 'XYZZY']:
    code, took = timed(cmd)
    print(cmd, code, 'slow' if took >= 1.9 else 'fast')
r = s.getreply()
print('end', r[0])
"#,
        &[&hub.port.to_string()],
    );
    // Errors 0 and 1 before the first two replies: at once; 2 before
    // NOOP's and the third XYZZY's: each waits; at 3 errors the 421 comes
    // unasked (paced too), as Postfix checks before reading a command.
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["XYZZY 500 fast", "XYZZY 500 fast", "NOOP 250 slow", "XYZZY 500 slow", "end 421"],
        "{out}"
    );
}

/// postscreen's queue limits: the tests do not take the pass service's
/// slots; past `postscreen_pre_queue_limit` clients in the tests a new
/// one gets `421 4.3.2 All screening ports are busy`, past
/// `postscreen_post_queue_limit` clients waiting for a busy smtpd
/// `421 4.3.2 All server ports are busy`; a waiting client is served
/// when a slot frees.
#[test]
fn hub_postscreen_queue_limits() {
    use std::io::{BufRead, BufReader, Write};
    let d = tempfile::tempdir().unwrap();
    open_dir(d.path());
    let h = d.path().join("hub");
    let mut hub = Hub::new(&h, &d.path().join("no-lmtp"), "postscreen_greet_wait = 1s\n");
    let ps = free_port();
    let master = std::fs::read_to_string(h.join("master.cf")).unwrap();
    std::fs::write(
        h.join("master.cf"),
        format!(
            "{master}127.0.0.1:{ps} inet n - n - 1 postscreen\n  -o postscreen_pre_queue_limit=2\n  -o postscreen_post_queue_limit=1\n\
             smtpd pass - - n - 1 smtpd\n  -o smtpd_peername_lookup=no\n"
        ),
    )
    .unwrap();
    hub.kill9();
    hub.start();
    wait_tcp(ps);
    // (wait_tcp's own connection is screened too: let it go first.)
    wait_for("the probe's hangup", Duration::from_secs(10), || {
        hub.log().contains("DISCONNECT [127.0.0.1]:")
    });
    // Each client from its own address (the cache is per address).
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let connect = |src: &str| {
        let s = rt.block_on(async {
            let sock = tokio::net::TcpSocket::new_v4().unwrap();
            sock.bind(format!("{src}:0").parse().unwrap()).unwrap();
            sock.connect(format!("127.0.0.1:{ps}").parse().unwrap()).await.unwrap()
        });
        let s = s.into_std().unwrap();
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        BufReader::new(s)
    };
    let line = |r: &mut BufReader<std::net::TcpStream>| {
        let mut l = String::new();
        match r.read_line(&mut l) {
            Ok(_) => l.trim_end().to_string(),
            Err(e) => format!("<{e}>"),
        }
    };
    // Two clients in the tests; a third is turned away.
    let mut a = connect("127.0.0.11");
    // (b's greet wait ends after a's: a gets the slot.)
    std::thread::sleep(Duration::from_millis(300));
    let mut b = connect("127.0.0.12");
    assert_eq!(line(&mut a), "220-hub.mumail.test ESMTP Postfix");
    let lb = line(&mut b);
    assert_eq!(lb, "220-hub.mumail.test ESMTP Postfix", "{}", hub.log());
    let mut c = connect("127.0.0.13");
    assert_eq!(line(&mut c), "421 4.3.2 All screening ports are busy");
    // a gets the one smtpd slot, b waits for it, c (again) finds the
    // wait full.
    assert_eq!(line(&mut a), "220 hub.mumail.test ESMTP Postfix", "{}", hub.log());
    let mut c = connect("127.0.0.13");
    let first = line(&mut c);
    assert_eq!(first, "220-hub.mumail.test ESMTP Postfix", "{}", hub.log());
    assert_eq!(line(&mut c), "421 4.3.2 All server ports are busy", "{}", hub.log());
    // a leaves: b is served.
    a.get_mut().write_all(b"QUIT\r\n").unwrap();
    assert_eq!(line(&mut a), "221 2.0.0 Bye");
    assert_eq!(line(&mut b), "220 hub.mumail.test ESMTP Postfix", "{}", hub.log());
    let log = hub.log();
    for l in [
        "]: reject: connect from [127.0.0.13]:",
        ": all screening ports busy",
        "]: NOQUEUE: reject: CONNECT from [127.0.0.13]:",
        ": all server ports busy",
    ] {
        assert!(log.contains(l), "{l}: {log}");
    }
}
