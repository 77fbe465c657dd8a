//! The back end with real clients: LMTP deliveries from Python's smtplib
//! and Cyrus's lmtptest, IMAP sessions from Cyrus's imtest and Python's
//! imaplib, and bad input over raw sockets.

mod harness;
use harness::*;
use std::process::Command;

const IMTEST: &str = "/usr/lib/cyrus/bin/imtest";
const LMTPTEST: &str = "/usr/lib/cyrus/bin/lmtptest";

fn multipart() -> String {
    format!("{}/compat/messages/multipart.eml", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn lmtp_delivery_and_imap_sessions_with_real_clients() {
    if !can_run("store with real clients", &[IMTEST, LMTPTEST, "/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let b = Backend::start(d.path(), "");

    // First logins create the INBOXes (autocreate_quota: 0).
    python(
        r#"
import imaplib, sys
for u in ('u7', 'yes1'):
    M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1])); M.login(u, 'testpw'); M.logout()
"#,
        &[&b.imap_port.to_string()],
    );
    // LMTP over the UNIX socket (trusted as postman): per-recipient replies.
    let out = python(
        r#"
import smtplib, sys
l = smtplib.LMTP(sys.argv[1])
code, caps = l.docmd('LHLO', 'test.example')
# Cyrus 3.6's lines on its socket, but for AUTH EXTERNAL and with
# CHUNKING (see lmtpd).
import re
assert code == 250 and re.fullmatch(rb'backend1\n8BITMIME\nENHANCEDSTATUSCODES\nPIPELINING\nCHUNKING\nSIZE\nIGNOREQUOTA\nOk SESSIONID=<[^>]+>', caps), caps
msg = open(sys.argv[2], 'rb').read()
refused = l.sendmail('sender@peers.test', ['u7@example.test', 'nosuchuser@example.test', 'yes1+Junk@example.test'], msg)
print('refused', refused)
l.quit()
"#,
        &[b.lmtp_sock.to_str().unwrap(), &multipart()],
    );
    assert!(out.contains("'nosuchuser@example.test': (550, b'Mailbox unknown."), "{out}");
    assert!(out.contains("5.1.1 User unknown"), "{out}");

    // The message file is where Cyrus would put it.
    let f = d.path().join("spool/u/user/u7/1.");
    let stored = std::fs::read(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
    assert!(stored.starts_with(b"Return-Path: <sender@peers.test>\r\nReceived: from "));
    assert!(stored.ends_with(&std::fs::read(multipart()).unwrap()));
    assert!(
        d.path().join("spool/y/user/yes1/1.").exists(),
        "+detail without a Junk folder goes to INBOX"
    );

    // lmtptest over TCP: AUTH PLAIN through saslauthd, then a transaction.
    let lport = b.lmtp_port.to_string();
    let out = run_client(
        LMTPTEST,
        &["-a", "u7", "-w", "testpw", "-m", "PLAIN", "-p", &lport, "127.0.0.1"],
        "MAIL FROM:<x@y>\r\nRCPT TO:<u7>\r\nDATA\r\nSubject: second\r\nMessage-ID: <second@x>\r\n\r\nhello\r\n.\r\nQUIT\r\n",
    );
    assert!(out.contains("Authenticated."), "{out}");
    assert!(out.contains("250 2.1.5 Success SESSIONID=<backend1-"), "{out}");
    let out = run_client(
        LMTPTEST,
        &["-a", "u7", "-w", "wrong", "-m", "PLAIN", "-p", &lport, "127.0.0.1"],
        "QUIT\r\n",
    );
    assert!(out.contains("Authentication failed"), "{out}");
    // Unauthenticated TCP clients may not deliver.
    let out = python(
        r#"
import socket, sys
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
f = s.makefile('rb')
f.readline()
s.sendall(b'LHLO x\r\nMAIL FROM:<a@b>\r\nQUIT\r\n')
print(f.read().decode())
"#,
        &[&lport],
    );
    assert!(out.contains("430 Authentication required"), "soft_noauth: {out}");

    // imtest: Cyrus's own client logs in and runs commands.
    let iport = b.imap_port.to_string();
    let out = run_client(
        IMTEST,
        &["-a", "u7", "-w", "testpw", "-m", "login", "-p", &iport, "127.0.0.1"],
        ". select INBOX\r\n. fetch 1:* (flags uid)\r\n. logout\r\n",
    );
    assert!(out.contains("Authenticated."), "{out}");
    assert!(out.contains("* 2 EXISTS"), "{out}");
    assert!(out.contains("* 2 FETCH (FLAGS (\\Recent) UID 2)"), "{out}");
    let out = run_client(
        IMTEST,
        &["-a", "u7", "-w", "testpw", "-m", "plain", "-p", &iport, "127.0.0.1"],
        ". logout\r\n",
    );
    assert!(out.contains("Authenticated."), "{out}");

    // imaplib: the transcript's session; ENVELOPE, BODYSTRUCTURE and the
    // sections are what Cyrus 3.6.1 answered for the same message.
    let out = python(
        r#"
import imaplib, sys
M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1]))
assert b'Cyrus IMAP' in M.welcome and b'server ready' in M.welcome, M.welcome
typ, data = M.login('u7', 'testpw')
assert typ == 'OK' and b'User logged in SESSIONID=<' in data[0], data
typ, data = M.select('INBOX')
assert data == [b'2'], data
typ, data = M.fetch('1', '(BODYSTRUCTURE)')
want = b'1 (BODYSTRUCTURE (((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\" \"FORMAT\" \"flowed\") NIL NIL \"QUOTED-PRINTABLE\" 131 3 NIL NIL NIL NIL)(\"TEXT\" \"HTML\" (\"CHARSET\" \"utf-8\") NIL NIL \"8BIT\" 78 1 NIL NIL NIL NIL) \"ALTERNATIVE\" (\"BOUNDARY\" \"inner-7\") NIL NIL NIL)'
assert data[0].startswith(want), data
typ, data = M.uid('FETCH', '1', '(BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)] BODY.PEEK[1.1]<0.80> BINARY.SIZE[2])')
assert data[0][0] == b'1 (UID 1 BODY[HEADER.FIELDS (SUBJECT FROM)] {137}', data
assert data[1][0] == b' BODY[1.1]<0> {80}', data
assert data[2] == b' BINARY.SIZE[2] 1069)', data
typ, data = M.fetch('2', '(BODY.PEEK[1.1] BINARY.SIZE[2])')
assert data == [b'2 (BODY[1.1] NIL BINARY.SIZE[2] 0)'], data
typ, data = M.fetch('1', '(BODY.PEEK[3.HEADER] BODY.PEEK[2.MIME])')
assert data[0][0] == b'1 (BODY[3.HEADER] {224}' and data[1][0] == b' BODY[2.MIME] {235}', data
assert M.search(None, 'SUBJECT', 'multipart') == ('OK', [b'1'])
assert M.uid('SEARCH', 'TEXT', 'attachment') == ('OK', [b'1'])
assert M.search(None, 'BODY', '"soft line"') == ('OK', [b'1'])
assert M.search(None, 'OR', 'FROM', 'sender@peers', 'SUBJECT', 'second') == ('OK', [b'1 2'])
assert M.search(None, 'NOT', 'SEEN') == ('OK', [b'1 2'])
typ, data = M.store('1', '+FLAGS', '(\\Flagged $Label1)')
assert data == [b'1 (FLAGS (\\Flagged $Label1))'], data  # imtest's SELECT took \\Recent
typ, data = M.fetch('2', '(BODY[TEXT])')
assert data[0][0] == b'2 (FLAGS (\\Seen) BODY[TEXT] {7}', data
assert M.search(None, 'SEEN') == ('OK', [b'2'])
typ, data = M.status('INBOX', '(MESSAGES UIDNEXT UNSEEN)')
assert data == [b'INBOX (MESSAGES 2 UIDNEXT 3 UNSEEN 1)'], data
assert M.create('Archive/2026')[0] == 'OK'
typ, data = M.copy('1:2', 'Archive/2026')
assert typ == 'OK' and b'[COPYUID ' in data[0] and data[0].endswith(b' 1:2 1:2] Completed'), data
typ, data = M.list()
assert data == [b'(\\HasNoChildren) "/" INBOX', b'(\\HasChildren) "/" Archive', b'(\\HasNoChildren) "/" Archive/2026'] or data[0] == b'(\\HasNoChildren) "/" INBOX', data
typ, data = M.append('Archive/2026', '(\\Seen)', '"05-Mar-2026 10:00:00 +0100"', b'Subject: appended\r\n\r\nx\r\n')
assert typ == 'OK' and b'[APPENDUID ' in data[0] and b' 3]' in data[0], data
typ, data = M.uid('MOVE', '2', 'Archive/2026')
assert typ == 'OK', data
typ, data = M.select('Archive/2026', readonly=True)
assert data == [b'4'], data
typ, data = M.fetch('3', '(INTERNALDATE FLAGS)')
assert data == [b'3 (FLAGS (\\Recent \\Seen) INTERNALDATE " 5-Mar-2026 09:00:00 +0000")'], data
typ, data = M.store('1', '+FLAGS', '(\\Deleted)')
assert typ == 'NO', data
M.select('INBOX')
typ, data = M.fetch('1:*', '(UID)')
assert data == [b'1 (UID 1)'], data
M.store('1', '+FLAGS', '(\\Deleted)')
typ, data = M.expunge()
assert data == [b'1'], data
typ, data = M.status('INBOX', '(MESSAGES)')
assert data == [b'INBOX (MESSAGES 0)'], data
assert M.delete('Archive/2026')[0] == 'OK'
assert M.select('Archive/2026')[0] == 'NO'
print(M.logout())
"#,
        &[&iport],
    );
    assert!(out.contains("BYE"), "{out}");
    // Delayed expunge (Cyrus's default) keeps the expunged message's file
    // for unexpunge until cyr_expire -X; the other user's copy stays.
    assert!(f.exists());
    assert!(d.path().join("spool/y/user/yes1/1.").exists());
}

