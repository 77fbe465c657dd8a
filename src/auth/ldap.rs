//! `ldap`: checks a password against an LDAP directory (Active Directory,
//! OpenLDAP) as saslauthd's LDAP module does, configured by
//! /etc/saslauthd.conf: `ldap_servers` tried in order, `ldap_auth_method`
//! `bind` (search the user's DN — as `ldap_bind_dn` or anonymously — then
//! bind as the user), `fastbind` (bind as the DN `ldap_filter` expands to)
//! or `custom` (compare `ldap_password_attr`), `ldap_filter` tokens
//! `%% %u %U %d %D %r %s %1-%9`, StartTLS, timeouts.  Connections are kept
//! in two pools — service-bound ones for searches, others for the users'
//! binds — so no connection is rebound between requests, and a user's DN
//! is remembered for a while so that a repeat login is a single bind.

use super::{BoxFut, Credentials, Mechanism, Notes, Verdict};
use crate::config::sasl::SaslauthdConf;
use ldap3::{DerefAliases, Ldap as Handle, LdapConnAsync, LdapConnSettings, Scope, SearchEntry, SearchOptions};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Bind,
    Fastbind,
    Custom,
}

pub struct Settings {
    pub servers: Vec<String>,
    pub search_base: String,
    pub filter: String,
    pub method: Method,
    pub bind_dn: String,
    pub bind_pw: String,
    pub scope: Scope,
    pub deref: DerefAliases,
    pub timeout: Duration,
    pub time_limit: i32,
    pub start_tls: bool,
    pub check_peer: bool,
    pub password_attr: String,
    pub default_realm: String,
    pub cacert_file: String,
    pub cacert_dir: String,
    /// `ldap_tls_cert` / `ldap_tls_key`: a client certificate (PEM).
    pub client_cert: String,
    pub client_key: String,
    /// `ldap_version` (2 or 3).
    pub version: u8,
}

impl Settings {
    pub fn from_conf(c: &SaslauthdConf) -> Result<Settings, String> {
        let secs = |k: &str| {
            c.get(k)
                .parse::<u64>()
                .map_err(|_| format!("{}: bad value for {k}: {}", c.path, c.get(k)))
        };
        let yes = |k: &str| matches!(c.get(k).to_ascii_lowercase().as_str(), "yes" | "on" | "true" | "1");
        // Options that restrict or change who may log in are refused
        // rather than ignored: ignoring them would let more users in.
        for k in ["ldap_group_dn", "ldap_group_filter"] {
            if !c.get(k).is_empty() {
                return Err(format!("{}: {k} (group membership checks) is not supported", c.path));
            }
        }
        if yes("ldap_use_sasl") {
            return Err(format!("{}: ldap_use_sasl (SASL binds) is not supported", c.path));
        }
        let bind_pw = if c.values.contains_key("ldap_bind_pw") {
            c.get("ldap_bind_pw")
        } else {
            c.get("ldap_password")
        };
        Ok(Settings {
            servers: c.get("ldap_servers").split_whitespace().map(String::from).collect(),
            search_base: c.get("ldap_search_base").to_string(),
            filter: c.get("ldap_filter").to_string(),
            method: match c.get("ldap_auth_method") {
                "bind" => Method::Bind,
                "fastbind" => Method::Fastbind,
                "custom" => Method::Custom,
                m => return Err(format!("{}: unknown ldap_auth_method {m}", c.path)),
            },
            bind_dn: c.get("ldap_bind_dn").to_string(),
            bind_pw: bind_pw.to_string(),
            scope: scope_of(c.get("ldap_scope")),
            deref: deref_of(c.get("ldap_deref")),
            timeout: Duration::from_secs(secs("ldap_timeout")?.max(1)),
            time_limit: secs("ldap_time_limit")? as i32,
            start_tls: yes("ldap_start_tls"),
            check_peer: yes("ldap_tls_check_peer"),
            password_attr: c.get("ldap_password_attr").to_string(),
            default_realm: c.get("ldap_default_realm").to_string(),
            cacert_file: c.get("ldap_tls_cacert_file").to_string(),
            cacert_dir: c.get("ldap_tls_cacert_dir").to_string(),
            client_cert: c.get("ldap_tls_cert").to_string(),
            client_key: c.get("ldap_tls_key").to_string(),
            version: match c.get("ldap_version") {
                "2" => 2,
                "3" => 3,
                v => return Err(format!("{}: bad value for ldap_version: {v} (2 or 3)", c.path)),
            },
        })
    }
}

