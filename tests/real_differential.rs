//! Differential check against the real programs when they are installed
//! (CI installs Debian's postfix and cyrus-common): our postconf and
//! cyr_info must print what the real ones print for every compat case,
//! right now, on this machine — the fixtures cannot drift from reality.

use std::path::Path;
use std::process::Command;

const REAL_POSTCONF: &str = "/usr/sbin/postconf";
const REAL_CYR_INFO: &str = "/usr/lib/cyrus/bin/cyr_info";

fn installed(p: &str) -> bool {
    let ok = Path::new(p).exists();
    if !ok && std::env::var("CI").is_ok() {
        panic!("{p} is missing in CI: tests/tools/test.sh installs it");
    }
    ok
}

fn dirs(d: &str) -> Vec<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("compat").join(d);
    let mut v: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

#[test]
fn postconf_against_real_postfix() {
    if !installed(REAL_POSTCONF) {
        return;
    }
    for case in dirs("postfix") {
        let dir = case.to_str().unwrap();
        for flags in [
            &["-n"][..],
            &["-M"],
            &["-Mf"],
            &["-F"],
            &["-P"],
            &["-h", "myorigin", "relayhost", "smtpd_banner"],
        ] {
            let real = Command::new(REAL_POSTCONF).arg("-c").arg(dir).args(flags).output().unwrap();
            let mut args = vec!["-c".to_string(), dir.to_string()];
            args.extend(flags.iter().map(|s| s.to_string()));
            let ours = mumail::tools::postconf::run(&args);
            assert_eq!(ours.stdout, String::from_utf8_lossy(&real.stdout), "{dir}: postconf {flags:?}");
            assert_eq!(ours.status, real.status.code().unwrap_or(-1), "{dir}: postconf {flags:?} status");
        }
    }
}

#[test]
fn cyr_info_against_real_cyrus() {
    if !installed(REAL_CYR_INFO) {
        return;
    }
    for case in dirs("cyrus") {
        if std::fs::read_to_string(case.join("imapd.conf")).unwrap().contains("$PEERS_TMP") {
            continue; // needs the recorder's substitution
        }
        let conf = case.join("imapd.conf");
        for cmd in ["conf-default", "conf"] {
            let real = Command::new(REAL_CYR_INFO).arg("-C").arg(&conf).arg(cmd).output().unwrap();
            let ours = mumail::tools::cyr_info::run(&["-C".to_string(), conf.to_str().unwrap().to_string(), cmd.to_string()]);
            let status = real.status.code().unwrap_or(-1);
            assert_eq!(ours.status, status, "{}: cyr_info {cmd} status", case.display());
            if status != 0 {
                assert_eq!(
                    ours.stderr,
                    String::from_utf8_lossy(&real.stderr),
                    "{}: cyr_info {cmd}",
                    case.display()
                );
                continue;
            }
            // Options in table order exactly; trailing overflow keys as a set.
            let mut o: Vec<String> = ours.stdout.lines().map(String::from).collect();
            let mut r: Vec<String> = String::from_utf8_lossy(&real.stdout).lines().map(String::from).collect();
            assert_eq!(o.len(), r.len(), "{}: cyr_info {cmd}", case.display());
            let n = mumail::config::cyrus::ImapdConf::load(conf.to_str().unwrap(), None)
                .unwrap()
                .overflow
                .len();
            let split = if cmd == "conf-default" { o.len() } else { o.len() - n };
            assert_eq!(o[..split], r[..split], "{}: cyr_info {cmd}", case.display());
            o.sort();
            r.sort();
            assert_eq!(o, r, "{}: cyr_info {cmd}", case.display());
        }
    }
}
