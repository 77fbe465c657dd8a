//! SORT and THREAD (RFC 5256): the base-subject extraction, the sort
//! keys (ARRIVAL CC DATE FROM REVERSE SIZE SUBJECT TO, and Cyrus's
//! DISPLAYFROM/DISPLAYTO of RFC 5957), THREAD=ORDEREDSUBJECT and
//! THREAD=REFERENCES.  Pure functions over per-message data read by the
//! session.

use crate::mail::mime;

/// One message as SORT/THREAD see it: its place in the session and its
/// keys (shared with the process's sort cache).
#[derive(Debug, Clone)]
pub struct Info {
    /// 1-based sequence number and UID.
    pub seq: u32,
    pub uid: u32,
    /// The message's MODSEQ now (SORT=MODSEQ).
    pub modseq: u64,
    /// The values of the SORT's ANNOTATION criteria (RFC 5257), in order.
    pub annot: Vec<Vec<u8>>,
    pub k: std::sync::Arc<Keys>,
}

impl std::ops::Deref for Info {
    type Target = Keys;
    fn deref(&self) -> &Keys {
        &self.k
    }
}

/// What sorting and threading need of one message (fixed for its life).
#[derive(Debug, Clone, Default)]
pub struct Keys {
    pub arrival: i64,
    /// The Date field in UTC, else the arrival time (RFC 5256 2.2).
    pub date: i64,
    pub size: u64,
    pub subject: String,
    /// Whether the subject had reply/forward markers (for THREAD).
    pub is_reply: bool,
    /// The address keys, only when a SORT asked for one (THREAD never
    /// does): a message's keys stay small in huge mailboxes.
    pub addr: Option<Box<AddrKeys>>,
    pub message_id: Option<String>,
    /// References, then In-Reply-To's first id when References is absent.
    pub references: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct AddrKeys {
    pub from: String,
    pub to: String,
    pub cc: String,
    pub display_from: String,
    pub display_to: String,
}

impl Keys {
    fn addr_key(&self, k: Key) -> &str {
        let Some(a) = &self.addr else { return "" };
        match k {
            Key::From => &a.from,
            Key::To => &a.to,
            Key::Cc => &a.cc,
            Key::DisplayFrom => &a.display_from,
            Key::DisplayTo => &a.display_to,
            _ => "",
        }
    }
}

/// Every key, for the cache.
pub const ALL_KEYS: [Key; 9] = [
    Key::Arrival,
    Key::Cc,
    Key::Date,
    Key::From,
    Key::Size,
    Key::Subject,
    Key::To,
    Key::DisplayFrom,
    Key::DisplayTo,
];

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Key {
    Arrival,
    Cc,
    Date,
    From,
    Size,
    Subject,
    To,
    DisplayFrom,
    DisplayTo,
    /// SORT=UID and SORT=MODSEQ (Cyrus's): not from the header.
    Uid,
    ModSeq,
    /// The n-th ANNOTATION criterion (RFC 5257): `Info::annot[n]`.
    Annotation(usize),
}

impl Key {
    pub fn parse(s: &str) -> Option<Key> {
        Some(match s.to_ascii_uppercase().as_str() {
            "ARRIVAL" => Key::Arrival,
            "CC" => Key::Cc,
            "DATE" => Key::Date,
            "FROM" => Key::From,
            "SIZE" => Key::Size,
            "SUBJECT" => Key::Subject,
            "TO" => Key::To,
            "DISPLAYFROM" => Key::DisplayFrom,
            "DISPLAYTO" => Key::DisplayTo,
            "UID" => Key::Uid,
            "MODSEQ" => Key::ModSeq,
            _ => return None,
        })
    }
}

/// Parses an RFC 5322 date-time to UTC seconds.
pub fn parse_date(v: &str) -> Option<i64> {
    parse_date_zone(v).map(|(t, _)| t)
}

/// Parses an RFC 5322 date-time: UTC seconds and the zone it was
/// written in (minutes east of UTC).
pub fn parse_date_zone(v: &str) -> Option<(i64, i64)> {
    let v = v.split_once(',').map_or(v, |(_, r)| r);
    // Comments and extra blanks.
    let mut clean = String::with_capacity(v.len());
    let mut depth = 0;
    for c in v.chars() {
        match c {
            '(' => depth += 1,
            ')' if depth > 0 => depth -= 1,
            _ if depth == 0 => clean.push(c),
            _ => {}
        }
    }
    let p: Vec<&str> = clean.split_whitespace().collect();
    let d: u32 = p.first()?.parse().ok()?;
    let m = crate::util::codec::MONTHS
        .iter()
        .position(|x| p.get(1).and_then(|mo| mo.get(..3)).is_some_and(|mo| x.eq_ignore_ascii_case(mo)))? as u32
        + 1;
    let y: i64 = p.get(2)?.parse().ok()?;
    let y = match y {
        0..=49 => y + 2000,
        50..=999 => y + 1900,
        _ => y,
    };
    let hms: Vec<&str> = p.get(3)?.split(':').collect();
    let hh: u32 = hms.first()?.parse().ok()?;
    let mm: u32 = hms.get(1)?.parse().ok()?;
    let ss: u32 = hms.get(2).and_then(|s| s.parse().ok()).unwrap_or(0);
    if !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let zone = p.get(4).copied().unwrap_or("+0000");
    let off_min: i64 = match zone.as_bytes().first() {
        Some(b'+') | Some(b'-') if zone.len() == 5 => {
            let n: i64 = zone[1..].parse().ok()?;
            let m = n / 100 * 60 + n % 100;
            if zone.starts_with('-') {
                -m
            } else {
                m
            }
        }
        _ => match zone.to_ascii_uppercase().as_str() {
            "EDT" => -4 * 60,
            "EST" | "CDT" => -5 * 60,
            "CST" | "MDT" => -6 * 60,
            "MST" | "PDT" => -7 * 60,
            "PST" => -8 * 60,
            _ => 0,
        },
    };
    Some((crate::util::codec::from_civil(y, m, d, hh, mm, ss) - off_min * 60, off_min))
}

/// RFC 5256 2.1: the base subject, compared with i;ascii-casemap (so
/// returned uppercased), and whether reply/forward markers were removed.
pub fn base_subject(raw: &str) -> (String, bool) {
    // (1) whitespace runs to one space.
    let mut s: String = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut is_reply = false;
    loop {
        // (2) trailing "(fwd)" and blanks.
        loop {
            let t = s.trim_end();
            // get(): a multibyte character may sit where "(fwd)" would.
            if t.len() >= 5 && t.get(t.len() - 5..).is_some_and(|x| x.eq_ignore_ascii_case("(fwd)")) {
                s = t[..t.len() - 5].to_string();
                is_reply = true;
            } else {
                s = t.to_string();
                break;
            }
        }
        // (3)+(4) leaders and blobs, repeatedly.
        loop {
            let before = s.len();
            if let Some(rest) = strip_refwd(&s) {
                s = rest;
                is_reply = true;
            }
            if let Some(rest) = strip_blob(&s) {
                if !rest.is_empty() {
                    s = rest;
                }
            }
            if s.len() == before {
                break;
            }
        }
        // (5) [fwd: ... ]
        let t = s.as_str();
        if t.len() >= 6 && t.get(..5).is_some_and(|x| x.eq_ignore_ascii_case("[fwd:")) && t.ends_with(']') {
            s = t[5..t.len() - 1].trim().to_string();
            is_reply = true;
            continue;
        }
        break;
    }
    (s.to_ascii_uppercase(), is_reply)
}

/// subj-blob = "[" *BLOBCHAR "]" *WSP
fn strip_blob(s: &str) -> Option<String> {
    let rest = s.strip_prefix('[')?;
    let end = rest.find([']', '['])?;
    if rest.as_bytes()[end] != b']' {
        return None;
    }
    Some(rest[end + 1..].trim_start().to_string())
}

/// subj-refwd = *subj-blob ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"
fn strip_refwd(s: &str) -> Option<String> {
    let mut t = s.trim_start().to_string();
    while let Some(r) = strip_blob(&t) {
        t = r;
    }
    let lower = t.to_ascii_lowercase();
    let n = if lower.starts_with("re") {
        2
    } else if lower.starts_with("fwd") {
        3
    } else if lower.starts_with("fw") {
        2
    } else {
        return None;
    };
    let mut r = t[n..].trim_start().to_string();
    if let Some(b) = strip_blob(&r) {
        r = b;
    }
    r.strip_prefix(':').map(|x| x.trim_start().to_string())
}

/// The addr-mailbox of the first address, for FROM/TO/CC (a group's
/// start marker counts: its mailbox is the group name, as Cyrus sorts).
fn first_mailbox(v: Option<&[u8]>) -> String {
    v.map(mime::parse_addresses)
        .and_then(|a| a.into_iter().find(|x| x.mailbox.is_some()))
        .and_then(|a| a.mailbox)
        .map(|m| String::from_utf8_lossy(&m).to_ascii_uppercase())
        .unwrap_or_default()
}

/// RFC 5957: the display name of the first address, else its address.
/// RFC 5957's display key: the first address's display name, else its
/// mailbox@host, else (a group with no members, as in
/// `undisclosed-recipients:;`) the group's name; compared, as Cyrus does
/// with i;unicode-casemap, without case or diacritics.
fn first_display(v: Option<&[u8]>, decode: &dyn Fn(&[u8]) -> Vec<u8>) -> String {
    let Some(all) = v.map(mime::parse_addresses) else {
        return String::new();
    };
    let text = match all.iter().find(|x| x.host.is_some()) {
        Some(a) => match a.name.as_ref().filter(|n| !n.is_empty()) {
            Some(n) => String::from_utf8_lossy(&decode(n)).into_owned(),
            None => format!(
                "{}@{}",
                String::from_utf8_lossy(a.mailbox.as_deref().unwrap_or_default()),
                String::from_utf8_lossy(a.host.as_deref().unwrap_or_default())
            ),
        },
        None => match all.first().and_then(|g| g.mailbox.as_ref()) {
            Some(group) => String::from_utf8_lossy(&decode(group)).into_owned(),
            None => String::new(),
        },
    };
    super::search::fold(&text)
}

fn msg_ids(v: &[u8]) -> Vec<String> {
    let s = String::from_utf8_lossy(v);
    let mut out = Vec::new();
    let mut rest: &str = &s;
    while let Some(a) = rest.find('<') {
        let Some(b) = rest[a..].find('>') else { break };
        let id = rest[a + 1..a + b].trim();
        if !id.is_empty() {
            out.push(id.to_string());
        }
        rest = &rest[a + b + 1..];
    }
    out
}

/// Builds the sort/thread data of a message from its header: only what
/// `keys` (or threading, with `thread`) look at, so that sorting a huge
/// mailbox keeps little per message.
pub fn keys(arrival: i64, size: u64, header: &[u8], decode: &dyn Fn(&[u8]) -> Vec<u8>, keys: &[Key], thread: bool) -> Keys {
    let f = mime::fields(header);
    let get = |n: &str| mime::field(&f, n).map(mime::trim);
    let has = |k: Key| keys.contains(&k);
    let (subject, is_reply) = if thread || has(Key::Subject) {
        let raw = get("subject")
            .map(|v| String::from_utf8_lossy(&decode(v)).into_owned())
            .unwrap_or_default();
        base_subject(&raw)
    } else {
        (String::new(), false)
    };
    let date = if thread || has(Key::Date) {
        get("date").and_then(|v| parse_date(&String::from_utf8_lossy(v))).unwrap_or(arrival)
    } else {
        arrival
    };
    let mut references = Vec::new();
    let mut message_id = None;
    if thread {
        references = get("references").map(msg_ids).unwrap_or_default();
        if references.is_empty() {
            references = get("in-reply-to").map(msg_ids).unwrap_or_default().into_iter().take(1).collect();
        }
        message_id = get("message-id").and_then(|v| msg_ids(v).into_iter().next());
    }
    let text = |k: Key, f: &dyn Fn() -> String| if has(k) { f() } else { String::new() };
    Keys {
        arrival,
        date,
        size,
        subject,
        is_reply,
        addr: [Key::From, Key::To, Key::Cc, Key::DisplayFrom, Key::DisplayTo]
            .iter()
            .any(|k| has(*k))
            .then(|| {
                Box::new(AddrKeys {
                    from: text(Key::From, &|| first_mailbox(get("from"))),
                    to: text(Key::To, &|| first_mailbox(get("to"))),
                    cc: text(Key::Cc, &|| first_mailbox(get("cc"))),
                    display_from: text(Key::DisplayFrom, &|| first_display(get("from"), decode)),
                    display_to: text(Key::DisplayTo, &|| first_display(get("to"), decode)),
                })
            }),
        message_id,
        references,
    }
}

/// Sorts by the criteria (REVERSE flips the next key); ties by sequence.
pub fn sort(msgs: &mut [Info], criteria: &[(Key, bool)]) {
    msgs.sort_by(|a, b| {
        for &(k, rev) in criteria {
            let o = match k {
                Key::Arrival => a.arrival.cmp(&b.arrival),
                Key::Cc => a.addr_key(k).cmp(b.addr_key(k)),
                Key::Date => a.date.cmp(&b.date),
                Key::From => a.addr_key(k).cmp(b.addr_key(k)),
                Key::Size => a.size.cmp(&b.size),
                Key::Subject => a.subject.cmp(&b.subject),
                Key::To | Key::DisplayFrom | Key::DisplayTo => a.addr_key(k).cmp(b.addr_key(k)),
                Key::Uid => a.uid.cmp(&b.uid),
                Key::ModSeq => a.modseq.cmp(&b.modseq),
                Key::Annotation(n) => a.annot.get(n).cmp(&b.annot.get(n)),
            };
            let o = if rev { o.reverse() } else { o };
            if o != std::cmp::Ordering::Equal {
                return o;
            }
        }
        a.seq.cmp(&b.seq)
    });
}

/// A thread tree: a message (None for a dummy parent) and its children.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub msg: Option<usize>,
    pub children: Vec<Node>,
}

