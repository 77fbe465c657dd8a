//! Names of peers: the PTR lookup behind Postfix's `name[addr]` and
//! Cyrus's `name [addr]` client texts.

/// The PTR name of an address; Err(true) for a temporary failure.
pub fn reverse(sa: &std::net::SocketAddr) -> Result<String, bool> {
    let (storage, len) = match sa {
        std::net::SocketAddr::V4(a) => {
            // SAFETY: a zeroed sockaddr_in is valid; the fields are set below.
            let mut s: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            s.sin_family = libc::AF_INET as libc::sa_family_t;
            s.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            let mut st: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            // SAFETY: sockaddr_storage is larger than sockaddr_in.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    &s as *const _ as *const u8,
                    &mut st as *mut _ as *mut u8,
                    std::mem::size_of::<libc::sockaddr_in>(),
                )
            };
            (st, std::mem::size_of::<libc::sockaddr_in>())
        }
        std::net::SocketAddr::V6(a) => {
            // SAFETY: as above, for sockaddr_in6.
            let mut s: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            s.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            s.sin6_addr.s6_addr = a.ip().octets();
            let mut st: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            unsafe {
                std::ptr::copy_nonoverlapping(
                    &s as *const _ as *const u8,
                    &mut st as *mut _ as *mut u8,
                    std::mem::size_of::<libc::sockaddr_in6>(),
                )
            };
            (st, std::mem::size_of::<libc::sockaddr_in6>())
        }
    };
    let mut host = [0 as libc::c_char; 1025];
    // SAFETY: storage/len describe a valid socket address; host is a
    // writable buffer of the length given.
    let rc = unsafe {
        libc::getnameinfo(
            &storage as *const _ as *const libc::sockaddr,
            len as libc::socklen_t,
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
