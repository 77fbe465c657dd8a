//! The resolved Postfix parameter view: `-o` overrides, then main.cf, then
//! the registry default (host-computed where Postfix computes it).  Values
//! stay raw until asked for expanded, as Postfix's lazy expansion works.

use super::expand::{ExpandError, Expander};
use super::host::{mydomain_of, HostFacts};
use super::main_cf::{Entry, MainCf};
use super::master_cf::MasterCf;
use super::registry::{registry, Class};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Default)]
pub struct Params {
    pub main: MainCf,
    pub master: MasterCf,
    pub host: HostFacts,
    /// Temporary settings (`postconf -o`, a master.cf service's `-o`).
    pub overrides: BTreeMap<String, String>,
    /// Use built-in defaults only (postconf -d): main.cf is not consulted.
    pub defaults_only: bool,
}

impl Params {
    /// main.cf (+ master.cf) from `dir`; `explicit` sets `config_directory`.
    pub fn load(dir: &str, explicit: bool) -> Result<Params, crate::config::ConfigError> {
        let mut p = Params::load_main(dir, explicit)?;
        p.master = MasterCf::load(&format!("{dir}/master.cf"))?;
        Ok(p)
    }

    /// main.cf only, as the tools that never look at services read it
    /// (postmap, postalias).
    pub fn load_main(dir: &str, explicit: bool) -> Result<Params, crate::config::ConfigError> {
        let mut main = MainCf::load(&format!("{dir}/main.cf"))?;
        if explicit {
            main.entries.insert(
                "config_directory".into(),
                Entry {
                    value: dir.to_string(),
                    line: 0,
                },
            );
        }
        Ok(Params {
            main,
            host: HostFacts::probe(),
            ..Default::default()
        })
    }

    /// The raw value: override, main.cf, default.
    pub fn raw(&self, name: &str) -> Option<String> {
        if let Some(v) = self.overrides.get(name) {
            return Some(v.clone());
        }
        if !self.defaults_only {
            if let Some(v) = self.main.get(name) {
                return Some(v.to_string());
            }
        }
        self.default_raw(name)
    }

    /// The built-in default as `postconf -d` prints it.
    pub fn default_raw(&self, name: &str) -> Option<String> {
        if let Some(p) = registry().get(name) {
            if p.class != Class::Host {
                return Some(p.default.to_string());
            }
            return Some(match name {
                "myhostname" => {
                    let d = if self.defaults_only {
                        None
                    } else {
                        self.main.get("mydomain").map(|d| self.expand_quiet(d))
                    };
                    self.host.myhostname(d.as_deref())
                }
                "mydomain" => mydomain_of(&self.expanded_quiet("myhostname")),
                "mynetworks" => self
                    .host
                    .mynetworks(&self.expanded_quiet("mynetworks_style"), &self.expanded_quiet("inet_protocols")),
                "process_id" => self.host.pid.to_string(),
                _ => p.default.to_string(),
            });
        }
        self.service_param(name).map(|(_, d)| d)
    }

    /// `<service>_<suffix>` for a master.cf service whose command defines it.
    fn service_param(&self, name: &str) -> Option<(String, String)> {
        for s in &self.master.services {
            if let Some(suffix) = name.strip_prefix(s.name.as_str()) {
                if let Some(sp) = registry().service_params(s.command()).find(|sp| sp.suffix == suffix) {
                    return Some((s.name.clone(), sp.default.to_string()));
                }
            }
        }
        None
    }

