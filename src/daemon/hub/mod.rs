//! The hub: one process doing the work of Postfix's master and its
//! children — every `smtpd` service of master.cf as a listener with its
//! `-o` overrides, the queue manager and the delivery agents — over one
//! queue under `queue_directory`.  One process lets sessions share one
//! group commit and lets smtpd hand a message to qmgr without rereading it.

pub mod cleanup;
pub mod conf;
pub mod headers;
pub mod milter;
pub mod pickup;
pub mod showq;
pub mod spawn;

use crate::config::postfix::Params;
use crate::daemon::qmgr::Qmgr;
use crate::daemon::smtpd::Smtpd;
use crate::log::Logger;
use crate::queue::Queue;
use std::sync::Arc;

pub struct Hub {
    pub conf: conf::HubConf,
    pub cleanup: Arc<cleanup::Rewriter>,
    pub queue: Arc<Queue>,
    pub qmgr: Arc<Qmgr>,
    /// postscreen's temporary allowlist (all postscreen services; kept
    /// across reloads).
    pub screen_cache: Arc<crate::daemon::smtpd::postscreen::Cache>,
}

/// The port of a master.cf service name: `smtp`, `submission`, a number,
/// or a name from /etc/services.
fn port_of(name: &str) -> Option<u16> {
    if let Ok(n) = name.parse() {
        return Some(n);
    }
    let known = match name {
        "smtp" => Some(25),
        "submission" => Some(587),
        "submissions" | "smtps" => Some(465),
        "lmtp" => Some(24),
        _ => None,
    };
    if known.is_some() {
        return known;
    }
    let text = std::fs::read_to_string("/etc/services").ok()?;
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        let n = it.next()?;
        let pp = it.next()?;
        let (port, proto) = pp.split_once('/')?;
        (proto == "tcp" && (n == name || it.any(|a| a == name))).then(|| port.parse().ok())?
    })
}

/// The addresses an `inet` service listens on: `host:port` as written, or
/// the port on each of `inet_interfaces`.
pub fn listen_addrs(service: &str, inet_interfaces: &str) -> Result<Vec<String>, String> {
    let (host, port) = match service.rsplit_once(':') {
        Some((h, p)) => (Some(h.trim_start_matches('[').trim_end_matches(']').to_string()), p),
        None => (None, service),
    };
    let port = port_of(port).ok_or_else(|| format!("unknown service: {service}/tcp"))?;
    let hosts: Vec<String> = match host {
        Some(h) => vec![h],
        None => {
            let list = crate::config::postfix::list::split_list(inet_interfaces);
            if list.contains(&"all") {
                vec!["0.0.0.0".into()]
            } else {
                list.iter()
                    .map(|i| match *i {
                        "loopback-only" | "localhost" => "127.0.0.1".to_string(),
                        other => other.trim_start_matches('[').trim_end_matches(']').to_string(),
                    })
                    .collect()
            }
        }
    };
    Ok(hosts
        .into_iter()
        .map(|h| {
            if h.contains(':') {
                format!("[{h}]:{port}")
            } else {
                format!("{h}:{port}")
            }
        })
        .collect())
}

