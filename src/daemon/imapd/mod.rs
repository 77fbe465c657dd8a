//! imapd: IMAP4rev1 over the store, replying as Cyrus imapd 3.x does
//! (greeting, CAPABILITY, OK texts, error texts), so that clients and the
//! Murder front ends that parse them see no difference.

mod acl;
mod annotate;
mod fetch_render;
pub mod io;
pub mod mailboxes;
mod metadata;
mod quota;
mod search;
mod selected;
pub use selected::parse_flags;
pub mod sort;
pub mod sortcache;
mod specialuse;
mod sync;
mod urlauth;
mod xfer;
mod xfer_sync;

use super::cyrus::{Ctx, ServerInfo};
use crate::mail::Secret;
use crate::proto::imap::command::{self, Command, Kind};
use crate::server::listen::Io;
use crate::server::Conn;
use crate::store::names::Namespace;
use io::Output;
use io::{Frame, Input, ReadError};
use selected::Selected;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWrite;

pub use super::lmtpd::CYRUS_VERSION;

/// Unauthenticated sessions are cut after this long idle.
const PREAUTH_IDLE: Duration = Duration::from_secs(60);
/// Largest APPEND kept in memory when `maxmessagesize` is unset.
pub const DEFAULT_APPEND_MAX: u64 = 64 << 20;
/// Cyrus's refusal of a write under `readonly`.
const READONLY: &str = "NO This connection is configured for read-only access";

pub struct Imapd {
    pub ctx: Arc<Ctx>,
    /// imaps: TLS from the first byte (`-s`).
    pub implicit_tls: bool,
}

impl crate::server::Service for Imapd {
    async fn serve(self: Arc<Self>, conn: Conn) {
        let peer = conn.peer();
        let mut io = conn.into_io();
        let mut ssf = 0;
        if self.implicit_tls {
            let Some((t, bits)) = super::cyrus::implicit_tls(&self.ctx, io, &peer, "imaps").await else {
                return;
            };
            (io, ssf) = (t, bits);
        }
        let (r, w) = tokio::io::split(io);
        let mut s = Session::new(self.ctx.clone(), r, w, self.implicit_tls, peer, self.ctx.session_id());
        s.ssf = ssf;
        match s.run().await {
            Ok(()) | Err(ReadError::Eof) => {}
            Err(ReadError::Timeout) => {
                let _ = s.w.write_all(b"* BYE Fatal error: autologout; idle for too long\r\n").await;
                let _ = s.w.flush().await;
            }
            Err(ReadError::Io(_)) => {}
        }
    }
}

/// Serves one connection on any stream; with `preauth` the session starts
/// authenticated as that user (`* PREAUTH` greeting, RFC 3501 7.1.4), for
/// in-process use such as the session fuzzer.
pub async fn serve_io<S>(ctx: Arc<Ctx>, io: S, preauth: Option<&str>)
where
    S: tokio::io::AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static,
{
    let io: Box<dyn Io> = Box::new(io);
    let (r, w) = tokio::io::split(io);
    let mut s = Session::new(ctx.clone(), r, w, false, "local".into(), ctx.session_id());
    if let Some(u) = preauth {
        let cfg = &ctx.store.cfg;
        s.user = Some(u.to_string());
        s.groups = ctx.groups(u).await.unwrap_or_default();
        s.ns = Some(
            Namespace::new(cfg.unixhierarchysep, cfg.altnamespace, u, cfg.virtdomains, &cfg.defaultdomain)
                .with_prefixes(ctx.conf.get("userprefix"), ctx.conf.get("sharedprefix"))
                .with_deleted(&cfg.deletedprefix),
        );
    }
    let _ = s.run().await;
}

type Rd = tokio::io::ReadHalf<Box<dyn Io>>;
type Wr = tokio::io::WriteHalf<Box<dyn Io>>;

pub struct Session {
    pub ctx: Arc<Ctx>,
    input: Input<Rd>,
    pub w: Output<Wr>,
    /// TLS is on (implicit or after STARTTLS).
    tls: bool,
    /// Its strength for `sasl_minimum_layer` (the cipher's bits; 0
    /// without TLS).
    ssf: u32,
    /// The client's address ("unix" for a UNIX socket).
    peer: String,
    /// Cyrus's client host text, `name [addr]`, for log lines.
    host: crate::server::peer::ClientHost,
    pub user: Option<String>,
    /// The user's `group:` identifiers (auth_unix), for ACLs.
    pub groups: Vec<String>,
    pub ns: Option<Namespace>,
    pub sel: Option<Selected>,
    sid: String,
    logout: bool,
    /// ENABLE QRESYNC was given (RFC 7162): VANISHED replaces EXPUNGE.
    pub qresync: bool,
    /// The selected mailbox was deleted by this session: as Cyrus, the
    /// next SELECT still reports it `[CLOSED]`.
    pub deleted_selected: bool,
    /// CONDSTORE is on for the session (RFC 7162 3.1: ENABLE, SELECT
    /// (CONDSTORE), or a first FETCH of MODSEQ); every mailbox selected
    /// then reports MODSEQs.
    pub condstore: bool,
    /// ENABLE UTF8=ACCEPT (RFC 6855): mailbox names are UTF-8 both ways.
    pub utf8: bool,
    /// ENABLE IMAP4rev2 (RFC 9051): UTF-8 names, no \Recent or RECENT,
    /// ESEARCH answers SEARCH.
    pub rev2: bool,
    /// COMPRESS DEFLATE is on.
    compressed: bool,
    /// Messages a Cyrus back end uploaded for its XFER (SYNCAPPLY
    /// MESSAGE), by GUID; their files go when the session ends.
    sync_stash: std::collections::HashMap<String, crate::store::Staged>,
    /// The quota root last warned about on SELECT and when it may be
    /// again (as Cyrus: at most every ten minutes for the same root).
    pub quota_warned: Option<(String, std::time::Instant)>,
    /// Logged in by an admin or a proxy server on the user's behalf
    /// (Cyrus's proxyadmin: GETQUOTA is allowed, as for an admin).
    pub proxyadmin: bool,
    /// `imapmagicplus`: logged in as `user+` (empty after the plus):
    /// LIST shows the subscribed mailboxes only, as Cyrus.
    magic_subscribed: bool,
    /// This session's count in `maxlogins_per_user`/`_per_host`.
    login_slot: Option<super::cyrus::LoginSlot>,
}

