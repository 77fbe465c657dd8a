//! lmtpproxyd: a Murder front end's LMTP (Cyrus's lmtpd when
//! `mupdate_server` is set and `proxyservers` is not).  Each RCPT is
//! looked up in the local MUPDATE replica (`{configdirectory}/mupdate.db`,
//! with a kick of the replica on a miss); at DATA the recipients are
//! grouped per back end and each group goes to its back end's LMTP in one
//! pipelined transaction, over a connection kept for the session and
//! authenticated as `proxy_authname`.  Every recipient gets its back
//! end's reply; a back end that cannot be reached, or that no longer
//! knows a mailbox the directory places there, gives a temporary failure
//! so that the hub queues and retries.

use super::cyrus::check_password;
use super::lmtpd::{Rd, Wr};
use crate::mail::Secret;
use crate::proto::lmtp::{self, Command};
use crate::server::Conn;
use crate::store::murder::State;
use crate::util::lines::{Line, LineBuffer};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};

const MAX_COMMAND: usize = 4096;
const MAX_DATA_LINE: usize = 1 << 20;
const IDLE: Duration = Duration::from_secs(300);
/// Longest reply line from a back end.
const MAX_REPLY_LINE: usize = 4096;

const UNKNOWN: &str = "550-Mailbox unknown.  Either there is no mailbox associated with this\r\n550-name or you do not have authorization to see it.\r\n550 5.1.1 User unknown";

pub struct LmtpProxy {
    front: super::front::Front,
    preauth: bool,
    lmtp_port: u16,
    /// STARTTLS for TCP clients (`tls_server_cert`/`tls_server_key`).
    tls: Option<Arc<rustls::ServerConfig>>,
}

struct Rcpt {
    addr: String,
    server: String,
    ignore_quota: bool,
}

/// One back end's LMTP connection, kept for the session.
struct Backend {
    io: tokio::io::BufReader<super::peer_tls::PeerIo>,
    auth_param: bool,
    /// A transaction ended without DATA: RSET before the next one.
    dirty: bool,
    /// A write to it, or a reply line from it, within this
    /// (`lmtptxn_timeout`, 5 minutes).
    timeout: Duration,
    /// It offers CHUNKING (ours do; Cyrus's do not).
    chunking: bool,
}

impl LmtpProxy {
    /// Logs in to `server`'s LMTP as `proxy_authname`.
    async fn connect(&self, server: &str) -> Result<Backend, String> {
        let tcp = self.front.connect(server, "lmtp", self.lmtp_port).await?;
        let mut b = Backend {
            timeout: Duration::from_secs(self.front.conf.get_secs("lmtptxn_timeout", 's').unwrap_or(300).clamp(1, 86400) as u64),
            io: tokio::io::BufReader::new(tcp),
            auth_param: false,
            dirty: false,
            chunking: false,
        };
        let (code, _) = b.reply().await?;
        if code != 220 {
            return Err(format!("{server}: greeting {code}"));
        }
        // Cyrus's front end names itself so (the back end's Received).
        let mut lines = b.lhlo(server, "lmtpproxyd").await?;
        let auth_of = |lines: &[String]| {
            lines
                .iter()
                .find_map(|l| l.get(4..).and_then(|x| x.strip_prefix("AUTH ")).map(str::to_string))
        };
        // TLS first when the server name asks for it, or when what we
        // would log in with is offered only after STARTTLS.
        let mechs: Vec<String> = auth_of(&lines).unwrap_or_default().split_whitespace().map(str::to_string).collect();
        let kerberos =
            cfg!(feature = "krb5") && self.front.credentials(server).1.is_empty() && mechs.iter().any(|m| m.eq_ignore_ascii_case("GSSAPI"));
        let starttls = lines.iter().any(|l| l.get(4..).is_some_and(|x| x.eq_ignore_ascii_case("STARTTLS")));
        if super::peer_tls::needs_starttls(server, &mechs, if kerberos { "GSSAPI" } else { "PLAIN" }, starttls) {
            b.send(b"STARTTLS\r\n").await?;
            let (code, l) = b.reply().await?;
            if code != 220 {
                return Err(format!("{server}: STARTTLS: {}", l.join(" ")));
            }
            let io = super::peer_tls::handshake(b.io.into_inner(), server, &self.front.conf).await?;
            b.io = tokio::io::BufReader::new(io);
            lines = b.lhlo(server, "lmtpproxyd").await?;
        }
        b.chunking = lines.iter().any(|l| l.get(4..).is_some_and(|x| x.eq_ignore_ascii_case("CHUNKING")));
        let auth = auth_of(&lines);
        if let Some(mechs) = auth {
            b.auth_param = true;
            // No password for this back end: GSSAPI when it offers it.
            #[cfg(feature = "krb5")]
            if self.front.credentials(server).1.is_empty() && mechs.split_whitespace().any(|m| m.eq_ignore_ascii_case("GSSAPI")) {
                let who = self.front.credentials(server).0;
                let principal = crate::auth::gssapi::named_principal(&who);
                let (host, _) = super::mupdate::client::split_server(server, 24);
                super::front::auth_gssapi_lines(&mut b.io, "lmtp", &host, &principal, "", ("334 ", "235"))
                    .await
                    .map_err(|l| format!("{server}: AUTH GSSAPI as {who}: {l}"))?;
                return Ok(b);
            }
            if !mechs.split_whitespace().any(|m| m.eq_ignore_ascii_case("PLAIN")) {
                return Err(format!("{server}: no PLAIN among {mechs}"));
            }
            let (who, _) = self.front.credentials(server);
            let ir = self.front.plain_for(server, "");
            b.send(format!("AUTH PLAIN {ir}\r\n").as_bytes()).await?;
            let (code, lines) = b.reply().await?;
            if code != 235 {
                return Err(format!("{server}: AUTH as {who}: {}", lines.join(" ")));
            }
        }
        Ok(b)
    }
}

