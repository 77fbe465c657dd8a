//! Names of peers: the PTR lookup behind Postfix's `name[addr]` and
//! Cyrus's `name [addr]` client texts.

/// The PTR name of an address; Err(true) for a temporary failure.
pub fn reverse(sa: &std::net::SocketAddr) -> Result<String, bool> {
    use nix::sys::socket::{SockaddrLike, SockaddrStorage};
    let addr = SockaddrStorage::from(*sa);
    let mut host = [0 as libc::c_char; 1025];
    // SAFETY: addr is a valid socket address of the length given; host
    // is a writable buffer of the length given.
    let rc = unsafe {
        libc::getnameinfo(
            addr.as_ptr(),
            addr.len(),
            host.as_mut_ptr(),
            host.len() as libc::socklen_t,
            std::ptr::null_mut(),
            0,
            libc::NI_NAMEREQD,
        )
    };
    if rc != 0 {
        return Err(rc == libc::EAI_AGAIN);
    }
    // SAFETY: getnameinfo NUL-terminated the buffer on success.
    let name = unsafe { std::ffi::CStr::from_ptr(host.as_ptr()) }.to_string_lossy().into_owned();
    Ok(name)
}

/// Cyrus's client host text for logs and Received fields: `name [addr]`
/// when the address has a name, `[addr]` when it has none, `[unix
/// socket]` for a UNIX-domain peer (`peer` is `Conn::peer`'s text).  The
/// lookup is bounded by a few seconds, as a slow resolver must not hold
/// a login.
pub async fn cyrus_clienthost(peer: &str) -> String {
    let Ok(ip) = peer.parse::<std::net::IpAddr>() else {
        return if peer == "unix" {
            "[unix socket]".into()
        } else {
            format!("[{peer}]")
        };
    };
    let work = tokio::task::spawn_blocking(move || reverse(&(ip, 0).into()));
    match tokio::time::timeout(std::time::Duration::from_secs(5), work).await {
        Ok(Ok(Ok(name))) => format!("{name} [{ip}]"),
        _ => format!("[{ip}]"),
    }
}

/// A client's Cyrus host text (`cyrus_clienthost`), looked up when a log
/// line or a Received field first needs it, not for every connection.
pub struct ClientHost {
    peer: String,
    host: tokio::sync::OnceCell<String>,
}

impl ClientHost {
    pub fn new(peer: &str) -> ClientHost {
        ClientHost {
            peer: peer.to_string(),
            host: tokio::sync::OnceCell::new(),
        }
    }

    pub async fn get(&self) -> &str {
        self.host.get_or_init(|| cyrus_clienthost(&self.peer)).await
    }
}
