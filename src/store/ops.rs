//! Store operations: mailboxes (create, delete, rename, list), messages
//! (stage, append/deliver, flags, expunge, copy/move), quota,
//! subscriptions.  Every change is one transaction; message files are
//! durable before the record that names them is committed.

use super::db::lock;
use super::names;
use super::{ExpungeMode, Result, Store, StoreError, FLAG_DELETED, FLAG_EXPUNGED, FLAG_SEEN, FLAG_UNLINKED};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

/// Rights the owner gets on a new personal mailbox (Cyrus 3.x default).
pub const OWNER_RIGHTS: &str = "lrswipkxtecdan";

#[derive(Debug, Clone, PartialEq)]
pub struct MailboxEntry {
    pub name: String,
    pub uniqueid: String,
    pub partition: String,
    /// Cyrus internal form: `id\trights\t` pairs.
    pub acl: String,
    pub mbtype: String,
    pub server: String,
    pub uidvalidity: u32,
}

#[derive(Debug, Clone, Default)]
pub struct MailboxState {
    pub id: i64,
    pub name: String,
    pub uniqueid: String,
    pub partition: String,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highestmodseq: u64,
    /// The MODSEQ the mailbox was made with (X-CREATEDMODSEQ).
    pub createdmodseq: u64,
    pub recentuid: u32,
    pub exists: u32,
    pub size: u64,
    /// Keywords ever defined in the mailbox, in definition order (Cyrus's
    /// user flags): the FLAGS response.
    pub keywords: Vec<String>,
}

/// One index record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub uid: u32,
    pub modseq: u64,
    /// System flag bits (`FLAG_*`), `FLAG_EXPUNGED` on tombstones.
    pub flags: u32,
    /// Keywords, space-separated, as first given.
    pub keywords: String,
    pub internaldate: i64,
    /// Zone offset of the internal date in minutes east of UTC.
    pub tz: i32,
    pub savedate: i64,
    pub size: u64,
    pub header_size: u64,
    pub guid: Vec<u8>,
    /// The MODSEQ the message was stored with (X-CREATEDMODSEQ); 0 when
    /// not known (stored by an older mumail).
    pub createdmodseq: u64,
}

impl Record {
    pub fn expunged(&self) -> bool {
        self.flags & FLAG_EXPUNGED != 0
    }
    pub fn has_keyword(&self, k: &str) -> bool {
        self.keywords.split(' ').any(|x| x.eq_ignore_ascii_case(k))
    }
}

/// Parsed-once data the IMAP layer renders and the store keeps.
#[derive(Debug, Clone, Default)]
pub struct Cached {
    pub envelope: String,
    pub bodystructure: String,
    pub body: String,
}

/// A message written and fsynced under a partition's `stage.` directory.
#[derive(Debug)]
pub struct Staged {
    pub path: PathBuf,
    pub partition: String,
    pub size: u64,
    pub header_size: u64,
    pub guid: Vec<u8>,
}

/// From this many staged files, one syncfs(2) replaces a sync per file
/// (measured on ext4: 200 files of 4 KB in 12 ms instead of 80 ms).
const SYNCFS_FROM: usize = 16;

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

pub struct NewMessage<'a> {
    pub staged: &'a Staged,
    pub flags: u32,
    pub keywords: String,
    pub internaldate: i64,
    pub tz: i32,
    pub cached: &'a Cached,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FlagOp {
    Add,
    Remove,
    Replace,
    /// Replace, but the bits in the mask keep their old values (a
    /// reader's STORE FLAGS leaves the owner's \Seen alone).
    ReplaceKeeping(u32),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Quota {
    pub root: String,
    /// KB; -1 = no limit.
    pub storage_limit: i64,
    pub message_limit: i64,
    /// Bytes.
    pub storage_used: i64,
    pub message_used: i64,
    /// X-ANNOTATION-STORAGE (KB) and X-NUM-FOLDERS limits; -1 = none.
    pub annot_limit: i64,
    pub folders_limit: i64,
    /// Bytes of annotation values (mailbox and message) and mailboxes
    /// under the root: counted when asked for (`Store::quota_roots`),
    /// only for a resource with a limit; 0 otherwise.
    pub annot_used: i64,
    pub folders_used: i64,
}

impl Quota {
    pub fn limits(&self) -> QuotaLimits {
        let lim = |v: i64| (v >= 0).then_some(v);
        QuotaLimits {
            storage: lim(self.storage_limit),
            message: lim(self.message_limit),
            annot: lim(self.annot_limit),
            folders: lim(self.folders_limit),
        }
    }
}

/// The limits of a quota root by resource (Cyrus's STORAGE in KB,
/// MESSAGE, X-ANNOTATION-STORAGE in KB, X-NUM-FOLDERS); None = no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaLimits {
    pub storage: Option<i64>,
    pub message: Option<i64>,
    pub annot: Option<i64>,
    pub folders: Option<i64>,
}

impl QuotaLimits {
    pub fn is_empty(&self) -> bool {
        *self == QuotaLimits::default()
    }
}

#[derive(Debug, PartialEq)]
pub enum Delivery {
    Delivered(u32),
    /// Suppressed as a duplicate (Message-ID already delivered here).
    Duplicate,
}

pub(super) fn now() -> i64 {
    crate::util::unix_now()
}

