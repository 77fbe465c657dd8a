//! Group membership from LDAP for `group:` ACL identifiers, as Cyrus's
//! `auth_mech: pts` with `pts_module: ldap` finds it (ptloader and its
//! `ptscache`), read from the same imapd.conf options:
//!
//! - the user's entry: `ldap_base` + `ldap_filter` (`(uid=%u)`), scope
//!   `ldap_scope`, exactly one entry or the user is in no group;
//! - `ldap_member_method: attribute`: the values of `ldap_member_attribute`
//!   (`memberOf`) in that entry are group DNs; a group's name is the value
//!   of the DN's first RDN (`cn=Staff,ou=groups,…` → `group:staff`);
//! - `ldap_member_method: filter`: the entries under `ldap_member_base`
//!   (scope `ldap_member_scope`) matching `ldap_member_filter`
//!   (`(member=%D)`, or `(memberUid=%u)` for RFC 2307 posixGroups) are the
//!   groups; each one's `ldap_member_attribute` (`cn`) is its name;
//! - a `group:NAME` identifier given to SETACL exists when `ldap_group_base`
//!   + `ldap_group_filter` (`(cn=%u)`, `%u` = NAME) finds one entry.
//!
//! Where Cyrus would search from the empty DN because `ldap_member_base`
//! or `ldap_group_base` is unset (finding nothing on most servers),
//! `ldap_base` is used.
//!
//! Tokens in filters and bases: `%% %u %U %d %R %1-%9 %D` (ptloader's).
//! Group names are lower-cased.  Answers are cached for `ptscache_timeout`
//! (3h); when the directory cannot be reached an expired answer is used
//! (logged), and with none the caller gets an error to turn into a
//! temporary failure — never a login with fewer groups than the user has,
//! which a negative group right would turn into more access.

use super::ldap::{deref_of, scope_of};
use crate::config::cyrus::ImapdConf;
use ldap3::{DerefAliases, Ldap as Handle, LdapConnAsync, LdapConnSettings, Scope, SearchEntry, SearchOptions};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MemberMethod {
    Attribute,
    Filter,
}

/// The `ldap_*` options ptloader reads.
struct Settings {
    uris: Vec<String>,
    base: String,
    filter: String,
    scope: Scope,
    bind_dn: String,
    password: String,
    deref: DerefAliases,
    timeout: Duration,
    time_limit: i32,
    size_limit: i32,
    start_tls: bool,
    check_peer: bool,
    member_method: MemberMethod,
    member_attribute: String,
    member_filter: String,
    member_base: String,
    member_scope: Scope,
    group_filter: String,
    group_base: String,
    group_scope: Scope,
    cache_ttl: Duration,
}

/// Most cached users; the cache starts again when full.
const CACHE_MAX: usize = 200_000;
/// Most groups taken from one answer.
const GROUPS_MAX: usize = 10_000;

pub struct Pts {
    s: Settings,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// The bound connection in use and the server it goes to; ldap3
    /// multiplexes concurrent operations over it.
    conn: tokio::sync::Mutex<Option<(String, Handle)>>,
    /// user → (`group:` identifiers, looked up at).
    cache: Mutex<HashMap<String, (Vec<String>, Instant)>>,
}

