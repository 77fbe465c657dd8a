//! `deliver`: Cyrus's local delivery program (Postfix's
//! `argv=/usr/lib/cyrus/bin/deliver -e -r ${sender} -m ${extension}
//! ${user}` pipe service): the message on standard input goes to
//! `lmtpsocket` by LMTP, with Cyrus 3.6's commands, messages and exit
//! statuses (sysexits: 0, 65 for a refused recipient, 75 when one must
//! be tried again, 78 without lmtpd).

use super::store_admin::default_config;
use super::Output;
use crate::config::cyrus::ImapdConf;
use crate::util::exit;
use crate::util::getopt::{getopt, Opt};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

fn usage() -> Output {
    let mut o = Output::usage(&format!(
        "421-4.3.0 usage: deliver [-C <alt_config> ] [-m mailbox] [-a auth] [-r return_path] [-l] [-D]\n421 4.3.0 3.6.1-mumail-{}\n",
        env!("CARGO_PKG_VERSION")
    ));
    o.status = exit::USAGE;
    o
}

/// The longest reply line read from lmtpd.
const MAX_LINE: usize = 4096;

struct Lmtp {
    r: BufReader<UnixStream>,
    w: UnixStream,
}

impl Lmtp {
    /// One reply (the last line of a multi-line one, and whether the
    /// server offered `word` among its lines, for LHLO).
    fn reply(&mut self, word: &str) -> std::io::Result<(String, bool)> {
        let mut offered = false;
        loop {
            let mut line = Vec::new();
            let n = (&mut self.r).take(MAX_LINE as u64).read_until(b'\n', &mut line)?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "lmtpd closed the connection",
                ));
            }
            let text = String::from_utf8_lossy(&line).trim_end().to_string();
            if text.len() > 4 && text[4..].split([' ', '=']).next().is_some_and(|w| w.eq_ignore_ascii_case(word)) {
                offered = true;
            }
            if text.as_bytes().get(3) != Some(&b'-') {
                return Ok((text, offered));
            }
        }
    }

    fn cmd(&mut self, line: &str) -> std::io::Result<String> {
        self.w.write_all(format!("{line}\r\n").as_bytes())?;
        Ok(self.reply("")?.0)
    }
}

/// Cyrus's words for a permanent refusal, by its enhanced status code.
fn refusal(reply: &str) -> &'static str {
    let code = reply.get(4..).and_then(|r| r.split(' ').next()).unwrap_or("");
    match code {
        "5.2.2" => "Over quota",
        "5.7.1" => "Permission denied",
        "5.6.0" => "Message contains invalid header",
        c if c.starts_with("5.5.") => "Bad protocol",
        _ => "Mailbox does not exist",
    }
}

/// A recipient refused: a temporary failure is only counted (Cyrus says
/// nothing), a permanent one is named on standard output.
fn refuse(out: &mut Output, rcpt: &str, reply: &str, temp: &mut bool, perm: &mut bool) {
    if reply.starts_with('4') {
        *temp = true;
    } else {
        *perm = true;
        out.stdout.push_str(&format!("{rcpt}: {}\n", refusal(reply)));
    }
}

/// xtext (RFC 3461) for AUTH=.
fn xtext(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
                (b as char).to_string()
            } else {
                format!("+{b:02X}")
            }
        })
        .collect()
}

/// `deliver [-C conf] [-d] [-e] [-q] [-r|-f sender] [-m mailbox] [-a authid] [user...]`.
pub fn deliver(args: &[String], input: &mut dyn Read) -> Output {
    let mut out = Output::default();
    let (opts, users) = match getopt(args, "df:r:m:a:F:eE:lqC:D") {
        Ok(v) => v,
        Err(e) => {
            let mut o = usage();
            let said = match e {
                crate::util::getopt::GetoptError::Unknown(c) => format!("deliver: invalid option -- '{c}'\n"),
                crate::util::getopt::GetoptError::MissingArg(c) => format!("deliver: option requires an argument -- '{c}'\n"),
            };
            o.stderr.insert_str(0, &said);
            return o;
        }
    };
    let (mut config, mut sender, mut mailbox, mut authid, mut ignore_quota) = (default_config(), None, None, None, false);
    for o in opts {
        match o {
            Opt::Arg('C', v) => config = v,
            Opt::Arg('r' | 'f', v) => sender = Some(v),
            Opt::Arg('m', v) => mailbox = Some(v),
            Opt::Arg('a', v) => authid = Some(v),
            Opt::Flag('q') => ignore_quota = true,
            Opt::Arg('E', _) => {
                let mut o = usage();
                o.stderr.insert_str(0, "deliver: 'E' option no longer supported\n");
                return o;
            }
            Opt::Flag('l') => {
                let mut o = usage();
                o.stderr
                    .insert_str(0, "deliver: -l (LMTP on standard input) is not supported: use lmtpd\n");
                return o;
            }
            _ => {}
        }
    }
    let mailbox = mailbox.filter(|m| !m.is_empty());
    // The recipients as Cyrus's deliver names them: user, user+mailbox,
    // or +mailbox (a shared one) without users.
    let rcpts: Vec<String> = if users.is_empty() {
        match &mailbox {
            Some(m) => vec![format!("+{m}")],
            None => return usage(),
        }
    } else {
        users
            .iter()
            .map(|u| match &mailbox {
                Some(m) => format!("{u}+{m}"),
                None => u.clone(),
            })
            .collect()
    };
    let conf = match ImapdConf::load(&config, Some("deliver")) {
        Ok(c) => c,
        Err(e) => {
            out.stderr.push_str(&format!("fatal error: {e}\n"));
            out.status = exit::CONFIG;
            return out;
        }
    };
    let sock = conf.path_option("lmtpsocket").unwrap_or_default();
    let stream = match UnixStream::connect(&sock) {
        Ok(s) => s,
        Err(e) => {
            out.stdout.push_str("421 4.3.0 deliver: couldn't connect to lmtpd\n");
            out.stderr.push_str(&format!("couldn't connect to lmtpd: {e}\n"));
            out.status = exit::CONFIG;
            return out;
        }
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(600)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(600)));
    let w = match stream.try_clone() {
        Ok(w) => w,
        Err(e) => {
            out.stderr.push_str(&format!("deliver: {e}\n"));
            out.status = exit::TEMPFAIL;
            return out;
        }
    };
    let mut l = Lmtp {
        r: BufReader::new(stream),
        w,
    };
    // Without -r the sender is the user running deliver (lmtpd adds the
    // server's name), as Cyrus's.
    let from = match sender {
        Some(s) => s.trim_start_matches('<').trim_end_matches('>').to_string(),
        None => nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| "nobody".into()),
    };
    match session(&mut l, &from, authid.as_deref(), &rcpts, ignore_quota, input, &mut out) {
        Ok(()) => {}
        Err(e) => {
            out.stderr.push_str(&format!("deliver: lmtpd: {e}\n"));
            out.status = exit::TEMPFAIL;
        }
    }
    out
}

