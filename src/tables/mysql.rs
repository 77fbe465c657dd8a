//! `mysql:/path/to/file.cf` lookup tables with mysql_table(5)'s
//! parameters: `hosts` (`inet:host[:port]`, `unix:/path`, bare names;
//! UNIX sockets first, a host that fails is skipped for
//! `retry_interval`), `user`, `password`, `dbname`, `query` (or the legacy
//! `select_field`/`table`/`where_field`/`additional_conditions`) with the
//! `%` expansions SQL-escaped as `mysql_real_escape_string` does,
//! `result_format`, `domain`, `expansion_limit`, `require_result_set`,
//! `option_file`/`option_group` (`[client]` of a my.cnf), `idle_interval`
//! and the `tls_*` options.  Every non-NULL column of every row is a
//! value, in row order, joined with commas.  A failed query is a
//! temporary error, never "not found".

use super::dbcommon::{self, CfFile, DomainFilter, Template};
use super::TableError;
use mysql_async::prelude::Queryable;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    Inet(String, u16),
    Unix(String),
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Inet(h, p) => write!(f, "inet:{h}:{p}"),
            Host::Unix(p) => write!(f, "unix:{p}"),
        }
    }
}

pub struct MysqlTable {
    spec: String,
    hosts: Vec<Host>,
    user: String,
    password: String,
    dbname: String,
    query: Template,
    result_format: Template,
    domain: Option<DomainFilter>,
    expansion_limit: usize,
    require_result_set: bool,
    ssl: Option<mysql_async::SslOpts>,
    idle: Duration,
    retry: Duration,
    timeout: Duration,
    /// Idle connections with the host and when they were last used.
    pool: Mutex<Vec<(Host, mysql_async::Conn, Instant)>>,
    /// Hosts that failed, and until when they are skipped.
    dead: Mutex<Vec<(Host, Instant)>>,
}

impl std::fmt::Debug for MysqlTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlTable")
            .field("spec", &self.spec)
            .field("hosts", &self.hosts)
            .finish()
    }
}

/// `mysql_real_escape_string`.
pub fn quote_sql(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 8);
    for c in v.chars() {
        match c {
            '\0' => out.push_str("\\0"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '\x1a' => out.push_str("\\Z"),
            c => out.push(c),
        }
    }
    out
}

/// The `hosts` list; `localhost` without a port is the server's default
/// UNIX socket, as the MySQL client library takes it.
fn parse_hosts(text: &str, socket: &str, port: u16) -> Vec<Host> {
    let mut unix = Vec::new();
    let mut inet = Vec::new();
    for h in crate::config::postfix::list::tokens(text, ", \t\r\n") {
        if let Some(p) = h.strip_prefix("unix:") {
            unix.push(Host::Unix(p.to_string()));
            continue;
        }
        let h = h.strip_prefix("inet:").unwrap_or(h);
        if h == "localhost" {
            unix.push(Host::Unix(socket.to_string()));
            continue;
        }
        let (name, p) = match h.rsplit_once(':') {
            Some((n, p)) if !n.contains(':') || n.starts_with('[') => (n, p.parse().unwrap_or(port)),
            _ => (h, port),
        };
        inet.push(Host::Inet(name.trim_start_matches('[').trim_end_matches(']').to_string(), p));
    }
    unix.extend(inet);
    unix
}

/// `[group]` settings of a my.cnf option file (`key = value`, `key`).
fn option_file(path: &str, group: &str) -> Result<std::collections::HashMap<String, String>, TableError> {
    let text = std::fs::read_to_string(path).map_err(|e| TableError::Open(format!("open {path}: {}", crate::util::strerror(&e))))?;
    let mut out = std::collections::HashMap::new();
    let mut inside = false;
    for line in text.lines() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
            continue;
        }
        if let Some(g) = l.strip_prefix('[').and_then(|g| g.strip_suffix(']')) {
            inside = g.trim() == group;
            continue;
        }
        if inside {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            let v = v.trim().trim_matches('"').trim_matches('\'');
            out.insert(k.trim().replace('-', "_"), v.to_string());
        }
    }
    Ok(out)
}

