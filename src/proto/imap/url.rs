//! IMAP URLs (RFC 5092) as CATENATE (RFC 4469) and URLAUTH (RFC 4467)
//! use them: one message, or a part of it, in a mailbox of this server,
//! absolute (`imap://user@host/INBOX;UIDVALIDITY=9/;UID=20/;SECTION=1`)
//! or relative to the server (`/INBOX/;UID=20`), with an optional
//! authorization (`;EXPIRE=...;URLAUTH=access:mech:token`). Sans-I/O.

/// The parts of a message URL; strings are percent-decoded.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ImapUrl {
    /// `imap://user@host:port` (None for a relative URL).
    pub user: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    /// The mailbox name in UTF-8 (RFC 5092 3.3).
    pub mailbox: String,
    pub uidvalidity: Option<u32>,
    pub uid: u32,
    /// The section as FETCH BODY[...] spells it (`1.2.MIME`, `HEADER`).
    pub section: Option<String>,
    /// `;PARTIAL=offset[.length]`.
    pub partial: Option<(u32, Option<u32>)>,
    /// `;EXPIRE=` as given (RFC 3339 date-time).
    pub expire: Option<String>,
    /// `;URLAUTH=access` (`anonymous`, `authuser`, `user+name`,
    /// `submit+name`), with the mechanism and token when present.
    pub access: Option<String>,
    pub mechanism: Option<String>,
    pub token: Option<String>,
    /// The URL up to and including the access identifier: what the
    /// token authorizes (RFC 4467 2.4).
    pub rump: String,
}

fn unhex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Percent-decoding; the result must be UTF-8.
pub fn decode(s: &str) -> Result<String, &'static str> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let (Some(h), Some(l)) = (b.get(i + 1).and_then(|&c| unhex(c)), b.get(i + 2).and_then(|&c| unhex(c))) else {
                return Err("bad percent-encoding");
            };
            out.push(h << 4 | l);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8")
}

/// Percent-encoding of what is not an RFC 3986 unreserved character or
/// one of the sub-delimiters an IMAP URL leaves alone in a mailbox name.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        if c.is_ascii_alphanumeric() || b"-._~!$&'()*+,=:@/".contains(&c) {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

fn param<'a>(seg: &'a str, name: &str) -> Option<&'a str> {
    let s = seg.strip_prefix(';')?;
    let (k, v) = s.split_once('=')?;
    k.eq_ignore_ascii_case(name).then_some(v)
}

fn nz(v: &str) -> Result<u32, &'static str> {
    match v.parse::<u32>() {
        Ok(n) if n > 0 && !v.starts_with('0') && v.bytes().all(|c| c.is_ascii_digit()) => Ok(n),
        _ => Err("bad number"),
    }
}

