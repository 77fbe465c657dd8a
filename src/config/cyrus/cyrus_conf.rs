//! cyrus.conf (master(8)'s file): sections START / SERVICES / EVENTS /
//! DAEMON of `name key=value key="quoted value" …` entries.  `#` anywhere
//! cuts the line; entry names are alphanumeric and unique per section.

use crate::config::ConfigError;

/// Cyrus reads lines of at most this many bytes.
pub const MAX_LINE: usize = 4096;
/// At most this many arguments per entry.
pub const MAX_ARGS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Start,
    Services,
    Events,
    Daemon,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub args: Vec<(String, String)>,
    pub line: usize,
}

impl Entry {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.args.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn int(&self, key: &str, default: i64, path: &str) -> Result<i64, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| {
                ConfigError::Syntax(format!(
                    "configuration file {path}: bad integer value for {key}: \"{v}\" on line {}",
                    self.line
                ))
            }),
        }
    }
}

/// Where a service listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// A UNIX socket path.
    Path(String),
    /// `[host:]port` — port may be a service name from /etc/services;
    /// an IPv6 host is written `[addr]:port`.
    Inet { host: Option<String>, port: String },
}

impl Listen {
    pub fn parse(s: &str) -> Listen {
        if s.starts_with('/') {
            return Listen::Path(s.to_string());
        }
        if let Some(rest) = s.strip_prefix('[') {
            if let Some((h, p)) = rest.split_once("]:") {
                return Listen::Inet {
                    host: Some(h.to_string()),
                    port: p.to_string(),
                };
            }
        }
        match s.rsplit_once(':') {
            Some((h, p)) => Listen::Inet {
                host: Some(h.to_string()),
                port: p.to_string(),
            },
            None => Listen::Inet {
                host: None,
                port: s.to_string(),
            },
        }
    }
}

/// A typed SERVICES entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntry {
    pub name: String,
    pub argv: Vec<String>,
    pub listen: Listen,
    pub proto: String,
    pub prefork: i64,
    /// −1 = unlimited.
    pub maxchild: i64,
    pub maxfds: i64,
    pub maxforkrate: i64,
    pub babysit: bool,
}

#[derive(Debug, Clone, Default)]
pub struct CyrusConf {
    pub path: String,
    pub start: Vec<Entry>,
    pub services: Vec<Entry>,
    pub events: Vec<Entry>,
    pub daemon: Vec<Entry>,
}

fn section_of(word: &str) -> Option<Section> {
    // First letter exact, the rest case-insensitive (masterconf.c).
    for (name, s) in [
        ("START", Section::Start),
        ("SERVICES", Section::Services),
        ("EVENTS", Section::Events),
        ("DAEMON", Section::Daemon),
    ] {
        if word.len() == name.len() && word.as_bytes()[0] == name.as_bytes()[0] && word.eq_ignore_ascii_case(name) {
            return Some(s);
        }
    }
    None
}

impl CyrusConf {
    pub fn load(path: &str) -> Result<CyrusConf, ConfigError> {
        let data = crate::config::read_file(path).map_err(|e| match e {
            ConfigError::Io { path, err } => {
                ConfigError::Syntax(format!("can't open configuration file {path}: {}", crate::util::strerror(&err)))
            }
            o => o,
        })?;
        Self::parse(path, &data)
    }

    pub fn parse(path: &str, data: &[u8]) -> Result<CyrusConf, ConfigError> {
        let bad = |line: usize, msg: &str| ConfigError::Syntax(format!("configuration file {path}: {msg} on line {line}"));
        let mut cf = CyrusConf {
            path: path.to_string(),
            ..Default::default()
        };
        // Some(None): inside a section master does not know; it is skipped.
        let mut current: Option<Option<Section>> = None;
        let text = String::from_utf8_lossy(data);
        for (i, raw) in text.split('\n').enumerate() {
            let lineno = i + 1;
            if raw.len() > MAX_LINE {
                return Err(bad(lineno, "line too long"));
            }
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let Some(sect) = current else {
                let word_end = line.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(line.len());
                if line[word_end..].trim_start().starts_with('{') {
                    current = Some(section_of(&line[..word_end]));
                }
                continue;
            };
            if line.starts_with('}') {
                current = None;
                continue;
            }
            let Some(sect) = sect else { continue };
            let entry = parse_entry(line, lineno).map_err(|m| bad(lineno, &m))?;
            let list = match sect {
                Section::Start => &mut cf.start,
                Section::Services => &mut cf.services,
                Section::Events => &mut cf.events,
                Section::Daemon => &mut cf.daemon,
            };
            if sect == Section::Services && list.iter().any(|e| e.name == entry.name) {
                return Err(ConfigError::Syntax(format!("multiple entries for service '{}'", entry.name)));
            }
            list.push(entry);
        }
        Ok(cf)
    }