impl Backend {
    /// Bytes to the back end, flushed (over TLS a record goes out now).
    async fn send(&mut self, b: &[u8]) -> Result<(), String> {
        let w = self.io.get_mut();
        let write = async {
            w.write_all(b).await?;
            w.flush().await
        };
        tokio::time::timeout(self.timeout, write)
            .await
            .map_err(|_| "write timed out".to_string())?
            .map_err(|e| e.to_string())
    }

    /// LHLO as `name`: the reply's lines.
    async fn lhlo(&mut self, server: &str, name: &str) -> Result<Vec<String>, String> {
        self.send(format!("LHLO {name}\r\n").as_bytes()).await?;
        let (code, lines) = self.reply().await?;
        if code != 250 {
            return Err(format!("{server}: LHLO {code}"));
        }
        Ok(lines)
    }

    /// One (multi-line) reply: its code and lines.
    async fn reply(&mut self) -> Result<(u16, Vec<String>), String> {
        use tokio::io::AsyncBufReadExt;
        let mut lines = Vec::new();
        loop {
            let mut l = Vec::new();
            let n = tokio::time::timeout(self.timeout, (&mut self.io).take(MAX_REPLY_LINE as u64).read_until(b'\n', &mut l))
                .await
                .map_err(|_| "timed out waiting for the back end".to_string())?
                .map_err(|e| e.to_string())?;
            if n == 0 || !l.ends_with(b"\n") {
                return Err("connection closed by the back end".into());
            }
            let text = String::from_utf8_lossy(&l).trim_end().to_string();
            let code: u16 = text.get(..3).and_then(|c| c.parse().ok()).ok_or(format!("bad reply {text:?}"))?;
            let more = text.as_bytes().get(3) == Some(&b'-');
            lines.push(text);
            if !more {
                return Ok((code, lines));
            }
            if lines.len() > 100 {
                return Err("reply too long".into());
            }
        }
    }
}

impl crate::server::Service for LmtpProxy {
    async fn serve(self: Arc<Self>, conn: Conn) {
        let unix = matches!(conn, Conn::Unix(_));
        let peer = conn.peer();
        let (r, w) = tokio::io::split(conn.into_io());
        let mut s = Session {
            sid: self.front.session_id(),
            p: self.clone(),
            r,
            w: BufWriter::new(w),
            buf: LineBuffer::new(MAX_DATA_LINE),
            queue: VecDeque::new(),
            trusted: unix || self.preauth,
            tls: false,
            authed: unix || self.preauth,
            host: crate::server::peer::ClientHost::new(&peer),
            peer,
            lhlo: String::new(),
            from: None,
            auth_user: None,
            admin: false,
            rcpts: Vec::new(),
            backends: HashMap::new(),
        };
        let _ = s.run().await;
        for (_, mut b) in s.backends.drain() {
            let _ = tokio::time::timeout(Duration::from_secs(2), b.send(b"QUIT\r\n")).await;
        }
    }
}

struct Session {
    p: Arc<LmtpProxy>,
    r: Rd,
    w: BufWriter<Wr>,
    buf: LineBuffer,
    queue: VecDeque<Line>,
    /// The UNIX socket or `-a`: no STARTTLS, no AUTH.
    trusted: bool,
    /// STARTTLS done.
    tls: bool,
    authed: bool,
    peer: String,
    /// Cyrus's client host text, `name [addr]`, for logs and Received.
    host: crate::server::peer::ClientHost,
    /// The client's LHLO name, for the Received field.
    lhlo: String,
    sid: String,
    from: Option<String>,
    /// MAIL's AUTH= parameter, passed on.
    auth_user: Option<String>,
    /// Logged in with AUTH (only admins may): ACLs do not bind.
    admin: bool,
    rcpts: Vec<Rcpt>,
    backends: HashMap<String, Backend>,
}

impl Session {
    async fn reply(&mut self, text: &str) -> std::io::Result<()> {
        self.w.write_all(text.as_bytes()).await?;
        self.w.write_all(b"\r\n").await
    }

    async fn next_line(&mut self) -> std::io::Result<Option<Line>> {
        if self.queue.is_empty() {
            self.w.flush().await?;
        }
        crate::server::read_line(&mut self.r, &mut self.buf, &mut self.queue, IDLE).await
    }

