//! XFER from this back end to a Cyrus 3.x back end: the target shows
//! `X-REPLICATION` but not our `X-MUMAIL-XFER`, so the mailboxes go in
//! Cyrus's replication commands over IMAP, as a Cyrus source sends them
//! (see sync.rs for the receiving half):
//!
//! ```text
//! SYNCAPPLY MESSAGE (%{partition guid size} bytes …)       the new files
//! SYNCAPPLY LOCAL_MAILBOX %(UNIQUEID … RECORD (…))          every record
//! SYNCAPPLY QUOTA / SUB / SEEN / ANNOTATION                 the user's data
//! MUPDATEPUSH mailbox                                       the switch
//! ```
//!
//! `LOCAL_` keeps the target from telling the master until MUPDATEPUSH;
//! each pass sends every record again (Cyrus applies only what differs),
//! files only for UIDs not sent before.  Records expunged here go as
//! tombstones (`\Expunged`) only for UIDs the target has.  SYNC_CRC is
//! sent as 0: "not computed", which Cyrus accepts.

use super::xfer::{Peer, Sent, BATCH_BYTES, BATCH_RECORDS};
use crate::proto::dlist::{render, Dlist};
use crate::store::{MailboxEntry, Store, FLAG_EXPUNGED, FLAG_UNLINKED};
use crate::util::codec::hex;
use std::sync::Arc;

fn atom(s: impl Into<Vec<u8>>) -> Dlist {
    Dlist::Atom(s.into())
}

fn num(n: impl ToString) -> Dlist {
    Dlist::Atom(n.to_string().into_bytes())
}

