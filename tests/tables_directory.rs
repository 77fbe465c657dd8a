//! Postfix `ldap:` and `mysql:` tables against real servers started here
//! (OpenLDAP slapd with RFC 2307 users and groups, MariaDB): for the same
//! configuration files and keys our `postmap -q` prints what the real
//! Postfix 3.7 `postmap -q` (Debian postfix-ldap, postfix-mysql) prints,
//! with the same exit code, including `%` expansions, multi-valued
//! results, special/terminal/leaf attributes, `domain` filtering, limits,
//! failover, not-found and errors.  Then the hub uses the same tables for
//! recipient validation, access checks and per-user routing to two back
//! ends (`transport_maps`), and answers `451` while the directory or
//! MariaDB is down.  Last, `group:` ACLs on the back end from LDAP groups
//! (Cyrus's ptloader options).

mod harness;
use harness::*;
use std::path::Path;
use std::process::Command;

const REAL_POSTMAP: &str = "/usr/sbin/postmap";

/// (stdout, exit code, stderr) of a postmap.
fn postmap(program: &Path, cfg: &Path, args: &[&str], stdin: &str) -> (String, i32, String) {
    let (out, err, rc) = run_with_input(Command::new(program).args(["-c", cfg.to_str().unwrap()]).args(args), stdin);
    (out, rc, err)
}

/// Runs each case (config body, keys) through both postmaps and asserts
/// identical output and exit codes; a failed query must be a fatal
/// "query error" on both sides.  Returns how many lookups found a value.
fn compare(kind: &str, dir: &Path, cases: &[(&str, String, &[&str])]) -> usize {
    let cfg = dir.join("postfix");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(cfg.join("main.cf"), "").unwrap();
    let mut found = 0;
    for (name, body, keys) in cases {
        let cf = dir.join(format!("{kind}-{name}.cf"));
        std::fs::write(&cf, body).unwrap();
        let table = format!("{kind}:{}", cf.display());
        for key in keys.iter() {
            let real = postmap(Path::new(REAL_POSTMAP), &cfg, &["-q", key, &table], "");
            let ours = postmap(&bin("postmap"), &cfg, &["-q", key, &table], "");
            eprintln!("{kind} {name} {key:?}: real {:?} {} / ours {:?} {}", real.0, real.1, ours.0, ours.1);
            assert_eq!(
                (&ours.0, ours.1),
                (&real.0, real.1),
                "{kind} {name} key {key:?}\nreal: {}\nours: {}",
                real.2,
                ours.2
            );
            if real.2.contains(": query error:") {
                assert!(
                    ours.2.contains(&format!("postmap: fatal: table {table}: query error:")),
                    "{name} {key:?}: {}",
                    ours.2
                );
            }
            if real.1 == 0 {
                found += 1;
            }
        }
        // The same keys in one `-q -` run.
        let input = keys.join("\n") + "\n";
        let real = postmap(Path::new(REAL_POSTMAP), &cfg, &["-q", "-", &table], &input);
        let ours = postmap(&bin("postmap"), &cfg, &["-q", "-", &table], &input);
        assert_eq!((&ours.0, ours.1), (&real.0, real.1), "{kind} {name} -q -");
    }
    found
}

const EXTRA_LDIF: &str = "dn: uid=u1,ou=people,dc=mumail,dc=test\nchangetype: modify\nadd: mail\nmail: first@mumail.test\n-\nadd: cn\ncn: Uno\n\n\
dn: ou=groups,dc=mumail,dc=test\nchangetype: add\nobjectClass: organizationalUnit\nou: groups\n\n\
dn: cn=staff,ou=groups,dc=mumail,dc=test\nchangetype: add\nobjectClass: groupOfNames\ncn: staff\nmember: uid=u1,ou=people,dc=mumail,dc=test\nmember: uid=u2,ou=people,dc=mumail,dc=test\nmember: uid=nosuch,ou=people,dc=mumail,dc=test\n\n\
dn: cn=office,ou=groups,dc=mumail,dc=test\nchangetype: add\nobjectClass: groupOfNames\ncn: office\nmember: cn=staff,ou=groups,dc=mumail,dc=test\nmember: uid=u3,ou=people,dc=mumail,dc=test\ndescription: office-list@mumail.test\n\n\
dn: cn=unix,ou=groups,dc=mumail,dc=test\nchangetype: add\nobjectClass: posixGroup\ncn: unix\ngidNumber: 10000\nmemberUid: u4\nmemberUid: u5\n\n\
dn: cn=url,ou=groups,dc=mumail,dc=test\nchangetype: add\nobjectClass: organizationalRole\nobjectClass: labeledURIObject\ncn: url\nlabeledURI: ldap:///ou=people,dc=mumail,dc=test??one?(|(uid=u4)(uid=u5))\n";

