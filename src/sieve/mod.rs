//! Sieve mail filtering (RFC 5228) as Cyrus's lmtpd runs it at delivery:
//! a user's active script, kept as Cyrus keeps it (`sievedir`, the
//! `defaultbc` link naming `<name>.bc`, the source beside it as
//! `<name>.script`), decides where each message goes.  Sans-I/O: `parse`
//! checks a script, `run` answers what to do with one message; lmtpd
//! does it.
//!
//! Extensions: fileinto, reject, ereject, envelope, imap4flags, copy,
//! subaddress, relational, regex, vacation, vacation-seconds, body, mailbox
//! (`fileinto :create`, `mailboxexists`) and the three comparators.

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
    Keep {
        flags: Option<Vec<String>>,
    },
    Discard,
    FileInto {
        mailbox: String,
        copy: bool,
        create: bool,
        flags: Option<Vec<String>>,
    },
    Redirect {
        addr: String,
        copy: bool,
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
}

#[derive(Debug)]
pub enum Test {
    Address {
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
        cmp: Cmp,
        m: Match,
        headers: Vec<String>,
        keys: Vec<String>,
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
}

/// What a script decided, in order.  A `Keep` is the user's INBOX (or the
/// recipient's +detail folder), implicit or not.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Keep { flags: Vec<String> },
    FileInto { mailbox: String, flags: Vec<String>, create: bool },
    Redirect { addr: String },
    Reject { reason: String, ereject: bool },
    Vacation(Vacation),
    Discard,
}

/// Runs a script on a message: the actions, implicit keep included; an
/// error for actions that cannot go together (RFC 5429: reject with a
/// delivery).
pub fn run(script: &Script, msg: &Message<'_>) -> Result<Vec<Action>, String> {
    let mut st = State {
        actions: Vec::new(),
        implicit_keep: true,
        flags: Vec::new(),
        stopped: false,
    };
    st.block(&script.cmds, msg);
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
    Ok(st.actions)
}

struct State {
    actions: Vec<Action>,
    implicit_keep: bool,
    /// imap4flags' internal variable.
    flags: Vec<String>,
    stopped: bool,
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
            if self.stopped {
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
                Cmd::Keep { flags } => {
                    self.implicit_keep = false;
                    let flags = flags.as_ref().map_or_else(|| self.flags.clone(), |f| flag_list(f));
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
                } => {
                    if !copy {
                        self.implicit_keep = false;
                    }
                    let flags = flags.as_ref().map_or_else(|| self.flags.clone(), |f| flag_list(f));
                    self.push(Action::FileInto {
                        mailbox: mailbox.clone(),
                        flags,
                        create: *create,
                    });
                }
                Cmd::Redirect { addr, copy } => {
                    if !copy {
                        self.implicit_keep = false;
                    }
                    self.push(Action::Redirect { addr: addr.clone() });
                }
                Cmd::Reject { reason, ereject } => {
                    self.implicit_keep = false;
                    self.push(Action::Reject {
                        reason: reason.clone(),
                        ereject: *ereject,
                    });
                }
                Cmd::Flags { op, flags } => {
                    let l = flag_list(flags);
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
                        self.actions.push(Action::Vacation(v.clone()));
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
            (Action::Redirect { addr: a1 }, Action::Redirect { addr: a2 }) => a1.eq_ignore_ascii_case(a2),
            _ => false,
        };
        match self.actions.iter().position(same) {
            Some(i) => self.actions[i] = a,
            None => self.actions.push(a),
        }
    }

    fn test(&self, t: &Test, msg: &Message<'_>) -> bool {
        match t {
            Test::True => true,
            Test::False => false,
            Test::Not(t) => !self.test(t, msg),
            Test::AllOf(l) => l.iter().all(|t| self.test(t, msg)),
            Test::AnyOf(l) => l.iter().any(|t| self.test(t, msg)),
            Test::Exists(hs) => hs.iter().all(|h| msg.fields.iter().any(|(n, _)| n.eq_ignore_ascii_case(h))),
            Test::MailboxExists(names) => names.iter().all(|n| (msg.may_file)(n)),
            Test::Size { over, limit } => {
                if *over {
                    msg.size > *limit
                } else {
                    msg.size < *limit
                }
            }
            Test::Header { cmp, m, headers, keys } => {
                let values: Vec<String> = headers
                    .iter()
                    .flat_map(|h| msg.fields.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(h)))
                    .map(|(_, v)| header_text(v))
                    .collect();
                matches(*cmp, m, &values, keys)
            }
            Test::Address {
                part,
                cmp,
                m,
                headers,
                keys,
            } => {
                let mut values = Vec::new();
                for (_, v) in headers
                    .iter()
                    .flat_map(|h| msg.fields.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(h)))
                {
                    for a in crate::mail::mime::parse_addresses(v) {
                        let (Some(mb), Some(host)) = (a.mailbox, a.host) else { continue };
                        let local = String::from_utf8_lossy(&mb).into_owned();
                        let domain = String::from_utf8_lossy(&host).into_owned();
                        if let Some(p) = addr_part(*part, &local, &domain) {
                            values.push(p);
                        }
                    }
                }
                matches(*cmp, m, &values, keys)
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
                matches(*cmp, m, &values, keys)
            }
            Test::HasFlag { cmp, m, keys } => matches(*cmp, m, &self.flags, keys),
            Test::Body { cmp, m, transform, keys } => matches(*cmp, m, &body_values(msg.raw, transform), keys),
        }
    }
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
            },
        )
        .unwrap()
    }

    fn keep(flags: &[&str]) -> Action {
        Action::Keep {
            flags: flags.iter().map(|s| s.to_string()).collect(),
        }
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
}
