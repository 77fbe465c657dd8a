//! `reconstruct` and `quota`: the Cyrus administration commands over the
//! mumail store, with Cyrus's flags.

use super::Output;
use crate::config::cyrus::ImapdConf;
use crate::store::{Cached, Store, StoreConfig};
use crate::util::getopt::{getopt, Opt};

fn open(config: &str) -> Result<Store, String> {
    let conf = ImapdConf::load(config, Some("reconstruct")).map_err(|e| e.to_string())?;
    conf.apply_umask();
    let sc = StoreConfig::from_imapd(&conf)?;
    Store::open(sc).map_err(|e| e.to_string())
}

pub(super) fn default_config() -> String {
    std::env::var("CYRUS_PREFIX")
        .map(|p| format!("{p}/etc/imapd.conf"))
        .unwrap_or_else(|_| "/etc/imapd.conf".into())
}

pub(super) fn cache_of(data: &[u8]) -> Cached {
    let (e, b, s) = crate::proto::imap::render::cache_items(data);
    Cached {
        envelope: e,
        bodystructure: b,
        body: s,
    }
}

/// Internal names from arguments (`user.fred`, `user/fred`, or with -u a
/// user id), with their children when `recursive`.
fn targets(store: &Store, args: &[String], users: bool, recursive: bool) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let all = store.list_prefix("").map_err(|e| e.to_string())?;
    if args.is_empty() {
        return Ok(all.into_iter().map(|e| e.name).collect());
    }
    for a in args {
        let name = if users {
            crate::store::names::user_inbox(a, store.cfg.unixhierarchysep, store.cfg.virtdomains, &store.cfg.defaultdomain)
                .map_err(|_| format!("{a}: invalid user"))?
        } else if all.iter().any(|e| e.name == *a) {
            // An internal name given as is.
            a.clone()
        } else if store.cfg.unixhierarchysep {
            a.replace('.', "^").replace('/', ".")
        } else {
            a.clone()
        };
        for e in &all {
            let child = e.name.len() > name.len() && e.name.starts_with(&name) && e.name.as_bytes()[name.len()] == b'.';
            if e.name == name || ((recursive || users) && child) {
                out.push(e.name.clone());
            }
        }
    }
    Ok(out)
}

/// Opens the store and resolves the arguments, or the Output to return.
pub(super) fn prepare(prog: &str, config: &str, args: &[String], users: bool, recursive: bool) -> Result<(Store, Vec<String>), Output> {
    let mut out = Output::default();
    let store = match open(config) {
        Ok(s) => s,
        Err(e) => {
            out.stderr.push_str(&format!("fatal error: {e}\n"));
            out.status = crate::util::exit::CONFIG;
            return Err(out);
        }
    };
    match targets(&store, args, users, recursive) {
        Ok(n) => Ok((store, n)),
        Err(e) => {
            out.stderr.push_str(&format!("{prog}: {e}\n"));
            out.status = 1;
            Err(out)
        }
    }
}

pub const RECONSTRUCT_USAGE: &str = "usage: reconstruct [-C <alt_config>] [-p partition] [-n] [-q] [-r] [-u] mailbox...\n";

/// `reconstruct [-C conf] [-n] [-q] [-r] [-u] [mailbox...]`: makes each
/// mailbox's index agree with its files.  Exit 0; 1 when a mailbox failed.
pub fn reconstruct(args: &[String]) -> Output {
    let mut out = Output::default();
    let Ok((opts, rest)) = getopt(args, "C:p:nqruxfsGRoOMV:UP") else {
        return Output::usage(RECONSTRUCT_USAGE);
    };
    let (mut config, mut dry, mut quiet, mut rec, mut users) = (default_config(), false, false, false, false);
    for o in opts {
        match o {
            Opt::Arg('C', v) => config = v,
            Opt::Flag('n') => dry = true,
            Opt::Flag('q') => quiet = true,
            Opt::Flag('r') => rec = true,
            Opt::Flag('u') => users = true,
            _ => {}
        }
    }
    let (store, names) = match prepare("reconstruct", &config, &rest, users, rec) {
        Ok(v) => v,
        Err(o) => return o,
    };
    for n in names {
        match store.reconstruct(&n, dry, &cache_of) {
            Ok(repairs) => {
                if !quiet {
                    out.stdout.push_str(&format!("{n}\n"));
                }
                for r in repairs {
                    out.stdout.push_str(&format!("{n}: {r}\n"));
                }
            }
            Err(e) => {
                out.stderr.push_str(&format!("reconstruct: {n}: {e}\n"));
                out.status = 1;
            }
        }
    }
    out
}

pub const QUOTA_USAGE: &str = "usage: quota [-C <alt_config>] [-d <domain>] [-f] [-n] [-q] [-u] [prefix]...\n";

/// `quota [-C conf] [-f] [-n] [-q] [-u] [prefix...]`: lists quota roots
/// (`-f` recomputes their usage from the index and reports fixes).
pub fn quota(args: &[String]) -> Output {
    let mut out = Output::default();
    let Ok((opts, rest)) = getopt(args, "C:d:fnqu") else {
        return Output::usage(QUOTA_USAGE);
    };
    let (mut config, mut fix, mut quiet, mut users) = (default_config(), false, false, false);
    for o in opts {
        match o {
            Opt::Arg('C', v) => config = v,
            Opt::Flag('f') => fix = true,
            Opt::Flag('q') => quiet = true,
            Opt::Flag('u') => users = true,
            _ => {}
        }
    }
    let (store, names) = match prepare("quota", &config, &rest, users, true) {
        Ok(v) => v,
        Err(o) => return o,
    };
    let mut roots: Vec<crate::store::Quota> = Vec::new();
    let mut seen_db = std::collections::HashSet::new();
    for n in &names {
        if fix && seen_db.insert(store.owner_db_path(n)) {
            match store.quota_fix(n) {
                Ok(fixed) => {
                    if !quiet {
                        for (root, ob, nb, oc, nc) in fixed {
                            if ob != nb {
                                out.stdout.push_str(&format!("{root}: quota root usage was {ob}, now {nb}\n"));
                            }
                            if oc != nc {
                                out.stdout
                                    .push_str(&format!("{root}: quota root message count was {oc}, now {nc}\n"));
                            }
                        }
                    }
                }
                Err(e) => {
                    out.stderr.push_str(&format!("quota: {n}: {e}\n"));
                    out.status = 1;
                }
            }
        }
        if let Ok(Some(q)) = store.quota_report(n) {
            roots.push(q);
        }
    }
    // Cyrus 3.x's report: every resource of every root, usage in KB for
    // the storage ones.
    out.stdout.push_str("   Quota   % Used     Used             Resource Root\n");
    for q in roots {
        let res = [
            ("STORAGE", q.storage_limit, q.storage_used / 1024),
            ("MESSAGE", q.message_limit, q.message_used),
            ("X-ANNOTATION-STORAGE", q.annot_limit, q.annot_used / 1024),
            ("X-NUM-FOLDERS", q.folders_limit, q.folders_used),
        ];
        for (name, limit, used) in res {
            let head = match limit {
                l if l > 0 => format!(" {l:7} {:8}", used * 100 / l),
                0 => "       0         ".to_string(),
                _ => " ".repeat(17),
            };
            out.stdout.push_str(&format!("{head} {used:8} {name:>20} {}\n", q.root));
        }
    }
    out
}
