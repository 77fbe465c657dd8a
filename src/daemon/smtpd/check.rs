//! smtpd access restrictions (smtpd_check.c's job): restriction lists
//! evaluated left to right, the first PERMIT/REJECT/DEFER ending a list;
//! with `smtpd_delay_reject` the client, helo and sender lists run at RCPT;
//! relay and recipient lists in the order `compatibility_level` picks; an
//! implicit `reject_unlisted_recipient` at the end.  Reply texts are
//! Postfix's `<what>: <Class> rejected: <text>`; table errors are
//! `451 4.3.5 … Server configuration error`, never accept or reject.

use super::dnscheck::{filter_match, rbl_reply, Answer, Answers, NameStatus, Query, RblVars};
use crate::daemon::hub::conf::{match_networks, HubConf, SmtpdConf};
use crate::daemon::qmgr::resolve::{class, split, Class};
use crate::tables::{Maps, Table};
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Dunno,
    Permit,
    /// A complete reply line (code, DSN, text).
    Reject(String),
    /// The answer of this policy service (`check_policy_service`'s
    /// argument) is needed: the session asks it and evaluates again.
    Need(String),
}

/// What the checks see of the session.
pub struct Facts<'a> {
    pub client_name: &'a str,
    /// The reverse (PTR) name, verified or not; `unknown` without one.
    pub reverse_name: &'a str,
    /// How the verified name and the reverse (PTR) name were found.
    pub name_status: NameStatus,
    pub reverse_status: NameStatus,
    pub client_addr: IpAddr,
    /// The connection's own peer address (XCLIENT does not change it).
    pub sock_addr: IpAddr,
    pub helo: Option<&'a str>,
    pub sasl_user: Option<&'a str>,
    pub sender: Option<&'a str>,
    pub rcpt: Option<&'a str>,
    /// The session is under TLS (`reject_plaintext_session`).
    pub tls: bool,
    /// Recipients accepted so far (`reject_multi_recipient_bounce`).
    pub rcpt_count: usize,
    /// The client sent commands ahead of replies where PIPELINING was not
    /// offered or before the greeting (`reject_unauth_pipelining`).
    pub ill_pipelining: bool,
    /// DNS answers looked up for the restrictions (see `queries`).
    pub dns: &'a Answers,
    /// The actions policy servers answered to this command's request, by
    /// `check_policy_service` argument.
    pub policy: &'a HashMap<String, String>,
}

/// The lists that `smtpd_delay_reject = no` runs at their own command.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Early {
    Client,
    Helo,
    Sender,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Client,
    Helo,
    Sender,
    Recipient,
    Data,
    EndOfData,
    /// `check_sasl_access`: the login name.
    Sasl,
    /// `check_reverse_client_hostname_*`: the unverified reverse name.
    ReverseClient,
}

impl Stage {
    fn class(self) -> &'static str {
        match self {
            Stage::Client => "Client host",
            Stage::Helo => "Helo command",
            Stage::Sender => "Sender address",
            Stage::Recipient => "Recipient address",
            Stage::Data => "Data command",
            Stage::EndOfData => "End-of-data",
            Stage::Sasl => "SASL login name",
            Stage::ReverseClient => "Unverified Client host",
        }
    }
}

/// The log text of HOLD and DISCARD: `<what>: Class text`, or
/// `<what>: Class triggers ACTION action` without text.
fn triggers(what: &str, stage: Stage, action: &str, text: &str) -> String {
    if text.is_empty() {
        format!("<{what}>: {} triggers {action} action", stage.class())
    } else {
        format!("<{what}>: {} {text}", stage.class())
    }
}

/// A command word `smtpd_forbidden_commands` (or postscreen's) names:
/// a word (any case) or a `type:table` that has it.
pub fn forbidden_command(tables: &TableCache, list: &[String], word: &str) -> bool {
    list.iter().any(|f| {
        if f.contains(':') {
            tables.get(f).ok().and_then(|t| t.lookup(word).ok().flatten()).is_some()
        } else {
            f.eq_ignore_ascii_case(word)
        }
    })
}

/// Tables named in restriction lists, opened once.
#[derive(Default)]
pub struct TableCache(Mutex<HashMap<String, std::sync::Arc<Table>>>);