    async fn run(&mut self) -> std::io::Result<()> {
        let p = self.p.clone();
        self.reply(&format!(
            "220 {}server ready",
            super::cyrus::ServerInfo::of(&p.front.conf).greeting(&p.front.servername, "LMTP")
        ))
        .await?;
        let strict_addresses = self.p.front.conf.get_switch("lmtp_strict_rfc2821");
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
                    self.from = None;
                    self.rcpts.clear();
                    let mut caps = vec![
                        p.front.servername.clone(),
                        "8BITMIME".into(),
                        "ENHANCEDSTATUSCODES".into(),
                        "PIPELINING".into(),
                        "SIZE".into(),
                    ];
                    if p.tls.is_some() && !self.trusted && !self.tls {
                        caps.push("STARTTLS".into());
                    }
                    // A password in the clear only under TLS or with
                    // `allowplaintext`, as Cyrus's lmtpd.
                    if !self.authed && self.plaintext_ok() {
                        caps.push("AUTH PLAIN".into());
                    }
                    caps.push("IGNOREQUOTA".into());
                    for c in caps {
                        self.reply(&format!("250-{c}")).await?;
                    }
                    let sid = self.sid.clone();
                    self.reply(&format!("250 Ok SESSIONID=<{sid}>")).await?;
                }
                Command::HeloEhlo => self.reply(super::lmtpd::SYNTAX).await?,
                Command::Auth(mech, ir) => self.auth(&mech, ir).await?,
                Command::Mail(from, params) => {
                    if let Some(r) = super::lmtpd::mail_refusal(&self.p.front.conf, self.authed, self.from.is_some()) {
                        self.reply(r).await?;
                    } else if let Some(e) = super::lmtpd::mail_params_error(&params, self.p.front.conf.max_message_size()) {
                        self.reply(&e).await?;
                    } else {
                        self.auth_user = params
                            .iter()
                            .find(|(k, _)| k == "AUTH")
                            .and_then(|(_, v)| v.clone())
                            .filter(|v| v != "<>");
                        self.from = Some(from);
                        self.reply("250 2.1.0 ok").await?;
                    }
                }
                Command::Rcpt(to, params) => {
                    if let Some(r) = super::lmtpd::rcpt_refusal(self.from.is_some(), self.rcpts.len()) {
                        self.reply(r).await?;
                    } else if let Some(e) = super::lmtpd::rcpt_params_error(&params) {
                        self.reply(e).await?;
                    } else if to.is_empty() {
                        self.reply(super::lmtpd::UNKNOWN).await?;
                    } else {
                        let ignore = params.iter().any(|(k, _)| k == "IGNOREQUOTA");
                        let r = self.rcpt(&to, ignore).await;
                        self.reply(&r).await?;
                    }
                }
                Command::Data => {
                    if self.rcpts.is_empty() {
                        self.reply("503 5.5.1 No recipients").await?;
                    } else if self.from.is_none() {
                        self.reply("503 5.5.1 Need MAIL command").await?;
                    } else {
                        self.data().await?;
                    }
                }
                Command::Rset => {
                    self.from = None;
                    self.rcpts.clear();
                    self.sid = p.front.session_id();
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
                    let acc = if self.trusted { None } else { p.tls.clone() };
                    let in_tx = !self.rcpts.is_empty();
                    let Some(acc) = super::lmtpd::starttls_begin(&mut self.w, acc, self.tls, in_tx).await? else {
                        continue;
                    };
                    self.queue.clear();
                    self.buf = LineBuffer::new(MAX_DATA_LINE);
                    if super::lmtpd::starttls_handshake(&mut self.r, &mut self.w, acc, &p.front.log, "lmtpproxyd", &self.peer)
                        .await
                        .is_none()
                    {
                        return Ok(());
                    }
                    self.tls = true;
                    self.from = None;
                    self.rcpts.clear();
                }
                Command::Vrfy => self.reply(super::lmtpd::VRFY).await?,
                // No CHUNKING offered here (Cyrus's lmtpproxyd offers none):
                // BDAT is a command it does not know.
                Command::Unknown(_) | Command::Bdat(..) => self.reply(super::lmtpd::SYNTAX).await?,
                Command::Syntax(_) if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"BDAT") => {
                    self.reply(super::lmtpd::SYNTAX).await?
                }
                Command::Syntax(r) => {
                    let (authed, in_mail, n) = (self.authed, self.from.is_some(), self.rcpts.len());
                    let r = super::lmtpd::bad_path_reply(&line, &self.p.front.conf, authed, in_mail, n, r);
                    self.reply(r).await?
                }
            }
        }
    }

    /// Passwords in the clear are fine under TLS or with `allowplaintext`.
    fn plaintext_ok(&self) -> bool {
        self.tls || self.p.front.conf.get_switch("allowplaintext")
    }

    /// AUTH PLAIN for TCP clients (the hub), checked as Cyrus's lmtpd
    /// does: the identity must be an LMTP admin.
    async fn auth(&mut self, mech: &str, ir: Option<String>) -> std::io::Result<()> {
        if self.authed {
            return self.reply("503 5.5.0 already authenticated").await;
        }
        if mech != "PLAIN" || !self.plaintext_ok() {
            return self.reply("504 5.5.4 Unrecognized authentication type").await;
        }
        let resp = match ir {
            Some(r) if r != "=" => r,
            Some(_) => String::new(),
            None => {
                self.reply("334 ").await?;
                match self.next_line().await? {
                    Some(Line::Complete(l)) => String::from_utf8_lossy(&l).into_owned(),
                    _ => return Ok(()),
                }
            }
        };
        let parts: Option<Vec<Vec<u8>>> =
            crate::util::base64_decode(resp.trim()).map(|raw| raw.split(|&c| c == 0).map(<[u8]>::to_vec).collect());
        let Some(parts) = parts.filter(|p| p.len() == 3) else {
            return self.reply("501 5.5.4 Syntax error in parameters").await;
        };
        let user = super::cyrus::canon_userid(&self.p.front.conf, &String::from_utf8_lossy(&parts[1]));
        let admin = self.p.front.conf.get("admins").unwrap_or("").split_whitespace().any(|a| a == user);
        match check_password(&self.p.front.conf, "lmtp", &user, &Secret::new(parts[2].clone())).await {
            Ok(true) if admin => {
                self.authed = true;
                self.admin = true;
                self.p
                    .front
                    .log
                    .info(&format!("login: {} {user} PLAIN User logged in", self.host.get().await));
                self.reply("235 Authenticated!").await
            }
            Ok(_) => {
                self.p.front.log.info(&format!(
                    "badlogin: {} PLAIN [SASL(-13): authentication failure]",
                    self.host.get().await
                ));
                self.reply("535 5.7.8 Authentication failed").await
            }
            Err(e) => {
                self.p.front.log.warning(&e);
                self.reply("454 4.7.0 Temporary authentication failure").await
            }
        }
    }

    async fn rcpt(&mut self, to: &str, ignore_quota: bool) -> String {
        let conf = &self.p.front.conf;
        let mut addr = to.to_string();
        if conf.get_switch("lmtp_downcase_rcpt") {
            let (local, domain) = addr.rsplit_once('@').map_or((addr.as_str(), None), |(l, d)| (l, Some(d)));
            let (user, detail) = local.split_once('+').map_or((local, None), |(u, d)| (u, Some(d)));
            let mut a = user.to_lowercase();
            if let Some(d) = detail {
                a = format!("{a}+{d}");
            }
            if let Some(d) = domain {
                a = format!("{a}@{}", d.to_lowercase());
            }
            addr = a;
        }
        let (local, domain) = addr.rsplit_once('@').unwrap_or((addr.as_str(), ""));
        let local = local.trim_matches('"');
        let user = local.split_once('+').map_or(local, |(u, _)| u);
        let virtdomains = !matches!(conf.get("virtdomains"), Some("off") | Some("no") | None);
        let userid = if virtdomains && !domain.is_empty() {
            format!("{user}@{domain}")
        } else {
            user.to_string()
        };
        let defaultdomain = conf.get("defaultdomain").unwrap_or("").to_string();
        // A shared folder (`postuser+folder`) goes to the back end holding it.
        let detail = local.split_once('+').map(|(_, d)| d);
        let shared = super::lmtpd::shared_folder(conf, user, detail, domain);
        if let Some(name) = &shared {
            // The back end takes the proxy's word (it logs in as an
            // admin): posting rights are checked here, on the replica's
            // ACL, as Cyrus's front end does (`postman` unless an admin
            // logged in).
            match self.p.front.entry(name).await {
                Ok(Some(e)) if e.state == State::Active => {
                    if !self.admin && !super::lmtpd::acl_allows(&e.acl, &["anyone", "postman"], 'p') {
                        return super::lmtpd::NO_POST.into();
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    self.p.front.log.error(&format!("IOERROR: looking up {name}: {e}"));
                    return "451 4.4.3 Remote server unavailable".into();
                }
            }
        }
        let inbox = match shared {
            Some(name) => name,
            None => match crate::store::names::user_inbox(&userid, conf.get_switch("unixhierarchysep"), virtdomains, &defaultdomain) {
                Ok(i) => i,
                Err(_) => return UNKNOWN.to_string(),
            },
        };
        match self.p.front.locate(&inbox).await {
            Ok(Some((State::Active, server))) => {
                self.rcpts.push(Rcpt {
                    addr,
                    server,
                    ignore_quota,
                });
                "250 2.1.5 ok".into()
            }
            Ok(Some((State::Reserved, _))) => "451 4.2.1 Mailbox has been moved to another server".into(),
            Ok(None) => UNKNOWN.to_string(),
            Err(e) => {
                self.p.front.log.error(&format!("IOERROR: looking up {inbox}: {e}"));
                "451 4.4.3 Remote server unavailable".into()
            }
        }
    }

    async fn data(&mut self) -> std::io::Result<()> {
        self.reply("354 go ahead").await?;
        self.w.flush().await?;
        let max = self.p.front.conf.max_message_size();
        let rcpts = std::mem::take(&mut self.rcpts);
        let from = self.from.take().unwrap_or_default();
        let group_of = |server: &str| -> Vec<usize> { (0..rcpts.len()).filter(|&i| rcpts[i].server == server).collect() };
        // The message as the client sends it (dot-stuffed, final dot
        // included), read in raw chunks and passed on as it comes.  What
        // was already read as lines goes first.
        let mut pending: Vec<u8> = Vec::new();
        let mut too_big = false;
        while let Some(l) = self.queue.pop_front() {
            match l {
                Line::Complete(l) => {
                    pending.extend_from_slice(&l);
                    pending.extend_from_slice(b"\r\n");
                }
                Line::TooLong => too_big = true,
            }
        }
        pending.extend_from_slice(&self.buf.take_pending());
        // Where every back end is a kept connection that offers CHUNKING
        // (ours), a small message is read first and goes with its MAIL
        // and RCPTs in one piece (BDAT): one exchange with the back end
        // instead of two.  A big one goes on as below.
        if !too_big && self.chunkable(&rcpts) {
            let mut end = lmtp::DataEnd::default();
            let mut scanned = 0;
            let found = loop {
                if let Some(e) = end.scan(&pending[scanned..]) {
                    break Some(scanned + e);
                }
                scanned = pending.len();
                if pending.len() >= CHUNKED_MAX {
                    break None;
                }
                pending.reserve(CHUNKED_MAX - scanned);
                if crate::server::read_append(&mut self.r, &mut pending, IDLE).await? == 0 {
                    return Ok(());
                }
            };
            if let Some(e) = found {
                let lines = self.buf.feed(&pending[e..]);
                self.queue.extend(lines);
                pending.truncate(e);
                return self.data_chunked(&rcpts, &from, &pending).await;
            }
        }
        // The back ends' MAIL, RCPT and DATA go out now, while the client
        // sends the message, and their answers are read: a back end that
        // says 354 gets the message as it arrives, so that a big one
        // crosses both hops at once.  A message that never completes
        // drops these connections (the back ends discard the
        // transaction).
        let begun = self.begin_all(&from, &rcpts).await;
        let mut open: Vec<(String, Backend, Vec<Option<String>>)> = Vec::new();
        let mut answered: HashMap<String, Vec<String>> = HashMap::new();
        for (server, (mut b, rset)) in begun {
            let idx = group_of(&server);
            let group: Vec<&Rcpt> = idx.iter().map(|&i| &rcpts[i]).collect();
            match self.accept(&mut b, rset, &group).await {
                Ok(Accepted::Ready(refusals)) => open.push((server, b, refusals)),
                Ok(Accepted::Done(replies)) => {
                    self.backends.insert(server.clone(), b);
                    answered.insert(server, replies);
                }
                // Broken before the message: a new connection once it is in.
                Err(e) => self.p.front.log.error(&format!("backend {server}: {e}")),
            }
        }
        // Kept whole only for a back end that has not begun (it gets the
        // message after its end); otherwise only what is not sent yet.
        let retain = rcpts
            .iter()
            .any(|r| !answered.contains_key(&r.server) && !open.iter().any(|(s, _, _)| *s == r.server));
        let mut end = lmtp::DataEnd::default();
        let mut body: Vec<u8> = Vec::new();
        // Held back until its header is complete: Cyrus's lmtpproxyd adds
        // its trace fields, and a Message-ID and a Date where missing.
        let mut dressed = false;
        let mut scanned = 0usize;
        let mut refused: Option<&'static str> = None;
        let (mut size, mut sent) = (0usize, 0usize);
        let mut broken: HashMap<String, String> = HashMap::new();
        // Grown to READ_CHUNK once a read fills it (a big message).
        let mut chunk = vec![0u8; FORWARD_CHUNK];
        loop {
            let data: &[u8] = if !pending.is_empty() {
                &pending
            } else {
                let n = crate::server::read_within(&mut self.r, &mut chunk, IDLE).await?;
                if n == 0 {
                    return Ok(());
                }
                if n == chunk.len() && n < READ_CHUNK {
                    chunk.resize(READ_CHUNK, 0);
                }
                &chunk[..n]
            };
            let (part, rest) = match end.scan(data) {
                Some(e) => (&data[..e], Some(data[e..].to_vec())),
                None => (data, None),
            };
            size += part.len();
            if size > max.saturating_add(3) {
                too_big = true;
            }
            // A big piece once everything before it went: straight on
            // from the read buffer, not copied into `body` first.
            let through = !retain && dressed && rest.is_none() && body.is_empty() && part.len() >= FORWARD_CHUNK / 4;
            if !too_big && refused.is_none() {
                if through {
                    for (server, b, _) in open.iter_mut() {
                        if broken.contains_key(server.as_str()) {
                            continue;
                        }
                        if let Err(e) = b.send(part).await {
                            broken.insert(server.clone(), e);
                        }
                    }
                    pending.clear();
                    continue;
                }
                body.extend_from_slice(part);
            }
            let done = rest.is_some();
            if let Some(rest) = rest {
                // Pipelined commands after the message.
                let lines = self.buf.feed(&rest);
                self.queue.extend(lines);
            }
            pending.clear();
            if !too_big && refused.is_none() && !dressed && (done || header_complete(&body, &mut scanned)) {
                let client = self.host.get().await;
                match self.dress(client, &from, &body, done) {
                    Ok(b) => {
                        body = b;
                        dressed = true;
                    }
                    Err(r) => {
                        refused = Some(r);
                        body = Vec::new();
                    }
                }
            }
            if done {
                break;
            }
            if !too_big && dressed && body.len() - sent >= FORWARD_CHUNK && !open.is_empty() {
                for (server, b, _) in open.iter_mut() {
                    if broken.contains_key(server.as_str()) {
                        continue;
                    }
                    if let Err(e) = b.send(&body[sent..]).await {
                        broken.insert(server.clone(), e);
                    }
                }
                sent = body.len();
                if !retain {
                    body.clear();
                    sent = 0;
                }
            }
        }
        if too_big {
            for _ in &rcpts {
                self.reply("552 5.2.3 Message size exceeds fixed maximum message size").await?;
            }
            return Ok(());
        }
        if let Some(r) = refused {
            // The back ends' transactions go with their connections.
            for _ in &rcpts {
                self.reply(r).await?;
            }
            return Ok(());
        }
        let mut replies: Vec<Option<String>> = vec![None; rcpts.len()];
        let unavailable = "451 4.4.3 Remote server unavailable".to_string();
        // The rest of the message to the back ends that have the start.
        for (server, mut b, refusals) in open {
            let idx = group_of(&server);
            let got = match broken.remove(&server) {
                Some(e) => Err(e),
                None => match b.send(&body[sent..]).await {
                    Ok(()) => self.complete(&mut b, refusals).await,
                    Err(e) => Err(e),
                },
            };
            match got {
                Ok(got) => {
                    self.backends.insert(server.clone(), b);
                    answered.insert(server, got);
                }
                Err(e) => {
                    self.p.front.log.error(&format!("backend {server}: {e}"));
                    answered.insert(server, vec![unavailable.clone(); idx.len()]);
                }
            }
        }
        // Back ends not reached yet (or broken before the message): one
        // transaction now, with a retry on a new connection.
        for server in servers_of(&rcpts) {
            let idx = group_of(server);
            let got = match answered.remove(server) {
                Some(g) => g,
                None => {
                    let group: Vec<&Rcpt> = idx.iter().map(|&i| &rcpts[i]).collect();
                    self.deliver(&server, &from, &group, &body).await
                }
            };
            for (k, &i) in idx.iter().enumerate() {
                replies[i] = got.get(k).cloned();
            }
        }
        for r in replies {
            let r = r.unwrap_or_else(|| unavailable.clone());
            self.reply(&r).await?;
        }
        Ok(())
    }

    /// Whether every back end of `rcpts` is a kept connection, open and
    /// silent, that offers CHUNKING.  One that has closed or spoken is
    /// dropped here (a new connection takes its place).
    fn chunkable(&mut self, rcpts: &[Rcpt]) -> bool {
        let mut all = !rcpts.is_empty();
        for r in rcpts {
            let ok = match self.backends.get_mut(&r.server) {
                Some(b) => b.io.buffer().is_empty() && super::backend_pool::quiet_and_open(b.io.get_mut()),
                None => false,
            };
            if !ok {
                self.backends.remove(&r.server);
            }
            all &= ok && self.backends.get(&r.server).is_some_and(|b| b.chunking);
        }
        all
    }

    /// A whole small message (`raw`: dot-stuffed, final dot included) to
    /// back ends that all offer CHUNKING: [RSET,] MAIL, RCPTs and `BDAT n
    /// LAST` with the message, to each at once, then their answers.
    async fn data_chunked(&mut self, rcpts: &[Rcpt], from: &str, raw: &[u8]) -> std::io::Result<()> {
        // Without dot-led lines but the final one, the content is the
        // input before that line (the back end makes a bare LF CRLF, as
        // the unstuffing would); else it is unstuffed.
        let last = if raw.ends_with(b"\n.\r\n") || raw == b".\r\n" { 3 } else { 2 };
        let plain = &raw[..raw.len().saturating_sub(last)];
        let mut rx = lmtp::DataReceiver::new(self.p.front.conf.max_message_size());
        let content: &[u8] = if !plain.starts_with(b".") && memchr::memmem::find(plain, b"\n.").is_none() {
            rx.too_big = plain.len() > self.p.front.conf.max_message_size();
            plain
        } else {
            rx.feed(raw);
            &rx.data
        };
        if rx.too_big {
            for _ in rcpts {
                self.reply("552 5.2.3 Message size exceeds fixed maximum message size").await?;
            }
            return Ok(());
        }
        let client = self.host.get().await;
        let msg = match self.dress(client, from, content, false) {
            Ok(m) => m,
            Err(r) => {
                for _ in rcpts {
                    self.reply(r).await?;
                }
                return Ok(());
            }
        };
        drop(rx);
        let order = servers_of(rcpts);
        let mut sent = Vec::with_capacity(order.len());
        for server in order {
            let group: Vec<&Rcpt> = rcpts.iter().filter(|r| r.server == server).collect();
            let Some(mut b) = self.backends.remove(server) else { continue };
            let rset = self.begin_with(&mut b, from, &group, Some(&msg)).await;
            sent.push((server, b, rset));
        }
        let mut replies: Vec<Option<String>> = vec![None; rcpts.len()];
        for (server, mut b, rset) in sent {
            let idx: Vec<usize> = (0..rcpts.len()).filter(|&i| rcpts[i].server == server).collect();
            let group: Vec<&Rcpt> = idx.iter().map(|&i| &rcpts[i]).collect();
            let got = match rset {
                Ok(rset) => self.chunked_replies(&mut b, rset, &group).await,
                Err(e) => Err(e),
            };
            match got {
                Ok(got) => {
                    self.backends.insert(server.to_string(), b);
                    for (k, &i) in idx.iter().enumerate() {
                        replies[i] = got.get(k).cloned();
                    }
                }
                Err(e) => self.p.front.log.error(&format!("backend {server}: {e}")),
            }
        }
        for r in replies {
            self.reply(&r.unwrap_or_else(|| "451 4.4.3 Remote server unavailable".to_string()))
                .await?;
        }
        Ok(())
    }

    /// The answers to a chunked transaction: one reply per recipient.
    async fn chunked_replies(&self, b: &mut Backend, rset: bool, group: &[&Rcpt]) -> Result<Vec<String>, String> {
        if rset {
            b.reply().await?;
        }
        let (code, lines) = b.reply().await?;
        let mut refusals: Vec<Option<String>> = Vec::with_capacity(group.len());
        for _ in group {
            let (c, l) = b.reply().await?;
            refusals.push((c != 250).then(|| temp_if_unknown(&l.join("\r\n"))));
        }
        if code != 250 || refusals.iter().all(Option::is_some) {
            // BDAT then has one answer (no transaction, no recipient).
            b.reply().await?;
            let mail = temp_if_unknown(&lines.join("\r\n"));
            return Ok(refusals
                .into_iter()
                .map(|o| if code != 250 { mail.clone() } else { o.unwrap_or_default() })
                .collect());
        }
        let out = self.complete(b, refusals).await?;
        b.dirty = false;
        Ok(out)
    }

    /// The message (dot-stuffed, `complete` with its final dot) with the
    /// trace fields before it and a Message-ID and a Date at the end of
    /// its header where missing, as Cyrus's lmtpproxyd passes it on.
    fn dress(&self, client: &str, from: &str, body: &[u8], complete: bool) -> Result<Vec<u8>, &'static str> {
        let front = &self.p.front;
        let date = super::lmtpd::trace::date_now();
        let version =
            matches!(super::cyrus::ServerInfo::of(&front.conf), super::cyrus::ServerInfo::On).then_some(super::lmtpd::CYRUS_VERSION);
        let t = super::lmtpd::trace::Trace {
            from,
            lhlo: &self.lhlo,
            client,
            servername: &front.servername,
            version,
            sid: &self.sid,
            sieve: false,
        };
        let content = if complete { body.len().saturating_sub(3) } else { body.len() };
        let mut out = t.dress(&body[..content], &date)?;
        out.extend_from_slice(&body[content..]);
        Ok(out)
    }

    /// Starts the transaction on every back end of `rcpts` (one reused
    /// or new connection each): the back ends and whether RSET went first.
    /// A back end that cannot be reached or written to is left out: the
    /// delivery after the body tries it again.
    async fn begin_all(&mut self, from: &str, rcpts: &[Rcpt]) -> HashMap<String, (Backend, bool)> {
        let mut out = HashMap::new();
        for r in rcpts {
            if out.contains_key(&r.server) {
                continue;
            }
            let Ok(mut b) = self.backend(&r.server).await else { continue };
            let group: Vec<&Rcpt> = rcpts.iter().filter(|x| x.server == r.server).collect();
            if let Ok(rset) = self.begin(&mut b, from, &group).await {
                out.insert(r.server.clone(), (b, rset));
            }
        }
        out
    }

    /// The connection kept for `server`, else a new one.
    async fn backend(&mut self, server: &str) -> Result<Backend, String> {
        match self.backends.remove(server) {
            Some(b) => Ok(b),
            None => self.p.connect(server).await,
        }
    }

    /// One transaction on `server`, on a kept connection or a new one.
    /// When the first try breaks before
    /// DATA (nothing can have been accepted), once more on a new
    /// connection.  One reply per recipient.
    async fn deliver(&mut self, server: &str, from: &str, group: &[&Rcpt], body: &[u8]) -> Vec<String> {
        let unavailable = || vec!["451 4.4.3 Remote server unavailable".to_string(); group.len()];
        for attempt in 0..2 {
            let step = match self.backend(server).await {
                Ok(b) => self.transaction(b, from, group, body).await,
                Err(e) => {
                    self.p.front.log.error(&format!("couldn't connect to backend {server}: {e}"));
                    return unavailable();
                }
            };
            match step {
                Ok((b, out)) => {
                    self.backends.insert(server.to_string(), b);
                    return out;
                }
                Err((e, sent_data)) => {
                    self.p.front.log.error(&format!("backend {server}: {e}"));
                    if attempt > 0 || sent_data {
                        return unavailable();
                    }
                }
            }
        }
        unavailable()
    }

    async fn transaction(
        &self,
        mut b: Backend,
        from: &str,
        group: &[&Rcpt],
        body: &[u8],
    ) -> Result<(Backend, Vec<String>), (String, bool)> {
        let rset = self.begin(&mut b, from, group).await.map_err(|s| (s, false))?;
        self.finish(b, rset, group, body).await
    }

    /// [RSET,] MAIL, every RCPT, DATA: pipelined, replies not yet read.
    /// Whether RSET went first.
    async fn begin(&self, b: &mut Backend, from: &str, group: &[&Rcpt]) -> Result<bool, String> {
        self.begin_with(b, from, group, None).await
    }

    /// `begin`, or with a whole message (unstuffed) `BDAT n LAST` and the
    /// message instead of DATA, in the same write.
    async fn begin_with(&self, b: &mut Backend, from: &str, group: &[&Rcpt], msg: Option<&[u8]>) -> Result<bool, String> {
        let rset = b.dirty;
        let mut cmds = String::from(if rset { "RSET\r\n" } else { "" });
        let auth = if b.auth_param {
            format!(
                " AUTH={}",
                self.auth_user.as_deref().map_or("<>".to_string(), crate::proto::smtp::xtext_encode)
            )
        } else {
            String::new()
        };
        cmds.push_str(&format!("MAIL FROM:<{from}>{auth}\r\n"));
        for r in group {
            cmds.push_str(&format!(
                "RCPT TO:<{}>{}\r\n",
                r.addr,
                if r.ignore_quota { " IGNOREQUOTA" } else { "" }
            ));
        }
        b.dirty = true;
        match msg {
            None => {
                cmds.push_str("DATA\r\n");
                b.send(cmds.as_bytes()).await?;
            }
            Some(m) => {
                cmds.push_str(&format!("BDAT {} LAST\r\n", m.len()));
                let mut all = cmds.into_bytes();
                all.extend_from_slice(m);
                b.send(&all).await?;
            }
        }
        Ok(rset)
    }

    /// The replies to what `begin` sent, the body, and one reply per
    /// recipient.
    async fn finish(&self, mut b: Backend, rset: bool, group: &[&Rcpt], body: &[u8]) -> Result<(Backend, Vec<String>), (String, bool)> {
        match self.accept(&mut b, rset, group).await.map_err(|s| (s, false))? {
            Accepted::Done(replies) => Ok((b, replies)),
            Accepted::Ready(refusals) => {
                b.send(body).await.map_err(|s| (s, true))?;
                let replies = self.complete(&mut b, refusals).await.map_err(|s| (s, true))?;
                Ok((b, replies))
            }
        }
    }

    /// The replies to what `begin` sent: ready for the message (354,
    /// with each recipient's refusal or None), or already answered.
    async fn accept(&self, b: &mut Backend, rset: bool, group: &[&Rcpt]) -> Result<Accepted, String> {
        if rset {
            b.reply().await?;
        }
        let (code, lines) = b.reply().await?;
        if code != 250 {
            // Everything after MAIL fails with it.
            for _ in group {
                let _ = b.reply().await;
            }
            let _ = b.reply().await;
            let text = lines.join("\r\n");
            return Ok(Accepted::Done(vec![temp_if_unknown(&text); group.len()]));
        }
        let mut out: Vec<Option<String>> = Vec::with_capacity(group.len());
        for _ in group {
            let (code, lines) = b.reply().await?;
            out.push(if code == 250 {
                None
            } else {
                Some(temp_if_unknown(&lines.join("\r\n")))
            });
        }
        let (code, lines) = b.reply().await?;
        if code != 354 {
            let text = lines.join("\r\n");
            return Ok(Accepted::Done(out.into_iter().map(|o| o.unwrap_or_else(|| text.clone())).collect()));
        }
        b.dirty = false;
        Ok(Accepted::Ready(out))
    }

    /// After the message (final dot included) went: one reply per
    /// recipient the back end took.
    async fn complete(&self, b: &mut Backend, refusals: Vec<Option<String>>) -> Result<Vec<String>, String> {
        let mut result = Vec::with_capacity(refusals.len());
        for o in refusals {
            match o {
                Some(refused) => result.push(refused),
                None => {
                    let (_, lines) = b.reply().await?;
                    result.push(temp_if_unknown(&lines.join("\r\n")));
                }
            }
        }
        Ok(result)
    }
}

