//! ManageSieve (RFC 5804) server side, sans I/O: bytes in, commands out,
//! with the reply texts of Cyrus timsieved for malformed commands; and
//! the string forms of replies.
//!
//! A command is a line of atoms, quoted strings and non-synchronizing
//! literals (`{n+}` CRLF and n octets); a synchronizing literal (`{n}`)
//! is refused, as Cyrus does, since ManageSieve has no continuation to
//! answer it with.  Every read is bounded: a line outside its literals
//! by `Limits::line`, a literal by `Limits::literal`.  A literal over its
//! bound is not kept: the caller is told how many octets to throw away
//! before it skips to the end of that line.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Authenticate { mech: String, initial: Option<Vec<u8>> },
    StartTls,
    Logout,
    Capability,
    HaveSpace { name: Vec<u8>, size: u64 },
    PutScript { name: Vec<u8>, script: Vec<u8> },
    ListScripts,
    SetActive { name: Vec<u8> },
    GetScript { name: Vec<u8> },
    DeleteScript { name: Vec<u8> },
    RenameScript { old: Vec<u8>, new: Vec<u8> },
    CheckScript { script: Vec<u8> },
    Noop { tag: Option<Vec<u8>> },
    Unauthenticate,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The longest line, literals not counted.
    pub line: usize,
    /// The longest literal kept.
    pub literal: usize,
}

/// What the start of a buffer holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<T> {
    /// Not a whole line yet (and not over the line bound).
    Incomplete,
    /// `used` octets made `T`.
    Done { used: usize, value: T },
    /// A malformed line: answer `NO "<text>"`, drop `used` octets, then
    /// `discard` more (a literal over its bound), then the rest of the
    /// line up to its LF (`to_eol`).
    Bad {
        used: usize,
        discard: u64,
        to_eol: bool,
        text: &'static str,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Atom(String),
    Str(Vec<u8>),
}

const BAD_LITERAL: &str = "Did not specify legal script data length";
const BAD_LINE: &str = "Expected a command. Got something else.";

/// The tokens of one line.  A token that is not an atom, a quoted string
/// or a literal ends the line there (`BAD_LINE`, rest of line skipped).
fn tokens(buf: &[u8], lim: Limits) -> Parsed<Vec<Token>> {
    let mut toks = Vec::new();
    let mut p = 0;
    // Octets of the line seen outside literals.
    let mut plain = 0usize;
    loop {
        let start = p;
        let Some(&c) = buf.get(p) else {
            return over(buf.len(), plain + (p - start), lim);
        };
        match c {
            b'\r' | b'\n' => {
                if c == b'\r' {
                    match buf.get(p + 1) {
                        None => return Parsed::Incomplete,
                        Some(b'\n') => p += 1,
                        Some(_) => return skip(p, BAD_LINE),
                    }
                }
                return Parsed::Done { used: p + 1, value: toks };
            }
            b' ' if !toks.is_empty() && buf.get(p + 1).is_some_and(|&n| n != b'\r' && n != b'\n' && n != b' ') => {
                p += 1;
                plain += 1;
                continue;
            }
            b' ' if !toks.is_empty() && buf.get(p + 1).is_none() => return over(buf.len(), plain, lim),
            b'"' => {
                let mut s = Vec::new();
                p += 1;
                loop {
                    match buf.get(p) {
                        None => return over(buf.len(), plain + (p - start), lim),
                        Some(b'"') => break,
                        Some(b'\\') => match buf.get(p + 1) {
                            None => return over(buf.len(), plain + (p - start), lim),
                            Some(&e @ (b'"' | b'\\')) => {
                                s.push(e);
                                p += 2;
                            }
                            Some(_) => return skip(p, BAD_LINE),
                        },
                        Some(b'\r' | b'\n' | 0) => return skip(p, BAD_LINE),
                        Some(&b) => {
                            s.push(b);
                            p += 1;
                        }
                    }
                }
                p += 1;
                plain += p - start;
                toks.push(Token::Str(s));
            }
            b'{' => {
                let mut q = p + 1;
                while buf.get(q).is_some_and(u8::is_ascii_digit) {
                    q += 1;
                }
                let digits = &buf[p + 1..q];
                let plus = buf.get(q) == Some(&b'+');
                let close = q + usize::from(plus);
                match buf.get(close) {
                    None => return over(buf.len(), plain + (close - start), lim),
                    Some(b'}') => {}
                    Some(_) => return skip(p, BAD_LITERAL),
                }
                let eol = match (buf.get(close + 1), buf.get(close + 2)) {
                    (Some(b'\n'), _) => close + 2,
                    (Some(b'\r'), Some(b'\n')) => close + 3,
                    (None, _) | (Some(b'\r'), None) => return over(buf.len(), plain + (close - start), lim),
                    _ => return skip(p, BAD_LITERAL),
                };
                if digits.is_empty() || !plus {
                    // A synchronizing literal's client waits for a
                    // continuation that never comes; Cyrus answers at once.
                    return Parsed::Bad {
                        used: eol,
                        discard: 0,
                        to_eol: false,
                        text: BAD_LITERAL,
                    };
                }
                let n: u64 = std::str::from_utf8(digits).ok().and_then(|d| d.parse().ok()).unwrap_or(u64::MAX);
                if n > lim.literal as u64 {
                    return Parsed::Bad {
                        used: eol,
                        discard: n,
                        to_eol: true,
                        text: BAD_LITERAL,
                    };
                }
                let n = n as usize;
                if buf.len() < eol + n {
                    return Parsed::Incomplete;
                }
                toks.push(Token::Str(buf[eol..eol + n].to_vec()));
                plain += eol - start;
                p = eol + n;
            }
            c if c.is_ascii_alphanumeric() => {
                while buf.get(p).is_some_and(u8::is_ascii_alphanumeric) {
                    p += 1;
                }
                if p == buf.len() {
                    return over(buf.len(), plain + (p - start), lim);
                }
                plain += p - start;
                toks.push(Token::Atom(String::from_utf8_lossy(&buf[start..p]).into_owned()));
            }
            _ => return skip(p, BAD_LINE),
        }
        if plain > lim.line {
            return skip(p, BAD_LINE);
        }
        // After a token: SP and another, or the end of the line.
        match buf.get(p) {
            None => return over(buf.len(), plain, lim),
            Some(b' ' | b'\r' | b'\n') => {}
            Some(_) => return skip(p, BAD_LINE),
        }
    }
}

