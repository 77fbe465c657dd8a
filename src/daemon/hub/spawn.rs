//! Running delivery commands as other users (pipe(8)'s `user=`) from a
//! hub that has given up root.  Before the hub drops privileges it starts
//! a copy of itself as a helper (`MUMAIL_SPAWN_HELPER=1`) that stays
//! root, reads requests on its stdin and answers on its stdout; it does
//! nothing but run the command it is given as the user it is given, with
//! the input, directory, environment and time limit given.  Without root
//! the hub runs commands itself, as itself only.
//!
//! Frames: a u32 (big-endian) length, then fields each a u32 length and
//! bytes.  Request: id, uid, gid, timeout seconds, directory, argc, argv…,
//! envc, `NAME=value`…, input.  Reply: id, status (`exit N`, `signal N`,
//! `timeout`, `error text`), output (at most OUTPUT_MAX bytes).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// The environment variable that makes the hub binary a helper.
pub const HELPER_ENV: &str = "MUMAIL_SPAWN_HELPER";
/// Command output kept for the delivery status.
pub const OUTPUT_MAX: usize = 2048;
/// Largest frame the helper reads (the message plus the arguments).
const FRAME_MAX: usize = 1 << 30;

#[derive(Debug, Clone, Default)]
pub struct Request {
    pub uid: u32,
    pub gid: u32,
    pub timeout: u64,
    pub dir: String,
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub input: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Exit(i32),
    Signal(i32),
    Timeout,
    Error(String),
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: Status,
    pub output: Vec<u8>,
}

fn put(out: &mut Vec<u8>, f: &[u8]) {
    out.extend_from_slice(&(f.len() as u32).to_be_bytes());
    out.extend_from_slice(f);
}

fn fields(frame: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < frame.len() {
        let n = u32::from_be_bytes(frame.get(i..i + 4)?.try_into().ok()?) as usize;
        out.push(frame.get(i + 4..i + 4 + n)?);
        i += 4 + n;
    }
    Some(out)
}

fn encode_request(id: u64, r: &Request) -> Vec<u8> {
    let mut b = Vec::new();
    put(&mut b, id.to_string().as_bytes());
    put(&mut b, r.uid.to_string().as_bytes());
    put(&mut b, r.gid.to_string().as_bytes());
    put(&mut b, r.timeout.to_string().as_bytes());
    put(&mut b, r.dir.as_bytes());
    put(&mut b, r.argv.len().to_string().as_bytes());
    for a in &r.argv {
        put(&mut b, a.as_bytes());
    }
    put(&mut b, r.env.len().to_string().as_bytes());
    for e in &r.env {
        put(&mut b, e.as_bytes());
    }
    put(&mut b, &r.input);
    b
}

fn decode_request(frame: &[u8]) -> Option<(u64, Request)> {
    let f = fields(frame)?;
    let s = |i: usize| std::str::from_utf8(f.get(i)?).ok().map(str::to_string);
    let n = |i: usize| s(i)?.parse::<u64>().ok();
    let argc = n(5)? as usize;
    let argv: Option<Vec<String>> = (0..argc).map(|k| s(6 + k)).collect();
    let envc = n(6 + argc)? as usize;
    let env: Option<Vec<String>> = (0..envc).map(|k| s(7 + argc + k)).collect();
    Some((
        n(0)?,
        Request {
            uid: n(1)? as u32,
            gid: n(2)? as u32,
            timeout: n(3)?,
            dir: s(4)?,
            argv: argv?,
            env: env?,
            input: f.get(7 + argc + envc)?.to_vec(),
        },
    ))
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut b = (body.len() as u32).to_be_bytes().to_vec();
    b.extend_from_slice(body);
    b
}

fn read_frame(r: &mut impl Read) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).ok()?;
    let n = u32::from_be_bytes(len) as usize;
    if n > FRAME_MAX {
        return None;
    }
    let mut b = vec![0u8; n];
    r.read_exact(&mut b).ok()?;
    Some(b)
}

