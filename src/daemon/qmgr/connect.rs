//! Where the SMTP/LMTP client connects, and its TLS (Postfix smtp(8)'s
//! smtp_connect.c, smtp_addr.c and its `*_tls_security_level`):
//!
//! - Next hops: `unix:/path` (LMTP), `[host]:port` and `[host]` (no MX
//!   lookup), `host:port` and `host` (SMTP: MX lookup, the host's own
//!   addresses when it has no MX; LMTP: addresses only).
//! - MX hosts in preference order (shuffled within a preference), each
//!   one's addresses, at most `smtp_mx_address_limit` addresses and
//!   `smtp_mx_session_limit` sessions; a host that is this machine
//!   (`myhostname`) and those after it are skipped ("loops back to
//!   myself"); a null MX bounces.  A name that does not exist bounces
//!   (5.4.4), a failed lookup defers (4.4.3); unreachable hosts defer.
//! - `smtp_host_lookup`/`lmtp_host_lookup`: `dns`, `native` or both.
//! - STARTTLS per `smtp_tls_security_level` / `lmtp_tls_security_level`
//!   (`none`, `may`, `encrypt`, `verify`, `secure`; `dane` counts as `may`,
//!   `dane-only` as `encrypt`); `verify`/`secure` check the certificate
//!   against `smtp_tls_CAfile`/`smtp_tls_CApath` and the MX host name
//!   (`verify`) or the next-hop domain (`secure`).
//! - SASL (`smtp_sasl_auth_enable`, `lmtp_sasl_auth_enable`): PLAIN or
//!   LOGIN with `username:password` from `*_sasl_password_maps`, looked
//!   up by the next hop as written, then the server's name; the
//!   mechanisms allowed by `*_sasl_security_options` (or
//!   `*_sasl_tls_security_options` under TLS) and
//!   `*_sasl_mechanism_filter`.

use crate::config::postfix::Params;
use crate::dns::{Dns, DnsError};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsLevel {
    None,
    May,
    Encrypt,
    Verify,
    Secure,
}

/// A next hop's TLS policy: its level and `match=` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub level: TlsLevel,
    pub matches: Vec<String>,
}

/// Checks the chain against the CAs and the name against a list: a
/// name, or `.domain` for any name below it (tried with each of the
/// certificate's DNS names under that domain, each checked by webpki).
#[derive(Debug)]
struct MatchVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    names: Vec<String>,
}

impl rustls::client::danger::ServerCertVerifier for MatchVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use rustls::pki_types::ServerName;
        let sans: Vec<String> = webpki::EndEntityCert::try_from(end_entity)
            .map(|c| c.valid_dns_names().map(|n| n.to_ascii_lowercase()).collect())
            .unwrap_or_default();
        let mut candidates: Vec<String> = Vec::new();
        for n in &self.names {
            if n.starts_with('.') {
                candidates.extend(sans.iter().filter(|s| s.ends_with(n.as_str()) && s.len() > n.len()).cloned());
            } else {
                candidates.push(n.clone());
            }
        }
        let mut last = rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName);
        let mut tried = false;
        for c in candidates {
            let Ok(name) = ServerName::try_from(c) else { continue };
            tried = true;
            match self.inner.verify_server_cert(end_entity, intermediates, &name, ocsp, now) {
                Ok(v) => return Ok(v),
                Err(e @ rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
                | Err(e @ rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForNameContext { .. })) => last = e,
                Err(e) => return Err(e),
            }
        }
        // No candidate was tried: still report an untrusted chain as such
        // (a tried one already checked the chain).
        let probe = ServerName::try_from("invalid.invalid").expect("static name");
        if tried {
            return Err(last);
        }
        if let Err(e) = self.inner.verify_server_cert(end_entity, intermediates, &probe, ocsp, now) {
            let name_only = matches!(
                e,
                rustls::Error::InvalidCertificate(
                    rustls::CertificateError::NotValidForName | rustls::CertificateError::NotValidForNameContext { .. }
                )
            );
            if !name_only {
                return Err(e);
            }
        }
        Err(last)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// One client personality's settings (`smtp_*` or `lmtp_*`).