impl TableCache {
    pub fn get(&self, spec: &str) -> Result<std::sync::Arc<Table>, crate::tables::TableError> {
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
    /// A pending `defer_if_permit` reply: given if the checks end in
    /// permit; a pending `defer_if_reject` one: replaces a later 5xx.
    pub defer_if_permit: RefCell<Option<String>>,
    pub defer_if_reject: RefCell<Option<String>>,
    /// Lines for the session to log: rejections turned into warnings by
    /// `warn_if_reject` (`reject_warning`), and the WARN and INFO actions
    /// of access tables (`warn`, `info`).
    pub warnings: RefCell<Vec<(&'static str, String)>>,
    /// access(5) message actions: DISCARD, PREPEND, REDIRECT, BCC, FILTER
    /// (kind, argument, text for the log line).
    pub actions: RefCell<Vec<(&'static str, String, String)>>,
    /// The recipient was checked against its table by an explicit
    /// `reject_unlisted_recipient`: the implicit check at the end is not
    /// made again (Postfix's `recipient_rcptmap_checked`).
    pub unlisted_done: std::cell::Cell<bool>,
    /// The same for the sender (`reject_unlisted_sender`, explicit or by
    /// `smtpd_reject_unlisted_sender`; Postfix's `sender_rcptmap_checked`).
    pub sender_unlisted_done: std::cell::Cell<bool>,
    pub hub: &'a HubConf,
    pub conf: &'a SmtpdConf,
    pub tables: &'a TableCache,
    pub local_maps: &'a Maps,
    pub login_maps: &'a Maps,
    /// Restriction classes (and lists from tables) being evaluated, one in
    /// another (Postfix gives up past 100).
    pub depth: std::cell::Cell<usize>,
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
    fn action(&self, value: &str, what: &str, stage: Stage, f: &Facts<'_>) -> Verdict {
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
                let code = self.conf.access_map_reject_code;
                self.reject(code, "5.7.1", what, stage, text)
            }
            "DEFER" => {
                let text = if rest.is_empty() { "Access denied" } else { rest };
                let code = self.conf.access_map_defer_code;
                self.reject(code, "4.7.1", what, stage, text)
            }
            "DEFER_IF_PERMIT" | "DEFER_IF_REJECT" => {
                let text = if rest.is_empty() { "Service unavailable" } else { rest };
                let code = self.conf.access_map_defer_code;
                if let Verdict::Reject(r) = self.reject(code, "4.7.1", what, stage, text) {
                    let slot = if up == "DEFER_IF_PERMIT" {
                        &self.defer_if_permit
                    } else {
                        &self.defer_if_reject
                    };
                    slot.borrow_mut().get_or_insert(r);
                }
                Verdict::Dunno
            }
            "HOLD" => {
                self.hold.set(Some(triggers(what, stage, &up, rest)));
                Verdict::Dunno
            }
            // Logged by the session as `warn:`/`info:` lines.
            "WARN" | "INFO" => {
                self.warnings
                    .borrow_mut()
                    .push((if up == "WARN" { "warn" } else { "info" }, rest.to_string()));
                Verdict::Dunno
            }
            // Message actions, applied by the session: (kind, argument,
            // log text).
            "DISCARD" => {
                self.actions
                    .borrow_mut()
                    .push(("discard", String::new(), triggers(what, stage, &up, rest)));
                Verdict::Permit
            }
            "PREPEND" if !rest.is_empty() => {
                self.actions.borrow_mut().push(("prepend", rest.to_string(), String::new()));
                Verdict::Dunno
            }
            "REDIRECT" | "BCC" if rest.contains('@') && !rest.contains(char::is_whitespace) => {
                let kind = if up == "REDIRECT" { "redirect" } else { "bcc" };
                let log = format!("<{what}>: {} triggers {up} {rest}", stage.class());
                self.actions.borrow_mut().push((kind, rest.to_string(), log));
                Verdict::Dunno
            }
            "FILTER" if rest.contains(':') && !rest.contains(char::is_whitespace) => {
                let log = format!("<{what}>: {} triggers FILTER {rest}", stage.class());
                self.actions.borrow_mut().push(("filter", rest.to_string(), log));
                Verdict::Dunno
            }
            "DUNNO" => Verdict::Dunno,
            "PERMIT" => Verdict::Permit,
            // A restriction class's name, or a list of restrictions: run as
            // a list in this one's place.
            _ => {
                let list: Vec<String> = crate::config::postfix::list::split_list(v)
                    .into_iter()
                    .map(str::to_string)
                    .collect();
                self.nested(&list, f, stage)
            }
        }
    }

    /// A restriction list inside another (a class, or a table's answer).
    fn nested(&self, list: &[String], f: &Facts<'_>, stage: Stage) -> Verdict {
        let depth = self.depth.get();
        if depth >= 100 {
            return config_error(&self.what(f, stage), stage);
        }
        self.depth.set(depth + 1);
        let v = self.list(list, f, stage);
        self.depth.set(depth);
        v
    }

    /// The owners `smtpd_sender_login_maps` gives a sender (looked up as
    /// cleanup's maps are, with mail_addr_find's keys); None when it has
    /// none.
    fn sender_owners(&self, sender: &str) -> Result<Option<String>, ()> {
        let (keys, _) = self.cleanup.find_keys(sender);
        self.login_maps.lookup_keys(&keys).map(|v| v.map(|(v, _)| v)).map_err(|_| ())
    }

    /// `reject_*sender_login_mismatch`: a logged-in client must own the
    /// sender (`unknown_ok`: unless the sender has no owner), and a sender
    /// with an owner needs a login (`logged_out`).
    fn login_mismatch(&self, f: &Facts<'_>, logged_in: bool, unknown_ok: bool, logged_out: bool) -> Verdict {
        let Some(sender) = f.sender.filter(|s| !s.is_empty()) else {
            return Verdict::Dunno;
        };
        // (Postfix opens smtpd_sender_login_maps only with AUTH on.)
        if self.login_maps.is_empty() || !self.conf.sasl_auth_enable {
            return Verdict::Dunno;
        }
        let owners = match self.sender_owners(sender) {
            Ok(o) => o,
            Err(()) => return Verdict::Reject(format!("451 4.3.0 <{sender}>: Temporary lookup failure")),
        };
        let reply = |text: String| Verdict::Reject(fix(553, "5.7.1", &format!("<{sender}>: Sender address rejected: {text}"), false));
        match (f.sasl_user, owners) {
            (Some(user), Some(owners)) if logged_in => {
                let listed = crate::config::postfix::list::split_list(&owners)
                    .iter()
                    .any(|o| o.eq_ignore_ascii_case(user));
                if listed {
                    Verdict::Dunno
                } else {
                    reply(format!("not owned by user {user}"))
                }
            }
            (Some(user), None) if logged_in && !unknown_ok => reply(format!("not owned by user {user}")),
            (None, Some(_)) if logged_out => reply("not logged in".to_string()),
            _ => Verdict::Dunno,
        }
    }

    /// An access(5) table looked up with one key (`check_sasl_access`:
    /// the login name, which the reply names).
    fn lookup_action(&self, spec: &str, key: &str, f: &Facts<'_>, stage: Stage) -> Verdict {
        let what = self.what(f, stage);
        let t = match self.tables.get(spec) {
            Ok(t) => t,
            Err(_) => return config_error(&what, stage),
        };
        self.first_match(&t, &[(key.to_string(), true)], &what, stage, f, false)
            .unwrap_or(Verdict::Dunno)
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
        match stage {
            Stage::Client | Stage::ReverseClient => {
                let name = if stage == Stage::Client { f.client_name } else { f.reverse_name };
                if name != "unknown" {
                    keys.extend(self.domain_keys(name));
                }
                keys.extend(Self::addr_keys(f.client_addr));
            }
            Stage::Helo => {
                if let Some(h) = f.helo {
                    keys.extend(self.domain_keys(h));
                }
            }
            Stage::Sasl => keys.push((f.sasl_user.unwrap_or("").to_string(), true)),
            Stage::Sender | Stage::Recipient | Stage::Data | Stage::EndOfData => {
                let addr = if stage == Stage::Recipient { f.rcpt } else { f.sender }.unwrap_or("");
                if addr.is_empty() {
                    keys.push((self.conf.null_access_lookup_key.clone(), true));
                } else {
                    let (local, domain) = split(addr);
                    let lower = addr.to_ascii_lowercase();
                    keys.push((lower, true));
                    if let Some(base) = self.strip_ext(local) {
                        keys.push((format!("{base}@{domain}"), false));
                    }
                    if !domain.is_empty() {
                        keys.extend(self.domain_keys(&domain));
                    }
                    keys.push((format!("{}@", local.to_ascii_lowercase()), false));
                }
            }
        }
        self.first_match(&t, &keys, &what, stage, f, false).unwrap_or(Verdict::Dunno)
    }

    /// A table's answer for the first of `keys` it has (a pattern table
    /// gets the full keys only); None when it has none.  (A server check's
    /// table may not say OK: Postfix answers a configuration error.)
    fn first_match(&self, t: &Table, keys: &[(String, bool)], what: &str, stage: Stage, f: &Facts<'_>, server: bool) -> Option<Verdict> {
        for (k, full) in keys {
            if !full && t.is_pattern() {
                continue;
            }
            match t.lookup(k) {
                Ok(Some(v)) => {
                    let word = v.split_whitespace().next().unwrap_or("");
                    let numeric = !word.is_empty() && word.len() != 3 && word.chars().all(|c| c.is_ascii_digit());
                    if server && (word.eq_ignore_ascii_case("OK") || numeric) {
                        return Some(Verdict::Reject("451 4.3.5 Server configuration error".into()));
                    }
                    return Some(self.action(&v, what, stage, f));
                }
                Ok(None) => {}
                Err(_) => return Some(config_error(what, stage)),
            }
        }
        None
    }

    /// check_domain_access's keys: the name, then its parent domains.
    fn domain_keys(&self, d: &str) -> Vec<(String, bool)> {
        let parent = self.hub.parent_domain_matches.iter().any(|p| p == "smtpd_access_maps");
        let d = d.trim_end_matches('.').to_ascii_lowercase();
        let mut keys = vec![(d.clone(), true)];
        let mut rest = d.as_str();
        while let Some(i) = rest.find('.') {
            rest = &rest[i + 1..];
            if parent {
                keys.push((rest.to_string(), false));
            }
            keys.push((format!(".{rest}"), false));
        }
        keys
    }

    /// check_addr_access's keys: the address, then (IPv4) its shorter
    /// prefixes.
    fn addr_keys(ip: IpAddr) -> Vec<(String, bool)> {
        let a = ip.to_string();
        let mut keys = vec![(a.clone(), true)];
        if ip.is_ipv4() {
            let mut parts: Vec<&str> = a.split('.').collect();
            while parts.len() > 1 {
                parts.pop();
                keys.push((parts.join("."), false));
            }
        }
        keys
    }

    /// `check_{client,helo,sender,recipient}_{a,mx,ns}_access`: the kind
    /// of servers (`A`, `M`, `N`), the name they serve and the stage.
    fn server_target(&self, r: &str, f: &Facts<'_>) -> Option<(char, String, Stage)> {
        let (who, kind) = r.strip_prefix("check_")?.strip_suffix("_access")?.rsplit_once('_')?;
        let kind = match kind {
            "a" => 'A',
            "mx" => 'M',
            "ns" => 'N',
            _ => return None,
        };
        let (name, stage) = match who {
            "client" if f.client_name != "unknown" => (f.client_name, Stage::Client),
            "reverse_client_hostname" if f.reverse_name != "unknown" => (f.reverse_name, Stage::ReverseClient),
            "helo" => (f.helo?, Stage::Helo),
            "sender" => (f.sender.filter(|s| !s.is_empty())?, Stage::Sender),
            "recipient" => (f.rcpt?, Stage::Recipient),
            _ => return None,
        };
        let domain = name.rsplit_once('@').map_or(name, |(_, d)| d);
        Some((kind, domain.trim_end_matches('.').to_ascii_lowercase(), stage))
    }

    fn is_server_check(r: &str) -> bool {
        let parts = r
            .strip_prefix("check_")
            .and_then(|m| m.strip_suffix("_access"))
            .and_then(|m| m.rsplit_once('_'));
        matches!(
            parts,
            Some((
                "client" | "reverse_client_hostname" | "helo" | "sender" | "recipient",
                "a" | "mx" | "ns"
            ))
        )
    }

    /// Postfix's check_server_access: the table is asked about each server
    /// host name (not for `A`), then each of its addresses; the first
    /// answer, even DUNNO, decides.  An address literal is its own server.
    fn server_access(&self, r: &str, spec: &str, f: &Facts<'_>) -> Verdict {
        let Some((kind, domain, stage)) = self.server_target(r, f) else {
            return Verdict::Dunno;
        };
        let what = self.what(f, stage);
        let t = match self.tables.get(spec) {
            Ok(t) => t,
            Err(_) => return config_error(&what, stage),
        };
        if let Some(lit) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
            let ip = lit.trim_start_matches("ipv6:").parse::<IpAddr>();
            return match ip {
                Ok(ip) if kind != 'N' => self.first_match(&t, &Self::addr_keys(ip), &what, stage, f, true),
                _ => None,
            }
            .unwrap_or(Verdict::Dunno);
        }
        let Some(Answer::Servers(servers)) = f.dns.get(&Query::Servers(kind, domain)) else {
            return Verdict::Dunno;
        };
        for (host, addrs) in servers {
            if let Ok(ip) = host.parse::<IpAddr>() {
                if let Some(v) = self.first_match(&t, &Self::addr_keys(ip), &what, stage, f, true) {
                    return v;
                }
                continue;
            }
            if kind != 'A' {
                if let Some(v) = self.first_match(&t, &self.domain_keys(host), &what, stage, f, true) {
                    return v;
                }
            }
            for ip in addrs {
                if let Some(v) = self.first_match(&t, &Self::addr_keys(*ip), &what, stage, f, true) {
                    return v;
                }
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
            Stage::Sender => f.sender.unwrap_or("").to_string(),
            // smtpd_check_data names the command itself.
            Stage::Data => "DATA".to_string(),
            Stage::EndOfData => "END-OF-MESSAGE".to_string(),
            Stage::Recipient => f.rcpt.unwrap_or("").to_string(),
            Stage::Sasl => f.sasl_user.unwrap_or("").to_string(),
            Stage::ReverseClient => f.reverse_name.to_string(),
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

    /// The domain `permit_mx_backup` must look up: the recipient's, when
    /// it is not an authorized destination, an address literal or routed.
    fn mx_backup_target(&self, f: &Facts<'_>) -> Option<String> {
        let rcpt = f.rcpt?;
        let (local, domain) = split(rcpt);
        if local.contains(['@', '%', '!']) || domain.is_empty() || domain.starts_with('[') || self.auth_destination(rcpt) {
            return None;
        }
        Some(domain.to_ascii_lowercase())
    }

    /// `permit_mx_backup`: permit an authorized destination, or a domain
    /// for which this system is a backup MX (not a primary one) whose
    /// primary MX hosts are in `permit_mx_backup_networks` when that is
    /// set (a domain without MX records has this system, if any, as its
    /// primary: not permitted).  A DNS failure turns a later refusal into
    /// a 450.
    fn mx_backup(&self, f: &Facts<'_>) -> Verdict {
        let Some(rcpt) = f.rcpt else {
            return Verdict::Dunno;
        };
        if self.auth_destination(rcpt) {
            return Verdict::Permit;
        }
        let Some(domain) = self.mx_backup_target(f) else {
            return Verdict::Dunno;
        };
        let mine = |addrs: &[IpAddr]| addrs.iter().any(|a| self.conf.own_addrs.contains(a));
        match f.dns.get(&Query::MxBackup(domain)) {
            Some(Answer::Exchangers(mx)) if !mx.is_empty() => {
                let best = mx[0].0;
                let (primary, backup): (Vec<_>, Vec<_>) = mx.iter().partition(|(p, _)| *p == best);
                if primary.iter().any(|(_, a)| mine(a)) || !backup.iter().any(|(_, a)| mine(a)) {
                    return Verdict::Dunno;
                }
                let nets = &self.conf.mx_backup_networks;
                if nets.is_empty() || primary.iter().any(|(_, a)| a.iter().any(|ip| match_networks(nets, *ip))) {
                    Verdict::Permit
                } else {
                    Verdict::Dunno
                }
            }
            Some(Answer::Retry) => {
                let rep = format!(
                    "450 4.4.4 <{rcpt}>: Recipient address rejected: Unable to look up mail exchanger information: Host not found, try again"
                );
                self.defer_if_reject.borrow_mut().get_or_insert(rep);
                Verdict::Dunno
            }
            _ => Verdict::Dunno,
        }
    }

    /// One restriction list.
    fn list(&self, list: &[String], f: &Facts<'_>, stage: Stage) -> Verdict {
        let mut it = list.iter();
        let mut warn_next = false;
        while let Some(r) = it.next() {
            let r = r.as_str();
            let warn = std::mem::take(&mut warn_next);
            // The access table a check_*_access looked in (for the
            // permit log line).
            let mut table: Option<(&str, Stage)> = None;
            let v = match r {
                "warn_if_reject" => {
                    warn_next = true;
                    continue;
                }
                "defer_if_permit" | "defer_if_reject" => {
                    let text = format!("{r} requested");
                    if let Verdict::Reject(rep) = self.reject(self.conf.defer_code, "4.7.1", &self.what(f, stage), stage, &text) {
                        let slot = if r == "defer_if_permit" {
                            &self.defer_if_permit
                        } else {
                            &self.defer_if_reject
                        };
                        slot.borrow_mut().get_or_insert(rep);
                    }
                    Verdict::Dunno
                }
                "reject_rbl_client"
                | "reject_rhsbl_client"
                | "reject_rhsbl_reverse_client"
                | "reject_rhsbl_sender"
                | "reject_rhsbl_recipient"
                | "reject_rhsbl_helo" => {
                    let Some(arg) = it.next() else {
                        return config_error(&self.what(f, stage), stage);
                    };
                    self.rbl(r, arg, f)
                }
                "reject_unknown_sender_domain" | "reject_unknown_recipient_domain" => self.unknown_domain(r, f),
                "reject_unknown_helo_hostname" | "reject_unknown_hostname" => match f.helo.filter(|h| !h.starts_with('[')) {
                    None => Verdict::Dunno,
                    Some(h) => match f.dns.get(&Query::Host(h.to_string())) {
                        Some(Answer::NotFound) => {
                            self.reject(self.conf.unknown_hostname_reject_code, "4.7.1", h, Stage::Helo, "Host not found")
                        }
                        Some(Answer::Retry) => {
                            let rep = self.reject(450, "4.7.1", h, Stage::Helo, "Host not found");
                            self.tempfail(&self.conf.unknown_helo_hostname_tempfail_action, rep)
                        }
                        _ => Verdict::Dunno,
                    },
                },
                "reject_unknown_client_hostname" | "reject_unknown_client" | "reject_unknown_reverse_client_hostname" => {
                    let reverse = r == "reject_unknown_reverse_client_hostname";
                    let status = if reverse { f.reverse_status } else { f.name_status };
                    let code = match status {
                        NameStatus::Ok => continue,
                        NameStatus::Perm => self.conf.unknown_client_reject_code,
                        NameStatus::Temp => 450,
                    };
                    let which = if reverse { "reverse hostname" } else { "hostname" };
                    // RFC 7372's "reverse DNS validation failed" for the
                    // verified name; Postfix keeps 4.7.1 for the reverse one.
                    Verdict::Reject(fix(
                        code,
                        if reverse { "4.7.1" } else { "4.7.25" },
                        &format!("Client host rejected: cannot find your {which}, [{}]", f.client_addr),
                        self.conf.soft_bounce,
                    ))
                }
                "reject_unauth_pipelining" if f.ill_pipelining => {
                    let what = self.what(f, stage);
                    Verdict::Reject(format!(
                        "503 5.5.0 <{what}>: {} rejected: Improper use of SMTP command pipelining",
                        stage.class()
                    ))
                }
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
                    Some(rcpt) => {
                        self.unlisted_done.set(true);
                        self.unlisted(rcpt)
                    }
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
                        table = Some((spec.as_str(), st));
                        self.access(spec, f, st)
                    }
                }
                "check_reverse_client_hostname_access" => {
                    let Some(spec) = it.next() else {
                        return config_error(&self.what(f, stage), stage);
                    };
                    self.access(spec, f, Stage::ReverseClient)
                }
                "check_policy_service" => {
                    let Some(arg) = it.next() else {
                        return config_error(&self.what(f, stage), stage);
                    };
                    match f.policy.get(arg.as_str()) {
                        Some(action) => self.action(action, &self.what(f, stage), stage, f),
                        None => return Verdict::Need(arg.clone()),
                    }
                }
                "reject_unlisted_sender" => self.unlisted_sender(f),
                r if Self::is_server_check(r) => {
                    let Some(spec) = it.next() else {
                        return config_error(&self.what(f, stage), stage);
                    };
                    self.server_access(r, spec, f)
                }
                // (The pause itself is not made: the checks do not wait.)
                "sleep" => {
                    if it.next().is_none() {
                        return config_error(&self.what(f, stage), stage);
                    }
                    Verdict::Dunno
                }
                "permit_dnswl_client" | "permit_rhswl_client" => {
                    let Some(arg) = it.next() else {
                        return config_error(&self.what(f, stage), stage);
                    };
                    self.allowlisted(r, arg, f, stage)
                }
                "permit_mx_backup" => self.mx_backup(f),
                "permit_inet_interfaces" if self.conf.inet_addrs.contains(&f.sock_addr) => Verdict::Permit,
                "permit_inet_interfaces" => Verdict::Dunno,
                "permit_naked_ip_address" => match f.helo {
                    Some(h) if h.parse::<IpAddr>().is_ok() => Verdict::Permit,
                    _ => Verdict::Dunno,
                },
                "check_sasl_access" => {
                    let Some(spec) = it.next() else {
                        return config_error(&self.what(f, stage), stage);
                    };
                    match f.sasl_user {
                        Some(user) => self.lookup_action(spec, user, f, Stage::Sasl),
                        None => Verdict::Dunno,
                    }
                }
                "reject_plaintext_session" if !f.tls => Verdict::Reject(fix(
                    self.conf.plaintext_reject_code,
                    "4.7.1",
                    "Session encryption is required",
                    self.conf.soft_bounce,
                )),
                "reject_plaintext_session" => Verdict::Dunno,
                "reject_multi_recipient_bounce" => {
                    // At RCPT a second recipient, at DATA more than one.
                    let already = usize::from(stage != Stage::Recipient);
                    if f.sender == Some("") && f.rcpt_count > already {
                        let code = self.conf.multi_recipient_bounce_reject_code;
                        self.reject(code, "5.5.3", &self.what(f, stage), stage, "Multi-recipient bounce")
                    } else {
                        Verdict::Dunno
                    }
                }
                // No client certificate is ever asked for: none matches.
                "permit_tls_clientcerts" | "permit_tls_all_clientcerts" => Verdict::Dunno,
                "check_ccert_access" => {
                    if it.next().is_none() {
                        return config_error(&self.what(f, stage), stage);
                    }
                    Verdict::Dunno
                }
                "reject_sender_login_mismatch" => self.login_mismatch(f, true, false, true),
                "reject_authenticated_sender_login_mismatch" => self.login_mismatch(f, true, false, false),
                "reject_unauthenticated_sender_login_mismatch" => self.login_mismatch(f, false, false, true),
                "reject_known_sender_login_mismatch" => self.login_mismatch(f, true, true, true),
                class if self.conf.restriction_classes.contains_key(class) => self.nested(&self.conf.restriction_classes[class], f, stage),
                "reject_unauth_pipelining" => Verdict::Dunno,
                _ => return config_error(&self.what(f, stage), stage),
            };
            let v = match v {
                Verdict::Reject(rep) if warn => {
                    self.warnings.borrow_mut().push(("reject_warning", rep));
                    Verdict::Dunno
                }
                Verdict::Reject(rep) if rep.starts_with('5') => match self.defer_if_reject.borrow().clone() {
                    Some(d) => Verdict::Reject(d),
                    None => Verdict::Reject(rep),
                },
                v => v,
            };
            if v == Verdict::Permit && !self.conf.restriction_classes.contains_key(r) && self.log_permit(r) {
                let text = self.permit_text(r, table, f, stage);
                self.warnings.borrow_mut().push(("permit", text));
            }
            if v != Verdict::Dunno {
                return v;
            }
        }
        Verdict::Dunno
    }

    /// The permit log line's text: `action=NAME for Class=what `, the
    /// class being what the action looked at; an access table's OK names
    /// the table.
    fn permit_text(&self, r: &str, table: Option<(&str, Stage)>, f: &Facts<'_>, stage: Stage) -> String {
        if let Some((spec, st)) = table {
            return format!("action=OK for {}={} from {spec}", st.class(), self.what(f, st));
        }
        let st = match r {
            "permit_mynetworks"
            | "permit_sasl_authenticated"
            | "permit_inet_interfaces"
            | "permit_dnswl_client"
            | "permit_rhswl_client"
            | "permit_tls_clientcerts"
            | "permit_tls_all_clientcerts" => Stage::Client,
            "permit_naked_ip_address" => Stage::Helo,
            "permit_auth_destination" | "permit_mx_backup" => Stage::Recipient,
            _ => stage,
        };
        format!("action={r} for {}={} ", st.class(), self.what(f, st))
    }

    /// `smtpd_log_access_permit_actions` names this permit action:
    /// the first of its patterns that matches decides (`!name` excludes).
    fn log_permit(&self, action: &str) -> bool {
        for p in &self.conf.log_permit_actions {
            let (neg, pat) = match p.strip_prefix('!') {
                Some(n) => (true, n),
                None => (false, p.as_str()),
            };
            let hit = if pat.contains(':') {
                self.tables.get(pat).ok().and_then(|t| t.lookup(action).ok().flatten()).is_some()
            } else {
                pat.eq_ignore_ascii_case(action)
            };
            if hit {
                return !neg;
            }
        }
        false
    }

    /// A temporary DNS failure: `defer_if_permit` (the default
    /// `*_tempfail_action`) keeps the reply pending, `defer` gives it now.
    fn tempfail(&self, action: &str, rep: Verdict) -> Verdict {
        match (action.trim(), rep) {
            ("defer", v) => v,
            (_, Verdict::Reject(r)) => {
                self.defer_if_permit.borrow_mut().get_or_insert(r);
                Verdict::Dunno
            }
            (_, v) => v,
        }
    }

    /// The DNS list query of a `reject_rbl_client`/`reject_rhsbl_*`
    /// restriction: (query name, class, what is listed, zone, reply filter).
    fn rbl_target<'b>(&self, r: &str, arg: &'b str, f: &Facts<'_>) -> Option<(String, &'static str, String, &'b str, Option<&'b str>)> {
        let (zone, filter) = match arg.split_once('=') {
            Some((z, fl)) => (z, Some(fl)),
            None => (arg, None),
        };
        // The listed domain of an address; the reply names the address.
        let domain_of = |a: Option<&str>| a.map(|a| split(a).1).filter(|d| !d.is_empty() && !d.starts_with('['));
        let (class, what, listed) = match r {
            "reject_rbl_client" => {
                let ip = f.client_addr.to_string();
                return Some((crate::dns::reverse_name(f.client_addr, zone), "Client host", ip, zone, filter));
            }
            "reject_rhsbl_client" | "reject_rhsbl_reverse_client" => {
                let (name, class) = if r == "reject_rhsbl_client" {
                    (f.client_name, Stage::Client)
                } else {
                    (f.reverse_name, Stage::ReverseClient)
                };
                if name == "unknown" {
                    return None;
                }
                let n = name.to_ascii_lowercase();
                (class.class(), n.clone(), n)
            }
            "reject_rhsbl_sender" => ("Sender address", f.sender?.to_string(), domain_of(f.sender)?),
            "reject_rhsbl_recipient" => ("Recipient address", f.rcpt?.to_string(), domain_of(f.rcpt)?),
            _ => {
                let h = f.helo.filter(|h| !h.starts_with('['))?;
                ("Helo command", h.to_string(), h.trim_end_matches('.').to_ascii_lowercase())
            }
        };
        Some((format!("{listed}.{zone}"), class, what, zone, filter))
    }