/// THREAD=ORDEREDSUBJECT (RFC 5256 3): by base subject, then date; each
/// group is one thread whose first message is the parent of the others.
pub fn ordered_subject(msgs: &[Info]) -> Vec<Node> {
    let mut idx: Vec<usize> = (0..msgs.len()).collect();
    idx.sort_by(|&a, &b| (msgs[a].subject.as_str(), msgs[a].date, msgs[a].seq).cmp(&(msgs[b].subject.as_str(), msgs[b].date, msgs[b].seq)));
    let mut threads: Vec<Node> = Vec::new();
    let mut last: Option<&str> = None;
    for i in idx {
        if last == Some(msgs[i].subject.as_str()) {
            if let Some(t) = threads.last_mut() {
                t.children.push(Node {
                    msg: Some(i),
                    children: Vec::new(),
                });
            }
        } else {
            threads.push(Node {
                msg: Some(i),
                children: Vec::new(),
            });
            last = Some(msgs[i].subject.as_str());
        }
    }
    // Threads in order of their first message's date.
    threads.sort_by_key(|t| t.msg.map(|i| (msgs[i].date, msgs[i].seq)));
    threads
}

/// THREAD=REFERENCES (RFC 5256 3, the JWZ algorithm without subject
/// gathering across threads of different roots beyond step 5).
pub fn references(msgs: &[Info]) -> Vec<Node> {
    let mut roots = link(msgs);
    // (5) gather roots by base subject.
    let mut by_subject: Map<&str, usize> = Map::default();
    let mut merged: Vec<Node> = Vec::with_capacity(roots.len());
    for r in roots.drain(..) {
        let subj = first_msg(&r).map_or("", |m| msgs[m].subject.as_str());
        if subj.is_empty() {
            merged.push(r);
            continue;
        }
        match by_subject.get(&subj) {
            None => {
                by_subject.insert(subj, merged.len());
                merged.push(r);
            }
            Some(&at) => {
                let old = std::mem::replace(
                    &mut merged[at],
                    Node {
                        msg: None,
                        children: vec![],
                    },
                );
                merged[at] = merge(old, r, msgs);
            }
        }
    }
    for n in merged.iter_mut() {
        sort_nodes(&mut n.children, msgs);
    }
    // (6) threads by the date of their first message.
    sort_nodes(&mut merged, msgs);
    merged
}

