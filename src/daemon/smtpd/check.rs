//! smtpd access restrictions (smtpd_check.c's job): restriction lists
//! evaluated left to right, the first PERMIT/REJECT/DEFER ending a list;
//! with `smtpd_delay_reject` the client, helo and sender lists run at RCPT;
//! relay and recipient lists in the order `compatibility_level` picks; an
//! implicit `reject_unlisted_recipient` at the end.  Reply texts are
//! Postfix's `<what>: <Class> rejected: <text>`; table errors are
//! `451 4.3.5 … Server configuration error`, never accept or reject.

use crate::daemon::hub::conf::{match_networks, HubConf, SmtpdConf};
use crate::daemon::qmgr::resolve::{class, split, Class};
use crate::tables::{Maps, Table};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Dunno,
    Permit,
    /// A complete reply line (code, DSN, text).
    Reject(String),
}

/// What the checks see of the session.
pub struct Facts<'a> {
    pub client_name: &'a str,
    pub client_addr: IpAddr,
    pub helo: Option<&'a str>,
    pub sasl_user: Option<&'a str>,
    pub sender: Option<&'a str>,
    pub rcpt: Option<&'a str>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Client,
    Helo,
    Sender,
    Recipient,
    Data,
}

impl Stage {
    fn class(self) -> &'static str {
        match self {
            Stage::Client => "Client host",
            Stage::Helo => "Helo command",
            Stage::Sender => "Sender address",
            Stage::Recipient => "Recipient address",
            Stage::Data => "Data command",
        }
    }
}

/// Tables named in restriction lists, opened once.
#[derive(Default)]
pub struct TableCache(Mutex<HashMap<String, std::sync::Arc<Table>>>);

impl TableCache {
    fn get(&self, spec: &str) -> Result<std::sync::Arc<Table>, crate::tables::TableError> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = m.get(spec) {
            return Ok(t.clone());
        }
        let t = std::sync::Arc::new(Table::open(spec)?);
        m.insert(spec.to_string(), t.clone());
        Ok(t)
    }
}

pub struct Checker<'a> {
    /// Set when an access table said HOLD (the message goes to `hold`).
    pub hold: std::cell::Cell<Option<String>>,
    pub hub: &'a HubConf,
    pub conf: &'a SmtpdConf,
    pub tables: &'a TableCache,
    pub local_maps: &'a Maps,
    pub virtual_maps: &'a Maps,
    pub relay_maps: &'a Maps,
    /// canonical and virtual alias tables (a listed address is known).
    pub cleanup: &'a crate::daemon::hub::cleanup::Rewriter,
}

/// Forces the reply code and DSN class to agree, applies soft_bounce.
fn fix(code: u16, dsn: &str, text: &str, soft: bool) -> String {
    let code = if soft && code / 100 == 5 { code - 100 } else { code };
    let dsn = format!("{}{}", code / 100, dsn.get(1..).unwrap_or(".0.0"));
    format!("{code} {dsn} {text}")
}

fn config_error(what: &str, stage: Stage) -> Verdict {
    Verdict::Reject(format!(
        "451 4.3.5 <{what}>: {} rejected: Server configuration error",
        stage.class()
    ))
}

fn fqdn(h: &str) -> bool {
    let h = h.trim_end_matches('.');
    h.contains('.') && !h.starts_with('.') && !h.contains("..")
}

fn valid_hostname(h: &str) -> bool {
    let h = h.trim_end_matches('.');
    if let Some(lit) = h.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
        return lit.trim_start_matches("IPv6:").parse::<IpAddr>().is_ok();
    }
    !h.is_empty()
        && h.len() <= 255
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

