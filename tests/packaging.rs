//! RHEL packaging (issue 8): the shipped units and sysconfig files, the
//! sample configurations by role, and the RPMs themselves — built with
//! rpmbuild, checked with rpmlint, installed into a scratch root and run
//! from there, their units checked with systemd-analyze.

use mumail::config::cyrus::{CyrusConf, ImapdConf};
use mumail::config::sasl::{SaslauthdConf, Sysconfig};
use mumail::daemon::saslauthd::options::{parse, Action};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a command; panics with its output unless it succeeds.
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{cmd:?} failed ({}):\n{text}", out.status);
    text
}

#[test]
fn saslauthd_unit_and_sysconfig() {
    let unit = std::fs::read_to_string(root().join("packaging/systemd/saslauthd.service")).unwrap();
    assert!(unit.contains("Type=forking"));
    assert!(unit.contains("PIDFile=/run/saslauthd/saslauthd.pid"));
    assert!(unit.contains("EnvironmentFile=/etc/sysconfig/saslauthd"));
    assert!(unit.contains("ExecStart=/usr/sbin/saslauthd -m $SOCKETDIR -a $MECH $FLAGS"));
    // The RPM ships the PAM role's file as /etc/sysconfig/saslauthd.
    let sc = Sysconfig::load(root().join("etc/roles/saslauthd-pam/saslauthd").to_str().unwrap()).unwrap();
    let Action::Run(o) = parse(&sc.argv()) else {
        panic!("sysconfig argv refused: {:?}", sc.argv())
    };
    assert_eq!((o.run_path.as_str(), o.mech.as_str(), o.workers), ("/run/saslauthd", "pam", 5));
    let sc = Sysconfig::parse(
        "s",
        b"SOCKETDIR=/run/saslauthd\nMECH=ldap\nFLAGS=\"-O /etc/saslauthd.conf -c -t 900\"\n",
    )
    .unwrap();
    let Action::Run(o) = parse(&sc.argv()) else { panic!() };
    assert_eq!(
        (o.mech.as_str(), o.mech_option.as_deref(), o.cache, o.cache_ttl),
        ("ldap", Some("/etc/saslauthd.conf"), true, 900)
    );
}

/// Every sample in etc/ loads without a warning: Cyrus's files through
/// imapd.conf's and cyrus.conf's parsers and `cyr_info conf-lint`, the
/// hub's through `postconf -n` and `postfix check`, saslauthd's through
/// its sysconfig, option and saslauthd.conf parsers.  etc/roles holds the
/// production samples; the rest are the embedded default's templates.
#[test]
fn samples_load_without_warnings() {
    let roles = root().join("etc/roles");
    let etc = root().join("etc");
    let cyrus_pairs = [
        (roles.join("backend/imapd.conf"), roles.join("backend/cyrus.conf")),
        (roles.join("frontend/imapd.conf"), roles.join("frontend/cyrus.conf")),
        (roles.join("mupdate-master/imapd.conf"), roles.join("mupdate-master/cyrus.conf")),
        (etc.join("imapd.conf"), etc.join("cyrus.conf")),
        (etc.join("murder/backend.imapd.conf"), etc.join("murder/backend.cyrus.conf")),
        (etc.join("murder/frontend.imapd.conf"), etc.join("murder/frontend.cyrus.conf")),
        (etc.join("murder/master.imapd.conf"), etc.join("murder/master.cyrus.conf")),
    ];
    for (imapd, cyrus) in &cyrus_pairs {
        let role = imapd.display();
        let cf = CyrusConf::load(cyrus.to_str().unwrap()).unwrap();
        let services = cf.service_entries().unwrap();
        assert!(!services.is_empty(), "{role}: no services");
        for s in &services {
            let conf = ImapdConf::load(imapd.to_str().unwrap(), Some(&s.name)).unwrap();
            assert!(conf.warnings.is_empty(), "{role}/{}: {:?}", s.name, conf.warnings);
            assert!(conf.status_warnings().is_empty(), "{role}/{}: {:?}", s.name, conf.status_warnings());
        }
        let lint = run(Command::new(env!("CARGO_BIN_EXE_cyr_info")).args([
            "-C",
            imapd.to_str().unwrap(),
            "-M",
            cyrus.to_str().unwrap(),
            "conf-lint",
        ]));
        assert_eq!(lint, "", "{role}: conf-lint");
    }
    for hub in [roles.join("hub"), etc.join("postfix"), etc.join("postfix/seed")] {
        let out = Command::new(env!("CARGO_BIN_EXE_postconf"))
            .arg("-c")
            .arg(&hub)
            .arg("-n")
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{}: postconf -n warns", hub.display());
        assert!(String::from_utf8_lossy(&out.stdout).contains("mailbox_transport = lmtp:"));
        assert_eq!(
            run(Command::new(env!("CARGO_BIN_EXE_postfix")).arg("-c").arg(&hub).arg("check")),
            ""
        );
    }
    for (role, mech) in [
        ("saslauthd-pam", "pam"),
        ("saslauthd-kerberos5", "kerberos5"),
        ("saslauthd-ldap", "ldap"),
    ] {
        let sc = Sysconfig::load(roles.join(role).join("saslauthd").to_str().unwrap()).unwrap();
        let Action::Run(o) = parse(&sc.argv()) else {
            panic!("{role}: saslauthd refuses {:?}", sc.argv())
        };
        assert_eq!((o.mech.as_str(), o.run_path.as_str()), (mech, "/run/saslauthd"), "{role}");
    }
    for f in [roles.join("saslauthd-ldap/saslauthd.conf"), etc.join("saslauthd.conf")] {
        let ldap = SaslauthdConf::load(f.to_str().unwrap()).unwrap();
        assert!(ldap.warnings.is_empty(), "{:?}", ldap.warnings);
        mumail::auth::ldap::Settings::from_conf(&ldap).unwrap();
    }
}

