//! Sort and thread keys kept in memory per mailbox: a message's keys
//! never change (its header and internal date are fixed), so SORT and
//! THREAD read each message's header once per process, the way Cyrus
//! keeps them in cyrus.cache and Dovecot in its index cache.  Bounded:
//! at most `CAP` messages' keys in all, whole mailboxes evicted least
//! recently used first; a mailbox bigger than the bound is not cached.

use super::sort::Keys;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Messages' keys kept in all (about 250 bytes each).
pub const CAP: usize = 50_000;

#[derive(Default)]
pub struct SortCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Keyed by mailbox name and UIDVALIDITY (a rename or a rebuilt
    /// mailbox gets a new UIDVALIDITY, so stale keys are never hit).
    boxes: HashMap<(String, u32), Mailbox>,
    total: usize,
    tick: u64,
}

struct Mailbox {
    /// By UID (server-assigned: a fast hash is safe).
    keys: HashMap<u32, Arc<Keys>, foldhash::fast::FixedState>,
    used: u64,
}

impl SortCache {
    /// The cached keys of `uids` (None where missing).
    pub fn get(&self, name: &str, uidvalidity: u32, uids: &[u32]) -> Vec<Option<Arc<Keys>>> {
        let Ok(mut g) = self.inner.lock() else {
            return vec![None; uids.len()];
        };
        g.tick += 1;
        let tick = g.tick;
        match g.boxes.get_mut(&(name.to_string(), uidvalidity)) {
            Some(b) => {
                b.used = tick;
                uids.iter().map(|u| b.keys.get(u).cloned()).collect()
            }
            None => vec![None; uids.len()],
        }
    }

    /// Adds keys of a mailbox with `count` messages; nothing when the
    /// mailbox alone is over the bound.
    pub fn put(&self, name: &str, uidvalidity: u32, count: usize, items: Vec<(u32, Arc<Keys>)>) {
        if count > CAP || items.is_empty() {
            return;
        }
        let Ok(mut g) = self.inner.lock() else { return };
        g.tick += 1;
        let tick = g.tick;
        let key = (name.to_string(), uidvalidity);
        // Evict other mailboxes, least recently used first, to make room.
        while g.total + items.len() > CAP {
            let victim = g
                .boxes
                .iter()
                .filter(|(k, _)| **k != key)
                .min_by_key(|(_, b)| b.used)
                .map(|(k, _)| k.clone());
            let Some(v) = victim else { break };
            if let Some(b) = g.boxes.remove(&v) {
                g.total -= b.keys.len();
            }
        }
        let b = g.boxes.entry(key).or_insert_with(|| Mailbox {
            keys: HashMap::default(),
            used: tick,
        });
        b.used = tick;
        let before = b.keys.len();
        for (u, k) in items {
            b.keys.insert(u, k);
        }
        let added = b.keys.len() - before;
        g.total += added;
    }

    /// Forgets keys of UIDs no longer in the mailbox (after expunges), so
    /// that a long-lived mailbox does not collect dead entries.
    pub fn retain(&self, name: &str, uidvalidity: u32, live: &[u32]) {
        let Ok(mut g) = self.inner.lock() else { return };
        let Some(b) = g.boxes.get_mut(&(name.to_string(), uidvalidity)) else {
            return;
        };
        let before = b.keys.len();
        b.keys.retain(|u, _| live.binary_search(u).is_ok());
        let gone = before - b.keys.len();
        g.total -= gone;
    }

    pub fn len(&self) -> usize {
        self.inner.lock().map(|g| g.total).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k() -> Arc<Keys> {
        Arc::new(Keys::default())
    }

    #[test]
    fn bounded_and_lru() {
        let c = SortCache::default();
        c.put("a", 1, 10, (1..=10).map(|u| (u, k())).collect());
        assert_eq!(c.get("a", 1, &[1, 11]).iter().filter(|x| x.is_some()).count(), 1);
        assert!(c.get("a", 2, &[1])[0].is_none(), "another uidvalidity");
        // Too big for the cache: not kept.
        c.put("huge", 1, CAP + 1, vec![(1, k())]);
        assert!(c.get("huge", 1, &[1])[0].is_none());
        // Filling evicts the least recently used mailbox.
        c.put("b", 1, CAP - 5, (1..=(CAP as u32 - 5)).map(|u| (u, k())).collect());
        assert!(c.len() <= CAP);
        assert!(c.get("a", 1, &[1])[0].is_none());
        c.retain("b", 1, &[1, 2]);
        assert_eq!(c.len(), 2);
    }
}