#[test]
fn ldap_tables_match_real_postmap() {
    if !can_run(
        "ldap tables",
        &[
            REAL_POSTMAP,
            "/usr/lib/postfix/postfix-ldap.so",
            "/usr/sbin/slapd",
            "/usr/bin/ldapmodify",
        ],
    ) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let mut slapd = Slapd::start_with(&d.path().join("slapd"), None, "");
    let url = slapd.url();
    let ldif = d.path().join("extra.ldif");
    std::fs::write(&ldif, EXTRA_LDIF).unwrap();
    let out = Command::new("/usr/bin/ldapmodify")
        .args(["-x", "-H", &url, "-D", &format!("cn=admin,{LDAP_BASE}"), "-w", "adminpw", "-f"])
        .arg(&ldif)
        .output()
        .unwrap();
    assert!(out.status.success(), "ldapmodify: {}", String::from_utf8_lossy(&out.stderr));
    let port = slapd.port;
    let head = format!("server_host = 127.0.0.1:{port}\nsearch_base = {LDAP_BASE}\n");
    let cases: Vec<(&str, String, &[&str])> = vec![
        (
            "mail-to-uid",
            format!("{head}query_filter = (mail=%s)\nresult_attribute = uid, cn\n"),
            &["u1@mumail.test", "U2@MUMAIL.TEST", "first@mumail.test", "nobody@mumail.test", "u*", "u1)(uid=*", ""],
        ),
        (
            "formats",
            format!("{head}query_filter = (&(uid=%u)(objectClass=posixAccount))\nresult_attribute = mail\nresult_format = <%s|%u|%d|%S|%U|%D|%1|%2|%%>\n"),
            &["u1@x.example.org", "u2", "u3@a.b", "@x.org"],
        ),
        (
            "value-parts",
            format!("{head}query_filter = uid=%s\nresult_attribute = mail, uid\nresult_format = %u+list@%d\n"),
            &["u1", "u5", "nosuch"],
        ),
        (
            "domain",
            format!("{head}query_filter = (uid=%u)\nresult_attribute = mail\ndomain = mumail.test, other.test\n"),
            &["u1@mumail.test", "u1@third.test", "u1", "u2@Other.Test"],
        ),
        (
            "labels",
            format!("{head}query_filter = (uid=%u)\nresult_attribute = mail\nresult_format = %3.%2.%1:%s\n"),
            &["u1@a.b.c", "u1@b.c", "u1"],
        ),
        (
            "groups",
            format!("{head}search_base = ou=groups,{LDAP_BASE}\nquery_filter = (cn=%s)\nresult_attribute = mail\nspecial_result_attribute = member, labeledURI\nleaf_result_attribute = uid\n"),
            &["staff", "office", "url", "nosuch"],
        ),
        (
            "terminal",
            format!("{head}query_filter = (cn=%s)\nresult_attribute = mail\nspecial_result_attribute = member\nterminal_result_attribute = description\n"),
            &["office", "staff"],
        ),
        (
            "posixgroup",
            format!("{head}query_filter = (&(objectClass=posixGroup)(cn=%s))\nresult_attribute = memberUid\nresult_format = %s@mumail.test\n"),
            &["unix", "staff"],
        ),
        (
            "dynamic-base",
            format!("server_host = ldap://127.0.0.1:{port}/\nsearch_base = ou=%d,{LDAP_BASE}\nquery_filter = uid=%u\nresult_attribute = mail\nscope = one\n"),
            &["u1@people", "u1@nosuch", "u1"],
        ),
        (
            "missing-base",
            format!("{head}search_base = ou=nosuch,{LDAP_BASE}\nquery_filter = uid=%s\nresult_attribute = mail\n"),
            &["u1"],
        ),
        (
            "scope-base",
            format!("{head}query_filter = uid=%s\nresult_attribute = mail\nscope = base\n"),
            &["u1"],
        ),
        (
            "limits",
            format!("{head}query_filter = (cn=%s)\nresult_attribute = mail\nspecial_result_attribute = member\nexpansion_limit = 2\n"),
            &["staff", "unix"],
        ),
        (
            "size-limit",
            format!("{head}query_filter = (&(objectClass=posixAccount)(uid=%s*))\nresult_attribute = uid\nsize_limit = 2\n"),
            &["u", "u1"],
        ),
        (
            "recursion",
            format!("{head}query_filter = (cn=%s)\nresult_attribute = mail\nspecial_result_attribute = member\nrecursion_limit = 1\n"),
            &["staff"],
        ),
        (
            "bound",
            format!("{head}query_filter = uid=%s\nresult_attribute = mail\nbind_dn = cn=saslauthd,ou=services,{LDAP_BASE}\nbind_pw = bindpw\n"),
            &["u3"],
        ),
        (
            "bad-bind",
            format!("{head}query_filter = uid=%s\nresult_attribute = mail\nbind_dn = cn=saslauthd,ou=services,{LDAP_BASE}\nbind_pw = wrong\n"),
            &["u3"],
        ),
        (
            "failover",
            format!("server_host = ldap://127.0.0.1:1 ldap://127.0.0.1:{port}\nsearch_base = {LDAP_BASE}\nquery_filter = uid=%s\nresult_attribute = mail\nbind = no\ntimeout = 3\n"),
            &["u4"],
        ),
    ];
    let found = compare("ldap", d.path(), &cases);
    assert!(found >= 20, "only {found} lookups found something: the cases test too little");

    // proxy: gives the same answers.
    let cfg = d.path().join("postfix");
    let table = format!("proxy:ldap:{}", d.path().join("ldap-mail-to-uid.cf").display());
    let ours = postmap(&bin("postmap"), &cfg, &["-q", "u1@mumail.test", &table], "");
    assert_eq!((ours.0.as_str(), ours.1), ("u1,User 1,Uno\n", 0), "{}", ours.2);

    // The directory down: a fatal query error on both sides, in time.
    slapd.stop();
    let table = format!("ldap:{}", d.path().join("ldap-bound.cf").display());
    let real = postmap(Path::new(REAL_POSTMAP), &cfg, &["-q", "u3", &table], "");
    let t = std::time::Instant::now();
    let ours = postmap(&bin("postmap"), &cfg, &["-q", "u3", &table], "");
    assert_eq!((real.1, ours.1), (1, 1));
    assert!(
        real.2.contains("query error") && ours.2.contains("query error"),
        "{}\n{}",
        real.2,
        ours.2
    );
    assert!(t.elapsed() < std::time::Duration::from_secs(15), "{:?}", t.elapsed());
}

