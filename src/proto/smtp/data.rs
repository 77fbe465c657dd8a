//! The DATA and BDAT receivers: raw bytes in, message content out (CRLF
//! line ends, dot-unstuffed), stored up to a size limit and counted beyond
//! it, so that a sender is never read without bound.
//!
//! SMTP smuggling (CVE-2023-51764 and kin): only `<CR><LF>.<CR><LF>` ends
//! DATA — the `.` line must be preceded and followed by CRLF.  `<LF>.<LF>`,
//! `<CR><LF>.<LF>`, `<LF>.<CR><LF>` and `<CR>.<CR>` are content.  A bare LF
//! ends a content line (stored as CRLF) and is reported, so that the daemon
//! can apply `smtpd_forbid_bare_newline` (Postfix 3.9's `normalize`
//! behaviour is the default here, whatever the compatibility level).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line that followed CRLF (or the start of data).
    Bol,
    /// At the start of a line that followed a bare LF.
    BolBare,
    /// After a leading `.`; the flag: the line followed CRLF.
    Dot(bool),
    /// After `.` and CR; the flag as above.
    DotCr(bool),
    InLine,
    InLineCr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataEnd {
    /// The terminating `.` line was seen; the number of input bytes used.
    Done(usize),
    /// All input used; more is needed.
    More,
}

#[derive(Debug)]
pub struct DataReceiver {
    pub data: Vec<u8>,
    limit: usize,
    state: State,
    /// Content bytes seen (stored or not).
    pub size: u64,
    pub too_big: bool,
    /// A line ended with a bare LF.
    pub bare_lf: bool,
}

impl DataReceiver {
    pub fn new(limit: usize) -> Self {
        DataReceiver {
            data: Vec::new(),
            limit,
            state: State::Bol,
            size: 0,
            too_big: false,
            bare_lf: false,
        }
    }

    fn put(&mut self, b: &[u8]) {
        self.size += b.len() as u64;
        if self.too_big {
            return;
        }
        if self.data.len() + b.len() > self.limit {
            self.too_big = true;
            self.data = Vec::new();
            return;
        }
        self.data.extend_from_slice(b);
    }

    /// Consumes input up to and including the end of data.
    pub fn feed(&mut self, input: &[u8]) -> DataEnd {
        let mut i = 0;
        while i < input.len() {
            // Inside a line, up to its next CR or LF in one piece.
            if self.state == State::InLine {
                let rest = &input[i..];
                let k = memchr::memchr2(b'\r', b'\n', rest).unwrap_or(rest.len());
                if k > 0 {
                    self.put(&rest[..k]);
                    i += k;
                    continue;
                }
            }
            let c = input[i];
            i += 1;
            self.state = match (self.state, c) {
                (State::Bol, b'.') => State::Dot(true),
                (State::BolBare, b'.') => State::Dot(false),
                (State::Dot(crlf), b'\r') => State::DotCr(crlf),
                (State::DotCr(true), b'\n') => {
                    self.state = State::Bol;
                    return DataEnd::Done(i);
                }
                // ".\n" or "\n.\r\n": content (an empty line after unstuffing).
                (State::Dot(_), b'\n') | (State::DotCr(false), b'\n') => {
                    if matches!(self.state, State::Dot(_)) {
                        self.bare_lf = true;
                    }
                    self.put(b"\r\n");
                    if matches!(self.state, State::Dot(_)) {
                        State::BolBare
                    } else {
                        State::Bol
                    }
                }
                (State::DotCr(_), b'\r') => {
                    self.put(b"\r");
                    State::InLineCr
                }
                (State::DotCr(_), c) => {
                    self.put(&[b'\r', c]);
                    State::InLine
                }
                (State::Dot(_), c) => {
                    self.put(&[c]);
                    State::InLine
                }
                (State::Bol | State::BolBare | State::InLine, c) if c != b'\r' && c != b'\n' => {
                    self.put(&[c]);
                    State::InLine
                }
                (State::Bol | State::BolBare | State::InLine, b'\r') => State::InLineCr,
                (State::Bol | State::BolBare | State::InLine, _) => {
                    // Bare LF.
                    self.bare_lf = true;
                    self.put(b"\r\n");
                    State::BolBare
                }
                (State::InLineCr, b'\n') => {
                    self.put(b"\r\n");
                    State::Bol
                }
                (State::InLineCr, b'\r') => {
                    self.put(b"\r");
                    State::InLineCr
                }
                (State::InLineCr, c) => {
                    self.put(&[b'\r', c]);
                    State::InLine
                }
            };
        }
        DataEnd::More
    }
}

/// BDAT (RFC 3030): chunks of exact sizes, no dot-stuffing.  Bare LFs are
/// stored as CRLF (the queue holds CRLF text), a lone CR is kept.
#[derive(Debug)]
pub struct BdatReceiver {
    pub data: Vec<u8>,
    limit: usize,
    pub size: u64,
    pub too_big: bool,
    pub bare_lf: bool,
    last_cr: bool,
}

impl BdatReceiver {
    pub fn new(limit: usize) -> Self {
        BdatReceiver {
            data: Vec::new(),
            limit,
            size: 0,
            too_big: false,
            bare_lf: false,
            last_cr: false,
        }
    }

