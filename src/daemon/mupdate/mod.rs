//! mupdate: the Murder's mailbox directory (RFC 3656), as Cyrus's
//! `mupdate` serves it.  With `-m` it is the master: back ends ACTIVATE,
//! RESERVE, DEACTIVATE and DELETE their mailboxes, front ends FIND, LIST
//! and stream UPDATEs.  Without it, it is a front end's replica: it keeps
//! a local copy of the master's table current over an UPDATE stream and
//! answers FIND/LIST/UPDATE from it, also while the master is down.
//!
//! Replies are Cyrus's byte for byte (quoted texts, LITERAL+ data);
//! Cyrus's crashes on DELETE/DEACTIVATE of unknown names are answered
//! with NO instead.  Changes reach UPDATE streams at once (Cyrus waits up
//! to 5 s), each only after it is on disk.

pub mod client;
pub mod push;
mod slave;

use super::imapd::io::{CommandLimits, Frame, Input, Output, ReadError, MAX_LINE, MAX_SMALL_LITERAL};
use crate::config::cyrus::ImapdConf;
use crate::log::Logger;
use crate::mail::Secret;
use crate::proto::mupdate::{self as proto, CmdError, Kind};
use crate::server::listen::Io;
use crate::server::Conn;
use crate::store::murder::{self, Change, Entry, MurderDb, State};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Notify};

/// Cyrus's inactivity timeout (180 minutes).
const IDLE: Duration = Duration::from_secs(180 * 60);
/// A slave answers a kick or a streaming NOOP within this, master or not.
const KICK_WAIT: Duration = Duration::from_secs(10);

/// `mupdate_config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    Standard,
    Unified,
    Replicated,
}

/// A client's wish to see the master's latest state (a replica sends the
/// master a NOOP and answers when its OK is back).
pub type Kick = oneshot::Sender<()>;

pub struct Mupdate {
    pub conf: ImapdConf,
    pub log: Arc<Logger>,
    pub servername: String,
    pub master: bool,
    pub topology: Topology,
    pub db: Arc<MurderDb>,
    tls: Option<Arc<rustls::ServerConfig>>,
    streams: Mutex<Vec<Weak<Stream>>>,
    conns: AtomicUsize,
    max_conns: usize,
    /// A replica's link to its master.
    kick: Option<mpsc::Sender<Kick>>,
    /// GSSAPI is offered (a keytab, `sasl_mech_list`).
    gssapi: bool,
}

/// One UPDATE stream: the names changed since its last flush.
struct Stream {
    servers: Option<Vec<String>>,
    pending: Mutex<BTreeSet<String>>,
    wake: Notify,
}

impl Mupdate {
    /// Queues changes for the UPDATE streams that want them (the old or
    /// the new server is one a PARTIAL-UPDATE named).  Called under the
    /// table's write lock, so a stream sees each change after its dump.
    fn queue(&self, done: &[(Change, Option<Entry>)]) {
        let mut streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        streams.retain(|w| w.strong_count() > 0);
        for s in streams.iter().filter_map(Weak::upgrade) {
            let mut any = false;
            {
                let mut p = s.pending.lock().unwrap_or_else(|p| p.into_inner());
                for ((name, new), old) in done {
                    let wanted = match &s.servers {
                        None => true,
                        Some(list) => [new.as_ref(), old.as_ref()]
                            .iter()
                            .flatten()
                            .any(|e| list.iter().any(|x| x == e.server())),
                    };
                    if wanted {
                        p.insert(name.clone());
                        any = true;
                    }
                }
            }
            if any {
                s.wake.notify_one();
            }
        }
    }

    /// Applies changes durably and queues them for the streams.
    /// Blocking.
    pub fn apply(&self, changes: &[Change]) -> Result<(), murder::MurderDbError> {
        self.db.apply(changes, |d| self.queue(d))
    }

    /// Asks the replica's master link for a round trip; returns at once
    /// on a master (nothing to wait for).
    async fn kick(&self) {
        let Some(k) = &self.kick else {
            return;
        };
        let (tx, rx) = oneshot::channel();
        if k.send(tx).await.is_ok() {
            let _ = tokio::time::timeout(KICK_WAIT, rx).await;
        }
    }

