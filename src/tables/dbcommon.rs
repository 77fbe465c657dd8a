//! What Postfix's network tables (`ldap:`, `mysql:`) share: their
//! configuration file (main.cf syntax, read when the table is opened),
//! the `%` expansions of query and result templates with the rules of
//! ldap_table(5)/mysql_table(5) (`%s %u %d %S %U %D %1-%9 %%`, queries
//! suppressed when a template needs a part the key lacks), the `domain`
//! restriction, and the thread that runs their queries for the
//! synchronous `Table::lookup`.

use super::TableError;
use crate::config::postfix::main_cf::MainCf;
use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

/// A table's configuration file, with typed getters whose errors name
/// the file and line as Postfix's `cfg_get_*` do.
pub struct CfFile {
    pub path: String,
    cf: MainCf,
}

impl CfFile {
    pub fn load(path: &str) -> Result<CfFile, TableError> {
        let cf = MainCf::load(path).map_err(|e| TableError::Open(e.to_string()))?;
        for w in &cf.warnings {
            super::warn(w);
        }
        Ok(CfFile {
            path: path.to_string(),
            cf,
        })
    }

    pub fn has(&self, name: &str) -> bool {
        self.cf.get(name).is_some()
    }

    pub fn str(&self, name: &str, default: &str) -> String {
        self.cf.get(name).unwrap_or(default).to_string()
    }

    fn bad(&self, name: &str, what: &str) -> TableError {
        let line = self.cf.entries.get(name).map(|e| e.line).unwrap_or(0);
        TableError::Open(format!(
            "{}, line {line}: {what} for parameter {name}: \"{}\"",
            self.path,
            self.cf.get(name).unwrap_or("")
        ))
    }

    pub fn int(&self, name: &str, default: i64, min: i64, max: i64) -> Result<i64, TableError> {
        match self.cf.get(name) {
            None => Ok(default),
            Some(v) => match v.parse::<i64>() {
                Ok(n) if n >= min && n <= max => Ok(n),
                Ok(_) => Err(self.bad(name, "value out of range")),
                Err(_) => Err(self.bad(name, "bad numerical configuration")),
            },
        }
    }

    pub fn bool(&self, name: &str, default: bool) -> Result<bool, TableError> {
        match self.cf.get(name).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(default),
            Some("yes" | "true" | "1") => Ok(true),
            Some("no" | "false" | "0") => Ok(false),
            Some(_) => Err(self.bad(name, "bad boolean configuration")),
        }
    }

    /// One of `choices`, compared case-insensitively.
    pub fn choice(&self, name: &str, default: &str, choices: &[&str]) -> Result<String, TableError> {
        let v = self.str(name, default).to_ascii_lowercase();
        if choices.contains(&v.as_str()) {
            Ok(v)
        } else {
            Err(self.bad(name, "unrecognized value"))
        }
    }
}

/// Which parts of the key (K) and of each result value (V) a template
/// needs; `labels` the highest `%1`-`%9`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    pub key_user: bool,
    pub key_domain: bool,
    pub value_user: bool,
    pub value_domain: bool,
    pub labels: usize,
}

/// A parsed `%` template; `query` = the key is the value being expanded.
#[derive(Debug, Clone)]
pub struct Template {
    text: String,
    pub needs: Needs,
}

