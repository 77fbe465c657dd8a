//! main.cf: `name = value` logical lines (see `lines`), last duplicate wins
//! with Postfix's warning, a line without `=` is fatal.

use super::lines::logical_lines;
use crate::config::ConfigError;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub value: String,
    /// First physical line of the logical line that set it.
    pub line: usize,
}

#[derive(Debug, Clone, Default)]
pub struct MainCf {
    pub path: String,
    pub entries: BTreeMap<String, Entry>,
    /// Warnings in Postfix's wording, without the `program: warning: ` prefix.
    pub warnings: Vec<String>,
}

/// `split_nameval`: name ends at white space or `=`; value trimmed.
pub fn split_nameval(text: &str) -> Result<(&str, &str), &'static str> {
    let t = text.trim_start();
    if t.is_empty() {
        return Err("missing attribute name");
    }
    let name_end = t.find(|c: char| c.is_ascii_whitespace() || c == '=').unwrap_or(t.len());
    let rest = t[name_end..].trim_start();
    let Some(value) = rest.strip_prefix('=') else {
        return Err("missing '=' after attribute name");
    };
    Ok((&t[..name_end], value.trim()))
}

impl MainCf {
    /// Reads `path`; a missing file is an error (`open PATH: ...`).
    pub fn load(path: &str) -> Result<MainCf, ConfigError> {
        let data = crate::config::read_file(path)?;
        Self::parse(path, &data)
    }

    pub fn parse(path: &str, data: &[u8]) -> Result<MainCf, ConfigError> {
        let mut cf = MainCf {
            path: path.to_string(),
            ..Default::default()
        };
        let mut warnings = Vec::new();
        for l in logical_lines(path, data, &mut |w| warnings.push(w)) {
            let (name, value) =
                split_nameval(&l.text).map_err(|e| ConfigError::Syntax(format!("{path}, line {}: {e}: \"{}\"", l.first_line, l.text)))?;
            if let Some(old) = cf.entries.get(name) {
                if old.value != value {
                    warnings.push(format!(
                        "{path}, line {}: overriding earlier entry: {name}={}",
                        l.first_line, old.value
                    ));
                }
            }
            cf.entries.insert(
                name.to_string(),
                Entry {
                    value: value.to_string(),
                    line: l.first_line,
                },
            );
        }
        cf.warnings = warnings;
        Ok(cf)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries.get(name).map(|e| e.value.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_equals_is_fatal_with_file_and_line() {
        let e = MainCf::parse("/etc/postfix/main.cf", b"a = 1\n\nbad line here\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/postfix/main.cf, line 3: missing '=' after attribute name: \"bad line here\""
        );
    }

    #[test]
    fn last_duplicate_wins_with_warning() {
        let cf = MainCf::parse("m", b"h = a\nh = b\nh = b\n").unwrap();
        assert_eq!(cf.get("h"), Some("b"));
        assert_eq!(cf.warnings, vec!["m, line 2: overriding earlier entry: h=a".to_string()]);
    }

    #[test]
    fn nameval_forms() {
        assert_eq!(split_nameval("a=b"), Ok(("a", "b")));
        assert_eq!(split_nameval("a =  b c  "), Ok(("a", "b c")));
        assert_eq!(split_nameval("a ="), Ok(("a", "")));
        assert!(split_nameval("a b = c").is_err());
    }
}