    /// The SASL mechanisms offered: PLAIN and LOGIN when passwords may be
    /// sent (TLS, or `allowplaintext`), filtered by `sasl_mech_list`;
    /// none when the session's TLS strength `ssf` is below
    /// `sasl_minimum_layer`.
    fn mechs(&self, tls: bool, ssf: u32) -> Vec<&'static str> {
        let mut out = Vec::new();
        if !super::cyrus::sasl_layer_ok(&self.conf, ssf) {
            return out;
        }
        if self.gssapi {
            out.push("GSSAPI");
        }
        if !tls && !self.conf.get_switch("allowplaintext") {
            return out;
        }
        let list = self.conf.overflow("sasl_mech_list").map(|l| l.to_ascii_uppercase());
        out.extend(
            ["PLAIN", "LOGIN"]
                .into_iter()
                .filter(|m| list.as_ref().is_none_or(|l| l.split_whitespace().any(|x| x == *m))),
        );
        out
    }

    fn is_admin(&self, user: &str) -> bool {
        self.conf.get("admins").unwrap_or("").split_whitespace().any(|a| a == user)
    }
}

impl crate::server::Service for Mupdate {
    async fn serve(self: Arc<Self>, conn: Conn) {
        let peer = conn.peer();
        let mut io = conn.into_io();
        let n = self.conns.fetch_add(1, Ordering::SeqCst);
        if self.max_conns > 0 && n >= self.max_conns {
            use tokio::io::AsyncWriteExt;
            let _ = tokio::time::timeout(Duration::from_secs(5), io.write_all(b"* BYE \"Server Unable\"\r\n")).await;
            self.log.error("Server too busy, dropping connection.");
            self.conns.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        let (r, w) = tokio::io::split(io);
        let mut s = Session {
            m: self.clone(),
            input: Input::new(r),
            w: Output::new(w),
            host: crate::server::peer::ClientHost::new(&peer),
            user: None,
            tls: false,
            ssf: 0,
            compressed: false,
            stream: None,
            done: false,
        };
        let res = s.run().await;
        if let Err(ReadError::Timeout) = res {
            let _ = s.w.write_all(b"* BYE \"idle for too long\"\r\n").await;
            let _ = s.w.flush().await;
        }
        self.conns.fetch_sub(1, Ordering::SeqCst);
    }
}

type Rd = tokio::io::ReadHalf<Box<dyn Io>>;
type Wr = tokio::io::WriteHalf<Box<dyn Io>>;
type Res = Result<(), ReadError>;

struct Session {
    m: Arc<Mupdate>,
    input: Input<Rd>,
    w: Output<Wr>,
    /// Cyrus's client host text, `name [addr]`, for log lines (looked
    /// up at first use: a slot of `mupdate_connections_max` is not held
    /// for a lookup).
    host: crate::server::peer::ClientHost,
    user: Option<String>,
    tls: bool,
    /// Its strength for `sasl_minimum_layer` (0 without TLS).
    ssf: u32,
    compressed: bool,
    /// UPDATE is running: its tag and stream.
    stream: Option<(String, Arc<Stream>)>,
    done: bool,
}

impl Session {
    async fn out(&mut self, b: &[u8]) -> Res {
        self.w.write_all(b).await?;
        Ok(())
    }

    async fn tagged(&mut self, tag: &str, text: &str) -> Res {
        self.out(format!("{tag} {text}\r\n").as_bytes()).await
    }

    async fn banner(&mut self) -> Res {
        let m = self.m.clone();
        let mechs = m.mechs(self.tls, self.ssf);
        let mut b = if mechs.is_empty() {
            "* AUTH\r\n".to_string()
        } else {
            format!("* AUTH \"{}\"\r\n", mechs.join("\" \""))
        };
        if m.tls.is_some() && !self.tls {
            b.push_str("* STARTTLS\r\n");
        }
        if !self.compressed {
            b.push_str("* COMPRESS \"DEFLATE\"\r\n");
        }
        b.push_str("* PARTIAL-UPDATE\r\n");
        let what = if m.master {
            "(master)".to_string()
        } else {
            format!("mupdate://{}", m.conf.get("mupdate_server").unwrap_or(""))
        };
        b.push_str(&format!(
            "* OK MUPDATE \"{}\" \"Cyrus IMAP\" \"{}\" \"{what}\"\r\n",
            m.servername,
            super::lmtpd::CYRUS_VERSION
        ));
        self.out(b.as_bytes()).await?;
        self.w.flush().await?;
        Ok(())
    }