pub type Res = Result<(), ReadError>;

impl Session {
    fn new(ctx: Arc<Ctx>, r: Rd, w: Wr, tls: bool, peer: String, sid: String) -> Session {
        Session {
            ctx,
            input: Input::new(r),
            w: Output::new(w),
            tls,
            ssf: 0,
            host: crate::server::peer::ClientHost::new(&peer),
            peer,
            user: None,
            groups: Vec::new(),
            ns: None,
            sel: None,
            sid,
            logout: false,
            qresync: false,
            deleted_selected: false,
            condstore: false,
            utf8: false,
            rev2: false,
            compressed: false,
            sync_stash: Default::default(),
            quota_warned: None,
            proxyadmin: false,
            magic_subscribed: false,
            login_slot: None,
        }
    }

    pub async fn out(&mut self, s: &str) -> Res {
        self.w.write_all(s.as_bytes()).await?;
        Ok(())
    }

    pub async fn out_bytes(&mut self, s: &[u8]) -> Res {
        self.w.write_all(s).await?;
        Ok(())
    }

    pub async fn tagged(&mut self, tag: &str, text: &str) -> Res {
        self.out(&format!("{tag} {text}\r\n")).await
    }

    /// Ends the session as Cyrus's `fatal` does: an untagged BYE with
    /// the reason, which is logged.
    async fn fatal(&mut self, why: &str) -> Res {
        self.ctx.log.error(&format!("Fatal error: {why}"));
        self.out(&format!("* BYE {why}\r\n")).await?;
        self.w.shutdown().await?;
        self.input.drain(1 << 20, Duration::from_secs(2)).await;
        self.logout = true;
        Ok(())
    }

    fn idle_timeout(&self) -> Duration {
        if self.user.is_none() {
            return PREAUTH_IDLE;
        }
        // `timeout` in minutes, floored at 30 as imapd does.
        let m = self
            .ctx
            .conf
            .get("timeout")
            .and_then(|v| crate::config::cyrus::options::parse_duration(v, 'm'))
            .unwrap_or(32 * 60)
            .max(30 * 60);
        Duration::from_secs(m as u64)
    }

    /// Passwords in the clear are fine under TLS or with `allowplaintext`.
    fn plaintext_ok(&self) -> bool {
        self.tls || self.ctx.conf.get_switch("allowplaintext")
    }

    /// RFC 3501 6.2.1 / RFC 2595: TLS on the connection; plaintext that
    /// the client pipelined after STARTTLS is discarded (no injection).
    async fn starttls(&mut self, tag: &str) -> Res {
        let Some(acc) = self.ctx.tls.clone() else {
            return self.tagged(tag, "BAD Unrecognized command").await;
        };
        if self.tls {
            return self.tagged(tag, "BAD Already did TLS").await;
        }
        self.tagged(tag, "OK Begin TLS negotiation now").await?;
        self.w.flush().await?;
        match io::start_tls(&mut self.input, &mut self.w, acc).await {
            Ok((summary, ssf)) => {
                self.ctx.log.info(&format!("starttls: {summary}"));
                self.tls = true;
                self.ssf = ssf;
                Ok(())
            }
            Err(e) => {
                self.ctx
                    .log
                    .info(&format!("STARTTLS negotiation failed: {}: {e}", self.host.get().await));
                self.logout = true;
                Err(ReadError::Eof)
            }
        }
    }

    /// COMPRESS DEFLATE (RFC 4978): from the next byte on, both ways.
    async fn compress(&mut self, tag: &str, alg: &str) -> Res {
        if self.compressed {
            return self.tagged(tag, "NO [COMPRESSIONACTIVE] DEFLATE active via COMPRESS").await;
        }
        if !alg.eq_ignore_ascii_case("DEFLATE") {
            return self.tagged(tag, &format!("NO Unknown COMPRESS algorithm: {alg}")).await;
        }
        self.tagged(tag, "OK DEFLATE active").await?;
        self.w.flush().await?;
        io::start_deflate(&mut self.input, &mut self.w);
        self.compressed = true;
        Ok(())
    }

    pub fn input_mut(&mut self) -> &mut Input<Rd> {
        &mut self.input
    }

    /// The greeting's capabilities: before login the short list (as
    /// Cyrus greets), after it the full one.
    pub fn capabilities(&self) -> String {
        if self.user.is_none() {
            let mut c = String::from("IMAP4rev1 IMAP4rev2 LITERAL+ ID ENABLE");
            self.push_auth_caps(&mut c);
            return super::cyrus::configured_capabilities(&self.ctx.conf, c);
        }
        self.capabilities_full()
    }

