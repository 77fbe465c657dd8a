//! What the Cyrus-side daemons (imapd, lmtpd) share: reading imapd.conf
//! for the running service, the store, the logger, session ids, admins,
//! password checks through `sasl_pwcheck_method`, and the listeners.

use crate::config::cyrus::ImapdConf;
use crate::log::Logger;
use crate::mail::Secret;
use crate::store::{Store, StoreConfig};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub struct Ctx {
    pub conf: ImapdConf,
    pub store: Arc<Store>,
    pub log: Arc<Logger>,
    pub servername: String,
    /// The SASL service name (`imap`, `lmtp`, `pop`): saslauthd's service
    /// field, hence the PAM service.
    pub sasl_service: String,
    /// TLS from `tls_server_cert`/`tls_server_key` (None when unset).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// GSSAPI is offered: a keytab is readable (`sasl_keytab`,
    /// `KRB5_KTNAME`, /etc/krb5.keytab) and `sasl_mech_list` allows it.
    pub gssapi: bool,
    /// `auth_mech: pts` with `pts_module: ldap`: group membership from
    /// the directory (None: the system's groups).
    pub pts: Option<Arc<crate::auth::pts::Pts>>,
    /// imapd's SORT/THREAD keys, shared by its sessions.
    pub sort_cache: super::imapd::sortcache::SortCache,
    /// Logged-in sessions, for `maxlogins_per_user` and `_per_host`.
    pub logins: Logins,
    /// The bounds on an IMAP command as read (`maxliteral`, `maxword`,
    /// `maxquoted`, `maxargssize`, `literalminus`, `maxmessagesize`).
    pub limits: super::imapd::io::CommandLimits,
    /// Read once from imapd.conf, for the paths that ask per command or
    /// per mailbox: `implicit_owner_rights` (canonical), `serverinfo`,
    /// `readonly`, `disconnect_on_vanished_mailbox`.
    pub implicit_rights: String,
    pub server_info: ServerInfo,
    pub readonly: bool,
    pub disconnect_on_vanished: bool,
    sessions: AtomicU64,
    started: u64,
}

/// The sessions of this daemon that are logged in, per user and per
/// client host, as Cyrus counts its processes for `maxlogins_per_user`
/// and `maxlogins_per_host` (each service apart: imapd's sessions do
/// not count against pop3d's).
#[derive(Default)]
pub struct Logins(Arc<std::sync::Mutex<LoginCounts>>);

#[derive(Default)]
pub struct LoginCounts {
    users: std::collections::HashMap<String, usize>,
    hosts: std::collections::HashMap<String, usize>,
}

/// A logged-in session's place in `Logins`, given back when dropped.
pub struct LoginSlot {
    counts: Arc<std::sync::Mutex<LoginCounts>>,
    user: String,
    host: String,
}

impl Logins {
    /// Counts `user`'s login from `host`, unless the sessions already
    /// logged in reach a limit: then Cyrus's words for the refusal, which
    /// go inside "Too many open connections (...)".
    pub fn admit(&self, conf: &ImapdConf, user: &str, host: &str) -> Result<LoginSlot, String> {
        let (max_user, max_host) = (conf.get_int("maxlogins_per_user"), conf.get_int("maxlogins_per_host"));
        let mut c = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (n_user, n_host) = (c.users.get(user).copied().unwrap_or(0), c.hosts.get(host).copied().unwrap_or(0));
        let over = |n: usize, max: i64| max > 0 && n as i64 >= max;
        if over(n_host, max_host) || over(n_user, max_user) {
            let mut parts = Vec::new();
            if max_host > 0 {
                parts.push(format!("{n_host} of {max_host} from {host}"));
            }
            if max_user > 0 {
                parts.push(format!("{n_user} of {max_user} for {user}"));
            }
            return Err(parts.join(", "));
        }
        *c.users.entry(user.to_string()).or_default() += 1;
        *c.hosts.entry(host.to_string()).or_default() += 1;
        Ok(LoginSlot {
            counts: self.0.clone(),
            user: user.to_string(),
            host: host.to_string(),
        })
    }
}

impl Drop for LoginSlot {
    fn drop(&mut self) {
        let mut guard = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let c = &mut *guard;
        for (map, key) in [(&mut c.users, &self.user), (&mut c.hosts, &self.host)] {
            if let Some(n) = map.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    map.remove(key);
                }
            }
        }
    }
}

/// Command-line options common to the store daemons: `-C imapd.conf`
/// (Cyrus), `-L listen` (ours, for running without master; repeatable).
pub struct Args {
    pub config: String,
    pub listen: Vec<String>,
    /// `-s`: implicit TLS (imaps).
    pub tls: bool,
    /// `-a` (lmtpd): TCP connections are pre-authorised.
    pub preauth: bool,
}

/// The options every store and proxy daemon takes.
pub const USAGE: &str = "[-C alt_config] [-U uses] [-T timeout] [-D debug] [-s] [-a] [-L listen]... [-h]";

/// Parses a store daemon's options; `-h` prints the usage line and exits.
pub fn parse_args(args: &[String]) -> Result<Args, String> {
    use crate::util::getopt::{GetoptError, Opt};
    let prog = std::env::args()
        .next()
        .map(|a| a.rsplit('/').next().unwrap_or("").to_string())
        .unwrap_or_default();
    let (opts, _rest) = crate::util::getopt::getopt(args, "C:L:U:T:D:sah").map_err(|e| match e {
        GetoptError::Unknown(c) => format!("illegal option -- {c}\nusage: {prog} {USAGE}"),
        GetoptError::MissingArg(c) => format!("option requires an argument -- {c}\nusage: {prog} {USAGE}"),
    })?;
    if opts.contains(&Opt::Flag('h')) {
        println!("usage: {prog} {USAGE}");
        std::process::exit(0);
    }
    let mut a = Args {
        config: std::env::var("CYRUS_PREFIX")
            .map(|p| format!("{p}/etc/imapd.conf"))
            .unwrap_or_else(|_| "/etc/imapd.conf".into()),
        listen: Vec::new(),
        tls: false,
        preauth: false,
    };
    for o in opts {
        match o {
            Opt::Arg('C', v) => a.config = v,
            Opt::Arg('L', v) => a.listen.push(v),
            Opt::Flag('s') => a.tls = true,
            Opt::Flag('a') => a.preauth = true,
            _ => {}
        }
    }
    Ok(a)
}