/// The back ends of `rcpts`, each once, in the recipients' order.
fn servers_of(rcpts: &[Rcpt]) -> Vec<&str> {
    let mut order: Vec<&str> = Vec::new();
    for r in rcpts {
        if !order.contains(&r.server.as_str()) {
            order.push(&r.server);
        }
    }
    order
}

/// What a back end answered to MAIL, RCPT and DATA.
enum Accepted {
    /// 354: the message may come; each recipient's refusal, if any.
    Ready(Vec<Option<String>>),
    /// No message: one reply per recipient.
    Done(Vec<String>),
}

/// The message goes on to the back ends in pieces of this size.
const FORWARD_CHUNK: usize = 64 * 1024;

/// A big message is read from the client up to this much at a time (and
/// such a piece goes on as read): fewer reads, writes and wakeups.
const READ_CHUNK: usize = 256 * 1024;

/// A message up to this size goes to back ends that offer CHUNKING whole,
/// with its MAIL and RCPTs.
const CHUNKED_MAX: usize = 128 * 1024;

/// A back end that does not know a mailbox the directory places on it:
/// out-of-date MUPDATE data, so a temporary failure (Cyrus's
/// `tempfail_unknown_mailbox`).
/// Whether a (dot-stuffed) message's header has ended with an empty
/// line; `scanned` is how far earlier calls looked.
fn header_complete(b: &[u8], scanned: &mut usize) -> bool {
    if b.starts_with(b"\r\n") || b.starts_with(b"\n") {
        return true;
    }
    let from = (*scanned).min(b.len());
    *scanned = b.len().saturating_sub(2);
    // From each LF on (a byte at a time over a 64 KB piece cost more
    // than the rest of the relay).
    memchr::memchr_iter(b'\n', &b[from..]).any(|i| match &b[from + i + 1..] {
        [b'\n', ..] | [b'\r', b'\n', ..] => true,
        _ => false,
    })
}

