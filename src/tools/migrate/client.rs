//! mumail-migrate's IMAP side: a small client over one connection,
//! the parsing of the responses it reads, and the namespace mapping.

use super::*;

/// A small IMAP client over one connection.
pub(super) struct Imap {
    pub(super) r: BufReader<crate::daemon::peer_tls::PeerIo>,
    pub(super) n: u32,
    pub(super) server: String,
    /// CAPABILITY after login, upper-cased.
    pub(super) caps: BTreeSet<String>,
}

impl Imap {
    pub(super) async fn connect(server: &str) -> Result<Imap, String> {
        let mut r =
            BufReader::new(crate::daemon::front::connect_service(server, "imap", 143, crate::daemon::front::BACKEND_TIMEOUT, None).await?);
        let greet = crate::daemon::front::backend_line(&mut r).await?;
        if !greet.starts_with("* OK") {
            return Err(format!("{server}: greeting {greet}"));
        }
        Ok(Imap {
            r,
            n: 0,
            server: server.to_string(),
            caps: BTreeSet::new(),
        })
    }

    /// AUTHENTICATE PLAIN: `authz` is empty for the user's own login.
    pub(super) async fn login(&mut self, authz: &str, authc: &str, pw: &str) -> Result<(), String> {
        let ir = crate::util::base64_encode(format!("{authz}\0{authc}\0{pw}").as_bytes());
        self.n += 1;
        let tag = format!("M{}", self.n);
        crate::daemon::front::authenticate_plain(&mut self.r, &tag, &ir, false)
            .await
            .map_err(|e| format!("{}: login as {authc} for {authz}: {e}", self.server))?;
        let (resps, _) = self.cmd(b"CAPABILITY").await?;
        self.caps = resps
            .iter()
            .filter_map(|r| r.strip_prefix(b"* CAPABILITY "))
            .flat_map(|r| {
                String::from_utf8_lossy(r)
                    .split_whitespace()
                    .map(str::to_ascii_uppercase)
                    .collect::<Vec<_>>()
            })
            .collect();
        Ok(())
    }

    pub(super) async fn send(&mut self, b: &[u8]) -> Result<(), String> {
        self.r.get_mut().write_all(b).await.map_err(|e| format!("{}: {e}", self.server))
    }

    /// The responses up to `tag`'s (at most `max` bytes, within TIMEOUT)
    /// and its status text.
    async fn tagged(&mut self, tag: &str, max: u64) -> Result<(Vec<Vec<u8>>, String), String> {
        tokio::time::timeout(TIMEOUT, collect_tagged(&mut self.r, tag, max))
            .await
            .map_err(|_| format!("{}: timed out", self.server))?
    }

    /// Sends a command (bytes after the tag); its untagged responses and
    /// the tagged status, Err unless OK.
    pub(super) async fn cmd(&mut self, c: &[u8]) -> Result<(Vec<Vec<u8>>, String), String> {
        self.n += 1;
        let tag = format!("M{}", self.n);
        let mut line = format!("{tag} ").into_bytes();
        line.extend_from_slice(c);
        line.extend_from_slice(b"\r\n");
        self.send(&line).await?;
        let (resps, status) = self.tagged(&tag, MAX_MESSAGE).await?;
        if !status.starts_with("OK") {
            return Err(format!("{}: {}: {status}", self.server, String::from_utf8_lossy(c)));
        }
        Ok((resps, status))
    }

    /// One XAPPLY (XFER's transfer command; an admin session); the
    /// tagged OK's text.
    pub(super) async fn xapply(&mut self, x: &crate::proto::imap::command::xapply::XApply) -> Result<String, String> {
        self.n += 1;
        let tag = format!("M{}", self.n);
        let wire = crate::proto::imap::command::xapply::render(&tag, x);
        self.send(&wire).await?;
        let (_, status) = self.tagged(&tag, 1 << 20).await?;
        if !status.starts_with("OK") {
            return Err(format!("{}: XAPPLY: {status}", self.server));
        }
        Ok(status)
    }