/// THREAD=REFS (draft-ietf-morg-inthread, as Cyrus 3.6 does it): the
/// REFERENCES links without grouping by subject; threads ordered by the
/// newest arrival time among their messages, replies within a thread by
/// sent date, then arrival, then sequence number.
pub fn refs(msgs: &[Info]) -> Vec<Node> {
    fn newest(n: &Node, msgs: &[Info]) -> i64 {
        let own = n.msg.map_or(i64::MIN, |m| msgs[m].arrival);
        n.children.iter().map(|c| newest(c, msgs)).fold(own, i64::max)
    }
    fn sort_tree(v: &mut [Node], msgs: &[Info]) {
        for n in v.iter_mut() {
            sort_tree(&mut n.children, msgs);
        }
        // A dummy (only ever a root) sorts by its first child.
        let key = |n: &Node| {
            let m = n.msg.or_else(|| n.children.first().and_then(|c| c.msg));
            m.map_or((i64::MAX, i64::MAX, 0), |m| (msgs[m].date, msgs[m].arrival, msgs[m].seq))
        };
        v.sort_by_key(key);
    }
    let mut roots = link(msgs);
    for r in roots.iter_mut() {
        sort_tree(&mut r.children, msgs);
    }
    // A root's date is the newest arrival in its thread; a dummy root has
    // no sequence number, so it sorts before a message root on a tie.
    roots.sort_by_key(|r| {
        let t = newest(r, msgs);
        (t, t, r.msg.map_or(0, |m| msgs[m].seq))
    });
    roots
}

