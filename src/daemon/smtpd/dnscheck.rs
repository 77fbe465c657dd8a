//! The DNS side of smtpd's restrictions: what `reject_rbl_client`,
//! `reject_rhsbl_*`, `reject_unknown_{sender,recipient}_domain` and
//! `reject_unknown_helo_hostname` need to know, looked up before the
//! (synchronous) restriction lists run and kept for the session, and the
//! DNSBL reply template (`default_rbl_reply`, `rbl_reply_maps`).

use crate::dns::{Dns, DnsError};
use std::collections::HashMap;
use std::net::Ipv4Addr;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Query {
    /// A DNS list name (A records; TXT for the reason when listed).
    List(String),
    /// MX or address records of a mail domain.
    MailHost(String),
    /// Address or MX records of a host name.
    Host(String),
    /// The servers of a name for `check_*_{a,mx,ns}_access` (kind `A`,
    /// `M` or `N`): its MX hosts (itself without MX), its name servers
    /// (a parent's where it has none) or itself, with their addresses.
    Servers(char, String),
    /// `permit_mx_backup`: a domain's MX hosts by preference, with their
    /// addresses.
    MxBackup(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Found,
    /// Listed in a DNS list: its A records and TXT text.
    Listed(Vec<Ipv4Addr>, String),
    /// The domain publishes a null MX (RFC 7505).
    NullMx,
    /// Server host names and their addresses (`Query::Servers`).
    Servers(Vec<(String, Vec<std::net::IpAddr>)>),
    /// MX preferences and each host's addresses (`Query::MxBackup`).
    Exchangers(Vec<(u16, Vec<std::net::IpAddr>)>),
    NotFound,
    Retry,
}

/// Answers of one session.
pub type Answers = HashMap<Query, Answer>;

/// How the client's name was found (Postfix's peer name status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NameStatus {
    #[default]
    Ok,
    /// A temporary lookup failure.
    Temp,
    /// No name, or one that does not map back to the address.
    Perm,
}

/// Longest DNS list reason kept (Postfix truncates the TXT text too).
const MAX_REASON: usize = 500;

pub async fn resolve(dns: &Dns, q: &Query) -> Answer {
    let status = |e: DnsError| if e.not_found() { Answer::NotFound } else { Answer::Retry };
    match q {
        Query::List(name) => match dns.a(name).await {
            Ok(addrs) => {
                let mut reason = dns.txt(name).await.unwrap_or_default().join(" / ");
                reason.retain(|c| !c.is_control());
                if reason.len() > MAX_REASON {
                    let mut cut = MAX_REASON;
                    while !reason.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    reason.truncate(cut);
                }
                Answer::Listed(addrs, reason)
            }
            Err(e) => status(e),
        },
        Query::MailHost(d) => match dns.mail_host(d).await {
            Ok(true) => Answer::Found,
            Ok(false) => Answer::NullMx,
            Err(e) => status(e),
        },
        Query::Host(h) => match dns.host(h).await {
            Ok(()) => Answer::Found,
            Err(e) => status(e),
        },
        Query::Servers(kind, name) => servers(dns, *kind, name).await,
        Query::MxBackup(d) => exchangers(dns, d).await,
    }
}

/// The MX hosts of `domain` with their addresses (at most MAX_SERVERS).
async fn exchangers(dns: &Dns, domain: &str) -> Answer {
    match dns.mx(domain).await {
        Ok(v) if v.len() == 1 && v[0].host.is_empty() => Answer::NullMx,
        Ok(v) => {
            let mut out = Vec::new();
            for m in v.into_iter().take(MAX_SERVERS) {
                out.push((m.pref, dns.addrs(&m.host).await.unwrap_or_default()));
            }
            Answer::Exchangers(out)
        }
        Err(DnsError::Retry(_)) => Answer::Retry,
        Err(_) => Answer::NotFound,
    }
}

/// Most servers of one name looked at (a bound on the lookups a client
/// can cause).
const MAX_SERVERS: usize = 32;

/// Postfix's check_server_access lookups: the server names, then each
/// one's addresses (a name that has none is left with none).
async fn servers(dns: &Dns, kind: char, name: &str) -> Answer {
    let names: Vec<String> = match kind {
        'A' => vec![name.to_string()],
        'M' => match dns.mx(name).await {
            Ok(v) if v.len() == 1 && v[0].host.is_empty() => return Answer::NullMx,
            Ok(v) => v.into_iter().map(|m| m.host).collect(),
            Err(DnsError::Retry(_)) => return Answer::Retry,
            // No MX (or no such name): the name is its own server.
            Err(_) => vec![name.to_string()],
        },
        _ => {
            let mut zone = name;
            loop {
                match dns.ns(zone).await {
                    Ok(v) => break v,
                    Err(DnsError::Retry(_)) => return Answer::Retry,
                    Err(_) => match zone.split_once('.') {
                        Some((_, parent)) if !parent.is_empty() => zone = parent,
                        _ => return Answer::NotFound,
                    },
                }
            }
        }
    };
    let mut out = Vec::new();
    for n in names.into_iter().take(MAX_SERVERS) {
        let addrs = dns.addrs(&n).await.unwrap_or_default();
        out.push((n, addrs));
    }
    Answer::Servers(out)
}

/// Looks up what the session does not know yet (concurrently).
pub async fn fill(dns: &'static Dns, answers: &mut Answers, queries: Vec<Query>) {
    let mut set = tokio::task::JoinSet::new();
    for q in queries {
        if answers.contains_key(&q) {
            continue;
        }
        answers.insert(q.clone(), Answer::Retry);
        set.spawn(async move {
            let a = resolve(dns, &q).await;
            (q, a)
        });
    }
    while let Some(r) = set.join_next().await {
        if let Ok((q, a)) = r {
            answers.insert(q, a);
        }
    }
}

