//! Reading message files, and reading ahead of a client that goes through
//! a mailbox in order (mbsync's FETCH per message, a POP3 client's RETR
//! 1..n).  A mailbox nobody read lately is on disk, not in memory: one file
//! at a time costs a disk round trip each (70 us here), while the disk
//! serves many at once.  So when a read finds its file cold, the next
//! messages are asked for (POSIX_FADV_WILLNEED) all together, and go on
//! being asked for ahead of the reader while it keeps coming; a mailbox
//! in memory costs nothing more than its reads.

use std::fs::File;
use std::io::Read;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::OnceLock;

/// Messages asked for ahead of the reader at a time.
pub const WINDOW: usize = 128;
/// How much of each message is asked for (the rest comes with the kernel's
/// own read-ahead as it is read).
const AHEAD_BYTES: i64 = 128 * 1024;
/// The most read_message reserves ahead; a larger message grows as it is
/// read.
const MAX_PREALLOC: u64 = 16 << 20;

/// A message file, at most `size` bytes (its record's size: every read
/// has a limit): open and one read into a buffer of that size, without
/// std::fs::read's stat and the read that finds the end.  A file shorter
/// than its record comes back short (the caller logs it).
pub fn read_message(path: &Path, size: u64) -> std::io::Result<Vec<u8>> {
    read_message_cold(path, size).map(|(v, _)| v)
}

/// read_message, and whether the file was not all in memory.  The first
/// read asks the kernel not to wait for the disk (RWF_NOWAIT): a file in
/// memory is read by it at once, and a cold one says so and is then read
/// as usual.
pub fn read_message_cold(path: &Path, size: u64) -> std::io::Result<(Vec<u8>, bool)> {
    let mut f = File::open(path)?;
    let want = size.min(MAX_PREALLOC) as usize;
    let mut v: Vec<u8> = Vec::with_capacity(want);
    let mut cold = false;
    if want > 0 {
        let iov = libc::iovec {
            iov_base: v.as_mut_ptr().cast(),
            iov_len: want,
        };
        // SAFETY: the iovec covers the vector's spare capacity, which
        // preadv2 only writes; the length is set to what it wrote.
        let n = unsafe { libc::preadv2(f.as_raw_fd(), &iov, 1, 0, libc::RWF_NOWAIT) };
        if n >= 0 {
            unsafe { v.set_len(n as usize) };
            cold = (n as usize) < want;
        } else {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN) => cold = true,
                // No RWF_NOWAIT here: an ordinary read.
                Some(libc::EOPNOTSUPP | libc::EINVAL | libc::ENOSYS) => {}
                _ => return Err(e),
            }
        }
        if v.len() as u64 >= size {
            return Ok((v, cold));
        }
    }
    let done = v.len() as u64;
    // preadv2 leaves the file offset where it was.
    if done > 0 {
        use std::io::Seek;
        f.seek(std::io::SeekFrom::Start(done))?;
    }
    f.take(size - done).read_to_end(&mut v)?;
    Ok((v, cold))
}

/// Message files read one after another, each at most its size; a file
/// that cannot be read is None.  When one is found cold, all the rest are
/// asked for at once before going on.  Also says whether any was cold.
pub fn read_messages(files: &[(PathBuf, u64)]) -> (Vec<Option<Vec<u8>>>, bool) {
    let mut out = Vec::with_capacity(files.len());
    let mut cold = false;
    for (i, (p, size)) in files.iter().enumerate() {
        match read_message_cold(p, *size) {
            Ok((v, c)) => {
                if c && !cold {
                    cold = true;
                    will_need(files[i + 1..].iter().map(|(p, _)| p.as_path()));
                }
                out.push(Some(v));
            }
            Err(_) => out.push(None),
        }
    }
    (out, cold)
}

/// Asks the kernel to start reading the files (their first AHEAD_BYTES),
/// without waiting for any.
fn will_need<'a>(paths: impl Iterator<Item = &'a Path>) {
    for p in paths {
        if let Ok(f) = File::open(p) {
            // SAFETY: an advisory call on an open descriptor.
            unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, AHEAD_BYTES, libc::POSIX_FADV_WILLNEED) };
        }
    }
}

/// Asks for the files on a thread of its own, so that the session does
/// not wait for the asking either; if that thread is behind, the request
/// is dropped (it is only a hint).
pub fn read_ahead(paths: Vec<PathBuf>) {
    static TX: OnceLock<Option<SyncSender<Vec<PathBuf>>>> = OnceLock::new();
    let tx = TX.get_or_init(|| {
        let (tx, rx) = sync_channel::<Vec<PathBuf>>(16);
        std::thread::Builder::new()
            .name("readahead".into())
            .spawn(move || {
                for batch in rx {
                    will_need(batch.iter().map(PathBuf::as_path));
                }
            })
            .ok()
            .map(|_| tx)
    });
    if let Some(tx) = tx {
        let _ = tx.try_send(paths);
    }
}

