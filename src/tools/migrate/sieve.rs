//! Users' Sieve scripts moved with their mail (`-K`): read from the old
//! server's ManageSieve (`-k`), or from a Cyrus spool's files (3.x keeps
//! each script as a message of the user's `#sieve` mailbox, named by its
//! Subject, the active one named by the `defaultbc` link in the INBOX's
//! uuid directory under `sievedir`; 2.x and `mailbox_legacy_dirs` keep
//! `<name>.script` files beside `defaultbc`), and stored through the
//! destination's ManageSieve (PUTSCRIPT, then SETACTIVE), where each
//! script is checked as an upload is.  A script the destination refuses
//! (an extension it lacks) is reported and left out; the others go on.

// A client's strings are IMAP's (quoted, else a `{n+}` literal), which
// ManageSieve takes too.
use crate::proto::imap::render::client_string;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// The longest response line and literal read (a script is at most
/// `sieve_maxscriptsize`, 32 KB by default).
const MAX_LINE: u64 = 65536;
const MAX_LITERAL: usize = 4 << 20;

#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct Scripts {
    /// (name, source), by name.
    pub list: Vec<(String, Vec<u8>)>,
    pub active: Option<String>,
}

/// The name Cyrus gives a user's script folder (`sieve_folder`).
pub(super) fn sieve_folder(conf: &crate::config::cyrus::ImapdConf) -> String {
    conf.get("sieve_folder").filter(|f| !f.is_empty()).unwrap_or("#sieve").to_string()
}

/// A user's scripts in a Cyrus spool: from the `#sieve` mailbox when
/// there is one (`sieve_box`), else from the legacy directory.
pub(super) fn from_spool(
    sievedir: &std::path::Path,
    fulldirhash: bool,
    inbox: &str,
    inbox_uniqueid: &str,
    sieve_box: Option<&crate::tools::cyrus_spool::Mailbox>,
) -> Result<Scripts, String> {
    let mut s = Scripts::default();
    if let Some(m) = sieve_box {
        let ix = m.index()?;
        // Each save is a new message; the newest of a name is the script.
        let mut by_name: std::collections::BTreeMap<String, (u32, Vec<u8>)> = Default::default();
        for r in ix.records.iter().filter(|r| !r.expunged() && r.crc_ok) {
            let msg = m.message(r.uid, MAX_LITERAL as u64)?;
            let split = msg.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, i + 4));
            let split = split.or_else(|| msg.windows(2).position(|w| w == b"\n\n").map(|i| (i, i + 2)));
            let Some((head_end, body)) = split else { continue };
            let fields = crate::mail::mime::fields(&msg[..head_end + 2]);
            let Some(subject) = fields.iter().find(|f| f.0.eq_ignore_ascii_case("subject")) else {
                continue;
            };
            let name = crate::mail::mime::decode_words(subject.1.trim_ascii());
            let name = String::from_utf8_lossy(&name).into_owned();
            if by_name.get(&name).is_none_or(|(uid, _)| *uid < r.uid) {
                by_name.insert(name, (r.uid, msg[body..].to_vec()));
            }
        }
        s.list = by_name.into_iter().map(|(n, (_, src))| (n, src)).collect();
        let mut d = sievedir.join("uuid");
        for c in inbox_uniqueid.chars().take(2) {
            d.push(c.to_string());
        }
        d.push(inbox_uniqueid);
        s.active = active_in(&d);
    } else {
        let d = crate::store::names::sieve_dir(sievedir, inbox, fulldirhash);
        let rd = match std::fs::read_dir(&d) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(s),
            Err(e) => return Err(format!("{}: {e}", d.display())),
        };
        for e in rd.flatten() {
            let f = e.file_name();
            let Some(name) = f.to_str().and_then(|f| f.strip_suffix(".script")) else {
                continue;
            };
            let src = crate::tools::cyrus_spool::read_limited(&e.path(), MAX_LITERAL as u64)?;
            s.list.push((name.to_string(), src));
        }
        s.list.sort();
        s.active = active_in(&d);
    }
    if s.active.as_ref().is_some_and(|a| !s.list.iter().any(|(n, _)| n == a)) {
        s.active = None;
    }
    Ok(s)
}

fn active_in(dir: &std::path::Path) -> Option<String> {
    let link = std::fs::read_link(dir.join("defaultbc")).ok()?;
    let name = link.file_name()?.to_str()?;
    Some(name.strip_suffix(".bc").unwrap_or(name).to_string())
}