impl MysqlTable {
    pub fn open(spec: &str, file: &str) -> Result<MysqlTable, TableError> {
        let cf = CfFile::load(file)?;
        let defaults = if cf.has("option_file") {
            option_file(&cf.str("option_file", ""), &cf.str("option_group", "client"))?
        } else {
            Default::default()
        };
        let from = |name: &str, opt: &str| {
            if cf.has(name) {
                cf.str(name, "")
            } else {
                defaults.get(opt).cloned().unwrap_or_default()
            }
        };
        let socket = defaults.get("socket").cloned().unwrap_or_else(|| {
            ["/run/mysqld/mysqld.sock", "/var/lib/mysql/mysql.sock"]
                .into_iter()
                .find(|p| std::path::Path::new(p).exists())
                .unwrap_or("/run/mysqld/mysqld.sock")
                .to_string()
        });
        let port = defaults.get("port").and_then(|p| p.parse().ok()).unwrap_or(3306);
        let host_text = if cf.has("hosts") {
            cf.str("hosts", "")
        } else {
            defaults.get("host").cloned().unwrap_or_else(|| "localhost".into())
        };
        let hosts = parse_hosts(&host_text, &socket, port);
        if hosts.is_empty() {
            return Err(TableError::Open(format!("{file}: hosts is empty")));
        }
        let query_text = if cf.has("query") {
            cf.str("query", "")
        } else if cf.has("table") {
            format!(
                "SELECT {} FROM {} WHERE {}='%s' {}",
                cf.str("select_field", ""),
                cf.str("table", ""),
                cf.str("where_field", ""),
                cf.str("additional_conditions", "")
            )
            .trim_end()
            .to_string()
        } else {
            return Err(TableError::Open(format!("{file}: missing query parameter")));
        };
        let query = Template::parse(&query_text, true, file, "query")?;
        let result_format = Template::parse(&cf.str("result_format", "%s"), false, file, "result_format")?;
        let dbname = from("dbname", "database");
        if dbname.is_empty() {
            return Err(TableError::Open(format!("{file}: missing dbname parameter")));
        }
        let tls_names = ["tls_cert_file", "tls_key_file", "tls_CAfile", "tls_CApath", "tls_verify_cert"];
        let ssl = if tls_names.iter().any(|n| cf.has(n)) {
            let mut roots = Vec::new();
            if cf.has("tls_CAfile") {
                roots.push(std::path::PathBuf::from(cf.str("tls_CAfile", "")).into());
            }
            if cf.has("tls_CApath") {
                let dir = cf.str("tls_CApath", "");
                let rd = std::fs::read_dir(&dir).map_err(|e| TableError::Open(format!("{file}: tls_CApath {dir}: {e}")))?;
                roots.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_file()).map(Into::into));
            }
            let identity = match (cf.has("tls_cert_file"), cf.has("tls_key_file")) {
                (true, true) => Some(mysql_async::ClientIdentity::new(
                    std::path::PathBuf::from(cf.str("tls_cert_file", "")).into(),
                    std::path::PathBuf::from(cf.str("tls_key_file", "")).into(),
                )),
                (false, false) => None,
                _ => {
                    return Err(TableError::Open(format!(
                        "{file}: tls_cert_file and tls_key_file must be set together"
                    )))
                }
            };
            let verify = cf.bool("tls_verify_cert", false)?;
            Some(
                mysql_async::SslOpts::default()
                    .with_root_certs(roots)
                    .with_client_identity(identity)
                    .with_danger_accept_invalid_certs(!verify)
                    .with_danger_skip_domain_validation(!verify),
            )
        } else {
            None
        };
        Ok(MysqlTable {
            spec: spec.to_string(),
            hosts,
            user: from("user", "user"),
            password: from("password", "password"),
            dbname,
            query,
            result_format,
            domain: DomainFilter::parse(&cf.str("domain", ""))?,
            expansion_limit: cf.int("expansion_limit", 0, 0, i32::MAX as i64)? as usize,
            require_result_set: cf.bool("require_result_set", true)?,
            ssl,
            idle: Duration::from_secs(cf.int("idle_interval", 60, 1, 86400)? as u64),
            retry: Duration::from_secs(cf.int("retry_interval", 60, 1, 86400)? as u64),
            timeout: Duration::from_secs(10),
            pool: Mutex::new(Vec::new()),
            dead: Mutex::new(Vec::new()),
        })
    }

    pub fn lookup(self: &Arc<Self>, key: &str) -> Result<Option<String>, TableError> {
        let Some(sql) = dbcommon::query_for(self.domain.as_ref(), &self.result_format, &self.query, key, &quote_sql)? else {
            return Ok(None);
        };
        let me = self.clone();
        let k = key.to_string();
        dbcommon::run(self.timeout * 2, async move { me.query(&sql, &k).await }).map_err(|why| TableError::Query(self.spec.clone(), why))
    }

    fn alive(&self) -> Vec<Host> {
        let now = Instant::now();
        let mut dead = self.dead.lock().map(|d| d.clone()).unwrap_or_default();
        dead.retain(|(_, until)| *until > now);
        let up: Vec<Host> = self.hosts.iter().filter(|h| !dead.iter().any(|(d, _)| d == *h)).cloned().collect();
        // All down: try them all again rather than fail without asking.
        if up.is_empty() {
            self.hosts.clone()
        } else {
            up
        }
    }

    async fn connect(&self, host: &Host) -> Result<mysql_async::Conn, String> {
        let mut o = mysql_async::OptsBuilder::default()
            .user(Some(self.user.clone()))
            .pass(Some(self.password.clone()))
            .db_name(Some(self.dbname.clone()))
            .prefer_socket(false)
            .stmt_cache_size(0)
            .ssl_opts(self.ssl.clone());
        o = match host {
            Host::Inet(h, p) => o.ip_or_hostname(h.clone()).tcp_port(*p),
            Host::Unix(path) => o.socket(Some(path.clone())),
        };
        match tokio::time::timeout(self.timeout, mysql_async::Conn::new(o)).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(server_text(&e)),
            Err(_) => Err("connect timed out".into()),
        }
    }

    /// An idle connection (not older than `idle_interval`) or a new one
    /// to the first host that answers.
    async fn conn(&self) -> Result<(Host, mysql_async::Conn), String> {
        let idle = {
            let mut p = self.pool.lock().map_err(|_| "pool lock")?;
            let now = Instant::now();
            p.retain(|(_, _, used)| now.duration_since(*used) < self.idle);
            p.pop()
        };
        if let Some((h, c, _)) = idle {
            return Ok((h, c));
        }
        let mut last = String::new();
        for h in self.alive() {
            match self.connect(&h).await {
                Ok(c) => return Ok((h, c)),
                Err(e) => {
                    super::warn(&format!("connect to mysql server {h}: {e}"));
                    if let Ok(mut d) = self.dead.lock() {
                        d.retain(|(x, _)| *x != h);
                        d.push((h.clone(), Instant::now() + self.retry));
                    }
                    last = e;
                }
            }
        }
        super::warn(&format!("{}: all hosts are down: {last}", self.spec));
        Err("no database server is available".into())
    }

    async fn query(&self, sql: &str, key: &str) -> Result<Option<String>, String> {
        for attempt in 0..2 {
            let (host, mut c) = self.conn().await?;
            let rows: Result<Option<Vec<mysql_async::Row>>, mysql_async::Error> = async {
                let mut r = c.query_iter(sql).await?;
                let has_set = r.columns().is_some_and(|c| !c.is_empty());
                let rows = r.collect::<mysql_async::Row>().await?;
                r.drop_result().await?;
                Ok(has_set.then_some(rows))
            }
            .await;
            let rows = match rows {
                Ok(r) => r,
                // The connection went away (server restart, idle close):
                // once more on a fresh one.
                Err(mysql_async::Error::Io(_) | mysql_async::Error::Driver(_)) if attempt == 0 => continue,
                Err(e) => {
                    super::warn(&format!("{}: query failed: {}", self.spec, server_text(&e)));
                    return Err(server_text(&e));
                }
            };
            if let Ok(mut p) = self.pool.lock() {
                if p.len() < 8 {
                    p.push((host, c, Instant::now()));
                }
            }
            let Some(rows) = rows else {
                if self.require_result_set {
                    super::warn(&format!("{}: query returned no result set", self.spec));
                    return Err("query returned no result set".into());
                }
                return Ok(None);
            };
            let mut out: Vec<String> = Vec::new();
            for row in rows {
                for i in 0..row.len() {
                    let v = match row.as_ref(i) {
                        Some(mysql_async::Value::NULL) | None => continue,
                        Some(mysql_async::Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
                        Some(other) => other.as_sql(true).trim_matches('\'').to_string(),
                    };
                    if let Some(x) = dbcommon::expand_result(&self.spec, &self.result_format, &v, key) {
                        out.push(x);
                        if self.expansion_limit > 0 && out.len() > self.expansion_limit {
                            super::warn(&format!("{}: Expansion limit exceeded for key: '{key}'", self.spec));
                            return Err("Expansion limit exceeded".into());
                        }
                    }
                }
            }
            return Ok((!out.is_empty()).then(|| out.join(",")));
        }
        Err("no database server is available".into())
    }
}

