//! MUPDATE (RFC 3656) as Cyrus's `mupdate` and its clients speak it:
//! commands with string-only arguments (quoted or literal; atoms are
//! accepted too), data responses with LITERAL+ strings, quoted reply
//! texts.  Sans-I/O: the server side parses one whole command (its
//! literals already read, as `imapd`'s reader delivers it); the client
//! side parses responses off a growing buffer.

/// Longest string (a literal) either side accepts: an ACL of many
/// identifiers fits easily.
pub const MAX_STRING: usize = 1 << 20;
/// Most servers a PARTIAL-UPDATE may name (Cyrus: 30).
pub const MAX_UPDATE_SERVERS: usize = 30;

/// A lexical item: a word or a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    Atom(Vec<u8>),
    Str(Vec<u8>),
}

impl Tok {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Tok::Atom(b) | Tok::Str(b) => b,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LexError {
    /// A quoted string with CR, LF or NUL inside, or a bad escape.
    BadQuoted,
    /// A literal over `MAX_STRING` or with NUL inside, or a bad `{n}`.
    BadLiteral,
    /// A CR not followed by LF.
    BadLine,
    /// A byte that starts no item (a TAB between items).
    BadChar,
}

/// Where a word ends (Cyrus's `getword`).
fn word_end(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n' | b'(' | b')' | b'"')
}

/// One item at `buf[pos..]`: `Ok(None)` when more input is needed.
/// Literals may be synchronising or not (`{n}` / `{n+}`); the caller
/// that reads from the network has already sent any continuation.
pub fn lex_item(buf: &[u8], pos: usize) -> Result<Option<(Tok, usize)>, LexError> {
    let Some(&first) = buf.get(pos) else {
        return Ok(None);
    };
    match first {
        b'"' => {
            let mut out = Vec::new();
            let mut i = pos + 1;
            loop {
                let Some(&c) = buf.get(i) else {
                    return Ok(None);
                };
                match c {
                    b'"' => return Ok(Some((Tok::Str(out), i + 1))),
                    b'\\' => {
                        let Some(&n) = buf.get(i + 1) else {
                            return Ok(None);
                        };
                        if matches!(n, b'\r' | b'\n' | 0) {
                            return Err(LexError::BadQuoted);
                        }
                        out.push(n);
                        i += 2;
                    }
                    b'\r' | b'\n' | 0 => return Err(LexError::BadQuoted),
                    _ => {
                        out.push(c);
                        i += 1;
                    }
                }
                if out.len() > MAX_STRING {
                    return Err(LexError::BadQuoted);
                }
            }
        }
        b'{' => {
            let Some(close) = buf[pos..].iter().position(|&c| c == b'}') else {
                if buf.len() - pos > 24 {
                    return Err(LexError::BadLiteral);
                }
                return Ok(None);
            };
            let inner = &buf[pos + 1..pos + close];
            let digits = inner.strip_suffix(b"+").unwrap_or(inner);
            if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
                return Err(LexError::BadLiteral);
            }
            let n: usize = std::str::from_utf8(digits)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(LexError::BadLiteral)?;
            if n > MAX_STRING {
                return Err(LexError::BadLiteral);
            }
            let mut i = pos + close + 1;
            match buf.get(i) {
                None => return Ok(None),
                Some(b'\r') => {
                    match buf.get(i + 1) {
                        None => return Ok(None),
                        Some(b'\n') => i += 2,
                        Some(_) => return Err(LexError::BadLiteral),
                    };
                }
                Some(b'\n') => i += 1,
                Some(_) => return Err(LexError::BadLiteral),
            }
            if buf.len() < i + n {
                return Ok(None);
            }
            let data = &buf[i..i + n];
            if data.contains(&0) {
                return Err(LexError::BadLiteral);
            }
            Ok(Some((Tok::Str(data.to_vec()), i + n)))
        }
        _ => {
            let end = buf[pos..].iter().position(|&c| word_end(c)).map(|n| pos + n);
            match end {
                Some(e) if e == pos || buf[pos..e].iter().any(|&c| c < 0x20 || c == 0x7f) => Err(LexError::BadChar),
                Some(e) => Ok(Some((Tok::Atom(buf[pos..e].to_vec()), e))),
                None => Ok(None),
            }
        }
    }
}