pub struct ClientConf {
    pub smtp: bool,
    dns: bool,
    native: bool,
    mx_address_limit: usize,
    mx_session_limit: usize,
    pub connect_timeout: Duration,
    pub tls_level: TlsLevel,
    pub tls_loglevel: i64,
    /// No certificate check (may, encrypt).
    tls_any: Arc<rustls::ClientConfig>,
    /// The chain checked against the configured CAs (verify, secure).
    tls_verify: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    /// `*_tls_policy_maps`: per next hop, a level and its attributes.
    policy_maps: crate::tables::Maps,
    /// `*_tls_verify_cert_match`, `*_tls_secure_cert_match`.
    verify_match: Vec<String>,
    secure_match: Vec<String>,
    pub myhostname: String,
    pub sasl: Option<Sasl>,
    /// `*_line_length_limit`: longer lines of the message go out broken
    /// with CRLF SPACE (0: not broken).
    pub line_length_limit: usize,
    /// `*_tcp_port`: the port of a next hop that names none.
    pub tcp_port: u16,
    /// The `*_timeout`s of each stage of a session.
    pub timeouts: Timeouts,
    /// `*_bind_address`, `*_bind_address6`: the local address of
    /// connections out (per family).
    pub bind4: Option<IpAddr>,
    pub bind6: Option<IpAddr>,
}

/// How long the client waits for each reply (and for the message's
/// writes), as Postfix's `smtp_*_timeout`/`lmtp_*_timeout` say.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// The greeting, EHLO/LHLO/HELO and AUTH (`*_helo_timeout`,
    /// `lmtp_lhlo_timeout`).
    pub helo: Duration,
    pub starttls: Duration,
    pub mail: Duration,
    pub rcpt: Duration,
    /// The reply to DATA.
    pub data_init: Duration,
    /// Each write of the message.
    pub data_xfer: Duration,
    /// The reply(s) after the final dot.
    pub data_done: Duration,
    pub rset: Duration,
    pub quit: Duration,
}

/// The client's SASL settings.
pub struct Sasl {
    maps: crate::tables::Maps,
    /// Plaintext mechanisms allowed without / with TLS.
    plain_ok: bool,
    plain_ok_tls: bool,
    /// `*_sasl_mechanism_filter` (upper case; empty: all).
    filter: Vec<String>,
}

impl Sasl {
    /// `username:password` for a next hop (as written, then the
    /// server's host name, then the bare next-hop host).
    pub fn credentials(&self, nexthop: &str, host: &str) -> Result<Option<(String, String)>, String> {
        let bare = nexthop.trim_start_matches('[').split([']', ':']).next().unwrap_or("").to_string();
        let mut keys = vec![nexthop.to_string(), host.to_string(), bare];
        keys.dedup();
        match self.maps.lookup_keys(&keys) {
            Ok(Some((v, _))) => Ok(v.split_once(':').map(|(u, p)| (u.to_string(), p.to_string()))),
            Ok(None) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Whether to log in with Kerberos: the server offers GSSAPI, the
    /// mechanism filter allows it, and the password map gives no
    /// password (`user:`) or the filter names GSSAPI alone.
    pub fn wants_gssapi(&self, offered: &[String], password: &str) -> bool {
        cfg!(feature = "krb5")
            && offered.iter().any(|o| o == "GSSAPI")
            && (self.filter.is_empty() || self.filter.iter().any(|f| f == "GSSAPI"))
            && (password.is_empty() || self.filter == ["GSSAPI"])
    }

    /// The mechanism to use of those the server offers: PLAIN, else LOGIN.
    pub fn choose(&self, offered: &[String], tls: bool) -> Option<&'static str> {
        if !(if tls { self.plain_ok_tls } else { self.plain_ok }) {
            return None;
        }
        ["PLAIN", "LOGIN"]
            .into_iter()
            .find(|m| offered.iter().any(|o| o == m) && (self.filter.is_empty() || self.filter.iter().any(|f| f == m)))
    }
}

/// A delivery-stopping failure before any transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Permanent (the recipients bounce) rather than temporary.
    pub bounce: bool,
    pub dsn: String,
    pub text: String,
}

