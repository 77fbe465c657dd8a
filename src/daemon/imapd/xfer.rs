//! XFER (Cyrus's admin command, cyradm's `xfer`): moves a mailbox and its
//! children, or a user with every mailbox, quota, subscription and seen
//! state, to another back end, keeping UIDs, UIDVALIDITY, modseqs, flags,
//! dates and ACLs, and re-points the MUPDATE master.
//!
//! The source logs in to the target's IMAP as `proxy_authname` (an admin
//! there, as Cyrus's back ends must be of each other) and sends XAPPLY
//! commands: a bulk pass, a catch-up pass, then a final pass under the
//! owner database's write lock; the target activates each mailbox (and
//! tells the master), and only then are the source's copies removed.
//! Interrupted before that, the source is untouched and still
//! authoritative; the target's arriving copies are removed, or replaced
//! by the next XFER.
//!
//! A target that shows `X-REPLICATION` instead (a Cyrus 3.x back end)
//! gets the same passes in Cyrus's replication commands (xfer_sync.rs);
//! a Cyrus back end moving users here is answered by sync.rs.
//!
//! Also here: LOCALDELETE and MUPDATEPUSH (Cyrus's admin commands), and
//! XAPPLY, the target's half.

use super::{Res, Session};
use crate::daemon::cyrus::Ctx;
use crate::daemon::front::backend_line;
use crate::proto::imap::command::xapply::{render, XApply, XMailbox, XRecord};
use crate::store::xfer::{Incoming, MailboxImage};
use crate::store::{MailboxEntry, Record, Store, StoreError, FLAG_UNLINKED};
use std::sync::Arc;
use tokio::io::{AsyncWriteExt, BufReader};

/// A RECORDS command carries at most this many message bytes (or one
/// larger message) and `BATCH_RECORDS` records.
pub(super) const BATCH_BYTES: usize = 4 << 20;
pub(super) const BATCH_RECORDS: usize = 1000;

/// The capability a target must show (to admins) to take an XFER.
pub const CAPABILITY: &str = "X-MUMAIL-XFER";

/// A logged-in connection to the target back end.
pub(super) struct Peer {
    b: BufReader<crate::daemon::peer_tls::PeerIo>,
    n: u32,
    /// A Cyrus back end: XFER speaks its replication commands
    /// (xfer_sync.rs), not XAPPLY.
    cyrus: bool,
}

impl Peer {
    async fn open(ctx: &Ctx, server: &str) -> Result<Peer, String> {
        // As the proxy identity itself (no authzid): an admin there.
        let (_, b) = crate::daemon::front::imap_login(&ctx.conf, server, "")
            .await
            .map_err(|e| format!("couldn't authenticate to backend server {server}: {e}"))?;
        let mut p = Peer { b, n: 0, cyrus: false };
        let caps = p.call(b"CAPABILITY\r\n".to_vec(), true).await?;
        let has = |want: &str| caps.split_whitespace().any(|c| c.eq_ignore_ascii_case(want));
        if !has(CAPABILITY) {
            if !has("X-REPLICATION") {
                return Err(format!(
                    "{server} does not take XFER from this server (neither {CAPABILITY} nor X-REPLICATION)"
                ));
            }
            p.cyrus = true;
        }
        Ok(p)
    }

    /// Sends one command (`add_tag`: `body` is the command without its
    /// tag; else the caller rendered it with the next tag) and waits for
    /// its tagged reply; returns the untagged lines.
    pub(super) async fn call(&mut self, body: Vec<u8>, add_tag: bool) -> Result<String, String> {
        self.n += 1;
        let tag = format!("X{}", self.n);
        let mut wire = Vec::with_capacity(body.len() + 8);
        if add_tag {
            wire.extend_from_slice(format!("{tag} ").as_bytes());
        }
        wire.extend_from_slice(&body);
        self.b.get_mut().write_all(&wire).await.map_err(|e| e.to_string())?;
        self.b.get_mut().flush().await.map_err(|e| e.to_string())?;
        let mut untagged = String::new();
        loop {
            let l = backend_line(&mut self.b).await?;
            if let Some(rest) = l.strip_prefix(&format!("{tag} ")) {
                return match rest.strip_prefix("OK") {
                    Some(_) => Ok(untagged),
                    None => Err(rest.to_string()),
                };
            }
            untagged.push_str(&l);
            untagged.push('\n');
        }
    }

    async fn apply(&mut self, x: &XApply) -> Result<(), String> {
        let tag = format!("X{}", self.n + 1);
        self.call(render(&tag, x), false).await.map(|_| ())
    }

