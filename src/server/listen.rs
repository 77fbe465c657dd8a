//! Listening sockets: TCP (IPv4/IPv6), UNIX (with a mode), or inherited
//! from systemd socket activation (`LISTEN_FDS`, fds from 3).

use std::os::unix::fs::PermissionsExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// An accepted connection and who is on the other end.
pub enum Conn {
    Tcp(TcpStream, std::net::SocketAddr),
    Unix(UnixStream),
}

impl Conn {
    /// `host[addr]`-style peer text for logs; UNIX peers are `localhost[127.0.0.1]`-less.
    pub fn peer(&self) -> String {
        match self {
            Conn::Tcp(_, a) => a.ip().to_string(),
            Conn::Unix(_) => "unix".to_string(),
        }
    }

    /// Splits into read and write halves usable as one stream.
    pub fn into_io(self) -> Box<dyn Io> {
        match self {
            Conn::Tcp(s, _) => Box::new(s),
            Conn::Unix(s) => Box::new(s),
        }
    }
}

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + Sync {
    /// The stream itself, for a caller that takes it out of the event loop
    /// (a plain TCP or UNIX stream, found by downcasting).
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send>;
}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static> Io for T {
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }
}

/// A client connection to a Postfix-style endpoint (milters, policy
/// servers): `inet:host:port` (the host may be `[address]`) or
/// `unix:path` (a bare path is a UNIX socket too).
pub async fn connect_endpoint(endpoint: &str) -> std::io::Result<Box<dyn Io>> {
    if let Some(rest) = endpoint.strip_prefix("inet:") {
        let bad = || std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("bad endpoint \"{endpoint}\""));
        let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port: u16 = port.parse().map_err(|_| bad())?;
        let s = tokio::net::TcpStream::connect((host, port)).await?;
        let _ = s.set_nodelay(true);
        Ok(Box::new(s))
    } else {
        let path = endpoint.strip_prefix("unix:").unwrap_or(endpoint);
        Ok(Box::new(tokio::net::UnixStream::connect(path).await?))
    }
}

/// STARTTLS/STLS on a connection kept as split halves (pop3d, lmtpd):
/// rejoins them, runs the server handshake and splits the TLS stream
/// again.  After a failure the halves are dead ends: drop the connection.
pub async fn tls_upgrade_halves(
    r: &mut tokio::io::ReadHalf<Box<dyn Io>>,
    w: &mut tokio::io::BufWriter<tokio::io::WriteHalf<Box<dyn Io>>>,
    acc: std::sync::Arc<rustls::ServerConfig>,
) -> std::io::Result<(String, u32)> {
    let (dr, dw) = tokio::io::split(Box::new(tokio::io::duplex(1).0) as Box<dyn Io>);
    let old_r = std::mem::replace(r, dr);
    let old_w = std::mem::replace(w, tokio::io::BufWriter::new(dw)).into_inner();
    let t = Box::pin(tokio_rustls::TlsAcceptor::from(acc).accept(old_r.unsplit(old_w))).await?;
    let summary = crate::util::tls::server_summary(t.get_ref().1);
    let ssf = crate::util::tls::server_ssf(t.get_ref().1);
    let (nr, nw) = tokio::io::split(Box::new(t) as Box<dyn Io>);
    *r = nr;
    *w = tokio::io::BufWriter::new(nw);
    Ok((summary, ssf))
}

impl Listener {
    /// `[host]:port`, `host:port`, `0.0.0.0:port`, `[::]:port`.
    pub async fn bind_tcp(addr: &str) -> std::io::Result<Listener> {
        Ok(Listener::Tcp(TcpListener::bind(addr).await?))
    }

    /// Makes the directory a UNIX socket will be bound in when it is
    /// missing, open to the socket's clients (an MTA's LMTP client): the
    /// umask (077, as Cyrus's) would close it.
    pub fn make_socket_dir(path: &std::path::Path) {
        if let Some(d) = path.parent() {
            let _ = crate::util::make_open_dir(d);
        }
    }

