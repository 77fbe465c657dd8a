//! saslauthd's `kerberos5` mechanism against a real MIT KDC (the AD
//! stand-in for Kerberos), compared with the real saslauthd 2.1.28; a
//! ticket that the host keytab cannot verify is refused (spoofed-KDC
//! defence); and `pam` with pam_krb5 against the same KDC — the seed's
//! PAM → pam_krb5 → AD path.

mod harness;
use harness::*;
use std::path::Path;
use std::time::{Duration, Instant};

const REAL: &str = "/usr/sbin/saslauthd";

#[test]
fn kerberos5_and_pam_krb5() {
    if !can_run(
        "kerberos5",
        &[
            REAL,
            "/usr/sbin/krb5kdc",
            "/usr/sbin/kdb5_util",
            "/usr/bin/unshare",
            "/lib/x86_64-linux-gnu/security/pam_krb5.so",
        ],
    ) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let mut kdc = Kdc::start(&d.path().join("kdc"));
    let kt = d.path().join("kdc/krb5.keytab");
    let conf = d.path().join("saslauthd.conf");
    std::fs::write(&conf, format!("krb5_keytab: {}\nkrb5_verify_principal: host\n", kt.display())).unwrap();
    let env: Vec<(&str, String)> = kdc.env();
    let args = ["-a", "kerberos5", "-O", conf.to_str().unwrap()];
    let real = saslauthd(
        Path::new(REAL),
        &[],
        &d.path().join("real"),
        &args,
        &env,
        &d.path().join("real.log"),
    );
    let log = d.path().join("ours.log");
    let ours = saslauthd(&bin("saslauthd"), &[], &d.path().join("ours"), &args, &env, &log);
    let cases: &[(&[u8], &[u8], &[u8])] = &[
        (b"u1", b"testpw", b""),
        (b"u2", b"wrong", b""),
        (b"nosuch", b"testpw", b""),
        (b"u3", b"testpw", REALM.as_bytes()),
        (b"u1@MUMAIL.TEST", b"testpw", b""),
    ];
    for (l, p, r) in cases {
        let want = reply_text(&mux(&d.path().join("real/mux"), l, p, b"imap", r));
        let got = reply_text(&mux(&d.path().join("ours/mux"), l, p, b"imap", r));
        eprintln!("krb5 {:?}: real {want:?} ours {got:?}", String::from_utf8_lossy(l));
        assert_eq!(got, want, "login {:?}", String::from_utf8_lossy(l));
    }
    assert_eq!(reply_text(&mux(&d.path().join("ours/mux"), b"u1", b"testpw", b"imap", b"")), "OK");
    assert!(reply_text(&mux(&d.path().join("ours/mux"), b"u1", b"wrong", b"imap", b"")).starts_with("NO"));

    // The KDC changes the host key: our keytab can no longer verify tickets
    // (exactly what a spoofed KDC's tickets look like) -> refused and logged.
    kdc.kadmin(&format!("cpw -randkey host/{}", kdc.host));
    let r = reply_text(&mux(&d.path().join("ours/mux"), b"u1", b"testpw", b"imap", b""));
    let want = reply_text(&mux(&d.path().join("real/mux"), b"u1", b"testpw", b"imap", b""));
    eprintln!("unverifiable: real {want:?} ours {r:?}");
    assert!(r.starts_with("NO"), "unverifiable ticket accepted: {r}");
    assert_eq!(r, want);
    drop(real);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("could not be verified with the keytab"), "{text}");
    drop(ours);
    kdc.kadmin(&format!("ktadd -k {} host/{}", kt.display(), kdc.host));

    // KDC down -> NO within the timeout; back -> OK without a restart.
    let ours = saslauthd(
        &bin("saslauthd"),
        &[],
        &d.path().join("ours2"),
        &args,
        &env,
        &d.path().join("ours2.log"),
    );
    assert_eq!(reply_text(&mux(&d.path().join("ours2/mux"), b"u2", b"testpw", b"imap", b"")), "OK");
    kdc.stop();
    let t = Instant::now();
    // A NO that says no KDC answered, which our daemons turn into a
    // temporary failure; a wrong password stays a plain NO.
    let r = reply_text(&mux(&d.path().join("ours2/mux"), b"u2", b"testpw", b"imap", b""));
    assert!(r.starts_with("NO [UNAVAILABLE]"), "{r}");
    assert!(t.elapsed() < Duration::from_secs(35), "{:?}", t.elapsed());
    kdc.resume();
    let kdc_log = d.path().join("kdc/kdc.log");
    let seen = std::fs::read_to_string(&kdc_log).unwrap_or_default().len();
    assert_eq!(reply_text(&mux(&d.path().join("ours2/mux"), b"u2", b"testpw", b"imap", b"")), "OK");
    // Our check is one AS exchange for the host service: no TGS request.
    let new_log = std::fs::read_to_string(&kdc_log).unwrap()[seen..].to_string();
    assert!(
        new_log.contains("AS_REQ") && new_log.contains(&format!("u2@{REALM} for host/")),
        "{new_log}"
    );
    assert!(!new_log.contains("TGS_REQ"), "{new_log}");

    // A new password, then a new salt (the key derivation here remembers
    // each principal's salt): old passwords refused, new ones accepted.
    let ask = |pw: &[u8]| reply_text(&mux(&d.path().join("ours2/mux"), b"u2", pw, b"imap", b""));
    kdc.kadmin("cpw -pw newpw u2");
    assert!(ask(b"testpw").starts_with("NO"));
    assert_eq!(ask(b"newpw"), "OK");
    kdc.kadmin("cpw -e aes256-cts-hmac-sha1-96:onlyrealm -pw saltpw u2");
    assert_eq!(ask(b"saltpw"), "OK", "a changed salt must be fetched again");
    assert!(ask(b"newpw").starts_with("NO"));
    kdc.kadmin("cpw -e aes128-cts-hmac-sha1-96:normal -pw testpw u2");
    assert_eq!(ask(b"testpw"), "OK");
    assert!(ask(b"saltpw").starts_with("NO"));
    drop(ours);

    // pam -> pam_krb5 -> the same KDC, with a private /etc/pam.d and passwd.
    let pamd = d.path().join("pam.d");
    std::fs::create_dir_all(&pamd).unwrap();
    std::fs::write(
        pamd.join("imap"),
        "auth required pam_krb5.so minimum_uid=0 no_ccache\naccount required pam_permit.so\n",
    )
    .unwrap();
    std::fs::write(pamd.join("other"), "auth required pam_deny.so\naccount required pam_deny.so\n").unwrap();
    let mut binds = private_accounts(d.path());
    let mut passwd = std::fs::read_to_string(d.path().join("passwd")).unwrap();
    for (i, u) in ["u1", "u2", "u3"].iter().enumerate() {
        passwd.push_str(&format!("{u}:x:{}:{}::/nonexistent:/usr/sbin/nologin\n", 31000 + i, 31000 + i));
    }
    std::fs::write(d.path().join("passwd"), passwd).unwrap();
    binds.push((pamd.clone(), "/etc/pam.d"));
    let real = saslauthd(
        Path::new(REAL),
        &binds,
        &d.path().join("pam-real"),
        &["-a", "pam"],
        &env,
        &d.path().join("pam-real.log"),
    );
    let ours = saslauthd(
        &bin("saslauthd"),
        &binds,
        &d.path().join("pam-ours"),
        &["-a", "pam"],
        &env,
        &d.path().join("pam-ours.log"),
    );
    let pcases: &[(&[u8], &[u8], &[u8])] = &[(b"u1", b"testpw", b"imap"), (b"u1", b"wrong", b"imap"), (b"u2", b"testpw", b"pop")];
    for (l, p, s) in pcases {
        let want = mux(&d.path().join("pam-real/mux"), l, p, s, b"");
        let got = mux(&d.path().join("pam-ours/mux"), l, p, s, b"");
        eprintln!(
            "pam {:?}/{:?}: real {:?} ours {:?}",
            String::from_utf8_lossy(l),
            String::from_utf8_lossy(s),
            reply_text(&want),
            reply_text(&got)
        );
        assert_eq!(
            got,
            want,
            "pam {:?} service {:?}",
            String::from_utf8_lossy(l),
            String::from_utf8_lossy(s)
        );
    }
    assert_eq!(
        reply_text(&mux(&d.path().join("pam-ours/mux"), b"u1", b"testpw", b"imap", b"")),
        "OK"
    );
    drop(real);
    drop(ours);
}
