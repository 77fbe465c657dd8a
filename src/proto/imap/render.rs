//! IMAP renderings of a message as Cyrus 3.x writes them: strings (quoted
//! or literal by Cyrus's rule), ENVELOPE, BODY and BODYSTRUCTURE, and
//! section extraction (`BODY[1.2.HEADER]`, `.MIME`, `HEADER.FIELDS`).

use crate::mail::mime::{self, Part};

/// Cyrus `prot_printstring`: a quoted string unless a byte needs a literal
/// (8-bit, CR, LF, `"`, `%`, `\`) or it is 1024 bytes or longer.
pub fn string(out: &mut Vec<u8>, s: &[u8]) {
    let needs_literal = s.len() >= 1024
        || s.iter()
            .any(|&c| c & 0x80 != 0 || matches!(c, b'\r' | b'\n' | b'"' | b'%' | b'\\' | 0));
    if needs_literal {
        out.extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
        out.extend_from_slice(s);
    } else {
        out.push(b'"');
        out.extend_from_slice(s);
        out.push(b'"');
    }
}

/// A command argument as a client sends it (a proxy, XFER): quoted when
/// that is safe, else a LITERAL+ literal, so that nothing waits for a
/// continuation.
pub fn client_string(out: &mut Vec<u8>, s: &[u8]) {
    if s.len() < 1024 && s.iter().all(|&c| (b' '..0x7f).contains(&c) && c != b'"' && c != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s);
        out.push(b'"');
    } else {
        out.extend_from_slice(format!("{{{}+}}\r\n", s.len()).as_bytes());
        out.extend_from_slice(s);
    }
}

pub fn nstring(out: &mut Vec<u8>, s: Option<&[u8]>) {
    match s {
        Some(s) => string(out, s),
        None => out.extend_from_slice(b"NIL"),
    }
}

fn upper(s: &str) -> Vec<u8> {
    s.to_ascii_uppercase().into_bytes()
}

fn field_value(fields: &[(String, Vec<u8>)], name: &str) -> Option<Vec<u8>> {
    let v = mime::field(fields, name)?;
    let end = v.iter().rposition(|c| !c.is_ascii_whitespace()).map_or(0, |i| i + 1);
    Some(v[..end].to_vec()).filter(|v| !mime::trim(v).is_empty())
}

fn addr_list(out: &mut Vec<u8>, v: Option<&[u8]>) {
    let list = v.map(mime::parse_addresses).unwrap_or_default();
    if list.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for a in &list {
        out.push(b'(');
        nstring(out, a.name.as_deref());
        out.push(b' ');
        nstring(out, a.route.as_deref());
        out.push(b' ');
        nstring(out, a.mailbox.as_deref());
        out.push(b' ');
        nstring(out, a.host.as_deref());
        out.push(b')');
    }
    out.push(b')');
}

/// ENVELOPE of a header block.
pub fn envelope(out: &mut Vec<u8>, header: &[u8]) {
    let f = mime::fields(header);
    let get = |n: &str| field_value(&f, n);
    out.push(b'(');
    nstring(out, get("date").as_deref());
    out.push(b' ');
    nstring(out, get("subject").as_deref());
    let from = get("from");
    for (name, dflt) in [("from", None), ("sender", from.as_deref()), ("reply-to", from.as_deref())] {
        out.push(b' ');
        let v = get(name);
        // RFC 3501 7.4.2: sender and reply-to default to from.
        let v = match &v {
            Some(x) if !mime::parse_addresses(x).is_empty() => Some(x.as_slice()),
            _ => dflt,
        };
        addr_list(out, if name == "from" { from.as_deref() } else { v });
    }
    for name in ["to", "cc", "bcc"] {
        out.push(b' ');
        addr_list(out, get(name).as_deref());
    }
    out.push(b' ');
    nstring(out, get("in-reply-to").as_deref());
    out.push(b' ');
    nstring(out, get("message-id").as_deref());
    out.push(b')');
}