/// Whether to offer GSSAPI, registering the keytab with the library.
pub fn gssapi_setup(conf: &ImapdConf, log: &Logger) -> bool {
    let listed = conf
        .overflow("sasl_mech_list")
        .is_none_or(|l| l.split_whitespace().any(|m| m.eq_ignore_ascii_case("GSSAPI")));
    if !listed || !cfg!(feature = "krb5") {
        return false;
    }
    #[cfg(feature = "krb5")]
    if let Some(k) = crate::auth::gssapi::server_keytab(conf.overflow("sasl_keytab").unwrap_or("")) {
        match crate::auth::gssapi::use_keytab(&k) {
            Ok(()) => return true,
            Err(e) => log.warning(&format!("GSSAPI: {e}")),
        }
    }
    let _ = log;
    false
}

/// A GSSAPI client principal as the login name (`loginrealms`).
#[cfg(feature = "krb5")]
pub fn gssapi_user(conf: &ImapdConf, principal: &str) -> Result<String, String> {
    crate::auth::gssapi::principal_to_user(
        principal,
        crate::auth::gssapi::default_realm().as_deref(),
        conf.get("loginrealms").unwrap_or(""),
    )
}

/// A refused GSSAPI login: the `badlogin` line (`why` in brackets), then
/// `failedloginpause`, before the caller's refusal.
#[cfg(feature = "krb5")]
pub async fn gssapi_refused(conf: &ImapdConf, log: &Logger, host: &str, why: &str) {
    log.info(&format!("badlogin: {host} GSSAPI [{why}]"));
    tokio::time::sleep(conf.failed_login_pause()).await;
}

/// The user a GSSAPI client principal logs in as (`gssapi_user`); None
/// once the refusal is logged (`gssapi_refused`).
#[cfg(feature = "krb5")]
pub async fn gssapi_login_user(conf: &ImapdConf, log: &Logger, host: &str, principal: &str) -> Option<String> {
    match gssapi_user(conf, principal) {
        Ok(u) => Some(u),
        Err(e) => {
            gssapi_refused(conf, log, host, &e).await;
            None
        }
    }
}

impl Ctx {
    /// Loads imapd.conf as service `ident` (`CYRUS_SERVICE` when master
    /// starts us) and opens the store.
    pub fn load(config: &str, ident: &str, sasl_service: &str) -> Result<Ctx, String> {
        let ident = std::env::var("CYRUS_SERVICE").unwrap_or_else(|_| ident.to_string());
        let conf = ImapdConf::load(config, Some(&ident)).map_err(|e| e.to_string())?;
        conf.apply_umask();
        let log = Arc::new(Logger::for_cyrus(&conf, &ident)?);
        for w in conf.warnings.iter().chain(conf.status_warnings().iter()) {
            log.warning(w);
        }
        let sc = StoreConfig::from_imapd(&conf)?;
        if sc.partitions.is_empty() {
            return Err(format!("{config}: no partition-* option is set"));
        }
        let store = Arc::new(Store::open(sc).map_err(|e| e.to_string())?);
        // A Murder back end tells the MUPDATE master of every change.
        if super::mupdate::push::is_backend(&conf) {
            let p = super::mupdate::push::Pusher::start(&conf, log.clone())?;
            store.set_directory(Arc::new(p));
        }
        let servername = servername(&conf);
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let tls = tls_config(&conf)?;
        let gssapi = gssapi_setup(&conf, &log);
        let pts = crate::auth::pts::from_conf(&conf)?.map(Arc::new);
        let append = match conf.get_int("maxmessagesize") {
            n if n > 0 => n as u64,
            _ => super::imapd::DEFAULT_APPEND_MAX,
        };
        let limits = super::imapd::io::CommandLimits::from_conf(&conf, append);
        let implicit_rights = super::imapd::mailboxes::canonical_rights(conf.get("implicit_owner_rights").unwrap_or("lkxan"))
            .unwrap_or_else(|_| "lkxcan".into());
        Ok(Ctx {
            limits,
            implicit_rights,
            server_info: ServerInfo::of(&conf),
            readonly: conf.get_switch("readonly"),
            disconnect_on_vanished: conf.get_switch("disconnect_on_vanished_mailbox"),
            tls,
            gssapi,
            pts,
            conf,
            store,
            log,
            servername,
            sasl_service: sasl_service.to_string(),
            sort_cache: Default::default(),
            logins: Logins::default(),
            sessions: AtomicU64::new(0),
            started,
        })
    }

    /// Cyrus's `SESSIONID=<servername-pid-time-counter-random>` value.
    pub fn session_id(&self) -> String {
        use ring::rand::SecureRandom;
        let n = self.sessions.fetch_add(1, Ordering::Relaxed) + 1;
        let mut r = [0u8; 8];
        let _ = ring::rand::SystemRandom::new().fill(&mut r);
        format!(
            "{}-{}-{}-{n}-{}",
            self.servername,
            self.started,
            std::process::id(),
            u64::from_be_bytes(r)
        )
    }

