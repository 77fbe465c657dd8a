//! `rimap`: checks a password by logging in to a remote IMAP server
//! (`-O host[/port]`), used during migrations: greeting, `LOGIN` with
//! quoted strings, `LOGOUT`.  Replies as saslauthd: `OK remote
//! authentication successful` or `NO remote server rejected your
//! credentials`.

use super::{BoxFut, Credentials, Mechanism, Notes, Verdict};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// Longest server line read.
const MAX_LINE: usize = 8192;
const TIMEOUT: Duration = Duration::from_secs(30);

pub struct Rimap {
    addr: String,
}

/// IMAP quoted string; `None` if the text cannot be quoted (CR, LF, NUL).
pub fn quote(s: &str) -> Option<String> {
    if s.contains(['\r', '\n', '\0']) {
        return None;
    }
    Some(format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
}

impl Rimap {
    pub fn new(opt: &str) -> Result<Rimap, String> {
        let (host, port) = match opt.rsplit_once('/') {
            Some((h, p)) => (h, p),
            None => (opt, "143"),
        };
        if host.is_empty() {
            return Err("rimap: empty host in -O".into());
        }
        let port = if port == "imap" { "143" } else { port };
        let addr = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Ok(Rimap { addr })
    }

    async fn login(&self, user: &str, pw: &str) -> Result<bool, String> {
        let stream = tokio::net::TcpStream::connect(&self.addr)
            .await
            .map_err(|e| format!("rimap: connect {}: {e}", self.addr))?;
        let (r, mut w) = stream.into_split();
        let mut r = BufReader::new(r);
        let greeting = read_line(&mut r).await?;
        if !greeting.starts_with("* OK") {
            return Err(format!("rimap: unexpected greeting from {}: {}", self.addr, greeting.trim_end()));
        }
        let (Some(u), Some(p)) = (quote(user), quote(pw)) else {
            return Ok(false);
        };
        w.write_all(format!("0 LOGIN {u} {p}\r\n").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        // Untagged lines (capabilities, alerts) may come first; bounded.
        for _ in 0..100 {
            let line = read_line(&mut r).await?;
            if line.starts_with("0 ") {
                let _ = w.write_all(b"1 LOGOUT\r\n").await;
                return Ok(line.starts_with("0 OK"));
            }
        }
        Err(format!("rimap: no tagged reply from {}", self.addr))
    }
}

/// One server line, at most `MAX_LINE` bytes.
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Result<String, String> {
    let mut buf = Vec::new();
    let n = r
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut buf)
        .await
        .map_err(|e| e.to_string())?;
    if n == 0 {
        return Err("rimap: connection closed by server".into());
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

impl Mechanism for Rimap {
    fn name(&self) -> &'static str {
        "rimap"
    }

    fn check<'a>(&'a self, c: &'a Credentials) -> BoxFut<'a, (Verdict, Notes)> {
        Box::pin(async move {
            match tokio::time::timeout(TIMEOUT, self.login(&c.login, c.password.expose())).await {
                Ok(Ok(true)) => (Verdict::OkWith("remote authentication successful".into()), vec![]),
                Ok(Ok(false)) => (Verdict::No("remote server rejected your credentials".into()), vec![]),
                Ok(Err(e)) => (Verdict::unavailable("remote server unavailable"), vec![e]),
                Err(_) => (
                    Verdict::unavailable("remote server unavailable"),
                    vec![format!("rimap: {} timed out", self.addr)],
                ),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_address() {
        assert_eq!(quote("a\"b\\c").unwrap(), "\"a\\\"b\\\\c\"");
        assert!(quote("a\r\nb").is_none());
        assert_eq!(Rimap::new("imap.example.com").unwrap().addr, "imap.example.com:143");
        assert_eq!(Rimap::new("10.0.0.1/993").unwrap().addr, "10.0.0.1:993");
        assert_eq!(Rimap::new("::1/1143").unwrap().addr, "[::1]:1143");
    }
}
