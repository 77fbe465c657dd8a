//! timsieved: ManageSieve (RFC 5804) over the users' Sieve scripts, with
//! Cyrus timsieved's replies: the capability greeting, AUTHENTICATE PLAIN
//! and LOGIN through saslauthd (an admin may act for a user, as a Murder
//! front end does), STARTTLS, and the script commands HAVESPACE,
//! PUTSCRIPT, CHECKSCRIPT, LISTSCRIPTS, SETACTIVE, GETSCRIPT,
//! DELETESCRIPT, RENAMESCRIPT, NOOP, UNAUTHENTICATE, LOGOUT.  Scripts are
//! kept where lmtpd runs them (`store::sievedir`), checked by the same
//! parser first; `sieve_maxscripts`, `sieve_maxscriptsize` and
//! `sieve_extensions` as in Cyrus.
//!
//! On a Murder front end (`mupdate_server` set, no `proxyservers`) the
//! login is checked here and the user's scripts are on the back end of
//! their INBOX: with `sieve_allowreferrals` (Cyrus's default) the next
//! command is answered `BYE (REFERRAL "sieve://<back end>") "Try
//! Remote."`, as Cyrus's front end does; without, the session is
//! proxied there (logged in as `proxy_authname` for the user).
//!
//! Where Cyrus 3.6 errs, this does not: replacing a script is not refused
//! for having `sieve_maxscripts` already, a renamed script leaves no
//! stale bytecode, UTF-8 names are kept as they are, and a malformed
//! line gets one NO (not one per token).

use super::cyrus::{Logins, ServerInfo};
use super::front::Front;
use super::peer_tls::PeerIo;
use crate::config::cyrus::ImapdConf;
use crate::log::Logger;
use crate::mail::Secret;
use crate::proto::managesieve::{self as ms, Command, Limits, Parsed};
use crate::server::listen::Io;
use crate::server::Conn;
use crate::store::sievedir::{self, Scripts};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter, ReadHalf, WriteHalf};

pub struct Timsieved {
    pub sh: Arc<Shared>,
}

/// What the sessions share, read once at start.
pub struct Shared {
    conf: ImapdConf,
    log: Arc<Logger>,
    tls: Option<Arc<rustls::ServerConfig>>,
    server_info: ServerInfo,
    logins: Logins,
    /// The naming options (`unixhierarchysep`, `virtdomains`, ...) and
    /// `configdirectory`: no store is opened.
    names: crate::store::StoreConfig,
    sievedir: std::path::PathBuf,
    servername: String,
    started: u64,
    sessions: std::sync::atomic::AtomicU64,
    /// A Murder front end's replica and back-end credentials.
    front: Option<Arc<Front>>,
    /// GSSAPI is offered (a keytab, `sasl_mech_list`).
    gssapi: bool,
}

impl Shared {
    fn session_id(&self) -> String {
        let n = self.sessions.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        format!("{}-{}-{}-{n}", self.servername, self.started, std::process::id())
    }

    fn is_admin(&self, user: &str) -> bool {
        self.conf.get("admins").unwrap_or("").split_whitespace().any(|a| a == user)
    }
}

/// The extensions our Sieve runs, in Cyrus's order, and the
/// `sieve_extensions` name that enables each (None: always on).
const EXTENSIONS: &[(&str, Option<&str>)] = &[
    ("encoded-character", None),
    ("comparator-i;ascii-numeric", None),
    ("fileinto", Some("fileinto")),
    ("reject", Some("reject")),
    ("ereject", Some("reject")),
    ("vacation", Some("vacation")),
    ("vacation-seconds", Some("vacation-seconds")),
    ("notify", Some("notify")),
    ("enotify", Some("notify")),
    ("include", Some("include")),
    ("editheader", Some("editheader")),
    ("envelope", Some("envelope")),
    ("environment", Some("environment")),
    ("body", Some("body")),
    ("imap4flags", Some("imap4flags")),
    ("date", Some("date")),
    ("ihave", Some("ihave")),
    ("mailbox", Some("mailbox")),
    ("mboxmetadata", Some("mboxmetadata")),
    ("servermetadata", Some("servermetadata")),
    ("duplicate", Some("duplicate")),
    ("relational", Some("relational")),
    ("regex", Some("regex")),
    ("subaddress", Some("subaddress")),
    ("copy", Some("copy")),
    ("index", Some("index")),
    ("variables", Some("variables")),
    ("redirect-deliverby", Some("redirect-deliverby")),
    ("redirect-dsn", Some("redirect-dsn")),
    ("special-use", Some("special-use")),
    ("fcc", Some("fcc")),
    ("mailboxid", Some("mailboxid")),
    // Taken in scripts but, as in Cyrus 3.6, not advertised.
    ("vnd.cyrus.log", Some("vnd.cyrus.log")),
    ("x-cyrus-log", Some("vnd.cyrus.log")),
];