#[test]
fn idle_sees_lmtp_deliveries_from_another_process() {
    if !can_run("idle", &["/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let b = Backend::start(d.path(), "");
    let out = python(
        r#"
import imaplib, smtplib, sys, socket
M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1])); M.login('u7', 'testpw'); M.logout()
l = smtplib.LMTP(sys.argv[2]); l.sendmail('a@b', ['u7'], b'Subject: one\r\n\r\nx\r\n'); l.quit()
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
f = s.makefile('rb')
def cmd(line):
    s.sendall(line)
f.readline()
cmd(b'a LOGIN u7 testpw\r\n')
while not f.readline().startswith(b'a OK'): pass
cmd(b'b SELECT INBOX\r\n')
while not f.readline().startswith(b'b OK'): pass
cmd(b'c IDLE\r\n')
assert f.readline() == b'+ idling\r\n'
l = smtplib.LMTP(sys.argv[2]); l.sendmail('a@b', ['u7'], b'Subject: two\r\n\r\nx\r\n'); l.quit()
s.settimeout(20)
assert f.readline() == b'* 2 EXISTS\r\n'
assert f.readline() == b'* 2 RECENT\r\n'
cmd(b'DONE\r\n')
assert f.readline() == b'c OK Completed\r\n'
print('ok')
"#,
        &[&b.imap_port.to_string(), b.lmtp_sock.to_str().unwrap()],
    );
    assert!(out.contains("ok"), "{out}");
}

