//! Address-list header values (From, To, Cc, …) as cleanup(8) rewrites
//! them: the value is split into RFC 822 tokens, each address is handed
//! to the caller in its internal (unquoted) form, and when any address
//! changed the value is written back out the way Postfix's tok822 does
//! it: one space between words, a source route dropped, comments after a
//! bare address, quoted local parts where needed, and the list folded
//! with as many addresses per line as fit under 70 columns.
//!
//! Sans-I/O: bytes in, bytes out.  An unchanged value is left as it was
//! (folding, spacing and comments included), as Postfix leaves it.

/// One RFC 822 token; whitespace and folding are not tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Atom(String),
    /// A quoted string as written, quotes included.
    Quoted(String),
    /// A comment as written, parentheses included.
    Comment(String),
    /// A domain literal as written, brackets included.
    Literal(String),
    Special(char),
}

/// An output piece: a token, or an address slot.
#[derive(Debug, Clone)]
enum Piece {
    Tok(Tok),
    Addr(String),
}

const SPECIALS: &str = "()<>@,;:\\\".[]";

fn tokenize(v: &str) -> Vec<Tok> {
    let b: Vec<char> = v.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' {
            let start = i;
            i += 1;
            while i < b.len() && b[i] != '"' {
                i += if b[i] == '\\' { 2 } else { 1 };
            }
            i = (i + 1).min(b.len());
            let mut s: String = b[start..i].iter().collect();
            if !s.ends_with('"') || s.len() == 1 {
                s.push('"');
            }
            out.push(Tok::Quoted(s));
        } else if c == '(' {
            let start = i;
            let mut depth = 0usize;
            while i < b.len() {
                match b[i] {
                    '\\' => i += 1,
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            i += 1;
                            break;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            let i2 = i.min(b.len());
            let mut s: String = b[start..i2].iter().collect();
            for _ in 0..depth {
                s.push(')');
            }
            i = i2;
            out.push(Tok::Comment(s));
        } else if c == '[' {
            let start = i;
            while i < b.len() && b[i] != ']' {
                i += if b[i] == '\\' { 2 } else { 1 };
            }
            i = (i + 1).min(b.len());
            let mut s: String = b[start..i].iter().collect();
            if !s.ends_with(']') {
                s.push(']');
            }
            out.push(Tok::Literal(s));
        } else if SPECIALS.contains(c) {
            out.push(Tok::Special(c));
            i += 1;
        } else {
            let start = i;
            while i < b.len() && !b[i].is_whitespace() && !SPECIALS.contains(b[i]) {
                i += 1;
            }
            out.push(Tok::Atom(b[start..i].iter().collect()));
        }
    }
    out
}

/// The internal form of an address's tokens: quoted strings unquoted.
fn internal(toks: &[Tok]) -> String {
    let mut s = String::new();
    for t in toks {
        match t {
            Tok::Atom(a) | Tok::Literal(a) => s.push_str(a),
            Tok::Quoted(q) => {
                let inner = &q[1..q.len() - 1];
                let mut esc = false;
                for c in inner.chars() {
                    if esc || c != '\\' {
                        s.push(c);
                        esc = false;
                    } else {
                        esc = true;
                    }
                }
            }
            Tok::Comment(_) => {}
            Tok::Special(c) => s.push(*c),
        }
    }
    s
}

/// The external form: the local part quoted when it needs it.
pub fn external(addr: &str) -> String {
    let (local, domain) = match addr.rfind('@') {
        Some(i) => (&addr[..i], Some(&addr[i..])),
        None => (addr, None),
    };
    let needs = local.is_empty()
        || local.starts_with('.')
        || local.ends_with('.')
        || local.contains("..")
        || local
            .chars()
            .any(|c| c.is_ascii_control() || c == ' ' || (c != '.' && SPECIALS.contains(c)));
    let mut out = String::new();
    if needs && !local.is_empty() {
        out.push('"');
        for c in local.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    } else {
        out.push_str(local);
    }
    if let Some(d) = domain {
        out.push_str(d);
    }
    out
}