/// An `ldap_scope`-style value: `one` (`onelevel`), `base`, else subtree.
pub fn scope_of(v: &str) -> Scope {
    match v.to_ascii_lowercase().as_str() {
        "one" | "onelevel" => Scope::OneLevel,
        "base" => Scope::Base,
        _ => Scope::Subtree,
    }
}

/// An `ldap_deref`-style value: `search`, `find`, `always`, else never.
pub fn deref_of(v: &str) -> DerefAliases {
    match v.to_ascii_lowercase().as_str() {
        "search" => DerefAliases::Searching,
        "find" => DerefAliases::Finding,
        "always" => DerefAliases::Always,
        _ => DerefAliases::Never,
    }
}

/// RFC 4515 escaping of a value placed in a filter.
pub fn escape_filter(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '*' => out.push_str("\\2a"),
            '(' => out.push_str("\\28"),
            ')' => out.push_str("\\29"),
            '\\' => out.push_str("\\5c"),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    out
}

/// RFC 4514 escaping of a value placed in a DN (fastbind).
pub fn escape_dn(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, c) in v.chars().enumerate() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '#' | ' ' if i == 0 => {
                out.push('\\');
                out.push(c);
            }
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    out
}

/// Expands saslauthd's filter tokens; `esc` escapes the user-supplied parts.
pub fn expand(template: &str, login: &str, service: &str, realm: &str, default_realm: &str, esc: fn(&str) -> String) -> String {
    let (user, domain) = match login.rsplit_once('@') {
        Some((u, d)) => (u, d.to_string()),
        None => (
            login,
            if realm.is_empty() {
                default_realm.to_string()
            } else {
                realm.to_string()
            },
        ),
    };
    let labels: Vec<&str> = domain.split('.').filter(|s| !s.is_empty()).collect();
    let mut out = String::new();
    let mut it = template.chars();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('%') => out.push('%'),
            Some('u') => out.push_str(&esc(login)),
            Some('U') => out.push_str(&esc(user)),
            Some('d') => out.push_str(&esc(&domain)),
            Some('r') => out.push_str(&esc(realm)),
            Some('s') => out.push_str(&esc(service)),
            Some('D') => out.push_str(&labels.iter().map(|l| format!("dc={}", esc(l))).collect::<Vec<_>>().join(",")),
            Some(d @ '1'..='9') => {
                let n = d as usize - '0' as usize;
                if n <= labels.len() {
                    out.push_str(&esc(labels[labels.len() - n]));
                }
            }
            Some(o) => {
                out.push('%');
                out.push(o);
            }
            None => out.push('%'),
        }
    }
    out
}

/// A connection, tagged with the server it goes to.
struct Conn {
    url: String,
    handle: Handle,
}

pub struct Ldap {
    s: Settings,
    /// TLS trust for ldaps:// and StartTLS when `ldap_tls_check_peer: yes`
    /// (the CA file/dir, else the system store); None = ldap3's default.
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// Connections bound as the service account (or anonymously): searches.
    search_pool: Mutex<Vec<Conn>>,
    /// Connections used only for the users' own binds.
    bind_pool: Mutex<Vec<Conn>>,
    /// (login, service, realm) → (DN, found at): a repeat login binds at
    /// once instead of searching first.  A failed bind forgets the entry.
    dns: Mutex<HashMap<(String, String, String), (String, Instant)>>,
    /// saslauthd's `-n`: checks in progress at once (a queue beyond it, in
    /// arrival order); more only queue inside the server and stretch the
    /// slowest answers.
    busy: std::sync::Arc<tokio::sync::Semaphore>,
}