/// Enabled but left out of the SIEVE capability, as Cyrus leaves them.
const UNADVERTISED: &[&str] = &["vnd.cyrus.log", "x-cyrus-log"];

/// The extensions `sieve_extensions` leaves on.
fn enabled(conf: &ImapdConf) -> Vec<&'static str> {
    let conf: Vec<String> = conf
        .get("sieve_extensions")
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_ascii_lowercase)
        // (Cyrus's older names of its own.)
        .map(|c| if c == "x-cyrus-log" { "vnd.cyrus.log".to_string() } else { c })
        .collect();
    EXTENSIONS
        .iter()
        .filter(|(_, opt)| opt.is_none_or(|o| conf.iter().any(|c| c == o)))
        .map(|(e, _)| *e)
        .collect()
}

struct Session {
    ctx: Arc<Shared>,
    r: ReadHalf<Box<dyn Io>>,
    w: BufWriter<WriteHalf<Box<dyn Io>>>,
    buf: Vec<u8>,
    tls: bool,
    ssf: u32,
    host: crate::server::peer::ClientHost,
    sid: String,
    user: Option<User>,
    /// A front end's answer to the command after the login.
    referral: Option<String>,
    idle: Duration,
    lim: Limits,
    /// `sieve_maxscriptsize` in bytes.
    max_size: u64,
    /// `sieve_maxscripts`.
    max_scripts: usize,
    extensions: Vec<&'static str>,
}

struct User {
    userid: String,
    /// None on a front end (the scripts are on a back end).
    scripts: Option<Scripts>,
    _slot: super::cyrus::LoginSlot,
}

type IoResult = std::io::Result<()>;

/// What a command asks of the session loop.
enum Next {
    Go,
    Close,
    /// A front end logged in to the user's back end: join the two.
    Proxy(tokio::io::BufReader<PeerIo>),
}

const AUTH_ERROR: &str = "NO \"Authentication Error\"";

impl crate::server::Service for Timsieved {
    async fn serve(self: Arc<Self>, conn: Conn) {
        let peer = conn.peer();
        let (r, w) = tokio::io::split(conn.into_io());
        let c = &self.sh.conf;
        let max_size = (c.get_int("sieve_maxscriptsize").max(1) as u64).saturating_mul(1024);
        let lit = max_size.min(64 << 20) as usize;
        let mut s = Session {
            ctx: self.sh.clone(),
            r,
            w: BufWriter::new(w),
            buf: Vec::new(),
            tls: false,
            ssf: 0,
            host: crate::server::peer::ClientHost::new(&peer),
            sid: self.sh.session_id(),
            user: None,
            referral: None,
            idle: Duration::from_secs(c.get_secs("timeout", 'm').unwrap_or(1800).max(60) as u64),
            lim: Limits {
                line: lit + 8192,
                literal: lit,
            },
            max_size,
            max_scripts: c.get_int("sieve_maxscripts").max(0) as usize,
            extensions: enabled(&self.sh.conf),
        };
        match s.run().await {
            Ok(Some(backend)) => {
                // The back end answers from here on; what the client sent
                // after AUTHENTICATE goes first.
                let Session { r, mut w, buf, .. } = s;
                let _ = w.flush().await;
                let mut backend = backend;
                if !buf.is_empty() && backend.get_mut().write_all(&buf).await.is_err() {
                    return;
                }
                let client = r.unsplit(w.into_inner());
                super::front::pipe(client, backend, "BYE \"Lost connection to back end\"\r\n", b"BYE").await;
            }
            Ok(None) => {
                let _ = s.w.flush().await;
            }
            Err(e) => {
                if !matches!(e.kind(), std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::TimedOut) {
                    self.sh.log.info(&format!("{}: {e}", s.host.get().await));
                }
                let _ = s.w.flush().await;
            }
        }
    }
}

