//! The fields Cyrus's lmtpd puts on every message it takes, as lmtpd and as
//! a Murder front end's lmtpproxyd: Return-Path, Received and
//! X-Cyrus-Session-Id before the message; a Message-ID and a Date at the
//! end of a header that has none; the sender's Return-Path replaced.

use crate::mail::mime;
use std::sync::atomic::{AtomicU32, Ordering};

/// Messages given a Message-ID by this process.
static MSGID_COUNT: AtomicU32 = AtomicU32::new(0);

/// Who handed the message over, and to which server.
pub struct Trace<'a> {
    pub from: &'a str,
    /// The client's LHLO name.
    pub lhlo: &'a str,
    /// Cyrus's client host text (`name [addr]`, `[unix socket]`).
    pub client: &'a str,
    pub servername: &'a str,
    /// The version in the Received field (`serverinfo: on`).
    pub version: Option<&'a str>,
    pub sid: &'a str,
    /// `X-Sieve: CMU Sieve 3.0` after the session id: a back end's lmtpd
    /// (built with Sieve) adds it to every message, a front end's not.
    pub sieve: bool,
}

impl Trace<'_> {
    /// Return-Path, Received (continuations "\t "), X-Cyrus-Session-Id,
    /// X-Sieve.
    fn prefix(&self, date: &str) -> String {
        let version = self.version.map(|v| format!(" (Cyrus {v})")).unwrap_or_default();
        let sieve = if self.sieve { "X-Sieve: CMU Sieve 3.0\r\n" } else { "" };
        format!(
            "Return-Path: <{}>\r\nReceived: from {} ({})\r\n\t by {}{version} with LMTPA;\r\n\t {date}\r\nX-Cyrus-Session-Id: {}\r\n{sieve}",
            self.from, self.lhlo, self.client, self.servername, self.sid
        )
    }

    /// The message as Cyrus's lmtpd stores or passes it on: the trace
    /// fields first, the sender's Return-Path fields dropped (the new one
    /// replaces them), a Message-ID and a Date added at the end of a
    /// header without them.  An empty Message-ID is refused with Cyrus's
    /// reply.
    pub fn dress(&self, msg: &[u8], date: &str) -> Result<Vec<u8>, &'static str> {
        let (hend, _) = mime::header_end(msg);
        let fields = mime::fields(&msg[..hend]);
        let mut added = String::new();
        match mime::field(&fields, "message-id") {
            Some(v) if mime::trim(v).is_empty() => return Err("554 5.6.0 Message contains invalid header"),
            Some(_) => {}
            None => added.push_str(&format!("Message-ID: {}\r\n", message_id(self.servername))),
        }
        if mime::field(&fields, "date").is_none() {
            added.push_str(&format!("Date: {date}\r\n"));
        }
        // Before the empty line that ends the header (or at the end).
        let at = if msg[..hend].ends_with(b"\r\n\r\n") || hend == 2 && msg.starts_with(b"\r\n") {
            hend - 2
        } else if msg[..hend].ends_with(b"\n\n") || hend == 1 && msg.starts_with(b"\n") {
            hend - 1
        } else {
            hend
        };
        let prefix = self.prefix(date);
        let mut out = Vec::with_capacity(msg.len() + prefix.len() + added.len());
        out.extend_from_slice(prefix.as_bytes());
        // The header's fields, each with its continuation lines, but
        // Return-Path.
        let mut i = 0;
        let mut keep = true;
        while i < at {
            let end = msg[i..at].iter().position(|&c| c == b'\n').map_or(at, |n| i + n + 1);
            let line = &msg[i..end];
            if !matches!(line.first(), Some(b' ' | b'\t')) {
                keep = !line.get(..12).is_some_and(|n| n.eq_ignore_ascii_case(b"return-path:"));
            }
            if keep {
                out.extend_from_slice(line);
            }
            i = end;
        }
        out.extend_from_slice(added.as_bytes());
        out.extend_from_slice(&msg[at..]);
        Ok(out)
    }
}

/// Cyrus lmtpd's Message-ID for a message without one:
/// `<cmu-lmtpd-PID-TIME-N@SERVERNAME>`.
fn message_id(servername: &str) -> String {
    let n = MSGID_COUNT.fetch_add(1, Ordering::Relaxed);
    format!("<cmu-lmtpd-{}-{}-{n}@{servername}>", std::process::id(), crate::util::unix_now())
}

