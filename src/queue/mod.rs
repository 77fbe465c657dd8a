//! The mail queue under `queue_directory`, in Postfix's layout: `incoming`
//! (new files; mode 0600 while written, 0700 when complete), `active`
//! (being delivered), `deferred` (hashed one level, file mtime = next try),
//! `hold`, `corrupt`.  Queue IDs have Postfix's short form: the arrival
//! microseconds as `%05X` then the file's inode number in hex — unique
//! among live files because the inode is theirs.
//!
//! Durability (Postfix's contract, `250` after fsync): `enqueue` returns
//! only when the complete file is on disk, through the group-commit journal
//! (`journal`) for small messages and the file's own fsync for large ones.
//! State changes after that (moves, recipients done) are not synced: a
//! crash may repeat a delivery, never lose one (at-least-once).

pub mod journal;
pub mod record;
pub mod showq;

pub use record::{Envelope, Recipient};

use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Above this size a queue file is fsynced by itself instead of journaled.
const JOURNAL_MAX: usize = 256 << 10;
/// Finished queue files kept for reuse (see `Queue::remove`): at most
/// this many, of at most this many bytes in all, none larger than
/// `JOURNAL_MAX`.
const SPARE_MAX: usize = 8192;
const SPARE_BYTES: u64 = 64 << 20;
/// Name prefix of a spare file in `incoming`.
const SPARE: &str = ".spare.";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueName {
    Incoming,
    Active,
    Deferred,
    Hold,
    Corrupt,
}

impl QueueName {
    pub const ALL: [QueueName; 5] = [
        QueueName::Incoming,
        QueueName::Active,
        QueueName::Deferred,
        QueueName::Hold,
        QueueName::Corrupt,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            QueueName::Incoming => "incoming",
            QueueName::Active => "active",
            QueueName::Deferred => "deferred",
            QueueName::Hold => "hold",
            QueueName::Corrupt => "corrupt",
        }
    }

    fn hashed(self) -> bool {
        self == QueueName::Deferred
    }
}

#[derive(Debug)]
pub enum QueueError {
    /// The file system is full (`452 4.3.1 Insufficient system storage`).
    NoSpace,
    Io(std::io::Error),
}

impl std::fmt::Display for QueueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueueError::NoSpace => write!(f, "No space left on device"),
            QueueError::Io(e) => write!(f, "{}", crate::util::strerror(e)),
        }
    }
}

impl From<std::io::Error> for QueueError {
    fn from(e: std::io::Error) -> Self {
        if e.raw_os_error() == Some(libc::ENOSPC) || e.raw_os_error() == Some(libc::EDQUOT) {
            QueueError::NoSpace
        } else {
            QueueError::Io(e)
        }
    }
}

pub struct Queue {
    pub dir: PathBuf,
    /// `hash_queue_depth` for the hashed queues.
    depth: usize,
    /// None for the tools' view (postsuper, mailq): no new files.
    journal: Option<journal::Journal>,
    /// Finished files (in `incoming`, named `.spare.N`) that new messages
    /// reuse.  Creating a file and deleting it a moment later costs a
    /// file system more than overwriting one: ext4 without a journal
    /// scans past every inode freed in the last minute for each new one,
    /// which made file creation a third of the hub's and lmtpd's time.
    spares: std::sync::Mutex<Spares>,
}

#[derive(Default)]
struct Spares {
    /// Path and size of each.
    files: Vec<(PathBuf, u64)>,
    bytes: u64,
    /// Spares taken since the last `trim_spares`.
    taken: usize,
}

/// What start-up found.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Queue files re-created from the journal.
    pub restored: usize,
    /// Temporary files of interrupted writes removed.
    pub removed_temp: usize,
}

fn now_usec() -> (i64, u32) {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as i64, d.subsec_micros())
}