/// RFC 5256 3 steps 1 to 4: the messages linked by Message-ID and
/// References into trees, empty containers pruned; the roots unsorted.
fn link<'a>(msgs: &'a [Info]) -> Vec<Node> {
    // Containers: message index and parent/children by container id.
    struct C {
        msg: Option<usize>,
        parent: Option<usize>,
        children: Vec<usize>,
    }
    let mut cs: Vec<C> = Vec::with_capacity(msgs.len());
    // Ids borrowed from the messages: no copy per lookup.
    let mut by_id: Map<&str, usize> = Map::with_capacity_and_hasher(msgs.len(), Default::default());
    let mut get = |cs: &mut Vec<C>, id: &'a str| -> usize {
        *by_id.entry(id).or_insert_with(|| {
            cs.push(C {
                msg: None,
                parent: None,
                children: Vec::new(),
            });
            cs.len() - 1
        })
    };
    fn is_ancestor(cs: &[C], anc: usize, mut c: usize) -> bool {
        let mut steps = 0;
        loop {
            if c == anc {
                return true;
            }
            match cs[c].parent {
                Some(p) if steps < 10_000 => {
                    c = p;
                    steps += 1;
                }
                _ => return false,
            }
        }
    }
    for (i, m) in msgs.iter().enumerate() {
        // (1A) the message's container; a duplicate id gets its own.
        let this = match &m.message_id {
            Some(id) => {
                let c = get(&mut cs, id);
                if cs[c].msg.is_some() {
                    cs.push(C {
                        msg: Some(i),
                        parent: None,
                        children: Vec::new(),
                    });
                    cs.len() - 1
                } else {
                    cs[c].msg = Some(i);
                    c
                }
            }
            None => {
                cs.push(C {
                    msg: Some(i),
                    parent: None,
                    children: Vec::new(),
                });
                cs.len() - 1
            }
        };
        // (1B) link the references chain.
        let mut prev: Option<usize> = None;
        for r in &m.references {
            let c = get(&mut cs, r);
            if let Some(p) = prev {
                if cs[c].parent.is_none() && !is_ancestor(&cs, c, p) && c != p {
                    cs[c].parent = Some(p);
                    cs[p].children.push(c);
                }
            }
            prev = Some(c);
        }
        // (1C) the last reference is this message's parent.
        if let Some(old) = cs[this].parent.take() {
            cs[old].children.retain(|&x| x != this);
        }
        if let Some(p) = prev {
            if p != this && !is_ancestor(&cs, this, p) {
                cs[this].parent = Some(p);
                cs[p].children.push(this);
            }
        }
    }
    // (2) roots; (4) prune empty containers.  The nodes of container `c`
    // are pushed onto `out` (none, one, or its promoted children).
    fn build(cs: &[C], c: usize, msgs: &[Info], out: &mut Vec<Node>) {
        let mut kids: Vec<Node> = Vec::with_capacity(cs[c].children.len());
        for &k in &cs[c].children {
            build(cs, k, msgs, &mut kids);
        }
        match cs[c].msg {
            Some(m) => {
                sort_nodes(&mut kids, msgs);
                out.push(Node {
                    msg: Some(m),
                    children: kids,
                });
            }
            // An empty container: promote its children, unless it is a root
            // with several children (then it stays as a dummy).
            None if cs[c].parent.is_none() && kids.len() > 1 => {
                sort_nodes(&mut kids, msgs);
                out.push(Node { msg: None, children: kids });
            }
            None => out.append(&mut kids),
        }
    }
    let mut roots = Vec::new();
    for c in (0..cs.len()).filter(|&c| cs[c].parent.is_none()) {
        build(&cs, c, msgs, &mut roots);
    }
    roots
}

