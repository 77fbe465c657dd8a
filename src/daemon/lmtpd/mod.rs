//! lmtpd: LMTP delivery into the store (RFC 2033) with Cyrus lmtpd's
//! replies.  UNIX-socket clients are trusted as `postman`; TCP clients
//! must AUTH unless `-a`.  One reply per accepted recipient after DATA;
//! each `250` follows the durable commit of that recipient's copy.

mod sieve;
pub(super) mod trace;

use super::cyrus::Ctx;
use crate::mail::Secret;
use crate::proto::lmtp::{self, Command, DataReceiver};
use crate::server::listen::Io;
use crate::server::Conn;
use crate::store::{Cached, Delivery, MailboxEntry, StoreError};
use crate::util::lines::{Line, RawLines};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufWriter};

/// A Sieve reject as the LMTP reply: a line per line of the reason, as
/// Cyrus answers.
fn reject_reply(reason: &str) -> String {
    let lines: Vec<&str> = reason.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let lines = if lines.is_empty() { vec!["Rejected"] } else { lines };
    let n = lines.len();
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| format!("550{}5.7.1 {l}", if i + 1 < n { '-' } else { ' ' }))
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// The message without the Return-Path lmtpd put first (a redirect's
/// sender is the envelope's).
fn without_return_path(msg: &[u8]) -> &[u8] {
    if msg.len() > 12 && msg[..12].eq_ignore_ascii_case(b"Return-Path:") {
        if let Some(i) = memchr::memchr(b'\n', msg) {
            return &msg[i + 1..];
        }
    }
    msg
}

/// Version shown in greetings; Cyrus's format so that peers parse it.
pub const CYRUS_VERSION: &str = concat!("3.6.1-mumail-", env!("CARGO_PKG_VERSION"));
/// Longest command line.
const MAX_COMMAND: usize = 4096;
/// Longest line inside DATA that is stored (longer lines are an error).
const MAX_DATA_LINE: usize = 1 << 20;
/// A message is read in pieces of up to this size.
const DATA_CHUNK: usize = 64 * 1024;
/// Most recipients per transaction.
pub const MAX_RCPT: usize = 1000;
/// Cyrus lmtpd's replies to an unknown command (HELO and EHLO too) and
/// to VRFY.
pub const SYNTAX: &str = "500 5.5.2 Syntax error";

/// The reply to MAIL before AUTH on TCP: temporary with `soft_noauth`
/// (default yes, as Cyrus), so that a hub whose LMTP login is missing or
/// wrong queues the mail rather than bouncing it.
pub fn noauth(conf: &crate::config::cyrus::ImapdConf) -> &'static str {
    if conf.get_switch("soft_noauth") {
        "430 Authentication required"
    } else {
        "530 Authentication required"
    }
}
pub const VRFY: &str = "252 2.3.3 try RCPT to attempt delivery";

/// Why a MAIL is refused before its arguments are looked at, in Cyrus
/// lmtpengine's order: no login, then a transaction already open.
pub fn mail_refusal(conf: &crate::config::cyrus::ImapdConf, authed: bool, in_mail: bool) -> Option<&'static str> {
    if !authed {
        Some(noauth(conf))
    } else if in_mail {
        Some("503 5.5.1 Nested MAIL command")
    } else {
        None
    }
}

/// Why a RCPT is refused before its arguments are looked at: no MAIL,
/// then too many recipients.
pub fn rcpt_refusal(in_mail: bool, rcpts: usize) -> Option<&'static str> {
    if !in_mail {
        Some("503 5.5.1 Need MAIL command")
    } else if rcpts >= MAX_RCPT {
        Some("452 4.5.3 Too many recipients")
    } else {
        None
    }
}

/// The reply to a MAIL or RCPT whose arguments are bad: the session's
/// state is checked before the address, as Cyrus does, then `syntax`.
pub fn bad_path_reply(
    line: &[u8],
    conf: &crate::config::cyrus::ImapdConf,
    authed: bool,
    in_mail: bool,
    rcpts: usize,
    syntax: &'static str,
) -> &'static str {
    let verb = line.get(..5).map(|v| v.to_ascii_uppercase());
    let early = match verb.as_deref() {
        Some(b"MAIL ") => mail_refusal(conf, authed, in_mail),
        Some(b"RCPT ") => rcpt_refusal(in_mail, rcpts),
        _ => None,
    };
    early.unwrap_or(syntax)
}

/// MAIL's parameters as Cyrus lmtpd takes them (SIZE, BODY=7BIT or
/// 8BITMIME, AUTH): the refusal, if any.
pub fn mail_params_error(params: &[(String, Option<String>)], max: usize) -> Option<String> {
    for (k, v) in params {
        match (k.as_str(), v.as_deref()) {
            ("SIZE", Some(n)) => match n.parse::<u64>() {
                Ok(n) if n > max as u64 => {
                    return Some(format!("552 5.2.3 Message SIZE exceeds fixed maximum message size ({max})"));
                }
                Ok(_) => {}
                Err(_) => return Some("501 5.5.4 Syntax error in parameters".into()),
            },
            ("BODY", Some(b)) if b.eq_ignore_ascii_case("7BIT") || b.eq_ignore_ascii_case("8BITMIME") => {}
            ("BODY", _) => return Some("501 5.5.4 Unrecognized BODY type".into()),
            ("AUTH", Some(_)) => {}
            _ => return Some("501 5.5.4 Unrecognized parameters".into()),
        }
    }
    None
}

/// RCPT's: only IGNOREQUOTA (no DSN, as Cyrus lmtpd).
pub fn rcpt_params_error(params: &[(String, Option<String>)]) -> Option<&'static str> {
    params
        .iter()
        .any(|(k, _)| k != "IGNOREQUOTA")
        .then_some("501 5.5.4 Unrecognized parameters")
}

/// Cyrus lmtpd's reply to a recipient with no mailbox.
pub const UNKNOWN: &str = "550-Mailbox unknown.  Either there is no mailbox associated with this\r\n\
                       550-name or you do not have authorization to see it.\r\n550 5.1.1 User unknown";
/// ... and to one whose mailbox the sender may not post to.
pub const NO_POST: &str = "550-You do not have permission to post a message to this mailbox.\r\n\
                           550-Please contact the owner of this mailbox in order to submit\r\n\
                           550-your message, or postmaster if you believe you\r\n\
                           550-received this message in error.\r\n550 5.7.1 Permission denied";
const IDLE: Duration = Duration::from_secs(300);

pub struct Lmtpd {
    pub ctx: Arc<Ctx>,
    pub preauth: bool,
}

