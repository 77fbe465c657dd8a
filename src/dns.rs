//! DNS lookups for the hub (Postfix's dns_lookup(3) job): MX, A/AAAA, TXT
//! and PTR records through hickory-resolver, with Postfix's three outcomes
//! kept apart: found, not found (NXDOMAIN or no record of the type: a
//! permanent answer) and try again (SERVFAIL, timeout: temporary).
//!
//! The name servers are the system's (`/etc/resolv.conf`), or the ones in
//! `MUMAIL_DNS_SERVERS` (`ip[:port]`, comma or space separated), which
//! lets a test harness or a split-horizon site point the hub at its own
//! server.  As Postfix does, names are looked up as given, never with the
//! resolv.conf search list appended.

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::time::Duration;

/// Why a lookup found nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsError {
    /// NXDOMAIN: the name does not exist.
    NoHost,
    /// The name exists but has no record of the type.
    NoData,
    /// Temporary failure (server failure, timeout, network).
    Retry(String),
}

impl DnsError {
    /// Postfix's DNS_NOTFOUND: a permanent "no" (either kind).
    pub fn not_found(&self) -> bool {
        !matches!(self, DnsError::Retry(_))
    }
}

/// One mail exchanger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mx {
    pub pref: u16,
    /// Host name without the trailing dot; empty for a null MX (RFC 7505).
    pub host: String,
}

pub struct Dns {
    /// None when no resolver could be built: every lookup says "try
    /// again" (mail is deferred, never bounced).
    r: Option<TokioResolver>,
}

/// Environment variable naming the servers to use instead of resolv.conf.
pub const SERVERS_ENV: &str = "MUMAIL_DNS_SERVERS";

fn parse_servers(v: &str) -> Result<Vec<SocketAddr>, String> {
    let mut out = Vec::new();
    for s in v.split([',', ' ', '\t']).filter(|s| !s.is_empty()) {
        let sa = if let Ok(ip) = s.parse::<IpAddr>() {
            SocketAddr::new(ip, 53)
        } else {
            s.parse::<SocketAddr>()
                .map_err(|_| format!("{SERVERS_ENV}: bad server address: {s}"))?
        };
        out.push(sa);
    }
    if out.is_empty() {
        return Err(format!("{SERVERS_ENV}: no server given"));
    }
    Ok(out)
}

