//! Benchmark of the Murder (prints figures; not a test).  Run as root:
//!     cargo bench --bench murder
//! Our MUPDATE master, a back end and a front end (replica, IMAP and LMTP
//! proxies) on loopback, the front end in a mount namespace whose
//! /etc/services names the back end's ports:
//! (a) a fresh replica of a master holding BENCH_MAILBOXES (100000)
//!     mailboxes: seconds until it answers FIND for the last one; the
//!     master's RSS;
//! (b) LMTP of BENCH_LMTP (2000) × 5 KB messages over one connection,
//!     direct to the back end and through the front end: messages/s and
//!     the ratio;
//! (c) a scripted IMAP session (LOGIN, SELECT, FETCH 1:1000 ENVELOPE, 20
//!     bodies, LOGOUT), direct and through the front end: mean seconds of
//!     BENCH_SESSIONS (20) and the overhead;
//! (d) BENCH_IDLE (10000) IMAP sessions in IDLE through the front end: the
//!     proxy's PSS growth.
//! (e) the real Cyrus 3.6 Murder (Debian's cyrus-imapd and cyrus-murder)
//!     started beside ours: (b) and (c) through its front end and
//!     directly, printed with our ratios.
//! (f) an imaptest-style load (imaptest is not packaged in Debian 12):
//!     BENCH_LOAD_CLIENTS (10) clients on one mailbox for BENCH_LOAD_SECS
//!     (10) seconds, each session imaptest's default command mix (LOGIN,
//!     LIST half the time, SELECT, FETCH flags, FETCH a body, STORE \Seen
//!     half the time, STORE \Deleted, EXPUNGE, APPEND, STATUS half the
//!     time, LOGOUT), direct and through the front end: commands/s and
//!     the ratio (goal >= 90%); the CPU each process (the load client,
//!     the whole machine) spent per command.  `BENCH_LOAD_LOGIN_ONLY=1`:
//!     sessions of LOGIN and LOGOUT only (what a session costs).
//! `BENCH_MURDER_LMTP_ONLY=1` stops after (b), for profiling;
//! `BENCH_MURDER_NO_CYRUS=1` leaves out (e).

#[path = "../tests/harness/mod.rs"]
mod harness;
use harness::murder;
use harness::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn env(n: &str, d: usize) -> usize {
    std::env::var(n).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
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

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn mupdate(dir: &Path, mux: &Path, master: bool, extra: &str) -> (Proc, u16, PathBuf) {
    std::fs::create_dir_all(dir.join("conf")).unwrap();
    let conf = dir.join("imapd.conf");
    std::fs::write(
        &conf,
        format!(
            "configdirectory: {}/conf\nservername: {}\nadmins: md5u\nallowplaintext: yes\nsasl_pwcheck_method: saslauthd\nsasl_saslauthd_path: {}\n{extra}",
            dir.display(),
            if master { "master" } else { "frontend" },
            mux.display()
        ),
    )
    .unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.join("mupdate.log")).unwrap();
    let mut cmd = Command::new(bin("mupdate"));
    cmd.arg("-C")
        .arg(&conf)
        .args(if master { vec!["-m"] } else { vec![] })
        .args(["-L", &format!("127.0.0.1:{port}")]);
    cmd.stdout(log.try_clone().unwrap()).stderr(log);
    let p = Proc::spawn("mupdate", &mut cmd);
    wait_tcp(port);
    (p, port, conf)
}