impl Failure {
    pub fn defer(dsn: &str, text: impl Into<String>) -> Failure {
        Failure {
            bounce: false,
            dsn: dsn.into(),
            text: text.into(),
        }
    }

    fn bounce(dsn: &str, text: impl Into<String>) -> Failure {
        Failure {
            bounce: true,
            dsn: dsn.into(),
            text: text.into(),
        }
    }
}

/// A parsed next hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Unix(String),
    Inet { host: String, port: u16, mx: bool },
}

/// One address to try: the host's name (for logs and TLS) and address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addr {
    pub host: String,
    pub ip: IpAddr,
    pub port: u16,
}

fn roots(cafile: &str, capath: &str) -> Result<Option<rustls::RootCertStore>, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut files = Vec::new();
    if !cafile.is_empty() {
        files.push(std::path::PathBuf::from(cafile));
    }
    if !capath.is_empty() {
        let rd = std::fs::read_dir(capath).map_err(|e| format!("{capath}: {e}"))?;
        files.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_file()));
    }
    if files.is_empty() {
        return Ok(None);
    }
    let mut store = rustls::RootCertStore::empty();
    for f in files {
        let certs = CertificateDer::pem_file_iter(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        for c in certs.flatten() {
            let _ = store.add(c);
        }
    }
    Ok((!store.is_empty()).then_some(store))
}

