//! pop3d against the real Cyrus 3.6 pop3d: the same deliveries, the same
//! scripted POP3 session (CAPA, USER/PASS, AUTH PLAIN, STAT, LIST, UIDL,
//! TOP, RETR with dot-stuffing, DELE, RSET, QUIT expunging, errors) give
//! the same replies modulo banners, session ids and UIDVALIDITY; UIDL is
//! stable across sessions and IMAP activity; a message expunged by IMAP
//! during a POP3 session answers -ERR; popminpoll refuses early logins.

mod harness;
use harness::*;
use std::os::unix::fs::PermissionsExt;

const SESSION: &str = r#"
import socket, sys, json, base64
port = int(sys.argv[1])
log = []
def connect():
    s = socket.create_connection(('127.0.0.1', port)); s.settimeout(30)
    return s, s.makefile('rb')
def exchange(s, f, line, multi):
    s.sendall(line.encode() + b'\r\n')
    out = [f.readline().decode('latin-1').rstrip('\r\n')]
    if multi and out[0].startswith('+OK'):
        while True:
            l = f.readline().decode('latin-1').rstrip('\r\n')
            out.append(l)
            if l == '.': break
    log.append([line, out])
s, f = connect()
f.readline()
for c, m in [('CAPA', True), ('STAT', False), ('PASS x', False), ('USER', False), ('USER u7', False),
             ('USER u7', False), ('PASS wrong', False), ('USER u7', False), ('PASS testpw', False),
             ('STAT', False), ('LIST', True), ('LIST 2', False), ('LIST 99', False), ('LIST x', False),
             ('UIDL', True), ('UIDL 3', False), ('TOP 1 0', True), ('TOP 2 2', True), ('TOP 1', False),
             ('RETR 1', True), ('RETR 2', True), ('RETR 0', False), ('DELE 1', False), ('DELE 1', False),
             ('RETR 1', False), ('STAT', False), ('LIST', True), ('RSET', False), ('STAT', False),
             ('DELE 2', False), ('NOOP', False), ('BOGUS', False), ('USER u7', False), ('QUIT', False)]:
    exchange(s, f, c, m)
s, f = connect()
f.readline()
exchange(s, f, 'AUTH PLAIN ' + base64.b64encode(b'\0u7\0testpw').decode(), False)
for c, m in [('STAT', False), ('UIDL', True), ('LIST 1', False), ('QUIT', False)]:
    exchange(s, f, c, m)
print(json.dumps(log))
"#;

const NORMALISE: &str = r#"
import json, re, sys
def norm(l):
    l = re.sub(r'SESSIONID=<[^>]*>', 'SESSIONID=<>', l)
    l = re.sub(r'^(\d+ )\d+\.(\d+)$', r'\1UV.\2', l)
    l = re.sub(r'^\+OK (\d+ )\d+\.(\d+)$', r'+OK \1UV.\2', l)
    l = re.sub(r'^IMPLEMENTATION .*', 'IMPLEMENTATION', l)
    # Trace fields carry versions, ids and times; sizes follow from them.
    l = re.sub(r'^(Received: from|\t by|\t |X-Cyrus-Session-Id:|Return-Path:|Date:).*', r'\1', l)
    l = re.sub(r'^(\+OK \d+|\d+) \d+$', r'\1 SIZE', l)
    return l
def load(p):
    return json.load(open(p))
a, b = load(sys.argv[1]), load(sys.argv[2])
# Sizes are normalised away above, so check ours for consistency: each
# LIST size is the size of what RETR sends (un-stuffed, CRLF lines).
sizes = {}
for c, l in a:
    if c == 'LIST' and l[0].startswith('+OK'):
        for x in l[1:-1]:
            n, sz = x.split(); sizes[n] = int(sz)
for c, l in a:
    if c.startswith('RETR ') and l[0].startswith('+OK'):
        body = [x[1:] if x.startswith('.') else x for x in l[1:-1]]
        got = sum(len(x.encode('latin-1')) + 2 for x in body)
        assert got == sizes[c.split()[1]], (c, got, sizes)
diffs = 0
for (c1, l1), (c2, l2) in zip(a, b):
    n1, n2 = [norm(x) for x in l1], [norm(x) for x in l2]
    if n1 != n2:
        diffs += 1
        print('=== ' + c1)
        for x in n2:
            if x not in n1: print('  cyrus: ' + x[:300])
        for x in n1:
            if x not in n2: print('  ours:  ' + x[:300])
print('DIFFS', diffs, 'OF', len(a))
"#;

const DELIVER: &str = r#"
import smtplib, sys
l = smtplib.LMTP(sys.argv[1])
for i, body in enumerate([b'first\r\n', b'second line one\r\n.leading dot\r\nthird line\r\n', b'x' * 900 + b'\r\n']):
    msg = b'From: a@example.test\r\nSubject: pop %d\r\nMessage-ID: <pop-%d@example.test>\r\n\r\n' % (i, i) + body
    l.sendmail('a@example.test', ['u7'], msg)
l.quit()
"#;

