//! master: reads cyrus.conf like Cyrus's master and runs the store's
//! services.  START entries run to completion first; each SERVICES entry's
//! socket is bound here and handed to its program on fd 4 with
//! `CYRUS_SERVICE`/`CYRUS_ID` (Cyrus's master↔child contract), so Cyrus's
//! own binaries named by absolute path work too.  Our daemons serve every
//! connection of a service in one process, so `maxchild` becomes the
//! service's connection limit and `prefork` has nothing to do, except for
//! the front end's proxies (threads, one runtime each, up to the cores).  EVENTS run by
//! `period`/`at`; DAEMON entries run and are restarted.  SIGTERM stops all.
//! SIGHUP re-reads cyrus.conf: every service gets a new process (on the
//! same socket when its `listen` is unchanged) that reads imapd.conf
//! afresh, and the old one is retired with SIGUSR2 (stop accepting, finish
//! its sessions, exit), so no connection is cut — as Cyrus's children
//! finish their sessions after a reload.

use crate::config::cyrus::cyrus_conf::{Entry, Listen};
use crate::config::cyrus::CyrusConf;
use crate::util::getopt::{getopt, Opt};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Cyrus's listening-socket descriptor in a service child.
pub const LISTEN_FD: i32 = 4;
/// Programs of this suite that master may start by relative name.
const OURS: &[&str] = &[
    "imapd",
    "lmtpd",
    "pop3d",
    "timsieved",
    "saslauthd",
    "cyr_expire",
    "ipurge",
    "reconstruct",
    "quota",
    "ctl_mboxlist",
    "mupdate",
    "proxyd",
    "pop3proxyd",
    "lmtpproxyd",
    "cyr_deny",
];

static TERM: AtomicBool = AtomicBool::new(false);
static HUP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_term(_: i32) {
    TERM.store(true, Ordering::SeqCst);
}

extern "C" fn on_hup(_: i32) {
    HUP.store(true, Ordering::SeqCst);
}

struct Running {
    name: String,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    /// The service's `listen` (None for DAEMON entries).
    listen: Option<Listen>,
    fd: Option<OwnedFd>,
    child: Option<Child>,
    last_start: Instant,
}

/// An EVENTS entry: (entry, period, at hh:mm, next run).
type Event = (Entry, Option<Duration>, Option<(u32, u32)>, Instant);

/// Services, DAEMON entries and EVENTS of a cyrus.conf, ready to run;
/// sockets of `reuse` whose service keeps its `listen` are handed over.
fn plan(
    cf: &CyrusConf,
    mut services: Vec<crate::config::cyrus::cyrus_conf::ServiceEntry>,
    imapd_conf: &str,
    reuse: &mut [Running],
    log: &crate::log::Logger,
) -> (Vec<Running>, Vec<Event>) {
    // Like Cyrus's master, children get master's -C unless their cmd has one.
    let with_c = |argv: &mut Vec<String>| {
        if !argv.iter().any(|a| a == "-C") && !argv.is_empty() {
            argv.insert(1, imapd_conf.to_string());
            argv.insert(1, "-C".into());
        }
    };
    for s in &mut services {
        s.argv = packaged_argv(std::mem::take(&mut s.argv));
        with_c(&mut s.argv);
    }
    let mut running: Vec<Running> = Vec::new();
    for s in &services {
        if s.argv[0].rsplit('/').next() == Some("ptloader") {
            log.info(&format!(
                "service {}: ptloader is not needed: the daemons look groups up themselves (auth_mech: pts); skipped",
                s.name
            ));
            continue;
        }
        if resolve(&s.argv[0]).is_none() {
            log.warning(&format!("service {}: {} is not part of mumail; skipped", s.name, s.argv[0]));
            continue;
        }
        let old = reuse
            .iter_mut()
            .find(|r| r.name == s.name && r.listen.as_ref() == Some(&s.listen))
            .and_then(|r| r.fd.take());
        let fd = match old {
            Some(fd) => fd,
            None => match bind(&s.listen) {
                Ok(fd) => fd,
                Err(e) => {
                    log.error(&format!("unable to create {} listener socket: {e}", s.name));
                    continue;
                }
            },
        };
        let mut env = vec![
            ("CYRUS_SERVICE".to_string(), s.name.clone()),
            ("CYRUS_ID".to_string(), "0".to_string()),
        ];
        if s.maxchild > 0 {
            env.push(("MUMAIL_MAXCHILD".into(), s.maxchild.to_string()));
        }
        if s.prefork > 0 {
            env.push(("MUMAIL_PREFORK".into(), s.prefork.to_string()));
        }
        running.push(Running {
            name: s.name.clone(),
            argv: s.argv.clone(),
            env,
            listen: Some(s.listen.clone()),
            fd: Some(fd),
            child: None,
            last_start: Instant::now() - Duration::from_secs(60),
        });
    }
    for e in &cf.daemon {
        if let Some(cmd) = e.get("cmd") {
            let mut argv = packaged_argv(cmd.split_whitespace().map(String::from).collect());
            with_c(&mut argv);
            if argv.first().and_then(|p| resolve(p)).is_some() {
                running.push(Running {
                    name: e.name.clone(),
                    argv,
                    env: vec![("CYRUS_SERVICE".into(), e.name.clone())],
                    listen: None,
                    fd: None,
                    child: None,
                    last_start: Instant::now() - Duration::from_secs(60),
                });
            } else {
                log.warning(&format!("daemon {}: not part of mumail; skipped", e.name));
            }
        }
    }
    let events = cf
        .events
        .iter()
        .map(|e| {
            let period = e
                .get("period")
                .and_then(|p| p.parse::<u64>().ok())
                .filter(|p| *p > 0)
                .map(|m| Duration::from_secs(m * 60));
            let at = e.get("at").and_then(|a| a.parse::<u32>().ok()).map(|a| (a / 100, a % 100));
            (e.clone(), period, at, Instant::now())
        })
        .collect();
    (running, events)
}

