//! The mail store: message files named `<uid>.` at Cyrus's spool paths,
//! one SQLite database per owner (a user's mailboxes, their index records,
//! quota, subscriptions and duplicate-delivery records) and one mailbox
//! list (`{configdirectory}/mailboxes.sqlite3`: name, uniqueid, partition,
//! ACL, type).  No protocol types.
//!
//! Why one database per owner, not one per mailbox: a delivery, a COPY or
//! a MOVE inside one user's mailboxes and the quota that covers them
//! change in one transaction (one fsync), and moving a user between back
//! ends moves one file plus the spool.
//!
//! Durability (the promise behind LMTP `250` and IMAP `OK`): a message is
//! written to `<partition>/stage./`, fsynced, hard-linked as `<uid>.` into
//! its mailbox directory, the directory fsynced, and only then is its index
//! record committed (WAL, `synchronous=FULL`).  A crash leaves either the
//! old state or the new one; a `<uid>.` file at or above the mailbox's
//! `uidnext` is an uncommitted leftover that the next append replaces and
//! `reconstruct` removes.  Expunged records stay as tombstones with their
//! modseq, so that concurrent sessions see one history and reconstruct
//! never resurrects expunged mail.

pub mod combine;
mod db;
pub mod expire;
pub mod lifecycle;
mod listing;
mod mboxlist;
pub mod msgannot;
pub mod murder;
pub mod names;
pub mod ops;
pub mod placement;
mod readahead;
pub mod reconstruct;
pub mod sievedir;
mod userdata;
pub mod userdeny;
pub mod xfer;

pub use combine::DeliveryJob;
pub use db::{wal_version, Store, WalWatch};
pub use ops::*;
pub use readahead::{read_ahead, read_message, read_message_cold, read_messages, ReadAhead};

use std::path::PathBuf;

/// System flags as bits (Cyrus's values).
pub const FLAG_ANSWERED: u32 = 1;
pub const FLAG_FLAGGED: u32 = 2;
pub const FLAG_DELETED: u32 = 4;
pub const FLAG_DRAFT: u32 = 8;
pub const FLAG_SEEN: u32 = 16;
/// The record is expunged (a tombstone).
pub const FLAG_EXPUNGED: u32 = 1 << 31;
/// An expunged record whose message file is gone (immediate or
/// semidelayed expunge, or removed by `cyr_expire -X`); until then
/// `unexpunge` can bring it back.
pub const FLAG_UNLINKED: u32 = 1 << 30;

/// `expunge_mode`: when an expunged message's file goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ExpungeMode {
    /// At EXPUNGE.
    Immediate,
    /// At EXPUNGE; the index record stays (as all our tombstones do).
    SemiDelayed,
    /// Kept until `cyr_expire -X` (Cyrus's default since 2.5).
    Delayed,
}

/// `delete_mode`: what DELETE does with a mailbox.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DeleteMode {
    Immediate,
    /// Renamed under `deletedprefix` until `cyr_expire -D`.
    Delayed,
}

/// What the store needs from imapd.conf.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub configdir: PathBuf,
    pub partitions: Vec<(String, PathBuf)>,
    pub defaultpartition: String,
    pub hashimapspool: bool,
    pub fulldirhash: bool,
    pub unixhierarchysep: bool,
    pub altnamespace: bool,
    pub virtdomains: bool,
    pub defaultdomain: String,
    /// `autocreate_quota` in KB (-1: no autocreation).
    pub autocreate_quota: i64,
    /// `autocreate_quota_messages` (0 or less: no limit).
    pub autocreate_quota_messages: i64,
    pub duplicatesuppression: bool,
    pub expunge_mode: ExpungeMode,
    pub delete_mode: DeleteMode,
    /// `deletedprefix` (default `DELETED`).
    pub deletedprefix: String,
    /// `defaultacl` in internal form (`id\trights\t…`): the ACL of a new
    /// top-level non-user mailbox.
    pub defaultacl: String,
    /// How a new mailbox without a parent finds its partition.
    pub placement: Placement,
}

/// The partition of a new mailbox that names none and has no parent
/// (whose partition it would take): `defaultpartition` when set, else
/// one chosen by `partition_select_mode` among the partitions not in
/// `partition_select_exclude`, as Cyrus does.
#[derive(Debug, Clone)]
pub struct Placement {
    /// `defaultpartition` was set (or there is one partition only).
    pub default_set: bool,
    pub mode: placement::Mode,
    pub exclude: Vec<String>,
    pub soft_usage_limit: i64,
}

impl Default for Placement {
    fn default() -> Self {
        Placement {
            default_set: true,
            mode: placement::Mode::FreespaceMost,
            exclude: Vec::new(),
            soft_usage_limit: 0,
        }
    }
}

