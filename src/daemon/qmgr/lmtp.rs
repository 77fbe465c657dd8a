//! The LMTP and SMTP client (Postfix lmtp(8)/smtp(8), one program as in
//! Postfix): LMTP to `unix:/path` and `inet:host[:port]`, SMTP to
//! `[host]:port`, `host:port` or `host` (MX lookup; see connect.rs, which
//! also holds the STARTTLS policy); LHLO/EHLO (HELO when EHLO is refused),
//! pipelined MAIL/RCPT/DATA when offered, one reply per accepted recipient
//! after the final dot in LMTP (RFC 2033 4.2) and one for all in SMTP, and
//! a cache of idle connections per next hop reused after RSET.
//!
//! Every outcome is per recipient: 2xx sent, 4xx deferred, 5xx bounced;
//! a connection or protocol failure defers all recipients still open.

use super::connect::{self, ClientConf, Failure, Target, TlsLevel};
use crate::proto::smtp::reply_line;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

/// Longest reply line read from a server.
const MAX_REPLY_LINE: usize = 4096;
/// Most reply lines in one reply.
const MAX_REPLY_LINES: usize = 100;
/// Idle connections are kept this long (`lmtp_connection_cache_time_limit`).
const CACHE_TIME: Duration = Duration::from_secs(2);

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

pub struct Conn {
    io: BufReader<Box<dyn Stream>>,
    /// How long each stage waits.
    t: connect::Timeouts,
    pipelining: bool,
    size: bool,
    eightbit: bool,
    /// The server offers DSN (RFC 3461): NOTIFY, ORCPT, RET and ENVID go
    /// along and the server reports from there on.
    dsn: bool,
    /// The server offers STARTTLS.
    starttls: bool,
    /// Mechanisms of the server's AUTH keyword.
    auth: Vec<String>,
    /// The session runs under TLS.
    tls: bool,
    /// "… TLS connection established …" to log once.
    tls_note: Option<String>,
    /// `host[addr]` or `host[addr]:port` as logged in `relay=`.
    pub relay: String,
}

/// A server reply: code, enhanced status (if any), full text (lines joined
/// by a space, as Postfix logs them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub dsn: String,
    pub text: String,
    /// Each line's text without the code (EHLO keywords).
    pub lines: Vec<String>,
}

impl Reply {
    /// A reply made by the hub itself (no server said it).
    pub(super) fn local(code: u16, dsn: &str, text: impl Into<String>) -> Reply {
        Reply {
            code,
            dsn: dsn.to_string(),
            text: text.into(),
            lines: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent(Reply),
    Deferred(Reply, String),
    Bounced(Reply, String),
}

fn enhanced(text: &str, code: u16) -> String {
    let w = text.split(' ').next().unwrap_or("");
    let parts: Vec<&str> = w.split('.').collect();
    if parts.len() == 3
        && parts.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        && parts[0] == (code / 100).to_string()
    {
        return w.to_string();
    }
    format!("{}.0.0", code / 100)
}

/// One reply, each line within `wait`.
async fn read_reply(io: &mut BufReader<Box<dyn Stream>>, wait: Duration) -> std::io::Result<Reply> {
    let mut lines: Vec<String> = Vec::new();
    let mut code;
    loop {
        let mut buf = Vec::new();
        let n = tokio::time::timeout(wait, (&mut *io).take(MAX_REPLY_LINE as u64).read_until(b'\n', &mut buf))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "timeout"))??;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "lost connection"));
        }
        while buf.last().is_some_and(|c| *c == b'\n' || *c == b'\r') {
            buf.pop();
        }
        let (c, more, text) = reply_line(&buf).ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed reply"))?;
        code = c;
        lines.push(String::from_utf8_lossy(text).into_owned());
        if !more || lines.len() >= MAX_REPLY_LINES {
            break;
        }
    }
    let first = lines.first().cloned().unwrap_or_default();
    let dsn = enhanced(&first, code);
    let text = format!("{code} {}", lines.join(" "));
    Ok(Reply { code, dsn, text, lines })
}

