//! The selected mailbox: SELECT/EXAMINE, the session's view of it
//! (sequence numbers, flags, modseq) kept in step with other sessions and
//! deliveries, FETCH, STORE, SEARCH, COPY/MOVE, EXPUNGE, CLOSE, IDLE.

use super::fetch_render::render_fetch;
use super::mailboxes::{astring, uid_set};
use super::search::{key_needs_file, read_header, HitQuery};
use super::sort;
use super::{Res, Session};
use crate::mail::mime::decode_words as decoded_field;
use crate::proto::imap::command::{FetchItem, SearchKey, SeqSet, StoreMode};
use crate::store::{FlagOp, Record, FLAG_ANSWERED, FLAG_DELETED, FLAG_DRAFT, FLAG_FLAGGED, FLAG_SEEN};
use std::time::Duration;

/// How often an IDLE session checks for changes made by other processes.
/// Messages rendered per store round trip in FETCH.
const FETCH_CHUNK: usize = 1024;

#[derive(Debug, Clone)]
pub struct Msg {
    pub uid: u32,
    pub flags: u32,
    /// Space-separated; empty without allocation for most messages.
    pub keywords: Box<str>,
    pub modseq: u64,
}

pub struct Selected {
    pub name: String,
    pub ext: String,
    pub id: i64,
    pub partition: String,
    pub readonly: bool,
    pub uidvalidity: u32,
    pub msgs: Vec<Msg>,
    pub modseq: u64,
    /// UIDs above this are \Recent in this session.
    pub recent_above: u32,
    pub condstore: bool,
    /// SEARCHRES `$`.
    pub saved: Vec<u32>,
    pub keywords: Vec<String>,
    /// (mtime, len) of the owner database's WAL when last synced.
    pub version: Option<(i128, u64)>,
    /// That WAL, watched.
    pub wal: crate::store::WalWatch,
    /// The session's input read count when the database was last looked
    /// at (Input::fills).
    pub looked_at: u64,
    /// How far message files were read ahead of the session's FETCHes.
    pub ahead: crate::store::ReadAhead,
    /// A reader who does not own the mailbox sees their own \Seen.
    pub seen: Option<Box<SeenView>>,
    /// The user's rights on the mailbox when selected.
    pub rights: Box<str>,
}

/// A non-owner's \Seen for the selected mailbox (Cyrus's seen state).
pub struct SeenView {
    /// The reader's INBOX (their database holds the set).
    pub reader: String,
    pub uniqueid: String,
    pub uids: std::collections::BTreeSet<u32>,
}

impl Selected {
    /// A record's flags as this session sees them.
    pub fn view(&self, uid: u32, flags: u32) -> u32 {
        match &self.seen {
            Some(v) if v.uids.contains(&uid) => flags | FLAG_SEEN,
            Some(_) => flags & !FLAG_SEEN,
            None => flags,
        }
    }
}

/// Whether `name` is in the hierarchy of the user whose INBOX is `inbox`.
pub fn owns(inbox: &str, name: &str) -> bool {
    !inbox.is_empty() && (name == inbox || name.strip_prefix(inbox).is_some_and(|r| r.starts_with('.')))
}

const SYSTEM: [(&str, u32); 5] = [
    ("\\Answered", FLAG_ANSWERED),
    ("\\Flagged", FLAG_FLAGGED),
    ("\\Draft", FLAG_DRAFT),
    ("\\Deleted", FLAG_DELETED),
    ("\\Seen", FLAG_SEEN),
];

/// Flag names → (system bits, keywords).  `\Recent` cannot be set.
pub fn parse_flags(flags: &[String]) -> (u32, Vec<String>) {
    let mut bits = 0;
    let mut kw: Vec<String> = Vec::new();
    for f in flags {
        if let Some((_, b)) = SYSTEM.iter().find(|(n, _)| n.eq_ignore_ascii_case(f)) {
            bits |= b;
        } else if !f.starts_with('\\') && !kw.iter().any(|k| k.eq_ignore_ascii_case(f)) {
            kw.push(f.clone());
        }
    }
    (bits, kw)
}

fn flags_text(flags: u32, keywords: &str, recent: bool) -> String {
    let mut out = Vec::with_capacity(32);
    push_flags(&mut out, flags, keywords, recent);
    String::from_utf8(out).unwrap_or_default()
}

/// `(\Recent \Seen kw …)` appended to `out`.
pub(super) fn push_flags(out: &mut Vec<u8>, flags: u32, keywords: &str, recent: bool) {
    out.push(b'(');
    let start = out.len();
    let add = |out: &mut Vec<u8>, w: &str| {
        if out.len() > start {
            out.push(b' ');
        }
        out.extend_from_slice(w.as_bytes());
    };
    if recent {
        add(out, "\\Recent");
    }
    for (n, b) in SYSTEM {
        if flags & b != 0 {
            add(out, n);
        }
    }
    for k in keywords.split(' ').filter(|k| !k.is_empty()) {
        add(out, k);
    }
    out.push(b')');
}

/// `* FLAGS` and `* OK [PERMANENTFLAGS]` for a keyword list; the
/// permanent ones are those the user's rights let them change, as Cyrus
/// (`w`: \Answered \Flagged \Draft and keywords, `t`: \Deleted, `s`: \Seen).
fn flags_lines(keywords: &[String], readonly: bool, rights: &str) -> Vec<String> {
    let kw = if keywords.is_empty() {
        String::new()
    } else {
        format!(" {}", keywords.join(" "))
    };
    let perm = if readonly {
        "* OK [PERMANENTFLAGS ()] Ok\r\n".to_string()
    } else {
        let mut p: Vec<&str> = Vec::new();
        let w = rights.contains('w');
        if w {
            p.extend(["\\Answered", "\\Flagged", "\\Draft"]);
        }
        if rights.contains('t') {
            p.push("\\Deleted");
        }
        if rights.contains('s') {
            p.push("\\Seen");
        }
        if w {
            p.extend(keywords.iter().map(String::as_str));
            p.push("\\*");
        }
        format!("* OK [PERMANENTFLAGS ({})] Ok\r\n", p.join(" "))
    };
    vec![format!("* FLAGS (\\Answered \\Flagged \\Draft \\Deleted \\Seen{kw})\r\n"), perm]
}

/// The version of the owner database (its WAL's mtime and length):
/// changes when any process commits.
fn db_version(path: &std::path::Path) -> Option<(i128, u64)> {
    crate::store::wal_version(path)
}

/// SORT's criteria (REVERSE flags) and its ANNOTATION criteria's
/// (entry, attribute) pairs.
type SortCriteria = (Vec<(String, bool)>, Vec<(String, String)>);

