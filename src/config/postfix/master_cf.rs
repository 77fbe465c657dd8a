//! master.cf: eight fields per service (service, type, private, unpriv,
//! chroot, wakeup, maxproc, command + arguments), continuation lines, and
//! daemon options `-o name=value` / `-o { name = value }`.

use super::lines::logical_lines;
use super::list::{strip_braces, tokens};
use super::main_cf::split_nameval;
use crate::config::ConfigError;

/// The field names as `postconf -F` prints them.
pub const FIELD_NAMES: [&str; 8] = [
    "service",
    "type",
    "private",
    "unprivileged",
    "chroot",
    "wakeup",
    "process_limit",
    "command",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub kind: String,
    pub private: String,
    pub unpriv: String,
    pub chroot: String,
    pub wakeup: String,
    pub maxproc: String,
    /// The command and its arguments, normalised as Postfix stores them:
    /// `-o` values as `name=value` without braces, brace groups unwrapped.
    pub argv: Vec<String>,
    pub line: usize,
    /// Last physical line of the entry (continuations included).
    pub last_line: usize,
}

impl Service {
    /// The program name (first word of the command field).
    pub fn command(&self) -> &str {
        &self.argv[0]
    }

    /// `-o name=value` settings in order.
    pub fn overrides(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut it = self.argv.iter().skip(1).peekable();
        while let Some(a) = it.next() {
            if a == "-o" {
                if let Some(v) = it.next() {
                    if let Some((n, val)) = v.split_once('=') {
                        out.push((n.trim().to_string(), val.trim().to_string()));
                    }
                }
            } else if !a.starts_with('-') {
                break;
            }
        }
        out
    }

    /// The eight fields as `postconf -F` names them; the last is the command line.
    pub fn fields(&self) -> [String; 8] {
        [
            self.name.clone(),
            self.kind.clone(),
            self.private.clone(),
            self.unpriv.clone(),
            self.chroot.clone(),
            self.wakeup.clone(),
            self.maxproc.clone(),
            self.command_line(),
        ]
    }

    /// Command and arguments on one line; `-o` values with white space are
    /// shown in `{ }` as postconf does.
    pub fn command_line(&self) -> String {
        self.display_args().join(" ")
    }

    pub fn display_args(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut prev_o = false;
        for a in &self.argv {
            if prev_o && a.contains(|c: char| c.is_ascii_whitespace()) {
                out.push(format!("{{{a}}}"));
            } else {
                out.push(a.clone());
            }
            prev_o = a == "-o";
        }
        out
    }
}

#[derive(Debug, Clone, Default)]
pub struct MasterCf {
    pub path: String,
    pub services: Vec<Service>,
    pub warnings: Vec<String>,
}

fn check(ok: bool, field: &str, val: &str, line: &str) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Syntax(format!("invalid {field} field \"{val}\" in \"{line}\"")))
    }
}

fn yn(v: &str) -> bool {
    matches!(v, "y" | "n" | "-")
}

impl MasterCf {
    pub fn load(path: &str) -> Result<MasterCf, ConfigError> {
        let data = crate::config::read_file(path)?;
        Self::parse(path, &data)
    }

