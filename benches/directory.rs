//! Benchmark of recipient validation through an `ldap:` table (prints
//! figures; not a test), run as root:
//!     cargo bench --bench directory
//! One OpenLDAP slapd with BENCH_LDAP_USERS (2000) RFC 2307 users (objectClass, mail
//! and uid indexed); the
//! hub's `local_recipient_maps = proxy:ldap:users.cf`.  16 client threads
//! (BENCH_LDAP_SESSIONS) each hold an SMTP session and send RCPT TO one at
//! a time — 90% known users, 10% unknown — BENCH_LDAP_LOOKUPS (40000) in
//! all; every RCPT is one directory lookup (no cache on either side).
//! Our postfix-master + smtpd against Postfix 3.7's smtpd + proxymap with
//! the same main.cf and the same users.cf: lookups/s and RCPT latency
//! (p50, p99).

#[path = "../tests/harness/mod.rs"]
mod harness;
use harness::*;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn env(n: &str, d: usize) -> usize {
    std::env::var(n).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
}

fn open_dir(p: &Path) {
    std::fs::create_dir_all(p).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Reads one SMTP reply (all its lines); returns the last line.
fn reply(r: &mut BufReader<TcpStream>) -> String {
    let mut l = String::new();
    loop {
        l.clear();
        if r.read_line(&mut l).unwrap_or(0) == 0 {
            panic!("connection closed");
        }
        if l.len() < 4 || l.as_bytes()[3] != b'-' {
            return l;
        }
    }
}

/// One client: `n` RCPTs over one session (a new transaction every 500);
/// returns each RCPT's latency and how many were accepted.
fn client(port: u16, users: usize, n: usize, seed: u64) -> (Vec<Duration>, usize) {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_nodelay(true).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    assert!(reply(&mut r).starts_with("220"));
    w.write_all(b"EHLO bench.mumail.test\r\n").unwrap();
    assert!(reply(&mut r).starts_with("250"));
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut lat = Vec::with_capacity(n);
    let mut ok = 0;
    for i in 0..n {
        if i % 500 == 0 {
            if i > 0 {
                w.write_all(b"RSET\r\n").unwrap();
                assert!(reply(&mut r).starts_with("250"));
            }
            w.write_all(b"MAIL FROM:<bench@example.org>\r\n").unwrap();
            let m = reply(&mut r);
            assert!(m.starts_with("250"), "{m}");
        }
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let k = (x >> 33) as usize;
        // One in ten is not in the directory.
        let user = if k.is_multiple_of(10) {
            users + 1 + k % users
        } else {
            1 + k % users
        };
        let t = Instant::now();
        w.write_all(format!("RCPT TO:<u{user}@mumail.test>\r\n").as_bytes()).unwrap();
        let a = reply(&mut r);
        lat.push(t.elapsed());
        if a.starts_with("250") {
            ok += 1;
        } else {
            assert!(a.starts_with("550"), "u{user}: {a}");
        }
    }
    let _ = w.write_all(b"QUIT\r\n");
    (lat, ok)
}

/// CPU seconds used so far by each running program (by command name).
fn cpu_by_program() -> std::collections::HashMap<String, f64> {
    let mut m = std::collections::HashMap::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let (Some(a), Some(b)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[a + 1..b].to_string();
        let f: Vec<&str> = stat[b + 2..].split(' ').collect();
        let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0) + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        *m.entry(name).or_insert(0.0) += ticks / 100.0;
    }
    m
}

/// The programs that used the most CPU between two snapshots.
fn cpu_report(before: &std::collections::HashMap<String, f64>) -> String {
    let after = cpu_by_program();
    let mut v: Vec<(String, f64)> = after
        .into_iter()
        .map(|(k, t)| {
            let d = t - before.get(&k).copied().unwrap_or(0.0);
            (k, d)
        })
        .filter(|(_, d)| *d >= 0.05)
        .collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    v.iter().take(5).map(|(k, d)| format!("{k} {d:.1}s")).collect::<Vec<_>>().join(", ")
}

/// (lookups/s, p50, p99, accepted) for `total` RCPTs over `sessions`.
fn run(port: u16, users: usize, sessions: usize, total: usize) -> (f64, Duration, Duration, usize) {
    let per = total / sessions;
    let t = Instant::now();
    let hs: Vec<_> = (0..sessions)
        .map(|i| std::thread::spawn(move || client(port, users, per, i as u64 + 1)))
        .collect();
    let mut all = Vec::with_capacity(total);
    let mut ok = 0;
    for h in hs {
        let (l, a) = h.join().unwrap();
        all.extend(l);
        ok += a;
    }
    let secs = t.elapsed().as_secs_f64();
    all.sort();
    let p = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    (all.len() as f64 / secs, p(0.50), p(0.99), ok)
}

