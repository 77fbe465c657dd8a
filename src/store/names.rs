//! Mailbox names as Cyrus 3.x keeps them: internal names are dotted
//! (`user.fred.Sent`, `example.com!user.fred`, `shared.news`), external
//! names follow `unixhierarchysep` (`/` with `.` kept as `^` inside a
//! component) and `altnamespace` (personal folders beside INBOX, `Other
//! Users` and `Shared Folders` prefixes); spool directories follow
//! `hashimapspool`/`fulldirhash` with Cyrus's `dir_hash_c`.

use std::path::{Path, PathBuf};

/// Longest mailbox name accepted (Cyrus `MAX_MAILBOX_NAME`).
pub const MAX_NAME: usize = 490;

/// Prefixes of the alternate namespace (Cyrus defaults of
/// `userprefix`/`sharedprefix`).
pub const OTHER_USERS: &str = "Other Users";
pub const SHARED_FOLDERS: &str = "Shared Folders";

#[derive(Debug, Clone, PartialEq)]
pub enum NameError {
    /// Empty component, `.`/`..`, control character, wildcard, bad mUTF-7.
    Invalid,
    /// Longer than `MAX_NAME`.
    TooLong,
    /// Names another user's mailbox in a way the namespace does not allow.
    Permission,
}

/// The client-visible namespace of one logged-in user.
#[derive(Debug, Clone)]
pub struct Namespace {
    /// External hierarchy separator: `/` with `unixhierarchysep`, else `.`.
    pub sep: char,
    pub alt: bool,
    /// The user's local part, and domain ("" when none).
    pub user: String,
    pub domain: String,
    /// With `alt`: the prefixes of other users' and of shared mailboxes
    /// (`userprefix`, `sharedprefix`).
    pub other_users: String,
    pub shared: String,
    /// `deletedprefix`: an admin's LIST shows what a delayed DELETE
    /// keeps there after everything else, as Cyrus.
    pub deleted: String,
}

/// Cyrus's LIST order: INBOX, its children, the user's other mailboxes
/// (the alternate namespace's), other users' (`user/...`, or the
/// alternate namespace's other-users prefix), then shared ones, then (for
/// an admin) those `deletedprefix` keeps; by name within each, the hierarchy separator before any
/// other character (its mailbox list keys hold it as 0x1f): `a`, `a/b`,
/// `a/b/c`, then `a.b`.
pub fn list_order(a: &str, b: &str, ns: Option<&Namespace>) -> std::cmp::Ordering {
    let sep = ns.map_or('/', |n| n.sep);
    let under = |n: &str, p: &str| n.strip_prefix(p).is_some_and(|r| r.is_empty() || r.starts_with(sep));
    let rank = |n: &str| match n.strip_prefix("INBOX") {
        // (An admin's standard namespace: with `altnamespace` a top-level
        // DELETED is somebody's folder.)
        _ if ns.is_some_and(|ns| !ns.alt && under(n, &ns.deleted)) => 5,
        Some("") => 0,
        Some(r) if r.starts_with(sep) => 1,
        _ => match ns {
            Some(ns) if ns.alt => {
                if under(n, &ns.other_users) {
                    3
                } else if under(n, &ns.shared) {
                    4
                } else {
                    2
                }
            }
            _ if under(n, "user") => 3,
            _ => 4,
        },
    };
    let low = move |c: char| if c == sep { '\x1f' } else { c };
    rank(a).cmp(&rank(b)).then_with(|| a.chars().map(low).cmp(b.chars().map(low)))
}

impl Namespace {
    pub fn new(unixhierarchysep: bool, altnamespace: bool, userid: &str, virtdomains: bool, defaultdomain: &str) -> Namespace {
        let (user, domain) = split_userid(userid, virtdomains, defaultdomain);
        Namespace {
            sep: if unixhierarchysep { '/' } else { '.' },
            alt: altnamespace,
            user,
            domain,
            other_users: OTHER_USERS.into(),
            shared: SHARED_FOLDERS.into(),
            deleted: "DELETED".into(),
        }
    }

