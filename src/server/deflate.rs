//! A stream adapter for IMAP COMPRESS=DEFLATE (RFC 4978): raw deflate
//! (no zlib header) both ways, a sync flush at every flush so each
//! response reaches the client whole.  Reads are bounded by the caller's
//! buffer, so a decompression bomb costs no memory; corrupt input is an
//! `InvalidData` error that ends the session.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Compressed bytes read from the peer per call.
const READ_CHUNK: usize = 16 * 1024;

pub struct Deflate<S> {
    inner: S,
    comp: Compress,
    decomp: Decompress,
    /// Compressed input not yet inflated.
    rbuf: Vec<u8>,
    rpos: usize,
    /// Compressed output not yet written.
    wbuf: Vec<u8>,
    wpos: usize,
    eof: bool,
    /// Data taken since the last sync flush.  A flush with nothing new
    /// sends nothing: an empty sync block (`00 00 00 FF FF`) alone makes
    /// some clients (mbsync) read an empty response line.
    dirty: bool,
}

impl<S> Deflate<S> {
    /// `pending` is input already read off the wire after the COMPRESS
    /// command (a client may pipeline compressed data behind it).
    pub fn new(inner: S, pending: Vec<u8>) -> Self {
        Deflate {
            inner,
            comp: Compress::new(Compression::fast(), false),
            decomp: Decompress::new(false),
            rbuf: pending,
            rpos: 0,
            wbuf: Vec::new(),
            wpos: 0,
            eof: false,
            dirty: false,
        }
    }

    fn deflate(&mut self, mut input: &[u8], flush: FlushCompress) -> io::Result<()> {
        loop {
            self.wbuf.reserve(8192.max(input.len() / 2 + 64));
            let before = self.comp.total_in();
            self.comp
                .compress_vec(input, &mut self.wbuf, flush)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            input = &input[(self.comp.total_in() - before) as usize..];
            // Finished when the input is taken and the output did not fill
            // the buffer (a full buffer may hide more flushed output).
            if input.is_empty() && self.wbuf.len() < self.wbuf.capacity() {
                return Ok(());
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> Deflate<S> {
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.wpos < self.wbuf.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.wbuf[self.wpos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.wpos += n;
        }
        self.wbuf.clear();
        self.wpos = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Deflate<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            if this.rpos < this.rbuf.len() || this.decomp.total_in() > 0 {
                let out = buf.initialize_unfilled();
                if out.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                let (in_before, out_before) = (this.decomp.total_in(), this.decomp.total_out());
                let status = this
                    .decomp
                    .decompress(&this.rbuf[this.rpos..], out, FlushDecompress::None)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                this.rpos += (this.decomp.total_in() - in_before) as usize;
                let produced = (this.decomp.total_out() - out_before) as usize;
                buf.advance(produced);
                if status == Status::StreamEnd {
                    this.eof = true;
                }
                if produced > 0 || this.eof {
                    return Poll::Ready(Ok(()));
                }
                if this.rpos < this.rbuf.len() {
                    // Input left but nothing came out: a stuck stream.
                    continue;
                }
            }
            // More compressed input.
            this.rbuf.clear();
            this.rpos = 0;
            this.rbuf.resize(READ_CHUNK, 0);
            let mut rb = ReadBuf::new(&mut this.rbuf);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    this.rbuf.truncate(n);
                    if n == 0 {
                        this.eof = true;
                        return Poll::Ready(Ok(()));
                    }
                }
                Poll::Ready(Err(e)) => {
                    this.rbuf.clear();
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => {
                    this.rbuf.clear();
                    return Poll::Pending;
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Deflate<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // Bounded: pending output goes out before more is taken.
        if this.wbuf.len() - this.wpos > 64 * 1024 {
            ready!(this.poll_drain(cx))?;
        }
        this.deflate(data, FlushCompress::None)?;
        this.dirty |= !data.is_empty();
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.wpos == 0 && this.dirty {
            // The sync flush once per flush (its bytes may already be
            // partly written when we come back after Pending).
            this.deflate(&[], FlushCompress::Sync)?;
            this.dirty = false;
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn round_trip_and_corruption() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut x = Deflate::new(a, Vec::new());
        let mut y = Deflate::new(b, Vec::new());
        let text = b"a1 OK Completed\r\n".repeat(500);
        x.write_all(&text).await.unwrap();
        x.flush().await.unwrap();
        let mut got = vec![0u8; text.len()];
        y.read_exact(&mut got).await.unwrap();
        assert_eq!(got, text);
        // A flush with nothing written sends nothing.
        x.flush().await.unwrap();
        x.write_all(b"second\r\n").await.unwrap();
        x.flush().await.unwrap();
        let mut got = [0u8; 8];
        y.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"second\r\n");
        // Garbage instead of deflate data is an error, not a hang.
        let (mut raw, c) = tokio::io::duplex(1024);
        let mut z = Deflate::new(c, Vec::new());
        raw.write_all(&[0xff; 64]).await.unwrap();
        let mut buf = [0u8; 64];
        assert!(z.read(&mut buf).await.is_err());
    }

    #[tokio::test]
    async fn empty_flush_sends_nothing() {
        let (a, mut raw) = tokio::io::duplex(1024);
        let mut x = Deflate::new(a, Vec::new());
        x.flush().await.unwrap();
        let mut buf = [0u8; 16];
        let r = tokio::time::timeout(std::time::Duration::from_millis(50), raw.read(&mut buf)).await;
        assert!(r.is_err(), "bytes on the wire: {r:?}");
        x.write_all(b"x\r\n").await.unwrap();
        x.flush().await.unwrap();
        let n = raw.read(&mut buf).await.unwrap();
        assert!(n > 0 && buf[..n].ends_with(&[0, 0, 0xff, 0xff]));
    }
}
