//! The mailbox lifecycle: create, ACL change, delete (delayed or now),
//! rename within and across owners, INBOX rename; each told to the
//! Murder's directory on a back end (RESERVE/ACTIVATE/DELETE in Cyrus's
//! order).

use super::db::lock;
use super::murder::{DirOp, Directory};
use super::names;
use super::ops::{charge_quota, covers, new_uuid, now, state_of, ENTRY_COLS, OWNER_RIGHTS};
use super::FLAG_EXPUNGED;
use super::{MailboxEntry, MailboxState, Result, Store, StoreError};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::sync::Arc;

/// The state record of `e` in its owner database `c`, made if missing.
pub(super) fn ensure_state_in(c: &Connection, e: &MailboxEntry) -> Result<MailboxState> {
    if let Some(s) = state_of(c, &e.name)? {
        return Ok(s);
    }
    c.execute(
        "INSERT INTO mailbox(name, uniqueid, partition, uidvalidity, uidnext, highestmodseq) VALUES(?1, ?2, ?3, ?4, 1, 1)",
        params![e.name, e.uniqueid, e.partition, e.uidvalidity as i64],
    )?;
    state_of(c, &e.name)?.ok_or(StoreError::NotFound)
}

impl Store {
    fn next_uidvalidity(c: &Connection) -> Result<u32> {
        let last: i64 = c
            .query_row("SELECT value FROM meta WHERE key='uidvalidity'", [], |r| r.get(0))
            .optional()?
            .unwrap_or(0);
        let v = now().max(last + 1).min(u32::MAX as i64);
        c.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('uidvalidity', ?1)", [v])?;
        Ok(v as u32)
    }

    /// Creates a mailbox.  `acl` defaults to the owner's full rights for
    /// personal mailboxes and to nothing for shared ones.
    /// A quota root's X-NUM-FOLDERS limit is held against it.
    pub fn create(&self, name: &str, partition: Option<&str>, acl: Option<&str>) -> Result<MailboxEntry> {
        self.create_with(name, partition, acl, true)
    }

