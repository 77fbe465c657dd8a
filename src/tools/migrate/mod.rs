//! mumail-migrate: copies users' mail into the cluster (issue 10) from
//! any IMAP server, from a user's Maildir++ tree or mbox files
//! (`local_source`), or from a Cyrus spool's files (`cyrus_spool`, through
//! XFER's XAPPLY, keeping UIDs).  Per user and folder it copies the
//! messages the destination does not have yet (flags, keywords and
//! internal dates kept; in batches: one UID FETCH, one MULTIAPPEND), brings
//! flags of copied messages up to date and removes there what was expunged
//! at the source.  What was copied is recorded per user in the state
//! directory, synced before and after each batch, so a killed run restarts
//! where it stopped; a run after that copies only what changed.
//!
//! State file `<state>/<user>` lines: `V <folder> <source uidvalidity>
//! <destination uidvalidity>` starts (or restarts) a folder's record,
//! `P <folder> <source uid> <destination uidnext>` announces an APPEND,
//! `M <folder> <source uid> <destination uid>` records it.  A `P` without
//! its `M` (a run killed during the APPEND) is settled on restart by
//! looking for the message among the destination's new UIDs.

use crate::daemon::front::collect_tagged;
use crate::proto::imap::stream::{fetched, Fetched};
use crate::util::getopt::{getopt, Opt};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncWriteExt, BufReader};

mod client;
mod record;
mod sieve;
mod spool;
use client::*;
use record::*;
use spool::*;

const USAGE: &str = "usage: mumail-migrate {-s source_host[:port] | -C cyrus_imapd.conf | -M maildir | -m mbox_dir [-i inbox]} -d dest_host[:port] [-a admin:password] [-A admin:password] [-k source_sieve_host:port] [-K dest_sieve_host:port] [-u userfile] [-S statedir] [-P parallel] [-n] [user...]";
/// The largest message a migration reads (Cyrus's maxmessagesize scale).
const MAX_MESSAGE: u64 = 256 << 20;
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

#[derive(Clone)]
struct Opts {
    source: String,
    dest: String,
    /// `-a`/`-A`: log in as this admin for each user (SASL PLAIN with the
    /// user as authorization id); else with the user's own password.
    source_admin: Option<(String, String)>,
    dest_admin: Option<(String, String)>,
    state: PathBuf,
    dry_run: bool,
    progress: Arc<Progress>,
    /// `-C`: the source is a Cyrus spool on disk, read from its files.
    spool: Option<Arc<Spool>>,
    /// `-M`/`-m`: the source is each user's Maildir or mbox files.
    local: Option<Local>,
    /// `-k`/`-K`: the source's and the destination's ManageSieve
    /// (`host:port`); with `-K` the users' Sieve scripts move too.
    source_sieve: Option<String>,
    dest_sieve: Option<String>,
}

/// A local source's paths, `%u` standing for the user.
#[derive(Clone, Debug)]
enum Local {
    Maildir(String),
    /// The mbox directory and the inbox file (`-i`).
    Mbox(String, Option<String>),
}

/// Messages to copy and copied, per user and in all, for the progress
/// line.
struct Progress {
    users: std::sync::Mutex<BTreeMap<String, (u64, u64)>>,
    bytes: std::sync::atomic::AtomicU64,
    start: std::time::Instant,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            users: std::sync::Mutex::new(BTreeMap::new()),
            bytes: std::sync::atomic::AtomicU64::new(0),
            start: std::time::Instant::now(),
        }
    }

    fn todo(&self, user: &str, n: u64) {
        if let Ok(mut u) = self.users.lock() {
            u.entry(user.to_string()).or_default().0 += n;
        }
    }

    fn done(&self, user: &str, bytes: u64) {
        if let Ok(mut u) = self.users.lock() {
            u.entry(user.to_string()).or_default().1 += 1;
        }
        self.bytes.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    /// `progress: 120/500 messages, 3.4 MB, 45.0 msg/s, ETA 8 s; alice 80/200 ...`
    /// (users still copying).
    fn line(&self) -> String {
        self.render(false)
    }

    /// As `line`, with bars (for a terminal): the whole run's, and each
    /// of the first users still copying.
    fn bars(&self) -> String {
        self.render(true)
    }

    fn render(&self, bars: bool) -> String {
        let users = self.users.lock().map(|u| u.clone()).unwrap_or_default();
        let (todo, done) = users.values().fold((0, 0), |(t, d), (a, b)| (t + a, d + b));
        let secs = self.start.elapsed().as_secs_f64().max(0.001);
        let rate = done as f64 / secs;
        let eta = if rate > 0.0 {
            format!("{:.0} s", todo.saturating_sub(done) as f64 / rate)
        } else {
            "-".to_string()
        };
        let mb = self.bytes.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e6;
        let bar = |d: u64, t: u64, w: u64| -> String {
            if !bars {
                return String::new();
            }
            let f = (d.min(t) * w).checked_div(t).unwrap_or(w) as usize;
            format!("[{}{}] ", "#".repeat(f), ".".repeat(w as usize - f))
        };
        let mut l = format!(
            "progress: {}{done}/{todo} messages, {mb:.1} MB, {rate:.1} msg/s, ETA {eta}",
            bar(done, todo, 20)
        );
        let active = users.iter().filter(|(_, (t, d))| d < t);
        for (i, (u, (t, d))) in active.enumerate() {
            if bars && i == 4 {
                l += "; ...";
                break;
            }
            l += &format!("; {u} {}{d}/{t}", bar(*d, *t, 8));
        }
        l
    }
}