    /// The back end holding the internal mailbox `name`, as a Murder
    /// front end answers for it (the `/shared/vendor/cmu/cyrus-imapd/server`
    /// entry, which Cyrus's front ends answer and back ends do not); None
    /// from a back end, or for a mailbox no server holds yet.
    pub(super) async fn murder_server(&mut self, name: &str) -> Result<Option<String>, String> {
        let (resps, _) = self.cmd(b"LIST \"\" \"\"").await?;
        let delim = resps.iter().find_map(|r| parse_list(r, "LIST")).map_or('.', |l| l.1);
        let ext: String = if delim == '.' {
            name.to_string()
        } else {
            name.chars()
                .map(|c| match c {
                    '.' => delim,
                    '^' => '.',
                    c => c,
                })
                .collect()
        };
        let rest = format!(" {}", crate::daemon::imap_proxy::SERVER_ENTRY);
        let Ok((resps, _)) = self.cmd_mbox("GETMETADATA", &ext, &rest).await else {
            return Ok(None);
        };
        Ok(resps
            .iter()
            .find_map(|r| metadata_value(r, crate::daemon::imap_proxy::SERVER_ENTRY)))
    }

    /// A command whose last argument is a mailbox name.
    pub(super) async fn cmd_mbox(&mut self, verb: &str, name: &str, rest: &str) -> Result<(Vec<Vec<u8>>, String), String> {
        let mut c = format!("{verb} ").into_bytes();
        crate::proto::imap::render::client_string(&mut c, name.as_bytes());
        c.extend_from_slice(rest.as_bytes());
        self.cmd(&c).await
    }

    /// The selected mailbox's messages: UID → (flags, size, internal date).
    pub(super) async fn messages(&mut self) -> Result<BTreeMap<u32, (Vec<String>, u64, String)>, String> {
        let (meta, _) = self.cmd(b"UID FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE)").await?;
        Ok(meta
            .iter()
            .filter_map(|r| fetch_meta(r))
            .map(|(u, f, s, d)| (u, (f, s, d)))
            .collect())
    }

    /// Appends messages (flags, internal date, bytes) in one MULTIAPPEND
    /// where the server has it (else one APPEND each), with LITERAL+
    /// literals where it has that (else waiting for each continuation);
    /// the new UIDs from APPENDUID, in order.
    pub(super) async fn append(&mut self, mbox: &str, msgs: &[&Fetched]) -> Result<Vec<u32>, String> {
        if msgs.len() > 1 && !self.caps.contains("MULTIAPPEND") {
            let mut uids = Vec::new();
            for m in msgs {
                uids.extend(Box::pin(self.append(mbox, std::slice::from_ref(m))).await?);
            }
            return Ok(uids);
        }
        let plus = self.caps.contains("LITERAL+");
        self.n += 1;
        let tag = format!("M{}", self.n);
        let mut c = format!("{tag} APPEND ").into_bytes();
        crate::proto::imap::render::client_string(&mut c, mbox.as_bytes());
        for m in msgs {
            let flags = m.flags.join(" ");
            let (len, p) = (m.body.len(), if plus { "+" } else { "" });
            c.extend_from_slice(format!(" ({flags}) \"{}\" {{{len}{p}}}\r\n", m.internaldate).as_bytes());
            if !plus {
                self.send(&std::mem::take(&mut c)).await?;
                let l = crate::daemon::front::backend_line(&mut self.r).await?;
                if !l.starts_with('+') {
                    return Err(format!("{}: APPEND to {mbox}: {l}", self.server));
                }
            }
            c.extend_from_slice(&m.body);
            if c.len() > 1 << 20 {
                self.send(&std::mem::take(&mut c)).await?;
            }
        }
        c.extend_from_slice(b"\r\n");
        self.send(&c).await?;
        let (_, status) = self.tagged(&tag, 1 << 20).await?;
        if !status.starts_with("OK") {
            return Err(format!("{}: APPEND to {mbox}: {status}", self.server));
        }
        let set = status.split("[APPENDUID ").nth(1).and_then(|r| r.split([' ', ']']).nth(1));
        let uids = set.map(uid_set).unwrap_or_default();
        if uids.len() != msgs.len() {
            return Err(format!(
                "{}: APPEND to {mbox} gave no APPENDUID for each message: {status}",
                self.server
            ));
        }
        Ok(uids)
    }
}

