//! cleanup(8)'s header pass over each new message: the headers named in
//! `message_drop_headers` go; for a client in the header rewrite context
//! (`local_header_rewrite_clients`, or any client when
//! `remote_header_rewrite_domain` is set) the addresses in sender and
//! recipient headers are completed, canonicalized and masqueraded per
//! `*_canonical_classes` and `masquerade_classes`; and missing
//! (Resent-)Message-Id, Date and From headers are appended (also with
//! `always_add_missing_headers`).  First of all, each header goes through
//! `header_checks` (header_checks(5): REJECT, HOLD, DISCARD, IGNORE,
//! REPLACE, PREPEND, WARN, INFO, DUNNO, OK); MIME headers go through
//! `mime_header_checks`.  Then the body, read as cleanup's MIME processor
//! reads it: body parts' headers through `mime_header_checks`, attached
//! messages' through `nested_header_checks`, other lines through
//! `body_checks`.

use super::cleanup::{RewriteError, Rewriter};

/// Headers cleanup treats as sender addresses (`header_sender`).
const SENDER: &[&str] = &[
    "from",
    "sender",
    "reply-to",
    "resent-from",
    "resent-sender",
    "errors-to",
    "return-receipt-to",
    "disposition-notification-to",
    "mail-followup-to",
];
/// … and as recipient addresses (`header_recipient`).
const RECIPIENT: &[&str] = &[
    "to",
    "cc",
    "bcc",
    "apparently-to",
    "resent-to",
    "resent-cc",
    "resent-bcc",
    "resent-reply-to",
];

/// How header addresses are rewritten for this message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Context {
    /// A local client: bare names get `@$myorigin`, `.$mydomain` per
    /// `append_dot_mydomain`.
    Local,
    /// A remote client with `remote_header_rewrite_domain` set: bare
    /// names get that domain.
    Remote(String),
}

/// What the header pass needs to know about the message.
pub struct Job<'a> {
    pub context: Option<Context>,
    /// The envelope sender after rewriting (for an added From:).
    pub sender: &'a str,
    pub qid: &'a str,
    pub now: i64,
    /// The sender's full name for an added From: (`sendmail -F`, gecos).
    pub full_name: &'a str,
    /// Input that ends inside its header gets the empty line after the
    /// added headers (pickup's input; smtpd's is left as received).
    pub end_header: bool,
    /// For header_checks log lines: `from {client}; from=<…> to=<…>
    /// proto=… helo=<…>` after the header.
    pub log_tail: String,
    /// header_checks and body_checks run (not with
    /// `receive_override_options = no_header_body_checks`).
    pub checks: bool,
}

/// What header_checks decided for the whole message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// `REJECT`: the reply (`550 5.7.1 text`).
    Reject(String),
    Hold,
    Discard,
}

/// The result: the new header block and the ids to log.
pub struct Cleaned {
    pub content: Vec<u8>,
    pub message_id: Option<String>,
    pub resent_message_id: Option<String>,
    pub verdict: Option<Verdict>,
    /// `REDIRECT addr` (the last one): every recipient becomes it.
    pub redirect: Option<String>,
    /// `BCC addr`: recipients added.
    pub bcc: Vec<String>,
    /// `FILTER transport:destination` (the last one): the message goes to
    /// that content filter instead of its recipients' transports.
    pub filter: Option<String>,
    /// cleanup log lines (after `QID: `): header_checks actions.
    pub log: Vec<String>,
    /// cleanup warnings (after `QID: `): a message refused as looping.
    pub warnings: Vec<String>,
}

/// The reply to a message with `hopcount_limit` Received: headers.
pub const TOO_MANY_HOPS: &str = "554 5.4.0 Error: too many hops";

/// One header (its lines with their ends) cut to `limit` bytes as
/// cleanup keeps it: its lines joined by one newline, a first line longer
/// than the limit cut there, and from the first continuation line that
/// would go past the limit on, the rest dropped.
pub fn truncate_field(f: &[u8], limit: usize) -> std::borrow::Cow<'_, [u8]> {
    use std::borrow::Cow;
    let mut total = 0usize;
    let mut at = 0usize;
    while at < f.len() {
        let end = memchr::memchr(b'\n', &f[at..]).map_or(f.len(), |n| at + n + 1);
        let line = &f[at..end];
        let text = line.strip_suffix(b"\n").map_or(line, |l| l.strip_suffix(b"\r").unwrap_or(l));
        if at == 0 {
            if text.len() > limit {
                let mut cut = text[..limit].to_vec();
                cut.extend_from_slice(b"\r\n");
                return Cow::Owned(cut);
            }
            total = text.len();
        } else {
            total += 1 + text.len();
            if total > limit {
                return Cow::Borrowed(&f[..at]);
            }
        }
        at = end;
    }
    Cow::Borrowed(f)
}