use tokio::io::AsyncReadExt;

/// Idle connections per next hop.
#[derive(Default)]
pub struct Cache(Mutex<HashMap<String, Vec<(Instant, Conn)>>>);

impl Cache {
    fn take(&self, key: &str) -> Option<Conn> {
        let mut m = self.0.lock().ok()?;
        let v = m.get_mut(key)?;
        while let Some((t, c)) = v.pop() {
            if t.elapsed() < CACHE_TIME {
                return Some(c);
            }
        }
        None
    }

    /// Drops every idle connection (on reload).
    pub fn clear(&self) {
        if let Ok(mut m) = self.0.lock() {
            m.clear();
        }
    }

    fn put(&self, key: &str, c: Conn) {
        if let Ok(mut m) = self.0.lock() {
            m.entry(key.to_string()).or_default().push((Instant::now(), c));
        }
    }
}

/// Connection failure text as Postfix logs it.
fn connect_error(what: &str, e: &std::io::Error) -> String {
    format!("connect to {what}: {}", crate::util::strerror(e))
}

/// A failed attempt on one address; `plain_retry`: a `may` TLS handshake
/// failed, the same host is tried again without TLS.
struct Attempt {
    failure: Failure,
    plain_retry: bool,
}

impl From<Failure> for Attempt {
    fn from(failure: Failure) -> Attempt {
        Attempt {
            failure,
            plain_retry: false,
        }
    }
}

/// A TCP connection from `*_bind_address(6)` when set for the family.
async fn open(client: &ClientConf, ip: std::net::IpAddr, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let bind = if ip.is_ipv6() { client.bind6 } else { client.bind4 };
    let Some(local) = bind else {
        return tokio::net::TcpStream::connect((ip, port)).await;
    };
    let sock = if ip.is_ipv6() {
        tokio::net::TcpSocket::new_v6()?
    } else {
        tokio::net::TcpSocket::new_v4()?
    };
    sock.bind(std::net::SocketAddr::new(local, 0))?;
    sock.connect(std::net::SocketAddr::new(ip, port)).await
}

/// Connects to the next hop: every address in turn until one greets and
/// takes LHLO/EHLO (and STARTTLS when the policy asks).
async fn connect(job: &Job<'_>, client: &ClientConf, notes: &mut Vec<String>) -> Result<Conn, (Failure, String)> {
    let target =
        connect::parse_with_port(job.nexthop, job.smtp, client.tcp_port).map_err(|e| (Failure::defer("4.3.5", e), "none".to_string()))?;
    let (host, port, mx) = match target {
        Target::Unix(path) => {
            let relay = format!("{}[{path}]", job.myhostname);
            let s = tokio::net::UnixStream::connect(&path)
                .await
                .map_err(|e| (Failure::defer("4.4.1", connect_error(&relay, &e)), "none".to_string()))?;
            return handshake(Box::new(s), relay.clone(), None, job, client, "", true)
                .await
                .map_err(|a| (a.failure, relay));
        }
        Target::Inet { host, port, mx } => (host, port, mx),
    };
    let addrs = client
        .addresses(&host, port, mx, notes)
        .await
        .map_err(|f| (f, "none".to_string()))?;
    let mut last = (
        Failure::defer("4.4.1", format!("connect to {host}: no address")),
        "none".to_string(),
    );
    let mut sessions = 0;
    let n = addrs.len();
    for (i, a) in addrs.into_iter().enumerate() {
        if sessions >= client.session_limit() {
            break;
        }
        let relay = format!("{}[{}]:{}", a.host, a.ip, a.port);
        let mut plain = false;
        loop {
            let stream = match tokio::time::timeout(client.connect_timeout, open(client, a.ip, a.port)).await {
                Err(_) => Err(format!("connect to {relay}: Connection timed out")),
                Ok(Err(e)) => Err(connect_error(&relay, &e)),
                Ok(Ok(s)) => Ok(s),
            };
            let s = match stream {
                Ok(s) => s,
                Err(why) => {
                    if i + 1 < n {
                        notes.push(why.clone());
                    }
                    last = (Failure::defer("4.4.1", why), "none".to_string());
                    break;
                }
            };
            let _ = s.set_nodelay(true);
            sessions += 1;
            match handshake(Box::new(s), relay.clone(), Some(&a), job, client, &host, plain).await {
                Ok(c) => return Ok(c),
                Err(at) => {
                    if at.plain_retry && !plain {
                        notes.push(format!("{}; retrying without TLS", at.failure.text));
                        plain = true;
                        continue;
                    }
                    if i + 1 < n {
                        notes.push(at.failure.text.clone());
                    }
                    last = (at.failure, relay.clone());
                    break;
                }
            }
        }
    }
    Err(last)
}

