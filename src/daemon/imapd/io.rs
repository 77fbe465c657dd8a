//! Reading IMAP commands off the wire: CRLF lines and literals, with the
//! continuation for synchronising literals, every read bounded.

use crate::proto::imap::command::{cap_name, literal_marker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes read per call while waiting for a command: small, because the
/// buffer lives in every idle connection's task (most command lines fit;
/// longer ones take a few reads, literals use BULK_READ).
const IDLE_READ: usize = 256;
/// Bytes read per call while a literal is streaming in.
const BULK_READ: usize = 65536;
/// Output is written out when this much is pending.
const OUT_HIGH: usize = 16384;

/// The write side: a buffer that exists only while there is output, so an
/// idle connection holds no output memory.
pub struct Output<W> {
    w: W,
    buf: Vec<u8>,
}

impl<W: AsyncWrite + Unpin> Output<W> {
    pub fn new(w: W) -> Self {
        Output { w, buf: Vec::new() }
    }
    pub async fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= OUT_HIGH {
            self.w.write_all(&self.buf).await?;
            self.buf.clear();
        }
        Ok(())
    }
    pub async fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            self.w.write_all(&self.buf).await?;
        }
        self.buf = Vec::new();
        self.w.flush().await
    }
    pub fn into_inner(self) -> W {
        self.w
    }

    /// Flushes and closes the sending side (TCP FIN, TLS close_notify).
    pub async fn shutdown(&mut self) -> std::io::Result<()> {
        self.flush().await?;
        self.w.shutdown().await
    }
}

/// Longest line of a command (outside literals).
pub const MAX_LINE: usize = 65536;
/// Largest literal in a command other than APPEND.
pub const MAX_SMALL_LITERAL: u64 = 65536;

pub struct Input<R> {
    r: R,
    buf: Vec<u8>,
    pos: usize,
    /// Reads of the stream so far: commands read in one go were sent
    /// together (pipelined).
    fills: u64,
}

#[derive(Debug)]
pub enum ReadError {
    Io(std::io::Error),
    Eof,
    Timeout,
}

impl From<std::io::Error> for ReadError {
    fn from(e: std::io::Error) -> Self {
        ReadError::Io(e)
    }
}

/// A command as read, or why it could not be.
pub enum Frame {
    Command(Vec<u8>),
    /// The line was too long; the rest of it was discarded.
    LineTooLong,
    /// A literal over its limit.  A synchronising one was refused before
    /// the client sent it (the session goes on); a non-synchronising one
    /// is on its way unasked, so the session ends (RFC 7888, section 4,
    /// as Cyrus does).
    LiteralTooBig(TooBigLiteral),
    /// A bound that ends the session (Cyrus's `fatal`): the text of the
    /// untagged BYE, such as `[TOOBIG] Word too long`.
    Fatal(&'static str),
}

/// A literal refused: the command's tag and Cyrus's name for the command
/// (`Select`, `Uid`), whether it was APPEND's message, whether it was
/// non-synchronising, and whether `literalminus` refused it (over 4096
/// bytes).
#[derive(Debug)]
pub struct TooBigLiteral {
    pub tag: String,
    pub command: String,
    pub append: bool,
    pub nonsync: bool,
    pub minus: bool,
}

impl TooBigLiteral {
    /// The tagged reply's text, if there is one: APPEND always has one,
    /// other commands only for a synchronising literal.
    pub fn reply(&self) -> Option<String> {
        match (self.append, self.nonsync) {
            (true, _) => Some(format!("NO {}", self.bye_text())),
            (false, false) => Some(format!("NO [TOOBIG] Literal size exceeds fixed limit in {}", self.command)),
            (false, true) => None,
        }
    }

    /// The BYE that ends the session after a non-synchronising literal
    /// over the limit; None for a synchronising one.
    pub fn bye(&self) -> Option<&'static str> {
        self.nonsync.then(|| self.bye_text())
    }

