//! Sieve mail filtering (RFC 5228) as Cyrus's lmtpd runs it at delivery:
//! a user's active script, kept as Cyrus keeps it (`sievedir`, the
//! `defaultbc` link naming `<name>.bc`, the source beside it as
//! `<name>.script`), decides where each message goes.  Sans-I/O: `parse`
//! checks a script, `run` answers what to do with one message; lmtpd
//! does it.
//!
//! Extensions: fileinto, reject, ereject, envelope, imap4flags, copy,
//! subaddress, relational, regex, vacation, vacation-seconds, body, mailbox
//! (`fileinto :create`, `mailboxexists`), date, index, variables, include,
//! editheader, duplicate, environment, ihave, encoded-character,
//! special-use, mailboxid, mboxmetadata, servermetadata, fcc, enotify
//! (mailto), the older draft notify, redirect-dsn, redirect-deliverby and
//! the three comparators.

mod parse;

pub use parse::{parse, parse_with, ParseError, EXTENSIONS};

#[derive(Debug)]
pub struct Script {
    pub cmds: Vec<Cmd>,
    pub requires: Vec<String>,
}

#[derive(Debug)]
pub enum Cmd {
    If {
        branches: Vec<(Test, Vec<Cmd>)>,
        otherwise: Option<Vec<Cmd>>,
    },
    Stop,
    /// RFC 5463 `error`: the run fails with this message.
    Error(String),
    /// RFC 5435 `notify`: a notification by `method` (a URI).
    Notify {
        from: Option<String>,
        importance: Option<String>,
        options: Vec<String>,
        message: Option<String>,
        method: String,
    },
    /// The older draft notify (draft-martin-sieve-notify-01, Cyrus's
    /// "notify"): `:method` (None: the server's), `:id`, `:options` (for
    /// mailto the addresses), priority 1 high, 2 normal, 3 low, and a
    /// message with `$from$`, `$env-from$`, `$subject$`, `$text[n]$`.
    DraftNotify {
        method: Option<String>,
        id: Option<String>,
        options: Vec<String>,
        priority: u8,
        message: Option<String>,
    },
    /// The draft's `denotify`: cancels the notifications so far whose
    /// `:id` matches (all without a key), of that priority if given.
    Denotify {
        m: Match,
        key: Option<String>,
        priority: Option<u8>,
    },
    /// RFC 5293 `addheader`: a field at the top (at the end: `:last`).
    AddHeader {
        last: bool,
        name: String,
        value: String,
    },
    /// RFC 5293 `deleteheader`: the fields of that name (those whose
    /// value matches one of `keys`; the `index`th only).
    DeleteHeader {
        index: Option<Index>,
        cmp: Cmp,
        m: Match,
        name: String,
        keys: Option<Vec<String>>,
    },
    Keep {
        flags: Option<Vec<String>>,
    },
    Discard,
    FileInto {
        mailbox: String,
        copy: bool,
        create: bool,
        flags: Option<Vec<String>>,
        /// RFC 8579 `:specialuse`: the user's mailbox with this use, if
        /// there is one, rather than `mailbox`.
        special_use: Option<String>,
        /// RFC 9042 `:mailboxid`: the mailbox with this id, if there is
        /// one, rather than `mailbox`.
        mailbox_id: Option<String>,
    },
    Redirect {
        addr: String,
        copy: bool,
        /// RFC 6009's `:notify`, `:ret`, `:bytime...`.
        dsn: RedirectDsn,
    },
    Reject {
        reason: String,
        ereject: bool,
    },
    Flags {
        op: FlagOp,
        flags: Vec<String>,
    },
    Vacation(Vacation),
    /// RFC 6609 `include`: another of the user's scripts (or a global
    /// one) runs here.
    Include {
        global: bool,
        once: bool,
        optional: bool,
        name: String,
    },
    /// RFC 6609 `return`: back to the including script (the main one:
    /// `stop`).
    Return,
    /// RFC 6609 `global`: these variables are shared with the scripts
    /// this one includes and is included by.
    Global(Vec<String>),
    /// RFC 5229 `set`: the name (lowercase), the value, the modifiers
    /// given (`lower`, `upperfirst`, `quotewildcard`, `length`, ...).
    Set {
        name: String,
        value: String,
        mods: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FlagOp {
    Set,
    Add,
    Remove,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Vacation {
    /// Seconds between two answers to one sender (`:days` × 86400 or
    /// `:seconds`); None: the server's default.
    pub period: Option<u64>,
    pub subject: Option<String>,
    pub from: Option<String>,
    pub handle: Option<String>,
    pub addresses: Vec<String>,
    pub mime: bool,
    pub reason: String,
    /// RFC 8580 `:fcc`: where a copy of the answer is kept.
    pub fcc: Option<Fcc>,
}

/// RFC 8580: a mailbox the sent answer is filed into, chosen as
/// `fileinto` chooses (`:mailboxid`, `:specialuse`, the name; `:create`).
#[derive(Debug, Clone, PartialEq)]
pub struct Fcc {
    pub mailbox: String,
    pub create: bool,
    pub flags: Vec<String>,
    pub special_use: Option<String>,
    pub mailbox_id: Option<String>,
}

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

/// RFC 5260 6 `:index n` (`:last`: counted from the end).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Index {
    pub n: usize,
    pub last: bool,
}

/// What `duplicate` (RFC 7352) tracks: the Message-ID, a header
/// field's value, or a string of the script's.
#[derive(Debug, Clone, PartialEq)]
pub enum DupId {
    MessageId,
    Header(String),
    Unique(String),
}

#[derive(Debug)]
pub enum Test {
    Address {
        index: Option<Index>,
        part: AddrPart,
        cmp: Cmp,
        m: Match,
        headers: Vec<String>,
        keys: Vec<String>,
    },
    Envelope {
        part: AddrPart,
        cmp: Cmp,
        m: Match,
        parts: Vec<String>,
        keys: Vec<String>,
    },
    Header {
        index: Option<Index>,
        cmp: Cmp,
        m: Match,
        headers: Vec<String>,
        keys: Vec<String>,
    },
    /// RFC 8579: the user has mailboxes with each of these uses (or
    /// `mailbox` has them all).
    SpecialUseExists {
        mailbox: Option<String>,
        uses: Vec<String>,
    },
    /// RFC 9042: mailboxes with each of these ids exist.
    MailboxIdExists(Vec<String>),
    /// RFC 5490 `metadata` (a mailbox's annotation) and `servermetadata`
    /// (mailbox None).
    Metadata {
        cmp: Cmp,
        m: Match,
        mailbox: Option<String>,
        entry: String,
        keys: Vec<String>,
    },
    /// RFC 5490 `metadataexists` and `servermetadataexists`.
    MetadataExists {
        mailbox: Option<String>,
        entries: Vec<String>,
    },
    /// RFC 5435 `valid_notify_method`: each URI is one we can notify by.
    ValidNotifyMethod(Vec<String>),
    /// RFC 5435 `notify_method_capability`: what a method can do
    /// (`online`: `maybe` for mailto).
    NotifyMethodCapability {
        cmp: Cmp,
        m: Match,
        uri: String,
        capability: String,
        keys: Vec<String>,
    },
    /// RFC 5463: whether we have these extensions (`have`: known when
    /// the script is parsed).
    Ihave {
        exts: Vec<String>,
        have: bool,
    },
    /// RFC 5183: an item of the environment (`host`, `location`, ...).
    Environment {
        cmp: Cmp,
        m: Match,
        name: String,
        keys: Vec<String>,
    },
    /// RFC 7352: whether this message's id was seen before (within
    /// `seconds`, this `handle`'s own list).
    Duplicate {
        handle: String,
        id: DupId,
        seconds: Option<u64>,
        last: bool,
    },
    HasFlag {
        cmp: Cmp,
        m: Match,
        keys: Vec<String>,
    },
    /// RFC 5173.
    Body {
        cmp: Cmp,
        m: Match,
        transform: BodyTransform,
        keys: Vec<String>,
    },
    /// RFC 5229 `string`: strings (variables expanded) against keys.
    Str {
        cmp: Cmp,
        m: Match,
        source: Vec<String>,
        keys: Vec<String>,
    },
    /// RFC 5260 `date` (a header's date) and `currentdate` (header None).
    Date {
        index: Option<Index>,
        zone: Zone,
        cmp: Cmp,
        m: Match,
        header: Option<String>,
        part: String,
        keys: Vec<String>,
    },
    Exists(Vec<String>),
    /// RFC 5490: each named mailbox exists and takes the user's mail.
    MailboxExists(Vec<String>),
    Size {
        over: bool,
        limit: u64,
    },
    AllOf(Vec<Test>),
    AnyOf(Vec<Test>),
    Not(Box<Test>),
    True,
    False,
}

/// The zone a date is seen in (RFC 5260 `:zone`, `:originalzone`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Zone {
    /// The server's.
    Local,
    /// The one the header was written in.
    Original,
    /// Minutes east of UTC.
    Fixed(i32),
}

/// The date parts RFC 5260 names.
pub const DATE_PARTS: &[&str] = &[
    "year", "month", "day", "date", "julian", "hour", "minute", "second", "time", "iso8601", "std11", "zone", "weekday",
];

#[derive(Debug, Clone, PartialEq)]
pub enum BodyTransform {
    /// The body as it is, after the header.
    Raw,
    /// The leaf parts of these types (`text`, `text/html`, `""` for all),
    /// decoded; `:text` is `Content(["text"])`.
    Content(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cmp {
    Octet,
    Casemap,
    Numeric,
}

#[derive(Debug)]
pub enum Match {
    Is,
    Contains,
    Matches,
    /// The keys compiled, in order.
    Regex(Vec<regex::Regex>),
    Value(Rel),
    Count(Rel),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rel {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AddrPart {
    All,
    Local,
    Domain,
    User,
    Detail,
}

/// The message a script looks at.
pub struct Message<'a> {
    /// Header fields, raw unfolded values (`mail::mime::fields`).
    pub fields: &'a [(String, Vec<u8>)],
    pub size: u64,
    /// The envelope sender (empty for `<>`) and the recipient as given.
    pub env_from: &'a str,
    pub env_to: &'a str,
    /// The whole message, for `body`.
    pub raw: &'a [u8],
    /// Whether the user may file into a mailbox (by its name in the
    /// script), for `mailboxexists`.
    pub may_file: &'a dyn Fn(&str) -> bool,
    /// The scripts `include` names: (global?, name) to the script, None
    /// when there is none, Err when it cannot be read or compiled.
    pub include: &'a dyn Fn(bool, &str) -> Option<Result<Script, String>>,
    /// RFC 5183's items (`domain`, `host`, `location`, `name`, `phase`,
    /// `version`, ...): None for one the server does not have.
    pub environment: &'a dyn Fn(&str) -> Option<String>,
    /// RFC 7352: whether (handle, id) is remembered and not expired.
    pub seen: &'a dyn Fn(&str, &str) -> bool,
    /// What the store answers about the user's mailboxes.
    pub lookup: &'a dyn Fn(Query<'_>) -> Option<String>,
}

/// A question about mailboxes (names as the script writes them).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Query<'q> {
    /// The user's mailbox with this special use (`\Junk`), by name.
    SpecialUse(&'q str),
    /// Whether this mailbox has this special use (Some when it has).
    HasSpecialUse(&'q str, &'q str),
    /// The mailbox with this MAILBOXID, by name.
    MailboxId(&'q str),
    /// An annotation (`/private/comment`, `/shared/...`) of a mailbox,
    /// or (None) of the server.
    Metadata(Option<&'q str>, &'q str),
}

/// Nothing known (`Message::lookup` for callers without a store).
pub fn no_lookup(_: Query<'_>) -> Option<String> {
    None
}

impl<'a> Message<'a> {
    /// A message with nothing around it: no mailboxes, includes,
    /// environment or memory (fields of the header of `raw`).
    pub fn plain(fields: &'a [(String, Vec<u8>)], raw: &'a [u8], env_from: &'a str, env_to: &'a str) -> Message<'a> {
        Message {
            fields,
            size: raw.len() as u64,
            env_from,
            env_to,
            raw,
            may_file: &|_| false,
            include: &no_includes,
            environment: &no_environment,
            seen: &never_seen,
            lookup: &no_lookup,
        }
    }
}

/// No environment (`Message::environment` for callers without one).
pub fn no_environment(_: &str) -> Option<String> {
    None
}

/// Nothing remembered (`Message::seen` for callers without a store).
pub fn never_seen(_: &str, _: &str) -> bool {
    false
}

/// A field name `addheader`/`deleteheader` may name (RFC 5322 ftext).
pub fn valid_field_name(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}

/// How deep includes may nest, and how many a run may make.
const MAX_INCLUDE_DEPTH: usize = 10;
const MAX_INCLUDES: usize = 64;

/// No scripts to include (`Message::include` for callers without any).
pub fn no_includes(_: bool, _: &str) -> Option<Result<Script, String>> {
    None
}

/// What a script decided, in order.  A `Keep` is the user's INBOX (or the
/// recipient's +detail folder), implicit or not.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Keep {
        flags: Vec<String>,
    },
    /// `special_use`: given to the mailbox if `create` makes it.
    FileInto {
        mailbox: String,
        flags: Vec<String>,
        create: bool,
        special_use: Option<String>,
    },
    Redirect {
        addr: String,
        dsn: RedirectDsn,
    },
    Reject {
        reason: String,
        ereject: bool,
    },
    Vacation(Vacation),
    Discard,
    Notify(Notify),
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
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The draft notify's message: `$from$`, `$env-from$`, `$subject$` and
/// `$text$` (`$text[n]$`: its first n characters) of the message.
fn draft_message(template: &str, fields: &[(String, Vec<u8>)], msg: &Message<'_>) -> String {
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
fn encode_url(v: &str) -> String {
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

/// What a run decided, and what it leaves to do once the message is
/// delivered.
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    pub actions: Vec<Action>,
    /// `duplicate` tests' ids, to remember once the delivery is done.
    pub tracks: Vec<Track>,
    /// The header `addheader`/`deleteheader` left (the fields and the
    /// empty line), when they changed it: the copies delivered carry it.
    pub header: Option<Vec<u8>>,
}

/// One id `duplicate` saw (RFC 7352 3): remembered for `seconds` (None:
/// the server's default) from this message if it is new, or (`last`)
/// whenever it is seen.
#[derive(Debug, Clone, PartialEq)]
pub struct Track {
    pub handle: String,
    pub id: String,
    pub seconds: Option<u64>,
    pub last: bool,
    pub seen: bool,
}

/// Runs a script on a message: the actions, implicit keep included; an
/// error for actions that cannot go together (RFC 5429: reject with a
/// delivery).
pub fn run(script: &Script, msg: &Message<'_>) -> Result<Vec<Action>, String> {
    run_at(script, msg, crate::util::unix_now() as i64)
}

/// `run` with `now` (seconds since the epoch) for `currentdate`.
pub fn run_at(script: &Script, msg: &Message<'_>, now: i64) -> Result<Vec<Action>, String> {
    execute(script, msg, now).map(|o| o.actions)
}

/// `run_at` with all it decided.
pub fn execute(script: &Script, msg: &Message<'_>, now: i64) -> Result<Outcome, String> {
    let mut st = State {
        actions: Vec::new(),
        implicit_keep: true,
        flags: Vec::new(),
        stopped: false,
        now,
        vars: Some(Vars::default()),
        expanding: script.requires.iter().any(|r| r == "variables"),
        included: Vec::new(),
        stack: Vec::new(),
        returned: false,
        error: None,
        edited: None,
        tracks: Vec::new(),
    };
    st.block(&script.cmds, msg);
    if let Some(e) = st.error {
        return Err(e);
    }
    if st.implicit_keep {
        let flags = st.flags.clone();
        st.actions.push(Action::Keep { flags });
    }
    let rejects = st.actions.iter().any(|a| matches!(a, Action::Reject { .. }));
    if rejects
        && st.actions.iter().any(|a| {
            matches!(
                a,
                Action::Keep { .. } | Action::FileInto { .. } | Action::Redirect { .. } | Action::Vacation(_)
            )
        })
    {
        return Err("Reject can not be used with any other action".into());
    }
    let header = st.edited.map(|e| {
        let mut h: Vec<u8> = e.raw.concat();
        h.extend_from_slice(b"\r\n");
        h
    });
    Ok(Outcome {
        actions: st.actions,
        tracks: st.tracks,
        header,
    })
}

/// The header as `editheader` changed it: each field parsed (a name of
/// "" for a line that is not a field) and as it is written.
struct Edited {
    fields: Vec<(String, Vec<u8>)>,
    raw: Vec<Vec<u8>>,
}

impl Edited {
    fn of(raw_msg: &[u8]) -> Edited {
        let (end, _) = crate::mail::mime::header_end(raw_msg);
        let mut head = &raw_msg[..end];
        // Without the empty line that ends it.
        head = head.strip_suffix(b"\r\n").or_else(|| head.strip_suffix(b"\n")).unwrap_or(head);
        let mut raw: Vec<Vec<u8>> = Vec::new();
        for line in head.split_inclusive(|&c| c == b'\n') {
            match raw.last_mut() {
                Some(last) if matches!(line.first(), Some(b' ' | b'\t')) => last.extend_from_slice(line),
                _ => raw.push(line.to_vec()),
            }
        }
        for r in &mut raw {
            if !r.ends_with(b"\n") {
                r.extend_from_slice(b"\r\n");
            }
        }
        let fields = raw.iter().map(|r| crate::mail::mime::fields(r).pop().unwrap_or_default()).collect();
        Edited { fields, raw }
    }

    fn add(&mut self, last: bool, name: &str, value: &str) {
        let v = encode_header_value(value);
        let raw = format!("{name}: {v}\r\n").into_bytes();
        let parsed = crate::mail::mime::fields(&raw).pop().unwrap_or_default();
        if last {
            self.fields.push(parsed);
            self.raw.push(raw);
        } else {
            self.fields.insert(0, parsed);
            self.raw.insert(0, raw);
        }
    }
}

/// An `addheader` value as a field's: unfolded, and in RFC 2047 encoded
/// words when it is not ASCII.
fn encode_header_value(v: &str) -> String {
    let v: String = v.chars().map(|c| if c == '\r' || c == '\n' { ' ' } else { c }).collect();
    if v.is_ascii() {
        return v;
    }
    let mut words = Vec::new();
    let mut cur = String::new();
    for c in v.chars() {
        let mut e = String::new();
        if c.is_ascii_alphanumeric() || "!*+-/".contains(c) {
            e.push(c);
        } else if c == ' ' {
            e.push('_');
        } else {
            let mut b = [0u8; 4];
            for x in c.encode_utf8(&mut b).bytes() {
                e.push_str(&format!("={x:02X}"));
            }
        }
        if cur.len() + e.len() > 63 {
            words.push(std::mem::take(&mut cur));
        }
        cur.push_str(&e);
    }
    words.push(cur);
    words.iter().map(|w| format!("=?UTF-8?Q?{w}?=")).collect::<Vec<_>>().join("\r\n ")
}

struct State {
    actions: Vec<Action>,
    implicit_keep: bool,
    /// imap4flags' internal variable.
    flags: Vec<String>,
    stopped: bool,
    now: i64,
    /// RFC 5229's variables.
    vars: Option<Vars>,
    /// Whether the running script requires them (else `${...}` is text).
    expanding: bool,
    /// Scripts included so far (for `:once` and the bound), and the
    /// includes being run (for loops).
    included: Vec<(bool, String)>,
    stack: Vec<(bool, String)>,
    /// `return` in an included script.
    returned: bool,
    /// A runtime error (a missing include): the run stops.
    error: Option<String>,
    /// The header once `addheader`/`deleteheader` changed it.
    edited: Option<Edited>,
    tracks: Vec<Track>,
}

/// The named variables and the match variables (`${0}`, `${1}`, ...).
#[derive(Default)]
struct Vars {
    named: std::collections::HashMap<String, String>,
    matched: Vec<String>,
    /// RFC 6609: the variables shared between scripts, and which names
    /// the running script declared `global`.
    globals: std::collections::HashMap<String, String>,
    declared: std::collections::HashSet<String>,
}

impl Vars {
    fn get(&self, name: &str) -> Option<&String> {
        if self.declared.contains(name) {
            self.globals.get(name)
        } else {
            self.named.get(name)
        }
    }

    fn set(&mut self, name: &str, v: String) {
        if self.declared.contains(name) {
            self.globals.insert(name.to_string(), v);
        } else {
            self.named.insert(name.to_string(), v);
        }
    }
}

/// The longest value a variable keeps (RFC 5229 6 lets servers limit it).
const MAX_VARIABLE: usize = 65536;

/// `s` with its variable references replaced (`${name}`, `${N}`; one
/// that names nothing set is empty); anything else is left as it is.
fn expand(s: &str, v: &Vars) -> String {
    if !s.contains("${") {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let name = after.find('}').map(|j| &after[..j]).filter(|n| {
            let digits = !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit());
            digits || is_identifier(n)
        });
        match name {
            Some(n) => {
                let value = if n.bytes().all(|b| b.is_ascii_digit()) {
                    n.parse::<usize>().ok().and_then(|i| v.matched.get(i))
                } else {
                    v.get(&n.to_ascii_lowercase())
                };
                out.push_str(value.map_or("", String::as_str));
                rest = &after[n.len() + 1..];
            }
            None => {
                out.push_str("${");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// A variable name (RFC 5229 `identifier`).
pub(crate) fn is_identifier(n: &str) -> bool {
    n.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A `set` value through its modifiers, in RFC 5229's order of
/// precedence (as the parser lists them).
fn modify(mut v: String, mods: &[String]) -> String {
    for m in mods {
        v = match m.as_str() {
            "lower" => v.to_lowercase(),
            "upper" => v.to_uppercase(),
            "lowerfirst" | "upperfirst" => {
                let mut c = v.chars();
                match c.next() {
                    Some(f) if m == "lowerfirst" => f.to_lowercase().chain(c).collect(),
                    Some(f) => f.to_uppercase().chain(c).collect(),
                    None => v,
                }
            }
            "quotewildcard" => v
                .chars()
                .flat_map(|c| {
                    let q = matches!(c, '*' | '?' | '\\');
                    q.then_some('\\').into_iter().chain(std::iter::once(c))
                })
                .collect(),
            "length" => v.chars().count().to_string(),
            "encodeurl" => encode_url(&v),
            _ => v,
        };
    }
    v
}

/// `:matches` with the match variables: what each `*` and `?` of the
/// pattern took (the leftmost as little as possible), after the whole
/// value.  None when it does not match.  Bounded: a pattern and value
/// too large for the search give the whole value only.
fn glob_captures(fold: bool, p: &str, s: &str) -> Option<Vec<String>> {
    let pc: Vec<char> = p.chars().collect();
    let sc: Vec<char> = s.chars().collect();
    let f = |c: char| if fold { c.to_ascii_lowercase() } else { c };
    if pc.len() > 1024 || pc.len().saturating_mul(sc.len()) > 1 << 22 {
        let (pf, sf): (Vec<char>, Vec<char>) = (pc.iter().map(|&c| f(c)).collect(), sc.iter().map(|&c| f(c)).collect());
        return glob(&pf, &sf).then(|| vec![s.to_string()]);
    }
    struct G<'a> {
        p: &'a [char],
        s: &'a [char],
        fold: bool,
        caps: Vec<String>,
        dead: std::collections::HashSet<(usize, usize)>,
    }
    impl G<'_> {
        fn eq(&self, a: char, b: char) -> bool {
            if self.fold {
                a.eq_ignore_ascii_case(&b)
            } else {
                a == b
            }
        }
        fn go(&mut self, pi: usize, si: usize) -> bool {
            if pi == self.p.len() {
                return si == self.s.len();
            }
            if self.dead.contains(&(pi, si)) {
                return false;
            }
            let ok = match self.p[pi] {
                '*' => {
                    let mut found = false;
                    for end in si..=self.s.len() {
                        self.caps.push(self.s[si..end].iter().collect());
                        if self.go(pi + 1, end) {
                            found = true;
                            break;
                        }
                        self.caps.pop();
                    }
                    found
                }
                '?' if si < self.s.len() => {
                    self.caps.push(self.s[si].to_string());
                    let r = self.go(pi + 1, si + 1);
                    if !r {
                        self.caps.pop();
                    }
                    r
                }
                '\\' if pi + 1 < self.p.len() => si < self.s.len() && self.eq(self.p[pi + 1], self.s[si]) && self.go(pi + 2, si + 1),
                c => c != '?' && si < self.s.len() && self.eq(c, self.s[si]) && self.go(pi + 1, si + 1),
            };
            if !ok {
                self.dead.insert((pi, si));
            }
            ok
        }
    }
    let mut g = G {
        p: &pc,
        s: &sc,
        fold,
        caps: vec![s.to_string()],
        dead: Default::default(),
    };
    g.go(0, 0).then_some(g.caps)
}

/// Flag strings as a list: each string may hold several, space-separated;
/// each kept once, case-insensitively.
fn flag_list(l: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for f in l.iter().flat_map(|s| s.split_whitespace()) {
        if !out.iter().any(|o| o.eq_ignore_ascii_case(f)) {
            out.push(f.to_string());
        }
    }
    out
}

impl State {
    fn block(&mut self, cmds: &[Cmd], msg: &Message<'_>) {
        for c in cmds {
            if self.stopped || self.returned {
                return;
            }
            match c {
                Cmd::If { branches, otherwise } => match branches.iter().find(|(t, _)| self.test(t, msg)) {
                    Some((_, b)) => self.block(b, msg),
                    None => {
                        if let Some(b) = otherwise {
                            self.block(b, msg);
                        }
                    }
                },
                Cmd::Stop => self.stopped = true,
                Cmd::Error(m) => {
                    self.error = Some(format!("error: {}", self.x(m)));
                    self.stopped = true;
                }
                Cmd::Notify {
                    from,
                    importance,
                    options,
                    message,
                    method,
                } => {
                    let message = match message {
                        Some(m) => self.x(m),
                        // The sender and the subject (Cyrus's default).
                        None => {
                            let f = self.fields(msg);
                            let text = |n: &str| crate::mail::mime::field(f, n).map(header_text).unwrap_or_default();
                            format!("{}: {}", text("from"), text("subject"))
                        }
                    };
                    let n = Notify {
                        method: self.x(method),
                        from: from.as_ref().map(|f| self.x(f)),
                        importance: importance.as_ref().and_then(|i| self.x(i).parse().ok()).unwrap_or(2),
                        options: self.xs(options),
                        message,
                        id: None,
                    };
                    // The same notification twice is sent once (RFC 5435 3.9).
                    if !self.actions.iter().any(|a| matches!(a, Action::Notify(o) if *o == n)) {
                        self.actions.push(Action::Notify(n));
                    }
                }
                Cmd::DraftNotify {
                    method,
                    id,
                    options,
                    priority,
                    message,
                } => {
                    let template = message.as_deref().unwrap_or("$from$: $subject$");
                    let n = Notify {
                        // mailto's options are its addresses; no method:
                        // the server's (`sievenotifier`), given as "".
                        method: match method {
                            Some(m) if m.eq_ignore_ascii_case("mailto") => format!("mailto:{}", options.join(",")),
                            Some(m) => m.clone(),
                            None => String::new(),
                        },
                        from: None,
                        importance: *priority,
                        options: options.clone(),
                        message: draft_message(template, self.fields(msg), msg),
                        id: id.clone(),
                    };
                    if !self.actions.iter().any(|a| matches!(a, Action::Notify(o) if *o == n)) {
                        self.actions.push(Action::Notify(n));
                    }
                }
                Cmd::Denotify { m, key, priority } => self.actions.retain(|a| {
                    let Action::Notify(n) = a else { return true };
                    let id_matches = match key {
                        None => true,
                        Some(k) => {
                            n.id.as_ref()
                                .is_some_and(|id| matches(Cmp::Casemap, m, std::slice::from_ref(id), std::slice::from_ref(k)))
                        }
                    };
                    !(id_matches && priority.is_none_or(|p| p == n.importance))
                }),
                Cmd::AddHeader { last, name, value } => {
                    let (name, value) = (self.x(name), self.x(value));
                    if valid_field_name(&name) {
                        self.edited.get_or_insert_with(|| Edited::of(msg.raw)).add(*last, &name, &value);
                    }
                }
                Cmd::DeleteHeader { index, cmp, m, name, keys } => {
                    let name = self.x(name);
                    if protected_field(&name) {
                        continue;
                    }
                    let keys = keys.as_ref().map(|k| self.xs(k));
                    let e = self.edited.get_or_insert_with(|| Edited::of(msg.raw));
                    let named: Vec<usize> = (0..e.fields.len()).filter(|&i| e.fields[i].0.eq_ignore_ascii_case(&name)).collect();
                    let mut gone: Vec<usize> = pick(named, *index)
                        .into_iter()
                        .filter(|&i| keys.as_ref().is_none_or(|k| matches(*cmp, m, &[header_text(&e.fields[i].1)], k)))
                        .collect();
                    gone.sort_unstable();
                    for i in gone.into_iter().rev() {
                        e.fields.remove(i);
                        e.raw.remove(i);
                    }
                }
                Cmd::Return if self.stack.is_empty() => self.stopped = true,
                Cmd::Return => self.returned = true,
                Cmd::Global(names) => {
                    if let Some(v) = &mut self.vars {
                        v.declared.extend(names.iter().cloned());
                    }
                }
                Cmd::Include {
                    global,
                    once,
                    optional,
                    name,
                } => self.include(*global, *once, *optional, name, msg),
                Cmd::Keep { flags } => {
                    self.implicit_keep = false;
                    let flags = flags.as_ref().map_or_else(|| self.flags.clone(), |f| flag_list(&self.xs(f)));
                    self.push(Action::Keep { flags });
                }
                Cmd::Discard => {
                    self.implicit_keep = false;
                    self.push(Action::Discard);
                }
                Cmd::FileInto {
                    mailbox,
                    copy,
                    create,
                    flags,
                    special_use,
                    mailbox_id,
                } => {
                    if !copy {
                        self.implicit_keep = false;
                    }
                    let flags = flags.as_ref().map_or_else(|| self.flags.clone(), |f| flag_list(&self.xs(f)));
                    let special_use = special_use.as_ref().map(|u| self.x(u));
                    // The mailbox with that id, else the one with that
                    // use, else the one named.
                    let mailbox = mailbox_id
                        .as_ref()
                        .and_then(|id| (msg.lookup)(Query::MailboxId(&self.x(id))))
                        .or_else(|| special_use.as_ref().and_then(|u| (msg.lookup)(Query::SpecialUse(u))))
                        .unwrap_or_else(|| self.x(mailbox));
                    self.push(Action::FileInto {
                        mailbox,
                        flags,
                        create: *create,
                        special_use,
                    });
                }
                Cmd::Redirect { addr, copy, dsn } => {
                    if !copy {
                        self.implicit_keep = false;
                    }
                    self.push(Action::Redirect {
                        addr: self.x(addr),
                        dsn: dsn.clone(),
                    });
                }
                Cmd::Reject { reason, ereject } => {
                    self.implicit_keep = false;
                    self.push(Action::Reject {
                        reason: self.x(reason),
                        ereject: *ereject,
                    });
                }
                Cmd::Flags { op, flags } => {
                    let l = flag_list(&self.xs(flags));
                    match op {
                        FlagOp::Set => self.flags = l,
                        FlagOp::Add => {
                            for f in l {
                                if !self.flags.iter().any(|o| o.eq_ignore_ascii_case(&f)) {
                                    self.flags.push(f);
                                }
                            }
                        }
                        FlagOp::Remove => self.flags.retain(|o| !l.iter().any(|f| f.eq_ignore_ascii_case(o))),
                    }
                }
                Cmd::Vacation(v) => {
                    if !self.actions.iter().any(|a| matches!(a, Action::Vacation(_))) {
                        let mut v = v.clone();
                        if self.expanding {
                            v.subject = v.subject.map(|x| self.x(&x));
                            v.from = v.from.map(|x| self.x(&x));
                            v.handle = v.handle.map(|x| self.x(&x));
                            v.reason = self.x(&v.reason);
                            v.addresses = self.xs(&v.addresses);
                        }
                        // The fcc mailbox as fileinto picks it.
                        if let Some(f) = &mut v.fcc {
                            let special_use = f.special_use.as_ref().map(|u| self.x(u));
                            f.mailbox = f
                                .mailbox_id
                                .as_ref()
                                .and_then(|id| (msg.lookup)(Query::MailboxId(&self.x(id))))
                                .or_else(|| special_use.as_ref().and_then(|u| (msg.lookup)(Query::SpecialUse(u))))
                                .unwrap_or_else(|| self.x(&f.mailbox));
                            f.flags = flag_list(&self.xs(&f.flags));
                            f.special_use = special_use;
                        }
                        self.actions.push(Action::Vacation(v));
                    }
                }
                Cmd::Set { name, value, mods } => {
                    let mut v = modify(self.x(value), mods);
                    if v.len() > MAX_VARIABLE {
                        let mut end = MAX_VARIABLE;
                        while !v.is_char_boundary(end) {
                            end -= 1;
                        }
                        v.truncate(end);
                    }
                    if let Some(vars) = &mut self.vars {
                        vars.set(name, v);
                    }
                }
            }
        }
    }

    /// Adds an action; the same delivery twice is done once (its later
    /// flags win, as the last one is what the user asked for last).
    fn push(&mut self, a: Action) {
        let same = |x: &Action| match (x, &a) {
            (Action::Keep { .. }, Action::Keep { .. }) | (Action::Discard, Action::Discard) => true,
            (Action::FileInto { mailbox: m1, .. }, Action::FileInto { mailbox: m2, .. }) => m1 == m2,
            (Action::Redirect { addr: a1, .. }, Action::Redirect { addr: a2, .. }) => a1.eq_ignore_ascii_case(a2),
            _ => false,
        };
        match self.actions.iter().position(same) {
            Some(i) => self.actions[i] = a,
            None => self.actions.push(a),
        }
    }

    /// Runs an included script where `include` stands (RFC 6609): its
    /// own local variables, the globals shared; a missing one is an
    /// error unless `:optional`, a loop or too many always.
    fn include(&mut self, global: bool, once: bool, optional: bool, name: &str, msg: &Message<'_>) {
        let key = (global, name.to_string());
        if once && self.included.contains(&key) {
            return;
        }
        if self.stack.contains(&key) || self.stack.len() >= MAX_INCLUDE_DEPTH || self.included.len() >= MAX_INCLUDES {
            self.error = Some(format!("include {name}: loop or too many includes"));
            self.stopped = true;
            return;
        }
        let script = match (msg.include)(global, name) {
            Some(Ok(s)) => s,
            None if optional => return,
            None => {
                self.error = Some(format!("include {name}: no such script"));
                self.stopped = true;
                return;
            }
            Some(Err(e)) => {
                self.error = Some(format!("include {name}: {e}"));
                self.stopped = true;
                return;
            }
        };
        self.included.push(key.clone());
        self.stack.push(key);
        // Its variables are its own (the globals excepted), and so are
        // its match variables.
        let outer_expanding = std::mem::replace(&mut self.expanding, script.requires.iter().any(|r| r == "variables"));
        let saved = self.vars.as_mut().map(|v| {
            (
                std::mem::take(&mut v.named),
                std::mem::take(&mut v.matched),
                std::mem::take(&mut v.declared),
            )
        });
        self.block(&script.cmds, msg);
        self.returned = false;
        self.stack.pop();
        self.expanding = outer_expanding;
        if let (Some((named, matched, declared)), Some(v)) = (saved, &mut self.vars) {
            v.named = named;
            v.matched = matched;
            v.declared = declared;
        }
    }

    /// The message's header fields, as `editheader` left them.
    fn fields<'m>(&'m self, msg: &'m Message<'_>) -> &'m [(String, Vec<u8>)] {
        self.edited.as_ref().map_or(msg.fields, |e| &e.fields)
    }

    /// The values of the fields with these names (each name's
    /// `index`th only), in the order named.
    fn named<'m>(&'m self, msg: &'m Message<'_>, names: &'m [String], index: Option<Index>) -> impl Iterator<Item = &'m [u8]> + 'm {
        let fields = self.fields(msg);
        names.iter().flat_map(move |h| {
            let all: Vec<&'m [u8]> = fields
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(h))
                .map(|(_, v)| v.as_slice())
                .collect();
            pick(all, index)
        })
    }

