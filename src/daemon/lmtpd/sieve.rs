//! lmtpd's Sieve: a recipient's active script, found where Cyrus keeps it
//! (`sievedir`, `mailbox_legacy_dirs` layout: `<sievedir>/u/user/defaultbc`
//! linking to `<name>.bc`, whose source `<name>.script` is what runs),
//! decides where the message goes.  What cannot be done (a missing
//! folder, no right to post, a failed redirect, a script that does not
//! compile) falls back to the INBOX with `$SieveFailed`, as Cyrus 3.6.

use crate::sieve::{self, Action};
use std::path::Path;

/// The largest script read (Cyrus's `sieve_maxscriptsize` is in KB and
/// defaults to 32; this is a bound on the read, not that limit).
const MAX_SCRIPT: u64 = 1 << 20;

pub const FAILED: &str = "$SieveFailed";

/// The active script of the user whose INBOX is `inbox`: None without one;
/// Err(reason) for one that cannot be read or does not compile.
pub fn active(sievedir: &Path, inbox: &str, fulldirhash: bool) -> Option<Result<sieve::Script, String>> {
    let scripts = crate::store::sievedir::Scripts::of(sievedir, inbox, fulldirhash);
    let name = scripts.active()?;
    let path = scripts.dir().join(format!("{name}.script"));
    let src = match scripts.get(&name, MAX_SCRIPT) {
        Ok(Some(src)) => src,
        Ok(None) => return Some(Err(format!("{}: No such file or directory", path.display()))),
        Err(e) => return Some(Err(format!("{}: {e}", path.display()))),
    };
    Some(sieve::parse(&src).map_err(|e| format!("{}: {e}", path.display())))
}

/// Where one recipient's copy goes.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// (internal mailbox, flag names).
    pub deliveries: Vec<(String, Vec<String>)>,
    /// `reject`/`ereject`: the LMTP refusal's text.
    pub reject: Option<String>,
    pub redirects: Vec<(String, sieve::RedirectDsn)>,
    pub vacation: Option<sieve::Vacation>,
    /// Log lines (runtime failures, discards).
    pub notes: Vec<String>,
    /// The script's own (`log`), as they are.
    pub logs: Vec<String>,
    /// `duplicate`'s ids, remembered once the copies are delivered.
    pub tracks: Vec<sieve::Track>,
    /// The header `editheader` made, for every copy of this recipient's.
    pub header: Option<Vec<u8>>,
    /// `notify` actions, sent once the copies are delivered.
    pub notifies: Vec<sieve::Notify>,
    /// What the script did, as a notification lists it (Cyrus's words).
    pub taken: Vec<String>,
}

/// What lmtpd knows of a recipient.
pub struct Recipient<'a> {
    pub userid: &'a str,
    pub inbox: &'a str,
    /// Where a keep goes: the +detail folder or the INBOX.
    pub keep: &'a str,
    /// A +detail folder that exists but refused the post.
    pub keep_refused: bool,
}

/// What Sieve needs of lmtpd's set-up, read once per message.
pub struct Filter {
    store: std::sync::Arc<crate::store::Store>,
    log: std::sync::Arc<crate::log::Logger>,
    sievedir: std::path::PathBuf,
    sendmail: String,
    servername: String,
    /// `sieve_vacation_min_response` and `_max_response`, seconds.
    vacation_period: (i64, i64),
    /// `sieve_duplicate_max_expiration`, seconds.
    duplicate_max: i64,
    /// The LMTP client's host name and address (environment's
    /// `remote-host`, `remote-ip`).
    pub remote: (String, Option<String>),
    /// `sievenotifier`: how `notify` notifies (None: it does not).
    notifier: Option<String>,
}

/// Notifications sent by this process (their Message-IDs' counter).
static NOTIFICATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How long `duplicate` remembers an id when the script does not say
/// (RFC 7352 3.1's recommendation).
const DUPLICATE_DEFAULT: i64 = 7 * 86_400;

impl Filter {
    pub fn new(ctx: &crate::daemon::cyrus::Ctx) -> Filter {
        let c = &ctx.conf;
        let min = c.get_secs("sieve_vacation_min_response", 's').unwrap_or(3 * 86_400);
        let max = c.get_secs("sieve_vacation_max_response", 's').unwrap_or(90 * 86_400);
        Filter {
            store: ctx.store.clone(),
            log: ctx.log.clone(),
            sievedir: c.path_option("sievedir").unwrap_or_else(|| "/usr/sieve".into()).into(),
            sendmail: c.get("sendmail").unwrap_or("/usr/lib/sendmail").to_string(),
            servername: ctx.servername.clone(),
            vacation_period: (min, max.max(min)),
            duplicate_max: c.get_secs("sieve_duplicate_max_expiration", 's').unwrap_or(90 * 86_400),
            remote: (String::new(), None),
            notifier: c.get("sievenotifier").filter(|n| !n.is_empty()).map(str::to_ascii_lowercase),
        }
    }