#[cfg(feature = "mysql")]
#[test]
fn mysql_tables_match_real_postmap() {
    if !can_run(
        "mysql tables",
        &[
            REAL_POSTMAP,
            "/usr/lib/postfix/postfix-mysql.so",
            "/usr/sbin/mariadbd",
            "/usr/bin/mariadb-install-db",
        ],
    ) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let mut db = Mariadb::start(&d.path().join("mariadb"));
    db.sql(MAIL_SQL);
    let (port, sock) = (db.port, db.socket.display().to_string());
    let head = format!("hosts = inet:127.0.0.1:{port}\nuser = postfix\npassword = pfpw\ndbname = mail\n");
    let cases: Vec<(&str, String, &[&str])> = vec![
        (
            "aliases",
            format!("{head}query = SELECT target, extra FROM aliases WHERE alias='%s'\n"),
            &["info@mumail.test", "INFO@mumail.test", "o'brien@mumail.test", "empty@mumail.test", "nobody@mumail.test", "x' OR '1'='1", ""],
        ),
        (
            "formats",
            format!("{head}query = SELECT target FROM aliases WHERE alias='%u@%d'\nresult_format = <%s|%u|%d|%S|%U|%D|%1|%2|%%>\n"),
            &["info@mumail.test", "bob", "@mumail.test"],
        ),
        (
            "domain",
            format!("{head}query = SELECT target FROM aliases WHERE alias='%s'\ndomain = mumail.test\n"),
            &["info@mumail.test", "bob", "bob@other.test"],
        ),
        (
            "legacy",
            format!("{head}select_field = target\ntable = aliases\nwhere_field = alias\nadditional_conditions = AND target <> ''\n"),
            &["bob", "info@mumail.test"],
        ),
        (
            "types-and-nulls",
            format!("{head}query = SELECT 42, '%s', NULL, 1.5 FROM DUAL WHERE '%s' <> 'none'\n"),
            &["a@b", "none"],
        ),
        (
            "limit",
            format!("{head}query = SELECT target FROM aliases WHERE alias='%s'\nexpansion_limit = 1\n"),
            &["info@mumail.test", "bob"],
        ),
        (
            "socket",
            format!("hosts = unix:{sock}\nuser = postfix\npassword = pfpw\ndbname = mail\nquery = SELECT target FROM aliases WHERE alias='%s'\n"),
            &["bob"],
        ),
        (
            "failover",
            format!("hosts = inet:127.0.0.1:1, inet:127.0.0.1:{port}\nuser = postfix\npassword = pfpw\ndbname = mail\nquery = SELECT target FROM aliases WHERE alias='%s'\n"),
            &["bob"],
        ),
        (
            "bad-column",
            format!("{head}query = SELECT nosuch FROM aliases WHERE alias='%s'\n"),
            &["bob"],
        ),
        (
            "bad-password",
            format!("hosts = inet:127.0.0.1:{port}\nuser = postfix\npassword = wrong\ndbname = mail\nquery = SELECT target FROM aliases WHERE alias='%s'\n"),
            &["bob"],
        ),
    ];
    let found = compare("mysql", d.path(), &cases);
    assert!(found >= 8, "only {found} lookups found something");

    // The server down: a fatal query error on both sides.
    db.stop();
    let cfg = d.path().join("postfix");
    let table = format!("mysql:{}", d.path().join("mysql-aliases.cf").display());
    let real = postmap(Path::new(REAL_POSTMAP), &cfg, &["-q", "bob", &table], "");
    let ours = postmap(&bin("postmap"), &cfg, &["-q", "bob", &table], "");
    assert_eq!((real.1, ours.1), (1, 1));
    assert!(
        real.2.contains("query error") && ours.2.contains("query error"),
        "{}\n{}",
        real.2,
        ours.2
    );
}