/// SORT/THREAD's in-memory maps: a fast hash, seeded per process (the
/// message ids and subjects come from senders).
type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

fn first_msg(n: &Node) -> Option<usize> {
    n.msg.or_else(|| n.children.iter().filter_map(first_msg).next())
}

fn node_date(n: &Node, msgs: &[Info]) -> (i64, u32) {
    match n.msg {
        Some(m) => (msgs[m].date, msgs[m].seq),
        None => n.children.iter().map(|c| node_date(c, msgs)).min().unwrap_or((i64::MAX, u32::MAX)),
    }
}

fn sort_nodes(v: &mut [Node], msgs: &[Info]) {
    v.sort_by_key(|n| node_date(n, msgs));
}

/// RFC 5256 step 5: two roots with the same base subject.
fn merge(a: Node, b: Node, msgs: &[Info]) -> Node {
    match (a.msg, b.msg) {
        (None, None) => {
            let mut children = a.children;
            children.extend(b.children);
            Node { msg: None, children }
        }
        (None, Some(_)) => {
            let mut children = a.children;
            children.push(b);
            Node { msg: None, children }
        }
        (Some(_), None) => {
            let mut children = b.children;
            children.push(a);
            Node { msg: None, children }
        }
        (Some(x), Some(y)) => {
            // A reply goes under the non-reply; else both under a dummy.
            if !msgs[x].is_reply && msgs[y].is_reply {
                let mut a = a;
                a.children.push(b);
                a
            } else if msgs[x].is_reply && !msgs[y].is_reply {
                let mut b = b;
                b.children.push(a);
                b
            } else {
                Node {
                    msg: None,
                    children: vec![a, b],
                }
            }
        }
    }
}