fn signal_child(c: &Child, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), sig);
}

/// The program for a cmd's first word: absolute paths as given; relative
/// names only if they are ours, next to this master or in
/// /usr/libexec/mumail.
fn resolve(prog: &str) -> Option<std::path::PathBuf> {
    let p = std::path::Path::new(prog);
    if p.is_absolute() {
        return p.exists().then(|| p.to_path_buf());
    }
    if !OURS.contains(&prog) {
        return None;
    }
    let mut dirs = Vec::new();
    if let Some(d) = std::env::current_exe().ok().and_then(|e| e.parent().map(|d| d.to_path_buf())) {
        dirs.push(d);
    }
    dirs.push("/usr/libexec/mumail".into());
    dirs.into_iter().map(|d| d.join(prog)).find(|c| c.exists())
}

/// A cmd as a distribution's cyrus.conf writes it, for our programs:
/// the `cyrus <prog>` wrapper of Fedora/RHEL and Debian
/// (`/usr/sbin/cyrus expire -E 3`; `expire` is `cyr_expire`) and Cyrus's
/// own directories (`/usr/libexec/cyrus-imapd/lmtpd`, Debian's
/// `/usr/lib/cyrus/bin/lmtpd`) name the program of ours of that name, so
/// that an existing cyrus.conf keeps its services and EVENTS, and a
/// Cyrus installed beside us is never run against our store.  Other
/// programs stay as written (and are skipped unless they exist).
fn packaged_argv(mut argv: Vec<String>) -> Vec<String> {
    const CYRUS_DIRS: &[&str] = &[
        "/usr/libexec/cyrus-imapd",
        "/usr/lib/cyrus-imapd",
        "/usr/lib/cyrus/bin",
        "/usr/cyrus/bin",
    ];
    if let Some((dir, base)) = argv
        .first()
        .and_then(|f| f.rsplit_once('/'))
        .map(|(d, b)| (d.to_string(), b.to_string()))
    {
        if base == "cyrus" && dir.ends_with("sbin") && argv.len() > 1 {
            // (A program not ours is then named alone, and skipped.)
            argv.remove(0);
            if argv[0] == "expire" {
                argv[0] = "cyr_expire".into();
            }
        } else if CYRUS_DIRS.contains(&dir.as_str()) && (OURS.contains(&base.as_str()) || base == "ctl_deliver") {
            argv[0] = base;
        }
    }
    // Cyrus 2.x's EVENTS expire duplicate-delivery records with
    // `ctl_deliver -E days`, which is `cyr_expire -E days`.
    if argv.first().is_some_and(|p| p == "ctl_deliver") && argv.iter().any(|a| a == "-E") {
        argv[0] = "cyr_expire".into();
    }
    argv
}

