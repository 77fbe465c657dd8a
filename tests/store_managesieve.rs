//! timsieved with real ManageSieve clients: Cyrus's sieveshell uploads
//! and activates a script that our lmtpd then runs at delivery; sivtest
//! logs in; STARTTLS re-issues the capabilities; UTF-8 names, replacing
//! a script at `sieve_maxscripts`, `allowplaintext: no`, and bounded
//! reads of an over-long line and an over-size literal; a deleted user's
//! scripts deleted; editheader's copy is the recipient's own and
//! duplicate remembers across deliveries.  (The replies,
//! command by command, are compared with the real Cyrus timsieved in
//! store_vs_cyrus.rs.)

mod harness;
use harness::*;

const SIEVESHELL: &str = "/usr/bin/sieveshell";
const SIVTEST: &str = "/usr/lib/cyrus/bin/sivtest";

const SCRIPT: &str = "require [\"fileinto\", \"mailbox\"];\r\n\
                      if header :contains \"subject\" \"sieve\" { fileinto :create \"Filtered\"; }\r\n";

/// LMTP deliveries on the socket (argv[1]), then each folder's subjects
/// over IMAP (argv[2]).
const DELIVER_AND_LOOK: &str = r#"
import smtplib, imaplib, sys
imaplib.IMAP4('127.0.0.1', int(sys.argv[2])).login('u7', 'testpw')
l = smtplib.LMTP(sys.argv[1])
for subj in ['a sieve test', 'other']:
    l.sendmail('from@example.org', ['u7'], 'From: from@example.org\r\nSubject: %s\r\n\r\nbody\r\n' % subj)
l.quit()
M = imaplib.IMAP4('127.0.0.1', int(sys.argv[2])); M.login('u7', 'testpw')
for box in ['INBOX', 'Filtered']:
    typ, _ = M.select(box)
    if typ != 'OK': print(box, 'missing'); continue
    typ, d = M.fetch('1:*', '(BODY.PEEK[HEADER.FIELDS (SUBJECT)])')
    print(box, sorted(x[1].decode().strip() for x in d if isinstance(x, tuple)))
"#;