impl Template {
    /// Checks the `%` sequences; an unknown one is a configuration error,
    /// as Postfix's `db_common_parse` makes it.
    pub fn parse(text: &str, query: bool, file: &str, param: &str) -> Result<Template, TableError> {
        let mut needs = Needs::default();
        let mut it = text.chars();
        while let Some(c) = it.next() {
            if c != '%' {
                continue;
            }
            match it.next() {
                Some('%' | 's' | 'S') => {}
                Some('u') if query => needs.key_user = true,
                Some('d') if query => needs.key_domain = true,
                Some('u') => needs.value_user = true,
                Some('d') => needs.value_domain = true,
                Some('U') => needs.key_user = true,
                Some('D') => needs.key_domain = true,
                Some(d @ '1'..='9') => {
                    needs.key_domain = true;
                    needs.labels = needs.labels.max(d as usize - '0' as usize);
                }
                Some(o) => {
                    return Err(TableError::Open(format!(
                        "{file}: invalid {param} template '{text}': unknown expansion %{o}"
                    )))
                }
                None => return Err(TableError::Open(format!("{file}: invalid {param} template '{text}': trailing %"))),
            }
        }
        Ok(Template {
            text: text.to_string(),
            needs,
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether the template has any expansion at all.
    pub fn is_fixed(&self) -> bool {
        !self.text.contains('%') || self.text.replace("%%", "").find('%').is_none()
    }
}

/// `user` and `domain` of an address (`strrchr` of '@'); None for the
/// domain when there is no '@'.
fn split_addr(s: &str) -> (&str, Option<&str>) {
    match s.rfind('@') {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    }
}

/// Whether the key has every part the templates need (else the query is
/// suppressed and the lookup finds nothing).
fn key_satisfies(key: &str, needs: &Needs) -> bool {
    let (user, domain) = split_addr(key);
    if needs.key_user && domain.is_some() && user.is_empty() {
        return false;
    }
    if needs.key_domain || needs.labels > 0 {
        match domain {
            None | Some("") => return false,
            Some(d) if needs.labels > d.split('.').count() => return false,
            _ => {}
        }
    }
    true
}

/// Expands `t` for `value` (the key itself for a query, a result value
/// for `result_format`, where upper-case and digit expansions refer to
/// `key`).  None when a needed part is missing (the value is skipped or
/// the query suppressed).
pub fn expand(t: &Template, value: &str, key: Option<&str>, quote: &dyn Fn(&str) -> String) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    let (vuser, vdomain) = split_addr(value);
    if key.is_some() {
        if t.needs.value_user && vdomain.is_some() && vuser.is_empty() {
            return None;
        }
        if t.needs.value_domain && vdomain.is_none_or(str::is_empty) {
            return None;
        }
    }
    let k = key.unwrap_or(value);
    if !key_satisfies(k, &t.needs) {
        return None;
    }
    let (kuser, kdomain) = split_addr(k);
    let labels: Vec<&str> = kdomain.unwrap_or("").split('.').collect();
    let mut out = String::new();
    let mut it = t.text.chars();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('%') => out.push('%'),
            Some('s') => out.push_str(&quote(value)),
            Some('u') => out.push_str(&quote(if vdomain.is_some() { vuser } else { value })),
            Some('d') => out.push_str(&quote(vdomain.unwrap_or(""))),
            Some('S') => out.push_str(&quote(k)),
            Some('U') => out.push_str(&quote(if kdomain.is_some() { kuser } else { k })),
            Some('D') => out.push_str(&quote(kdomain.unwrap_or(""))),
            Some(d @ '1'..='9') => {
                let n = d as usize - '0' as usize;
                out.push_str(&quote(labels.get(labels.len().wrapping_sub(n)).copied().unwrap_or("")));
            }
            _ => {}
        }
    }
    Some(out)
}

/// The query for `key`: None when the `domain` list leaves the key out
/// or a query or result template needs a part the key lacks.
pub fn query_for(
    domain: Option<&DomainFilter>,
    result_format: &Template,
    query: &Template,
    key: &str,
    quote: &dyn Fn(&str) -> String,
) -> Result<Option<String>, TableError> {
    if let Some(d) = domain {
        if !d.allows(key)? {
            return Ok(None);
        }
    }
    if !key_satisfies(key, &result_format.needs) {
        return Ok(None);
    }
    Ok(expand(query, key, None, quote))
}

/// `expand` of a result value, with Postfix's warning for an empty one.
pub fn expand_result(spec: &str, t: &Template, value: &str, key: &str) -> Option<String> {
    if value.is_empty() {
        super::warn(&format!("table \"{spec}\": empty lookup result for: \"{key}\" -- ignored"));
        return None;
    }
    expand(t, value, Some(key), &|s| s.to_string())
}

/// The `domain` parameter: a list of domain names and `type:table`
/// lookups; a key outside it (or without `user@`) is never queried.
pub struct DomainFilter {
    names: Vec<String>,
    tables: Vec<super::Table>,
}

impl DomainFilter {
    pub fn parse(text: &str) -> Result<Option<DomainFilter>, TableError> {
        let items = crate::config::postfix::list::split_list(text);
        if items.is_empty() {
            return Ok(None);
        }
        let mut f = DomainFilter {
            names: Vec::new(),
            tables: Vec::new(),
        };
        for i in items {
            if i.contains(':') {
                f.tables.push(super::Table::open(i)?);
            } else {
                f.names.push(i.to_ascii_lowercase());
            }
        }
        Ok(Some(f))
    }