    fn push_auth_caps(&self, c: &mut String) {
        if self.ctx.tls.is_some() && !self.tls {
            c.push_str(" STARTTLS");
        }
        if self.tls_required() {
            // No mechanism at all before TLS.
            c.push_str(" LOGINDISABLED");
            return;
        }
        // Below `sasl_minimum_layer` no mechanism is offered (nor
        // SASL-IR), as Cyrus; LOGIN stays.
        let layer = super::cyrus::sasl_layer_ok(&self.ctx.conf, self.ssf);
        if self.ctx.gssapi && layer {
            c.push_str(" AUTH=GSSAPI");
        }
        if !self.plaintext_ok() {
            c.push_str(" LOGINDISABLED");
        } else if layer {
            c.push_str(" AUTH=PLAIN AUTH=LOGIN");
        }
        if layer {
            c.push_str(" SASL-IR");
        }
    }

    /// `readonly`: the whole server is read-only to IMAP.
    fn readonly(&self) -> bool {
        self.ctx.readonly
    }

    /// `tls_required`: no authentication of any kind before TLS.
    fn tls_required(&self) -> bool {
        !self.tls && self.ctx.conf.get_switch("tls_required")
    }

    /// What the CAPABILITY command answers, before and after login: every
    /// extension, as Cyrus lists them (clients such as cyradm ask before
    /// logging in); after login LOGINDISABLED as Cyrus shows it.
    pub fn capabilities_full(&self) -> String {
        let mut c = String::from(
            "IMAP4rev1 IMAP4rev2 LITERAL+ ID ENABLE ACL ANNOTATE-EXPERIMENT-1 BINARY CATENATE CHILDREN CONDSTORE CREATE-SPECIAL-USE DIGEST=SHA1 ESEARCH ESORT LIST-EXTENDED \
             LIST-METADATA LIST-MYRIGHTS LIST-STATUS MAILBOX-REFERRALS METADATA MOVE MULTIAPPEND NAMESPACE NO_ATOMIC_RENAME OBJECTID PREVIEW QRESYNC QUOTA RIGHTS=kxten \
             SAVEDATE SEARCH=FUZZY SEARCHRES SORT SORT=DISPLAY SORT=MODSEQ SORT=UID SPECIAL-USE STATUS=SIZE THREAD=ORDEREDSUBJECT THREAD=REFERENCES THREAD=REFS UIDPLUS UNSELECT URLAUTH URLAUTH=BINARY UTF8=ACCEPT WITHIN SCAN X-CREATEDMODSEQ XLIST XMOVE",
        );
        if self.user.is_none() {
            self.push_auth_caps(&mut c);
        } else {
            c.push_str(" LOGINDISABLED");
        }
        if !self.compressed {
            c.push_str(" COMPRESS=DEFLATE");
        }
        // Cyrus's names for the quota resources SETQUOTA takes.
        c.push_str(" X-QUOTA=STORAGE X-QUOTA=MESSAGE X-QUOTA=X-ANNOTATION-STORAGE X-QUOTA=X-NUM-FOLDERS IDLE");
        if self.user.as_deref().is_some_and(|u| self.ctx.is_admin(u)) {
            c.push(' ');
            c.push_str(xfer::CAPABILITY);
            // A Cyrus back end moves users here with its replication
            // commands (see `sync`).
            c.push_str(" X-REPLICATION");
        }
        // APPENDLIMIT (RFC 7889): the largest message APPEND takes.
        let limit = match self.ctx.conf.get_int("maxmessagesize") {
            n if n > 0 => n as u64,
            _ => u32::MAX as u64,
        };
        c.push_str(&format!(" APPENDLIMIT={limit}"));
        super::cyrus::configured_capabilities(&self.ctx.conf, c)
    }