fn params_list(out: &mut Vec<u8>, params: &[(String, String)]) {
    if params.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for (i, (n, v)) in params.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        string(out, &upper(n));
        out.push(b' ');
        string(out, v.as_bytes());
    }
    out.push(b')');
}

/// BODY (`extended` false) or BODYSTRUCTURE (`extended` true) of a part.
pub fn body_structure(out: &mut Vec<u8>, msg: &[u8], p: &Part, extended: bool) {
    let f = mime::fields(p.header(msg));
    let (ty, sub) = p.effective_type();
    out.push(b'(');
    if p.is_multipart() && !p.children.is_empty() {
        for c in &p.children {
            body_structure(out, msg, c, extended);
        }
        out.push(b' ');
        string(out, &upper(sub));
        if extended {
            out.push(b' ');
            params_list(out, &p.ctype.params);
            ext_tail(out, &f);
        }
        out.push(b')');
        return;
    }
    // A multipart without parts is shown as text/plain, as Cyrus does.
    let (ty, sub) = if p.is_multipart() { ("text", "plain") } else { (ty, sub) };
    string(out, &upper(ty));
    out.push(b' ');
    string(out, &upper(sub));
    out.push(b' ');
    let mut params = if p.is_multipart() { Vec::new() } else { p.ctype.params.clone() };
    // Cyrus adds the default charset only when there is no Content-Type.
    if ty == "text" && p.ctype.ty.is_empty() && !params.iter().any(|(n, _)| n.eq_ignore_ascii_case("charset")) {
        params.insert(0, ("charset".into(), "us-ascii".into()));
    }
    params_list(out, &params);
    out.push(b' ');
    nstring(out, field_value(&f, "content-id").as_deref());
    out.push(b' ');
    nstring(out, field_value(&f, "content-description").as_deref());
    out.push(b' ');
    let enc = field_value(&f, "content-transfer-encoding")
        .map(|v| String::from_utf8_lossy(&v).to_ascii_uppercase())
        .unwrap_or_else(|| "7BIT".into());
    string(out, enc.as_bytes());
    let body = p.body(msg);
    out.extend_from_slice(format!(" {}", body.len()).as_bytes());
    if ty == "message" && (sub == "rfc822" || sub == "global") {
        if let Some(m) = &p.message {
            out.push(b' ');
            envelope(out, m.header(msg));
            out.push(b' ');
            body_structure(out, msg, m, extended);
            out.extend_from_slice(format!(" {}", mime::count_lines(body)).as_bytes());
        }
    } else if ty == "text" {
        out.extend_from_slice(format!(" {}", mime::count_lines(body)).as_bytes());
    }
    if extended {
        out.push(b' ');
        nstring(out, field_value(&f, "content-md5").as_deref());
        ext_tail(out, &f);
    }
    out.push(b')');
}

/// disposition, language, location.
fn ext_tail(out: &mut Vec<u8>, f: &[(String, Vec<u8>)]) {
    out.push(b' ');
    match field_value(f, "content-disposition") {
        Some(d) => {
            let (v, params) = mime::parse_params(&d);
            out.push(b'(');
            string(out, &upper(&v));
            out.push(b' ');
            params_list(out, &params);
            out.push(b')');
        }
        None => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    match field_value(f, "content-language") {
        Some(l) => {
            let langs: Vec<String> = String::from_utf8_lossy(&l)
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|s| !s.is_empty())
                .map(|s| s.to_ascii_uppercase())
                .collect();
            if langs.is_empty() {
                out.extend_from_slice(b"NIL");
            } else {
                out.push(b'(');
                for (i, l) in langs.iter().enumerate() {
                    if i > 0 {
                        out.push(b' ');
                    }
                    string(out, l.as_bytes());
                }
                out.push(b')');
            }
        }
        None => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    nstring(out, field_value(f, "content-location").as_deref());
}

/// The cached strings of a message: ENVELOPE, BODYSTRUCTURE, BODY.
pub fn cache_items(msg: &[u8]) -> (String, String, String) {
    let p = mime::parse(msg);
    let mut env = Vec::new();
    envelope(&mut env, p.header(msg));
    let mut bs = Vec::new();
    body_structure(&mut bs, msg, &p, true);
    let mut b = Vec::new();
    body_structure(&mut b, msg, &p, false);
    // Literals in these strings carry raw 8-bit bytes; keep them lossless.
    (latin1(&env), latin1(&bs), latin1(&b))
}

/// Bytes → String one char per byte (reversible with `unlatin1`).
pub fn latin1(b: &[u8]) -> String {
    b.iter().map(|&c| c as char).collect()
}

pub fn unlatin1(s: &str) -> std::borrow::Cow<'_, [u8]> {
    if s.is_ascii() {
        // The common case: the bytes are the text.
        return std::borrow::Cow::Borrowed(s.as_bytes());
    }
    std::borrow::Cow::Owned(s.chars().map(|c| c as u32 as u8).collect())
}

