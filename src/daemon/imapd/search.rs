//! SEARCH matching for the selected mailbox: the keys of RFC 3501/9051
//! over index records, and the header/body text search Cyrus does
//! (encoded words decoded, case and diacritics folded).

use crate::mail::mime;
use crate::proto::imap::command::{SearchKey, SeqSet};
use crate::proto::imap::render;
use crate::store::msgannot::MsgAnnot;
use crate::store::{Record, FLAG_SEEN};

/// What a search runs over: the session's view of the mailbox.
pub(super) struct HitQuery {
    pub(super) name: String,
    pub(super) partition: String,
    pub(super) uids: Vec<u32>,
    pub(super) recent_above: u32,
    pub(super) saved: Vec<u32>,
    pub(super) seen: Option<std::collections::BTreeSet<u32>>,
    /// Whose private annotations SEARCH ANNOTATION sees.
    pub(super) user: String,
}

impl HitQuery {
    /// The records (the reader's \Seen applied) and the indexes of those
    /// that match `key`.  Blocking.
    pub(super) fn hits(
        &self,
        store: &crate::store::Store,
        key: &SearchKey,
        needs_file: bool,
    ) -> Result<(Vec<Record>, Vec<usize>), crate::store::StoreError> {
        let mut recs = store.records_for(&self.name, &self.uids)?;
        if let Some(seen) = &self.seen {
            for r in recs.iter_mut() {
                r.flags = if seen.contains(&r.uid) {
                    r.flags | FLAG_SEEN
                } else {
                    r.flags & !FLAG_SEEN
                };
            }
        }
        let max_uid = self.uids.last().copied().unwrap_or(0);
        let n = self.uids.len() as u32;
        let now = crate::util::unix_now();
        let mut annots: std::collections::HashMap<u32, Vec<MsgAnnot>> = Default::default();
        if key_needs_annotations(key) {
            for a in store.msg_annotations(&self.name, &self.uids, Some(&self.user))? {
                annots.entry(a.uid).or_default().push(a);
            }
        }
        let mut hits = Vec::new();
        for (i, r) in recs.iter().enumerate() {
            let data = if needs_file {
                let p = store.message_path(&self.name, &self.partition, r.uid)?;
                crate::store::read_message(&p, r.size).ok()
            } else {
                None
            };
            let ctx = MatchCtx {
                seq: i as u32 + 1,
                n,
                max_uid,
                recent: r.uid > self.recent_above,
                saved: &self.saved,
                data: data.as_deref(),
                now,
                annots: annots.get(&r.uid).map(Vec::as_slice).unwrap_or_default(),
                user: &self.user,
            };
            if matches_key(key, r, &ctx) {
                hits.push(i);
            }
        }
        Ok((recs, hits))
    }
}

struct MatchCtx<'a> {
    seq: u32,
    n: u32,
    max_uid: u32,
    recent: bool,
    saved: &'a [u32],
    data: Option<&'a [u8]>,
    /// The time of the search (WITHIN's OLDER/YOUNGER).
    now: i64,
    /// The message's annotations the user may see (SEARCH ANNOTATION).
    annots: &'a [MsgAnnot],
    user: &'a str,
}

fn key_needs_annotations(k: &SearchKey) -> bool {
    match k {
        SearchKey::Annotation(..) => true,
        SearchKey::Not(a) => key_needs_annotations(a),
        SearchKey::Or(a, b) => key_needs_annotations(a) || key_needs_annotations(b),
        SearchKey::And(v) => v.iter().any(key_needs_annotations),
        _ => false,
    }
}

pub(super) fn key_needs_file(k: &SearchKey) -> bool {
    match k {
        SearchKey::Header(..)
        | SearchKey::Body(_)
        | SearchKey::Text(_)
        | SearchKey::SentBefore(_)
        | SearchKey::SentOn(_)
        | SearchKey::SentSince(_) => true,
        SearchKey::Not(a) => key_needs_file(a),
        SearchKey::Or(a, b) => key_needs_file(a) || key_needs_file(b),
        SearchKey::And(v) => v.iter().any(key_needs_file),
        _ => false,
    }
}