fn temp_if_unknown(reply: &str) -> String {
    if reply.starts_with("550") && reply.contains("5.1.1") {
        "451 4.2.1 Mailbox has been moved to another server".into()
    } else {
        reply.to_string()
    }
}

pub fn main(args: &[String]) -> i32 {
    use crate::util::exit;
    let a = match super::cyrus::parse_args(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("lmtpproxyd: {e}");
            return exit::USAGE;
        }
    };
    let front = match super::front::Front::load(&a.config, "lmtp") {
        Ok(f) => f,
        Err(e) => {
            eprintln!("lmtpproxyd: fatal: {e}");
            return exit::CONFIG;
        }
    };
    let log = front.log.clone();
    crate::log::install_panic_hook(log.clone());
    super::cyrus::tune_malloc();
    let tls = match super::cyrus::tls_config(&front.conf) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("lmtpproxyd: fatal: {e}");
            return exit::CONFIG;
        }
    };
    let p = Arc::new(LmtpProxy {
        front,
        preauth: a.preauth,
        lmtp_port: 24,
        tls,
    });
    let specs = if a.listen.is_empty() {
        vec![p.front.conf.path_option("lmtpsocket").unwrap_or_default()]
    } else {
        a.listen.clone()
    };
    // One thread: a proxied message is a relay of short waits, and waking
    // a task on another thread costs more than its work (the bench's
    // proxied LMTP rate).  Nothing here blocks the thread.
    let limits = crate::server::Limits {
        max_conns: super::cyrus::max_conns(),
        keepalive: super::cyrus::keepalive(&p.front.conf),
        ..Default::default()
    };
    super::cyrus::serve_until_term("lmtpproxyd", &log, &specs, p, limits, || {}, true)
}

#[cfg(test)]
mod tests {
    use super::header_complete;

    #[test]
    fn header_end_found_across_pieces() {
        let msg = b"Subject: x\r\nFrom: a@b\r\n\r\nbody\n\nmore\r\n";
        let end = 25; // just past the empty line's LF
        for split in 0..msg.len() {
            let mut scanned = 0;
            let first = header_complete(&msg[..split], &mut scanned);
            let found = first || header_complete(msg, &mut scanned);
            assert!(found, "split {split}");
            assert_eq!(first, split >= end, "split {split}");
        }
        for bare in [&b"A: b\n\nbody"[..], b"\r\nbody", b"\nbody", b"A: b\r\n\r\n"] {
            assert!(header_complete(bare, &mut 0), "{bare:?}");
        }
        for open in [&b"A: b\r\nC: d\r\n"[..], b"A: b\r\n\r", b"", b"A"] {
            assert!(!header_complete(open, &mut 0), "{open:?}");
        }
    }
}
