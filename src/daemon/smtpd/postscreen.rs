//! postscreen(8) in front of an smtpd service (`smtp inet ... postscreen`
//! with an `smtpd pass ... smtpd` service in master.cf).  Each new client
//! is screened before smtpd sees it, as Postfix 3.7's postscreen does:
//!
//! 1. `postscreen_access_list`: allowlisted clients go to smtpd at once
//!    (`ALLOWLISTED`), denylisted ones get `postscreen_denylist_action`.
//! 2. A client whose earlier tests have not expired in the cache goes to
//!    smtpd at once (`PASS OLD`).
//! 3. Before the greeting: the `220-` bait (`postscreen_greet_banner`),
//!    `postscreen_greet_wait` for a client that talks too early
//!    (`PREGREET`), and the DNSBL score from `postscreen_dnsbl_sites`
//!    (`DNSBL rank`).  Data a client sends early is only peeked at, so a
//!    client handed over keeps it.
//! 4. A client that passed goes to smtpd (`PASS NEW`), whose `220` line
//!    ends the multi-line greeting.  A client that failed an `enforce`
//!    test, or has the "after 220" tests (pipelining, non-SMTP commands,
//!    bare newlines) still to pass, talks to the built-in engine
//!    (`proto::smtp::screen`), which never takes mail: it must come back.
//!
//! The cache lives in memory (shared by all postscreen services, kept
//! across `postfix reload`), not in `postscreen_cache_map`: a restart
//! tests every client again.

use crate::daemon::hub::conf::match_networks;
use crate::daemon::hub::Hub;
use crate::log::Logger;
use crate::proto::smtp::log_escape as escape;
use crate::proto::smtp::screen::{Action, Engine, EngineConf, Test, PROTOCOL_ERROR_550};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// One `postscreen_dnsbl_sites` entry: `zone[=filter][*weight]`.
#[derive(Debug, Clone)]
struct Site {
    zone: String,
    filter: Option<String>,
    weight: i64,
}

fn sites(v: &str) -> Result<Vec<Site>, String> {
    let mut out = Vec::new();
    for w in crate::config::postfix::list::split_list(v) {
        let (rest, weight) = match w.rsplit_once('*') {
            Some((r, n)) => (
                r,
                n.parse::<i64>()
                    .map_err(|_| format!("bad DNSBL weight factor \"{n}\" in \"{w}\""))?,
            ),
            None => (w, 1),
        };
        let (zone, filter) = match rest.split_once('=') {
            Some((z, f)) => (z, Some(f.to_string())),
            None => (rest, None),
        };
        if zone.is_empty() || zone.contains(['[', ']', '/']) {
            return Err(format!("bad DNSBL domain name \"{zone}\" in \"{w}\""));
        }
        out.push(Site {
            zone: zone.trim_end_matches('.').to_string(),
            filter,
            weight,
        });
    }
    Ok(out)
}

pub struct ScreenConf {
    access_list: Vec<String>,
    denylist_action: Action,
    greet_banner: String,
    /// The engine's own `220` line.
    smtpd_banner: String,
    greet_wait: Duration,
    greet_action: Action,
    greet_ttl: Duration,
    dnsbl_sites: Vec<Site>,
    dnsbl_threshold: i64,
    dnsbl_allowlist_threshold: i64,
    dnsbl_action: Action,
    dnsbl_reply_map: Option<crate::tables::Table>,
    dnsbl_timeout: Duration,
    dnsbl_ttl: Duration,
    pipelining_ttl: Duration,
    non_smtp_ttl: Duration,
    bare_newline_ttl: Duration,
    command_time_limit: Duration,
    line_limit: usize,
    connection_count_limit: usize,
    /// `postscreen_pre_queue_limit`: clients in the tests at once.
    pre_queue_limit: usize,
    /// `postscreen_post_queue_limit`: clients waiting for an smtpd slot.
    post_queue_limit: usize,
    retention: Duration,
    reject_footer: String,
    /// `postscreen_reject_footer_maps` (by the complete reply).
    reject_footer_maps: crate::tables::Maps,
    /// `postscreen_command_filter`: a table that rewrites command lines.
    command_filter: String,
    /// `postscreen_discard_ehlo_keyword_address_maps` (by client address).
    discard_maps: crate::tables::Maps,
    /// `respectful_logging`: ALLOWLISTED/DENYLISTED, else WHITE/BLACK.
    respectful: bool,
    forbidden: Vec<String>,
    /// The engine's EHLO keywords before any are discarded.
    all_keywords: Vec<String>,
    engine: EngineConf,
}

