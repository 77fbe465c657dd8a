//! proxyd's per-command routing over real sockets: a user on one back
//! end reaches another user's folder and a shared folder on the other
//! back end through the same front-end session (SELECT, FETCH, APPEND
//! with a synchronising literal, STATUS, CREATE under a remote parent,
//! ACL commands), pipelined commands across back ends keep their order,
//! and the session comes home for INBOX.

mod harness;

use harness::murder::*;
use harness::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[test]
fn folders_on_another_back_end_through_one_session() {
    if !can_run("proxyd routing", &[]) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let mu = Murder::start(t.path());
    let (_lmtp, flmtp) = mu.front("lmtpd", &["-a"]);
    let (_imap, fimap) = mu.front("imapd", &[]);
    // yes1 (second back end) shares a folder with u7 (first back end);
    // a shared folder lives on the second back end too.
    let out = python(
        r#"
import imaplib, sys
M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1]))
M.login('yes1', 'testpw')
print(M.create('proj'))
print(M.setacl('proj', 'u7', 'lrswipk'))
print(M.append('proj', '(\\Flagged)', None, b'Subject: in proj\r\n\r\nshared body\r\n'))
M.logout()
"#,
        &[&fimap.to_string()],
    );
    assert!(!out.contains("'NO'"), "{out}");
    let out = imap_admin(
        mu.backs[1].imap_port,
        &[
            "CREATE news",
            "SETACL news anyone lrsp",
            "CREATE closed",
            "SETACL closed anyone lrs",
        ],
    );
    assert!(!out.contains("-> NO"), "{out}");
    let out = lmtp_session(
        flmtp,
        &["LHLO hub", "MAIL FROM:<s@example.org>", "RCPT TO:<u7@example.org>", "DATA", "QUIT"],
        "Subject: for u7\r\n\r\nhome body\r\n",
        1,
    );
    assert!(out.contains("250 2.1.5"), "{out}");

    let out = python(
        r#"
import imaplib, sys
M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1]))
print('login', M.login('u7', 'testpw'))
print('select-inbox', M.select('INBOX'))
print('status-news', M.status('"Shared Folders.news"', '(MESSAGES)'))
print('fetch-inbox', M.fetch('1', '(BODY.PEEK[HEADER.FIELDS (SUBJECT)])'))
print('select-proj', M.select('"Other Users.yes1.proj"'))
print('fetch-proj', M.fetch('1', '(FLAGS BODY.PEEK[TEXT])'))
print('append-proj', M.append('"Other Users.yes1.proj"', None, None, b'Subject: from u7\r\n\r\nu7 wrote this\r\n'))
print('myrights', M.myrights('"Other Users.yes1.proj"'))
print('create-sub', M.create('"Other Users.yes1.proj.sub"'))
print('create-deep', M.create('deep.er'))
print('select-deep', M.select('deep'))
print('noop-proj', M.noop())
print('list', M.list())
print('delim', M.list('""', '""'))
print('subscribe', M.subscribe('"Other Users.yes1.proj"'))
print('lsub', M.lsub())
print('select-inbox2', M.select('INBOX'))
print('fetch-inbox2', M.fetch('1', '(BODY.PEEK[HEADER.FIELDS (SUBJECT)])'))
print('store', M.store('1', '+FLAGS', '(\\Answered)'))
print('copy', M.copy('1', '"Other Users.yes1.proj"'))
imaplib.Commands['MOVE'] = ('SELECTED',)
print('move', M._simple_command('MOVE', '1', '"Other Users.yes1.proj"'))
print('expunged', M.response('EXPUNGE'))
print('after-move', M.select('INBOX'))
print('logout', M.logout())
"#,
        &[&fimap.to_string()],
    );
    assert!(out.contains("select-inbox ('OK', [b'1'])"), "{out}");
    assert!(
        out.contains("status-news ('OK', [b'\"Shared Folders.news\" (MESSAGES 0)'])"),
        "{out}"
    );
    assert!(out.contains("Subject: for u7"), "{out}");
    assert!(out.contains("select-proj ('OK', [b'1'])"), "{out}");
    assert!(out.contains("\\\\Flagged") && out.contains("shared body"), "{out}");
    assert!(out.contains("append-proj ('OK'"), "{out}");
    assert!(out.contains("noop-proj ('OK'"), "{out}");
    assert!(out.contains("create-sub ('OK'"), "{out}");
    // The level made with deep.er is a mailbox the front end knows
    // (its back end told the master), as with real Cyrus 3.6 back ends.
    assert!(out.contains("select-deep ('OK', [b'0'])"), "{out}");
    assert!(out.contains("select-inbox2 ('OK', [b'1'])"), "{out}");
    // LIST shows the user's own tree and what the other back end holds
    // for them, once each.
    let list = out.lines().find(|l| l.starts_with("list ")).unwrap_or("");
    for name in [
        "\" INBOX'",
        "\"Other Users.yes1.proj\"'",
        "\"Other Users.yes1.proj.sub\"'",
        "\"Shared Folders.news\"'",
    ] {
        assert_eq!(list.matches(name).count(), 1, "{name} in {list}");
    }
    // In Cyrus's LIST order, as a Cyrus front end answers: the INBOX,
    // other users' mailboxes, shared ones (not one back end's answer
    // after the other's).
    let at = |name: &str| list.find(name).unwrap_or(usize::MAX);
    assert!(
        at("\" INBOX'") < at("\"Other Users.yes1.proj\"'")
            && at("\"Other Users.yes1.proj\"'") < at("\"Other Users.yes1.proj.sub\"'")
            && at("\"Other Users.yes1.proj.sub\"'") < at("\"Shared Folders.closed\"'")
            && at("\"Shared Folders.closed\"'") < at("\"Shared Folders.news\"'"),
        "LIST order: {list}"
    );
    assert!(
        out.contains("delim ('OK', [b'(\\\\Noselect) \".\" \"\"'])"),
        "the delimiter once: {out}"
    );
    assert!(out.contains("subscribe ('OK'"), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("lsub ") && l.contains("Other Users.yes1.proj")),
        "{out}"
    );
    assert_eq!(out.matches("Subject: for u7").count(), 2, "{out}");
    // COPY and MOVE into the other back end's folder: COPYUID from the
    // target, the source expunged after a MOVE.
    assert!(out.contains("copy ('OK', [b'[COPYUID "), "{out}");
    assert!(out.contains("move ('OK'") && out.contains("expunged ('EXPUNGE', [b'1'])"), "{out}");
    assert!(out.contains("after-move ('OK', [b'0'])"), "{out}");
    // The folder u7 created went to its parent's back end, and u7's
    // APPEND landed there too.
    let mut w = Raw::login(mu._master.port, "md5u");
    assert!(w.call("f", "FIND \"user.yes1.proj.sub\"").contains("127.0.0.3!default"));
    assert!(inbox_count(mu.backs[1].imap_port, "user.yes1.proj").contains("'4'"));
    let out = python(
        "import imaplib,sys\nM=imaplib.IMAP4('127.0.0.1',int(sys.argv[1]))\nM.authenticate('PLAIN',lambda _: b'yes1\\0md5u\\0testpw')\nM.select('proj')\nprint(M.fetch('3:4','(FLAGS INTERNALDATE BODY.PEEK[HEADER.FIELDS (SUBJECT)])'))\n",
        &[&mu.backs[1].imap_port.to_string()],
    );
    assert_eq!(out.matches("Subject: for u7").count(), 2, "{out}");
    assert_eq!(out.matches("\\\\Answered").count(), 2, "flags kept: {out}");

    // Mail to a shared folder (`+news`, Cyrus's default postuser) goes
    // through the front end to the back end holding it; posting needs 'p'.
    let out = lmtp_session(
        flmtp,
        &[
            "LHLO hub",
            "MAIL FROM:<s@example.org>",
            "RCPT TO:<+news@example.org>",
            "RCPT TO:<+closed@example.org>",
            "RCPT TO:<+nosuch@example.org>",
            "DATA",
            "QUIT",
        ],
        "Subject: news item\r\n\r\nshared\r\n",
        1,
    );
    let norm = out.replace("\r\n", "\n");
    assert!(norm.contains("C: RCPT TO:<+news@example.org>\n250 2.1.5 ok"), "{out}");
    assert!(
        norm.contains("C: RCPT TO:<+closed@example.org>\n550-You do not have permission to post")
            && norm.contains("received this message in error.\n550 5.7.1 Permission denied"),
        "{out}"
    );
    assert!(norm.contains("C: RCPT TO:<+nosuch@example.org>\n550-Mailbox unknown"), "{out}");
    assert!(norm.contains("354 go ahead\n250 2.1.5 Success SESSIONID=<127.0.0.3-"), "{out}");
    assert!(inbox_count(mu.backs[1].imap_port, "news").contains("'1'"));
    // The back end's own lmtpd checks the same right (as postman).
    let out = python(
        "import smtplib,sys\nL=smtplib.LMTP(sys.argv[1])\nL.ehlo_or_helo_if_needed()\nL.mail('s@example.org')\nprint(L.rcpt('+closed@example.org'))\nprint(L.rcpt('+news@example.org'))\n",
        &[mu.backs[1].lmtp_sock.to_str().unwrap()],
    );
    assert!(
        out.contains("(550, b'You do not have permission")
            && out.contains("5.7.1 Permission denied')")
            && out.contains("(250, b'2.1.5 ok')"),
        "{out}"
    );

    // Pipelined commands across back ends come back in order.
    let out = lmtp_session(
        flmtp,
        &["LHLO hub", "MAIL FROM:<s@example.org>", "RCPT TO:<u7@example.org>", "DATA", "QUIT"],
        "Subject: for u7\r\n\r\nagain\r\n",
        1,
    );
    assert!(out.contains("250 2.1.5"), "{out}");
    let mut s = TcpStream::connect(("127.0.0.1", fimap)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut got = String::new();
    let mut buf = vec![0u8; 65536];
    let mut read_until = |s: &mut TcpStream, got: &mut String, what: &str| {
        let end = Instant::now() + Duration::from_secs(20);
        while !got.contains(what) {
            assert!(Instant::now() < end, "{got}");
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "{got}");
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    };
    read_until(&mut s, &mut got, "server ready");
    s.write_all(b"a LOGIN u7 testpw\r\n").unwrap();
    read_until(&mut s, &mut got, "a OK");
    s.write_all(
        b"b SELECT INBOX\r\nc STATUS \"Other Users.yes1.proj\" (MESSAGES)\r\nd FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n\
          e EXAMINE \"Shared Folders.news\"\r\nf SELECT INBOX\r\ng LOGOUT\r\n",
    )
    .unwrap();
    read_until(&mut s, &mut got, "g OK");
    let order: Vec<usize> = ["b OK", "c OK", "d OK", "e OK", "f OK", "g OK"]
        .iter()
        .map(|t| got.find(t).unwrap_or_else(|| panic!("{t}: {got}")))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{got}");
    let c = got.find("c OK").unwrap();
    let d = got.find("d OK").unwrap();
    assert!(got[..c].contains("(MESSAGES 4)"), "{got}");
    assert!(got[c..d].contains("Subject: for u7"), "{got}");
}