/// Raw header fields (each with its line ends) and the offset of the
/// body (after the empty line, or the end when there is none).
pub fn raw_fields(content: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut out: Vec<&[u8]> = Vec::new();
    let mut i = 0;
    let mut start: Option<usize> = None;
    loop {
        if i >= content.len() {
            if let Some(s) = start {
                out.push(&content[s..]);
            }
            return (out, content.len());
        }
        let end = content[i..]
            .iter()
            .position(|&c| c == b'\n')
            .map(|n| i + n + 1)
            .unwrap_or(content.len());
        let line = &content[i..end];
        let blank = line == b"\r\n" || line == b"\n";
        let cont = !blank && (line[0] == b' ' || line[0] == b'\t');
        if !cont {
            if let Some(s) = start.take() {
                out.push(&content[s..i]);
            }
            if blank {
                return (out, i);
            }
            // A line that is not a header ends the header block.
            let name_ok = line
                .iter()
                .position(|&c| c == b':')
                .is_some_and(|c| c > 0 && line[..c].iter().all(|&b| b > b' ' && b < 127));
            if !name_ok {
                return (out, i);
            }
            start = Some(i);
        }
        i = end;
    }
}

/// `4.7.1`, `5.7.0`: an enhanced status code of a refusal.
fn is_dsn(s: &str) -> bool {
    crate::proto::smtp::enhanced_status(s) && !s.starts_with('2')
}

fn name_of(field: &[u8]) -> String {
    let c = field.iter().position(|&c| c == b':').unwrap_or(0);
    String::from_utf8_lossy(&field[..c]).trim().to_string()
}

fn value_of(field: &[u8]) -> &[u8] {
    let c = field.iter().position(|&c| c == b':').map(|c| c + 1).unwrap_or(0);
    let mut v = &field[c..];
    while let Some(r) = v.strip_suffix(b"\n") {
        v = r.strip_suffix(b"\r").unwrap_or(r);
    }
    v
}

/// MIME headers (cleanup's HDR_OPT_MIME): they go through
/// mime_header_checks wherever they are.
fn is_mime_header(lower: &str) -> bool {
    lower.starts_with("content-") || lower == "mime-version"
}

/// One content-check table and its parameter name (for log lines).
#[derive(Debug)]
pub struct Checks {
    pub name: &'static str,
    pub maps: crate::tables::Maps,
}

/// What the checks decided for the message as a whole.
#[derive(Default)]
pub struct Effects {
    verdict: Option<Verdict>,
    /// PASS (or REDIRECT) turned the header and body checks off for the
    /// rest of the message, as cleanup clears its filter flags.
    pass: bool,
    redirect: Option<String>,
    bcc: Vec<String>,
    filter: Option<String>,
}

impl Effects {
    /// No more header or body checks for this message.
    fn stopped(&self) -> bool {
        self.verdict.is_some() || self.pass
    }
}

/// What a check does to the header or body line it matched.
enum Act {
    Keep,
    Ignore,
    Replace(String),
    Prepend(String),
}

/// How a MIME body is being read (for `body`).
#[derive(Clone, Copy, PartialEq)]
enum Reading {
    /// Headers of a body part (`nested`: of an attached message).
    Headers {
        nested: bool,
    },
    Body,
}

/// `multipart/x; boundary="b"` → Some(b); and whether the type is
/// message/rfc822 (its body starts with a message's headers).
fn cut_of(ctype: Option<&[u8]>) -> (Option<Vec<u8>>, bool) {
    let Some(v) = ctype else { return (None, false) };
    let ct = crate::mail::mime::parse_content_type(v);
    let (ty, sub) = (ct.ty.to_ascii_lowercase(), ct.subtype.to_ascii_lowercase());
    if ty == "multipart" {
        return (ct.param("boundary").filter(|b| !b.is_empty()).map(|b| b.as_bytes().to_vec()), false);
    }
    (None, ty == "message" && sub == "rfc822")
}