    async fn run(&mut self) -> Res {
        let greet = if self.user.is_some() {
            format!(
                "* PREAUTH [CAPABILITY {}] {}server ready\r\n",
                self.capabilities(),
                self.ctx.server_info.greeting(&self.ctx.servername, "IMAP")
            )
        } else {
            format!(
                "* OK [CAPABILITY {}] {}server ready\r\n",
                self.capabilities(),
                self.ctx.server_info.greeting(&self.ctx.servername, "IMAP")
            )
        };
        self.out(&greet).await?;
        while !self.logout {
            if !self.input.has_buffered() {
                self.w.flush().await?;
                self.input.shrink();
            }
            let limits = if self.user.is_some() {
                self.ctx.limits
            } else {
                self.ctx.limits.without_args()
            };
            let idle = self.idle_timeout();
            // Boxed: the read's state (its small buffer, the timer) exists
            // only while a command is awaited, not during IDLE or a command.
            let frame = Box::pin(self.input.command_or_upload(&mut self.w, &limits, idle)).await?;
            let frame = match frame {
                Ok(f) => f,
                Err((tag, first)) => {
                    Box::pin(self.sync_upload(&tag, first, limits.append, idle)).await?;
                    continue;
                }
            };
            let raw = match frame {
                Frame::Command(c) => c,
                Frame::LineTooLong => {
                    self.out("* BAD Line too long\r\n").await?;
                    continue;
                }
                Frame::LiteralTooBig(t) => {
                    if let Some(r) = t.reply() {
                        self.tagged(&t.tag, &r).await?;
                    }
                    match t.bye() {
                        Some(why) => return self.fatal(why).await,
                        None => continue,
                    }
                }
                Frame::Fatal(why) => return self.fatal(why).await,
            };
            // `disconnect_on_vanished_mailbox`: the selected mailbox deleted
            // or renamed by another session ends this one at its next
            // command, as Cyrus.
            if self.sel.is_some() && self.ctx.disconnect_on_vanished {
                let name = self.sel.as_ref().map(|s| s.name.clone()).unwrap_or_default();
                if let Ok(None) = self.blocking(move |s| s.lookup(&name)).await {
                    return self.fatal("Fatal error: Mailbox has been (re)moved").await;
                }
            }
            let parsed = command::parse(&raw);
            // Cyrus checks the state before the arguments: a selected-state
            // command without a mailbox selected says so, even malformed.
            let needs_mailbox = parsed.is_err()
                && self.user.is_some()
                && self.sel.is_none()
                && crate::proto::imap::stream::head_words(&raw, 0).is_some_and(|h| {
                    h.uid
                        || matches!(
                            h.name.as_str(),
                            "CHECK"
                                | "CLOSE"
                                | "EXPUNGE"
                                | "SEARCH"
                                | "FETCH"
                                | "STORE"
                                | "COPY"
                                | "MOVE"
                                | "XMOVE"
                                | "UNSELECT"
                                | "SORT"
                                | "THREAD"
                        )
                });
            // The command owns what it needs (an APPEND's literal too).
            drop(raw);
            match parsed {
                // Boxed: a command's state exists only while it runs.
                // IDLE goes straight to its own future: the connections
                // that wait longest hold nothing of dispatch's state.
                Ok(cmd) if matches!(cmd.kind, Kind::Idle) && self.user.is_some() => Box::pin(self.idle(&cmd.tag)).await?,
                Ok(cmd) => Box::pin(self.dispatch(cmd)).await?,
                Err(e) => match e.tag {
                    Some(t) if needs_mailbox => self.tagged(&t, "BAD Please select a mailbox first").await?,
                    Some(t) => self.tagged(&t, &format!("BAD {}", e.text)).await?,
                    None => self.out("* BAD Invalid tag\r\n").await?,
                },
            }
        }
        self.w.flush().await?;
        Ok(())
    }