    async fn run(&mut self) -> Res {
        self.banner().await?;
        while !self.done {
            let cmd = if self.stream.is_some() {
                match self.streaming_line().await? {
                    Some(c) => c,
                    None => continue,
                }
            } else {
                self.w.flush().await?;
                self.input.shrink();
                match self
                    .input
                    .command(&mut self.w, &CommandLimits::fixed(MAX_SMALL_LITERAL), IDLE)
                    .await?
                {
                    Frame::Command(c) => c,
                    Frame::LineTooLong => {
                        self.out(b"* BAD \"Line too long\"\r\n").await?;
                        continue;
                    }
                    Frame::LiteralTooBig(t) => {
                        self.tagged(&t.tag, "BAD \"Literal too large\"").await?;
                        // One sent unasked is on its way: the session ends,
                        // as Cyrus's does.
                        self.done = t.nonsync;
                        continue;
                    }
                    Frame::Fatal(why) => {
                        self.out(format!("* BYE \"{why}\"\r\n").as_bytes()).await?;
                        self.done = true;
                        continue;
                    }
                }
            };
            self.command(&cmd).await?;
        }
        self.w.flush().await?;
        Ok(())
    }

    /// While streaming: the next command line, or None after sending the
    /// updates that came in meanwhile.
    async fn streaming_line(&mut self) -> Result<Option<Vec<u8>>, ReadError> {
        self.w.flush().await?;
        let Some((_, s)) = self.stream.clone() else {
            return Ok(None);
        };
        tokio::select! {
            l = self.input.line(MAX_LINE, IDLE) => match l? {
                Some(l) => Ok(Some(l)),
                None => {
                    self.out(b"* BAD \"Line too long\"\r\n").await?;
                    Ok(None)
                }
            },
            _ = s.wake.notified() => {
                self.send_updates().await?;
                Ok(None)
            }
        }
    }

    /// Sends each queued name's current state (DELETE if it is gone).
    async fn send_updates(&mut self) -> Res {
        let Some((tag, s)) = self.stream.clone() else {
            return Ok(());
        };
        let names = std::mem::take(&mut *s.pending.lock().unwrap_or_else(|p| p.into_inner()));
        let mut out = Vec::new();
        for name in names {
            match self.m.db.get(&name) {
                Some(e) => render(&mut out, &tag, &name, &e),
                None => proto::render_delete(&mut out, &tag, &name),
            }
            if out.len() > 65536 {
                self.out(&out).await?;
                out.clear();
            }
        }
        self.out(&out).await
    }