fn session(
    l: &mut Lmtp,
    from: &str,
    authid: Option<&str>,
    rcpts: &[String],
    ignore_quota: bool,
    input: &mut dyn Read,
    out: &mut Output,
) -> std::io::Result<()> {
    let (greeting, _) = l.reply("")?;
    if !greeting.starts_with('2') {
        return Err(std::io::Error::other(greeting));
    }
    l.w.write_all(b"LHLO deliver\r\n")?;
    let (lhlo, auth) = l.reply("AUTH")?;
    if !lhlo.starts_with('2') {
        return Err(std::io::Error::other(lhlo));
    }
    l.cmd("RSET")?;
    let mut mail = format!("MAIL FROM:<{from}>");
    if let (Some(a), true) = (authid, auth) {
        mail.push_str(&format!(" AUTH={}", xtext(a)));
    }
    let r = l.cmd(&mail)?;
    if !r.starts_with('2') {
        return Err(std::io::Error::other(r));
    }
    let (mut temp, mut perm) = (false, false);
    let mut accepted = Vec::new();
    for rc in rcpts {
        let line = if ignore_quota {
            format!("RCPT TO:<{rc}> IGNOREQUOTA")
        } else {
            format!("RCPT TO:<{rc}>")
        };
        let r = l.cmd(&line)?;
        if r.starts_with('2') {
            accepted.push(rc);
        } else {
            refuse(out, rc, &r, &mut temp, &mut perm);
        }
    }
    if !accepted.is_empty() {
        let r = l.cmd("DATA")?;
        if !r.starts_with('3') {
            return Err(std::io::Error::other(r));
        }
        // The message, lines ended by CRLF, dot-stuffed.
        let mut rd = BufReader::new(input);
        let mut buf = std::io::BufWriter::new(&l.w);
        let mut line = Vec::new();
        loop {
            line.clear();
            // (A line is read in pieces of at most 64 KiB.)
            let n = (&mut rd).take(65536).read_until(b'\n', &mut line)?;
            if n == 0 {
                break;
            }
            let whole = line.last() == Some(&b'\n');
            let mut body: &[u8] = &line;
            if whole {
                body = &body[..body.len() - 1];
                if body.last() == Some(&b'\r') {
                    body = &body[..body.len() - 1];
                }
            }
            if body.first() == Some(&b'.') {
                buf.write_all(b".")?;
            }
            buf.write_all(body)?;
            if whole {
                buf.write_all(b"\r\n")?;
            } else {
                // A piece of a long line: the rest follows unstuffed.
                let mut rest = Vec::new();
                loop {
                    rest.clear();
                    let m = (&mut rd).take(65536).read_until(b'\n', &mut rest)?;
                    if m == 0 {
                        buf.write_all(b"\r\n")?;
                        break;
                    }
                    if rest.last() == Some(&b'\n') {
                        let mut b: &[u8] = &rest[..rest.len() - 1];
                        if b.last() == Some(&b'\r') {
                            b = &b[..b.len() - 1];
                        }
                        buf.write_all(b)?;
                        buf.write_all(b"\r\n")?;
                        break;
                    }
                    buf.write_all(&rest)?;
                }
            }
        }
        buf.write_all(b".\r\n")?;
        buf.flush()?;
        drop(buf);
        for rc in accepted {
            let (r, _) = l.reply("")?;
            if !r.starts_with('2') {
                refuse(out, rc, &r, &mut temp, &mut perm);
            }
        }
    }
    let _ = l.cmd("QUIT");
    out.status = if temp {
        exit::TEMPFAIL
    } else if perm {
        exit::DATAERR
    } else {
        0
    };
    Ok(())
}
