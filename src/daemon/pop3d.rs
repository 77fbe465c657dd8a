//! pop3d: POP3 (RFC 1939) over the store with Cyrus pop3d's replies: CAPA
//! (RFC 2449), STLS (RFC 2595), USER/PASS and AUTH PLAIN/LOGIN (RFC 5034)
//! through saslauthd, STAT LIST RETR TOP DELE RSET NOOP UIDL QUIT.  The
//! maildrop is the user's INBOX as it was at login; UIDL is Cyrus's
//! `uidvalidity.uid`, stable across sessions and IMAP activity.  QUIT
//! expunges what was DELEted; a message expunged meanwhile by an IMAP
//! session answers `-ERR` instead of breaking the session.
//! `popminpoll` (with `poppollpadding`), `poptimeout`, `popuseimapflags`, `popuseacl`,
//! `popexpiretime`, `allowplaintext`, `autocreate_quota` as in Cyrus.

use super::cyrus::Ctx;
use crate::mail::Secret;
use crate::server::listen::Io;
use crate::server::Conn;
use crate::store::{FlagOp, StoreError, FLAG_DELETED, FLAG_SEEN};
use crate::util::lines::{Line, LineBuffer};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufWriter, ReadHalf, WriteHalf};

/// Longest command line (RFC 2449 allows 255 octets; AUTH lines more).
const MAX_COMMAND: usize = 8192;

pub struct Pop3d {
    pub ctx: Arc<Ctx>,
    pub implicit_tls: bool,
}

/// One message of the maildrop, fixed at login.
struct Msg {
    uid: u32,
    size: u64,
    deleted: bool,
    /// Expunged by another session since the drop was read.
    gone: bool,
}

struct Drop_ {
    inbox: String,
    /// The mailbox's directory in its partition: found once, not at
    /// every RETR.
    dir: std::path::PathBuf,
    uidvalidity: u32,
    msgs: Vec<Msg>,
    /// The owner database's WAL (mtime, size) when the drop was read: while
    /// it is unchanged no message can have been expunged since.
    wal: Option<(i128, u64)>,
    /// That WAL, watched.
    watch: crate::store::WalWatch,
    /// How far message files were read ahead of RETR.
    ahead: crate::store::ReadAhead,
}

struct Session {
    ctx: Arc<Ctx>,
    r: ReadHalf<Box<dyn Io>>,
    w: BufWriter<WriteHalf<Box<dyn Io>>>,
    buf: LineBuffer,
    queue: VecDeque<Line>,
    tls: bool,
    /// Its strength for `sasl_minimum_layer` (0 without TLS).
    ssf: u32,
    /// The client's address ("unix" for a UNIX socket).
    peer: String,
    /// Cyrus's client host text, `name [addr]`, for log lines.
    host: crate::server::peer::ClientHost,
    sid: String,
    /// The name given by USER, waiting for PASS.
    user: Option<String>,
    /// `popsubfolders`: the folder named in the login (`u7+Lists`),
    /// served in place of INBOX.
    subfolder: Option<String>,
    /// Logged in.
    txn: Option<Txn>,
    /// poptimeout.
    idle: Duration,
}

/// poptimeout, in minutes, floored at 10 as Cyrus does.
fn idle(ctx: &Ctx) -> Duration {
    let m = ctx
        .conf
        .get("poptimeout")
        .and_then(|v| crate::config::cyrus::options::parse_duration(v, 'm'))
        .unwrap_or(600)
        .max(600);
    Duration::from_secs(m as u64)
}

type IoResult = std::io::Result<()>;

impl crate::server::Service for Pop3d {
    async fn serve(self: Arc<Self>, conn: Conn) {
        let peer = conn.peer();
        let mut io = conn.into_io();
        let mut ssf = 0;
        if self.implicit_tls {
            let Some((t, bits)) = super::cyrus::implicit_tls(&self.ctx, io, &peer, "pop3s").await else {
                return;
            };
            (io, ssf) = (t, bits);
        }
        let (r, w) = tokio::io::split(io);
        let mut s = Session {
            ctx: self.ctx.clone(),
            r,
            w: BufWriter::new(w),
            buf: LineBuffer::new(MAX_COMMAND),
            queue: VecDeque::new(),
            tls: self.implicit_tls,
            ssf,
            host: crate::server::peer::ClientHost::new(&peer),
            peer,
            sid: self.ctx.session_id(),
            user: None,
            subfolder: None,
            txn: None,
            idle: idle(&self.ctx),
        };
        match s.run().await {
            Ok(Some(slot)) => s.into_thread(slot).await,
            Ok(None) => {}
            Err(e) => {
                if e.kind() == std::io::ErrorKind::TimedOut {
                    let _ = s.reply("-ERR [SYS/TEMP] autologout; idle for too long").await;
                    let _ = s.w.flush().await;
                }
            }
        }
    }
}

/// The reply to RETR or TOP, appended to `out`: `+OK Message follows`,
/// then the message (or its first lines) byte-stuffed as RFC 1939 says:
/// CRLF line ends, a leading '.' doubled, then the terminating ".".  One
/// buffer, so that the reply leaves in one send.
fn stuffed(data: &[u8], body_lines: Option<usize>, out: &mut Vec<u8>) {
    const OK: &[u8] = b"+OK Message follows\r\n";
    out.reserve(OK.len() + data.len() + data.len() / 50 + 8);
    out.extend_from_slice(OK);
    // A whole message already in POP3's form (the store keeps CRLF line
    // ends): one copy.
    if body_lines.is_none() && pop_ready(data) {
        out.extend_from_slice(data);
        out.extend_from_slice(b".\r\n");
        return;
    }
    let mut in_body = false;
    let mut body_seen = 0usize;
    let mut rest = data;
    while !rest.is_empty() {
        let (line, next) = match memchr::memchr(b'\n', rest) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if in_body {
            if body_lines.is_some_and(|n| body_seen >= n) {
                break;
            }
            body_seen += 1;
        }
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
        if !in_body && line.is_empty() {
            in_body = true;
        }
        rest = next;
    }
    out.extend_from_slice(b".\r\n");
}