    /// Each command's future is boxed, so that an idle session's task holds
    /// only the state of the command it is in (IDLE), not the largest one.
    async fn dispatch(&mut self, c: Command) -> Res {
        let tag = c.tag.clone();
        let authed = self.user.is_some();
        match c.kind {
            Kind::Capability => {
                let caps = self.capabilities_full();
                self.out(&format!("* CAPABILITY {caps}\r\n")).await?;
                self.tagged(&tag, "OK Completed").await
            }
            Kind::Noop => {
                if self.sel.is_some() {
                    Box::pin(self.sync(true)).await?;
                }
                self.tagged(&tag, "OK Completed").await
            }
            Kind::Logout => {
                self.out("* BYE LOGOUT received\r\n").await?;
                self.logout = true;
                self.tagged(&tag, "OK Completed").await
            }
            Kind::Id if !self.ctx.conf.get_switch("imapidresponse") || self.ctx.server_info == ServerInfo::Off => {
                self.out("* ID NIL\r\n").await?;
                self.tagged(&tag, "OK Completed").await
            }
            Kind::Id => {
                // serverinfo min: without the version.
                let version = match self.ctx.server_info {
                    ServerInfo::On => format!(" \"version\" \"{CYRUS_VERSION}\""),
                    _ => String::new(),
                };
                self.out(&format!(
                    "* ID (\"name\" \"Cyrus IMAPD\"{version} \"vendor\" \"mumail\" \"support-url\" \"https://www.cyrusimap.org\")\r\n"
                ))
                .await?;
                self.tagged(&tag, "OK Completed").await
            }
            Kind::StartTls if !authed => Box::pin(self.starttls(&tag)).await,
            Kind::StartTls => self.tagged(&tag, "BAD Already authenticated").await,
            Kind::Login(u, p) if !authed => Box::pin(self.login(&tag, &u, Secret::new(p))).await,
            Kind::Authenticate(m, ir) if !authed => Box::pin(self.authenticate(&tag, &m, ir)).await,
            Kind::Login(..) | Kind::Authenticate(..) => self.tagged(&tag, "BAD Already authenticated").await,
            _ if !authed => self.tagged(&tag, "BAD Please login first").await,
            Kind::Compress(alg) => Box::pin(self.compress(&tag, &alg)).await,
            Kind::Enable(caps) => {
                let mut on = Vec::new();
                for cap in caps {
                    if cap == "UTF8=ACCEPT" || cap == "IMAP4REV2" {
                        self.utf8 = true;
                        self.rev2 |= cap == "IMAP4REV2";
                        let cap = if cap == "IMAP4REV2" { "IMAP4rev2".to_string() } else { cap };
                        if !on.contains(&cap) {
                            on.push(cap);
                        }
                    } else if cap == "CONDSTORE" || cap == "QRESYNC" {
                        // QRESYNC implies CONDSTORE (RFC 7162 3.2.3); as
                        // Cyrus, ENABLED names what this command turned on.
                        if let Some(s) = &mut self.sel {
                            s.condstore = true;
                        }
                        if !self.condstore {
                            self.condstore = true;
                            on.push("CONDSTORE".into());
                        }
                        if cap == "QRESYNC" && !self.qresync {
                            self.qresync = true;
                            on.push(cap);
                        }
                    }
                }
                // Nothing new enabled: no ENABLED response at all, as Cyrus.
                if !on.is_empty() {
                    self.out(&format!("* ENABLED {}\r\n", on.join(" "))).await?;
                }
                self.tagged(&tag, "OK Completed").await
            }
            Kind::GenUrlAuth(urls) => Box::pin(self.genurlauth(&tag, &urls)).await,
            Kind::ResetKey(m, _mechs) => Box::pin(self.resetkey(&tag, m.as_deref())).await,
            Kind::UrlFetch(urls) => Box::pin(self.urlfetch(&tag, &urls)).await,
            Kind::Namespace => {
                let ns = self.ns.clone().unwrap_or_else(|| Namespace::new(true, true, "", false, ""));
                let sep = ns.sep;
                let line = if ns.alt {
                    format!(
                        "* NAMESPACE ((\"\" \"{sep}\")) ((\"{}{sep}\" \"{sep}\")) ((\"{}{sep}\" \"{sep}\"))\r\n",
                        ns.other_users, ns.shared
                    )
                } else {
                    format!("* NAMESPACE ((\"INBOX{sep}\" \"{sep}\")) ((\"user{sep}\" \"{sep}\")) ((\"\" \"{sep}\"))\r\n")
                };
                self.out(&line).await?;
                self.tagged(&tag, "OK Completed").await
            }
            // `readonly`: every mailbox is examined, nothing is written,
            // as Cyrus (for a migration's last look at the old store).
            Kind::Select(m, sp) if self.readonly() => Box::pin(self.select(&tag, &m, true, sp)).await,
            Kind::Create(..)
            | Kind::Delete(..)
            | Kind::Rename(..)
            | Kind::Subscribe(..)
            | Kind::Unsubscribe(..)
            | Kind::Append(..)
            | Kind::SetQuota(..)
            | Kind::SetAcl(..)
            | Kind::DeleteAcl(..)
            | Kind::SetMetadata(..)
            | Kind::Reconstruct(..)
            | Kind::Xfer(..)
                if self.readonly() =>
            {
                self.tagged(&tag, READONLY).await
            }
            Kind::Select(m, sp) => Box::pin(self.select(&tag, &m, false, sp)).await,
            Kind::Examine(m, sp) => Box::pin(self.select(&tag, &m, true, sp)).await,
            Kind::Create(m, part, uses) => Box::pin(self.create(&tag, &m, part, uses)).await,
            Kind::Delete(m) => Box::pin(self.delete(&tag, &m)).await,
            Kind::Rename(a, b, None) => Box::pin(self.rename(&tag, &a, &b)).await,
            Kind::Rename(a, b, Some(part)) => Box::pin(self.rename_to(&tag, &a, &b, &part)).await,
            Kind::Subscribe(m) => Box::pin(self.subscribe(&tag, &m, true)).await,
            Kind::Unsubscribe(m) => Box::pin(self.subscribe(&tag, &m, false)).await,
            Kind::List {
                reference,
                patterns,
                select,
                ret,
            } if self.magic_subscribed && select.is_empty() && ret.is_empty() => {
                let (select, ret) = (vec!["SUBSCRIBED".to_string()], vec!["CHILDREN".to_string()]);
                Box::pin(self.list(&tag, &reference, &patterns, &select, &ret, false, None)).await
            }
            Kind::List {
                reference,
                patterns,
                select,
                ret,
            } => Box::pin(self.list(&tag, &reference, &patterns, &select, &ret, false, None)).await,
            Kind::Lsub(r, p) => Box::pin(self.list(&tag, &r, &[p], &["SUBSCRIBED".into()], &[], true, None)).await,
            Kind::Scan(r, p, text) => Box::pin(self.list(&tag, &r, &[p], &[], &[], false, Some(text))).await,
            Kind::Status(m, items) => Box::pin(self.status(&tag, &m, &items)).await,
            Kind::Append(m, msgs) => Box::pin(self.append(&tag, &m, msgs)).await,
            Kind::GetQuota(root) => Box::pin(self.getquota(&tag, &root)).await,
            Kind::GetQuotaRoot(m) => Box::pin(self.getquotaroot(&tag, &m)).await,
            Kind::SetQuota(root, res) => Box::pin(self.setquota(&tag, &root, &res)).await,
            Kind::GetAcl(m) => Box::pin(self.getacl(&tag, &m)).await,
            Kind::MyRights(m) => Box::pin(self.myrights(&tag, &m)).await,
            Kind::SetAcl(m, id, r) => Box::pin(self.setacl(&tag, &m, &id, Some(&r))).await,
            Kind::DeleteAcl(m, id) => Box::pin(self.setacl(&tag, &m, &id, None)).await,
            Kind::ListRights(m, id) => Box::pin(self.listrights(&tag, &m, &id)).await,
            Kind::Reconstruct(m, rec) => Box::pin(self.reconstruct(&tag, &m, rec)).await,
            Kind::GetMetadata {
                mailbox,
                entries,
                maxsize,
                depth,
            } => Box::pin(self.getmetadata(&tag, &mailbox, &entries, maxsize, &depth)).await,
            Kind::SetMetadata(m, v) => Box::pin(self.setmetadata(&tag, &m, v)).await,
            Kind::Idle => Box::pin(self.idle(&tag)).await,
            Kind::Xfer(m, server, part) => Box::pin(self.xfer(&tag, &m, &server, part)).await,
            Kind::LocalDelete(m) => Box::pin(self.localdelete(&tag, &m)).await,
            Kind::MupdatePush(m) => Box::pin(self.mupdatepush(&tag, &m)).await,
            Kind::XApply(x) => Box::pin(self.xapply(&tag, x)).await,
            Kind::Sync { apply, body } => Box::pin(self.replication(&tag, apply, body)).await,
            Kind::SyncRestart => {
                self.sync_stash.clear();
                self.tagged(&tag, "OK success").await
            }
            _ if self.sel.is_none() => self.tagged(&tag, "BAD Please select a mailbox first").await,
            Kind::Copy(..) | Kind::Move(..) | Kind::Store { .. } | Kind::StoreAnnotation { .. } | Kind::Expunge(..) if self.readonly() => {
                self.tagged(&tag, READONLY).await
            }
            Kind::Check => {
                Box::pin(self.sync(true)).await?;
                self.tagged(&tag, "OK Completed").await
            }
            Kind::Close => Box::pin(self.close(&tag, true)).await,
            Kind::Unselect => Box::pin(self.close(&tag, false)).await,
            Kind::Expunge(set) => Box::pin(self.expunge(&tag, set)).await,
            Kind::Fetch {
                set,
                items,
                changedsince,
                vanished,
            } => {
                if vanished && !(c.uid && self.qresync && changedsince.is_some()) {
                    // RFC 7162 3.2.6: UID FETCH, QRESYNC on, CHANGEDSINCE.
                    return self.tagged(&tag, "BAD Invalid Fetch modifier VANISHED").await;
                }
                Box::pin(self.fetch(&tag, c.uid, set, items, changedsince, vanished)).await
            }
            Kind::Store {
                set,
                mode,
                silent,
                flags,
                unchangedsince,
            } => Box::pin(self.store(&tag, c.uid, set, mode, silent, flags, unchangedsince)).await,
            Kind::Search { ret, charset, key } => Box::pin(self.search(&tag, c.uid, ret, charset, key)).await,
            Kind::Sort {
                ret,
                criteria,
                annotations,
                charset,
                key,
            } => Box::pin(self.sort_or_thread(&tag, c.uid, Some((criteria, annotations)), ret, "", &charset, key)).await,
            Kind::StoreAnnotation {
                set,
                annotations,
                unchangedsince,
            } => Box::pin(self.store_annotation(&tag, c.uid, set, annotations, unchangedsince)).await,
            Kind::Thread { algorithm, charset, key } => {
                Box::pin(self.sort_or_thread(&tag, c.uid, None, None, &algorithm, &charset, key)).await
            }
            Kind::Copy(set, m) => Box::pin(self.copy(&tag, c.uid, set, &m, false)).await,
            Kind::Move(set, m) => Box::pin(self.copy(&tag, c.uid, set, &m, true)).await,
        }
    }