/// The end of a line at `pos` (CRLF or LF): the position after it.
fn eol(buf: &[u8], pos: usize) -> Option<usize> {
    match (buf.get(pos), buf.get(pos + 1)) {
        (Some(b'\n'), _) => Some(pos + 1),
        (Some(b'\r'), Some(b'\n')) => Some(pos + 2),
        _ => None,
    }
}

/// One whole line of items (literals inline) at the start of `buf`:
/// the items and the bytes used, or `Ok(None)` when incomplete.
pub fn lex_line(buf: &[u8]) -> Result<Option<(Vec<Tok>, usize)>, LexError> {
    let mut toks = Vec::new();
    let mut pos = 0;
    loop {
        while buf.get(pos) == Some(&b' ') {
            pos += 1;
        }
        match buf.get(pos) {
            None => return Ok(None),
            Some(b'\r') | Some(b'\n') => {
                if buf[pos] == b'\r' && buf.get(pos + 1).is_some_and(|&c| c != b'\n') {
                    return Err(LexError::BadLine);
                }
                // A lone CR at the end waits for its LF.
                return Ok(eol(buf, pos).map(|end| (toks, end)));
            }
            Some(b'(') | Some(b')') => {
                toks.push(Tok::Atom(vec![buf[pos]]));
                pos += 1;
            }
            _ => match lex_item(buf, pos)? {
                None => return Ok(None),
                Some((t, p)) => {
                    toks.push(t);
                    pos = p;
                }
            },
        }
    }
}

// ---------------------------------------------------------------------
// Server side: commands.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Authenticate { mech: String, initial: Option<Vec<u8>> },
    Activate { name: String, location: String, acl: String },
    Reserve { name: String, location: String },
    Deactivate { name: String, location: String },
    Delete { name: String },
    Find { name: String },
    List { prefix: Option<String> },
    Update { servers: Vec<String> },
    Noop,
    Logout,
    Starttls,
    Compress { alg: String },
}

/// A command line that is not a command: the reply Cyrus gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmdError {
    /// No space after the tag: untagged `* BAD "Need command"`.
    NeedCommand,
    NullCommand,
    Unrecognized,
    MissingArgs,
    ExtraArgs,
    BadArgs,
}

impl CmdError {
    /// The tagged reply text (quoted, as Cyrus clients parse it).
    pub fn text(&self) -> &'static str {
        match self {
            CmdError::NeedCommand => "BAD \"Need command\"",
            CmdError::NullCommand => "BAD \"Null command\"",
            CmdError::Unrecognized => "BAD \"Unrecognized command\"",
            CmdError::MissingArgs => "BAD \"Missing arguments\"",
            CmdError::ExtraArgs => "BAD \"Extra arguments\"",
            CmdError::BadArgs => "BAD \"Badly formed arguments\"",
        }
    }
}

/// A parsed command line: the tag, the command word as Cyrus folds it
/// (`Activate`), and the command or why it is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub tag: String,
    pub word: String,
    pub cmd: Result<Kind, CmdError>,
}

/// Whether a command word needs an authenticated session (Cyrus decides
/// by the first letter before it even parses the arguments: every
/// command but AUTHENTICATE, LOGOUT, STARTTLS, COMPRESS).
pub fn needs_login(word: &str) -> bool {
    match word.as_bytes().first() {
        Some(b'A') => word != "Authenticate",
        Some(b'L') => word != "Logout",
        Some(b'D' | b'F' | b'N' | b'R' | b'U') => true,
        _ => false,
    }
}