/// Logs in to a MUPDATE server; sends `cmd`; the reply up to its tag.
fn mupdate_call(port: u16, cmd: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let b64 = mumail::util::base64_encode(b"\0md5u\0testpw");
    s.write_all(format!("A AUTHENTICATE \"PLAIN\" {{{}+}}\r\n{b64}\r\nB {cmd}\r\nC LOGOUT\r\n", b64.len()).as_bytes())
        .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn message(i: usize, size: usize) -> Vec<u8> {
    let mut m = format!("Message-ID: <murder-{i}@mumail.test>\r\nFrom: bench@mumail.test\r\nSubject: murder benchmark {i}\r\nDate: Tue, 01 Dec 2026 10:00:00 +0000\r\n\r\n").into_bytes();
    while m.len() < size {
        m.extend_from_slice(b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n");
    }
    m
}

fn reply(r: &mut BufReader<TcpStream>) -> String {
    let mut all = String::new();
    loop {
        let mut l = String::new();
        if r.read_line(&mut l).unwrap_or(0) == 0 {
            return all;
        }
        let done = l.as_bytes().get(3) != Some(&b'-');
        all.push_str(&l);
        if done {
            return all;
        }
    }
}

/// `n` messages to `rcpt` over one LMTP connection: seconds.
fn lmtp_run(host: &str, port: u16, rcpt: &str, n: usize, auth: bool, base: usize) -> f64 {
    lmtp_run_sized(host, port, rcpt, n, auth, base, 5000)
}

/// `lmtp_run` with messages of `size` bytes.
fn lmtp_run_sized(host: &str, port: u16, rcpt: &str, n: usize, auth: bool, base: usize, size: usize) -> f64 {
    let s = TcpStream::connect((host, port)).unwrap();
    let _ = s.set_nodelay(true);
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    reply(&mut r);
    w.write_all(b"LHLO bench\r\n").unwrap();
    reply(&mut r);
    if auth {
        let b64 = mumail::util::base64_encode(b"\0md5u\0testpw");
        w.write_all(format!("AUTH PLAIN {b64}\r\n").as_bytes()).unwrap();
        assert!(reply(&mut r).starts_with("235"));
    }
    let start = Instant::now();
    for i in 0..n {
        w.write_all(format!("MAIL FROM:<bench@mumail.test>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n").as_bytes())
            .unwrap();
        let (a, b, c) = (reply(&mut r), reply(&mut r), reply(&mut r));
        assert!(a.starts_with("250") && b.starts_with("250") && c.starts_with("354"), "{a}{b}{c}");
        let mut m = message(base + i + rcpt.len() * 1_000_000, size);
        m.extend_from_slice(b".\r\n");
        w.write_all(&m).unwrap();
        let e = reply(&mut r);
        assert!(e.starts_with("250"), "{e}");
    }
    let _ = w.write_all(b"QUIT\r\n");
    start.elapsed().as_secs_f64()
}

/// The scripted IMAP session: seconds.
fn imap_session(host: &str, port: u16, user: &str, msgs: usize) -> f64 {
    imap_phases(host, port, user, msgs).iter().sum()
}

/// The scripted IMAP session: seconds per phase (connect and greeting,
/// LOGIN, SELECT, FETCH envelopes, FETCH bodies, LOGOUT).
fn imap_phases(host: &str, port: u16, user: &str, msgs: usize) -> Vec<f64> {
    let mut t = Instant::now();
    let mut phases = Vec::new();
    let mut lap = |phases: &mut Vec<f64>| {
        phases.push(t.elapsed().as_secs_f64());
        t = Instant::now();
    };
    let s = TcpStream::connect((host, port)).unwrap();
    let _ = s.set_nodelay(true);
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    let until = |r: &mut BufReader<TcpStream>, tag: &str| loop {
        let mut l = Vec::new();
        if r.read_until(b'\n', &mut l).unwrap_or(0) == 0 {
            panic!("closed before {tag}");
        }
        if l.starts_with(format!("{tag} ").as_bytes()) {
            assert!(l.starts_with(format!("{tag} OK").as_bytes()), "{}", String::from_utf8_lossy(&l));
            return;
        }
    };
    let mut g = String::new();
    r.read_line(&mut g).unwrap();
    lap(&mut phases);
    w.write_all(format!("a LOGIN {user} testpw\r\n").as_bytes()).unwrap();
    until(&mut r, "a");
    lap(&mut phases);
    w.write_all(b"b SELECT INBOX\r\n").unwrap();
    until(&mut r, "b");
    lap(&mut phases);
    w.write_all(format!("c FETCH 1:{} (FLAGS ENVELOPE)\r\n", msgs.min(1000)).as_bytes())
        .unwrap();
    until(&mut r, "c");
    lap(&mut phases);
    w.write_all(format!("d FETCH 1:{} BODY.PEEK[]\r\n", msgs.min(20)).as_bytes())
        .unwrap();
    until(&mut r, "d");
    lap(&mut phases);
    w.write_all(b"e LOGOUT\r\n").unwrap();
    until(&mut r, "e");
    lap(&mut phases);
    phases
}

/// CPU seconds (user + system) a process has used.
fn cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime and
    // stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    // SAFETY: sysconf reads a constant of the system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (field(11) + field(12)) as f64 / hz
}

/// CPU seconds of each of `pids` (`u32::MAX`: the whole machine).
fn cpu_of(pids: &[u32]) -> Vec<f64> {
    pids.iter().map(|&p| if p == u32::MAX { busy_s() } else { cpu_s(p) }).collect()
}

/// CPU seconds the machine has been busy (all cores; /proc/stat's first
/// line less idle and iowait).
fn busy_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // SAFETY: sysconf reads a constant of the system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let idle = f.get(3).copied().unwrap_or(0) + f.get(4).copied().unwrap_or(0);
    (f.iter().take(8).sum::<u64>() - idle) as f64 / hz
}

/// Reads one response line, with any literals it carries.
fn read_response(r: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let start = out.len();
        if r.read_until(b'\n', &mut out).ok()? == 0 {
            return None;
        }
        let line = &out[start..];
        let lit = line
            .strip_suffix(b"}\r\n")
            .and_then(|l| l.iter().rposition(|&c| c == b'{').map(|i| &l[i + 1..]))
            .and_then(|d| std::str::from_utf8(d).ok()?.parse::<usize>().ok());
        match lit {
            Some(n) => {
                let at = out.len();
                out.resize(at + n, 0);
                r.read_exact(&mut out[at..]).ok()?;
            }
            None => return Some(out),
        }
    }
}