/// Greeting, LHLO/EHLO, the STARTTLS policy and SASL on a new connection.
async fn handshake(
    io: Box<dyn Stream>,
    relay: String,
    addr: Option<&connect::Addr>,
    job: &Job<'_>,
    client: &ClientConf,
    domain: &str,
    plain: bool,
) -> Result<Conn, Attempt> {
    let mut c = greet_and_tls(io, relay, addr, job, client, domain, plain).await?;
    c.authenticate(job, client).await?;
    Ok(c)
}

async fn greet_and_tls(
    io: Box<dyn Stream>,
    relay: String,
    addr: Option<&connect::Addr>,
    job: &Job<'_>,
    client: &ClientConf,
    domain: &str,
    plain: bool,
) -> Result<Conn, Attempt> {
    let mut c = Conn {
        io: BufReader::new(io),
        t: client.timeouts,
        pipelining: false,
        size: false,
        eightbit: false,
        dsn: false,
        starttls: false,
        auth: Vec::new(),
        tls: false,
        tls_note: None,
        relay,
    };
    let g = read_reply(&mut c.io, c.t.helo).await.map_err(|e| {
        Failure::defer(
            "4.4.2",
            format!("lost connection with {} while receiving the initial server greeting: {e}", c.relay),
        )
    })?;
    if g.code != 220 {
        return Err(Failure::defer("4.3.0", format!("host {} refused to talk to me: {}", c.relay, g.text)).into());
    }
    c.lhlo(job.lhlo_name, job.smtp).await.map_err(|e| Failure::defer("4.4.2", e))?;
    let policy = client.policy(job.nexthop).map_err(Attempt::from)?;
    let level = policy.level;
    if plain || level == TlsLevel::None || addr.is_none() {
        return Ok(c);
    }
    if !c.starttls {
        if level >= TlsLevel::Encrypt {
            return Err(Failure::defer("4.7.4", format!("TLS is required, but was not offered by host {}", c.relay)).into());
        }
        return Ok(c);
    }
    c.send("STARTTLS\r\n").await.map_err(|e| Failure::defer("4.4.2", e.to_string()))?;
    c.flush().await.map_err(|e| Failure::defer("4.4.2", e.to_string()))?;
    let r = read_reply(&mut c.io, c.t.starttls)
        .await
        .map_err(|e| Failure::defer("4.4.2", format!("lost connection with {} while sending STARTTLS: {e}", c.relay)))?;
    if r.code != 220 {
        if level >= TlsLevel::Encrypt {
            return Err(Failure::defer(
                "4.7.4",
                format!("TLS is required, but host {} refused to start TLS: {}", c.relay, r.text),
            )
            .into());
        }
        return Ok(c);
    }
    if !c.io.buffer().is_empty() {
        // Plaintext after the 220 would be read as if it came under TLS.
        return Err(Failure::defer("4.7.5", format!("host {} sent data after STARTTLS reply", c.relay)).into());
    }
    let host = addr.map_or_else(String::new, |a| a.host.clone());
    let ip = addr.map_or(std::net::IpAddr::from([127, 0, 0, 1]), |a| a.ip);
    let domain = if domain.is_empty() { host.as_str() } else { domain };
    let (cfg, name) = client.tls_for(&host, ip, domain, &policy)?;
    let relay = c.relay.clone();
    let inner = c.io.into_inner();
    let tls = match tokio::time::timeout(c.t.starttls, tokio_rustls::TlsConnector::from(cfg).connect(name, inner)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            let text = match e.get_ref().and_then(|x| x.downcast_ref::<rustls::Error>()) {
                Some(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
                | Some(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForNameContext { .. })) => {
                    "Server certificate not verified".to_string()
                }
                Some(rustls::Error::InvalidCertificate(_)) => "Server certificate not trusted".to_string(),
                _ => format!("Cannot start TLS: handshake failure with {relay}"),
            };
            return Err(Attempt {
                failure: Failure::defer("4.7.5", text),
                plain_retry: level == TlsLevel::May,
            });
        }
        Err(_) => {
            return Err(Attempt {
                failure: Failure::defer("4.7.5", format!("Cannot start TLS: handshake timeout with {relay}")),
                plain_retry: level == TlsLevel::May,
            })
        }
    };
    let (_, session) = tls.get_ref();
    let summary = crate::util::tls::summary(session.protocol_version(), session.negotiated_cipher_suite());
    let trust = if level >= TlsLevel::Verify { "Verified" } else { "Untrusted" };
    let note = format!("{trust} TLS connection established to {relay}: {summary}");
    let mut c = Conn {
        io: BufReader::new(Box::new(tls)),
        t: client.timeouts,
        pipelining: false,
        size: false,
        eightbit: false,
        dsn: false,
        starttls: true,
        auth: Vec::new(),
        tls: false,
        tls_note: None,
        relay,
    };
    c.lhlo(job.lhlo_name, job.smtp).await.map_err(|e| Failure::defer("4.4.2", e))?;
    if client.tls_loglevel >= 1 {
        c.tls_note = Some(note);
    }
    Ok(c)
}

