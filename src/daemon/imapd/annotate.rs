//! ANNOTATE-EXPERIMENT-1 (RFC 5257) for the selected mailbox: the message
//! entries Cyrus 3.6 defines, who may store what, the FETCH ANNOTATION
//! answer in Cyrus's order, SEARCH and SORT values, and the STORE ...
//! ANNOTATION command.
//!
//! Cyrus's answer order (checked against the real server): each requested
//! pattern adds the defined entries it matches (most recent first) and,
//! unless it names one exactly, a lookup of the pattern itself; each
//! lookup lists the stored values it matches, then NILs for the requested
//! attributes it found no value for (only for a name without wildcards);
//! a value already listed is not listed again, and values of one entry
//! in a row form one group.

use super::Res;
use crate::proto::imap::command::SeqSet;
use crate::store::msgannot::{AnnotWrite, MsgAnnot};

const VALUE_SHARED: u8 = 1;
const VALUE_PRIV: u8 = 2;
const SIZE_SHARED: u8 = 4;
const SIZE_PRIV: u8 = 8;
const SHARED: u8 = VALUE_SHARED | SIZE_SHARED;
const PRIV: u8 = VALUE_PRIV | SIZE_PRIV;

/// The attribute names and what each asks for.
const ATTRIBUTES: [(&str, u8); 6] = [
    ("value", VALUE_SHARED | VALUE_PRIV),
    ("value.shared", VALUE_SHARED),
    ("value.priv", VALUE_PRIV),
    ("size", SIZE_SHARED | SIZE_PRIV),
    ("size.shared", SIZE_SHARED),
    ("size.priv", SIZE_PRIV),
];

/// Cyrus 3.6's message entries in its table order: name, whether it may
/// be stored, whether only `.shared` exists.
const ENTRIES: [(&str, bool, bool); 8] = [
    ("/altsubject", true, false),
    ("/comment", true, false),
    ("/vendor/cmu/cyrus-imapd/basethrid", true, false),
    ("/vendor/cmu/cyrus-imapd/thrid", true, false),
    ("/vendor/cmu/cyrus-imapd/savedate", true, false),
    ("/vendor/cmu/cyrus-imapd/createdmodseq", true, false),
    ("/vendor/cmu/cyrus-imapd/snoozed-until", false, true),
    ("/vendor/cmu/cyrus-imapd/snoozed", true, true),
];

/// The largest value SELECT announces (`[ANNOTATIONS 65536]`, as Cyrus).
pub const MAX_SIZE: usize = 65536;
/// The largest value taken (Cyrus takes more than it announces; a
/// bound keeps one message's annotations from growing without end).
pub const MAX_STORE: usize = 1 << 20;

/// `*` matches anything, `%` anything but `sep` (Cyrus's glob).
pub fn glob(pattern: &[u8], name: &[u8], sep: u8) -> bool {
    // ok[j]: pattern[..i] matches name[..j].
    let mut ok = vec![false; name.len() + 1];
    ok[0] = true;
    for &p in pattern {
        let mut next = vec![false; name.len() + 1];
        match p {
            b'*' | b'%' => {
                for j in 0..=name.len() {
                    next[j] = ok[j] || (j > 0 && next[j - 1] && (p == b'*' || name[j - 1] != sep));
                }
            }
            _ => {
                for j in 1..=name.len() {
                    next[j] = ok[j - 1] && name[j - 1] == p;
                }
            }
        }
        ok = next;
    }
    ok[name.len()]
}

fn wild(s: &str) -> bool {
    s.contains(['*', '%'])
}