/// What one user's migration did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub user: String,
    pub folders: usize,
    pub copied: usize,
    pub bytes: u64,
    pub skipped: usize,
    pub reflagged: usize,
    pub removed: usize,
    /// ACL entries set and subscriptions added at the destination.
    pub acls: usize,
    pub subscribed: usize,
    /// Messages left out of a local source, with the reason (also counted
    /// as skipped).
    pub problems: Vec<String>,
    /// Quota limits set at the destination (`STORAGE 1000 MESSAGE 50`).
    pub quota: String,
    /// Sieve scripts stored at the destination (`-K`).
    pub scripts: usize,
}

/// Seconds a restarted run waits for messages a killed run had sent.
const PENDING_WAIT: u32 = 5;

/// Messages and bytes per copy batch: one UID FETCH at the source, one
/// MULTIAPPEND and one state-file sync at the destination.
const COPY_BATCH: usize = 200;
const COPY_BATCH_BYTES: u64 = 8 << 20;

/// Splits the UIDs to copy (with their sizes) into batches.
fn batches(todo: &[(u32, u64)]) -> Vec<Vec<u32>> {
    let mut out: Vec<Vec<u32>> = Vec::new();
    let mut bytes = 0u64;
    for &(uid, size) in todo {
        match out.last_mut() {
            Some(b) if b.len() < COPY_BATCH && bytes + size <= COPY_BATCH_BYTES => b.push(uid),
            _ => {
                out.push(vec![uid]);
                bytes = 0;
            }
        }
        bytes += size;
    }
    out
}

/// One user from their Maildir or mbox files: each folder (with what
/// could not be read reported per message) copied as from an IMAP server,
/// under UIDs kept in the user's `.ids` record; then the subscriptions.
async fn migrate_local_user(o: &Opts, local: &Local, user: &str, password: Option<&str>) -> Result<Report, String> {
    use crate::tools::local_source as ls;
    let expand = |p: &str| PathBuf::from(p.replace("%u", user));
    let l = local.clone();
    let (ex_m, ex_i) = match &l {
        Local::Maildir(p) => (expand(p), None),
        Local::Mbox(d, i) => (expand(d), i.as_deref().map(expand)),
    };
    let (folders, subs) = tokio::task::spawn_blocking(move || -> Result<_, String> {
        Ok(match l {
            Local::Maildir(_) => (ls::maildir(&ex_m)?, ls::maildir_subscriptions(&ex_m)),
            Local::Mbox(..) => (ls::mbox(&ex_m, ex_i.as_deref())?, ls::mbox_subscriptions(&ex_m)),
        })
    })
    .await
    .map_err(|e| e.to_string())??;
    let mut dst = Imap::connect(&o.dest).await?;
    match (&o.dest_admin, password) {
        (Some((a, p)), _) => dst.login(user, a, p).await?,
        (None, Some(pw)) => dst.login("", user, pw).await?,
        (None, None) => return Err(format!("{user}: no password and no admin (-A) to log in with")),
    }
    if !o.dry_run {
        std::fs::create_dir_all(&o.state).map_err(|e| format!("{}: {e}", o.state.display()))?;
    }
    let base = o.state.join(user.replace('/', "_"));
    let mut st = State::load(&base, !o.dry_run)?;
    let mut ids = Ids::load(&PathBuf::from(format!("{}.ids", base.display())), !o.dry_run)?;
    let dns = namespaces(&mut dst).await?;
    let mut rep = Report {
        user: user.to_string(),
        ..Report::default()
    };
    for folder in &folders {
        rep.folders += 1;
        rep.skipped += folder.problems.len();
        rep.problems.extend(folder.problems.iter().cloned());
        let uids = ids.assign(folder)?;
        let target = dns.absolute(&folder.name);
        migrate_folder(o, &mut Source::Local(uids), &mut dst, &mut st, &folder.name, &target, &mut rep).await?;
    }
    if !o.dry_run {
        let (dl, _) = dst.cmd(b"LSUB \"\" \"*\"").await?;
        let have: BTreeSet<String> = dl.iter().filter_map(|r| parse_list(r, "LSUB")).map(|l| l.2).collect();
        for t in subs.iter().map(|rel| dns.absolute(rel)) {
            if !have.contains(&t) && dst.cmd_mbox("SUBSCRIBE", &t, "").await.is_ok() {
                rep.subscribed += 1;
            }
        }
    }
    let _ = dst.cmd(b"LOGOUT").await;
    Ok(rep)
}

