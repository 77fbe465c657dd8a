//! Benchmark of the store (prints figures; not a test): our lmtpd/imapd
//! against Debian's Cyrus IMAP 3.6 on the same machine, same saslauthd,
//! fsync on for both.  Run as root:
//!     cargo bench --bench store
//! (a) LMTP delivery of BENCH_MSGS (10000) × 5 KB to 100 mailboxes over 10
//!     concurrent connections (UNIX socket): messages/s;
//! (b) SELECT + FETCH 1:* (FLAGS INTERNALDATE RFC822.SIZE ENVELOPE) on a
//!     BENCH_BIG (10000) message mailbox: seconds (best of 3);
//! (c) memory of idle IMAP connections (logged in, INBOX selected, in
//!     IDLE, 20-message INBOX): the servers' PSS growth per connection, BENCH_IDLE (10000)
//!     plain and TLS for ours, BENCH_IDLE_CYRUS (300) for Cyrus (a process
//!     each).
//! (d) LIST among many mailboxes: BENCH_LIST_USERS (15000) other users
//!     with 8 mailboxes each put in both servers' mailbox lists (Cyrus:
//!     ctl_mboxlist -u; ours: written into the list), then u7's LIST ""
//!     "*" and LIST "" "%": milliseconds (best of 5).
//! `BENCH_STORE_ONLY=d` (any of abcd) runs only those parts.

#[path = "../tests/harness/mod.rs"]
mod harness;
use harness::*;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

fn env(n: &str, d: usize) -> usize {
    std::env::var(n).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
}

fn message(i: usize, size: usize) -> Vec<u8> {
    let mut m = format!("Message-ID: <bench-{i}@mumail.test>\r\nFrom: bench@mumail.test\r\nTo: user@mumail.test\r\nSubject: benchmark message {i}\r\nDate: Tue, 01 Dec 2026 10:00:00 +0000\r\n\r\n").into_bytes();
    while m.len() < size {
        m.extend_from_slice(b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n");
    }
    m
}

fn read_reply(r: &mut BufReader<UnixStream>) -> String {
    let mut all = String::new();
    loop {
        let mut l = String::new();
        if r.read_line(&mut l).unwrap_or(0) == 0 {
            return all;
        }
        let done = l.as_bytes().get(3) == Some(&b' ');
        all.push_str(&l);
        if done {
            return all;
        }
    }
}

/// Delivers messages `from..to` round-robin to `users` over `conns`
/// connections; returns (delivered, seconds).
fn lmtp_load(sock: &Path, users: &[String], from: usize, to: usize, conns: usize) -> (usize, f64) {
    let start = Instant::now();
    let hs: Vec<_> = (0..conns)
        .map(|c| {
            let sock = sock.to_path_buf();
            let users = users.to_vec();
            std::thread::spawn(move || {
                let s = UnixStream::connect(&sock).unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut w = s;
                read_reply(&mut r);
                w.write_all(b"LHLO bench\r\n").unwrap();
                read_reply(&mut r);
                let mut ok = 0;
                let mut i = from + c;
                while i < to {
                    let u = &users[i % users.len()];
                    w.write_all(format!("MAIL FROM:<bench@mumail.test>\r\nRCPT TO:<{u}>\r\nDATA\r\n").as_bytes())
                        .unwrap();
                    let a = read_reply(&mut r);
                    let b = read_reply(&mut r);
                    let d = read_reply(&mut r);
                    assert!(a.starts_with("250") && b.starts_with("250") && d.starts_with("354"), "{a}{b}{d}");
                    let mut m = message(i, 5000);
                    m.extend_from_slice(b".\r\n");
                    w.write_all(&m).unwrap();
                    let e = read_reply(&mut r);
                    if e.starts_with("250") {
                        ok += 1;
                    } else {
                        eprintln!("delivery {i}: {e}");
                    }
                    i += conns;
                }
                let _ = w.write_all(b"QUIT\r\n");
                ok
            })
        })
        .collect();
    let n: usize = hs.into_iter().map(|h| h.join().unwrap()).sum();
    (n, start.elapsed().as_secs_f64())
}

fn pss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Pss:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// PSS of every process named `comm` whose parent chain reaches `root`.
fn tree_pss_kb(root: u32, comm: &str) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let c = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if c.trim() != comm {
            continue;
        }
        let mut p = pid;
        for _ in 0..5 {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            let ppid = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().nth(1))
                .and_then(|x| x.parse().ok())
                .unwrap_or(1);
            if ppid == root {
                total += pss_kb(pid);
                break;
            }
            p = ppid;
            if p <= 1 {
                break;
            }
        }
    }
    total
}