    /// A string with the script's variables expanded (as it is without
    /// the variables extension).
    fn x(&self, s: &str) -> String {
        match &self.vars {
            Some(v) if self.expanding => expand(s, v),
            _ => s.to_string(),
        }
    }

    fn xs(&self, l: &[String]) -> Vec<String> {
        l.iter().map(|s| self.x(s)).collect()
    }

    /// A match of values against keys (variables expanded); a
    /// successful `:matches` or `:regex` sets the match variables.
    fn check(&mut self, cmp: Cmp, m: &Match, values: &[String], keys: &[String]) -> bool {
        if !self.expanding {
            return matches(cmp, m, values, keys);
        }
        let keys = self.xs(keys);
        let caps = match m {
            Match::Matches => values
                .iter()
                .find_map(|v| keys.iter().find_map(|k| glob_captures(cmp == Cmp::Casemap, k, v))),
            Match::Regex(res) => values.iter().find_map(|v| {
                res.iter().find_map(|r| {
                    r.captures(v)
                        .map(|c| c.iter().map(|g| g.map_or("", |g| g.as_str()).to_string()).collect())
                })
            }),
            _ => return matches(cmp, m, values, &keys),
        };
        match (caps, &mut self.vars) {
            (Some(c), Some(vars)) => {
                vars.matched = c;
                true
            }
            _ => false,
        }
    }

