//! Network patterns (`1.2.3.0/24`, `[::1]/128`, `!…`) as `mynetworks`
//! lists and `cidr:` tables (cidr_table(5)) use them.

use std::net::IpAddr;

/// An address pattern of `mynetworks`-style lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub bits: u8,
    pub negate: bool,
}

/// IPv4-mapped IPv6 addresses compare as IPv4 (a dual-stack listener).
pub fn canonical_ip(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, IpAddr::V4),
        v4 => v4,
    }
}

impl Cidr {
    /// `1.2.3.0/24`, `1.2.3.4`, `[::1]/128`, `[fe80::]/64`, `!…`.
    pub fn parse(tok: &str) -> Option<Cidr> {
        let (negate, tok) = match tok.strip_prefix('!') {
            Some(t) => (true, t),
            None => (false, tok),
        };
        let (a, bits) = match tok.split_once('/') {
            Some((a, b)) => (a, Some(b.parse::<u8>().ok()?)),
            None => (tok, None),
        };
        let a = a.trim_start_matches('[').trim_end_matches(']');
        let addr: IpAddr = a.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(max);
        if bits > max {
            return None;
        }
        Some(Cidr { addr, bits, negate })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical_ip(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.bits == 0 { 0 } else { u32::MAX << (32 - self.bits) };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.bits == 0 { 0 } else { u128::MAX << (128 - self.bits) };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// First match wins; `!` patterns exclude.
pub fn match_networks(list: &[Cidr], ip: IpAddr) -> bool {
    list.iter().find(|c| c.contains(ip)).is_some_and(|c| !c.negate)
}

/// One `cidr:` table rule's pattern.
fn parse_pattern(tok: &str) -> Result<Cidr, String> {
    let c = Cidr::parse(tok).ok_or_else(|| format!("bad address pattern: \"{tok}\""))?;
    let host_bits = match c.addr {
        IpAddr::V4(a) => u32::from(a) & !u32::MAX.checked_shl(32 - u32::from(c.bits)).unwrap_or(0) != 0,
        IpAddr::V6(a) => u128::from(a) & !u128::MAX.checked_shl(128 - u32::from(c.bits)).unwrap_or(0) != 0,
    };
    if host_bits {
        return Err(format!("non-null host address bits in \"{tok}\", skipping this rule"));
    }
    Ok(c)
}

/// A parsed `cidr:` table (cidr_table(5)): `pattern result`, `!pattern
/// result`, `if pattern` … `endif`; first match wins.
#[derive(Debug)]
pub struct CidrTable(Vec<super::Rule<Cidr>>);

impl CidrTable {
    /// Parses the table text; bad rules are skipped with a warning naming
    /// file and line, as Postfix does.
    pub fn parse(text: &str, file: &str) -> (CidrTable, Vec<String>) {
        let mut items = Vec::new();
        let mut warnings = Vec::new();
        for (line, n) in super::logical_lines(text) {
            let (word, rest) = match line.find([' ', '\t']) {
                Some(i) => (&line[..i], line[i..].trim_start()),
                None => (line.as_str(), ""),
            };
            let item = if word.eq_ignore_ascii_case("endif") {
                Ok(super::Item::Endif)
            } else if word.eq_ignore_ascii_case("if") {
                parse_pattern(rest.split_whitespace().next().unwrap_or("")).map(super::Item::If)
            } else if rest.is_empty() {
                Err(format!("no lookup result for \"{word}\""))
            } else {
                parse_pattern(word).map(|p| super::Item::Rule(p, rest.to_string()))
            };
            match item {
                Ok(i) => items.push((i, n)),
                Err(e) => warnings.push(format!("cidr map {file}, line {n}: {e}")),
            }
        }
        let rules = super::build_tree(items, "cidr", file, &mut warnings);
        (CidrTable(rules), warnings)
    }

    pub fn lookup(&self, key: &str) -> Option<String> {
        let ip: IpAddr = key.trim_start_matches('[').trim_end_matches(']').parse().ok()?;
        super::first_match(&self.0, &|c: &Cidr| (c.contains(ip) != c.negate).then(Vec::new)).map(|(r, _)| r.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_table() {
        let (t, w) = CidrTable::parse(
            "# c\n192.168.1.1 exact\n192.168.0.0/16 REJECT private\nif !10.0.0.0/8\n0.0.0.0/0 notten\nendif\n\
             10.1.2.3/8 bad\n[2001:db8::]/32 six\n10.0.0.0/8 ten\n!1.2.3.4 neg\nbogus\nendif\n",
            "t.cidr",
        );
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[0].contains("line 7: non-null host address bits"), "{w:?}");
        assert!(w[1].contains("line 11") && w[2].contains("line 12"), "{w:?}");
        assert_eq!(t.lookup("192.168.1.1").as_deref(), Some("exact"));
        assert_eq!(t.lookup("192.168.7.7").as_deref(), Some("REJECT private"));
        assert_eq!(t.lookup("8.8.8.8").as_deref(), Some("notten"));
        assert_eq!(t.lookup("10.9.9.9").as_deref(), Some("ten"));
        assert_eq!(t.lookup("2001:db8::5").as_deref(), Some("six"));
        assert_eq!(t.lookup("2001:db9::5").as_deref(), Some("neg"));
        assert_eq!(t.lookup("not-an-ip"), None);
    }
}
