//! Sieve's grammar (RFC 5228 section 8) into checked commands: the lexer,
//! the generic command/test/argument tree, then each command and test
//! checked for its arguments and its `require`.  Errors name the line.

use super::lex::{decode_encoded, describe, lex, Tok};
use super::{AddrPart, BodyTransform, ByTime, Cmd, Cmp, DupId, Fcc, FlagOp, Index, Match, RedirectDsn, Rel, Script, Test, Vacation, Zone};

/// At most this many nested blocks and tests (a script is untrusted).
const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub line: usize,
    pub msg: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.msg)
    }
}

pub(super) fn err<T>(line: usize, msg: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError { line, msg: msg.into() })
}

/// An argument as written.
#[derive(Debug, Clone)]
enum Arg {
    Tag(String),
    Num(u64),
    /// A string list; `bool`: written as a single string.
    Strs(Vec<String>, bool),
}

#[derive(Debug)]
struct Generic {
    name: String,
    line: usize,
    args: Vec<Arg>,
    tests: Vec<Generic>,
    block: Option<Vec<Generic>>,
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    last_line: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.0)
    }
    fn line(&self) -> usize {
        self.toks.get(self.pos).map_or(self.last_line, |t| t.1)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|t| t.0.clone());
        self.pos += 1;
        t
    }
    fn punct(&mut self, c: u8) -> bool {
        if self.peek() == Some(&Tok::Punct(c)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn commands(&mut self, depth: usize, top: bool) -> Result<Vec<Generic>, ParseError> {
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None if top => return Ok(out),
                None => return err(self.line(), "missing '}'"),
                Some(Tok::Punct(b'}')) if !top => return Ok(out),
                Some(Tok::Ident(_)) => out.push(self.command(depth)?),
                Some(t) => return err(self.line(), format!("syntax error, unexpected {}", describe(t))),
            }
        }
    }

    /// A command's or a test's name and arguments (`what` names which,
    /// and `nested` how too deep a nesting is called, for errors).
    fn head(&mut self, depth: usize, what: &str, nested: &str) -> Result<Generic, ParseError> {
        if depth > MAX_DEPTH {
            return err(self.line(), format!("{nested} nested too deep"));
        }
        let line = self.line();
        let Some(Tok::Ident(name)) = self.next() else {
            return err(line, format!("syntax error, expecting a {what}"));
        };
        let (args, tests) = self.arguments(depth)?;
        Ok(Generic {
            name,
            line,
            args,
            tests,
            block: None,
        })
    }

    fn command(&mut self, depth: usize) -> Result<Generic, ParseError> {
        let mut g = self.head(depth, "command", "blocks")?;
        let block = if self.punct(b';') {
            None
        } else if self.punct(b'{') {
            let b = self.commands(depth + 1, false)?;
            if !self.punct(b'}') {
                return err(self.line(), "missing '}'");
            }
            Some(b)
        } else {
            let l = self.line();
            return match self.peek() {
                Some(t) => err(l, format!("syntax error, unexpected {}, expecting ';' or '{{'", describe(t))),
                None => err(l, "syntax error, missing ';'"),
            };
        };
        g.block = block;
        Ok(g)
    }

    fn arguments(&mut self, depth: usize) -> Result<(Vec<Arg>, Vec<Generic>), ParseError> {
        let mut args = Vec::new();
        loop {
            match self.peek() {
                Some(Tok::Tag(_)) => {
                    let Some(Tok::Tag(t)) = self.next() else { unreachable!() };
                    args.push(Arg::Tag(t));
                }
                Some(Tok::Num(_)) => {
                    let Some(Tok::Num(n)) = self.next() else { unreachable!() };
                    args.push(Arg::Num(n));
                }
                Some(Tok::Str(_)) => {
                    let Some(Tok::Str(s)) = self.next() else { unreachable!() };
                    args.push(Arg::Strs(vec![s], true));
                }
                Some(Tok::Punct(b'[')) => {
                    self.pos += 1;
                    let mut l = Vec::new();
                    loop {
                        let line = self.line();
                        match self.next() {
                            Some(Tok::Str(s)) => l.push(s),
                            _ => return err(line, "syntax error in string list"),
                        }
                        if self.punct(b',') {
                            continue;
                        }
                        if self.punct(b']') {
                            break;
                        }
                        return err(self.line(), "syntax error in string list, expecting ',' or ']'");
                    }
                    args.push(Arg::Strs(l, false));
                }
                _ => break,
            }
        }
        let mut tests = Vec::new();
        match self.peek() {
            Some(Tok::Ident(_)) => tests.push(self.test(depth + 1)?),
            Some(Tok::Punct(b'(')) => {
                self.pos += 1;
                loop {
                    tests.push(self.test(depth + 1)?);
                    if self.punct(b',') {
                        continue;
                    }
                    if self.punct(b')') {
                        break;
                    }
                    return err(self.line(), "syntax error in test list, expecting ',' or ')'");
                }
            }
            _ => {}
        }
        Ok((args, tests))
    }

    fn test(&mut self, depth: usize) -> Result<Generic, ParseError> {
        self.head(depth, "test", "tests")
    }
}

