//! IMAP streams seen from the middle (a Murder front end), sans I/O:
//! where each client command starts and ends (its first line, then
//! literals and continuation lines passed through without buffering), a
//! command's head words, and the count of tagged replies in a server's
//! stream, literals skipped.  Bytes are never changed: the proxy decides
//! only where they go.

use super::command::literal_marker;

/// The longest first line of a command held back to route it (imapd's
/// own line limit and its CRLF); longer lines pass through to the current
/// server, which refuses them.
pub const MAX_HEAD: usize = 65536 + 2;

/// What the next bytes of a client's stream are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece {
    /// The complete first line of a command (CRLF included): route it.
    Head(usize),
    /// Bytes of the current command (literal data, a continuation
    /// line, the rest of an over-long line): they go where its head went.
    Pass(usize),
}

/// Splits a client's stream into commands.
#[derive(Debug, Default)]
pub struct ClientScan {
    /// Literal bytes still to pass.
    lit_left: u64,
    /// Inside a command whose line ended in a literal.
    in_cmd: bool,
    /// Inside an over-long line passed through unrouted.
    long_line: bool,
}

impl ClientScan {
    /// The next piece at the start of `buf`, or None until more bytes
    /// are needed (an incomplete head).
    pub fn next(&mut self, buf: &[u8]) -> Option<Piece> {
        if buf.is_empty() {
            return None;
        }
        if self.lit_left > 0 {
            let n = (self.lit_left.min(buf.len() as u64)) as usize;
            self.lit_left -= n as u64;
            return Some(Piece::Pass(n));
        }
        let nl = buf.iter().position(|&c| c == b'\n');
        match nl {
            Some(i) => {
                let line = &buf[..i + 1];
                let body = line.strip_suffix(b"\n").unwrap_or(line);
                let body = body.strip_suffix(b"\r").unwrap_or(body);
                let first = !self.in_cmd && !self.long_line;
                self.long_line = false;
                match literal_marker(body) {
                    Some((n, _)) => {
                        self.lit_left = n;
                        self.in_cmd = true;
                    }
                    None => self.in_cmd = false,
                }
                Some(if first { Piece::Head(i + 1) } else { Piece::Pass(i + 1) })
            }
            None if self.in_cmd || self.long_line || buf.len() >= MAX_HEAD => {
                // The rest of a continuation line, or a head too long to
                // hold: it goes on to wherever the stream goes now.
                self.long_line = true;
                Some(Piece::Pass(buf.len()))
            }
            None => None,
        }
    }

    /// Whether the stream is between commands.
    pub fn idle(&self) -> bool {
        self.lit_left == 0 && !self.in_cmd && !self.long_line
    }

    /// Whether the last line read ended in a literal still to come.
    pub fn literal_pending(&self) -> bool {
        self.lit_left > 0
    }
}

/// The longest literal taken as a mailbox name to route by.
pub const NAME_LITERAL_MAX: u64 = 1024;

/// A command whose routing mailbox name is a literal (`SELECT {5}`,
/// `COPY 1:3 {8+}`): its bytes are gathered up to the end of the line
/// after that literal (or up to the next literal's marker, an APPEND's
/// message), so that the proxy can route it like a quoted name.
#[derive(Debug)]
pub struct NameLiteral {
    /// The command so far (first line, literal, rest of line).
    pub bytes: Vec<u8>,
    /// Where the name's `{n}` marker starts in `bytes`.
    marker_at: usize,
    /// Where the literal's data starts.
    data_at: usize,
    len: usize,
    /// A synchronizing literal: the proxy sends the `+` itself...
    pub sync: bool,
    /// ... and has sent it.
    pub acked: bool,
}

impl NameLiteral {
    /// For a first line whose argument `pos` (the mailbox name that
    /// routes it) is a short literal ending the line.
    pub fn start(line: &[u8], pos: usize) -> Option<NameLiteral> {
        let h = head_words(line, pos + 2)?;
        if h.args.len() != pos + 1 || h.args[pos] != Arg::Literal {
            return None;
        }
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        let (n, nonsync) = crate::proto::imap::command::literal_marker(body)?;
        if n > NAME_LITERAL_MAX {
            return None;
        }
        Some(NameLiteral {
            bytes: line.to_vec(),
            marker_at: body.iter().rposition(|&c| c == b'{')?,
            data_at: line.len(),
            len: n as usize,
            sync: !nonsync,
            acked: false,
        })
    }