    fn bye_text(&self) -> &'static str {
        if self.minus {
            "[TOOBIG] Non-synchronizing literal size exceeds 4K"
        } else if self.append {
            "[TOOBIG] Message size exceeds fixed limit"
        } else {
            "[TOOBIG] Literal size exceeds fixed limit"
        }
    }
}

/// The bounds on one command as it is read: imapd.conf's `maxliteral`,
/// `maxword`, `maxquoted`, `maxargssize` and `literalminus`, and the
/// APPEND bound (`maxmessagesize`).
#[derive(Debug, Clone, Copy)]
pub struct CommandLimits {
    /// An APPEND's message literal.
    pub append: u64,
    /// Any other literal (`maxliteral`).
    pub literal: u64,
    /// An atom, a tag or a sequence set (`maxword`).
    pub word: usize,
    /// A quoted string's content (`maxquoted`).
    pub quoted: usize,
    /// A command's arguments as sent, literals included, APPEND's left
    /// out (`maxargssize`); 0: no bound of its own.
    pub args: usize,
    /// `literalminus`: a non-synchronising literal is at most 4096 bytes.
    pub literal_minus: bool,
    /// The whole command in memory.
    pub total: usize,
}

/// Cyrus's value for an unlimited (0) `maxliteral`, `maxword`,
/// `maxquoted`, `maxargssize`: INT_MAX.
const UNLIMITED: u64 = i32::MAX as u64;
/// A command line (outside literals) is bounded even when every word
/// and quoted string is not.
const LINE_CAP: usize = 64 << 20;

impl CommandLimits {
    /// Fixed bounds, for the MUPDATE server: `literal` for every literal,
    /// words and quoted strings up to `MAX_LINE`.
    pub fn fixed(literal: u64) -> CommandLimits {
        CommandLimits {
            append: literal,
            literal,
            word: MAX_LINE,
            quoted: MAX_LINE,
            args: 0,
            literal_minus: false,
            total: 4 * literal as usize,
        }
    }

    /// imapd.conf's bounds (Cyrus's defaults: 128 KiB literals, words and
    /// quoted strings; 0 is unlimited, Cyrus's INT_MAX), `append` the
    /// APPEND bound.
    pub fn from_conf(conf: &crate::config::cyrus::ImapdConf, append: u64) -> CommandLimits {
        let size = |name: &str| match conf.get_int(name) {
            n if n > 0 => (n as u64).min(UNLIMITED),
            _ => UNLIMITED,
        };
        let args = match conf.get_int("maxargssize") {
            n if n > 0 => (n as u64).min(UNLIMITED) as usize,
            _ => 0,
        };
        CommandLimits {
            append,
            literal: size("maxliteral"),
            word: size("maxword") as usize,
            quoted: size("maxquoted") as usize,
            args,
            literal_minus: conf.get_switch("literalminus"),
            total: (append as usize).saturating_mul(4),
        }
    }

    /// The longest command line read: room for a word or a quoted string
    /// at its bound twice over, or for the arguments' bound; at least
    /// `MAX_LINE`, at most `LINE_CAP`.
    pub fn line(&self) -> usize {
        let words = self.word.max(self.quoted).saturating_mul(2);
        let bound = if self.args > 0 {
            self.args.saturating_add(1024).min(words)
        } else {
            words
        };
        bound.clamp(MAX_LINE, LINE_CAP)
    }

    /// Without `maxargssize` (before login: Cyrus counts arguments only
    /// in an authenticated session).
    pub fn without_args(self) -> CommandLimits {
        CommandLimits { args: 0, ..self }
    }
}