fn server_text(e: &mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Server(s) => s.message.clone(),
        e => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_quoting() {
        assert_eq!(
            parse_hosts("inet:db1:3307, db2 unix:/s localhost", "/run/mysqld/mysqld.sock", 3306),
            vec![
                Host::Unix("/s".into()),
                Host::Unix("/run/mysqld/mysqld.sock".into()),
                Host::Inet("db1".into(), 3307),
                Host::Inet("db2".into(), 3306),
            ]
        );
        assert_eq!(quote_sql("o'b\"r\\\n\0"), "o\\'b\\\"r\\\\\\n\\0");
    }

    #[test]
    fn option_file_and_legacy_query() {
        let d = tempfile::tempdir().unwrap();
        let my = d.path().join("my.cnf");
        std::fs::write(&my, "[mysqld]\nuser=x\n[client]\nuser = pf\npassword=\"s3\"\nport=3310\nhost=db\n").unwrap();
        let cf = d.path().join("t.cf");
        std::fs::write(
            &cf,
            format!(
                "option_file = {}\ndbname = mail\nselect_field = target\ntable = aliases\nwhere_field = alias\n",
                my.display()
            ),
        )
        .unwrap();
        let t = MysqlTable::open("mysql:t", cf.to_str().unwrap()).unwrap();
        assert_eq!((t.user.as_str(), t.password.as_str()), ("pf", "s3"));
        assert_eq!(t.hosts, vec![Host::Inet("db".into(), 3310)]);
        assert_eq!(t.query.text(), "SELECT target FROM aliases WHERE alias='%s'");
        std::fs::write(&cf, "hosts = h\n").unwrap();
        assert!(MysqlTable::open("mysql:t", cf.to_str().unwrap()).is_err());
    }
}
