//! Quota: GETQUOTA, GETQUOTAROOT and SETQUOTA with Cyrus's four
//! resources, and the alerts SELECT gives when a quota root is nearly full
//! or over (Cyrus's warn_about_quota).

use super::mailboxes::astring;
use super::{Res, Session};

impl Session {
    pub async fn getquota(&mut self, tag: &str, root: &str) -> Res {
        let int = match self.internal(root) {
            Ok(i) => i,
            Err(_) => root.to_string(),
        };
        // As Cyrus: admins (and a proxy acting for a user) only; users
        // ask with GETQUOTAROOT.
        if !self.ctx.is_admin(self.user.as_deref().unwrap_or("")) && !self.proxyadmin {
            return self.tagged(tag, "NO Permission denied").await;
        }
        let r = int.clone();
        match self.blocking(move |s| s.quota_get(&r)).await {
            Ok(Some(q)) => {
                let line = quota_line(root, &q);
                self.out(&line).await?;
                self.tagged(tag, "OK Completed").await
            }
            Ok(None) => self.tagged(tag, "NO Quota root does not exist").await,
            Err(t) => self.tagged(tag, &t).await,
        }
    }

    pub async fn getquotaroot(&mut self, tag: &str, ext: &str) -> Res {
        // Admins see any mailbox's quota, as in Cyrus.
        let admin = self.ctx.is_admin(self.user.as_deref().unwrap_or(""));
        let e = match self.lookup_with(ext, if admin { 'l' } else { 'r' }).await {
            Ok(e) => e,
            Err(t) => return self.tagged(tag, &t).await,
        };
        let name = e.name.clone();
        let roots = match self.blocking(move |s| s.quota_roots(&name)).await {
            Ok(r) => r,
            Err(t) => return self.tagged(tag, &t).await,
        };
        let mut line = b"* QUOTAROOT ".to_vec();
        astring(&mut line, ext.as_bytes());
        for q in &roots {
            line.push(b' ');
            let x = self.external(&q.root).unwrap_or_else(|| q.root.clone());
            astring(&mut line, x.as_bytes());
        }
        line.extend_from_slice(b"\r\n");
        self.out_bytes(&line).await?;
        for q in &roots {
            let x = self.external(&q.root).unwrap_or_else(|| q.root.clone());
            self.out(&quota_line(&x, q)).await?;
        }
        self.tagged(tag, "OK Completed").await
    }

    pub async fn setquota(&mut self, tag: &str, root: &str, res: &[(String, i64)]) -> Res {
        if !self.ctx.is_admin(self.user.as_deref().unwrap_or("")) {
            return self.tagged(tag, "NO Permission denied").await;
        }
        // `+root` (Cyrus's XFER sends it ahead of the mailboxes): the root
        // is set even where no mailbox is yet.
        let forced = root.starts_with('+');
        let root = root.strip_prefix('+').unwrap_or(root);
        let int = self.internal(root).unwrap_or_else(|_| root.to_string());
        if crate::store::names::is_users_top(&int) {
            return self.tagged(tag, "NO Invalid mailbox name").await;
        }
        // The limits given replace all of the root's (a resource left out
        // or set to -1 has none), as Cyrus.
        let mut l = crate::store::QuotaLimits::default();
        for (r, n) in res {
            let v = (*n >= 0).then_some(*n);
            match r.to_ascii_uppercase().as_str() {
                "STORAGE" => l.storage = v,
                "MESSAGE" => l.message = v,
                "X-ANNOTATION-STORAGE" => l.annot = v,
                "X-NUM-FOLDERS" => l.folders = v,
                _ => return self.tagged(tag, "NO Unsupported quota resource").await,
            }
        }
        // No limit left: the root stays, without limits, as in Cyrus 3.x
        // (its usage is still counted).
        if l.is_empty() {
            l.storage = Some(-1);
        }
        // A new root, unforced, needs its mailbox or mailboxes under it
        // (Cyrus's mboxlist_setquotas).
        let r = self
            .blocking(move |s| {
                if !forced && s.quota_get(&int)?.is_none() && s.lookup(&int)?.is_none() && s.list_prefix(&format!("{int}."))?.is_empty() {
                    return Err(crate::store::StoreError::NotFound);
                }
                s.quota_set_limits(&int, l)
            })
            .await;
        match r {
            Ok(()) => self.tagged(tag, "OK Completed").await,
            Err(t) => self.tagged(tag, &t).await,
        }
    }
}

fn quota_line(root: &str, q: &crate::store::Quota) -> String {
    let mut parts = Vec::new();
    if q.storage_limit >= 0 {
        parts.push(format!("STORAGE {} {}", q.storage_used / 1024, q.storage_limit));
    }
    if q.message_limit >= 0 {
        parts.push(format!("MESSAGE {} {}", q.message_used, q.message_limit));
    }
    if q.annot_limit >= 0 {
        parts.push(format!("X-ANNOTATION-STORAGE {} {}", q.annot_used / 1024, q.annot_limit));
    }
    if q.folders_limit >= 0 {
        parts.push(format!("X-NUM-FOLDERS {} {}", q.folders_used, q.folders_limit));
    }
    let mut line = b"* QUOTA ".to_vec();
    astring(&mut line, root.as_bytes());
    format!("{} ({})\r\n", String::from_utf8_lossy(&line), parts.join(" "))
}

