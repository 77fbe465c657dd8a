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

fn split_path(arg: &str) -> Option<(String, Vec<(String, Option<String>)>)> {
    let arg = arg.trim_start();
    let (path, rest) = if let Some(r) = arg.strip_prefix('<') {
        // A quoted local part may hold '>'.
        let mut in_q = false;
        let mut end = None;
        for (i, c) in r.char_indices() {
            match c {
                '"' => in_q = !in_q,
                '>' if !in_q => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let e = end?;
        (r[..e].to_string(), &r[e + 1..])
    } else {
        // A path needs its brackets (Cyrus: 501).
        return None;
    };
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

/// Parses one command line (without CRLF).
pub fn parse(line: &[u8]) -> Command {
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
            match split_path(&arg[want.len()..]) {
                Some((p, params)) if v == "MAIL" => Command::Mail(p, params),
                // `<>` is a recipient no mailbox has (Cyrus: 550 unknown).
                Some((p, params)) => Command::Rcpt(p, params),
                _ => Command::Syntax("501 5.5.4 Syntax error in parameters"),
            }
        }
        "DATA" => Command::Data,
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
/// storing (but keeps reading) past `limit`.
pub struct DataReceiver {
    pub data: Vec<u8>,
    limit: usize,
    pub too_big: bool,
    /// A bare LF or CR inside the data.
    pub bare_newline: bool,
}

impl DataReceiver {
    pub fn new(limit: usize) -> Self {
        DataReceiver {
            data: Vec::new(),
            limit,
            too_big: false,
            bare_newline: false,
        }
    }

    /// Feeds one line (without its line end).  Returns true at the final `.`.
    pub fn line(&mut self, line: &[u8]) -> bool {
        if line == b"." {
            return true;
        }
        let line = line.strip_prefix(b".").unwrap_or(line);
        if line.contains(&b'\r') {
            self.bare_newline = true;
        }
        if self.data.len() + line.len() + 2 > self.limit {
            self.too_big = true;
            return false;
        }
        self.data.extend_from_slice(line);
        self.data.extend_from_slice(b"\r\n");
        false
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
        assert_eq!(parse(b"XYZZY"), Command::Unknown("XYZZY".into()));
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

/// A message as DATA sends it: leading dots doubled, a final CRLF, then
/// the `.` line.
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
            // Inside a line: on to its end.
            self.bol = false;
            match memchr::memchr(b'\n', &chunk[i..]) {
                Some(k) => i += k,
                None => return None,
            }
        }
        None
    }
}

pub fn dot_stuff(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 64);
    let mut bol = true;
    for &c in content {
        if bol && c == b'.' {
            out.push(b'.');
        }
        out.push(c);
        bol = c == b'\n';
    }
    if !out.ends_with(b"\r\n") && !out.is_empty() {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}