/// The first bound on words and quoted strings that a command line
/// breaks, as Cyrus's parser meets them (it reads the tag, the command
/// and every argument as a word or a quoted string).
fn token_bound(line: &[u8], word: usize, quoted: usize) -> Option<&'static str> {
    let mut i = 0;
    while i < line.len() {
        match line[i] {
            b' ' | b'(' | b')' | b'\t' => i += 1,
            b'"' => {
                i += 1;
                let mut n = 0usize;
                while i < line.len() && line[i] != b'"' {
                    if line[i] == b'\\' {
                        i += 1;
                    }
                    n += 1;
                    if n > quoted {
                        return Some("[TOOBIG] Quoted value too long");
                    }
                    i += 1;
                }
                i += 1;
            }
            _ => {
                let start = i;
                while i < line.len() && !matches!(line[i], b' ' | b'(' | b')' | b'"' | b'\t') {
                    i += 1;
                }
                if i - start > word {
                    return Some("[TOOBIG] Word too long");
                }
            }
        }
    }
    None
}

/// Where a command's arguments start: after the tag, the command name
/// and, for UID commands, the second name.
fn args_start(line: &[u8]) -> usize {
    let uid = line.split(|&c| c == b' ').nth(1).is_some_and(|w| w.eq_ignore_ascii_case(b"UID"));
    let names = if uid { 3 } else { 2 };
    let mut pos = 0;
    for _ in 0..names {
        match line[pos..].iter().position(|&c| c == b' ') {
            Some(n) => pos += n + 1,
            None => return line.len(),
        }
    }
    pos
}

/// Cyrus's name for a command in its replies (`Select`, `Uid`,
/// `Getquotaroot`): UID SEARCH is `Search`, and LOGIN keeps its capitals.
fn cyrus_command_name(cmd: &[u8]) -> String {
    let mut words = cmd.split(|&c| c == b' ').skip(1);
    let first = String::from_utf8_lossy(words.next().unwrap_or_default()).to_ascii_uppercase();
    let second = String::from_utf8_lossy(words.next().unwrap_or_default()).to_ascii_uppercase();
    match (first.as_str(), second.as_str()) {
        ("LOGIN", _) => first,
        ("UID", "SEARCH") => cap_name(&second),
        _ => cap_name(&first),
    }
}

impl<R: AsyncRead + Unpin> Input<R> {
    pub fn new(r: R) -> Self {
        Input {
            r,
            buf: Vec::new(),
            pos: 0,
            fills: 0,
        }
    }

    /// How many times the stream has been read.
    pub fn fills(&self) -> u64 {
        self.fills
    }

    /// The stream, dropping anything buffered (STARTTLS).
    pub fn into_inner(self) -> R {
        self.r
    }

    /// The stream and what was read but not consumed (COMPRESS: the
    /// client's first compressed bytes may already be here).
    pub fn into_parts(mut self) -> (R, Vec<u8>) {
        let rest = self.buf.split_off(self.pos.min(self.buf.len()));
        (self.r, rest)
    }

    /// Whether unread input is waiting (pipelining).
    pub fn has_buffered(&self) -> bool {
        self.pos < self.buf.len()
    }

    /// Frees the read buffer while idle.
    pub fn shrink(&mut self) {
        if self.pos >= self.buf.len() {
            self.buf = Vec::new();
            self.pos = 0;
        }
    }

    async fn fill(&mut self, idle: Duration) -> Result<(), ReadError> {
        self.fill_up(idle, 0).await
    }

    /// Reads more input; `want` bytes are expected (a literal), so a
    /// large heap read is used, else a small stack one.
    async fn fill_up(&mut self, idle: Duration, want: usize) -> Result<(), ReadError> {
        if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let n = if want > IDLE_READ {
            let len = self.buf.len();
            self.buf.resize(len + want.min(BULK_READ), 0);
            let r = tokio::time::timeout(idle, self.r.read(&mut self.buf[len..])).await;
            let n = match r {
                Ok(Ok(n)) => n,
                Ok(Err(e)) => {
                    self.buf.truncate(len);
                    return Err(e.into());
                }
                Err(_) => {
                    self.buf.truncate(len);
                    return Err(ReadError::Timeout);
                }
            };
            self.buf.truncate(len + n);
            n
        } else {
            let mut chunk = [0u8; IDLE_READ];
            let n = match tokio::time::timeout(idle, self.r.read(&mut chunk)).await {
                Ok(r) => r?,
                Err(_) => return Err(ReadError::Timeout),
            };
            self.buf.extend_from_slice(&chunk[..n]);
            n
        };
        if n == 0 {
            return Err(ReadError::Eof);
        }
        self.fills += 1;
        Ok(())
    }

