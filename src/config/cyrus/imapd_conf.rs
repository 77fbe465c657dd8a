//! imapd.conf as Cyrus's libconfig reads it: `key: value` lines, whole-line
//! `#` comments, `\` continuation, lower-cased keys, `@include:`, duplicate
//! options fatal, `<service>_<option>` overrides for the running service,
//! deprecated names copied to their replacement, unknown keys kept in the
//! overflow table (`partition-*`, `sasl_*`, `<host>_password`, …).

use super::options::{options, parse_duration, parse_int, parse_switch, Kind};
use crate::config::ConfigError;
use std::collections::HashMap;

/// Nesting bound for `@include:` (a file including itself is refused).
pub const MAX_INCLUDE_DEPTH: usize = 16;

#[derive(Debug, Clone)]
struct Set {
    value: String,
    line: usize,
    specific: bool,
}

#[derive(Debug, Clone, Default)]
pub struct ImapdConf {
    pub path: String,
    /// The service name (`CYRUS_SERVICE`, `cyr_info -n`) whose
    /// `<service>_<option>` lines override the generic ones.
    pub ident: Option<String>,
    set: HashMap<&'static str, Set>,
    /// Keys that are not options (or belong to other services), file order.
    pub overflow: Vec<(String, String)>,
    /// Warnings Cyrus would syslog (deprecated names).
    pub warnings: Vec<String>,
}

fn err(msg: String) -> ConfigError {
    ConfigError::Syntax(msg)
}

impl ImapdConf {
    pub fn load(path: &str, ident: Option<&str>) -> Result<ImapdConf, ConfigError> {
        let mut c = ImapdConf {
            path: path.to_string(),
            ident: ident.map(str::to_string),
            ..Default::default()
        };
        c.read(path, 0)?;
        c.finish()?;
        Ok(c)
    }