pub(super) fn new_uuid() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// fsync a directory so that an entry created in it survives a crash.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// `1:5,7,9:10` for sorted UIDs.
pub fn uid_ranges(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end + 1 {
            i += 1;
            end = uids[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

/// The inverse of `uid_ranges`; bad pieces are skipped, the result is
/// sorted and bounded by the ranges' own extent.
pub fn parse_uid_ranges(text: &str) -> Vec<u32> {
    let mut v = Vec::new();
    for part in text.split(',') {
        let (a, b) = part.split_once(':').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.trim().parse::<u32>(), b.trim().parse::<u32>()) {
            if a <= b && b - a < 10_000_000 {
                v.extend(a..=b);
            }
        }
    }
    v.sort_unstable();
    v.dedup();
    v
}

/// Quota roots cover a mailbox and its children.
pub(super) fn covers(root: &str, name: &str) -> bool {
    name == root || (name.len() > root.len() && name.starts_with(root) && name.as_bytes()[root.len()] == b'.')
}

pub(super) fn entry_from_row(r: &rusqlite::Row) -> rusqlite::Result<MailboxEntry> {
    Ok(MailboxEntry {
        name: r.get(0)?,
        uniqueid: r.get(1)?,
        partition: r.get(2)?,
        acl: r.get(3)?,
        mbtype: r.get(4)?,
        server: r.get(5)?,
        uidvalidity: r.get::<_, i64>(6)? as u32,
    })
}

pub(super) const ENTRY_COLS: &str = "name, uniqueid, partition, acl, mbtype, server, uidvalidity";
pub(super) const REC_COLS: &str = "uid, modseq, flags, keywords, internaldate, tz, savedate, size, header_size, guid, createdmodseq";

pub(super) fn record_from_row(r: &rusqlite::Row) -> rusqlite::Result<Record> {
    Ok(Record {
        uid: r.get::<_, i64>(0)? as u32,
        modseq: r.get::<_, i64>(1)? as u64,
        flags: r.get::<_, i64>(2)? as u32,
        keywords: r.get(3)?,
        internaldate: r.get(4)?,
        tz: r.get(5)?,
        savedate: r.get(6)?,
        size: r.get::<_, i64>(7)? as u64,
        header_size: r.get::<_, i64>(8)? as u64,
        guid: r.get(9)?,
        createdmodseq: r.get::<_, i64>(10)? as u64,
    })
}

/// ENVELOPE, BODYSTRUCTURE, BODY from columns `at`, `at+1`, `at+2`.
fn cached_from_row(r: &rusqlite::Row, at: usize) -> rusqlite::Result<Cached> {
    Ok(Cached {
        envelope: r.get::<_, Option<String>>(at)?.unwrap_or_default(),
        bodystructure: r.get::<_, Option<String>>(at + 1)?.unwrap_or_default(),
        body: r.get::<_, Option<String>>(at + 2)?.unwrap_or_default(),
    })
}

pub(super) fn state_of(c: &Connection, name: &str) -> Result<Option<MailboxState>> {
    Ok(c.prepare_cached(
        "SELECT id, name, uniqueid, partition, uidvalidity, uidnext, highestmodseq, recentuid, exists_, size, keywords, createdmodseq FROM mailbox WHERE name=?1",
    )?
    .query_row(
        [name],
        |r| {
            Ok(MailboxState {
                id: r.get(0)?,
                name: r.get(1)?,
                uniqueid: r.get(2)?,
                partition: r.get(3)?,
                uidvalidity: r.get::<_, i64>(4)? as u32,
                uidnext: r.get::<_, i64>(5)? as u32,
                highestmodseq: r.get::<_, i64>(6)? as u64,
                recentuid: r.get::<_, i64>(7)? as u32,
                exists: r.get::<_, i64>(8)? as u32,
                size: r.get::<_, i64>(9)? as u64,
                keywords: r.get::<_, String>(10)?.split(' ').filter(|k| !k.is_empty()).map(str::to_string).collect(),
                createdmodseq: r.get::<_, i64>(11)? as u64,
            })
        },
    )
    .optional()?)
}

/// Adds keywords not yet defined in the mailbox to its list.
fn define_keywords<'a>(c: &Connection, s: &MailboxState, kws: impl Iterator<Item = &'a str>) -> Result<()> {
    let mut list = s.keywords.clone();
    let before = list.len();
    for k in kws.filter(|k| !k.is_empty()) {
        if !list.iter().any(|x| x.eq_ignore_ascii_case(k)) {
            list.push(k.to_string());
        }
    }
    if list.len() != before {
        c.execute("UPDATE mailbox SET keywords=?2 WHERE id=?1", params![s.id, list.join(" ")])?;
    }
    Ok(())
}

/// Adds `bytes`/`count` to every quota root covering `name`; refuses when
/// a limit would be passed (unless `ignore`).
/// How a delivery is held against quota roots (Cyrus's quota_check with
/// the message's size, with 0, or not at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaCheck {
    /// The new usage must fit (IMAP APPEND/COPY, `lmtp_strict_quota`).
    Strict,
    /// Refused only when the root is already over its limit (lmtpd's
    /// default: a message may take a user over quota once).
    NotAlreadyOver,
    /// Not checked (IGNOREQUOTA, moves).
    Ignore,
}

pub(super) fn charge_quota(c: &Connection, name: &str, bytes: i64, count: i64, ignore: bool) -> Result<()> {
    charge_quota_as(c, name, bytes, count, if ignore { QuotaCheck::Ignore } else { QuotaCheck::Strict })
}

pub(super) fn charge_quota_as(c: &Connection, name: &str, bytes: i64, count: i64, mode: QuotaCheck) -> Result<()> {
    let mut st = c.prepare_cached("SELECT root, storage_limit, message_limit, storage_used, message_used FROM quota")?;
    let roots: Vec<(String, i64, i64, i64, i64)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (root, sl, ml, su, mu) in roots {
        if !covers(&root, name) {
            continue;
        }
        if bytes > 0 || count > 0 {
            let (db, dc) = match mode {
                QuotaCheck::Strict => (bytes, count),
                QuotaCheck::NotAlreadyOver => (0, 0),
                QuotaCheck::Ignore => (i64::MIN, i64::MIN),
            };
            if mode != QuotaCheck::Ignore && sl >= 0 && su + db > sl * 1024 {
                return Err(StoreError::OverQuota);
            }
            if mode != QuotaCheck::Ignore && ml >= 0 && mu + dc > ml {
                return Err(StoreError::OverQuota);
            }
        }
        c.prepare_cached("UPDATE quota SET storage_used=max(0, storage_used+?2), message_used=max(0, message_used+?3) WHERE root=?1")?
            .execute(params![root, bytes, count])?;
    }
    Ok(())
}

/// A mailbox's live records (no tombstones), in UID order.
fn live_records(c: &Connection, mbox_id: i64) -> Result<Vec<Record>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {REC_COLS} FROM msg WHERE mailbox=?1 AND flags & ?2 = 0 ORDER BY uid"
    ))?;
    let v = st
        .query_map(params![mbox_id, FLAG_EXPUNGED as i64], record_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(v)
}

/// The file of message `uid` in a mailbox's spool directory (`<uid>.`,
/// as Cyrus names it).
pub fn message_file(dir: &Path, uid: u32) -> PathBuf {
    dir.join(format!("{uid}."))
}

impl Store {
    fn partition_root(&self, partition: &str) -> Result<&Path> {
        self.cfg
            .partition_root(partition)
            .ok_or_else(|| StoreError::NoPartition(partition.to_string()))
    }

    /// The spool directory of a mailbox.
    pub fn mailbox_dir(&self, name: &str, partition: &str) -> Result<PathBuf> {
        Ok(names::spool_dir(
            self.partition_root(partition)?,
            name,
            self.cfg.hashimapspool,
            self.cfg.fulldirhash,
        ))
    }

    /// The file of one message (`<uid>.`).
    pub fn message_path(&self, name: &str, partition: &str, uid: u32) -> Result<PathBuf> {
        Ok(message_file(&self.mailbox_dir(name, partition)?, uid))
    }

    // ---- the mailbox list ----

    pub fn lookup(&self, name: &str) -> Result<Option<MailboxEntry>> {
        let c = lock(&self.list);
        let mut st = c.prepare_cached(&format!("SELECT {ENTRY_COLS} FROM mbox WHERE name=?1"))?;
        Ok(st.query_row([name], entry_from_row).optional()?)
    }

    // ---- messages ----

    /// Writes `data` to the partition's `stage.` directory and fsyncs it.
    pub fn stage(&self, partition: &str, data: &[u8]) -> Result<Staged> {
        self.stage_hashed(partition, data, None)
    }

    /// `stage` with the message's SHA-1 when already taken (lmtpd hashes a
    /// message as it arrives).
    pub fn stage_hashed(&self, partition: &str, data: &[u8], guid: Option<[u8; 20]>) -> Result<Staged> {
        let (f, st) = self.stage_unsynced(partition, data, guid)?;
        f.sync_all()?;
        Ok(st)
    }

    /// Stages several messages (a MULTIAPPEND, a batch of an XFER or a
    /// migration) with one wait for the disk instead of one per message:
    /// from `SYNCFS_FROM` files on, one syncfs(2) of the partition's file
    /// system (all its dirty data and metadata written and waited for, so
    /// at least what a sync per file gives) instead of a journal commit
    /// per file; a file system that refuses syncfs gets a sync per file.
    pub fn stage_many(&self, partition: &str, datas: &[&[u8]]) -> Result<Vec<Staged>> {
        let mut files = Vec::with_capacity(datas.len());
        let mut out = Vec::with_capacity(datas.len());
        for d in datas {
            let (f, st) = self.stage_unsynced(partition, d, None)?;
            files.push(f);
            out.push(st);
        }
        if files.len() >= SYNCFS_FROM {
            use std::os::fd::AsRawFd;
            // SAFETY: a valid open descriptor.
            if unsafe { libc::syncfs(files[0].as_raw_fd()) } == 0 {
                return Ok(out);
            }
        }
        for f in &files {
            f.sync_data()?;
        }
        Ok(out)
    }

