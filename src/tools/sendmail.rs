//! sendmail(1), Postfix's Sendmail-compatible interface: reads a message
//! on stdin and submits it to the hub's `public/pickup` socket; `-bp` is
//! mailq, `-q` flushes.  Options Postfix accepts and ignores are accepted
//! and ignored.  Exit codes are sysexits, as Postfix's.

use super::Output;
use crate::util::exit;
use std::io::{Read, Write};

#[derive(Default)]
struct Opts {
    config: Option<String>,
    from: Option<String>,
    fullname: Option<String>,
    extract: bool,
    ignore_dots: bool,
    mode: Mode,
    rcpts: Vec<String>,
}

#[derive(Default, PartialEq)]
enum Mode {
    #[default]
    Submit,
    ListQueue,
    Flush,
    NewAliases,
    /// `-bs`: SMTP on standard input and output.
    Smtp,
    Unsupported(&'static str),
}

/// Sendmail's option syntax: flags that take a value either attached
/// (`-fuser`) or as the next word; `-o7`-style options ignored.
fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts::default();
    let mut i = 0;
    let value = |i: &mut usize, a: &str, n: usize| -> Result<String, String> {
        if a.len() > n {
            Ok(a[n..].to_string())
        } else {
            *i += 1;
            args.get(*i)
                .cloned()
                .ok_or_else(|| format!("option requires an argument -- '{}'", &a[1..n]))
        }
    };
    while i < args.len() {
        let a = args[i].as_str();
        if a == "--" {
            o.rcpts.extend(args[i + 1..].iter().cloned());
            break;
        }
        if !a.starts_with('-') || a == "-" {
            o.rcpts.push(a.to_string());
            i += 1;
            continue;
        }
        match a {
            "-t" => o.extract = true,
            "-i" | "-oi" => o.ignore_dots = true,
            "-bp" => o.mode = Mode::ListQueue,
            "-bm" => o.mode = Mode::Submit,
            "-bs" => o.mode = Mode::Smtp,
            "-bi" | "-I" => o.mode = Mode::NewAliases,
            "-bd" | "-bl" => o.mode = Mode::Unsupported("-bd (start the mail system: use postfix start)"),
            "-bv" => o.mode = Mode::Unsupported("-bv (address verification)"),
            "-q" => o.mode = Mode::Flush,
            _ if a.starts_with("-f") || a.starts_with("-r") => o.from = Some(value(&mut i, a, 2)?),
            _ if a.starts_with("-F") => o.fullname = Some(value(&mut i, a, 2)?),
            _ if a.starts_with("-C") => o.config = Some(value(&mut i, a, 2)?),
            // Accepted for compatibility with a value: DSN, envelope id,
            // body type, VERP, queue intervals.
            _ if a.starts_with("-N")
                || a.starts_with("-R")
                || a.starts_with("-V")
                || a.starts_with("-B")
                || a.starts_with("-O")
                || a.starts_with("-h")
                || a.starts_with("-L") =>
            {
                if a.len() == 2 {
                    i += 1;
                }
            }
            _ if a.starts_with("-q") => o.mode = Mode::Flush,
            // -o7 -o8 -om -Am -Ac -m -n -U -X…: ignored, as Postfix does.
            _ if a.starts_with("-o") || a.starts_with("-A") || a == "-m" || a == "-n" || a == "-U" || a.starts_with("-X") || a == "-v" => {}
            _ => return Err(format!("invalid option -- '{}'", &a[1..2])),
        }
        i += 1;
    }
    Ok(o)
}

fn who() -> String {
    let uid = nix::unistd::getuid();
    let name = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| format!("#{uid}"), |u| u.name);
    format!("{name}({uid})")
}

fn fatal(text: &str, status: i32) -> Output {
    Output {
        stderr: format!("sendmail: fatal: {text}\n"),
        status,
        ..Output::default()
    }
}

/// The message from stdin: CRLF line ends; ends at EOF or (without -i) a
/// line with a single dot.
fn read_message(stdin: &mut dyn Read, ignore_dots: bool, limit: usize) -> Result<Vec<u8>, String> {
    let mut raw = Vec::new();
    stdin
        .take(limit as u64 + 1)
        .read_to_end(&mut raw)
        .map_err(|e| format!("read standard input: {e}"))?;
    if raw.len() > limit {
        return Err("message file too big".into());
    }
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 40);
    for line in raw.split_inclusive(|&b| b == b'\n') {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        if !ignore_dots && body == b"." {
            break;
        }
        out.extend_from_slice(body);
        out.extend_from_slice(b"\r\n");
    }
    Ok(out)
}

