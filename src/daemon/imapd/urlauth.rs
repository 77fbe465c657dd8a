//! IMAP URLs served by imapd: the parts of an APPEND ... CATENATE (RFC
//! 4469) and URLAUTH (RFC 4467: GENURLAUTH, RESETKEY, URLFETCH), with
//! Cyrus 3.6's answers. A URLAUTH token is the HMAC-SHA1 of the URL's
//! rump under a random key kept per mailbox and owner (a private
//! annotation only imapd reads); RESETKEY removes keys, so that every URL
//! authorized under them stops working.

use super::mailboxes::rights_of;
use super::{Res, Session};
use crate::proto::imap::command::Section;
use crate::proto::imap::render;
use crate::proto::imap::url::{self, ImapUrl};
use crate::store::names::Namespace;
use crate::store::MailboxEntry;

/// The annotation holding a mailbox access key (per owner).
const KEY_ENTRY: &str = "/vendor/mumail/urlauthkey";

/// Why a URL gives nothing: the response code's text, as Cyrus words it
/// (None: a plain `NO text`, no BADURL code).
pub struct UrlError {
    pub badurl: bool,
    pub text: &'static str,
}

fn bad(text: &'static str) -> UrlError {
    UrlError { badurl: true, text }
}

const SYNTAX: UrlError = UrlError {
    badurl: false,
    text: "Syntax error in parameters",
};
const IO_ERROR: UrlError = UrlError {
    badurl: false,
    text: "System I/O error",
};

/// A URL's `;SECTION=`, parsed.
type UrlSection = Option<(Vec<u32>, Section)>;

/// The section, then the partial range, of a message.
fn extract(msg: Vec<u8>, section: UrlSection, partial: Option<(u32, Option<u32>)>) -> Result<Vec<u8>, UrlError> {
    let mut data = match section {
        None => msg,
        Some((path, sec)) => {
            let parsed = crate::mail::mime::parse(&msg);
            render::section(&msg, &parsed, &path, &sec).ok_or(SYNTAX)?
        }
    };
    if let Some((off, len)) = partial {
        let off = off as usize;
        if off > data.len() || len.is_some_and(|l| off + l as usize > data.len()) {
            return Err(IO_ERROR);
        }
        let end = len.map_or(data.len(), |l| off + l as usize);
        data = data[off..end].to_vec();
    }
    Ok(data)
}

