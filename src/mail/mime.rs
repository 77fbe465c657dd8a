//! RFC 5322 / MIME structure of a stored message, parsed once: header
//! fields, content types with parameters (RFC 2045/2231 raw), and the part
//! tree with byte offsets, so that IMAP sections are slices of the file.
//!
//! Invariants: offsets index into the message bytes given to `parse`; no
//! part is deeper than `MAX_DEPTH` (deeper parts are treated as leaves) and
//! no multipart has more than `MAX_PARTS` children, so hostile input is
//! bounded in time and memory.

/// Deeper nesting is read as an opaque leaf.
pub const MAX_DEPTH: usize = 48;
/// Parts beyond this are ignored (counted into the last one).
pub const MAX_PARTS: usize = 10_000;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContentType {
    /// Lower-case type and subtype, empty when the header is absent.
    pub ty: String,
    pub subtype: String,
    /// Parameters in order, names as written.
    pub params: Vec<(String, String)>,
}

impl ContentType {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, Default)]
pub struct Part {
    /// Header block, including the blank line that ends it.
    pub header_start: usize,
    pub header_end: usize,
    /// Body bytes.
    pub body_start: usize,
    pub body_end: usize,
    /// The content type as declared (`ty` empty when absent).
    pub ctype: ContentType,
    /// The default type given by the parent (text/plain or message/rfc822).
    pub default_digest: bool,
    pub children: Vec<Part>,
    /// For message/rfc822: the encapsulated message.
    pub message: Option<Box<Part>>,
}

impl Part {
    pub fn is_multipart(&self) -> bool {
        self.ctype.ty == "multipart"
    }
    /// Effective type/subtype (defaults applied).
    pub fn effective_type(&self) -> (&str, &str) {
        if self.ctype.ty.is_empty() || self.ctype.subtype.is_empty() {
            if self.default_digest {
                ("message", "rfc822")
            } else {
                ("text", "plain")
            }
        } else {
            (&self.ctype.ty, &self.ctype.subtype)
        }
    }
    pub fn header<'a>(&self, msg: &'a [u8]) -> &'a [u8] {
        &msg[self.header_start..self.header_end]
    }
    pub fn body<'a>(&self, msg: &'a [u8]) -> &'a [u8] {
        &msg[self.body_start..self.body_end]
    }
}

/// The end of the header block (index after the empty line, or the end of
/// the data if there is none) and the start of the body.
pub fn header_end(data: &[u8]) -> (usize, usize) {
    let mut i = 0;
    // An empty first line means an empty header.
    loop {
        if data[i..].starts_with(b"\r\n") {
            return (i + 2, i + 2);
        }
        if data[i..].starts_with(b"\n") {
            return (i + 1, i + 1);
        }
        match memchr(b'\n', &data[i..]) {
            Some(n) => i += n + 1,
            None => return (data.len(), data.len()),
        }
    }
}

fn memchr(b: u8, s: &[u8]) -> Option<usize> {
    s.iter().position(|&c| c == b)
}

/// Header fields in order: (name, raw unfolded value without the leading
/// space and the final CRLF).  Lines without a colon are skipped, as
/// Cyrus's parser does.
pub fn fields(header: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    for line in header.split(|&c| c == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some(last) = out.last_mut() {
                // RFC 5322 2.2.3: unfolding removes the CRLF only.
                last.1.extend_from_slice(line);
            }
            continue;
        }
        let Some(colon) = memchr(b':', line) else { continue };
        let name = &line[..colon];
        if name.is_empty() || name.iter().any(|c| *c <= b' ' || *c >= 127) {
            // "Name :" with trailing blanks is tolerated.
            let trimmed = trim(name);
            if trimmed.is_empty() || trimmed.iter().any(|c| *c <= b' ' || *c >= 127) {
                continue;
            }
        }
        // Blanks after the colon go; a folded value keeps the blank that
        // starts its continuation line (Cyrus's rendering).
        let value = &line[colon + 1..];
        let skip = value.iter().take_while(|&&c| c == b' ' || c == b'\t').count();
        let value = &value[skip..];
        out.push((String::from_utf8_lossy(trim(name)).into_owned(), value.to_vec()));
    }
    out
}

