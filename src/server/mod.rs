//! The daemon skeleton every mumail daemon runs on (Postfix's
//! single/multi_server + mini-redis shutdown): bind TCP (v4/v6) and UNIX
//! sockets or take them from systemd, drop privilege after binding, take a
//! connection permit *before* accept (`maxproc` / `default_process_limit` /
//! `maxchild`), serve each connection as a task under an idle and a whole-
//! session deadline, stop accepting and drain on SIGTERM, reload on SIGHUP
//! keeping the old config when the new one fails.  It knows no protocol.

pub mod deflate;
pub mod listen;
pub mod peer;
pub mod privs;

pub use listen::{Conn, Listener};

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{watch, Semaphore};

/// Limits that master.cf / cyrus.conf / main.cf set for a service.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Concurrent connections; 0 = unlimited.
    pub max_conns: usize,
    /// Whole-session deadline.
    pub session_timeout: Option<Duration>,
    /// How long a drain may take on shutdown before connections are cut.
    pub drain_timeout: Duration,
    /// TCP keepalive on accepted connections.
    pub keepalive: Option<Keepalive>,
}

/// TCP keepalive (Cyrus's `tcp_keepalive`): seconds idle before the first
/// probe, seconds between probes, probes before the connection is given
/// up; 0 leaves the system's default.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Keepalive {
    pub idle: u32,
    pub intvl: u32,
    pub cnt: u32,
}

impl Keepalive {
    pub fn apply(&self, s: &impl std::os::fd::AsFd) -> nix::Result<()> {
        use nix::sys::socket::{setsockopt, sockopt};
        setsockopt(s, sockopt::KeepAlive, &true)?;
        if self.idle > 0 {
            setsockopt(s, sockopt::TcpKeepIdle, &self.idle)?;
        }
        if self.intvl > 0 {
            setsockopt(s, sockopt::TcpKeepInterval, &self.intvl)?;
        }
        if self.cnt > 0 {
            setsockopt(s, sockopt::TcpKeepCount, &self.cnt)?;
        }
        Ok(())
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_conns: 100,
            session_timeout: None,
            drain_timeout: Duration::from_secs(10),
            keepalive: None,
        }
    }
}

/// A protocol service: serves one accepted connection.
pub trait Service: Send + Sync + 'static {
    fn serve(self: Arc<Self>, conn: Conn) -> impl Future<Output = ()> + Send;
}

/// Configuration that can be replaced on SIGHUP; readers take a snapshot.
pub struct Reloadable<T> {
    current: RwLock<Arc<T>>,
}

impl<T> Reloadable<T> {
    pub fn new(v: T) -> Self {
        Reloadable {
            current: RwLock::new(Arc::new(v)),
        }
    }
    pub fn get(&self) -> Arc<T> {
        self.current.read().map(|g| g.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }
    /// Replaces the config with `load()`'s result; on error keeps the old
    /// one and returns the error for logging.
    pub fn reload<E>(&self, load: impl FnOnce() -> Result<T, E>) -> Result<(), E> {
        let new = Arc::new(load()?);
        match self.current.write() {
            Ok(mut g) => *g = new,
            Err(p) => *p.into_inner() = new,
        }
        Ok(())
    }
}

/// A service that a reload can replace: connections accepted from then on
/// go to the new one, those in progress finish with the old.
pub struct Swappable<S>(Reloadable<S>);

impl<S> Swappable<S> {
    pub fn new(s: S) -> Self {
        Swappable(Reloadable::new(s))
    }

    pub fn set(&self, s: S) {
        let _ = self.0.reload(|| Ok::<_, std::convert::Infallible>(s));
    }
}

impl<S: Service> Service for Swappable<S> {
    fn serve(self: Arc<Self>, conn: Conn) -> impl Future<Output = ()> + Send {
        let cur = self.0.get();
        cur.serve(conn)
    }
}

/// A handle that tells `run` to stop accepting and drain.
#[derive(Clone)]
pub struct Shutdown(watch::Sender<bool>);

impl Shutdown {
    pub fn new() -> (Shutdown, watch::Receiver<bool>) {
        let (tx, rx) = watch::channel(false);
        (Shutdown(tx), rx)
    }
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
}

/// Waits for SIGTERM or SIGINT; calls `on_hup` for each SIGHUP meanwhile.
/// Set by SIGUSR2 (master's reload): stop accepting and let every session
/// finish, however long it takes, instead of draining with a deadline.
pub static RETIRING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Waits for SIGTERM/SIGINT (returns), SIGUSR2 (sets `RETIRING`, returns)
/// and calls `on_hup` for each SIGHUP.
pub async fn signals(mut on_hup: impl FnMut()) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup), Ok(mut usr2)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
        signal(SignalKind::user_defined2()),
    ) else {
        return std::future::pending().await;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = usr2.recv() => {
                RETIRING.store(true, std::sync::atomic::Ordering::SeqCst);
                return;
            }
            _ = hup.recv() => on_hup(),
        }
    }
}