/// URLAUTH=BINARY (RFC 5524): what an extended URLFETCH returns for one
/// URL: `(BODYPARTSTRUCTURE ...)`, then `(BINARY ...)` (the part decoded)
/// or `(BODY ...)`. A whole message's structure is given, as Cyrus gives
/// it, as that of a message/rfc822 part holding it.
fn extended(out: &mut Vec<u8>, msg: &[u8], section: &UrlSection, params: &[String]) -> Option<()> {
    // A HEADER, TEXT or MIME section has no structure and no decoding:
    // asked for either, it gives NIL (BODY alone is its bytes).
    if !matches!(section, None | Some((_, Section::Full))) && params.iter().any(|p| p != "BODY") {
        return None;
    }
    let parsed = crate::mail::mime::parse(msg);
    let path: &[u32] = section.as_ref().map_or(&[], |(p, _)| p.as_slice());
    let part = render::find_part(&parsed, path)?;
    let binary = params.iter().any(|p| p == "BINARY");
    let mut first = true;
    let mut sep = |out: &mut Vec<u8>| {
        if !std::mem::take(&mut first) {
            out.push(b' ');
        }
    };
    if params.iter().any(|p| p == "BODYPARTSTRUCTURE") {
        sep(out);
        out.extend_from_slice(b"(BODYPARTSTRUCTURE ");
        if path.is_empty() {
            let (he, _) = crate::mail::mime::header_end(msg);
            out.extend_from_slice(b"(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 0 ");
            render::envelope(out, &msg[..he]);
            out.push(b' ');
            render::body_structure(out, msg, &parsed, true);
            out.extend_from_slice(b" 0 NIL NIL NIL NIL)");
        } else {
            let mut bs = Vec::new();
            render::body_structure(&mut bs, msg, part, true);
            // With BINARY the part is given decoded, and its structure
            // says so: encoding "BINARY" and the decoded size (Cyrus).
            if let (true, false, Some(d)) = (
                binary,
                part.is_multipart() || part.message.is_some(),
                render::decode_body(msg, part),
            ) {
                let raw = part.body(msg).len();
                let enc = crate::mail::mime::field_text(&crate::mail::mime::fields(part.header(msg)), "content-transfer-encoding")
                    .map(|e| e.trim().to_ascii_uppercase())
                    .unwrap_or_default();
                let from = format!("\"{enc}\" {raw}");
                if !enc.is_empty() && enc != "7BIT" && enc != "8BIT" && enc != "BINARY" {
                    if let Some(i) = bs.windows(from.len()).position(|w| w == from.as_bytes()) {
                        bs.splice(i..i + from.len(), format!("\"BINARY\" {}", d.len()).into_bytes());
                    }
                }
            }
            out.extend_from_slice(&bs);
        }
        out.push(b')');
    }
    let data = |binary: bool| -> Option<Vec<u8>> {
        match section {
            Some((p, Section::Full)) if binary && !p.is_empty() => render::decode_body(msg, part),
            s => extract(msg.to_vec(), s.clone(), None).ok(),
        }
    };
    for (param, binary) in [("BINARY", true), ("BODY", false)] {
        if params.iter().any(|p| p == param) {
            sep(out);
            out.extend_from_slice(format!("({param} ").as_bytes());
            match data(binary) {
                Some(d) => {
                    let tilde = if binary && d.contains(&0) { "~" } else { "" };
                    out.extend_from_slice(format!("{tilde}{{{}}}\r\n", d.len()).as_bytes());
                    out.extend_from_slice(&d);
                }
                None => out.extend_from_slice(b"NIL"),
            }
            out.push(b')');
        }
    }
    Some(())
}

/// An extended URLFETCH's parameters: each at most once, BODY and BINARY
/// not together.
fn params_ok(params: &[String]) -> bool {
    let known = ["BODYPARTSTRUCTURE", "BINARY", "BODY"];
    params.iter().all(|p| known.contains(&p.as_str()))
        && known.iter().all(|k| params.iter().filter(|p| p == k).count() <= 1)
        && !(params.iter().any(|p| p == "BODY") && params.iter().any(|p| p == "BINARY"))
}

