//! LMTP (RFC 2033) server side, sans I/O: command lines to commands, and
//! the DATA receiver (dot-unstuffing, end-of-data, size bound).  The
//! reply texts are Cyrus lmtpengine's and live in the daemon.

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Lhlo(String),
    /// Reverse path (without brackets) and ESMTP parameters.
    Mail(String, Vec<(String, Option<String>)>),
    Rcpt(String, Vec<(String, Option<String>)>),
    Data,
    /// BDAT (RFC 3030): the chunk's size and whether it is the last.
    Bdat(u64, bool),
    Rset,
    Noop,
    Quit,
    Vrfy,
    StartTls,
    /// Mechanism and optional initial response.
    Auth(String, Option<String>),
    /// HELO/EHLO: LMTP servers must refuse them (RFC 2033 4.1).
    HeloEhlo,
    Unknown(String),
    /// Recognised verb, bad arguments.
    Syntax(&'static str),
}

/// The length of the path at the start of `b` (`<`...`>`) under Cyrus
/// lmtpd's rules for envelope addresses: an optional source route of
/// `@domain` hops, a local part either quoted (anything, `\` escaping)
/// or of printable ASCII without `<>()[]\,;:"`, a domain of letters,
/// digits, `.` and `-` or an `[address literal]`, then the end or a
/// space.  With `strict` off (`lmtp_strict_rfc2821: no`) each 8-bit byte
/// of an unquoted local part becomes `X` (so that an MTA that lets them
/// through does not make us refuse, and it bounce, the mail); with it on,
/// such an address is refused.
fn cyrus_path(b: &mut [u8], strict: bool) -> Option<usize> {
    let mut p = 0;
    if at(b, p) != b'<' {
        return None;
    }
    p += 1;
    let domain = |b: &[u8], mut p: usize| -> Option<usize> {
        if at(b, p) == b'[' {
            p += 1;
            while at(b, p).is_ascii_digit() || at(b, p) == b'.' {
                p += 1;
            }
            if at(b, p) != b']' {
                return None;
            }
            Some(p + 1)
        } else {
            while at(b, p).is_ascii_alphanumeric() || at(b, p) == b'.' || at(b, p) == b'-' {
                p += 1;
            }
            Some(p)
        }
    };
    // at-domain-list
    while at(b, p) == b'@' {
        p = domain(b, p + 1)?;
        if (at(b, p) == b',' && at(b, p + 1) == b'@') || (at(b, p) == b':' && at(b, p + 1) != b'@') {
            p += 1;
        } else {
            return None;
        }
    }
    // local-part
    if at(b, p) == b'"' {
        p += 1;
        while p < b.len() && b[p] != b'"' {
            if b[p] == b'\\' {
                p += 1;
                if p >= b.len() {
                    return None;
                }
            }
            p += 1;
        }
        if p >= b.len() {
            return None;
        }
        p += 1;
    } else {
        while p < b.len() && b[p] != b'@' && b[p] != b'>' {
            if b[p] == b'\\' {
                p += 1;
                if p >= b.len() {
                    return None;
                }
            } else {
                if b[p] >= 0x80 && !strict {
                    b[p] = b'X';
                }
                if b[p] <= b' ' || b[p] >= 0x80 || b"<>()[]\\,;:\"".contains(&b[p]) {
                    return None;
                }
            }
            p += 1;
        }
    }
    if at(b, p) == b'@' {
        p = domain(b, p + 1)?;
    }
    if at(b, p) != b'>' {
        return None;
    }
    p += 1;
    if p < b.len() && b[p] != b' ' {
        return None;
    }
    Some(p)
}

/// The byte at `p`, NUL past the end (as C's string walk sees it).
fn at(b: &[u8], p: usize) -> u8 {
    b.get(p).copied().unwrap_or(0)
}

