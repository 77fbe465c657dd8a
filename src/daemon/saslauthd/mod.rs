//! saslauthd: answers password checks on the `mux` UNIX socket for
//! Postfix, Cyrus and every libsasl client, as Cyrus SASL 2.1.28's
//! saslauthd does (same socket, protocol, flags, replies and log lines),
//! with concurrent requests in one process, deadlines and a salted cache.
//!
//! Per connection: read one request (bounded, with a deadline), check it,
//! send the counted reply, close.

pub mod options;

use crate::auth::cache::Cache;
use crate::auth::{Credentials, Mechanism, Verdict};
use crate::log::Logger;
use crate::mail::Secret;
use crate::proto::saslauthd::{decode_request, encode_reply, DecodeError, MAX_REQUEST};
use options::{Action, Options, USAGE};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const VERSION: &str = "2.1.28";
/// How long a client may take to send its request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one mechanism check may take before the answer is `NO`.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(30);
/// Concurrent connections held at most (each costs one small task).
pub const MAX_CONNECTIONS: usize = 4096;

pub struct State {
    pub opts: Options,
    pub mech: Box<dyn Mechanism>,
    pub cache: Option<Cache>,
    pub log: Logger,
    pub check_timeout: Duration,
}

/// Builds the mechanism named by `-a`.
pub fn mechanism(o: &Options, pool: Arc<tokio::sync::Semaphore>) -> Result<Box<dyn Mechanism>, String> {
    Ok(match o.mech.as_str() {
        "shadow" => Box::new(crate::auth::shadow::Shadow { pool }),
        "ldap" => {
            let path = o.mech_option.clone().unwrap_or_else(|| "/etc/saslauthd.conf".into());
            let conf = crate::config::sasl::SaslauthdConf::load(&path).map_err(|e| e.to_string())?;
            Box::new(crate::auth::ldap::Ldap::new(&conf, pool)?)
        }
        #[cfg(feature = "krb5")]
        "kerberos5" => {
            let conf = match &o.mech_option {
                Some(p) => crate::config::sasl::SaslauthdConf::load(p).map_err(|e| e.to_string())?,
                None => crate::config::sasl::SaslauthdConf::default(),
            };
            Box::new(crate::auth::krb5::Krb5::new(&conf, pool))
        }
        #[cfg(feature = "pam")]
        "pam" => Box::new(crate::auth::pam::Pam { pool }),
        "rimap" => {
            let host = o.mech_option.clone().ok_or("rimap requires -O host[/port]")?;
            Box::new(crate::auth::rimap::Rimap::new(&host)?)
        }
        "sasldb" => {
            return Err("sasldb: mumail cannot read Berkeley DB sasldb2 files; use ldap, kerberos5, pam or shadow".into());
        }
        other => return Err(format!("unknown authentication mechanism: {other}")),
    })
}

/// What a request needs: its answer at once (a refusal or a cache hit), or
/// a check by the mechanism for this user, service and realm.
enum Step {
    Reply(String),
    Check { user: String, service: String, realm: String },
}

fn first_step(st: &State, login: &[u8], password: &Secret<Vec<u8>>, service: &[u8], realm: &[u8]) -> Step {
    if login.is_empty() {
        return Step::Reply("NO NULL login received".into());
    }
    if password.expose().is_empty() {
        return Step::Reply("NO NULL password received".into());
    }
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let (mut user, service, realm) = (text(login), text(service), text(realm));
    if st.opts.realm_join && !realm.is_empty() {
        user = format!("{user}@{realm}");
    }
    if let Some(c) = &st.cache {
        if c.hit(&user, &realm, &service, password.expose()) {
            if st.opts.verbose {
                st.log.info(&format!(
                    "auth success: [user={user}] [service={service}] [realm={realm}] [mech={}] (cached)",
                    st.mech.name()
                ));
            }
            return Step::Reply("OK".into());
        }
    }
    Step::Check { user, service, realm }
}

/// Answers one request (already decoded).
pub async fn answer(st: &State, login: &[u8], password: &Secret<Vec<u8>>, service: &[u8], realm: &[u8]) -> String {
    match first_step(st, login, password, service, realm) {
        Step::Reply(r) => r,
        Step::Check { user, service, realm } => check(st, user, service, realm, password).await,
    }
}

