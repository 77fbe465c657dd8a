//! Reading a Cyrus IMAP spool from its files, for mumail-migrate's
//! `-C imapd.conf` source: the mailboxes are the directories under each
//! `partition-*` that hold a `cyrus.header` (as `reconstruct -f` finds
//! them, so both the ≤3.4 name layout and 3.6's `uuid/` layout are read
//! and mailboxes.db is not needed); `cyrus.header` gives the name,
//! uniqueid, quota root, ACL and keyword names (3.6 dlist or the older
//! text form); `cyrus.index` gives UIDVALIDITY, the last UID, the
//! modseqs and each record's UID, flags, keywords and dates (minor
//! versions 12 to 19: Cyrus 2.4 to 3.12, located through the header's `start_offset` and
//! `record_size`); `<uid>.` is the message.  Records flagged expunged
//! (delayed expunge) are left out, never resurrected.  Quota limits come
//! from `quota/<h>/<root>` (quotalegacy, dlist or old form) and
//! subscriptions from the user's flat `sub` file (3.6 `user/uuid/…/sub.db`
//! or older `user/<h>/<user>.sub`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The header text every cyrus.header starts with.
const HEADER_MAGIC: &[u8] = b"\xa1\x02\x8b\x0dCyrus mailbox header\n\"The best thing about this system was that it had lots of goals.\"\n\t--Jim Morris on Andrew\n";
/// Cyrus's internal flag bits in `system_flags`.
const FLAG_EXPUNGED: u32 = 1 << 31;
/// Answered, Flagged, Deleted, Draft, Seen.
const SYSTEM_FLAGS: u32 = 0x1f;
/// The largest index file read (a million records and then some).
pub const MAX_INDEX: u64 = 256 << 20;
/// The largest header, quota or subscription file read.
pub const MAX_SMALL: u64 = 4 << 20;

/// A `cyrus.header`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Internal name (`user.fred.Sent`, `example.com!user.fred`).
    pub name: String,
    pub uniqueid: String,
    pub quotaroot: String,
    /// Cyrus internal form: `id TAB rights TAB` per entry.
    pub acl: String,
    /// Keyword names by bit position.
    pub flags: Vec<String>,
}

/// One `cyrus.index` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexRecord {
    pub uid: u32,
    pub internaldate: i64,
    pub size: u64,
    pub system_flags: u32,
    pub user_flags: [u32; 4],
    pub savedate: i64,
    pub modseq: u64,
    /// The record's CRC32 (its last four bytes, over the bytes before
    /// them) matches.
    pub crc_ok: bool,
}

/// A `cyrus.index`: its header fields and records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    pub minor_version: u32,
    pub uidvalidity: u32,
    pub last_uid: u32,
    pub highestmodseq: u64,
    pub recentuid: u32,
    pub records: Vec<IndexRecord>,
}

/// CRC-32 (ISO-HDLC, zlib's), as Cyrus checksums index headers and
/// records.
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0xEDB8_8320 } else { c >> 1 };
        }
    }
    !c
}

/// One mailbox of the spool.
#[derive(Debug, Clone)]
pub struct Mailbox {
    pub dir: PathBuf,
    pub header: Header,
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4).map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn be64(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at + 8)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_be_bytes(a))
}

pub use crate::proto::dlist::{parse as parse_dlist, Dlist};

/// Parses a `cyrus.header`: the 3.6 dlist line or the ≤3.4 text lines
/// (`quotaroot TAB uniqueid`, keyword names, ACL).  `name` is what the
/// older form lacks (the caller knows it from the directory).
pub fn parse_header(data: &[u8], name: Option<&str>) -> Result<Header, String> {
    let rest = data.strip_prefix(HEADER_MAGIC).ok_or("not a cyrus.header (bad magic)")?;
    if rest.starts_with(b"%(") {
        let d = parse_dlist(rest)?;
        let text = |k: &str| d.get(k).and_then(Dlist::text).unwrap_or("").to_string();
        let mut acl = String::new();
        if let Some(Dlist::Kv(v)) = d.get("A") {
            for (id, r) in v {
                acl.push_str(&format!("{id}\t{}\t", r.text().unwrap_or("")));
            }
        }
        let flags = match d.get("U") {
            Some(Dlist::List(v)) => v.iter().filter_map(|f| f.text().map(String::from)).collect(),
            _ => Vec::new(),
        };
        let name = text("N");
        if name.is_empty() {
            return Err("cyrus.header without a mailbox name".into());
        }
        return Ok(Header {
            name,
            uniqueid: text("I"),
            quotaroot: text("Q"),
            acl,
            flags,
        });
    }
    let text = String::from_utf8_lossy(rest);
    let mut lines = text.split('\n');
    let first = lines.next().unwrap_or("");
    let (quotaroot, uniqueid) = first.split_once('\t').unwrap_or((first, ""));
    let flags = lines
        .next()
        .unwrap_or("")
        .split(' ')
        .filter(|f| !f.is_empty())
        .map(String::from)
        .collect();
    let acl = lines.next().unwrap_or("").to_string();
    let name = name.ok_or("an old-style cyrus.header does not name its mailbox")?.to_string();
    Ok(Header {
        name,
        uniqueid: uniqueid.to_string(),
        quotaroot: quotaroot.to_string(),
        acl,
        flags,
    })
}