impl Session {
    pub async fn select(&mut self, tag: &str, ext: &str, examine: bool, params: crate::proto::imap::command::SelectParams) -> Res {
        if params.qresync.is_some() && !self.qresync {
            return self.tagged(tag, "BAD Invalid Select modifier QRESYNC").await;
        }
        self.condstore |= params.condstore;
        let condstore = self.condstore || self.qresync;
        if self.sel.take().is_some() | std::mem::take(&mut self.deleted_selected) {
            // RFC 7162 3.2.11 / RFC 9051: the old mailbox is closed.
            self.out("* OK [CLOSED] Ok\r\n").await?;
        }
        let e = match self.lookup_with(ext, 'r').await {
            Ok(e) => e,
            Err(t) => return self.tagged(tag, &t).await,
        };
        let rights = self.rights(&e);
        let readonly = examine || !(rights.contains('s') || rights.contains('w') || rights.contains('t') || rights.contains('e'));
        let name = e.name.clone();
        // Whoever may expunge is told when the mailbox's quota is nearly
        // full or over (Cyrus's warn_about_quota), ahead of the data.
        if rights.contains('e') {
            self.warn_about_quota(&name).await?;
        }
        let dbp = self.ctx.store.owner_db_path(&name);
        let wal = crate::store::WalWatch::new(&dbp);
        let inbox = self.ns.as_ref().map(|n| n.inbox()).unwrap_or_default();
        let reader = (!owns(&inbox, &e.name)).then(|| (inbox.clone(), e.uniqueid.clone()));
        let r2 = reader.clone();
        let res = self
            .blocking(move |s| {
                let version = db_version(&dbp);
                let (st, recs) = s.index(&name)?;
                // A reader has \Recent of their own, as \Seen.
                let last = st.uidnext.saturating_sub(1);
                let recent = match (&r2, examine) {
                    (Some((who, id)), true) => s.seen_recent(who, id, None)?,
                    (Some((who, id)), false) => s.seen_recent(who, id, Some(last))?,
                    (None, true) => st.recentuid,
                    (None, false) => s.take_recent(&name)?,
                };
                let seen = match &r2 {
                    Some((who, id)) => Some(s.seen_get(who, id)?),
                    None => None,
                };
                Ok((st, recs, recent, version, seen))
            })
            .await;
        let (st, recs, recent_above, version, seen) = match res {
            Ok(v) => v,
            Err(t) => return self.tagged(tag, &t).await,
        };
        // IMAP4rev2 has no \Recent.
        let recent_above = if self.rev2 { u32::MAX } else { recent_above };
        let seen = reader.zip(seen).map(|((reader, uniqueid), uids)| {
            Box::new(SeenView {
                reader,
                uniqueid,
                uids: uids.into_iter().collect(),
            })
        });
        let msgs: Vec<Msg> = recs
            .into_iter()
            .map(|(uid, flags, keywords, modseq)| Msg {
                uid,
                flags: match &seen {
                    Some(v) if v.uids.contains(&uid) => flags | FLAG_SEEN,
                    Some(_) => flags & !FLAG_SEEN,
                    None => flags,
                },
                keywords: keywords.into_boxed_str(),
                modseq,
            })
            .collect();
        let keywords = st.keywords.clone();
        let recent = msgs.iter().filter(|m| m.uid > recent_above).count();
        let first_unseen = msgs.iter().position(|m| m.flags & FLAG_SEEN == 0);
        if self.rev2 {
            self.out(&format!("* {} EXISTS\r\n", msgs.len())).await?;
        } else {
            self.out(&format!("* {} EXISTS\r\n* {recent} RECENT\r\n", msgs.len())).await?;
        }
        for l in flags_lines(&keywords, readonly, &rights) {
            self.out(&l).await?;
        }
        if let Some(u) = first_unseen {
            self.out(&format!("* OK [UNSEEN {}] Ok\r\n", u + 1)).await?;
        }
        self.out(&format!(
            "* OK [UIDVALIDITY {}] Ok\r\n* OK [UIDNEXT {}] Ok\r\n* OK [HIGHESTMODSEQ {}] Ok\r\n* OK [MAILBOXID ({})] Ok\r\n* OK [URLMECH INTERNAL] Ok\r\n* OK [ANNOTATIONS {}] Ok\r\n",
            st.uidvalidity,
            st.uidnext,
            st.highestmodseq,
            st.uniqueid,
            super::annotate::MAX_SIZE
        ))
        .await?;
        self.sel = Some(Selected {
            name: e.name.clone(),
            ext: ext.to_string(),
            id: st.id,
            partition: e.partition.clone(),
            readonly,
            uidvalidity: st.uidvalidity,
            msgs,
            modseq: st.highestmodseq,
            recent_above,
            condstore,
            saved: Vec::new(),
            keywords,
            version,
            wal,
            looked_at: self.input.fills(),
            ahead: Default::default(),
            seen,
            rights: rights.clone().into_boxed_str(),
        });
        if let Some((uv, since, known)) = params.qresync {
            if uv == st.uidvalidity {
                Box::pin(self.qresync_report(since, known.as_ref(), None)).await?;
            }
        }
        self.tagged(
            tag,
            if readonly {
                "OK [READ-ONLY] Completed"
            } else {
                "OK [READ-WRITE] Completed"
            },
        )
        .await
    }

    /// `sync(false)` before a FETCH, but not again for a command that came
    /// in the same read of the client's input as the last look (mbsync
    /// pipelines a FETCH per message): that look was taken after the
    /// whole command had arrived, so it already saw whatever the client
    /// could have waited for before sending it.  NOOP, CHECK, IDLE and the
    /// session's own changes always look.
    async fn sync_pipelined(&mut self) -> Res {
        if self.sel.as_ref().is_some_and(|s| s.looked_at == self.input.fills()) {
            return Ok(());
        }
        self.sync(false).await
    }

