//! Postfix lookup tables (`type:name`), the part the hub needs first:
//! `hash:`/`btree:`/`lmdb:` and `texthash:` read from the text source that
//! `postmap` compiles (reloaded when it changes), `inline:{k=v, …}`,
//! `static:value`, `unix:passwd.byname` (the system's users), each
//! optionally behind `proxy:` (served in-process here).  Keys are matched
//! case-insensitively, as Postfix folds keys of indexed tables.
//! A table that cannot be read is an error, never "not found": callers
//! turn it into a temporary failure (`451 4.3.5`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableError {
    /// `type:name` of an unsupported or malformed table.
    Unsupported(String),
    /// The table's source could not be read.
    Unavailable(String),
}

impl std::fmt::Display for TableError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TableError::Unsupported(t) => write!(f, "unsupported dictionary type: {t}"),
            TableError::Unavailable(t) => write!(f, "table {t} is unavailable"),
        }
    }
}

#[derive(Debug)]
enum Kind {
    /// Text source path, with its cached parse and mtime.
    Text(String, Mutex<Option<(SystemTime, Arc<HashMap<String, String>>)>>),
    Inline(HashMap<String, String>),
    Static(String),
    Passwd,
}

#[derive(Debug)]
pub struct Table {
    pub spec: String,
    kind: Kind,
}

/// One entry of a postmap(1) source: key as written, value, line number.
pub type SourceEntry = (String, String, usize);

/// The entries of a postmap(1) source in order: `key whitespace value`,
/// `#` comment lines, lines starting with whitespace continue the
/// previous one.
pub fn source_entries(text: &str) -> Vec<SourceEntry> {
    let mut entries: Vec<(String, usize)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((last, _)) = entries.last_mut() {
                last.push(' ');
                last.push_str(t.trim_end());
                continue;
            }
        }
        entries.push((line.trim_end().to_string(), n + 1));
    }
    entries
        .into_iter()
        .map(|(e, n)| match e.find([' ', '\t']) {
            Some(i) => (e[..i].to_string(), e[i..].trim_start().to_string(), n),
            None => (e, String::new(), n),
        })
        .collect()
}

/// The lookup map of a source: keys folded to lower case; the first
/// definition wins, as postmap(1) keeps it (and warns about the others).
pub fn parse_source(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for (k, v, _) in source_entries(text) {
        out.entry(k.to_ascii_lowercase()).or_insert(v);
    }
    out
}

impl Table {
    pub fn open(spec: &str) -> Result<Table, TableError> {
        let inner = spec.strip_prefix("proxy:").unwrap_or(spec);
        let (ty, name) = inner.split_once(':').ok_or_else(|| TableError::Unsupported(spec.to_string()))?;
        let kind = match ty {
            "hash" | "btree" | "lmdb" | "texthash" => Kind::Text(name.to_string(), Mutex::new(None)),
            "inline" => {
                let body = name
                    .strip_prefix('{')
                    .and_then(|b| b.strip_suffix('}'))
                    .ok_or_else(|| TableError::Unsupported(spec.to_string()))?;
                let mut m = HashMap::new();
                for item in crate::config::postfix::list::split_list(body) {
                    let item = item.trim_start_matches('{').trim_end_matches('}');
                    let (k, v) = item.split_once('=').ok_or_else(|| TableError::Unsupported(spec.to_string()))?;
                    m.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                }
                Kind::Inline(m)
            }
            "static" => Kind::Static(name.trim_start_matches('{').trim_end_matches('}').to_string()),
            "unix" if name == "passwd.byname" => Kind::Passwd,
            _ => return Err(TableError::Unsupported(spec.to_string())),
        };
        Ok(Table {
            spec: spec.to_string(),
            kind,
        })
    }

    /// The source file of a file-based table.
    pub fn source(&self) -> Option<&str> {
        match &self.kind {
            Kind::Text(p, _) => Some(p.as_str()),
            _ => None,
        }
    }

