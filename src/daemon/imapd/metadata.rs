//! METADATA (RFC 5464): GETMETADATA and SETMETADATA on mailboxes and
//! the server, the entries Cyrus 3.6 answers (stored by `annotate.rs`).

use super::mailboxes::astring;
use super::specialuse::special_use_list;
use super::{Res, Session};
use crate::store::MailboxEntry;

/// The METADATA entries answered, in Cyrus's order.
const META_ENTRIES: [&str; 6] = [
    "/private/comment",
    "/shared/comment",
    "/private/specialuse",
    "/shared/vendor/cmu/cyrus-imapd/expire",
    "/shared/vendor/cmu/cyrus-imapd/size",
    "/shared/vendor/cmu/cyrus-imapd/partition",
];

/// `* METADATA name (entry value ...)`, or None when nothing is left to
/// show; values over `maxsize` are left out, and the longest of them is
/// returned (RFC 5464 4.2.1's LONGENTRIES).
pub(super) fn metadata_line(ext: &str, values: &[(String, Option<Vec<u8>>)], maxsize: Option<u64>) -> (Option<Vec<u8>>, usize) {
    let mut longest = 0usize;
    let mut line = b"* METADATA ".to_vec();
    astring_or_quoted(&mut line, ext.as_bytes());
    line.extend_from_slice(b" (");
    let mut shown = 0;
    for (e, v) in values {
        if let (Some(max), Some(v)) = (maxsize, v) {
            if v.len() as u64 > max {
                longest = longest.max(v.len());
                continue;
            }
        }
        if shown > 0 {
            line.push(b' ');
        }
        shown += 1;
        line.push(b'"');
        line.extend_from_slice(e.as_bytes());
        line.extend_from_slice(b"\" ");
        match v {
            None => line.extend_from_slice(b"NIL"),
            Some(v) => nstring_value(&mut line, v),
        }
    }
    line.extend_from_slice(b")\r\n");
    ((shown > 0).then_some(line), longest)
}

/// RFC 5464 3.2: an entry name is under /shared or /private (any case).
pub(super) fn meta_entry_ok(e: &str) -> bool {
    let l = e.as_bytes();
    l.len() >= 7 && l[..7].eq_ignore_ascii_case(b"/shared") || l.len() >= 8 && l[..8].eq_ignore_ascii_case(b"/private")
}

/// A mailbox name in a METADATA response: quoted when empty.
fn astring_or_quoted(out: &mut Vec<u8>, v: &[u8]) {
    if v.is_empty() {
        out.extend_from_slice(b"\"\"");
    } else {
        astring(out, v);
    }
}

/// A value: quoted when it can be, else a literal (as Cyrus sends
/// `\Drafts`).
fn nstring_value(out: &mut Vec<u8>, v: &[u8]) {
    if v.iter().all(|&b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(v);
        out.push(b'"');
    } else {
        out.extend_from_slice(format!("{{{}}}\r\n", v.len()).as_bytes());
        out.extend_from_slice(v);
    }
}

impl Session {
    /// The mailbox a METADATA command names ("" is the server).
    async fn metadata_target(&self, ext: &str, right: char) -> Result<Option<MailboxEntry>, String> {
        if ext.is_empty() {
            return Ok(None);
        }
        self.lookup_with(ext, right).await.map(Some)
    }