/// `auth_mech: pts` with `pts_module: ldap` gives a directory; the other
/// `auth_mech` values keep the system's groups (None).  Options that would
/// change who is in which group, and that mumail cannot honour, are
/// refused with the file and line.
pub fn from_conf(conf: &ImapdConf) -> Result<Option<Pts>, String> {
    if conf.get("auth_mech") != Some("pts") {
        return Ok(None);
    }
    let at = |k: &str| match conf.line_of(k) {
        Some(l) => format!("{}: line {l}: ", conf.path),
        None => format!("{}: ", conf.path),
    };
    let module = conf.get("pts_module").unwrap_or("");
    if module != "ldap" {
        return Err(format!(
            "{}pts_module {module} is not supported (auth_mech: pts needs pts_module: ldap)",
            at("pts_module")
        ));
    }
    let get = |k: &str| conf.get(k).unwrap_or("").to_string();
    if conf.get_switch("ldap_sasl") {
        return Err(format!(
            "{}ldap_sasl: yes (SASL binds to the directory) is not supported; set ldap_sasl: no with ldap_bind_dn and ldap_password",
            at("ldap_sasl")
        ));
    }
    if !get("ldap_domain_base_dn").is_empty() {
        return Err(format!(
            "{}ldap_domain_base_dn (per-domain search bases) is not supported",
            at("ldap_domain_base_dn")
        ));
    }
    let uris = if conf.is_set("ldap_uri") {
        get("ldap_uri")
    } else {
        get("ldap_servers")
    };
    let uris: Vec<String> = uris.split_whitespace().map(String::from).collect();
    if uris.is_empty() {
        return Err(format!("{}ldap_uri is empty", at("ldap_uri")));
    }
    let secs = |k: &str| crate::config::cyrus::options::parse_duration(conf.get(k).unwrap_or("0"), 's').unwrap_or(0);
    let member_method = match get("ldap_member_method").to_ascii_lowercase().as_str() {
        "filter" => MemberMethod::Filter,
        _ => MemberMethod::Attribute,
    };
    let s = Settings {
        uris,
        base: get("ldap_base"),
        filter: get("ldap_filter"),
        scope: scope_of(&get("ldap_scope")),
        bind_dn: get("ldap_bind_dn"),
        password: get("ldap_password"),
        deref: deref_of(&get("ldap_deref")),
        timeout: Duration::from_secs(secs("ldap_timeout").max(1) as u64),
        time_limit: secs("ldap_time_limit").clamp(0, i32::MAX as i64) as i32,
        size_limit: conf.get_int("ldap_size_limit").clamp(0, i32::MAX as i64) as i32,
        start_tls: conf.get_switch("ldap_start_tls"),
        check_peer: conf.get_switch("ldap_verify_peer"),
        member_method,
        member_attribute: get("ldap_member_attribute"),
        member_filter: get("ldap_member_filter"),
        member_base: get("ldap_member_base"),
        member_scope: scope_of(&get("ldap_member_scope")),
        group_filter: get("ldap_group_filter"),
        group_base: get("ldap_group_base"),
        group_scope: scope_of(&get("ldap_group_scope")),
        cache_ttl: Duration::from_secs(secs("ptscache_timeout").max(0) as u64),
    };
    let (ca_file, ca_dir, cert, key) = (
        get("ldap_ca_file"),
        get("ldap_ca_dir"),
        get("ldap_client_cert"),
        get("ldap_client_key"),
    );
    let tls = super::ldap::tls_client_config(&super::ldap::TlsFiles {
        check_peer: s.check_peer,
        ca_file: ("ldap_ca_file", &ca_file),
        ca_dir: ("ldap_ca_dir", &ca_dir),
        cert: ("ldap_client_cert", &cert),
        key: ("ldap_client_key", &key),
    })
    .map_err(|e| format!("{}: {e}", conf.path))?;
    Ok(Some(Pts {
        s,
        tls,
        conn: tokio::sync::Mutex::new(None),
        cache: Mutex::new(HashMap::new()),
    }))
}

/// ptloader's tokens: `%%`, `%u` the identifier, `%U` its part before
/// `@`, `%d` the domain after `@`, `%R` `@domain`, `%1`–`%9` the domain's
/// labels from the right, `%D` the user's DN; each value escaped for a
/// filter (RFC 4515).  Unknown tokens expand to nothing.
pub fn expand(pattern: &str, id: &str, dn: &str) -> String {
    use super::ldap::escape_filter as esc;
    let domain = id.split_once('@').map(|(_, d)| d).filter(|d| !d.is_empty());
    let local = id.split_once('@').map_or(id, |(u, _)| u);
    let mut out = String::with_capacity(pattern.len() + id.len());
    let mut it = pattern.chars();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('%') => out.push('%'),
            Some('u') => out.push_str(&esc(id)),
            Some('U') => out.push_str(&esc(local)),
            Some('d') => out.push_str(&domain.map(esc).unwrap_or_default()),
            Some('R') => {
                if let Some(d) = domain {
                    out.push('@');
                    out.push_str(&esc(d));
                }
            }
            Some('D') => out.push_str(&esc(dn)),
            Some(n @ '1'..='9') => {
                let labels: Vec<&str> = domain.map(|d| d.split('.').collect()).unwrap_or_default();
                let n = n as usize - '0' as usize;
                if n <= labels.len() {
                    out.push_str(&esc(labels[labels.len() - n]));
                }
            }
            _ => {}
        }
    }
    out
}

/// The value of a DN's first RDN (`cn=Staff\2C Inc,ou=…` → `Staff, Inc`),
/// RFC 4514 escapes undone; for a multi-valued RDN, its first value.
pub fn first_rdn_value(dn: &str) -> Option<String> {
    let (_, rest) = dn.split_once('=')?;
    let b = rest.trim_start().as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    if b.first() == Some(&b'"') {
        i = 1;
        while i < b.len() && b[i] != b'"' {
            if b[i] == b'\\' && i + 1 < b.len() {
                i += 1;
            }
            out.push(b[i]);
            i += 1;
        }
    } else {
        while i < b.len() && !matches!(b[i], b',' | b'+' | b';') {
            if b[i] == b'\\' && i + 1 < b.len() {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b[i + 1]);
                        i += 2;
                    }
                }
                continue;
            }
            out.push(b[i]);
            i += 1;
        }
        while out.last() == Some(&b' ') {
            out.pop();
        }
    }
    String::from_utf8(out).ok().filter(|s| !s.is_empty())
}

