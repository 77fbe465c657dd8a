//! Crash safety: kill -9 lmtpd in the middle of a concurrent LMTP load;
//! after a restart every message that got `250` is there exactly once and
//! readable, the index agrees with the files, and `reconstruct` finds
//! nothing to repair.

mod harness;
use harness::*;
use std::process::Command;
use std::time::Duration;

const LOAD: &str = r#"
import smtplib, sys, threading
sock, total, acked_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
users = ['u7', 'yes1', 'md5u']
lock = threading.Lock()
acked = open(acked_path, 'a')
nxt = [0]
def worker():
    try:
        l = smtplib.LMTP(sock)
        while True:
            with lock:
                i = nxt[0]; nxt[0] += 1
            if i >= total:
                break
            mid = '<crash-%d@mumail.test>' % i
            body = ('Message-ID: %s\r\nSubject: load %d\r\n\r\n' % (mid, i)) + ('x' * 70 + '\r\n') * 60
            try:
                refused = l.sendmail('load@mumail.test', [users[i % 3]], body.encode())
            except Exception:
                return
            if not refused:
                with lock:
                    acked.write('%s %s\n' % (users[i % 3], mid)); acked.flush()
    except Exception:
        return
ts = [threading.Thread(target=worker) for _ in range(10)]
for t in ts: t.start()
for t in ts: t.join()
"#;

const CHECK: &str = r#"
import imaplib, sys, collections
port, acked_path = int(sys.argv[1]), sys.argv[2]
want = collections.defaultdict(set)
for line in open(acked_path):
    u, mid = line.split()
    want[u].add(mid)
total = 0
for u in ('u7', 'yes1', 'md5u'):
    M = imaplib.IMAP4('127.0.0.1', port)
    M.login(u, 'testpw')
    typ, data = M.select('INBOX', readonly=True)
    n = int(data[0])
    seen = collections.Counter()
    if n:
        typ, data = M.fetch('1:*', '(RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)] BODY.PEEK[TEXT]<0.10>)')
        for item in data:
            if isinstance(item, tuple) and b'MESSAGE-ID' in item[0].upper():
                mid = item[1].decode().split(':', 1)[1].strip()
                seen[mid] += 1
    dups = [m for m, c in seen.items() if c > 1]
    assert not dups, (u, dups[:5])
    missing = want[u] - set(seen)
    assert not missing, (u, len(missing), sorted(missing)[:5])
    total += n
    M.logout()
print('acked', sum(len(v) for v in want.values()), 'stored', total)
"#;