/// A load client's connection: tags, the last EXISTS, commands done.
struct LoadConn {
    r: BufReader<TcpStream>,
    w: TcpStream,
    tag: u32,
    exists: u64,
}

/// With BENCH_LOAD_DETAIL: (f)'s time per command name (count, seconds).
static DETAIL: std::sync::Mutex<std::collections::BTreeMap<String, (u64, f64)>> = std::sync::Mutex::new(std::collections::BTreeMap::new());

fn detail(what: &str, since: Instant) {
    if std::env::var_os("BENCH_LOAD_DETAIL").is_some() {
        let mut d = DETAIL.lock().unwrap();
        let e = d.entry(what.to_string()).or_insert((0, 0.0));
        e.0 += 1;
        e.1 += since.elapsed().as_secs_f64();
    }
}

/// The per-command times since the last call, as `NAME us` pairs.
fn take_detail() -> String {
    let d = std::mem::take(&mut *DETAIL.lock().unwrap());
    d.iter()
        .map(|(k, (n, t))| format!("{k} {:.0}", t * 1e6 / *n as f64))
        .collect::<Vec<_>>()
        .join(", ")
}

impl LoadConn {
    fn cmd(&mut self, c: &[u8], done: &mut u64) -> bool {
        let t0 = Instant::now();
        let what = String::from_utf8_lossy(c.split(|&b| b == b' ').next().unwrap_or(b"")).to_string();
        self.tag += 1;
        let t = format!("t{}", self.tag);
        let mut line = format!("{t} ").into_bytes();
        line.extend_from_slice(c);
        line.extend_from_slice(b"\r\n");
        if self.w.write_all(&line).is_err() {
            eprintln!("(f) {}: cannot write", String::from_utf8_lossy(&c[..c.len().min(40)]));
            return false;
        }
        loop {
            let Some(l) = read_response(&mut self.r) else {
                eprintln!("(f) {}: connection closed", String::from_utf8_lossy(&c[..c.len().min(40)]));
                return false;
            };
            if let Some(n) = std::str::from_utf8(&l)
                .ok()
                .and_then(|s| s.strip_prefix("* ")?.strip_suffix(" EXISTS\r\n")?.parse().ok())
            {
                self.exists = n;
            }
            if l.starts_with(format!("{t} ").as_bytes()) {
                if !l.starts_with(format!("{t} OK").as_bytes()) {
                    eprintln!(
                        "(f) {} -> {}",
                        String::from_utf8_lossy(&c[..c.len().min(40)]),
                        String::from_utf8_lossy(&l).trim_end()
                    );
                    return false;
                }
                *done += 1;
                detail(&what, t0);
                return true;
            }
        }
    }
}

/// One client of the imaptest-style load until `until`; returns the
/// commands it completed.
fn load_client(host: &str, port: u16, mailbox: &str, seed: u64, until: Instant) -> u64 {
    let mut x = seed | 1;
    let mut rnd = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n.max(1)
    };
    let mut done = 0u64;
    let mut session = 0u64;
    while Instant::now() < until {
        let t0 = Instant::now();
        let Ok(s) = TcpStream::connect((host, port)) else { break };
        let _ = s.set_nodelay(true);
        let mut c = LoadConn {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
            tag: 0,
            exists: 0,
        };
        if read_response(&mut c.r).is_none() {
            break;
        }
        detail("greeting", t0);
        session += 1;
        let half = session.is_multiple_of(2);
        let msg = format!(
            "From: load@example.org\r\nSubject: load {seed} {session}\r\n\r\n{}\r\n",
            "x".repeat(1000)
        );
        let d = &mut done;
        let mut ok = c.cmd(b"LOGIN u7 testpw", d);
        if std::env::var_os("BENCH_LOAD_LOGIN_ONLY").is_some() {
            if !ok || !c.cmd(b"LOGOUT", d) {
                break;
            }
            continue;
        }
        if ok && half {
            ok = c.cmd(b"LIST \"\" \"*\"", d);
        }
        ok = ok && c.cmd(format!("SELECT {mailbox}").as_bytes(), d);
        ok = ok && c.cmd(b"FETCH 1:* (UID FLAGS)", d);
        if ok && c.exists > 0 {
            let n = 1 + rnd(c.exists);
            ok = c.cmd(format!("FETCH {n} (UID RFC822.SIZE BODY.PEEK[])").as_bytes(), d);
            if ok && !half {
                let n = 1 + rnd(c.exists);
                ok = c.cmd(format!("STORE {n} +FLAGS (\\Seen)").as_bytes(), d);
            }
            // The oldest messages go, so that the mailbox stays at about
            // 100 however the sessions interleave.
            let k = c.exists.saturating_sub(99).max(1);
            ok = ok && c.cmd(format!("STORE 1:{k} +FLAGS (\\Deleted)").as_bytes(), d);
            ok = ok && c.cmd(b"EXPUNGE", d);
        }
        let mut append = format!("APPEND {mailbox} {{{}+}}\r\n", msg.len()).into_bytes();
        append.extend_from_slice(msg.as_bytes());
        ok = ok && c.cmd(&append, d);
        if ok && half {
            ok = c.cmd(format!("STATUS {mailbox} (MESSAGES UNSEEN)").as_bytes(), d);
        }
        if !ok || !c.cmd(b"LOGOUT", d) {
            eprintln!("(f) a session failed; this client stops");
            break;
        }
    }
    done
}

