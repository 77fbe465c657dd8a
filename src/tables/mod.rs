//! Postfix lookup tables (`type:name`): `hash:`/`btree:`/`lmdb:` and
//! `texthash:` read from the text source that `postmap` compiles,
//! `regexp:`/`pcre:` and `cidr:` files (every file-based table is
//! re-read when it changes), `inline:{k=v, …}`, `regexp:{ {rule}, … }`,
//! `static:value`, `unionmap:{a, b}`, `pipemap:{a, b}`, `fail:`,
//! `environ:`, `unix:passwd.byname` (the system's users), each optionally
//! behind `proxy:` (served in-process here).  Keys of fixed-string tables
//! are matched case-insensitively, as Postfix folds them; pattern tables
//! see the key as given.  A table that cannot be read is an error, never
//! "not found": callers turn it into a temporary failure (`451 4.3.5`).

pub mod cidr;
pub mod dbcommon;
pub mod ldap;
#[cfg(feature = "mysql")]
pub mod mysql;
pub mod regexp;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

/// Where table warnings (skipped rules, file and line) go: the daemon's
/// logger, or stderr for the tools.
static WARN: OnceLock<Box<dyn Fn(&str) + Send + Sync>> = OnceLock::new();

pub fn set_warning_sink(f: Box<dyn Fn(&str) + Send + Sync>) {
    let _ = WARN.set(f);
}

fn warn(text: &str) {
    match WARN.get() {
        Some(f) => f(text),
        None => eprintln!("warning: {text}"),
    }
}

/// Logical lines of a table file: `#` comments and blank lines dropped,
/// lines starting with whitespace joined to the previous one; with the
/// number of the line each starts on.
pub fn logical_lines(text: &str) -> Vec<(String, usize)> {
    let mut out: Vec<(String, usize)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((last, _)) = out.last_mut() {
                last.push(' ');
                last.push_str(t.trim_end());
                continue;
            }
        }
        out.push((line.trim_end().to_string(), n + 1));
    }
    out
}

/// A parsed line of a pattern table.
pub(crate) enum Item<P> {
    Rule(P, String),
    If(P),
    Endif,
}

/// A pattern table rule; `If` holds the rules up to its `endif`.
#[derive(Debug)]
pub(crate) enum Rule<P> {
    Match(P, String),
    If(P, Vec<Rule<P>>),
}

/// Nests `if` … `endif`; an `endif` without `if` and an `if` without
/// `endif` are reported as Postfix does and otherwise ignored.
pub(crate) fn build_tree<P>(items: Vec<(Item<P>, usize)>, kind: &str, file: &str, warnings: &mut Vec<String>) -> Vec<Rule<P>> {
    let mut stack: Vec<(Option<(P, usize)>, Vec<Rule<P>>)> = vec![(None, Vec::new())];
    for (item, n) in items {
        match item {
            Item::Rule(p, r) => stack.last_mut().expect("root").1.push(Rule::Match(p, r)),
            Item::If(p) => stack.push((Some((p, n)), Vec::new())),
            Item::Endif if stack.len() > 1 => {
                let (p, body) = stack.pop().expect("if");
                let (p, _) = p.expect("if pattern");
                stack.last_mut().expect("root").1.push(Rule::If(p, body));
            }
            Item::Endif => warnings.push(format!("{kind} map {file}, line {n}: ignoring ENDIF without matching IF")),
        }
    }
    while stack.len() > 1 {
        let (p, body) = stack.pop().expect("if");
        let (p, n) = p.expect("if pattern");
        warnings.push(format!("{kind} map {file}, line {n}: IF has no matching ENDIF"));
        stack.last_mut().expect("root").1.push(Rule::If(p, body));
    }
    stack.pop().map(|(_, r)| r).unwrap_or_default()
}

/// The first rule whose pattern matches (`m` returns the match groups),
/// descending into `if` blocks whose pattern matches.
pub(crate) fn first_match<'r, P>(
    rules: &'r [Rule<P>],
    m: &dyn Fn(&P) -> Option<Vec<Option<String>>>,
) -> Option<(&'r str, Vec<Option<String>>)> {
    for r in rules {
        match r {
            Rule::Match(p, result) => {
                if let Some(g) = m(p) {
                    return Some((result.as_str(), g));
                }
            }
            Rule::If(p, body) => {
                if m(p).is_some() {
                    if let Some(found) = first_match(body, m) {
                        return Some(found);
                    }
                }
            }
        }
    }
    None
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableError {
    /// `type:name` of an unsupported or malformed table.
    Unsupported(String),
    /// The table's source could not be read.
    Unavailable(String),
    /// A table's configuration could not be read or is wrong: the
    /// message names the file (and line).
    Open(String),
    /// A network table's query failed (`type:name`, reason): a temporary
    /// error.
    Query(String, String),
}

impl std::fmt::Display for TableError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TableError::Unsupported(t) => write!(f, "unsupported dictionary type: {t}"),
            TableError::Unavailable(t) => write!(f, "table {t} is unavailable"),
            TableError::Open(m) => f.write_str(m),
            TableError::Query(t, why) => write!(f, "table {t}: query error: {why}"),
        }
    }
}