    /// RFC 5183's items, as Cyrus's lmtpd gives them.
    fn environment(&self, item: &str) -> Option<String> {
        Some(match item {
            "domain" => self.servername.split_once('.').map_or("", |(_, d)| d).to_string(),
            "host" => self.servername.clone(),
            "location" => "MDA".into(),
            "name" => "Cyrus LMTP".into(),
            "phase" => "during".into(),
            "version" => super::CYRUS_VERSION.into(),
            "remote-host" => self.remote.0.clone(),
            "remote-ip" => return self.remote.1.clone(),
            _ => return None,
        })
    }

    /// Remembers what `duplicate` saw (RFC 7352 3): a new id for its
    /// period; a known one again only with `:last`.
    pub fn track(&self, inbox: &str, tracks: &[sieve::Track], now: i64) {
        for t in tracks {
            if t.seen && !t.last {
                continue;
            }
            let secs = t
                .seconds
                .map_or(DUPLICATE_DEFAULT, |s| i64::try_from(s).unwrap_or(i64::MAX))
                .min(self.duplicate_max);
            let key = format!("duplicate:{}", t.handle);
            if let Err(e) = self.store.remember(inbox, &key, &t.id, now.saturating_add(secs)) {
                self.log.error(&format!("sieve duplicate: {inbox}: {e}"));
            }
        }
    }

    /// Where a recipient's copy goes: the user's active script's plan,
    /// else (no script, or one that does not compile: logged) `keep`.
    pub fn plan(&self, r: &Recipient<'_>, msg: &sieve::Message<'_>, id: &str) -> Plan {
        let plain = Plan {
            deliveries: vec![(r.keep.to_string(), Vec::new())],
            ..Default::default()
        };
        if r.inbox.is_empty() {
            return plain;
        }
        let store = &self.store;
        match active(&self.sievedir, r.inbox, store.cfg.fulldirhash) {
            None => plain,
            Some(Err(e)) => {
                self.log.error(&format!("sieve: {e} (delivered as without a script)"));
                plain
            }
            Some(Ok(script)) => {
                let ns = self.namespace(r.userid);
                let open = |name: &str| matches!(store.lookup(name), Ok(Some(e)) if super::acl_allows(&e.acl, &["anyone", r.userid], 'p'));
                let may_file = |ext: &str| ns.to_internal(ext).is_ok_and(|n| open(&n));
                // `include`: the user's own scripts, or the global ones
                // (`<sievedir>/global`).
                let personal = crate::store::sievedir::Scripts::of(&self.sievedir, r.inbox, store.cfg.fulldirhash);
                let global = crate::store::sievedir::Scripts::at(self.sievedir.join("global"));
                let include = |g: bool, name: &str| {
                    let s = if g { &global } else { &personal };
                    match s.get(name, MAX_SCRIPT) {
                        Ok(None) => None,
                        Ok(Some(src)) => Some(sieve::parse(&src).map_err(|e| e.to_string())),
                        Err(e) => Some(Err(e.to_string())),
                    }
                };
                let environment = |item: &str| self.environment(item);
                let now = crate::util::unix_now() as i64;
                let seen = |handle: &str, id: &str| matches!(store.remembered(r.inbox, &format!("duplicate:{handle}"), id), Ok(Some(until)) if until > now);
                let lookup = |q: sieve::Query<'_>| self.lookup(q, r, &ns);
                let msg = sieve::Message {
                    may_file: &may_file,
                    include: &include,
                    environment: &environment,
                    seen: &seen,
                    lookup: &lookup,
                    ..*msg
                };
                // `fileinto :create`: made as a CREATE would make it (the
                // levels above too, told to the MUPDATE master), with the
                // `:specialuse` asked for.
                let create = |name: &str, special_use: Option<&str>| match store.create_path(name, None) {
                    Ok(_) => {
                        self.log.info(&format!("sieve: created {name} for {}", r.userid));
                        if let Some(u) = special_use {
                            if let Err(e) = store.set_special_use(name, u) {
                                self.log.error(&format!("sieve: special use {u} of {name}: {e}"));
                            }
                        }
                        open(name)
                    }
                    Err(e) => {
                        self.log.error(&format!("sieve: fileinto :create {name} for {}: {e}", r.userid));
                        false
                    }
                };
                let p = plan(&script, &msg, r, &ns, open, create);
                for n in &p.notes {
                    self.log.info(&format!("{n} id {id}"));
                }
                for l in &p.logs {
                    self.log.info(l);
                }
                p
            }
        }
    }

