//! Real synchronising clients against our imapd and pop3d: `mbsync`
//! (isync) two-way sync of a folder tree with flags, changes on both
//! sides and a second sync; `offlineimap` the same way; `fetchmail`
//! pulling a mailbox over POP3 and over IMAP.  Both sides are compared
//! at the end: the server over IMAP, the client's Maildir on disk.

mod harness;
use harness::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// Runs a Python snippet with an imaplib connection `M` as u7.
fn imap(port: u16, body: &str) -> String {
    python(
        &format!("import imaplib, time\nM = imaplib.IMAP4('127.0.0.1', {port}); M.login('u7', 'testpw')\n{body}\nM.logout()\n"),
        &[],
    )
}

/// The server's view: "folder|subject|flags" for every message of u7.
fn server_view(port: u16) -> BTreeSet<String> {
    let out = imap(
        port,
        "import re\n\
         for l in M.list()[1]:\n\
         \x20   name = l.decode().rsplit(' \"/\" ', 1)[1].strip('\"')\n\
         \x20   if M.select('\"%s\"' % name, readonly=True)[1] == [b'0']: continue\n\
         \x20   typ, data = M.fetch('1:*', '(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])')\n\
         \x20   for d in data:\n\
         \x20       if isinstance(d, tuple):\n\
         \x20           flags = sorted(f for f in re.search(rb'FLAGS \\(([^)]*)\\)', d[0]).group(1).decode().split() if f != '\\\\Recent')\n\
         \x20           subj = d[1].decode().split(':', 1)[1].strip()\n\
         \x20           print('MSG %s|%s|%s' % (name, subj, ' '.join(flags)))",
    );
    out.lines().filter_map(|l| l.strip_prefix("MSG ").map(String::from)).collect()
}

/// A Maildir tree's view in the same form; `inbox` names the top folder,
/// `sep` joins subfolder names (`/` for mbsync's Verbatim layout, `.` for
/// offlineimap's).
fn maildir_view(root: &Path, map_name: &dyn Fn(&str) -> String) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if !p.is_dir() {
                continue;
            }
            let n = e.file_name().to_string_lossy().to_string();
            if n == "cur" || n == "new" {
                let rel = dir.strip_prefix(root).unwrap().to_string_lossy().to_string();
                let folder = map_name(&rel);
                for f in std::fs::read_dir(&p).unwrap().flatten() {
                    let fname = f.file_name().to_string_lossy().to_string();
                    let data = std::fs::read_to_string(f.path()).unwrap_or_default();
                    let subj = data
                        .lines()
                        .find_map(|l| l.strip_prefix("Subject:"))
                        .map(|s| s.trim().to_string())
                        .unwrap_or_default();
                    let info = fname.rsplit_once(":2,").map(|(_, i)| i.to_string()).unwrap_or_default();
                    let mut flags: Vec<&str> = Vec::new();
                    for (c, f) in [
                        ('D', "\\Draft"),
                        ('F', "\\Flagged"),
                        ('R', "\\Answered"),
                        ('S', "\\Seen"),
                        ('T', "\\Deleted"),
                    ] {
                        if info.contains(c) {
                            flags.push(f);
                        }
                    }
                    flags.sort();
                    out.insert(format!("{folder}|{subj}|{}", flags.join(" ")));
                }
            } else if n != "tmp" && !n.starts_with('.')
                || n.starts_with('.') && n.len() > 1 && !matches!(n.as_str(), ".mbsyncstate" | ".uidvalidity")
            {
                stack.push(p);
            }
        }
    }
    out
}

