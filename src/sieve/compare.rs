//! Matching values against keys: the match types (`:is`, `:contains`,
//! `:matches` and its match variables, `:value`, `:count`; `:regex` is
//! compiled by the parser) under the three comparators (RFC 4790).

use super::{Cmp, Match, Rel};

/// `:matches` with the match variables: what each `*` and `?` of the
/// pattern took (the leftmost as little as possible), after the whole
/// value.  None when it does not match.  Bounded: a pattern and value
/// too large for the search give the whole value only.
pub(super) fn glob_captures(fold: bool, p: &str, s: &str) -> Option<Vec<String>> {
    let pc: Vec<char> = p.chars().collect();
    let sc: Vec<char> = s.chars().collect();
    let f = |c: char| if fold { c.to_ascii_lowercase() } else { c };
    if pc.len() > 1024 || pc.len().saturating_mul(sc.len()) > 1 << 22 {
        let (pf, sf): (Vec<char>, Vec<char>) = (pc.iter().map(|&c| f(c)).collect(), sc.iter().map(|&c| f(c)).collect());
        return glob(&pf, &sf).then(|| vec![s.to_string()]);
    }
    struct G<'a> {
        p: &'a [char],
        s: &'a [char],
        fold: bool,
        caps: Vec<String>,
        dead: std::collections::HashSet<(usize, usize)>,
    }
    impl G<'_> {
        fn eq(&self, a: char, b: char) -> bool {
            if self.fold {
                a.eq_ignore_ascii_case(&b)
            } else {
                a == b
            }
        }
        fn go(&mut self, pi: usize, si: usize) -> bool {
            if pi == self.p.len() {
                return si == self.s.len();
            }
            if self.dead.contains(&(pi, si)) {
                return false;
            }
            let ok = match self.p[pi] {
                '*' => {
                    let mut found = false;
                    for end in si..=self.s.len() {
                        self.caps.push(self.s[si..end].iter().collect());
                        if self.go(pi + 1, end) {
                            found = true;
                            break;
                        }
                        self.caps.pop();
                    }
                    found
                }
                '?' if si < self.s.len() => {
                    self.caps.push(self.s[si].to_string());
                    let r = self.go(pi + 1, si + 1);
                    if !r {
                        self.caps.pop();
                    }
                    r
                }
                '\\' if pi + 1 < self.p.len() => si < self.s.len() && self.eq(self.p[pi + 1], self.s[si]) && self.go(pi + 2, si + 1),
                c => c != '?' && si < self.s.len() && self.eq(c, self.s[si]) && self.go(pi + 1, si + 1),
            };
            if !ok {
                self.dead.insert((pi, si));
            }
            ok
        }
    }
    let mut g = G {
        p: &pc,
        s: &sc,
        fold,
        caps: vec![s.to_string()],
        dead: Default::default(),
    };
    g.go(0, 0).then_some(g.caps)
}

/// Whether any value matches any key.
pub(super) fn matches(cmp: Cmp, m: &Match, values: &[String], keys: &[String]) -> bool {
    match m {
        Match::Count(rel) => {
            let n = values.len().to_string();
            keys.iter().any(|k| relate(cmp, &n, k, *rel))
        }
        Match::Value(rel) => values.iter().any(|v| keys.iter().any(|k| relate(cmp, v, k, *rel))),
        Match::Regex(res) => values.iter().any(|v| res.iter().any(|r| r.is_match(v))),
        Match::Is => values
            .iter()
            .any(|v| keys.iter().any(|k| order(cmp, v, k) == std::cmp::Ordering::Equal)),
        Match::Contains => values.iter().any(|v| {
            keys.iter().any(|k| match cmp {
                Cmp::Casemap => v.to_ascii_lowercase().contains(&k.to_ascii_lowercase()),
                _ => v.contains(k.as_str()),
            })
        }),
        Match::Matches => values.iter().any(|v| {
            keys.iter().any(|k| {
                let fold = cmp == Cmp::Casemap;
                let v: Vec<char> = v.chars().map(|c| if fold { c.to_ascii_lowercase() } else { c }).collect();
                let k: Vec<char> = k.chars().map(|c| if fold { c.to_ascii_lowercase() } else { c }).collect();
                glob(&k, &v)
            })
        }),
    }
}

fn relate(cmp: Cmp, v: &str, k: &str, rel: Rel) -> bool {
    use std::cmp::Ordering::*;
    let o = order(cmp, v, k);
    match rel {
        Rel::Gt => o == Greater,
        Rel::Ge => o != Less,
        Rel::Lt => o == Less,
        Rel::Le => o != Greater,
        Rel::Eq => o == Equal,
        Rel::Ne => o != Equal,
    }
}

/// The comparators' order (RFC 4790): i;ascii-numeric compares the leading
/// digits as a number, a string without them being above every number.
pub(super) fn order(cmp: Cmp, a: &str, b: &str) -> std::cmp::Ordering {
    match cmp {
        Cmp::Octet => a.as_bytes().cmp(b.as_bytes()),
        Cmp::Casemap => a.to_ascii_lowercase().as_bytes().cmp(b.to_ascii_lowercase().as_bytes()),
        Cmp::Numeric => {
            let num = |s: &str| -> Option<String> {
                let d: String = s.chars().take_while(char::is_ascii_digit).collect();
                if d.is_empty() {
                    return None;
                }
                let t = d.trim_start_matches('0');
                Some(if t.is_empty() { "0".into() } else { t.to_string() })
            };
            match (num(a), num(b)) {
                (None, None) => std::cmp::Ordering::Equal,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(_), None) => std::cmp::Ordering::Less,
                (Some(x), Some(y)) => x.len().cmp(&y.len()).then_with(|| x.cmp(&y)),
            }
        }
    }
}

/// `:matches`: `*` any run, `?` one character, `\` quotes the next.
pub(super) fn glob(p: &[char], s: &[char]) -> bool {
    let (mut pi, mut si) = (0usize, 0usize);
    // The last '*' seen and where in `s` it resumes.
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, si));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    si += 1;
                    continue;
                }
                '\\' if pi + 1 < p.len() && p[pi + 1] == s[si] => {
                    pi += 2;
                    si += 1;
                    continue;
                }
                c if c != '\\' && c == s[si] => {
                    pi += 1;
                    si += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, ss)) => {
                pi = sp + 1;
                si = ss + 1;
                star = Some((sp, ss + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}