/// The mechanism's answer (cached when it is OK and `-c` is on).
async fn check(st: &State, user: String, service: String, realm: String, password: &Secret<Vec<u8>>) -> String {
    let pw = password.expose();
    let creds = Credentials {
        login: user.clone(),
        password: Secret::new(String::from_utf8_lossy(pw).into_owned()),
        service: service.clone(),
        realm: realm.clone(),
    };
    let (verdict, notes) = match tokio::time::timeout(st.check_timeout, st.mech.check(&creds)).await {
        Ok(v) => v,
        Err(_) => (
            Verdict::unavailable("authentication timed out"),
            vec![format!("{}: check timed out after {}s", st.mech.name(), st.check_timeout.as_secs())],
        ),
    };
    for n in notes {
        st.log.warning(&n);
    }
    match &verdict {
        Verdict::Ok | Verdict::OkWith(_) => {
            if let Some(c) = &st.cache {
                c.store(&user, &realm, &service, pw);
            }
            if st.opts.verbose {
                st.log.info(&format!(
                    "auth success: [user={user}] [service={service}] [realm={realm}] [mech={}]",
                    st.mech.name()
                ));
            }
        }
        Verdict::No(reason) => {
            st.log.info(&format!(
                "auth failure: [user={user}] [service={service}] [realm={realm}] [mech={}] [reason={}]",
                st.mech.name(),
                if reason.is_empty() { "Unknown" } else { reason }
            ));
        }
    }
    verdict.reply()
}

/// The reply bytes, logged first with `-v`/`-d` as saslauthd does.
fn reply_bytes(st: &State, reply: &str) -> Vec<u8> {
    if st.opts.verbose {
        st.log.info(&format!("response: {reply}"));
    }
    encode_reply(reply)
}

/// Serves one connection; `buf` holds what was already read from it.
pub async fn serve<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(st: &State, mut io: S, mut buf: Vec<u8>) {
    let reply = loop {
        match decode_request(&buf) {
            Ok(Some((req, _))) => break answer(st, &req.login, &req.password, &req.service, &req.realm).await,
            Ok(None) if buf.len() < MAX_REQUEST => {}
            Ok(None) => return,
            Err(DecodeError::FieldTooLong) => break "NO ".to_string(),
        }
        let mut chunk = [0u8; 1024];
        let n = match tokio::time::timeout(REQUEST_TIMEOUT, io.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(n)) => n,
            Err(_) => {
                if st.opts.verbose {
                    st.log.info("request timed out");
                }
                return;
            }
        };
        buf.extend_from_slice(&chunk[..n]);
    };
    // Reply and close: the client reads the reply even if it sent more
    // than one request (a UNIX socket's queued data outlives our close).
    let _ = io.write_all(&reply_bytes(st, &reply)).await;
}

/// A connection just accepted: a request that is already there and needs
/// no mechanism (a cache hit, a refusal) is answered on the spot, without
/// a task or the reactor; anything else is served by a task.
fn take(st: &Arc<State>, conn: std::os::unix::net::UnixStream, permit: tokio::sync::OwnedSemaphorePermit) {
    use std::io::Read;
    let mut chunk = [0u8; 1024];
    let buf = match (&conn).read(&mut chunk) {
        Ok(0) => return,
        Ok(n) => chunk[..n].to_vec(),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Vec::new(),
        Err(_) => return,
    };
    let req = match decode_request(&buf) {
        Ok(Some((req, _))) => req,
        Err(DecodeError::FieldTooLong) => return reply_now(st, &conn, "NO "),
        // Not whole yet: read the rest in a task.
        Ok(None) => return in_task(st, conn, permit, move |st, conn| async move { serve(&st, conn, buf).await }),
    };
    match first_step(st, &req.login, &req.password, &req.service, &req.realm) {
        Step::Reply(reply) => reply_now(st, &conn, &reply),
        Step::Check { user, service, realm } => in_task(st, conn, permit, move |st, mut conn| async move {
            let reply = check(&st, user, service, realm, &req.password).await;
            let _ = conn.write_all(&reply_bytes(&st, &reply)).await;
        }),
    }
}

