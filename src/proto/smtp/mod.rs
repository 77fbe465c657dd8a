//! SMTP (RFC 5321) server side, sans I/O: command lines to commands, the
//! address and ESMTP-parameter grammar, reply formatting, and the DATA and
//! BDAT receivers (`data`).  Reply texts that depend on a command's syntax
//! are Postfix 3.7 smtpd's, byte for byte; policy replies live in the daemon.

pub mod data;
pub mod footer;
pub mod screen;

/// Bytes for a log line as Postfix shows them (`\r`, `\n`, `\t`, `\\`,
/// other control and 8-bit bytes as `\ooo`), at most `max` input bytes.
pub fn log_escape(b: &[u8], max: usize) -> String {
    let mut out = String::with_capacity(b.len().min(max));
    for &c in b.iter().take(max) {
        match c {
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(c as char),
            _ => out.push_str(&format!("\\{c:03o}")),
        }
    }
    out
}

/// The EHLO keywords a discard list may name, in Postfix's ehlo_mask
/// order (the order it logs them in).
const EHLO_MASK_NAMES: [&str; 14] = [
    "8BITMIME",
    "AUTH",
    "ETRN",
    "PIPELINING",
    "SIZE",
    "VERP",
    "VRFY",
    "XCLIENT",
    "XFORWARD",
    "STARTTLS",
    "ENHANCEDSTATUSCODES",
    "DSN",
    "SMTPUTF8",
    "CHUNKING",
];

/// The text of Postfix's `discarding EHLO keywords: ...` line for a
/// discard list (upper case): the known keywords in mask order; None
/// when there are none or the list has `SILENT-DISCARD`.
pub fn discard_log_names(words: &[String]) -> Option<String> {
    if words.iter().any(|w| w == "SILENT-DISCARD") {
        return None;
    }
    let shown: Vec<&str> = EHLO_MASK_NAMES.iter().copied().filter(|k| words.iter().any(|w| w == k)).collect();
    (!shown.is_empty()).then(|| shown.join(" "))
}

pub use data::{BdatReceiver, DataEnd, DataReceiver};

/// One ESMTP parameter: `NAME` or `NAME=value` (name upper-cased).
pub type Param = (String, Option<String>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Helo(String),
    Ehlo(String),
    /// Reverse path (without brackets; empty for `<>`) and parameters.
    Mail(String, Vec<Param>),
    Rcpt(String, Vec<Param>),
    /// DATA; the flag: it had arguments (refused with `501 5.5.4 Syntax:
    /// DATA` only after the state checks, as Postfix orders them).
    Data(bool),
    /// Chunk size and LAST.
    Bdat(u64, bool),
    Rset,
    Noop,
    Quit,
    Vrfy(String),
    Etrn(String),
    StartTls,
    /// Mechanism (upper case) and optional initial response.
    Auth(String, Option<String>),
    /// XCLIENT / XFORWARD `name=value` attributes (name upper-cased);
    /// None when malformed (Postfix checks state and authorisation first).
    Xclient(Option<Vec<(String, String)>>),
    Xforward(Option<Vec<(String, String)>>),
    /// A verb we do not know (upper-cased).
    Unknown(String),
    /// A known verb with bad arguments: the complete reply to send.
    Syntax(&'static str),
    /// A MAIL/RCPT whose path does not parse (Postfix: 501 5.1.7 / 5.1.3).
    BadPath(Verb),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Mail,
    Rcpt,
}

/// Postfix's command-name table: the names smtpd recognises (for the
/// `disconnect … commands=` statistics and `unknown=` counting).
pub const VERBS: &[&str] = &[
    "HELO", "EHLO", "XCLIENT", "XFORWARD", "STARTTLS", "AUTH", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP", "VRFY", "ETRN", "QUIT",
];

/// The characters of an address outside quoted strings (with their byte
/// offsets; a quoted string's characters are left out except controls,
/// which are never allowed), and whether a quote is left open.  Quotes
/// and backslash escapes inside them as RFC 5321 4.1.2.
fn unquoted(s: &str) -> (Vec<(usize, char)>, bool) {
    let mut out = Vec::new();
    let mut in_q = false;
    let mut esc = false;
    for (i, c) in s.char_indices() {
        if esc {
            esc = false;
            continue;
        }
        match c {
            '\\' if in_q => esc = true,
            '"' => in_q = !in_q,
            c if !in_q || c.is_control() => out.push((i, c)),
            _ => {}
        }
    }
    (out, in_q)
}

/// Splits `<path> params` after `FROM:` / `TO:`.  Postfix accepts a bare
/// address without brackets (`strict_rfc821_envelopes = no`) and blanks
/// between the colon and the path.
fn split_path(arg: &str) -> Option<(String, &str)> {
    let arg = arg.trim_start_matches([' ', '\t']);
    if let Some(r) = arg.strip_prefix('<') {
        // A quoted local part may hold '>' or blanks.
        let (chars, _) = unquoted(r);
        if let Some(&(i, _)) = chars.iter().find(|(_, c)| *c == '>') {
            return Some((r[..i].to_string(), &r[i + 1..]));
        }
        None
    } else {
        let e = arg.find([' ', '\t']).unwrap_or(arg.len());
        if e == 0 {
            return None;
        }
        Some((arg[..e].to_string(), &arg[e..]))
    }
}

/// Checks an envelope address's shape (RFC 5321 4.1.2, as leniently as
/// Postfix): no controls or blanks outside quotes, balanced quotes, at most
/// a source route (stripped).  Returns the address without the route.
pub fn check_path(path: &str) -> Option<String> {
    let path = match path.split_once(':') {
        Some((route, p)) if route.starts_with('@') => p,
        _ => path,
    };
    let (chars, in_q) = unquoted(path);
    if chars
        .iter()
        .any(|&(_, c)| c.is_control() || matches!(c, ' ' | '\t' | '<' | '>' | '(' | ')' | ',' | ';' | ':'))
    {
        return None;
    }
    // A second route or a bare domain literal is not a mailbox.
    if in_q || path.len() > 1000 || path.starts_with('@') {
        return None;
    }
    Some(path.to_string())
}

/// ESMTP parameters as sent (names matched without regard to case by
/// their users; a refusal quotes them as the client wrote them).
fn params(rest: &str) -> Vec<Param> {
    rest.split_whitespace()
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (p.to_string(), None),
        })
        .collect()
}