    /// Whether the gathered bytes reach the end of the name's line
    /// (`scan` has read them all).
    pub fn complete(&self, scan: &ClientScan) -> bool {
        self.bytes.len() > self.data_at + self.len && self.bytes.ends_with(b"\n") && (scan.idle() || scan.literal_pending())
    }

    /// The bytes to send on (a synchronizing marker made non-synchronizing:
    /// the client has had its `+`) and the line to route by (the name as
    /// a quoted string).
    pub fn finish(self) -> (Vec<u8>, Vec<u8>) {
        let mut fwd = self.bytes.clone();
        if self.sync {
            // Before the marker's `}` (the line ends `}\r\n` or `}\n`).
            let close = self.data_at - 2 - usize::from(fwd[..self.data_at].ends_with(b"\r\n"));
            fwd.insert(close, b'+');
        }
        let end = (self.data_at + self.len).min(self.bytes.len());
        let name = &self.bytes[self.data_at..end];
        let mut line = self.bytes[..self.marker_at].to_vec();
        line.push(b'"');
        for &c in name {
            if c == b'"' || c == b'\\' {
                line.push(b'\\');
            }
            line.push(c);
        }
        line.push(b'"');
        line.extend_from_slice(&self.bytes[end..]);
        (fwd, line)
    }
}

/// An argument of a command head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// An atom or a quoted string, unquoted.
    Str(String),
    /// A literal (its data follows the line: not known here).
    Literal,
    /// A parenthesised list or anything else.
    Other,
}

/// The words of a command's first line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadWords {
    pub tag: String,
    /// Upper-cased; `UID` is folded into `uid`.
    pub name: String,
    pub uid: bool,
    pub args: Vec<Arg>,
}

/// Parses a command's first line far enough to route it (the tag, the
/// name and up to `max_args` arguments); None for lines that are not
/// commands (`DONE`, SASL data).
pub fn head_words(line: &[u8], max_args: usize) -> Option<HeadWords> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut i = 0;
    let word = |i: &mut usize| -> Option<String> {
        let st = *i;
        while *i < line.len() && line[*i] != b' ' {
            *i += 1;
        }
        (st < *i).then(|| String::from_utf8_lossy(&line[st..*i]).into_owned())
    };
    let tag = word(&mut i)?;
    if line.get(i) != Some(&b' ') || tag == "*" || tag == "+" {
        return None;
    }
    i += 1;
    let mut name = word(&mut i)?.to_ascii_uppercase();
    let mut uid = false;
    if name == "UID" && line.get(i) == Some(&b' ') {
        i += 1;
        uid = true;
        name = word(&mut i)?.to_ascii_uppercase();
    }
    let mut args = Vec::new();
    while args.len() < max_args && line.get(i) == Some(&b' ') {
        i += 1;
        match line.get(i) {
            Some(b'"') => {
                let mut s = Vec::new();
                i += 1;
                loop {
                    match line.get(i) {
                        None => return Some(HeadWords { tag, name, uid, args }),
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(b'\\') => {
                            if let Some(&c) = line.get(i + 1) {
                                s.push(c);
                            }
                            i += 2;
                        }
                        Some(&c) => {
                            s.push(c);
                            i += 1;
                        }
                    }
                }
                args.push(Arg::Str(String::from_utf8_lossy(&s).into_owned()));
            }
            Some(b'{') | Some(b'~') => {
                args.push(Arg::Literal);
                break;
            }
            Some(b'(') => {
                let mut depth = 0;
                while let Some(&c) = line.get(i) {
                    i += 1;
                    if c == b'(' {
                        depth += 1;
                    } else if c == b')' {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                }
                args.push(Arg::Other);
            }
            _ => match word(&mut i) {
                Some(w) => args.push(Arg::Str(w)),
                None => break,
            },
        }
    }
    Some(HeadWords { tag, name, uid, args })
}

/// How a tagged reply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
}