/// Parses one command: `cmd` is the whole command with its literals
/// inline, with or without the final CRLF.  `Err(NeedCommand)` has no
/// tag to answer with.
pub fn parse_command(cmd: &[u8]) -> Parsed {
    let tag_end = cmd.iter().position(|&c| word_end(c)).unwrap_or(cmd.len());
    let tag = String::from_utf8_lossy(&cmd[..tag_end]).into_owned();
    let bad = |tag: String, word: String, e| Parsed { tag, word, cmd: Err(e) };
    if cmd.get(tag_end) != Some(&b' ') {
        return bad(tag, String::new(), CmdError::NeedCommand);
    }
    let rest = &cmd[tag_end + 1..];
    let word_len = rest.iter().position(|&c| word_end(c)).unwrap_or(rest.len());
    let raw = String::from_utf8_lossy(&rest[..word_len]).into_owned();
    if raw.is_empty() {
        return bad(tag, raw, CmdError::NullCommand);
    }
    let mut word = String::with_capacity(raw.len());
    for (i, c) in raw.chars().enumerate() {
        word.push(if i == 0 { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() });
    }
    // The arguments: `SP string` each, then the end of the line.
    let mut args: Vec<Vec<u8>> = Vec::new();
    let mut pos = word_len;
    let mut lex_failed = false;
    let mut owned;
    let line: &[u8] = if rest.ends_with(b"\n") {
        rest
    } else {
        owned = rest.to_vec();
        owned.extend_from_slice(b"\r\n");
        &owned
    };
    loop {
        if eol(line, pos).is_some() {
            break;
        }
        if line.get(pos) != Some(&b' ') {
            lex_failed = true;
            break;
        }
        pos += 1;
        match lex_item(line, pos) {
            Ok(Some((t, p))) => {
                args.push(t.bytes().to_vec());
                pos = p;
            }
            _ => {
                lex_failed = true;
                break;
            }
        }
        if args.len() > MAX_UPDATE_SERVERS + 2 {
            break;
        }
    }
    let cmd = build(&word, args, lex_failed);
    Parsed { tag, word, cmd }
}

fn text(b: Vec<u8>) -> Result<String, CmdError> {
    String::from_utf8(b).map_err(|_| CmdError::BadArgs)
}

fn build(word: &str, args: Vec<Vec<u8>>, lex_failed: bool) -> Result<Kind, CmdError> {
    // (fewest, most) arguments.
    let (min, max) = match word {
        "Authenticate" => (1, 2),
        "Activate" => (3, 3),
        "Reserve" | "Deactivate" => (2, 2),
        "Delete" | "Find" | "Compress" => (1, 1),
        "List" => (0, 1),
        "Update" => (0, MAX_UPDATE_SERVERS),
        "Noop" | "Logout" | "Starttls" => (0, 0),
        _ => return Err(CmdError::Unrecognized),
    };
    if args.len() > max {
        return Err(CmdError::ExtraArgs);
    }
    if args.len() < min {
        return Err(CmdError::MissingArgs);
    }
    if lex_failed {
        // A string that does not parse where one may stand.
        return Err(if args.len() < max {
            CmdError::MissingArgs
        } else {
            CmdError::ExtraArgs
        });
    }
    let n_args = args.len();
    let mut it = args.into_iter();
    let mut next = || text(it.next().unwrap_or_default());
    Ok(match word {
        "Authenticate" => {
            let mech = next()?.to_ascii_uppercase();
            let initial = if n_args == 2 { Some(next()?.into_bytes()) } else { None };
            Kind::Authenticate { mech, initial }
        }
        "Activate" => Kind::Activate {
            name: next()?,
            location: next()?,
            acl: next()?,
        },
        "Reserve" => Kind::Reserve {
            name: next()?,
            location: next()?,
        },
        "Deactivate" => Kind::Deactivate {
            name: next()?,
            location: next()?,
        },
        "Delete" => Kind::Delete { name: next()? },
        "Find" => Kind::Find { name: next()? },
        "Compress" => Kind::Compress { alg: next()? },
        "List" => {
            let p = next()?;
            Kind::List {
                prefix: if p.is_empty() { None } else { Some(p) },
            }
        }
        "Update" => {
            let mut servers = Vec::new();
            for a in it {
                let s = text(a)?;
                if s.is_empty() {
                    return Err(CmdError::BadArgs);
                }
                servers.push(s);
            }
            Kind::Update { servers }
        }
        "Noop" => Kind::Noop,
        "Logout" => Kind::Logout,
        _ => Kind::Starttls,
    })
}

// ---------------------------------------------------------------------
// Rendering.