/// Splits the tokens into pieces with address slots.
fn parse(toks: Vec<Tok>) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut seg: Vec<Tok> = Vec::new();
    let mut depth = 0usize;
    let flush = |seg: &mut Vec<Tok>, out: &mut Vec<Piece>| {
        let toks = std::mem::take(seg);
        if toks.is_empty() {
            return;
        }
        if let Some(lt) = toks.iter().position(|t| *t == Tok::Special('<')) {
            let gt = toks.iter().rposition(|t| *t == Tok::Special('>')).filter(|g| *g > lt);
            let end = gt.unwrap_or(toks.len());
            out.extend(toks[..=lt].iter().cloned().map(Piece::Tok));
            out.push(Piece::Addr(internal(&toks[lt + 1..end])));
            out.push(Piece::Tok(Tok::Special('>')));
            if let Some(g) = gt {
                out.extend(toks[g + 1..].iter().cloned().map(Piece::Tok));
            }
        } else {
            let (comments, addr): (Vec<Tok>, Vec<Tok>) = toks.into_iter().partition(|t| matches!(t, Tok::Comment(_)));
            if !addr.is_empty() {
                out.push(Piece::Addr(internal(&addr)));
            }
            out.extend(comments.into_iter().map(Piece::Tok));
        }
    };
    for t in toks {
        match t {
            Tok::Special('<') => {
                depth += 1;
                seg.push(t);
            }
            Tok::Special('>') => {
                depth = depth.saturating_sub(1);
                seg.push(t);
            }
            Tok::Special(c @ (',' | ';')) if depth == 0 => {
                flush(&mut seg, &mut out);
                out.push(Piece::Tok(Tok::Special(c)));
            }
            Tok::Special(':') if depth == 0 => {
                // A group: the phrase before the colon stays as it is.
                out.extend(seg.drain(..).map(Piece::Tok));
                out.push(Piece::Tok(Tok::Special(':')));
            }
            t => seg.push(t),
        }
    }
    flush(&mut seg, &mut out);
    out
}

fn wordish(p: &Piece) -> bool {
    matches!(
        p,
        Piece::Addr(_) | Piece::Tok(Tok::Atom(_) | Tok::Quoted(_) | Tok::Comment(_) | Tok::Literal(_))
    )
}

/// The pieces written out; `\n` after each comma marks where a line may
/// break.
fn externalize(pieces: &[Piece]) -> String {
    let mut s = String::new();
    let mut prev: Option<&Piece> = None;
    for p in pieces {
        let space = match prev {
            None => false,
            Some(q) => {
                let after = wordish(q) || matches!(q, Piece::Tok(Tok::Special('>' | ':')));
                let before = wordish(p) || matches!(p, Piece::Tok(Tok::Special('<')));
                after && before
            }
        };
        if space {
            s.push(' ');
        }
        match p {
            Piece::Addr(a) => s.push_str(&external(a)),
            Piece::Tok(Tok::Atom(a) | Tok::Quoted(a) | Tok::Comment(a) | Tok::Literal(a)) => s.push_str(a),
            Piece::Tok(Tok::Special(',')) => {
                s.push_str(",\n");
                prev = None;
                continue;
            }
            Piece::Tok(Tok::Special(c)) => s.push(*c),
        }
        prev = Some(p);
    }
    s
}

/// cleanup's folding: as many pieces per line as keep it under 70
/// columns, continuation lines starting with a tab.
fn fold(head: &str, body: &str) -> String {
    let mut out = String::from(head);
    let mut line_len = head.len();
    for (i, piece) in body.split('\n').enumerate() {
        if i == 0 {
            out.push_str(piece);
            line_len += piece.len();
        } else if line_len + 1 + piece.len() < 70 {
            out.push(' ');
            out.push_str(piece);
            line_len += 1 + piece.len();
        } else {
            out.push_str("\r\n\t");
            out.push_str(piece);
            line_len = piece.len();
        }
    }
    out
}

