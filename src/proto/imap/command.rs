//! IMAP command parsing (RFC 3501 §9 grammar, RFC 9051 where it widens
//! it), sans I/O.  Input is one whole command as received: the line(s)
//! and any literals inline (`{n}\r\n<n bytes>`), without the final CRLF.
//! `literal_marker` tells the reader, line by line, whether a literal
//! follows and whether it must send a continuation first.

mod items;
pub mod xapply;
pub use items::parse_section;
use items::{att_annotate, fetch_att, search_keys};

#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub tag: Option<String>,
    pub text: String,
}

fn err<T>(text: impl Into<String>) -> Result<T, String> {
    Err(text.into())
}

/// `{n}` (synchronising), `{n+}` (LITERAL+), `~{n}` (BINARY) at the end
/// of a line: (size, non-synchronising).
/// SEARCH's and SORT's `RETURN (options) ` (RFC 4731, 5267), upper-cased;
/// None without it.
fn return_options(p: &mut P) -> Result<Option<Vec<String>>, String> {
    if !(p.s[p.i..].len() >= 6 && p.s[p.i..p.i + 6].eq_ignore_ascii_case(b"RETURN")) {
        return Ok(None);
    }
    p.atom()?;
    p.sp()?;
    p.expect(b'(')?;
    let mut v = Vec::new();
    while !p.eat(b')') {
        v.push(p.atom()?.to_ascii_uppercase());
        p.eat(b' ');
        if p.at_end() {
            return err("Missing ')'");
        }
    }
    p.sp()?;
    Ok(Some(v))
}