impl Session {
    /// The session, to its end or to a back end that takes it over.
    async fn run(&mut self) -> std::io::Result<Option<tokio::io::BufReader<PeerIo>>> {
        self.capabilities().await?;
        loop {
            self.w.flush().await?;
            let cmd = match ms::parse_command(&self.buf, self.lim) {
                Parsed::Incomplete => {
                    self.fill().await?;
                    continue;
                }
                Parsed::Bad {
                    used,
                    discard,
                    to_eol,
                    text,
                } => {
                    self.no(text).await?;
                    if discard == u64::MAX {
                        // A literal no client could send: the line is lost.
                        return Ok(None);
                    }
                    self.skip(used, discard, to_eol).await?;
                    continue;
                }
                Parsed::Done { used, value } => {
                    self.buf.drain(..used);
                    value
                }
            };
            if let Some(server) = self.referral.take() {
                self.line(&format!("BYE (REFERRAL \"sieve://{server}\") \"Try Remote.\"")).await?;
                return Ok(None);
            }
            match self.command(cmd).await? {
                Next::Go => {}
                Next::Close => return Ok(None),
                Next::Proxy(b) => return Ok(Some(b)),
            }
        }
    }

    /// Reads more of the client's bytes (EOF and the idle time are errors).
    async fn fill(&mut self) -> IoResult {
        let mut chunk = [0u8; 16384];
        let n = match tokio::time::timeout(self.idle, self.r.read(&mut chunk)).await {
            Err(_) => {
                let _ = self.w.write_all(b"BYE \"Idle timeout\"\r\n").await;
                return Err(std::io::ErrorKind::TimedOut.into());
            }
            Ok(r) => r?,
        };
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// Drops a malformed line: `used` octets, then `discard` more, then
    /// up to the LF.
    async fn skip(&mut self, used: usize, mut discard: u64, to_eol: bool) -> IoResult {
        self.buf.drain(..used.min(self.buf.len()));
        while discard > 0 {
            if self.buf.is_empty() {
                self.fill().await?;
            }
            let n = (discard as usize).min(self.buf.len());
            self.buf.drain(..n);
            discard -= n as u64;
        }
        if to_eol {
            loop {
                if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                    self.buf.drain(..=i);
                    break;
                }
                self.buf.clear();
                self.fill().await?;
            }
        }
        Ok(())
    }

    async fn send(&mut self, b: &[u8]) -> IoResult {
        self.w.write_all(b).await
    }

    async fn line(&mut self, s: &str) -> IoResult {
        self.w.write_all(s.as_bytes()).await?;
        self.w.write_all(b"\r\n").await
    }

    async fn no(&mut self, text: &str) -> IoResult {
        self.line(&format!("NO \"{text}\"")).await
    }

    fn plaintext_ok(&self) -> bool {
        self.tls || self.ctx.conf.get_switch("allowplaintext")
    }

    /// The capability lines and OK (the greeting, CAPABILITY, after
    /// STARTTLS).
    async fn capabilities(&mut self) -> IoResult {
        // A front end says so, as Cyrus's: "Cyrus timsieved (Murder) ...".
        let murder = if self.ctx.front.is_some() { " (Murder)" } else { "" };
        let implementation = match self.ctx.server_info {
            ServerInfo::On => format!("Cyrus timsieved{murder} {}", super::lmtpd::CYRUS_VERSION),
            _ => format!("Cyrus timsieved{murder}"),
        };
        let mut out = format!("\"IMPLEMENTATION\" \"{implementation}\"\r\n\"VERSION\" \"1.0\"\r\n");
        if self.user.is_none() {
            let layer = super::cyrus::sasl_layer_ok(&self.ctx.conf, self.ssf);
            let mut mechs = Vec::new();
            if self.ctx.gssapi && layer {
                mechs.push("GSSAPI");
            }
            if self.plaintext_ok() && layer {
                mechs.extend(["PLAIN", "LOGIN"]);
            }
            out.push_str(&format!("\"SASL\" \"{}\"\r\n", mechs.join(" ")));
        }
        let shown: Vec<&str> = self.extensions.iter().copied().filter(|e| !UNADVERTISED.contains(e)).collect();
        out.push_str(&format!("\"SIEVE\" \"{}\"\r\n", shown.join(" ")));
        // RFC 5804 1.7: the notification methods, with enotify.
        if self.extensions.contains(&"enotify") {
            out.push_str("\"NOTIFY\" \"mailto\"\r\n");
        }
        if self.ctx.tls.is_some() && !self.tls && self.user.is_none() {
            out.push_str("\"STARTTLS\"\r\n");
        }
        if let Some(u) = &self.user {
            out.push_str(&format!("\"OWNER\" \"{}\"\r\n", u.userid.replace(['"', '\\'], "")));
        }
        out.push_str("\"UNAUTHENTICATE\"\r\nOK\r\n");
        self.send(out.as_bytes()).await
    }