    async fn command(&mut self, raw: &[u8]) -> Res {
        let p = proto::parse_command(raw);
        let tag = p.tag.clone();
        if p.cmd == Err(CmdError::NeedCommand) {
            return self.out(b"* BAD \"Need command\"\r\n").await;
        }
        if p.cmd == Err(CmdError::NullCommand) {
            return self.tagged(&tag, CmdError::NullCommand.text()).await;
        }
        if self.user.is_none() && proto::needs_login(&p.word) {
            return self.tagged(&tag, "BAD \"Please login first\"").await;
        }
        // STARTTLS exists only where TLS is configured.
        if p.word == "Starttls" && self.m.tls.is_none() {
            return self.tagged(&tag, CmdError::Unrecognized.text()).await;
        }
        let kind = match p.cmd {
            Ok(k) => k,
            Err(e) => return self.tagged(&tag, e.text()).await,
        };
        let streaming = self.stream.is_some();
        match kind {
            Kind::Noop => {
                if streaming {
                    self.m.kick().await;
                    self.send_updates().await?;
                }
                return self.tagged(&tag, "OK \"Noop done\"").await;
            }
            Kind::Logout => {
                self.done = true;
                return self.tagged(&tag, "OK \"bye-bye\"").await;
            }
            _ if streaming => return self.tagged(&tag, "BAD \"not legal when streaming\"").await,
            _ => {}
        }
        match kind {
            Kind::Authenticate { mech, initial } => {
                if self.user.is_some() {
                    return self.tagged(&tag, "BAD \"already authenticated\"").await;
                }
                self.authenticate(&tag, &mech, initial).await
            }
            Kind::Starttls => self.starttls(&tag).await,
            Kind::Compress { alg } => self.compress(&tag, &alg).await,
            Kind::Find { name } => {
                let mut out = Vec::new();
                if let Some(e) = self.m.db.get(&name) {
                    render(&mut out, &tag, &name, &e);
                }
                out.extend_from_slice(format!("{tag} OK \"Search completed\"\r\n").as_bytes());
                self.out(&out).await
            }
            Kind::List { prefix } => {
                self.dump(&tag, |_, e| prefix.as_deref().is_none_or(|p| e.location.starts_with(p)), None)
                    .await?;
                self.tagged(&tag, "OK \"list complete\"").await
            }
            Kind::Update { servers } => {
                let servers = if servers.is_empty() { None } else { Some(servers) };
                let s = Arc::new(Stream {
                    servers: servers.clone(),
                    pending: Mutex::new(BTreeSet::new()),
                    wake: Notify::new(),
                });
                let want = |_: &str, e: &Entry| servers.as_ref().is_none_or(|l| l.iter().any(|x| x == e.server()));
                self.dump(&tag, want, Some(&s)).await?;
                self.stream = Some((tag.clone(), s));
                self.tagged(&tag, "OK \"streaming starts\"").await
            }
            Kind::Activate { .. } | Kind::Reserve { .. } | Kind::Deactivate { .. } | Kind::Delete { .. } => {
                if !self.m.master {
                    return self.tagged(&tag, "BAD \"read-only session\"").await;
                }
                let m = self.m.clone();
                let user = self.user.clone().unwrap_or_default();
                let reply = tokio::task::spawn_blocking(move || set(&m, &user, kind))
                    .await
                    .unwrap_or_else(|_| "NO \"Server error\"".to_string());
                self.tagged(&tag, &reply).await
            }
            Kind::Noop | Kind::Logout => Ok(()),
        }
    }

    /// Writes every entry `want` accepts, under one read lock; `register`
    /// joins the UPDATE streams before the lock is released, so that no
    /// change falls between the dump and the stream.
    async fn dump(&mut self, tag: &str, want: impl Fn(&str, &Entry) -> bool, register: Option<&Arc<Stream>>) -> Res {
        let chunks: Vec<Vec<u8>> = {
            let map = self.m.db.read();
            if let Some(s) = register {
                self.m.streams.lock().unwrap_or_else(|p| p.into_inner()).push(Arc::downgrade(s));
            }
            let mut chunks = Vec::new();
            let mut out = Vec::new();
            for (name, e) in map.iter() {
                if want(name, e) {
                    render(&mut out, tag, name, e);
                    if out.len() >= 256 * 1024 {
                        chunks.push(std::mem::take(&mut out));
                    }
                }
            }
            chunks.push(out);
            chunks
        };
        for c in chunks {
            self.out(&c).await?;
        }
        Ok(())
    }

    async fn sasl_line(&mut self) -> Result<Option<Vec<u8>>, ReadError> {
        self.w.flush().await?;
        self.input.line(MAX_LINE, Duration::from_secs(180)).await
    }