    /// Sends a `notify` action's notification (RFC 5435) as Cyrus's
    /// notifyd does with `sievenotifier: mailto`: a message from the
    /// null sender naming what the script did; `log` logs it instead;
    /// without `sievenotifier` nothing is sent, as in Cyrus.
    pub fn notify(&self, n: &sieve::Notify, taken: &[String], r: &Recipient<'_>, id: &str) {
        let what = format!("sieve notify for {} to {} id {id}", r.userid, n.method);
        match self.notifier.as_deref() {
            None | Some("null") => self.log.info(&format!("{what}: not sent (no sievenotifier)")),
            Some("log") => self.log.info(&format!("{what}: {}", n.message)),
            Some("mailto") => {
                // The draft notify without :method: the server's method,
                // its options the addresses.
                let uri = if n.method.is_empty() {
                    format!("mailto:{}", n.options.join(","))
                } else {
                    n.method.clone()
                };
                let Some(m) = sieve::mailto(&uri) else {
                    self.log.info(&format!("{what}: not a method we notify by"));
                    return;
                };
                let msg = notification(n, &m, taken, &self.servername, &super::trace::date_now());
                let rcpts: Vec<&str> = m.to.iter().chain(&m.cc).chain(&m.bcc).map(String::as_str).collect();
                match sendmail_to(&self.sendmail, "", &rcpts, None, b"", &msg) {
                    Ok(()) => self.log.info(&format!("{what}: sent")),
                    Err(e) => self.log.error(&format!("{what}: {e}")),
                }
            }
            Some(other) => self.log.info(&format!("{what}: sievenotifier {other} is not a method we have")),
        }
    }

    /// The user's namespace, as their scripts name mailboxes.
    fn namespace(&self, userid: &str) -> crate::store::names::Namespace {
        let cfg = &self.store.cfg;
        crate::store::names::Namespace::new(cfg.unixhierarchysep, cfg.altnamespace, userid, cfg.virtdomains, &cfg.defaultdomain)
    }

    /// RFC 8580: files a message the script sent (a vacation answer)
    /// into the `:fcc` mailbox, made first with `:create`; a mailbox the
    /// user may not post to, or a failure, is logged.
    fn file_copy(&self, r: &Recipient<'_>, f: &sieve::Fcc, data: &[u8], now: i64) {
        let store = &self.store;
        let ns = self.namespace(r.userid);
        let res = (|| -> Result<u32, String> {
            let name = ns.to_internal(&f.mailbox).map_err(|e| format!("{e:?}"))?;
            let mut e = store.lookup(&name).map_err(|e| e.to_string())?;
            if e.is_none() && f.create {
                store.create_path(&name, None).map_err(|e| e.to_string())?;
                if let Some(u) = &f.special_use {
                    store.set_special_use(&name, u).map_err(|e| e.to_string())?;
                }
                e = store.lookup(&name).map_err(|e| e.to_string())?;
            }
            let e = e.ok_or("mailbox does not exist")?;
            if !super::acl_allows(&e.acl, &["anyone", r.userid], 'p') {
                return Err("permission denied".into());
            }
            let (envelope, bodystructure, body) = crate::proto::imap::render::cache_items(data);
            let cached = crate::store::Cached {
                envelope,
                bodystructure,
                body,
            };
            let staged = store.stage(&e.partition, data).map_err(|e| e.to_string())?;
            let (flags, keywords) = crate::daemon::imapd::parse_flags(&f.flags);
            let m = crate::store::NewMessage {
                staged: &staged,
                flags,
                keywords: keywords.join(" "),
                internaldate: now,
                tz: 0,
                cached: &cached,
            };
            match store.deliver(&name, &m, crate::store::QuotaCheck::NotAlreadyOver, None) {
                Ok(crate::store::Delivery::Delivered(uid)) => Ok(uid),
                Ok(crate::store::Delivery::Duplicate) => Ok(0),
                Err(e) => Err(e.to_string()),
            }
        })();
        match res {
            Ok(uid) => self
                .log
                .info(&format!("sieve fcc: filed into {} uid={uid} for {}", f.mailbox, r.userid)),
            Err(e) => self.log.error(&format!("sieve fcc: {} for {}: {e}", f.mailbox, r.userid)),
        }
    }