    async fn command(&mut self, cmd: Command) -> std::io::Result<Next> {
        let authed = self.user.is_some();
        match cmd {
            Command::Logout => {
                self.line("OK \"Logout Complete\"").await?;
                return Ok(Next::Close);
            }
            Command::Capability => self.capabilities().await?,
            Command::Noop { tag: None } => self.line("OK \"Done\"").await?,
            Command::Noop { tag: Some(t) } => {
                let mut out = b"OK (TAG ".to_vec();
                out.extend(ms::literal(&t));
                out.extend_from_slice(b") \"Done\"\r\n");
                self.send(&out).await?;
            }
            Command::StartTls => return self.starttls().await,
            Command::Authenticate { .. } if authed => self.no("Already authenticated").await?,
            Command::Authenticate { mech, initial } => return self.authenticate(&mech, initial).await,
            _ if !authed => self.no("Authenticate first").await?,
            Command::Unauthenticate => {
                self.user = None;
                self.line("OK").await?;
            }
            Command::CheckScript { script } => {
                if let Some(e) = self.check(&script) {
                    self.refuse_script(&e).await?;
                } else {
                    self.line("OK").await?;
                }
            }
            other => self.script_command(other).await?,
        }
        Ok(Next::Go)
    }

    /// A script's check with our parser and the enabled extensions: the
    /// error text, as Cyrus's compiler gives it (`line N: ...`).
    fn check(&self, script: &[u8]) -> Option<String> {
        if script.len() as u64 > self.max_size {
            return Some(format!("Script size is too large. Max script size is {} bytes", self.max_size));
        }
        let on = &self.extensions;
        match crate::sieve::parse_with(script, &|e| on.contains(&e) || e.starts_with("comparator-i;")) {
            Ok(_) => None,
            Err(e) => Some(e.to_string()),
        }
    }

    /// `NO {n}` CRLF and the compiler's text.
    async fn refuse_script(&mut self, text: &str) -> IoResult {
        let mut out = b"NO ".to_vec();
        out.extend(ms::literal(format!("{text}\r\n").as_bytes()));
        out.extend_from_slice(b"\r\n");
        self.send(&out).await
    }