    /// A user's groups as ACL identifiers (`group:staff`): from the
    /// directory under `auth_mech: pts` (cached; `Err` when it cannot be
    /// reached and nothing is cached — a temporary failure), else the
    /// system's groups.
    pub async fn groups(self: &Arc<Self>, user: &str) -> Result<Vec<String>, String> {
        if let Some(p) = &self.pts {
            return match p.groups(user).await {
                Ok((g, None)) => Ok(g),
                Ok((g, Some(why))) => {
                    self.log
                        .warning(&format!("ptload(): groups of {user}: {why}; using the expired cached list"));
                    Ok(g)
                }
                Err(why) => {
                    self.log.error(&format!("ptload(): groups of {user}: {why}"));
                    Err(why)
                }
            };
        }
        let (ctx, who) = (self.clone(), user.to_string());
        Ok(tokio::task::spawn_blocking(move || ctx.unix_groups(&who)).await.unwrap_or_default())
    }

    /// `autocreate_users`: whether `user`'s INBOX may be created for them
    /// (at login, or at delivery with `autocreate_post`): `anyone` (the
    /// default), the user, or one of the user's `group:` identifiers —
    /// from the directory under `auth_mech: pts`, so that only the
    /// directory's mail users get a mailbox.  `Err`: the directory cannot
    /// be asked now.
    pub async fn autocreate_allowed(self: &Arc<Self>, user: &str) -> Result<bool, String> {
        let list = self.conf.get("autocreate_users").unwrap_or("anyone");
        let ids: Vec<&str> = list.split_whitespace().collect();
        if ids.is_empty() || ids.iter().any(|i| i.eq_ignore_ascii_case("anyone")) || ids.contains(&user) {
            return Ok(true);
        }
        if !ids.iter().any(|i| i.starts_with("group:")) {
            return Ok(false);
        }
        let groups = self.groups(user).await?;
        Ok(ids.iter().any(|i| groups.iter().any(|g| g.eq_ignore_ascii_case(i))))
    }

    /// Whether `group:NAME` may appear in an ACL: a directory group under
    /// `auth_mech: pts`, else a system group with `unix_group_enable`.
    pub async fn group_exists(&self, name: &str) -> Result<bool, String> {
        if let Some(p) = &self.pts {
            return p.group_exists(name).await.inspect_err(|why| {
                self.log.error(&format!("ptload(): group:{name}: {why}"));
            });
        }
        if !self.conf.get_switch("unix_group_enable") {
            return Ok(false);
        }
        let g = name.to_string();
        Ok(
            tokio::task::spawn_blocking(move || matches!(nix::unistd::Group::from_name(&g), Ok(Some(_))))
                .await
                .unwrap_or(false),
        )
    }

    /// A user's groups as auth_unix finds them (primary and supplementary
    /// groups of the system account); none when `unix_group_enable` is off
    /// or the user has no account.  Blocking (NSS).
    fn unix_groups(&self, user: &str) -> Vec<String> {
        if !self.conf.get_switch("unix_group_enable") {
            return Vec::new();
        }
        let Ok(Some(u)) = nix::unistd::User::from_name(user) else {
            return Vec::new();
        };
        let Ok(name) = std::ffi::CString::new(user) else {
            return Vec::new();
        };
        let gids = nix::unistd::getgrouplist(&name, u.gid).unwrap_or_else(|_| vec![u.gid]);
        let mut out: Vec<String> = gids
            .into_iter()
            .filter_map(|g| nix::unistd::Group::from_gid(g).ok().flatten())
            .map(|g| format!("group:{}", g.name))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The refusal message when `cyr_deny` has blocked `user` on
    /// `service` (`imap`, `pop3`).  Blocking (reads the list).
    pub fn denied(&self, user: &str, service: &str) -> Option<String> {
        let path = crate::store::userdeny::path(&self.store.cfg.configdir, self.conf.get("userdeny_db_path"));
        crate::store::userdeny::check(&path, user, service)
    }

    /// `admins` (or `<service>_admins`), space-separated.
    pub fn is_admin(&self, user: &str) -> bool {
        self.conf.get("admins").unwrap_or("").split_whitespace().any(|a| a == user)
    }

    /// Checks a password with `sasl_pwcheck_method` (saslauthd only).
    /// `Err` is a temporary failure.
    pub async fn check_password(&self, user: &str, password: &Secret<Vec<u8>>) -> Result<bool, String> {
        check_password(&self.conf, &self.sasl_service, user, password).await
    }

    /// The listeners: systemd's, else `-L` specs, else `default`.
    pub async fn listeners(&self, specs: &[String], default: &[String]) -> Result<Vec<crate::server::Listener>, String> {
        let specs = if specs.is_empty() { default } else { specs };
        bind_listeners(specs).await
    }
}

/// `serverinfo` (on, min, off): how much of itself a server tells its
/// clients in greetings, POP3's CAPA and IMAP's ID, as Cyrus: on, the
/// server name, product and version; min, the server name; off, nothing
/// (LMTP, whose clients are the mail hubs, keeps the server name).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ServerInfo {
    On,
    Min,
    Off,
}

impl ServerInfo {
    pub fn of(conf: &ImapdConf) -> ServerInfo {
        match conf.get("serverinfo").map(str::to_ascii_lowercase).as_deref() {
            Some("off") => ServerInfo::Off,
            Some("min") => ServerInfo::Min,
            _ => ServerInfo::On,
        }
    }

    /// What a greeting says before "server ready": `host Cyrus IMAP
    /// 3.6.1 `, `host ` or nothing (`product`: IMAP, POP3, LMTP).
    pub fn greeting(self, host: &str, product: &str) -> String {
        match self {
            ServerInfo::On => format!("{host} Cyrus {product} {} ", super::lmtpd::CYRUS_VERSION),
            ServerInfo::Min => format!("{host} "),
            ServerInfo::Off if product == "LMTP" => format!("{host} "),
            ServerInfo::Off => String::new(),
        }
    }

    /// POP3 CAPA's IMPLEMENTATION line (with CRLF), only when on.
    pub fn implementation(self) -> Option<String> {
        (self == ServerInfo::On).then(|| format!("IMPLEMENTATION Cyrus POP3 {}", super::lmtpd::CYRUS_VERSION))
    }
}

