//! `ldap:/path/to/file.cf` lookup tables with ldap_table(5)'s
//! parameters: `server_host` (names, `host:port`, `ldap://`, `ldaps://`,
//! `ldapi://` URLs, tried in order) and `server_port`, `timeout`,
//! `search_base` and `query_filter` (`%` expansions, RFC 4514/4515
//! escaped), `result_format`, `domain`, `result_attribute`,
//! `special_result_attribute` (DN and LDAP URL values searched in turn, up
//! to `recursion_limit`), `terminal_result_attribute`,
//! `leaf_result_attribute`, `scope`, `bind` (`yes`/`no`) with `bind_dn`
//! and `bind_pw`, `start_tls` and the `tls_*` files, `size_limit`,
//! `expansion_limit`, `dereference`.  Values are joined with commas in the
//! order the server returns entries, attributes and values.  One
//! connection per table, shared by all of a process's lookups (ldap3
//! multiplexes requests) and reopened after a failure; every failure is a
//! temporary error, never "not found".

use super::dbcommon::{self, CfFile, DomainFilter, Template};
use super::TableError;
use ldap3::asn1::{StructureTag, PL};
use ldap3::{DerefAliases, Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchOptions};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct LdapTable {
    spec: String,
    file: String,
    servers: Vec<String>,
    timeout: Duration,
    search_base: Template,
    dynamic_base: bool,
    query: Template,
    result_format: Template,
    domain: Option<DomainFilter>,
    /// Requested attributes: terminal, leaf, ordinary, then special, as
    /// dict_ldap orders them; the counts split the list.
    attrs: Vec<String>,
    n_terminal: usize,
    n_leaf: usize,
    n_ordinary: usize,
    scope: Scope,
    bind: bool,
    bind_dn: String,
    bind_pw: String,
    start_tls: bool,
    tls: Option<Arc<rustls::ClientConfig>>,
    size_limit: i32,
    expansion_limit: usize,
    recursion_limit: usize,
    deref: DerefAliases,
    conn: Mutex<Option<Ldap>>,
}

impl std::fmt::Debug for LdapTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapTable")
            .field("spec", &self.spec)
            .field("servers", &self.servers)
            .finish()
    }
}

