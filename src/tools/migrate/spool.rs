//! mumail-migrate from a Cyrus spool's files, through the XAPPLY
//! commands XFER uses.

use super::*;

/// A Cyrus spool found from its imapd.conf.
pub(super) struct Spool {
    pub(super) configdir: PathBuf,
    pub(super) boxes: Vec<crate::tools::cyrus_spool::Mailbox>,
    /// Mailbox annotations (`annotations.db`: special use, METADATA), by
    /// mailbox uniqueid (3.x) or name; or why they could not be read.
    pub(super) annotations: Result<HashMap<String, Vec<crate::tools::cyrus_spool::Annotation>>, String>,
    /// Where the users' Sieve scripts are (`sievedir`, `fulldirhash`),
    /// and the name of 3.x's script folder (`sieve_folder`).
    pub(super) sievedir: PathBuf,
    pub(super) fulldirhash: bool,
    pub(super) sieve_folder: String,
}

impl Spool {
    pub(super) fn open(conf: &str) -> Result<Spool, String> {
        let c = crate::config::cyrus::ImapdConf::load(conf, None).map_err(|e| e.to_string())?;
        let configdir = PathBuf::from(c.get("configdirectory").unwrap_or(""));
        let roots: Vec<PathBuf> = c.partitions().iter().map(|(_, p)| PathBuf::from(p)).collect();
        if roots.is_empty() {
            return Err(format!("{conf}: no partition-* option is set"));
        }
        let db = c
            .get("annotation_db_path")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| configdir.join("annotations.db"));
        let annotations = if db.exists() {
            crate::tools::cyrus_spool::read_limited(&db, 1 << 30)
                .and_then(|d| crate::tools::cyrus_spool::mailbox_annotations(&d))
                .map_err(|e| format!("{}: {e}", db.display()))
        } else {
            Ok(HashMap::new())
        };
        Ok(Spool {
            sievedir: PathBuf::from(c.path_option("sievedir").unwrap_or_else(|| "/usr/sieve".into())),
            fulldirhash: c.get_switch("fulldirhash"),
            sieve_folder: super::sieve::sieve_folder(&c),
            configdir,
            boxes: crate::tools::cyrus_spool::mailboxes(&roots)?,
            annotations,
        })
    }
}

/// The name under which a spool's shared mailboxes (outside `user.*`)
/// are migrated and reported.
pub(super) const SHARED: &str = "(shared)";

/// Most records, and bytes of message files, per XAPPLY RECORDS.
pub(super) const BATCH_RECORDS: usize = 500;
pub(super) const BATCH_BYTES: usize = 16 << 20;