/// Migrates one user: every selectable folder of the source.
async fn migrate_user(o: &Opts, user: &str, password: Option<&str>) -> Result<Report, String> {
    if let Some(sp) = &o.spool {
        return migrate_spool_user(o, sp, user).await;
    }
    if let Some(l) = &o.local {
        return migrate_local_user(o, l, user, password).await;
    }
    let login = |admin: &Option<(String, String)>| -> Result<(String, String, String), String> {
        match (admin, password) {
            (Some((a, p)), _) => Ok((user.to_string(), a.clone(), p.clone())),
            (None, Some(pw)) => Ok((String::new(), user.to_string(), pw.to_string())),
            (None, None) => Err(format!("{user}: no password and no admin (-a/-A) to log in with")),
        }
    };
    let mut src = Imap::connect(&o.source).await?;
    let (z, c, p) = login(&o.source_admin)?;
    src.login(&z, &c, &p).await?;
    let mut dst = Imap::connect(&o.dest).await?;
    let (z, c, p) = login(&o.dest_admin)?;
    dst.login(&z, &c, &p).await?;
    if !o.dry_run {
        std::fs::create_dir_all(&o.state).map_err(|e| format!("{}: {e}", o.state.display()))?;
    }
    let mut st = State::load(&o.state.join(user.replace('/', "_")), !o.dry_run)?;
    // Folders of the user's personal namespace, under the same relative
    // names at the destination (`INBOX.Sent` at a Cyrus, `Sent` at a
    // Dovecot or an altnamespace Cyrus).
    let sns = namespaces(&mut src).await?;
    let dns = namespaces(&mut dst).await?;
    // With their special uses (RFC 6154: \Sent, \Trash...), which
    // clients find their folders by.
    let list_cmd: &[u8] = if src.caps.contains("SPECIAL-USE") {
        b"LIST \"\" \"*\" RETURN (SPECIAL-USE)"
    } else {
        b"LIST \"\" \"*\""
    };
    let (list, _) = src.cmd(list_cmd).await?;
    let mut folders: Vec<(String, String, String)> = list
        .iter()
        .filter_map(|r| parse_list(r, "LIST"))
        .filter(|(a, _, _)| !a.to_ascii_lowercase().contains("\\noselect"))
        .filter_map(|(a, _, n)| sns.relative(&n).map(|rel| (n, dns.absolute(&rel), special_uses(&a))))
        .collect();
    folders.sort();
    let mut rep = Report {
        user: user.to_string(),
        ..Report::default()
    };
    let mut uses = Vec::new();
    for (folder, target, special) in folders {
        rep.folders += 1;
        migrate_folder(o, &mut Source::Imap(&mut src), &mut dst, &mut st, &folder, &target, &mut rep).await?;
        if !special.is_empty() && !target.eq_ignore_ascii_case("INBOX") {
            uses.push((target, special));
        }
    }
    if !o.dry_run && !uses.is_empty() {
        set_special_uses(&mut dst, &uses, &mut rep).await;
    }
    if !o.dry_run {
        // Subscriptions the destination does not have yet.
        let (sl, _) = src.cmd(b"LSUB \"\" \"*\"").await?;
        let (dl, _) = dst.cmd(b"LSUB \"\" \"*\"").await?;
        let have: BTreeSet<String> = dl.iter().filter_map(|r| parse_list(r, "LSUB")).map(|l| l.2).collect();
        for (_, _, name) in sl.iter().filter_map(|r| parse_list(r, "LSUB")) {
            let Some(t) = sns.relative(&name).map(|rel| dns.absolute(&rel)) else {
                continue;
            };
            if !have.contains(&t) {
                dst.cmd_mbox("SUBSCRIBE", &t, "").await?;
                rep.subscribed += 1;
            }
        }
    }
    // The quota limits of the user's INBOX at the source, set by an
    // admin session at the destination (SETQUOTA is an admin's).
    if let (false, Some((admin, pw)), true) = (o.dry_run, &o.dest_admin, src.caps.contains("QUOTA")) {
        if let Ok((resps, _)) = src.cmd(b"GETQUOTAROOT INBOX").await {
            let limits = quota_limits(&resps);
            if !limits.is_empty() {
                rep.quota = set_quota(&o.dest, admin, pw, user, &limits).await?;
            }
        }
    }
    let _ = src.cmd(b"LOGOUT").await;
    let _ = dst.cmd(b"LOGOUT").await;
    // The user's Sieve scripts, from the old server's ManageSieve.
    if let (Some(from), Some(_)) = (&o.source_sieve, &o.dest_sieve) {
        let (z, c, p) = login(&o.source_admin)?;
        let scripts = sieve::fetch(from, &z, &c, &p).await?;
        move_scripts(o, user, password, &scripts, &mut rep).await?;
    }
    Ok(rep)
}

/// Stores a user's scripts through the destination's ManageSieve (`-K`)
/// as the destination admin for the user, or as the user.
async fn move_scripts(o: &Opts, user: &str, password: Option<&str>, scripts: &sieve::Scripts, rep: &mut Report) -> Result<(), String> {
    let Some(to) = &o.dest_sieve else {
        return Ok(());
    };
    if o.dry_run || scripts.list.is_empty() {
        rep.scripts = scripts.list.len();
        return Ok(());
    }
    let (z, c, p) = match (&o.dest_admin, password) {
        (Some((a, p)), _) => (user.to_string(), a.clone(), p.clone()),
        (None, Some(pw)) => (String::new(), user.to_string(), pw.to_string()),
        (None, None) => return Err(format!("{user}: no password and no admin (-A) for ManageSieve")),
    };
    let (stored, problems) = sieve::store(to, &z, &c, &p, scripts).await?;
    rep.scripts = stored;
    rep.skipped += problems.len();
    rep.problems.extend(problems);
    Ok(())
}