    /// Every parameter name with a built-in or service-defined default.
    pub fn default_names(&self) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = registry().params().iter().map(|p| p.name.to_string()).collect();
        for s in &self.master.services {
            for sp in registry().service_params(s.command()) {
                names.insert(format!("{}{}", s.name, sp.suffix));
            }
        }
        names
    }

    pub fn is_known(&self, name: &str) -> bool {
        registry().get(name).is_some() || self.service_param(name).is_some() || self.table_param(name)
    }

    /// Tables with their own configuration used in main.cf / master.cf
    /// values, as (type, name): `ldap:/etc/postfix/users.cf`, `ldap:users`.
    pub fn config_tables(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let mut values: Vec<String> = self.main.entries.values().map(|e| e.value.clone()).collect();
        for s in &self.master.services {
            values.extend(s.overrides().into_iter().map(|(_, v)| v));
        }
        for v in values {
            for tok in super::list::split_list(&v) {
                let mut t = tok;
                while let Some(rest) = t.strip_prefix("proxy:") {
                    t = rest;
                }
                let Some((kind, name)) = t.split_once(':') else {
                    continue;
                };
                if table_params(kind).is_none() || name.is_empty() {
                    continue;
                }
                let name = if name.contains('$') {
                    self.expand_quiet(name)
                } else {
                    name.to_string()
                };
                if !out.iter().any(|(k, n)| k == kind && *n == name) {
                    out.push((kind.to_string(), name));
                }
            }
        }
        out
    }

    /// `users_server_host` is known when a value uses `ldap:users`.
    fn table_param(&self, name: &str) -> bool {
        self.config_tables().iter().any(|(kind, tname)| {
            !tname.starts_with('/')
                && name
                    .strip_prefix(tname.as_str())
                    .and_then(|r| r.strip_prefix('_'))
                    .is_some_and(|p| table_params(kind).is_some_and(|l| l.contains(&p)))
        })
    }

    /// postconf's checks of table configuration files: unreadable files and
    /// unknown parameters in them, in Postfix's wording.
    pub fn table_warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (kind, name) in self.config_tables() {
            if !name.starts_with('/') {
                continue;
            }
            let data = match std::fs::read(&name) {
                Ok(d) => d,
                Err(e) => {
                    out.push(format!("open \"{kind}\" configuration \"{name}\": {}", crate::util::strerror(&e)));
                    continue;
                }
            };
            let Ok(cf) = MainCf::parse(&name, &data) else {
                continue;
            };
            let known = table_params(&kind).unwrap_or(&[]);
            for (n, e) in &cf.entries {
                if !known.contains(&n.as_str()) {
                    out.push(format!("{kind}:{name}: unused parameter: {n}={}", e.value));
                }
            }
        }
        out
    }

    /// Expands `text` against this view.
    pub fn expand(&self, text: &str) -> Result<(String, Vec<String>), ExpandError> {
        let f = |n: &str| self.raw(n);
        let mut e = Expander::new(&f);
        let v = e.expand(text)?;
        Ok((v, e.undefined))
    }

    fn expand_quiet(&self, text: &str) -> String {
        self.expand(text).map(|(v, _)| v).unwrap_or_default()
    }

    fn expanded_quiet(&self, name: &str) -> String {
        self.raw(name).map(|v| self.expand_quiet(&v)).unwrap_or_default()
    }

    /// The expanded value of a parameter.
    pub fn get(&self, name: &str) -> Option<String> {
        self.raw(name).map(|v| self.expand_quiet(&v))
    }

    /// User-defined names in main.cf / master.cf `-o` that nothing uses,
    /// as (file, name, value) — Postfix's "unused parameter" warnings.
    pub fn unused(&self) -> Vec<(String, String, String)> {
        let mut referenced: BTreeSet<String> = BTreeSet::new();
        let mut scan = |v: &str| referenced.extend(referenced_names(v));
        for e in self.main.entries.values() {
            scan(&e.value);
        }
        let mut svc_values = Vec::new();
        for s in &self.master.services {
            for (n, v) in s.overrides() {
                svc_values.push((n, v));
            }
        }
        for (_, v) in &svc_values {
            scan(v);
        }
        if let Some(classes) = self.main.get("smtpd_restriction_classes") {
            referenced.extend(super::list::split_list(classes).into_iter().map(String::from));
        }
        let mut out = Vec::new();
        for (n, e) in &self.main.entries {
            if !self.is_known(n) && !referenced.contains(n) {
                out.push((self.main.path.clone(), n.clone(), e.value.clone()));
            }
        }
        for (n, v) in svc_values {
            if !self.is_known(&n) && !referenced.contains(&n) {
                out.push((self.master.path.clone(), n, v));
            }
        }
        out
    }

    /// Undefined names used by main.cf and master.cf values, as (file, name).
    pub fn undefined(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let mut add = |file: &str, text: &str| {
            if let Ok((_, u)) = self.expand(text) {
                for n in u {
                    if !out.iter().any(|(f, x)| f == file && *x == n) {
                        out.push((file.to_string(), n));
                    }
                }
            }
        };
        for e in self.main.entries.values() {
            add(&self.main.path, &e.value);
        }
        for s in &self.master.services {
            for (_, v) in s.overrides() {
                add(&self.master.path, &v);
            }
        }
        out
    }
}

