//! Cyrus's dlist, the value syntax of its replication protocol (and of
//! what a Cyrus back end sends over IMAP as SYNCGET/SYNCAPPLY when it
//! moves a user by XFER), of 3.6's `cyrus.header` and of its quota files:
//!
//! ```text
//! value = atom | "quoted" | {n}/{n+} CRLF bytes     ; a string
//!       | ( value ... )                             ; a list
//!       | %( key value ... )                        ; a key-value list
//!       | %{partition guid size} CRLF bytes         ; a message file
//! ```
//!
//! Sans-I/O: the caller has the whole value (literals and files in it,
//! as the IMAP command reader collects them).

/// A dlist value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dlist {
    /// An atom, quoted string or literal.
    Atom(Vec<u8>),
    List(Vec<Dlist>),
    Kv(Vec<(String, Dlist)>),
    /// A message file: partition, GUID (SHA-1, hex) and its bytes.
    File {
        partition: String,
        guid: String,
        data: Vec<u8>,
    },
}

impl Dlist {
    /// The value under `key` of a key-value list.
    pub fn get(&self, key: &str) -> Option<&Dlist> {
        match self {
            Dlist::Kv(v) => v.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, d)| d),
            _ => None,
        }
    }
    /// A string value as text (None: not a string or not UTF-8).
    pub fn text(&self) -> Option<&str> {
        match self {
            Dlist::Atom(s) => std::str::from_utf8(s).ok(),
            _ => None,
        }
    }
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Dlist::Atom(s) => Some(s),
            _ => None,
        }
    }
    /// A number (Cyrus sends them as atoms).
    pub fn num(&self) -> Option<u64> {
        self.text()?.parse().ok()
    }
    /// A list's items (none for anything else).
    pub fn items(&self) -> &[Dlist] {
        match self {
            Dlist::List(v) => v,
            _ => &[],
        }
    }
    /// `key`'s text, number or items in a key-value list.
    pub fn text_of(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Dlist::text)
    }
    pub fn num_of(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(Dlist::num)
    }
}

/// Deepest nesting taken.
const MAX_DEPTH: usize = 32;

/// Parses one value; what follows it is ignored.
pub fn parse(s: &[u8]) -> Result<Dlist, String> {
    let mut p = 0usize;
    value(s, &mut p, 0)
}

/// Parses `KEY value` (a replication command or reply line).
pub fn parse_keyed(s: &[u8]) -> Result<(String, Dlist), String> {
    let mut p = 0usize;
    skip_space(s, &mut p);
    let start = p;
    while p < s.len() && !matches!(s[p], b' ' | b'\r' | b'\n' | b'\t') {
        p += 1;
    }
    if p == start {
        return Err("dlist: missing key".into());
    }
    let key = String::from_utf8_lossy(&s[start..p]).into_owned();
    let v = value(s, &mut p, 0)?;
    skip_space(s, &mut p);
    if p != s.len() {
        return Err("dlist: unexpected data after the value".into());
    }
    Ok((key, v))
}

fn skip_space(s: &[u8], p: &mut usize) {
    while *p < s.len() && matches!(s[*p], b' ' | b'\r' | b'\n' | b'\t') {
        *p += 1;
    }
}

/// `{n}` or `{n+}` at `*p`, then CRLF: the bytes.
fn literal<'a>(s: &'a [u8], p: &mut usize) -> Result<&'a [u8], String> {
    let end = s[*p..].iter().position(|&c| c == b'}').ok_or("dlist: bad literal")? + *p;
    let n: usize = std::str::from_utf8(&s[*p + 1..end])
        .ok()
        .map(|t| t.trim_end_matches('+'))
        .filter(|t| !t.is_empty() && t.len() <= 19)
        .and_then(|t| t.parse().ok())
        .ok_or("dlist: bad literal length")?;
    let (at, body) = after_crlf(s, end + 1, n)?;
    *p = at + n;
    Ok(body)
}

