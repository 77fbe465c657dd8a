//! postconf(1): print and edit Postfix configuration, as Postfix 3.7's
//! postconf does (same flags, output, warnings and exit codes).

mod edit;
mod master_edit;
pub mod print;

use super::Output;
use crate::config::postfix::{config_directory, MainCf, MasterCf, Params};
use crate::util::getopt::{getopt, GetoptError, Opt};
use edit::Edit;
use std::collections::BTreeMap;
use std::fmt::Write;

const SPEC: &str = "aAbc:C:deEfFhHlmMno:pPtT:vxX#";
const USAGE: &str = "usage: postconf [-a (server SASL types)] [-A (client SASL types)] [-b (bounce templates)] [-c config_dir] [-C param_class] [-d (defaults)] [-e (edit)] [-f (fold lines)] [-F (master.cf fields)] [-h (no names)] [-l (lock types)] [-m (map types)] [-M (master.cf)] [-n (non-default parameters)] [-o name=value (override parameter value)] [-p (main.cf, default)] [-P (master.cf parameters)] [-t (bounce templates)] [-T compile-version|run-version|public-key-algorithms] [-v] [-x (expand parameter values)] [-X (exclude)] [-# (comment-out)] [name...]";

/// The lookup table types mumail reads or will read (`postconf -m`).
const TABLE_TYPES: &[&str] = &[
    "btree",
    "cidr",
    "environ",
    "fail",
    "hash",
    "inline",
    "internal",
    "ldap",
    "lmdb",
    "memcache",
    "mysql",
    "nis",
    "pcre",
    "pipemap",
    "proxy",
    "randmap",
    "regexp",
    "socketmap",
    "static",
    "tcp",
    "texthash",
    "unionmap",
    "unix",
];

#[derive(Default)]
struct Flags {
    config_dir: Option<String>,
    defaults: bool,
    edit: bool,
    fold: bool,
    fields: bool,
    no_names: bool,
    names_only: bool,
    master: bool,
    non_default: bool,
    service_params: bool,
    expand: bool,
    remove: bool,
    comment: bool,
    overrides: Vec<String>,
    other: Option<char>,
    version_query: Option<String>,
}

struct Run {
    out: Output,
}

impl Run {
    fn warn(&mut self, msg: &str) {
        let _ = writeln!(self.out.stderr, "postconf: warning: {msg}");
    }
    fn fatal(mut self, msg: &str) -> Output {
        let _ = writeln!(self.out.stderr, "postconf: fatal: {msg}");
        self.out.status = 1;
        self.out
    }
    fn line(&mut self, s: &str) {
        self.out.stdout.push_str(s);
        self.out.stdout.push('\n');
    }
}

