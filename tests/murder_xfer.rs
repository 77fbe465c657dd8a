//! XFER between our back ends over real sockets: the real `cyradm`'s
//! `xfer` moves a user with everything they have (mailboxes, UIDs,
//! UIDVALIDITY, modseqs, flags, dates, ACLs, quota, subscriptions, seen
//! state); the MUPDATE master and the front end follow; mail delivered
//! during the move is neither lost nor bounced; a move that cannot finish
//! leaves the source as it was.

mod harness;

use harness::murder::*;
use harness::*;

const CYRADM: &str = "/usr/bin/cyradm";

/// Everything a client can see of `mailboxes` on `host:port`, as the
/// admin (EXAMINE: nothing changes), one line per fact.
fn snapshot(host: &str, port: u16, mailboxes: &[&str]) -> String {
    let script = r#"
import imaplib, sys, hashlib
M = imaplib.IMAP4(sys.argv[1], int(sys.argv[2]))
M.login('md5u', 'testpw')
for mb in sys.argv[3:]:
    typ, st = M.status(mb, '(MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ UNSEEN)')
    print(mb, typ, st)
    print(mb, 'ACL', M.getacl(mb))
    print(mb, 'QUOTAROOT', M.getquotaroot(mb))
    typ, _ = M.select(mb, readonly=True)
    if typ != 'OK':
        continue
    typ, data = M.uid('FETCH', '1:*', '(FLAGS INTERNALDATE RFC822.SIZE MODSEQ ANNOTATION (/comment value.shared) BODY.PEEK[])')
    for d in data:
        if isinstance(d, tuple):
            print(mb, d[0].decode().split(' BODY')[0], hashlib.sha1(d[1]).hexdigest())
    M.close()
M.logout()
"#;
    let mut args = vec![host.to_string(), port.to_string()];
    args.extend(mailboxes.iter().map(|s| s.to_string()));
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    python(script, &a)
}

fn cyradm(host: &str, port: u16, script: &str) -> String {
    run_client(
        CYRADM,
        &["--user", "md5u", "--password", "testpw", "--port", &port.to_string(), host],
        script,
    )
}

/// u7's mail as a client leaves it: INBOX with read, flagged, keyworded
/// and expunged messages, a Sent folder with an ACL, a subscription, a
/// quota.
fn fill_u7(front_imap: u16, front_lmtp: u16) {
    let out = python(
        r#"
import smtplib, sys
L = smtplib.LMTP('127.0.0.1', int(sys.argv[1]))
for i in range(1, 6):
    L.sendmail('s@example.org', ['u7@example.org'], 'From: s@example.org\r\nSubject: m%d\r\nMessage-ID: <x%d@example.org>\r\n\r\nbody %d\r\n' % (i, i, i))
L.quit()
print('sent')
"#,
        &[&front_lmtp.to_string()],
    );
    assert!(out.contains("sent"), "{out}");
    let out = python(
        r#"
import imaplib, sys
M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1]))
M.login('u7', 'testpw')
print(M.create('Sent'))
print(M.subscribe('Sent'))
print(M.setacl('Sent', 'yes1', 'lrs'))
# The admin's snapshots read what the ACL lets them (as in Cyrus).
print(M.setacl('INBOX', 'md5u', 'lr'))
print(M.setacl('Sent', 'md5u', 'lr'))
print(M.append('Sent', '(\\Seen $Forwarded)', '"01-Feb-2020 10:11:12 +0100"', b'From: u7@example.org\r\nSubject: sent\r\n\r\nsent body\r\n'))
M.select('INBOX')
print(M.store('1', '+FLAGS', '(\\Seen)'))
print(M.store('2', '+FLAGS', '(\\Flagged Junk)'))
print(M.store('3', '+FLAGS', '(\\Deleted)'))
print(M.expunge())
# RFC 5257 annotations, the user's own and a shared one.
print(M.store('2', 'ANNOTATION', '(/comment (value.priv "u7 note" value.shared "shared note"))'))
print(M.logout())
"#,
        &[&front_imap.to_string()],
    );
    assert!(!out.contains("'NO'") && !out.contains("BAD"), "{out}");
}

