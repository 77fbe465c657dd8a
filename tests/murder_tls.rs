//! TLS inside the Murder: the master and the back ends take passwords
//! only under TLS (`allowplaintext: no`), so every node that logs in to
//! a peer must STARTTLS first, as Cyrus's backend_connect does when no
//! mechanism is usable in the clear: the back ends' pushes and the front
//! end's replica to the master (MUPDATE), proxyd, pop3proxyd and
//! lmtpproxyd to the back ends (IMAP, POP3, LMTP).  The peers' certificates are checked against
//! `tls_client_ca_file`: a front end without it reaches no back end.

mod harness;

use harness::murder::*;
use harness::*;

#[test]
fn proxies_and_mupdate_use_starttls_to_peers_that_require_it() {
    if !can_run("murder TLS", &["/usr/bin/openssl"]) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certs(t.path());
    let tls = format!(
        "tls_server_cert: {}\ntls_server_key: {}\ntls_client_ca_file: {}\nallowplaintext: no\n",
        cert.display(),
        key.display(),
        ca.display()
    );
    let mu = Murder::start_full(
        t.path(),
        &format!("proxyservers: md5u\nproxy_authname: md5u\nproxy_password: testpw\n{tls}"),
        &format!(
            "proxy_authname: md5u\nproxy_password: testpw\ntls_client_ca_file: {}\n",
            ca.display()
        ),
        &tls,
    );
    // The back ends pushed their mailboxes to the master over TLS, and
    // the front end's replica streamed them from it the same way (asked
    // here in the clear: the replica itself allows plaintext).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let out = mupdatetest(mu.fe.port, "md5u", "A01 LIST\nA02 LOGOUT\n");
        if out.contains("user.bob") && out.contains("user.alice") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "replica never got the mailboxes:\n{out}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let (_imap, fimap) = mu.front("imapd", &[]);
    let (_pop, fpop) = mu.front("pop3d", &[]);
    let (_lmtp, flmtp) = mu.front("lmtpd", &["-a"]);
    for who in ["u7", "yes1"] {
        let out = lmtp_session(
            flmtp,
            &[
                "LHLO hub",
                "MAIL FROM:<s@example.org>",
                &format!("RCPT TO:<{who}@example.org>"),
                "DATA",
                "QUIT",
            ],
            &format!("Subject: for {who}\r\n\r\nover TLS\r\n"),
            1,
        );
        assert!(out.contains("250 2.1.5"), "{out}");
    }
    // u7's INBOX is on the first back end, yes1's on the second; both
    // back ends refuse PLAIN in the clear, so these logins went over TLS.
    let out = python(
        r#"
import imaplib, sys
for who in ('u7', 'yes1'):
    M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1]))
    try:
        print(who, M.login(who, 'testpw')[0])
    except Exception as e:
        print(who, 'refused', e)
        continue
    print(who, 'select', M.select('INBOX'))
    print(who, 'fetch', M.fetch('1', '(BODY.PEEK[HEADER.FIELDS (SUBJECT)])'))
    M.logout()