struct Rcpt {
    /// As given (for logs).
    addr: String,
    mailbox: String,
    ignore_quota: bool,
    /// For duplicate suppression: the user part.
    user: String,
    /// The user's INBOX (empty for a shared folder), for Sieve.
    inbox: String,
    /// `mailbox` is the INBOX because the +detail folder refused the post.
    keep_refused: bool,
}

impl crate::server::Service for Lmtpd {
    async fn serve(self: Arc<Self>, conn: Conn) {
        let unix = matches!(conn, Conn::Unix(_));
        let peer = conn.peer();
        let io = conn.into_io();
        let (r, w) = tokio::io::split(io);
        let mut s = Session {
            d: self.clone(),
            r,
            w: BufWriter::new(w),
            input: RawLines::new(MAX_DATA_LINE),
            bdat: None,
            preauth: unix || self.preauth,
            tls: false,
            ssf: 0,
            authed: unix || self.preauth,
            ident: "postman".to_string(),
            lhlo: String::new(),
            host: crate::server::peer::ClientHost::new(&peer),
            peer,
            sid: self.ctx.session_id(),
            from: None,
            rcpts: Vec::new(),
        };
        let _ = s.run().await;
    }
}

/// Makes the header to store from a received one (`trace::Prehash`).
pub(crate) type Dress<'a> = dyn Fn(&[u8]) -> Option<Vec<u8>> + Send + Sync + 'a;

pub(crate) type Rd = tokio::io::ReadHalf<Box<dyn Io>>;
pub(crate) type Wr = tokio::io::WriteHalf<Box<dyn Io>>;

struct Session {
    d: Arc<Lmtpd>,
    r: Rd,
    w: BufWriter<Wr>,
    /// What the client sent, not yet taken (commands are split off one
    /// at a time; a message or a BDAT chunk is taken raw).
    input: RawLines,
    /// A BDAT transaction's content so far (RFC 3030).
    bdat: Option<crate::proto::smtp::BdatReceiver>,
    /// Trusted from the start (UNIX socket, `-a`): no STARTTLS, no AUTH.
    preauth: bool,
    /// STARTTLS done.
    tls: bool,
    /// Its strength for `sasl_minimum_layer` (0 without TLS).
    ssf: u32,
    authed: bool,
    /// Who the LMTP client is for ACLs: `postman` on the socket, else the
    /// authenticated user.
    ident: String,
    lhlo: String,
    peer: String,
    /// Cyrus's client host text, `name [addr]`, for logs and Received.
    host: crate::server::peer::ClientHost,
    sid: String,
    from: Option<String>,
    rcpts: Vec<Rcpt>,
}

type IoResult = std::io::Result<()>;

/// STARTTLS's checks and replies as Cyrus's lmtpd gives them (lmtpd and
/// lmtpproxyd): `500` without TLS (or on a trusted connection), `454`
/// when done already, `503` within a transaction, else `220` (flushed)
/// and the acceptor for the handshake.
pub(crate) async fn starttls_begin(
    w: &mut BufWriter<Wr>,
    acc: Option<Arc<rustls::ServerConfig>>,
    done: bool,
    in_transaction: bool,
) -> std::io::Result<Option<Arc<rustls::ServerConfig>>> {
    let text = match acc {
        None => "500 5.5.2 Syntax error",
        Some(_) if done => "454 4.3.3 Already successfully executed STARTTLS",
        Some(_) if in_transaction => "503 5.5.0 STARTTLS not permitted now",
        Some(a) => {
            w.write_all(b"220 Begin TLS negotiation now\r\n").await?;
            w.flush().await?;
            return Ok(Some(a));
        }
    };
    w.write_all(text.as_bytes()).await?;
    w.write_all(b"\r\n").await?;
    Ok(None)
}