    /// With imapd.conf's `deletedprefix`.
    pub fn with_deleted(mut self, deletedprefix: &str) -> Namespace {
        self.deleted = deletedprefix.to_string();
        self
    }

    /// With imapd.conf's `userprefix` and `sharedprefix` (when set and
    /// not empty) for the alternate namespace's other users and shared
    /// mailboxes.
    pub fn with_prefixes(mut self, userprefix: Option<&str>, sharedprefix: Option<&str>) -> Namespace {
        if let Some(p) = userprefix.filter(|p| !p.is_empty()) {
            self.other_users = p.to_string();
        }
        if let Some(p) = sharedprefix.filter(|p| !p.is_empty()) {
            self.shared = p.to_string();
        }
        self
    }

    fn dom_prefix(&self) -> String {
        if self.domain.is_empty() {
            String::new()
        } else {
            format!("{}!", self.domain)
        }
    }

    /// The user's INBOX, internal.
    pub fn inbox(&self) -> String {
        format!("{}user.{}", self.dom_prefix(), encode_component(&self.user, self.sep))
    }

    /// External → internal.
    pub fn to_internal(&self, ext: &str) -> Result<String, NameError> {
        if ext.len() > MAX_NAME {
            return Err(NameError::TooLong);
        }
        if ext.is_empty() {
            return Err(NameError::Invalid);
        }
        let comps: Vec<&str> = ext.split(self.sep).collect();
        for c in &comps {
            check_component(c)?;
            // `^` stands for `.` inside a component when `/` separates
            // (Cyrus refuses it); a component is one directory of the spool.
            if self.sep == '/' && c.contains('^') {
                return Err(NameError::Invalid);
            }
            if c.len() > MAX_COMPONENT {
                return Err(NameError::TooLong);
            }
        }
        let enc = |cs: &[&str]| cs.iter().map(|c| encode_component(c, self.sep)).collect::<Vec<_>>().join(".");
        let first = comps[0];
        let dp = self.dom_prefix();
        let inbox = self.inbox();
        if first.eq_ignore_ascii_case("INBOX") {
            return Ok(if comps.len() == 1 {
                inbox
            } else if self.alt {
                // altnamespace (Cyrus 3.x): INBOX's own children live under
                // `user.name.INBOX`, apart from the personal folders beside
                // it; `INBOX/INBOX` is no name.
                if comps[1].eq_ignore_ascii_case("INBOX") {
                    return Err(NameError::Invalid);
                }
                format!("{inbox}.INBOX.{}", enc(&comps[1..]))
            } else {
                format!("{inbox}.{}", enc(&comps[1..]))
            });
        }
        if self.alt {
            if first == self.other_users {
                if comps.len() < 2 {
                    return Err(NameError::Invalid);
                }
                return Ok(format!("{dp}user.{}", enc(&comps[1..])));
            }
            if first == self.shared {
                if comps.len() < 2 {
                    return Err(NameError::Invalid);
                }
                if comps[1] == "user" {
                    return Err(NameError::Permission);
                }
                return Ok(format!("{dp}{}", enc(&comps[1..])));
            }
            return Ok(format!("{inbox}.{}", enc(&comps)));
        }
        Ok(format!("{dp}{}", enc(&comps)))
    }

    /// Internal → external, None when the name is in another domain.
    pub fn to_external(&self, int: &str) -> Option<String> {
        let (dom, rest) = match int.split_once('!') {
            Some((d, r)) => (d, r),
            None => ("", int),
        };
        if dom != self.domain {
            return None;
        }
        let comps: Vec<String> = rest.split('.').map(|c| decode_component(c, self.sep)).collect();
        let s = self.sep.to_string();
        let own = decode_component(&encode_component(&self.user, self.sep), self.sep);
        if comps.len() >= 2 && comps[0] == "user" && comps[1] == own {
            if comps.len() == 2 {
                return Some("INBOX".to_string());
            }
            if self.alt {
                return Some(comps[2..].join(&s));
            }
            return Some(format!("INBOX{s}{}", comps[2..].join(&s)));
        }
        if self.alt {
            if comps[0] == "user" {
                return Some(format!("{}{s}{}", self.other_users, comps[1..].join(&s)));
            }
            return Some(format!("{}{s}{}", self.shared, comps.join(&s)));
        }
        Some(comps.join(&s))
    }
}