/// The special-use attributes (RFC 6154) among a LIST response's
/// attributes, in a canonical spelling and order (`\\Drafts \\Trash`).
fn special_uses(attrs: &str) -> String {
    use crate::daemon::imapd::mailboxes::SPECIAL_USES;
    let mut found: Vec<&str> = attrs
        .split_whitespace()
        .filter_map(|a| SPECIAL_USES.iter().find(|u| u.eq_ignore_ascii_case(a)).copied())
        .collect();
    found.sort_unstable();
    found.dedup();
    found.join(" ")
}

/// Gives the destination folders the special uses they have at the
/// source (SETMETADATA /private/specialuse, as the user), where they
/// differ; a folder the destination refuses is reported, not fatal.
async fn set_special_uses(dst: &mut Imap, uses: &[(String, String)], rep: &mut Report) {
    let have: BTreeMap<String, String> = match dst.cmd(b"LIST \"\" \"*\" RETURN (SPECIAL-USE)").await {
        Ok((l, _)) => l
            .iter()
            .filter_map(|r| parse_list(r, "LIST"))
            .map(|(a, _, n)| (n, special_uses(&a)))
            .collect(),
        Err(_) => BTreeMap::new(),
    };
    for (target, want) in uses {
        if have.get(target) == Some(want) {
            continue;
        }
        let mut c = b"SETMETADATA ".to_vec();
        crate::proto::imap::render::client_string(&mut c, target.as_bytes());
        c.extend_from_slice(b" (/private/specialuse ");
        crate::proto::imap::render::client_string(&mut c, want.as_bytes());
        c.push(b')');
        if let Err(e) = dst.cmd(&c).await {
            rep.problems.push(format!("{target}: special use {want}: {e}"));
        }
    }
}

/// Where a folder's messages come from: an IMAP session, or a local
/// folder (Maildir, mbox) whose messages have UIDs from the user's `.ids`
/// record.
enum Source<'a> {
    Imap(&'a mut Imap),
    Local(BTreeMap<u32, &'a crate::tools::local_source::Message>),
}

impl Source<'_> {
    /// The folder's UIDVALIDITY and messages: UID → (flags, size, date).
    async fn open(&mut self, folder: &str) -> Result<(u32, BTreeMap<u32, (Vec<String>, u64, String)>), String> {
        match self {
            Source::Imap(src) => {
                let (sresps, _) = src.cmd_mbox("EXAMINE", folder, "").await?;
                let v = code_number(&sresps, "UIDVALIDITY").unwrap_or(0);
                Ok((v, src.messages().await?))
            }
            Source::Local(m) => Ok((
                1,
                m.iter()
                    .map(|(u, m)| (*u, (m.flags.clone(), m.size, crate::util::codec::imap_date(m.time, 0))))
                    .collect(),
            )),
        }
    }

    /// The folder's ACL where the user may read it.
    async fn acl(&mut self, folder: &str) -> Option<BTreeMap<String, String>> {
        match self {
            Source::Imap(src) => src.cmd_mbox("GETACL", folder, "").await.ok().map(|(acl, _)| parse_acl(&acl)),
            Source::Local(_) => None,
        }
    }

    /// One batch's messages (missing ones, expunged or unreadable since
    /// the listing, left out).
    async fn fetch(&mut self, uids: &[u32]) -> Result<Vec<Fetched>, String> {
        match self {
            Source::Imap(src) => fetch_batch(src, uids).await,
            Source::Local(m) => Ok(uids
                .iter()
                .filter_map(|u| {
                    let msg = m.get(u)?;
                    Some(Fetched {
                        uid: *u,
                        flags: msg.flags.clone(),
                        internaldate: crate::util::codec::imap_date(msg.time, 0),
                        body: msg.read().ok()?,
                    })
                })
                .collect()),
        }
    }
}