/// Serves `listeners` until `stop` turns true, then drains.  Returns the
/// number of connections still open when the drain deadline passed.
pub async fn run<S: Service>(listeners: Vec<Listener>, service: Arc<S>, limits: Limits, mut stop: watch::Receiver<bool>) -> usize {
    let max = if limits.max_conns == 0 {
        Semaphore::MAX_PERMITS
    } else {
        limits.max_conns
    };
    let permits = Arc::new(Semaphore::new(max));
    let mut tasks = tokio::task::JoinSet::new();
    let (conn_tx, mut conn_rx) = tokio::sync::mpsc::channel::<(Conn, tokio::sync::OwnedSemaphorePermit)>(1);
    let mut acceptors = tokio::task::JoinSet::new();
    for l in listeners {
        let permits = permits.clone();
        let tx = conn_tx.clone();
        let keepalive = limits.keepalive;
        acceptors.spawn(async move {
            loop {
                // The permit is taken before accept: over the limit, new
                // clients wait in the kernel backlog, not in our memory.
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                match l.accept().await {
                    Ok(c) => {
                        if let (Some(k), Conn::Tcp(s, _)) = (keepalive, &c) {
                            let _ = k.apply(s);
                        }
                        if tx.send((c, permit)).await.is_err() {
                            return;
                        }
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
    }
    drop(conn_tx);
    loop {
        tokio::select! {
            _ = stop.wait_for(|v| *v) => break,
            c = conn_rx.recv() => {
                let Some((conn, permit)) = c else { break };
                let svc = service.clone();
                let deadline = limits.session_timeout;
                tasks.spawn(async move {
                    // The session's future in its own allocation: held
                    // inline, the timeout's copy would double the task
                    // (the compiler keeps both slots), and idle sessions
                    // are mostly that.
                    let work = Box::pin(svc.serve(conn));
                    match deadline {
                        Some(d) => { let _ = tokio::time::timeout(d, work).await; }
                        None => work.await,
                    }
                    drop(permit);
                });
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    acceptors.abort_all();
    if RETIRING.load(std::sync::atomic::Ordering::SeqCst) {
        // Retired by master's reload: the sessions end by themselves.
        while tasks.join_next().await.is_some() {}
        return 0;
    }
    let drained = tokio::time::timeout(limits.drain_timeout, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        let left = tasks.len();
        tasks.abort_all();
        return left;
    }
    0
}

/// A pid file, written at start and removed on drop.
pub struct PidFile(std::path::PathBuf);

impl PidFile {
    pub fn create(path: &std::path::Path) -> std::io::Result<PidFile> {
        crate::util::atomic::replace_file(path, format!("{}\n", std::process::id()).as_bytes(), Some(0o644))?;
        Ok(PidFile(path.to_path_buf()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// One read (into `buf`) under an idle deadline: 0 at the end of input.
pub async fn read_within<R: tokio::io::AsyncRead + Unpin>(r: &mut R, buf: &mut [u8], idle: Duration) -> std::io::Result<usize> {
    use tokio::io::AsyncReadExt;
    match tokio::time::timeout(idle, r.read(buf)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "timeout exceeded")),
    }
}

/// `read_within` onto the end of `buf`, into its spare capacity (none
/// zeroed first).
pub async fn read_append<R: tokio::io::AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>, idle: Duration) -> std::io::Result<usize> {
    use tokio::io::AsyncReadExt;
    match tokio::time::timeout(idle, r.read_buf(buf)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "timeout exceeded")),
    }
}

/// Reads one line (bounded by the buffer's limit) under an idle deadline.
pub async fn read_line<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut crate::util::lines::LineBuffer,
    queue: &mut std::collections::VecDeque<crate::util::lines::Line>,
    idle: Duration,
) -> std::io::Result<Option<crate::util::lines::Line>> {
    loop {
        if let Some(l) = queue.pop_front() {
            return Ok(Some(l));
        }
        let mut chunk = [0u8; 4096];
        let n = read_within(r, &mut chunk, idle).await?;
        if n == 0 {
            return Ok(None);
        }
        queue.extend(buf.feed(&chunk[..n]));
    }
}