impl Dns {
    /// The resolver of this process: the system's servers, or those in
    /// `MUMAIL_DNS_SERVERS`.
    pub fn shared() -> &'static Dns {
        static DNS: OnceLock<Dns> = OnceLock::new();
        DNS.get_or_init(|| {
            let servers = std::env::var(SERVERS_ENV).ok().filter(|v| !v.trim().is_empty());
            Dns::new(servers.as_deref()).unwrap_or(Dns { r: None })
        })
    }

    /// A resolver on the given servers (`ip[:port]` list), else the system's.
    pub fn new(servers: Option<&str>) -> Result<Dns, String> {
        let provider = hickory_resolver::net::runtime::TokioRuntimeProvider::default();
        let mut opts = ResolverOpts::default();
        let builder = match servers {
            Some(list) => {
                let mut cfg = ResolverConfig::from_parts(None, vec![], vec![]);
                for sa in parse_servers(list)? {
                    let mut ns = NameServerConfig::udp_and_tcp(sa.ip());
                    for c in &mut ns.connections {
                        c.port = sa.port();
                    }
                    cfg.add_name_server(ns);
                }
                TokioResolver::builder_with_config(cfg, provider)
            }
            None => {
                let mut b = TokioResolver::builder(provider).map_err(|e| format!("resolv.conf: {e}"))?;
                opts = b.options_mut().clone();
                b
            }
        };
        opts.timeout = opts.timeout.min(Duration::from_secs(5));
        opts.attempts = opts.attempts.clamp(1, 2);
        opts.ndots = 0;
        opts.use_hosts_file = hickory_resolver::config::ResolveHosts::Never;
        let r = builder.with_options(opts).build().map_err(|e| format!("resolver: {e}"))?;
        Ok(Dns { r: Some(r) })
    }

    async fn records(&self, name: &str, t: RecordType) -> Result<Vec<RData>, DnsError> {
        let mut fq = name.trim_end_matches('.').to_string();
        if fq.is_empty() {
            return Err(DnsError::NoHost);
        }
        fq.push('.');
        let Some(r) = &self.r else {
            return Err(DnsError::Retry("no resolver configured".into()));
        };
        match r.lookup(fq.as_str(), t).await {
            Ok(l) => {
                let v: Vec<RData> = l
                    .answers()
                    .iter()
                    .filter(|r| r.record_type() == t)
                    .map(|r| r.data.clone())
                    .collect();
                if v.is_empty() {
                    Err(DnsError::NoData)
                } else {
                    Ok(v)
                }
            }
            Err(e) if e.is_nx_domain() => Err(DnsError::NoHost),
            Err(e) if e.is_no_records_found() => Err(DnsError::NoData),
            Err(e) => Err(DnsError::Retry(e.to_string())),
        }
    }

    /// MX records sorted by preference (a null MX is one entry with an
    /// empty host).
    pub async fn mx(&self, domain: &str) -> Result<Vec<Mx>, DnsError> {
        let mut v: Vec<Mx> = self
            .records(domain, RecordType::MX)
            .await?
            .into_iter()
            .filter_map(|d| match d {
                RData::MX(m) => Some(Mx {
                    pref: m.preference,
                    host: m.exchange.to_ascii().trim_end_matches('.').to_ascii_lowercase(),
                }),
                _ => None,
            })
            .collect();
        v.sort_by_key(|m| m.pref);
        Ok(v)
    }

    /// NS host names of a zone.
    pub async fn ns(&self, domain: &str) -> Result<Vec<String>, DnsError> {
        Ok(self
            .records(domain, RecordType::NS)
            .await?
            .into_iter()
            .filter_map(|d| match d {
                RData::NS(n) => Some(n.0.to_ascii().trim_end_matches('.').to_ascii_lowercase()),
                _ => None,
            })
            .collect())
    }

    /// IPv4 then IPv6 addresses of a host.
    pub async fn addrs(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let a = self.records(host, RecordType::A).await;
        let aaaa = self.records(host, RecordType::AAAA).await;
        let mut out: Vec<IpAddr> = Vec::new();
        for d in a.iter().chain(aaaa.iter()).flatten() {
            match d {
                RData::A(x) => out.push(IpAddr::V4(x.0)),
                RData::AAAA(x) => out.push(IpAddr::V6(x.0)),
                _ => {}
            }
        }
        if !out.is_empty() {
            return Ok(out);
        }
        match (a, aaaa) {
            (Err(DnsError::Retry(e)), _) | (_, Err(DnsError::Retry(e))) => Err(DnsError::Retry(e)),
            (Err(DnsError::NoHost), _) => Err(DnsError::NoHost),
            _ => Err(DnsError::NoData),
        }
    }

    /// A records only (DNSBL answers).
    pub async fn a(&self, name: &str) -> Result<Vec<std::net::Ipv4Addr>, DnsError> {
        Ok(self
            .records(name, RecordType::A)
            .await?
            .into_iter()
            .filter_map(|d| match d {
                RData::A(x) => Some(x.0),
                _ => None,
            })
            .collect())
    }

    /// TXT records, each one's strings joined.
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        Ok(self
            .records(name, RecordType::TXT)
            .await?
            .into_iter()
            .filter_map(|d| match d {
                RData::TXT(t) => Some(t.txt_data.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect()),
                _ => None,
            })
            .collect())
    }

    /// Whether a name has MX or address records (Postfix's
    /// reject_unknown_*_domain test): Ok(true) found, Ok(false) a null MX.
    pub async fn mail_host(&self, domain: &str) -> Result<bool, DnsError> {
        match self.mx(domain).await {
            Ok(v) if v.len() == 1 && v[0].host.is_empty() => Ok(false),
            Ok(_) => Ok(true),
            Err(DnsError::NoData) => self.addrs(domain).await.map(|_| true),
            Err(e) => Err(e),
        }
    }

    /// Whether a host name has address or MX records
    /// (reject_unknown_helo_hostname).
    pub async fn host(&self, name: &str) -> Result<(), DnsError> {
        match self.addrs(name).await {
            Ok(_) => Ok(()),
            Err(DnsError::NoData) => self.mx(name).await.map(|_| ()),
            Err(e) => Err(e),
        }
    }
}

/// The DNSBL query name of an address: reversed octets (IPv4) or nibbles
/// (IPv6), then the zone.
pub fn reverse_name(ip: IpAddr, zone: &str) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.{zone}", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::new();
            for b in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
            s.push_str(zone);
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_servers() {
        assert_eq!(reverse_name("192.0.2.7".parse().unwrap(), "bl.example"), "7.2.0.192.bl.example");
        let v6 = reverse_name("2001:db8::1".parse().unwrap(), "bl.example");
        assert!(v6.starts_with("1.0.0.0.0.0.0.0."), "{v6}");
        assert!(v6.ends_with("8.b.d.0.1.0.0.2.bl.example"), "{v6}");
        assert_eq!(
            parse_servers("127.0.0.1:5353, 10.0.0.1").unwrap(),
            vec!["127.0.0.1:5353".parse().unwrap(), "10.0.0.1:53".parse().unwrap()]
        );
        assert!(parse_servers("nonsense").is_err());
        assert!(DnsError::NoData.not_found() && !DnsError::Retry("x".into()).not_found());
    }
}
