//! mumail-migrate over real sockets: a user's folders move from the real
//! Cyrus IMAP server into our back end with flags, keywords, internal
//! dates and bodies; a second run copies nothing; after changes at the
//! source (a new message, a flag change, an expunge) a third run leaves
//! both sides identical again.

mod harness;

use harness::murder::{imap_admin, inbox_count, Murder};
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

thread_local! {
    /// The services file (MUMAIL_SERVICES) this test's runs find a
    /// Murder's back ends by, as its nodes do.
    static SERVICES: std::cell::RefCell<Option<std::path::PathBuf>> = const { std::cell::RefCell::new(None) };
}

/// mumail-migrate with `args` (and this test's services file).
fn migrate_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(bin("mumail-migrate"));
    c.args(args);
    if let Some(p) = SERVICES.with(|s| s.borrow().clone()) {
        c.env("MUMAIL_SERVICES", p);
    }
    c
}

/// mumail-migrate's exit status and output (stdout then stderr).
fn run_migrate(args: &[&str]) -> (Option<i32>, String) {
    let out = migrate_cmd(args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), text)
}

/// mumail-migrate runs killed (SIGKILL) after each delay in turn.
fn killed_runs(args: &[&str], delays_ms: &[u64]) {
    for &ms in delays_ms {
        let mut child = migrate_cmd(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(ms));
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Our back end in `<d>/ours` and the real Cyrus 3.6 in `<d>/cyrus`
/// (checking passwords through our saslauthd), both with the imapd.conf
/// lines `ns`.
fn ours_and_cyrus(d: &std::path::Path, ns: &str) -> (Backend, CyrusServer) {
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(d.join("ours")).unwrap();
    let ours = Backend::start(&d.join("ours"), ns);
    for p in ["ours", "ours/sasl"] {
        std::fs::set_permissions(d.join(p), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let cyrus = CyrusServer::start(&d.join("cyrus"), &d.join("ours/sasl/mux"), ns);
    (ours, cyrus)
}

/// A run that must succeed; its output.
fn run_migrate_ok(args: &[&str]) -> String {
    let (code, text) = run_migrate(args);
    assert_eq!(code, Some(0), "mumail-migrate failed:\n{text}");
    text
}

fn migrate(src: u16, dst: u16, state: &std::path::Path, extra: &[&str]) -> String {
    let (s, d) = (format!("127.0.0.1:{src}"), format!("127.0.0.1:{dst}"));
    let mut args = vec![
        "-s",
        &s,
        "-d",
        &d,
        "-a",
        "md5u:testpw",
        "-A",
        "md5u:testpw",
        "-S",
        state.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args.push("u7");
    run_migrate_ok(&args)
}

#[test]
fn a_user_moves_from_cyrus_and_stays_in_sync() {
    let d = tempfile::tempdir().unwrap();
    // Both with the seed's namespace (Cyrus 2.x style: INBOX.Sent).
    let (ours, cyrus) = ours_and_cyrus(d.path(), "unixhierarchysep: no\naltnamespace: no\n");
    let created = murder_admin(
        cyrus.imap_port,
        &[
            "CREATE user.u7",
            "CREATE user.u7.Sent",
            "CREATE \"user.u7.Old mail\"",
            "SETQUOTA user.u7 (STORAGE 1000 X-NUM-FOLDERS 10)",
        ],
    );
    assert_eq!(created.matches("-> OK").count(), 4, "{created}");
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
imaplib.Commands['SETMETADATA'] = ('AUTH', 'SELECTED')
assert M._simple_command('SETMETADATA', 'INBOX.Sent', '(/private/specialuse "\\\\Sent")')[0] == 'OK'
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
    assert!(out.contains(" 2 subscriptions, quota STORAGE 1000 X-NUM-FOLDERS 10\n"), "{out}");
    assert_eq!(snapshot(ours.imap_port, "u7"), before);
    // The ACL entry and the subscriptions came along.
    let seen = as_user(
        ours.imap_port,
        "u7",
        "print(M.getacl('INBOX.Sent'))\nprint(sorted(M.lsub('\"\"', '*')[1]))\nprint(M.list('\"\"', 'INBOX.Sent')[1])",
    );
    assert!(seen.contains("yes1 lrs"), "{seen}");
    // And the folder's special use (RFC 6154).
    assert!(seen.contains("(\\\\HasNoChildren \\\\Sent) \".\" INBOX.Sent"), "{seen}");
    assert!(seen.contains("INBOX.Sent") && seen.contains("INBOX.Old mail"), "{seen}");
    let quota = as_user(ours.imap_port, "u7", "print(M.getquotaroot('INBOX'))");
    assert!(quota.contains("STORAGE 0 1000 X-NUM-FOLDERS 3 10)"), "{quota}");

    // Nothing changed: nothing is copied or set.
    let out = migrate(cyrus.imap_port, ours.imap_port, &state, &[]);
    assert!(
        out.contains("u7: 3 folders, 0 copied (0 bytes), 0 reflagged, 0 removed, 0 skipped, 0 ACL entries, 0 subscriptions\n"),
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

/// What a client with a cache sees: per folder UIDVALIDITY and UIDNEXT,
/// per message its UID, flags, internal date and body digest; then the
/// quota of INBOX, the ACLs and the subscriptions.
fn uid_snapshot(port: u16, user: &str) -> String {
    uid_snapshot_of(port, user, "INBOX*")
}

fn uid_snapshot_of(port: u16, user: &str, pattern: &str) -> String {
    let script = r#"
import imaplib, sys, hashlib, re
M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1]))
M.login(sys.argv[2], 'testpw')
typ, boxes = M.list('""', sys.argv[3] if len(sys.argv) > 3 else 'INBOX*')
names = sorted(re.search(rb'\) "(.)" "?([^"]*)"?$', b).group(2).decode() for b in boxes if b)
for mb in names:
    typ, st = M.status('"%s"' % mb, '(UIDVALIDITY UIDNEXT MESSAGES)')
    print(mb, re.search(rb'\((.*)\)', st[0]).group(1).decode())
    M.select('"%s"' % mb, readonly=True)
    typ, data = M.uid('FETCH', '1:*', '(UID FLAGS INTERNALDATE BODY.PEEK[])')
    for d in data:
        if not isinstance(d, tuple):
            continue
        head = d[0].decode()
        uid = re.search(r'UID (\d+)', head).group(1)
        flags = sorted(f for f in re.search(r'FLAGS \(([^)]*)\)', head).group(1).split() if f != '\\Recent')
        date = re.search(r'INTERNALDATE "([^"]*)"', head).group(1)
        print('  ', uid, date, ' '.join(flags), hashlib.sha1(d[1]).hexdigest())
    typ, acl = M.getacl('"%s"' % mb)
    print('  acl', sorted(acl[0].decode().split(' ', 1)[1].split(' ')) if acl and acl[0] else None)
print('quota', M.getquotaroot('INBOX')[1])
print('lsub', sorted(M.lsub('""', '*')[1]))
"#;
    python(script, &[&port.to_string(), user, pattern])
}

fn spool_args<'a>(conf: &'a std::path::Path, dst: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["-C", conf.to_str().unwrap(), "-d", dst, "-A", "md5u:testpw"];
    args.extend_from_slice(extra);
    args
}

fn migrate_spool(conf: &std::path::Path, dst: u16, extra: &[&str]) -> String {
    let d = format!("127.0.0.1:{dst}");
    run_migrate_ok(&spool_args(conf, &d, extra))
}

/// From the files of a real Cyrus 3.6 spool (UUID layout, dlist headers,
/// index version 17): every user's folders arrive with the same
/// UIDVALIDITY, UIDs, UIDNEXT, flags, keywords, internal dates and
/// bodies, so clients' caches stay valid; a message expunged but not yet
/// purged (delayed expunge) is not resurrected; ACLs, quota and
/// subscriptions come along; a second run copies nothing.
#[test]
fn a_cyrus_spool_moves_with_its_uids() {
    let d = tempfile::tempdir().unwrap();
    let (ours, cyrus) = ours_and_cyrus(d.path(), "unixhierarchysep: no\naltnamespace: no\n");
    let created = murder_admin(
        cyrus.imap_port,
        &[
            "CREATE user.u7",
            "CREATE user.u7.Sent",
            "CREATE \"user.u7.Old mail\"",
            "CREATE user.yes1",
            "SETQUOTA user.u7 (STORAGE 1000 X-NUM-FOLDERS 10 X-ANNOTATION-STORAGE 100)",
            "CREATE shared.news",
            "SETACL shared.news u7 lrswi",
        ],
    );
    assert_eq!(created.matches("-> OK").count(), 7, "{created}");
    as_user(
        cyrus.imap_port,
        "u7",
        r#"
for i in range(6):
    M.append('INBOX', '(\\Seen $Label1)' if i % 2 else '(\\Flagged)', imaplib.Time2Internaldate(1500000000 + 3600 * i), b'Subject: m%d\r\n\r\nbody %d\r\n' % (i, i))
M.append('INBOX.Sent', '(\\Answered work)', imaplib.Time2Internaldate(1400000000), b'Subject: sent\r\n\r\nx\r\n')
M.append('"INBOX.Old mail"', '(\\Draft)', imaplib.Time2Internaldate(1300000000), b'Subject: old\r\n\r\n' + b'y' * 300000 + b'\r\n')
M.select('INBOX')
M.store('2', '+FLAGS', '\\Deleted')
M.store('6', '+FLAGS', '\\Deleted')
M.expunge()
M.store('3', '+FLAGS', '\\Deleted')
assert M.append('shared.news', '(\\Flagged)', imaplib.Time2Internaldate(1450000000), b'Subject: news\r\n\r\nnews\r\n')[0] == 'OK'
assert M.setacl('INBOX.Sent', 'yes1', 'lrs')[0] == 'OK'
assert M.subscribe('INBOX.Sent')[0] == 'OK'
imaplib.Commands['SETMETADATA'] = ('AUTH', 'SELECTED')
assert M._simple_command('SETMETADATA', 'INBOX.Sent', '(/private/specialuse "\\\\Sent" /private/comment "mine" /shared/comment "ours")')[0] == 'OK'
M.select('INBOX.Sent')
assert M._simple_command('STORE', '1', 'ANNOTATION', '(/comment (value.priv "pc" value.shared "sc"))')[0] == 'OK'
"#,
    );
    as_user(
        cyrus.imap_port,
        "yes1",
        "M.append('INBOX', '()', imaplib.Time2Internaldate(1600000000), b'Subject: hi\\r\\n\\r\\nyes1\\r\\n')\n\
         M.append('INBOX', '()', imaplib.Time2Internaldate(1600000100), b'Subject: two\\r\\n\\r\\nyes1\\r\\n')\n\
         M.select('user.u7.Sent')\n\
         assert M.store('1', '+FLAGS', '(\\\\Seen)')[0] == 'OK'",
    );
    // (yes1's \Seen on u7's folder is yes1's own: Cyrus keeps it in
    // yes1's seen.db.)
    let before: Vec<String> = ["u7", "yes1"].iter().map(|u| uid_snapshot(cyrus.imap_port, u)).collect();
    // A damaged record in yes1's cyrus.index (UID 2: a byte of its
    // internal date, the checksum left as it was).
    let boxes = mumail::tools::cyrus_spool::mailboxes(&[d.path().join("cyrus/spool")]).unwrap();
    let yes1 = boxes.iter().find(|m| m.header.name == "user.yes1").unwrap();
    let ipath = yes1.dir.join("cyrus.index");
    let mut index = std::fs::read(&ipath).unwrap();
    let be32 = |at: usize| u32::from_be_bytes(index[at..at + 4].try_into().unwrap()) as usize;
    let (start, size) = (be32(12), be32(16));
    index[start + size + 6] ^= 0x40;
    std::fs::write(&ipath, &index).unwrap();
    let shared_before = uid_snapshot_of(cyrus.imap_port, "u7", "shared*");
    assert!(shared_before.contains("shared.news MESSAGES 1"), "{shared_before}");
    // UID 2 and 6 are expunged (their files stay, delayed expunge), UID 3
    // is \Deleted but not expunged.
    assert!(
        before[0].starts_with("INBOX MESSAGES 4 UIDNEXT 7 ") && !before[0].contains("\n   2 ") && !before[0].contains("\n   6 "),
        "{}",
        before[0]
    );
    let spool_files = std::fs::read_dir(d.path().join("cyrus/spool/uuid")).unwrap().count();
    assert!(spool_files > 0, "Cyrus 3.6 keeps mailboxes in uuid/ directories");

    let conf = d.path().join("cyrus/imapd.conf");
    let out = migrate_spool(&conf, ours.imap_port, &["-n"]);
    assert!(
        out.contains("summary: 3 users, 3 migrated, 0 failed, 8 messages to copy (dry run)"),
        "{out}"
    );
    let out = migrate_spool(&conf, ours.imap_port, &[]);
    assert!(out.contains("u7: 3 folders, 6 copied"), "{out}");
    // The damaged record is reported and left out, the rest is copied.
    assert!(
        out.contains("yes1: left out: user.yes1: UID 2: cyrus.index record checksum mismatch"),
        "{out}"
    );
    assert!(out.contains("yes1: 1 folders, 1 copied"), "{out}");
    assert!(out.contains("0 removed, 1 skipped"), "{out}");
    assert!(out.contains("(shared): 2 folders, 1 copied"), "{out}");
    assert_eq!(uid_snapshot(ours.imap_port, "u7"), before[0], "u7 differs after the migration");
    let seen_by = |user: &str| {
        as_user(
            ours.imap_port,
            user,
            "M.select('user.u7.Sent', readonly=True)\nprint(M.fetch('1', '(FLAGS)')[1])",
        )
    };
    let (yes1_view, u7_view) = (seen_by("yes1"), seen_by("u7"));
    assert!(yes1_view.contains("\\Seen"), "yes1's own \\Seen came along: {yes1_view}");
    assert!(!u7_view.contains("\\Seen") && u7_view.contains("\\Answered"), "{u7_view}");
    let yes1 = uid_snapshot(ours.imap_port, "yes1");
    let want: Vec<&str> = before[1].lines().filter(|l| !l.starts_with("   2 ")).collect();
    assert_eq!(
        yes1.replace("MESSAGES 1", "MESSAGES 2"),
        want.join("\n") + "\n",
        "yes1 has all but the damaged record"
    );
    assert_eq!(uid_snapshot_of(ours.imap_port, "u7", "shared*"), shared_before);
    // Cyrus's annotations.db (special use, METADATA, the owner's private
    // values under its placeholder) and the mailbox's cyrus.annotations
    // (RFC 5257) came along.
    let annotations = |port: u16| {
        as_user(
            port,
            "u7",
            "imaplib.Commands['GETMETADATA'] = ('AUTH', 'SELECTED')\n\
             print(M.list('\"\"', 'INBOX.Sent')[1])\n\
             print(M._simple_command('GETMETADATA', 'INBOX.Sent', '(/private/specialuse /private/comment /shared/comment)'), M._untagged_response('OK', [None], 'METADATA'))\n\
             M.select('INBOX.Sent', readonly=True)\n\
             print(M.fetch('1', '(ANNOTATION (/comment (value.priv value.shared)))')[1])",
        )
    };
    let (theirs, mine) = (annotations(cyrus.imap_port), annotations(ours.imap_port));
    assert_eq!(mine, theirs);
    // The quota root's limits, the X- resources too (Cyrus's quota file).
    let quota = as_user(ours.imap_port, "u7", "print(M.getquotaroot('INBOX'))");
    assert!(quota.contains("X-ANNOTATION-STORAGE 0 100 X-NUM-FOLDERS 3 10)"), "{quota}");
    for want in [
        "\\Sent",
        "/private/comment\" \"mine",
        "/shared/comment\" \"ours",
        "value.shared \"sc\" value.priv \"pc\"",
    ] {
        assert!(mine.contains(want), "{want}: {mine}");
    }
    // Nothing changed: a second pass copies, reflags and removes nothing.
    let out = migrate_spool(&conf, ours.imap_port, &[]);
    assert!(
        out.contains("u7: 3 folders, 0 copied (0 bytes), 0 reflagged, 0 removed, 0 skipped, 0 ACL entries, 0 subscriptions\n"),
        "{out}"
    );
    // A pass killed after a user's last mailbox but before their
    // subscriptions leaves every mailbox there and no subscription: the
    // next pass still brings them.
    let lsub = "print(sorted(M.lsub('\"\"', '*')[1]))";
    let subscribed = as_user(ours.imap_port, "u7", lsub);
    assert!(subscribed.contains("INBOX.Sent"), "{subscribed}");
    as_user(ours.imap_port, "u7", "assert M.unsubscribe('INBOX.Sent')[0] == 'OK'");
    assert!(!as_user(ours.imap_port, "u7", lsub).contains("INBOX.Sent"));
    let out = migrate_spool(&conf, ours.imap_port, &[]);
    assert!(
        out.contains("u7: 3 folders, 0 copied (0 bytes), 0 reflagged, 0 removed, 0 skipped, 0 ACL entries, 1 subscriptions\n"),
        "{out}"
    );
    assert_eq!(as_user(ours.imap_port, "u7", lsub), subscribed);

    // Changes at the old server before the final pass: a new message, a
    // flag change, an expunge.  The pass brings exactly those, the new
    // message under the source's UID.
    as_user(
        cyrus.imap_port,
        "u7",
        r#"
M.append('INBOX', '(\\Seen)', imaplib.Time2Internaldate(1500100000), b'Subject: late\r\n\r\nlate\r\n')
M.append('INBOX', '()', imaplib.Time2Internaldate(1500100100), b'Subject: gone\r\n\r\ngone\r\n')
M.select('INBOX')
M.uid('STORE', '1', '+FLAGS', '(\\Answered)')
M.uid('STORE', '8', '+FLAGS', '(\\Deleted)')
M.expunge()
"#,
    );
    let after = uid_snapshot(cyrus.imap_port, "u7");
    assert_ne!(after, before[0]);
    let out = migrate_spool(&conf, ours.imap_port, &[]);
    assert!(out.contains("u7: 3 folders, 1 copied"), "{out}");
    assert!(out.contains("1 reflagged, 1 removed, 0 skipped"), "{out}");
    assert_eq!(uid_snapshot(ours.imap_port, "u7"), after);

    // Ours goes on from the same UIDNEXT (past the source's last message,
    // UID 8, expunged there): the next message is UID 9.
    let next = as_user(
        ours.imap_port,
        "u7",
        "print(M.append('INBOX', '()', None, b'Subject: new\\r\\n\\r\\nz\\r\\n'))",
    );
    assert!(next.contains("APPENDUID") && next.contains(" 9]"), "{next}");
    // A different message under a UID the source then uses again is
    // refused, not mistaken for the source's.
    as_user(
        cyrus.imap_port,
        "u7",
        "M.append('INBOX', '()', imaplib.Time2Internaldate(1500200000), b'Subject: clash\\r\\n\\r\\nc\\r\\n')",
    );
    let d = format!("127.0.0.1:{}", ours.imap_port);
    let (code, text) = run_migrate(&spool_args(&conf, &d, &["u7"]));
    assert_eq!(code, Some(75), "{text}");
    assert!(
        text.contains("u7: failed") && text.contains("another message has this UID here"),
        "{text}"
    );
    drop(cyrus);
}

/// The generated corpus, at the source (as each user, password testpw):
/// nested folders, non-ASCII folder names (modified UTF-7), all system
/// flags and keywords, internal dates back to 1995, a 3 MB attachment for
/// every fifth user, subscriptions.
const CORPUS: &str = r#"
import imaplib, sys, random, base64
port, admin = int(sys.argv[1]), sys.argv[2] == '1'
random.seed(10)
FLAGS = ['\\Seen', '\\Answered', '\\Flagged', '\\Deleted', '\\Draft', '$Forwarded', '$Label1', 'Project-X']
FOLDERS = ['INBOX', 'Sent', 'Archive', 'Archive.2019', 'Archive.2019.Q1', 'Entw&APw-rfe', '&ZeVnLIqe-']
for ui, u in enumerate(sys.argv[3:]):
    M = imaplib.IMAP4('127.0.0.1', port)
    if admin:
        M.authenticate('PLAIN', lambda _: ('%s\0md5u\0testpw' % u).encode())
    else:
        M.login(u, 'testpw')
    for f in FOLDERS[1:]:
        assert M.create(f)[0] == 'OK', f
    for f in ['Sent', 'Archive.2019.Q1', 'Entw&APw-rfe']:
        assert M.subscribe(f)[0] == 'OK'
    for i in range(24):
        f = FOLDERS[i % len(FOLDERS)]
        flags = ' '.join(random.sample(FLAGS, random.randint(0, 4)))
        date = imaplib.Time2Internaldate(788918400 + random.randint(0, 10 ** 9))
        body = ('From: sender%d@example.org\r\nTo: %s@example.org\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= %d\r\n'
                'Message-ID: <%s.%d@example.org>\r\nMIME-Version: 1.0\r\n' % (i, u, i, u, i))
        if i == 5 and ui % 5 == 0:
            blob = base64.encodebytes(random.randbytes(3 << 20)).decode().replace('\n', '\r\n')
            body += ('Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n'
                     '--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n' + blob + '--b--\r\n')
        else:
            body += 'Content-Type: text/plain; charset=utf-8\r\n\r\nline %d\r\n' % i
        assert M.append(f, '(%s)' % flags, date, body.encode())[0] == 'OK'
    M.logout()
"#;

/// Writes the corpus for `users` (logging in as each, or as md5u for
/// each with `admin`).
fn corpus(port: u16, admin: bool, users: &[String]) {
    let mut args = vec![port.to_string(), (admin as u8).to_string()];
    args.extend(users.iter().cloned());
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    python(CORPUS, &a);
}

/// Each user's folders as the user sees them (names relative to the
/// personal namespace: `prefix` stripped), message by message: flags,
/// internal date, body digest.  `admin`: logged in as md5u for the user.
fn snapshots(port: u16, users: &[String], admin: bool, prefix: &str) -> String {
    let script = r#"
import imaplib, sys, hashlib, re
port, admin, prefix = int(sys.argv[1]), sys.argv[2] == '1', sys.argv[3]
for u in sys.argv[4:]:
    M = imaplib.IMAP4('127.0.0.1', port)
    if admin:
        M.authenticate('PLAIN', lambda _: ('%s\0md5u\0testpw' % u).encode())
    else:
        M.login(u, 'testpw')
    print('==', u)
    typ, boxes = M.list('""', '*')
    names = sorted(re.search(rb'\) "(.)" "?([^"]*)"?$', b).group(2).decode() for b in boxes if b and b'Noselect' not in b)
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
            date = re.search(r'INTERNALDATE "([^"]*)"', head).group(1).strip().zfill(26)
            rows.append('%s %s %s' % (date, ' '.join(flags), hashlib.sha1(d[1]).hexdigest()))
        print(mb[len(prefix):] if mb.startswith(prefix) else mb, len(rows))
        for r in sorted(rows):
            print('  ', r)
    print('lsub', sorted(re.search(rb'"([^"]*)"$|(\S+)$', b).group(0).decode().strip('"').replace(prefix, '', 1) for b in M.lsub('""', '*')[1] if b))
    M.logout()
"#;
    let mut args = vec![port.to_string(), (admin as u8).to_string(), prefix.to_string()];
    args.extend(users.iter().cloned());
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    python(script, &a)
}

/// From the real Dovecot 2.3 over IMAP into a murder through our front
/// end: 20 users, each landing on the back end MUPDATE names for them;
/// runs killed at random points and restarted end as an uninterrupted
/// one would (every message's bytes, flags, internal date and folder as
/// at the source, no duplicates); changes made at the source between two
/// runs arrive with the second.
#[test]
fn a_dovecot_site_moves_through_the_murder() {
    if !can_run("proxyd", &[]) {
        return;
    }
    if let Err(e) = harness::dovecot::Dovecot::available() {
        assert!(std::env::var("CI").is_err(), "dovecot: {e}");
        eprintln!("skipped: {e}");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let users: Vec<String> = (1..=20).map(|i| format!("dv{i:02}")).collect();
    let names: Vec<&str> = users.iter().map(String::as_str).collect();
    let dove = harness::dovecot::Dovecot::start(&t.path().join("dovecot"), &names).unwrap();
    corpus(dove.imap_port, false, &users);
    let source = snapshots(dove.imap_port, &users, false, "");
    assert!(
        source.contains("Entw&APw-rfe 3\n") && source.contains("Archive.2019.Q1 3\n"),
        "{source}"
    );
    assert!(
        source.contains("\\Deleted") && source.contains("Project-X") && source.contains("-1995 "),
        "{source}"
    );

    // The users' mailboxes are provisioned, half on each back end.
    let mu = Murder::start(t.path());
    for (i, u) in users.iter().enumerate() {
        let out = imap_admin(mu.backs[i / 10].imap_port, &[&format!("CREATE user.{u}")]);
        assert!(out.contains("-> OK"), "{out}");
    }
    let (_proxyd, fe) = mu.front("proxyd", &[]);
    let list: String = users.iter().map(|u| format!("{u} testpw\n")).collect();
    std::fs::write(t.path().join("users"), list).unwrap();
    let (src, dst) = (format!("127.0.0.1:{}", dove.imap_port), format!("127.0.0.1:{fe}"));
    let state = t.path().join("state");
    let userfile = t.path().join("users");
    let args = [
        "-s",
        &src,
        "-d",
        &dst,
        "-A",
        "md5u:testpw",
        "-u",
        userfile.to_str().unwrap(),
        "-S",
        state.to_str().unwrap(),
        "-P",
        "4",
    ];
    // Killed at several points, then run to the end.
    killed_runs(&args, &[120, 250, 400, 600]);
    let out = run_migrate_ok(&args);
    assert!(out.contains("summary: 20 users, 20 migrated, 0 failed"), "{out}");
    // (What the killed runs left to this one, for the log.)
    println!("{out}");
    let dest = snapshots(fe, &users, true, "INBOX.");
    assert_eq!(dest, source);
    // Each user is on the back end provisioned for them, and only there.
    assert!(inbox_count(mu.backs[0].imap_port, "user.dv01.Entw&APw-rfe").contains("'3'"));
    assert!(inbox_count(mu.backs[1].imap_port, "user.dv20.Archive.2019.Q1").contains("'3'"));
    assert!(inbox_count(mu.backs[1].imap_port, "user.dv01").contains("'NO'"));

    // Changes at the source while users work; the next run brings them.
    as_user(
        dove.imap_port,
        "dv03",
        r#"
M.append('Sent', '(\\Seen)', imaplib.Time2Internaldate(1700000000), b'Subject: new\r\n\r\nnew one\r\n')
M.select('INBOX')
M.store('1', 'FLAGS', '(\\Answered $Label1)')
M.store('2', '+FLAGS', '(\\Deleted)')
M.expunge()
"#,
    );
    let source = snapshots(dove.imap_port, &users, false, "");
    let out = run_migrate_ok(&args);
    assert!(out.contains("dv03: 7 folders, 1 copied"), "{out}");
    assert!(out.contains("dv04: 7 folders, 0 copied (0 bytes), 0 reflagged, 0 removed"), "{out}");
    assert_eq!(snapshots(fe, &users, true, "INBOX."), source);
}

/// Sets a file's modification time (a Maildir message's internal date).
fn touch(p: &std::path::Path, secs: u64) {
    let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    std::fs::File::options().write(true).open(p).unwrap().set_modified(t).unwrap();
}

/// From a user's Maildir++ tree and another's mbox files into our back
/// end: folders (nested, non-ASCII), flags and keywords (Maildir letters
/// and dovecot-keywords; mbox Status, X-Status, X-Keywords), internal
/// dates (file times; From lines), bodies as sent (CRLF, mbox status
/// headers removed, `>From ` unquoted), subscriptions; a truncated Maildir
/// file and broken mbox separators are reported per message and the rest
/// is copied; a second run copies nothing, and changes to the files
/// between runs arrive with the next.
#[test]
fn maildir_and_mbox_sources() {
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(d.path().join("ours")).unwrap();
    let ns = "unixhierarchysep: no\naltnamespace: no\n";
    let ours = Backend::start(&d.path().join("ours"), ns);
    let created = murder_admin(ours.imap_port, &["CREATE user.u7", "CREATE user.yes1"]);
    assert_eq!(created.matches("-> OK").count(), 2, "{created}");
    let dst = format!("127.0.0.1:{}", ours.imap_port);
    let state = d.path().join("state");

    // u7's Maildir++.
    let md = d.path().join("maildir/u7");
    for sub in [
        "cur",
        "new",
        "tmp",
        ".Sent/cur",
        ".Sent/new",
        ".Archive.2019/cur",
        ".Entw&APw-rfe/cur",
    ] {
        std::fs::create_dir_all(md.join(sub)).unwrap();
    }
    std::fs::write(md.join("dovecot-keywords"), "0 $Work\n1 Later\n").unwrap();
    // Keyword letters are per folder.
    std::fs::write(md.join(".Archive.2019/dovecot-keywords"), "0 Urgent\n1 Later\n").unwrap();
    std::fs::write(md.join("subscriptions"), "V\t2\n\nSent\nEntw&APw-rfe\n").unwrap();
    let file = |rel: &str, body: &str, secs: u64| {
        std::fs::write(md.join(rel), body).unwrap();
        touch(&md.join(rel), secs);
    };
    file("cur/1000.M1.host,S=19:2,RSa", "Subject: one\n\nbody\n", 1_000_000_000);
    file("new/1001.M2.host", "Subject: two\r\n\r\nnew\r\n", 1_000_000_100);
    file(".Sent/cur/1002.M3.host:2,S", "Subject: sent\n\nout\n", 900_000_000);
    file(".Archive.2019/cur/1003.M4.host,S=5000:2,T", "Subject: cut off\n", 1_100_000_000);
    file(".Archive.2019/cur/1004.M5.host:2,Fb", "Subject: kept\n\nold\n", 1_200_000_000);
    file(".Entw&APw-rfe/cur/1005.M6.host:2,D", "Subject: draft\n\nd\n", 1_300_000_000);
    let md_pat = d.path().join("maildir/%u");
    let md_args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "-M",
            md_pat.to_str().unwrap(),
            "-d",
            &dst,
            "-A",
            "md5u:testpw",
            "-S",
            state.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a.push("u7".into());
        a
    };
    let run = |args: Vec<String>| {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        run_migrate_ok(&a)
    };
    let out = run(md_args(&[]));
    assert!(
        out.contains("u7: left out: Archive/2019: 1003.M4.host,S=5000:2,T: truncated (17 of 5000 bytes)"),
        "{out}"
    );
    assert!(out.contains("u7: 4 folders, 5 copied"), "{out}");
    assert!(out.contains(" 1 skipped, 0 ACL entries, 2 subscriptions"), "{out}");
    let snap = snapshots(ours.imap_port, &["u7".to_string()], false, "INBOX.");
    let sha = |s: &str| {
        python("import hashlib,sys\nprint(hashlib.sha1(sys.argv[1].encode()).hexdigest())", &[s])
            .trim()
            .to_string()
    };
    for want in [
        format!(
            "INBOX 2\n   09-Sep-2001 01:46:40 +0000 $Work \\Answered \\Seen {}\n",
            sha("Subject: one\r\n\r\nbody\r\n")
        ),
        format!("   09-Sep-2001 01:48:20 +0000  {}\n", sha("Subject: two\r\n\r\nnew\r\n")),
        format!(
            "Sent 1\n   09-Jul-1998 16:00:00 +0000 \\Seen {}\n",
            sha("Subject: sent\r\n\r\nout\r\n")
        ),
        format!(
            "Archive.2019 1\n   10-Jan-2008 21:20:00 +0000 Later \\Flagged {}\n",
            sha("Subject: kept\r\n\r\nold\r\n")
        ),
        "Entw&APw-rfe 1\n".to_string(),
        "lsub ['Entw&APw-rfe', 'Sent']".to_string(),
    ] {
        assert!(snap.contains(&want), "want {want:?} in\n{snap}");
    }
    assert!(run(md_args(&[])).contains("u7: 4 folders, 0 copied (0 bytes), 0 reflagged, 0 removed, 1 skipped"));
    // Changes in the files: one new, one reflagged, one gone.
    file("cur/1006.M7.host:2,", "Subject: three\n\nlater\n", 1_400_000_000);
    std::fs::rename(md.join("cur/1000.M1.host,S=19:2,RSa"), md.join("cur/1000.M1.host,S=19:2,FRS")).unwrap();
    std::fs::remove_file(md.join(".Sent/cur/1002.M3.host:2,S")).unwrap();
    let out = run(md_args(&[]));
    assert!(out.contains("u7: 4 folders, 1 copied"), "{out}");
    assert!(out.contains("1 reflagged, 1 removed"), "{out}");
    let snap = snapshots(ours.imap_port, &["u7".to_string()], false, "INBOX.");
    assert!(
        snap.contains("INBOX 3\n   09-Sep-2001 01:46:40 +0000 \\Answered \\Flagged \\Seen"),
        "{snap}"
    );
    assert!(snap.contains("Sent 0\n"), "{snap}");

    // yes1's mbox files: the inbox in a spool file, folders in a directory.
    let mb = d.path().join("mbox/yes1");
    std::fs::create_dir_all(mb.join("Archive")).unwrap();
    std::fs::create_dir_all(d.path().join("spool")).unwrap();
    std::fs::write(
        d.path().join("spool/yes1"),
        "From MAILER-DAEMON Mon Jan  1 00:00:00 2001\nSubject: DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA\nX-IMAP: 1 2\n\nint\n\n\
         From a@example.org Tue Feb  6 10:00:00 2001\nSubject: hi\nStatus: RO\nX-Status: AF\nX-Keywords: $Work\nContent-Length: 30\n\nhello\n>From the past\n>>From deeper\n",
    )
    .unwrap();
    std::fs::write(
        mb.join("Archive/2019"),
        "garbage line\n\nFrom a@example.org Wed Mar  7 11:00:00 2001\nSubject: first\n\none\n\nFrom this line on it is text\n\n\
         From b@example.org Thu Mar  8 12:00:00 2001\nSubject: second\nStatus: O\n\ntwo\n",
    )
    .unwrap();
    std::fs::write(mb.join(".subscriptions"), "Archive/2019\n").unwrap();
    let (mb_pat, spool_pat) = (d.path().join("mbox/%u"), d.path().join("spool/%u"));
    let args = [
        "-m",
        mb_pat.to_str().unwrap(),
        "-i",
        spool_pat.to_str().unwrap(),
        "-d",
        &dst,
        "-A",
        "md5u:testpw",
        "-S",
        state.to_str().unwrap(),
        "yes1",
    ];
    let out = run_migrate_ok(&args);
    assert!(
        out.contains("yes1: left out: Archive/2019: 13 bytes before the first From line left out"),
        "{out}"
    );
    assert!(
        out.contains("yes1: left out: Archive/2019: line 8: a From line without a date, kept as text of the message before"),
        "{out}"
    );
    assert!(out.contains("yes1: 2 folders, 3 copied"), "{out}");
    let snap = snapshots(ours.imap_port, &["yes1".to_string()], false, "INBOX.");
    for want in [
        format!(
            "Archive.2019 2\n   07-Mar-2001 11:00:00 +0000  {}\n",
            sha("Subject: first\r\n\r\none\r\n\r\nFrom this line on it is text\r\n")
        ),
        format!("   08-Mar-2001 12:00:00 +0000  {}\n", sha("Subject: second\r\n\r\ntwo\r\n")),
        format!(
            "INBOX 1\n   06-Feb-2001 10:00:00 +0000 $Work \\Answered \\Flagged \\Seen {}\n",
            sha("Subject: hi\r\n\r\nhello\r\nFrom the past\r\n>From deeper\r\n")
        ),
        "lsub ['Archive.2019']".to_string(),
    ] {
        assert!(snap.contains(&want), "want {want:?} in\n{snap}");
    }
    assert!(run_migrate_ok(&args).contains("yes1: 2 folders, 0 copied (0 bytes), 0 reflagged, 0 removed"));
}

/// From the real Cyrus 3.6 with the same 20-user corpus, twice: over IMAP
/// into one of our back ends, and from its spool files into a Murder of
/// ours through its front end (runs killed at several points, then one
/// to the end); the checker finds every message of every folder (and
/// every subscription) as at the source, and the spool copy keeps each
/// folder's UIDVALIDITY, UIDNEXT and UIDs.  Users a first pass put on
/// the second back end get their later changes there (the front end
/// names their back end); new users land where the front end places
/// them.
#[test]
fn a_cyrus_site_moves_over_imap_and_from_its_spool() {
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let ns = "unixhierarchysep: no\naltnamespace: yes\n";
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    let over_imap = Backend::start(&a, ns);
    for p in [&a, &a.join("sasl")] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let cyrus = CyrusServer::start(&d.path().join("cyrus"), &a.join("sasl/mux"), ns);
    let users: Vec<String> = (1..=20).map(|i| format!("cy{i:02}")).collect();
    let creates: Vec<String> = users.iter().map(|u| format!("CREATE user.{u}")).collect();
    let c: Vec<&str> = creates.iter().map(String::as_str).collect();
    for port in [cyrus.imap_port, over_imap.imap_port] {
        let out = murder_admin(port, &c);
        assert_eq!(out.matches("-> OK").count(), 20, "{out}");
    }
    corpus(cyrus.imap_port, true, &users);
    let source = snapshots(cyrus.imap_port, &users, true, "");
    assert!(
        source.contains("Entw&APw-rfe 3\n") && source.contains("Archive.2019.Q1 3\n"),
        "{source}"
    );
    let uids = |port: u16| -> String { users.iter().map(|u| uid_snapshot_of_as(port, u, "*")).collect() };

    let list: String = users.iter().map(|u| format!("{u}\n")).collect();
    std::fs::write(d.path().join("users"), list).unwrap();
    let userfile = d.path().join("users");
    let (src, dst) = (
        format!("127.0.0.1:{}", cyrus.imap_port),
        format!("127.0.0.1:{}", over_imap.imap_port),
    );
    let state = d.path().join("state");
    let out = run_migrate_ok(&[
        "-s",
        &src,
        "-d",
        &dst,
        "-a",
        "md5u:testpw",
        "-A",
        "md5u:testpw",
        "-u",
        userfile.to_str().unwrap(),
        "-S",
        state.to_str().unwrap(),
    ]);
    assert!(
        out.contains("summary: 20 users, 20 migrated, 0 failed, 480 messages copied"),
        "{out}"
    );
    assert_eq!(snapshots(over_imap.imap_port, &users, true, ""), source);

    // From the spool into a Murder: first five users straight into its
    // second back end (which tells the MUPDATE master)...
    std::fs::create_dir_all(&b).unwrap();
    let mu = Murder::start(&b);
    let (_proxyd, fe) = mu.front("proxyd", &[]);
    SERVICES.with(|s| *s.borrow_mut() = Some(mu.services.clone()));
    let conf = d.path().join("cyrus/imapd.conf");
    let first: String = users[..5].iter().map(|u| format!("{u}\n")).collect();
    std::fs::write(d.path().join("first"), first).unwrap();
    let firstfile = d.path().join("first");
    let back2 = format!("127.0.0.1:{}", mu.backs[1].imap_port);
    let out = run_migrate_ok(&spool_args(&conf, &back2, &["-u", firstfile.to_str().unwrap()]));
    assert!(out.contains("summary: 5 users, 5 migrated, 0 failed"), "{out}");
    // ... then a change at the source, and every user through the front
    // end, killed at several points first, then to the end.
    python(
        &format!(
            "import imaplib, sys\nM = imaplib.IMAP4('127.0.0.1', int(sys.argv[1]))\n\
             M.authenticate('PLAIN', lambda _: b'cy01\\0md5u\\0testpw')\n{}\n",
            r"M.append('INBOX', '(\Flagged)', imaplib.Time2Internaldate(1600000000), b'Subject: late\r\n\r\nlate\r\n')"
        ),
        &[&cyrus.imap_port.to_string()],
    );
    let source = snapshots(cyrus.imap_port, &users, true, "");
    let source_uids = uids(cyrus.imap_port);
    let dst = format!("127.0.0.1:{fe}");
    let args = spool_args(&conf, &dst, &["-u", userfile.to_str().unwrap()]);
    killed_runs(&args, &[80, 200, 400]);
    let out = run_migrate_ok(&args);
    assert!(out.contains("summary: 20 users, 20 migrated, 0 failed"), "{out}");
    assert_eq!(snapshots(fe, &users, true, "INBOX."), source);
    let no_prefix = |s: String| s.replace("\nINBOX.", "\n");
    assert_eq!(no_prefix(uids(fe)), source_uids);
    // cy01 stayed on the second back end, with its new message; the new
    // users went to the first, where the front end places them.
    let at_source = uid_snapshot_of_as(cyrus.imap_port, "cy01", "*");
    assert_eq!(no_prefix(uid_snapshot_of_as(mu.backs[1].imap_port, "cy01", "*")), at_source);
    assert!(inbox_count(mu.backs[0].imap_port, "user.cy01").contains("'NO'"));
    assert!(inbox_count(mu.backs[0].imap_port, "user.cy06").contains("'OK'"));
    assert!(inbox_count(mu.backs[1].imap_port, "user.cy06").contains("'NO'"));
    drop(cyrus);
}

/// As `uid_snapshot_of`, logged in as md5u for the user.
fn uid_snapshot_of_as(port: u16, user: &str, pattern: &str) -> String {
    let script = r#"
import imaplib, sys, hashlib, re
M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1]))
M.authenticate('PLAIN', lambda _: ('%s\0md5u\0testpw' % sys.argv[2]).encode())
typ, boxes = M.list('""', sys.argv[3])
names = sorted(re.search(rb'\) "(.)" "?([^"]*)"?$', b).group(2).decode() for b in boxes if b)
print('==', sys.argv[2])
for mb in names:
    typ, st = M.status('"%s"' % mb, '(UIDVALIDITY UIDNEXT MESSAGES)')
    print(mb, re.search(rb'\((.*)\)', st[0]).group(1).decode())
    M.select('"%s"' % mb, readonly=True)
    typ, data = M.uid('FETCH', '1:*', '(UID FLAGS)')
    for d in data:
        if d:
            head = d.decode() if isinstance(d, bytes) else d[0].decode()
            uid = re.search(r'UID (\d+)', head).group(1)
            flags = sorted(f for f in re.search(r'FLAGS \(([^)]*)\)', head).group(1).split() if f != '\\Recent')
            print('  ', uid, ' '.join(flags))
"#;
    python(script, &[&port.to_string(), user, pattern])
}

