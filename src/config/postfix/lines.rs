//! Postfix logical lines (`readllines`): the reading rules shared by main.cf,
//! master.cf and the text lookup tables.
//!
//! - A logical line starts with non-white text; a physical line that starts
//!   with white space continues it, and keeps that white space.
//! - Comment lines (first non-blank `#`), blank and white-space-only lines are
//!   dropped and do not end a logical line.
//! - A logical line that starts with white space is refused with a warning
//!   (it would otherwise silently continue nothing).

/// One logical line and the number of the physical line it started on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalLine {
    pub text: String,
    pub first_line: usize,
    pub last_line: usize,
}

/// Splits `data` into logical lines; `warn` receives Postfix's warnings
/// (without the `program: warning: ` prefix), given the file path.
pub fn logical_lines(path: &str, data: &[u8], warn: &mut dyn FnMut(String)) -> Vec<LogicalLine> {
    let mut out = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut first = 0usize;
    let mut lineno = 0usize;
    let mut pos = 0usize;
    let mut warned_nul = false;
    while pos < data.len() {
        let end = data[pos..].iter().position(|&b| b == b'\n').map_or(data.len(), |i| pos + i);
        let mut phys = &data[pos..end];
        pos = if end < data.len() { end + 1 } else { end };
        lineno += 1;
        if let Some(nul) = phys.iter().position(|&b| b == 0) {
            if !warned_nul {
                warn(format!("{path}, line {lineno}: text after null byte may be ignored"));
                warned_nul = true;
            }
            phys = &phys[..nul];
        }
        let blank_or_comment = match phys.iter().position(|b| !b.is_ascii_whitespace()) {
            None => true,
            Some(i) => phys[i] == b'#',
        };
        if !blank_or_comment {
            if buf.is_empty() {
                first = lineno;
            }
            buf.extend_from_slice(phys);
        }
        // The logical line ends unless the next physical line starts with
        // white space or '#' (a comment inside a continuation).
        let next = data.get(pos).copied();
        let continues = matches!(next, Some(c) if c == b'#' || c.is_ascii_whitespace());
        if !buf.is_empty() && (!continues || pos >= data.len()) {
            flush(path, &mut buf, first, lineno, &mut out, warn);
        }
    }
    if !buf.is_empty() {
        flush(path, &mut buf, first, lineno, &mut out, warn);
    }
    out
}

fn flush(path: &str, buf: &mut Vec<u8>, first: usize, last: usize, out: &mut Vec<LogicalLine>, warn: &mut dyn FnMut(String)) {
    let text = String::from_utf8_lossy(buf).into_owned();
    buf.clear();
    if text.starts_with(|c: char| c.is_ascii_whitespace()) {
        let shown: String = text.chars().take(30).collect();
        let more = if text.len() > 30 { "..." } else { "" };
        warn(format!("{path}: logical line must not start with whitespace: \"{shown}{more}\""));
        return;
    }
    out.push(LogicalLine {
        text,
        first_line: first,
        last_line: last,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &str) -> (Vec<String>, Vec<String>) {
        let mut w = Vec::new();
        let l = logical_lines("f", s.as_bytes(), &mut |m| w.push(m));
        (l.into_iter().map(|l| l.text).collect(), w)
    }

    #[test]
    fn rules() {
        struct Case {
            name: &'static str,
            input: &'static str,
            want: &'static [&'static str],
            warns: usize,
        }
        let cases = [
            Case {
                name: "continuation keeps white space",
                input: "a    b\n\tc\n",
                want: &["a    b\tc"],
                warns: 0,
            },
            Case {
                name: "comment inside continuation",
                input: "m = 1\n# c\n  2\nn = 3\n",
                want: &["m = 1  2", "n = 3"],
                warns: 0,
            },
            Case {
                name: "blank line inside continuation",
                input: "m = 1\n\n  2\n",
                want: &["m = 1  2"],
                warns: 0,
            },
            Case {
                name: "hash after value is text",
                input: "r = [a]   # c?\n",
                want: &["r = [a]   # c?"],
                warns: 0,
            },
            Case {
                name: "leading white space refused",
                input: "  x = 1\ny = 2\n",
                want: &["y = 2"],
                warns: 1,
            },
            Case {
                name: "no final newline",
                input: "a = 1\n b",
                want: &["a = 1 b"],
                warns: 0,
            },
            Case {
                name: "empty",
                input: "",
                want: &[],
                warns: 0,
            },
        ];
        for c in cases {
            let (got, w) = lines(c.input);
            assert_eq!(got, c.want, "{}", c.name);
            assert_eq!(w.len(), c.warns, "{}", c.name);
        }
    }

    #[test]
    fn first_line_numbers() {
        let l = logical_lines("f", b"# x\na = 1\n  b\n\nc = 2\n", &mut |_| {});
        assert_eq!((l[0].first_line, l[1].first_line), (2, 5));
    }
}
