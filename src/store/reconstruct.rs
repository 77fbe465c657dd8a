//! `reconstruct`: makes a mailbox's index agree with its message files,
//! keeping UIDs.  Files without a record below `uidnext` are added (flags
//! empty, internal date from the file's mtime); records whose file is gone
//! become tombstones; files of expunged records marked unlinked and
//! uncommitted leftovers (UID at or above `uidnext`) are removed, so
//! expunged mail is never resurrected (files that delayed expunge keeps
//! for `unexpunge` stay); sizes and GUIDs are checked.

use super::db::lock;
use super::{Cached, Result, Store, StoreError, FLAG_EXPUNGED, FLAG_UNLINKED};
use rusqlite::{params, TransactionBehavior};
use std::collections::HashMap;

/// One repair made (or, with `dry_run`, that would be made).
#[derive(Debug, Clone, PartialEq)]
pub enum Repair {
    AddedRecord(u32),
    MissingFile(u32),
    RemovedExpungedFile(u32),
    RemovedUncommitted(u32),
    FixedSize(u32),
    /// No index existed: rebuilt with this uidnext.
    NewIndex(u32),
    /// The list's index of the identifiers the ACL names (what LIST
    /// looks in) disagreed with the ACL: made again.
    AclIndex,
}

impl Repair {
    /// Removing an uncommitted leftover is housekeeping: the file was
    /// never part of the mailbox (the next append at that UID replaces it).
    pub fn is_repair(&self) -> bool {
        !matches!(self, Repair::RemovedUncommitted(_))
    }
}

impl std::fmt::Display for Repair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Repair::AddedRecord(u) => write!(f, "added index record for uid {u}"),
            Repair::MissingFile(u) => write!(f, "message file for uid {u} is missing: record expunged"),
            Repair::RemovedExpungedFile(u) => write!(f, "removed file of expunged uid {u}"),
            Repair::RemovedUncommitted(u) => write!(f, "cleanup: removed uncommitted file {u}."),
            Repair::FixedSize(u) => write!(f, "fixed size of uid {u}"),
            Repair::NewIndex(n) => write!(f, "created index, uidnext {n}"),
            Repair::AclIndex => write!(f, "rebuilt the ACL index entries"),
        }
    }
}