impl ClientConf {
    /// The `smtp_*` (smtp true) or `lmtp_*` settings.
    pub fn load(p: &Params, smtp: bool, myhostname: &str) -> Result<ClientConf, String> {
        let pre = if smtp { "smtp" } else { "lmtp" };
        let get = |n: &str| p.get(&format!("{pre}_{n}")).unwrap_or_default().trim().to_string();
        let lookup = get("host_lookup").to_ascii_lowercase();
        let kinds = crate::config::postfix::list::split_list(&lookup);
        let dns = kinds.is_empty() || kinds.contains(&"dns");
        let native = kinds.contains(&"native");
        let int = |n: &str, d: usize| get(n).parse::<usize>().unwrap_or(d);
        let legacy = if get("enforce_tls") == "yes" {
            "encrypt"
        } else if get("use_tls") == "yes" {
            "may"
        } else {
            "none"
        };
        let level_text = get("tls_security_level");
        let tls_level = match if level_text.is_empty() { legacy } else { level_text.as_str() } {
            "none" => TlsLevel::None,
            "may" | "dane" => TlsLevel::May,
            "encrypt" | "dane-only" => TlsLevel::Encrypt,
            "verify" | "fingerprint" => TlsLevel::Verify,
            "secure" => TlsLevel::Secure,
            v => return Err(format!("invalid {pre}_tls_security_level value: \"{v}\"")),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let any = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(crate::util::tls::NoPeerCheck(provider.clone())))
            .with_no_client_auth();
        let verify = match roots(&get("tls_CAfile"), &get("tls_CApath"))? {
            Some(store) => Some(
                rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
                    .build()
                    .map_err(|e| format!("TLS: {e}"))?,
            ),
            None => None,
        };
        let policy_specs: Vec<String> = crate::config::postfix::list::split_list(&get("tls_policy_maps"))
            .into_iter()
            .map(str::to_string)
            .collect();
        let policy_maps = crate::tables::Maps::open(&policy_specs).map_err(|e| format!("{pre}_tls_policy_maps: {e}"))?;
        let list = |n: &str, d: &str| -> Vec<String> {
            let v = get(n);
            let v = if v.is_empty() { d.to_string() } else { v };
            crate::config::postfix::list::split_list(&v)
                .into_iter()
                .map(|s| s.to_ascii_lowercase())
                .collect()
        };
        let timeout = p.get_time(&format!("{pre}_connect_timeout")).unwrap_or(Duration::ZERO);
        let sasl = if get("sasl_auth_enable") == "yes" {
            let specs: Vec<String> = crate::config::postfix::list::split_list(&get("sasl_password_maps"))
                .into_iter()
                .map(str::to_string)
                .collect();
            let maps = crate::tables::Maps::open(&specs).map_err(|e| format!("{pre}_sasl_password_maps: {e}"))?;
            let opts = |n: &str| -> bool {
                let v = get(n).to_ascii_lowercase();
                let v = if v.is_empty() { "noplaintext, noanonymous".to_string() } else { v };
                !crate::config::postfix::list::split_list(&v).contains(&"noplaintext")
            };
            let tls_opts = if get("sasl_tls_security_options").is_empty() {
                opts("sasl_security_options")
            } else {
                opts("sasl_tls_security_options")
            };
            Some(Sasl {
                maps,
                plain_ok: opts("sasl_security_options"),
                plain_ok_tls: tls_opts,
                filter: crate::config::postfix::list::split_list(&get("sasl_mechanism_filter"))
                    .into_iter()
                    .map(|m| m.to_ascii_uppercase())
                    .collect(),
            })
        } else {
            None
        };
        let port = get("tcp_port");
        let tcp_port = match port.as_str() {
            "" => {
                if smtp {
                    25
                } else {
                    24
                }
            }
            p => service_port(p).ok_or_else(|| format!("{pre}_tcp_port: bad port \"{p}\""))?,
        };
        let bind = |n: &str, v6: bool| -> Result<Option<IpAddr>, String> {
            match get(n).as_str() {
                "" => Ok(None),
                a => match a.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
                    Ok(ip) if ip.is_ipv6() == v6 => Ok(Some(ip)),
                    _ => Err(format!("{pre}_{n}: bad address \"{a}\"")),
                },
            }
        };
        let (bind4, bind6) = (bind("bind_address", false)?, bind("bind_address6", true)?);
        let t = |n: &str, d: u64| -> Duration {
            p.get_time(&format!("{pre}_{n}"))
                .ok()
                .filter(|d| !d.is_zero())
                .unwrap_or(Duration::from_secs(d))
        };
        let timeouts = Timeouts {
            helo: if smtp { t("helo_timeout", 300) } else { t("lhlo_timeout", 300) },
            starttls: t("starttls_timeout", 300),
            mail: t("mail_timeout", 300),
            rcpt: t("rcpt_timeout", 300),
            data_init: t("data_init_timeout", 120),
            data_xfer: t("data_xfer_timeout", 180),
            data_done: t("data_done_timeout", 600),
            rset: t("rset_timeout", 20),
            quit: t("quit_timeout", 300),
        };
        Ok(ClientConf {
            smtp,
            dns,
            native,
            mx_address_limit: int("mx_address_limit", 5),
            mx_session_limit: int("mx_session_limit", 2),
            connect_timeout: if timeout.is_zero() { Duration::from_secs(300) } else { timeout },
            tls_level,
            tls_loglevel: get("tls_loglevel").parse().unwrap_or(0),
            tls_any: Arc::new(any),
            tls_verify: verify,
            provider,
            policy_maps,
            verify_match: list("tls_verify_cert_match", "hostname"),
            secure_match: list("tls_secure_cert_match", "nexthop, dot-nexthop"),
            myhostname: myhostname.to_string(),
            sasl,
            line_length_limit: int("line_length_limit", 998),
            tcp_port,
            timeouts,
            bind4,
            bind6,
        })
    }

    /// The TLS policy for a next hop (as written in the transport, with
    /// brackets and port): `*_tls_policy_maps` (the next hop, then for a
    /// domain its parents as `.parent`), else `*_tls_security_level`.
    pub fn policy(&self, nexthop: &str) -> Result<Policy, Failure> {
        let default = Policy {
            level: self.tls_level,
            matches: Vec::new(),
        };
        if self.policy_maps.is_empty() || nexthop.is_empty() {
            return Ok(default);
        }
        let key = nexthop.to_ascii_lowercase();
        let mut keys = vec![key.clone()];
        if !key.starts_with('[') {
            let host = key.split(':').next().unwrap_or("");
            if host != key {
                keys.push(host.to_string());
            }
            let mut rest = host;
            while let Some(i) = rest.find('.') {
                keys.push(rest[i..].to_string());
                rest = &rest[i + 1..];
            }
        }
        let value = match self.policy_maps.lookup_keys(&keys) {
            Ok(None) => return Ok(default),
            Ok(Some((v, _))) => v,
            Err(e) => return Err(Failure::defer("4.3.0", format!("TLS policy lookup for {nexthop}: {e}"))),
        };
        let mut words = value.split_whitespace();
        let level = match words.next().unwrap_or("").to_ascii_lowercase().as_str() {
            "none" => TlsLevel::None,
            "may" | "dane" => TlsLevel::May,
            "encrypt" | "dane-only" => TlsLevel::Encrypt,
            "verify" | "fingerprint" => TlsLevel::Verify,
            "secure" => TlsLevel::Secure,
            other => {
                return Err(Failure::defer(
                    "4.7.5",
                    format!("TLS policy lookup for {nexthop}: invalid TLS security level \"{other}\""),
                ))
            }
        };
        let matches = words
            .filter_map(|w| w.strip_prefix("match="))
            .flat_map(|m| m.split(':'))
            .filter(|m| !m.is_empty())
            .map(str::to_ascii_lowercase)
            .collect();
        Ok(Policy { level, matches })
    }

    /// The rustls configuration and server name for a TLS session to
    /// `host` (next hop `domain`) under `policy`: for verify and secure,
    /// the certificate must name one of the policy's `match=` names (or
    /// `*_tls_verify_cert_match` / `*_tls_secure_cert_match`), where
    /// `hostname` is the server's name, `nexthop` the next-hop domain and
    /// `dot-nexthop` any name below it.
    pub fn tls_for(
        &self,
        host: &str,
        ip: IpAddr,
        domain: &str,
        policy: &Policy,
    ) -> Result<(Arc<rustls::ClientConfig>, rustls::pki_types::ServerName<'static>), Failure> {
        use rustls::pki_types::ServerName;
        let name_of = |n: &str| ServerName::try_from(n.to_string()).ok();
        let sni = name_of(host).unwrap_or(ServerName::IpAddress(ip.into()));
        match policy.level {
            TlsLevel::Verify | TlsLevel::Secure => {
                let Some(roots) = &self.tls_verify else {
                    return Err(Failure::defer("4.7.5", "Server certificate not trusted"));
                };
                let list = match (policy.matches.is_empty(), policy.level) {
                    (false, _) => &policy.matches,
                    (true, TlsLevel::Secure) => &self.secure_match,
                    _ => &self.verify_match,
                };
                let names: Vec<String> = list
                    .iter()
                    .map(|m| match m.as_str() {
                        "hostname" => host.to_ascii_lowercase(),
                        "nexthop" => domain.to_ascii_lowercase(),
                        "dot-nexthop" => format!(".{}", domain.to_ascii_lowercase()),
                        other => other.to_string(),
                    })
                    .collect();
                let verifier = Arc::new(MatchVerifier {
                    inner: roots.clone(),
                    names,
                });
                let cfg = rustls::ClientConfig::builder_with_provider(self.provider.clone())
                    .with_safe_default_protocol_versions()
                    .map_err(|e| Failure::defer("4.7.5", format!("TLS: {e}")))?
                    .dangerous()
                    .with_custom_certificate_verifier(verifier)
                    .with_no_client_auth();
                Ok((Arc::new(cfg), sni))
            }
            _ => Ok((self.tls_any.clone(), sni)),
        }
    }

    /// The addresses to try for a host (no MX): DNS and/or the system's
    /// resolver, per `*_host_lookup`.
    async fn host_addrs(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let mut last = DnsError::NoHost;
        if self.dns {
            match Dns::shared().addrs(host).await {
                Ok(v) => return Ok(v),
                Err(e) => last = e,
            }
        }
        if self.native {
            match tokio::net::lookup_host((host, 0)).await {
                Ok(it) => {
                    let v: Vec<IpAddr> = it.map(|a| a.ip()).collect();
                    if !v.is_empty() {
                        return Ok(v);
                    }
                }
                Err(e) if e.to_string().contains("Temporary failure") => last = DnsError::Retry(e.to_string()),
                Err(_) => {}
            }
        }
        Err(last)
    }

    /// The addresses to try for a next hop, in order.  `notes` gets the
    /// warnings Postfix would log (an MX host without addresses).
    pub async fn addresses(&self, host: &str, port: u16, mx: bool, notes: &mut Vec<String>) -> Result<Vec<Addr>, Failure> {
        let not_found = |name: &str, kind: &str, e: &DnsError| {
            let what = format!("Host or domain name not found. Name service error for name={name} type={kind}: Host not found");
            match e {
                DnsError::Retry(_) => Failure::defer("4.4.3", format!("{what}, try again")),
                _ => Failure::bounce("5.4.4", what),
            }
        };
        let one = |h: &str, ips: Vec<IpAddr>| -> Vec<Addr> {
            ips.into_iter()
                .map(|ip| Addr {
                    host: h.to_string(),
                    ip,
                    port,
                })
                .collect()
        };
        if !mx || host.parse::<IpAddr>().is_ok() || !self.dns {
            let ips = self.host_addrs(host).await.map_err(|e| not_found(host, "A", &e))?;
            return Ok(one(host, ips).into_iter().take(self.mx_address_limit.max(1)).collect());
        }
        let mut list = match Dns::shared().mx(host).await {
            Ok(v) => v,
            Err(DnsError::NoData) => {
                let ips = self.host_addrs(host).await.map_err(|e| not_found(host, "A", &e))?;
                return Ok(one(host, ips).into_iter().take(self.mx_address_limit.max(1)).collect());
            }
            Err(e) => return Err(not_found(host, "MX", &e)),
        };
        if list.iter().any(|m| m.host.is_empty()) {
            return Err(Failure::bounce("5.1.0", format!("Domain {host} does not accept mail (nullMX)")));
        }
        // This host and every one no better than it are skipped.
        if let Some(me) = list.iter().find(|m| m.host.eq_ignore_ascii_case(&self.myhostname)).map(|m| m.pref) {
            list.retain(|m| m.pref < me);
            if list.is_empty() {
                return Err(Failure::bounce("5.4.6", format!("mail for {host} loops back to myself")));
            }
        }
        shuffle_equal(&mut list);
        let mut out = Vec::new();
        let mut last_err = None;
        for m in &list {
            if out.len() >= self.mx_address_limit.max(1) {
                break;
            }
            match self.host_addrs(&m.host).await {
                Ok(ips) => out.extend(one(&m.host, ips)),
                Err(e) => {
                    let f = not_found(&m.host, "A", &e);
                    notes.push(format!("warning: {}", f.text));
                    last_err = Some(Failure::defer(if f.bounce { "4.4.4" } else { "4.4.3" }, f.text));
                }
            }
        }
        out.truncate(self.mx_address_limit.max(1));
        if out.is_empty() {
            return Err(last_err.unwrap_or_else(|| Failure::defer("4.4.4", format!("no mail exchanger for {host}"))));
        }
        Ok(out)
    }

    /// Most sessions (greetings received) tried per delivery.
    pub fn session_limit(&self) -> usize {
        if self.smtp {
            self.mx_session_limit.max(1)
        } else {
            usize::MAX
        }
    }
}