async fn migrate_folder(
    o: &Opts,
    src: &mut Source<'_>,
    dst: &mut Imap,
    st: &mut State,
    folder: &str,
    target: &str,
    rep: &mut Report,
) -> Result<(), String> {
    let (svalidity, source) = src.open(folder).await?;
    if o.dry_run {
        let known = st.map.get(folder).map(|m| m.len()).unwrap_or(0);
        rep.copied += source.len().saturating_sub(known);
        return Ok(());
    }
    if !target.eq_ignore_ascii_case("INBOX") && dst.cmd_mbox("SELECT", target, "").await.is_err() {
        dst.cmd_mbox("CREATE", target, "").await?;
    }
    let (dresps, _) = dst.cmd_mbox("SELECT", target, "").await?;
    let dvalidity = code_number(&dresps, "UIDVALIDITY").unwrap_or(0);
    let dnext = code_number(&dresps, "UIDNEXT").unwrap_or(1);
    if st.validity.get(folder) != Some(&(svalidity, dvalidity)) {
        // New folder, or either side was recreated: start its record over.
        st.record(format!("V {folder} {svalidity} {dvalidity}"))?;
        st.validity.insert(folder.to_string(), (svalidity, dvalidity));
        st.map.remove(folder);
        st.pending.remove(folder);
    }
    let mut dest = dst.messages().await?;
    // The folder's ACL, where the user may read it at the source.
    if let Some(want) = src.acl(folder).await {
        let (have, _) = dst.cmd_mbox("GETACL", target, "").await?;
        let have = parse_acl(&have);
        let set = |r: &str| r.chars().collect::<BTreeSet<char>>();
        for (id, rights) in &want {
            if have.get(id).map(|h| set(h)) != Some(set(rights)) {
                let mut c = b"SETACL ".to_vec();
                crate::proto::imap::render::client_string(&mut c, target.as_bytes());
                c.push(b' ');
                crate::proto::imap::render::client_string(&mut c, id.as_bytes());
                c.push(b' ');
                crate::proto::imap::render::client_string(&mut c, rights.as_bytes());
                dst.cmd(&c).await?;
                rep.acls += 1;
            }
        }
    }
    // A run killed during an APPEND: the messages may be there already
    // (the same size and internal date, in the same order, at or above
    // the UIDNEXT of then), or arrive in a moment: a server may still be
    // committing an APPEND whose sender was killed after sending it all.
    // So what is not found is looked for again for a few seconds before
    // it is copied anew.
    let mut pending: Vec<(u32, u32)> = st.pending.remove(folder).unwrap_or_default().into_iter().collect();
    for attempt in 0..=PENDING_WAIT {
        if attempt > 0 {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            dest = dst.messages().await?;
        }
        let mut left = Vec::new();
        for (suid, from) in pending {
            let Some((_, size, date)) = source.get(&suid) else { continue };
            let mapped: BTreeSet<u32> = st.map.get(folder).map(|m| m.values().copied().collect()).unwrap_or_default();
            match dest
                .range(from..)
                .find(|(u, (_, s, d))| !mapped.contains(u) && s == size && d == date)
            {
                Some((duid, _)) => {
                    st.record(format!("M {folder} {suid} {duid}"))?;
                    st.map.entry(folder.to_string()).or_default().insert(suid, *duid);
                }
                None => left.push((suid, from)),
            }
        }
        pending = left;
        if pending.is_empty() {
            break;
        }
    }
    let map = st.map.get(folder).cloned().unwrap_or_default();
    o.progress
        .todo(&rep.user, source.keys().filter(|u| !map.contains_key(u)).count() as u64);
    // New at the source: copied in UID order, in batches; the next batch
    // is fetched while the last one is appended.
    let todo: Vec<(u32, u64)> = source
        .iter()
        .filter(|(u, _)| !map.contains_key(u))
        .map(|(u, (_, s, _))| (*u, *s))
        .collect();
    let copied_before = rep.copied;
    let mut queue = batches(&todo).into_iter();
    let mut ready = match queue.next() {
        Some(b) => Some(src.fetch(&b).await?),
        None => None,
    };
    while let Some(batch) = ready.take() {
        let next_batch = queue.next();
        let fetch_next = async {
            match &next_batch {
                Some(b) => src.fetch(b).await.map(Some),
                None => Ok(None),
            }
        };
        let (appended, fetched_next) = tokio::join!(append_batch(o, dst, st, folder, target, dnext, &batch, rep), fetch_next);
        appended?;
        ready = fetched_next?;
    }
    // Listed but gone when fetched (expunged meanwhile at the source).
    rep.skipped += todo.len().saturating_sub(rep.copied - copied_before);
    // Copied before: flags brought up to date; gone at the source: removed.
    let mut gone = Vec::new();
    for (suid, duid) in &map {
        match (source.get(suid), dest.get(duid)) {
            (Some((sf, _, _)), Some((df, _, _))) => {
                let (a, b): (BTreeSet<String>, BTreeSet<String>) = (
                    sf.iter().map(|f| f.to_ascii_lowercase()).collect(),
                    df.iter().map(|f| f.to_ascii_lowercase()).collect(),
                );
                if a != b {
                    dst.cmd(format!("UID STORE {duid} FLAGS.SILENT ({})", sf.join(" ")).as_bytes())
                        .await?;
                    rep.reflagged += 1;
                }
            }
            (None, Some(_)) => gone.push(*duid),
            _ => {}
        }
    }
    if !gone.is_empty() {
        let set: Vec<String> = gone.iter().map(u32::to_string).collect();
        let set = set.join(",");
        dst.cmd(format!("UID STORE {set} +FLAGS.SILENT (\\Deleted)").as_bytes()).await?;
        dst.cmd(format!("UID EXPUNGE {set}").as_bytes()).await?;
        rep.removed += gone.len();
    }
    Ok(())
}

/// One batch's messages from the source (missing ones, expunged since
/// the listing, left out).
async fn fetch_batch(src: &mut Imap, uids: &[u32]) -> Result<Vec<Fetched>, String> {
    let (got, _) = src
        .cmd(format!("UID FETCH {} (UID FLAGS INTERNALDATE BODY.PEEK[])", set_of(uids)).as_bytes())
        .await?;
    let want: BTreeSet<u32> = uids.iter().copied().collect();
    let mut msgs: Vec<Fetched> = got.iter().filter_map(|r| fetched(r)).filter(|f| want.contains(&f.uid)).collect();
    msgs.sort_by_key(|m| m.uid);
    msgs.dedup_by_key(|m| m.uid);
    Ok(msgs)
}