impl Params {
    fn bad(msg: String) -> crate::config::ConfigError {
        crate::config::ConfigError::Syntax(msg)
    }

    /// A boolean parameter (`yes`/`no`), Postfix's fatal text otherwise.
    pub fn get_bool(&self, name: &str) -> Result<bool, crate::config::ConfigError> {
        let v = self.get(name).unwrap_or_default();
        match v.as_str() {
            "yes" => Ok(true),
            "no" => Ok(false),
            _ => Err(Self::bad(format!("bad boolean configuration: {name} = {v}"))),
        }
    }

    /// An integer parameter within `min..=max` (`max` 0 = no upper bound).
    pub fn get_int(&self, name: &str, min: i64, max: i64) -> Result<i64, crate::config::ConfigError> {
        let v = self.get(name).unwrap_or_default();
        let n: i64 = v
            .trim()
            .parse()
            .map_err(|_| Self::bad(format!("bad numerical configuration: {name} = {v}")))?;
        if n < min {
            return Err(Self::bad(format!("invalid {name} parameter value {n} < {min}")));
        }
        if max > 0 && n > max {
            return Err(Self::bad(format!("invalid {name} parameter value {n} > {max}")));
        }
        Ok(n)
    }

    /// A time parameter: a number with an optional unit `s m h d w`; a bare
    /// number takes the unit of the parameter's default (as Postfix does).
    pub fn get_time(&self, name: &str) -> Result<std::time::Duration, crate::config::ConfigError> {
        let v = self.get(name).unwrap_or_default();
        let default_unit = self
            .default_raw(name)
            .and_then(|d| d.chars().last())
            .filter(|c| c.is_ascii_alphabetic())
            .unwrap_or('s');
        let t = v.trim();
        let (num, unit) = match t.chars().last() {
            Some(c) if c.is_ascii_alphabetic() => (&t[..t.len() - 1], c),
            _ => (t, default_unit),
        };
        let mult = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            'w' => 604800,
            _ => return Err(Self::bad(format!("invalid {name} parameter value: {v}"))),
        };
        let n: u64 = num.parse().map_err(|_| Self::bad(format!("invalid {name} parameter value: {v}")))?;
        Ok(std::time::Duration::from_secs(n.saturating_mul(mult)))
    }

    /// mumail's decisions for what main.cf sets: one warning per parameter
    /// that is accepted but not implemented (unless set to its default);
    /// an error for a rejected one set to a non-default value.
    pub fn check_status(&self) -> Result<Vec<String>, crate::config::ConfigError> {
        use super::registry::Status;
        let mut warnings = Vec::new();
        for (name, e) in &self.main.entries {
            let Some(p) = registry().get(name) else {
                continue;
            };
            match p.status {
                Status::Supported => {}
                // Set to its default, it changes nothing.
                Status::Ignored if e.value.trim() == p.default => {}
                Status::Ignored => warnings.push(format!(
                    "{}, line {}: parameter {name} is not implemented; ignored",
                    self.main.path, e.line
                )),
                Status::Rejected if e.value != p.default => {
                    return Err(Self::bad(format!(
                        "{}, line {}: parameter {name} is not supported by mumail: {name} = {}",
                        self.main.path, e.line, e.value
                    )));
                }
                Status::Rejected => {}
            }
        }
        Ok(warnings)
    }
}

