//! The LMTP and SMTP client (Postfix lmtp(8)/smtp(8), one program as in
//! Postfix): LMTP to `unix:/path` and `inet:host[:port]`, SMTP to
//! `[host]:port`, `host:port` or `host` (the host's addresses: MX lookup
//! is not implemented yet); LHLO/EHLO (HELO when EHLO is refused),
//! pipelined MAIL/RCPT/DATA when offered, one reply per accepted recipient
//! after the final dot in LMTP (RFC 2033 4.2) and one for all in SMTP, and
//! a cache of idle connections per next hop reused after RSET.
//!
//! Every outcome is per recipient: 2xx sent, 4xx deferred, 5xx bounced;
//! a connection or protocol failure defers all recipients still open.

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
const TIMEOUT: Duration = Duration::from_secs(300);

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

pub struct Conn {
    io: BufReader<Box<dyn Stream>>,
    pipelining: bool,
    size: bool,
    eightbit: bool,
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
}

impl Reply {
    /// A reply made by the hub itself (no server said it).
    pub(super) fn local(code: u16, dsn: &str, text: impl Into<String>) -> Reply {
        Reply {
            code,
            dsn: dsn.to_string(),
            text: text.into(),
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

async fn read_reply(io: &mut BufReader<Box<dyn Stream>>) -> std::io::Result<Reply> {
    let mut lines: Vec<String> = Vec::new();
    let mut code;
    loop {
        let mut buf = Vec::new();
        let n = tokio::time::timeout(TIMEOUT, (&mut *io).take(MAX_REPLY_LINE as u64).read_until(b'\n', &mut buf))
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
    Ok(Reply { code, dsn, text })
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

async fn connect(nexthop: &str, myhostname: &str, default_port: &str) -> Result<Conn, String> {
    let (io, relay): (Box<dyn Stream>, String) = if let Some(path) = nexthop.strip_prefix("unix:") {
        let what = format!("{myhostname}[{path}]");
        let s = tokio::net::UnixStream::connect(path).await.map_err(|e| connect_error(&what, &e))?;
        (Box::new(s), what)
    } else {
        let hp = nexthop.strip_prefix("inet:").unwrap_or(nexthop);
        let (host, port) = if let Some(r) = hp.strip_prefix('[') {
            let (h, rest) = r.split_once(']').ok_or_else(|| format!("bad next hop: {nexthop}"))?;
            (h.to_string(), rest.strip_prefix(':').unwrap_or(default_port).to_string())
        } else {
            match hp.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') => (h.to_string(), p.to_string()),
                _ => (hp.to_string(), default_port.to_string()),
            }
        };
        let port: u16 = port.parse().map_err(|_| format!("bad port in next hop: {nexthop}"))?;
        let s = tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect((host.as_str(), port)))
            .await
            .map_err(|_| format!("connect to {host}[{host}]:{port}: Connection timed out"))?
            .map_err(|e| connect_error(&format!("{host}[{host}]:{port}"), &e))?;
        let _ = s.set_nodelay(true);
        let addr = s.peer_addr().map(|a| a.ip().to_string()).unwrap_or_else(|_| host.clone());
        (Box::new(s), format!("{host}[{addr}]:{port}"))
    };
    let mut c = Conn {
        io: BufReader::new(io),
        pipelining: false,
        size: false,
        eightbit: false,
        relay,
    };
    let g = read_reply(&mut c.io)
        .await
        .map_err(|e| format!("lost connection with {} while receiving the initial server greeting: {e}", c.relay))?;
    if g.code != 220 {
        return Err(format!("host {} refused to talk to me: {}", c.relay, g.text));
    }
    Ok(c)
}

impl Conn {
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
        let mut r = read_reply(&mut self.io)
            .await
            .map_err(|e| format!("lost connection with {} while performing the {verb} handshake: {e}", self.relay))?;
        if smtp && r.code / 100 == 5 {
            // An old server: HELO, no extensions.
            self.send(&format!("HELO {name}\r\n")).await.map_err(|e| e.to_string())?;
            self.flush().await.map_err(|e| e.to_string())?;
            r = read_reply(&mut self.io)
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
        Ok(())
    }
}

/// What one delivery attempt needs.
pub struct Job<'a> {
    /// SMTP instead of LMTP.
    pub smtp: bool,
    pub nexthop: &'a str,
    pub lhlo_name: &'a str,
    pub myhostname: &'a str,
    pub sender: &'a str,
    pub rcpts: &'a [String],
    pub content: &'a [u8],
}

/// Timings for `delays=…/c/d`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Timing {
    pub setup: Duration,
    pub xfer: Duration,
}

fn dot_stuff(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 64);
    let mut bol = true;
    for &c in content {
        if bol && c == b'.' {
            out.push(b'.');
        }
        out.push(c);
        bol = c == b'\n';
    }
    if !out.ends_with(b"\r\n") && !out.is_empty() {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Delivers to one next hop; one outcome per recipient, the relay name,
/// and the timings.
pub async fn deliver(cache: &Cache, job: &Job<'_>) -> (Vec<Outcome>, String, Timing) {
    let t0 = Instant::now();
    let n = job.rcpts.len();
    let defer_all = |why: String| -> Vec<Outcome> {
        (0..n)
            .map(|_| Outcome::Deferred(Reply::local(450, "4.4.1", why.clone()), why.clone()))
            .collect()
    };
    let mut conn = match cache.take(job.nexthop) {
        Some(mut c) => {
            // A cached connection is reset first; if that fails, start over.
            let ok = c.send("RSET\r\n").await.is_ok()
                && c.flush().await.is_ok()
                && matches!(read_reply(&mut c.io).await, Ok(r) if r.code == 250);
            if ok {
                Some(c)
            } else {
                None
            }
        }
        None => None,
    };
    if conn.is_none() {
        let port = if job.smtp { "25" } else { "24" };
        match connect(job.nexthop, job.myhostname, port).await {
            Ok(mut c) => match c.lhlo(job.lhlo_name, job.smtp).await {
                Ok(()) => conn = Some(c),
                Err(e) => return (defer_all(e), c.relay, Timing::default()),
            },
            Err(e) => return (defer_all(e), "none".into(), Timing::default()),
        }
    }
    let Some(mut c) = conn else {
        return (defer_all("internal error".into()), "none".into(), Timing::default());
    };
    let setup = t0.elapsed();
    let relay = c.relay.clone();
    let res = transaction(&mut c, job).await;
    let timing = Timing {
        setup,
        xfer: t0.elapsed() - setup,
    };
    match res {
        Ok(outcomes) => {
            cache.put(job.nexthop, c);
            (outcomes, relay, timing)
        }
        Err((done, why)) => {
            let mut out = done;
            while out.len() < n {
                out.push(Outcome::Deferred(Reply::local(450, "4.4.2", why.clone()), why.clone()));
            }
            (out, relay, timing)
        }
    }
}

type TxResult = Result<Vec<Outcome>, (Vec<Outcome>, String)>;

async fn transaction(c: &mut Conn, job: &Job<'_>) -> TxResult {
    let relay = c.relay.clone();
    let lost = |stage: &str, e: std::io::Error| format!("lost connection with {relay} while {stage}: {e}");
    let said = |r: &Reply, cmd: &str| format!("host {relay} said: {} (in reply to {cmd} command)", r.text);
    let eight = job.content.iter().any(|&b| b >= 0x80);
    let mut mail = format!("MAIL FROM:<{}>", job.sender);
    if c.size {
        mail.push_str(&format!(" SIZE={}", job.content.len()));
    }
    if eight && c.eightbit {
        mail.push_str(" BODY=8BITMIME");
    }
    mail.push_str("\r\n");
    let mut out: Vec<Option<Outcome>> = vec![None; job.rcpts.len()];
    let io_err = |stage: &str, e: std::io::Error, out: &[Option<Outcome>]| -> (Vec<Outcome>, String) {
        (out.iter().flatten().cloned().collect::<Vec<_>>(), lost(stage, e))
    };
    // With PIPELINING everything up to DATA goes in one write.
    let mut batch = mail.clone();
    for r in job.rcpts {
        batch.push_str(&format!("RCPT TO:<{r}>\r\n"));
    }
    batch.push_str("DATA\r\n");
    if c.pipelining {
        c.send(&batch).await.map_err(|e| io_err("sending MAIL FROM", e, &out))?;
        c.flush().await.map_err(|e| io_err("sending MAIL FROM", e, &out))?;
    } else {
        c.send(&mail).await.map_err(|e| io_err("sending MAIL FROM", e, &out))?;
        c.flush().await.map_err(|e| io_err("sending MAIL FROM", e, &out))?;
    }
    let r = read_reply(&mut c.io).await.map_err(|e| io_err("sending MAIL FROM", e, &out))?;
    let mail_fail = (r.code / 100 != 2).then(|| r.clone());
    let mut accepted = Vec::new();
    for (i, rcpt) in job.rcpts.iter().enumerate() {
        if !c.pipelining {
            if mail_fail.is_some() {
                break;
            }
            c.send(&format!("RCPT TO:<{rcpt}>\r\n"))
                .await
                .map_err(|e| io_err("sending RCPT TO", e, &out))?;
            c.flush().await.map_err(|e| io_err("sending RCPT TO", e, &out))?;
        }
        let r = read_reply(&mut c.io).await.map_err(|e| io_err("sending RCPT TO", e, &out))?;
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
        let r = read_reply(&mut c.io).await.map_err(|e| io_err("sending DATA command", e, &out))?;
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
        let body = dot_stuff(job.content);
        c.io.get_mut()
            .write_all(&body)
            .await
            .map_err(|e| io_err("sending message body", e, &out))?;
        c.flush().await.map_err(|e| io_err("sending message body", e, &out))?;
        // LMTP: one reply per accepted recipient; SMTP: one for all.
        let replies = if job.smtp { 1.min(accepted.len()) } else { accepted.len() };
        let mut last = None;
        for k in 0..replies {
            let r = read_reply(&mut c.io)
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
        let _ = read_reply(&mut c.io).await;
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
        assert_eq!(dot_stuff(b".a\r\nb\r\n.\r\n"), b"..a\r\nb\r\n..\r\n.\r\n");
        assert_eq!(dot_stuff(b"x"), b"x\r\n.\r\n");
        assert_eq!(enhanced("5.1.1 User unknown", 550), "5.1.1");
        assert_eq!(enhanced("4.1.1 mismatch", 550), "5.0.0");
        assert_eq!(enhanced("Ok", 250), "2.0.0");
    }
}