/// The extensions a script may `require`.
pub const EXTENSIONS: &[&str] = &[
    "fileinto",
    "reject",
    "ereject",
    "envelope",
    "imap4flags",
    "copy",
    "subaddress",
    "relational",
    "regex",
    "vacation",
    "vacation-seconds",
    "body",
    "mailbox",
    "date",
    "variables",
    "include",
    "encoded-character",
    "ihave",
    "environment",
    "index",
    "duplicate",
    "editheader",
    "special-use",
    "mailboxid",
    "mboxmetadata",
    "servermetadata",
    "fcc",
    "enotify",
    "notify",
    "redirect-dsn",
    "redirect-deliverby",
    "vnd.cyrus.log",
    // (Its older name, which Cyrus still takes.)
    "x-cyrus-log",
    "comparator-i;ascii-numeric",
    "comparator-i;octet",
    "comparator-i;ascii-casemap",
];

/// Parses and checks a script.
pub fn parse(src: &[u8]) -> Result<Script, ParseError> {
    parse_with(src, &|_| true)
}

/// Parses and checks a script that may `require` only the extensions
/// `allowed` says yes to (of those we have; `sieve_extensions`).
pub fn parse_with(src: &[u8], allowed: &dyn Fn(&str) -> bool) -> Result<Script, ParseError> {
    let toks = lex(src)?;
    let last_line = toks.last().map_or(1, |t| t.1);
    let mut p = Parser { toks, pos: 0, last_line };
    let generic = p.commands(0, true)?;
    let mut c = Checker {
        requires: Vec::new(),
        requires_done: false,
        allowed,
    };
    let cmds = c.block(generic)?;
    Ok(Script {
        cmds,
        requires: c.requires,
    })
}

struct Checker<'a> {
    requires: Vec<String>,
    requires_done: bool,
    allowed: &'a dyn Fn(&str) -> bool,
}

/// Tagged arguments and positional ones of a command or test, taken as
/// they are recognised.
struct Args {
    line: usize,
    name: String,
    tags: Vec<(String, Option<Arg>)>,
    pos: std::collections::VecDeque<Arg>,
}

impl Args {
    fn tag(&mut self, t: &str) -> Option<Option<Arg>> {
        let i = self.tags.iter().position(|(n, _)| n == t)?;
        Some(self.tags.remove(i).1)
    }
    fn has(&mut self, t: &str) -> bool {
        self.tag(t).is_some()
    }
    fn strs(&mut self, what: &str) -> Result<Vec<String>, ParseError> {
        match self.pos.pop_front() {
            Some(Arg::Strs(l, _)) => Ok(l),
            _ => err(self.line, format!("{}: missing {what}", self.name)),
        }
    }
    fn string(&mut self, what: &str) -> Result<String, ParseError> {
        match self.pos.pop_front() {
            Some(Arg::Strs(mut l, true)) => Ok(l.remove(0)),
            Some(Arg::Strs(..)) => err(self.line, format!("{}: {what} must be a single string", self.name)),
            _ => err(self.line, format!("{}: missing {what}", self.name)),
        }
    }
    fn tag_strs(&mut self, t: &str) -> Result<Option<Vec<String>>, ParseError> {
        match self.tag(t) {
            None => Ok(None),
            Some(Some(Arg::Strs(l, _))) => Ok(Some(l)),
            Some(_) => err(self.line, format!("{}: :{t} needs a string list", self.name)),
        }
    }
    fn tag_string(&mut self, t: &str) -> Result<Option<String>, ParseError> {
        match self.tag(t) {
            None => Ok(None),
            Some(Some(Arg::Strs(mut l, true))) => Ok(Some(l.remove(0))),
            Some(_) => err(self.line, format!("{}: :{t} needs a string", self.name)),
        }
    }
    fn done(self) -> Result<(), ParseError> {
        if let Some((t, _)) = self.tags.first() {
            return err(self.line, format!("{}: unexpected tag :{t}", self.name));
        }
        if !self.pos.is_empty() {
            return err(self.line, format!("{}: too many arguments", self.name));
        }
        Ok(())
    }
}

/// Tags that take a value, per tag name.
fn tag_takes_value(t: &str) -> bool {
    matches!(
        t,
        "comparator"
            | "value"
            | "count"
            | "flags"
            | "days"
            | "seconds"
            | "subject"
            | "from"
            | "addresses"
            | "handle"
            | "over"
            | "under"
            | "content"
            | "zone"
            | "index"
            | "header"
            | "uniqueid"
            | "specialuse"
            | "mailboxid"
            | "fcc"
            | "importance"
            | "options"
            | "message"
            | "method"
            | "id"
            | "notify"
            | "ret"
            | "bytimerelative"
            | "bytimeabsolute"
            | "bymode"
    )
}