/// RFC 4515 escaping of a value in a filter (Postfix's rfc2254_quote).
fn quote_filter(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '*' | '(' | ')' | '\\' | '\0' => out.push_str(&format!("\\{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// RFC 4514 escaping of a value in a DN (Postfix's rfc2253_quote).
fn quote_dn(v: &str) -> String {
    crate::auth::ldap::escape_dn(v)
}

fn attr_list(cf: &CfFile, name: &str, default: &str) -> Vec<String> {
    crate::config::postfix::list::tokens(&cf.str(name, default), ", \t\r\n")
        .into_iter()
        .map(String::from)
        .collect()
}

/// `server_host` items as URLs: a bare `host` or `host:port` becomes
/// `ldap://host:port` with `server_port`.
fn server_urls(hosts: &str, port: i64) -> Vec<String> {
    crate::config::postfix::list::tokens(hosts, ", \t\r\n")
        .into_iter()
        .map(|h| {
            if h.contains("://") {
                h.to_string()
            } else if h.contains(':') && !h.starts_with('[') {
                format!("ldap://{h}")
            } else {
                format!("ldap://{h}:{port}")
            }
        })
        .collect()
}

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An entry of a search result: its attributes in the server's order.
type Entry = Vec<(String, Vec<String>)>;

/// Reads a SearchResultEntry without assuming it is well formed.
fn entry_attrs(tag: StructureTag) -> Option<Entry> {
    let mut parts = tag.expect_constructed()?.into_iter();
    let _dn = parts.next()?;
    let mut out = Vec::new();
    for pa in parts.next()?.expect_constructed()? {
        let mut pa = pa.expect_constructed()?.into_iter();
        let name = String::from_utf8(pa.next()?.expect_primitive()?).ok()?;
        let values = match pa.next()?.payload {
            PL::C(vs) => vs
                .into_iter()
                .filter_map(|v| match v.payload {
                    PL::P(b) => String::from_utf8(b).ok(),
                    PL::C(_) => None,
                })
                .collect(),
            PL::P(_) => return None,
        };
        out.push((name, values));
    }
    Some(out)
}

/// Base, scope, filter and attributes of an LDAP URL value
/// (`ldap://host/base?attrs?scope?filter`); the host part is ignored: the
/// search goes to the table's connection.
fn parse_url(u: &str) -> Option<(String, Scope, String, Option<Vec<String>>)> {
    let rest = u.split_once("://")?.1;
    let path = rest.split_once('/').map(|(_, p)| p).unwrap_or("");
    let mut f = path.splitn(4, '?');
    let base = percent_decode(f.next().unwrap_or(""));
    let attrs = f
        .next()
        .filter(|a| !a.is_empty())
        .map(|a| a.split(',').map(percent_decode).collect());
    let scope = match f.next().unwrap_or("") {
        "one" => Scope::OneLevel,
        "sub" => Scope::Subtree,
        _ => Scope::Base,
    };
    let filter = match f.next().map(percent_decode).filter(|s| !s.is_empty()) {
        Some(s) => s,
        None => "(objectclass=*)".to_string(),
    };
    Some((base, scope, filter, attrs))
}

fn percent_decode(s: &str) -> String {
    String::from_utf8_lossy(&crate::util::codec::percent_decode(s.as_bytes()).0).into_owned()
}

/// The outcome of one search: entries, or an LDAP result code.
enum Found {
    Entries(Vec<Entry>),
    Code(u32),
}

impl LdapTable {
    pub fn open(spec: &str, file: &str) -> Result<LdapTable, TableError> {
        if !file.starts_with('/') && !file.starts_with('.') {
            return Err(TableError::Open(format!(
                "{spec}: main.cf-style LDAP settings ({file}_server_host, ...) are not supported; use a configuration file: ldap:/etc/postfix/{file}.cf"
            )));
        }
        let cf = CfFile::load(file)?;
        let port = cf.int("server_port", 389, 1, 65535)?;
        let servers = server_urls(&cf.str("server_host", "localhost"), port);
        if servers.is_empty() {
            return Err(TableError::Open(format!("{file}: server_host is empty")));
        }
        let query_text = cf.str("query_filter", "(mailacceptinggeneralid=%s)");
        let query = Template::parse(&query_text, true, file, "query_filter")?;
        if query.is_fixed() {
            super::warn(&format!(
                "dict_ldap_open: {file}: Fixed query_filter {query_text} is probably useless"
            ));
        }
        let base_text = cf.str("search_base", "");
        let search_base = Template::parse(&base_text, true, file, "search_base")?;
        let format_text = if cf.has("result_format") {
            cf.str("result_format", "%s")
        } else {
            cf.str("result_filter", "%s")
        };
        let result_format = Template::parse(&format_text, false, file, "result_format")?;
        let terminal = attr_list(&cf, "terminal_result_attribute", "");
        let leaf = attr_list(&cf, "leaf_result_attribute", "");
        let ordinary = attr_list(&cf, "result_attribute", "maildrop");
        let special = attr_list(&cf, "special_result_attribute", "");
        let (n_terminal, n_leaf, n_ordinary) = (terminal.len(), leaf.len(), ordinary.len());
        let attrs: Vec<String> = terminal.into_iter().chain(leaf).chain(ordinary).chain(special).collect();
        let bind = match cf
            .choice("bind", "yes", &["yes", "no", "none", "simple", "sasl", "true", "false"])?
            .as_str()
        {
            "yes" | "simple" | "true" => true,
            "sasl" => {
                return Err(TableError::Open(format!(
                    "{file}: bind = sasl is not supported; use bind = yes with bind_dn and bind_pw"
                )))
            }
            _ => false,
        };
        let version = cf.int("version", 3, 2, 3)?;
        let start_tls = cf.bool("start_tls", false)?;
        if start_tls && version < 3 {
            return Err(TableError::Open(format!("{file}: start_tls requires version = 3")));
        }
        let require_cert = cf.bool("tls_require_cert", false)?;
        let tls = crate::auth::ldap::tls_client_config(&crate::auth::ldap::TlsFiles {
            check_peer: require_cert,
            ca_file: ("tls_ca_cert_file", &cf.str("tls_ca_cert_file", "")),
            ca_dir: ("tls_ca_cert_dir", &cf.str("tls_ca_cert_dir", "")),
            cert: ("tls_cert", &cf.str("tls_cert", "")),
            key: ("tls_key", &cf.str("tls_key", "")),
        })
        .map_err(|e| TableError::Open(format!("{file}: {e}")))?;
        let expansion_limit = cf.int("expansion_limit", 0, 0, i32::MAX as i64)?;
        Ok(LdapTable {
            spec: spec.to_string(),
            file: file.to_string(),
            servers,
            timeout: Duration::from_secs(cf.int("timeout", 10, 1, 3600)? as u64),
            dynamic_base: !search_base.is_fixed(),
            search_base,
            query,
            result_format,
            domain: DomainFilter::parse(&cf.str("domain", ""))?,
            attrs,
            n_terminal,
            n_leaf,
            n_ordinary,
            scope: match cf.choice("scope", "sub", &["sub", "base", "one"])?.as_str() {
                "base" => Scope::Base,
                "one" => Scope::OneLevel,
                _ => Scope::Subtree,
            },
            bind,
            bind_dn: cf.str("bind_dn", ""),
            bind_pw: cf.str("bind_pw", ""),
            start_tls,
            tls,
            size_limit: cf.int("size_limit", expansion_limit, 0, i32::MAX as i64)? as i32,
            expansion_limit: expansion_limit as usize,
            recursion_limit: cf.int("recursion_limit", 1000, 1, i32::MAX as i64)? as usize,
            deref: match cf.int("dereference", 0, 0, 3)? {
                1 => DerefAliases::Searching,
                2 => DerefAliases::Finding,
                3 => DerefAliases::Always,
                _ => DerefAliases::Never,
            },
            conn: Mutex::new(None),
        })
    }

    /// Looks `key` up (already case-folded by the caller).
    pub fn lookup(self: &Arc<Self>, key: &str) -> Result<Option<String>, TableError> {
        let Some(filter) = dbcommon::query_for(self.domain.as_ref(), &self.result_format, &self.query, key, &quote_filter)? else {
            return Ok(None);
        };
        let base = if self.dynamic_base {
            match dbcommon::expand(&self.search_base, key, None, &quote_dn) {
                Some(b) => b,
                None => return Ok(None),
            }
        } else {
            self.search_base.text().to_string()
        };
        let me = self.clone();
        let key = key.to_string();
        let r = dbcommon::run(self.timeout * 3, async move { me.query(&base, &filter, &key).await });
        r.map_err(|reason| TableError::Query(self.spec.clone(), reason))
    }

    fn cached(&self) -> Option<Ldap> {
        self.conn.lock().ok().and_then(|c| c.clone())
    }

    fn forget(&self) {
        if let Ok(mut c) = self.conn.lock() {
            *c = None;
        }
    }

    /// Opens and binds a connection: the servers in order, the first that
    /// answers; a refused bind is an error (the next server is not tried).
    async fn connect(&self) -> Result<Ldap, String> {
        let mut last = String::new();
        for url in &self.servers {
            let mut settings = LdapConnSettings::new().set_conn_timeout(self.timeout).set_starttls(self.start_tls);
            match &self.tls {
                Some(cfg) => settings = settings.set_config(cfg.clone()),
                None => settings = settings.set_no_tls_verify(true),
            }
            match LdapConnAsync::with_settings(settings, url).await {
                Ok((conn, h)) => {
                    ldap3::drive!(conn);
                    let mut h = h;
                    if self.bind {
                        let dn = if self.bind_dn.is_empty() {
                            "empty or implicit".to_string()
                        } else {
                            self.bind_dn.clone()
                        };
                        match h.with_timeout(self.timeout).simple_bind(&self.bind_dn, &self.bind_pw).await {
                            Ok(r) if r.rc == 0 => {}
                            Ok(r) => {
                                let text = ldap_error_text(r.rc);
                                super::warn(&format!(
                                    "dict_ldap_connect: Unable to bind to server {} with dn {dn}: {} ({text})",
                                    self.servers.join(" "),
                                    r.rc
                                ));
                                return Err(text.to_string());
                            }
                            Err(e) => {
                                last = format!("{url}: {e}");
                                continue;
                            }
                        }
                    }
                    if let Ok(mut c) = self.conn.lock() {
                        *c = Some(h.clone());
                    }
                    return Ok(h);
                }
                Err(e) => last = format!("{url}: {e}"),
            }
        }
        let dn = if self.bind_dn.is_empty() {
            "empty or implicit"
        } else {
            &self.bind_dn
        };
        super::warn(&format!(
            "dict_ldap_connect: Unable to bind to server {} with dn {dn}: -1 (Can't contact LDAP server): {last}",
            self.servers.join(" ")
        ));
        Err("Can't contact LDAP server".into())
    }

    async fn search(
        &self,
        h: &mut Ldap,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[String],
        size: i32,
    ) -> Result<Found, ldap3::LdapError> {
        let filter = if filter.starts_with('(') {
            filter.to_string()
        } else {
            format!("({filter})")
        };
        let opts = SearchOptions::new()
            .deref(self.deref)
            .sizelimit(size)
            .timelimit(self.timeout.as_secs() as i32);
        let res = h
            .with_search_options(opts)
            .with_timeout(self.timeout)
            .search(base, scope, &filter, attrs.to_vec())
            .await?;
        if res.1.rc != 0 {
            return Ok(Found::Code(res.1.rc));
        }
        Ok(Found::Entries(
            res.0
                .into_iter()
                .filter(|e| !e.is_ref() && !e.is_intermediate())
                .filter_map(|e| entry_attrs(e.0))
                .collect(),
        ))
    }

    /// The lookup proper, on the table thread: one retry on a fresh
    /// connection when the cached one has gone away.
    async fn query(&self, base: &str, filter: &str, key: &str) -> Result<Option<String>, String> {
        for attempt in 0..2 {
            let mut h = match self.cached() {
                Some(h) if attempt == 0 => h,
                _ => self.connect().await?,
            };
            let found = match self.search(&mut h, base, self.scope, filter, &self.attrs, self.size_limit).await {
                Ok(f) => f,
                Err(e) => {
                    self.forget();
                    if attempt == 0 {
                        continue;
                    }
                    super::warn(&format!("dict_ldap_lookup: {}: search error: {e}", self.file));
                    return Err(e.to_string());
                }
            };
            let entries = match found {
                Found::Entries(es) => es,
                Found::Code(32) if self.dynamic_base => return Ok(None),
                Found::Code(32) => {
                    super::warn(&format!(
                        "dict_ldap_lookup: {}: Search base '{base}' not found: 32: No such object",
                        self.file
                    ));
                    return Err("No such object".into());
                }
                Found::Code(rc) => {
                    let text = ldap_error_text(rc);
                    super::warn(&format!("dict_ldap_lookup: Search error {rc}: {text} "));
                    return Err(text.into());
                }
            };
            let mut out: Vec<String> = Vec::new();
            let mut expansions = 0usize;
            self.values(&mut h, entries, 0, key, &mut out, &mut expansions).await?;
            return Ok((!out.is_empty()).then(|| out.join(",")));
        }
        Err("Can't contact LDAP server".into())
    }

    /// dict_ldap_get_values: the values of each entry, recursing into the
    /// DNs and URLs of special attributes of non-terminal entries.
    fn values<'a>(
        &'a self,
        h: &'a mut Ldap,
        entries: Vec<Entry>,
        depth: usize,
        key: &'a str,
        out: &'a mut Vec<String>,
        expansions: &'a mut usize,
    ) -> BoxFut<'a, Result<(), String>> {
        Box::pin(async move {
            let index = |a: &str| self.attrs.iter().position(|x| x.eq_ignore_ascii_case(a));
            for entry in entries {
                let has = |range: std::ops::Range<usize>| {
                    entry
                        .iter()
                        .any(|(a, v)| !v.is_empty() && index(a).is_some_and(|i| range.contains(&i)))
                };
                let terminal = self.n_terminal > 0 && has(0..self.n_terminal);
                let first_special = self.n_terminal + self.n_leaf + self.n_ordinary;
                let leaf = terminal || !has(first_special..self.attrs.len());
                for (attr, vals) in &entry {
                    let Some(i) = index(attr) else { continue };
                    if vals.is_empty() {
                        continue;
                    }
                    if i < first_special || terminal {
                        let skip =
                            (terminal && i >= self.n_terminal) || (!leaf && (self.n_terminal..self.n_terminal + self.n_leaf).contains(&i));
                        if skip {
                            continue;
                        }
                        for v in vals {
                            if let Some(x) = dbcommon::expand_result(&self.spec, &self.result_format, v, key) {
                                out.push(x);
                                *expansions += 1;
                                if self.expansion_limit > 0 && *expansions > self.expansion_limit {
                                    super::warn(&format!(
                                        "dict_ldap_get_values[{}]: {}: Expansion limit exceeded for key: '{key}'",
                                        depth + 1,
                                        self.file
                                    ));
                                    return Err("Expansion limit exceeded".into());
                                }
                            }
                        }
                    } else if depth + 1 < self.recursion_limit {
                        for v in vals {
                            let (base, scope, filter, attrs) = if v.contains("://") {
                                match parse_url(v) {
                                    Some((b, s, f, a)) => (b, s, f, a.unwrap_or_else(|| self.attrs.clone())),
                                    None => continue,
                                }
                            } else {
                                (v.clone(), Scope::Base, "(objectclass=*)".to_string(), self.attrs.clone())
                            };
                            let found = self
                                .search(h, &base, scope, &filter, &attrs, self.size_limit)
                                .await
                                .map_err(|e| e.to_string())?;
                            match found {
                                Found::Entries(es) => self.values(h, es, depth + 1, key, out, expansions).await?,
                                Found::Code(32) => {}
                                Found::Code(rc) => {
                                    let text = ldap_error_text(rc);
                                    super::warn(&format!("dict_ldap_get_values[{}]: search error {rc}: {text}", depth + 1));
                                    return Err(text.into());
                                }
                            }
                        }
                    } else {
                        super::warn(&format!(
                            "dict_ldap_get_values[{}]: {}: Recursion limit exceeded for special attribute {attr}={}",
                            depth + 1,
                            self.file,
                            vals[0]
                        ));
                        return Err("Recursion limit exceeded".into());
                    }
                }
            }
            Ok(())
        })
    }
}

/// libldap's texts for the result codes a lookup meets.
fn ldap_error_text(rc: u32) -> &'static str {
    match rc {
        1 => "Operations error",
        2 => "Protocol error",
        3 => "Time limit exceeded",
        4 => "Size limit exceeded",
        7 => "Auth method not supported",
        8 => "Strong(er) authentication required",
        10 => "Referral",
        11 => "Administrative limit exceeded",
        13 => "Confidentiality required",
        32 => "No such object",
        34 => "Invalid DN syntax",
        48 => "Inappropriate authentication",
        49 => "Invalid credentials",
        50 => "Insufficient access",
        51 => "Server is busy",
        52 => "Server is unavailable",
        53 => "Server is unwilling to perform",
        _ => "Other (e.g., implementation specific) error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_and_quoting() {
        assert_eq!(
            server_urls("a, b:390 ldaps://c/ ldapi://%2frun%2fx", 389),
            vec!["ldap://a:389", "ldap://b:390", "ldaps://c/", "ldapi://%2frun%2fx"]
        );
        assert_eq!(quote_filter("u*(x)\\"), "u\\2A\\28x\\29\\5C");
        let (b, s, f, a) = parse_url("ldap://h/ou=x,dc=y?mail,uid?sub?(cn=a%20b)").unwrap();
        assert_eq!((b.as_str(), s, f.as_str()), ("ou=x,dc=y", Scope::Subtree, "(cn=a b)"));
        assert_eq!(a.unwrap(), vec!["mail", "uid"]);
        let (b, s, f, a) = parse_url("ldap:///cn=g,dc=y").unwrap();
        assert_eq!((b.as_str(), s, f.as_str(), a), ("cn=g,dc=y", Scope::Base, "(objectclass=*)", None));
    }

    #[test]
    fn bad_config_names_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.cf");
        std::fs::write(&p, "server_host = h\nscope = deep\n").unwrap();
        let spec = format!("ldap:{}", p.display());
        let e = LdapTable::open(&spec, p.to_str().unwrap()).err().unwrap().to_string();
        assert!(e.contains("x.cf, line 2: unrecognized value for parameter scope"), "{e}");
        std::fs::write(&p, "bind = sasl\n").unwrap();
        assert!(LdapTable::open(&spec, p.to_str().unwrap()).is_err());
        let e = LdapTable::open("ldap:/nonexistent.cf", "/nonexistent.cf")
            .err()
            .unwrap()
            .to_string();
        assert_eq!(e, "open /nonexistent.cf: No such file or directory");
    }
}