/// A few bytes into an empty socket buffer: written whole, or the client
/// is gone.
fn reply_now(st: &State, conn: &std::os::unix::net::UnixStream, reply: &str) {
    use std::io::Write;
    let _ = (&*conn).write(&reply_bytes(st, reply));
}

/// Goes on with the connection in a task, which holds the permit.
fn in_task<F, Fut>(st: &Arc<State>, conn: std::os::unix::net::UnixStream, permit: tokio::sync::OwnedSemaphorePermit, work: F)
where
    F: FnOnce(Arc<State>, tokio::net::UnixStream) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let Ok(conn) = tokio::net::UnixStream::from_std(conn) else { return };
    let fut = work(st.clone(), conn);
    tokio::spawn(async move {
        fut.await;
        drop(permit);
    });
}

/// Accepts connections (each one non-blocking, close-on-exec) as long as
/// fewer than MAX_CONNECTIONS are being served.
async fn accept_loop(st: Arc<State>, listener: std::os::unix::net::UnixListener) {
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: the AsyncFd owns the listener, whose descriptor stays open
    // and the same until the AsyncFd is dropped.
    let registered = unsafe { tokio::io::unix::AsyncFd::register_with_interest(listener, tokio::io::Interest::READABLE) };
    let Ok(afd) = registered else { return };
    let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(mut ready) = afd.readable().await else { return };
        loop {
            let Ok(permit) = limit.clone().acquire_owned().await else { return };
            // SAFETY: accept4 on our listening socket; a returned
            // descriptor is new and owned by the UnixStream made of it.
            let fd = unsafe {
                libc::accept4(
                    afd.get_ref().as_raw_fd(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                )
            };
            if fd >= 0 {
                // SAFETY: see above.
                take(&st, unsafe { std::os::unix::net::UnixStream::from_raw_fd(fd) }, permit);
                continue;
            }
            match std::io::Error::last_os_error().kind() {
                std::io::ErrorKind::WouldBlock => ready.clear_ready(),
                std::io::ErrorKind::Interrupted => continue,
                // Out of descriptors: let connections end first.
                _ => tokio::time::sleep(Duration::from_millis(10)).await,
            }
            break;
        }
    }
}

fn log_target(o: &Options) -> Logger {
    if o.debug {
        Logger::new("saslauthd", 4, crate::log::Target::Debug)
    } else {
        Logger::new("saslauthd", 4, crate::log::Target::Syslog("/dev/log".into()))
    }
}

/// The daemon's main: parse flags, bind `<run_path>/mux`, daemonise unless
/// `-d`, write the pid file, serve until SIGTERM.
pub fn main(args: &[String]) -> i32 {
    let o = match options::parse(args) {
        Action::Run(o) => o,
        Action::Version => {
            println!(
                "saslauthd {VERSION} (mumail {})\nauthentication mechanisms: {}\n",
                env!("CARGO_PKG_VERSION"),
                crate::auth::mechanism_names().join(" ")
            );
            return 0;
        }
        Action::Usage(code) => {
            eprint!(
                "{USAGE}\nsaslauthd {VERSION} (mumail {})\nauthentication mechanisms: {}\n\n",
                env!("CARGO_PKG_VERSION"),
                crate::auth::mechanism_names().join(" ")
            );
            return code;
        }
        Action::Fail(msg, code) => {
            Logger::new("saslauthd", 4, crate::log::Target::Debug).log(crate::log::Severity::Info, &msg);
            if code == 0 {
                eprint!("{USAGE}");
            }
            return code;
        }
    };
    let log = log_target(&o);
    if o.verbose {
        for (k, v) in [
            ("num_procs", o.workers.to_string()),
            ("mech_option", o.mech_option.clone().unwrap_or("NULL".into())),
            ("run_path", o.run_path.clone()),
            ("auth_mech", o.mech.clone()),
        ] {
            log.info(&format!("{k:<11}: {v}"));
        }
    }
    if let Err(e) = std::fs::create_dir(&o.run_path) {
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            log.error(&format!("can not mkdir: {}", o.run_path));
            log.error("Check to make sure the parent directory exists and is");
            log.error("writeable by the user this process runs as.");
            return 1;
        }
    } else {
        let _ = std::fs::set_permissions(&o.run_path, std::fs::Permissions::from_mode(0o755));
    }
    let mux = std::path::Path::new(&o.run_path).join("mux");
    let _ = std::fs::remove_file(&mux);
    let listener = match std::os::unix::net::UnixListener::bind(&mux) {
        Ok(l) => l,
        Err(e) => {
            log.error(&format!("bind: {}: {}", mux.display(), crate::util::strerror(&e)));
            return 1;
        }
    };
    // Access is gated by the directory's permissions, as saslauthd does.
    let _ = std::fs::set_permissions(&mux, std::fs::Permissions::from_mode(0o777));
    if o.verbose {
        log.info(&format!("listening on socket: {}", mux.display()));
    }
    if !o.debug {
        match daemonize() {
            Ok(true) => {}
            Ok(false) => return 0,
            Err(e) => {
                log.error(&format!("daemonize: {e}"));
                return 1;
            }
        }
    }
    let code = run(o, listener, log);
    if let Some(fd) = READY_FD.get() {
        let _ = nix::unistd::write(fd, if code == 0 { b"k" } else { b"f" });
    }
    code
}