/// Whether `data` needs no stuffing: every line ends in CRLF and none
/// starts with '.'.
fn pop_ready(data: &[u8]) -> bool {
    if data.is_empty() {
        return true;
    }
    data[0] != b'.'
        && data.ends_with(b"\r\n")
        && memchr::memchr_iter(b'\n', data).all(|i| i > 0 && data[i - 1] == b'\r' && data.get(i + 1) != Some(&b'.'))
}

impl Session {
    async fn reply(&mut self, text: &str) -> IoResult {
        self.w.write_all(text.as_bytes()).await?;
        self.w.write_all(b"\r\n").await
    }

    async fn next_line(&mut self) -> std::io::Result<Option<Line>> {
        if self.queue.is_empty() {
            self.w.flush().await?;
        }
        crate::server::read_line(&mut self.r, &mut self.buf, &mut self.queue, self.idle).await
    }

    fn plaintext_ok(&self) -> bool {
        self.tls || self.ctx.conf.get_switch("allowplaintext")
    }

    /// `tls_required`: no authentication of any kind before TLS.
    fn tls_required(&self) -> bool {
        !self.tls && self.ctx.conf.get_switch("tls_required")
    }

    /// The session until it ends (None), or until a login on a plain
    /// connection while a thread's place is free (it goes on on a thread
    /// of its own).
    async fn run(&mut self) -> std::io::Result<Option<ThreadSlot>> {
        let host = self.ctx.servername.clone();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut rnd = [0u8; 8];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut rnd);
        self.reply(&format!(
            "+OK {}server ready <{}.{now}@{host}>",
            self.ctx.server_info.greeting(&host, "POP3"),
            u64::from_le_bytes(rnd)
        ))
        .await?;
        loop {
            let line = match self.next_line().await? {
                None => return Ok(None),
                Some(Line::TooLong) => {
                    self.reply("-ERR Line too long").await?;
                    continue;
                }
                Some(Line::Complete(l)) => l,
            };
            let (cmd, arg) = split_command(&line);
            if self.txn.is_none() {
                if !self.unauthenticated(&cmd, arg).await? {
                    return Ok(None);
                }
                if self.txn.is_some() && !self.tls {
                    if let Some(slot) = ThreadSlot::take() {
                        return Ok(Some(slot));
                    }
                }
            } else if !self.transaction(&cmd, arg).await? {
                return Ok(None);
            }
        }
    }

    /// AUTHORIZATION state; false ends the session.
    async fn unauthenticated(&mut self, cmd: &str, arg: Option<String>) -> std::io::Result<bool> {
        match cmd {
            "QUIT" => {
                self.reply("+OK").await?;
                self.w.flush().await?;
                return Ok(false);
            }
            "CAPA" => self.capa().await?,
            "NOOP" => self.reply("-ERR Unrecognized command").await?,
            "STLS" => {
                if arg.is_some() {
                    self.reply("-ERR Unexpected extra argument").await?;
                } else {
                    return self.stls().await;
                }
            }
            "USER" => {
                if !self.plaintext_ok() || self.tls_required() {
                    self.reply("-ERR [AUTH] USER command only available under a layer").await?;
                } else if self.user.is_some() {
                    self.reply("-ERR [AUTH] Must give PASS command").await?;
                } else {
                    match arg.filter(|a| !a.is_empty() && !a.contains(' ')) {
                        Some(u) => {
                            self.user = Some(u);
                            self.reply("+OK Name is a valid mailbox").await?;
                        }
                        None => self.reply("-ERR Missing argument").await?,
                    }
                }
            }
            "PASS" => match (self.user.take(), arg) {
                (None, _) => self.reply("-ERR [AUTH] Must give USER command").await?,
                (Some(_), None) => self.reply("-ERR Missing argument").await?,
                (Some(u), Some(p)) => self.login(&u, Secret::new(p.into_bytes()), "plaintext").await?,
            },
            "AUTH" => self.auth(arg).await?,
            "APOP" => {
                // No plaintext secrets here: APOP cannot be checked.
                self.reply("-ERR [AUTH] authenticating: authentication failure").await?;
            }
            _ => self.reply("-ERR Unrecognized command").await?,
        }
        Ok(true)
    }

    async fn capa(&mut self) -> IoResult {
        let before = BeforeLogin {
            gssapi: self.ctx.gssapi && !self.tls_required(),
            sasl: super::cyrus::sasl_layer_ok(&self.ctx.conf, self.ssf),
            plaintext: self.plaintext_ok() && !self.tls_required(),
            stls: self.ctx.tls.is_some() && !self.tls,
        };
        let text = capa_text(&self.ctx, Some(before));
        self.w.write_all(text.as_bytes()).await
    }

    /// RFC 2595: plaintext the client pipelined after STLS is dropped.
    async fn stls(&mut self) -> std::io::Result<bool> {
        let Some(acc) = self.ctx.tls.clone() else {
            self.reply("-ERR Unrecognized command").await?;
            return Ok(true);
        };
        if self.tls {
            self.reply("-ERR STLS not allowed").await?;
            return Ok(true);
        }
        self.reply("+OK Begin TLS negotiation").await?;
        self.w.flush().await?;
        self.queue.clear();
        self.buf = LineBuffer::new(MAX_COMMAND);
        match crate::server::listen::tls_upgrade_halves(&mut self.r, &mut self.w, acc).await {
            Ok((summary, ssf)) => {
                self.ctx.log.info(&format!("starttls: {summary}"));
                self.tls = true;
                self.ssf = ssf;
                Ok(true)
            }
            Err(e) => {
                self.ctx
                    .log
                    .info(&format!("STLS negotiation failed: {}: {e}", self.host.get().await));
                Ok(false)
            }
        }
    }

    async fn sasl_line(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        match self.next_line().await? {
            Some(Line::Complete(l)) if l != b"*" => Ok(crate::util::base64_decode(&String::from_utf8_lossy(&l))),
            _ => Ok(None),
        }
    }

    /// AUTH (RFC 5034): PLAIN (with an initial response or after "+ ")
    /// and LOGIN; AUTH alone lists the mechanisms.
    async fn auth(&mut self, arg: Option<String>) -> IoResult {
        if self.tls_required() {
            return self.reply("-ERR [AUTH] AUTH command only available under a layer").await;
        }
        let layer = super::cyrus::sasl_layer_ok(&self.ctx.conf, self.ssf);
        let Some(arg) = arg else {
            self.reply("+OK List of supported mechanisms follows").await?;
            if self.ctx.gssapi && layer {
                self.reply("GSSAPI").await?;
            }
            if self.plaintext_ok() && layer {
                self.reply("PLAIN").await?;
                self.reply("LOGIN").await?;
            }
            return self.reply(".").await;
        };
        let (mech, ir) = match arg.split_once(' ') {
            Some((m, i)) => (m.to_ascii_uppercase(), Some(i.to_string())),
            None => (arg.to_ascii_uppercase(), None),
        };
        if super::cyrus::sasl_too_weak(&self.ctx, &mech, self.ssf) {
            return self.reply("-ERR [AUTH] authenticating: mechanism too weak for this user").await;
        }
        #[cfg(feature = "krb5")]
        if mech == "GSSAPI" && self.ctx.gssapi {
            return self.auth_gssapi(ir).await;
        }
        if !self.plaintext_ok() {
            return self.reply("-ERR [AUTH] authenticating: no mechanism available").await;
        }
        let cancelled = "-ERR [AUTH] authenticating: client canceled authentication";
        match mech.as_str() {
            "PLAIN" => {
                let resp = match ir {
                    Some(i) if i == "=" => Some(Vec::new()),
                    Some(i) => crate::util::base64_decode(&i),
                    None => {
                        self.reply("+ ").await?;
                        self.sasl_line().await?
                    }
                };
                let Some(resp) = resp else {
                    return self.reply(cancelled).await;
                };
                let parts: Vec<&[u8]> = resp.split(|&b| b == 0).collect();
                let [authz, authc, pass] = parts[..] else {
                    return self.reply("-ERR [AUTH] authenticating: bad protocol / cancel").await;
                };
                let (authz, zsub) = self.split_subfolder(&String::from_utf8_lossy(authz));
                let (authc, csub) = self.split_subfolder(&String::from_utf8_lossy(authc));
                self.subfolder = if authz.is_empty() { csub } else { zsub };
                // A Murder front end logs in as proxy_authname for the
                // user: allowed to admins and `proxyservers`, as Cyrus.
                if !authz.is_empty() && authz != authc {
                    let proxies = self.ctx.conf.get("proxyservers").unwrap_or("").to_string();
                    if !self.ctx.is_admin(&authc) && !proxies.split_whitespace().any(|p| p == authc) {
                        return self.reply("-ERR [AUTH] authenticating: authorization failure").await;
                    }
                    return self.login_as(&authz, &authc, Some(Secret::new(pass.to_vec())), "PLAIN").await;
                }
                self.login_as(&authc, &authc, Some(Secret::new(pass.to_vec())), "PLAIN").await
            }
            "LOGIN" => {
                let user = match ir {
                    Some(i) => crate::util::base64_decode(&i),
                    None => {
                        self.reply("+ VXNlcm5hbWU6").await?;
                        self.sasl_line().await?
                    }
                };
                let Some(user) = user else {
                    return self.reply(cancelled).await;
                };
                self.reply("+ UGFzc3dvcmQ6").await?;
                let Some(pass) = self.sasl_line().await? else {
                    return self.reply(cancelled).await;
                };
                self.login(&String::from_utf8_lossy(&user), Secret::new(pass), "LOGIN").await
            }
            _ => self.reply("-ERR [AUTH] authenticating: no mechanism available").await,
        }
    }

    async fn login(&mut self, user: &str, pass: Secret<Vec<u8>>, mech: &str) -> IoResult {
        let (user, sub) = self.split_subfolder(user);
        self.subfolder = sub;
        self.login_as(&user, &user, Some(pass), mech).await
    }

    /// `popsubfolders`: `user+folder` (with `virtdomains`,
    /// `user+folder@domain`) is the user and one of their folders; the
    /// folder is taken out of the name before the password check, as
    /// Cyrus's does.
    fn split_subfolder(&self, id: &str) -> (String, Option<String>) {
        if !self.ctx.conf.get_switch("popsubfolders") {
            return (id.to_string(), None);
        }
        super::cyrus::split_subfolder(id, self.ctx.store.cfg.virtdomains)
    }

    /// AUTH GSSAPI (RFC 4752 over RFC 5034).
    #[cfg(feature = "krb5")]
    async fn auth_gssapi(&mut self, ir: Option<String>) -> IoResult {
        use crate::auth::gssapi::{Server, Step};
        let cancelled = "-ERR [AUTH] authenticating: client canceled authentication";
        let mut server = Server::new(&self.ctx.sasl_service);
        let mut token = match ir {
            Some(i) if i == "=" => Some(Vec::new()),
            Some(i) => crate::util::base64_decode(&i),
            None => {
                self.reply("+ ").await?;
                self.sasl_line().await?
            }
        };
        loop {
            let Some(t) = token else {
                return self.reply(cancelled).await;
            };
            match server.step(&t) {
                Ok(Step::Send(c)) => {
                    self.reply(&format!("+ {}", crate::util::base64_encode(&c))).await?;
                    token = self.sasl_line().await?;
                }
                Ok(Step::Done(a)) => {
                    let host = self.host.get().await.to_string();
                    let login = super::cyrus::gssapi_login_user(&self.ctx.conf, &self.ctx.log, &host, &a.principal).await;
                    let Some(user) = login else {
                        return self.reply("-ERR [AUTH] Invalid login").await;
                    };
                    if !a.authzid.is_empty() && a.authzid != user {
                        let proxies = self.ctx.conf.get("proxyservers").unwrap_or("").to_string();
                        if !self.ctx.is_admin(&user) && !proxies.split_whitespace().any(|p| p == user) {
                            return self.reply("-ERR [AUTH] authenticating: authorization failure").await;
                        }
                        return self.login_as(&a.authzid, &user, None, "GSSAPI").await;
                    }
                    return self.login_as(&user, &user, None, "GSSAPI").await;
                }
                Err(e) => {
                    let host = self.host.get().await.to_string();
                    let why = format!("SASL(-1): generic failure: {e}");
                    super::cyrus::gssapi_refused(&self.ctx.conf, &self.ctx.log, &host, &why).await;
                    return self.reply("-ERR [AUTH] authenticating: generic failure").await;
                }
            }
        }
    }

    /// Opens `user`'s maildrop after checking `authc`'s password (None:
    /// the mechanism has proved who `authc` is).
    async fn login_as(&mut self, user: &str, authc: &str, pass: Option<Secret<Vec<u8>>>, mech: &str) -> IoResult {
        let (user, authc) = (
            &super::cyrus::canon_userid(&self.ctx.conf, user),
            &super::cyrus::canon_userid(&self.ctx.conf, authc),
        );
        let checked = match &pass {
            Some(p) => self.ctx.check_password(authc, p).await,
            None => Ok(true),
        };
        match checked {
            Ok(true) => {}
            Ok(false) => {
                self.ctx.log.info(&super::cyrus::badlogin_line(self.host.get().await, mech, authc));
                tokio::time::sleep(self.ctx.conf.failed_login_pause()).await;
                return self.reply("-ERR [AUTH] Invalid login").await;
            }
            Err(e) => {
                self.ctx.log.warning(&format!("login: {}: {e}", self.host.get().await));
                return self.reply("-ERR [SYS/TEMP] Unable to check password").await;
            }
        }
        let (ctx, who) = (self.ctx.clone(), user.to_string());
        if let Ok(Some(msg)) = tokio::task::spawn_blocking(move || ctx.denied(&who, "pop3")).await {
            self.ctx.log.info(&format!(
                "badlogin: {} {mech} {user} [user denied by cyr_deny]",
                self.host.get().await
            ));
            return self.reply(&format!("-ERR [AUTH] {msg}")).await;
        }
        let cfg = &self.ctx.store.cfg;
        let Ok(inbox) = crate::store::names::user_inbox(user, cfg.unixhierarchysep, cfg.virtdomains, &cfg.defaultdomain) else {
            return self.reply("-ERR [SYS/PERM] Invalid user").await;
        };
        let ctx = self.ctx.clone();
        let minpoll = minpoll(&ctx);
        let login_time = crate::util::unix_now();
        let useflags = ctx.conf.get_switch("popuseimapflags");
        let useacl = ctx.conf.get_switch("popuseacl");
        let groups = if useacl {
            match ctx.groups(user).await {
                Ok(g) => g,
                Err(_) => return self.reply("-ERR [SYS/TEMP] Group membership is unavailable, try again later").await,
            }
        } else {
            Vec::new()
        };
        let create = ctx.autocreate_allowed(user).await.unwrap_or(false);
        let who = user.to_string();
        let ib = inbox.clone();
        let autogroups = groups.clone();
        // `popsubfolders`: `user+folder` serves that folder (`user+`,
        // INBOX).
        let mb = match self.subfolder.take().filter(|f| !f.is_empty()) {
            Some(f) => crate::store::names::detail_mailbox(&inbox, &f, cfg.unixhierarchysep),
            None => inbox.clone(),
        };
        let res = tokio::task::spawn_blocking(move || -> Result<Result<Drop_, &'static str>, StoreError> {
            if create {
                super::cyrus::autocreate_inbox(&ctx, &ib, &autogroups)?;
            }
            let Some(e) = ctx.store.lookup(&mb)? else {
                return Ok(Err(if mb == ib {
                    "-ERR [SYS/PERM] Unable to locate maildrop"
                } else {
                    "-ERR [SYS/TEMP] Unable to open maildrop: Mailbox does not exist"
                }));
            };
            let ib = mb;
            let mut ids: Vec<&str> = vec![&who, "anyone"];
            ids.extend(groups.iter().map(String::as_str));
            if useacl && !super::imapd::mailboxes::rights_of(&e.acl, &ids).contains('r') {
                return Ok(Err("-ERR [SYS/PERM] Unable to locate maildrop"));
            }
            if !ctx.store.pop_may_login(&ib, minpoll.as_secs() as i64, login_time)? {
                return Ok(Err(LOGIN_DELAY));
            }
            // The version is taken before the index is read: a change
            // between the two shows as a change.
            let db = ctx.store.owner_db_path(&ib);
            let mut watch = crate::store::WalWatch::new(&db);
            let wal = watch.version();
            let (st, rows) = ctx.store.index(&ib)?;
            let uids: Vec<u32> = rows
                .iter()
                .filter(|r| !(useflags && r.1 & FLAG_DELETED != 0))
                .map(|r| r.0)
                .collect();
            let recs = ctx.store.records_for(&ib, &uids)?;
            let dir = ctx.store.mailbox_dir(&ib, &e.partition)?;
            Ok(Ok(Drop_ {
                wal,
                watch,
                dir,
                inbox: ib,
                uidvalidity: st.uidvalidity,
                ahead: Default::default(),
                msgs: recs
                    .into_iter()
                    .map(|r| Msg {
                        uid: r.uid,
                        size: r.size,
                        deleted: false,
                        gone: false,
                    })
                    .collect(),
            }))
        })
        .await;
        match res {
            Ok(Ok(Ok(d))) => {
                let slot = match self.ctx.logins.admit(&self.ctx.conf, user, &self.peer) {
                    Ok(s) => s,
                    Err(why) => {
                        self.ctx.log.error(&format!("Too many open connections ({why})"));
                        return self.reply(&format!("-ERR Too many open connections ({why})")).await;
                    }
                };
                self.ctx.log.info(&format!(
                    "login: {} {user} {mech} User logged in SESSIONID=<{}>",
                    self.host.get().await,
                    self.sid
                ));
                if mech == "plaintext" && !self.tls {
                    tokio::time::sleep(self.ctx.conf.plaintext_login_pause()).await;
                }
                self.txn = Some(Txn {
                    mark_seen: self.ctx.conf.get_switch("popuseimapflags") && !self.ctx.readonly,
                    uidl_format: self.ctx.conf.get("uidl_format").unwrap_or("cyrus").to_string(),
                    ctx: self.ctx.clone(),
                    drop: d,
                    login_time,
                    minpoll: minpoll.as_secs() as i64,
                    _slot: slot,
                });
                let sid = self.sid.clone();
                self.reply(&format!("+OK Mailbox locked and ready SESSIONID=<{sid}>")).await
            }
            Ok(Ok(Err(LOGIN_DELAY))) => {
                // Cyrus's words, with the minimum in minutes.
                let mins = minpoll.as_secs() / 60;
                let s = if mins == 1 { "" } else { "s" };
                self.reply(&format!("{LOGIN_DELAY} Logins must be at least {mins} minute{s} apart"))
                    .await
            }
            Ok(Ok(Err(text))) => self.reply(text).await,
            Ok(Err(e)) => {
                self.ctx.log.error(&format!("IOERROR: opening {inbox}: {e}"));
                self.reply("-ERR [SYS/TEMP] Unable to open maildrop").await
            }
            Err(_) => self.reply("-ERR [SYS/TEMP] Unable to open maildrop").await,
        }
    }

    /// TRANSACTION state; false ends the session.  A command that may
    /// wait on the store's database (QUIT's expunge, a RETR that must look
    /// again, popuseimapflags) runs on the blocking pool.
    async fn transaction(&mut self, cmd: &str, arg: Option<String>) -> std::io::Result<bool> {
        let Some(mut t) = self.txn.take() else { return Ok(false) };
        let mut out = Vec::new();
        let go = if t.may_block(cmd, arg.as_deref()) {
            let cmd = cmd.to_string();
            match tokio::task::spawn_blocking(move || {
                let go = t.command(&cmd, arg.as_deref(), &mut out);
                (t, out, go)
            })
            .await
            {
                Ok((t, o, go)) => {
                    self.txn = Some(t);
                    out = o;
                    go
                }
                Err(_) => return Ok(false),
            }
        } else {
            let go = t.command(cmd, arg.as_deref(), &mut out);
            self.txn = Some(t);
            go
        };
        self.w.write_all(&out).await?;
        if !go {
            self.w.flush().await?;
        }
        Ok(go)
    }

    /// After login on a plain connection: the session goes on on a thread
    /// of its own (see `serve_thread`).
    async fn into_thread(self, slot: ThreadSlot) {
        let Session {
            ctx,
            r,
            mut w,
            buf,
            queue,
            txn,
            idle,
            ..
        } = self;
        let Some(txn) = txn else { return };
        if w.flush().await.is_err() {
            return;
        }
        let io = r.unsplit(w.into_inner()).into_any();
        // The thread's stream, and a second handle on the same socket that
        // cuts it if this task is dropped first (a drain's deadline), so
        // that no thread outlives its connection's task.
        macro_rules! blocking {
            ($stream:expr, $kind:ident) => {
                $stream.into_std().and_then(|s| {
                    s.set_nonblocking(false)?;
                    s.set_read_timeout(Some(idle))?;
                    let c = s.try_clone()?;
                    Ok((Box::new(s) as Box<dyn Blocking>, CutOnDrop::$kind(c)))
                })
            };
        }
        let made = match io.downcast::<tokio::net::TcpStream>() {
            Ok(t) => blocking!(t, Tcp),
            Err(io) => match io.downcast::<tokio::net::UnixStream>() {
                Ok(u) => blocking!(u, Unix),
                Err(_) => return,
            },
        };
        let Ok((stream, cut)) = made else { return };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let spawned = std::thread::Builder::new().name("pop3d".into()).spawn(move || {
            let _slot = slot;
            serve_thread(txn, stream, buf, queue);
            let _ = tx.send(());
        });
        match spawned {
            // The session's task lasts as long as its thread.
            Ok(_) => {
                let _ = rx.await;
            }
            Err(e) => ctx.log.error(&format!("IOERROR: creating a session thread: {e}")),
        }
        drop(cut);
    }
}