    /// The store's answers to a script about the user's mailboxes: by
    /// special use and MAILBOXID among their own, annotations of those
    /// they may read (`r`) and of the server.
    fn lookup(&self, q: sieve::Query<'_>, r: &Recipient<'_>, ns: &crate::store::names::Namespace) -> Option<String> {
        let store = &self.store;
        let below = format!("{}.", r.inbox);
        let mine = |n: &str| n == r.inbox || n.starts_with(&below);
        let has = |uses: &str, u: &str| uses.split_whitespace().any(|x| x.eq_ignore_ascii_case(u));
        match q {
            sieve::Query::SpecialUse(u) => {
                let mine = store.special_uses_below(r.inbox).ok()?;
                ns.to_external(&mine.iter().find(|(_, v)| has(v, u))?.0)
            }
            sieve::Query::HasSpecialUse(m, u) => {
                let name = ns.to_internal(m).ok()?;
                has(&store.special_use(&name).ok()??, u).then(String::new)
            }
            sieve::Query::MailboxId(id) => {
                let mut own = store.list_prefix(r.inbox).ok()?;
                own.retain(|e| mine(&e.name) && e.uniqueid == id);
                ns.to_external(&own.first()?.name)
            }
            sieve::Query::Metadata(m, entry) => {
                let name = match m {
                    Some(m) => {
                        let name = ns.to_internal(m).ok()?;
                        let e = store.lookup(&name).ok()??;
                        if !mine(&name) && !super::acl_allows(&e.acl, &["anyone", r.userid], 'r') {
                            return None;
                        }
                        name
                    }
                    None => String::new(),
                };
                let (userid, key) = match (entry.strip_prefix("/private/"), entry.strip_prefix("/shared/")) {
                    (Some(k), _) => (r.userid, k),
                    (_, Some(k)) => ("", k),
                    _ => return None,
                };
                if key == "specialuse" && !userid.is_empty() {
                    return store.special_use(&name).ok()?;
                }
                let v = store.annotation(&name, &format!("/{key}"), userid).ok()??;
                Some(String::from_utf8_lossy(&v).into_owned())
            }
        }
    }

    /// Redirects a copy (once per Message-ID `dedup` and address, as
    /// Cyrus's duplicate check: a retried transaction is not redirected
    /// again); false when it failed.
    pub fn redirect(
        &self,
        r: &Recipient<'_>,
        (to, dsn): &(String, sieve::RedirectDsn),
        from: &str,
        msg: &[u8],
        dedup: Option<&str>,
        now: i64,
    ) -> bool {
        if let Some(id) = dedup {
            match self
                .store
                .remember_once(r.inbox, &format!("redirect:{id}"), &to.to_ascii_lowercase(), i64::MIN, now)
            {
                Ok(true) => {}
                Ok(false) => {
                    self.log.info(&format!("dupelim: eliminated duplicate redirect of {id} to {to}"));
                    return true;
                }
                Err(e) => self.log.error(&format!("sieve redirect to {to}: duplicate check: {e}")),
            }
        }
        match sendmail_to(&self.sendmail, from, &[to], Some(dsn), b"X-Sieve-Action: redirect\r\n", msg) {
            Ok(()) => {
                self.log
                    .info(&format!("sieve redirected: {} to: {to}", dedup.unwrap_or("<nomsgid>")));
                true
            }
            Err(e) => {
                self.log.error(&format!("sieve redirect to {to} failed: {e}"));
                false
            }
        }
    }