/// The TLS files of an LDAP client configuration, each with the name of
/// its parameter for error messages.
pub struct TlsFiles<'a> {
    /// Verify the server's certificate.
    pub check_peer: bool,
    pub ca_file: (&'a str, &'a str),
    pub ca_dir: (&'a str, &'a str),
    pub cert: (&'a str, &'a str),
    pub key: (&'a str, &'a str),
}

/// The rustls client configuration: trust from the CA file/dir (PEM)
/// when `check_peer` is on, a client certificate and key; None when none
/// of them applies (ldap3's defaults).
pub fn tls_client_config(t: &TlsFiles) -> Result<Option<std::sync::Arc<rustls::ClientConfig>>, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    let has_roots = t.check_peer && !(t.ca_file.1.is_empty() && t.ca_dir.1.is_empty());
    let has_client = !t.cert.1.is_empty() || !t.key.1.is_empty();
    if !has_roots && !has_client {
        return Ok(None);
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = if !t.check_peer {
        builder
            .dangerous()
            .with_custom_certificate_verifier(std::sync::Arc::new(crate::util::tls::NoPeerCheck(provider)))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        let mut files = Vec::new();
        if !t.ca_file.1.is_empty() {
            files.push(std::path::PathBuf::from(t.ca_file.1));
        }
        if !t.ca_dir.1.is_empty() {
            let rd = std::fs::read_dir(t.ca_dir.1).map_err(|e| format!("{} {}: {e}", t.ca_dir.0, t.ca_dir.1))?;
            files.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_file()));
        }
        for f in files {
            let certs = CertificateDer::pem_file_iter(&f).map_err(|e| format!("{}: {e}", f.display()))?;
            for c in certs.flatten() {
                let _ = roots.add(c);
            }
        }
        if roots.is_empty() {
            return Err(format!(
                "no CA certificate found for verifying the server (set {} or {})",
                t.ca_file.0, t.ca_dir.0
            ));
        }
        builder.with_root_certificates(roots)
    };
    let cfg = if has_client {
        if t.cert.1.is_empty() || t.key.1.is_empty() {
            return Err(format!("{} and {} must be set together", t.cert.0, t.key.0));
        }
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(t.cert.1)
            .map_err(|e| format!("{} {}: {e}", t.cert.0, t.cert.1))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{} {}: {e}", t.cert.0, t.cert.1))?;
        if certs.is_empty() {
            return Err(format!("{} {}: no certificate found", t.cert.0, t.cert.1));
        }
        let key = PrivateKeyDer::from_pem_file(t.key.1).map_err(|e| format!("{} {}: {e}", t.key.0, t.key.1))?;
        builder
            .with_client_auth_cert(certs, key)
            .map_err(|e| format!("{}/{}: {e}", t.cert.0, t.key.0))?
    } else {
        builder.with_no_client_auth()
    };
    Ok(Some(std::sync::Arc::new(cfg)))
}

fn tls_config(s: &Settings) -> Result<Option<std::sync::Arc<rustls::ClientConfig>>, String> {
    tls_client_config(&TlsFiles {
        check_peer: s.check_peer,
        ca_file: ("ldap_tls_cacert_file", &s.cacert_file),
        ca_dir: ("ldap_tls_cacert_dir", &s.cacert_dir),
        cert: ("ldap_tls_cert", &s.client_cert),
        key: ("ldap_tls_key", &s.client_key),
    })
}

/// Most connections kept per pool; extra ones are closed after use.
const POOL_MAX: usize = 32;
/// How long a user's DN is trusted without searching again.
const DN_TTL: Duration = Duration::from_secs(300);
/// Most DNs remembered.
const DN_MAX: usize = 100_000;

fn take(pool: &Mutex<Vec<Conn>>, url: &str) -> Option<Handle> {
    let mut p = pool.lock().ok()?;
    let i = p.iter().rposition(|c| c.url == url)?;
    Some(p.swap_remove(i).handle)
}

fn give_back(pool: &Mutex<Vec<Conn>>, url: &str, handle: Handle) {
    if let Ok(mut p) = pool.lock() {
        if p.len() < POOL_MAX {
            p.push(Conn {
                url: url.to_string(),
                handle,
            });
        }
    }
}

