//! Delayed expunge and delete as Cyrus 3.x keeps them: DELETE renames a
//! mailbox under `deletedprefix` (`DELETED.user.fred.Sub.5F1E2D3C`, the
//! hex being the time of the delete), EXPUNGE leaves the message file
//! beside its tombstone; `cyr_expire` removes both later and `unexpunge`
//! brings messages back (under new UIDs, as IMAP requires).

use super::db::lock;
use super::ops::now;
use super::{MailboxEntry, NewMessage, Record, Result, Store, StoreError, FLAG_DELETED, FLAG_EXPUNGED, FLAG_UNLINKED};
use rusqlite::{params, TransactionBehavior};

/// The shared annotation holding a mailbox's message lifetime in days
/// (cyradm's `mboxconfig … expire`), inherited by its children.
pub const EXPIRE_ANNOTATION: &str = "/vendor/cmu/cyrus-imapd/expire";

/// What `cyr_expire -X` did to one mailbox.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Cleanup {
    /// Message files removed now.
    pub removed: usize,
    /// Records (live and expunged) the mailbox has.
    pub records: usize,
}

impl Store {
    /// The time a delayed-deleted mailbox was deleted (its hex suffix).
    pub fn deleted_at(&self, name: &str) -> Option<i64> {
        if !self.cfg.is_deleted(name) {
            return None;
        }
        let hex = name.rsplit_once('.')?.1;
        (hex.len() == 8).then(|| i64::from_str_radix(hex, 16).ok()).flatten()
    }