    async fn logout(mut self) {
        let _ = self.call(b"LOGOUT\r\n".to_vec(), true).await;
    }
}

pub(super) async fn blocking<T: Send + 'static>(
    store: &Arc<Store>,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, String> {
    let s = store.clone();
    tokio::task::spawn_blocking(move || f(&s))
        .await
        .map_err(|_| "System I/O error".to_string())?
        .map_err(|e| e.to_string())
}

/// What the source has sent of one mailbox.
pub(super) struct Sent {
    pub entry: MailboxEntry,
    pub highestmodseq: u64,
    /// Files of UIDs below this are at the target.
    pub uidnext: u32,
    /// Message annotations were sent (later passes then send them for
    /// every changed record, so that removals reach the target too).
    pub had_annots: bool,
}

/// Sends what changed of one mailbox, in the target's words.
async fn send_any(store: &Arc<Store>, peer: &mut Peer, sent: &mut Sent, part: &str) -> Result<usize, String> {
    if peer.cyrus {
        super::xfer_sync::send_mailbox(store, peer, sent, part).await
    } else {
        send_changes(store, peer, sent).await
    }
}

/// Sends the records of `name` changed after `sent.highestmodseq` (all
/// of them the first time), bodies for UIDs the target lacks, then the
/// mailbox's counters.  Returns how many records went.
async fn send_changes(store: &Arc<Store>, peer: &mut Peer, sent: &mut Sent) -> Result<usize, String> {
    let name = sent.entry.name.clone();
    let since = sent.highestmodseq;
    let (state, recs) = blocking(store, move |s| s.changes_since(&name, since)).await?;
    let recs = Arc::new(recs);
    let total = recs.len();
    let mut i = 0;
    while i < recs.len() {
        let (recs2, e, from_uid) = (recs.clone(), sent.entry.clone(), sent.uidnext);
        let batch = blocking(store, move |s| {
            let mut out = Vec::new();
            let mut bytes = 0usize;
            let mut j = i;
            while j < recs2.len() && out.len() < BATCH_RECORDS && (bytes < BATCH_BYTES || out.is_empty()) {
                let r = &recs2[j];
                let body = if r.uid >= from_uid && r.flags & FLAG_UNLINKED == 0 {
                    let b = std::fs::read(s.message_path(&e.name, &e.partition, r.uid)?)?;
                    bytes += b.len();
                    Some(b)
                } else {
                    None
                };
                out.push(XRecord {
                    uid: r.uid,
                    modseq: r.modseq,
                    flags: r.flags,
                    internaldate: r.internaldate,
                    tz: r.tz,
                    savedate: r.savedate,
                    keywords: r.keywords.clone(),
                    body,
                });
                j += 1;
            }
            let uids: Vec<u32> = out.iter().map(|r| r.uid).collect();
            let annots = s.msg_annotations(&e.name, &uids, None)?;
            Ok((out, j, uids, annots))
        })
        .await?;
        let (batch, next, uids, annots) = (batch.0, batch.1, batch.2, batch.3);
        peer.apply(&XApply::Records(sent.entry.name.clone(), batch)).await?;
        if !annots.is_empty() || sent.had_annots {
            sent.had_annots = true;
            let data: String = annots
                .iter()
                .filter(|a| !a.entry.contains(['\t', '\n']) && !a.userid.contains(['\t', '\n']))
                .map(|a| format!("{}\t{}\t{}\t{}\n", a.uid, a.entry, a.userid, crate::util::codec::hex(&a.value)))
                .collect();
            peer.apply(&XApply::Annots(sent.entry.name.clone(), crate::store::uid_ranges(&uids), data))
                .await?;
        }
        i = next;
    }
    peer.apply(&XApply::State {
        name: sent.entry.name.clone(),
        uidnext: state.uidnext,
        highestmodseq: state.highestmodseq,
        recentuid: state.recentuid,
        keywords: state.keywords.join(" "),
    })
    .await?;
    sent.highestmodseq = state.highestmodseq;
    sent.uidnext = sent.uidnext.max(state.uidnext);
    Ok(total)
}

fn image_to_wire(img: MailboxImage, partition: &str) -> XMailbox {
    XMailbox {
        name: img.entry.name,
        partition: partition.to_string(),
        uniqueid: img.entry.uniqueid,
        uidvalidity: img.entry.uidvalidity,
        created: img.created,
        acl: img.entry.acl,
        specialuse: img.specialuse,
        annotations: img
            .annotations
            .iter()
            .filter(|(e, u, _)| !e.contains(['\t', '\n']) && !u.contains(['\t', '\n']))
            .map(|(e, u, v)| format!("{e}\t{u}\t{}\n", crate::util::codec::hex(v)))
            .collect(),
    }
}