/// Where the spec puts things, by package: every one must be listed.
const LAYOUT: &[(&str, &[&str])] = &[
    (
        "mumail-hub",
        &[
            "/usr/libexec/mumail/postfix-master",
            "/usr/sbin/postconf.mumail",
            "/usr/sbin/postmap.mumail",
            "/usr/sbin/postalias.mumail",
            "/usr/sbin/postqueue.mumail",
            "/usr/sbin/postsuper.mumail",
            "/usr/sbin/postfix.mumail",
            "/usr/sbin/sendmail.mumail",
            "/usr/bin/mailq.mumail",
            "/usr/bin/newaliases.mumail",
            "/usr/sbin/sendmail",
            "/usr/lib/systemd/system/mumail-hub.service",
            "/usr/lib/sysusers.d/mumail-hub.conf",
            "/usr/share/man/man1/postconf.mumail.1.gz",
            "/usr/share/man/man1/sendmail.mumail.1.gz",
            "/usr/share/man/man5/mumail-main.cf.5.gz",
            "/usr/share/man/man5/mumail-master.cf.5.gz",
            "/usr/share/man/man8/postfix-master.8.gz",
            "/var/spool/postfix",
        ],
    ),
    (
        "mumail-imapd",
        &[
            "/usr/libexec/mumail/master",
            "/usr/libexec/mumail/imapd",
            "/usr/libexec/mumail/pop3d",
            "/usr/libexec/mumail/lmtpd",
            "/usr/libexec/mumail/timsieved",
            "/usr/share/man/man8/timsieved.8.gz",
            "/usr/libexec/mumail/quota",
            "/usr/sbin/ctl_mboxlist",
            "/usr/sbin/cyr_deny",
            "/usr/sbin/cyr_df",
            "/usr/sbin/cyr_expire",
            "/usr/sbin/cyr_info",
            "/usr/sbin/cyr_quota",
            "/usr/sbin/deliver",
            "/usr/sbin/ipurge",
            "/usr/sbin/mbexamine",
            "/usr/sbin/mbpath",
            "/usr/sbin/reconstruct",
            "/usr/sbin/unexpunge",
            "/usr/lib/systemd/system/cyrus-imapd.service",
            "/usr/lib/sysusers.d/mumail-imapd.conf",
            "/usr/lib/tmpfiles.d/mumail-imapd.conf",
            "/etc/imapd.conf",
            "/etc/cyrus.conf",
            "/etc/sysconfig/cyrus-imapd",
            "/usr/share/man/man5/imapd.conf.5.gz",
            "/usr/share/man/man5/cyrus.conf.5.gz",
            "/usr/share/man/man8/cyrus-master.8.gz",
            "/usr/share/man/man8/imapd.8.gz",
            "/var/lib/imap",
            "/var/spool/imap",
        ],
    ),
    (
        "mumail-murder",
        &[
            "/usr/libexec/mumail/mupdate",
            "/usr/libexec/mumail/proxyd",
            "/usr/libexec/mumail/pop3proxyd",
            "/usr/libexec/mumail/lmtpproxyd",
            "/usr/share/man/man8/mupdate.8.gz",
            "/usr/share/man/man8/pop3proxyd.8.gz",
        ],
    ),
    (
        "mumail-saslauthd",
        &[
            "/usr/sbin/saslauthd",
            "/usr/sbin/testsaslauthd",
            "/usr/lib/systemd/system/saslauthd.service",
            "/etc/sysconfig/saslauthd",
            "/etc/saslauthd.conf",
            "/usr/share/man/man5/saslauthd.conf.5.gz",
            "/usr/share/man/man8/saslauthd.8.gz",
        ],
    ),
    (
        "mumail-doc",
        &["/usr/share/doc/mumail/README.md", "/usr/share/doc/mumail/samples/hub/main.cf"],
    ),
];