fn seed(port: u16) {
    imap(
        port,
        "M.create('Projects'); M.create('Projects/2026'); M.create('Archive')\n\
         M.append('INBOX', '(\\\\Seen)', None, b'Subject: hello\\r\\n\\r\\nhi\\r\\n')\n\
         M.append('INBOX', '(\\\\Flagged)', None, b'Subject: urgent\\r\\n\\r\\nnow\\r\\n')\n\
         M.append('Projects', None, None, b'Subject: plan\\r\\n\\r\\nplan\\r\\n')\n\
         M.append('Projects/2026', '(\\\\Answered \\\\Seen)', None, b'Subject: budget\\r\\n\\r\\nmoney\\r\\n')\n\
         M.append('Archive', '(\\\\Seen)', None, b'Subject: old\\r\\n\\r\\nold\\r\\n')",
    );
}

/// Server-side changes for the second round: a new message, a flag set,
/// one message deleted.
fn change_server(port: u16) {
    imap(
        port,
        "M.append('Projects', None, None, b'Subject: from server\\r\\n\\r\\nnew\\r\\n')\n\
         M.select('INBOX'); M.store('1', '+FLAGS', '\\\\Answered')\n\
         M.select('Archive'); M.store('1', '+FLAGS', '\\\\Deleted'); M.expunge()",
    );
}

/// Client-side changes in a Maildir folder: a new message, \Seen set on
/// one (renaming to :2,S), one removed.
fn change_maildir(folder: &Path) {
    let cur = folder.join("cur");
    let files: Vec<_> = ["cur", "new"]
        .iter()
        .flat_map(|s| std::fs::read_dir(folder.join(s)).unwrap().flatten().map(|e| e.path()))
        .collect();
    let urgent = files
        .iter()
        .find(|p| std::fs::read_to_string(p).unwrap().contains("Subject: urgent"))
        .expect("urgent synced")
        .clone();
    let name = urgent.file_name().unwrap().to_string_lossy().to_string();
    let (base, info) = name.rsplit_once(":2,").unwrap_or((&name, ""));
    let mut flags: Vec<char> = info.chars().collect();
    flags.push('S');
    flags.sort();
    std::fs::rename(&urgent, cur.join(format!("{base}:2,{}", flags.iter().collect::<String>()))).unwrap();
    let hello = files
        .iter()
        .find(|p| std::fs::read_to_string(p).unwrap().contains("Subject: hello"))
        .unwrap();
    std::fs::remove_file(hello).unwrap();
    std::fs::write(
        folder.join("new").join(format!("{}.local.host", std::process::id())),
        "Subject: from client\r\n\r\nwritten offline\r\n",
    )
    .unwrap();
}

fn run(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap();
    let out = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{cmd:?} failed:\n{out}");
    out
}