/// Recipients from To/Cc/Bcc (-t); Bcc lines are removed from the message.
fn extract(msg: &mut Vec<u8>) -> Vec<String> {
    let (he, _) = crate::mail::mime::header_end(msg);
    let he = he.min(msg.len());
    let fields = crate::mail::mime::fields(&msg[..he]);
    let mut out = Vec::new();
    for (n, v) in &fields {
        if ["to", "cc", "bcc"].iter().any(|x| n.eq_ignore_ascii_case(x)) {
            out.extend(crate::mail::addr::header_addresses(&String::from_utf8_lossy(v)));
        }
    }
    // Drop Bcc (and its continuation lines).
    let mut kept = Vec::with_capacity(msg.len());
    let mut skipping = false;
    for line in msg[..he].split_inclusive(|&b| b == b'\n') {
        let cont = line.first().is_some_and(|c| *c == b' ' || *c == b'\t');
        if !cont {
            skipping = line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"bcc:");
        }
        if !skipping {
            kept.extend_from_slice(line);
        }
    }
    kept.extend_from_slice(&msg[he..]);
    *msg = kept;
    out
}

pub fn sendmail(args: &[String], stdin: &mut dyn Read) -> Output {
    let o = match parse(args) {
        Ok(o) => o,
        Err(e) => return Output::usage(&format!("sendmail: {e}\n")),
    };
    match o.mode {
        Mode::ListQueue => {
            let mut a = Vec::new();
            if let Some(c) = &o.config {
                a.extend(["-C".to_string(), c.clone()]);
            }
            return super::postqueue::mailq(&a);
        }
        Mode::Flush => {
            let mut a = vec!["-f".to_string()];
            if let Some(c) = &o.config {
                a.extend(["-c".to_string(), c.clone()]);
            }
            return super::postqueue::postqueue(&a);
        }
        Mode::NewAliases => return super::postmap::newaliases(o.config.as_deref()),
        Mode::Unsupported(what) => return fatal(&format!("{what} is not supported by mumail yet"), exit::UNAVAILABLE),
        Mode::Smtp => return smtp_session(o.config.as_deref(), stdin),
        Mode::Submit => {}
    }
    let (dir, explicit) = crate::config::postfix::config_directory(o.config.as_deref());
    let p = match crate::config::postfix::Params::load(&dir, explicit) {
        Ok(p) => p,
        Err(e) => return fatal(&e.to_string(), exit::CONFIG),
    };
    let limit = match p.get_int("message_size_limit", 0, 0) {
        Ok(0) => usize::MAX >> 1,
        Ok(n) => n as usize,
        Err(e) => return fatal(&e.to_string(), exit::CONFIG),
    };
    let mut msg = match read_message(stdin, o.ignore_dots, limit) {
        Ok(m) => m,
        Err(e) => return fatal(&format!("{}: {e}", who()), exit::DATAERR),
    };
    let mut rcpts = o.rcpts.clone();
    if o.extract {
        rcpts.extend(extract(&mut msg));
    }
    if rcpts.is_empty() {
        return fatal(
            &format!(
                "{}: Recipient addresses must be specified on the command line or via the -t option",
                who()
            ),
            exit::TEMPFAIL,
        );
    }
    let qdir = std::path::PathBuf::from(p.get("queue_directory").unwrap_or_else(|| "/var/spool/postfix".into()));
    let sock = qdir.join("public/pickup");
    let mut s = match std::os::unix::net::UnixStream::connect(&sock) {
        Ok(s) => s,
        Err(e) => {
            return fatal(
                &format!(
                    "{}: unable to submit mail: connect to {}: {}",
                    who(),
                    sock.display(),
                    crate::util::strerror(&e)
                ),
                exit::TEMPFAIL,
            )
        }
    };
    let mut req = String::new();
    if let Some(f) = &o.from {
        req.push_str(&format!("FROM {}\n", f.replace('\n', "")));
    }
    if let Some(n) = &o.fullname {
        req.push_str(&format!("FULLNAME {}\n", n.replace('\n', "")));
    }
    for r in &rcpts {
        req.push_str(&format!("RCPT {}\n", r.replace('\n', "")));
    }
    req.push_str(&format!("DATA {}\n", msg.len()));
    let sent = s.write_all(req.as_bytes()).and_then(|_| s.write_all(&msg));
    let mut reply = String::new();
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(300)));
    if sent.is_err() || s.take(4096).read_to_string(&mut reply).is_err() || reply.is_empty() {
        return fatal(
            &format!("{}: unable to submit mail: the mail system closed the connection", who()),
            exit::TEMPFAIL,
        );
    }
    match reply.trim_end().split_once(' ') {
        Some(("OK", _)) => Output::default(),
        Some(("ERR", e)) if e.starts_with("Recipient addresses") => fatal(&format!("{}: {e}", who()), exit::TEMPFAIL),
        Some(("ERR", e)) if e.contains("too big") => fatal(&format!("{}: {e}", who()), exit::DATAERR),
        Some(("ERR", e)) => fatal(&format!("{}: {e}", who()), exit::TEMPFAIL),
        _ => fatal(&format!("{}: unexpected answer from the mail system", who()), exit::TEMPFAIL),
    }
}