/// Opens `n` connections, each logged in with INBOX selected and in IDLE;
/// returns them (to keep them open).
fn idle_conns(port: u16, n: usize, tls: Option<&Path>) -> Vec<Box<dyn ReadWrite>> {
    let mut out = Vec::with_capacity(n);
    let cfg = tls.map(|ca| {
        let mut roots = rustls::RootCertStore::empty();
        use rustls::pki_types::pem::PemObject;
        for c in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        std::sync::Arc::new(
            rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    });
    for _ in 0..n {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let stream: Box<dyn ReadWrite> = match &cfg {
            Some(c) => {
                let conn = rustls::ClientConnection::new(c.clone(), "localhost".try_into().unwrap()).unwrap();
                Box::new(rustls::StreamOwned::new(conn, s))
            }
            None => Box::new(s),
        };
        let mut i = Imap {
            r: BufReader::new(stream),
            n: 0,
        };
        let mut l = String::new();
        i.r.read_line(&mut l).unwrap();
        i.cmd("LOGIN yes1 testpw");
        i.cmd("SELECT INBOX");
        i.r.get_mut().write_all(b"i IDLE\r\n").unwrap();
        let mut l = String::new();
        i.r.read_line(&mut l).unwrap();
        assert!(l.starts_with('+'), "{l}");
        out.push(i.r.into_inner());
    }
    out
}

fn raise_nofile() {
    let lim = libc::rlimit {
        rlim_cur: 65536,
        rlim_max: 65536,
    };
    // SAFETY: plain syscall with a valid struct.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
}

fn main() {
    // Our daemons as built by `cargo bench` (release).
    std::env::set_var("MUMAIL_PROFILE", "release");
    if !nix::unistd::Uid::effective().is_root() || !Path::new(CYRUS_MASTER).exists() {
        eprintln!("store bench: needs root and Debian's cyrus-imapd (tests/tools/test.sh installs it)");
        return;
    }
    raise_nofile();
    let msgs = env("BENCH_MSGS", 10_000);
    let big = env("BENCH_BIG", 10_000);
    let idle = env("BENCH_IDLE", 10_000);
    let idle_cyrus = env("BENCH_IDLE_CYRUS", 300);
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let certs = d.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let (ca, cert, key) = make_certs(&certs);
    let ours = Backend::start(
        &d.path().join("ours"),
        &format!(
            "autocreate_post: yes\ntls_server_cert: {}\ntls_server_key: {}\n",
            cert.display(),
            key.display()
        ),
    );
    for p in ["ours", "ours/sasl"] {
        std::fs::set_permissions(d.path().join(p), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let cyrus = CyrusServer::start(&d.path().join("cyrus"), &d.path().join("ours/sasl/mux"), "autocreate_post: yes\n");
    let users: Vec<String> = (0..100).map(|i| format!("bench{i}")).collect();
    println!(
        "store benchmark: {} cores, ours vs Cyrus 3.6 (Debian)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let only = std::env::var("BENCH_STORE_ONLY").ok();
    let part = |p: &str| only.as_deref().is_none_or(|o| o.contains(p));
    if part("a") {
        // (a) LMTP. One warm-up delivery per mailbox (autocreate) first.
        let mut rates = Vec::new();
        for (name, sock) in [("cyrus", &cyrus.lmtp_sock), ("ours", &ours.lmtp_sock)] {
            lmtp_load(sock, &users, 1_000_000, 1_000_000 + users.len(), 10);
            let (n, secs) = lmtp_load(sock, &users, 0, msgs, 10);
            let rate = n as f64 / secs;
            println!("(a) lmtp {name:5}: {n} x 5 KB to 100 mailboxes, 10 connections: {secs:.1} s, {rate:.0} msg/s");
            rates.push(rate);
        }
        println!("(a) ratio ours/cyrus: {:.2}x (goal >= 3x)", rates[1] / rates[0]);
    }

    if part("b") {
        // (b) SELECT + FETCH on a big mailbox (u7).
        let mut times = Vec::new();
        for (name, sock, port) in [
            ("cyrus", &cyrus.lmtp_sock, cyrus.imap_port),
            ("ours", &ours.lmtp_sock, ours.imap_port),
        ] {
            let mut i = Imap::connect(port);
            i.cmd("LOGIN u7 testpw");
            i.cmd("LOGOUT");
            let (n, secs) = lmtp_load(sock, &["u7".to_string()], 2_000_000, 2_000_000 + big, 10);
            let mut best = f64::MAX;
            let mut bytes = 0;
            let mut split = (0.0, 0.0);
            for _ in 0..3 {
                let mut i = Imap::connect(port);
                i.cmd("LOGIN u7 testpw");
                let t = Instant::now();
                i.cmd("SELECT INBOX");
                let sel = t.elapsed().as_secs_f64();
                bytes = i.cmd("FETCH 1:* (FLAGS INTERNALDATE RFC822.SIZE ENVELOPE)");
                let all = t.elapsed().as_secs_f64();
                if all < best {
                    best = all;
                    split = (sel, all - sel);
                }
            }
            println!(
                "(b) {name:5}: SELECT + FETCH 1:* on {n} messages (filled in {secs:.1} s): {best:.3} s (select {:.3}, fetch {:.3}; {} KB of responses)",
                split.0,
                split.1,
                bytes / 1024
            );
            times.push(best);
        }
        println!("(b) ratio cyrus/ours: {:.2}x faster (goal >= 2x)", times[0] / times[1]);
    }

    if part("c") {
        // (c) idle connections, on a 20-message INBOX (yes1).
        for (sock, port) in [(&cyrus.lmtp_sock, cyrus.imap_port), (&ours.lmtp_sock, ours.imap_port)] {
            let mut i = Imap::connect(port);
            i.cmd("LOGIN yes1 testpw");
            i.cmd("LOGOUT");
            lmtp_load(sock, &["yes1".to_string()], 3_000_000, 3_000_020, 1);
        }
        let ours_pid = ours.imapd.as_ref().unwrap().child.id();
        let before = pss_kb(ours_pid);
        let conns = idle_conns(ours.imap_port, idle, None);
        std::thread::sleep(Duration::from_secs(2));
        let after = pss_kb(ours_pid);
        println!(
            "(c) ours plain: {idle} idle connections: imapd PSS {:.1} MiB -> {:.1} MiB, {:.1} KB per connection (goal < 6.5 KB)",
            before as f64 / 1024.0,
            after as f64 / 1024.0,
            (after - before.min(after)) as f64 / idle as f64
        );
        drop(conns);
        std::thread::sleep(Duration::from_secs(2));
        let sport = free_port();
        let imaps = ours.spawn_imapd(sport, &["-s"]);
        let before = pss_kb(imaps.child.id());
        let conns = idle_conns(sport, idle, Some(&ca));
        std::thread::sleep(Duration::from_secs(2));
        let after = pss_kb(imaps.child.id());
        println!(
            "(c) ours TLS:   {idle} idle connections: imapd PSS {:.1} MiB -> {:.1} MiB, {:.1} KB per connection (goal < 32 KB)",
            before as f64 / 1024.0,
            after as f64 / 1024.0,
            (after - before.min(after)) as f64 / idle as f64
        );
        drop(conns);
        let master = cyrus.master.child.id();
        let before = tree_pss_kb(master, "imapd");
        let conns = idle_conns(cyrus.imap_port, idle_cyrus, None);
        std::thread::sleep(Duration::from_secs(2));
        let after = tree_pss_kb(master, "imapd");
        println!(
            "(c) cyrus plain: {idle_cyrus} idle connections: imapd processes' PSS {:.1} MiB -> {:.1} MiB, {:.1} KB per connection",
            before as f64 / 1024.0,
            after as f64 / 1024.0,
            (after - before.min(after)) as f64 / idle_cyrus as f64
        );
        drop(conns);
    }

    if part("d") {
        // (d) LIST among many mailboxes (u7 sees its own and the shared ones).
        let others = env("BENCH_LIST_USERS", 15_000);
        let folders = ["", ".Sent", ".Drafts", ".Trash", ".Junk", ".Archive", ".Lists", ".Work"];
        let t = Instant::now();
        let mut dump = String::from("{");
        for u in 0..others {
            for f in folders {
                let name = format!("user.list{u}{f}");
                dump.push_str(&format!(
                    "{}\"{name}\": {{\"name\": \"{name}\", \"mtime\": \"1700000000\", \"uidvalidity\": \"{}\", \"mbtype\": \"e\", \"partition\": \"default\", \"acl\": {{\"list{u}\": \"lrswipkxtecdan\"}}, \"uniqueid\": \"{:024x}\"}}",
                    if dump.len() > 1 { ", " } else { "" },
                    1_700_000_000 + u,
                    u * 8 + f.len()
                ));
            }
        }
        dump.push('}');
        let dump_file = d.path().join("list.dump");
        std::fs::write(&dump_file, &dump).unwrap();
        let o = std::process::Command::new("runuser")
            .args(["-u", "cyrus", "--", "/usr/lib/cyrus/bin/ctl_mboxlist", "-C"])
            .arg(d.path().join("cyrus/imapd.conf"))
            .arg("-u")
            .stdin(std::fs::File::open(&dump_file).unwrap())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let cyrus_fill = t.elapsed().as_secs_f64();
        let t = Instant::now();
        {
            let mut c = rusqlite::Connection::open(ours.dir.join("conf/mailboxes.sqlite3")).unwrap();
            c.busy_timeout(Duration::from_secs(30)).unwrap();
            let tx = c.transaction().unwrap();
            for u in 0..others {
                for f in folders {
                    let name = format!("user.list{u}{f}");
                    tx.execute(
                        "INSERT INTO mbox(name, uniqueid, partition, acl, mbtype, server, uidvalidity, created) VALUES(?1, ?2, 'default', ?3, 'e', '', ?4, 1700000000)",
                        rusqlite::params![name, format!("{:024x}", u * 8 + f.len()), format!("list{u}\tlrswipkxtecdan\t"), 1_700_000_000 + u as i64],
                    )
                    .unwrap();
                    tx.execute(
                        "INSERT INTO aclid(id, name) VALUES(?1, ?2)",
                        rusqlite::params![format!("list{u}"), name],
                    )
                    .unwrap();
                }
            }
            tx.commit().unwrap();
        }
        let ours_fill = t.elapsed().as_secs_f64();
        println!(
            "(d) {} mailboxes of {others} other users added (cyrus ctl_mboxlist -u {cyrus_fill:.1} s, ours {ours_fill:.1} s)",
            others * folders.len()
        );
        for (name, port) in [("cyrus", cyrus.imap_port), ("ours", ours.imap_port)] {
            let mut i = Imap::connect(port);
            i.cmd("LOGIN u7 testpw");
            let mut line = format!("(d) {name:5}: u7's");
            for pat in ["*", "%"] {
                let mut best = f64::MAX;
                let mut bytes = 0;
                for _ in 0..5 {
                    let t = Instant::now();
                    bytes = i.cmd(&format!("LIST \"\" \"{pat}\""));
                    best = best.min(t.elapsed().as_secs_f64());
                }
                line.push_str(&format!(" LIST \"\" \"{pat}\" {:.2} ms ({bytes} bytes);", best * 1000.0));
            }
            println!("{}", line.trim_end_matches(';'));
        }
    }
}