/// The TLS handshake after `220`, within 360 s: the session's strength
/// (`util::tls::server_ssf`); a failure is logged (`[name] STARTTLS
/// failed: peer (why)`) and ends the connection (None).
pub(crate) async fn starttls_handshake(
    r: &mut Rd,
    w: &mut BufWriter<Wr>,
    acc: Arc<rustls::ServerConfig>,
    log: &crate::log::Logger,
    name: &str,
    peer: &str,
) -> Option<u32> {
    let hs = crate::server::listen::tls_upgrade_halves(r, w, acc);
    let why = match tokio::time::timeout(Duration::from_secs(360), hs).await {
        Ok(Ok((summary, ssf))) => {
            log.info(&format!("starttls: {summary}"));
            return Some(ssf);
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => "timed out".to_string(),
    };
    log.info(&format!("[{name}] STARTTLS failed: {peer} ({why})"));
    None
}

impl Session {
    async fn reply(&mut self, text: &str) -> IoResult {
        self.w.write_all(text.as_bytes()).await?;
        self.w.write_all(b"\r\n").await
    }

    /// Sends a SASL challenge line and reads the client's answer (None:
    /// the connection ended or the line was too long).
    async fn challenge(&mut self, prompt: &str) -> std::io::Result<Option<String>> {
        self.reply(prompt).await?;
        Ok(match self.next_line().await? {
            Some(Line::Complete(l)) => Some(String::from_utf8_lossy(&l).into_owned()),
            _ => None,
        })
    }

    async fn next_line(&mut self) -> std::io::Result<Option<Line>> {
        loop {
            if let Some(l) = self.input.next_line() {
                return Ok(Some(l));
            }
            // Pipelined replies go out before we wait for more input.
            self.w.flush().await?;
            let mut chunk = [0u8; 16 * 1024];
            match crate::server::read_within(&mut self.r, &mut chunk, IDLE).await? {
                0 => return Ok(None),
                n => self.input.push(&chunk[..n]),
            }
        }
    }

    async fn run(&mut self) -> IoResult {
        let ctx = self.d.ctx.clone();
        self.reply(&format!("220 {}server ready", ctx.server_info.greeting(&ctx.servername, "LMTP")))
            .await?;
        let strict_addresses = ctx.conf.get_switch("lmtp_strict_rfc2821");
        loop {
            let line = match self.next_line().await? {
                None => return Ok(()),
                Some(Line::TooLong) => {
                    self.reply("500 5.5.2 Line too long").await?;
                    continue;
                }
                Some(Line::Complete(l)) => l,
            };
            if line.len() > MAX_COMMAND {
                self.reply("500 5.5.2 Line too long").await?;
                continue;
            }
            match lmtp::parse_with(&line, strict_addresses) {
                Command::Lhlo(h) => {
                    self.lhlo = h;
                    self.bdat = None;
                    self.from = None;
                    self.rcpts.clear();
                    let mut lines = vec![
                        ctx.servername.clone(),
                        "8BITMIME".into(),
                        "ENHANCEDSTATUSCODES".into(),
                        "PIPELINING".into(),
                        // Not in Cyrus's list: our front ends' lmtpproxyd
                        // sends a small message with its MAIL and RCPTs.
                        "CHUNKING".into(),
                    ];
                    match ctx.conf.get_int("maxmessagesize") {
                        n if n > 0 => lines.push(format!("SIZE {n}")),
                        _ => lines.push("SIZE".into()),
                    }
                    // TCP clients are offered PLAIN and LOGIN.  Cyrus 3.6
                    // offers `AUTH EXTERNAL` on its UNIX socket, whose
                    // clients are already `postman`; we offer nothing there,
                    // because a Postfix with lmtp_sasl_auth_enable then finds
                    // no usable mechanism and defers every delivery.  (No
                    // DSN: Cyrus 3.6 does not advertise it; see the
                    // transcripts.)
                    if ctx.tls.is_some() && !self.preauth && !self.tls {
                        lines.push("STARTTLS".into());
                    }
                    // Passwords in the clear only under TLS or with
                    // `allowplaintext`, as Cyrus's SASL properties allow.
                    // (None below `sasl_minimum_layer`.)
                    if !self.authed && super::cyrus::sasl_layer_ok(&ctx.conf, self.ssf) {
                        let mut mechs: Vec<&str> = Vec::new();
                        if ctx.gssapi {
                            mechs.push("GSSAPI");
                        }
                        if self.plaintext_ok() {
                            mechs.extend(["PLAIN", "LOGIN"]);
                        }
                        if !mechs.is_empty() {
                            lines.push(format!("AUTH {}", mechs.join(" ")));
                        }
                    }
                    lines.push("IGNOREQUOTA".into());
                    for l in &lines {
                        self.reply(&format!("250-{l}")).await?;
                    }
                    let sid = self.sid.clone();
                    self.reply(&format!("250 Ok SESSIONID=<{sid}>")).await?;
                }
                // Cyrus lmtpd's words for HELO/EHLO (RFC 2033 4.1 refuses them).
                Command::HeloEhlo => self.reply(SYNTAX).await?,
                Command::Auth(mech, ir) => self.auth(&mech, ir).await?,
                Command::Mail(from, params) => {
                    if let Some(r) = mail_refusal(&ctx.conf, self.authed, self.from.is_some()) {
                        self.reply(r).await?;
                    } else if let Some(e) = mail_params_error(&params, ctx.conf.max_message_size()) {
                        self.reply(&e).await?;
                    } else {
                        self.from = Some(from);
                        self.reply("250 2.1.0 ok").await?;
                    }
                }
                Command::Rcpt(to, params) => {
                    if let Some(r) = rcpt_refusal(self.from.is_some(), self.rcpts.len()) {
                        self.reply(r).await?;
                    } else if let Some(e) = rcpt_params_error(&params) {
                        self.reply(e).await?;
                    } else {
                        let ignore = params.iter().any(|(k, _)| k == "IGNOREQUOTA");
                        let r = if to.is_empty() {
                            UNKNOWN.to_string()
                        } else {
                            self.rcpt(&to, ignore).await
                        };
                        self.reply(&r).await?;
                    }
                }
                Command::Bdat(size, last) => self.bdat(size, last).await?,
                Command::Data => {
                    // (Cyrus asks for recipients first, with or without MAIL.)
                    if self.bdat.is_some() {
                        self.reply("503 5.5.1 DATA after BDAT").await?;
                    } else if self.rcpts.is_empty() {
                        self.reply("503 5.5.1 No recipients").await?;
                    } else if self.from.is_none() {
                        self.reply("503 5.5.1 Need MAIL command").await?;
                    } else {
                        self.data().await?;
                    }
                }
                Command::Rset => {
                    self.bdat = None;
                    self.from = None;
                    self.rcpts.clear();
                    self.sid = ctx.session_id();
                    let sid = self.sid.clone();
                    self.reply(&format!("250 2.0.0 Ok SESSIONID=<{sid}>")).await?;
                }
                Command::Noop => self.reply("250 2.0.0 ok").await?,
                Command::Quit => {
                    self.reply("221 2.0.0 bye").await?;
                    self.w.flush().await?;
                    return Ok(());
                }
                Command::StartTls => {
                    if !self.starttls().await? {
                        return Ok(());
                    }
                }
                Command::Vrfy => self.reply(VRFY).await?,
                Command::Unknown(_) => self.reply(SYNTAX).await?,
                Command::Syntax(r) => {
                    let r = bad_path_reply(&line, &ctx.conf, self.authed, self.from.is_some(), self.rcpts.len(), r);
                    self.reply(r).await?
                }
            }
        }
    }

    /// Passwords in the clear are fine under TLS or with `allowplaintext`.
    fn plaintext_ok(&self) -> bool {
        self.tls || self.d.ctx.conf.get_switch("allowplaintext")
    }

    /// STARTTLS (RFC 3207) with Cyrus lmtpd's replies; the session starts
    /// over under TLS and input pipelined after the command is dropped.
    /// False when the connection is gone (a failed handshake).
    async fn starttls(&mut self) -> std::io::Result<bool> {
        let acc = if self.preauth { None } else { self.d.ctx.tls.clone() };
        let Some(acc) = starttls_begin(&mut self.w, acc, self.tls, !self.rcpts.is_empty()).await? else {
            return Ok(true);
        };
        self.input.clear();
        self.bdat = None;
        let Some(ssf) = starttls_handshake(&mut self.r, &mut self.w, acc, &self.d.ctx.log, "lmtpd", &self.peer).await else {
            return Ok(false);
        };
        self.tls = true;
        self.ssf = ssf;
        self.lhlo.clear();
        self.from = None;
        self.rcpts.clear();
        Ok(true)
    }

    async fn auth(&mut self, mech: &str, ir: Option<String>) -> IoResult {
        if self.authed {
            return self.reply("503 5.5.0 already authenticated").await;
        }
        // A mechanism below `sasl_minimum_layer`, or any before STARTTLS
        // under `tls_required` (which Cyrus's lmtpd still lists in LHLO):
        // Cyrus's lmtpd words libsasl's "too weak" so.
        let before_tls = !self.tls && self.d.ctx.conf.get_switch("tls_required");
        if super::cyrus::sasl_too_weak(&self.d.ctx, mech, self.ssf) || (before_tls && super::cyrus::our_mech(&self.d.ctx, mech)) {
            return self.reply("501 5.5.4 undefined error!").await;
        }
        if matches!(mech, "PLAIN" | "LOGIN") && !self.plaintext_ok() {
            return self.reply("504 5.5.4 Unrecognized authentication type").await;
        }
        #[cfg(feature = "krb5")]
        if mech == "GSSAPI" && self.d.ctx.gssapi {
            return self.auth_gssapi(ir).await;
        }
        let decode = |s: &str| crate::util::base64_decode(s.trim());
        let (user, pass) = match mech {
            "PLAIN" => {
                let resp = match ir {
                    Some(r) if r != "=" => r,
                    Some(_) => String::new(),
                    None => match self.challenge("334 ").await? {
                        Some(l) => l,
                        None => return Ok(()),
                    },
                };
                if resp.trim() == "*" {
                    return self.reply("501 5.5.4 client canceled authentication").await;
                }
                let Some(raw) = decode(&resp) else {
                    return self.reply("501 5.5.4 Syntax error in parameters").await;
                };
                let parts: Vec<&[u8]> = raw.split(|&c| c == 0).collect();
                if parts.len() != 3 {
                    return self.reply("501 5.5.4 Syntax error in parameters").await;
                }
                (String::from_utf8_lossy(parts[1]).into_owned(), parts[2].to_vec())
            }
            "LOGIN" => {
                self.reply("334 VXNlcm5hbWU6").await?;
                let u = match self.next_line().await? {
                    Some(Line::Complete(l)) => decode(&String::from_utf8_lossy(&l)),
                    _ => return Ok(()),
                };
                self.reply("334 UGFzc3dvcmQ6").await?;
                let p = match self.next_line().await? {
                    Some(Line::Complete(l)) => decode(&String::from_utf8_lossy(&l)),
                    _ => return Ok(()),
                };
                match (u, p) {
                    (Some(u), Some(p)) => (String::from_utf8_lossy(&u).into_owned(), p),
                    _ => return self.reply("501 5.5.4 Syntax error in parameters").await,
                }
            }
            _ => return self.reply("504 5.5.4 Unrecognized authentication type").await,
        };
        let user = super::cyrus::canon_userid(&self.d.ctx.conf, &user);
        match self.d.ctx.check_password(&user, &Secret::new(pass)).await {
            Ok(true) => {
                self.authed = true;
                self.ident = user.clone();
                self.d
                    .ctx
                    .log
                    .info(&format!("login: {} {user} {mech} User logged in", self.host.get().await));
                self.reply("235 Authenticated!").await
            }
            Ok(false) => {
                self.d.ctx.log.info(&format!(
                    "badlogin: {} {mech} [SASL(-13): authentication failure]",
                    self.host.get().await
                ));
                self.reply("535 5.7.8 Authentication failed").await
            }
            Err(e) => {
                self.d.ctx.log.warning(&e);
                self.reply("454 4.7.0 Temporary authentication failure").await
            }
        }
    }

    /// AUTH GSSAPI (RFC 4752): `334` challenges; the principal, realm
    /// mapped as Cyrus does, becomes the session's identity.
    #[cfg(feature = "krb5")]
    async fn auth_gssapi(&mut self, ir: Option<String>) -> IoResult {
        use crate::auth::gssapi::{Server, Step};
        let mut server = Server::new(&self.d.ctx.sasl_service);
        let mut resp = match ir {
            Some(r) if r != "=" => r,
            Some(_) => String::new(),
            None => match self.challenge("334 ").await? {
                Some(l) => l,
                None => return Ok(()),
            },
        };
        loop {
            if resp.trim() == "*" {
                return self.reply("501 5.5.4 client canceled authentication").await;
            }
            let Some(token) = crate::util::base64_decode(resp.trim()) else {
                return self.reply("501 5.5.4 Syntax error in parameters").await;
            };
            let failure = match server.step(&token) {
                Ok(Step::Send(c)) => {
                    resp = match self.challenge(&format!("334 {}", crate::util::base64_encode(&c))).await? {
                        Some(l) => l,
                        None => return Ok(()),
                    };
                    continue;
                }
                Ok(Step::Done(a)) => match super::cyrus::gssapi_user(&self.d.ctx.conf, &a.principal) {
                    Ok(user) if a.authzid.is_empty() || a.authzid == user => {
                        self.authed = true;
                        self.ident = user.clone();
                        self.d
                            .ctx
                            .log
                            .info(&format!("login: {} {user} GSSAPI User logged in", self.host.get().await));
                        return self.reply("235 Authenticated!").await;
                    }
                    Ok(user) => format!("{user} may not act as {}", a.authzid),
                    Err(e) => e,
                },
                Err(e) => e,
            };
            self.d
                .ctx
                .log
                .info(&format!("badlogin: {} GSSAPI [{failure}]", self.host.get().await));
            return self.reply("535 5.7.8 Authentication failed").await;
        }
    }

    /// Resolves a recipient to a mailbox: `user+detail@domain`.
    async fn rcpt(&mut self, to: &str, ignore_quota: bool) -> String {
        let ctx = self.d.ctx.clone();
        let cfg = &ctx.store.cfg;
        let mut addr = to.to_string();
        if ctx.conf.get_switch("lmtp_downcase_rcpt") {
            // As Cyrus: the user part up to '+' (and the domain); the
            // +detail keeps its case, it names a folder.
            let (local, domain) = addr.rsplit_once('@').map_or((addr.as_str(), None), |(l, d)| (l, Some(d)));
            let (user, detail) = local.split_once('+').map_or((local, None), |(u, d)| (u, Some(d)));
            let mut a = user.to_lowercase();
            if let Some(d) = detail {
                a.push('+');
                a.push_str(d);
            }
            if let Some(d) = domain {
                a.push('@');
                a.push_str(&d.to_lowercase());
            }
            addr = a;
        }
        let (local, domain) = match addr.rsplit_once('@') {
            Some((l, d)) => (l.to_string(), d.to_string()),
            None => (addr.clone(), String::new()),
        };
        let local = local.trim_matches('"').to_string();
        let (user, detail) = match local.split_once('+') {
            Some((u, d)) => (u.to_string(), Some(d.to_string())),
            None => (local.clone(), None),
        };
        let userid = if cfg.virtdomains && !domain.is_empty() {
            format!("{user}@{domain}")
        } else {
            user.clone()
        };
        let unknown = UNKNOWN.to_string();
        // `postuser+folder` (by default `+folder`): a shared folder.
        if let Some(name) = shared_folder(&ctx.conf, &user, detail.as_deref(), &domain) {
            return self.rcpt_shared(to, name, ignore_quota, &unknown).await;
        }
        let Ok(inbox) = crate::store::names::user_inbox(&userid, cfg.unixhierarchysep, cfg.virtdomains, &cfg.defaultdomain) else {
            return unknown;
        };
        let store = ctx.store.clone();
        let ib = inbox.clone();
        let strict = ctx.conf.get_switch("lmtp_strict_quota");
        let mut autocreate = ctx.conf.get_switch("autocreate_post") && cfg.autocreate_quota >= 0;
        // The user's groups, for the shared folders an autocreate
        // subscribes (`l` for a group).
        let mut groups = Vec::new();
        let restricted = ctx.conf.get("autocreate_users").is_some_and(|l| !l.eq_ignore_ascii_case("anyone"));
        let shared_subs = ctx.conf.get_switch("autocreate_subscribe_sharedfolders_all")
            || ctx
                .conf
                .get("autocreate_subscribe_sharedfolders")
                .is_some_and(|s| !s.trim().is_empty());
        if autocreate && (restricted || shared_subs) {
            // Only a missing INBOX asks whether its user may have one
            // (and, for the shared folders, the user's groups): a
            // delivery to an existing one stays one store call.
            let (s, ib) = (ctx.store.clone(), inbox.clone());
            let exists = tokio::task::spawn_blocking(move || s.lookup(&ib).map(|e| e.is_some()))
                .await
                .map_or(Ok(false), |r| r)
                .unwrap_or(false);
            if !exists && restricted {
                match ctx.autocreate_allowed(&userid).await {
                    Ok(ok) => autocreate = ok,
                    Err(_) => return "451 4.3.0 Temporary failure: the directory cannot be asked".to_string(),
                }
            }
            if !exists && shared_subs {
                groups = ctx.groups(&userid).await.unwrap_or_default();
            }
        }
        let actx = ctx.clone();
        let detail_box = detail.map(|d| crate::store::names::detail_mailbox(&inbox, &d, cfg.unixhierarchysep));
        let who = self.ident.clone();
        let fuzzy = ctx.conf.get_switch("lmtp_fuzzy_mailbox_match");
        let excluded: Vec<String> = ctx
            .conf
            .get("lmtp_exclude_specialuse")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let res = tokio::task::spawn_blocking(move || -> Result<(String, bool, bool), StoreError> {
            if store.lookup(&ib)?.is_none() {
                if !autocreate {
                    return Err(StoreError::NotFound);
                }
                // As at a first login: subscriptions, folders, shared
                // folders (Cyrus's lmtpd calls the same autocreate).
                crate::daemon::cyrus::autocreate_inbox(&actx, &ib, &groups)?;
                if store.lookup(&ib)?.is_none() {
                    return Err(StoreError::NotFound);
                }
            }
            // +detail delivers into the folder when it exists (under
            // `lmtp_fuzzy_mailbox_match`, when one is near enough), its
            // ACL lets anyone, or the LMTP client's identity, post ('p'),
            // and its special use is not one of `lmtp_exclude_specialuse`,
            // as Cyrus; else into INBOX.
            let mut target = ib.clone();
            let mut refused = false;
            if let Some(db) = detail_box {
                let found = match store.lookup(&db)? {
                    Some(e) => Some(e),
                    None if fuzzy => fuzzy_match(store.list_prefix(&format!("{ib}."))?, &ib, &db),
                    None => None,
                };
                if let Some(e) = found {
                    let uses = store.special_use(&e.name)?.unwrap_or_default();
                    let excluded = uses.split_whitespace().any(|u| excluded.iter().any(|x| x.eq_ignore_ascii_case(u)));
                    if !excluded && acl_allows(&e.acl, &["anyone", &who], 'p') {
                        target = e.name;
                    } else {
                        refused = true;
                    }
                }
            }
            // Cyrus refuses at RCPT a root that is already over its limit
            // (with lmtp_strict_quota: one that a message cannot enter).
            let full = |used: i64, limit: i64| if strict { used >= limit } else { used > limit };
            let over = store.quota_roots(&target)?.iter().any(|q| {
                (q.storage_limit >= 0 && full(q.storage_used, q.storage_limit * 1024))
                    || (q.message_limit >= 0 && full(q.message_used, q.message_limit))
            });
            Ok((target, over, refused))
        })
        .await;
        match res {
            Ok(Ok((mailbox, over, keep_refused))) => {
                if over && !ignore_quota {
                    return self.quota_reply(&ctx);
                }
                self.rcpts.push(Rcpt {
                    addr: to.to_string(),
                    mailbox,
                    ignore_quota,
                    user: userid,
                    inbox,
                    keep_refused,
                });
                "250 2.1.5 ok".to_string()
            }
            // `lmtp_catchall_mailbox`: mail for a user without a mailbox
            // goes to that user's INBOX (any +detail aside), as Cyrus.
            Ok(Err(StoreError::NotFound)) => match ctx.conf.get("lmtp_catchall_mailbox").filter(|c| !c.is_empty() && *c != userid) {
                Some(catchall) => {
                    let reply = Box::pin(self.rcpt(catchall, ignore_quota)).await;
                    if reply.starts_with("250") {
                        if let Some(r) = self.rcpts.last_mut() {
                            r.addr = to.to_string();
                        }
                    }
                    reply
                }
                None => unknown,
            },
            Ok(Err(e)) => {
                ctx.log.error(&format!("IOERROR: verifying recipient {to}: {e}"));
                "451 4.3.0 System I/O error".to_string()
            }
            Err(_) => "451 4.3.0 System I/O error".to_string(),
        }
    }

    /// A recipient naming a shared folder: it must exist and let anyone,
    /// or the LMTP client's identity, post ('p'); admins may always.
    async fn rcpt_shared(&mut self, to: &str, name: String, ignore_quota: bool, unknown: &str) -> String {
        let ctx = self.d.ctx.clone();
        let store = ctx.store.clone();
        let who = self.ident.clone();
        let admin = self.authed && ctx.is_admin(&who);
        let strict = ctx.conf.get_switch("lmtp_strict_quota");
        let n = name.clone();
        let res = tokio::task::spawn_blocking(move || -> Result<Option<bool>, StoreError> {
            let Some(e) = store.lookup(&n)? else {
                return Err(StoreError::NotFound);
            };
            if !admin && !acl_allows(&e.acl, &["anyone", &who], 'p') {
                return Ok(None);
            }
            let full = |used: i64, limit: i64| if strict { used >= limit } else { used > limit };
            Ok(Some(store.quota_roots(&n)?.iter().any(|q| {
                (q.storage_limit >= 0 && full(q.storage_used, q.storage_limit * 1024))
                    || (q.message_limit >= 0 && full(q.message_used, q.message_limit))
            })))
        })
        .await;
        match res {
            Ok(Ok(Some(over))) => {
                if over && !ignore_quota {
                    return self.quota_reply(&ctx);
                }
                self.rcpts.push(Rcpt {
                    addr: to.to_string(),
                    mailbox: name,
                    ignore_quota,
                    user: String::new(),
                    inbox: String::new(),
                    keep_refused: false,
                });
                "250 2.1.5 ok".to_string()
            }
            Ok(Ok(None)) => NO_POST.to_string(),
            Ok(Err(StoreError::NotFound)) => unknown.to_string(),
            _ => "451 4.3.0 System I/O error".to_string(),
        }
    }

    fn quota_reply(&self, ctx: &Ctx) -> String {
        if ctx.conf.get_switch("lmtp_over_quota_perm_failure") {
            format!("552 5.2.2 Over quota SESSIONID=<{}>", self.sid)
        } else {
            format!("452 4.2.2 Over quota SESSIONID=<{}>", self.sid)
        }
    }

    /// The message after 354: what was read with the command first, then
    /// raw reads of up to 64 KB (no line splitting); what follows the
    /// final dot goes back to the command reader.  False: the connection
    /// ended.
    async fn receive(&mut self, rx: &mut DataReceiver, mut pre: Option<(&mut trace::Prehash, &Dress<'_>)>) -> std::io::Result<bool> {
        self.w.flush().await?;
        if self.input.discarding() {
            rx.skip_to_line_end();
            self.input.stop_discarding();
        }
        let mut hash = |rx: &DataReceiver| {
            if let Some((p, dress)) = pre.as_mut().filter(|_| !rx.too_big) {
                p.advance(&rx.data, *dress);
            }
        };
        let held = self.input.pending();
        let end = rx.feed(self.input.peek());
        hash(rx);
        if let Some(used) = end {
            self.input.consume(used);
            return Ok(true);
        }
        self.input.consume(held);
        let mut chunk = vec![0u8; DATA_CHUNK];
        loop {
            let n = crate::server::read_within(&mut self.r, &mut chunk, IDLE).await?;
            if n == 0 {
                return Ok(false);
            }
            let end = rx.feed(&chunk[..n]);
            hash(rx);
            if let Some(used) = end {
                self.input.push(&chunk[used.min(n)..n]);
                return Ok(true);
            }
        }
    }

    /// BDAT (RFC 3030): the chunk is read whatever the answer; the last
    /// one's answer is one reply per recipient, as DATA's in LMTP.
    async fn bdat(&mut self, size: u64, last: bool) -> IoResult {
        let refusal = if self.rcpts.is_empty() {
            Some("503 5.5.1 No recipients")
        } else if self.from.is_none() {
            Some("503 5.5.1 Need MAIL command")
        } else {
            None
        };
        let max = self.d.ctx.conf.max_message_size();
        let mut rx = match refusal {
            None => Some(self.bdat.take().unwrap_or_else(|| crate::proto::smtp::BdatReceiver::new(max))),
            Some(_) => None,
        };
        let mut left = size;
        let mut chunk = vec![0u8; DATA_CHUNK];
        loop {
            let part = self.input.take_raw(left.min(usize::MAX as u64) as usize);
            left -= part.len() as u64;
            if let Some(rx) = rx.as_mut() {
                rx.feed(part);
            }
            if left == 0 {
                break;
            }
            let n = crate::server::read_within(&mut self.r, &mut chunk, IDLE).await?;
            if n == 0 {
                return Ok(());
            }
            self.input.push(&chunk[..n]);
        }
        if let Some(r) = refusal {
            return self.reply(r).await;
        }
        let Some(rx) = rx else { return Ok(()) };
        if rx.too_big && !last {
            // No use sending the rest (RFC 3030 4.2: the transaction failed).
            self.from = None;
            self.rcpts.clear();
            return self.reply("552 5.2.3 Message size exceeds fixed maximum message size").await;
        }
        if !last {
            self.bdat = Some(rx);
            return self.reply(&format!("250 2.0.0 {size} octets received")).await;
        }
        self.deliver(rx.data, rx.too_big, &trace::date_now(), None).await
    }

    async fn data(&mut self) -> IoResult {
        let ctx = self.d.ctx.clone();
        self.reply("354 go ahead").await?;
        let mut rx = DataReceiver::with_line_limit(ctx.conf.max_message_size(), MAX_DATA_LINE);
        // The header as it will be stored, made once it has arrived, so
        // that the GUID is taken while the body comes.
        let date = trace::date_now();
        let (from, lhlo, sid) = (self.from.clone().unwrap_or_default(), self.lhlo.clone(), self.sid.clone());
        let client = self.host.get().await.to_string();
        let munge = ctx.conf.get_switch("munge8bit");
        let dress = |h: &[u8]| {
            let mut h = h.to_vec();
            if munge {
                crate::mail::mime::munge_8bit_header(&mut h);
            }
            self::trace::Trace {
                from: &from,
                lhlo: &lhlo,
                client: &client,
                servername: &ctx.servername,
                version: matches!(ctx.server_info, super::cyrus::ServerInfo::On).then_some(CYRUS_VERSION),
                sid: &sid,
                sieve: true,
            }
            .dress(&h, &date)
            .ok()
        };
        let mut pre = trace::Prehash::default();
        if !self.receive(&mut rx, Some((&mut pre, &dress))).await? {
            return Ok(());
        }
        self.deliver(rx.data, rx.too_big, &date, Some(pre)).await
    }

    /// A received message (CRLF text, unstuffed) to every recipient: one
    /// reply each.  `pre`: its header made and GUID taken as it came.
    async fn deliver(&mut self, mut data: Vec<u8>, too_big: bool, date: &str, pre: Option<trace::Prehash>) -> IoResult {
        let ctx = self.d.ctx.clone();
        let n = self.rcpts.len();
        if too_big {
            for _ in 0..n {
                self.reply("552 5.2.3 Message size exceeds fixed maximum message size").await?;
            }
            self.from = None;
            self.rcpts.clear();
            return Ok(());
        }
        let mut strict = crate::mail::mime::strict_check(&data).map_err(|t| format!("554 5.6.0 {t}"));
        if strict.is_ok() && ctx.conf.get_switch("reject8bit") {
            let he = crate::mail::mime::header_end(&data).0;
            if data[..he].iter().any(|&c| c >= 0x80) {
                strict = Err("554 5.6.0 Message contains non-ASCII characters in headers".into());
            }
        }
        if let Err(r) = strict {
            for _ in 0..n {
                self.reply(&r).await?;
            }
            self.from = None;
            self.rcpts.clear();
            return Ok(());
        }
        let from = self.from.take().unwrap_or_default();
        let (msg, guid) = match pre.and_then(|p| p.finish(&data)) {
            Some((m, guid)) => (m, Some(guid)),
            None => {
                if ctx.conf.get_switch("munge8bit") {
                    crate::mail::mime::munge_8bit_header(&mut data);
                }
                // The version only under `serverinfo: on`, as Cyrus.
                let version = matches!(ctx.server_info, super::cyrus::ServerInfo::On).then_some(CYRUS_VERSION);
                let t = trace::Trace {
                    from: &from,
                    lhlo: &self.lhlo,
                    client: self.host.get().await,
                    servername: &ctx.servername,
                    version,
                    sid: &self.sid,
                    sieve: true,
                };
                match t.dress(&data, date) {
                    Ok(m) => (m, None),
                    Err(r) => {
                        for _ in 0..n {
                            self.reply(r).await?;
                        }
                        self.rcpts.clear();
                        return Ok(());
                    }
                }
            }
        };
        drop(data);
        let rcpts = std::mem::take(&mut self.rcpts);
        let store = ctx.store.clone();
        let dupsup = store.cfg.duplicatesuppression;
        let log = ctx.log.clone();
        let sid = self.sid.clone();
        let over_perm = ctx.conf.get_switch("lmtp_over_quota_perm_failure");
        let strict = ctx.conf.get_switch("lmtp_strict_quota");
        let mut filter = sieve::Filter::new(&ctx);
        // RFC 5183's remote-host and remote-ip: as Cyrus, an empty host
        // and no address over the UNIX socket.
        if let Ok(ip) = self.peer.parse::<std::net::IpAddr>() {
            let host = self.host.get().await;
            let name = host.split_once(" [").map_or(host, |(n, _)| n).trim_matches(['[', ']']);
            filter.remote = (name.to_string(), Some(ip.to_string()));
        }
        let env_from = from.clone();
        let replies = tokio::task::spawn_blocking(move || {
            let (env, bs, body) = crate::proto::imap::render::cache_items(&msg);
            let cached = std::sync::Arc::new(Cached {
                envelope: env,
                bodystructure: bs,
                body,
            });
            let f = crate::mail::mime::fields(crate::mail::mime::header_end(&msg).0.min(msg.len()).pipe(|e| &msg[..e]));
            let msgid = crate::mail::mime::field_text(&f, "message-id");
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            let mut staged: Vec<std::sync::Arc<crate::store::Staged>> = Vec::new();
            let mut out = Vec::with_capacity(rcpts.len());
            for r in &rcpts {
                // Where this copy goes: the mailbox RCPT chose, or where
                // the user's Sieve script sends it.
                let id = msgid.as_deref().unwrap_or("<nomsgid>");
                let rcpt = sieve::Recipient {
                    userid: &r.user,
                    inbox: &r.inbox,
                    keep: &r.mailbox,
                    keep_refused: r.keep_refused,
                };
                let sm = crate::sieve::Message::plain(&f, &msg, &env_from, &r.addr);
                let mut plan = filter.plan(&rcpt, &sm, id);
                if let Some(reason) = &plan.reject {
                    log.info(&format!("sieve LMTP rejected: {id} for {}", r.addr));
                    out.push(reject_reply(reason));
                    continue;
                }
                // A header `editheader` changed: this recipient's copies
                // are their own message.
                let own = plan.header.take().map(|h| {
                    let body = &msg[crate::mail::mime::header_end(&msg).1.min(msg.len())..];
                    let data = [&h[..], body].concat();
                    let (envelope, bodystructure, body) = crate::proto::imap::render::cache_items(&data);
                    let c = std::sync::Arc::new(Cached {
                        envelope,
                        bodystructure,
                        body,
                    });
                    (data, c)
                });
                let data: &[u8] = own.as_ref().map_or(&msg[..], |o| &o.0[..]);
                let cached = own.as_ref().map_or_else(|| cached.clone(), |o| o.1.clone());
                let mut own_staged = Vec::new();
                let pool: &mut Vec<std::sync::Arc<crate::store::Staged>> = if own.is_some() { &mut own_staged } else { &mut staged };
                let redirects = std::mem::take(&mut plan.redirects);
                for to in &redirects {
                    let dedup = msgid.as_deref().filter(|_| dupsup);
                    if !filter.redirect(&rcpt, to, &env_from, without_return_path(data), dedup, now) {
                        match plan.deliveries.iter_mut().find(|(n, _)| *n == r.inbox) {
                            Some((_, fl)) => fl.push(sieve::FAILED.to_string()),
                            None => plan.deliveries.push((r.inbox.clone(), vec![sieve::FAILED.to_string()])),
                        }
                    }
                }
                let mut reply = format!("250 2.1.5 Success SESSIONID=<{sid}>");
                for (mailbox, flags) in &plan.deliveries {
                    let (bits, mut keywords) = crate::daemon::imapd::parse_flags(flags);
                    // Only what IMAP can show as a keyword (an atom).
                    keywords.retain(|k| k.bytes().all(|c| c > b' ' && c < 127 && !b"(){%*\"\\]".contains(&c)));
                    let res = (|| -> Result<Delivery, StoreError> {
                        let e = store.lookup(mailbox)?.ok_or(StoreError::NotFound)?;
                        let st = match pool.iter().position(|s| s.partition == e.partition) {
                            Some(i) => pool[i].clone(),
                            None => {
                                let s = std::sync::Arc::new(store.stage_hashed(&e.partition, data, guid.filter(|_| own.is_none()))?);
                                pool.push(s.clone());
                                s
                            }
                        };
                        let dup = match (&msgid, dupsup) {
                            (Some(id), true) if !id.is_empty() => Some((id.clone(), mailbox.clone())),
                            _ => None,
                        };
                        let quota = if r.ignore_quota {
                            crate::store::QuotaCheck::Ignore
                        } else if strict {
                            crate::store::QuotaCheck::Strict
                        } else {
                            crate::store::QuotaCheck::NotAlreadyOver
                        };
                        // Committed together with other sessions' deliveries
                        // into the same owner (one fsync for the group).
                        store.deliver_grouped(crate::store::DeliveryJob {
                            name: mailbox.clone(),
                            staged: st,
                            cached: cached.clone(),
                            internaldate: now,
                            quota,
                            dup,
                            partition: String::new(),
                            flags: bits,
                            keywords: keywords.join(" "),
                        })
                    })();
                    let failed = match res {
                        Ok(Delivery::Delivered(uid)) => {
                            log.info(&format!(
                                "Delivered: {} to mailbox: {mailbox} uid={uid} sessionid=<{sid}>",
                                msgid.as_deref().unwrap_or("<nomsgid>"),
                            ));
                            None
                        }
                        Ok(Delivery::Duplicate) => {
                            log.info(&format!(
                                "dupelim: eliminated duplicate message to {mailbox} id {} (delivery)",
                                msgid.as_deref().unwrap_or("")
                            ));
                            None
                        }
                        Err(StoreError::OverQuota) if over_perm => Some(format!("552 5.2.2 Over quota SESSIONID=<{sid}>")),
                        Err(StoreError::OverQuota) => Some(format!("452 4.2.2 Over quota SESSIONID=<{sid}>")),
                        // It was there at RCPT: moved away (XFER) or deleted
                        // since.  Temporary, as Cyrus answers a moved mailbox:
                        // the retry finds it where it is now, or gets 550.
                        Err(StoreError::NotFound) => Some(format!("451 4.2.1 Mailbox Moved SESSIONID=<{sid}>")),
                        Err(e) => {
                            log.error(&format!("IOERROR: delivering to {mailbox} ({}): {e}", r.addr));
                            Some(format!("451 4.3.0 System I/O error SESSIONID=<{sid}>"))
                        }
                    };
                    // The first failure answers for the recipient (a retry
                    // finds the copies made in their folders as duplicates).
                    if let Some(f) = failed {
                        if reply.starts_with('2') {
                            reply = f;
                        }
                    }
                }
                if let (Some(v), true) = (&plan.vacation, reply.starts_with('2')) {
                    filter.vacation(v, &rcpt, &sm, id, now);
                }
                if reply.starts_with('2') && !plan.tracks.is_empty() {
                    filter.track(&r.inbox, &plan.tracks, now);
                }
                if reply.starts_with('2') {
                    for n in &plan.notifies {
                        filter.notify(n, &plan.taken, &rcpt, id);
                    }
                }
                out.push(reply);
            }
            out
        })
        .await
        .unwrap_or_else(|_| vec![format!("451 4.3.0 System I/O error SESSIONID=<{}>", self.sid); n]);
        for r in replies {
            self.reply(&r).await?;
        }
        Ok(())
    }
}

trait Pipe: Sized {
    fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
        f(self)
    }
}
impl<T> Pipe for T {}

/// Whether a Cyrus ACL string grants `right` to one of `ids`.
/// The shared folder a recipient names (Cyrus's `postuser`: with it
/// empty, `+news@domain` delivers to the shared folder `news`), internal.
pub fn shared_folder(conf: &crate::config::cyrus::ImapdConf, user: &str, detail: Option<&str>, domain: &str) -> Option<String> {
    let detail = detail.filter(|d| !d.is_empty())?;
    if user != conf.get("postuser").unwrap_or("") {
        return None;
    }
    let virtdomains = !matches!(conf.get("virtdomains"), Some("off") | Some("no") | Some("0") | None);
    let defaultdomain = conf.get("defaultdomain").unwrap_or("");
    let sep = if conf.get_switch("unixhierarchysep") { '/' } else { '.' };
    let name: Vec<String> = detail
        .split(sep)
        .map(|c| if sep == '/' { c.replace('.', "^") } else { c.to_string() })
        .collect();
    let name = name.join(".");
    if name.starts_with("user.") || name == "user" {
        return None;
    }
    Some(if virtdomains && !domain.is_empty() && domain != defaultdomain {
        format!("{domain}!{name}")
    } else {
        name
    })
}

/// `lmtp_fuzzy_mailbox_match`: among `mailboxes` (the user's, below
/// `inbox`, sorted), the first that matches the most leading levels of
/// `want`, a level matching when it differs only in case or in which of
/// `-`, `_` and space it has (Cyrus's rule); None when not even the first
/// level matches.
fn fuzzy_match(mailboxes: Vec<MailboxEntry>, inbox: &str, want: &str) -> Option<MailboxEntry> {
    fn level_eq(a: &str, b: &str) -> bool {
        let space = |c: u8| matches!(c, b'-' | b'_' | b' ');
        a.len() == b.len()
            && a.bytes()
                .zip(b.bytes())
                .all(|(x, y)| x.eq_ignore_ascii_case(&y) || (space(x) && space(y)))
    }
    let levels = |name: &str| -> Vec<String> {
        name.strip_prefix(inbox)
            .and_then(|r| r.strip_prefix('.'))
            .map_or(Vec::new(), |r| r.split('.').map(str::to_string).collect())
    };
    let want = levels(want);
    let mut best: Option<(usize, MailboxEntry)> = None;
    for e in mailboxes {
        let have = levels(&e.name);
        let depth = want.iter().zip(have.iter()).take_while(|(w, h)| level_eq(w, h)).count();
        if depth > best.as_ref().map_or(0, |b| b.0) {
            let full = depth == want.len();
            best = Some((depth, e));
            if full {
                break;
            }
        }
    }
    best.map(|b| b.1)
}

pub fn acl_allows(acl: &str, ids: &[&str], right: char) -> bool {
    let mut it = acl.split('\t');
    let mut granted = false;
    let mut denied = false;
    while let (Some(id), Some(rights)) = (it.next(), it.next()) {
        if let Some(neg) = id.strip_prefix('-') {
            if ids.contains(&neg) && rights.contains(right) {
                denied = true;
            }
        } else if ids.contains(&id) && rights.contains(right) {
            granted = true;
        }
    }
    granted && !denied
}

pub fn main(args: &[String]) -> i32 {
    // A Murder front end's lmtpd is the proxy.
    if super::front::frontend_args(args, "lmtp") {
        return super::lmtpproxy::main(args);
    }
    super::cyrus::run_service(
        "lmtpd",
        args,
        |_| "lmtp",
        "lmtp",
        |ctx| vec![ctx.conf.path_option("lmtpsocket").unwrap_or_default()],
        |ctx, a| Ok(Lmtpd { ctx, preauth: a.preauth }),
    )
}