    /// SERVICES entries, typed.
    pub fn service_entries(&self) -> Result<Vec<ServiceEntry>, ConfigError> {
        let mut out = Vec::new();
        for e in &self.services {
            let miss = |k: &str| {
                ConfigError::Syntax(format!(
                    "configuration file {}: service '{}' has no {k} on line {}",
                    self.path, e.name, e.line
                ))
            };
            let babysit = e
                .get("babysit")
                .map(|v| matches!(v, "1" | "y" | "yes" | "true" | "on"))
                .unwrap_or(false);
            out.push(ServiceEntry {
                name: e.name.clone(),
                argv: e
                    .get("cmd")
                    .ok_or_else(|| miss("cmd"))?
                    .split_whitespace()
                    .map(String::from)
                    .collect(),
                listen: Listen::parse(e.get("listen").ok_or_else(|| miss("listen"))?),
                proto: e.get("proto").unwrap_or("tcp").to_string(),
                prefork: e
                    .int("prefork", if babysit { 1 } else { 0 }, &self.path)?
                    .max(if babysit { 1 } else { 0 }),
                maxchild: e.int("maxchild", -1, &self.path)?,
                maxfds: e.int("maxfds", 256, &self.path)?,
                maxforkrate: e.int("maxforkrate", if babysit { 10 } else { 0 }, &self.path)?,
                babysit,
            });
        }
        Ok(out)
    }
}

fn parse_entry(line: &str, _lineno: usize) -> Result<Entry, String> {
    let bad_char = |c: char, what: &str| format!("bad character '{c}' in {what}");
    let b = line.as_bytes();
    let name_end = b.iter().position(|c| !c.is_ascii_alphanumeric()).unwrap_or(b.len());
    if name_end < b.len() && !b[name_end].is_ascii_whitespace() || name_end == 0 {
        let c = line[name_end..].chars().next().unwrap_or(' ');
        return Err(bad_char(c, "name"));
    }
    let name = line[..name_end].to_string();
    let mut args = Vec::new();
    let mut i = name_end;
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let ks = i;
        while i < b.len() && b[i].is_ascii_alphanumeric() {
            i += 1;
        }
        if i >= b.len() || b[i] != b'=' || i == ks {
            let c = line[i.min(line.len())..].chars().next().unwrap_or(' ');
            return Err(bad_char(c, "argument"));
        }
        let key = line[ks..i].to_string();
        i += 1;
        let value = if i < b.len() && b[i] == b'"' {
            let vs = i + 1;
            let Some(end) = line[vs..].find('"') else {
                return Err("unterminated quote in argument".to_string());
            };
            i = vs + end + 1;
            line[vs..vs + end].to_string()
        } else {
            let vs = i;
            while i < b.len() && !b[i].is_ascii_whitespace() {
                i += 1;
            }
            line[vs..i].to_string()
        };
        args.push((key, value));
        if args.len() > MAX_ARGS {
            return Err(format!("too many arguments for '{name}'"));
        }
    }
    Ok(Entry { name, args, line: _lineno })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_style_file() {
        let cf = CyrusConf::parse(
            "cyrus.conf",
            b"START {\n  recover cmd=\"ctl_cyrusdb -r\"\n}\nSERVICES {\n  imap cmd=\"imapd -U 30\" listen=\"imap\" prefork=0 maxchild=100 # c\n  lmtpunix cmd=\"lmtpd\" listen=\"/run/cyrus/socket/lmtp\"\n  mupdate cmd=\"mupdate -m\" listen=[::1]:3905 prefork=1\n  sieve cmd=\"timsieved\" listen=\"localhost:sieve\"\n}\nEvents {\n checkpoint cmd=\"ctl_cyrusdb -c\" period=30\n}\n",
        )
        .unwrap();
        assert_eq!(cf.start.len(), 1);
        assert_eq!(cf.events[0].get("period"), Some("30"));
        let s = cf.service_entries().unwrap();
        assert_eq!(s[0].argv, vec!["imapd", "-U", "30"]);
        assert_eq!(s[0].maxchild, 100);
        assert_eq!(s[1].listen, Listen::Path("/run/cyrus/socket/lmtp".into()));
        assert_eq!(
            s[2].listen,
            Listen::Inet {
                host: Some("::1".into()),
                port: "3905".into()
            }
        );
        assert_eq!(
            s[3].listen,
            Listen::Inet {
                host: Some("localhost".into()),
                port: "sieve".into()
            }
        );
        assert_eq!(
            s[0].listen,
            Listen::Inet {
                host: None,
                port: "imap".into()
            }
        );
    }

    #[test]
    fn errors_in_master_wording() {
        // Texts observed from Cyrus 3.6.1's master (syslog), exit 78.
        let e = CyrusConf::parse("bad1.conf", b"SERVICES {\n  im-ap cmd=\"imapd\" listen=\"1143\"\n}\n").unwrap_err();
        assert_eq!(e.to_string(), "configuration file bad1.conf: bad character '-' in name on line 2");
        let e = CyrusConf::parse("bad2.conf", b"SERVICES {\n  imap cmd=\"imapd listen=\"1143\"\n}\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "configuration file bad2.conf: bad character '\"' in argument on line 2"
        );
        let e = CyrusConf::parse(
            "c",
            b"SERVICES {\n  imap cmd=\"imapd\" listen=\"1143\"\n  imap cmd=\"imapd\" listen=\"1144\"\n}\n",
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "multiple entries for service 'imap'");
        // master skips sections it does not know, lower-case first letter included.
        let c = CyrusConf::parse(
            "c",
            b"BOGUS {\n  x y\n}\nservices {\n a cmd=\"b\"\n}\nSERVICES {\n imap cmd=\"imapd\" listen=143\n}\n",
        )
        .unwrap();
        assert_eq!(c.services.len(), 1);
        assert!(CyrusConf::parse("c", b"SERVICES {\n a cmd=\"x\n}\n").is_err());
    }
}