fn token_for(key: &[u8], rump: &str) -> String {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
    let tag = ring::hmac::sign(&k, rump.as_bytes());
    // A key version byte, then the HMAC, as Cyrus's tokens look.
    let mut s = String::from("00");
    for b in tag.as_ref() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

impl Session {
    /// The namespace of `owner` (the session's own when it is the user).
    fn owner_ns(&self, owner: &str) -> Option<Namespace> {
        if self.user.as_deref() == Some(owner) {
            return self.ns.clone();
        }
        let cfg = &self.ctx.store.cfg;
        let alt = cfg.altnamespace && !self.ctx.is_admin(owner);
        Some(
            Namespace::new(cfg.unixhierarchysep, alt, owner, cfg.virtdomains, &cfg.defaultdomain)
                .with_prefixes(self.ctx.conf.get("userprefix"), self.ctx.conf.get("sharedprefix")),
        )
    }

    /// The mailbox a URL names, seen by `owner`, with the owner's rights.
    async fn url_mailbox(&self, u: &ImapUrl, owner: &str) -> Result<(MailboxEntry, String), UrlError> {
        let ns = self.owner_ns(owner).ok_or(bad("Mailbox does not exist"))?;
        let ext = crate::store::names::utf8_to_mutf7(&u.mailbox);
        let int = ns.to_internal(&ext).map_err(|_| bad("Mailbox does not exist"))?;
        let e = self
            .blocking(move |s| s.lookup(&int))
            .await
            .ok()
            .flatten()
            .ok_or(bad("Mailbox does not exist"))?;
        let rights = if self.user.as_deref() == Some(owner) {
            self.rights(&e)
        } else if self.ctx.is_admin(owner) {
            "lrswipkxtecdan".into()
        } else {
            rights_of(&e.acl, &[owner, "anyone"])
        };
        if !rights.contains('l') {
            return Err(bad("Mailbox does not exist"));
        }
        Ok((e, rights))
    }

    /// The message a URL names, read with `owner`'s rights, and the
    /// section the URL asks for.
    async fn url_message(&self, u: &ImapUrl, owner: &str) -> Result<(Vec<u8>, UrlSection), UrlError> {
        let (e, rights) = self.url_mailbox(u, owner).await?;
        if !rights.contains('r') {
            return Err(bad("Permission denied"));
        }
        let section = match &u.section {
            // Part numbers, HEADER, TEXT and MIME: Cyrus takes no
            // HEADER.FIELDS in a URL.
            Some(s) => match crate::proto::imap::command::parse_section(s.as_bytes()) {
                Ok((_, Section::HeaderFields(_) | Section::HeaderFieldsNot(_))) | Err(_) => return Err(SYNTAX),
                Ok(x) => Some(x),
            },
            None => None,
        };
        let (want_uv, uid) = (u.uidvalidity, u.uid);
        let (name, partition) = (e.name.clone(), e.partition.clone());
        let got = self
            .blocking(move |s| {
                let (st, recs) = s.index(&name)?;
                if want_uv.is_some_and(|v| v != st.uidvalidity) {
                    return Ok(Err(bad("Uidvalidity of mailbox has changed")));
                }
                if !recs.iter().any(|r| r.0 == uid) {
                    return Ok(Err(bad("No such message in mailbox")));
                }
                Ok(Ok(std::fs::read(s.message_path(&name, &partition, uid)?)?))
            })
            .await
            .map_err(|_| IO_ERROR)??;
        Ok((got, section))
    }

    /// The bytes a message URL names, read with `owner`'s rights.
    async fn url_bytes(&self, u: &ImapUrl, owner: &str) -> Result<Vec<u8>, UrlError> {
        let (msg, section) = self.url_message(u, owner).await?;
        extract(msg, section, u.partial)
    }

    /// A CATENATE's message: its parts put together. Cyrus takes relative
    /// URLs only (`/mailbox/;UID=n...`), read as the session's user.
    pub async fn catenate(&self, parts: &[crate::proto::imap::command::CatPart]) -> Result<Vec<u8>, String> {
        use crate::proto::imap::command::CatPart;
        let user = self.user.clone().unwrap_or_default();
        let max = match self.ctx.conf.get_int("maxmessagesize") {
            n if n > 0 => n as usize,
            _ => u32::MAX as usize,
        };
        let mut out = Vec::new();
        for p in parts {
            match p {
                CatPart::Text(t) => out.extend_from_slice(t),
                CatPart::Url(s) => {
                    let fail = |e: UrlError| {
                        if e.badurl {
                            let mut l = b"NO [BADURL ".to_vec();
                            render::string(&mut l, s.as_bytes());
                            format!("{}] {}", String::from_utf8_lossy(&l), e.text)
                        } else {
                            format!("NO {}", e.text)
                        }
                    };
                    if s.len() >= 5 && s.as_bytes()[..5].eq_ignore_ascii_case(b"imap:") {
                        return Err(fail(bad("Only relative URLs are supported")));
                    }
                    let u = url::parse(s).map_err(|_| fail(bad("Mailbox does not exist")))?;
                    out.extend_from_slice(&self.url_bytes(&u, &user).await.map_err(fail)?);
                }
            }
            if out.len() > max {
                return Err("NO [TOOBIG] Message size exceeds fixed limit".into());
            }
        }
        Ok(out)
    }

    /// The access key of (mailbox, owner), made when `create` and missing.
    async fn url_key(&self, mailbox: &str, owner: &str, create: bool) -> Option<Vec<u8>> {
        let (m, o) = (mailbox.to_string(), owner.to_string());
        let key = self.blocking(move |s| s.annotation(&m, KEY_ENTRY, &o)).await.ok()?;
        if key.is_some() || !create {
            return key;
        }
        let mut k = vec![0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut k).ok()?;
        let (m, o, v) = (mailbox.to_string(), owner.to_string(), k.clone());
        self.blocking(move |s| s.set_annotation(&m, KEY_ENTRY, &o, Some(&v))).await.ok()?;
        Some(k)
    }

    /// GENURLAUTH url mechanism ...: each rump URL authorized.
    pub async fn genurlauth(&mut self, tag: &str, urls: &[(String, String)]) -> Res {
        let user = self.user.clone().unwrap_or_default();
        let mut line = b"* GENURLAUTH".to_vec();
        for (s, mech) in urls {
            if !mech.eq_ignore_ascii_case("INTERNAL") {
                return self.tagged(tag, &format!("BAD Unknown auth mechanism to Genurlauth {mech}")).await;
            }
            let refuse = format!("NO Error authorizing {s}: not a cyrusdb error");
            let u = match url::parse(s) {
                Ok(u) if u.access.is_some() && u.mechanism.is_none() && u.user.as_deref() == Some(user.as_str()) => u,
                _ => return self.tagged(tag, &refuse).await,
            };
            let Ok((e, _)) = self.url_mailbox(&u, &user).await else {
                return self.tagged(tag, &refuse).await;
            };
            let Some(key) = self.url_key(&e.name, &user, true).await else {
                return self.tagged(tag, "NO [SERVERBUG] System I/O error").await;
            };
            line.push(b' ');
            render::string(&mut line, format!("{}:internal:{}", u.rump, token_for(&key, &u.rump)).as_bytes());
        }
        line.extend_from_slice(b"\r\n");
        self.out_bytes(&line).await?;
        self.tagged(tag, "OK Completed").await
    }

    /// RESETKEY [mailbox [mechanism ...]]: the user's keys removed (all of
    /// them, or the mailbox's).
    pub async fn resetkey(&mut self, tag: &str, mailbox: Option<&str>) -> Res {
        let user = self.user.clone().unwrap_or_default();
        match mailbox {
            None => {
                let u = user.clone();
                if let Err(t) = self.blocking(move |s| s.delete_annotations(KEY_ENTRY, &u)).await {
                    return self.tagged(tag, &t).await;
                }
                self.tagged(tag, "OK All keys removed").await
            }
            Some(m) => {
                let e = match self.lookup_with(m, 'l').await {
                    Ok(e) => e,
                    Err(t) => {
                        let why = t.strip_prefix("NO ").unwrap_or(&t).to_string();
                        return self.tagged(tag, &format!("NO Error removing key: {why}")).await;
                    }
                };
                let (n, u) = (e.name.clone(), user.clone());
                if let Err(t) = self.blocking(move |s| s.set_annotation(&n, KEY_ENTRY, &u, None)).await {
                    return self.tagged(tag, &t).await;
                }
                self.tagged(tag, "OK [URLMECH INTERNAL] key removed").await
            }
        }
    }

    /// Whether an authorized URL may be fetched by this session: the
    /// access identifier allows it, it has not expired, and its token
    /// is the one its owner's key gives.
    async fn url_authorized(&self, u: &ImapUrl) -> bool {
        let me = self.user.as_deref().unwrap_or("");
        let (Some(owner), Some(access), Some(mech), Some(token)) = (&u.user, &u.access, &u.mechanism, &u.token) else {
            return false;
        };
        // The host is not checked: behind a Murder front end clients name
        // the front end; the token covers the URL as written.
        if mech != "INTERNAL" {
            return false;
        }
        let a = access.to_ascii_lowercase();
        let allowed = if a == "anonymous" || a == "authuser" {
            true
        } else if let Some(who) = a.strip_prefix("user+") {
            who == me.to_ascii_lowercase()
        } else if let Some(who) = a.strip_prefix("submit+") {
            // Only the submit servers (`submitservers`) may resolve
            // these, on behalf of the named user.
            let subs = self.ctx.conf.get("submitservers").unwrap_or_default();
            !who.is_empty() && subs.split([' ', ',']).any(|s| !s.is_empty() && s == me)
        } else {
            false
        };
        if !allowed {
            return false;
        }
        if let Some(exp) = &u.expire {
            match crate::util::codec::rfc3339(exp) {
                Some(t) if t > crate::util::unix_now() => {}
                _ => return false,
            }
        }
        let Ok((e, _)) = self.url_mailbox(u, owner).await else {
            return false;
        };
        let Some(key) = self.url_key(&e.name, owner, false).await else {
            return false;
        };
        let want = token_for(&key, &u.rump);
        // Compared in constant time.
        let got = token.to_ascii_lowercase();
        want.len() == got.len() && want.bytes().zip(got.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    /// URLFETCH url ...: each authorized URL's data, NIL for the others;
    /// `(url params)` is URLAUTH=BINARY's form. A bad parameter list ends
    /// the response at its URL (NIL) and the command with BAD, as Cyrus.
    pub async fn urlfetch(&mut self, tag: &str, urls: &[(String, Option<Vec<String>>)]) -> Res {
        let mut line = b"* URLFETCH".to_vec();
        for (s, params) in urls {
            line.push(b' ');
            render::string(&mut line, s.as_bytes());
            if params.as_ref().is_some_and(|p| !params_ok(p)) {
                line.extend_from_slice(b" NIL\r\n");
                self.out_bytes(&line).await?;
                return self.tagged(tag, "BAD Invalid extended URLFETCH parameters").await;
            }
            let msg = match url::parse(s) {
                Ok(u) if self.url_authorized(&u).await => {
                    let owner = u.user.clone().unwrap_or_default();
                    self.url_message(&u, &owner).await.ok().map(|m| (u, m))
                }
                _ => None,
            };
            let Some((u, (msg, section))) = msg else {
                line.extend_from_slice(b" NIL");
                continue;
            };
            match params.as_deref() {
                Some(p) if !p.is_empty() => {
                    let mut ext = Vec::new();
                    line.push(b' ');
                    match extended(&mut ext, &msg, &section, p) {
                        Some(()) => line.extend_from_slice(&ext),
                        None => line.extend_from_slice(b"NIL"),
                    }
                }
                _ => match extract(msg, section, u.partial) {
                    Ok(d) => {
                        line.extend_from_slice(format!(" {{{}}}\r\n", d.len()).as_bytes());
                        line.extend_from_slice(&d);
                    }
                    Err(_) => line.extend_from_slice(b" NIL"),
                },
            }
            // Each URL's data goes out before the next is read: at most
            // one message is held, however many URLs the command names.
            self.out_bytes(&std::mem::take(&mut line)).await?;
        }
        line.extend_from_slice(b"\r\n");
        self.out_bytes(&line).await?;
        self.tagged(tag, "OK Completed").await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_depend_on_key_and_rump() {
        let a = token_for(b"k1", "imap://u@h/INBOX/;UID=1;URLAUTH=anonymous");
        assert_eq!(a.len(), 42);
        assert_ne!(a, token_for(b"k2", "imap://u@h/INBOX/;UID=1;URLAUTH=anonymous"));
        assert_ne!(a, token_for(b"k1", "imap://u@h/INBOX/;UID=2;URLAUTH=anonymous"));
    }
}
