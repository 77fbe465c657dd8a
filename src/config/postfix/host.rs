//! Defaults Postfix computes from the host: `myhostname`, `mydomain`,
//! `mynetworks` (per `mynetworks_style` and `inet_protocols`), `process_id`.

use std::net::IpAddr;

/// One local interface address with its prefix length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfAddr {
    pub addr: IpAddr,
    pub prefix: u8,
}

/// The host facts the computed defaults need; tests build one by hand.
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    pub hostname: String,
    pub addrs: Vec<IfAddr>,
    pub pid: u32,
}

impl HostFacts {
    /// Reads the running host (gethostname, getifaddrs).
    pub fn probe() -> HostFacts {
        let hostname = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into());
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        if let Ok(list) = nix::ifaddrs::getifaddrs() {
            for ifa in list {
                let (Some(a), Some(m)) = (ifa.address, ifa.netmask) else {
                    continue;
                };
                if let (Some(a), Some(m)) = (a.as_sockaddr_in(), m.as_sockaddr_in()) {
                    v4.push(IfAddr {
                        addr: IpAddr::V4(a.ip()),
                        prefix: u32::from(m.ip()).count_ones() as u8,
                    });
                } else if let (Some(a), Some(m)) = (a.as_sockaddr_in6(), m.as_sockaddr_in6()) {
                    v6.push(IfAddr {
                        addr: IpAddr::V6(a.ip()),
                        prefix: u128::from(m.ip()).count_ones() as u8,
                    });
                }
            }
        }
        v4.extend(v6);
        HostFacts {
            hostname,
            addrs: v4,
            pid: std::process::id(),
        }
    }

    /// `myhostname`: the host name, completed with `.$mydomain` (or
    /// `.localdomain`) when it has no dot.
    pub fn myhostname(&self, mydomain: Option<&str>) -> String {
        if self.hostname.contains('.') {
            self.hostname.clone()
        } else {
            format!("{}.{}", self.hostname, mydomain.unwrap_or("localdomain"))
        }
    }

    /// `mynetworks` for a style (`host`, `subnet`, `class`) and protocols.
    pub fn mynetworks(&self, style: &str, protocols: &str) -> String {
        let (want4, want6) = match protocols.trim() {
            "ipv4" => (true, false),
            "ipv6" => (false, true),
            _ => (true, true),
        };
        let mut out: Vec<String> = Vec::new();
        for a in &self.addrs {
            let (addr, prefix) = match (a.addr, style) {
                (IpAddr::V4(_), _) if !want4 => continue,
                (IpAddr::V6(_), _) if !want6 => continue,
                (IpAddr::V4(v), "host") => (IpAddr::V4(v), 32),
                (IpAddr::V6(v), "host") => (IpAddr::V6(v), 128),
                (IpAddr::V4(v), "class") => {
                    let p = match v.octets()[0] {
                        0..=127 => 8,
                        128..=191 => 16,
                        _ => 24,
                    };
                    (mask(IpAddr::V4(v), p), p)
                }
                (ip, _) => (mask(ip, a.prefix), a.prefix),
            };
            let s = match addr {
                IpAddr::V4(v) => format!("{v}/{prefix}"),
                IpAddr::V6(v) => format!("[{v}]/{prefix}"),
            };
            if !out.contains(&s) {
                out.push(s);
            }
        }
        out.join(" ")
    }
}

/// `mydomain` default: `myhostname` minus its first label, else `localdomain`.
pub fn mydomain_of(myhostname: &str) -> String {
    match myhostname.split_once('.') {
        Some((_, d)) if !d.is_empty() => d.to_string(),
        _ => "localdomain".to_string(),
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v) => {
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix.min(32)))
            };
            IpAddr::V4((u32::from(v) & m).into())
        }
        IpAddr::V6(v) => {
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix.min(128)))
            };
            IpAddr::V6((u128::from(v) & m).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> HostFacts {
        let a = |s: &str, p| IfAddr {
            addr: s.parse().unwrap(),
            prefix: p,
        };
        HostFacts {
            hostname: "vm".into(),
            addrs: vec![a("127.0.0.1", 8), a("192.0.2.2", 24), a("::1", 128), a("fd00::2", 64)],
            pid: 1,
        }
    }

    #[test]
    fn networks_as_postfix_prints_them() {
        // Observed from Postfix 3.7.11's postconf on a host with these addresses.
        let f = facts();
        assert_eq!(f.mynetworks("subnet", "all"), "127.0.0.0/8 192.0.2.0/24 [::1]/128 [fd00::]/64");
        assert_eq!(f.mynetworks("host", "all"), "127.0.0.1/32 192.0.2.2/32 [::1]/128 [fd00::2]/128");
        assert_eq!(f.mynetworks("subnet", "ipv4"), "127.0.0.0/8 192.0.2.0/24");
    }

    #[test]
    fn names() {
        let f = facts();
        assert_eq!(f.myhostname(None), "vm.localdomain");
        assert_eq!(f.myhostname(Some("foo.org")), "vm.foo.org");
        assert_eq!(mydomain_of("mail.example.com"), "example.com");
        assert_eq!(mydomain_of("vm"), "localdomain");
    }
}