/// A directory operation's failure: the server could not be used.
type Failure = String;

impl Pts {
    /// A bound connection: the one in use, or a new one to the first
    /// server of `ldap_uri` that answers.
    async fn handle(&self) -> Result<Handle, Failure> {
        let mut slot = self.conn.lock().await;
        if let Some((_, h)) = slot.as_mut() {
            if !h.is_closed() {
                return Ok(h.clone());
            }
        }
        *slot = None;
        let mut last = String::from("no LDAP server");
        for url in &self.s.uris {
            match self.connect(url).await {
                Ok(h) => {
                    *slot = Some((url.clone(), h.clone()));
                    return Ok(h);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn connect(&self, url: &str) -> Result<Handle, Failure> {
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(self.s.timeout)
            .set_starttls(self.s.start_tls);
        if let Some(cfg) = &self.tls {
            settings = settings.set_config(cfg.clone());
        } else if !self.s.check_peer {
            settings = settings.set_no_tls_verify(true);
        }
        let (conn, mut h) = LdapConnAsync::with_settings(settings, url)
            .await
            .map_err(|e| format!("ldap server {url}: {e}"))?;
        ldap3::drive!(conn);
        let r = h
            .with_timeout(self.s.timeout)
            .simple_bind(&self.s.bind_dn, &self.s.password)
            .await
            .map_err(|e| format!("ldap server {url}: {e}"))?;
        if r.rc != 0 {
            return Err(format!("ldap server {url}: ldap_simple_bind() failed {} ({})", r.rc, r.text));
        }
        Ok(h)
    }

    /// Forgets the connection after a failure, so the next operation
    /// connects again (to the next server if this one is down).
    async fn drop_conn(&self) {
        *self.conn.lock().await = None;
    }

    /// One search; `Ok(None)` for noSuchObject or a size limit reached
    /// (an answer, not a failure); a server that cannot be used is tried
    /// again once on a new connection, as ptloader retries.
    async fn search(
        &self,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
        size_limit: i32,
    ) -> Result<Option<Vec<SearchEntry>>, Failure> {
        let mut again = true;
        loop {
            let mut h = self.handle().await?;
            let opts = SearchOptions::new()
                .deref(self.s.deref)
                .timelimit(self.s.time_limit)
                .sizelimit(size_limit);
            let r = h
                .with_search_options(opts)
                .with_timeout(self.s.timeout)
                .search(base, scope, filter, attrs.to_vec())
                .await;
            match r {
                Ok(res) => {
                    let (entries, result) = (res.0, res.1);
                    return match result.rc {
                        0 => Ok(Some(entries.into_iter().map(SearchEntry::construct).collect())),
                        4 | 32 => Ok(None),
                        rc => {
                            self.drop_conn().await;
                            Err(format!("search of {base:?} failed: rc={rc} {}", result.text))
                        }
                    };
                }
                Err(e) => {
                    self.drop_conn().await;
                    if again {
                        again = false;
                        continue;
                    }
                    return Err(e.to_string());
                }
            }
        }
    }

    /// The user's DN: the only entry `ldap_filter` finds under `ldap_base`.
    async fn user_dn(&self, user: &str) -> Result<Option<String>, Failure> {
        let base = expand(&self.s.base, user, "");
        let filter = expand(&self.s.filter, user, "");
        let found = self.search(&base, self.s.scope, &filter, &["1.1"], self.s.size_limit).await?;
        Ok(match found {
            Some(mut v) if v.len() == 1 => v.pop().map(|e| e.dn),
            _ => None,
        })
    }

    /// The user's groups from the directory, uncached.
    async fn lookup(&self, user: &str) -> Result<Vec<String>, Failure> {
        let Some(dn) = self.user_dn(user).await? else {
            return Ok(Vec::new());
        };
        let attr = self.s.member_attribute.as_str();
        if attr.is_empty() {
            // Cyrus reads no attribute then: nobody is in a group.
            return Ok(Vec::new());
        }
        let mut groups = Vec::new();
        match self.s.member_method {
            MemberMethod::Attribute => {
                let found = self.search(&dn, Scope::Base, "(objectclass=*)", &[attr], 0).await?;
                for e in found.into_iter().flatten() {
                    for (k, vals) in e.attrs {
                        if k.eq_ignore_ascii_case(attr) {
                            groups.extend(vals.iter().filter_map(|v| first_rdn_value(v)));
                        }
                    }
                }
            }
            MemberMethod::Filter => {
                let base = if self.s.member_base.is_empty() {
                    &self.s.base
                } else {
                    &self.s.member_base
                };
                let base = expand(base, user, &dn);
                let filter = expand(&self.s.member_filter, user, &dn);
                let found = self.search(&base, self.s.member_scope, &filter, &[attr], 0).await?;
                for e in found.into_iter().flatten() {
                    let vals: Vec<&String> = e
                        .attrs
                        .iter()
                        .filter(|(k, _)| k.eq_ignore_ascii_case(attr))
                        .flat_map(|(_, v)| v.iter())
                        .collect();
                    // ptloader wants exactly one name per group entry.
                    if vals.len() == 1 {
                        groups.push(vals[0].clone());
                    }
                }
            }
        }
        let mut out: Vec<String> = groups
            .into_iter()
            .take(GROUPS_MAX)
            .map(|g| format!("group:{}", g.to_ascii_lowercase()))
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// The user's `group:` identifiers: cached for `ptscache_timeout`; an
    /// expired answer when the directory fails (the `Some` note says so);
    /// `Err` when it fails and nothing is cached.
    pub async fn groups(&self, user: &str) -> Result<(Vec<String>, Option<String>), Failure> {
        let cached = self.cache.lock().ok().and_then(|c| c.get(user).cloned());
        if let Some((g, at)) = &cached {
            if at.elapsed() < self.s.cache_ttl {
                return Ok((g.clone(), None));
            }
        }
        match self.lookup(user).await {
            Ok(g) => {
                if !self.s.cache_ttl.is_zero() {
                    if let Ok(mut c) = self.cache.lock() {
                        if c.len() >= CACHE_MAX {
                            c.clear();
                        }
                        c.insert(user.to_string(), (g.clone(), Instant::now()));
                    }
                }
                Ok((g, None))
            }
            Err(e) => match cached {
                Some((g, _)) => Ok((g, Some(e))),
                None => Err(e),
            },
        }
    }

    /// Whether `group:NAME` names a group: `ldap_group_filter` under
    /// `ldap_group_base` (else `ldap_base`) finds exactly one entry.
    pub async fn group_exists(&self, name: &str) -> Result<bool, Failure> {
        let base = if self.s.group_base.is_empty() {
            &self.s.base
        } else {
            &self.s.group_base
        };
        let base = expand(base, name, "");
        let filter = expand(&self.s.group_filter, name, "");
        let found = self.search(&base, self.s.group_scope, &filter, &["1.1"], self.s.size_limit).await?;
        Ok(found.is_some_and(|v| v.len() == 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_expand_as_ptloader() {
        assert_eq!(expand("(uid=%u)", "joe", ""), "(uid=joe)");
        assert_eq!(
            expand("(uid=%U)(d=%d)(r=%R)", "joe@mail.example.edu", ""),
            "(uid=joe)(d=mail.example.edu)(r=@mail.example.edu)"
        );
        assert_eq!(expand("dc=%2,dc=%1", "joe@example.edu", ""), "dc=example,dc=edu");
        assert_eq!(expand("%R%d%1", "joe", ""), "");
        assert_eq!(
            expand("(member=%D)", "joe", "uid=joe,ou=people,dc=x"),
            "(member=uid=joe,ou=people,dc=x)"
        );
        assert_eq!(expand("(uid=%u)", "a*(b)\\", ""), "(uid=a\\2a\\28b\\29\\5c)");
        assert_eq!(expand("100%% %x%", "joe", ""), "100% ");
    }

    #[test]
    fn group_names_come_from_the_first_rdn() {
        assert_eq!(first_rdn_value("cn=Staff,ou=groups,dc=example,dc=edu").as_deref(), Some("Staff"));
        assert_eq!(first_rdn_value("CN=Mail Admins,OU=Groups,DC=ad").as_deref(), Some("Mail Admins"));
        assert_eq!(first_rdn_value("cn=R\\2CD,dc=x").as_deref(), Some("R,D"));
        assert_eq!(first_rdn_value("cn=a\\,b+uid=c,dc=x").as_deref(), Some("a,b"));
        assert_eq!(first_rdn_value("cn=\"x, y\",dc=z").as_deref(), Some("x, y"));
        assert_eq!(first_rdn_value("cn=,dc=z"), None);
        assert_eq!(first_rdn_value("garbage"), None);
    }
}