/// `fred@example.com` → (`fred`, `example.com`); the domain is kept only
/// with `virtdomains` and when it is not `defaultdomain`.
pub fn split_userid(userid: &str, virtdomains: bool, defaultdomain: &str) -> (String, String) {
    if virtdomains {
        if let Some((u, d)) = userid.rsplit_once('@') {
            let d = d.to_ascii_lowercase();
            if d == defaultdomain.to_ascii_lowercase() {
                return (u.to_string(), String::new());
            }
            return (u.to_string(), d);
        }
    }
    (userid.to_string(), String::new())
}

/// The internal name of a user's folder given as `detail` in an address
/// or a login (`u7+Lists/2024`): its levels split at the hierarchy
/// separator, a `.` within a level kept as `^` under `unixhierarchysep`.
pub fn detail_mailbox(inbox: &str, detail: &str, unixhierarchysep: bool) -> String {
    let sep = if unixhierarchysep { '/' } else { '.' };
    let parts: Vec<String> = detail
        .split(sep)
        .map(|c| if unixhierarchysep { c.replace('.', "^") } else { c.to_string() })
        .collect();
    format!("{inbox}.{}", parts.join("."))
}

/// A user's INBOX from a userid (LMTP recipients, admin tools).
pub fn user_inbox(userid: &str, unixhierarchysep: bool, virtdomains: bool, defaultdomain: &str) -> Result<String, NameError> {
    let (u, d) = split_userid(userid, virtdomains, defaultdomain);
    check_component(&u)?;
    if u.contains('.') && !unixhierarchysep {
        return Err(NameError::Invalid);
    }
    let sep = if unixhierarchysep { '/' } else { '.' };
    Ok(if d.is_empty() {
        format!("user.{}", encode_component(&u, sep))
    } else {
        format!("{d}!user.{}", encode_component(&u, sep))
    })
}

/// The longest component of a name: a directory name on the spool.
const MAX_COMPONENT: usize = 255;

fn check_component(c: &str) -> Result<(), NameError> {
    if c.is_empty() || c == "." || c == ".." {
        return Err(NameError::Invalid);
    }
    for ch in c.chars() {
        if (ch as u32) < 0x20 || ch == '\x7f' || ch == '*' || ch == '%' || (ch as u32) > 0x7e {
            return Err(NameError::Invalid);
        }
    }
    if !valid_mutf7(c) {
        return Err(NameError::Invalid);
    }
    Ok(())
}

/// Inside a component, `.` is stored as `^` when `/` is the separator.
fn encode_component(c: &str, sep: char) -> String {
    if sep == '/' {
        c.replace('.', "^")
    } else {
        c.to_string()
    }
}

fn decode_component(c: &str, sep: char) -> String {
    if sep == '/' {
        c.replace('^', ".")
    } else {
        c.to_string()
    }
}

