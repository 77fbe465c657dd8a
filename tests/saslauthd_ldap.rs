//! saslauthd's `ldap` mechanism against a real OpenLDAP slapd (RFC 2307
//! users, the AD stand-in), compared with the real saslauthd 2.1.28 on the
//! same directory: search-then-bind as a service DN, anonymous search, and
//! fastbind; an outage answers NO within the timeout and recovers.

mod harness;
use harness::*;
use std::path::Path;
use std::time::{Duration, Instant};

const REAL: &str = "/usr/sbin/saslauthd";

fn conf(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn ldap_matches_real_saslauthd_and_survives_outage() {
    if !can_run("ldap", &[REAL, "/usr/sbin/slapd", "/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let mut slapd = Slapd::start(&d.path().join("slapd"));
    let url = slapd.url();
    let variants = [
        ("search-bind", format!("ldap_servers: {url}\nldap_search_base: ou=people,{LDAP_BASE}\nldap_filter: (uid=%u)\nldap_auth_method: bind\nldap_bind_dn: cn=saslauthd,ou=services,{LDAP_BASE}\nldap_password: bindpw\nldap_timeout: 2\n")),
        ("anonymous", format!("ldap_servers: ldap://127.0.0.1:1/ {url}\nldap_search_base: {LDAP_BASE}\nldap_filter: (&(objectClass=posixAccount)(uid=%U))\nldap_timeout: 2\n")),
        ("fastbind", format!("ldap_servers: {url}\nldap_filter: uid=%U,ou=people,{LDAP_BASE}\nldap_auth_method: fastbind\nldap_timeout: 2\n")),
    ];
    let cases: &[(&[u8], &[u8], &[u8])] = &[
        (b"u1", b"testpw", b"imap"),
        (b"u2", b"wrong", b"imap"),
        (b"nosuchuser", b"testpw", b"imap"),
        (b"u3", b"testpw", b"smtp"),
        (b"*", b"testpw", b"imap"),
        (b"u4)(uid=*", b"testpw", b"imap"),
    ];
    for (name, body) in &variants {
        let path = conf(d.path(), &format!("{name}.conf"), body);
        let real = saslauthd(
            Path::new(REAL),
            &[],
            &d.path().join(format!("{name}-real")),
            &["-a", "ldap", "-O", &path, "-n", "2"],
            &[],
            &d.path().join(format!("{name}-real.log")),
        );
        let ours = saslauthd(
            &bin("saslauthd"),
            &[],
            &d.path().join(format!("{name}-ours")),
            &["-a", "ldap", "-O", &path],
            &[],
            &d.path().join(format!("{name}-ours.log")),
        );
        for (l, p, s) in cases {
            let want = mux(&d.path().join(format!("{name}-real/mux")), l, p, s, b"");
            let got = mux(&d.path().join(format!("{name}-ours/mux")), l, p, s, b"");
            eprintln!(
                "{name} {:?}: real {:?} ours {:?}",
                String::from_utf8_lossy(l),
                reply_text(&want),
                reply_text(&got)
            );
            assert_eq!(
                reply_text(&got),
                reply_text(&want),
                "{name}: login {:?}",
                String::from_utf8_lossy(l)
            );
        }
        assert_eq!(
            reply_text(&mux(&d.path().join(format!("{name}-ours/mux")), b"u1", b"testpw", b"imap", b"")),
            "OK",
            "{name}"
        );
        drop(real);
        drop(ours);
    }

    // Outage: slapd stopped -> NO within the timeout, a log line naming the
    // server; slapd back -> logins succeed without restarting saslauthd.
    let path = conf(d.path(), "outage.conf", &variants[0].1);
    let log = d.path().join("outage.log");
    let _ours = saslauthd(
        &bin("saslauthd"),
        &[],
        &d.path().join("outage"),
        &["-a", "ldap", "-O", &path],
        &[],
        &log,
    );
    let muxp = d.path().join("outage/mux");
    assert_eq!(reply_text(&mux(&muxp, b"u1", b"testpw", b"imap", b"")), "OK");
    // Our imapd and pop3d check passwords with this saslauthd.
    let mut be = Backend::start(&d.path().join("be"), &format!("sasl_saslauthd_path: {}\n", muxp.display()));
    let pop = be.start_pop3d();
    let logins = |expect: &str| {
        let out = python(LOGINS, &[&be.imap_port.to_string(), &pop.to_string()]);
        assert!(out.contains(expect), "{out}");
        out
    };
    logins("imap OK pop3 OK");
    slapd.stop();
    let t = Instant::now();
    let r = reply_text(&mux(&muxp, b"u1", b"testpw", b"imap", b""));
    // A NO that says the directory is down, not that the password is wrong.
    assert!(r.starts_with("NO [UNAVAILABLE]"), "{r}");
    // imapd and pop3d answer a temporary failure, not "wrong password".
    let out = logins("imap NO");
    assert!(out.contains("[UNAVAILABLE]") && out.contains("-ERR [SYS/TEMP]"), "{out}");
    assert!(t.elapsed() < Duration::from_secs(10), "answered after {:?}", t.elapsed());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(&format!("ldap server {url}")),
        "no log line names the server:\n{text}"
    );
    slapd.resume();
    assert_eq!(
        reply_text(&mux(&muxp, b"u1", b"testpw", b"imap", b"")),
        "OK",
        "recovered without a restart"
    );
    assert!(!std::fs::read_to_string(&log).unwrap().contains("testpw"), "password in the log");
    logins("imap OK pop3 OK");
    be.extra.clear();
}

/// IMAP LOGIN and POP3 USER/PASS as u1 (ports in argv): what each answers.
const LOGINS: &str = r#"
import imaplib, poplib, sys
out = []
M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1]))
try:
    M.login('u1', 'testpw'); out.append('imap OK'); M.logout()
