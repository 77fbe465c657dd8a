//! Logged-in IMAP back-end connections kept by a front end after the
//! client's LOGOUT, for that user's next session on the same back end.
//!
//! Mail clients open many short sessions (a phone checks, logs out, comes
//! back a minute later); each proxied one cost a TCP connection, a
//! greeting and a SASL login at the back end, and their LOGOUT and close.
//! A session that leaves its back end as a new login would (nothing
//! ENABLEd, no ID, compression or NOTIFY, no mailbox selected: a selected
//! one is UNSELECTed first) hands the connection here; the user's next
//! login, once its password has been checked here as always, takes it.
//! Kept for `IDLE_FOR` at most, `PER_USER` per user and back end,
//! `TOTAL` in all; one that the back end has closed or written to since
//! is dropped, never handed out.  With several proxy threads (`prefork`)
//! a connection may be taken by another thread than the one that opened
//! it; its readiness still comes through the first thread's reactor.

use super::peer_tls::PeerIo;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};

/// How long an unused connection is kept.
pub const IDLE_FOR: Duration = Duration::from_secs(30);
/// Connections kept per user and back end.
const PER_USER: usize = 8;
/// Connections kept in all.
const TOTAL: usize = 1024;

/// Commands after which a back-end connection is as a fresh login left it
/// once nothing is selected (the state they touch is the selected
/// mailbox's, or stored on the back end for every session alike).
const STATELESS: &[&str] = &[
    "CAPABILITY",
    "NOOP",
    "CHECK",
    "SELECT",
    "EXAMINE",
    "UNSELECT",
    "CLOSE",
    "FETCH",
    "STORE",
    "SEARCH",
    "ESEARCH",
    "SORT",
    "THREAD",
    "COPY",
    "MOVE",
    "EXPUNGE",
    "APPEND",
    "STATUS",
    "LIST",
    "XLIST",
    "RLIST",
    "LSUB",
    "RLSUB",
    "CREATE",
    "DELETE",
    "RENAME",
    "SUBSCRIBE",
    "UNSUBSCRIBE",
    "NAMESPACE",
    "GETACL",
    "SETACL",
    "DELETEACL",
    "LISTRIGHTS",
    "MYRIGHTS",
    "GETQUOTA",
    "GETQUOTAROOT",
    "SETQUOTA",
    "GETMETADATA",
    "SETMETADATA",
    "GETANNOTATION",
    "SETANNOTATION",
    "IDLE",
];

/// Whether a connection stays reusable after the command `name`.
pub fn keeps_reusable(name: &str) -> bool {
    STATELESS.iter().any(|s| s.eq_ignore_ascii_case(name))
}

struct Idle {
    io: PeerIo,
    /// The back end's tagged OK to the login (the client gets its text).
    ok: String,
    since: Instant,
}

#[derive(Default)]
pub struct Pool {
    idle: Mutex<HashMap<(String, String), Vec<Idle>>>,
    /// Each back end's last reply to a login (its capabilities): what a
    /// session that reuses a connection is told (kept here once, not with
    /// every session).
    oks: Mutex<HashMap<String, String>>,
    sweeping: AtomicBool,
}

