//! The target's half of a Cyrus back end's XFER: Cyrus 3.x moves a user
//! (or a mailbox) to a back end that shows `X-REPLICATION` with its
//! replication protocol over the IMAP connection (imapd.c `cmd_xfer`,
//! `xfer_initialsync`/`xfer_finalsync`, sync_support.c `sync_do_user`):
//!
//! ```text
//! SYNCGET USER u7 / MAILBOXES (names)      what the target has
//! SYNCAPPLY RESERVE %(PARTITION p MBOXNAME (…) GUID (…))
//!                                          → * MISSING (guids to upload)
//! SYNCAPPLY MESSAGE (%{p guid size} bytes …)
//! SYNCAPPLY MAILBOX %(UNIQUEID … UIDVALIDITY … ACL … RECORD (%(UID … MODSEQ … FLAGS (…) INTERNALDATE … GUID …) …))
//! SYNCAPPLY QUOTA / SUB / SEEN / ANNOTATION / SIEVE / ACTIVATE_SIEVE …
//! ```
//!
//! run two or three times (the last under the source's lock), then the
//! source deletes its copies and sends `MUPDATEPUSH` for each mailbox.
//!
//! Here a mailbox that arrives this way stays *arriving* (not open to
//! mail, not told to the MUPDATE master) until that MUPDATEPUSH, which
//! activates it (xfer.rs).  The GETs report nothing, so each pass sends
//! every mailbox whole; applying one again changes only what differs.
//! Uploaded messages wait in the partition's stage directory, checked
//! against their GUID (SHA-1), until the session ends.

use super::{Res, Session};
use crate::proto::dlist::{self, Dlist};
use crate::store::msgannot::MsgAnnot;
use crate::store::xfer::{Incoming, MailboxImage, ARRIVING};
use crate::store::{MailboxEntry, Record, StoreError, FLAG_EXPUNGED};
use crate::tools::cyrus_spool as cs;
use std::collections::HashMap;
use std::time::Duration;

/// Records are written in batches of this many message bytes (or one
/// larger message) or this many records.
const BATCH_BYTES: usize = 4 << 20;
const BATCH_RECORDS: usize = 1000;

/// Cyrus's system flag names in a RECORD's FLAGS.
const SYSTEM: [(&str, u32); 5] = [
    ("\\answered", crate::store::FLAG_ANSWERED),
    ("\\flagged", crate::store::FLAG_FLAGGED),
    ("\\deleted", crate::store::FLAG_DELETED),
    ("\\draft", crate::store::FLAG_DRAFT),
    ("\\seen", crate::store::FLAG_SEEN),
];

fn bad(what: &str) -> String {
    format!("IMAP_PROTOCOL_BAD_PARAMETERS {what}")
}

/// A RECORD's message annotations (RFC 5257): `ANNOTATIONS (%(ENTRY …
/// USERID … MODSEQ … VALUE …) …)`, as Cyrus sends a mailbox's.
fn record_annotations(d: &Dlist, uid: u32) -> Vec<MsgAnnot> {
    let mut out = Vec::new();
    for a in d.get("ANNOTATIONS").map(Dlist::items).unwrap_or_default() {
        let (Some(entry), Some(value)) = (a.text_of("ENTRY"), a.get("VALUE").and_then(Dlist::bytes)) else {
            continue;
        };
        // Cyrus sends record fields of its own as annotations (thrid,
        // savedate, createdmodseq): not the user's annotations.
        if value.is_empty() || VIRTUAL_ANNOTATIONS.iter().any(|v| entry.eq_ignore_ascii_case(v)) {
            continue;
        }
        out.push(MsgAnnot {
            uid,
            entry: entry.to_string(),
            userid: a.text_of("USERID").unwrap_or("").to_string(),
            value: value.to_vec(),
        });
    }
    out
}

/// Record fields Cyrus 3.x sends among a RECORD's ANNOTATIONS.
const VIRTUAL_ANNOTATIONS: [&str; 3] = [
    "/vendor/cmu/cyrus-imapd/thrid",
    "/vendor/cmu/cyrus-imapd/savedate",
    "/vendor/cmu/cyrus-imapd/createdmodseq",
];