    fn test(&mut self, t: &Test, msg: &Message<'_>) -> bool {
        match t {
            Test::True => true,
            Test::False => false,
            Test::Not(t) => !self.test(t, msg),
            Test::AllOf(l) => l.iter().all(|t| self.test(t, msg)),
            Test::AnyOf(l) => l.iter().any(|t| self.test(t, msg)),
            Test::Ihave { have, .. } => *have,
            Test::ValidNotifyMethod(uris) => self.xs(uris).iter().all(|u| mailto(u).is_some()),
            Test::NotifyMethodCapability {
                cmp,
                m,
                uri,
                capability,
                keys,
            } => {
                if mailto(&self.x(uri)).is_none() || !self.x(capability).eq_ignore_ascii_case("online") {
                    return false;
                }
                self.check(*cmp, m, &["maybe".to_string()], keys)
            }
            Test::SpecialUseExists { mailbox, uses } => {
                let mailbox = mailbox.as_ref().map(|m| self.x(m));
                self.xs(uses).iter().all(|u| match &mailbox {
                    Some(m) => (msg.lookup)(Query::HasSpecialUse(m, u)).is_some(),
                    None => (msg.lookup)(Query::SpecialUse(u)).is_some(),
                })
            }
            Test::MailboxIdExists(ids) => self.xs(ids).iter().all(|id| (msg.lookup)(Query::MailboxId(id)).is_some()),
            Test::Metadata {
                cmp,
                m,
                mailbox,
                entry,
                keys,
            } => {
                let mailbox = mailbox.as_ref().map(|b| self.x(b));
                match (msg.lookup)(Query::Metadata(mailbox.as_deref(), &self.x(entry))) {
                    Some(v) => self.check(*cmp, m, &[v], keys),
                    None => false,
                }
            }
            Test::MetadataExists { mailbox, entries } => {
                let mailbox = mailbox.as_ref().map(|b| self.x(b));
                self.xs(entries)
                    .iter()
                    .all(|e| (msg.lookup)(Query::Metadata(mailbox.as_deref(), e)).is_some())
            }
            Test::Environment { cmp, m, name, keys } => match (msg.environment)(name) {
                Some(v) => self.check(*cmp, m, &[v], keys),
                None => false,
            },
            Test::Duplicate { handle, id, seconds, last } => {
                // Absent, the test is false and nothing is tracked.
                let value = match id {
                    DupId::MessageId => crate::mail::mime::field(self.fields(msg), "message-id").map(header_text),
                    DupId::Header(h) => crate::mail::mime::field(self.fields(msg), &self.x(h)).map(header_text),
                    DupId::Unique(u) => Some(self.x(u)),
                };
                let Some(value) = value.filter(|v| !v.is_empty()) else {
                    return false;
                };
                let handle = self.x(handle);
                // Only earlier runs count, not this one (RFC 7352 3).
                let seen = (msg.seen)(&handle, &value);
                self.tracks.push(Track {
                    handle,
                    id: value,
                    seconds: *seconds,
                    last: *last,
                    seen,
                });
                seen
            }
            Test::Date {
                index,
                zone,
                cmp,
                m,
                header,
                part,
                keys,
            } => {
                // The header's date (after a Received field's last `;`),
                // or now; a missing or unreadable one fails the test.
                let (t, orig) = match header {
                    None => (self.now, None),
                    Some(h) => {
                        let named: Vec<&(String, Vec<u8>)> = self.fields(msg).iter().filter(|(n, _)| n.eq_ignore_ascii_case(h)).collect();
                        let Some(v) = pick(named, Some(index.unwrap_or(Index { n: 1, last: false }))).pop() else {
                            return false;
                        };
                        let text = header_text(&v.1);
                        let text = text.rsplit(';').next().unwrap_or("").to_string();
                        match crate::daemon::imapd::sort::parse_date_zone(&text) {
                            Some((t, off)) => (t, Some(off as i32)),
                            None => return false,
                        }
                    }
                };
                let off = match zone {
                    Zone::Fixed(z) => *z,
                    Zone::Original => orig.unwrap_or_else(|| crate::util::codec::local_offset_min(t)),
                    Zone::Local => crate::util::codec::local_offset_min(t),
                };
                match date_part(t, off, part) {
                    Some(v) => self.check(*cmp, m, &[v], keys),
                    None => false,
                }
            }
            Test::Str { cmp, m, source, keys } => {
                let mut values = self.xs(source);
                // RFC 5229 5: an empty string counts 0.
                if matches!(m, Match::Count(_)) {
                    values.retain(|v| !v.is_empty());
                }
                self.check(*cmp, m, &values, keys)
            }
            Test::Exists(hs) => hs.iter().all(|h| self.fields(msg).iter().any(|(n, _)| n.eq_ignore_ascii_case(h))),
            Test::MailboxExists(names) => names.iter().all(|n| (msg.may_file)(n)),
            Test::Size { over, limit } => {
                if *over {
                    msg.size > *limit
                } else {
                    msg.size < *limit
                }
            }
            Test::Header {
                index,
                cmp,
                m,
                headers,
                keys,
            } => {
                let values: Vec<String> = self.named(msg, headers, *index).map(header_text).collect();
                self.check(*cmp, m, &values, keys)
            }
            Test::Address {
                index,
                part,
                cmp,
                m,
                headers,
                keys,
            } => {
                let mut values = Vec::new();
                for v in self.named(msg, headers, *index) {
                    for a in crate::mail::mime::parse_addresses(v) {
                        let (Some(mb), Some(host)) = (a.mailbox, a.host) else { continue };
                        let local = String::from_utf8_lossy(&mb).into_owned();
                        let domain = String::from_utf8_lossy(&host).into_owned();
                        if let Some(p) = addr_part(*part, &local, &domain) {
                            values.push(p);
                        }
                    }
                }
                self.check(*cmp, m, &values, keys)
            }
            Test::Envelope { part, cmp, m, parts, keys } => {
                let mut values = Vec::new();
                for p in parts {
                    let a = if p.eq_ignore_ascii_case("from") { msg.env_from } else { msg.env_to };
                    let a = a.trim_start_matches('<').trim_end_matches('>');
                    if a.is_empty() {
                        // The null sender: only its whole address, "".
                        if *part == AddrPart::All {
                            values.push(String::new());
                        }
                        continue;
                    }
                    let (local, domain) = a.rsplit_once('@').unwrap_or((a, ""));
                    if let Some(v) = addr_part(*part, local, domain) {
                        values.push(v);
                    }
                }
                self.check(*cmp, m, &values, keys)
            }
            Test::HasFlag { cmp, m, keys } => {
                let flags = self.flags.clone();
                self.check(*cmp, m, &flags, keys)
            }
            Test::Body { cmp, m, transform, keys } => self.check(*cmp, m, &body_values(msg.raw, transform), keys),
        }
    }
}

/// The `index`th of `v` (counted from the end with `:last`), or all.
fn pick<T>(mut v: Vec<T>, index: Option<Index>) -> Vec<T> {
    let Some(Index { n, last }) = index else { return v };
    let i = if last { v.len().checked_sub(n) } else { n.checked_sub(1) };
    match i {
        Some(i) if i < v.len() => vec![v.swap_remove(i)],
        _ => Vec::new(),
    }
}

/// Fields `deleteheader` leaves alone (RFC 5293 9: the trace of how the
/// message came); they may be added.
pub(crate) fn protected_field(name: &str) -> bool {
    name.eq_ignore_ascii_case("received") || name.eq_ignore_ascii_case("auto-submitted")
}

/// A date part (RFC 5260 4.2) of UTC time `t` seen in zone `off`
/// (minutes east).
pub fn date_part(t: i64, off: i32, part: &str) -> Option<String> {
    let local = t + off as i64 * 60;
    let (y, mo, d, h, mi, s, wd) = crate::util::codec::civil(local);
    let zone = format!("{}{:02}{:02}", if off < 0 { '-' } else { '+' }, off.abs() / 60, off.abs() % 60);
    Some(match part {
        "year" => format!("{y:04}"),
        "month" => format!("{mo:02}"),
        "day" => format!("{d:02}"),
        "date" => format!("{y:04}-{mo:02}-{d:02}"),
        // Modified Julian Day: 1970-01-01 is day 40587.
        "julian" => (local.div_euclid(86400) + 40587).to_string(),
        "hour" => format!("{h:02}"),
        "minute" => format!("{mi:02}"),
        "second" => format!("{s:02}"),
        "time" => format!("{h:02}:{mi:02}:{s:02}"),
        "iso8601" => format!(
            "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{}{:02}:{:02}",
            if off < 0 { '-' } else { '+' },
            off.abs() / 60,
            off.abs() % 60
        ),
        "std11" => crate::util::codec::rfc822_date(t, off),
        "zone" => zone,
        "weekday" => wd.to_string(),
        _ => return None,
    })
}

/// A header field's value as a script sees it: encoded words decoded,
/// surrounding blanks gone.
fn header_text(v: &[u8]) -> String {
    let d = crate::mail::mime::decode_words(v);
    String::from_utf8_lossy(&d).trim().to_string()
}

/// What `body` compares: the raw body, or each leaf part of the asked
/// types with its transfer encoding undone (Latin-1 read as such).
fn body_values(raw: &[u8], t: &BodyTransform) -> Vec<String> {
    use crate::mail::mime;
    let types = match t {
        BodyTransform::Raw => {
            let (_, start) = mime::header_end(raw);
            return vec![String::from_utf8_lossy(&raw[start.min(raw.len())..]).into_owned()];
        }
        BodyTransform::Content(types) => types,
    };
    let root = mime::parse(raw);
    let mut out = Vec::new();
    let mut stack = vec![&root];
    while let Some(part) = stack.pop() {
        for c in part.children.iter().rev() {
            stack.push(c);
        }
        if let Some(m) = &part.message {
            stack.push(m);
        }
        if !part.children.is_empty() || part.message.is_some() {
            continue;
        }
        let (ty, sub) = part.effective_type();
        let wanted = types.iter().any(|t| match t.split_once('/') {
            _ if t.is_empty() => true,
            Some((a, b)) => a.eq_ignore_ascii_case(ty) && b.eq_ignore_ascii_case(sub),
            None => t.eq_ignore_ascii_case(ty),
        });
        if !wanted {
            continue;
        }
        let text = crate::proto::imap::render::decode_text(raw, part).unwrap_or_else(|| part.body(raw).to_vec());
        out.push(String::from_utf8_lossy(&text).into_owned());
    }
    out
}

fn addr_part(part: AddrPart, local: &str, domain: &str) -> Option<String> {
    Some(match part {
        AddrPart::All if domain.is_empty() => local.to_string(),
        AddrPart::All => format!("{local}@{domain}"),
        AddrPart::Local => local.to_string(),
        AddrPart::Domain => domain.to_string(),
        AddrPart::User => local.split_once('+').map_or(local, |(u, _)| u).to_string(),
        AddrPart::Detail => local.split_once('+')?.1.to_string(),
    })
}

/// Whether any value matches any key.
fn matches(cmp: Cmp, m: &Match, values: &[String], keys: &[String]) -> bool {
    match m {
        Match::Count(rel) => {
            let n = values.len().to_string();
            keys.iter().any(|k| relate(cmp, &n, k, *rel))
        }
        Match::Value(rel) => values.iter().any(|v| keys.iter().any(|k| relate(cmp, v, k, *rel))),
        Match::Regex(res) => values.iter().any(|v| res.iter().any(|r| r.is_match(v))),
        Match::Is => values
            .iter()
            .any(|v| keys.iter().any(|k| order(cmp, v, k) == std::cmp::Ordering::Equal)),
        Match::Contains => values.iter().any(|v| {
            keys.iter().any(|k| match cmp {
                Cmp::Casemap => v.to_ascii_lowercase().contains(&k.to_ascii_lowercase()),
                _ => v.contains(k.as_str()),
            })
        }),
        Match::Matches => values.iter().any(|v| {
            keys.iter().any(|k| {
                let fold = cmp == Cmp::Casemap;
                let v: Vec<char> = v.chars().map(|c| if fold { c.to_ascii_lowercase() } else { c }).collect();
                let k: Vec<char> = k.chars().map(|c| if fold { c.to_ascii_lowercase() } else { c }).collect();
                glob(&k, &v)
            })
        }),
    }
}

fn relate(cmp: Cmp, v: &str, k: &str, rel: Rel) -> bool {
    use std::cmp::Ordering::*;
    let o = order(cmp, v, k);
    match rel {
        Rel::Gt => o == Greater,
        Rel::Ge => o != Less,
        Rel::Lt => o == Less,
        Rel::Le => o != Greater,
        Rel::Eq => o == Equal,
        Rel::Ne => o != Equal,
    }
}

/// The comparators' order (RFC 4790): i;ascii-numeric compares the leading
/// digits as a number, a string without them being above every number.
fn order(cmp: Cmp, a: &str, b: &str) -> std::cmp::Ordering {
    match cmp {
        Cmp::Octet => a.as_bytes().cmp(b.as_bytes()),
        Cmp::Casemap => a.to_ascii_lowercase().as_bytes().cmp(b.to_ascii_lowercase().as_bytes()),
        Cmp::Numeric => {
            let num = |s: &str| -> Option<String> {
                let d: String = s.chars().take_while(char::is_ascii_digit).collect();
                if d.is_empty() {
                    return None;
                }
                let t = d.trim_start_matches('0');
                Some(if t.is_empty() { "0".into() } else { t.to_string() })
            };
            match (num(a), num(b)) {
                (None, None) => std::cmp::Ordering::Equal,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(_), None) => std::cmp::Ordering::Less,
                (Some(x), Some(y)) => x.len().cmp(&y.len()).then_with(|| x.cmp(&y)),
            }
        }
    }
}