/// An IMAP uid-set (`5:9,12`), in order; empty if malformed.
pub(super) fn uid_set(s: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let (a, b) = part.split_once(':').unwrap_or((part, part));
        let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) else {
            return Vec::new();
        };
        if a > b || b - a > 1_000_000 {
            return Vec::new();
        }
        out.extend(a..=b);
    }
    out
}

/// A compact uid-set for ascending UIDs.
pub(super) fn set_of(uids: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < uids.len() {
        let mut j = i;
        while j + 1 < uids.len() && uids[j + 1] == uids[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            uids[i].to_string()
        } else {
            format!("{}:{}", uids[i], uids[j])
        });
        i = j + 1;
    }
    out.join(",")
}

/// `* LIST (attrs) "d" name` (or LSUB) → (attributes, delimiter, name).
pub(super) fn parse_list(resp: &[u8], verb: &str) -> Option<(String, char, String)> {
    let text = String::from_utf8_lossy(resp);
    let rest = text.strip_prefix(&format!("* {verb} ("))?;
    let (attrs, rest) = rest.split_once(") ")?;
    let (delim, rest) = if let Some(r) = rest.strip_prefix("NIL ") {
        ('.', r)
    } else {
        let r = rest.strip_prefix('"')?;
        let mut chars = r.chars();
        let mut d = chars.next()?;
        if d == '\\' {
            d = chars.next()?;
        }
        (d, chars.as_str().strip_prefix("\" ")?)
    };
    let rest = rest.trim_end_matches(['\r', '\n']);
    let name = if let Some(q) = rest.strip_prefix('"') {
        let mut out = String::new();
        let mut esc = false;
        for ch in q.chars() {
            match (esc, ch) {
                (false, '\\') => esc = true,
                (false, '"') => break,
                _ => {
                    out.push(ch);
                    esc = false
                }
            }
        }
        out
    } else if rest.starts_with('{') {
        // A literal: the name follows the marker's line.
        rest.split_once("\r\n").or_else(|| rest.split_once('\n'))?.1.to_string()
    } else {
        rest.to_string()
    };
    Some((attrs.to_string(), delim, name))
}

/// The rest of a quoted string whose opening quote was read: up to the
/// closing one, backslash escapes undone.
fn quoted(it: &mut impl Iterator<Item = char>) -> String {
    let mut w = String::new();
    while let Some(ch) = it.next() {
        match ch {
            '\\' => w.extend(it.next()),
            '"' => break,
            _ => w.push(ch),
        }
    }
    w
}

/// `* METADATA mailbox (... entry "value" ...)` → the entry's value (quoted
/// or atom; NIL is none).
pub(super) fn metadata_value(resp: &[u8], entry: &str) -> Option<String> {
    let t = String::from_utf8_lossy(resp);
    if !t.starts_with("* METADATA ") {
        return None;
    }
    let w = words(&t.replace(['(', ')'], " "));
    let i = w.iter().position(|x| x.eq_ignore_ascii_case(entry))?;
    w.get(i + 1).filter(|v| !v.eq_ignore_ascii_case("NIL")).cloned()
}

/// The words of a response line: atoms and quoted strings.
pub(super) fn words(t: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = t.trim_end_matches(['\r', '\n']).chars().peekable();
    while let Some(&c) = it.peek() {
        if c == ' ' {
            it.next();
        } else if c == '"' {
            it.next();
            out.push(quoted(&mut it));
        } else {
            let mut w = String::new();
            while let Some(&ch) = it.peek().filter(|ch| **ch != ' ') {
                w.push(ch);
                it.next();
            }
            out.push(w);
        }
    }
    out
}