pub fn literal_marker(line: &[u8]) -> Option<(u64, bool)> {
    let l = line.strip_suffix(b"}")?;
    let open = l.iter().rposition(|&c| c == b'{')?;
    let inner = &l[open + 1..];
    let (digits, nonsync) = match inner.strip_suffix(b"+") {
        Some(d) => (d, true),
        None => match inner.strip_suffix(b"-") {
            Some(d) => (d, true),
            None => (inner, false),
        },
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok().map(|n| (n, nonsync))
}

/// A sequence set; `u32::MAX` stands for `*`.  `$` is `Saved`.
#[derive(Debug, Clone, PartialEq)]
pub enum SeqSet {
    Ranges(Vec<(u32, u32)>),
    Saved,
}

impl SeqSet {
    /// Whether `n` is in the set, with `*` = `max`.
    pub fn contains(&self, n: u32, max: u32) -> bool {
        match self {
            SeqSet::Ranges(r) => r.iter().any(|&(a, b)| {
                let a = if a == u32::MAX { max } else { a };
                let b = if b == u32::MAX { max } else { b };
                let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
                n >= lo && n <= hi
            }),
            SeqSet::Saved => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Section {
    Full,
    Header,
    HeaderFields(Vec<String>),
    HeaderFieldsNot(Vec<String>),
    Text,
    Mime,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FetchItem {
    Flags,
    Uid,
    InternalDate,
    Rfc822Size,
    Envelope,
    Body,
    BodyStructure,
    Rfc822,
    Rfc822Header,
    Rfc822Text,
    /// BODY[path.section]<offset.len>, peek
    BodySection {
        path: Vec<u32>,
        section: Section,
        partial: Option<(u32, u32)>,
        peek: bool,
    },
    Binary {
        path: Vec<u32>,
        partial: Option<(u32, u32)>,
        peek: bool,
    },
    BinarySize(Vec<u32>),
    ModSeq,
    /// CREATEDMODSEQ (Cyrus's X-CREATEDMODSEQ): the MODSEQ the message
    /// was stored with.
    CreatedModSeq,
    SaveDate,
    EmailId,
    /// OBJECTID (RFC 8474): always NIL here (no conversations), as Cyrus
    /// without `conversations`.
    ThreadId,
    /// PREVIEW (RFC 8970), `(LAZY)` or not: computed either way.
    Preview,
    /// DIGEST.SHA1 (Cyrus's, capability DIGEST=SHA1): the message's GUID.
    DigestSha1,
    /// ANNOTATION (entries attribs) (RFC 5257): entry patterns (`*` and
    /// `%` wildcards) and attribute names as given.
    Annotation {
        entries: Vec<String>,
        attribs: Vec<String>,
    },
}

/// RFC 5257 att-annotate: entries, each with (attribute, value) pairs; a
/// NIL value removes.
pub type AnnotationSet = Vec<(String, Vec<(String, Option<Vec<u8>>)>)>;

#[derive(Debug, Clone, PartialEq)]
pub enum SearchKey {
    All,
    Seq(SeqSet),
    Uid(SeqSet),
    Flag(u32, bool),
    Keyword(String, bool),
    New,
    Old,
    Recent(bool),
    Before(i64),
    On(i64),
    Since(i64),
    SentBefore(i64),
    SentOn(i64),
    SentSince(i64),
    Larger(u64),
    Smaller(u64),
    /// WITHIN (RFC 5032): internal date at least / at most n seconds ago.
    Older(u64),
    Younger(u64),
    /// SAVEDATE (RFC 8514).
    SavedBefore(i64),
    SavedOn(i64),
    SavedSince(i64),
    SaveDateSupported,
    /// OBJECTID (RFC 8474).
    EmailId(String),
    ThreadId(String),
    Header(String, String),
    Body(String),
    Text(String),
    ModSeq(u64),
    /// ANNOTATION entry attrib value (RFC 5257).
    Annotation(String, String, Vec<u8>),
    Not(Box<SearchKey>),
    Or(Box<SearchKey>, Box<SearchKey>),
    And(Vec<SearchKey>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct AppendMsg {
    pub flags: Vec<String>,
    pub date: Option<(i64, i32)>,
    pub data: Vec<u8>,
    /// CATENATE (RFC 4469): the parts the message is made of, in order;
    /// empty for a plain literal (then `data` is the message).
    pub catenate: Vec<CatPart>,
    /// ANNOTATION (RFC 5257) to set on the new message.
    pub annotations: AnnotationSet,
}

/// One part of a CATENATE: text given, or a message (part) by IMAP URL.
#[derive(Debug, Clone, PartialEq)]
pub enum CatPart {
    Text(Vec<u8>),
    Url(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum StoreMode {
    Add,
    Remove,
    Replace,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Capability,
    Noop,
    Logout,
    StartTls,
    Authenticate(String, Option<String>),
    Login(String, Vec<u8>),
    Select(String, SelectParams),
    Examine(String, SelectParams),
    /// CREATE mailbox, with a partition (Cyrus's `CREATE name partition`
    /// or `(PARTITION name)`, for admins) and special uses (`(USE (\Sent))`,
    /// RFC 6154).
    Create(String, Option<String>, Vec<String>),
    Delete(String),
    /// RENAME old new [partition or server!partition] (Cyrus's admin form;
    /// another server makes it an XFER).
    Rename(String, String, Option<String>),
    Subscribe(String),
    Unsubscribe(String),
    /// reference, patterns, LIST-EXTENDED selection and return options
    List {
        reference: String,
        patterns: Vec<String>,
        select: Vec<String>,
        ret: Vec<String>,
    },
    Lsub(String, String),
    /// Cyrus's SCAN reference pattern text: LIST of the mailboxes with a
    /// message whose text has `text`.
    Scan(String, String, String),
    Status(String, Vec<String>),
    Append(String, Vec<AppendMsg>),
    Check,
    Close,
    Unselect,
    Expunge(Option<SeqSet>),
    Search {
        ret: Option<Vec<String>>,
        charset: Option<String>,
        key: SearchKey,
    },
    /// SORT (criteria) charset keys (RFC 5256); REVERSE is a flag on the
    /// criterion after it.
    Sort {
        /// ESORT (RFC 5267): `RETURN (...)` options; None for a plain SORT.
        ret: Option<Vec<String>>,
        criteria: Vec<(String, bool)>,
        /// The (entry, attribute) of each ANNOTATION criterion, in order
        /// (RFC 5257).
        annotations: Vec<(String, String)>,
        charset: String,
        key: SearchKey,
    },
    /// THREAD algorithm charset keys (RFC 5256).
    Thread {
        algorithm: String,
        charset: String,
        key: SearchKey,
    },
    Fetch {
        set: SeqSet,
        items: Vec<FetchItem>,
        changedsince: Option<u64>,
        vanished: bool,
    },
    Store {
        set: SeqSet,
        mode: StoreMode,
        silent: bool,
        flags: Vec<String>,
        unchangedsince: Option<u64>,
    },
    /// STORE set [(UNCHANGEDSINCE n)] ANNOTATION (...) (RFC 5257).
    StoreAnnotation {
        set: SeqSet,
        annotations: AnnotationSet,
        unchangedsince: Option<u64>,
    },
    Copy(SeqSet, String),
    Move(SeqSet, String),
    Idle,
    Namespace,
    /// URLAUTH (RFC 4467): GENURLAUTH (url, mechanism)..., RESETKEY
    /// [mailbox [mechanisms]], URLFETCH url...
    GenUrlAuth(Vec<(String, String)>),
    ResetKey(Option<String>, Vec<String>),
    /// URLFETCH's URLs, each with URLAUTH=BINARY's parameters when given
    /// in its `(url params)` form.
    UrlFetch(Vec<(String, Option<Vec<String>>)>),
    Id,
    Enable(Vec<String>),
    GetQuota(String),
    GetQuotaRoot(String),
    SetQuota(String, Vec<(String, i64)>),
    GetAcl(String),
    MyRights(String),
    /// SETACL mailbox identifier rights (RFC 4314).
    SetAcl(String, String, String),
    /// GETMETADATA [(MAXSIZE n DEPTH d)] mailbox entries (RFC 5464).
    GetMetadata {
        mailbox: String,
        entries: Vec<String>,
        maxsize: Option<u64>,
        depth: String,
    },
    /// SETMETADATA mailbox (entry value ...); None deletes.
    SetMetadata(String, Vec<(String, Option<Vec<u8>>)>),
    /// Cyrus's RECONSTRUCT mailbox [RECURSIVE] (admins).
    Reconstruct(String, bool),
    DeleteAcl(String, String),
    ListRights(String, String),
    Compress(String),
    /// Cyrus's XFER mailbox server [partition] (admins): move a mailbox,
    /// or a user with all their mailboxes, to another back end.
    Xfer(String, String, Option<String>),
    /// Cyrus's LOCALDELETE mailbox (admins): delete without telling the
    /// MUPDATE master.
    LocalDelete(String),
    /// Cyrus's MUPDATEPUSH mailbox (admins): tell the master again.
    MupdatePush(String),
    /// The receiving half of XFER (see `xapply`).
    XApply(xapply::XApply),
    /// Cyrus's replication commands over IMAP (admins), as a Cyrus back
    /// end sends them when it moves a user here by XFER: SYNCGET or
    /// SYNCAPPLY (`apply`), the dlist `KEY value` after it.
    Sync {
        apply: bool,
        body: Vec<u8>,
    },
    /// SYNCRESTART: forget what earlier SYNCAPPLY RESERVE/MESSAGE left.
    SyncRestart,
}

/// SELECT/EXAMINE parameters: CONDSTORE and QRESYNC (RFC 7162).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SelectParams {
    pub condstore: bool,
    /// (uidvalidity, modseq, known UIDs).
    pub qresync: Option<(u32, u64, Option<SeqSet>)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub tag: String,
    pub uid: bool,
    /// The command name as given, upper-cased (for replies).
    pub name: String,
    pub kind: Kind,
}

struct P<'a> {
    s: &'a [u8],
    i: usize,
}

fn is_atom_char(c: u8) -> bool {
    c > b' ' && c < 0x7f && !b"(){%*\"\\]".contains(&c)
}

impl<'a> P<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }
    fn sp(&mut self) -> Result<(), String> {
        if self.peek() == Some(b' ') {
            self.i += 1;
            Ok(())
        } else if self.at_end() {
            err("Missing required argument")
        } else {
            err("Invalid whitespace")
        }
    }
    /// Everything left (the parse ends here).
    fn rest(&mut self) -> &'a [u8] {
        let r = &self.s[self.i..];
        self.i = self.s.len();
        r
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            err(format!("Expected '{}'", c as char))
        }
    }
    /// An atom, with `extra` also allowed (e.g. `]` or wildcards).
    fn atom_with(&mut self, extra: &[u8]) -> Result<&'a [u8], String> {
        let st = self.i;
        while let Some(c) = self.peek() {
            if is_atom_char(c) || extra.contains(&c) {
                self.i += 1;
            } else {
                break;
            }
        }
        if self.i == st {
            return err("Missing required argument");
        }
        Ok(&self.s[st..self.i])
    }
    fn atom(&mut self) -> Result<String, String> {
        Ok(String::from_utf8_lossy(self.atom_with(b"]")?).into_owned())
    }
    /// A parenthesised list, nested lists included; returns what is
    /// between the outer parentheses.
    fn parenthesized(&mut self) -> Result<&'a [u8], String> {
        self.expect(b'(')?;
        let st = self.i;
        let mut depth = 1;
        while depth > 0 {
            match self.peek() {
                None => return err("Missing ')'"),
                Some(b'(') => depth += 1,
                Some(b')') => depth -= 1,
                _ => {}
            }
            self.i += 1;
        }
        Ok(&self.s[st..self.i - 1])
    }

    fn quoted(&mut self) -> Result<Vec<u8>, String> {
        self.expect(b'"')?;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None | Some(b'\r') | Some(b'\n') => return err("Invalid quoted string"),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.i += 1;
                    match self.peek() {
                        // RFC 3501 quotes only '"' and '\\'; Cyrus takes
                        // any quoted byte as itself, and clients rely on it.
                        Some(c) if c != b'\r' && c != b'\n' => {
                            out.push(c);
                            self.i += 1;
                        }
                        _ => return err("Invalid quoted string"),
                    }
                }
                Some(c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }
    fn literal(&mut self) -> Result<Vec<u8>, String> {
        self.eat(b'~');
        self.expect(b'{')?;
        let st = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        let n: usize = std::str::from_utf8(&self.s[st..self.i])
            .ok()
            .and_then(|d| d.parse().ok())
            .ok_or("Invalid literal")?;
        let _ = self.eat(b'+') || self.eat(b'-');
        self.expect(b'}')?;
        if !self.s[self.i..].starts_with(b"\r\n") {
            return err("Invalid literal");
        }
        self.i += 2;
        if self.s.len() - self.i < n {
            return err("Invalid literal");
        }
        let v = self.s[self.i..self.i + n].to_vec();
        self.i += n;
        Ok(v)
    }
    fn string(&mut self) -> Result<Vec<u8>, String> {
        match self.peek() {
            Some(b'"') => self.quoted(),
            Some(b'{') | Some(b'~') => self.literal(),
            _ => err("Missing required argument"),
        }
    }
    fn astring(&mut self) -> Result<Vec<u8>, String> {
        match self.peek() {
            Some(b'"') | Some(b'{') => self.string(),
            _ => Ok(self.atom_with(b"]")?.to_vec()),
        }
    }
    /// `name value` pairs up to the closing `)` (the `(` taken), each
    /// value an nstring (NIL is None): SETMETADATA's entries, RFC 5257's
    /// attributes.
    fn name_values(&mut self) -> Result<Vec<(String, Option<Vec<u8>>)>, String> {
        let mut v = Vec::new();
        loop {
            let name = self.astr()?;
            self.sp()?;
            let value = if self.peek().is_some_and(|c| c == b'N' || c == b'n') {
                if !self.atom()?.eq_ignore_ascii_case("NIL") {
                    return err("Invalid value");
                }
                None
            } else {
                Some(self.string()?)
            };
            v.push((name, value));
            if self.eat(b')') {
                return Ok(v);
            }
            self.sp()?;
        }
    }
    fn astr(&mut self) -> Result<String, String> {
        let v = self.astring()?;
        String::from_utf8(v).map_err(|_| "Invalid characters".to_string())
    }
    /// list-mailbox: atoms with wildcards, or a string.
    fn list_mailbox(&mut self) -> Result<String, String> {
        match self.peek() {
            Some(b'"') | Some(b'{') => String::from_utf8(self.string()?).map_err(|_| "Invalid characters".to_string()),
            _ => Ok(String::from_utf8_lossy(self.atom_with(b"%*]")?).into_owned()),
        }
    }
    fn number(&mut self) -> Result<u64, String> {
        let st = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        std::str::from_utf8(&self.s[st..self.i])
            .ok()
            .filter(|d| !d.is_empty() && d.len() < 20)
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| "Invalid number".to_string())
    }
    fn nz32(&mut self) -> Result<u32, String> {
        match self.number()? {
            n @ 1..=0xffff_ffff => Ok(n as u32),
            _ => err("Invalid sequence number"),
        }
    }
    fn seq_number(&mut self) -> Result<u32, String> {
        if self.eat(b'*') {
            Ok(u32::MAX)
        } else {
            self.nz32()
        }
    }
    fn seq_set(&mut self) -> Result<SeqSet, String> {
        if self.eat(b'$') {
            return Ok(SeqSet::Saved);
        }
        let mut v = Vec::new();
        loop {
            let a = self
                .seq_number()
                .map_err(|_| "Invalid sequence in STORE/FETCH/COPY/SEARCH".to_string())?;
            let b = if self.eat(b':') { self.seq_number()? } else { a };
            v.push((a, b));
            if v.len() > 100_000 {
                return err("Sequence set too long");
            }
            if !self.eat(b',') {
                break;
            }
        }
        Ok(SeqSet::Ranges(v))
    }
    fn flag_list(&mut self) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        let paren = self.eat(b'(');
        if paren && self.eat(b')') {
            return Ok(out);
        }
        loop {
            let st = self.i;
            self.eat(b'\\');
            let a = self.atom_with(b"")?;
            let _ = a;
            out.push(String::from_utf8_lossy(&self.s[st..self.i]).into_owned());
            if !paren || !self.eat(b' ') {
                break;
            }
        }
        if paren {
            self.expect(b')')?;
        }
        Ok(out)
    }
    fn date(&mut self) -> Result<i64, String> {
        let q = self.eat(b'"');
        let st = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == b'-') {
            self.i += 1;
        }
        let s = String::from_utf8_lossy(&self.s[st..self.i]).into_owned();
        if q {
            self.expect(b'"')?;
        }
        let p: Vec<&str> = s.split('-').collect();
        if p.len() != 3 {
            return err("Invalid date");
        }
        let d: u32 = p[0].parse().map_err(|_| "Invalid date")?;
        let m = crate::util::codec::MONTHS
            .iter()
            .position(|x| x.eq_ignore_ascii_case(p[1]))
            .ok_or("Invalid date")? as u32
            + 1;
        let y: i64 = p[2].parse().map_err(|_| "Invalid date")?;
        if !(1..=31).contains(&d) || p[2].len() != 4 {
            return err("Invalid date");
        }
        Ok(crate::util::codec::from_civil(y, m, d, 0, 0, 0))
    }
    /// `"dd-Mon-yyyy hh:mm:ss +zzzz"` → (utc secs, zone minutes).
    fn date_time(&mut self) -> Result<(i64, i32), String> {
        let v = self.quoted()?;
        let s = String::from_utf8_lossy(&v);
        let s = s.trim_start();
        let parts: Vec<&str> = s.split(' ').collect();
        if parts.len() != 3 {
            return err("Invalid date-time");
        }
        let dmy: Vec<&str> = parts[0].split('-').collect();
        let hms: Vec<&str> = parts[1].split(':').collect();
        // The zone is sliced by bytes below: ASCII only.
        if dmy.len() != 3 || hms.len() != 3 || parts[2].len() != 5 || !parts[2].is_ascii() {
            return err("Invalid date-time");
        }
        let n = |x: &str| x.parse::<u32>().map_err(|_| "Invalid date-time".to_string());
        let d = n(dmy[0])?;
        let m = crate::util::codec::MONTHS
            .iter()
            .position(|x| x.eq_ignore_ascii_case(dmy[1]))
            .ok_or("Invalid date-time")? as u32
            + 1;
        let y = n(dmy[2])? as i64;
        let (hh, mm, ss) = (n(hms[0])?, n(hms[1])?, n(hms[2])?);
        if !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
            return err("Invalid date-time");
        }
        let z = parts[2];
        let sign = match &z[..1] {
            "+" => 1,
            "-" => -1,
            _ => return err("Invalid date-time"),
        };
        let zh = n(&z[1..3])? as i32;
        let zm = n(&z[3..5])? as i32;
        let tz = sign * (zh * 60 + zm);
        Ok((crate::util::codec::from_civil(y, m, d, hh, mm, ss) - tz as i64 * 60, tz))
    }
}

