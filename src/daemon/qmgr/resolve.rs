//! Address resolution, trivial-rewrite(8)'s job: the address class of a
//! recipient's domain and its `transport:nexthop`, as ADDRESS_CLASS_README
//! and transport(5) define them.

use crate::daemon::hub::conf::HubConf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Local,
    Virtual,
    Alias,
    Relay,
    Default,
}

/// Where one recipient goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Dest {
    /// master.cf service name (`lmtp`, `relay`, `error`, …).
    pub transport: String,
    pub nexthop: String,
}

/// The domain of an address (after the last `@`), lower case; the local
/// part for `user` alone.
pub fn split(addr: &str) -> (&str, String) {
    match addr.rsplit_once('@') {
        Some((l, d)) => (l, d.to_ascii_lowercase()),
        None => (addr, String::new()),
    }
}

/// `user+ext` → (`user`, `+ext`) at the first `recipient_delimiter`
/// character; None without one.
pub fn split_ext<'a>(conf: &HubConf, local: &'a str) -> Option<(&'a str, &'a str)> {
    if conf.recipient_delimiter.is_empty() {
        return None;
    }
    local.find(|c| conf.recipient_delimiter.contains(c)).map(|i| local.split_at(i))
}

/// Completes a bare `user` with `@$myorigin` (`append_at_myorigin`).
pub fn canonical(conf: &HubConf, addr: &str) -> String {
    if addr.is_empty() || addr.contains('@') {
        addr.to_string()
    } else {
        format!("{addr}@{}", conf.myorigin)
    }
}

pub fn class(conf: &HubConf, domain: &str) -> Class {
    if domain.is_empty() || conf.mydestination.matches(domain) || domain.eq_ignore_ascii_case("localhost") {
        Class::Local
    } else if conf.virtual_alias_domains.matches(domain) {
        Class::Alias
    } else if conf.virtual_mailbox_domains.matches(domain) {
        Class::Virtual
    } else if conf.relay_domains.matches(domain) {
        Class::Relay
    } else {
        Class::Default
    }
}

/// Splits `transport:nexthop` at the first colon.
fn parse_transport(spec: &str) -> (String, String) {
    match spec.split_once(':') {
        Some((t, n)) => (t.to_string(), n.to_string()),
        None => (spec.to_string(), String::new()),
    }
}

/// `transport_maps` (transport(5)): the first of `user+ext@domain`,
/// `user@domain`, `domain`, `.parent` domains, `*` that a table has.  A
/// result `transport:nexthop` replaces the class's; an empty part keeps
/// the class's.  Err: a table could not be read (the message is deferred).
pub fn transport_lookup(conf: &HubConf, maps: &crate::tables::Maps, addr: &str) -> Result<Option<(String, String)>, String> {
    if maps.is_empty() {
        return Ok(None);
    }
    let (local, domain) = split(addr);
    let mut keys = vec![addr.to_ascii_lowercase()];
    if let Some((base, _)) = split_ext(conf, local) {
        keys.push(format!("{base}@{domain}").to_ascii_lowercase());
    }
    if !domain.is_empty() {
        keys.push(domain.clone());
        let mut rest = domain.as_str();
        while let Some(i) = rest.find('.') {
            rest = &rest[i + 1..];
            keys.push(format!(".{rest}"));
        }
    }
    keys.push("*".into());
    match maps.lookup_keys(&keys) {
        Ok(Some((v, _))) => {
            let v = v.trim();
            let (t, n) = v.split_once(':').unwrap_or((v, ""));
            Ok(Some((t.to_string(), n.to_string())))
        }
        Ok(None) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// The destination of a recipient, with `transport_maps` applied.
pub fn resolve_with(conf: &HubConf, maps: &crate::tables::Maps, addr: &str) -> Result<Dest, String> {
    let mut d = resolve(conf, addr);
    if let Some((t, n)) = transport_lookup(conf, maps, addr)? {
        if !t.is_empty() {
            d.transport = t;
        }
        if !n.is_empty() {
            d.nexthop = n;
        }
    }
    Ok(d)
}

/// The destination of a recipient.
pub fn resolve(conf: &HubConf, addr: &str) -> Dest {
    let (_, domain) = split(addr);
    let spec = match class(conf, &domain) {
        // local(8) expands aliases, then hands the rest to mailbox_transport.
        Class::Local => conf.local_transport.clone(),
        Class::Virtual => conf.virtual_transport.clone(),
        Class::Alias => "error:5.1.1 User unknown in virtual alias table".to_string(),
        Class::Relay => conf.relay_transport.clone(),
        Class::Default => conf.default_transport.clone(),
    };
    let (transport, mut nexthop) = parse_transport(&spec);
    let relayed = matches!(class(conf, &domain), Class::Relay | Class::Default);
    if nexthop.is_empty() {
        nexthop = if relayed && !conf.relayhost.is_empty() {
            conf.relayhost.clone()
        } else {
            domain
        };
    }
    Dest { transport, nexthop }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::postfix::Params;

    fn conf(main: &str) -> HubConf {
        let mut p = Params::default();
        p.main = crate::config::postfix::MainCf::parse("main.cf", main.as_bytes()).unwrap();
        HubConf::load(&p).unwrap()
    }

    #[test]
    fn classes_and_transports() {
        let c = conf(
            "myhostname = hub.example.com\nmydomain = example.com\nmydestination = $myhostname, $mydomain\n\
             mailbox_transport = lmtp:unix:/run/lmtp\nrelay_domains = partner.net\nrelayhost = [smart.example.com]:25\n\
             virtual_mailbox_domains = v.example.org\nvirtual_transport = lmtp:inet:be1:2003\n",
        );
        let r = |a: &str| {
            let d = resolve(&c, a);
            format!("{}:{}", d.transport, d.nexthop)
        };
        assert_eq!(r("alice@Example.COM"), "local:hub.example.com");
        assert_eq!(r("bob@v.example.org"), "lmtp:inet:be1:2003");
        assert_eq!(r("x@partner.net"), "relay:[smart.example.com]:25");
        assert_eq!(r("x@sub.partner.net"), "relay:[smart.example.com]:25");
        assert_eq!(r("x@elsewhere.org"), "smtp:[smart.example.com]:25");
        assert_eq!(canonical(&c, "root"), "root@hub.example.com");
        let c = conf("mydestination = localhost\n");
        assert_eq!(resolve(&c, "x@other.org").nexthop, "other.org");
        assert_eq!(resolve(&c, "x@localhost").transport, "local");
        let maps = crate::tables::Maps::open(&[
            "inline:{ partner.net=smtp:[gw.partner.net]:2525, .sub.org=relay:, special@other.org=:[mx.x] }".to_string(),
        ])
        .unwrap();
        let r = |a: &str| {
            resolve_with(&c, &maps, a)
                .map(|d| format!("{}:{}", d.transport, d.nexthop))
                .unwrap()
        };
        assert_eq!(r("x@partner.net"), "smtp:[gw.partner.net]:2525");
        assert_eq!(r("x@a.sub.org"), "relay:a.sub.org");
        assert_eq!(r("special@other.org"), "smtp:[mx.x]");
        assert_eq!(r("x@sub.org"), "smtp:sub.org");
    }
}
