//! The MUPDATE master and replica over real sockets: Cyrus's own
//! `mupdatetest` against our master, raw sessions for the UPDATE stream,
//! a replica that survives its master's outage, and the real Cyrus 3.6
//! on the other side (a Cyrus back end registering its mailboxes with our
//! master, a Cyrus front end replicating from it, and our replica
//! following the real Cyrus master).

mod harness;

use harness::murder::*;
use harness::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn mupdatetest_against_our_master() {
    if !can_run("mupdate master", &[MUPDATETEST]) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (_sasl, mux) = sasl(&t.path().join("sasl"));
    let m = Node::start(&t.path().join("master"), &mux, true, "");
    let input = "X1 RESERVE \"user.alice\" \"backend1!default\"\n\
                 X2 ACTIVATE \"user.alice\" \"backend1!default\" \"alice\tlrswipkxtecdan\t\"\n\
                 X3 ACTIVATE \"user.bob\" \"backend2!default\" \"bob\tlrswipkxtecdan\t\"\n\
                 A01 LIST\nA02 FIND \"user.alice\"\nA04 FIND \"user.nobody\"\nA05 LIST \"backend2!\"\n\
                 A06 DELETE \"user.nobody\"\nA07 RESERVE \"user.alice\" \"backend2!default\"\n\
                 A08 NOOP\nA09 LOGOUT\n";
    let out = mupdatetest(m.port, "md5u", input);
    // The banner as Cyrus sends it, then the login.
    let norm = out.replace("\r\n", "\n");
    assert!(
        norm.contains("S: * AUTH \"PLAIN\" \"LOGIN\"\nS: * COMPRESS \"DEFLATE\"\nS: * PARTIAL-UPDATE\nS: * OK MUPDATE \"mupdate-master\" \"Cyrus IMAP\" \"3.6.1-mumail-"),
        "{out}"
    );
    assert!(out.contains("\"(master)\""), "{out}");
    assert!(out.contains("A01 OK \"Authenticated\""), "{out}");
    for want in [
        "X1 OK \"done\"",
        "X2 OK \"done\"",
        "A01 MAILBOX {10+}\nuser.alice {16+}\nbackend1!default {21+}\nalice\tlrswipkxtecdan\t\nA01 MAILBOX {8+}\nuser.bob {16+}\nbackend2!default {19+}\nbob\tlrswipkxtecdan\t\nA01 OK \"list complete\"",
        "A02 MAILBOX {10+}\nuser.alice {16+}\nbackend1!default {21+}\nalice\tlrswipkxtecdan\t\nA02 OK \"Search completed\"",
        "A04 OK \"Search completed\"",
        "A05 MAILBOX {8+}\nuser.bob {16+}\nbackend2!default {19+}\nbob\tlrswipkxtecdan\t\nA05 OK \"list complete\"",
        // Cyrus would crash here; we answer.
        "A06 NO \"mailbox doesn't exist\"",
        "A07 NO \"mailbox already exists\"",
        "A08 OK \"Noop done\"",
        "A09 OK \"bye-bye\"",
    ] {
        assert!(norm.contains(want), "missing {want:?} in\n{out}");
    }
    // Only admins may log in; a wrong password fails the same way.
    let out = mupdatetest(m.port, "u7", "A LOGOUT\n");
    assert!(out.contains("NO \"authentication failure\""), "{out}");
    assert!(m.log().contains("only admins may authenticate"), "{}", m.log());
}

#[test]
fn master_replies_and_update_streams() {
    if !can_run("mupdate master", &[]) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (_sasl, mux) = sasl(&t.path().join("sasl"));
    let mut m = Node::start(&t.path().join("master"), &mux, true, "");
    // Before login.
    let mut r = Raw::connect(m.port);
    r.send("a LIST\r\nb XYZZY\r\nc\r\nd LOGOUT\r\n");
    let out = r.until("d OK");
    assert!(out.contains("a BAD \"Please login first\"\r\n"), "{out}");
    assert!(out.contains("b BAD \"Unrecognized command\"\r\n"), "{out}");
    assert!(out.contains("* BAD \"Need command\"\r\n"), "{out}");
    assert!(out.contains("d OK \"bye-bye\"\r\n"), "{out}");
    // Argument errors, the mechanism as an atom, the stream.
    let mut w = Raw::login(m.port, "md5u");
    w.send("e FIND\r\nf FIND \"a\" \"b\"\r\ng UPDATE \"\"\r\nh DEACTIVATE \"user.none\" \"b1!x\"\r\n");
    let out = w.until("h ");
    assert!(out.contains("e BAD \"Missing arguments\"\r\n"), "{out}");
    assert!(out.contains("f BAD \"Extra arguments\"\r\n"), "{out}");
    assert!(out.contains("g BAD \"Badly formed arguments\"\r\n"), "{out}");
    assert!(out.contains("h NO \"mailbox doesn't exist\"\r\n"), "{out}");
    w.call("i", "ACTIVATE \"user.a\" \"b1!default\" \"a\tlrs\t\"");
    w.call("j", "ACTIVATE \"user.b\" \"b2!default\" \"b\tlrs\t\"");
    let mut all = Raw::login(m.port, "md5u");
    all.send("U01 UPDATE\r\n");
    let dump = all.until("U01 OK \"streaming starts\"");
    assert!(dump.starts_with(&mailbox("U01", "user.a", "b1!default", "a\tlrs\t")), "{dump}");
    assert!(dump.contains(&mailbox("U01", "user.b", "b2!default", "b\tlrs\t")), "{dump}");
    let mut part = Raw::login(m.port, "md5u");
    part.send("P UPDATE \"b2\"\r\n");
    let dump = part.until("P OK \"streaming starts\"");
    assert!(!dump.contains("user.a") && dump.contains("user.b"), "{dump}");
    // Changes arrive without a NOOP (Cyrus waits up to 5 s).
    w.call("k", "ACTIVATE \"user.c\" \"b1!default\" \"c\tlrs\t\"");
    let got = all.until("user.c {10+}\r\nb1!default");
    assert!(got.contains("U01 MAILBOX {6+}\r\nuser.c {10+}\r\nb1!default"), "{got}");
    // A move from b1 to b2 reaches the partial stream; the DELETE too.
    w.call("l", "DEACTIVATE \"user.a\" \"b2!default\"");
    let got = part.until("user.a {10+}\r\nb2!default");
    assert!(got.contains("P RESERVE {6+}\r\nuser.a {10+}\r\nb2!default\r\n"), "{got}");
    w.call("m", "DELETE \"user.a\"");
    let got = part.until("P DELETE {6+}\r\nuser.a");
    assert!(got.contains("P DELETE {6+}\r\nuser.a\r\n"), "{got}");
    // While streaming only NOOP and LOGOUT are legal; NOOP flushes first.
    part.send("n FIND \"user.b\"\r\no NOOP\r\n");
    let out = part.until("o OK");
    assert!(out.contains("n BAD \"not legal when streaming\"\r\n"), "{out}");
    // user.c is on b1: not for the b2 stream.
    assert!(!out.contains("user.c"), "{out}");
    // A wrong password, a second AUTHENTICATE.
    let mut r = Raw::connect(m.port);
    let b64 = mumail::util::base64_encode(b"\0md5u\0wrong");
    r.send(&format!("A AUTHENTICATE PLAIN {b64}\r\n"));
    assert!(r.until("A ").contains("A NO \"authentication failure\""));
    w.send("z AUTHENTICATE \"PLAIN\" \"=\"\r\n");
    assert!(w.until("z ").contains("z BAD \"already authenticated\""));
    // The table is durable: a killed master comes back with it.
    m.kill();
    m.restart();
    let mut r = Raw::login(m.port, "md5u");
    let out = r.call("q", "LIST");
    assert!(out.contains("user.b") && out.contains("user.c") && !out.contains("user.a"), "{out}");
    // COMPRESS after login; the session goes on deflated (checked by
    // mupdatetest's zlib in the real-client test; here only the reply).
    let mut r = Raw::login(m.port, "md5u");
    assert!(r.call("c", "COMPRESS \"DEFLATE\"").contains("c OK DEFLATE active"));
}