/// A second handle on a session thread's socket: dropped, it shuts the
/// socket down, which ends the thread's blocking read.
enum CutOnDrop {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Drop for CutOnDrop {
    fn drop(&mut self) {
        let _ = match self {
            CutOnDrop::Tcp(s) => s.shutdown(std::net::Shutdown::Both),
            CutOnDrop::Unix(s) => s.shutdown(std::net::Shutdown::Both),
        };
    }
}

/// A plain connection in blocking mode.
trait Blocking: std::io::Read + std::io::Write + Send {}
impl<T: std::io::Read + std::io::Write + Send> Blocking for T {}

/// Sessions on threads of their own now, and the most there may be; past
/// that a session stays on the event loop.
static THREADS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
const MAX_THREADS: usize = 1024;

/// One of the MAX_THREADS places, given back when dropped.
struct ThreadSlot;

impl ThreadSlot {
    fn take() -> Option<ThreadSlot> {
        use std::sync::atomic::Ordering;
        THREADS
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < MAX_THREADS).then_some(n + 1))
            .ok()
            .map(|_| ThreadSlot)
    }
}

impl Drop for ThreadSlot {
    fn drop(&mut self) {
        THREADS.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// The TRANSACTION state of a plain session on its own thread, as Cyrus's
/// pop3d runs in a process of its own: a command costs the socket's read
/// and write, not a round of the event loop as well (a lock-step RETR of
/// 2 KB: 11 us on the loop, 8 us here).  poptimeout is the socket's read
/// timeout.
fn serve_thread(mut txn: Txn, mut s: Box<dyn Blocking>, mut buf: LineBuffer, mut queue: VecDeque<Line>) {
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Some(line) = queue.pop_front() else {
            if !out.is_empty() {
                if s.write_all(&out).is_err() {
                    return;
                }
                out.clear();
            }
            match s.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => queue.extend(buf.feed(&chunk[..n])),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    let _ = s.write_all(b"-ERR [SYS/TEMP] autologout; idle for too long\r\n");
                    return;
                }
                Err(_) => return,
            }
            continue;
        };
        let go = match line {
            Line::TooLong => {
                out.extend_from_slice(b"-ERR Line too long\r\n");
                true
            }
            Line::Complete(l) => {
                let (cmd, arg) = split_command(&l);
                txn.command(&cmd, arg.as_deref(), &mut out)
            }
        };
        if !go {
            let _ = s.write_all(&out);
            return;
        }
    }
}

