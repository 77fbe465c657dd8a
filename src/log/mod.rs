//! Log lines in the originals' shapes, written to syslog (`/dev/log`,
//! RFC 3164), to `maillog_file`, or to stderr.
//!
//! - Hub daemons (Postfix shape): `<syslog_name>/<service>[pid]: text`, with
//!   `warning:` `error:` `fatal:` `panic:` before non-info text.
//! - Store daemons (Cyrus shape): `desc: key=<value> key=<value>`.
//!
//! Every record is capped at 2000 bytes (Postfix MSG_LOGGER_RECLEN).
//! Secrets reach this module only as `mail::Secret`, which prints `***`.

use std::io::Write;
use std::sync::Mutex;

/// Longest record, in bytes, before truncation.
pub const MAX_RECORD: usize = 2000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Info,
    Warning,
    Error,
    Fatal,
    Panic,
}

impl Severity {
    pub fn prefix(self) -> &'static str {
        match self {
            Severity::Info => "",
            Severity::Warning => "warning: ",
            Severity::Error => "error: ",
            Severity::Fatal => "fatal: ",
            Severity::Panic => "panic: ",
        }
    }
    /// syslog(3) priority level.
    fn level(self) -> u8 {
        match self {
            Severity::Info => 6,
            Severity::Warning => 4,
            Severity::Error => 3,
            Severity::Fatal => 2,
            Severity::Panic => 0,
        }
    }
}

/// syslog facility number for a name as `syslog_facility` spells it.
pub fn facility(name: &str) -> Option<u8> {
    Some(match name {
        "kern" => 0,
        "user" => 1,
        "mail" => 2,
        "daemon" => 3,
        "auth" => 4,
        "syslog" => 5,
        "lpr" => 6,
        "news" => 7,
        "uucp" => 8,
        "cron" => 9,
        "authpriv" => 10,
        "ftp" => 11,
        _ => {
            let n: u8 = name.strip_prefix("local")?.parse().ok()?;
            if n > 7 {
                return None;
            }
            16 + n
        }
    })
}