pub(super) fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() {
        return true;
    }
    if find_ascii_ci(hay, needle) {
        return true;
    }
    // Cyrus's search normalisation: case, diacritics and runs of blanks
    // do not matter.  Neither can change the answer for a needle of
    // visible ASCII in an ASCII text, the common case: skip the fold.
    if hay.is_ascii() && needle.iter().all(u8::is_ascii_graphic) {
        return false;
    }
    let h = fold(&String::from_utf8_lossy(hay));
    let n = fold(&String::from_utf8_lossy(needle));
    !n.is_empty() && h.contains(&n)
}

/// ASCII case-insensitive substring search, jumping between candidate
/// first bytes.
fn find_ascii_ci(hay: &[u8], needle: &[u8]) -> bool {
    let n = needle.len();
    if n == 0 || hay.len() < n {
        return n == 0;
    }
    let (lo, up) = (needle[0].to_ascii_lowercase(), needle[0].to_ascii_uppercase());
    let last = hay.len() - n;
    let mut i = 0;
    while i <= last {
        match hay[i..=last].iter().position(|&b| b == lo || b == up) {
            None => return false,
            Some(p) => {
                i += p;
                if hay[i..i + n].eq_ignore_ascii_case(needle) {
                    return true;
                }
                i += 1;
            }
        }
    }
    false
}

/// Lower case, Latin diacritics removed, blanks merged.
pub fn fold(s: &str) -> String {
    const MAP: &[(&str, &str)] = &[
        ("àáâãäåāăą", "a"),
        ("çćĉċč", "c"),
        ("ďđ", "d"),
        ("èéêëēĕėęě", "e"),
        ("ĝğġģ", "g"),
        ("ĥħ", "h"),
        ("ìíîïĩīĭįı", "i"),
        ("ĵ", "j"),
        ("ķ", "k"),
        ("ĺļľŀł", "l"),
        ("ñńņňŉ", "n"),
        ("òóôõöøōŏő", "o"),
        ("ŕŗř", "r"),
        ("śŝşš", "s"),
        ("ţťŧ", "t"),
        ("ùúûüũūŭůűų", "u"),
        ("ŵ", "w"),
        ("ýÿŷ", "y"),
        ("źżž", "z"),
        ("ß", "ss"),
        ("æ", "ae"),
        ("œ", "oe"),
    ];
    let mut out = String::with_capacity(s.len());
    let mut blank = false;
    for c in s.chars().flat_map(char::to_lowercase) {
        if c.is_ascii() && !c.is_ascii_whitespace() {
            out.push(c);
            blank = false;
            continue;
        }
        if c.is_whitespace() {
            if !blank {
                out.push(' ');
            }
            blank = true;
            continue;
        }
        blank = false;
        match MAP.iter().find(|(from, _)| from.contains(c)) {
            Some((_, to)) => out.push_str(to),
            None => out.push(c),
        }
    }
    out
}

/// A message's header block, read in pieces until the blank line (at most
/// `size` bytes and 1 MB).
pub(super) fn read_header(path: &std::path::Path, size: u64) -> Vec<u8> {
    use std::io::Read;
    let Ok(f) = std::fs::File::open(path) else { return Vec::new() };
    let mut data = Vec::new();
    let mut f = f.take(size.min(1 << 20));
    let mut chunk = [0u8; 8192];
    loop {
        match f.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                data.extend_from_slice(&chunk[..n]);
                let (he, _) = mime::header_end(&data);
                if he < data.len() {
                    data.truncate(he);
                    break;
                }
            }
        }
    }
    data
}

fn body_text_matches(data: &[u8], needle: &str) -> bool {
    let p = mime::parse(data);
    let mut stack = vec![&p];
    while let Some(part) = stack.pop() {
        for c in &part.children {
            stack.push(c);
        }
        if let Some(m) = &part.message {
            stack.push(m);
            if contains_ci(&crate::mail::mime::decode_words(m.header(data)), needle.as_bytes()) {
                return true;
            }
        }
        if part.children.is_empty() && part.message.is_none() {
            if let Some(text) = render::decode_text(data, part) {
                if contains_ci(&text, needle.as_bytes()) {
                    return true;
                }
            }
            if contains_ci(part.body(data), needle.as_bytes()) {
                return true;
            }
        }
    }
    false
}

