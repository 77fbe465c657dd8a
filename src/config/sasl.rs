//! saslauthd configuration: RHEL's `/etc/sysconfig/saslauthd` (shell
//! variable assignments read by the systemd unit: SOCKETDIR, MECH, FLAGS)
//! and `/etc/saslauthd.conf` (`key: value`, the `ldap_*` options).

use crate::config::ConfigError;
use std::collections::BTreeMap;

/// `/etc/sysconfig/saslauthd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sysconfig {
    pub socketdir: String,
    pub mech: String,
    pub flags: Vec<String>,
}

impl Default for Sysconfig {
    fn default() -> Self {
        Sysconfig {
            socketdir: "/run/saslauthd".into(),
            mech: "pam".into(),
            flags: Vec::new(),
        }
    }
}

/// One shell word list: `"a b" c 'd e'` → `a b`, `c`, `d e`.
fn shell_words(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some(x) if x == c => break,
                        Some('\\') if c == '"' => {
                            if let Some(n) = chars.next() {
                                cur.push(n);
                            }
                        }
                        Some(x) => cur.push(x),
                        None => return Err(format!("unterminated {c} quote")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

impl Sysconfig {
    pub fn parse(path: &str, data: &[u8]) -> Result<Sysconfig, ConfigError> {
        let mut sc = Sysconfig::default();
        for (i, line) in String::from_utf8_lossy(data).lines().enumerate() {
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let t = t.strip_prefix("export ").unwrap_or(t);
            let Some((k, v)) = t.split_once('=') else {
                return Err(ConfigError::Syntax(format!("{path}, line {}: expected NAME=value: \"{t}\"", i + 1)));
            };
            let words = shell_words(v).map_err(|e| ConfigError::Syntax(format!("{path}, line {}: {e}", i + 1)))?;
            match k.trim() {
                "SOCKETDIR" => sc.socketdir = words.join(" "),
                "MECH" => sc.mech = words.join(" "),
                "FLAGS" => sc.flags = words.iter().flat_map(|w| w.split_whitespace().map(String::from)).collect(),
                _ => {}
            }
        }
        Ok(sc)
    }

    pub fn load(path: &str) -> Result<Sysconfig, ConfigError> {
        Self::parse(path, &crate::config::read_file(path)?)
    }

    /// The saslauthd argument list the RHEL unit builds:
    /// `-m $SOCKETDIR -a $MECH $FLAGS`.
    pub fn argv(&self) -> Vec<String> {
        let mut v = vec!["-m".to_string(), self.socketdir.clone(), "-a".to_string(), self.mech.clone()];
        v.extend(self.flags.iter().cloned());
        v
    }
}

/// The `saslauthd.conf` keys saslauthd knows, with defaults
/// (saslauthd's LDAP_SASLAUTHD); others warn once.
pub const SASLAUTHD_CONF_KEYS: &[(&str, &str)] = &[
    ("ldap_auth_method", "bind"),
    ("ldap_bind_dn", ""),
    ("ldap_bind_pw", ""),
    ("ldap_password", ""),
    ("ldap_default_domain", ""),
    ("ldap_default_realm", ""),
    ("ldap_deref", "never"),
    ("ldap_filter", "uid=%u"),
    ("ldap_group_attr", "uniqueMember"),
    ("ldap_group_dn", ""),
    ("ldap_group_filter", ""),
    ("ldap_group_match_method", "attr"),
    ("ldap_group_search_base", ""),
    ("ldap_group_scope", "sub"),
    ("ldap_id", ""),
    ("ldap_authz_id", ""),
    ("ldap_mech", ""),
    ("ldap_password_attr", "userPassword"),
    ("ldap_realm", ""),
    ("ldap_referrals", "no"),
    ("ldap_restart", "yes"),
    ("ldap_scope", "sub"),
    ("ldap_search_base", ""),
    ("ldap_servers", "ldap://localhost/"),
    ("ldap_size_limit", "1"),
    ("ldap_start_tls", "no"),
    ("ldap_time_limit", "5"),
    ("ldap_timeout", "5"),
    ("ldap_tls_cacert_dir", ""),
    ("ldap_tls_cacert_file", ""),
    ("ldap_tls_cert", ""),
    ("ldap_tls_check_peer", "no"),
    ("ldap_tls_ciphers", "DEFAULT"),
    ("ldap_tls_key", ""),
    ("ldap_use_sasl", "no"),
    ("ldap_version", "3"),
    ("ldap_debug", "0"),
    ("httpform_host", ""),
    ("httpform_port", "80"),
    ("httpform_uri", ""),
    ("httpform_data", ""),
    ("krb5_conf_file", ""),
    ("krb5_keytab", ""),
    ("krb5_verify_principal", "host"),
];

/// `/etc/saslauthd.conf`: `key: value`, `#` comment lines; values are not
/// quoted.  Unknown keys are kept and reported as warnings.
#[derive(Debug, Clone, Default)]
pub struct SaslauthdConf {
    pub path: String,
    pub values: BTreeMap<String, String>,
    pub warnings: Vec<String>,
}

impl SaslauthdConf {
    pub fn parse(path: &str, data: &[u8]) -> Result<SaslauthdConf, ConfigError> {
        let mut c = SaslauthdConf {
            path: path.to_string(),
            ..Default::default()
        };
        for (i, line) in String::from_utf8_lossy(data).lines().enumerate() {
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let Some((k, v)) = t.split_once(':') else {
                return Err(ConfigError::Syntax(format!("{path}, line {}: missing ':' in \"{t}\"", i + 1)));
            };
            let k = k.trim().to_ascii_lowercase();
            if !SASLAUTHD_CONF_KEYS.iter().any(|(n, _)| *n == k) {
                c.warnings.push(format!("{path}, line {}: unknown option {k}", i + 1));
            }
            c.values.insert(k, v.trim().to_string());
        }
        Ok(c)
    }

    pub fn load(path: &str) -> Result<SaslauthdConf, ConfigError> {
        Self::parse(path, &crate::config::read_file(path)?)
    }

    /// The value or saslauthd's default.
    pub fn get(&self, key: &str) -> &str {
        self.values
            .get(key)
            .map(String::as_str)
            .unwrap_or_else(|| SASLAUTHD_CONF_KEYS.iter().find(|(k, _)| *k == key).map_or("", |(_, d)| d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rhel_sysconfig() {
        let sc = Sysconfig::parse("s", b"# Directory\nSOCKETDIR=/run/saslauthd\nMECH=pam\nFLAGS=\"-c -t 600\"\n").unwrap();
        assert_eq!(sc.argv(), vec!["-m", "/run/saslauthd", "-a", "pam", "-c", "-t", "600"]);
        assert!(Sysconfig::parse("s", b"garbage line\n")
            .unwrap_err()
            .to_string()
            .contains("s, line 1"));
    }

    #[test]
    fn saslauthd_conf() {
        let c = SaslauthdConf::parse("c", b"ldap_servers: ldap://a/ ldap://b/\nldap_filter: (uid=%U)\nldap_bogus: 1\n").unwrap();
        assert_eq!(c.get("ldap_servers"), "ldap://a/ ldap://b/");
        assert_eq!(c.get("ldap_timeout"), "5");
        assert_eq!(c.warnings.len(), 1);
        assert!(SaslauthdConf::parse("c", b"novalue\n").is_err());
    }
}