    fn stage_unsynced(&self, partition: &str, data: &[u8], guid: Option<[u8; 20]>) -> Result<(std::fs::File, Staged)> {
        let root = self.partition_root(partition)?;
        let dir = root.join("stage.");
        let n = self.stage_seq.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{}-{}-{n}", std::process::id(), now()));
        let create = || std::fs::OpenOptions::new().write(true).create_new(true).open(&path);
        // The directory is made only when missing, not tried per message.
        let mut f = match create() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&dir)?;
                create()?
            }
            r => r?,
        };
        let (he, _) = crate::mail::mime::header_end(data);
        debug_assert!(guid.is_none_or(|g| g == crate::util::sha1(data)), "a GUID given for other bytes");
        let guid = guid.unwrap_or_else(|| crate::util::sha1(data)).to_vec();
        // From here the file is removed again if anything fails.
        let st = Staged {
            path,
            partition: partition.to_string(),
            size: data.len() as u64,
            header_size: he as u64,
            guid,
        };
        f.write_all(data)?;
        Ok((f, st))
    }

    /// Links a staged file as `<uid>.` (replacing an uncommitted leftover).
    pub(super) fn link_into(&self, staged: &Staged, dir: &Path, uid: u32) -> Result<()> {
        let target = message_file(dir, uid);
        match std::fs::hard_link(&staged.path, &target) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                std::fs::remove_file(&target)?;
                std::fs::hard_link(&staged.path, &target)?;
                Ok(())
            }
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                // Stage on another file system: copy.
                let tmp = dir.join(format!("{uid}.tmp"));
                std::fs::copy(&staged.path, &tmp)?;
                std::fs::File::open(&tmp)?.sync_all()?;
                std::fs::rename(&tmp, &target)?;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    pub(super) fn insert_record(tx: &Connection, mbox: i64, uid: u32, modseq: u64, m: &NewMessage<'_>) -> Result<()> {
        let st = m.staged;
        let row = Row {
            flags: m.flags & !FLAG_EXPUNGED,
            keywords: &m.keywords,
            internaldate: m.internaldate,
            tz: m.tz,
            size: st.size,
            header_size: st.header_size,
            guid: &st.guid,
            createdmodseq: None,
        };
        insert_row(tx, mbox, uid, modseq, &row, m.cached)
    }

    /// Appends messages atomically (MULTIAPPEND: all or none).  Returns
    /// (uidvalidity, uids).
    pub fn append(&self, name: &str, msgs: &[NewMessage<'_>], ignore_quota: bool) -> Result<(u32, Vec<u32>)> {
        let mode = if ignore_quota { QuotaCheck::Ignore } else { QuotaCheck::Strict };
        self.append_inner(name, msgs, mode, None, None).map(|(v, u, _)| (v, u))
    }

    /// Appends messages under the UIDs given (ascending, none below the
    /// mailbox's UIDNEXT), for a migration that keeps the source's UIDs;
    /// quota is counted, not enforced.
    pub fn append_at(&self, name: &str, uids: &[u32], msgs: &[NewMessage<'_>]) -> Result<()> {
        if uids.len() != msgs.len() {
            return Err(StoreError::Invalid("one UID per message"));
        }
        self.append_inner(name, msgs, QuotaCheck::Ignore, None, Some(uids)).map(|_| ())
    }

    /// Delivers one message (LMTP), suppressing a duplicate of
    /// (Message-ID, recipient) when `dup` is given.
    pub fn deliver(&self, name: &str, msg: &NewMessage<'_>, quota: QuotaCheck, dup: Option<(&str, &str)>) -> Result<Delivery> {
        let (_, uids, dupe) = self.append_inner(name, std::slice::from_ref(msg), quota, dup, None)?;
        if dupe {
            return Ok(Delivery::Duplicate);
        }
        Ok(Delivery::Delivered(uids.first().copied().unwrap_or(0)))
    }

    fn append_inner(
        &self,
        name: &str,
        msgs: &[NewMessage<'_>],
        quota: QuotaCheck,
        dup: Option<(&str, &str)>,
        at: Option<&[u32]>,
    ) -> Result<(u32, Vec<u32>, bool)> {
        let e = self.lookup(name)?.ok_or(StoreError::NotFound)?;
        self.ensure_state(&e)?;
        let dir = self.mailbox_dir(name, &e.partition)?;
        let oc = self.owner(name)?;
        let mut c = lock(&oc);
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let s = state_of(&tx, name)?.ok_or(StoreError::NotFound)?;
        if let Some((msgid, rcpt)) = dup {
            let seen: bool = tx
                .query_row("SELECT 1 FROM dup WHERE msgid=?1 AND rcpt=?2", params![msgid, rcpt], |_| Ok(true))
                .optional()?
                .is_some();
            if seen {
                return Ok((s.uidvalidity, Vec::new(), true));
            }
            tx.execute("INSERT INTO dup(msgid, rcpt, t) VALUES(?1, ?2, ?3)", params![msgid, rcpt, now()])?;
        }
        let bytes: i64 = msgs.iter().map(|m| m.staged.size as i64).sum();
        charge_quota_as(&tx, name, bytes, msgs.len() as i64, quota)?;
        std::fs::create_dir_all(&dir)?;
        let mut uids = Vec::with_capacity(msgs.len());
        let mut next = s.uidnext;
        let modseq = s.highestmodseq + 1;
        define_keywords(&tx, &s, msgs.iter().flat_map(|m| m.keywords.split(' ')))?;
        for (i, m) in msgs.iter().enumerate() {
            if m.staged.partition != e.partition {
                return Err(StoreError::Invalid("staged on another partition"));
            }
            let uid = match at.and_then(|a| a.get(i)) {
                Some(&u) if u < next => return Err(StoreError::Invalid("UID below UIDNEXT")),
                Some(&u) => u,
                None => next,
            };
            self.link_into(m.staged, &dir, uid)?;
            Self::insert_record(&tx, s.id, uid, modseq, m)?;
            uids.push(uid);
            next = uid.saturating_add(1);
        }
        commit_added(tx, &dir, s.id, next, modseq, msgs.len(), bytes)?;
        drop(c);
        self.notify(name);
        Ok((s.uidvalidity, uids, false))
    }

    /// Live records (no tombstones), in UID order.
    pub fn records(&self, name: &str) -> Result<Vec<Record>> {
        let s = self.state(name)?;
        self.read(name, |c| live_records(c, s.id))
    }

    /// Live records of some UIDs (sorted input), in UID order.
    pub fn records_for(&self, name: &str, uids: &[u32]) -> Result<Vec<Record>> {
        let s = self.state(name)?;
        let (lo, hi) = match (uids.first(), uids.last()) {
            (Some(a), Some(b)) => (*a.min(b), *a.max(b)),
            _ => return Ok(Vec::new()),
        };
        let mut want: Vec<u32> = uids.to_vec();
        want.sort_unstable();
        self.read(name, |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {REC_COLS} FROM msg WHERE mailbox=?1 AND uid BETWEEN ?2 AND ?3 AND flags & ?4 = 0 ORDER BY uid"
            ))?;
            let v = st
                .query_map(params![s.id, lo as i64, hi as i64, FLAG_EXPUNGED as i64], record_from_row)?
                .filter_map(|r| r.ok())
                .filter(|r| want.binary_search(&r.uid).is_ok())
                .collect();
            Ok(v)
        })
    }

    /// What SELECT needs of every live message, UID order: (uid, flags,
    /// keywords, modseq), with the state from the same snapshot.
    pub fn index(&self, name: &str) -> Result<(MailboxState, Vec<(u32, u32, String, u64)>)> {
        let e = self.lookup(name)?.ok_or(StoreError::NotFound)?;
        self.ensure_state(&e)?;
        self.read(name, |c| {
            let tx = c.transaction()?;
            let s = state_of(&tx, name)?.ok_or(StoreError::NotFound)?;
            let v = {
                let mut st =
                    tx.prepare_cached("SELECT uid, flags, keywords, modseq FROM msg WHERE mailbox=?1 AND flags & ?2 = 0 ORDER BY uid")?;
                let v = st
                    .query_map(params![s.id, FLAG_EXPUNGED as i64], |r| {
                        Ok((
                            r.get::<_, i64>(0)? as u32,
                            r.get::<_, i64>(1)? as u32,
                            r.get::<_, String>(2)?,
                            r.get::<_, i64>(3)? as u64,
                        ))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                v
            };
            tx.commit()?;
            Ok((s, v))
        })
    }

    /// Live records of some UIDs (sorted) with their cached items when
    /// `with_cache`: one range query, for FETCH.
    /// `cache` says which cached texts to read: bit 0 ENVELOPE, bit 1
    /// BODYSTRUCTURE, bit 2 BODY (0 = none, no Cached at all).
    pub fn fetch_rows(&self, name: &str, mbox_id: i64, uids: &[u32], cache: u8) -> Result<Vec<(Record, Option<Cached>)>> {
        self.read(name, |c| fetch_rows_in(c, mbox_id, uids, cache))
    }

    /// `fetch_rows` only if the owner's connection is open and free at
    /// once (None otherwise): cheap enough to run on an async worker for a
    /// small FETCH, never waiting behind another session's transaction or
    /// a database being opened.
    pub fn try_fetch_rows(&self, name: &str, mbox_id: i64, uids: &[u32], cache: u8) -> Option<Result<Vec<(Record, Option<Cached>)>>> {
        let oc = self.owner_cached(name)?;
        let c = oc.try_lock().ok()?;
        Some(fetch_rows_in(&c, mbox_id, uids, cache))
    }
}

fn fetch_rows_in(c: &Connection, mbox_id: i64, uids: &[u32], cache: u8) -> Result<Vec<(Record, Option<Cached>)>> {
    {
        let with_cache = cache != 0;
        let (lo, hi) = match (uids.first(), uids.last()) {
            (Some(a), Some(b)) => (*a.min(b), *a.max(b)),
            _ => return Ok(Vec::new()),
        };
        let cols = if with_cache {
            let col = |bit: u8, name: &'static str| if cache & bit != 0 { name } else { "''" };
            format!(", {}, {}, {}", col(1, "envelope"), col(2, "bodystructure"), col(4, "body"))
        } else {
            String::new()
        };
        let mut st = c.prepare_cached(&format!(
            "SELECT {REC_COLS}{cols} FROM msg WHERE mailbox=?1 AND uid BETWEEN ?2 AND ?3 AND flags & ?4 = 0 ORDER BY uid"
        ))?;
        let dense = (hi - lo) as usize + 1 == uids.len();
        let v = st
            .query_map(params![mbox_id, lo as i64, hi as i64, FLAG_EXPUNGED as i64], |r| {
                let rec = record_from_row(r)?;
                let cached = if with_cache { Some(cached_from_row(r, 11)?) } else { None };
                Ok((rec, cached))
            })?
            .filter_map(|r| r.ok())
            .filter(|(r, _)| dense || uids.binary_search(&r.uid).is_ok())
            .collect();
        Ok(v)
    }
}

impl Store {
    /// Records (tombstones included) changed after `modseq`, in UID order,
    /// with the mailbox state read in the same snapshot.
    pub fn changes_since(&self, name: &str, modseq: u64) -> Result<(MailboxState, Vec<Record>)> {
        let e = self.lookup(name)?.ok_or(StoreError::NotFound)?;
        self.ensure_state(&e)?;
        self.read(name, |c| {
            let tx = c.transaction()?;
            let s = state_of(&tx, name)?.ok_or(StoreError::NotFound)?;
            let v = {
                let mut st = tx.prepare_cached(&format!("SELECT {REC_COLS} FROM msg WHERE mailbox=?1 AND modseq > ?2 ORDER BY uid"))?;
                let v = st
                    .query_map(params![s.id, modseq as i64], record_from_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                v
            };
            tx.commit()?;
            Ok((s, v))
        })
    }

    /// The cached ENVELOPE/BODYSTRUCTURE/BODY of some UIDs.
    pub fn cached(&self, name: &str, mbox_id: i64, uids: &[u32]) -> Result<Vec<(u32, Cached)>> {
        self.read(name, |c| {
            let mut st = c.prepare_cached("SELECT envelope, bodystructure, body FROM msg WHERE mailbox=?1 AND uid=?2")?;
            let mut out = Vec::with_capacity(uids.len());
            for &u in uids {
                if let Some(x) = st.query_row(params![mbox_id, u as i64], |r| cached_from_row(r, 0)).optional()? {
                    out.push((u, x));
                }
            }
            Ok(out)
        })
    }

    /// Replaces the cached items of one message (after a cache upgrade).
    pub fn set_cached(&self, name: &str, mbox_id: i64, uid: u32, cached: &Cached) -> Result<()> {
        let oc = self.owner(name)?;
        let c = lock(&oc);
        c.execute(
            "UPDATE msg SET envelope=?3, bodystructure=?4, body=?5 WHERE mailbox=?1 AND uid=?2",
            params![mbox_id, uid as i64, cached.envelope, cached.bodystructure, cached.body],
        )?;
        Ok(())
    }

    /// One STORE's change, in one transaction: `before` runs first; then
    /// each live record of `uids` not modified after `unchangedsince`
    /// (CONDSTORE) goes to `change` with the new MODSEQ, which writes what
    /// it changes (the MODSEQ with it) and says whether it did.  Returns
    /// the changed records and the UIDs `unchangedsince` kept.
    pub(super) fn change_each(
        &self,
        name: &str,
        uids: &[u32],
        unchangedsince: Option<u64>,
        before: impl FnOnce(&Connection, &MailboxState) -> Result<()>,
        mut change: impl FnMut(&Connection, i64, &mut Record, u64) -> Result<bool>,
    ) -> Result<(Vec<Record>, Vec<u32>)> {
        let oc = self.owner(name)?;
        let mut c = lock(&oc);
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let s = state_of(&tx, name)?.ok_or(StoreError::NotFound)?;
        let modseq = s.highestmodseq + 1;
        let mut changed = Vec::new();
        let mut failed = Vec::new();
        before(&tx, &s)?;
        {
            let mut get = tx.prepare_cached(&format!("SELECT {REC_COLS} FROM msg WHERE mailbox=?1 AND uid=?2"))?;
            for &u in uids {
                let Some(mut r) = get.query_row(params![s.id, u as i64], record_from_row).optional()? else {
                    continue;
                };
                if r.expunged() {
                    continue;
                }
                if unchangedsince.is_some_and(|us| r.modseq > us) {
                    failed.push(u);
                    continue;
                }
                if change(&tx, s.id, &mut r, modseq)? {
                    r.modseq = modseq;
                    changed.push(r);
                }
            }
        }
        if !changed.is_empty() {
            tx.execute("UPDATE mailbox SET highestmodseq=?2 WHERE id=?1", params![s.id, modseq as i64])?;
        }
        tx.commit()?;
        drop(c);
        if !changed.is_empty() {
            self.notify(name);
        }
        Ok((changed, failed))
    }

    /// Changes flags on `uids`; returns the records that changed (new
    /// state and modseq).  `unchangedsince` (CONDSTORE) skips records
    /// modified after it and reports them in the second list.
    pub fn store_flags(
        &self,
        name: &str,
        uids: &[u32],
        op: FlagOp,
        flags: u32,
        keywords: &[String],
        unchangedsince: Option<u64>,
    ) -> Result<(Vec<Record>, Vec<u32>)> {
        let before = |tx: &Connection, s: &MailboxState| {
            if op != FlagOp::Remove {
                define_keywords(tx, s, keywords.iter().map(String::as_str))?;
            }
            Ok(())
        };
        self.change_each(name, uids, unchangedsince, before, |tx, id, r, modseq| {
            let mut kw: Vec<String> = r.keywords.split(' ').filter(|k| !k.is_empty()).map(str::to_string).collect();
            let nf = match op {
                FlagOp::Add => {
                    for k in keywords {
                        if !kw.iter().any(|x| x.eq_ignore_ascii_case(k)) {
                            kw.push(k.clone());
                        }
                    }
                    r.flags | flags
                }
                FlagOp::Remove => {
                    kw.retain(|x| !keywords.iter().any(|k| k.eq_ignore_ascii_case(x)));
                    r.flags & !flags
                }
                FlagOp::Replace | FlagOp::ReplaceKeeping(_) => {
                    kw.clear();
                    for k in keywords {
                        if !kw.iter().any(|x| x.eq_ignore_ascii_case(k)) {
                            kw.push(k.clone());
                        }
                    }
                    match op {
                        FlagOp::ReplaceKeeping(mask) => (flags & !mask) | (r.flags & mask),
                        _ => flags,
                    }
                }
            };
            let nk = kw.join(" ");
            if nf == r.flags && nk == r.keywords {
                return Ok(false);
            }
            tx.prepare_cached("UPDATE msg SET flags=?3, keywords=?4, modseq=?5 WHERE mailbox=?1 AND uid=?2")?
                .execute(params![id, r.uid as i64, nf as i64, nk, modseq as i64])?;
            r.flags = nf;
            r.keywords = nk;
            Ok(true)
        })
    }

    /// Expunges messages flagged `\Deleted` (only among `uids` if given);
    /// returns the expunged UIDs.  Records stay as tombstones; files are
    /// removed after the commit.
    pub fn expunge(&self, name: &str, uids: Option<&[u32]>) -> Result<Vec<u32>> {
        let want = |r: &Record| r.flags & FLAG_DELETED != 0 && uids.is_none_or(|u| u.binary_search(&r.uid).is_ok());
        self.expunge_where(name, want)
    }

    /// Expunges exactly `uids` (MOVE's second half), whatever their flags.
    pub fn expunge_uids(&self, name: &str, uids: &[u32]) -> Result<Vec<u32>> {
        let mut sorted = uids.to_vec();
        sorted.sort_unstable();
        self.expunge_where(name, |r| sorted.binary_search(&r.uid).is_ok())
    }

    fn expunge_where(&self, name: &str, want: impl Fn(&Record) -> bool) -> Result<Vec<u32>> {
        let e = self.lookup(name)?.ok_or(StoreError::NotFound)?;
        let oc = self.owner(name)?;
        let mut c = lock(&oc);
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let s = state_of(&tx, name)?.ok_or(StoreError::NotFound)?;
        let recs = live_records(&tx, s.id)?;
        let gone: Vec<&Record> = recs.iter().filter(|r| want(r)).collect();
        if gone.is_empty() {
            return Ok(Vec::new());
        }
        let modseq = s.highestmodseq + 1;
        let mut bytes = 0i64;
        // The tombstone's savedate is when it was expunged (what
        // unexpunge and cyr_expire -X look at).  With delayed expunge
        // the file stays.
        let unlink = self.cfg.expunge_mode != ExpungeMode::Delayed;
        let mark = FLAG_EXPUNGED | if unlink { FLAG_UNLINKED } else { 0 };
        let t = now();
        for r in &gone {
            tx.execute(
                "UPDATE msg SET flags=flags | ?3, modseq=?4, savedate=?5, envelope=NULL, bodystructure=NULL, body=NULL WHERE mailbox=?1 AND uid=?2",
                params![s.id, r.uid as i64, mark as i64, modseq as i64, t],
            )?;
            bytes += r.size as i64;
        }
        charge_quota(&tx, name, -bytes, -(gone.len() as i64), true)?;
        tx.execute(
            "UPDATE mailbox SET highestmodseq=?2, exists_=max(0, exists_-?3), size=max(0, size-?4) WHERE id=?1",
            params![s.id, modseq as i64, gone.len() as i64, bytes],
        )?;
        tx.commit()?;
        drop(c);
        let dir = self.mailbox_dir(name, &e.partition)?;
        let out: Vec<u32> = gone.iter().map(|r| r.uid).collect();
        if unlink {
            for u in &out {
                let _ = std::fs::remove_file(message_file(&dir, *u));
            }
        }
        self.notify(name);
        Ok(out)
    }

    /// Copies `uids` (live ones) from `src` to `dst`; returns the
    /// destination's uidvalidity and (source uid, new uid) pairs.
    pub fn copy(&self, src: &str, dst: &str, uids: &[u32], ignore_quota: bool) -> Result<(u32, Vec<(u32, u32)>)> {
        let se = self.lookup(src)?.ok_or(StoreError::NotFound)?;
        let de = self.lookup(dst)?.ok_or(StoreError::NotFound)?;
        self.ensure_state(&de)?;
        let sdir = self.mailbox_dir(src, &se.partition)?;
        let ddir = self.mailbox_dir(dst, &de.partition)?;
        // Read the source records first (another owner database, maybe).
        let srcs: (Vec<(Record, Cached)>, Vec<super::msgannot::MsgAnnot>) = {
            let ss = self.state(src)?;
            let oc = self.owner(src)?;
            let c = lock(&oc);
            let mut st = c.prepare_cached(&format!(
                "SELECT {REC_COLS}, envelope, bodystructure, body FROM msg WHERE mailbox=?1 AND uid=?2 AND flags & ?3 = 0"
            ))?;
            let mut v = Vec::new();
            for &u in uids {
                if let Some(x) = st
                    .query_row(params![ss.id, u as i64, FLAG_EXPUNGED as i64], |r| {
                        Ok((record_from_row(r)?, cached_from_row(r, 11)?))
                    })
                    .optional()?
                {
                    v.push(x);
                }
            }
            let found: Vec<u32> = v.iter().map(|(r, _)| r.uid).collect();
            (v, super::msgannot::read(&c, ss.id, &found, None)?)
        };
        let (srcs, annots) = srcs;
        let oc = self.owner(dst)?;
        let mut c = lock(&oc);
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let ds = state_of(&tx, dst)?.ok_or(StoreError::NotFound)?;
        let bytes: i64 = srcs.iter().map(|(r, _)| r.size as i64).sum();
        charge_quota(&tx, dst, bytes, srcs.len() as i64, ignore_quota)?;
        std::fs::create_dir_all(&ddir)?;
        let modseq = ds.highestmodseq + 1;
        let mut uid = ds.uidnext;
        let mut pairs = Vec::new();
        define_keywords(&tx, &ds, srcs.iter().flat_map(|(r, _)| r.keywords.split(' ')))?;
        for (r, cached) in &srcs {
            let from = sdir.join(format!("{}.", r.uid));
            let to = ddir.join(format!("{uid}."));
            let _ = std::fs::remove_file(&to);
            if std::fs::hard_link(&from, &to).is_err() {
                std::fs::copy(&from, &to)?;
                std::fs::File::open(&to)?.sync_all()?;
            }
            let row = Row {
                flags: r.flags,
                keywords: &r.keywords,
                internaldate: r.internaldate,
                tz: r.tz,
                size: r.size,
                header_size: r.header_size,
                guid: &r.guid,
                createdmodseq: Some(r.createdmodseq),
            };
            insert_row(&tx, ds.id, uid, modseq, &row, cached)?;
            pairs.push((r.uid, uid));
            uid += 1;
        }
        // Annotations go with the message (Cyrus copies everyone's).
        super::msgannot::insert_mapped(&tx, ds.id, &annots, &pairs)?;
        commit_added(tx, &ddir, ds.id, uid, modseq, pairs.len(), bytes)?;
        drop(c);
        self.notify(dst);
        Ok((ds.uidvalidity, pairs))
    }

    /// Marks messages up to `uid` as no longer \Recent; returns the
    /// previous mark (messages above it are \Recent for this session).
    pub fn take_recent(&self, name: &str) -> Result<u32> {
        let oc = self.owner(name)?;
        let c = lock(&oc);
        let s = state_of(&c, name)?.ok_or(StoreError::NotFound)?;
        if s.uidnext > 1 && s.recentuid < s.uidnext - 1 {
            not_durable(&c, |c| {
                c.execute(
                    "UPDATE mailbox SET recentuid=max(recentuid, ?2) WHERE id=?1",
                    params![s.id, (s.uidnext - 1) as i64],
                )
                .map(|_| ())
            })?;
        }
        Ok(s.recentuid)
    }

    /// Raises the \\Recent mark to `uid` (a read-write session saw it).
    pub fn set_recent(&self, name: &str, uid: u32) -> Result<()> {
        let oc = self.owner(name)?;
        let c = lock(&oc);
        not_durable(&c, |c| {
            c.execute(
                "UPDATE mailbox SET recentuid=max(recentuid, ?2) WHERE name=?1",
                params![name, uid as i64],
            )
            .map(|_| ())
        })?;
        Ok(())
    }

    /// Counts for STATUS: (state, unseen, recent).
    pub fn counts(&self, name: &str) -> Result<(MailboxState, u32, u32)> {
        let s = self.state(name)?;
        self.read(name, |c| {
            let unseen: i64 = c.query_row(
                "SELECT count(*) FROM msg WHERE mailbox=?1 AND flags & ?2 = 0",
                params![s.id, (FLAG_EXPUNGED | FLAG_SEEN) as i64],
                |r| r.get(0),
            )?;
            let recent: i64 = c.query_row(
                "SELECT count(*) FROM msg WHERE mailbox=?1 AND flags & ?2 = 0 AND uid > ?3",
                params![s.id, FLAG_EXPUNGED as i64, s.recentuid as i64],
                |r| r.get(0),
            )?;
            Ok((s, unseen as u32, recent as u32))
        })
    }
}

/// Ends a transaction that added `count` messages (`bytes`) to mailbox
/// `id`: the new files' directory entries are made durable before the
/// records that name them are committed.
fn commit_added(tx: rusqlite::Transaction<'_>, dir: &Path, id: i64, uidnext: u32, modseq: u64, count: usize, bytes: i64) -> Result<()> {
    sync_dir(dir)?;
    tx.execute(
        "UPDATE mailbox SET uidnext=?2, highestmodseq=?3, exists_=exists_+?4, size=size+?5 WHERE id=?1",
        params![id, uidnext as i64, modseq as i64, count as i64, bytes],
    )?;
    tx.commit()?;
    Ok(())
}

/// The copied or new parts of an index record.
struct Row<'a> {
    flags: u32,
    keywords: &'a str,
    internaldate: i64,
    tz: i32,
    size: u64,
    header_size: u64,
    guid: &'a [u8],
    /// A copy keeps the original's (as Cyrus); None for a new message:
    /// the MODSEQ it is stored with.
    createdmodseq: Option<u64>,
}

fn insert_row(tx: &Connection, mbox: i64, uid: u32, modseq: u64, r: &Row<'_>, cached: &Cached) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO msg(mailbox, uid, modseq, flags, keywords, internaldate, tz, savedate, size, header_size, guid, envelope, bodystructure, body, createdmodseq)
         VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    )?
    .execute(params![
            mbox,
            uid as i64,
            modseq as i64,
            r.flags as i64,
            r.keywords,
            r.internaldate,
            r.tz,
            now(),
            r.size as i64,
            r.header_size as i64,
            r.guid,
            cached.envelope,
            cached.bodystructure,
            cached.body,
            r.createdmodseq.unwrap_or(modseq) as i64
    ])?;
    Ok(())
}