#[cfg(feature = "mysql")]
const MAIL_SQL: &str = "CREATE DATABASE mail;\n\
CREATE USER 'postfix'@'127.0.0.1' IDENTIFIED BY 'pfpw';\nCREATE USER 'postfix'@'localhost' IDENTIFIED BY 'pfpw';\n\
GRANT SELECT ON mail.* TO 'postfix'@'127.0.0.1';\nGRANT SELECT ON mail.* TO 'postfix'@'localhost';\n\
USE mail;\nCREATE TABLE aliases (alias VARCHAR(255), target VARCHAR(255), extra VARCHAR(255));\n\
INSERT INTO aliases VALUES ('info@mumail.test','u1@mumail.test',NULL),('info@mumail.test','u2@mumail.test','x'),\
('o\\'brien@mumail.test','u3@mumail.test',NULL),('empty@mumail.test','',NULL),('bob','u4@mumail.test',NULL);\n\
CREATE TABLE access (address VARCHAR(255), action VARCHAR(255));\n\
INSERT INTO access VALUES ('u2@mumail.test','REJECT No mail for u2 today'),('u3@mumail.test','REJECT');\n";

fn swaks(port: u16, rcpt: &str) -> String {
    let o = Command::new("/usr/bin/swaks")
        .args(["--server", &format!("127.0.0.1:{port}"), "--timeout", "30", "--quit-after", "RCPT"])
        .args(["--from", "sender@mumail.test", "--to", rcpt])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The reply line to RCPT TO in a swaks transcript.
fn rcpt_reply(t: &str) -> String {
    let mut lines = t.lines().skip_while(|l| !l.contains("RCPT TO:"));
    lines.nth(1).unwrap_or("").trim_start_matches(['<', '-', '*', '~', ' ']).to_string()
}

#[test]
fn hub_validates_recipients_from_the_directory() {
    if !can_run(
        "hub ldap tables",
        &["/usr/sbin/slapd", "/usr/bin/swaks", "/usr/bin/ldapmodify", "/usr/bin/unshare"],
    ) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let mut slapd = Slapd::start(&d.path().join("slapd"));
    let port = slapd.port;
    // Two back ends; each user's LMTP next hop is in the directory (u1,
    // u4) or in MySQL (u5).
    let be1 = Backend::start(&d.path().join("be1"), "autocreate_post: yes\n");
    let be2 = Backend::start(&d.path().join("be2"), "autocreate_post: yes\n");
    ldapmodify(
        &slapd.url(),
        &format!(
            "dn: uid=u1,ou=people,{LDAP_BASE}\nchangetype: modify\nadd: description\ndescription: lmtp:unix:{}\n\n\
             dn: uid=u4,ou=people,{LDAP_BASE}\nchangetype: modify\nadd: description\ndescription: lmtp:unix:{}\n",
            be1.lmtp_sock.display(),
            be2.lmtp_sock.display()
        ),
    );
    let hub = d.path().join("hub");
    std::fs::create_dir_all(&hub).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hub, std::fs::Permissions::from_mode(0o755)).unwrap();
    let head = format!("server_host = 127.0.0.1:{port}\nsearch_base = {LDAP_BASE}\ntimeout = 3\n");
    std::fs::write(
        hub.join("users.cf"),
        format!("{head}query_filter = (mail=%s)\nresult_attribute = uid\n"),
    )
    .unwrap();
    std::fs::write(
        hub.join("access.cf"),
        format!("{head}query_filter = (&(uid=%u)(uid=u2))\nresult_attribute = uid\nresult_format = REJECT no mail for %s today\ndomain = mumail.test\n"),
    )
    .unwrap();
    std::fs::write(
        hub.join("transport.cf"),
        format!("{head}query_filter = (mail=%s)\nresult_attribute = description\n"),
    )
    .unwrap();
    let smtp = free_port();
    let h = hub.display();
    #[allow(unused_mut)]
    let mut access = format!("check_recipient_access proxy:ldap:{h}/access.cf");
    #[allow(unused_mut)]
    let mut transport = format!("ldap:{h}/transport.cf");
    #[allow(unused_mut)]
    let mut recipients = format!("ldap:{h}/users.cf");
    #[cfg(feature = "mysql")]
    let mut mariadb = {
        let db = Mariadb::start(&d.path().join("mariadb"));
        db.sql(MAIL_SQL);
        std::fs::write(
            hub.join("access-sql.cf"),
            format!("hosts = inet:127.0.0.1:{}\nuser = postfix\npassword = pfpw\ndbname = mail\nquery = SELECT action FROM access WHERE address='%s'\n", db.port),
        )
        .unwrap();
        access.push_str(&format!(", check_recipient_access mysql:{h}/access-sql.cf"));
        db.sql(&format!(
            "USE mail;\nCREATE TABLE transport (address VARCHAR(255), nexthop VARCHAR(255));\n\
             INSERT INTO transport VALUES ('u5@mumail.test', 'lmtp:unix:{}');\n",
            be1.lmtp_sock.display()
        ));
        std::fs::write(
            hub.join("transport-sql.cf"),
            format!("hosts = inet:127.0.0.1:{}\nuser = postfix\npassword = pfpw\ndbname = mail\nquery = SELECT nexthop FROM transport WHERE address='%s'\n", db.port),
        )
        .unwrap();
        transport.push_str(&format!(", mysql:{h}/transport-sql.cf"));
        // Recipients known only to MySQL.
        db.sql("USE mail;\nCREATE TABLE mailboxes (address VARCHAR(255));\nINSERT INTO mailboxes VALUES ('sqlonly@mumail.test');\n");
        std::fs::write(
            hub.join("users-sql.cf"),
            format!("hosts = inet:127.0.0.1:{}\nuser = postfix\npassword = pfpw\ndbname = mail\nquery = SELECT address FROM mailboxes WHERE address='%s'\n", db.port),
        )
        .unwrap();
        recipients.push_str(&format!(", mysql:{h}/users-sql.cf"));
        db
    };
    std::fs::write(
        hub.join("main.cf"),
        format!(
            "compatibility_level = 3.6\nqueue_directory = {h}/queue\nmaillog_file = {h}/maillog\nmyhostname = hub.mumail.test\n\
             mydomain = mumail.test\nmydestination = mumail.test\nmynetworks = 10.0.0.0/8\n\
             local_recipient_maps = {recipients}\nsmtpd_recipient_restrictions = {access}, permit_mynetworks, reject_unauth_destination\n\
             transport_maps = {transport}\nminimal_backoff_time = 1s\nmaximal_backoff_time = 2s\nqueue_run_delay = 1s\n"
        ),
    )
    .unwrap();
    std::fs::write(
        hub.join("master.cf"),
        format!("127.0.0.1:{smtp} inet n - n - - smtpd\nlmtp unix - - n - - lmtp\nerror unix - - n - - error\n"),
    )
    .unwrap();
    let log = std::fs::File::create(hub.join("stderr")).unwrap();
    let mut cmd = Command::new(bin("postfix-master"));
    cmd.args(["-c", hub.to_str().unwrap()]).stdout(log.try_clone().unwrap()).stderr(log);
    let _master = Proc::spawn("postfix-master", &mut cmd);
    wait_tcp(smtp);

    assert!(
        rcpt_reply(&swaks(smtp, "u1@mumail.test")).starts_with("250 2.1.5 Ok"),
        "{}",
        swaks(smtp, "u1@mumail.test")
    );
    assert_eq!(
        rcpt_reply(&swaks(smtp, "nobody@mumail.test")),
        "550 5.1.1 <nobody@mumail.test>: Recipient address rejected: User unknown in local recipient table"
    );
    assert_eq!(
        rcpt_reply(&swaks(smtp, "u2@mumail.test")),
        "554 5.7.1 <u2@mumail.test>: Recipient address rejected: no mail for u2 today"
    );
    #[cfg(feature = "mysql")]
    {
        assert_eq!(
            rcpt_reply(&swaks(smtp, "u3@mumail.test")),
            "554 5.7.1 <u3@mumail.test>: Recipient address rejected: Access denied"
        );
        assert!(rcpt_reply(&swaks(smtp, "sqlonly@mumail.test")).starts_with("250 2.1.5 Ok"));
    }
    // Per-user routing: each message lands on the back end the directory
    // (or MySQL) names for its recipient, and only there.
    let mut routes = vec![("u1", &be1, &be2), ("u4", &be2, &be1)];
    if cfg!(feature = "mysql") {
        routes.push(("u5", &be1, &be2));
    }
    for (user, _, _) in &routes {
        let o = Command::new("/usr/bin/swaks")
            .args(["--server", &format!("127.0.0.1:{smtp}"), "--timeout", "30"])
            .args(["--from", "sender@mumail.test", "--to", &format!("{user}@mumail.test")])
            .args(["--header", &format!("Subject: routed to {user}")])
            .output()
            .unwrap();
        let t = String::from_utf8_lossy(&o.stdout);
        assert!(t.contains("250 2.0.0 Ok: queued as"), "{t}");
    }
    for (user, right, wrong) in &routes {
        let delivered = |b: &Backend| {
            std::fs::read_to_string(b.dir.join("lmtpd.log"))
                .unwrap_or_default()
                .lines()
                .any(|l| l.contains("Delivered:") && (l.contains(&format!("user.{user} ")) || l.contains(&format!("user/{user} "))))
        };
        wait_for(
            &format!("{user} delivered to its back end"),
            std::time::Duration::from_secs(30),
            || delivered(right),
        );
        assert!(!delivered(wrong), "{user} also on the other back end");
    }
    let maillog = std::fs::read_to_string(hub.join("maillog")).unwrap();
    assert!(
        maillog.contains(&format!("to=<u1@mumail.test>, relay=hub.mumail.test[{}]", be1.lmtp_sock.display())),
        "{maillog}"
    );

    // MariaDB down: its access check is a temporary failure too.
    #[cfg(feature = "mysql")]
    {
        mariadb.stop();
        let reply = rcpt_reply(&swaks(smtp, "u1@mumail.test"));
        assert!(reply.starts_with("451 4.3.5"), "{reply}");
        // Not in the directory: MySQL would be asked next, and is down.
        let reply = rcpt_reply(&swaks(smtp, "nobody@mumail.test"));
        assert!(reply.starts_with("451 4.3."), "{reply}");
        mariadb.resume();
        let reply = rcpt_reply(&swaks(smtp, "u1@mumail.test"));
        assert!(reply.starts_with("250 2.1.5 Ok"), "MariaDB back: {reply}");
    }

    // The directory down: temporary failures, never an accept or a bounce.
    slapd.stop();
    for r in ["u1@mumail.test", "nobody@mumail.test"] {
        let reply = rcpt_reply(&swaks(smtp, r));
        assert!(reply.starts_with("451 4.3."), "{r}: {reply}");
    }
    // Back: the same connection settings work again without a restart.
    slapd.resume();
    assert!(rcpt_reply(&swaks(smtp, "u1@mumail.test")).starts_with("250 2.1.5 Ok"));
}