impl ScreenConf {
    /// `p` carries the postscreen service's `-o` overrides.
    pub fn load(p: &crate::config::postfix::Params) -> Result<ScreenConf, String> {
        let s = |n: &str| p.get(n).unwrap_or_default().trim().to_string();
        let time = |n: &str| p.get_time(n).map_err(|e| e.to_string());
        let int = |n: &str, min: i64| p.get_int(n, min, 0).map_err(|e| e.to_string());
        let bool_ = |n: &str| p.get_bool(n).map_err(|e| e.to_string());
        let action = |n: &str| Action::parse(&s(n)).ok_or_else(|| format!("{n} = {}: unknown action (ignore, enforce or drop)", s(n)));
        let access_list: Vec<String> = crate::config::postfix::list::split_list(&s("postscreen_access_list"))
            .into_iter()
            .map(str::to_string)
            .collect();
        for a in &access_list {
            if !a.contains(':') && !matches!(a.to_ascii_lowercase().as_str(), "permit_mynetworks" | "permit" | "reject" | "dunno") {
                return Err(format!("postscreen_access_list: unknown command: {a}"));
            }
        }
        let reply_map = match s("postscreen_dnsbl_reply_map") {
            m if m.is_empty() => None,
            m => Some(crate::tables::Table::open(&m).map_err(|e| format!("postscreen_dnsbl_reply_map: {e}"))?),
        };
        let size = int("message_size_limit", 0)?;
        let disable_vrfy = bool_("postscreen_disable_vrfy_command")?;
        let discard: Vec<String> = crate::config::postfix::list::split_list(&s("postscreen_discard_ehlo_keywords"))
            .into_iter()
            .map(str::to_ascii_uppercase)
            .collect();
        let mut keywords = vec![if size > 0 { format!("SIZE {size}") } else { "SIZE".to_string() }];
        if !disable_vrfy {
            keywords.push("VRFY".into());
        }
        keywords.push("ETRN".into());
        keywords.extend(["ENHANCEDSTATUSCODES", "8BITMIME", "DSN"].map(String::from));
        if bool_("smtputf8_enable")? {
            keywords.push("SMTPUTF8".into());
        }
        keywords.push("CHUNKING".into());
        let all_keywords = keywords.clone();
        keywords.retain(|k| !discard.iter().any(|d| k.split(' ').next() == Some(d.as_str())));
        let enabled = |n: &str, a: &str| -> Result<Option<Action>, String> { Ok(if bool_(n)? { Some(action(a)?) } else { None }) };
        Ok(ScreenConf {
            access_list,
            denylist_action: action("postscreen_denylist_action")?,
            greet_banner: s("postscreen_greet_banner"),
            smtpd_banner: s("smtpd_banner"),
            greet_wait: time("postscreen_greet_wait")?,
            greet_action: action("postscreen_greet_action")?,
            greet_ttl: time("postscreen_greet_ttl")?,
            dnsbl_sites: sites(&s("postscreen_dnsbl_sites"))?,
            dnsbl_threshold: int("postscreen_dnsbl_threshold", 0)?,
            dnsbl_allowlist_threshold: p
                .get_int("postscreen_dnsbl_allowlist_threshold", i64::MIN, i64::MAX)
                .map_err(|e| e.to_string())?,
            dnsbl_action: action("postscreen_dnsbl_action")?,
            dnsbl_reply_map: reply_map,
            dnsbl_timeout: time("postscreen_dnsbl_timeout")?,
            dnsbl_ttl: time("postscreen_dnsbl_max_ttl")?.max(time("postscreen_dnsbl_min_ttl")?),
            pipelining_ttl: time("postscreen_pipelining_ttl")?,
            non_smtp_ttl: time("postscreen_non_smtp_command_ttl")?,
            bare_newline_ttl: time("postscreen_bare_newline_ttl")?,
            command_time_limit: time("postscreen_command_time_limit")?,
            line_limit: int("line_length_limit", 1)? as usize,
            connection_count_limit: int("postscreen_client_connection_count_limit", 0)? as usize,
            pre_queue_limit: int("postscreen_pre_queue_limit", 1)? as usize,
            post_queue_limit: int("postscreen_post_queue_limit", 1)? as usize,
            retention: time("postscreen_cache_retention_time")?,
            // Unexpanded: its `$name`s are the session's.
            reject_footer: {
                let raw = p.raw("postscreen_reject_footer").unwrap_or_default().trim().to_string();
                match raw.as_str() {
                    "$smtpd_reject_footer" | "${smtpd_reject_footer}" => {
                        p.raw("smtpd_reject_footer").unwrap_or_default().trim().to_string()
                    }
                    _ => raw,
                }
            },
            reject_footer_maps: crate::tables::Maps::open(
                &crate::config::postfix::list::split_list(&s("postscreen_reject_footer_maps"))
                    .into_iter()
                    .map(str::to_string)
                    .collect::<Vec<_>>(),
            )
            .map_err(|e| format!("postscreen_reject_footer_maps: {e}"))?,
            command_filter: s("postscreen_command_filter"),
            discard_maps: crate::tables::Maps::open(
                &crate::config::postfix::list::split_list(&s("postscreen_discard_ehlo_keyword_address_maps"))
                    .into_iter()
                    .map(str::to_string)
                    .collect::<Vec<_>>(),
            )
            .map_err(|e| format!("postscreen_discard_ehlo_keyword_address_maps: {e}"))?,
            respectful: bool_("respectful_logging")?,
            forbidden: crate::config::postfix::list::split_list(&s("postscreen_forbidden_commands"))
                .into_iter()
                .map(str::to_string)
                .collect(),
            all_keywords,
            engine: EngineConf {
                myhostname: s("myhostname"),
                ehlo_keywords: keywords,
                helo_required: bool_("postscreen_helo_required")?,
                disable_vrfy,
                command_count_limit: int("postscreen_command_count_limit", 1)? as usize,
                pipelining: enabled("postscreen_pipelining_enable", "postscreen_pipelining_action")?,
                bare_newline: enabled("postscreen_bare_newline_enable", "postscreen_bare_newline_action")?,
                non_smtp_command: enabled("postscreen_non_smtp_command_enable", "postscreen_non_smtp_command_action")?,
                non_smtp_action: action("postscreen_non_smtp_command_action")?,
            },
        })
    }
}