    async fn login(&mut self, tag: &str, user: &str, pass: Secret<Vec<u8>>) -> Res {
        if !self.plaintext_ok() || self.tls_required() {
            return self.tagged(tag, "NO Login only available under a layer").await;
        }
        self.check_and_login(tag, user, user, Some(pass), "plaintext").await
    }

    /// Checks `authcid`'s password and logs in as `authzid` (proxy
    /// authorisation needs `admins` or `proxyservers`).
    /// Logs `authcid` in as `authzid`: the password is checked unless
    /// the mechanism has already proved who it is (`None`: GSSAPI).
    async fn check_and_login(&mut self, tag: &str, authzid: &str, authcid: &str, pass: Option<Secret<Vec<u8>>>, mech: &str) -> Res {
        // `imapmagicplus`: `user+anything` logs in as `user`; `user+`
        // then lists only subscribed mailboxes (Cyrus 3.6).
        let magic = self.ctx.conf.get_switch("imapmagicplus");
        let strip = |id: &str| -> (String, Option<bool>) {
            let (local, domain) = id.rsplit_once('@').map_or((id, ""), |(l, d)| (l, d));
            match local.split_once('+') {
                Some((u, rest)) if magic && !u.is_empty() => {
                    let at = if domain.is_empty() { String::new() } else { format!("@{domain}") };
                    (format!("{u}{at}"), Some(rest.is_empty()))
                }
                _ => (id.to_string(), None),
            }
        };
        let ((authzid, plus), (authcid, _)) = (strip(authzid), strip(authcid));
        self.magic_subscribed = plus == Some(true);
        let (authzid, authcid) = (authzid.as_str(), authcid.as_str());
        let (authzid, authcid) = (
            &super::cyrus::canon_userid(&self.ctx.conf, authzid),
            &super::cyrus::canon_userid(&self.ctx.conf, authcid),
        );
        if authzid != authcid {
            let proxies = self.ctx.conf.get("proxyservers").unwrap_or("").to_string();
            if !self.ctx.is_admin(authcid) && !proxies.split_whitespace().any(|p| p == authcid) {
                return self.tagged(tag, "NO Login failed: authorization failure").await;
            }
        }
        let checked = match &pass {
            Some(p) => self.ctx.check_password(authcid, p).await,
            None => Ok(true),
        };
        match checked {
            Ok(true) => {}
            Ok(false) => {
                self.ctx
                    .log
                    .info(&super::cyrus::badlogin_line(self.host.get().await, mech, authcid));
                tokio::time::sleep(self.ctx.conf.failed_login_pause()).await;
                return self.tagged(tag, "NO Login failed: authentication failure").await;
            }
            Err(e) => {
                self.ctx.log.warning(&format!("login: {}: {e}", self.host.get().await));
                return self.tagged(tag, "NO [UNAVAILABLE] Login failed: temporary failure").await;
            }
        }
        let (ctx, who) = (self.ctx.clone(), authzid.to_string());
        if let Ok(Some(msg)) = tokio::task::spawn_blocking(move || ctx.denied(&who, "imap")).await {
            self.ctx.log.info(&format!(
                "badlogin: {} {mech} {authzid} [user denied by cyr_deny]",
                self.host.get().await
            ));
            return self.tagged(tag, &format!("NO {msg}")).await;
        }
        let cfg = &self.ctx.store.cfg;
        // Admins get the standard namespace (`user/<name>`), as in Cyrus.
        let alt = cfg.altnamespace && !self.ctx.is_admin(authzid);
        let ns = Namespace::new(cfg.unixhierarchysep, alt, authzid, cfg.virtdomains, &cfg.defaultdomain)
            .with_prefixes(self.ctx.conf.get("userprefix"), self.ctx.conf.get("sharedprefix"))
            .with_deleted(&cfg.deletedprefix);
        self.groups = match self.ctx.groups(authzid).await {
            Ok(g) => g,
            Err(_) => {
                return self
                    .tagged(
                        tag,
                        "NO [UNAVAILABLE] Login failed: group membership is unavailable, try again later",
                    )
                    .await;
            }
        };
        match self.ctx.logins.admit(&self.ctx.conf, authzid, &self.peer) {
            Ok(slot) => self.login_slot = Some(slot),
            Err(why) => {
                self.ctx.log.error(&format!("Too many open connections ({why})"));
                return self.tagged(tag, &format!("NO Too many open connections ({why})")).await;
            }
        }
        self.user = Some(authzid.to_string());
        self.proxyadmin = authzid != authcid;
        self.ns = Some(ns.clone());
        self.ctx.log.info(&format!(
            "login: {} {authzid} {mech} User logged in SESSIONID=<{}>",
            self.host.get().await,
            self.sid
        ));
        if mech == "plaintext" && !self.tls {
            tokio::time::sleep(self.ctx.conf.plaintext_login_pause()).await;
        }
        // autocreate_quota >= 0: the INBOX is created at first login
        // (not an admin's, as Cyrus).
        let (ctx, inbox, groups) = (self.ctx.clone(), ns.inbox(), self.groups.clone());
        if !ctx.is_admin(authzid) && ctx.autocreate_allowed(authzid).await.unwrap_or(false) {
            let _ = tokio::task::spawn_blocking(move || super::cyrus::autocreate_inbox(&ctx, &inbox, &groups)).await;
        }
        let caps = self.capabilities();
        let sid = self.sid.clone();
        // Cyrus's words: LOGIN's, or AUTHENTICATE's with the protection
        // the session has (no mechanism here negotiates a layer).
        let done = match (mech, self.tls) {
            ("plaintext", _) => "User logged in",
            (_, true) => "Success (tls protection)",
            (_, false) => "Success (no protection)",
        };
        self.tagged(tag, &format!("OK [CAPABILITY {caps}] {done} SESSIONID=<{sid}>"))
            .await?;
        // `plaintextloginalert`: after a LOGIN without TLS, as Cyrus.
        if mech == "plaintext" && !self.tls {
            if let Some(alert) = self.ctx.conf.get("plaintextloginalert").filter(|a| !a.is_empty()) {
                let line = format!("* OK [ALERT] {alert}\r\n");
                self.out(&line).await?;
            }
        }
        Ok(())
    }