impl Conn {
    /// SASL AUTH when the client is configured for it, the server offers
    /// AUTH and the password maps know this next hop.
    async fn authenticate(&mut self, job: &Job<'_>, client: &ClientConf) -> Result<(), Failure> {
        let Some(sasl) = &client.sasl else {
            return Ok(());
        };
        if self.auth.is_empty() {
            return Ok(());
        }
        let host = self.relay.split('[').next().unwrap_or("").to_string();
        let (user, pass) = match sasl.credentials(job.nexthop, &host) {
            Ok(Some(c)) => c,
            Ok(None) => return Ok(()),
            Err(e) => {
                return Err(Failure::defer(
                    "4.3.0",
                    format!("SASL authentication failed; password table lookup error: {e}"),
                ))
            }
        };
        let relay = self.relay.clone();
        #[cfg(feature = "krb5")]
        if sasl.wants_gssapi(&self.auth, &pass) {
            let service = if job.smtp { "smtp" } else { "lmtp" };
            return self.authenticate_gssapi(service, &host, &user).await;
        }
        let Some(mech) = sasl.choose(&self.auth, self.tls) else {
            return Err(Failure::defer(
                "4.7.0",
                format!("SASL authentication failed; cannot authenticate to server {relay}: no mechanism available"),
            ));
        };
        let lost = |e: std::io::Error| {
            Failure::defer(
                "4.4.2",
                format!("lost connection with {relay} while performing SASL authentication: {e}"),
            )
        };
        let b64 = |s: &[u8]| crate::util::base64_encode(s);
        let r = if mech == "PLAIN" {
            let mut ir = vec![0u8];
            ir.extend_from_slice(user.as_bytes());
            ir.push(0);
            ir.extend_from_slice(pass.as_bytes());
            self.send(&format!("AUTH PLAIN {}\r\n", b64(&ir))).await.map_err(lost)?;
            self.flush().await.map_err(lost)?;
            read_reply(&mut self.io, self.t.helo).await.map_err(lost)?
        } else {
            self.send("AUTH LOGIN\r\n").await.map_err(lost)?;
            self.flush().await.map_err(lost)?;
            let mut r = read_reply(&mut self.io, self.t.helo).await.map_err(lost)?;
            for answer in [user.as_bytes(), pass.as_bytes()] {
                if r.code != 334 {
                    break;
                }
                self.send(&format!("{}\r\n", b64(answer))).await.map_err(lost)?;
                self.flush().await.map_err(lost)?;
                r = read_reply(&mut self.io, self.t.helo).await.map_err(lost)?;
            }
            r
        };
        if r.code != 235 {
            // smtp_sasl_auth_soft_bounce: a refused login is temporary.
            return Err(Failure::defer(
                "4.7.0",
                format!("SASL authentication failed; server {relay} said: {}", r.text),
            ));
        }
        Ok(())
    }

