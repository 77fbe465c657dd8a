//! The Murder's mailbox table: which server holds each mailbox.  The
//! MUPDATE master keeps the authoritative copy, every front end's replica
//! a local one that its proxies read (`{configdirectory}/mupdate.db`).
//! Durable (SQLite, WAL, `synchronous=FULL`: a change is on disk before
//! the caller answers OK) and mirrored in memory for FIND, LIST and the
//! UPDATE dumps.

use rusqlite::{params, Connection};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

/// The file under `configdirectory`.
pub const FILE: &str = "mupdate.db";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Active,
    Reserved,
}

/// One mailbox: active (with its ACL) or reserved, at `server!partition`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub state: State,
    pub location: String,
    pub acl: String,
}

impl Entry {
    /// The server part of the location (before the first `!`).
    pub fn server(&self) -> &str {
        server_of(&self.location)
    }
}

pub fn server_of(location: &str) -> &str {
    location.split('!').next().unwrap_or("")
}

#[derive(Debug)]
pub enum MurderDbError {
    Db(PathBuf, rusqlite::Error),
}

impl std::fmt::Display for MurderDbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MurderDbError::Db(p, e) => write!(f, "{}: {e}", p.display()),
        }
    }
}

impl std::error::Error for MurderDbError {}

pub type Result<T> = std::result::Result<T, MurderDbError>;

/// What a back end tells the MUPDATE master (in Cyrus's order: RESERVE
/// before the local create, ACTIVATE after it, DELETE before the local
/// delete).  Locations are the pusher's business (`servername!partition`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirOp {
    Reserve { name: String, partition: String },
    Activate { name: String, partition: String, acl: String },
    Delete { name: String },
}

/// The Murder's directory as the store sees it: a back end installs one
/// (`mupdate_server` set) and every create, rename, delete and ACL change
/// goes through it.  Blocking; `Err` carries Cyrus's text ("no
/// connection to server", …) and makes the store operation fail.
pub trait Directory: Send + Sync {
    fn push(&self, ops: &[DirOp]) -> std::result::Result<(), String>;
}

/// A change: the name and its new entry (`None`: deleted).
pub type Change = (String, Option<Entry>);