/// One user from a Cyrus spool into our back end, through the XAPPLY
/// commands XFER uses (as an admin of the destination): each mailbox
/// arrives with its uniqueid, UIDVALIDITY, ACL, UIDs, flags, keywords,
/// internal dates and modseqs, then is activated (and so announced to
/// the MUPDATE master); then the quota limits and subscriptions.
/// Expunged records stay behind.  A mailbox the destination already has
/// is skipped whole; one left half-copied by a killed run is copied again
/// from the start (the destination replaces an unactivated mailbox).
pub(super) async fn migrate_spool_user(o: &Opts, sp: &Spool, user: &str) -> Result<Report, String> {
    use crate::proto::imap::command::xapply::{XApply, XMailbox};
    use crate::tools::cyrus_spool as cs;
    let shared = user == SHARED;
    let inbox = if shared { String::new() } else { cs::inbox_of(user) };
    let prefix = format!("{inbox}.");
    // Cyrus 3.x's script folder holds Sieve scripts, not mail.
    let sieve_name = format!("{inbox}.{}", sp.sieve_folder);
    let sieve_box = sp.boxes.iter().find(|m| !shared && m.header.name == sieve_name);
    let boxes: Vec<&cs::Mailbox> = sp
        .boxes
        .iter()
        .filter(|m| m.header.name != sieve_name || shared)
        .filter(|m| {
            let n = &m.header.name;
            if shared {
                cs::owner(n).is_none()
            } else {
                *n == inbox || n.starts_with(&prefix)
            }
        })
        .collect();
    if boxes.is_empty() {
        return Err(format!("no mailbox of {user} in the spool"));
    }
    let mut rep = Report {
        user: user.to_string(),
        folders: boxes.len(),
        ..Report::default()
    };
    let mut plan = Vec::new();
    for m in &boxes {
        // A damaged index or record is reported and left out; the rest
        // goes on.
        let ix = match m.index() {
            Ok(ix) => ix,
            Err(e) => {
                rep.problems.push(format!("{}: {e}", m.header.name));
                rep.skipped += 1;
                continue;
            }
        };
        for r in ix.records.iter().filter(|r| !r.crc_ok) {
            rep.problems
                .push(format!("{}: UID {}: cyrus.index record checksum mismatch", m.header.name, r.uid));
            rep.skipped += 1;
        }
        let live: Vec<cs::IndexRecord> = ix.records.iter().filter(|r| !r.expunged() && r.crc_ok).cloned().collect();
        o.progress.todo(user, live.len() as u64);
        plan.push((*m, ix, live));
    }
    if plan.is_empty() {
        // Every mailbox's index was damaged: reported above, nothing to do.
        return Ok(rep);
    }
    if o.dry_run {
        for (_, _, live) in &plan {
            rep.copied += live.len();
            rep.bytes += live.iter().map(|r| r.size).sum::<u64>();
        }
        return Ok(rep);
    }
    let (admin, pw) = o
        .dest_admin
        .as_ref()
        .ok_or_else(|| format!("{user}: a spool source needs -A admin:password for the destination"))?;
    let mut dst = Imap::connect(&o.dest).await?;
    dst.login("", admin, pw).await?;
    // Through a Murder front end: a user who has a back end already is
    // written there directly (XAPPLY is a back end's command); a new one
    // goes through the front end, which passes the commands to the back
    // end it places new users on, and that back end tells the MUPDATE
    // master.  (Shared mailboxes follow the first of them.)
    if let Some(server) = dst.murder_server(&plan[0].0.header.name).await? {
        let _ = dst.cmd(b"LOGOUT").await;
        dst = Imap::connect(&server).await?;
        dst.login("", admin, pw).await?;
    }
    for (m, ix, live) in &plan {
        let h = &m.header;
        let (specialuse, annotations) = match &sp.annotations {
            Ok(all) => mailbox_annotations(all, h),
            Err(e) => {
                rep.problems.push(format!("{}: mailbox annotations: {e}", h.name));
                Default::default()
            }
        };
        let mb = XMailbox {
            name: h.name.clone(),
            partition: String::new(),
            uniqueid: h.uniqueid.clone(),
            uidvalidity: ix.uidvalidity,
            created: ix.uidvalidity as i64,
            acl: h.acl.clone(),
            specialuse,
            annotations,
        };
        match dst.xapply(&XApply::Mailbox(mb)).await {
            Ok(_) => {}
            Err(e) if e.contains("already exists") => {
                // Copied by an earlier pass: bring it up to date.
                // (Annotations come with a mailbox's first pass only: the
                // destination takes them for an arriving mailbox.)
                merge_spool_mailbox(o, &mut dst, m, ix, live, user, &mut rep).await?;
                continue;
            }
            Err(e) => return Err(e),
        }
        let todo: Vec<&cs::IndexRecord> = live.iter().collect();
        send_spool_records(o, &mut dst, m, &todo, user, &mut rep, |records| {
            XApply::Records(h.name.clone(), records)
        })
        .await?;
        send_message_annotations(&mut dst, m, live, &mut rep).await?;
        dst.xapply(&XApply::State {
            name: h.name.clone(),
            uidnext: ix.last_uid.saturating_add(1),
            highestmodseq: ix.highestmodseq,
            recentuid: ix.recentuid,
            keywords: h.flags.join(" "),
        })
        .await?;
        dst.xapply(&XApply::Activate(h.name.clone())).await?;
        rep.acls += h.acl.split('\t').filter(|x| !x.is_empty()).count() / 2;
    }
    // Quota limits of the user's roots, subscriptions and seen state,
    // on every pass: a run killed after its last mailbox but before
    // these would otherwise never send them (the next run finds every
    // mailbox there already).  The destination applies them
    // idempotently and says how many subscriptions were new.
    let mut data = String::new();
    let roots: BTreeSet<&str> = plan
        .iter()
        .map(|(m, _, _)| m.header.quotaroot.as_str())
        .filter(|r| !r.is_empty())
        .collect();
    for root in roots {
        if let Some(limits) = cs::quota(&sp.configdir, root)? {
            data.push_str(&crate::store::Store::quota_userdata_line(root, limits));
        }
    }
    let inbox_id = plan
        .iter()
        .find(|(m, _, _)| m.header.name == inbox)
        .map(|(m, _, _)| m.header.uniqueid.clone())
        .unwrap_or_default();
    if !shared {
        for name in cs::subscriptions(&sp.configdir, user, &inbox_id)? {
            data.push_str(&format!("sub\t{name}\n"));
        }
        // The user's \Seen on other users' and shared mailboxes
        // (kept by mailbox uniqueid, which the migration keeps).
        match cs::seen(&sp.configdir, user, &inbox_id) {
            Ok(entries) => {
                for (id, t, uids) in entries {
                    data.push_str(&format!("seen\t{id}\t{t}\t0\t{uids}\n"));
                }
            }
            Err(e) => {
                rep.problems.push(format!("seen state: {e}"));
                rep.skipped += 1;
            }
        }
    }
    if !data.is_empty() {
        // Shared mailboxes' quotas go with the first of them.
        let top = if shared { plan[0].0.header.name.clone() } else { inbox.clone() };
        let status = dst.xapply(&XApply::User(top, data)).await?;
        rep.subscribed += code_number(&[status.into_bytes()], "XUSER").unwrap_or(0) as usize;
    }
    let _ = dst.cmd(b"LOGOUT").await;
    if !shared && o.dest_sieve.is_some() {
        let scripts = super::sieve::from_spool(&sp.sievedir, sp.fulldirhash, &inbox, &inbox_id, sieve_box)?;
        move_scripts(o, user, None, &scripts, &mut rep).await?;
    }
    Ok(rep)
}