/// When each passed test expires for a client.
#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    pregreet: Option<Instant>,
    dnsbl: Option<Instant>,
    pipelining: Option<Instant>,
    non_smtp: Option<Instant>,
    bare_newline: Option<Instant>,
}

fn fresh(t: Option<Instant>, now: Instant) -> bool {
    t.is_some_and(|t| t > now)
}

impl Entry {
    fn last_expiry(&self) -> Option<Instant> {
        [self.pregreet, self.dnsbl, self.pipelining, self.non_smtp, self.bare_newline]
            .into_iter()
            .flatten()
            .max()
    }
}

/// postscreen's temporary allowlist: the tests each client passed.
#[derive(Default)]
pub struct Cache(Mutex<HashMap<IpAddr, Entry>>);

/// The most clients remembered; past it, expired entries are dropped.
const CACHE_LIMIT: usize = 200_000;

impl Cache {
    fn get(&self, ip: IpAddr) -> Entry {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&ip)
            .copied()
            .unwrap_or_default()
    }

    fn put(&self, ip: IpAddr, e: Entry, retention: Duration) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= CACHE_LIMIT && !m.contains_key(&ip) {
            let now = Instant::now();
            m.retain(|_, v| v.last_expiry().is_some_and(|t| t + retention > now));
            if m.len() >= CACHE_LIMIT {
                return;
            }
        }
        m.insert(ip, e);
    }
}

/// What became of a screened client.
pub enum Outcome {
    /// Hand the connection to smtpd.
    Pass,
    /// Screened out: the connection is done.
    Done,
}

enum Access {
    Permit,
    Reject,
    Dunno,
}