impl Checker<'_> {
    /// An extension we have and `sieve_extensions` allows.
    fn supported(&self, ext: &str) -> bool {
        EXTENSIONS.contains(&ext) && (self.allowed)(ext)
    }

    fn need(&self, ext: &str, line: usize, what: &str) -> Result<(), ParseError> {
        if self.requires.iter().any(|r| r == ext) {
            Ok(())
        } else {
            err(line, format!("{what} requires \"{ext}\""))
        }
    }

    fn args(&self, g: &mut Generic) -> Result<Args, ParseError> {
        let mut tags = Vec::new();
        let mut pos = std::collections::VecDeque::new();
        let mut args = std::mem::take(&mut g.args);
        if self.requires.iter().any(|r| r == "encoded-character") {
            for a in &mut args {
                if let Arg::Strs(l, _) = a {
                    for s in l {
                        *s = decode_encoded(s).ok_or(ParseError {
                            line: g.line,
                            msg: format!("{}: an encoded character that is not one", g.name),
                        })?;
                    }
                }
            }
        }
        let mut it = args.into_iter().peekable();
        while let Some(a) = it.next() {
            match a {
                Arg::Tag(t) => {
                    if tags.iter().any(|(n, _): &(String, Option<Arg>)| *n == t) {
                        return err(g.line, format!("{}: :{t} given twice", g.name));
                    }
                    let v = if tag_takes_value(&t) {
                        match it.next() {
                            Some(v @ (Arg::Strs(..) | Arg::Num(_))) => Some(v),
                            _ => return err(g.line, format!("{}: :{t} needs a value", g.name)),
                        }
                    } else {
                        None
                    };
                    tags.push((t, v));
                }
                a => pos.push_back(a),
            }
        }
        Ok(Args {
            line: g.line,
            name: g.name.clone(),
            tags,
            pos,
        })
    }

    fn block(&mut self, gs: Vec<Generic>) -> Result<Vec<Cmd>, ParseError> {
        let mut out: Vec<Cmd> = Vec::new();
        for mut g in gs {
            if g.name != "require" {
                self.requires_done = true;
            }
            let name = g.name.clone();
            let line = g.line;
            if g.block.is_some() && !matches!(name.as_str(), "if" | "elsif" | "else") {
                return err(line, format!("{name}: a block after a command that takes none"));
            }
            if !matches!(name.as_str(), "if" | "elsif") && !g.tests.is_empty() {
                return err(line, format!("{name}: takes no test"));
            }
            let cmd = match name.as_str() {
                "require" => {
                    if self.requires_done {
                        return err(line, "require must come before any other command");
                    }
                    let mut a = self.args(&mut g)?;
                    let mut unsupported = Vec::new();
                    for ext in a.strs("extension list")? {
                        let ext = ext.to_ascii_lowercase();
                        if !self.supported(&ext) {
                            unsupported.push(format!("\"{ext}\""));
                        } else if !self.requires.contains(&ext) {
                            self.requires.push(ext);
                        }
                    }
                    // Cyrus 3.6's words.
                    if !unsupported.is_empty() {
                        return err(line, format!("Unsupported feature(s) in \"require\": {}", unsupported.join(", ")));
                    }
                    a.done()?;
                    continue;
                }
                "if" | "elsif" | "else" => {
                    let block = g.block.take().ok_or(ParseError {
                        line,
                        msg: format!("{name}: missing block"),
                    })?;
                    if !g.args.is_empty() {
                        return err(line, format!("{name}: unexpected arguments"));
                    }
                    let test = if name == "else" {
                        if !g.tests.is_empty() {
                            return err(line, "else: takes no test");
                        }
                        None
                    } else {
                        if g.tests.len() != 1 {
                            return err(line, format!("{name}: needs one test"));
                        }
                        Some(self.test(g.tests.remove(0))?)
                    };
                    // RFC 5463: a block under `ihave` may use what it
                    // names without `require`; under an `ihave` of what we
                    // do not have, it is never run, so not checked.
                    let body = match &test {
                        Some(Test::Ihave { exts, have: true }) => {
                            let before = self.requires.len();
                            self.requires
                                .extend(exts.iter().filter(|e| !self.requires.contains(e)).cloned().collect::<Vec<_>>());
                            let body = self.block(block);
                            self.requires.truncate(before);
                            body?
                        }
                        Some(Test::Ihave { .. }) => Vec::new(),
                        _ => self.block(block)?,
                    };
                    if name == "if" {
                        out.push(Cmd::If {
                            branches: vec![(test.expect("if has a test"), body)],
                            otherwise: None,
                        });
                    } else {
                        match out.last_mut() {
                            Some(Cmd::If { branches, otherwise }) if otherwise.is_none() => match test {
                                Some(t) => branches.push((t, body)),
                                None => *otherwise = Some(body),
                            },
                            _ => return err(line, format!("{name} without if")),
                        }
                    }
                    continue;
                }
                "stop" => {
                    self.args(&mut g)?.done()?;
                    Cmd::Stop
                }
                "log" => {
                    if !self.requires.iter().any(|r| r == "x-cyrus-log") {
                        self.need("vnd.cyrus.log", line, "log")?;
                    }
                    let mut a = self.args(&mut g)?;
                    let text = a.string("text")?;
                    a.done()?;
                    Cmd::Log(text)
                }
                "error" => {
                    self.need("ihave", line, "error")?;
                    let mut a = self.args(&mut g)?;
                    let msg = a.string("message")?;
                    a.done()?;
                    Cmd::Error(msg)
                }
                "notify" if !self.requires.iter().any(|r| r == "enotify") && self.requires.iter().any(|r| r == "notify") => {
                    let mut a = self.args(&mut g)?;
                    let method = a.tag_string("method")?;
                    let id = a.tag_string("id")?;
                    let options = a.tag_strs("options")?.unwrap_or_default();
                    let priority = self.draft_priority(&mut a)?.unwrap_or(2);
                    let message = a.tag_string("message")?;
                    a.done()?;
                    Cmd::DraftNotify {
                        method,
                        id,
                        options,
                        priority,
                        message,
                    }
                }
                "denotify" => {
                    self.need("notify", line, "denotify")?;
                    let mut a = self.args(&mut g)?;
                    let priority = self.draft_priority(&mut a)?;
                    let (_, m) = self.cmp_match(&mut a)?;
                    let key = if a.pos.is_empty() { None } else { Some(a.string("id")?) };
                    a.done()?;
                    Cmd::Denotify { m, key, priority }
                }
                "notify" => {
                    self.need("enotify", line, "notify")?;
                    let mut a = self.args(&mut g)?;
                    let from = a.tag_string("from")?;
                    let importance = a.tag_string("importance")?;
                    if let Some(i) = &importance {
                        if !i.contains("${") && !matches!(i.as_str(), "1" | "2" | "3") {
                            return err(line, format!("notify: :importance must be \"1\", \"2\" or \"3\", not \"{i}\""));
                        }
                    }
                    let options = a.tag_strs("options")?.unwrap_or_default();
                    let message = a.tag_string("message")?;
                    let method = a.string("method")?;
                    a.done()?;
                    Cmd::Notify {
                        from,
                        importance,
                        options,
                        message,
                        method,
                    }
                }
                "addheader" => {
                    self.need("editheader", line, "addheader")?;
                    let mut a = self.args(&mut g)?;
                    let last = a.has("last");
                    let name = a.string("field name")?;
                    let value = a.string("value")?;
                    a.done()?;
                    if !super::valid_field_name(&name) {
                        return err(line, format!("addheader: invalid header field name \"{name}\""));
                    }
                    Cmd::AddHeader { last, name, value }
                }
                "deleteheader" => {
                    self.need("editheader", line, "deleteheader")?;
                    let mut a = self.args(&mut g)?;
                    let index = self.index_tag(&mut a)?;
                    let (cmp, mut m) = self.cmp_match(&mut a)?;
                    let name = a.string("field name")?;
                    let keys = if a.pos.is_empty() {
                        None
                    } else {
                        Some(self.keys(&mut a, &mut m, cmp)?)
                    };
                    a.done()?;
                    if !super::valid_field_name(&name) {
                        return err(line, format!("deleteheader: invalid header field name \"{name}\""));
                    }
                    // Cyrus 3.6's words.
                    if super::protected_field(&name) {
                        return err(line, "MUST NOT delete Received or Auto-Submitted headers");
                    }
                    Cmd::DeleteHeader { index, cmp, m, name, keys }
                }
                "include" => {
                    self.need("include", line, "include")?;
                    let mut a = self.args(&mut g)?;
                    let global = a.has("global");
                    if global && a.has("personal") {
                        return err(line, "include: :global and :personal together");
                    }
                    let once = a.has("once");
                    let optional = a.has("optional");
                    let name = a.string("script name")?;
                    a.done()?;
                    if crate::store::sievedir::valid_name(name.as_bytes()).is_none() {
                        return err(line, format!("include: invalid script name \"{name}\""));
                    }
                    Cmd::Include {
                        global,
                        once,
                        optional,
                        name,
                    }
                }
                "return" => {
                    self.need("include", line, "return")?;
                    self.args(&mut g)?.done()?;
                    Cmd::Return
                }
                "global" => {
                    self.need("include", line, "global")?;
                    self.need("variables", line, "global")?;
                    let mut a = self.args(&mut g)?;
                    let names = a.strs("variable names")?;
                    a.done()?;
                    Cmd::Global(names.iter().map(|n| n.to_ascii_lowercase()).collect())
                }
                "keep" => {
                    let mut a = self.args(&mut g)?;
                    let flags = self.flags_tag(&mut a)?;
                    a.done()?;
                    Cmd::Keep { flags }
                }
                "discard" => {
                    self.args(&mut g)?.done()?;
                    Cmd::Discard
                }
                "fileinto" => {
                    self.need("fileinto", line, "fileinto")?;
                    let mut a = self.args(&mut g)?;
                    let copy = a.has("copy");
                    if copy {
                        self.need("copy", line, ":copy")?;
                    }
                    let create = a.has("create");
                    if create {
                        self.need("mailbox", line, ":create")?;
                    }
                    let flags = self.flags_tag(&mut a)?;
                    let special_use = a.tag_string("specialuse")?;
                    if special_use.is_some() {
                        self.need("special-use", line, ":specialuse")?;
                    }
                    let mailbox_id = a.tag_string("mailboxid")?;
                    if mailbox_id.is_some() {
                        self.need("mailboxid", line, ":mailboxid")?;
                    }
                    let mailbox = a.string("mailbox name")?;
                    a.done()?;
                    Cmd::FileInto {
                        mailbox,
                        copy,
                        create,
                        flags,
                        special_use,
                        mailbox_id,
                    }
                }
                "redirect" => {
                    let mut a = self.args(&mut g)?;
                    let copy = a.has("copy");
                    if copy {
                        self.need("copy", line, ":copy")?;
                    }
                    let dsn = self.redirect_dsn(&mut a)?;
                    let addr = a.string("address")?;
                    a.done()?;
                    if !addr.contains('@') && addr.trim().is_empty() {
                        return err(line, "redirect: empty address");
                    }
                    Cmd::Redirect { addr, copy, dsn }
                }
                "reject" | "ereject" => {
                    self.need(&name, line, &name)?;
                    let mut a = self.args(&mut g)?;
                    let reason = a.string("reason")?;
                    a.done()?;
                    Cmd::Reject {
                        reason,
                        ereject: name == "ereject",
                    }
                }
                "set" => {
                    self.need("variables", line, "set")?;
                    let mut a = self.args(&mut g)?;
                    let mut mods = Vec::new();
                    // RFC 5435's :encodeurl (precedence 15) with enotify.
                    let encodeurl: &[&str] = if self.requires.iter().any(|r| r == "enotify") {
                        &["encodeurl"]
                    } else {
                        &[]
                    };
                    for group in [
                        &["lower", "upper"][..],
                        &["lowerfirst", "upperfirst"],
                        &["quotewildcard"],
                        encodeurl,
                        &["length"],
                    ] {
                        let given: Vec<&str> = group.iter().copied().filter(|m| a.has(m)).collect();
                        if given.len() > 1 {
                            return err(line, format!("set: :{} and :{} together", given[0], given[1]));
                        }
                        mods.extend(given.into_iter().map(str::to_string));
                    }
                    let name = a.string("variable name")?;
                    let value = a.string("value")?;
                    a.done()?;
                    if !super::is_identifier(&name) {
                        return err(line, format!("set: invalid variable name \"{name}\""));
                    }
                    Cmd::Set {
                        name: name.to_ascii_lowercase(),
                        value,
                        mods,
                    }
                }
                "setflag" | "addflag" | "removeflag" => {
                    self.need("imap4flags", line, &name)?;
                    let mut a = self.args(&mut g)?;
                    let flags = a.strs("flag list")?;
                    a.done()?;
                    let op = match name.as_str() {
                        "setflag" => FlagOp::Set,
                        "addflag" => FlagOp::Add,
                        _ => FlagOp::Remove,
                    };
                    Cmd::Flags { op, flags }
                }
                "vacation" => {
                    self.need("vacation", line, "vacation")?;
                    let mut a = self.args(&mut g)?;
                    let days = match a.tag("days") {
                        Some(Some(Arg::Num(n))) => Some(n.saturating_mul(86_400)),
                        Some(_) => return err(line, "vacation: :days needs a number"),
                        None => None,
                    };
                    let seconds = match a.tag("seconds") {
                        Some(Some(Arg::Num(n))) => {
                            self.need("vacation-seconds", line, ":seconds")?;
                            Some(n)
                        }
                        Some(_) => return err(line, "vacation: :seconds needs a number"),
                        None => None,
                    };
                    if days.is_some() && seconds.is_some() {
                        return err(line, "vacation: :days and :seconds together");
                    }
                    let subject = a.tag_string("subject")?;
                    let from = a.tag_string("from")?;
                    let handle = a.tag_string("handle")?;
                    let addresses = a.tag_strs("addresses")?.unwrap_or_default();
                    let mime = a.has("mime");
                    let fcc = match a.tag_string("fcc")? {
                        // Cyrus 3.6 takes :fcc without `require "fcc"`;
                        // so do we, for the scripts written for it.
                        Some(mailbox) => {
                            let create = a.has("create");
                            if create {
                                self.need("mailbox", line, ":create")?;
                            }
                            let special_use = a.tag_string("specialuse")?;
                            if special_use.is_some() {
                                self.need("special-use", line, ":specialuse")?;
                            }
                            let mailbox_id = a.tag_string("mailboxid")?;
                            if mailbox_id.is_some() {
                                self.need("mailboxid", line, ":mailboxid")?;
                            }
                            let flags = self.flags_tag(&mut a)?.unwrap_or_default();
                            Some(Fcc {
                                mailbox,
                                create,
                                flags,
                                special_use,
                                mailbox_id,
                            })
                        }
                        None => None,
                    };
                    let reason = a.string("reason")?;
                    a.done()?;
                    Cmd::Vacation(Vacation {
                        fcc,
                        period: days.or(seconds),
                        subject,
                        from,
                        handle,
                        addresses,
                        mime,
                        reason,
                    })
                }
                _ => return err(line, format!("Unknown command: {name}")),
            };
            out.push(cmd);
        }
        Ok(out)
    }

    fn flags_tag(&self, a: &mut Args) -> Result<Option<Vec<String>>, ParseError> {
        match a.tag("flags") {
            None => Ok(None),
            Some(Some(Arg::Strs(l, _))) => {
                self.need("imap4flags", a.line, ":flags")?;
                Ok(Some(l))
            }
            Some(_) => err(a.line, format!("{}: :flags needs a string list", a.name)),
        }
    }

    /// RFC 6009's tags of `redirect`.
    fn redirect_dsn(&self, a: &mut Args) -> Result<RedirectDsn, ParseError> {
        let line = a.line;
        let notify = a.tag_string("notify")?;
        let ret = a.tag_string("ret")?;
        if notify.is_some() || ret.is_some() {
            self.need("redirect-dsn", line, if notify.is_some() { ":notify" } else { ":ret" })?;
        }
        if let Some(n) = &notify {
            let words: Vec<String> = n.split(',').map(|w| w.trim().to_ascii_uppercase()).collect();
            let ok = words == ["NEVER"] || words.iter().all(|w| matches!(w.as_str(), "SUCCESS" | "FAILURE" | "DELAY"));
            if !ok && !n.contains("${") {
                return err(
                    line,
                    format!("redirect: :notify must be NEVER or SUCCESS, FAILURE, DELAY, not \"{n}\""),
                );
            }
        }
        if let Some(r) = &ret {
            if !matches!(r.to_ascii_uppercase().as_str(), "FULL" | "HDRS") && !r.contains("${") {
                return err(line, format!("redirect: :ret must be FULL or HDRS, not \"{r}\""));
            }
        }
        let relative = match a.tag("bytimerelative") {
            None => None,
            Some(Some(Arg::Num(n))) => Some(i64::try_from(n).unwrap_or(i64::MAX)),
            Some(_) => return err(line, "redirect: :bytimerelative needs a number"),
        };
        let absolute = a.tag_string("bytimeabsolute")?;
        let mode = a.tag_string("bymode")?;
        let trace = a.has("bytrace");
        let time = match (relative, &absolute) {
            (Some(_), Some(_)) => return err(line, "redirect: :bytimerelative and :bytimeabsolute together"),
            (Some(n), None) => Some((n, false)),
            (None, Some(t)) => Some((
                crate::util::codec::rfc3339(t)
                    .or_else(|| crate::daemon::imapd::sort::parse_date_zone(t).map(|(t, _)| t))
                    .ok_or(ParseError {
                        line,
                        msg: format!("redirect: :bytimeabsolute \"{t}\" is not a date"),
                    })?,
                true,
            )),
            (None, None) if mode.is_some() || trace => return err(line, "redirect: :bymode or :bytrace without a :bytime"),
            (None, None) => None,
        };
        if time.is_some() {
            self.need("redirect-deliverby", line, ":bytime")?;
        }
        let returns = match mode.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("notify") => false,
            Some("return") => true,
            Some(m) => return err(line, format!("redirect: :bymode must be notify or return, not \"{m}\"")),
        };
        Ok(RedirectDsn {
            notify,
            ret,
            by: time.map(|(time, absolute)| ByTime {
                time,
                absolute,
                returns,
                trace,
            }),
        })
    }

    /// The draft notify's `:low`, `:normal`, `:high` (3, 2, 1).
    fn draft_priority(&self, a: &mut Args) -> Result<Option<u8>, ParseError> {
        let given: Vec<u8> = [("high", 1), ("normal", 2), ("low", 3)]
            .into_iter()
            .filter(|(t, _)| a.has(t))
            .map(|(_, p)| p)
            .collect();
        match given[..] {
            [] => Ok(None),
            [p] => Ok(Some(p)),
            _ => err(a.line, format!("{}: more than one priority", a.name)),
        }
    }

    /// RFC 5260 6: `:index n` and `:last`.
    fn index_tag(&self, a: &mut Args) -> Result<Option<Index>, ParseError> {
        let n = match a.tag("index") {
            None => None,
            Some(Some(Arg::Num(n))) if n > 0 => {
                self.need("index", a.line, ":index")?;
                Some(usize::try_from(n).unwrap_or(usize::MAX))
            }
            Some(_) => return err(a.line, format!("{}: :index needs a number above 0", a.name)),
        };
        let last = a.has("last");
        match n {
            Some(n) => Ok(Some(Index { n, last })),
            None if last => err(a.line, format!("{}: :last without :index", a.name)),
            None => Ok(None),
        }
    }

    /// :comparator and the match type of a test.
    fn cmp_match(&self, a: &mut Args) -> Result<(Cmp, Match), ParseError> {
        let cmp = match a.tag("comparator") {
            None => Cmp::Casemap,
            Some(Some(Arg::Strs(l, true))) => match l[0].to_ascii_lowercase().as_str() {
                "i;ascii-casemap" => Cmp::Casemap,
                "i;octet" => Cmp::Octet,
                "i;ascii-numeric" => {
                    self.need("comparator-i;ascii-numeric", a.line, "i;ascii-numeric")?;
                    Cmp::Numeric
                }
                c => return err(a.line, format!("{}: unknown comparator \"{c}\"", a.name)),
            },
            Some(_) => return err(a.line, format!("{}: :comparator needs a string", a.name)),
        };
        let mut found: Vec<Match> = Vec::new();
        for t in ["is", "contains", "matches", "regex"] {
            if a.has(t) {
                if t == "regex" {
                    self.need("regex", a.line, ":regex")?;
                }
                found.push(match t {
                    "is" => Match::Is,
                    "contains" => Match::Contains,
                    "matches" => Match::Matches,
                    _ => Match::Regex(Vec::new()),
                });
            }
        }
        for t in ["value", "count"] {
            match a.tag(t) {
                None => {}
                Some(Some(Arg::Strs(l, true))) => {
                    self.need("relational", a.line, &format!(":{t}"))?;
                    let rel = match l[0].to_ascii_lowercase().as_str() {
                        "gt" => Rel::Gt,
                        "ge" => Rel::Ge,
                        "lt" => Rel::Lt,
                        "le" => Rel::Le,
                        "eq" => Rel::Eq,
                        "ne" => Rel::Ne,
                        o => return err(a.line, format!("{}: unknown relation \"{o}\"", a.name)),
                    };
                    found.push(if t == "value" { Match::Value(rel) } else { Match::Count(rel) });
                }
                Some(_) => return err(a.line, format!("{}: :{t} needs a string", a.name)),
            }
        }
        if found.len() > 1 {
            return err(a.line, format!("{}: more than one match type", a.name));
        }
        Ok((cmp, found.pop().unwrap_or(Match::Is)))
    }

    fn addr_part(&self, a: &mut Args) -> Result<AddrPart, ParseError> {
        let mut found = Vec::new();
        for (t, p) in [
            ("all", AddrPart::All),
            ("localpart", AddrPart::Local),
            ("domain", AddrPart::Domain),
            ("user", AddrPart::User),
            ("detail", AddrPart::Detail),
        ] {
            if a.has(t) {
                if matches!(p, AddrPart::User | AddrPart::Detail) {
                    self.need("subaddress", a.line, &format!(":{t}"))?;
                }
                found.push(p);
            }
        }
        if found.len() > 1 {
            return err(a.line, format!("{}: more than one address part", a.name));
        }
        Ok(found.pop().unwrap_or(AddrPart::All))
    }

    /// The keys, regexes compiled.
    fn keys(&self, a: &mut Args, m: &mut Match, cmp: Cmp) -> Result<Vec<String>, ParseError> {
        let keys = a.strs("key list")?;
        if let Match::Regex(res) = m {
            for k in &keys {
                let re = regex::RegexBuilder::new(k)
                    .case_insensitive(cmp == Cmp::Casemap)
                    .size_limit(1 << 20)
                    .build()
                    .or_else(|e| err(a.line, format!("{}: bad regular expression \"{k}\": {e}", a.name)))?;
                res.push(re);
            }
        }
        Ok(keys)
    }

    fn test(&mut self, mut g: Generic) -> Result<Test, ParseError> {
        let line = g.line;
        let name = g.name.clone();
        let tests = std::mem::take(&mut g.tests);
        let subs =
            |c: &mut Checker, tests: Vec<Generic>| -> Result<Vec<Test>, ParseError> { tests.into_iter().map(|t| c.test(t)).collect() };
        if !matches!(name.as_str(), "allof" | "anyof" | "not") && !tests.is_empty() {
            return err(line, format!("{name}: takes no test"));
        }
        let t = match name.as_str() {
            "true" | "false" => {
                self.args(&mut g)?.done()?;
                if name == "true" {
                    Test::True
                } else {
                    Test::False
                }
            }
            "allof" | "anyof" => {
                self.args(&mut g)?.done()?;
                if tests.is_empty() {
                    return err(line, format!("{name}: needs a test list"));
                }
                let l = subs(self, tests)?;
                if name == "allof" {
                    Test::AllOf(l)
                } else {
                    Test::AnyOf(l)
                }
            }
            "not" => {
                self.args(&mut g)?.done()?;
                if tests.len() != 1 {
                    return err(line, "not: needs one test");
                }
                Test::Not(Box::new(subs(self, tests)?.remove(0)))
            }
            "exists" => {
                let mut a = self.args(&mut g)?;
                let h = a.strs("header list")?;
                a.done()?;
                Test::Exists(h)
            }
            "mailboxexists" => {
                self.need("mailbox", line, "mailboxexists")?;
                let mut a = self.args(&mut g)?;
                let names = a.strs("mailbox list")?;
                a.done()?;
                Test::MailboxExists(names)
            }
            "size" => {
                let mut a = self.args(&mut g)?;
                let over = a.tag("over");
                let under = a.tag("under");
                let t = match (over, under) {
                    (Some(Some(Arg::Num(n))), None) => Test::Size { over: true, limit: n },
                    (None, Some(Some(Arg::Num(n)))) => Test::Size { over: false, limit: n },
                    _ => return err(line, "size: needs one of :over or :under with a number"),
                };
                a.done()?;
                t
            }
            "header" => {
                let mut a = self.args(&mut g)?;
                let index = self.index_tag(&mut a)?;
                let (cmp, mut m) = self.cmp_match(&mut a)?;
                let headers = a.strs("header list")?;
                let keys = self.keys(&mut a, &mut m, cmp)?;
                a.done()?;
                Test::Header {
                    index,
                    cmp,
                    m,
                    headers,
                    keys,
                }
            }
            "specialuse_exists" => {
                self.need("special-use", line, "specialuse_exists")?;
                let mut a = self.args(&mut g)?;
                let mailbox = if a.pos.len() > 1 { Some(a.string("mailbox name")?) } else { None };
                let uses = a.strs("special-use list")?;
                a.done()?;
                Test::SpecialUseExists { mailbox, uses }
            }
            "mailboxidexists" => {
                self.need("mailboxid", line, "mailboxidexists")?;
                let mut a = self.args(&mut g)?;
                let ids = a.strs("mailbox id list")?;
                a.done()?;
                Test::MailboxIdExists(ids)
            }
            "metadata" | "servermetadata" => {
                let server = name == "servermetadata";
                self.need(if server { "servermetadata" } else { "mboxmetadata" }, line, &name)?;
                let mut a = self.args(&mut g)?;
                let (cmp, mut m) = self.cmp_match(&mut a)?;
                let mailbox = if server { None } else { Some(a.string("mailbox name")?) };
                let entry = a.string("annotation name")?;
                let keys = self.keys(&mut a, &mut m, cmp)?;
                a.done()?;
                Test::Metadata {
                    cmp,
                    m,
                    mailbox,
                    entry,
                    keys,
                }
            }
            "metadataexists" | "servermetadataexists" => {
                let server = name == "servermetadataexists";
                self.need(if server { "servermetadata" } else { "mboxmetadata" }, line, &name)?;
                let mut a = self.args(&mut g)?;
                let mailbox = if server { None } else { Some(a.string("mailbox name")?) };
                let entries = a.strs("annotation names")?;
                a.done()?;
                Test::MetadataExists { mailbox, entries }
            }
            "valid_notify_method" => {
                self.need("enotify", line, &name)?;
                let mut a = self.args(&mut g)?;
                let uris = a.strs("notification URIs")?;
                a.done()?;
                Test::ValidNotifyMethod(uris)
            }
            "notify_method_capability" => {
                self.need("enotify", line, &name)?;
                let mut a = self.args(&mut g)?;
                let (cmp, mut m) = self.cmp_match(&mut a)?;
                let uri = a.string("notification URI")?;
                let capability = a.string("capability")?;
                let keys = self.keys(&mut a, &mut m, cmp)?;
                a.done()?;
                Test::NotifyMethodCapability {
                    cmp,
                    m,
                    uri,
                    capability,
                    keys,
                }
            }
            "ihave" => {
                self.need("ihave", line, "ihave")?;
                let mut a = self.args(&mut g)?;
                let exts = a.strs("capability list")?;
                a.done()?;
                let exts: Vec<String> = exts.iter().map(|e| e.to_ascii_lowercase()).collect();
                let have = exts.iter().all(|e| self.supported(e));
                Test::Ihave { exts, have }
            }
            "environment" => {
                self.need("environment", line, "environment")?;
                let mut a = self.args(&mut g)?;
                let (cmp, mut m) = self.cmp_match(&mut a)?;
                let name = a.string("name")?.to_ascii_lowercase();
                let keys = self.keys(&mut a, &mut m, cmp)?;
                a.done()?;
                Test::Environment { cmp, m, name, keys }
            }
            "duplicate" => {
                self.need("duplicate", line, "duplicate")?;
                let mut a = self.args(&mut g)?;
                let handle = a.tag_string("handle")?.unwrap_or_default();
                let id = match (a.tag_string("header")?, a.tag_string("uniqueid")?) {
                    (None, None) => DupId::MessageId,
                    (Some(h), None) => DupId::Header(h),
                    (None, Some(u)) => DupId::Unique(u),
                    _ => return err(line, "duplicate: :header and :uniqueid together"),
                };
                let seconds = match a.tag("seconds") {
                    None => None,
                    Some(Some(Arg::Num(n))) => Some(n),
                    Some(_) => return err(line, "duplicate: :seconds needs a number"),
                };
                let last = a.has("last");
                a.done()?;
                Test::Duplicate { handle, id, seconds, last }
            }
            "address" | "envelope" => {
                if name == "envelope" {
                    self.need("envelope", line, "envelope")?;
                }
                let mut a = self.args(&mut g)?;
                let index = if name == "address" { self.index_tag(&mut a)? } else { None };
                let part = self.addr_part(&mut a)?;
                let (cmp, mut m) = self.cmp_match(&mut a)?;
                let headers = a.strs("header list")?;
                let keys = self.keys(&mut a, &mut m, cmp)?;
                a.done()?;
                if name == "envelope" {
                    for h in &headers {
                        if !matches!(h.to_ascii_lowercase().as_str(), "from" | "to") {
                            return err(line, format!("envelope: unknown envelope part \"{h}\""));
                        }
                    }
                    Test::Envelope {
                        part,
                        cmp,
                        m,
                        parts: headers,
                        keys,
                    }
                } else {
                    Test::Address {
                        index,
                        part,
                        cmp,
                        m,
                        headers,
                        keys,
                    }
                }
            }
            "body" => {
                self.need("body", line, "body")?;
                let mut a = self.args(&mut g)?;
                let (cmp, mut m) = self.cmp_match(&mut a)?;
                let raw = a.has("raw");
                let text = a.has("text");
                let content = a.tag_strs("content")?;
                let transform = match (raw, text, content) {
                    (true, false, None) => BodyTransform::Raw,
                    (false, _, None) => BodyTransform::Content(vec!["text".into()]),
                    (false, false, Some(l)) => BodyTransform::Content(l),
                    _ => return err(line, "body: more than one of :raw, :content, :text"),
                };
                let keys = self.keys(&mut a, &mut m, cmp)?;
                a.done()?;
                Test::Body { cmp, m, transform, keys }
            }
            "string" => {
                self.need("variables", line, "string")?;
                let mut a = self.args(&mut g)?;
                let (cmp, mut m) = self.cmp_match(&mut a)?;
                let source = a.strs("source list")?;
                let keys = self.keys(&mut a, &mut m, cmp)?;
                a.done()?;
                Test::Str { cmp, m, source, keys }
            }
            "date" | "currentdate" => {
                self.need("date", line, &name)?;
                let mut a = self.args(&mut g)?;
                let index = if name == "date" { self.index_tag(&mut a)? } else { None };
                let fixed = a.tag_string("zone")?;
                let original = a.has("originalzone");
                let zone = match (fixed, original) {
                    (None, false) => Zone::Local,
                    (None, true) if name == "date" => Zone::Original,
                    (Some(z), false) => Zone::Fixed(zone_minutes(&z).ok_or(ParseError {
                        line,
                        msg: format!("{name}: invalid zone \"{z}\""),
                    })?),
                    _ => return err(line, format!("{name}: :zone and :originalzone together")),
                };
                let (cmp, mut m) = self.cmp_match(&mut a)?;
                let header = if name == "date" { Some(a.string("header name")?) } else { None };
                let part = a.string("date part")?.to_ascii_lowercase();
                if !super::DATE_PARTS.contains(&part.as_str()) {
                    return err(line, format!("{name}: unknown date part \"{part}\""));
                }
                let keys = self.keys(&mut a, &mut m, cmp)?;
                a.done()?;
                Test::Date {
                    index,
                    zone,
                    cmp,
                    m,
                    header,
                    part,
                    keys,
                }
            }
            "hasflag" => {
                self.need("imap4flags", line, "hasflag")?;
                let mut a = self.args(&mut g)?;
                let (cmp, mut m) = self.cmp_match(&mut a)?;
                let keys = self.keys(&mut a, &mut m, cmp)?;
                a.done()?;
                Test::HasFlag { cmp, m, keys }
            }
            _ => return err(line, format!("Unknown test: {name}")),
        };
        Ok(t)
    }
}

/// A `:zone` value, `+hhmm` or `-hhmm`: minutes east of UTC.
fn zone_minutes(z: &str) -> Option<i32> {
    let b = z.as_bytes();
    if b.len() != 5 || !matches!(b[0], b'+' | b'-') || !b[1..].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let (h, m): (i32, i32) = (z[1..3].parse().ok()?, z[3..].parse().ok()?);
    if h > 14 || m > 59 {
        return None;
    }
    Some(if b[0] == b'-' { -(h * 60 + m) } else { h * 60 + m })
}
