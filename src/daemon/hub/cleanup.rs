//! cleanup(8)'s address rewriting, applied to every message before its
//! queue file is written (smtpd, pickup, local forwarding):
//! `sender_canonical_maps`/`recipient_canonical_maps` then
//! `canonical_maps` (canonical(5), per `canonical_classes`), then the
//! recursive `virtual_alias_maps` expansion (virtual(5)) of each
//! recipient, with `virtual_alias_recursion_limit`,
//! `virtual_alias_expansion_limit` and duplicate removal.  Also the
//! `alias_maps` lookups of local(8).  Header addresses: `headers.rs`.
//!
//! Lookups use mail_addr_find's key order: `user+ext@domain`,
//! `user@domain`, then for a local domain `user+ext` and `user`, then
//! `@domain`; pattern tables get the full address only.  A result
//! `@domain` keeps the local part; an unmatched extension is appended to
//! the result per `propagate_unmatched_extensions`; an unqualified result
//! gets `@$myorigin`.

use crate::config::postfix::list::split_list;
use crate::config::postfix::Params;
use crate::daemon::hub::conf::HubConf;
use crate::queue::Recipient;
use crate::tables::Maps;

#[derive(Debug)]
pub struct Rewriter {
    conf: HubConf,
    sender_canonical: Maps,
    recipient_canonical: Maps,
    canonical: Maps,
    sender_classes: Vec<String>,
    recipient_classes: Vec<String>,
    canonical_classes: Vec<String>,
    masquerade_classes: Vec<String>,
    masquerade_domains: Vec<String>,
    masquerade_exceptions: Vec<String>,
    masquerade_exception_maps: Maps,
    /// header_checks(5): header_checks, mime_header_checks,
    /// nested_header_checks, body_checks.
    pub(super) header_checks: super::headers::Checks,
    pub(super) mime_header_checks: super::headers::Checks,
    pub(super) nested_header_checks: super::headers::Checks,
    pub(super) body_checks: super::headers::Checks,
    /// `body_checks_size_limit`: bytes of each body part checked.
    pub(super) body_checks_size_limit: usize,
    /// `hopcount_limit`: Received: headers (ours included) from which a
    /// message is refused as looping.
    pub(super) hopcount_limit: usize,
    /// `header_size_limit`: bytes kept of one header.
    pub(super) header_size_limit: usize,
    /// `message_drop_headers`, lower case.
    pub(super) drop_headers: Vec<String>,
    pub(super) always_add_missing_headers: bool,
    pub(super) append_at_myorigin: bool,
    /// `$mydomain` when `append_dot_mydomain` is on.
    pub(super) append_dot_mydomain: Option<String>,
    pub virtual_alias: Maps,
    pub alias_maps: Maps,
    propagate: Vec<String>,
    recursion_limit: usize,
    expansion_limit: usize,
}

/// Why cleanup cannot accept a message now (a temporary failure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewriteError(pub String);

impl Rewriter {
    pub fn load(params: &Params, conf: &HubConf) -> Result<Rewriter, String> {
        let s = |n: &str| params.get(n).unwrap_or_default();
        let alias_specs = &conf.alias_maps;
        let maps = |n: &str| {
            let specs: Vec<String> = split_list(&s(n)).into_iter().map(str::to_string).collect();
            Maps::open_aliased(&specs, alias_specs).map_err(|e| format!("{n}: {e}"))
        };
        let checks = |n: &'static str| maps(n).map(|m| super::headers::Checks { name: n, maps: m });
        let classes = |n: &str| split_list(&s(n)).into_iter().map(str::to_string).collect::<Vec<_>>();
        let lower = |n: &str| classes(n).into_iter().map(|c| c.to_ascii_lowercase()).collect::<Vec<_>>();
        let exceptions = classes("masquerade_exceptions");
        let (exception_maps, exception_names): (Vec<String>, Vec<String>) = exceptions.into_iter().partition(|e| e.contains(':'));
        let exception_maps = Maps::open_aliased(&exception_maps, alias_specs).map_err(|e| format!("masquerade_exceptions: {e}"))?;
        let yes = |n: &str| params.get_bool(n).map_err(|e| e.to_string());
        let num = |n: &str| params.get_int(n, 1, 0).map(|v| v as usize).map_err(|e| e.to_string());
        Ok(Rewriter {
            conf: conf.clone(),
            sender_canonical: maps("sender_canonical_maps")?,
            recipient_canonical: maps("recipient_canonical_maps")?,
            canonical: maps("canonical_maps")?,
            sender_classes: lower("sender_canonical_classes"),
            recipient_classes: lower("recipient_canonical_classes"),
            canonical_classes: lower("canonical_classes"),
            masquerade_classes: lower("masquerade_classes"),
            masquerade_domains: lower("masquerade_domains"),
            masquerade_exceptions: exception_names.into_iter().map(|e| e.to_ascii_lowercase()).collect(),
            masquerade_exception_maps: exception_maps,
            drop_headers: lower("message_drop_headers"),
            header_checks: checks("header_checks")?,
            mime_header_checks: checks("mime_header_checks")?,
            nested_header_checks: checks("nested_header_checks")?,
            body_checks: checks("body_checks")?,
            body_checks_size_limit: num("body_checks_size_limit")?,
            hopcount_limit: num("hopcount_limit")?,
            header_size_limit: num("header_size_limit")?,
            always_add_missing_headers: yes("always_add_missing_headers")?,
            append_at_myorigin: yes("append_at_myorigin")?,
            append_dot_mydomain: yes("append_dot_mydomain")?.then(|| conf.mydomain.clone()),
            virtual_alias: maps("virtual_alias_maps")?,
            alias_maps: maps("alias_maps")?,
            propagate: classes("propagate_unmatched_extensions"),
            recursion_limit: num("virtual_alias_recursion_limit")?,
            expansion_limit: num("virtual_alias_expansion_limit")?,
        })
    }

