//! Group commit for new queue files.  A small message's complete queue file
//! is written to its place without fsync and also appended to the journal;
//! one committer thread writes every waiting record with one `write` and
//! one `fdatasync`, then releases all their senders.  So N concurrent SMTP
//! sessions pay one disk flush, and no `250` precedes the flush holding its
//! own bytes.
//!
//! The journal is a sequence of segments `journal/<n>`.  When a segment is
//! large or old, a new one is started and a checkpoint thread `syncfs`es the
//! queue file system (making every queue file written so far durable in its
//! own right), then deletes the older segments.  At start-up, `recover`
//! re-creates from the segments every queue file that was acknowledged but
//! is missing or torn, unless a later `D` record says it was finished.
//!
//! Record: type (`M` message, `D` done), payload length (u32 LE), CRC-32 of
//! the payload (u32 LE), payload.  `M`: qid length (u8), qid, file bytes.
//! `D`: qid.  A torn or bad record ends a segment: it was never
//! acknowledged.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A segment is retired past this size …
const SEGMENT_MAX: u64 = 32 << 20;
/// … or this age.
const SEGMENT_AGE: Duration = Duration::from_secs(10);
/// Most bytes written per batch.
const BATCH_MAX: usize = 8 << 20;

type Ack = tokio::sync::oneshot::Sender<std::io::Result<()>>;

enum Job {
    Commit(Vec<u8>, Ack),
    Done(Vec<u8>),
    Flush(Ack),
}

pub struct Journal {
    tx: std::sync::mpsc::Sender<Job>,
}

fn record(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut crc = flate2::Crc::new();
    crc.update(payload);
    let mut r = Vec::with_capacity(payload.len() + 9);
    r.push(kind);
    r.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    r.extend_from_slice(&crc.sum().to_le_bytes());
    r.extend_from_slice(payload);
    r
}