impl Pool {
    /// A kept connection to `server` logged in for `user`, still open and
    /// silent; its login's OK line.
    pub fn take(&self, server: &str, user: &str) -> Option<(String, PeerIo)> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let key = (server.to_string(), user.to_string());
        let list = idle.get_mut(&key)?;
        let mut found = None;
        // The most recently kept first.
        while let Some(mut c) = list.pop() {
            if c.since.elapsed() < IDLE_FOR && quiet_and_open(&mut c.io) {
                found = Some((c.ok, c.io));
                break;
            }
        }
        if list.is_empty() {
            idle.remove(&key);
        }
        found
    }

    /// `server`'s tagged reply to a login, for the sessions that reuse a
    /// connection to it (its text is kept; the tag is whoever's).
    pub fn note_login(&self, server: &str, ok: &str) {
        let text = ok.split_once(' ').map_or(ok, |(_, t)| t);
        let mut oks = self.oks.lock().unwrap_or_else(|p| p.into_inner());
        if oks.get(server).is_none_or(|o| o != text) {
            oks.insert(server.to_string(), text.to_string());
        }
    }

    /// Keeps `io` (logged in to `server` for `user`, nothing selected, no
    /// reply owed); Err when full or no login to `server` was noted (the
    /// caller logs it out).
    pub fn keep(self: &Arc<Self>, server: &str, user: &str, io: PeerIo) -> Result<(), PeerIo> {
        let Some(ok) = self
            .oks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(server)
            .map(|t| format!("P01 {t}"))
        else {
            return Err(io);
        };
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let total: usize = idle.values().map(Vec::len).sum();
        let list = idle.entry((server.to_string(), user.to_string())).or_default();
        if total >= TOTAL || list.len() >= PER_USER {
            return Err(io);
        }
        list.push(Idle {
            io,
            ok,
            since: Instant::now(),
        });
        drop(idle);
        if !self.sweeping.swap(true, Ordering::SeqCst) {
            tokio::spawn(self.clone().sweep());
        }
        Ok(())
    }

    /// Logs out connections kept longer than `IDLE_FOR`, every few seconds.
    async fn sweep(self: Arc<Self>) {
        loop {
            tokio::time::sleep(IDLE_FOR / 4).await;
            let old: Vec<Idle> = {
                let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                let mut old = Vec::new();
                idle.retain(|_, list| {
                    let (keep, gone): (Vec<Idle>, Vec<Idle>) = std::mem::take(list).into_iter().partition(|c| c.since.elapsed() < IDLE_FOR);
                    old.extend(gone);
                    *list = keep;
                    !list.is_empty()
                });
                old
            };
            for mut c in old {
                let _ = tokio::time::timeout(Duration::from_secs(1), c.io.write_all(b"Z LOGOUT\r\n")).await;
            }
        }
    }
}

/// Whether the back end has neither closed `io` nor written to it: one
/// read that must find nothing to read.
pub(crate) fn quiet_and_open(io: &mut PeerIo) -> bool {
    let mut byte = [0u8; 1];
    let mut buf = ReadBuf::new(&mut byte);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    matches!(std::pin::Pin::new(io).poll_read(&mut cx, &mut buf), std::task::Poll::Pending)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn kept_connections_are_handed_out_only_while_open_and_silent() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let pool = Arc::new(Pool::default());
        let mut peers = Vec::new();
        for _ in 0..3 {
            let c = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (s, _) = l.accept().await.unwrap();
            peers.push(s);
            pool.note_login("b1", "a1 OK done");
            assert!(pool.keep("b1", "u7", Box::new(c)).is_ok());
        }
        // No login to b2 noted: nothing kept for it.
        let c = tokio::net::TcpStream::connect(addr).await.unwrap();
        peers.push(l.accept().await.unwrap().0);
        assert!(pool.keep("b2", "u7", Box::new(c)).is_err());
        // Nobody else's.
        assert!(pool.take("b1", "u8").is_none());
        assert!(pool.take("b2", "u7").is_none());
        // The newest has been written to, the middle one closed: both are
        // passed over; the oldest is handed out, then none is left.
        peers[2].write_all(b"* BYE bye\r\n").await.unwrap();
        drop(peers.remove(1));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (ok, _io) = pool.take("b1", "u7").expect("the open, silent one");
        assert_eq!(ok, "P01 OK done");
        assert!(pool.take("b1", "u7").is_none());
        // At most PER_USER per user and back end.
        for i in 0..PER_USER + 1 {
            let c = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (s, _) = l.accept().await.unwrap();
            peers.push(s);
            assert_eq!(pool.keep("b1", "u7", Box::new(c)).is_ok(), i < PER_USER);
        }
    }

    #[test]
    fn only_commands_that_leave_no_session_state_keep_a_connection() {
        assert!(keeps_reusable("fetch") && keeps_reusable("SELECT") && keeps_reusable("IDLE"));
        for c in ["ENABLE", "ID", "COMPRESS", "NOTIFY", "LANGUAGE", "STARTTLS", "XFER", "X-UNKNOWN"] {
            assert!(!keeps_reusable(c), "{c}");
        }
    }
}
