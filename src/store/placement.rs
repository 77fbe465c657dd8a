//! Where a new mailbox goes when nothing names its place, as Cyrus
//! chooses: a back end among its partitions (`partition_select_mode`,
//! `partition_select_exclude`, `partition_select_soft_usage_limit`), a
//! front end among the back ends of `serverlist` (`serverlist_select_mode`,
//! `serverlist_select_soft_usage_limit`), from each one's free space.
//!
//! The modes, as imapd.conf(5) describes them: `random`; `freespace-most`
//! (the most free KiB); `freespace-percent-most` (the highest free
//! share); `freespace-percent-weighted` (a draw weighted by the free
//! share); `freespace-percent-weighted-delta` (a draw weighted by how far
//! each is ahead of the fullest, plus half a point so that the fullest
//! still has a chance).  With a soft usage limit, candidates used beyond
//! it are left out unless all are.  Candidates on one file system count
//! once in the two `most` modes.

/// A selection mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Random,
    FreespaceMost,
    FreespacePercentMost,
    FreespacePercentWeighted,
    FreespacePercentWeightedDelta,
}

impl Mode {
    /// Cyrus's names; any other word is random, as Cyrus reads it.
    pub fn parse(s: &str) -> Mode {
        match s {
            "freespace-most" => Mode::FreespaceMost,
            "freespace-percent-most" => Mode::FreespacePercentMost,
            "freespace-percent-weighted" => Mode::FreespacePercentWeighted,
            "freespace-percent-weighted-delta" => Mode::FreespacePercentWeightedDelta,
            _ => Mode::Random,
        }
    }
}

/// One candidate's space in KiB, and the file system it is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Space {
    pub fs: u64,
    pub avail: u64,
    pub total: u64,
}

impl Space {
    /// The space of the file system holding `path` (statvfs).
    pub fn of(path: &std::path::Path) -> Option<Space> {
        let st = nix::sys::statvfs::statvfs(path).ok()?;
        let kib = st.fragment_size() as u64 / 1024;
        (st.blocks() > 0).then(|| Space {
            fs: st.filesystem_id() as u64,
            avail: st.blocks_available() as u64 * kib,
            total: st.blocks() as u64 * kib,
        })
    }
}

/// The index of the candidate to use, or None when none can be: `spaces`
/// holds each candidate's space (None: unknown, a back end that did not
/// answer; never chosen), `roll` a random number in [0, 1) for the draws.
pub fn choose(mode: Mode, spaces: &[Option<Space>], soft_usage_limit: i64, roll: f64) -> Option<usize> {
    let known: Vec<usize> = (0..spaces.len()).filter(|&i| spaces[i].is_some()).collect();
    let draw = |among: &[usize]| (!among.is_empty()).then(|| among[((roll * among.len() as f64) as usize).min(among.len() - 1)]);
    if mode == Mode::Random {
        return draw(&known);
    }
    let most = matches!(mode, Mode::FreespaceMost | Mode::FreespacePercentMost);
    // Free share in percent, per candidate left in.
    let mut free: Vec<(usize, f64)> = Vec::new();
    for &i in &known {
        let s = spaces[i].unwrap_or(Space { fs: 0, avail: 0, total: 0 });
        if most
            && known
                .iter()
                .take_while(|&&j| j < i)
                .any(|&j| spaces[j].is_some_and(|o| o.fs == s.fs))
        {
            continue;
        }
        if s.total == 0 || s.avail > s.total {
            // Figures that make no sense: a plain draw, as Cyrus falls back.
            return draw(&known);
        }
        free.push((i, s.avail as f64 * 100.0 / s.total as f64));
    }
    let floor = 100.0 - soft_usage_limit as f64;
    if free.iter().any(|&(_, p)| p > floor) {
        free.retain(|&(_, p)| p > floor);
    }
    let avail = |i: usize| spaces[i].map_or(0, |s| s.avail);
    match mode {
        // The first of the best, as Cyrus scans.
        Mode::FreespaceMost => free.iter().fold(None, |best: Option<usize>, &(i, _)| match best {
            Some(b) if avail(b) >= avail(i) => Some(b),
            _ => Some(i),
        }),
        Mode::FreespacePercentMost => free
            .iter()
            .fold(None, |best: Option<(usize, f64)>, &(i, p)| match best {
                Some((b, bp)) if bp >= p => Some((b, bp)),
                _ => Some((i, p)),
            })
            .map(|(i, _)| i),
        _ => {
            let least = free.iter().map(|&(_, p)| p).fold(f64::INFINITY, f64::min);
            let weight = |p: f64| {
                if mode == Mode::FreespacePercentWeightedDelta {
                    p - least + 0.5
                } else {
                    p
                }
            };
            let sum: f64 = free.iter().map(|&(_, p)| weight(p)).sum();
            if sum <= 0.0 {
                let ids: Vec<usize> = free.iter().map(|&(i, _)| i).collect();
                return draw(&ids);
            }
            let mut at = roll * sum;
            for &(i, p) in &free {
                at -= weight(p);
                if at < 0.0 {
                    return Some(i);
                }
            }
            free.last().map(|&(i, _)| i)
        }
    }
}