#[test]
fn bad_input_gets_protocol_errors_and_writes_nothing() {
    if !can_run("bad input", &["/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let b = Backend::start(d.path(), "maxmessagesize: 10000\n");
    let out = python(
        r#"
import socket, sys
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
s.settimeout(20)
f = s.makefile('rb')
def rt(line, want):
    s.sendall(line)
    while True:
        l = f.readline()
        assert l, 'connection closed after %r' % line
        if not l.startswith(b'*') or want.startswith(b'*'):
            break
    assert l.startswith(want), (line, l)
f.readline()
rt(b'a1 SELECT INBOX\r\n', b'a1 BAD Please login first')
rt(b'a2 FROB\r\n', b'a2 BAD Unrecognized command')
rt(b'\r\n', b'* BAD Invalid tag')
rt(b'a3 LOGIN u7 testpw\r\n', b'a3 OK')
rt(b'a4 FETCH 1 FLAGS\r\n', b'a4 BAD Please select a mailbox first')
rt(b'a5 NOOP extra\r\n', b'a5 BAD Unexpected extra arguments to Noop')
# Literals: over maxmessagesize refused before it is sent (one sent
# unasked ends the session: below), over maxliteral (128 KiB) likewise.
rt(b'a6 APPEND INBOX {20000}\r\n', b'a6 NO [TOOBIG] Message size exceeds fixed limit')
rt(b'a8 LOGIN {140000}\r\n', b'a8 NO [TOOBIG] Literal size exceeds fixed limit in LOGIN')
# A word of 100,000 bytes is within maxword (128 KiB); a line of words
# over twice that is refused whole, and the session goes on.
rt(b'a9 NOOP ' + b'x' * 100000 + b'\r\n', b'a9 BAD Unexpected extra arguments to Noop')
s.sendall(b'a9 NOOP ' + b'x ' * 140000 + b'\r\n')
l = f.readline(); assert l == b'* BAD Line too long\r\n', l
# Mailbox names with .., empty parts, control characters, bad mUTF-7.
for name in [b'a/../b', b'a//b', b'"x\x01y"', b'&Jjo', b'"a\\"/..', b'*']:
    rt(b'n CREATE ' + name + b'\r\n', b'n ')
rt(b'b1 CREATE "a/../b"\r\n', b'b1 NO Invalid mailbox name')
rt(b'b2 CREATE "x\ty"\r\n', b'b2 NO Invalid mailbox name')
rt(b'b3 APPEND INBOX {6}\r\n', b'+ go ahead')
rt(b'a\nb\r\n\r\n', b'b3 NO Message contains bare newlines')
rt(b'b4 SELECT INBOX\r\n', b'b4 OK [READ-WRITE]')
rt(b'b5 FETCH 5 FLAGS\r\n', b'b5 NO No matching messages')
rt(b'b55 FETCH 0 FLAGS\r\n', b'b55 BAD Invalid sequence')
rt(b'b6 LOGOUT\r\n', b'* BYE')
# A message over maxmessagesize sent unasked: refused, and the session
# ends (Cyrus's replies), without a reset that would lose them.
s = socket.create_connection(('127.0.0.1', int(sys.argv[1]))); s.settimeout(20)
f = s.makefile('rb'); f.readline()
rt(b'c1 LOGIN u7 testpw\r\n', b'c1 OK')
s.sendall(b'c2 APPEND INBOX {20000+}\r\n' + b'x' * 20000 + b'\r\n')
assert f.readline() == b'c2 NO [TOOBIG] Message size exceeds fixed limit\r\n'
assert f.readline() == b'* BYE [TOOBIG] Message size exceeds fixed limit\r\n'
assert f.readline() == b''
print('survived')
"#,
        &[&b.imap_port.to_string()],
    );
    assert!(out.contains("survived"), "{out}");
    // Nothing was written for the refused commands.
    let spool = d.path().join("spool/u/user/u7");
    let files: Vec<_> = std::fs::read_dir(&spool)
        .map(|r| r.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(files.is_empty(), "{files:?}");
    let _ = b;
}

#[test]
fn master_runs_services_from_cyrus_conf() {
    if !can_run("master", &["/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let mut b = Backend::start(d.path(), "");
    // The standalone daemons go; master starts them from cyrus.conf.
    b.imapd.take();
    b.lmtpd.take();
    let iport = free_port();
    let sock = d.path().join("conf/socket/lmtp-master");
    std::fs::write(
        d.path().join("cyrus.conf"),
        format!(
            "START {{\n  recover cmd=\"/usr/sbin/cyrus ctl_cyrusdb -r\"\n  delprune cmd=\"/usr/sbin/cyrus expire -C {} -E 3\"\n  dupprune cmd=\"/usr/lib/cyrus/bin/ctl_deliver -C {} -E 3\"\n}}\nSERVICES {{\n  imap cmd=\"imapd\" listen=\"127.0.0.1:{iport}\" prefork=0 maxchild=50\n  \
             lmtpunix cmd=\"/usr/libexec/cyrus-imapd/lmtpd\" listen=\"{}\"\n  pop3 cmd=\"/usr/lib/cyrus/bin/pop3d\" listen=\"127.0.0.1:0\"\n}}\nEVENTS {{\n  checkpoint cmd=\"ctl_cyrusdb -c\" period=30\n}}\n",
            b.conf.display(),
            b.conf.display(),
            sock.display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(d.path().join("master.log")).unwrap();
    let mut cmd = Command::new(bin("master"));
    cmd.args([
        "-C",
        b.conf.to_str().unwrap(),
        "-M",
        d.path().join("cyrus.conf").to_str().unwrap(),
        "-p",
        d.path().join("master.pid").to_str().unwrap(),
        "-D",
    ])
    .stdout(log.try_clone().unwrap())
    .stderr(log);
    let mut master = Proc::spawn("master", &mut cmd);
    wait_tcp(iport);
    assert!(d.path().join("master.pid").exists());
    let out = python(
        r#"
import imaplib, smtplib, sys
M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1])); M.login('u7', 'testpw')
l = smtplib.LMTP(sys.argv[2]); l.sendmail('a@b', ['u7'], b'Subject: via master\r\n\r\nx\r\n'); l.quit()
typ, data = M.select('INBOX')
assert data == [b'1'], data
M.logout()
print('ok')
"#,
        &[&iport.to_string(), sock.to_str().unwrap()],
    );
    assert!(out.contains("ok"), "{out}");

    // SIGHUP: cyrus.conf is read again (a new service appears), new
    // connections go to new processes, and a session in IDLE on the old
    // process carries on until it logs out; then the old process exits.
    use std::io::{BufRead, BufReader, Write};
    let mut old = std::net::TcpStream::connect(("127.0.0.1", iport)).unwrap();
    old.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    let mut rd = BufReader::new(old.try_clone().unwrap());
    let mut line = String::new();
    let mut expect = |rd: &mut BufReader<std::net::TcpStream>, prefix: &str| loop {
        line.clear();
        rd.read_line(&mut line).unwrap();
        assert!(!line.is_empty(), "connection closed waiting for {prefix}");
        if line.starts_with(prefix) {
            return line.clone();
        }
    };
    expect(&mut rd, "* OK");
    old.write_all(b"a LOGIN u7 testpw\r\nb SELECT INBOX\r\nc IDLE\r\n").unwrap();
    expect(&mut rd, "+ idling");
    let iport2 = free_port();
    let conf = std::fs::read_to_string(d.path().join("cyrus.conf")).unwrap();
    let conf = conf.replace(
        "SERVICES {\n",
        &format!("SERVICES {{\n  imap2 cmd=\"imapd\" listen=\"127.0.0.1:{iport2}\"\n"),
    );
    std::fs::write(d.path().join("cyrus.conf"), conf).unwrap();
    let mpid = master.child.id() as i32;
    let imapds = || -> usize {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
            .filter(|st| st.contains("(imapd)") && st.split(") ").nth(1).and_then(|r| r.split(' ').nth(1)) == Some(&mpid.to_string()))
            .count()
    };
    assert_eq!(imapds(), 1);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(mpid), nix::sys::signal::Signal::SIGHUP).unwrap();
    wait_tcp(iport2);
    let out = python(
        r#"
import imaplib, sys
for p in sys.argv[1:]:
    M = imaplib.IMAP4('127.0.0.1', int(p)); M.login('u7', 'testpw'); M.select('INBOX'); M.logout()
print('ok')
"#,
        &[&iport.to_string(), &iport2.to_string()],
    );
    assert!(out.contains("ok"), "{out}");
    assert_eq!(imapds(), 3, "imap, imap2 and the retiring old imap");
    old.write_all(b"DONE\r\n").unwrap();
    assert_eq!(expect(&mut rd, "c "), "c OK Completed\r\n");
    old.write_all(b"d NOOP\r\ne LOGOUT\r\n").unwrap();
    assert_eq!(expect(&mut rd, "d "), "d OK Completed\r\n");
    wait_for("the retired imapd to exit", std::time::Duration::from_secs(10), || imapds() == 2);
    let mlog = std::fs::read_to_string(d.path().join("master.log")).unwrap();
    assert!(mlog.contains("reloading configuration"), "{mlog}");
    // The distributions' `/usr/sbin/cyrus expire`, Cyrus 2.x's
    // `ctl_deliver -E`, RHEL's
    // `/usr/libexec/cyrus-imapd/lmtpd` and Debian's `/usr/lib/cyrus/bin/pop3d`
    // (the real Cyrus's, installed here) ran as ours; what is not ours is
    // skipped.
    assert!(mlog.contains("recover: ctl_cyrusdb is not part of mumail; skipped"), "{mlog}");
    assert!(
        !mlog.contains("delprune") && !mlog.contains("dupprune") && !mlog.contains("cyrus-imapd"),
        "{mlog}"
    );
    assert!(mlog.contains(&format!("name:pop3 path:{}", bin("pop3d").display())), "{mlog}");

    // SIGTERM stops master and its services.
    master.stop();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", iport)).is_err(),
        "imapd still listening after master stopped"
    );
    assert!(!d.path().join("master.pid").exists());
}

/// RENAME INBOX moves the messages (flags kept) and leaves INBOX and its
/// children; an admin moves a folder to another user (another owner
/// database; the ACL goes with it unchanged, as Cyrus); user renames
/// need allowusermoves; users cannot rename into other users' trees; a
/// mailbox cannot move into itself.
#[test]
fn rename_inbox_and_across_users() {
    if !can_run("rename", &["/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let b = Backend::start(d.path(), "");
    let out = python(
        r#"
import imaplib, smtplib, sys
port = int(sys.argv[1])
for u in ('u7', 'yes1'):
    M = imaplib.IMAP4('127.0.0.1', port); M.login(u, 'testpw'); M.logout()
l = smtplib.LMTP(sys.argv[2])
for i in range(3):
    l.sendmail('a@b', ['u7'], ('Subject: m%d\r\n\r\nbody %d\r\n' % (i, i)).encode())
l.quit()
M = imaplib.IMAP4('127.0.0.1', port); M.login('u7', 'testpw')
assert M.create('Keep')[0] == 'OK'
M.select('INBOX')
M.store('2', '+FLAGS', '(\\Flagged $Work)')
M.close()
typ, r = M.rename('INBOX', 'Old')
assert typ == 'OK', r
typ, r = M.select('INBOX'); assert r == [b'0'], r
typ, r = M.select('Old'); assert r == [b'3'], r
typ, r = M.fetch('1:3', '(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])')
text = b' '.join(x if isinstance(x, bytes) else b' '.join(x) for x in r)
assert b'm0' in text and b'm2' in text and b'\\Flagged' in text and b'$Work' in text, text
M.close()
typ, r = M.list(); names = b' '.join(r)
assert b'"/" Keep' in names and b'"/" Old' in names, names
r = M.rename('Keep', 'Keep/Inner'); assert r[0] == 'NO', ('inner', r)
r = M.rename('Keep', '"Other Users/yes1/Stolen"'); assert r[0] == 'NO', ('stolen', r)
M.logout()
A = imaplib.IMAP4('127.0.0.1', port); A.login('md5u', 'testpw')
typ, r = A.rename('user/u7/Old', 'user/yes1/FromU7'); assert typ == 'OK', r
typ, r = A.rename('user/u7', 'user/zz'); assert typ == 'NO' and b'not supported' in r[0], r
A.logout()
Y = imaplib.IMAP4('127.0.0.1', port); Y.login('yes1', 'testpw')
# A folder moved to another user keeps its ACL (Cyrus 3.6): its new
# owner sees it in GETACL, but nothing else until an admin grants more.
typ, r = Y.getacl('FromU7'); assert b'u7 lrswipkxtecdan' in r[0] and b'yes1' not in r[0], r
typ, r = Y.select('FromU7'); assert typ == 'NO', r
typ, r = Y.setacl('FromU7', 'yes1', 'lrswipkxtecdan'); assert typ == 'NO', r
A = imaplib.IMAP4('127.0.0.1', port); A.login('md5u', 'testpw')
typ, r = A.setacl('user/yes1/FromU7', 'yes1', 'lrswipkxtecdan'); assert typ == 'OK', r
A.logout()
typ, r = Y.select('FromU7'); assert r == [b'3'], r
typ, r = Y.fetch('2', '(FLAGS)'); assert b'\\Flagged' in r[0] and b'$Work' in r[0], r
Y.logout()
M = imaplib.IMAP4('127.0.0.1', port); M.login('u7', 'testpw')
typ, r = M.select('Old'); assert typ == 'NO', r
M.logout()
print('ok')
"#,
        &[&b.imap_port.to_string(), b.lmtp_sock.to_str().unwrap()],
    );
    assert!(out.contains("ok"), "{out}");
    // The files moved with the records: u7's old folder is gone, yes1's
    // new one holds three messages, and reconstruct agrees with the index.
    assert!(!d.path().join("spool/u/user/u7/Old").exists());
    assert_eq!(std::fs::read_dir(d.path().join("spool/y/user/yes1/FromU7")).unwrap().count(), 3);
    let o = std::process::Command::new(bin("reconstruct"))
        .args(["-C", b.conf.to_str().unwrap(), "-n", "-r", "user.yes1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}{}", String::from_utf8_lossy(&o.stderr));
    let repairs: Vec<&str> = text.lines().filter(|l| l.contains(": ") && !l.contains(": cleanup:")).collect();
    assert!(repairs.is_empty() && text.contains("user.yes1.FromU7\n"), "{text}");
}

/// imapd and lmtpd started at the same instant on a new configdirectory
/// (as master does) both come up: creating the databases races, and
/// SQLite does not wait for the lock that switching to WAL takes.
#[test]
fn daemons_started_together_on_a_new_store_both_serve() {
    for round in 0..6 {
        let d = tempfile::tempdir().unwrap();
        let conf = d.path().join("imapd.conf");
        std::fs::write(
            &conf,
            format!(
                "configdirectory: {0}/conf\npartition-default: {0}/spool\nservername: b{round}\n",
                d.path().display()
            ),
        )
        .unwrap();
        let (ip, lp) = (free_port(), free_port());
        let spawn = |prog: &str, port: u16| {
            let mut c = std::process::Command::new(bin(prog));
            c.args(["-C", conf.to_str().unwrap(), "-L", &format!("127.0.0.1:{port}")])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            Proc::spawn(prog, &mut c)
        };
        let mut a = spawn("lmtpd", lp);
        let mut b = spawn("imapd", ip);
        wait_tcp(lp);
        wait_tcp(ip);
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(a.child.try_wait().unwrap().is_none(), "lmtpd died in round {round}");
        assert!(b.child.try_wait().unwrap().is_none(), "imapd died in round {round}");
    }
}

/// FETCH 1:* of every body in a 128,000-message mailbox (128 MB of
/// responses) streams from disk: the server's peak memory grows by far
/// less than what it sends.  The mailbox is filled by 1,000 deliveries
/// doubled seven times with COPY into itself.
#[test]
fn fetch_of_a_huge_mailbox_streams_from_disk() {
    if !can_run("huge fetch", &["/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let b = Backend::start(d.path(), "");
    let pid = b.imapd.as_ref().unwrap().child.id();
    let out = python(
        r#"
import imaplib, smtplib, socket, sys, re
port, sock, pid = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
def hwm():
    for l in open('/proc/%d/status' % pid):
        if l.startswith('VmHWM:'): return int(l.split()[1])
M = imaplib.IMAP4('127.0.0.1', port); M.login('u7', 'testpw')
l = smtplib.LMTP(sock)
body = ('y' * 60 + '\r\n') * 14
for i in range(1000):
    l.sendmail('a@b', ['u7'], ('Subject: m%d\r\n\r\n' % i + body).encode())
l.quit()
M.select('INBOX')
for i in range(7):
    typ, r = M.copy('1:*', 'INBOX'); assert typ == 'OK', r
    M.noop()
typ, r = M.select('INBOX'); assert r == [b'128000'], r
M.logout()
before = hwm()
s = socket.create_connection(('127.0.0.1', port)); s.settimeout(300)
s.sendall(b'a LOGIN u7 testpw\r\nb SELECT INBOX\r\nc FETCH 1:* (UID BODY.PEEK[])\r\n')
total, tail = 0, b''
while True:
    d = s.recv(1 << 20)
    if not d: break
    total += len(d)
    tail = (tail + d)[-200:]
    if re.search(rb'\r\nc (OK|NO|BAD)[^\r]*\r\n$', tail): break
after = hwm()
assert b'\r\nc OK' in tail, tail
print('sent', total, 'hwm growth KB', after - before)
assert total > 120_000_000, total
assert after - before < 48 * 1024, (before, after)
# SEARCH in every body, SORT and THREAD over all 128,000: memory stays
# bounded too (bodies are read one at a time, sort keys are small).
import time
def run(tag, cmd):
    t0 = time.time()
    s.sendall(tag + b' ' + cmd + b'\r\n')
    tail, got = b'', 0
    while True:
        d = s.recv(1 << 20)
        if not d: break
        got += len(d)
        tail = (tail + d)[-300:]
        if re.search(rb'\r\n' + tag + rb' (OK|NO|BAD)[^\r]*\r\n$', tail): break
    assert b'\r\n' + tag + b' OK' in tail, tail
    print(cmd, 'answered in', round(time.time() - t0, 2), 's,', got, 'bytes, hwm growth KB', hwm() - before)
    return got
got = run(b'd', b'SEARCH BODY no-such-words')
got += run(b'e', b'SORT (REVERSE SUBJECT) UTF-8 ALL')
got += run(b'f', b'THREAD REFERENCES UTF-8 ALL')
final = hwm()
assert got > 128000 * 2, got
assert final - before < 48 * 1024, (before, final)
print('ok')
"#,
        &[&b.imap_port.to_string(), b.lmtp_sock.to_str().unwrap(), &pid.to_string()],
    );
    eprintln!("{out}");
    assert!(out.contains("ok"), "{out}");
}

/// lmtpd's quota as Cyrus's: by default a message may take a user over
/// their quota once (refused only when already over, 452 at RCPT); with
/// `lmtp_strict_quota` a message that does not fit is refused.
#[test]
fn lmtp_quota_lenient_by_default_strict_on_request() {
    if !can_run("lmtp quota", &["/usr/bin/unshare"]) {
        return;
    }
    let script = r#"
import imaplib, smtplib, sys
port, sock, strict = int(sys.argv[1]), sys.argv[2], sys.argv[3] == 'yes'
M = imaplib.IMAP4('127.0.0.1', port); M.login('u7', 'testpw'); M.logout()
A = imaplib.IMAP4('127.0.0.1', port); A.login('md5u', 'testpw')
typ, r = A.setquota('user/u7', '(STORAGE 1)'); assert typ == 'OK', r
big = b'Subject: big\r\n\r\n' + b'x' * 3000 + b'\r\n'
def send():
    l = smtplib.LMTP(sock)
    try:
        l.sendmail('a@b', ['u7'], big); return 'ok'
    except smtplib.SMTPRecipientsRefused as e:
        return 'rcpt %d' % e.recipients['u7'][0]
    except smtplib.SMTPDataError as e:
        return 'data %d' % e.smtp_code
    finally:
        l.close()
first, second = send(), send()
print(first, '/', second)
if strict:
    assert first == 'data 452' and second == 'data 452', (first, second)
else:
    assert first == 'ok' and second == 'rcpt 452', (first, second)
typ, r = A.getquotaroot('user/u7'); print(r)
print('done')
"#;
    for strict in ["no", "yes"] {
        let d = tempfile::tempdir().unwrap();
        let b = Backend::start(d.path(), &format!("lmtp_strict_quota: {strict}\n"));
        let out = python(script, &[&b.imap_port.to_string(), b.lmtp_sock.to_str().unwrap(), strict]);
        assert!(out.contains("done"), "{out}");
    }
}

/// INTERNALDATE is printed in the server's time zone, as Cyrus does.
#[test]
fn internaldate_in_the_server_time_zone() {
    if !can_run("time zone", &["/usr/bin/unshare", "/usr/share/zoneinfo/Europe/Berlin"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let b = Backend::start(d.path(), "");
    let port = free_port();
    let mut cmd = std::process::Command::new(bin("imapd"));
    cmd.args(["-C", b.conf.to_str().unwrap(), "-L", &format!("127.0.0.1:{port}")])
        .env("TZ", "Europe/Berlin")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let _berlin = Proc::spawn("imapd TZ=Europe/Berlin", &mut cmd);
    wait_tcp(port);
    let out = python(
        r#"
import imaplib, sys
M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1])); M.login('u7', 'testpw')
M.append('INBOX', None, '"02-Mar-2026 10:00:00 +0000"', b'Subject: w\r\n\r\nwinter\r\n')
M.append('INBOX', None, '"02-Jul-2026 10:00:00 -0300"', b'Subject: s\r\n\r\nsummer\r\n')
M.select('INBOX')
typ, r = M.fetch('1:2', 'INTERNALDATE'); print(r)
assert b'" 2-Mar-2026 11:00:00 +0100"' in r[0], r
assert b'" 2-Jul-2026 15:00:00 +0200"' in r[1], r
print('ok')
"#,
        &[&port.to_string()],
    );
    assert!(out.contains("ok"), "{out}");
}

/// `user+folder` goes to the folder only when its ACL lets `anyone` (or
/// the LMTP client, `postman` on the socket) post; else to INBOX.
#[test]
fn plus_detail_needs_the_post_right() {
    if !can_run("plus detail", &["/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let b = Backend::start(d.path(), "");
    let out = python(
        r#"
import imaplib, smtplib, sys
M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1])); M.login('u7', 'testpw')
for f in ('Lists', 'Private'):
    assert M.create(f)[0] == 'OK'
typ, r = M.setacl('Lists', 'anyone', 'p'); assert typ == 'OK', r
l = smtplib.LMTP(sys.argv[2])
l.sendmail('a@b', ['u7+Lists'], b'Subject: to lists\r\n\r\nx\r\n')
l.sendmail('a@b', ['u7+Private'], b'Subject: to private\r\n\r\nx\r\n')
l.sendmail('a@b', ['u7+Missing'], b'Subject: to missing\r\n\r\nx\r\n')
l.quit()
def subjects(f):
    M.select(f)
    typ, r = M.fetch('1:*', '(BODY.PEEK[HEADER.FIELDS (SUBJECT)])')
    return b' '.join(x[1] for x in r if isinstance(x, tuple))
assert b'to lists' in subjects('Lists')
inbox = subjects('INBOX')
assert b'to private' in inbox and b'to missing' in inbox and b'to lists' not in inbox, inbox
typ, r = M.select('Private'); assert r == [b'0'], r
print('ok')
"#,
        &[&b.imap_port.to_string(), b.lmtp_sock.to_str().unwrap()],
    );
    assert!(out.contains("ok"), "{out}");
}

/// Folders autocreated at first login get their special use from
/// `xlist-<use>` (Cyrus 3), and LIST shows it (RFC 6154).
#[test]
fn autocreated_folders_get_special_use() {
    if !can_run("special use", &["/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let b = Backend::start(
        d.path(),
        "autocreate_inbox_folders: Sent | Drafts | Notes\nxlist-sent: Sent\nxlist-drafts: Drafts\n",
    );
    let out = python(
        r#"
import imaplib, sys
M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1])); M.login('u7', 'testpw')
typ, r = M.list('""', '*'); print(r)
assert b'(\\HasNoChildren \\Sent) "/" Sent' in r, r
assert b'(\\HasNoChildren \\Drafts) "/" Drafts' in r, r
assert b'(\\HasNoChildren) "/" Notes' in r, r
typ, r = M._simple_command('LIST', '(SPECIAL-USE)', '""', '*'); r = M._untagged_response(typ, r, 'LIST')[1]
assert len(r) == 2 and all(b'Notes' not in x for x in r), r
typ, r = M.delete('Sent'); assert typ == 'NO' and b'SPECIAL-USE' in r[0], r
print('ok')
"#,
        &[&b.imap_port.to_string()],
    );
    assert!(out.contains("ok"), "{out}");
}

/// Cyrus's SCAN (LIST of the mailboxes with a message containing a
/// text): the text found in a header or a body, case folded; a folder of
/// another user listed only where the user may read it; an empty text
/// lists every mailbox the pattern matches.  (The real Cyrus 3.6 offers
/// SCAN but its imapd dies on it, so there is no differential.)
#[test]
fn scan_lists_the_mailboxes_with_the_text() {
    if !can_run("scan", &["/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let b = Backend::start(d.path(), "");
    let out = python(
        r#"
import imaplib, sys
imaplib.Commands['SCAN'] = ('AUTH', 'SELECTED')
def scan(M, *args):
    typ, r = M._simple_command('SCAN', *args)
    assert typ == 'OK', (typ, r)
    return sorted(x.decode() for x in M._untagged_response(typ, r, 'LIST')[1] if x)
Y = imaplib.IMAP4('127.0.0.1', int(sys.argv[1])); Y.login('yes1', 'testpw')
M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1])); M.login('u7', 'testpw')
assert b' SCAN ' in b' '.join(M._simple_command('CAPABILITY') and M.untagged_responses['CAPABILITY']) + b' '
for f in ('Work', 'Work/Old', 'Private'):
    assert M.create(f)[0] == 'OK'
M.append('INBOX', None, None, b'Subject: hello\r\n\r\nnothing here\r\n')
M.append('Work', None, None, b'Subject: budget\r\n\r\nThe NEEDLE is in this body\r\n')
M.append('Work/Old', None, None, b'Subject: A needle in the subject\r\n\r\nx\r\n')
M.append('Private', None, None, b'Subject: private\r\n\r\nneedle too\r\n')
assert M.setacl('Work', 'yes1', 'lr')[0] == 'OK'
assert M.setacl('Private', 'yes1', 'l')[0] == 'OK'
print('u7', scan(M, '""', '*', 'needle'))
print('u7 work', scan(M, '""', 'Work*', 'needle'))
print('u7 none', scan(M, '""', '*', 'haystack'))
print('u7 all', scan(M, '""', '%', '""'))
print('yes1', scan(Y, '""', '*', 'needle'))
"#,
        &[&b.imap_port.to_string()],
    );
    for want in [
        r#"u7 ['(\\HasChildren) "/" Work', '(\\HasNoChildren) "/" Private', '(\\HasNoChildren) "/" Work/Old']"#,
        r#"u7 work ['(\\HasChildren) "/" Work', '(\\HasNoChildren) "/" Work/Old']"#,
        "u7 none []",
        r#"u7 all ['(\\HasChildren) "/" Work', '(\\HasNoChildren) "/" INBOX', '(\\HasNoChildren) "/" Private']"#,
        r#"yes1 ['(\\HasNoChildren) "/" "Other Users/u7/Work"']"#,
    ] {
        assert!(out.contains(want), "{want}\n{out}");
    }
}

/// COMPRESS=DEFLATE (RFC 4978) with Python's zlib as the client: a whole
/// session compressed both ways (the first compressed command pipelined
/// behind COMPRESS itself), then a client sending garbage after COMPRESS
/// is disconnected while the server keeps serving.
#[test]
fn compress_deflate_sessions() {
    if !can_run("compress", &["/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let b = Backend::start(d.path(), "");
    let out = python(
        r#"
import socket, sys, zlib, smtplib, time
port = int(sys.argv[1])
l = smtplib.LMTP(sys.argv[2]);
s = socket.create_connection(('127.0.0.1', port)); s.settimeout(20)
f = s.makefile('rb')
def plain(line, tag):
    s.sendall(line)
    while True:
        l = f.readline()
        if l.startswith(tag): return l
f.readline()
plain(b'a LOGIN u7 testpw\r\n', b'a ')
l.sendmail('x@y', ['u7'], b'Subject: squeezed\r\n\r\n' + b'compress me ' * 2000 + b'\r\n'); l.quit()
comp, decomp = zlib.compressobj(wbits=-15), zlib.decompressobj(wbits=-15)
# COMPRESS and, right behind it, the first compressed command.
s.sendall(b'b COMPRESS DEFLATE\r\n' + comp.compress(b'c SELECT INBOX\r\n') + comp.flush(zlib.Z_SYNC_FLUSH))
first = b''
while b'\r\n' not in first:
    first += s.recv(1)
assert first == b'b OK DEFLATE active\r\n', first
data = b''
def until(tag):
    global data
    while tag not in data:
        chunk = s.recv(65536)
        assert chunk, data[-200:]
        data += decomp.decompress(chunk)
until(b'c OK')
s.sendall(comp.compress(b'd FETCH 1 BODY[]\r\ne COMPRESS DEFLATE\r\nf LOGOUT\r\n') + comp.flush(zlib.Z_SYNC_FLUSH))
until(b'f OK')
assert b'compress me compress me' in data and b'[READ-WRITE]' in data, data[:300]
assert b'e NO [COMPRESSIONACTIVE]' in data, data
print('compressed session ok', len(data))
# Garbage after COMPRESS: the server hangs up, and still serves others.
s = socket.create_connection(('127.0.0.1', port)); s.settimeout(20)
f = s.makefile('rb'); f.readline()
plain(b'a LOGIN u7 testpw\r\n', b'a ')
plain(b'b COMPRESS DEFLATE\r\n', b'b ')
s.sendall(bytes(range(256)) * 4)
rest = s.recv(65536)
while rest:
    rest = s.recv(65536)
print('closed')
s = socket.create_connection(('127.0.0.1', port)); s.settimeout(20)
f = s.makefile('rb'); f.readline()
assert plain(b'a LOGIN u7 testpw\r\n', b'a ').startswith(b'a OK')
print('ok')
"#,
        &[&b.imap_port.to_string(), b.lmtp_sock.to_str().unwrap()],
    );
    assert!(
        out.contains("compressed session ok") && out.contains("closed") && out.contains("ok"),
        "{out}"
    );
}

/// imapd.conf options that change what a session sees, as Cyrus reads
/// them: `username_tolower` (on by default: `U7` is u7, checked and
/// logged in as u7, with u7's INBOX), `suppress_capabilities` (left out of
/// every capability list) and `imapidresponse` (off: `* ID NIL`).
#[test]
fn username_case_capability_suppression_and_id_response() {
    if !can_run("imapd.conf session options", &["/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let mut b = Backend::start(
        &d.path().join("b"),
        "suppress_capabilities: XMOVE COMPRESS=DEFLATE SASL-IR\nimapidresponse: no\n",
    );
    let pop = b.start_pop3d();
    let out = python(
        r#"
import imaplib, poplib, sys
imaplib.Commands['ID'] = ('NONAUTH', 'AUTH', 'SELECTED')
M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1]))
pre = M.capabilities
assert 'SASL-IR' not in pre and 'IMAP4REV1' in pre, pre
M.login('U7', 'testpw')
typ, caps = M.capability()
caps = caps[0].decode().split()
assert 'XMOVE' not in caps and 'COMPRESS=DEFLATE' not in caps, caps
assert 'IDLE' in caps and 'XLIST' in caps, caps
typ, acl = M.getacl('INBOX')
print('acl', acl[0].decode())
typ, data = M._simple_command('ID', 'NIL')
print('id', M.untagged_responses.get('ID'))
M.logout()
P = poplib.POP3('127.0.0.1', int(sys.argv[2]))
P.user('U7'); P.pass_('testpw')
print('pop', P.stat())
P.quit()
"#,
        &[&b.imap_port.to_string(), &pop.to_string()],
    );
    // The owner in the ACL is u7: the INBOX is u7's, not a new U7's.
    assert!(out.contains("acl INBOX u7 lrswipkxtecdan"), "{out}");
    assert!(out.contains("id [b'NIL']"), "{out}");
    assert!(out.contains("pop (0, 0)"), "{out}");
    let log = std::fs::read_to_string(d.path().join("b/imapd.log")).unwrap();
    assert!(log.contains(" u7 plaintext User logged in"), "{log}");
    assert!(!log.contains("U7"), "{log}");

    // username_tolower: no keeps the case, as Cyrus: U7 is another user,
    // whom saslauthd does not know.
    let mut c = Backend::start(&d.path().join("c"), "username_tolower: no\n");
    let _ = c.start_pop3d();
    let out = python(
        r#"
import imaplib, sys
imaplib.Commands['ID'] = ('NONAUTH', 'AUTH', 'SELECTED')
M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1]))
try:
    M.login('U7', 'testpw'); print('in')
except imaplib.IMAP4.error as e:
    print('refused', e)
M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1]))
typ, data = M._simple_command('ID', 'NIL')
print('id', M.untagged_responses.get('ID'))
"#,
        &[&c.imap_port.to_string()],
    );
    assert!(out.contains("refused"), "{out}");
    assert!(out.contains("Cyrus IMAPD"), "{out}");
}

