//! The Postfix parameter registry: every parameter name mumail knows, with its
//! type, its Postfix 3.7 default (expressions included, as `postconf -d`
//! prints them) and mumail's decision for it.  The table lives in
//! `params.tsv`, regenerated from a real Postfix by
//! `tests/tools/gen-postfix-registry.py`; parsing, `postconf -d`, the man-page
//! check and the daemons' "not implemented" warnings all read it.

use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Int,
    /// Integer with an optional unit letter `s m h d w`.
    Time,
    Str,
}

/// Where a default comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The same on every machine.
    Fixed,
    /// Computed from this host at run time (myhostname, mynetworks, …).
    Host,
    /// Fixed when Postfix is built; mumail uses the RHEL build's values.
    Build,
}

/// What mumail does when a parameter is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Supported,
    /// Accepted; a daemon that reads it logs one warning.
    Ignored,
    /// Setting it to a non-default value is fatal (EX_CONFIG).
    Rejected,
}

#[derive(Debug, Clone)]
pub struct Param {
    pub name: &'static str,
    pub kind: Kind,
    pub class: Class,
    pub status: Status,
    pub default: &'static str,
}

/// A service-defined parameter: `<service>_<suffix>` exists for each master.cf
/// service whose command is `command`.
#[derive(Debug, Clone)]
pub struct ServiceParam {
    pub command: &'static str,
    pub suffix: &'static str,
    pub kind: Kind,
    pub default: &'static str,
}

pub struct Registry {
    params: Vec<Param>,
    service: Vec<ServiceParam>,
}

const TABLE: &str = include_str!("params.tsv");

fn kind(s: &str) -> Kind {
    match s {
        "bool" => Kind::Bool,
        "int" => Kind::Int,
        "time" => Kind::Time,
        _ => Kind::Str,
    }
}

fn parse() -> Registry {
    let mut params = Vec::new();
    let mut service = Vec::new();
    for line in TABLE.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let f: Vec<&'static str> = line.splitn(6, '\t').collect();
        if let Some(cmd) = f[0].strip_prefix('@') {
            service.push(ServiceParam {
                command: cmd,
                suffix: f[1],
                kind: kind(f[2]),
                default: f.get(5).copied().unwrap_or(""),
            });
            continue;
        }
        params.push(Param {
            name: f[0],
            kind: kind(f[1]),
            class: match f[2] {
                "host" => Class::Host,
                "build" => Class::Build,
                _ => Class::Fixed,
            },
            status: match f[3] {
                "supported" => Status::Supported,
                "rejected" => Status::Rejected,
                _ => Status::Ignored,
            },
            default: f.get(4).copied().unwrap_or(""),
        });
    }
    params.sort_by(|a, b| a.name.cmp(b.name));
    Registry { params, service }
}

/// The registry, parsed once per process.
pub fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(parse)
}

impl Registry {
    pub fn get(&self, name: &str) -> Option<&Param> {
        self.params.binary_search_by(|p| p.name.cmp(name)).ok().map(|i| &self.params[i])
    }

    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// The service-defined parameters a master.cf entry with `command` creates.
    pub fn service_params(&self, command: &str) -> impl Iterator<Item = &ServiceParam> {
        let command = command.rsplit('/').next().unwrap_or(command).to_string();
        self.service.iter().filter(move |s| s.command == command)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_defaults() {
        let r = registry();
        assert_eq!(r.get("line_length_limit").unwrap().default, "2048");
        assert_eq!(r.get("smtpd_timeout").unwrap().default, "${stress?{10}:{300}}s");
        assert_eq!(r.get("daemon_directory").unwrap().class, Class::Build);
        assert!(r.get("no_such_parameter").is_none());
        assert_eq!(r.service_params("lmtp").count(), 16);
        assert_eq!(r.service_params("pipe").count(), 17);
        assert!(r.params().len() > 800);
    }
}