    /// The DNS allow list name `permit_dnswl_client` (the client address
    /// reversed) or `permit_rhswl_client` (its name) looks up, with the
    /// answer filter.
    fn wl_target<'b>(&self, r: &str, arg: &'b str, f: &Facts<'_>) -> Option<(String, Option<&'b str>)> {
        let (zone, filter) = match arg.split_once('=') {
            Some((z, fl)) => (z, Some(fl)),
            None => (arg, None),
        };
        if r == "permit_dnswl_client" {
            Some((crate::dns::reverse_name(f.client_addr, zone), filter))
        } else if f.client_name == "unknown" {
            None
        } else {
            Some((format!("{}.{zone}", f.client_name.to_ascii_lowercase()), filter))
        }
    }

    /// `permit_dnswl_client`/`permit_rhswl_client`: permit a listed client,
    /// except where that would let it relay (Postfix ignores it then).
    fn allowlisted(&self, r: &str, arg: &str, f: &Facts<'_>, stage: Stage) -> Verdict {
        let Some((name, filter)) = self.wl_target(r, arg, f) else {
            return Verdict::Dunno;
        };
        let Some(Answer::Listed(addrs, _)) = f.dns.get(&Query::List(name)) else {
            return Verdict::Dunno;
        };
        if !filter_match(filter, addrs) {
            return Verdict::Dunno;
        }
        match f.rcpt {
            Some(rcpt) if stage == Stage::Recipient && !self.auth_destination(rcpt) => Verdict::Dunno,
            _ => Verdict::Permit,
        }
    }

    fn rbl(&self, r: &str, arg: &str, f: &Facts<'_>) -> Verdict {
        let Some((name, class, what, zone, filter)) = self.rbl_target(r, arg, f) else {
            return Verdict::Dunno;
        };
        let Some(Answer::Listed(addrs, reason)) = f.dns.get(&Query::List(name)) else {
            return Verdict::Dunno;
        };
        if !filter_match(filter, addrs) {
            return Verdict::Dunno;
        }
        let mut template = self.conf.default_rbl_reply.clone();
        for spec in &self.conf.rbl_reply_maps {
            match self.tables.get(spec).and_then(|t| t.lookup(zone)) {
                Ok(Some(t)) => {
                    template = t;
                    break;
                }
                Ok(None) => {}
                Err(_) => return config_error(&self.what(f, Stage::Client), Stage::Client),
            }
        }
        let client = f.client_addr.to_string();
        let vars = RblVars {
            code: self.conf.maps_rbl_reject_code,
            class,
            what: &what,
            domain: zone,
            reason,
            client_address: &client,
            client_name: f.client_name,
            helo_name: f.helo.unwrap_or(""),
            sender: f.sender.unwrap_or(""),
            recipient: f.rcpt.unwrap_or(""),
        };
        let (code, dsn, text) = rbl_reply(&template, &vars);
        let dsn = dsn.unwrap_or_else(|| "5.7.1".into());
        Verdict::Reject(fix(code, &dsn, &text, self.conf.soft_bounce))
    }

    /// The domain `reject_unknown_{sender,recipient}_domain` looks up:
    /// none for `<>`, unqualified addresses, address literals and this
    /// host's own (final) domains.
    fn mailhost_target<'b>(&self, r: &str, f: &Facts<'b>) -> Option<(&'b str, String, Stage)> {
        let (addr, stage) = if r == "reject_unknown_sender_domain" {
            (f.sender?, Stage::Sender)
        } else {
            (f.rcpt?, Stage::Recipient)
        };
        let (_, domain) = split(addr);
        if addr.is_empty() || domain.is_empty() || domain.starts_with('[') || self.hub.is_final(&domain) {
            return None;
        }
        Some((addr, domain, stage))
    }

    fn unknown_domain(&self, r: &str, f: &Facts<'_>) -> Verdict {
        let Some((addr, domain, stage)) = self.mailhost_target(r, f) else {
            return Verdict::Dunno;
        };
        let sender = stage == Stage::Sender;
        let dsn = if sender { "4.1.8" } else { "4.1.2" };
        match f.dns.get(&Query::MailHost(domain.clone())) {
            Some(Answer::NotFound) => self.reject(self.conf.unknown_address_reject_code, dsn, addr, stage, "Domain not found"),
            Some(Answer::NullMx) => self.reject(
                if sender { 550 } else { 556 },
                if sender { "5.7.27" } else { "5.1.10" },
                addr,
                stage,
                &format!("Domain {domain} does not accept mail (nullMX)"),
            ),
            Some(Answer::Retry) => {
                let rep = self.reject(450, dsn, addr, stage, "Domain not found");
                self.tempfail(&self.conf.unknown_address_tempfail_action, rep)
            }
            _ => Verdict::Dunno,
        }
    }

    /// The DNS lookups the given lists will need for these facts.
    fn queries(&self, lists: &[(&[String], Stage)], f: &Facts<'_>) -> Vec<Query> {
        let mut out = Vec::new();
        for (list, _) in lists {
            self.list_queries(list, f, &mut out, 0);
        }
        out
    }

    /// The lookups of one list, and of the restriction classes it names.
    fn list_queries(&self, list: &[String], f: &Facts<'_>, out: &mut Vec<Query>, depth: usize) {
        {
            let mut it = list.iter();
            while let Some(r) = it.next() {
                let r = r.as_str();
                if let Some(class) = self.conf.restriction_classes.get(r) {
                    if depth < 10 {
                        self.list_queries(class, f, out, depth + 1);
                    }
                    continue;
                }
                if r.starts_with("reject_rbl_") || r.starts_with("reject_rhsbl_") {
                    if let Some((name, ..)) = it.next().and_then(|a| self.rbl_target(r, a, f)) {
                        out.push(Query::List(name));
                    }
                } else if r == "permit_dnswl_client" || r == "permit_rhswl_client" {
                    if let Some(name) = it.next().and_then(|a| self.wl_target(r, a, f)) {
                        out.push(Query::List(name.0));
                    }
                } else if Self::is_server_check(r) {
                    it.next();
                    if let Some((kind, d, _)) = self.server_target(r, f).filter(|t| !t.1.starts_with('[')) {
                        out.push(Query::Servers(kind, d));
                    }
                } else if r.starts_with("check_") || r == "sleep" {
                    it.next();
                } else if r == "permit_mx_backup" {
                    if let Some(d) = self.mx_backup_target(f) {
                        out.push(Query::MxBackup(d));
                    }
                } else if r == "reject_unknown_sender_domain" || r == "reject_unknown_recipient_domain" {
                    if let Some((_, d, _)) = self.mailhost_target(r, f) {
                        out.push(Query::MailHost(d));
                    }
                } else if r == "reject_unknown_helo_hostname" || r == "reject_unknown_hostname" {
                    if let Some(h) = f.helo.filter(|h| !h.starts_with('[')) {
                        out.push(Query::Host(h.to_string()));
                    }
                }
            }
        }
    }

    /// The lookups `rcpt` will need.
    pub fn rcpt_queries(&self, f: &Facts<'_>) -> Vec<Query> {
        self.queries(&self.rcpt_lists(), f)
    }

    /// The lookups `data` will need.
    pub fn data_queries(&self, f: &Facts<'_>) -> Vec<Query> {
        self.queries(&[(&self.conf.data_restrictions, Stage::Data)], f)
    }

    /// `reject_unlisted_recipient`: the recipient must exist in its class's
    /// table (an empty table accepts all).
    pub fn unlisted(&self, rcpt: &str) -> Verdict {
        self.unlisted_as(rcpt, Stage::Recipient)
    }

    /// `reject_unlisted_sender`: the same tables for the sender (an
    /// empty sender is not checked), refused as `Sender address` with
    /// 5.1.0.
    fn unlisted_sender(&self, f: &Facts<'_>) -> Verdict {
        match f.sender.filter(|s| !s.is_empty()) {
            Some(sender) if !self.sender_unlisted_done.replace(true) => self.unlisted_as(sender, Stage::Sender),
            _ => Verdict::Dunno,
        }
    }

    /// `smtpd_reject_unlisted_sender = yes`: the check after the sender
    /// list, unless that list refused, made the check or discarded.
    fn implicit_unlisted_sender(&self, f: &Facts<'_>) -> Verdict {
        let discarded = self.actions.borrow().iter().any(|a| a.0 == "discard");
        if self.conf.reject_unlisted_sender && !discarded {
            self.unlisted_sender(f)
        } else {
            Verdict::Dunno
        }
    }

    fn unlisted_as(&self, rcpt: &str, stage: Stage) -> Verdict {
        let dsn = if stage == Stage::Sender { "5.1.0" } else { "5.1.1" };
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
            self.reject(code, dsn, rcpt, stage, &format!("User unknown{suffix}"))
        };
        let mut full = vec![rcpt.to_ascii_lowercase()];
        if let Some(b) = base {
            full.push(format!("{b}@{domain}"));
        }
        let (maps, keys, table) = match class(self.hub, &domain) {
            Class::Local => {
                // What qmgr and bounce absorb or send themselves.
                let exempt = ["postmaster", "MAILER-DAEMON", self.hub.double_bounce_sender.as_str()];
                if exempt.iter().any(|e| local.eq_ignore_ascii_case(e)) {
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

    /// The lists that run at RCPT TO, in order.
    fn rcpt_lists(&self) -> Vec<(&[String], Stage)> {
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
        lists
    }

    /// Everything that runs at RCPT TO.
    pub fn rcpt(&self, f: &Facts<'_>) -> Verdict {
        self.unlisted_done.set(false);
        self.sender_unlisted_done.set(false);
        for (l, st) in self.rcpt_lists() {
            if let v @ (Verdict::Reject(_) | Verdict::Need(_)) = self.list(l, f, st) {
                return v;
            }
            // The end of smtpd_check_mail, run again at each RCPT.
            if st == Stage::Sender {
                if let v @ Verdict::Reject(_) = self.implicit_unlisted_sender(f) {
                    return v;
                }
            }
        }
        if self.conf.reject_unlisted_recipient && !self.unlisted_done.get() {
            if let Some(r) = f.rcpt {
                if let Verdict::Reject(r) = self.unlisted(r) {
                    return Verdict::Reject(r);
                }
            }
        }
        self.pending()
    }

    /// The end of a check that did not reject: a pending defer_if_permit
    /// is given now.
    fn pending(&self) -> Verdict {
        match self.defer_if_permit.borrow().clone() {
            Some(r) => Verdict::Reject(r),
            None => Verdict::Dunno,
        }
    }

    /// `smtpd_data_restrictions` at DATA.
    pub fn data(&self, f: &Facts<'_>) -> Verdict {
        match self.list(&self.conf.data_restrictions, f, Stage::Data) {
            v @ (Verdict::Reject(_) | Verdict::Need(_)) => v,
            _ => self.pending(),
        }
    }

    fn early_list(&self, which: Early) -> (&[String], Stage) {
        match which {
            Early::Client => (&self.conf.client_restrictions, Stage::Client),
            Early::Helo => (&self.conf.helo_restrictions, Stage::Helo),
            Early::Sender => (&self.conf.sender_restrictions, Stage::Sender),
        }
    }

    /// The lookups `early` will need.
    pub fn early_queries(&self, which: Early, f: &Facts<'_>) -> Vec<Query> {
        self.queries(&[self.early_list(which)], f)
    }

    /// With `smtpd_delay_reject = no`: the client list at connect, the helo
    /// list at HELO/EHLO, the sender list at MAIL FROM.
    pub fn early(&self, which: Early, f: &Facts<'_>) -> Verdict {
        let (l, st) = self.early_list(which);
        self.sender_unlisted_done.set(false);
        match self.list(l, f, st) {
            v @ (Verdict::Reject(_) | Verdict::Need(_)) => v,
            _ if which == Early::Sender => match self.implicit_unlisted_sender(f) {
                v @ Verdict::Reject(_) => v,
                _ => self.pending(),
            },
            _ => self.pending(),
        }
    }

    /// The lookups `end_of_data` will need.
    pub fn end_of_data_queries(&self, f: &Facts<'_>) -> Vec<Query> {
        self.queries(&[(&self.conf.end_of_data_restrictions, Stage::EndOfData)], f)
    }

    /// `smtpd_end_of_data_restrictions` after the message's final dot (or
    /// last BDAT chunk), before it is queued (smtpd_check_eod).
    pub fn end_of_data(&self, f: &Facts<'_>) -> Verdict {
        match self.list(&self.conf.end_of_data_restrictions, f, Stage::EndOfData) {
            v @ (Verdict::Reject(_) | Verdict::Need(_)) => v,
            _ => self.pending(),
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
    fn server_check_names() {
        for r in [
            "check_client_a_access",
            "check_helo_mx_access",
            "check_sender_ns_access",
            "check_recipient_mx_access",
            "check_reverse_client_hostname_mx_access",
        ] {
            assert!(Checker::is_server_check(r), "{r}");
        }
        for r in [
            "check_client_access",
            "check_sender_txt_access",
            "check_reverse_client_hostname_access",
            "reject",
        ] {
            assert!(!Checker::is_server_check(r), "{r}");
        }
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
            defer_if_permit: Default::default(),
            defer_if_reject: Default::default(),
            warnings: Default::default(),
            actions: Default::default(),
            unlisted_done: Default::default(),
            sender_unlisted_done: Default::default(),
            hub: &hub,
            conf: &conf,
            tables: &tables,
            local_maps: &lm,
            login_maps: &empty,
            depth: Default::default(),
            virtual_maps: &empty,
            relay_maps: &empty,
            cleanup: &rw,
        };
        let answers = Answers::default();
        let no_policy = HashMap::new();
        let facts = |addr: &str, rcpt: &'static str, sender: &'static str| Facts {
            client_name: "unknown",
            reverse_name: "unknown",
            name_status: NameStatus::Perm,
            reverse_status: NameStatus::Perm,
            client_addr: addr.parse().unwrap(),
            sock_addr: addr.parse().unwrap(),
            helo: Some("client.example"),
            sasl_user: None,
            sender: Some(sender),
            rcpt: Some(rcpt),
            tls: false,
            rcpt_count: 0,
            ill_pipelining: false,
            dns: &answers,
            policy: &no_policy,
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