impl Queue {
    /// Opens (creating the directories) and recovers the queue.
    pub fn open(dir: &Path, depth: usize) -> Result<(Queue, Recovery), QueueError> {
        for q in QueueName::ALL {
            let p = dir.join(q.as_str());
            std::fs::create_dir_all(&p)?;
            let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700));
        }
        let jdir = dir.join("journal");
        std::fs::create_dir_all(&jdir)?;
        let mut rec = Recovery::default();
        // Interrupted writes: temporary names in incoming.  Spares are
        // kept for reuse.
        let mut spares = Spares::default();
        for e in std::fs::read_dir(dir.join("incoming"))? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') {
                continue;
            }
            if !name.starts_with(SPARE) {
                std::fs::remove_file(e.path())?;
                rec.removed_temp += 1;
                continue;
            }
            let size = e.metadata().map_or(u64::MAX, |m| m.len());
            if spares.files.len() < SPARE_MAX && size <= JOURNAL_MAX as u64 && spares.bytes + size <= SPARE_BYTES {
                spares.files.push((e.path(), size));
                spares.bytes += size;
            } else {
                std::fs::remove_file(e.path())?;
            }
        }
        let live = journal::replay(&jdir)?;
        let depth = depth.max(1);
        for (qid, bytes) in live {
            // A reused file that the crash caught before its new bytes
            // reached the disk may still hold a finished message: a file
            // is intact only if it is the message the journal vouches for.
            let found = find_in(dir, depth, &qid);
            let intact = found
                .as_ref()
                .and_then(|(_, p)| std::fs::read(p).ok())
                .is_some_and(|d| same_message(&d, &bytes));
            if !intact {
                // A torn or stale copy in another queue must not be
                // delivered beside the restored one.
                if let Some((_, old)) = found {
                    let _ = std::fs::remove_file(old);
                }
                let p = path_in(dir, depth, QueueName::Incoming, &qid);
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o700)
                    .open(&p)?;
                std::io::Write::write_all(&mut f, &bytes)?;
                rec.restored += 1;
            }
        }
        // Everything the old segments vouched for is now in files: make
        // them durable, then the segments can go.
        journal::syncfs(dir)?;
        journal::clear(&jdir)?;
        let q = Queue {
            dir: dir.to_path_buf(),
            depth,
            journal: Some(journal::Journal::start(&jdir, dir)?),
            spares: std::sync::Mutex::new(spares),
        };
        Ok((q, rec))
    }

    /// The queue as the tools see it: no recovery, no journal (moves and
    /// removals only).
    pub fn open_readonly(dir: &Path, depth: usize) -> Queue {
        Queue {
            dir: dir.to_path_buf(),
            depth: depth.max(1),
            journal: None,
            spares: std::sync::Mutex::new(Spares::default()),
        }
    }

    pub fn path(&self, q: QueueName, qid: &str) -> PathBuf {
        path_in(&self.dir, self.depth, q, qid)
    }

    /// The queue holding `qid`, and its path.
    pub fn find(&self, qid: &str) -> Option<(QueueName, PathBuf)> {
        find_in(&self.dir, self.depth, qid)
    }

    /// Starts a new queue file (a temporary name in `incoming`): its queue
    /// ID is known from here on, as Postfix's is once cleanup opened it.
    pub fn create(&self) -> Result<Draft, QueueError> {
        let arrival = now_usec();
        while let Some(spare) = self.take_spare() {
            // A spare's inode is its own, so its queue ID is unique among
            // live files as a new file's is; mode 0600 marks it incomplete.
            let opened = std::fs::OpenOptions::new().write(true).open(&spare).and_then(|f| {
                f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
                let ino = f.metadata()?.ino();
                Ok((f, ino))
            });
            match opened {
                Ok((file, ino)) => {
                    return Ok(Draft {
                        qid: format!("{:05X}{:X}", arrival.1, ino),
                        arrival,
                        file: Some(file),
                        tmp: spare,
                        reused: true,
                    })
                }
                Err(_) => {
                    let _ = std::fs::remove_file(&spare);
                }
            }
        }
        let inc = self.dir.join("incoming");
        let tmp = inc.join(format!(
            ".{}.{}.{}",
            arrival.1,
            std::process::id(),
            TMP.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        let ino = match file.metadata() {
            Ok(m) => m.ino(),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e.into());
            }
        };
        Ok(Draft {
            qid: format!("{:05X}{:X}", arrival.1, ino),
            arrival,
            file: Some(file),
            tmp,
            reused: false,
        })
    }

    fn take_spare(&self) -> Option<PathBuf> {
        let mut s = self.spares.lock().unwrap_or_else(|e| e.into_inner());
        let (path, size) = s.files.pop()?;
        s.bytes -= size;
        s.taken += 1;
        Some(path)
    }

    /// Deletes the spares that the last period did not need (called about
    /// once a minute): as many stay as were taken since the last call, at
    /// least 64, so an idle hub gives their space back.
    pub fn trim_spares(&self) {
        let excess: Vec<(PathBuf, u64)> = {
            let mut s = self.spares.lock().unwrap_or_else(|e| e.into_inner());
            let keep = s.taken.max(64);
            s.taken = 0;
            if s.files.len() <= keep {
                return;
            }
            let n = s.files.len() - keep;
            let out: Vec<_> = s.files.drain(..n).collect();
            s.bytes -= out.iter().map(|(_, b)| b).sum::<u64>();
            out
        };
        for (p, _) in excess {
            let _ = std::fs::remove_file(p);
        }
    }

    /// Completes a draft: writes the file and returns once it is durable,
    /// with the envelope's recipient offsets filled in.
    pub async fn commit(
        self: &std::sync::Arc<Self>,
        mut draft: Draft,
        mut env: Envelope,
        content: std::sync::Arc<Vec<u8>>,
    ) -> Result<Envelope, QueueError> {
        env.arrival = draft.arrival;
        let me = self.clone();
        let file = draft.file.take();
        let tmp = draft.tmp.clone();
        let qid = draft.qid.clone();
        let reused = draft.reused;
        let (bytes, env) = tokio::task::spawn_blocking(move || -> Result<_, QueueError> {
            let mut f = file.ok_or_else(|| QueueError::Io(std::io::Error::other("draft already used")))?;
            let bytes = record::encode(&mut env, &content);
            drop(content);
            write_file(&mut f, &bytes, reused)?;
            let big = bytes.len() > JOURNAL_MAX;
            if big {
                f.sync_all()?;
            }
            // The "complete" mark, as Postfix's cleanup sets it.
            f.set_permissions(std::fs::Permissions::from_mode(0o700))?;
            let inc = me.dir.join("incoming");
            std::fs::rename(&tmp, inc.join(&qid))?;
            if big {
                std::fs::File::open(&inc)?.sync_all()?;
                return Ok((Vec::new(), env));
            }
            Ok((bytes, env))
        })
        .await
        .map_err(|e| QueueError::Io(std::io::Error::other(e.to_string())))??;
        // Renamed: nothing for the draft's Drop to remove.
        draft.tmp = PathBuf::new();
        if !bytes.is_empty() {
            let res = match &self.journal {
                Some(j) => j.commit(&draft.qid, &bytes).await,
                None => Err(std::io::Error::other("queue opened read-only")),
            };
            if let Err(e) = res {
                let _ = std::fs::remove_file(self.path(QueueName::Incoming, &draft.qid));
                return Err(e.into());
            }
        }
        Ok(env)
    }

    /// `create` + `commit`.
    pub async fn enqueue(
        self: &std::sync::Arc<Self>,
        env: Envelope,
        content: std::sync::Arc<Vec<u8>>,
    ) -> Result<(String, Envelope), QueueError> {
        let draft = self.create()?;
        let qid = draft.qid.clone();
        let env = self.commit(draft, env, content).await?;
        Ok((qid, env))
    }

    /// Moves a file between queues (no sync: a lost rename leaves the file
    /// in its old queue, still delivered).
    pub fn move_to(&self, qid: &str, from: QueueName, to: QueueName) -> std::io::Result<PathBuf> {
        let dst = self.path(to, qid);
        if let Some(parent) = dst.parent() {
            if !parent.exists() {
                std::fs::create_dir_all(parent)?;
                // postsuper runs as root: a hashed subdirectory it creates
                // must belong to the queue's owner, as its parent does.
                if let Ok(m) = std::fs::metadata(self.dir.join(to.as_str())) {
                    if nix::unistd::geteuid().is_root() {
                        let _ = nix::unistd::chown(
                            parent,
                            Some(nix::unistd::Uid::from_raw(m.uid())),
                            Some(nix::unistd::Gid::from_raw(m.gid())),
                        );
                    }
                }
            }
        }
        std::fs::rename(self.path(from, qid), &dst)?;
        Ok(dst)
    }

    /// Marks a recipient delivered in place (its `R` becomes `D`).
    pub fn mark_done(&self, q: QueueName, qid: &str, offset: u64) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(self.path(q, qid))?;
        f.write_all_at(b"D", offset)
    }

    /// Records that the delay warning went out (the `w` flag byte).
    pub fn mark_warned(&self, q: QueueName, qid: &str, offset: u64) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(self.path(q, qid))?;
        f.write_all_at(b"1", offset)
    }

    /// postsuper -r: the message gets a new queue ID in `incoming` with
    /// its pending recipients passed through `rewrite` again (cleanup's
    /// canonical and virtual mapping); done recipients are dropped, the
    /// arrival time is kept.  The new file is durable before the old one
    /// goes, so a crash in between leaves two copies, never none.
    pub fn requeue(
        &self,
        from: QueueName,
        qid: &str,
        rewrite: impl FnOnce(Vec<Recipient>) -> Result<Vec<Recipient>, String>,
    ) -> Result<String, String> {
        let (mut env, content) = self.read(from, qid).map_err(|e| format!("{e:?}"))?;
        let pending: Vec<Recipient> = env.rcpts.drain(..).filter(|r| !r.done).collect();
        if pending.is_empty() {
            return Err("no recipients left".into());
        }
        env.rcpts = rewrite(pending)?;
        let mut draft = self.create().map_err(|e| format!("{e:?}"))?;
        let bytes = record::encode(&mut env, &content);
        let mut f = draft.file.take().ok_or("draft already used")?;
        let new = draft.qid.clone();
        let inc = self.dir.join("incoming");
        (|| -> std::io::Result<()> {
            write_file(&mut f, &bytes, draft.reused)?;
            // The hub may run as another user than the tool (root).
            let owner = std::fs::metadata(&inc)?;
            std::os::unix::fs::fchown(&f, Some(owner.uid()), Some(owner.gid()))?;
            f.sync_all()?;
            f.set_permissions(std::fs::Permissions::from_mode(0o700))?;
            std::fs::rename(&draft.tmp, inc.join(&new))?;
            draft.tmp = PathBuf::new();
            std::fs::File::open(&inc)?.sync_all()
        })()
        .map_err(|e| e.to_string())?;
        std::fs::remove_file(self.path(from, qid)).map_err(|e| e.to_string())?;
        let _ = std::fs::remove_file(self.defer_log(qid));
        Ok(new)
    }

    /// Removes a finished queue file.  The hub keeps up to `SPARE_MAX`
    /// of them, renamed to spare names in `incoming`, for new messages to
    /// overwrite.
    pub fn remove(&self, q: QueueName, qid: &str) -> std::io::Result<()> {
        let Some(j) = &self.journal else {
            return std::fs::remove_file(self.path(q, qid));
        };
        j.done(qid);
        let path = self.path(q, qid);
        let md = std::fs::metadata(&path)?;
        let size = md.len();
        let mut spares = self.spares.lock().unwrap_or_else(|e| e.into_inner());
        if spares.files.len() < SPARE_MAX && size <= JOURNAL_MAX as u64 && spares.bytes + size <= SPARE_BYTES {
            // Named by the inode: no other spare, of this run or an
            // earlier one, can have that name.
            let spare = self.dir.join("incoming").join(format!("{SPARE}{:X}", md.ino()));
            std::fs::rename(&path, &spare)?;
            spares.files.push((spare, size));
            spares.bytes += size;
            return Ok(());
        }
        drop(spares);
        std::fs::remove_file(path)
    }

    /// Reads a queue file.
    pub fn read(&self, q: QueueName, qid: &str) -> Result<(Envelope, Vec<u8>), ReadError> {
        let data = std::fs::read(self.path(q, qid)).map_err(ReadError::Io)?;
        record::decode(&data).map_err(ReadError::Record)
    }

    /// Queue IDs in a queue with each file's mtime (seconds).
    pub fn list(&self, q: QueueName) -> std::io::Result<Vec<(String, i64)>> {
        let mut out = Vec::new();
        let mut dirs = vec![self.dir.join(q.as_str())];
        while let Some(d) = dirs.pop() {
            let rd = match std::fs::read_dir(&d) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let Ok(md) = e.metadata() else { continue };
                if md.is_dir() {
                    dirs.push(e.path());
                } else if !name.starts_with('.') && md.permissions().mode() & 0o100 != 0 {
                    out.push((name, md.mtime()));
                }
            }
        }
        Ok(out)
    }

    /// Sets the next-attempt time of a deferred file (its mtime).
    pub fn set_next_try(&self, q: QueueName, qid: &str, when: i64) -> std::io::Result<()> {
        let f = std::fs::OpenOptions::new().write(true).open(self.path(q, qid))?;
        f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(when.max(0) as u64))
    }

    /// `defer/<hash>/<qid>`: the last reason per deferred recipient
    /// (`recipient TAB reason` lines), read by mailq.
    pub fn defer_log(&self, qid: &str) -> PathBuf {
        let mut p = self.dir.join("defer");
        for c in qid.chars().take(self.depth) {
            p.push(c.to_string());
        }
        p.join(qid)
    }

    /// Makes everything sent to the journal so far durable.
    pub async fn flush(&self) -> std::io::Result<()> {
        match &self.journal {
            Some(j) => j.flush().await,
            None => Ok(()),
        }
    }
}