static READY_FD: std::sync::OnceLock<std::os::fd::OwnedFd> = std::sync::OnceLock::new();

/// Forks; the parent waits until the child is serving (pid file written)
/// and returns Ok(false) to exit, as systemd `Type=forking` expects.
fn daemonize() -> Result<bool, String> {
    use nix::unistd::{fork, pipe, setsid, ForkResult};
    let (r, w) = pipe().map_err(|e| e.desc().to_string())?;
    // SAFETY: no threads exist yet (the runtime starts after the fork).
    match unsafe { fork() }.map_err(|e| e.desc().to_string())? {
        ForkResult::Parent { .. } => {
            drop(w);
            let mut b = [0u8; 1];
            let ok = matches!(nix::unistd::read(&r, &mut b), Ok(1) if b[0] == b'r');
            if ok {
                Ok(false)
            } else {
                std::process::exit(1)
            }
        }
        ForkResult::Child => {
            drop(r);
            let _ = setsid();
            if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
                use std::os::fd::AsRawFd;
                for fd in 0..3 {
                    // SAFETY: plain descriptor duplication onto 0..2.
                    unsafe { libc::dup2(null.as_raw_fd(), fd) };
                }
            }
            let _ = READY_FD.set(w);
            Ok(true)
        }
    }
}

fn run(o: Options, listener: std::os::unix::net::UnixListener, log: Logger) -> i32 {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            log.error(&format!("runtime: {e}"));
            return 1;
        }
    };
    rt.block_on(async move {
        let pool = Arc::new(tokio::sync::Semaphore::new(if o.workers == 0 { 64 } else { o.workers }));
        let mech = match mechanism(&o, pool) {
            Ok(m) => m,
            Err(e) => {
                log.error(&e);
                return 1;
            }
        };
        for n in mech.startup_notes() {
            log.warning(&n);
        }
        let cache = o.cache.then(|| Cache::new(o.cache_kb, Duration::from_secs(o.cache_ttl)));
        let pid_path = std::path::Path::new(&o.run_path).join("saslauthd.pid");
        let _pid = match crate::server::PidFile::create(&pid_path) {
            Ok(p) => p,
            Err(e) => {
                log.error(&format!(
                    "could not write pid file {}: {}",
                    pid_path.display(),
                    crate::util::strerror(&e)
                ));
                return 1;
            }
        };
        if listener.set_nonblocking(true).is_err() {
            return 1;
        }
        let st = Arc::new(State {
            opts: o,
            mech,
            cache,
            log,
            check_timeout: CHECK_TIMEOUT,
        });
        if let Some(fd) = READY_FD.get() {
            let _ = nix::unistd::write(fd, b"r");
        }
        let accepting = tokio::spawn(accept_loop(st, listener));
        crate::server::signals(|| {}).await;
        accepting.abort();
        0
    })
}