    /// Ok(true) when the key may be queried.
    pub fn allows(&self, key: &str) -> Result<bool, TableError> {
        let (user, Some(domain)) = split_addr(key) else {
            return Ok(false);
        };
        if user.is_empty() || domain.is_empty() {
            return Ok(false);
        }
        let d = domain.to_ascii_lowercase();
        if self.names.contains(&d) {
            return Ok(true);
        }
        for t in &self.tables {
            if t.lookup(&d)?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// The runtime of the thread that runs network table queries, started
/// on first use.  Its tasks hold the tables' connections.
fn runtime() -> &'static tokio::runtime::Handle {
    static RT: OnceLock<tokio::runtime::Handle> = OnceLock::new();
    RT.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("dict".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("dict runtime");
                let _ = tx.send(rt.handle().clone());
                rt.block_on(std::future::pending::<()>());
            })
            .expect("dict thread");
        rx.recv().expect("dict runtime handle")
    })
}

/// Runs `fut` on the table thread and waits for it, at most `limit`;
/// a daemon's runtime worker lets its other tasks move meanwhile.
pub fn run<T: Send + 'static>(limit: Duration, fut: impl Future<Output = Result<T, String>> + Send + 'static) -> Result<T, String> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime().spawn(async move {
        let r = match tokio::time::timeout(limit, fut).await {
            Ok(r) => r,
            Err(_) => Err(format!("timed out after {} s", limit.as_secs())),
        };
        let _ = tx.send(r);
    });
    let wait = move || {
        rx.recv_timeout(limit + Duration::from_secs(1))
            .unwrap_or_else(|_| Err(format!("timed out after {} s", limit.as_secs())))
    };
    crate::util::block_inline(wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str, query: bool) -> Template {
        Template::parse(s, query, "f", "p").unwrap()
    }

    #[test]
    fn query_expansion_and_suppression() {
        let id = |s: &str| s.to_string();
        let q = t("(&(uid=%u)(dc=%d)(x=%s)(%1/%2))", true);
        assert_eq!(
            expand(&q, "bob@mail.example.com", None, &id).as_deref(),
            Some("(&(uid=bob)(dc=mail.example.com)(x=bob@mail.example.com)(com/example))")
        );
        assert_eq!(expand(&q, "bob", None, &id), None, "no domain");
        assert_eq!(expand(&t("%u", true), "@example.com", None, &id), None, "empty localpart");
        assert_eq!(expand(&t("%u", true), "bob", None, &id).as_deref(), Some("bob"));
        assert_eq!(expand(&t("%4", true), "a@b.c.d", None, &id), None, "too few labels");
        assert_eq!(expand(&t("x=%s 100%%", true), "", None, &id), None, "empty key");
        assert_eq!(expand(&t("x=%s 100%%", true), "k", None, &id).as_deref(), Some("x=k 100%"));
        assert!(t("uid=u1", true).is_fixed() && t("a%%b", true).is_fixed() && !t("%s", true).is_fixed());
        assert!(Template::parse("%x", true, "f", "query_filter").is_err());
    }

    #[test]
    fn result_expansion_refers_to_value_and_key() {
        let id = |s: &str| s.to_string();
        let r = t("<%s|%u|%d|%S|%U|%D|%1|%2|%3|%%>", false);
        assert_eq!(
            expand(&r, "u1@mumail.test", Some("staff@x.y.other"), &id).as_deref(),
            Some("<u1@mumail.test|u1|mumail.test|staff@x.y.other|staff|x.y.other|other|y|x|%>")
        );
        assert_eq!(
            expand(&t("%d", false), "u1", Some("k@d"), &id),
            None,
            "value without domain skipped"
        );
        assert_eq!(expand(&t("%s", false), "", Some("k"), &id), None, "empty value skipped");
        assert_eq!(expand(&t("%D", false), "v", Some("k"), &id), None, "key without domain");
    }

    #[test]
    fn domain_filter() {
        let f = DomainFilter::parse("Example.com, inline:{other.test=1}").unwrap().unwrap();
        assert!(f.allows("a@EXAMPLE.com").unwrap());
        assert!(f.allows("a@other.test").unwrap());
        assert!(!f.allows("a@third.test").unwrap());
        assert!(!f.allows("example.com").unwrap());
        assert!(!f.allows("@example.com").unwrap());
        assert!(DomainFilter::parse("").unwrap().is_none());
    }
}