/// What a file-based table's text parses into.
#[derive(Debug)]
enum Loaded {
    Fixed(HashMap<String, String>),
    Regexp(regexp::RegexpTable),
    Cidr(cidr::CidrTable),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileType {
    Fixed,
    /// A postalias(1) source: aliases(5) `name: value, …`.
    Alias,
    Regexp,
    Pcre,
    Cidr,
}

#[derive(Debug)]
enum Kind {
    /// A file, with its cached parse and mtime.
    File(FileType, String, Mutex<Option<(SystemTime, Arc<Loaded>)>>),
    Inline(HashMap<String, String>),
    /// `regexp:{…}`, `pcre:{…}`, parsed once.
    InlinePattern(Loaded),
    Static(String),
    Passwd,
    Environ,
    Fail,
    Union(Vec<Table>),
    Pipe(Vec<Table>),
    /// `ldap:file.cf`, shared by every opening of the same file.
    Ldap(Arc<ldap::LdapTable>),
    #[cfg(feature = "mysql")]
    Mysql(Arc<mysql::MysqlTable>),
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
    logical_lines(text)
        .into_iter()
        .map(|(e, n)| match e.find([' ', '\t']) {
            Some(i) => (e[..i].to_string(), e[i..].trim_start().to_string(), n),
            None => (e, String::new(), n),
        })
        .collect()
}

/// The entries of an aliases(5) source (`name: value`, a `"quoted
/// name"`, continuation lines), and the numbers of lines that are not a
/// `name:value` pair.
pub fn alias_entries(text: &str) -> (Vec<SourceEntry>, Vec<usize>) {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for (line, n) in logical_lines(text) {
        let (name, rest) = if let Some(q) = line.strip_prefix('"') {
            match q.find('"') {
                Some(i) => (q[..i].to_string(), q[i + 1..].trim_start()),
                None => {
                    bad.push(n);
                    continue;
                }
            }
        } else {
            match line.find(':') {
                Some(i) => (line[..i].trim_end().to_string(), &line[i..]),
                None => {
                    bad.push(n);
                    continue;
                }
            }
        };
        match rest.strip_prefix(':') {
            Some(v) if !name.is_empty() => out.push((name, v.trim().to_string(), n)),
            _ => bad.push(n),
        }
    }
    (out, bad)
}

/// The entries of a fixed-string table file: postmap(1) or, for
/// `alias_maps`, postalias(1) syntax.
fn file_entries(ty: FileType, text: &str) -> Vec<SourceEntry> {
    if ty == FileType::Alias {
        alias_entries(text).0
    } else {
        source_entries(text)
    }
}

/// The lookup map of a source: keys folded to lower case; the first
/// definition wins, as postmap(1) keeps it (and warns about the others).
fn index(entries: Vec<SourceEntry>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for (k, v, _) in entries {
        out.entry(k.to_ascii_lowercase()).or_insert(v);
    }
    out
}

/// The elements of `{ a, { b c }, … }` with their outer braces removed.
fn brace_list(spec: &str, name: &str) -> Result<Vec<String>, TableError> {
    let body = name
        .trim()
        .strip_prefix('{')
        .and_then(|b| b.strip_suffix('}'))
        .ok_or_else(|| TableError::Unsupported(spec.to_string()))?;
    Ok(crate::config::postfix::list::split_list(body)
        .into_iter()
        .map(|i| {
            let i = i.trim();
            match i.strip_prefix('{').and_then(|i| i.strip_suffix('}')) {
                Some(inner) => inner.trim().to_string(),
                None => i.to_string(),
            }
        })
        .collect())
}

fn parse_file(ty: FileType, text: &str, file: &str) -> Loaded {
    let (loaded, warnings) = match ty {
        FileType::Fixed | FileType::Alias => (Loaded::Fixed(index(file_entries(ty, text))), Vec::new()),
        FileType::Regexp | FileType::Pcre => {
            let (t, w) = regexp::RegexpTable::parse(logical_lines(text), file, ty == FileType::Pcre);
            (Loaded::Regexp(t), w)
        }
        FileType::Cidr => {
            let (t, w) = cidr::CidrTable::parse(text, file);
            (Loaded::Cidr(t), w)
        }
    };
    for w in warnings {
        warn(&w);
    }
    loaded
}

impl Loaded {
    fn lookup(&self, key: &str) -> Option<String> {
        match self {
            Loaded::Fixed(m) => m.get(&key.to_ascii_lowercase()).cloned(),
            Loaded::Regexp(t) => t.lookup(key),
            Loaded::Cidr(t) => t.lookup(key),
        }
    }
}

impl Table {
    /// Opens a table of `alias_maps`: indexed files are aliases(5)
    /// sources (what postalias compiles).
    pub fn open_alias(spec: &str) -> Result<Table, TableError> {
        let mut t = Table::open(spec)?;
        if let Kind::File(ty @ FileType::Fixed, _, _) = &mut t.kind {
            *ty = FileType::Alias;
        }
        Ok(t)
    }

