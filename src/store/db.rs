//! Opening the databases: the mailbox list and one database per owner,
//! WAL mode with `synchronous=FULL` (a commit is on disk when it returns),
//! a bounded cache of open connections, and change notification.

use super::names;
use super::{Result, StoreConfig, StoreError};
use rusqlite::Connection;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Open owner databases kept per process; more are closed when idle.
const OWNER_CACHE: usize = 256;
/// How long a writer waits for another process's transaction.
const BUSY_TIMEOUT: Duration = Duration::from_secs(20);
/// Idle read-only connections kept per owner database and in all, for
/// reads while an owner's connection is busy (another session's commit
/// waiting on its fsync); each caches at most READER_CACHE_KB of pages.
const READERS_PER_DB: usize = 2;
const READERS: usize = 64;
const READER_CACHE_KB: u32 = 512;

pub struct Store {
    pub cfg: StoreConfig,
    pub(super) list: Mutex<Connection>,
    owners: Mutex<HashMap<PathBuf, Arc<Mutex<Connection>>>>,
    /// Idle read-only connections per owner database (see `read`).
    readers: Mutex<HashMap<PathBuf, Vec<Connection>>>,
    pub(super) stage_seq: AtomicU64,
    /// Per owner database: a counter bumped after each committed change
    /// made in this process (IDLE wakes on it).
    /// Per owner database: the channel IDLE sessions wait on, and the
    /// database's version when the poller (or the first watcher) last
    /// looked.
    watchers: Mutex<HashMap<PathBuf, (tokio::sync::watch::Sender<u64>, Option<(i128, u64)>)>>,
    /// Deliveries waiting for their owner's group commit.
    pub(super) pending: super::combine::Pending,
    /// The Murder's directory on a back end (mailbox changes are pushed).
    pub(super) directory: std::sync::OnceLock<Arc<dyn super::murder::Directory>>,
}