/// A virtual annotation's number (`/vendor/cmu/cyrus-imapd/<name>`).
fn virtual_number(d: &Dlist, name: &str) -> Option<u64> {
    let entry = format!("/vendor/cmu/cyrus-imapd/{name}");
    d.get("ANNOTATIONS")
        .map(Dlist::items)
        .unwrap_or_default()
        .iter()
        .find(|a| a.text_of("ENTRY").is_some_and(|e| e.eq_ignore_ascii_case(&entry)))
        .and_then(|a| a.get("VALUE").and_then(Dlist::bytes))
        .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse().ok())
}

/// A RECORD of an APPLY MAILBOX as this store keeps it, and its GUID.
fn record(d: &Dlist) -> Result<(Record, String), String> {
    let uid = d
        .num_of("UID")
        .filter(|&u| u > 0 && u <= u32::MAX as u64)
        .ok_or_else(|| bad("UID"))? as u32;
    let mut flags = 0u32;
    let mut keywords = Vec::new();
    for f in d.get("FLAGS").map(Dlist::items).unwrap_or_default() {
        let Some(name) = f.text() else { continue };
        let lower = name.to_ascii_lowercase();
        if lower == "\\expunged" {
            flags |= FLAG_EXPUNGED;
        } else if let Some((_, bit)) = SYSTEM.iter().find(|(n, _)| *n == lower) {
            flags |= bit;
        } else if !name.starts_with('\\') && !name.is_empty() {
            keywords.push(name.to_string());
        }
    }
    let internaldate = d.num_of("INTERNALDATE").unwrap_or(0) as i64;
    Ok((
        Record {
            uid,
            modseq: d.num_of("MODSEQ").unwrap_or(1).max(1),
            flags,
            keywords: keywords.join(" "),
            internaldate,
            tz: crate::util::codec::local_offset_min(internaldate),
            savedate: d.num_of("SAVEDATE").or_else(|| virtual_number(d, "savedate")).unwrap_or(0) as i64,
            size: d.num_of("SIZE").unwrap_or(0),
            header_size: 0,
            guid: Vec::new(),
            createdmodseq: virtual_number(d, "createdmodseq").unwrap_or(0),
        },
        d.text_of("GUID").unwrap_or("").to_ascii_lowercase(),
    ))
}

impl Session {
    pub async fn replication(&mut self, tag: &str, apply: bool, body: Vec<u8>) -> Res {
        if !self.ctx.is_admin(self.user.as_deref().unwrap_or("")) {
            return self.tagged(tag, "NO Permission denied").await;
        }
        let (key, v) = match dlist::parse_keyed(&body) {
            Ok(x) => x,
            Err(e) => return self.tagged(tag, &format!("BAD IMAP_PROTOCOL_ERROR {e}")).await,
        };
        drop(body);
        let key = key.to_ascii_uppercase();
        // XFER sends LOCAL_MAILBOX and the like: the master is not to be
        // told, which here is so for every arriving mailbox anyway.
        let key = key.strip_prefix("LOCAL_").unwrap_or(&key).to_string();
        let r = match (apply, key.as_str()) {
            // Nothing is reported: the source sends each mailbox whole.
            (false, _) => Ok(()),
            (true, "RESERVE") => self.sync_reserve(&v).await,
            (true, "MAILBOX") => self.sync_mailbox(&v).await,
            (true, "QUOTA") => self.sync_quota(&v).await,
            (true, "SUB" | "UNSUB") => self.sync_sub(&v, key == "SUB").await,
            (true, "SEEN") => self.sync_seen(&v).await,
            (true, "ANNOTATION" | "UNANNOTATION") => self.sync_annotation(&v, key == "ANNOTATION").await,
            (true, "UNMAILBOX") => self.sync_unmailbox(&v).await,
            (true, "UNQUOTA") => {
                let root = v.text().unwrap_or("").to_string();
                self.blocking(move |s| s.quota_set(&root, None, None)).await
            }
            (true, "SIEVE" | "UNSIEVE" | "ACTIVATE_SIEVE" | "UNACTIVATE_SIEVE") => self.sync_sieve(&v, &key).await,
            (true, _) => Err(format!("IMAP_PROTOCOL_ERROR Unsupported replication command {key}")),
        };
        match r {
            Ok(()) => self.tagged(tag, "OK success").await,
            Err(t) => {
                self.ctx
                    .log
                    .error(&format!("SYNC{} {key}: {t}", if apply { "APPLY" } else { "GET" }));
                let t = t.strip_prefix("NO ").unwrap_or(&t).to_string();
                self.tagged(tag, &format!("NO {t}")).await
            }
        }
    }