/// The `n` bytes after an optional CRLF at `at`: (their start, them).
fn after_crlf(s: &[u8], mut at: usize, n: usize) -> Result<(usize, &[u8]), String> {
    if s.get(at) == Some(&b'\r') {
        at += 1;
    }
    if s.get(at) == Some(&b'\n') {
        at += 1;
    }
    let body = s
        .get(at..at.checked_add(n).ok_or("dlist: bad length")?)
        .ok_or("dlist: short literal")?;
    Ok((at, body))
}

fn atom_end(s: &[u8], mut p: usize) -> usize {
    while p < s.len() && !matches!(s[p], b' ' | b'(' | b')' | b'\r' | b'\n' | b'\t' | b'}') {
        p += 1;
    }
    p
}

fn value(s: &[u8], p: &mut usize, depth: usize) -> Result<Dlist, String> {
    if depth > MAX_DEPTH {
        return Err("dlist nested too deeply".into());
    }
    skip_space(s, p);
    match s.get(*p) {
        None => Err("dlist: unexpected end".into()),
        Some(b'%') if s.get(*p + 1) == Some(&b'(') => {
            *p += 2;
            let mut kv = Vec::new();
            loop {
                skip_space(s, p);
                match s.get(*p) {
                    Some(b')') => {
                        *p += 1;
                        return Ok(Dlist::Kv(kv));
                    }
                    None => return Err("dlist: unclosed %(".into()),
                    _ => {}
                }
                let Dlist::Atom(k) = value(s, p, depth + 1)? else {
                    return Err("dlist: key is not an atom".into());
                };
                let v = value(s, p, depth + 1)?;
                kv.push((String::from_utf8_lossy(&k).into_owned(), v));
            }
        }
        Some(b'%') if s.get(*p + 1) == Some(&b'{') => {
            // %{partition guid size} CRLF bytes
            let mut q = *p + 2;
            let part_end = atom_end(s, q);
            let partition = String::from_utf8_lossy(&s[q..part_end]).into_owned();
            q = part_end;
            skip_space(s, &mut q);
            let guid_end = atom_end(s, q);
            let guid = String::from_utf8_lossy(&s[q..guid_end]).into_owned();
            q = guid_end;
            skip_space(s, &mut q);
            let size_end = atom_end(s, q);
            let n: usize = std::str::from_utf8(&s[q..size_end])
                .ok()
                .filter(|t| !t.is_empty() && t.len() <= 19)
                .and_then(|t| t.parse().ok())
                .ok_or("dlist: bad file size")?;
            if s.get(size_end) != Some(&b'}') || partition.is_empty() || guid.is_empty() {
                return Err("dlist: bad file".into());
            }
            let (at, body) = after_crlf(s, size_end + 1, n)?;
            *p = at + n;
            Ok(Dlist::File {
                partition,
                guid,
                data: body.to_vec(),
            })
        }
        Some(b'(') => {
            *p += 1;
            let mut v = Vec::new();
            loop {
                skip_space(s, p);
                match s.get(*p) {
                    Some(b')') => {
                        *p += 1;
                        return Ok(Dlist::List(v));
                    }
                    None => return Err("dlist: unclosed (".into()),
                    _ => v.push(value(s, p, depth + 1)?),
                }
            }
        }
        Some(b'"') => {
            *p += 1;
            let mut out = Vec::new();
            while let Some(&c) = s.get(*p) {
                *p += 1;
                match c {
                    b'"' => return Ok(Dlist::Atom(out)),
                    b'\\' => {
                        if let Some(&n) = s.get(*p) {
                            out.push(n);
                            *p += 1;
                        }
                    }
                    c => out.push(c),
                }
            }
            Err("dlist: unclosed string".into())
        }
        Some(b'{') => Ok(Dlist::Atom(literal(s, p)?.to_vec())),
        Some(_) => {
            let start = *p;
            *p = atom_end(s, start).max(start + 1).min(s.len());
            Ok(Dlist::Atom(s[start..*p].to_vec()))
        }
    }
}