/// Parses a `cyrus.index` (minor versions 12–19).
pub fn parse_index(b: &[u8]) -> Result<Index, String> {
    let bad = || "cyrus.index is too short or damaged".to_string();
    let minor = be32(b, 8).ok_or_else(bad)?;
    // 20 (unreleased master) changed the layout to 64-bit times.
    if !(12..=19).contains(&minor) {
        return Err(format!("cyrus.index minor version {minor} is not supported (12 to 19 are)"));
    }
    let start = be32(b, 12).ok_or_else(bad)? as usize;
    let size = be32(b, 16).ok_or_else(bad)? as usize;
    let num = be32(b, 20).ok_or_else(bad)? as usize;
    if size < 96 || start < 96 {
        return Err(bad());
    }
    // The header's CRC32 is its last four bytes.
    let header = b.get(..start).ok_or_else(bad)?;
    if be32(header, start - 4) != Some(crc32(&header[..start - 4])) {
        return Err("cyrus.index header checksum mismatch".into());
    }
    let last_uid = be32(b, 28).ok_or_else(bad)?;
    let uidvalidity = be32(b, 44).ok_or_else(bad)?;
    let highestmodseq = be64(b, 68).ok_or_else(bad)?;
    let recentuid = be32(b, 104).ok_or_else(bad)?;
    let mut records = Vec::with_capacity(num.min(1 << 20));
    for i in 0..num {
        let at = start + i * size;
        let r = b.get(at..at + size).ok_or_else(bad)?;
        let rec = IndexRecord {
            uid: be32(r, 0).ok_or_else(bad)?,
            internaldate: be32(r, 4).ok_or_else(bad)? as i64,
            size: be32(r, 12).ok_or_else(bad)? as u64,
            system_flags: be32(r, 32).ok_or_else(bad)?,
            user_flags: [
                be32(r, 36).ok_or_else(bad)?,
                be32(r, 40).ok_or_else(bad)?,
                be32(r, 44).ok_or_else(bad)?,
                be32(r, 48).ok_or_else(bad)?,
            ],
            savedate: if minor >= 16 { be32(r, 52).ok_or_else(bad)? as i64 } else { 0 },
            modseq: be64(r, 80).ok_or_else(bad)?,
            crc_ok: be32(r, size - 4) == Some(crc32(&r[..size - 4])),
        };
        records.push(rec);
    }
    Ok(Index {
        minor_version: minor,
        uidvalidity,
        last_uid,
        highestmodseq,
        recentuid,
        records,
    })
}

impl IndexRecord {
    /// Expunged (delayed expunge keeps the file until cyr_expire).
    pub fn expunged(&self) -> bool {
        self.system_flags & FLAG_EXPUNGED != 0
    }
    /// \Answered \Flagged \Deleted \Draft \Seen, as mumail's bits (the same).
    pub fn flags(&self) -> u32 {
        self.system_flags & SYSTEM_FLAGS
    }
    /// The keyword names set on this record.
    pub fn keywords(&self, names: &[String]) -> Vec<String> {
        (0..128)
            .filter(|&i| self.user_flags[i / 32] & (1 << (i % 32)) != 0)
            .filter_map(|i| names.get(i).cloned())
            .collect()
    }
}

/// A file's bytes, at most `limit` of them (more is an error).
pub fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    f.take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if out.len() as u64 > limit {
        return Err(format!("{}: larger than {limit} bytes", path.display()));
    }
    Ok(out)
}

/// The name an old-layout directory stands for: components after the
/// partition root minus the hash directories (`/f/user/fred/Sent` →
/// `user.fred.Sent`, `/domain/e/example.com/f/user/fred` →
/// `example.com!user.fred`).
fn name_from_dir(root: &Path, dir: &Path) -> Option<String> {
    let rel = dir.strip_prefix(root).ok()?;
    let mut parts: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    let mut domain = None;
    if parts.first().map(String::as_str) == Some("domain") && parts.len() >= 3 {
        let single = |s: &str| s.len() == 1;
        let at = if single(&parts[1]) { 2 } else { 1 };
        domain = Some(parts[at].clone());
        parts.drain(..=at);
    }
    // A hash directory is a single letter (or A–W with fulldirhash).
    if parts.len() >= 2 && parts[0].len() == 1 {
        parts.remove(0);
    }
    if parts.is_empty() {
        return None;
    }
    let name = parts.join(".");
    Some(match domain {
        Some(d) => format!("{d}!{name}"),
        None => name,
    })
}