/// Counts a server's tagged replies (lines outside literals that do not
/// start with `*` or `+`) and notices `* BYE`.
#[derive(Debug, Default)]
pub struct ServerScan {
    lit_left: u64,
    /// The start of the current line (enough for a tag and status).
    head: Vec<u8>,
    /// The end of the current line (enough for a literal marker).
    tail: Vec<u8>,
    /// Bytes of the current line seen.
    line_len: usize,
    pub tagged: u64,
    pub last: Option<(String, Status)>,
    pub bye: bool,
}

const HEAD_KEEP: usize = 96;
const TAIL_KEEP: usize = 24;

impl ServerScan {
    /// Between responses (no line or literal half read) and no BYE seen.
    pub fn at_line_start(&self) -> bool {
        self.lit_left == 0 && self.line_len == 0 && self.head.is_empty() && !self.bye
    }

    pub fn feed(&mut self, mut buf: &[u8]) {
        while !buf.is_empty() {
            if self.lit_left > 0 {
                let n = (self.lit_left.min(buf.len() as u64)) as usize;
                self.lit_left -= n as u64;
                buf = &buf[n..];
                continue;
            }
            let (part, rest, done) = match buf.iter().position(|&c| c == b'\n') {
                Some(i) => (&buf[..i], &buf[i + 1..], true),
                None => (buf, &buf[buf.len()..], false),
            };
            if self.head.len() < HEAD_KEEP {
                let take = (HEAD_KEEP - self.head.len()).min(part.len());
                self.head.extend_from_slice(&part[..take]);
            }
            self.tail.extend_from_slice(&part[part.len().saturating_sub(TAIL_KEEP)..]);
            if self.tail.len() > TAIL_KEEP {
                self.tail.drain(..self.tail.len() - TAIL_KEEP);
            }
            self.line_len += part.len();
            buf = rest;
            if done {
                self.end_line();
            }
        }
    }

    fn end_line(&mut self) {
        let tail = self.tail.strip_suffix(b"\r").unwrap_or(&self.tail);
        let lit = literal_marker(tail).map(|(n, _)| n);
        match self.head.first() {
            Some(b'*') => {
                if self.head.starts_with(b"* BYE") {
                    self.bye = true;
                }
            }
            Some(b'+') | None => {}
            // A line continuing after a literal is part of a response
            // already started; a tagged reply never carries a literal.
            Some(_) if self.line_len > 0 && lit.is_none() => {
                let h = String::from_utf8_lossy(&self.head);
                let mut w = h.split(' ');
                let tag = w.next().unwrap_or("").to_string();
                let st = match w.next().map(|s| s.trim_end_matches('\r').to_ascii_uppercase()) {
                    Some(s) if s == "OK" => Some(Status::Ok),
                    Some(s) if s == "NO" => Some(Status::No),
                    Some(s) if s == "BAD" => Some(Status::Bad),
                    _ => None,
                };
                if let Some(st) = st {
                    self.tagged += 1;
                    self.last = Some((tag, st));
                }
            }
            Some(_) => {}
        }
        self.lit_left = lit.unwrap_or(0);
        // After a literal the line goes on: its head is not a new line's.
        self.head.clear();
        if lit.is_some() {
            self.head.push(b' ');
        }
        self.tail.clear();
        self.line_len = 0;
    }
}

/// A message as a FETCH (UID FLAGS INTERNALDATE BODY.PEEK[]) response
/// gives it: what an APPEND to another server needs (a cross-server
/// COPY).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub uid: u32,
    /// Flags as sent, `\Recent` left out (APPEND cannot set it).
    pub flags: Vec<String>,
    /// The quoted INTERNALDATE's text.
    pub internaldate: String,
    pub body: Vec<u8>,
}