#[test]
fn mbsync_two_way_sync() {
    if !can_run("mbsync", &["/usr/bin/mbsync", "/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let b = Backend::start(d.path(), "");
    seed(b.imap_port);
    let mail = d.path().join("mail");
    std::fs::create_dir_all(&mail).unwrap();
    let rc = d.path().join("mbsyncrc");
    std::fs::write(
        &rc,
        format!(
            "IMAPAccount test\nHost 127.0.0.1\nPort {}\nUser u7\nPass testpw\nSSLType None\nAuthMechs LOGIN\n\n\
             IMAPStore remote\nAccount test\n\n\
             MaildirStore local\nPath {m}/\nInbox {m}/INBOX\nSubFolders Verbatim\n\n\
             Channel c\nFar :remote:\nNear :local:\nPatterns *\nCreate Both\nExpunge Both\nSyncState *\n",
            b.imap_port,
            m = mail.display()
        ),
    )
    .unwrap();
    let sync = || run(Command::new("mbsync").arg("-c").arg(&rc).args(["-D", "-a"]));
    sync();
    let map = |rel: &str| if rel == "INBOX" { "INBOX".to_string() } else { rel.to_string() };
    assert_eq!(maildir_view(&mail, &map), server_view(b.imap_port));
    assert_eq!(server_view(b.imap_port).len(), 5);
    change_server(b.imap_port);
    change_maildir(&mail.join("INBOX"));
    sync();
    let server = server_view(b.imap_port);
    assert_eq!(maildir_view(&mail, &map), server);
    let want: BTreeSet<String> = [
        "INBOX|urgent|\\Flagged \\Seen",
        "INBOX|from client|",
        "Projects|plan|",
        "Projects|from server|",
        "Projects/2026|budget|\\Answered \\Seen",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(server, want);
    // A third run changes nothing.
    sync();
    assert_eq!(server_view(b.imap_port), want);
}

#[test]
fn offlineimap_two_way_sync() {
    if !can_run("offlineimap", &["/usr/bin/offlineimap", "/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let b = Backend::start(d.path(), "");
    seed(b.imap_port);
    let mail = d.path().join("mail");
    let rc = d.path().join("offlineimaprc");
    std::fs::write(
        &rc,
        format!(
            "[general]\naccounts = t\nmetadata = {meta}\n\n[Account t]\nlocalrepository = l\nremoterepository = r\n\n\
             [Repository l]\ntype = Maildir\nlocalfolders = {m}\nsep = .\n\n\
             [Repository r]\ntype = IMAP\nremotehost = 127.0.0.1\nremoteport = {p}\nremoteuser = u7\nremotepass = testpw\nssl = no\nstarttls = no\n",
            meta = d.path().join("meta").display(),
            m = mail.display(),
            p = b.imap_port
        ),
    )
    .unwrap();
    let sync = || run(Command::new("offlineimap").arg("-c").arg(&rc).args(["-o", "-u", "basic"]));
    sync();
    // offlineimap names local folders with its own separator.
    let map = |rel: &str| rel.replace('.', "/");
    assert_eq!(maildir_view(&mail, &map), server_view(b.imap_port));
    change_server(b.imap_port);
    change_maildir(&mail.join("INBOX"));
    sync();
    sync();
    let server = server_view(b.imap_port);
    assert_eq!(maildir_view(&mail, &map), server);
    assert!(
        server.contains("INBOX|from client|") && server.contains("Projects|from server|"),
        "{server:?}"
    );
    assert!(
        server.contains("INBOX|urgent|\\Flagged \\Seen") && !server.iter().any(|s| s.contains("hello")),
        "{server:?}"
    );
}

#[test]
fn fetchmail_over_pop3_and_imap() {
    if !can_run("fetchmail", &["/usr/bin/fetchmail", "/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let mut b = Backend::start(d.path(), "");
    let pport = b.start_pop3d();
    seed(b.imap_port);
    let out_dir = d.path().join("fetched");
    std::fs::create_dir_all(&out_dir).unwrap();
    for (proto, port, keep) in [("POP3", pport, "keep"), ("IMAP", b.imap_port, "no keep")] {
        let rc = d.path().join(format!("fetchmailrc-{proto}"));
        std::fs::write(
            &rc,
            format!(
                "set no syslog\npoll 127.0.0.1 protocol {proto} port {port} auth password:\n  user \"u7\" password \"testpw\" is root here\n  {keep} fetchall sslproto '' mda \"/bin/sh -c 'cat > {}/{proto}.$$.$RANDOM'\"\n",
                out_dir.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
        let o = Command::new("fetchmail")
            .args([
                "-f",
                rc.to_str().unwrap(),
                "--nodetach",
                "-v",
                "--pidfile",
                d.path().join("fm.pid").to_str().unwrap(),
            ])
            .env("HOME", d.path())
            .env("FETCHMAILHOME", d.path())
            .output()
            .unwrap();
        let log = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        assert!(o.status.success(), "{proto}: {log}");
        let got: Vec<String> = std::fs::read_dir(&out_dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(proto))
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .collect();
        assert_eq!(got.len(), 2, "{proto}: {log}");
        assert!(
            got.iter().any(|m| m.contains("Subject: hello")) && got.iter().any(|m| m.contains("Subject: urgent")),
            "{got:?}"
        );
    }
    // POP3 kept the messages; the IMAP pass (no keep) deleted them.
    let out = imap(b.imap_port, "print('N', M.status('INBOX', '(MESSAGES)'))");
    assert!(out.contains("INBOX (MESSAGES 0)"), "{out}");
}