#[test]
fn cyradm_xfer_moves_a_user_with_everything() {
    if !can_run("xfer", &[CYRADM]) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let mu = Murder::start(t.path());
    let (_lmtp, flmtp) = mu.front("lmtpd", &["-a"]);
    let (_imap, fimap) = mu.front("imapd", &[]);
    fill_u7(fimap, flmtp);
    let (iport, _, _) = mu.ports;
    let boxes = ["user.u7", "user.u7.Sent"];
    assert!(imap_admin(mu.backs[0].imap_port, &["SETQUOTA user.u7 (STORAGE 5000 X-NUM-FOLDERS 50)"]).contains("-> OK"));
    let before = snapshot("127.0.0.2", iport, &boxes);
    assert!(before.contains("MESSAGES 4 ") && before.contains("UIDNEXT 6 "), "{before}");
    assert!(
        before.contains("(\\Recent \\Flagged Junk)") && before.contains("$Forwarded"),
        "{before}"
    );
    assert!(before.contains(" 5000 X-NUM-FOLDERS 2 50)"), "{before}");
    assert!(before.contains("ANNOTATION (/comment (value.shared \"shared note\"))"), "{before}");

    // Refused: a user who is not an admin, a server that is not there.
    let out = python(
        "import imaplib,sys\nimaplib.Commands['XFER']=('AUTH',)\nM=imaplib.IMAP4('127.0.0.2',int(sys.argv[1]))\nM.login('yes1','testpw')\nprint(M._simple_command('XFER','user.u7','127.0.0.3'))\n",
        &[&iport.to_string()],
    );
    assert!(out.contains("Permission denied"), "{out}");
    let out = imap_admin_at("127.0.0.2", iport, &["XFER user.u7 127.0.0.9"]);
    assert!(out.contains("-> NO"), "{out}");
    assert_eq!(snapshot("127.0.0.2", iport, &boxes), before);

    // u7's Sieve scripts, the active one too.
    let sieve = |i: usize| mu.backs[i].dir.join("sieve/u/u7");
    std::fs::create_dir_all(sieve(0)).unwrap();
    std::fs::write(sieve(0).join("main.script"), "require \"fileinto\";\r\nfileinto \"Sent\";\r\n").unwrap();
    std::fs::write(sieve(0).join("spare.script"), "keep;\r\n").unwrap();
    std::os::unix::fs::symlink("main.bc", sieve(0).join("defaultbc")).unwrap();

    // The move, as an admin does it.
    let out = cyradm("127.0.0.2", iport, "xfer user.u7 127.0.0.3\n");
    assert!(!out.to_lowercase().contains("error"), "{out}");
    // The scripts went with the user.
    assert!(!sieve(0).exists());
    assert_eq!(std::fs::read_to_string(sieve(1).join("spare.script")).unwrap(), "keep;\r\n");
    assert!(std::fs::read_to_string(sieve(1).join("main.script")).unwrap().contains("fileinto"));
    assert_eq!(
        std::fs::read_link(sieve(1).join("defaultbc")).unwrap(),
        std::path::Path::new("main.bc")
    );
    let after = snapshot("127.0.0.3", iport, &boxes);
    assert_eq!(after, before, "the target shows what the source showed");
    let gone = snapshot("127.0.0.2", iport, &boxes);
    assert!(gone.contains("user.u7 NO"), "{gone}");

    // The master and the front end follow.
    let mut w = Raw::login(mu._master.port, "md5u");
    assert!(w.call("f", "FIND \"user.u7.Sent\"").contains("127.0.0.3!default"));
    let out = python(
        r#"
import imaplib, sys
M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1]))
print(M.login('u7', 'testpw'))
print(M.lsub())
print(M.select('INBOX'))
print(M.fetch('1:*', '(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])'))
print(M.fetch('2', '(ANNOTATION (/comment value))'))
print(M.logout())
"#,
        &[&fimap.to_string()],
    );
    assert!(out.contains("SESSIONID=<127.0.0.3-"), "{out}");
    assert!(
        out.contains("ANNOTATION (/comment (value.shared \"shared note\" value.priv \"u7 note\"))"),
        "annotations moved: {out}"
    );
    assert!(out.contains("\".\" Sent'"), "subscriptions moved: {out}");
    assert!(out.contains("Subject: m5") && out.contains("\\\\Flagged Junk"), "{out}");
    assert!(out.contains("(FLAGS (\\\\Seen)"), "the owner's \\Seen moved: {out}");
    // New mail goes to the new back end.
    let out = lmtp_session(
        flmtp,
        &["LHLO hub", "MAIL FROM:<s@example.org>", "RCPT TO:<u7@example.org>", "DATA", "QUIT"],
        "Subject: after\r\n\r\nafter the move\r\n",
        1,
    );
    assert!(out.contains("250 2.1.5 Success SESSIONID=<127.0.0.3-"), "{out}");
    // (The script filed it.)
    assert!(
        inbox_count(mu.backs[1].imap_port, "user.u7.Sent").contains("'2'"),
        "the new back end ran the script"
    );
    // And back, as an admin moves a user through a front end: RENAME to
    // server!partition, which the front end sends as XFER to the back end
    // holding the mailbox.
    let out = imap_admin(fimap, &["RENAME user.u7 user.u7 127.0.0.2!default"]);
    assert!(out.contains("-> OK"), "{out}");
    assert!(w.call("g", "FIND \"user.u7\"").contains("127.0.0.2!default"));
    assert!(inbox_count(mu.backs[0].imap_port, "user.u7").contains("'4'"));
    assert!(sieve(0).join("main.script").exists() && !sieve(1).exists());
}