/// Runs postconf with `args` (without argv[0]).
pub fn run(args: &[String]) -> Output {
    let mut r = Run { out: Output::default() };
    let (opts, operands) = match getopt(args, SPEC) {
        Ok(v) => v,
        Err(GetoptError::Unknown(c)) => {
            let _ = writeln!(r.out.stderr, "postconf: invalid option -- '{c}'");
            return r.fatal(USAGE);
        }
        Err(GetoptError::MissingArg(c)) => {
            let _ = writeln!(r.out.stderr, "postconf: option requires an argument -- '{c}'");
            return r.fatal(USAGE);
        }
    };
    let mut f = Flags::default();
    for o in opts {
        match o {
            Opt::Arg('c', d) => f.config_dir = Some(d),
            Opt::Arg('o', v) => f.overrides.push(v),
            Opt::Arg('T', v) => f.version_query = Some(v),
            Opt::Arg('C', _) => {}
            Opt::Flag('d') => f.defaults = true,
            Opt::Flag('e') => f.edit = true,
            Opt::Flag('f') => f.fold = true,
            Opt::Flag('F') => f.fields = true,
            Opt::Flag('h') => f.no_names = true,
            Opt::Flag('H') => f.names_only = true,
            Opt::Flag('M') => f.master = true,
            Opt::Flag('n') => f.non_default = true,
            Opt::Flag('P') => f.service_params = true,
            Opt::Flag('x') => f.expand = true,
            Opt::Flag('X') => f.remove = true,
            Opt::Flag('#') => f.comment = true,
            Opt::Flag(c @ ('a' | 'A' | 'l' | 'm' | 'b' | 't')) => f.other = Some(c),
            Opt::Flag(_) => {}
            Opt::Arg(..) => {}
        }
    }
    match f.other {
        Some('a') => {
            r.line("cyrus");
            r.line("dovecot");
            return r.out;
        }
        Some('A') => {
            r.line("cyrus");
            return r.out;
        }
        Some('l') => {
            for t in ["flock", "fcntl", "dotlock"] {
                r.line(t);
            }
            return r.out;
        }
        Some('m') => {
            for t in TABLE_TYPES {
                r.line(t);
            }
            return r.out;
        }
        Some(c) => return r.fatal(&format!("-{c} is not supported by mumail's postconf")),
        None => {}
    }
    if let Some(q) = &f.version_query {
        match q.as_str() {
            "compile-version" | "run-version" => {
                r.line(concat!("rustls (mumail ", env!("CARGO_PKG_VERSION"), ")"));
                return r.out;
            }
            "public-key-algorithms" => return r.out,
            other => return r.fatal(&format!("invalid -T option: \"{other}\"")),
        }
    }
    let (dir, explicit) = config_directory(f.config_dir.as_deref());
    let master_mode = if f.master {
        Some('M')
    } else if f.service_params {
        Some('P')
    } else if f.fields {
        Some('F')
    } else {
        None
    };
    let wants_edit = f.edit || f.remove || f.comment || operands.iter().any(|a| a.contains('='));
    if let (Some(mode), true) = (master_mode, wants_edit) {
        return edit_master(r, &dir, mode, &f, &operands);
    }
    if f.edit || (master_mode.is_none() && operands.iter().any(|a| a.contains('='))) {
        return edit_main(r, &dir, &operands, Edit::Set(BTreeMap::new(), Vec::new()));
    }
    if f.remove || f.comment {
        let names: Vec<String> = operands.clone();
        let e = if f.remove { Edit::Remove(names) } else { Edit::Comment(names) };
        return edit_main(r, &dir, &operands, e);
    }

    // Reading modes.
    let mut p = match load(&mut r, &dir, explicit, f.defaults) {
        Ok(p) => p,
        Err(msg) => return r.fatal(&msg),
    };
    for o in &f.overrides {
        match crate::config::postfix::main_cf::split_nameval(o) {
            Ok((n, v)) => {
                p.overrides.insert(n.to_string(), v.to_string());
            }
            Err(e) => return r.fatal(&format!("{e}: \"{o}\"")),
        }
    }
    if !f.defaults {
        for (file, name) in p.undefined() {
            r.warn(&format!("{file}: undefined parameter: {name}"));
        }
        for (file, name, value) in p.unused() {
            r.warn(&format!("{file}: unused parameter: {name}={value}"));
        }
        for w in p.table_warnings() {
            r.warn(&w);
        }
    }
    if f.master || f.fields || f.service_params {
        show_master(&mut r, &p, &f, &operands);
        return r.out;
    }
    show_params(&mut r, &p, &f, &operands);
    r.out
}

fn load(r: &mut Run, dir: &str, explicit: bool, defaults: bool) -> Result<Params, String> {
    let mut p = Params {
        host: crate::config::postfix::host::HostFacts::probe(),
        defaults_only: defaults,
        ..Default::default()
    };
    if !defaults {
        let main = MainCf::load(&format!("{dir}/main.cf")).map_err(|e| e.to_string())?;
        for w in &main.warnings {
            r.warn(w);
        }
        p.main = main;
        if explicit {
            p.main.entries.insert(
                "config_directory".into(),
                crate::config::postfix::main_cf::Entry {
                    value: dir.to_string(),
                    line: 0,
                },
            );
        }
    }
    // master.cf defines service-defined parameter names; a missing one is
    // not an error for parameter queries.
    match MasterCf::load(&format!("{dir}/master.cf")) {
        Ok(m) => {
            for w in &m.warnings {
                r.warn(w);
            }
            p.master = m;
        }
        Err(crate::config::ConfigError::Io { .. }) => {}
        Err(e) => return Err(e.to_string()),
    }
    Ok(p)
}

fn show_params(r: &mut Run, p: &Params, f: &Flags, operands: &[String]) {
    let names: Vec<String> = if !operands.is_empty() {
        operands.to_vec()
    } else if f.non_default {
        let unused: Vec<String> = p.unused().into_iter().map(|(_, n, _)| n).collect();
        p.main.entries.keys().filter(|n| !unused.contains(n)).cloned().collect()
    } else {
        let mut all = p.default_names();
        if !f.defaults {
            let unused: Vec<String> = p.unused().into_iter().map(|(_, n, _)| n).collect();
            all.extend(p.main.entries.keys().filter(|n| !unused.contains(n)).cloned());
        }
        all.into_iter().collect()
    };
    let unused: Vec<String> = if f.defaults {
        Vec::new()
    } else {
        p.unused().into_iter().map(|(_, n, _)| n).collect()
    };
    for name in names {
        let value = if f.defaults {
            p.default_raw(&name)
        } else if f.non_default {
            p.overrides.get(&name).cloned().or_else(|| p.main.get(&name).map(String::from))
        } else {
            p.raw(&name)
        };
        let known = (p.is_known(&name) || (!f.defaults && p.main.get(&name).is_some())) && !unused.contains(&name);
        let Some(value) = value.filter(|_| known) else {
            if !f.non_default || !operands.is_empty() {
                r.warn(&format!("{name}: unknown parameter"));
            }
            continue;
        };
        let value = if f.expand {
            match p.expand(&value) {
                Ok((v, _)) => v,
                Err(e) => {
                    r.warn(&e.to_string());
                    value
                }
            }
        } else {
            value
        };
        let line = if f.names_only {
            name.clone()
        } else if f.no_names {
            print::value_line(&value, f.fold)
        } else {
            print::param_line(&name, &value, f.fold)
        };
        r.line(&line);
    }
}