    /// Answers `vacation` when due (logged either way).
    pub fn vacation(&self, v: &sieve::Vacation, r: &Recipient<'_>, msg: &sieve::Message<'_>, id: &str, now: i64) {
        let date = super::trace::date_now();
        let a = match vacation_answer(v, msg.fields, msg.env_from, r.userid, &self.servername, &date) {
            Ok(a) => a,
            Err(why) => {
                self.log.info(&format!(
                    "sieve vacation: no answer to {} for {} ({why}) id {id}",
                    msg.env_from, r.userid
                ));
                return;
            }
        };
        let (min, max) = self.vacation_period;
        let period = v
            .period
            .map_or(7 * 86_400, |p| i64::try_from(p).unwrap_or(i64::MAX))
            .clamp(min, max);
        let to = a.to.to_ascii_lowercase();
        match self
            .store
            .remember_once(r.inbox, &format!("vacation:{}", a.key), &to, now, now.saturating_add(period))
        {
            Ok(false) => self
                .log
                .info(&format!("sieve vacation: {} answered already for {} id {id}", a.to, r.userid)),
            Ok(true) => match sendmail(&self.sendmail, "", &a.to, b"", &a.msg) {
                Ok(()) => {
                    self.log
                        .info(&format!("sieve vacation: answered {} for {} id {id}", a.to, r.userid));
                    if let Some(f) = &v.fcc {
                        self.file_copy(r, f, &a.msg, now);
                    }
                }
                Err(e) => self.log.error(&format!("sieve vacation: answer to {} failed: {e}", a.to)),
            },
            Err(e) => self.log.error(&format!("sieve vacation: {} for {}: {e}", a.to, r.userid)),
        }
    }
}

/// Runs `script` for one recipient.  `open` answers whether the user may
/// file into an internal mailbox name (it exists and grants them `p`).
pub fn plan(
    script: &sieve::Script,
    msg: &sieve::Message<'_>,
    r: &Recipient<'_>,
    ns: &crate::store::names::Namespace,
    open: impl Fn(&str) -> bool,
    mut create: impl FnMut(&str, Option<&str>) -> bool,
) -> Plan {
    let mut p = Plan::default();
    let actions = match sieve::execute(script, msg, crate::util::unix_now() as i64) {
        Ok(o) => {
            p.tracks = o.tracks;
            p.header = o.header;
            // vnd.cyrus.log, in Cyrus's words.
            if !o.logs.is_empty() {
                // (The field's value as it is, but for the spaces before it.)
                let id = crate::mail::mime::field(msg.fields, "message-id")
                    .map(|v| String::from_utf8_lossy(v).trim_start_matches([' ', '\t']).to_string());
                for text in o.logs {
                    p.logs.push(format!(
                        "sieve log: userid={} messageid={} text={text}",
                        r.userid,
                        id.as_deref().unwrap_or("(null)")
                    ));
                }
            }
            o.actions
        }
        Err(e) => {
            p.notes.push(format!("sieve runtime error for {}: {e}", r.userid));
            p.deliveries.push((r.inbox.to_string(), vec![FAILED.to_string()]));
            return p;
        }
    };
    let mut failed: Option<Vec<String>> = None;
    let mut fail = |flags: &[String], why: String, p: &mut Plan| {
        p.notes.push(format!("sieve runtime error for {}: {why}", r.userid));
        let f = failed.get_or_insert_with(Vec::new);
        for x in flags {
            if !f.iter().any(|y| y.eq_ignore_ascii_case(x)) {
                f.push(x.clone());
            }
        }
    };
    // What a notification says was done (Cyrus's lines).
    p.taken = actions
        .iter()
        .filter_map(|a| match a {
            Action::Keep { .. } => Some("Kept".to_string()),
            Action::FileInto { mailbox, .. } => Some(format!("Filed into: {mailbox}")),
            Action::Redirect { addr, .. } => Some(format!("Redirected to {addr}")),
            Action::Discard => Some("Discarded".to_string()),
            Action::Vacation(_) => Some("Sent vacation reply".to_string()),
            Action::Reject { reason, .. } => Some(format!("Rejected with: {reason}")),
            Action::Notify(_) => None,
        })
        .collect();
    for a in actions {
        match a {
            Action::Notify(n) => p.notifies.push(n),
            Action::Keep { flags } => {
                if r.keep_refused {
                    fail(&flags, format!("keep into {}: permission denied", r.keep), &mut p);
                } else {
                    add(&mut p.deliveries, r.keep, flags);
                }
            }
            Action::FileInto {
                mailbox,
                flags,
                create: make,
                special_use,
            } => match ns.to_internal(&mailbox) {
                Ok(name) if open(&name) || (make && create(&name, special_use.as_deref())) => add(&mut p.deliveries, &name, flags),
                _ => fail(
                    &flags,
                    format!("fileinto {mailbox}: mailbox does not exist or permission denied"),
                    &mut p,
                ),
            },
            Action::Discard => p.notes.push(format!("sieve discarded message for {}", r.userid)),
            Action::Reject { reason, .. } => p.reject = Some(reason),
            Action::Redirect { addr, dsn } => p.redirects.push((addr, dsn)),
            Action::Vacation(v) => p.vacation = Some(v),
        }
    }
    if let Some(mut flags) = failed {
        flags.push(FAILED.to_string());
        add(&mut p.deliveries, r.inbox, flags);
    }
    p
}