    /// One line without CRLF; `Ok(None)` when it was longer than `max`
    /// (the rest of it is skipped).
    pub async fn line(&mut self, max: usize, idle: Duration) -> Result<Option<Vec<u8>>, ReadError> {
        let mut too_long = false;
        loop {
            if let Some(n) = self.buf[self.pos..].iter().position(|&c| c == b'\n') {
                let end = self.pos + n;
                let mut line = &self.buf[self.pos..end];
                if line.last() == Some(&b'\r') {
                    line = &line[..line.len() - 1];
                }
                let out = if too_long || line.len() > max { None } else { Some(line.to_vec()) };
                self.pos = end + 1;
                return Ok(out);
            }
            if self.buf.len() - self.pos > max {
                too_long = true;
                self.pos = self.buf.len();
            }
            self.fill(idle).await?;
        }
    }

    pub async fn exact(&mut self, n: usize, idle: Duration) -> Result<Vec<u8>, ReadError> {
        while self.buf.len() - self.pos < n {
            let missing = n - (self.buf.len() - self.pos);
            self.fill_up(idle, missing).await?;
        }
        let v = self.buf[self.pos..self.pos + n].to_vec();
        self.pos += n;
        Ok(v)
    }

    /// Reads and drops what the client still sends, up to `max` bytes or
    /// until it is quiet for `quiet`: a session ended while input is on
    /// its way closes without a reset, so the client reads the BYE sent
    /// before.
    pub async fn drain(&mut self, max: usize, quiet: Duration) {
        let mut seen = 0;
        self.buf.clear();
        self.pos = 0;
        while seen < max && self.fill(quiet).await.is_ok() {
            seen += self.buf.len();
            self.buf.clear();
        }
    }

    pub async fn discard(&mut self, mut n: u64, idle: Duration) -> Result<(), ReadError> {
        while n > 0 {
            if self.pos >= self.buf.len() {
                self.buf.clear();
                self.pos = 0;
                self.fill(idle).await?;
            }
            let take = ((self.buf.len() - self.pos) as u64).min(n);
            self.pos += take as usize;
            n -= take;
        }
        Ok(())
    }

