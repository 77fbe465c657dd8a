//! smtpd: the SMTP server of the hub (Postfix smtpd(8) replies, log lines
//! and restrictions).  A message becomes a queue file at the first accepted
//! RCPT (so its queue ID is logged there, as Postfix does) and is committed
//! at the end of DATA/BDAT: `250 2.0.0 Ok: queued as ID` follows the
//! durable commit; then the queue manager gets it in memory.
//!
//! Every read is bounded: command lines by `line_length_limit` (the excess
//! is discarded, as Postfix 3.7 does), message content by
//! `message_size_limit` (counted, not stored, beyond it), AUTH responses by
//! 12 KB, the session by `smtpd_timeout` per read.

pub mod check;
pub mod dnscheck;
pub mod policy;
pub mod postscreen;
mod session;

use crate::daemon::hub::conf::{match_networks, SmtpdConf};
use crate::daemon::hub::Hub;
use crate::log::Logger;
use crate::tables::Maps;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

pub struct Smtpd {
    pub hub: Arc<Hub>,
    pub conf: SmtpdConf,
    pub log: Arc<Logger>,
    pub cleanup_log: Arc<Logger>,
    pub tables: check::TableCache,
    pub local_maps: Maps,
    /// `smtpd_sender_login_maps`.
    pub login_maps: Maps,
    pub virtual_maps: Maps,
    pub relay_maps: Maps,
    /// `smtpd_discard_ehlo_keyword_address_maps`.
    pub discard_maps: Maps,
    /// `smtpd_reject_footer_maps`.
    pub footer_maps: Maps,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The Received header's `server-signature ...` text for this
    /// service's certificate.
    pub tls_signature: Option<String>,
    /// postscreen(8) in front of this service.
    pub screen: Option<Arc<postscreen::Screen>>,
    /// saslauthd's socket for AUTH (from the SASL application config).
    pub saslauthd_path: String,
    /// AUTH offers GSSAPI (see `sasl_gssapi`).
    pub gssapi: bool,
    /// Open connections per client address (anvil's count).
    conns: ClientCounts,
    /// Events per client address in the current rate window (anvil).
    rates: Mutex<HashMap<IpAddr, Rate>>,
    /// Kept connections to policy servers (`check_policy_service`).
    pub policy: policy::Pool,
    /// Some restriction list names `check_policy_service`.
    pub has_policy: bool,
}

/// One client's events in the current `anvil_rate_time_unit` window.
struct Rate {
    start: std::time::Instant,
    counts: [u32; 3],
}

/// What anvil counts.
#[derive(Clone, Copy)]
pub enum Event {
    Connection = 0,
    Message = 1,
    Recipient = 2,
}

/// Connections per client address (the count Postfix's anvil keeps).
#[derive(Default)]
pub struct ClientCounts(Mutex<HashMap<IpAddr, usize>>);

impl ClientCounts {
    /// Counts a new connection of `ip`; returns the count with it and a
    /// guard that uncounts it when the connection ends.
    pub fn enter(&self, ip: IpAddr) -> (ClientGuard<'_>, usize) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(ip).or_insert(0);
        *n += 1;
        let now = *n;
        drop(m);
        (ClientGuard(self, ip), now)
    }
}

pub struct ClientGuard<'a>(&'a ClientCounts, IpAddr);

impl Drop for ClientGuard<'_> {
    fn drop(&mut self) {
        let mut m = self.0 .0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.1);
            }
        }
    }
}

/// An option of the SASL application config (`smtpd_sasl_path`.conf, as
/// libsasl finds it under `cyrus_sasl_config_path`).
pub fn sasl_app_option(p: &crate::config::postfix::Params, key: &str) -> Option<String> {
    let app = p.get("smtpd_sasl_path").unwrap_or_else(|| "smtpd".into());
    let dirs = p.get("cyrus_sasl_config_path").filter(|d| !d.trim().is_empty());
    let dirs: Vec<String> = match dirs {
        Some(d) => d.split(':').map(str::to_string).collect(),
        None => vec!["/etc/sasl2".into(), "/usr/lib/sasl2".into(), "/usr/lib64/sasl2".into()],
    };
    for d in dirs {
        if let Ok(text) = std::fs::read_to_string(format!("{d}/{app}.conf")) {
            for line in text.lines() {
                if let Some((k, v)) = line.split_once(':') {
                    if k.trim() == key {
                        return Some(v.trim().to_string());
                    }
                }
            }
        }
    }
    None
}

/// saslauthd's socket (`saslauthd_path:`); the default mux otherwise.
pub fn saslauthd_path(p: &crate::config::postfix::Params) -> String {
    sasl_app_option(p, "saslauthd_path").unwrap_or_else(|| "/run/saslauthd/mux".to_string())
}