fn path_in(dir: &Path, depth: usize, q: QueueName, qid: &str) -> PathBuf {
    let mut p = dir.join(q.as_str());
    if q.hashed() {
        for c in qid.chars().take(depth) {
            p.push(c.to_string());
        }
    }
    p.join(qid)
}

/// Writes a draft's bytes; a reused (spare) file is cut to their length.
fn write_file(f: &mut std::fs::File, bytes: &[u8], reused: bool) -> std::io::Result<()> {
    std::io::Write::write_all(f, bytes)?;
    if reused {
        f.set_len(bytes.len() as u64)?;
    }
    Ok(())
}

/// Whether queue file bytes `file` hold the message of journal bytes
/// `journaled` (recipients may have been marked done since).
fn same_message(file: &[u8], journaled: &[u8]) -> bool {
    match (record::decode(file), record::decode(journaled)) {
        (Ok((fe, fc)), Ok((je, jc))) => fe.arrival == je.arrival && fe.sender == je.sender && fc == jc,
        (Ok(_), Err(_)) => true,
        _ => false,
    }
}

fn find_in(dir: &Path, depth: usize, qid: &str) -> Option<(QueueName, PathBuf)> {
    QueueName::ALL
        .into_iter()
        .map(|q| (q, path_in(dir, depth, q, qid)))
        .find(|(_, p)| p.exists())
}