/// A ManageSieve session as a client.
struct Client {
    io: BufReader<tokio::net::TcpStream>,
}

/// One response: its data lines (literals joined in) and the final
/// OK/NO/BYE line.
struct Response {
    lines: Vec<Vec<u8>>,
    status: String,
}

impl Response {
    fn ok(&self) -> bool {
        self.status.starts_with("OK")
    }

    /// The status line, with a literal's text (a compiler error) after it.
    fn text(&self) -> String {
        let mut t = self.status.clone();
        for l in &self.lines {
            t.push(' ');
            t.push_str(String::from_utf8_lossy(l).trim());
        }
        t
    }
}

impl Client {
    /// Connects to `addr` (`host:port`) and logs in as `authc` for `authz`
    /// (empty: `authc` itself) with SASL PLAIN.
    async fn login(addr: &str, authz: &str, authc: &str, pw: &str) -> Result<Client, String> {
        let tcp = tokio::time::timeout(std::time::Duration::from_secs(30), tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| format!("{addr}: ManageSieve: connect timed out"))?
            .map_err(|e| format!("{addr}: ManageSieve: {e}"))?;
        let mut c = Client { io: BufReader::new(tcp) };
        let greeting = c.response().await?;
        if !greeting.ok() {
            return Err(format!("{addr}: ManageSieve greeting: {}", greeting.status));
        }
        let ir = crate::util::base64_encode(format!("{authz}\0{authc}\0{pw}").as_bytes());
        let r = c.cmd(format!("AUTHENTICATE \"PLAIN\" \"{ir}\"\r\n").as_bytes()).await?;
        if !r.ok() {
            return Err(format!("{addr}: ManageSieve login as {authc} for {authz}: {}", r.status));
        }
        Ok(c)
    }

    async fn cmd(&mut self, c: &[u8]) -> Result<Response, String> {
        self.io.get_mut().write_all(c).await.map_err(|e| e.to_string())?;
        self.response().await
    }

    async fn response(&mut self) -> Result<Response, String> {
        let mut lines = Vec::new();
        loop {
            let mut l = Vec::new();
            let mut limited = (&mut self.io).take(MAX_LINE);
            let work = limited.read_until(b'\n', &mut l);
            let n = tokio::time::timeout(std::time::Duration::from_secs(120), work)
                .await
                .map_err(|_| "ManageSieve: timed out".to_string())?
                .map_err(|e| e.to_string())?;
            if n == 0 || !l.ends_with(b"\n") {
                return Err("ManageSieve: connection closed".into());
            }
            while l.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                l.pop();
            }
            // A literal ends the line: `{n}` and n octets, then the rest.
            if let Some(n) = literal_len(&l) {
                if n > MAX_LITERAL {
                    return Err("ManageSieve: response too large".into());
                }
                let mut data = vec![0u8; n];
                self.io.read_exact(&mut data).await.map_err(|e| e.to_string())?;
                let mut rest = Vec::new();
                (&mut self.io)
                    .take(MAX_LINE)
                    .read_until(b'\n', &mut rest)
                    .await
                    .map_err(|e| e.to_string())?;
                let starts = String::from_utf8_lossy(&l).into_owned();
                if starts.starts_with("OK") || starts.starts_with("NO") || starts.starts_with("BYE") {
                    lines.push(data);
                    return Ok(Response { lines, status: starts });
                }
                lines.push(data);
                continue;
            }
            let s = String::from_utf8_lossy(&l).into_owned();
            if s.starts_with("OK") || s.starts_with("NO") || s.starts_with("BYE") {
                return Ok(Response { lines, status: s });
            }
            lines.push(l);
        }
    }

    async fn logout(mut self) {
        let _ = self.cmd(b"LOGOUT\r\n").await;
    }
}

/// The length of the literal a response line ends with (`{n}`).
fn literal_len(l: &[u8]) -> Option<usize> {
    let open = l.iter().rposition(|&b| b == b'{')?;
    let inner = l.get(open + 1..l.len().checked_sub(1)?)?;
    (l.last() == Some(&b'}') && !inner.is_empty() && inner.iter().all(u8::is_ascii_digit))
        .then(|| std::str::from_utf8(inner).ok()?.parse().ok())
        .flatten()
}