/// A string as Cyrus sends data: a LITERAL+ (`{n+}` CRLF bytes).
fn push_literal(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(format!("{{{}+}}\r\n", s.len()).as_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// `<tag> MAILBOX name location acl`.
pub fn render_mailbox(out: &mut Vec<u8>, tag: &str, name: &str, location: &str, acl: &str) {
    out.extend_from_slice(tag.as_bytes());
    out.extend_from_slice(b" MAILBOX ");
    push_literal(out, name);
    out.push(b' ');
    push_literal(out, location);
    out.push(b' ');
    push_literal(out, acl);
    out.extend_from_slice(b"\r\n");
}

/// `<tag> RESERVE name location`.
pub fn render_reserve(out: &mut Vec<u8>, tag: &str, name: &str, location: &str) {
    out.extend_from_slice(tag.as_bytes());
    out.extend_from_slice(b" RESERVE ");
    push_literal(out, name);
    out.push(b' ');
    push_literal(out, location);
    out.extend_from_slice(b"\r\n");
}

/// `<tag> DELETE name`.
pub fn render_delete(out: &mut Vec<u8>, tag: &str, name: &str) {
    out.extend_from_slice(tag.as_bytes());
    out.extend_from_slice(b" DELETE ");
    push_literal(out, name);
    out.extend_from_slice(b"\r\n");
}

/// A command argument: quoted when that is safe, else a LITERAL+.
pub fn render_arg(out: &mut Vec<u8>, s: &str) {
    if s.len() < 1024 && s.bytes().all(|c| (0x20..0x7f).contains(&c) && c != b'"' && c != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        push_literal(out, s);
    }
}

/// A client command with string arguments.
pub fn render_command(tag: &str, word: &str, args: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(tag.as_bytes());
    out.push(b' ');
    out.extend_from_slice(word.as_bytes());
    for a in args {
        out.push(b' ');
        render_arg(&mut out, a);
    }
    out.extend_from_slice(b"\r\n");
    out
}

// ---------------------------------------------------------------------
// Client side: responses.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `* ...` (banner lines, `* BYE`, `* BAD`): the items after `*`.
    Untagged(Vec<Tok>),
    Ok {
        tag: String,
        text: String,
    },
    No {
        tag: String,
        text: String,
    },
    Bad {
        tag: String,
        text: String,
    },
    Bye {
        tag: String,
        text: String,
    },
    Mailbox {
        tag: String,
        name: String,
        location: String,
        acl: String,
    },
    Reserve {
        tag: String,
        name: String,
        location: String,
    },
    Delete {
        tag: String,
        name: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RespError {
    Lex(LexError),
    /// A line that is no MUPDATE response.
    Malformed(String),
}

impl std::fmt::Display for RespError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RespError::Lex(e) => write!(f, "bad string in response: {e:?}"),
            RespError::Malformed(l) => write!(f, "malformed response: {l}"),
        }
    }
}

/// One response at the start of `buf`: the response and the bytes it
/// used, or `Ok(None)` when more input is needed.
pub fn parse_response(buf: &[u8]) -> Result<Option<(Response, usize)>, RespError> {
    let Some((toks, used)) = lex_line(buf).map_err(RespError::Lex)? else {
        return Ok(None);
    };
    let line = || String::from_utf8_lossy(&buf[..used.min(200)]).trim_end().to_string();
    let s = |t: &Tok| String::from_utf8_lossy(t.bytes()).into_owned();
    let mut it = toks.into_iter();
    let Some(first) = it.next() else {
        return Err(RespError::Malformed(line()));
    };
    if first == Tok::Atom(b"*".to_vec()) {
        return Ok(Some((Response::Untagged(it.collect()), used)));
    }
    let tag = s(&first);
    let Some(Tok::Atom(kw)) = it.next() else {
        return Err(RespError::Malformed(line()));
    };
    let rest: Vec<Tok> = it.collect();
    // Reply texts: one string, or (Cyrus's unquoted replies) the words.
    let joined = || {
        if rest.len() == 1 {
            if let Tok::Str(_) = rest[0] {
                return s(&rest[0]);
            }
        }
        rest.iter().map(s).collect::<Vec<_>>().join(" ")
    };
    let strs = |n: usize| -> Result<Vec<String>, RespError> {
        if rest.len() != n {
            return Err(RespError::Malformed(line()));
        }
        Ok(rest.iter().map(s).collect())
    };
    let r = match kw.to_ascii_uppercase().as_slice() {
        b"OK" => Response::Ok { tag, text: joined() },
        b"NO" => Response::No { tag, text: joined() },
        b"BAD" => Response::Bad { tag, text: joined() },
        b"BYE" => Response::Bye { tag, text: joined() },
        b"MAILBOX" => {
            let mut v = strs(3)?.into_iter();
            Response::Mailbox {
                tag,
                name: v.next().unwrap_or_default(),
                location: v.next().unwrap_or_default(),
                acl: v.next().unwrap_or_default(),
            }
        }
        b"RESERVE" => {
            let mut v = strs(2)?.into_iter();
            Response::Reserve {
                tag,
                name: v.next().unwrap_or_default(),
                location: v.next().unwrap_or_default(),
            }
        }
        b"DELETE" => {
            let mut v = strs(1)?.into_iter();
            Response::Delete {
                tag,
                name: v.next().unwrap_or_default(),
            }
        }
        _ => return Err(RespError::Malformed(line())),
    };
    Ok(Some((r, used)))
}