/// MX hosts of equal preference are tried in random order.
fn shuffle_equal(list: &mut [crate::dns::Mx]) {
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(1)
        | 1;
    let mut i = 0;
    while i < list.len() {
        let mut j = i + 1;
        while j < list.len() && list[j].pref == list[i].pref {
            j += 1;
        }
        for k in (i + 1..j).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let r = i + (seed as usize) % (k - i + 1);
            list.swap(k, r);
        }
        i = j;
    }
}

/// Parses a next hop (`unix:/path`, `inet:host:port`, `[host]:port`,
/// `host`); SMTP looks up MX records for names without brackets.
pub fn parse(nexthop: &str, smtp: bool) -> Result<Target, String> {
    parse_with_port(nexthop, smtp, if smtp { 25 } else { 24 })
}

/// A port number or one of the service names Postfix's clients use.
fn service_port(p: &str) -> Option<u16> {
    match p.parse::<u16>() {
        Ok(n) => Some(n),
        Err(_) => match p {
            "smtp" => Some(25),
            "lmtp" => Some(24),
            "submission" => Some(587),
            "smtps" | "submissions" => Some(465),
            _ => None,
        },
    }
}

/// `parse` with the port of a next hop that names none (`*_tcp_port`).
pub fn parse_with_port(nexthop: &str, smtp: bool, default_port: u16) -> Result<Target, String> {
    if let Some(path) = nexthop.strip_prefix("unix:") {
        return Ok(Target::Unix(path.to_string()));
    }
    let hp = nexthop.strip_prefix("inet:").unwrap_or(nexthop).trim();
    let (host, port, bracket) = if let Some(r) = hp.strip_prefix('[') {
        let (h, rest) = r.split_once(']').ok_or_else(|| format!("bad next hop: {nexthop}"))?;
        (h.to_string(), rest.strip_prefix(':').map(str::to_string), true)
    } else {
        match hp.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h.to_string(), Some(p.to_string()), false),
            _ => (hp.to_string(), None, false),
        }
    };
    let port = match port {
        None => default_port,
        Some(p) => service_port(&p).ok_or_else(|| format!("bad port in next hop: {nexthop}"))?,
    };
    if host.is_empty() {
        return Err(format!("bad next hop: {nexthop}"));
    }
    let host = host.trim_start_matches("IPv6:").trim_start_matches("ipv6:").to_string();
    Ok(Target::Inet {
        mx: smtp && !bracket && host.parse::<IpAddr>().is_err(),
        host,
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_hops() {
        assert_eq!(parse("unix:/run/lmtp", false).unwrap(), Target::Unix("/run/lmtp".into()));
        assert_eq!(
            parse("inet:10.0.0.1:2003", false).unwrap(),
            Target::Inet {
                host: "10.0.0.1".into(),
                port: 2003,
                mx: false
            }
        );
        assert_eq!(
            parse("[mx.example]:587", true).unwrap(),
            Target::Inet {
                host: "mx.example".into(),
                port: 587,
                mx: false
            }
        );
        assert_eq!(
            parse("example.org", true).unwrap(),
            Target::Inet {
                host: "example.org".into(),
                port: 25,
                mx: true
            }
        );
        assert_eq!(
            parse("backend:lmtp", false).unwrap(),
            Target::Inet {
                host: "backend".into(),
                port: 24,
                mx: false
            }
        );
        assert!(parse("[::1", true).is_err());
        let mut l: Vec<crate::dns::Mx> = (0..6)
            .map(|i| crate::dns::Mx {
                pref: if i < 3 { 10 } else { 20 },
                host: format!("h{i}"),
            })
            .collect();
        shuffle_equal(&mut l);
        assert!(l[..3].iter().all(|m| m.pref == 10) && l[3..].iter().all(|m| m.pref == 20));
    }
}