impl Ldap {
    pub fn new(c: &SaslauthdConf, busy: std::sync::Arc<tokio::sync::Semaphore>) -> Result<Ldap, String> {
        let s = Settings::from_conf(c)?;
        if s.servers.is_empty() {
            return Err(format!("{}: ldap_servers is empty", c.path));
        }
        let tls = tls_config(&s).map_err(|e| format!("{}: {e}", c.path))?;
        Ok(Ldap {
            s,
            tls,
            search_pool: Mutex::new(Vec::new()),
            bind_pool: Mutex::new(Vec::new()),
            dns: Mutex::new(HashMap::new()),
            busy,
        })
    }

    async fn connect(&self, url: &str) -> Result<Handle, String> {
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(self.s.timeout)
            .set_starttls(self.s.start_tls);
        if let Some(cfg) = &self.tls {
            settings = settings.set_config(cfg.clone());
        } else if !self.s.check_peer {
            settings = settings.set_no_tls_verify(true);
        }
        let (conn, handle) = LdapConnAsync::with_settings(settings, url)
            .await
            .map_err(|e| format!("ldap server {url}: {e}"))?;
        ldap3::drive!(conn);
        Ok(handle)
    }

    /// A connection bound as the service account, from the pool or new.
    async fn search_conn(&self, url: &str) -> Result<Handle, String> {
        if let Some(h) = take(&self.search_pool, url) {
            return Ok(h);
        }
        let mut h = self.connect(url).await?;
        let r = h
            .with_timeout(self.s.timeout)
            .simple_bind(&self.s.bind_dn, &self.s.bind_pw)
            .await
            .map_err(|e| format!("ldap server {url}: {e}"))?;
        if r.rc != 0 {
            return Err(format!(
                "ldap server {url}: bind as {:?} failed: rc={} {}",
                self.s.bind_dn, r.rc, r.text
            ));
        }
        Ok(h)
    }

    /// Binds as `dn`: Ok(true) accepted, Ok(false) refused.
    async fn user_bind(&self, url: &str, dn: &str, pw: &str) -> Result<bool, String> {
        let mut h = match take(&self.bind_pool, url) {
            Some(h) => h,
            None => self.connect(url).await?,
        };
        let r = h
            .with_timeout(self.s.timeout)
            .simple_bind(dn, pw)
            .await
            .map_err(|e| format!("ldap server {url}: {e}"))?;
        give_back(&self.bind_pool, url, h);
        Ok(r.rc == 0)
    }

    async fn find(&self, url: &str, c: &Credentials, attrs: Vec<&str>) -> Result<Option<SearchEntry>, String> {
        let mut h = self.search_conn(url).await?;
        let filter = expand(&self.s.filter, &c.login, &c.service, &c.realm, &self.s.default_realm, escape_filter);
        let base = expand(
            &self.s.search_base,
            &c.login,
            &c.service,
            &c.realm,
            &self.s.default_realm,
            escape_dn,
        );
        let opts = SearchOptions::new().deref(self.s.deref).timelimit(self.s.time_limit).sizelimit(2);
        let res = h
            .with_search_options(opts)
            .with_timeout(self.s.timeout)
            .search(&base, self.s.scope, &filter, attrs)
            .await
            .map_err(|e| format!("ldap server {url}: {e}"))?;
        let (entries, result) = (res.0, res.1);
        // 32 noSuchObject, 4 sizeLimitExceeded: answers, not failures.
        if result.rc != 0 && result.rc != 32 && result.rc != 4 {
            return Err(format!("ldap server {url}: search failed: rc={} {}", result.rc, result.text));
        }
        give_back(&self.search_pool, url, h);
        if entries.len() != 1 {
            return Ok(None);
        }
        Ok(entries.into_iter().next().map(SearchEntry::construct))
    }