impl Store {
    /// Reconstructs `name`; `parse` renders the cached items of a message.
    pub fn reconstruct(&self, name: &str, dry_run: bool, parse: &dyn Fn(&[u8]) -> Cached) -> Result<Vec<Repair>> {
        let e = self.lookup(name)?.ok_or(StoreError::NotFound)?;
        let dir = self.mailbox_dir(name, &e.partition)?;
        let mut files: HashMap<u32, std::fs::Metadata> = HashMap::new();
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for f in rd.flatten() {
                let n = f.file_name();
                let n = n.to_string_lossy();
                if let Some(num) = n.strip_suffix('.') {
                    if let Ok(u) = num.parse::<u32>() {
                        if u > 0 {
                            if let Ok(m) = f.metadata() {
                                if m.is_file() {
                                    files.insert(u, m);
                                }
                            }
                        }
                    }
                }
            }
        }
        let mut repairs = Vec::new();
        if self.acl_index_differs(&e)? {
            repairs.push(Repair::AclIndex);
            if !dry_run {
                let c = lock(&self.list);
                let tx = c.unchecked_transaction()?;
                super::db::index_acl(&tx, name, &e.acl)?;
                tx.commit()?;
            }
        }
        let existed = {
            let oc = self.owner(name)?;
            let c = lock(&oc);
            let n: i64 = c.query_row("SELECT count(*) FROM mailbox WHERE name=?1", [name], |r| r.get(0))?;
            n > 0
        };
        let s = self.state(name)?;
        let oc = self.owner(name)?;
        let mut c = lock(&oc);
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut recs: HashMap<u32, (u32, u64)> = HashMap::new();
        {
            let mut st = tx.prepare("SELECT uid, flags, size FROM msg WHERE mailbox=?1")?;
            for row in st.query_map([s.id], |r| {
                Ok((r.get::<_, i64>(0)? as u32, r.get::<_, i64>(1)? as u32, r.get::<_, i64>(2)? as u64))
            })? {
                let (u, f, sz) = row?;
                recs.insert(u, (f, sz));
            }
        }
        let mut uidnext = s.uidnext;
        if !existed {
            // No index at all: every file is real mail.
            uidnext = files.keys().max().map_or(1, |m| m + 1);
            repairs.push(Repair::NewIndex(uidnext));
        }
        let mut uids: Vec<u32> = files.keys().copied().collect();
        uids.sort_unstable();
        let modseq = s.highestmodseq + 1;
        let mut changed = false;
        for u in &uids {
            let path = dir.join(format!("{u}."));
            match recs.get(u) {
                Some((f, _)) if f & FLAG_EXPUNGED != 0 && f & FLAG_UNLINKED == 0 => {}
                Some((f, _)) if f & FLAG_EXPUNGED != 0 => {
                    repairs.push(Repair::RemovedExpungedFile(*u));
                    if !dry_run {
                        let _ = std::fs::remove_file(&path);
                    }
                }
                Some((_, sz)) => {
                    let m = &files[u];
                    if m.len() != *sz {
                        repairs.push(Repair::FixedSize(*u));
                        if !dry_run {
                            let data = std::fs::read(&path)?;
                            let guid = crate::util::sha1(&data).to_vec();
                            let cached = parse(&data);
                            tx.execute(
                                "UPDATE msg SET size=?3, guid=?4, envelope=?5, bodystructure=?6, body=?7, modseq=?8 WHERE mailbox=?1 AND uid=?2",
                                params![s.id, *u as i64, data.len() as i64, guid, cached.envelope, cached.bodystructure, cached.body, modseq as i64],
                            )?;
                            changed = true;
                        }
                    }
                }
                None if *u >= uidnext => {
                    repairs.push(Repair::RemovedUncommitted(*u));
                    if !dry_run {
                        let _ = std::fs::remove_file(&path);
                    }
                }
                None => {
                    repairs.push(Repair::AddedRecord(*u));
                    if !dry_run {
                        let data = std::fs::read(&path)?;
                        let guid = crate::util::sha1(&data).to_vec();
                        let (he, _) = crate::mail::mime::header_end(&data);
                        let cached = parse(&data);
                        let mtime = files[u]
                            .modified()
                            .ok()
                            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                            .map_or(0, |d| d.as_secs() as i64);
                        tx.execute(
                            "INSERT INTO msg(mailbox, uid, modseq, flags, keywords, internaldate, tz, savedate, size, header_size, guid, envelope, bodystructure, body, createdmodseq)
                             VALUES(?1, ?2, ?3, 0, '', ?4, 0, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?3)",
                            params![s.id, *u as i64, modseq as i64, mtime, data.len() as i64, he as i64, guid, cached.envelope, cached.bodystructure, cached.body],
                        )?;
                        changed = true;
                    }
                }
            }
        }
        let mut missing: Vec<u32> = recs
            .iter()
            .filter(|(u, (f, _))| f & FLAG_EXPUNGED == 0 && !files.contains_key(u))
            .map(|(u, _)| *u)
            .collect();
        missing.sort_unstable();
        for u in missing {
            repairs.push(Repair::MissingFile(u));
            if !dry_run {
                tx.execute(
                    "UPDATE msg SET flags=flags | ?3, modseq=?4 WHERE mailbox=?1 AND uid=?2",
                    params![s.id, u as i64, FLAG_EXPUNGED as i64, modseq as i64],
                )?;
                changed = true;
            }
        }
        if !dry_run && (changed || !existed) {
            let (n, sz): (i64, i64) = tx.query_row(
                "SELECT count(*), coalesce(sum(size),0) FROM msg WHERE mailbox=?1 AND flags & ?2 = 0",
                params![s.id, FLAG_EXPUNGED as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            tx.execute(
                "UPDATE mailbox SET uidnext=max(uidnext, ?2), highestmodseq=?3, exists_=?4, size=?5 WHERE id=?1",
                params![s.id, uidnext as i64, modseq as i64, n, sz],
            )?;
        }
        tx.commit()?;
        drop(c);
        if !dry_run && !repairs.is_empty() {
            self.quota_fix(name)?;
            self.notify(name);
        }
        Ok(repairs)
    }
}
