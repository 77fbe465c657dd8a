//! Documentation checks (Postfix's check-postconf-undocumented): every
//! registered parameter has an entry in its man5 page, every documented
//! name is registered, and every program in bin/ has a man page.

use std::collections::BTreeSet;
use std::path::Path;

fn documented(page: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(page)).unwrap();
    // The tag line after each .TP.
    let lines: Vec<&str> = text.lines().collect();
    lines
        .windows(2)
        .filter(|w| w[0] == ".TP")
        .filter_map(|w| w[1].strip_prefix("\\fB"))
        .filter_map(|l| l.split("\\fR").next())
        .map(|n| n.replace("\\-", "-"))
        .collect()
}

#[test]
fn every_postfix_parameter_is_documented() {
    let doc = documented("man/man5/mumail-main.cf.5");
    let reg: BTreeSet<String> = mumail::config::postfix::registry::registry()
        .params()
        .iter()
        .map(|p| p.name.to_string())
        .collect();
    let missing: Vec<_> = reg.difference(&doc).collect();
    let extra: Vec<_> = doc.difference(&reg).collect();
    assert!(missing.is_empty(), "undocumented (run tests/tools/gen-man-params.py): {missing:?}");
    assert!(extra.is_empty(), "documented but not registered: {extra:?}");
}

#[test]
fn every_cyrus_option_is_documented() {
    let doc = documented("man/man5/mumail-imapd.conf.5");
    let reg: BTreeSet<String> = mumail::config::cyrus::options::options()
        .list
        .iter()
        .map(|o| o.name.to_string())
        .collect();
    assert_eq!(
        reg.difference(&doc).count(),
        0,
        "undocumented: {:?}",
        reg.difference(&doc).collect::<Vec<_>>()
    );
    assert_eq!(
        doc.difference(&reg).count(),
        0,
        "not registered: {:?}",
        doc.difference(&reg).collect::<Vec<_>>()
    );
}

#[test]
fn table_parameters_are_documented() {
    for kind in ["ldap", "mysql"] {
        let doc: BTreeSet<String> = documented(&format!("man/man5/mumail-{kind}_table.5"))
            .into_iter()
            .filter(|n| n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .collect();
        let reg: BTreeSet<String> = mumail::config::postfix::params::table_params(kind)
            .unwrap()
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(doc, reg, "{kind}: documented vs known parameters");
    }
}

/// The pages of a section: (file name, text).
fn pages(section: &str) -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("man").join(section);
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().to_string(),
                std::fs::read_to_string(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// The names a page documents: its NAME section's line before `\-`.
fn names_of(text: &str) -> Vec<String> {
    let mut lines = text.lines().skip_while(|l| *l != ".SH NAME").skip(1);
    let line = lines.next().unwrap_or("");
    line.split("\\-").next().unwrap().split(',').map(|n| n.trim().to_string()).collect()
}

/// Every program in bin/ is named by a section 1 or 8 page (a page may
/// document two, as proxyd(8) does pop3proxyd; the RPM links the second
/// name to it).
#[test]
fn every_program_has_a_man_page() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let named: BTreeSet<String> = ["man1", "man8"]
        .iter()
        .flat_map(|s| pages(s))
        .flat_map(|(_, t)| names_of(&t))
        .collect();
    for e in std::fs::read_dir(root.join("bin")).unwrap().flatten() {
        let name = e.path().file_stem().unwrap().to_string_lossy().to_string();
        assert!(
            named.contains(&name),
            "bin/{name}.rs is not named by any page under man/man1 or man/man8"
        );
    }
    assert!(named.contains("pop3proxyd"));
}

/// Pages follow the originals' structure: NAME, SYNOPSIS (programs),
/// DESCRIPTION and SEE ALSO, the title naming the file.
#[test]
fn man_pages_have_the_standard_sections() {
    for section in ["man1", "man5", "man8"] {
        for (file, text) in pages(section) {
            let heads: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix(".SH ")).collect();
            let mut want = vec!["NAME", "DESCRIPTION", "SEE ALSO"];
            if section != "man5" {
                want.insert(1, "SYNOPSIS");
            }
            let order: Vec<&str> = heads.iter().copied().filter(|h| want.contains(h)).collect();
            assert_eq!(order, want, "{section}/{file}: sections {heads:?}");
            let th = text.lines().next().unwrap_or("");
            let stem = file.rsplit_once('.').unwrap().0.to_uppercase();
            assert!(th.starts_with(&format!(".TH {stem} ")), "{section}/{file}: title line {th}");
        }
    }
}

/// `mandoc -T lint` finds nothing at warning level or above.
#[test]
fn man_pages_pass_mandoc_lint() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<String> = Vec::new();
    for section in ["man1", "man5", "man8"] {
        for (f, _) in pages(section) {
            files.push(root.join("man").join(section).join(f).to_string_lossy().to_string());
        }
    }
    let out = std::process::Command::new("mandoc")
        .args(["-T", "lint", "-W", "warning"])
        .args(&files)
        .output()
        .expect("mandoc (Debian package mandoc) runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.trim().is_empty(), "mandoc -T lint:\n{text}");
}

/// saslauthd.conf(5) documents exactly the keys saslauthd knows.
#[test]
fn every_saslauthd_conf_key_is_documented() {
    let doc = documented("man/man5/saslauthd.conf.5");
    let reg: BTreeSet<String> = mumail::config::sasl::SASLAUTHD_CONF_KEYS
        .iter()
        .map(|(k, _)| k.to_string())
        .collect();
    assert_eq!(doc, reg);
}
