//! The credential cache (`saslauthd -c`, `-s`, `-t`): only successful
//! checks are stored, keyed by login, realm and service; the password is
//! kept as a salted SHA-256, never in clear; entries expire after `-t`
//! seconds; a hit answers without asking the directory.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Bytes an entry is counted as when `-s` (kilobytes) sizes the table.
const ENTRY_COST: usize = 128;
/// saslauthd's default table: 1711 buckets of 6 entries.
pub const DEFAULT_ENTRIES: usize = 1711 * 6;

struct Entry {
    salt: [u8; 16],
    digest: [u8; 32],
    at: Instant,
}

pub struct Cache {
    map: Mutex<HashMap<(String, String, String), Entry>>,
    ttl: Duration,
    max: usize,
    rng: ring::rand::SystemRandom,
}

fn digest(salt: &[u8; 16], password: &[u8]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(salt);
    ctx.update(password);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

impl Cache {
    /// `size_kb` from `-s` (None = saslauthd's default size), `ttl` from `-t`.
    pub fn new(size_kb: Option<usize>, ttl: Duration) -> Cache {
        let max = size_kb.map(|kb| (kb * 1024 / ENTRY_COST).max(1)).unwrap_or(DEFAULT_ENTRIES);
        Cache {
            map: Mutex::new(HashMap::new()),
            ttl,
            max,
            rng: ring::rand::SystemRandom::new(),
        }
    }

    fn key(login: &str, realm: &str, service: &str) -> (String, String, String) {
        (login.to_string(), realm.to_string(), service.to_string())
    }

    /// True if these exact credentials succeeded within the timeout.
    pub fn hit(&self, login: &str, realm: &str, service: &str, password: &[u8]) -> bool {
        let Ok(map) = self.map.lock() else { return false };
        match map.get(&Self::key(login, realm, service)) {
            Some(e) if e.at.elapsed() < self.ttl => {
                let d = digest(&e.salt, password);
                crate::util::ct_eq(&d, &e.digest)
            }
            _ => false,
        }
    }

    /// Records a successful check.
    pub fn store(&self, login: &str, realm: &str, service: &str, password: &[u8]) {
        let mut salt = [0u8; 16];
        if ring::rand::SecureRandom::fill(&self.rng, &mut salt).is_err() {
            return;
        }
        let Ok(mut map) = self.map.lock() else { return };
        if map.len() >= self.max {
            let ttl = self.ttl;
            map.retain(|_, e| e.at.elapsed() < ttl);
            if map.len() >= self.max {
                // Still full: drop the oldest entry.
                if let Some(k) = map.iter().min_by_key(|(_, e)| e.at).map(|(k, _)| k.clone()) {
                    map.remove(&k);
                }
            }
        }
        map.insert(
            Self::key(login, realm, service),
            Entry {
                salt,
                digest: digest(&salt, password),
                at: Instant::now(),
            },
        );
    }

    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_only_same_password_and_key() {
        let c = Cache::new(None, Duration::from_secs(60));
        assert!(!c.hit("u", "", "imap", b"pw"));
        c.store("u", "", "imap", b"pw");
        assert!(c.hit("u", "", "imap", b"pw"));
        assert!(!c.hit("u", "", "imap", b"other"));
        assert!(!c.hit("u", "", "pop", b"pw"));
        assert!(!c.hit("u", "r", "imap", b"pw"));
    }

    #[test]
    fn expires_and_stays_bounded() {
        let c = Cache::new(None, Duration::from_millis(0));
        c.store("u", "", "imap", b"pw");
        assert!(!c.hit("u", "", "imap", b"pw"));
        let c = Cache::new(Some(1), Duration::from_secs(60));
        for i in 0..100 {
            c.store(&format!("u{i}"), "", "imap", b"pw");
        }
        assert!(c.len() <= 1024 / ENTRY_COST);
        assert!(c.hit("u99", "", "imap", b"pw"));
    }

    #[test]
    fn no_clear_password_in_memory() {
        let c = Cache::new(None, Duration::from_secs(60));
        c.store("u", "", "imap", b"hunter2-secret");
        let map = c.map.lock().unwrap();
        let e = map.values().next().unwrap();
        assert!(!e.digest.windows(6).any(|w| w == b"hunter"));
    }
}