#[test]
fn replica_follows_the_master_and_survives_its_outage() {
    if !can_run("mupdate replica", &[]) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (_sasl, mux) = sasl(&t.path().join("sasl"));
    let mut m = Node::start(&t.path().join("master"), &mux, true, "");
    let mut w = Raw::login(m.port, "md5u");
    w.call("a", "ACTIVATE \"user.alice\" \"backend1!default\" \"alice\tlrswipkxtecdan\t\"");
    w.call("b", "RESERVE \"user.bob\" \"backend2!default\"");
    let creds = "mupdate_username: md5u\nmupdate_authname: md5u\nmupdate_password: testpw\nmupdate_retry_delay: 1\n";
    let fe = Node::start(
        &t.path().join("fe"),
        &mux,
        false,
        &format!("mupdate_server: 127.0.0.1:{}\n{creds}", m.port),
    );
    let banner = Raw::connect(fe.port).banner;
    assert!(banner.contains(&format!("\"mupdate://127.0.0.1:{}\"", m.port)), "{banner}");
    let mut r = Raw::login(fe.port, "md5u");
    wait_for("replica synced", Duration::from_secs(20), || {
        r.call("f", "FIND \"user.alice\"").contains("f MAILBOX")
    });
    assert!(r
        .call("g", "FIND \"user.bob\"")
        .contains("g RESERVE {8+}\r\nuser.bob {16+}\r\nbackend2!default\r\n"));
    r.send("h ACTIVATE \"user.x\" \"b!p\" \"\"\r\n");
    assert!(r.until("h ").contains("h BAD \"read-only session\""));
    // A stream on the replica sees the master's changes.
    let mut s = Raw::login(fe.port, "md5u");
    s.send("U UPDATE\r\n");
    s.until("U OK \"streaming starts\"");
    w.call("c", "ACTIVATE \"user.carol\" \"backend1!default\" \"carol\tlrs\t\"");
    assert!(s.until("user.carol {16+}").contains("U MAILBOX {10+}\r\nuser.carol"));
    // The kick socket answers once the replica is current.
    let kick = fe.dir.join("conf/socket/mupdate.target");
    let mut k = std::os::unix::net::UnixStream::connect(&kick).unwrap();
    k.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut ok = [0u8; 2];
    k.read_exact(&mut ok).unwrap();
    assert_eq!(&ok, b"ok");
    // The master dies: the replica keeps answering from its copy.
    m.kill();
    let out = r.call("i", "FIND \"user.carol\"");
    assert!(out.contains("i MAILBOX"), "{out}");
    let out = r.call("j", "LIST");
    assert!(out.contains("user.alice") && out.contains("user.carol"), "{out}");
    // Changes made while it was away (another master on the same table
    // and port) reach the replica after it reconnects: a full resync.
    m.restart();
    let mut w = Raw::login(m.port, "md5u");
    w.call("d", "DELETE \"user.alice\"");
    w.call("e", "ACTIVATE \"user.dave\" \"backend2!default\" \"dave\tlrs\t\"");
    wait_for("replica resynced", Duration::from_secs(30), || {
        let out = r.call("k", "LIST");
        out.contains("user.dave") && !out.contains("user.alice")
    });
    let got = s.until("user.dave {16+}");
    assert!(got.contains("U MAILBOX {9+}\r\nuser.dave"), "{got}");
    assert!(got.contains("U DELETE {10+}\r\nuser.alice\r\n"), "{got}");
    assert!(fe.log().contains("synchronized with"), "{}", fe.log());
}