/// A capability list as imapd.conf makes it: LITERAL- in place of
/// LITERAL+ under `literalminus` (RFC 7888), and without those
/// `suppress_capabilities` names (as they appear in the list, case and
/// all), as Cyrus leaves them out of every capability response.
pub fn configured_capabilities(conf: &ImapdConf, caps: String) -> String {
    let caps = if conf.get_switch("literalminus") {
        caps.replacen("LITERAL+", "LITERAL-", 1)
    } else {
        caps
    };
    let Some(drop) = conf.get("suppress_capabilities").filter(|s| !s.trim().is_empty()) else {
        return caps;
    };
    let drop: Vec<&str> = drop.split_whitespace().collect();
    caps.split_whitespace().filter(|c| !drop.contains(c)).collect::<Vec<_>>().join(" ")
}

/// A user name as Cyrus canonicalises it before the password check and
/// everything after (`username_tolower`, on by default: directories such
/// as Active Directory ignore case, so `JSmith` and `jsmith` are one user
/// with one INBOX).
pub fn canon_userid(conf: &ImapdConf, user: &str) -> String {
    if conf.get_switch("username_tolower") {
        user.to_ascii_lowercase()
    } else {
        user.to_string()
    }
}

/// Checks a password with `sasl_pwcheck_method` (saslauthd only) for
/// SASL service `service`.  `Err` is a temporary failure.
pub async fn check_password(conf: &ImapdConf, service: &str, user: &str, password: &Secret<Vec<u8>>) -> Result<bool, String> {
    let method = conf.overflow("sasl_pwcheck_method").unwrap_or("auxprop").to_string();
    for m in method.split_whitespace() {
        if m == "saslauthd" {
            let path = conf
                .overflow("sasl_saslauthd_path")
                .map(str::to_string)
                .unwrap_or_else(|| "/run/saslauthd/mux".to_string());
            // A Murder back end checks its front ends' proxy identity on
            // every proxied login: a success is remembered for a minute
            // (keyed by a digest of the password, as saslauthd -c does),
            // for `proxyservers` identities only.
            let proxy = conf.get("proxyservers").unwrap_or("").split_whitespace().any(|p| p == user);
            let key = proxy.then(|| proxy_cache_key(service, user, password));
            if let Some(k) = &key {
                if proxy_cache()
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(k)
                    .is_some_and(|t| t.elapsed() < PROXY_CACHE_TTL)
                {
                    return Ok(true);
                }
            }
            // libsasl splits user@realm at the last '@' only when the
            // realm is one of the server's; keep the login whole.
            let ok = super::saslauthd_client::check(&path, user, password, service, "").await;
            if let (Some(k), Ok(true)) = (key, &ok) {
                let mut c = proxy_cache().lock().unwrap_or_else(|p| p.into_inner());
                c.retain(|_, t| t.elapsed() < PROXY_CACHE_TTL);
                c.insert(k, std::time::Instant::now());
            }
            return ok;
        }
    }
    Err(format!("sasl_pwcheck_method {method}: no supported method (saslauthd)"))
}

/// How long a proxy identity's successful password check is remembered.
const PROXY_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(60);

fn proxy_cache() -> &'static std::sync::Mutex<std::collections::HashMap<Vec<u8>, std::time::Instant>> {
    static C: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<Vec<u8>, std::time::Instant>>> = std::sync::OnceLock::new();
    C.get_or_init(Default::default)
}

/// SHA-256 of service, user and password (the password itself is never
/// kept).
fn proxy_cache_key(service: &str, user: &str, password: &Secret<Vec<u8>>) -> Vec<u8> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [service.as_bytes(), b"\0", user.as_bytes(), b"\0", password.expose().as_slice()] {
        ctx.update(part);
    }
    ctx.finish().as_ref().to_vec()
}

/// A TCP service's port from /etc/services (`mupdate`, `lmtp`, `imap`):
/// Cyrus connects to its peers by service name.  `MUMAIL_SERVICES` names
/// another file in that format (a murder on one host's loopback
/// addresses, without editing /etc/services).
/// The file is read again only when its size or modification time
/// changes (a front end looks a port up for every back-end connection).
pub fn service_port(name: &str) -> Option<u16> {
    type Cached = Option<(String, std::time::SystemTime, u64, String)>;
    static CACHE: std::sync::Mutex<Cached> = std::sync::Mutex::new(None);
    let file = std::env::var("MUMAIL_SERVICES").unwrap_or_else(|_| "/etc/services".into());
    let meta = std::fs::metadata(&file).ok()?;
    let (mtime, len) = (meta.modified().ok()?, meta.len());
    let mut c = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if !matches!(&*c, Some((f, m, l, _)) if *f == file && *m == mtime && *l == len) {
        let text = std::fs::read_to_string(&file).ok()?;
        *c = Some((file, mtime, len, text));
    }
    services_port(c.as_ref().map(|(_, _, _, t)| t.as_str())?, name)
}

/// A TCP port in services(5) text: `name port/proto [aliases...]`, by
/// name or alias, as getservbyname(3) finds it.
fn services_port(text: &str, name: &str) -> Option<u16> {
    text.lines().find_map(|line| {
        let mut it = line.split('#').next().unwrap_or("").split_whitespace();
        let first = it.next()?;
        let port = it.next()?.strip_suffix("/tcp")?;
        (first == name || it.any(|alias| alias == name)).then(|| port.parse().ok())?
    })
}

/// `servername`, else the host name.
/// `client_bind` (off): the local address our connections to peers (back
/// ends, the MUPDATE master) come from: `client_bind_name`, else
/// `servername`, an address or a name resolved.  None: the kernel's
/// choice (also when the name does not resolve).
pub async fn client_bind(conf: &ImapdConf) -> Option<std::net::IpAddr> {
    if !conf.get_switch("client_bind") {
        return None;
    }
    let name = match conf.get("client_bind_name") {
        Some(n) if !n.is_empty() && n != "(null)" => n.to_string(),
        _ => servername(conf),
    };
    if let Ok(ip) = name.parse() {
        return Some(ip);
    }
    let found = tokio::net::lookup_host((name.as_str(), 0)).await.ok()?.next();
    found.map(|a| a.ip())
}