/// A queue file being received.  Dropped without `commit`, its temporary
/// file is removed (an aborted transaction leaves nothing).
#[derive(Debug)]
pub struct Draft {
    pub qid: String,
    pub arrival: (i64, u32),
    file: Option<std::fs::File>,
    tmp: PathBuf,
    /// A spare file, overwritten: cut to the new length when written.
    reused: bool,
}

impl Drop for Draft {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

static TMP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[derive(Debug)]
pub enum ReadError {
    Io(std::io::Error),
    Record(record::RecordError),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "{}", crate::util::strerror(e)),
            ReadError::Record(record::RecordError::Incomplete) => write!(f, "incomplete queue file"),
            ReadError::Record(record::RecordError::Corrupt(w)) => write!(f, "corrupt queue file: {w}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn enqueue_is_recovered_from_the_journal() {
        let d = tempfile::tempdir().unwrap();
        let (q, _) = Queue::open(d.path(), 1).unwrap();
        let q = std::sync::Arc::new(q);
        let env = Envelope {
            sender: "a@b".into(),
            rcpts: vec![Recipient::new("x@y"), Recipient::new("z@y")],
            ..Default::default()
        };
        let (qid, env) = q
            .enqueue(env, std::sync::Arc::new(b"Subject: t\r\n\r\nhi\r\n".to_vec()))
            .await
            .unwrap();
        assert!(qid.len() >= 6 && qid.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(q.find(&qid).unwrap().0, QueueName::Incoming);
        q.mark_done(QueueName::Incoming, &qid, env.rcpts[0].offset).unwrap();
        q.move_to(&qid, QueueName::Incoming, QueueName::Deferred).unwrap();
        let (e2, c2) = q.read(QueueName::Deferred, &qid).unwrap();
        assert!(e2.rcpts[0].done && !e2.rcpts[1].done);
        assert_eq!(c2, b"Subject: t\r\n\r\nhi\r\n");
        assert_eq!(q.list(QueueName::Deferred).unwrap().len(), 1);
        // A crash that lost the file: the journal brings it back.
        std::fs::remove_file(q.path(QueueName::Deferred, &qid)).unwrap();
        let (qid2, _) = q
            .enqueue(
                Envelope {
                    sender: "c@d".into(),
                    rcpts: vec![Recipient::new("e@f")],
                    ..Default::default()
                },
                std::sync::Arc::new(b"x\r\n".to_vec()),
            )
            .await
            .unwrap();
        q.remove(QueueName::Incoming, &qid2).unwrap();
        q.flush().await.unwrap();
        drop(q);
        let (q2, rec) = Queue::open(d.path(), 1).unwrap();
        assert_eq!(rec.restored, 1);
        assert_eq!(q2.find(&qid).unwrap().0, QueueName::Incoming);
        assert!(q2.find(&qid2).is_none(), "finished message not restored");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn finished_files_are_reused_and_a_stale_one_is_not_trusted() {
        let d = tempfile::tempdir().unwrap();
        let (q, _) = Queue::open(d.path(), 1).unwrap();
        let q = std::sync::Arc::new(q);
        let env = |s: &str| Envelope {
            sender: s.into(),
            rcpts: vec![Recipient::new("x@y")],
            ..Default::default()
        };
        let long = std::sync::Arc::new(vec![b'a'; 9000]);
        let (a, _) = q.enqueue(env("a@b"), long).await.unwrap();
        let a_bytes = std::fs::read(q.path(QueueName::Incoming, &a)).unwrap();
        let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
        let a_ino = ino(&q.path(QueueName::Incoming, &a));
        q.move_to(&a, QueueName::Incoming, QueueName::Active).unwrap();
        q.remove(QueueName::Active, &a).unwrap();
        assert!(q.find(&a).is_none());
        assert!(q.list(QueueName::Incoming).unwrap().is_empty(), "a spare is not a queue file");
        // The next message overwrites the finished file: same inode, its
        // own bytes, no tail of the longer old message.
        let (b, _) = q.enqueue(env("c@d"), std::sync::Arc::new(b"short\r\n".to_vec())).await.unwrap();
        let bp = q.path(QueueName::Incoming, &b);
        assert_eq!(ino(&bp), a_ino);
        assert_ne!(a, b);
        let (be, bc) = q.read(QueueName::Incoming, &b).unwrap();
        assert_eq!((be.sender.as_str(), bc.as_slice()), ("c@d", &b"short\r\n"[..]));
        // A crash before the new bytes reached the disk: the file still
        // holds the old, finished message.  Recovery must not deliver
        // that under b's ID; the journal's copy of b replaces it.
        std::fs::write(&bp, &a_bytes).unwrap();
        q.move_to(&b, QueueName::Incoming, QueueName::Active).unwrap();
        q.flush().await.unwrap();
        drop(q);
        let (q2, rec) = Queue::open(d.path(), 1).unwrap();
        assert_eq!(rec.restored, 1);
        let (be, bc) = q2.read(QueueName::Incoming, &b).unwrap();
        assert_eq!((be.sender.as_str(), bc.as_slice()), ("c@d", &b"short\r\n"[..]));
        assert!(q2.find(&a).is_none(), "the finished message stays finished");
        assert!(q2.list(QueueName::Active).unwrap().is_empty(), "the stale copy is gone");
    }
}
