//! TLS on the store: STARTTLS and implicit TLS (imaps) with
//! `tls_server_cert`/`tls_server_key`, `allowplaintext: no` (LOGINDISABLED
//! until TLS), Cyrus's imtest over both, and no command injection across
//! STARTTLS; lmtpd's STARTTLS over TCP.

mod harness;
use harness::*;

const IMTEST: &str = "/usr/lib/cyrus/bin/imtest";

fn imtest(args: &[&str], input: &str) -> String {
    run_client(IMTEST, args, input)
}

#[test]
fn starttls_and_imaps_with_real_clients() {
    if !can_run("tls", &[IMTEST, "/usr/bin/openssl", "/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let certs = d.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let (ca, cert, key) = make_certs(&certs);
    let b = Backend::start(
        &d.path().join("be"),
        &format!(
            "allowplaintext: no\ntls_server_cert: {}\ntls_server_key: {}\n",
            cert.display(),
            key.display()
        ),
    );
    let sport = free_port();
    let _imaps = b.spawn_imapd(sport, &["-s"]);
    let port = b.imap_port.to_string();

    // STARTTLS with imtest (-t ""), then LOGIN under TLS.
    let out = imtest(
        &["-t", "", "-a", "u7", "-w", "testpw", "-m", "login", "-p", &port, "127.0.0.1"],
        ". select INBOX\r\n. logout\r\n",
    );
    assert!(out.contains("Authenticated."), "{out}");
    assert!(out.contains("* 0 EXISTS"), "{out}");
    // imaps with imtest -s.
    let out = imtest(
        &[
            "-s",
            "-a",
            "u7",
            "-w",
            "testpw",
            "-m",
            "plain",
            "-p",
            &sport.to_string(),
            "127.0.0.1",
        ],
        ". logout\r\n",
    );
    assert!(out.contains("Authenticated."), "{out}");

    let out = python(
        r#"
import socket, ssl, sys
port, ca = int(sys.argv[1]), sys.argv[2]
s = socket.create_connection(('127.0.0.1', port)); f = s.makefile('rb')
greet = f.readline()
assert b'STARTTLS' in greet and b'LOGINDISABLED' in greet, greet
s.sendall(b'a LOGIN u7 testpw\r\n')
l = f.readline(); assert l.startswith(b'a NO Login only available under a layer'), l
# Pipelined after STARTTLS: must be discarded, not run inside TLS.
s.sendall(b'b STARTTLS\r\nc LOGIN u7 testpw\r\n')
l = f.readline(); assert l == b'b OK Begin TLS negotiation now\r\n', l
ctx = ssl.create_default_context(cafile=ca)
t = ctx.wrap_socket(s, server_hostname='localhost')
tf = t.makefile('rb')
t.sendall(b'd CAPABILITY\r\n')
caps = tf.readline()
assert b'AUTH=PLAIN' in caps and b'STARTTLS' not in caps and b'LOGINDISABLED' not in caps, caps
l = tf.readline(); assert l.startswith(b'd OK'), l
t.sendall(b'e NOOP\r\n')
l = tf.readline(); assert l.startswith(b'e OK'), l   # no reply to 'c': it was dropped
t.sendall(b'f LOGIN u7 testpw\r\n')
l = tf.readline(); assert l.startswith(b'f OK [CAPABILITY'), l
t.sendall(b'g STARTTLS\r\n')
l = tf.readline(); assert l.startswith(b'g BAD'), l
print('ok')
"#,
        &[&port, ca.to_str().unwrap()],
    );
    assert!(out.contains("ok"), "{out}");

    // LMTP over TCP: STARTTLS as Cyrus's lmtpd offers it, PLAIN only
    // under TLS, nothing pipelined after STARTTLS runs inside TLS.
    let out = python(
        r#"
import smtplib, socket, ssl, sys
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
l = smtplib.LMTP('127.0.0.1', port)
code, caps = l.ehlo('hub')
assert b'STARTTLS' in caps and b'PLAIN' not in caps, caps
print(l.docmd('AUTH', 'PLAIN AHU3AHRlc3Rwdw=='))
print(l.starttls(context=ctx))
code, caps = l.ehlo('hub')
assert b'STARTTLS' not in caps and b'AUTH PLAIN LOGIN' in caps, caps
print(l.login('u7', 'testpw'))
print(l.sendmail('s@example.org', ['u7'], b'Subject: over TLS\r\n\r\nbody\r\n'))
print(l.docmd('STARTTLS'))
l.quit()
s = socket.create_connection(('127.0.0.1', port)); f = s.makefile('rb')
f.readline()
s.sendall(b'LHLO x\r\nSTARTTLS\r\nRSET\r\n')
while not f.readline().startswith(b'250 '): pass
l2 = f.readline(); assert l2 == b'220 Begin TLS negotiation now\r\n', l2
t = ctx.wrap_socket(s, server_hostname='localhost'); tf = t.makefile('rb')
t.sendall(b'NOOP\r\n')
l2 = tf.readline(); assert l2.startswith(b'250 2.0.0'), l2   # no reply to RSET: dropped
print('ok')
"#,
        &[&b.lmtp_port.to_string(), ca.to_str().unwrap()],
    );
    assert!(out.contains("(504, b'5.5.4 Unrecognized authentication type')"), "{out}");
    assert!(out.contains("(220, b'Begin TLS negotiation now')"), "{out}");
    assert!(out.contains("(235, b'Authenticated!')"), "{out}");
    assert!(out.contains("(454, b'4.3.3 Already successfully executed STARTTLS')"), "{out}");
    assert!(out.contains("ok"), "{out}");
    // Each handshake is logged as Cyrus logs it.
    for log in ["imapd.log", "lmtpd.log"] {
        let text = std::fs::read_to_string(d.path().join("be").join(log)).unwrap_or_default();
        assert!(
            text.lines()
                .any(|l| l.contains("starttls: TLSv1.3 with cipher TLS_") && l.ends_with(" bits new) no authentication")),
            "{log}:\n{text}"
        );
    }
}

/// POP3 under STLS runs its TRANSACTION state on the event loop, a plain
/// session on a thread of its own: both answer alike, for small and large
/// (over 64 KB) messages, DELE and QUIT's expunge, a message another
/// session expunged, and commands pipelined with PASS.
#[test]
fn pop3_under_stls_and_plain_alike() {
    if !can_run("pop3 tls", &["/usr/bin/openssl", "/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let certs = d.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let (ca, cert, key) = make_certs(&certs);
    let mut b = Backend::start(
        &d.path().join("be"),
        &format!("tls_server_cert: {}\ntls_server_key: {}\n", cert.display(), key.display()),
    );
    let pport = b.start_pop3d();
    let out = python(
        r#"
import imaplib, poplib, smtplib, socket, ssl, sys
pport, iport, lmtp, ca = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
M = imaplib.IMAP4('127.0.0.1', iport); M.login('u7', 'testpw')
l = smtplib.LMTP(lmtp)
bodies = [b'small\r\n.dot\r\n', b'y' * 100 + b'\r\n' + (b'z' * 998 + b'\r\n') * 100, b'third\r\n', b'fourth\r\n', b'fifth\r\n']
for i, body in enumerate(bodies):
    l.sendmail('a@example.test', ['u7'], b'Subject: m%d\r\n\r\n' % i + body)
l.quit()
ctx = ssl.create_default_context(cafile=ca)

def session(tls):
    P = poplib.POP3('127.0.0.1', pport)
    if tls:
        P.stls(context=ctx)
    P.user('u7'); P.pass_('testpw')
    r = [P.stat(), P.uidl()[1], P.list()[1]]
    for n in (1, 2):
        resp, lines, octets = P.retr(n)
        r.append((resp, len(lines), lines[-2:]))
    r.append(P.top(2, 1)[1])
    return P, r

# The same answers under TLS and in the clear.
P, a = session(True); P.quit()
P, b = session(False); P.quit()
assert a == b, (a, b)
# lmtpd adds Return-Path and Received.
assert a[0][0] == 5 and a[0][1] > sum(len(x) for x in bodies), a[0]
# poplib takes the stuffed dot off again.
assert a[3][2] == [b'small', b'.dot'], a[3]
assert a[4][2] == [b'z' * 998] * 2, a[4][2][-1][:10]
assert a[5][-2:] == [b'', b'y' * 100], a[5][-2:]

# An IMAP EXPUNGE while each session has the message listed: RETR says
# it is gone, the session goes on; DELE + QUIT expunges.
for tls in (True, False):
    P, _ = session(tls)
    M.select('INBOX'); M.store('1', '+FLAGS', '\\Deleted'); M.expunge()
    try:
        P.retr(1); print('RETR of an expunged message answered +OK')
    except poplib.error_proto as e:
        print('gone', tls, e)
    print('stat', tls, P.stat())
    print('dele', tls, P.dele(2))
    print('quit', tls, P.quit())
M.select('INBOX'); print('left', M.search(None, 'ALL')[1])

# Commands pipelined with PASS, in one send, on a plain connection.
s = socket.create_connection(('127.0.0.1', pport)); f = s.makefile('rb')
f.readline()
s.sendall(b'USER u7\r\nPASS testpw\r\nSTAT\r\nUIDL\r\nRETR 1\r\n' + b'x' * 9000 + b'\r\nNOOP\r\nQUIT\r\n')
data = b''
while True:
    c = s.recv(65536)
    if not c: break
    data += c
print(repr(data.split(b'\r\n')[:4]))
print('too long' if b'-ERR Line too long\r\n+OK\r\n+OK\r\n' in data else 'no too-long reply', data.endswith(b'+OK\r\n'))
"#,
        &[
            &pport.to_string(),
            &b.imap_port.to_string(),
            b.lmtp_sock.to_str().unwrap(),
            ca.to_str().unwrap(),
        ],
    );
    assert!(out.contains("gone True b'-ERR [SYS/PERM] Message no longer exists'"), "{out}");
    assert!(out.contains("gone False b'-ERR [SYS/PERM] Message no longer exists'"), "{out}");
    assert!(out.contains("dele True b'+OK message deleted'"), "{out}");
    assert!(out.contains("quit False b'+OK'"), "{out}");
    // Of five: m0 expunged by IMAP and m1 DELEted while under TLS, m2
    // expunged by IMAP and m3 DELEted while in the clear.
    assert!(out.contains("left [b'1']"), "{out}");
    assert!(
        out.contains("'+OK Name is a valid mailbox', b'+OK Mailbox locked and ready"),
        "{out}"
    );
    assert!(out.contains("b'+OK 1 "), "{out}");
    assert!(out.contains("too long True"), "{out}");
}

/// `tls_required`: before TLS no mechanism of any kind is offered or
/// taken, even with `allowplaintext` on (Cyrus's replies: LOGIN "only
/// available under a layer", AUTHENTICATE likewise, POP3 USER and AUTH
/// refused with `[AUTH]`); after STARTTLS/STLS everything is back.
/// `plaintextloginpause` does not touch a login under TLS.
#[test]
fn tls_required_offers_nothing_before_tls() {
    if !can_run("tls_required", &["/usr/bin/openssl", "/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let (b, ca, pport) = tls_backend(d.path(), "allowplaintext: yes\ntls_required: yes\nplaintextloginpause: 30\n");
    let out = python(
        r#"
import socket, ssl, sys, time
iport, pport, ca = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
s = socket.create_connection(('127.0.0.1', iport)); f = s.makefile('rb')
greet = f.readline()
print('greet', greet)
s.sendall(b'a LOGIN u7 testpw\r\n'); print('a', f.readline())
s.sendall(b'b AUTHENTICATE PLAIN AHU3AHRlc3Rwdw==\r\n'); print('b', f.readline())
s.sendall(b'c STARTTLS\r\n'); f.readline()
t = ctx.wrap_socket(s, server_hostname='localhost'); tf = t.makefile('rb')
t.sendall(b'd CAPABILITY\r\n'); print('caps', tf.readline()); tf.readline()
start = time.time()
t.sendall(b'e LOGIN u7 testpw\r\n'); print('e', tf.readline()[:5], time.time() - start < 20)

s = socket.create_connection(('127.0.0.1', pport)); f = s.makefile('rb')
f.readline()
def capa(w, r):
    w.sendall(b'CAPA\r\n'); out = []
    while True:
        l = r.readline()
        if l == b'.\r\n': return out
        out.append(l.strip().decode())
print('capa', capa(s, f))
s.sendall(b'USER u7\r\n'); print('user', f.readline())
s.sendall(b'AUTH PLAIN AHU3AHRlc3Rwdw==\r\n'); print('auth', f.readline())
s.sendall(b'STLS\r\n'); f.readline()
t = ctx.wrap_socket(s, server_hostname='localhost'); tf = t.makefile('rb')
print('tls capa', capa(t, tf))
t.sendall(b'USER u7\r\n'); tf.readline()
t.sendall(b'PASS testpw\r\n'); print('pass', tf.readline()[:3])
"#,
        &[&b.imap_port.to_string(), &pport.to_string(), ca.to_str().unwrap()],
    );
    let greet = out.lines().find(|l| l.starts_with("greet")).unwrap();
    assert!(greet.contains("STARTTLS") && greet.contains("LOGINDISABLED"), "{out}");
    assert!(!greet.contains("AUTH=") && !greet.contains("SASL-IR"), "{out}");
    assert!(out.contains("a b'a NO Login only available under a layer\\r\\n'"), "{out}");
    assert!(out.contains("b b'b NO Authenticate only available under a layer\\r\\n'"), "{out}");
    let caps = out.lines().find(|l| l.starts_with("caps")).unwrap();
    assert!(caps.contains("AUTH=PLAIN") && !caps.contains("LOGINDISABLED"), "{out}");
    assert!(out.contains("e b'e OK ' True"), "{out}");
    let capa = out.lines().find(|l| l.starts_with("capa")).unwrap();
    assert!(
        capa.contains("'STLS'") && !capa.contains("SASL") && !capa.contains("'USER'"),
        "{out}"
    );
    assert!(
        out.contains("user b'-ERR [AUTH] USER command only available under a layer\\r\\n'"),
        "{out}"
    );
    assert!(
        out.contains("auth b'-ERR [AUTH] AUTH command only available under a layer\\r\\n'"),
        "{out}"
    );
    let capa = out.lines().find(|l| l.starts_with("tls capa")).unwrap();
    assert!(capa.contains("'SASL PLAIN LOGIN'") && capa.contains("'USER'"), "{out}");
    assert!(out.contains("pass b'+OK'"), "{out}");
}

/// A back end in `d` with a certificate (imapd.conf `extra` lines too)
/// and a pop3d: the back end, the CA file and pop3d's port.
fn tls_backend(d: &std::path::Path, extra: &str) -> (Backend, std::path::PathBuf, u16) {
    let certs = d.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let (ca, cert, key) = make_certs(&certs);
    let mut b = Backend::start(
        &d.join("be"),
        &format!("{extra}tls_server_cert: {}\ntls_server_key: {}\n", cert.display(), key.display()),
    );
    let pport = b.start_pop3d();
    (b, ca, pport)
}

/// `sasl_minimum_layer`: TLS's strength (the cipher's bits, Cyrus's
/// external SSF) counts.  At 128, STARTTLS/STLS bring the mechanisms
/// back (IMAP AUTH=PLAIN and SASL-IR, POP3's SASL line) and AUTHENTICATE
/// / AUTH work; at 512 no cipher is strong enough and they stay refused.
#[test]
fn sasl_minimum_layer_counts_tls() {
    if !can_run("sasl_minimum_layer", &["/usr/bin/openssl", "/usr/bin/unshare"]) {
        return;
    }
    for (min, after_tls) in [(128, true), (512, false)] {
        let d = tempfile::tempdir().unwrap();
        let (b, ca, pport) = tls_backend(d.path(), &format!("sasl_minimum_layer: {min}\n"));
        let out = python(
            r#"
import socket, ssl, sys
iport, pport, ca = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
s = socket.create_connection(('127.0.0.1', iport)); f = s.makefile('rb')
print('greet', f.readline())
s.sendall(b'a AUTHENTICATE PLAIN AHU3AHRlc3Rwdw==\r\n'); print('a', f.readline())
s.sendall(b'c STARTTLS\r\n'); f.readline()
t = ctx.wrap_socket(s, server_hostname='localhost'); tf = t.makefile('rb')
t.sendall(b'd CAPABILITY\r\n'); print('caps', tf.readline()); tf.readline()
t.sendall(b'e AUTHENTICATE PLAIN AHU3AHRlc3Rwdw==\r\n'); print('e', tf.readline()[:4])

s = socket.create_connection(('127.0.0.1', pport)); f = s.makefile('rb')
f.readline()
def capa(w, r):
    w.sendall(b'CAPA\r\n'); out = []
    while True:
        l = r.readline()
        if l == b'.\r\n': return out
        out.append(l.strip().decode())
print('capa', capa(s, f))
s.sendall(b'AUTH PLAIN AHU3AHRlc3Rwdw==\r\n'); print('auth', f.readline())
s.sendall(b'STLS\r\n'); f.readline()
t = ctx.wrap_socket(s, server_hostname='localhost'); tf = t.makefile('rb')
print('tls capa', capa(t, tf))
t.sendall(b'AUTH PLAIN AHU3AHRlc3Rwdw==\r\n'); print('tls auth', tf.readline()[:3])
"#,
            &[&b.imap_port.to_string(), &pport.to_string(), ca.to_str().unwrap()],
        );
        let greet = out.lines().find(|l| l.starts_with("greet")).unwrap();
        assert!(
            greet.contains("STARTTLS") && !greet.contains("AUTH=") && !greet.contains("SASL-IR"),
            "{out}"
        );
        assert!(out.contains("a b'a NO mechanism too weak for this user\\r\\n'"), "{out}");
        let caps = out.lines().find(|l| l.starts_with("caps")).unwrap();
        assert_eq!(caps.contains("AUTH=PLAIN") && caps.contains("SASL-IR"), after_tls, "{out}");
        assert_eq!(out.contains("e b'e OK'"), after_tls, "{out}");
        let capa = out.lines().find(|l| l.starts_with("capa")).unwrap();
        assert!(!capa.contains("SASL") && capa.contains("'USER'"), "{out}");
        assert!(
            out.contains("auth b'-ERR [AUTH] authenticating: mechanism too weak for this user\\r\\n'"),
            "{out}"
        );
        let capa = out.lines().find(|l| l.starts_with("tls capa")).unwrap();
        assert_eq!(capa.contains("'SASL PLAIN LOGIN'"), after_tls, "{out}");
        assert_eq!(out.contains("tls auth b'+OK'"), after_tls, "{out}");
    }
}
