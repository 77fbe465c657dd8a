//! FETCH responses as Cyrus renders them: item order, cached ENVELOPE /
//! BODYSTRUCTURE / BODY, sections with partials, BINARY.

use super::selected::{push_flags, Msg};
use crate::mail::mime;
use crate::proto::imap::command::{FetchItem, Section};
use crate::proto::imap::render;
use crate::store::Record;

#[allow(clippy::too_many_arguments)]
pub(super) fn render_fetch(
    seq: usize,
    m: &Msg,
    rec: Option<&Record>,
    cache: Option<&crate::store::Cached>,
    data: Option<&[u8]>,
    items: &[FetchItem],
    recent: bool,
    seen_changed: bool,
    annotation: Option<&[u8]>,
) -> Vec<u8> {
    use std::io::Write as _;
    // Room for the message too when it is sent whole (BODY[], mbsync's).
    let mut out = Vec::with_capacity(512 + data.map_or(0, <[u8]>::len));
    let _ = write!(out, "* {seq} FETCH (");
    let mut first = true;
    let mut sep = |out: &mut Vec<u8>| {
        if !first {
            out.push(b' ');
        }
        first = false;
    };
    // Cyrus's order: FLAGS, UID, DIGEST.SHA1, INTERNALDATE, MODSEQ,
    // RFC822.SIZE, ANNOTATION, PREVIEW, EMAILID, THREADID, SAVEDATE,
    // CREATEDMODSEQ, ENVELOPE,
    // BODYSTRUCTURE, BODY, then the sections as requested.
    let has = |f: &FetchItem| items.contains(f);
    let implicit_flags = seen_changed
        && items.iter().any(|i| {
            matches!(
                i,
                FetchItem::Rfc822
                    | FetchItem::Rfc822Text
                    | FetchItem::BodySection { peek: false, .. }
                    | FetchItem::Binary { peek: false, .. }
            )
        });
    if has(&FetchItem::Flags) || implicit_flags {
        sep(&mut out);
        out.extend_from_slice(b"FLAGS ");
        push_flags(&mut out, m.flags, &m.keywords, recent);
    }
    if has(&FetchItem::Uid) {
        sep(&mut out);
        let _ = write!(out, "UID {}", m.uid);
    }
    if has(&FetchItem::DigestSha1) {
        if let Some(r) = rec {
            sep(&mut out);
            out.extend_from_slice(b"DIGEST.SHA1 ");
            for b in &r.guid {
                let _ = write!(out, "{b:02x}");
            }
        }
    }
    if has(&FetchItem::InternalDate) {
        if let Some(r) = rec {
            sep(&mut out);
            out.extend_from_slice(b"INTERNALDATE \"");
            push_imap_date(&mut out, r.internaldate);
            out.push(b'"');
        }
    }
    if has(&FetchItem::ModSeq) {
        sep(&mut out);
        let _ = write!(out, "MODSEQ ({})", m.modseq);
    }
    if has(&FetchItem::Rfc822Size) {
        if let Some(r) = rec {
            sep(&mut out);
            let _ = write!(out, "RFC822.SIZE {}", r.size);
        }
    }
    if let Some(a) = annotation {
        sep(&mut out);
        out.extend_from_slice(a);
    }
    if has(&FetchItem::Preview) {
        if let Some(d) = data {
            sep(&mut out);
            out.extend_from_slice(b"PREVIEW ");
            match preview(d) {
                Some(t) => render::string(&mut out, t.as_bytes()),
                None => out.extend_from_slice(b"NIL"),
            }
        }
    }
    if has(&FetchItem::EmailId) {
        if let Some(r) = rec {
            sep(&mut out);
            out.extend_from_slice(format!("EMAILID ({})", email_id(&r.guid)).as_bytes());
        }
    }
    if has(&FetchItem::ThreadId) {
        sep(&mut out);
        out.extend_from_slice(b"THREADID (NIL)");
    }
    if has(&FetchItem::SaveDate) {
        if let Some(r) = rec {
            sep(&mut out);
            out.extend_from_slice(format!("SAVEDATE \"{}\"", imap_date(r.savedate)).as_bytes());
        }
    }
    if has(&FetchItem::CreatedModSeq) {
        if let Some(r) = rec {
            sep(&mut out);
            let _ = write!(out, "CREATEDMODSEQ ({})", r.createdmodseq);
        }
    }
    // The MIME structure is parsed only for a section that needs it (not
    // for the whole message, BODY[] or BINARY[]).
    let parsed = std::cell::OnceCell::new();
    let parse = |d: &[u8]| -> &mime::Part { parsed.get_or_init(|| mime::parse(d)) };
    for (item, label, idx) in [
        (FetchItem::Envelope, "ENVELOPE", 0),
        (FetchItem::BodyStructure, "BODYSTRUCTURE", 1),
        (FetchItem::Body, "BODY", 2),
    ] {
        if !has(&item) {
            continue;
        }
        let text = match cache.map(|c| match idx {
            0 => &c.envelope,
            1 => &c.bodystructure,
            _ => &c.body,
        }) {
            Some(t) if !t.is_empty() => render::unlatin1(t),
            _ => continue,
        };
        sep(&mut out);
        out.extend_from_slice(label.as_bytes());
        out.push(b' ');
        out.extend_from_slice(&text);
    }
    // RFC822.HEADER, RFC822.TEXT and RFC822 come before the sections.
    let rfc822: Vec<&FetchItem> = [FetchItem::Rfc822Header, FetchItem::Rfc822Text, FetchItem::Rfc822]
        .iter()
        .filter(|i| items.contains(i))
        .collect();
    let sections = items
        .iter()
        .filter(|i| !matches!(i, FetchItem::Rfc822Header | FetchItem::Rfc822Text | FetchItem::Rfc822));
    for item in rfc822.into_iter().chain(sections) {
        match item {
            FetchItem::Rfc822Header | FetchItem::Rfc822Text | FetchItem::Rfc822 => {
                let Some(d) = data else { continue };
                let (he, bs) = mime::header_end(d);
                let (label, bytes) = match item {
                    FetchItem::Rfc822Header => ("RFC822.HEADER", &d[..he]),
                    FetchItem::Rfc822Text => ("RFC822.TEXT", &d[bs..]),
                    _ => ("RFC822", d),
                };
                sep(&mut out);
                out.extend_from_slice(format!("{label} {{{}}}\r\n", bytes.len()).as_bytes());
                out.extend_from_slice(bytes);
            }
            FetchItem::BodySection {
                path, section, partial, ..
            } => {
                sep(&mut out);
                let mut label = String::from("BODY[");
                label.push_str(&path.iter().map(|n| n.to_string()).collect::<Vec<_>>().join("."));
                let sname = match section {
                    Section::Full => String::new(),
                    Section::Header => "HEADER".into(),
                    Section::Text => "TEXT".into(),
                    Section::Mime => "MIME".into(),
                    Section::HeaderFields(v) => format!("HEADER.FIELDS ({})", v.join(" ")),
                    Section::HeaderFieldsNot(v) => format!("HEADER.FIELDS.NOT ({})", v.join(" ")),
                };
                if !sname.is_empty() {
                    if !path.is_empty() {
                        label.push('.');
                    }
                    label.push_str(&sname);
                }
                label.push(']');
                let owned;
                let bytes = match data {
                    Some(d) if path.is_empty() && matches!(section, Section::Full) => Some(d),
                    Some(d) => {
                        owned = render::section(d, parse(d), path, section);
                        owned.as_deref()
                    }
                    None => None,
                };
                emit_partial(&mut out, &label, bytes, *partial, false);
            }
            FetchItem::Binary { path, partial, .. } => {
                sep(&mut out);
                let label = format!("BINARY[{}]", path.iter().map(|n| n.to_string()).collect::<Vec<_>>().join("."));
                let owned;
                let bytes = match data {
                    Some(d) if path.is_empty() => Some(d),
                    Some(d) => {
                        owned = render::find_part(parse(d), path).and_then(|part| render::decode_body(d, part));
                        owned.as_deref()
                    }
                    None => None,
                };
                emit_partial(&mut out, &label, bytes, *partial, true);
            }
            FetchItem::BinarySize(path) => {
                sep(&mut out);
                let n = match data {
                    Some(d) if path.is_empty() => d.len(),
                    Some(d) => render::find_part(parse(d), path)
                        .and_then(|part| render::decode_body(d, part))
                        .map_or(0, |b| b.len()),
                    None => 0,
                };
                out.extend_from_slice(
                    format!(
                        "BINARY.SIZE[{}] {n}",
                        path.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(".")
                    )
                    .as_bytes(),
                );
            }
            _ => {}
        }
    }
    out.extend_from_slice(b")\r\n");
    out
}