#[test]
fn sieveshell_puts_a_script_that_lmtpd_runs() {
    if !can_run("managesieve clients", &[SIEVESHELL, SIVTEST]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let mut b = Backend::start(d.path(), "");
    let port = b.start_timsieved();
    let server = format!("127.0.0.1:{port}");
    std::fs::write(d.path().join("filter.sieve"), SCRIPT).unwrap();
    let shell = |cmds: &str| {
        let o = std::process::Command::new(SIEVESHELL)
            .args(["-a", "u7", "-u", "u7", "-p", "testpw", "-e", cmds, &server])
            .current_dir(d.path())
            .output()
            .unwrap();
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
    };
    let out = shell("put filter.sieve main\nput filter.sieve spare\nactivate main\nlist\n");
    assert!(out.contains("main  <- active"), "{out}");
    assert!(out.contains("spare"), "{out}");
    // Where lmtpd (and Cyrus with legacy directories) finds it.
    let ud = d.path().join("sieve/u/u7");
    assert_eq!(std::fs::read_to_string(ud.join("main.script")).unwrap(), SCRIPT);
    assert_eq!(std::fs::read_link(ud.join("defaultbc")).unwrap(), std::path::Path::new("main.bc"));
    let got = python(DELIVER_AND_LOOK, &[b.lmtp_sock.to_str().unwrap(), &b.imap_port.to_string()]);
    assert!(got.contains("INBOX ['Subject: other']"), "{got}");
    assert!(got.contains("Filtered ['Subject: a sieve test']"), "{got}");
    // A script that does not compile is refused with the parser's words
    // (sieveshell prints them) and the stored one stays.
    std::fs::write(d.path().join("broken.sieve"), "fileinto \"x\";\r\n").unwrap();
    let out = shell("put broken.sieve main\nget main main.back\ndeactivate\ndelete spare\nlist\n");
    assert!(out.contains("line 1: fileinto requires \"fileinto\""), "{out}");
    assert_eq!(std::fs::read_to_string(d.path().join("main.back")).unwrap(), SCRIPT);
    assert!(out.lines().any(|l| l.trim() == "main"), "{out}");
    assert!(!out.contains("<- active") && !out.contains("spare"), "{out}");
    assert!(!ud.join("defaultbc").exists());
    // sivtest (Cyrus's ManageSieve test client) authenticates by PLAIN.
    let out = run_client(
        SIVTEST,
        &["-a", "u7", "-w", "testpw", "-m", "PLAIN", "-p", &port.to_string(), "127.0.0.1"],
        "LISTSCRIPTS\r\nLOGOUT\r\n",
    );
    assert!(out.contains("Authenticated."), "{out}");
    assert!(out.contains("\"main\"\r\nOK") || out.contains("\"main\"\nOK"), "{out}");
    let out = run_client(
        SIVTEST,
        &["-a", "u7", "-w", "wrong", "-m", "PLAIN", "-p", &port.to_string(), "127.0.0.1"],
        "",
    );
    assert!(out.contains("NO \"Authentication Error\""), "{out}");
    // A deleted user's scripts go with them (a new user of that name
    // must not inherit them).
    let out = harness::murder::imap_admin(b.imap_port, &["SETACL user/u7 md5u x", "DELETE user/u7"]);
    assert_eq!(out.matches("-> OK").count(), 2, "{out}");
    assert!(!ud.exists());
}

/// STARTTLS, UTF-8 names, replacing at the script limit, bounded reads.
const SESSION: &str = r#"
import socket, ssl, sys, base64, re
port, ca = int(sys.argv[1]), sys.argv[2]
s = socket.create_connection(('127.0.0.1', port)); s.settimeout(20); f = s.makefile('rb')
def resp():
    out = []
    while True:
        l = f.readline()
        m = re.search(rb'\{(\d+)\}\r\n$', l)
        if m: l = l + f.read(int(m.group(1))) + f.readline()
        if not l: out.append(b'<EOF>'); return out
        out.append(l)
        if re.match(rb'(OK|NO|BYE)', l): return out
def cmd(c):
    s.sendall(c); r = resp(); print('C:', repr(c[:40].split(b'\r')[0])); [print('S:', repr(x)) for x in r]
print('greeting', resp())
cmd(b'AUTHENTICATE "PLAIN" "' + base64.b64encode(b'\0u7\0testpw') + b'"\r\n')
cmd(b'STARTTLS\r\n')
ctx = ssl.create_default_context(cafile=ca)
s = ctx.wrap_socket(s, server_hostname='localhost'); f = s.makefile('rb')
print('after tls', resp())
cmd(b'AUTHENTICATE "PLAIN" "' + base64.b64encode(b'\0u7\0testpw') + b'"\r\n')
cmd(b'STARTTLS\r\n')
cmd(b'PUTSCRIPT {14+}\r\nvacances \xc3\xa9t\xc3\xa9 "keep;"\r\n')
cmd(b'PUTSCRIPT "two" "stop;"\r\n')
cmd(b'PUTSCRIPT "three" "stop;"\r\n')
cmd(b'PUTSCRIPT "two" "discard;"\r\n')
cmd(b'LISTSCRIPTS\r\n')
cmd(b'GETSCRIPT "vacances \xc3\xa9t\xc3\xa9"\r\n')
cmd(b'NOOP "' + b'a' * 200000 + b'"\r\n')
cmd(b'PUTSCRIPT "big" {200000+}\r\n' + b'#' * 200000 + b'\r\n')
cmd(b'GETSCRIPT "two"\r\n')
cmd(b'PUTSCRIPT "x" {99999999999999999999999+}\r\n')
cmd(b'LOGOUT\r\n')
"#;

#[test]
fn starttls_utf8_names_and_bounded_reads() {
    let d = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certs(d.path());
    let extra = format!(
        "allowplaintext: no\nsieve_maxscripts: 2\ntls_server_cert: {}\ntls_server_key: {}\n",
        cert.display(),
        key.display()
    );
    let mut b = Backend::start(&d.path().join("b"), &extra);
    let port = b.start_timsieved();
    let out = python(SESSION, &[&port.to_string(), ca.to_str().unwrap()]);
    let expect = [
        // Without TLS and allowplaintext: no, no mechanism is offered.
        r#"greeting [b'"IMPLEMENTATION""#,
        r#"b'"SASL" ""\r\n', b'"SIEVE""#,
        r#"b'"STARTTLS"\r\n', b'"UNAUTHENTICATE"\r\n', b'OK\r\n']"#,
        "C: b'AUTHENTICATE \"PLAIN\" \"AHU3AHRlc3Rwdw==\"'\nS: b'NO \"Authentication Error\"\\r\\n'",
        "S: b'OK \"Begin TLS negotiation now\"\\r\\n'",
        // RFC 5804 2.2: the capabilities again after TLS, with mechanisms
        // and without STARTTLS.
        r#"after tls [b'"IMPLEMENTATION""#,
        r#"b'"SASL" "PLAIN LOGIN"\r\n'"#,
        "C: b'AUTHENTICATE \"PLAIN\" \"AHU3AHRlc3Rwdw==\"'\nS: b'OK\\r\\n'",
        "C: b'STARTTLS'\nS: b'NO \"TLS already active\"\\r\\n'",
        // UTF-8 names as they are; replacing one at the limit is allowed.
        "C: b'PUTSCRIPT \"three\" \"stop;\"'\nS: b'NO (QUOTA/MAXSCRIPTS) \"You are only allowed 2 scripts on this server\"\\r\\n'",
        "C: b'PUTSCRIPT \"two\" \"discard;\"'\nS: b'OK\\r\\n'",
        "S: b'\"two\"\\r\\n'\nS: b'\"vacances \\xc3\\xa9t\\xc3\\xa9\"\\r\\n'\nS: b'OK\\r\\n'",
        "S: b'{5}\\r\\nkeep;\\r\\n'",
        // An over-long line and over-size literals: one NO each, the
        // session goes on.
        "C: b'NOOP \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'\nS: b'NO \"Expected a command. Got something else.\"\\r\\n'",
        "C: b'PUTSCRIPT \"big\" {200000+}'\nS: b'NO \"Did not specify legal script data length\"\\r\\n'",
        "C: b'PUTSCRIPT \"x\" {99999999999999999999999+}'\nS: b'NO \"Did not specify legal script data length\"\\r\\n'",
        "S: b'{8}\\r\\ndiscard;\\r\\n'",
        // A literal no client could send ends the session.
        "C: b'LOGOUT'\nS: b'<EOF>'",
    ];
    for e in expect {
        assert!(out.contains(e), "missing {e}\n{out}");
    }
    let after_tls = out.split("after tls").nth(1).unwrap().lines().next().unwrap();
    assert!(!after_tls.contains("STARTTLS"), "{out}");
    let log = std::fs::read_to_string(d.path().join("b/timsieved.log")).unwrap();
    assert!(log.contains("starttls: "), "{log}");
    assert!(log.contains("login: localhost [127.0.0.1] u7 PLAIN User logged in"), "{log}");
    assert!(!log.contains("testpw"), "{log}");
}

/// A script using what Cyrus 3.6 scripts moved here use (editheader,
/// duplicate), uploaded with sieveshell.
const EDITING: &str = "require [\"editheader\", \"duplicate\", \"fileinto\", \"mailbox\", \"vnd.cyrus.log\", \"variables\"];\r\n\
                       if header :matches \"subject\" \"*\" { log \"subject ${1}\"; }\r\n\
                       addheader \"X-Filtered\" \"by-script\";\r\n\
                       deleteheader \"X-Secret\";\r\n\
                       if duplicate :header \"x-key\" { fileinto :create \"Dups\"; }\r\n";

/// One LMTP transaction to u7 (who has `EDITING`) and yes1 (no script),
/// then a second message with the same X-Key to u7; each copy's header
/// and size over IMAP.
const DELIVER_TWO: &str = r#"
import smtplib, imaplib, sys
for u in ['u7', 'yes1']:
    imaplib.IMAP4('127.0.0.1', int(sys.argv[2])).login(u, 'testpw')
import socket
def lmtp(rcpts, subject, mid):
    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile('rb')
    def reply(c=None):
        if c: s.sendall(c.encode() + b'\r\n')
        while True:
            l = f.readline().decode()
            if l[3:4] != '-': return l.strip()
    reply(); reply('LHLO x'); reply('MAIL FROM:<from@example.org>')
    for r in rcpts: reply('RCPT TO:<%s>' % r)
    reply('DATA')
    mid = 'Message-ID: <%s@x>\r\n' % mid if mid else ''
    s.sendall(('From: from@example.org\r\nSubject: %s\r\nX-Secret: s3\r\nX-Key: k1\r\n%s\r\nthe body\r\n.\r\n' % (subject, mid)).encode())
    print([reply().split(' SESSIONID')[0] for r in rcpts])
    s.close()
lmtp(['u7', 'yes1'], 'first', 'm1')
lmtp(['u7'], 'second', 'm2')
lmtp(['u7'], 'third', None)
for u in ['u7', 'yes1']:
    M = imaplib.IMAP4('127.0.0.1', int(sys.argv[2])); M.login(u, 'testpw')
    for box in ['INBOX', 'Dups']:
        if M.select(box)[0] != 'OK': continue
        typ, d = M.fetch('1:*', '(RFC822.SIZE BODY.PEEK[])')
        for x in d:
            if isinstance(x, tuple):
                size = int(x[0].decode().split('RFC822.SIZE ')[1].split()[0])
                print(u, box, size == len(x[1]), repr(x[1].decode()))
"#;

#[test]
fn editheader_and_duplicate_at_delivery() {
    if !can_run("managesieve clients", &[SIEVESHELL]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let mut b = Backend::start(d.path(), "");
    let port = b.start_timsieved();
    std::fs::write(d.path().join("edit.sieve"), EDITING).unwrap();
    let o = std::process::Command::new(SIEVESHELL)
        .args([
            "-a",
            "u7",
            "-u",
            "u7",
            "-p",
            "testpw",
            "-e",
            "put edit.sieve main\nactivate main\nlist\n",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .current_dir(d.path())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("main  <- active"), "{out}{}", String::from_utf8_lossy(&o.stderr));
    let got = python(DELIVER_TWO, &[b.lmtp_sock.to_str().unwrap(), &b.imap_port.to_string()]);
    // u7's copy is edited (the new field on top, X-Secret gone) and its
    // size is its own; yes1's copy of the same transaction is untouched.
    let line = |who: &str, subject: &str| {
        got.lines()
            .find(|l| l.starts_with(who) && l.contains(subject))
            .unwrap_or_else(|| panic!("{who} {subject}: {got}"))
            .to_string()
    };
    let u7 = line("u7 INBOX", "Subject: first");
    assert!(u7.contains("True 'X-Filtered: by-script\\r\\nReturn-Path: "), "{got}");
    assert!(
        !u7.contains("X-Secret") && u7.contains("X-Key: k1") && u7.ends_with("\\r\\nthe body\\r\\n'"),
        "{got}"
    );
    let y = line("yes1 INBOX", "Subject: first");
    assert!(
        y.contains("True ") && y.contains("X-Secret: s3") && !y.contains("X-Filtered"),
        "{got}"
    );
    // The second message's X-Key was seen: filed into Dups.
    assert!(line("u7 Dups", "Subject: second").contains("X-Filtered"), "{got}");
    assert!(
        !got.lines().any(|l| l.starts_with("u7 INBOX") && l.contains("Subject: second")),
        "{got}"
    );
    assert!(
        got.starts_with("['250 2.1.5 Success', '250 2.1.5 Success']\n['250 2.1.5 Success']\n"),
        "{got}"
    );
    // vnd.cyrus.log: the script's lines in lmtpd's log, in Cyrus's words.
    let log = std::fs::read_to_string(d.path().join("lmtpd.log")).unwrap();
    for l in [
        "sieve log: userid=u7 messageid=<m1@x> text=subject first",
        "sieve log: userid=u7 messageid=<m2@x> text=subject second",
    ] {
        assert!(log.lines().any(|x| x.ends_with(l)), "{l}: {log}");
    }
    // Without a Message-ID, the one lmtpd gave the message (as Cyrus).
    assert!(
        log.lines()
            .any(|x| x.contains("sieve log: userid=u7 messageid=<cmu-lmtpd-") && x.ends_with("> text=subject third")),
        "{log}"
    );
}