/// Truncates at a char boundary to at most `max` bytes.
pub fn cap(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The message part of a Postfix-shaped record: severity word + text.
pub fn postfix_text(sev: Severity, text: &str) -> String {
    let full = format!("{}{text}", sev.prefix());
    cap(&full, MAX_RECORD).to_string()
}

/// A Cyrus-shaped record: `desc: key=<value> ...`.
pub fn cyrus_text(desc: &str, fields: &[(&str, &dyn std::fmt::Display)]) -> String {
    let mut s = desc.to_string();
    s.push(':');
    for (k, v) in fields {
        s.push_str(&format!(" {k}=<{v}>"));
    }
    cap(&s, MAX_RECORD).to_string()
}

/// `Mmm dd HH:MM:SS` in local time (Postfix's strftime "%b %d %H:%M:%S").
pub fn timestamp(t: std::time::SystemTime) -> String {
    const MON: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let secs = t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as libc::time_t;
    // SAFETY: localtime_r writes only into `tm`, which we own.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    unsafe { libc::localtime_r(&secs, &mut tm) };
    format!(
        "{} {:02} {:02}:{:02}:{:02}",
        MON[tm.tm_mon.clamp(0, 11) as usize],
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

pub enum Target {
    /// RFC 3164 datagrams to a syslog socket (normally `/dev/log`).
    Syslog(String),
    /// A file such as `maillog_file = /dev/stdout` (full line, host included).
    File(Mutex<std::fs::File>),
    Stderr,
    /// saslauthd's `-d` format on stderr: `saslauthd[pid] :text`.
    Debug,
}

pub struct Logger {
    /// `postfix/smtpd`, `imap`, `saslauthd`, …
    pub tag: String,
    pub facility: u8,
    pub hostname: String,
    pub target: Target,
    /// For `Target::Syslog`: a datagram socket connected to it, made at the
    /// first line and again after a send fails (the syslog daemon
    /// restarted), so that a line costs one send, not a socket, a path
    /// lookup and a close.
    conn: Mutex<Syslog>,
}

/// The connection to the syslog socket, and when reaching it last failed:
/// for a second after, lines go to stderr without another try (a host
/// without a syslog daemon, a container, would otherwise pay a socket, a
/// failed connect and a close for every line).
#[derive(Default)]
struct Syslog {
    sock: Option<std::os::unix::net::UnixDatagram>,
    failed: Option<std::time::Instant>,
}

impl Logger {
    pub fn new(tag: &str, facility: u8, target: Target) -> Logger {
        let hostname = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into());
        let short = hostname.split('.').next().unwrap_or("localhost").to_string();
        Logger {
            tag: tag.to_string(),
            facility,
            hostname: short,
            target,
            conn: Mutex::new(Syslog::default()),
        }
    }

    /// `maillog_file` set → that file; else syslog.
    pub fn from_maillog_file(tag: &str, facility: u8, maillog_file: &str) -> std::io::Result<Logger> {
        if maillog_file.is_empty() {
            return Ok(Logger::new(tag, facility, Target::Syslog("/dev/log".into())));
        }
        let f = std::fs::OpenOptions::new().append(true).create(true).open(maillog_file)?;
        Ok(Logger::new(tag, facility, Target::File(Mutex::new(f))))
    }

    /// The same destination under another service name (`postfix/qmgr` →
    /// `postfix/lmtp`): no file is opened again, so it works after the
    /// process gave up root.
    pub fn for_service(&self, service: &str) -> Logger {
        let tag = match self.tag.rsplit_once('/') {
            Some((prefix, _)) => format!("{prefix}/{service}"),
            None => service.to_string(),
        };
        let target = match &self.target {
            Target::Syslog(p) => Target::Syslog(p.clone()),
            Target::File(f) => match f.lock().ok().and_then(|f| f.try_clone().ok()) {
                Some(f) => Target::File(Mutex::new(f)),
                None => Target::Stderr,
            },
            Target::Stderr => Target::Stderr,
            Target::Debug => Target::Debug,
        };
        Logger {
            tag,
            facility: self.facility,
            hostname: self.hostname.clone(),
            target,
            conn: Mutex::new(Syslog::default()),
        }
    }

    /// The whole line as written to a file target.
    pub fn file_line(&self, sev: Severity, text: &str, now: std::time::SystemTime) -> String {
        format!(
            "{} {} {}[{}]: {}\n",
            timestamp(now),
            self.hostname,
            self.tag,
            std::process::id(),
            postfix_text(sev, text)
        )
    }

    pub fn log(&self, sev: Severity, text: &str) {
        let now = std::time::SystemTime::now();
        match &self.target {
            Target::Syslog(path) => {
                let pri = self.facility * 8 + sev.level();
                let msg = format!(
                    "<{pri}>{} {}[{}]: {}",
                    timestamp(now),
                    self.tag,
                    std::process::id(),
                    postfix_text(sev, text)
                );
                if self.send_syslog(path, msg.as_bytes()).is_err() {
                    let _ = std::io::stderr().write_all(self.file_line(sev, text, now).as_bytes());
                }
            }
            Target::File(f) => {
                if let Ok(mut f) = f.lock() {
                    let _ = f.write_all(self.file_line(sev, text, now).as_bytes());
                }
            }
            Target::Debug => {
                let _ = std::io::stderr().write_all(format!("{}[{}] :{}{text}\n", self.tag, std::process::id(), sev.prefix()).as_bytes());
            }
            Target::Stderr => {
                let _ =
                    std::io::stderr().write_all(format!("{}[{}]: {}\n", self.tag, std::process::id(), postfix_text(sev, text)).as_bytes());
            }
        }
    }

    /// One datagram to the syslog socket at `path`, over the kept
    /// connection; a failed send is tried once more on a new one.
    fn send_syslog(&self, path: &str, msg: &[u8]) -> std::io::Result<()> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = conn.sock.as_ref() {
            if s.send(msg).is_ok() {
                return Ok(());
            }
            conn.sock = None;
        }
        if conn.failed.is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(1)) {
            return Err(std::io::ErrorKind::NotConnected.into());
        }
        let fresh = || -> std::io::Result<std::os::unix::net::UnixDatagram> {
            let s = std::os::unix::net::UnixDatagram::unbound()?;
            s.connect(path)?;
            s.send(msg)?;
            Ok(s)
        };
        match fresh() {
            Ok(s) => {
                conn.sock = Some(s);
                conn.failed = None;
                Ok(())
            }
            Err(e) => {
                conn.failed = Some(std::time::Instant::now());
                Err(e)
            }
        }
    }

    pub fn info(&self, text: &str) {
        self.log(Severity::Info, text)
    }
    pub fn warning(&self, text: &str) {
        self.log(Severity::Warning, text)
    }
    pub fn error(&self, text: &str) {
        self.log(Severity::Error, text)
    }
    pub fn fatal(&self, text: &str) {
        self.log(Severity::Fatal, text)
    }
}

impl Logger {
    /// A hub daemon's logger from main.cf: tag `$syslog_name/<service>`,
    /// facility `syslog_facility`, `maillog_file` if set, else syslog.
    pub fn for_postfix(p: &crate::config::postfix::Params, service: &str) -> Result<Logger, String> {
        let name = p.get("syslog_name").unwrap_or_else(|| "postfix".into());
        let fac_name = p.get("syslog_facility").unwrap_or_else(|| "mail".into());
        let fac = facility(&fac_name).ok_or_else(|| format!("syslog_facility: bad value: {fac_name}"))?;
        let file = p.get("maillog_file").unwrap_or_default();
        Logger::from_maillog_file(&format!("{name}/{service}"), fac, &file)
            .map_err(|e| format!("open {file}: {}", crate::util::strerror(&e)))
    }