    async fn attempt(&self, url: &str, c: &Credentials) -> Result<Verdict, String> {
        let pw = c.password.expose();
        let yes = |ok: bool| if ok { Verdict::Ok } else { Verdict::No(String::new()) };
        match self.s.method {
            Method::Fastbind => {
                let dn = expand(&self.s.filter, &c.login, &c.service, &c.realm, &self.s.default_realm, escape_dn);
                Ok(yes(self.user_bind(url, &dn, pw).await?))
            }
            Method::Custom => {
                let entry = self.find(url, c, vec![self.s.password_attr.as_str()]).await?;
                let ok = entry.is_some_and(|e| {
                    e.attrs
                        .get(&self.s.password_attr)
                        .is_some_and(|v| v.iter().any(|s| password_matches(pw, s)))
                });
                Ok(yes(ok))
            }
            Method::Bind => {
                let key = (c.login.clone(), c.service.clone(), c.realm.clone());
                let known = self
                    .dns
                    .lock()
                    .ok()
                    .and_then(|m| m.get(&key).filter(|(_, at)| at.elapsed() < DN_TTL).map(|(dn, _)| dn.clone()));
                if let Some(dn) = known {
                    if self.user_bind(url, &dn, pw).await? {
                        return Ok(Verdict::Ok);
                    }
                    if let Ok(mut m) = self.dns.lock() {
                        m.remove(&key);
                    }
                }
                let Some(entry) = self.find(url, c, vec!["1.1"]).await? else {
                    return Ok(Verdict::No(String::new()));
                };
                let ok = self.user_bind(url, &entry.dn, pw).await?;
                if ok {
                    if let Ok(mut m) = self.dns.lock() {
                        if m.len() >= DN_MAX {
                            m.clear();
                        }
                        m.insert(key, (entry.dn, Instant::now()));
                    }
                }
                Ok(yes(ok))
            }
        }
    }
}

/// `ldap_auth_method: custom`: compares with a stored `userPassword`
/// (`{CRYPT}`, `{SHA}`, `{SSHA}`, or clear text).
pub fn password_matches(pw: &str, stored: &str) -> bool {
    use base64_lite::decode;
    let lower = stored.to_ascii_lowercase();
    if lower.starts_with("{crypt}") {
        return super::shadow::crypt_matches(pw.as_bytes(), &stored[7..]);
    }
    if lower.starts_with("{ssha}") || lower.starts_with("{sha}") {
        let salted = lower.starts_with("{ssha}");
        let Some(raw) = decode(&stored[if salted { 6 } else { 5 }..]) else {
            return false;
        };
        if raw.len() < 20 {
            return false;
        }
        let (digest, salt) = raw.split_at(20);
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
        ctx.update(pw.as_bytes());
        ctx.update(salt);
        return crate::util::ct_eq(ctx.finish().as_ref(), digest);
    }
    if stored.starts_with('{') {
        return false;
    }
    crate::util::ct_eq(pw.as_bytes(), stored.as_bytes())
}

/// A small standard base64 decoder for `{SSHA}` values.
mod base64_lite {
    pub fn decode(s: &str) -> Option<Vec<u8>> {
        let val = |c: u8| -> Option<u32> {
            Some(match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                _ => return None,
            } as u32)
        };
        let bytes: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
        let trimmed: Vec<u8> = bytes.iter().copied().take_while(|&c| c != b'=').collect();
        let mut out = Vec::with_capacity(trimmed.len() * 3 / 4);
        for chunk in trimmed.chunks(4) {
            let mut acc = 0u32;
            for (i, &c) in chunk.iter().enumerate() {
                acc |= val(c)? << (18 - 6 * i);
            }
            let n = match chunk.len() {
                4 => 3,
                3 => 2,
                2 => 1,
                _ => return None,
            };
            for i in 0..n {
                out.push((acc >> (16 - 8 * i)) as u8);
            }
        }
        Some(out)
    }
}