    /// Brings the session's view up to date, reporting new messages, flag
    /// changes and (when allowed) expunges.
    pub async fn sync(&mut self, allow_expunge: bool) -> Res {
        let fills = self.input.fills();
        let Some(sel) = &mut self.sel else { return Ok(()) };
        sel.looked_at = fills;
        // Nothing committed to the owner's database since the last look
        // (its WAL unchanged): nothing to report.  One fstat instead of a
        // query per command.
        if sel.version.is_some() && sel.wal.version() == sel.version {
            return Ok(());
        }
        let name = sel.name.clone();
        let since = sel.modseq;
        let dbp = self.ctx.store.owner_db_path(&name);
        let res = self.blocking(move |s| Ok((db_version(&dbp), s.changes_since(&name, since)?))).await;
        let (version, (st, recs)) = match res {
            Ok(v) => v,
            Err(_) => return Ok(()),
        };
        let rev2 = self.rev2;
        let Some(sel) = &mut self.sel else { return Ok(()) };
        let mut lines: Vec<String> = Vec::new();
        let new_flags = if st.keywords != sel.keywords {
            sel.keywords = st.keywords.clone();
            flags_lines(&sel.keywords, sel.readonly, &sel.rights)
        } else {
            Vec::new()
        };
        let mut held_back = false;
        let mut added = 0usize;
        let qresync = self.qresync;
        let mut vanished: Vec<u32> = Vec::new();
        for mut r in recs {
            r.flags = sel.view(r.uid, r.flags);
            let pos = sel.msgs.binary_search_by_key(&r.uid, |m| m.uid);
            if r.expunged() {
                if let Ok(i) = pos {
                    if allow_expunge {
                        sel.msgs.remove(i);
                        if qresync {
                            vanished.push(r.uid);
                        } else {
                            lines.push(format!("* {} EXPUNGE\r\n", i + 1));
                        }
                    } else {
                        held_back = true;
                    }
                }
                continue;
            }
            match pos {
                Ok(i) => {
                    let m = &mut sel.msgs[i];
                    if m.flags != r.flags || *m.keywords != *r.keywords {
                        m.flags = r.flags;
                        m.keywords = r.keywords.clone().into_boxed_str();
                        let mut ms = if qresync { format!(" UID {}", r.uid) } else { String::new() };
                        if sel.condstore {
                            ms.push_str(&format!(" MODSEQ ({})", r.modseq));
                        }
                        lines.push(format!(
                            "* {} FETCH (FLAGS {}{ms})\r\n",
                            i + 1,
                            flags_text(r.flags, &r.keywords, r.uid > sel.recent_above)
                        ));
                    }
                    m.modseq = r.modseq;
                }
                Err(i) => {
                    // New messages only ever come at the end (UIDs grow).
                    added += 1;
                    sel.msgs.insert(
                        i,
                        Msg {
                            uid: r.uid,
                            flags: r.flags,
                            keywords: r.keywords.clone().into_boxed_str(),
                            modseq: r.modseq,
                        },
                    );
                }
            }
        }
        if !vanished.is_empty() {
            // RFC 7162 3.2.10: with QRESYNC, one VANISHED for them all.
            vanished.sort_unstable();
            lines.insert(0, format!("* VANISHED {}\r\n", super::mailboxes::uid_set(&vanished)));
        }
        // EXPUNGE responses count down by themselves; EXISTS only when
        // messages arrived.
        let mut claim_recent = None;
        if added > 0 {
            let recent = sel.msgs.iter().filter(|m| m.uid > sel.recent_above).count();
            lines.push(format!("* {} EXISTS\r\n", sel.msgs.len()));
            if !rev2 {
                lines.push(format!("* {recent} RECENT\r\n"));
            }
            if !sel.readonly {
                // This session has now seen them: \Recent for nobody else.
                let reader = sel.seen.as_ref().map(|v| (v.reader.clone(), v.uniqueid.clone()));
                claim_recent = sel.msgs.last().map(|m| (sel.name.clone(), m.uid, reader));
            }
        }
        // Cyrus announces newly defined keywords after EXISTS/RECENT.
        lines.extend(new_flags);
        if !held_back {
            sel.modseq = st.highestmodseq;
            sel.version = version;
        }
        for l in lines {
            self.out(&l).await?;
        }
        if let Some((name, uid, reader)) = claim_recent {
            let _ = self
                .blocking(move |s| match reader {
                    Some((who, id)) => s.seen_recent(&who, &id, Some(uid)).map(|_| ()),
                    None => s.set_recent(&name, uid),
                })
                .await;
        }
        Ok(())
    }

    /// The indexes (0-based) a set names.
    pub(super) fn resolve(&self, set: &SeqSet, uid: bool) -> Vec<usize> {
        let Some(sel) = &self.sel else { return Vec::new() };
        let n = sel.msgs.len();
        match set {
            SeqSet::Saved => sel
                .saved
                .iter()
                .filter_map(|u| sel.msgs.binary_search_by_key(u, |m| m.uid).ok())
                .collect(),
            // Each range becomes an index range (binary search over the
            // UIDs): a FETCH of one message costs O(log n), not O(n).
            SeqSet::Ranges(r) => {
                let max = if uid { sel.msgs.last().map_or(0, |m| m.uid) } else { n as u32 };
                let mut out: Vec<usize> = Vec::new();
                for &(a, b) in r {
                    let a = if a == u32::MAX { max } else { a };
                    let b = if b == u32::MAX { max } else { b };
                    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
                    let (from, to) = if uid {
                        (sel.msgs.partition_point(|m| m.uid < lo), sel.msgs.partition_point(|m| m.uid <= hi))
                    } else {
                        ((lo.max(1) as usize - 1).min(n), (hi as usize).min(n))
                    };
                    out.extend(from..to.max(from));
                }
                if r.len() > 1 {
                    out.sort_unstable();
                    out.dedup();
                }
                out
            }
        }
    }

    pub async fn close(&mut self, tag: &str, expunge: bool) -> Res {
        if expunge {
            if let Some(sel) = &self.sel {
                if !sel.readonly {
                    let name = sel.name.clone();
                    let _ = self.blocking(move |s| s.expunge(&name, None)).await;
                }
            }
        }
        self.sel = None;
        self.tagged(tag, "OK Completed").await
    }

    pub async fn expunge(&mut self, tag: &str, set: Option<SeqSet>) -> Res {
        let Some(sel) = &self.sel else { return Ok(()) };
        if sel.readonly {
            return self.tagged(tag, "NO Mailbox is read-only").await;
        }
        let name = sel.name.clone();
        let uids: Option<Vec<u32>> = set.map(|s| {
            let mut v: Vec<u32> = self
                .resolve(&s, true)
                .iter()
                .map(|&i| self.sel.as_ref().map_or(0, |x| x.msgs[i].uid))
                .collect();
            v.sort_unstable();
            v
        });
        if let Err(t) = self.blocking(move |s| s.expunge(&name, uids.as_deref())).await {
            return self.tagged(tag, &t).await;
        }
        self.sync(true).await?;
        let hm = self.sel.as_ref().map_or(0, |s| s.modseq);
        self.tagged(tag, &format!("OK [HIGHESTMODSEQ {hm}] Completed")).await
    }