#[test]
fn ldap_tables_over_tls() {
    if !can_run(
        "ldap tables tls",
        &[
            REAL_POSTMAP,
            "/usr/lib/postfix/postfix-ldap.so",
            "/usr/sbin/slapd",
            "/usr/bin/openssl",
        ],
    ) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let certs = d.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let (ca, cert, key) = make_certs(&certs);
    let other = d.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let (other_ca, _, _) = make_certs(&other);
    let slapd = Slapd::start_tls(&d.path().join("slapd"), Some((&cert, &key)));
    let tls_port = slapd.tls_port.unwrap();
    let q = format!("search_base = {LDAP_BASE}\nquery_filter = (uid=%s)\nresult_attribute = mail\ntimeout = 3\n");
    let cases: Vec<(&str, String, &[&str])> = vec![
        (
            "ldaps",
            format!(
                "server_host = ldaps://127.0.0.1:{tls_port}/\ntls_require_cert = yes\ntls_ca_cert_file = {}\n{q}",
                ca.display()
            ),
            &["u1", "nosuch"],
        ),
        (
            "starttls",
            format!(
                "server_host = ldap://127.0.0.1:{}/\nstart_tls = yes\ntls_require_cert = yes\ntls_ca_cert_dir = {}\n{q}",
                slapd.port,
                certs.display()
            ),
            &["u2"],
        ),
        (
            "wrong-ca",
            format!(
                "server_host = ldaps://127.0.0.1:{tls_port}/\ntls_require_cert = yes\ntls_ca_cert_file = {}\n{q}",
                other_ca.display()
            ),
            &["u1"],
        ),
        ("unchecked", format!("server_host = ldaps://127.0.0.1:{tls_port}/\n{q}"), &["u3"]),
    ];
    let found = compare("ldap", d.path(), &cases);
    assert_eq!(found, 3, "ldaps, starttls and unchecked each find their user");
}