    fn create_with(&self, name: &str, partition: Option<&str>, acl: Option<&str>, folders_quota: bool) -> Result<MailboxEntry> {
        if names::is_users_top(name) {
            return Err(StoreError::Invalid("the top of the users' hierarchy is not a mailbox"));
        }
        let partition = match partition {
            Some(p) => p.to_string(),
            None => self.partition_for(name)?,
        };
        let dir = self.mailbox_dir(name, &partition)?;
        if self.lookup(name)?.is_some() {
            return Err(StoreError::Exists);
        }
        if folders_quota {
            self.check_folders(name, 1, None)?;
        }
        // A back end reserves the name with the MUPDATE master first: a
        // name taken elsewhere, or no master, and nothing is created.
        self.push(&[DirOp::Reserve {
            name: name.to_string(),
            partition: partition.clone(),
        }])?;
        let acl = match acl {
            Some(a) => a.to_string(),
            // As Cyrus: the nearest existing parent's ACL; without one,
            // the owner's full rights on a user's mailbox, `defaultacl`
            // on a shared one.
            None => match self.nearest_parent(name)? {
                Some(p) => p.acl,
                None => {
                    let (u, d, is_user) = names::owner_of(name);
                    if is_user {
                        let who = if d.is_empty() { u } else { format!("{u}@{d}") };
                        // Internal user names keep '^' for '.'.
                        format!("{}\t{OWNER_RIGHTS}\t", who.replace('^', "."))
                    } else {
                        self.cfg.defaultacl.clone()
                    }
                }
            },
        };
        let entry = {
            let mut c = lock(&self.list);
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let exists: bool = tx
                .query_row("SELECT 1 FROM mbox WHERE name=?1", [name], |_| Ok(true))
                .optional()?
                .is_some();
            if exists {
                return Err(StoreError::Exists);
            }
            let e = MailboxEntry {
                name: name.to_string(),
                uniqueid: new_uuid(),
                partition: partition.clone(),
                acl,
                mbtype: "e".into(),
                server: String::new(),
                uidvalidity: Self::next_uidvalidity(&tx)?,
            };
            std::fs::create_dir_all(&dir)?;
            tx.execute(
                &format!("INSERT INTO mbox({ENTRY_COLS}, created) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
                params![
                    e.name,
                    e.uniqueid,
                    e.partition,
                    e.acl,
                    e.mbtype,
                    e.server,
                    e.uidvalidity as i64,
                    now()
                ],
            )?;
            super::db::index_acl(&tx, &e.name, &e.acl)?;
            tx.commit()?;
            e
        };
        self.ensure_state(&entry)?;
        let activate = DirOp::Activate {
            name: name.to_string(),
            partition: entry.partition.clone(),
            acl: entry.acl.clone(),
        };
        if let Err(e) = self.push(&[activate]) {
            // As Cyrus: the local mailbox goes again.
            let _ = self.delete_local(name);
            return Err(e);
        }
        Ok(entry)
    }

    /// Installs the Murder's directory (a back end with `mupdate_server`).
    pub fn set_directory(&self, d: Arc<dyn Directory>) {
        let _ = self.directory.set(d);
    }

    /// Tells the MUPDATE master, if there is one; names under
    /// `deletedprefix` stay local.
    pub fn push(&self, ops: &[DirOp]) -> Result<()> {
        let Some(d) = self.directory.get() else {
            return Ok(());
        };
        let ops: Vec<DirOp> = ops
            .iter()
            .filter(|o| {
                let n = match o {
                    DirOp::Reserve { name, .. } | DirOp::Activate { name, .. } | DirOp::Delete { name } => name,
                };
                !self.cfg.is_deleted(n)
            })
            .cloned()
            .collect();
        if ops.is_empty() {
            return Ok(());
        }
        d.push(&ops).map_err(StoreError::Murder)
    }

    /// The owner database's row for a listed mailbox, created if a crash
    /// came between the list commit and the owner commit.
    pub(super) fn ensure_state(&self, e: &MailboxEntry) -> Result<MailboxState> {
        // Nearly always there: a read, which need not wait for a commit.
        if let Some(s) = self.read(&e.name, |c| state_of(c, &e.name))? {
            return Ok(s);
        }
        let oc = self.owner(&e.name)?;
        let c = lock(&oc);
        ensure_state_in(&c, e)
    }

    pub fn state(&self, name: &str) -> Result<MailboxState> {
        let e = self.lookup(name)?.ok_or(StoreError::NotFound)?;
        self.ensure_state(&e)
    }

    pub fn set_acl(&self, name: &str, acl: &str) -> Result<()> {
        let e = self.lookup(name)?.ok_or(StoreError::NotFound)?;
        if !self.write_acl(name, acl)? {
            return Err(StoreError::NotFound);
        }
        // An arriving mailbox (an XFER here under way) tells the master
        // when it opens.
        if e.mbtype == super::xfer::ARRIVING {
            return Ok(());
        }
        let activate = DirOp::Activate {
            name: name.to_string(),
            partition: e.partition.clone(),
            acl: acl.to_string(),
        };
        if let Err(err) = self.push(&[activate]) {
            // The master keeps the old ACL: so does the mailbox.
            self.write_acl(name, &e.acl)?;
            return Err(err);
        }
        Ok(())
    }

    /// A mailbox's ACL in the list, with its `aclid` rows; false when no
    /// such mailbox is listed.
    fn write_acl(&self, name: &str, acl: &str) -> Result<bool> {
        let c = lock(&self.list);
        let tx = c.unchecked_transaction()?;
        if tx.execute("UPDATE mbox SET acl=?2 WHERE name=?1", params![name, acl])? == 0 {
            return Ok(false);
        }
        super::db::index_acl(&tx, name, acl)?;
        tx.commit()?;
        Ok(true)
    }

    /// The partition of a new mailbox that names none, as Cyrus finds it:
    /// its nearest parent's, else `defaultpartition`, else the one
    /// `partition_select_mode` picks.
    pub fn partition_for(&self, name: &str) -> Result<String> {
        if let Some(p) = self.nearest_parent(name)? {
            if self.cfg.partition_root(&p.partition).is_some() {
                return Ok(p.partition);
            }
        }
        let pl = &self.cfg.placement;
        if pl.default_set {
            return Ok(self.cfg.defaultpartition.clone());
        }
        let parts: Vec<&(String, std::path::PathBuf)> = self.cfg.partitions.iter().filter(|(n, _)| !pl.exclude.contains(n)).collect();
        let spaces: Vec<_> = parts
            .iter()
            .map(|(_, root)| {
                // A partition not made yet is made, as Cyrus does, to be measured.
                let _ = std::fs::create_dir_all(root);
                super::placement::Space::of(root)
            })
            .collect();
        Ok(
            super::placement::choose(pl.mode, &spaces, pl.soft_usage_limit, super::placement::roll())
                .map_or_else(|| self.cfg.defaultpartition.clone(), |i| parts[i].0.clone()),
        )
    }

    /// The partitions' free space in KiB, as Cyrus's server annotations
    /// `freespace` and `freespace/total` report it (one file system
    /// counted once, `partition_select_exclude` left out): (free, total)
    /// summed, and (free, total) of the partition with the highest free
    /// share (`freespace/percent/most`).
    pub fn free_space(&self) -> ((u64, u64), (u64, u64)) {
        let pl = &self.cfg.placement;
        let mut seen: Vec<u64> = Vec::new();
        let (mut sum, mut best, mut best_share) = ((0, 0), (0, 0), 0.0);
        for (name, root) in &self.cfg.partitions {
            let Some(s) = super::placement::Space::of(root).filter(|_| !pl.exclude.contains(name)) else {
                continue;
            };
            if seen.contains(&s.fs) {
                continue;
            }
            seen.push(s.fs);
            sum = (sum.0 + s.avail, sum.1 + s.total);
            let share = s.avail as f64 * 100.0 / s.total as f64;
            if share > best_share && share <= 100.0 {
                (best, best_share) = ((s.avail, s.total), share);
            }
        }
        (sum, best)
    }

    /// The closest existing mailbox above `name` (`user.fred.a` for
    /// `user.fred.a.b` if it exists, else `user.fred`, …).
    pub fn nearest_parent(&self, name: &str) -> Result<Option<MailboxEntry>> {
        let mut n = name;
        while let Some(p) = names::parent(n) {
            if let Some(e) = self.lookup(p)? {
                return Ok(Some(e));
            }
            n = p;
        }
        Ok(None)
    }

    /// The levels missing between `name` and its nearest existing parent,
    /// top down (`user.fred.a`, `user.fred.a.b` for `user.fred.a.b.c` when
    /// only `user.fred` exists); never a user's INBOX nor the users' top,
    /// nor `user.fred.INBOX` (which `altnamespace` shows as the INBOX
    /// its children are under).
    pub fn missing_parents(&self, name: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut n = name;
        while let Some(p) = names::parent(n) {
            let inbox_level = |root: String| p == root || p.strip_prefix(root.as_str()) == Some(".INBOX");
            if names::is_users_top(p) || names::user_root(p).is_some_and(inbox_level) || self.lookup(p)?.is_some() {
                break;
            }
            out.push(p.to_string());
            n = p;
        }
        out.reverse();
        Ok(out)
    }

    /// As Cyrus 3.6's CREATE, RENAME and autocreate: the levels missing
    /// above `name` are made first, each as a CREATE of its own (the
    /// nearest parent's ACL, `defaultacl` for a shared top, told to the
    /// MUPDATE master, counted against X-NUM-FOLDERS), so that they are
    /// mailboxes, not `\Noselect` holes.  One refused stops there; the
    /// levels made before it stay, as in Cyrus.
    pub fn create_parents(&self, name: &str, partition: Option<&str>) -> Result<()> {
        for p in self.missing_parents(name)? {
            self.create(&p, partition, None)?;
        }
        Ok(())
    }

    /// `create_parents`, then the mailbox itself.
    pub fn create_path(&self, name: &str, partition: Option<&str>) -> Result<MailboxEntry> {
        if self.lookup(name)?.is_some() {
            return Err(StoreError::Exists);
        }
        self.create_parents(name, partition)?;
        self.create(name, partition, None)
    }

    /// DELETE: with `delete_mode: delayed` (the default) the mailbox is
    /// renamed under `deletedprefix` for `cyr_expire -D`; a mailbox
    /// already there, or `delete_mode: immediate`, goes at once.
    pub fn delete(&self, name: &str) -> Result<()> {
        // The master first: if it cannot be told, nothing is deleted.
        if self.lookup(name)?.is_some() {
            self.push(&[DirOp::Delete { name: name.to_string() }])?;
        }
        if self.cfg.delete_mode == super::DeleteMode::Delayed && !self.cfg.is_deleted(name) {
            return self.delete_delayed(name).map(|_| ());
        }
        self.delete_now(name)
    }

    /// Deletes a mailbox, its records and its message files (children are
    /// separate mailboxes and stay).
    pub fn delete_now(&self, name: &str) -> Result<()> {
        if self.lookup(name)?.is_some() {
            self.push(&[DirOp::Delete { name: name.to_string() }])?;
        }
        self.delete_local(name)
    }

    /// `delete_now` without telling the MUPDATE master.
    pub fn delete_local(&self, name: &str) -> Result<()> {
        let e = self.lookup(name)?.ok_or(StoreError::NotFound)?;
        let dir = self.mailbox_dir(name, &e.partition)?;
        {
            let oc = self.owner(name)?;
            let mut c = lock(&oc);
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if let Some(s) = state_of(&tx, name)? {
                let (bytes, count): (i64, i64) = tx.query_row(
                    "SELECT coalesce(sum(size),0), count(*) FROM msg WHERE mailbox=?1 AND flags & ?2 = 0",
                    params![s.id, FLAG_EXPUNGED as i64],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                charge_quota(&tx, name, -bytes, -count, true)?;
                tx.execute("DELETE FROM msg WHERE mailbox=?1", [s.id])?;
                tx.execute("DELETE FROM msgannot WHERE mailbox=?1", [s.id])?;
                tx.execute("DELETE FROM mailbox WHERE id=?1", [s.id])?;
                tx.execute("DELETE FROM quota WHERE root=?1", [name])?;
            }
            tx.commit()?;
        }
        self.drop_listed(name, &dir)
    }

    /// Renames a mailbox and its children.  Within one owner the
    /// directories and records move; across owners (an admin moving a
    /// folder or, with `allowusermoves`, a whole user) see `move_across`.
    pub fn rename(&self, old: &str, new: &str) -> Result<()> {
        if covers(old, new) {
            return Err(StoreError::Invalid("rename into itself"));
        }
        if self.owner_db_path(old) != self.owner_db_path(new) {
            return self.move_across(old, new);
        }
        if self.lookup(new)?.is_some() {
            return Err(StoreError::Exists);
        }
        let all: Vec<MailboxEntry> = self.list_prefix(old)?.into_iter().filter(|e| covers(old, &e.name)).collect();
        if all.is_empty() {
            return Err(StoreError::NotFound);
        }
        for e in &all {
            let to = format!("{new}{}", &e.name[old.len()..]);
            if self.lookup(&to)?.is_some() {
                return Err(StoreError::Exists);
            }
        }
        self.check_folders(new, all.len() as i64, Some(old))?;
        // The master reserves the new names first (Cyrus's order).
        let reserve: Vec<DirOp> = all
            .iter()
            .map(|e| DirOp::Reserve {
                name: format!("{new}{}", &e.name[old.len()..]),
                partition: e.partition.clone(),
            })
            .collect();
        self.push(&reserve)?;
        // Directories first (children are subdirectories: move the top
        // one, which carries them), then the records.
        let top = &all[0];
        let from_dir = self.mailbox_dir(&top.name, &top.partition)?;
        let to_dir = self.mailbox_dir(new, &top.partition)?;
        if let Some(p) = to_dir.parent() {
            std::fs::create_dir_all(p)?;
        }
        if from_dir.exists() {
            std::fs::rename(&from_dir, &to_dir)?;
        } else {
            std::fs::create_dir_all(&to_dir)?;
        }
        {
            let oc = self.owner(old)?;
            let mut c = lock(&oc);
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for e in &all {
                let to = format!("{new}{}", &e.name[old.len()..]);
                tx.execute("UPDATE mailbox SET name=?2 WHERE name=?1", params![e.name, to])?;
                tx.execute("UPDATE quota SET root=?2 WHERE root=?1", params![e.name, to])?;
            }
            tx.commit()?;
        }
        {
            let mut c = lock(&self.list);
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for e in &all {
                let to = format!("{new}{}", &e.name[old.len()..]);
                let uv = Self::next_uidvalidity(&tx)?;
                tx.execute(
                    "UPDATE mbox SET name=?2, uidvalidity=?3 WHERE name=?1",
                    params![e.name, to, uv as i64],
                )?;
                tx.execute("UPDATE specialuse SET name=?2 WHERE name=?1", params![e.name, to])?;
                tx.execute("UPDATE annot SET name=?2 WHERE name=?1", params![e.name, to])?;
                tx.execute("UPDATE aclid SET name=?2 WHERE name=?1", params![e.name, to])?;
            }
            tx.commit()?;
        }
        // A renamed mailbox gets a new UIDVALIDITY (RFC 3501 6.3.5 leaves
        // it open; Cyrus keeps UIDs but clients key caches by name).
        {
            let oc = self.owner(new)?;
            let c = lock(&oc);
            for e in &all {
                let to = format!("{new}{}", &e.name[old.len()..]);
                if let Some(le) = self.lookup(&to)? {
                    c.execute(
                        "UPDATE mailbox SET uidvalidity=?2 WHERE name=?1",
                        params![to, le.uidvalidity as i64],
                    )?;
                }
            }
        }
        self.notify(old);
        let mut ops = Vec::new();
        for e in &all {
            ops.push(DirOp::Delete { name: e.name.clone() });
            ops.push(DirOp::Activate {
                name: format!("{new}{}", &e.name[old.len()..]),
                partition: e.partition.clone(),
                acl: e.acl.clone(),
            });
        }
        self.push(&ops)
    }

    /// RFC 3501 6.3.5: renaming INBOX moves its messages (flags and
    /// dates kept) to a new mailbox; INBOX stays, empty, with its
    /// children.  Crash-safe in Cyrus's order: the copy is durable before
    /// INBOX is emptied, so a crash leaves the messages in one place or
    /// both, never none.
    pub fn rename_inbox(&self, inbox: &str, new: &str) -> Result<()> {
        let e = self.lookup(inbox)?.ok_or(StoreError::NotFound)?;
        if self.lookup(new)?.is_some() {
            return Err(StoreError::Exists);
        }
        self.create(new, Some(&e.partition), Some(&e.acl))?;
        let (_, rows) = self.index(inbox)?;
        let uids: Vec<u32> = rows.iter().map(|r| r.0).collect();
        for chunk in uids.chunks(1024) {
            self.copy(inbox, new, chunk, true)?;
            self.expunge_uids(inbox, chunk)?;
        }
        Ok(())
    }

    /// A rename into another owner's database: each mailbox of the
    /// subtree is created at its new name (for a whole user, ACL with the
    /// old owner's entry given to the new one), its messages copied (hard
    /// links, flags and dates kept, new UIDs under a new UIDVALIDITY),
    /// quota roots carried over, then the old subtree deleted.  A crash part-way leaves the
    /// messages in both places, never in neither.
    fn move_across(&self, old: &str, new: &str) -> Result<()> {
        let mut all: Vec<MailboxEntry> = self.list_prefix(old)?.into_iter().filter(|e| covers(old, &e.name)).collect();
        if all.is_empty() {
            return Err(StoreError::NotFound);
        }
        all.sort_by(|a, b| a.name.cmp(&b.name));
        let target = |n: &str| format!("{new}{}", &n[old.len()..]);
        for e in &all {
            if self.lookup(&target(&e.name))?.is_some() {
                return Err(StoreError::Exists);
            }
        }
        // Held against the destination's X-NUM-FOLDERS once, for the whole
        // subtree (the roots it carries over come along unchecked).
        self.check_folders(new, all.len() as i64, None)?;
        let ident = |n: &str| {
            let (u, d, is_user) = names::owner_of(n);
            is_user.then(|| if d.is_empty() { u } else { format!("{u}@{d}") }.replace('^', "."))
        };
        // The owner's entries follow only a whole user (their INBOX and
        // everything under it), as Cyrus's rename of a user; a folder
        // moved to another user keeps its ACL as it was.
        let whole_user = names::user_root(old).as_deref() == Some(old);
        let (from_id, to_id) = if whole_user { (ident(old), ident(new)) } else { (None, None) };
        for e in &all {
            let mut acl = e.acl.clone();
            if let (Some(f), Some(t)) = (&from_id, &to_id) {
                // The old owner's entry goes, the new owner's comes last
                // (Cyrus's order).
                let parts: Vec<&str> = acl.split('\t').collect();
                let (mut out, mut owner) = (String::new(), None);
                for pair in parts.chunks(2) {
                    if pair.len() == 2 {
                        if pair[0] == f {
                            owner = Some(pair[1]);
                        } else {
                            out.push_str(&format!("{}\t{}\t", pair[0], pair[1]));
                        }
                    }
                }
                if let Some(r) = owner {
                    out.push_str(&format!("{t}\t{r}\t"));
                }
                acl = out;
            }
            let to = target(&e.name);
            self.create_with(&to, Some(&e.partition), Some(&acl), false)?;
            if let Some(u) = self.special_use(&e.name)? {
                self.set_special_use(&to, &u)?;
            }
            if let Some(q) = self.quota_get(&e.name)? {
                self.quota_set_limits(&to, q.limits())?;
            }
            let (_, rows) = self.index(&e.name)?;
            let uids: Vec<u32> = rows.iter().map(|r| r.0).collect();
            for chunk in uids.chunks(1024) {
                self.copy(&e.name, &to, chunk, true)?;
            }
        }
        for e in all.iter().rev() {
            self.delete_now(&e.name)?;
        }
        Ok(())
    }
}
