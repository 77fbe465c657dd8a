//! mumail-migrate over real sockets: a user's folders move from the real
//! Cyrus IMAP server into our back end with flags, keywords, internal
//! dates and bodies; a second run copies nothing; after changes at the
//! source (a new message, a flag change, an expunge) a third run leaves
//! both sides identical again.

mod harness;

use harness::*;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

/// What the user's client sees of their folders (read-only):
/// per folder, each message's flags, internal date and body digest,
/// sorted (UIDs differ between the servers).
fn snapshot(port: u16, user: &str) -> String {
    let script = r#"
import imaplib, sys, hashlib, re
M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1]))
M.login(sys.argv[2], 'testpw')
typ, boxes = M.list('""', '*')
names = sorted(re.search(rb'\) "(.)" "?([^"]*)"?$', b).group(2).decode() for b in boxes if b)
for mb in names:
    typ, _ = M.select('"%s"' % mb, readonly=True)
    assert typ == 'OK', mb
    typ, data = M.uid('FETCH', '1:*', '(FLAGS INTERNALDATE BODY.PEEK[])')
    rows = []
    for d in data:
        if not isinstance(d, tuple):
            continue
        head = d[0].decode()
        flags = sorted(f for f in re.search(r'FLAGS \(([^)]*)\)', head).group(1).split() if f != '\\Recent')
        date = re.search(r'INTERNALDATE "([^"]*)"', head).group(1)
        rows.append('%s %s %s' % (date, ' '.join(flags), hashlib.sha1(d[1]).hexdigest()))
    print(mb, len(rows))
    for r in sorted(rows):
        print('  ', r)
"#;
    python(script, &[&port.to_string(), user])
}

/// Runs the source user's IMAP commands (imaplib, as the user).
fn as_user(port: u16, user: &str, code: &str) -> String {
    let script = format!(
        "import imaplib, sys, time\nM = imaplib.IMAP4('127.0.0.1', int(sys.argv[1]))\nM.login(sys.argv[2], 'testpw')\n{code}\nM.logout()\n"
    );
    python(&script, &[&port.to_string(), user])
}

fn migrate(src: u16, dst: u16, state: &std::path::Path, extra: &[&str]) -> String {
    let out = Command::new(bin("mumail-migrate"))
        .args(["-s", &format!("127.0.0.1:{src}"), "-d", &format!("127.0.0.1:{dst}")])
        .args(["-a", "md5u:testpw", "-A", "md5u:testpw", "-S", state.to_str().unwrap()])
        .args(extra)
        .arg("u7")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "mumail-migrate failed:\n{text}");
    text
}

