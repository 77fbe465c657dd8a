//! A bounded line splitter (sans-I/O): feed bytes, take complete lines.
//! A line longer than the limit is reported, never buffered without bound
//! (Postfix `line_length_limit`, Cyrus protocol line limits).

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A complete line without its CRLF / LF.
    Complete(Vec<u8>),
    /// The line exceeded the limit; its bytes up to the limit were dropped
    /// and the rest up to the next LF will be discarded.
    TooLong,
}

#[derive(Debug)]
pub struct LineBuffer {
    buf: Vec<u8>,
    limit: usize,
    discarding: bool,
}

impl LineBuffer {
    pub fn new(limit: usize) -> Self {
        LineBuffer {
            buf: Vec::new(),
            limit,
            discarding: false,
        }
    }

    /// Bytes held that are not yet a complete line.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Whether the input is inside a line already reported too long (its
    /// rest, up to LF, is being skipped).
    pub fn discarding(&self) -> bool {
        self.discarding
    }

    /// Takes the bytes held that are not yet a complete line (a caller
    /// switching to raw reads).
    pub fn take_pending(&mut self) -> Vec<u8> {
        self.discarding = false;
        std::mem::take(&mut self.buf)
    }

    /// Adds input; returns the lines it completes.
    pub fn feed(&mut self, mut data: &[u8]) -> Vec<Line> {
        let mut out = Vec::new();
        while !data.is_empty() {
            match data.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    if self.discarding {
                        self.discarding = false;
                    } else if self.buf.len() + i > self.limit + 1 {
                        self.buf.clear();
                        out.push(Line::TooLong);
                    } else {
                        self.buf.extend_from_slice(&data[..i]);
                        if self.buf.last() == Some(&b'\r') {
                            self.buf.pop();
                        }
                        if self.buf.len() > self.limit {
                            self.buf.clear();
                            out.push(Line::TooLong);
                        } else {
                            out.push(Line::Complete(std::mem::take(&mut self.buf)));
                        }
                    }
                    data = &data[i + 1..];
                }
                None => {
                    if !self.discarding {
                        if self.buf.len() + data.len() > self.limit + 1 {
                            self.buf.clear();
                            self.discarding = true;
                            out.push(Line::TooLong);
                        } else {
                            self.buf.extend_from_slice(data);
                        }
                    }
                    data = &[];
                }
            }
        }
        out
    }
}

/// The same splitting, one line at a time, over input kept as it came:
/// what follows a line can be taken as raw bytes (a BDAT chunk, a message
/// read in pieces) exactly as sent.
#[derive(Debug)]
pub struct RawLines {
    buf: Vec<u8>,
    pos: usize,
    limit: usize,
    discarding: bool,
}

impl RawLines {
    pub fn new(limit: usize) -> Self {
        RawLines {
            buf: Vec::new(),
            pos: 0,
            limit,
            discarding: false,
        }
    }

    /// Adds input.
    pub fn push(&mut self, data: &[u8]) {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos >= 64 * 1024 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next complete line, if the input holds one.
    pub fn next_line(&mut self) -> Option<Line> {
        loop {
            let rest = &self.buf[self.pos..];
            let Some(i) = memchr::memchr(b'\n', rest) else {
                if self.discarding {
                    self.pos = self.buf.len();
                } else if rest.len() > self.limit + 1 {
                    self.pos = self.buf.len();
                    self.discarding = true;
                    return Some(Line::TooLong);
                }
                return None;
            };
            let line = &rest[..i];
            self.pos += i + 1;
            if std::mem::take(&mut self.discarding) {
                continue;
            }
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            return Some(if line.len() > self.limit {
                Line::TooLong
            } else {
                Line::Complete(line.to_vec())
            });
        }
    }

    /// Takes up to `max` bytes of raw input, as they came.
    pub fn take_raw(&mut self, max: usize) -> &[u8] {
        let n = (self.buf.len() - self.pos).min(max);
        let start = self.pos;
        self.pos += n;
        &self.buf[start..start + n]
    }

    /// The raw input held, not taken.
    pub fn peek(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Takes `n` bytes of what `peek` shows.
    pub fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.buf.len());
    }

    /// Raw input held.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Whether the input is inside a line already reported too long.
    pub fn discarding(&self) -> bool {
        self.discarding
    }

    /// Leaves a line reported too long (raw reads took over).
    pub fn stop_discarding(&mut self) {
        self.discarding = false;
    }

    /// Drops all input held.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.pos = 0;
        self.discarding = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RawLines splits as LineBuffer does, whatever the pieces.
    #[test]
    fn raw_lines_as_line_buffer() {
        let input = b"abcd\r\nabcde\nab\r\ncdefghijk\nok\n\r\nx\ry\n1234\r";
        for step in 1..input.len() {
            let mut a = LineBuffer::new(4);
            let mut b = RawLines::new(4);
            let (mut la, mut lb) = (Vec::new(), Vec::new());
            for part in input.chunks(step) {
                la.extend(a.feed(part));
                b.push(part);
                while let Some(l) = b.next_line() {
                    lb.push(l);
                }
            }
            assert_eq!(la, lb, "step {step}");
            assert_eq!(b.take_raw(100), &b"1234\r"[..], "step {step}");
        }
        // What follows a line comes raw: CRs and LFs as sent.
        let mut b = RawLines::new(100);
        b.push(b"BDAT 5\r\na\nb\r\rRSET\r\n");
        assert_eq!(b.next_line(), Some(Line::Complete(b"BDAT 5".to_vec())));
        assert_eq!(b.take_raw(5), b"a\nb\r\r");
        assert_eq!(b.next_line(), Some(Line::Complete(b"RSET".to_vec())));
        assert_eq!((b.next_line(), b.pending()), (None, 0));
    }

    #[test]
    fn at_and_over_limit() {
        let mut b = LineBuffer::new(4);
        assert_eq!(b.feed(b"abcd\r\n"), vec![Line::Complete(b"abcd".to_vec())]);
        assert_eq!(b.feed(b"abcde\n"), vec![Line::TooLong]);
        assert_eq!(b.feed(b"ab"), vec![]);
        assert_eq!(b.feed(b"cdefgh"), vec![Line::TooLong]);
        assert_eq!(b.feed(b"ijk\nok\n"), vec![Line::Complete(b"ok".to_vec())]);
        assert!(b.pending() <= 5);
    }
}