/// A TCP connection to `host:port`, from the address `from` when given
/// (`client_bind`) and the peer has one of its family; when that address
/// cannot be bound, from the kernel's choice.
pub async fn tcp_connect(host: &str, port: u16, from: Option<std::net::IpAddr>) -> std::io::Result<tokio::net::TcpStream> {
    let Some(local) = from else {
        return tokio::net::TcpStream::connect((host, port)).await;
    };
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        if addr.is_ipv4() != local.is_ipv4() {
            continue;
        }
        let sock = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        if sock.bind(std::net::SocketAddr::new(local, 0)).is_err() {
            return tokio::net::TcpStream::connect(addr).await;
        }
        match sock.connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) => Err(e),
        None => tokio::net::TcpStream::connect((host, port)).await,
    }
}

pub fn servername(conf: &ImapdConf) -> String {
    match conf.get("servername") {
        Some(s) if !s.is_empty() && s != "(null)" => s.to_string(),
        _ => nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into()),
    }
}

/// `client_timeout` (10 s): how long a connection to a peer (a back end,
/// the MUPDATE master) may take to open.
pub fn client_timeout(conf: &ImapdConf) -> std::time::Duration {
    std::time::Duration::from_secs(conf.get_secs("client_timeout", 's').unwrap_or(10).clamp(1, 3600) as u64)
}

/// `tcp_keepalive` and its `_idle`, `_intvl`, `_cnt` (seconds, probes;
/// 0: the system's default), for the accepted connections.
pub fn keepalive(conf: &ImapdConf) -> Option<crate::server::Keepalive> {
    let n = |k: &str| conf.get_secs(k, 's').unwrap_or(0).clamp(0, u32::MAX as i64) as u32;
    conf.get_switch("tcp_keepalive").then(|| crate::server::Keepalive {
        idle: n("tcp_keepalive_idle"),
        intvl: n("tcp_keepalive_intvl"),
        cnt: n("tcp_keepalive_cnt"),
    })
}

/// The listeners for a daemon without a store: systemd's, master's fd,
/// else `specs` (`host:port`, `port`, `/path`).
pub async fn bind_listeners(specs: &[String]) -> Result<Vec<crate::server::Listener>, String> {
    let mut out = crate::server::Listener::from_systemd().map_err(|e| e.to_string())?;
    if !out.is_empty() {
        return Ok(out);
    }
    if std::env::var_os("CYRUS_SERVICE").is_some() {
        if let Some(l) = listener_on_fd(super::master::LISTEN_FD) {
            return Ok(vec![l]);
        }
    }
    for s in specs {
        if s.starts_with('/') {
            let p = std::path::Path::new(s);
            crate::server::Listener::make_socket_dir(p);
            out.push(crate::server::Listener::bind_unix(p, 0o777).map_err(|e| format!("bind {s}: {e}"))?);
        } else {
            let addr = if s.contains(':') { s.clone() } else { format!("0.0.0.0:{s}") };
            out.push(
                crate::server::Listener::bind_tcp(&addr)
                    .await
                    .map_err(|e| format!("bind {addr}: {e}"))?,
            );
        }
    }
    Ok(out)
}

/// Serves `svc` until SIGTERM on systemd's sockets, master's, or `specs`,
/// in a multi-threaded runtime, or (`per_thread`: the proxies, where each
/// message or command crosses the process twice and a wake-up on another
/// thread costs more than the work) in single-threaded runtimes: one, or
/// cyrus.conf's `prefork` up to the number of cores, each on its own
/// thread accepting on the same sockets and keeping the sessions it
/// accepted; `start` runs inside the first runtime first (tasks the
/// daemon needs beside its connections).  The exit code.
pub fn serve_until_term<S: crate::server::Service>(
    prog: &str,
    log: &Arc<Logger>,
    specs: &[String],
    svc: Arc<S>,
    limits: crate::server::Limits,
    start: impl FnOnce() + Send,
    per_thread: bool,
) -> i32 {
    let mut builder = if per_thread {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let rt = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{prog}: {e}");
            return crate::util::exit::OSERR;
        }
    };
    let threads = if per_thread {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        prefork().clamp(1, cores)
    } else {
        1
    };
    rt.block_on(async move {
        let listeners = match bind_listeners(specs).await {
            Ok(l) => l,
            Err(e) => {
                log.fatal(&e);
                eprintln!("{prog}: fatal: {e}");
                return crate::util::exit::TEMPFAIL;
            }
        };
        start();
        let (sd, rx) = crate::server::Shutdown::new();
        tokio::spawn(async move {
            crate::server::signals(|| {}).await;
            sd.trigger();
        });
        // The connection limit, shared out: a runtime at its share stops
        // accepting and the others take the connections.
        let limits = crate::server::Limits {
            max_conns: limits.max_conns.div_ceil(threads),
            ..limits
        };
        let mut others = Vec::new();
        for _ in 1..threads {
            let shared: Result<Vec<_>, _> = listeners.iter().map(|l| l.share()).collect();
            let shared = match shared {
                Ok(s) => s,
                Err(e) => {
                    log.warning(&format!("serving on {} threads: {e}", others.len() + 1));
                    break;
                }
            };
            let (svc, rx, limits, tlog) = (svc.clone(), rx.clone(), limits.clone(), log.clone());
            let thread = std::thread::Builder::new().name(format!("{prog}-{}", others.len() + 1));
            let spawned = thread.spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
                let Ok(rt) = rt else { return };
                rt.block_on(async move {
                    match shared.into_iter().map(|s| s.listener()).collect::<Result<Vec<_>, _>>() {
                        Ok(l) => {
                            crate::server::run(l, svc, limits, rx).await;
                        }
                        Err(e) => tlog.warning(&format!("serving on another thread: {e}")),
                    }
                });
            });
            match spawned {
                Ok(t) => others.push(t),
                Err(e) => {
                    log.warning(&format!("serving on {} threads: {e}", others.len() + 1));
                    break;
                }
            }
        }
        crate::server::run(listeners, svc, limits, rx).await;
        for t in others {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        0
    })
}