/// Rewrites every address of one header field.  `name` is the field name
/// as written, `value` the raw value (folded, without the final CRLF).
/// `f` maps an internal address to its new form (or None: unchanged).
/// Returns the new field (`Name: value`, CRLF-folded, no final CRLF), or
/// None when no address changed.
pub fn rewrite_field<E>(name: &str, value: &str, mut f: impl FnMut(&str) -> Result<Option<String>, E>) -> Result<Option<String>, E> {
    let mut pieces = parse(tokenize(value));
    let mut changed = false;
    for p in pieces.iter_mut() {
        if let Piece::Addr(a) = p {
            if a.is_empty() {
                continue;
            }
            if let Some(new) = f(a)? {
                if new != *a {
                    *a = new;
                    changed = true;
                }
            }
        }
    }
    if !changed {
        return Ok(None);
    }
    Ok(Some(fold(&format!("{name}: "), &externalize(&pieces))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(name: &str, v: &str, map: &[(&str, &str)]) -> Option<String> {
        rewrite_field::<()>(name, v, |a| {
            let a = if a.contains('@') {
                a.to_string()
            } else {
                format!("{a}@mumail.test")
            };
            let a = match a.rsplit_once(':') {
                Some((r, x)) if r.starts_with('@') => x.to_string(),
                _ => a,
            };
            Ok(Some(map.iter().find(|(k, _)| *k == a).map(|(_, v)| v.to_string()).unwrap_or(a)))
        })
        .unwrap()
        .map(|s| s.replace("\r\n", "\n"))
    }

    /// The expected values are the real Postfix 3.7's output for the same
    /// headers and mappings.
    #[test]
    fn as_postfix_writes_them() {
        let m = [
            ("joe@mumail.test", "joseph.user@mumail.test"),
            ("old@mumail.test", "new@mumail.test"),
            ("c@legacy.org", "c@mumail.test"),
            ("b@legacy.org", "b@mumail.test"),
            ("d@mumail.test", "d@mumail.test"),
            ("odd local@legacy.org", "odd local@mumail.test"),
            ("joe@host.mumail.test", "joe@mumail.test"),
            ("x@host.mumail.test", "x@mumail.test"),
            ("root@mumail.test", "admin@mumail.test"),
            ("rc@mumail.test", "rc2@mumail.test"),
        ];
        assert_eq!(
            rw("From", "Joe User <joe>", &m).unwrap(),
            "From: Joe User <joseph.user@mumail.test>"
        );
        assert_eq!(
            rw(
                "Reply-To",
                "\"Quoted, Name\" <root@mumail.test>, x@host.mumail.test (comment here)",
                &m
            )
            .unwrap(),
            "Reply-To: \"Quoted, Name\" <admin@mumail.test>,\n\tx@mumail.test (comment here)"
        );
        assert_eq!(
            rw("To", "a, b@legacy.org, Group: c@legacy.org, d;, rc@mumail.test", &m).unwrap(),
            "To: a@mumail.test, b@mumail.test, Group: c@mumail.test,\n\td@mumail.test;, rc2@mumail.test"
        );
        assert_eq!(rw("Cc", "undisclosed-recipients:;", &m), None);
        assert_eq!(
            rw("Cc", "Folded\r\n Name <old@mumail.test>,\r\n\tother@example.net", &m).unwrap(),
            "Cc: Folded Name <new@mumail.test>, other@example.net"
        );
        assert_eq!(
            rw(
                "To",
                "averyveryverylongname@mumail.test, anotherveryverylongname@mumail.test, short@mumail.test, joe, \
                 \"Quoted Person\" <joe@host.mumail.test>, (only comment) joe, <joe>, joe <joe> , \
                 <@route1,@route2:joe@mumail.test>, \"odd local\"@legacy.org, x@[1.2.3.4], joe@host",
                &m
            )
            .unwrap(),
            "To: averyveryverylongname@mumail.test,\n\tanotherveryverylongname@mumail.test, short@mumail.test,\n\t\
             joseph.user@mumail.test, \"Quoted Person\" <joe@mumail.test>,\n\t\
             joseph.user@mumail.test (only comment), <joseph.user@mumail.test>,\n\t\
             joe <joseph.user@mumail.test>, <joseph.user@mumail.test>,\n\t\
             \"odd local\"@mumail.test, x@[1.2.3.4], joe@host"
        );
        assert_eq!(
            rw("Sender", "joe (a (nested) comment)", &m).unwrap(),
            "Sender: joseph.user@mumail.test (a (nested) comment)"
        );
        assert_eq!(rw("From", "<>", &m), None);
        assert_eq!(rw("To", "x@example.net (unchanged)", &m), None);
    }

    #[test]
    fn bad_input_never_panics() {
        for v in [
            "\"unterminated",
            "(open (comment",
            "[1.2.3",
            "<<<>>",
            "a@b>",
            ",,,;;::",
            "\\",
            "\"a\\",
            "<a@b",
        ] {
            let _ = rw("To", v, &[]);
        }
        assert_eq!(external("a b@x"), "\"a b\"@x");
        assert_eq!(external("a\"b@x"), "\"a\\\"b\"@x");
        assert_eq!(external("first.last@x"), "first.last@x");
        assert_eq!(external(".x@y"), "\".x\"@y");
    }
}