/// A murder and its front end's imapd (kept running by the returned
/// process), with yes1's folder `proj` on the second back end shared with
/// u7 (`rights`), holding one message if `with_message`.
fn murder_with_proj(t: &std::path::Path, rights: &str, with_message: bool) -> (Murder, Proc, u16) {
    let mu = Murder::start(t);
    let (imap, f) = mu.front("imapd", &[]);
    let out = python(
        "import imaplib, sys\nM = imaplib.IMAP4('127.0.0.1', int(sys.argv[1]))\nM.login('yes1', 'testpw')\n\
         print(M.create('proj'))\nprint(M.setacl('proj', 'u7', sys.argv[2]))\n\
         if sys.argv[3] == '1': print(M.append('proj', None, None, b'Subject: in proj\\r\\n\\r\\nx\\r\\n'))\nM.logout()\n",
        &[&f.to_string(), rights, if with_message { "1" } else { "0" }],
    );
    assert!(!out.contains("'NO'"), "{out}");
    (mu, imap, f)
}

/// MAILBOX-REFERRALS (RFC 2193) as Cyrus's front ends do it: once a
/// client has used RLIST or RLSUB, SELECT and EXAMINE answer with a
/// referral to the back end holding the mailbox (and STATUS with
/// `proxyd_allow_status_referral`); `proxyd_disable_mailbox_referrals`
/// turns it off and drops the capability.  Admins learn a mailbox's back
/// end from the `/shared/vendor/cmu/cyrus-imapd/server` entry.
#[test]
fn referrals_for_clients_that_use_rlist() {
    if !can_run("proxyd referrals", &[]) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (mu, _imap, f) = murder_with_proj(t.path(), "lrs", false);
    let out = imap_raw(
        f,
        &[
            "CAPABILITY",
            "LOGIN u7 testpw",
            "SELECT INBOX",
            "RLIST \"\" \"*\"",
            "SELECT INBOX",
            "EXAMINE \"Other Users.yes1.proj\"",
            "STATUS INBOX (MESSAGES)",
            "FETCH 1 FLAGS",
            "LOGOUT",
        ],
    );
    // As Cyrus's front end: the capability is in the list after login.
    let login = out.lines().find(|l| l.starts_with("t1 OK")).unwrap_or("");
    assert!(login.contains(" MAILBOX-REFERRALS"), "{out}");
    assert!(out.contains("\nt2 OK"), "no referral before RLIST: {out}");
    assert!(out.contains("* LIST") && out.contains("\nt3 OK"), "{out}");
    assert!(
        out.contains("\nt4 NO [REFERRAL imap://;AUTH=*@127.0.0.2/INBOX] Remote mailbox.\n"),
        "{out}"
    );
    assert!(
        out.contains("\nt5 NO [REFERRAL imap://;AUTH=*@127.0.0.3/Other%20Users.yes1.proj] Remote mailbox.\n"),
        "{out}"
    );
    assert!(out.contains("* STATUS INBOX (MESSAGES 0)") && out.contains("\nt6 OK"), "{out}");
    assert!(!out.contains("\nt7 OK"), "the failed SELECT closed the mailbox: {out}");

    // STATUS referrals when allowed.
    let mut conf = std::fs::read_to_string(&mu.fe.conf).unwrap();
    conf.push_str("proxyd_allow_status_referral: yes\n");
    std::fs::write(&mu.fe.conf, &conf).unwrap();
    // An admin asks which back end holds a mailbox: answered by the front
    // end, in the real Cyrus front end's words (tests/murder_mupdate.rs),
    // as to users for mailboxes they may see.
    let out = imap_raw(
        f,
        &[
            "LOGIN md5u testpw",
            "GETMETADATA user.yes1 /shared/vendor/cmu/cyrus-imapd/server",
            "GETMETADATA user.u7 (/shared/vendor/cmu/cyrus-imapd/server)",
            "LOGOUT",
        ],
    );
    assert!(
        out.contains("\n* METADATA user.yes1 (\"/shared/vendor/cmu/cyrus-imapd/server\" \"127.0.0.3\")\nt1 OK Completed\n"),
        "{out}"
    );
    assert!(
        out.contains("\n* METADATA user.u7 (\"/shared/vendor/cmu/cyrus-imapd/server\" \"127.0.0.2\")\nt2 OK Completed\n"),
        "{out}"
    );
    let out = imap_raw(
        f,
        &[
            "LOGIN u7 testpw",
            "GETMETADATA INBOX /shared/vendor/cmu/cyrus-imapd/server",
            "GETMETADATA \"Other Users.yes1.proj\" /shared/vendor/cmu/cyrus-imapd/server",
            "GETMETADATA \"Other Users.yes1\" /shared/vendor/cmu/cyrus-imapd/server",
            "LOGOUT",
        ],
    );
    assert!(
        out.contains("\n* METADATA INBOX (\"/shared/vendor/cmu/cyrus-imapd/server\" \"127.0.0.2\")\nt1 OK Completed\n"),
        "{out}"
    );
    assert!(
        out.contains("\n* METADATA \"Other Users.yes1.proj\" (\"/shared/vendor/cmu/cyrus-imapd/server\" \"127.0.0.3\")\nt2 OK"),
        "{out}"
    );
    // yes1's INBOX is not u7's to see: the back end answers, not naming it.
    assert!(
        !out.contains("* METADATA \"Other Users.yes1\" (\"/shared/vendor/cmu/cyrus-imapd/server\" \"127"),
        "{out}"
    );
    let (_imap2, f2) = mu.front("imapd", &[]);
    let out = imap_raw(f2, &["LOGIN u7 testpw", "RLSUB \"\" \"*\"", "STATUS INBOX (MESSAGES)", "LOGOUT"]);
    assert!(
        out.contains("\nt2 NO [REFERRAL imap://;AUTH=*@127.0.0.2/INBOX] Remote mailbox.\n"),
        "{out}"
    );

    // Referrals off: no capability, SELECT goes through after RLIST.
    conf.push_str("proxyd_disable_mailbox_referrals: yes\n");
    std::fs::write(&mu.fe.conf, &conf).unwrap();
    let (_imap3, f3) = mu.front("imapd", &[]);
    let out = imap_raw(f3, &["CAPABILITY", "LOGIN u7 testpw", "RLIST \"\" \"*\"", "SELECT INBOX", "LOGOUT"]);
    let login = out.lines().find(|l| l.starts_with("t1 OK")).unwrap_or("");
    assert!(
        login.starts_with("t1 OK [CAPABILITY ") && !login.contains("MAILBOX-REFERRALS"),
        "{out}"
    );
    assert!(out.contains("\nt3 OK"), "{out}");

    // client_bind: the front end reaches its back ends from the address
    // client_bind_name gives, as the back end's login line shows.
    let log = mu.backs[0].dir.join("imapd-fe.log");
    assert!(!std::fs::read_to_string(&log).unwrap().contains("[127.0.0.9]"));
    conf.push_str("client_bind: yes\nclient_bind_name: 127.0.0.9\n");
    std::fs::write(&mu.fe.conf, &conf).unwrap();
    let (_imap4, f4) = mu.front("imapd", &[]);
    let out = imap_raw(f4, &["LOGIN u7 testpw", "SELECT INBOX", "LOGOUT"]);
    assert!(out.contains("\nt2 OK"), "{out}");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.lines().any(|l| l.contains("login: ") && l.contains("[127.0.0.9] u7 ")),
        "{logged}"
    );
}