const MB64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/// A UTF-8 name in modified UTF-7 (for a session that enabled UTF8=ACCEPT
/// or IMAP4rev2: names are stored and shown to others in mUTF-7).
pub fn utf8_to_mutf7(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut run: Vec<u16> = Vec::new();
    let flush = |run: &mut Vec<u16>, out: &mut String| {
        if run.is_empty() {
            return;
        }
        let bytes: Vec<u8> = run.iter().flat_map(|u| u.to_be_bytes()).collect();
        out.push('&');
        for c in bytes.chunks(3) {
            let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
            let k = c.len() + 1;
            for i in 0..k {
                out.push(MB64[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out.push('-');
        run.clear();
    };
    for ch in s.chars() {
        if (' '..='~').contains(&ch) {
            flush(&mut run, &mut out);
            if ch == '&' {
                out.push_str("&-");
            } else {
                out.push(ch);
            }
        } else {
            let mut b = [0u16; 2];
            run.extend_from_slice(ch.encode_utf16(&mut b));
        }
    }
    flush(&mut run, &mut out);
    out
}

/// A modified UTF-7 name in UTF-8; None if it is not valid mUTF-7.
pub fn mutf7_to_utf8(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'&' {
            out.push(b[i] as char);
            i += 1;
            continue;
        }
        let end = i + 1 + b[i + 1..].iter().position(|&c| c == b'-')?;
        if end == i + 1 {
            out.push('&');
        } else {
            let (mut acc, mut bits, mut units) = (0u32, 0u32, Vec::new());
            for &c in &b[i + 1..end] {
                let v = MB64.iter().position(|&x| x == c)? as u32;
                acc = acc << 6 | v;
                bits += 6;
                if bits >= 16 {
                    bits -= 16;
                    units.push((acc >> bits) as u16);
                    acc &= (1 << bits) - 1;
                }
            }
            out.push_str(&String::from_utf16(&units).ok()?);
        }
        i = end + 1;
    }
    Some(out)
}

/// RFC 3501 5.1.3 modified UTF-7: `&` starts a base64 run (`,` for `/`)
/// ending in `-`; `&-` is a literal `&`.
pub fn valid_mutf7(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'&' {
            let st = i + 1;
            let mut j = st;
            while j < b.len() && b[j] != b'-' {
                if !(b[j].is_ascii_alphanumeric() || b[j] == b'+' || b[j] == b',') {
                    return false;
                }
                j += 1;
            }
            if j >= b.len() {
                return false;
            }
            // A run must decode to whole UTF-16 units, none of them a
            // character that stands for itself (RFC 3501 5.1.3: `&AGE-`
            // for `a` is not valid; Cyrus refuses it).
            let n = j - st;
            if n > 0 && (n * 6) % 16 >= 6 {
                return false;
            }
            if n > 0 && mutf7_to_utf8(&s[i..=j]).is_none_or(|d| d.chars().any(|c| (' '..='~').contains(&c))) {
                return false;
            }
            i = j + 1;
        } else {
            i += 1;
        }
    }
    true
}

/// Cyrus `dir_hash_c`: the hash letter of a name (up to its first `.`).
pub fn dir_hash(name: &str, full: bool) -> char {
    if full {
        let mut n: u32 = 0;
        for &c in name.as_bytes() {
            if c == b'.' {
                break;
            }
            n = ((n << 3) ^ (n >> 5)) ^ c as u32;
        }
        (b'A' + (n % 23) as u8) as char
    } else {
        let c = name.as_bytes().first().copied().unwrap_or(b'q').to_ascii_lowercase();
        if c.is_ascii_lowercase() {
            c as char
        } else {
            'q'
        }
    }
}

/// The spool directory of an internal name under a partition root
/// (Cyrus `mboxname_hash`, legacy layout).
pub fn spool_dir(root: &Path, internal: &str, hashimapspool: bool, fulldirhash: bool) -> PathBuf {
    let mut p = root.to_path_buf();
    let (dom, rest) = match internal.split_once('!') {
        Some((d, r)) => (Some(d), r),
        None => (None, internal),
    };
    if let Some(d) = dom {
        p.push("domain");
        if hashimapspool {
            p.push(dir_hash(d, fulldirhash).to_string());
        }
        p.push(d);
    }
    let comps: Vec<&str> = rest.split('.').collect();
    if hashimapspool {
        let idx = if comps.len() >= 2 { comps[1] } else { comps[0] };
        p.push(dir_hash(idx, fulldirhash).to_string());
    }
    for c in comps {
        p.push(c);
    }
    p
}

/// Where per-user state lives under `configdirectory`
/// (`user/<h>/<user>`, `domain/<h>/<dom>/user/<h>/<user>`; always hashed).
pub fn user_state_base(configdir: &Path, user: &str, domain: &str, fulldirhash: bool) -> PathBuf {
    let mut p = configdir.to_path_buf();
    if !domain.is_empty() {
        p.push("domain");
        p.push(dir_hash(domain, fulldirhash).to_string());
        p.push(domain);
    }
    p.push("user");
    p.push(dir_hash(user, fulldirhash).to_string());
    p.push(user);
    p
}

/// A mailbox owner's Sieve directory (Cyrus's `mailbox_legacy_dirs`
/// layout): `<sievedir>[/domain/<h>/<domain>]/<h>/<user>`.
pub fn sieve_dir(sievedir: &Path, internal: &str, fulldirhash: bool) -> PathBuf {
    let (user, domain, is_user) = owner_of(internal);
    let hash = |s: &str| dir_hash(s, fulldirhash).to_string();
    let mut p = sievedir.to_path_buf();
    if !domain.is_empty() {
        p.push("domain");
        p.push(hash(&domain));
        p.push(&domain);
    }
    if is_user {
        p.push(hash(&user));
        p.push(&user);
    } else {
        p.push("global");
    }
    p
}

/// The owner of an internal name: `(user, domain)` for `user.*`, or
/// `("", top)` for shared hierarchies.  Keys the per-owner database.
pub fn owner_of(internal: &str) -> (String, String, bool) {
    let (dom, rest) = match internal.split_once('!') {
        Some((d, r)) => (d.to_string(), r),
        None => (String::new(), internal),
    };
    let mut comps = rest.split('.');
    let first = comps.next().unwrap_or("");
    if first == "user" {
        if let Some(u) = comps.next() {
            return (u.to_string(), dom, true);
        }
    }
    (first.to_string(), dom, false)
}

/// `user` (or `domain!user`): the top of the users' hierarchy, which
/// Cyrus refuses as a mailbox name and as a quota root.
pub fn is_users_top(internal: &str) -> bool {
    internal.rsplit_once('!').map_or(internal, |(_, r)| r) == "user"
}

/// The name one level up (`user.fred` for `user.fred.Sent`), never
/// splitting a domain (`example.com!user` has none).
pub fn parent(internal: &str) -> Option<&str> {
    let start = internal.find('!').map_or(0, |i| i + 1);
    internal[start..].rfind('.').map(|i| &internal[..start + i])
}

/// `user.fred.Sent` → `user.fred` (quota root of a user's mailboxes).
pub fn user_root(internal: &str) -> Option<String> {
    let (u, d, is_user) = owner_of(internal);
    // (`DELETED.user.fred…` is not under user.fred: no quota root.)
    if !is_user {
        return None;
    }
    Some(if d.is_empty() {
        format!("user.{u}")
    } else {
        format!("{d}!user.{u}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_keeps_the_domain_whole() {
        assert_eq!(parent("user.fred.a.b"), Some("user.fred.a"));
        assert_eq!(parent("example.com!user.fred"), Some("example.com!user"));
        assert_eq!(parent("example.com!user"), None);
        assert_eq!(parent("shared"), None);
    }

    #[test]
    fn cyrus_hash_examples() {
        let root = Path::new("/s");
        assert_eq!(spool_dir(root, "user.fred.Sent", true, false), Path::new("/s/f/user/fred/Sent"));
        assert_eq!(
            spool_dir(root, "example.com!user.fred", true, false),
            Path::new("/s/domain/e/example.com/f/user/fred")
        );
        assert_eq!(spool_dir(root, "shared.news", true, false), Path::new("/s/n/shared/news"));
        assert_eq!(spool_dir(root, "user.1abc", true, false), Path::new("/s/q/user/1abc"));
        assert_eq!(spool_dir(root, "user.fred", false, false), Path::new("/s/user/fred"));
        // fulldirhash: 'A' + h % 23
        let h = dir_hash("fred", true);
        assert!(h.is_ascii_uppercase() && h <= 'W');
    }

    #[test]
    fn namespaces() {
        let ns = Namespace::new(true, true, "fred", false, "");
        assert_eq!(ns.to_internal("INBOX").unwrap(), "user.fred");
        assert_eq!(ns.to_internal("Sent").unwrap(), "user.fred.Sent");
        assert_eq!(ns.to_internal("a.b/c").unwrap(), "user.fred.a^b.c");
        assert_eq!(ns.to_internal("Other Users/bob/x").unwrap(), "user.bob.x");
        assert_eq!(ns.to_internal("Shared Folders/news").unwrap(), "news");
        assert_eq!(ns.to_external("user.fred.a^b.c").unwrap(), "a.b/c");
        assert_eq!(ns.to_external("user.bob").unwrap(), "Other Users/bob");
        // INBOX's children are not the folders beside it (Cyrus 3.x).
        assert_eq!(ns.to_internal("INBOX/Sent").unwrap(), "user.fred.INBOX.Sent");
        assert_eq!(ns.to_internal("inbox/a/b").unwrap(), "user.fred.INBOX.a.b");
        assert_eq!(ns.to_external("user.fred.INBOX.a.b").unwrap(), "INBOX/a/b");
        assert_eq!(ns.to_internal("INBOX/inbox"), Err(NameError::Invalid));
        let ns = Namespace::new(false, false, "fred", false, "");
        assert_eq!(ns.to_internal("INBOX.Sent").unwrap(), "user.fred.Sent");
        assert_eq!(ns.to_internal("user.bob.x").unwrap(), "user.bob.x");
        assert_eq!(ns.to_external("user.fred.Sent").unwrap(), "INBOX.Sent");
        assert_eq!(ns.to_external("user.fred").unwrap(), "INBOX");
    }

    #[test]
    fn bad_names() {
        let ns = Namespace::new(true, true, "fred", false, "");
        for bad in [
            "", "a//b", "../x", "a/./b", "x\0y", "x\ty", "a*", "a%", "&Jjo", "&A-", "é", "a^b", "&AGE-",
        ] {
            assert!(ns.to_internal(bad).is_err(), "{bad:?}");
        }
        assert!(ns.to_internal("&Jjo-").is_ok());
        assert!(ns.to_internal("A&-B").is_ok());
        assert_eq!(ns.to_internal(&"x".repeat(MAX_NAME + 1)), Err(NameError::TooLong));
        assert_eq!(ns.to_internal(&"x".repeat(MAX_COMPONENT + 1)), Err(NameError::TooLong));
        assert!(ns.to_internal(&"x".repeat(MAX_COMPONENT)).is_ok());
    }

    #[test]
    fn modified_utf7_both_ways() {
        for (u, m) in [
            ("Entwürfe", "Entw&APw-rfe"),
            ("a&b", "a&-b"),
            ("日本語", "&ZeVnLIqe-"),
            ("x 😀 y", "x &2D3eAA- y"),
        ] {
            assert_eq!(utf8_to_mutf7(u), m);
            assert_eq!(mutf7_to_utf8(m).as_deref(), Some(u));
            assert!(valid_mutf7(m));
        }
        assert_eq!(mutf7_to_utf8("&Jjo"), None);
        assert_eq!(mutf7_to_utf8("&2D3-"), None, "a lone surrogate");
    }

    #[test]
    fn virtual_domains() {
        let ns = Namespace::new(true, true, "fred@Example.com", true, "");
        assert_eq!(ns.inbox(), "example.com!user.fred");
        assert_eq!(ns.to_external("example.com!user.fred.Sent").unwrap(), "Sent");
        assert_eq!(ns.to_external("other.org!user.fred"), None);
        assert_eq!(user_inbox("bob@x.org", true, true, "x.org").unwrap(), "user.bob");
    }
}