/// A command line's verb, upper-cased, and its argument.
fn split_command(line: &[u8]) -> (String, Option<String>) {
    let text = String::from_utf8_lossy(line);
    match text.split_once(' ') {
        Some((c, a)) => (c.to_ascii_uppercase(), Some(a.to_string())),
        None => (text.to_ascii_uppercase(), None),
    }
}

/// What CAPA lists before login: SASL mechanisms, STLS and USER.
struct BeforeLogin {
    gssapi: bool,
    /// `sasl_minimum_layer` is met: SASL mechanisms may be listed.
    sasl: bool,
    plaintext: bool,
    stls: bool,
}

/// CAPA's reply (RFC 2449) as Cyrus's pop3d words it.
fn capa_text(ctx: &Ctx, before: Option<BeforeLogin>) -> String {
    let mut lines = vec!["+OK List of capabilities follows".to_string()];
    if let Some(b) = &before {
        let mut mechs: Vec<&str> = Vec::new();
        if b.gssapi {
            mechs.push("GSSAPI");
        }
        if b.plaintext {
            mechs.extend(["PLAIN", "LOGIN"]);
        }
        if !mechs.is_empty() && b.sasl {
            lines.push(format!("SASL {}", mechs.join(" ")));
        }
        if b.stls {
            lines.push("STLS".into());
        }
    }
    let expire = ctx.conf.get_int("popexpiretime");
    lines.push(if expire < 0 {
        "EXPIRE NEVER".into()
    } else {
        format!("EXPIRE {expire}")
    });
    lines.push(format!("LOGIN-DELAY {}", minpoll(ctx).as_secs()));
    lines.extend(["TOP", "UIDL", "PIPELINING", "RESP-CODES", "AUTH-RESP-CODE"].map(String::from));
    if before.as_ref().is_some_and(|b| b.plaintext) {
        lines.push("USER".into());
    }
    lines.extend(ctx.server_info.implementation());
    lines.push(".".into());
    let mut text = lines.join("\r\n");
    text.push_str("\r\n");
    text
}