/// Mailbox names sent as literals (synchronizing, where the front end
/// gives the `+` itself, and LITERAL+) are routed like quoted ones: SELECT,
/// STATUS, APPEND and COPY reach the back end holding the mailbox.
#[test]
fn literal_mailbox_names_are_routed() {
    if !can_run("proxyd literal names", &[]) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (mu, _imap, f) = murder_with_proj(t.path(), "lrswi", true);
    // A client that waits for each continuation, as the RFC says.
    let script = r#"
import socket, sys
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
f = s.makefile('rb')
def line():
    l = f.readline()
    print('S:', l.decode().rstrip())
    return l
def until(tag):
    while not line().startswith(tag.encode() + b' '):
        pass
line()
s.sendall(b'a1 LOGIN u7 testpw\r\n'); until('a1')
name = b'Other Users.yes1.proj'
s.sendall(b'a2 SELECT {%d}\r\n' % len(name))
assert line().startswith(b'+ '), 'continuation'
s.sendall(name + b'\r\n'); until('a2')
s.sendall(b'a3 STATUS {%d+}\r\n%s (MESSAGES)\r\n' % (len(name), name)); until('a3')
msg = b'Subject: appended\r\n\r\ny\r\n'
s.sendall(b'a4 APPEND {%d+}\r\n%s {%d}\r\n' % (len(name), name, len(msg)))
assert line().startswith(b'+ '), 'the back end asks for the message'
s.sendall(msg + b'\r\n'); until('a4')
s.sendall(b'a5 COPY 1 {5}\r\n')
assert line().startswith(b'+ ')
s.sendall(b'INBOX\r\n'); until('a5')
s.sendall(b'a6 SELECT INBOX\r\n'); until('a6')
s.sendall(b'a7 LOGOUT\r\n'); until('a7')
"#;
    let out = python(script, &[&f.to_string()]);
    assert!(out.contains("S: * 1 EXISTS") && out.contains("S: a2 OK [READ-WRITE]"), "{out}");
    assert!(out.contains("S: * STATUS \"Other Users.yes1.proj\" (MESSAGES 1)"), "{out}");
    assert!(out.contains("S: a4 OK [APPENDUID"), "{out}");
    assert!(out.contains("S: a5 OK [COPYUID"), "{out}");
    let inbox = out.split("a5 OK").nth(1).unwrap_or("");
    assert!(inbox.contains("S: * 1 EXISTS") && inbox.contains("S: a6 OK"), "{out}");
    // The APPEND went to yes1's folder on the other back end.
    let out = python(
        "import imaplib, sys\nM = imaplib.IMAP4('127.0.0.1', int(sys.argv[1]))\nM.login('yes1', 'testpw')\n\
         print(M.select('proj'))\nM.logout()\n",
        &[&mu.backs[1].imap_port.to_string()],
    );
    assert!(out.contains("('OK', [b'2'])"), "{out}");
}