/// A random number in [0, 1) for `choose`.
pub fn roll() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp(fs: u64, avail: u64, total: u64) -> Option<Space> {
        Some(Space { fs, avail, total })
    }

    #[test]
    fn modes_pick_as_cyrus_describes() {
        // a: 500 of 1000 free (50%), b: 900 of 3000 (30%), c: 80 of 100 (80%).
        let s = [sp(1, 500, 1000), sp(2, 900, 3000), sp(3, 80, 100)];
        assert_eq!(choose(Mode::FreespaceMost, &s, 0, 0.0), Some(1));
        assert_eq!(choose(Mode::FreespacePercentMost, &s, 0, 0.0), Some(2));
        // Weighted by 50, 30, 80 (sum 160): rolls land in each band.
        assert_eq!(choose(Mode::FreespacePercentWeighted, &s, 0, 0.0), Some(0));
        assert_eq!(choose(Mode::FreespacePercentWeighted, &s, 0, 0.40), Some(1));
        assert_eq!(choose(Mode::FreespacePercentWeighted, &s, 0, 0.99), Some(2));
        // Delta from the fullest (30%): 20.5, 0.5, 50.5 (sum 71.5).
        assert_eq!(choose(Mode::FreespacePercentWeightedDelta, &s, 0, 0.28), Some(0));
        assert_eq!(choose(Mode::FreespacePercentWeightedDelta, &s, 0, 0.29), Some(1));
        assert_eq!(choose(Mode::FreespacePercentWeightedDelta, &s, 0, 0.30), Some(2));
        assert_eq!(choose(Mode::Random, &s, 0, 0.5), Some(1));
        assert_eq!(Mode::parse("freespace-percent-weighted-delta"), Mode::FreespacePercentWeightedDelta);
        assert_eq!(Mode::parse("nonsense"), Mode::Random);
    }

    #[test]
    fn unknown_full_and_shared_file_systems() {
        // A back end that did not answer is never chosen.
        let s = [None, sp(2, 10, 100), None];
        for m in [Mode::Random, Mode::FreespaceMost, Mode::FreespacePercentWeighted] {
            assert_eq!(choose(m, &s, 0, 0.9), Some(1), "{m:?}");
        }
        assert_eq!(choose(Mode::FreespaceMost, &[None, None], 0, 0.5), None);
        assert_eq!(choose(Mode::FreespaceMost, &[], 0, 0.5), None);
        // Soft limit 60%: only candidates with more than 40% free, unless
        // none has.
        let s = [sp(1, 900, 3000), sp(2, 50, 100)];
        assert_eq!(choose(Mode::FreespaceMost, &s, 0, 0.0), Some(0));
        assert_eq!(choose(Mode::FreespaceMost, &s, 60, 0.0), Some(1));
        assert_eq!(choose(Mode::FreespaceMost, &s, 90, 0.0), Some(0));
        // Two partitions on one file system count once in the most modes.
        let s = [sp(7, 100, 1000), sp(7, 100, 1000), sp(8, 90, 100)];
        assert_eq!(choose(Mode::FreespaceMost, &s, 0, 0.0), Some(0));
        assert_eq!(choose(Mode::FreespacePercentMost, &s, 0, 0.0), Some(2));
        // Nonsense figures: a draw among those known.
        assert!(choose(Mode::FreespaceMost, &[sp(1, 5, 0), sp(2, 1, 2)], 0, 0.7).is_some());
    }

    #[test]
    fn space_of_a_real_directory() {
        let d = tempfile::tempdir().unwrap();
        let s = Space::of(d.path()).unwrap();
        assert!(s.total > 0 && s.avail <= s.total, "{s:?}");
        assert!(Space::of(&d.path().join("missing")).is_none());
    }
}
