//! The daemon skeleton over real sockets: connection limit taken before
//! accept, a panicking connection ends alone, idle deadline, bounded lines,
//! drain on shutdown, reload keeping the old config on failure.

use mumail::server::{self, Conn, Limits, Listener, Reloadable, Service, Shutdown};
use mumail::util::lines::{Line, LineBuffer};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Echo;

impl Service for Echo {
    async fn serve(self: Arc<Self>, conn: Conn) {
        let mut io = conn.into_io();
        let mut buf = LineBuffer::new(16);
        let mut q = std::collections::VecDeque::new();
        loop {
            match server::read_line(&mut io, &mut buf, &mut q, Duration::from_millis(300)).await {
                Ok(Some(Line::Complete(l))) if l == b"panic" => panic!("requested by the test"),
                Ok(Some(Line::Complete(l))) => {
                    let _ = io.write_all(&[b"+", &l[..], b"\r\n"].concat()).await;
                }
                Ok(Some(Line::TooLong)) => {
                    let _ = io.write_all(b"-too long\r\n").await;
                }
                Ok(None) => return,
                Err(_) => {
                    let _ = io.write_all(b"-timeout\r\n").await;
                    return;
                }
            }
        }
    }
}

async fn line(s: &mut tokio::net::TcpStream) -> String {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    while tokio::time::timeout(Duration::from_secs(5), s.read(&mut b))
        .await
        .expect("reply")
        .unwrap()
        == 1
    {
        out.push(b[0]);
        if b[0] == b'\n' {
            break;
        }
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skeleton_behaviour() {
    // The default hook can spend longer than the 300 ms idle deadline
    // symbolising a backtrace (RUST_BACKTRACE set), timing out client `a`
    // and freeing its permit; the test is about surviving, not printing.
    std::panic::set_hook(Box::new(|_| {}));
    let l = Listener::bind_tcp("127.0.0.1:0").await.unwrap();
    let port = l.local_port().unwrap();
    let (stop, rx) = Shutdown::new();
    let limits = Limits {
        max_conns: 2,
        session_timeout: Some(Duration::from_secs(30)),
        drain_timeout: Duration::from_secs(2),
        keepalive: None,
    };
    let srv = tokio::spawn(server::run(vec![l], Arc::new(Echo), limits, rx));
    let addr = format!("127.0.0.1:{port}");

    let mut a = tokio::net::TcpStream::connect(&addr).await.unwrap();
    a.write_all(b"hello\r\n").await.unwrap();
    assert_eq!(line(&mut a).await, "+hello\r\n");
    a.write_all(&[b'x'; 40]).await.unwrap();
    a.write_all(b"\nok\n").await.unwrap();
    assert_eq!(line(&mut a).await, "-too long\r\n");
    assert_eq!(line(&mut a).await, "+ok\r\n");

    // A panicking connection ends alone; the daemon keeps serving.
    let mut p = tokio::net::TcpStream::connect(&addr).await.unwrap();
    p.write_all(b"panic\n").await.unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), p.read_to_end(&mut sink)).await;

    // With two permits, a third client waits until one leaves.
    let mut b = tokio::net::TcpStream::connect(&addr).await.unwrap();
    b.write_all(b"b\n").await.unwrap();
    assert_eq!(line(&mut b).await, "+b\r\n");
    let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
    c.write_all(b"c\n").await.unwrap();
    let mut byte = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(150), c.read(&mut byte)).await.is_err(),
        "third client served over the limit"
    );
    drop(a);
    assert_eq!(line(&mut c).await, "+c\r\n");

    // Idle deadline.
    assert_eq!(line(&mut b).await, "-timeout\r\n");

    stop.trigger();
    let left = tokio::time::timeout(Duration::from_secs(5), srv).await.unwrap().unwrap();
    assert!(left <= 1);
}