/// A message's UIDL as `uidl_format` spells it, as Cyrus does: `cyrus`
/// UIDVALIDITY.UID, `uidonly` UID, `dovecot` the two as 8 lower-case hex
/// digits each (UID first), `courier` UIDVALIDITY-UID.  Sites that moved
/// from Dovecot or Courier keep their clients' UIDLs with it.
fn uidl(out: &mut String, format: &str, uidvalidity: u32, uid: u32) -> std::fmt::Result {
    use std::fmt::Write;
    match format {
        "uidonly" => write!(out, "{uid}"),
        "dovecot" => write!(out, "{uid:08x}{uidvalidity:08x}"),
        "courier" => write!(out, "{uidvalidity}-{uid}"),
        _ => write!(out, "{uidvalidity}.{uid}"),
    }
}

/// popminpoll.
fn minpoll(ctx: &Ctx) -> Duration {
    ctx.conf
        .get("popminpoll")
        .and_then(|v| crate::config::cyrus::options::parse_duration(v, 'm'))
        .map_or(Duration::ZERO, |s| Duration::from_secs(s.max(0) as u64))
}

/// The TRANSACTION state without I/O: the maildrop fixed at login, and
/// what each command does to it, its replies appended to a buffer.  The
/// session's event loop and its thread both drive it.
struct Txn {
    ctx: Arc<Ctx>,
    drop: Drop_,
    /// `popuseimapflags` on a writable connection: RETR sets \Seen.
    mark_seen: bool,
    /// `uidl_format`.
    uidl_format: String,
    /// When the session logged in (Unix seconds) and `popminpoll` in
    /// seconds: QUIT records the login for the next one's check.
    login_time: i64,
    minpoll: i64,
    /// This session's count in `maxlogins_per_user`/`_per_host`.
    _slot: super::cyrus::LoginSlot,
}