    /// AUTH GSSAPI to `service@host` as `user` when it names a principal
    /// (`smtp/hub1.example.edu`, `name@REALM`), else with the default
    /// credentials (the ccache, or the keytab in `KRB5_CLIENT_KTNAME`).
    #[cfg(feature = "krb5")]
    async fn authenticate_gssapi(&mut self, service: &str, host: &str, user: &str) -> Result<(), Failure> {
        let relay = self.relay.clone();
        let failed = |e: String| {
            Failure::defer(
                "4.7.0",
                format!("SASL authentication failed; cannot authenticate to server {relay}: {e}"),
            )
        };
        let lost = |e: std::io::Error| {
            Failure::defer(
                "4.4.2",
                format!("lost connection with {relay} while performing SASL authentication: {e}"),
            )
        };
        let principal = crate::auth::gssapi::named_principal(user);
        let (mut login, first) = crate::auth::gssapi::Login::start(service, host, &principal, "")
            .await
            .map_err(&failed)?;
        self.send(&format!("AUTH GSSAPI {first}\r\n")).await.map_err(lost)?;
        self.flush().await.map_err(lost)?;
        let mut r = read_reply(&mut self.io, self.t.helo).await.map_err(lost)?;
        while r.code == 334 {
            let challenge = r.lines.last().map(String::as_str).unwrap_or("");
            let reply = login.answer(challenge).await.map_err(&failed)?;
            self.send(&format!("{reply}\r\n")).await.map_err(lost)?;
            self.flush().await.map_err(lost)?;
            r = read_reply(&mut self.io, self.t.helo).await.map_err(lost)?;
        }
        if r.code != 235 {
            return Err(Failure::defer(
                "4.7.0",
                format!("SASL authentication failed; server {relay} said: {}", r.text),
            ));
        }
        Ok(())
    }

    async fn send(&mut self, line: &str) -> std::io::Result<()> {
        self.io.get_mut().write_all(line.as_bytes()).await
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.io.get_mut().flush().await
    }