/// Whether AUTH offers GSSAPI: `mech_list` (when set) names it and the
/// `keytab:` of the application config (else `KRB5_KTNAME`, else
/// /etc/krb5.keytab) is readable; the keytab is registered then.
pub fn sasl_gssapi(p: &crate::config::postfix::Params) -> Result<bool, String> {
    let listed = sasl_app_option(p, "mech_list").is_none_or(|l| l.split_whitespace().any(|m| m.eq_ignore_ascii_case("GSSAPI")));
    if !listed || !cfg!(feature = "krb5") {
        return Ok(false);
    }
    #[cfg(feature = "krb5")]
    if let Some(k) = crate::auth::gssapi::server_keytab(&sasl_app_option(p, "keytab").unwrap_or_default()) {
        crate::auth::gssapi::use_keytab(&k)?;
        return Ok(true);
    }
    Ok(false)
}

impl Smtpd {
    pub fn new(
        hub: Arc<Hub>,
        conf: SmtpdConf,
        log: Arc<Logger>,
        cleanup_log: Arc<Logger>,
        tls: Option<Arc<rustls::ServerConfig>>,
        saslauthd_path: String,
        gssapi: bool,
    ) -> Result<Smtpd, String> {
        let maps = |v: &[String], name: &str| Maps::open_aliased(v, &hub.conf.alias_maps).map_err(|e| format!("{name}: {e}"));
        let has_policy = [
            &conf.client_restrictions,
            &conf.helo_restrictions,
            &conf.sender_restrictions,
            &conf.recipient_restrictions,
            &conf.relay_restrictions,
            &conf.data_restrictions,
            &conf.end_of_data_restrictions,
        ]
        .iter()
        .any(|l| l.iter().any(|r| r == "check_policy_service"));
        Ok(Smtpd {
            policy: policy::Pool::default(),
            has_policy,
            local_maps: maps(&conf.local_recipient_maps, "local_recipient_maps")?,
            login_maps: maps(&conf.sender_login_maps, "smtpd_sender_login_maps")?,
            virtual_maps: maps(&conf.virtual_mailbox_maps, "virtual_mailbox_maps")?,
            relay_maps: maps(&conf.relay_recipient_maps, "relay_recipient_maps")?,
            discard_maps: maps(&conf.discard_ehlo_maps, "smtpd_discard_ehlo_keyword_address_maps")?,
            footer_maps: maps(&conf.reject_footer_maps, "smtpd_reject_footer_maps")?,
            hub,
            conf,
            log,
            cleanup_log,
            tables: check::TableCache::default(),
            tls,
            tls_signature: None,
            screen: None,
            saslauthd_path,
            gssapi,
            conns: ClientCounts::default(),
            rates: Mutex::new(HashMap::new()),
        })
    }

    pub fn checker(&self) -> check::Checker<'_> {
        check::Checker {
            hold: Default::default(),
            defer_if_permit: Default::default(),
            defer_if_reject: Default::default(),
            warnings: Default::default(),
            actions: Default::default(),
            unlisted_done: Default::default(),
            sender_unlisted_done: Default::default(),
            hub: &self.hub.conf,
            conf: &self.conf,
            tables: &self.tables,
            local_maps: &self.local_maps,
            login_maps: &self.login_maps,
            depth: Default::default(),
            virtual_maps: &self.virtual_maps,
            relay_maps: &self.relay_maps,
            cleanup: &self.hub.cleanup,
        }
    }

    /// Counts an event; false when the client is over its rate limit
    /// (`smtpd_client_event_limit_exceptions` are never limited).
    pub fn rate_ok(&self, ip: IpAddr, ev: Event) -> bool {
        let limit = match ev {
            Event::Connection => self.conf.connection_rate_limit,
            Event::Message => self.conf.message_rate_limit,
            Event::Recipient => self.conf.recipient_rate_limit,
        };
        if limit == 0 || match_networks(&self.conf.event_limit_exceptions, ip) {
            return true;
        }
        let mut m = self.rates.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        let unit = self.conf.rate_time_unit;
        // Bounded: forget clients whose window has passed.
        if m.len() > 100_000 {
            m.retain(|_, r| now.duration_since(r.start) < unit);
        }
        let r = m.entry(ip).or_insert(Rate {
            start: now,
            counts: [0; 3],
        });
        if now.duration_since(r.start) >= unit {
            *r = Rate {
                start: now,
                counts: [0; 3],
            };
        }
        r.counts[ev as usize] += 1;
        r.counts[ev as usize] <= limit
    }

    /// Whether a client with `n` connections (this one counted) is over
    /// `smtpd_client_connection_count_limit` (mynetworks exempt).
    fn over_limit(&self, ip: IpAddr, n: usize) -> bool {
        let limit = self.conf.client_connection_count_limit;
        limit > 0 && n > limit && !match_networks(&self.hub.conf.mynetworks, ip)
    }
}

/// The client's name as Postfix finds it: the reverse (PTR) name, and
/// the verified name (the reverse name when it maps back to the address,
/// else `unknown`), each with how its lookup ended.
#[derive(Debug, Clone)]
pub struct PeerName {
    pub name: String,
    /// The reverse name, verified or not (`unknown` without one).
    pub reverse_name: String,
    pub status: dnscheck::NameStatus,
    pub reverse_status: dnscheck::NameStatus,
}

impl PeerName {
    pub fn unknown(status: dnscheck::NameStatus) -> PeerName {
        PeerName {
            name: "unknown".into(),
            reverse_name: "unknown".into(),
            status,
            reverse_status: status,
        }
    }
}