    /// The domain is one of ours for the bare `user` keys.
    fn local_domain(&self, domain: &str) -> bool {
        domain.is_empty()
            || domain.eq_ignore_ascii_case(&self.conf.myorigin)
            || self.conf.mydestination.matches(domain)
            || domain.eq_ignore_ascii_case("localhost")
    }

    /// `user+ext` → (`user`, `+ext`) per `recipient_delimiter`; special
    /// local parts keep their extension, as Postfix's do.
    fn split_ext<'a>(&self, local: &'a str) -> (&'a str, &'a str) {
        if local.eq_ignore_ascii_case("postmaster")
            || local.eq_ignore_ascii_case("mailer-daemon")
            || local.to_ascii_lowercase().starts_with("owner-")
            || local.to_ascii_lowercase().ends_with("-request")
        {
            return (local, "");
        }
        match crate::daemon::qmgr::resolve::split_ext(&self.conf, local) {
            Some((base, ext)) if !base.is_empty() => (base, ext),
            _ => (local, ""),
        }
    }

    /// mail_addr_find's keys for `addr`, in order: the address, without
    /// its extension, the local part (and without its extension) in a
    /// local domain, `@domain`; with whether each dropped the extension.
    pub fn find_keys(&self, addr: &str) -> (Vec<String>, Vec<bool>) {
        let (local, domain) = match addr.rsplit_once('@') {
            Some((l, d)) => (l, d.to_ascii_lowercase()),
            None => (addr, String::new()),
        };
        let (base, ext) = self.split_ext(local);
        let mut keys = vec![addr.to_ascii_lowercase()];
        // Which keys dropped the extension (for propagation).
        let mut stripped = vec![false];
        if !ext.is_empty() && !domain.is_empty() {
            keys.push(format!("{base}@{domain}").to_ascii_lowercase());
            stripped.push(true);
        }
        if self.local_domain(&domain) {
            if !domain.is_empty() {
                keys.push(local.to_ascii_lowercase());
                stripped.push(false);
            }
            if !ext.is_empty() {
                keys.push(base.to_ascii_lowercase());
                stripped.push(true);
            }
        }
        if !domain.is_empty() {
            keys.push(format!("@{domain}"));
            stripped.push(false);
        }
        (keys, stripped)
    }

    /// mail_addr_find + mail_addr_map: the addresses `addr` maps to in
    /// `maps` (None: not found).
    fn map(&self, maps: &Maps, addr: &str, class: &str) -> Result<Option<Vec<String>>, crate::tables::TableError> {
        if maps.is_empty() || addr.is_empty() {
            return Ok(None);
        }
        let (keys, stripped) = self.find_keys(addr);
        let local = addr.rsplit_once('@').map_or(addr, |(l, _)| l);
        let ext = self.split_ext(local).1;
        let Some((value, at)) = maps.lookup_keys(&keys)? else {
            return Ok(None);
        };
        let propagate = stripped[at] && self.propagate.iter().any(|p| p == class);
        let mut out = Vec::new();
        for r in split_list(&value) {
            let r = r.trim();
            if r.is_empty() {
                continue;
            }
            let mut r = if r.starts_with('@') {
                format!("{local}{r}")
            } else if propagate {
                match r.rsplit_once('@') {
                    Some((l, d)) => format!("{l}{ext}@{d}"),
                    None => format!("{r}{ext}"),
                }
            } else {
                r.to_string()
            };
            if !r.contains('@') {
                r = format!("{r}@{}", self.conf.myorigin);
            }
            out.push(r);
        }
        Ok(Some(out))
    }

    pub(super) fn myhostname(&self) -> &str {
        &self.conf.myhostname
    }

    pub(super) fn myorigin(&self) -> &str {
        &self.conf.myorigin
    }

    /// An address of `class` (`envelope_sender`, `header_recipient`, …)
    /// through the canonical maps and masquerading that apply to it.
    pub(super) fn classed(&self, addr: &str, sender: bool, class: &str) -> Result<String, RewriteError> {
        let (first, classes) = if sender {
            (&self.sender_canonical, &self.sender_classes)
        } else {
            (&self.recipient_canonical, &self.recipient_classes)
        };
        let has = |v: &Vec<String>| v.iter().any(|c| c == class);
        let mut a = addr.to_string();
        for (maps, on) in [(first, has(classes)), (&self.canonical, has(&self.canonical_classes))] {
            if !on {
                continue;
            }
            match self.map(maps, &a, "canonical") {
                Ok(Some(v)) if !v.is_empty() => a = v[0].clone(),
                Ok(_) => {}
                Err(_) => {
                    return Err(RewriteError(format!(
                        "canonical_maps map lookup problem for {addr} -- message not accepted, try again later"
                    )))
                }
            }
        }
        if has(&self.masquerade_classes) {
            a = self.masquerade(&a)?;
        }
        Ok(a)
    }

    /// masquerade_domains: the subdomain part stripped below the first
    /// listed domain the address is in (`!domain`: left alone), unless the
    /// local part is in `masquerade_exceptions`.
    fn masquerade(&self, addr: &str) -> Result<String, RewriteError> {
        let Some((local, domain)) = addr.rsplit_once('@') else {
            return Ok(addr.to_string());
        };
        if self.masquerade_domains.is_empty() {
            return Ok(addr.to_string());
        }
        let user = local.to_ascii_lowercase();
        if self.masquerade_exceptions.contains(&user) {
            return Ok(addr.to_string());
        }
        if !self.masquerade_exception_maps.is_empty() {
            match self.masquerade_exception_maps.lookup_keys(std::slice::from_ref(&user)) {
                Ok(Some(_)) => return Ok(addr.to_string()),
                Ok(None) => {}
                Err(_) => {
                    return Err(RewriteError(format!(
                        "masquerade_exceptions map lookup problem for {addr} -- message not accepted, try again later"
                    )))
                }
            }
        }
        let d = domain.to_ascii_lowercase();
        for m in &self.masquerade_domains {
            let (neg, m) = match m.strip_prefix('!') {
                Some(x) => (true, x),
                None => (false, m.as_str()),
            };
            let under = d.len() > m.len() && d.ends_with(m) && d.as_bytes()[d.len() - m.len() - 1] == b'.';
            if neg && (d == m || under) {
                break;
            }
            if !neg && under {
                return Ok(format!("{local}@{m}"));
            }
        }
        Ok(addr.to_string())
    }

    /// The envelope sender after canonical mapping and masquerading.
    pub fn sender(&self, addr: &str) -> Result<String, RewriteError> {
        if addr.is_empty() {
            return Ok(addr.to_string());
        }
        self.classed(addr, true, "envelope_sender")
    }

    /// The envelope as cleanup writes it: sender and recipients rewritten.
    pub fn envelope(&self, sender: &str, rcpts: Vec<Recipient>) -> Result<(String, Vec<Recipient>), RewriteError> {
        Ok((self.sender(sender)?, self.recipients(rcpts)?))
    }

    /// header/body_checks' BCC and REDIRECT applied to the recipients:
    /// each BCC address is added as a recipient (rewritten as any other,
    /// NOTIFY=NEVER, once); then with REDIRECT every recipient becomes
    /// that address, the original kept for `orig_to=` and DSN.
    pub fn check_recipients(&self, mut rcpts: Vec<Recipient>, c: &super::headers::Cleaned) -> Result<Vec<Recipient>, RewriteError> {
        for b in &c.bcc {
            let mut r = Recipient::new(b);
            r.notify = Some("NEVER".into());
            let added = self.recipients(vec![r])?;
            for r in added {
                if !rcpts.iter().any(|x| x.addr.eq_ignore_ascii_case(&r.addr)) {
                    rcpts.push(r);
                }
            }
        }
        if let Some(to) = &c.redirect {
            for r in rcpts.iter_mut() {
                if r.orig.is_none() {
                    r.orig = Some(r.addr.clone());
                }
                r.addr = to.clone();
            }
        }
        Ok(rcpts)
    }

    /// Every recipient after canonical mapping and virtual alias
    /// expansion, duplicates removed; `orig_to` kept where rewritten.
    pub fn recipients(&self, rcpts: Vec<Recipient>) -> Result<Vec<Recipient>, RewriteError> {
        let mut out: Vec<Recipient> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for r in rcpts {
            let canon = self.classed(&r.addr, false, "envelope_recipient")?;
            let mut leaves = Vec::new();
            self.expand(&canon, 0, &mut leaves, &r.addr)?;
            for leaf in leaves {
                if !seen.insert(leaf.to_ascii_lowercase()) {
                    continue;
                }
                let changed = leaf != r.addr;
                let orig = r.orig.clone().or_else(|| changed.then(|| r.addr.clone()));
                out.push(
                    Recipient {
                        orig,
                        // A new address is aliased again (loops end at
                        // local(8)'s Delivered-To check).
                        no_alias: r.no_alias && !changed,
                        ..r.clone()
                    }
                    .with_addr(leaf),
                );
            }
        }
        Ok(out)
    }

    fn expand(&self, addr: &str, depth: usize, leaves: &mut Vec<String>, orig: &str) -> Result<(), RewriteError> {
        if depth > self.recursion_limit {
            return Err(RewriteError(format!(
                "unreasonable virtual_alias_maps map nesting for {orig} -- message not accepted, try again later"
            )));
        }
        let found = self.map(&self.virtual_alias, addr, "virtual").map_err(|_| {
            RewriteError(format!(
                "virtual_alias_maps map lookup problem for {addr} -- message not accepted, try again later"
            ))
        })?;
        match found {
            None => leaves.push(addr.to_string()),
            Some(targets) => {
                for t in targets {
                    if t.eq_ignore_ascii_case(addr) {
                        leaves.push(t);
                    } else {
                        self.expand(&t, depth + 1, leaves, orig)?;
                    }
                    if leaves.len() > self.expansion_limit {
                        return Err(RewriteError(format!(
                            "unreasonable virtual_alias_maps map expansion size for {orig} -- message not accepted, try again later"
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether `virtual_alias_maps` has the address.
    pub fn is_virtual_alias(&self, addr: &str) -> Result<bool, crate::tables::TableError> {
        Ok(self.map(&self.virtual_alias, addr, "virtual")?.is_some())
    }

    /// Recipient validation's first step (smtpd's check_rcpt_maps): an
    /// address in `recipient_canonical_maps`, `canonical_maps` or
    /// `virtual_alias_maps` is a known recipient whatever its class.
    pub fn is_listed(&self, addr: &str) -> Result<bool, crate::tables::TableError> {
        for m in [&self.recipient_canonical, &self.canonical] {
            if self.map(m, addr, "canonical")?.is_some() {
                return Ok(true);
            }
        }
        self.is_virtual_alias(addr)
    }

    /// local(8)'s alias lookup for a local part: `user+ext`, then `user`
    /// (the extension propagated per `propagate_unmatched_extensions`).
    /// The raw values, one per element; `:include:`, `|command` and
    /// `/file` elements are returned as written.
    pub fn alias(&self, local: &str) -> Result<Option<Vec<String>>, crate::tables::TableError> {
        if self.alias_maps.is_empty() {
            return Ok(None);
        }
        let (base, ext) = self.split_ext(local);
        let mut keys = vec![local.to_ascii_lowercase()];
        if !ext.is_empty() {
            keys.push(base.to_ascii_lowercase());
        }
        let Some((value, at)) = self.alias_maps.lookup_keys(&keys)? else {
            return Ok(None);
        };
        let propagate = at > 0 && self.propagate.iter().any(|p| p == "alias");
        Ok(Some(
            alias_values(&value)
                .into_iter()
                .map(|v| v.trim().trim_matches('"').to_string())
                .filter(|v| !v.is_empty())
                .map(|v| {
                    if propagate && !v.starts_with(['|', '/', ':']) {
                        match v.rsplit_once('@') {
                            Some((l, d)) => format!("{l}{ext}@{d}"),
                            None => format!("{v}{ext}"),
                        }
                    } else {
                        v
                    }
                })
                .collect(),
        ))
    }
}

/// aliases(5) values: separated by commas or white space, except inside
/// double quotes (`"|/usr/bin/cmd -x arg", bob`).
fn alias_values(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut esc = false;
    for c in v.chars() {
        if esc {
            cur.push(c);
            esc = false;
        } else if c == '\\' && quoted {
            cur.push(c);
            esc = true;
        } else if c == '"' {
            quoted = !quoted;
            cur.push(c);
        } else if !quoted && (c == ',' || c.is_whitespace()) {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(extra: &str) -> Rewriter {
        let mut p = Params::default();
        let main = format!(
            "myhostname = hub.example.com\nmydomain = example.com\nmyorigin = $mydomain\n\
             mydestination = $myhostname, $mydomain\nrecipient_delimiter = +\n{extra}"
        );
        p.main = crate::config::postfix::MainCf::parse("main.cf", main.as_bytes()).unwrap();
        let conf = HubConf::load(&p).unwrap();
        Rewriter::load(&p, &conf).unwrap()
    }

    fn addrs(v: Vec<Recipient>) -> Vec<String> {
        v.into_iter()
            .map(|r| match r.orig {
                Some(o) => format!("{}<{}", r.addr, o),
                None => r.addr,
            })
            .collect()
    }

    #[test]
    fn canonical_and_virtual() {
        let r = rw(
            "canonical_maps = inline:{ {old@example.com = new}, {@legacy.org = @example.org} }\n\
                    sender_canonical_maps = inline:{ root@example.com=admin@example.com }\n\
                    virtual_alias_maps = inline:{ {team@example.com = a@example.com, b@v.org, team@example.com}, \
                    {b@v.org = c@w.org}, {sales = s1, s2}, {loop1@x.org = loop2@x.org}, {loop2@x.org = loop1@x.org}, \
                    {@catch.org = sink@example.com} }\n",
        );
        assert_eq!(r.sender("root@example.com").unwrap(), "admin@example.com");
        assert_eq!(r.sender("old@example.com").unwrap(), "new@example.com");
        assert_eq!(r.sender("").unwrap(), "");
        let v = |a: &[&str]| addrs(r.recipients(a.iter().map(|a| Recipient::new(a)).collect()).unwrap());
        assert_eq!(v(&["joe@legacy.org"]), vec!["joe@example.org<joe@legacy.org"]);
        assert_eq!(v(&["old+x@example.com"]), vec!["new+x@example.com<old+x@example.com"]);
        assert_eq!(
            v(&["team@example.com", "a@example.com"]),
            vec!["a@example.com<team@example.com", "c@w.org<team@example.com", "team@example.com"]
        );
        assert_eq!(
            v(&["sales+q@example.com"]),
            vec!["s1+q@example.com<sales+q@example.com", "s2+q@example.com<sales+q@example.com"]
        );
        assert_eq!(v(&["who@catch.org"]), vec!["sink@example.com<who@catch.org"]);
        assert_eq!(v(&["plain@other.net"]), vec!["plain@other.net"]);
        let e = r.recipients(vec![Recipient::new("loop1@x.org")]).unwrap_err();
        assert!(e.0.contains("unreasonable virtual_alias_maps map nesting for loop1@x.org"), "{e:?}");
        assert!(r.is_virtual_alias("team@example.com").unwrap());
        assert!(!r.is_virtual_alias("nobody@example.com").unwrap());
    }

    #[test]
    fn aliases_and_errors() {
        let r = rw("alias_maps = inline:{ {postmaster = root}, {staff = \"|/bin/cat\", /tmp/x, bob, :include:/etc/list}, {bob = bob@elsewhere.net} }\n\
                    propagate_unmatched_extensions = canonical, virtual, alias\n");
        assert_eq!(r.alias("Postmaster").unwrap(), Some(vec!["root".to_string()]));
        assert_eq!(
            r.alias("staff").unwrap(),
            Some(vec!["|/bin/cat".into(), "/tmp/x".into(), "bob".into(), ":include:/etc/list".into()])
        );
        assert_eq!(r.alias("bob+tag").unwrap(), Some(vec!["bob+tag@elsewhere.net".to_string()]));
        assert_eq!(
            super::alias_values("\"|/usr/bin/x -a b, c\", bob,carol  dave"),
            ["\"|/usr/bin/x -a b, c\"", "bob", "carol", "dave"]
        );
        assert_eq!(r.alias("carol").unwrap(), None);
        let r = rw("virtual_alias_maps = fail:x\n");
        let e = r.recipients(vec![Recipient::new("a@b.c")]).unwrap_err();
        assert!(e.0.starts_with("virtual_alias_maps map lookup problem for a@b.c"), "{e:?}");
        let r = rw("virtual_alias_expansion_limit = 2\nvirtual_alias_maps = inline:{ {l@x.org = a@y, b@y, c@y} }\n");
        assert!(r
            .recipients(vec![Recipient::new("l@x.org")])
            .unwrap_err()
            .0
            .contains("expansion size"));
    }
}