/// The IMAP view of one login on our back end: `LOGIN` then, for the
/// shared folder `projects`, what SELECT and LIST answer.
const GROUP_PROBE: &str = r#"
import imaplib, sys
M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1]))
try:
    M.login(sys.argv[2], 'testpw')
except imaplib.IMAP4.error as e:
    print('login', e); sys.exit(0)
typ, r = M.select('projects', readonly=True)
print('select', typ, r[0].decode() if r and r[0] else '')
typ, r = M.list('""', 'proj*')
print('list', [x for x in r if x])
if len(sys.argv) > 3:
    for cmd in sys.argv[3:]:
        ident, rights = cmd.split('=')
        typ, r = M.setacl('projects', ident, rights)
        print('setacl', ident, typ, r[0].decode() if r and r[0] else '')
M.logout()
"#;

fn probe(port: u16, user: &str, setacl: &[&str]) -> String {
    let mut args = vec![port.to_string(), user.to_string()];
    args.extend(setacl.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    python(GROUP_PROBE, &args)
}

/// The users u7, yes1 and md5u (their logins are checked by saslauthd,
/// shadow; the directory only knows their groups), the group Staff with
/// u7 in it, and the entries of `more`.
fn directory_with_groups(url: &str, more: &str) {
    let mut ldif = format!("dn: ou=groups,{LDAP_BASE}\nchangetype: add\nobjectClass: organizationalUnit\nou: groups\n\n");
    for u in ["u7", "yes1", "md5u"] {
        ldif.push_str(&format!(
            "dn: uid={u},ou=people,{LDAP_BASE}\nchangetype: add\nobjectClass: inetOrgPerson\nuid: {u}\ncn: {u}\nsn: {u}\n\n"
        ));
    }
    ldif.push_str(&format!(
        "dn: cn=Staff,ou=groups,{LDAP_BASE}\nchangetype: add\nobjectClass: posixGroup\ncn: Staff\ngidNumber: 20000\nmemberUid: u7\n"
    ));
    if !more.is_empty() {
        ldif.push('\n');
        ldif.push_str(more);
    }
    ldapmodify(url, &ldif);
}

fn ldapmodify(url: &str, ldif: &str) {
    let mut child = Command::new("/usr/bin/ldapmodify")
        .args(["-x", "-H", url, "-D", &format!("cn=admin,{LDAP_BASE}"), "-w", "adminpw"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), ldif.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "ldapmodify: {}", String::from_utf8_lossy(&out.stderr));
}

/// `group:` ACL identifiers from the directory (`auth_mech: pts`,
/// `pts_module: ldap`, Cyrus's ptloader options): RFC 2307 posixGroups
/// found by `ldap_member_filter`, and AD-style group DNs in an attribute
/// of the user's entry (`ldap_member_method: attribute`); a `group:staff`
/// ACL on a shared folder opens it to members only; a change of
/// membership shows after `ptscache_timeout`; with the directory down an
/// expired answer is used, a user never looked up gets `NO [UNAVAILABLE]`,
/// and a restarted directory is used again without restarting imapd.
#[test]
fn group_acls_from_ldap() {
    if !can_run("ldap groups", &["/usr/sbin/slapd", "/usr/bin/ldapmodify", "/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let mut slapd = Slapd::start_with(&d.path().join("slapd"), None, "");
    let url = slapd.url();
    // The back end's logins (u7, yes1, md5u) are checked by saslauthd
    // (shadow); the directory only knows their groups.
    directory_with_groups(
        &url,
        &format!(
            "dn: cn=office,ou=groups,{LDAP_BASE}\nchangetype: add\nobjectClass: posixGroup\ncn: office\ngidNumber: 20001\n\n\
             dn: cn=mailusers,ou=groups,{LDAP_BASE}\nchangetype: add\nobjectClass: posixGroup\ncn: mailusers\ngidNumber: 20002\nmemberUid: u7\n"
        ),
    );

    let conf = |method: &str, ttl: u32| {
        let members = if method == "filter" {
            format!("ldap_member_method: filter\nldap_member_base: ou=groups,{LDAP_BASE}\nldap_member_filter: (memberUid=%u)\nldap_member_attribute: cn\n")
        } else {
            "ldap_member_method: attribute\nldap_member_attribute: seeAlso\n".to_string()
        };
        format!(
            "altnamespace: no\nauth_mech: pts\npts_module: ldap\nldap_uri: ldap://127.0.0.1:1/ {url}\nldap_sasl: no\n\
             ldap_base: ou=people,{LDAP_BASE}\nldap_filter: (uid=%u)\nldap_group_base: ou=groups,{LDAP_BASE}\n\
             ldap_group_filter: (cn=%u)\nldap_timeout: 3\nptscache_timeout: {ttl}s\n{members}\
             autocreate_post: yes\nautocreate_users: group:mailusers\n"
        )
    };
    let ttl = 6;
    let mut b = Backend::start(&d.path().join("be"), &conf("filter", ttl));
    let port = b.imap_port;

    // The admin makes the shared folder and its ACL; SETACL knows which
    // groups exist.
    let out = python(
        r#"
import imaplib, sys
M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1])); M.login('md5u', 'testpw')
assert M.create('projects')[0] == 'OK'
assert M.setacl('projects', 'md5u', 'lrswipkxtecda')[0] == 'OK'
assert M.deleteacl('projects', 'anyone')[0] == 'OK'
assert M.append('projects', None, None, b'Subject: plan\r\n\r\nthe plan\r\n')[0] == 'OK'
print('ok')
"#,
        &[&port.to_string()],
    );
    assert!(out.contains("ok"), "{out}");
    let out = probe(port, "md5u", &["group:Staff=lrs", "group:nosuch=lrs", "-group:office=w"]);
    assert!(out.contains("setacl group:Staff OK"), "{out}");
    assert!(
        out.contains("setacl group:nosuch NO") && out.contains("Invalid identifier"),
        "{out}"
    );
    assert!(out.contains("setacl -group:office OK"), "{out}");

    // Only the directory's mail users get an INBOX at their first delivery.
    let out = python(
        r#"
import smtplib, sys
l = smtplib.LMTP(sys.argv[1])
l.ehlo()
l.mail('a@example.org')
print('u7', l.rcpt('u7')[0], 'yes1', l.rcpt('yes1')[0])
l.quit()
"#,
        &[b.lmtp_sock.to_str().unwrap()],
    );
    assert!(out.contains("u7 250 yes1 550"), "{out}");

    // Members see and open the folder; others do not.
    let out = probe(port, "u7", &[]);
    assert!(out.contains("select OK 1"), "{out}");
    assert!(out.contains("projects"), "{out}");
    let t0 = std::time::Instant::now();
    let out = probe(port, "yes1", &[]);
    assert!(out.contains("select NO"), "{out}");
    assert!(!out.contains("\"projects"), "{out}");

    // Membership changes: seen once the cached answer is older than
    // ptscache_timeout, not before.
    ldapmodify(
        &url,
        &format!("dn: cn=Staff,ou=groups,{LDAP_BASE}\nchangetype: modify\nadd: memberUid\nmemberUid: yes1\n-\ndelete: memberUid\nmemberUid: u7\n"),
    );
    let out = probe(port, "yes1", &[]);
    if t0.elapsed() < std::time::Duration::from_secs(ttl as u64 - 1) {
        assert!(out.contains("select NO"), "within the cache lifetime: {out}");
    }
    std::thread::sleep(std::time::Duration::from_secs(ttl as u64 + 1));
    let out = probe(port, "yes1", &[]);
    assert!(out.contains("select OK 1"), "after the cache lifetime: {out}");
    let out = probe(port, "u7", &[]);
    assert!(out.contains("select NO"), "u7 left the group: {out}");

    // The directory down: yes1's expired answer still serves (logged); a
    // user never looked up is refused for now, not let in without groups.
    slapd.stop();
    std::thread::sleep(std::time::Duration::from_secs(ttl as u64 + 1));
    let out = probe(port, "yes1", &[]);
    assert!(out.contains("select OK 1"), "expired answer while down: {out}");
    b.imapd = None;
    b.start_imapd();
    let port = b.imap_port;
    let out = probe(port, "yes1", &[]);
    assert!(out.contains("login") && out.contains("[UNAVAILABLE]"), "{out}");
    slapd.resume();
    let out = probe(port, "yes1", &[]);
    assert!(out.contains("select OK 1"), "directory back: {out}");
    let log = std::fs::read_to_string(b.dir.join("imapd.log")).unwrap();
    assert!(log.contains("using the expired cached list"), "{log}");
    assert!(log.contains("ptload(): groups of yes1:"), "{log}");

    // ldap_member_method: attribute — group DNs in the user's entry (as
    // AD's memberOf); the group is the DN's first RDN, lower-cased.
    ldapmodify(
        &url,
        &format!(
            "dn: uid=u7,ou=people,{LDAP_BASE}\nchangetype: modify\nadd: seeAlso\nseeAlso: cn=Staff,ou=groups,{LDAP_BASE}\nseeAlso: cn=Other\\2C Dept,ou=groups,{LDAP_BASE}\n"
        ),
    );
    drop(b);
    let b = Backend::start(&d.path().join("be2"), &conf("attribute", ttl));
    let out = python(
        r#"
import imaplib, sys
M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1])); M.login('md5u', 'testpw')
assert M.create('projects')[0] == 'OK'
assert M.deleteacl('projects', 'anyone')[0] == 'OK'
for ident, rights in (('md5u', 'lrswipkxtecda'), ('group:staff', 'lrs')):
    typ, r = M.setacl('projects', ident, rights); assert typ == 'OK', (ident, r)