    /// The commands on the logged-in user's scripts; file work on the
    /// blocking pool.
    async fn script_command(&mut self, cmd: Command) -> IoResult {
        let Some(user) = &self.user else {
            return self.no("Authenticate first").await;
        };
        let Some(scripts) = &user.scripts else {
            return self.no("Authenticate first").await;
        };
        let dir = scripts.dir().to_path_buf();
        let (max_size, max_scripts) = (self.max_size, self.max_scripts);
        let name_of = |n: &[u8]| sievedir::valid_name(n).map(str::to_string);
        // Checked before the blocking work, which needs no parser.
        if let Command::PutScript { name, script } = &cmd {
            if name_of(name).is_some() && (script.len() as u64) <= max_size {
                if let Some(e) = self.check(script) {
                    return self.refuse_script(&e).await;
                }
            }
        }
        let too_many = format!("NO (QUOTA/MAXSCRIPTS) \"You are only allowed {max_scripts} scripts on this server\"");
        let too_big = format!("NO (QUOTA/MAXSIZE) \"Script size is too large. Max script size is {max_size} bytes\"");
        let reply = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
            let s = Scripts::at(dir);
            let nonexistent = b"NO (NONEXISTENT) \"Script does not exist\"\r\n".to_vec();
            let line = |t: &str| format!("{t}\r\n").into_bytes();
            // A new script would be one too many.
            let full = |s: &Scripts, name: &str| -> std::io::Result<bool> { Ok(!s.exists(name) && s.list()?.0.len() >= max_scripts) };
            Ok(match cmd {
                Command::HaveSpace { name, size } => match name_of(&name) {
                    None => line("NO \"Invalid script name\""),
                    Some(_) if size > max_size => line(&too_big),
                    Some(n) if full(&s, &n)? => line(&too_many),
                    Some(_) => line("OK"),
                },
                Command::PutScript { name, script } => match name_of(&name) {
                    None => line("NO \"Invalid script name\""),
                    Some(_) if script.len() as u64 > max_size => line(&too_big),
                    Some(n) if full(&s, &n)? => line(&too_many),
                    Some(n) => {
                        s.put(&n, &script)?;
                        line("OK")
                    }
                },
                Command::ListScripts => {
                    let (names, active) = s.list()?;
                    let mut out = Vec::new();
                    for n in names {
                        out.extend(ms::string(n.as_bytes()));
                        if active.as_deref() == Some(n.as_str()) {
                            out.extend_from_slice(b" ACTIVE");
                        }
                        out.extend_from_slice(b"\r\n");
                    }
                    out.extend_from_slice(b"OK\r\n");
                    out
                }
                Command::SetActive { name } if name.is_empty() => {
                    s.set_active(None)?;
                    line("OK")
                }
                Command::SetActive { name } => match name_of(&name) {
                    Some(n) if s.exists(&n) => {
                        s.set_active(Some(&n))?;
                        line("OK")
                    }
                    _ => nonexistent,
                },
                Command::GetScript { name } => match name_of(&name).map(|n| s.get(&n, max_size.max(1 << 20))) {
                    Some(Ok(Some(src))) => {
                        let mut out = ms::literal(&src);
                        out.extend_from_slice(b"\r\nOK\r\n");
                        out
                    }
                    Some(Err(e)) => return Err(e),
                    _ => nonexistent,
                },
                Command::DeleteScript { name } => match name_of(&name) {
                    Some(n) if s.active().as_deref() == Some(n.as_str()) && s.exists(&n) => {
                        line("NO (ACTIVE) \"Active script cannot be deleted\"")
                    }
                    Some(n) if s.delete(&n)? => line("OK"),
                    _ => nonexistent,
                },
                Command::RenameScript { old, new } => {
                    let shown = |b: &[u8]| String::from_utf8_lossy(b).replace(['"', '\\'], "");
                    match (name_of(&old).filter(|o| s.exists(o)), name_of(&new)) {
                        (None, _) => line(&format!("NO (NONEXISTENT) \"Script {} does not exist\"", shown(&old))),
                        (_, None) => line("NO \"Invalid new script name\""),
                        (_, Some(n)) if s.exists(&n) => line(&format!("NO (ALREADYEXISTS) \"Script {} already exists.\"", shown(&new))),
                        (Some(o), Some(n)) => {
                            s.rename(&o, &n)?;
                            line("OK")
                        }
                    }
                }
                _ => line("NO \"Expected a command. Got something else.\""),
            })
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
        match reply {
            Ok(r) => self.send(&r).await,
            Err(e) => {
                let who = self.user.as_ref().map_or("", |u| u.userid.as_str()).to_string();
                self.ctx.log.error(&format!("sieve: {who}: {e}"));
                self.no("Error putting script").await
            }
        }
    }

    async fn starttls(&mut self) -> std::io::Result<Next> {
        let Some(acc) = self.ctx.tls.clone() else {
            self.no("Expected a command. Got something else.").await?;
            return Ok(Next::Go);
        };
        if self.tls {
            self.no("TLS already active").await?;
            return Ok(Next::Go);
        }
        if self.user.is_some() {
            self.no("STARTTLS not allowed after authentication").await?;
            return Ok(Next::Go);
        }
        self.line("OK \"Begin TLS negotiation now\"").await?;
        self.w.flush().await?;
        // What the client pipelined after STARTTLS is dropped (RFC 5804 2.2).
        self.buf.clear();
        match crate::server::listen::tls_upgrade_halves(&mut self.r, &mut self.w, acc).await {
            Ok((summary, ssf)) => {
                self.ctx.log.info(&format!("starttls: {summary}"));
                self.tls = true;
                self.ssf = ssf;
                // The capabilities again, now that the channel is safe.
                self.capabilities().await?;
                Ok(Next::Go)
            }
            Err(e) => {
                self.ctx
                    .log
                    .info(&format!("STARTTLS negotiation failed: {}: {e}", self.host.get().await));
                Ok(Next::Close)
            }
        }
    }