/// `syncfs(2)` on the file system holding `dir`.
pub fn syncfs(dir: &Path) -> std::io::Result<()> {
    let f = std::fs::File::open(dir)?;
    // SAFETY: a valid open descriptor; syncfs only reads it.
    if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if let Some(n) = e.file_name().to_str().and_then(|s| s.parse::<u64>().ok()) {
            out.push((n, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Reads every complete record of the segments in order: for each queue ID
/// the bytes of its last `M` record not followed by a `D`.
pub fn replay(dir: &Path) -> std::io::Result<HashMap<String, Vec<u8>>> {
    let mut live: HashMap<String, Vec<u8>> = HashMap::new();
    for (_, path) in segments(dir)? {
        let data = std::fs::read(&path)?;
        let mut pos = 0;
        while pos + 9 <= data.len() {
            let kind = data[pos];
            let len = u32::from_le_bytes(data[pos + 1..pos + 5].try_into().unwrap_or_default()) as usize;
            let sum = u32::from_le_bytes(data[pos + 5..pos + 9].try_into().unwrap_or_default());
            let Some(payload) = data.get(pos + 9..pos + 9 + len) else {
                break;
            };
            let mut crc = flate2::Crc::new();
            crc.update(payload);
            if crc.sum() != sum {
                break;
            }
            pos += 9 + len;
            match kind {
                b'M' => {
                    let Some(&n) = payload.first() else { break };
                    let Some(id) = payload.get(1..1 + n as usize) else { break };
                    let id = String::from_utf8_lossy(id).into_owned();
                    live.insert(id, payload[1 + n as usize..].to_vec());
                }
                b'D' => {
                    live.remove(&*String::from_utf8_lossy(payload));
                }
                _ => break,
            }
        }
    }
    Ok(live)
}

/// Deletes every segment (after recovery made their contents durable).
pub fn clear(dir: &Path) -> std::io::Result<()> {
    for (_, p) in segments(dir)? {
        std::fs::remove_file(p)?;
    }
    Ok(())
}

struct Committer {
    dir: PathBuf,
    /// The file system to sync at checkpoints (the queue directory).
    fs: PathBuf,
    seg: std::fs::File,
    seg_no: u64,
    seg_len: u64,
    seg_start: Instant,
    checkpointing: Arc<AtomicBool>,
}

impl Committer {
    fn open_segment(dir: &Path, n: u64) -> std::io::Result<std::fs::File> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("{n:016}")))?;
        std::fs::File::open(dir)?.sync_all()?;
        Ok(f)
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        if self.checkpointing.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let old = self.seg_no;
        self.seg = Self::open_segment(&self.dir, old + 1)?;
        self.seg_no = old + 1;
        self.seg_len = 0;
        self.seg_start = Instant::now();
        let (dir, fs, flag) = (self.dir.clone(), self.fs.clone(), self.checkpointing.clone());
        std::thread::spawn(move || {
            // Every queue file of the old segments was written before the
            // rotation, so one syncfs covers them all.
            if syncfs(&fs).is_ok() {
                if let Ok(segs) = segments(&dir) {
                    for (n, p) in segs {
                        if n <= old {
                            let _ = std::fs::remove_file(p);
                        }
                    }
                }
            }
            flag.store(false, Ordering::SeqCst);
        });
        Ok(())
    }

    fn run(mut self, rx: std::sync::mpsc::Receiver<Job>) {
        let mut buf = Vec::new();
        let mut acks: Vec<Ack> = Vec::new();
        while let Ok(first) = rx.recv() {
            let mut next = Some(first);
            while let Some(job) = next.take() {
                match job {
                    Job::Commit(r, ack) => {
                        buf.extend_from_slice(&r);
                        acks.push(ack);
                    }
                    Job::Done(r) => buf.extend_from_slice(&r),
                    Job::Flush(ack) => acks.push(ack),
                }
                if buf.len() < BATCH_MAX {
                    next = rx.try_recv().ok();
                }
            }
            let res = self
                .seg
                .write_all(&buf)
                .and_then(|_| if acks.is_empty() { Ok(()) } else { self.seg.sync_data() });
            self.seg_len += buf.len() as u64;
            buf.clear();
            for a in acks.drain(..) {
                let _ = a.send(match &res {
                    Ok(()) => Ok(()),
                    Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
                });
            }
            if self.seg_len > SEGMENT_MAX || (self.seg_len > 0 && self.seg_start.elapsed() > SEGMENT_AGE) {
                let _ = self.rotate();
            }
        }
    }
}

impl Journal {
    /// Starts the committer on `dir` (created if missing); `fs` is a
    /// directory on the file system that holds the queue files.
    pub fn start(dir: &Path, fs: &Path) -> std::io::Result<Journal> {
        std::fs::create_dir_all(dir)?;
        let seg_no = segments(dir)?.last().map_or(1, |(n, _)| n + 1);
        let seg = Committer::open_segment(dir, seg_no)?;
        let c = Committer {
            dir: dir.to_path_buf(),
            fs: fs.to_path_buf(),
            seg,
            seg_no,
            seg_len: 0,
            seg_start: Instant::now(),
            checkpointing: Arc::new(AtomicBool::new(false)),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new().name("journal".into()).spawn(move || c.run(rx))?;
        Ok(Journal { tx })
    }

    /// Appends a queue file's bytes; resolves once they are on disk.
    pub async fn commit(&self, qid: &str, file: &[u8]) -> std::io::Result<()> {
        let mut payload = Vec::with_capacity(file.len() + qid.len() + 1);
        payload.push(qid.len() as u8);
        payload.extend_from_slice(qid.as_bytes());
        payload.extend_from_slice(file);
        let (ack, wait) = tokio::sync::oneshot::channel();
        self.tx
            .send(Job::Commit(record(b'M', &payload), ack))
            .map_err(|_| std::io::Error::other("journal committer stopped"))?;
        wait.await.map_err(|_| std::io::Error::other("journal committer stopped"))?
    }

    /// Notes that a queue file is finished (written with the next batch).
    pub fn done(&self, qid: &str) {
        let _ = self.tx.send(Job::Done(record(b'D', qid.as_bytes())));
    }

    /// Resolves when everything sent so far is on disk.
    pub async fn flush(&self) -> std::io::Result<()> {
        let (ack, wait) = tokio::sync::oneshot::channel();
        self.tx
            .send(Job::Flush(ack))
            .map_err(|_| std::io::Error::other("journal committer stopped"))?;
        wait.await.map_err(|_| std::io::Error::other("journal committer stopped"))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_keeps_unfinished_and_stops_at_a_torn_record() {
        let d = tempfile::tempdir().unwrap();
        let mut seg = Vec::new();
        let m = |id: &str, body: &[u8]| {
            let mut p = vec![id.len() as u8];
            p.extend_from_slice(id.as_bytes());
            p.extend_from_slice(body);
            record(b'M', &p)
        };
        seg.extend(m("A1", b"one"));
        seg.extend(m("B2", b"two"));
        seg.extend(record(b'D', b"A1"));
        seg.extend(m("C3", b"three"));
        let torn = m("D4", b"four");
        seg.extend(&torn[..torn.len() - 1]);
        std::fs::write(d.path().join(format!("{:016}", 1)), &seg).unwrap();
        let live = replay(d.path()).unwrap();
        let mut ids: Vec<_> = live.keys().cloned().collect();
        ids.sort();
        assert_eq!(ids, ["B2", "C3"]);
        assert_eq!(live["C3"], b"three");
        // A flipped byte ends the segment at that record.
        let mut bad = seg.clone();
        let at = m("A1", b"one").len() + 12;
        bad[at] ^= 1;
        std::fs::write(d.path().join(format!("{:016}", 1)), &bad).unwrap();
        assert_eq!(replay(d.path()).unwrap().len(), 1);
    }
}