    /// AUTHENTICATE with challenges as bare base64 lines (no `+ `), the
    /// way Cyrus's mupdate runs SASL.  Only `admins` may log in.
    async fn authenticate(&mut self, tag: &str, mech: &str, initial: Option<Vec<u8>>) -> Res {
        if !self.m.mechs(self.tls, self.ssf).contains(&mech) {
            return self.tagged(tag, "NO \"no mechanism available\"").await;
        }
        let decode = |b: &[u8]| -> Option<Vec<u8>> {
            if b == b"=" {
                Some(Vec::new())
            } else {
                crate::util::base64_decode(&String::from_utf8_lossy(b))
            }
        };
        #[cfg(feature = "krb5")]
        if mech == "GSSAPI" {
            return self.authenticate_gssapi(tag, initial).await;
        }
        let (authzid, authcid, password) = if mech == "PLAIN" {
            let resp = match initial {
                Some(r) => r,
                None => {
                    self.out(b"\r\n").await?;
                    self.sasl_line().await?.unwrap_or_default()
                }
            };
            if resp == b"*" {
                return self.tagged(tag, "NO Client canceled authentication").await;
            }
            let Some(raw) = decode(&resp) else {
                return self.tagged(tag, "NO \"bad protocol / cancel\"").await;
            };
            let parts: Vec<&[u8]> = raw.split(|&c| c == 0).collect();
            if parts.len() != 3 || parts[1].is_empty() {
                return self.tagged(tag, "NO \"bad protocol / cancel\"").await;
            }
            let cid = String::from_utf8_lossy(parts[1]).into_owned();
            let zid = String::from_utf8_lossy(parts[0]).into_owned();
            (zid, cid, parts[2].to_vec())
        } else {
            let user = match initial {
                Some(r) => Some(r),
                None => {
                    self.out(b"VXNlcm5hbWU6\r\n").await?;
                    self.sasl_line().await?
                }
            };
            if user.as_deref() == Some(b"*") {
                return self.tagged(tag, "NO Client canceled authentication").await;
            }
            self.out(b"UGFzc3dvcmQ6\r\n").await?;
            let pass = self.sasl_line().await?;
            if pass.as_deref() == Some(b"*") {
                return self.tagged(tag, "NO Client canceled authentication").await;
            }
            let (Some(u), Some(p)) = (user.as_deref().and_then(decode), pass.as_deref().and_then(decode)) else {
                return self.tagged(tag, "NO \"bad protocol / cancel\"").await;
            };
            (String::new(), String::from_utf8_lossy(&u).into_owned(), p)
        };
        let (authzid, authcid) = (
            super::cyrus::canon_userid(&self.m.conf, &authzid),
            super::cyrus::canon_userid(&self.m.conf, &authcid),
        );
        let user = if authzid.is_empty() { authcid.clone() } else { authzid };
        let ok = super::cyrus::check_password(&self.m.conf, "mupdate", &authcid, &Secret::new(password)).await;
        let why = match ok {
            Ok(true) if self.m.is_admin(&authcid) => None,
            Ok(true) => Some(("authentication failure", "only admins may authenticate".to_string())),
            Ok(false) => Some(("authentication failure", "checkpass failed".to_string())),
            Err(e) => Some(("generic failure", e)),
        };
        if let Some((text, detail)) = why {
            let host = self.host.get().await;
            self.m.log.info(&format!("badlogin: {host} {mech} [{authcid}] {detail}"));
            tokio::time::sleep(self.m.conf.failed_login_pause()).await;
            return self.tagged(tag, &format!("NO \"{text}\"")).await;
        }
        let host = self.host.get().await;
        self.m.log.info(&format!(
            "login: {host} {user} {mech}{} User logged in",
            if self.tls { "+TLS" } else { "" }
        ));
        self.user = Some(user);
        self.tagged(tag, "OK \"Authenticated\"").await
    }

    /// AUTHENTICATE "GSSAPI": tokens as bare base64 lines, like the other
    /// mechanisms here; the principal (realm mapped as Cyrus does) must be
    /// one of `admins`.
    #[cfg(feature = "krb5")]
    async fn authenticate_gssapi(&mut self, tag: &str, initial: Option<Vec<u8>>) -> Res {
        use crate::auth::gssapi::{Server, Step};
        let mut server = Server::new("mupdate");
        let mut line = match initial {
            Some(r) => r,
            None => {
                self.out(b"\r\n").await?;
                self.sasl_line().await?.unwrap_or_default()
            }
        };
        let failure = loop {
            if line == b"*" {
                return self.tagged(tag, "NO Client canceled authentication").await;
            }
            let token = if line == b"=" || line.is_empty() {
                Some(Vec::new())
            } else {
                crate::util::base64_decode(&String::from_utf8_lossy(&line))
            };
            let Some(token) = token else {
                return self.tagged(tag, "NO \"bad protocol / cancel\"").await;
            };
            match server.step(&token) {
                Ok(Step::Send(c)) => {
                    self.out(format!("{}\r\n", crate::util::base64_encode(&c)).as_bytes()).await?;
                    line = self.sasl_line().await?.unwrap_or_default();
                }
                Ok(Step::Done(a)) => match super::cyrus::gssapi_user(&self.m.conf, &a.principal) {
                    Ok(user) if !self.m.is_admin(&user) => {
                        break (format!("[{user}] only admins may authenticate"), "authentication failure")
                    }
                    Ok(user) => {
                        let who = if a.authzid.is_empty() { user.clone() } else { a.authzid };
                        if who != user {
                            break (format!("[{user}] may not act as {who}"), "authorization failure");
                        }
                        let host = self.host.get().await;
                        self.m.log.info(&format!(
                            "login: {host} {who} GSSAPI{} User logged in",
                            if self.tls { "+TLS" } else { "" }
                        ));
                        self.user = Some(who);
                        return self.tagged(tag, "OK \"Authenticated\"").await;
                    }
                    Err(e) => break (e, "authentication failure"),
                },
                Err(e) => break (e, "generic failure"),
            }
        };
        let host = self.host.get().await;
        self.m.log.info(&format!("badlogin: {host} GSSAPI {}", failure.0));
        self.tagged(tag, &format!("NO \"{}\"", failure.1)).await
    }

