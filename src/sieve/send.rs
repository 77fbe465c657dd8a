//! What a script sends: notifications (RFC 5435 enotify with mailto URIs,
//! RFC 5436; the older draft notify's message) and the delivery
//! parameters a redirect asks for (RFC 6009).

use super::{body_values, header_text, BodyTransform, Message};

/// RFC 6009: what `redirect` asks of the delivery status notices
/// (`:notify`, `:ret`, given when the MTA offers DSN) and of the time by
/// which it is delivered (`:bytimerelative` seconds or `:bytimeabsolute`,
/// `:bymode` return or notify, `:bytrace`; given when it offers DELIVERBY).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RedirectDsn {
    pub notify: Option<String>,
    pub ret: Option<String>,
    pub by: Option<ByTime>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ByTime {
    /// Seconds after the delivery (relative) or since the epoch.
    pub time: i64,
    pub absolute: bool,
    /// `:bymode "return"` (else notify).
    pub returns: bool,
    pub trace: bool,
}

impl RedirectDsn {
    /// The MAIL and RCPT parameters (RFC 3461, RFC 2852) for an MTA that
    /// offers DSN and/or DELIVERBY, `now` seconds since the epoch.
    pub fn params(&self, dsn: bool, deliverby: bool, now: i64) -> (String, String) {
        let (mut mail, mut rcpt) = (String::new(), String::new());
        if dsn {
            if let Some(r) = &self.ret {
                mail.push_str(&format!(" RET={}", r.to_ascii_uppercase()));
            }
            if let Some(n) = &self.notify {
                rcpt.push_str(&format!(" NOTIFY={}", n.to_ascii_uppercase().replace(' ', "")));
            }
        }
        if let (true, Some(b)) = (deliverby, self.by) {
            let secs = if b.absolute { b.time - now } else { b.time };
            // A time already past can only be notified of.
            let mode = if b.returns && secs > 0 { 'R' } else { 'N' };
            mail.push_str(&format!(" BY={secs};{mode}{}", if b.trace { "T" } else { "" }));
        }
        (mail, rcpt)
    }
}

/// A notification to send (RFC 5435), its strings expanded.
#[derive(Debug, Clone, PartialEq)]
pub struct Notify {
    pub method: String,
    pub from: Option<String>,
    /// 1 high, 2 normal, 3 low.
    pub importance: u8,
    pub options: Vec<String>,
    /// `:message`, else the message's From and Subject.
    pub message: String,
    /// The draft notify's `:id` (for `denotify`).
    pub id: Option<String>,
}

/// A `mailto:` URI (RFC 6068) as a notification method (RFC 5436).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mailto {
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    pub subject: Option<String>,
    pub body: Option<String>,
}

/// Parses a `mailto:` URI; None when it is not one we can send to (no
/// recipient, or one that is not an address).
pub fn mailto(uri: &str) -> Option<Mailto> {
    let scheme = uri.get(..7)?;
    if !scheme.eq_ignore_ascii_case("mailto:") {
        return None;
    }
    let rest = &uri[7..];
    let (to, query) = rest.split_once('?').unwrap_or((rest, ""));
    let addrs = |s: &str| -> Option<Vec<String>> {
        let mut out = Vec::new();
        for a in percent_decode(s)?.split(',') {
            let a = a.trim();
            if a.is_empty() {
                continue;
            }
            let (local, domain) = a.rsplit_once('@')?;
            if local.is_empty() || domain.is_empty() || a.chars().any(|c| c.is_whitespace() || c.is_control() || "<>\"".contains(c)) {
                return None;
            }
            out.push(a.to_string());
        }
        Some(out)
    };
    let mut m = Mailto {
        to: addrs(to)?,
        ..Default::default()
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode(name)?.to_ascii_lowercase();
        match name.as_str() {
            "to" => m.to.extend(addrs(value)?),
            "cc" => m.cc.extend(addrs(value)?),
            "bcc" => m.bcc.extend(addrs(value)?),
            "subject" => m.subject = Some(percent_decode(value)?),
            "body" => m.body = Some(percent_decode(value)?),
            _ => {}
        }
    }
    (!m.to.is_empty() || !m.cc.is_empty() || !m.bcc.is_empty()).then_some(m)
}

/// `%XX` escapes undone (UTF-8 after); None for a broken one.
fn percent_decode(s: &str) -> Option<String> {
    let (bytes, clean) = crate::util::codec::percent_decode(s.as_bytes());
    clean.then(|| String::from_utf8(bytes).ok()).flatten()
}

/// The draft notify's message: `$from$`, `$env-from$`, `$subject$` and
/// `$text$` (`$text[n]$`: its first n characters) of the message.
pub(super) fn draft_message(template: &str, fields: &[(String, Vec<u8>)], msg: &Message<'_>) -> String {
    let text = |n: &str| crate::mail::mime::field(fields, n).map(header_text).unwrap_or_default();
    let mut out = String::new();
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let Some(j) = after.find('$') else {
            out.push('$');
            rest = after;
            continue;
        };
        let name = after[..j].to_ascii_lowercase();
        let value = match name.as_str() {
            "from" => Some(text("from")),
            "env-from" => Some(msg.env_from.trim_start_matches('<').trim_end_matches('>').to_string()),
            "subject" => Some(text("subject")),
            n if n == "text" || n.starts_with("text[") && n.ends_with(']') => {
                let body = body_values(msg.raw, &BodyTransform::Content(vec!["text/plain".into()]))
                    .into_iter()
                    .next()
                    .unwrap_or_default();
                match n.strip_prefix("text[").and_then(|x| x.strip_suffix(']')) {
                    Some(k) => k.parse::<usize>().ok().map(|k| body.chars().take(k).collect()),
                    None => Some(body),
                }
            }
            _ => None,
        };
        match value {
            Some(v) => {
                out.push_str(&v);
                rest = &after[j + 1..];
            }
            None => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// RFC 5435 `:encodeurl`: what is not unreserved (RFC 3986) as `%XX`.
pub(super) fn encode_url(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