fn split_path(arg: &[u8], strict: bool) -> Option<(String, Vec<(String, Option<String>)>)> {
    let start = arg.iter().position(|&c| c != b' ' && c != b'\t').unwrap_or(arg.len());
    let mut arg = arg[start..].to_vec();
    // A path needs its brackets and Cyrus's address rules (else 501).
    let end = cyrus_path(&mut arg, strict)?;
    let path = String::from_utf8_lossy(&arg[1..end - 1]).into_owned();
    let rest = String::from_utf8_lossy(&arg[end..]).into_owned();
    let rest = rest.as_str();
    let mut params = Vec::new();
    for p in rest.split_whitespace() {
        match p.split_once('=') {
            Some((k, v)) => params.push((k.to_ascii_uppercase(), Some(v.to_string()))),
            None => params.push((p.to_ascii_uppercase(), None)),
        }
    }
    // Source routes (@a,@b:user@dom) are stripped, RFC 5321 4.1.1.3.
    let path = match path.split_once(':') {
        Some((route, p)) if route.starts_with('@') => p.to_string(),
        _ => path,
    };
    Some((path, params))
}

/// Parses one command line (without CRLF), addresses under
/// `lmtp_strict_rfc2821` (on).
pub fn parse(line: &[u8]) -> Command {
    parse_with(line, true)
}

/// `parse` with `lmtp_strict_rfc2821` as given (see `cyrus_path`).
pub fn parse_with(line: &[u8], strict_rfc2821: bool) -> Command {
    let raw = line;
    let line = String::from_utf8_lossy(line);
    let line = line.trim_end_matches([' ', '\t']);
    let (verb, arg) = match line.find(' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, ""),
    };
    let v = verb.to_ascii_uppercase();
    match v.as_str() {
        "LHLO" => {
            if arg.trim().is_empty() {
                Command::Syntax("501 5.0.0 domain address required")
            } else {
                Command::Lhlo(arg.trim().to_string())
            }
        }
        "HELO" | "EHLO" => Command::HeloEhlo,
        "MAIL" | "RCPT" => {
            let want = if v == "MAIL" { "FROM:" } else { "TO:" };
            if arg.len() < want.len() || !arg[..want.len()].eq_ignore_ascii_case(want) {
                return Command::Syntax("501 5.5.4 Syntax error in parameters");
            }
            // The address from the raw bytes: where the line is not
            // UTF-8, `arg`'s offsets are not the line's.
            let verb_end = raw.iter().position(|&c| c == b' ').map_or(raw.len(), |i| i + 1);
            let mut raw_arg = raw.get(verb_end + want.len()..).unwrap_or(b"");
            while let [rest @ .., b' ' | b'\t'] = raw_arg {
                raw_arg = rest;
            }
            match split_path(raw_arg, strict_rfc2821) {
                Some((p, params)) if v == "MAIL" => Command::Mail(p, params),
                // `<>` is a recipient no mailbox has (Cyrus: 550 unknown).
                Some((p, params)) => Command::Rcpt(p, params),
                _ => Command::Syntax("501 5.5.4 Syntax error in parameters"),
            }
        }
        "DATA" => Command::Data,
        "BDAT" => {
            let mut it = arg.split_ascii_whitespace();
            let size = it
                .next()
                .filter(|n| !n.is_empty() && n.len() <= 18 && n.bytes().all(|c| c.is_ascii_digit()));
            match (size.and_then(|n| n.parse().ok()), it.next(), it.next()) {
                (Some(n), None, None) => Command::Bdat(n, false),
                (Some(n), Some(l), None) if l.eq_ignore_ascii_case("LAST") => Command::Bdat(n, true),
                _ => Command::Syntax("501 5.5.4 Syntax error in parameters"),
            }
        }
        "RSET" => Command::Rset,
        "NOOP" => Command::Noop,
        "QUIT" => Command::Quit,
        "VRFY" => Command::Vrfy,
        "STARTTLS" => Command::StartTls,
        "AUTH" => {
            let mut it = arg.split_whitespace();
            match it.next() {
                Some(m) => Command::Auth(m.to_ascii_uppercase(), it.next().map(str::to_string)),
                None => Command::Syntax("501 5.5.4 Syntax error in parameters"),
            }
        }
        _ => Command::Unknown(v),
    }
}