    pub async fn fetch(
        &mut self,
        tag: &str,
        uid: bool,
        set: SeqSet,
        mut items: Vec<FetchItem>,
        changedsince: Option<u64>,
        vanished: bool,
    ) -> Res {
        self.sync_pipelined().await?;
        if uid && !items.contains(&FetchItem::Uid) {
            items.insert(0, FetchItem::Uid);
        }
        let condstore = changedsince.is_some() || items.contains(&FetchItem::ModSeq);
        if condstore {
            if !self.condstore {
                // The session's first CONDSTORE-enabling command (RFC 7162
                // 3.1), in Cyrus's words.
                self.condstore = true;
                let hms = self.sel.as_ref().map_or(0, |s| s.modseq);
                self.out(&format!("* OK [HIGHESTMODSEQ {hms}] CONDSTORE enabled by MODSEQ fetch\r\n"))
                    .await?;
            }
            if let Some(s) = &mut self.sel {
                s.condstore = true;
            }
            if !items.contains(&FetchItem::ModSeq) {
                items.push(FetchItem::ModSeq);
            }
        }
        if let (true, Some(since)) = (vanished, changedsince) {
            // UID FETCH (CHANGEDSINCE n VANISHED): expunged UIDs of the set
            // first (RFC 7162 3.2.6).
            Box::pin(self.qresync_report(since, Some(&set), Some(()))).await?;
        }
        let mut idx = self.resolve(&set, uid);
        // As Cyrus: numbers past the last message are ignored, and a
        // FETCH by number that names none says so.
        if idx.is_empty() && !uid {
            return self.tagged(tag, "NO No matching messages").await;
        }
        if let Some(cs) = changedsince {
            let sel = self.sel.as_ref().map(|s| s.msgs.clone()).unwrap_or_default();
            idx.retain(|&i| sel[i].modseq > cs);
        }
        let (readonly, name, id) = match &self.sel {
            Some(s) => (s.readonly, s.name.clone(), s.id),
            None => return Ok(()),
        };
        // Reading a body sets \Seen (RFC 3501 6.4.5) unless .PEEK or read-only.
        let sets_seen = !readonly
            && items.iter().any(|i| {
                matches!(i, FetchItem::Rfc822 | FetchItem::Rfc822Text)
                    || matches!(
                        i,
                        FetchItem::BodySection { peek: false, .. } | FetchItem::Binary { peek: false, .. }
                    )
            });
        let needs_file = items.iter().any(|i| {
            matches!(
                i,
                FetchItem::Rfc822
                    | FetchItem::Rfc822Header
                    | FetchItem::Rfc822Text
                    | FetchItem::BodySection { .. }
                    | FetchItem::Binary { .. }
                    | FetchItem::BinarySize(_)
                    | FetchItem::Preview
            )
        });
        let needs_cache: u8 = items
            .iter()
            .map(|i| match i {
                FetchItem::Envelope => 1,
                FetchItem::BodyStructure => 2,
                FetchItem::Body => 4,
                _ => 0,
            })
            .fold(0, |a, b| a | b);
        let needs_record = items.iter().any(|i| {
            matches!(
                i,
                FetchItem::InternalDate
                    | FetchItem::Rfc822Size
                    | FetchItem::SaveDate
                    | FetchItem::CreatedModSeq
                    | FetchItem::EmailId
                    | FetchItem::DigestSha1
            )
        });
        if sets_seen {
            let uids: Vec<u32> = idx
                .iter()
                .filter_map(|&i| self.sel.as_ref().map(|s| &s.msgs[i]))
                .filter(|m| m.flags & FLAG_SEEN == 0)
                .map(|m| m.uid)
                .collect();
            let reader = self
                .sel
                .as_ref()
                .and_then(|s| s.seen.as_ref())
                .map(|v| (v.reader.clone(), v.uniqueid.clone()));
            if let (false, Some((who, id))) = (uids.is_empty(), reader) {
                // A reader's \Seen goes to their own seen set.
                let mut all: Vec<u32> = self
                    .sel
                    .as_ref()
                    .and_then(|s| s.seen.as_ref())
                    .map(|v| v.uids.iter().copied().collect())
                    .unwrap_or_default();
                all.extend(&uids);
                all.sort_unstable();
                all.dedup();
                if self.blocking(move |s| s.seen_put(&who, &id, &all)).await.is_ok() {
                    if let Some(sel) = &mut self.sel {
                        if let Some(v) = &mut sel.seen {
                            v.uids.extend(&uids);
                        }
                        for u in &uids {
                            if let Ok(i) = sel.msgs.binary_search_by_key(u, |m| m.uid) {
                                sel.msgs[i].flags |= FLAG_SEEN;
                            }
                        }
                    }
                }
            } else if !uids.is_empty() {
                let n = name.clone();
                if let Ok((changed, _)) = self
                    .blocking(move |s| s.store_flags(&n, &uids, FlagOp::Add, FLAG_SEEN, &[], None))
                    .await
                {
                    if let Some(sel) = &mut self.sel {
                        for r in changed {
                            if let Ok(i) = sel.msgs.binary_search_by_key(&r.uid, |m| m.uid) {
                                sel.msgs[i].flags = r.flags;
                                sel.msgs[i].modseq = r.modseq;
                            }
                        }
                    }
                }
            }
        }
        // ANNOTATION (RFC 5257): what was asked (the first such item).
        let annot_req = items.iter().find_map(|i| match i {
            FetchItem::Annotation { entries, attribs } => Some((entries.clone(), attribs.clone())),
            _ => None,
        });
        let user = self.user.clone().unwrap_or_default();
        for chunk in idx.chunks(FETCH_CHUNK) {
            let uids: Vec<u32> = chunk.iter().filter_map(|&i| self.sel.as_ref().map(|s| s.msgs[i].uid)).collect();
            let mut annots: std::collections::HashMap<u32, Vec<crate::store::msgannot::MsgAnnot>> = Default::default();
            if annot_req.is_some() {
                let (n, u2, who) = (name.clone(), uids.clone(), user.clone());
                match self.blocking(move |s| s.msg_annotations(&n, &u2, Some(&who))).await {
                    Ok(v) => {
                        for a in v {
                            annots.entry(a.uid).or_default().push(a);
                        }
                    }
                    Err(t) => return self.tagged(tag, &t).await,
                }
            }
            let n = name.clone();
            let u2 = uids.clone();
            let part = self.sel.as_ref().map(|s| s.partition.clone()).unwrap_or_default();
            // A FETCH of a few small messages (mbsync's one per command)
            // runs here when the database connection is free: a page-cache
            // read of up to INLINE_READ_MAX costs less than the two thread
            // hand-offs of the blocking pool.
            let inline = if uids.len() <= 4 && (needs_record || needs_file || needs_cache != 0) {
                self.ctx
                    .store
                    .try_fetch_rows(&name, id, &uids, needs_cache)
                    .and_then(|r| r.ok())
                    .filter(|rows| !needs_file || rows.iter().map(|r| r.0.size).sum::<u64>() <= INLINE_READ_MAX)
                    .map(|rows| {
                        let files = needs_file.then(|| super::fetch_render::message_files(&self.ctx.store, &name, &part, &rows));
                        (rows, files)
                    })
            } else {
                None
            };
            let (rows, files) = if let Some(v) = inline {
                v
            } else if needs_record || needs_file || needs_cache != 0 {
                // Small bodies are read in the same trip to the blocking
                // pool as their records (a client fetching one message per
                // command, as mbsync does, waits for one hop, not two).
                let r = self
                    .blocking(move |s| {
                        let rows = s.fetch_rows(&n, id, &u2, needs_cache)?;
                        let total: u64 = rows.iter().map(|r| r.0.size).sum();
                        let files = (needs_file && total <= PREFETCH_MAX).then(|| super::fetch_render::message_files(s, &n, &part, &rows));
                        Ok((rows, files))
                    })
                    .await;
                match r {
                    Ok(v) => v,
                    Err(t) => return self.tagged(tag, &t).await,
                }
            } else {
                (Vec::new(), None)
            };
            let (mut files, cold) = match files {
                Some((f, cold)) => (Some(f), cold),
                None => (None, false),
            };
            // Reading ahead serves FETCHes of message files only.
            if let (true, Some(sel), Some(&last)) = (needs_file, self.sel.as_mut(), chunk.last()) {
                let ahead = sel.ahead.after(last, sel.msgs.len(), cold);
                if !ahead.is_empty() {
                    let paths: Vec<std::path::PathBuf> = sel.msgs[ahead]
                        .iter()
                        .filter_map(|m| self.ctx.store.message_path(&sel.name, &sel.partition, m.uid).ok())
                        .collect();
                    crate::store::read_ahead(paths);
                }
            }
            let mut next_row = 0;
            for &i in chunk {
                let line = {
                    let Some(sel) = self.sel.as_ref() else {
                        break;
                    };
                    let m = &sel.msgs[i];
                    // Rows come in UID order, as the chunk does.
                    while next_row < rows.len() && rows[next_row].0.uid < m.uid {
                        next_row += 1;
                    }
                    let row = rows.get(next_row).filter(|r| r.0.uid == m.uid);
                    let rec = row.map(|r| &r.0);
                    let cache = row.and_then(|r| r.1.as_ref());
                    let pre = files.as_mut().and_then(|f| f.get_mut(next_row)).and_then(|d| d.take());
                    let data = match (needs_file, pre) {
                        (true, Some(d)) if row.is_some() => {
                            if rec.is_some_and(|r| r.size != d.len() as u64) {
                                self.ctx
                                    .log
                                    .error(&format!("IOERROR: size mismatch for {} uid {}", sel.name, m.uid));
                            }
                            Some(d)
                        }
                        (true, _) => self.read_message(m, rec).await,
                        _ => None,
                    };
                    let recent = m.uid > sel.recent_above;
                    let annotation = annot_req.as_ref().map(|(e, a)| {
                        let mine = annots.get(&m.uid).map(Vec::as_slice).unwrap_or_default();
                        let mut o = Vec::new();
                        super::annotate::render(&mut o, &super::annotate::fetch(e, a, mine, &user));
                        o
                    });
                    render_fetch(
                        i + 1,
                        m,
                        rec,
                        cache,
                        data.as_deref(),
                        &items,
                        recent,
                        sets_seen,
                        annotation.as_deref(),
                    )
                };
                self.out_bytes(&line).await?;
            }
        }
        self.tagged(tag, "OK Completed (0.000 sec)").await
    }
}