/// The refusal a login gets within `popminpoll` (worded in full by the
/// session, which knows the minimum).
const LOGIN_DELAY: &str = "-ERR [LOGIN-DELAY]";

/// The largest message a RETR reads on the event loop.
const QUICK_READ: u64 = 64 * 1024;

impl Txn {
    /// The message a (1-based) number names, unless deleted.
    fn msg_no(&self, arg: Option<&str>) -> Result<usize, &'static str> {
        let a = arg.ok_or("-ERR Missing argument")?;
        let n: usize = a.trim().parse().map_err(|_| "-ERR Not a number")?;
        let msgs = &self.drop.msgs;
        if n == 0 || n > msgs.len() || msgs[n - 1].deleted {
            return Err("-ERR No such message");
        }
        Ok(n - 1)
    }

    /// Whether `command` may wait on the store's database or a large
    /// file: QUIT with messages to expunge, RETR with popuseimapflags, a
    /// RETR or TOP of a large message or after another session changed
    /// the mailbox.  A page-cache read of a small message costs less than
    /// a hand-off to the blocking pool and back.
    fn may_block(&mut self, cmd: &str, arg: Option<&str>) -> bool {
        match cmd {
            "QUIT" => self.minpoll > 0 || self.drop.msgs.iter().any(|m| m.deleted),
            "RETR" | "TOP" => {
                if cmd == "RETR" && self.mark_seen {
                    return true;
                }
                let num = arg.unwrap_or("").split_whitespace().next();
                match self.msg_no(num) {
                    Ok(i) => self.drop.msgs[i].size > QUICK_READ || self.drop.watch.version() != self.drop.wal,
                    Err(_) => false,
                }
            }
            _ => false,
        }
    }

    /// One command; its replies go to `out`.  False ends the session.
    fn command(&mut self, cmd: &str, arg: Option<&str>, out: &mut Vec<u8>) -> bool {
        let reply = |out: &mut Vec<u8>, text: &str| {
            out.extend_from_slice(text.as_bytes());
            out.extend_from_slice(b"\r\n");
        };
        let d = &self.drop;
        let uidvalidity = d.uidvalidity;
        let uidl_format = self.uidl_format.as_str();
        match cmd {
            "QUIT" => {
                let dele: Vec<u32> = d.msgs.iter().filter(|m| m.deleted).map(|m| m.uid).collect();
                if self.minpoll > 0 {
                    // `popminpoll` counts sessions that end with QUIT, from
                    // their login (Cyrus's pop3d).
                    let padding = self.ctx.conf.get_int("poppollpadding");
                    if let Err(e) = self.ctx.store.pop_quit(&d.inbox, self.login_time, self.minpoll, padding) {
                        self.ctx
                            .log
                            .error(&format!("IOERROR: recording the POP3 login on {}: {e}", d.inbox));
                    }
                }
                let ok = dele.is_empty() || self.ctx.store.expunge_uids(&d.inbox, &dele).is_ok();
                reply(
                    out,
                    if ok {
                        "+OK"
                    } else {
                        "-ERR [SYS/TEMP] Unable to expunge deleted messages"
                    },
                );
                return false;
            }
            "CAPA" => out.extend_from_slice(capa_text(&self.ctx, None).as_bytes()),
            "NOOP" => reply(out, "+OK"),
            "STAT" => {
                let live = d.msgs.iter().filter(|m| !m.deleted);
                let (n, size) = live.fold((0usize, 0u64), |(n, s), m| (n + 1, s + m.size));
                reply(out, &format!("+OK {n} {size}"));
            }
            "LIST" | "UIDL" => {
                use std::fmt::Write;
                let line = |out: &mut String, i: usize, m: &Msg| {
                    let _ = if cmd == "LIST" {
                        write!(out, "{} {}", i + 1, m.size)
                    } else {
                        write!(out, "{} ", i + 1).and_then(|_| uidl(out, uidl_format, uidvalidity, m.uid))
                    };
                };
                let mut text = String::new();
                if arg.is_some() {
                    match self.msg_no(arg) {
                        Ok(i) => {
                            text.push_str("+OK ");
                            line(&mut text, i, &d.msgs[i]);
                            text.push_str("\r\n");
                        }
                        Err(t) => reply(out, t),
                    }
                } else {
                    text.push_str(if cmd == "LIST" {
                        "+OK scan listing follows\r\n"
                    } else {
                        "+OK unique-id listing follows\r\n"
                    });
                    for (i, m) in d.msgs.iter().enumerate().filter(|(_, m)| !m.deleted) {
                        line(&mut text, i, m);
                        text.push_str("\r\n");
                    }
                    text.push_str(".\r\n");
                }
                out.extend_from_slice(text.as_bytes());
            }
            "RETR" | "TOP" => {
                let mut args = arg.unwrap_or("").split_whitespace();
                let (num, lines) = (args.next(), args.next());
                let top = match (cmd, lines) {
                    ("TOP", None) => {
                        reply(out, "-ERR Missing argument");
                        return true;
                    }
                    ("TOP", Some(l)) => match l.parse::<usize>() {
                        Ok(n) => Some(n),
                        Err(_) => {
                            reply(out, "-ERR Invalid argument");
                            return true;
                        }
                    },
                    _ => None,
                };
                let i = match self.msg_no(num) {
                    Ok(i) => i,
                    Err(t) => {
                        reply(out, t);
                        return true;
                    }
                };
                let (uid, size) = (d.msgs[i].uid, d.msgs[i].size);
                // Every read has a limit: the record's size.  A message
                // another session expunged is gone even while delayed
                // expunge keeps its file.
                let store = &self.ctx.store;
                let now = self.drop.watch.version();
                let mut unsure = false;
                if now != self.drop.wal {
                    // The database changed since the drop was read (another
                    // session, a checkpoint): which of its messages are
                    // still there, asked once for all, and then at this
                    // version, so that the next RETRs need not ask again.
                    let d = &mut self.drop;
                    let uids: Vec<u32> = d.msgs.iter().map(|m| m.uid).collect();
                    match store.records_for(&d.inbox, &uids) {
                        Ok(recs) => {
                            let live: std::collections::HashSet<u32> = recs.iter().map(|r| r.uid).collect();
                            for m in &mut d.msgs {
                                m.gone = !live.contains(&m.uid);
                            }
                            d.wal = now;
                        }
                        // Not known: not served this time.
                        Err(_) => unsure = true,
                    }
                }
                let d = &self.drop;
                let gone = unsure || d.msgs[i].gone;
                let data = if gone {
                    None
                } else {
                    crate::store::read_message_cold(&crate::store::message_file(&d.dir, uid), size).ok()
                };
                let Some((data, cold)) = data else {
                    reply(out, "-ERR [SYS/PERM] Message no longer exists");
                    return true;
                };
                stuffed(&data, top, out);
                if cmd == "RETR" && self.mark_seen {
                    let _ = store.store_flags(&d.inbox, &[uid], FlagOp::Add, FLAG_SEEN, &[], None);
                }
                // A client taking the maildrop message by message, from a
                // mailbox on disk: the next ones are read ahead.
                let d = &mut self.drop;
                let ahead = d.ahead.after(i, d.msgs.len(), cold);
                if !ahead.is_empty() {
                    crate::store::read_ahead(d.msgs[ahead].iter().map(|m| crate::store::message_file(&d.dir, m.uid)).collect());
                }
            }
            // `readonly`: nothing is deleted, as Cyrus.
            "DELE" if self.ctx.readonly => reply(out, "-ERR [SYS/PERM] This connection is configured for read-only access"),
            "DELE" => match self.msg_no(arg) {
                Ok(i) => {
                    self.drop.msgs[i].deleted = true;
                    reply(out, "+OK message deleted");
                }
                Err(t) => reply(out, t),
            },
            "RSET" => {
                for m in &mut self.drop.msgs {
                    m.deleted = false;
                }
                reply(out, "+OK");
            }
            _ => reply(out, "-ERR Unrecognized command"),
        }
        true
    }
}

