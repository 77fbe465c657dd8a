//! Moving mailboxes between back ends (XFER): what the source reads out
//! and the target writes in, record by record with UIDs, modseqs, flags,
//! dates and files kept, and the switch-over lock.
//!
//! The target keeps an arriving mailbox with `mbtype` `m` (not yet
//! active: the MUPDATE master still names the source) until ACTIVATE;
//! a second XFER after an interrupted one replaces such a leftover.  The
//! source stays authoritative until the target has activated every
//! mailbox: its final pass runs under the owner database's write lock,
//! so no delivery, flag change or expunge can slip in between the last
//! records sent and the local delete.

use super::db::lock;
use super::ops::{covers, entry_from_row, state_of, sync_dir, ENTRY_COLS};
use super::{MailboxEntry, Record, Result, Store, StoreError, FLAG_EXPUNGED, FLAG_UNLINKED};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

/// The list entry of a mailbox being moved and what hangs on it.
#[derive(Debug, Clone, PartialEq)]
pub struct MailboxImage {
    pub entry: MailboxEntry,
    pub created: i64,
    pub specialuse: String,
    /// (entry, userid, value).
    pub annotations: Vec<(String, String, Vec<u8>)>,
}

/// One record arriving at the target; `body` is the message file (None:
/// keep the file there is, or none for an expunged record).
pub struct Incoming<'a> {
    pub rec: Record,
    pub body: Option<&'a [u8]>,
}

/// What `merge_records` found.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Merged {
    pub missing: Vec<u32>,
    pub reflagged: usize,
    pub removed: usize,
    pub stale: usize,
}

/// The mbtype of a mailbox that an XFER is still bringing in.
pub const ARRIVING: &str = "m";

impl Store {
    // ---- the source ----

    /// The mailboxes an XFER of `top` moves: `top` and its children,
    /// parents first.
    pub fn xfer_set(&self, top: &str) -> Result<Vec<MailboxEntry>> {
        let v: Vec<MailboxEntry> = self.list_prefix(top)?.into_iter().filter(|e| covers(top, &e.name)).collect();
        if v.is_empty() {
            return Err(StoreError::NotFound);
        }
        Ok(v)
    }

