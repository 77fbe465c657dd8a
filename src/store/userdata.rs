//! The store's per-user and per-mailbox side data: quota roots, readers'
//! \Seen sets, special use, annotations, POP3 logins, subscriptions, what
//! Sieve remembers.

use super::db::lock;
use super::ops::{covers, not_durable, now, parse_uid_ranges, uid_ranges, usage_under, Quota, QuotaLimits};
use super::{Result, Store, StoreError};
use rusqlite::{params, OptionalExtension, TransactionBehavior};

/// Beyond this many names, `special_uses_of` reads the whole table once.
pub(super) const SPECIAL_USES_SCAN: usize = 2000;

impl Store {
    // ---- Sieve ----

    /// Sieve's memory of what it did (a vacation answer, RFC 5230 4.2; a
    /// redirect), kept with the duplicate delivery records of the owner
    /// of `inbox` (moved by XFER, pruned by `cyr_expire -E`): false when
    /// `(id, who)` is remembered with a time after `since`; else true, and
    /// it is remembered with time `t`.
    pub fn remember_once(&self, inbox: &str, id: &str, who: &str, since: i64, t: i64) -> Result<bool> {
        let oc = self.owner(inbox)?;
        let mut c = lock(&oc);
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let last: Option<i64> = tx
            .query_row("SELECT t FROM dup WHERE msgid=?1 AND rcpt=?2", params![id, who], |r| r.get(0))
            .optional()?;
        if last.is_some_and(|l| l > since) {
            return Ok(false);
        }
        tx.execute("INSERT OR REPLACE INTO dup(msgid, rcpt, t) VALUES(?1, ?2, ?3)", params![id, who, t])?;
        tx.commit()?;
        Ok(true)
    }

    /// The time remembered for `(id, who)` (see `remember_once`).
    pub fn remembered(&self, inbox: &str, id: &str, who: &str) -> Result<Option<i64>> {
        let oc = self.owner(inbox)?;
        let c = lock(&oc);
        Ok(
            c.query_row("SELECT t FROM dup WHERE msgid=?1 AND rcpt=?2", params![id, who], |r| r.get(0))
                .optional()?,
        )
    }

    /// Remembers `(id, who)` with time `t`, whatever was there.
    pub fn remember(&self, inbox: &str, id: &str, who: &str, t: i64) -> Result<()> {
        let oc = self.owner(inbox)?;
        let c = lock(&oc);
        c.execute("INSERT OR REPLACE INTO dup(msgid, rcpt, t) VALUES(?1, ?2, ?3)", params![id, who, t])?;
        Ok(())
    }

    // ---- quota ----

    /// The quota roots covering `name` (in this owner's database), with
    /// the usage of X-ANNOTATION-STORAGE and X-NUM-FOLDERS counted where
    /// they have a limit.
    pub fn quota_roots(&self, name: &str) -> Result<Vec<Quota>> {
        self.quota_roots_counting(name, false)
    }

    /// `quota_get` with every resource's usage counted, limited or not
    /// (the `quota` report).
    pub fn quota_report(&self, root: &str) -> Result<Option<Quota>> {
        Ok(self.quota_roots_counting(root, true)?.into_iter().find(|q| q.root == root))
    }

