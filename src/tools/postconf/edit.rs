//! main.cf editing (`postconf -e`, `-X`, `-#`): works on physical lines so
//! that everything the edit does not touch stays byte for byte; a changed
//! entry's continuation lines go with it, comment lines inside stay.

use std::collections::BTreeMap;

pub enum Edit {
    /// `-e`: name → new value.
    Set(BTreeMap<String, String>, Vec<String>),
    /// `-X`: remove these names.
    Remove(Vec<String>),
    /// `-#`: comment these names out.
    Comment(Vec<String>),
}

fn logical_name(line: &str) -> Option<&str> {
    let first = line.chars().next()?;
    if first.is_ascii_whitespace() || first == '#' {
        return None;
    }
    let end = line.find(|c: char| c.is_ascii_whitespace() || c == '=').unwrap_or(line.len());
    Some(&line[..end])
}

fn is_comment_or_blank(line: &str) -> bool {
    let t = line.trim_start();
    t.is_empty() || t.starts_with('#')
}

/// Applies `edit` to main.cf text; returns the new text and warnings.
pub fn apply(path: &str, text: &str, edit: &Edit) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut warnings = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut current: Option<String> = None; // name of the entry being edited
    let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
    if let Some(last) = lines.last_mut() {
        if last.is_empty() {
            lines.pop();
        }
    }
    let matches = |n: &str| match edit {
        Edit::Set(m, _) => m.contains_key(n),
        Edit::Remove(v) | Edit::Comment(v) => v.iter().any(|x| x == n),
    };
    for raw in lines {
        let line = raw.trim_end_matches('\n');
        if let Some(name) = logical_name(line) {
            current = None;
            if matches(name) {
                *seen.entry(name.to_string()).or_default() += 1;
                current = Some(name.to_string());
                match edit {
                    Edit::Set(m, _) => out.push_str(&format!("{name} = {}\n", m[name])),
                    Edit::Remove(_) => {}
                    Edit::Comment(_) => out.push_str(&format!("#{line}\n")),
                }
                continue;
            }
        } else if current.is_some() && !is_comment_or_blank(line) {
            // A continuation line of the entry being edited.
            if let Edit::Comment(_) = edit {
                out.push_str(&format!("#{line}\n"));
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    for (name, n) in &seen {
        if *n > 1 {
            warnings.push(format!("{path}: multiple entries for \"{name}\""));
        }
    }
    if let Edit::Set(m, order) = edit {
        // New names go at the end, in command-line order.
        for name in order {
            if !seen.contains_key(name) {
                out.push_str(&format!("{name} = {}\n", m[name]));
            }
        }
    }
    (out, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIG: &str = "a = 1\n# inner\n  cont\nb = 2\na = 3\n";

    #[test]
    fn set_remove_comment_as_postfix() {
        // Expected texts observed with Postfix 3.7.11's postconf.
        let mut m = BTreeMap::new();
        m.insert("a".to_string(), "9".to_string());
        m.insert("zz".to_string(), "1".to_string());
        let (t, w) = apply("./main.cf", ORIG, &Edit::Set(m, vec!["a".into(), "zz".into()]));
        assert_eq!(t, "a = 9\n# inner\nb = 2\na = 9\nzz = 1\n");
        assert_eq!(w, vec!["./main.cf: multiple entries for \"a\"".to_string()]);
        let (t, _) = apply("m", ORIG, &Edit::Remove(vec!["a".into()]));
        assert_eq!(t, "# inner\nb = 2\n");
        let (t, _) = apply("m", ORIG, &Edit::Comment(vec!["a".into()]));
        assert_eq!(t, "#a = 1\n# inner\n#  cont\nb = 2\n#a = 3\n");
    }

    #[test]
    fn missing_final_newline_is_mended() {
        let mut m = BTreeMap::new();
        m.insert("b".to_string(), "2".to_string());
        let (t, _) = apply("m", "a = 1", &Edit::Set(m, vec!["b".into()]));
        assert_eq!(t, "a = 1\nb = 2\n");
    }
}