    async fn starttls(&mut self, tag: &str) -> Res {
        let Some(acc) = self.m.tls.clone() else {
            return self.tagged(tag, CmdError::Unrecognized.text()).await;
        };
        if self.user.is_some() {
            return self.tagged(tag, "BAD Can't Starttls after authentication").await;
        }
        if self.compressed {
            return self.tagged(tag, "BAD Can't Starttls after Compress").await;
        }
        if self.tls {
            return self.tagged(tag, "BAD Already did a successful Starttls").await;
        }
        self.tagged(tag, "OK Begin TLS negotiation now").await?;
        self.w.flush().await?;
        match super::imapd::io::start_tls(&mut self.input, &mut self.w, acc).await {
            Ok((summary, ssf)) => {
                self.m.log.info(&format!("starttls: {summary}"));
                self.tls = true;
                self.ssf = ssf;
                self.banner().await
            }
            Err(e) => {
                let host = self.host.get().await;
                self.m.log.info(&format!("TLS negotiation failed: {host}: {e}"));
                self.done = true;
                Err(ReadError::Eof)
            }
        }
    }

    async fn compress(&mut self, tag: &str, alg: &str) -> Res {
        if self.compressed {
            return self.tagged(tag, "BAD DEFLATE active via COMPRESS").await;
        }
        if !alg.eq_ignore_ascii_case("DEFLATE") {
            return self.tagged(tag, &format!("NO Unknown COMPRESS algorithm: {alg}")).await;
        }
        self.tagged(tag, &format!("OK {alg} active")).await?;
        self.w.flush().await?;
        super::imapd::io::start_deflate(&mut self.input, &mut self.w);
        self.compressed = true;
        Ok(())
    }
}

fn render(out: &mut Vec<u8>, tag: &str, name: &str, e: &Entry) {
    match e.state {
        State::Active => proto::render_mailbox(out, tag, name, &e.location, &e.acl),
        State::Reserved => proto::render_reserve(out, tag, name, &e.location),
    }
}

/// ACTIVATE / RESERVE / DEACTIVATE / DELETE on the master, with Cyrus's
/// rules and replies.  Blocking.
fn set(m: &Mupdate, user: &str, kind: Kind) -> String {
    let standard = m.topology == Topology::Standard;
    let (name, new) = {
        let cur = |n: &str| m.db.get(n);
        match kind {
            Kind::Activate { name, location, acl } => (
                name,
                Some(Entry {
                    state: State::Active,
                    location,
                    acl,
                }),
            ),
            Kind::Reserve { name, location } => {
                if let Some(e) = cur(&name) {
                    // A replicated back end re-reserving at the same
                    // location is fine; another server's name is not.
                    if standard && e.location != location {
                        return "NO \"mailbox already exists\"".into();
                    }
                }
                (
                    name,
                    Some(Entry {
                        state: State::Reserved,
                        location,
                        acl: String::new(),
                    }),
                )
            }
            Kind::Deactivate { name, location } => match cur(&name) {
                None => return "NO \"mailbox doesn't exist\"".into(),
                Some(e) if e.state != State::Active && standard && e.location != location => {
                    return "NO \"mailbox not currently active\"".into()
                }
                Some(_) => (
                    name,
                    Some(Entry {
                        state: State::Reserved,
                        location,
                        acl: String::new(),
                    }),
                ),
            },
            Kind::Delete { name } => match cur(&name) {
                None if standard => return "NO \"mailbox doesn't exist\"".into(),
                None => return "OK \"done\"".into(),
                Some(_) => (name, None),
            },
            _ => return "BAD \"Unrecognized command\"".into(),
        }
    };
    match m.apply(&[(name.clone(), new)]) {
        Ok(()) => "OK \"done\"".into(),
        Err(e) => {
            m.log.error(&format!("mupdate: {user}: cannot record {name}: {e}"));
            "NO \"Server error\"".into()
        }
    }
}

/// The kick socket `{configdirectory}/socket/mupdate.target`: each
/// connection is answered `ok` once the replica has caught up with the
/// master (a master answers at once).
async fn serve_kicks(m: Arc<Mupdate>, path: std::path::PathBuf) {
    use tokio::io::AsyncWriteExt;
    if let Some(d) = path.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    let _ = std::fs::remove_file(&path);
    let l = match tokio::net::UnixListener::bind(&path) {
        Ok(l) => l,
        Err(e) => {
            m.log.error(&format!("cannot bind kick socket {}: {e}", path.display()));
            return;
        }
    };
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777));
    }
    loop {
        let Ok((mut s, _)) = l.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let m = m.clone();
        tokio::spawn(async move {
            m.kick().await;
            let _ = tokio::time::timeout(Duration::from_secs(5), s.write_all(b"ok")).await;
        });
    }
}