    /// A SASL challenge (`{n}` CRLF base64) and the client's answer,
    /// decoded; None for `*`, bad base64 or a malformed line.
    async fn challenge(&mut self, c: &[u8]) -> std::io::Result<Option<Vec<u8>>> {
        let mut out = ms::literal(crate::util::base64_encode(c).as_bytes());
        out.extend_from_slice(b"\r\n");
        self.send(&out).await?;
        self.w.flush().await?;
        loop {
            match ms::parse_sasl_response(&self.buf, self.lim) {
                Parsed::Incomplete => self.fill().await?,
                Parsed::Bad { used, discard, to_eol, .. } => {
                    self.skip(used, discard, to_eol).await?;
                    return Ok(None);
                }
                Parsed::Done { used, value } => {
                    self.buf.drain(..used);
                    if value == b"*" {
                        return Ok(None);
                    }
                    return Ok(crate::util::base64_decode(&String::from_utf8_lossy(&value)));
                }
            }
        }
    }

    async fn authenticate(&mut self, mech: &str, initial: Option<Vec<u8>>) -> std::io::Result<Next> {
        #[cfg(feature = "krb5")]
        if mech == "GSSAPI" && self.ctx.gssapi && super::cyrus::sasl_layer_ok(&self.ctx.conf, self.ssf) {
            return self.auth_gssapi(initial).await;
        }
        let usable = self.plaintext_ok() && super::cyrus::sasl_layer_ok(&self.ctx.conf, self.ssf);
        if !usable || !matches!(mech, "PLAIN" | "LOGIN") {
            return self.refuse(AUTH_ERROR).await;
        }
        let initial = match initial {
            Some(i) => match crate::util::base64_decode(&String::from_utf8_lossy(&i)) {
                Some(d) => Some(d),
                None => return self.refuse(AUTH_ERROR).await,
            },
            None => None,
        };
        let (authz, authc, pass) = if mech == "PLAIN" {
            let resp = match initial {
                Some(r) => r,
                None => match self.challenge(b"").await? {
                    Some(r) => r,
                    None => return self.refuse(AUTH_ERROR).await,
                },
            };
            let parts: Vec<&[u8]> = resp.split(|&b| b == 0).collect();
            let [z, c, p] = parts[..] else {
                return self.refuse(AUTH_ERROR).await;
            };
            (
                String::from_utf8_lossy(z).into_owned(),
                String::from_utf8_lossy(c).into_owned(),
                p.to_vec(),
            )
        } else {
            let user = match initial {
                Some(u) => u,
                None => match self.challenge(b"Username:").await? {
                    Some(u) => u,
                    None => return self.refuse(AUTH_ERROR).await,
                },
            };
            let Some(pass) = self.challenge(b"Password:").await? else {
                return self.refuse(AUTH_ERROR).await;
            };
            (String::new(), String::from_utf8_lossy(&user).into_owned(), pass)
        };
        self.login(&authz, &authc, Some(Secret::new(pass)), mech).await
    }

    /// AUTHENTICATE "GSSAPI" (RFC 4752): the ticket proves who the client
    /// is; its principal maps to the user (`loginrealms`).
    #[cfg(feature = "krb5")]
    async fn auth_gssapi(&mut self, initial: Option<Vec<u8>>) -> std::io::Result<Next> {
        use crate::auth::gssapi::{Server, Step};
        let mut server = Server::new("sieve");
        let mut token = match initial {
            Some(i) => crate::util::base64_decode(&String::from_utf8_lossy(&i)),
            None => self.challenge(b"").await?,
        };
        loop {
            let Some(t) = token else {
                return self.refuse(AUTH_ERROR).await;
            };
            match server.step(&t) {
                Ok(Step::Send(c)) => token = self.challenge(&c).await?,
                Ok(Step::Done(a)) => {
                    let host = self.host.get().await.to_string();
                    let login = super::cyrus::gssapi_login_user(&self.ctx.conf, &self.ctx.log, &host, &a.principal).await;
                    let Some(user) = login else {
                        return self.refuse(AUTH_ERROR).await;
                    };
                    return self.login(&a.authzid, &user, None, "GSSAPI").await;
                }
                Err(e) => {
                    let host = self.host.get().await.to_string();
                    let why = format!("SASL(-1): generic failure: {e}");
                    super::cyrus::gssapi_refused(&self.ctx.conf, &self.ctx.log, &host, &why).await;
                    return self.refuse(AUTH_ERROR).await;
                }
            }
        }
    }