    /// The entry/value pairs a GETMETADATA, or LIST's `RETURN (METADATA
    /// ...)`, answers for one mailbox ("" for the server), in Cyrus's
    /// order. Cyrus asks its annotation table for every entry name asked
    /// crossed with every attribute asked (`/shared`, `/private`): names in
    /// the reverse order of the request, and under each name the values
    /// found (shared, then private) before the ones not found (private,
    /// then shared), which are NIL. The entries we keep: comments, special
    /// use, and the read-only vendor/cmu/cyrus-imapd size, partition and
    /// expire (shared only). The callers have checked that each
    /// entry is under /shared or /private.
    pub(super) async fn metadata_values(
        &self,
        target: Option<MailboxEntry>,
        entries: &[String],
        depth: &str,
    ) -> Result<Vec<(String, Option<Vec<u8>>)>, String> {
        // DEPTH 1 / infinity, and Cyrus's `/private/*` (cyradm's `info`):
        // the entries we know under each one asked, in our table's order.
        let mut expanded: Vec<String> = Vec::new();
        let mut wanted: Vec<String> = Vec::new();
        for e in entries {
            let e = e.to_ascii_lowercase();
            let star = e.strip_suffix("/*");
            if depth != "0" || star.is_some() {
                let prefix = format!("{}/", star.unwrap_or(&e).trim_end_matches('/'));
                for k in META_ENTRIES {
                    if let Some(rest) = k.strip_prefix(&prefix) {
                        if (depth == "infinity" || star.is_some() || !rest.contains('/')) && !expanded.iter().any(|x| x == k) {
                            expanded.push(k.to_string());
                        }
                    }
                }
            }
            if star.is_none() {
                wanted.push(e.clone());
            }
        }
        let pairs: Vec<(String, bool)> = if expanded.is_empty() {
            // The request crossed out: names in reverse order, each once.
            let mut names: Vec<&str> = Vec::new();
            let (mut shared, mut private) = (false, false);
            for w in wanted.iter().rev() {
                let (is_shared, name) = match w.strip_prefix("/shared") {
                    Some(n) => (true, n),
                    None => (false, w.strip_prefix("/private").unwrap_or(w)),
                };
                shared |= is_shared;
                private |= !is_shared;
                if !names.contains(&name) {
                    names.push(name);
                }
            }
            names
                .iter()
                .flat_map(|n| {
                    let shared_only = n.starts_with("/vendor/cmu/cyrus-imapd/");
                    [(format!("/shared{n}"), shared), (format!("/private{n}"), private && !shared_only)]
                })
                .filter(|(_, asked)| *asked)
                .map(|(e, _)| (e, true))
                .collect()
        } else {
            for w in wanted {
                if !expanded.contains(&w) {
                    expanded.push(w);
                }
            }
            expanded.sort_by_key(|e| META_ENTRIES.iter().position(|o| o == e).unwrap_or(META_ENTRIES.len()));
            expanded.into_iter().map(|e| (e, false)).collect()
        };
        let user = self.user.clone().unwrap_or_default();
        let name = target.as_ref().map(|e| e.name.clone()).unwrap_or_default();
        let values = self
            .blocking(move |s| {
                let mut out: Vec<(String, Option<Vec<u8>>)> = Vec::new();
                for (w, _) in &pairs {
                    let v = match w.as_str() {
                        "/private/comment" => s.annotation(&name, "/comment", &user)?,
                        "/shared/comment" => s.annotation(&name, "/comment", "")?,
                        "/shared/vendor/cmu/cyrus-imapd/expire" => s.annotation(&name, crate::store::expire::EXPIRE_ANNOTATION, "")?,
                        "/private/specialuse" => s.special_use(&name)?.map(String::into_bytes),
                        "/shared/vendor/cmu/cyrus-imapd/size" => match &target {
                            Some(e) => Some(s.counts(&e.name)?.0.size.to_string().into_bytes()),
                            None => None,
                        },
                        "/shared/vendor/cmu/cyrus-imapd/partition" => target.as_ref().map(|e| e.partition.clone().into_bytes()),
                        // The server's free space (KiB), which a Murder
                        // front end asks to place a new mailbox.
                        "/shared/vendor/cmu/cyrus-imapd/freespace" if target.is_none() => {
                            Some(s.free_space().0 .0.to_string().into_bytes())
                        }
                        "/shared/vendor/cmu/cyrus-imapd/freespace/total" if target.is_none() => {
                            let (a, t) = s.free_space().0;
                            Some(format!("{a};{t}").into_bytes())
                        }
                        "/shared/vendor/cmu/cyrus-imapd/freespace/percent/most" if target.is_none() => {
                            let (a, t) = s.free_space().1;
                            Some(format!("{a};{t}").into_bytes())
                        }
                        _ => None,
                    };
                    out.push((w.clone(), v));
                }
                Ok((out, pairs.first().is_some_and(|p| p.1)))
            })
            .await?;
        let (mut values, crossed) = values;
        if crossed {
            // Per name (a shared/private pair): found shared, found
            // private, then NIL private, NIL shared.
            let mut ordered = Vec::with_capacity(values.len());
            let mut i = 0;
            while i < values.len() {
                let tail = |e: &str| {
                    e.strip_prefix("/shared")
                        .or_else(|| e.strip_prefix("/private"))
                        .unwrap_or(e)
                        .to_string()
                };
                let n = tail(&values[i].0);
                let mut j = i;
                while j < values.len() && tail(&values[j].0) == n {
                    j += 1;
                }
                let group = &values[i..j];
                ordered.extend(group.iter().filter(|v| v.1.is_some()).cloned());
                ordered.extend(group.iter().rev().filter(|v| v.1.is_none()).cloned());
                i = j;
            }
            values = ordered;
        }
        Ok(values)
    }