/// URLAUTH through proxyd: u7 (first back end) authorizes a URL to a
/// message of theirs; yes1 (second back end) fetches it through the same
/// front end, which sends the URLFETCH to the back end of the URL's
/// mailbox, not to yes1's own.
#[test]
fn urlauth_across_back_ends() {
    if !can_run("proxyd urlauth", &[]) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let mu = Murder::start(t.path());
    let (_lmtp, flmtp) = mu.front("lmtpd", &["-a"]);
    let (_imap, fimap) = mu.front("imapd", &[]);
    let out = lmtp_session(
        flmtp,
        &["LHLO hub", "MAIL FROM:<s@example.org>", "RCPT TO:<u7@example.org>", "DATA", "QUIT"],
        "Subject: for u7\r\n\r\nthe shared body\r\n",
        1,
    );
    assert!(out.contains("250 2.1.5"), "{out}");
    let out = python(
        r#"
import imaplib, sys, re
imaplib.Commands['GENURLAUTH'] = ('AUTH', 'SELECTED')
imaplib.Commands['URLFETCH'] = ('AUTH', 'SELECTED')
A = imaplib.IMAP4('127.0.0.1', int(sys.argv[1]))
A.login('u7', 'testpw')
typ, d = A._simple_command('GENURLAUTH', '"imap://u7@front/INBOX/;UID=1/;SECTION=TEXT;URLAUTH=authuser"', 'INTERNAL')
assert typ == 'OK', (typ, d)
url = re.search(r'"([^"]+)"', A.untagged_responses['GENURLAUTH'][0].decode()).group(1)
B = imaplib.IMAP4('127.0.0.1', int(sys.argv[1]))
B.login('yes1', 'testpw')
typ, d = B._simple_command('URLFETCH', '"%s"' % url)
got = B.untagged_responses.get('URLFETCH')
print('fetched', typ, got)
assert typ == 'OK' and got and b'the shared body' in got[0][1], got
print('ALL OK')
"#,
        &[&fimap.to_string()],
    );
    assert!(out.contains("ALL OK"), "{out}");
}