/// Runs one command (in the helper, or in the hub without root).
pub fn run(r: &Request) -> Outcome {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let fail = |e: String| Outcome {
        status: Status::Error(e),
        output: Vec::new(),
    };
    let Some(prog) = r.argv.first() else {
        return fail("empty command".into());
    };
    let (mut rd, wr) = match std::io::pipe() {
        Ok(p) => p,
        Err(e) => return fail(e.to_string()),
    };
    let wr2 = match wr.try_clone() {
        Ok(w) => w,
        Err(e) => return fail(e.to_string()),
    };
    let mut cmd = std::process::Command::new(prog);
    cmd.args(&r.argv[1..])
        .env_clear()
        .envs(r.env.iter().filter_map(|e| e.split_once('=')))
        .stdin(std::process::Stdio::piped())
        .stdout(wr)
        .stderr(wr2);
    if !r.dir.is_empty() {
        cmd.current_dir(&r.dir);
    }
    let me = nix::unistd::geteuid().as_raw();
    if me == 0 {
        cmd.uid(r.uid).gid(r.gid);
    } else if r.uid != me {
        return fail(format!("cannot run as uid {}: not running as root", r.uid));
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return fail(format!("{prog}: {}", crate::util::strerror(&e))),
    };
    drop(cmd);
    let input = r.input.clone();
    let mut stdin = child.stdin.take();
    let writer = std::thread::spawn(move || {
        if let Some(s) = stdin.as_mut() {
            // A command that stops reading early is not an error here.
            let _ = s.write_all(&input);
        }
    });
    let reader = std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match rd.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = OUTPUT_MAX.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
        kept
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(r.timeout.max(1));
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => {
                break match (st.code(), st.signal()) {
                    (Some(c), _) => Status::Exit(c),
                    (None, Some(s)) => Status::Signal(s),
                    _ => Status::Error("unknown exit status".into()),
                }
            }
            Ok(None) if std::time::Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break Status::Timeout;
            }
            Ok(None) => std::thread::sleep(std::time::Duration::from_millis(5)),
            Err(e) => break Status::Error(e.to_string()),
        }
    };
    let _ = writer.join();
    // The reader ends when every writer of the pipe is gone; a command
    // that left a background child holding it is not waited for.
    let output = if status == Status::Timeout {
        Vec::new()
    } else {
        reader.join().unwrap_or_default()
    };
    Outcome { status, output }
}

