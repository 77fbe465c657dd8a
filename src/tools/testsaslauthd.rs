//! testsaslauthd(8): sends one request to saslauthd's mux socket and
//! prints the answer as Cyrus SASL 2.1.28's tool does:
//! `0: OK "Success."` / `0: NO "authentication failed"`; exit 0 or 255.

use super::Output;
use crate::proto::saslauthd::{decode_reply, encode_request, MAX_REPLY};
use crate::util::getopt::{getopt, Opt};
use std::fmt::Write as _;
use std::io::{Read, Write};

pub const USAGE: &str = "testsaslauthd: usage: testsaslauthd -u username -p password\n              [-r realm] [-s servicename]\n              [-f socket path] [-R repeatnum]\n";
pub const DEFAULT_MUX: &str = "/run/saslauthd/mux";

fn one(path: &str, user: &str, pass: &str, service: &str, realm: &str) -> Result<bool, String> {
    let mut s = std::os::unix::net::UnixStream::connect(path).map_err(|e| format!("connect() : {}", crate::util::strerror(&e)))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(60))).ok();
    s.write_all(&encode_request(
        user.as_bytes(),
        pass.as_bytes(),
        service.as_bytes(),
        realm.as_bytes(),
    ))
    .map_err(|e| format!("write() : {}", crate::util::strerror(&e)))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = s.read(&mut chunk).map_err(|_| "size read failed".to_string())?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 2 + MAX_REPLY + 1024 || decode_reply(&buf).is_some() {
            break;
        }
    }
    if buf.len() < 2 {
        return Err("size read failed".into());
    }
    let reply = decode_reply(&buf).ok_or("read failed")?;
    if reply.len() < 2 {
        return Err("bad response from saslauthd".into());
    }
    Ok(reply.starts_with(b"OK"))
}

pub fn run(args: &[String]) -> Output {
    let mut out = Output::default();
    let Ok((opts, _)) = getopt(args, "p:u:r:s:f:R:") else {
        out.stderr.push_str(USAGE);
        out.status = 1;
        return out;
    };
    let (mut user, mut pass, mut realm, mut service, mut path, mut repeat) =
        (None, None, String::new(), "imap".to_string(), DEFAULT_MUX.to_string(), 1usize);
    for o in opts {
        match o {
            Opt::Arg('u', v) => user = Some(v),
            Opt::Arg('p', v) => pass = Some(v),
            Opt::Arg('r', v) => realm = v,
            Opt::Arg('s', v) => service = v,
            Opt::Arg('f', v) => path = v,
            Opt::Arg('R', v) => repeat = v.parse().unwrap_or(1).max(1),
            _ => {}
        }
    }
    let (Some(user), Some(pass)) = (user, pass) else {
        out.stderr.push_str(USAGE);
        out.status = 1;
        return out;
    };
    for i in 0..repeat {
        let _ = write!(out.stdout, "{i}: ");
        match one(&path, &user, &pass, &service, &realm) {
            Ok(true) => out.stdout.push_str("OK \"Success.\"\n"),
            Ok(false) => {
                out.stdout.push_str("NO \"authentication failed\"\n");
                out.status = 255;
            }
            Err(e) => {
                let _ = writeln!(out.stderr, "{e}");
                out.status = 255;
                return out;
            }
        }
    }
    out
}