/// Parses a message URL. Only message URLs (with `;UID=`) are taken:
/// mailbox lists and searches are not what CATENATE and URLAUTH name.
pub fn parse(url: &str) -> Result<ImapUrl, &'static str> {
    if url.len() > 8192 || url.bytes().any(|c| c <= b' ' || c >= 0x7f) {
        return Err("bad characters");
    }
    let mut u = ImapUrl::default();
    let path = if url.len() >= 7 && url[..7].eq_ignore_ascii_case("imap://") {
        let rest = &url[7..];
        let (server, path) = rest.split_at(rest.find('/').ok_or("no path")?);
        let (userinfo, hostport) = match server.rsplit_once('@') {
            Some((ui, hp)) => (Some(ui), hp),
            None => (None, server),
        };
        if let Some(ui) = userinfo {
            // enc-user [;AUTH=type]: the mechanism is not ours to check.
            let user = match ui.find(';') {
                Some(i) if ui[i..].len() > 6 && ui[i + 1..i + 6].eq_ignore_ascii_case("AUTH=") => &ui[..i],
                Some(_) => return Err("bad userinfo"),
                None => ui,
            };
            if !user.is_empty() {
                u.user = Some(decode(user)?);
            }
        }
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => (h, Some(p.parse::<u16>().map_err(|_| "bad port")?)),
            _ => (hostport, None),
        };
        if host.is_empty() {
            return Err("no host");
        }
        u.host = Some(host.to_ascii_lowercase());
        u.port = port;
        path
    } else if url.starts_with('/') {
        url
    } else {
        return Err("not an IMAP URL");
    };
    // "/" mailbox [;UIDVALIDITY=n] "/;UID=n" ["/;SECTION=s"] ["/;PARTIAL=o[.l]"]
    // [;EXPIRE=t] [;URLAUTH=access[:mech:token]]
    let path = &path[1..];
    let uid_at = path.to_ascii_uppercase().find("/;UID=").ok_or("no UID")?;
    let (mbox, rest) = path.split_at(uid_at);
    let (mbox, uidvalidity) = match mbox.to_ascii_uppercase().find(";UIDVALIDITY=") {
        Some(i) => (&mbox[..i], Some(nz(&mbox[i + 13..])?)),
        None => (mbox, None),
    };
    if mbox.is_empty() || mbox.contains(';') {
        return Err("bad mailbox");
    }
    u.mailbox = decode(mbox)?;
    u.uidvalidity = uidvalidity;
    // The rest: segments split at "/" and ";" kept with their names.
    let rest = &rest[1..];
    let mut segs: Vec<&str> = Vec::new();
    for piece in rest.split('/') {
        let mut start = 0;
        for (i, c) in piece.char_indices().skip(1) {
            if c == ';' {
                segs.push(&piece[start..i]);
                start = i;
            }
        }
        segs.push(&piece[start..]);
    }
    let mut it = segs.into_iter().peekable();
    u.uid = nz(it.next().and_then(|s| param(s, "UID")).ok_or("no UID")?)?;
    if let Some(v) = it.peek().and_then(|s| param(s, "SECTION")) {
        let v = decode(v)?;
        if v.is_empty() {
            return Err("empty section");
        }
        u.section = Some(v);
        it.next();
    }
    if let Some(v) = it.peek().and_then(|s| param(s, "PARTIAL")) {
        let (o, l) = match v.split_once('.') {
            Some((o, l)) => (o, Some(nz(l)?)),
            None => (v, None),
        };
        let o = o.parse::<u32>().map_err(|_| "bad partial")?;
        u.partial = Some((o, l));
        it.next();
    }
    if let Some(v) = it.peek().and_then(|s| param(s, "EXPIRE")) {
        u.expire = Some(v.to_string());
        it.next();
    }
    if let Some(v) = it.peek().and_then(|s| param(s, "URLAUTH")) {
        let mut parts = v.splitn(3, ':');
        let access = parts.next().unwrap_or_default();
        let ok_access = access.eq_ignore_ascii_case("anonymous")
            || access.eq_ignore_ascii_case("authuser")
            || ["submit+", "user+"]
                .iter()
                .any(|p| access.len() > p.len() && access[..p.len()].eq_ignore_ascii_case(p));
        if !ok_access {
            return Err("bad access identifier");
        }
        u.access = Some(decode(access)?);
        u.mechanism = parts.next().map(str::to_ascii_uppercase);
        u.token = parts.next().map(str::to_string);
        if u.mechanism.is_some() != u.token.is_some() {
            return Err("bad URLAUTH");
        }
        let rump_len = v.len()
            - u.mechanism
                .as_ref()
                .map_or(0, |m| m.len() + u.token.as_ref().map_or(0, |t| t.len() + 2));
        let cut = url.len() - (v.len() - rump_len);
        u.rump = url[..cut].to_string();
        it.next();
    }
    if it.next().is_some() {
        return Err("bad URL");
    }
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_and_absolute_message_urls() {
        let u = parse("/INBOX;UIDVALIDITY=385759045/;UID=20/;SECTION=1.MIME").unwrap();
        assert_eq!((u.mailbox.as_str(), u.uidvalidity, u.uid), ("INBOX", Some(385759045), 20));
        assert_eq!(u.section.as_deref(), Some("1.MIME"));
        assert_eq!(u.host, None);
        let u = parse("imap://joe@example.com:143/Drafts%20and%20more/;UID=3/;PARTIAL=0.1024").unwrap();
        assert_eq!(u.user.as_deref(), Some("joe"));
        assert_eq!((u.host.as_deref(), u.port), (Some("example.com"), Some(143)));
        assert_eq!(u.mailbox, "Drafts and more");
        assert_eq!(u.partial, Some((0, Some(1024))));
        let u = parse("imap://joe;AUTH=*@h/a/b/;uid=7").unwrap();
        assert_eq!((u.user.as_deref(), u.mailbox.as_str(), u.uid), (Some("joe"), "a/b", 7));
        let u = parse("/%C3%A9t%C3%A9/;UID=1/;SECTION=HEADER.FIELDS%20(SUBJECT)").unwrap();
        assert_eq!(u.mailbox, "été");
        assert_eq!(u.section.as_deref(), Some("HEADER.FIELDS (SUBJECT)"));
    }

    #[test]
    fn urlauth_rump_and_token() {
        let url = "imap://joe@example.com/INBOX/;uid=20/;section=1.2;urlauth=submit+fred:internal:91354a473744909de610943775f92038";
        let u = parse(url).unwrap();
        assert_eq!(u.access.as_deref(), Some("submit+fred"));
        assert_eq!(u.mechanism.as_deref(), Some("INTERNAL"));
        assert_eq!(u.token.as_deref(), Some("91354a473744909de610943775f92038"));
        assert_eq!(u.rump, "imap://joe@example.com/INBOX/;uid=20/;section=1.2;urlauth=submit+fred");
        let u = parse("imap://joe@h/INBOX/;UID=2;EXPIRE=2026-12-31T23:59:59Z;URLAUTH=anonymous").unwrap();
        assert_eq!(u.expire.as_deref(), Some("2026-12-31T23:59:59Z"));
        assert_eq!(u.rump, "imap://joe@h/INBOX/;UID=2;EXPIRE=2026-12-31T23:59:59Z;URLAUTH=anonymous");
        assert_eq!(u.token, None);
    }

    #[test]
    fn bad_urls() {
        for bad in [
            "",
            "INBOX/;UID=1",
            "/INBOX",
            "/INBOX/;UID=0",
            "/INBOX/;UID=01",
            "/INBOX/;UID=x",
            "/;UID=1",
            "/INBOX;UIDVALIDITY=0/;UID=1",
            "/INBOX/;UID=1/;SECTION=",
            "/INBOX/;UID=1/;BOGUS=1",
            "/INBOX/;UID=1;URLAUTH=nobody",
            "/INBOX/;UID=1;URLAUTH=anonymous:internal",
            "/IN BOX/;UID=1",
            "/IN%ZZ/;UID=1",
            "/%FF/;UID=1",
            "imap:///INBOX/;UID=1",
            "imap://h:99999/INBOX/;UID=1",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
