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
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const USAGE: &str = "usage: mumail-migrate {-s source_host[:port] | -C cyrus_imapd.conf | -M maildir | -m mbox_dir [-i inbox]} -d dest_host[:port] [-a admin:password] [-A admin:password] [-u userfile] [-S statedir] [-P parallel] [-n] [user...]";
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
}

/// A local source's paths, `%u` standing for the user.
#[derive(Clone, Debug)]
enum Local {
    Maildir(String),
    /// The mbox directory and the inbox file (`-i`).
    Mbox(String, Option<String>),
}

/// The UIDs given to a local source's messages, per folder and key: the
/// file `<state>/<user>.ids`, lines `<uid> TAB <key> TAB <folder>`, each
/// synced before the UID is used.
#[derive(Default)]
struct Ids {
    map: BTreeMap<String, BTreeMap<String, u32>>,
    file: Option<std::fs::File>,
}

impl Ids {
    fn load(path: &Path, write: bool) -> Result<Ids, String> {
        let mut ids = Ids::default();
        let mut whole = 0u64;
        if let Ok(text) = std::fs::read_to_string(path) {
            let text = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
            whole = text.len() as u64;
            for (i, l) in text.lines().enumerate() {
                let mut w = l.splitn(3, '\t');
                let (Some(uid), Some(key), Some(folder)) = (w.next(), w.next(), w.next()) else {
                    return Err(format!("{}, line {}: bad line", path.display(), i + 1));
                };
                let uid: u32 = uid.parse().map_err(|_| format!("{}, line {}: bad UID", path.display(), i + 1))?;
                ids.map.entry(folder.to_string()).or_default().insert(key.to_string(), uid);
            }
        }
        if write {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|f| {
                    if f.metadata()?.len() > whole {
                        f.set_len(whole)?;
                    }
                    Ok(f)
                })
                .map_err(|e| format!("{}: {e}", path.display()))?;
            ids.file = Some(f);
        }
        Ok(ids)
    }

    /// UIDs for a folder's messages: the recorded ones, new ones (above
    /// every UID the folder had) for keys not seen before.
    fn assign<'a>(
        &mut self,
        folder: &'a crate::tools::local_source::Folder,
    ) -> Result<BTreeMap<u32, &'a crate::tools::local_source::Message>, String> {
        let known = self.map.entry(folder.name.clone()).or_default();
        let mut next = known.values().max().map_or(1, |u| u + 1);
        let mut new = String::new();
        let mut out = BTreeMap::new();
        for m in &folder.messages {
            let uid = match known.get(&m.key) {
                Some(u) => *u,
                None => {
                    known.insert(m.key.clone(), next);
                    new += &format!("{next}\t{}\t{}\n", m.key, folder.name);
                    next += 1;
                    next - 1
                }
            };
            out.insert(uid, m);
        }
        if let (Some(f), false) = (self.file.as_mut(), new.is_empty()) {
            f.write_all(new.as_bytes())
                .and_then(|_| f.sync_data())
                .map_err(|e| format!("ids: {e}"))?;
        }
        Ok(out)
    }
}

/// A Cyrus spool found from its imapd.conf.
struct Spool {
    configdir: PathBuf,
    boxes: Vec<crate::tools::cyrus_spool::Mailbox>,
}

impl Spool {
    fn open(conf: &str) -> Result<Spool, String> {
        let c = crate::config::cyrus::ImapdConf::load(conf, None).map_err(|e| e.to_string())?;
        let configdir = PathBuf::from(c.get("configdirectory").unwrap_or(""));
        let roots: Vec<PathBuf> = c.partitions().iter().map(|(_, p)| PathBuf::from(p)).collect();
        if roots.is_empty() {
            return Err(format!("{conf}: no partition-* option is set"));
        }
        Ok(Spool {
            configdir,
            boxes: crate::tools::cyrus_spool::mailboxes(&roots)?,
        })
    }
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
}

/// A small IMAP client over one connection.
struct Imap {
    r: BufReader<TcpStream>,
    n: u32,
    server: String,
    /// CAPABILITY after login, upper-cased.
    caps: BTreeSet<String>,
}