#[test]
fn mail_arriving_during_an_xfer_is_kept() {
    if !can_run("xfer", &[]) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let mu = Murder::start(t.path());
    let (_lmtp, flmtp) = mu.front("lmtpd", &["-a"]);
    let (iport, _, _) = mu.ports;
    // A mailbox big enough for the move to take a while.
    let out = python(
        r#"
import smtplib, sys
L = smtplib.LMTP(sys.argv[1])
body = 'x' * 20000
for i in range(300):
    L.sendmail('s@example.org', ['u7@example.org'], 'Subject: bulk %d\r\nMessage-ID: <b%d@example.org>\r\n\r\n%s\r\n' % (i, i, body))
L.quit()
print('loaded')
"#,
        &[mu.backs[0].lmtp_sock.to_str().unwrap()],
    );
    assert!(out.contains("loaded"), "{out}");
    // A hub's worth of deliveries through the front end while the user
    // moves: a temporary failure is retried, as the queue would.
    let sender = std::thread::spawn(move || {
        python(
            r#"
import smtplib, sys, time
ok = 0
temp = 0
for i in range(40):
    for attempt in range(60):
        try:
            L = smtplib.LMTP('127.0.0.1', int(sys.argv[1]))
            L.sendmail('s@example.org', ['u7@example.org'], 'Subject: live %d\r\nMessage-ID: <l%d@example.org>\r\n\r\nlive\r\n' % (i, i))
            L.quit()
            ok += 1
            break
        except smtplib.SMTPRecipientsRefused as e:
            code = list(e.recipients.values())[0][0]
            if code >= 500:
                print('BOUNCED', i, e)
                break
            temp += 1
        except smtplib.SMTPDataError as e:
            if e.smtp_code >= 500:
                print('BOUNCED', i, e)
                break
            temp += 1
        except Exception as e:
            temp += 1
        time.sleep(0.1)
    time.sleep(0.02)
print('delivered', ok, 'temporary', temp)
"#,
            &[&flmtp.to_string()],
        )
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = imap_admin_at("127.0.0.2", iport, &["XFER user.u7 127.0.0.3"]);
    assert!(out.contains("-> OK"), "{out}");
    let sent = sender.join().unwrap();
    assert!(sent.contains("delivered 40 "), "{sent}");
    assert!(!sent.contains("BOUNCED"), "{sent}");
    // Every message is on the target once: 300 before, 40 during.
    let c = inbox_count(mu.backs[1].imap_port, "user.u7");
    assert!(c.contains("'340'"), "{c}\n{sent}");
}

#[test]
fn an_xfer_that_cannot_finish_leaves_the_source_as_it_was() {
    if !can_run("xfer", &[]) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let mut mu = Murder::start(t.path());
    let (iport, _, _) = mu.ports;
    let out = python(
        "import smtplib,sys\nL=smtplib.LMTP(sys.argv[1])\nprint(L.sendmail('s@example.org',['alice@example.org'],'Subject: stays\\r\\n\\r\\nbody\\r\\n'))\n",
        &[mu.backs[0].lmtp_sock.to_str().unwrap()],
    );
    assert!(out.contains("{}"), "{out}");
    let boxes = ["user.alice"];
    assert!(imap_admin(mu.backs[0].imap_port, &["SETACL user.alice md5u lr"]).contains("-> OK"));
    let before = snapshot("127.0.0.2", iport, &boxes);
    // The master is down: the target cannot take over, so nothing moves.
    mu._master.kill();
    let out = imap_admin_at("127.0.0.2", iport, &["XFER user.alice 127.0.0.3"]);
    assert!(out.contains("-> NO"), "{out}");
    assert_eq!(snapshot("127.0.0.2", iport, &boxes), before);
    let there = snapshot("127.0.0.3", iport, &boxes);
    assert!(there.contains("user.alice NO"), "no leftover on the target: {there}");
    // With the master back, the same XFER goes through.
    mu._master.restart();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let out = imap_admin_at("127.0.0.2", iport, &["XFER user.alice 127.0.0.3"]);
    assert!(out.contains("-> OK"), "{out}");
    assert_eq!(snapshot("127.0.0.3", iport, &boxes), before);
}

/// The receiving half of a Cyrus back end's XFER, driven by hand over a
/// raw socket: a streamed SYNCAPPLY MESSAGE whose second file does not
/// match its GUID is refused (the first is kept: RESERVE no longer asks
/// for it); a non-admin's upload is read and refused without harm to the
/// session; a mailbox arrives by LOCAL_MAILBOX with its UIDs, flags and
/// message, and MUPDATEPUSH activates it; a file list that cannot be
/// followed closes the connection.
#[test]
fn cyrus_replication_commands_by_hand() {
    let t = tempfile::tempdir().unwrap();
    let b = Backend::start(t.path(), "");
    let script = r#"
import socket, sys, hashlib, time
def session(user):
    s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
    f = s.makefile('rb')
    f.readline()
    s.sendall(('L LOGIN %s testpw\r\n' % user).encode())
    while not f.readline().startswith(b'L '): pass
    return s, f
def run(s, f, tag, data):
    s.sendall(data)
    out = []
    while True:
        l = f.readline()
        if not l:
            out.append('EOF'); break
        out.append(l.decode().rstrip())
        if l.startswith(tag.encode() + b' '): break
    print(tag, out)
good = b'Subject: by hand\r\n\r\nhello\r\n'
g = hashlib.sha1(good).hexdigest()
s, f = session('md5u')
run(s, f, 'S1', b'S1 SYNCAPPLY MESSAGE (%{default ' + g.encode() + b' %d}\r\n' % len(good) + good
    + b' %{default 0123456789012345678901234567890123456789 3}\r\nabc)\r\n')
run(s, f, 'S2', b'S2 SYNCAPPLY RESERVE %(PARTITION default MBOXNAME (user.hand) GUID (' + g.encode()
    + b' 0123456789012345678901234567890123456789))\r\n')
box = (b'S3 SYNCAPPLY LOCAL_MAILBOX %(UNIQUEID 4f7c0ffee MBOXNAME user.hand LAST_UID 7 HIGHESTMODSEQ 9 '
       b'RECENTUID 0 RECENTTIME 0 LAST_APPENDDATE 0 POP3_LAST_LOGIN 0 UIDVALIDITY 1234567 PARTITION default '
       b'ACL "hand\tlrswipkxtecdan\tmd5u\tlr\t" OPTIONS P RECORD (%(UID 7 MODSEQ 8 LAST_UPDATED 1 FLAGS (\\Flagged kw1) '
       b'INTERNALDATE 1600000000 SIZE ' + str(len(good)).encode() + b' GUID ' + g.encode() + b')))\r\n')
run(s, f, 'S3', box)
run(s, f, 'S4', b'S4 SELECT user/hand\r\n')
run(s, f, 'S5', b'S5 MUPDATEPUSH user/hand\r\n')
run(s, f, 'S6', b'S6 SELECT user/hand\r\n')
run(s, f, 'S7', b'S7 UID FETCH 7 (FLAGS BODY.PEEK[])\r\n')
u, uf = session('u7')
run(u, uf, 'U1', b'U1 SYNCAPPLY MESSAGE (%{default ' + g.encode() + b' %d}\r\n' % len(good) + good + b')\r\n')
run(u, uf, 'U2', b'U2 NOOP\r\n')
# Read to the end: the tagged BAD, the BYE, then the connection closes.
run(s, f, 'S8 X', b'S8 SYNCAPPLY MESSAGE (junk %{default ' + g.encode() + b' 3}\r\nabc)\r\n')
"#;
    let out = python(script, &[&b.imap_port.to_string()]);
    let line = |tag: &str| out.lines().find(|l| l.starts_with(&format!("{tag} "))).unwrap_or("").to_string();
    assert!(line("S1").contains("S1 NO IMAP_SYNC_CHECKSUM"), "{out}");
    assert!(
        line("S2").contains("* MISSING (0123456789012345678901234567890123456789)") && line("S2").contains("S2 OK"),
        "{out}"
    );
    assert!(line("S3").contains("S3 OK success"), "{out}");
    // Arriving (the master is not told yet), already readable here.
    assert!(line("S4").contains("[UIDVALIDITY 1234567]"), "{out}");
    assert!(line("S5").contains("S5 OK"), "{out}");
    assert!(
        line("S6").contains("[UIDVALIDITY 1234567]") && line("S6").contains("S6 OK"),
        "{out}"
    );
    assert!(
        line("S7").contains("\\\\Flagged kw1") || line("S7").contains("kw1 \\\\Flagged"),
        "{out}"
    );
    assert!(line("S7").contains("hello"), "{out}");
    assert!(
        line("U1").contains("U1 NO Permission denied") && line("U2").contains("U2 OK"),
        "{out}"
    );
    let s8 = line("S8");
    assert!(s8.contains("S8 BAD") && s8.contains("* BYE") && s8.contains("EOF"), "{out}");
}