/// The first field named `name` as trimmed text (`Message-ID` for logs).
pub fn field_text(fields: &[(String, Vec<u8>)], name: &str) -> Option<String> {
    field(fields, name).map(|v| String::from_utf8_lossy(trim(v)).into_owned())
}

/// The first field named `name` (case-insensitive).
pub fn field<'a>(fields: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    fields.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice())
}

pub fn trim(s: &[u8]) -> &[u8] {
    let a = s.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(s.len());
    let b = s.iter().rposition(|c| !c.is_ascii_whitespace()).map_or(a, |i| i + 1);
    &s[a..b]
}

/// Skips RFC 5322 CFWS (comments may nest) from `i`.
fn skip_cfws(s: &[u8], mut i: usize) -> usize {
    loop {
        while i < s.len() && (s[i] == b' ' || s[i] == b'\t' || s[i] == b'\r' || s[i] == b'\n') {
            i += 1;
        }
        if i < s.len() && s[i] == b'(' {
            let mut depth = 0usize;
            while i < s.len() {
                match s[i] {
                    b'\\' => i += 1,
                    b'(' => depth += 1,
                    b')' => {
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
            continue;
        }
        return i.min(s.len());
    }
}

const TSPECIALS: &[u8] = b"()<>@,;:\\\"/[]?=";

/// A token (RFC 2045) or a quoted string from `i`; returns (value, next).
fn token_or_quoted(s: &[u8], i: usize) -> (String, usize) {
    let i = skip_cfws(s, i);
    if i < s.len() && s[i] == b'"' {
        let mut v = Vec::new();
        let mut j = i + 1;
        while j < s.len() && s[j] != b'"' {
            if s[j] == b'\\' && j + 1 < s.len() {
                j += 1;
            }
            v.push(s[j]);
            j += 1;
        }
        return (String::from_utf8_lossy(&v).into_owned(), (j + 1).min(s.len()));
    }
    let mut j = i;
    while j < s.len() && s[j] > b' ' && !TSPECIALS.contains(&s[j]) {
        j += 1;
    }
    (String::from_utf8_lossy(&s[i..j]).into_owned(), j)
}

/// `value; name=value; …` as in Content-Type and Content-Disposition:
/// the main value (lower-cased) and the parameters.
pub fn parse_params(v: &[u8]) -> (String, Vec<(String, String)>) {
    let (main, mut i) = main_value(v);
    let mut params = Vec::new();
    while i < v.len() && params.len() < 64 {
        i = skip_cfws(v, i);
        if i >= v.len() {
            break;
        }
        if v[i] != b';' {
            // Garbage: skip to the next ';'.
            match memchr(b';', &v[i..]) {
                Some(n) => i += n,
                None => break,
            }
            continue;
        }
        i = skip_cfws(v, i + 1);
        let (name, j) = token_or_quoted(v, i);
        i = skip_cfws(v, j);
        if name.is_empty() || i >= v.len() || v[i] != b'=' {
            if name.is_empty() && i < v.len() && v[i] != b';' {
                i += 1;
            }
            continue;
        }
        let (val, j) = token_or_quoted(v, i + 1);
        i = j;
        params.push((name, val));
    }
    (main, params)
}

fn main_value(v: &[u8]) -> (String, usize) {
    let i = skip_cfws(v, 0);
    let mut j = i;
    while j < v.len() && v[j] != b';' && v[j] != b'(' && !v[j].is_ascii_whitespace() {
        j += 1;
    }
    (String::from_utf8_lossy(&v[i..j]).to_ascii_lowercase(), j)
}

pub fn parse_content_type(v: &[u8]) -> ContentType {
    let (main, params) = parse_params(v);
    let (ty, sub) = match main.split_once('/') {
        Some((t, s)) if !t.is_empty() && !s.is_empty() => (t.to_string(), s.to_string()),
        _ => (String::new(), String::new()),
    };
    ContentType { ty, subtype: sub, params }
}

/// Parses a whole message.
pub fn parse(msg: &[u8]) -> Part {
    let mut budget = MAX_PARTS;
    parse_part(msg, 0, msg.len(), false, 0, &mut budget)
}

fn parse_part(msg: &[u8], start: usize, end: usize, default_digest: bool, depth: usize, budget: &mut usize) -> Part {
    let (he, bs) = header_end(&msg[start..end]);
    let header = &msg[start..start + he];
    let f = fields(header);
    let ctype = field(&f, "content-type").map(parse_content_type).unwrap_or_default();
    let mut part = Part {
        header_start: start,
        header_end: start + he,
        body_start: start + bs,
        body_end: end,
        ctype,
        default_digest,
        children: Vec::new(),
        message: None,
    };
    if depth >= MAX_DEPTH {
        return part;
    }
    let (ty, sub) = part.effective_type();
    let (ty, sub) = (ty.to_string(), sub.to_string());
    if ty == "multipart" {
        let Some(boundary) = part.ctype.param("boundary").map(|b| b.as_bytes().to_vec()) else {
            return part;
        };
        let digest = sub == "digest";
        for (s, e) in split_multipart(msg, part.body_start, end, &boundary) {
            if *budget == 0 {
                break;
            }
            *budget -= 1;
            part.children.push(parse_part(msg, s, e, digest, depth + 1, budget));
        }
    } else if ty == "message" && (sub == "rfc822" || sub == "global") && *budget > 0 {
        *budget -= 1;
        part.message = Some(Box::new(parse_part(msg, part.body_start, end, false, depth + 1, budget)));
    }
    part
}

/// The (start, end) of each body part between boundary lines: a part ends
/// before the CRLF that precedes its delimiter (RFC 2046 5.1.1).
fn split_multipart(msg: &[u8], start: usize, end: usize, boundary: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut cur: Option<usize> = None;
    let mut i = start;
    while i < end {
        let line_end = memchr(b'\n', &msg[i..end]).map_or(end, |n| i + n + 1);
        let line = &msg[i..line_end];
        if line.len() >= 2 + boundary.len() && line.starts_with(b"--") && line[2..].starts_with(boundary) {
            let rest = &line[2 + boundary.len()..];
            let closing = rest.starts_with(b"--");
            let rest = if closing { &rest[2..] } else { rest };
            if trim(rest).is_empty() {
                // The CRLF before the delimiter belongs to it.
                if let Some(s) = cur.take() {
                    let mut e = i;
                    if e > s && msg[e - 1] == b'\n' {
                        e -= 1;
                        if e > s && msg[e - 1] == b'\r' {
                            e -= 1;
                        }
                    }
                    out.push((s, e.max(s)));
                }
                if closing {
                    return out;
                }
                cur = Some(line_end);
            }
        }
        i = line_end;
    }
    if let Some(s) = cur {
        out.push((s, end));
    }
    out
}

/// Lines in a body as Cyrus counts them for BODYSTRUCTURE: the line ends
/// (a final line without CRLF, e.g. before a boundary, does not count).
pub fn count_lines(body: &[u8]) -> usize {
    body.iter().filter(|&&c| c == b'\n').count()
}

/// Why Cyrus's `message_copy_strict` refuses a message, if it does:
/// a header line that is neither a field nor a continuation.
pub fn strict_check(msg: &[u8]) -> Result<(), &'static str> {
    let (he, _) = header_end(msg);
    for (i, line) in msg[..he].split(|&c| c == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if i == 0 {
                return Err("Message contains invalid header");
            }
            continue;
        }
        match memchr(b':', line) {
            Some(n) if n > 0 && line[..n].iter().all(|&c| c > b' ' && c < 127) => {}
            _ => return Err("Message contains invalid header"),
        }
    }
    Ok(())
}

/// Cyrus's `munge8bit` (on by default): 8-bit bytes in the top-level
/// header become `X`, so that the header is ASCII.
pub fn munge_8bit_header(msg: &mut [u8]) {
    let (he, _) = header_end(msg);
    for c in &mut msg[..he] {
        if *c >= 0x80 {
            *c = b'X';
        }
    }
}

/// An RFC 5322 address list item, raw (encoded words not decoded).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Address {
    pub name: Option<Vec<u8>>,
    pub route: Option<Vec<u8>>,
    pub mailbox: Option<Vec<u8>>,
    pub host: Option<Vec<u8>>,
}

