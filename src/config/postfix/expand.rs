//! Postfix `$name` expansion (mac_expand semantics): `$name`, `${name}`,
//! `$(name)`, `${name?value}`, `${name:value}`, `${name?{v1}:{v2}}`,
//! relational `${{a} op {b} ? {x} : {y}}` with `== != < <= >= >` and the
//! `level` variants that compare compatibility levels, and `$$`.
//! Parameter values are expanded recursively; depth is bounded.

/// How deep `$a` → `$b` → … may nest before expansion gives up.
pub const MAX_NESTING: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpandError {
    /// `unreasonable macro call nesting: "..."`
    Nesting(String),
    /// A malformed `${...}` construct; Postfix's wording.
    Syntax(String),
}

impl std::fmt::Display for ExpandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExpandError::Nesting(v) => write!(f, "unreasonable macro call nesting: \"{v}\""),
            ExpandError::Syntax(m) => f.write_str(m),
        }
    }
}

/// The source of parameter values for expansion.
pub trait Lookup {
    /// The raw (unexpanded) value of `name`, if the parameter exists.
    fn raw(&self, name: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String>> Lookup for F {
    fn raw(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// Expansion state: the lookup and the names that were used but undefined.
pub struct Expander<'a> {
    lookup: &'a dyn Lookup,
    pub undefined: Vec<String>,
}

impl<'a> Expander<'a> {
    pub fn new(lookup: &'a dyn Lookup) -> Self {
        Expander {
            lookup,
            undefined: Vec::new(),
        }
    }

    /// Expands `text` completely.
    pub fn expand(&mut self, text: &str) -> Result<String, ExpandError> {
        let mut out = String::new();
        self.expand_into(text, 0, &mut out)?;
        Ok(out)
    }

    fn value_of(&mut self, name: &str, depth: usize, used: bool) -> Result<String, ExpandError> {
        match self.lookup.raw(name) {
            Some(v) => {
                let mut out = String::new();
                self.expand_into(&v, depth + 1, &mut out)?;
                Ok(out)
            }
            None => {
                if used && !self.undefined.iter().any(|u| u == name) {
                    self.undefined.push(name.to_string());
                }
                Ok(String::new())
            }
        }
    }

    fn expand_into(&mut self, text: &str, depth: usize, out: &mut String) -> Result<(), ExpandError> {
        if depth > MAX_NESTING {
            return Err(ExpandError::Nesting(text.to_string()));
        }
        let b = text.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] != b'$' {
                let next = text[i..].find('$').map_or(b.len(), |n| i + n);
                out.push_str(&text[i..next]);
                i = next;
                continue;
            }
            match b.get(i + 1) {
                Some(b'$') => {
                    out.push('$');
                    i += 2;
                }
                Some(&open @ (b'{' | b'(')) => {
                    let close = if open == b'{' { b'}' } else { b')' };
                    let Some(end) = matching(b, i + 1, open, close) else {
                        return Err(ExpandError::Syntax(format!("truncated macro reference: \"{text}\"")));
                    };
                    let inner = &text[i + 2..end];
                    self.expand_ref(inner, depth, out)?;
                    i = end + 1;
                }
                Some(c) if is_name_char(*c) => {
                    let end = b[i + 1..].iter().position(|c| !is_name_char(*c)).map_or(b.len(), |n| i + 1 + n);
                    let v = self.value_of(&text[i + 1..end], depth, true)?;
                    out.push_str(&v);
                    i = end;
                }
                _ => {
                    out.push('$');
                    i += 1;
                }
            }
        }
        Ok(())
    }

    fn expand_ref(&mut self, inner: &str, depth: usize, out: &mut String) -> Result<(), ExpandError> {
        let t = inner.trim_start();
        if t.starts_with('{') {
            return self.relational(inner, depth, out);
        }
        let name_end = t.bytes().position(|c| !is_name_char(c)).unwrap_or(t.len());
        let name = &t[..name_end];
        if name.is_empty() {
            return Err(ExpandError::Syntax(format!("empty macro name: \"{inner}\"")));
        }
        let rest = t[name_end..].trim_start();
        if rest.is_empty() {
            let v = self.value_of(name, depth, true)?;
            out.push_str(&v);
            return Ok(());
        }
        let mut chars = rest.chars();
        let op = chars.next().unwrap_or(' ');
        let rest = chars.as_str();
        let set = !self.value_of(name, depth, false)?.is_empty();
        let (if_set, if_unset) = match op {
            '?' => parse_alternatives(rest)?,
            ':' => (None, Some(braced_or_plain(rest)?)),
            _ => {
                return Err(ExpandError::Syntax(format!(
                    "unknown operator '{op}' in macro reference: \"{inner}\""
                )))
            }
        };
        let chosen = if set { if_set } else { if_unset };
        if let Some(v) = chosen {
            self.expand_into(&v, depth + 1, out)?;
        }
        Ok(())
    }

    fn relational(&mut self, inner: &str, depth: usize, out: &mut String) -> Result<(), ExpandError> {
        let bad = || ExpandError::Syntax(format!("malformed relational expression: \"{inner}\""));
        let (left, rest) = take_braced(inner.trim_start()).ok_or_else(bad)?;
        let rest = rest.trim_start();
        let op_len = rest
            .bytes()
            .position(|c| !matches!(c, b'=' | b'!' | b'<' | b'>'))
            .unwrap_or(rest.len());
        let mut op = rest[..op_len].to_string();
        let mut rest = &rest[op_len..];
        if let Some(r) = rest.strip_prefix("level") {
            op.push_str("level");
            rest = r;
        }
        let (right, rest) = take_braced(rest.trim_start()).ok_or_else(bad)?;
        let rest = rest.trim_start();
        let l = self.sub(&left, depth)?;
        let r = self.sub(&right, depth)?;
        let truth =
            compare(&op, l.trim(), r.trim()).ok_or_else(|| ExpandError::Syntax(format!("unknown operator '{op}' in \"{inner}\"")))?;
        let (if_true, if_false) = if let Some(r) = rest.strip_prefix('?') {
            parse_alternatives(r)?
        } else if let Some(r) = rest.strip_prefix(':') {
            (None, Some(braced_or_plain(r)?))
        } else {
            return Err(bad());
        };
        if let Some(v) = if truth { if_true } else { if_false } {
            self.expand_into(&v, depth + 1, out)?;
        }
        Ok(())
    }

    fn sub(&mut self, text: &str, depth: usize) -> Result<String, ExpandError> {
        let mut s = String::new();
        self.expand_into(text, depth + 1, &mut s)?;
        Ok(s)
    }
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Index of the bracket that closes the one at `open_at`, counting nesting.
fn matching(b: &[u8], open_at: usize, open: u8, close: u8) -> Option<usize> {
    let mut level = 0usize;
    for (i, &c) in b.iter().enumerate().skip(open_at) {
        if c == open {
            level += 1;
        } else if c == close {
            level -= 1;
            if level == 0 {
                return Some(i);
            }
        }
    }
    None
}

/// `{payload}rest` → (trimmed payload, rest).
fn take_braced(s: &str) -> Option<(String, &str)> {
    if !s.starts_with('{') {
        return None;
    }
    let end = matching(s.as_bytes(), 0, b'{', b'}')?;
    Some((s[1..end].trim().to_string(), &s[end + 1..]))
}

fn braced_or_plain(s: &str) -> Result<String, ExpandError> {
    let t = s.trim_start();
    if t.starts_with('{') {
        match take_braced(t) {
            Some((v, rest)) if rest.trim().is_empty() => Ok(v),
            _ => Err(ExpandError::Syntax(format!("unexpected text after '}}': \"{s}\""))),
        }
    } else {
        Ok(s.to_string())
    }
}

/// After `?`: `{v1}` [`:` `{v2}`] or plain text.
fn parse_alternatives(s: &str) -> Result<(Option<String>, Option<String>), ExpandError> {
    let t = s.trim_start();
    if !t.starts_with('{') {
        return Ok((Some(s.to_string()), None));
    }
    let (v1, rest) = take_braced(t).ok_or_else(|| ExpandError::Syntax(format!("unmatched '{{' in \"{s}\"")))?;
    let rest = rest.trim_start();
    if rest.is_empty() {
        return Ok((Some(v1), None));
    }
    match rest.strip_prefix(':') {
        Some(r) => {
            let r = r.trim_start();
            if !r.starts_with('{') {
                return Err(ExpandError::Syntax(format!("\"{{\" expected after ':' in \"{s}\"")));
            }
            Ok((Some(v1), Some(braced_or_plain(r)?)))
        }
        None => Err(ExpandError::Syntax(format!("unexpected text after '}}': \"{s}\""))),
    }
}

/// Compatibility levels compare by number per component: 3.10 > 3.9 > 2.
pub fn compare_levels(a: &str, b: &str) -> Option<std::cmp::Ordering> {
    fn parts(s: &str) -> Option<Vec<u64>> {
        s.split('.').map(|p| p.parse().ok()).collect()
    }
    let (mut x, mut y) = (parts(a)?, parts(b)?);
    let n = x.len().max(y.len());
    x.resize(n, 0);
    y.resize(n, 0);
    Some(x.cmp(&y))
}

fn compare(op: &str, l: &str, r: &str) -> Option<bool> {
    use std::cmp::Ordering::*;
    let (base, level) = match op.strip_suffix("level") {
        Some(b) => (b, true),
        None => (op, false),
    };
    let ord = if level {
        compare_levels(l, r)?
    } else if !l.is_empty() && !r.is_empty() && l.bytes().all(|c| c.is_ascii_digit()) && r.bytes().all(|c| c.is_ascii_digit()) {
        let (a, b) = (l.trim_start_matches('0'), r.trim_start_matches('0'));
        a.len().cmp(&b.len()).then(a.cmp(b))
    } else {
        l.cmp(r)
    };
    Some(match base {
        "==" => ord == Equal,
        "!=" => ord != Equal,
        "<" => ord == Less,
        "<=" => ord != Greater,
        ">" => ord == Greater,
        ">=" => ord != Less,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn run(vars: &[(&str, &str)], text: &str) -> (Result<String, ExpandError>, Vec<String>) {
        let m: HashMap<String, String> = vars.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        let f = move |n: &str| m.get(n).cloned();
        let mut e = Expander::new(&f);
        let r = e.expand(text);
        (r, e.undefined)
    }

    #[test]
    fn postconf_verified_example() {
        // Observed with Postfix 3.7.11 (ref/postfix.md 1.1).
        let (r, _) = run(
            &[("mydomain", "example.com")],
            "A${mydomain?{set}:{unset}}B ${nonexist:fallback} ${mydomain:no} $$lit ${mydomain?yes} $(mydomain)",
        );
        assert_eq!(r.unwrap(), "AsetB fallback  $lit yes example.com");
    }

    #[test]
    fn table() {
        let vars = [
            ("a", "1"),
            ("b", "$a$a"),
            ("empty", ""),
            ("compatibility_level", "2"),
            ("loop", "$loop"),
        ];
        let cases: &[(&str, &str)] = &[
            ("$b", "11"),
            ("${b}x", "11x"),
            ("${empty?yes}", ""),
            ("${empty:no}", "no"),
            ("${a?{ spaced }}", "spaced"),
            ("${{$compatibility_level} <level {2} ? {subnet} : {host}}", "host"),
            ("${{$compatibility_level} <level {3.6} ? {old} : {new}}", "old"),
            ("${{10} > {9} ? {num} : {lex}}", "num"),
            ("${{b} > {a} ? {t} : {f}}", "t"),
            ("${{$a} == {1} ? {eq}}", "eq"),
            ("${{$a} != {1} : {ne}}", "ne"),
            ("${{$a} == {1} : {ne}}", ""),
            ("cost $ 5", "cost $ 5"),
        ];
        for (input, want) in cases {
            assert_eq!(run(&vars, input).0.unwrap(), *want, "{input}");
        }
        assert!(matches!(run(&vars, "$loop").0, Err(ExpandError::Nesting(_))));
        assert!(matches!(run(&vars, "${a").0, Err(ExpandError::Syntax(_))));
    }

    #[test]
    fn fuzz_regressions() {
        // A multi-byte character where the operator is expected (found by
        // cargo fuzz: byte slicing inside a character panicked).
        let crash = b"\x01\x00@\x95\x95%$(uuuuuuuuuuuuuuuuuuuuuuu\xff\xff\xff\xffuu\x00\x0f)\x01";
        let text = String::from_utf8_lossy(crash);
        assert!(run(&[], &text).0.is_err());
        assert!(run(&[("a", "1")], "${a\u{e9}x}").0.is_err());
    }

    #[test]
    fn undefined_reported_only_when_used() {
        let (r, u) = run(&[], "$x ${y?z} ${w:v}");
        assert_eq!(r.unwrap(), "  v");
        assert_eq!(u, vec!["x".to_string()]);
    }

    #[test]
    fn level_compare() {
        assert_eq!(compare_levels("3.10", "3.9"), Some(std::cmp::Ordering::Greater));
        assert_eq!(compare_levels("2", "2.0"), Some(std::cmp::Ordering::Equal));
    }
}