    /// Every entry (`postmap -s`), in source order; None for tables that
    /// cannot be listed.
    pub fn entries(&self) -> Result<Option<Vec<(String, String)>>, TableError> {
        match &self.kind {
            Kind::Text(path, _) => {
                let text = std::fs::read_to_string(path).map_err(|_| TableError::Unavailable(self.spec.clone()))?;
                let mut seen = std::collections::HashSet::new();
                Ok(Some(
                    source_entries(&text)
                        .into_iter()
                        .filter(|(k, _, _)| seen.insert(k.to_ascii_lowercase()))
                        .map(|(k, v, _)| (k.to_ascii_lowercase(), v))
                        .collect(),
                ))
            }
            Kind::Inline(m) => {
                let mut v: Vec<(String, String)> = m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                v.sort();
                Ok(Some(v))
            }
            _ => Ok(None),
        }
    }

    pub fn lookup(&self, key: &str) -> Result<Option<String>, TableError> {
        let k = key.to_ascii_lowercase();
        match &self.kind {
            Kind::Inline(m) => Ok(m.get(&k).cloned()),
            Kind::Static(v) => Ok(Some(v.clone())),
            Kind::Passwd => Ok(nix::unistd::User::from_name(key)
                .map_err(|_| TableError::Unavailable(self.spec.clone()))?
                .map(|u| {
                    format!(
                        "{}:x:{}:{}:{}:{}:{}",
                        u.name,
                        u.uid,
                        u.gid,
                        u.gecos.to_string_lossy(),
                        u.dir.display(),
                        u.shell.display()
                    )
                })),
            Kind::Text(path, cache) => {
                let unavailable = || TableError::Unavailable(self.spec.clone());
                let mtime = std::fs::metadata(path).and_then(|m| m.modified()).map_err(|_| unavailable())?;
                let mut c = cache.lock().map_err(|_| unavailable())?;
                let fresh = matches!(&*c, Some((t, _)) if *t == mtime);
                if !fresh {
                    let text = std::fs::read_to_string(path).map_err(|_| unavailable())?;
                    *c = Some((mtime, Arc::new(parse_source(&text))));
                }
                Ok(c.as_ref().and_then(|(_, m)| m.get(&k).cloned()))
            }
        }
    }
}

/// A list of tables searched in order (`local_recipient_maps = a, b`).
#[derive(Debug, Default)]
pub struct Maps(pub Vec<Table>);

impl Maps {
    /// Opens every `type:name` in `specs`; entries without `:` (e.g. an
    /// unexpanded empty value) are skipped.
    pub fn open(specs: &[String]) -> Result<Maps, TableError> {
        Ok(Maps(
            specs
                .iter()
                .filter(|s| s.contains(':'))
                .map(|s| Table::open(s))
                .collect::<Result<_, _>>()?,
        ))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first table that has `key`.
    pub fn lookup(&self, key: &str) -> Result<Option<String>, TableError> {
        for t in &self.0 {
            if let Some(v) = t.lookup(key)? {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_inline_static_passwd() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t");
        std::fs::write(&p, "# c\nAlice@Example.com  OK\nbob  REJECT go\n  away\nalice@example.com second\n").unwrap();
        let t = Table::open(&format!("hash:{}", p.display())).unwrap();
        assert_eq!(t.lookup("alice@example.COM").unwrap().as_deref(), Some("OK"));
        assert_eq!(t.lookup("bob").unwrap().as_deref(), Some("REJECT go away"));
        assert_eq!(t.lookup("carol").unwrap(), None);
        std::fs::remove_file(&p).unwrap();
        assert!(matches!(t.lookup("bob"), Err(TableError::Unavailable(_))));
        let i = Table::open("inline:{a=1, { b = two words }}").unwrap();
        assert_eq!(i.lookup("B").unwrap().as_deref(), Some("two words"));
        assert_eq!(Table::open("static:x").unwrap().lookup("q").unwrap().as_deref(), Some("x"));
        let pw = Table::open("proxy:unix:passwd.byname").unwrap();
        assert!(pw.lookup("root").unwrap().is_some());
        assert_eq!(pw.lookup("no-such-user-xyz").unwrap(), None);
        assert!(matches!(Table::open("nis:mail.aliases"), Err(TableError::Unsupported(_))));
    }
}
