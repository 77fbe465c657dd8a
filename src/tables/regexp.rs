//! `regexp:` (regexp_table(5), POSIX syntax) and `pcre:` (pcre_table(5))
//! tables: `/pattern/flags result`, `!/pattern/flags result`,
//! `/pattern1/!/pattern2/ result` (regexp only), `if /pattern/flags` …
//! `endif`; the first matching rule wins, and `$1`, `${1}`, `$(1)`, `$$`
//! in its result are replaced from the match.  Both dialects are compiled
//! with the `regex` crate: the flag defaults differ as in Postfix
//! (regexp: `i` on, `x` = extended syntax on; pcre: `i` and `s` on), but
//! back-references and look-around, which that engine lacks, make the rule
//! a configuration error (skipped with a warning naming file and line).

use regex::{Regex, RegexBuilder};

#[derive(Debug)]
pub struct Pattern {
    re: Regex,
    negate: bool,
    /// regexp's `/p1/!/p2/`: the second pattern must not match.
    unless: Option<Regex>,
}

#[derive(Debug)]
pub struct RegexpTable(Vec<super::Rule<Pattern>>);

/// `/pattern/` with `\` escapes kept; returns the pattern and the rest
/// after the closing delimiter.
fn delimited(s: &str) -> Result<(String, &str), String> {
    let mut it = s.char_indices();
    let (_, delim) = it.next().ok_or("no regexp pattern")?;
    if delim.is_alphanumeric() || delim.is_whitespace() {
        return Err(format!("no \"{delim}\" delimiter: a pattern starts with a punctuation character"));
    }
    let mut pat = String::new();
    let mut escaped = false;
    for (i, c) in it {
        if escaped {
            pat.push(c);
            escaped = false;
        } else if c == '\\' {
            pat.push(c);
            escaped = true;
        } else if c == delim {
            return Ok((pat, &s[i + c.len_utf8()..]));
        } else {
            pat.push(c);
        }
    }
    Err(format!("no closing regexp delimiter \"{delim}\""))
}

/// POSIX basic syntax (regexp with `x` toggled off) in extended terms:
/// `\( \) \{ \} \| \+ \?` are operators, the bare characters literal.
fn basic_to_extended(p: &str) -> String {
    let mut out = String::new();
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(o @ ('(' | ')' | '{' | '}' | '|' | '+' | '?')) => out.push(o),
                Some(o) => {
                    out.push('\\');
                    out.push(o);
                }
                None => out.push_str("\\\\"),
            },
            '(' | ')' | '{' | '}' | '|' | '+' | '?' => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

/// Compiles a pattern with its flags; returns the rest of the line.
fn compile(s: &str, pcre: bool) -> Result<(Regex, &str), String> {
    let (pat, rest) = delimited(s)?;
    let flag_end = rest.find(|c: char| c.is_whitespace() || c == '!').unwrap_or(rest.len());
    let (flags, rest) = rest.split_at(flag_end);
    // Postfix's defaults; `dotall` is pcre's `s` (regexp's `.` follows `m`).
    let (mut icase, mut multi, mut dotall, mut ext, mut anchored, mut ungreedy) = (true, false, true, !pcre, false, false);
    for f in flags.chars() {
        match (f, pcre) {
            ('i', _) => icase = !icase,
            ('m', _) => multi = !multi,
            ('x', _) => ext = !ext,
            ('s', true) => dotall = !dotall,
            ('A', true) => anchored = !anchored,
            ('U', true) => ungreedy = !ungreedy,
            ('E' | 'X', true) => {}
            _ => return Err(format!("unknown regexp option \"{f}\"")),
        }
    }
    let mut pat = if !pcre && !ext { basic_to_extended(&pat) } else { pat };
    if anchored {
        pat = format!(r"\A(?:{pat})");
    }
    let re = RegexBuilder::new(&pat)
        .case_insensitive(icase)
        .multi_line(multi)
        // POSIX: `.` matches a newline unless REG_NEWLINE (the `m` flag).
        .dot_matches_new_line(if pcre { dotall } else { !multi })
        .ignore_whitespace(pcre && ext)
        .swap_greed(ungreedy)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| {
            let first = e.to_string().lines().last().unwrap_or("").trim().to_string();
            format!("regular expression \"{pat}\": {first}")
        })?;
    Ok((re, rest))
}

/// `$n`, `${n}`, `$(n)`, `$$` in a result: the highest group referenced,
/// or an error for a bad `$`.
fn max_group(result: &str) -> Result<usize, String> {
    let mut max = 0;
    substitute(result, &mut |n| {
        max = max.max(n);
        Some(String::new())
    })?;
    Ok(max)
}

fn substitute(result: &str, group: &mut dyn FnMut(usize) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    let b = result.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'$' {
            let ch = result[i..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8();
            continue;
        }
        i += 1;
        let (digits, close) = match b.get(i) {
            Some(b'$') => {
                out.push('$');
                i += 1;
                continue;
            }
            Some(b'{') => (i + 1, Some(b'}')),
            Some(b'(') => (i + 1, Some(b')')),
            Some(c) if c.is_ascii_digit() => (i, None),
            _ => return Err(format!("invalid $ in result \"{result}\"")),
        };
        let mut j = digits;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        let n: usize = result[digits..j].parse().map_err(|_| format!("invalid $ in result \"{result}\""))?;
        if let Some(c) = close {
            if b.get(j) != Some(&c) {
                return Err(format!("missing \"{}\" in result \"{result}\"", c as char));
            }
            j += 1;
        }
        out.push_str(&group(n).unwrap_or_default());
        i = j;
    }
    Ok(out)
}