struct Args {
    config: String,
    master: bool,
    auto: bool,
    listen: Vec<String>,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    use crate::util::getopt::Opt;
    let (opts, _) = crate::util::getopt::getopt(args, "C:L:U:T:D:ma").map_err(|e| format!("{e:?}"))?;
    let mut a = Args {
        config: std::env::var("CYRUS_PREFIX")
            .map(|p| format!("{p}/etc/imapd.conf"))
            .unwrap_or_else(|_| "/etc/imapd.conf".into()),
        master: false,
        auto: false,
        listen: Vec::new(),
    };
    for o in opts {
        match o {
            Opt::Arg('C', v) => a.config = v,
            Opt::Arg('L', v) => a.listen.push(v),
            Opt::Flag('m') => a.master = true,
            Opt::Flag('a') => a.auto = true,
            _ => {}
        }
    }
    Ok(a)
}

/// `-a`: whether `mupdate_server` names an address of this host (not
/// loopback).
fn is_local_server(server: &str) -> bool {
    use std::net::ToSocketAddrs;
    let (host, _) = client::split_server(server, 3905);
    let Ok(addrs) = (host.as_str(), 0).to_socket_addrs() else {
        return false;
    };
    let addrs: Vec<std::net::IpAddr> = addrs.map(|a| a.ip()).filter(|ip| !ip.is_loopback()).collect();
    let Ok(ifs) = nix::ifaddrs::getifaddrs() else {
        return false;
    };
    for i in ifs {
        let Some(a) = i.address else { continue };
        let ip = a
            .as_sockaddr_in()
            .map(|s| std::net::IpAddr::V4(s.ip()))
            .or_else(|| a.as_sockaddr_in6().map(|s| std::net::IpAddr::V6(s.ip())));
        if ip.is_some_and(|ip| addrs.contains(&ip)) {
            return true;
        }
    }
    false
}

/// Cyrus's sanity rules for the worker options (fatal otherwise).
fn check_workers(conf: &ImapdConf) -> Result<(), String> {
    let g = |n: &str| conf.get_int(n);
    let (max, start, minspare, maxspare) = (
        g("mupdate_workers_max"),
        g("mupdate_workers_start"),
        g("mupdate_workers_minspare"),
        g("mupdate_workers_maxspare"),
    );
    if max < minspare {
        return Err("Maximum total worker threads is less than minimum spare worker threads".into());
    }
    if start < minspare {
        return Err("Starting worker threads is less than minimum spare worker threads".into());
    }
    if maxspare < start {
        return Err("Maximum spare worker threads is less than starting worker threads".into());
    }
    if max < start {
        return Err("Maximum total worker threads is less than starting worker threads".into());
    }
    Ok(())
}