fn kv(items: Vec<(&str, Dlist)>) -> Dlist {
    Dlist::Kv(items.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// A record's FLAGS as Cyrus writes them.
fn flags(f: u32, keywords: &str) -> Dlist {
    let mut v = Vec::new();
    for (bit, name) in [
        (crate::store::FLAG_ANSWERED, "\\Answered"),
        (crate::store::FLAG_FLAGGED, "\\Flagged"),
        (crate::store::FLAG_DELETED, "\\Deleted"),
        (crate::store::FLAG_DRAFT, "\\Draft"),
        (crate::store::FLAG_SEEN, "\\Seen"),
        (FLAG_EXPUNGED, "\\Expunged"),
    ] {
        if f & bit != 0 {
            v.push(atom(name));
        }
    }
    v.extend(keywords.split(' ').filter(|k| !k.is_empty()).map(atom));
    Dlist::List(v)
}

/// `SYNCAPPLY KEY value` on the peer.
async fn apply(peer: &mut Peer, key: &str, v: &Dlist) -> Result<(), String> {
    let mut cmd = format!("SYNCAPPLY {key} ").into_bytes();
    render(v, &mut cmd);
    cmd.extend_from_slice(b"\r\n");
    peer.call(cmd, true).await.map(|_| ())
}

/// The target's partition for a mailbox: the one asked for, else the
/// mailbox's own name for it.
fn partition<'a>(part: &'a str, e: &'a MailboxEntry) -> &'a str {
    if part.is_empty() {
        &e.partition
    } else {
        part
    }
}

/// Sends the files the target lacks, then the mailbox with every record.
/// Returns how many records went.
pub(super) async fn send_mailbox(store: &Arc<Store>, peer: &mut Peer, sent: &mut Sent, part: &str) -> Result<usize, String> {
    let e = sent.entry.clone();
    let n = e.name.clone();
    let (state, recs) = super::xfer::blocking(store, move |s| s.changes_since(&n, 0)).await?;
    let n = e.name.clone();
    let img = super::xfer::blocking(store, move |s| s.export_mailbox(&n)).await?;
    let part = partition(part, &e).to_string();
    // The files of UIDs not sent before, in batches.
    let todo: Vec<_> = recs
        .iter()
        .filter(|r| r.uid >= sent.uidnext && r.flags & (FLAG_EXPUNGED | FLAG_UNLINKED) == 0)
        .cloned()
        .collect();
    let mut guids = std::collections::HashMap::new();
    let mut i = 0;
    while i < todo.len() {
        let (recs2, e2, from) = (todo.clone(), e.clone(), i);
        let (files, next) = super::xfer::blocking(store, move |s| {
            let mut out = Vec::new();
            let mut bytes = 0usize;
            let mut j = from;
            while j < recs2.len() && out.len() < BATCH_RECORDS && (bytes < BATCH_BYTES || out.is_empty()) {
                let r = &recs2[j];
                let b = std::fs::read(s.message_path(&e2.name, &e2.partition, r.uid)?)?;
                bytes += b.len();
                // The GUID stored at delivery (the file's SHA-1); computed
                // only for a record that has none.
                let guid = if r.guid.is_empty() {
                    hex(&crate::util::sha1(&b))
                } else {
                    hex(&r.guid)
                };
                out.push((r.uid, guid, b));
                j += 1;
            }
            Ok((out, j))
        })
        .await?;
        let list = files
            .into_iter()
            .map(|(uid, guid, data)| {
                guids.insert(uid, guid.clone());
                Dlist::File {
                    partition: part.clone(),
                    guid,
                    data,
                }
            })
            .collect();
        apply(peer, "MESSAGE", &Dlist::List(list)).await?;
        i = next;
    }
    // Message annotations (everyone's) ride in their RECORD.
    let (n, uids) = (e.name.clone(), recs.iter().map(|r| r.uid).collect::<Vec<u32>>());
    let mut annots: std::collections::HashMap<u32, Vec<Dlist>> = Default::default();
    let found = super::xfer::blocking(store, move |s| s.msg_annotations(&n, &uids, None)).await?;
    let modseqs: std::collections::HashMap<u32, u64> = if found.is_empty() {
        Default::default()
    } else {
        recs.iter().map(|r| (r.uid, r.modseq)).collect()
    };
    for a in found {
        annots.entry(a.uid).or_default().push(kv(vec![
            ("ENTRY", atom(a.entry)),
            ("USERID", atom(a.userid)),
            ("MODSEQ", num(modseqs.get(&a.uid).copied().unwrap_or(1))),
            ("VALUE", Dlist::Atom(a.value)),
        ]));
    }
    let mut records = Vec::new();
    for r in &recs {
        let expunged = r.flags & (FLAG_EXPUNGED | FLAG_UNLINKED) != 0;
        // A tombstone only for what the target has.
        if expunged && r.uid >= sent.uidnext {
            continue;
        }
        let guid = match guids.get(&r.uid) {
            Some(g) => g.clone(),
            None if !r.guid.is_empty() => hex(&r.guid),
            None => continue,
        };
        let mut fields = vec![
            ("UID", num(r.uid)),
            ("MODSEQ", num(r.modseq)),
            ("LAST_UPDATED", num(r.savedate.max(r.internaldate))),
            ("FLAGS", flags(r.flags & (0x1f | FLAG_EXPUNGED), &r.keywords)),
            ("INTERNALDATE", num(r.internaldate)),
            ("SIZE", num(r.size)),
            ("GUID", atom(guid)),
        ];
        let mut a = annots.remove(&r.uid).unwrap_or_default();
        // Cyrus takes a record's CREATEDMODSEQ as an annotation of its own.
        if r.createdmodseq > 0 {
            a.push(kv(vec![
                ("ENTRY", atom("/vendor/cmu/cyrus-imapd/createdmodseq")),
                ("USERID", atom("")),
                ("MODSEQ", num(0)),
                ("VALUE", num(r.createdmodseq)),
            ]));
        }
        if !a.is_empty() {
            fields.push(("ANNOTATIONS", Dlist::List(a)));
        }
        records.push(kv(fields));
    }
    let (entry, specialuse, annotations) = (img.entry, img.specialuse, img.annotations);
    let last_uid = state.uidnext.saturating_sub(1);
    let ours = state.highestmodseq.max(recs.iter().map(|r| r.modseq).max().unwrap_or(1));
    let mailbox = |last_uid: u32, hms: u64, records: Vec<Dlist>| {
        kv(vec![
            ("UNIQUEID", atom(entry.uniqueid.clone())),
            ("MBOXNAME", atom(entry.name.clone())),
            ("SYNC_CRC", num(0)),
            ("SYNC_CRC_ANNOT", num(0)),
            ("LAST_UID", num(last_uid)),
            ("HIGHESTMODSEQ", num(hms)),
            ("RECENTUID", num(state.recentuid.min(last_uid))),
            ("RECENTTIME", num(0)),
            ("LAST_APPENDDATE", num(0)),
            ("POP3_LAST_LOGIN", num(0)),
            ("POP3_SHOW_AFTER", num(0)),
            ("UIDVALIDITY", num(entry.uidvalidity)),
            ("PARTITION", atom(part.clone())),
            ("ACL", atom(entry.acl.clone())),
            ("OPTIONS", atom("P")),
            ("RECORD", Dlist::List(records)),
        ])
    };
    // Cyrus draws a new mailbox's modseq from the user's counter, and
    // refuses a HIGHESTMODSEQ below its own: the mailbox is made first
    // (empty; that apply may be refused so), its modseq read back, and
    // the records go with the higher of the two.
    let mut theirs = replica_modseq(peer, &entry.name).await?;
    if theirs.is_none() {
        match apply(peer, "LOCAL_MAILBOX", &mailbox(0, 1, Vec::new())).await {
            Err(e) if !e.contains("IMAP_SYNC_CHECKSUM") => return Err(e),
            _ => {}
        }
        theirs = replica_modseq(peer, &entry.name).await?;
    }
    apply(peer, "LOCAL_MAILBOX", &mailbox(last_uid, ours.max(theirs.unwrap_or(0)), records)).await?;
    // Mailbox annotations and the special use (Cyrus keeps it as the
    // owner's `/specialuse`).
    let owner = crate::tools::cyrus_spool::owner(&entry.name).unwrap_or_default();
    let mut annots: Vec<(String, String, Vec<u8>)> = annotations;
    if !specialuse.is_empty() && !owner.is_empty() {
        annots.push(("/specialuse".into(), owner, specialuse.into_bytes()));
    }
    for (entry_name, userid, value) in annots {
        let a = kv(vec![
            ("MBOXNAME", atom(entry.name.clone())),
            ("ENTRY", atom(entry_name)),
            ("USERID", atom(userid)),
            ("VALUE", Dlist::Atom(value)),
        ]);
        apply(peer, "ANNOTATION", &a).await?;
    }
    sent.highestmodseq = state.highestmodseq;
    sent.uidnext = sent.uidnext.max(state.uidnext);
    Ok(todo.len())
}

/// The target's HIGHESTMODSEQ of a mailbox (None: it has no such
/// mailbox).
async fn replica_modseq(peer: &mut Peer, name: &str) -> Result<Option<u64>, String> {
    let mut cmd = b"SYNCGET MAILBOXES ".to_vec();
    render(&Dlist::List(vec![atom(name)]), &mut cmd);
    cmd.extend_from_slice(b"\r\n");
    let untagged = peer.call(cmd, true).await?;
    Ok(untagged
        .split("HIGHESTMODSEQ ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next().and_then(|n| n.parse().ok())))
}

/// `export_userdata` lines (quota, sub, seen, Sieve scripts) as Cyrus's
/// commands; POP3 logins and duplicate-delivery records have no
/// counterpart there.
pub(super) async fn send_userdata(peer: &mut Peer, top: &str, data: &str) -> Result<(), String> {
    let user = crate::tools::cyrus_spool::owner(top).unwrap_or_default();
    for line in data.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match (f[0], f.len()) {
            ("quota", 4 | 6) => {
                let mut items = vec![("ROOT", atom(f[1]))];
                // Cyrus's resource names, in its order.
                for (i, res) in ["STORAGE", "MESSAGE", "X-ANNOTATION-STORAGE", "X-NUM-FOLDERS"]
                    .into_iter()
                    .enumerate()
                {
                    if let Some(n) = f.get(2 + i).and_then(|v| v.parse::<i64>().ok()).filter(|&n| n >= 0) {
                        items.push((res, num(n)));
                    }
                }
                apply(peer, "QUOTA", &kv(items)).await?;
            }
            ("sub", 2) if !user.is_empty() => {
                apply(peer, "SUB", &kv(vec![("USERID", atom(user.clone())), ("MBOXNAME", atom(f[1]))])).await?;
            }
            ("seen", 5) if !user.is_empty() => {
                let last = f[4].rsplit([',', ':']).next().and_then(|n| n.parse::<u32>().ok()).unwrap_or(0);
                let s = kv(vec![
                    ("USERID", atom(user.clone())),
                    ("UNIQUEID", atom(f[1])),
                    ("LASTREAD", num(f[2])),
                    ("LASTUID", num(last)),
                    ("LASTCHANGE", num(f[2])),
                    ("SEENUIDS", atom(f[4])),
                ]);
                apply(peer, "SEEN", &s).await?;
            }
            ("sieve", 3) if !user.is_empty() => {
                let (Some(name), Some(src)) = (crate::util::codec::unhex(f[1]), crate::util::codec::unhex(f[2])) else {
                    continue;
                };
                let mut file = name;
                file.extend_from_slice(b".script");
                let s = kv(vec![
                    ("USERID", atom(user.clone())),
                    ("FILENAME", atom(file)),
                    ("LAST_UPDATE", num(crate::util::unix_now())),
                    ("CONTENT", atom(src)),
                ]);
                apply(peer, "SIEVE", &s).await?;
            }
            ("sieveactive", 2) if !user.is_empty() => {
                let Some(mut file) = crate::util::codec::unhex(f[1]) else {
                    continue;
                };
                file.extend_from_slice(b".bc");
                apply(
                    peer,
                    "ACTIVATE_SIEVE",
                    &kv(vec![("USERID", atom(user.clone())), ("FILENAME", atom(file))]),
                )
                .await?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// The switch: the target tells the master it holds `name` now (named as
/// an admin there sees it: the namespace settings of a murder agree).
pub(super) async fn activate(ctx: &crate::daemon::cyrus::Ctx, peer: &mut Peer, name: &str) -> Result<(), String> {
    let cfg = &ctx.store.cfg;
    let ns = crate::store::names::Namespace::new(cfg.unixhierarchysep, false, "", cfg.virtdomains, &cfg.defaultdomain);
    let external = ns.to_external(name).unwrap_or_else(|| name.to_string());
    let mut cmd = b"MUPDATEPUSH ".to_vec();
    crate::proto::imap::render::client_string(&mut cmd, external.as_bytes());
    cmd.extend_from_slice(b"\r\n");
    peer.call(cmd, true).await.map(|_| ())
}