/// Collects DATA: lines up to `.`, dot-unstuffed, CRLF normalised; stops
/// storing (but keeps reading) past `limit`.  A line is what ends with LF
/// (a CR before it is part of the line end); a line longer than
/// `line_limit` makes the message too big, as the line reader's limit
/// does for commands.  Lines come either whole (`line`, from a line
/// reader) or as raw bytes in any split (`feed`), which is what a big
/// message takes: no allocation per line, one copy.
pub struct DataReceiver {
    pub data: Vec<u8>,
    limit: usize,
    line_limit: usize,
    pub too_big: bool,
    /// A bare LF or CR inside the data.
    pub bare_newline: bool,
    /// The start of a line whose end has not come yet (`feed`).
    carry: Vec<u8>,
    /// Inside a line already found too long: up to its LF, nothing counts.
    skip: bool,
}

impl DataReceiver {
    pub fn new(limit: usize) -> Self {
        Self::with_line_limit(limit, usize::MAX - 2)
    }

    pub fn with_line_limit(limit: usize, line_limit: usize) -> Self {
        DataReceiver {
            data: Vec::new(),
            limit,
            line_limit,
            too_big: false,
            bare_newline: false,
            carry: Vec::new(),
            skip: false,
        }
    }

    /// The raw input continues inside a line that was already too long
    /// (a line reader handing over mid-line): its rest is skipped.
    pub fn skip_to_line_end(&mut self) {
        self.too_big = true;
        self.skip = true;
    }

    /// Feeds one line (without its line end).  Returns true at the final `.`.
    pub fn line(&mut self, line: &[u8]) -> bool {
        if line == b"." {
            return true;
        }
        let line = line.strip_prefix(b".").unwrap_or(line);
        if memchr::memchr(b'\r', line).is_some() {
            self.bare_newline = true;
        }
        if self.too_big || self.data.len() + line.len() + 2 > self.limit {
            self.too_big = true;
            return false;
        }
        self.data.extend_from_slice(line);
        self.data.extend_from_slice(b"\r\n");
        false
    }

    /// A complete line as raw bytes, LF excluded.
    fn raw_line(&mut self, line: &[u8]) -> bool {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > self.line_limit {
            self.too_big = true;
            return false;
        }
        self.line(line)
    }