impl Imap {
    async fn connect(server: &str) -> Result<Imap, String> {
        let mut r = BufReader::new(crate::daemon::front::connect_service(server, "imap", 143).await?);
        let greet = crate::daemon::front::backend_line(&mut r).await?;
        if !greet.starts_with("* OK") {
            return Err(format!("{server}: greeting {greet}"));
        }
        Ok(Imap {
            r,
            n: 0,
            server: server.to_string(),
            caps: BTreeSet::new(),
        })
    }

    /// AUTHENTICATE PLAIN: `authz` is empty for the user's own login.
    async fn login(&mut self, authz: &str, authc: &str, pw: &str) -> Result<(), String> {
        let ir = crate::util::base64_encode(format!("{authz}\0{authc}\0{pw}").as_bytes());
        self.n += 1;
        let tag = format!("M{}", self.n);
        crate::daemon::front::authenticate_plain(&mut self.r, &tag, &ir, false)
            .await
            .map_err(|e| format!("{}: login as {authc} for {authz}: {e}", self.server))?;
        let (resps, _) = self.cmd(b"CAPABILITY").await?;
        self.caps = resps
            .iter()
            .filter_map(|r| r.strip_prefix(b"* CAPABILITY "))
            .flat_map(|r| {
                String::from_utf8_lossy(r)
                    .split_whitespace()
                    .map(str::to_ascii_uppercase)
                    .collect::<Vec<_>>()
            })
            .collect();
        Ok(())
    }

    async fn send(&mut self, b: &[u8]) -> Result<(), String> {
        self.r.get_mut().write_all(b).await.map_err(|e| format!("{}: {e}", self.server))
    }

    /// Sends a command (bytes after the tag); its untagged responses and
    /// the tagged status, Err unless OK.
    async fn cmd(&mut self, c: &[u8]) -> Result<(Vec<Vec<u8>>, String), String> {
        self.n += 1;
        let tag = format!("M{}", self.n);
        let mut line = format!("{tag} ").into_bytes();
        line.extend_from_slice(c);
        line.extend_from_slice(b"\r\n");
        self.send(&line).await?;
        let (resps, status) = tokio::time::timeout(TIMEOUT, collect_tagged(&mut self.r, &tag, MAX_MESSAGE))
            .await
            .map_err(|_| format!("{}: timed out", self.server))??;
        if !status.starts_with("OK") {
            return Err(format!("{}: {}: {status}", self.server, String::from_utf8_lossy(c)));
        }
        Ok((resps, status))
    }

    /// One XAPPLY (XFER's transfer command; an admin session); the
    /// tagged OK's text.
    async fn xapply(&mut self, x: &crate::proto::imap::command::xapply::XApply) -> Result<String, String> {
        self.n += 1;
        let tag = format!("M{}", self.n);
        let wire = crate::proto::imap::command::xapply::render(&tag, x);
        self.send(&wire).await?;
        let (_, status) = tokio::time::timeout(TIMEOUT, collect_tagged(&mut self.r, &tag, 1 << 20))
            .await
            .map_err(|_| format!("{}: timed out", self.server))??;
        if !status.starts_with("OK") {
            return Err(format!("{}: XAPPLY: {status}", self.server));
        }
        Ok(status)
    }

    /// A command whose last argument is a mailbox name.
    async fn cmd_mbox(&mut self, verb: &str, name: &str, rest: &str) -> Result<(Vec<Vec<u8>>, String), String> {
        let mut c = format!("{verb} ").into_bytes();
        crate::proto::imap::render::client_string(&mut c, name.as_bytes());
        c.extend_from_slice(rest.as_bytes());
        self.cmd(&c).await
    }

    /// The selected mailbox's messages: UID → (flags, size, internal date).
    async fn messages(&mut self) -> Result<BTreeMap<u32, (Vec<String>, u64, String)>, String> {
        let (meta, _) = self.cmd(b"UID FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE)").await?;
        Ok(meta
            .iter()
            .filter_map(|r| fetch_meta(r))
            .map(|(u, f, s, d)| (u, (f, s, d)))
            .collect())
    }

