//! cyr_info(8): show Cyrus configuration (`conf`, `conf-all`,
//! `conf-default`, `conf-lint`, `services`, `version`) as Cyrus 3.6 does.
//!
//! Known options print in the imapoptions table order.  Overflow keys print
//! after them in file order (Cyrus prints them in the order of an internal
//! hash table; the compat tests compare that part as a set).

use super::Output;
use crate::config::cyrus::options::{options, parse_duration, Kind};
use crate::config::cyrus::{CyrusConf, ImapdConf};
use crate::util::getopt::{getopt, Opt};
use std::fmt::Write;

const USAGE: &str = "cyr_info [-C <altconfig>] [-M <cyrus.conf>] [-n servicename] [-s oldversion] command\n\nIf you give a service name (-n), it will show config as if you\nwere running that service, i.e. imap\n\nIf you give an old version (-s), it will highlight config\noptions that are new or whose behaviour has changed since that\nversion.\n\nWhere command is one of:\n\n  * conf          - listing of non-default config values\n  * conf-all      - listing of all config values\n  * conf-default  - listing of all default config values\n  * conf-lint     - unknown config keys\n  * proc          - listing of all open processes\n  * services      - listing of cyrus.conf services\n  * version       - Cyrus version\n";

/// Overflow keys Cyrus (and its SASL layer) consume without an option entry.
const OVERFLOW_PREFIXES: &[&str] = &[
    "sasl_",
    "partition-",
    "metapartition-",
    "archivepartition-",
    "searchpartition-",
    "backuppartition-",
];

fn same(kind: Kind, a: &str, b: &str) -> bool {
    match kind {
        Kind::Duration => a == b || parse_duration(a, 's') == parse_duration(b, 's'),
        _ => a == b,
    }
}

/// `name: value`; a bitfield prints `name:` then ` bit` per bit set, in
/// the table's bit order.
fn option_line(def: &crate::config::cyrus::options::OptionDef, v: &str) -> String {
    if def.kind != Kind::Bitfield {
        return format!("{}: {v}", def.name);
    }
    let set: Vec<&str> = v.split_whitespace().collect();
    let bits: Vec<&str> = if def.allowed.is_empty() || set.iter().any(|b| !def.allowed.contains(b)) {
        set.clone()
    } else {
        def.allowed.iter().copied().filter(|b| set.contains(b)).collect()
    };
    let mut s = format!("{}:", def.name);
    for b in bits {
        s.push(' ');
        s.push_str(b);
    }
    s
}

pub fn run(args: &[String]) -> Output {
    let mut out = Output::default();
    let usage = |mut out: Output| {
        out.stderr.push_str(USAGE);
        out.status = crate::util::exit::USAGE;
        out
    };
    let Ok((opts, rest)) = getopt(args, "C:M:n:s:") else {
        return usage(out);
    };
    let mut conf_path = std::env::var("CYRUS_PREFIX")
        .map(|p| format!("{p}/etc/imapd.conf"))
        .unwrap_or_else(|_| "/etc/imapd.conf".into());
    let mut master_path = "/etc/cyrus.conf".to_string();
    let mut ident: Option<String> = None;
    for o in opts {
        match o {
            Opt::Arg('C', p) => conf_path = p,
            Opt::Arg('M', p) => master_path = p,
            Opt::Arg('n', n) => ident = Some(n),
            _ => {}
        }
    }
    let Some(cmd) = rest.first() else {
        return usage(out);
    };
    if cmd == "version" {
        let _ = writeln!(out.stdout, "cyrus-imapd 3.6.1-mumail-{}", env!("CARGO_PKG_VERSION"));
        return out;
    }
    let fatal = |mut out: Output, e: &dyn std::fmt::Display| {
        let _ = writeln!(out.stderr, "fatal error: {e}");
        out.status = crate::util::exit::CONFIG;
        out
    };
    let conf = match ImapdConf::load(&conf_path, ident.as_deref()) {
        Ok(c) => c,
        Err(e) => return fatal(out, &e),
    };
    let opts = options();
    match cmd.as_str() {
        "conf" | "conf-all" | "conf-default" => {
            for def in &opts.list {
                let unset_null = cmd == "conf-all" && def.null_default && !conf.is_set(def.name);
                let v = if cmd == "conf-default" {
                    def.default
                } else if unset_null {
                    "(null)"
                } else {
                    conf.get(def.name).unwrap_or(def.default)
                };
                // conf-all shows string values as the daemons see them,
                // with {configdirectory} expanded.
                let expanded;
                let v = if cmd == "conf-all" && v.contains("{configdirectory}") {
                    expanded = v.replace("{configdirectory}", conf.get("configdirectory").unwrap_or(""));
                    expanded.as_str()
                } else {
                    v
                };
                if cmd == "conf" && same(def.kind, v, def.default) {
                    continue;
                }
                let _ = writeln!(out.stdout, "{}", option_line(def, v));
            }
            if cmd != "conf-default" {
                for (k, v) in &conf.overflow {
                    let _ = writeln!(out.stdout, "{k}: {v}");
                }
            }
        }
        "conf-lint" => {
            let services: Vec<String> = CyrusConf::load(&master_path)
                .map(|c| c.services.iter().map(|e| e.name.clone()).collect())
                .unwrap_or_default();
            for (k, v) in &conf.overflow {
                if OVERFLOW_PREFIXES.iter().any(|p| k.starts_with(p)) {
                    continue;
                }
                let service_option = services
                    .iter()
                    .any(|s| k.strip_prefix(&format!("{s}_")).is_some_and(|rest| opts.get(rest).is_some()));
                if !service_option {
                    let _ = writeln!(out.stdout, "{k}: {v}");
                }
            }
        }
        "services" => match CyrusConf::load(&master_path).and_then(|c| c.service_entries()) {
            Ok(list) => {
                for s in list {
                    let listen = match &s.listen {
                        crate::config::cyrus::cyrus_conf::Listen::Path(p) => p.clone(),
                        crate::config::cyrus::cyrus_conf::Listen::Inet { host: Some(h), port } if h.contains(':') => {
                            format!("[{h}]:{port}")
                        }
                        crate::config::cyrus::cyrus_conf::Listen::Inet { host: Some(h), port } => format!("{h}:{port}"),
                        crate::config::cyrus::cyrus_conf::Listen::Inet { host: None, port } => port.clone(),
                    };
                    let _ = writeln!(
                        out.stdout,
                        "{} cmd=\"{}\" listen=\"{listen}\" proto=\"{}\" prefork={} maxchild={}",
                        s.name,
                        s.argv.join(" "),
                        s.proto,
                        s.prefork,
                        s.maxchild
                    );
                }
            }
            Err(e) => return fatal(out, &e),
        },
        "proc" => {}
        _ => return usage(out),
    }
    out
}