/// Appends one batch at the destination: the `P` lines recorded (one
/// sync) before, the `M` lines after.
#[allow(clippy::too_many_arguments)]
async fn append_batch(
    o: &Opts,
    dst: &mut Imap,
    st: &mut State,
    folder: &str,
    target: &str,
    dnext: u32,
    msgs: &[Fetched],
    rep: &mut Report,
) -> Result<(), String> {
    if msgs.is_empty() {
        return Ok(());
    }
    let next = dnext.max(st.map.get(folder).and_then(|m| m.values().max()).map_or(1, |u| u + 1));
    st.record_all(msgs.iter().map(|m| format!("P {folder} {} {next}", m.uid)))?;
    let refs: Vec<&Fetched> = msgs.iter().collect();
    let duids = dst.append(target, &refs).await?;
    st.record_all(msgs.iter().zip(&duids).map(|(m, d)| format!("M {folder} {} {d}", m.uid)))?;
    for (m, &d) in msgs.iter().zip(&duids) {
        st.map.entry(folder.to_string()).or_default().insert(m.uid, d);
        rep.copied += 1;
        rep.bytes += m.body.len() as u64;
        o.progress.done(&rep.user, m.body.len() as u64);
    }
    Ok(())
}

/// `-u` file lines: `user [password]`; `#` comments.
fn read_users(path: &str) -> Result<Vec<(String, Option<String>)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| match l.split_once(char::is_whitespace) {
            Some((u, p)) => (u.to_string(), Some(p.trim().to_string())),
            None => (l.to_string(), None),
        })
        .collect())
}