    /// Whether a chunk of `n` more bytes would exceed the limit.
    pub fn would_exceed(&self, n: u64) -> bool {
        self.size.saturating_add(n) > self.limit as u64
    }

    /// Adds chunk bytes (any split of the chunk).
    pub fn feed(&mut self, input: &[u8]) {
        self.size += input.len() as u64;
        if self.too_big || self.size > self.limit as u64 {
            self.too_big = true;
            self.data = Vec::new();
            return;
        }
        // Line by line (a byte at a time cost a big message dearly).
        let mut rest = input;
        while let Some(i) = memchr::memchr(b'\n', rest) {
            let after_cr = if i == 0 { self.last_cr } else { rest[i - 1] == b'\r' };
            self.data.extend_from_slice(&rest[..i]);
            if !after_cr {
                self.bare_lf = true;
                self.data.push(b'\r');
            }
            self.data.push(b'\n');
            self.last_cr = false;
            rest = &rest[i + 1..];
        }
        if let Some(&last) = rest.last() {
            self.data.extend_from_slice(rest);
            self.last_cr = last == b'\r';
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8]) -> (Vec<u8>, DataEnd, bool) {
        let mut d = DataReceiver::new(1000);
        let e = d.feed(input);
        (d.data, e, d.bare_lf)
    }

    #[test]
    fn end_of_data_only_after_crlf_dot_crlf() {
        let cases: &[(&[u8], &[u8], DataEnd, bool)] = &[
            (b"a\r\n.\r\nNEXT", b"a\r\n", DataEnd::Done(6), false),
            (b".\r\n", b"", DataEnd::Done(3), false),
            (b"..x\r\n.\r\n", b".x\r\n", DataEnd::Done(8), false),
            // Smuggling attempts: none of these end the data.
            (b"a\n.\nMAIL FROM:<x>\r\n", b"a\r\n\r\nMAIL FROM:<x>\r\n", DataEnd::More, true),
            (b"a\r\n.\nb\r\n", b"a\r\n\r\nb\r\n", DataEnd::More, true),
            (b"a\n.\r\nb\r\n", b"a\r\n\r\nb\r\n", DataEnd::More, true),
            (b"a\r.\rb\r\n", b"a\r.\rb\r\n", DataEnd::More, false),
            (b"a\r\n.\r.\r\n", b"a\r\n\r.\r\n", DataEnd::More, false),
            (b"x\r\r\ny\r\n", b"x\r\r\ny\r\n", DataEnd::More, false),
        ];
        for (input, data, end, bare) in cases {
            let (d, e, b) = run(input);
            assert_eq!((&d[..], e, b), (&data[..], *end, *bare), "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn byte_at_a_time_equals_whole() {
        let input = b"Subject: x\r\n\r\n..dot\r\nbare\nline\r\r\n.\r\n";
        let mut d = DataReceiver::new(1000);
        let mut end = None;
        for (i, b) in input.iter().enumerate() {
            if let DataEnd::Done(n) = d.feed(std::slice::from_ref(b)) {
                assert_eq!(n, 1);
                end = Some(i + 1);
            }
        }
        assert_eq!(end, Some(input.len()));
        assert_eq!(d.data, b"Subject: x\r\n\r\n.dot\r\nbare\r\nline\r\r\n");
        // And in two pieces split anywhere.
        for at in 0..input.len() {
            let mut d = DataReceiver::new(1000);
            assert_eq!(d.feed(&input[..at]), DataEnd::More, "split at {at}");
            assert_eq!(d.feed(&input[at..]), DataEnd::Done(input.len() - at), "split at {at}");
            assert_eq!(d.data, b"Subject: x\r\n\r\n.dot\r\nbare\r\nline\r\r\n", "split at {at}");
            assert!(d.bare_lf);
        }
    }

    #[test]
    fn limit_at_and_over() {
        let mut d = DataReceiver::new(5);
        assert_eq!(d.feed(b"abc\r\n.\r\n"), DataEnd::Done(8));
        assert!(!d.too_big);
        let mut d = DataReceiver::new(4);
        assert_eq!(d.feed(b"abc\r\n.\r\n"), DataEnd::Done(8));
        assert!(d.too_big && d.data.is_empty());
        assert_eq!(d.size, 5);
    }

    #[test]
    fn bdat_normalises_bare_lf() {
        let mut b = BdatReceiver::new(100);
        b.feed(b"a\nb\r");
        b.feed(b"\nc");
        assert_eq!(b.data, b"a\r\nb\r\nc");
        assert!(b.bare_lf);
        assert!(b.would_exceed(95));
        assert!(!b.would_exceed(94));
        let mut b = BdatReceiver::new(3);
        b.feed(b"abcd");
        assert!(b.too_big);
        // Any split gives the same text.
        let input = b"\nx\r\n\r\ry\n\n\rz\r";
        for at in 0..=input.len() {
            let mut b = BdatReceiver::new(100);
            b.feed(&input[..at]);
            b.feed(&input[at..]);
            assert_eq!(b.data, b"\r\nx\r\n\r\ry\r\n\r\n\rz\r", "split at {at}");
            assert!(b.bare_lf);
        }
        let mut b = BdatReceiver::new(100);
        b.feed(b"a\r");
        b.feed(b"\nb\r\n");
        assert!(!b.bare_lf);
    }
}