/// The helper's main loop: requests on stdin, one thread each, replies on
/// stdout.  Returns when the hub closes the pipe.
pub fn helper_main() -> i32 {
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let mut input = std::io::stdin().lock();
    while let Some(f) = read_frame(&mut input) {
        let Some((id, req)) = decode_request(&f) else {
            break;
        };
        let out = out.clone();
        std::thread::spawn(move || {
            let o = run(&req);
            let status = match &o.status {
                Status::Exit(c) => format!("exit {c}"),
                Status::Signal(s) => format!("signal {s}"),
                Status::Timeout => "timeout".into(),
                Status::Error(e) => format!("error {e}"),
            };
            let mut b = Vec::new();
            put(&mut b, id.to_string().as_bytes());
            put(&mut b, status.as_bytes());
            put(&mut b, &o.output);
            let mut w = out.lock().unwrap_or_else(|e| e.into_inner());
            let _ = w.write_all(&frame(&b));
            let _ = w.flush();
        });
    }
    0
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Outcome>>>>;

/// The hub's side: the helper when there is one.
pub struct Spawner {
    helper: Option<(Mutex<std::process::ChildStdin>, Pending)>,
    next: std::sync::atomic::AtomicU64,
}

impl Spawner {
    /// Starts the helper when running as root (call before dropping
    /// privileges); otherwise commands run in the hub itself.
    pub fn start() -> Spawner {
        let none = Spawner {
            helper: None,
            next: Default::default(),
        };
        if !nix::unistd::geteuid().is_root() {
            return none;
        }
        let Ok(exe) = std::env::current_exe() else { return none };
        let child = std::process::Command::new(exe)
            .env(HELPER_ENV, "1")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn();
        let Ok(mut child) = child else { return none };
        let (Some(stdin), Some(mut stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return none;
        };
        let pending: Pending = Arc::default();
        let p2 = pending.clone();
        std::thread::spawn(move || {
            while let Some(f) = read_frame(&mut stdout) {
                let Some(v) = fields(&f) else { break };
                let (Some(id), Some(st), Some(out)) = (v.first(), v.get(1), v.get(2)) else {
                    break;
                };
                let id: u64 = String::from_utf8_lossy(id).parse().unwrap_or(u64::MAX);
                let st = String::from_utf8_lossy(st).into_owned();
                let status = match st.split_once(' ') {
                    Some(("exit", n)) => Status::Exit(n.parse().unwrap_or(-1)),
                    Some(("signal", n)) => Status::Signal(n.parse().unwrap_or(0)),
                    Some(("error", e)) => Status::Error(e.to_string()),
                    _ if st == "timeout" => Status::Timeout,
                    _ => Status::Error(st.clone()),
                };
                let tx = p2.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                if let Some(tx) = tx {
                    let _ = tx.send(Outcome {
                        status,
                        output: out.to_vec(),
                    });
                }
            }
            // The helper is gone: every waiting delivery fails (deferred).
            p2.lock().unwrap_or_else(|e| e.into_inner()).clear();
            let _ = child.wait();
        });
        Spawner {
            helper: Some((Mutex::new(stdin), pending)),
            next: Default::default(),
        }
    }

    /// A spawner that runs commands in the hub itself.
    pub fn start_unprivileged() -> Spawner {
        Spawner {
            helper: None,
            next: Default::default(),
        }
    }

    pub async fn run(&self, req: Request) -> Outcome {
        let Some((stdin, pending)) = &self.helper else {
            return tokio::task::spawn_blocking(move || run(&req)).await.unwrap_or_else(|e| Outcome {
                status: Status::Error(e.to_string()),
                output: Vec::new(),
            });
        };
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        pending.lock().unwrap_or_else(|e| e.into_inner()).insert(id, tx);
        let bytes = frame(&encode_request(id, &req));
        let sent = {
            let mut w = stdin.lock().unwrap_or_else(|e| e.into_inner());
            w.write_all(&bytes).and_then(|_| w.flush())
        };
        if let Err(e) = sent {
            pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            return Outcome {
                status: Status::Error(format!("command helper: {e}")),
                output: Vec::new(),
            };
        }
        // The helper enforces the time limit; this bound only guards
        // against a helper that died after taking the request.
        let bound = std::time::Duration::from_secs(req.timeout.max(1) + 60);
        match tokio::time::timeout(bound, rx).await {
            Ok(Ok(o)) => o,
            Ok(Err(_)) | Err(_) => {
                pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                Outcome {
                    status: Status::Error("command helper exited".into()),
                    output: Vec::new(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_commands_run() {
        let r = Request {
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            timeout: 10,
            dir: "/".into(),
            argv: vec!["/bin/sh".into(), "-c".into(), "cat; echo err >&2; exit 67".into()],
            env: vec!["PATH=/usr/bin:/bin".into()],
            input: b"hello\n".to_vec(),
        };
        let (id, back) = decode_request(&encode_request(7, &r)).unwrap();
        assert_eq!((id, back.argv.clone(), back.input.clone()), (7, r.argv.clone(), r.input.clone()));
        assert!(decode_request(b"\x00\x00\x00\x09abc").is_none());
        let o = run(&r);
        assert_eq!(o.status, Status::Exit(67));
        assert_eq!(o.output, b"hello\nerr\n");
        let slow = Request {
            timeout: 1,
            argv: vec!["/bin/sleep".into(), "30".into()],
            ..r.clone()
        };
        assert_eq!(run(&slow).status, Status::Timeout);
        let missing = Request {
            argv: vec!["/nonexistent/cmd".into()],
            ..r
        };
        assert!(matches!(run(&missing).status, Status::Error(_)));
    }
}