    /// AUTHENTICATE GSSAPI (RFC 4752): tokens as `+ base64` challenges.
    #[cfg(feature = "krb5")]
    async fn authenticate_gssapi(&mut self, tag: &str, ir: Option<String>) -> Res {
        use crate::auth::gssapi::{Server, Step};
        let mut server = Server::new(&self.ctx.sasl_service);
        let Some(mut line) = self.first_response(ir).await? else {
            return self.tagged(tag, "BAD Line too long").await;
        };
        loop {
            if line == b"*" {
                return self.tagged(tag, "BAD Client canceled authentication").await;
            }
            let Some(token) = sasl_token(&line) else {
                return self.tagged(tag, "BAD Invalid base64 string").await;
            };
            match server.step(&token) {
                Ok(Step::Send(t)) => {
                    self.out(&format!("+ {}\r\n", crate::util::base64_encode(&t))).await?;
                    line = match self.sasl_line().await? {
                        Some(l) => l,
                        None => return self.tagged(tag, "BAD Line too long").await,
                    };
                }
                Ok(Step::Done(a)) => {
                    let host = self.host.get().await.to_string();
                    let login = super::cyrus::gssapi_login_user(&self.ctx.conf, &self.ctx.log, &host, &a.principal).await;
                    let Some(user) = login else {
                        return self.tagged(tag, "NO Login failed: authentication failure").await;
                    };
                    let authzid = if a.authzid.is_empty() { user.clone() } else { a.authzid };
                    return self.check_and_login(tag, &authzid, &user, None, "GSSAPI").await;
                }
                Err(e) => {
                    let host = self.host.get().await.to_string();
                    let why = format!("SASL(-1): generic failure: {e}");
                    super::cyrus::gssapi_refused(&self.ctx.conf, &self.ctx.log, &host, &why).await;
                    return self.tagged(tag, "NO Login failed: generic failure").await;
                }
            }
        }
    }

    /// The initial response: SASL-IR's, else the line after an empty
    /// `+` challenge (None: too long).
    async fn first_response(&mut self, ir: Option<String>) -> Result<Option<Vec<u8>>, ReadError> {
        match ir {
            Some(r) => Ok(Some(r.into_bytes())),
            None => {
                self.out("+ \r\n").await?;
                self.sasl_line().await
            }
        }
    }

    async fn sasl_line(&mut self) -> Result<Option<Vec<u8>>, ReadError> {
        self.w.flush().await?;
        let idle = self.idle_timeout();
        self.input.line(io::MAX_LINE, idle).await
    }