    /// Reads one command with its literals, within `limits`.
    pub async fn command<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut Output<W>,
        limits: &CommandLimits,
        idle: Duration,
    ) -> Result<Frame, ReadError> {
        self.command_after(None, w, limits, idle).await
    }

    /// `command`, except that a Cyrus back end's `SYNCAPPLY MESSAGE` (its
    /// XFER's upload, as big as a mailbox) comes back as `Err((tag,
    /// first line))` with its files still unread, to be streamed.
    pub async fn command_or_upload<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut Output<W>,
        limits: &CommandLimits,
        idle: Duration,
    ) -> Result<Result<Frame, (String, Vec<u8>)>, ReadError> {
        let Some(line) = self.line(limits.line(), idle).await? else {
            return Ok(Ok(Frame::LineTooLong));
        };
        let mut words = line.splitn(4, |&c| c == b' ');
        let (tag, w1, w2) = (words.next(), words.next(), words.next());
        if let (Some(tag), Some(w1), Some(w2)) = (tag, w1, w2) {
            if w1.eq_ignore_ascii_case(b"SYNCAPPLY") && w2.eq_ignore_ascii_case(b"MESSAGE") && !tag.is_empty() {
                let tag = String::from_utf8_lossy(tag).into_owned();
                return Ok(Err((tag, line)));
            }
        }
        self.command_after(Some(line), w, limits, idle).await.map(Ok)
    }

    async fn command_after<W: AsyncWrite + Unpin>(
        &mut self,
        mut first: Option<Vec<u8>>,
        w: &mut Output<W>,
        limits: &CommandLimits,
        idle: Duration,
    ) -> Result<Frame, ReadError> {
        let mut cmd: Vec<u8> = Vec::new();
        // Where the arguments start, once the first line is in.
        let mut args_from = None;
        loop {
            let line = match first.take() {
                Some(l) => l,
                None => match self.line(limits.line(), idle).await? {
                    Some(l) => l,
                    None => return Ok(Frame::LineTooLong),
                },
            };
            if let Some(bye) = token_bound(&line, limits.word, limits.quoted) {
                return Ok(Frame::Fatal(bye));
            }
            let marker = literal_marker(&line);
            cmd.extend_from_slice(&line);
            let from = *args_from.get_or_insert_with(|| args_start(&cmd));
            let is_append = is_append(&cmd);
            let args_over = |extra: u64| limits.args > 0 && !is_append && (cmd.len() - from) as u64 + extra >= limits.args as u64;
            let Some((n, nonsync)) = marker else {
                if args_over(0) {
                    return Ok(Frame::Fatal("[TOOBIG] Command arguments total size exceeds fixed limit"));
                }
                return Ok(Frame::Command(cmd));
            };
            let minus = nonsync && limits.literal_minus && n > 4096;
            let limit = if is_append { limits.append } else { limits.literal };
            if minus || n > limit || cmd.len() as u64 + n > limits.total as u64 {
                let tag = String::from_utf8_lossy(cmd.split(|&c| c == b' ').next().unwrap_or(b"*")).into_owned();
                return Ok(Frame::LiteralTooBig(TooBigLiteral {
                    tag,
                    command: cyrus_command_name(&cmd),
                    append: is_append,
                    nonsync,
                    minus,
                }));
            }
            if args_over(n + 2) {
                return Ok(Frame::Fatal("[TOOBIG] Command arguments total size exceeds fixed limit"));
            }
            if !nonsync {
                w.write_all(b"+ go ahead\r\n").await?;
                w.flush().await?;
            }
            cmd.extend_from_slice(b"\r\n");
            let data = self.exact(n as usize, idle).await?;
            cmd.extend_from_slice(&data);
        }
    }
}

fn is_append(cmd: &[u8]) -> bool {
    let mut it = cmd.split(|&c| c == b' ');
    it.next();
    // XAPPLY and SYNCAPPLY (XFER's transfers, admins only) carry message
    // files too.
    it.next()
        .is_some_and(|w| w.eq_ignore_ascii_case(b"APPEND") || w.eq_ignore_ascii_case(b"XAPPLY") || w.eq_ignore_ascii_case(b"SYNCAPPLY"))
}

type BoxRd = tokio::io::ReadHalf<Box<dyn crate::server::listen::Io>>;
type BoxWr = tokio::io::WriteHalf<Box<dyn crate::server::listen::Io>>;

/// Takes the stream out from under a reader/writer pair (which are left
/// on a dummy): the whole connection, and what was read but not used.
fn take_stream(input: &mut Input<BoxRd>, w: &mut Output<BoxWr>) -> (Box<dyn crate::server::listen::Io>, Vec<u8>) {
    let dummy: Box<dyn crate::server::listen::Io> = Box::new(tokio::io::duplex(1).0);
    let (dr, dw) = tokio::io::split(dummy);
    let (r, pending) = std::mem::replace(input, Input::new(dr)).into_parts();
    let wr = std::mem::replace(w, Output::new(dw)).into_inner();
    (Box::new(r.unsplit(wr)), pending)
}

fn put_stream(io: Box<dyn crate::server::listen::Io>, input: &mut Input<BoxRd>, w: &mut Output<BoxWr>) {
    let (r, wr) = tokio::io::split(io);
    *input = Input::new(r);
    *w = Output::new(wr);
}

