//! Lookups in the mailbox list that must not read all of it: the
//! mailboxes under a prefix (a range of the key), and those whose ACL
//! names a user, `anyone` or a group (the `aclid` index kept beside the
//! list), which is where a user's LIST looks.

use super::db::lock;
use super::ops::{entry_from_row, ENTRY_COLS};
use super::{MailboxEntry, Result, Store};

/// The least string above every string that starts with `prefix` (its
/// last character's successor: UTF-8 keeps code point order, which is
/// SQLite's BINARY order), None for "" or a prefix that has no such
/// string.
pub(super) fn prefix_end(prefix: &str) -> Option<String> {
    let mut end = prefix.to_string();
    let last = end.pop()? as u32;
    let next = match last + 1 {
        0xD800 => 0xE000,
        n => n,
    };
    end.push(char::from_u32(next)?);
    Some(end)
}

impl Store {
    /// Every mailbox whose internal name starts with `prefix`, sorted.
    pub fn list_prefix(&self, prefix: &str) -> Result<Vec<MailboxEntry>> {
        let c = lock(&self.list);
        // A range of the key (the names from `prefix` up to the first
        // that cannot start with it), not a pass over every mailbox.
        let v = match prefix_end(prefix) {
            Some(end) => {
                let mut st = c.prepare_cached(&format!(
                    "SELECT {ENTRY_COLS} FROM mbox WHERE name >= ?1 AND name < ?2 ORDER BY name"
                ))?;
                let v = st
                    .query_map([prefix, end.as_str()], entry_from_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                v
            }
            None => {
                let mut st = c.prepare_cached(&format!(
                    "SELECT {ENTRY_COLS} FROM mbox WHERE substr(name, 1, length(?1)) = ?1 ORDER BY name"
                ))?;
                let v = st.query_map([prefix], entry_from_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
                v
            }
        };
        Ok(v)
    }

    /// The mailboxes whose ACL names one of `ids` (a user, `anyone`, the
    /// user's groups), by name: where a user's LIST looks, found through
    /// `aclid` without reading the other mailboxes.  The rights are the
    /// caller's to check (the ACL may name an id only to take rights
    /// away).
    pub fn list_naming(&self, ids: &[&str]) -> Result<Vec<MailboxEntry>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let c = lock(&self.list);
        let marks = vec!["?"; ids.len()].join(", ");
        let mut st = c.prepare_cached(&format!(
            "SELECT {ENTRY_COLS} FROM mbox WHERE name IN (SELECT name FROM aclid WHERE id IN ({marks})) ORDER BY name"
        ))?;
        let v = st
            .query_map(rusqlite::params_from_iter(ids), entry_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(v)
    }

    /// Whether `aclid` lacks what `e`'s ACL names, or has more.
    pub(super) fn acl_index_differs(&self, e: &MailboxEntry) -> Result<bool> {
        let c = lock(&self.list);
        let mut st = c.prepare_cached("SELECT id FROM aclid WHERE name=?1 ORDER BY id")?;
        let have = st
            .query_map([&e.name], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(have != super::murder::acl_ids(&e.acl))
    }
}

#[cfg(test)]
mod tests {
    use super::super::ops::tests::store;
    use super::*;
    use crate::store::Cached;

    #[test]
    fn mailboxes_found_by_the_ids_their_acl_names() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path());
        let names = |v: Vec<MailboxEntry>| v.into_iter().map(|e| e.name).collect::<Vec<_>>();
        s.create("user.fred", None, Some("fred\tlrswipkxtecdan\t")).unwrap();
        s.create("user.fred.Sent", None, Some("fred\tlrswipkxtecdan\t")).unwrap();
        s.create("user.bob", None, Some("bob\tlrswipkxtecdan\t")).unwrap();
        s.create("shared", None, Some("anyone\tlrs\t-fred\tr\t")).unwrap();
        // (`-fred` takes rights away: the shared one is not fred's to see.)
        assert_eq!(names(s.list_naming(&["fred"]).unwrap()), ["user.fred", "user.fred.Sent"]);
        assert_eq!(names(s.list_naming(&["anyone"]).unwrap()), ["shared"]);
        // An ACL change, a rename, a delayed delete and a removal keep it.
        s.set_acl("user.bob", "bob\tlrswipkxtecdan\tgroup:staff\tlr\t").unwrap();
        assert_eq!(names(s.list_naming(&["group:staff"]).unwrap()), ["user.bob"]);
        s.rename("user.fred.Sent", "user.fred.Old").unwrap();
        assert_eq!(names(s.list_naming(&["fred"]).unwrap()), ["user.fred", "user.fred.Old"]);
        s.delete("user.fred.Old").unwrap();
        let fred = names(s.list_naming(&["fred"]).unwrap());
        assert!(fred.len() == 2 && fred[0].starts_with("DELETED.user.fred.Old."), "{fred:?}");
        s.delete_now(&fred[0]).unwrap();
        s.delete_now("shared").unwrap();
        assert_eq!(names(s.list_naming(&["fred", "anyone"]).unwrap()), ["user.fred"]);
        // A list from before the index gets one when next opened.
        {
            let c = lock(&s.list);
            c.execute_batch("DELETE FROM aclid; PRAGMA user_version=0;").unwrap();
        }
        drop(s);
        let s = store(t.path());
        assert_eq!(names(s.list_naming(&["group:staff", "bob"]).unwrap()), ["user.bob"]);
        // reconstruct finds and mends a mailbox's entries gone astray.
        let none = |_: &[u8]| Cached::default();
        assert_eq!(s.reconstruct("user.bob", false, &none).unwrap(), []);
        lock(&s.list).execute("DELETE FROM aclid WHERE id='group:staff'", []).unwrap();
        assert!(s.list_naming(&["group:staff"]).unwrap().is_empty());
        assert_eq!(
            s.reconstruct("user.bob", true, &none).unwrap(),
            [crate::store::reconstruct::Repair::AclIndex]
        );
        assert!(s.list_naming(&["group:staff"]).unwrap().is_empty());
        assert_eq!(
            s.reconstruct("user.bob", false, &none).unwrap(),
            [crate::store::reconstruct::Repair::AclIndex]
        );
        assert_eq!(names(s.list_naming(&["group:staff"]).unwrap()), ["user.bob"]);
        // Prefixes are ranges of the key.
        assert_eq!(names(s.list_prefix("user.f").unwrap()), ["user.fred"]);
        assert_eq!(names(s.list_prefix("").unwrap()).len(), 2);
        assert_eq!(prefix_end("user.fred."), Some("user.fred/".to_string()));
        assert_eq!(prefix_end("a\u{d7ff}"), Some("a\u{e000}".to_string()));
        assert_eq!(prefix_end(""), None);
    }

    #[test]
    fn special_uses_of_the_names_asked() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path());
        for (n, u) in [
            ("user.fred", "\\Archive"),
            ("user.fred.Sent", "\\Sent"),
            ("user.fred-x.Sent", "\\Sent"),
            ("user.fredx.Trash", "\\Trash"),
            ("user.bob.Junk", "\\Junk"),
            ("shared.Drafts", "\\Drafts"),
        ] {
            s.set_special_use(n, u).unwrap();
        }
        // A user's range holds only theirs, not user.fred-x's or user.fredx's.
        let below: Vec<String> = s.special_uses_below("user.fred").unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(below, ["user.fred", "user.fred.Sent"]);
        let asked = [
            "user.fred.Sent",
            "user.fred.Drafts",
            "shared.Drafts",
            "shared.none",
            "user.bob.Junk",
        ];
        let got = s.special_uses_of(&asked).unwrap();
        let mut keys: Vec<&str> = got.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["shared.Drafts", "user.bob.Junk", "user.fred.Sent"]);
        assert_eq!(got["user.fred.Sent"], "\\Sent");
        // Past the threshold, one pass over the table gives the same.
        let many: Vec<String> = (0..crate::store::userdata::SPECIAL_USES_SCAN + 1)
            .map(|i| format!("user.u{i}"))
            .collect();
        let mut many: Vec<&str> = many.iter().map(String::as_str).collect();
        many.extend(asked);
        assert_eq!(s.special_uses_of(&many).unwrap(), got);
    }
}