#[test]
fn reload_keeps_old_config_on_error() {
    let r = Reloadable::new(1);
    assert!(r.reload(|| Err::<i32, &str>("bad file")).is_err());
    assert_eq!(*r.get(), 1);
    r.reload(|| Ok::<i32, &str>(2)).unwrap();
    assert_eq!(*r.get(), 2);
}

#[test]
fn unix_socket_mode() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("mux");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let _l = Listener::bind_unix(&p, 0o777).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o777);
        drop(_l);
        // A stale socket is replaced.
        let _l2 = Listener::bind_unix(&p, 0o700).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o700);
    });
}

/// Child half of `systemd_socket_activation` (re-executed with the env set).
#[test]
fn systemd_child() {
    if std::env::var("MUMAIL_SYSTEMD_CHILD").is_err() {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let ls = Listener::from_systemd().unwrap();
        assert_eq!(ls.len(), 1);
        let c = ls[0].accept().await.unwrap();
        let mut io = c.into_io();
        io.write_all(b"activated\n").await.unwrap();
    });
}

#[test]
fn systemd_socket_activation() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let fd = l.as_raw_fd();
    let exe = std::env::current_exe().unwrap();
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg("LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" --exact systemd_child --test-threads=1")
        .arg(&exe)
        .env("MUMAIL_SYSTEMD_CHILD", "1")
        .stdout(std::process::Stdio::null());
    // SAFETY: only dup2 and fcntl between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if fd != 3 && libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // When the listener already is fd 3, dup2 would leave its
            // close-on-exec flag set and the child would find no socket
            // (a rare CI failure: the child never answered).
            if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut got = String::new();
    std::io::Read::read_to_string(&mut s, &mut got).unwrap();
    assert_eq!(got, "activated\n");
    assert!(child.wait().unwrap().success());
}

/// Child half of `drops_privilege` (re-executed as root).
#[test]
fn privilege_child() {
    if std::env::var("MUMAIL_PRIV_CHILD").is_err() {
        return;
    }
    mumail::server::privs::drop_to("nobody").unwrap();
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    assert_eq!(nix::unistd::getuid(), nobody.uid);
    assert_eq!(nix::unistd::geteuid(), nobody.uid);
    assert!(nix::unistd::setuid(nix::unistd::Uid::from_raw(0)).is_err(), "could regain root");
    assert!(mumail::server::privs::drop_to("root").is_ok(), "not root any more: a no-op");
}

#[test]
fn drops_privilege() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("not root: privilege drop not exercised");
        return;
    }
    let st = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "privilege_child", "--test-threads=1"])
        .env("MUMAIL_PRIV_CHILD", "1")
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    assert!(matches!(
        mumail::server::privs::drop_to("root"),
        Err(mumail::server::privs::PrivError::IsRoot(_))
    ));
}

#[test]
fn pid_file_written_and_removed() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("saslauthd.pid");
    {
        let _pf = server::PidFile::create(&p).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), format!("{}\n", std::process::id()));
    }
    assert!(!p.exists());
}

#[tokio::test]
async fn binds_ipv6_loopback() {
    match Listener::bind_tcp("[::1]:0").await {
        Ok(l) => assert!(l.local_port().unwrap() > 0),
        Err(e) => eprintln!("no IPv6 loopback here: {e}"),
    }
}

/// Child half of `panic_hook_logs_panic_line`.
#[test]
fn panic_child() {
    let Ok(path) = std::env::var("MUMAIL_PANIC_LOG") else { return };
    let logger = Arc::new(mumail::log::Logger::from_maillog_file("mumail/test", 2, &path).unwrap());
    mumail::log::install_panic_hook(logger);
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        let h = tokio::spawn(async { panic!("boom in one connection") });
        assert!(h.await.is_err());
    });
}

#[test]
fn panic_hook_logs_panic_line() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("maillog");
    let st = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "panic_child", "--test-threads=1"])
        .env("MUMAIL_PANIC_LOG", &log)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "the process survives a panicking task");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("mumail/test[") && text.contains("]: panic: boom in one connection at "),
        "{text}"
    );
}
