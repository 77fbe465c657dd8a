//! The client side of saslauthd's mux protocol, as libsasl's
//! `saslauthd_verify_password` speaks it: connect, send four counted
//! strings, read one counted reply.  Used by imapd/lmtpd/pop3d for
//! `sasl_pwcheck_method: saslauthd`.

use crate::mail::Secret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a check may take before the login fails temporarily.
pub const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// `Ok(true)` accepted, `Ok(false)` refused, `Err` saslauthd unreachable
/// or broken, or its `NO [UNAVAILABLE]` (what it checks with is down): a
/// temporary failure, never a refusal.
pub async fn check(path: &str, login: &str, password: &Secret<Vec<u8>>, service: &str, realm: &str) -> Result<bool, String> {
    let work = async {
        let mut s = tokio::net::UnixStream::connect(path)
            .await
            .map_err(|e| format!("cannot connect to saslauthd server: {e}"))?;
        let req = crate::proto::saslauthd::encode_request(login.as_bytes(), password.expose(), service.as_bytes(), realm.as_bytes());
        s.write_all(&req).await.map_err(|e| format!("write to saslauthd: {e}"))?;
        let mut buf = Vec::with_capacity(64);
        let mut chunk = [0u8; 1024];
        loop {
            if let Some(r) = crate::proto::saslauthd::decode_reply(&buf) {
                let mark = format!("NO {}", crate::auth::UNAVAILABLE);
                if r.starts_with(mark.as_bytes()) {
                    return Err(format!("saslauthd: {}", String::from_utf8_lossy(&r[3..])));
                }
                return Ok(r.starts_with(b"OK"));
            }
            let n = s.read(&mut chunk).await.map_err(|e| format!("read from saslauthd: {e}"))?;
            if n == 0 || buf.len() > 4096 {
                return Err("saslauthd closed the connection".to_string());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(TIMEOUT, work)
        .await
        .map_err(|_| "saslauthd timed out".to_string())?
}