/// What a section path names (the parser's type).
pub use super::command::Section as SectionText;

/// Finds the part a section number path names (`[]` is the message).
/// Returns the part and whether it is the message itself (for HEADER/TEXT
/// on an encapsulated message).
pub fn find_part<'a>(root: &'a Part, path: &[u32]) -> Option<&'a Part> {
    let mut cur = root;
    for (i, &n) in path.iter().enumerate() {
        if n == 0 {
            return None;
        }
        // Descending through message/rfc822: its parts are the
        // encapsulated message's.
        if i > 0 {
            match &cur.message {
                Some(m) => cur = m,
                // Only multiparts and messages have subparts.
                None if !cur.is_multipart() => return None,
                None => {}
            }
        }
        if cur.is_multipart() && !cur.children.is_empty() {
            cur = cur.children.get(n as usize - 1)?;
        } else if n == 1 {
            // A non-multipart message has one part, itself.
        } else {
            return None;
        }
    }
    Some(cur)
}

/// The bytes of `BODY[path.text]`; None when the part does not exist.
pub fn section(msg: &[u8], root: &Part, path: &[u32], text: &SectionText) -> Option<Vec<u8>> {
    let part = find_part(root, path)?;
    // HEADER/TEXT of a part address the encapsulated message.
    let target = if path.is_empty() { Some(part) } else { part.message.as_deref() };
    match text {
        SectionText::Full => {
            if path.is_empty() {
                Some(msg.to_vec())
            } else {
                Some(part.body(msg).to_vec())
            }
        }
        SectionText::Mime => {
            if path.is_empty() {
                return None;
            }
            Some(part.header(msg).to_vec())
        }
        SectionText::Header => Some(target?.header(msg).to_vec()),
        SectionText::Text => Some(target?.body(msg).to_vec()),
        SectionText::HeaderFields(names) | SectionText::HeaderFieldsNot(names) => {
            let t = target?;
            let not = matches!(text, SectionText::HeaderFieldsNot(_));
            Some(header_fields(t.header(msg), names, not))
        }
    }
}