fn mailbox(p: &mut P) -> Result<String, String> {
    let v = p.astring()?;
    let s = String::from_utf8(v).map_err(|_| "Invalid mailbox name".to_string())?;
    // "INBOX" is case-insensitive (RFC 3501 5.1).
    if s.eq_ignore_ascii_case("INBOX") {
        return Ok("INBOX".into());
    }
    Ok(s)
}

/// Parses one command.
pub fn parse(input: &[u8]) -> Result<Command, ParseError> {
    let mut p = P { s: input, i: 0 };
    let tag = match p.atom_with(b"") {
        Ok(t) if !t.contains(&b'+') => String::from_utf8_lossy(t).into_owned(),
        _ => {
            return Err(ParseError {
                tag: None,
                text: "Invalid tag".into(),
            })
        }
    };
    let fail = |tag: &str, t: String| ParseError {
        tag: Some(tag.to_string()),
        text: t,
    };
    if p.sp().is_err() {
        return Err(fail(&tag, "Null command".into()));
    }
    let mut name = match p.atom() {
        Ok(n) => n.to_ascii_uppercase(),
        Err(_) => return Err(fail(&tag, "Null command".into())),
    };
    let mut uid = false;
    if name == "UID" {
        uid = true;
        if p.sp().is_err() {
            return Err(fail(&tag, "Missing argument to UID command".into()));
        }
        name = p.atom().map_err(|e| fail(&tag, e))?.to_ascii_uppercase();
    }
    let kind = parse_args(&mut p, &name, uid).map_err(|e| {
        if e == "Missing required argument" {
            fail(&tag, format!("Missing required argument to {}", cap_name(&name)))
        } else {
            fail(&tag, e)
        }
    })?;
    if !p.at_end() {
        let uid_ = if uid { "UID " } else { "" };
        return Err(fail(&tag, format!("Unexpected extra arguments to {uid_}{}", cap_name(&name))));
    }
    Ok(Command { tag, uid, name, kind })
}