/// An unfinished line: wait for more, unless it is already too long.
fn over<T>(buf_len: usize, plain: usize, lim: Limits) -> Parsed<T> {
    if plain > lim.line {
        // Dropped as read so far, and the rest up to its end.
        skip(buf_len, BAD_LINE)
    } else {
        Parsed::Incomplete
    }
}

/// A malformed line: `used` octets, then the rest of the line, dropped.
fn skip<T>(used: usize, text: &'static str) -> Parsed<T> {
    Parsed::Bad {
        used,
        discard: 0,
        to_eol: true,
        text,
    }
}

impl<T> Parsed<T> {
    /// What was parsed, or (not Done) the same answer for another type.
    fn done<U>(self) -> Result<(usize, T), Parsed<U>> {
        match self {
            Parsed::Done { used, value } => Ok((used, value)),
            Parsed::Incomplete => Err(Parsed::Incomplete),
            Parsed::Bad {
                used,
                discard,
                to_eol,
                text,
            } => Err(Parsed::Bad {
                used,
                discard,
                to_eol,
                text,
            }),
        }
    }
}

fn bad<T>(used: usize, text: &'static str) -> Parsed<T> {
    Parsed::Bad {
        used,
        discard: 0,
        to_eol: false,
        text,
    }
}

/// The command at the start of `buf`.
pub fn parse_command(buf: &[u8], lim: Limits) -> Parsed<Command> {
    let (used, toks) = match tokens(buf, lim).done() {
        Ok(t) => t,
        Err(p) => return p,
    };
    let mut it = toks.into_iter();
    let Some(Token::Atom(verb)) = it.next() else {
        return bad(used, BAD_LINE);
    };
    let args: Vec<Token> = it.collect();
    let verb = verb.to_ascii_uppercase();
    let s = |i: usize| match args.get(i) {
        Some(Token::Str(s)) => Some(s.clone()),
        _ => None,
    };
    let n = args.len();
    let cmd = match verb.as_str() {
        "AUTHENTICATE" => {
            let Some(mech) = s(0) else {
                return bad(used, "Did not specify mechanism name");
            };
            if n > 2 {
                return bad(used, "Expected EOL");
            }
            if n == 2 && s(1).is_none() {
                return bad(used, "Expected string");
            }
            Command::Authenticate {
                mech: String::from_utf8_lossy(&mech).to_ascii_uppercase(),
                initial: s(1),
            }
        }
        "STARTTLS" | "CAPABILITY" | "LISTSCRIPTS" | "UNAUTHENTICATE" | "LOGOUT" => {
            if n > 0 {
                return bad(
                    used,
                    if verb == "LOGOUT" {
                        "Garbage after logout command"
                    } else {
                        "Expected EOL"
                    },
                );
            }
            match verb.as_str() {
                "STARTTLS" => Command::StartTls,
                "CAPABILITY" => Command::Capability,
                "LISTSCRIPTS" => Command::ListScripts,
                "UNAUTHENTICATE" => Command::Unauthenticate,
                _ => Command::Logout,
            }
        }
        "HAVESPACE" => {
            let Some(name) = s(0) else {
                return bad(used, "Did not specify script name");
            };
            let size = match args.get(1) {
                Some(Token::Atom(a)) if a.bytes().all(|b| b.is_ascii_digit()) => a.parse().unwrap_or(u64::MAX),
                Some(_) => return bad(used, "Expected a number"),
                None => return bad(used, "Expected SPACE after SCRIPTNAME"),
            };
            if n > 2 {
                return bad(used, "Expected EOL");
            }
            Command::HaveSpace { name, size }
        }
        "PUTSCRIPT" => {
            let Some(name) = s(0) else {
                return bad(used, "Did not specify script name");
            };
            let Some(script) = s(1) else {
                return bad(used, BAD_LITERAL);
            };
            if n > 2 {
                return bad(used, "Expected EOL");
            }
            Command::PutScript { name, script }
        }
        "SETACTIVE" | "GETSCRIPT" | "DELETESCRIPT" => {
            let Some(name) = s(0) else {
                return bad(
                    used,
                    match (n, verb.as_str()) {
                        (0, "SETACTIVE") => "SPACE must occur after SETACTIVE",
                        (0, "GETSCRIPT") => "SPACE must occur after GETSCRIPT",
                        (0, _) => "SPACE must occur after DELETESCRIPT",
                        _ => "Did not specify script name",
                    },
                );
            };
            if n > 1 {
                return bad(used, "Expected EOL");
            }
            match verb.as_str() {
                "SETACTIVE" => Command::SetActive { name },
                "GETSCRIPT" => Command::GetScript { name },
                _ => Command::DeleteScript { name },
            }
        }
        "RENAMESCRIPT" => {
            let (Some(old), Some(new)) = (s(0), s(1)) else {
                return bad(used, "Did not specify script name");
            };
            if n > 2 {
                return bad(used, "Expected EOL");
            }
            Command::RenameScript { old, new }
        }
        "CHECKSCRIPT" => {
            let Some(script) = s(0) else {
                return bad(used, "Expected script content as second parameter");
            };
            if n > 1 {
                return bad(used, "Expected EOL");
            }
            Command::CheckScript { script }
        }
        "NOOP" => {
            if n > 1 {
                return bad(used, "Expected EOL");
            }
            if n == 1 && s(0).is_none() {
                return bad(used, "Expected string");
            }
            Command::Noop { tag: s(0) }
        }
        _ => return bad(used, BAD_LINE),
    };
    Parsed::Done { used, value: cmd }
}