impl StoreConfig {
    pub fn from_imapd(c: &crate::config::cyrus::ImapdConf) -> std::result::Result<StoreConfig, String> {
        let configdir = c.get("configdirectory").unwrap_or("");
        if configdir.is_empty() {
            return Err(format!("{}: configdirectory is not set", c.path));
        }
        let partitions: Vec<(String, PathBuf)> = c.partitions().into_iter().map(|(n, p)| (n.to_string(), PathBuf::from(p))).collect();
        let (defaultpartition, default_set) = match c.get("defaultpartition") {
            Some(p) if !p.is_empty() && p != "(null)" => (p.to_string(), true),
            _ => (
                partitions.first().map(|(n, _)| n.clone()).unwrap_or_else(|| "default".into()),
                partitions.len() < 2,
            ),
        };
        let placement = Placement {
            default_set,
            mode: placement::Mode::parse(c.get("partition_select_mode").unwrap_or("freespace-most")),
            exclude: c
                .get("partition_select_exclude")
                .unwrap_or("")
                .split([' ', ',', '\t'])
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect(),
            soft_usage_limit: c.get_int("partition_select_soft_usage_limit"),
        };
        let int = |n: &str| c.get(n).and_then(crate::config::cyrus::options::parse_int).unwrap_or(0);
        Ok(StoreConfig {
            configdir: PathBuf::from(configdir),
            partitions,
            defaultpartition,
            hashimapspool: c.get_switch("hashimapspool"),
            fulldirhash: c.get_switch("fulldirhash"),
            unixhierarchysep: c.get_switch("unixhierarchysep"),
            altnamespace: c.get_switch("altnamespace"),
            virtdomains: !matches!(c.get("virtdomains"), Some("off") | Some("0") | Some("no") | None),
            defaultdomain: c
                .get("defaultdomain")
                .filter(|d| *d != "(null)" && *d != "internal")
                .unwrap_or("")
                .to_string(),
            autocreate_quota: c
                .get("autocreate_quota")
                .and_then(crate::config::cyrus::options::parse_int)
                .unwrap_or(-1),
            autocreate_quota_messages: int("autocreate_quota_messages"),
            duplicatesuppression: c.get_switch("duplicatesuppression"),
            expunge_mode: match c.get("expunge_mode") {
                Some("immediate") => ExpungeMode::Immediate,
                Some("semidelayed") => ExpungeMode::SemiDelayed,
                _ => ExpungeMode::Delayed,
            },
            delete_mode: match c.get("delete_mode") {
                Some("immediate") => DeleteMode::Immediate,
                _ => DeleteMode::Delayed,
            },
            deletedprefix: c.get("deletedprefix").filter(|p| !p.is_empty()).unwrap_or("DELETED").to_string(),
            defaultacl: {
                // "anyone lrs" → "anyone\tlrs\t"; pairs of words.
                let words: Vec<&str> = c.get("defaultacl").unwrap_or("anyone lrs").split_whitespace().collect();
                words
                    .chunks(2)
                    .filter(|p| p.len() == 2)
                    .map(|p| format!("{}\t{}\t", p[0], p[1]))
                    .collect()
            },
            placement,
        })
    }

    /// Whether an internal name is under `deletedprefix` (a mailbox that
    /// DELETE kept for `cyr_expire -D`; only admins see it).
    pub fn is_deleted(&self, internal: &str) -> bool {
        let bare = internal.split_once('!').map_or(internal, |(_, r)| r);
        bare.strip_prefix(self.deletedprefix.as_str()).is_some_and(|r| r.starts_with('.'))
    }

    pub fn partition_root(&self, name: &str) -> Option<&std::path::Path> {
        self.partitions.iter().find(|(n, _)| n == name).map(|(_, p)| p.as_path())
    }
}

/// Store errors; the daemons map them to protocol replies.
#[derive(Debug)]
pub enum StoreError {
    NotFound,
    Exists,
    /// Storage or message-count quota would be exceeded.
    OverQuota,
    /// Bad mailbox name or argument.
    Invalid(&'static str),
    /// The partition is not configured.
    NoPartition(String),
    Io(std::io::Error),
    /// The database is unusable or busy past its timeout.
    Db(String),
    /// The MUPDATE master refused the change or could not be reached.
    Murder(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::NotFound => f.write_str("Mailbox does not exist"),
            StoreError::Exists => f.write_str("Mailbox already exists"),
            StoreError::OverQuota => f.write_str("Over quota"),
            StoreError::Invalid(w) => write!(f, "Invalid argument: {w}"),
            StoreError::NoPartition(p) => write!(f, "partition {p} is not configured"),
            StoreError::Io(e) => write!(f, "I/O error: {}", crate::util::strerror(e)),
            StoreError::Db(e) => write!(f, "database error: {e}"),
            StoreError::Murder(e) => f.write_str(e),
        }
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Io(e)
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Db(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;
