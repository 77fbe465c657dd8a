//! The real Postfix delivering into our lmtpd, over the UNIX socket (as
//! postman) and over TCP (AUTH PLAIN through saslauthd), with per-recipient
//! results honoured: the over-quota recipient is deferred, the others
//! delivered.

mod harness;
use harness::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const SWAKS: &str = "/usr/bin/swaks";

fn open_dir(p: &Path) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn postfix_lmtp_client_delivers_and_defers_over_quota() {
    if !can_run("postfix to lmtpd", &[POSTFIX, SWAKS, "/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    open_dir(d.path());
    let be = d.path().join("backend");
    std::fs::create_dir_all(&be).unwrap();
    open_dir(&be);
    let b = Backend::start(&be, "");
    for sub in ["conf", "conf/socket"] {
        open_dir(&be.join(sub));
    }
    // INBOXes by first login (an admin's made by hand, as Cyrus gives
    // admins none); md5u (an admin) fills its own 1 KB quota.
    python(
        r#"
import imaplib, smtplib, sys
for u in ('u7', 'yes1', 'md5u'):
    M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1])); M.login(u, 'testpw')
    if u == 'md5u':
        assert M.create('user/md5u')[0] == 'OK'
    M.logout()
l = smtplib.LMTP(sys.argv[2]); l.sendmail('a@b', ['md5u'], b'Subject: big\r\n\r\n' + b'x' * 2000 + b'\r\n'); l.quit()
M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1])); M.login('md5u', 'testpw')
typ, data = M.setquota('user/md5u', '(STORAGE 1)')
assert typ == 'OK', data
typ, data = M.getquotaroot('INBOX')
assert data[0][0].startswith(b'INBOX ') and data[1][0].endswith(b' (STORAGE 2 1)'), data
"#,
        &[&b.imap_port.to_string(), b.lmtp_sock.to_str().unwrap()],
    );

    let pf = d.path().join("postfix");
    let port = PostfixInstance::prepare(&pf);
    std::fs::write(
        pf.join("main.cf"),
        format!(
            "compatibility_level = 3.6\nqueue_directory = {q}\ndata_directory = {dd}\nmyhostname = hub.mumail.test\nmydomain = mumail.test\n\
             inet_interfaces = loopback-only\nmydestination = mumail.test\nlocal_recipient_maps =\nrelay_domains = tcp.mumail.test\n\
             local_transport = lmtp:unix:{sock}\ntransport_maps = inline:{{tcp.mumail.test=lmtp:inet:127.0.0.1:{lport}}}\n\
             lmtp_sasl_auth_enable = yes\nlmtp_sasl_password_maps = static:u7:testpw\nlmtp_sasl_security_options = noanonymous\n\
             maillog_file = {p}/maillog\nmaillog_file_prefixes = {p}\n",
            q = pf.join("queue").display(),
            dd = pf.join("data").display(),
            sock = b.lmtp_sock.display(),
            lport = b.lmtp_port,
            p = pf.display()
        ),
    )
    .unwrap();
    let _postfix = PostfixInstance::start(&pf);
    wait_tcp(port);
    let o = Command::new(SWAKS)
        .args([
            "--server",
            &format!("127.0.0.1:{port}"),
            "--from",
            "sender@example.org",
            "--to",
            "u7@mumail.test,yes1@mumail.test,md5u@mumail.test,u7@tcp.mumail.test",
            "--header",
            "Subject: via postfix",
        ])
        .output()
        .unwrap();
    let so = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(
        so.contains("250 2.0.0 Ok: queued as"),
        "{so}\n{}",
        std::fs::read_to_string(pf.join("maillog")).unwrap_or_default()
    );
    let log = pf.join("maillog");
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for("postfix deliveries", Duration::from_secs(90), || {
        let l = read();
        l.matches("status=sent").count() >= 3 && l.contains("status=deferred")
    });
    let l = read();
    assert!(
        l.contains("to=<u7@mumail.test>, relay=") && l.contains("250 2.1.5 Success SESSIONID=<backend1-"),
        "{l}"
    );
    assert!(l.contains("to=<u7@tcp.mumail.test>, relay=127.0.0.1[127.0.0.1]:"), "{l}");
    let deferred = l.lines().find(|x| x.contains("to=<md5u@mumail.test>")).unwrap_or("");
    assert!(
        deferred.contains("status=deferred") && deferred.contains("452 4.2.2 Over quota"),
        "{l}"
    );
    let out = python(
        r#"
import imaplib, sys
# u7 got the same Message-ID twice (UNIX and TCP): duplicatesuppression
# keeps one copy, as Cyrus does.
for u, n in (('u7', 1), ('yes1', 1), ('md5u', 1)):
    M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1])); M.login(u, 'testpw')
    typ, data = M.select('INBOX')
    assert int(data[0]) == n, (u, data)
    M.logout()
print('ok')
"#,
        &[&b.imap_port.to_string()],
    );
    assert!(out.contains("ok"));
}