    /// Sets the process's file creation mask from `umask` (its octal
    /// digits; default 077), as every Cyrus program does once it has read
    /// imapd.conf: mail, indexes and databases are the server user's
    /// alone.  Sockets are chmod-ed where they are made.  Called by the
    /// daemons and tools, not by `load`, which tests call in-process.
    pub fn apply_umask(&self) {
        let text = self.get("umask").unwrap_or("077");
        let mask = text
            .bytes()
            .filter(|c| (b'0'..=b'7').contains(c))
            .fold(0u32, |m, c| (m << 3 | u32::from(c - b'0')) & 0o7777);
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask as nix::libc::mode_t));
    }

    /// Parses text directly (tests, fuzzing); `@include` still reads files.
    pub fn parse(path: &str, data: &[u8], ident: Option<&str>) -> Result<ImapdConf, ConfigError> {
        let mut c = ImapdConf {
            path: path.to_string(),
            ident: ident.map(str::to_string),
            ..Default::default()
        };
        c.parse_text(path, data, 0)?;
        c.finish()?;
        Ok(c)
    }

    fn read(&mut self, path: &str, depth: usize) -> Result<(), ConfigError> {
        let data = crate::config::read_file(path).map_err(|e| match e {
            ConfigError::Io { path, err } => err_open(&path, &err),
            other => other,
        })?;
        self.parse_text(path, &data, depth)
    }

    fn parse_text(&mut self, path: &str, data: &[u8], depth: usize) -> Result<(), ConfigError> {
        if depth > MAX_INCLUDE_DEPTH {
            return Err(err(format!("@include nesting too deep (loop?) in configuration file {path}")));
        }
        let text = String::from_utf8_lossy(data);
        let mut pending = String::new();
        let mut start_line = 0;
        for (i, raw) in text.split('\n').enumerate() {
            let lineno = i + 1;
            if pending.is_empty() {
                start_line = lineno;
            }
            if let Some(body) = raw.strip_suffix('\\') {
                pending.push_str(body);
                continue;
            }
            pending.push_str(raw);
            let line = std::mem::take(&mut pending);
            self.line(path, &line, start_line, depth)?;
        }
        if !pending.is_empty() {
            let line = std::mem::take(&mut pending);
            self.line(path, &line, start_line, depth)?;
        }
        Ok(())
    }

    fn line(&mut self, path: &str, line: &str, lineno: usize, depth: usize) -> Result<(), ConfigError> {
        let t = line.trim_start();
        if t.is_empty() || t.starts_with('#') {
            return Ok(());
        }
        let key_end = t.find(':');
        let valid_key = |k: &str| {
            !k.is_empty()
                && k.chars()
                    .enumerate()
                    .all(|(i, c)| c.is_ascii_alphanumeric() || c == '_' || c == '-' || (i == 0 && c == '@'))
        };
        let Some(key_end) = key_end.filter(|&e| valid_key(&t[..e])) else {
            return Err(err(format!("invalid option name on line {lineno} of configuration file {path}")));
        };
        let key = t[..key_end].to_ascii_lowercase();
        let value = t[key_end + 1..].trim();
        if value.is_empty() {
            return Err(err(format!("empty option value on line {lineno} of configuration file")));
        }
        if key == "@include" {
            return self.read(value, depth + 1);
        }
        let opts = options();
        // <service>_<option> for the running service.
        if let Some(ident) = &self.ident {
            if let Some(rest) = key.strip_prefix(&format!("{ident}_")) {
                if let Some(def) = opts.get(rest) {
                    return self.set_option(def.name, value, lineno, true);
                }
            }
        }
        match opts.get(&key) {
            Some(def) if def.deprecated_by.is_none() => self.set_option(def.name, value, lineno, false),
            Some(def) => {
                let new = def.deprecated_by.unwrap_or_default();
                self.warnings.push(format!("Option '{key}' is deprecated in favor of '{new}'."));
                self.add_overflow(&key, value, lineno)?;
                // Resolved after the whole file is read (see `finish`).
                self.set_option(def.name, value, lineno, false)
            }
            None => self.add_overflow(&key, value, lineno),
        }
    }

    fn add_overflow(&mut self, key: &str, value: &str, lineno: usize) -> Result<(), ConfigError> {
        if self.overflow.iter().any(|(k, _)| k == key) {
            return Err(err(format!(
                "option '{key}' was specified twice in config file (second occurrence on line {lineno})"
            )));
        }
        self.overflow.push((key.to_string(), value.to_string()));
        Ok(())
    }

    fn set_option(&mut self, name: &'static str, value: &str, lineno: usize, specific: bool) -> Result<(), ConfigError> {
        let def = options().get(name).expect("name comes from the registry");
        let normalised = match def.kind {
            Kind::Switch => match parse_switch(value) {
                Some(b) => if b { "yes" } else { "no" }.to_string(),
                None => return Err(err(format!("non-switch value for {name} in line {lineno}"))),
            },
            Kind::Int => match parse_int(value) {
                Some(n) => n.to_string(),
                None => return Err(err(format!("non-integer value for {name} in line {lineno}"))),
            },
            Kind::Duration => match parse_duration(value, 's') {
                Some(_) => value.to_string(),
                None => return Err(err(format!("unparsable duration '{value}' for {name} in line {lineno}"))),
            },
            Kind::Enum if !def.allowed.is_empty() => {
                if !def.allowed.contains(&value) {
                    return Err(err(format!("invalid value '{value}' for {name} in line {lineno}")));
                }
                value.to_string()
            }
            Kind::Bitfield if !def.allowed.is_empty() => {
                if let Some(bad) = value.split_whitespace().find(|v| !def.allowed.contains(v)) {
                    return Err(err(format!("invalid value '{bad}' for {name} in line {lineno}")));
                }
                value.to_string()
            }
            _ => value.to_string(),
        };
        match self.set.get(name) {
            Some(old) if old.specific == specific => {
                let shown = if specific {
                    format!("{}_{name}", self.ident.as_deref().unwrap_or(""))
                } else {
                    name.to_string()
                };
                return Err(err(format!(
                    "option '{shown}' was specified twice in config file (second occurrence on line {lineno})"
                )));
            }
            Some(old) if old.specific && !specific => return Ok(()),
            _ => {}
        }
        self.set.insert(
            name,
            Set {
                value: normalised,
                line: lineno,
                specific,
            },
        );
        Ok(())
    }

    fn finish(&mut self) -> Result<(), ConfigError> {
        // Deprecated options go to their replacement unless it is set; a
        // string is moved (its own slot cleared), a number or switch copied.
        let opts = options();
        let deprecated: Vec<(&'static str, &'static str)> = self
            .set
            .keys()
            .filter_map(|n| opts.get(n).and_then(|d| d.deprecated_by.map(|r| (d.name, r))))
            .collect();
        for (old, new) in deprecated {
            let Some(new_def) = opts.get(new) else {
                continue;
            };
            if self.set.contains_key(new_def.name) {
                continue;
            }
            let s = self.set[old].clone();
            self.set_option(new_def.name, &s.value, s.line, false)?;
            if opts.get(old).is_some_and(|d| d.kind == Kind::Str) {
                self.set.remove(old);
            }
        }
        if !self.set.contains_key("configdirectory") {
            return Err(err("configdirectory option not specified in configuration file".into()));
        }
        if let Some(p) = self.set.get("defaultpartition") {
            if !p.value.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(err("defaultpartition option contains non-alnum character".into()));
            }
        }
        Ok(())
    }

    /// One warning per option set here that mumail accepts but does not
    /// implement (the daemons log these once at start).
    pub fn status_warnings(&self) -> Vec<String> {
        let mut v: Vec<(usize, String)> = self
            .set
            .iter()
            .filter(|(n, _)| options().get(n).is_some_and(|d| !d.supported && d.deprecated_by.is_none()))
            .map(|(n, s)| {
                (
                    s.line,
                    format!("{}: line {}: option {n} is not implemented; ignored", self.path, s.line),
                )
            })
            .collect();
        v.sort();
        v.into_iter().map(|(_, w)| w).collect()
    }

    /// The value of a known option as `cyr_info` prints it (default if unset).
    pub fn get(&self, name: &str) -> Option<&str> {
        let def = options().get(name)?;
        Some(self.set.get(def.name).map_or(def.default, |s| s.value.as_str()))
    }

    /// Whether a known option was set (by any spelling).
    pub fn is_set(&self, name: &str) -> bool {
        self.set.contains_key(name)
    }

    /// The line that set a known option.
    pub fn line_of(&self, name: &str) -> Option<usize> {
        self.set.get(name).map(|s| s.line)
    }

    pub fn get_switch(&self, name: &str) -> bool {
        self.get(name).and_then(parse_switch).unwrap_or(false)
    }

    pub fn get_int(&self, name: &str) -> i64 {
        self.get(name).and_then(parse_int).unwrap_or(0)
    }

    /// A duration option in seconds, a bare number read in `unit` (`s`,
    /// `m`, `d`) as Cyrus reads that option; None when unset without a
    /// default.
    pub fn get_secs(&self, name: &str, unit: char) -> Option<i64> {
        self.get(name).and_then(|v| parse_duration(v, unit))
    }

    /// `failedloginpause` (3 s): how long a failed login waits before its
    /// reply, to slow down password guessing.  At most a minute here.
    pub fn failed_login_pause(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.get_secs("failedloginpause", 's').unwrap_or(3).clamp(0, 60) as u64)
    }

    /// `plaintextloginpause` (unset): how long a successful plaintext
    /// login without TLS waits before its reply.  At most a minute here.
    pub fn plaintext_login_pause(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.get_secs("plaintextloginpause", 's').unwrap_or(0).clamp(0, 60) as u64)
    }

    /// `maxmessagesize` in bytes; unset or 0: 1 GiB, as every read has a
    /// limit.
    pub fn max_message_size(&self) -> usize {
        match self.get_int("maxmessagesize") {
            n if n > 0 => n as usize,
            _ => 1 << 30,
        }
    }

    /// An overflow key (`partition-default`, `sasl_pwcheck_method`, …),
    /// the service-specific spelling first.
    pub fn overflow(&self, key: &str) -> Option<&str> {
        let find = |k: &str| self.overflow.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str());
        self.ident.as_ref().and_then(|i| find(&format!("{i}_{key}"))).or_else(|| find(key))
    }

    /// Partitions: `partition-NAME: path`.
    pub fn partitions(&self) -> Vec<(&str, &str)> {
        self.overflow
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("partition-").map(|n| (n, v.as_str())))
            .collect()
    }

    /// Expands `{configdirectory}` in a string option, as Cyrus does.
    pub fn path_option(&self, name: &str) -> Option<String> {
        let v = self.get(name)?;
        Some(v.replace("{configdirectory}", self.get("configdirectory").unwrap_or("")))
    }
}