/// The raw lines of the named fields (or all others), in message order,
/// followed by the blank line.
pub fn header_fields(header: &[u8], names: &[String], not: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut keep = false;
    let mut i = 0;
    while i < header.len() {
        let end = header[i..].iter().position(|&c| c == b'\n').map_or(header.len(), |n| i + n + 1);
        let line = &header[i..end];
        let bare = line.strip_suffix(b"\n").map(|l| l.strip_suffix(b"\r").unwrap_or(l)).unwrap_or(line);
        if bare.is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if keep {
                out.extend_from_slice(line);
            }
        } else {
            let name = bare.iter().position(|&c| c == b':').map(|n| mime::trim(&bare[..n]));
            keep = match name {
                Some(n) => {
                    let m = names.iter().any(|x| x.as_bytes().eq_ignore_ascii_case(n));
                    m != not
                }
                None => false,
            };
            if keep {
                out.extend_from_slice(line);
            }
        }
        i = end;
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Decodes a part body for BINARY[] (base64 and quoted-printable);
/// None for an unknown encoding (RFC 3516: `NO [UNKNOWN-CTE]`).
pub fn decode_body(msg: &[u8], part: &Part) -> Option<Vec<u8>> {
    let f = mime::fields(part.header(msg));
    let enc = field_value(&f, "content-transfer-encoding").map(|v| String::from_utf8_lossy(&v).to_ascii_lowercase());
    let body = part.body(msg);
    match enc.as_deref() {
        None | Some("7bit") | Some("8bit") | Some("binary") => Some(body.to_vec()),
        Some("base64") => Some(base64_decode(body)),
        Some("quoted-printable") => Some(qp_decode(body)),
        _ => None,
    }
}

/// A leaf part's text for searching and Sieve's `body`: its transfer
/// encoding undone, Latin-1 (and windows-1252) read as such into UTF-8;
/// None for an unknown encoding.
pub fn decode_text(msg: &[u8], part: &Part) -> Option<Vec<u8>> {
    let dec = decode_body(msg, part)?;
    let latin = part.ctype.param("charset").is_some_and(|c| {
        c.eq_ignore_ascii_case("iso-8859-1") || c.eq_ignore_ascii_case("windows-1252") || c.eq_ignore_ascii_case("latin1")
    });
    Some(if latin {
        dec.iter().map(|&b| b as char).collect::<String>().into_bytes()
    } else {
        dec
    })
}

fn base64_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut n = 0;
    for &c in s {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => continue,
        };
        acc = (acc << 6) | v as u32;
        n += 1;
        if n == 4 {
            out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
            acc = 0;
            n = 0;
        }
    }
    match n {
        2 => out.push((acc >> 4) as u8),
        3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
        _ => {}
    }
    out
}

