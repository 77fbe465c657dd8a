//! Reading IMAP commands off the wire: CRLF lines and literals, with the
//! continuation for synchronising literals, every read bounded.

use crate::proto::imap::command::literal_marker;
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
    /// A literal over the limit: (tag, size, it was an APPEND); a
    /// synchronising one was refused before the client sent it, a
    /// non-synchronising one was read and discarded.
    LiteralTooBig(String, u64, bool),
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

    /// Reads one command with its literals.  `max_append` bounds APPEND
    /// literals, `max_total` the whole command.
    pub async fn command<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut Output<W>,
        max_append: u64,
        max_total: usize,
        idle: Duration,
    ) -> Result<Frame, ReadError> {
        self.command_after(None, w, max_append, max_total, idle).await
    }

    /// `command`, except that a Cyrus back end's `SYNCAPPLY MESSAGE` (its
    /// XFER's upload, as big as a mailbox) comes back as `Err((tag,
    /// first line))` with its files still unread, to be streamed.
    pub async fn command_or_upload<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut Output<W>,
        max_append: u64,
        max_total: usize,
        idle: Duration,
    ) -> Result<Result<Frame, (String, Vec<u8>)>, ReadError> {
        let Some(line) = self.line(MAX_LINE, idle).await? else {
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
        self.command_after(Some(line), w, max_append, max_total, idle).await.map(Ok)
    }

    async fn command_after<W: AsyncWrite + Unpin>(
        &mut self,
        mut first: Option<Vec<u8>>,
        w: &mut Output<W>,
        max_append: u64,
        max_total: usize,
        idle: Duration,
    ) -> Result<Frame, ReadError> {
        let mut cmd: Vec<u8> = Vec::new();
        loop {
            let line = match first.take() {
                Some(l) => l,
                None => match self.line(MAX_LINE, idle).await? {
                    Some(l) => l,
                    None => return Ok(Frame::LineTooLong),
                },
            };
            let marker = literal_marker(&line);
            cmd.extend_from_slice(&line);
            let Some((n, nonsync)) = marker else {
                return Ok(Frame::Command(cmd));
            };
            let is_append = is_append(&cmd);
            let limit = if is_append { max_append } else { MAX_SMALL_LITERAL };
            if n > limit || cmd.len() as u64 + n > max_total as u64 {
                let tag = String::from_utf8_lossy(cmd.split(|&c| c == b' ').next().unwrap_or(b"*")).into_owned();
                if nonsync {
                    // The client sends it anyway: read past it and the
                    // rest of the command.
                    self.discard(n, idle).await?;
                    loop {
                        let rest = self.line(MAX_LINE, idle).await?.unwrap_or_default();
                        match literal_marker(&rest) {
                            Some((m, true)) => self.discard(m, idle).await?,
                            _ => break,
                        }
                    }
                }
                return Ok(Frame::LiteralTooBig(tag, n, is_append));
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
/// The session's summary is returned for the log (`starttls: ...`).
pub async fn start_tls(
    input: &mut Input<BoxRd>,
    w: &mut Output<BoxWr>,
    acc: std::sync::Arc<rustls::ServerConfig>,
) -> std::io::Result<String> {
    let (io, _dropped) = take_stream(input, w);
    let t = tokio_rustls::TlsAcceptor::from(acc).accept(io).await?;
    let summary = crate::util::tls::server_summary(t.get_ref().1);
    put_stream(Box::new(t), input, w);
    Ok(summary)
}

/// COMPRESS DEFLATE (RFC 4978): both ways from the next byte on; bytes
/// the client already sent compressed are kept.
pub fn start_deflate(input: &mut Input<BoxRd>, w: &mut Output<BoxWr>) {
    let (io, pending) = take_stream(input, w);
    put_stream(Box::new(crate::server::deflate::Deflate::new(io, pending)), input, w);
}