    /// DELETE with `delete_mode: delayed`: the mailbox (not its children)
    /// moves to `<deletedprefix>.<name>.<HEX time>` with its messages,
    /// UIDs, uniqueid and ACL; its quota usage is released and its
    /// special use and annotations dropped.  Returns the new name.
    pub fn delete_delayed(&self, name: &str) -> Result<String> {
        let e = self.lookup(name)?.ok_or(StoreError::NotFound)?;
        let (dom, bare) = match name.split_once('!') {
            Some((d, r)) => (format!("{d}!"), r),
            None => (String::new(), name),
        };
        let mut t = now();
        let mut new = format!("{dom}{}.{bare}.{:08X}", self.cfg.deletedprefix, t as u32);
        while self.lookup(&new)?.is_some() {
            t += 1;
            new = format!("{dom}{}.{bare}.{:08X}", self.cfg.deletedprefix, t as u32);
        }
        if self.owner_db_path(&new) != self.owner_db_path(name) {
            // Another deletedprefix than DELETED: a copy into the other
            // database, then the immediate delete.
            self.create(&new, Some(&e.partition), Some(&e.acl))?;
            let (_, rows) = self.index(name)?;
            let uids: Vec<u32> = rows.iter().map(|r| r.0).collect();
            for chunk in uids.chunks(1024) {
                self.copy(name, &new, chunk, true)?;
            }
            self.delete_now(name)?;
            return Ok(new);
        }
        // Same database: link every file into the new directory first
        // (durable), then switch the records, then drop the old names.  A
        // crash leaves the mailbox whole under one name or the other.
        let from = self.mailbox_dir(name, &e.partition)?;
        let to = self.mailbox_dir(&new, &e.partition)?;
        std::fs::create_dir_all(&to)?;
        let mut moved = Vec::new();
        if let Ok(rd) = std::fs::read_dir(&from) {
            for f in rd.flatten() {
                let n = f.file_name().to_string_lossy().to_string();
                if n.ends_with('.') && n.len() > 1 && n[..n.len() - 1].bytes().all(|b| b.is_ascii_digit()) {
                    match std::fs::hard_link(f.path(), to.join(&n)) {
                        Ok(()) => moved.push(n),
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => moved.push(n),
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        super::ops::sync_dir(&to)?;
        {
            let oc = self.owner(name)?;
            let mut c = lock(&oc);
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if let Some(id) = super::ops::state_of(&tx, name)?.map(|s| s.id) {
                let (bytes, count): (i64, i64) = tx.query_row(
                    "SELECT coalesce(sum(size),0), count(*) FROM msg WHERE mailbox=?1 AND flags & ?2 = 0",
                    params![id, FLAG_EXPUNGED as i64],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                super::ops::charge_quota(&tx, name, -bytes, -count, true)?;
                tx.execute("UPDATE mailbox SET name=?2 WHERE id=?1", params![id, new])?;
                tx.execute("DELETE FROM quota WHERE root=?1", [name])?;
            }
            tx.commit()?;
        }
        {
            let mut c = lock(&self.list);
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute("UPDATE mbox SET name=?2 WHERE name=?1", params![name, new])?;
            tx.execute("UPDATE aclid SET name=?2 WHERE name=?1", params![name, new])?;
            tx.execute("DELETE FROM specialuse WHERE name=?1", [name])?;
            tx.execute("DELETE FROM annot WHERE name=?1", [name])?;
            tx.commit()?;
        }
        for n in moved {
            let _ = std::fs::remove_file(from.join(n));
        }
        let _ = std::fs::remove_dir(&from);
        self.notify(name);
        Ok(new)
    }

    /// Every record, tombstones included, by UID.
    pub fn all_records(&self, name: &str) -> Result<Vec<Record>> {
        let s = self.state(name)?;
        let oc = self.owner(name)?;
        let c = lock(&oc);
        let mut st = c.prepare_cached(&format!("SELECT {} FROM msg WHERE mailbox=?1 ORDER BY uid", super::ops::REC_COLS))?;
        let v = st
            .query_map(params![s.id], super::ops::record_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(v)
    }

    /// Expunged records whose message file is still kept.
    pub fn expunged(&self, name: &str) -> Result<Vec<Record>> {
        Ok(self
            .all_records(name)?
            .into_iter()
            .filter(|r| r.flags & FLAG_EXPUNGED != 0 && r.flags & FLAG_UNLINKED == 0)
            .collect())
    }

    /// `cyr_expire -X`: removes the files of messages expunged at or
    /// before `cutoff` (the records stay as tombstones for QRESYNC).
    pub fn cleanup_expunged(&self, name: &str, cutoff: i64) -> Result<Cleanup> {
        let e = self.lookup(name)?.ok_or(StoreError::NotFound)?;
        let recs = self.all_records(name)?;
        let gone: Vec<u32> = recs
            .iter()
            .filter(|r| r.flags & FLAG_EXPUNGED != 0 && r.flags & FLAG_UNLINKED == 0 && r.savedate <= cutoff)
            .map(|r| r.uid)
            .collect();
        if !gone.is_empty() {
            let oc = self.owner(name)?;
            let mut c = lock(&oc);
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let id = super::ops::state_of(&tx, name)?.map(|s| s.id).ok_or(StoreError::NotFound)?;
            for u in &gone {
                tx.execute(
                    "UPDATE msg SET flags=flags | ?3 WHERE mailbox=?1 AND uid=?2",
                    params![id, *u as i64, FLAG_UNLINKED as i64],
                )?;
                tx.execute("DELETE FROM msgannot WHERE mailbox=?1 AND uid=?2", params![id, *u as i64])?;
            }
            tx.commit()?;
            drop(c);
            let dir = self.mailbox_dir(name, &e.partition)?;
            for u in &gone {
                let _ = std::fs::remove_file(dir.join(format!("{u}.")));
            }
        }
        Ok(Cleanup {
            removed: gone.len(),
            records: recs.len(),
        })
    }

    /// The `expire` annotation that applies to `name` (its own or the
    /// nearest parent's), in days.
    pub fn expire_days(&self, name: &str) -> Result<Option<u64>> {
        let mut n = name;
        loop {
            if let Some(v) = self.annotation(n, EXPIRE_ANNOTATION, "")? {
                return Ok(std::str::from_utf8(&v).ok().and_then(|t| t.trim().parse().ok()));
            }
            match n.rsplit_once('.') {
                Some((p, _)) => n = p,
                None => return Ok(None),
            }
        }
    }

    /// `cyr_expire -E`: forgets duplicate-delivery records older than
    /// `cutoff` in every owner database; returns how many went.
    pub fn expire_duplicates(&self, cutoff: i64) -> Result<usize> {
        let mut seen = std::collections::HashSet::new();
        let mut n = 0;
        for e in self.list_prefix("")? {
            if !seen.insert(self.owner_db_path(&e.name)) {
                continue;
            }
            let oc = self.owner(&e.name)?;
            let c = lock(&oc);
            n += c.execute("DELETE FROM dup WHERE t < ?1", [cutoff])?;
        }
        Ok(n)
    }

    /// `unexpunge`: appends kept expunged messages again (new UIDs, the
    /// old flags and internal date, minus `\Deleted` if `undelete`, plus
    /// `keyword`), then lets their old files go.  Returns (old, new) UIDs.
    pub fn unexpunge(
        &self,
        name: &str,
        uids: &[u32],
        undelete: bool,
        keyword: Option<&str>,
        parse: &dyn Fn(&[u8]) -> super::Cached,
    ) -> Result<Vec<(u32, u32)>> {
        let e: MailboxEntry = self.lookup(name)?.ok_or(StoreError::NotFound)?;
        let dir = self.mailbox_dir(name, &e.partition)?;
        let mut out = Vec::new();
        for r in self.expunged(name)?.into_iter().filter(|r| uids.contains(&r.uid)) {
            let path = dir.join(format!("{}.", r.uid));
            let Ok(data) = std::fs::read(&path) else { continue };
            let staged = self.stage(&e.partition, &data)?;
            let cached = parse(&data);
            let mut kw = r.keywords.clone();
            if let Some(k) = keyword {
                if !r.has_keyword(k) {
                    if !kw.is_empty() {
                        kw.push(' ');
                    }
                    kw.push_str(k);
                }
            }
            let flags = r.flags & !(FLAG_EXPUNGED | FLAG_UNLINKED) & if undelete { !FLAG_DELETED } else { !0 };
            let msg = NewMessage {
                staged: &staged,
                flags,
                keywords: kw,
                internaldate: r.internaldate,
                tz: r.tz,
                cached: &cached,
            };
            let (_, new) = self.append(name, std::slice::from_ref(&msg), true)?;
            {
                let oc = self.owner(name)?;
                let c = lock(&oc);
                if let Some(id) = super::ops::state_of(&c, name)?.map(|s| s.id) {
                    c.execute(
                        "UPDATE msg SET flags=flags | ?3 WHERE mailbox=?1 AND uid=?2",
                        params![id, r.uid as i64, FLAG_UNLINKED as i64],
                    )?;
                }
            }
            let _ = std::fs::remove_file(&path);
            if let Some(n) = new.first() {
                out.push((r.uid, *n));
            }
        }
        Ok(out)
    }
}