/// Cyrus's login and ACL policy options: `failedloginpause` (a failed
/// login waits before its NO, and other sessions do not wait with it),
/// `uidl_format` (POP3 UIDLs as Dovecot spelled them), `anyoneuseracl`
/// (off: only admins grant rights to `anyone`), `allowsetacl` (off: no
/// SETACL at all), `tcp_keepalive` (probes on accepted connections, seen
/// in the kernel's socket table), `plaintextloginpause`,
/// `maxlogins_per_user`.
#[test]
fn login_pause_uidl_format_acl_policy_and_keepalive() {
    if !can_run("imapd.conf policy options", &["/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let mut b = Backend::start(
        &d.path().join("b"),
        "failedloginpause: 2\nuidl_format: dovecot\nanyoneuseracl: no\ntcp_keepalive: yes\ntcp_keepalive_idle: 77\n",
    );
    let pop = b.start_pop3d();
    let out = python(
        r#"
import imaplib, poplib, sys, threading, time
port, pop = int(sys.argv[1]), int(sys.argv[2])
done = []
def bad():
    M = imaplib.IMAP4('127.0.0.1', port)
    t = time.time()
    try:
        M.login('u7', 'wrong')
    except imaplib.IMAP4.error as e:
        done.append(('bad', time.time() - t, str(e)))
th = threading.Thread(target=bad); th.start()
time.sleep(0.3)
M = imaplib.IMAP4('127.0.0.1', port)
M.login('u7', 'testpw')
done.append(('good',))
th.join()
print('order', [x[0] for x in done])
print('pause %.1f' % done[1][1], done[1][2])
# The server's side of this connection has its keepalive timer on.
me = M.sock.getsockname()[1]
for l in open('/proc/net/tcp').read().splitlines()[1:]:
    f = l.split()
    if int(f[1].split(':')[1], 16) == port and int(f[2].split(':')[1], 16) == me:
        print('timer', f[5].split(':')[0])
M.append('INBOX', None, None, b'Subject: x\r\n\r\nbody\r\n')
typ, st = M.status('INBOX', '(UIDVALIDITY)')
print('status', st[0].decode())
for who in ['anyone', 'u8']:
    typ, r = M._simple_command('SETACL', 'INBOX', who, 'lr')
    print('setacl', who, typ, r)
M.logout()
A = imaplib.IMAP4('127.0.0.1', port)
A.login('md5u', 'testpw')
typ, r = A._simple_command('SETACL', 'user/u7', 'anyone', 'lr')
print('admin setacl anyone', typ)
typ, acl = A.getacl('user/u7')
print('acl', acl[0].decode())
A.logout()
P = poplib.POP3('127.0.0.1', pop)
P.user('u7'); P.pass_('testpw')
print('uidl', P.uidl()[1])
P.quit()
"#,
        &[&b.imap_port.to_string(), &pop.to_string()],
    );
    assert!(out.contains("order ['good', 'bad']"), "{out}");
    let pause: f64 = out.split("pause ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(pause >= 2.0, "{out}");
    assert!(out.contains("Login failed: authentication failure"), "{out}");
    assert!(out.contains("timer 02"), "keepalive timer (02) on the server's socket: {out}");
    assert!(out.contains("setacl anyone NO [b'Permission denied']"), "{out}");
    assert!(out.contains("setacl u8 OK"), "{out}");
    assert!(out.contains("admin setacl anyone OK"), "{out}");
    assert!(out.contains(" anyone lr"), "{out}");
    let uidvalidity: u32 = out
        .split("UIDVALIDITY ")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(out.contains(&format!("uidl [b'1 {:08x}{uidvalidity:08x}']", 1)), "{out}");

    // allowsetacl: no takes SETACL and DELETEACL away from everyone.
    // plaintextloginpause: a LOGIN without TLS waits after success.
    // maxlogins_per_user: a third session of u7 is refused until one of
    // the two ends; POP3 sessions are counted apart.
    let mut c = Backend::start(
        &d.path().join("c"),
        "allowsetacl: no\nplaintextloginpause: 1\nmaxlogins_per_user: 2\n",
    );
    let cpop = c.start_pop3d();
    let out = python(
        r#"
import imaplib, sys, time
A = imaplib.IMAP4('127.0.0.1', int(sys.argv[1]))
t = time.time()
A.login('md5u', 'testpw')
print('login took %.1f' % (time.time() - t))
A.create('user/u7')
for cmd, args in [('SETACL', ('user/u7', 'u8', 'lr')), ('DELETEACL', ('user/u7', 'u7'))]:
    try:
        typ, r = A._simple_command(cmd, *args)
        print(cmd, typ, r)
    except imaplib.IMAP4.error as e:
        print(cmd, 'NO', e)
typ, acl = A.getacl('user/u7')
print('acl', acl[0].decode())
plain = lambda x: b'\0u7\0testpw'
S = []
for i in range(2):
    M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1])); M.authenticate('PLAIN', plain); S.append(M)
M3 = imaplib.IMAP4('127.0.0.1', int(sys.argv[1]))
try:
    M3.authenticate('PLAIN', plain); print('third in')
except imaplib.IMAP4.error as e:
    print('third refused', e)
import poplib
P = poplib.POP3('127.0.0.1', int(sys.argv[2])); P.user('u7'); print('pop', P.pass_('testpw')[:3])
S[0].logout()
time.sleep(0.3)
print('after logout', M3.authenticate('PLAIN', plain)[0])
"#,
        &[&c.imap_port.to_string(), &cpop.to_string()],
    );
    assert!(out.contains("third refused Too many open connections (2 of 2 for u7)"), "{out}");
    assert!(out.contains("pop b'+OK'"), "{out}");
    assert!(out.contains("after logout OK"), "{out}");
    let log = std::fs::read_to_string(d.path().join("c/imapd.log")).unwrap();
    assert!(log.contains("Too many open connections (2 of 2 for u7)"), "{log}");
    assert!(out.contains("SETACL NO [b'Permission denied']"), "{out}");
    assert!(out.contains("DELETEACL NO [b'Permission denied']"), "{out}");
    let took: f64 = out
        .split("login took ")
        .nth(1)
        .unwrap()
        .split('\n')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(took >= 1.0, "{out}");
    assert!(out.contains("acl user/u7 u7 lrswipkxtecdan") && !out.contains("u8"), "{out}");
}