except imaplib.IMAP4.error as e:
    out.append('imap NO %s' % e)
P = poplib.POP3('127.0.0.1', int(sys.argv[2]))
P.user('u1')
try:
    P.pass_('testpw'); out.append('pop3 OK'); P.quit()
except poplib.error_proto as e:
    out.append('pop3 %s' % e.args[0].decode())
print(' '.join(out))
"#;

#[test]
fn ldap_over_tls_verifies_the_server() {
    if !can_run("ldap tls", &["/usr/sbin/slapd", "/usr/bin/openssl", "/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let certs = d.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let (ca, cert, key) = make_certs(&certs);
    let other = d.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let (other_ca, _, _) = make_certs(&other);
    let slapd = Slapd::start_tls(&d.path().join("slapd"), Some((&cert, &key)));
    let tls_port = slapd.tls_port.unwrap();
    let variants = [
        (
            "ldaps",
            format!(
                "ldap_servers: ldaps://127.0.0.1:{tls_port}/\nldap_tls_check_peer: yes\nldap_tls_cacert_file: {}\n",
                ca.display()
            ),
            true,
        ),
        (
            "starttls",
            format!(
                "ldap_servers: ldap://127.0.0.1:{}/\nldap_start_tls: yes\nldap_tls_check_peer: yes\nldap_tls_cacert_dir: {}\n",
                slapd.port,
                certs.display()
            ),
            true,
        ),
        (
            "wrong-ca",
            format!(
                "ldap_servers: ldaps://127.0.0.1:{tls_port}/\nldap_tls_check_peer: yes\nldap_tls_cacert_file: {}\n",
                other_ca.display()
            ),
            false,
        ),
        (
            "no-check",
            format!("ldap_servers: ldaps://127.0.0.1:{tls_port}/\nldap_tls_check_peer: no\n"),
            true,
        ),
    ];
    for (name, tls, ok) in &variants {
        let body = format!("{tls}ldap_search_base: ou=people,{LDAP_BASE}\nldap_filter: (uid=%u)\nldap_timeout: 3\n");
        let path = conf(d.path(), &format!("{name}.conf"), &body);
        let _ours = saslauthd(
            &bin("saslauthd"),
            &[],
            &d.path().join(name),
            &["-a", "ldap", "-O", &path],
            &[],
            &d.path().join(format!("{name}.log")),
        );
        let good = reply_text(&mux(&d.path().join(format!("{name}/mux")), b"u1", b"testpw", b"imap", b""));
        let bad = reply_text(&mux(&d.path().join(format!("{name}/mux")), b"u1", b"wrong", b"imap", b""));
        if *ok {
            assert_eq!(good, "OK", "{name}");
        } else {
            assert!(good.starts_with("NO"), "{name}: an unverified server must not be trusted: {good}");
        }
        assert!(bad.starts_with("NO"), "{name}: {bad}");
    }
}

/// slapd demanding a client certificate (`TLSVerifyClient demand`):
/// `ldap_tls_cert`/`ldap_tls_key` get us in, with or without checking the
/// server; without them the server refuses the handshake.  Also
/// `ldap_version: 2` starts (with a warning) and works.
#[test]
fn ldap_client_certificate_and_version() {
    if !can_run("ldap client cert", &["/usr/sbin/slapd", "/usr/bin/openssl", "/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let certs = d.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let (ca, cert, key) = make_certs(&certs);
    let openssl = |args: &[&str]| {
        let o = std::process::Command::new("openssl")
            .args(args)
            .current_dir(&certs)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "client.key",
        "-out",
        "client.csr",
        "-subj",
        "/CN=saslauthd",
    ]);
    std::fs::write(certs.join("client.cnf"), "extendedKeyUsage=clientAuth\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "client.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "client.pem",
        "-days",
        "2",
        "-extfile",
        "client.cnf",
    ]);
    let demand = format!("TLSCACertificateFile {}\nTLSVerifyClient demand\n", ca.display());
    let slapd = Slapd::start_with(&d.path().join("slapd"), Some((&cert, &key)), &demand);
    let tls_port = slapd.tls_port.unwrap();
    let client = format!(
        "ldap_tls_cert: {}\nldap_tls_key: {}\n",
        certs.join("client.pem").display(),
        certs.join("client.key").display()
    );
    let variants = [
        (
            "cert-checked",
            format!(
                "ldap_servers: ldaps://127.0.0.1:{tls_port}/\nldap_tls_check_peer: yes\nldap_tls_cacert_file: {}\n{client}",
                ca.display()
            ),
            true,
        ),
        (
            "cert-unchecked",
            format!("ldap_servers: ldaps://127.0.0.1:{tls_port}/\n{client}ldap_version: 2\n"),
            true,
        ),
        (
            "starttls-cert",
            format!("ldap_servers: ldap://127.0.0.1:{}/\nldap_start_tls: yes\n{client}", slapd.port),
            true,
        ),
        ("no-cert", format!("ldap_servers: ldaps://127.0.0.1:{tls_port}/\n"), false),
    ];
    for (name, tls, ok) in &variants {
        let body = format!("{tls}ldap_search_base: ou=people,{LDAP_BASE}\nldap_filter: (uid=%u)\nldap_timeout: 3\n");
        let path = conf(d.path(), &format!("{name}.conf"), &body);
        let log = d.path().join(format!("{name}.log"));
        let _ours = saslauthd(
            &bin("saslauthd"),
            &[],
            &d.path().join(name),
            &["-a", "ldap", "-O", &path],
            &[],
            &log,
        );
        let good = reply_text(&mux(&d.path().join(format!("{name}/mux")), b"u1", b"testpw", b"imap", b""));
        let bad = reply_text(&mux(&d.path().join(format!("{name}/mux")), b"u1", b"wrong", b"imap", b""));
        if *ok {
            assert_eq!(good, "OK", "{name}: {}", std::fs::read_to_string(&log).unwrap());
        } else {
            assert!(good.starts_with("NO"), "{name}: slapd demands a certificate: {good}");
        }
        assert!(bad.starts_with("NO"), "{name}: {bad}");
        if *name == "cert-unchecked" {
            assert!(std::fs::read_to_string(&log).unwrap().contains("ldap_version: 2 requested"));
        }
    }
    // A key without a certificate is a start-up error naming the options.
    let path = conf(
        d.path(),
        "half.conf",
        &format!(
            "ldap_servers: ldaps://127.0.0.1:{tls_port}/\nldap_tls_key: {}\n",
            certs.join("client.key").display()
        ),
    );
    let o = std::process::Command::new(bin("saslauthd"))
        .args(["-a", "ldap", "-O", &path, "-d", "-m", d.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("ldap_tls_cert and ldap_tls_key must be set together"), "{err}");
}
