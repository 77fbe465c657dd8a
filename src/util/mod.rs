//! Helpers with no mail knowledge (Postfix's `util/`): option parsing,
//! durable file writes, bounded reads, error texts.

/// Seconds since the epoch (0 if the clock is before it).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// SHA-1 of `data` (a message's GUID, as Cyrus's).
pub fn sha1(data: &[u8]) -> [u8; 20] {
    use sha1::Digest;
    sha1::Sha1::digest(data).into()
}

pub mod atomic;
pub mod codec;
pub use codec::{base64_decode, base64_encode, rfc822_date};
pub mod getopt;
pub mod json;
pub mod lines;
pub mod tls;

/// Makes `dir` and its missing parents searchable by all (0755) whatever
/// the umask: a directory other users' programs go through (the
/// configuration directory an MTA's LMTP client reaches a socket in).
/// One that exists is left as it is.
pub fn make_open_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        make_open_dir(parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// The C library's text for an I/O error ("No such file or directory"),
/// without Rust's " (os error N)" suffix, as the originals print it.
pub fn strerror(err: &std::io::Error) -> String {
    match err.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_string(),
        None => err.to_string(),
    }
}

/// sysexits(3) codes used by the originals.
pub mod exit {
    pub const OK: i32 = 0;
    pub const USAGE: i32 = 64;
    pub const DATAERR: i32 = 65;
    pub const NOINPUT: i32 = 66;
    pub const UNAVAILABLE: i32 = 69;
    pub const SOFTWARE: i32 = 70;
    pub const OSERR: i32 = 71;
    pub const IOERR: i32 = 74;
    pub const TEMPFAIL: i32 = 75;
    pub const NOPERM: i32 = 77;
    pub const CONFIG: i32 = 78;
}

/// Compares two byte strings in time that depends only on their lengths
/// (for password digests).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// Runs blocking `f` from async code: on a multi-threaded runtime the
/// worker's other tasks move elsewhere meanwhile (`block_in_place`); a
/// single-threaded runtime (which `block_in_place` would panic on) simply
/// waits.
pub fn block_inline<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}