fn main_cf(dir: &Path, extra: &str) -> String {
    format!(
        "compatibility_level = 3.6\nqueue_directory = {d}/queue\nmaillog_file = {d}/maillog\nmaillog_file_prefixes = {d}\n\
         myhostname = hub.mumail.test\nmydomain = mumail.test\nmydestination = mumail.test\nmynetworks = 10.0.0.0/8\n\
         inet_interfaces = loopback-only\nlocal_recipient_maps = proxy:ldap:{d}/users.cf\n\
         smtpd_recipient_restrictions = reject_unlisted_recipient, reject_unauth_destination\n\
         smtpd_soft_error_limit = 1000000\nsmtpd_hard_error_limit = 1000000\nsmtpd_error_sleep_time = 0\n\
         smtpd_recipient_limit = 1000000\nsmtpd_client_connection_count_limit = 0\n{extra}",
        d = dir.display()
    )
}

fn main() {
    if std::env::var("MUMAIL_PROFILE").is_err() {
        std::env::set_var("MUMAIL_PROFILE", "release");
    }
    if !nix::unistd::Uid::effective().is_root()
        || !Path::new(POSTFIX).exists()
        || !Path::new("/usr/lib/postfix/postfix-ldap.so").exists()
        || !Path::new("/usr/sbin/slapd").exists()
    {
        eprintln!("directory bench: needs root, Debian's postfix, postfix-ldap and slapd (tests/tools/test.sh installs them)");
        return;
    }
    let users = env("BENCH_LDAP_USERS", 2000);
    let sessions = env("BENCH_LDAP_SESSIONS", 16);
    let total = env("BENCH_LDAP_LOOKUPS", 40_000);
    let d = tempfile::tempdir().unwrap();
    open_dir(d.path());
    // Indexed as a directory serving mail is (AD indexes mail too).
    let slapd = Slapd::start_full(&d.path().join("slapd"), None, "", "index objectClass,mail,uid eq\n");
    let mut ldif = String::new();
    for i in 6..=users {
        ldif.push_str(&format!(
            "dn: uid=u{i},ou=people,{LDAP_BASE}\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\nuid: u{i}\ncn: User {i}\nsn: {i}\n\
             mail: u{i}@mumail.test\nuidNumber: {}\ngidNumber: 10000\nhomeDirectory: /nonexistent\n\n",
            10000 + i
        ));
    }
    let mut add = Command::new("/usr/bin/ldapadd")
        .args(["-x", "-H", &slapd.url(), "-D", &format!("cn=admin,{LDAP_BASE}"), "-w", "adminpw"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    add.stdin.take().unwrap().write_all(ldif.as_bytes()).unwrap();
    assert!(add.wait().unwrap().success(), "ldapadd");
    let users_cf = format!(
        "server_host = 127.0.0.1:{}\nsearch_base = {LDAP_BASE}\nquery_filter = (mail=%s)\nresult_attribute = uid\ntimeout = 10\n",
        slapd.port
    );
    println!(
        "directory benchmark: {} cores, {users} users in slapd, {sessions} SMTP sessions, {total} RCPT TO (10% unknown), \
         local_recipient_maps = proxy:ldap:; ours vs Postfix 3.7",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    // Our hub.
    let hub = d.path().join("hub");
    open_dir(&hub);
    let hport = free_port();
    std::fs::write(hub.join("master.cf"), format!("127.0.0.1:{hport} inet n - n - - smtpd\n")).unwrap();
    std::fs::write(hub.join("main.cf"), main_cf(&hub, "")).unwrap();
    std::fs::write(hub.join("users.cf"), &users_cf).unwrap();
    let mut cmd = Command::new(bin("postfix-master"));
    cmd.args(["-c", hub.to_str().unwrap()]);
    let p = Proc::spawn("postfix-master", &mut cmd);
    wait_tcp(hport);
    run(hport, users, sessions, total / 10); // warm-up
    let cpu = cpu_by_program();
    let ours = run(hport, users, sessions, total);
    let ours_cpu = cpu_report(&cpu);
    drop(p);

    // Real Postfix: smtpd asks proxymap, which holds the LDAP connection.
    let pf = d.path().join("postfix");
    let pport = PostfixInstance::prepare(&pf);
    std::fs::write(
        pf.join("main.cf"),
        main_cf(&pf, &format!("data_directory = {}\n", pf.join("data").display())),
    )
    .unwrap();
    std::fs::write(pf.join("users.cf"), &users_cf).unwrap();
    let inst = PostfixInstance::start(&pf);
    wait_tcp(pport);
    run(pport, users, sessions, total / 10);
    let cpu = cpu_by_program();
    let real = run(pport, users, sessions, total);
    let real_cpu = cpu_report(&cpu);
    drop(inst);

    assert_eq!(ours.3, real.3, "both sides must accept the same recipients");
    for (name, r, cpu) in [("ours", ours, ours_cpu), ("real", real, real_cpu)] {
        println!(
            "{name}: {:8.0} lookups/s   RCPT p50 {:6.2} ms   p99 {:6.2} ms   ({} accepted)   CPU: {cpu}",
            r.0,
            r.1.as_secs_f64() * 1e3,
            r.2.as_secs_f64() * 1e3,
            r.3
        );
    }
    println!(
        "ratio ours/real: {:.2}x lookups/s, p99 {:.2}x lower (goal >= 2x)",
        ours.0 / real.0,
        real.2.as_secs_f64() / ours.2.as_secs_f64()
    );
}