fn emit_partial(out: &mut Vec<u8>, label: &str, bytes: Option<&[u8]>, partial: Option<(u32, u32)>, binary: bool) {
    out.extend_from_slice(label.as_bytes());
    let Some(b) = bytes else {
        if let Some((o, _)) = partial {
            out.extend_from_slice(format!("<{o}>").as_bytes());
        }
        out.extend_from_slice(b" NIL");
        return;
    };
    let slice = match partial {
        Some((o, l)) => {
            out.extend_from_slice(format!("<{o}>").as_bytes());
            let s = (o as usize).min(b.len());
            let e = s.saturating_add(l as usize).min(b.len());
            &b[s..e]
        }
        None => b,
    };
    if slice.is_empty() {
        out.extend_from_slice(b" \"\"");
        return;
    }
    let tilde = if binary && slice.contains(&0) { "~" } else { "" };
    out.extend_from_slice(format!(" {tilde}{{{}}}\r\n", slice.len()).as_bytes());
    out.extend_from_slice(slice);
}

/// INTERNALDATE as Cyrus writes it (server zone; ours is UTC):
/// `28-Nov-2026 18:18:14 +0000`, day padded with a space.
/// The INTERNALDATE text, day padded with a space, without allocating.
pub(super) fn push_imap_date(out: &mut Vec<u8>, t: i64) {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    // Cyrus prints dates in the server's time zone.
    let off = crate::util::codec::local_offset_min(t);
    let (y, mo, d, hh, mm, ss, _) = crate::util::codec::civil(t + off as i64 * 60);
    let two = |out: &mut Vec<u8>, v: u32, pad: u8| {
        out.push(if v >= 10 { b'0' + (v / 10 % 10) as u8 } else { pad });
        out.push(b'0' + (v % 10) as u8);
    };
    two(out, d, b' ');
    out.push(b'-');
    out.extend_from_slice(MONTHS[(mo as usize).clamp(1, 12) - 1].as_bytes());
    out.push(b'-');
    use std::io::Write as _;
    let _ = write!(out, "{y} ");
    two(out, hh, b'0');
    out.push(b':');
    two(out, mm, b'0');
    out.push(b':');
    two(out, ss, b'0');
    let a = off.unsigned_abs();
    let _ = write!(out, " {}{:02}{:02}", if off < 0 { '-' } else { '+' }, a / 60, a % 60);
}