const LIST_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS mbox(
  name TEXT PRIMARY KEY NOT NULL,
  uniqueid TEXT NOT NULL,
  partition TEXT NOT NULL,
  acl TEXT NOT NULL,
  mbtype TEXT NOT NULL DEFAULT 'e',
  server TEXT NOT NULL DEFAULT '',
  uidvalidity INTEGER NOT NULL,
  created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS specialuse(name TEXT PRIMARY KEY NOT NULL, uses TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS annot(name TEXT NOT NULL, entry TEXT NOT NULL, userid TEXT NOT NULL, value BLOB NOT NULL, PRIMARY KEY(name, entry, userid));
CREATE TABLE IF NOT EXISTS aclid(id TEXT NOT NULL, name TEXT NOT NULL, PRIMARY KEY(id, name)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS aclid_name ON aclid(name);
";

/// `PRAGMA user_version` of the mailbox list once `aclid` is kept: the
/// identifiers each mailbox's ACL names, so that a LIST finds what a user
/// may see among their own, `anyone`'s and their groups' rows instead of
/// reading every mailbox of the server.
const ACLID_VERSION: i64 = 1;

/// Keeps `aclid` for mailbox `name` (after an insert or an ACL change):
/// its rows become the identifiers `acl` names.  A rename moves the rows
/// (`UPDATE aclid SET name`), a removal deletes them, beside the `mbox`
/// statement.
pub(super) fn index_acl(c: &Connection, name: &str, acl: &str) -> rusqlite::Result<()> {
    c.prepare_cached("DELETE FROM aclid WHERE name=?1")?.execute([name])?;
    let mut ins = c.prepare_cached("INSERT OR IGNORE INTO aclid(id, name) VALUES(?1, ?2)")?;
    for id in super::murder::acl_ids(acl) {
        ins.execute([id, name])?;
    }
    Ok(())
}

/// A mailbox list from before `aclid`: indexed once.
fn index_acls_once(c: &Connection) -> rusqlite::Result<()> {
    let version: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version >= ACLID_VERSION {
        return Ok(());
    }
    let tx = c.unchecked_transaction()?;
    // Another process may have done it meanwhile (this one waited for
    // the write lock).
    tx.execute_batch("DELETE FROM aclid")?;
    let all: Vec<(String, String)> = tx
        .prepare("SELECT name, acl FROM mbox")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (name, acl) in &all {
        index_acl(&tx, name, acl)?;
    }
    tx.execute_batch(&format!("PRAGMA user_version={ACLID_VERSION}"))?;
    tx.commit()
}

const OWNER_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS mailbox(
  id INTEGER PRIMARY KEY,
  name TEXT UNIQUE NOT NULL,
  uniqueid TEXT NOT NULL,
  partition TEXT NOT NULL,
  uidvalidity INTEGER NOT NULL,
  uidnext INTEGER NOT NULL,
  highestmodseq INTEGER NOT NULL,
  createdmodseq INTEGER NOT NULL DEFAULT 1,
  recentuid INTEGER NOT NULL DEFAULT 0,
  exists_ INTEGER NOT NULL DEFAULT 0,
  size INTEGER NOT NULL DEFAULT 0,
  keywords TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS msg(
  mailbox INTEGER NOT NULL,
  uid INTEGER NOT NULL,
  modseq INTEGER NOT NULL,
  flags INTEGER NOT NULL,
  keywords TEXT NOT NULL DEFAULT '',
  internaldate INTEGER NOT NULL,
  tz INTEGER NOT NULL,
  savedate INTEGER NOT NULL,
  size INTEGER NOT NULL,
  header_size INTEGER NOT NULL,
  guid BLOB NOT NULL,
  envelope TEXT,
  bodystructure TEXT,
  body TEXT,
  createdmodseq INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY(mailbox, uid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS msg_modseq ON msg(mailbox, modseq);
CREATE TABLE IF NOT EXISTS quota(
  root TEXT PRIMARY KEY NOT NULL,
  storage_limit INTEGER NOT NULL DEFAULT -1,
  message_limit INTEGER NOT NULL DEFAULT -1,
  storage_used INTEGER NOT NULL DEFAULT 0,
  message_used INTEGER NOT NULL DEFAULT 0,
  annot_limit INTEGER NOT NULL DEFAULT -1,
  folders_limit INTEGER NOT NULL DEFAULT -1
);
CREATE TABLE IF NOT EXISTS sub(name TEXT PRIMARY KEY NOT NULL);
CREATE TABLE IF NOT EXISTS pop(mailbox TEXT PRIMARY KEY NOT NULL, last_login INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS seen(uniqueid TEXT PRIMARY KEY NOT NULL, uids TEXT NOT NULL, t INTEGER NOT NULL, recent INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS dup(msgid TEXT NOT NULL, rcpt TEXT NOT NULL, t INTEGER NOT NULL, PRIMARY KEY(msgid, rcpt));
CREATE TABLE IF NOT EXISTS msgannot(mailbox INTEGER NOT NULL, uid INTEGER NOT NULL, entry TEXT NOT NULL, userid TEXT NOT NULL, value BLOB NOT NULL, PRIMARY KEY(mailbox, uid, entry, userid)) WITHOUT ROWID;
";

fn open_db(path: &Path, schema: &str) -> Result<Connection> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let c = Connection::open(path).map_err(|e| StoreError::Db(format!("{}: {e}", path.display())))?;
    stable_plans(&c)?;
    c.busy_timeout(BUSY_TIMEOUT)?;
    // Room for every statement the store prepares with `prepare_cached`
    // (27 in all), so that hot ones are never parsed again.
    c.set_prepared_statement_cache_capacity(64);
    // Daemons started together (master starts imapd and lmtpd at once)
    // race to create a new database: switching it to WAL takes an
    // exclusive lock that SQLite does not wait for, so retry a while.
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match init_db(&c, schema) {
            Ok(()) => return Ok(c),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(StoreError::Db(format!("{}: {e}", path.display()))),
        }
    }
}

/// A read-only connection to an owner database that exists.
fn open_reader(path: &Path) -> Result<Connection> {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let c = Connection::open_with_flags(path, flags).map_err(|e| StoreError::Db(format!("{}: {e}", path.display())))?;
    stable_plans(&c)?;
    c.busy_timeout(BUSY_TIMEOUT)?;
    c.set_prepared_statement_cache_capacity(64);
    c.execute_batch(&format!("PRAGMA query_only=1; PRAGMA cache_size=-{READER_CACHE_KB}"))?;
    Ok(c)
}

/// Query plans that do not depend on bound values (SQLite's QPSG).
/// Without it, SQLite 3.54 marks a statement such as `... WHERE
/// mailbox=?1 ... ORDER BY uid` to be planned again whenever ?1 is bound
/// anew, and rusqlite clears the bindings of every statement it puts back
/// in its cache: each cached statement was parsed and planned again at
/// every use.
pub(crate) fn stable_plans(c: &Connection) -> rusqlite::Result<()> {
    c.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map(|_| ())
}

fn init_db(c: &Connection, schema: &str) -> rusqlite::Result<()> {
    // WAL: readers never block the writer; FULL: each commit is fsynced.
    let mode: String = c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        c.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))?;
    }
    c.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=OFF;")?;
    c.execute_batch(schema)?;
    if schema == LIST_SCHEMA {
        index_acls_once(c)?;
    }
    if schema == OWNER_SCHEMA {
        add_columns(
            c,
            "quota",
            &[
                ("annot_limit", "INTEGER NOT NULL DEFAULT -1"),
                ("folders_limit", "INTEGER NOT NULL DEFAULT -1"),
            ],
        )?;
        // X-CREATEDMODSEQ: a mailbox's and a message's MODSEQ when made
        // (0 for a message stored before it was kept, as Cyrus).
        add_columns(c, "mailbox", &[("createdmodseq", "INTEGER NOT NULL DEFAULT 1")])?;
        add_columns(c, "msg", &[("createdmodseq", "INTEGER NOT NULL DEFAULT 0")])?;
    }
    Ok(())
}

/// Columns a table gained after databases were made with it (an older
/// mumail's): added once; a daemon racing to add the same one finds it
/// there.
fn add_columns(c: &Connection, table: &str, cols: &[(&str, &str)]) -> rusqlite::Result<()> {
    let have: Vec<String> = {
        let mut st = c.prepare(&format!("PRAGMA table_info({table})"))?;
        let v = st.query_map([], |r| r.get::<_, String>(1))?.collect::<rusqlite::Result<_>>()?;
        v
    };
    for (name, decl) in cols {
        if have.iter().any(|h| h == name) {
            continue;
        }
        match c.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {name} {decl}")) {
            Err(rusqlite::Error::SqliteFailure(_, Some(m))) if m.contains("duplicate column") => {}
            r => r?,
        }
    }
    Ok(())
}

impl Store {
    pub fn open(cfg: StoreConfig) -> Result<Store> {
        // Open to others' programs: the MTA reaches lmtpd's socket in it
        // (the files in it are the server's alone, by the umask).
        crate::util::make_open_dir(&cfg.configdir)?;
        let list = open_db(&cfg.configdir.join("mailboxes.sqlite3"), LIST_SCHEMA)?;
        Ok(Store {
            cfg,
            list: Mutex::new(list),
            owners: Mutex::new(HashMap::new()),
            readers: Mutex::new(HashMap::new()),
            stage_seq: AtomicU64::new(0),
            watchers: Mutex::new(HashMap::new()),
            pending: Default::default(),
            directory: std::sync::OnceLock::new(),
        })
    }

    /// The database file holding the mailboxes of `internal`'s owner.
    /// A mailbox kept by a delayed DELETE (`DELETED.user.fred.Sub.<hex>`)
    /// stays in its owner's database, so that the delete is a rename.
    pub fn owner_db_path(&self, internal: &str) -> PathBuf {
        let stripped;
        let internal = if self.cfg.is_deleted(internal) {
            stripped = match internal.split_once('!') {
                Some((d, r)) => format!("{d}!{}", &r[self.cfg.deletedprefix.len() + 1..]),
                None => internal[self.cfg.deletedprefix.len() + 1..].to_string(),
            };
            stripped.as_str()
        } else {
            internal
        };
        let (owner, domain, is_user) = names::owner_of(internal);
        if is_user {
            let base = names::user_state_base(&self.cfg.configdir, &owner, &domain, self.cfg.fulldirhash);
            let mut p = base.into_os_string();
            p.push(".mumail.db");
            PathBuf::from(p)
        } else {
            let mut p = self.cfg.configdir.clone();
            if !domain.is_empty() {
                p.push("domain");
                p.push(names::dir_hash(&domain, self.cfg.fulldirhash).to_string());
                p.push(&domain);
            }
            p.push("shared");
            p.push(names::dir_hash(&owner, self.cfg.fulldirhash).to_string());
            p.push(format!("{owner}.mumail.db"));
            p
        }
    }

    /// The owner's open connection if it is in the cache and the cache is
    /// free at once (for callers on an async worker, which must not wait
    /// behind another thread opening a database).
    pub(super) fn owner_cached(&self, internal: &str) -> Option<Arc<Mutex<Connection>>> {
        let path = self.owner_db_path(internal);
        self.owners.try_lock().ok()?.get(&path).cloned()
    }

    pub(super) fn owner(&self, internal: &str) -> Result<Arc<Mutex<Connection>>> {
        self.owner_at(&self.owner_db_path(internal))
    }

    /// The open connection to the owner database at `path`.
    fn owner_at(&self, path: &Path) -> Result<Arc<Mutex<Connection>>> {
        let mut cache = self.owners.lock().map_err(|_| StoreError::Db("owner cache poisoned".into()))?;
        if let Some(c) = cache.get(path) {
            return Ok(c.clone());
        }
        if cache.len() >= OWNER_CACHE {
            // Close connections nobody holds.
            cache.retain(|_, c| Arc::strong_count(c) > 1);
        }
        let c = Arc::new(Mutex::new(open_db(path, OWNER_SCHEMA)?));
        cache.insert(path.to_path_buf(), c.clone());
        Ok(c)
    }

    /// Runs a read on `internal`'s owner database: on its connection if
    /// that is free at once, else on a read-only connection of its own,
    /// which WAL lets read the last commit while another session's commit
    /// holds the connection through its fsync (sessions on one mailbox no
    /// longer queue their reads behind each other's writes).
    pub(super) fn read<T>(&self, internal: &str, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let path = self.owner_db_path(internal);
        let oc = self.owner_at(&path)?;
        match oc.try_lock() {
            Ok(mut c) => return f(&mut c),
            Err(std::sync::TryLockError::Poisoned(p)) => return f(&mut p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => {}
        }
        let idle = self
            .readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&path)
            .and_then(Vec::pop);
        let mut c = match idle {
            Some(c) => c,
            None => open_reader(&path)?,
        };
        let r = f(&mut c);
        let mut pool = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        pool.retain(|_, v| !v.is_empty());
        let total: usize = pool.values().map(Vec::len).sum();
        let idle = pool.entry(path).or_default();
        if idle.len() < READERS_PER_DB && total < READERS {
            idle.push(c);
        }
        r
    }

    /// Idle read-only connections kept for `internal`'s owner database.
    #[cfg(test)]
    pub(super) fn readers_idle(&self, internal: &str) -> usize {
        let path = self.owner_db_path(internal);
        self.readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&path)
            .map_or(0, Vec::len)
    }

    /// A receiver that changes after every committed change this process
    /// makes to `internal`'s owner database.
    pub fn watch(&self, internal: &str) -> tokio::sync::watch::Receiver<u64> {
        let path = self.owner_db_path(internal);
        let mut w = self.watchers.lock().unwrap_or_else(|p| p.into_inner());
        w.retain(|_, (s, _)| s.receiver_count() > 0);
        // The baseline is taken now, before the caller compares its own
        // view: a commit after that compare always differs from it.
        let e = w
            .entry(path)
            .or_insert_with_key(|p| (tokio::sync::watch::channel(0).0, wal_version(p)));
        e.0.subscribe()
    }

    /// Watches the databases that IDLE sessions wait on for commits by
    /// other processes (lmtpd's deliveries show in the WAL's length and
    /// mtime): one task per daemon checks them every `every`, instead of
    /// each idle session waking up to look.
    pub async fn poll_watched(self: std::sync::Arc<Self>, every: Duration) {
        loop {
            tokio::time::sleep(every).await;
            let watched: Vec<PathBuf> = {
                let mut w = self.watchers.lock().unwrap_or_else(|p| p.into_inner());
                w.retain(|_, (s, _)| s.receiver_count() > 0);
                w.keys().cloned().collect()
            };
            let now: Vec<(PathBuf, Option<(i128, u64)>)> = watched
                .into_iter()
                .map(|p| {
                    let v = wal_version(&p);
                    (p, v)
                })
                .collect();
            let mut w = self.watchers.lock().unwrap_or_else(|p| p.into_inner());
            for (p, v) in now {
                if let Some((s, seen)) = w.get_mut(&p) {
                    if *seen != v {
                        *seen = v;
                        s.send_modify(|n| *n += 1);
                    }
                }
            }
        }
    }

    pub(super) fn notify(&self, internal: &str) {
        let path = self.owner_db_path(internal);
        let w = self.watchers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((s, _)) = w.get(&path) {
            s.send_modify(|v| *v += 1);
        }
    }
}

/// The version of an owner database as other processes see it: its WAL's
/// mtime and length (or the file's, before any WAL).
pub fn wal_version(path: &Path) -> Option<(i128, u64)> {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let m = std::fs::metadata(&wal).or_else(|_| std::fs::metadata(path)).ok()?;
    version_of(&m)
}

/// An owner database's WAL watched through an open handle: the version
/// `wal_version` gives, read with one fstat(2) instead of a lookup of the
/// whole path (most of a lock-step POP3 RETR's or IMAP NOOP's own cost
/// after the socket's).  A WAL that was unlinked (SQLite removes it when
/// the last connection closes) has no links left: the path is looked up
/// and opened again.  SQLite locks the database and its -shm file, never
/// the WAL, so this handle takes no lock from it.
pub struct WalWatch {
    db: std::path::PathBuf,
    wal: Option<std::fs::File>,
}

impl WalWatch {
    pub fn new(db: &Path) -> WalWatch {
        WalWatch {
            db: db.to_path_buf(),
            wal: None,
        }
    }

    pub fn version(&mut self) -> Option<(i128, u64)> {
        use std::os::unix::fs::MetadataExt;
        if let Some(m) = self.wal.as_ref().and_then(|f| f.metadata().ok()).filter(|m| m.nlink() > 0) {
            return version_of(&m);
        }
        let mut wal = self.db.as_os_str().to_owned();
        wal.push("-wal");
        self.wal = std::fs::File::open(&wal).ok();
        wal_version(&self.db)
    }
}

fn version_of(m: &std::fs::Metadata) -> Option<(i128, u64)> {
    let t = m.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos() as i128;
    Some((t, m.len()))
}

/// Locks a connection mutex; a poisoned lock (a panic in another task)
/// still holds a usable connection because every change is transactional.
pub(super) fn lock(c: &Mutex<Connection>) -> std::sync::MutexGuard<'_, Connection> {
    c.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cached statement of the shape every mailbox read has (an
    /// equality on a bound mailbox id and an ORDER BY) runs again with
    /// new bindings without being parsed and planned again.
    #[test]
    fn cached_statements_are_not_planned_again() {
        let t = tempfile::tempdir().unwrap();
        let c = open_db(&t.path().join("u.db"), OWNER_SCHEMA).unwrap();
        let sql = "SELECT uid FROM msg WHERE mailbox=?1 AND uid BETWEEN ?2 AND ?3 AND flags & ?4 = 0 ORDER BY uid";
        for i in 1..=10i64 {
            let mut st = c.prepare_cached(sql).unwrap();
            let n = st.query_map(rusqlite::params![i, i, i + 5, 1], |_| Ok(())).unwrap().count();
            assert_eq!(n, 0);
        }
        let st = c.prepare_cached(sql).unwrap();
        assert_eq!(st.get_status(rusqlite::StatementStatus::RePrepare), 0);
        // What happens without stable_plans on this SQLite: planned again
        // at every use (if a later SQLite stops doing this, the setting is
        // merely harmless).
        let raw = Connection::open(t.path().join("v.db")).unwrap();
        raw.execute_batch(OWNER_SCHEMA).unwrap();
        for i in 1..=10i64 {
            let mut st = raw.prepare_cached(sql).unwrap();
            let _ = st.query_map(rusqlite::params![i, i, i + 5, 1], |_| Ok(())).unwrap().count();
        }
        let reprepared = raw.prepare_cached(sql).unwrap().get_status(rusqlite::StatementStatus::RePrepare);
        eprintln!("without the stability guarantee: planned again {reprepared} times in 10 uses");
    }

    /// The watched WAL gives what a lookup of its path gives: a commit
    /// moves it on; after the last connection closes (SQLite removes the
    /// WAL) and a new one writes a new WAL, the new file is followed.
    #[test]
    fn wal_watch_follows_commits_and_a_new_wal() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("u.db");
        let wal = t.path().join("u.db-wal");
        let c = open_db(&p, OWNER_SCHEMA).unwrap();
        c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES(1)").unwrap();
        let mut w = WalWatch::new(&p);
        let v0 = w.version();
        assert!(v0.is_some() && v0 == wal_version(&p));
        assert_eq!(w.version(), v0, "nothing committed");
        c.execute_batch("INSERT INTO t VALUES(2)").unwrap();
        let v1 = w.version();
        assert!(v1 != v0 && v1 == wal_version(&p));
        drop(c);
        assert!(!wal.exists(), "the last connection took the WAL away");
        let c2 = open_db(&p, OWNER_SCHEMA).unwrap();
        c2.execute_batch("INSERT INTO t VALUES(3)").unwrap();
        assert!(wal.exists());
        let v2 = w.version();
        assert!(v2 != v1 && v2 == wal_version(&p), "{v2:?} {:?}", wal_version(&p));
        c2.execute_batch("INSERT INTO t VALUES(4)").unwrap();
        assert!(w.version() != v2 && w.version() == wal_version(&p));
    }
}