impl Checker<'_> {
    fn reject(&self, code: u16, dsn: &str, what: &str, stage: Stage, text: &str) -> Verdict {
        Verdict::Reject(fix(
            code,
            dsn,
            &format!("<{what}>: {} rejected: {text}", stage.class()),
            self.conf.soft_bounce,
        ))
    }

    /// The access(5) action found in a table.
    fn action(&self, value: &str, what: &str, stage: Stage) -> Verdict {
        let v = value.trim();
        let (word, rest) = match v.find([' ', '\t']) {
            Some(i) => (&v[..i], v[i..].trim_start()),
            None => (v, ""),
        };
        let up = word.to_ascii_uppercase();
        if up == "OK" || up.chars().all(|c| c.is_ascii_digit()) && up.len() != 3 {
            return Verdict::Permit;
        }
        if up.len() == 3 && up.chars().all(|c| c.is_ascii_digit()) && (up.starts_with('4') || up.starts_with('5')) {
            let code: u16 = up.parse().unwrap_or(554);
            let (dsn, text) = match rest.split_once(' ') {
                Some((d, t)) if d.split('.').count() == 3 && d.starts_with(&up[..1]) => (d.to_string(), t.to_string()),
                _ => (format!("{}.7.1", &up[..1]), rest.to_string()),
            };
            return self.reject(code, &dsn, what, stage, &text);
        }
        match up.as_str() {
            "REJECT" => {
                let text = if rest.is_empty() { "Access denied" } else { rest };
                let code = self.conf_code("access_map_reject_code", 554);
                self.reject(code, "5.7.1", what, stage, text)
            }
            "DEFER" | "DEFER_IF_PERMIT" | "DEFER_IF_REJECT" => {
                let text = if rest.is_empty() { "Access denied" } else { rest };
                let code = self.conf_code("access_map_defer_code", 450);
                self.reject(code, "4.7.1", what, stage, text)
            }
            "HOLD" => {
                let text = if rest.is_empty() {
                    format!("{} triggers HOLD action", stage.class())
                } else {
                    rest.to_string()
                };
                self.hold.set(Some(format!("<{what}>: {text}")));
                Verdict::Dunno
            }
            "DUNNO" | "WARN" | "INFO" | "PREPEND" => Verdict::Dunno,
            "PERMIT" => Verdict::Permit,
            _ => config_error(what, stage),
        }
    }

    fn conf_code(&self, _name: &str, default: u16) -> u16 {
        default
    }

    /// access(5) lookups with the key order of each stage.
    fn access(&self, spec: &str, f: &Facts<'_>, stage: Stage) -> Verdict {
        let t = match self.tables.get(spec) {
            Ok(t) => t,
            Err(_) => return config_error(self.what(f, stage).as_str(), stage),
        };
        let what = self.what(f, stage);
        // (key, full): a pattern table (regexp, pcre, cidr) is given only
        // the full keys, as Postfix's check_access does.
        let mut keys: Vec<(String, bool)> = Vec::new();
        let parent = self.hub.parent_domain_matches.iter().any(|p| p == "smtpd_access_maps");
        let domains = |d: &str, keys: &mut Vec<(String, bool)>| {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            keys.push((d.clone(), true));
            let mut rest = d.as_str();
            while let Some(i) = rest.find('.') {
                rest = &rest[i + 1..];
                if parent {
                    keys.push((rest.to_string(), false));
                }
                keys.push((format!(".{rest}"), false));
            }
        };
        match stage {
            Stage::Client => {
                if f.client_name != "unknown" {
                    domains(f.client_name, &mut keys);
                }
                let a = f.client_addr.to_string();
                keys.push((a.clone(), true));
                if f.client_addr.is_ipv4() {
                    let mut parts: Vec<&str> = a.split('.').collect();
                    while parts.len() > 1 {
                        parts.pop();
                        keys.push((parts.join("."), false));
                    }
                }
            }
            Stage::Helo => {
                if let Some(h) = f.helo {
                    domains(h, &mut keys);
                }
            }
            Stage::Sender | Stage::Recipient | Stage::Data => {
                let addr = if stage == Stage::Recipient { f.rcpt } else { f.sender }.unwrap_or("");
                if addr.is_empty() {
                    keys.push(("<>".into(), true));
                } else {
                    let (local, domain) = split(addr);
                    let lower = addr.to_ascii_lowercase();
                    keys.push((lower, true));
                    if let Some(base) = self.strip_ext(local) {
                        keys.push((format!("{base}@{domain}"), false));
                    }
                    if !domain.is_empty() {
                        domains(&domain, &mut keys);
                    }
                    keys.push((format!("{}@", local.to_ascii_lowercase()), false));
                }
            }
        }
        for (k, full) in keys {
            if !full && t.is_pattern() {
                continue;
            }
            match t.lookup(&k) {
                Ok(Some(v)) => return self.action(&v, &what, stage),
                Ok(None) => {}
                Err(_) => return config_error(&what, stage),
            }
        }
        Verdict::Dunno
    }

    fn strip_ext<'b>(&self, local: &'b str) -> Option<&'b str> {
        crate::daemon::qmgr::resolve::split_ext(self.hub, local).map(|(base, _)| base)
    }

    fn what(&self, f: &Facts<'_>, stage: Stage) -> String {
        match stage {
            Stage::Client => format!("{}[{}]", f.client_name, f.client_addr),
            Stage::Helo => f.helo.unwrap_or("").to_string(),
            Stage::Sender | Stage::Data => f.sender.unwrap_or("").to_string(),
            Stage::Recipient => f.rcpt.unwrap_or("").to_string(),
        }
    }

    fn auth_destination(&self, rcpt: &str) -> bool {
        let (local, domain) = split(rcpt);
        // Sender-specified routing is never authorised (user@a@b, %, !).
        if local.contains(['@', '%', '!']) {
            return false;
        }
        self.hub.is_final(&domain) || self.hub.relay_domains.matches(&domain)
    }

    /// One restriction list.
    fn list(&self, list: &[String], f: &Facts<'_>, stage: Stage) -> Verdict {
        let mut it = list.iter();
        while let Some(r) = it.next() {
            let r = r.as_str();
            let v = match r {
                "permit" => Verdict::Permit,
                "reject" => self.reject(self.conf.reject_code, "5.7.1", &self.what(f, stage), stage, "Access denied"),
                "defer" => self.reject(self.conf.defer_code, "4.7.1", &self.what(f, stage), stage, "Try again later"),
                "permit_mynetworks" if match_networks(&self.hub.mynetworks, f.client_addr) => Verdict::Permit,
                "permit_sasl_authenticated" if f.sasl_user.is_some() => Verdict::Permit,
                "permit_mynetworks" | "permit_sasl_authenticated" => Verdict::Dunno,
                "reject_unauth_destination" | "defer_unauth_destination" | "permit_auth_destination" => {
                    let Some(rcpt) = f.rcpt else { continue };
                    let ok = self.auth_destination(rcpt);
                    match (r, ok) {
                        ("permit_auth_destination", true) => Verdict::Permit,
                        ("reject_unauth_destination", false) => Verdict::Reject(fix(
                            self.conf.relay_domains_reject_code,
                            "5.7.1",
                            &format!("<{rcpt}>: Relay access denied"),
                            self.conf.soft_bounce,
                        )),
                        ("defer_unauth_destination", false) => Verdict::Reject(fix(
                            self.conf.relay_domains_reject_code - 100,
                            "4.7.1",
                            &format!("<{rcpt}>: Relay access denied"),
                            false,
                        )),
                        _ => Verdict::Dunno,
                    }
                }
                "reject_non_fqdn_recipient" | "reject_non_fqdn_sender" => {
                    let addr = if r.ends_with("recipient") { f.rcpt } else { f.sender };
                    let st = if r.ends_with("recipient") {
                        Stage::Recipient
                    } else {
                        Stage::Sender
                    };
                    match addr {
                        Some(a) if !a.is_empty() && !fqdn(&split(a).1) => {
                            self.reject(self.conf.non_fqdn_reject_code, "5.5.2", a, st, "need fully-qualified address")
                        }
                        _ => Verdict::Dunno,
                    }
                }
                "reject_non_fqdn_helo_hostname" | "reject_non_fqdn_hostname" => match f.helo {
                    Some(h) if !fqdn(h) && !h.starts_with('[') => self.reject(
                        self.conf.non_fqdn_reject_code,
                        "5.5.2",
                        h,
                        Stage::Helo,
                        "need fully-qualified hostname",
                    ),
                    _ => Verdict::Dunno,
                },
                "reject_invalid_helo_hostname" | "reject_invalid_hostname" => match f.helo {
                    Some(h) if !valid_hostname(h) => self.reject(501, "5.5.2", h, Stage::Helo, "Invalid name"),
                    _ => Verdict::Dunno,
                },
                "reject_unlisted_recipient" => match f.rcpt {
                    Some(rcpt) => self.unlisted(rcpt),
                    None => Verdict::Dunno,
                },
                "check_client_access" | "check_helo_access" | "check_sender_access" | "check_recipient_access" => {
                    let Some(spec) = it.next() else {
                        return config_error(&self.what(f, stage), stage);
                    };
                    let st = match r {
                        "check_client_access" => Stage::Client,
                        "check_helo_access" => Stage::Helo,
                        "check_sender_access" => Stage::Sender,
                        _ => Stage::Recipient,
                    };
                    if (st == Stage::Helo && f.helo.is_none())
                        || (st == Stage::Recipient && f.rcpt.is_none())
                        || (st == Stage::Sender && f.sender.is_none())
                    {
                        Verdict::Dunno
                    } else {
                        self.access(spec, f, st)
                    }
                }
                // DNS-based checks come with the resolver (a later step);
                // until then they never decide.
                "reject_unknown_recipient_domain"
                | "reject_unknown_sender_domain"
                | "reject_rbl_client"
                | "reject_rhsbl_client"
                | "reject_unknown_client_hostname"
                | "reject_unknown_reverse_client_hostname"
                | "reject_unknown_helo_hostname"
                | "reject_unauth_pipelining"
                | "reject_unlisted_sender"
                | "warn_if_reject" => {
                    if r.starts_with("reject_rbl") || r.starts_with("reject_rhsbl") {
                        it.next();
                    }
                    Verdict::Dunno
                }
                _ => return config_error(&self.what(f, stage), stage),
            };
            if v != Verdict::Dunno {
                return v;
            }
        }
        Verdict::Dunno
    }

    /// `reject_unlisted_recipient`: the recipient must exist in its class's
    /// table (an empty table accepts all).
    pub fn unlisted(&self, rcpt: &str) -> Verdict {
        let (local, domain) = split(rcpt);
        let base = self.strip_ext(local);
        match self.cleanup.is_listed(rcpt) {
            Ok(true) => return Verdict::Dunno,
            Ok(false) => {}
            Err(_) => return Verdict::Reject(format!("451 4.3.0 <{rcpt}>: Temporary lookup failure")),
        }
        // "User unknown in <table>", with the table's reject code.
        let unknown = |table: &str| {
            let suffix = if self.conf.show_user_unknown_table_name {
                format!(" in {table}")
            } else {
                String::new()
            };
            let code = if table.starts_with("local") {
                self.conf.unknown_local_recipient_reject_code
            } else {
                550
            };
            self.reject(code, "5.1.1", rcpt, Stage::Recipient, &format!("User unknown{suffix}"))
        };
        let mut full = vec![rcpt.to_ascii_lowercase()];
        if let Some(b) = base {
            full.push(format!("{b}@{domain}"));
        }
        let (maps, keys, table) = match class(self.hub, &domain) {
            Class::Local => {
                if local.eq_ignore_ascii_case("postmaster") {
                    return Verdict::Dunno;
                }
                let mut k = full.clone();
                k.push(local.to_string());
                if let Some(b) = base {
                    k.push(b.to_string());
                }
                (self.local_maps, k, "local recipient table")
            }
            Class::Virtual => {
                let mut k = full.clone();
                k.push(format!("@{domain}"));
                (self.virtual_maps, k, "virtual mailbox table")
            }
            Class::Relay => {
                let mut k = full.clone();
                k.push(format!("@{domain}"));
                (self.relay_maps, k, "relay recipient table")
            }
            Class::Alias => return unknown("virtual alias table"),
            _ => return Verdict::Dunno,
        };
        if maps.is_empty() {
            return Verdict::Dunno;
        }
        match maps.lookup_keys(&keys) {
            Ok(Some(_)) => Verdict::Dunno,
            Ok(None) => unknown(table),
            Err(_) => Verdict::Reject(format!("451 4.3.0 <{rcpt}>: Temporary lookup failure")),
        }
    }

    /// Everything that runs at RCPT TO.
    pub fn rcpt(&self, f: &Facts<'_>) -> Verdict {
        let mut lists: Vec<(&[String], Stage)> = Vec::new();
        if self.conf.delay_reject {
            lists.push((&self.conf.client_restrictions, Stage::Client));
            lists.push((&self.conf.helo_restrictions, Stage::Helo));
            lists.push((&self.conf.sender_restrictions, Stage::Sender));
        }
        if self.conf.relay_before_recipient {
            lists.push((&self.conf.relay_restrictions, Stage::Recipient));
            lists.push((&self.conf.recipient_restrictions, Stage::Recipient));
        } else {
            lists.push((&self.conf.recipient_restrictions, Stage::Recipient));
            lists.push((&self.conf.relay_restrictions, Stage::Recipient));
        }
        for (l, st) in lists {
            if let Verdict::Reject(r) = self.list(l, f, st) {
                return Verdict::Reject(r);
            }
        }
        if self.conf.reject_unlisted_recipient {
            if let Some(r) = f.rcpt {
                return self.unlisted(r);
            }
        }
        Verdict::Dunno
    }

    /// `smtpd_data_restrictions` at DATA.
    pub fn data(&self, f: &Facts<'_>) -> Verdict {
        match self.list(&self.conf.data_restrictions, f, Stage::Data) {
            Verdict::Reject(r) => Verdict::Reject(r),
            _ => Verdict::Dunno,
        }
    }

    /// Startup check: the relay or recipient list must be able to refuse
    /// relaying (Postfix refuses to run otherwise).
    pub fn has_relay_control(conf: &SmtpdConf) -> bool {
        const WORKING: &[&str] = &[
            "reject_unauth_destination",
            "defer_unauth_destination",
            "reject",
            "defer",
            "defer_if_permit",
            "check_relay_domains",
        ];
        conf.relay_restrictions
            .iter()
            .chain(&conf.recipient_restrictions)
            .any(|r| WORKING.contains(&r.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::postfix::Params;

    fn setup(main: &str) -> (HubConf, SmtpdConf, crate::daemon::hub::cleanup::Rewriter) {
        let mut p = Params::default();
        p.main = crate::config::postfix::MainCf::parse("main.cf", main.as_bytes()).unwrap();
        let hub = HubConf::load(&p).unwrap();
        let rw = crate::daemon::hub::cleanup::Rewriter::load(&p, &hub).unwrap();
        (hub, SmtpdConf::load(&p, "smtp").unwrap(), rw)
    }

    #[test]
    fn relay_and_unlisted() {
        let d = tempfile::tempdir().unwrap();
        let users = d.path().join("users");
        std::fs::write(&users, "alice x\n").unwrap();
        let access = d.path().join("access");
        std::fs::write(&access, "spam.example REJECT no spam\nbad@ 550 5.1.1 go away\n").unwrap();
        let (hub, conf, rw) = setup(&format!(
            "compatibility_level = 3.6\nmyhostname = hub.example.com\nmydestination = example.com\nmynetworks = 10.0.0.0/8\n\
             recipient_delimiter = +\nlocal_recipient_maps = hash:{}\nsmtpd_recipient_restrictions = check_recipient_access hash:{}, check_sender_access hash:{}\n",
            users.display(),
            access.display(),
            access.display()
        ));
        assert!(Checker::has_relay_control(&conf));
        let tables = TableCache::default();
        let lm = Maps::open(&conf.local_recipient_maps).unwrap();
        let empty = Maps::default();
        let c = Checker {
            hold: Default::default(),
            hub: &hub,
            conf: &conf,
            tables: &tables,
            local_maps: &lm,
            virtual_maps: &empty,
            relay_maps: &empty,
            cleanup: &rw,
        };
        let facts = |addr: &str, rcpt: &'static str, sender: &'static str| Facts {
            client_name: "unknown",
            client_addr: addr.parse().unwrap(),
            helo: Some("client.example"),
            sasl_user: None,
            sender: Some(sender),
            rcpt: Some(rcpt),
        };
        assert_eq!(c.rcpt(&facts("192.0.2.1", "alice+x@example.com", "a@b.org")), Verdict::Dunno);
        assert_eq!(
            c.rcpt(&facts("192.0.2.1", "x@elsewhere.org", "a@b.org")),
            Verdict::Reject("454 4.7.1 <x@elsewhere.org>: Relay access denied".into())
        );
        assert_eq!(c.rcpt(&facts("10.1.2.3", "x@elsewhere.org", "a@b.org")), Verdict::Dunno);
        assert_eq!(
            c.rcpt(&facts("10.1.2.3", "bob@example.com", "a@b.org")),
            Verdict::Reject("550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown in local recipient table".into())
        );
        assert_eq!(c.rcpt(&facts("10.1.2.3", "postmaster@example.com", "a@b.org")), Verdict::Dunno);
        assert_eq!(
            c.rcpt(&facts("10.1.2.3", "alice@example.com", "x@mx.spam.example")),
            Verdict::Reject("554 5.7.1 <x@mx.spam.example>: Sender address rejected: no spam".into())
        );
        assert_eq!(
            c.rcpt(&facts("10.1.2.3", "bad@example.com", "a@b.org")),
            Verdict::Reject("550 5.1.1 <bad@example.com>: Recipient address rejected: go away".into())
        );
        std::fs::remove_file(&access).unwrap();
        assert_eq!(
            c.rcpt(&facts("10.1.2.3", "alice@example.com", "a@b.org")),
            Verdict::Reject("451 4.3.5 <alice@example.com>: Recipient address rejected: Server configuration error".into())
        );
    }
}
