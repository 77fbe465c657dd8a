//! Benchmark of mumail-migrate (prints figures; not a test).  Run as root:
//!     cargo bench --bench migrate
//! The real Dovecot 2.3 holds BENCH_USERS (20) users × BENCH_MSGS (2000)
//! messages (Maildir written directly: about 3 KB each, INBOX, Sent and
//! Archive.2019, mixed flags, old dates), warmed up (indexes built, files
//! in the page cache).  Three tools copy all of it over IMAP, 4 users at a
//! time, each into an empty back end of ours (the users log in with their
//! own passwords at both ends; the back ends check them by rimap against
//! Dovecot):
//!   mumail-migrate -P 4;
//!   mbsync (isync), `Sync Pull`, 4 processes of 5 channels, FSync off;
//!   offlineimap, IMAP to IMAP, maxsyncaccounts = 4, fsync off.
//! Printed: seconds, messages/s and MB/s for each, each destination's
//! message count checked, and our ratio to the faster of the other two.
//! Goal (issue 10): at least 3x.  BENCH_SKIP_OFFLINEIMAP=1 leaves out the
//! slowest tool.

#[path = "../tests/harness/mod.rs"]
mod harness;
use harness::*;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

fn env(n: &str, d: usize) -> usize {
    std::env::var(n).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
}

/// A small deterministic generator.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

const FOLDERS: [&str; 3] = ["", ".Sent", ".Archive.2019"];

/// Writes user `u`'s Maildir++ with `n` messages; returns the bytes.
fn corpus(mail: &Path, u: &str, n: usize, rng: &mut Rng) -> u64 {
    let home = mail.join(u);
    for f in FOLDERS {
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(home.join(f).join(sub)).unwrap();
        }
    }
    std::fs::write(home.join("subscriptions"), "Sent\nArchive.2019\n").unwrap();
    let words = [
        "campus", "exam", "lecture", "grant", "library", "seminar", "thesis", "report", "meeting", "budget",
    ];
    let mut bytes = 0u64;
    for i in 0..n {
        let folder = FOLDERS[[0, 0, 0, 1, 2][i % 5]];
        let r = rng.next();
        let mut body = format!(
            "Return-Path: <s{i}@example.org>\r\nFrom: Sender {i} <s{i}@example.org>\r\nTo: {u}@example.edu\r\n\
             Subject: {} {} {i}\r\nDate: Mon, 1 Mar 2010 10:00:00 +0000\r\nMessage-ID: <{u}.{i}@bench.example>\r\n\
             MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n",
            words[(r % 10) as usize],
            words[((r >> 8) % 10) as usize]
        );
        let lines = 30 + (r >> 16) % 40;
        for l in 0..lines {
            body.push_str(words[((r >> (l % 48)) % 10) as usize]);
            body.push_str(" ,the quick brown fox jumps over the lazy dog, 0123456789 ");
            body.push_str(&format!("line {l}\r\n"));
        }
        let flags: String = [('D', 7), ('F', 5), ('R', 3), ('S', 1)]
            .iter()
            .filter(|(_, bit)| (r >> (20 + bit)) & 1 == 1)
            .map(|(c, _)| *c)
            .collect();
        let p = home
            .join(folder)
            .join("cur")
            .join(format!("{}.M{i}P1.bench:2,{flags}", 1_200_000_000 + i));
        std::fs::write(&p, &body).unwrap();
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(800_000_000 + (r >> 24) % 900_000_000);
        std::fs::File::options().write(true).open(&p).unwrap().set_modified(t).unwrap();
        bytes += body.len() as u64;
    }
    bytes
}

/// Messages held by `users` at an IMAP server (the users' own logins).
fn count(port: u16, users: &[String]) -> u64 {
    let script = r#"
import imaplib, sys, re
total = 0
for u in sys.argv[2:]:
    M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1]))
    M.login(u, 'testpw')
    for b in M.list('""', '*')[1]:
        if not b or b'Noselect' in b:
            continue
        name = re.search(rb'\) "(.)" "?([^"]*)"?$', b).group(2).decode()
        typ, d = M.status('"%s"' % name, '(MESSAGES)')
        total += int(re.search(rb'MESSAGES (\d+)', d[0]).group(1))
    M.logout()
