//! Benchmark of the hub (prints figures; not a test), run as root:
//!     cargo bench --bench hub
//! (a) end to end: `smtp-source -s 10 -m BENCH_HUB_MSGS(10000) -l 5120`
//!     → hub → LMTP (UNIX socket) → store, from the first connect until the
//!     last message is in the mailbox (polled over IMAP STATUS): our
//!     postfix-master → our lmtpd, against Postfix 3.7 → Cyrus 3.6 lmtpd;
//! (b) the hub alone: the same smtp-source run with delivery discarded
//!     (`mailbox_transport = discard:`), until smtp-source has its last 250.
//! fsync stays on everywhere; every 250 follows its own data's fsync.
//! `BENCH_HUB_OURS_ONLY=1` runs only our pair's part (a), for profiling;
//! `BENCH_HUB_KEEP=1` leaves the temp dir behind (for runs back to back).

#[path = "../tests/harness/mod.rs"]
mod harness;
use harness::*;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const SMTP_SOURCE: &str = "/usr/sbin/smtp-source";

fn env(n: &str, d: usize) -> usize {
    std::env::var(n).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
}

fn open_dir(p: &Path) {
    std::fs::create_dir_all(p).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// MESSAGES of a user's INBOX over IMAP.
fn count(port: u16, user: &str) -> usize {
    let Ok(s) = TcpStream::connect(("127.0.0.1", port)) else { return 0 };
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    let mut l = String::new();
    let _ = r.read_line(&mut l);
    let _ = write!(w, "a LOGIN {user} testpw\r\nb STATUS INBOX (MESSAGES)\r\nc LOGOUT\r\n");
    let mut n = 0;
    loop {
        l.clear();
        if r.read_line(&mut l).unwrap_or(0) == 0 {
            return n;
        }
        if let Some(i) = l.find("(MESSAGES ") {
            n = l[i + 10..].trim_end().trim_end_matches(')').parse().unwrap_or(0);
        }
        if l.starts_with("c ") {
            return n;
        }
    }
}

fn smtp_source(port: u16, msgs: usize, to: &str) -> f64 {
    let t = Instant::now();
    let st = Command::new(SMTP_SOURCE)
        .args([
            "-s",
            "10",
            "-m",
            &msgs.to_string(),
            "-l",
            "5120",
            "-f",
            "bench@mumail.test",
            "-t",
            to,
            &format!("127.0.0.1:{port}"),
        ])
        .status()
        .unwrap();
    assert!(st.success(), "smtp-source failed");
    t.elapsed().as_secs_f64()
}

/// (accept seconds, end-to-end seconds) for `msgs` into `user`.
fn run(port: u16, imap: u16, user: &str, msgs: usize) -> (f64, f64) {
    let before = count(imap, user);
    let t = Instant::now();
    let accept = smtp_source(port, msgs, &format!("{user}@mumail.test"));
    let end = Instant::now() + Duration::from_secs(600);
    while count(imap, user) < before + msgs {
        assert!(Instant::now() < end, "delivery did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
    (accept, t.elapsed().as_secs_f64())
}

fn main_cf(dir: &Path, queue: &Path, transport: &str, extra: &str) -> String {
    format!(
        "compatibility_level = 3.6\nqueue_directory = {q}\nmaillog_file = {d}/maillog\nmaillog_file_prefixes = {d}\nmyhostname = hub.mumail.test\n\
         mydomain = mumail.test\nmydestination = mumail.test\nmynetworks = 127.0.0.0/8\nlocal_recipient_maps =\ninet_interfaces = loopback-only\n\
         mailbox_transport = {transport}\nlocal_transport = {transport}\nlmtp_destination_recipient_limit = 1\n{extra}",
        q = queue.display(),
        d = dir.display()
    )
}

fn main() {
    if std::env::var("MUMAIL_PROFILE").is_err() {
        std::env::set_var("MUMAIL_PROFILE", "release");
    }
    if !nix::unistd::Uid::effective().is_root() || !Path::new(CYRUS_MASTER).exists() || !Path::new(POSTFIX).exists() {
        eprintln!("hub bench: needs root, Debian's postfix and cyrus-imapd (tests/tools/test.sh installs them)");
        return;
    }
    let msgs = env("BENCH_HUB_MSGS", 10_000);
    let mut d = tempfile::tempdir().unwrap();
    // Deleting thousands of files leaves ext4 (without a journal) slow to
    // allocate inodes for minutes; back-to-back runs keep the directory.
    if std::env::var("BENCH_HUB_KEEP").is_ok() {
        d.disable_cleanup(true);
        println!("keeping {}", d.path().display());
    }
    open_dir(d.path());
    let ours_be = Backend::start(&d.path().join("ours"), "autocreate_post: yes\n");
    for p in ["ours", "ours/sasl", "ours/conf", "ours/conf/socket"] {
        open_dir(&d.path().join(p));
    }
    let cyrus = CyrusServer::start(&d.path().join("cyrus"), &d.path().join("ours/sasl/mux"), "autocreate_post: yes\n");
    println!(
        "hub benchmark: {} cores, {msgs} x 5 KB messages from smtp-source -s 10; ours vs Postfix 3.7 + Cyrus 3.6",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    // Our hub.
    let hub = d.path().join("hub");
    open_dir(&hub);
    let hport = free_port();
    std::fs::write(
        hub.join("master.cf"),
        format!("127.0.0.1:{hport} inet n - n - - smtpd\nlmtp unix - - n - - lmtp\ndiscard unix - - n - - discard\n"),
    )
    .unwrap();
    let write_ours = |transport: &str| {
        std::fs::write(hub.join("main.cf"), main_cf(&hub, &hub.join("queue"), transport, "")).unwrap();
    };
    let start_ours = || {
        let mut cmd = Command::new(bin("postfix-master"));
        cmd.args(["-c", hub.to_str().unwrap()]);
        let p = Proc::spawn("postfix-master", &mut cmd);
        wait_tcp(hport);
        p
    };
    // Real Postfix.
    let pf = d.path().join("postfix");
    let pport = PostfixInstance::prepare(&pf);
    let write_pf = |transport: &str| {
        std::fs::write(
            pf.join("main.cf"),
            main_cf(
                &pf,
                &pf.join("queue"),
                transport,
                &format!("data_directory = {}\n", pf.join("data").display()),
            ),
        )
        .unwrap();
    };

    // Warm-up: create the INBOXes.
    for (sock, imap) in [(&ours_be.lmtp_sock, ours_be.imap_port), (&cyrus.lmtp_sock, cyrus.imap_port)] {
        let _ = imap;
        python(
            "import smtplib, sys\nl = smtplib.LMTP(sys.argv[1]); l.sendmail('a@b', ['u7'], b'Subject: warm\\r\\n\\r\\nx\\r\\n'); l.quit()\n",
            &[sock.to_str().unwrap()],
        );
    }

    // (a) end to end.
    write_ours(&format!("lmtp:unix:{}", ours_be.lmtp_sock.display()));
    let p = start_ours();
    let (oa, oe) = run(hport, ours_be.imap_port, "u7", msgs);
    drop(p);
    if std::env::var("BENCH_HUB_OURS_ONLY").is_ok() {
        // For profiling: our pair alone.
        println!(
            "(a) end to end   ours:   {oe:6.1} s  {:6.0} msg/s  (smtp-source done after {oa:.1} s)",
            msgs as f64 / oe
        );
        return;
    }
    write_pf(&format!("lmtp:unix:{}", cyrus.lmtp_sock.display()));
    let inst = PostfixInstance::start(&pf);
    wait_tcp(pport);
    let (pa, pe) = run(pport, cyrus.imap_port, "u7", msgs);
    drop(inst);
    println!(
        "(a) end to end   ours:   {oe:6.1} s  {:6.0} msg/s  (smtp-source done after {oa:.1} s)",
        msgs as f64 / oe
    );
    println!(
        "(a) end to end   real:   {pe:6.1} s  {:6.0} msg/s  (smtp-source done after {pa:.1} s)",
        msgs as f64 / pe
    );
    println!("(a) ratio ours/real: {:.2}x (goal >= 5x)", pe / oe);

    // (b) acceptance only.
    write_ours("discard:");
    let p = start_ours();
    let oa = smtp_source(hport, msgs, "u7@mumail.test");
    drop(p);
    write_pf("discard:");
    let inst = PostfixInstance::start(&pf);
    wait_tcp(pport);
    let pa = smtp_source(pport, msgs, "u7@mumail.test");
    drop(inst);
    println!("(b) accept only  ours:   {oa:6.1} s  {:6.0} msg/s", msgs as f64 / oa);
    println!("(b) accept only  real:   {pa:6.1} s  {:6.0} msg/s", msgs as f64 / pa);
    println!("(b) ratio ours/real: {:.2}x (goal >= 3x)", pa / oa);
}