    /// A store daemon's logger from imapd.conf: tag `<syslog_prefix>/<service>`
    /// (Cyrus's default prefix `cyrus`), facility `syslog_facility`
    /// (Cyrus's default LOCAL6).
    pub fn for_cyrus(c: &crate::config::cyrus::ImapdConf, service: &str) -> Result<Logger, String> {
        let prefix = c.get("syslog_prefix").filter(|s| !s.is_empty()).unwrap_or("cyrus");
        let fac_name = c
            .get("syslog_facility")
            .filter(|s| !s.is_empty())
            .unwrap_or("local6")
            .to_ascii_lowercase();
        let fac = facility(&fac_name).ok_or_else(|| format!("syslog_facility: bad value: {fac_name}"))?;
        Ok(Logger::new(&format!("{prefix}/{service}"), fac, Target::Syslog("/dev/log".into())))
    }
}

/// Logs every panic as `panic: ...`; the panicking connection task ends,
/// the daemon goes on (tokio contains the unwind to that task).
pub fn install_panic_hook(logger: std::sync::Arc<Logger>) {
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        logger.log(Severity::Panic, &format!("{msg}{at}"));
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert_eq!(postfix_text(Severity::Info, "connect from x[1.2.3.4]"), "connect from x[1.2.3.4]");
        assert_eq!(postfix_text(Severity::Warning, "w"), "warning: w");
        assert_eq!(postfix_text(Severity::Fatal, "f"), "fatal: f");
        assert_eq!(
            cyrus_text("login", &[("sessionid", &"s1"), ("userid", &"alice")]),
            "login: sessionid=<s1> userid=<alice>"
        );
        let long = "é".repeat(1500);
        assert!(postfix_text(Severity::Info, &long).len() <= MAX_RECORD);
        assert_eq!(facility("mail"), Some(2));
        assert_eq!(facility("local7"), Some(23));
        assert_eq!(facility("local8"), None);
    }

    #[test]
    fn file_target_line() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("maillog");
        let l = Logger::from_maillog_file("postfix/smtpd", 2, p.to_str().unwrap()).unwrap();
        l.warning("TLS library problem");
        let s = std::fs::read_to_string(&p).unwrap();
        let re_ok = s.ends_with(&format!(" postfix/smtpd[{}]: warning: TLS library problem\n", std::process::id()));
        assert!(re_ok, "{s}");
        assert_eq!(&s[3..4], " ");
        assert_eq!(&s[6..7], " ");
    }

    #[test]
    fn loggers_from_config() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("maillog");
        let main = format!("syslog_name = postfix\nsyslog_facility = local3\nmaillog_file = {}\n", f.display());
        let p = crate::config::postfix::Params {
            main: crate::config::postfix::MainCf::parse("m", main.as_bytes()).unwrap(),
            ..Default::default()
        };
        let l = Logger::for_postfix(&p, "smtpd").unwrap();
        assert_eq!((l.tag.as_str(), l.facility), ("postfix/smtpd", 19));
        l.info("connect from x[127.0.0.1]");
        assert!(std::fs::read_to_string(&f).unwrap().contains("postfix/smtpd["));
        let c = crate::config::cyrus::ImapdConf::parse(
            "i",
            b"configdirectory: /x\nsyslog_prefix: peers\nsyslog_facility: MAIL\n",
            Some("imap"),
        )
        .unwrap();
        let l = Logger::for_cyrus(&c, "imap").unwrap();
        assert_eq!((l.tag.as_str(), l.facility), ("peers/imap", 2));
    }

    #[test]
    fn syslog_datagram() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log");
        let sock = std::os::unix::net::UnixDatagram::bind(&p).unwrap();
        let l = Logger::new("saslauthd", 4, Target::Syslog(p.to_str().unwrap().into()));
        l.error("e");
        let mut buf = [0u8; 256];
        let n = sock.recv(&mut buf).unwrap();
        let s = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(s.starts_with("<35>"), "{s}");
        assert!(s.ends_with("]: error: e"), "{s}");
        // The syslog daemon restarts (a new socket at the same path): the
        // next line reaches it over a new connection.
        drop(sock);
        std::fs::remove_file(&p).unwrap();
        let sock = std::os::unix::net::UnixDatagram::bind(&p).unwrap();
        sock.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        l.info("again");
        let n = sock.recv(&mut buf).unwrap();
        assert!(std::str::from_utf8(&buf[..n]).unwrap().ends_with("]: again"));
    }

    #[test]
    fn no_syslog_daemon_is_tried_again_after_a_second() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log");
        let l = Logger::new("imap", 2, Target::Syslog(p.to_str().unwrap().into()));
        assert!(l.send_syslog(p.to_str().unwrap(), b"x").is_err());
        // The daemon comes: not asked again at once, but after a second.
        let sock = std::os::unix::net::UnixDatagram::bind(&p).unwrap();
        assert!(l.send_syslog(p.to_str().unwrap(), b"soon").is_err());
        std::thread::sleep(std::time::Duration::from_millis(1100));
        l.info("later");
        let mut buf = [0u8; 256];
        let n = sock.recv(&mut buf).unwrap();
        assert!(std::str::from_utf8(&buf[..n]).unwrap().ends_with("]: later"));
    }
}