/// smtpd's TLS from `smtpd_tls_cert_file`/`smtpd_tls_key_file` (or
/// `smtpd_tls_chain_files`), when `smtpd_tls_security_level` is `may` or
/// `encrypt` (or the legacy `smtpd_use_tls = yes`).
/// The service's TLS server, with what its Received header says of the
/// server signature (`smtpd_tls_received_header`).
fn tls_config(p: &Params) -> Result<Option<(Arc<rustls::ServerConfig>, Option<String>)>, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    let level = p.get("smtpd_tls_security_level").unwrap_or_default();
    let legacy = p.get("smtpd_use_tls").as_deref() == Some("yes");
    if !(level == "may" || level == "encrypt" || (level.is_empty() && legacy)) {
        return Ok(None);
    }
    let chain = p.get("smtpd_tls_chain_files").unwrap_or_default();
    let (cert, key) = if !chain.trim().is_empty() {
        let files = crate::config::postfix::list::split_list(&chain)
            .into_iter()
            .map(str::to_string)
            .collect::<Vec<_>>();
        (
            files.first().cloned().unwrap_or_default(),
            files.first().cloned().unwrap_or_default(),
        )
    } else {
        let c = p.get("smtpd_tls_cert_file").unwrap_or_default();
        let k = p.get("smtpd_tls_key_file").filter(|k| !k.is_empty()).unwrap_or_else(|| c.clone());
        (c, k)
    };
    if cert.is_empty() {
        return Err("no server certificate: set smtpd_tls_cert_file".into());
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .map_err(|e| format!("cannot load certificate file {cert}: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot load certificate file {cert}: {e}"))?;
    let signature = certs.first().and_then(|c| crate::util::tls::server_signature(c));
    let key = PrivateKeyDer::from_pem_file(&key).map_err(|e| format!("cannot load private key file {key}: {e}"))?;
    // The mandatory list where TLS is required, the opportunistic one
    // elsewhere.
    let which = if level == "encrypt" || (level.is_empty() && p.get("smtpd_enforce_tls").as_deref() == Some("yes")) {
        "smtpd_tls_mandatory_protocols"
    } else {
        "smtpd_tls_protocols"
    };
    let versions = crate::util::tls::protocol_versions(&p.get(which).unwrap_or_default()).map_err(|e| format!("{which}: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("TLS: {e}"))?;
    Ok(Some((Arc::new(cfg), signature)))
}

/// Gives a directory tree to `uid:gid` (entries already theirs are skipped).
fn chown_tree(dir: &std::path::Path, uid: nix::unistd::Uid, gid: nix::unistd::Gid) {
    use std::os::unix::fs::MetadataExt;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        if let Ok(m) = std::fs::symlink_metadata(&d) {
            if m.uid() != uid.as_raw() {
                let _ = nix::unistd::chown(&d, Some(uid), Some(gid));
            }
            if m.is_dir() {
                if let Ok(rd) = std::fs::read_dir(&d) {
                    todo.extend(rd.flatten().map(|e| e.path()));
                }
            }
        }
    }
}

/// One smtpd service of master.cf, ready to serve.
struct SmtpdService {
    name: String,
    addrs: Vec<String>,
    maxproc: usize,
    smtpd: Smtpd,
}

/// Everything the hub serves, built from one configuration (at start and
/// on reload).
struct Services {
    smtpd: Vec<SmtpdService>,
    showq: showq::Showq,
    pickup: pickup::Pickup,
    local: Smtpd,
}

/// How loggers are made: from main.cf at start; from the running logger
/// on reload (the process no longer has root to open the log again).
type MakeLog<'a> = &'a dyn Fn(&Params, &str) -> Result<Logger, String>;

/// One SMTP listener: on `listen`'s address (an `inet` service of
/// master.cf), run as `svc` (that service, or the `pass` service a
/// postscreen hands its clients to), with `svc`'s `-o` settings.
fn smtpd_service(
    params: &Params,
    listen: &crate::config::postfix::master_cf::Service,
    svc: &crate::config::postfix::master_cf::Service,
    hub: &Arc<Hub>,
    mklog: MakeLog<'_>,
) -> Result<SmtpdService, String> {
    let mut sp = params.clone();
    for (k, v) in svc.overrides() {
        sp.overrides.insert(k, v);
    }
    let sconf = conf::SmtpdConf::load(&sp, &svc.name).map_err(|e| e.to_string())?;
    if !crate::daemon::smtpd::check::Checker::has_relay_control(&sconf) {
        return Err("in parameter smtpd_relay_restrictions or smtpd_recipient_restrictions, specify at least one working instance of: reject_unauth_destination, defer_unauth_destination, reject, defer, defer_if_permit or check_relay_domains".into());
    }
    let (tls, signature) = tls_config(&sp)?.unzip();
    let log = Arc::new(mklog(&sp, "smtpd")?);
    let clog = Arc::new(mklog(&sp, "cleanup")?);
    let sasl_path = crate::daemon::smtpd::saslauthd_path(&sp);
    let gssapi = sconf.sasl_auth_enable && crate::daemon::smtpd::sasl_gssapi(&sp)?;
    let addrs = listen_addrs(&listen.name, &sp.get("inet_interfaces").unwrap_or_default())?;
    let maxproc = match svc.maxproc.as_str() {
        "-" => sp.get_int("default_process_limit", 0, 0).unwrap_or(100) as usize,
        n => n.parse().unwrap_or(100),
    };
    let mut smtpd = Smtpd::new(hub.clone(), sconf, log, clog, tls, sasl_path, gssapi)?;
    smtpd.tls_signature = signature.flatten();
    Ok(SmtpdService {
        name: listen.name.clone(),
        addrs,
        maxproc,
        smtpd,
    })
}

fn build_services(params: &Params, hub: &Arc<Hub>, mklog: MakeLog<'_>) -> Result<Services, String> {
    let mut smtpd = Vec::new();
    for s in params.master.services.iter().filter(|s| s.kind == "inet") {
        match s.command() {
            "smtpd" => smtpd.push(smtpd_service(params, s, s, hub, mklog)?),
            // postscreen(8) in front of smtpd (`smtp inet ... postscreen`
            // and `smtpd pass ... smtpd`): each client is screened
            // (daemon::smtpd::postscreen), then served with the pass
            // service's settings.
            "postscreen" => {
                let mut pp = params.clone();
                for (k, v) in s.overrides() {
                    pp.overrides.insert(k, v);
                }
                let pass_name = pp.get("smtpd_service_name").unwrap_or_else(|| "smtpd".into());
                let plog = mklog(&pp, "postscreen")?;
                match params.master.services.iter().find(|p| p.kind == "pass" && p.name == pass_name) {
                    Some(pass) => {
                        // postscreen's up-stream proxy header is read
                        // before the screening, as postscreen reads it.
                        let mut sp = params.clone();
                        let proto = pp.get("postscreen_upstream_proxy_protocol").unwrap_or_default();
                        if !proto.trim().is_empty() {
                            let limit = pp.get("postscreen_upstream_proxy_timeout").unwrap_or_else(|| "5s".into());
                            sp.overrides.insert("smtpd_upstream_proxy_protocol".into(), proto);
                            sp.overrides.insert("smtpd_upstream_proxy_timeout".into(), limit);
                        }
                        let sconf = crate::daemon::smtpd::postscreen::ScreenConf::load(&pp)?;
                        let mut svc = smtpd_service(&sp, s, pass, hub, mklog)?;
                        let screen = crate::daemon::smtpd::postscreen::Screen::new(sconf, Arc::new(plog), hub.clone(), svc.maxproc);
                        // The listener holds clients in the tests and
                        // waiting for smtpd too; the pass service's limit
                        // is kept by the screen.
                        svc.maxproc = screen.connection_limit();
                        svc.smtpd.screen = Some(Arc::new(screen));
                        smtpd.push(svc);
                    }
                    None => plog.warning(&format!(
                        "service {}: no pass service \"{pass_name}\" in master.cf: not served",
                        s.name
                    )),
                }
            }
            _ => {}
        }
    }
    let showq = showq::Showq {
        hub: hub.clone(),
        empty_sender: params.get("empty_address_recipient").unwrap_or_else(|| "MAILER-DAEMON".into()),
    };
    let pickup = pickup::Pickup {
        hub: hub.clone(),
        log: Arc::new(mklog(params, "pickup")?),
        cleanup_log: Arc::new(mklog(params, "cleanup")?),
        message_size_limit: params.get_int("message_size_limit", 0, 0).unwrap_or(10_240_000) as usize,
        content_filter: params.get("content_filter").unwrap_or_default().trim().to_string(),
        milters: milter::MilterConf::load(params, "non_smtpd_milters")
            .map_err(|e| e.to_string())?
            .map(Arc::new),
    };
    let local = local_smtpd(params, hub.clone(), mklog)?;
    Ok(Services {
        smtpd,
        showq,
        pickup,
        local,
    })
}

/// The SMTP server behind `sendmail -bs`: main.cf's settings with every
/// restriction list permitting, no unlisted-recipient check, no TLS or
/// AUTH (the user is known from the socket).
fn local_smtpd(params: &Params, hub: Arc<Hub>, mklog: MakeLog<'_>) -> Result<Smtpd, String> {
    let mut sp = params.clone();
    for (k, v) in [
        ("smtpd_client_restrictions", ""),
        ("smtpd_helo_restrictions", ""),
        ("smtpd_sender_restrictions", ""),
        ("smtpd_relay_restrictions", "permit"),
        ("smtpd_recipient_restrictions", "permit"),
        ("smtpd_data_restrictions", ""),
        ("smtpd_reject_unlisted_recipient", "no"),
        ("smtpd_tls_security_level", "none"),
        ("smtpd_use_tls", "no"),
        ("smtpd_enforce_tls", "no"),
        ("smtpd_tls_wrappermode", "no"),
        ("smtpd_sasl_auth_enable", "no"),
        ("smtpd_client_connection_count_limit", "0"),
        ("smtpd_client_connection_rate_limit", "0"),
        ("smtpd_client_message_rate_limit", "0"),
        ("smtpd_client_recipient_rate_limit", "0"),
    ] {
        sp.overrides.insert(k.to_string(), v.to_string());
    }
    let sconf = conf::SmtpdConf::load(&sp, "sendmail").map_err(|e| e.to_string())?;
    let log = Arc::new(mklog(&sp, "smtpd")?);
    let clog = Arc::new(mklog(&sp, "cleanup")?);
    Smtpd::new(hub, sconf, log, clog, None, String::new(), false)
}

struct Args {
    config: Option<String>,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let (opts, rest) = crate::util::getopt::getopt(args, "c:dDe:istvw").map_err(|e| format!("{e:?}"))?;
    if !rest.is_empty() {
        return Err("usage: postfix-master [-Ddiostvw] [-c config_dir] [-e exit_time]".into());
    }
    let mut a = Args { config: None };
    for o in opts {
        if let crate::util::getopt::Opt::Arg('c', v) = o {
            a.config = Some(v);
        }
    }
    Ok(a)
}

/// `postfix-master`'s main: load main.cf/master.cf, recover the queue,
/// start qmgr and every smtpd service; run until SIGTERM.  The process
/// stays in the foreground (`postfix start` puts it in the background).
pub fn main(args: &[String]) -> i32 {
    if std::env::var_os(spawn::HELPER_ENV).is_some() {
        return spawn::helper_main();
    }
    let a = match parse_args(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("postfix-master: fatal: {e}");
            return crate::util::exit::USAGE;
        }
    };
    let (dir, explicit) = crate::config::postfix::config_directory(a.config.as_deref());
    let params = match Params::load(&dir, explicit) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("postfix-master: fatal: {e}");
            return crate::util::exit::CONFIG;
        }
    };
    let master_log = match Logger::for_postfix(&params, "master") {
        Ok(l) => Arc::new(l),
        Err(e) => {
            eprintln!("postfix-master: fatal: {e}");
            return crate::util::exit::CONFIG;
        }
    };
    crate::log::install_panic_hook(master_log.clone());
    // Table warnings (skipped rules) are logged by the daemon that reads
    // the table, as Postfix's are; tables are mostly read by smtpd here.
    if let Ok(tl) = Logger::for_postfix(&params, "smtpd") {
        crate::tables::set_warning_sink(Box::new(move |w| tl.warning(w)));
    }
    let ml = master_log.clone();
    let fatal = move |e: String| -> i32 {
        ml.fatal(&e);
        eprintln!("postfix-master: fatal: {e}");
        crate::util::exit::CONFIG
    };
    let hconf = match conf::HubConf::load(&params) {
        Ok(c) => c,
        Err(e) => return fatal(e.to_string()),
    };
    let rewriter = match cleanup::Rewriter::load(&params, &hconf) {
        Ok(r) => Arc::new(r),
        Err(e) => return fatal(e),
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(64)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fatal(e.to_string()),
    };
    rt.block_on(async move {
        let qdir = std::path::PathBuf::from(&hconf.queue_directory);
        let (queue, rec) = match Queue::open(&qdir, hconf.hash_queue_depth) {
            Ok(q) => q,
            Err(e) => return fatal(format!("queue directory {}: {e}", qdir.display())),
        };
        if rec.restored > 0 {
            master_log.warning(&format!("recovered {} queue file(s) from the journal", rec.restored));
        }
        let queue = Arc::new(queue);
        let qlog = match Logger::for_postfix(&params, "qmgr") {
            Ok(l) => Arc::new(l),
            Err(e) => return fatal(e),
        };
        let qmgr = Qmgr::new(hconf.clone(), params.clone(), queue.clone(), qlog, rewriter.clone());
        let hub = Arc::new(Hub {
            conf: hconf.clone(),
            cleanup: rewriter,
            queue: queue.clone(),
            qmgr: qmgr.clone(),
            screen_cache: Default::default(),
        });
        let built = match build_services(&params, &hub, &|p: &Params, s: &str| Logger::for_postfix(p, s)) {
            Ok(b) => b,
            Err(e) => return fatal(e),
        };
        let (sd, rx) = crate::server::Shutdown::new();
        let mut servers = Vec::new();
        let mut slots: Vec<(String, Arc<crate::server::Swappable<Smtpd>>)> = Vec::new();
        for svc in built.smtpd {
            let mut listeners = Vec::new();
            for addr in &svc.addrs {
                match crate::server::Listener::bind_tcp(addr).await {
                    Ok(l) => listeners.push(l),
                    Err(e) => return fatal(format!("bind {addr} port {}: {}", svc.name, crate::util::strerror(&e))),
                }
            }
            let limits = crate::server::Limits {
                max_conns: svc.maxproc,
                ..Default::default()
            };
            let slot = Arc::new(crate::server::Swappable::new(svc.smtpd));
            slots.push((svc.name.clone(), slot.clone()));
            servers.push(tokio::spawn(crate::server::run(listeners, slot, limits, rx.clone())));
        }
        let _ = std::fs::create_dir_all(qdir.join("pid"));
        // public/showq for postqueue, mailq and postsuper; public/pickup
        // for sendmail; public/smtpd for `sendmail -bs`.
        let public = qdir.join("public");
        let _ = std::fs::create_dir_all(&public);
        let _ = std::fs::set_permissions(&public, std::os::unix::fs::PermissionsExt::from_mode(0o755));
        let showq = Arc::new(crate::server::Swappable::new(built.showq));
        let pickup = Arc::new(crate::server::Swappable::new(built.pickup));
        let local = Arc::new(crate::server::Swappable::new(built.local));
        for (name, sock) in [("showq", 0), ("pickup", 1), ("smtpd", 2)] {
            let path = public.join(name);
            let l = match crate::server::Listener::bind_unix(&path, 0o666) {
                Ok(l) => l,
                Err(e) => return fatal(format!("bind {}: {}", path.display(), crate::util::strerror(&e))),
            };
            let lim = crate::server::Limits::default();
            servers.push(match sock {
                0 => tokio::spawn(crate::server::run(vec![l], showq.clone(), lim, rx.clone())),
                1 => tokio::spawn(crate::server::run(vec![l], pickup.clone(), lim, rx.clone())),
                _ => tokio::spawn(crate::server::run(vec![l], local.clone(), lim, rx.clone())),
            });
        }
        // pipe(8)'s user= needs a helper that keeps root.
        qmgr.set_spawner(Arc::new(spawn::Spawner::start()));
        // Privileged ports are bound: drop to mail_owner when root, after
        // giving it the queue (postfix-script's set-permissions).
        if nix::unistd::geteuid().is_root() {
            let owner = params.get("mail_owner").unwrap_or_else(|| "postfix".into());
            if let Ok(Some(u)) = nix::unistd::User::from_name(&owner) {
                chown_tree(&qdir, u.uid, u.gid);
            }
            if let Err(e) = crate::server::privs::drop_to(&owner) {
                return fatal(format!("mail_owner {owner}: {e}"));
            }
        }
        qmgr.start();
        // Written last: `postfix start` and systemd take it as "ready".
        let _pid = crate::server::PidFile::create(&qdir.join("pid/master.pid"));
        master_log.info("daemon started -- version mumail");
        // SIGHUP (`postfix reload`): main.cf, master.cf and the tables are
        // read again; new sessions and deliveries use them.
        let reload = || {
            let params = match Params::load(&dir, explicit) {
                Ok(p) => p,
                Err(e) => {
                    master_log.warning(&format!("reload failed, keeping the running configuration: {e}"));
                    return;
                }
            };
            let hconf = match conf::HubConf::load(&params) {
                Ok(c) => c,
                Err(e) => {
                    master_log.warning(&format!("reload failed, keeping the running configuration: {e}"));
                    return;
                }
            };
            let rewriter = match cleanup::Rewriter::load(&params, &hconf) {
                Ok(r) => Arc::new(r),
                Err(e) => {
                    master_log.warning(&format!("reload failed, keeping the running configuration: {e}"));
                    return;
                }
            };
            let new_hub = Arc::new(Hub {
                conf: hconf.clone(),
                cleanup: rewriter.clone(),
                queue: queue.clone(),
                qmgr: qmgr.clone(),
                screen_cache: hub.screen_cache.clone(),
            });
            let b = match build_services(&params, &new_hub, &|_: &Params, s: &str| Ok(master_log.for_service(s))) {
                Ok(b) => b,
                Err(e) => {
                    master_log.warning(&format!("reload failed, keeping the running configuration: {e}"));
                    return;
                }
            };
            qmgr.reload(hconf, params, rewriter);
            for svc in b.smtpd {
                match slots.iter().find(|(n, _)| *n == svc.name) {
                    Some((_, slot)) => slot.set(svc.smtpd),
                    None => master_log.warning(&format!("service {}: new in master.cf; it is served after a restart", svc.name)),
                }
            }
            showq.set(b.showq);
            pickup.set(b.pickup);
            local.set(b.local);
            master_log.info(&format!("reload -- version mumail, configuration {dir}"));
        };
        crate::server::signals(reload).await;
        sd.trigger();
        for s in servers {
            let _ = s.await;
        }
        let _ = hub.queue.flush().await;
        master_log.info("terminating on signal 15");
        0
    })
}
