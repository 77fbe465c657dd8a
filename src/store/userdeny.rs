//! The user access list Cyrus's `cyr_deny` keeps (`user_deny.db`, a
//! "flat" cyrusdb: sorted `key TAB value LF` lines where the value's
//! `\0 \t \r \n` bytes are written as `0xFF` and `0x80|byte`, a literal
//! `0xFF` as `0xFF 0xFF`).  Value: `2 TAB <service wildmats> TAB <message>`.

use std::path::{Path, PathBuf};

/// One denied user.
#[derive(Debug, Clone, PartialEq)]
pub struct Deny {
    pub user: String,
    /// Comma-separated wildmat list of services (`*`, `imap,pop3`, `!lmtp`).
    pub services: String,
    pub message: String,
}

pub const DEFAULT_MESSAGE: &str = "Access to this service has been blocked";

/// `userdeny_db_path` or `{configdirectory}/user_deny.db`.
pub fn path(configdir: &Path, configured: Option<&str>) -> PathBuf {
    match configured {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => configdir.join("user_deny.db"),
    }
}

fn decode(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == 0xFF && i + 1 < v.len() {
            out.push(match v[i + 1] {
                0xFF => 0xFF,
                0x80 => 0,
                b => b & 0x7F,
            });
            i += 2;
        } else {
            out.push(v[i]);
            i += 1;
        }
    }
    out
}

fn encode(v: &str, out: &mut Vec<u8>) {
    for &b in v.as_bytes() {
        match b {
            0 | b'\t' | b'\r' | b'\n' => out.extend_from_slice(&[0xFF, 0x80 | b]),
            0xFF => out.extend_from_slice(&[0xFF, 0xFF]),
            _ => out.push(b),
        }
    }
}

/// Reads the list (missing file: empty).  Lines that do not parse are
/// skipped.
pub fn load(path: &Path) -> std::io::Result<Vec<Deny>> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for line in data.split(|&b| b == b'\n') {
        let Some(tab) = line.iter().position(|&b| b == b'\t') else {
            continue;
        };
        let user = String::from_utf8_lossy(&decode(&line[..tab])).to_string();
        let value = String::from_utf8_lossy(&decode(&line[tab + 1..])).to_string();
        let mut f = value.splitn(3, '\t');
        let (ver, services, message) = (f.next(), f.next(), f.next());
        if ver != Some("2") {
            continue;
        }
        out.push(Deny {
            user,
            services: services.unwrap_or("*").to_string(),
            message: message.unwrap_or(DEFAULT_MESSAGE).to_string(),
        });
    }
    Ok(out)
}

/// Writes the list sorted by user, atomically (temp file, fsync, rename).
pub fn save(path: &Path, list: &[Deny]) -> std::io::Result<()> {
    use std::io::Write;
    let mut v = list.to_vec();
    v.sort_by(|a, b| a.user.as_bytes().cmp(b.user.as_bytes()));
    let mut out = Vec::new();
    for d in &v {
        encode(&d.user, &mut out);
        out.push(b'\t');
        encode(&format!("2\t{}\t{}", d.services, d.message), &mut out);
        out.push(b'\n');
    }
    let tmp = path.with_extension("db.NEW");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&out)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Cyrus's wildmat list: comma-separated patterns with `*`/`?`, a
/// leading `!` negating; the last matching pattern decides.
fn wildmat_list(list: &str, service: &str) -> bool {
    let mut hit = false;
    for p in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (neg, p) = match p.strip_prefix('!') {
            Some(r) => (true, r),
            None => (false, p),
        };
        if glob(p.as_bytes(), service.as_bytes()) {
            hit = !neg;
        }
    }
    hit
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'*') => (0..=s.len()).any(|i| glob(&p[1..], &s[i..])),
        Some(b'?') => !s.is_empty() && glob(&p[1..], &s[1..]),
        Some(&c) => s.first() == Some(&c) && glob(&p[1..], &s[1..]),
    }
}

/// The message to refuse `user` on `service` with, if the list denies it.
pub fn check(path: &Path, user: &str, service: &str) -> Option<String> {
    let list = load(path).ok()?;
    let d = list.into_iter().find(|d| d.user == user)?;
    wildmat_list(&d.services, service).then_some(d.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_round_trip_and_wildmats() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("user_deny.db");
        let list = vec![
            Deny {
                user: "fred".into(),
                services: "imap,pop3".into(),
                message: "go\taway".into(),
            },
            Deny {
                user: "bob".into(),
                services: "*,!lmtp".into(),
                message: DEFAULT_MESSAGE.into(),
            },
        ];
        save(&p, &list).unwrap();
        let raw = std::fs::read(&p).unwrap();
        assert!(raw.starts_with(b"bob\t2\xFF\x89*,!lmtp\xFF\x89Access"), "{raw:?}");
        let back = load(&p).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[1].message, "go\taway");
        assert_eq!(check(&p, "fred", "imap").as_deref(), Some("go\taway"));
        assert_eq!(check(&p, "fred", "lmtp"), None);
        assert!(check(&p, "bob", "pop3").is_some());
        assert_eq!(check(&p, "bob", "lmtp"), None);
        assert_eq!(check(&p, "alice", "imap"), None);
    }
}