pub fn main(args: &[String]) -> i32 {
    use crate::util::exit;
    let a = match parse_args(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("mupdate: {e}");
            return exit::USAGE;
        }
    };
    let ident = std::env::var("CYRUS_SERVICE").unwrap_or_else(|_| "mupdate".into());
    let conf = match ImapdConf::load(&a.config, Some(&ident)) {
        Ok(c) => {
            c.apply_umask();
            c
        }
        Err(e) => {
            eprintln!("mupdate: fatal: {e}");
            return exit::CONFIG;
        }
    };
    let log = match Logger::for_cyrus(&conf, &ident) {
        Ok(l) => Arc::new(l),
        Err(e) => {
            eprintln!("mupdate: fatal: {e}");
            return exit::CONFIG;
        }
    };
    crate::log::install_panic_hook(log.clone());
    let fatal = |msg: &str, code: i32| {
        log.fatal(msg);
        eprintln!("mupdate: fatal: {msg}");
        code
    };
    let topology = match conf.get("mupdate_config").unwrap_or("standard") {
        "unified" => Topology::Unified,
        "replicated" => Topology::Replicated,
        _ => Topology::Standard,
    };
    let server = conf
        .get("mupdate_server")
        .filter(|s| !s.is_empty() && *s != "(null)")
        .map(str::to_string);
    let master = a.master || (a.auto && server.as_deref().is_some_and(is_local_server));
    if master && topology == Topology::Unified {
        return fatal("cannot run mupdate master on a unified server", exit::USAGE);
    }
    if !master && server.is_none() {
        return fatal("mupdate server was not specified for slave", exit::CONFIG);
    }
    if let Err(e) = check_workers(&conf) {
        return fatal(&e, exit::SOFTWARE);
    }
    let configdir = conf.path_option("configdirectory").unwrap_or_default();
    if configdir.is_empty() || configdir == "(null)" {
        return fatal(&format!("{}: configdirectory is not set", a.config), exit::CONFIG);
    }
    let configdir = std::path::PathBuf::from(configdir);
    let db = match MurderDb::open(&configdir.join(murder::FILE)) {
        Ok(d) => Arc::new(d),
        Err(e) => return fatal(&format!("cannot open the mailbox table: {e}"), exit::TEMPFAIL),
    };
    let tls = match super::cyrus::tls_config(&conf) {
        Ok(t) => t,
        Err(e) => return fatal(&e, exit::CONFIG),
    };
    let (kick_tx, kick_rx) = mpsc::channel::<Kick>(64);
    let max_conns = usize::try_from(conf.get_int("mupdate_connections_max")).unwrap_or(128);
    let m = Arc::new(Mupdate {
        servername: super::cyrus::servername(&conf),
        log: log.clone(),
        master,
        topology,
        db,
        tls,
        streams: Mutex::new(Vec::new()),
        conns: AtomicUsize::new(0),
        max_conns,
        kick: (!master).then_some(kick_tx),
        gssapi: super::cyrus::gssapi_setup(&conf, &log),
        conf,
    });
    let specs = if a.listen.is_empty() {
        vec![m.conf.get_int("mupdate_port").to_string()]
    } else {
        a.listen.clone()
    };
    let m2 = m.clone();
    let start = move || {
        tokio::spawn(serve_kicks(m2.clone(), configdir.join("socket/mupdate.target")));
        if !master {
            tokio::spawn(slave::run(m2.clone(), kick_rx));
        }
        m2.log.info(&format!(
            "mupdate: started as {} with {} mailboxes",
            if master { "master" } else { "replica" },
            m2.db.len()
        ));
    };
    // The connection limit is mupdate_connections_max's, answered with
    // Cyrus's BYE in `serve`.
    let limits = crate::server::Limits {
        max_conns: 0,
        keepalive: super::cyrus::keepalive(&m.conf),
        ..Default::default()
    };
    super::cyrus::serve_until_term("mupdate", &log, &specs, m, limits, start, false)
}