/// One entry's (attribute, value) pairs; an empty value is NIL.
pub type Group = (String, Vec<(&'static str, Vec<u8>)>);

struct Fetch<'a> {
    bits: u8,
    user: &'a str,
    found: u8,
    seen: std::collections::HashSet<(String, String)>,
    cur: Option<Group>,
    out: Vec<Group>,
}

impl Fetch<'_> {
    fn flush(&mut self) {
        if let Some(g) = self.cur.take() {
            if !g.1.is_empty() {
                self.out.push(g);
            }
        }
    }

    fn output(&mut self, entry: &str, userid: &str, value: &[u8]) {
        if self.cur.as_ref().is_none_or(|g| g.0 != entry) {
            self.flush();
            self.cur = Some((entry.to_string(), Vec::new()));
        }
        if !self.seen.insert((entry.to_string(), userid.to_string())) {
            return;
        }
        let (vbit, sbit, vname, sname) = if userid.is_empty() {
            (VALUE_SHARED, SIZE_SHARED, "value.shared", "size.shared")
        } else {
            (VALUE_PRIV, SIZE_PRIV, "value.priv", "size.priv")
        };
        let Some(g) = self.cur.as_mut() else { return };
        if self.bits & vbit != 0 {
            g.1.push((vname, value.to_vec()));
            self.found |= vbit;
        }
        if self.bits & sbit != 0 {
            g.1.push((sname, value.len().to_string().into_bytes()));
            self.found |= sbit;
        }
    }

    fn lookup(&mut self, name: &str, stored: &[MsgAnnot]) {
        self.found = 0;
        for a in stored {
            if (a.userid.is_empty() || a.userid == self.user) && glob(name.as_bytes(), a.entry.as_bytes(), b'/') {
                self.output(&a.entry, &a.userid, &a.value);
            }
        }
        if self.found != self.bits && !wild(name) {
            if self.found & PRIV == 0 && self.bits & PRIV != 0 {
                let user = self.user;
                self.output(name, user, b"");
            }
            if self.found & SHARED == 0 && self.bits & SHARED != 0 {
                self.output(name, "", b"");
            }
            self.flush();
        }
    }
}

/// FETCH ANNOTATION of one message: `stored` is its annotations that
/// `user` may see, in byte order of (entry, userid).
pub fn fetch(entries: &[String], attribs: &[String], stored: &[MsgAnnot], user: &str) -> Vec<Group> {
    let mut bits = 0;
    for a in attribs {
        for (name, b) in ATTRIBUTES {
            if glob(a.as_bytes(), name.as_bytes(), b'.') {
                bits |= b;
            }
        }
    }
    if bits == 0 {
        return Vec::new();
    }
    // The lookups, most recently added first.
    let mut list: Vec<String> = Vec::new();
    for s in entries {
        let mut exact = false;
        for (name, _, _) in ENTRIES {
            if glob(s.as_bytes(), name.as_bytes(), b'/') {
                list.insert(0, name.to_string());
            }
            if s == name {
                exact = true;
                break;
            }
        }
        if !exact {
            list.insert(0, s.clone());
        }
    }
    let mut f = Fetch {
        bits,
        user,
        found: 0,
        seen: Default::default(),
        cur: None,
        out: Vec::new(),
    };
    for name in &list {
        f.lookup(name, stored);
    }
    f.flush();
    f.out
}

/// `ANNOTATION (entry (attr value ...) ...)` as Cyrus writes it.
pub fn render(out: &mut Vec<u8>, groups: &[Group]) {
    out.extend_from_slice(b"ANNOTATION (");
    for (i, (entry, values)) in groups.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        astring(out, entry.as_bytes());
        out.extend_from_slice(b" (");
        for (j, (attr, v)) in values.iter().enumerate() {
            if j > 0 {
                out.push(b' ');
            }
            out.extend_from_slice(attr.as_bytes());
            out.push(b' ');
            if v.is_empty() {
                out.extend_from_slice(b"NIL");
            } else {
                crate::proto::imap::render::string(out, v);
            }
        }
        out.push(b')');
    }
    out.push(b')');
}

/// Cyrus's `prot_printastring`: an atom when it can be one.
fn astring(out: &mut Vec<u8>, s: &[u8]) {
    let atom = !s.is_empty() && !s.eq_ignore_ascii_case(b"NIL") && s.iter().all(|&c| c > b' ' && c < 0x7f && !b"(){%*\"\\]".contains(&c));
    if atom {
        out.extend_from_slice(s);
    } else {
        crate::proto::imap::render::string(out, s);
    }
}

/// Why a STORE ANNOTATION is refused.
#[derive(Debug, PartialEq)]
pub enum Refused {
    /// Unknown entry or attribute, or a right missing: Cyrus's
    /// "Permission denied" for all of them.
    Permission,
    TooBig,
}

