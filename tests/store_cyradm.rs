//! The real `cyradm` (Debian cyrus-admin) administering our imapd from a
//! script: create (also on a named partition), list, ACLs, rename, quota,
//! reconstruct, mboxconfig/info (METADATA), delete, and its error reports;
//! results checked over IMAP.

mod harness;
use harness::*;

const CYRADM: &str = "/usr/bin/cyradm";

#[test]
fn cyradm_administers_our_server() {
    if !can_run("cyradm", &[CYRADM, "/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let b = Backend::start(
        d.path(),
        &format!("partition-second: {}/spool2\nallowusermoves: yes\n", d.path().display()),
    );
    // u7's and yes1's INBOXes exist after a first login; md5u is the admin.
    python(
        "import imaplib, sys\nfor u in ['u7', 'yes1']:\n  M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1])); M.login(u, 'testpw'); M.create('Keep'); M.logout()\n",
        &[&b.imap_port.to_string()],
    );
    let script = "\
cm user/u7/Projects
cm --partition second user/u7/Archive
cm --partition nosuch user/u7/Bad
lm user/u7/*
sam user/u7/Projects yes1 lrs
sam user/u7/Projects yes1 lrz
lam user/u7/Projects
renm user/u7/Archive user/u7/Old
sq user/u7 5000
lq user/u7
lqr user/u7/Projects
reconstruct user/u7
mboxconfig user/u7/Old comment \"archive folder\"
info user/u7/Old
sam user/u7/Projects md5u x
dm user/u7/Projects
lm user/u7/*
renm user/yes1 user/yes9
lm user/yes*
";
    let out = run_client(
        CYRADM,
        &[
            "--user",
            "md5u",
            "--password",
            "testpw",
            "--port",
            &b.imap_port.to_string(),
            "127.0.0.1",
        ],
        script,
    );
    eprintln!("{out}");
    assert!(out.contains("createmailbox: Invalid partition name"), "{out}");
    assert!(
        out.contains("user/u7/Archive (\\HasNoChildren)") && out.contains("user/u7/Projects (\\HasNoChildren)"),
        "{out}"
    );
    assert!(out.contains("setaclmailbox: yes1: lrz: The z right is not supported"), "{out}");
    assert!(out.contains("yes1 lrs") && out.contains("u7 lrswipkxtecdan"), "{out}");
    assert!(out.contains("STORAGE 0/5000"), "{out}");
    assert!(out.contains("user/u7 STORAGE 0/5000"), "{out}");
    // mboxconfig and info go through METADATA.
    assert!(
        out.contains("comment: archive folder") && out.contains("partition: second"),
        "{out}"
    );
    // A whole user renamed (allowusermoves): the INBOX and its folder.
    assert!(
        out.contains("user/yes9 (\\HasChildren)") && out.contains("user/yes9/Keep (\\HasNoChildren)"),
        "{out}"
    );
    assert!(!out.contains("user/yes1 ("), "{out}");
    // The last u7 listing: Projects deleted, Archive renamed to Old.
    // cyradm prints its prompt before reading each command (and echoes
    // the command only where Term::ReadLine::Gnu is installed): the
    // output of command i follows prompt i; the second `lm user/u7/*` is
    // command 16 (after `sam ... md5u x`: an admin deletes what the ACL
    // lets it, as in Cyrus).
    let last = out.split("127.0.0.1> ").nth(17).unwrap_or("");
    assert!(
        last.contains("user/u7/Old") && !last.contains("Projects") && !last.contains("Archive"),
        "{out}"
    );
    // Over IMAP: the folder cyradm placed on `second` lives there, under
    // its new name, and u7 sees it.
    assert!(d.path().join("spool2/u/user/u7/Old").is_dir(), "Old is not on partition second");
    let seen = python(
        "import imaplib, sys\nM = imaplib.IMAP4('127.0.0.1', int(sys.argv[1])); M.login('u7', 'testpw')\nprint(M.list()[1]); print(M.getquotaroot('INBOX')[1])\n",
        &[&b.imap_port.to_string()],
    );
    assert!(
        seen.contains("\"/\" Old") && !seen.contains("Projects") && seen.contains("STORAGE 0 5000"),
        "{seen}"
    );
}
