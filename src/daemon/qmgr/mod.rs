//! qmgr: the queue manager and its delivery agents, in the hub process.
//! A new message is handed over in memory by smtpd after its queue file is
//! durable; recovered and deferred messages are read from their files.
//! Each message's open recipients are resolved (trivial-rewrite), grouped
//! per `transport:nexthop` up to `<transport>_destination_recipient_limit`,
//! and delivered under a per-destination concurrency limit
//! (`<transport>_destination_concurrency_limit`).  Outcomes are logged in
//! Postfix's `to=<…>, relay=…, delay=…, delays=a/b/c/d, dsn=…, status=…`
//! form; sent and bounced recipients are marked done in the file; bounced
//! ones produce one notification per attempt; deferred ones move the file
//! to `deferred` with mtime = now + clamp(age, minimal_backoff_time,
//! maximal_backoff_time), retried by the scan every `queue_run_delay`.

pub mod bounce;
pub mod connect;
pub mod lmtp;
pub mod local;
mod notice;
pub mod pipe;
pub mod resolve;

use crate::config::postfix::Params;
use crate::daemon::hub::conf::HubConf;
use crate::log::Logger;
use crate::queue::{Envelope, Queue, QueueName};
use lmtp::{Outcome, Reply, Timing};
use resolve::Dest;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

pub struct Qmgr {
    /// What `postfix reload` replaces.
    settings: crate::server::Reloadable<Settings>,
    queue: Arc<Queue>,
    log: Arc<Logger>,
    /// Delivery-agent loggers by master.cf command (`lmtp`, `error`, …).
    agents: Mutex<HashMap<String, Arc<Logger>>>,
    cache: lmtp::Cache,
    dests: Mutex<HashMap<Dest, Arc<Semaphore>>>,
    inflight: Mutex<HashSet<String>>,
    active: Arc<Semaphore>,
    /// Runs pipe(8) commands (as their `user=`).
    spawner: std::sync::OnceLock<Arc<crate::daemon::hub::spawn::Spawner>>,
}

/// The queue manager's configuration, replaced as a whole on reload
/// (work in progress keeps the snapshot it started with).
pub struct Settings {
    conf: HubConf,
    params: Params,
    bounce_size_limit: usize,
    /// `transport_maps`, opened once (an unusable table defers mail).
    transport_maps: Result<crate::tables::Maps, String>,
    /// cleanup's rewriting (for forwarded mail) and local(8)'s aliases.
    cleanup: Arc<crate::daemon::hub::cleanup::Rewriter>,
    /// Delivery status notification settings.
    notices: notice::NoticeConf,
    /// `lmtp_assume_final`: an LMTP server without DSN delivers finally.
    lmtp_assume_final: bool,
    /// The SMTP/LMTP client settings per transport, with the service's
    /// master.cf `-o` overrides (a bad one defers that transport's mail).
    clients: Mutex<HashMap<String, Arc<Result<connect::ClientConf, String>>>>,
}

impl Settings {
    fn load(conf: HubConf, params: Params, cleanup: Arc<crate::daemon::hub::cleanup::Rewriter>, log: &Logger) -> Settings {
        let bounce_size_limit = params.get_int("bounce_size_limit", 1, 0).map(|n| n as usize).unwrap_or(50000);
        let specs: Vec<String> = crate::config::postfix::list::split_list(&params.get("transport_maps").unwrap_or_default())
            .into_iter()
            .map(str::to_string)
            .collect();
        let transport_maps = crate::tables::Maps::open(&specs).map_err(|e| {
            log.warning(&format!("transport_maps: {e}"));
            e.to_string()
        });
        let notices = notice::NoticeConf::load(&params, &conf.myorigin);
        let lmtp_assume_final = params.get_bool("lmtp_assume_final").unwrap_or(false);
        Settings {
            lmtp_assume_final,
            conf,
            params,
            bounce_size_limit,
            transport_maps,
            cleanup,
            notices,
            clients: Mutex::new(HashMap::new()),
        }
    }
}