/// Parses one whole `* n FETCH (...)` response with a `BODY[]` literal;
/// None for any other response.
pub fn fetched(resp: &[u8]) -> Option<Fetched> {
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w.eq_ignore_ascii_case(needle));
    if !resp.starts_with(b"* ") || find(&resp[..resp.len().min(32)], b" FETCH (").is_none() {
        return None;
    }
    let b = find(resp, b"BODY[] {")?;
    let (start, end) = literal_data(resp, b + 7)?;
    let body = resp[start..end].to_vec();
    // The other items, before and after the literal.
    let mut text = resp[..b].to_vec();
    text.push(b' ');
    text.extend_from_slice(&resp[end..]);
    let uid: u32 = {
        let i = find(&text, b"UID ")? + 4;
        let d: String = text[i..].iter().take_while(|c| c.is_ascii_digit()).map(|&c| c as char).collect();
        d.parse().ok()?
    };
    let flags = {
        let i = find(&text, b"FLAGS (")? + 7;
        let j = i + text[i..].iter().position(|&c| c == b')')?;
        String::from_utf8_lossy(&text[i..j])
            .split(' ')
            .filter(|f| !f.is_empty() && !f.eq_ignore_ascii_case("\\Recent"))
            .map(str::to_string)
            .collect()
    };
    let internaldate = {
        let i = find(&text, b"INTERNALDATE \"")? + 14;
        let j = i + text[i..].iter().position(|&c| c == b'"')?;
        String::from_utf8_lossy(&text[i..j]).into_owned()
    };
    Some(Fetched {
        uid,
        flags,
        internaldate,
        body,
    })
}

/// What a LIST-family or STATUS response names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listed {
    /// `* LIST (attrs) delim name ...` (also XLIST, LSUB): the name.
    Mailbox(Vec<u8>),
    /// `* STATUS name (...)`: the name.
    Status(Vec<u8>),
}

/// Parses one whole response (literals included, as `collect_tagged`
/// gives them) far enough to say which mailbox it is about; None for
/// any other response.
pub fn listed(resp: &[u8]) -> Option<Listed> {
    let starts = |p: &[u8]| resp.len() >= p.len() && resp[..p.len()].eq_ignore_ascii_case(p);
    if starts(b"* STATUS ") {
        return astring_at(resp, 9).map(Listed::Status);
    }
    let at = [&b"* LIST ("[..], b"* XLIST (", b"* LSUB ("].iter().find(|p| starts(p))?.len();
    let mut i = at + resp[at..].iter().position(|&c| c == b')')? + 1;
    if resp.get(i) != Some(&b' ') {
        return None;
    }
    i += 1;
    // The hierarchy delimiter: NIL or a quoted character.
    if resp[i..].len() >= 3 && resp[i..i + 3].eq_ignore_ascii_case(b"NIL") {
        i += 3;
    } else if resp.get(i) == Some(&b'"') {
        i += 1;
        if resp.get(i) == Some(&b'\\') {
            i += 1;
        }
        i += 1;
        if resp.get(i) != Some(&b'"') {
            return None;
        }
        i += 1;
    } else {
        return None;
    }
    if resp.get(i) != Some(&b' ') {
        return None;
    }
    astring_at(resp, i + 1).map(Listed::Mailbox)
}

/// Where the data of the literal whose `{` is at `open` lies in a whole
/// response: (start, end); None when the marker is malformed or the data
/// is short.
fn literal_data(resp: &[u8], open: usize) -> Option<(usize, usize)> {
    let close = open + resp.get(open..)?.iter().position(|&c| c == b'}')?;
    let n: usize = std::str::from_utf8(&resp[open + 1..close])
        .ok()?
        .trim_end_matches('+')
        .parse()
        .ok()?;
    let start = close + 3;
    let end = start.checked_add(n)?;
    (resp.get(close + 1..start)? == b"\r\n" && resp.len() >= end).then_some((start, end))
}

