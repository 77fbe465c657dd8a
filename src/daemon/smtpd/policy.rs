//! `check_policy_service`: Postfix's policy delegation protocol
//! (SMTPD_POLICY_README).  The request is `name=value` lines ended by an
//! empty line, sent over `inet:host:port` or `unix:/path`; the server
//! answers `action=<access(5) action>` and an empty line.  Connections are
//! kept per service and reused (`smtpd_policy_service_max_idle`,
//! `_max_ttl`, `_request_limit`); a server that cannot be reached or
//! answers badly is tried `_try_limit` times, `_retry_delay` apart, and
//! then its `_default_action` applies (by default `451 4.3.5 Server
//! configuration problem`).

use crate::config::postfix::list::split_list;
use crate::config::postfix::Params;
use crate::config::ConfigError;
use crate::daemon::hub::milter::parse_time;
use crate::log::Logger;
use crate::server::listen::{connect_endpoint, Io};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// A reply line longer than this, or a reply of more lines, is an error.
const LINE_MAX: usize = 4096;
const LINES_MAX: usize = 100;

/// One policy service as named in a restriction list, with the
/// `smtpd_policy_service_*` settings (or its own `{ ..., name=value }`).
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub endpoint: String,
    pub timeout: Duration,
    pub default_action: String,
    pub try_limit: u32,
    pub retry_delay: Duration,
    pub max_idle: Duration,
    pub max_ttl: Duration,
    pub request_limit: u32,
    pub policy_context: String,
}

/// The `smtpd_policy_service_*` parameters, the defaults of every service.
#[derive(Debug, Clone, PartialEq)]
pub struct Defaults(Service);

impl Defaults {
    pub fn load(p: &Params) -> Result<Defaults, ConfigError> {
        Ok(Defaults(Service {
            endpoint: String::new(),
            timeout: p.get_time("smtpd_policy_service_timeout")?,
            default_action: p.get("smtpd_policy_service_default_action").unwrap_or_default().trim().to_string(),
            try_limit: p.get_int("smtpd_policy_service_try_limit", 1, 0)? as u32,
            retry_delay: p.get_time("smtpd_policy_service_retry_delay")?,
            max_idle: p.get_time("smtpd_policy_service_max_idle")?,
            max_ttl: p.get_time("smtpd_policy_service_max_ttl")?,
            request_limit: p.get_int("smtpd_policy_service_request_limit", 0, 0)? as u32,
            policy_context: p.get("smtpd_policy_service_policy_context").unwrap_or_default().trim().to_string(),
        }))
    }

    /// The service named by a restriction's argument: `inet:host:port`,
    /// `unix:path` (relative to the queue directory, as Postfix's
    /// `private/policy`) or `{ endpoint, name=value, ... }`.
    pub fn service(&self, arg: &str, queue_dir: &std::path::Path) -> Result<Service, String> {
        let mut s = self.0.clone();
        let inner = arg.trim();
        let (endpoint, attrs) = match inner.strip_prefix('{') {
            Some(rest) => {
                let rest = rest.strip_suffix('}').ok_or_else(|| format!("missing '}}' in \"{arg}\""))?;
                let mut parts = split_list(rest).into_iter();
                let e = parts.next().ok_or_else(|| format!("missing policy service in \"{arg}\""))?;
                (e.to_string(), parts.collect::<Vec<_>>())
            }
            None => (inner.to_string(), Vec::new()),
        };
        s.endpoint = match endpoint.split_once(':') {
            Some(("inet", rest)) if rest.rsplit_once(':').is_some() => endpoint.clone(),
            Some(("unix", path)) if !path.is_empty() => {
                if path.starts_with('/') {
                    endpoint.clone()
                } else {
                    format!("unix:{}", queue_dir.join(path).display())
                }
            }
            _ => return Err(format!("invalid policy service \"{endpoint}\"")),
        };
        for kv in attrs {
            let (k, v) = kv.split_once('=').ok_or_else(|| format!("bad policy service attribute \"{kv}\""))?;
            let (k, v) = (k.trim(), v.trim());
            let time = || parse_time(v).ok_or_else(|| format!("invalid {k} value \"{v}\""));
            let int = || v.parse::<u32>().map_err(|_| format!("invalid {k} value \"{v}\""));
            match k {
                "timeout" => s.timeout = time()?,
                "default_action" => s.default_action = v.to_string(),
                "try_limit" => s.try_limit = int()?.max(1),
                "retry_delay" => s.retry_delay = time()?,
                "max_idle" => s.max_idle = time()?,
                "max_ttl" => s.max_ttl = time()?,
                "request_limit" => s.request_limit = int()?,
                "policy_context" => s.policy_context = v.to_string(),
                _ => return Err(format!("unknown policy service attribute \"{k}\"")),
            }
        }
        Ok(s)
    }
}