/// The writes a STORE ANNOTATION (or APPEND's) asks for, checked:
/// `.priv` values need `r`, `.shared` ones `n` (RFC 5257 3.3).
pub fn writes(set: &crate::proto::imap::command::AnnotationSet, user: &str, rights: &str) -> Result<Vec<AnnotWrite>, Refused> {
    let mut out = Vec::new();
    for (entry, values) in set {
        let Some(&(_, settable, shared_only)) = ENTRIES.iter().find(|(n, _, _)| n == entry) else {
            return Err(Refused::Permission);
        };
        if !settable {
            return Err(Refused::Permission);
        }
        for (attrib, value) in values {
            let (userid, right) = match attrib.as_str() {
                "value.shared" => ("", 'n'),
                "value.priv" if !shared_only => (user, 'r'),
                _ => return Err(Refused::Permission),
            };
            if !rights.contains(right) {
                return Err(Refused::Permission);
            }
            let v = value.clone().unwrap_or_default();
            if v.len() > MAX_STORE {
                return Err(Refused::TooBig);
            }
            out.push((entry.clone(), userid.to_string(), v));
        }
    }
    Ok(out)
}

/// SEARCH ANNOTATION entry attrib value: whether a value the fetch would
/// return contains `needle` (case-sensitive, as Cyrus); an empty needle
/// matches only an empty (absent) value.
pub fn matches(entry: &str, attrib: &str, needle: &[u8], stored: &[MsgAnnot], user: &str) -> bool {
    let groups = fetch(&[entry.to_string()], &[attrib.to_string()], stored, user);
    groups.iter().flat_map(|g| g.1.iter()).any(|(_, v)| {
        if needle.is_empty() || v.is_empty() {
            needle.is_empty() && v.is_empty()
        } else {
            v.windows(needle.len()).any(|w| w == needle)
        }
    })
}

/// SORT's ANNOTATION entry attrib key: the value (empty when none).
pub fn sort_value(entry: &str, attrib: &str, stored: &[MsgAnnot], user: &str) -> Vec<u8> {
    let userid = if attrib.eq_ignore_ascii_case("value.priv") { user } else { "" };
    stored
        .iter()
        .find(|a| a.entry == entry && a.userid == userid)
        .map(|a| a.value.clone())
        .unwrap_or_default()
}