/// Where a new mailbox without a parent goes, as Cyrus's front end puts
/// it: the back end of `serverlist` with the most free space, from each
/// back end's `freespace/total` server annotation; a back end that does
/// not answer is left out (here the first of the list, where nothing
/// listens).  Both an admin's CREATE of a new user and a new user's first
/// login through the front end (the back end autocreates the INBOX) land
/// there, not on the first of the list nor on the admin's back end.
/// Also the front end's `maxlogins_per_user`, and its
/// `sasl_minimum_layer` (no mechanism without TLS, LOGIN still works).
#[test]
fn new_mailboxes_go_to_the_freest_back_end_of_serverlist() {
    if !can_run("serverlist placement", &[]) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let mu = Murder::start_with(
        t.path(),
        "proxyservers: md5u\nproxy_authname: md5u\nproxy_password: testpw\n",
        "proxy_authname: md5u\nproxy_password: testpw\nserverlist: 127.0.0.9 127.0.0.2\nmaxlogins_per_user: 1\nsasl_minimum_layer: 1\n",
    );
    let (_imap, fimap) = mu.front("imapd", &[]);
    // A back end's free space, as the front end asks it.
    let out = imap_raw(
        mu.backs[0].imap_port,
        &[
            "LOGIN md5u testpw",
            "GETMETADATA \"\" (/shared/vendor/cmu/cyrus-imapd/freespace/total /shared/vendor/cmu/cyrus-imapd/freespace)",
        ],
    );
    let line = out.lines().find(|l| l.starts_with("* METADATA")).unwrap_or_else(|| panic!("{out}"));
    let q: Vec<&str> = line.split('"').collect();
    // * METADATA "" ("/shared/.../freespace" "N" "/shared/.../freespace/total" "A;T")
    let total = q
        .iter()
        .position(|s| s.ends_with("freespace/total"))
        .map(|i| q[i + 2])
        .unwrap_or_else(|| panic!("{out}"));
    let free = q
        .iter()
        .position(|s| s.ends_with("cyrus-imapd/freespace"))
        .map(|i| q[i + 2])
        .unwrap_or_else(|| panic!("{out}"));
    let (a, tt) = total.split_once(';').unwrap_or_else(|| panic!("{out}"));
    let (a, tt): (u64, u64) = (a.parse().unwrap(), tt.parse().unwrap());
    assert!(tt > 0 && a <= tt && free.parse::<u64>().unwrap() == a, "{out}");

    // yes1's mailbox goes away on the second back end: at the next login
    // through the front end it is made again, on the first.
    // (An admin deletes what the ACL lets it, as in Cyrus.)
    assert!(!imap_admin(mu.backs[1].imap_port, &["SETACL user.yes1 md5u x", "DELETE user.yes1"]).contains("-> NO"));
    std::thread::sleep(Duration::from_millis(1500));
    let out = python(
        r#"
import imaplib, sys
M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1]))
caps = M.capability()[1][0]
print('fe mechanisms', b'AUTH=' in caps or b'SASL-IR' in caps)
print('fe authenticate', M._simple_command('AUTHENTICATE', 'PLAIN', 'AHllczEAdGVzdHB3'))
print('login', M.login('yes1', 'testpw'))
print('select', M.select('INBOX'))
M.logout()
A = imaplib.IMAP4('127.0.0.1', int(sys.argv[1]))
A.login('md5u', 'testpw')
print('create', A.create('user.newbie'))
imaplib.Commands['GETMETADATA'] = ('AUTH', 'SELECTED')
for m in ['user.newbie', 'user.yes1']:
    A._simple_command('GETMETADATA', m, '/shared/vendor/cmu/cyrus-imapd/server')
    print('server', m, A.untagged_responses.pop('METADATA', None))
