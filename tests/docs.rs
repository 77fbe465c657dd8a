//! Documentation checks (Postfix's check-postconf-undocumented): every
//! registered parameter has an entry in its man5 page, every documented
//! name is registered, and every program in bin/ has a man page.

use std::collections::BTreeSet;
use std::path::Path;

fn documented(page: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(page)).unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("\\fB"))
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
fn every_program_has_a_man_page() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for e in std::fs::read_dir(root.join("bin")).unwrap().flatten() {
        let name = e.path().file_stem().unwrap().to_string_lossy().to_string();
        let found = ["man1", "man8"].iter().any(|s| {
            std::fs::read_dir(root.join("man").join(s))
                .map(|rd| {
                    rd.flatten()
                        .any(|f| f.file_name().to_string_lossy().starts_with(&format!("{name}.")))
                })
                .unwrap_or(false)
        });
        assert!(found, "bin/{name}.rs has no man page under man/man1 or man/man8");
    }
}