fn attributes(arg: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    for a in arg.split_whitespace() {
        let (k, v) = a.split_once('=')?;
        if k.is_empty() {
            return None;
        }
        out.push((k.to_ascii_uppercase(), v.to_string()));
    }
    Some(out)
}

/// For a MAIL or RCPT line `parse_strict` refuses as BadPath: the address
/// as Postfix's smtpd logs it (`Illegal address syntax from ... in MAIL
/// command: <a b@c>`): a complete but malformed `<...>`, or under
/// `strict` one without brackets.  None where Postfix logs nothing (an
/// unterminated `<`).
pub fn illegal_address(line: &[u8], strict: bool) -> Option<String> {
    let line = String::from_utf8_lossy(line);
    let (_, arg) = line.trim_matches([' ', '\t']).split_once([' ', '\t']).unwrap_or(("", ""));
    let arg = arg.trim_start_matches([' ', '\t']);
    let colon = arg.find(':')?;
    let after = arg[colon + 1..].trim_start_matches([' ', '\t']);
    if after.starts_with('<') {
        let (chars, _) = unquoted(&after[1..]);
        let &(i, _) = chars.iter().find(|(_, c)| *c == '>')?;
        return Some(after[..i + 2].to_string());
    }
    let token = &after[..after.find([' ', '\t']).unwrap_or(after.len())];
    (strict || check_path(token).is_none()).then(|| token.to_string())
}

/// Parses one command line (without its line end).
pub fn parse(line: &[u8]) -> Command {
    parse_strict(line, false)
}

