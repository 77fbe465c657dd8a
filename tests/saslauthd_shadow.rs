//! saslauthd with the `shadow` mechanism, over its real socket, against the
//! real saslauthd 2.1.28 (Debian sasl2-bin) on the same private shadow
//! file: same replies byte for byte, the real `testsaslauthd` as client,
//! bad input, daemonising, the cache, and no password in the log.

mod harness;
use harness::*;
use std::path::Path;
use std::time::{Duration, Instant};

const REAL: &str = "/usr/sbin/saslauthd";
const TESTSASLAUTHD: &str = "/usr/sbin/testsaslauthd";

fn cases() -> Vec<(&'static [u8], &'static [u8], &'static [u8], &'static [u8])> {
    vec![
        (b"u7", b"testpw", b"imap", b""),
        (b"u7", b"wrong", b"imap", b""),
        (b"yes1", b"testpw", b"smtp", b""),
        (b"md5u", b"testpw", b"pop", b""),
        (b"md5u", b"testpW", b"pop", b""),
        (b"locked", b"anything", b"imap", b""),
        (b"nobodyhere", b"x", b"imap", b""),
        (b"", b"x", b"imap", b""),
        (b"u7", b"", b"imap", b""),
        (b"u7", b"testpw", b"", b""),
        (b"u7", b"testpw", b"imap", b"realm.test"),
    ]
}