    /// Feeds raw input (any split).  At the final `.` line: how many
    /// bytes of `input` it took (what follows is the next command).
    pub fn feed(&mut self, input: &[u8]) -> Option<usize> {
        let mut at = 0;
        if self.skip || !self.carry.is_empty() {
            let Some(i) = memchr::memchr(b'\n', input) else {
                if !self.skip {
                    self.carry.extend_from_slice(input);
                    if self.carry.len() > self.line_limit + 1 {
                        self.carry = Vec::new();
                        self.skip_to_line_end();
                    }
                }
                return None;
            };
            at = i + 1;
            if std::mem::take(&mut self.skip) {
                self.carry.clear();
            } else {
                let mut line = std::mem::take(&mut self.carry);
                line.extend_from_slice(&input[..i]);
                let done = self.raw_line(&line);
                line.clear();
                self.carry = line;
                if done {
                    return Some(at);
                }
            }
        }
        while let Some(i) = memchr::memchr(b'\n', &input[at..]) {
            let end = at + i;
            if self.raw_line(&input[at..end]) {
                return Some(end + 1);
            }
            at = end + 1;
        }
        let rest = &input[at..];
        if rest.len() > self.line_limit + 1 {
            self.skip_to_line_end();
        } else {
            self.carry.extend_from_slice(rest);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_end_in_any_chunking() {
        let msg = b"Subject: x\r\n\r\n..dot\r\n.x\r\nbody\n.\rno\r\n.\r\nNEXT\r\n";
        let end = msg.len() - b"NEXT\r\n".len();
        for split in 0..msg.len() {
            let mut d = DataEnd::default();
            let found = match d.scan(&msg[..split]) {
                Some(e) => Some(e),
                None => d.scan(&msg[split..]).map(|e| e + split),
            };
            assert_eq!(found, Some(end), "split at {split}");
        }
        assert_eq!(DataEnd::default().scan(b".\r\nRSET\r\n"), Some(3));
        assert_eq!(DataEnd::default().scan(b"a\n.\nb"), Some(4));
        assert_eq!(DataEnd::default().scan(b"a.\r\n.."), None);
    }

    #[test]
    fn data_raw_in_any_split_as_lines() {
        let msg = b"Subject: x\r\n\r\n..dot\r\n.x\r\nbare\nlf\rcr\r\n.\rno\r\n\r\n.\r\nNEXT\r\n";
        let mut by_line = DataReceiver::new(1000);
        for l in msg.split(|&c| c == b'\n') {
            if by_line.line(l.strip_suffix(b"\r").unwrap_or(l)) {
                break;
            }
        }
        assert_eq!(by_line.data, b"Subject: x\r\n\r\n.dot\r\nx\r\nbare\r\nlf\rcr\r\n\rno\r\n\r\n");
        assert!(by_line.bare_newline);
        let end = msg.len() - b"NEXT\r\n".len();
        for a in 0..msg.len() {
            for b in a..msg.len() {
                let mut rx = DataReceiver::new(1000);
                let mut found = Vec::new();
                let mut off = 0;
                for part in [&msg[..a], &msg[a..b], &msg[b..]] {
                    if let Some(e) = rx.feed(part) {
                        found.push(off + e);
                        break;
                    }
                    off += part.len();
                }
                assert_eq!(found.first(), Some(&end), "split at {a}, {b}");
                assert_eq!(rx.data, by_line.data, "split at {a}, {b}");
                assert!(rx.bare_newline && !rx.too_big);
            }
        }
        // The size limit: counted, not stored.
        let mut rx = DataReceiver::new(10);
        assert_eq!(rx.feed(b"0123456789\r\nab\r\n.\r\n"), Some(19));
        assert!(rx.too_big && rx.data.len() <= 10);
        // A line over the line limit, in one piece or many; the end is
        // still found after it, and only at a line start.
        for step in [1, 3, 7, 100] {
            let mut rx = DataReceiver::with_line_limit(1000, 8);
            let input = b"short\r\n0123456789.\r\nx\r\n.\r\nRSET\r\n";
            let mut at = 0;
            let found = loop {
                let part = &input[at..(at + step).min(input.len())];
                if let Some(e) = rx.feed(part) {
                    break Some(at + e);
                }
                at += part.len();
                if at >= input.len() {
                    break None;
                }
            };
            assert_eq!(found, Some(input.len() - 6), "step {step}");
            assert!(rx.too_big, "step {step}");
        }
        // Handing over inside a too-long line: its rest is no line.
        let mut rx = DataReceiver::with_line_limit(1000, 8);
        rx.skip_to_line_end();
        assert_eq!(rx.feed(b".\r\n.\r\n"), Some(6));
        assert!(rx.too_big);
    }

    #[test]
    fn commands() {
        assert_eq!(parse(b"LHLO x.example"), Command::Lhlo("x.example".into()));
        assert_eq!(
            parse(b"MAIL FROM:<a@b> SIZE=10 BODY=8BITMIME"),
            Command::Mail(
                "a@b".into(),
                vec![("SIZE".into(), Some("10".into())), ("BODY".into(), Some("8BITMIME".into()))]
            )
        );
        assert_eq!(parse(b"mail from:<>"), Command::Mail(String::new(), vec![]));
        assert_eq!(
            parse(b"RCPT TO:<\"a>b\"@c> IGNOREQUOTA"),
            Command::Rcpt("\"a>b\"@c".into(), vec![("IGNOREQUOTA".into(), None)])
        );
        assert_eq!(parse(b"RCPT TO:<@r1,@r2:u@d>"), Command::Rcpt("u@d".into(), vec![]));
        assert_eq!(parse(b"RCPT TO:<>"), Command::Rcpt(String::new(), vec![]));
        assert!(matches!(parse(b"RCPT TO:u@d"), Command::Syntax(_)));
        assert!(matches!(parse(b"RCPT FOO"), Command::Syntax(_)));
        assert_eq!(parse(b"EHLO x"), Command::HeloEhlo);
        assert_eq!(parse(b"BDAT 1000"), Command::Bdat(1000, false));
        assert_eq!(parse(b"bdat 0 last"), Command::Bdat(0, true));
        for bad in [
            "BDAT",
            "BDAT x",
            "BDAT -1",
            "BDAT 1 FIRST",
            "BDAT 1 LAST x",
            "BDAT 9999999999999999999",
        ] {
            assert!(matches!(parse(bad.as_bytes()), Command::Syntax(_)), "{bad}");
        }
        assert_eq!(parse(b"XYZZY"), Command::Unknown("XYZZY".into()));
    }

    #[test]
    fn addresses_as_cyrus_lmtpd() {
        // 8-bit in the local part: refused, or each byte made X.
        let line = b"RCPT TO:<m\xfcller\xc3\xa9@example.org> NOTIFY=NEVER";
        assert!(matches!(parse(line), Command::Syntax(_)));
        assert_eq!(
            parse_with(line, false),
            Command::Rcpt("mXllerXX@example.org".into(), vec![("NOTIFY".into(), Some("NEVER".into()))])
        );
        assert_eq!(
            parse_with(b"MAIL FROM:<b\xe4r@x.example>", false),
            Command::Mail("bXr@x.example".into(), vec![])
        );
        // Inside quotes anything goes; a domain is ASCII either way.
        assert!(matches!(parse(b"RCPT TO:<\"m\xfcller\"@example.org>"), Command::Rcpt(..)));
        assert!(matches!(parse_with(b"RCPT TO:<u@\xe9x.org>", false), Command::Syntax(_)));
        for bad in [
            &b"RCPT TO:<a b@c>"[..],
            b"RCPT TO:<a(b)@c>",
            b"RCPT TO:<a,b@c>",
            b"RCPT TO:<a;b@c>",
            b"RCPT TO:<u@c_d.org>",
            b"RCPT TO:<u@[1.2.3.4>",
            b"RCPT TO:<u@d>x",
            b"RCPT TO:<@r1;u@d>",
            b"RCPT TO:<\"open@d>",
        ] {
            assert!(matches!(parse(bad), Command::Syntax(_)), "{}", String::from_utf8_lossy(bad));
        }
        for good in [
            &b"RCPT TO:<u+detail@d.example>"[..],
            b"RCPT TO:<a\\ b@c>",
            b"RCPT TO:<u@[192.0.2.1]>",
            b"RCPT TO:<@r1.example:u@d>",
            b"RCPT TO:<postmaster>",
            b"RCPT TO:<u@d>  ",
            b"MAIL FROM:<a.b-c=d@e> BODY=8BITMIME",
        ] {
            assert!(!matches!(parse(good), Command::Syntax(_)), "{}", String::from_utf8_lossy(good));
        }
    }

    #[test]
    fn long_lines_broken_as_postfix_sends_them() {
        // Short lines: as dot_stuff.
        assert_eq!(dot_stuff_folded(b".a\r\nb\r\n", 5), dot_stuff(b".a\r\nb\r\n"));
        // Exactly the limit: whole; one more: broken, then a space and
        // the rest; a stuffed dot does not count.
        assert_eq!(dot_stuff_folded(b"abcde\r\nabcdef\r\n", 5), b"abcde\r\nabcde\r\n f\r\n.\r\n");
        assert_eq!(dot_stuff_folded(b".bcdefghijkl\r\n", 5), b"..bcde\r\n fghi\r\n jkl\r\n.\r\n");
        // No final line end; a bare LF kept; no limit.
        assert_eq!(dot_stuff_folded(b"x\nabcdefg", 5), b"x\nabcde\r\n fg\r\n.\r\n");
        assert_eq!(dot_stuff_folded(b"abcdefg\r\n", 0), dot_stuff(b"abcdefg\r\n"));
    }

    #[test]
    fn data_dots_and_limit() {
        let mut d = DataReceiver::new(20);
        assert!(!d.line(b"..x"));
        assert!(!d.line(b"a"));
        assert!(d.line(b"."));
        assert_eq!(d.data, b".x\r\na\r\n");
        let mut d = DataReceiver::new(5);
        d.line(b"abcdef");
        assert!(d.too_big);
        assert!(d.data.is_empty());
    }
}

/// Finds the end of a message in DATA's raw, still dot-stuffed input
/// (the line `.`, ended by CRLF or a bare LF), chunk by chunk: a proxy
/// passes the bytes on as they are.
#[derive(Debug, Clone)]
pub struct DataEnd {
    bol: bool,
    /// 1: a `.` at the start of a line; 2: `.` CR.
    dot: u8,
}

impl Default for DataEnd {
    fn default() -> Self {
        DataEnd { bol: true, dot: 0 }
    }
}

impl DataEnd {
    /// Where in `chunk` the message ends (just after the final line's
    /// LF), if it does.
    pub fn scan(&mut self, chunk: &[u8]) -> Option<usize> {
        let mut i = 0;
        while i < chunk.len() {
            let c = chunk[i];
            if self.dot > 0 {
                match (self.dot, c) {
                    (_, b'\n') => return Some(i + 1),
                    (1, b'\r') => {
                        self.dot = 2;
                        i += 1;
                        continue;
                    }
                    _ => self.dot = 0,
                }
            } else if self.bol && c == b'.' {
                self.dot = 1;
                self.bol = false;
                i += 1;
                continue;
            }
            if c == b'\n' {
                self.bol = true;
                i += 1;
                continue;
            }
            // Inside a line: on to the next line that starts with a dot
            // (the line ends between are of no interest).
            self.bol = false;
            match memchr::memmem::find(&chunk[i..], b"\n.") {
                Some(k) => {
                    i += k + 1;
                    self.bol = true;
                }
                None => {
                    self.bol = chunk.last() == Some(&b'\n');
                    return None;
                }
            }
        }
        None
    }
}

/// A message as DATA sends it: leading dots doubled, a final CRLF, then
/// the `.` line.
pub fn dot_stuff(content: &[u8]) -> Vec<u8> {
    dot_stuff_folded(content, 0)
}

/// `dot_stuff` with every line longer than `limit` bytes (its end not
/// counted) broken as Postfix's SMTP and LMTP clients break it
/// (`smtp_line_length_limit`): `limit` bytes, CRLF, then a space and up
/// to `limit - 1` more, and so on.  A stuffed dot is not counted; a limit
/// under 2 breaks nothing.
pub fn dot_stuff_folded(content: &[u8], limit: usize) -> Vec<u8> {
    let fold = limit >= 2;
    let mut out = Vec::with_capacity(content.len() + 64);
    for line in content.split_inclusive(|&c| c == b'\n') {
        let body_len = line.len() - line.strip_suffix(b"\n").map_or(0, |l| if l.ends_with(b"\r") { 2 } else { 1 });
        let (mut text, end) = line.split_at(body_len);
        if text.starts_with(b".") {
            out.push(b'.');
        }
        let mut room = limit;
        while fold && text.len() > room {
            out.extend_from_slice(&text[..room]);
            out.extend_from_slice(b"\r\n ");
            text = &text[room..];
            room = limit - 1;
        }
        out.extend_from_slice(text);
        out.extend_from_slice(end);
    }
    if !out.ends_with(b"\r\n") && !out.is_empty() {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}