    async fn lhlo(&mut self, name: &str, smtp: bool) -> Result<(), String> {
        let verb = if smtp { "EHLO" } else { "LHLO" };
        self.send(&format!("{verb} {name}\r\n")).await.map_err(|e| e.to_string())?;
        self.flush().await.map_err(|e| e.to_string())?;
        let mut r = read_reply(&mut self.io, self.t.helo)
            .await
            .map_err(|e| format!("lost connection with {} while performing the {verb} handshake: {e}", self.relay))?;
        if smtp && r.code / 100 == 5 {
            // An old server: HELO, no extensions.
            self.send(&format!("HELO {name}\r\n")).await.map_err(|e| e.to_string())?;
            self.flush().await.map_err(|e| e.to_string())?;
            r = read_reply(&mut self.io, self.t.helo)
                .await
                .map_err(|e| format!("lost connection with {} while performing the HELO handshake: {e}", self.relay))?;
            if r.code != 250 {
                return Err(format!("host {} said: {} (in reply to HELO command)", self.relay, r.text));
            }
            return Ok(());
        }
        if r.code != 250 {
            return Err(format!("host {} said: {} (in reply to {verb} command)", self.relay, r.text));
        }
        let up = r.text.to_ascii_uppercase();
        self.pipelining = up.contains(" PIPELINING");
        self.size = up.contains(" SIZE");
        self.eightbit = up.contains(" 8BITMIME");
        self.dsn = r.lines.iter().any(|l| l.eq_ignore_ascii_case("DSN"));
        self.starttls = up.contains(" STARTTLS");
        // "250-AUTH PLAIN LOGIN" (lines joined by spaces in the text).
        self.auth = r
            .lines
            .iter()
            .find_map(|l| l.get(..5).filter(|k| k.eq_ignore_ascii_case("AUTH ")).map(|_| &l[5..]))
            .map(|m| m.split_whitespace().map(|x| x.to_ascii_uppercase()).collect())
            .unwrap_or_default();
        Ok(())
    }
}

/// What one delivery attempt needs.
pub struct Job<'a> {
    /// SMTP instead of LMTP.
    pub smtp: bool,
    /// The master.cf transport (its settings differ: connections are
    /// cached per transport and next hop).
    pub transport: &'a str,
    pub nexthop: &'a str,
    pub lhlo_name: &'a str,
    pub myhostname: &'a str,
    pub sender: &'a str,
    pub rcpts: &'a [String],
    pub content: &'a [u8],
    /// ` RET=… ENVID=…` for MAIL and ` NOTIFY=… ORCPT=…` per recipient,
    /// sent when the server offers DSN.
    pub mail_dsn: &'a str,
    pub rcpt_dsn: &'a [String],
}

/// Timings for `delays=…/c/d`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Timing {
    pub setup: Duration,
    pub xfer: Duration,
}

/// The result of one delivery attempt: one outcome per recipient, the
/// relay name, the timings, and lines for the agent's log (connection
/// failures before the last, TLS sessions).
pub struct Delivery {
    pub outcomes: Vec<Outcome>,
    pub relay: String,
    pub timing: Timing,
    pub notes: Vec<String>,
    /// The server took the DSN requests (it notifies from there on).
    pub dsn_passed: bool,
}

/// Delivers to one next hop.
pub async fn deliver(cache: &Cache, job: &Job<'_>, client: &ClientConf) -> Delivery {
    let t0 = Instant::now();
    let n = job.rcpts.len();
    let mut notes = Vec::new();
    let fail_all = |f: &Failure| -> Vec<Outcome> {
        (0..n)
            .map(|_| {
                if f.bounce {
                    Outcome::Bounced(Reply::local(550, &f.dsn, f.text.clone()), f.text.clone())
                } else {
                    Outcome::Deferred(Reply::local(450, &f.dsn, f.text.clone()), f.text.clone())
                }
            })
            .collect()
    };
    let key = format!("{}/{}", job.transport, job.nexthop);
    let mut conn = match cache.take(&key) {
        Some(mut c) => {
            // A cached connection is reset first; if that fails, start over.
            let ok = c.send("RSET\r\n").await.is_ok()
                && c.flush().await.is_ok()
                && matches!(read_reply(&mut c.io, c.t.rset).await, Ok(r) if r.code == 250);
            if ok {
                Some(c)
            } else {
                None
            }
        }
        None => None,
    };
    if conn.is_none() {
        match connect(job, client, &mut notes).await {
            Ok(mut c) => {
                notes.extend(c.tls_note.take());
                conn = Some(c);
            }
            Err((f, relay)) => {
                return Delivery {
                    outcomes: fail_all(&f),
                    relay,
                    timing: Timing::default(),
                    notes,
                    dsn_passed: false,
                }
            }
        }
    }
    let Some(mut c) = conn else {
        let f = Failure::defer("4.3.0", "internal error");
        return Delivery {
            outcomes: fail_all(&f),
            relay: "none".into(),
            timing: Timing::default(),
            notes,
            dsn_passed: false,
        };
    };
    let setup = t0.elapsed();
    let relay = c.relay.clone();
    let dsn_passed = c.dsn;
    let res = transaction(&mut c, job, client.line_length_limit).await;
    let timing = Timing {
        setup,
        xfer: t0.elapsed() - setup,
    };
    let outcomes = match res {
        Ok(outcomes) => {
            cache.put(&key, c);
            outcomes
        }
        Err((done, why)) => {
            let mut out = done;
            while out.len() < n {
                out.push(Outcome::Deferred(Reply::local(450, "4.4.2", why.clone()), why.clone()));
            }
            out
        }
    };
    Delivery {
        outcomes,
        relay,
        timing,
        notes,
        dsn_passed,
    }
}