    /// Appends messages (flags, internal date, bytes) in one MULTIAPPEND
    /// where the server has it (else one APPEND each), with LITERAL+
    /// literals where it has that (else waiting for each continuation);
    /// the new UIDs from APPENDUID, in order.
    async fn append(&mut self, mbox: &str, msgs: &[&Fetched]) -> Result<Vec<u32>, String> {
        if msgs.len() > 1 && !self.caps.contains("MULTIAPPEND") {
            let mut uids = Vec::new();
            for m in msgs {
                uids.extend(Box::pin(self.append(mbox, std::slice::from_ref(m))).await?);
            }
            return Ok(uids);
        }
        let plus = self.caps.contains("LITERAL+");
        self.n += 1;
        let tag = format!("M{}", self.n);
        let mut c = format!("{tag} APPEND ").into_bytes();
        crate::proto::imap::render::client_string(&mut c, mbox.as_bytes());
        for m in msgs {
            let flags = m.flags.join(" ");
            let (len, p) = (m.body.len(), if plus { "+" } else { "" });
            c.extend_from_slice(format!(" ({flags}) \"{}\" {{{len}{p}}}\r\n", m.internaldate).as_bytes());
            if !plus {
                self.send(&std::mem::take(&mut c)).await?;
                let l = crate::daemon::front::backend_line(&mut self.r).await?;
                if !l.starts_with('+') {
                    return Err(format!("{}: APPEND to {mbox}: {l}", self.server));
                }
            }
            c.extend_from_slice(&m.body);
            if c.len() > 1 << 20 {
                self.send(&std::mem::take(&mut c)).await?;
            }
        }
        c.extend_from_slice(b"\r\n");
        self.send(&c).await?;
        let (_, status) = tokio::time::timeout(TIMEOUT, collect_tagged(&mut self.r, &tag, 1 << 20))
            .await
            .map_err(|_| format!("{}: timed out", self.server))??;
        if !status.starts_with("OK") {
            return Err(format!("{}: APPEND to {mbox}: {status}", self.server));
        }
        let set = status.split("[APPENDUID ").nth(1).and_then(|r| r.split([' ', ']']).nth(1));
        let uids = set.map(uid_set).unwrap_or_default();
        if uids.len() != msgs.len() {
            return Err(format!(
                "{}: APPEND to {mbox} gave no APPENDUID for each message: {status}",
                self.server
            ));
        }
        Ok(uids)
    }
}

/// An IMAP uid-set (`5:9,12`), in order; empty if malformed.
fn uid_set(s: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let (a, b) = part.split_once(':').unwrap_or((part, part));
        let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) else {
            return Vec::new();
        };
        if a > b || b - a > 1_000_000 {
            return Vec::new();
        }
        out.extend(a..=b);
    }
    out
}

/// A compact uid-set for ascending UIDs.
fn set_of(uids: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < uids.len() {
        let mut j = i;
        while j + 1 < uids.len() && uids[j + 1] == uids[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            uids[i].to_string()
        } else {
            format!("{}:{}", uids[i], uids[j])
        });
        i = j + 1;
    }
    out.join(",")
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

/// The name under which a spool's shared mailboxes (outside `user.*`)
/// are migrated and reported.
const SHARED: &str = "(shared)";

/// Most records, and bytes of message files, per XAPPLY RECORDS.
const BATCH_RECORDS: usize = 500;
const BATCH_BYTES: usize = 16 << 20;