/// Bodies of a FETCH chunk up to this total are read with its records.
const PREFETCH_MAX: u64 = 1 << 20;
/// ... and without leaving the async worker, for up to four messages.
const INLINE_READ_MAX: u64 = 64 * 1024;

impl Session {
    async fn read_message(&self, m: &Msg, rec: Option<&Record>) -> Option<Vec<u8>> {
        let sel = self.sel.as_ref()?;
        let path = self.ctx.store.message_path(&sel.name, &sel.partition, m.uid).ok()?;
        let size = rec.map(|r| r.size)?;
        // Every read has a limit: the record's size bounds it.
        let data = tokio::task::spawn_blocking(move || crate::store::read_message(&path, size))
            .await
            .ok()?
            .ok()?;
        if data.len() as u64 != size {
            self.ctx
                .log
                .error(&format!("IOERROR: size mismatch for {} uid {}", sel.name, m.uid));
        }
        Some(data)
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn store(
        &mut self,
        tag: &str,
        uid: bool,
        set: SeqSet,
        mode: StoreMode,
        silent: bool,
        flags: Vec<String>,
        unchangedsince: Option<u64>,
    ) -> Res {
        // \Recent and unknown system flags cannot be stored (Cyrus's words).
        if flags
            .iter()
            .any(|f| f.starts_with('\\') && !SYSTEM.iter().any(|(n, _)| n.eq_ignore_ascii_case(f)))
        {
            return self.tagged(tag, "BAD Invalid system flag in Store command").await;
        }
        let Some(sel) = &self.sel else { return Ok(()) };
        if sel.readonly {
            return self.tagged(tag, "NO Mailbox is read-only").await;
        }
        let name = sel.name.clone();
        let entry = self.ctx.store.lookup(&name).ok().flatten();
        let rights = entry.as_ref().map(|e| self.rights(e)).unwrap_or_default();
        let (mut bits, kw) = parse_flags(&flags);
        // Flags the user has no right to change are silently dropped, as Cyrus does.
        if !rights.contains('s') {
            bits &= !FLAG_SEEN;
        }
        if !rights.contains('t') {
            bits &= !FLAG_DELETED;
        }
        let kw = if rights.contains('w') { kw } else { Vec::new() };
        if !rights.contains('w') {
            bits &= FLAG_SEEN | FLAG_DELETED;
        }
        let idx = self.resolve(&set, uid);
        let uids: Vec<u32> = idx.iter().filter_map(|&i| self.sel.as_ref().map(|s| s.msgs[i].uid)).collect();
        let mut op = match mode {
            StoreMode::Add => FlagOp::Add,
            StoreMode::Remove => FlagOp::Remove,
            StoreMode::Replace => FlagOp::Replace,
        };
        // A reader's \Seen changes their own seen set, not the records.
        let mut seen_changed: Vec<u32> = Vec::new();
        let reader = self
            .sel
            .as_ref()
            .and_then(|s| s.seen.as_ref())
            .map(|v| (v.reader.clone(), v.uniqueid.clone()));
        if let Some((who, id)) = reader {
            let touches = rights.contains('s') && (mode == StoreMode::Replace || bits & FLAG_SEEN != 0);
            if touches {
                let want = mode != StoreMode::Remove && bits & FLAG_SEEN != 0;
                let mut set = self
                    .sel
                    .as_ref()
                    .and_then(|s| s.seen.as_ref())
                    .map(|v| v.uids.clone())
                    .unwrap_or_default();
                for u in &uids {
                    if want && set.insert(*u) || !want && set.remove(u) {
                        seen_changed.push(*u);
                    }
                }
                if !seen_changed.is_empty() {
                    let all: Vec<u32> = set.iter().copied().collect();
                    if let Err(t) = self.blocking(move |s| s.seen_put(&who, &id, &all)).await {
                        return self.tagged(tag, &t).await;
                    }
                    if let Some(sel) = &mut self.sel {
                        for u in &seen_changed {
                            if let Ok(i) = sel.msgs.binary_search_by_key(u, |m| m.uid) {
                                sel.msgs[i].flags ^= FLAG_SEEN;
                            }
                        }
                        if let Some(v) = &mut sel.seen {
                            v.uids = set;
                        }
                    }
                }
            }
            bits &= !FLAG_SEEN;
            if op == FlagOp::Replace {
                op = FlagOp::ReplaceKeeping(FLAG_SEEN);
            }
        }
        if unchangedsince.is_some() {
            self.condstore = true;
            if let Some(s) = &mut self.sel {
                s.condstore = true;
            }
        }
        let kw2 = kw.clone();
        let (changed, failed) = match self
            .blocking(move |s| s.store_flags(&name, &uids, op, bits, &kw2, unchangedsince))
            .await
        {
            Ok(v) => v,
            Err(t) => return self.tagged(tag, &t).await,
        };
        let Some(sel) = &mut self.sel else { return Ok(()) };
        let mut lines = Vec::new();
        let before = sel.keywords.len();
        if mode != StoreMode::Remove {
            for k in &kw {
                if !sel.keywords.iter().any(|x| x.eq_ignore_ascii_case(k)) {
                    sel.keywords.push(k.clone());
                }
            }
        }
        if sel.keywords.len() != before {
            lines.extend(flags_lines(&sel.keywords, sel.readonly, &sel.rights));
        }
        // Cyrus 3.6 reports the new flags even for .SILENT (observed with
        // the real server); clients cope with the extra FETCH.
        let _ = silent;
        for r in &changed {
            if let Ok(i) = sel.msgs.binary_search_by_key(&r.uid, |m| m.uid) {
                sel.msgs[i].flags = sel.view(r.uid, r.flags);
                sel.msgs[i].keywords = r.keywords.clone().into_boxed_str();
                sel.msgs[i].modseq = r.modseq;
            }
        }
        // One FETCH per message whose flags changed, in the records or in
        // the reader's seen set.
        let mut touched: Vec<u32> = changed.iter().map(|r| r.uid).chain(seen_changed.iter().copied()).collect();
        touched.sort_unstable();
        touched.dedup();
        lines.extend(self.changed_lines(uid, &touched, &changed));
        for l in lines {
            self.out(&l).await?;
        }
        self.store_done(tag, uid, &failed).await
    }

    /// The FETCH (FLAGS [UID] [MODSEQ]) lines a STORE sends for the
    /// messages it changed (`changed` has their new records); the
    /// session's own change is not news to it afterwards.
    pub(super) fn changed_lines(&mut self, uid: bool, touched: &[u32], changed: &[crate::store::Record]) -> Vec<String> {
        let qresync = self.qresync;
        let Some(sel) = &mut self.sel else { return Vec::new() };
        let mut lines = Vec::new();
        for u in touched {
            if let Ok(i) = sel.msgs.binary_search_by_key(u, |m| m.uid) {
                let m = &sel.msgs[i];
                let mut l = format!("* {} FETCH (", i + 1);
                let mut parts = vec![format!("FLAGS {}", flags_text(m.flags, &m.keywords, m.uid > sel.recent_above))];
                // With QRESYNC every FETCH carries the UID (RFC 7162 3.2.4).
                if uid || qresync {
                    parts.push(format!("UID {}", m.uid));
                }
                if sel.condstore {
                    parts.push(format!("MODSEQ ({})", m.modseq));
                }
                l.push_str(&parts.join(" "));
                l.push_str(")\r\n");
                lines.push(l);
            }
        }
        if let Some(max) = changed.iter().map(|r| r.modseq).max() {
            if max == sel.modseq + 1 {
                sel.modseq = max;
            }
        }
        lines
    }

    /// A STORE's tagged answer: `[MODIFIED set]` for the messages
    /// UNCHANGEDSINCE kept (RFC 7162 3.1.3).
    pub(super) async fn store_done(&mut self, tag: &str, uid: bool, failed: &[u32]) -> Res {
        if !failed.is_empty() {
            let set = if uid {
                uid_set(failed)
            } else {
                let sel = self.sel.as_ref();
                let seqs: Vec<u32> = failed
                    .iter()
                    .filter_map(|u| {
                        sel.and_then(|s| s.msgs.binary_search_by_key(u, |m| m.uid).ok())
                            .map(|i| i as u32 + 1)
                    })
                    .collect();
                uid_set(&seqs)
            };
            return self.tagged(tag, &format!("OK [MODIFIED {set}] Conditional STORE failed")).await;
        }
        self.tagged(tag, "OK Completed").await
    }

    pub async fn search(&mut self, tag: &str, uid: bool, ret: Option<Vec<String>>, charset: Option<String>, key: SearchKey) -> Res {
        let has_modseq = mentions_modseq(&key);
        if let Some(cs) = &charset {
            if !known_charset(cs) {
                return self
                    .tagged(tag, "NO [BADCHARSET (US-ASCII UTF-8)] Unrecognized character set")
                    .await;
            }
        }
        self.sync(false).await?;
        let Some(sel) = &self.sel else { return Ok(()) };
        let name = sel.name.clone();
        let uids: Vec<u32> = sel.msgs.iter().map(|m| m.uid).collect();
        let recent_above = sel.recent_above;
        let saved = sel.saved.clone();
        let needs_file = key_needs_file(&key);
        let store = self.ctx.store.clone();
        let partition = sel.partition.clone();
        let key2 = key.clone();
        let seen: Option<std::collections::BTreeSet<u32>> = sel.seen.as_ref().map(|v| v.uids.clone());
        let q = HitQuery {
            name,
            partition,
            uids,
            recent_above,
            saved,
            seen,
            user: self.user.clone().unwrap_or_default(),
        };
        let res = tokio::task::spawn_blocking(move || -> Result<Vec<(usize, u32)>, crate::store::StoreError> {
            let (recs, hits) = q.hits(&store, &key2, needs_file)?;
            let out: Vec<(usize, u32)> = hits.into_iter().map(|i| (i, recs[i].uid)).collect();
            if recs.len() > 10_000 {
                drop(recs);
                super::super::cyrus::trim_after_big_job();
            }
            Ok(out)
        })
        .await;
        let hits = match res {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => return self.tagged(tag, &super::mailboxes::store_err(&e)).await,
            Err(_) => return self.tagged(tag, "NO [SERVERBUG] System I/O error").await,
        };
        let nums: Vec<u32> = hits.iter().map(|&(i, u)| if uid { u } else { i as u32 + 1 }).collect();
        match ret {
            // IMAP4rev2 answers SEARCH with ESEARCH (RFC 9051 7.3.4).
            None if self.rev2 => {
                let mut line = format!("* ESEARCH (TAG \"{tag}\"){}", if uid { " UID" } else { "" });
                if !nums.is_empty() {
                    line.push_str(&format!(" ALL {}", uid_set(&nums)));
                }
                line.push_str("\r\n");
                self.out(&line).await?;
            }
            None => {
                let mut line = String::from("* SEARCH");
                for n in &nums {
                    line.push_str(&format!(" {n}"));
                }
                // A MODSEQ criterion adds the highest MODSEQ found (RFC 7162
                // 3.1.5), and is a CONDSTORE-enabling command.
                if has_modseq {
                    self.condstore = true;
                    let max = self
                        .sel
                        .as_ref()
                        .and_then(|s| hits.iter().filter_map(|&(i, _)| s.msgs.get(i).map(|m| m.modseq)).max());
                    if let Some(m) = max {
                        line.push_str(&format!(" (MODSEQ {m})"));
                    }
                }
                line.push_str("\r\n");
                self.out(&line).await?;
            }
            Some(opts) => {
                let opts = if opts.is_empty() { vec!["ALL".to_string()] } else { opts };
                if opts.iter().any(|o| o == "SAVE") {
                    if let Some(s) = &mut self.sel {
                        s.saved = hits.iter().map(|&(_, u)| u).collect();
                    }
                }
                let mut line = format!("* ESEARCH (TAG \"{tag}\")");
                if uid {
                    line.push_str(" UID");
                }
                if !nums.is_empty() {
                    for o in &opts {
                        match o.as_str() {
                            "MIN" => line.push_str(&format!(" MIN {}", nums[0])),
                            "MAX" => line.push_str(&format!(" MAX {}", nums[nums.len() - 1])),
                            "ALL" => line.push_str(&format!(" ALL {}", uid_set(&nums))),
                            _ => {}
                        }
                    }
                }
                if opts.iter().any(|o| o == "COUNT") {
                    line.push_str(&format!(" COUNT {}", nums.len()));
                }
                line.push_str("\r\n");
                self.out(&line).await?;
            }
        }
        self.tagged(tag, &format!("OK Completed ({} msgs in 0.000 secs)", nums.len())).await
    }

    /// QRESYNC's report (RFC 7162 3.2.5.2 / 3.2.6): `* VANISHED (EARLIER)`
    /// with the UIDs expunged since `since` (within `known` when given),
    /// then, unless `only_vanished`, a FETCH of UID, FLAGS and MODSEQ for
    /// every message changed since.
    async fn qresync_report(&mut self, since: u64, known: Option<&SeqSet>, only_vanished: Option<()>) -> Res {
        let Some(sel) = &self.sel else { return Ok(()) };
        let name = sel.name.clone();
        let Ok((_, recs)) = self.blocking(move |s| s.changes_since(&name, since)).await else {
            return Ok(());
        };
        let Some(sel) = &self.sel else { return Ok(()) };
        let max = sel
            .msgs
            .last()
            .map_or(0, |m| m.uid)
            .max(recs.iter().map(|r| r.uid).max().unwrap_or(0));
        let gone: Vec<u32> = recs
            .iter()
            .filter(|r| r.expunged() && known.is_none_or(|k| k.contains(r.uid, max)))
            .map(|r| r.uid)
            .collect();
        let mut lines = Vec::new();
        if !gone.is_empty() {
            lines.push(format!("* VANISHED (EARLIER) {}\r\n", super::mailboxes::uid_set(&gone)));
        }
        if only_vanished.is_none() {
            for r in recs.iter().filter(|r| !r.expunged()) {
                if let Ok(i) = sel.msgs.binary_search_by_key(&r.uid, |m| m.uid) {
                    let m = &sel.msgs[i];
                    lines.push(format!(
                        "* {} FETCH (FLAGS {} UID {} MODSEQ ({}))\r\n",
                        i + 1,
                        flags_text(m.flags, &m.keywords, m.uid > sel.recent_above),
                        m.uid,
                        m.modseq
                    ));
                }
            }
        }
        for l in lines {
            self.out(&l).await?;
        }
        Ok(())
    }

    /// SORT and THREAD (RFC 5256) over the messages a search selects.
    #[allow(clippy::too_many_arguments)]
    pub async fn sort_or_thread(
        &mut self,
        tag: &str,
        uid: bool,
        criteria: Option<SortCriteria>,
        ret: Option<Vec<String>>,
        algorithm: &str,
        charset: &str,
        key: SearchKey,
    ) -> Res {
        if !known_charset(charset) {
            return self
                .tagged(tag, "NO [BADCHARSET (US-ASCII UTF-8)] Unrecognized character set")
                .await;
        }
        let crit: Vec<(sort::Key, bool)> = match &criteria {
            Some((c, _)) => {
                let mut v = Vec::new();
                let mut annotation = 0;
                for (k, rev) in c {
                    if k == "ANNOTATION" {
                        // RFC 5257: the n-th ANNOTATION criterion's value.
                        v.push((sort::Key::Annotation(annotation), *rev));
                        annotation += 1;
                        continue;
                    }
                    match sort::Key::parse(k) {
                        Some(key) => v.push((key, *rev)),
                        None => {
                            let t = format!("BAD Invalid Sort criterion {}", k.to_lowercase());
                            return self.tagged(tag, &t).await;
                        }
                    }
                }
                v
            }
            None => {
                if !matches!(algorithm, "ORDEREDSUBJECT" | "REFERENCES" | "REFS") {
                    return self.tagged(tag, &format!("BAD Invalid Thread algorithm {algorithm}")).await;
                }
                Vec::new()
            }
        };
        self.sync(false).await?;
        let Some(sel) = &self.sel else { return Ok(()) };
        let q = HitQuery {
            name: sel.name.clone(),
            partition: sel.partition.clone(),
            uids: sel.msgs.iter().map(|m| m.uid).collect(),
            recent_above: sel.recent_above,
            saved: sel.saved.clone(),
            seen: sel.seen.as_ref().map(|v| v.uids.clone()),
            user: self.user.clone().unwrap_or_default(),
        };
        let store = self.ctx.store.clone();
        let ctx = self.ctx.clone();
        let needs_file = key_needs_file(&key);
        let keys: Vec<sort::Key> = crit.iter().map(|(k, _)| *k).collect();
        let thread = criteria.is_none();
        let (uidvalidity, count) = (sel.uidvalidity, sel.msgs.len());
        // SORT/THREAD ... ALL (what webmail sends) needs no search: the
        // session's own list is the answer.
        let all: Option<Vec<u32>> = matches!(key, SearchKey::All).then(|| sel.msgs.iter().map(|m| m.uid).collect());
        let modseqs: Option<std::collections::HashMap<u32, u64>> = keys
            .contains(&sort::Key::ModSeq)
            .then(|| sel.msgs.iter().map(|m| (m.uid, m.modseq)).collect());
        let annot_keys: Vec<(String, String)> = criteria.as_ref().map(|c| c.1.clone()).unwrap_or_default();
        let user = self.user.clone().unwrap_or_default();
        let res = tokio::task::spawn_blocking(move || -> Result<Vec<sort::Info>, crate::store::StoreError> {
            let picked: Vec<(u32, u32)> = match all {
                Some(uids) => uids.into_iter().enumerate().map(|(i, u)| (i as u32 + 1, u)).collect(),
                None => {
                    let (recs, hits) = q.hits(&store, &key, needs_file)?;
                    hits.into_iter().map(|i| (i as u32 + 1, recs[i].uid)).collect()
                }
            };
            let uids: Vec<u32> = picked.iter().map(|p| p.1).collect();
            let cacheable = count <= super::sortcache::CAP;
            let mut cached = ctx.sort_cache.get(&q.name, uidvalidity, &uids);
            let missing: Vec<u32> = uids.iter().zip(&cached).filter(|(_, c)| c.is_none()).map(|(u, _)| *u).collect();
            if !missing.is_empty() {
                // Only the headers are read (each bounded by its record's
                // size); a cacheable mailbox gets every key computed once.
                let (want, thr): (&[sort::Key], bool) = if cacheable { (&sort::ALL_KEYS, true) } else { (&keys, thread) };
                let mut fresh: Vec<(u32, std::sync::Arc<sort::Keys>)> = Vec::with_capacity(missing.len());
                for chunk in missing.chunks(4096) {
                    for r in store.records_for(&q.name, chunk)? {
                        let p = store.message_path(&q.name, &q.partition, r.uid)?;
                        let header = read_header(&p, r.size);
                        let k = sort::keys(r.internaldate, r.size, &header, &decoded_field, want, thr);
                        fresh.push((r.uid, std::sync::Arc::new(k)));
                    }
                }
                // Both in UID order: one walk fills the gaps.
                let mut j = 0;
                for (u, k) in &fresh {
                    while j < uids.len() && uids[j] < *u {
                        j += 1;
                    }
                    if j < uids.len() && uids[j] == *u && cached[j].is_none() {
                        cached[j] = Some(k.clone());
                    }
                }
                if cacheable {
                    ctx.sort_cache.put(&q.name, uidvalidity, count, fresh);
                }
            }
            // ANNOTATION keys: each message's values, read for this sort.
            let mut annots: std::collections::HashMap<u32, Vec<crate::store::msgannot::MsgAnnot>> = Default::default();
            if !annot_keys.is_empty() {
                for a in store.msg_annotations(&q.name, &uids, Some(&user))? {
                    annots.entry(a.uid).or_default().push(a);
                }
            }
            let out: Vec<sort::Info> = picked
                .into_iter()
                .zip(cached)
                .filter_map(|((seq, uid), k)| {
                    let modseq = modseqs.as_ref().and_then(|m| m.get(&uid).copied()).unwrap_or(0);
                    let mine = annots.get(&uid).map(Vec::as_slice).unwrap_or_default();
                    let annot = annot_keys
                        .iter()
                        .map(|(e, a)| super::annotate::sort_value(e, a, mine, &user))
                        .collect();
                    k.map(|k| sort::Info {
                        seq,
                        uid,
                        modseq,
                        annot,
                        k,
                    })
                })
                .collect();
            if out.len() > 10_000 {
                super::super::cyrus::trim_after_big_job();
            }
            Ok(out)
        })
        .await;
        let mut infos = match res {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return self.tagged(tag, &super::mailboxes::store_err(&e)).await,
            Err(_) => return self.tagged(tag, "NO [SERVERBUG] System I/O error").await,
        };
        let line = if let (Some(_), Some(opts)) = (&criteria, ret) {
            // ESORT (RFC 5267) as Cyrus answers it: COUNT, MIN, MAX (the
            // lowest and highest numbers), then ALL in the sort order.
            sort::sort(&mut infos, &crit);
            let nums: Vec<u32> = infos.iter().map(|m| if uid { m.uid } else { m.seq }).collect();
            let opts = if opts.is_empty() { vec!["ALL".to_string()] } else { opts };
            if opts.iter().any(|o| o == "SAVE") {
                if let Some(s) = &mut self.sel {
                    let mut saved: Vec<u32> = infos.iter().map(|m| m.uid).collect();
                    saved.sort_unstable();
                    s.saved = saved;
                }
            }
            let mut l = format!("* ESEARCH (TAG \"{tag}\")");
            if uid {
                l.push_str(" UID");
            }
            let has = |o: &str| opts.iter().any(|x| x == o);
            if has("COUNT") {
                l.push_str(&format!(" COUNT {}", nums.len()));
            }
            if let (Some(min), Some(max)) = (nums.iter().min(), nums.iter().max()) {
                if has("MIN") {
                    l.push_str(&format!(" MIN {min}"));
                }
                if has("MAX") {
                    l.push_str(&format!(" MAX {max}"));
                }
                if has("ALL") {
                    l.push_str(&format!(" ALL {}", ordered_set(&nums)));
                }
            }
            l
        } else if criteria.is_some() {
            sort::sort(&mut infos, &crit);
            let mut l = String::with_capacity(8 + infos.len() * 7);
            l.push_str("* SORT");
            for m in &infos {
                use std::fmt::Write;
                let _ = write!(l, " {}", if uid { m.uid } else { m.seq });
            }
            l
        } else {
            let threads = match algorithm {
                "ORDEREDSUBJECT" => sort::ordered_subject(&infos),
                "REFS" => sort::refs(&infos),
                _ => sort::references(&infos),
            };
            format!("* THREAD {}", sort::render(&threads, &infos, uid))
        };
        self.out(&format!("{}\r\n", line.trim_end())).await?;
        self.tagged(tag, "OK Completed").await
    }

    pub async fn copy(&mut self, tag: &str, uid: bool, set: SeqSet, dest: &str, is_move: bool) -> Res {
        let de = match self.lookup_checked(dest, 'i', super::mailboxes::Implicit::None).await {
            Ok(e) => e,
            Err((t, false)) if t == "NO Mailbox does not exist" => return self.tagged(tag, "NO [TRYCREATE] Mailbox does not exist").await,
            Err((t, _)) => return self.tagged(tag, &t).await,
        };
        let Some(sel) = &self.sel else { return Ok(()) };
        if is_move && sel.readonly {
            return self.tagged(tag, "NO Mailbox is read-only").await;
        }
        let src = sel.name.clone();
        let uids: Vec<u32> = self
            .resolve(&set, uid)
            .iter()
            .filter_map(|&i| self.sel.as_ref().map(|s| s.msgs[i].uid))
            .collect();
        if uids.is_empty() {
            // As Cyrus: by number, naming no message is NO; by UID, OK.
            return self.tagged(tag, if uid { "OK Completed" } else { "NO No matching messages" }).await;
        }
        let dst = de.name.clone();
        let same = dst == src;
        let s2 = src.clone();
        let u2 = uids.clone();
        let res = self
            .blocking(move |s| {
                let (uv, pairs) = s.copy(&s2, &dst, &u2, false)?;
                if is_move {
                    let moved: Vec<u32> = pairs.iter().map(|p| p.0).collect();
                    s.expunge_uids(&s2, &moved)?;
                }
                Ok((uv, pairs))
            })
            .await;
        let (uv, pairs) = match res {
            Ok(v) => v,
            Err(t) => return self.tagged(tag, &t).await,
        };
        let srcs = uid_set(&pairs.iter().map(|p| p.0).collect::<Vec<_>>());
        let dsts = uid_set(&pairs.iter().map(|p| p.1).collect::<Vec<_>>());
        if is_move {
            self.out(&format!("* OK [COPYUID {uv} {srcs} {dsts}] Completed\r\n")).await?;
            self.sync(true).await?;
            return self.tagged(tag, "OK Completed").await;
        }
        if same {
            self.sync(false).await?;
        }
        self.tagged(tag, &format!("OK [COPYUID {uv} {srcs} {dsts}] Completed")).await
    }

    pub async fn idle(&mut self, tag: &str) -> Res {
        self.out("+ idling\r\n").await?;
        self.w.flush().await?;
        self.input_mut().shrink();
        // Woken by commits in this process and, through the store's
        // poller, by other processes (lmtpd); the read's own timeout ends
        // an idle that lasts too long.
        let mut watch = self.sel.as_ref().map(|s| self.ctx.store.watch(&s.name));
        // What another process committed since this session last looked.
        let v = self.sel.as_ref().map(|s| (self.ctx.store.owner_db_path(&s.name), s.version));
        if let Some((p, old)) = v {
            if db_version(&p) != old {
                Box::pin(self.sync(true)).await?;
                self.w.flush().await?;
            }
        }
        // imapidletimeout (minutes), else `timeout`'s.
        let idle = match self.ctx.conf.get_secs("imapidletimeout", 'm') {
            Some(m) if m > 0 => Duration::from_secs(m as u64),
            _ => self.idle_timeout(),
        };
        loop {
            let changed = async {
                match &mut watch {
                    Some(w) => {
                        let _ = w.changed().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                line = self.input_line(idle) => {
                    let line = line?;
                    return match line {
                        Some(l) if l.eq_ignore_ascii_case(b"DONE") => self.tagged(tag, "OK Completed").await,
                        _ => self.tagged(tag, "BAD Invalid Idle continuation").await,
                    };
                }
                _ = changed => {
                    // Boxed: the waiting state stays small.
                    Box::pin(self.sync(true)).await?;
                    self.w.flush().await?;
                }
            }
        }
    }
}

impl Session {
    async fn input_line(&mut self, idle: Duration) -> Result<Option<Vec<u8>>, super::io::ReadError> {
        self.input_mut().line(super::io::MAX_LINE, idle).await
    }
}

#[allow(dead_code)]
fn _astring_used(o: &mut Vec<u8>) {
    astring(o, b"x");
}

/// Numbers in their given order as a sequence set: runs of consecutive
/// ascending numbers as ranges (RFC 5267's ALL for ESORT).
fn ordered_set(nums: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < nums.len() {
        let mut j = i;
        while j + 1 < nums.len() && nums[j + 1] == nums[j].wrapping_add(1) {
            j += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        if j > i {
            out.push_str(&format!("{}:{}", nums[i], nums[j]));
        } else {
            out.push_str(&nums[i].to_string());
        }
        i = j + 1;
    }
    out
}

/// Charsets SEARCH and SORT take, as Cyrus does: the search strings'
/// encoding, and ASCII strings read the same in all of these.
fn known_charset(charset: &str) -> bool {
    charset.starts_with("ISO-8859-") || charset.starts_with("WINDOWS-125") || matches!(charset, "US-ASCII" | "UTF-8" | "KOI8-R" | "KOI8-U")
}

/// Whether a search names MODSEQ anywhere.
fn mentions_modseq(k: &SearchKey) -> bool {
    match k {
        SearchKey::ModSeq(_) => true,
        SearchKey::Not(a) => mentions_modseq(a),
        SearchKey::Or(a, b) => mentions_modseq(a) || mentions_modseq(b),
        SearchKey::And(v) => v.iter().any(mentions_modseq),
        _ => false,
    }
}