impl Rewriter {
    /// One header_checks(5)/body_checks(5) lookup and its action, logged
    /// as cleanup logs it (`reject: header ...`, `warning: body ...`).
    fn check(
        &self,
        t: &Checks,
        what: &str,
        logical: &str,
        job: &Job,
        log: &mut Vec<String>,
        fx: &mut Effects,
    ) -> Result<Act, RewriteError> {
        let action = match t.maps.lookup_keys(std::slice::from_ref(&logical.to_string())) {
            Err(_) => {
                return Err(RewriteError(format!(
                    "{} map lookup problem -- message not accepted, try again later",
                    t.name
                )))
            }
            Ok(None) => return Ok(Act::Keep),
            Ok(Some((action, _))) => action,
        };
        let (word, text) = match action.trim().split_once(char::is_whitespace) {
            Some((w, t)) => (w.to_ascii_uppercase(), t.trim().to_string()),
            None => (action.trim().to_ascii_uppercase(), String::new()),
        };
        // Postfix shows a line break inside a header as '?'.
        let shown = logical.replace('\n', "?");
        // cleanup_act_log: `: <text>` only when there is a text.
        let line = |verb: &str, text: &str| {
            let mut l = format!("{verb}: {what} {shown} {}", job.log_tail);
            if !text.is_empty() {
                l.push_str(": ");
                l.push_str(text);
            }
            l
        };
        Ok(match word.as_str() {
            "REJECT" => {
                let (dsn, text) = match text.split_once(' ') {
                    Some((d, t)) if is_dsn(d) => (d.to_string(), t.to_string()),
                    _ if is_dsn(&text) => (text.clone(), "message content rejected".to_string()),
                    _ if text.is_empty() => ("5.7.1".to_string(), "message content rejected".to_string()),
                    _ => ("5.7.1".to_string(), text.clone()),
                };
                let code = if dsn.starts_with('4') { 451 } else { 550 };
                log.push(line("reject", &format!("{dsn} {text}")));
                fx.verdict = Some(Verdict::Reject(format!("{code} {dsn} {text}")));
                Act::Keep
            }
            "HOLD" => {
                log.push(line("hold", &text));
                fx.verdict = Some(Verdict::Hold);
                Act::Keep
            }
            "DISCARD" => {
                log.push(line("discard", &text));
                fx.verdict = Some(Verdict::Discard);
                Act::Keep
            }
            "WARN" => {
                log.push(line("warning", &text));
                Act::Keep
            }
            "INFO" => {
                log.push(line("info", &text));
                Act::Keep
            }
            "IGNORE" => Act::Ignore,
            "STRIP" => {
                log.push(line("strip", &text));
                Act::Ignore
            }
            "PASS" => {
                log.push(line("pass", &text));
                fx.pass = true;
                Act::Keep
            }
            "PREPEND" => {
                log.push(line("prepend", &text.replace('\n', "?")));
                Act::Prepend(text)
            }
            "REPLACE" => {
                log.push(line("replace", &text.replace('\n', "?")));
                Act::Replace(text)
            }
            // An address with a local part and a domain, as Postfix
            // requires; else the action is ignored with a warning.
            "REDIRECT" | "BCC" if text.contains('@') && !text.contains(char::is_whitespace) => {
                log.push(line(&word.to_ascii_lowercase(), &text));
                if word == "REDIRECT" {
                    fx.redirect = Some(text);
                    fx.pass = true;
                } else {
                    fx.bcc.push(text);
                }
                Act::Keep
            }
            // transport:destination, as Postfix requires.
            "FILTER" if text.contains(':') && !text.contains(char::is_whitespace) => {
                log.push(line("filter", &text));
                fx.filter = Some(text);
                Act::Keep
            }
            "DUNNO" | "OK" => Act::Keep,
            other => {
                log.push(format!(
                    "warning: {}: unsupported action {other} for {what} {shown}; ignored",
                    t.name
                ));
                Act::Keep
            }
        })
    }