/// Uploads Sieve scripts through a ManageSieve server (argv: port, then
/// name=script pairs; the first is made active).
const PUT_SCRIPTS: &str = r#"
import socket, sys, base64
s = socket.create_connection(('127.0.0.1', int(sys.argv[1]))); f = s.makefile('rb')
def upto():
    while True:
        l = f.readline()
        if not l or l[:2] in (b'OK', b'NO', b'BY'): return l
upto()
s.sendall(b'AUTHENTICATE "PLAIN" "' + base64.b64encode(b'\0u7\0testpw') + b'"\r\n'); assert upto().startswith(b'OK')
for i, pair in enumerate(sys.argv[2:]):
    name, src = pair.split('=', 1)
    src = src.encode()
    s.sendall(b'PUTSCRIPT "%s" {%d+}\r\n%s\r\n' % (name.encode(), len(src), src)); print(name, upto())
    if i == 0:
        s.sendall(b'SETACTIVE "%s"\r\n' % name.encode()); print('active', upto())
"#;

/// Sieve scripts move with the mail (`-K`): from a real Cyrus 3.6 spool,
/// where they are messages of the user's `#sieve` folder (which is not
/// copied as a folder), and over ManageSieve from the running Cyrus
/// (`-k`); the active one stays active, and one our lmtpd could not run
/// (it requires `vnd.cyrus.jmapquery`) is reported and left out.
#[test]
fn sieve_scripts_move_with_the_mail() {
    let d = tempfile::tempdir().unwrap();
    let (mut ours, cyrus) = ours_and_cyrus(d.path(), "unixhierarchysep: no\naltnamespace: no\n");
    let sport = ours.start_timsieved();
    assert!(murder_admin(cyrus.imap_port, &["CREATE user.u7"]).contains("-> OK"));
    let main = "require [\"fileinto\", \"vacation\"];\r\nif header :contains \"subject\" \"list\" { fileinto \"INBOX.lists\"; }\r\nvacation :days 3 \"away\";\r\n";
    let out = python(
        PUT_SCRIPTS,
        &[
            &cyrus.sieve_port.to_string(),
            &format!("main={main}"),
            "other=stop;\r\n",
            "fancy=require \"vnd.cyrus.jmapquery\";\r\nif jmapquery \"{\\\"hasAttachment\\\": true}\" { keep; }\r\n",
        ],
    );
    assert_eq!(out.matches("b'OK\\r\\n'").count(), 4, "{out}");
    let conf = d.path().join("cyrus/imapd.conf");
    let to = format!("127.0.0.1:{sport}");
    let ud = ours.dir.join("sieve/u/u7");
    let check = |out: &str| {
        assert!(out.contains("u7: left out: sieve script fancy: NO"), "{out}");
        assert!(out.contains(", 2 sieve scripts\n"), "{out}");
        assert_eq!(std::fs::read_to_string(ud.join("main.script")).unwrap(), main);
        assert_eq!(std::fs::read_to_string(ud.join("other.script")).unwrap(), "stop;\r\n");
        assert!(!ud.join("fancy.script").exists());
        assert_eq!(std::fs::read_link(ud.join("defaultbc")).unwrap(), std::path::Path::new("main.bc"));
    };
    let out = migrate_spool(&conf, ours.imap_port, &["-K", &to, "u7"]);
    check(&out);
    let folders = as_user(ours.imap_port, "u7", "print(M.list()[1])");
    assert!(!folders.contains("sieve"), "{folders}");
    // Over ManageSieve from the running server.
    std::fs::remove_dir_all(&ud).unwrap();
    let from = format!("127.0.0.1:{}", cyrus.sieve_port);
    let out = migrate(cyrus.imap_port, ours.imap_port, &d.path().join("state"), &["-k", &from, "-K", &to]);
    check(&out);
}