pub async fn client_name(ip: IpAddr) -> PeerName {
    use dnscheck::NameStatus;
    let work = tokio::task::spawn_blocking(move || {
        let sa: std::net::SocketAddr = (ip, 0).into();
        let name = match crate::server::peer::reverse(&sa) {
            Ok(n) => n,
            Err(temp) => return PeerName::unknown(if temp { NameStatus::Temp } else { NameStatus::Perm }),
        };
        // Forward-confirm: the name must resolve back to the address.
        let status = match std::net::ToSocketAddrs::to_socket_addrs(&(name.as_str(), 0)) {
            Ok(addrs) => {
                let mut addrs = addrs;
                if addrs.any(|a| crate::daemon::hub::conf::canonical_ip(a.ip()) == ip) {
                    NameStatus::Ok
                } else {
                    NameStatus::Perm
                }
            }
            Err(e) if e.to_string().contains("Temporary failure") => NameStatus::Temp,
            Err(_) => NameStatus::Perm,
        };
        PeerName {
            name: if status == NameStatus::Ok { name.clone() } else { "unknown".into() },
            reverse_name: name,
            status,
            reverse_status: NameStatus::Ok,
        }
    });
    match tokio::time::timeout(std::time::Duration::from_secs(10), work).await {
        Ok(Ok(p)) => p,
        _ => PeerName::unknown(dnscheck::NameStatus::Temp),
    }
}

/// A PROXY header (`proto::haproxy`) read from `s` within `limit`, not
/// a byte more; Err is the warning Postfix logs (`haproxy read: ...`).
async fn read_haproxy(s: &mut tokio::net::TcpStream, limit: std::time::Duration) -> Result<crate::proto::haproxy::Endpoints, String> {
    use crate::proto::haproxy::{step, Step};
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let read = async {
        loop {
            match step(&buf) {
                Ok(Step::Done(e)) => return Ok(e),
                Err(why) => return Err(format!("haproxy read: {why}: {}", escape(&buf))),
                Ok(Step::Need(n)) => {
                    let at = buf.len();
                    buf.resize(at + n, 0);
                    if let Err(e) = s.read_exact(&mut buf[at..]).await {
                        return Err(match e.kind() {
                            std::io::ErrorKind::UnexpectedEof => "haproxy read: EOF".to_string(),
                            _ => format!("haproxy read: {e}"),
                        });
                    }
                }
            }
        }
    };
    match tokio::time::timeout(limit, read).await {
        Ok(r) => r,
        Err(_) => Err("haproxy read: time limit exceeded".into()),
    }
}

/// Bytes for a log line as Postfix shows them.
fn escape(b: &[u8]) -> String {
    crate::proto::smtp::log_escape(b, usize::MAX)
}

impl crate::server::Service for Smtpd {
    async fn serve(self: Arc<Self>, mut conn: crate::server::Conn) {
        // (client address, server address, client port, server port)
        let (mut ip, mut local, mut ports) = match &conn {
            crate::server::Conn::Tcp(s, a) => (
                crate::daemon::hub::conf::canonical_ip(a.ip()),
                s.local_addr().map(|l| l.ip()).unwrap_or(IpAddr::from([127, 0, 0, 1])),
                (a.port(), s.local_addr().map(|l| l.port()).unwrap_or(0)),
            ),
            crate::server::Conn::Unix(_) => (IpAddr::from([127, 0, 0, 1]), IpAddr::from([127, 0, 0, 1]), (0, 0)),
        };
        // Behind a load balancer: the client it names.  A header that
        // cannot be read gets Postfix's 421 (and the socket's address).
        let mut hangup = false;
        if let (Some(limit), crate::server::Conn::Tcp(s, _)) = (self.conf.upstream_proxy, &mut conn) {
            match read_haproxy(s, limit).await {
                Ok(Some((client, server))) => {
                    ip = crate::daemon::hub::conf::canonical_ip(client.ip());
                    local = crate::daemon::hub::conf::canonical_ip(server.ip());
                    ports = (client.port(), server.port());
                }
                Ok(None) => {}
                Err(warning) => {
                    self.log.warning(&warning);
                    hangup = true;
                }
            }
        }
        // postscreen first; a client it passes waits for one of the pass
        // service's slots, held while smtpd serves it.
        let mut _slot = None;
        if let (Some(screen), crate::server::Conn::Tcp(s, _), false) = (&self.screen, &mut conn, hangup) {
            if let postscreen::Outcome::Done = screen.screen(s, ip, ports.0, local, ports.1).await {
                return;
            }
            match screen.smtpd_slot(s, ip, ports.0).await {
                Some(p) => _slot = Some(p),
                None => return,
            }
        }
        let (_guard, n) = self.conns.enter(ip);
        let over = self.over_limit(ip, n);
        let name = if self.conf.peername_lookup {
            client_name(ip).await
        } else {
            PeerName::unknown(dnscheck::NameStatus::Perm)
        };
        let io = conn.into_io();
        session::run(&self, io, ip, local, ports, name, over, hangup).await;
    }
}