/// A new mailbox's partition, as Cyrus places it: a child takes its
/// parent's partition; a mailbox without a parent and without a named
/// partition goes where `partition_select_mode` puts it among the
/// partitions not in `partition_select_exclude` when `defaultpartition`
/// is unset.  An admin may still name a partition.
#[test]
fn children_take_their_parents_partition() {
    if !can_run("partition placement", &["/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let b = Backend::start(
        &p.join("b"),
        &format!(
            "partition-default: {}\npartition-p2: {}\npartition_select_exclude: default\n",
            p.join("b/spool").display(),
            p.join("b/spool2").display()
        ),
    );
    let out = python(
        r#"
import imaplib, sys
imaplib.Commands['GETMETADATA'] = ('AUTH', 'SELECTED')
A = imaplib.IMAP4('127.0.0.1', int(sys.argv[1]))
A.login('md5u', 'testpw')
for args in [('user/u7',), ('user/u7/a',), ('user/yes1', 'default'), ('user/yes1/b',), ('user/yes1/b/c',)]:
    print('create', args, A._simple_command('CREATE', *args)[0])
for m in ['user/u7', 'user/u7/a', 'user/yes1', 'user/yes1/b', 'user/yes1/b/c']:
    A._simple_command('GETMETADATA', m, '/shared/vendor/cmu/cyrus-imapd/partition')
    print('partition', A.untagged_responses.pop('METADATA', None))
"#,
        &[&b.imap_port.to_string()],
    );
    assert!(!out.contains("NO"), "{out}");
    for (m, part) in [
        ("user/u7", "p2"),
        ("user/u7/a", "p2"),
        ("user/yes1", "default"),
        ("user/yes1/b", "default"),
        ("user/yes1/b/c", "default"),
    ] {
        assert!(
            out.contains(&format!("[b'{m} (\"/shared/vendor/cmu/cyrus-imapd/partition\" \"{part}\")']")),
            "{m} on {part}: {out}"
        );
    }
}

/// Failed logins are logged in Cyrus's words, with the client as
/// `name [addr]`: the real fail2ban's `cyrus-imap` filter finds every
/// one (LOGIN, AUTHENTICATE PLAIN, POP3 USER/PASS and AUTH PLAIN) and
/// the address, and no successful login.
#[test]
fn failed_logins_feed_fail2ban() {
    const FILTER: &str = "/etc/fail2ban/filter.d/cyrus-imap.conf";
    if !can_run("fail2ban", &["/usr/bin/fail2ban-regex", FILTER]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let mut b = Backend::start(&d.path().join("b"), "failedloginpause: 0\n");
    let pop = b.start_pop3d();
    let out = python(
        r#"
import imaplib, poplib, sys, base64
M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1]))
try: M.login('u7', 'wrong')
except imaplib.IMAP4.error as e: print('imap login', e)
M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1]))
try: M.authenticate('PLAIN', lambda _: b'\0yes1\0wrong')
except imaplib.IMAP4.error as e: print('imap plain', e)
M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1])); M.login('u7', 'testpw'); M.logout()
P = poplib.POP3('127.0.0.1', int(sys.argv[2])); P.user('u7')
try: P.pass_('wrong')
except poplib.error_proto as e: print('pop pass', e)
P = poplib.POP3('127.0.0.1', int(sys.argv[2]))
try: P._shortcmd('AUTH PLAIN ' + base64.b64encode(b'\0yes1\0wrong').decode())
except poplib.error_proto as e: print('pop plain', e)
P = poplib.POP3('127.0.0.1', int(sys.argv[2])); P.user('u7'); P.pass_('testpw'); P.quit()
"#,
        &[&b.imap_port.to_string(), &pop.to_string()],
    );
    for what in ["imap login", "imap plain", "pop pass", "pop plain"] {
        assert!(out.contains(what), "{out}");
    }
    for (log, name) in [("imapd.log", "imap"), ("pop3d.log", "pop3")] {
        let path = d.path().join("b").join(log);
        let text = std::fs::read_to_string(&path).unwrap();
        // Cyrus's client text: the name of 127.0.0.1 from /etc/hosts.
        assert!(
            text.contains("badlogin: localhost [127.0.0.1] plaintext u7 SASL(-13): authentication failure: checkpass failed"),
            "{text}"
        );
        assert!(
            text.contains("badlogin: localhost [127.0.0.1] PLAIN [SASL(-13): authentication failure: "),
            "{text}"
        );
        assert!(
            text.contains("login: localhost [127.0.0.1] u7 plaintext User logged in SESSIONID=<"),
            "{text}"
        );
        let o = std::process::Command::new("fail2ban-regex")
            .args(["--print-all-matched", path.to_str().unwrap(), FILTER])
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&o.stdout);
        assert!(report.contains("Failregex: 2 total"), "{name}: {report}\n{text}");
        assert!(report.contains(" 2 matched,"), "{name}: {report}");
    }
}