/// `parse`; with `strict` (`strict_rfc821_envelopes`) a MAIL or RCPT
/// address must be in angle brackets.
pub fn parse_strict(line: &[u8], strict: bool) -> Command {
    let line = String::from_utf8_lossy(line);
    let line = line.trim_matches([' ', '\t']);
    let (verb, arg) = match line.find([' ', '\t']) {
        Some(i) => (&line[..i], line[i + 1..].trim_start_matches([' ', '\t'])),
        None => (line, ""),
    };
    let v = verb.to_ascii_uppercase();
    match v.as_str() {
        "HELO" | "EHLO" => {
            let host = arg.split_whitespace().next().unwrap_or("");
            match (host.is_empty(), v == "HELO") {
                (true, true) => Command::Syntax("501 Syntax: HELO hostname"),
                (true, false) => Command::Syntax("501 Syntax: EHLO hostname"),
                (false, true) => Command::Helo(host.to_string()),
                (false, false) => Command::Ehlo(host.to_string()),
            }
        }
        "MAIL" | "RCPT" => {
            let (want, syntax, verb) = if v == "MAIL" {
                ("FROM:", "501 5.5.4 Syntax: MAIL FROM:<address>", Verb::Mail)
            } else {
                ("TO:", "501 5.5.4 Syntax: RCPT TO:<address>", Verb::Rcpt)
            };
            if arg.len() < want.len() || !arg.is_char_boundary(want.len()) || !arg[..want.len()].eq_ignore_ascii_case(want) {
                return Command::Syntax(syntax);
            }
            let after = &arg[want.len()..];
            if strict && !after.trim_start_matches([' ', '\t']).starts_with('<') {
                return Command::BadPath(verb);
            }
            let Some((path, rest)) = split_path(after) else {
                return Command::BadPath(verb);
            };
            let Some(path) = check_path(&path) else {
                return Command::BadPath(verb);
            };
            match verb {
                Verb::Mail => Command::Mail(path, params(rest)),
                Verb::Rcpt if path.is_empty() => Command::BadPath(verb),
                Verb::Rcpt => Command::Rcpt(path, params(rest)),
            }
        }
        "DATA" => Command::Data(!arg.is_empty()),
        "BDAT" => {
            let mut it = arg.split_whitespace();
            let size = it.next().and_then(|s| s.parse::<u64>().ok());
            let last = it.next();
            match (size, last, it.next()) {
                (Some(n), None, None) => Command::Bdat(n, false),
                (Some(n), Some(l), None) if l.eq_ignore_ascii_case("LAST") => Command::Bdat(n, true),
                _ => Command::Syntax("521 5.5.4 Syntax: BDAT count [LAST]"),
            }
        }
        "RSET" if arg.is_empty() => Command::Rset,
        "RSET" => Command::Syntax("501 5.5.4 Syntax: RSET"),
        "NOOP" => Command::Noop,
        "QUIT" => Command::Quit,
        "VRFY" => Command::Vrfy(arg.to_string()),
        "ETRN" if arg.is_empty() => Command::Syntax("500 Syntax: ETRN domain"),
        "ETRN" => Command::Etrn(arg.to_string()),
        "STARTTLS" if arg.is_empty() => Command::StartTls,
        "STARTTLS" => Command::Syntax("501 5.5.4 Syntax: STARTTLS"),
        "AUTH" => {
            let mut it = arg.split_whitespace();
            match (it.next(), it.next(), it.next()) {
                (Some(m), ir, None) => Command::Auth(m.to_ascii_uppercase(), ir.map(str::to_string)),
                _ => Command::Syntax("501 5.5.4 Syntax: AUTH mechanism"),
            }
        }
        "XCLIENT" | "XFORWARD" => {
            let a = attributes(arg).filter(|a| !a.is_empty());
            if v == "XCLIENT" {
                Command::Xclient(a)
            } else {
                Command::Xforward(a)
            }
        }
        _ => Command::Unknown(v),
    }
}

/// Formats a reply: `text` may hold several lines separated by `\n`; each
/// gets the code, `-` on all but the last (RFC 5321 4.2.1).
pub fn reply(code: u16, text: &str) -> String {
    let lines: Vec<&str> = text.split('\n').collect();
    let mut out = String::new();
    for (i, l) in lines.iter().enumerate() {
        let sep = if i + 1 == lines.len() { ' ' } else { '-' };
        out.push_str(&format!("{code}{sep}{l}\r\n"));
    }
    out
}

/// An enhanced status code, class.subject.detail (RFC 3463): `5.7.1`.
pub fn enhanced_status(s: &str) -> bool {
    let p: Vec<&str> = s.split('.').collect();
    p.len() == 3
        && matches!(p[0], "2" | "4" | "5")
        && p[1..]
            .iter()
            .all(|x| !x.is_empty() && x.len() <= 3 && x.bytes().all(|b| b.is_ascii_digit()))
}

/// Parses a server reply's first line: code and whether more lines follow.
pub fn reply_line(line: &[u8]) -> Option<(u16, bool, &[u8])> {
    if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code = (line[0] - b'0') as u16 * 100 + (line[1] - b'0') as u16 * 10 + (line[2] - b'0') as u16;
    match line.get(3) {
        None => Some((code, false, &[])),
        Some(b' ') => Some((code, false, &line[4..])),
        Some(b'-') => Some((code, true, &line[4..])),
        _ => None,
    }
}