/// Every mailbox under the partition roots: directories holding a
/// `cyrus.header`, sorted by name (parents before children).
pub fn mailboxes(roots: &[PathBuf]) -> Result<Vec<Mailbox>, String> {
    let mut out = Vec::new();
    for root in roots {
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            let rd = match std::fs::read_dir(&dir) {
                Ok(r) => r,
                Err(e) if dir == *root => return Err(format!("{}: {e}", dir.display())),
                Err(_) => continue,
            };
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    let n = e.file_name();
                    // Staging and sync areas of the partition are not mailboxes.
                    if dir == *root && (n == "stage." || n == "sync.") {
                        continue;
                    }
                    stack.push(e.path());
                }
            }
            let hp = dir.join("cyrus.header");
            if hp.is_file() {
                let data = read_limited(&hp, MAX_SMALL)?;
                let name = name_from_dir(root, &dir);
                let header = parse_header(&data, name.as_deref()).map_err(|e| format!("{}: {e}", hp.display()))?;
                out.push(Mailbox { dir, header });
            }
        }
    }
    out.sort_by(|a, b| a.header.name.cmp(&b.header.name));
    Ok(out)
}

impl Mailbox {
    pub fn index(&self) -> Result<Index, String> {
        let p = self.dir.join("cyrus.index");
        let data = read_limited(&p, MAX_INDEX)?;
        parse_index(&data).map_err(|e| format!("{}: {e}", p.display()))
    }

    /// The message file of `uid`.
    pub fn message(&self, uid: u32, limit: u64) -> Result<Vec<u8>, String> {
        read_limited(&self.dir.join(format!("{uid}.")), limit)
    }
}

/// The user (`fred`, `fred@example.com`) a mailbox belongs to, if any.
pub fn owner(name: &str) -> Option<String> {
    let (domain, rest) = match name.split_once('!') {
        Some((d, r)) => (Some(d), r),
        None => (None, name),
    };
    let mut it = rest.splitn(3, '.');
    if it.next() != Some("user") {
        return None;
    }
    let u = it.next()?.replace('^', ".");
    Some(match domain {
        Some(d) => format!("{u}@{d}"),
        None => u,
    })
}

/// The INBOX name of a user (`fred@example.com` → `example.com!user.fred`).
pub fn inbox_of(user: &str) -> String {
    match user.split_once('@') {
        Some((u, d)) => format!("{d}!user.{}", u.replace('.', "^")),
        None => format!("user.{}", user.replace('.', "^")),
    }
}

/// Cyrus's `dir_hash_c` without fulldirhash: the first letter, or `q`.
fn hash_letter(s: &str) -> char {
    match s.bytes().next() {
        Some(c) if c.is_ascii_alphabetic() => c.to_ascii_lowercase() as char,
        _ => 'q',
    }
}

/// The limits of a quota root (`-1`: none) in Cyrus's resource order:
/// STORAGE (KB), MESSAGE, X-ANNOTATION-STORAGE (KB), X-NUM-FOLDERS;
/// None when the root has no quota file.
pub fn quota(configdir: &Path, root: &str) -> Result<Option<[i64; 4]>, String> {
    let (dom, r) = match root.split_once('!') {
        Some((d, r)) => (Some(d), r),
        None => (None, root),
    };
    let key = r.strip_prefix("user.").unwrap_or(r);
    let mut p = configdir.to_path_buf();
    if let Some(d) = dom {
        p = p.join("domain").join(hash_letter(d).to_string()).join(d);
    }
    let p = p.join("quota").join(hash_letter(key).to_string()).join(r);
    if !p.is_file() {
        return Ok(None);
    }
    let data = read_limited(&p, MAX_SMALL)?;
    Ok(Some(parse_quota(&data).map_err(|e| format!("{}: {e}", p.display()))?))
}

/// A quotalegacy value: `%(S (used limit) M (used [limit]) AS (…) NF (…)
/// …)` or the old `used limit [M used limit]`.
pub fn parse_quota(data: &[u8]) -> Result<[i64; 4], String> {
    let limit = |l: Option<&Dlist>| -> i64 {
        match l {
            Some(Dlist::List(v)) => v.get(1).and_then(Dlist::text).and_then(|t| t.parse().ok()).unwrap_or(-1),
            _ => -1,
        }
    };
    if data.starts_with(b"%(") {
        let d = parse_dlist(data)?;
        return Ok([limit(d.get("S")), limit(d.get("M")), limit(d.get("AS")), limit(d.get("NF"))]);
    }
    let text = String::from_utf8_lossy(data);
    let w: Vec<&str> = text.split_whitespace().collect();
    let storage = w.get(1).and_then(|t| t.parse().ok()).unwrap_or(-1);
    let messages = match w.iter().position(|x| *x == "M") {
        Some(i) => w.get(i + 2).and_then(|t| t.parse().ok()).unwrap_or(-1),
        None => -1,
    };
    Ok([storage, messages, -1, -1])
}