    fn quota_roots_counting(&self, name: &str, all: bool) -> Result<Vec<Quota>> {
        let oc = self.owner(name)?;
        let mut v: Vec<Quota> = {
            let c = lock(&oc);
            let mut st = c.prepare_cached(
                "SELECT root, storage_limit, message_limit, storage_used, message_used, annot_limit, folders_limit FROM quota ORDER BY root",
            )?;
            let v = st
                .query_map([], |r| {
                    Ok(Quota {
                        root: r.get(0)?,
                        storage_limit: r.get(1)?,
                        message_limit: r.get(2)?,
                        storage_used: r.get(3)?,
                        message_used: r.get(4)?,
                        annot_limit: r.get(5)?,
                        folders_limit: r.get(6)?,
                        annot_used: 0,
                        folders_used: 0,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            v.into_iter().filter(|q| covers(&q.root, name)).collect()
        };
        for q in v.iter_mut() {
            if all || q.annot_limit >= 0 {
                q.annot_used = self.annotation_bytes_under(&q.root)?;
            }
            if all || q.folders_limit >= 0 {
                let c = lock(&oc);
                q.folders_used = under(&c, "SELECT count(*) FROM mailbox", "name", &q.root)?;
            }
        }
        Ok(v)
    }

    /// Bytes of annotation values on the mailboxes under `root` and on
    /// their messages (what Cyrus counts as X-ANNOTATION-STORAGE).
    fn annotation_bytes_under(&self, root: &str) -> Result<i64> {
        // One database at a time: the list's lock is never held with an
        // owner's.
        let on_mailboxes = {
            let c = lock(&self.list);
            under(&c, "SELECT coalesce(sum(length(value)),0) FROM annot", "name", root)?
        };
        let oc = self.owner(root)?;
        let c = lock(&oc);
        let on_messages = under(
            &c,
            "SELECT coalesce(sum(length(a.value)),0) FROM msgannot a JOIN mailbox m ON a.mailbox=m.id",
            "m.name",
            root,
        )?;
        Ok(on_mailboxes + on_messages)
    }

    /// Refuses (OverQuota) when `adding` mailboxes at `name` would pass
    /// the X-NUM-FOLDERS limit of a root covering it; a root that covers
    /// `from` (a rename within it) already counts them.
    pub(super) fn check_folders(&self, name: &str, adding: i64, from: Option<&str>) -> Result<()> {
        for q in self.quota_roots(name)? {
            if q.folders_limit >= 0 && !from.is_some_and(|f| covers(&q.root, f)) && q.folders_used + adding > q.folders_limit {
                return Err(StoreError::OverQuota);
            }
        }
        Ok(())
    }

    /// Refuses (OverQuota) `more` bytes of annotations on `name` when a
    /// root covering it has an X-ANNOTATION-STORAGE limit they would pass.
    pub(super) fn check_annotations(&self, name: &str, more: i64) -> Result<()> {
        if more <= 0 || name.is_empty() {
            return Ok(());
        }
        match self.annotation_headroom(name)? {
            Some(h) if more > h => Err(StoreError::OverQuota),
            _ => Ok(()),
        }
    }

    /// How many more bytes of annotations fit under the X-ANNOTATION-STORAGE
    /// limits covering `name`; None without one.
    pub(super) fn annotation_headroom(&self, name: &str) -> Result<Option<i64>> {
        Ok(self
            .quota_roots(name)?
            .iter()
            .filter(|q| q.annot_limit >= 0)
            .map(|q| q.annot_limit * 1024 - q.annot_used)
            .min())
    }

    pub fn quota_get(&self, root: &str) -> Result<Option<Quota>> {
        Ok(self.quota_roots(root)?.into_iter().find(|q| q.root == root))
    }

    /// Sets (or with both limits None, removes) a quota root; usage is
    /// recomputed from the records.
    pub fn quota_set(&self, root: &str, storage_kb: Option<i64>, messages: Option<i64>) -> Result<()> {
        self.quota_set_limits(
            root,
            QuotaLimits {
                storage: storage_kb,
                message: messages,
                ..QuotaLimits::default()
            },
        )
    }

    /// Sets every limit of a quota root at once (SETQUOTA replaces them
    /// all, as Cyrus); with none, removes the root.  Usage is recomputed
    /// from the records.
    pub fn quota_set_limits(&self, root: &str, l: QuotaLimits) -> Result<()> {
        let oc = self.owner(root)?;
        let mut c = lock(&oc);
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if l.is_empty() {
            tx.execute("DELETE FROM quota WHERE root=?1", [root])?;
        } else {
            let (bytes, count) = usage_under(&tx, root)?;
            let n = |v: Option<i64>| v.unwrap_or(-1);
            tx.execute(
                "INSERT OR REPLACE INTO quota(root, storage_limit, message_limit, storage_used, message_used, annot_limit, folders_limit) \
                 VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![root, n(l.storage), n(l.message), bytes, count, n(l.annot), n(l.folders)],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// A quota root without limits (Cyrus's autocreate with
    /// `autocreate_quota: 0`: usage is counted, nothing is refused).
    pub fn quota_root_unlimited(&self, root: &str) -> Result<()> {
        let oc = self.owner(root)?;
        let mut c = lock(&oc);
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (bytes, count) = usage_under(&tx, root)?;
        tx.execute(
            "INSERT OR IGNORE INTO quota(root, storage_limit, message_limit, storage_used, message_used) VALUES(?1, -1, -1, ?2, ?3)",
            params![root, bytes, count],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Recomputes the usage of every quota root in `name`'s owner
    /// database (`quota -f`); returns (root, old bytes, new bytes, old
    /// count, new count) for each root that was wrong.
    pub fn quota_fix(&self, name: &str) -> Result<Vec<(String, i64, i64, i64, i64)>> {
        let oc = self.owner(name)?;
        let mut c = lock(&oc);
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let roots: Vec<(String, i64, i64)> = {
            let mut st = tx.prepare("SELECT root, storage_used, message_used FROM quota")?;
            let v = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<_>>()?;
            v
        };
        let mut fixed = Vec::new();
        for (root, ob, oc_) in roots {
            let (b, n) = usage_under(&tx, &root)?;
            if b != ob || n != oc_ {
                tx.execute(
                    "UPDATE quota SET storage_used=?2, message_used=?3 WHERE root=?1",
                    params![root, b, n],
                )?;
                fixed.push((root, ob, b, oc_, n));
            }
        }
        tx.commit()?;
        Ok(fixed)
    }

    // ---- per-user \Seen (kept in the reader's database) ----
    //
    // As Cyrus: a mailbox's owner keeps \Seen in the message records;
    // everyone else reading it (shared folders, other users' folders
    // through ACLs) has a seen set of their own, keyed by the mailbox's
    // uniqueid, so one reader's \Seen does not change another's.

    /// The reader's seen UIDs for a mailbox (sorted).
    pub fn seen_get(&self, reader_inbox: &str, uniqueid: &str) -> Result<Vec<u32>> {
        let oc = self.owner(reader_inbox)?;
        let c = lock(&oc);
        let text: Option<String> = c
            .query_row("SELECT uids FROM seen WHERE uniqueid=?1", [uniqueid], |r| r.get(0))
            .optional()?;
        Ok(text.map(|t| parse_uid_ranges(&t)).unwrap_or_default())
    }

    /// Replaces the reader's seen UIDs for a mailbox (durably).
    pub fn seen_put(&self, reader_inbox: &str, uniqueid: &str, uids: &[u32]) -> Result<()> {
        let oc = self.owner(reader_inbox)?;
        let c = lock(&oc);
        c.execute(
            "INSERT INTO seen(uniqueid, uids, t) VALUES(?1, ?2, ?3) ON CONFLICT(uniqueid) DO UPDATE SET uids=excluded.uids, t=excluded.t",
            params![uniqueid, uid_ranges(uids), now()],
        )?;
        Ok(())
    }

    /// A reader's own \Recent mark for a mailbox: returns the previous
    /// one and raises it to `upto` (not durable, as the owner's).
    pub fn seen_recent(&self, reader_inbox: &str, uniqueid: &str, upto: Option<u32>) -> Result<u32> {
        let oc = self.owner(reader_inbox)?;
        let c = lock(&oc);
        let old: i64 = c
            .query_row("SELECT recent FROM seen WHERE uniqueid=?1", [uniqueid], |r| r.get(0))
            .optional()?
            .unwrap_or(0);
        if let Some(u) = upto.filter(|u| *u as i64 > old) {
            not_durable(&c, |c| {
                c.execute(
                    "INSERT INTO seen(uniqueid, uids, t, recent) VALUES(?1, '', ?2, ?3) ON CONFLICT(uniqueid) DO UPDATE SET recent=excluded.recent",
                    params![uniqueid, now(), u as i64],
                )
                .map(|_| ())
            })?;
        }
        Ok(old as u32)
    }

    /// Live UIDs of a mailbox not in `seen` (STATUS UNSEEN for readers).
    pub fn unseen_for(&self, name: &str, seen: &[u32]) -> Result<u32> {
        let (_, rows) = self.index(name)?;
        Ok(rows.iter().filter(|r| seen.binary_search(&r.0).is_err()).count() as u32)
    }

    // ---- special use (RFC 6154), kept in the mailbox list ----

    /// Sets (or with "" clears) a mailbox's special-use attributes.
    pub fn set_special_use(&self, name: &str, uses: &str) -> Result<()> {
        let c = lock(&self.list);
        if uses.is_empty() {
            c.execute("DELETE FROM specialuse WHERE name=?1", [name])?;
        } else {
            c.execute("INSERT OR REPLACE INTO specialuse(name, uses) VALUES(?1, ?2)", params![name, uses])?;
        }
        Ok(())
    }

    /// One mailbox's special-use attributes (`\Sent \Archive`), if any.
    pub fn special_use(&self, name: &str) -> Result<Option<String>> {
        let c = lock(&self.list);
        let mut st = c.prepare_cached("SELECT uses FROM specialuse WHERE name=?1")?;
        Ok(st.query_row([name], |r| r.get(0)).optional()?)
    }

    /// Every mailbox's special-use attributes (`\Sent \Archive`).
    pub fn special_uses(&self) -> Result<std::collections::HashMap<String, String>> {
        let c = lock(&self.list);
        let mut st = c.prepare_cached("SELECT name, uses FROM specialuse")?;
        let v = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<std::collections::HashMap<String, String>>>()?;
        Ok(v)
    }

    /// The special uses of `inbox` and the mailboxes below it, by name
    /// (what a user's Sieve script looks among at delivery): one range
    /// of the table's key, not the whole table.
    pub fn special_uses_below(&self, inbox: &str) -> Result<Vec<(String, String)>> {
        let c = lock(&self.list);
        // Every name below `user.fred` sorts between it and the end of
        // the `user.fred.` range; so do a few others (`user.fred-x`), left
        // out after.
        let end = super::listing::prefix_end(&format!("{inbox}.")).unwrap_or_default();
        let mut st = c.prepare_cached("SELECT name, uses FROM specialuse WHERE name >= ?1 AND name < ?2 ORDER BY name")?;
        let v = st
            .query_map([inbox, end.as_str()], |r| Ok((r.get::<_, String>(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<Vec<(String, String)>>>()?;
        Ok(v.into_iter()
            .filter(|(n, _)| n == inbox || n.strip_prefix(inbox).is_some_and(|r| r.starts_with('.')))
            .collect())
    }

    /// The special uses of `names` (those that have one): their owners'
    /// ranges of the table and shared mailboxes one by one, or one pass
    /// over the whole table when that many are asked (an administrator's
    /// `LIST "" *`).  A LIST no longer reads every user's special uses.
    pub fn special_uses_of(&self, names: &[&str]) -> Result<std::collections::HashMap<String, String>> {
        let wanted: std::collections::HashSet<&str> = names.iter().copied().collect();
        if names.len() > SPECIAL_USES_SCAN {
            let mut all = self.special_uses()?;
            all.retain(|n, _| wanted.contains(n.as_str()));
            return Ok(all);
        }
        let mut out = std::collections::HashMap::new();
        let mut roots = std::collections::BTreeSet::new();
        for n in names {
            match super::names::user_root(n) {
                Some(root) => {
                    roots.insert(root);
                }
                None => {
                    if let Some(u) = self.special_use(n)? {
                        out.insert(n.to_string(), u);
                    }
                }
            }
        }
        for root in roots {
            for (n, u) in self.special_uses_below(&root)? {
                if wanted.contains(n.as_str()) {
                    out.insert(n, u);
                }
            }
        }
        Ok(out)
    }

    // ---- annotations (METADATA), kept in the mailbox list ----

    /// An annotation of a mailbox ("" = the server); `userid` "" for
    /// /shared entries, the user for /private ones.
    pub fn annotation(&self, name: &str, entry: &str, userid: &str) -> Result<Option<Vec<u8>>> {
        let c = lock(&self.list);
        Ok(c.query_row(
            "SELECT value FROM annot WHERE name=?1 AND entry=?2 AND userid=?3",
            params![name, entry, userid],
            |r| r.get(0),
        )
        .optional()?)
    }

    /// Sets (None: removes) an annotation.
    pub fn set_annotation(&self, name: &str, entry: &str, userid: &str, value: Option<&[u8]>) -> Result<()> {
        let c = lock(&self.list);
        match value {
            Some(v) => c.execute(
                "INSERT OR REPLACE INTO annot(name, entry, userid, value) VALUES(?1, ?2, ?3, ?4)",
                params![name, entry, userid, v],
            )?,
            None => c.execute(
                "DELETE FROM annot WHERE name=?1 AND entry=?2 AND userid=?3",
                params![name, entry, userid],
            )?,
        };
        Ok(())
    }

    /// SETMETADATA's writes (entry, userid, value or None to remove) on
    /// one mailbox; refused as a whole (OverQuota) when their growth would
    /// pass an X-ANNOTATION-STORAGE limit covering the mailbox.
    pub fn set_annotations(&self, name: &str, writes: &[(String, String, Option<Vec<u8>>)]) -> Result<()> {
        let mut more = 0i64;
        for (entry, userid, v) in writes {
            let was = self.annotation(name, entry, userid)?.map_or(0, |o| o.len() as i64);
            more += v.as_ref().map_or(0, |v| v.len() as i64) - was;
        }
        self.check_annotations(name, more)?;
        for (entry, userid, v) in writes {
            self.set_annotation(name, entry, userid, v.as_deref())?;
        }
        Ok(())
    }

    /// Removes one user's annotations of one entry on every mailbox.
    pub fn delete_annotations(&self, entry: &str, userid: &str) -> Result<()> {
        let c = lock(&self.list);
        c.execute("DELETE FROM annot WHERE entry=?1 AND userid=?2", params![entry, userid])?;
        Ok(())
    }

    // ---- POP3 ----

    /// Whether a POP3 login on `inbox` may go ahead under `popminpoll`
    /// (`minpoll` seconds): not when the recorded login time (see
    /// `pop_quit`) plus the minimum is still ahead of `now`, as Cyrus.
    pub fn pop_may_login(&self, inbox: &str, minpoll: i64, now: i64) -> Result<bool> {
        if minpoll <= 0 {
            return Ok(true);
        }
        let oc = self.owner(inbox)?;
        let c = lock(&oc);
        let last: Option<i64> = c
            .query_row("SELECT last_login FROM pop WHERE mailbox=?1", [inbox], |r| r.get(0))
            .optional()?;
        Ok(last.is_none_or(|l| l + minpoll <= now))
    }

    /// Records, at the QUIT of a session that logged in at `login`, the
    /// time `pop_may_login` measures from, as Cyrus's pop3d does: the
    /// login time; with `poppollpadding` (`padding` > 1) a slot of
    /// `minpoll` is taken instead, from no earlier than `padding` slots
    /// before the login, so that `padding` logins may come close together.
    pub fn pop_quit(&self, inbox: &str, login: i64, minpoll: i64, padding: i64) -> Result<()> {
        let oc = self.owner(inbox)?;
        let mut c = lock(&oc);
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let last: i64 = tx
            .query_row("SELECT last_login FROM pop WHERE mailbox=?1", [inbox], |r| r.get(0))
            .optional()?
            .unwrap_or(0);
        let t = if minpoll > 0 && padding > 1 {
            let earliest = login - minpoll * padding;
            if last < earliest {
                earliest + minpoll
            } else {
                last + minpoll
            }
        } else {
            login
        };
        tx.execute("INSERT OR REPLACE INTO pop(mailbox, last_login) VALUES(?1, ?2)", params![inbox, t])?;
        tx.commit()?;
        Ok(())
    }

    // ---- subscriptions (kept in the subscriber's database) ----

    pub fn subscribe(&self, user_inbox: &str, name: &str, on: bool) -> Result<()> {
        let oc = self.owner(user_inbox)?;
        let c = lock(&oc);
        if on {
            c.execute("INSERT OR IGNORE INTO sub(name) VALUES(?1)", [name])?;
        } else {
            c.execute("DELETE FROM sub WHERE name=?1", [name])?;
        }
        Ok(())
    }

    pub fn subscriptions(&self, user_inbox: &str) -> Result<Vec<String>> {
        let oc = self.owner(user_inbox)?;
        let c = lock(&oc);
        let mut st = c.prepare_cached("SELECT name FROM sub ORDER BY name")?;
        let v = st.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(v)
    }

    /// Forgets a deleted user's subscriptions, seen state and POP3
    /// logins (Cyrus's user_deletedata).
    pub fn delete_user_data(&self, inbox: &str) -> Result<()> {
        let oc = self.owner(inbox)?;
        let c = lock(&oc);
        c.execute_batch("DELETE FROM sub; DELETE FROM seen; DELETE FROM pop;")?;
        Ok(())
    }
}

/// `select` (a one-column aggregate) over the rows whose `col` is `root`
/// or a mailbox under it.
fn under(c: &rusqlite::Connection, select: &str, col: &str, root: &str) -> Result<i64> {
    // The names under `root.` sort between it and `root/` ('/' follows '.').
    let sql = format!("{select} WHERE {col}=?1 OR ({col}>?2 AND {col}<?3)");
    Ok(c.prepare_cached(&sql)?
        .query_row(params![root, format!("{root}."), format!("{root}/")], |r| r.get(0))?)
}