/// What a server's banner says: its SASL mechanisms, STARTTLS,
/// COMPRESS, and the `* OK MUPDATE` line's strings (name,
/// implementation, version, `(master)` or the master's URL).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Banner {
    pub mechs: Vec<String>,
    pub starttls: bool,
    pub compress: bool,
    pub partial_update: bool,
    pub ok: Vec<String>,
}

impl Banner {
    /// Takes one untagged banner line; true when it was the final
    /// `* OK`.
    pub fn take(&mut self, toks: &[Tok]) -> bool {
        let s = |t: &Tok| String::from_utf8_lossy(t.bytes()).into_owned();
        let Some(first) = toks.first() else {
            return false;
        };
        match first.bytes().to_ascii_uppercase().as_slice() {
            b"AUTH" => self.mechs = toks[1..].iter().map(s).map(|m| m.to_ascii_uppercase()).collect(),
            b"STARTTLS" => self.starttls = true,
            b"COMPRESS" => self.compress = true,
            b"PARTIAL-UPDATE" => self.partial_update = true,
            b"OK" => {
                self.ok = toks[1..].iter().map(s).collect();
                return true;
            }
            _ => {}
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Parsed {
        parse_command(s.as_bytes())
    }

    #[test]
    fn commands_parse_as_cyrus_reads_them() {
        let c = p("A01 AUTHENTICATE \"PLAIN\" {8+}\r\nAGEAYgBj\r\n");
        assert_eq!(c.tag, "A01");
        assert_eq!(c.word, "Authenticate");
        assert_eq!(
            c.cmd,
            Ok(Kind::Authenticate {
                mech: "PLAIN".into(),
                initial: Some(b"AGEAYgBj".to_vec())
            })
        );
        assert_eq!(
            p("X1 ACTIVATE {10+}\r\nuser.alice {16+}\r\nbackend1!default {21+}\r\nalice\tlrswipkxtecdan\t").cmd,
            Ok(Kind::Activate {
                name: "user.alice".into(),
                location: "backend1!default".into(),
                acl: "alice\tlrswipkxtecdan\t".into()
            })
        );
        assert_eq!(p("a list").cmd, Ok(Kind::List { prefix: None }));
        assert_eq!(
            p("a LIST \"b1!\"").cmd,
            Ok(Kind::List {
                prefix: Some("b1!".into())
            })
        );
        assert_eq!(
            p("U01 UPDATE \"b1\" \"b2\"").cmd,
            Ok(Kind::Update {
                servers: vec!["b1".into(), "b2".into()]
            })
        );
        assert_eq!(p("U01 UPDATE \"\"").cmd, Err(CmdError::BadArgs));
        let many = format!("U {}{}", "UPDATE", " \"s\"".repeat(31));
        assert_eq!(p(&many).cmd, Err(CmdError::ExtraArgs));
        assert_eq!(p("a FIND").cmd, Err(CmdError::MissingArgs));
        assert_eq!(p("a FIND \"x\" \"y\"").cmd, Err(CmdError::ExtraArgs));
        assert_eq!(p("a NOOP x").cmd, Err(CmdError::ExtraArgs));
        assert_eq!(p("a FIND \"unterminated").cmd, Err(CmdError::MissingArgs));
        assert_eq!(p("a RESERVE \"bad").cmd, Err(CmdError::MissingArgs));
        assert_eq!(p("a").cmd, Err(CmdError::NeedCommand));
        assert_eq!(p("a ").cmd, Err(CmdError::NullCommand));
        assert_eq!(p("a FROB").cmd, Err(CmdError::Unrecognized));
        assert_eq!(p("a noop\n").cmd, Ok(Kind::Noop));
    }

    #[test]
    fn login_is_needed_by_first_letter() {
        assert!(!needs_login("Authenticate"));
        assert!(needs_login("Activate"));
        assert!(needs_login("Axyz"));
        assert!(!needs_login("Logout"));
        assert!(needs_login("List"));
        assert!(!needs_login("Starttls"));
        assert!(!needs_login("Compress"));
        assert!(!needs_login("Xyz"));
    }

    #[test]
    fn responses_round_trip() {
        let mut out = Vec::new();
        render_mailbox(&mut out, "U01", "user.a", "b1!default", "a\tlrs\t");
        render_reserve(&mut out, "U01", "user.b", "b2!default");
        render_delete(&mut out, "U01", "user.c");
        out.extend_from_slice(b"U01 OK \"streaming starts\"\r\n");
        let mut pos = 0;
        let mut got = Vec::new();
        while let Some((r, n)) = parse_response(&out[pos..]).unwrap() {
            got.push(r);
            pos += n;
        }
        assert_eq!(pos, out.len());
        assert_eq!(
            got[0],
            Response::Mailbox {
                tag: "U01".into(),
                name: "user.a".into(),
                location: "b1!default".into(),
                acl: "a\tlrs\t".into()
            }
        );
        assert_eq!(
            got[3],
            Response::Ok {
                tag: "U01".into(),
                text: "streaming starts".into()
            }
        );
        // Incomplete input waits.
        assert_eq!(parse_response(&out[..20]).unwrap(), None);
        // Unquoted texts (Cyrus's STARTTLS reply).
        let (r, _) = parse_response(b"S OK Begin TLS negotiation now\r\n").unwrap().unwrap();
        assert_eq!(
            r,
            Response::Ok {
                tag: "S".into(),
                text: "Begin TLS negotiation now".into()
            }
        );
    }

    #[test]
    fn banner_is_read_as_cyrus_sends_it() {
        let text = b"* AUTH \"PLAIN\" \"LOGIN\"\r\n* COMPRESS \"DEFLATE\"\r\n* PARTIAL-UPDATE\r\n* OK MUPDATE \"m\" \"Cyrus IMAP\" \"3.6.1\" \"(master)\"\r\n";
        let mut b = Banner::default();
        let mut pos = 0;
        loop {
            let (r, n) = parse_response(&text[pos..]).unwrap().unwrap();
            pos += n;
            let Response::Untagged(t) = r else { panic!() };
            if b.take(&t) {
                break;
            }
        }
        assert_eq!(b.mechs, vec!["PLAIN", "LOGIN"]);
        assert!(b.compress && b.partial_update && !b.starttls);
        assert_eq!(b.ok, vec!["MUPDATE", "m", "Cyrus IMAP", "3.6.1", "(master)"]);
    }

    #[test]
    fn bad_strings_are_errors_not_panics() {
        assert!(parse_response(b"A MAILBOX {99999999999}\r\n").is_err());
        assert!(parse_response(b"A MAILBOX \"a\rb\"\r\n").is_err());
        assert!(parse_response(b"A MAILBOX {1+}\r\n\0 {1+}\r\na {1+}\r\nb\r\n").is_err());
        assert!(parse_response(b"A FROB\r\n").is_err());
        assert!(parse_response(b"\r\n").is_err());
        assert!(parse_response(b"A OK \t\r\n").is_err());
        assert!(parse_command(b"A FIND \t").cmd.is_err());
    }
}