    pub fn export_mailbox(&self, name: &str) -> Result<MailboxImage> {
        let c = lock(&self.list);
        let (entry, created) = c
            .query_row(&format!("SELECT {ENTRY_COLS}, created FROM mbox WHERE name=?1"), [name], |r| {
                Ok((entry_from_row(r)?, r.get::<_, i64>(7)?))
            })
            .optional()?
            .ok_or(StoreError::NotFound)?;
        let specialuse: String = c
            .query_row("SELECT uses FROM specialuse WHERE name=?1", [name], |r| r.get(0))
            .optional()?
            .unwrap_or_default();
        let mut st = c.prepare("SELECT entry, userid, value FROM annot WHERE name=?1 ORDER BY entry, userid")?;
        let annotations = st
            .query_map([name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(MailboxImage {
            entry,
            created,
            specialuse,
            annotations,
        })
    }

    /// The `quota` line of `export_userdata` for a root's limits (STORAGE,
    /// MESSAGE, X-ANNOTATION-STORAGE, X-NUM-FOLDERS; -1: none).  The X-
    /// resources only where limited: the four-field line is what a
    /// target from before them takes.
    pub fn quota_userdata_line(root: &str, [sl, ml, al, fl]: [i64; 4]) -> String {
        if al < 0 && fl < 0 {
            format!("quota\t{root}\t{sl}\t{ml}\n")
        } else {
            format!("quota\t{root}\t{sl}\t{ml}\t{al}\t{fl}\n")
        }
    }

    /// What moves with the mailboxes under `top` besides them, as
    /// tab-separated lines: quota roots under it; for a whole user also
    /// subscriptions, seen state, POP3 logins and duplicate-delivery
    /// records.
    pub fn export_userdata(&self, top: &str, whole_user: bool) -> Result<String> {
        let oc = self.owner(top)?;
        let c = lock(&oc);
        let mut out = String::new();
        let clean = |s: &str| !s.contains(['\t', '\n', '\r']);
        let mut st = c.prepare("SELECT root, storage_limit, message_limit, annot_limit, folders_limit FROM quota ORDER BY root")?;
        for q in st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })? {
            let (root, sl, ml, al, fl) = q?;
            if covers(top, &root) && clean(&root) {
                out.push_str(&Self::quota_userdata_line(&root, [sl, ml, al, fl]));
            }
        }
        if whole_user {
            let mut st = c.prepare("SELECT name FROM sub ORDER BY name")?;
            for n in st.query_map([], |r| r.get::<_, String>(0))? {
                let n = n?;
                if clean(&n) {
                    out.push_str(&format!("sub\t{n}\n"));
                }
            }
            let mut st = c.prepare("SELECT uniqueid, t, recent, uids FROM seen ORDER BY uniqueid")?;
            for s in st.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })? {
                let (u, t, rc, uids) = s?;
                if clean(&u) && clean(&uids) {
                    out.push_str(&format!("seen\t{u}\t{t}\t{rc}\t{uids}\n"));
                }
            }
            let mut st = c.prepare("SELECT mailbox, last_login FROM pop ORDER BY mailbox")?;
            for p in st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
                let (m, t) = p?;
                if clean(&m) {
                    out.push_str(&format!("pop\t{m}\t{t}\n"));
                }
            }
            let mut st = c.prepare("SELECT msgid, rcpt, t FROM dup ORDER BY t")?;
            for d in st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))? {
                let (m, r, t) = d?;
                if clean(&m) && clean(&r) {
                    out.push_str(&format!("dup\t{t}\t{m}\t{r}\n"));
                }
            }
        }
        Ok(out)
    }

    /// Takes the write lock of `top`'s owner database on a connection of
    /// its own: every other writer (lmtpd's deliveries, other sessions)
    /// waits until `finish` or drop.
    pub fn xfer_lock(&self, top: &str) -> Result<XferLock> {
        let c = Connection::open(self.owner_db_path(top))?;
        super::db::stable_plans(&c)?;
        c.busy_timeout(std::time::Duration::from_secs(20))?;
        c.execute_batch("BEGIN IMMEDIATE")?;
        Ok(XferLock { c })
    }

    // ---- the target ----

    /// Creates an arriving mailbox (`partition` empty: the default one),
    /// replacing the leftover of an interrupted XFER; an active mailbox
    /// of that name is `Exists`.  The MUPDATE master is not told.
    /// Returns the partition used.
    pub fn import_mailbox(&self, img: &MailboxImage, partition: &str) -> Result<String> {
        if let Some(old) = self.lookup(&img.entry.name)? {
            if old.mbtype != ARRIVING {
                return Err(StoreError::Exists);
            }
            self.delete_local(&img.entry.name)?;
        }
        let part = if partition.is_empty() {
            self.cfg.defaultpartition.clone()
        } else {
            partition.to_string()
        };
        let dir = self.mailbox_dir(&img.entry.name, &part)?;
        let name = &img.entry.name;
        {
            let oc = self.owner(name)?;
            let mut c = lock(&oc);
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // A record of the same name left by an older failure goes.
            if let Some(s) = state_of(&tx, name)? {
                tx.execute("DELETE FROM msg WHERE mailbox=?1", [s.id])?;
                tx.execute("DELETE FROM msgannot WHERE mailbox=?1", [s.id])?;
                tx.execute("DELETE FROM mailbox WHERE id=?1", [s.id])?;
            }
            tx.execute(
                "INSERT INTO mailbox(name, uniqueid, partition, uidvalidity, uidnext, highestmodseq) VALUES(?1, ?2, ?3, ?4, 1, 1)",
                params![name, img.entry.uniqueid, part, img.entry.uidvalidity as i64],
            )?;
            tx.commit()?;
        }
        {
            let mut c = lock(&self.list);
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO mbox(name, uniqueid, partition, acl, mbtype, server, uidvalidity, created) VALUES(?1, ?2, ?3, ?4, ?5, '', ?6, ?7)",
                params![name, img.entry.uniqueid, part, img.entry.acl, ARRIVING, img.entry.uidvalidity as i64, img.created],
            )?;
            super::db::index_acl(&tx, name, &img.entry.acl)?;
            if !img.specialuse.is_empty() {
                tx.execute(
                    "INSERT OR REPLACE INTO specialuse(name, uses) VALUES(?1, ?2)",
                    params![name, img.specialuse],
                )?;
            }
            for (entry, userid, value) in &img.annotations {
                tx.execute(
                    "INSERT OR REPLACE INTO annot(name, entry, userid, value) VALUES(?1, ?2, ?3, ?4)",
                    params![name, entry, userid, value],
                )?;
            }
            tx.commit()?;
        }
        std::fs::create_dir_all(&dir)?;
        Ok(part)
    }

    /// Writes records of an arriving mailbox, files first (fsynced, then
    /// the directory), then the records in one transaction.
    pub fn import_records(&self, name: &str, recs: &[Incoming<'_>]) -> Result<()> {
        let e = self.arriving(name)?;
        let dir = self.mailbox_dir(name, &e.partition)?;
        let bodies: Vec<&[u8]> = recs.iter().filter_map(|r| r.body).collect();
        let mut files = self.stage_many(&e.partition, &bodies)?.into_iter();
        let mut staged = Vec::with_capacity(recs.len());
        for r in recs {
            match (r.body, r.body.and_then(|_| files.next())) {
                (Some(_), Some(s)) => {
                    self.link_into(&s, &dir, r.rec.uid)?;
                    staged.push(Some(s));
                }
                _ => staged.push(None),
            }
        }
        sync_dir(&dir)?;
        let oc = self.owner(name)?;
        let mut c = lock(&oc);
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let s = state_of(&tx, name)?.ok_or(StoreError::NotFound)?;
        let (mut uidnext, mut hms) = (s.uidnext, s.highestmodseq);
        for (r, st) in recs.iter().zip(&staged) {
            let x = &r.rec;
            let insert = |size: u64, header_size: u64, guid: &[u8]| {
                tx.execute(
                    "INSERT OR REPLACE INTO msg(mailbox, uid, modseq, flags, keywords, internaldate, tz, savedate, size, header_size, guid, createdmodseq)
                     VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                    params![
                        s.id,
                        x.uid as i64,
                        x.modseq as i64,
                        x.flags as i64,
                        x.keywords,
                        x.internaldate,
                        x.tz,
                        x.savedate,
                        size as i64,
                        header_size as i64,
                        guid,
                        x.createdmodseq as i64
                    ],
                )
            };
            match st {
                Some(f) => {
                    insert(f.size, f.header_size, &f.guid)?;
                }
                None => {
                    let n = tx.execute(
                        "UPDATE msg SET modseq=?3, flags=?4, keywords=?5, savedate=?6 WHERE mailbox=?1 AND uid=?2",
                        params![s.id, x.uid as i64, x.modseq as i64, x.flags as i64, x.keywords, x.savedate],
                    )?;
                    if n == 0 {
                        // A record the target never had the file of can
                        // only be a tombstone.
                        if x.flags & FLAG_EXPUNGED == 0 {
                            return Err(StoreError::Invalid("record without its message"));
                        }
                        insert(x.size, 0, &[])?;
                    }
                }
            }
            uidnext = uidnext.max(x.uid.saturating_add(1));
            hms = hms.max(x.modseq);
        }
        tx.execute(
            "UPDATE mailbox SET uidnext=?2, highestmodseq=?3 WHERE id=?1",
            params![s.id, uidnext as i64, hms as i64],
        )?;
        tx.commit()?;
        drop(c);
        // Files of records whose message is gone at the source go here too.
        for r in recs {
            if r.rec.flags & FLAG_UNLINKED != 0 {
                let _ = std::fs::remove_file(dir.join(format!("{}.", r.rec.uid)));
            }
        }
        Ok(())
    }

    /// An arriving mailbox's MODSEQ at creation, as a Cyrus source has it.
    pub fn import_createdmodseq(&self, name: &str, createdmodseq: u64) -> Result<()> {
        self.arriving(name)?;
        let oc = self.owner(name)?;
        let c = lock(&oc);
        c.execute(
            "UPDATE mailbox SET createdmodseq=?2 WHERE name=?1",
            params![name, createdmodseq as i64],
        )?;
        Ok(())
    }

    /// Sets an arriving mailbox's counters as the source has them; its
    /// message count and size are recounted from the records.
    pub fn import_state(&self, name: &str, uidnext: u32, highestmodseq: u64, recentuid: u32, keywords: &str) -> Result<()> {
        self.arriving(name)?;
        let oc = self.owner(name)?;
        let c = lock(&oc);
        let n = c.execute(
            "UPDATE mailbox SET uidnext=max(uidnext, ?2), highestmodseq=max(highestmodseq, ?3), recentuid=?4, keywords=?5,
               exists_=(SELECT count(*) FROM msg WHERE msg.mailbox=mailbox.id AND flags & ?6 = 0),
               size=(SELECT coalesce(sum(size), 0) FROM msg WHERE msg.mailbox=mailbox.id AND flags & ?6 = 0)
             WHERE name=?1",
            params![
                name,
                uidnext as i64,
                highestmodseq as i64,
                recentuid as i64,
                keywords,
                FLAG_EXPUNGED as i64
            ],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Applies `export_userdata` lines for the owner of `top`; answers
    /// how many subscriptions were new.  Applying the same lines twice
    /// changes nothing (a restarted migration sends them again).
    pub fn import_userdata(&self, top: &str, data: &str) -> Result<usize> {
        let mut quotas = Vec::new();
        let mut subscribed = 0;
        {
            let oc = self.owner(top)?;
            let mut c = lock(&oc);
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for line in data.lines().filter(|l| !l.is_empty()) {
                let f: Vec<&str> = line.split('\t').collect();
                let num = |i: usize| f.get(i).and_then(|v| v.parse::<i64>().ok()).ok_or(StoreError::Invalid("user data"));
                match (f[0], f.len()) {
                    ("quota", 4) => quotas.push((f[1].to_string(), [num(2)?, num(3)?, -1, -1])),
                    ("quota", 6) => quotas.push((f[1].to_string(), [num(2)?, num(3)?, num(4)?, num(5)?])),
                    ("sub", 2) => {
                        subscribed += tx.execute("INSERT OR IGNORE INTO sub(name) VALUES(?1)", [f[1]])?;
                    }
                    ("seen", 5) => {
                        tx.execute(
                            "INSERT OR REPLACE INTO seen(uniqueid, uids, t, recent) VALUES(?1, ?2, ?3, ?4)",
                            params![f[1], f[4], num(2)?, num(3)?],
                        )?;
                    }
                    ("pop", 3) => {
                        tx.execute(
                            "INSERT OR REPLACE INTO pop(mailbox, last_login) VALUES(?1, ?2)",
                            params![f[1], num(2)?],
                        )?;
                    }
                    ("dup", 4) => {
                        tx.execute(
                            "INSERT OR REPLACE INTO dup(msgid, rcpt, t) VALUES(?1, ?2, ?3)",
                            params![f[2], f[3], num(1)?],
                        )?;
                    }
                    _ => return Err(StoreError::Invalid("user data")),
                }
            }
            tx.commit()?;
        }
        for (root, [sl, ml, al, fl]) in quotas {
            let lim = |v: i64| (v >= 0).then_some(v);
            let l = super::QuotaLimits {
                storage: lim(sl),
                message: lim(ml),
                annot: lim(al),
                folders: lim(fl),
            };
            if !l.is_empty() {
                self.quota_set_limits(&root, l)?;
            }
        }
        Ok(subscribed)
    }

    /// Makes an arriving mailbox active and tells the MUPDATE master it
    /// is here now; if the master cannot be told it stays arriving.
    pub fn activate_import(&self, name: &str) -> Result<MailboxEntry> {
        let mut e = self.arriving(name)?;
        {
            let c = lock(&self.list);
            c.execute("UPDATE mbox SET mbtype='e' WHERE name=?1", [name])?;
        }
        let op = super::murder::DirOp::Activate {
            name: name.to_string(),
            partition: e.partition.clone(),
            acl: e.acl.clone(),
        };
        if let Err(err) = self.push(&[op]) {
            let c = lock(&self.list);
            c.execute("UPDATE mbox SET mbtype=?2 WHERE name=?1", params![name, ARRIVING])?;
            return Err(err);
        }
        self.notify(name);
        e.mbtype = "e".into();
        Ok(e)
    }

    // ---- a migration's later passes (mumail-migrate -C) ----

    /// Brings an active mailbox in line with a source's live records with
    /// UIDs in `[lo, hi)`, given as (uid, flags, keywords, internal
    /// date): live records here in that range that the source lacks are
    /// expunged, flags and keywords that differ are set.  Returns the UIDs the source has and
    /// this mailbox lacks at or above its UIDNEXT (to be added under
    /// those UIDs), how many were reflagged and removed, and how many the
    /// source has below UIDNEXT that are gone here (cannot come back).
    /// A record here whose internal date differs from the source's under
    /// the same UID is another message (added here meanwhile): refused
    /// before anything changes.
    pub fn merge_records(&self, name: &str, uidvalidity: u32, lo: u32, hi: u32, src: &[(u32, u32, String, i64)]) -> Result<Merged> {
        let e = self.lookup(name)?.ok_or(StoreError::NotFound)?;
        if e.mbtype == ARRIVING {
            return Err(StoreError::Invalid("mailbox still arriving"));
        }
        let st = self.state(name)?;
        if st.uidvalidity != uidvalidity {
            return Err(StoreError::Invalid("UIDVALIDITY differs"));
        }
        if lo == hi && src.is_empty() {
            // An empty range [n, n): the source's UIDNEXT is n, sent after
            // its new messages arrived; UIDs below it stay unused here.
            if hi > st.uidnext {
                let oc = self.owner(name)?;
                lock(&oc).execute(
                    "UPDATE mailbox SET uidnext=max(uidnext, ?2) WHERE name=?1",
                    params![name, hi as i64],
                )?;
                self.notify(name);
            }
            return Ok(Merged::default());
        }
        let here: std::collections::BTreeMap<u32, (u32, String, i64)> = self
            .records(name)?
            .into_iter()
            .filter(|r| r.uid >= lo && r.uid < hi)
            .map(|r| (r.uid, (r.flags, r.keywords, r.internaldate)))
            .collect();
        if src.iter().any(|(u, _, _, date)| here.get(u).is_some_and(|(_, _, d)| d != date)) {
            return Err(StoreError::Invalid("another message has this UID here"));
        }
        let theirs: std::collections::BTreeSet<u32> = src.iter().map(|r| r.0).collect();
        let gone: Vec<u32> = here.keys().copied().filter(|u| !theirs.contains(u)).collect();
        let mut out = Merged::default();
        if !gone.is_empty() {
            out.removed = self.expunge_uids(name, &gone)?.len();
        }
        let norm = |k: &str| {
            let mut v: Vec<String> = k.split(' ').filter(|x| !x.is_empty()).map(str::to_ascii_lowercase).collect();
            v.sort();
            v
        };
        for (uid, flags, kw, _) in src {
            match here.get(uid) {
                Some((f, k, _)) => {
                    if *f != *flags || norm(k) != norm(kw) {
                        let kws: Vec<String> = kw.split(' ').filter(|x| !x.is_empty()).map(String::from).collect();
                        self.store_flags(name, &[*uid], super::FlagOp::Replace, *flags, &kws, None)?;
                        out.reflagged += 1;
                    }
                }
                None if *uid >= st.uidnext => out.missing.push(*uid),
                None => out.stale += 1,
            }
        }
        Ok(out)
    }

    pub(super) fn arriving(&self, name: &str) -> Result<MailboxEntry> {
        match self.lookup(name)? {
            Some(e) if e.mbtype == ARRIVING => Ok(e),
            Some(_) => Err(StoreError::Exists),
            None => Err(StoreError::NotFound),
        }
    }

    /// Removes a mailbox's list entry, special use, annotations and
    /// files (its records are gone already).
    pub(super) fn drop_listed(&self, name: &str, dir: &std::path::Path) -> Result<()> {
        self.unlist(name)?;
        self.remove_files(name, dir);
        Ok(())
    }

    /// A mailbox's list entry, special-use and annotations go.
    fn unlist(&self, name: &str) -> Result<()> {
        let c = lock(&self.list);
        let tx = c.unchecked_transaction()?;
        for table in ["mbox", "aclid", "specialuse", "annot"] {
            tx.execute(&format!("DELETE FROM {table} WHERE name=?1"), [name])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// A dropped mailbox's message files and directory (the records
    /// naming them are gone).
    fn remove_files(&self, name: &str, dir: &std::path::Path) {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for f in rd.flatten() {
                let n = f.file_name();
                let n = n.to_string_lossy();
                if n.ends_with('.') && n[..n.len() - 1].bytes().all(|b| b.is_ascii_digit()) {
                    let _ = std::fs::remove_file(f.path());
                }
            }
        }
        let _ = std::fs::remove_dir(dir);
        self.notify(name);
    }
}

/// The source's owner database, write-locked for an XFER's final pass.
/// Dropped without `finish`, the lock goes and nothing changes.
pub struct XferLock {
    c: Connection,
}

impl XferLock {
    /// The switch is done: removes the moved mailboxes' records (and,
    /// for a whole user, their subscriptions, seen state, POP3 logins and
    /// duplicate records) in the locked transaction, their list entries
    /// before that transaction commits, then their files.  A delivery
    /// that waited on the lock then finds no mailbox (lmtpd answers 4xx,
    /// the proxy sends it to the target); one that looked the mailbox up
    /// before it was unlisted and committed after is refused by
    /// `deliver_grouped`'s check that the mailbox is still listed.
    pub fn finish(self, store: &Store, moved: &[MailboxEntry], top: &str, whole_user: bool) -> Result<()> {
        let c = self.c;
        for e in moved {
            if let Some(s) = state_of(&c, &e.name)? {
                c.execute("DELETE FROM msg WHERE mailbox=?1", [s.id])?;
                c.execute("DELETE FROM msgannot WHERE mailbox=?1", [s.id])?;
                c.execute("DELETE FROM mailbox WHERE id=?1", [s.id])?;
            }
        }
        let roots: Vec<String> = {
            let mut st = c.prepare("SELECT root FROM quota")?;
            let v = st.query_map([], |r| r.get::<_, String>(0))?.collect::<rusqlite::Result<Vec<_>>>()?;
            v
        };
        for r in roots.iter().filter(|r| covers(top, r)) {
            c.execute("DELETE FROM quota WHERE root=?1", [r])?;
        }
        if whole_user {
            c.execute_batch("DELETE FROM sub; DELETE FROM seen; DELETE FROM pop; DELETE FROM dup;")?;
        }
        // Unlisted before the commit: no delivery can look the mailbox
        // up (and so recreate its record) once its records are gone.
        for e in moved.iter().rev() {
            store.unlist(&e.name)?;
        }
        c.execute_batch("COMMIT")?;
        for e in moved.iter().rev() {
            let dir = store.mailbox_dir(&e.name, &e.partition)?;
            store.remove_files(&e.name, &dir);
        }
        Ok(())
    }
}