pub struct Screen {
    conf: ScreenConf,
    log: Arc<Logger>,
    hub: Arc<Hub>,
    tables: super::check::TableCache,
    conns: super::ClientCounts,
    /// Clients in the tests now.
    screening: std::sync::atomic::AtomicUsize,
    /// The pass service's process limit: clients being served by smtpd
    /// (the tests do not take these slots, as postscreen's do not take
    /// smtpd processes).
    slots: Arc<tokio::sync::Semaphore>,
    /// Clients waiting for a slot.
    waiting: std::sync::atomic::AtomicUsize,
}

/// Counts a client in `n` while it lives.
struct Counted<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Counted<'a> {
    /// The new count with this client.
    fn new(n: &'a std::sync::atomic::AtomicUsize) -> (Counted<'a>, usize) {
        let now = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        (Counted(n), now)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// One line read by the engine.
enum Read {
    Line(Vec<u8>, bool),
    Eof,
    TooLong,
    Timeout,
}

impl Screen {
    /// `smtpd_limit`: the pass service's process limit.
    pub fn new(conf: ScreenConf, log: Arc<Logger>, hub: Arc<Hub>, smtpd_limit: usize) -> Screen {
        Screen {
            conf,
            log,
            hub,
            tables: Default::default(),
            conns: Default::default(),
            screening: Default::default(),
            slots: Arc::new(tokio::sync::Semaphore::new(
                smtpd_limit.clamp(1, tokio::sync::Semaphore::MAX_PERMITS),
            )),
            waiting: Default::default(),
        }
    }

    /// How many connections the listener may hold: in the tests,
    /// waiting for smtpd, and served by it.
    pub fn connection_limit(&self) -> usize {
        self.conf.pre_queue_limit + self.conf.post_queue_limit + self.slots.available_permits()
    }

    /// A slot of the pass service for a client that passed, held while
    /// smtpd serves it; None when `postscreen_post_queue_limit` clients
    /// already wait (the client got Postfix's 421).
    pub async fn smtpd_slot(&self, s: &mut TcpStream, ip: IpAddr, port: u16) -> Option<tokio::sync::OwnedSemaphorePermit> {
        if let Ok(p) = self.slots.clone().try_acquire_owned() {
            return Some(p);
        }
        let (_queued, n) = Counted::new(&self.waiting);
        if n > self.conf.post_queue_limit {
            self.log
                .info(&format!("NOQUEUE: reject: CONNECT from [{ip}]:{port}: all server ports busy"));
            self.send(s, "421 4.3.2 All server ports are busy", ip, port).await;
            return None;
        }
        self.slots.clone().acquire_owned().await.ok()
    }

    fn listed_word(&self, allow: bool) -> &'static str {
        match (allow, self.conf.respectful) {
            (true, true) => "ALLOW",
            (true, false) => "WHITE",
            (false, true) => "DENY",
            (false, false) => "BLACK",
        }
    }

    fn access(&self, ip: IpAddr, list: &[String], nested: bool) -> Access {
        for a in list {
            match a.to_ascii_lowercase().as_str() {
                "permit_mynetworks" if match_networks(&self.hub.conf.mynetworks, ip) => return Access::Permit,
                "permit_mynetworks" | "dunno" => {}
                "permit" => return Access::Permit,
                "reject" => return Access::Reject,
                _ if a.contains(':') && !nested => {
                    let found = self
                        .tables
                        .get(a)
                        .map_err(|e| e.to_string())
                        .and_then(|t| t.lookup(&ip.to_string()).map_err(|e| e.to_string()));
                    match found {
                        Ok(Some(v)) => {
                            let inner: Vec<String> = crate::config::postfix::list::split_list(&v)
                                .into_iter()
                                .map(str::to_string)
                                .collect();
                            match self.access(ip, &inner, true) {
                                Access::Dunno => {}
                                decided => return decided,
                            }
                        }
                        Ok(None) => {}
                        Err(e) => self
                            .log
                            .warning(&format!("postscreen_access_list: {a}: lookup error for \"{ip}\": {e}")),
                    }
                }
                _ => self.log.warning(&format!(
                    "postscreen_access_list: {a}: unknown command in a table's answer for \"{ip}\""
                )),
            }
        }
        Access::Dunno
    }

    /// Looks the client up in every DNSBL; each answer goes to `tx` as
    /// (site index, listed).
    fn dnsbl_start(&self, ip: IpAddr) -> tokio::sync::mpsc::UnboundedReceiver<(usize, bool)> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        for (i, site) in self.conf.dnsbl_sites.iter().enumerate() {
            let (tx, name, filter, limit) = (
                tx.clone(),
                crate::dns::reverse_name(ip, &site.zone),
                site.filter.clone(),
                self.conf.dnsbl_timeout,
            );
            tokio::spawn(async move {
                let listed = match tokio::time::timeout(limit, crate::dns::Dns::shared().a(&name)).await {
                    Ok(Ok(addrs)) => crate::daemon::smtpd::dnscheck::filter_match(filter.as_deref(), &addrs),
                    _ => false,
                };
                let _ = tx.send((i, listed));
            });
        }
        rx
    }

    /// The score of the answers in so far, and the name to show: the
    /// listing site with the largest weight (the first of equals), as
    /// `postscreen_dnsbl_reply_map` names it.
    fn dnsbl_score(&self, answers: &[(usize, bool)]) -> (i64, String) {
        let mut score = 0;
        let mut best: Option<&Site> = None;
        for (i, site) in self.conf.dnsbl_sites.iter().enumerate() {
            if answers.iter().any(|&(j, listed)| j == i && listed) {
                score += site.weight;
                if site.weight > 0 && best.is_none_or(|b| b.weight < site.weight) {
                    best = Some(site);
                }
            }
        }
        let name = best.map(|b| b.zone.clone()).unwrap_or_default();
        let shown = match &self.conf.dnsbl_reply_map {
            Some(t) => t.lookup(&name).ok().flatten().unwrap_or(name),
            None => name,
        };
        (score, shown)
    }

    async fn send(&self, s: &mut TcpStream, reply: &str, ip: IpAddr, port: u16) {
        let mapped = if reply.starts_with(['4', '5']) {
            self.conf.reject_footer_maps.lookup(reply).ok().flatten()
        } else {
            None
        };
        let template = mapped.as_deref().unwrap_or(&self.conf.reject_footer);
        let reply = if reply.starts_with(['4', '5']) && !template.is_empty() {
            let server = self.conf.engine.myhostname.clone();
            crate::proto::smtp::footer::add_footer(reply, template, &|n: &str| match n {
                "client_address" => Some(ip.to_string()),
                "client_port" => Some(port.to_string()),
                "server_name" => Some(server.clone()),
                _ => None,
            })
        } else {
            reply.to_string()
        };
        let _ = s.write_all(format!("{reply}\r\n").as_bytes()).await;
    }

    /// Screens a new client on `s` (nothing read from it yet).
    pub async fn screen(&self, s: &mut TcpStream, ip: IpAddr, port: u16, local: IpAddr, lport: u16) -> Outcome {
        let t0 = Instant::now();
        let client = format!("[{ip}]:{port}");
        self.log.info(&format!("CONNECT from {client} to [{local}]:{lport}"));
        let denied = match self.access(ip, &self.conf.access_list, false) {
            Access::Permit => {
                self.log.info(&format!("{}LISTED {client}", self.listed_word(true)));
                return Outcome::Pass;
            }
            Access::Reject => {
                self.log.info(&format!("{}LISTED {client}", self.listed_word(false)));
                true
            }
            Access::Dunno => false,
        };
        let (_screening, n) = Counted::new(&self.screening);
        if n > self.conf.pre_queue_limit {
            self.log.info(&format!("reject: connect from {client}: all screening ports busy"));
            self.send(s, "421 4.3.2 All screening ports are busy", ip, port).await;
            return Outcome::Done;
        }
        let (_guard, n) = self.conns.enter(ip);
        if self.conf.connection_count_limit > 0 && n > self.conf.connection_count_limit {
            self.log
                .info(&format!("NOQUEUE: reject: CONNECT from {client}: too many connections"));
            self.send(s, "421 4.7.0 Error: too many connections", ip, port).await;
            self.log.info(&format!("DISCONNECT {client}"));
            return Outcome::Done;
        }
        // The refusal of an `enforce` test; a test that failed under
        // `ignore` (no PASS NEW for that one, nothing cached).
        let mut enforce: Option<String> = None;
        if denied {
            match self.conf.denylist_action {
                Action::Drop => {
                    self.send(s, "521 5.3.2 Service currently unavailable", ip, port).await;
                    self.log.info(&format!("DISCONNECT {client}"));
                    return Outcome::Done;
                }
                Action::Enforce => enforce = Some("550 5.3.2 Service currently unavailable".into()),
                Action::Ignore => {}
            }
        }
        let now = Instant::now();
        // A denylisted client makes every test, and passes none for
        // the cache.
        let mut entry = if denied { Entry::default() } else { self.hub_cache().get(ip) };
        let c = &self.conf;
        let engine = &c.engine;
        let deep_todo = (engine.pipelining.is_some() && !fresh(entry.pipelining, now))
            || (engine.non_smtp_command.is_some() && !fresh(entry.non_smtp, now))
            || (engine.bare_newline.is_some() && !fresh(entry.bare_newline, now));
        let pregreet_todo = !fresh(entry.pregreet, now);
        let dnsbl_todo = !c.dnsbl_sites.is_empty() && !fresh(entry.dnsbl, now);
        if !denied && !pregreet_todo && !dnsbl_todo && !deep_todo {
            self.log.info(&format!("PASS OLD {client}"));
            return Outcome::Pass;
        }
        // Before the greeting.
        let mut final_greeting = true;
        let mut ignored = false;
        if pregreet_todo || dnsbl_todo {
            let mut answers = Vec::new();
            let mut rx = dnsbl_todo.then(|| self.dnsbl_start(ip));
            if pregreet_todo && !c.greet_banner.is_empty() {
                let _ = s.write_all(format!("220-{}\r\n", c.greet_banner).as_bytes()).await;
            }
            let deadline = tokio::time::Instant::now() + c.greet_wait;
            let mut peek = [0u8; 1024];
            let mut pregreet: Option<usize> = None;
            loop {
                let pending = rx.as_ref().is_some_and(|_| answers.len() < c.dnsbl_sites.len());
                if !pregreet_todo && !pending {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => break,
                    got = async {
                        match rx.as_mut() {
                            Some(r) if pending => r.recv().await,
                            _ => std::future::pending().await,
                        }
                    } => if let Some(a) = got { answers.push(a) },
                    n = s.peek(&mut peek), if pregreet_todo => match n {
                        Ok(0) | Err(_) => {
                            self.log.info(&format!(
                                "HANGUP after {} from {client} in tests before SMTP handshake",
                                crate::daemon::qmgr::fmt_delay(t0.elapsed())
                            ));
                            self.log.info(&format!("DISCONNECT {client}"));
                            return Outcome::Done;
                        }
                        Ok(n) => {
                            pregreet = Some(n);
                            break;
                        }
                    },
                }
            }
            if let Some(n) = pregreet {
                self.log.info(&format!(
                    "PREGREET {n} after {} from {client}: {}",
                    crate::daemon::qmgr::fmt_delay(t0.elapsed()),
                    escape(&peek[..n], 100)
                ));
                match c.greet_action {
                    Action::Drop => {
                        self.send(s, "521 5.5.1 Protocol error", ip, port).await;
                        self.log.info(&format!("DISCONNECT {client}"));
                        return Outcome::Done;
                    }
                    Action::Enforce => {
                        enforce = Some(PROTOCOL_ERROR_550.into());
                        final_greeting = false;
                    }
                    // The client keeps what it sent, for smtpd to read.
                    Action::Ignore if enforce.is_none() => return Outcome::Pass,
                    Action::Ignore => ignored = true,
                }
            } else {
                if pregreet_todo {
                    entry.pregreet = Some(Instant::now() + c.greet_ttl);
                }
                if let Some(r) = rx.as_mut() {
                    while let Ok(a) = r.try_recv() {
                        answers.push(a);
                    }
                    let (score, name) = self.dnsbl_score(&answers);
                    if score >= c.dnsbl_threshold {
                        self.log.info(&format!("DNSBL rank {score} for {client}"));
                        let refusal = |code: u16| format!("{code} 5.7.1 Service unavailable; client [{ip}] blocked using {name}");
                        match c.dnsbl_action {
                            Action::Drop => {
                                self.send(s, &refusal(521), ip, port).await;
                                self.log.info(&format!("DISCONNECT {client}"));
                                return Outcome::Done;
                            }
                            Action::Enforce => enforce = Some(refusal(550)),
                            Action::Ignore => ignored = true,
                        }
                    } else if c.dnsbl_allowlist_threshold < 0 && score <= c.dnsbl_allowlist_threshold && enforce.is_none() {
                        // A client the allowlists vouch for skips the
                        // other tests.
                        let until = Some(Instant::now() + c.dnsbl_ttl);
                        for t in [
                            &mut entry.dnsbl,
                            &mut entry.pregreet,
                            &mut entry.pipelining,
                            &mut entry.non_smtp,
                            &mut entry.bare_newline,
                        ] {
                            if t.is_none_or(|x| Some(x) < until) {
                                *t = until;
                            }
                        }
                        self.hub_cache().put(ip, entry, c.retention);
                        self.log.info(&format!("PASS NEW {client}"));
                        return Outcome::Pass;
                    } else {
                        entry.dnsbl = Some(Instant::now() + c.dnsbl_ttl);
                    }
                }
            }
        }
        if enforce.is_none() && !deep_todo {
            if !denied && !ignored {
                self.hub_cache().put(ip, entry, c.retention);
            }
            if !ignored || denied {
                self.log.info(&format!("PASS NEW {client}"));
            }
            return Outcome::Pass;
        }
        // A client that failed a test has nothing cached.
        let failed = ignored || denied || enforce.is_some();
        if !failed {
            self.hub_cache().put(ip, entry, c.retention);
        }
        self.converse(s, ip, port, &client, enforce, final_greeting, failed, entry).await;
        Outcome::Done
    }

    fn hub_cache(&self) -> &Cache {
        &self.hub.screen_cache
    }

    /// The built-in engine, to the end of the session.
    #[allow(clippy::too_many_arguments)]
    async fn converse(
        &self,
        s: &mut TcpStream,
        ip: IpAddr,
        port: u16,
        client: &str,
        enforce: Option<String>,
        greeting: bool,
        // A test failed before: nothing is cached, no PASS NEW.
        ignored: bool,
        mut entry: Entry,
    ) {
        let c = &self.conf;
        let t0 = Instant::now();
        let mut econf = c.engine.clone();
        // postscreen_discard_ehlo_keyword_address_maps: the client's own
        // list of keywords to leave out.
        if let Ok(Some(words)) = c.discard_maps.lookup(&ip.to_string()) {
            let words: Vec<String> = crate::config::postfix::list::split_list(&words)
                .into_iter()
                .map(str::to_ascii_uppercase)
                .collect();
            if let Some(names) = crate::proto::smtp::discard_log_names(&words) {
                // (Postfix's postscreen writes `[addr]port`, no colon.)
                self.log.info(&format!("[{ip}]{port}: discarding EHLO keywords: {names}"));
            }
            econf.ehlo_keywords = c.all_keywords.clone();
            econf
                .ehlo_keywords
                .retain(|k| !words.iter().any(|d| k.split(' ').next() == Some(d.as_str())));
        }
        let mut engine = Engine::new(econf, client.to_string(), enforce.as_deref());
        // Tests still fresh in the cache are not made again.
        let now = Instant::now();
        for (t, until) in [
            (&mut engine.pipelining, entry.pipelining),
            (&mut engine.non_smtp_command, entry.non_smtp),
            (&mut engine.bare_newline, entry.bare_newline),
        ] {
            if *t == Test::Todo && fresh(until, now) {
                *t = Test::Passed;
            }
        }
        if greeting {
            self.send(s, &format!("220 {}", c.smtpd_banner), ip, port).await;
        }
        let forbidden = |w: &str| super::check::forbidden_command(&self.tables, &c.forbidden, w);
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let read = self.read_line(s, &mut buf).await;
            let (line, bare) = match read {
                Read::Line(l, b) => (l, b),
                Read::Eof => {
                    self.log.info(&format!(
                        "HANGUP after {} from {client} in tests after SMTP handshake",
                        crate::daemon::qmgr::fmt_delay(t0.elapsed())
                    ));
                    break;
                }
                Read::TooLong => {
                    self.log
                        .info(&format!("COMMAND LENGTH LIMIT from {client} after {}", engine.last()));
                    self.send(
                        s,
                        &format!("421 {} Service unavailable - try again later", c.engine.myhostname),
                        ip,
                        port,
                    )
                    .await;
                    break;
                }
                Read::Timeout => {
                    self.log.info(&format!("COMMAND TIME LIMIT from {client} after {}", engine.last()));
                    self.send(s, &format!("421 4.4.2 {} Error: timeout exceeded", c.engine.myhostname), ip, port)
                        .await;
                    break;
                }
            };
            // postscreen_command_filter: the table's answer replaces the
            // line (leading white space removed).
            let line = match self.filter_command(&line) {
                Some(new) => {
                    let cut = |b: &[u8]| String::from_utf8_lossy(b).chars().take(100).collect::<String>();
                    let old = String::from_utf8_lossy(&line).trim_start().to_string();
                    if new != old {
                        self.log.info(&format!(
                            "{client}: replacing command \"{}\" with \"{}\"",
                            cut(old.as_bytes()),
                            cut(new.as_bytes())
                        ));
                    }
                    new.into_bytes()
                }
                None => line,
            };
            // What the client sent after this line without waiting.
            if buf.is_empty() {
                let mut more = [0u8; 512];
                if let Ok(n) = s.try_read(&mut more) {
                    buf.extend_from_slice(&more[..n]);
                }
            }
            let step = engine.line(&line, bare, &buf, &forbidden);
            for l in &step.log {
                self.log.info(l);
            }
            if !step.reply.is_empty() {
                self.send(s, &step.reply, ip, port).await;
            }
            if step.close {
                break;
            }
        }
        let now = Instant::now();
        for (t, until, ttl) in [
            (engine.pipelining, &mut entry.pipelining, c.pipelining_ttl),
            (engine.non_smtp_command, &mut entry.non_smtp, c.non_smtp_ttl),
            (engine.bare_newline, &mut entry.bare_newline, c.bare_newline_ttl),
        ] {
            if t == Test::Passed && !fresh(*until, now) {
                *until = Some(now + ttl);
            }
        }
        let failed =
            ignored || engine.enforced || [engine.pipelining, engine.non_smtp_command, engine.bare_newline].contains(&Test::Failed);
        if !failed {
            self.hub_cache().put(ip, entry, c.retention);
        }
        if engine.deep_passed() && !failed {
            self.log.info(&format!("PASS NEW {client}"));
        }
        self.log.info(&format!("DISCONNECT {client}"));
    }

    fn filter_command(&self, line: &[u8]) -> Option<String> {
        if self.conf.command_filter.is_empty() {
            return None;
        }
        let text = String::from_utf8_lossy(line);
        let t = self.tables.get(&self.conf.command_filter).ok()?;
        t.lookup(text.trim_start()).ok().flatten()
    }

    /// A command line from `buf` and the socket, within
    /// `postscreen_command_time_limit` and `line_length_limit`.
    async fn read_line(&self, s: &mut TcpStream, buf: &mut Vec<u8>) -> Read {
        use tokio::io::AsyncReadExt;
        let deadline = tokio::time::Instant::now() + self.conf.command_time_limit;
        loop {
            if let Some(i) = buf.iter().position(|&b| b == b'\n') {
                if i > self.conf.line_limit {
                    return Read::TooLong;
                }
                let mut line: Vec<u8> = buf.drain(..=i).collect();
                line.pop();
                let bare = line.last() != Some(&b'\r');
                if !bare {
                    line.pop();
                }
                return Read::Line(line, bare);
            }
            if buf.len() > self.conf.line_limit {
                return Read::TooLong;
            }
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
                Err(_) => return Read::Timeout,
                Ok(Ok(0)) | Ok(Err(_)) => return Read::Eof,
                Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dnsbl_sites_parse_with_filters_and_weights() {
        let s = sites("zen.example=127.0.0.[2..11]*3, wl.example=127.0.[0..255].0*-2 plain.example").unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(
            (s[0].zone.as_str(), s[0].filter.as_deref(), s[0].weight),
            ("zen.example", Some("127.0.0.[2..11]"), 3)
        );
        assert_eq!((s[1].zone.as_str(), s[1].weight), ("wl.example", -2));
        assert_eq!((s[2].filter.as_deref(), s[2].weight), (None, 1));
        assert!(sites("x.example*two").is_err());
    }
}