    /// Whether the table reads an aliases(5) source.
    pub fn is_alias(&self) -> bool {
        matches!(self.kind, Kind::File(FileType::Alias, _, _))
    }

    pub fn open(spec: &str) -> Result<Table, TableError> {
        let inner = spec.strip_prefix("proxy:").unwrap_or(spec);
        let (ty, name) = inner.split_once(':').ok_or_else(|| TableError::Unsupported(spec.to_string()))?;
        let file = |t: FileType| Kind::File(t, name.to_string(), Mutex::new(None));
        let inline_pattern = name.trim_start().starts_with('{');
        let kind = match ty {
            "hash" | "btree" | "lmdb" | "texthash" => file(FileType::Fixed),
            "regexp" | "pcre" if inline_pattern => {
                let lines = brace_list(spec, name)?.into_iter().map(|l| (l, 1)).collect();
                let (t, w) = regexp::RegexpTable::parse(lines, spec, ty == "pcre");
                if let Some(w) = w.first() {
                    return Err(TableError::Unsupported(w.clone()));
                }
                Kind::InlinePattern(Loaded::Regexp(t))
            }
            "regexp" => file(FileType::Regexp),
            "pcre" => file(FileType::Pcre),
            "cidr" if inline_pattern => {
                let (t, w) = cidr::CidrTable::parse(&brace_list(spec, name)?.join("\n"), spec);
                if let Some(w) = w.first() {
                    return Err(TableError::Unsupported(w.clone()));
                }
                Kind::InlinePattern(Loaded::Cidr(t))
            }
            "cidr" => file(FileType::Cidr),
            "inline" => {
                let mut m = HashMap::new();
                for item in brace_list(spec, name)? {
                    let (k, v) = item.split_once('=').ok_or_else(|| TableError::Unsupported(spec.to_string()))?;
                    m.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                }
                Kind::Inline(m)
            }
            "static" => Kind::Static(name.trim_start_matches('{').trim_end_matches('}').trim().to_string()),
            "unionmap" | "pipemap" => {
                let tables = brace_list(spec, name)?
                    .iter()
                    .map(|t| Table::open(t))
                    .collect::<Result<Vec<_>, _>>()?;
                if tables.is_empty() {
                    return Err(TableError::Unsupported(spec.to_string()));
                }
                if ty == "unionmap" {
                    Kind::Union(tables)
                } else {
                    Kind::Pipe(tables)
                }
            }
            "environ" => Kind::Environ,
            "fail" => Kind::Fail,
            "unix" if name == "passwd.byname" => Kind::Passwd,
            #[cfg(feature = "mysql")]
            "mysql" => Kind::Mysql(shared(&format!("mysql:{name}"), &MYSQL, || {
                mysql::MysqlTable::open(&format!("mysql:{name}"), name)
            })?),
            "ldap" => Kind::Ldap(shared(&format!("ldap:{name}"), &LDAP, || {
                ldap::LdapTable::open(&format!("ldap:{name}"), name)
            })?),
            _ => return Err(TableError::Unsupported(spec.to_string())),
        };
        Ok(Table {
            spec: spec.to_string(),
            kind,
        })
    }

    /// The source file of a table that `postmap` compiles.
    pub fn source(&self) -> Option<&str> {
        match &self.kind {
            Kind::File(FileType::Fixed | FileType::Alias, p, _) => Some(p.as_str()),
            _ => None,
        }
    }