impl Mechanism for Ldap {
    fn name(&self) -> &'static str {
        "ldap"
    }

    fn startup_notes(&self) -> Notes {
        if self.s.version == 2 {
            // LDAPv2 is historic (RFC 3494); every server that still takes
            // a v2 bind (Active Directory, OpenLDAP with allow bind_v2)
            // takes v3, and v3 is all our client speaks.
            vec!["ldap_version: 2 requested; speaking LDAPv3 (LDAPv2 is historic, RFC 3494)".into()]
        } else {
            Vec::new()
        }
    }

    fn check<'a>(&'a self, c: &'a Credentials) -> BoxFut<'a, (Verdict, Notes)> {
        Box::pin(async move {
            let Ok(_busy) = self.busy.acquire().await else {
                return (Verdict::unavailable("LDAP server unavailable"), Vec::new());
            };
            let mut notes = Vec::new();
            for url in &self.s.servers {
                // A pooled connection may have gone stale (server restarted):
                // on failure retry once on fresh connections, then fail over.
                for attempt in 0..2 {
                    match self.attempt(url, c).await {
                        Ok(v) => return (v, notes),
                        Err(e) => {
                            for pool in [&self.search_pool, &self.bind_pool] {
                                if let Ok(mut p) = pool.lock() {
                                    p.retain(|c| c.url != *url);
                                }
                            }
                            if attempt == 1 {
                                notes.push(e);
                            }
                        }
                    }
                }
            }
            // No server could be used: not a wrong password.
            (Verdict::unavailable("LDAP server unavailable"), notes)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        let e = |t: &str, l: &str| expand(t, l, "imap", "", "", escape_filter);
        assert_eq!(e("(uid=%u)", "alice"), "(uid=alice)");
        assert_eq!(
            e("(&(uid=%U)(mail=%u))", "alice@mail.example.com"),
            "(&(uid=alice)(mail=alice@mail.example.com))"
        );
        assert_eq!(
            e("%d %1 %2 %3 %D %s %%", "a@mail.example.com"),
            "mail.example.com com example mail dc=mail,dc=example,dc=com imap %"
        );
        assert_eq!(
            expand("(uid=%U)(d=%d)(r=%r)", "bob", "pop", "realm.test", "", escape_filter),
            "(uid=bob)(d=realm.test)(r=realm.test)"
        );
        // Filter injection is escaped.
        assert_eq!(e("(uid=%u)", "*)(uid=*"), "(uid=\\2a\\29\\28uid=\\2a)");
        assert_eq!(expand("uid=%u,ou=people", "a,b", "", "", "", escape_dn), "uid=a\\,b,ou=people");
    }

    #[test]
    fn login_restrictions_are_refused_not_ignored() {
        let conf = |t: &str| SaslauthdConf::parse("/etc/saslauthd.conf", t.as_bytes()).unwrap();
        assert!(Settings::from_conf(&conf("ldap_search_base: dc=x\n")).is_ok());
        let e = Settings::from_conf(&conf("ldap_group_dn: cn=mail,dc=x\n")).err().unwrap();
        assert_eq!(e, "/etc/saslauthd.conf: ldap_group_dn (group membership checks) is not supported");
        assert!(Settings::from_conf(&conf("ldap_group_filter: (x=%u)\n")).is_err());
        assert!(Settings::from_conf(&conf("ldap_use_sasl: yes\n")).is_err());
        assert!(Settings::from_conf(&conf("ldap_use_sasl: no\n")).is_ok());
    }

    #[test]
    fn stored_passwords() {
        assert!(password_matches("secret", "secret"));
        assert!(!password_matches("secret", "other"));
        // {SSHA} of "secret" with salt "salt" (made with slappasswd's format).
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
        ctx.update(b"secret");
        ctx.update(b"salt");
        let mut raw = ctx.finish().as_ref().to_vec();
        raw.extend_from_slice(b"salt");
        let b64 = encode(&raw);
        assert!(password_matches("secret", &format!("{{SSHA}}{b64}")));
        assert!(!password_matches("wrong", &format!("{{SSHA}}{b64}")));
        assert!(password_matches("testpw", "{CRYPT}$1$saltsalt$XBF9f0dels9PmAf924c2l."));
        assert!(!password_matches("x", "{MD5}abc"));
    }

    fn encode(b: &[u8]) -> String {
        const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut s = String::new();
        for c in b.chunks(3) {
            let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
            for i in 0..4 {
                if i <= c.len() {
                    s.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    s.push('=');
                }
            }
        }
        s
    }
}