#[test]
fn pop3_same_replies_as_real_cyrus() {
    if !can_run("pop3 differential", &[CYRUS_MASTER, "/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(d.path().join("ours")).unwrap();
    let mut ours = Backend::start(&d.path().join("ours"), "");
    for p in ["ours", "ours/sasl"] {
        std::fs::set_permissions(d.path().join(p), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let pport = ours.start_pop3d();
    let cyrus = CyrusServer::start(&d.path().join("cyrus"), &d.path().join("ours/sasl/mux"), "");
    // First logins create the INBOXes, then the same three messages.
    let login = "import imaplib, sys\nM = imaplib.IMAP4('127.0.0.1', int(sys.argv[1])); M.login('u7', 'testpw'); M.logout()\n";
    python(login, &[&ours.imap_port.to_string()]);
    python(login, &[&cyrus.imap_port.to_string()]);
    python(DELIVER, &[ours.lmtp_sock.to_str().unwrap()]);
    python(DELIVER, &[cyrus.lmtp_sock.to_str().unwrap()]);
    let a = d.path().join("ours.json");
    let b = d.path().join("cyrus.json");
    std::fs::write(&a, python(SESSION, &[&pport.to_string()])).unwrap();
    std::fs::write(&b, python(SESSION, &[&cyrus.pop3_port.to_string()])).unwrap();
    let report = python(NORMALISE, &[a.to_str().unwrap(), b.to_str().unwrap()]);
    if let Ok(keep) = std::env::var("MUMAIL_KEEP_DIFF") {
        std::fs::write(&keep, &report).unwrap();
        let _ = std::fs::copy(&a, format!("{keep}.ours.json"));
        let _ = std::fs::copy(&b, format!("{keep}.cyrus.json"));
    }
    assert!(report.trim_end().ends_with("DIFFS 0 OF 39"), "{report}");
}

/// UIDL stays the same across sessions and IMAP activity; a message that
/// an IMAP session expunges while a POP3 session has it listed answers
/// -ERR (the session goes on); popminpoll refuses a second login too soon.
#[test]
fn pop3_with_concurrent_imap_and_minpoll() {
    if !can_run("pop3 concurrency", &["/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let mut b = Backend::start(d.path(), "popminpoll: 1\n");
    let pport = b.start_pop3d();
    python(
        "import imaplib, sys\nM = imaplib.IMAP4('127.0.0.1', int(sys.argv[1])); M.login('u7', 'testpw'); M.logout()\n",
        &[&b.imap_port.to_string()],
    );
    python(DELIVER, &[b.lmtp_sock.to_str().unwrap()]);
    let out = python(
        r#"
import poplib, imaplib, sys
pport, iport = int(sys.argv[1]), int(sys.argv[2])
P = poplib.POP3('127.0.0.1', pport); P.user('u7'); P.pass_('testpw')
uidl1 = P.uidl()[1]
M = imaplib.IMAP4('127.0.0.1', iport); M.login('u7', 'testpw'); M.select('INBOX')
M.store('2', '+FLAGS', '\\Deleted'); M.expunge()
M.append('INBOX', None, None, b'Subject: new\r\n\r\nnew\r\n')
try:
    P.retr(2); print('retr of an expunged message worked')
except poplib.error_proto as e:
    print('retr2', e)
print('retr3', P.retr(3)[0])
P.quit()
try:
    P = poplib.POP3('127.0.0.1', pport); P.user('u7'); P.pass_('testpw'); print('second login allowed')
except poplib.error_proto as e:
    print('minpoll', e)
print('uidl1', uidl1)
"#,
        &[&pport.to_string(), &b.imap_port.to_string()],
    );
    assert!(out.contains("retr2 b'-ERR"), "{out}");
    assert!(out.contains("retr3 b'+OK Message follows'"), "{out}");
    assert!(out.contains("minpoll b'-ERR [LOGIN-DELAY]"), "{out}");
    // UIDL after the change, from a server without popminpoll: messages 1
    // and 3 keep their ids, the new one gets a new one.
    let d2 = d.path().join("again");
    let _ = d2;
    let first: Vec<&str> = out
        .lines()
        .find(|l| l.starts_with("uidl1"))
        .unwrap()
        .split('\'')
        .filter(|p| p.contains('.') && p.contains(' '))
        .collect();
    assert_eq!(first.len(), 3, "{out}");
    let conf = std::fs::read_to_string(&b.conf).unwrap().replace("popminpoll: 1\n", "");
    std::fs::write(&b.conf, conf).unwrap();
    let pport2 = b.start_pop3d();
    let out2 = python(
        r#"
import poplib, sys
P = poplib.POP3('127.0.0.1', int(sys.argv[1])); P.user('u7'); P.pass_('testpw')
print(P.uidl()[1]); P.quit()
"#,
        &[&pport2.to_string()],
    );
    let id = |s: &str| s.split_once(' ').map(|(_, u)| u.to_string()).unwrap();
    assert!(out2.contains(&id(first[0])) && out2.contains(&id(first[2])), "{out}\n{out2}");
    assert!(!out2.contains(&id(first[1])), "{out2}");
}