#[test]
fn a_user_moves_from_cyrus_and_stays_in_sync() {
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(d.path().join("ours")).unwrap();
    // Both with the seed's namespace (Cyrus 2.x style: INBOX.Sent).
    let ns = "unixhierarchysep: no\naltnamespace: no\n";
    let ours = Backend::start(&d.path().join("ours"), ns);
    for p in ["ours", "ours/sasl"] {
        std::fs::set_permissions(d.path().join(p), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let cyrus = CyrusServer::start(&d.path().join("cyrus"), &d.path().join("ours/sasl/mux"), ns);
    let created = murder_admin(
        cyrus.imap_port,
        &["CREATE user.u7", "CREATE user.u7.Sent", "CREATE \"user.u7.Old mail\""],
    );
    assert_eq!(created.matches("-> OK").count(), 3, "{created}");
    let created = murder_admin(ours.imap_port, &["CREATE user.u7"]);
    assert!(created.contains("-> OK"), "{created}");
    as_user(
        cyrus.imap_port,
        "u7",
        r#"
def msg(n):
    return ('From: a@example.com\r\nTo: u7@example.com\r\nSubject: message %d\r\nMessage-ID: <m%d@example.com>\r\n\r\nbody %d\r\n' % (n, n, n)).encode()
M.append('INBOX', '(\\Seen)', imaplib.Time2Internaldate(1700000000), msg(1))
M.append('INBOX', '(\\Seen \\Answered $Label1)', imaplib.Time2Internaldate(1700000100), msg(2))
M.append('INBOX', '()', imaplib.Time2Internaldate(1700000200), msg(3))
M.append('INBOX.Sent', '(\\Seen)', imaplib.Time2Internaldate(1700000300), msg(4))
M.append('"INBOX.Old mail"', '(\\Flagged)', imaplib.Time2Internaldate(1600000000), msg(5))
assert M.setacl('INBOX.Sent', 'yes1', 'lrs')[0] == 'OK'
assert M.subscribe('INBOX.Sent')[0] == 'OK'
assert M.subscribe('"INBOX.Old mail"')[0] == 'OK'
"#,
    );
    let before = snapshot(cyrus.imap_port, "u7");
    assert!(before.starts_with("INBOX 3\n") && before.contains("INBOX.Old mail 1\n"), "{before}");
    let state = d.path().join("state");

    // A dry run counts and changes nothing.
    let out = migrate(cyrus.imap_port, ours.imap_port, &state, &["-n"]);
    assert!(
        out.contains("summary: 1 users, 1 migrated, 0 failed, 5 messages to copy (dry run)"),
        "{out}"
    );
    assert_eq!(snapshot(ours.imap_port, "u7"), "INBOX 0\n");

    let out = migrate(cyrus.imap_port, ours.imap_port, &state, &[]);
    assert!(out.contains("u7: 3 folders, 5 copied"), "{out}");
    assert!(out.contains(" 2 subscriptions"), "{out}");
    assert_eq!(snapshot(ours.imap_port, "u7"), before);
    // The ACL entry and the subscriptions came along.
    let seen = as_user(
        ours.imap_port,
        "u7",
        "print(M.getacl('INBOX.Sent'))\nprint(sorted(M.lsub('\"\"', '*')[1]))",
    );
    assert!(seen.contains("yes1 lrs"), "{seen}");
    assert!(seen.contains("INBOX.Sent") && seen.contains("INBOX.Old mail"), "{seen}");

    // Nothing changed: nothing is copied or set.
    let out = migrate(cyrus.imap_port, ours.imap_port, &state, &[]);
    assert!(
        out.contains("u7: 3 folders, 0 copied (0 bytes), 0 reflagged, 0 removed, 0 skipped, 0 ACL entries, 0 subscriptions"),
        "{out}"
    );

    // Changes at the source while the user works.
    as_user(
        cyrus.imap_port,
        "u7",
        r#"
M.append('INBOX', '(\\Draft)', imaplib.Time2Internaldate(1700000400), b'Subject: six\r\n\r\nbody 6\r\n')
M.select('INBOX')
M.store('3', '+FLAGS', '(\\Flagged)')
M.store('1', '+FLAGS', '(\\Deleted)')
M.expunge()
"#,
    );
    let changed = snapshot(cyrus.imap_port, "u7");
    assert_ne!(changed, before);
    let out = migrate(cyrus.imap_port, ours.imap_port, &state, &[]);
    assert!(out.contains("u7: 3 folders, 1 copied"), "{out}");
    assert!(out.contains("1 reflagged, 1 removed"), "{out}");
    assert_eq!(snapshot(ours.imap_port, "u7"), changed);

    // A run killed during an APPEND left a P line: the next run finds the
    // message it had appended instead of copying it twice.
    as_user(
        cyrus.imap_port,
        "u7",
        "M.append('INBOX.Sent', '()', imaplib.Time2Internaldate(1700000500), b'Subject: seven\\r\\n\\r\\nbody 7\\r\\n')",
    );
    let src_uid = 2; // the second message of Cyrus's INBOX.Sent
    as_user(
        ours.imap_port,
        "u7",
        "M.append('INBOX.Sent', '()', imaplib.Time2Internaldate(1700000500), b'Subject: seven\\r\\n\\r\\nbody 7\\r\\n')",
    );
    let mut f = std::fs::OpenOptions::new().append(true).open(state.join("u7")).unwrap();
    use std::io::Write;
    writeln!(f, "P INBOX.Sent {src_uid} 2").unwrap();
    drop(f);
    let out = migrate(cyrus.imap_port, ours.imap_port, &state, &[]);
    assert!(out.contains("u7: 3 folders, 0 copied"), "{out}");
    assert_eq!(snapshot(ours.imap_port, "u7"), snapshot(cyrus.imap_port, "u7"));
    drop(cyrus);
}

/// Admin commands through the murder harness's helper.
fn murder_admin(port: u16, cmds: &[&str]) -> String {
    let script = "import imaplib,sys\nM=imaplib.IMAP4('127.0.0.1',int(sys.argv[1]))\nM.login('md5u','testpw')\n\
                  out=[]\nfor c in sys.argv[2:]:\n    typ,data=M._simple_command(*c.split(' ',1))\n    out.append(c+' -> '+typ+' '+repr(data))\nM.logout()\nprint('\\n'.join(out))\n";
    let mut args = vec![port.to_string()];
    args.extend(cmds.iter().map(|s| s.to_string()));
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    python(script, &a)
}