/// A listening socket inherited on `fd`, if there is one.
fn listener_on_fd(fd: i32) -> Option<crate::server::Listener> {
    use std::os::fd::FromRawFd;
    let addr = nix::sys::socket::getsockname::<nix::sys::socket::SockaddrStorage>(fd).ok()?;
    // SAFETY: master passed fd as a listening socket that we now own.
    if addr.as_unix_addr().is_some() {
        let l = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
        l.set_nonblocking(true).ok()?;
        Some(crate::server::Listener::Unix(tokio::net::UnixListener::from_std(l).ok()?))
    } else {
        let l = unsafe { std::net::TcpListener::from_raw_fd(fd) };
        l.set_nonblocking(true).ok()?;
        Some(crate::server::Listener::Tcp(tokio::net::TcpListener::from_std(l).ok()?))
    }
}

/// cyrus.conf `prefork` as passed by master (0 when unset).
fn prefork() -> usize {
    std::env::var("MUMAIL_PREFORK").ok().and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// The connection limit: cyrus.conf `maxchild` as passed by master.
pub fn max_conns() -> usize {
    std::env::var("MUMAIL_MAXCHILD").ok().and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// The server TLS configuration from `tls_server_cert` and
/// `tls_server_key` (PEM; Cyrus allows a comma-separated RSA,EC pair: the
/// first is used) and `tls_versions`.
pub fn tls_config(conf: &ImapdConf) -> Result<Option<Arc<rustls::ServerConfig>>, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    let get = |n: &str| conf.path_option(n).filter(|v| !v.is_empty() && v != "(null)");
    let (Some(cert), Some(key)) = (get("tls_server_cert"), get("tls_server_key")) else {
        return Ok(None);
    };
    let cert = cert.split(',').next().unwrap_or("").trim().to_string();
    let key = key.split(',').next().unwrap_or("").trim().to_string();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .map_err(|e| format!("tls_server_cert {cert}: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls_server_cert {cert}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("tls_server_cert {cert}: no certificate"));
    }
    let key = PrivateKeyDer::from_pem_file(&key).map_err(|e| format!("tls_server_key {key}: {e}"))?;
    let versions = conf.get("tls_versions").unwrap_or("tls1_2 tls1_3").to_string();
    let mut vs: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
    if versions.contains("tls1_2") {
        vs.push(&rustls::version::TLS12);
    }
    if versions.contains("tls1_3") {
        vs.push(&rustls::version::TLS13);
    }
    if vs.is_empty() {
        return Err(format!("tls_versions {versions}: none of tls1_2 tls1_3"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&vs)
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("tls_server_cert/tls_server_key: {e}"))?;
    Ok(Some(Arc::new(cfg)))
}

/// A store daemon's `main`: parse the common flags, load imapd.conf as
/// service `ident`, bind the listeners (`default` without -L/systemd/
/// master), serve with `make` until SIGTERM.  Exit codes as sysexits.
/// Implicit TLS (imaps, pop3s) on an accepted connection; None (and a log
/// line) when the handshake fails.  Boxed: the handshake's state is not
/// part of every connection's task.
pub async fn implicit_tls(
    ctx: &Ctx,
    io: Box<dyn crate::server::listen::Io>,
    peer: &str,
    service: &str,
) -> Option<(Box<dyn crate::server::listen::Io>, u32)> {
    let acc = ctx.tls.clone()?;
    match Box::pin(tokio_rustls::TlsAcceptor::from(acc).accept(io)).await {
        Ok(t) => {
            ctx.log
                .info(&format!("starttls: {}", crate::util::tls::server_summary(t.get_ref().1)));
            let ssf = crate::util::tls::server_ssf(t.get_ref().1);
            Some((Box::new(t), ssf))
        }
        Err(e) => {
            ctx.log.info(&format!("{service} TLS negotiation failed: {peer}: {e}"));
            None
        }
    }
}

/// `sasl_minimum_layer`: whether SASL mechanisms may be used on a
/// session whose TLS gives `ssf` (the cipher's bits, 0 without TLS).
/// None of ours negotiates a layer of its own, so below the minimum
/// none is offered and AUTHENTICATE answers "mechanism too weak for this
/// user", as Cyrus; the plaintext LOGIN/USER commands are not affected
/// (Cyrus 3.6 lets them through too).
pub fn sasl_layer_ok(conf: &ImapdConf, ssf: u32) -> bool {
    let min = conf.get_int("sasl_minimum_layer");
    min <= 0 || i64::from(ssf) >= min
}

/// Whether an AUTHENTICATE/AUTH with `mech` (upper case) is one of our
/// mechanisms refused for `sasl_minimum_layer` (libsasl's "too weak";
/// an unknown one gets each protocol's usual refusal).
pub fn sasl_too_weak(ctx: &Ctx, mech: &str, ssf: u32) -> bool {
    our_mech(ctx, mech) && !sasl_layer_ok(&ctx.conf, ssf)
}

/// `mech` (upper case) is one of the SASL mechanisms this server has.
pub fn our_mech(ctx: &Ctx, mech: &str) -> bool {
    matches!(mech, "PLAIN" | "LOGIN") || (mech == "GSSAPI" && ctx.gssapi)
}

/// Cyrus's autocreate (autocreate_user): at login (imapd, pop3d) and, with
/// `autocreate_post`, at delivery (lmtpd).  With `autocreate_quota` at 0
/// or more a missing INBOX is created (not for `admins` or
/// `proxyservers`), subscribed and given the quota; then the
/// `autocreate_inbox_folders`, those also in `autocreate_subscribe_folders`
/// subscribed, each with the special use an `xlist-<use>` line names;
/// then the shared folders of `autocreate_subscribe_sharedfolders` (or,
/// with `autocreate_subscribe_sharedfolders_all`, every shared folder)
/// that the user may see (`l` for the user, anyone or one of `groups`).
/// Logged in Cyrus's words.  Blocking (store calls).
pub fn autocreate_inbox(ctx: &Ctx, inbox: &str, groups: &[String]) -> Result<(), crate::store::StoreError> {
    let store = &ctx.store;
    let cfg = &store.cfg;
    if cfg.autocreate_quota < 0 || store.lookup(inbox)?.is_some() {
        return Ok(());
    }
    let Some(user) = super::imapd::mailboxes::mailbox_owner(inbox) else {
        return Ok(());
    };
    let proxy = ctx.conf.get("proxyservers").unwrap_or("").split_whitespace().any(|p| p == user);
    if ctx.is_admin(&user) || proxy {
        return Ok(());
    }
    let (kb, msgs) = (cfg.autocreate_quota, cfg.autocreate_quota_messages);
    if let Err(e) = store.create(inbox, None, None).and_then(|_| store.subscribe(inbox, inbox, true)) {
        ctx.log.error(&format!("autocreateinbox: User {user}, INBOX failed. {e}"));
        return Err(e);
    }
    // A root either way: with 0, one without limits, as Cyrus makes it.
    let quota = if kb > 0 || msgs > 0 {
        store.quota_set(inbox, (kb > 0).then_some(kb), (msgs > 0).then_some(msgs))
    } else {
        store.quota_root_unlimited(inbox)
    };
    if let Err(e) = quota {
        ctx.log.error(&format!("autocreateinbox: User {user}, QUOTA failed. {e}"));
        return Err(e);
    }
    ctx.log
        .info(&format!("autocreateinbox: User {user}, INBOX was successfully created"));
    let list = |opt: &str| -> Vec<String> {
        ctx.conf
            .get(opt)
            .unwrap_or("")
            .split('|')
            .map(str::trim)
            .filter(|f| !f.is_empty() && *f != "(null)")
            .map(str::to_string)
            .collect()
    };
    let subscribe = list("autocreate_subscribe_folders");
    let (mut created, mut subscribed) = (0, 0);
    for f in list("autocreate_inbox_folders") {
        // Folders are named as internal names are ('.' between levels):
        // with `unixhierarchysep` a '/' makes no valid name, as in Cyrus.
        let n = format!("{inbox}.{f}");
        let made = if f.contains('/') && ctx.conf.get_switch("unixhierarchysep") {
            Err(crate::store::StoreError::Invalid("a '/' in a folder name"))
        } else {
            store.create_path(&n, None)
        };
        if let Err(e) = made {
            ctx.log
                .warning(&format!("autocreateinbox: User {user}, subfolder {f} creation failed. {e}"));
            continue;
        }
        created += 1;
        ctx.log
            .info(&format!("autocreateinbox: User {user}, subfolder {f} creation succeeded."));
        if subscribe.contains(&f) {
            match store.subscribe(inbox, &n, true) {
                Ok(()) => {
                    subscribed += 1;
                    ctx.log
                        .info(&format!("autocreateinbox: User {user}, subscription to {f} succeeded"));
                }
                Err(e) => ctx
                    .log
                    .warning(&format!("autocreateinbox: User {user}, subscription to  {f} failed. {e}")),
            }
        }
        // `xlist-<use>: <folder>` gives an autocreated folder its special
        // use, as in Cyrus 3.
        let uses: Vec<String> = ["All", "Archive", "Drafts", "Flagged", "Important", "Junk", "Sent", "Trash"]
            .iter()
            .filter(|u| ctx.conf.overflow(&format!("xlist-{}", u.to_ascii_lowercase())) == Some(f.as_str()))
            .map(|u| format!("\\{u}"))
            .collect();
        if !uses.is_empty() {
            match store.set_special_use(&n, &uses.join(" ")) {
                Ok(_) => ctx.log.info(&format!("autocreate: set specialuse {} for {n}", uses.join(" "))),
                Err(_) => ctx
                    .log
                    .warning(&format!("autocreate: failed to set specialuse {} for {n}", uses.join(" "))),
            }
        }
    }
    if created > 0 {
        ctx.log.info(&format!(
            "User {user}, Inbox subfolders, created {created}, subscribed {subscribed}"
        ));
    }
    autosubscribe_shared(ctx, inbox, &user, groups, &list("autocreate_subscribe_sharedfolders"));
    Ok(())
}

/// The shared-folder half of autocreate: the named shared folders (Cyrus
/// internal names, `shared.news`), or every one under
/// `autocreate_subscribe_sharedfolders_all`, that exist here and that
/// `user` may see; user mailboxes and deleted ones are never subscribed.
/// Only a named folder's result is logged, as Cyrus.
fn autosubscribe_shared(ctx: &Ctx, inbox: &str, user: &str, groups: &[String], named: &[String]) {
    let store = &ctx.store;
    let all = ctx.conf.get_switch("autocreate_subscribe_sharedfolders_all");
    if !all && named.is_empty() {
        return;
    }
    let mut ids: Vec<&str> = vec![user, "anyone"];
    ids.extend(groups.iter().map(String::as_str));
    let deleted = format!("{}.", store.cfg.deletedprefix);
    let shared = |name: &str| {
        let bare = name.rsplit_once('!').map_or(name, |(_, r)| r);
        !crate::store::names::owner_of(name).2 && !bare.starts_with(&deleted)
    };
    let candidates: Vec<crate::store::MailboxEntry> = if all {
        store.list_naming(&ids).unwrap_or_default()
    } else {
        named.iter().filter_map(|n| store.lookup(n).ok().flatten()).collect()
    };
    for e in candidates {
        let visible = super::imapd::mailboxes::rights_of(&e.acl, &ids).contains('l');
        if !shared(&e.name) || !visible {
            continue;
        }
        let r = store.subscribe(inbox, &e.name, true);
        if all {
            continue;
        }
        match r {
            Ok(()) => ctx
                .log
                .info(&format!("autosubscribe: User {user} to folder {}, subscription succeeded", e.name)),
            Err(err) => ctx.log.warning(&format!(
                "autosubscribe: User {user} to folder {}, subscription failed: {err}",
                e.name
            )),
        }
    }
}

/// glibc gives each thread that allocates its own arena and keeps what
/// was freed in it: a SORT of 100,000 messages on one blocking thread, a
/// SEARCH on another, a THREAD on a third would each leave tens of MB
/// behind.  Few arenas, and freed memory returned (`trim_after_big_job`).
///
/// A delivered or appended message takes a few buffers of its size.  With
/// glibc's own thresholds those of a big one were mapped and unmapped, or
/// the heap's top trimmed after it, for every message, and each message's
/// buffers were faulted in afresh: a fifth of lmtpd's CPU for 1 MB
/// messages.  Buffers up to 16 MB come from the heap, and up to 64 MB of
/// free heap top is kept for the next message (a big job still returns
/// it).  `GLIBC_TUNABLES` naming either threshold leaves them to it.
pub fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let own = std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("mmap_threshold") || t.contains("trim_threshold"));
        // SAFETY: mallopt only sets allocator tunables; called before the
        // runtime's threads start.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
            if !own {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 16 << 20);
                libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
            }
        }
    }
}