    /// A pattern table (regexp, pcre, cidr) gets only the full lookup key,
    /// never the partial keys derived from it (domain, parent domains,
    /// address without extension, network prefixes).
    pub fn is_pattern(&self) -> bool {
        matches!(
            &self.kind,
            Kind::File(FileType::Regexp | FileType::Pcre | FileType::Cidr, _, _) | Kind::InlinePattern(_)
        )
    }

    /// Every entry (`postmap -s`), in source order; None for tables that
    /// cannot be listed.
    pub fn entries(&self) -> Result<Option<Vec<(String, String)>>, TableError> {
        match &self.kind {
            Kind::File(ty @ (FileType::Fixed | FileType::Alias), path, _) => {
                let text = std::fs::read_to_string(path).map_err(|_| TableError::Unavailable(self.spec.clone()))?;
                let mut seen = std::collections::HashSet::new();
                Ok(Some(
                    file_entries(*ty, &text)
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
        match &self.kind {
            Kind::Inline(m) => Ok(m.get(&key.to_ascii_lowercase()).cloned()),
            Kind::InlinePattern(l) => Ok(l.lookup(key)),
            Kind::Static(v) => Ok(Some(v.clone())),
            Kind::Environ => Ok(std::env::var(key).ok()),
            Kind::Fail => Err(TableError::Unavailable(self.spec.clone())),
            Kind::Union(tables) => {
                let mut found: Vec<String> = Vec::new();
                for t in tables {
                    if let Some(v) = t.lookup(key)? {
                        found.push(v);
                    }
                }
                Ok((!found.is_empty()).then(|| found.join(",")))
            }
            Kind::Pipe(tables) => {
                let mut k = key.to_string();
                for t in tables {
                    match t.lookup(&k)? {
                        Some(v) => k = v,
                        None => return Ok(None),
                    }
                }
                Ok(Some(k))
            }
            Kind::Ldap(t) => t.lookup(&key.to_lowercase()),
            #[cfg(feature = "mysql")]
            Kind::Mysql(t) => t.lookup(&key.to_lowercase()),
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
            Kind::File(ty, path, cache) => {
                let unavailable = || TableError::Unavailable(self.spec.clone());
                let mtime = std::fs::metadata(path).and_then(|m| m.modified()).map_err(|_| unavailable())?;
                let loaded = {
                    let mut c = cache.lock().map_err(|_| unavailable())?;
                    let fresh = matches!(&*c, Some((t, _)) if *t == mtime);
                    if !fresh {
                        let text = std::fs::read_to_string(path).map_err(|_| unavailable())?;
                        *c = Some((mtime, Arc::new(parse_file(*ty, &text, path))));
                    }
                    c.as_ref().map(|(_, l)| l.clone()).ok_or_else(unavailable)?
                };
                Ok(loaded.lookup(key))
            }
        }
    }
}

/// Open network tables by `type:name`: a process keeps one table (and
/// its connection) per configuration file, as proxymap(8) shares them.
type Shared<T> = Mutex<HashMap<String, std::sync::Weak<T>>>;
static LDAP: OnceLock<Shared<ldap::LdapTable>> = OnceLock::new();
#[cfg(feature = "mysql")]
static MYSQL: OnceLock<Shared<mysql::MysqlTable>> = OnceLock::new();

fn shared<T>(spec: &str, reg: &'static OnceLock<Shared<T>>, open: impl FnOnce() -> Result<T, TableError>) -> Result<Arc<T>, TableError> {
    let reg = reg.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(t) = reg.lock().ok().and_then(|r| r.get(spec).and_then(|w| w.upgrade())) {
        return Ok(t);
    }
    let t = Arc::new(open()?);
    if let Ok(mut r) = reg.lock() {
        r.retain(|_, w| w.strong_count() > 0);
        r.insert(spec.to_string(), Arc::downgrade(&t));
    }
    Ok(t)
}

/// A list of tables searched in order (`local_recipient_maps = a, b`).
#[derive(Debug, Default)]
pub struct Maps(pub Vec<Table>);

impl Maps {
    /// Opens every `type:name` in `specs`; entries without `:` (e.g. an
    /// unexpanded empty value) are skipped.
    pub fn open(specs: &[String]) -> Result<Maps, TableError> {
        Maps::open_aliased(specs, &[])
    }

    /// Like `open`, with the tables named in `alias_specs` (the
    /// `alias_maps` list) read as aliases(5) sources.
    pub fn open_aliased(specs: &[String], alias_specs: &[String]) -> Result<Maps, TableError> {
        Ok(Maps(
            specs
                .iter()
                .filter(|s| s.contains(':'))
                .map(|s| {
                    if alias_specs.contains(s) {
                        Table::open_alias(s)
                    } else {
                        Table::open(s)
                    }
                })
                .collect::<Result<_, _>>()?,
        ))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first table that has `key`.
    pub fn lookup(&self, key: &str) -> Result<Option<String>, TableError> {
        self.lookup_as(key, true)
    }

    /// A full key goes to every table; a partial one (derived from the
    /// full key) is not given to pattern tables.
    pub fn lookup_as(&self, key: &str, full: bool) -> Result<Option<String>, TableError> {
        for t in &self.0 {
            if !full && t.is_pattern() {
                continue;
            }
            if let Some(v) = t.lookup(key)? {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    /// Key-major search of derived keys: the first is the full key, the
    /// rest partial.  Returns the value and the index of the key found.
    pub fn lookup_keys(&self, keys: &[String]) -> Result<Option<(String, usize)>, TableError> {
        for (i, k) in keys.iter().enumerate() {
            if let Some(v) = self.lookup_as(k, i == 0)? {
                return Ok(Some((v, i)));
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

    #[test]
    fn alias_source() {
        let (e, bad) = alias_entries("root: admin\nPostmaster:   root\nbad line\nstaff: a, b,\n  c\n\"q n\": x\n:x\n");
        let keys: Vec<(&str, &str, usize)> = e.iter().map(|(k, v, n)| (k.as_str(), v.as_str(), *n)).collect();
        assert_eq!(
            keys,
            vec![
                ("root", "admin", 1),
                ("Postmaster", "root", 2),
                ("staff", "a, b, c", 4),
                ("q n", "x", 6)
            ]
        );
        assert_eq!(bad, vec![3, 7]);
    }

    #[test]
    fn pattern_and_composite_tables() {
        let d = tempfile::tempdir().unwrap();
        let re = d.path().join("re");
        std::fs::write(&re, "/^(.*)@example\\.com$/ $1@example.org\n").unwrap();
        let spec = format!("regexp:{}", re.display());
        let t = Table::open(&spec).unwrap();
        assert!(t.is_pattern() && t.source().is_none());
        assert_eq!(t.lookup("Bo@Example.COM").unwrap().as_deref(), Some("Bo@example.org"));
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&re, "/^(.*)@example\\.com$/ $1@example.net\n").unwrap();
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options().write(true).open(&re).unwrap().set_modified(later).unwrap();
        assert_eq!(t.lookup("a@example.com").unwrap().as_deref(), Some("a@example.net"));
        let i = Table::open("pcre:{ {/^x/ X}, {!/@/ local} }").unwrap();
        assert_eq!(i.lookup("xy@z").unwrap().as_deref(), Some("X"));
        assert_eq!(i.lookup("bob").unwrap().as_deref(), Some("local"));
        assert!(matches!(Table::open("regexp:{ {/(a/ x} }"), Err(TableError::Unsupported(_))));
        let c = Table::open("cidr:{ {10.0.0.0/8 OK}, {0.0.0.0/0 REJECT} }").unwrap();
        assert_eq!(c.lookup("10.2.3.4").unwrap().as_deref(), Some("OK"));
        assert_eq!(c.lookup("11.2.3.4").unwrap().as_deref(), Some("REJECT"));
        let u = Table::open("unionmap:{ inline:{a=1}, inline:{a=2, b=3}, static:s }").unwrap();
        assert_eq!(u.lookup("a").unwrap().as_deref(), Some("1,2,s"));
        let p = Table::open("pipemap:{ inline:{a=b}, inline:{b=c} }").unwrap();
        assert_eq!(p.lookup("a").unwrap().as_deref(), Some("c"));
        assert_eq!(p.lookup("b").unwrap(), None);
        assert!(Table::open("fail:x").unwrap().lookup("a").is_err());
        let maps = Maps::open(&[spec.clone(), "inline:{example.com=dom}".into()]).unwrap();
        let keys = vec!["x@example.com".to_string(), "example.com".to_string()];
        assert_eq!(maps.lookup_keys(&keys).unwrap(), Some(("x@example.net".into(), 0)));
        let keys = vec!["x@sub.example.com".to_string(), "example.com".to_string()];
        assert_eq!(maps.lookup_keys(&keys).unwrap(), Some(("dom".into(), 1)));
    }
}