/// ANNOTS's `uid TAB entry TAB userid TAB hex(value)` lines.
fn parse_annots(data: &str) -> Option<Vec<crate::store::msgannot::MsgAnnot>> {
    let mut out = Vec::new();
    for line in data.lines().filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 4 {
            return None;
        }
        out.push(crate::store::msgannot::MsgAnnot {
            uid: f[0].parse().ok()?,
            entry: f[1].to_string(),
            userid: f[2].to_string(),
            value: crate::util::codec::unhex(f[3])?,
        });
    }
    Some(out)
}

fn wire_to_image(m: XMailbox) -> Option<MailboxImage> {
    let mut annotations = Vec::new();
    for line in m.annotations.lines().filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 3 {
            return None;
        }
        annotations.push((f[0].to_string(), f[1].to_string(), crate::util::codec::unhex(f[2])?));
    }
    Some(MailboxImage {
        entry: MailboxEntry {
            name: m.name,
            uniqueid: m.uniqueid,
            partition: m.partition,
            acl: m.acl,
            mbtype: String::new(),
            server: String::new(),
            uidvalidity: m.uidvalidity,
        },
        created: m.created,
        specialuse: m.specialuse,
        annotations,
    })
}

/// The source's side of XFER; returns (mailboxes, records) moved.
async fn run(ctx: Arc<Ctx>, top: String, server: String, part: String) -> Result<(usize, usize), String> {
    let store = ctx.store.clone();
    let t = top.clone();
    let all = blocking(&store, move |s| s.xfer_set(&t)).await?;
    let whole_user = crate::store::names::user_root(&top).as_deref() == Some(top.as_str());
    ctx.log.info(&format!("XFER: connecting to server '{server}'"));
    let mut peer = Peer::open(&ctx, &server).await?;
    let mut sent: Vec<Sent> = Vec::new();
    let mut moved = 0usize;
    let res: Result<(), String> = async {
        ctx.log.info("XFER: dumping mailboxes to destination");
        for e in &all {
            let n = e.name.clone();
            if !peer.cyrus {
                let img = blocking(&store, move |s| s.export_mailbox(&n)).await?;
                peer.apply(&XApply::Mailbox(image_to_wire(img, &part))).await?;
            }
            sent.push(Sent {
                entry: e.clone(),
                highestmodseq: 0,
                uidnext: 0,
                had_annots: false,
            });
            let last = sent.last_mut().expect("pushed");
            moved += send_any(&store, &mut peer, last, &part).await?;
        }
        // What changed during the bulk pass, without stopping anyone.
        for s in sent.iter_mut() {
            send_any(&store, &mut peer, s, &part).await?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = res {
        undo(&ctx, &mut peer, &sent, &[]).await;
        peer.logout().await;
        return Err(e);
    }
    // The final pass: writers wait on the owner's lock until the target
    // has every change and the master names it.
    let t = top.clone();
    let lock = blocking(&store, move |s| s.xfer_lock(&t)).await?;
    let mut activated: Vec<MailboxEntry> = Vec::new();
    let res: Result<(), String> = async {
        for s in sent.iter_mut() {
            send_any(&store, &mut peer, s, &part).await?;
        }
        let t = top.clone();
        let mut data = blocking(&store, move |s| s.export_userdata(&t, whole_user)).await?;
        // A user's Sieve scripts go with them.
        if whole_user {
            data.push_str(&sieve_userdata(&ctx, &top)?);
        }
        if peer.cyrus {
            super::xfer_sync::send_userdata(&mut peer, &top, &data).await?;
        } else if !data.is_empty() {
            peer.apply(&XApply::User(top.clone(), data)).await?;
        }
        for s in &sent {
            if peer.cyrus {
                super::xfer_sync::activate(&ctx, &mut peer, &s.entry.name).await?;
            } else {
                peer.apply(&XApply::Activate(s.entry.name.clone())).await?;
            }
            activated.push(s.entry.clone());
        }
        Ok(())
    }
    .await;
    if let Err(e) = res {
        drop(lock);
        undo(&ctx, &mut peer, &sent, &activated).await;
        peer.logout().await;
        return Err(e);
    }
    peer.logout().await;
    let (t, entries) = (top.clone(), all.clone());
    blocking(&store, move |s| lock.finish(s, &entries, &t, whole_user)).await?;
    if whole_user {
        // The scripts are the target's now.
        let scripts = sieve_scripts(&ctx, &top);
        if let Err(e) = std::fs::remove_dir_all(scripts.dir()) {
            if e.kind() != std::io::ErrorKind::NotFound {
                ctx.log.warning(&format!("XFER: {}: {e}", scripts.dir().display()));
            }
        }
    }
    Ok((all.len(), moved))
}

/// A user's Sieve scripts (`sievedir`).
fn sieve_scripts(ctx: &Ctx, inbox: &str) -> crate::store::sievedir::Scripts {
    let dir = ctx.conf.path_option("sievedir").unwrap_or_else(|| "/usr/sieve".into());
    crate::store::sievedir::Scripts::of(std::path::Path::new(&dir), inbox, ctx.store.cfg.fulldirhash)
}

/// A user's Sieve scripts as XFER user-data lines: `sieve TAB hex(name)
/// TAB hex(source)` each, `sieveactive TAB hex(name)` for the active one.
fn sieve_userdata(ctx: &Ctx, inbox: &str) -> Result<String, String> {
    let s = sieve_scripts(ctx, inbox);
    let (names, active) = s.list().map_err(|e| format!("{}: {e}", s.dir().display()))?;
    let mut out = String::new();
    for n in names {
        let src = s
            .get(&n, 1 << 20)
            .map_err(|e| format!("{}: {e}", s.dir().display()))?
            .unwrap_or_default();
        let h = crate::util::codec::hex;
        out.push_str(&format!("sieve\t{}\t{}\n", h(n.as_bytes()), h(&src)));
    }
    if let Some(a) = active {
        out.push_str(&format!("sieveactive\t{}\n", crate::util::codec::hex(a.as_bytes())));
    }
    Ok(out)
}

/// The target's side of `sieve_userdata`: writes the scripts; the other
/// lines, for the store.
pub fn import_sieve_userdata(ctx: &Ctx, inbox: &str, data: &str) -> Result<String, String> {
    let mut rest = String::new();
    let s = sieve_scripts(ctx, inbox);
    let bad = || "NO Invalid user data".to_string();
    let name = |h: &str| -> Result<String, String> {
        let n = crate::util::codec::unhex(h).ok_or_else(bad)?;
        crate::store::sievedir::valid_name(&n).map(str::to_string).ok_or_else(bad)
    };
    for line in data.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match f[..] {
            ["sieve", n, src] => {
                let src = crate::util::codec::unhex(src).ok_or_else(bad)?;
                s.put(&name(n)?, &src).map_err(|e| format!("NO {e}"))?;
            }
            ["sieveactive", n] => s.set_active(Some(&name(n)?)).map_err(|e| format!("NO {e}"))?,
            _ => {
                rest.push_str(line);
                rest.push('\n');
            }
        }
    }
    Ok(rest)
}

/// Backs out of a failed XFER: the target's copies go, and the master is
/// told again where the mailboxes it was already re-pointed for are.
async fn undo(ctx: &Arc<Ctx>, peer: &mut Peer, sent: &[Sent], activated: &[MailboxEntry]) {
    for s in sent.iter().rev() {
        let mut cmd = b"LOCALDELETE ".to_vec();
        crate::proto::imap::render::client_string(&mut cmd, s.entry.name.as_bytes());
        cmd.extend_from_slice(b"\r\n");
        let _ = peer.call(cmd, true).await;
    }
    if activated.is_empty() {
        return;
    }
    let ops: Vec<crate::store::murder::DirOp> = activated
        .iter()
        .map(|e| crate::store::murder::DirOp::Activate {
            name: e.name.clone(),
            partition: e.partition.clone(),
            acl: e.acl.clone(),
        })
        .collect();
    if let Err(e) = blocking(&ctx.store, move |s| s.push(&ops)).await {
        ctx.log
            .error(&format!("XFER: could not re-point the MUPDATE master after a failed move: {e}"));
    }
}

impl Session {
    fn admin(&self) -> bool {
        self.ctx.is_admin(self.user.as_deref().unwrap_or(""))
    }

    pub async fn xfer(&mut self, tag: &str, ext: &str, server: &str, part: Option<String>) -> Res {
        if !self.admin() {
            return self.tagged(tag, "NO Permission denied").await;
        }
        let top = match self.internal(ext) {
            Ok(n) => n,
            Err(t) => return self.tagged(tag, t).await,
        };
        if server.eq_ignore_ascii_case(&self.ctx.servername) {
            return self.tagged(tag, "NO Invalid server requested").await;
        }
        let part = part.unwrap_or_default();
        match run(self.ctx.clone(), top.clone(), server.to_string(), part).await {
            Ok((boxes, recs)) => {
                self.ctx
                    .log
                    .info(&format!("XFER: moved {top} to {server} ({boxes} mailboxes, {recs} records)"));
                self.tagged(tag, "OK Completed").await
            }
            Err(e) => {
                self.ctx.log.error(&format!("XFER: could not move {top} to {server}: {e}"));
                let text = if e == StoreError::NotFound.to_string() {
                    e
                } else {
                    format!("XFER failed: {e}")
                };
                self.tagged(tag, &format!("NO {text}")).await
            }
        }
    }

    /// Cyrus's RENAME with a location: `server!partition` on another
    /// server moves the mailbox there (an XFER, names unchanged, as
    /// Cyrus's front ends send it); a partition alone is a move between
    /// partitions, which this store does not do yet.
    pub async fn rename_to(&mut self, tag: &str, from: &str, to: &str, location: &str) -> Res {
        let (server, part) = match location.split_once('!') {
            Some((s, p)) => (s, p),
            None => ("", location),
        };
        if !server.is_empty() && !server.eq_ignore_ascii_case(&self.ctx.servername) {
            if from != to {
                return self.tagged(tag, "NO Operation is not supported on mailbox").await;
            }
            let part = (!part.is_empty()).then(|| part.to_string());
            return self.xfer(tag, from, server, part).await;
        }
        let current = match self.internal(from) {
            Ok(n) => self.blocking(move |s| s.lookup(&n)).await.ok().flatten().map(|e| e.partition),
            Err(_) => None,
        };
        if part.is_empty() || current.as_deref() == Some(part) {
            return self.rename(tag, from, to).await;
        }
        self.tagged(tag, "NO Operation is not supported on mailbox").await
    }

    pub async fn localdelete(&mut self, tag: &str, ext: &str) -> Res {
        if !self.admin() {
            return self.tagged(tag, "NO Permission denied").await;
        }
        let name = match self.internal(ext) {
            Ok(n) => n,
            Err(t) => return self.tagged(tag, t).await,
        };
        match self.blocking(move |s| s.delete_local(&name)).await {
            Ok(()) => self.tagged(tag, "OK Completed").await,
            Err(t) => self.tagged(tag, &t).await,
        }
    }

    pub async fn mupdatepush(&mut self, tag: &str, ext: &str) -> Res {
        if !self.admin() {
            return self.tagged(tag, "NO Permission denied").await;
        }
        let name = match self.internal(ext) {
            Ok(n) => n,
            Err(t) => return self.tagged(tag, t).await,
        };
        let res = self
            .blocking(move |s| {
                let e = s.lookup(&name)?.ok_or(StoreError::NotFound)?;
                // The last step of a Cyrus back end's XFER to this one
                // (see undump): the mailbox opens here and the master is
                // pointed at it.
                if e.mbtype == crate::store::xfer::ARRIVING {
                    return s.activate_import(&name).map(|_| ());
                }
                s.push(&[crate::store::murder::DirOp::Activate {
                    name: e.name,
                    partition: e.partition,
                    acl: e.acl,
                }])
            })
            .await;
        match res {
            Ok(()) => self.tagged(tag, "OK Completed").await,
            Err(t) => self.tagged(tag, &t).await,
        }
    }

    /// The target's half of XFER.
    pub async fn xapply(&mut self, tag: &str, x: XApply) -> Res {
        if !self.admin() {
            return self.tagged(tag, "NO Permission denied").await;
        }
        let res = match x {
            XApply::Mailbox(m) => match wire_to_image(m) {
                Some(img) => {
                    let part = img.entry.partition.clone();
                    self.blocking(move |s| s.import_mailbox(&img, &part).map(|_| ())).await
                }
                None => Err("BAD Invalid annotations".to_string()),
            },
            XApply::Records(name, recs) => {
                self.blocking(move |s| {
                    let inc: Vec<Incoming<'_>> = recs
                        .iter()
                        .map(|r| Incoming {
                            rec: Record {
                                uid: r.uid,
                                modseq: r.modseq,
                                flags: r.flags,
                                keywords: r.keywords.clone(),
                                internaldate: r.internaldate,
                                tz: r.tz,
                                savedate: r.savedate,
                                size: 0,
                                header_size: 0,
                                guid: Vec::new(),
                                // Not carried between mumail back ends:
                                // the MODSEQ it arrives with.
                                createdmodseq: r.modseq,
                            },
                            body: r.body.as_deref(),
                        })
                        .collect();
                    s.import_records(&name, &inc)
                })
                .await
            }
            XApply::State {
                name,
                uidnext,
                highestmodseq,
                recentuid,
                keywords,
            } => {
                self.blocking(move |s| s.import_state(&name, uidnext, highestmodseq, recentuid, &keywords))
                    .await
            }
            XApply::User(top, data) => {
                let ctx = self.ctx.clone();
                let t = top.clone();
                let data = match tokio::task::spawn_blocking(move || import_sieve_userdata(&ctx, &t, &data)).await {
                    Ok(Ok(rest)) => rest,
                    Ok(Err(t)) => return self.tagged(tag, &t).await,
                    Err(e) => return self.tagged(tag, &format!("NO {e}")).await,
                };
                // The number of new subscriptions, for a migration's report.
                return match self.blocking(move |s| s.import_userdata(&top, &data)).await {
                    Ok(n) => self.tagged(tag, &format!("OK [XUSER {n}] Completed")).await,
                    Err(t) => self.tagged(tag, &t).await,
                };
            }
            XApply::Annots(name, uids, data) => match parse_annots(&data) {
                Some(annots) => {
                    let uids = crate::store::parse_uid_ranges(&uids);
                    self.blocking(move |s| s.import_msg_annotations(&name, &uids, &annots)).await
                }
                None => Err("BAD Invalid annotations".to_string()),
            },
            XApply::Activate(name) => {
                let n = name.clone();
                let r = self.blocking(move |s| s.activate_import(&n).map(|_| ())).await;
                if r.is_ok() {
                    self.ctx.log.info(&format!("XFER: {name} arrived"));
                }
                r
            }
            XApply::Merge {
                name,
                uidvalidity,
                lo,
                hi,
                records,
            } => {
                let src: Vec<(u32, u32, String, i64)> = records.into_iter().map(|r| (r.uid, r.flags, r.keywords, r.internaldate)).collect();
                // The reason of a refusal matters to the migration: spelled out.
                let r = blocking(&self.ctx.store, move |s| s.merge_records(&name, uidvalidity, lo, hi, &src))
                    .await
                    .map_err(|e| format!("NO {e}"));
                return match r {
                    Ok(m) => {
                        let missing = if m.missing.is_empty() {
                            "-".to_string()
                        } else {
                            m.missing.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
                        };
                        let text = format!("OK [XMERGED {missing} {} {} {}] Completed", m.reflagged, m.removed, m.stale);
                        self.tagged(tag, &text).await
                    }
                    Err(t) => self.tagged(tag, &t).await,
                };
            }
            XApply::Add {
                name,
                uidvalidity,
                records,
            } => blocking(&self.ctx.store, move |s| {
                let e = s.lookup(&name)?.ok_or(StoreError::NotFound)?;
                if e.uidvalidity != uidvalidity {
                    return Err(StoreError::Invalid("UIDVALIDITY differs"));
                }
                let mut bodies = Vec::with_capacity(records.len());
                for r in &records {
                    bodies.push(r.body.as_deref().ok_or(StoreError::Invalid("record without its message"))?);
                }
                let staged = s.stage_many(&e.partition, &bodies)?;
                let mut cached = Vec::with_capacity(records.len());
                for body in bodies {
                    let (envelope, bodystructure, body) = crate::proto::imap::render::cache_items(body);
                    cached.push(crate::store::Cached {
                        envelope,
                        bodystructure,
                        body,
                    });
                }
                let news: Vec<crate::store::NewMessage<'_>> = records
                    .iter()
                    .zip(staged.iter().zip(cached.iter()))
                    .map(|(r, (st, c))| crate::store::NewMessage {
                        staged: st,
                        flags: r.flags & 0x1f,
                        keywords: r.keywords.clone(),
                        internaldate: r.internaldate,
                        tz: r.tz,
                        cached: c,
                    })
                    .collect();
                let uids: Vec<u32> = records.iter().map(|r| r.uid).collect();
                s.append_at(&name, &uids, &news)
            })
            .await
            .map_err(|e| format!("NO {e}")),
        };
        match res {
            Ok(()) => self.tagged(tag, "OK Completed").await,
            Err(t) => self.tagged(tag, &t).await,
        }
    }
}