    /// A UNIX socket at `path` (a stale socket file is replaced), chmod `mode`.
    pub fn bind_unix(path: &std::path::Path, mode: u32) -> std::io::Result<Listener> {
        if let Ok(m) = std::fs::symlink_metadata(path) {
            use std::os::unix::fs::FileTypeExt;
            if m.file_type().is_socket() {
                std::fs::remove_file(path)?;
            }
        }
        let l = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        Ok(Listener::Unix(l))
    }

    pub fn local_port(&self) -> Option<u16> {
        match self {
            Listener::Tcp(l) => l.local_addr().ok().map(|a| a.port()),
            Listener::Unix(_) => None,
        }
    }

    pub async fn accept(&self) -> std::io::Result<Conn> {
        match self {
            Listener::Tcp(l) => l.accept().await.map(|(s, a)| {
                // Replies are written whole; Nagle would hold the last
                // segment of each for a delayed ACK.
                let _ = s.set_nodelay(true);
                Conn::Tcp(s, a)
            }),
            Listener::Unix(l) => l.accept().await.map(|(s, _)| Conn::Unix(s)),
        }
    }

    /// The same listening socket for another runtime: its descriptor
    /// duplicated, to be registered there by `Shared::listener`.
    pub fn share(&self) -> std::io::Result<Shared> {
        use std::os::fd::AsFd;
        let (fd, unix) = match self {
            Listener::Tcp(l) => (l.as_fd().try_clone_to_owned()?, false),
            Listener::Unix(l) => (l.as_fd().try_clone_to_owned()?, true),
        };
        Ok(Shared { fd, unix })
    }

    /// Sockets passed by systemd (`LISTEN_PID` = us, `LISTEN_FDS` = n).
    pub fn from_systemd() -> std::io::Result<Vec<Listener>> {
        let pid_ok = std::env::var("LISTEN_PID").ok().and_then(|p| p.parse::<u32>().ok()) == Some(std::process::id());
        let n: i32 = std::env::var("LISTEN_FDS").ok().and_then(|n| n.parse().ok()).unwrap_or(0);
        if !pid_ok || n <= 0 {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for fd in 3..3 + n {
            use std::os::fd::FromRawFd;
            // SAFETY: systemd hands us fds 3..3+n as listening sockets we own.
            let domain = nix::sys::socket::getsockname::<nix::sys::socket::SockaddrStorage>(fd).map_err(std::io::Error::from)?;
            if domain.as_unix_addr().is_some() {
                let l = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
                l.set_nonblocking(true)?;
                out.push(Listener::Unix(UnixListener::from_std(l)?));
            } else {
                let l = unsafe { std::net::TcpListener::from_raw_fd(fd) };
                l.set_nonblocking(true)?;
                out.push(Listener::Tcp(TcpListener::from_std(l)?));
            }
        }
        Ok(out)
    }
}

/// A listening socket shared with another runtime (`Listener::share`).
pub struct Shared {
    fd: std::os::fd::OwnedFd,
    unix: bool,
}

impl Shared {
    /// The listener, registered with the current runtime.
    pub fn listener(self) -> std::io::Result<Listener> {
        Ok(if self.unix {
            Listener::Unix(UnixListener::from_std(std::os::unix::net::UnixListener::from(self.fd))?)
        } else {
            Listener::Tcp(TcpListener::from_std(std::net::TcpListener::from(self.fd))?)
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_shared_listener_accepts_in_another_runtime() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (l, shared) = rt.block_on(async {
            let l = super::Listener::bind_tcp("127.0.0.1:0").await.unwrap();
            let s = l.share().unwrap();
            (l, s)
        });
        let port = l.local_port().unwrap();
        // The other runtime, on its own thread, takes the connection; this
        // one never accepts.
        let other = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let l = shared.listener().unwrap();
                assert_eq!(l.local_port(), Some(port));
                matches!(l.accept().await.unwrap(), super::Conn::Tcp(..))
            })
        });
        let _c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        assert!(other.join().unwrap());
        drop(l);
    }
}