fn qp_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let hex = |c: u8| (c as char).to_digit(16);
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'=' {
            if s[i + 1..].starts_with(b"\r\n") {
                i += 3;
                continue;
            }
            if s[i + 1..].starts_with(b"\n") {
                i += 2;
                continue;
            }
            if i + 2 < s.len() {
                if let (Some(a), Some(b)) = (hex(s[i + 1]), hex(s[i + 2])) {
                    out.push((a * 16 + b) as u8);
                    i += 3;
                    continue;
                }
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message of the real Cyrus transcript (`ref/transcripts`),
    /// with the BODYSTRUCTURE Cyrus 3.6.1 returned for it.
    const PLAIN: &[u8] = b"Message-ID: <plain-2@peers.test>\r\nDate: Wed, 04 Mar 2026 08:00:00 +0000\r\nFrom: a@example.test\r\nTo: test1@example.test\r\nSubject: plain second\r\n\r\nplain body.\r\n";

    #[test]
    fn plain_message_as_cyrus() {
        let (env, bs, body) = cache_items(PLAIN);
        assert_eq!(
            env,
            "(\"Wed, 04 Mar 2026 08:00:00 +0000\" \"plain second\" ((NIL NIL \"a\" \"example.test\")) ((NIL NIL \"a\" \"example.test\")) ((NIL NIL \"a\" \"example.test\")) ((NIL NIL \"test1\" \"example.test\")) NIL NIL NIL \"<plain-2@peers.test>\")"
        );
        assert_eq!(
            bs,
            "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 13 1 NIL NIL NIL NIL)"
        );
        assert_eq!(body, "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 13 1)");
    }

    #[test]
    fn header_fields_in_message_order() {
        let h = b"From: x\r\nSubject: s\r\n continued\r\nTo: y\r\n\r\n";
        assert_eq!(
            header_fields(h, &["SUBJECT".into(), "FROM".into()], false),
            b"From: x\r\nSubject: s\r\n continued\r\n\r\n"
        );
        assert_eq!(header_fields(h, &["subject".into()], true), b"From: x\r\nTo: y\r\n\r\n");
    }

    #[test]
    fn strings_quoted_or_literal() {
        let mut o = Vec::new();
        string(&mut o, b"abc");
        string(&mut o, b"a\"b");
        assert_eq!(o, b"\"abc\"{3}\r\na\"b");
    }
}

#[cfg(test)]
mod cyrus_corpus {
    use super::*;

    /// multipart.eml as delivered in the real Cyrus transcript (CRLF), and
    /// the ENVELOPE and BODYSTRUCTURE Cyrus 3.6.1 answered.
    #[test]
    fn multipart_as_cyrus() {
        let raw = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/compat/messages/multipart.eml")).unwrap();
        // Cyrus's lmtpd added Return-Path and Received (3529 - 3243 bytes).
        assert_eq!(raw.len(), 3243, "the DATA of the transcript");
        let m = raw;
        let (env, bs, _) = cache_items(&m);
        assert_eq!(
            env,
            r#"("Tue, 03 Mar 2026 10:11:12 +0100" "=?UTF-8?B?bXVsdGlwYXJ0IHRlc3Qg4oCUIMOpdMOp?= multipart envelope" (("=?UTF-8?Q?Ren=C3=A9_S=C3=A9nder?=" NIL "sender" "peers.test")) (("Mail Robot" NIL "robot" "peers.test")) ((NIL NIL "replies" "peers.test")) (("Test One" NIL "test1" "example.test")("Doe, Jane" NIL "jane" "example.test")) ((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL)(NIL NIL "team" NIL)(NIL NIL "a" "example.test")(NIL NIL "b" "example.test")(NIL NIL NIL NIL)) NIL "<parent-0@peers.test>" "<multipart-1@peers.test>")"#
        );
        assert_eq!(
            bs,
            r#"((("TEXT" "PLAIN" ("CHARSET" "utf-8" "FORMAT" "flowed") NIL NIL "QUOTED-PRINTABLE" 131 3 NIL NIL NIL NIL)("TEXT" "HTML" ("CHARSET" "utf-8") NIL NIL "8BIT" 78 1 NIL NIL NIL NIL) "ALTERNATIVE" ("BOUNDARY" "inner-7") NIL NIL NIL)("APPLICATION" "PDF" ("NAME" "report 2026.pdf") "<att-1@peers.test>" "dummy attachment" "BASE64" 1466 NIL ("ATTACHMENT" ("FILENAME" "report 2026.pdf" "SIZE" "1069")) NIL NIL)("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 264 ("Mon, 02 Mar 2026 09:00:00 +0000" "forwarded inner message" ((NIL NIL "inner" "example.test")) ((NIL NIL "inner" "example.test")) ((NIL NIL "inner" "example.test")) ((NIL NIL "test1" "example.test")) NIL NIL NIL "<inner-msg@peers.test>") ("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 40 2 NIL NIL NIL NIL) 10 NIL NIL NIL NIL) "MIXED" ("BOUNDARY" "=-outer-boundary-42") NIL ("EN") NIL)"#
        );
        let p = mime::parse(&m);
        let hf = section(&m, &p, &[], &SectionText::HeaderFields(vec!["SUBJECT".into(), "FROM".into()])).unwrap();
        assert_eq!(hf.len(), 137);
        assert_eq!(section(&m, &p, &[3], &SectionText::Header).unwrap().len(), 224);
        assert_eq!(section(&m, &p, &[2], &SectionText::Mime).unwrap().len(), 235);
        assert_eq!(decode_body(&m, find_part(&p, &[2]).unwrap()).unwrap().len(), 1069);
        assert_eq!(
            &section(&m, &p, &[1, 1], &SectionText::Full).unwrap()[..80],
            &b"Hello =E2=80=94 this is the plain part with an =C3=A9 and a soft line=\r\n break. "[..]
        );
    }
}