    async fn authenticate(&mut self, tag: &str, mech: &str, ir: Option<String>) -> Res {
        if self.tls_required() {
            return self.tagged(tag, "NO Authenticate only available under a layer").await;
        }
        if super::cyrus::sasl_too_weak(&self.ctx, mech, self.ssf) {
            return self.tagged(tag, "NO mechanism too weak for this user").await;
        }
        #[cfg(feature = "krb5")]
        if mech == "GSSAPI" && self.ctx.gssapi {
            return self.authenticate_gssapi(tag, ir).await;
        }
        if !self.plaintext_ok() {
            return self.tagged(tag, "NO Authentication failed: encryption needed").await;
        }
        match mech {
            "PLAIN" => {
                let Some(resp) = self.first_response(ir).await? else {
                    return self.tagged(tag, "BAD Line too long").await;
                };
                if resp == b"*" {
                    return self.tagged(tag, "BAD Client canceled authentication").await;
                }
                let Some(raw) = sasl_token(&resp) else {
                    return self.tagged(tag, "BAD Invalid base64 string").await;
                };
                let parts: Vec<&[u8]> = raw.split(|&c| c == 0).collect();
                if parts.len() != 3 || parts[1].is_empty() {
                    return self.tagged(tag, "NO Authentication failed: bad protocol / cancel").await;
                }
                let authcid = String::from_utf8_lossy(parts[1]).into_owned();
                let authzid = if parts[0].is_empty() {
                    authcid.clone()
                } else {
                    String::from_utf8_lossy(parts[0]).into_owned()
                };
                self.check_and_login(tag, &authzid, &authcid, Some(Secret::new(parts[2].to_vec())), "PLAIN")
                    .await
            }
            "LOGIN" => {
                let user = match ir {
                    Some(r) => crate::util::base64_decode(&r),
                    None => {
                        self.out("+ VXNlcm5hbWU6\r\n").await?;
                        self.sasl_line()
                            .await?
                            .and_then(|l| crate::util::base64_decode(&String::from_utf8_lossy(&l)))
                    }
                };
                let Some(user) = user else {
                    return self.tagged(tag, "BAD Invalid base64 string").await;
                };
                self.out("+ UGFzc3dvcmQ6\r\n").await?;
                let Some(pass) = self
                    .sasl_line()
                    .await?
                    .and_then(|l| crate::util::base64_decode(&String::from_utf8_lossy(&l)))
                else {
                    return self.tagged(tag, "BAD Invalid base64 string").await;
                };
                let u = String::from_utf8_lossy(&user).into_owned();
                self.check_and_login(tag, &u, &u, Some(Secret::new(pass)), "LOGIN").await
            }
            _ => self.tagged(tag, "NO no mechanism available").await,
        }
    }
}

/// A SASL response line: `=` is empty, anything else base64.
fn sasl_token(line: &[u8]) -> Option<Vec<u8>> {
    if line == b"=" {
        Some(Vec::new())
    } else {
        crate::util::base64_decode(&String::from_utf8_lossy(line))
    }
}

pub fn main(args: &[String]) -> i32 {
    // A Murder front end's imapd is the proxy.
    if super::front::frontend_args(args, "imap") {
        return super::proxyd::main("imapd", args, false);
    }
    super::cyrus::run_service(
        "imapd",
        args,
        |a| if a.tls { "imaps" } else { "imap" },
        "imap",
        |_| vec!["143".to_string()],
        |ctx, a| {
            if a.tls && ctx.tls.is_none() {
                return Err("imaps (-s) needs tls_server_cert and tls_server_key".into());
            }
            Ok(Imapd { ctx, implicit_tls: a.tls })
        },
    )
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// What an idle connection costs is mostly its futures' sizes: print
    /// them (`cargo test --lib future_sizes -- --nocapture`) and keep
    /// them bounded.
    #[tokio::test]
    async fn future_sizes() {
        let d = tempfile::tempdir().unwrap();
        let conf = d.path().join("imapd.conf");
        std::fs::write(
            &conf,
            format!("configdirectory: {0}/c\npartition-default: {0}/s\n", d.path().display()),
        )
        .unwrap();
        let ctx = Arc::new(Ctx::load(conf.to_str().unwrap(), "imap", "imap").unwrap());
        let (a, _b) = tokio::io::duplex(64);
        let io: Box<dyn Io> = Box::new(a);
        let (r, w) = tokio::io::split(io);
        let mut s = Session::new(ctx.clone(), r, w, false, String::new(), String::new());
        let session = std::mem::size_of::<Session>();
        let selected = std::mem::size_of::<Selected>();
        let run = std::mem::size_of_val(&s.run());
        let idle = std::mem::size_of_val(&s.idle("a"));
        let limits = io::CommandLimits::fixed(1);
        let cmd = std::mem::size_of_val(&s.input.command(&mut s.w, &limits, Duration::from_secs(1)));
        let svc = Arc::new(Imapd { ctx, implicit_tls: false });
        let (c, _d) = tokio::net::UnixStream::pair().unwrap();
        let serve = std::mem::size_of_val(&crate::server::Service::serve(svc, crate::server::Conn::Unix(c)));
        let command = std::mem::size_of::<command::Command>();
        let dispatch = std::mem::size_of_val(&s.dispatch(command::parse(b"a NOOP").unwrap()));
        eprintln!("dispatch {dispatch}");
        eprintln!("Session {session} Selected {selected} Command {command} run {run} idle {idle} command-read {cmd} serve {serve}");
        assert!(serve < 4096 && idle < 4096);
    }
}