/// `(1 2)(3 (4)(5))` in sequence numbers or UIDs.
pub fn render(threads: &[Node], msgs: &[Info], uid: bool) -> String {
    fn one(n: &Node, msgs: &[Info], uid: bool, out: &mut String) {
        // A chain of single children prints flat: (1 2 3).
        if let Some(m) = n.msg {
            use std::fmt::Write;
            let _ = write!(out, "{}", if uid { msgs[m].uid } else { msgs[m].seq });
        }
        match n.children.len() {
            0 => {}
            1 => {
                if n.msg.is_some() {
                    out.push(' ');
                }
                one(&n.children[0], msgs, uid, out);
            }
            _ => {
                if n.msg.is_some() {
                    out.push(' ');
                }
                for c in &n.children {
                    out.push('(');
                    one(c, msgs, uid, out);
                    out.push(')');
                }
            }
        }
    }
    let mut out = String::with_capacity(msgs.len() * 8);
    for t in threads {
        out.push('(');
        one(t, msgs, uid, &mut out);
        out.push(')');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_subjects() {
        for (raw, want, reply) in [
            ("Hello", "HELLO", false),
            ("Re: Hello", "HELLO", true),
            ("RE: re: Fwd: Hello", "HELLO", true),
            ("[list] Re: [other] Hello", "HELLO", true),
            ("Hello (fwd)", "HELLO", true),
            ("[Fwd: Re: Hello]", "HELLO", true),
            ("  lots   of\t space ", "LOTS OF SPACE", false),
            ("[only a blob]", "[ONLY A BLOB]", false),
            ("Re:", "", true),
            ("Fw[x]: y", "Y", true),
            ("ünïcödé ü", "üNïCöDé ü", false),
            ("éé", "éé", false),
            ("[fwé: x]", "[FWé: X]", false),
        ] {
            assert_eq!(base_subject(raw), (want.to_string(), reply), "{raw}");
        }
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("Tue, 03 Mar 2026 10:11:12 +0100"), Some(1_772_529_072));
        assert_eq!(parse_date("3 Mar 2026 09:11:12 GMT"), Some(1_772_529_072));
        assert_eq!(parse_date("Tue, 03 Mar 26 04:11:12 EST (comment)"), Some(1_772_529_072));
        assert_eq!(parse_date("garbage"), None);
        assert_eq!(parse_date("1 éé 2026 10:00:00 +0000"), None);
        assert_eq!(parse_date("1 Mé 2026 10:00:00 +é000"), None);
    }
}