/// The whole of issue 8's "must show": rpmbuild -bb, rpmlint without
/// errors, rpm -qlp, an install into a scratch root whose programs run,
/// and systemd-analyze verify on every unit.
#[test]
fn rpms_build_lint_install_and_run() {
    let tmp = tempfile::tempdir().unwrap();
    let rpms = tmp.path().join("rpms");
    // Debian's rpm database is empty: build dependencies are not checked.
    run(Command::new("sh")
        .arg(root().join("packaging/rpm/build.sh"))
        .arg(&rpms)
        .arg("--nodeps")
        .env("CARGO_TARGET_DIR", root().join("target")));
    let mut files: Vec<PathBuf> = Vec::new();
    for arch in ["x86_64", "noarch"] {
        for e in std::fs::read_dir(rpms.join(arch)).unwrap().flatten() {
            files.push(e.path());
        }
    }
    files.sort();
    assert_eq!(files.len(), 5, "{files:?}");

    // rpmlint with RHEL's settings: no errors.
    let lint = Command::new("rpmlint")
        .arg("-c")
        .arg(root().join("packaging/rpm/rpmlint.toml"))
        .arg("-r")
        .arg(root().join("packaging/rpm/mumail.rpmlintrc"))
        .args(&files)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&lint.stdout);
    assert!(text.contains(" 0 errors,"), "rpmlint:\n{text}");
    assert!(!text.contains(": E: "), "rpmlint:\n{text}");

    // rpm -qlp: everything where the spec says.
    for (pkg, paths) in LAYOUT {
        let file = files
            .iter()
            .find(|f| f.file_name().unwrap().to_string_lossy().starts_with(&format!("{pkg}-0")))
            .unwrap_or_else(|| panic!("no {pkg} RPM"));
        let listed = run(Command::new("rpm").arg("-qlp").arg(file));
        let listed: Vec<&str> = listed.lines().collect();
        for p in *paths {
            assert!(listed.contains(p), "{pkg} does not list {p}");
        }
        let provides = run(Command::new("rpm").arg("-qp").arg("--provides").arg(file));
        let conflicts = run(Command::new("rpm").arg("-qp").arg("--conflicts").arg(file));
        match *pkg {
            "mumail-hub" => {
                for p in ["MTA", "smtpd", "smtpdaemon", "server(smtp)"] {
                    assert!(provides.lines().any(|l| l == p), "mumail-hub provides {p}: {provides}");
                }
                let post = run(Command::new("rpm").arg("-qp").arg("--scripts").arg(file));
                assert!(post.contains("alternatives --install /usr/sbin/sendmail mta /usr/sbin/sendmail.mumail"));
            }
            "mumail-saslauthd" => {
                assert!(provides.contains("cyrus-sasl = 2.1.28"));
                assert!(conflicts.lines().any(|l| l == "cyrus-sasl"));
            }
            "mumail-imapd" => assert!(conflicts.lines().any(|l| l == "cyrus-imapd")),
            _ => {}
        }
    }

    // Every program and every man page is in one of the packages: the hub's
    // Postfix-named commands and their section 1 pages with .mumail, Cyrus's
    // master(8) as cyrus-master(8).
    let mut all = String::new();
    for f in &files {
        all += &run(Command::new("rpm").arg("-qlp").arg(f));
    }
    let all: Vec<&str> = all.lines().collect();
    for e in std::fs::read_dir(root().join("bin")).unwrap().flatten() {
        let name = e.path().file_stem().unwrap().to_string_lossy().to_string();
        let found = ["/usr/libexec/mumail/", "/usr/sbin/", "/usr/bin/"]
            .iter()
            .any(|d| all.contains(&format!("{d}{name}").as_str()) || all.contains(&format!("{d}{name}.mumail").as_str()));
        assert!(found, "bin/{name}.rs is in no package");
    }
    for section in ["man1", "man5", "man8"] {
        for e in std::fs::read_dir(root().join("man").join(section)).unwrap().flatten() {
            let page = e.file_name().to_string_lossy().to_string();
            let installed = match (section, page.as_str()) {
                ("man1", p) => format!("{}.mumail.1", p.trim_end_matches(".1")),
                ("man8", "master.8") => "cyrus-master.8".to_string(),
                (_, p) => p.to_string(),
            };
            let path = format!("/usr/share/man/{section}/{installed}.gz");
            assert!(all.contains(&path.as_str()), "man/{section}/{page} is not installed as {path}");
        }
    }

    // Into a scratch root (no scriptlets: they would run chrooted there).
    let r = tmp.path().join("root");
    std::fs::create_dir_all(&r).unwrap();
    run(Command::new("rpm").arg("--root").arg(&r).arg("--initdb"));
    run(Command::new("rpm")
        .arg("--root")
        .arg(&r)
        .args(["-i", "--nodeps", "--noscripts"])
        .args(&files));
    let defaults = run(Command::new(r.join("usr/sbin/postconf.mumail")).arg("-d"));
    assert!(defaults.contains("\nmail_owner = postfix\n"), "postconf -d");
    let v = run(Command::new(r.join("usr/sbin/saslauthd")).arg("-v"));
    assert!(v.starts_with("saslauthd 2.1.28"), "{v}");
    for d in ["imapd", "pop3d", "lmtpd", "timsieved", "proxyd", "lmtpproxyd", "pop3proxyd"] {
        let u = run(Command::new(r.join("usr/libexec/mumail").join(d)).arg("-h"));
        assert!(u.starts_with(&format!("usage: {d} [-C alt_config]")), "{d} -h: {u}");
    }
    let u = Command::new(r.join("usr/sbin/cyr_info")).output().unwrap();
    assert!(String::from_utf8_lossy(&u.stderr).contains("cyr_info [-C <altconfig>]"));
    let lint = run(Command::new(r.join("usr/sbin/cyr_info"))
        .arg("-C")
        .arg(r.join("etc/imapd.conf"))
        .arg("-M")
        .arg(r.join("etc/cyrus.conf"))
        .arg("conf-lint"));
    assert_eq!(lint, "", "installed /etc/imapd.conf: conf-lint");
    // testsaslauthd answers -h with its usage and status 1, as the original.
    let t = Command::new(r.join("usr/sbin/testsaslauthd")).arg("-h").output().unwrap();
    assert!(String::from_utf8_lossy(&t.stderr).contains("usage: testsaslauthd -u username"));

    // systemd-analyze verify in the root, which stands in for a RHEL host:
    // it has the system's targets and /usr/bin/kill, and the man pages the
    // units name are looked up among the installed ones.
    let units = r.join("usr/lib/systemd/system");
    for e in std::fs::read_dir("/usr/lib/systemd/system").unwrap().flatten() {
        if e.file_name().to_string_lossy().ends_with(".target") && !units.join(e.file_name()).exists() {
            std::fs::copy(e.path(), units.join(e.file_name())).unwrap();
        }
    }
    std::fs::create_dir_all(r.join("usr/bin")).unwrap();
    std::fs::copy("/usr/bin/kill", r.join("usr/bin/kill")).unwrap();
    std::os::unix::fs::symlink("usr/bin", r.join("bin")).unwrap();
    for unit in ["mumail-hub.service", "cyrus-imapd.service", "saslauthd.service"] {
        let out = run(Command::new("systemd-analyze")
            .arg("verify")
            .arg(format!("--root={}", r.display()))
            .arg(format!("/usr/lib/systemd/system/{unit}"))
            .env("MANPATH", r.join("usr/share/man"))
            .current_dir(&r));
        assert_eq!(out, "", "systemd-analyze verify {unit}");
        run(Command::new("systemctl")
            .arg(format!("--root={}", r.display()))
            .arg("enable")
            .arg(unit));
        // (The link is absolute, meant for inside the root.)
        let link = r.join("etc/systemd/system/multi-user.target.wants").join(unit);
        assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("/usr/lib/systemd/system").join(unit));
    }
}
