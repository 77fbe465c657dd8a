//! The imapd.conf option registry, in Cyrus's imapoptions order, generated
//! from a real Cyrus 3.6 by `tests/tools/gen-cyrus-registry.py`
//! (`options.tsv`): name, type, default as `cyr_info conf-default` prints
//! it, the replacement of a deprecated option, allowed enum values.

use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Switch,
    Int,
    Duration,
    Enum,
    Bitfield,
    Str,
}

#[derive(Debug, Clone)]
pub struct OptionDef {
    pub name: &'static str,
    pub kind: Kind,
    pub default: &'static str,
    pub deprecated_by: Option<&'static str>,
    pub allowed: Vec<&'static str>,
    /// Unset, the option is a NULL pointer: `conf-all` prints `(null)`.
    pub null_default: bool,
    /// Implemented by mumail; otherwise accepted with one warning.
    pub supported: bool,
}

pub struct Options {
    pub list: Vec<OptionDef>,
    index: std::collections::HashMap<&'static str, usize>,
}

const TABLE: &str = include_str!("options.tsv");

fn parse() -> Options {
    let mut list = Vec::new();
    for line in TABLE.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let f: Vec<&'static str> = line.split('\t').collect();
        let get = |i: usize| f.get(i).copied().unwrap_or("");
        list.push(OptionDef {
            name: get(0),
            kind: match get(1) {
                "switch" => Kind::Switch,
                "int" => Kind::Int,
                "duration" => Kind::Duration,
                "enum" => Kind::Enum,
                "bitfield" => Kind::Bitfield,
                _ => Kind::Str,
            },
            default: get(2),
            deprecated_by: Some(get(3)).filter(|s| !s.is_empty()),
            allowed: get(4).split_whitespace().collect(),
            null_default: get(5) == "null",
            supported: get(6) == "supported",
        });
    }
    let index = list.iter().enumerate().map(|(i, o)| (o.name, i)).collect();
    Options { list, index }
}

pub fn options() -> &'static Options {
    static O: OnceLock<Options> = OnceLock::new();
    O.get_or_init(parse)
}

impl Options {
    pub fn get(&self, name: &str) -> Option<&OptionDef> {
        self.index.get(name).map(|&i| &self.list[i])
    }
    pub fn position(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }
}

/// Cyrus switch spellings: `1 yes on t true` / `0 no off f false`.
pub fn parse_switch(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "yes" | "on" | "t" | "true" => Some(true),
        "0" | "no" | "off" | "f" | "false" => Some(false),
        _ => None,
    }
}

/// `strtol(v, 0)`: decimal, `0x` hex, leading-`0` octal.
pub fn parse_int(v: &str) -> Option<i64> {
    let (neg, s) = match v.strip_prefix('-') {
        Some(s) => (true, s),
        None => (false, v.strip_prefix('+').unwrap_or(v)),
    };
    let n = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()?
    } else if s.len() > 1 && s.starts_with('0') {
        i64::from_str_radix(&s[1..], 8).ok()?
    } else {
        s.parse().ok()?
    };
    Some(if neg { -n } else { n })
}

/// A Cyrus duration (`1h30m`, `45`, `600s`) in seconds; bare numbers use
/// `default_unit` (`s`, `m`, `h` or `d`).
pub fn parse_duration(v: &str, default_unit: char) -> Option<i64> {
    let mut total: i64 = 0;
    let mut num = String::new();
    let unit = |c: char| match c {
        's' => Some(1),
        'm' => Some(60),
        'h' => Some(3600),
        'd' => Some(86400),
        _ => None,
    };
    let (neg, s) = match v.strip_prefix('-') {
        Some(s) => (true, s),
        None => (false, v),
    };
    if s.is_empty() {
        return None;
    }
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
        } else {
            let n: i64 = num.parse().ok()?;
            total = total.checked_add(n.checked_mul(unit(c)?)?)?;
            num.clear();
        }
    }
    if !num.is_empty() {
        let n: i64 = num.parse().ok()?;
        total = total.checked_add(n.checked_mul(unit(default_unit)?)?)?;
    }
    Some(if neg { -total } else { total })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_and_values() {
        let o = options();
        assert_eq!(o.get("timeout").unwrap().default, "32m");
        assert_eq!(o.get("tls_cert_file").unwrap().deprecated_by, Some("tls_server_cert"));
        assert_eq!(o.get("virtdomains").unwrap().allowed, vec!["off", "userid", "on"]);
        assert_eq!(o.get("allowplaintext").unwrap().kind, Kind::Switch);
        assert!(o.list.len() > 500);
        assert_eq!(parse_switch("On"), Some(true));
        assert_eq!(parse_switch("maybe"), None);
        assert_eq!(parse_int("0x10"), Some(16));
        assert_eq!(parse_int("010"), Some(8));
        assert_eq!(parse_duration("1h30m", 'm'), Some(5400));
        assert_eq!(parse_duration("45", 'm'), Some(2700));
        assert_eq!(parse_duration("abc", 'm'), None);
    }
}