/// Parses an address list the way IMAP ENVELOPE wants it, groups as
/// `(NIL NIL group NIL) … (NIL NIL NIL NIL)`.
pub fn parse_addresses(v: &[u8]) -> Vec<Address> {
    let mut p = AddrParser { s: v, i: 0 };
    let mut out = Vec::new();
    p.list(&mut out, false);
    out
}

struct AddrParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl AddrParser<'_> {
    fn ws(&mut self) {
        self.i = skip_cfws(self.s, self.i);
    }

    /// Reads a run of words (atoms, quoted strings, dots) up to one of `stop`.
    fn phrase(&mut self, stop: &[u8]) -> Vec<u8> {
        let mut out: Vec<u8> = Vec::new();
        loop {
            self.ws();
            if self.i >= self.s.len() || stop.contains(&self.s[self.i]) {
                break;
            }
            let c = self.s[self.i];
            if !out.is_empty() && c != b'.' && out.last() != Some(&b'.') {
                out.push(b' ');
            }
            if c == b'"' {
                self.i += 1;
                while self.i < self.s.len() && self.s[self.i] != b'"' {
                    if self.s[self.i] == b'\\' && self.i + 1 < self.s.len() {
                        self.i += 1;
                    }
                    if self.s[self.i] != b'\r' && self.s[self.i] != b'\n' {
                        out.push(self.s[self.i]);
                    }
                    self.i += 1;
                }
                self.i += 1;
            } else if c == b'.' {
                out.push(b'.');
                self.i += 1;
            } else {
                let st = self.i;
                while self.i < self.s.len() {
                    let c = self.s[self.i];
                    if c <= b' ' || b"()<>@,;:\\\".[]".contains(&c) {
                        break;
                    }
                    self.i += 1;
                }
                if self.i == st {
                    // A stray special: skip it.
                    self.i += 1;
                    continue;
                }
                out.extend_from_slice(&self.s[st..self.i]);
            }
        }
        out
    }

    fn domain(&mut self) -> Vec<u8> {
        self.ws();
        if self.i < self.s.len() && self.s[self.i] == b'[' {
            let st = self.i;
            while self.i < self.s.len() && self.s[self.i] != b']' {
                self.i += 1;
            }
            self.i = (self.i + 1).min(self.s.len());
            return self.s[st..self.i].to_vec();
        }
        self.phrase(b",;>")
    }

    fn list(&mut self, out: &mut Vec<Address>, in_group: bool) {
        while out.len() < 10_000 {
            self.ws();
            if self.i >= self.s.len() {
                return;
            }
            let c = self.s[self.i];
            if c == b',' {
                self.i += 1;
                continue;
            }
            if c == b';' {
                if in_group {
                    return;
                }
                self.i += 1;
                continue;
            }
            let words = self.phrase(b",;:<@");
            self.ws();
            let next = self.s.get(self.i).copied();
            match next {
                Some(b':') if !in_group => {
                    self.i += 1;
                    out.push(Address {
                        mailbox: Some(words),
                        ..Default::default()
                    });
                    self.list(out, true);
                    if self.s.get(self.i) == Some(&b';') {
                        self.i += 1;
                    }
                    out.push(Address::default());
                }
                Some(b'<') => {
                    self.i += 1;
                    self.ws();
                    let mut route = None;
                    if self.s.get(self.i) == Some(&b'@') {
                        let st = self.i;
                        while self.i < self.s.len() && self.s[self.i] != b':' && self.s[self.i] != b'>' {
                            self.i += 1;
                        }
                        if self.s.get(self.i) == Some(&b':') {
                            route = Some(self.s[st..self.i].to_vec());
                            self.i += 1;
                        } else {
                            self.i = st;
                        }
                    }
                    let local = self.phrase(b"@>,;");
                    let mut host = None;
                    if self.s.get(self.i) == Some(&b'@') {
                        self.i += 1;
                        host = Some(self.domain());
                    }
                    self.ws();
                    if self.s.get(self.i) == Some(&b'>') {
                        self.i += 1;
                    }
                    out.push(Address {
                        name: if words.is_empty() { None } else { Some(words) },
                        route,
                        mailbox: if local.is_empty() { None } else { Some(local) },
                        host,
                    });
                }
                Some(b'@') => {
                    self.i += 1;
                    let host = self.domain();
                    out.push(Address {
                        name: None,
                        route: None,
                        mailbox: Some(words),
                        host: Some(host),
                    });
                }
                _ => {
                    if !words.is_empty() {
                        out.push(Address {
                            name: None,
                            route: None,
                            mailbox: Some(words),
                            host: None,
                        });
                    } else if self.i < self.s.len() && !b",;".contains(&self.s[self.i]) {
                        self.i += 1;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structure_and_offsets() {
        let m = b"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\npre\r\n--b1\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b1\r\n\r\nworld\r\n--b1--\r\nepi\r\n";
        let p = parse(m);
        assert_eq!(p.children.len(), 2);
        assert_eq!(p.children[0].body(m), b"hello");
        assert_eq!(p.children[1].body(m), b"world");
        assert_eq!(p.children[1].effective_type(), ("text", "plain"));
        assert_eq!(p.ctype.param("BOUNDARY"), Some("b1"));
    }

    #[test]
    fn params_quoted_and_comments() {
        let (v, p) = parse_params(b"Attachment (c); filename=\"a \\\"b\\\".pdf\"; size=10");
        assert_eq!(v, "attachment");
        assert_eq!(p, vec![("filename".into(), "a \"b\".pdf".into()), ("size".into(), "10".into())]);
    }

    #[test]
    fn addresses_with_groups() {
        let a = parse_addresses(b"undisclosed-recipients:;, team: a@example.test, b@example.test;");
        assert_eq!(a.len(), 6);
        assert_eq!(a[0].mailbox.as_deref(), Some(&b"undisclosed-recipients"[..]));
        assert_eq!(a[1], Address::default());
        assert_eq!(a[3].host.as_deref(), Some(&b"example.test"[..]));
        let a = parse_addresses(b"\"Doe, Jane\" <jane@example.test>, Test One <test1@example.test>");
        assert_eq!(a[0].name.as_deref(), Some(&b"Doe, Jane"[..]));
        assert_eq!(a[1].name.as_deref(), Some(&b"Test One"[..]));
    }

    #[test]
    fn hostile_depth_is_bounded() {
        let mut m = Vec::new();
        for i in 0..5000 {
            m.extend_from_slice(format!("Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n").as_bytes());
        }
        let p = parse(&m);
        let mut d = 0;
        let mut cur = &p;
        while let Some(c) = cur.children.first() {
            cur = c;
            d += 1;
        }
        assert!(d <= MAX_DEPTH);
    }
}

/// Header field values with RFC 2047 encoded words decoded (UTF-8 and
/// Latin-1 charsets; others left raw).
pub fn decode_words(v: &[u8]) -> Vec<u8> {
    let s = String::from_utf8_lossy(v);
    let mut out = String::new();
    let mut rest: &str = &s;
    while let Some(st) = rest.find("=?") {
        out.push_str(&rest[..st]);
        let tail = &rest[st + 2..];
        let parts: Vec<&str> = tail.splitn(4, '?').collect();
        if parts.len() == 4 && parts[3].starts_with('=') {
            let (cs, enc, text) = (parts[0].to_ascii_lowercase(), parts[1].to_ascii_uppercase(), parts[2]);
            let bytes = match enc.as_str() {
                "B" => crate::util::base64_decode(text).unwrap_or_default(),
                "Q" => {
                    let mut b = Vec::new();
                    let tb = text.as_bytes();
                    let mut i = 0;
                    while i < tb.len() {
                        match tb[i] {
                            b'_' => b.push(b' '),
                            b'=' if i + 2 < tb.len() => {
                                if let Ok(x) = u8::from_str_radix(&text[i + 1..i + 3], 16) {
                                    b.push(x);
                                    i += 2;
                                } else {
                                    b.push(b'=');
                                }
                            }
                            c => b.push(c),
                        }
                        i += 1;
                    }
                    b
                }
                _ => Vec::new(),
            };
            let dec = if cs.starts_with("iso-8859-1") || cs == "latin1" {
                bytes.iter().map(|&c| c as char).collect()
            } else {
                String::from_utf8_lossy(&bytes).into_owned()
            };
            out.push_str(&dec);
            let consumed = parts[0].len() + parts[1].len() + parts[2].len() + 3 + 1;
            rest = &tail[consumed.min(tail.len())..];
            // Blanks between adjacent encoded words vanish (RFC 2047 6.2).
            let t = rest.trim_start();
            if t.starts_with("=?") {
                rest = t;
            }
        } else {
            out.push_str("=?");
            rest = tail;
        }
    }
    out.push_str(rest);
    out.into_bytes()
}