/// Parameters of the lookup tables that have their own configuration
/// (ldap_table(5), mysql_table(5), pgsql_table(5), sqlite_table(5),
/// memcache_table(5)), as Postfix 3.7's postconf knows them.
const LDAP_PARAMS: &[&str] = &[
    "bind",
    "bind_dn",
    "bind_pw",
    "cache",
    "cache_expiry",
    "cache_size",
    "chase_referrals",
    "debuglevel",
    "dereference",
    "domain",
    "expansion_limit",
    "leaf_result_attribute",
    "query_filter",
    "recursion_limit",
    "result_attribute",
    "result_filter",
    "result_format",
    "sasl_authz_id",
    "sasl_mechs",
    "sasl_minssf",
    "sasl_realm",
    "scope",
    "search_base",
    "server_host",
    "server_port",
    "size_limit",
    "special_result_attribute",
    "start_tls",
    "terminal_result_attribute",
    "timeout",
    "tls_ca_cert_dir",
    "tls_ca_cert_file",
    "tls_cert",
    "tls_cipher_suite",
    "tls_key",
    "tls_random_file",
    "tls_require_cert",
    "version",
];
const MYSQL_PARAMS: &[&str] = &[
    "additional_conditions",
    "dbname",
    "domain",
    "expansion_limit",
    "hosts",
    "idle_interval",
    "option_file",
    "option_group",
    "password",
    "query",
    "require_result_set",
    "result_format",
    "retry_interval",
    "select_field",
    "table",
    "tls_CAfile",
    "tls_CApath",
    "tls_cert_file",
    "tls_ciphers",
    "tls_key_file",
    "tls_verify_cert",
    "user",
    "where_field",
];
const PGSQL_PARAMS: &[&str] = &[
    "additional_conditions",
    "dbname",
    "domain",
    "expansion_limit",
    "hosts",
    "password",
    "query",
    "result_format",
    "select_field",
    "select_function",
    "table",
    "user",
    "where_field",
];
const SQLITE_PARAMS: &[&str] = &[
    "additional_conditions",
    "dbpath",
    "domain",
    "expansion_limit",
    "query",
    "result_format",
    "select_field",
    "table",
    "where_field",
];
const MEMCACHE_PARAMS: &[&str] = &[
    "backup",
    "data_size_limit",
    "domain",
    "flags",
    "key_format",
    "line_size_limit",
    "max_try",
    "memcache",
    "retry_pause",
    "timeout",
    "ttl",
];

/// The parameter names of a table type with its own configuration.
pub fn table_params(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "ldap" => LDAP_PARAMS,
        "mysql" => MYSQL_PARAMS,
        "pgsql" => PGSQL_PARAMS,
        "sqlite" => SQLITE_PARAMS,
        "memcache" => MEMCACHE_PARAMS,
        _ => return None,
    })
}