# maxlogins_per_user: 1 on the front end: a second session of md5u waits
# for the first to end.
B = imaplib.IMAP4('127.0.0.1', int(sys.argv[1]))
try:
    B.login('md5u', 'testpw'); print('second in')
except imaplib.IMAP4.error as e:
    print('second refused', e)
A.logout()
print('after logout', B.login('md5u', 'testpw')[0])
"#,
        &[&fimap.to_string()],
    );
    assert!(out.contains("fe mechanisms False"), "{out}");
    assert!(
        out.contains("fe authenticate ('NO', [b'mechanism too weak for this user'])"),
        "{out}"
    );
    assert!(out.contains("login ('OK'"), "{out}");
    assert!(out.contains("select ('OK'"), "{out}");
    assert!(out.contains("create ('OK'"), "{out}");
    assert!(
        out.contains("server user.newbie [b'user.newbie (\"/shared/vendor/cmu/cyrus-imapd/server\" \"127.0.0.2\")']"),
        "{out}"
    );
    assert!(
        out.contains("server user.yes1 [b'user.yes1 (\"/shared/vendor/cmu/cyrus-imapd/server\" \"127.0.0.2\")']"),
        "{out}"
    );
    assert!(
        out.contains("second refused b'Too many open connections (1 of 1 for md5u)'"),
        "{out}"
    );
    assert!(out.contains("after logout OK"), "{out}");
    let fe_log = std::fs::read_to_string(mu.fe.dir.join("imapd.log")).unwrap_or_default();
    assert!(
        fe_log.contains("serverlist: 127.0.0.9: no free space reported; left out"),
        "{fe_log}"
    );
}

/// `popsubfolders` through the POP3 front end: `u7+Lists` is found where
/// u7 lives, logs in with u7's password, and the back end serves the
/// folder.
#[test]
fn pop3_subfolders_through_the_front_end() {
    if !can_run("pop3proxyd", &[]) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let mut mu = Murder::start(t.path());
    for i in 0..2 {
        let mut c = std::fs::read_to_string(&mu.backs[i].conf).unwrap();
        c.push_str("popsubfolders: yes\n");
        std::fs::write(&mu.backs[i].conf, c).unwrap();
        mu.backs[i].extra.clear();
        mu.restart_back(i);
    }
    let mut c = std::fs::read_to_string(&mu.fe.conf).unwrap();
    c.push_str("popsubfolders: yes\n");
    std::fs::write(&mu.fe.conf, c).unwrap();
    // u7 (on the first back end) files a message in Lists.
    let out = python(
        "import imaplib,sys\nM=imaplib.IMAP4('127.0.0.1',int(sys.argv[1]))\n\
         M.authenticate('PLAIN',lambda _: b'u7\\0md5u\\0testpw')\nprint(M.create('Lists'))\n\
         print(M.append('Lists',None,None,b'Subject: on the list\\r\\n\\r\\nlist body\\r\\n'))\n",
        &[&mu.backs[0].imap_port.to_string()],
    );
    assert!(!out.contains("'NO'"), "{out}");
    let (_pop, pport) = mu.front("pop3d", &[]);
    let out = python(
        r#"
import poplib, sys, base64
P = poplib.POP3('127.0.0.1', int(sys.argv[1])); P.user('u7+Lists')
try:
    print('pass', P.pass_('testpw'))
except poplib.error_proto as e:
    print('pass', e); sys.exit(0)
print('stat', P.stat()); print('retr', b'|'.join(P.retr(1)[1])); P.quit()
P = poplib.POP3('127.0.0.1', int(sys.argv[1]))
print('auth', P._shortcmd('AUTH PLAIN ' + base64.b64encode(b'u7+Lists\0u7\0testpw').decode()))
print('stat2', P.stat()); P.quit()
P = poplib.POP3('127.0.0.1', int(sys.argv[1])); P.user('u7'); P.pass_('testpw'); print('inbox', P.stat()); P.quit()
P = poplib.POP3('127.0.0.1', int(sys.argv[1])); P.user('u7+Lists')
try:
    P.pass_('wrong')
except poplib.error_proto as e:
    print('wrong', e)
"#,
        &[&pport.to_string()],
    );
    let logs = || {
        let fe = std::fs::read_to_string(t.path().join("fe/pop3d.log")).unwrap_or_default();
        let b = std::fs::read_to_string(mu.backs[0].dir.join("pop3d-fe.log")).unwrap_or_default();
        format!("{fe}\n{b}")
    };
    assert!(out.contains("pass b'+OK"), "{out}{}", logs());
    assert!(out.contains("stat (1, "), "{out}");
    assert!(out.contains("Subject: on the list") && out.contains("list body"), "{out}");
    assert!(out.contains("auth b'+OK") && out.contains("stat2 (1, "), "{out}");
    assert!(out.contains("inbox (0, 0)"), "{out}");
    assert!(out.contains("wrong b'-ERR [AUTH]"), "{out}");
}