"#,
        &[&fimap.to_string()],
    );
    let fe_log = || std::fs::read_to_string(mu.fe.dir.join("imapd.log")).unwrap_or_default();
    assert!(out.contains("u7 OK") && out.contains("yes1 OK"), "{out}\n{}", fe_log());
    assert!(out.contains("Subject: for u7") && out.contains("Subject: for yes1"), "{out}");
    let out = python(
        "import poplib,sys\nP=poplib.POP3('127.0.0.1',int(sys.argv[1]))\nP.user('yes1')\nprint(P.pass_('testpw'))\nprint(P.stat())\nprint(P.quit())\n",
        &[&fpop.to_string()],
    );
    assert!(out.contains("+OK") && out.contains("(1, "), "{out}");
    // The premise: in the clear, a back end takes no password (LMTP
    // offers STARTTLS and no PLAIN; IMAP shows LOGINDISABLED).
    let out = lmtp_session(mu.backs[0].lmtp_port, &["LHLO probe", "AUTH PLAIN AHU3AHRlc3Rwdw==", "QUIT"], "", 0);
    assert!(
        out.contains("250-STARTTLS") && !out.contains("PLAIN LOGIN") && out.contains("504 5.5.4"),
        "{out}"
    );
    let out = python(
        "import imaplib,sys\nM=imaplib.IMAP4(sys.argv[1],int(sys.argv[2]))\nprint(M.capabilities)\ntry:\n    print(M.authenticate('PLAIN', lambda _: b'\\0u7\\0testpw'))\nexcept Exception as e:\n    print('refused', e)\n",
        &[BACK_IPS[0], &mu.ports.0.to_string()],
    );
    assert!(out.contains("LOGINDISABLED") && out.contains("refused"), "{out}");

    // lmtpproxyd's own STARTTLS (as lmtpd's): with allowplaintext: no a
    // TCP client (a hub) sees no AUTH until TLS, then delivers as an admin.
    let conf = std::fs::read_to_string(&mu.fe.conf).unwrap();
    let mut tls_fe: String = conf
        .lines()
        .filter(|l| !l.starts_with("allowplaintext"))
        .map(|l| format!("{l}\n"))
        .collect();
    tls_fe.push_str(&format!(
        "tls_server_cert: {}\ntls_server_key: {}\nallowplaintext: no\n",
        cert.display(),
        key.display()
    ));
    let conf3 = t.path().join("fe/tls-lmtp.conf");
    std::fs::write(&conf3, tls_fe).unwrap();
    let lport = free_port();
    let l = format!("127.0.0.1:{lport}");
    let mut cmd = in_namespace(
        &[(mu.services.clone(), "/etc/services")],
        &bin("lmtpd"),
        &["-C", conf3.to_str().unwrap(), "-L", &l],
    );
    let f = std::fs::File::create(t.path().join("fe/tls-lmtp.log")).unwrap();
    cmd.stdout(f.try_clone().unwrap()).stderr(f);
    let _lp = Proc::spawn("lmtpproxyd", &mut cmd);
    wait_tcp(lport);
    let out = python(
        r#"
import smtplib, ssl, sys
l = smtplib.LMTP('127.0.0.1', int(sys.argv[1]))
code, caps = l.ehlo('hub')
print('before', l.has_extn('starttls'), l.has_extn('auth'))
print('plain', l.docmd('AUTH', 'PLAIN AG1kNXUAdGVzdHB3')[0])
ctx = ssl.create_default_context(cafile=sys.argv[2]); ctx.check_hostname = False
print('tls', l.starttls(context=ctx)[0])
l.ehlo('hub')
print('after', l.has_extn('auth'), l.has_extn('starttls'))
print('login', l.login('md5u', 'testpw')[0])
print('send', l.sendmail('s@example.org', ['u7@example.org'], b'Subject: via TLS LMTP\r\n\r\nbody\r\n'))
print('again', l.docmd('STARTTLS')[0])
l.quit()
"#,
        &[&lport.to_string(), ca.to_str().unwrap()],
    );
    for want in [
        "before True False",
        "plain 504",
        "tls 220",
        "after True False",
        "login 235",
        "send {}",
        "again 454",
    ] {
        assert!(out.contains(want), "{want}: {out}");
    }

    // A front end that does not trust the back ends' CA reaches none of
    // them: the client gets a temporary failure, the log says why.
    let conf = std::fs::read_to_string(&mu.fe.conf).unwrap();
    let untrusting: String = conf
        .lines()
        .filter(|l| !l.starts_with("tls_client_ca_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    let conf2 = t.path().join("fe/untrusting.conf");
    std::fs::write(&conf2, untrusting).unwrap();
    let port = free_port();
    let log2 = t.path().join("fe/untrusting.log");
    let l = format!("127.0.0.1:{port}");
    let mut cmd = in_namespace(
        &[(mu.services.clone(), "/etc/services")],
        &bin("imapd"),
        &["-C", conf2.to_str().unwrap(), "-L", &l],
    );
    let f = std::fs::File::create(&log2).unwrap();
    cmd.stdout(f.try_clone().unwrap()).stderr(f);
    let _p = Proc::spawn("imapd", &mut cmd);
    wait_tcp(port);
    let out = python(
        "import imaplib,sys\nM=imaplib.IMAP4('127.0.0.1',int(sys.argv[1]))\ntry:\n    print(M.login('u7','testpw'))\nexcept Exception as e:\n    print('refused', e)\n",
        &[&port.to_string()],
    );
    assert!(out.contains("refused") && out.contains("UNAVAILABLE"), "{out}");
    let log = std::fs::read_to_string(&log2).unwrap();
    assert!(log.contains("TLS negotiation failed"), "{log}");
}