/// Cyrus's spelling of a command name in error texts (`Select`, `Uid Fetch`).
pub fn cap_name(n: &str) -> String {
    let mut s = n.to_ascii_lowercase();
    if let Some(f) = s.get_mut(0..1) {
        f.make_ascii_uppercase();
    }
    s
}

fn parse_args(p: &mut P, name: &str, uid: bool) -> Result<Kind, String> {
    if uid
        && !matches!(
            name,
            "FETCH" | "STORE" | "COPY" | "MOVE" | "XMOVE" | "SEARCH" | "EXPUNGE" | "SORT" | "THREAD"
        )
    {
        return err("Unrecognized UID subcommand");
    }
    Ok(match name {
        "CAPABILITY" => Kind::Capability,
        "NOOP" => Kind::Noop,
        "LOGOUT" => Kind::Logout,
        "STARTTLS" => Kind::StartTls,
        "CHECK" => Kind::Check,
        "CLOSE" => Kind::Close,
        "UNSELECT" => Kind::Unselect,
        "IDLE" => Kind::Idle,
        "NAMESPACE" => Kind::Namespace,
        "GENURLAUTH" => {
            let mut v = Vec::new();
            while p.eat(b' ') {
                let u = p.astr()?;
                p.sp()?;
                v.push((u, p.atom()?.to_ascii_uppercase()));
            }
            if v.is_empty() {
                return err("Missing required argument to Genurlauth");
            }
            Kind::GenUrlAuth(v)
        }
        "RESETKEY" => {
            let mut mailbox = None;
            let mut mechs = Vec::new();
            if p.eat(b' ') {
                mailbox = Some(self::mailbox(p)?);
                while p.eat(b' ') {
                    mechs.push(p.atom()?.to_ascii_uppercase());
                }
            }
            Kind::ResetKey(mailbox, mechs)
        }
        "URLFETCH" => {
            let mut v = Vec::new();
            while p.eat(b' ') {
                if p.eat(b'(') {
                    let u = p.astr()?;
                    let mut params = Vec::new();
                    while p.eat(b' ') {
                        params.push(p.atom()?.to_ascii_uppercase());
                    }
                    p.expect(b')')?;
                    v.push((u, Some(params)));
                } else {
                    v.push((p.astr()?, None));
                }
            }
            if v.is_empty() {
                return err("Missing required argument to Urlfetch");
            }
            Kind::UrlFetch(v)
        }
        "AUTHENTICATE" => {
            p.sp()?;
            let m = p.atom()?.to_ascii_uppercase();
            let ir = if p.eat(b' ') {
                Some(String::from_utf8_lossy(p.atom_with(b"=")?).into_owned())
            } else {
                None
            };
            Kind::Authenticate(m, ir)
        }
        "LOGIN" => {
            p.sp()?;
            let u = p.astr()?;
            p.sp()?;
            let pw = p.astring()?;
            Kind::Login(u, pw)
        }
        "SELECT" | "EXAMINE" => {
            p.sp()?;
            let m = mailbox(p)?;
            let mut params = SelectParams::default();
            if p.eat(b' ') {
                p.expect(b'(')?;
                loop {
                    let a = p.atom()?.to_ascii_uppercase();
                    if a == "CONDSTORE" {
                        params.condstore = true;
                    } else if a == "QRESYNC" {
                        // (uidvalidity modseq [known-uids [seq-match]])
                        p.sp()?;
                        p.expect(b'(')?;
                        let uv = p.number()?;
                        p.sp()?;
                        let ms = p.number()?;
                        let mut known = None;
                        if p.eat(b' ') {
                            if p.peek() == Some(b'(') {
                                p.parenthesized()?;
                            } else {
                                known = Some(p.seq_set()?);
                                if p.eat(b' ') {
                                    p.parenthesized()?;
                                }
                            }
                        }
                        p.expect(b')')?;
                        if uv == 0 || uv > u32::MAX as u64 {
                            return err("Invalid QRESYNC parameter");
                        }
                        params.qresync = Some((uv as u32, ms, known));
                    } else {
                        return err(format!("Invalid {} modifier {a}", cap_name(name)));
                    }
                    if !p.eat(b' ') {
                        break;
                    }
                }
                p.expect(b')')?;
            }
            if name == "SELECT" {
                Kind::Select(m, params)
            } else {
                Kind::Examine(m, params)
            }
        }
        "CREATE" | "DELETE" | "SUBSCRIBE" | "UNSUBSCRIBE" | "GETQUOTAROOT" | "GETACL" | "MYRIGHTS" => {
            p.sp()?;
            let m = mailbox(p)?;
            let mut partition = None;
            let mut uses = Vec::new();
            if name == "CREATE" && p.eat(b' ') {
                if p.peek() == Some(b'(') {
                    // (PARTITION p) is Cyrus's, (USE (...)) RFC 6154's.
                    let list = String::from_utf8_lossy(p.parenthesized()?).into_owned();
                    let words: Vec<&str> = list.split_whitespace().collect();
                    if let Some(i) = words.iter().position(|w| w.eq_ignore_ascii_case("PARTITION")) {
                        partition = words.get(i + 1).map(|w| w.trim_matches('"').to_string());
                    }
                    if let Some(i) = words.iter().position(|w| w.eq_ignore_ascii_case("USE")) {
                        for w in &words[i + 1..] {
                            let end = w.ends_with(')');
                            let f = w.trim_matches(|c| c == '(' || c == ')');
                            if !f.is_empty() {
                                uses.push(f.to_string());
                            }
                            if end {
                                break;
                            }
                        }
                    }
                } else {
                    // Cyrus's older form: CREATE name partition.
                    partition = Some(p.astr()?);
                }
            }
            match name {
                "CREATE" => Kind::Create(m, partition, uses),
                "DELETE" => Kind::Delete(m),
                "SUBSCRIBE" => Kind::Subscribe(m),
                "UNSUBSCRIBE" => Kind::Unsubscribe(m),
                "GETQUOTAROOT" => Kind::GetQuotaRoot(m),
                "GETACL" => Kind::GetAcl(m),
                _ => Kind::MyRights(m),
            }
        }
        "GETMETADATA" => {
            p.sp()?;
            let (mut maxsize, mut depth) = (None, "0".to_string());
            if p.eat(b'(') {
                loop {
                    let o = p.atom()?.to_ascii_uppercase();
                    p.sp()?;
                    match o.as_str() {
                        "MAXSIZE" => maxsize = Some(p.number()?),
                        "DEPTH" => depth = p.atom()?.to_ascii_lowercase(),
                        _ => return err("Invalid GETMETADATA option"),
                    }
                    if p.eat(b')') {
                        break;
                    }
                    p.sp()?;
                }
                p.sp()?;
            }
            let m = mailbox(p)?;
            p.sp()?;
            let mut entries = Vec::new();
            if p.eat(b'(') {
                loop {
                    entries.push(p.astr()?);
                    if p.eat(b')') {
                        break;
                    }
                    p.sp()?;
                }
            } else {
                entries.push(p.astr()?);
            }
            Kind::GetMetadata {
                mailbox: m,
                entries,
                maxsize,
                depth,
            }
        }
        "SETMETADATA" => {
            p.sp()?;
            let m = mailbox(p)?;
            p.sp()?;
            p.expect(b'(')?;
            Kind::SetMetadata(m, p.name_values()?)
        }
        "RECONSTRUCT" => {
            p.sp()?;
            let m = mailbox(p)?;
            let recursive = if p.eat(b' ') {
                let w = p.astr()?;
                if !w.eq_ignore_ascii_case("RECURSIVE") {
                    return err("Invalid argument");
                }
                true
            } else {
                false
            };
            Kind::Reconstruct(m, recursive)
        }
        "GETQUOTA" => {
            p.sp()?;
            Kind::GetQuota(p.astr()?)
        }
        "XFER" => {
            p.sp()?;
            let m = mailbox(p)?;
            p.sp()?;
            let server = p.astr()?;
            let part = if p.eat(b' ') { Some(p.astr()?) } else { None };
            Kind::Xfer(m, server, part)
        }
        "LOCALDELETE" | "MUPDATEPUSH" => {
            p.sp()?;
            let m = mailbox(p)?;
            if name == "LOCALDELETE" {
                Kind::LocalDelete(m)
            } else {
                Kind::MupdatePush(m)
            }
        }
        "XAPPLY" => Kind::XApply(xapply::parse(p)?),
        "SYNCAPPLY" | "SYNCGET" => {
            p.sp()?;
            Kind::Sync {
                apply: name == "SYNCAPPLY",
                body: p.rest().to_vec(),
            }
        }
        "SYNCRESTART" => Kind::SyncRestart,
        "SETACL" | "DELETEACL" | "LISTRIGHTS" => {
            p.sp()?;
            let m = mailbox(p)?;
            p.sp()?;
            let id = p.astr()?;
            match name {
                "SETACL" => {
                    p.sp()?;
                    Kind::SetAcl(m, id, p.astr()?)
                }
                "DELETEACL" => Kind::DeleteAcl(m, id),
                _ => Kind::ListRights(m, id),
            }
        }
        "SETQUOTA" => {
            p.sp()?;
            let root = p.astr()?;
            p.sp()?;
            p.expect(b'(')?;
            let mut v = Vec::new();
            while !p.eat(b')') {
                let res = p.atom()?.to_ascii_uppercase();
                p.sp()?;
                // Cyrus takes -1 (or any negative) for "no limit".
                let neg = p.eat(b'-');
                let n = i64::try_from(p.number()?).unwrap_or(i64::MAX);
                v.push((res, if neg { -1 } else { n }));
                // A space or the end after each limit (cyradm 3.6 sends
                // "10STORAGE" for two resources: refused, as Cyrus does).
                if !p.eat(b' ') && !p.s[p.i..].starts_with(b")") {
                    return err("Invalid quota list in Setquota");
                }
            }
            Kind::SetQuota(root, v)
        }
        "RENAME" => {
            p.sp()?;
            let a = mailbox(p)?;
            p.sp()?;
            let b = mailbox(p)?;
            // Cyrus: RENAME old new [partition | server!partition].
            let part = if p.eat(b' ') { Some(p.astr()?) } else { None };
            Kind::Rename(a, b, part)
        }
        "LIST" | "LSUB" | "XLIST" | "RLIST" | "RLSUB" => {
            p.sp()?;
            let mut select = Vec::new();
            // RFC 5258's extended syntax (selection options, a list of
            // patterns, RETURN: any of them, even empty) is told to the
            // server as the option "EXTENDED" in `ret`.
            let mut extended = false;
            if name == "LIST" && p.eat(b'(') {
                extended = true;
                while !p.eat(b')') {
                    select.push(p.atom()?.to_ascii_uppercase());
                    p.eat(b' ');
                    if p.at_end() {
                        return err("Missing ')'");
                    }
                }
                p.sp()?;
            }
            let reference = String::from_utf8(p.astring()?).map_err(|_| "Invalid reference")?;
            p.sp()?;
            let mut patterns = Vec::new();
            if p.eat(b'(') {
                extended = true;
                loop {
                    patterns.push(p.list_mailbox()?);
                    if !p.eat(b' ') {
                        break;
                    }
                }
                p.expect(b')')?;
            } else {
                patterns.push(p.list_mailbox()?);
            }
            let mut ret = Vec::new();
            if p.eat(b' ') {
                if name == "LSUB" || name == "RLSUB" {
                    return err("Unexpected extra arguments to Lsub");
                }
                let r = p.atom()?.to_ascii_uppercase();
                if r != "RETURN" {
                    return err("Invalid list return option");
                }
                extended = true;
                p.sp()?;
                let inner = String::from_utf8_lossy(p.parenthesized()?).to_ascii_uppercase();
                // STATUS (items) stays one entry: "STATUS (MESSAGES UNSEEN)";
                // so does METADATA (entries) (RFC 9590), or METADATA entry.
                let mut it = inner.split(' ').peekable();
                while let Some(w) = it.next() {
                    if w == "STATUS" || w == "METADATA" && it.peek().is_some_and(|x| x.starts_with('(')) {
                        let mut s = String::from(w);
                        for x in it.by_ref() {
                            s.push(' ');
                            s.push_str(x);
                            if x.ends_with(')') {
                                break;
                            }
                        }
                        ret.push(s);
                    } else if w == "METADATA" {
                        ret.push(format!("METADATA {}", it.next().unwrap_or_default()));
                    } else if !w.is_empty() {
                        ret.push(w.to_string());
                    }
                }
            }
            // RLIST/RLSUB (RFC 2193, MAILBOX-REFERRALS): a back end has no
            // referrals to give, so they answer as LIST and LSUB.
            if name == "LSUB" || name == "RLSUB" {
                Kind::Lsub(reference, patterns.pop().unwrap_or_default())
            } else {
                if name == "XLIST" {
                    ret.push("XLIST".into());
                }
                if extended && name == "LIST" {
                    ret.push("EXTENDED".into());
                }
                Kind::List {
                    reference,
                    patterns,
                    select,
                    ret,
                }
            }
        }
        "SCAN" => {
            p.sp()?;
            let reference = String::from_utf8(p.astring()?).map_err(|_| "Invalid reference")?;
            p.sp()?;
            let pattern = p.list_mailbox()?;
            p.sp()?;
            let text = String::from_utf8_lossy(&p.astring()?).into_owned();
            Kind::Scan(reference, pattern, text)
        }
        "STATUS" => {
            p.sp()?;
            let m = mailbox(p)?;
            p.sp()?;
            p.expect(b'(')?;
            let mut items = Vec::new();
            loop {
                items.push(p.atom()?.to_ascii_uppercase());
                if !p.eat(b' ') {
                    break;
                }
            }
            p.expect(b')')?;
            Kind::Status(m, items)
        }
        "APPEND" => {
            p.sp()?;
            let m = mailbox(p)?;
            let mut msgs = Vec::new();
            while p.eat(b' ') {
                let mut flags = Vec::new();
                if p.peek() == Some(b'(') {
                    flags = p.flag_list()?;
                    p.sp()?;
                }
                let mut date = None;
                if p.peek() == Some(b'"') {
                    date = Some(p.date_time()?);
                    p.sp()?;
                }
                // RFC 5257: ANNOTATION (entry (attrib value ...) ...).
                let mut annotations = Vec::new();
                if p.s[p.i..].len() >= 11 && p.s[p.i..p.i + 11].eq_ignore_ascii_case(b"ANNOTATION ") {
                    p.i += 11;
                    annotations = att_annotate(p)?;
                    p.sp()?;
                }
                // RFC 6855 4: `UTF8 (~{n}...)` carries a message with
                // UTF-8 headers.
                let utf8 = p.s[p.i..].len() >= 6 && p.s[p.i..p.i + 6].eq_ignore_ascii_case(b"UTF8 (");
                if utf8 {
                    p.i += 6;
                }
                // RFC 4469: CATENATE (TEXT literal / URL url ...).
                let mut catenate = Vec::new();
                if !utf8 && p.s[p.i..].len() >= 10 && p.s[p.i..p.i + 10].eq_ignore_ascii_case(b"CATENATE (") {
                    p.i += 10;
                    loop {
                        if p.peek() == Some(b')') {
                            return err("Missing message part data in Append command");
                        }
                        let what = p.atom()?.to_ascii_uppercase();
                        match what.as_str() {
                            "TEXT" => {
                                p.sp()?;
                                catenate.push(CatPart::Text(p.literal()?));
                            }
                            "URL" => {
                                p.sp()?;
                                let u = p.astr()?;
                                catenate.push(CatPart::Url(u));
                            }
                            _ => return err("Invalid message part type in Append command"),
                        }
                        if p.eat(b')') {
                            break;
                        }
                        p.sp()?;
                    }
                    if catenate.is_empty() {
                        return err("Missing catenate part");
                    }
                    msgs.push(AppendMsg {
                        flags,
                        date,
                        data: Vec::new(),
                        catenate,
                        annotations,
                    });
                    continue;
                }
                let data = p.literal()?;
                if utf8 {
                    p.expect(b')')?;
                }
                // Cyrus's words when the message is not followed by the
                // next one or the line's end.
                if !p.at_end() && p.peek() != Some(b' ') {
                    return err("junk after literal");
                }
                msgs.push(AppendMsg {
                    flags,
                    date,
                    data,
                    catenate,
                    annotations,
                });
            }
            if msgs.is_empty() {
                return err("Missing required argument");
            }
            Kind::Append(m, msgs)
        }
        "EXPUNGE" => {
            if uid {
                p.sp()?;
                Kind::Expunge(Some(p.seq_set()?))
            } else {
                Kind::Expunge(None)
            }
        }
        "SEARCH" => {
            p.sp()?;
            let ret = return_options(p)?;
            let mut charset = None;
            if p.s[p.i..].len() >= 7 && p.s[p.i..p.i + 7].eq_ignore_ascii_case(b"CHARSET") {
                p.atom()?;
                p.sp()?;
                charset = Some(p.astr()?.to_ascii_uppercase());
                p.sp()?;
            }
            let key = search_keys(p)?;
            Kind::Search { ret, charset, key }
        }
        "SORT" | "THREAD" => {
            p.sp()?;
            let ret = if name == "SORT" { return_options(p)? } else { None };
            let mut criteria = Vec::new();
            let mut annotations = Vec::new();
            let mut algorithm = String::new();
            if name == "SORT" {
                p.expect(b'(')?;
                let mut reverse = false;
                loop {
                    let w = p.atom()?.to_ascii_uppercase();
                    if w == "REVERSE" {
                        reverse = true;
                    } else if w == "ANNOTATION" {
                        p.sp()?;
                        let entry = p.astr()?;
                        p.sp()?;
                        annotations.push((entry, p.astr()?));
                        criteria.push((w, reverse));
                        reverse = false;
                    } else {
                        criteria.push((w, reverse));
                        reverse = false;
                    }
                    if p.eat(b')') {
                        break;
                    }
                    p.sp()?;
                }
                if criteria.is_empty() || reverse {
                    return err("Invalid Sort criteria");
                }
            } else {
                algorithm = p.atom()?.to_ascii_uppercase();
            }
            p.sp()?;
            let charset = p.astr()?.to_ascii_uppercase();
            p.sp()?;
            let key = search_keys(p)?;
            if name == "SORT" {
                Kind::Sort {
                    ret,
                    criteria,
                    annotations,
                    charset,
                    key,
                }
            } else {
                Kind::Thread { algorithm, charset, key }
            }
        }
        "FETCH" => {
            p.sp()?;
            let set = p.seq_set()?;
            p.sp()?;
            let mut items = Vec::new();
            if p.eat(b'(') {
                loop {
                    fetch_att(p, &mut items)?;
                    if !p.eat(b' ') {
                        break;
                    }
                }
                p.expect(b')')?;
            } else {
                fetch_att(p, &mut items)?;
            }
            let mut changedsince = None;
            let mut vanished = false;
            if p.eat(b' ') {
                p.expect(b'(')?;
                loop {
                    let m = p.atom()?.to_ascii_uppercase();
                    match m.as_str() {
                        "CHANGEDSINCE" => {
                            p.sp()?;
                            changedsince = Some(p.number()?);
                        }
                        "VANISHED" => vanished = true,
                        _ => return err("Invalid fetch modifier"),
                    }
                    if !p.eat(b' ') {
                        break;
                    }
                }
                p.expect(b')')?;
            }
            Kind::Fetch {
                set,
                items,
                changedsince,
                vanished,
            }
        }
        "STORE" => {
            p.sp()?;
            let set = p.seq_set()?;
            p.sp()?;
            let mut unchangedsince = None;
            if p.eat(b'(') {
                let m = p.atom()?.to_ascii_uppercase();
                if m != "UNCHANGEDSINCE" {
                    return err("Invalid store modifier");
                }
                p.sp()?;
                unchangedsince = Some(p.number()?);
                p.expect(b')')?;
                p.sp()?;
            }
            let item = p.atom()?.to_ascii_uppercase();
            if item == "ANNOTATION" {
                p.sp()?;
                return Ok(Kind::StoreAnnotation {
                    set,
                    annotations: att_annotate(p)?,
                    unchangedsince,
                });
            }
            let (mode, rest) = match item.as_bytes().first() {
                Some(b'+') => (StoreMode::Add, &item[1..]),
                Some(b'-') => (StoreMode::Remove, &item[1..]),
                _ => (StoreMode::Replace, &item[..]),
            };
            let silent = match rest {
                "FLAGS" => false,
                "FLAGS.SILENT" => true,
                _ => return err("Invalid Store attribute"),
            };
            p.sp()?;
            let flags = p.flag_list()?;
            Kind::Store {
                set,
                mode,
                silent,
                flags,
                unchangedsince,
            }
        }
        // XMOVE: Cyrus's name for MOVE from before RFC 6851.
        "COPY" | "MOVE" | "XMOVE" => {
            p.sp()?;
            let set = p.seq_set()?;
            p.sp()?;
            let m = mailbox(p)?;
            if name == "COPY" {
                Kind::Copy(set, m)
            } else {
                Kind::Move(set, m)
            }
        }
        "ID" => {
            p.sp()?;
            // ("name" "value" ...) or NIL: parsed for syntax, not kept.
            if p.eat(b'(') {
                while !p.eat(b')') {
                    if p.peek() == Some(b'N') || p.peek() == Some(b'n') {
                        p.atom()?;
                    } else {
                        p.string()?;
                    }
                    p.eat(b' ');
                    if p.at_end() {
                        return err("Missing ')'");
                    }
                }
            } else {
                let a = p.atom()?;
                if !a.eq_ignore_ascii_case("NIL") {
                    return err("Invalid ID parameter");
                }
            }
            Kind::Id
        }
        "ENABLE" => {
            let mut v = Vec::new();
            while p.eat(b' ') {
                v.push(p.atom()?.to_ascii_uppercase());
            }
            if v.is_empty() {
                return err("Missing required argument");
            }
            Kind::Enable(v)
        }
        "COMPRESS" => {
            p.sp()?;
            Kind::Compress(p.atom()?.to_ascii_uppercase())
        }
        _ => return err("Unrecognized command"),
    })
}

#[cfg(test)]
mod tests;