/// Decodes a cyrusdb `flat` file into (key, value) pairs.
pub fn parse_flat(data: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let unescape = |s: &[u8]| {
        let mut out = Vec::with_capacity(s.len());
        let mut i = 0;
        while i < s.len() {
            if s[i] == 0xff && i + 1 < s.len() {
                out.push(if s[i + 1] == 0xff { 0xff } else { s[i + 1] & 0x7f });
                i += 2;
            } else {
                out.push(s[i]);
                i += 1;
            }
        }
        out
    };
    data.split(|&c| c == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            let t = l.iter().position(|&c| c == b'\t')?;
            Some((unescape(&l[..t]), unescape(&l[t + 1..])))
        })
        .collect()
}

/// A key and its value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// A twoskip record: type, key, value, next level-0 offset.
type TwoskipRecord<'a> = (u8, &'a [u8], &'a [u8], usize);

/// The live key/value pairs of a twoskip database (Cyrus's default
/// format for `seen.db`, `mailboxes.db`, `annotations.db`): the level-0
/// chain from the dummy record, each next pointer being the later of the
/// record's two level-0 slots that lies within the committed size;
/// DELETE records are skipped.  Errors on a damaged file, never panics.
pub fn parse_twoskip(b: &[u8]) -> Result<Vec<KeyValue>, String> {
    const MAGIC: &[u8] = b"\xa1\x02\x8b\x0dtwoskip file\0\0\0\0";
    const HEADER: usize = 64;
    if !b.starts_with(MAGIC) {
        return Err("not a twoskip file".into());
    }
    let end = be64(b, 48).ok_or("twoskip header too short")? as usize;
    if end > b.len() || end < HEADER {
        return Err("twoskip file shorter than its header says".into());
    }
    // One record at `at`: (type, key, value, next level-0 offset).
    let record = |at: usize| -> Result<TwoskipRecord<'_>, String> {
        let bad = || format!("twoskip record at {at} is damaged");
        let h = b.get(at..at + 8).ok_or_else(bad)?;
        let (kind, level) = (h[0], h[1] as usize);
        let keylen = u16::from_be_bytes([h[2], h[3]]) as usize;
        let mut vallen = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
        let mut p = at + 8;
        let mut keylen = keylen;
        // Long keys and values: 0xFFFF / 0xFFFFFFFF then a 64-bit length.
        if keylen == 0xFFFF {
            keylen = be64(b, p).ok_or_else(bad)? as usize;
            p += 8;
        }
        if vallen == 0xFFFF_FFFF {
            vallen = be64(b, p).ok_or_else(bad)? as usize;
            p += 8;
        }
        // `level + 1` pointers, the first two being level 0's slots.
        be64(b, p + 8 * level).ok_or_else(bad)?;
        let slot1 = if level >= 1 { be64(b, p + 8).ok_or_else(bad)? } else { 0 };
        let next = [be64(b, p).ok_or_else(bad)? as usize, slot1 as usize];
        p += 8 * (level + 1) + 8; // pointers, then the two CRCs
        let kend = p.checked_add(keylen).ok_or_else(bad)?;
        let vend = kend.checked_add(vallen).ok_or_else(bad)?;
        let (key, val) = (b.get(p..kend).ok_or_else(bad)?, b.get(kend..vend).ok_or_else(bad)?);
        let ok = |x: usize| x != 0 && x < end;
        let n = match (ok(next[0]), ok(next[1])) {
            (true, true) => next[0].max(next[1]),
            (true, false) => next[0],
            (false, true) => next[1],
            (false, false) => 0,
        };
        Ok((kind, key, val, n))
    };
    let (kind, _, _, mut at) = record(HEADER)?;
    if kind != b'=' {
        return Err("twoskip file has no dummy record".into());
    }
    let mut out = Vec::new();
    let mut steps = 0usize;
    while at != 0 {
        steps += 1;
        if steps > b.len() / 8 {
            return Err("twoskip file loops".into());
        }
        let (kind, key, val, next) = record(at)?;
        if kind == b'+' {
            out.push((key.to_vec(), val.to_vec()));
        }
        at = next;
    }
    Ok(out)
}

/// One annotation of Cyrus's `annotations.db` or `cyrus.annotations`:
/// entry (`/comment`, `/specialuse`), userid (empty: shared; Cyrus's
/// `[.OwNeR.]`: the mailbox owner's private value), value.
pub type Annotation = (String, String, Vec<u8>);

