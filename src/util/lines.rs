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

#[cfg(test)]
mod tests {
    use super::*;

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