/// `imapmagicplus` through the front end, as a Cyrus front end does it:
/// `u7+anything` logs in as u7 (password, routing) and the back ends are
/// asked for `u7+anything`; `u7+` (nothing after the plus) lists only the
/// subscribed mailboxes, which live with the INBOX.
#[test]
fn imapmagicplus_through_the_front_end() {
    if !can_run("proxyd imapmagicplus", &[]) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (mut mu, _imap, _f) = murder_with_proj(t.path(), "lrs", false);
    for i in 0..2 {
        let mut c = std::fs::read_to_string(&mu.backs[i].conf).unwrap();
        c.push_str("imapmagicplus: yes\n");
        std::fs::write(&mu.backs[i].conf, c).unwrap();
        mu.backs[i].extra.clear();
        mu.restart_back(i);
    }
    let mut c = std::fs::read_to_string(&mu.fe.conf).unwrap();
    // maxlogins_per_user counts the user whatever `+detail` they give.
    c.push_str("imapmagicplus: yes\nmaxlogins_per_user: 1\n");
    std::fs::write(&mu.fe.conf, c).unwrap();
    let (_imap2, f) = mu.front("imapd", &[]);
    let out = python(
        r#"
import imaplib, sys, time
port = int(sys.argv[1])
M = imaplib.IMAP4('127.0.0.1', port); M.login('u7', 'testpw')
for f in ('Sub', 'Work'):
    M.create(f)
M.subscribe('Sub'); M.logout()
for u in ('u7+', 'u7+Work', 'U7+x'):
    # The session's count goes once the back ends are logged out.
    time.sleep(0.5)
    M = imaplib.IMAP4('127.0.0.1', port)
    print(u, M.login(u, 'testpw')[0])
    print(u, 'list', sorted(M.list()[1]))
    print(u, 'select', M.select('Work'))
    M.logout()
try:
    imaplib.IMAP4('127.0.0.1', port).login('u7+', 'wrong')
except imaplib.IMAP4.error as e:
    print('wrong', e)
time.sleep(0.5)
M = imaplib.IMAP4('127.0.0.1', port); M.login('u7+a', 'testpw')
try:
    imaplib.IMAP4('127.0.0.1', port).login('u7+b', 'testpw')
except imaplib.IMAP4.error as e:
    print('second', e)
M.logout()
"#,
        &[&f.to_string()],
    );
    assert!(out.contains("u7+ OK"), "{out}");
    let line = |p: &str| out.lines().find(|l| l.starts_with(p)).unwrap_or("").to_string();
    let sub = line("u7+ list");
    assert!(sub.contains("Sub") && !sub.contains("Work") && !sub.contains("yes1.proj"), "{out}");
    for u in ["u7+Work", "U7+x"] {
        let all = line(&format!("{u} list"));
        assert!(all.contains("Work") && all.contains("Other Users.yes1.proj"), "{out}");
        assert!(line(&format!("{u} select")).contains("'OK'"), "{out}");
    }
    assert!(out.contains("wrong b'Login failed: authentication failure'"), "{out}");
    assert!(out.contains("second b'Too many open connections (1 of 1 for u7)'"), "{out}");
}

/// ManageSieve on the front end: with `sieve_allowreferrals` (Cyrus's
/// default) the login is checked and the next command is referred to the
/// user's back end, as a Cyrus front end does; without, the front end
/// proxies the session there, and sieveshell's scripts land with each
/// user's INBOX.
#[test]
fn sieve_through_the_front_end() {
    if !can_run("sieveshell", &["/usr/bin/sieveshell"]) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let mu = Murder::start(t.path());
    let (_referring, rport) = mu.front("timsieved", &[]);
    let session = r#"
import socket, sys, base64
s = socket.create_connection(('127.0.0.1', int(sys.argv[1]))); f = s.makefile('rb')
def upto_ok():
    out = []
    while True:
        l = f.readline(); out.append(l)
        if not l or l.startswith(b'OK') or l.startswith(b'NO') or l.startswith(b'BYE'): return out
print(upto_ok())
for user, pw in [(b'u7', b'wrong'), (b'u7', b'testpw')]:
    s.sendall(b'AUTHENTICATE "PLAIN" "' + base64.b64encode(b'\0' + user + b'\0' + pw) + b'"\r\n'); print(upto_ok())
s.sendall(b'LISTSCRIPTS\r\n'); print(upto_ok()); print(f.readline())
"#;
    let out = python(session, &[&rport.to_string()]);
    assert!(out.contains("Cyrus timsieved (Murder)"), "{out}");
    assert!(out.contains("[b'NO \"Authentication Error\"\\r\\n']\n[b'OK\\r\\n']"), "{out}");
    assert!(
        out.contains("[b'BYE (REFERRAL \"sieve://127.0.0.2\") \"Try Remote.\"\\r\\n']\nb''"),
        "{out}"
    );
    // Proxied.
    let mut c = std::fs::read_to_string(&mu.fe.conf).unwrap();
    c.push_str("sieve_allowreferrals: no\n");
    std::fs::write(&mu.fe.conf, c).unwrap();
    let (_proxy, pport) = mu.front("timsieved", &[]);
    std::fs::write(t.path().join("s.sieve"), "require \"fileinto\";\r\nfileinto \"INBOX.x\";\r\n").unwrap();
    for user in ["u7", "yes1"] {
        let o = std::process::Command::new("/usr/bin/sieveshell")
            .args([
                "-a",
                user,
                "-u",
                user,
                "-p",
                "testpw",
                "-e",
                "put s.sieve main\nactivate main\nlist\n",
            ])
            .arg(format!("127.0.0.1:{pport}"))
            .current_dir(t.path())
            .output()
            .unwrap();
        let out = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        assert!(out.contains("main  <- active"), "{user}: {out}");
    }
    // Each user's script is with their INBOX: u7 on the first back end,
    // yes1 on the second.
    let on = |i: usize, user: &str| mu.backs[i].dir.join(format!("sieve/{}/{user}/main.script", &user[..1])).exists();
    assert!(on(0, "u7") && !on(1, "u7"));
    assert!(on(1, "yes1") && !on(0, "yes1"));
    let log = std::fs::read_to_string(mu.backs[1].dir.join("timsieved-fe.log")).unwrap();
    assert!(log.contains("yes1 PLAIN User logged in"), "{log}");
}