/// (f)'s mailbox for u7, filled with 100 messages: INBOX.load, or load
/// under altnamespace.  Its name.
fn fill_load(host: &str, port: u16) -> String {
    let fill = "import imaplib,sys\nM=imaplib.IMAP4(sys.argv[1],int(sys.argv[2]))\nM.login('u7','testpw')\n\
                name='INBOX.load' if M.create('INBOX.load')[0]=='OK' else 'load'\nM.create(name)\n\
                for i in range(100):\n    M.append(name, None, None, b'From: f@example.org\\r\\nSubject: fill %d\\r\\n\\r\\n' % i + b'y' * 2000 + b'\\r\\n')\nprint('mailbox', name)\n";
    let out = python(fill, &[host, &port.to_string()]);
    out.split_whitespace().last().unwrap_or("INBOX.load").to_string()
}

/// The imaptest-style load: commands per second of `clients` clients.
fn load_run(host: &str, port: u16, mailbox: &str, clients: usize, secs: u64) -> f64 {
    let start = Instant::now();
    let until = start + Duration::from_secs(secs);
    let threads: Vec<_> = (0..clients)
        .map(|i| {
            let (host, mailbox) = (host.to_string(), mailbox.to_string());
            std::thread::spawn(move || load_client(&host, port, &mailbox, 0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1), until))
        })
        .collect();
    let total: u64 = threads.into_iter().map(|t| t.join().unwrap_or(0)).sum();
    total as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("murder bench: needs root (mount namespaces, private accounts)");
        return;
    }
    if std::env::var("MUMAIL_PROFILE").is_err() {
        std::env::set_var("MUMAIL_PROFILE", "release");
    }
    // 10,000 sessions need descriptors, here and in the daemons.
    let lim = libc::rlimit {
        rlim_cur: 65536,
        rlim_max: 65536,
    };
    // SAFETY: sets this process's descriptor limit; children inherit it.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    let t = tempfile::tempdir().unwrap();
    let binds = private_accounts(t.path());
    let run = t.path().join("sasl");
    let _sasl = saslauthd(
        &bin("saslauthd"),
        &binds,
        &run,
        &["-a", "shadow"],
        &[],
        &t.path().join("saslauthd.log"),
    );
    let mux = run.join("mux");

    // (a) replica sync.
    let n_mb = env("BENCH_MAILBOXES", 100_000);
    let mdir = t.path().join("master");
    std::fs::create_dir_all(mdir.join("conf")).unwrap();
    {
        use mumail::store::murder::{Entry, MurderDb, State};
        let db = MurderDb::open(&mdir.join("conf/mupdate.db")).unwrap();
        let changes: Vec<_> = (0..n_mb)
            .map(|i| {
                (
                    format!("user.u{i:06}"),
                    Some(Entry {
                        state: State::Active,
                        location: format!("backend{}!default", i % 2 + 1),
                        acl: format!("u{i:06}\tlrswipkxtecdan\t"),
                    }),
                )
            })
            .collect();
        db.apply(&changes, |_| {}).unwrap();
    }
    let (mproc, mport, _) = mupdate(&mdir, &mux, true, "");
    let creds = "mupdate_username: md5u\nmupdate_authname: md5u\nmupdate_password: testpw\nmupdate_retry_delay: 2\n";
    let last = format!("user.u{:06}", n_mb - 1);
    let start = Instant::now();
    let (_rp, rport, _) = mupdate(
        &t.path().join("replica"),
        &mux,
        false,
        &format!("mupdate_server: 127.0.0.1:{mport}\n{creds}"),
    );
    loop {
        if mupdate_call(rport, &format!("FIND \"{last}\"")).contains("B MAILBOX") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "replica never synced");
        std::thread::sleep(Duration::from_millis(10));
    }
    let sync = start.elapsed().as_secs_f64();
    println!(
        "(a) fresh replica holds {n_mb} mailboxes after {sync:.2} s (goal < 1 s; Cyrus 3.6: 2.8-2.95 s); master RSS {} MB (Cyrus: 36 MB)",
        rss_kb(mproc.child.id()) / 1024
    );
    // What a proxied LIST asks the replica: the back ends holding
    // mailboxes a user may see.
    {
        let look = mumail::store::murder::Lookup::new(&t.path().join("replica/conf/mupdate.db"));
        let who = format!("u{:06}", n_mb / 2);
        let ids = [who.as_str(), "anyone", "anonymous"];
        let _ = look.servers_for(&ids);
        let t0 = Instant::now();
        for _ in 0..100 {
            assert_eq!(look.servers_for(&ids).unwrap().len(), 1);
        }
        println!(
            "    a proxied LIST's back-end lookup among {n_mb} mailboxes: {:.0} us",
            t0.elapsed().as_secs_f64() * 1e6 / 100.0
        );
    }
    drop(_rp);
    drop(mproc);

    // A small murder for (b)-(d).
    let (_m, mport, _) = mupdate(&t.path().join("m2"), &mux, true, "");
    let (iport, lport) = (free_port(), free_port());
    let mut b = Backend::start(
        &t.path().join("b1"),
        &format!("servername: 127.0.0.2\nunixhierarchysep: no\nmupdate_server: 127.0.0.1:{mport}\n{creds}proxyservers: md5u\n"),
    );
    for (prog, port) in [("imapd", iport), ("lmtpd", lport)] {
        let log = std::fs::File::create(b.dir.join(format!("{prog}-2.log"))).unwrap();
        let mut cmd = Command::new(bin(prog));
        cmd.arg("-C")
            .arg(&b.conf)
            .args(["-L", &format!("127.0.0.2:{port}")])
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        b.extra.push(Proc::spawn(prog, &mut cmd));
    }
    let py = "import imaplib,sys\nM=imaplib.IMAP4('127.0.0.1',int(sys.argv[1]))\nM.login('md5u','testpw')\nM.create('user.u7')\nM.create('user.yes1')\n";
    python(py, &[&b.imap_port.to_string()]);
    let (_r, _rport, fconf) = mupdate(
        &t.path().join("fe"),
        &mux,
        false,
        &format!("mupdate_server: 127.0.0.1:{mport}\n{creds}proxy_authname: md5u\nproxy_password: testpw\nunixhierarchysep: no\n"),
    );
    let services = t.path().join("services");
    std::fs::write(&services, format!("imap {iport}/tcp\nlmtp {lport}/tcp\n")).unwrap();
    let front = |prog: &str, flags: &[&str]| {
        let port = free_port();
        let l = format!("127.0.0.1:{port}");
        let mut args = vec!["-C", fconf.to_str().unwrap(), "-L", l.as_str()];
        args.extend_from_slice(flags);
        let mut cmd = in_namespace(&[(services.clone(), "/etc/services")], &bin(prog), &args);
        let log = std::fs::File::create(t.path().join(format!("fe-{prog}.log"))).unwrap();
        cmd.stdout(log.try_clone().unwrap()).stderr(log);
        let p = Proc::spawn(prog, &mut cmd);
        wait_tcp(port);
        (p, port)
    };
    let (_fl, flport) = front("lmtpd", &["-a"]);
    let (fi, fiport) = front("imapd", &[]);
    std::thread::sleep(Duration::from_millis(500));

    // (b) LMTP direct and proxied, 5 KB messages.
    let n = env("BENCH_LMTP", 2000);
    // The back end's TCP lmtpd wants AUTH (no -a), as the proxy's does.
    // Alternating rounds, so that the disk's mood (fsync-bound both
    // ways) weighs on both alike.
    let rounds = 5;
    let (mut td, mut tp) = (0.0, 0.0);
    // CPU: the front end's lmtpd, the back end's two (the direct one and
    // the one the front end reaches), the whole machine.
    let lpids = [
        _fl.child.id(),
        b.lmtpd.as_ref().map_or(0, |p| p.child.id()),
        b.extra.get(1).map_or(0, |p| p.child.id()),
        u32::MAX,
    ];
    let lcpu = || cpu_of(&lpids);
    let (mut cd, mut cp) = (vec![0.0; lpids.len()], vec![0.0; lpids.len()]);
    for k in 0..rounds {
        // Distinct Message-IDs (duplicate suppression is on).
        let c0 = lcpu();
        td += lmtp_run("127.0.0.1", b.lmtp_port, "u7", n / rounds, true, k * n);
        let c1 = lcpu();
        tp += lmtp_run("127.0.0.1", flport, "yes1", n / rounds, false, k * n);
        let c2 = lcpu();
        for i in 0..lpids.len() {
            cd[i] += c1[i] - c0[i];
            cp[i] += c2[i] - c1[i];
        }
    }
    let m = (n / rounds * rounds) as f64;
    let (direct, proxied) = (m / td, m / tp);
    println!(
        "(b) LMTP 5 KB: direct {direct:.0} msg/s, through the front end {proxied:.0} msg/s = {:.0}% (goal >= 90%; Cyrus 3.6: 12%)",
        100.0 * proxied / direct
    );
    let per = |c: &[f64]| c.iter().map(|x| format!("{:.0}", x * 1e6 / m)).collect::<Vec<_>>().join("/");
    println!(
        "    CPU us per message, front end/back end direct lmtpd/back end proxied lmtpd/whole machine: direct {}, proxied {}; ms per message: direct {:.2}, proxied {:.2}",
        per(&cd),
        per(&cp),
        td * 1000.0 / m,
        tp * 1000.0 / m
    );
    // Other sizes (`BENCH_LMTP_SIZES=1000,100000,1000000`), after the
    // 5 KB figure so that (c) sees the same mailboxes either way.
    let sizes: Vec<usize> = std::env::var("BENCH_LMTP_SIZES")
        .unwrap_or_default()
        .split(',')
        .filter_map(|x| x.trim().parse().ok())
        .collect();
    for (j, size) in sizes.into_iter().enumerate() {
        let count = (n / rounds).min(50_000_000 / rounds / size.max(1)).max(20);
        let (mut td, mut tp) = (0.0, 0.0);
        let (mut cd, mut cp) = (vec![0.0; lpids.len()], vec![0.0; lpids.len()]);
        for k in 0..rounds {
            let base = 10_000_000 * (j + 1) + k * count;
            let c0 = lcpu();
            td += lmtp_run_sized("127.0.0.1", b.lmtp_port, "u7", count, true, base, size);
            let c1 = lcpu();
            tp += lmtp_run_sized("127.0.0.1", flport, "yes1", count, false, base, size);
            let c2 = lcpu();
            for i in 0..lpids.len() {
                cd[i] += c1[i] - c0[i];
                cp[i] += c2[i] - c1[i];
            }
        }
        let m = (count * rounds) as f64;
        println!(
            "(b) LMTP {size} B: direct {:.0} msg/s, through the front end {:.0} msg/s = {:.0}% (goal >= 90%)",
            m / td,
            m / tp,
            100.0 * td / tp
        );
        let per = |c: &[f64]| c.iter().map(|x| format!("{:.0}", x * 1e6 / m)).collect::<Vec<_>>().join("/");
        println!("    CPU us per message: direct {}, proxied {}", per(&cd), per(&cp));
    }
    if std::env::var("BENCH_MURDER_LMTP_ONLY").is_ok() {
        return;
    }

    // (c) IMAP sessions (u7 and yes1 now hold n messages each).
    let runs = env("BENCH_SESSIONS", 20);
    let _ = imap_session("127.0.0.1", b.imap_port, "u7", n);
    let _ = imap_session("127.0.0.1", fiport, "u7", n);
    // Medians of alternating runs: one slow run (a disk flush, another
    // process) does not decide the figure.
    let (mut ds, mut ps) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        ds.push(imap_session("127.0.0.1", b.imap_port, "u7", n));
        ps.push(imap_session("127.0.0.1", fiport, "u7", n));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (d, p) = (median(&mut ds), median(&mut ps));
    // Where the difference is: medians per phase.
    let (mut dp, mut pp): (Vec<Vec<f64>>, Vec<Vec<f64>>) = (vec![Vec::new(); 6], vec![Vec::new(); 6]);
    for _ in 0..runs {
        for (i, x) in imap_phases("127.0.0.1", b.imap_port, "u7", n).into_iter().enumerate() {
            dp[i].push(x);
        }
        for (i, x) in imap_phases("127.0.0.1", fiport, "u7", n).into_iter().enumerate() {
            pp[i].push(x);
        }
    }
    let phases: Vec<String> = ["connect", "LOGIN", "SELECT", "FETCH 1000 envelopes", "FETCH 20 bodies", "LOGOUT"]
        .iter()
        .enumerate()
        .map(|(i, name)| format!("{name} {:.2}/{:.2}", median(&mut dp[i]) * 1000.0, median(&mut pp[i]) * 1000.0))
        .collect();
    println!("    phases, ms direct/proxied: {}", phases.join(", "));
    println!(
        "(c) IMAP session (median of {runs}): direct {:.1} ms, through the front end {:.1} ms = {:+.1}% (goal < 10%; Cyrus 3.6: +76%)",
        d * 1000.0,
        p * 1000.0,
        100.0 * (p - d) / d
    );

    // (f) the imaptest-style load, on a mailbox of 100 messages that
    // each session keeps at about that size (it expunges one, appends one).
    let clients = env("BENCH_LOAD_CLIENTS", 10);
    let secs = env("BENCH_LOAD_SECS", 10) as u64;
    let mailbox = fill_load("127.0.0.1", b.imap_port);
    // Where the CPU goes: the front end, the back end's two imapd (the
    // direct one and the one the front end reaches), its saslauthd.
    let pids: Vec<u32> = [
        Some(fi.child.id()),
        b.imapd.as_ref().map(|p| p.child.id()),
        b.extra.first().map(|p| p.child.id()),
        b.sasl.as_ref().map(|p| p.child.id()),
        Some(_sasl.child.id()),
        Some(std::process::id()),
        Some(u32::MAX),
    ]
    .into_iter()
    .map(|p| p.unwrap_or(0))
    .collect();
    // The last: the machine's busy time (all processes, interrupts).
    let cpu = || cpu_of(&pids);
    let (mut ld, mut lp) = (0.0, 0.0);
    let (mut cd, mut cp) = (vec![0.0; pids.len()], vec![0.0; pids.len()]);
    let add = |acc: &mut Vec<f64>, a: &[f64], b: &[f64]| {
        for i in 0..acc.len() {
            acc[i] += b[i] - a[i];
        }
    };
    let load_rounds = 4u64;
    for _ in 0..load_rounds {
        let c0 = cpu();
        ld += load_run("127.0.0.1", b.imap_port, &mailbox, clients, secs / load_rounds);
        let c1 = cpu();
        lp += load_run("127.0.0.1", fiport, &mailbox, clients, secs / load_rounds);
        let c2 = cpu();
        add(&mut cd, &c0, &c1);
        add(&mut cp, &c1, &c2);
    }
    if std::env::var_os("BENCH_LOAD_DETAIL").is_some() {
        // Once more, one phase at a time, for the per-command figures.
        take_detail();
        load_run("127.0.0.1", b.imap_port, &mailbox, clients, secs / load_rounds);
        println!("    us per command, direct: {}", take_detail());
        load_run("127.0.0.1", fiport, &mailbox, clients, secs / load_rounds);
        println!("    us per command, proxied: {}", take_detail());
    }
    println!(
        "(f) imaptest-style load, {clients} clients on one mailbox: direct {:.0} commands/s, through the front end {:.0} commands/s = {:.0}% (goal >= 90%; Cyrus 3.6 imaptest: 63-95%)",
        ld / load_rounds as f64,
        lp / load_rounds as f64,
        100.0 * lp / ld
    );
    let per = |c: &[f64], rate: f64| {
        let cmds = rate * (secs / load_rounds) as f64;
        c.iter()
            .map(|x| format!("{:.0}", x * 1e6 / cmds.max(1.0)))
            .collect::<Vec<_>>()
            .join("/")
    };
    println!(
        "    CPU us per command, front end/back end direct imapd/back end proxied imapd/back end saslauthd/front end saslauthd/load client/whole machine: direct {}, proxied {}",
        per(&cd, ld),
        per(&cp, lp)
    );

    // (d) proxied IDLE sessions: the proxy holds two descriptors per
    // session, so the descriptor limit bounds how many fit.
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: reads this process's limit into a valid struct.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    let fit = (lim.rlim_cur as usize).saturating_sub(200) / 2;
    let want = env("BENCH_IDLE", 10_000).min(fit);
    let before = pss_kb(fi.child.id());
    let mut conns = Vec::new();
    for i in 0..want {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], fiport));
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(10)) else {
            eprintln!("(d) stopped at {i} connections");
            break;
        };
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf);
        s.write_all(b"a LOGIN u7 testpw\r\nb SELECT INBOX\r\nc IDLE\r\n").unwrap();
        let mut got = Vec::new();
        while !got.windows(6).any(|w| w == b"+ idli") {
            let n = s.read(&mut buf).unwrap_or(0);
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            if got.len() > 1 << 20 {
                got.drain(..got.len() - 16);
            }
        }
        conns.push(s);
    }
    std::thread::sleep(Duration::from_secs(1));
    let after = pss_kb(fi.child.id());
    let per = (after.saturating_sub(before)) as f64 / conns.len().max(1) as f64;
    println!(
        "(d) {} IMAP sessions in IDLE through the front end (descriptor limit {}): proxy PSS {} MB -> {} MB, {per:.1} KB per session, {:.0} MiB for 10,000 (goal < 128 MiB)",
        conns.len(),
        lim.rlim_cur,
        before / 1024,
        after / 1024,
        (before as f64 + per * 10_000.0) / 1024.0
    );
    drop(conns);

    // (e) The real Cyrus 3.6 Murder on this machine, the same runs: its
    // master, a back end (127.0.0.4) and a front end (replica, imapd and
    // lmtpd proxying) in a namespace naming the back end's ports.
    if std::env::var("BENCH_MURDER_NO_CYRUS").is_ok() {
        return;
    }
    if !Path::new(CYRUS_MASTER).exists() || !Path::new("/usr/lib/cyrus/bin/mupdate").exists() {
        println!("(e) the real Cyrus Murder: not installed (cyrus-imapd, cyrus-murder)");
        return;
    }
    let ct = murder::cyrus_tempdir();
    let (_cs, cmux) = murder::sasl(&ct.path().join("sasl"));
    let cm = free_port();
    let _cmaster = murder::cyrus_node(
        &ct.path().join("master"),
        &cmux,
        "mupdate-master",
        "",
        &format!("  mupdate cmd=\"mupdate -C CONF -m\" listen=\"127.0.0.1:{cm}\" prefork=1\n"),
    );
    wait_tcp(cm);
    let (ci, cl) = (free_port(), free_port());
    let ccreds = "mupdate_username: md5u\nmupdate_authname: md5u\nmupdate_password: testpw\n";
    let _cb = murder::cyrus_node(
        &ct.path().join("b"),
        &cmux,
        "127.0.0.4",
        &format!("mupdate_server: 127.0.0.1:{cm}\n{ccreds}proxyservers: md5u\nlmtp_admins: md5u\n"),
        &format!(
            "  imap cmd=\"imapd -C CONF\" listen=\"127.0.0.4:{ci}\" prefork=2\n  lmtp cmd=\"lmtpd -C CONF\" listen=\"127.0.0.4:{cl}\" prefork=2\n"
        ),
    );
    let up = Instant::now();
    while TcpStream::connect(("127.0.0.4", ci)).is_err() {
        assert!(up.elapsed() < Duration::from_secs(30), "cyrus back end");
        std::thread::sleep(Duration::from_millis(100));
    }
    python(
        "import imaplib,sys\nM=imaplib.IMAP4('127.0.0.4',int(sys.argv[1]))\nM.login('md5u','testpw')\nM.create('user.u7')\nM.create('user.yes1')\n",
        &[&ci.to_string()],
    );
    let cservices = ct.path().join("services");
    std::fs::write(&cservices, format!("imap {ci}/tcp\nlmtp {cl}/tcp\n")).unwrap();
    let (cfi, cfl) = (free_port(), free_port());
    let _cfe = murder::cyrus_node_in(
        &ct.path().join("fe"),
        &cmux,
        "frontend",
        &format!("mupdate_server: 127.0.0.1:{cm}\n{ccreds}proxy_authname: md5u\nproxy_password: testpw\n"),
        &format!(
            "  mupdate cmd=\"mupdate -C CONF\" listen=\"127.0.0.1:{}\" prefork=1\n  imap cmd=\"imapd -C CONF\" listen=\"127.0.0.1:{cfi}\" prefork=2\n  lmtp cmd=\"lmtpd -C CONF -a\" listen=\"127.0.0.1:{cfl}\" prefork=2\n",
            free_port()
        ),
        &[(cservices, "/etc/services")],
    );
    wait_tcp(cfi);
    wait_tcp(cfl);
    // The front end's replica has both users (Cyrus's master sends
    // updates after up to 5 s).
    std::thread::sleep(Duration::from_secs(7));
    let (mut td, mut tp) = (0.0, 0.0);
    for k in 0..rounds {
        td += lmtp_run("127.0.0.4", cl, "u7", n / rounds, true, k * n);
        tp += lmtp_run("127.0.0.1", cfl, "yes1", n / rounds, false, k * n);
    }
    let (cdirect, cproxied) = (m / td, m / tp);
    let _ = imap_session("127.0.0.4", ci, "u7", n);
    let _ = imap_session("127.0.0.1", cfi, "u7", n);
    let (mut ds, mut ps) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        ds.push(imap_session("127.0.0.4", ci, "u7", n));
        ps.push(imap_session("127.0.0.1", cfi, "u7", n));
    }
    let (cd, cp) = (median(&mut ds), median(&mut ps));
    // (f) on the Cyrus Murder: the mailbox is INBOX.load or, under
    // altnamespace, load.
    let cname = fill_load("127.0.0.4", ci);
    // The front end's replica learns the new mailbox within 5 s.
    std::thread::sleep(Duration::from_secs(6));
    let (mut cld, mut clp) = (0.0, 0.0);
    for _ in 0..load_rounds {
        cld += load_run("127.0.0.4", ci, &cname, clients, secs / load_rounds);
        clp += load_run("127.0.0.1", cfi, &cname, clients, secs / load_rounds);
    }
    println!(
        "(e) the real Cyrus 3.6 Murder, (f)'s load: direct {:.0} commands/s, through its front end {:.0} commands/s = {:.0}% (ours: {:.0}%)",
        cld / load_rounds as f64,
        clp / load_rounds as f64,
        100.0 * clp / cld,
        100.0 * lp / ld
    );
    println!(
        "(e) the real Cyrus 3.6 Murder, same runs: LMTP 5 KB direct {cdirect:.0} msg/s, through its front end {cproxied:.0} msg/s = {:.0}% (ours: {:.0}%); IMAP session direct {:.1} ms, through its front end {:.1} ms = {:+.1}% (ours: {:+.1}%)",
        100.0 * cproxied / cdirect,
        100.0 * proxied / direct,
        cd * 1000.0,
        cp * 1000.0,
        100.0 * (cp - cd) / cd,
        100.0 * (p - d) / d
    );
}