impl super::Session {
    /// STORE ... ANNOTATION (RFC 5257): every write checked first (an
    /// unknown entry or attribute, or a missing right, refuses the whole
    /// command, as Cyrus), then applied to each message in one
    /// transaction; each changed message gets a new MODSEQ and a FETCH.
    pub async fn store_annotation(
        &mut self,
        tag: &str,
        uid: bool,
        set: SeqSet,
        annotations: crate::proto::imap::command::AnnotationSet,
        unchangedsince: Option<u64>,
    ) -> Res {
        let Some(sel) = &self.sel else { return Ok(()) };
        if sel.readonly {
            return self.tagged(tag, "NO Mailbox is read-only").await;
        }
        let name = sel.name.clone();
        let rights = self
            .ctx
            .store
            .lookup(&name)
            .ok()
            .flatten()
            .map(|e| self.rights(&e))
            .unwrap_or_default();
        let user = self.user.clone().unwrap_or_default();
        let writes = match writes(&annotations, &user, &rights) {
            Ok(w) => w,
            Err(Refused::Permission) => return self.tagged(tag, "NO Permission denied").await,
            Err(Refused::TooBig) => return self.tagged(tag, "NO [ANNOTATE TOOBIG] Annotation value too large").await,
        };
        if unchangedsince.is_some() {
            self.condstore = true;
            if let Some(s) = &mut self.sel {
                s.condstore = true;
            }
        }
        let uids: Vec<u32> = self
            .resolve(&set, uid)
            .iter()
            .filter_map(|&i| self.sel.as_ref().map(|s| s.msgs[i].uid))
            .collect();
        let (changed, failed) = match self
            .blocking(move |s| s.store_msg_annotations(&name, &uids, &writes, unchangedsince))
            .await
        {
            Ok(v) => v,
            Err(t) => return self.tagged(tag, &t).await,
        };
        if let Some(sel) = &mut self.sel {
            for r in &changed {
                if let Ok(i) = sel.msgs.binary_search_by_key(&r.uid, |m| m.uid) {
                    sel.msgs[i].modseq = r.modseq;
                }
            }
        }
        let touched: Vec<u32> = changed.iter().map(|r| r.uid).collect();
        for l in self.changed_lines(uid, &touched, &changed) {
            self.out(&l).await?;
        }
        self.store_done(tag, uid, &failed).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(entry: &str, userid: &str, value: &str) -> MsgAnnot {
        MsgAnnot {
            uid: 1,
            entry: entry.into(),
            userid: userid.into(),
            value: value.as_bytes().to_vec(),
        }
    }

    fn show(entries: &[&str], attribs: &[&str], stored: &[MsgAnnot]) -> String {
        let e: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
        let at: Vec<String> = attribs.iter().map(|s| s.to_string()).collect();
        let mut out = Vec::new();
        render(&mut out, &fetch(&e, &at, stored, "u7"));
        String::from_utf8(out).unwrap()
    }

    /// The answers of the real Cyrus 3.6 (recorded from
    /// `tests/store_vs_cyrus.rs`'s session).
    #[test]
    fn cyrus_order() {
        let both = [a("/comment", "", "shared c"), a("/comment", "u7", "p2")];
        assert_eq!(
            show(&["/comment"], &["value"], &both),
            r#"ANNOTATION (/comment (value.shared "shared c" value.priv "p2"))"#
        );
        let one = [a("/comment", "u7", "my comment")];
        assert_eq!(
            show(&["/comment"], &["value.priv", "value.shared", "size.priv", "size.shared"], &one),
            r#"ANNOTATION (/comment (value.priv "my comment" size.priv "10" value.shared NIL size.shared "0"))"#
        );
        let three = [a("/altsubject", "", "Alt three"), a("/comment", "", "c3")];
        assert_eq!(
            show(&["/comment", "/altsubject"], &["value.shared"], &[]),
            "ANNOTATION (/altsubject (value.shared NIL) /comment (value.shared NIL))"
        );
        assert_eq!(
            show(&["/*"], &["value"], &three),
            "ANNOTATION (/altsubject (value.shared \"Alt three\") /comment (value.shared \"c3\") \
             /vendor/cmu/cyrus-imapd/snoozed (value.priv NIL value.shared NIL) /vendor/cmu/cyrus-imapd/snoozed-until (value.priv NIL value.shared NIL) \
             /vendor/cmu/cyrus-imapd/createdmodseq (value.priv NIL value.shared NIL) /vendor/cmu/cyrus-imapd/savedate (value.priv NIL value.shared NIL) \
             /vendor/cmu/cyrus-imapd/thrid (value.priv NIL value.shared NIL) /vendor/cmu/cyrus-imapd/basethrid (value.priv NIL value.shared NIL) \
             /comment (value.priv NIL) /altsubject (value.priv NIL))"
        );
        assert_eq!(
            show(&["/%"], &["value.shared"], &three),
            r#"ANNOTATION (/altsubject (value.shared "Alt three") /comment (value.shared "c3"))"#
        );
        assert_eq!(
            show(&["/alt*"], &["size"], &three),
            r#"ANNOTATION (/altsubject (size.shared "9" size.priv "0"))"#
        );
        assert_eq!(show(&["/comment"], &["bogus"], &three), "ANNOTATION ()");
        assert_eq!(
            show(&["comment"], &["value"], &three),
            "ANNOTATION (comment (value.priv NIL value.shared NIL))"
        );
    }

    #[test]
    fn search_and_sort_values() {
        let s = [a("/comment", "", "shared c"), a("/comment", "u7", "p2")];
        assert!(matches("/comment", "value", b"shared", &s, "u7"));
        assert!(!matches("/comment", "value.shared", b"SHARED", &s, "u7"));
        assert!(!matches("/comment", "value.shared", b"", &s, "u7"));
        assert!(matches("/comment", "value.shared", b"", &[], "u7"));
        assert_eq!(sort_value("/comment", "value.priv", &s, "u7"), b"p2");
        assert_eq!(sort_value("/comment", "value.priv", &s, "joe"), b"");
    }

    #[test]
    fn store_rules() {
        let set = |e: &str, at: &str| vec![(e.to_string(), vec![(at.to_string(), Some(b"x".to_vec()))])];
        assert!(writes(&set("/comment", "value.priv"), "u7", "lrs").is_ok());
        assert_eq!(writes(&set("/comment", "value.shared"), "u7", "lrs"), Err(Refused::Permission));
        assert!(writes(&set("/comment", "value.shared"), "u7", "lrsn").is_ok());
        for (e, at) in [
            ("/bogus", "value.priv"),
            ("/comment", "value"),
            ("/comment", "size.priv"),
            ("/vendor/cmu/cyrus-imapd/snoozed", "value.priv"),
        ] {
            assert_eq!(writes(&set(e, at), "u7", "lrswn"), Err(Refused::Permission), "{e} {at}");
        }
        assert!(glob(b"/%", b"/comment", b'/'));
        assert!(!glob(b"/%", b"/vendor/x", b'/'));
        assert!(glob(b"*", b"value.priv", b'.'));
        assert!(!glob(b"value", b"value.priv", b'.'));
    }
}
