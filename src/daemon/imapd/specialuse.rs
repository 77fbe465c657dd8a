//! Special use (RFC 6154): the attributes CREATE and SETMETADATA take
//! (with imapd.conf's `specialuse_extra`), and Cyrus's rule that a
//! special use names one mailbox per user.

use super::acl::mailbox_owner;
use super::Session;

/// The special-use attributes of RFC 6154 (and RFC 8457's \Important)
/// that CREATE accepts (and mumail-migrate carries over).
pub const SPECIAL_USES: [&str; 8] = [
    "\\All",
    "\\Archive",
    "\\Drafts",
    "\\Flagged",
    "\\Important",
    "\\Junk",
    "\\Sent",
    "\\Trash",
];

/// CREATE's USE list, canonically spelled and space-separated; `extra`
/// is `specialuse_extra`, more attributes the site allows.
pub(super) fn special_use_list<'a>(uses: &[String], extra: &'a str) -> Result<String, &'static str> {
    let mut out: Vec<&'a str> = Vec::new();
    for u in uses {
        match SPECIAL_USES
            .iter()
            .copied()
            .chain(extra.split_whitespace())
            .find(|s| s.eq_ignore_ascii_case(u))
        {
            Some(s) if !out.contains(&s) => out.push(s),
            Some(_) => {}
            None => return Err("NO [USEATTR] Invalid annotation entry"),
        }
    }
    Ok(out.join(" "))
}

impl Session {
    /// `specialuse_nochildren`: whether `int` would be made under a
    /// mailbox (the closest that exists above it) whose special use is
    /// one of the option's, which Cyrus refuses (Permission denied) to
    /// anyone but an admin working outside their own mailboxes.  Uses
    /// compare without regard to case.
    pub(super) async fn nochildren_refused(&self, int: &str) -> bool {
        let forbidden: Vec<String> = match self.ctx.conf.get("specialuse_nochildren") {
            Some(f) if !f.trim().is_empty() => f.split_whitespace().map(str::to_string).collect(),
            _ => return false,
        };
        let user = self.user.clone().unwrap_or_default();
        if self.ctx.is_admin(&user) && mailbox_owner(int).as_deref() != Some(user.as_str()) {
            return false;
        }
        let name = int.to_string();
        let uses = self
            .blocking(move |s| {
                Ok(match s.nearest_parent(&name)? {
                    Some(p) => s.special_use(&p.name)?.unwrap_or_default(),
                    None => String::new(),
                })
            })
            .await
            .unwrap_or_default();
        uses.split_whitespace().any(|u| forbidden.iter().any(|f| f.eq_ignore_ascii_case(u)))
    }

    /// Whether another mailbox of the same user already has one of
    /// `uses` (a special use names one mailbox per user, as Cyrus
    /// keeps it).
    pub(super) async fn special_use_conflict(&self, int: &str, uses: &str) -> bool {
        let Some(owner) = mailbox_owner(int) else {
            return false;
        };
        if uses.is_empty() {
            return false;
        }
        let root = crate::store::names::user_root(int).unwrap_or_default();
        let all = self.blocking(move |s| s.special_uses_below(&root)).await.unwrap_or_default();
        all.iter().any(|(name, u)| {
            name != int
                && mailbox_owner(name).as_deref() == Some(owner.as_str())
                && u.split_whitespace()
                    .any(|x| uses.split_whitespace().any(|y| x.eq_ignore_ascii_case(y)))
        })
    }
}