/// A DNS list reply filter (`zone=127.0.0.2`, `zone=127.0.0.[2..11]`,
/// `zone=127.0.0.[2;4;9..12]`): does one of the addresses match?
pub fn filter_match(filter: Option<&str>, addrs: &[Ipv4Addr]) -> bool {
    let Some(f) = filter else {
        return !addrs.is_empty();
    };
    let parts = split_octets(f);
    if parts.len() != 4 {
        return false;
    }
    addrs.iter().any(|a| a.octets().iter().zip(&parts).all(|(o, p)| octet_match(p, *o)))
}

/// `127.0.0.[2;4..6]` → ["127", "0", "0", "[2;4..6]"] (dots inside
/// brackets belong to ranges).
fn split_octets(f: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in f.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            '.' if depth == 0 => {
                out.push(&f[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&f[start..]);
    out
}

fn octet_match(pat: &str, o: u8) -> bool {
    let Some(inner) = pat.strip_prefix('[').and_then(|p| p.strip_suffix(']')) else {
        return pat.parse::<u8>().ok() == Some(o);
    };
    inner.split(';').any(|e| match e.split_once("..") {
        Some((lo, hi)) => match (lo.trim().parse::<u8>(), hi.trim().parse::<u8>()) {
            (Ok(lo), Ok(hi)) => (lo..=hi).contains(&o),
            _ => false,
        },
        None => e.trim().parse::<u8>().ok() == Some(o),
    })
}

/// What the DNSBL reply template may name.
pub struct RblVars<'a> {
    pub code: u16,
    pub class: &'a str,
    pub what: &'a str,
    pub domain: &'a str,
    pub reason: &'a str,
    pub client_address: &'a str,
    pub client_name: &'a str,
    pub helo_name: &'a str,
    pub sender: &'a str,
    pub recipient: &'a str,
}

/// Expands a reply template (`$rbl_code Service unavailable; …`) and
/// splits it as Postfix does: the code, then an optional DSN, then text.
pub fn rbl_reply(template: &str, v: &RblVars<'_>) -> (u16, Option<String>, String) {
    let code = v.code.to_string();
    let look = |n: &str| -> Option<String> {
        let val = match n {
            "rbl_code" => code.as_str(),
            "rbl_class" => v.class,
            "rbl_what" => v.what,
            "rbl_domain" => v.domain,
            "rbl_reason" | "rbl_txt" => v.reason,
            "client_address" => v.client_address,
            "client_name" => v.client_name,
            "helo_name" => v.helo_name,
            "sender" => v.sender,
            "recipient" => v.recipient,
            _ => return None,
        };
        // Empty values count as unset for ${name?text}.
        (!val.is_empty()).then(|| val.replace('$', "$$"))
    };
    let text = crate::config::postfix::expand::Expander::new(&look)
        .expand(template)
        .unwrap_or_else(|_| format!("{} Service unavailable", v.code));
    let (c, rest) = text.split_at(text.find(' ').unwrap_or(text.len()));
    let n = c.parse::<u16>().ok().filter(|n| (400..600).contains(n)).unwrap_or(v.code);
    let rest = rest.trim_start();
    let (dsn, body) = match rest.split_once(' ') {
        Some((d, b)) if d.split('.').count() == 3 && d.chars().all(|ch| ch.is_ascii_digit() || ch == '.') => {
            (Some(d.to_string()), b.to_string())
        }
        _ => (None, rest.to_string()),
    };
    let body = if body.is_empty() { "Service unavailable".to_string() } else { body };
    (n, dsn, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_and_template() {
        let a = |s: &str| vec![s.parse::<Ipv4Addr>().unwrap()];
        assert!(filter_match(None, &a("127.0.0.9")));
        assert!(!filter_match(None, &[]));
        assert!(filter_match(Some("127.0.0.2"), &a("127.0.0.2")));
        assert!(!filter_match(Some("127.0.0.2"), &a("127.0.0.3")));
        assert!(filter_match(Some("127.0.0.[2..11]"), &a("127.0.0.11")));
        assert!(filter_match(Some("127.0.0.[2;4;9..12]"), &a("127.0.0.4")));
        assert!(!filter_match(Some("127.0.0.[2;4;9..12]"), &a("127.0.0.5")));
        let tpl = "$rbl_code Service unavailable; $rbl_class [$rbl_what] blocked using $rbl_domain${rbl_reason?; $rbl_reason}";
        let mut v = RblVars {
            code: 554,
            class: "Client host",
            what: "192.0.2.7",
            domain: "bl.example",
            reason: "listed, see http://bl.example/?192.0.2.7",
            client_address: "192.0.2.7",
            client_name: "unknown",
            helo_name: "x",
            sender: "",
            recipient: "",
        };
        assert_eq!(
            rbl_reply(tpl, &v),
            (
                554,
                None,
                "Service unavailable; Client host [192.0.2.7] blocked using bl.example; listed, see http://bl.example/?192.0.2.7".into()
            )
        );
        v.reason = "";
        assert_eq!(
            rbl_reply(tpl, &v).2,
            "Service unavailable; Client host [192.0.2.7] blocked using bl.example"
        );
        assert_eq!(
            rbl_reply("450 4.7.1 go away $rbl_what", &v),
            (450, Some("4.7.1".into()), "go away 192.0.2.7".into())
        );
        v.reason = "costs $5";
        assert!(rbl_reply(tpl, &v).2.ends_with("; costs $5"));
    }
}