fn err_open(path: &str, e: &std::io::Error) -> ConfigError {
    err(format!("can't open configuration file {path}: {}", crate::util::strerror(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(s: &str, ident: Option<&str>) -> Result<ImapdConf, String> {
        ImapdConf::parse("imapd.conf", s.as_bytes(), ident).map_err(|e| e.to_string())
    }

    #[test]
    fn reading_rules() {
        let c = conf("configdirectory: /var/lib/imap\nAdmins: cyrus root\n# c\nsasl_mech_list: PLAIN \\\n  LOGIN\ntls_cert_file: /x.pem\npartition-default: /var/spool/imap\nallowplaintext: on\nrelayhost_password: s\n", None).unwrap();
        assert_eq!(c.get("admins"), Some("cyrus root"));
        assert_eq!(c.overflow("sasl_mech_list"), Some("PLAIN   LOGIN"));
        assert_eq!(c.get("tls_server_cert"), Some("/x.pem"));
        assert_eq!(c.get("allowplaintext"), Some("yes"));
        assert_eq!(c.partitions(), vec![("default", "/var/spool/imap")]);
        assert_eq!(c.overflow("relayhost_password"), Some("s"));
        assert_eq!(c.path_option("lmtpsocket").unwrap(), "/var/lib/imap/socket/lmtp");
    }

    #[test]
    fn service_overrides_win_regardless_of_order() {
        let c = conf(
            "imaps_timeout: 40\nconfigdirectory: /x\ntimeout: 45\nlmtp_admins: z\n",
            Some("imaps"),
        )
        .unwrap();
        assert_eq!(c.get("timeout"), Some("40"));
        assert_eq!(c.overflow, vec![("lmtp_admins".to_string(), "z".to_string())]);
        let c = conf("configdirectory: /x\nlmtp_admins: z\nadmins: a\n", Some("lmtp")).unwrap();
        assert_eq!(c.get("admins"), Some("z"));
    }

    #[test]
    fn errors_in_cyrus_wording() {
        // Texts observed from Cyrus 3.6.1's cyr_info.
        let cases = [
            (
                "configdirectory: /t\nfoo: 1\nfoo: 2\n",
                "option 'foo' was specified twice in config file (second occurrence on line 3)",
            ),
            ("configdirectory: /t\nfoo:\n", "empty option value on line 2 of configuration file"),
            (
                "configdirectory: /t\nbad key: 1\n",
                "invalid option name on line 2 of configuration file imapd.conf",
            ),
            (
                "configdirectory: /t\ntimeout: abc\n",
                "unparsable duration 'abc' for timeout in line 2",
            ),
            (
                "configdirectory: /t\nallowplaintext: maybe\n",
                "non-switch value for allowplaintext in line 2",
            ),
            (
                "configdirectory: /t\nvirtdomains: sometimes\n",
                "invalid value 'sometimes' for virtdomains in line 2",
            ),
            (
                "configdirectory: /t\nmaxmessagesize: 12abc\n",
                "non-integer value for maxmessagesize in line 2",
            ),
            ("admins: x\n", "configdirectory option not specified in configuration file"),
            (
                "configdirectory: /t\ndefaultpartition: a-b\n",
                "defaultpartition option contains non-alnum character",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(conf(input, None).unwrap_err(), want, "{input}");
        }
    }

    #[test]
    fn status_warnings_for_unimplemented_options() {
        let c = conf("configdirectory: /x\nhttpmodules: caldav\nadmins: cyrus\n", None).unwrap();
        assert_eq!(
            c.status_warnings(),
            vec!["imapd.conf: line 2: option httpmodules is not implemented; ignored".to_string()]
        );
    }

    #[test]
    fn include_loop_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a.conf");
        std::fs::write(&a, format!("@include: {}\n", a.display())).unwrap();
        let e = ImapdConf::parse("main", format!("configdirectory: /t\n@include: {}\n", a.display()).as_bytes(), None).unwrap_err();
        assert!(e.to_string().contains("@include"), "{e}");
    }
}
