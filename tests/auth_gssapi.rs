//! Kerberos single sign-on (GSSAPI, RFC 4752) against a real MIT KDC
//! started here: `kinit` from a keytab, then Cyrus's `imtest`, `pop3test`,
//! `lmtptest`, `sivtest` and `mupdatetest -m GSSAPI` and a Python (python3-gssapi)
//! SMTP client log in to our daemons without a password; a ticket for
//! another service and an expired ticket are refused; a back end pushes
//! to the MUPDATE master and a front end logs in to its back ends with
//! keytabs instead of shared passwords.

mod harness;
use harness::murder::*;
use harness::*;
use std::path::Path;
use std::process::Command;

const IMTEST: &str = "/usr/lib/cyrus/bin/imtest";
const POP3TEST: &str = "/usr/lib/cyrus/bin/pop3test";
const MUPDATETEST: &str = "/usr/lib/cyrus/bin/mupdatetest";
const LMTPTEST: &str = "/usr/lib/cyrus/bin/lmtptest";
const SIVTEST: &str = "/usr/lib/cyrus/bin/sivtest";
const SYS_PYTHON: &str = "/usr/bin/python3";

fn client(prog: &str, args: &[&str], env: &[(&str, String)], input: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(prog)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A GSSAPI login over IMAP by Python's imaplib and python3-gssapi,
/// with a ticket for `service@localhost`: prints OK or the error.
const PY_IMAP: &str = r#"
import imaplib, sys, gssapi
port, service = int(sys.argv[1]), sys.argv[2]
name = gssapi.Name(service + '@localhost', gssapi.NameType.hostbased_service)
ctx = gssapi.SecurityContext(name=name, usage='initiate')
state = {'done': False}
def step(challenge):
    if not ctx.complete:
        return ctx.step(challenge) or b''
    if not state['done']:
        if not challenge:
            return b''
        msg = ctx.unwrap(challenge).message
        state['done'] = True
        return ctx.wrap(bytes([1, 0, 0, 0]), False).message
    return b''
M = imaplib.IMAP4('127.0.0.1', port)
try:
    M.authenticate('GSSAPI', step)
    typ, data = M.select('INBOX')
    print('OK', typ)
except Exception as e:
    print('FAILED', e)
"#;

/// The same over SMTP (smtplib's AUTH with a multi-step callback).
const PY_SMTP: &str = r#"
import smtplib, sys, base64, gssapi
port = int(sys.argv[1])
name = gssapi.Name('smtp@localhost', gssapi.NameType.hostbased_service)
ctx = gssapi.SecurityContext(name=name, usage='initiate')
s = smtplib.SMTP('127.0.0.1', port)
s.ehlo('client.mumail.test')
print('EHLO', s.esmtp_features.get('auth', ''))
code, resp = s.docmd('AUTH', 'GSSAPI ' + base64.b64encode(ctx.step(None)).decode())
layered = False
while code == 334:
    challenge = base64.b64decode(resp) if resp else b''
    if not ctx.complete:
        out = ctx.step(challenge) or b''
    elif not layered:
        if challenge:
            ctx.unwrap(challenge)
            out = ctx.wrap(bytes([1, 0, 0, 0]), False).message
            layered = True
        else:
            out = b''
    else:
        out = b''
    code, resp = s.docmd(base64.b64encode(out).decode())
print('AUTH', code, resp.decode())
s.quit()
"#;

/// Waits (log lines are written in the background) until `path` has `what`.
fn logged(path: &Path, what: &str) {
    let found = (0..100).any(|_| {
        let ok = std::fs::read_to_string(path).unwrap_or_default().contains(what);
        if !ok {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        ok
    });
    assert!(
        found,
        "{} has no {what:?}:\n{}",
        path.display(),
        std::fs::read_to_string(path).unwrap_or_default()
    );
}

#[test]
fn gssapi_logins_with_kerberos_tickets() {
    if !can_run(
        "gssapi",
        &[
            "/usr/sbin/krb5kdc",
            IMTEST,
            POP3TEST,
            SIVTEST,
            SYS_PYTHON,
            "/usr/lib/python3/dist-packages/gssapi",
            "/usr/bin/kinit",
            "/usr/bin/swaks",
        ],
    ) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let kdc = Kdc::start(&d.path().join("kdc"));
    // The daemons started below find the realm through the environment.
    for (k, v) in kdc.env() {
        std::env::set_var(k, v);
    }
    // Each daemon keeps the tickets it gets from its keytab in memory,
    // never in a shared file cache another run could have left behind.
    std::env::set_var("KRB5CCNAME", "MEMORY:daemon");
    let keytab = d.path().join("services.keytab");
    let user_keytab = d.path().join("u7.keytab");
    kdc.kadmin("addprinc -pw testpw u7");
    kdc.kadmin(&format!("ktadd -norandkey -k {} u7", user_keytab.display()));
    for svc in ["imap", "pop", "smtp", "lmtp", "sieve", "host"] {
        kdc.kadmin(&format!("addprinc -randkey {svc}/localhost"));
        kdc.kadmin(&format!("ktadd -k {} {svc}/localhost", keytab.display()));
    }
    let be = Backend::start(&d.path().join("backend"), &format!("sasl_keytab: {}\n", keytab.display()));
    let mut backend = be;
    let pop_port = backend.start_pop3d();
    let ccache = d.path().join("ccache");
    let mut env = kdc.env();
    env.push(("KRB5CCNAME", format!("FILE:{}", ccache.display())));
    let kinit = |life: &str| {
        let out = Command::new("/usr/bin/kinit")
            .args(["-l", life, "-k", "-t", user_keytab.to_str().unwrap(), "u7"])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .unwrap();
        assert!(out.status.success(), "kinit: {}", String::from_utf8_lossy(&out.stderr));
    };
    kinit("1h");

    // imtest: the capability lists GSSAPI, the login needs no password.
    let port = backend.imap_port.to_string();
    let out = client(
        IMTEST,
        &["-m", "GSSAPI", "-a", "u7", "-p", &port, "localhost"],
        &env,
        "a1 SELECT INBOX\na2 LOGOUT\n",
    );
    assert!(out.contains("AUTH=GSSAPI"), "{out}");
    assert!(out.contains("Authenticated."), "{out}");
    assert!(out.contains("a1 OK [READ-WRITE]"), "{out}");
    // pop3test the same way.
    let out = client(
        POP3TEST,
        &["-m", "GSSAPI", "-a", "u7", "-p", &pop_port.to_string(), "localhost"],
        &env,
        "STAT\nQUIT\n",
    );
    assert!(out.contains("Authenticated."), "{out}");
    assert!(out.contains("+OK 0 0") || out.contains("+OK "), "{out}");

    // lmtptest over LMTP's TCP port.
    let out = client(
        LMTPTEST,
        &["-m", "GSSAPI", "-a", "u7", "-p", &backend.lmtp_port.to_string(), "localhost"],
        &env,
        "QUIT\n",
    );
    assert!(out.contains("AUTH GSSAPI PLAIN LOGIN") && out.contains("Authenticated."), "{out}");

    // sivtest (ManageSieve) the same way.
    let sieve_port = backend.start_timsieved();
    let out = client(
        SIVTEST,
        &["-m", "GSSAPI", "-a", "u7", "-p", &sieve_port.to_string(), "localhost"],
        &env,
        "PUTSCRIPT \"k\" {5+}\r\nkeep;\r\nLISTSCRIPTS\r\nLOGOUT\r\n",
    );
    assert!(out.contains("\"SASL\" \"GSSAPI PLAIN LOGIN\""), "{out}");
    assert!(out.contains("Authenticated.") && out.contains("\"k\""), "{out}");
    logged(&backend.dir.join("timsieved.log"), "u7 GSSAPI User logged in");

    // Python: the right service logs in; a ticket for smtp/ or host/ is
    // refused by the IMAP server even though its key is in the keytab.
    let py = |args: &[&str]| client(SYS_PYTHON, &[&["-c", PY_IMAP][..], args].concat(), &env, "");
    let ok = py(&[&port, "imap"]);
    assert!(ok.contains("OK OK"), "{ok}");
    for wrong in ["smtp", "host"] {
        let no = py(&[&port, wrong]);
        assert!(no.contains("FAILED") && no.contains("generic failure"), "{wrong}: {no}");
    }

    // SMTP AUTH GSSAPI on the hub, the keytab named in smtpd.conf.
    let hub = d.path().join("hub");
    std::fs::create_dir_all(hub.join("sasl2")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hub, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        hub.join("sasl2/smtpd.conf"),
        format!(
            "pwcheck_method: saslauthd\nmech_list: GSSAPI PLAIN LOGIN\nkeytab: {}\n",
            hub.join("smtp.keytab").display()
        ),
    )
    .unwrap();
    // smtpd runs as the mail owner, as Postfix's: the keytab must be
    // readable by it (sites give it to group postfix).
    let hub_keytab = hub.join("smtp.keytab");
    std::fs::copy(&keytab, &hub_keytab).unwrap();
    std::fs::set_permissions(&hub_keytab, std::fs::Permissions::from_mode(0o644)).unwrap();
    let smtp = free_port();
    let h = hub.display();
    std::fs::write(
        hub.join("main.cf"),
        format!(
            "compatibility_level = 3.6\nqueue_directory = {h}/queue\nmaillog_file = {h}/maillog\nmyhostname = localhost\n\
             mydestination = mumail.test\nlocal_recipient_maps =\nmynetworks = 10.0.0.0/8\nsmtpd_sasl_auth_enable = yes\n\
             cyrus_sasl_config_path = {h}/sasl2\nmailbox_transport = lmtp:inet:localhost:{lmtp}\n\
             lmtp_sasl_auth_enable = yes\nlmtp_sasl_password_maps = static:u7@MUMAIL.TEST:\n",
            lmtp = backend.lmtp_port
        ),
    )
    .unwrap();
    std::fs::write(
        hub.join("master.cf"),
        format!("127.0.0.1:{smtp} inet n - n - - smtpd\nlmtp unix - - n - - lmtp\nlocal unix - n n - - local\n"),
    )
    .unwrap();
    // The hub's LMTP client logs in with GSSAPI from its client keytab
    // (the map gives the principal and no password).
    let client_keytab = hub.join("client.keytab");
    std::fs::copy(&user_keytab, &client_keytab).unwrap();
    std::fs::set_permissions(&client_keytab, std::fs::Permissions::from_mode(0o644)).unwrap();
    let log = std::fs::File::create(hub.join("stderr")).unwrap();
    let mut cmd = Command::new(bin("postfix-master"));
    cmd.args(["-c", hub.to_str().unwrap()])
        .env("KRB5_CLIENT_KTNAME", format!("FILE:{}", client_keytab.display()))
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let _master = Proc::spawn("postfix-master", &mut cmd);
    wait_tcp(smtp);
    let out = client(SYS_PYTHON, &["-c", PY_SMTP, &smtp.to_string()], &env, "");
    assert!(out.contains("GSSAPI PLAIN LOGIN"), "{out}");
    let maillog = std::fs::read_to_string(hub.join("maillog")).unwrap_or_default();
    assert!(out.contains("AUTH 235 2.7.0 Authentication successful"), "{out}\n{maillog}");

    let sent = Command::new("/usr/bin/swaks")
        .args([
            "--server",
            &format!("127.0.0.1:{smtp}"),
            "--to",
            "u7@mumail.test",
            "--from",
            "a@mumail.test",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&sent.stdout).contains("250 2.0.0 Ok: queued"));
    let lmtp_log = d.path().join("backend/lmtpd.log");
    let logins_before = std::fs::read_to_string(&lmtp_log)
        .unwrap_or_default()
        .matches("u7 GSSAPI User logged in")
        .count();
    let maillog = hub.join("maillog");
    wait_for("the delivery", std::time::Duration::from_secs(20), || {
        let l = std::fs::read_to_string(&maillog).unwrap_or_default();
        l.contains("status=sent") || l.contains("status=deferred") || l.contains("status=bounced")
    });
    let l = std::fs::read_to_string(&maillog).unwrap_or_default();
    assert!(l.contains("status=sent"), "{l}");
    // (An LMTP login over TCP without a password can only be GSSAPI.)
    wait_for("the hub's GSSAPI login in lmtpd's log", std::time::Duration::from_secs(10), || {
        let l = std::fs::read_to_string(&lmtp_log).unwrap_or_default();
        l.matches("u7 GSSAPI User logged in").count() > logins_before
    });
    let inbox = python(
        "import imaplib, sys\nM = imaplib.IMAP4('127.0.0.1', int(sys.argv[1])); M.login('u7', 'testpw')\nprint(M.select('INBOX')[1][0].decode())\n",
        &[&port],
    );
    assert_eq!(inbox.trim(), "1", "delivered over the GSSAPI-authenticated LMTP session");

    // An expired ticket: no login.
    std::fs::remove_file(&ccache).unwrap();
    kinit("2s");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let out = client(IMTEST, &["-m", "GSSAPI", "-a", "u7", "-p", &port, "localhost"], &env, "a1 LOGOUT\n");
    assert!(!out.contains("Authenticated."), "{out}");
    assert!(Path::new(&keytab).exists());

    // MUPDATE: mupdatetest logs in to our master with GSSAPI as the
    // admin md5u; a back end with no mupdate_password pushes its
    // mailboxes to the master with md5u's key from its client keytab.
    let admin_keytab = d.path().join("md5u.keytab");
    kdc.kadmin("addprinc -pw testpw md5u");
    kdc.kadmin(&format!("ktadd -norandkey -k {} md5u", admin_keytab.display()));
    kdc.kadmin("addprinc -randkey mupdate/localhost");
    kdc.kadmin("addprinc -randkey mupdate/127.0.0.1");
    kdc.kadmin(&format!("ktadd -k {} mupdate/localhost mupdate/127.0.0.1", keytab.display()));
    let (_msasl, mux) = sasl(&d.path().join("msasl"));
    let master = Node::start(
        &d.path().join("master"),
        &mux,
        true,
        &format!("sasl_keytab: {}\n", keytab.display()),
    );
    let admin_cc = d.path().join("admin.cc");
    let mut admin_env = kdc.env();
    admin_env.push(("KRB5CCNAME", format!("FILE:{}", admin_cc.display())));
    let o = Command::new("/usr/bin/kinit")
        .args(["-k", "-t", admin_keytab.to_str().unwrap(), "md5u"])
        .envs(admin_env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mport = master.port.to_string();
    let mupdate = |input: &str| {
        client(
            MUPDATETEST,
            &["-m", "GSSAPI", "-a", "md5u", "-p", &mport, "localhost"],
            &admin_env,
            input,
        )
    };
    let out = mupdate("A01 LOGOUT\n");
    assert!(out.contains("Authenticated."), "{out}");
    std::env::set_var("KRB5_CLIENT_KTNAME", format!("FILE:{}", admin_keytab.display()));
    let pusher = Backend::start(
        &d.path().join("pusher"),
        &format!(
            "unixhierarchysep: no\nmupdate_server: 127.0.0.1:{}\nproxyservers: md5u\nmupdate_username: md5u\nmupdate_authname: md5u@MUMAIL.TEST\n",
            master.port
        ),
    );
    let created = harness::murder::imap_admin(pusher.imap_port, &["CREATE user.kerb"]);
    assert!(
        !created.contains("-> NO"),
        "{created}\n{}\n{}",
        std::fs::read_to_string(d.path().join("pusher/imapd.log")).unwrap_or_default(),
        master.log()
    );
    let out = mupdate("A01 FIND \"user.kerb\"\nA02 LOGOUT\n");
    assert!(
        out.contains("A01 MAILBOX") && out.contains("user.kerb") && out.contains("backend1!default"),
        "{out}"
    );

    // A Murder whose front end logs in to the back ends with its keytab
    // (no proxy_password): the back ends accept imap/fe.mumail.test as a
    // proxy server and log the user in as GSSAPI.
    let back_keytab = d.path().join("back.keytab");
    let fe_keytab = d.path().join("fe.keytab");
    for ip in BACK_IPS {
        for svc in ["imap", "pop", "lmtp"] {
            kdc.kadmin(&format!("addprinc -randkey {svc}/{ip}"));
            kdc.kadmin(&format!("ktadd -k {} {svc}/{ip}", back_keytab.display()));
        }
    }
    kdc.kadmin("addprinc -randkey imap/fe.mumail.test");
    kdc.kadmin(&format!("ktadd -k {} imap/fe.mumail.test", fe_keytab.display()));
    std::env::set_var("KRB5_CLIENT_KTNAME", format!("FILE:{}", fe_keytab.display()));
    drop(pusher);
    let t = d.path().join("murder");
    let murder = Murder::start_with(
        &t,
        &format!(
            "proxyservers: md5u imap/fe.mumail.test\nproxy_authname: md5u\nproxy_password: testpw\nsasl_keytab: {}\n",
            back_keytab.display()
        ),
        "proxy_authname: imap/fe.mumail.test\n",
    );
    let (_proxyd, fe_port) = murder.front("proxyd", &[]);
    let out = client(
        "python3",
        &[
            "-c",
            "import imaplib, sys\nM = imaplib.IMAP4('127.0.0.1', int(sys.argv[1])); M.login('u7', 'testpw')\nprint(M.select('INBOX'))\nM.logout()\n",
            &fe_port.to_string(),
        ],
        &[],
        "",
    );
    let fe_log = std::fs::read_to_string(t.join("fe/proxyd.log")).unwrap_or_default();
    assert!(out.contains("('OK'"), "{out}\n{fe_log}");
    logged(&t.join("b1/imapd-fe.log"), "u7 GSSAPI User logged in");
    // POP3 and LMTP through the front end, the same way.
    let (_pop3proxyd, pop_fe) = murder.front("pop3proxyd", &[]);
    let out = client(
        "python3",
        &["-c", "import poplib, sys\nP = poplib.POP3('127.0.0.1', int(sys.argv[1])); P.user('u7'); P.pass_('testpw')\nprint(P.stat())\nP.quit()\n", &pop_fe.to_string()],
        &[],
        "",
    );
    assert!(out.starts_with('('), "{out}");
    logged(&t.join("b1/pop3d-fe.log"), "GSSAPI");
    let (_lmtpproxyd, lmtp_fe) = murder.front("lmtpproxyd", &["-a"]);
    let out = lmtp_session(
        lmtp_fe,
        &["LHLO hub", "MAIL FROM:<s@example.org>", "RCPT TO:<u7@example.org>", "DATA", "QUIT"],
        "Subject: for u7\r\n\r\nbody\r\n",
        1,
    );
    // (A reply starting 451, not the digits anywhere: session IDs are random.)
    assert!(out.contains("250 2.1.5") && !out.lines().any(|l| l.starts_with("451")), "{out}");
    logged(&t.join("b1/lmtpd-fe.log"), "imap/fe.mumail.test GSSAPI User logged in");
}