struct Conn {
    io: BufReader<Box<dyn Io>>,
    born: Instant,
    used: Instant,
    requests: u32,
}

/// The kept connections of this process, per endpoint.
#[derive(Default)]
pub struct Pool(Mutex<HashMap<String, Vec<Conn>>>);

impl Pool {
    fn take(&self, s: &Service) -> Option<Conn> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let v = m.get_mut(&s.endpoint)?;
        while let Some(c) = v.pop() {
            if c.used.elapsed() < s.max_idle && c.born.elapsed() < s.max_ttl {
                return Some(c);
            }
        }
        None
    }

    fn put(&self, s: &Service, c: Conn) {
        if s.request_limit > 0 && c.requests >= s.request_limit {
            return;
        }
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let v = m.entry(s.endpoint.clone()).or_default();
        if v.len() < 64 {
            v.push(c);
        }
    }

    /// The action for `request` (complete, with its empty line), or the
    /// service's default action when it cannot be had.
    pub async fn ask(&self, s: &Service, request: &str, log: &Logger) -> String {
        for attempt in 1..=s.try_limit.max(1) {
            match tokio::time::timeout(s.timeout, self.once(s, request)).await {
                Ok(Ok(Some(action))) => return action,
                Ok(Ok(None)) => {
                    log.warning(&format!("{}: policy server reply has no action", s.endpoint));
                }
                Ok(Err(e)) => log.warning(&format!("problem talking to server {}: {e}", s.endpoint)),
                Err(_) => log.warning(&format!("problem talking to server {}: Connection timed out", s.endpoint)),
            }
            if attempt < s.try_limit {
                tokio::time::sleep(s.retry_delay).await;
            }
        }
        s.default_action.clone()
    }

    async fn once(&self, s: &Service, request: &str) -> std::io::Result<Option<String>> {
        if let Some(c) = self.take(s) {
            match self.exchange(s, c, request).await {
                // A kept connection the server has closed meanwhile: once
                // more on a new one, not counted as a try (as Postfix's
                // client reconnects).
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                    ) => {}
                r => return r,
            }
        }
        let c = Conn {
            io: BufReader::new(connect_endpoint(&s.endpoint).await?),
            born: Instant::now(),
            used: Instant::now(),
            requests: 0,
        };
        self.exchange(s, c, request).await
    }

    /// One request and its reply over `c`, which is kept if all went well.
    async fn exchange(&self, s: &Service, mut c: Conn, request: &str) -> std::io::Result<Option<String>> {
        c.io.get_mut().write_all(request.as_bytes()).await?;
        c.io.get_mut().flush().await?;
        let mut action = None;
        let mut lines = 0;
        loop {
            let mut line = Vec::new();
            let n = (&mut c.io).take(LINE_MAX as u64 + 1).read_until(b'\n', &mut line).await?;
            if n == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "Connection closed"));
            }
            if line.len() > LINE_MAX || !line.ends_with(b"\n") {
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "reply line too long"));
            }
            lines += 1;
            if lines > LINES_MAX {
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "reply too long"));
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\r', '\n']);
            if text.is_empty() {
                break;
            }
            if let Some(a) = text.strip_prefix("action=") {
                action = Some(a.trim().to_string());
            }
        }
        c.requests += 1;
        c.used = Instant::now();
        self.put(s, c);
        // `action=` with no value is DUNNO, as the real smtpd takes it.
        Ok(action.map(|a| if a.is_empty() { "DUNNO".to_string() } else { a }))
    }
}