/// A port number or a name from /etc/services.
fn port_of(s: &str) -> Option<u16> {
    if let Ok(n) = s.parse() {
        return Some(n);
    }
    let text = std::fs::read_to_string("/etc/services").ok()?;
    text.lines().find_map(|l| {
        let l = l.split('#').next()?;
        let mut it = l.split_whitespace();
        let name = it.next()?;
        let pp = it.next()?;
        let (port, proto) = pp.split_once('/')?;
        let aliases: Vec<&str> = it.collect();
        ((name == s || aliases.contains(&s)) && proto == "tcp")
            .then(|| port.parse().ok())
            .flatten()
    })
}

fn bind(listen: &Listen) -> Result<OwnedFd, String> {
    match listen {
        Listen::Path(p) => {
            let path = std::path::Path::new(p);
            crate::server::Listener::make_socket_dir(path);
            let _ = std::fs::remove_file(path);
            let l = std::os::unix::net::UnixListener::bind(path).map_err(|e| format!("unable to bind to {p}: {e}"))?;
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777));
            Ok(l.into())
        }
        Listen::Inet { host, port } => {
            let port = port_of(port).ok_or_else(|| format!("unknown service {port}"))?;
            let host = host.as_deref().unwrap_or("0.0.0.0");
            let addr = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            let l = std::net::TcpListener::bind(&addr).map_err(|e| format!("unable to bind to {addr}: {e}"))?;
            Ok(l.into())
        }
    }
}

fn spawn(r: &mut Running, log: &crate::log::Logger) {
    let Some(prog) = resolve(&r.argv[0]) else { return };
    let mut cmd = Command::new(&prog);
    cmd.arg0(&r.argv[0]).args(&r.argv[1..]);
    for (k, v) in &r.env {
        cmd.env(k, v);
    }
    if let Some(fd) = &r.fd {
        let raw = fd.as_raw_fd();
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if raw != LISTEN_FD && libc::dup2(raw, LISTEN_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let flags = libc::fcntl(LISTEN_FD, libc::F_GETFD);
                libc::fcntl(LISTEN_FD, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
                Ok(())
            });
        }
    }
    r.last_start = Instant::now();
    match cmd.spawn() {
        Ok(c) => {
            log.info(&format!(
                "process type:SERVICE name:{} path:{} pid:{}",
                r.name,
                prog.display(),
                c.id()
            ));
            r.child = Some(c);
        }
        Err(e) => log.error(&format!("can't fork process to run service {}: {e}", r.name)),
    }
}

fn run_to_completion(e: &Entry, log: &crate::log::Logger) {
    let Some(cmd) = e.get("cmd") else { return };
    let argv = packaged_argv(cmd.split_whitespace().map(String::from).collect());
    let Some(prog) = argv.first().and_then(|p| resolve(p)) else {
        log.warning(&format!(
            "{}: {} is not part of mumail; skipped",
            e.name,
            argv.first().map_or("", String::as_str)
        ));
        return;
    };
    match Command::new(prog).args(&argv[1..]).status() {
        Ok(s) if s.success() => {}
        Ok(s) => log.error(&format!("{} exited, status {}", e.name, s.code().unwrap_or(-1))),
        Err(err) => log.error(&format!("{}: {err}", e.name)),
    }
}