/// One user from a Cyrus spool into our back end, through the XAPPLY
/// commands XFER uses (as an admin of the destination): each mailbox
/// arrives with its uniqueid, UIDVALIDITY, ACL, UIDs, flags, keywords,
/// internal dates and modseqs, then is activated (and so announced to
/// the MUPDATE master); then the quota limits and subscriptions.
/// Expunged records stay behind.  A mailbox the destination already has
/// is skipped whole; one left half-copied by a killed run is copied again
/// from the start (the destination replaces an unactivated mailbox).
async fn migrate_spool_user(o: &Opts, sp: &Spool, user: &str) -> Result<Report, String> {
    use crate::proto::imap::command::xapply::{XApply, XMailbox};
    use crate::tools::cyrus_spool as cs;
    let shared = user == SHARED;
    let inbox = if shared { String::new() } else { cs::inbox_of(user) };
    let prefix = format!("{inbox}.");
    let boxes: Vec<&cs::Mailbox> = sp
        .boxes
        .iter()
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
    let mut imported = 0;
    for (m, ix, live) in &plan {
        let h = &m.header;
        let mb = XMailbox {
            name: h.name.clone(),
            partition: String::new(),
            uniqueid: h.uniqueid.clone(),
            uidvalidity: ix.uidvalidity,
            created: ix.uidvalidity as i64,
            acl: h.acl.clone(),
            specialuse: String::new(),
            annotations: String::new(),
        };
        match dst.xapply(&XApply::Mailbox(mb)).await {
            Ok(_) => {}
            Err(e) if e.contains("already exists") => {
                // Copied by an earlier pass: bring it up to date.
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
        imported += 1;
    }
    if imported > 0 {
        // Quota limits of the user's roots, and subscriptions.
        let mut data = String::new();
        let roots: BTreeSet<&str> = plan
            .iter()
            .map(|(m, _, _)| m.header.quotaroot.as_str())
            .filter(|r| !r.is_empty())
            .collect();
        for root in roots {
            if let Some((storage, messages)) = cs::quota(&sp.configdir, root)? {
                data.push_str(&format!("quota\t{root}\t{storage}\t{messages}\n"));
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
                rep.subscribed += 1;
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
            dst.xapply(&XApply::User(top, data)).await?;
        }
    }
    let _ = dst.cmd(b"LOGOUT").await;
    Ok(rep)
}

/// A later pass over a mailbox an earlier pass copied: the destination
/// expunges what the source expunged and takes the source's flags (MERGE,
/// by UID ranges), then gets the new messages under their source UIDs
/// (ADD).  Messages the destination lacks below its UIDNEXT (expunged
/// there) cannot come back and are counted as skipped.
async fn merge_spool_mailbox(
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
fn spool_record(
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
async fn send_spool_records(
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

/// `* LIST (attrs) "d" name` (or LSUB) → (attributes, delimiter, name).
fn parse_list(resp: &[u8], verb: &str) -> Option<(String, char, String)> {
    let text = String::from_utf8_lossy(resp);
    let rest = text.strip_prefix(&format!("* {verb} ("))?;
    let (attrs, rest) = rest.split_once(") ")?;
    let (delim, rest) = if let Some(r) = rest.strip_prefix("NIL ") {
        ('.', r)
    } else {
        let r = rest.strip_prefix('"')?;
        let mut chars = r.chars();
        let mut d = chars.next()?;
        if d == '\\' {
            d = chars.next()?;
        }
        (d, chars.as_str().strip_prefix("\" ")?)
    };
    let rest = rest.trim_end_matches(['\r', '\n']);
    let name = if let Some(q) = rest.strip_prefix('"') {
        let mut out = String::new();
        let mut esc = false;
        for ch in q.chars() {
            match (esc, ch) {
                (false, '\\') => esc = true,
                (false, '"') => break,
                _ => {
                    out.push(ch);
                    esc = false
                }
            }
        }
        out
    } else if rest.starts_with('{') {
        // A literal: the name follows the marker's line.
        rest.split_once("\r\n").or_else(|| rest.split_once('\n'))?.1.to_string()
    } else {
        rest.to_string()
    };
    Some((attrs.to_string(), delim, name))
}

/// The words of a response line: atoms and quoted strings.
fn words(t: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = t.trim_end_matches(['\r', '\n']).chars().peekable();
    while let Some(&c) = it.peek() {
        if c == ' ' {
            it.next();
        } else if c == '"' {
            it.next();
            let mut w = String::new();
            while let Some(ch) = it.next() {
                match ch {
                    '\\' => w.extend(it.next()),
                    '"' => break,
                    _ => w.push(ch),
                }
            }
            out.push(w);
        } else {
            let mut w = String::new();
            while let Some(&ch) = it.peek().filter(|ch| **ch != ' ') {
                w.push(ch);
                it.next();
            }
            out.push(w);
        }
    }
    out
}

/// `* ACL mailbox id rights ...` → the (identifier, rights) pairs.
fn parse_acl(resps: &[Vec<u8>]) -> BTreeMap<String, String> {
    resps
        .iter()
        .filter_map(|r| String::from_utf8_lossy(r).strip_prefix("* ACL ").map(words))
        .flat_map(|w| {
            w[1.min(w.len())..]
                .chunks(2)
                .filter(|p| p.len() == 2)
                .map(|p| (p[0].clone(), p[1].clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A server's namespaces (RFC 2342) as seen by the logged-in user: the
/// personal prefix and delimiter, and the other users' and shared
/// prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Namespaces {
    prefix: String,
    delim: char,
    others: Vec<String>,
}

impl Namespaces {
    /// From a `* NAMESPACE` response; None if there is none or it has no
    /// personal namespace.
    fn parse(resps: &[Vec<u8>]) -> Option<Namespaces> {
        let r = resps.iter().find_map(|r| r.strip_prefix(b"* NAMESPACE "))?;
        let text = String::from_utf8_lossy(r);
        // Each group is NIL or ((prefix delim ...) ...): collect the
        // (prefix, delim) pairs at depth 2, per group at depth 0.
        let mut groups: Vec<Vec<(String, Option<char>)>> = Vec::new();
        let (mut depth, mut cur): (usize, Vec<String>) = (0, Vec::new());
        let mut it = text.trim_end().chars().peekable();
        while let Some(c) = it.next() {
            match c {
                '(' => {
                    if depth == 0 {
                        groups.push(Vec::new());
                    }
                    depth += 1;
                }
                ')' => {
                    if depth == 2 && cur.len() >= 2 {
                        let d = cur[1].chars().next();
                        groups.last_mut()?.push((cur[0].clone(), d));
                    }
                    if depth == 2 {
                        cur.clear();
                    }
                    depth = depth.checked_sub(1)?;
                }
                '"' if depth == 2 => {
                    let mut w = String::new();
                    while let Some(ch) = it.next() {
                        match ch {
                            '\\' => w.extend(it.next()),
                            '"' => break,
                            _ => w.push(ch),
                        }
                    }
                    cur.push(w);
                }
                'N' | 'n' if depth == 0 => {
                    // NIL: a group without namespaces.
                    it.next();
                    it.next();
                    groups.push(Vec::new());
                }
                'N' | 'n' if depth == 2 && cur.len() == 1 => {
                    it.next();
                    it.next();
                    cur.push(String::new());
                }
                _ => {}
            }
        }
        let (prefix, delim) = groups.first()?.first()?.clone();
        let others = groups
            .iter()
            .skip(1)
            .flatten()
            .map(|(p, _)| p.clone())
            .filter(|p| !p.is_empty())
            .collect();
        Some(Namespaces {
            prefix,
            delim: delim.unwrap_or('.'),
            others,
        })
    }

    /// A server without NAMESPACE: everything is personal, no prefix.
    fn flat(delim: char) -> Namespaces {
        Namespaces {
            prefix: String::new(),
            delim,
            others: Vec::new(),
        }
    }

    /// The name relative to the personal namespace (components joined by
    /// `/`), `INBOX` for the inbox; None outside it (other users' and
    /// shared folders are not the user's to move).
    fn relative(&self, name: &str) -> Option<String> {
        if name.eq_ignore_ascii_case("INBOX") {
            return Some("INBOX".to_string());
        }
        if self.others.iter().any(|p| name.starts_with(p.as_str())) {
            return None;
        }
        let p = self.prefix.len();
        let rest = if name.len() >= p && name.is_char_boundary(p) && name[..p].eq_ignore_ascii_case(&self.prefix) {
            &name[p..]
        } else {
            return None;
        };
        Some(rest.split(self.delim).collect::<Vec<_>>().join("/"))
    }

    /// The full name of a relative one here.
    fn absolute(&self, rel: &str) -> String {
        if rel == "INBOX" {
            return rel.to_string();
        }
        format!("{}{}", self.prefix, rel.replace('/', &self.delim.to_string()))
    }
}

/// The NAMESPACE of a session, or a flat one with the delimiter LIST
/// gives.
async fn namespaces(imap: &mut Imap) -> Result<Namespaces, String> {
    if imap.caps.contains("NAMESPACE") {
        let (resps, _) = imap.cmd(b"NAMESPACE").await?;
        if let Some(n) = Namespaces::parse(&resps) {
            return Ok(n);
        }
    }
    let (l, _) = imap.cmd(b"LIST \"\" \"\"").await?;
    Ok(Namespaces::flat(
        l.iter().find_map(|r| parse_list(r, "LIST")).map(|(_, d, _)| d).unwrap_or('.'),
    ))
}

/// The numbers after `[KEY ` in a list of responses.
fn code_number(resps: &[Vec<u8>], key: &str) -> Option<u32> {
    resps.iter().find_map(|r| {
        let t = String::from_utf8_lossy(r);
        let i = t.find(&format!("[{key} "))? + key.len() + 2;
        t[i..].split([']', ' ']).next()?.parse().ok()
    })
}

/// `* n FETCH (UID u FLAGS (...) ...)` without a body: (uid, flags, size, date).
fn fetch_meta(resp: &[u8]) -> Option<(u32, Vec<String>, u64, String)> {
    let t = String::from_utf8_lossy(resp);
    if !t.starts_with("* ") || !t.contains(" FETCH (") {
        return None;
    }
    let num = |key: &str| -> Option<u64> {
        let i = t.find(key)? + key.len();
        t[i..].chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().ok()
    };
    let uid = num("UID ")? as u32;
    let flags = {
        let i = t.find("FLAGS (")? + 7;
        let j = i + t[i..].find(')')?;
        t[i..j]
            .split(' ')
            .filter(|f| !f.is_empty() && !f.eq_ignore_ascii_case("\\Recent"))
            .map(str::to_string)
            .collect()
    };
    let size = num("RFC822.SIZE ").unwrap_or(0);
    let date = t
        .find("INTERNALDATE \"")
        .and_then(|i| t[i + 14..].split('"').next().map(date_key))
        .unwrap_or_default();
    Some((uid, flags, size, date))
}

/// An INTERNALDATE's text in one form: servers differ in the day's
/// padding (` 6-Sep-2018` at Cyrus, `06-Sep-2018` at Dovecot).
fn date_key(d: &str) -> String {
    let d = d.trim_start();
    match d.find('-') {
        Some(1) => format!("0{d}"),
        _ => d.to_string(),
    }
}

/// One user's record of what was copied.
#[derive(Default)]
struct State {
    /// folder → (source uidvalidity, destination uidvalidity).
    validity: BTreeMap<String, (u32, u32)>,
    /// folder → source uid → destination uid.
    map: BTreeMap<String, BTreeMap<u32, u32>>,
    /// folder → source uid → destination uidnext at the APPEND.
    pending: BTreeMap<String, BTreeMap<u32, u32>>,
    file: Option<std::fs::File>,
}

impl State {
    /// Reads the record; `write` opens it for appending (not in a dry run).
    fn load(path: &Path, write: bool) -> Result<State, String> {
        let mut st = State::default();
        let mut whole = 0u64;
        if let Ok(text) = std::fs::read_to_string(path) {
            // A line cut short by a kill during its write is dropped (and
            // cut off the file below): what it announced is redone.
            let text = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
            whole = text.len() as u64;
            for (i, l) in text.lines().enumerate() {
                // Two numbers at the end; the folder may hold blanks.
                let w: Vec<&str> = l.rsplitn(3, ' ').collect();
                let bad = || format!("{}, line {}: bad state line", path.display(), i + 1);
                if w.len() != 3 {
                    return Err(bad());
                }
                let (kind, folder) = w[2].split_once(' ').ok_or_else(bad)?;
                let a: u32 = w[1].parse().map_err(|_| bad())?;
                let b: u32 = w[0].parse().map_err(|_| bad())?;
                match kind {
                    "V" => {
                        st.validity.insert(folder.to_string(), (a, b));
                        st.map.remove(folder);
                        st.pending.remove(folder);
                    }
                    "P" => {
                        st.pending.entry(folder.to_string()).or_default().insert(a, b);
                    }
                    "M" => {
                        st.map.entry(folder.to_string()).or_default().insert(a, b);
                        if let Some(p) = st.pending.get_mut(folder) {
                            p.remove(&a);
                        }
                    }
                    _ => return Err(bad()),
                }
            }
        }
        if !write {
            return Ok(st);
        }
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|f| {
                if f.metadata()?.len() > whole {
                    f.set_len(whole)?;
                }
                Ok(f)
            })
            .map_err(|e| format!("{}: {e}", path.display()))?;
        st.file = Some(f);
        Ok(st)
    }

    /// Appends a line and syncs it before anything else happens.
    fn record(&mut self, line: String) -> Result<(), String> {
        self.record_all(std::iter::once(line))
    }

    /// Appends lines with one sync.
    fn record_all(&mut self, lines: impl Iterator<Item = String>) -> Result<(), String> {
        let f = self.file.as_mut().ok_or("state file not open")?;
        let text: String = lines.map(|l| l + "\n").collect();
        f.write_all(text.as_bytes())
            .and_then(|_| f.sync_data())
            .map_err(|e| format!("state: {e}"))
    }
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
    let (list, _) = src.cmd(b"LIST \"\" \"*\"").await?;
    let mut folders: Vec<(String, String)> = list
        .iter()
        .filter_map(|r| parse_list(r, "LIST"))
        .filter(|(a, _, _)| !a.to_ascii_lowercase().contains("\\noselect"))
        .filter_map(|(_, _, n)| sns.relative(&n).map(|rel| (n, dns.absolute(&rel))))
        .collect();
    folders.sort();
    let mut rep = Report {
        user: user.to_string(),
        ..Report::default()
    };
    for (folder, target) in folders {
        rep.folders += 1;
        migrate_folder(o, &mut Source::Imap(&mut src), &mut dst, &mut st, &folder, &target, &mut rep).await?;
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
    Ok(rep)
}

/// The resource limits of the first `* QUOTA root (RES used limit ...)`.
fn quota_limits(resps: &[Vec<u8>]) -> Vec<(String, u64)> {
    let Some(r) = resps.iter().find_map(|r| r.strip_prefix(b"* QUOTA ")) else {
        return Vec::new();
    };
    let t = String::from_utf8_lossy(r);
    let Some(inner) = t.rfind('(').and_then(|i| t[i + 1..].split(')').next()) else {
        return Vec::new();
    };
    let w: Vec<&str> = inner.split_whitespace().collect();
    w.chunks(3)
        .filter_map(|c| match c {
            [name, _, limit] => Some((name.to_ascii_uppercase(), limit.parse().ok()?)),
            _ => None,
        })
        .collect()
}

/// Sets the user's quota limits at the destination as the admin (on
/// `user.<name>` in the admin's hierarchy); "" when they were set already.
async fn set_quota(dest: &str, admin: &str, pw: &str, user: &str, limits: &[(String, u64)]) -> Result<String, String> {
    let mut a = Imap::connect(dest).await?;
    a.login("", admin, pw).await?;
    let (l, _) = a.cmd(b"LIST \"\" \"\"").await?;
    let d = l.iter().find_map(|r| parse_list(r, "LIST")).map(|(_, d, _)| d).unwrap_or('.');
    let root = format!("user{d}{user}");
    let want: String = limits.iter().map(|(n, v)| format!("{n} {v}")).collect::<Vec<_>>().join(" ");
    let have = match a.cmd_mbox("GETQUOTA", &root, "").await {
        Ok((r, _)) => quota_limits(&r),
        Err(_) => Vec::new(),
    };
    let mut have = have;
    have.sort();
    let mut sorted = limits.to_vec();
    sorted.sort();
    let set = if have == sorted {
        String::new()
    } else {
        a.cmd_mbox("SETQUOTA", &root, &format!(" ({want})")).await?;
        want
    };
    let _ = a.cmd(b"LOGOUT").await;
    Ok(set)
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
    let Ok((opts, rest)) = getopt(args, "s:C:M:m:i:d:a:A:u:S:P:nh") else {
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
                        println!(
                            "{user}: {} folders, {} copied ({} bytes), {} reflagged, {} removed, {} skipped, {} ACL entries, {} subscriptions{quota}",
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