/// The message date: the server's local time with its zone, as Cyrus
/// writes it.
pub fn date_now() -> String {
    let t = crate::util::unix_now();
    crate::util::rfc822_date(t, crate::util::codec::local_offset_min(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Trace<'static> {
        Trace {
            from: "s@x",
            lhlo: "hub",
            client: "[unix socket]",
            servername: "mx",
            version: None,
            sid: "sid1",
            sieve: false,
        }
    }

    #[test]
    fn missing_fields_go_at_the_end_of_the_header() {
        let d = "Thu, 01 Jan 2026 00:00:00 +0000";
        let head = format!(
            "Return-Path: <s@x>\r\nReceived: from hub ([unix socket])\r\n\t by mx with LMTPA;\r\n\t {d}\r\nX-Cyrus-Session-Id: sid1\r\n"
        );
        let out = String::from_utf8(t().dress(b"Subject: a\r\n\r\nbody\r\n", d).unwrap()).unwrap();
        let rest = out.strip_prefix(&head).unwrap();
        assert!(rest.starts_with("Subject: a\r\nMessage-ID: <cmu-lmtpd-"), "{rest}");
        assert!(rest.ends_with(&format!("@mx>\r\nDate: {d}\r\n\r\nbody\r\n")), "{rest}");
        let out = t().dress(b"Subject: a\r\n", d).unwrap();
        assert!(out.ends_with(format!("Date: {d}\r\n").as_bytes()));
        let full = b"Message-Id: <x@y>\r\nDate: x\r\n\r\n";
        assert_eq!(&t().dress(full, d).unwrap()[head.len()..], full);
        assert!(t().dress(b"Message-ID:  \r\n\r\nx", d).is_err());
    }

    #[test]
    fn the_senders_return_path_goes() {
        let d = "Thu, 01 Jan 2026 00:00:00 +0000";
        let m = b"Return-Path: <old@x>\r\nReceived: by a;\r\n x\r\nreturn-path:\r\n <y@z>\r\nMessage-ID: <1@x>\r\nDate: x\r\n\r\nReturn-Path: body\r\n";
        let out = t().dress(m, d).unwrap();
        let out = String::from_utf8_lossy(&out);
        assert_eq!(out.matches("Return-Path").count(), 2, "{out}");
        assert!(
            out.contains("X-Cyrus-Session-Id: sid1\r\nReceived: by a;\r\n x\r\nMessage-ID: <1@x>"),
            "{out}"
        );
    }
}

/// A message's GUID (the SHA-1 of the copy stored) taken while the
/// message arrives: once its header is complete, the header is dressed
/// (`Trace::dress`) and hashed, then the body behind it piece by piece.
/// The copy stored is that dressed header and the body, so the store need
/// not read it again; for a big message the hashing overlaps the
/// transfer.  A header not complete within `HEADER_MAX` bytes, or one the
/// dressing refuses, leaves it to the store.
pub struct Prehash {
    header: Option<(Vec<u8>, usize)>,
    hashed: usize,
    sha: sha1::Sha1,
    off: bool,
}

const HEADER_MAX: usize = 256 * 1024;

impl Default for Prehash {
    fn default() -> Self {
        use sha1::Digest;
        Prehash {
            header: None,
            hashed: 0,
            sha: sha1::Sha1::new(),
            off: false,
        }
    }
}

impl Prehash {
    /// More of the message has arrived (`data`: all of it so far, CRLF
    /// text); `dress` makes the header to store from the received one.
    pub fn advance(&mut self, data: &[u8], dress: &super::Dress<'_>) {
        use sha1::Digest;
        if self.off {
            return;
        }
        if self.header.is_none() {
            let (hend, _) = mime::header_end(data);
            let complete = hend < data.len() || data.ends_with(b"\r\n\r\n") || data == b"\r\n";
            if !complete {
                self.off = data.len() > HEADER_MAX;
                return;
            }
            let Some(h) = dress(&data[..hend]) else {
                self.off = true;
                return;
            };
            self.sha.update(&h);
            self.header = Some((h, hend));
            self.hashed = hend;
        }
        self.sha.update(&data[self.hashed..]);
        self.hashed = data.len();
    }

    /// The message to store and its GUID, when all of `data` was hashed.
    pub fn finish(self, data: &[u8]) -> Option<(Vec<u8>, [u8; 20])> {
        use sha1::Digest;
        let (header, body) = self.header.filter(|_| !self.off && self.hashed == data.len())?;
        let mut msg = Vec::with_capacity(header.len() + data.len() - body);
        msg.extend_from_slice(&header);
        msg.extend_from_slice(&data[body..]);
        Some((msg, self.sha.finalize().into()))
    }
}

#[cfg(test)]
mod prehash_tests {
    use super::*;

    /// Hashed in any pieces, the message and GUID are the dressing of the
    /// whole and its SHA-1; an unfinished header hashes nothing.
    #[test]
    fn pieces_give_the_whole() {
        let dress = |h: &[u8]| Some([b"Received: x\r\n", h].concat());
        let msg = b"Subject: a\r\nFrom: b\r\n\r\nbody\r\n\r\nmore\r\n".to_vec();
        for step in 1..msg.len() {
            let mut p = Prehash::default();
            let mut at = 0;
            while at < msg.len() {
                at = (at + step).min(msg.len());
                p.advance(&msg[..at], &dress);
            }
            let (m, guid) = p.finish(&msg).expect("hashed");
            assert_eq!(m, [&b"Received: x\r\n"[..], &msg].concat(), "step {step}");
            assert_eq!(guid, crate::util::sha1(&m), "step {step}");
        }
        let mut p = Prehash::default();
        p.advance(b"Subject: a\r\n", &dress);
        assert!(p.finish(b"Subject: a\r\n").is_none());
        // Refused by the dressing: left to the store.
        let mut p = Prehash::default();
        p.advance(&msg, &|_| None);
        assert!(p.finish(&msg).is_none());
        // Data that grew past what was hashed: not used.
        let mut p = Prehash::default();
        p.advance(&msg[..30], &dress);
        assert!(p.finish(&msg).is_none());
    }
}