/// `:matches`: `*` any run, `?` one character, `\` quotes the next.
fn glob(p: &[char], s: &[char]) -> bool {
    let (mut pi, mut si) = (0usize, 0usize);
    // The last '*' seen and where in `s` it resumes.
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, si));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    si += 1;
                    continue;
                }
                '\\' if pi + 1 < p.len() && p[pi + 1] == s[si] => {
                    pi += 2;
                    si += 1;
                    continue;
                }
                c if c != '\\' && c == s[si] => {
                    pi += 1;
                    si += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, ss)) => {
                pi = sp + 1;
                si = ss + 1;
                star = Some((sp, ss + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(script: &str, header: &str, to: &str) -> Vec<Action> {
        let s = parse(script.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let f = crate::mail::mime::fields(header.as_bytes());
        run(
            &s,
            &Message {
                fields: &f,
                size: 1000,
                env_from: "sender@example.org",
                env_to: to,
                raw: header.as_bytes(),
                may_file: &|_| false,
                include: &no_includes,
                environment: &no_environment,
                seen: &never_seen,
                lookup: &no_lookup,
            },
        )
        .unwrap()
    }

    fn into(m: &str) -> Action {
        Action::FileInto {
            mailbox: m.into(),
            flags: vec![],
            create: false,
            special_use: None,
        }
    }

    fn keep(flags: &[&str]) -> Action {
        Action::Keep {
            flags: flags.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn variables_and_match_variables() {
        let h = "Subject: [acme-users] [fwd] version 1.0 is out\r\nList-Id: Sieve WG <ietf-mta-filters@imc.org>\r\nFrom: Ann <ann@example.org>\r\n\r\n";
        let go = |script: &str| {
            outcome(
                &format!("require [\"fileinto\", \"variables\", \"regex\", \"relational\"];\r\n{script}"),
                h,
                "u",
            )
        };
        // RFC 5229's own example: the leftmost `*` takes as little as it can.
        assert_eq!(
            go(
                r#"if header :matches "Subject" "[*] *" { fileinto "INBOX.${1}.x"; set "rest" "${2}"; }
                  if string :is "${rest}" "[fwd] version 1.0 is out" { fileinto "ok"; }"#
            ),
            vec![into("INBOX.acme-users.x"), into("ok")]
        );
        assert_eq!(
            go(r#"if header :matches "List-Id" "*<*@*" { fileinto "lists.${2}"; }"#),
            vec![into("lists.ietf-mta-filters")]
        );
        // Modifiers, in their order of precedence; unknown names are empty.
        assert_eq!(
            go(
                r#"set :upperfirst :lower "a" "hELLO wORLD"; set :length "n" "${a}"; set :quotewildcard "q" "a*b?";
                  fileinto "${a}/${n}/${q}/${nosuch}/${}";"#
            ),
            vec![into(r"Hello world/11/a\*b\?//${}")]
        );
        // :regex captures; a failed match leaves the variables as they were.
        assert_eq!(
            go(r#"if address :regex "from" "^([a-z]+)@(.*)$" { set "who" "${1}"; }
                  if header :matches "Subject" "nomatch*" { stop; }
                  fileinto "${who}-${2}";"#),
            vec![into("ann-example.org")]
        );
        // :count counts non-empty strings.
        assert_eq!(
            go(r#"set "e" ""; if string :count "eq" ["${e}", "x"] "1" { fileinto "one"; }"#),
            vec![into("one")]
        );
        // Without the extension, "${...}" is text.
        let plain = outcome("require \"fileinto\";\r\nfileinto \"${1}\";", h, "u");
        assert_eq!(plain, vec![into("${1}")]);
        assert!(parse(b"require \"variables\"; set :lower :upper \"a\" \"b\";").is_err());
        assert!(parse(b"require \"variables\"; set \"1a\" \"b\";").is_err());
        assert!(parse(b"set \"a\" \"b\";").is_err());
    }

    #[test]
    fn includes_and_their_variables() {
        let h = "Subject: hello\r\n\r\n";
        let f = crate::mail::mime::fields(h.as_bytes());
        let lib = |global: bool, n: &str| -> Option<Result<Script, String>> {
            let src = match (global, n) {
                (false, "sub") => {
                    "require [\"fileinto\", \"include\", \"variables\"];\r\nglobal \"who\";\r\nfileinto \"sub-${who}\";\r\nset \"local\" \"x\";\r\nreturn;\r\nfileinto \"never\";"
                }
                (true, "spam") => "require \"fileinto\"; fileinto \"spam-${who}\";",
                (false, "loop") => "require \"include\"; include \"loop\";",
                (false, "broken") => "fileinto \"x\";",
                _ => return None,
            };
            Some(parse(src.as_bytes()).map_err(|e| e.to_string()))
        };
        let go = |script: &str| {
            let s = parse(script.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
            run(
                &s,
                &Message {
                    fields: &f,
                    size: 10,
                    env_from: "",
                    env_to: "u",
                    raw: h.as_bytes(),
                    may_file: &|_| false,
                    include: &lib,
                    environment: &no_environment,
                    seen: &never_seen,
                    lookup: &no_lookup,
                },
            )
        };
        // A global variable is shared; a local one is not; `return` ends
        // the included script; `:once`; a global script without the
        // variables extension sees "${who}" as text.
        assert_eq!(
            go(r#"require ["include", "variables", "fileinto"]; global "who"; set "who" "ann";
                  include "sub"; include :once "sub"; include :global "spam"; fileinto "after-${local}";"#),
            Ok(vec![into("sub-ann"), into("spam-${who}"), into("after-")])
        );
        assert_eq!(go(r#"require "include"; include :optional "nosuch";"#), Ok(vec![keep(&[])]));
        assert!(go(r#"require "include"; include "nosuch";"#)
            .unwrap_err()
            .contains("no such script"));
        assert!(go(r#"require "include"; include "loop";"#).unwrap_err().contains("loop"));
        assert!(go(r#"require "include"; include "broken";"#).is_err());
        // In the main script, `return` is `stop`.
        assert_eq!(go(r#"require ["include", "fileinto"]; return; fileinto "x";"#), Ok(vec![keep(&[])]));
        assert!(parse(b"require \"include\"; global \"x\";").is_err());
        assert!(parse(b"require \"include\"; include :global :personal \"x\";").is_err());
    }

    #[test]
    fn dates_of_headers_and_now() {
        // Fri, 04 Dec 2026 23:30:00 -0800 is Sat 07:30 UTC.
        let h = "Date: Fri, 04 Dec 2026 23:30:00 -0800\r\nReceived: from x by y; Tue, 1 Dec 2026 10:00:00 +0000\r\n\r\n";
        let f = crate::mail::mime::fields(h.as_bytes());
        let msg = Message {
            fields: &f,
            size: 10,
            env_from: "",
            env_to: "u",
            raw: h.as_bytes(),
            may_file: &|_| false,
            include: &no_includes,
            environment: &no_environment,
            seen: &never_seen,
            lookup: &no_lookup,
        };
        let now = 1_796_482_400; // 2026-12-05 14:53:20 UTC
        let hit = |test: &str| {
            let script = format!("require [\"date\", \"relational\", \"fileinto\"];\r\nif {test} {{ fileinto \"hit\"; }}\r\n");
            let s = parse(script.as_bytes()).unwrap_or_else(|e| panic!("{test}: {e}"));
            run_at(&s, &msg, now).unwrap().iter().any(|a| matches!(a, Action::FileInto { .. }))
        };
        assert!(hit(r#"date :originalzone "date" "date" "2026-12-04""#));
        assert!(hit(r#"date :zone "+0000" "date" "weekday" "6""#));
        assert!(hit(r#"date :zone "+0100" "date" "iso8601" "2026-12-05T08:30:00+01:00""#));
        assert!(hit(r#"date :originalzone "date" "zone" "-0800""#));
        assert!(hit(r#"date :zone "+0000" "received" "date" "2026-12-01""#));
        assert!(hit(r#"date :zone "+0000" "date" "julian" "61379""#));
        assert!(hit(r#"currentdate :zone "+0000" "time" "14:53:20""#));
        assert!(hit(r#"currentdate :zone "+0000" :value "ge" "date" "2026-12-01""#));
        assert!(!hit(r#"currentdate :zone "+0000" :value "gt" "date" "2026-12-05""#));
        assert!(hit(r#"currentdate :zone "+0000" :matches "std11" "Sat, 05 Dec 2026 *""#));
        // A missing or unreadable date fails the test.
        assert!(!hit(r#"date "x-none" "year" "2026""#));
        assert!(hit(r#"not date :count "eq" "x-none" "year" "1""#));
        for bad in [
            r#"date :zone "CET" "date" "year" "2026""#,
            r#"currentdate "fortnight" "1""#,
            r#"currentdate :originalzone "year" "1""#,
        ] {
            let script = format!("require \"date\";\r\nif {bad} {{ stop; }}\r\n");
            assert!(parse(script.as_bytes()).is_err(), "{bad}");
        }
        assert!(parse(b"if currentdate \"year\" \"2026\" { stop; }").is_err());
    }

    #[test]
    fn tests_and_actions() {
        let s = r#"require ["fileinto", "imap4flags", "envelope", "subaddress", "relational", "comparator-i;ascii-numeric", "copy"];
# a comment
/* a bracketed
   comment */
if header :contains "subject" ["money", "offer"] { fileinto "INBOX.spam"; stop; }
if address :domain :is "from" "Example.COM" { addflag "\\Flagged work"; }
if envelope :detail "to" "lists" { fileinto :copy "INBOX.lists"; }
if header :value "ge" :comparator "i;ascii-numeric" "x-spam-score" "10" { discard; }
if header :matches "subject" "re: *?x" { setflag "\\Answered"; }
"#;
        let h = "From: A <a@example.com>\r\nSubject: Big money\r\n\r\n";
        assert_eq!(
            outcome(s, h, "u7@x"),
            vec![Action::FileInto {
                mailbox: "INBOX.spam".into(),
                special_use: None,
                flags: vec![],
                create: false
            }]
        );
        let h = "From: A <a@example.com>\r\nSubject: hello\r\n\r\n";
        assert_eq!(outcome(s, h, "u7+lists@x").len(), 2);
        assert_eq!(outcome(s, h, "u7@x"), vec![keep(&["\\Flagged", "work"])]);
        let h = "From: b@other.org\r\nX-Spam-Score: 012\r\nSubject: x\r\n\r\n";
        assert_eq!(outcome(s, h, "u7@x"), vec![Action::Discard]);
        let h = "From: b@other.org\r\nX-Spam-Score: 9\r\nSubject: RE: abcx\r\n\r\n";
        assert_eq!(outcome(s, h, "u7@x"), vec![keep(&["\\Answered"])]);
    }

    /// RFC 5490: every mailbox named must exist (the real Cyrus 3.6 says
    /// true when one of them does).
    #[test]
    fn mailboxexists_wants_them_all() {
        let s = parse(b"require \"mailbox\";\nif mailboxexists [\"a\", \"b\"] { discard; }").unwrap();
        let f = crate::mail::mime::fields(b"Subject: x\r\n\r\n");
        let with = |known: &[&str]| {
            let may = |m: &str| known.contains(&m);
            let m = Message {
                fields: &f,
                size: 1,
                env_from: "",
                env_to: "u",
                raw: b"",
                may_file: &may,
                include: &no_includes,
                environment: &no_environment,
                seen: &never_seen,
                lookup: &no_lookup,
            };
            run(&s, &m).unwrap()
        };
        assert_eq!(with(&["a", "b"]), vec![Action::Discard]);
        assert_eq!(with(&["a"]), vec![keep(&[])]);
    }

    #[test]
    fn glob_and_numeric_order() {
        let g = |p: &str, s: &str| glob(&p.chars().collect::<Vec<_>>(), &s.chars().collect::<Vec<_>>());
        assert!(g("*", ""));
        assert!(g("a*b?c", "axxbyc"));
        assert!(!g("a*b?c", "axxbc"));
        assert!(g("\\*x", "*x"));
        assert!(!g("\\*x", "ax"));
        assert!(g("*.example.*", "mail.example.org"));
        assert_eq!(order(Cmp::Numeric, "10", "9"), std::cmp::Ordering::Greater);
        assert_eq!(order(Cmp::Numeric, "abc", "9"), std::cmp::Ordering::Greater);
        assert_eq!(order(Cmp::Numeric, "007", "7"), std::cmp::Ordering::Equal);
    }

    #[test]
    fn bad_scripts_name_the_line() {
        let e = |s: &str| parse(s.as_bytes()).unwrap_err().to_string();
        assert_eq!(e("keep;\nfileinto \"x\";"), "line 2: fileinto requires \"fileinto\"");
        assert_eq!(
            e("require \"nosuch\";"),
            "line 1: Unsupported feature(s) in \"require\": \"nosuch\""
        );
        assert_eq!(e("if true {\nkeep;\n"), "line 2: missing '}'");
        assert_eq!(e("keep\n"), "line 1: syntax error, missing ';'");
        assert_eq!(e("elsif true { keep; }"), "line 1: elsif without if");
        assert_eq!(
            e("keep;\nrequire \"fileinto\";"),
            "line 2: require must come before any other command"
        );
        assert_eq!(e("\"unterminated"), "line 1: unterminated string");
        assert!(e(&format!("{}true{}", "if not ".repeat(100), " { keep; }")).contains("too deep"));
    }

    #[test]
    fn multiline_text_and_escapes() {
        let s =
            parse(b"require \"reject\";\nreject text:\r\nline one\r\n..dotted\r\n.\r\n;\nif header :is \"x\" \"a\\\"b\\\\c\" { keep; }")
                .unwrap();
        match &s.cmds[0] {
            Cmd::Reject { reason, .. } => assert_eq!(reason, "line one\r\n.dotted\r\n"),
            c => panic!("{c:?}"),
        }
        let with_x = |h: &str| {
            let f = crate::mail::mime::fields(h.as_bytes());
            let m = Message {
                fields: &f,
                size: 1,
                env_from: "",
                env_to: "u",
                raw: h.as_bytes(),
                may_file: &|_| false,
                include: &no_includes,
                environment: &no_environment,
                seen: &never_seen,
                lookup: &no_lookup,
            };
            run(&s, &m)
        };
        // The header matched (the escapes read right): keep with reject.
        assert!(with_x("X: a\"b\\c\r\n\r\n").is_err());
        assert_eq!(
            with_x("X: ab\\c\r\n\r\n"),
            Ok(vec![Action::Reject {
                reason: "line one\r\n.dotted\r\n".into(),
                ereject: false
            }])
        );
    }

    /// Runs `script` on `raw` with an environment and ids seen before.
    fn exec(script: &str, raw: &str, seen: &dyn Fn(&str, &str) -> bool) -> Result<Outcome, String> {
        let s = parse(script.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let f = crate::mail::mime::fields(raw.as_bytes());
        let env = |n: &str| (n == "host").then(|| "mx1.example.org".to_string());
        let m = Message {
            fields: &f,
            size: raw.len() as u64,
            env_from: "s@example.net",
            env_to: "u@example.org",
            raw: raw.as_bytes(),
            may_file: &|_| true,
            include: &no_includes,
            environment: &env,
            seen,
            lookup: &no_lookup,
        };
        execute(&s, &m, 0)
    }

    #[test]
    fn editheader_changes_what_later_tests_and_the_copy_see() {
        let raw = "Received: from a\r\n\tby b; x\r\nX-M: 1\r\nSubject: s\r\nX-M: 2\r\nX-M: 3\r\n\r\nbody\r\n";
        let o = exec(
            r#"require ["editheader", "index", "variables", "fileinto"];
               addheader "X-Top" "t";
               addheader :last "X-End" "café au lait";
               deleteheader :index 1 :last "x-m";
               deleteheader :is "X-M" "1";
               if header :index 1 "x-m" "2" { fileinto "two"; }
               if exists "X-Top" { fileinto "top"; }
               set "h" "x-m"; deleteheader "${h}";"#,
            raw,
            &never_seen,
        )
        .unwrap();
        assert_eq!(o.actions, vec![into("two"), into("top")]);
        // The folded field is kept as it was; the added one is encoded.
        assert_eq!(
            String::from_utf8(o.header.unwrap()).unwrap(),
            "X-Top: t\r\nReceived: from a\r\n\tby b; x\r\nSubject: s\r\nX-End: =?UTF-8?Q?caf=C3=A9_au_lait?=\r\n\r\n"
        );
        // Received and Auto-Submitted may be added, never deleted.
        for name in ["received", "Auto-Submitted"] {
            let e = parse(format!("require \"editheader\"; deleteheader \"{name}\";").as_bytes()).unwrap_err();
            assert_eq!(e.msg, "MUST NOT delete Received or Auto-Submitted headers");
        }
        let o = exec(
            r#"require ["editheader", "variables"]; set "r" "received"; deleteheader "${r}"; addheader "Received" "x";"#,
            raw,
            &never_seen,
        )
        .unwrap();
        assert!(String::from_utf8(o.header.unwrap())
            .unwrap()
            .starts_with("Received: x\r\nReceived: from a\r\n\tby b; x\r\n"));
        // Without editing, no new header.
        assert_eq!(exec("keep;", raw, &never_seen).unwrap().header, None);
        assert!(parse(b"require \"editheader\"; addheader \"a b\" \"x\";").is_err());
        assert!(parse(b"addheader \"a\" \"x\";").is_err());
    }

    #[test]
    fn ihave_error_environment_encoded_character() {
        let raw = "Subject: =?utf-8?q?AB=C3=A9?=\r\n\r\n";
        // A block under an ihave of what we lack is neither checked nor run.
        let o = exec(
            r#"require ["ihave", "fileinto"];
               if ihave "x-nosuch" { xnosuch :z 1; fileinto "no"; }
               if ihave ["fileinto", "environment"] { if environment "host" "mx1.example.org" { fileinto "env"; } }
               if not ihave "nosuch" { fileinto "lacks"; }"#,
            raw,
            &never_seen,
        )
        .unwrap();
        assert_eq!(o.actions, vec![into("env"), into("lacks")]);
        // Outside the block, environment still needs its require.
        assert!(parse(b"require \"ihave\"; if ihave \"environment\" { keep; } if environment \"host\" \"x\" { keep; }").is_err());
        // Refused by sieve_extensions: not had.
        let s = parse_with(b"require \"ihave\"; if ihave \"editheader\" { addheader \"a\" \"b\"; }", &|e| {
            e != "editheader"
        })
        .unwrap();
        assert!(matches!(&s.cmds[0], Cmd::If { branches, .. } if branches[0].1.is_empty()));
        // error: a runtime error.
        assert_eq!(
            exec(r#"require "ihave"; error "no way";"#, raw, &never_seen),
            Err("error: no way".into())
        );
        // An unknown item fails the test.
        let o = exec(
            r#"require ["environment", "fileinto"]; if environment :matches "x" "*" { fileinto "x"; }"#,
            raw,
            &never_seen,
        )
        .unwrap();
        assert_eq!(o.actions, vec![keep(&[])]);
        // Encoded characters: hex bytes and code points; malformed ones
        // are left as they are; a surrogate is an error.
        let o = exec(
            r#"require ["encoded-character", "fileinto"];
               if header :is "subject" "${hex: 41 42}${Unicode:E9}" { fileinto "${hex:7a}${hex:}${hex:zz}"; }"#,
            raw,
            &never_seen,
        )
        .unwrap();
        assert_eq!(o.actions, vec![into("z${hex:}${hex:zz}")]);
        assert!(parse(b"require \"encoded-character\"; fileinto \"${unicode:D800}\";").is_err());
        assert!(parse(b"require \"encoded-character\"; fileinto \"${hex:ff}\";").is_err());
    }

    #[test]
    fn duplicate_and_index() {
        let raw = "Message-ID: <m1@x>\r\nX-K: k\r\nDate: Wed, 01 Jan 2020 10:00:00 +0000\r\nDate: Fri, 01 Jan 2021 10:00:00 +0000\r\n\r\n";
        let script = r#"require ["duplicate", "fileinto", "index", "date"];
            if duplicate { fileinto "seen-id"; }
            if duplicate :handle "h" :header "x-k" :seconds 60 :last { fileinto "seen-k"; }
            if duplicate :uniqueid "u" { fileinto "seen-u"; }
            if duplicate :header "x-none" { fileinto "never"; }
            if date :index 2 "date" "year" "2021" { fileinto "second"; }
            if date :index 1 :last "date" "year" "2021" { fileinto "last"; }
            if date "date" "year" "2020" { fileinto "first"; }"#;
        let o = exec(script, raw, &never_seen).unwrap();
        assert_eq!(o.actions, vec![into("second"), into("last"), into("first")]);
        assert_eq!(
            o.tracks,
            vec![
                Track {
                    handle: "".into(),
                    id: "<m1@x>".into(),
                    seconds: None,
                    last: false,
                    seen: false
                },
                Track {
                    handle: "h".into(),
                    id: "k".into(),
                    seconds: Some(60),
                    last: true,
                    seen: false
                },
                Track {
                    handle: "".into(),
                    id: "u".into(),
                    seconds: None,
                    last: false,
                    seen: false
                },
            ]
        );
        // What was remembered, per handle.
        let o = exec(script, raw, &|h, id| (h, id) == ("h", "k") || (h, id) == ("", "u")).unwrap();
        assert_eq!(o.actions[..2], [into("seen-k"), into("seen-u")]);
        assert!(o.tracks[1].seen && !o.tracks[0].seen);
        assert!(parse(b"require \"index\"; if header :last \"x\" \"y\" { keep; }").is_err());
        assert!(parse(b"require \"index\"; if header :index 0 \"x\" \"y\" { keep; }").is_err());
        assert!(parse(b"if header :index 1 \"x\" \"y\" { keep; }").is_err());
        assert!(parse(b"require \"duplicate\"; if duplicate :header \"a\" :uniqueid \"b\" { keep; }").is_err());
    }

    #[test]
    fn special_use_mailboxid_metadata_fcc() {
        let raw = "Subject: s\r\n\r\n";
        let f = crate::mail::mime::fields(raw.as_bytes());
        let lookup = |q: Query<'_>| match q {
            Query::SpecialUse("\\Junk") => Some("Spam".to_string()),
            Query::HasSpecialUse("Spam", "\\Junk") => Some(String::new()),
            Query::MailboxId("id-1") => Some("ById".to_string()),
            Query::Metadata(Some("Spam"), "/private/comment") => Some("hello".to_string()),
            Query::Metadata(None, "/shared/admin") => Some("mailto:x".to_string()),
            _ => None,
        };
        let run = |script: &str| {
            let s = parse(script.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
            let m = Message {
                lookup: &lookup,
                ..Message::plain(&f, raw.as_bytes(), "s@x", "u@x")
            };
            execute(&s, &m, 0).unwrap().actions
        };
        let junk = |m: &str, u: Option<&str>| Action::FileInto {
            mailbox: m.into(),
            flags: vec![],
            create: true,
            special_use: u.map(String::from),
        };
        assert_eq!(
            run(r#"require ["special-use", "fileinto", "mailbox"];
                   fileinto :specialuse "\\Junk" :create "Junk";
                   fileinto :specialuse "\\Archive" :create "Archive";"#),
            vec![junk("Spam", Some("\\Junk")), junk("Archive", Some("\\Archive"))]
        );
        assert_eq!(
            run(r#"require ["special-use", "mailboxid", "fileinto"];
                   if allof (specialuse_exists "\\Junk", specialuse_exists "Spam" "\\Junk",
                             not specialuse_exists ["\\Junk", "\\Archive"], not specialuse_exists "Other" "\\Junk",
                             mailboxidexists "id-1", not mailboxidexists ["id-1", "id-2"]) {
                     fileinto :mailboxid "id-1" "Named"; fileinto :mailboxid "id-2" "Named";
                   }"#),
            vec![into("ById"), into("Named")]
        );
        assert_eq!(
            run(r#"require ["mboxmetadata", "servermetadata", "fileinto"];
                   if allof (metadata "Spam" "/private/comment" "hello", metadataexists "Spam" "/private/comment",
                             not metadataexists "Spam" ["/private/comment", "/shared/comment"],
                             servermetadata :matches "/shared/admin" "mailto:*", servermetadataexists "/shared/admin",
                             not metadata "INBOX" "/private/comment" "") { fileinto "yes"; }"#),
            vec![into("yes")]
        );
        let a = run(r#"require ["vacation", "fcc", "special-use", "imap4flags", "mailbox"];
               vacation :fcc "Sent" :create :specialuse "\\Junk" :flags ["\\Seen", "a b"] "away";"#);
        let Action::Vacation(v) = &a[0] else { panic!("{a:?}") };
        assert_eq!(
            v.fcc,
            Some(Fcc {
                mailbox: "Spam".into(),
                create: true,
                flags: vec!["\\Seen".into(), "a".into(), "b".into()],
                special_use: Some("\\Junk".into()),
                mailbox_id: None,
            })
        );
        // As Cyrus 3.6, :fcc without its require.
        assert!(parse(b"require \"vacation\"; vacation :fcc \"x\" \"r\";").is_ok());
        assert!(parse(b"require [\"vacation\", \"fcc\"]; vacation :create \"r\";").is_err());
        assert!(parse(b"require \"fileinto\"; fileinto :specialuse \"\\\\Junk\" \"x\";").is_err());
    }

    #[test]
    fn enotify() {
        let raw = "From: =?utf-8?q?J=C3=B6rg?= <j@x>\r\nSubject: hi\r\n\r\n";
        let o = exec(
            r#"require ["enotify", "variables", "imap4flags"];
               notify "mailto:a@example.org";
               notify "mailto:a@example.org";
               set :encodeurl :upper "q" "a b&c/é";
               notify :from "me@x" :importance "1" :options ["o"] :message "see ${q}" "mailto:b@x?subject=S";
               if valid_notify_method ["mailto:a@b", "mailto:c@d?cc=e@f"] { keep; }
               if valid_notify_method "xmpp:a@b" { discard; }
               if notify_method_capability :is "mailto:a@b" "Online" "maybe" { keep :flags "maybe"; }"#,
            raw,
            &never_seen,
        )
        .unwrap();
        let n = |method: &str, from: Option<&str>, importance: u8, options: &[&str], message: &str| {
            Action::Notify(Notify {
                method: method.into(),
                from: from.map(String::from),
                importance,
                options: options.iter().map(|o| o.to_string()).collect(),
                message: message.into(),
                id: None,
            })
        };
        assert_eq!(
            o.actions,
            vec![
                // The same notification twice is one.
                n("mailto:a@example.org", None, 2, &[], "Jörg <j@x>: hi"),
                n("mailto:b@x?subject=S", Some("me@x"), 1, &["o"], "see A%20B%26C%2F%C3%89"),
                keep(&["maybe"]),
            ]
        );
        assert_eq!(
            mailto("MAILTO:a@x,%62@y?cc=c@z&bcc=d@z&subject=Hello%20there&body=b%0Ad&x-other=1"),
            Some(Mailto {
                to: vec!["a@x".into(), "b@y".into()],
                cc: vec!["c@z".into()],
                bcc: vec!["d@z".into()],
                subject: Some("Hello there".into()),
                body: Some("b\nd".into()),
            })
        );
        for bad in [
            "mailto:",
            "mailto:nobody",
            "mailto:a b@x",
            "mailto:a@x?cc=%zz",
            "tel:123",
            "mailto:<a@x>",
        ] {
            assert_eq!(mailto(bad), None, "{bad}");
        }
        // The older draft: :method mailto with the addresses as options,
        // the server's method without one, $...$ in the message, and
        // denotify by :id and priority.
        let o = exec(
            r#"require "notify";
               notify :method "mailto" :options ["a@x", "b@x"] :id "one" :message "$from$ / $subject$ / $env-from$ / $text[3]$ / $other$";
               notify :options "c@x" :id "two" :low;
               notify :method "mailto" :options "d@x" :id "three" :high;
               notify :method "mailto" :options "e@x" :id "four" :high;
               denotify :is "two";
               denotify :matches "th*" :high;"#,
            "From: A <a@y>\r\nSubject: S\r\n\r\nbody\r\n",
            &never_seen,
        )
        .unwrap();
        let methods: Vec<(&str, &str, u8)> = o
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Notify(n) => Some((n.method.as_str(), n.message.as_str(), n.importance)),
                _ => None,
            })
            .collect();
        assert_eq!(
            methods,
            [
                ("mailto:a@x,b@x", "A <a@y> / S / s@example.net / bod / $other$", 2),
                ("mailto:e@x", "A <a@y>: S", 1)
            ]
        );
        assert!(parse(b"require \"notify\"; notify :low :high;").is_err());
        assert!(parse(b"denotify;").is_err());
        assert!(parse(b"require \"enotify\"; notify :importance \"4\" \"mailto:a@b\";").is_err());
        // :encodeurl only with enotify.
        assert!(parse(b"require \"variables\"; set :encodeurl \"a\" \"b\";").is_err());
        assert!(parse(b"notify \"mailto:a@b\";").is_err());
    }

    #[test]
    fn redirect_dsn_and_deliverby() {
        let dsn = |script: &str| -> RedirectDsn {
            let s =
                parse(format!("require [\"redirect-dsn\", \"redirect-deliverby\"]; {script}").as_bytes()).unwrap_or_else(|e| panic!("{e}"));
            match &s.cmds[0] {
                Cmd::Redirect { dsn, .. } => dsn.clone(),
                c => panic!("{c:?}"),
            }
        };
        let d = dsn(r#"redirect :notify "success, Failure" :ret "hdrs" :bytimerelative 600 :bymode "return" :bytrace "a@b";"#);
        assert_eq!(
            d.params(true, true, 0),
            (" RET=HDRS BY=600;RT".into(), " NOTIFY=SUCCESS,FAILURE".into())
        );
        // Only what the MTA offers.
        assert_eq!(d.params(false, false, 0), (String::new(), String::new()));
        assert_eq!(d.params(true, false, 0).0, " RET=HDRS");
        // An absolute time: seconds from now; one past can only notify.
        let d = dsn(r#"redirect :bytimeabsolute "2030-01-01T01:00:00+01:00" :bymode "return" "a@b";"#);
        assert_eq!(d.by.unwrap().time, 1_893_456_000);
        assert_eq!(d.params(true, true, 1_893_455_000).0, " BY=1000;R");
        assert_eq!(d.params(true, true, 1_893_457_000).0, " BY=-1000;N");
        for bad in [
            r#"redirect :notify "NEVER,SUCCESS" "a@b";"#,
            r#"redirect :ret "ALL" "a@b";"#,
            r#"redirect :bymode "return" "a@b";"#,
            r#"redirect :bytimeabsolute "tomorrow" "a@b";"#,
            r#"redirect :bytimerelative 1 :bytimeabsolute "2030-01-01T00:00:00Z" "a@b";"#,
        ] {
            assert!(
                parse(format!("require [\"redirect-dsn\", \"redirect-deliverby\"]; {bad}").as_bytes()).is_err(),
                "{bad}"
            );
        }
        assert!(parse(b"redirect :notify \"NEVER\" \"a@b\";").is_err());
        assert!(parse(b"redirect :bytimerelative 5 \"a@b\";").is_err());
    }
}