pub struct MurderDb {
    path: PathBuf,
    db: Mutex<Connection>,
    map: RwLock<BTreeMap<String, Entry>>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS mailbox(
  name TEXT PRIMARY KEY NOT NULL,
  reserved INTEGER NOT NULL,
  location TEXT NOT NULL,
  acl TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS aclloc(
  id TEXT NOT NULL,
  location TEXT NOT NULL,
  n INTEGER NOT NULL,
  PRIMARY KEY(id, location)
) WITHOUT ROWID;";

/// `PRAGMA user_version` once `aclloc` is kept: how many active mailboxes
/// at each location name each ACL identifier (`""`: every active one).
/// A proxy's LIST asks it which back ends hold mailboxes a user may see
/// instead of matching every ACL (23 ms at 100,000 mailboxes).
const ACLLOC_VERSION: i64 = 1;

/// The identifiers an ACL names (`id TAB rights TAB ...`), each once.
pub(super) fn acl_ids(acl: &str) -> Vec<&str> {
    let mut v: Vec<&str> = acl.split('\t').step_by(2).filter(|i| !i.is_empty()).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Adds (`sign` 1) or takes away (-1) an entry's counts.
fn count_entry(delta: &mut std::collections::HashMap<(String, String), i64>, e: &Entry, sign: i64) {
    if e.state != State::Active {
        return;
    }
    for id in std::iter::once("").chain(acl_ids(&e.acl)) {
        *delta.entry((id.to_string(), e.location.clone())).or_default() += sign;
    }
}

/// Writes counts changes into `aclloc` (rows that reach 0 go).
fn apply_counts(tx: &Connection, delta: &std::collections::HashMap<(String, String), i64>) -> rusqlite::Result<()> {
    let mut up = tx.prepare_cached(
        "INSERT INTO aclloc(id, location, n) VALUES(?1, ?2, ?3) ON CONFLICT(id, location) DO UPDATE SET n = n + excluded.n",
    )?;
    let mut gone = tx.prepare_cached("DELETE FROM aclloc WHERE id=?1 AND location=?2 AND n<=0")?;
    for ((id, loc), d) in delta {
        if *d != 0 {
            up.execute(params![id, loc, d])?;
            if *d < 0 {
                gone.execute(params![id, loc])?;
            }
        }
    }
    Ok(())
}

impl MurderDb {
    /// Opens (creating) the table at `path` and loads it.
    pub fn open(path: &Path) -> Result<MurderDb> {
        let e = |err| MurderDbError::Db(path.to_path_buf(), err);
        let c = Connection::open(path).map_err(e)?;
        super::db::stable_plans(&c).map_err(e)?;
        c.busy_timeout(std::time::Duration::from_secs(20)).map_err(e)?;
        c.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;").map_err(e)?;
        c.execute_batch(SCHEMA).map_err(e)?;
        let map = read_all(&c).map_err(e)?;
        // A table from before `aclloc`: counted once.
        let version: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(e)?;
        if version < ACLLOC_VERSION {
            let mut delta = std::collections::HashMap::new();
            for en in map.values() {
                count_entry(&mut delta, en, 1);
            }
            let tx = c.unchecked_transaction().map_err(e)?;
            tx.execute_batch("DELETE FROM aclloc").map_err(e)?;
            apply_counts(&tx, &delta).map_err(e)?;
            tx.execute_batch(&format!("PRAGMA user_version={ACLLOC_VERSION}")).map_err(e)?;
            tx.commit().map_err(e)?;
        }
        Ok(MurderDb {
            path: path.to_path_buf(),
            db: Mutex::new(c),
            map: RwLock::new(map),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn get(&self, name: &str) -> Option<Entry> {
        self.read().get(name).cloned()
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The table under a read lock (for a dump: nothing changes while it
    /// is held).
    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Entry>> {
        self.map.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies changes durably, then in memory; `then` runs under the
    /// write lock with the changes and each name's previous entry (so that
    /// the caller can queue them for its UPDATE streams atomically with
    /// the change).  Blocking (fsync).
    pub fn apply(&self, changes: &[Change], then: impl FnOnce(&[(Change, Option<Entry>)])) -> Result<()> {
        let e = |err| MurderDbError::Db(self.path.clone(), err);
        let mut c = self.db.lock().unwrap_or_else(|p| p.into_inner());
        // The counts change by what each name had (earlier in this batch,
        // else in the table) and what it gets.
        let mut delta = std::collections::HashMap::new();
        {
            let map = self.read();
            let mut batch: std::collections::HashMap<&str, Option<&Entry>> = std::collections::HashMap::new();
            for (name, entry) in changes {
                let old = batch.get(name.as_str()).copied().unwrap_or_else(|| map.get(name));
                if let Some(o) = old {
                    count_entry(&mut delta, o, -1);
                }
                if let Some(n) = entry {
                    count_entry(&mut delta, n, 1);
                }
                batch.insert(name, entry.as_ref());
            }
        }
        let tx = c.transaction().map_err(e)?;
        apply_counts(&tx, &delta).map_err(e)?;
        {
            let mut put = tx
                .prepare_cached("INSERT OR REPLACE INTO mailbox(name, reserved, location, acl) VALUES (?1, ?2, ?3, ?4)")
                .map_err(e)?;
            let mut del = tx.prepare_cached("DELETE FROM mailbox WHERE name=?1").map_err(e)?;
            for (name, entry) in changes {
                match entry {
                    Some(en) => {
                        put.execute(params![name, en.state == State::Reserved, en.location, en.acl])
                            .map_err(e)?;
                    }
                    None => {
                        del.execute(params![name]).map_err(e)?;
                    }
                }
            }
        }
        tx.commit().map_err(e)?;
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        let mut done = Vec::with_capacity(changes.len());
        for (name, entry) in changes {
            let old = match entry {
                Some(en) => map.insert(name.clone(), en.clone()),
                None => map.remove(name),
            };
            done.push(((name.clone(), entry.clone()), old));
        }
        then(&done);
        Ok(())
    }

    /// Makes the table equal to `all` (a replica's resync): the changes
    /// it took, in name order.  Blocking.
    pub fn replace_all(&self, all: BTreeMap<String, Entry>, then: impl FnOnce(&[(Change, Option<Entry>)])) -> Result<usize> {
        let changes: Vec<Change> = {
            let map = self.read();
            let mut v: Vec<Change> = map.keys().filter(|k| !all.contains_key(*k)).map(|k| (k.clone(), None)).collect();
            v.extend(all.into_iter().filter(|(k, e)| map.get(k) != Some(e)).map(|(k, e)| (k, Some(e))));
            v
        };
        let n = changes.len();
        if n > 0 {
            self.apply(&changes, then)?;
        }
        Ok(n)
    }
}

/// A front end's read-only view of the local table (the replica keeps
/// it current): one connection, opened on first use and reopened after
/// an error.
pub struct Lookup {
    path: PathBuf,
    db: Mutex<Option<Connection>>,
}

impl Lookup {
    pub fn new(path: &Path) -> Lookup {
        Lookup {
            path: path.to_path_buf(),
            db: Mutex::new(None),
        }
    }

    /// Runs `f` on the connection (opened on first use, dropped after an
    /// error so that the next call reopens it).  Blocking.
    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let e = |err| MurderDbError::Db(self.path.clone(), err);
        let mut g = self.db.lock().unwrap_or_else(|p| p.into_inner());
        let c = match g.take() {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(&self.path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(e)?;
                super::db::stable_plans(&c).map_err(e)?;
                c.busy_timeout(std::time::Duration::from_secs(5)).map_err(e)?;
                c
            }
        };
        let r = f(&c);
        if r.is_ok() {
            *g = Some(c);
        }
        r.map_err(e)
    }

    /// The entry for `name`.  Blocking.
    pub fn get(&self, name: &str) -> Result<Option<Entry>> {
        self.with(|c| {
            let mut st = c.prepare_cached("SELECT reserved, location, acl FROM mailbox WHERE name=?1")?;
            let mut rows = st.query(params![name])?;
            match rows.next()? {
                Some(r) => Ok(Some(entry_of(r)?)),
                None => Ok(None),
            }
        })
    }

    /// The servers holding a mailbox whose ACL names one of `ids` (every
    /// server when `ids` is empty: an admin sees all).  Blocking.
    pub fn servers_for(&self, ids: &[&str]) -> Result<Vec<String>> {
        self.with(|c| {
            let version: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            if version >= ACLLOC_VERSION {
                let ids: Vec<&str> = if ids.is_empty() { vec![""] } else { ids.to_vec() };
                let marks = vec!["?"; ids.len()].join(",");
                let mut st = c.prepare_cached(&format!("SELECT location FROM aclloc WHERE n>0 AND id IN ({marks})"))?;
                let rows = st.query_map(rusqlite::params_from_iter(ids.iter()), |r| r.get::<_, String>(0))?;
                let mut v: Vec<String> = Vec::new();
                for loc in rows {
                    let s = server_of(&loc?).to_string();
                    if !v.contains(&s) {
                        v.push(s);
                    }
                }
                return Ok(v);
            }
            Self::servers_scanning(c, ids)
        })
    }

    /// `servers_for` by matching every ACL (a table whose writer has not
    /// counted `aclloc` yet).
    fn servers_scanning(c: &Connection, ids: &[&str]) -> rusqlite::Result<Vec<String>> {
        {
            let mut sql = String::from("SELECT DISTINCT location FROM mailbox WHERE reserved=0");
            if !ids.is_empty() {
                let alts: Vec<String> = (1..=ids.len())
                    .map(|i| format!("acl LIKE ?{i} ESCAPE '\\' OR acl LIKE '%' || char(9) || ?{i} ESCAPE '\\'"))
                    .collect();
                sql.push_str(&format!(" AND ({})", alts.join(" OR ")));
            }
            let mut st = c.prepare(&sql)?;
            let pats: Vec<String> = ids
                .iter()
                .map(|id| id.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_") + "\t%")
                .collect();
            let rows = st.query_map(rusqlite::params_from_iter(pats.iter()), |r| r.get::<_, String>(0))?;
            let mut v: Vec<String> = Vec::new();
            for loc in rows {
                let s = server_of(&loc?).to_string();
                if !v.contains(&s) {
                    v.push(s);
                }
            }
            Ok(v)
        }
    }
}

fn entry_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
    let reserved: bool = r.get(0)?;
    Ok(Entry {
        state: if reserved { State::Reserved } else { State::Active },
        location: r.get(1)?,
        acl: r.get(2)?,
    })
}

fn read_all(c: &Connection) -> rusqlite::Result<BTreeMap<String, Entry>> {
    let mut st = c.prepare("SELECT name, reserved, location, acl FROM mailbox")?;
    let mut rows = st.query([])?;
    let mut map = BTreeMap::new();
    while let Some(r) = rows.next()? {
        let name: String = r.get(0)?;
        let reserved: bool = r.get(1)?;
        map.insert(
            name,
            Entry {
                state: if reserved { State::Reserved } else { State::Active },
                location: r.get(2)?,
                acl: r.get(3)?,
            },
        );
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn active(loc: &str, acl: &str) -> Entry {
        Entry {
            state: State::Active,
            location: loc.into(),
            acl: acl.into(),
        }
    }

    /// The counted answer is the scanning one's, through creates, ACL
    /// changes, moves, reservations, deletes and a resync, and after an
    /// older table is opened (counted then).
    #[test]
    fn servers_by_acl_counts_agree_with_a_scan() {
        let dir = std::env::temp_dir().join(format!("murderdb-acl-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(FILE);
        let db = MurderDb::open(&p).unwrap();
        let look = Lookup::new(&p);
        let ids: [&[&str]; 5] = [&["a", "anyone"], &["b"], &["c", "grp"], &["nobody"], &[]];
        let check = |what: &str| {
            for q in ids {
                let mut counted = look.servers_for(q).unwrap();
                let mut scanned = look.with(|c| Lookup::servers_scanning(c, q)).unwrap();
                counted.sort();
                scanned.sort();
                assert_eq!(counted, scanned, "{what}: {q:?}");
            }
        };
        let reserved = |loc: &str| Entry {
            state: State::Reserved,
            location: loc.into(),
            acl: String::new(),
        };
        let steps: Vec<Vec<Change>> = vec![
            vec![
                ("user.a".into(), Some(active("b1!default", "a\tlrswipkxtecdan\t"))),
                ("user.b".into(), Some(active("b2!default", "b\tlrs\tanyone\tp\t"))),
                ("shared.x".into(), Some(active("b3!default", "grp\tlrs\tc\tlr\t"))),
            ],
            // The same name twice in a batch: reserved, then active.
            vec![
                ("user.c".into(), Some(reserved("b3!default"))),
                ("user.c".into(), Some(active("b3!default", "c\tlrs\ta\tl\t"))),
            ],
            vec![("user.b".into(), Some(active("b2!default", "b\tlrs\t")))],
            vec![("shared.x".into(), Some(reserved("b1!default")))],
            vec![("user.a".into(), Some(active("b4!other", "a\tlrs\t")))],
            vec![("user.c".into(), None), ("user.zz".into(), None)],
        ];
        check("empty");
        for (i, st) in steps.iter().enumerate() {
            db.apply(st, |_| {}).unwrap();
            check(&format!("step {i}"));
            if i == 0 {
                // Rights are not identifiers (the scan took a user "lrs"
                // for one wherever a right was "lrs").
                assert!(look.servers_for(&["lrs"]).unwrap().is_empty());
            }
        }
        let mut all = BTreeMap::new();
        all.insert("user.b".to_string(), active("b1!default", "b\tlrs\tanyone\tlr\t"));
        all.insert("shared.y".to_string(), active("b2!default", "grp\tlr\t"));
        db.replace_all(all, |_| {}).unwrap();
        check("resync");
        assert_eq!(look.servers_for(&["anyone"]).unwrap(), vec!["b1".to_string()]);
        drop(db);
        // A table written before the counts: they are made on opening.
        {
            let c = Connection::open(&p).unwrap();
            c.execute_batch("DELETE FROM aclloc; PRAGMA user_version=0;").unwrap();
        }
        assert_eq!(look.servers_for(&["grp"]).unwrap(), vec!["b2".to_string()], "scanning meanwhile");
        let _db = MurderDb::open(&p).unwrap();
        check("reopened");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn changes_survive_reopening_and_resync_reports_the_difference() {
        let dir = std::env::temp_dir().join(format!("murderdb-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(FILE);
        {
            let db = MurderDb::open(&p).unwrap();
            let mut seen = 0;
            db.apply(
                &[
                    ("user.a".into(), Some(active("b1!default", "a\tlrs\t"))),
                    ("user.b".into(), Some(active("b2!default", "b\tlrs\t"))),
                ],
                |d| seen = d.len(),
            )
            .unwrap();
            assert_eq!(seen, 2);
            db.apply(&[("user.b".into(), None)], |d| {
                assert_eq!(d[0].1, Some(active("b2!default", "b\tlrs\t")))
            })
            .unwrap();
        }
        let db = MurderDb::open(&p).unwrap();
        assert_eq!(db.len(), 1);
        assert_eq!(db.get("user.a").unwrap().server(), "b1");
        assert_eq!(Lookup::new(&p).get("user.a").unwrap(), Some(active("b1!default", "a\tlrs\t")));
        let mut all = BTreeMap::new();
        all.insert("user.a".to_string(), active("b1!default", "a\tlrs\t"));
        all.insert("user.c".to_string(), active("b1!default", "c\tlrs\t"));
        let mut names = Vec::new();
        let n = db
            .replace_all(all, |d| names = d.iter().map(|((n, _), _)| n.clone()).collect())
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(names, vec!["user.c"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
