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
    let l = Listener::bind_tcp("127.0.0.1:0").await.unwrap();
    let port = l.local_port().unwrap();
    let (stop, rx) = Shutdown::new();
    let limits = Limits {
        max_conns: 2,
        session_timeout: Some(Duration::from_secs(30)),
        drain_timeout: Duration::from_secs(2),
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
        tokio::time::timeout(Duration::from_millis(150), c.read(&mut byte))
            .await
            .is_err(),
        "third client served over the limit"
    );
    drop(a);
    assert_eq!(line(&mut c).await, "+c\r\n");

    // Idle deadline.
    assert_eq!(line(&mut b).await, "-timeout\r\n");

    stop.trigger();
    let left = tokio::time::timeout(Duration::from_secs(5), srv)
        .await
        .unwrap()
        .unwrap();
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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let _l = Listener::bind_unix(&p, 0o777).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o777
        );
        drop(_l);
        // A stale socket is replaced.
        let _l2 = Listener::bind_unix(&p, 0o700).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o700
        );
    });
}