/// A mailbox's special use and other annotations (METADATA) from
/// `annotations.db`, for XAPPLY MAILBOX: the owner's `/specialuse`, and
/// `entry TAB userid TAB hex(value)` lines with Cyrus's owner placeholder
/// replaced by the owner.
fn mailbox_annotations(
    all: &HashMap<String, Vec<crate::tools::cyrus_spool::Annotation>>,
    h: &crate::tools::cyrus_spool::Header,
) -> (String, String) {
    use crate::tools::cyrus_spool as cs;
    let owner = cs::owner(&h.name).unwrap_or_default();
    let found = all.get(&h.uniqueid).or_else(|| all.get(&h.name));
    let (mut specialuse, mut lines) = (String::new(), String::new());
    for (entry, userid, value) in found.into_iter().flatten() {
        let userid = cs::annotation_userid(userid, &h.name);
        if entry == "/specialuse" {
            if userid == owner && !owner.is_empty() {
                specialuse = String::from_utf8_lossy(value).trim().to_string();
            }
        } else if !entry.contains(['\t', '\n']) && !userid.contains(['\t', '\n']) {
            lines.push_str(&format!("{entry}\t{userid}\t{}\n", crate::util::codec::hex(value)));
        }
    }
    (specialuse, lines)
}

/// A mailbox's per-message annotations (its `cyrus.annotations`) for
/// the records copied (XAPPLY ANNOTS, while the mailbox is arriving).
async fn send_message_annotations(
    dst: &mut Imap,
    m: &crate::tools::cyrus_spool::Mailbox,
    live: &[crate::tools::cyrus_spool::IndexRecord],
    rep: &mut Report,
) -> Result<(), String> {
    use crate::proto::imap::command::xapply::XApply;
    use crate::tools::cyrus_spool as cs;
    // No file: nothing to send (a destination that predates ANNOTS is
    // not asked).
    let found = match cs::message_annotations(&m.dir) {
        Ok(Some(f)) => f,
        Ok(None) => return Ok(()),
        Err(e) => {
            rep.problems.push(format!("{}: message annotations: {e}", m.header.name));
            return Ok(());
        }
    };
    let uids: BTreeSet<u32> = live.iter().map(|r| r.uid).collect();
    let mut data = String::new();
    for (uid, (entry, userid, value)) in found.iter().filter(|(u, _)| uids.contains(u)) {
        let userid = cs::annotation_userid(userid, &m.header.name);
        if entry.contains(['\t', '\n']) || userid.contains(['\t', '\n']) {
            continue;
        }
        data.push_str(&format!("{uid}\t{entry}\t{userid}\t{}\n", crate::util::codec::hex(value)));
    }
    let uids: Vec<u32> = uids.into_iter().collect();
    dst.xapply(&XApply::Annots(m.header.name.clone(), crate::store::uid_ranges(&uids), data))
        .await
        .map(|_| ())
}