/// The placeholder userid under which Cyrus keeps the mailbox owner's
/// private annotations.
const OWNER_PLACEHOLDER: &str = "[.OwNeR.]";

/// An annotation's userid, Cyrus's owner placeholder replaced by the
/// owner of `mailbox` (empty for a shared mailbox).
pub fn annotation_userid(userid: &str, mailbox: &str) -> String {
    if userid == OWNER_PLACEHOLDER {
        owner(mailbox).unwrap_or_default()
    } else {
        userid.to_string()
    }
}

/// An annotation record's value: its length in the first four bytes of
/// an 8-byte native `unsigned long` field (big-endian, as Cyrus writes it
/// with htonl), then the value (then content type, modtime and modseq,
/// not needed here).
pub fn annotation_value(v: &[u8]) -> Option<Vec<u8>> {
    let len = be32(v, 0)? as usize;
    v.get(8..8usize.checked_add(len)?).map(<[u8]>::to_vec)
}

/// The records of a twoskip annotation database: (the key's first part,
/// annotation).  The key is `first NUL entry NUL userid NUL` (first: a
/// mailbox uniqueid, or its name before 3.x, in annotations.db; a UID in
/// cyrus.annotations); records that do not parse are left out.
fn annotation_records(data: &[u8]) -> Result<Vec<(String, Annotation)>, String> {
    let mut out = Vec::new();
    for (k, v) in parse_twoskip(data)? {
        let Some((first, entry, userid)) = annotation_key(&k) else {
            continue;
        };
        let (Ok(first), Some(value)) = (std::str::from_utf8(first), annotation_value(&v)) else {
            continue;
        };
        out.push((first.to_string(), (entry, userid, value)));
    }
    Ok(out)
}

fn annotation_key(k: &[u8]) -> Option<(&[u8], String, String)> {
    let mut it = k.split(|&b| b == 0);
    let first = it.next()?;
    let entry = String::from_utf8(it.next()?.to_vec()).ok()?;
    let userid = String::from_utf8(it.next()?.to_vec()).ok()?;
    (!entry.is_empty()).then_some((first, entry, userid))
}

/// Mailbox annotations from a twoskip `annotations.db`, by mailbox
/// uniqueid (3.x) or name (before).  Server annotations (empty first
/// part) are left out.
pub fn mailbox_annotations(data: &[u8]) -> Result<HashMap<String, Vec<Annotation>>, String> {
    let mut out: HashMap<String, Vec<Annotation>> = HashMap::new();
    for (first, a) in annotation_records(data)? {
        if !first.is_empty() {
            out.entry(first).or_default().push(a);
        }
    }
    Ok(out)
}

/// A mailbox's per-message annotations (RFC 5257) from its twoskip
/// `cyrus.annotations` (3.0+): (UID, annotation); None without the file.
pub fn message_annotations(dir: &Path) -> Result<Option<Vec<(u32, Annotation)>>, String> {
    let path = dir.join("cyrus.annotations");
    if !path.exists() {
        return Ok(None);
    }
    let data = read_limited(&path, 1 << 30)?;
    let records = annotation_records(&data).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Some(
        records.into_iter().filter_map(|(uid, a)| Some((uid.parse().ok()?, a))).collect(),
    ))
}

/// A user's \Seen state on other users' and shared mailboxes (the
/// owner's own is in each cyrus.index): (mailbox uniqueid, last change,
/// seen UIDs as `1:5,7`), from `seen.db` under the user's INBOX uniqueid
/// (3.x) or `user/<h>/<user>.seen` (older, when twoskip).
pub fn seen(configdir: &Path, user: &str, inbox_uniqueid: &str) -> Result<Vec<(String, i64, String)>, String> {
    let id = inbox_uniqueid.as_bytes();
    let local = user.split('@').next().unwrap_or(user);
    let mut candidates = Vec::new();
    if id.len() >= 2 {
        candidates.push(
            configdir
                .join("user/uuid")
                .join((id[0] as char).to_string())
                .join((id[1] as char).to_string())
                .join(inbox_uniqueid)
                .join("seen.db"),
        );
    }
    candidates.push(
        configdir
            .join("user")
            .join(hash_letter(local).to_string())
            .join(format!("{local}.seen")),
    );
    let Some(p) = candidates.into_iter().find(|p| p.is_file()) else {
        return Ok(Vec::new());
    };
    let data = read_limited(&p, 64 << 20)?;
    parse_seen(&data).map_err(|e| format!("{}: {e}", p.display()))
}