/// The message files of a FETCH chunk's rows (None for one that cannot be
/// read), and whether any was cold (read_messages).
pub(super) fn message_files(
    store: &crate::store::Store,
    name: &str,
    partition: &str,
    rows: &[(Record, Option<crate::store::Cached>)],
) -> (Vec<Option<Vec<u8>>>, bool) {
    let files: Vec<(std::path::PathBuf, u64)> = rows
        .iter()
        .map(|r| (store.message_path(name, partition, r.0.uid).unwrap_or_default(), r.0.size))
        .collect();
    crate::store::read_messages(&files)
}

#[cfg(test)]
#[test]
fn push_imap_date_matches_imap_date() {
    for t in [0i64, 1_795_889_894, 1_772_529_072, 951_782_400, 4_102_444_799] {
        let mut v = Vec::new();
        push_imap_date(&mut v, t);
        assert_eq!(String::from_utf8(v).unwrap(), imap_date(t));
    }
}

pub(super) fn imap_date(t: i64) -> String {
    let s = crate::util::codec::imap_date(t, crate::util::codec::local_offset_min(t));
    match s.strip_prefix('0') {
        Some(r) => format!(" {r}"),
        None => s,
    }
}

/// A message's OBJECTID (RFC 8474) as Cyrus forms it: `M` and the first
/// 12 bytes of its GUID in hex.
pub(super) fn email_id(guid: &[u8]) -> String {
    let g: String = guid.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("M{g}")
}

/// The longest PREVIEW (RFC 8970: at most 256 characters).
const PREVIEW_CHARS: usize = 256;

