//! Cyrus ACL strings (`id\trights\t…`): the rights an identity holds
//! (negative `-id` entries taken away), RFC 4314 rights in Cyrus's
//! canonical form, an ACL with one entry changed, and a mailbox's owner
//! (who holds `implicit_owner_rights`).

/// The user owning a mailbox (`user.fred.Sent`: fred, with `@domain`
/// under virtdomains), None for a shared one.
pub fn mailbox_owner(name: &str) -> Option<String> {
    let (owner, dom, is_user) = crate::store::names::owner_of(name);
    is_user.then(|| if dom.is_empty() { owner } else { format!("{owner}@{dom}") }.replace('^', "."))
}

/// Rights of an id in a Cyrus ACL string (`id\trights\t…`), with
/// negative entries (`-id`) removing rights.
pub fn rights_of(acl: &str, ids: &[&str]) -> String {
    let mut pos = String::new();
    let mut neg = String::new();
    let mut it = acl.split('\t');
    while let (Some(id), Some(r)) = (it.next(), it.next()) {
        if let Some(n) = id.strip_prefix('-') {
            if ids.contains(&n) {
                neg.push_str(r);
            }
        } else if ids.contains(&id) {
            pos.push_str(r);
        }
    }
    let all = "lrswipkxtecdan";
    all.chars().filter(|c| pos.contains(*c) && !neg.contains(*c)).collect()
}

/// RFC 4314 rights text in Cyrus's canonical order (`lrswipkxte`, the
/// legacy `c` and `d` when `k` / `t` are present, then `a`, `n` and the
/// user-defined digits); `c` sets `k` and `x`, `d` sets `t` and `e`, as
/// Cyrus does (RFC 4314 2.1.1).  Err(letter) for one that is not a right.
pub fn canonical_rights(r: &str) -> Result<String, char> {
    let mut set = std::collections::BTreeSet::new();
    for c in r.chars() {
        match c {
            'l' | 'r' | 's' | 'w' | 'i' | 'p' | 'k' | 'x' | 't' | 'e' | 'a' | 'n' | '0'..='9' => {
                set.insert(c);
            }
            'c' => {
                set.insert('k');
                set.insert('x');
            }
            'd' => {
                set.insert('t');
                set.insert('e');
            }
            other => return Err(other),
        }
    }
    let mut out: String = "lrswipkxte".chars().filter(|c| set.contains(c)).collect();
    if set.contains(&'k') {
        out.push('c');
    }
    if set.contains(&'t') {
        out.push('d');
    }
    out.extend("an0123456789".chars().filter(|c| set.contains(c)));
    Ok(out)
}

/// An ACL string with `id`'s entry replaced (None removes it).
pub fn acl_with(acl: &str, id: &str, rights: Option<&str>) -> String {
    let mut out = String::new();
    let mut done = false;
    let mut it = acl.split('\t');
    while let (Some(who), Some(r)) = (it.next(), it.next()) {
        if who == id {
            if let (Some(nr), false) = (rights, done) {
                out.push_str(&format!("{who}\t{nr}\t"));
            }
            done = true;
        } else {
            out.push_str(&format!("{who}\t{r}\t"));
        }
    }
    if let (Some(nr), false) = (rights, done) {
        out.push_str(&format!("{id}\t{nr}\t"));
    }
    out
}

/// `id`'s current rights text in an ACL.
pub(super) fn acl_entry<'a>(acl: &'a str, id: &str) -> Option<&'a str> {
    let mut it = acl.split('\t');
    while let (Some(who), Some(r)) = (it.next(), it.next()) {
        if who == id {
            return Some(r);
        }
    }
    None
}