/// The entries of a `seen.db` (twoskip) as `seen` gives them.
pub fn parse_seen(data: &[u8]) -> Result<Vec<(String, i64, String)>, String> {
    let pairs = parse_twoskip(data)?;
    Ok(pairs
        .into_iter()
        .filter_map(|(k, v)| {
            let v = String::from_utf8_lossy(&v).into_owned();
            let f: Vec<&str> = v.splitn(5, ' ').collect();
            // Version 1: "1 lastread lastuid lastchange seenuids".
            if f.len() < 4 || f[0] != "1" {
                return None;
            }
            let uids = f.get(4).copied().unwrap_or("").trim_end_matches('\0');
            if !uids.chars().all(|c| c.is_ascii_digit() || c == ':' || c == ',') {
                return None;
            }
            Some((String::from_utf8_lossy(&k).into_owned(), f[3].parse().ok()?, uids.to_string()))
        })
        .collect())
}

/// The user's subscriptions as internal names.  3.6 keeps them in
/// `user/uuid/<a>/<b>/<inbox uniqueid>/sub.db` under `N` keys relative
/// to the user (`INBOX\x1fSent`); older releases in `user/<h>/<user>.sub`
/// under internal names.
pub fn subscriptions(configdir: &Path, user: &str, inbox_uniqueid: &str) -> Result<Vec<String>, String> {
    let id = inbox_uniqueid.as_bytes();
    if id.len() >= 2 {
        let p = configdir
            .join("user/uuid")
            .join((id[0] as char).to_string())
            .join((id[1] as char).to_string())
            .join(inbox_uniqueid)
            .join("sub.db");
        if p.is_file() {
            return Ok(parse_subs(&read_limited(&p, MAX_SMALL)?, user, true));
        }
    }
    let local = user.split('@').next().unwrap_or(user);
    let p = configdir
        .join("user")
        .join(hash_letter(local).to_string())
        .join(format!("{local}.sub"));
    if !p.is_file() {
        return Ok(Vec::new());
    }
    Ok(parse_subs(&read_limited(&p, MAX_SMALL)?, user, false))
}