/// PREVIEW text (RFC 8970): the first text/plain part (else the first
/// text/html one, its markup removed) decoded to UTF-8, runs of white
/// space made one space, at most PREVIEW_CHARS characters; None when the
/// message has no text part.
pub(super) fn preview(data: &[u8]) -> Option<String> {
    let p = mime::parse(data);
    let mut leaves = Vec::new();
    let mut stack = vec![&p];
    while let Some(part) = stack.pop() {
        if let Some(m) = &part.message {
            stack.push(m);
        } else if part.children.is_empty() {
            leaves.push(part);
        }
        for c in part.children.iter().rev() {
            stack.push(c);
        }
    }
    // No Content-Type: text/plain (message/rfc822 in a digest).
    let is = |part: &&mime::Part, sub: &str| {
        (part.ctype.ty.is_empty() && !part.default_digest && sub == "plain") || (part.ctype.ty == "text" && part.ctype.subtype == sub)
    };
    let (part, html) = match leaves.iter().find(|l| is(l, "plain")) {
        Some(l) => (*l, false),
        None => (*leaves.iter().find(|l| is(l, "html"))?, true),
    };
    let raw = render::decode_body(data, part).unwrap_or_else(|| part.body(data).to_vec());
    let latin = part.ctype.param("charset").is_some_and(|c| {
        c.eq_ignore_ascii_case("iso-8859-1") || c.eq_ignore_ascii_case("windows-1252") || c.eq_ignore_ascii_case("latin1")
    });
    let mut text: String = if latin {
        raw.iter().map(|&b| b as char).collect()
    } else {
        String::from_utf8_lossy(&raw).into_owned()
    };
    if html {
        text = strip_markup(&text);
    }
    let mut out = String::new();
    let mut n = 0;
    for w in text.split_whitespace() {
        for ch in (!out.is_empty()).then_some(' ').into_iter().chain(w.chars()) {
            if n == PREVIEW_CHARS {
                return Some(out);
            }
            out.push(ch);
            n += 1;
        }
    }
    Some(out)
}

/// HTML's text: tags, comments, and style and script elements dropped,
/// the common entities decoded.
fn strip_markup(html: &str) -> String {
    let mut out = String::new();
    let lower = html.to_ascii_lowercase();
    let mut i = 0;
    while i < html.len() {
        let rest = &lower[i..];
        if rest.starts_with("<!--") {
            i += rest.find("-->").map_or(rest.len(), |e| e + 3);
        } else if rest.starts_with("<style") || rest.starts_with("<script") {
            let close = if rest.starts_with("<style") { "</style" } else { "</script" };
            i += rest.find(close).map_or(rest.len(), |e| e + close.len());
            i += lower[i..].find('>').map_or(lower.len() - i, |e| e + 1);
        } else if rest.starts_with('<') {
            i += rest.find('>').map_or(rest.len(), |e| e + 1);
            out.push(' ');
        } else if let Some(after) = rest.strip_prefix('&') {
            let ent = after.find(';').filter(|e| *e <= 8).map(|e| &after[..e]);
            let ch = match ent {
                Some("amp") => Some('&'),
                Some("lt") => Some('<'),
                Some("gt") => Some('>'),
                Some("quot") => Some('"'),
                Some("apos") => Some('\''),
                Some("nbsp") => Some(' '),
                Some(e) if e.starts_with('#') => {
                    let num = e[1..]
                        .strip_prefix('x')
                        .map_or_else(|| e[1..].parse().ok(), |h| u32::from_str_radix(h, 16).ok());
                    num.and_then(char::from_u32)
                }
                _ => None,
            };
            match (ch, ent) {
                (Some(c), Some(e)) => {
                    out.push(c);
                    i += e.len() + 2;
                }
                _ => {
                    out.push('&');
                    i += 1;
                }
            }
        } else {
            let ch = html[i..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::preview;

    #[test]
    fn preview_text() {
        // The first text/plain part, white space collapsed.
        let m = b"Subject: x\r\n\r\n  Hello,\r\n\r\n  see   you\ttomorrow.\r\n";
        assert_eq!(preview(m).as_deref(), Some("Hello, see you tomorrow."));
        // Quoted-printable Latin-1, decoded to UTF-8.
        let m =
            b"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nGr=FC=DFe aus K=F6ln\r\n";
        assert_eq!(preview(m).as_deref(), Some("Grüße aus Köln"));
        // HTML only: markup, comments, style and entities.
        let m = b"Content-Type: text/html\r\n\r\n<html><head><style>p{color:red}</style></head><body><!-- c --><p>Fish &amp; chips</p><p>&#8364;5&nbsp;only</p></body></html>\r\n";
        assert_eq!(preview(m).as_deref(), Some("Fish & chips \u{20ac}5 only"));
        // multipart/alternative: the plain part wins, wherever it is.
        let m = b"Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/html\r\n\r\n<b>bold</b>\r\n--b\r\nContent-Type: text/plain\r\n\r\nplain one\r\n--b--\r\n";
        assert_eq!(preview(m).as_deref(), Some("plain one"));
        // No text at all: NIL; at most 256 characters, whole characters.
        let m = b"Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n";
        assert_eq!(preview(m), None);
        let long = format!("Subject: x\r\n\r\n{}\r\n", "\u{e9}".repeat(400));
        let p = preview(long.as_bytes()).unwrap();
        assert_eq!(p.chars().count(), 256);
        assert!(p.chars().all(|c| c == '\u{e9}'));
    }
}