/// The request: `name=value` lines in Postfix's order, and the empty line.
pub fn request(attrs: &[(&str, String)]) -> String {
    let mut out = String::new();
    for (k, v) in attrs {
        out.push_str(k);
        out.push('=');
        // A value never breaks the framing.
        out.extend(v.chars().map(|c| if c == '\n' || c == '\r' { ' ' } else { c }));
        out.push('\n');
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults(main_cf: &str) -> Defaults {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("main.cf"), main_cf).unwrap();
        Defaults::load(&Params::load_main(d.path().to_str().unwrap(), false).unwrap()).unwrap()
    }

    #[test]
    fn services_and_their_attributes() {
        let d = defaults("smtpd_policy_service_timeout = 7s\n");
        let q = std::path::Path::new("/var/spool/postfix");
        let s = d.service("inet:127.0.0.1:9998", q).unwrap();
        assert_eq!(
            (s.endpoint.as_str(), s.timeout, s.try_limit, s.default_action.as_str()),
            (
                "inet:127.0.0.1:9998",
                Duration::from_secs(7),
                2,
                "451 4.3.5 Server configuration problem"
            )
        );
        let s = d.service("unix:private/policy", q).unwrap();
        assert_eq!(s.endpoint, "unix:/var/spool/postfix/private/policy");
        let s = d
            .service(
                "{ inet:[::1]:1, timeout=2m, default_action=DUNNO, try_limit=1, policy_context=sub }",
                q,
            )
            .unwrap();
        assert_eq!(
            (s.timeout, s.default_action.as_str(), s.try_limit, s.policy_context.as_str()),
            (Duration::from_secs(120), "DUNNO", 1, "sub")
        );
        for bad in ["inet:nohost", "tcp:1.2.3.4:5", "{ inet:1.2.3.4:5, colour=red }", "{ inet:1.2.3.4:5"] {
            assert!(d.service(bad, q).is_err(), "{bad}");
        }
    }

    #[test]
    fn request_lines_never_break_the_framing() {
        let r = request(&[("request", "smtpd_access_policy".into()), ("helo_name", "a\nb\rc".into())]);
        assert_eq!(r, "request=smtpd_access_policy\nhelo_name=a b c\n\n");
    }

    /// A server that answers once right, then with a line past the limit:
    /// the first answer comes back, the second turns into the default
    /// action after `try_limit` tries, each logged.
    #[tokio::test]
    async fn answers_reuse_and_bad_replies() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let accepts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let a = accepts.clone();
        tokio::spawn(async move {
            let mut n = 0;
            loop {
                let (s, _) = l.accept().await.unwrap();
                a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut r = BufReader::new(s);
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        break;
                    }
                    if line == "\n" {
                        n += 1;
                        let reply = if n <= 2 {
                            "action=OK\n\n".to_string()
                        } else {
                            format!("action={}\n\n", "x".repeat(5000))
                        };
                        r.get_mut().write_all(reply.as_bytes()).await.unwrap();
                    }
                }
            }
        });
        let d = defaults("smtpd_policy_service_retry_delay = 0s\n");
        let s = d.service(&format!("inet:127.0.0.1:{port}"), std::path::Path::new("/")).unwrap();
        let pool = Pool::default();
        let log = Logger::new("test", 2, crate::log::Target::Stderr);
        let req = request(&[("request", "smtpd_access_policy".into())]);
        assert_eq!(pool.ask(&s, &req, &log).await, "OK");
        assert_eq!(pool.ask(&s, &req, &log).await, "OK");
        // Both over one kept connection.
        assert_eq!(accepts.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(pool.ask(&s, &req, &log).await, "451 4.3.5 Server configuration problem");
        // A bad reply drops the connection: the retry made a new one.
        assert_eq!(accepts.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    /// A server that closes every connection after one answer: the kept
    /// connection is found closed and the request goes over a new one at
    /// once, without a try counted (try_limit 1 would give the default).
    #[tokio::test]
    async fn a_kept_connection_closed_by_the_server_is_replaced() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (s, _) = l.accept().await.unwrap();
                let mut r = BufReader::new(s);
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 || line == "\n" {
                        break;
                    }
                }
                let _ = r.get_mut().write_all(b"action=OK\n\n").await;
            }
        });
        let d = defaults("smtpd_policy_service_try_limit = 1\n");
        let s = d.service(&format!("inet:127.0.0.1:{port}"), std::path::Path::new("/")).unwrap();
        let pool = Pool::default();
        let log = Logger::new("test", 2, crate::log::Target::Stderr);
        let req = request(&[("request", "smtpd_access_policy".into())]);
        for _ in 0..3 {
            assert_eq!(pool.ask(&s, &req, &log).await, "OK");
        }
    }
}
