//! Replays the compat/ corpus: each case's expected output was recorded by
//! running the real Postfix 3.7 postconf / Cyrus 3.6 cyr_info on the same
//! files (tests/tools/record-compat.sh); our tools must print the same.

use mumail::config::postfix::registry::{registry, Class};
use mumail::tools::{cyr_info, postconf, Output};
use std::path::{Path, PathBuf};

fn cases(dialect: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("compat").join(dialect);
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    assert!(!v.is_empty());
    v
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A scratch copy of a case's input files (with `$PEERS_TMP` replaced, as
/// the recorder does).
fn scratch(case: &Path) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for e in std::fs::read_dir(case).unwrap().flatten() {
        let f = e.file_name().to_string_lossy().to_string();
        if !(f.ends_with(".out") || f.ends_with(".err") || f.contains(".after-")) {
            files.push(f);
        }
    }
    for f in &files {
        let text = read(&case.join(f)).replace("$PEERS_TMP", t.path().to_str().unwrap());
        std::fs::write(t.path().join(f), text).unwrap();
    }
    t
}

fn pc(dir: &Path, args: &[&str]) -> Output {
    let mut a = vec!["-c".to_string(), dir.to_str().unwrap().to_string()];
    a.extend(args.iter().map(|s| s.to_string()));
    postconf::run(&a)
}

fn sub(text: &str, dir: &Path) -> String {
    text.replace(dir.to_str().unwrap(), "@DIR@")
}

/// Postfix appends new names in the order of a randomly seeded hash table,
/// so the appended tail is compared as a set; everything else byte for byte.
fn same_but_appended_order(got: &str, want: &str, name: &str) {
    let g: Vec<&str> = got.split_inclusive('\n').collect();
    let w: Vec<&str> = want.split_inclusive('\n').collect();
    let p = g.iter().zip(&w).take_while(|(a, b)| a == b).count();
    let (mut gt, mut wt) = (g[p..].to_vec(), w[p..].to_vec());
    gt.sort();
    wt.sort();
    assert_eq!(gt, wt, "{name}: postconf -e\n{got}");
    for l in gt {
        let l = l.trim_start_matches('#');
        assert!(
            l.starts_with("myhostname = ") || l.starts_with("mumail_test_new = "),
            "{name}: postconf -e changed {l:?}"
        );
    }
}

#[test]
fn postconf_matches_real_postfix() {
    let names = [
        "myorigin",
        "mydestination",
        "relayhost",
        "smtpd_banner",
        "header_size_limit",
        "compatibility_level",
        "smtpd_relay_restrictions",
        "inet_interfaces",
    ];
    for case in cases("postfix") {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let t = scratch(&case);
        let dir = t.path();

        // -n: stdout and status byte for byte; warnings as a set.
        let o = pc(dir, &["-n"]);
        assert_eq!(
            format!("{}status {}\n", sub(&o.stdout, dir), o.status),
            read(&case.join("postconf-n.out")),
            "{name}: postconf -n"
        );
        let want_err: Vec<String> = read(&case.join("postconf-n.err")).lines().map(String::from).collect();
        let got_err: Vec<String> = sub(&o.stderr, dir).lines().map(String::from).collect();
        // Postfix reads main.cf twice and repeats "overriding" warnings for
        // the second pass; ours must be among the real ones, the rest equal.
        for g in &got_err {
            assert!(want_err.contains(g), "{name}: unexpected warning {g:?}\nwant {want_err:#?}");
        }
        // Not yet done: postconf's reading of ldap:/mysql: table config files
        // (their own "unused parameter" checks); those warnings are skipped.
        for w in want_err
            .iter()
            .filter(|w| !w.contains("overriding earlier entry") && !w.contains("\" configuration \""))
        {
            assert!(got_err.contains(w), "{name}: missing warning {w:?}\ngot {got_err:#?}");
        }

        for (flag, file) in [
            ("-M", "postconf-M.out"),
            ("-Mf", "postconf-Mf.out"),
            ("-F", "postconf-F.out"),
            ("-P", "postconf-P.out"),
        ] {
            assert_eq!(
                sub(&pc(dir, &[flag]).stdout, dir),
                read(&case.join(file)),
                "{name}: postconf {flag}"
            );
        }
        let mut hargs = vec!["-h"];
        hargs.extend(names);
        assert_eq!(
            sub(&pc(dir, &hargs).stdout, dir),
            read(&case.join("postconf-h.out")),
            "{name}: postconf -h"
        );

        // -d: every parameter whose default is not host- or build-specific.
        let skip = |line: &str| {
            let n = line.split(" = ").next().unwrap_or("");
            registry().get(n).is_some_and(|p| p.class != Class::Fixed) || n == "process_id"
        };
        let ours: Vec<String> = pc(dir, &["-d"]).stdout.lines().filter(|l| !skip(l)).map(String::from).collect();
        let real: Vec<String> = read(&case.join("postconf-d.out"))
            .lines()
            .filter(|l| !skip(l))
            .map(String::from)
            .collect();
        if real.is_empty() {
            assert!(ours.is_empty(), "{name}");
        } else {
            assert_eq!(ours.len(), real.len(), "{name}: postconf -d line count");
            for (o, r) in ours.iter().zip(&real) {
                assert_eq!(o, r, "{name}: postconf -d");
            }
        }

        // Edits.
        if o.status == 0 {
            pc(dir, &["-e", "myhostname = edited.example.com", "mumail_test_new = a  b"]);
            same_but_appended_order(&read(&dir.join("main.cf")), &read(&case.join("main.cf.after-e")), &name);
            pc(dir, &["-X", "mydestination"]);
            pc(dir, &["-#", "myhostname"]);
            same_but_appended_order(&read(&dir.join("main.cf")), &read(&case.join("main.cf.after-X-comment")), &name);
        }
    }
}