/// `* ACL mailbox id rights ...` → the (identifier, rights) pairs.
pub(super) fn parse_acl(resps: &[Vec<u8>]) -> BTreeMap<String, String> {
    resps
        .iter()
        .filter_map(|r| String::from_utf8_lossy(r).strip_prefix("* ACL ").map(words))
        .flat_map(|w| {
            w[1.min(w.len())..]
                .chunks(2)
                .filter(|p| p.len() == 2)
                .map(|p| (p[0].clone(), p[1].clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A server's namespaces (RFC 2342) as seen by the logged-in user: the
/// personal prefix and delimiter, and the other users' and shared
/// prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Namespaces {
    pub(super) prefix: String,
    pub(super) delim: char,
    pub(super) others: Vec<String>,
}

impl Namespaces {
    /// From a `* NAMESPACE` response; None if there is none or it has no
    /// personal namespace.
    pub(super) fn parse(resps: &[Vec<u8>]) -> Option<Namespaces> {
        let r = resps.iter().find_map(|r| r.strip_prefix(b"* NAMESPACE "))?;
        let text = String::from_utf8_lossy(r);
        // Each group is NIL or ((prefix delim ...) ...): collect the
        // (prefix, delim) pairs at depth 2, per group at depth 0.
        let mut groups: Vec<Vec<(String, Option<char>)>> = Vec::new();
        let (mut depth, mut cur): (usize, Vec<String>) = (0, Vec::new());
        let mut it = text.trim_end().chars().peekable();
        while let Some(c) = it.next() {
            match c {
                '(' => {
                    if depth == 0 {
                        groups.push(Vec::new());
                    }
                    depth += 1;
                }
                ')' => {
                    if depth == 2 && cur.len() >= 2 {
                        let d = cur[1].chars().next();
                        groups.last_mut()?.push((cur[0].clone(), d));
                    }
                    if depth == 2 {
                        cur.clear();
                    }
                    depth = depth.checked_sub(1)?;
                }
                '"' if depth == 2 => cur.push(quoted(&mut it)),
                'N' | 'n' if depth == 0 => {
                    // NIL: a group without namespaces.
                    it.next();
                    it.next();
                    groups.push(Vec::new());
                }
                'N' | 'n' if depth == 2 && cur.len() == 1 => {
                    it.next();
                    it.next();
                    cur.push(String::new());
                }
                _ => {}
            }
        }
        let (prefix, delim) = groups.first()?.first()?.clone();
        let others = groups
            .iter()
            .skip(1)
            .flatten()
            .map(|(p, _)| p.clone())
            .filter(|p| !p.is_empty())
            .collect();
        Some(Namespaces {
            prefix,
            delim: delim.unwrap_or('.'),
            others,
        })
    }

    /// A server without NAMESPACE: everything is personal, no prefix.
    pub(super) fn flat(delim: char) -> Namespaces {
        Namespaces {
            prefix: String::new(),
            delim,
            others: Vec::new(),
        }
    }

    /// The name relative to the personal namespace (components joined by
    /// `/`), `INBOX` for the inbox; None outside it (other users' and
    /// shared folders are not the user's to move).
    pub(super) fn relative(&self, name: &str) -> Option<String> {
        if name.eq_ignore_ascii_case("INBOX") {
            return Some("INBOX".to_string());
        }
        if self.others.iter().any(|p| name.starts_with(p.as_str())) {
            return None;
        }
        let p = self.prefix.len();
        let rest = if name.len() >= p && name.is_char_boundary(p) && name[..p].eq_ignore_ascii_case(&self.prefix) {
            &name[p..]
        } else {
            return None;
        };
        Some(rest.split(self.delim).collect::<Vec<_>>().join("/"))
    }

    /// The full name of a relative one here.
    pub(super) fn absolute(&self, rel: &str) -> String {
        if rel == "INBOX" {
            return rel.to_string();
        }
        format!("{}{}", self.prefix, rel.replace('/', &self.delim.to_string()))
    }
}

/// The NAMESPACE of a session, or a flat one with the delimiter LIST
/// gives.
pub(super) async fn namespaces(imap: &mut Imap) -> Result<Namespaces, String> {
    if imap.caps.contains("NAMESPACE") {
        let (resps, _) = imap.cmd(b"NAMESPACE").await?;
        if let Some(n) = Namespaces::parse(&resps) {
            return Ok(n);
        }
    }
    let (l, _) = imap.cmd(b"LIST \"\" \"\"").await?;
    Ok(Namespaces::flat(
        l.iter().find_map(|r| parse_list(r, "LIST")).map(|(_, d, _)| d).unwrap_or('.'),
    ))
}

/// The numbers after `[KEY ` in a list of responses.
pub(super) fn code_number(resps: &[Vec<u8>], key: &str) -> Option<u32> {
    resps.iter().find_map(|r| {
        let t = String::from_utf8_lossy(r);
        let i = t.find(&format!("[{key} "))? + key.len() + 2;
        t[i..].split([']', ' ']).next()?.parse().ok()
    })
}

/// `* n FETCH (UID u FLAGS (...) ...)` without a body: (uid, flags, size, date).
pub(super) fn fetch_meta(resp: &[u8]) -> Option<(u32, Vec<String>, u64, String)> {
    let t = String::from_utf8_lossy(resp);
    if !t.starts_with("* ") || !t.contains(" FETCH (") {
        return None;
    }
    let num = |key: &str| -> Option<u64> {
        let i = t.find(key)? + key.len();
        t[i..].chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().ok()
    };
    let uid = num("UID ")? as u32;
    let flags = {
        let i = t.find("FLAGS (")? + 7;
        let j = i + t[i..].find(')')?;
        t[i..j]
            .split(' ')
            .filter(|f| !f.is_empty() && !f.eq_ignore_ascii_case("\\Recent"))
            .map(str::to_string)
            .collect()
    };
    let size = num("RFC822.SIZE ").unwrap_or(0);
    let date = t
        .find("INTERNALDATE \"")
        .and_then(|i| t[i + 14..].split('"').next().map(date_key))
        .unwrap_or_default();
    Some((uid, flags, size, date))
}

/// An INTERNALDATE's text in one form: servers differ in the day's
/// padding (` 6-Sep-2018` at Cyrus, `06-Sep-2018` at Dovecot).
pub(super) fn date_key(d: &str) -> String {
    let d = d.trim_start();
    match d.find('-') {
        Some(1) => format!("0{d}"),
        _ => d.to_string(),
    }
}

/// The resource limits of the first `* QUOTA root (RES used limit ...)`.
pub(super) fn quota_limits(resps: &[Vec<u8>]) -> Vec<(String, u64)> {
    let Some(r) = resps.iter().find_map(|r| r.strip_prefix(b"* QUOTA ")) else {
        return Vec::new();
    };
    let t = String::from_utf8_lossy(r);
    let Some(inner) = t.rfind('(').and_then(|i| t[i + 1..].split(')').next()) else {
        return Vec::new();
    };
    let w: Vec<&str> = inner.split_whitespace().collect();
    w.chunks(3)
        .filter_map(|c| match c {
            [name, _, limit] => Some((name.to_ascii_uppercase(), limit.parse().ok()?)),
            _ => None,
        })
        .collect()
}

/// Sets the user's quota limits at the destination as the admin (on
/// `user.<name>` in the admin's hierarchy); "" when they were set already.
pub(super) async fn set_quota(dest: &str, admin: &str, pw: &str, user: &str, limits: &[(String, u64)]) -> Result<String, String> {
    let mut a = Imap::connect(dest).await?;
    a.login("", admin, pw).await?;
    let (l, _) = a.cmd(b"LIST \"\" \"\"").await?;
    let d = l.iter().find_map(|r| parse_list(r, "LIST")).map(|(_, d, _)| d).unwrap_or('.');
    let root = format!("user{d}{user}");
    let want: String = limits.iter().map(|(n, v)| format!("{n} {v}")).collect::<Vec<_>>().join(" ");
    let have = match a.cmd_mbox("GETQUOTA", &root, "").await {
        Ok((r, _)) => quota_limits(&r),
        Err(_) => Vec::new(),
    };
    let mut have = have;
    have.sort();
    let mut sorted = limits.to_vec();
    sorted.sort();
    let set = if have == sorted {
        String::new()
    } else {
        a.cmd_mbox("SETQUOTA", &root, &format!(" ({want})")).await?;
        want
    };
    let _ = a.cmd(b"LOGOUT").await;
    Ok(set)
}