/// The Date: header as seconds (midnight of its day, in its own zone).
fn sent_day(data: &[u8]) -> Option<i64> {
    let (he, _) = mime::header_end(data);
    let f = mime::fields(&data[..he]);
    let v = String::from_utf8_lossy(mime::field(&f, "date")?).into_owned();
    let v = v.split_once(',').map_or(v.as_str(), |(_, r)| r).trim().to_string();
    let p: Vec<&str> = v.split_whitespace().collect();
    let d: u32 = p.first()?.parse().ok()?;
    let mon = *p.get(1)?;
    let m = crate::util::codec::MONTHS.iter().position(|x| x.eq_ignore_ascii_case(mon))? as u32 + 1;
    let y: i64 = p.get(2)?.parse().ok()?;
    Some(crate::util::codec::from_civil(if y < 100 { y + 1900 } else { y }, m, d, 0, 0, 0))
}

fn day(t: i64) -> i64 {
    t.div_euclid(86400) * 86400
}

fn matches_key(k: &SearchKey, r: &Record, c: &MatchCtx) -> bool {
    use SearchKey as K;
    match k {
        K::All => true,
        K::Seq(s) => match s {
            SeqSet::Saved => c.saved.contains(&r.uid),
            _ => s.contains(c.seq, c.n),
        },
        K::Uid(s) => match s {
            SeqSet::Saved => c.saved.contains(&r.uid),
            _ => s.contains(r.uid, c.max_uid),
        },
        K::Flag(f, on) => (r.flags & f != 0) == *on,
        K::Keyword(kw, on) => r.has_keyword(kw) == *on,
        K::New => c.recent && r.flags & FLAG_SEEN == 0,
        K::Old => !c.recent,
        K::Recent(on) => c.recent == *on,
        K::Before(d) => day(r.internaldate) < *d,
        K::On(d) => day(r.internaldate) == *d,
        K::Since(d) => day(r.internaldate) >= *d,
        // Without a usable Date: header Cyrus uses the internal date.
        K::SentBefore(d) => c.data.and_then(sent_day).unwrap_or_else(|| day(r.internaldate)) < *d,
        K::SentOn(d) => c.data.and_then(sent_day).unwrap_or_else(|| day(r.internaldate)) == *d,
        K::SentSince(d) => c.data.and_then(sent_day).unwrap_or_else(|| day(r.internaldate)) >= *d,
        K::Larger(n) => r.size > *n,
        K::Smaller(n) => r.size < *n,
        K::Older(n) => r.internaldate <= c.now - *n as i64,
        K::Younger(n) => r.internaldate >= c.now - *n as i64,
        K::SavedBefore(d) => day(r.savedate) < *d,
        K::SavedOn(d) => day(r.savedate) == *d,
        K::SavedSince(d) => day(r.savedate) >= *d,
        K::SaveDateSupported => true,
        K::EmailId(id) => super::fetch_render::email_id(&r.guid) == *id,
        K::ThreadId(_) => false,
        K::ModSeq(m) => r.modseq >= *m,
        K::Annotation(entry, attrib, v) => super::annotate::matches(entry, attrib, v, c.annots, c.user),
        K::Header(name, v) => {
            let Some(data) = c.data else { return false };
            let (he, _) = mime::header_end(data);
            mime::fields(&data[..he])
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .any(|(_, val)| contains_ci(val, v.as_bytes()) || contains_ci(&crate::mail::mime::decode_words(val), v.as_bytes()))
        }
        K::Body(v) => c.data.is_some_and(|d| body_text_matches(d, v)),
        K::Text(v) => c.data.is_some_and(|d| {
            let (he, _) = mime::header_end(d);
            contains_ci(&d[..he], v.as_bytes())
                || contains_ci(&crate::mail::mime::decode_words(&d[..he]), v.as_bytes())
                || body_text_matches(d, v)
        }),
        K::Not(a) => !matches_key(a, r, c),
        K::Or(a, b) => matches_key(a, r, c) || matches_key(b, r, c),
        K::And(v) => v.iter().all(|x| matches_key(x, r, c)),
    }
}

#[cfg(test)]
mod tests {
    use super::contains_ci;

    #[test]
    fn search_normalisation() {
        assert!(contains_ci(b"Say HeLLo there", b"hello"));
        assert!(!contains_ci(b"Say Hello there", b"help"));
        assert!(contains_ci("Un café noir".as_bytes(), b"CAFE"));
        assert!(contains_ci("Un cafe noir".as_bytes(), "café".as_bytes()));
        assert!(contains_ci(b"two\r\n\t words", b"two words"));
        assert!(contains_ci(b"x", b""));
        assert!(!contains_ci(b"", b"x"));
        assert!(contains_ci(b"aaab", b"aab"));
    }
}