fn show_master(r: &mut Run, p: &Params, f: &Flags, operands: &[String]) {
    let selected = |svc: &crate::config::postfix::Service, pat: &str| {
        let mut parts = pat.splitn(3, '/');
        let n = parts.next().unwrap_or("");
        let t = parts.next().unwrap_or("");
        (n.is_empty() || n == svc.name) && (t.is_empty() || t == svc.kind)
    };
    let patterns: Vec<String> = if operands.is_empty() {
        vec![String::new()]
    } else {
        operands.to_vec()
    };
    for pat in &patterns {
        let mut matched = false;
        for s in &p.master.services {
            if !selected(s, pat) {
                continue;
            }
            if f.master {
                matched = true;
                r.line(&print::master_entry(s, f.fold));
            } else if f.fields {
                let want = pat.splitn(3, '/').nth(2).unwrap_or("");
                let fields = s.fields();
                for (i, name) in crate::config::postfix::master_cf::FIELD_NAMES.iter().enumerate() {
                    if want.is_empty() || want == *name {
                        matched = true;
                        let v = if f.expand {
                            p.expand(&fields[i]).map(|x| x.0).unwrap_or_else(|_| fields[i].clone())
                        } else {
                            fields[i].clone()
                        };
                        r.line(&print::param_line(&format!("{}/{}/{}", s.name, s.kind, name), &v, f.fold));
                    }
                }
            } else {
                let want = pat.splitn(3, '/').nth(2).unwrap_or("");
                let mut ov: Vec<(String, String)> = s.overrides();
                ov.sort();
                for (n, v) in ov {
                    if want.is_empty() || want == n {
                        matched = true;
                        let v = if f.expand { p.expand(&v).map(|x| x.0).unwrap_or(v) } else { v };
                        r.line(&print::param_line(&format!("{}/{}/{}", s.name, s.kind, n), &v, f.fold));
                    }
                }
            }
        }
        if !matched && !pat.is_empty() {
            r.warn(&format!("unmatched request: \"{pat}\""));
        }
    }
}

fn edit_master(mut r: Run, dir: &str, mode: char, f: &Flags, operands: &[String]) -> Output {
    let ops = match master_edit::parse_ops(mode, f.remove, f.comment, operands) {
        Ok(o) => o,
        Err(e) => return r.fatal(&e),
    };
    let path = format!("{dir}/master.cf");
    let text = match std::fs::read(&path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => return r.fatal(&format!("open {path}: {}", crate::util::strerror(&e))),
    };
    let (new, warnings) = match master_edit::apply(&path, &text, &ops) {
        Ok(v) => v,
        Err(e) => return r.fatal(&e),
    };
    for w in warnings {
        r.warn(&w);
    }
    if new != text {
        if let Err(e) = crate::util::atomic::replace_file(std::path::Path::new(&path), new.as_bytes(), None) {
            return r.fatal(&format!("write {path}: {}", crate::util::strerror(&e)));
        }
    }
    r.out
}

fn edit_main(mut r: Run, dir: &str, operands: &[String], mut edit: Edit) -> Output {
    if let Edit::Set(map, order) = &mut edit {
        if operands.is_empty() {
            return r.fatal("-e requires name=value argument");
        }
        for o in operands {
            match crate::config::postfix::main_cf::split_nameval(o) {
                Ok((n, v)) => {
                    if map.insert(n.to_string(), v.to_string()).is_none() {
                        order.push(n.to_string());
                    }
                }
                Err(e) => return r.fatal(&format!("{e}: \"{o}\"")),
            }
        }
    } else if operands.is_empty() {
        return r.fatal("-X and -# require parameter names");
    }
    let path = format!("{dir}/main.cf");
    let text = match std::fs::read(&path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => return r.fatal(&format!("open {path}: {}", crate::util::strerror(&e))),
    };
    let (new, warnings) = edit::apply(&path, &text, &edit);
    for w in warnings {
        r.warn(&w);
    }
    if let Err(e) = crate::util::atomic::replace_file(std::path::Path::new(&path), new.as_bytes(), None) {
        return r.fatal(&format!("write {path}: {}", crate::util::strerror(&e)));
    }
    r.out
}