/// Names referenced as `$name`, `${name...}` or `$(name...)` in `text`.
pub fn referenced_names(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() {
            let mut j = i + 1;
            if b[j] == b'$' {
                i += 2;
                continue;
            }
            if b[j] == b'{' || b[j] == b'(' {
                j += 1;
            }
            let start = j;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                j += 1;
            }
            if j > start {
                out.push(text[start..j].to_string());
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(main: &str, master: &str) -> Params {
        Params {
            main: MainCf::parse("main.cf", main.as_bytes()).unwrap(),
            master: MasterCf::parse("master.cf", master.as_bytes()).unwrap(),
            host: HostFacts {
                hostname: "vm".into(),
                addrs: vec![],
                pid: 7,
            },
            ..Default::default()
        }
    }

    #[test]
    fn compatibility_level_defaults() {
        // RHEL ships compatibility_level = 2 (ref/postfix.md 9.3).
        let p = params("compatibility_level = 2\n", "");
        assert_eq!(p.get("mynetworks_style").unwrap(), "host");
        assert_eq!(p.get("relay_domains").unwrap(), "");
        assert_eq!(
            p.get("smtpd_relay_restrictions").unwrap(),
            "permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination"
        );
        assert_eq!(p.get("smtputf8_enable").unwrap(), "yes");
        assert_eq!(p.get("append_dot_mydomain").unwrap(), "no");
        let old = params("", "");
        assert_eq!(old.get("mynetworks_style").unwrap(), "subnet");
        assert_eq!(
            old.get("relay_domains").unwrap(),
            "vm.localdomain, localhost.localdomain, localhost"
        );
        assert_eq!(old.get("smtpd_relay_restrictions").unwrap(), "");
        assert_eq!(old.get("smtputf8_enable").unwrap(), "no");
    }

    #[test]
    fn service_defined_and_unused() {
        let p = params(
            "cyrus_destination_recipient_limit = 1\nfoo = 1\nbar = $foo\nbaz = 2\n",
            "cyrus unix - n n - - pipe user=cyrus\n",
        );
        assert!(p.is_known("cyrus_destination_recipient_limit"));
        assert_eq!(p.default_raw("cyrus_time_limit").unwrap(), "$command_time_limit");
        let unused: Vec<String> = p.unused().into_iter().map(|(_, n, _)| n).collect();
        assert_eq!(unused, vec!["bar".to_string(), "baz".to_string()]);
    }

    #[test]
    fn typed_values_in_postfix_wording() {
        let p = params(
            "line_length_limit = abc\nsoft_bounce = maybe\nsmtpd_recipient_limit = 0\nmaximal_queue_lifetime = 3\nsmtpd_timeout = 5m\n",
            "",
        );
        assert_eq!(
            p.get_int("line_length_limit", 1, 0).unwrap_err().to_string(),
            "bad numerical configuration: line_length_limit = abc"
        );
        assert_eq!(
            p.get_bool("soft_bounce").unwrap_err().to_string(),
            "bad boolean configuration: soft_bounce = maybe"
        );
        assert_eq!(
            p.get_int("smtpd_recipient_limit", 1, 0).unwrap_err().to_string(),
            "invalid smtpd_recipient_limit parameter value 0 < 1"
        );
        assert_eq!(p.get_time("maximal_queue_lifetime").unwrap().as_secs(), 3 * 86400);
        assert_eq!(p.get_time("smtpd_timeout").unwrap().as_secs(), 300);
        assert_eq!(p.get_time("minimal_backoff_time").unwrap().as_secs(), 300);
        assert_eq!(p.get_int("message_size_limit", 0, 0).unwrap(), 10240000);
        assert!(!p.get_bool("smtpd_helo_required").unwrap());
    }

    #[test]
    fn status_warnings() {
        // Not implemented: a warning when set, unless set to its default.
        let p = params(
            "html_directory = /usr/share/doc\nmyhostname = a.example\nsmtp_pix_workarounds =\nsmtp_skip_5xx_greeting = yes\n",
            "",
        );
        let w = p.check_status().unwrap();
        assert_eq!(
            w,
            vec![
                "main.cf, line 1: parameter html_directory is not implemented; ignored".to_string(),
                "main.cf, line 3: parameter smtp_pix_workarounds is not implemented; ignored".to_string()
            ]
        );
    }

    #[test]
    fn host_defaults_follow_main_cf() {
        let p = params("mydomain = foo.org\n", "");
        assert_eq!(p.get("myhostname").unwrap(), "vm.foo.org");
        let p = params("myhostname = mx.example.com\n", "");
        assert_eq!(p.get("mydomain").unwrap(), "example.com");
    }
}