pub fn main(args: &[String]) -> i32 {
    // A Murder front end's pop3d is the proxy.
    if super::front::frontend_args(args, "pop3") {
        return super::proxyd::main("pop3d", args, true);
    }
    super::cyrus::run_service(
        "pop3d",
        args,
        |a| if a.tls { "pop3s" } else { "pop3" },
        "pop",
        |_| vec!["110".to_string()],
        |ctx, a| {
            if a.tls && ctx.tls.is_none() {
                return Err("pop3s (-s) needs tls_server_cert and tls_server_key".into());
            }
            Ok(Pop3d { ctx, implicit_tls: a.tls })
        },
    )
}

#[cfg(test)]
mod tests {
    use super::{stuffed, uidl};

    fn stuff(data: &[u8], top: Option<usize>) -> Vec<u8> {
        let mut out = Vec::new();
        stuffed(data, top, &mut out);
        out
    }

    #[test]
    fn uidl_formats() {
        let f = |format| {
            let mut s = String::new();
            uidl(&mut s, format, 1700000000, 42).unwrap();
            s
        };
        assert_eq!(f("cyrus"), "1700000000.42");
        assert_eq!(f("uidonly"), "42");
        assert_eq!(f("dovecot"), "0000002a6553f100");
        assert_eq!(f("courier"), "1700000000-42");
    }