/// A delivery into `name`, merged with one there already (flags joined).
fn add(d: &mut Vec<(String, Vec<String>)>, name: &str, flags: Vec<String>) {
    match d.iter_mut().find(|(n, _)| n == name) {
        Some((_, f)) => {
            for x in flags {
                if !f.iter().any(|y| y.eq_ignore_ascii_case(&x)) {
                    f.push(x);
                }
            }
        }
        None => d.push((name.to_string(), flags)),
    }
}

/// Hands a message to the `sendmail` program as Cyrus 3.6 does: `-bs`,
/// an SMTP conversation on its standard input and output (`EHLO
/// localhost`, the envelope, `prefix` and the message).  Ok once the
/// message was accepted; a minute for it all.
pub fn sendmail(program: &str, from: &str, to: &str, prefix: &[u8], msg: &[u8]) -> Result<(), String> {
    sendmail_to(program, from, &[to], None, prefix, msg)
}

/// `sendmail` to several recipients in one transaction, with a
/// redirect's DSN and DELIVERBY parameters where the MTA offers them.
pub fn sendmail_to(
    program: &str,
    from: &str,
    to: &[&str],
    dsn: Option<&sieve::RedirectDsn>,
    prefix: &[u8],
    msg: &[u8],
) -> Result<(), String> {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut child = std::process::Command::new(program)
        .arg("-bs")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("{program}: {e}"))?;
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let dog = std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(std::time::Duration::from_secs(60)) {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    });
    let (Some(mut w), Some(out)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(format!("{program}: no pipes"));
    };
    let mut r = BufReader::new(out);
    // One reply, its first digit checked: its lines' texts (a few).
    let mut expect = |want: u8, what: &str| -> Result<Vec<String>, String> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = (&mut r).take(4096).read_line(&mut line).map_err(|e| format!("{program}: {e}"))?;
            if n == 0 {
                return Err(format!("{program} closed the connection after {what}"));
            }
            if lines.len() < 64 {
                lines.push(line.get(4..).unwrap_or("").trim_end().to_ascii_uppercase());
            }
            if line.as_bytes().get(3) == Some(&b'-') {
                continue;
            }
            return if line.as_bytes().first() == Some(&want) {
                Ok(lines)
            } else {
                Err(format!("{program} answered {what}: {}", line.trim_end()))
            };
        }
    };
    let res = (|| -> Result<(), String> {
        let io = |e: std::io::Error| format!("{program}: {e}");
        expect(b'2', "the connection")?;
        w.write_all(b"EHLO localhost\r\n").map_err(io)?;
        w.flush().map_err(io)?;
        let ehlo = expect(b'2', "EHLO localhost")?;
        let offers = |k: &str| ehlo.iter().any(|l| l.split_whitespace().next() == Some(k));
        let (mail, rcpt) = dsn.map_or_else(Default::default, |d| {
            d.params(offers("DSN"), offers("DELIVERBY"), crate::util::unix_now() as i64)
        });
        let mut cmds = vec![(format!("MAIL FROM:<{from}>{mail}"), b'2')];
        cmds.extend(to.iter().map(|t| (format!("RCPT TO:<{t}>{rcpt}"), b'2')));
        cmds.push(("DATA".to_string(), b'3'));
        for (cmd, want) in cmds {
            w.write_all(format!("{cmd}\r\n").as_bytes()).map_err(io)?;
            w.flush().map_err(io)?;
            expect(want, &cmd)?;
        }
        let mut data = prefix.to_vec();
        for line in msg.split_inclusive(|&c| c == b'\n') {
            if line.first() == Some(&b'.') {
                data.push(b'.');
            }
            data.extend_from_slice(line);
        }
        if !data.ends_with(b"\n") {
            data.extend_from_slice(b"\r\n");
        }
        data.extend_from_slice(b".\r\n");
        w.write_all(&data).map_err(io)?;
        w.flush().map_err(io)?;
        expect(b'2', "the message")?;
        let _ = w.write_all(b"QUIT\r\n");
        let _ = w.flush();
        let _ = expect(b'2', "QUIT");
        Ok(())
    })();
    drop(w);
    drop(tx);
    let _ = dog.join();
    let _ = child.wait();
    res
}

