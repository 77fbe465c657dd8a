//! Enforces the layering of STYLE.md 7.1 by reading the sources:
//! `proto` imports only `util` and `mail`; `store`/`queue`/`auth` never
//! import `proto`; `server` knows no protocol; `config` stays below daemons.

use std::path::Path;

fn rs_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn imports(file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut out = Vec::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + 7..];
        let m: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        out.push(m);
    }
    out
}

fn check(layer: &str, allowed: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(layer);
    let mut files = Vec::new();
    rs_files(&root, &mut files);
    let mut bad = Vec::new();
    for f in files {
        for m in imports(&f) {
            if m != layer && !allowed.contains(&m.as_str()) {
                bad.push(format!("{} imports crate::{m}", f.display()));
            }
        }
    }
    bad
}

#[test]
fn layers_import_only_what_they_may() {
    let mut bad = Vec::new();
    bad.extend(check("util", &[]));
    bad.extend(check("mail", &["util"]));
    bad.extend(check("proto", &["util", "mail"]));
    bad.extend(check("config", &["util", "mail"]));
    bad.extend(check("log", &["util", "mail", "config"]));
    bad.extend(check("server", &["util", "mail", "config", "log"]));
    for l in ["store", "queue", "auth"] {
        bad.extend(check(l, &["util", "mail", "config", "log"]));
    }
    assert!(bad.is_empty(), "layering violations:\n{}", bad.join("\n"));
}

#[test]
fn the_checker_sees_imports() {
    // Guard against a checker that can never fail.
    let f = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config/postfix/params.rs");
    assert!(imports(&f).iter().any(|m| m == "config"));
}

#[test]
fn bin_files_stay_small() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("bin");
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let n = std::fs::read_to_string(e.path()).unwrap().lines().count();
        assert!(n <= 80, "{} has {n} lines; bin/ files are a header and a call", e.path().display());
    }
}
