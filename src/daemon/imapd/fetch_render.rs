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
) -> Vec<u8> {
    use std::io::Write as _;
    let mut out = Vec::with_capacity(512);
    let _ = write!(out, "* {seq} FETCH (");
    let mut first = true;
    let mut sep = |out: &mut Vec<u8>| {
        if !first {
            out.push(b' ');
        }
        first = false;
    };
    // Cyrus's order: FLAGS, UID, INTERNALDATE, MODSEQ, RFC822.SIZE,
    // ENVELOPE, BODYSTRUCTURE, BODY, then the sections as requested.
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
    let parsed = data.map(mime::parse);
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
    if has(&FetchItem::SaveDate) {
        if let Some(r) = rec {
            sep(&mut out);
            out.extend_from_slice(format!("SAVEDATE \"{}\"", imap_date(r.savedate)).as_bytes());
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
                let bytes = match (data, &parsed) {
                    (Some(d), Some(p)) => render::section(d, p, path, section),
                    _ => None,
                };
                emit_partial(&mut out, &label, bytes.as_deref(), *partial, false);
            }
            FetchItem::Binary { path, partial, .. } => {
                sep(&mut out);
                let label = format!("BINARY[{}]", path.iter().map(|n| n.to_string()).collect::<Vec<_>>().join("."));
                let bytes = match (data, &parsed) {
                    (Some(d), Some(p)) => render::find_part(p, path).and_then(|part| {
                        if path.is_empty() {
                            Some(d.to_vec())
                        } else {
                            render::decode_body(d, part)
                        }
                    }),
                    _ => None,
                };
                emit_partial(&mut out, &label, bytes.as_deref(), *partial, true);
            }
            FetchItem::BinarySize(path) => {
                sep(&mut out);
                let n = match (data, &parsed) {
                    (Some(d), Some(p)) => render::find_part(p, path)
                        .and_then(|part| {
                            if path.is_empty() {
                                Some(d.to_vec())
                            } else {
                                render::decode_body(d, part)
                            }
                        })
                        .map_or(0, |b| b.len()),
                    _ => 0,
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
    two(out, d as u32, b' ');
    out.push(b'-');
    out.extend_from_slice(MONTHS[(mo as usize).clamp(1, 12) - 1].as_bytes());
    out.push(b'-');
    use std::io::Write as _;
    let _ = write!(out, "{y} ");
    two(out, hh as u32, b'0');
    out.push(b':');
    two(out, mm as u32, b'0');
    out.push(b':');
    two(out, ss as u32, b'0');
    let a = off.unsigned_abs();
    let _ = write!(out, " {}{:02}{:02}", if off < 0 { '-' } else { '+' }, a / 60, a % 60);
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