/// Hands freed heap back to the system after a command that touched many
/// messages (glibc keeps it otherwise).
pub fn trim_after_big_job() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}

pub fn run_service<S: crate::server::Service>(
    prog: &str,
    args: &[String],
    ident: impl Fn(&Args) -> &'static str,
    sasl_service: &str,
    default: impl Fn(&Ctx) -> Vec<String>,
    make: impl FnOnce(Arc<Ctx>, &Args) -> Result<S, String>,
) -> i32 {
    let a = match parse_args(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{prog}: {e}");
            return crate::util::exit::USAGE;
        }
    };
    let ctx = match Ctx::load(&a.config, ident(&a), sasl_service) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("{prog}: fatal: {e}");
            return crate::util::exit::TEMPFAIL;
        }
    };
    crate::log::install_panic_hook(ctx.log.clone());
    tune_malloc();
    let svc = match make(ctx.clone(), &a) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            ctx.log.fatal(&e);
            eprintln!("{prog}: fatal: {e}");
            return crate::util::exit::CONFIG;
        }
    };
    // Store calls run on the blocking pool; a bound keeps a burst of
    // sessions (10,000 IDLEs woken at once) from starting hundreds of
    // threads, each with its stack.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(64)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{prog}: {e}");
            return crate::util::exit::OSERR;
        }
    };
    rt.block_on(async move {
        let listeners = match ctx.listeners(&a.listen, &default(&ctx)).await {
            Ok(l) => l,
            Err(e) => {
                ctx.log.fatal(&e);
                eprintln!("{prog}: fatal: {e}");
                return crate::util::exit::TEMPFAIL;
            }
        };
        // IDLE sessions learn of other processes' commits from one poller.
        tokio::spawn(ctx.store.clone().poll_watched(std::time::Duration::from_secs(1)));
        let (sd, rx) = crate::server::Shutdown::new();
        tokio::spawn(async move {
            crate::server::signals(|| {}).await;
            sd.trigger();
        });
        let limits = crate::server::Limits {
            max_conns: max_conns(),
            keepalive: keepalive(&ctx.conf),
            ..Default::default()
        };
        crate::server::run(listeners, svc, limits, rx).await;
        0
    })
}