#[test]
fn kill_9_during_lmtp_load_loses_nothing_acknowledged() {
    if !can_run("crash", &["/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let mut b = Backend::start(d.path(), "");
    python(
        // (An admin gets no INBOX at login, as in Cyrus: md5u makes its own.)
        "import imaplib, sys\nfor u in ('u7','yes1','md5u'):\n    M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1])); M.login(u, 'testpw')\n    \
         if u == 'md5u': assert M.create('user/md5u')[0] == 'OK'\n    M.logout()\n",
        &[&b.imap_port.to_string()],
    );
    let acked = d.path().join("acked");
    let total = 5000;
    let mut load = Command::new("python3")
        .arg("-c")
        .arg(LOAD)
        .args([b.lmtp_sock.to_str().unwrap(), &total.to_string(), acked.to_str().unwrap()])
        .spawn()
        .unwrap();
    // Kill lmtpd once a good part of the load is acknowledged.
    wait_for("deliveries", Duration::from_secs(600), || {
        std::fs::read_to_string(&acked).map(|s| s.lines().count()).unwrap_or(0) >= total / 3
    });
    let mut l = b.lmtpd.take().unwrap();
    l.child.kill().unwrap();
    let _ = l.child.wait();
    let _ = load.wait();
    let n_acked = std::fs::read_to_string(&acked).unwrap().lines().count();
    assert!(n_acked < total, "the kill came too late to test anything");
    b.start_lmtpd();

    let out = python(CHECK, &[&b.imap_port.to_string(), acked.to_str().unwrap()]);
    assert!(out.contains(&format!("acked {n_acked} ")), "{out}");

    // The index agrees with the files: nothing to repair.
    let o = Command::new(bin("reconstruct"))
        .args(["-C", b.conf.to_str().unwrap(), "-n"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}{}", String::from_utf8_lossy(&o.stderr));
    let repairs: Vec<&str> = text.lines().filter(|l| l.contains(": ") && !l.contains(": cleanup:")).collect();
    assert!(repairs.is_empty(), "{repairs:?}");
    assert!(text.contains("user.u7\n"), "{text}");
    // Quota usage agrees with the records too.
    let o = Command::new(bin("quota"))
        .args(["-C", b.conf.to_str().unwrap(), "-f"])
        .output()
        .unwrap();
    let q = String::from_utf8_lossy(&o.stdout);
    assert!(!q.contains("was"), "{q}");
    // Cyrus 3.x's report: all four resources of the root, one line each.
    assert!(q.starts_with("   Quota   % Used     Used             Resource Root\n"), "{q}");
    for res in ["STORAGE", "MESSAGE", "X-ANNOTATION-STORAGE", "X-NUM-FOLDERS"] {
        assert!(q.lines().any(|l| l.ends_with(&format!("{res:>20} user.u7"))), "{res}: {q}");
    }
}

#[test]
fn reconstruct_rebuilds_and_repairs() {
    if !can_run("reconstruct", &["/usr/bin/unshare"]) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    // Immediate expunge: an expunged message's file is gone at once, so
    // one that reappears is a stray (with delayed expunge it is kept for
    // unexpunge and reconstruct leaves it: tests/store_expire.rs).
    let b = Backend::start(d.path(), "expunge_mode: immediate\n");
    python(
        r#"
import imaplib, smtplib, sys
M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1])); M.login('u7', 'testpw'); M.logout()
l = smtplib.LMTP(sys.argv[2])
for i in range(4):
    l.sendmail('a@b', ['u7'], ('Message-ID: <r%d@x>\r\nSubject: r%d\r\n\r\nbody %d\r\n' % (i, i, i)).encode())
l.quit()
M = imaplib.IMAP4('127.0.0.1', int(sys.argv[1])); M.login('u7', 'testpw'); M.select('INBOX')
M.store('2', '+FLAGS', '(\\Deleted)'); M.expunge(); M.logout()
"#,
        &[&b.imap_port.to_string(), b.lmtp_sock.to_str().unwrap()],
    );
    let dir = d.path().join("spool/u/user/u7");
    // Damage: a committed file vanishes, an expunged one reappears, a
    // stray file shows up below UIDNEXT... no: a file above UIDNEXT.
    std::fs::remove_file(dir.join("3.")).unwrap();
    std::fs::write(dir.join("2."), b"Subject: resurrected?\r\n\r\n").unwrap();
    std::fs::write(dir.join("9."), b"Subject: uncommitted\r\n\r\n").unwrap();
    let run = |args: &[&str]| {
        let mut a = vec!["-C", b.conf.to_str().unwrap()];
        a.extend_from_slice(args);
        let o = Command::new(bin("reconstruct")).args(&a).output().unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let dry = run(&["-n", "user.u7"]);
    assert!(dry.contains("user.u7: message file for uid 3 is missing"), "{dry}");
    assert!(dry.contains("user.u7: removed file of expunged uid 2"), "{dry}");
    assert!(dry.contains("user.u7: cleanup: removed uncommitted file 9."), "{dry}");
    assert!(dir.join("2.").exists(), "-n changes nothing");
    let real = run(&["user.u7"]);
    assert_eq!(real, dry);
    assert!(!dir.join("2.").exists() && !dir.join("9.").exists());
    assert_eq!(run(&["-q", "user.u7"]), "", "second run: nothing left");
    let out = python(
        "import imaplib, sys\nM = imaplib.IMAP4('127.0.0.1', int(sys.argv[1])); M.login('u7', 'testpw'); M.select('INBOX')\nprint(M.fetch('1:*', '(UID)'))\n",
        &[&b.imap_port.to_string()],
    );
    assert!(out.contains("[b'1 (UID 1)', b'2 (UID 4)']"), "{out}");
}