pub fn main(args: &[String]) -> i32 {
    let Ok((opts, _)) = getopt(args, "C:M:p:l:L:dDj:") else {
        eprintln!("usage: master [-C alt_config] [-M alt_cyrus.conf] [-l listen_queue] [-p pidfile] [-d | -D] [-L logfile]");
        return crate::util::exit::USAGE;
    };
    let (mut imapd_conf, mut cyrus_conf, mut pidfile, mut daemonise) = (
        "/etc/imapd.conf".to_string(),
        "/etc/cyrus.conf".to_string(),
        "/run/cyrus-master.pid".to_string(),
        false,
    );
    for o in opts {
        match o {
            Opt::Arg('C', v) => imapd_conf = v,
            Opt::Arg('M', v) => cyrus_conf = v,
            Opt::Arg('p', v) => pidfile = v,
            Opt::Flag('d') => daemonise = true,
            Opt::Flag('D') => daemonise = false,
            _ => {}
        }
    }
    let log = crate::config::cyrus::ImapdConf::load(&imapd_conf, Some("master"))
        .ok()
        .and_then(|c| {
            c.apply_umask();
            crate::log::Logger::for_cyrus(&c, "master").ok()
        })
        .unwrap_or_else(|| crate::log::Logger::new("cyrus/master", 22, crate::log::Target::Stderr));
    let conf = match CyrusConf::load(&cyrus_conf).and_then(|c| c.service_entries().map(|s| (c, s))) {
        Ok(v) => v,
        Err(e) => {
            log.fatal(&e.to_string());
            eprintln!("master: fatal: {e}");
            return crate::util::exit::CONFIG;
        }
    };
    let (cf, services) = conf;
    if daemonise {
        // SAFETY: single-threaded at this point.
        match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Parent { .. }) => return 0,
            Ok(nix::unistd::ForkResult::Child) => {
                let _ = nix::unistd::setsid();
                // Detach from the caller's terminal and pipes.
                if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
                    for fd in 0..3 {
                        // SAFETY: plain descriptor duplication.
                        unsafe { libc::dup2(null.as_raw_fd(), fd) };
                    }
                }
            }
            Err(e) => {
                eprintln!("master: fork: {e}");
                return crate::util::exit::OSERR;
            }
        }
    }
    let _pid = crate::server::PidFile::create(std::path::Path::new(&pidfile)).ok();
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGTERM, on_term as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_term as *const () as libc::sighandler_t);
        libc::signal(libc::SIGHUP, on_hup as *const () as libc::sighandler_t);
    }
    for e in &cf.start {
        run_to_completion(e, &log);
    }
    let (mut running, mut events) = plan(&cf, services, &imapd_conf, &mut Vec::new(), &log);
    // Old service processes finishing their sessions after a reload.
    let mut retiring: Vec<Child> = Vec::new();
    let mut last_minute = u32::MAX;
    while !TERM.load(Ordering::SeqCst) {
        if HUP.swap(false, Ordering::SeqCst) {
            log.info("reloading configuration");
            match CyrusConf::load(&cyrus_conf).and_then(|c| c.service_entries().map(|s| (c, s))) {
                Err(e) => log.error(&format!("reload: {e}; keeping the running configuration")),
                Ok((ncf, nservices)) => {
                    let (nrunning, nevents) = plan(&ncf, nservices, &imapd_conf, &mut running, &log);
                    for mut r in std::mem::replace(&mut running, nrunning) {
                        if let Some(c) = r.child.take() {
                            if r.listen.is_some() {
                                // Services: retired, their sessions finish.
                                signal_child(&c, nix::sys::signal::Signal::SIGUSR2);
                            } else {
                                signal_child(&c, nix::sys::signal::Signal::SIGTERM);
                            }
                            retiring.push(c);
                        }
                    }
                    events = nevents;
                }
            }
        }
        retiring.retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
        for r in &mut running {
            let dead = match &mut r.child {
                None => true,
                Some(c) => matches!(c.try_wait(), Ok(Some(_))),
            };
            // Restart what died, at most once a second (babysitting).
            if dead && r.last_start.elapsed() >= Duration::from_secs(1) {
                if r.child.is_some() {
                    log.warning(&format!(
                        "service {} pid {} terminated; restarting",
                        r.name,
                        r.child.as_ref().map_or(0, |c| c.id())
                    ));
                }
                spawn(r, &log);
            }
        }
        let now = Instant::now();
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let (_, _, _, hh, mm, _, _) = crate::util::codec::civil(t);
        for (e, period, at, next) in events.iter_mut() {
            let due = match (period, at) {
                (Some(p), _) if now >= *next => {
                    *next = now + *p;
                    true
                }
                (None, Some((h, m))) => *h == hh && *m == mm && last_minute != hh * 60 + mm,
                _ => false,
            };
            if due {
                run_to_completion(e, &log);
            }
        }
        last_minute = hh * 60 + mm;
        std::thread::sleep(Duration::from_millis(200));
    }
    for r in &mut running {
        if let Some(c) = &mut r.child {
            signal_child(c, nix::sys::signal::Signal::SIGTERM);
        }
    }
    for c in &retiring {
        signal_child(c, nix::sys::signal::Signal::SIGTERM);
    }
    for r in &mut running {
        if let Some(c) = &mut r.child {
            let _ = c.wait();
        }
    }
    for c in &mut retiring {
        let _ = c.wait();
    }
    log.info("exiting on SIGTERM/SIGINT");
    0
}