/// BDAT (RFC 3030), which lmtpd offers beside DATA: chunks taken as sent
/// (no dot-stuffing; a bare LF stored as CRLF), pipelined with MAIL and
/// RCPT, one reply per accepted recipient after the last chunk, a chunk
/// read and refused without a transaction, DATA refused after BDAT, and
/// the size limit.
#[test]
fn lmtp_bdat_chunks() {
    if !can_run("lmtp bdat", &["/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let b = Backend::start(d.path(), "maxmessagesize: 2000\n");
    let out = python(
        r#"
import imaplib, socket, sys
M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1])); M.login('u7', 'testpw')
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[2]); s.settimeout(10)
buf = b''
def replies(n):
    global buf
    out = []
    while len(out) < n:
        while b'\r\n' not in buf:
            d = s.recv(65536); assert d, out; buf += d
        l, buf = buf.split(b'\r\n', 1)
        out.append(l.decode())
        if len(l) > 3 and l[3:4] == '-'.encode():
            out.pop()
    return [x[:3] for x in out]
replies(1)
s.sendall(b'LHLO t\r\n')
lhlo = b''
while not lhlo.endswith(b'\r\n') or b'\r\n250 ' not in lhlo:
    lhlo += s.recv(65536)
assert b'250-CHUNKING\r\n' in lhlo, lhlo
one = b'Subject: bdat one\r\n\r\nfirst\r\n.\r\n..dots'
two = b' stay\nbare lf\r\nend\r\n'
s.sendall(b'MAIL FROM:<a@b>\r\nRCPT TO:<u7>\r\nRCPT TO:<nosuch>\r\nBDAT %d\r\n' % len(one) + one)
r = replies(4); assert r == ['250', '250', '550', '250'], r
s.sendall(b'DATA\r\n'); r = replies(1); assert r == ['503'], r
s.sendall(b'BDAT %d LAST\r\n' % len(two) + two + b'NOOP\r\n')
r = replies(2); assert r == ['250', '250'], r
# All in one piece, then BDAT with no transaction: read, refused.
three = b'Subject: bdat two\r\n\r\nBDAT 5\r\nRSET\r\n'
s.sendall(b'MAIL FROM:<a@b>\r\nRCPT TO:<u7>\r\nBDAT %d LAST\r\n' % len(three) + three
          + b'BDAT 8\r\nRSET\r\n\r\nNOOP\r\n')
r = replies(5); assert r == ['250', '250', '250', '503', '250'], r
# Over maxmessagesize: refused at the chunk, the transaction gone.
s.sendall(b'MAIL FROM:<a@b>\r\nRCPT TO:<u7>\r\nBDAT 3000\r\n' + b'x' * 3000 + b'BDAT 0 LAST\r\n')
r = replies(4); assert r == ['250', '250', '552', '503'], r
s.sendall(b'BDAT x\r\nQUIT\r\n'); r = replies(2); assert r == ['501', '221'], r
M.select('INBOX')
typ, data = M.fetch('1:*', '(BODY.PEEK[TEXT])')
bodies = [x[1] for x in data if isinstance(x, tuple)]
print(bodies)
assert bodies == [b'first\r\n.\r\n..dots stay\r\nbare lf\r\nend\r\n', b'BDAT 5\r\nRSET\r\n'], bodies
print('ok')
"#,
        &[&b.imap_port.to_string(), b.lmtp_sock.to_str().unwrap()],
    );
    assert!(out.contains("ok"), "{out}");
}