    /// A user's Sieve script (`SIEVE %(USERID u FILENAME name.script
    /// LAST_UPDATE t CONTENT script)`), its removal (`UNSIEVE`), which one
    /// is active (`ACTIVATE_SIEVE %(USERID u FILENAME name.bc)`) or none
    /// (`UNACTIVATE_SIEVE`): kept where lmtpd runs them.  Bytecode
    /// (`name.bc` sent as a SIEVE) is not kept: the source is run.
    async fn sync_sieve(&mut self, v: &Dlist, key: &str) -> Result<(), String> {
        let user = v.text_of("USERID").ok_or_else(|| bad("USERID"))?;
        let file = v.text_of("FILENAME").unwrap_or("");
        let cfg = &self.ctx.store.cfg;
        let inbox =
            crate::store::names::user_inbox(user, cfg.unixhierarchysep, cfg.virtdomains, &cfg.defaultdomain).map_err(|_| bad("USERID"))?;
        let dir = self.ctx.conf.path_option("sievedir").unwrap_or_else(|| "/usr/sieve".into());
        let scripts = crate::store::sievedir::Scripts::of(std::path::Path::new(&dir), &inbox, cfg.fulldirhash);
        let stem = file.strip_suffix(".script").or_else(|| file.strip_suffix(".bc"));
        let name = stem
            .and_then(|n| crate::store::sievedir::valid_name(n.as_bytes()))
            .map(str::to_string);
        let content = v.get("CONTENT").and_then(Dlist::bytes).map(<[u8]>::to_vec);
        let key = key.to_string();
        let is_source = file.ends_with(".script");
        let r = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            match (key.as_str(), name) {
                ("UNACTIVATE_SIEVE", _) => scripts.set_active(None),
                ("SIEVE", Some(n)) if is_source => scripts.put(&n, content.as_deref().unwrap_or_default()),
                ("UNSIEVE", Some(n)) if is_source => scripts.delete(&n).map(|_| ()),
                ("ACTIVATE_SIEVE", Some(n)) => scripts.set_active(Some(&n)),
                // Bytecode, or a name that makes no file.
                _ => Ok(()),
            }
        })
        .await
        .map_err(|e| e.to_string())?;
        r.map_err(|e| format!("IMAP_IOERROR {e}"))
    }

    /// RESERVE: the GUIDs not uploaded yet in this session are missing.
    async fn sync_reserve(&mut self, v: &Dlist) -> Result<(), String> {
        let mut missing = Vec::new();
        for g in v.get("GUID").map(Dlist::items).unwrap_or_default() {
            let g = g.text().ok_or_else(|| bad("GUID"))?.to_ascii_lowercase();
            if !self.sync_stash.contains_key(&g) {
                missing.push(Dlist::Atom(g.into_bytes()));
            }
        }
        if !missing.is_empty() {
            let mut line = b"* MISSING ".to_vec();
            dlist::render(&Dlist::List(missing), &mut line);
            line.extend_from_slice(b"\r\n");
            self.out_bytes(&line).await.map_err(|_| "IMAP_IOERROR".to_string())?;
        }
        Ok(())
    }

    /// SYNCAPPLY MESSAGE, read as a stream (a mailbox's new messages in
    /// one command): `(%{partition guid size} CRLF bytes …)`, one file at
    /// a time, each checked against its GUID (SHA-1) and staged, synced,
    /// in batches.  `first` is the command's first line.  A list that
    /// cannot be followed gets BAD and the connection is closed (what
    /// follows could be message data).
    pub async fn sync_upload(&mut self, tag: &str, first: Vec<u8>, max_message: u64, idle: Duration) -> Res {
        let mut err: Option<String> = None;
        if !self.ctx.is_admin(self.user.as_deref().unwrap_or("")) {
            err = Some("Permission denied".into());
        }
        let mut line = first;
        let mut seg = 0usize;
        let mut pending: Vec<(String, Vec<u8>)> = Vec::new();
        let mut pending_bytes = 0usize;
        loop {
            let marker = dlist::file_marker(&line);
            let text_end = match marker {
                Some(_) => line.windows(2).rposition(|w| w == b"%{").unwrap_or(line.len()),
                None => line.len(),
            };
            let mut text: &[u8] = &line[..text_end];
            if seg == 0 {
                // `tag SYNCAPPLY MESSAGE ` before the list.
                text = text.splitn(4, |&c| c == b' ').nth(3).unwrap_or(b"");
            }
            let text: Vec<u8> = text.iter().copied().filter(|&c| c != b' ').collect();
            let ok = match (seg, marker.is_some()) {
                (0, true) => text == b"(",
                (0, false) => text == b"()",
                (_, true) => text.is_empty(),
                (_, false) => text == b")",
            };
            if !ok {
                self.ctx.log.error("SYNCAPPLY MESSAGE: invalid file list; connection closed");
                self.tagged(tag, "BAD IMAP_PROTOCOL_ERROR Invalid file list").await?;
                self.out("* BYE Invalid file list\r\n").await?;
                self.logout = true;
                return Ok(());
            }
            let Some(n) = marker else { break };
            let inner = String::from_utf8_lossy(&line[text_end + 2..line.len() - 1]).into_owned();
            let guid = inner.split(' ').nth(1).unwrap_or("").to_ascii_lowercase();
            if err.is_some() || n > max_message {
                self.input.discard(n, idle).await?;
                if err.is_none() {
                    err = Some(format!("IMAP_MESSAGE_TOO_LARGE message {guid} is over maxmessagesize"));
                }
            } else {
                let data = self.input.exact(n as usize, idle).await?;
                pending_bytes += data.len();
                pending.push((guid, data));
                if pending.len() >= BATCH_RECORDS || pending_bytes >= BATCH_BYTES {
                    if let Err(e) = self.stash(std::mem::take(&mut pending)).await {
                        err = Some(e);
                    }
                    pending_bytes = 0;
                }
            }
            line = match self.input.line(crate::daemon::imapd::io::MAX_LINE, idle).await? {
                Some(l) => l,
                None => {
                    self.tagged(tag, "BAD IMAP_PROTOCOL_ERROR Line too long").await?;
                    self.out("* BYE Invalid file list\r\n").await?;
                    self.logout = true;
                    return Ok(());
                }
            };
            seg += 1;
        }
        if err.is_none() && !pending.is_empty() {
            if let Err(e) = self.stash(pending).await {
                err = Some(e);
            }
        }
        match err {
            None => self.tagged(tag, "OK success").await,
            Some(t) => {
                self.ctx.log.error(&format!("SYNCAPPLY MESSAGE: {t}"));
                self.tagged(tag, &format!("NO {t}")).await
            }
        }
    }

    /// Stages uploaded messages (synced) into this session's stash, each
    /// checked against its GUID.
    async fn stash(&mut self, files: Vec<(String, Vec<u8>)>) -> Result<(), String> {
        let part = self.ctx.store.cfg.defaultpartition.clone();
        let (guids, staged) = self
            .blocking(move |s| {
                let refs: Vec<&[u8]> = files.iter().map(|(_, d)| d.as_slice()).collect();
                let st = s.stage_many(&part, &refs)?;
                Ok((files.into_iter().map(|(g, _)| g).collect::<Vec<String>>(), st))
            })
            .await?;
        for (g, st) in guids.into_iter().zip(staged) {
            if crate::util::codec::hex(&st.guid) != g {
                return Err(format!("IMAP_SYNC_CHECKSUM message {g} does not match its GUID"));
            }
            self.sync_stash.insert(g, st);
        }
        Ok(())
    }

    /// MAILBOX: the mailbox (arriving) with every record sent.
    async fn sync_mailbox(&mut self, v: &Dlist) -> Result<(), String> {
        let name = v.text_of("MBOXNAME").ok_or_else(|| bad("MBOXNAME"))?.to_string();
        // Deleted-mailbox and intermediate placeholders hold nothing.
        if v.text_of("MBOXTYPE").is_some_and(|t| t.contains(['d', 'i'])) {
            return Ok(());
        }
        let uniqueid = v.text_of("UNIQUEID").ok_or_else(|| bad("UNIQUEID"))?.to_string();
        let uidvalidity = v
            .num_of("UIDVALIDITY")
            .filter(|&n| n <= u32::MAX as u64)
            .ok_or_else(|| bad("UIDVALIDITY"))? as u32;
        let last_uid = v.num_of("LAST_UID").ok_or_else(|| bad("LAST_UID"))?.min(u32::MAX as u64 - 1) as u32;
        let highestmodseq = v.num_of("HIGHESTMODSEQ").ok_or_else(|| bad("HIGHESTMODSEQ"))?;
        let createdmodseq = v.num_of("CREATEDMODSEQ").filter(|&m| m > 0);
        let recentuid = v.num_of("RECENTUID").unwrap_or(0).min(u32::MAX as u64) as u32;
        let acl = v.text_of("ACL").unwrap_or("").to_string();
        let partition = v.text_of("PARTITION").unwrap_or("").to_string();
        let mut records = Vec::new();
        let mut msg_annots = Vec::new();
        for r in v.get("RECORD").map(Dlist::items).unwrap_or_default() {
            let rec = record(r)?;
            msg_annots.extend(record_annotations(r, rec.0.uid));
            records.push(rec);
        }
        let record_uids: Vec<u32> = records.iter().map(|(r, _)| r.uid).collect();
        let mut annotations = Vec::new();
        for a in v.get("ANNOTATIONS").map(Dlist::items).unwrap_or_default() {
            let (Some(entry), Some(value)) = (a.text_of("ENTRY"), a.get("VALUE").and_then(Dlist::bytes)) else {
                continue;
            };
            annotations.push((entry.to_string(), a.text_of("USERID").unwrap_or("").to_string(), value.to_vec()));
        }
        // The messages the records need, from this session's uploads.
        let mut bodies: HashMap<String, std::path::PathBuf> = HashMap::new();
        for (_, g) in &records {
            if let Some(st) = self.sync_stash.get(g) {
                bodies.insert(g.clone(), st.path.clone());
            }
        }
        let (n, name2) = (records.len(), name.clone());
        self.blocking(move |s| {
            let known = match s.lookup(&name)? {
                Some(e) if e.mbtype == ARRIVING && e.uniqueid == uniqueid && e.uidvalidity == uidvalidity => {
                    let (_, recs) = s.changes_since(&name, 0)?;
                    recs.into_iter().map(|r| r.uid).collect::<std::collections::HashSet<u32>>()
                }
                // A live mailbox is never written over.
                Some(e) if e.mbtype != ARRIVING => return Err(StoreError::Exists),
                _ => {
                    let own = s.cfg.defaultpartition.clone();
                    let part = if s.cfg.partition_root(&partition).is_some() {
                        partition.clone()
                    } else {
                        own
                    };
                    let img = MailboxImage {
                        entry: MailboxEntry {
                            name: name.clone(),
                            uniqueid: uniqueid.clone(),
                            partition: part.clone(),
                            acl: acl.clone(),
                            mbtype: ARRIVING.into(),
                            server: String::new(),
                            uidvalidity,
                        },
                        created: std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_secs() as i64),
                        specialuse: String::new(),
                        annotations: Vec::new(),
                    };
                    s.import_mailbox(&img, &part)?;
                    Default::default()
                }
            };
            s.set_acl(&name, &acl)?;
            let mut keywords: Vec<String> = Vec::new();
            let mut batch: Vec<(Record, Option<Vec<u8>>)> = Vec::new();
            let mut bytes = 0usize;
            let flush = |batch: &mut Vec<(Record, Option<Vec<u8>>)>| -> Result<(), StoreError> {
                let inc: Vec<Incoming<'_>> = batch
                    .iter()
                    .map(|(r, b)| Incoming {
                        rec: r.clone(),
                        body: b.as_deref(),
                    })
                    .collect();
                s.import_records(&name, &inc)?;
                batch.clear();
                Ok(())
            };
            for (r, g) in records {
                for k in r.keywords.split(' ').filter(|k| !k.is_empty()) {
                    if !keywords.iter().any(|x| x == k) {
                        keywords.push(k.to_string());
                    }
                }
                let body = if known.contains(&r.uid) || r.flags & FLAG_EXPUNGED != 0 {
                    None
                } else {
                    let p = bodies.get(&g).ok_or(StoreError::Invalid("a record's message was not uploaded"))?;
                    let b = std::fs::read(p)?;
                    bytes += b.len();
                    Some(b)
                };
                batch.push((r, body));
                if batch.len() >= BATCH_RECORDS || bytes >= BATCH_BYTES {
                    flush(&mut batch)?;
                    bytes = 0;
                }
            }
            if !batch.is_empty() {
                flush(&mut batch)?;
            }
            s.import_state(&name, last_uid.saturating_add(1), highestmodseq, recentuid, &keywords.join(" "))?;
            if let Some(m) = createdmodseq {
                s.import_createdmodseq(&name, m)?;
            }
            // Every record comes each time: its annotations are replaced.
            s.import_msg_annotations(&name, &record_uids, &msg_annots)?;
            for (entry, userid, value) in &annotations {
                if entry == "/specialuse" {
                    s.set_special_use(&name, String::from_utf8_lossy(value).trim())?;
                } else {
                    s.set_annotation(&name, entry, userid, Some(value))?;
                }
            }
            Ok(())
        })
        .await?;
        self.ctx.log.info(&format!("SYNC: {name2} received ({n} records)"));
        Ok(())
    }

    async fn sync_quota(&mut self, v: &Dlist) -> Result<(), String> {
        let root = v.text_of("ROOT").ok_or_else(|| bad("ROOT"))?.to_string();
        let limit = |k: &str| {
            v.get(k)
                .and_then(Dlist::text)
                .and_then(|t| t.parse::<i64>().ok())
                .filter(|&n| n >= 0)
        };
        let l = crate::store::QuotaLimits {
            storage: limit("STORAGE").or_else(|| limit("LIMIT")),
            message: limit("MESSAGE"),
            annot: limit("X-ANNOTATION-STORAGE"),
            folders: limit("X-NUM-FOLDERS"),
        };
        self.blocking(move |s| s.quota_set_limits(&root, l)).await
    }

    async fn sync_sub(&mut self, v: &Dlist, on: bool) -> Result<(), String> {
        let user = v.text_of("USERID").ok_or_else(|| bad("USERID"))?.to_string();
        let name = v.text_of("MBOXNAME").ok_or_else(|| bad("MBOXNAME"))?.to_string();
        self.blocking(move |s| s.subscribe(&cs::inbox_of(&user), &name, on)).await
    }

    async fn sync_seen(&mut self, v: &Dlist) -> Result<(), String> {
        let user = v.text_of("USERID").ok_or_else(|| bad("USERID"))?.to_string();
        let id = v.text_of("UNIQUEID").ok_or_else(|| bad("UNIQUEID"))?.to_string();
        let uids = v.text_of("SEENUIDS").unwrap_or("").to_string();
        let t = v.num_of("LASTCHANGE").unwrap_or(0);
        if [&id, &uids].iter().any(|x| x.contains(['\t', '\n', '\r'])) {
            return Err(bad("SEEN"));
        }
        let line = format!("seen\t{id}\t{t}\t0\t{uids}\n");
        self.blocking(move |s| s.import_userdata(&cs::inbox_of(&user), &line).map(|_| ()))
            .await
    }

    async fn sync_annotation(&mut self, v: &Dlist, set: bool) -> Result<(), String> {
        let name = v.text_of("MBOXNAME").ok_or_else(|| bad("MBOXNAME"))?.to_string();
        let entry = v.text_of("ENTRY").ok_or_else(|| bad("ENTRY"))?.to_string();
        let userid = v.text_of("USERID").unwrap_or("").to_string();
        let value = if set {
            Some(v.get("VALUE").and_then(Dlist::bytes).ok_or_else(|| bad("VALUE"))?.to_vec())
        } else {
            None
        };
        self.blocking(move |s| {
            if entry == "/specialuse" {
                let u = value.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
                return s.set_special_use(&name, u.trim());
            }
            s.set_annotation(&name, &entry, &userid, value.as_deref())
        })
        .await
    }

    /// UNMAILBOX: only an arriving mailbox goes (one the source deleted
    /// between two passes).
    async fn sync_unmailbox(&mut self, v: &Dlist) -> Result<(), String> {
        let name = v.text().ok_or_else(|| bad("UNMAILBOX"))?.to_string();
        self.blocking(move |s| match s.lookup(&name)? {
            Some(e) if e.mbtype == ARRIVING => s.delete_local(&name),
            Some(_) => Err(StoreError::Exists),
            None => Ok(()),
        })
        .await
    }
}