print(total)
"#;
    let mut args = vec![port.to_string()];
    args.extend(users.iter().cloned());
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    python(script, &a).trim().parse().unwrap_or(0)
}

fn run(what: &str, cmd: &mut Command) -> bool {
    let out = cmd.output().unwrap();
    if std::env::var("BENCH_VERBOSE").is_ok() {
        print!("{}", String::from_utf8_lossy(&out.stderr));
    }
    if !out.status.success() {
        println!(
            "{what} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out.status.success()
}

fn main() {
    std::env::set_var("MUMAIL_PROFILE", "release");
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("migrate bench: needs root");
        return;
    }
    let nusers = env("BENCH_USERS", 20);
    let nmsgs = env("BENCH_MSGS", 2000);
    let d = tempfile::tempdir().unwrap();
    // BENCH_KEEP=1: the temp dir (logs) stays.
    let mut d = d;
    if std::env::var("BENCH_KEEP").is_ok() {
        println!("keeping {}", d.path().display());
        d.disable_cleanup(true);
    }
    std::fs::set_permissions(d.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let users: Vec<String> = (1..=nusers).map(|i| format!("mu{i:02}")).collect();
    let names: Vec<&str> = users.iter().map(String::as_str).collect();
    let dove = match harness::dovecot::Dovecot::start(&d.path().join("dovecot"), &names) {
        Ok(dv) => dv,
        Err(e) => {
            eprintln!("migrate bench: dovecot not available: {e}");
            return;
        }
    };
    let mail = dove.dir.join("mail");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let bytes: u64 = users.iter().map(|u| corpus(&mail, u, nmsgs, &mut rng)).sum();
    Command::new("chown").args(["-R", "nobody"]).arg(&mail).status().unwrap();
    let total = (nusers * nmsgs) as u64;
    // Warm-up: Dovecot's indexes and the page cache, for every tool alike.
    let t = Instant::now();
    assert_eq!(count(dove.imap_port, &users), total);
    Command::new("sh")
        .arg("-c")
        .arg(format!("find {} -type f | xargs cat > /dev/null", mail.display()))
        .status()
        .unwrap();
    // Nothing of the corpus left for a tool's first sync to write.
    Command::new("sync").status().unwrap();
    println!(
        "corpus: {nusers} users x {nmsgs} messages = {total} messages, {:.1} MB at Dovecot (indexed in {:.1} s)",
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    // The back ends check the users' passwords against Dovecot (rimap).
    let rimap = d.path().join("rimap");
    let _sasl = saslauthd(
        &bin("saslauthd"),
        &[],
        &rimap,
        &["-a", "rimap", "-O", &format!("127.0.0.1/{}", dove.imap_port)],
        &[],
        &d.path().join("rimap.log"),
    );
    let mux = rimap.join("mux");
    let dest = |name: &str| {
        Backend::start(
            &d.path().join(name),
            &format!("sasl_saslauthd_path: {}\naltnamespace: yes\n", mux.display()),
        )
    };
    let src = format!("127.0.0.1:{}", dove.imap_port);
    let mut results: Vec<(&str, f64)> = Vec::new();

    // mumail-migrate.
    {
        let b = dest("ours");
        let list: String = users.iter().map(|u| format!("{u} testpw\n")).collect();
        let uf = d.path().join("users");
        std::fs::write(&uf, list).unwrap();
        let t = Instant::now();
        let ok = run(
            "mumail-migrate",
            Command::new(bin("mumail-migrate")).args([
                "-s",
                &src,
                "-d",
                &format!("127.0.0.1:{}", b.imap_port),
                "-u",
                uf.to_str().unwrap(),
                "-S",
                d.path().join("state").to_str().unwrap(),
                "-P",
                "4",
            ]),
        );
        let secs = t.elapsed().as_secs_f64();
        let got = count(b.imap_port, &users);
        report("mumail-migrate", secs, total, bytes, got, ok);
        results.push(("mumail-migrate", secs));
    }

    // mbsync: 4 processes, each syncing its share of the users in turn.
    if Path::new("/usr/bin/mbsync").exists() {
        let b = dest("mbsync");
        let rc = d.path().join("mbsyncrc");
        let mut f = std::fs::File::create(&rc).unwrap();
        writeln!(f, "FSync no\n").unwrap();
        for u in &users {
            for (side, port) in [("far", dove.imap_port), ("near", b.imap_port)] {
                writeln!(
                    f,
                    "IMAPAccount {side}-{u}\nHost 127.0.0.1\nPort {port}\nUser {u}\nPass testpw\nSSLType None\nAuthMechs PLAIN\n\n\
                     IMAPStore {side}-{u}\nAccount {side}-{u}\n"
                )
                .unwrap();
            }
            let st = d.path().join("mbsync-state").join(u);
            std::fs::create_dir_all(&st).unwrap();
            writeln!(
                f,
                "Channel {u}\nFar :far-{u}:\nNear :near-{u}:\nPatterns *\nCreate Near\nSync Pull\nSyncState {}/\n",
                st.display()
            )
            .unwrap();
        }
        drop(f);
        let t = Instant::now();
        let procs: Vec<_> = users
            .chunks(nusers.div_ceil(4))
            .map(|chunk| {
                Command::new("mbsync")
                    .arg("-c")
                    .arg(&rc)
                    .args(chunk)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut ok = true;
        for p in procs {
            let out = p.wait_with_output().unwrap();
            if !out.status.success() {
                ok = false;
                println!("mbsync failed: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
        let secs = t.elapsed().as_secs_f64();
        let got = count(b.imap_port, &users);
        report("mbsync", secs, total, bytes, got, ok);
        results.push(("mbsync", secs));
    }

    // offlineimap, IMAP to IMAP.
    if Path::new("/usr/bin/offlineimap").exists() && std::env::var("BENCH_SKIP_OFFLINEIMAP").is_err() {
        let b = dest("offlineimap");
        let rc = d.path().join("offlineimaprc");
        let mut f = std::fs::File::create(&rc).unwrap();
        writeln!(
            f,
            "[general]\naccounts = {}\nmaxsyncaccounts = 4\nmetadata = {}\nfsync = false\n",
            users.join(","),
            d.path().join("oi-meta").display()
        )
        .unwrap();
        for u in &users {
            writeln!(f, "[Account {u}]\nlocalrepository = near-{u}\nremoterepository = far-{u}\n").unwrap();
            for (side, port) in [("far", dove.imap_port), ("near", b.imap_port)] {
                writeln!(
                    f,
                    "[Repository {side}-{u}]\ntype = IMAP\nremotehost = 127.0.0.1\nremoteport = {port}\nremoteuser = {u}\n\
                     remotepass = testpw\nssl = no\nstarttls = no\n{}",
                    if side == "far" { "readonly = True\n" } else { "" }
                )
                .unwrap();
            }
        }
        drop(f);
        let t = Instant::now();
        let ok = run(
            "offlineimap",
            Command::new("offlineimap").arg("-c").arg(&rc).args(["-o", "-u", "quiet"]),
        );
        let secs = t.elapsed().as_secs_f64();
        let got = count(b.imap_port, &users);
        report("offlineimap", secs, total, bytes, got, ok);
        results.push(("offlineimap", secs));
    }

    let ours = results[0].1;
    if let Some((name, best)) = results[1..].iter().min_by(|a, b| a.1.total_cmp(&b.1)) {
        println!(
            "ratio: mumail-migrate is {:.2}x the faster other tool ({name}); goal 3x",
            best / ours
        );
    }
}

fn report(name: &str, secs: f64, total: u64, bytes: u64, got: u64, ok: bool) {
    println!(
        "{name:15} {secs:7.1} s  {:8.0} messages/s  {:6.2} MiB/s  (destination holds {got} of {total}{})",
        total as f64 / secs,
        bytes as f64 / secs / (1 << 20) as f64,
        if ok && got == total { "" } else { "; INCOMPLETE" }
    );
}