/// Where a reader going through a view of a mailbox (a list of messages
/// in order) has been read ahead to.
#[derive(Debug, Default, Clone)]
pub struct ReadAhead {
    /// The first index not yet asked for.
    next: usize,
    /// Reading at or past this index asks for the next window.
    mark: usize,
    active: bool,
}

impl ReadAhead {
    /// After reading the message at index `i` of a view of `n` (`cold`:
    /// it was not in memory): the indexes to ask for now, if any.  A cold
    /// read starts reading ahead; a reader that keeps coming is kept
    /// between half a window and a window and a half ahead.
    pub fn after(&mut self, i: usize, n: usize, cold: bool) -> std::ops::Range<usize> {
        let due = self.active && i >= self.mark;
        if !(cold || due) {
            return 0..0;
        }
        // Going on from where the last window ended, unless the reader
        // jumped away from it.
        let start = if self.active && self.next > i && self.next <= i + 2 * WINDOW {
            self.next
        } else {
            i + 1
        };
        let end = (start + WINDOW).min(n);
        if end <= start {
            // The end of the view: nothing more to ask for.
            self.active = false;
            return 0..0;
        }
        self.active = true;
        self.next = end;
        self.mark = end.saturating_sub(WINDOW / 2);
        start..end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_message_whole_short_or_bounded() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("1.");
        let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &body).unwrap();
        assert_eq!(read_message(&p, body.len() as u64).unwrap(), body);
        // Every read has a limit: the record's size.
        assert_eq!(read_message(&p, 1000).unwrap(), &body[..1000]);
        // A file shorter than its record comes back short.
        assert_eq!(read_message(&p, 400_000).unwrap(), body);
        assert_eq!(read_message(&p, 0).unwrap(), b"");
        let q = t.path().join("2.");
        std::fs::write(&q, b"x").unwrap();
        let (got, _) = read_messages(&[(p.clone(), 10), (t.path().join("none."), 5), (q, 1)]);
        assert_eq!(got, vec![Some(body[..10].to_vec()), None, Some(b"x".to_vec())]);
    }

    /// Whether any page of the file is in memory (mincore on a mapping).
    fn resident(p: &Path) -> bool {
        let f = File::open(p).unwrap();
        let len = f.metadata().unwrap().len() as usize;
        // SAFETY: a private read-only mapping of an open file, unmapped
        // before return; mincore fills one byte per page.
        unsafe {
            let m = libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_PRIVATE, f.as_raw_fd(), 0);
            assert_ne!(m, libc::MAP_FAILED);
            let mut v = vec![0u8; len.div_ceil(4096)];
            assert_eq!(libc::mincore(m, len, v.as_mut_ptr()), 0);
            libc::munmap(m, len);
            v.iter().any(|b| b & 1 != 0)
        }
    }

    #[test]
    fn a_read_says_whether_its_file_was_on_disk_only() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("1.");
        let body = vec![b'x'; 20_000];
        std::fs::write(&p, &body).unwrap();
        File::open(&p).unwrap().sync_all().unwrap();
        let (got, cold) = read_message_cold(&p, 20_000).unwrap();
        assert_eq!((got.len(), cold), (20_000, false), "just written: in memory");
        // Clean pages dropped from memory, as the kernel does under
        // pressure (not on a file system that keeps files in memory).
        let f = File::open(&p).unwrap();
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        if resident(&p) {
            eprintln!("{}: pages stay in memory here; cold read not checked", t.path().display());
            return;
        }
        let (got, cold) = read_message_cold(&p, 20_000).unwrap();
        assert_eq!(got, body);
        assert!(cold, "read from disk, and said so");
        assert!(!read_message_cold(&p, 20_000).unwrap().1, "in memory again");
    }

    #[test]
    fn reads_ahead_of_a_reader_that_keeps_coming() {
        let mut r = ReadAhead::default();
        // In memory: nothing is asked for.
        assert_eq!(r.after(0, 10_000, false), 0..0);
        assert_eq!(r.after(1, 10_000, false), 0..0);
        // A cold read asks for the next window.
        assert_eq!(r.after(2, 10_000, true), 3..3 + WINDOW);
        // Nothing more until the reader is half-way through it ...
        assert_eq!(r.after(3, 10_000, false), 0..0);
        assert_eq!(r.after(3 + WINDOW / 2 - 1, 10_000, false), 0..0);
        // ... then the window after it, and so on.
        let m = 3 + WINDOW / 2;
        assert_eq!(r.after(m, 10_000, false), 3 + WINDOW..3 + 2 * WINDOW);
        assert_eq!(r.after(m + 1, 10_000, false), 0..0);
        // The end of the view bounds it.
        let mut r = ReadAhead::default();
        assert_eq!(r.after(9_990, 10_000, true), 9_991..10_000);
        assert_eq!(r.after(9_999, 10_000, false), 0..0);
        // A reader that jumps elsewhere starts a window there.
        let mut r = ReadAhead::default();
        assert_eq!(r.after(0, 10_000, true), 1..1 + WINDOW);
        assert_eq!(r.after(5_000, 10_000, true), 5_001..5_001 + WINDOW);
    }
}
