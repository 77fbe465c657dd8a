//! Delayed expunge and delete as Cyrus 3.x does them, and the tools
//! around them, run as an admin would: `unexpunge`, `cyr_expire` (-X,
//! -D, -E and the `expire` annotation), `ipurge`, `ctl_mboxlist -d/-u`,
//! `cyr_deny`, `mbexamine`; `group:` ACLs and `defaultacl`.  Every result
//! is checked over IMAP with Python's imaplib.

mod harness;
use harness::*;
use std::process::Command;

fn tool(name: &str, conf: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let o = Command::new(bin(name)).arg("-C").arg(conf).args(args).output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

/// Runs a Python snippet with an imaplib connection `M` for `user`.
fn imap(port: u16, user: &str, body: &str) -> String {
    let script = format!(
        "import imaplib, sys, time, json\nimaplib.Commands['SETMETADATA'] = ('AUTH', 'SELECTED')\nM = imaplib.IMAP4('127.0.0.1', {port}); M.login('{user}', 'testpw')\n{body}\nM.logout()\n"
    );
    python(&script, &[])
}

fn files(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().to_string()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn delayed_expunge_unexpunge_and_cyr_expire() {
    if !can_run("delayed expunge", &["/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let b = Backend::start(d.path(), "");
    let conf = b.conf.clone();
    let out = imap(
        b.imap_port,
        "u7",
        "M.create('Sub')\n\
         for i in range(3): M.append('Sub', '(\\\\Flagged)' if i == 0 else None, None, b'Subject: t%d\\r\\nDate: Mon, 2 Nov 2026 10:00:00 +0000\\r\\n\\r\\nbody %d\\r\\n' % (i, i))\n\
         M.select('Sub'); M.store('1:2', '+FLAGS', '\\\\Deleted'); print('EXP', M.expunge())",
    );
    assert!(out.contains("EXP ('OK', [b'1', b'1'])"), "{out}");
    // Delayed (the default): the files stay beside their tombstones.
    let dir = d.path().join("spool/u/user/u7/Sub");
    assert_eq!(files(&dir), vec!["1.", "2.", "3."]);
    let (rc, o, e) = tool("unexpunge", &conf, &["-l", "user/u7/Sub"]);
    assert_eq!(rc, 0, "{e}");
    assert!(
        o.contains("UID: 1\n") && o.contains("UID: 2\n") && o.contains("Subj: \"t1\""),
        "{o}"
    );
    assert!(!o.contains("UID: 3\n"), "{o}");
    // reconstruct leaves kept files alone.
    let (_, o, _) = tool("reconstruct", &conf, &["-n", "user/u7/Sub"]);
    assert!(!o.contains("removed"), "{o}");
    // -u restores under a new UID with -d (no \Deleted) and -f's flag.
    let (rc, o, e) = tool("unexpunge", &conf, &["-v", "-d", "-f", "restored", "-u", "user/u7/Sub", "1"]);
    assert_eq!(rc, 0, "{e}");
    assert!(o.contains("restored 1 expunged messages"), "{o}");
    let out = imap(
        b.imap_port,
        "u7",
        "M.select('Sub'); print('F', M.uid('FETCH', '1:*', '(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])'))",
    );
    assert!(out.contains("\\\\Flagged restored) UID 4 ") && out.contains("Subject: t0"), "{out}");
    assert!(!out.contains("UID 1 ") && !out.contains("(UID 1 "), "{out}");
    // cyr_expire -X 0 removes what is left of expunged files.
    let (rc, _, e) = tool("cyr_expire", &conf, &["-v", "-X", "0"]);
    assert_eq!(rc, 0, "{e}");
    assert!(e.contains("Expunging deleted messages in mailboxes older than 0.00 days"), "{e}");
    assert!(e.contains("expunged 1 out of"), "{e}");
    assert_eq!(files(&dir), vec!["3.", "4."]);
    let (_, o, _) = tool("unexpunge", &conf, &["-l", "user/u7/Sub"]);
    assert!(o.is_empty(), "{o}");
    // Bad usage: no mode, two modes.
    assert_eq!(tool("unexpunge", &conf, &["user/u7/Sub"]).0, 64);
    assert_eq!(tool("unexpunge", &conf, &["-a", "-l", "user/u7/Sub"]).0, 64);
    let (rc, _, e) = tool("cyr_expire", &conf, &[]);
    assert_eq!(rc, 64);
    assert!(e.contains("Missing arguments."), "{e}");

    // expunge_mode: immediate removes files at EXPUNGE.
    let d2 = tempfile::tempdir().unwrap();
    let b2 = Backend::start(d2.path(), "expunge_mode: immediate\n");
    imap(
        b2.imap_port,
        "u7",
        "M.create('Sub'); M.append('Sub', None, None, b'Subject: x\\r\\n\\r\\nx\\r\\n')\n\
         M.select('Sub'); M.store('1', '+FLAGS', '\\\\Deleted'); M.expunge()",
    );
    assert!(files(&d2.path().join("spool/u/user/u7/Sub")).is_empty());
}

#[test]
fn delayed_delete_and_expire_annotation() {
    if !can_run("delayed delete", &["/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let b = Backend::start(d.path(), "");
    let conf = b.conf.clone();
    let out = imap(
        b.imap_port,
        "u7",
        "M.create('Gone'); M.create('Gone/Child'); M.append('Gone', None, None, b'Subject: g\\r\\n\\r\\ng\\r\\n')\n\
         print('Q1', M.getquotaroot('INBOX'))\n\
         print('DEL0', M.delete('Gone')); M.rename('Gone/Child', 'Child')\n\
         print('DEL', M.delete('Gone')); print('L', M.list())\n\
         print('SEL', M.select('DELETED/user/u7/Gone'))",
    );
    // With children it stays (Cyrus 3.6 with delayed delete).
    assert!(
        out.contains("DEL0 ('NO', [b'[HASCHILDREN] Mailbox has inferior hierarchical names'])"),
        "{out}"
    );
    assert!(out.contains("DEL ('OK'"), "{out}");
    assert!(!out.contains("\"Gone\"") && out.contains(" Child'"), "{out}");
    assert!(out.contains("SEL ('NO'"), "{out}");
    // The admin sees it under DELETED with its message (once the ACL
    // lets it read, as in Cyrus); the user's quota no longer counts it.
    let out = imap(
        b.imap_port,
        "md5u",
        "typ, l = M.list('\"\"', 'DELETED/*'); print('L', l)\n\
         name = l[-1].decode().split(' ')[-1]; print('S0', M.status(name, '(MESSAGES)'))\n\
         M.setacl(name, 'md5u', 'lr'); print('S', M.status(name, '(MESSAGES)'))",
    );
    assert!(out.contains("S0 ('NO', [b'Permission denied'])"), "{out}");
    assert!(out.contains("DELETED/user/u7/Gone/"), "{out}");
    assert!(out.contains("(MESSAGES 1)"), "{out}");
    let (rc, _, e) = tool("cyr_expire", &conf, &["-v", "-D", "1d"]);
    assert_eq!(rc, 0, "{e}");
    assert!(e.contains("Removed 0 deleted mailboxes"), "{e}");
    let (rc, _, e) = tool("cyr_expire", &conf, &["-v", "-D", "0"]);
    assert_eq!(rc, 0, "{e}");
    assert!(
        e.contains("Removing: DELETED.user.u7.Gone.") && e.contains("Removed 1 deleted mailboxes"),
        "{e}"
    );
    let out = imap(b.imap_port, "md5u", "print('L', M.list('\"\"', 'DELETED/*'))");
    assert!(out.contains("L ('OK', [None])"), "{out}");

    // The expire annotation (cyradm's mboxconfig … expire): messages
    // older than it go at the next cyr_expire run, flagged ones stay,
    // and the children inherit it.
    let out = imap(
        b.imap_port,
        "u7",
        "M.create('Lists'); M.create('Lists/a')\n\
         old = imaplib.Time2Internaldate(time.time() - 5 * 86400)\n\
         M.append('Lists/a', None, old, b'Subject: old\\r\\n\\r\\nx\\r\\n')\n\
         M.append('Lists/a', '(\\\\Flagged)', old, b'Subject: kept\\r\\n\\r\\nx\\r\\n')\n\
         M.append('Lists/a', None, None, b'Subject: new\\r\\n\\r\\nx\\r\\n')\n\
         print('SET', M._simple_command('SETMETADATA', 'Lists', '(/shared/vendor/cmu/cyrus-imapd/expire \"2\")'))",
    );
    assert!(out.contains("SET ('OK'"), "{out}");
    let out = imap(
        b.imap_port,
        "u7",
        "print('BAD', M._simple_command('SETMETADATA', 'Lists', '(/shared/vendor/cmu/cyrus-imapd/expire \"soon\")'))",
    );
    assert!(out.contains("BAD ('NO'"), "{out}");
    let (rc, _, e) = tool("cyr_expire", &conf, &["-E", "3"]);
    assert_eq!(rc, 0, "{e}");
    let out = imap(
        b.imap_port,
        "u7",
        "M.select('Lists/a'); print('S', M.fetch('1:*', '(BODY.PEEK[HEADER.FIELDS (SUBJECT)])'))",
    );
    assert!(out.contains("kept") && out.contains("new") && !out.contains("old"), "{out}");
}

#[test]
fn ipurge_ctl_mboxlist_cyr_deny_mbexamine() {
    if !can_run("cyrus admin tools", &["/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let b = Backend::start(d.path(), "");
    let conf = b.conf.clone();
    imap(
        b.imap_port,
        "md5u",
        "M.create('news'); M.setacl('news', 'md5u', 'lrswipkxtecdan')\n\
         M.append('news', None, None, b'Subject: small\\r\\n\\r\\nx\\r\\n')\n\
         M.append('news', None, None, b'Subject: big\\r\\n\\r\\n' + b'y' * 5000 + b'\\r\\n')\n\
         M.create('user/u7'); M.create('user/u7/Big'); M.setacl('user/u7/Big', 'md5u', 'lrswipkxtecdan')\n\
         M.append('user/u7/Big', None, None, b'Subject: big\\r\\n\\r\\n' + b'y' * 5000 + b'\\r\\n')",
    );
    // A new shared mailbox gets defaultacl (anyone lrs).
    let out = imap(b.imap_port, "u7", "print('A', M.myrights('\"Shared Folders/news\"'))");
    assert!(out.contains("\"Shared Folders/news\" lrs"), "{out}");
    // Dry run, then the real thing; user mailboxes only with -f.
    let (rc, o, e) = tool("ipurge", &conf, &["-n", "-b", "1000", "news"]);
    assert_eq!(rc, 0, "{e}");
    assert!(o.contains("Working on news...") && o.contains("Deleted messages  \t\t 1"), "{o}");
    let (_, o, _) = tool("ipurge", &conf, &["-k", "1"]);
    assert!(o.contains("Working on news...") && !o.contains("user.u7.Big"), "{o}");
    let (_, o, _) = tool("ipurge", &conf, &["-f", "-k", "1", "user/u7/Big"]);
    assert!(
        o.contains("Working on user.u7.Big...") && o.contains("Remaining messages\t\t 0"),
        "{o}"
    );
    let out = imap(
        b.imap_port,
        "md5u",
        "print('N', M.status('news', '(MESSAGES)')); print('B', M.status('user/u7/Big', '(MESSAGES)'))",
    );
    assert!(
        out.contains("news (MESSAGES 1)") && out.contains("user/u7/Big (MESSAGES 0)"),
        "{out}"
    );
    assert_eq!(tool("ipurge", &conf, &["news"]).0, 64);

    // mbexamine shows the index with the expunged records.
    let (rc, o, e) = tool("mbexamine", &conf, &["news"]);
    assert_eq!(rc, 0, "{e}");
    assert!(
        o.contains("Examining news...") && o.contains("Number of Messages: 1") && o.contains("EXPUNGED"),
        "{o}"
    );

    // ctl_mboxlist -d: Cyrus 3.6's JSON; -u into a fresh server keeps
    // the uniqueid and UIDVALIDITY.
    let (rc, dump, e) = tool("ctl_mboxlist", &conf, &["-d"]);
    assert_eq!(rc, 0, "{e}");
    let check = python(
        "import json, sys\nd = json.loads(sys.argv[1])\nprint(sorted(d)); e = d['user.u7.Big']\nprint(e['partition'], e['acl']['u7'], e['uidvalidity'], e['uniqueid'])\n",
        &[&dump],
    );
    assert!(check.contains("'news'") && check.contains("default lrswipkxtecdan"), "{check}");
    let status = |port: u16, name: &str| imap(port, "md5u", &format!("print(M.status('{name}', '(UIDVALIDITY)'))"));
    let uv = status(b.imap_port, "user/u7/Big");
    let d2 = tempfile::tempdir().unwrap();
    let b2 = Backend::start(d2.path(), "");
    std::fs::write(d2.path().join("dump"), &dump).unwrap();
    let (rc, _, e) = tool("ctl_mboxlist", &b2.conf, &["-u", "-f", d2.path().join("dump").to_str().unwrap()]);
    assert_eq!(rc, 0, "{e}");
    assert_eq!(status(b2.imap_port, "user/u7/Big"), uv);
    let (_, dump2, _) = tool("ctl_mboxlist", &b2.conf, &["-d"]);
    assert!(dump2.contains(
        dump.lines()
            .find(|l| l.contains("\"user.u7.Big\""))
            .unwrap()
            .split("\"uniqueid\"")
            .nth(1)
            .unwrap()
    ));
    std::fs::write(d2.path().join("bad"), "{\"x\": ").unwrap();
    assert_eq!(
        tool("ctl_mboxlist", &b2.conf, &["-u", "-f", d2.path().join("bad").to_str().unwrap()]).0,
        65
    );

    // cyr_deny: yes1 is refused by imapd with the message; -a lets in.
    let (rc, _, e) = tool("cyr_deny", &conf, &["-s", "imap", "-m", "moved to the new server", "yes1"]);
    assert_eq!(rc, 0, "{e}");
    let (_, o, _) = tool("cyr_deny", &conf, &["-l"]);
    assert!(
        o.starts_with("Username                       Service(s)           Message\n"),
        "{o}"
    );
    assert!(
        o.contains("yes1                           imap                 moved to the new server"),
        "{o}"
    );
    let out = python(
        &format!("import imaplib\nM = imaplib.IMAP4('127.0.0.1', {})\ntry:\n  M.login('yes1', 'testpw'); print('IN')\nexcept Exception as e: print('REFUSED', e)\n", b.imap_port),
        &[],
    );
    assert!(out.contains("REFUSED") && out.contains("moved to the new server"), "{out}");
    tool("cyr_deny", &conf, &["-a", "yes1"]);
    imap(b.imap_port, "yes1", "print('in')");
}

#[test]
fn group_identifiers_in_acls() {
    if !can_run("group ACLs", &["/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let b = Backend::start(d.path(), "");
    // An imapd that sees the test users and a group holding yes1.
    let mut group = std::fs::read_to_string("/etc/group").unwrap();
    group.push_str("mailstaff:x:31000:yes1\n");
    std::fs::write(d.path().join("group"), group).unwrap();
    let mut binds = private_accounts(d.path());
    binds.push((d.path().join("group"), "/etc/group"));
    let port = free_port();
    let log = std::fs::File::create(d.path().join("imapd-ns.log")).unwrap();
    let mut cmd = in_namespace(
        &binds,
        &bin("imapd"),
        &["-C", b.conf.to_str().unwrap(), "-L", &format!("127.0.0.1:{port}")],
    );
    cmd.stdout(log.try_clone().unwrap()).stderr(log);
    let _imapd = Proc::spawn("imapd in namespace", &mut cmd);
    wait_tcp(port);
    let out = imap(
        port,
        "u7",
        "M.create('Team')\n\
         print('G', M.setacl('Team', 'group:mailstaff', 'lrs'))\n\
         print('X', M.setacl('Team', 'group:nosuchgroup', 'lrs'))\n\
         M.append('Team', None, None, b'Subject: team\\r\\n\\r\\nx\\r\\n')",
    );
    assert!(
        out.contains("G ('OK'") && out.contains("X ('NO', [b'Invalid identifier'])"),
        "{out}"
    );
    let out = imap(
        port,
        "yes1",
        "print('S', M.select('\"Other Users/u7/Team\"', readonly=True)); print('W', M.append('\"Other Users/u7/Team\"', None, None, b'x\\r\\n\\r\\n'))",
    );
    assert!(out.contains("S ('OK', [b'1'])") && out.contains("W ('NO'"), "{out}");
    // A negative group entry takes the rights away again.
    imap(port, "u7", "M.setacl('Team', '-group:mailstaff', 'r')");
    let out = imap(port, "yes1", "print('S', M.select('\"Other Users/u7/Team\"', readonly=True))");
    assert!(out.contains("S ('NO'"), "{out}");
}

#[test]
fn other_users_folders_without_rights_are_refused_and_logged() {
    if !can_run("rights", &["/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let b = Backend::start(d.path(), "");
    imap(
        b.imap_port,
        "u7",
        "M.create('Private'); M.create('Lookable'); M.setacl('Lookable', 'yes1', 'l')\n\
         M.append('Private', None, None, b'Subject: secret\\r\\n\\r\\nx\\r\\n')",
    );
    let out = imap(
        b.imap_port,
        "yes1",
        "q = lambda n: '\"Other Users/u7/%s\"' % n\n\
         print('R1', M.select(q('Private')))\n\
         print('R2', M.select(q('Lookable')))\n\
         print('P', M.append(q('Lookable'), None, None, b'Subject: spam\\r\\n\\r\\nx\\r\\n'))\n\
         print('A', M.setacl(q('Lookable'), 'yes1', 'lrswipkxtecdan'))\n\
         print('D', M.delete(q('Lookable')))\n\
         print('L', M.list('\"\"', '*'))",
    );
    assert!(out.contains("R1 ('NO', [b'Mailbox does not exist'])"), "{out}");
    assert!(out.contains("R2 ('NO', [b'Permission denied'])"), "{out}");
    assert!(out.contains("P ('NO', [b'Permission denied'])"), "{out}");
    assert!(out.contains("A ('NO', [b'Permission denied'])"), "{out}");
    assert!(out.contains("D ('NO', [b'Permission denied'])"), "{out}");
    assert!(out.contains("Lookable") && !out.contains("Private\""), "{out}");
    // The owner's view is unchanged.
    let out = imap(
        b.imap_port,
        "u7",
        "print('S', M.select('Private')); print('A', M.getacl('Lookable'))",
    );
    assert!(out.contains("S ('OK', [b'1'])") && out.contains("yes1 l"), "{out}");
    let log = std::fs::read_to_string(d.path().join("imapd.log")).unwrap();
    assert!(
        log.contains("yes1: permission denied: right 'r' on user.u7.Private (has '')"),
        "{log}"
    );
    assert!(
        log.contains("yes1: permission denied: right 'i' on user.u7.Lookable (has 'l')"),
        "{log}"
    );
    assert!(log.contains("yes1: permission denied: right 'a' on user.u7.Lookable"), "{log}");
}