    /// Logs `authc` in (as `authz` when given and allowed), its password
    /// checked unless a mechanism proved who it is (`pass` None).
    async fn login(&mut self, authz: &str, authc: &str, pass: Option<Secret<Vec<u8>>>, mech: &str) -> std::io::Result<Next> {
        let conf = &self.ctx.conf;
        let authc = super::cyrus::canon_userid(conf, authc);
        let user = if authz.is_empty() {
            authc.clone()
        } else {
            super::cyrus::canon_userid(conf, authz)
        };
        let host = self.host.get().await.to_string();
        // Acting for another user: admins and `proxyservers` only.
        if user != authc {
            let proxies = conf.get("proxyservers").unwrap_or("").to_string();
            if !self.ctx.is_admin(&authc) && !proxies.split_whitespace().any(|p| p == authc) {
                self.ctx.log.info(&format!(
                    "badlogin: {host} {mech} {authc} [SASL(-14): authorization failure: {user}]"
                ));
                return self.refuse(AUTH_ERROR).await;
            }
        }
        let checked = match &pass {
            Some(p) => super::cyrus::check_password(&self.ctx.conf, "sieve", &authc, p).await,
            None => Ok(true),
        };
        match checked {
            Ok(true) => {}
            Ok(false) => {
                self.ctx.log.info(&super::cyrus::badlogin_line(&host, mech, &authc));
                tokio::time::sleep(self.ctx.conf.failed_login_pause()).await;
                return self.refuse(AUTH_ERROR).await;
            }
            Err(e) => {
                self.ctx.log.warning(&format!("login: {host}: {e}"));
                return self.refuse("NO (TRYLATER) \"Unable to check password\"").await;
            }
        }
        let (ctx, who) = (self.ctx.clone(), user.clone());
        let denied = move || {
            let path = crate::store::userdeny::path(&ctx.names.configdir, ctx.conf.get("userdeny_db_path"));
            crate::store::userdeny::check(&path, &who, "sieve")
        };
        if let Ok(Some(_)) = tokio::task::spawn_blocking(denied).await {
            self.ctx
                .log
                .info(&format!("badlogin: {host} {mech} {user} [user denied by cyr_deny]"));
            return self.refuse(AUTH_ERROR).await;
        }
        let cfg = &self.ctx.names;
        let Ok(inbox) = crate::store::names::user_inbox(&user, cfg.unixhierarchysep, cfg.virtdomains, &cfg.defaultdomain) else {
            return self.refuse(AUTH_ERROR).await;
        };
        let slot = match self.ctx.logins.admit(&self.ctx.conf, &user, &host) {
            Ok(s) => s,
            Err(why) => return self.refuse(&format!("NO \"Too many open connections ({why})\"")).await,
        };
        let scripts = match &self.ctx.front {
            None => Some(Scripts::of(&self.ctx.sievedir, &inbox, cfg.fulldirhash)),
            Some(_) => None,
        };
        self.ctx
            .log
            .info(&format!("login: {host} {user} {mech} User logged in SESSIONID=<{}>", self.sid));
        if let Some(front) = self.ctx.front.clone() {
            // The scripts are on the back end of the user's INBOX.
            let server = match front.locate(&inbox).await {
                Ok(Some((_, server))) => server,
                Ok(None) => {
                    self.ctx.log.info(&format!("sieve: {user}: no INBOX {inbox} in the mailbox list"));
                    return self.refuse("NO \"Mailbox does not exist\"").await;
                }
                Err(e) => {
                    self.ctx.log.warning(&format!("sieve: {user}: mailbox list: {e}"));
                    return self.refuse("NO (TRYLATER) \"Mailbox list unavailable\"").await;
                }
            };
            if self.ctx.conf.get_switch("sieve_allowreferrals") {
                self.referral = Some(server);
            } else {
                match backend_login(&front, &server, &user).await {
                    Ok(b) => {
                        self.line("OK").await?;
                        return Ok(Next::Proxy(b));
                    }
                    Err(e) => {
                        self.ctx.log.warning(&format!("sieve: {user}: back end {server}: {e}"));
                        return self.refuse("NO (TRYLATER) \"Back end unavailable\"").await;
                    }
                }
            }
        }
        self.user = Some(User {
            userid: user,
            scripts,
            _slot: slot,
        });
        self.line("OK").await?;
        Ok(Next::Go)
    }