/// A later pass over a mailbox an earlier pass copied: the destination
/// expunges what the source expunged and takes the source's flags (MERGE,
/// by UID ranges), then gets the new messages under their source UIDs
/// (ADD).  Messages the destination lacks below its UIDNEXT (expunged
/// there) cannot come back and are counted as skipped.
pub(super) async fn merge_spool_mailbox(
    o: &Opts,
    dst: &mut Imap,
    m: &crate::tools::cyrus_spool::Mailbox,
    ix: &crate::tools::cyrus_spool::Index,
    live: &[crate::tools::cyrus_spool::IndexRecord],
    user: &str,
    rep: &mut Report,
) -> Result<(), String> {
    use crate::proto::imap::command::xapply::XApply;
    const MERGE_CHUNK: usize = 2000;
    let h = &m.header;
    let end = ix.last_uid.saturating_add(1);
    let mut missing: Vec<u32> = Vec::new();
    let mut lo = 1u32;
    let chunks: Vec<&[crate::tools::cyrus_spool::IndexRecord]> = if live.is_empty() {
        vec![&[]]
    } else {
        live.chunks(MERGE_CHUNK).collect()
    };
    let n = chunks.len();
    for (i, chunk) in chunks.into_iter().enumerate() {
        let hi = if i + 1 == n {
            end.max(lo)
        } else {
            chunk.last().map_or(end, |r| r.uid.saturating_add(1))
        };
        let status = dst
            .xapply(&XApply::Merge {
                name: h.name.clone(),
                uidvalidity: ix.uidvalidity,
                lo,
                hi,
                records: chunk.iter().map(|r| spool_record(r, &h.flags, None)).collect(),
            })
            .await?;
        // OK [XMERGED missing reflagged removed stale] ...
        let inner = status
            .split("[XMERGED ")
            .nth(1)
            .and_then(|t| t.split(']').next())
            .ok_or_else(|| format!("{}: MERGE: unexpected answer {status}", dst.server))?;
        let w: Vec<&str> = inner.split(' ').collect();
        if w.len() != 4 {
            return Err(format!("{}: MERGE: unexpected answer {status}", dst.server));
        }
        if w[0] != "-" {
            missing.extend(w[0].split(',').filter_map(|u| u.parse::<u32>().ok()));
        }
        let num = |x: &str| x.parse::<usize>().unwrap_or(0);
        rep.reflagged += num(w[1]);
        rep.removed += num(w[2]);
        rep.skipped += num(w[3]);
        lo = hi;
    }
    let want: std::collections::HashSet<u32> = missing.iter().copied().collect();
    let todo: Vec<&crate::tools::cyrus_spool::IndexRecord> = live.iter().filter(|r| want.contains(&r.uid)).collect();
    // Already present ones are done as far as the progress line goes.
    for _ in 0..live.len().saturating_sub(todo.len()) {
        o.progress.done(user, 0);
    }
    send_spool_records(o, dst, m, &todo, user, rep, |records| XApply::Add {
        name: h.name.clone(),
        uidvalidity: ix.uidvalidity,
        records,
    })
    .await?;
    // Then the source's UIDNEXT (higher than its last message when that
    // was expunged), so that no UID it used is given again here.
    dst.xapply(&XApply::Merge {
        name: h.name.clone(),
        uidvalidity: ix.uidvalidity,
        lo: end,
        hi: end,
        records: Vec::new(),
    })
    .await?;
    Ok(())
}

/// A spool record as XAPPLY carries it.
pub(super) fn spool_record(
    r: &crate::tools::cyrus_spool::IndexRecord,
    names: &[String],
    body: Option<Vec<u8>>,
) -> crate::proto::imap::command::xapply::XRecord {
    crate::proto::imap::command::xapply::XRecord {
        uid: r.uid,
        modseq: r.modseq.max(1),
        flags: r.flags(),
        internaldate: r.internaldate,
        tz: crate::util::codec::local_offset_min(r.internaldate),
        savedate: r.savedate,
        keywords: r.keywords(names).join(" "),
        body,
    }
}

/// Sends records with their message files, in batches of at most
/// BATCH_RECORDS records or BATCH_BYTES bytes, each as the XAPPLY `item`
/// makes of it.
pub(super) async fn send_spool_records(
    o: &Opts,
    dst: &mut Imap,
    m: &crate::tools::cyrus_spool::Mailbox,
    todo: &[&crate::tools::cyrus_spool::IndexRecord],
    user: &str,
    rep: &mut Report,
    item: impl Fn(Vec<crate::proto::imap::command::xapply::XRecord>) -> crate::proto::imap::command::xapply::XApply,
) -> Result<(), String> {
    let mut batch = Vec::new();
    let mut bytes = 0usize;
    for (i, r) in todo.iter().enumerate() {
        let body = match m.message(r.uid, MAX_MESSAGE) {
            Ok(b) => b,
            Err(e) => {
                // A message file gone or unreadable: reported, the rest
                // goes on.
                rep.problems.push(format!("{}: UID {}: {e}", m.header.name, r.uid));
                rep.skipped += 1;
                if i + 1 == todo.len() && !batch.is_empty() {
                    rep.copied += batch.len();
                    dst.xapply(&item(std::mem::take(&mut batch))).await?;
                }
                continue;
            }
        };
        bytes += body.len();
        rep.bytes += body.len() as u64;
        o.progress.done(user, body.len() as u64);
        batch.push(spool_record(r, &m.header.flags, Some(body)));
        if batch.len() >= BATCH_RECORDS || bytes >= BATCH_BYTES || i + 1 == todo.len() {
            rep.copied += batch.len();
            dst.xapply(&item(std::mem::take(&mut batch))).await?;
            bytes = 0;
        }
    }
    Ok(())
}