/// `-bs`: an SMTP session on standard input and output, relayed to the
/// hub's `public/smtpd` (the hub takes the user from the socket).
fn smtp_session(config: Option<&str>, stdin: &mut dyn Read) -> Output {
    let (dir, explicit) = crate::config::postfix::config_directory(config);
    let p = match crate::config::postfix::Params::load(&dir, explicit) {
        Ok(p) => p,
        Err(e) => return fatal(&e.to_string(), exit::CONFIG),
    };
    let qdir = std::path::PathBuf::from(p.get("queue_directory").unwrap_or_else(|| "/var/spool/postfix".into()));
    let sock = qdir.join("public/smtpd");
    let s = match std::os::unix::net::UnixStream::connect(&sock) {
        Ok(s) => s,
        Err(e) => {
            return fatal(
                &format!("{}: connect to {}: {}", who(), sock.display(), crate::util::strerror(&e)),
                exit::TEMPFAIL,
            )
        }
    };
    let Ok(mut reader) = s.try_clone() else {
        return fatal(&format!("{}: socket: out of resources", who()), exit::OSERR);
    };
    // Replies to standard output as they come, while commands go in.
    let out = std::thread::spawn(move || {
        let mut stdout = std::io::stdout();
        let mut buf = [0u8; 8192];
        loop {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if stdout.write_all(&buf[..n]).and_then(|_| stdout.flush()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let mut w = &s;
    let mut buf = [0u8; 8192];
    loop {
        match stdin.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if w.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = s.shutdown(std::net::Shutdown::Write);
    let _ = out.join();
    Output::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_dots_and_extraction() {
        let a: Vec<String> = ["-oi", "-f", "me@x.org", "-FMe Myself", "-o7", "-N", "never", "u@y.org"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let o = parse(&a).unwrap();
        assert!(o.ignore_dots && !o.extract);
        assert_eq!(o.from.as_deref(), Some("me@x.org"));
        assert_eq!(o.fullname.as_deref(), Some("Me Myself"));
        assert_eq!(o.rcpts, ["u@y.org"]);
        assert!(parse(&["-Z".to_string()]).is_err());
        let m = read_message(&mut &b"Subject: x\n\nline\n.\nafter\n"[..], false, 1000).unwrap();
        assert_eq!(m, b"Subject: x\r\n\r\nline\r\n");
        let m = read_message(&mut &b"a\n.\nb\n"[..], true, 1000).unwrap();
        assert_eq!(m, b"a\r\n.\r\nb\r\n");
        let mut m = b"To: a@x.org, B <b@x.org>\r\nBcc: c@x.org,\r\n d@x.org\r\nSubject: s\r\n\r\nbody\r\n".to_vec();
        assert_eq!(extract(&mut m), ["a@x.org", "b@x.org", "c@x.org", "d@x.org"]);
        assert_eq!(m, b"To: a@x.org, B <b@x.org>\r\nSubject: s\r\n\r\nbody\r\n");
    }
}