pub fn main(args: &[String]) -> i32 {
    use crate::util::exit;
    let Ok((opts, rest)) = getopt(args, "s:C:M:m:i:d:a:A:k:K:u:S:P:nh") else {
        eprintln!("{USAGE}");
        return exit::USAGE;
    };
    let mut o = Opts {
        source: String::new(),
        dest: String::new(),
        source_admin: None,
        dest_admin: None,
        state: PathBuf::from("migrate-state"),
        dry_run: false,
        progress: Arc::new(Progress::new()),
        spool: None,
        local: None,
        source_sieve: None,
        dest_sieve: None,
    };
    let mut inbox: Option<String> = None;
    let mut users: Vec<(String, Option<String>)> = Vec::new();
    let mut parallel = 4usize;
    let pair = |v: &str| v.split_once(':').map(|(a, b)| (a.to_string(), b.to_string()));
    for opt in opts {
        match opt {
            Opt::Arg('s', v) => o.source = v,
            Opt::Arg('C', v) => match Spool::open(&v) {
                Ok(sp) => o.spool = Some(Arc::new(sp)),
                Err(e) => {
                    eprintln!("mumail-migrate: fatal: {e}");
                    return exit::CONFIG;
                }
            },
            Opt::Arg('M', v) => o.local = Some(Local::Maildir(v)),
            Opt::Arg('m', v) => o.local = Some(Local::Mbox(v, None)),
            Opt::Arg('i', v) => inbox = Some(v),
            Opt::Arg('d', v) => o.dest = v,
            Opt::Arg('a', v) => o.source_admin = pair(&v),
            Opt::Arg('A', v) => o.dest_admin = pair(&v),
            Opt::Arg('k', v) => o.source_sieve = Some(v),
            Opt::Arg('K', v) => o.dest_sieve = Some(v),
            Opt::Arg('S', v) => o.state = PathBuf::from(v),
            Opt::Arg('P', v) => parallel = v.parse().unwrap_or(0),
            Opt::Arg('u', v) => match read_users(&v) {
                Ok(u) => users.extend(u),
                Err(e) => {
                    eprintln!("mumail-migrate: fatal: {e}");
                    return exit::CONFIG;
                }
            },
            Opt::Flag('n') => o.dry_run = true,
            Opt::Flag('h') => {
                println!("{USAGE}");
                return 0;
            }
            _ => {}
        }
    }
    users.extend(rest.into_iter().map(|u| (u, None)));
    // From a spool with no user named: every user it holds, and its
    // shared mailboxes.
    if let (Some(sp), true) = (&o.spool, users.is_empty()) {
        let all: BTreeSet<String> = sp
            .boxes
            .iter()
            .filter_map(|m| crate::tools::cyrus_spool::owner(&m.header.name))
            .collect();
        users.extend(all.into_iter().map(|u| (u, None)));
        if sp.boxes.iter().any(|m| crate::tools::cyrus_spool::owner(&m.header.name).is_none()) {
            users.push((SHARED.to_string(), None));
        }
    }
    if let (Some(Local::Mbox(_, i)), Some(v)) = (&mut o.local, inbox) {
        *i = Some(v);
    }
    let sources = [!o.source.is_empty(), o.spool.is_some(), o.local.is_some()];
    if sources.iter().filter(|s| **s).count() != 1 || o.dest.is_empty() || users.is_empty() || parallel == 0 {
        eprintln!("{USAGE}");
        return exit::USAGE;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mumail-migrate: fatal: {e}");
            return exit::OSERR;
        }
    };
    let o = Arc::new(o);
    let results = rt.block_on(async {
        // The progress line on stderr: redrawn each second on a terminal,
        // a line every 10 seconds otherwise.
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let p = o.progress.clone();
        let ticker = tokio::spawn(async move {
            let every = std::time::Duration::from_secs(if tty { 1 } else { 10 });
            loop {
                tokio::time::sleep(every).await;
                if tty {
                    eprint!("\r{}\x1b[K", p.bars());
                } else {
                    eprintln!("{}", p.line());
                }
            }
        });
        let sem = Arc::new(tokio::sync::Semaphore::new(parallel));
        let mut tasks = Vec::new();
        for (user, pw) in users {
            let (o, sem) = (o.clone(), sem.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = sem.acquire().await;
                let r = migrate_user(&o, &user, pw.as_deref()).await;
                match &r {
                    Ok(r) => {
                        for p in &r.problems {
                            println!("{user}: left out: {p}");
                        }
                        let quota = if r.quota.is_empty() { String::new() } else { format!(", quota {}", r.quota) };
                        let scripts = if o.dest_sieve.is_some() {
                            format!(", {} sieve scripts", r.scripts)
                        } else {
                            String::new()
                        };
                        println!(
                            "{user}: {} folders, {} copied ({} bytes), {} reflagged, {} removed, {} skipped, {} ACL entries, {} subscriptions{quota}{scripts}",
                            r.folders, r.copied, r.bytes, r.reflagged, r.removed, r.skipped, r.acls, r.subscribed,
                        );
                    }
                    Err(e) => println!("{user}: failed: {e}"),
                }
                r
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap_or_else(|e| Err(e.to_string())));
        }
        ticker.abort();
        if tty {
            eprintln!("\r{}\x1b[K", o.progress.bars());
        }
        out
    });
    let failed = results.iter().filter(|r| r.is_err()).count();
    let copied: usize = results.iter().filter_map(|r| r.as_ref().ok()).map(|r| r.copied).sum();
    println!(
        "summary: {} users, {} migrated, {failed} failed, {copied} messages {}",
        results.len(),
        results.len() - failed,
        if o.dry_run { "to copy (dry run)" } else { "copied" }
    );
    if failed > 0 {
        exit::TEMPFAIL
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_responses() {
        let r = vec![
            b"* QUOTAROOT INBOX user.u7\r\n".to_vec(),
            b"* QUOTA user.u7 (STORAGE 12 1000 MESSAGE 3 50)\r\n".to_vec(),
        ];
        assert_eq!(quota_limits(&r), vec![("STORAGE".into(), 1000), ("MESSAGE".into(), 50)]);
        assert!(quota_limits(&[b"* QUOTA \"\" ()\r\n".to_vec()]).is_empty());
        assert!(quota_limits(&[]).is_empty());
    }

    #[test]
    fn uid_sets_and_batches() {
        assert_eq!(uid_set("5:7,9"), vec![5, 6, 7, 9]);
        assert_eq!(uid_set("12"), vec![12]);
        assert_eq!(uid_set("7:5"), Vec::<u32>::new());
        assert_eq!(uid_set("x"), Vec::<u32>::new());
        assert_eq!(set_of(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(set_of(&[4]), "4");
        let todo: Vec<(u32, u64)> = (1..=450).map(|u| (u, 100)).collect();
        let b = batches(&todo);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), vec![200, 200, 50]);
        // A message bigger than a batch goes alone; the sizes bound a batch.
        let b = batches(&[
            (1, 10),
            (2, COPY_BATCH_BYTES + 1),
            (3, COPY_BATCH_BYTES / 2),
            (4, COPY_BATCH_BYTES / 2),
            (5, 1),
        ]);
        assert_eq!(b, vec![vec![1], vec![2], vec![3, 4], vec![5]]);
    }

    #[test]
    fn special_use_attributes() {
        assert_eq!(special_uses("\\HasNoChildren \\sent"), "\\Sent");
        assert_eq!(special_uses("\\Trash \\Junk \\Marked \\Trash"), "\\Junk \\Trash");
        assert_eq!(special_uses("\\Noselect \\HasChildren"), "");
    }

    #[test]
    fn list_responses() {
        assert_eq!(
            parse_list(b"* LIST (\\HasNoChildren) \".\" INBOX.Sent\r\n", "LIST"),
            Some(("\\HasNoChildren".into(), '.', "INBOX.Sent".into()))
        );
        assert_eq!(
            parse_list(b"* LIST () \"/\" \"Old \\\"mail\\\"\"\r\n", "LIST"),
            Some(("".into(), '/', "Old \"mail\"".into()))
        );
        assert_eq!(parse_list(b"* LIST (\\Noselect) NIL \"\"\r\n", "LIST").map(|l| l.1), Some('.'));
        assert_eq!(
            parse_list(b"* LIST () \".\" {5}\r\nA\"b c\r\n", "LIST").map(|l| l.2),
            Some("A\"b c".into())
        );
        assert_eq!(parse_list(b"* LSUB () \".\" x\r\n", "LIST"), None);
        assert_eq!(parse_list(b"* LSUB () \".\" x\r\n", "LSUB").map(|l| l.2), Some("x".into()));
        let acl = parse_acl(&[b"* ACL \"INBOX.Old mail\" u7 lrswipkxtecdan \"group:staff\" lrs\r\n".to_vec()]);
        assert_eq!(acl.get("u7").map(String::as_str), Some("lrswipkxtecdan"));
        assert_eq!(acl.get("group:staff").map(String::as_str), Some("lrs"));
        // The real Cyrus front end's answer, and a back end's.
        let e = "/shared/vendor/cmu/cyrus-imapd/server";
        let cyrus = b"* METADATA user.u7 (\"/shared/vendor/cmu/cyrus-imapd/server\" \"127.0.0.5\")\r\n";
        assert_eq!(metadata_value(cyrus, e).as_deref(), Some("127.0.0.5"));
        assert_eq!(
            metadata_value(b"* METADATA INBOX (\"/shared/vendor/cmu/cyrus-imapd/server\" NIL)\r\n", e),
            None
        );
        assert_eq!(metadata_value(b"* LIST () \".\" x\r\n", e), None);
    }

    #[test]
    fn namespaces_map_folders() {
        let ns = |r: &str| Namespaces::parse(&[r.as_bytes().to_vec()]).unwrap();
        let cyrus = ns("* NAMESPACE ((\"INBOX.\" \".\")) ((\"user.\" \".\")) ((\"\" \".\"))\r\n");
        assert_eq!(cyrus.prefix, "INBOX.");
        assert_eq!(cyrus.others, vec!["user.".to_string()]);
        let dovecot = ns("* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n");
        assert_eq!((dovecot.prefix.as_str(), dovecot.delim, dovecot.others.len()), ("", '/', 0));
        let alt = ns("* NAMESPACE ((\"\" \".\" \"X-PARAM\" (\"a\"))) ((\"Other Users.\" \".\")) ((\"Shared Folders.\" \".\"))\r\n");
        assert_eq!(alt.others, vec!["Other Users.".to_string(), "Shared Folders.".to_string()]);
        assert!(Namespaces::parse(&[b"* OK x\r\n".to_vec()]).is_none());
        // Dovecot's Sent/2019 becomes Cyrus's INBOX.Sent.2019 and back.
        let rel = dovecot.relative("Sent/2019").unwrap();
        assert_eq!(cyrus.absolute(&rel), "INBOX.Sent.2019");
        assert_eq!(dovecot.absolute(&cyrus.relative("INBOX.Sent.2019").unwrap()), "Sent/2019");
        assert_eq!(cyrus.absolute(&dovecot.relative("inbox").unwrap()), "INBOX");
        // Other users' and shared folders are not moved.
        assert_eq!(cyrus.relative("user.bob.Sent"), None);
        assert_eq!(alt.relative("Other Users.bob"), None);
        assert_eq!(alt.relative("Shared Folders.news"), None);
        assert_eq!(cyrus.relative("shared"), None);
        assert_eq!(Namespaces::flat('.').relative("Old mail"), Some("Old mail".into()));
    }

    #[test]
    fn fetch_meta_items() {
        let r = b"* 3 FETCH (UID 17 FLAGS (\\Seen \\Recent $Label1) RFC822.SIZE 1234 INTERNALDATE \"01-Dec-2026 10:00:00 +0000\")\r\n";
        assert_eq!(date_key(" 6-Sep-2018 01:05:31 +0000"), "06-Sep-2018 01:05:31 +0000");
        assert_eq!(date_key("16-Sep-2018 01:05:31 +0000"), "16-Sep-2018 01:05:31 +0000");
        assert_eq!(
            fetch_meta(r),
            Some((
                17,
                vec!["\\Seen".into(), "$Label1".into()],
                1234,
                "01-Dec-2026 10:00:00 +0000".into()
            ))
        );
        assert_eq!(
            code_number(&[b"* OK [UIDVALIDITY 1700000000] Ok\r\n".to_vec()], "UIDVALIDITY"),
            Some(1700000000)
        );
    }

    #[test]
    fn progress_line() {
        let p = Progress::new();
        p.todo("alice", 3);
        p.todo("bob", 1);
        p.done("alice", 1_500_000);
        p.done("bob", 500_000);
        let l = p.line();
        assert!(l.starts_with("progress: 2/4 messages, 2.0 MB, "), "{l}");
        assert!(l.ends_with("; alice 1/3"), "{l}");
        let b = p.bars();
        assert!(b.starts_with("progress: [##########..........] 2/4 messages"), "{b}");
        assert!(b.ends_with("; alice [##......] 1/3"), "{b}");
    }

    #[test]
    fn state_survives_a_restart() {
        let t = tempfile_dir();
        let p = t.join("alice");
        {
            let mut st = State::load(&p, true).unwrap();
            st.record("V INBOX.My Folder 5 9".into()).unwrap();
            st.record("P INBOX.My Folder 1 1".into()).unwrap();
            st.record("M INBOX.My Folder 1 1".into()).unwrap();
            st.record("P INBOX.My Folder 2 2".into()).unwrap();
        }
        let st = State::load(&p, true).unwrap();
        assert_eq!(st.validity.get("INBOX.My Folder"), Some(&(5, 9)));
        assert_eq!(st.map["INBOX.My Folder"].get(&1), Some(&1));
        assert_eq!(st.pending["INBOX.My Folder"].get(&2), Some(&2));
        // A line cut short by a kill is dropped, and cut off the file.
        std::fs::write(&p, "V INBOX 5 9\nM INBOX 1 1\nM INBOX 2 2").unwrap();
        let mut st = State::load(&p, true).unwrap();
        assert_eq!(st.map["INBOX"].len(), 1);
        st.record("M INBOX 3 3".into()).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "V INBOX 5 9\nM INBOX 1 1\nM INBOX 3 3\n");
        std::fs::write(&p, "X what\n").unwrap();
        assert!(State::load(&p, false).err().unwrap().contains("line 1: bad state line"));
        let _ = std::fs::remove_dir_all(t);
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("mumail-migrate-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