#[test]
fn real_cyrus_backend_registers_with_our_master() {
    if !can_run("cyrus back end + our master", &[CYRUS_MASTER, MUPDATETEST]) {
        return;
    }
    let t = cyrus_tempdir();
    let (_sasl, mux) = sasl(&t.path().join("sasl"));
    let m = Node::start(&t.path().join("master"), &mux, true, "");
    let iport = free_port();
    let creds = "mupdate_username: md5u\nmupdate_authname: md5u\nmupdate_password: testpw\nproxyservers: md5u\n";
    let _cy = cyrus_node(
        &t.path().join("cyrus-b1"),
        &mux,
        "backend1",
        &format!("mupdate_server: 127.0.0.1:{}\n{creds}", m.port),
        &format!("  imap cmd=\"imapd -C CONF\" listen=\"127.0.0.1:{iport}\" prefork=0\n"),
    );
    wait_tcp(iport);
    let out = imap_admin(iport, &["CREATE user.alice", "CREATE user.alice.Sent", "CREATE user.bob"]);
    assert!(
        out.contains("CREATE user.alice -> OK") && out.contains("CREATE user.bob -> OK"),
        "{out}"
    );
    let out = mupdatetest(m.port, "md5u", "A01 LIST\nA02 LOGOUT\n").replace("\r\n", "\n");
    for name in ["user.alice", "user.alice.Sent", "user.bob"] {
        let want = format!("{name} {{16+}}\nbackend1!default {{");
        assert!(out.contains(&want), "missing {name} in\n{out}");
    }
    assert!(
        out.contains("md5u\tlrswipkxtecdan\t") || out.contains("alice\tlrswipkxtecdan\t"),
        "{out}"
    );
    // Delete and rename reach the master.
    let out = imap_admin(
        iport,
        &[
            "SETACL user.bob md5u lrswipkxtecda",
            "DELETE user.bob",
            "RENAME user.alice.Sent user.alice.Archive",
        ],
    );
    assert!(out.contains("DELETE user.bob -> OK"), "{out}");
    assert!(out.contains("RENAME user.alice.Sent user.alice.Archive -> OK"), "{out}");
    let out = mupdatetest(m.port, "md5u", "A01 LIST\nA02 LOGOUT\n").replace("\r\n", "\n");
    assert!(!out.contains("{8+}\nuser.bob {") && !out.contains("user.alice.Sent {"), "{out}");
    assert!(out.contains("user.alice.Archive"), "{out}");
    // ctl_mboxlist -m: the back end pushes its whole list; an entry the
    // master has for it but the back end does not is removed.
    let mut w = Raw::login(m.port, "md5u");
    w.call("a", "ACTIVATE \"user.ghost\" \"backend1!default\" \"ghost\tlrs\t\"");
    let o = Command::new("/usr/lib/cyrus/bin/ctl_mboxlist")
        .args(["-C", t.path().join("cyrus-b1/imapd.conf").to_str().unwrap(), "-m"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let out = w.call("b", "LIST \"backend1!\"");
    assert!(!out.contains("user.ghost") && out.contains("user.alice.Archive"), "{out}");
}

#[test]
fn real_cyrus_frontend_replicates_from_our_master() {
    if !can_run("cyrus replica of our master", &[CYRUS_MASTER, CYRUS_MUPDATE, MUPDATETEST]) {
        return;
    }
    let t = cyrus_tempdir();
    let (_sasl, mux) = sasl(&t.path().join("sasl"));
    let m = Node::start(&t.path().join("master"), &mux, true, "");
    let mut w = Raw::login(m.port, "md5u");
    w.call("a", "ACTIVATE \"user.alice\" \"backend1!default\" \"alice\tlrswipkxtecdan\t\"");
    w.call("b", "ACTIVATE \"user.bob\" \"backend2!default\" \"bob\tlrswipkxtecdan\t\"");
    let port = free_port();
    let creds = "mupdate_username: md5u\nmupdate_authname: md5u\nmupdate_password: testpw\nmupdate_retry_delay: 1\n";
    let _cy = cyrus_node(
        &t.path().join("cyrus-fe"),
        &mux,
        "frontend",
        &format!("mupdate_server: 127.0.0.1:{}\n{creds}", m.port),
        &format!("  mupdate cmd=\"mupdate -C CONF\" listen=\"127.0.0.1:{port}\" prefork=1\n"),
    );
    wait_tcp(port);
    let mut out = String::new();
    wait_for("cyrus replica synced", Duration::from_secs(30), || {
        out = mupdatetest(port, "md5u", "A01 FIND \"user.bob\"\nA02 LOGOUT\n");
        out.contains("A01 MAILBOX")
    });
    assert!(out.contains(&format!("mupdate://127.0.0.1:{}", m.port)), "{out}");
    // A change on our master streams to the real replica.
    w.call("c", "ACTIVATE \"user.carol\" \"backend1!default\" \"carol\tlrs\t\"");
    wait_for("cyrus replica got carol", Duration::from_secs(30), || {
        out = mupdatetest(port, "md5u", "A01 FIND \"user.carol\"\nA02 LOGOUT\n");
        out.contains("A01 MAILBOX")
    });
}

#[test]
fn our_replica_follows_the_real_cyrus_master() {
    if !can_run("our replica of a cyrus master", &[CYRUS_MASTER, CYRUS_MUPDATE, MUPDATETEST]) {
        return;
    }
    let t = cyrus_tempdir();
    let (_sasl, mux) = sasl(&t.path().join("sasl"));
    let mport = free_port();
    let _cy = cyrus_node(
        &t.path().join("cyrus-master"),
        &mux,
        "mupdate-master",
        "",
        &format!("  mupdate cmd=\"mupdate -C CONF -m\" listen=\"127.0.0.1:{mport}\" prefork=1\n"),
    );
    wait_tcp(mport);
    let out = mupdatetest(
        mport,
        "md5u",
        "X1 ACTIVATE \"user.alice\" \"backend1!default\" \"alice\tlrswipkxtecdan\t\"\nX2 LOGOUT\n",
    );
    assert!(out.contains("X1 OK"), "{out}");
    let creds = "mupdate_username: md5u\nmupdate_authname: md5u\nmupdate_password: testpw\nmupdate_retry_delay: 1\n";
    let fe = Node::start(
        &t.path().join("fe"),
        &mux,
        false,
        &format!("mupdate_server: 127.0.0.1:{mport}\n{creds}"),
    );
    let mut r = Raw::login(fe.port, "md5u");
    wait_for("our replica synced", Duration::from_secs(20), || {
        r.call("f", "FIND \"user.alice\"").contains("f MAILBOX")
    });
    // Cyrus streams with a delay of up to 5 s.
    let out = mupdatetest(
        mport,
        "md5u",
        "X1 ACTIVATE \"user.bob\" \"backend2!default\" \"bob\tlrs\t\"\nX2 LOGOUT\n",
    );
    assert!(out.contains("X1 OK"), "{out}");
    wait_for("our replica got bob", Duration::from_secs(30), || {
        r.call("g", "FIND \"user.bob\"").contains("g MAILBOX")
    });
}

/// Our back end pushing to `master_port`: creates, renames, deletes and
/// ACL changes appear on the master; without a master, nothing changes.
fn our_backend_pushes(master_port: u16, dir: &Path, mut master: impl FnMut(&str) -> String, mut stop_master: impl FnMut()) {
    let creds = "mupdate_username: md5u\nmupdate_authname: md5u\nmupdate_password: testpw\nproxyservers: md5u\n";
    let b = Backend::start(
        dir,
        &format!("unixhierarchysep: no\nmupdate_server: 127.0.0.1:{master_port}\n{creds}"),
    );
    let out = imap_admin(
        b.imap_port,
        &[
            "CREATE user.erin",
            "CREATE user.erin.Drafts",
            "CREATE shared",
            "SETACL shared anyone lrs",
            "RENAME user.erin.Drafts user.erin.Old",
        ],
    );
    assert!(!out.contains("-> NO") && !out.contains("-> BAD"), "{out}");
    let list = master("LIST").replace("\r\n", "\n");
    assert!(list.contains("user.erin {16+}\nbackend1!default {"), "{list}");
    assert!(list.contains("erin\tlrswipkxtecdan\t"), "{list}");
    assert!(list.contains("user.erin.Old {16+}\nbackend1!default"), "{list}");
    assert!(!list.contains("user.erin.Drafts"), "{list}");
    assert!(
        list.contains("shared {16+}\nbackend1!default {") && list.contains("anyone\tlrs\t"),
        "{list}"
    );
    // (An admin deletes what the ACL lets it, as in Cyrus.)
    let out = imap_admin(b.imap_port, &["SETACL user.erin.Old md5u x", "DELETE user.erin.Old"]);
    assert!(out.contains("-> OK"), "{out}");
    let list = master("LIST");
    assert!(!list.contains("user.erin.Old"), "{list}");
    // The master is gone: a create fails cleanly and leaves nothing.
    stop_master();
    let out = imap_admin(b.imap_port, &["CREATE user.frank"]);
    assert!(out.contains("CREATE user.frank -> NO"), "{out}");
    let listed = python(
        "import imaplib,sys\nM=imaplib.IMAP4('127.0.0.1',int(sys.argv[1]))\nM.login('md5u','testpw')\nprint(M.list('\"\"','user.frank*'))\nprint(M.create('user.frank'))\n",
        &[&b.imap_port.to_string()],
    );
    assert!(!listed.contains("\"user.frank\""), "{listed}");
    assert!(listed.contains("no connection to server"), "{listed}");
}

#[test]
fn our_backend_registers_with_our_master() {
    if !can_run("our back end + our master", &[]) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (_sasl, mux) = sasl(&t.path().join("sasl"));
    let mut m = Node::start(&t.path().join("master"), &mux, true, "");
    let port = m.port;
    let master = |cmd: &str| Raw::login(port, "md5u").call("q", cmd);
    our_backend_pushes(port, &t.path().join("b1"), master, || m.kill());
}

#[test]
fn our_backend_registers_with_the_real_cyrus_master() {
    if !can_run("our back end + cyrus master", &[CYRUS_MASTER, CYRUS_MUPDATE]) {
        return;
    }
    let t = cyrus_tempdir();
    let (_sasl, mux) = sasl(&t.path().join("sasl"));
    let mport = free_port();
    let mut cy = Some(cyrus_node(
        &t.path().join("cyrus-master"),
        &mux,
        "mupdate-master",
        "",
        &format!("  mupdate cmd=\"mupdate -C CONF -m\" listen=\"127.0.0.1:{mport}\" prefork=1\n"),
    ));
    wait_tcp(mport);
    let master = |cmd: &str| mupdatetest(mport, "md5u", &format!("Q {cmd}\nZ LOGOUT\n"));
    our_backend_pushes(mport, &t.path().join("b1"), master, || {
        if let Some(mut p) = cy.take() {
            p.stop();
            let _ = p.child.wait();
        }
    });
}

#[test]
fn ctl_mboxlist_m_makes_the_master_agree() {
    if !can_run("ctl_mboxlist -m", &[]) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (_sasl, mux) = sasl(&t.path().join("sasl"));
    let m = Node::start(&t.path().join("master"), &mux, true, "");
    let creds = "mupdate_username: md5u\nmupdate_authname: md5u\nmupdate_password: testpw\nproxyservers: md5u\n";
    let b = Backend::start(
        &t.path().join("b1"),
        &format!("unixhierarchysep: no\nmupdate_server: 127.0.0.1:{}\n{creds}", m.port),
    );
    let out = imap_admin(b.imap_port, &["CREATE user.gina", "CREATE user.hal", "CREATE user.ivy"]);
    assert!(!out.contains("-> NO"), "{out}");
    // The master drifts: a ghost, a lost entry, a stale ACL, a mailbox
    // it places on another server.
    let mut w = Raw::login(m.port, "md5u");
    w.call("a", "ACTIVATE \"user.ghost\" \"backend1!default\" \"ghost\tlrs\t\"");
    w.call("b", "DELETE \"user.gina\"");
    w.call("c", "ACTIVATE \"user.hal\" \"backend1!default\" \"hal\tl\t\"");
    w.call("d", "ACTIVATE \"user.ivy\" \"backend2!default\" \"ivy\tlrs\t\"");
    let ctl = |flags: &[&str]| {
        let o = Command::new(bin("ctl_mboxlist"))
            .arg("-C")
            .arg(&b.conf)
            .args(flags)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
        )
    };
    let (code, out) = ctl(&["-m", "-w"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("Remove from MUPDATE: user.ghost\n"), "{out}");
    assert!(
        out.contains("Force Activate: user.gina\n") && out.contains("Force Activate: user.hal\n"),
        "{out}"
    );
    assert!(out.contains("Remove Local Mailbox: user.ivy\n"), "{out}");
    // A dry run changes nothing.
    assert!(w.call("e", "FIND \"user.ghost\"").contains("e MAILBOX"));
    let (code, out) = ctl(&["-m", "-a"]);
    assert_eq!(code, Some(0), "{out}");
    let list = w.call("f", "LIST").replace("\r\n", "\n");
    assert!(!list.contains("user.ghost"), "{list}");
    assert!(list.contains("user.gina {16+}\nbackend1!default"), "{list}");
    assert!(list.contains("hal\tlrswipkxtecdan\t"), "{list}");
    // -a: the local copy wins.
    assert!(list.contains("user.ivy {16+}\nbackend1!default"), "{list}");
    // Without -a a mailbox the master places elsewhere goes locally.
    w.call("g", "ACTIVATE \"user.ivy\" \"backend2!default\" \"ivy\tlrs\t\"");
    let (code, out) = ctl(&["-m"]);
    assert_eq!(code, Some(0), "{out}");
    let listed = imap_admin(b.imap_port, &["EXAMINE user.ivy"]);
    assert!(listed.contains("EXAMINE user.ivy -> NO"), "{listed}");
    assert!(w.call("h", "FIND \"user.ivy\"").contains("backend2!default"));
    // No master: a temporary failure.
    drop(m);
    let (code, out) = ctl(&["-m"]);
    assert_eq!(code, Some(75), "{out}");
    assert!(out.contains("couldn't connect to mupdate server"), "{out}");
}

#[test]
fn lmtp_through_our_front_end_reaches_each_users_back_end() {
    if !can_run("lmtpproxyd", &[]) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let mut mu = Murder::start(t.path());
    let (_proxy, fport) = mu.front("lmtpd", &["-a"]);
    let backs = &mut mu.backs;
    let msg = "From: s@example.org\r\nSubject: via the murder\r\nMessage-ID: <m1@example.org>\r\n\r\n.hello\r\n";
    let out = lmtp_session(
        fport,
        &[
            "LHLO hub",
            "MAIL FROM:<s@example.org>",
            "RCPT TO:<alice@example.org>",
            "RCPT TO:<nobody@example.org>",
            "RCPT TO:<Bob+x@example.org>",
            "DATA",
            "QUIT",
        ],
        msg,
        2,
    );
    let norm = out.replace("\r\n", "\n");
    assert!(norm.contains("Cyrus LMTP 3.6.1-mumail"), "{out}");
    assert!(norm.contains("C: RCPT TO:<alice@example.org>\n250 2.1.5 ok\n"), "{out}");
    assert!(norm.contains("C: RCPT TO:<nobody@example.org>\n550-Mailbox unknown."), "{out}");
    assert!(norm.contains("C: DATA\n354 go ahead\n250 2.1.5 Success SESSIONID=<"), "{out}");
    // One reply per accepted recipient, each from its back end.
    assert!(
        norm.contains("250 2.1.5 Success SESSIONID=<127.0.0.2-") && norm.contains("250 2.1.5 Success SESSIONID=<127.0.0.3-"),
        "{out}"
    );
    assert!(norm.contains("C: QUIT\n221 2.0.0 bye"), "{out}");
    let c = inbox_count(backs[0].imap_port, "user.alice");
    assert!(c.contains("'1'"), "alice: {c}");
    assert!(inbox_count(backs[1].imap_port, "user.bob").contains("'1'"), "bob");
    // Bob's back end down: his delivery is deferred, Alice's goes on.
    backs[1].extra.clear();
    let out = lmtp_session(
        fport,
        &[
            "LHLO hub",
            "MAIL FROM:<s@example.org>",
            "RCPT TO:<bob@example.org>",
            "RCPT TO:<alice@example.org>",
            "DATA",
            "QUIT",
        ],
        &msg.replace("<m1@", "<m2@"),
        2,
    );
    let norm = out.replace("\r\n", "\n");
    assert!(
        norm.contains("354 go ahead\n451 4.4.3 Remote server unavailable\n250 2.1.5 Success"),
        "{out}"
    );
    let c = inbox_count(backs[0].imap_port, "user.alice");
    assert!(c.contains("'2'"), "alice: {c}");
    // The message is passed on in raw chunks: one of 300 KB with
    // dot-stuffed lines, its final dot and the next commands in one
    // write; the back end stores it un-stuffed, and RSET and NOOP after it
    // are answered.
    let script = r#"
import socket, sys
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
f = s.makefile('rb')
def reply():
    out = []
    while True:
        l = f.readline().decode()
        out.append(l.rstrip())
        if l[3:4] != '-':
            return ' | '.join(out)
reply()
s.sendall(b'LHLO hub\r\n'); reply()
s.sendall(b'MAIL FROM:<s@example.org>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n')
print(reply(), reply(), reply())
body = b'Subject: big\r\nMessage-ID: <m3@example.org>\r\n\r\n' + b'..starts with a dot\r\n' * 15000
s.sendall(body + b'.\r\nRSET\r\nNOOP\r\n')
print('final', reply()); print('rset', reply()); print('noop', reply())
# A small one on the same session: the kept back-end connection offers
# CHUNKING, so it goes whole with its MAIL and RCPT (BDAT), un-stuffed,
# with a bare LF made CRLF and the command after it answered.
small = b'Subject: small\r\nMessage-ID: <m4@example.org>\r\n\r\n..one dot\r\n.\r\n'
s.sendall(b'MAIL FROM:<s@example.org>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n')
print(reply(), reply(), reply())
s.sendall(small.replace(b'<m4', b'<m5').replace(b'\r\n\r\n..one', b'\r\n\r\nbare\nlf\r\n..one'))
print('small', reply())
s.sendall(b'NOOP\r\n'); print('noop2', reply())
# Alice over quota: her back end refuses at RCPT, the one answer to BDAT
# is read, and the session goes on in step.
import imaplib
A = imaplib.IMAP4('127.0.0.1', int(sys.argv[2])); A.login('md5u', 'testpw')
print('setquota', A.setquota('user.alice', '(STORAGE 1)'))
s.sendall(b'MAIL FROM:<s@example.org>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n')
print(reply(), reply(), reply())
s.sendall(small.replace(b'<m4', b'<m6') + b'NOOP\r\n')
print('overquota', reply()); print('noop3', reply())
print('unsetquota', A.setquota('user.alice', '()'))
# No dot-led line: passed on as it came, the bare LF made CRLF by the back end.
s.sendall(b'MAIL FROM:<s@example.org>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n')
print(reply(), reply(), reply())
s.sendall(b'Subject: plain\r\nMessage-ID: <m7@example.org>\r\n\r\nplain\nbare lf\r\n.\r\n')
print('plain', reply())
"#;
    let out = python(script, &[&fport.to_string(), &backs[0].imap_port.to_string()]);
    assert!(out.contains("354 go ahead"), "{out}");
    assert!(
        out.contains("final 250 2.1.5 Success") && out.contains("rset 250") && out.contains("noop 250"),
        "{out}"
    );
    // Read as alice (the admin md5u acting for her: an admin reads only
    // what the ACL grants, as in Cyrus).
    let fetched = python(
        "import imaplib,sys\nM=imaplib.IMAP4('127.0.0.1',int(sys.argv[1]))\n\
         M.authenticate('PLAIN',lambda _: b'alice\\0md5u\\0testpw')\nM.select('INBOX')\n\
         t,d=M.fetch('3','(RFC822.SIZE BODY.PEEK[TEXT]<0.40>)')\nprint(d)\n\
         t,d=M.fetch('1','(BODY.PEEK[HEADER])')\nprint(d[0][1].decode())\n\
         t,d=M.fetch('3','(BODY.PEEK[TEXT])')\nprint('textlen', len(d[0][1]), d[0][1].count(b'\\r\\n.starts'))\n",
        &[&backs[0].imap_port.to_string()],
    );
    assert!(fetched.contains(".starts with a dot\\r\\n.starts"), "{fetched}");
    // All of it, un-stuffed (passed on in pieces, none lost or repeated).
    assert!(fetched.contains("textlen 300000 14999"), "{fetched}");
    assert!(out.contains("small 250 2.1.5 Success") && out.contains("noop2 250"), "{out}");
    assert!(out.contains("overquota 452 4.2.2 Over quota") && out.contains("noop3 250"), "{out}");
    let small = python(
        "import imaplib,sys\nM=imaplib.IMAP4('127.0.0.1',int(sys.argv[1]))\n\
         M.authenticate('PLAIN',lambda _: b'alice\\0md5u\\0testpw')\nM.select('INBOX')\n\
         t,d=M.fetch('4:5','(BODY.PEEK[TEXT] BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])')\nprint(d)\n",
        &[&backs[0].imap_port.to_string()],
    );
    assert!(
        small.contains("bare\\r\\nlf\\r\\n.one dot\\r\\n") && small.contains("<m5@example.org>"),
        "{small}"
    );
    assert!(out.contains("plain 250 2.1.5 Success"), "{out}");
    assert!(
        small.contains("'plain\\r\\nbare lf\\r\\n'") && small.contains("<m7@example.org>"),
        "{small}"
    );
    // The trace fields of both hops, as in a Cyrus Murder: the back end's
    // (its Return-Path replacing the front end's), then the front end's,
    // which added the missing Date.
    let header = fetched.split_once('\n').map_or("", |x| x.1);
    assert!(
        header.starts_with("Return-Path: <s@example.org>\r\nReceived: from lmtpproxyd ("),
        "{header}"
    );
    assert!(header.contains("X-Cyrus-Session-Id: 127.0.0.2-"), "{header}");
    assert!(header.contains("Received: from hub (localhost [127.0.0.1])\r\n\t by "), "{header}");
    for (field, n) in [("Return-Path:", 1), ("Received:", 2), ("X-Cyrus-Session-Id:", 2), ("Date:", 1)] {
        assert_eq!(header.matches(field).count(), n, "{field} in {header}");
    }
    assert!(header.contains("Message-ID: <m1@example.org>\r\nDate: "), "{header}");
}

#[test]
fn imap_and_pop3_through_our_front_end() {
    if !can_run("proxyd", &[]) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let mut mu = Murder::start(t.path());
    let (_lmtp, lport) = mu.front("lmtpd", &["-a"]);
    let msg = "From: s@example.org\r\nSubject: hello u7\r\nMessage-ID: <p1@example.org>\r\n\r\nbody\r\n";
    let out = lmtp_session(
        lport,
        &[
            "LHLO hub",
            "MAIL FROM:<s@example.org>",
            "RCPT TO:<u7@example.org>",
            "RCPT TO:<yes1@example.org>",
            "DATA",
            "QUIT",
        ],
        msg,
        2,
    );
    assert_eq!(out.matches("250 2.1.5 Success").count(), 2, "{out}");
    let (_imap, iport) = mu.front("imapd", &[]);
    // Each user reaches their own back end through the same front end.
    let script = "import imaplib,sys\nM=imaplib.IMAP4('127.0.0.1',int(sys.argv[1]))\nprint(M.welcome)\n\
                  print(M.login(sys.argv[2],'testpw'))\nprint(M.select('INBOX'))\n\
                  print(M.fetch('1','(BODY.PEEK[HEADER.FIELDS (SUBJECT)])'))\nprint(M.create('Sent'))\nprint(M.list())\nprint(M.logout())\n";
    let out = python(script, &[&iport.to_string(), "u7"]);
    assert!(
        out.contains("frontend Cyrus IMAP") && out.contains("MUPDATE=mupdate://127.0.0.1:"),
        "{out}"
    );
    assert!(out.contains("('OK', [b'[CAPABILITY"), "{out}");
    assert!(out.contains("Subject: hello u7"), "{out}");
    assert!(out.contains("Sent'"), "{out}");
    let out = python(script, &[&iport.to_string(), "yes1"]);
    assert!(out.contains("Subject: hello u7"), "{out}");
    // The folder created through the front end lives on u7's back end and
    // is in the directory.
    let mut w = Raw::login(mu._master.port, "md5u");
    assert!(w.call("f", "FIND \"user.u7.Sent\"").contains("127.0.0.2!default"));
    // A wrong password never reaches a back end.
    let out = python(
        "import imaplib,sys\nM=imaplib.IMAP4('127.0.0.1',int(sys.argv[1]))\ntry:\n    M.login('u7','bad')\nexcept Exception as e:\n    print('refused', e)\n",
        &[&iport.to_string()],
    );
    assert!(out.contains("refused") && out.contains("Login failed"), "{out}");
    // POP3 too.
    let (_pop, pport) = mu.front("pop3d", &[]);
    let out = python(
        "import poplib,sys\nP=poplib.POP3('127.0.0.1',int(sys.argv[1]))\nP.user('yes1')\nprint(P.pass_('testpw'))\nprint(P.stat())\nprint(b'\\n'.join(P.retr(1)[1]).decode())\nprint(P.quit())\n",
        &[&pport.to_string()],
    );
    assert!(out.contains("(1, "), "{out}");
    assert!(out.contains("Subject: hello u7"), "{out}");
    // A back end cut mid-session: the client is told, the other back
    // end's users go on.
    let mut s = TcpStream::connect(("127.0.0.1", iport)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut buf = vec![0u8; 4096];
    let _ = s.read(&mut buf).unwrap();
    s.write_all(b"a LOGIN yes1 testpw\r\nb SELECT INBOX\r\n").unwrap();
    let mut got = String::new();
    while !got.contains("b OK") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "{got}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    mu.backs[1].extra.clear();
    let mut got = String::new();
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    assert!(got.contains("* BYE"), "{got}");
    let out = python(
        "import imaplib,sys\nM=imaplib.IMAP4('127.0.0.1',int(sys.argv[1]))\ntry:\n    print(M.login('yes1','testpw'))\nexcept Exception as e:\n    print('refused', e)\n",
        &[&iport.to_string()],
    );
    assert!(out.contains("refused") && out.contains("UNAVAILABLE"), "{out}");
    let out = python(script, &[&iport.to_string(), "u7"]);
    assert!(out.contains("Subject: hello u7"), "{out}");
}

/// Our front end (replica and proxies) in front of a real Cyrus 3.6 back
/// end registered with our master: login, INBOX, LMTP through the proxy.
#[test]
fn real_cyrus_backend_through_our_front_end() {
    if !can_run("cyrus back end behind our front end", &[CYRUS_MASTER]) {
        return;
    }
    let t = cyrus_tempdir();
    let (_sasl, mux) = sasl(&t.path().join("sasl"));
    let m = Node::start(&t.path().join("master"), &mux, true, "");
    let (iport, lport, sport) = (free_port(), free_port(), free_port());
    let creds = "mupdate_username: md5u\nmupdate_authname: md5u\nmupdate_password: testpw\n";
    // Every node finds the others' IMAP and LMTP at these ports (the same
    // on each address), as in a real murder's /etc/services.
    let services = t.path().join("services");
    std::fs::write(&services, format!("imap {iport}/tcp\nlmtp {lport}/tcp\nsieve {sport}/tcp\n")).unwrap();
    let cyrus_sieve = t.path().join("cyrus-sieve");
    std::fs::create_dir_all(&cyrus_sieve).unwrap();
    let _ = std::process::Command::new("chown")
        .args(["cyrus", cyrus_sieve.to_str().unwrap()])
        .status();
    let _cy = cyrus_node_in(
        &t.path().join("cyrus-b"),
        &mux,
        "127.0.0.4",
        &format!(
            "mupdate_server: 127.0.0.1:{}\n{creds}proxyservers: md5u\nlmtp_admins: md5u\n\
             allowusermoves: yes\nproxy_authname: md5u\nproxy_password: testpw\nsievedir: {}\n",
            m.port,
            cyrus_sieve.display()
        ),
        &format!(
            "  imap cmd=\"imapd -C CONF\" listen=\"127.0.0.4:{iport}\" prefork=0\n  lmtp cmd=\"lmtpd -C CONF\" listen=\"127.0.0.4:{lport}\" prefork=0\n  sieve cmd=\"timsieved -C CONF\" listen=\"127.0.0.4:{sport}\" prefork=0\n"
        ),
        &[(services.clone(), "/etc/services")],
    );
    let ready = Instant::now();
    while TcpStream::connect(("127.0.0.4", iport)).is_err() {
        assert!(ready.elapsed() < Duration::from_secs(20), "cyrus imapd on 127.0.0.4");
        std::thread::sleep(Duration::from_millis(100));
    }
    let script =
        "import imaplib,sys\nM=imaplib.IMAP4('127.0.0.4',int(sys.argv[1]))\nM.login('md5u','testpw')\nprint(M.create('user.u7'))\n";
    assert!(python(script, &[&iport.to_string()]).contains("OK"));
    let fe = Node::start(
        &t.path().join("fe"),
        &mux,
        false,
        &format!("mupdate_server: 127.0.0.1:{}\n{creds}proxy_authname: md5u\nproxy_password: testpw\nmupdate_retry_delay: 1\nunixhierarchysep: no\n", m.port),
    );
    let start = |prog: &str, flags: &[&str]| {
        let port = free_port();
        let log = std::fs::File::create(t.path().join(format!("fe-{prog}.log"))).unwrap();
        let l = format!("127.0.0.1:{port}");
        let mut args = vec!["-C", fe.conf.to_str().unwrap(), "-L", l.as_str()];
        args.extend_from_slice(flags);
        let mut cmd = in_namespace(&[(services.clone(), "/etc/services")], &bin(prog), &args);
        cmd.stdout(log.try_clone().unwrap()).stderr(log);
        let p = Proc::spawn(prog, &mut cmd);
        wait_tcp(port);
        (p, port)
    };
    let (_l, fl) = start("lmtpd", &["-a"]);
    // One message to u7 through the front end's LMTP: the transcript.
    let deliver_u7 = |msg: &str| {
        lmtp_session(
            fl,
            &["LHLO hub", "MAIL FROM:<s@example.org>", "RCPT TO:<u7@example.org>", "DATA", "QUIT"],
            msg,
            1,
        )
        .replace("\r\n", "\n")
    };
    let msg = "From: s@example.org\r\nSubject: to cyrus via our proxy\r\nMessage-ID: <c1@example.org>\r\n\r\nbody\r\n";
    let out = deliver_u7(msg);
    assert!(out.contains("354 go ahead\n250 2.1.5 Success SESSIONID=<127.0.0.4-"), "{out}");
    let (_i, fi) = start("imapd", &[]);
    let out = python(
        "import imaplib,sys\nM=imaplib.IMAP4('127.0.0.1',int(sys.argv[1]))\nprint(M.login('u7','testpw'))\nprint(M.select('INBOX'))\nprint(M.fetch('1','(BODY.PEEK[HEADER.FIELDS (SUBJECT)])'))\nprint(M.logout())\n",
        &[&fi.to_string()],
    );
    // The real back end's own login reply reaches the client.
    assert!(out.contains("Success (no protection) SESSIONID=<127.0.0.4-"), "{out}");
    assert!(out.contains("Subject: to cyrus via our proxy"), "{out}");

    // One of our back ends beside it (127.0.0.7, the same ports): folders
    // shared across the two, both ways, through one front-end session.
    let mut ours = Backend::start(
        &t.path().join("ours"),
        &format!(
            "servername: 127.0.0.7\nunixhierarchysep: no\nmupdate_server: 127.0.0.1:{}\n{creds}proxyservers: md5u\nproxy_authname: md5u\nproxy_password: testpw\n",
            m.port
        ),
    );
    for (prog, port) in [("imapd", iport), ("lmtpd", lport)] {
        let log = std::fs::File::create(ours.dir.join(format!("{prog}-7.log"))).unwrap();
        // In the namespace too: an XFER from here finds the Cyrus back
        // end's IMAP port the same way.
        let (conf, listen) = (ours.conf.to_str().unwrap().to_string(), format!("127.0.0.7:{port}"));
        let mut cmd = in_namespace(&[(services.clone(), "/etc/services")], &bin(prog), &["-C", &conf, "-L", &listen]);
        cmd.stdout(log.try_clone().unwrap()).stderr(log);
        ours.extra.push(Proc::spawn(prog, &mut cmd));
    }
    assert!(!imap_admin(ours.imap_port, &["CREATE user.yes1"]).contains("-> NO"));
    let share = |user: &str, folder: &str, with: &str| {
        python(
            "import imaplib,sys\nM=imaplib.IMAP4('127.0.0.1',int(sys.argv[1]))\nM.login(sys.argv[2],'testpw')\n\
             print(M.create(sys.argv[3]))\nprint(M.setacl(sys.argv[3],sys.argv[4],'lrsi'))\n\
             print(M.append(sys.argv[3],None,None,('Subject: in %s\\r\\n\\r\\nx\\r\\n' % sys.argv[3]).encode()))\n",
            &[&fi.to_string(), user, folder, with],
        )
    };
    let out = share("u7", "cyrusshare", "yes1");
    assert!(!out.contains("'NO'"), "{out}");
    let out = share("yes1", "oursshare", "u7");
    assert!(!out.contains("'NO'"), "{out}");
    let visit = "import imaplib,sys\nM=imaplib.IMAP4('127.0.0.1',int(sys.argv[1]))\nM.login(sys.argv[2],'testpw')\n\
                 print('list', M.list())\nprint('select', M.select(sys.argv[3]))\n\
                 print(M.fetch('1','(BODY.PEEK[HEADER.FIELDS (SUBJECT)])'))\nprint('inbox', M.select('INBOX'))\n";
    // u7 (on Cyrus) reads yes1's folder on our back end, and back.
    let out = python(visit, &[&fi.to_string(), "u7", "\"Other Users.yes1.oursshare\""]);
    assert!(
        out.contains("select ('OK', [b'1'])") && out.contains("Subject: in oursshare"),
        "{out}"
    );
    assert!(out.contains("inbox ('OK', [b'1'])"), "{out}");
    assert!(
        out.contains("Other Users.yes1.oursshare") && out.contains(" cyrusshare'"),
        "LIST across both: {out}"
    );
    // yes1 (on ours) reads u7's folder on the Cyrus back end.
    let out = python(visit, &[&fi.to_string(), "yes1", "\"Other Users.u7.cyrusshare\""]);
    assert!(
        out.contains("select ('OK', [b'1'])") && out.contains("Subject: in cyrusshare"),
        "{out}"
    );
    assert!(
        out.contains("Other Users.u7.cyrusshare") && out.contains(" oursshare'"),
        "LIST across both: {out}"
    );

    // The Cyrus back end moves u7 to ours (XFER; ours shows no
    // X-REPLICATION, so Cyrus sends LOCALCREATE, its files by UNDUMP,
    // the ACLs, then MUPDATEPUSH).  What u7 sees through the front end
    // is the same before and after: UIDVALIDITY, UIDs, flags, dates,
    // messages, subscriptions, the ACL, the quota, an annotation.
    let prep = "import imaplib,sys\nimaplib.Commands['SETMETADATA']=('AUTH','SELECTED')\nM=imaplib.IMAP4('127.0.0.1',int(sys.argv[1]))\nM.login('u7','testpw')\n\
                M.select('INBOX')\nprint(M.store('1','+FLAGS','(\\\\Flagged $Work)'))\n\
                print(M.append('INBOX','(\\\\Seen)','\"01-Feb-2021 10:00:00 +0000\"',b'Subject: second\\r\\n\\r\\ny\\r\\n'))\n\
                print(M.append('INBOX',None,None,b'Subject: gone\\r\\n\\r\\nz\\r\\n'))\n\
                M.select('INBOX')\nprint(M.store('3','+FLAGS','(\\\\Deleted)'))\nprint(M.expunge())\n\
                print(M.store('1','ANNOTATION','(/comment (value.priv \"cyrus note\" value.shared \"cyrus shared\"))'))\n\
                print(M.subscribe('cyrusshare'))\n\
                print(M._simple_command('SETMETADATA','cyrusshare','(/shared/comment \"before the move\")'))\n";
    let out = python(prep, &[&fi.to_string()]);
    assert!(!out.contains("'NO'") && !out.contains("'BAD'"), "{out}");
    let out = imap_admin_at("127.0.0.4", iport, &["SETQUOTA user.u7 (STORAGE 50000)"]);
    assert!(out.contains("-> OK"), "{out}");
    let snapshot = "import imaplib,sys,hashlib,re\nimaplib.Commands['GETMETADATA']=('AUTH','SELECTED')\nM=imaplib.IMAP4('127.0.0.1',int(sys.argv[1]))\nM.login('u7','testpw')\n\
                    for f in ['INBOX','cyrusshare']:\n\
                    \x20   print(f, M.status(f,'(MESSAGES UIDNEXT UIDVALIDITY)')[1])\n\
                    \x20   M.select(f, readonly=True)\n\
                    \x20   typ,data=M.fetch('1:*','(UID FLAGS INTERNALDATE CREATEDMODSEQ ANNOTATION (/comment value) BODY.PEEK[])')\n\
                    \x20   for d in data:\n\
                    \x20       if isinstance(d, tuple):\n\
                    \x20           h=d[0].decode()\n\
                    \x20           fl=sorted(re.search(r'FLAGS \\(([^)]*)\\)', h).group(1).split())\n\
                    \x20           print(f, re.search(r'UID (\\d+)', h).group(1), fl, re.search(r'INTERNALDATE \"([^\"]*)\"', h).group(1), re.search(r'CREATEDMODSEQ \\(\\d+\\)', h).group(0), hashlib.sha1(d[1]).hexdigest())\n\
                    \x20           print(f, re.search(r'ANNOTATION \\(.*\\)\\) ', h).group(0))\n\
                    print('lsub', sorted(M.lsub()[1]))\n\
                    print('acl', sorted(M.getacl('cyrusshare')[1][0].split()[1:]))\n\
                    print('quota', M.getquotaroot('INBOX')[1])\n\
                    typ,dat=M._simple_command('GETMETADATA','cyrusshare','/shared/comment')\n\
                    print('meta', M._untagged_response(typ,dat,'METADATA')[1])\n";
    let before = python(snapshot, &[&fi.to_string()]);
    for want in [
        "$Work",
        "ANNOTATION (/comment (value.shared \"cyrus shared\" value.priv \"cyrus note\"))",
        "before the move",
        "STORAGE",
        "50000",
        "yes1",
        "lrsi",
        "cyrusshare",
        " 1-Feb-2021 10:00:00",
    ] {
        assert!(before.contains(want), "{want} missing: {before}");
    }
    // u7's Sieve scripts on the Cyrus back end (its timsieved): they go
    // with u7 (Cyrus sends SIEVE and ACTIVATE_SIEVE), and ours runs them.
    let put = r#"
import socket, sys, base64
s = socket.create_connection(('127.0.0.4', int(sys.argv[1]))); f = s.makefile('rb')
def upto():
    while True:
        l = f.readline()
        if not l or l[:2] in (b'OK', b'NO', b'BY'): return l
upto()
main = b'require "imap4flags";\r\nif header :contains "subject" "flagme" { addflag "\\\\Flagged"; }\r\n'
for c in [b'AUTHENTICATE "PLAIN" "' + base64.b64encode(b'\0u7\0testpw') + b'"\r\n',
          b'PUTSCRIPT "main" {%d+}\r\n%s\r\n' % (len(main), main), b'PUTSCRIPT "other" "stop;"\r\n', b'SETACTIVE "main"\r\n']:
    s.sendall(c); print(upto())
"#;
    let out = python(put, &[&sport.to_string()]);
    assert_eq!(out.matches("b'OK\\r\\n'").count(), 4, "{out}");
    let out = imap_admin_at("127.0.0.4", iport, &["XFER user.u7 127.0.0.7"]);
    assert!(out.contains("-> OK") && !out.contains("-> NO"), "XFER from Cyrus: {out}");
    let ud = ours.dir.join("sieve/u/u7");
    assert!(std::fs::read_to_string(ud.join("main.script")).unwrap().contains("flagme"));
    assert_eq!(std::fs::read_to_string(ud.join("other.script")).unwrap(), "stop;");
    assert_eq!(std::fs::read_link(ud.join("defaultbc")).unwrap(), std::path::Path::new("main.bc"));
    // The front end's copy of the master's list follows.
    let same_as = |before: &str| {
        let moved = Instant::now();
        loop {
            let after = python(snapshot, &[&fi.to_string()]);
            if after == before {
                break;
            }
            assert!(
                moved.elapsed() < Duration::from_secs(20),
                "after the XFER:\n{after}\nbefore:\n{before}"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    same_as(&before);
    // Ours holds u7 now, the Cyrus back end no more (GETACL: a Cyrus
    // admin may not SELECT a user's mailbox).
    assert!(imap_admin_at("127.0.0.7", iport, &["GETACL user.u7"]).contains("-> OK"));
    assert!(imap_admin_at("127.0.0.4", iport, &["GETACL user.u7"]).contains("-> NO"));
    // Mail for u7 through the front end lands on ours; yes1 still reads
    // u7's folder, on ours now.
    let out = deliver_u7("From: s@example.org\r\nSubject: after the move, flagme\r\nMessage-ID: <c2@example.org>\r\n\r\nbody\r\n");
    assert!(out.contains("354 go ahead\n250 2.1.5"), "{out}");
    let out = python(
        "import imaplib,sys\nM=imaplib.IMAP4('127.0.0.1',int(sys.argv[1]))\nM.login('u7','testpw')\nprint(M.select('INBOX'))\n\
         print(M.fetch('3','(UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])'))\n",
        &[&fi.to_string()],
    );
    assert!(
        out.contains("('OK', [b'3'])") && out.contains("UID 4 ") && out.contains("after the move"),
        "{out}"
    );
    assert!(out.contains("\\\\Flagged"), "our lmtpd ran the moved script: {out}");
    // Marked read, so that the snapshots before and after the move back agree.
    let out = python(
        "import imaplib,sys\nM=imaplib.IMAP4('127.0.0.1',int(sys.argv[1]))\nM.login('u7','testpw')\nM.select('INBOX')\nprint(M.store('3','+FLAGS','(\\\\Seen)'))\n",
        &[&fi.to_string()],
    );
    assert!(!out.contains("'NO'"), "{out}");
    let out = python(visit, &[&fi.to_string(), "yes1", "\"Other Users.u7.cyrusshare\""]);
    assert!(out.contains("Subject: in cyrusshare"), "{out}");

    // And back: our XFER to the Cyrus back end speaks its replication
    // commands (it shows X-REPLICATION, not X-MUMAIL-XFER).
    let out = python(
        "import imaplib,sys\nM=imaplib.IMAP4('127.0.0.1',int(sys.argv[1]))\nM.login('u7','testpw')\nM.select('INBOX')\n\
         print(M.store('2','+FLAGS','(\\\\Answered back)'))\nprint(M.create('madeonours'))\n",
        &[&fi.to_string()],
    );
    assert!(!out.contains("'NO'"), "{out}");
    let mid = python(snapshot, &[&fi.to_string()]);
    assert!(mid.contains("UIDNEXT 5") && mid.contains("'back'"), "{mid}");
    let out = imap_admin_at("127.0.0.7", iport, &["XFER user.u7 127.0.0.4"]);
    assert!(out.contains("-> OK") && !out.contains("-> NO"), "XFER to Cyrus: {out}");
    same_as(&mid);
    let out = imap_admin_at("127.0.0.4", iport, &["GETACL user.u7", "GETACL user.u7.madeonours"]);
    assert!(!out.contains("-> NO"), "{out}");
    assert!(imap_admin_at("127.0.0.7", iport, &["GETACL user.u7"]).contains("-> NO"));
    // Mail for u7 lands on Cyrus again, after the moved UIDs.
    let out = deliver_u7("From: s@example.org\r\nSubject: back on cyrus, flagme\r\nMessage-ID: <c3@example.org>\r\n\r\nbody\r\n");
    assert!(out.contains("354 go ahead\n250 2.1.5 Success SESSIONID=<127.0.0.4-"), "{out}");
    let out = python(
        "import imaplib,sys\nM=imaplib.IMAP4('127.0.0.1',int(sys.argv[1]))\nM.login('u7','testpw')\nprint(M.select('INBOX'))\n\
         print(M.fetch('4','(UID FLAGS)'))\n",
        &[&fi.to_string()],
    );
    assert!(out.contains("('OK', [b'4'])") && out.contains("UID 5)"), "{out}");
    // The scripts went back with u7 (SIEVE, ACTIVATE_SIEVE) and Cyrus runs them.
    assert!(out.contains("\\\\Flagged"), "the real Cyrus ran the script moved back: {out}");
    assert!(!ud.exists());
}

/// Our back ends registered with the real Cyrus master and served
/// through the real Cyrus front end (its mupdate replica, imapd and lmtpd
/// as proxies): login, INBOX, a folder shared across the back ends, LMTP
/// delivery through the Cyrus proxy, a move between our back ends.
#[test]
fn our_backend_through_the_real_cyrus_front_end() {
    if !can_run("our back end behind a cyrus front end", &[CYRUS_MASTER, CYRUS_MUPDATE]) {
        return;
    }
    our_backends_behind_a_cyrus_front_end(false);
}

/// The same with our master: the real Cyrus front end's replica follows
/// our master (mixed murder (c)).
#[test]
fn cyrus_front_end_on_our_master_with_our_back_ends() {
    if !can_run("cyrus front end on our master", &[CYRUS_MASTER, CYRUS_MUPDATE]) {
        return;
    }
    our_backends_behind_a_cyrus_front_end(true);
}

fn our_backends_behind_a_cyrus_front_end(our_master: bool) {
    let t = cyrus_tempdir();
    let (_sasl, mux) = sasl(&t.path().join("sasl"));
    let mport;
    let _master: Box<dyn std::any::Any> = if our_master {
        let n = Node::start(&t.path().join("master"), &mux, true, "");
        mport = n.port;
        Box::new(n)
    } else {
        mport = free_port();
        Box::new(cyrus_node(
            &t.path().join("cyrus-master"),
            &mux,
            "mupdate-master",
            "",
            &format!("  mupdate cmd=\"mupdate -C CONF -m\" listen=\"127.0.0.1:{mport}\" prefork=1\n"),
        ))
    };
    wait_tcp(mport);
    let creds = "mupdate_username: md5u\nmupdate_authname: md5u\nmupdate_password: testpw\n";
    let (iport, lport) = (free_port(), free_port());
    let services = t.path().join("services");
    std::fs::write(&services, format!("imap {iport}/tcp\nlmtp {lport}/tcp\n")).unwrap();
    // Two of our back ends, 127.0.0.5 and 127.0.0.6 (an XFER moves u7
    // from one to the other).
    let mut backs = Vec::new();
    for ip in ["127.0.0.5", "127.0.0.6"] {
        let mut b = Backend::start(
            &t.path().join(format!("b{ip}")),
            &format!(
                "servername: {ip}\nunixhierarchysep: no\nmupdate_server: 127.0.0.1:{mport}\n{creds}proxyservers: md5u\n\
                 proxy_authname: md5u\nproxy_password: testpw\n"
            ),
        );
        for (prog, port) in [("imapd", iport), ("lmtpd", lport)] {
            let log = std::fs::File::create(b.dir.join(format!("{prog}-5.log"))).unwrap();
            let mut cmd = Command::new(bin(prog));
            cmd.arg("-C")
                .arg(&b.conf)
                .args(["-L", &format!("{ip}:{port}")])
                .env("MUMAIL_SERVICES", &services)
                .stdout(log.try_clone().unwrap())
                .stderr(log);
            b.extra.push(Proc::spawn(prog, &mut cmd));
        }
        backs.push(b);
    }
    assert!(!imap_admin(
        backs[0].imap_port,
        &[
            "CREATE user.u7",
            "CREATE user.u7.Work",
            "CREATE user.u7.Work.sub",
            "CREATE user.u7.Archive"
        ]
    )
    .contains("-> NO"));
    // yes1 lives on the other back end and shares a folder with u7, and a
    // shared folder is there too.
    assert!(!imap_admin(
        backs[1].imap_port,
        &[
            "CREATE user.yes1",
            "CREATE user.yes1.proj",
            "SETACL user.yes1.proj u7 lrs",
            "CREATE news",
            "SETACL news anyone lrs",
        ]
    )
    .contains("-> NO"));
    let services_copy = services.clone();
    let (fi, fl) = (free_port(), free_port());
    let _fe = cyrus_node_in(
        &t.path().join("cyrus-fe"),
        &mux,
        "frontend",
        &format!("mupdate_server: 127.0.0.1:{mport}\n{creds}proxy_authname: md5u\nproxy_password: testpw\nmupdate_retry_delay: 1\n"),
        &format!(
            "  mupdate cmd=\"mupdate -C CONF\" listen=\"127.0.0.1:{}\" prefork=1\n  imap cmd=\"imapd -C CONF\" listen=\"127.0.0.1:{fi}\" prefork=0\n  lmtp cmd=\"lmtpd -C CONF -a\" listen=\"127.0.0.1:{fl}\" prefork=0\n",
            free_port()
        ),
        &[(services, "/etc/services")],
    );
    wait_tcp(fi);
    wait_tcp(fl);
    let msg = "From: s@example.org\r\nSubject: via the cyrus front end\r\nMessage-ID: <cf1@example.org>\r\n\r\nbody\r\n";
    let mut out = String::new();
    wait_for("cyrus front end knows u7", Duration::from_secs(30), || {
        out = lmtp_session(
            fl,
            &["LHLO hub", "MAIL FROM:<s@example.org>", "RCPT TO:<u7@example.org>", "DATA", "QUIT"],
            msg,
            1,
        );
        out.contains("250 2.1.5 ok") || out.contains("250 2.1.5 Ok")
    });
    // Cyrus answers in its own words; the IMAP fetch below shows where the
    // message went.
    assert!(
        out.replace("\r\n", "\n")
            .contains("354 go ahead\n250 2.1.5 Success SESSIONID=<frontend-"),
        "{out}"
    );
    let out = python(
        "import imaplib,sys\nM=imaplib.IMAP4('127.0.0.1',int(sys.argv[1]))\nprint(M.login('u7','testpw'))\nprint(M.select('INBOX'))\nprint(M.fetch('1','(BODY.PEEK[HEADER.FIELDS (SUBJECT)])'))\nprint(M.logout())\n",
        &[&fi.to_string()],
    );
    assert!(out.contains("Subject: via the cyrus front end"), "{out}");
    // The Cyrus front end takes u7 to yes1's folder on the other back end.
    let out = python(
        "import imaplib,sys\nM=imaplib.IMAP4('127.0.0.1',int(sys.argv[1]))\nM.login('u7','testpw')\nprint('list', M.list())\nprint('select', M.select('\"Other Users.yes1.proj\"'))\nprint(M.logout())\n",
        &[&fi.to_string()],
    );
    assert!(out.contains("select ('OK', [b'0'])"), "{out}");
    assert!(out.contains("Other Users.yes1.proj") && out.contains(" INBOX"), "{out}");
    if our_master {
        // Our front end on the same master and back ends lists what the
        // Cyrus front end lists, in its order.
        let fe = Node::start(
            &t.path().join("our-fe"),
            &mux,
            false,
            &format!("mupdate_server: 127.0.0.1:{mport}\n{creds}proxy_authname: md5u\nproxy_password: testpw\nunixhierarchysep: no\n"),
        );
        let oi = free_port();
        let l = format!("127.0.0.1:{oi}");
        let mut cmd = in_namespace(
            &[(services_copy, "/etc/services")],
            &bin("imapd"),
            &["-C", fe.conf.to_str().unwrap(), "-L", &l],
        );
        let _imapd = Proc::spawn("imapd", &mut cmd);
        wait_tcp(oi);
        let cmds = [
            "LOGIN u7 testpw",
            "LIST \"\" \"*\"",
            "LIST \"\" \"%\"",
            "LIST \"\" \"Other Users.*\"",
            "LOGOUT",
        ];
        let theirs = imap_raw(fi, &cmds);
        let mut ours = String::new();
        wait_for("our front end lists as the Cyrus one", Duration::from_secs(20), || {
            ours = imap_raw(oi, &cmds);
            ours.contains("Shared Folders.news")
        });
        // After the login; a tagged OK's timing (Cyrus's "(0.001 secs 5
        // calls)") left out.
        let tail = |s: &str| {
            let rest = s.split_once("\nt0 OK").and_then(|(_, t)| t.split_once('\n')).map_or("", |(_, r)| r);
            rest.lines()
                .map(|l| match l.split_once(" OK Completed") {
                    Some((tag, _)) if !tag.starts_with('*') => format!("{tag} OK Completed\n"),
                    _ => format!("{l}\n"),
                })
                .collect::<String>()
        };
        assert!(ours.contains("\"Other Users.yes1.proj\"\n"), "{ours}");
        assert_eq!(tail(&ours), tail(&theirs));
    }
    // Referrals once the client has used RLIST (the same words as ours,
    // tests/murder_proxy.rs).
    let out = imap_raw(
        fi,
        &[
            "LOGIN u7 testpw",
            "RLIST \"\" \"*\"",
            "SELECT INBOX",
            "EXAMINE \"Other Users.yes1.proj\"",
            "LOGOUT",
        ],
    );
    assert!(
        out.contains("\nt2 NO [REFERRAL imap://;AUTH=*@127.0.0.5/INBOX] Remote mailbox.\n"),
        "{out}"
    );
    assert!(
        out.contains("\nt3 NO [REFERRAL imap://;AUTH=*@127.0.0.6/Other%20Users.yes1.proj] Remote mailbox.\n"),
        "{out}"
    );
    // An admin asks the front end which back end holds a mailbox (the
    // same answer as ours, tests/murder_proxy.rs).
    let out = imap_raw(
        fi,
        &[
            "LOGIN md5u testpw",
            "GETMETADATA user.u7 /shared/vendor/cmu/cyrus-imapd/server",
            "LOGOUT",
        ],
    );
    assert!(
        out.contains("\n* METADATA user.u7 (\"/shared/vendor/cmu/cyrus-imapd/server\" \"127.0.0.5\")\nt1 OK Completed\n"),
        "{out}"
    );
    // A move through the Cyrus front end (RENAME to server!partition, as
    // its cmd_rename takes it): it sends XFER to our back end holding the
    // mailbox, which moves u7 to the other one.
    let out = imap_admin(fi, &["RENAME user.u7 user.u7 127.0.0.6!default"]);
    assert!(out.contains("-> OK"), "{out}");
    let out = inbox_count(backs[1].imap_port, "user.u7");
    assert!(out.contains("'1'"), "{out}");
    assert!(mupdatetest(mport, "md5u", "A01 FIND \"user.u7\"\nA02 LOGOUT\n").contains("127.0.0.6!default"));
    // The message is only on 127.0.0.6 now: the front end found it there.
    let mut out = String::new();
    wait_for("the cyrus front end follows the move", Duration::from_secs(30), || {
        out = python(
            "import imaplib,sys\nM=imaplib.IMAP4('127.0.0.1',int(sys.argv[1]))\nprint(M.login('u7','testpw'))\nprint(M.select('INBOX'))\nprint(M.fetch('1','(BODY.PEEK[HEADER.FIELDS (SUBJECT)])'))\nprint(M.logout())\n",
            &[&fi.to_string()],
        );
        out.contains("Subject: via the cyrus front end")
    });
    assert!(inbox_count(backs[0].imap_port, "user.u7").contains("NO"), "gone from 127.0.0.5");
}

#[test]
fn front_end_tls_and_master_connection_limit() {
    if !can_run("front-end TLS", &[]) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let mu = Murder::start(t.path());
    std::fs::create_dir_all(t.path().join("certs")).unwrap();
    let (ca, cert, key) = make_certs(&t.path().join("certs"));
    let mut conf = std::fs::read_to_string(&mu.fe.conf).unwrap();
    conf.push_str(&format!("tls_server_cert: {}\ntls_server_key: {}\n", cert.display(), key.display()));
    std::fs::write(&mu.fe.conf, conf).unwrap();
    let (_imaps, sport) = mu.front("imapd", &["-s"]);
    let (_imap, iport) = mu.front("imapd", &[]);
    let script = "import imaplib,ssl,sys\nc=ssl.create_default_context(cafile=sys.argv[1])\nc.check_hostname=False\n\
                  M=imaplib.IMAP4_SSL('127.0.0.1',int(sys.argv[2]),ssl_context=c)\nprint(M.login('u7','testpw'))\nprint(M.select('INBOX'))\nM.logout()\n\
                  N=imaplib.IMAP4('127.0.0.1',int(sys.argv[3]))\nprint('STARTTLS' in N.capabilities)\nprint(N.starttls(ssl_context=c))\nprint(N.login('yes1','testpw'))\nprint(N.select('INBOX'))\nN.logout()\n";
    let out = python(script, &[ca.to_str().unwrap(), &sport.to_string(), &iport.to_string()]);
    // The back end's answer to the front end's AUTHENTICATE reaches the
    // client, as with a Cyrus back end (Cyrus's words for it).
    assert_eq!(out.matches("] Success (no protection) SESSIONID=<").count(), 2, "{out}");
    assert!(out.contains("True\n('OK'"), "{out}");
    // The master turns away connections over mupdate_connections_max
    // with Cyrus's words.
    let t2 = tempfile::tempdir().unwrap();
    let (_sasl, mux) = sasl(&t2.path().join("sasl"));
    let m = Node::start(&t2.path().join("m"), &mux, true, "mupdate_connections_max: 2\n");
    let _a = Raw::connect(m.port);
    let _b = Raw::connect(m.port);
    let mut c = TcpStream::connect(("127.0.0.1", m.port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = String::new();
    let _ = c.read_to_string(&mut got);
    assert_eq!(got, "* BYE \"Server Unable\"\r\n");
    assert!(m.log().contains("Server too busy, dropping connection."), "{}", m.log());
}

/// The hub delivers through the front end's LMTP proxy; while a back end
/// is down its users' mail waits in the queue (4xx, never a bounce) and
/// is delivered when the back end returns; the other users' mail goes on.
#[test]
fn hub_delivers_through_the_front_end_and_waits_for_a_down_back_end() {
    if !can_run("hub through the murder", &[]) {
        return;
    }
    let t = cyrus_tempdir();
    let mut mu = Murder::start(t.path());
    let (_lmtp, fport) = mu.front("lmtpd", &["-a"]);
    let hub = t.path().join("hub");
    std::fs::create_dir_all(&hub).unwrap();
    let sport = free_port();
    std::fs::write(
        hub.join("main.cf"),
        format!(
            "compatibility_level = 3.6\nqueue_directory = {d}/queue\nmaillog_file = {d}/maillog\nmyhostname = hub.mumail.test\n\
             mydomain = mumail.test\nmydestination = mumail.test\nmynetworks = 127.0.0.0/8\nlocal_recipient_maps =\nalias_maps =\n\
             mailbox_transport = lmtp:inet:127.0.0.1:{fport}\nminimal_backoff_time = 1s\nmaximal_backoff_time = 2s\nqueue_run_delay = 1s\n",
            d = hub.display()
        ),
    )
    .unwrap();
    std::fs::write(
        hub.join("master.cf"),
        format!(
            "127.0.0.1:{sport} inet n - n - - smtpd\nlmtp unix - - n - - lmtp\nerror unix - - n - - error\nlocal unix - n n - - local\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(hub.join("stderr")).unwrap();
    let mut cmd = Command::new(bin("postfix-master"));
    cmd.args(["-c", hub.to_str().unwrap()]).stdout(log.try_clone().unwrap()).stderr(log);
    let _hub = Proc::spawn("postfix-master", &mut cmd);
    wait_tcp(sport);
    let maillog = || std::fs::read_to_string(hub.join("maillog")).unwrap_or_default();
    // yes1's back end (the second) goes down.
    mu.backs[1].extra.clear();
    let send = "import smtplib,sys\ns=smtplib.SMTP('127.0.0.1',int(sys.argv[1]))\n\
                s.sendmail('a@example.org',['u7@mumail.test','yes1@mumail.test'],'Message-ID: <h1@x>\\r\\nSubject: via hub and murder\\r\\n\\r\\nbody\\r\\n')\ns.quit()\n";
    python(send, &[&sport.to_string()]);
    wait_for("u7 delivered, yes1 deferred", Duration::from_secs(30), || {
        let l = maillog();
        l.contains("to=<u7@mumail.test>")
            && l.contains("status=sent")
            && l.contains("to=<yes1@mumail.test>")
            && l.contains("status=deferred")
    });
    assert!(maillog().contains("451 4.4.3 Remote server unavailable"), "{}", maillog());
    assert!(!maillog().contains("status=bounced"), "{}", maillog());
    assert!(inbox_count(mu.backs[0].imap_port, "user.u7").contains("'1'"));
    // It returns: the queue delivers.
    mu.restart_back(1);
    wait_for("yes1 delivered after the back end returned", Duration::from_secs(60), || {
        inbox_count(mu.backs[1].imap_port, "user.yes1").contains("'1'")
    });
}