#[cfg(test)]
mod services_tests {
    #[test]
    fn names_aliases_and_protocols() {
        let t = "# comment\nimap\t\t143/tcp\t\timap2 # Interim\nlmtp 24/udp\nlmtp 2003/tcp\nmupdate 3905/tcp\n";
        assert_eq!(super::services_port(t, "imap"), Some(143));
        assert_eq!(super::services_port(t, "imap2"), Some(143));
        assert_eq!(super::services_port(t, "lmtp"), Some(2003));
        assert_eq!(super::services_port(t, "Interim"), None);
        assert_eq!(super::services_port(t, "pop3"), None);
    }
}

/// Cyrus's log line for a wrong password (fail2ban's `cyrus-imap` filter
/// reads it): the user and SASL's detail for LOGIN/USER+PASS
/// (`plaintext`), the mechanism and the bracketed error for AUTHENTICATE.
pub fn badlogin_line(host: &str, mech: &str, user: &str) -> String {
    if mech == "plaintext" {
        format!("badlogin: {host} plaintext {user} SASL(-13): authentication failure: checkpass failed")
    } else {
        format!("badlogin: {host} {mech} [SASL(-13): authentication failure: Password verification failed]")
    }
}

/// `popsubfolders`: `user+folder` (with `virtdomains`,
/// `user+folder@domain`) is the user and one of their folders.
pub fn split_subfolder(id: &str, virtdomains: bool) -> (String, Option<String>) {
    let Some(plus) = id.find('+') else {
        return (id.to_string(), None);
    };
    let end = if virtdomains {
        id[plus..].find('@').map_or(id.len(), |n| plus + n)
    } else {
        id.len()
    };
    (format!("{}{}", &id[..plus], &id[end..]), Some(id[plus + 1..end].to_string()))
}

/// `user` with `+folder` put back (before any `@domain`).
pub fn join_subfolder(user: &str, folder: &str) -> String {
    match user.split_once('@') {
        Some((l, d)) => format!("{l}+{folder}@{d}"),
        None => format!("{user}+{folder}"),
    }
}