/// A notification message (RFC 5436) in Cyrus notifyd's layout: its
/// fixed From and Subject (the URI's `subject` and `:from` instead when
/// given), the message (the URI's `body` when given), then what was
/// done; marked `Auto-Submitted: auto-notified` so that no one answers.
/// The importance is not shown, as in Cyrus.
pub fn notification(n: &sieve::Notify, m: &sieve::Mailto, taken: &[String], servername: &str, date: &str) -> Vec<u8> {
    let clean = |s: &str| s.replace(['\r', '\n'], " ");
    let list = |l: &[String]| l.iter().map(|a| format!("<{a}>")).collect::<Vec<_>>().join(", ");
    let from = n
        .from
        .as_deref()
        .map_or_else(|| "Mail Sieve Subsystem <postmaster>".to_string(), clean);
    let subject = m
        .subject
        .as_deref()
        .map_or_else(|| "[SIEVE] New mail notification".to_string(), clean);
    let mut out = format!(
        "Message-ID: <cmu-sieve-{}-{}-{}@{servername}>\r\nDate: {date}\r\nX-Sieve: CMU Sieve 3.0\r\nFrom: {from}\r\n",
        std::process::id(),
        crate::util::unix_now(),
        NOTIFICATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    if !m.to.is_empty() {
        out.push_str(&format!("To: {}\r\n", list(&m.to)));
    }
    if !m.cc.is_empty() {
        out.push_str(&format!("Cc: {}\r\n", list(&m.cc)));
    }
    out.push_str(&format!("Subject: {subject}\r\nAuto-Submitted: auto-notified\r\n"));
    let text = m.body.as_deref().unwrap_or(&n.message).replace("\r\n", "\n").replace('\n', "\r\n");
    let mut body = format!("{text}\r\n\r\nAction(s) taken:\r\n");
    for t in taken {
        body.push_str(&format!("{}\r\n", clean(t)));
    }
    body.push_str("\r\n");
    if !out.is_ascii() || !body.is_ascii() {
        out.push_str("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8BIT\r\n");
    }
    out.push_str("\r\n");
    out.push_str(&body);
    out.into_bytes()
}

/// A vacation answer (RFC 5230) to send, or None and why not.
#[derive(Debug, PartialEq)]
pub struct Answer {
    pub to: String,
    /// What the tracking remembers it by: the handle, else the reason's
    /// and the options' digest.
    pub key: String,
    pub msg: Vec<u8>,
}

/// The vacation answer Cyrus 3.6 would send: none to a null sender, to a
/// list or system address (`MAILER-DAEMON`, `owner-*`, `*-request`,
/// `LISTSERV`, `majordomo`), to a message marked bulk or automatic
/// (`Precedence`, `Auto-Submitted`, `List-Id`), to one that does not name
/// the user (`:addresses` or the user's own id) in To, Cc, Bcc or their
/// Resent- forms, nor to the user themselves.
pub fn vacation_answer(
    v: &sieve::Vacation,
    fields: &[(String, Vec<u8>)],
    env_from: &str,
    userid: &str,
    servername: &str,
    date: &str,
) -> Result<Answer, &'static str> {
    use crate::mail::mime::{field_text, parse_addresses};
    let sender = env_from.trim_start_matches('<').trim_end_matches('>');
    if sender.is_empty() {
        return Err("null sender");
    }
    let local = sender.rsplit_once('@').map_or(sender, |(l, _)| l).to_ascii_lowercase();
    if local == "mailer-daemon" || local == "listserv" || local == "majordomo" || local.starts_with("owner-") || local.ends_with("-request")
    {
        return Err("system address");
    }
    if field_text(fields, "auto-submitted").is_some_and(|a| !a.eq_ignore_ascii_case("no")) {
        return Err("automatic message");
    }
    if field_text(fields, "precedence").is_some_and(|p| ["junk", "bulk", "list"].iter().any(|x| p.eq_ignore_ascii_case(x))) {
        return Err("bulk message");
    }
    if field_text(fields, "list-id").is_some() {
        return Err("list message");
    }
    let mine: Vec<&str> = v.addresses.iter().map(String::as_str).chain(std::iter::once(userid)).collect();
    let is_mine = |a: &str| mine.iter().find(|m| m.eq_ignore_ascii_case(a)).copied();
    if is_mine(sender).is_some() {
        return Err("the user's own address");
    }
    let mut found = None;
    for (name, value) in fields {
        let n = name.to_ascii_lowercase();
        if !matches!(n.as_str(), "to" | "cc" | "bcc" | "resent-to" | "resent-cc" | "resent-bcc") {
            continue;
        }
        for a in parse_addresses(value) {
            let (Some(mb), Some(host)) = (a.mailbox, a.host) else { continue };
            let addr = format!("{}@{}", String::from_utf8_lossy(&mb), String::from_utf8_lossy(&host));
            if let Some(m) = is_mine(&addr) {
                found = Some(m.to_string());
                break;
            }
        }
        if found.is_some() {
            break;
        }
    }
    let Some(me) = found else {
        return Err("not addressed to the user");
    };
    let from = match &v.from {
        Some(f) if f.contains('<') => f.clone(),
        Some(f) => format!("<{f}>"),
        None => format!("<{me}>"),
    };
    let subject = match &v.subject {
        Some(s) => s.clone(),
        None => format!("Auto: {}", field_text(fields, "subject").unwrap_or_default()),
    };
    let key = match &v.handle {
        Some(h) => format!("h:{h}"),
        None => {
            let d = ring::digest::digest(
                &ring::digest::SHA256,
                format!("{}\0{subject}\0{from}\0{}", v.reason, v.mime).as_bytes(),
            );
            d.as_ref()[..12].iter().map(|b| format!("{b:02x}")).collect()
        }
    };
    let mut m = format!(
        "Message-ID: <cmu-sieve-{}-{}-{}@{servername}>\r\nDate: {date}\r\nX-Sieve: CMU Sieve 3.0\r\nX-Sieve-Action: vacation\r\nFrom: {from}\r\nTo: <{sender}>\r\nSubject: {subject}\r\n",
        std::process::id(),
        crate::util::unix_now(),
        ANSWERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    if let Some(id) = field_text(fields, "message-id") {
        m.push_str(&format!("In-Reply-To: {id}\r\n"));
    }
    m.push_str("Auto-Submitted: auto-replied (vacation)\r\nMIME-Version: 1.0\r\n");
    let reason = v.reason.replace("\r\n", "\n").replace('\n', "\r\n");
    if v.mime {
        // The reason is a MIME entity: its own header, then its body.
        m.push_str(&reason);
    } else {
        m.push_str("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n");
        m.push_str(&reason);
    }
    m.push_str("\r\n");
    Ok(Answer {
        to: sender.to_string(),
        key,
        msg: m.into_bytes(),
    })
}

static ANSWERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_fall_back_to_the_inbox_flagged() {
        let s = sieve::parse(
            br#"require ["fileinto", "imap4flags"];
addflag "\\Flagged";
fileinto "INBOX.there";
fileinto "INBOX.missing";
keep;"#,
        )
        .unwrap();
        let f = crate::mail::mime::fields(b"Subject: x\r\n\r\n");
        let m = sieve::Message::plain(&f, b"Subject: x\r\n\r\n", "a@b", "u7+f@x");
        let ns = crate::store::names::Namespace::new(false, false, "u7", false, "");
        let r = Recipient {
            userid: "u7",
            inbox: "user.u7",
            keep: "user.u7.f",
            keep_refused: true,
        };
        let p = plan(&s, &m, &r, &ns, |n| n == "user.u7.there", |_, _| false);
        assert_eq!(
            p.deliveries,
            vec![
                ("user.u7.there".to_string(), vec!["\\Flagged".to_string()]),
                ("user.u7".to_string(), vec!["\\Flagged".to_string(), FAILED.to_string()]),
            ]
        );
        assert_eq!(p.notes.len(), 2);
    }

    #[test]
    fn the_script_is_the_one_defaultbc_names() {
        let d = tempfile::tempdir().unwrap();
        let dir = crate::store::names::sieve_dir(d.path(), "user.u7", false);
        assert_eq!(dir, d.path().join("u/u7"));
        assert_eq!(
            crate::store::names::sieve_dir(d.path(), "example.com!user.a^b", false),
            d.path().join("domain/e/example.com/a/a^b")
        );
        assert!(active(d.path(), "user.u7", false).is_none());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("main.script"), "discard;").unwrap();
        std::os::unix::fs::symlink("main.bc", dir.join("defaultbc")).unwrap();
        assert!(matches!(active(d.path(), "user.u7", false), Some(Ok(_))));
        std::fs::write(dir.join("main.script"), "nonsense").unwrap();
        assert!(matches!(active(d.path(), "user.u7", false), Some(Err(e)) if e.contains("line 1")));
    }
}