    #[test]
    fn byte_stuffing_and_top() {
        let m = b"Subject: x\r\n.hidden: y\r\n\r\nline 1\n.dot line\r\nline 3\r\n";
        assert_eq!(
            &stuff(m, None)[21..],
            b"Subject: x\r\n..hidden: y\r\n\r\nline 1\r\n..dot line\r\nline 3\r\n.\r\n"
        );
        assert_eq!(&stuff(m, Some(0))[21..], b"Subject: x\r\n..hidden: y\r\n\r\n.\r\n");
        assert_eq!(&stuff(m, Some(1))[21..], b"Subject: x\r\n..hidden: y\r\n\r\nline 1\r\n.\r\n");
        // Already in form: copied whole; TOP of it as line by line.
        let m = b"Subject: x\r\n\r\nline.1\r\n\r\n";
        assert_eq!(&stuff(m, None)[21..], b"Subject: x\r\n\r\nline.1\r\n\r\n.\r\n");
        assert_eq!(&stuff(m, Some(1))[21..], b"Subject: x\r\n\r\nline.1\r\n.\r\n");
        for bad in [&b".x\r\n"[..], b"a\r\n.b\r\n", b"a\nb\r\n", b"a\r\nb", b"\n"] {
            assert!(!super::pop_ready(bad), "{bad:?}");
        }
        assert!(super::pop_ready(b"") && super::pop_ready(b"a\r\r\n"));
        assert_eq!(
            stuff(b"no newline at end", None),
            b"+OK Message follows\r\nno newline at end\r\n.\r\n".to_vec()
        );
    }
}