/// Postfix's `format_tv`: two significant digits, at most two decimals.
pub fn fmt_delay(d: Duration) -> String {
    let v = d.as_secs_f64();
    if v < 0.005 {
        "0".into()
    } else if v < 1.0 {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else if v < 10.0 {
        let s = format!("{v:.1}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{}", v.round() as u64)
    }
}

fn since(t: i64, usec: u32) -> Duration {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    now.saturating_sub(Duration::new(t.max(0) as u64, usec * 1000))
}

struct Result1 {
    idx: usize,
    outcome: Outcome,
    relay: String,
    timing: Timing,
    /// When the agent started on this recipient (end of `b`).
    started: Instant,
    command: String,
    /// The next hop took the DSN requests (it reports success itself).
    dsn_passed: bool,
}

/// ` RET=… ENVID=…` of a message (sent to next hops that offer DSN).
fn mail_dsn(env: &Envelope) -> String {
    let mut s = String::new();
    if let Some(r) = env.attr("dsn_ret") {
        s.push_str(&format!(" RET={r}"));
    }
    if let Some(e) = env.attr("dsn_envid") {
        s.push_str(&format!(" ENVID={}", crate::proto::smtp::xtext_encode(e)));
    }
    s
}

/// What pipe(8) needs to know about the message beyond the envelope
/// addresses.
struct Info {
    qid: String,
    origs: Vec<String>,
    attrs: Vec<(String, String)>,
    arrival: i64,
}

/// ` ORCPT=type;xtext NOTIFY=…` of a recipient, in the order Postfix's
/// smtp(8) and lmtp(8) send them.
fn rcpt_dsn(r: &crate::queue::Recipient) -> String {
    let mut s = String::new();
    if let Some((t, a)) = r.orcpt.as_deref().and_then(|o| o.split_once(';')) {
        s.push_str(&format!(" ORCPT={t};{}", crate::proto::smtp::xtext_encode(a)));
    } else {
        // Without an ORCPT from the client, Postfix sends the original
        // recipient (before canonical and virtual mapping).
        let orig = r.orig.as_deref().unwrap_or(&r.addr);
        if !orig.is_empty() {
            let ext = crate::mail::addr_list::external(orig);
            s.push_str(&format!(" ORCPT=rfc822;{}", crate::proto::smtp::xtext_encode(&ext)));
        }
    }
    if let Some(n) = &r.notify {
        s.push_str(&format!(" NOTIFY={n}"));
    }
    s
}

impl Qmgr {
    pub fn new(
        conf: HubConf,
        params: Params,
        queue: Arc<Queue>,
        log: Arc<Logger>,
        cleanup: Arc<crate::daemon::hub::cleanup::Rewriter>,
    ) -> Arc<Qmgr> {
        let active = params
            .get_int("qmgr_message_active_limit", 1, 0)
            .map(|n| n as usize)
            .unwrap_or(20000);
        Arc::new(Qmgr {
            settings: crate::server::Reloadable::new(Settings::load(conf, params, cleanup, &log)),
            queue,
            log,
            agents: Mutex::new(HashMap::new()),
            cache: lmtp::Cache::default(),
            dests: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashSet::new()),
            active: Arc::new(Semaphore::new(active)),
            spawner: std::sync::OnceLock::new(),
        })
    }

    /// The current settings.
    fn s(&self) -> Arc<Settings> {
        self.settings.get()
    }

    /// `postfix reload`: new settings for what starts from now on;
    /// deliveries under way finish with the old ones.  Per-destination
    /// limits and cached connections start afresh.
    pub fn reload(&self, conf: HubConf, params: Params, cleanup: Arc<crate::daemon::hub::cleanup::Rewriter>) {
        let _ = self
            .settings
            .reload(|| Ok::<_, std::convert::Infallible>(Settings::load(conf, params, cleanup, &self.log)));
        self.dests.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.cache.clear();
    }

    fn agent_log(&self, command: &str) -> Arc<Logger> {
        let mut m = self.agents.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(command.to_string())
            .or_insert_with(|| Arc::new(self.log.for_service(command)))
            .clone()
    }

    /// Starts the scans: what a previous run left in incoming and active
    /// now, deferred mail every `queue_run_delay`; and the queue's spare
    /// files trimmed every minute.
    pub fn start(self: &Arc<Self>) {
        let q = self.queue.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(60)).await;
                let q = q.clone();
                let _ = tokio::task::spawn_blocking(move || q.trim_spares()).await;
            }
        });
        let me = self.clone();
        tokio::spawn(async move {
            for q in [QueueName::Active, QueueName::Incoming] {
                for (qid, _) in me.queue.list(q).unwrap_or_default() {
                    me.submit(qid, q, None);
                }
            }
            loop {
                me.scan_deferred(false);
                tokio::time::sleep(me.s().conf.queue_run_delay.max(Duration::from_secs(1))).await;
            }
        });
    }

    /// Takes what postsuper moved: complete files in incoming (not being
    /// received: those have temporary names) and deferred mail due now.
    pub fn rescan(self: &Arc<Self>) {
        for (qid, _) in self.queue.list(QueueName::Incoming).unwrap_or_default() {
            self.submit(qid, QueueName::Incoming, None);
        }
        self.scan_deferred(false);
    }

    /// Takes deferred messages whose time has come (all with `force`, as
    /// `postqueue -f`).
    pub fn scan_deferred(self: &Arc<Self>, force: bool) {
        let now = crate::util::unix_now();
        for (qid, mtime) in self.queue.list(QueueName::Deferred).unwrap_or_default() {
            if force || mtime <= now {
                self.submit(qid, QueueName::Deferred, None);
            }
        }
    }

    /// Hands a message to delivery (content given when smtpd has it).
    pub fn submit(self: &Arc<Self>, qid: String, from: QueueName, pre: Option<(Envelope, Arc<Vec<u8>>)>) {
        {
            let mut f = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            if !f.insert(qid.clone()) {
                return;
            }
        }
        let me = self.clone();
        tokio::spawn(async move {
            let Ok(_permit) = me.active.clone().acquire_owned().await else {
                return;
            };
            me.process(&qid, from, pre).await;
            me.inflight.lock().unwrap_or_else(|e| e.into_inner()).remove(&qid);
        });
    }

    fn dest_limit(&self, transport: &str) -> (usize, usize) {
        let settings = self.s();
        let get = |suffix: &str, d: usize| {
            settings
                .params
                .get(&format!("{transport}{suffix}"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .filter(|n| *n > 0)
                .unwrap_or(d)
        };
        (
            get("_destination_concurrency_limit", settings.conf.default_concurrency),
            get("_destination_recipient_limit", settings.conf.default_rcpt_limit),
        )
    }

    fn semaphore(&self, d: &Dest, limit: usize) -> Arc<Semaphore> {
        let mut m = self.dests.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(d.clone()).or_insert_with(|| Arc::new(Semaphore::new(limit))).clone()
    }

    async fn process(self: &Arc<Self>, qid: &str, from: QueueName, pre: Option<(Envelope, Arc<Vec<u8>>)>) {
        if from != QueueName::Active && self.queue.move_to(qid, from, QueueName::Active).is_err() {
            return; // removed meanwhile (postsuper -d)
        }
        let t_active = Instant::now();
        let (env, content) = match pre {
            Some(p) => p,
            None => {
                let q = self.queue.clone();
                let id = qid.to_string();
                match tokio::task::spawn_blocking(move || q.read(QueueName::Active, &id)).await {
                    Ok(Ok((e, c))) => (e, Arc::new(c)),
                    Ok(Err(e)) => {
                        self.log.warning(&format!("{qid}: {e}; moved to corrupt"));
                        let _ = self.queue.move_to(qid, QueueName::Active, QueueName::Corrupt);
                        return;
                    }
                    Err(_) => return,
                }
            }
        };
        let open: Vec<usize> = (0..env.rcpts.len()).filter(|&i| !env.rcpts[i].done).collect();
        self.log.info(&format!(
            "{qid}: from=<{}>, size={}, nrcpt={} (queue active)",
            env.sender,
            content.len(),
            env.rcpts.len()
        ));
        let before_qmgr = since(env.arrival.0, env.arrival.1).saturating_sub(t_active.elapsed());
        let mut groups: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
        let mut unresolved = Vec::new();
        let mut local_results = Vec::new();
        let settings = self.s();
        // content_filter / FILTER: every recipient goes to the filter
        // (transport:destination; no destination = the recipient's domain).
        let filter = env.attr("content_filter").filter(|f| !f.is_empty()).map(|f| {
            let (t, n) = f.split_once(':').unwrap_or((f, ""));
            (t.to_string(), n.to_string())
        });
        for &i in &open {
            if let Some((t, n)) = &filter {
                let n = if n.is_empty() {
                    resolve::split(&env.rcpts[i].addr).1
                } else {
                    n.clone()
                };
                groups.entry((t.clone(), n)).or_default().push(i);
                continue;
            }
            let resolved = match &settings.transport_maps {
                Ok(maps) => resolve::resolve_with(&settings.conf, maps, &env.rcpts[i].addr),
                Err(e) => Err(e.clone()),
            };
            match resolved {
                Ok(d) if self.command_of(&d.transport) == "local" => {
                    let started = Instant::now();
                    match self.local(qid, &env, &content, i).await {
                        local::Step::Pass(d) => groups.entry((d.transport, d.nexthop)).or_default().push(i),
                        local::Step::Done(outcome) => local_results.push(Result1 {
                            idx: i,
                            outcome,
                            relay: "local".into(),
                            timing: Timing::default(),
                            started,
                            command: "local".into(),
                            dsn_passed: false,
                        }),
                    }
                }
                Ok(d) => groups.entry((d.transport, d.nexthop)).or_default().push(i),
                Err(e) => {
                    self.log.warning(&format!("transport_maps lookup failure: {e}"));
                    unresolved.push(i);
                }
            }
        }
        let mut tasks = tokio::task::JoinSet::new();
        for ((transport, nexthop), idxs) in groups {
            let (conc, per) = self.dest_limit(&transport);
            for chunk in idxs.chunks(per) {
                let me = self.clone();
                let dest = Dest {
                    transport: transport.clone(),
                    nexthop: nexthop.clone(),
                };
                let chunk = chunk.to_vec();
                let rcpts: Vec<String> = chunk.iter().map(|&i| env.rcpts[i].addr.clone()).collect();
                let rcpt_dsn: Vec<String> = chunk.iter().map(|&i| rcpt_dsn(&env.rcpts[i])).collect();
                let mail_dsn = mail_dsn(&env);
                let sender = env.sender.clone();
                let content = content.clone();
                let info = Info {
                    qid: qid.to_string(),
                    origs: chunk
                        .iter()
                        .map(|&i| env.rcpts[i].orig.clone().unwrap_or_else(|| env.rcpts[i].addr.clone()))
                        .collect(),
                    attrs: env.attrs.clone(),
                    arrival: env.arrival.0,
                };
                let sem = self.semaphore(&dest, conc);
                tasks.spawn(async move {
                    let _p = sem.acquire_owned().await;
                    let started = Instant::now();
                    let (command, outcomes, relay, timing, dsn_passed) =
                        me.deliver(&dest, &sender, &rcpts, &content, &mail_dsn, &rcpt_dsn, &info).await;
                    chunk
                        .into_iter()
                        .zip(outcomes)
                        .map(|(idx, outcome)| Result1 {
                            idx,
                            outcome,
                            relay: relay.clone(),
                            timing,
                            started,
                            command: command.clone(),
                            dsn_passed,
                        })
                        .collect::<Vec<_>>()
                });
            }
        }
        let mut results: Vec<Result1> = unresolved
            .into_iter()
            .map(|idx| Result1 {
                idx,
                outcome: Outcome::Deferred(
                    Reply::local(451, "4.3.0", "address resolver failure"),
                    "address resolver failure".into(),
                ),
                relay: "none".into(),
                timing: Timing::default(),
                started: Instant::now(),
                command: "qmgr".into(),
                dsn_passed: false,
            })
            .collect();
        results.extend(local_results);
        while let Some(r) = tasks.join_next().await {
            if let Ok(v) = r {
                results.extend(v);
            }
        }
        self.finish(qid, env, content, results, t_active, before_qmgr).await;
    }

    /// The client settings of a transport: main.cf with the service's
    /// `-o` overrides, read once.
    fn client(&self, transport: &str, smtp: bool) -> Arc<Result<connect::ClientConf, String>> {
        let s = self.s();
        let mut m = s.clients.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(transport.to_string())
            .or_insert_with(|| {
                let mut p = s.params.clone();
                if let Some(svc) = s.params.master.find(transport, "unix") {
                    for (k, v) in svc.overrides() {
                        p.overrides.insert(k, v);
                    }
                }
                Arc::new(connect::ClientConf::load(&p, smtp, &s.conf.myhostname).map_err(|e| {
                    self.log.warning(&format!("transport {transport}: {e}"));
                    e
                }))
            })
            .clone()
    }

    /// The master.cf command of a transport (`lmtp`, `local`, …).
    fn command_of(&self, transport: &str) -> String {
        self.s()
            .params
            .master
            .find(transport, "unix")
            .map(|s| s.command().to_string())
            .unwrap_or_default()
    }

    pub fn set_spawner(&self, s: Arc<crate::daemon::hub::spawn::Spawner>) {
        let _ = self.spawner.set(s);
    }

    /// The hub's command spawner; without one (a hub that never had
    /// root), commands run in this process.
    fn spawner(&self) -> Arc<crate::daemon::hub::spawn::Spawner> {
        self.spawner
            .get_or_init(|| Arc::new(crate::daemon::hub::spawn::Spawner::start_unprivileged()))
            .clone()
    }

    /// Runs the transport's agent; (command, outcomes, relay, timing).
    #[allow(clippy::too_many_arguments)]
    async fn deliver(
        &self,
        dest: &Dest,
        sender: &str,
        rcpts: &[String],
        content: &[u8],
        mail_dsn: &str,
        rcpt_dsn: &[String],
        info: &Info,
    ) -> (String, Vec<Outcome>, String, Timing, bool) {
        let command = self.command_of(&dest.transport);
        let all = |o: Outcome| rcpts.iter().map(|_| o.clone()).collect::<Vec<_>>();
        // error:/retry: take "X.Y.Z text" or just text as their reason.
        let reason = |default_dsn: &str| -> (String, String) {
            let t = dest.nexthop.trim();
            match t.split_once(' ') {
                Some((d, rest)) if d.split('.').count() == 3 && d.chars().all(|c| c.is_ascii_digit() || c == '.') => {
                    (d.to_string(), rest.to_string())
                }
                _ if t.is_empty() => (default_dsn.to_string(), String::new()),
                _ => (default_dsn.to_string(), t.to_string()),
            }
        };
        match command.as_str() {
            "lmtp" | "smtp" => {
                let smtp = command == "smtp";
                let settings = self.s();
                let job = lmtp::Job {
                    smtp,
                    transport: &dest.transport,
                    nexthop: &dest.nexthop,
                    lhlo_name: if smtp {
                        &settings.conf.smtp_helo_name
                    } else {
                        &settings.conf.lmtp_lhlo_name
                    },
                    myhostname: &settings.conf.myhostname,
                    sender,
                    rcpts,
                    content,
                    mail_dsn,
                    rcpt_dsn,
                };
                let client = self.client(&dest.transport, smtp);
                let client = match client.as_ref() {
                    Ok(c) => c,
                    Err(e) => {
                        let o = Outcome::Deferred(Reply::local(450, "4.3.5", e.clone()), e.clone());
                        return (command, all(o), "none".into(), Timing::default(), false);
                    }
                };
                let d = lmtp::deliver(&self.cache, &job, client).await;
                let log = self.agent_log(&command);
                for n in &d.notes {
                    match n.strip_prefix("warning: ") {
                        Some(w) => log.warning(w),
                        None => log.info(n),
                    }
                }
                (command, d.outcomes, d.relay, d.timing, d.dsn_passed)
            }
            "error" => {
                let (dsn, text) = reason("5.0.0");
                let o = Outcome::Bounced(Reply::local(550, &dsn, &text), text.clone());
                (command, all(o), "none".into(), Timing::default(), false)
            }
            "retry" => {
                let (dsn, text) = reason("4.0.0");
                let o = Outcome::Deferred(Reply::local(450, &dsn, &text), text.clone());
                (command, all(o), "none".into(), Timing::default(), false)
            }
            "pipe" => {
                let settings = self.s();
                let started = Instant::now();
                let args: Vec<String> = settings
                    .params
                    .master
                    .find(&dest.transport, "unix")
                    .map(|s| s.argv[1..].to_vec())
                    .unwrap_or_default();
                let conf = match pipe::parse(&args) {
                    Ok(c) => c,
                    Err(e) => {
                        self.agent_log(&command).warning(&format!("{}: {e}", dest.transport));
                        let why = "mail transport unavailable".to_string();
                        let o = Outcome::Deferred(Reply::local(450, "4.3.0", &why), why);
                        return (command, all(o), dest.transport.clone(), Timing::default(), false);
                    }
                };
                let time_limit = settings
                    .params
                    .get_time(&format!("{}_time_limit", dest.transport))
                    .or_else(|_| settings.params.get_time("command_time_limit"))
                    .map(|d| d.as_secs())
                    .unwrap_or(1000);
                let env = crate::config::postfix::list::split_list(&settings.params.get("export_environment").unwrap_or_default())
                    .into_iter()
                    .filter_map(|n| match n.split_once('=') {
                        Some(_) => Some(n.to_string()),
                        None => std::env::var(n).ok().map(|v| format!("{n}={v}")),
                    })
                    .collect();
                let ctx = pipe::Ctx {
                    qid: &info.qid,
                    service: &dest.transport,
                    nexthop: &dest.nexthop,
                    sender,
                    rcpts,
                    origs: &info.origs,
                    attrs: &info.attrs,
                    arrival: info.arrival,
                    content,
                    time_limit,
                    delimiter: &settings.conf.recipient_delimiter,
                    env,
                };
                let o = pipe::deliver(&self.spawner(), &conf, &ctx).await;
                let timing = Timing {
                    xfer: started.elapsed(),
                    ..Timing::default()
                };
                (command, all(o), dest.transport.clone(), timing, false)
            }
            "discard" => {
                let text = if dest.nexthop.is_empty() {
                    "discarded".to_string()
                } else {
                    dest.nexthop.clone()
                };
                let o = Outcome::Sent(Reply::local(250, "2.0.0", &text));
                (command, all(o), "none".into(), Timing::default(), false)
            }
            _ => {
                let why = "mail transport unavailable".to_string();
                let o = Outcome::Deferred(Reply::local(450, "4.3.0", &why), why.clone());
                ("qmgr".into(), all(o), "none".into(), Timing::default(), false)
            }
        }
    }

    async fn finish(
        self: &Arc<Self>,
        qid: &str,
        env: Envelope,
        content: Arc<Vec<u8>>,
        results: Vec<Result1>,
        t_active: Instant,
        before_qmgr: Duration,
    ) {
        // One snapshot of the settings for the whole message.
        let settings = self.s();
        let age = since(env.arrival.0, env.arrival.1);
        let lifetime = if env.sender.is_empty() {
            settings.conf.bounce_queue_lifetime
        } else {
            settings.conf.maximal_queue_lifetime
        };
        let expired = age >= lifetime;
        let mut bounced: Vec<notice::Entry> = Vec::new();
        let mut deferred: Vec<notice::Entry> = Vec::new();
        let mut delivered: Vec<notice::Entry> = Vec::new();
        for r in results {
            let rc = &env.rcpts[r.idx];
            let in_qmgr = r.started.saturating_duration_since(t_active);
            let total = age;
            let delays = format!(
                "{}/{}/{}/{}",
                fmt_delay(before_qmgr),
                fmt_delay(in_qmgr),
                fmt_delay(r.timing.setup),
                fmt_delay(r.timing.xfer)
            );
            let log = self.agent_log(&r.command);
            let orig = match &rc.orig {
                Some(o) if *o != rc.addr => format!(", orig_to=<{o}>"),
                _ => String::new(),
            };
            let head = format!(
                "{qid}: to=<{}>{orig}, relay={}, delay={}, delays={delays}",
                rc.addr,
                r.relay,
                fmt_delay(total)
            );
            let mut outcome = r.outcome;
            if settings.conf.soft_bounce {
                if let Outcome::Bounced(rep, why) = outcome {
                    let mut rep = rep;
                    rep.dsn = format!("4{}", &rep.dsn[1..]);
                    outcome = Outcome::Deferred(rep, why);
                }
            }
            if expired {
                if let Outcome::Deferred(rep, why) = outcome {
                    outcome = Outcome::Bounced(rep, why);
                }
            }
            match outcome {
                Outcome::Sent(rep) => {
                    log.info(&format!("{head}, dsn={}, status=sent ({})", rep.dsn, rep.text));
                    let _ = self.queue.mark_done(QueueName::Active, qid, rc.offset);
                    // A next hop that took NOTIFY reports itself; one that
                    // did not gets "relayed" (LMTP too unless
                    // lmtp_assume_final), final agents "delivered".
                    if rc.notify.as_deref().is_some_and(|n| n.contains("SUCCESS")) && !r.dsn_passed {
                        let relayed = r.command == "smtp" || (r.command == "lmtp" && !settings.lmtp_assume_final);
                        delivered.push(notice::Entry {
                            idx: r.idx,
                            why: format!("delivery via {}: {}", r.relay, rep.text),
                            reply: rep,
                            action: if relayed { "relayed" } else { "delivered" },
                        });
                    }
                }
                Outcome::Deferred(rep, why) => {
                    log.info(&format!("{head}, dsn={}, status=deferred ({why})", rep.dsn));
                    deferred.push(notice::Entry {
                        idx: r.idx,
                        reply: rep,
                        why,
                        action: "delayed",
                    });
                }
                Outcome::Bounced(rep, why) => {
                    log.info(&format!("{head}, dsn={}, status=bounced ({why})", rep.dsn));
                    bounced.push(notice::Entry {
                        idx: r.idx,
                        reply: rep,
                        why,
                        action: "failed",
                    });
                }
            }
        }
        let done: Vec<usize> = bounced.iter().map(|e| e.idx).collect();
        let deferred_log: Vec<(usize, String)> = deferred.iter().map(|e| (e.idx, e.why.clone())).collect();
        self.notices(qid, &env, &content, bounced, delivered, deferred, age).await;
        let deferred = deferred_log;
        if !done.is_empty() {
            for i in &done {
                let _ = self.queue.mark_done(QueueName::Active, qid, env.rcpts[*i].offset);
            }
        }
        if deferred.is_empty() {
            if self.queue.remove(QueueName::Active, qid).is_ok() {
                self.log.info(&format!("{qid}: removed"));
            }
            let _ = std::fs::remove_file(self.queue.defer_log(qid));
            return;
        }
        let backoff = age.clamp(
            settings.conf.minimal_backoff,
            settings.conf.maximal_backoff.max(settings.conf.minimal_backoff),
        );
        let next = crate::util::unix_now() + backoff.as_secs() as i64;
        let log_text: String = deferred.iter().map(|(i, why)| format!("{}\t{why}\n", env.rcpts[*i].addr)).collect();
        let dl = self.queue.defer_log(qid);
        if let Some(p) = dl.parent() {
            let _ = std::fs::create_dir_all(p);
        }
        let _ = std::fs::write(&dl, log_text);
        match self.queue.move_to(qid, QueueName::Active, QueueName::Deferred) {
            Ok(_) => {
                let _ = self.queue.set_next_try(QueueName::Deferred, qid, next);
            }
            Err(e) => self.log.warning(&format!("{qid}: move to deferred: {}", crate::util::strerror(&e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_format() {
        let f = |s: f64| fmt_delay(Duration::from_secs_f64(s));
        assert_eq!(f(0.0), "0");
        assert_eq!(f(0.004), "0");
        assert_eq!(f(0.05), "0.05");
        assert_eq!(f(0.1), "0.1");
        assert_eq!(f(1.23), "1.2");
        assert_eq!(f(17.4), "17");
    }
}