    /// A refused AUTHENTICATE: the reply, and the session goes on.
    async fn refuse(&mut self, reply: &str) -> std::io::Result<Next> {
        self.line(reply).await?;
        Ok(Next::Go)
    }
}

/// Logs in to `server`'s ManageSieve for `user` as the proxy identity
/// (SASL PLAIN, the user as authorization identity): the connection,
/// its capabilities and OK read.
async fn backend_login(front: &Front, server: &str, user: &str) -> Result<tokio::io::BufReader<PeerIo>, String> {
    let conn = front.connect(server, "sieve", 4190).await?;
    let mut b = tokio::io::BufReader::new(conn);
    let greeting_ok = |l: &str| l == "OK" || l.starts_with("OK ");
    loop {
        let l = super::front::backend_line(&mut b).await?;
        if greeting_ok(&l) {
            break;
        }
        if l.starts_with("NO") || l.starts_with("BYE") {
            return Err(format!("greeting {l}"));
        }
    }
    let ir = front.plain_for(server, user);
    super::front::write_line(&mut b, &format!("AUTHENTICATE \"PLAIN\" \"{ir}\"")).await?;
    let l = super::front::backend_line(&mut b).await?;
    if greeting_ok(&l) {
        Ok(b)
    } else {
        Err(format!("AUTHENTICATE: {l}"))
    }
}

pub fn main(args: &[String]) -> i32 {
    use crate::util::exit;
    let a = match super::cyrus::parse_args(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("timsieved: {e}");
            return exit::USAGE;
        }
    };
    let ident = std::env::var("CYRUS_SERVICE").unwrap_or_else(|_| "sieve".to_string());
    let sh = match load(&a.config, &ident) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("timsieved: fatal: {e}");
            return exit::CONFIG;
        }
    };
    crate::log::install_panic_hook(sh.log.clone());
    let specs = if a.listen.is_empty() {
        vec!["4190".to_string()]
    } else {
        a.listen.clone()
    };
    let limits = crate::server::Limits {
        max_conns: super::cyrus::max_conns(),
        keepalive: super::cyrus::keepalive(&sh.conf),
        ..Default::default()
    };
    let log = sh.log.clone();
    super::cyrus::serve_until_term("timsieved", &log, &specs, Arc::new(Timsieved { sh }), limits, || {}, false)
}

/// imapd.conf as service `ident`, and on a front end the Murder side.
fn load(config: &str, ident: &str) -> Result<Shared, String> {
    let conf = ImapdConf::load(config, Some(ident)).map_err(|e| e.to_string())?;
    conf.apply_umask();
    let log = Arc::new(Logger::for_cyrus(&conf, ident)?);
    for w in conf.warnings.iter().chain(conf.status_warnings().iter()) {
        log.warning(w);
    }
    let front = if super::front::is_frontend(&conf) {
        Some(Arc::new(Front::load(config, ident)?))
    } else {
        None
    };
    let tls = super::cyrus::tls_config(&conf).inspect_err(|e| log.fatal(e))?;
    let gssapi = super::cyrus::gssapi_setup(&conf, &log);
    Ok(Shared {
        gssapi,
        names: crate::store::StoreConfig::from_imapd(&conf)?,
        sievedir: conf.path_option("sievedir").unwrap_or_else(|| "/usr/sieve".into()).into(),
        servername: super::cyrus::servername(&conf),
        server_info: ServerInfo::of(&conf),
        started: crate::util::unix_now() as u64,
        sessions: Default::default(),
        logins: Logins::default(),
        tls,
        front,
        log,
        conf,
    })
}