/// A quoted string or a literal at the start of `b`: its octets and the
/// rest of `b`.
fn string_at(b: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    if b.first() != Some(&b'"') {
        return None;
    }
    let mut out = Vec::new();
    let mut i = 1;
    while let Some(&c) = b.get(i) {
        match c {
            b'"' => return Some((out, &b[i + 1..])),
            b'\\' => {
                out.push(*b.get(i + 1)?);
                i += 2;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    None
}

/// The scripts on a ManageSieve server, as `authc` for `authz`.
pub(super) async fn fetch(addr: &str, authz: &str, authc: &str, pw: &str) -> Result<Scripts, String> {
    let mut c = Client::login(addr, authz, authc, pw).await?;
    let r = c.cmd(b"LISTSCRIPTS\r\n").await?;
    if !r.ok() {
        return Err(format!("{addr}: LISTSCRIPTS: {}", r.text()));
    }
    let mut s = Scripts::default();
    for l in &r.lines {
        // A name as a literal came as its own line; a quoted one with
        // " ACTIVE" perhaps after it.
        let (name, rest) = match string_at(l) {
            Some((n, rest)) => (n, rest),
            None => (l.clone(), &b""[..]),
        };
        let name = String::from_utf8_lossy(&name).into_owned();
        if rest.trim_ascii().eq_ignore_ascii_case(b"ACTIVE") {
            s.active = Some(name.clone());
        }
        let mut get = b"GETSCRIPT ".to_vec();
        client_string(&mut get, name.as_bytes());
        get.extend_from_slice(b"\r\n");
        let got = c.cmd(&get).await?;
        if !got.ok() {
            return Err(format!("{addr}: GETSCRIPT {name}: {}", got.text()));
        }
        s.list.push((name, got.lines.into_iter().next().unwrap_or_default()));
    }
    c.logout().await;
    s.list.sort();
    Ok(s)
}

/// Stores `s` through a ManageSieve server, as `authc` for `authz`: how
/// many scripts were stored, and the refusals.
pub(super) async fn store(addr: &str, authz: &str, authc: &str, pw: &str, s: &Scripts) -> Result<(usize, Vec<String>), String> {
    let mut c = Client::login(addr, authz, authc, pw).await?;
    let mut stored = 0;
    let mut problems = Vec::new();
    let mut active_ok = false;
    for (name, src) in &s.list {
        let mut put = b"PUTSCRIPT ".to_vec();
        client_string(&mut put, name.as_bytes());
        put.extend(format!(" {{{}+}}\r\n", src.len()).into_bytes());
        put.extend_from_slice(src);
        put.extend_from_slice(b"\r\n");
        let r = c.cmd(&put).await?;
        if r.ok() {
            stored += 1;
            active_ok |= s.active.as_deref() == Some(name.as_str());
        } else {
            problems.push(format!("sieve script {name}: {}", r.text()));
        }
    }
    if let (Some(a), true) = (&s.active, active_ok) {
        let mut set = b"SETACTIVE ".to_vec();
        client_string(&mut set, a.as_bytes());
        set.extend_from_slice(b"\r\n");
        let r = c.cmd(&set).await?;
        if !r.ok() {
            problems.push(format!("sieve script {a}: SETACTIVE: {}", r.text()));
        }
    }
    c.logout().await;
    Ok((stored, problems))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_pieces() {
        assert_eq!(literal_len(b"{12}"), Some(12));
        assert_eq!(literal_len(b"NO {22}"), Some(22));
        assert_eq!(literal_len(b"\"main\" ACTIVE"), None);
        assert_eq!(string_at(b"\"a \\\"b\\\"\" ACTIVE"), Some((b"a \"b\"".to_vec(), &b" ACTIVE"[..])));
    }

    #[test]
    fn scripts_of_a_legacy_spool() {
        let d = tempfile::tempdir().unwrap();
        let u = d.path().join("u/u7");
        std::fs::create_dir_all(&u).unwrap();
        std::fs::write(u.join("main.script"), b"keep;").unwrap();
        std::fs::write(u.join("main.bc"), b"bytecode").unwrap();
        std::fs::write(u.join("old.script"), b"stop;").unwrap();
        std::os::unix::fs::symlink("main.bc", u.join("defaultbc")).unwrap();
        let s = from_spool(d.path(), false, "user.u7", "", None).unwrap();
        assert_eq!(
            s.list,
            vec![("main".to_string(), b"keep;".to_vec()), ("old".to_string(), b"stop;".to_vec())]
        );
        assert_eq!(s.active.as_deref(), Some("main"));
        let none = from_spool(d.path(), false, "user.nobody", "", None).unwrap();
        assert_eq!(none, Scripts::default());
    }
}