type TxResult = Result<Vec<Outcome>, (Vec<Outcome>, String)>;

/// `fold`: `*_line_length_limit`.
async fn transaction(c: &mut Conn, job: &Job<'_>, fold: usize) -> TxResult {
    let relay = c.relay.clone();
    let lost = |stage: &str, e: std::io::Error| match e.kind() {
        std::io::ErrorKind::TimedOut => format!("conversation with {relay} timed out while {stage}"),
        _ => format!("lost connection with {relay} while {stage}: {e}"),
    };
    let said = |r: &Reply, cmd: &str| format!("host {relay} said: {} (in reply to {cmd} command)", r.text);
    let eight = job.content.iter().any(|&b| b >= 0x80);
    let mut mail = format!("MAIL FROM:<{}>", job.sender);
    if c.size {
        mail.push_str(&format!(" SIZE={}", job.content.len()));
    }
    if eight && c.eightbit {
        mail.push_str(" BODY=8BITMIME");
    }
    if c.dsn {
        mail.push_str(job.mail_dsn);
    }
    mail.push_str("\r\n");
    let dsn = c.dsn;
    let rcpt_line = |i: usize, r: &str| -> String {
        let extra = if dsn {
            job.rcpt_dsn.get(i).map(String::as_str).unwrap_or("")
        } else {
            ""
        };
        format!("RCPT TO:<{r}>{extra}\r\n")
    };
    let mut out: Vec<Option<Outcome>> = vec![None; job.rcpts.len()];
    let io_err = |stage: &str, e: std::io::Error, out: &[Option<Outcome>]| -> (Vec<Outcome>, String) {
        (out.iter().flatten().cloned().collect::<Vec<_>>(), lost(stage, e))
    };
    // With PIPELINING everything up to DATA goes in one write.
    let mut batch = mail.clone();
    for (i, r) in job.rcpts.iter().enumerate() {
        batch.push_str(&rcpt_line(i, r));
    }
    batch.push_str("DATA\r\n");
    if c.pipelining {
        c.send(&batch).await.map_err(|e| io_err("sending MAIL FROM", e, &out))?;
        c.flush().await.map_err(|e| io_err("sending MAIL FROM", e, &out))?;
    } else {
        c.send(&mail).await.map_err(|e| io_err("sending MAIL FROM", e, &out))?;
        c.flush().await.map_err(|e| io_err("sending MAIL FROM", e, &out))?;
    }
    let r = read_reply(&mut c.io, c.t.mail)
        .await
        .map_err(|e| io_err("sending MAIL FROM", e, &out))?;
    let mail_fail = (r.code / 100 != 2).then(|| r.clone());
    let mut accepted = Vec::new();
    for (i, rcpt) in job.rcpts.iter().enumerate() {
        if !c.pipelining {
            if mail_fail.is_some() {
                break;
            }
            c.send(&rcpt_line(i, rcpt)).await.map_err(|e| io_err("sending RCPT TO", e, &out))?;
            c.flush().await.map_err(|e| io_err("sending RCPT TO", e, &out))?;
        }
        let r = read_reply(&mut c.io, c.t.rcpt)
            .await
            .map_err(|e| io_err("sending RCPT TO", e, &out))?;
        if let Some(m) = &mail_fail {
            out[i] = Some(fail(m.clone(), said(m, "MAIL FROM")));
        } else if r.code / 100 == 2 {
            accepted.push(i);
        } else {
            out[i] = Some(fail(r.clone(), said(&r, "RCPT TO")));
        }
    }
    if !c.pipelining && !accepted.is_empty() {
        c.send("DATA\r\n").await.map_err(|e| io_err("sending DATA command", e, &out))?;
        c.flush().await.map_err(|e| io_err("sending DATA command", e, &out))?;
    }
    if c.pipelining || !accepted.is_empty() {
        let r = read_reply(&mut c.io, c.t.data_init)
            .await
            .map_err(|e| io_err("sending DATA command", e, &out))?;
        if r.code != 354 {
            for &i in &accepted {
                out[i] = Some(fail(r.clone(), said(&r, "DATA")));
            }
            accepted.clear();
            if c.pipelining && out.iter().all(Option::is_some) {
                return Ok(out.into_iter().flatten().collect());
            }
        }
    }
    if !accepted.is_empty() {
        let body = crate::proto::lmtp::dot_stuff_folded(job.content, fold);
        // Each piece written within *_data_xfer_timeout.
        let xfer = c.t.data_xfer;
        for piece in body.chunks(64 * 1024) {
            tokio::time::timeout(xfer, c.io.get_mut().write_all(piece))
                .await
                .unwrap_or_else(|_| Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "timeout")))
                .map_err(|e| io_err("sending message body", e, &out))?;
        }
        c.flush().await.map_err(|e| io_err("sending message body", e, &out))?;
        // LMTP: one reply per accepted recipient; SMTP: one for all.
        let replies = if job.smtp { 1.min(accepted.len()) } else { accepted.len() };
        let mut last = None;
        for k in 0..replies {
            let r = read_reply(&mut c.io, c.t.data_done)
                .await
                .map_err(|e| io_err("sending end of data -- message may be sent more than once", e, &out))?;
            if job.smtp {
                last = Some(r);
            } else {
                out[accepted[k]] = Some(if r.code / 100 == 2 {
                    Outcome::Sent(r)
                } else {
                    fail(r.clone(), said(&r, "end of DATA"))
                });
            }
        }
        if let Some(r) = last {
            for &i in &accepted {
                out[i] = Some(if r.code / 100 == 2 {
                    Outcome::Sent(r.clone())
                } else {
                    fail(r.clone(), said(&r, "end of DATA"))
                });
            }
        }
    } else if !c.pipelining {
        // Nothing accepted and no DATA sent: the transaction is over.
    } else {
        // DATA got 354 with no recipient accepted: end it empty.
        c.send(".\r\n").await.map_err(|e| io_err("sending end of data", e, &out))?;
        c.flush().await.map_err(|e| io_err("sending end of data", e, &out))?;
        let _ = read_reply(&mut c.io, c.t.quit).await;
    }
    Ok(out
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Outcome::Deferred(Reply::local(450, "4.3.0", "internal error"), "internal error".into())))
        .collect())
}

fn fail(r: Reply, why: String) -> Outcome {
    if r.code / 100 == 5 {
        Outcome::Bounced(r, why)
    } else {
        Outcome::Deferred(r, why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuffing_and_status() {
        assert_eq!(crate::proto::lmtp::dot_stuff(b".a\r\nb\r\n.\r\n"), b"..a\r\nb\r\n..\r\n.\r\n");
        assert_eq!(crate::proto::lmtp::dot_stuff(b"x"), b"x\r\n.\r\n");
        assert_eq!(enhanced("5.1.1 User unknown", 550), "5.1.1");
        assert_eq!(enhanced("4.1.1 mismatch", 550), "5.0.0");
        assert_eq!(enhanced("Ok", 250), "2.0.0");
    }
}