fn rule(line: &str, pcre: bool) -> Result<super::Item<Pattern>, String> {
    let (is_if, body) = match line.split_once(|c: char| c.is_whitespace()) {
        Some((w, rest)) if w.eq_ignore_ascii_case("if") => (true, rest.trim_start()),
        _ if line.eq_ignore_ascii_case("endif") => return Ok(super::Item::Endif),
        _ => (false, line),
    };
    let (negate, body) = match body.strip_prefix('!') {
        Some(b) => (true, b),
        None => (false, body),
    };
    let (re, mut rest) = compile(body, pcre)?;
    let mut unless = None;
    if !pcre && !is_if {
        if let Some(r) = rest.strip_prefix('!') {
            let (u, r2) = compile(r, pcre)?;
            unless = Some(u);
            rest = r2;
        }
    }
    let pat = Pattern { re, negate, unless };
    if is_if {
        if !rest.trim().is_empty() {
            return Err("ignoring extra text after IF".into());
        }
        return Ok(super::Item::If(pat));
    }
    let result = rest.trim();
    if result.is_empty() {
        return Err("no replacement text: skipping this rule".into());
    }
    let max = max_group(result)?;
    if max > 0 && negate {
        return Err("$number found in negative match replacement text: skipping this rule".into());
    }
    if max >= pat.re.captures_len() {
        return Err(format!("out of range replacement index \"{max}\": skipping this rule"));
    }
    Ok(super::Item::Rule(pat, result.to_string()))
}

impl RegexpTable {
    /// `lines`: logical lines with their numbers (a file, or the elements
    /// of an inline `{ {rule}, … }`).
    pub fn parse(lines: Vec<(String, usize)>, file: &str, pcre: bool) -> (RegexpTable, Vec<String>) {
        let kind = if pcre { "pcre" } else { "regexp" };
        let mut items = Vec::new();
        let mut warnings = Vec::new();
        for (line, n) in lines {
            match rule(&line, pcre) {
                Ok(i) => items.push((i, n)),
                Err(e) => warnings.push(format!("{kind} map {file}, line {n}: {e}")),
            }
        }
        let rules = super::build_tree(items, kind, file, &mut warnings);
        (RegexpTable(rules), warnings)
    }

    pub fn lookup(&self, key: &str) -> Option<String> {
        let m = |p: &Pattern| -> Option<Vec<Option<String>>> {
            if p.negate {
                return (!p.re.is_match(key)).then(Vec::new);
            }
            let caps = p.re.captures(key)?;
            if p.unless.as_ref().is_some_and(|u| u.is_match(key)) {
                return None;
            }
            Some(caps.iter().map(|g| g.map(|g| g.as_str().to_string())).collect())
        };
        let (result, groups) = super::first_match(&self.0, &m)?;
        substitute(result, &mut |n| groups.get(n).cloned().flatten()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str, pcre: bool) -> (RegexpTable, Vec<String>) {
        RegexpTable::parse(super::super::logical_lines(text), "t", pcre)
    }

    #[test]
    fn regexp_rules() {
        let (t, w) = table(
            "/^(.*)@old\\.example$/  ${1}@new.example\n\
             /^admin@/!/@keep\\./ REJECT $$money\n\
             !/@/ NOAT\n\
             if /\\.edu$/\n\
             /^(prof.*)/ PROF $(1)\n\
             endif\n\
             /[/ broken\n\
             /x/q bad flag\n\
             /(a)/ $2\n\
             /a\\/b/ slash\n\
             /a\\(b\\)c/x basic $1\n\
             /^Case@/i sensitive\n",
            false,
        );
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[0].starts_with("regexp map t, line 7: "), "{w:?}");
        assert!(w[1].contains("unknown regexp option \"q\""), "{w:?}");
        assert!(w[2].contains("out of range replacement index \"2\""), "{w:?}");
        assert_eq!(t.lookup("Bob@OLD.example").as_deref(), Some("Bob@new.example"));
        assert_eq!(t.lookup("admin@x.org").as_deref(), Some("REJECT $money"));
        assert_eq!(t.lookup("admin@keep.org"), None);
        assert_eq!(t.lookup("nobody").as_deref(), Some("NOAT"));
        assert_eq!(t.lookup("professor@uni.edu").as_deref(), Some("PROF professor@uni.edu"));
        assert_eq!(t.lookup("x@a/b"), Some("slash".into()));
        assert_eq!(t.lookup("abc@y").as_deref(), Some("basic b"));
        assert_eq!(t.lookup("Case@x"), Some("sensitive".into()));
        assert_eq!(t.lookup("case@x"), None);
    }

    #[test]
    fn pcre_flags() {
        let (t, w) = table("/^a.b$/ dot\n/^ x y $/x spaced\n/(?<n>z)(\\d+)/ $2\n/\\1/ backref\n", true);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("pcre map t, line 4: regular expression"), "{w:?}");
        assert_eq!(t.lookup("A\nB").as_deref(), Some("dot"));
        assert_eq!(t.lookup("xy").as_deref(), Some("spaced"));
        assert_eq!(t.lookup("Z42").as_deref(), Some("42"));
    }
}
