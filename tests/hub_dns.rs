//! The hub and the DNS, against a real name server (dnsmasq on loopback,
//! given to the hub through MUMAIL_DNS_SERVERS): smtpd's DNS restrictions
//! (reject_rbl_client with its TXT reason, reject_unknown_sender_domain /
//! reject_unknown_recipient_domain with NXDOMAIN, null MX and a failing
//! zone under defer_if_permit, reject_unknown_helo_hostname,
//! reject_unknown_client_hostname, reject_unauth_pipelining), and the SMTP
//! client's MX routing (a dead better MX skipped, a nonexistent domain
//! bounced) with STARTTLS at `may` and `verify` into a second hub.

mod harness;
use harness::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const SWAKS: &str = "/usr/bin/swaks";
const DNSMASQ: &str = "/usr/sbin/dnsmasq";

fn open_dir(p: &Path) {
    std::fs::create_dir_all(p).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// dnsmasq answering the test zones; everything under `.test` that is not
/// listed does not exist, `broken.example` fails (its server is dead).
fn dnsmasq(dir: &Path, port: u16) -> Proc {
    let records = [
        "--mx-host=relay.test,mx-dead.test,5",
        "--mx-host=relay.test,localhost,10",
        "--host-record=mx-dead.test,127.0.0.2",
        "--host-record=localhost,127.0.0.1",
        "--mx-host=tls.test,localhost,10",
        "--mx-host=badname.test,mx1.test,10",
        "--host-record=mx1.test,127.0.0.1",
        "--mx-host=good.test,mail.good.test,10",
        "--host-record=mail.good.test,127.0.0.1",
        "--mx-host=nullmx.test,.,0",
        "--host-record=7.2.0.192.bl.test,127.0.0.2",
        "--txt-record=7.2.0.192.bl.test,spam source",
        "--host-record=9.2.0.192.bl.test,127.0.0.99",
        "--server=/broken.example/127.0.0.1#9",
    ];
    let mut cmd = Command::new(DNSMASQ);
    cmd.args([
        "-k",
        &format!("--port={port}"),
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        "--no-resolv",
        "--no-hosts",
        "--local=/test/",
        "--user=root",
        "--log-facility=-",
        "--log-queries",
        &format!("--pid-file={}", dir.join("dnsmasq.pid").display()),
    ])
    .args(records)
    .stdout(std::fs::File::create(dir.join("dnsmasq.log")).unwrap())
    .stderr(std::fs::File::create(dir.join("dnsmasq.err")).unwrap());
    let p = Proc::spawn("dnsmasq", &mut cmd);
    wait_tcp(port);
    p
}

struct Hub {
    dir: std::path::PathBuf,
    port: u16,
    _proc: Proc,
}

impl Hub {
    fn start(dir: &Path, dns_port: u16, main: &str, master: &str) -> Hub {
        open_dir(dir);
        let port = free_port();
        std::fs::write(
            dir.join("main.cf"),
            format!(
                "compatibility_level = 3.6\nqueue_directory = {d}/queue\nmaillog_file = {d}/maillog\n\
                 alias_maps =\nminimal_backoff_time = 1s\nmaximal_backoff_time = 2s\nqueue_run_delay = 1s\n{main}",
                d = dir.display()
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("master.cf"),
            format!(
                "127.0.0.1:{port} inet n - n - - smtpd\nerror unix - - n - - error\n\
                 discard unix - - n - - discard\nlocal unix - n n - - local\n{master}"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("stderr")).unwrap();
        let mut cmd = Command::new(bin("postfix-master"));
        cmd.args(["-c", dir.to_str().unwrap()])
            .env("MUMAIL_DNS_SERVERS", format!("127.0.0.1:{dns_port}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let p = Proc::spawn("postfix-master", &mut cmd);
        wait_tcp(port);
        Hub {
            dir: dir.to_path_buf(),
            port,
            _proc: p,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("maillog")).unwrap_or_default()
    }

    fn swaks(&self, args: &[&str]) -> String {
        let o = Command::new(SWAKS)
            .args([
                "--server",
                &format!("127.0.0.1:{}", self.port),
                "--timeout",
                "30",
                "--ehlo",
                "mail.good.test",
            ])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

#[test]
fn hub_dns_restrictions_mx_routing_and_client_tls() {
    if !can_run("hub dns", &[SWAKS, DNSMASQ, "/usr/bin/openssl"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    open_dir(d.path());
    let dns_port = free_port();
    let _dns = dnsmasq(d.path(), dns_port);
    let certs = d.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let (ca, cert, key) = make_certs(&certs);
    for f in [&ca, &cert, &key] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    open_dir(&certs);

    // The receiving MX: STARTTLS with a certificate for "localhost",
    // final destination for the test domains, mail discarded.
    let p2 = free_port();
    let mx = Hub::start(
        &d.path().join("mx"),
        dns_port,
        &format!(
            "myhostname = mx.mumail.test\nmydestination = relay.test tls.test badname.test pv.test ps.test\nlocal_recipient_maps =\n\
             local_transport = discard:\nmailbox_transport = discard:\nmynetworks = 127.0.0.0/8\n\
             smtpd_tls_cert_file = {}\nsmtpd_tls_key_file = {}\nsmtpd_tls_security_level = may\nsmtpd_tls_loglevel = 1\n",
            cert.display(),
            key.display()
        ),
        &format!("127.0.0.1:{p2} inet n - n - - smtpd\n"),
    );
    let p = mx.port;
    // The hub under test: DNS restrictions on input, MX routing out; the
    // "verify" transport checks the MX's certificate against the CA.
    let hub = Hub::start(
        &d.path().join("hub"),
        dns_port,
        &format!(
            "myhostname = hub.mumail.test\nmydestination = hub.mumail.test\nmynetworks = 127.0.0.0/8\n\
             smtpd_authorized_xclient_hosts = 127.0.0.0/8\n\
             smtpd_client_restrictions = permit_mynetworks, reject_unknown_client_hostname\n\
             smtpd_helo_restrictions = reject_unknown_helo_hostname\n\
             smtpd_recipient_restrictions = check_recipient_access inline:{{bypass@nx.test=OK, pv.test=OK, ps.test=OK}}, reject_rbl_client bl.test=127.0.0.[2..11], \
             reject_unknown_sender_domain, reject_unknown_recipient_domain, permit_mynetworks, reject_unauth_destination\n\
             smtpd_data_restrictions = reject_unauth_pipelining\nsmtpd_relay_restrictions =\n\
             transport_maps = inline:{{relay.test=smtp:relay.test:{p}, tls.test=verify:tls.test:{p}, badname.test=verify:badname.test:{p}, \
             nx.test=smtp:nx.test:{p}, nullmx.test=smtp:nullmx.test:{p}, pv.test=smtp:[127.0.0.1]:{p}, \
             ps.test=smtp:[127.0.0.1]:{p2}}}\n\
             smtp_tls_CAfile = {ca}\n\
             smtp_tls_policy_maps = inline:{{ {{[127.0.0.1]:{p} = secure match=localhost}}, \
             {{[127.0.0.1]:{p2} = verify match=nomatch.example:other.example}} }}\n",
            ca = ca.display()
        ),
        &format!(
            "smtp unix - - n - - smtp\n  -o smtp_tls_security_level=may\n  -o smtp_tls_loglevel=1\n\
             verify unix - - n - - smtp\n  -o smtp_tls_security_level=verify\n  -o smtp_tls_CAfile={}\n  -o smtp_tls_loglevel=1\n",
            ca.display()
        ),
    );

    // Restrictions.
    let out = hub.swaks(&["--from", "a@nx.test", "--to", "x@relay.test", "--quit-after", "RCPT"]);
    assert!(
        out.contains("<** 450 4.1.8 <a@nx.test>: Sender address rejected: Domain not found"),
        "{out}"
    );
    let out = hub.swaks(&["--from", "a@good.test", "--to", "x@nx.test", "--quit-after", "RCPT"]);
    assert!(
        out.contains("<** 450 4.1.2 <x@nx.test>: Recipient address rejected: Domain not found"),
        "{out}"
    );
    let out = hub.swaks(&["--from", "a@nullmx.test", "--to", "x@relay.test", "--quit-after", "RCPT"]);
    assert!(
        out.contains("<** 550 5.7.27 <a@nullmx.test>: Sender address rejected: Domain nullmx.test does not accept mail (nullMX)"),
        "{out}"
    );
    let out = hub.swaks(&["--from", "a@good.test", "--to", "x@nullmx.test", "--quit-after", "RCPT"]);
    assert!(
        out.contains("<** 556 5.1.10 <x@nullmx.test>: Recipient address rejected: Domain nullmx.test does not accept mail (nullMX)"),
        "{out}"
    );
    // A failing zone is a temporary failure, held back until the checks
    // end in permit (defer_if_permit) ...
    let out = hub.swaks(&["--from", "a@broken.example", "--to", "x@relay.test", "--quit-after", "RCPT"]);
    assert!(
        out.contains("<** 450 4.1.8 <a@broken.example>: Sender address rejected: Domain not found"),
        "{out}"
    );
    // ... and a later rejection wins over it.
    let xclient = |addr: &str, name: &str, from: &str, to: &str| {
        python(
            r#"
import smtplib, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), local_hostname='mail.good.test', timeout=30)
s.ehlo('mail.good.test')
code, msg = s.docmd('XCLIENT', 'ADDR=%s NAME=%s' % (sys.argv[2], sys.argv[3]))
assert code == 220, (code, msg)
s.ehlo('mail.good.test')
code, msg = s.docmd('MAIL', 'FROM:<%s>' % sys.argv[4])
print(code, msg.decode())
code, msg = s.docmd('RCPT', 'TO:<%s>' % sys.argv[5])
print(code, msg.decode())
s.quit()
"#,
            &[&hub.port.to_string(), addr, name, from, to],
        )
    };
    let out = xclient("192.0.2.99", "client.good.test", "a@broken.example", "x@elsewhere.example");
    assert!(out.contains("554 5.7.1 <x@elsewhere.example>: Relay access denied"), "{out}");
    // DNSBL: listed with a reason; a reply outside the filter is ignored.
    let out = xclient("192.0.2.7", "client.good.test", "a@good.test", "x@relay.test");
    assert!(
        out.contains("554 5.7.1 Service unavailable; Client host [192.0.2.7] blocked using bl.test; spam source"),
        "{out}"
    );
    let out = xclient("192.0.2.9", "client.good.test", "a@good.test", "x@relay.test");
    assert!(out.contains("554 5.7.1 <x@relay.test>: Relay access denied"), "{out}");
    // Client and helo names.
    let out = xclient("192.0.2.8", "[UNAVAILABLE]", "a@good.test", "x@relay.test");
    assert!(
        out.contains("450 4.7.25 Client host rejected: cannot find your hostname, [192.0.2.8]"),
        "{out}"
    );
    let out = hub.swaks(&[
        "--ehlo",
        "nohost.test",
        "--from",
        "a@good.test",
        "--to",
        "x@relay.test",
        "--quit-after",
        "RCPT",
    ]);
    assert!(
        out.contains("<** 450 4.7.1 <nohost.test>: Helo command rejected: Host not found"),
        "{out}"
    );
    // Commands pipelined without PIPELINING (after HELO).
    let out = python(
        r#"
import socket, sys, time
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=30)
f = s.makefile('rb')
f.readline()
s.sendall(b'HELO mail.good.test\r\n'); f.readline()
s.sendall(b'MAIL FROM:<a@good.test>\r\nRCPT TO:<x@relay.test>\r\nDATA\r\n')
for _ in range(3):
    print(f.readline().decode().strip())
s.sendall(b'QUIT\r\n')
"#,
        &[&hub.port.to_string()],
    );
    assert!(
        out.contains("503 5.5.0 <DATA>: Data command rejected: Improper use of SMTP command pipelining"),
        "{out}"
    );

    // Delivery by MX: the better MX is dead, the next one takes it over
    // opportunistic TLS.
    let out = hub.swaks(&["--from", "a@good.test", "--to", "x@relay.test", "--h-Subject", "by mx"]);
    assert!(out.contains("250 2.0.0 Ok: queued as"), "{out}");
    // verify: the certificate names localhost and is signed by the CA.
    let out = hub.swaks(&["--from", "a@good.test", "--to", "y@tls.test"]);
    assert!(out.contains("250 2.0.0 Ok: queued as"), "{out}");
    // verify against an MX whose name the certificate does not carry.
    let out = hub.swaks(&["--from", "a@good.test", "--to", "z@badname.test"]);
    assert!(out.contains("250 2.0.0 Ok: queued as"), "{out}");
    // NOTIFY=SUCCESS goes along to an MX that offers DSN: the MX reports
    // the delivery, this hub does not.
    let out = python(
        r#"
import smtplib, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), local_hostname='mail.good.test', timeout=30)
s.sendmail('a@good.test', ['w@relay.test'], b'Subject: dsn along\r\n\r\nhi\r\n', mail_options=['RET=HDRS', 'ENVID=e+2Bnv'], rcpt_options=['NOTIFY=SUCCESS', 'ORCPT=rfc822;W@relay.test'])
s.quit()
print('ok')
"#,
        &[&hub.port.to_string()],
    );
    assert!(out.contains("ok"), "{out}");
    // smtp_tls_policy_maps: per next hop, a level and match= names.
    for to in ["a@pv.test", "b@ps.test"] {
        let out = hub.swaks(&["--from", "a@good.test", "--to", to]);
        assert!(out.contains("250 2.0.0 Ok: queued as"), "{out}");
    }
    // A domain that does not exist bounces at once.
    let out = hub.swaks(&["--from", "a@good.test", "--to", "bypass@nx.test"]);
    assert!(out.contains("250 2.0.0 Ok: queued as"), "{out}");

    wait_for("deliveries", Duration::from_secs(60), || {
        let l = hub.log();
        [
            "x@relay.test",
            "y@tls.test",
            "z@badname.test",
            "bypass@nx.test",
            "w@relay.test",
            "a@pv.test",
            "b@ps.test",
        ]
        .iter()
        .all(|r| l.lines().any(|x| x.contains(&format!("to=<{r}>")) && x.contains("status=")))
    });
    let log = hub.log();
    let line = |needle: &str| {
        log.lines()
            .find(|l| l.contains(needle) && l.contains("status="))
            .unwrap_or("")
            .to_string()
    };
    assert!(
        log.contains(&format!("connect to mx-dead.test[127.0.0.2]:{p}: Connection refused")),
        "{log}"
    );
    let sent = line("to=<x@relay.test>");
    assert!(
        sent.contains(&format!("relay=localhost[127.0.0.1]:{p}")) && sent.contains("status=sent (250 2.0.0 Ok: queued as"),
        "{sent}"
    );
    assert!(
        log.contains(&format!(
            "Untrusted TLS connection established to localhost[127.0.0.1]:{p}: TLSv1.3 with cipher"
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "Verified TLS connection established to localhost[127.0.0.1]:{p}: TLSv1.3 with cipher"
        )),
        "{log}"
    );
    assert!(line("to=<y@tls.test>").contains("status=sent"), "{log}");
    assert!(line("to=<a@pv.test>").contains("status=sent"), "{log}");
    assert!(
        log.contains(&format!("Verified TLS connection established to 127.0.0.1[127.0.0.1]:{p}: TLSv1.3")),
        "{log}"
    );
    assert!(
        line("to=<b@ps.test>").contains("dsn=4.7.5, status=deferred (Server certificate not verified)"),
        "{log}"
    );
    let bad = line("to=<z@badname.test>");
    assert!(
        bad.contains("dsn=4.7.5, status=deferred (Server certificate not verified)"),
        "{bad}"
    );
    let nx = line("to=<bypass@nx.test>");
    assert!(
        nx.contains("relay=none")
            && nx.contains(
                "dsn=5.4.4, status=bounced (Host or domain name not found. Name service error for name=nx.test type=MX: Host not found)"
            ),
        "{nx}"
    );
    // The smtpd side of the rejections is logged as Postfix logs it.
    assert!(
        log.contains("NOQUEUE: reject: RCPT from unknown[192.0.2.7]: 554 5.7.1 Service unavailable; Client host [192.0.2.7] blocked using bl.test; spam source; from=<a@good.test> to=<x@relay.test> proto=ESMTP helo=<mail.good.test>")
            || log.contains("NOQUEUE: reject: RCPT from client.good.test[192.0.2.7]: 554 5.7.1 Service unavailable; Client host [192.0.2.7] blocked using bl.test; spam source"),
        "{log}"
    );
    assert!(log.contains("improper command pipelining after MAIL from "), "{log}");
    // The MX saw TLS sessions.
    wait_for("mx deliveries", Duration::from_secs(30), || {
        mx.log().matches("status=sent").count() >= 3
    });
    wait_for("the MX's success report", Duration::from_secs(30), || {
        mx.log().contains(": sender delivery status notification: ")
    });
    assert!(line("to=<w@relay.test>").contains("status=sent"), "{log}");
    assert!(!log.contains("sender delivery status notification"), "{log}");
    assert!(
        mx.log()
            .contains("Anonymous TLS connection established from localhost[127.0.0.1]: TLSv1.3 with cipher"),
        "{}",
        mx.log()
    );
}