/// Runs a write whose loss in a crash is harmless (the \\Recent mark)
/// without an fsync: WAL with synchronous=NORMAL for this one commit.
pub(super) fn not_durable(c: &Connection, f: impl FnOnce(&Connection) -> rusqlite::Result<()>) -> Result<()> {
    c.execute_batch("PRAGMA synchronous=NORMAL")?;
    let r = f(c);
    c.execute_batch("PRAGMA synchronous=FULL")?;
    r?;
    Ok(())
}

pub(super) fn usage_under(c: &Connection, root: &str) -> Result<(i64, i64)> {
    let mut st = c.prepare_cached("SELECT id, name FROM mailbox")?;
    let ids: Vec<(i64, String)> = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
    let mut bytes = 0i64;
    let mut count = 0i64;
    for (id, name) in ids {
        if covers(root, &name) {
            let (b, n): (i64, i64) = c.query_row(
                "SELECT coalesce(sum(size),0), count(*) FROM msg WHERE mailbox=?1 AND flags & ?2 = 0",
                params![id, FLAG_EXPUNGED as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            bytes += b;
            count += n;
        }
    }
    Ok((bytes, count))
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::StoreConfig;
    use super::*;

    pub(in crate::store) fn store(dir: &Path) -> Store {
        Store::open(StoreConfig {
            configdir: dir.join("conf"),
            partitions: vec![("default".into(), dir.join("spool"))],
            defaultpartition: "default".into(),
            hashimapspool: true,
            fulldirhash: false,
            unixhierarchysep: true,
            altnamespace: true,
            virtdomains: false,
            defaultdomain: String::new(),
            autocreate_quota: -1,
            autocreate_quota_messages: 0,
            duplicatesuppression: true,
            expunge_mode: super::super::ExpungeMode::Delayed,
            delete_mode: super::super::DeleteMode::Delayed,
            deletedprefix: "DELETED".into(),
            defaultacl: "anyone\tlrs\t".into(),
            placement: Default::default(),
        })
        .unwrap()
    }

    fn plain<'a>(staged: &'a Staged, cached: &'a Cached) -> NewMessage<'a> {
        NewMessage {
            staged,
            flags: 0,
            keywords: String::new(),
            internaldate: 1,
            tz: 0,
            cached,
        }
    }

    fn put(s: &Store, name: &str, body: &[u8]) -> Result<Delivery> {
        let st = s.stage("default", body)?;
        let c = Cached::default();
        s.deliver(name, &plain(&st, &c), QuotaCheck::Strict, None)
    }

    /// While the owner's connection is held (another session's commit in
    /// its fsync), reads go on on a read-only connection and see the last
    /// commit; what the held connection has not committed they do not see.
    #[test]
    fn reads_go_on_while_the_owner_connection_is_busy() {
        let t = tempfile::tempdir().unwrap();
        let s = std::sync::Arc::new(store(t.path()));
        s.create("user.fred", None, None).unwrap();
        put(&s, "user.fred", b"Subject: one\r\n\r\nbody\r\n").unwrap();
        let oc = s.owner("user.fred").unwrap();
        let mut held = super::super::db::lock(&oc);
        // An uncommitted change on the held connection.
        let tx = held.transaction().unwrap();
        tx.execute("UPDATE msg SET flags = flags | ?1", [FLAG_SEEN as i64]).unwrap();
        let (done, got) = std::sync::mpsc::channel();
        let reader = s.clone();
        std::thread::spawn(move || {
            let r = (|| -> Result<_> {
                let (st, idx) = reader.index("user.fred")?;
                let recs = reader.records_for("user.fred", &[1])?;
                let (_, unseen, _) = reader.counts("user.fred")?;
                let rows = reader.fetch_rows("user.fred", st.id, &[1], 0)?;
                Ok((st.exists, idx.len(), recs.len(), unseen, rows.len(), idx[0].1 & FLAG_SEEN))
            })();
            let _ = done.send(r.map_err(|e| e.to_string()));
        });
        let r = got
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the reads waited for the held connection");
        assert_eq!(r.unwrap(), (1, 1, 1, 1, 1, 0));
        tx.rollback().unwrap();
        drop(held);
        // The read-only connection is kept for the next time, and refuses
        // to write.
        assert_eq!(s.readers_idle("user.fred"), 1);
        let _held = super::super::db::lock(&oc);
        let w = s.read("user.fred", |c| Ok(c.execute("UPDATE msg SET flags = 0", [])?));
        assert!(w.is_err(), "{w:?}");
    }

    /// Deliveries from many threads into one mailbox whose state record
    /// is missing (as after a list import): the first batch makes it, and
    /// every copy gets its own UID.
    #[test]
    fn grouped_deliveries_from_many_threads() {
        let t = tempfile::tempdir().unwrap();
        let s = std::sync::Arc::new(store(t.path()));
        s.create("user.fred", None, None).unwrap();
        {
            let oc = s.owner("user.fred").unwrap();
            let c = super::super::db::lock(&oc);
            assert_eq!(c.execute("DELETE FROM mailbox WHERE name='user.fred'", []).unwrap(), 1);
        }
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let s = s.clone();
                std::thread::spawn(move || {
                    (0..10)
                        .map(|j| {
                            let st = s.stage("default", format!("Subject: {i}/{j}\r\n\r\nx\r\n").as_bytes()).unwrap();
                            match s
                                .deliver_grouped(super::super::DeliveryJob {
                                    name: "user.fred".into(),
                                    staged: std::sync::Arc::new(st),
                                    cached: std::sync::Arc::new(Cached::default()),
                                    internaldate: 1,
                                    quota: QuotaCheck::Strict,
                                    dup: None,
                                    partition: String::new(),
                                    flags: 0,
                                    keywords: String::new(),
                                })
                                .unwrap()
                            {
                                Delivery::Delivered(uid) => uid,
                                other => panic!("{other:?}"),
                            }
                        })
                        .collect::<Vec<u32>>()
                })
            })
            .collect();
        let mut uids: Vec<u32> = threads.into_iter().flat_map(|h| h.join().unwrap()).collect();
        uids.sort();
        assert_eq!(uids, (1..=160).collect::<Vec<u32>>());
        let st = s.state("user.fred").unwrap();
        assert_eq!((st.exists, st.uidnext), (160, 161));
        for uid in [1, 80, 160] {
            assert!(s.message_path("user.fred", "default", uid).unwrap().exists());
        }
    }

    #[test]
    fn folder_and_annotation_quota_on_an_older_database() {
        let t = tempfile::tempdir().unwrap();
        let path = {
            let s = store(t.path());
            s.create("user.fred", None, None).unwrap();
            put(&s, "user.fred", b"Subject: old\r\n\r\nx\r\n").unwrap();
            s.owner_db_path("user.fred")
        };
        // A database from before the X- resources and CREATEDMODSEQ, with
        // a root and a message in it.
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "ALTER TABLE quota DROP COLUMN annot_limit; ALTER TABLE quota DROP COLUMN folders_limit; \
                 ALTER TABLE msg DROP COLUMN createdmodseq; ALTER TABLE mailbox DROP COLUMN createdmodseq; \
                 INSERT INTO quota(root, storage_limit, message_limit) VALUES('user.fred', 100, -1);",
            )
            .unwrap();
        }
        let s = store(t.path());
        // Not known for the older message (0, as Cyrus answers then).
        assert_eq!(s.records("user.fred").unwrap()[0].createdmodseq, 0);
        assert_eq!(s.state("user.fred").unwrap().createdmodseq, 1);
        let q = s.quota_get("user.fred").unwrap().unwrap();
        assert_eq!((q.storage_limit, q.annot_limit, q.folders_limit), (100, -1, -1));
        let l = QuotaLimits {
            storage: Some(100),
            annot: Some(1),
            folders: Some(2),
            ..QuotaLimits::default()
        };
        s.quota_set_limits("user.fred", l).unwrap();
        assert_eq!(s.quota_get("user.fred").unwrap().unwrap().limits(), l);
        s.create("user.fred.a", None, None).unwrap();
        assert!(matches!(s.create("user.fred.b", None, None), Err(StoreError::OverQuota)));
        // Within the root a rename adds nothing; from elsewhere it does.
        s.rename("user.fred.a", "user.fred.c").unwrap();
        s.create("shared", None, None).unwrap();
        assert!(matches!(s.rename("shared", "user.fred.s"), Err(StoreError::OverQuota)));
        assert_eq!(s.quota_get("user.fred").unwrap().unwrap().folders_used, 2);
        // 1 KB of annotations: mailbox and message values together.
        let big = |n: usize| vec![b'x'; n];
        let w = |n| vec![("/comment".to_string(), String::new(), Some(big(n)))];
        s.set_annotations("user.fred.c", &w(1000)).unwrap();
        assert!(matches!(s.set_annotations("user.fred", &w(100)), Err(StoreError::OverQuota)));
        let m = |n| vec![("/comment".to_string(), String::new(), big(n))];
        assert!(matches!(
            s.store_msg_annotations("user.fred", &[1], &m(100), None),
            Err(StoreError::OverQuota)
        ));
        // Smaller replaces larger; removing frees the room.
        s.set_annotations("user.fred.c", &w(900)).unwrap();
        s.store_msg_annotations("user.fred", &[1], &m(100), None).unwrap();
        assert_eq!(s.quota_get("user.fred").unwrap().unwrap().annot_used, 1000);
        s.set_annotations("user.fred.c", &[("/comment".into(), String::new(), None)])
            .unwrap();
        assert_eq!(s.quota_get("user.fred").unwrap().unwrap().annot_used, 100);
    }

    #[test]
    fn createdmodseq_stays_and_copies_keep_it() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path());
        s.create("user.fred", None, None).unwrap();
        s.create("user.fred.Sent", None, None).unwrap();
        put(&s, "user.fred", b"Subject: a\r\n\r\nx\r\n").unwrap();
        put(&s, "user.fred", b"Subject: b\r\n\r\ny\r\n").unwrap();
        let r = s.records("user.fred").unwrap();
        assert_eq!((r[0].createdmodseq, r[1].createdmodseq), (r[0].modseq, r[1].modseq));
        assert!(r[1].createdmodseq > r[0].createdmodseq);
        // A flag change moves MODSEQ, not CREATEDMODSEQ.
        s.store_flags("user.fred", &[1], FlagOp::Add, FLAG_SEEN, &[], None).unwrap();
        let after = s.records("user.fred").unwrap();
        assert!(after[0].modseq > r[0].modseq);
        assert_eq!(after[0].createdmodseq, r[0].createdmodseq);
        // A copy keeps the original's, as Cyrus.
        s.copy("user.fred", "user.fred.Sent", &[1], false).unwrap();
        let copied = s.records("user.fred.Sent").unwrap();
        assert_eq!(copied[0].createdmodseq, r[0].createdmodseq);
        assert_eq!(s.state("user.fred.Sent").unwrap().createdmodseq, 1);
    }

    #[test]
    fn deliver_flags_expunge_copy_quota() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path());
        s.create("user.fred", None, None).unwrap();
        s.create("user.fred.Sent", None, None).unwrap();
        assert!(matches!(s.create("user.fred", None, None), Err(StoreError::Exists)));
        assert_eq!(put(&s, "user.fred", b"Subject: a\r\n\r\nx\r\n").unwrap(), Delivery::Delivered(1));
        assert_eq!(put(&s, "user.fred", b"Subject: b\r\n\r\nyy\r\n").unwrap(), Delivery::Delivered(2));
        let f = s.message_path("user.fred", "default", 2).unwrap();
        assert!(f.ends_with("spool/f/user/fred/2."), "{}", f.display());
        assert_eq!(std::fs::read(&f).unwrap(), b"Subject: b\r\n\r\nyy\r\n");
        // Only stage leftovers are cleaned; none remain.
        assert_eq!(std::fs::read_dir(t.path().join("spool/stage.")).unwrap().count(), 0);

        let (ch, _) = s
            .store_flags("user.fred", &[1, 2], FlagOp::Add, FLAG_DELETED, &["$Label1".into()], None)
            .unwrap();
        assert_eq!(ch.len(), 2);
        assert!(ch[0].modseq > 1);
        let (pairs_v, pairs) = s.copy("user.fred", "user.fred.Sent", &[1, 2], false).unwrap();
        assert!(pairs_v > 0);
        assert_eq!(pairs, vec![(1, 1), (2, 2)]);
        assert_eq!(s.expunge("user.fred", Some(&[1])).unwrap(), vec![1]);
        // Delayed expunge keeps the file until cleanup_expunged.
        assert!(s.message_path("user.fred", "default", 1).unwrap().exists());
        assert_eq!(s.cleanup_expunged("user.fred", now()).unwrap().removed, 1);
        assert!(!s.message_path("user.fred", "default", 1).unwrap().exists());
        let live = s.records("user.fred").unwrap();
        assert_eq!(live.iter().map(|r| r.uid).collect::<Vec<_>>(), vec![2]);
        let (st, ch) = s.changes_since("user.fred", 1).unwrap();
        assert!(ch.iter().any(|r| r.uid == 1 && r.expunged()));
        assert_eq!(st.exists, 1);

        // Quota: 1 KB limit on the user's root.
        s.quota_set("user.fred", Some(1), None).unwrap();
        let q = s.quota_get("user.fred").unwrap().unwrap();
        assert_eq!(q.message_used, 3);
        let big = vec![b'x'; 2000];
        assert!(matches!(put(&s, "user.fred.Sent", &big), Err(StoreError::OverQuota)));
        // Nothing was written for the refused message.
        assert_eq!(s.state("user.fred.Sent").unwrap().uidnext, 3);
        assert!(s.quota_fix("user.fred").unwrap().is_empty());

        s.rename("user.fred.Sent", "user.fred.Old").unwrap();
        assert!(s.lookup("user.fred.Sent").unwrap().is_none());
        assert_eq!(s.records("user.fred.Old").unwrap().len(), 2);
        assert!(s.message_path("user.fred.Old", "default", 1).unwrap().exists());
        s.delete("user.fred.Old").unwrap();
        assert!(matches!(s.state("user.fred.Old"), Err(StoreError::NotFound)));
    }

    #[test]
    fn staged_in_batches() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path());
        for n in [2usize, SYNCFS_FROM + 4] {
            let bodies: Vec<Vec<u8>> = (0..n).map(|i| format!("Subject: {i}\r\n\r\nbody {i}\r\n").into_bytes()).collect();
            let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
            let staged = s.stage_many("default", &refs).unwrap();
            assert_eq!(staged.len(), n);
            for (st, b) in staged.iter().zip(&bodies) {
                assert_eq!(std::fs::read(&st.path).unwrap(), *b);
                assert_eq!(st.size, b.len() as u64);
            }
            let paths: Vec<PathBuf> = staged.iter().map(|st| st.path.clone()).collect();
            drop(staged);
            assert!(paths.iter().all(|p| !p.exists()), "dropped staged files are removed");
        }
    }

    #[test]
    fn duplicate_suppression_and_leftovers() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path());
        s.create("user.bob", None, None).unwrap();
        // A leftover from a crash at uidnext is replaced, not kept.
        let dir = s.mailbox_dir("user.bob", "default").unwrap();
        std::fs::write(dir.join("1."), b"stale").unwrap();
        let st = s.stage("default", b"Message-ID: <a@b>\r\n\r\nhi\r\n").unwrap();
        let c = Cached::default();
        let m = plain(&st, &c);
        assert_eq!(
            s.deliver("user.bob", &m, QuotaCheck::Strict, Some(("<a@b>", "bob"))).unwrap(),
            Delivery::Delivered(1)
        );
        assert_eq!(
            s.deliver("user.bob", &m, QuotaCheck::Strict, Some(("<a@b>", "bob"))).unwrap(),
            Delivery::Duplicate
        );
        assert_eq!(std::fs::read(dir.join("1.")).unwrap(), b"Message-ID: <a@b>\r\n\r\nhi\r\n");
    }

    #[test]
    fn message_annotations_stored_copied_and_removed() {
        let d = tempfile::tempdir().unwrap();
        let s = store(d.path());
        s.create("user.fred", None, None).unwrap();
        s.create("user.fred.Other", None, None).unwrap();
        let msg = b"Subject: a\r\n\r\nbody\r\n";
        put(&s, "user.fred", msg).unwrap();
        put(&s, "user.fred", msg).unwrap();
        let before = s.state("user.fred").unwrap().highestmodseq;
        let w = vec![
            ("/comment".to_string(), "".to_string(), b"shared".to_vec()),
            ("/comment".to_string(), "fred".to_string(), b"mine".to_vec()),
        ];
        let (changed, failed) = s.store_msg_annotations("user.fred", &[1], &w, None).unwrap();
        assert_eq!((changed.len(), failed.len()), (1, 0));
        assert!(changed[0].modseq > before);
        // The same values again change nothing.
        let (changed, _) = s.store_msg_annotations("user.fred", &[1], &w, None).unwrap();
        assert!(changed.is_empty());
        // Another user sees the shared value only; shared sorts first.
        let a = s.msg_annotations("user.fred", &[1, 2], Some("fred")).unwrap();
        assert_eq!(a.iter().map(|a| a.userid.as_str()).collect::<Vec<_>>(), ["", "fred"]);
        let b = s.msg_annotations("user.fred", &[1], Some("joe")).unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].value, b"shared");
        // UNCHANGEDSINCE below the message's modseq refuses it.
        let (c, f) = s
            .store_msg_annotations(
                "user.fred",
                &[1, 2],
                &[("/altsubject".into(), "".into(), b"x".to_vec())],
                Some(before),
            )
            .unwrap();
        assert_eq!(f, [1]);
        assert_eq!(c.iter().map(|r| r.uid).collect::<Vec<_>>(), [2]);
        // COPY carries every user's annotations.
        let (_, pairs) = s.copy("user.fred", "user.fred.Other", &[1], false).unwrap();
        let copied = s.msg_annotations("user.fred.Other", &[pairs[0].1], None).unwrap();
        assert_eq!(copied.len(), 2);
        // An empty value removes.
        s.store_msg_annotations("user.fred", &[1], &[("/comment".into(), "fred".into(), Vec::new())], None)
            .unwrap();
        assert_eq!(s.msg_annotations("user.fred", &[1], None).unwrap().len(), 1);
        // Deleting the mailbox takes its annotations with it.
        s.delete_now("user.fred.Other").unwrap();
        s.create("user.fred.Other", None, None).unwrap();
        put(&s, "user.fred.Other", msg).unwrap();
        assert!(s.msg_annotations("user.fred.Other", &[1], None).unwrap().is_empty());
    }
}