#[test]
fn cyr_info_matches_real_cyrus() {
    for case in cases("cyrus") {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let t = scratch(&case);
        let dir = t.path();
        let conf = dir.join("imapd.conf");
        let master = dir.join("cyrus.conf");
        let runs: [(&[&str], &str); 5] = [
            (&["conf"], "cyr_info-conf.out"),
            (&["conf-all"], "cyr_info-conf-all.out"),
            (&["conf-default"], "cyr_info-conf-default.out"),
            (&["conf-lint"], "cyr_info-conf-lint.out"),
            (&["-n", "imaps", "conf"], "cyr_info-n-imaps-conf.out"),
        ];
        for (args, file) in runs {
            let mut a = vec![
                "-C".to_string(),
                conf.to_str().unwrap().to_string(),
                "-M".to_string(),
                master.to_str().unwrap().to_string(),
            ];
            a.extend(args.iter().map(|s| s.to_string()));
            let o = cyr_info::run(&a);
            let got = sub(&format!("{}{}status {}\n", o.stdout, o.stderr, o.status), dir);
            let want = read(&case.join(file));
            if o.status != 0 {
                assert_eq!(got, want, "{name}: cyr_info {args:?}");
                continue;
            }
            // Known options in table order byte for byte; the overflow table
            // (printed by Cyrus in hash order) as a set.
            let conf =
                mumail::config::cyrus::ImapdConf::load(conf.to_str().unwrap(), args.first().filter(|a| **a == "-n").map(|_| "imaps"))
                    .unwrap();
            let n_over = if args.contains(&"conf-default") {
                0
            } else if args.contains(&"conf-lint") {
                got.lines().count() - 1
            } else {
                conf.overflow.len()
            };
            let g: Vec<&str> = got.lines().collect();
            let w: Vec<&str> = want.lines().collect();
            assert_eq!(g.len(), w.len(), "{name}: cyr_info {args:?}\n{got}");
            let split = g.len() - 1 - n_over;
            assert_eq!(g[..split], w[..split], "{name}: cyr_info {args:?} (options)");
            let (mut gs, mut ws) = (g[split..].to_vec(), w[split..].to_vec());
            gs.sort();
            ws.sort();
            assert_eq!(gs, ws, "{name}: cyr_info {args:?} (overflow)");
        }
    }
}

/// The registry says which imapd.conf options mumail implements (the
/// others are accepted with one warning at start): every option it marks
/// "supported" must be read somewhere in src/, by its name in quotes, so
/// that no setting is silently ignored.
#[test]
fn every_supported_cyrus_option_is_read_somewhere() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tsv = std::fs::read_to_string(root.join("src/config/cyrus/options.tsv")).unwrap();
    let mut code = String::new();
    let mut dirs = vec![root.join("src")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                code.push_str(&std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    let unread: Vec<&str> = tsv
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .filter(|f| f.len() >= 7 && f[6] == "supported")
        .map(|f| f[0])
        .filter(|n| !code.contains(&format!("\"{n}\"")))
        .collect();
    assert!(unread.is_empty(), "marked supported in options.tsv but never read: {unread:?}");
    // And the registry does not claim everything.
    assert!(tsv.lines().any(|l| l.ends_with("\tignored")));
}