    pub fn parse(path: &str, data: &[u8]) -> Result<MasterCf, ConfigError> {
        let mut cf = MasterCf {
            path: path.to_string(),
            ..Default::default()
        };
        let mut warnings = Vec::new();
        let base = path.rsplit('/').next().unwrap_or(path).to_string();
        for l in logical_lines(path, data, &mut |w| warnings.push(w)) {
            let toks = tokens(&l.text, " \t\r\n");
            if toks.len() < 8 {
                return Err(ConfigError::Syntax(format!("file {path}: line {}: bad field count", l.first_line)));
            }
            let t = &l.text;
            check(
                matches!(toks[1], "inet" | "unix" | "unix-dgram" | "fifo" | "pass"),
                "type",
                toks[1],
                t,
            )?;
            check(yn(toks[2]), "private", toks[2], t)?;
            check(yn(toks[3]), "unprivileged", toks[3], t)?;
            check(yn(toks[4]), "chroot", toks[4], t)?;
            let w = toks[5].strip_suffix('?').unwrap_or(toks[5]);
            check(
                toks[5] == "-" || (!w.is_empty() && w.bytes().all(|c| c.is_ascii_digit())),
                "wakeup",
                toks[5],
                t,
            )?;
            check(
                toks[6] == "-" || toks[6].bytes().all(|c| c.is_ascii_digit()),
                "process_limit",
                toks[6],
                t,
            )?;
            let mut argv = Vec::new();
            let mut i = 7;
            while i < toks.len() {
                let tok = toks[i];
                let (unwrapped, missing) = strip_braces(tok);
                if missing {
                    warnings.push(format!("{base}: missing '}}' in \"{tok}\""));
                }
                if let Some(rest) = tok.strip_prefix("-o").filter(|r| !r.is_empty()) {
                    argv.push("-o".to_string());
                    argv.push(rest.to_string());
                } else if tok == "-o" && i + 1 < toks.len() {
                    argv.push("-o".to_string());
                    let next = toks[i + 1];
                    let (payload, missing) = strip_braces(next);
                    if missing {
                        warnings.push(format!("{base}: missing '}}' in \"{next}\""));
                    }
                    if next.starts_with('{') {
                        match split_nameval(payload) {
                            Ok((n, v)) => argv.push(format!("{n}={v}")),
                            Err(_) => argv.push(payload.to_string()),
                        }
                    } else {
                        argv.push(next.to_string());
                    }
                    i += 1;
                } else {
                    argv.push(unwrapped.to_string());
                }
                i += 1;
            }
            cf.services.push(Service {
                name: toks[0].to_string(),
                kind: toks[1].to_string(),
                private: toks[2].to_string(),
                unpriv: toks[3].to_string(),
                chroot: toks[4].to_string(),
                wakeup: toks[5].to_string(),
                maxproc: toks[6].to_string(),
                argv,
                line: l.first_line,
                last_line: l.last_line,
            });
        }
        cf.warnings = warnings;
        Ok(cf)
    }

    /// The last entry for `name`/`type` (the one master(8) uses).
    pub fn find(&self, name: &str, kind: &str) -> Option<&Service> {
        self.services.iter().rev().find(|s| s.name == name && s.kind == kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_and_overrides() {
        let cf = MasterCf::parse(
            "master.cf",
            b"smtp inet n - n - - smtpd\n  -o { smtpd_banner = hello there } -o smtpd_tls_wrappermode=yes\n# c\n  -osyslog_name=x\nrelay unix - - n - - smtp\n",
        )
        .unwrap();
        assert_eq!(cf.services.len(), 2);
        let s = &cf.services[0];
        assert_eq!(s.command(), "smtpd");
        assert_eq!(
            s.overrides(),
            vec![
                ("smtpd_banner".to_string(), "hello there".to_string()),
                ("smtpd_tls_wrappermode".to_string(), "yes".to_string()),
                ("syslog_name".to_string(), "x".to_string()),
            ]
        );
        assert_eq!(
            s.command_line(),
            "smtpd -o {smtpd_banner=hello there} -o smtpd_tls_wrappermode=yes -o syslog_name=x"
        );
    }

    #[test]
    fn errors_in_postfix_wording() {
        let e = MasterCf::parse("./master.cf", b"x unix - - n - -\n").unwrap_err();
        assert_eq!(e.to_string(), "file ./master.cf: line 1: bad field count");
        let e = MasterCf::parse("m", b"x bogus - - n - - smtp\n").unwrap_err();
        assert_eq!(e.to_string(), "invalid type field \"bogus\" in \"x bogus - - n - - smtp\"");
        let e = MasterCf::parse("m", b"x unix - - n 6x - smtp\n").unwrap_err();
        assert_eq!(e.to_string(), "invalid wakeup field \"6x\" in \"x unix - - n 6x - smtp\"");
    }
}