/// xtext (RFC 3461 4): `+XX` hex escapes; None when malformed.
pub fn xtext_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 3;
            }
            c if (b'!'..=b'~').contains(&c) && c != b'=' => {
                out.push(c);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// xtext encoding for ORCPT/ENVID sent onwards.
pub fn xtext_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_envelopes_and_the_logged_address() {
        assert!(matches!(parse_strict(b"MAIL FROM: a@b", true), Command::BadPath(Verb::Mail)));
        assert!(matches!(parse_strict(b"RCPT TO:a@b", true), Command::BadPath(Verb::Rcpt)));
        assert!(matches!(parse_strict(b"MAIL FROM: <a@b>", true), Command::Mail(..)));
        assert!(matches!(parse_strict(b"MAIL FROM: a@b", false), Command::Mail(..)));
        assert_eq!(illegal_address(b"MAIL FROM: a@b", true).as_deref(), Some("a@b"));
        assert_eq!(illegal_address(b"MAIL FROM:<a b@c> X=1", false).as_deref(), Some("<a b@c>"));
        assert_eq!(illegal_address(b"MAIL FROM:<a@b", false), None);
        // Parameters keep the client's spelling.
        assert_eq!(
            parse(b"RCPT TO:<a@b> junk"),
            Command::Rcpt("a@b".into(), vec![("junk".into(), None)])
        );
    }

    #[test]
    fn commands() {
        let cases: &[(&[u8], Command)] = &[
            (b"EHLO client.example", Command::Ehlo("client.example".into())),
            (b"helo  x", Command::Helo("x".into())),
            (b"EHLO", Command::Syntax("501 Syntax: EHLO hostname")),
            (b"HELO ", Command::Syntax("501 Syntax: HELO hostname")),
            (
                b"MAIL FROM:<a@b> SIZE=10 BODY=8BITMIME",
                Command::Mail(
                    "a@b".into(),
                    vec![("SIZE".into(), Some("10".into())), ("BODY".into(), Some("8BITMIME".into()))],
                ),
            ),
            (b"mail from: <>", Command::Mail(String::new(), vec![])),
            (b"MAIL FROM:a@b", Command::Mail("a@b".into(), vec![])),
            (b"MAIL TO:<a@b>", Command::Syntax("501 5.5.4 Syntax: MAIL FROM:<address>")),
            (b"MAIL FROM:<a b@c>", Command::BadPath(Verb::Mail)),
            (b"MAIL FROM:<a@b", Command::BadPath(Verb::Mail)),
            (
                b"RCPT TO:<\"a>b\"@c> NOTIFY=NEVER",
                Command::Rcpt("\"a>b\"@c".into(), vec![("NOTIFY".into(), Some("NEVER".into()))]),
            ),
            (b"RCPT TO:<@r1,@r2:u@d>", Command::Rcpt("u@d".into(), vec![])),
            (b"MAIL FROM:<@x:@b.b.TO:>", Command::BadPath(Verb::Mail)),
            (b"RCPT TO:<>", Command::BadPath(Verb::Rcpt)),
            (b"RCPT FOO", Command::Syntax("501 5.5.4 Syntax: RCPT TO:<address>")),
            (b"DATA", Command::Data(false)),
            (b"DATA x", Command::Data(true)),
            (b"BDAT 100", Command::Bdat(100, false)),
            (b"BDAT 0 LAST", Command::Bdat(0, true)),
            (b"BDAT x", Command::Syntax("521 5.5.4 Syntax: BDAT count [LAST]")),
            (b"BDAT 1 FIRST", Command::Syntax("521 5.5.4 Syntax: BDAT count [LAST]")),
            (b"AUTH PLAIN AGFAYg==", Command::Auth("PLAIN".into(), Some("AGFAYg==".into()))),
            (b"AUTH", Command::Syntax("501 5.5.4 Syntax: AUTH mechanism")),
            (
                b"XCLIENT ADDR=1.2.3.4 NAME=x",
                Command::Xclient(Some(vec![("ADDR".into(), "1.2.3.4".into()), ("NAME".into(), "x".into())])),
            ),
            (b"XCLIENT junk", Command::Xclient(None)),
            (b"ETRN", Command::Syntax("500 Syntax: ETRN domain")),
            (b"XYZZY", Command::Unknown("XYZZY".into())),
            (b"MAIL FR\xc3\xa9M:<a@b>", Command::Syntax("501 5.5.4 Syntax: MAIL FROM:<address>")),
            (b"MAIL FROM:<a\x01@b>", Command::BadPath(Verb::Mail)),
        ];
        for (input, want) in cases {
            assert_eq!(&parse(input), want, "{}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn replies_and_xtext() {
        assert_eq!(reply(250, "a\nb"), "250-a\r\n250 b\r\n");
        assert_eq!(reply_line(b"250-PIPELINING"), Some((250, true, &b"PIPELINING"[..])));
        assert_eq!(reply_line(b"354"), Some((354, false, &b""[..])));
        assert_eq!(reply_line(b"25x"), None);
        assert_eq!(xtext_decode("a+2Bb"), Some("a+b".into()));
        assert_eq!(xtext_decode("a+2"), None);
        assert_eq!(xtext_encode("a+b=c"), "a+2Bb+3Dc");
    }
}