/// Thresholds of the SELECT quota warnings (`quotawarn` percent,
/// `quotawarnkb`, `quotawarnmsg`).
pub struct QuotaWarn {
    pub percent: i64,
    pub kb: i64,
    pub msg: i64,
}

/// The `* NO [ALERT]` texts for a quota root, one per resource nearly
/// full or over, in Cyrus's resource order.  A resource with a warning
/// threshold in KB (or messages) is only warned about once less than
/// that is left.
pub fn quota_alerts(q: &crate::store::Quota, w: &QuotaWarn) -> Vec<String> {
    let res = [
        ("STORAGE", q.storage_limit, q.storage_used, 1024, w.kb),
        ("MESSAGE", q.message_limit, q.message_used, 1, w.msg),
        ("X-ANNOTATION-STORAGE", q.annot_limit, q.annot_used, 1024, w.kb),
        ("X-NUM-FOLDERS", q.folders_limit, q.folders_used, 1, 0),
    ];
    let mut out = Vec::new();
    for (name, limit, used, unit, threshold) in res {
        if limit < 0 {
            continue;
        }
        if threshold > 0 && threshold < limit && used <= (limit - threshold) * unit {
            continue;
        }
        let full = limit * unit;
        if used > full {
            out.push(format!("Mailbox is over {name} quota"));
        } else if full > 0 {
            let pc = (used as f64 * 100.0 / full as f64) as i64;
            if pc > w.percent {
                out.push(format!("Mailbox is at {pc}% of {name} quota"));
            }
        }
    }
    out
}

impl Session {
    pub(super) async fn warn_about_quota(&mut self, name: &str) -> Res {
        let n = name.to_string();
        let Ok(roots) = self.blocking(move |s| s.quota_roots(&n)).await else {
            return Ok(());
        };
        // The root nearest the mailbox, as Cyrus's one quota root.
        let Some(q) = roots.into_iter().max_by_key(|q| q.root.len()) else {
            return Ok(());
        };
        let now = std::time::Instant::now();
        if self.quota_warned.as_ref().is_some_and(|(r, until)| *r == q.root && now < *until) {
            return Ok(());
        }
        self.quota_warned = Some((q.root.clone(), now + std::time::Duration::from_secs(600)));
        let conf = &self.ctx.conf;
        let w = QuotaWarn {
            percent: conf.get_int("quotawarn"),
            kb: conf.get_int("quotawarnkb"),
            msg: conf.get_int("quotawarnmsg"),
        };
        for a in quota_alerts(&q, &w) {
            self.out(&format!("* NO [ALERT] {a}\r\n")).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod quota_tests {
    use super::*;

    fn q(storage: (i64, i64), message: (i64, i64), annot: (i64, i64), folders: (i64, i64)) -> crate::store::Quota {
        crate::store::Quota {
            root: "user.fred".into(),
            storage_used: storage.0,
            storage_limit: storage.1,
            message_used: message.0,
            message_limit: message.1,
            annot_used: annot.0,
            annot_limit: annot.1,
            folders_used: folders.0,
            folders_limit: folders.1,
        }
    }

    #[test]
    fn alerts_as_cyrus_words_them() {
        let w = QuotaWarn {
            percent: 90,
            kb: 0,
            msg: 0,
        };
        // 1000 bytes of a 1 KB annotation quota: 97% (seen on Cyrus 3.6).
        assert_eq!(
            quota_alerts(&q((0, -1), (0, -1), (1000, 1), (0, -1)), &w),
            ["Mailbox is at 97% of X-ANNOTATION-STORAGE quota"]
        );
        // At the limit is not over it; 90% exactly is not above quotawarn.
        assert_eq!(
            quota_alerts(&q((1024 * 100, 100), (9, 10), (0, -1), (5, 5)), &w),
            ["Mailbox is at 100% of STORAGE quota", "Mailbox is at 100% of X-NUM-FOLDERS quota"]
        );
        assert_eq!(
            quota_alerts(&q((1024 * 101, 100), (11, 10), (0, 0), (0, 0)), &w),
            ["Mailbox is over STORAGE quota", "Mailbox is over MESSAGE quota"]
        );
        assert!(quota_alerts(&q((1024 * 50, 100), (1, 10), (0, -1), (0, -1)), &w).is_empty());
        // quotawarnkb: only once less than that many KB are left.
        let kb = QuotaWarn {
            percent: 90,
            kb: 5,
            msg: 0,
        };
        assert!(quota_alerts(&q((1024 * 95, 100), (0, -1), (0, -1), (0, -1)), &kb).is_empty());
        assert_eq!(
            quota_alerts(&q((1024 * 96, 100), (0, -1), (0, -1), (0, -1)), &kb),
            ["Mailbox is at 96% of STORAGE quota"]
        );
    }
}