assert M.append('projects', None, None, b'Subject: plan\r\n\r\nthe plan\r\n')[0] == 'OK'
print('ok')
"#,
        &[&b.imap_port.to_string()],
    );
    assert!(out.contains("ok"), "{out}");
    let out = probe(b.imap_port, "u7", &[]);
    assert!(out.contains("select OK 1"), "{out}");
    let out = probe(b.imap_port, "yes1", &[]);
    assert!(out.contains("select NO"), "{out}");
}

/// A Murder whose nodes take groups from the directory (`auth_mech:
/// pts`): a folder on one back end shared with a group shows in the LIST
/// of a member whose INBOX is on the other, through the front end, and
/// opens there; others do not see it.
#[test]
fn group_folders_across_a_murder() {
    if !can_run(
        "ldap groups in a murder",
        &["/usr/sbin/slapd", "/usr/bin/ldapmodify", "/usr/bin/unshare"],
    ) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let slapd = Slapd::start_with(&d.path().join("slapd"), None, "");
    let url = slapd.url();
    directory_with_groups(&url, "");
    let pts = format!(
        "auth_mech: pts\npts_module: ldap\nldap_uri: {url}\nldap_sasl: no\n\
         ldap_base: ou=people,{LDAP_BASE}\nldap_filter: (uid=%u)\nldap_group_base: ou=groups,{LDAP_BASE}\n\
         ldap_group_filter: (cn=%u)\nldap_timeout: 3\nldap_member_method: filter\n\
         ldap_member_base: ou=groups,{LDAP_BASE}\nldap_member_filter: (memberUid=%u)\nldap_member_attribute: cn\n"
    );
    let t = d.path().join("murder");
    std::fs::create_dir_all(&t).unwrap();
    let mu = harness::murder::Murder::start_with(
        &t,
        &format!("proxyservers: md5u\nproxy_authname: md5u\nproxy_password: testpw\n{pts}"),
        &format!("proxy_authname: md5u\nproxy_password: testpw\n{pts}"),
    );
    // The folder is on the second back end (yes1's), u7's INBOX on the first.
    let out = harness::murder::imap_admin(
        mu.backs[1].imap_port,
        // (md5u posts as the ACL lets it: an admin's rights are the ACL's.)
        &[
            "CREATE projects",
            "SETACL projects group:Staff lrs",
            "DELETEACL projects anyone",
            "SETACL projects md5u lri",
        ],
    );
    assert_eq!(out.matches("-> OK").count(), 4, "{out}");
    let out = python(
        "import imaplib, sys\nM = imaplib.IMAP4('127.0.0.1', int(sys.argv[1])); M.login('md5u', 'testpw')\n\
         print(M.append('projects', None, None, b'Subject: plan\\r\\n\\r\\nthe plan\\r\\n'))\n",
        &[&mu.backs[1].imap_port.to_string()],
    );
    assert!(out.contains("'OK'"), "{out}");
    let (_proxyd, fe) = mu.front("proxyd", &[]);
    let visit = "import imaplib, sys\nM = imaplib.IMAP4('127.0.0.1', int(sys.argv[1])); M.login(sys.argv[2], 'testpw')\n\
                 print('list', M.list('\"\"', '*'))\nprint('select', M.select('\"Shared Folders.projects\"', readonly=True))\n";
    let out = python(visit, &[&fe.to_string(), "u7"]);
    assert!(out.contains(" \"Shared Folders.projects\"'"), "a Staff member lists it: {out}");
    assert!(out.contains("select ('OK', [b'1'])"), "{out}");
    let out = python(visit, &[&fe.to_string(), "yes1"]);
    assert!(!out.contains("projects'") && out.contains("select ('NO'"), "{out}");
}