/// A subscription file's names as internal names: `uuid_layout` (3.6)
/// keys are `N` + the name relative to `user`'s INBOX, older ones
/// internal names.
pub fn parse_subs(data: &[u8], user: &str, uuid_layout: bool) -> Vec<String> {
    let inbox = inbox_of(user);
    if uuid_layout {
        let (domain, _) = inbox.split_once('!').map_or((None, inbox.as_str()), |(d, r)| (Some(d), r));
        return parse_flat(data)
            .into_iter()
            .filter_map(|(k, _)| k.strip_prefix(b"N").map(|k| String::from_utf8_lossy(k).into_owned()))
            .map(|k| {
                let parts: Vec<String> = k.split('\x1f').map(|c| c.replace('.', "^")).collect();
                let name = if parts.first().map(String::as_str) == Some("INBOX") {
                    std::iter::once(inbox.rsplit('!').next().unwrap_or(&inbox).to_string())
                        .chain(parts[1..].iter().cloned())
                        .collect::<Vec<_>>()
                        .join(".")
                } else {
                    parts.join(".")
                };
                match domain {
                    Some(d) if !name.contains('!') => format!("{d}!{name}"),
                    _ => name,
                }
            })
            .collect();
    }
    parse_flat(data)
        .into_iter()
        .map(|(k, _)| String::from_utf8_lossy(&k).into_owned())
        .filter(|k| !k.starts_with('\x1f'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(body: &str) -> Vec<u8> {
        let mut v = HEADER_MAGIC.to_vec();
        v.extend_from_slice(body.as_bytes());
        v
    }

    #[test]
    fn headers_of_36_and_older() {
        let h = parse_header(
            &header("%(T e N \"user.u7.Old mail\" I gsp38 Q user.u7 A %(u7 lrswipkxtecdan yes1 lrs) U ($Label1 work))\n"),
            None,
        )
        .unwrap();
        assert_eq!(h.name, "user.u7.Old mail");
        assert_eq!(h.uniqueid, "gsp38");
        assert_eq!(h.quotaroot, "user.u7");
        assert_eq!(h.acl, "u7\tlrswipkxtecdan\tyes1\tlrs\t");
        assert_eq!(h.flags, vec!["$Label1", "work"]);
        let h = parse_header(
            &header("user.fred\tabc123\n$Forwarded work \nfred\tlrswipkxtecda\t\n"),
            Some("user.fred.Sent"),
        )
        .unwrap();
        assert_eq!(
            (h.name.as_str(), h.uniqueid.as_str(), h.quotaroot.as_str()),
            ("user.fred.Sent", "abc123", "user.fred")
        );
        assert_eq!(h.flags, vec!["$Forwarded", "work"]);
        assert_eq!(h.acl, "fred\tlrswipkxtecda\t");
        assert!(parse_header(b"garbage", None).is_err());
    }

    fn index17(records: &[(u32, u32, u32, u32)]) -> Vec<u8> {
        let mut b = vec![0u8; 160];
        b[8..12].copy_from_slice(&17u32.to_be_bytes());
        b[12..16].copy_from_slice(&160u32.to_be_bytes());
        b[16..20].copy_from_slice(&112u32.to_be_bytes());
        b[20..24].copy_from_slice(&(records.len() as u32).to_be_bytes());
        b[28..32].copy_from_slice(&9u32.to_be_bytes());
        b[44..48].copy_from_slice(&1234567u32.to_be_bytes());
        b[68..76].copy_from_slice(&42u64.to_be_bytes());
        let crc = crc32(&b[..156]);
        b[156..160].copy_from_slice(&crc.to_be_bytes());
        for &(uid, date, flags, kw) in records {
            let mut r = vec![0u8; 112];
            r[0..4].copy_from_slice(&uid.to_be_bytes());
            r[4..8].copy_from_slice(&date.to_be_bytes());
            r[12..16].copy_from_slice(&23u32.to_be_bytes());
            r[32..36].copy_from_slice(&flags.to_be_bytes());
            r[36..40].copy_from_slice(&kw.to_be_bytes());
            r[80..88].copy_from_slice(&(uid as u64 + 1).to_be_bytes());
            let crc = crc32(&r[..108]);
            r[108..112].copy_from_slice(&crc.to_be_bytes());
            b.extend_from_slice(&r);
        }
        b
    }

    #[test]
    fn index_records() {
        let b = index17(&[(1, 1500000000, 0, 0), (2, 1500000001, 0x8000_0014, 1), (4, 1500000003, 0x10, 3)]);
        let ix = parse_index(&b).unwrap();
        assert_eq!(
            (ix.minor_version, ix.uidvalidity, ix.last_uid, ix.highestmodseq),
            (17, 1234567, 9, 42)
        );
        assert_eq!(ix.records.len(), 3);
        assert!(ix.records[1].expunged() && !ix.records[0].expunged());
        assert_eq!(ix.records[1].flags(), 0x14);
        let names = vec!["$Label1".to_string(), "work".to_string()];
        assert_eq!(ix.records[2].keywords(&names), names);
        assert_eq!(ix.records[2].modseq, 5);
        assert_eq!(ix.records[0].internaldate, 1500000000);
        assert!(ix.records.iter().all(|r| r.crc_ok));
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        // A damaged record is marked; a damaged header refuses the index.
        let mut bad = b.clone();
        bad[160 + 112 + 5] ^= 1;
        let ix = parse_index(&bad).unwrap();
        assert_eq!(ix.records.iter().map(|r| r.crc_ok).collect::<Vec<_>>(), [true, false, true]);
        bad[30] ^= 1;
        assert_eq!(parse_index(&bad).unwrap_err(), "cyrus.index header checksum mismatch");
        // Truncated: an error, not a panic.
        assert!(parse_index(&b[..300]).is_err());
        assert!(parse_index(&b[..20]).is_err());
    }

    /// A twoskip file as Cyrus 3.6 wrote a seen.db: one key written twice
    /// (the second replaces the first in the level-0 chain).
    fn twoskip_seen() -> Vec<u8> {
        let mut b = b"\xa1\x02\x8b\x0dtwoskip file\0\0\0\0".to_vec();
        b.extend_from_slice(&1u32.to_be_bytes());
        b.extend_from_slice(&1u64.to_be_bytes());
        b.extend_from_slice(&1u64.to_be_bytes());
        b.extend_from_slice(&0x150u64.to_be_bytes());
        b.extend_from_slice(&0x248u64.to_be_bytes());
        b.extend_from_slice(&[0; 8]);
        // The dummy: level 31, level-0 slots 0x1d0 (newer) and 0x150.
        b.extend_from_slice(&[b'=', 31, 0, 0, 0, 0, 0, 0]);
        for p in [0x1d0u64, 0x150, 0x1d0].iter().chain(std::iter::repeat_n(&0u64, 29)) {
            b.extend_from_slice(&p.to_be_bytes());
        }
        b.extend_from_slice(&[0; 8]);
        let rec = |b: &mut Vec<u8>, level: u8, val: &str| {
            b.extend_from_slice(&[b'+', level, 0, 24]);
            b.extend_from_slice(&(val.len() as u32).to_be_bytes());
            b.extend(std::iter::repeat_n(0u8, 8 * (level as usize + 1) + 8));
            b.extend_from_slice(b"sva7fpnrvbipp8v05skqb39c");
            b.extend_from_slice(val.as_bytes());
            while !b.len().is_multiple_of(8) {
                b.push(0);
            }
        };
        let commit = |b: &mut Vec<u8>, at: u64| {
            b.extend_from_slice(&[b'$', 0, 0, 0, 0, 0, 0, 0]);
            b.extend_from_slice(&at.to_be_bytes());
            b.extend_from_slice(&[0; 8]);
        };
        assert_eq!(b.len(), 0x150);
        rec(&mut b, 3, "1 1796220491 5 1796220491 ");
        commit(&mut b, 0x150);
        assert_eq!(b.len(), 0x1d0);
        rec(&mut b, 2, "1 1796220491 5 1796220491 2,4");
        commit(&mut b, 0x1d0);
        assert_eq!(b.len(), 0x248);
        b
    }

    #[test]
    fn annotation_records() {
        // Key and value as Cyrus 3.6 wrote them to annotations.db.
        let key = b"t6i2xyqgh23gxrbvk4tkv09c\0/comment\0[.OwNeR.]\0";
        let mut val = vec![0, 0, 0, 4, 0, 0, 0, 0];
        val.extend_from_slice(b"mine\0text/plain\0");
        val.extend_from_slice(&[0; 17]);
        let (first, entry, userid) = annotation_key(key).unwrap();
        assert_eq!(
            (first, entry.as_str(), userid.as_str()),
            (&b"t6i2xyqgh23gxrbvk4tkv09c"[..], "/comment", "[.OwNeR.]")
        );
        assert_eq!(annotation_value(&val).as_deref(), Some(&b"mine"[..]));
        assert_eq!(annotation_value(&val[..10]), None, "a value shorter than its length");
        assert_eq!(annotation_key(b"2\0\0\0"), None, "no entry");
        assert_eq!(annotation_userid(&userid, "user.u7.Sent"), "u7");
        assert_eq!(annotation_userid(&userid, "example.org!user.a^b"), "a.b@example.org");
        assert_eq!(annotation_userid("", "user.u7"), "");
        assert_eq!(annotation_userid("yes1", "user.u7"), "yes1");
    }

    #[test]
    fn twoskip_and_seen() {
        let b = twoskip_seen();
        let pairs = parse_twoskip(&b).unwrap();
        assert_eq!(
            pairs,
            vec![(b"sva7fpnrvbipp8v05skqb39c".to_vec(), b"1 1796220491 5 1796220491 2,4".to_vec())]
        );
        // Damaged or foreign files are errors, not panics.
        assert!(parse_twoskip(b"skiplist file").is_err());
        for cut in [20, 70, 0x160, 0x1e0] {
            let mut c = b[..cut].to_vec();
            if cut > 56 {
                c[48..56].copy_from_slice(&0x248u64.to_be_bytes());
            }
            assert!(parse_twoskip(&c).is_err(), "cut at {cut}");
        }
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("user/uuid/u/u/uudwmo693bcv6otbth79mf9d");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("seen.db"), &b).unwrap();
        assert_eq!(
            seen(t.path(), "yes1", "uudwmo693bcv6otbth79mf9d").unwrap(),
            vec![("sva7fpnrvbipp8v05skqb39c".to_string(), 1796220491, "2,4".to_string())]
        );
        assert!(seen(t.path(), "nobody", "xx").unwrap().is_empty());
    }

    #[test]
    fn names_quotas_and_flat_files() {
        let root = Path::new("/spool");
        assert_eq!(
            name_from_dir(root, Path::new("/spool/f/user/fred/Sent")).as_deref(),
            Some("user.fred.Sent")
        );
        assert_eq!(name_from_dir(root, Path::new("/spool/user/fred")).as_deref(), Some("user.fred"));
        assert_eq!(
            name_from_dir(root, Path::new("/spool/domain/e/example.com/f/user/fred")).as_deref(),
            Some("example.com!user.fred")
        );
        assert_eq!(owner("user.fred.Sent").as_deref(), Some("fred"));
        assert_eq!(owner("example.com!user.j^doe").as_deref(), Some("j.doe@example.com"));
        assert_eq!(owner("shared.news"), None);
        assert_eq!(inbox_of("j.doe@example.com"), "example.com!user.j^doe");
        assert_eq!(
            parse_quota(b"%(S (112 1000) M (5) AS (0) NF (3) MODSEQ 11)").unwrap(),
            [1000, -1, -1, -1]
        );
        assert_eq!(parse_quota(b"%(S (1 -1) M (5 100))").unwrap(), [-1, 100, -1, -1]);
        assert_eq!(
            parse_quota(b"%(S (0 100) M (1) AS (0 5) NF (3 20) MODSEQ 4)").unwrap(),
            [100, -1, 5, 20]
        );
        assert_eq!(parse_quota(b"2048 10240 M 3 500").unwrap(), [10240, 500, -1, -1]);
        assert_eq!(parse_quota(b"2048 -1").unwrap(), [-1, -1, -1, -1]);
        let flat = b"\x1fVER\x1f\t2\nNINBOX\x1fSent\t\nNa\xff\x89b\t\n";
        let kv = parse_flat(flat);
        assert_eq!(kv[1].0, b"NINBOX\x1fSent".to_vec());
        assert_eq!(kv[2].0, b"Na\tb".to_vec());
    }
}
