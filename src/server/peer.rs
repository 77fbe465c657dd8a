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
/// a login.  An answer (a name, or none) is kept for `NAME_TTL`: a load
/// balancer, a webmail or a hub connects from a few addresses many times
/// a second, and each lookup is a resolver query on a blocking thread.
pub async fn cyrus_clienthost(peer: &str) -> String {
    let Ok(ip) = peer.parse::<std::net::IpAddr>() else {
        return if peer == "unix" {
            "[unix socket]".into()
        } else {
            format!("[{peer}]")
        };
    };
    let name = match names().get(ip) {
        Some(known) => known,
        None => {
            let work = tokio::task::spawn_blocking(move || reverse(&(ip, 0).into()));
            match tokio::time::timeout(std::time::Duration::from_secs(5), work).await {
                Ok(Ok(Ok(name))) => names().put(ip, Some(name)),
                // No name: known for as long as a name would be.
                Ok(Ok(Err(false))) => names().put(ip, None),
                // The resolver failed for now: asked again next time.
                _ => None,
            }
        }
    };
    match name {
        Some(name) => format!("{name} [{ip}]"),
        None => format!("[{ip}]"),
    }
}

/// How long a reverse lookup's answer is kept.
const NAME_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// Reverse lookups' answers, kept `NAME_TTL`; at most `MAX` addresses
/// (past that the table starts again).
struct Names(std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, (Option<String>, std::time::Instant)>>);

impl Names {
    const MAX: usize = 4096;

    /// The kept answer for `ip`: Some(name or none) while it is fresh.
    fn get(&self, ip: std::net::IpAddr) -> Option<Option<String>> {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&ip).filter(|(_, at)| at.elapsed() < NAME_TTL).map(|(n, _)| n.clone())
    }

    /// Keeps `name` for `ip`; returns it.
    fn put(&self, ip: std::net::IpAddr, name: Option<String>) -> Option<String> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= Self::MAX {
            m.clear();
        }
        m.insert(ip, (name.clone(), std::time::Instant::now()));
        name
    }
}

fn names() -> &'static Names {
    static NAMES: std::sync::OnceLock<Names> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| Names(Default::default()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_are_kept_and_the_table_is_bounded() {
        let t = Names(Default::default());
        let a: std::net::IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(t.get(a), None);
        assert_eq!(t.put(a, Some("mx.example.org".into())), Some("mx.example.org".into()));
        assert_eq!(t.get(a), Some(Some("mx.example.org".into())));
        let b: std::net::IpAddr = "192.0.2.2".parse().unwrap();
        t.put(b, None);
        assert_eq!(t.get(b), Some(None), "no name is an answer too");
        for i in 0..Names::MAX {
            t.put(std::net::IpAddr::from([10, 0, (i >> 8) as u8, i as u8]), None);
        }
        assert!(t.0.lock().unwrap().len() <= Names::MAX);
        // An answer past its time is asked again.
        t.0.lock()
            .unwrap()
            .insert(a, (Some("old".into()), std::time::Instant::now() - NAME_TTL));
        assert_eq!(t.get(a), None);
        // Loopback has a name on every system (/etc/hosts), and the
        // second call finds it kept.
        let first = cyrus_clienthost("127.0.0.1").await;
        assert!(first.ends_with(" [127.0.0.1]") || first == "[127.0.0.1]", "{first}");
        assert_eq!(cyrus_clienthost("127.0.0.1").await, first);
        assert!(names().get("127.0.0.1".parse().unwrap()).is_some());
    }
}