/// A SASL response line: one string (RFC 5804 2.1), its octets as sent
/// (base64 text, or `*` to cancel).
pub fn parse_sasl_response(buf: &[u8], lim: Limits) -> Parsed<Vec<u8>> {
    match tokens(buf, lim).done() {
        Ok((used, toks)) => match &toks[..] {
            [Token::Str(s)] => Parsed::Done { used, value: s.clone() },
            _ => bad(used, "Expected string"),
        },
        Err(p) => p,
    }
}

/// A string as a reply carries it: quoted when it can be, else a
/// literal (`{n}` CRLF octets).
pub fn string(s: &[u8]) -> Vec<u8> {
    if s.len() <= 1024 && !s.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
        let mut out = Vec::with_capacity(s.len() + 2);
        out.push(b'"');
        for &b in s {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
        out
    } else {
        literal(s)
    }
}

/// `{n}` CRLF and the octets.
pub fn literal(s: &[u8]) -> Vec<u8> {
    let mut out = format!("{{{}}}\r\n", s.len()).into_bytes();
    out.extend_from_slice(s);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIM: Limits = Limits { line: 100, literal: 50 };

    fn cmd(s: &[u8]) -> Parsed<Command> {
        parse_command(s, LIM)
    }

    fn done(s: &[u8]) -> Command {
        match cmd(s) {
            Parsed::Done { used, value } => {
                assert_eq!(used, s.len(), "{:?}", String::from_utf8_lossy(s));
                value
            }
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(s)),
        }
    }

    fn text(s: &[u8]) -> &'static str {
        match cmd(s) {
            Parsed::Bad { text, .. } => text,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(s)),
        }
    }

    #[test]
    fn commands_with_strings_and_literals() {
        assert_eq!(done(b"listscripts\r\n"), Command::ListScripts);
        assert_eq!(done(b"Capability\n"), Command::Capability);
        assert_eq!(
            done(b"PUTSCRIPT \"a \\\"b\\\\\" {5+}\r\nkeep;\r\n"),
            Command::PutScript {
                name: b"a \"b\\".to_vec(),
                script: b"keep;".to_vec()
            }
        );
        assert_eq!(
            done(b"HAVESPACE {1+}\r\nx 99999999999999999999999\r\n"),
            Command::HaveSpace {
                name: b"x".to_vec(),
                size: u64::MAX
            }
        );
        assert_eq!(
            done(b"AUTHENTICATE \"plain\" \"AGEAYg==\"\r\n"),
            Command::Authenticate {
                mech: "PLAIN".into(),
                initial: Some(b"AGEAYg==".to_vec())
            }
        );
        assert_eq!(
            done(b"NOOP {3+}\r\nabc\r\n"),
            Command::Noop {
                tag: Some(b"abc".to_vec())
            }
        );
        assert_eq!(
            done(b"RENAMESCRIPT \"\xc3\xa9\" \"b\"\r\n"),
            Command::RenameScript {
                old: "é".as_bytes().to_vec(),
                new: b"b".to_vec()
            }
        );
    }

    #[test]
    fn waits_for_the_whole_line_and_literal() {
        for part in [
            &b"PUTSCRIPT \"a\" {5+}\r\nke"[..],
            b"PUTSCRIPT \"a",
            b"NOOP",
            b"PUTSCRIPT {",
            b"LOGOUT\r",
        ] {
            assert_eq!(cmd(part), Parsed::Incomplete, "{:?}", String::from_utf8_lossy(part));
        }
    }

    #[test]
    fn malformed_lines_get_cyrus_texts() {
        assert_eq!(text(b"\"LISTSCRIPTS\"\r\n"), BAD_LINE);
        assert_eq!(text(b"FOO\r\n"), BAD_LINE);
        assert_eq!(text(b"AUTHENTICATE PLAIN\r\n"), "Did not specify mechanism name");
        assert_eq!(text(b"LOGOUT junk\r\n"), "Garbage after logout command");
        assert_eq!(text(b"CAPABILITY \"x\"\r\n"), "Expected EOL");
        assert_eq!(text(b"HAVESPACE \"s1\"\r\n"), "Expected SPACE after SCRIPTNAME");
        assert_eq!(text(b"HAVESPACE s1 10\r\n"), "Did not specify script name");
        assert_eq!(text(b"GETSCRIPT\r\n"), "SPACE must occur after GETSCRIPT");
        assert_eq!(text(b"NOOP a\r\n"), "Expected string");
        assert_eq!(text(b"PUTSCRIPT \"s1\" {5}\r\n"), BAD_LITERAL);
        assert_eq!(text(b"LISTSCRIPTS  \r\n"), BAD_LINE);
    }

    #[test]
    fn bounds_hold() {
        // A literal over its bound is thrown away, not read.
        assert_eq!(
            cmd(b"PUTSCRIPT \"a\" {99999999+}\r\nxx"),
            Parsed::Bad {
                used: 27,
                discard: 99_999_999,
                to_eol: true,
                text: BAD_LITERAL
            }
        );
        // A line over its bound is dropped before its end comes.
        let long = vec![b'A'; 200];
        assert!(matches!(
            cmd(&long),
            Parsed::Bad {
                used: 200,
                to_eol: true,
                ..
            }
        ));
        let mut quoted = b"NOOP \"".to_vec();
        quoted.extend(vec![b'a'; 200]);
        assert!(matches!(cmd(&quoted), Parsed::Bad { to_eol: true, .. }));
    }

    #[test]
    fn sasl_responses_and_reply_strings() {
        assert_eq!(
            parse_sasl_response(b"\"dTc=\"\r\n", LIM),
            Parsed::Done {
                used: 8,
                value: b"dTc=".to_vec()
            }
        );
        assert_eq!(
            parse_sasl_response(b"{4+}\r\ndTc=\r\n", LIM),
            Parsed::Done {
                used: 12,
                value: b"dTc=".to_vec()
            }
        );
        assert_eq!(string(b"a\"b"), b"\"a\\\"b\"".to_vec());
        assert_eq!(string(b"a\r\nb"), b"{4}\r\na\r\nb".to_vec());
    }
}