#[test]
fn shadow_matches_real_saslauthd() {
    if !can_run("shadow differential", &[REAL, TESTSASLAUTHD, "/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let binds = private_accounts(d.path());
    let real = saslauthd(
        Path::new(REAL),
        &binds,
        &d.path().join("real"),
        &["-a", "shadow", "-n", "2"],
        &[],
        &d.path().join("real.log"),
    );
    let ours = saslauthd(
        &bin("saslauthd"),
        &binds,
        &d.path().join("ours"),
        &["-a", "shadow"],
        &[],
        &d.path().join("ours.log"),
    );
    for (l, p, s, r) in cases() {
        let want = mux(&d.path().join("real/mux"), l, p, s, r);
        let got = mux(&d.path().join("ours/mux"), l, p, s, r);
        assert_eq!(
            got,
            want,
            "login={:?} service={:?}: ours {:?} real {:?}",
            String::from_utf8_lossy(l),
            String::from_utf8_lossy(s),
            reply_text(&got),
            reply_text(&want)
        );
    }
    // A field over 256 bytes.
    let long = vec![b'u'; 300];
    assert_eq!(
        mux(&d.path().join("ours/mux"), &long, b"x", b"imap", b""),
        mux(&d.path().join("real/mux"), &long, b"x", b"imap", b"")
    );

    // The real testsaslauthd against our daemon.
    let ts = |user: &str, pw: &str| {
        std::process::Command::new(TESTSASLAUTHD)
            .args([
                "-f",
                d.path().join("ours/mux").to_str().unwrap(),
                "-u",
                user,
                "-p",
                pw,
                "-s",
                "imap",
            ])
            .output()
            .unwrap()
    };
    let ok = ts("u7", "testpw");
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "0: OK \"Success.\"\n");
    assert_eq!(ok.status.code(), Some(0));
    let no = ts("u7", "wrong");
    assert_eq!(String::from_utf8_lossy(&no.stdout), "0: NO \"authentication failed\"\n");
    assert_eq!(no.status.code(), Some(255));

    // Our testsaslauthd against the real daemon prints the same.
    let ours_ts = std::process::Command::new(bin("testsaslauthd"))
        .args([
            "-f",
            d.path().join("real/mux").to_str().unwrap(),
            "-u",
            "u7",
            "-p",
            "testpw",
            "-R",
            "2",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&ours_ts.stdout), "0: OK \"Success.\"\n1: OK \"Success.\"\n");
    drop(real);
    drop(ours);

    // Passwords never reach the log, whatever the verbosity (-d implies -V).
    let log = std::fs::read_to_string(d.path().join("ours.log")).unwrap();
    assert!(
        log.contains("auth failure: [user=u7] [service=imap] [realm=] [mech=shadow] [reason=Incorrect password]"),
        "{log}"
    );
    for pw in ["testpw", "wrong", "testpW", "anything"] {
        assert!(!log.contains(pw), "password {pw:?} in the log:\n{log}");
    }
}

#[test]
fn bad_input_never_hurts() {
    if !can_run("bad input", &["/usr/bin/unshare"]) {
        return;
    }
    use std::io::{Read, Write};
    let d = tempfile::tempdir().unwrap();
    let binds = private_accounts(d.path());
    let mut p = saslauthd(
        &bin("saslauthd"),
        &binds,
        &d.path().join("run"),
        &["-a", "shadow"],
        &[],
        &d.path().join("log"),
    );
    let muxp = d.path().join("run/mux");
    let rss = |pid: u32| -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        s.lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    // The daemon is the child of unshare's exec: same pid.
    let pid = p.child.id();
    // Slowloris: clients that send nothing do not block others.
    let idle: Vec<_> = (0..50).map(|_| std::os::unix::net::UnixStream::connect(&muxp).unwrap()).collect();
    assert_eq!(reply_text(&mux(&muxp, b"u7", b"testpw", b"imap", b"")), "OK");
    // Truncated requests: the client gives up; the daemon closes.
    for cut in [1usize, 2, 5, 9, 12] {
        let full = mumail::proto::saslauthd::encode_request(b"u7", b"testpw", b"imap", b"");
        let mut s = std::os::unix::net::UnixStream::connect(&muxp).unwrap();
        s.write_all(&full[..cut]).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        assert!(out.is_empty(), "truncated request answered: {out:?}");
    }
    // A request sent in two parts is answered once it is whole; bytes after
    // a request do not take its reply away (answered on the spot, or after
    // the mechanism's check).
    let full = mumail::proto::saslauthd::encode_request(b"u7", b"testpw", b"imap", b"");
    let null = mumail::proto::saslauthd::encode_request(b"", b"x", b"imap", b"");
    for (first, rest, want) in [
        (&full[..5], full[5..].to_vec(), "OK"),
        (&full[..], b"trailing garbage".to_vec(), "OK"),
        (&null[..], b"trailing garbage".to_vec(), "NO NULL login received"),
    ] {
        let mut s = std::os::unix::net::UnixStream::connect(&muxp).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(first).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let _ = s.write_all(&rest);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        assert_eq!(reply_text(&out), want, "{first:?} then {rest:?}");
    }
    // Zero lengths.
    assert_eq!(reply_text(&mux(&muxp, b"", b"", b"", b"")), "NO NULL login received");
    // 10,000 garbage connections.
    let before = rss(pid);
    let start = Instant::now();
    for i in 0..10_000u32 {
        let mut s = std::os::unix::net::UnixStream::connect(&muxp).unwrap();
        let garbage: Vec<u8> = (0..(i % 40))
            .map(|j| (i.wrapping_mul(31).wrapping_add(j * 7) % 256) as u8)
            .collect();
        let _ = s.write_all(&garbage);
        if i % 2 == 0 {
            let _ = s.write_all(&[0xff, 0xff]);
        }
    }
    drop(idle);
    assert_eq!(
        reply_text(&mux(&muxp, b"u7", b"testpw", b"imap", b"")),
        "OK",
        "still serving after {:?}",
        start.elapsed()
    );
    let after = rss(pid);
    assert!(after < before + 64 * 1024, "memory grew from {before} kB to {after} kB");
    p.stop();
}

#[test]
fn daemonises_with_pid_file_and_socket_mode() {
    if !can_run("daemonise", &["/usr/bin/unshare"]) {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("run");
    // Without -d: the parent returns once the child serves (Type=forking).
    let st = std::process::Command::new(bin("saslauthd"))
        .args(["-a", "shadow", "-m", run.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(st.success());
    let pid: i32 = std::fs::read_to_string(run.join("saslauthd.pid")).unwrap().trim().parse().unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    assert_eq!(std::fs::metadata(run.join("mux")).unwrap().permissions().mode() & 0o777, 0o777);
    assert_eq!(
        reply_text(&mux(&run.join("mux"), b"nobody-such", b"x", b"imap", b"")),
        "NO Invalid username"
    );
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM).unwrap();
    wait_for("pid file removal", Duration::from_secs(10), || !run.join("saslauthd.pid").exists());
    // Start-up errors as saslauthd words them.
    let out = std::process::Command::new(bin("saslauthd"))
        .args(["-a", "shadow", "-m", "relative", "-d"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(":-m requires an absolute pathname"));
    let out = std::process::Command::new(bin("saslauthd"))
        .args(["-a", "bogus", "-m", run.to_str().unwrap(), "-d"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown authentication mechanism: bogus"));
    let out = std::process::Command::new(bin("saslauthd"))
        .args(["-a", "sasldb", "-m", run.to_str().unwrap(), "-d"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sasldb"));
}

#[test]
fn cache_answers_without_the_backend() {
    if !can_run("cache", &["/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let binds = private_accounts(d.path());
    let cached = saslauthd(
        &bin("saslauthd"),
        &binds,
        &d.path().join("c"),
        &["-a", "shadow", "-c", "-t", "600"],
        &[],
        &d.path().join("c.log"),
    );
    let plain = saslauthd(
        &bin("saslauthd"),
        &binds,
        &d.path().join("p"),
        &["-a", "shadow"],
        &[],
        &d.path().join("p.log"),
    );
    let (c, p) = (d.path().join("c/mux"), d.path().join("p/mux"));
    assert_eq!(reply_text(&mux(&c, b"u7", b"testpw", b"imap", b"")), "OK");
    // The directory changes u7's password (same inode, as passwd(1) would not,
    // but as a bind-mounted file must).
    let shadow = d.path().join("shadow");
    let text = std::fs::read_to_string(&shadow).unwrap().replace(
        "$6$saltsalt$VBFFeVHdeQeT5fvFaHfOXzT9tShDx.GqV.MDHnrJOLfAZnXxHf0bKmtUZoIftgtgMXLdzhaVh7Tzf2TQjufJz0",
        "$1$saltsalt$XBF9f0dels9PmAf924c2l.x",
    );
    std::fs::write(&shadow, text).unwrap();
    assert_eq!(
        reply_text(&mux(&p, b"u7", b"testpw", b"imap", b"")),
        "NO Incorrect password",
        "the backend now refuses"
    );
    assert_eq!(
        reply_text(&mux(&c, b"u7", b"testpw", b"imap", b"")),
        "OK",
        "a cache hit does not ask the backend"
    );
    assert_eq!(
        reply_text(&mux(&c, b"u7", b"testpw", b"pop", b"")),
        "NO Incorrect password",
        "keyed by service"
    );
    assert_eq!(
        reply_text(&mux(&c, b"u7", b"other", b"imap", b"")),
        "NO Incorrect password",
        "another password is checked"
    );
    drop(cached);
    drop(plain);
}