/// The atom, quoted string or literal at `i` of a whole response.
fn astring_at(resp: &[u8], mut i: usize) -> Option<Vec<u8>> {
    match resp.get(i)? {
        b'"' => {
            let mut s = Vec::new();
            i += 1;
            loop {
                match *resp.get(i)? {
                    b'"' => return Some(s),
                    b'\\' => {
                        s.push(*resp.get(i + 1)?);
                        i += 2;
                    }
                    c => {
                        s.push(c);
                        i += 1;
                    }
                }
            }
        }
        b'{' | b'~' => {
            let open = i + resp[i..].iter().position(|&c| c == b'{')?;
            literal_data(resp, open).map(|(start, end)| resp[start..end].to_vec())
        }
        _ => {
            let end = resp[i..].iter().position(|c| b" ()\r\n".contains(c)).map_or(resp.len(), |n| i + n);
            (end > i).then(|| resp[i..end].to_vec())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` through a scanner into a NameLiteral started on its
    /// first line; the forwarded bytes and the routing line once complete.
    fn gathered(input: &[u8], pos: usize) -> Option<(Vec<u8>, Vec<u8>, Vec<u8>)> {
        let mut s = ClientScan::default();
        let mut buf = input.to_vec();
        let Some(Piece::Head(n)) = s.next(&buf) else { return None };
        let mut g = NameLiteral::start(&buf[..n], pos)?;
        buf.drain(..n);
        while !g.complete(&s) {
            let Some(Piece::Pass(n)) = s.next(&buf) else { return None };
            g.bytes.extend(buf.drain(..n));
        }
        let (fwd, line) = g.finish();
        Some((fwd, line, buf))
    }

    #[test]
    fn listed_names() {
        let m = |s: &str| Some(Listed::Mailbox(s.as_bytes().to_vec()));
        assert_eq!(listed(b"* LIST (\\HasNoChildren) \"/\" INBOX\r\n"), m("INBOX"));
        assert_eq!(listed(b"* list () \".\" \"a \\\"b\\\\\"\r\n"), m("a \"b\\"));
        assert_eq!(listed(b"* LIST (\\Noselect) NIL {5}\r\nx y z\r\n"), m("x y z"));
        assert_eq!(listed(b"* LIST () \"\\\\\" Work (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n"), m("Work"));
        assert_eq!(listed(b"* LSUB () \"/\" Sent\r\n"), m("Sent"));
        assert_eq!(
            listed(b"* STATUS \"Other Users/u7\" (MESSAGES 1)\r\n"),
            Some(Listed::Status(b"Other Users/u7".to_vec()))
        );
        assert_eq!(listed(b"* 3 EXISTS\r\n"), None);
        assert_eq!(listed(b"* LIST (\\X) \"/\" {9}\r\nshort\r\n"), None);
        assert_eq!(listed(b"* LIST (\\X"), None);
    }

    #[test]
    fn literal_mailbox_names_are_gathered() {
        let (fwd, line, rest) = gathered(b"a SELECT {5}\r\nINBOX\r\nb NOOP\r\n", 0).unwrap();
        assert_eq!(fwd, b"a SELECT {5+}\r\nINBOX\r\n");
        assert_eq!(line, b"a SELECT \"INBOX\"\r\n");
        assert_eq!(rest, b"b NOOP\r\n");
        let (fwd, line, _) = gathered(b"a STATUS {8+}\r\nSh\"ared\\ (MESSAGES)\r\n", 0).unwrap();
        assert_eq!(fwd, b"a STATUS {8+}\r\nSh\"ared\\ (MESSAGES)\r\n");
        assert_eq!(line, b"a STATUS \"Sh\\\"ared\\\\\" (MESSAGES)\r\n");
        assert_eq!(head_words(&line, 1).unwrap().args, vec![Arg::Str("Sh\"ared\\".into())]);
        // APPEND: up to the message's literal, which passes as it comes.
        let (fwd, line, rest) = gathered(b"a APPEND {4}\r\nWork (\\Seen) {3}\r\nabc\r\n", 0).unwrap();
        assert_eq!(fwd, b"a APPEND {4+}\r\nWork (\\Seen) {3}\r\n");
        assert_eq!(line, b"a APPEND \"Work\" (\\Seen) {3}\r\n");
        assert_eq!(rest, b"abc\r\n");
        // COPY routes by its second argument.
        let (_, line, _) = gathered(b"a UID COPY 1:3 {4}\r\nWork\r\n", 1).unwrap();
        assert_eq!(line, b"a UID COPY 1:3 \"Work\"\r\n");
        // A literal in another place, or too long for a name, is not.
        assert!(gathered(b"a COPY {3}\r\n1:3 Work\r\n", 1).is_none());
        assert!(gathered(b"a SELECT {5000}\r\n", 0).is_none());
        assert!(gathered(b"a SELECT INBOX\r\n", 0).is_none());
    }

    fn pieces(input: &[u8], chunk: usize) -> Vec<(bool, Vec<u8>)> {
        let mut s = ClientScan::default();
        let mut buf: Vec<u8> = Vec::new();
        let mut out: Vec<(bool, Vec<u8>)> = Vec::new();
        for c in input.chunks(chunk) {
            buf.extend_from_slice(c);
            while let Some(p) = s.next(&buf) {
                let (head, n) = match p {
                    Piece::Head(n) => (true, n),
                    Piece::Pass(n) => (false, n),
                };
                match out.last_mut() {
                    Some((false, v)) if !head => v.extend_from_slice(&buf[..n]),
                    _ => out.push((head, buf[..n].to_vec())),
                }
                buf.drain(..n);
            }
        }
        out
    }

    #[test]
    fn commands_literals_and_idle_done() {
        let input = b"a SELECT INBOX\r\nb APPEND \"Sent\" {11}\r\nhello\r\nworld\r\nc IDLE\r\nDONE\r\nd LOGOUT\r\n";
        for chunk in [1, 3, 7, 100] {
            let p = pieces(input, chunk);
            let heads: Vec<String> = p
                .iter()
                .filter(|(h, _)| *h)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                .collect();
            assert_eq!(
                heads,
                vec![
                    "a SELECT INBOX\r\n",
                    "b APPEND \"Sent\" {11}\r\n",
                    "c IDLE\r\n",
                    "DONE\r\n",
                    "d LOGOUT\r\n"
                ],
                "chunk {chunk}"
            );
            // The literal (with a CRLF inside) and its closing CRLF pass.
            assert!(p.contains(&(false, b"hello\r\nworld\r\n".to_vec())), "{p:?}");
        }
    }

    #[test]
    fn head_words_route_by_mailbox() {
        let h = head_words(b"a1 SELECT \"Other Users/bob\" (CONDSTORE)\r\n", 2).unwrap();
        assert_eq!(h.tag, "a1");
        assert_eq!(h.name, "SELECT");
        assert_eq!(h.args, vec![Arg::Str("Other Users/bob".into()), Arg::Other]);
        let h = head_words(b"x uid copy 1:* \"a \\\"q\\\"\"\r\n", 2).unwrap();
        assert!(h.uid);
        assert_eq!(h.args[1], Arg::Str("a \"q\"".into()));
        assert_eq!(head_words(b"b CREATE {5+}\r\n", 1).unwrap().args, vec![Arg::Literal]);
        assert_eq!(head_words(b"DONE\r\n", 1), None);
        assert_eq!(head_words(b"* OK x\r\n", 1), None);
    }

    #[test]
    fn fetched_messages_for_a_cross_server_copy() {
        let r = b"* 3 FETCH (UID 7 FLAGS (\\Recent \\Seen $Forwarded) INTERNALDATE \" 1-Feb-2020 10:11:12 +0100\" BODY[] {9}\r\nSubj: x\r\n)\r\n";
        let f = fetched(r).unwrap();
        assert_eq!(f.uid, 7);
        assert_eq!(f.flags, vec!["\\Seen", "$Forwarded"]);
        assert_eq!(f.internaldate, " 1-Feb-2020 10:11:12 +0100");
        assert_eq!(f.body, b"Subj: x\r\n");
        // UID after the literal, as some servers order items.
        let r = b"* 1 FETCH (FLAGS () INTERNALDATE \"01-Jan-2021 00:00:00 +0000\" BODY[] {2}\r\nab UID 12)\r\n";
        assert_eq!(fetched(r).unwrap().uid, 12);
        assert_eq!(fetched(b"* 2 EXISTS\r\n"), None);
        assert_eq!(fetched(b"* 1 FETCH (FLAGS (\\Seen))\r\n"), None);
    }

    #[test]
    fn server_scan_counts_tagged_replies_outside_literals() {
        let mut s = ServerScan::default();
        let resp = b"* 1 FETCH (BODY[] {22}\r\na2 OK fake\r\n* BYE no\r\n)\r\n* 2 EXISTS\r\na1 OK [READ-WRITE] done\r\n+ go ahead\r\na2 NO [TRYCREATE] x\r\n";
        for chunk in [1usize, 5, 1000] {
            let mut s2 = ServerScan::default();
            for c in resp.chunks(chunk) {
                s2.feed(c);
            }
            assert_eq!(s2.tagged, 2, "chunk {chunk}");
            assert_eq!(s2.last, Some(("a2".into(), Status::No)));
            assert!(!s2.bye, "a BYE inside a literal is data");
        }
        s.feed(b"* BYE shutting down\r\n");
        assert!(s.bye);
    }
}