    /// GETMETADATA (RFC 5464), answered as Cyrus does (see
    /// `metadata_values`).
    pub async fn getmetadata(&mut self, tag: &str, ext: &str, entries: &[String], maxsize: Option<u64>, depth: &str) -> Res {
        for e in entries {
            if !meta_entry_ok(e) {
                return self.tagged(tag, "BAD entry must begin with /shared or /private").await;
            }
        }
        // As Cyrus 3.6: a mailbox that exists answers, but only with `r`
        // (or to an admin) does it show any value.
        let admin = self.ctx.is_admin(self.user.as_deref().unwrap_or(""));
        let target = match ext.is_empty() {
            true => Some(None),
            false => match self.lookup_checked(ext, 'l', super::mailboxes::Implicit::Admin).await {
                Ok(e) => (admin || self.rights(&e).contains('r')).then_some(Some(e)),
                Err((_, true)) => None,
                Err((t, false)) => return self.tagged(tag, &t).await,
            },
        };
        let values = match target {
            Some(target) => match self.metadata_values(target, entries, depth).await {
                Ok(v) => v,
                Err(t) => return self.tagged(tag, &t).await,
            },
            None => Vec::new(),
        };
        let (line, longest) = metadata_line(ext, &values, maxsize);
        if let Some(line) = line {
            self.out_bytes(&line).await?;
        }
        if longest > 0 {
            return self.tagged(tag, &format!("OK [METADATA LONGENTRIES {longest}] Completed")).await;
        }
        self.tagged(tag, "OK Completed").await
    }

    /// SETMETADATA (RFC 5464): comments and the special use; server
    /// entries for admins only; anything else is refused as Cyrus does.
    pub async fn setmetadata(&mut self, tag: &str, ext: &str, values: Vec<(String, Option<Vec<u8>>)>) -> Res {
        for (e, _) in &values {
            if !meta_entry_ok(e) {
                return self.tagged(tag, "BAD entry must begin with /shared or /private").await;
            }
        }
        let user = self.user.clone().unwrap_or_default();
        let admin = self.ctx.is_admin(&user);
        if ext.is_empty() && !admin {
            return self.tagged(tag, "NO Permission denied").await;
        }
        let target = match self.metadata_target(ext, 'l').await {
            Ok(t) => t,
            Err(t) => return self.tagged(tag, &t).await,
        };
        let rights = target.as_ref().map(|e| self.rights(e)).unwrap_or_else(|| "lrswipkxtecdan".into());
        let name = target.as_ref().map(|e| e.name.clone()).unwrap_or_default();
        let mut ops: Vec<(String, String, Option<Vec<u8>>)> = Vec::new();
        let mut special: Option<Option<String>> = None;
        for (e, v) in values {
            match e.to_ascii_lowercase().as_str() {
                "/private/comment" => ops.push(("/comment".into(), user.clone(), v)),
                "/shared/comment" => {
                    if !rights.contains('w') && !admin {
                        return self.tagged(tag, "NO Permission denied").await;
                    }
                    ops.push(("/comment".into(), String::new(), v))
                }
                // cyr_expire's per-mailbox age in days (cyradm's
                // `mboxconfig … expire`): admins of the mailbox only.
                "/shared/vendor/cmu/cyrus-imapd/expire" if !name.is_empty() => {
                    if !rights.contains('a') {
                        return self.tagged(tag, "NO Permission denied").await;
                    }
                    if v.as_ref().is_some_and(|v| v.is_empty() || !v.iter().all(u8::is_ascii_digit)) {
                        return self.tagged(tag, "NO Invalid annotation value").await;
                    }
                    ops.push((crate::store::expire::EXPIRE_ANNOTATION.into(), String::new(), v))
                }
                "/private/specialuse" if !name.is_empty() => match v {
                    None => special = Some(None),
                    Some(v) => {
                        let words: Vec<String> = String::from_utf8_lossy(&v).split_whitespace().map(String::from).collect();
                        match special_use_list(&words, self.ctx.conf.get("specialuse_extra").unwrap_or("")) {
                            Ok(u) if self.special_use_conflict(&name, &u).await => {
                                return self.tagged(tag, "NO SPECIAL-USE flag conflict").await
                            }
                            Ok(u) => special = Some(Some(u)),
                            // METADATA's wording has no response code.
                            Err(_) => return self.tagged(tag, "NO Invalid annotation entry").await,
                        }
                    }
                },
                _ => return self.tagged(tag, "NO Permission denied").await,
            }
        }
        let r = self
            .blocking(move |s| {
                s.set_annotations(&name, &ops)?;
                if let Some(u) = special {
                    s.set_special_use(&name, u.as_deref().unwrap_or(""))?;
                }
                Ok(())
            })
            .await;
        match r {
            Ok(()) => self.tagged(tag, "OK Completed").await,
            Err(t) => self.tagged(tag, &t).await,
        }
    }
}