/// Writes a value as Cyrus prints it: strings as atoms where they can
/// be, else quoted, else as `{n+}` literals.
pub fn render(d: &Dlist, out: &mut Vec<u8>) {
    match d {
        Dlist::Atom(s) => {
            let atom = !s.is_empty()
                && s.iter()
                    .all(|&c| c > b' ' && c < 0x7f && !matches!(c, b'(' | b')' | b'{' | b'}' | b'"' | b'\\' | b'%' | b'*'));
            if atom {
                out.extend_from_slice(s);
            } else {
                // Quoted, else a `{n+}` literal: Cyrus reads either.
                crate::proto::imap::render::client_string(out, s);
            }
        }
        Dlist::List(v) => {
            out.push(b'(');
            for (i, x) in v.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                render(x, out);
            }
            out.push(b')');
        }
        Dlist::Kv(v) => {
            out.extend_from_slice(b"%(");
            for (i, (k, x)) in v.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                render(&Dlist::Atom(k.as_bytes().to_vec()), out);
                out.push(b' ');
                render(x, out);
            }
            out.push(b')');
        }
        Dlist::File { partition, guid, data } => {
            out.extend_from_slice(format!("%{{{partition} {guid} {}}}\r\n", data.len()).as_bytes());
            out.extend_from_slice(data);
        }
    }
}

/// A line's trailing `%{partition guid size}` (a message file follows
/// the CRLF): its size.
pub fn file_marker(line: &[u8]) -> Option<u64> {
    let l = line.strip_suffix(b"}")?;
    let open = l.windows(2).rposition(|w| w == b"%{")?;
    let inner = std::str::from_utf8(&l[open + 2..]).ok()?;
    let mut it = inner.split(' ');
    let (_, _, size) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || size.is_empty() || size.len() > 19 {
        return None;
    }
    size.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_of_every_kind() {
        let d = parse(b"%(A 1 B \"x y\" C {3+}\r\nabc L (a (b)) F %{default 0a1b 4}\r\nbody)").unwrap();
        assert_eq!(d.num_of("A"), Some(1));
        assert_eq!(d.text_of("b"), Some("x y"));
        assert_eq!(d.text_of("C"), Some("abc"));
        assert_eq!(d.get("L").unwrap().items().len(), 2);
        assert_eq!(
            d.get("F"),
            Some(&Dlist::File {
                partition: "default".into(),
                guid: "0a1b".into(),
                data: b"body".to_vec()
            })
        );
    }

    #[test]
    fn keyed_lines_and_errors() {
        let (k, v) = parse_keyed(b"MAILBOXES (user.fred user.fred.Sent)").unwrap();
        assert_eq!(k, "MAILBOXES");
        assert_eq!(v.items()[1].text(), Some("user.fred.Sent"));
        let (k, v) = parse_keyed(b"USER fred").unwrap();
        assert_eq!((k.as_str(), v.text()), ("USER", Some("fred")));
        assert!(parse_keyed(b"").is_err());
        assert!(parse_keyed(b"X (a").is_err());
        assert!(parse_keyed(b"X a b").is_err());
        assert!(parse(b"{5}\r\nab").is_err());
        assert!(parse(b"%{p g 10}\r\nshort").is_err());
        assert!(parse(b"{99999999999999999999}\r\n").is_err());
        let deep = "(".repeat(100);
        assert!(parse(deep.as_bytes()).is_err());
    }

    #[test]
    fn rendering() {
        let d = Dlist::Kv(vec![
            ("MISSING".into(), Dlist::List(vec![Dlist::Atom(b"abc".to_vec())])),
            ("T".into(), Dlist::Atom(b"a b".to_vec())),
            ("E".into(), Dlist::Atom(Vec::new())),
            ("B".into(), Dlist::Atom(b"x\r\ny".to_vec())),
        ]);
        let mut out = Vec::new();
        render(&d, &mut out);
        assert_eq!(out, b"%(MISSING (abc) T \"a b\" E \"\" B {4+}\r\nx\r\ny)");
        assert_eq!(parse(&out).unwrap(), d);
    }

    #[test]
    fn file_markers() {
        assert_eq!(file_marker(b"SYNCAPPLY MESSAGE (%{default 0a1b 1234}"), Some(1234));
        assert_eq!(file_marker(b"x %{default 0a1b}"), None);
        assert_eq!(file_marker(b"x {12}"), None);
    }
}