    /// The body after the primary header, as cleanup's MIME processor
    /// reads it: the headers of each body part through
    /// mime_header_checks, those of an attached message through
    /// nested_header_checks (its MIME headers through mime_header_checks),
    /// every other line through body_checks, up to
    /// `body_checks_size_limit` bytes of each part.  Boundary lines pass
    /// unchecked.  The checks stop at the first REJECT, HOLD or DISCARD.
    fn body(
        &self,
        body: &[u8],
        ctype: Option<&[u8]>,
        job: &Job,
        log: &mut Vec<String>,
        fx: &mut Effects,
        out: &mut Vec<u8>,
    ) -> Result<(), RewriteError> {
        let mut bounds: Vec<Vec<u8>> = Vec::new();
        let (b, rfc822) = cut_of(ctype);
        bounds.extend(b);
        let mut reading = if rfc822 { Reading::Headers { nested: true } } else { Reading::Body };
        let mut segment = 0usize;
        // A part's header being gathered: its lines (with their ends).
        let mut pending: Vec<u8> = Vec::new();
        let mut part_ctype: Option<Vec<u8>> = None;
        // `body` starts with the empty line that ends the primary header.
        let mut i = if body.starts_with(b"\r\n") {
            2
        } else {
            usize::from(body.starts_with(b"\n"))
        };
        out.extend_from_slice(&body[..i]);
        while i < body.len() {
            let end = body[i..].iter().position(|&c| c == b'\n').map_or(body.len(), |n| i + n + 1);
            let raw = &body[i..end];
            i = end;
            if fx.stopped() {
                out.extend_from_slice(raw);
                continue;
            }
            let line = raw.strip_suffix(b"\n").map(|l| l.strip_suffix(b"\r").unwrap_or(l)).unwrap_or(raw);
            if let Reading::Headers { nested } = reading {
                let cont = !line.is_empty() && (line[0] == b' ' || line[0] == b'\t') && !pending.is_empty();
                if cont {
                    pending.extend_from_slice(raw);
                    continue;
                }
                if !pending.is_empty() {
                    let h = std::mem::take(&mut pending);
                    self.part_header(&h, nested, job, log, fx, out, &mut part_ctype)?;
                }
                if line.is_empty() {
                    out.extend_from_slice(raw);
                    let (b, rfc822) = cut_of(part_ctype.take().as_deref());
                    bounds.extend(b);
                    reading = if rfc822 { Reading::Headers { nested: true } } else { Reading::Body };
                    segment = 0;
                } else {
                    pending.extend_from_slice(raw);
                }
                continue;
            }
            // A boundary of any enclosing multipart (its close too).
            if line.starts_with(b"--") {
                let t = crate::mail::mime::trim(&line[2..]);
                if let Some(k) = bounds
                    .iter()
                    .rposition(|b| t == b.as_slice() || (t.ends_with(b"--") && &t[..t.len() - 2] == b.as_slice()))
                {
                    let close = t.len() != bounds[k].len();
                    bounds.truncate(if close { k } else { k + 1 });
                    out.extend_from_slice(raw);
                    reading = if close { Reading::Body } else { Reading::Headers { nested: false } };
                    part_ctype = None;
                    segment = 0;
                    continue;
                }
            }
            segment += raw.len();
            if self.body_checks.maps.is_empty() || segment > self.body_checks_size_limit {
                out.extend_from_slice(raw);
                continue;
            }
            let text = String::from_utf8_lossy(line).into_owned();
            match self.check(&self.body_checks, "body", &text, job, log, fx)? {
                Act::Keep => out.extend_from_slice(raw),
                Act::Ignore => {}
                Act::Replace(t) => {
                    out.extend_from_slice(t.as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
                Act::Prepend(t) => {
                    out.extend_from_slice(t.as_bytes());
                    out.extend_from_slice(b"\r\n");
                    out.extend_from_slice(raw);
                }
            }
        }
        if !pending.is_empty() {
            let (nested, h) = (matches!(reading, Reading::Headers { nested: true }), std::mem::take(&mut pending));
            self.part_header(&h, nested, job, log, fx, out, &mut part_ctype)?;
        }
        Ok(())
    }

    /// One header of a body part (or of an attached message, `nested`).
    #[allow(clippy::too_many_arguments)]
    fn part_header(
        &self,
        h: &[u8],
        nested: bool,
        job: &Job,
        log: &mut Vec<String>,
        fx: &mut Effects,
        out: &mut Vec<u8>,
        ctype: &mut Option<Vec<u8>>,
    ) -> Result<(), RewriteError> {
        let lower = name_of(h).to_ascii_lowercase();
        let table = if nested && !is_mime_header(&lower) {
            &self.nested_header_checks
        } else {
            &self.mime_header_checks
        };
        let mut kept: Vec<u8> = h.to_vec();
        if !table.maps.is_empty() && !fx.stopped() {
            let logical = String::from_utf8_lossy(h).trim_end_matches(['\r', '\n']).replace("\r\n", "\n");
            match self.check(table, "header", &logical, job, log, fx)? {
                Act::Keep => {}
                Act::Ignore => return Ok(()),
                Act::Prepend(t) => {
                    out.extend_from_slice(t.replace('\n', "\r\n").as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
                Act::Replace(t) => {
                    kept = t.replace('\n', "\r\n").into_bytes();
                    kept.extend_from_slice(b"\r\n");
                }
            }
        }
        if name_of(&kept).eq_ignore_ascii_case("content-type") {
            *ctype = Some(value_of(&kept).to_vec());
        }
        out.extend_from_slice(&kept);
        Ok(())
    }

    /// The header pass.  `content` starts with the message's own headers
    /// (the Received header is the caller's); the result keeps the body
    /// bytes as they were.
    pub fn headers(&self, content: &[u8], job: &Job) -> Result<Cleaned, RewriteError> {
        let (fields, body_at) = raw_fields(content);
        let unterminated = body_at == content.len();
        let mut out = Vec::with_capacity(content.len() + 256);
        let mut seen = std::collections::HashSet::new();
        let mut resent = false;
        let mut message_id = None;
        let mut resent_message_id = None;
        let mut fx = Effects::default();
        let mut log = Vec::new();
        // The caller's own Received: header is the first hop.
        let mut hops = 1usize;
        for f in &fields {
            let cut = truncate_field(f, self.header_size_limit.max(1));
            let f: &[u8] = &cut;
            let mut name = name_of(f);
            let mut lower = name.to_ascii_lowercase();
            // header_checks (MIME headers: mime_header_checks): one
            // logical header (continuation lines kept).
            let mut replaced: Option<Vec<u8>> = None;
            let table = if is_mime_header(&lower) {
                &self.mime_header_checks
            } else {
                &self.header_checks
            };
            if job.checks && !table.maps.is_empty() && !fx.stopped() {
                let logical = String::from_utf8_lossy(f).trim_end_matches(['\r', '\n']).replace("\r\n", "\n");
                match self.check(table, "header", &logical, job, &mut log, &mut fx)? {
                    Act::Keep => {}
                    Act::Ignore => continue,
                    Act::Prepend(t) => {
                        out.extend_from_slice(t.replace('\n', "\r\n").as_bytes());
                        out.extend_from_slice(b"\r\n");
                    }
                    Act::Replace(t) => {
                        let mut r = t.replace('\n', "\r\n").into_bytes();
                        r.extend_from_slice(b"\r\n");
                        name = name_of(&r);
                        lower = name.to_ascii_lowercase();
                        replaced = Some(r);
                    }
                }
            }
            let f: &[u8] = replaced.as_deref().unwrap_or(f);
            if lower.starts_with("resent-") {
                resent = true;
            }
            if lower == "received" {
                hops += 1;
            }
            seen.insert(lower.clone());
            let text = || String::from_utf8_lossy(value_of(f)).trim().to_string();
            if lower == "message-id" && message_id.is_none() {
                message_id = Some(text());
            } else if lower == "resent-message-id" && resent_message_id.is_none() {
                resent_message_id = Some(text());
            }
            if self.drop_headers.contains(&lower) {
                continue;
            }
            let class = if SENDER.contains(&lower.as_str()) {
                Some(true)
            } else if RECIPIENT.contains(&lower.as_str()) {
                Some(false)
            } else {
                None
            };
            match (class, &job.context, std::str::from_utf8(value_of(f))) {
                (Some(sender), Some(ctx), Ok(value)) => {
                    let new = crate::mail::addr_list::rewrite_field(&name, value, |a| self.header_address(a, sender, ctx).map(Some))?;
                    match new {
                        Some(n) => {
                            out.extend_from_slice(n.as_bytes());
                            out.extend_from_slice(b"\r\n");
                        }
                        None => out.extend_from_slice(f),
                    }
                }
                _ => out.extend_from_slice(f),
            }
            if !out.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
        if job.context.is_some() || self.always_add_missing_headers {
            let prefix = if resent { "Resent-" } else { "" };
            let missing = |n: &str| !seen.contains(&format!("{}{n}", prefix.to_ascii_lowercase()));
            if missing("message-id") {
                let (y, mo, d, hh, mi, ss, _) = crate::util::codec::civil(job.now);
                let id = format!("<{y:04}{mo:02}{d:02}{hh:02}{mi:02}{ss:02}.{}@{}>", job.qid, self.myhostname());
                out.extend_from_slice(format!("{prefix}Message-Id: {id}\r\n").as_bytes());
                if resent {
                    resent_message_id = Some(id);
                } else {
                    message_id = Some(id);
                }
            }
            if missing("date") {
                let date = crate::util::codec::mail_date(job.now);
                out.extend_from_slice(format!("{prefix}Date: {date}\r\n").as_bytes());
            }
            if missing("from") {
                let from = if job.sender.is_empty() {
                    "MAILER-DAEMON".to_string()
                } else {
                    crate::mail::addr_list::external(job.sender)
                };
                if job.full_name.is_empty() {
                    out.extend_from_slice(format!("{prefix}From: {from}\r\n").as_bytes());
                } else {
                    out.extend_from_slice(format!("{prefix}From: {} <{from}>\r\n", job.full_name).as_bytes());
                }
            }
        }
        if unterminated && job.end_header {
            out.extend_from_slice(b"\r\n");
        }
        let body = &content[body_at..];
        let checks = [&self.body_checks, &self.mime_header_checks, &self.nested_header_checks];
        if job.checks && !fx.stopped() && checks.iter().any(|t| !t.maps.is_empty()) {
            // The primary header's Content-Type says how the body is cut.
            let ctype = fields
                .iter()
                .rev()
                .find(|f| name_of(f).eq_ignore_ascii_case("content-type"))
                .map(|f| value_of(f));
            self.body(body, ctype, job, &mut log, &mut fx, &mut out)?;
        } else {
            out.extend_from_slice(body);
        }
        let mut warnings = Vec::new();
        if hops >= self.hopcount_limit {
            warnings.push("message rejected: hopcount exceeded".to_string());
            fx.verdict = Some(Verdict::Reject(TOO_MANY_HOPS.to_string()));
        }
        Ok(Cleaned {
            content: out,
            message_id,
            resent_message_id,
            verdict: fx.verdict,
            warnings,
            redirect: fx.redirect,
            bcc: fx.bcc,
            filter: fx.filter,
            log,
        })
    }

    /// One header address: completed for the context, then the canonical
    /// maps and masquerading of its class.
    fn header_address(&self, addr: &str, sender: bool, ctx: &Context) -> Result<String, RewriteError> {
        // Source routes go (RFC 5321 C: they are ignored).
        let mut a = match addr.rsplit_once(':') {
            Some((route, rest)) if route.starts_with('@') => rest.to_string(),
            _ => addr.to_string(),
        };
        match ctx {
            Context::Local => {
                if !a.contains('@') {
                    if self.append_at_myorigin {
                        a = format!("{a}@{}", self.myorigin());
                    }
                } else if let Some(dom) = self.append_dot_mydomain.as_ref() {
                    if let Some((l, d)) = a.rsplit_once('@') {
                        if !d.contains('.') && !d.starts_with('[') && !d.is_empty() {
                            a = format!("{l}@{d}.{dom}");
                        }
                    }
                }
            }
            Context::Remote(domain) => {
                if !a.contains('@') {
                    a = format!("{a}@{domain}");
                }
            }
        }
        if let Some(stripped) = a.strip_suffix('.') {
            a = stripped.to_string();
        }
        let class = if sender { "header_sender" } else { "header_recipient" };
        self.classed(&a, sender, class)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::postfix::Params;
    use crate::daemon::hub::conf::HubConf;

    fn rw(extra: &str) -> Rewriter {
        let mut p = Params::default();
        let main = format!("myhostname = hub.mumail.test\nmydomain = mumail.test\nmyorigin = $mydomain\nmydestination =\n{extra}");
        p.main = crate::config::postfix::MainCf::parse("main.cf", main.as_bytes()).unwrap();
        let conf = HubConf::load(&p).unwrap();
        Rewriter::load(&p, &conf).unwrap()
    }

    /// The verdict and log of the content checks on one message.
    fn verdict(r: &Rewriter, msg: &str) -> (Option<Verdict>, Vec<String>) {
        let job = Job {
            context: None,
            sender: "s@x.test",
            qid: "ABC123",
            now: 1_700_000_000,
            full_name: "",
            end_header: false,
            log_tail: "from c".into(),
            checks: true,
        };
        let c = r.headers(msg.replace('\n', "\r\n").as_bytes(), &job).unwrap();
        (c.verdict, c.log)
    }

    /// MIME-aware checks: which table sees which line (the cases the
    /// real Postfix 3.7 comparison in hub_vs_postfix.rs also covers).
    #[test]
    fn one_header_cut_as_cleanup_cuts_it() {
        let t = |f: &[u8], n: usize| truncate_field(f, n).into_owned();
        // Within the limit: as it is.
        assert_eq!(t(b"A: bc\r\n d\r\n", 20), b"A: bc\r\n d\r\n");
        // A first line past the limit: cut there.
        assert_eq!(t(b"A: bcdefgh\r\n d\r\n", 6), b"A: bcd\r\n");
        // Lines joined by one byte: up to exactly the limit kept, the
        // first line that goes past it dropped with all after it.
        assert_eq!(t(b"A: bc\r\n d\r\n e\r\n", 8), b"A: bc\r\n d\r\n");
        assert_eq!(t(b"A: bc\r\n defgh\r\n e\r\n", 8), b"A: bc\r\n");
    }

    #[test]
    fn mime_parts_nested_messages_and_body_lines() {
        let r = rw("header_checks = inline:{ {Subject: evil = REJECT bad subject} }\n\
                    body_checks = regexp:{ {/^buy/ REJECT no spam}, {/^Content-Type/ REJECT never} }\n");
        // An attached message's Subject (nested_header_checks, default
        // $header_checks), at the top level and inside a multipart.
        let top = "Subject: ok\nMIME-Version: 1.0\nContent-Type: message/rfc822\n\nSubject: evil\n\nbody\n";
        assert!(matches!(verdict(&r, top).0, Some(Verdict::Reject(_))), "{:?}", verdict(&r, top));
        let inner =
            "Subject: ok\nContent-Type: multipart/mixed; boundary=O\n\n--O\nContent-Type: message/rfc822\n\nSubject: evil\n\nx\n--O--\n";
        assert!(matches!(verdict(&r, inner).0, Some(Verdict::Reject(_))), "{:?}", verdict(&r, inner));
        // Part headers are not body lines; body lines are.
        let parts = "Subject: ok\nContent-Type: multipart/mixed; boundary=O\n\n--O\nContent-Type: text/plain\n\nhello\n--O--\n";
        assert_eq!(verdict(&r, parts).0, None);
        let (v, log) = verdict(&r, "Subject: ok\n\nhello\nbuy now\n");
        assert_eq!(v, Some(Verdict::Reject("550 5.7.1 no spam".into())));
        assert_eq!(log, vec!["reject: body buy now from c: 5.7.1 no spam".to_string()]);
        // Past body_checks_size_limit a part is not read.
        let r = rw("body_checks = regexp:{ {/^buy/ REJECT no spam} }\nbody_checks_size_limit = 10\n");
        assert_eq!(verdict(&r, "Subject: ok\n\nhello world\nbuy now\n").0, None);
    }

    fn clean(r: &Rewriter, msg: &str, context: Option<Context>, sender: &str) -> String {
        let c = r
            .headers(
                msg.replace('\n', "\r\n").as_bytes(),
                &Job {
                    context,
                    sender,
                    qid: "ABC123",
                    now: 1_700_000_000,
                    full_name: "",
                    end_header: false,
                    log_tail: String::new(),
                    checks: true,
                },
            )
            .unwrap();
        String::from_utf8(c.content).unwrap().replace("\r\n", "\n")
    }

    /// The real Postfix 3.7 on the same configuration: which headers are
    /// of which class, what is dropped, what is added.
    #[test]
    fn classes_drops_and_additions() {
        let r = rw("sender_canonical_maps = inline:{ {s1@mumail.test = S@mumail.test} }\n\
                    recipient_canonical_maps = inline:{ {r1@mumail.test = R@mumail.test} }\n\
                    masquerade_domains = mumail.test\nmasquerade_exceptions = root\n");
        let names = "From Sender Reply-To Resent-From Resent-Sender Resent-Reply-To Errors-To Return-Receipt-To \
                     Disposition-Notification-To To Cc Apparently-To Resent-To Resent-Cc Mail-Followup-To Mail-Reply-To \
                     Original-Recipient X-Original-To Delivered-To Envelope-To Return-Path Content-Length Resent-Bcc Bcc";
        let mut msg = String::from("Subject: classes\n");
        for n in names.split(' ') {
            msg.push_str(&format!("{n}: s1@mumail.test, r1@host.mumail.test\n"));
        }
        msg.push_str("Message-Id: <2@x>\nDate: Mon, 1 Jan 2024 00:00:00 +0000\n\nbody\n");
        let out = clean(&r, &msg, Some(Context::Local), "");
        let s = "S@mumail.test, r1@mumail.test";
        let rc_masq = "s1@mumail.test, r1@mumail.test";
        let raw = "s1@mumail.test, r1@host.mumail.test";
        let want = format!(
            "Subject: classes\nFrom: {s}\nSender: {s}\nReply-To: {s}\nResent-From: {s}\nResent-Sender: {s}\n\
             Resent-Reply-To: {rc_masq}\nErrors-To: {s}\nReturn-Receipt-To: {s}\nDisposition-Notification-To: {s}\n\
             To: {rc_masq}\nCc: {rc_masq}\nApparently-To: {rc_masq}\nResent-To: {rc_masq}\nResent-Cc: {rc_masq}\n\
             Mail-Followup-To: {s}\nMail-Reply-To: {raw}\nOriginal-Recipient: {raw}\nX-Original-To: {raw}\n\
             Delivered-To: {raw}\nEnvelope-To: {raw}\nMessage-Id: <2@x>\nDate: Mon, 1 Jan 2024 00:00:00 +0000\n\
             Resent-Message-Id: <20231114221320.ABC123@hub.mumail.test>\n\
             Resent-Date: Tue, 14 Nov 2023 22:13:20 +0000 (UTC)\n\nbody\n"
        );
        // r1@host.mumail.test masquerades to r1@mumail.test, which is not
        // the recipient_canonical key; a plain r1@mumail.test maps.
        assert_eq!(out, want);
        let out = clean(&r, "To: r1@mumail.test\n\nb\n", Some(Context::Local), "s1@mumail.test");
        assert!(out.starts_with("To: R@mumail.test\n"), "{out}");
        // No context (a remote client): nothing rewritten or added, but
        // the dropped headers still go.
        let out = clean(&r, "To: a, x@host.mumail.test\nBcc: b\nSubject: s\n\nbody\n", None, "s@x");
        assert_eq!(out, "To: a, x@host.mumail.test\nSubject: s\n\nbody\n");
        let out = clean(&r, "Subject: s\n\nbody\n", Some(Context::Local), "");
        assert!(
            out.ends_with("Date: Tue, 14 Nov 2023 22:13:20 +0000 (UTC)\nFrom: MAILER-DAEMON\n\nbody\n"),
            "{out}"
        );
        let out = clean(&r, "To: joe\nResent-To: q\n\nbody\n", Some(Context::Local), "s@mumail.test");
        assert!(
            out.starts_with("To: joe@mumail.test\nResent-To: q@mumail.test\nResent-Message-Id: <"),
            "{out}"
        );
        assert!(out.ends_with("Resent-From: s@mumail.test\n\nbody\n"), "{out}");
        let out = clean(
            &r,
            "To: joe, root@host.mumail.test\n\nb\n",
            Some(Context::Remote("elsewhere.invalid".into())),
            "s@x",
        );
        assert!(out.starts_with("To: joe@elsewhere.invalid, root@host.mumail.test\n"), "{out}");
        // No header block at all, and a body that looks like a header.
        let out = clean(&r, "\nTo: a\n", Some(Context::Local), "s@x");
        assert!(out.ends_with("From: s@x\n\nTo: a\n"), "{out}");
    }
}