/// A session that ended with LOGOUT leaves its back-end connection to the
/// user's next session (one back-end login for both), unselected; one
/// that ENABLEd something does not; a kept connection the back end has
/// closed since is not handed out.
#[test]
fn back_end_connections_are_reused_only_when_clean() {
    if !can_run("proxyd back-end reuse", &[]) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let mut mu = Murder::start(t.path());
    let (_imap, fimap) = mu.front("imapd", &[]);
    let log = mu.backs[0].dir.join("imapd-fe.log");
    let logins = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("login:") && l.contains(" u7 "))
            .count()
    };
    let before = logins();
    let out = imap_raw(fimap, &["LOGIN u7 testpw", "SELECT INBOX", "LOGOUT"]);
    assert!(out.contains("t1 OK [READ-WRITE]"), "{out}");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(logins(), before + 1, "{}", std::fs::read_to_string(&log).unwrap_or_default());
    // The second session has the first one's connection, with nothing
    // selected.
    let out = imap_raw(
        fimap,
        &["LOGIN u7 testpw", "FETCH 1 FLAGS", "SELECT INBOX", "ENABLE CONDSTORE", "LOGOUT"],
    );
    assert!(out.contains("t0 OK"), "{out}");
    assert!(out.contains("t1 BAD") || out.contains("t1 NO"), "{out}");
    assert!(out.contains("t2 OK [READ-WRITE]"), "{out}");
    assert!(out.contains("* ENABLED CONDSTORE"), "{out}");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(logins(), before + 1, "reused");
    // ENABLE stays with a connection: the next session logs in afresh.
    let out = imap_raw(fimap, &["LOGIN u7 testpw", "NOOP", "LOGOUT"]);
    assert!(out.contains("t1 OK"), "{out}");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(logins(), before + 2, "not reused after ENABLE");
    // A wrong password gets nothing, kept connection or not.
    let out = imap_raw(fimap, &["LOGIN u7 wrong", "SELECT INBOX"]);
    assert!(out.contains("t0 NO"), "{out}");
    assert!(!out.contains("t1 OK"), "{out}");
    // The back end restarts: the connection kept from the NOOP session is
    // closed, and the next login gets a new one.
    let out = imap_raw(fimap, &["LOGIN u7 testpw", "NOOP", "LOGOUT"]);
    assert!(out.contains("t1 OK"), "{out}");
    mu.backs[0].extra.clear();
    mu.restart_back(0);
    wait_for("the back end's imapd", Duration::from_secs(20), || {
        TcpStream::connect((BACK_IPS[0], mu.ports.0)).is_ok()
    });
    let n = logins();
    let out = imap_raw(fimap, &["LOGIN u7 testpw", "SELECT INBOX", "CLOSE", "LOGOUT"]);
    assert!(out.contains("t1 OK [READ-WRITE]"), "{out}");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(logins(), n + 1, "a new login after the restart");
    // Closed by the client: kept as it is.
    let out = imap_raw(fimap, &["LOGIN u7 testpw", "FETCH 1 FLAGS", "LOGOUT"]);
    assert!(out.contains("t1 BAD") || out.contains("t1 NO"), "{out}");
    assert_eq!(logins(), n + 1, "reused after CLOSE");

    // cyrus.conf's prefork=2 (as master passes it): two threads, each
    // accepting on the socket; concurrent sessions all served.
    let port = free_port();
    let l = format!("127.0.0.1:{port}");
    let args = ["-C", mu.fe.conf.to_str().unwrap(), "-L", l.as_str()];
    let mut cmd = in_namespace(&[(mu.services.clone(), "/etc/services")], &bin("imapd"), &args);
    let flog = std::fs::File::create(mu.fe.dir.join("imapd-prefork.log")).unwrap();
    cmd.env("MUMAIL_PREFORK", "2").stdout(flog.try_clone().unwrap()).stderr(flog);
    let p = Proc::spawn("imapd", &mut cmd);
    wait_tcp(port);
    let names: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", p.child.id()))
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
        .map(|c| c.trim().to_string())
        .collect();
    assert!(names.iter().any(|n| n == "imapd-1"), "{names:?}");
    let out = python(
        r#"
import imaplib, sys, threading
ok = []
def one(i):
    M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1]))
    M.login('u7' if i % 2 else 'yes1', 'testpw')
    ok.append(M.select('INBOX')[0])
    M.logout()
ts = [threading.Thread(target=one, args=(i,)) for i in range(24)]
for t in ts: t.start()
for t in ts: t.join()
print(ok.count('OK'))
"#,
        &[&port.to_string()],
    );
    assert_eq!(out.trim(), "24", "{out}");
}
