//! Sieve's lexical grammar (RFC 5228 2): identifiers, tags, numbers
//! with their K/M/G, quoted strings and `text:` blocks, comments; and the
//! encoded characters of RFC 5228 2.4.2.4.

use super::parse::{err, ParseError};

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Ident(String),
    Tag(String),
    Num(u64),
    Str(String),
    Punct(u8),
}

pub(super) fn lex(src: &[u8]) -> Result<Vec<(Tok, usize)>, ParseError> {
    let mut out = Vec::new();
    let (mut i, mut line) = (0usize, 1usize);
    while i < src.len() {
        let c = src[i];
        match c {
            b'\n' => {
                line += 1;
                i += 1;
            }
            b' ' | b'\t' | b'\r' => i += 1,
            b'#' => {
                while i < src.len() && src[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if src.get(i + 1) == Some(&b'*') => {
                let start = line;
                i += 2;
                loop {
                    if i + 1 >= src.len() {
                        return err(start, "unterminated comment");
                    }
                    if src[i] == b'*' && src[i + 1] == b'/' {
                        i += 2;
                        break;
                    }
                    if src[i] == b'\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
            b'"' => {
                let start = line;
                let mut s = Vec::new();
                i += 1;
                loop {
                    let Some(&c) = src.get(i) else {
                        return err(start, "unterminated string");
                    };
                    i += 1;
                    match c {
                        b'"' => break,
                        // An escape keeps the next character, whatever it
                        // is (RFC 5228 2.4.2).
                        b'\\' => {
                            let Some(&n) = src.get(i) else {
                                return err(start, "unterminated string");
                            };
                            if n == b'\n' {
                                line += 1;
                            }
                            s.push(n);
                            i += 1;
                        }
                        b'\n' => {
                            line += 1;
                            s.push(c);
                        }
                        _ => s.push(c),
                    }
                }
                out.push((Tok::Str(utf8(s, start)?), start));
            }
            b'0'..=b'9' => {
                let st = i;
                while i < src.len() && src[i].is_ascii_digit() {
                    i += 1;
                }
                let mut n: u64 = std::str::from_utf8(&src[st..i])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or(ParseError {
                        line,
                        msg: "number too large".into(),
                    })?;
                let mul = match src.get(i).map(u8::to_ascii_uppercase) {
                    Some(b'K') => 1 << 10,
                    Some(b'M') => 1 << 20,
                    Some(b'G') => 1 << 30,
                    _ => 1,
                };
                if mul > 1 {
                    i += 1;
                }
                n = n.checked_mul(mul).ok_or(ParseError {
                    line,
                    msg: "number too large".into(),
                })?;
                out.push((Tok::Num(n), line));
            }
            b':' => {
                let st = i + 1;
                i = ident_end(src, st);
                if i == st {
                    return err(line, "a tag needs a name after ':'");
                }
                out.push((Tok::Tag(String::from_utf8_lossy(&src[st..i]).to_ascii_lowercase()), line));
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                let st = i;
                i = ident_end(src, st);
                let word = String::from_utf8_lossy(&src[st..i]).to_ascii_lowercase();
                if word == "text" && src.get(i) == Some(&b':') {
                    let start = line;
                    i += 1;
                    // Blanks, then a comment or the end of the line.
                    while i < src.len() && (src[i] == b' ' || src[i] == b'\t') {
                        i += 1;
                    }
                    if src.get(i) == Some(&b'#') {
                        while i < src.len() && src[i] != b'\n' {
                            i += 1;
                        }
                    }
                    if src.get(i) == Some(&b'\r') {
                        i += 1;
                    }
                    if src.get(i) != Some(&b'\n') {
                        return err(line, "text: must end its line");
                    }
                    i += 1;
                    line += 1;
                    let mut s = Vec::new();
                    loop {
                        if i >= src.len() {
                            return err(start, "unterminated text: (no line with a single '.')");
                        }
                        let end = src[i..].iter().position(|&c| c == b'\n').map_or(src.len(), |p| i + p);
                        let mut l = &src[i..end];
                        l = l.strip_suffix(b"\r").unwrap_or(l);
                        i = (end + 1).min(src.len());
                        line += 1;
                        if l == b"." {
                            break;
                        }
                        // Dot-stuffing: a line starting with '.' has one more.
                        let l = if l.starts_with(b"..") { &l[1..] } else { l };
                        s.extend_from_slice(l);
                        s.extend_from_slice(b"\r\n");
                    }
                    out.push((Tok::Str(utf8(s, start)?), start));
                } else {
                    out.push((Tok::Ident(word), line));
                }
            }
            b'[' | b']' | b'(' | b')' | b',' | b';' | b'{' | b'}' => {
                out.push((Tok::Punct(c), line));
                i += 1;
            }
            _ => return err(line, format!("unexpected character '{}'", c.escape_ascii())),
        }
    }
    Ok(out)
}

fn ident_end(src: &[u8], mut i: usize) -> usize {
    while i < src.len() && (src[i].is_ascii_alphanumeric() || src[i] == b'_') {
        i += 1;
    }
    i
}

fn utf8(s: Vec<u8>, line: usize) -> Result<String, ParseError> {
    String::from_utf8(s).or_else(|_| err(line, "string is not UTF-8"))
}

pub(super) fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("identifier {s}"),
        Tok::Tag(s) => format!("tag :{s}"),
        Tok::Num(n) => format!("number {n}"),
        Tok::Str(_) => "string".into(),
        Tok::Punct(c) => format!("'{}'", *c as char),
    }
}

/// RFC 5228 2.4.2.4: `${hex:...}` and `${unicode:...}` in a string
/// replaced by what they encode; one that is not well formed is left as
/// it is.  None: it encodes what is not a character (a surrogate, past
/// U+10FFFF, bytes that are not UTF-8).
pub(super) fn decode_encoded(s: &str) -> Option<String> {
    if !s.contains("${") {
        return Some(s.to_string());
    }
    let mut out: Vec<u8> = Vec::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.extend_from_slice(rest[..i].as_bytes());
        let after = &rest[i + 2..];
        let colon = after.find(':');
        let close = after.find('}');
        let decoded = match (colon, close) {
            (Some(c), Some(e)) if c < e => {
                let kind = after[..c].to_ascii_lowercase();
                let body = &after[c + 1..e];
                let words: Vec<&str> = body.split([' ', '\t', '\r', '\n']).filter(|w| !w.is_empty()).collect();
                let hex = |w: &&str| w.bytes().all(|b| b.is_ascii_hexdigit());
                let bytes = match kind.as_str() {
                    "hex" if !words.is_empty() && words.iter().all(|w| hex(w) && w.len() <= 2) => {
                        Some(words.iter().map(|w| u8::from_str_radix(w, 16).unwrap_or(0)).collect::<Vec<u8>>())
                    }
                    "unicode" if !words.is_empty() && words.iter().all(|w| hex(w) && w.len() <= 8) => {
                        let mut b = String::new();
                        for w in &words {
                            b.push(char::from_u32(u32::from_str_radix(w, 16).ok()?)?);
                        }
                        Some(b.into_bytes())
                    }
                    _ => None,
                };
                bytes.map(|d| (d, e))
            }
            _ => None,
        };
        match decoded {
            Some((d, e)) => {
                out.extend_from_slice(&d);
                rest = &after[e + 1..];
            }
            None => {
                out.extend_from_slice(b"${");
                rest = after;
            }
        }
    }
    out.extend_from_slice(rest.as_bytes());
    String::from_utf8(out).ok()
}