/// STARTTLS (IMAP, POP3, MUPDATE): TLS from the next byte on.  Input the
/// client pipelined after the command is dropped (no injection); the
/// caller has flushed its OK.
/// The session's summary is returned for the log (`starttls: ...`), with
/// its strength (`util::tls::server_ssf`).
pub async fn start_tls(
    input: &mut Input<BoxRd>,
    w: &mut Output<BoxWr>,
    acc: std::sync::Arc<rustls::ServerConfig>,
) -> std::io::Result<(String, u32)> {
    let (io, _dropped) = take_stream(input, w);
    let t = tokio_rustls::TlsAcceptor::from(acc).accept(io).await?;
    let summary = crate::util::tls::server_summary(t.get_ref().1);
    let ssf = crate::util::tls::server_ssf(t.get_ref().1);
    put_stream(Box::new(t), input, w);
    Ok((summary, ssf))
}

/// COMPRESS DEFLATE (RFC 4978): both ways from the next byte on; bytes
/// the client already sent compressed are kept.
pub fn start_deflate(input: &mut Input<BoxRd>, w: &mut Output<BoxWr>) {
    let (io, pending) = take_stream(input, w);
    put_stream(Box::new(crate::server::deflate::Deflate::new(io, pending)), input, w);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_quoted_strings_are_measured_as_cyrus_reads_them() {
        assert_eq!(token_bound(b"a SELECT abcdef", 6, 4), None);
        assert_eq!(token_bound(b"a SELECT abcdefg", 6, 4), Some("[TOOBIG] Word too long"));
        assert_eq!(token_bound(b"abcdefg SELECT x", 6, 4), Some("[TOOBIG] Word too long"));
        assert_eq!(token_bound(b"t (FLAGS)(abcdefg)", 6, 9), Some("[TOOBIG] Word too long"));
        // Escapes count once; parentheses and spaces inside quotes are
        // part of the string.
        assert_eq!(token_bound(br#"a X "ab\"c""#, 6, 4), None);
        assert_eq!(token_bound(br#"a X "a (b)""#, 6, 4), Some("[TOOBIG] Quoted value too long"));
        assert_eq!(token_bound(br#"a X "abcd" efg"#, 3, 4), None);
    }

    #[test]
    fn arguments_start_after_the_command_name() {
        assert_eq!(args_start(b"a SEARCH ALL"), 9);
        assert_eq!(args_start(b"a UID SEARCH ALL"), 13);
        assert_eq!(args_start(b"a uid copy 1 x"), 11);
        assert_eq!(args_start(b"a NOOP"), 6);
        assert_eq!(cyrus_command_name(b"a uid search x"), "Search");
        assert_eq!(cyrus_command_name(b"a UID COPY 1 {9}"), "Uid");
        assert_eq!(cyrus_command_name(b"a login u {9}"), "LOGIN");
        assert_eq!(cyrus_command_name(b"a GETQUOTAROOT {9}"), "Getquotaroot");
    }

    #[test]
    fn the_line_bound_follows_the_word_bounds() {
        let conf = |text: &str| {
            crate::config::cyrus::ImapdConf::parse("imapd.conf", format!("configdirectory: /c\n{text}").as_bytes(), None).unwrap()
        };
        let l = CommandLimits::from_conf(&conf(""), 1 << 20);
        assert_eq!(
            (l.literal, l.word, l.quoted, l.args, l.literal_minus),
            (131072, 131072, 131072, 0, false)
        );
        assert_eq!(l.line(), 262144);
        let l = CommandLimits::from_conf(&conf("maxword: 0\nmaxquoted: 10\n"), 1 << 20);
        assert_eq!((l.word, l.line()), (i32::MAX as usize, LINE_CAP));
        let l = CommandLimits::from_conf(&conf("maxword: 10\nmaxquoted: 10\nmaxargssize: 5000\nliteralminus: 1\n"), 1 << 20);
        assert_eq!((l.args, l.line(), l.literal_minus), (5000, MAX_LINE, true));
        assert_eq!(l.without_args().args, 0);
    }
}
