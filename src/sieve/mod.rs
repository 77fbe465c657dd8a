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

mod compare;
mod edit;
mod lex;
mod parse;
mod send;

use compare::{glob_captures, matches};
pub(crate) use edit::protected_field;
pub use edit::valid_field_name;
use edit::Edited;
pub use parse::{parse, parse_with, ParseError, EXTENSIONS};
use send::{draft_message, encode_url};
pub use send::{mailto, ByTime, Mailto, Notify, RedirectDsn};

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
    /// Cyrus's `vnd.cyrus.log`: `log "text"` writes the text to the
    /// server's log.
    Log(String),
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
    /// `log`'s texts (vnd.cyrus.log), for the server's log.
    pub logs: Vec<String>,
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
        logs: Vec::new(),
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
        logs: st.logs,
    })
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
    /// `log`'s texts, in order.
    logs: Vec<String>,
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
                Cmd::Log(t) => {
                    let t = self.x(t);
                    self.logs.push(t);
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
                    self.notify(n);
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
                    self.notify(n);
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
                    let mailbox = self.target(msg, mailbox, mailbox_id.as_deref(), special_use.as_deref());
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
                            f.mailbox = self.target(msg, &f.mailbox, f.mailbox_id.as_deref(), special_use.as_deref());
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

    /// A notification; the same one twice is sent once (RFC 5435 3.9).
    fn notify(&mut self, n: Notify) {
        if !self.actions.iter().any(|a| matches!(a, Action::Notify(o) if *o == n)) {
            self.actions.push(Action::Notify(n));
        }
    }

    /// Where `fileinto` (and `:fcc`) files: the mailbox with the
    /// MAILBOXID, else the user's one with the special use, else the one
    /// named.
    fn target(&self, msg: &Message<'_>, named: &str, mailbox_id: Option<&str>, special_use: Option<&str>) -> String {
        mailbox_id
            .and_then(|id| (msg.lookup)(Query::MailboxId(&self.x(id))))
            .or_else(|| special_use.and_then(|u| (msg.lookup)(Query::SpecialUse(u))))
            .unwrap_or_else(|| self.x(named))
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

#[cfg(test)]
mod tests;
