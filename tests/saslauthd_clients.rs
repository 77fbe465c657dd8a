//! Real clients of saslauthd: the real Postfix smtpd authenticating
//! `AUTH PLAIN`/`LOGIN` (driven by swaks) and the real Cyrus imapd
//! authenticating `LOGIN`/`PLAIN` (driven by imtest), both configured to use
//! our saslauthd's mux.

mod harness;
use harness::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

const SWAKS: &str = "/usr/bin/swaks";
const MASTER: &str = "/usr/lib/cyrus/bin/master";
const IMTEST: &str = "/usr/lib/cyrus/bin/imtest";

fn open_dir(p: &Path) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn chown(p: &Path, user: &str) {
    let u = nix::unistd::User::from_name(user).unwrap().unwrap();
    nix::unistd::chown(p, Some(u.uid), None).unwrap();
}

#[test]
fn postfix_smtpd_and_cyrus_imapd_use_our_mux() {
    if !can_run("real clients", &[POSTFIX, SWAKS, MASTER, IMTEST, "/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    open_dir(d.path());
    let binds = private_accounts(d.path());
    let run = d.path().join("sasl");
    let _sasl = saslauthd(
        &bin("saslauthd"),
        &binds,
        &run,
        &["-a", "shadow"],
        &[],
        &d.path().join("saslauthd.log"),
    );
    let mux = run.join("mux");

    // Postfix 3.7 smtpd, smtpd_sasl_type = cyrus, pwcheck_method: saslauthd.
    let pf = d.path().join("postfix");
    let port = PostfixInstance::prepare(&pf);
    std::fs::create_dir_all(pf.join("sasl")).unwrap();
    open_dir(&pf.join("sasl"));
    std::fs::write(
        pf.join("main.cf"),
        format!(
            "compatibility_level = 3.6\nqueue_directory = {q}\ndata_directory = {dd}\nmyhostname = hub.mumail.test\ninet_interfaces = loopback-only\n\
             smtpd_sasl_auth_enable = yes\nsmtpd_sasl_type = cyrus\nsmtpd_sasl_path = smtpd\ncyrus_sasl_config_path = {s}\n\
             maillog_file = {p}/maillog\nmaillog_file_prefixes = {p}\n",
            q = pf.join("queue").display(),
            dd = pf.join("data").display(),
            s = pf.join("sasl").display(),
            p = pf.display()
        ),
    )
    .unwrap();
    std::fs::write(
        pf.join("sasl/smtpd.conf"),
        format!(
            "pwcheck_method: saslauthd\nmech_list: PLAIN LOGIN\nsaslauthd_path: {}\n",
            mux.display()
        ),
    )
    .unwrap();
    let _postfix = PostfixInstance::start(&pf);
    wait_tcp(port);
    let swaks = |mech: &str, pw: &str| {
        let o = Command::new(SWAKS)
            .args([
                "--server",
                &format!("127.0.0.1:{port}"),
                "--auth",
                mech,
                "--auth-user",
                "u7",
                "--auth-password",
                pw,
                "--quit-after",
                "AUTH",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert!(swaks("PLAIN", "testpw").contains("235 2.7.0 Authentication successful"));
    assert!(swaks("LOGIN", "testpw").contains("235 2.7.0 Authentication successful"));
    assert!(swaks("PLAIN", "wrong").contains("535 5.7.8 Error: authentication failed"));

    // Cyrus 3.6 imapd, sasl_pwcheck_method: saslauthd.
    let cy = d.path().join("cyrus");
    for sub in ["", "config", "config/sieve", "run", "run/proc", "run/lock", "spool"] {
        std::fs::create_dir_all(cy.join(sub)).unwrap();
        chown(&cy.join(sub), "cyrus");
        open_dir(&cy.join(sub));
    }
    let iport = free_port();
    let c = cy.display();
    std::fs::write(
        cy.join("imapd.conf"),
        format!(
            "servername: backend1\nconfigdirectory: {c}/config\nproc_path: {c}/run/proc\nmboxname_lockpath: {c}/run/lock\ndefaultpartition: default\npartition-default: {c}/spool\n\
             sievedir: {c}/config/sieve\nlmtpsocket: {c}/run/lmtp.sock\nidlesocket: {c}/run/idle.sock\nnotifysocket: {c}/run/notify.sock\n\
             admins: cyrus\nallowplaintext: yes\nsasl_pwcheck_method: saslauthd\nsasl_saslauthd_path: {}\nsasl_mech_list: PLAIN LOGIN\n",
            mux.display()
        ),
    )
    .unwrap();
    std::fs::write(cy.join("cyrus.conf"), format!("START {{\n  recover cmd=\"ctl_cyrusdb -C {c}/imapd.conf -r\"\n}}\nSERVICES {{\n  imap cmd=\"imapd -C {c}/imapd.conf\" listen=\"127.0.0.1:{iport}\" prefork=0 maxchild=20\n}}\n")).unwrap();
    let mut cmd = Command::new(MASTER);
    cmd.args([
        "-C",
        cy.join("imapd.conf").to_str().unwrap(),
        "-M",
        cy.join("cyrus.conf").to_str().unwrap(),
        "-p",
        cy.join("master.pid").to_str().unwrap(),
        "-D",
    ]);
    let _master = Proc::spawn("cyrus master", &mut cmd);
    wait_tcp(iport);
    let imtest = |mech: &str, pw: &str| {
        use std::io::Write;
        let mut child = Command::new(IMTEST)
            .args(["-a", "u7", "-w", pw, "-m", mech, "-p", &iport.to_string(), "127.0.0.1"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b". logout\r\n").unwrap();
        let o = child.wait_with_output().unwrap();
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
    };
    let ok = imtest("login", "testpw");
    assert!(ok.contains("Authenticated."), "{ok}");
    assert!(imtest("plain", "testpw").contains("Authenticated."));
    let no = imtest("login", "wrong");
    assert!(no.contains("NO Login failed"), "{no}");
    let log = std::fs::read_to_string(d.path().join("saslauthd.log")).unwrap();
    assert!(
        log.contains("[user=u7] [service=smtp]") && log.contains("[user=u7] [service=imap]"),
        "{log}"
    );

    // rimap (used during migrations): our saslauthd and the real one both
    // log in to that Cyrus imapd, which asks our shadow saslauthd; the same
    // reply bytes for each case, and the real testsaslauthd as client.
    let rimap_opt = format!("127.0.0.1/{iport}");
    let real_r = saslauthd(
        Path::new("/usr/sbin/saslauthd"),
        &binds,
        &d.path().join("rimap-real"),
        &["-a", "rimap", "-O", &rimap_opt],
        &[],
        &d.path().join("rimap-real.log"),
    );
    let ours_r = saslauthd(
        &bin("saslauthd"),
        &binds,
        &d.path().join("rimap-ours"),
        &["-a", "rimap", "-O", &rimap_opt],
        &[],
        &d.path().join("rimap-ours.log"),
    );
    let cases: [(&[u8], &[u8]); 4] = [(b"u7", b"testpw"), (b"u7", b"wrong"), (b"nobody", b"x"), (b"u7", b"a\"b c")];
    for (l, p) in cases {
        let want = harness::mux(&d.path().join("rimap-real/mux"), l, p, b"imap", b"");
        let got = harness::mux(&d.path().join("rimap-ours/mux"), l, p, b"imap", b"");
        assert_eq!(reply_text(&got), reply_text(&want), "rimap {}", String::from_utf8_lossy(l));
    }
    let ts = |pw: &str| {
        let o = Command::new("/usr/sbin/testsaslauthd")
            .args([
                "-f",
                d.path().join("rimap-ours/mux").to_str().unwrap(),
                "-u",
                "u7",
                "-p",
                pw,
                "-s",
                "imap",
            ])
            .output()
            .unwrap();
        (String::from_utf8_lossy(&o.stdout).into_owned(), o.status.code())
    };
    assert_eq!(ts("testpw"), ("0: OK \"Success.\"\n".to_string(), Some(0)));
    assert_eq!(ts("wrong"), ("0: NO \"authentication failed\"\n".to_string(), Some(255)));
    drop(real_r);
    // The remote server down: NO at once, the reason logged, no password.
    drop(_master);
    let down = reply_text(&harness::mux(&d.path().join("rimap-ours/mux"), b"u7", b"testpw", b"imap", b""));
    assert!(down.starts_with("NO"), "{down}");
    drop(ours_r);
    let rlog = std::fs::read_to_string(d.path().join("rimap-ours.log")).unwrap();
    assert!(rlog.contains(&format!("127.0.0.1:{iport}")), "{rlog}");
    assert!(!rlog.contains("testpw"), "{rlog}");
}
