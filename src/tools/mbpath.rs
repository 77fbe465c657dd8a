//! `mbpath` and `cyr_df`: where the store keeps a mailbox, and how full
//! its partitions are, printed as Cyrus 3.6's tools print them (for the
//! `mailbox_legacy_dirs` layout, which is the one this store keeps).

use super::store_admin::default_config;
use super::Output;
use crate::config::cyrus::ImapdConf;
use crate::store::names;
use crate::store::{Store, StoreConfig};
use crate::util::getopt::{getopt, Opt};
use std::path::{Path, PathBuf};

pub const MBPATH_USAGE: &str = "usage: mbpath [-C <alt_config>] [-l] [-m] [-q] [-s] [-u|p] [-a|A|D|M|S|U] <mailbox name>...\n\n\
\t-j\tprint all values as a JSON object\n\
\t-a\tprint all values with prefixes\n\
\t-l\tlocal only (exit with error for remote/nonexistent)\n\
\t-m\toutput the path to the metadata files (if different from the message files)\n\
\t-q\tquietly drop any error messages\n\
\t-s\tstop on error\n\
\t-7\tmailbox arguments are in modified UTF7 rather than UTF8\n\
\t-u\targuments are user, not mailbox\n\
\t-p\targuments are UNIX path, not mailbox\n\
\t-A\tpartition archive directory\n\
\t-D\tpartition data directory (*default*)\n\
\t-M\tpartition metadata file directory (duplicate of -m)\n\
\t-S\tsieve directory for the user\n\
\t-U\tuser files directory (seen, sub, etc)\n";

fn open(config: &str) -> Result<(Store, ImapdConf), String> {
    let conf = ImapdConf::load(config, Some("mbpath")).map_err(|e| e.to_string())?;
    let sc = StoreConfig::from_imapd(&conf)?;
    Ok((Store::open(sc).map_err(|e| e.to_string())?, conf))
}

/// What one mailbox's paths are.
struct Paths {
    data: PathBuf,
    /// The owner's sieve directory and user files directory.
    sieve: PathBuf,
    user: PathBuf,
    /// (userid, localpart, domain) for a user's mailbox.
    owner: Option<(String, String, String)>,
}

fn paths_of(store: &Store, sievedir: &Path, internal: &str, partition: &str) -> Result<Paths, String> {
    let data = store.mailbox_dir(internal, partition).map_err(|e| e.to_string())?;
    let (user, domain, is_user) = names::owner_of(internal);
    let cfg = &store.cfg;
    let hash = |s: &str| names::dir_hash(s, cfg.fulldirhash).to_string();
    let sieve = names::sieve_dir(sievedir, internal, cfg.fulldirhash);
    let mut udir = cfg.configdir.clone();
    if !domain.is_empty() {
        udir.push("domain");
        udir.push(hash(&domain));
        udir.push(&domain);
    }
    if is_user {
        udir.push("user");
        udir.push(hash(&user));
    }
    let owner = is_user.then(|| {
        let local = user.replace('^', ".");
        let id = if domain.is_empty() {
            local.clone()
        } else {
            format!("{local}@{domain}")
        };
        (id, local, domain.clone())
    });
    Ok(Paths {
        data,
        sieve,
        user: udir,
        owner,
    })
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// Cyrus's `-j` object (keys sorted, two-space indent).
fn json(internal: &str, p: &Paths) -> String {
    let d = p.data.display().to_string();
    let bare = internal.split_once('!').map_or(internal, |(_, r)| r);
    let boxes: Vec<String> = match &p.owner {
        Some(_) => bare
            .splitn(3, '.')
            .nth(2)
            .map(|r| r.split('.').map(String::from).collect())
            .unwrap_or_default(),
        None => bare.split('.').map(String::from).collect(),
    };
    let mut o = String::from("{\n");
    o.push_str(&format!(
        "  \"archive\": {},\n  \"data\": {},\n  \"mbname\": {{\n",
        json_str(&d),
        json_str(&d)
    ));
    if boxes.is_empty() {
        o.push_str("    \"boxes\": [],\n");
    } else {
        let list: Vec<String> = boxes
            .iter()
            .map(|b| format!("      {}", json_str(&names::mutf7_to_utf8(b).unwrap_or_else(|| b.clone()))))
            .collect();
        o.push_str(&format!("    \"boxes\": [\n{}\n    ],\n", list.join(",\n")));
    }
    let mut fields = Vec::new();
    if let Some((id, local, domain)) = &p.owner {
        if !domain.is_empty() {
            fields.push(format!("    \"domain\": {}", json_str(domain)));
        }
        fields.push(format!("    \"intname\": {}", json_str(internal)));
        fields.push(format!("    \"localpart\": {}", json_str(local)));
        fields.push(format!("    \"userid\": {}", json_str(id)));
    } else {
        fields.push(format!("    \"intname\": {}", json_str(internal)));
    }
    o.push_str(&fields.join(",\n"));
    o.push_str(&format!("\n  }},\n  \"meta\": {}", json_str(&d)));
    if let Some((_, local, _)) = &p.owner {
        let file = |ext: &str| json_str(&p.user.join(format!("{local}.{ext}")).display().to_string());
        o.push_str(",\n  \"user\": {\n");
        o.push_str(&format!("    \"conversations\": {},\n", file("conversations")));
        o.push_str(&format!("    \"counters\": {},\n", file("counters")));
        o.push_str(&format!("    \"dav\": {},\n", file("dav")));
        o.push_str(&format!("    \"seen\": {},\n", file("seen")));
        o.push_str(&format!("    \"sieve\": {},\n", json_str(&p.sieve.display().to_string())));
        o.push_str(&format!("    \"sub\": {},\n", file("sub")));
        o.push_str(&format!(
            "    \"xapianactive\": {}\n  }},\n  \"xapian\": {{}}",
            file("xapianactive")
        ));
    }
    o.push_str("\n}\n");
    o
}

/// `mbpath [-C conf] [-l] [-m] [-q] [-s] [-7] [-u|-p] [-a|-j|-A|-D|-M|-S|-U] name...`:
/// each mailbox's directory (names as an admin gives them: `user/fred`
/// with `unixhierarchysep`, else `user.fred`).  An unknown one is
/// "Invalid mailbox name: '...'" on stderr; the exit status is the last
/// name's (65, EX_DATAERR, for a bad one); `-s` stops at the first.
pub fn mbpath(args: &[String]) -> Output {
    let mut out = Output::default();
    let Ok((opts, rest)) = getopt(args, "C:lmqs7upajADMSU") else {
        return Output::usage(MBPATH_USAGE);
    };
    let mut config = default_config();
    let (mut quiet, mut stop, mut mutf7, mut users, mut by_path) = (false, false, false, false, false);
    let mut what = 'D';
    for o in opts {
        match o {
            Opt::Arg('C', v) => config = v,
            Opt::Flag('q') => quiet = true,
            Opt::Flag('s') => stop = true,
            Opt::Flag('7') => mutf7 = true,
            Opt::Flag('u') => users = true,
            Opt::Flag('p') => by_path = true,
            Opt::Flag('m') => what = 'M',
            Opt::Flag(c @ ('a' | 'j' | 'A' | 'D' | 'M' | 'S' | 'U')) => what = c,
            _ => {}
        }
    }
    let (store, conf) = match open(&config) {
        Ok(s) => s,
        Err(e) => {
            out.stderr.push_str(&format!("fatal error: {e}\n"));
            out.status = crate::util::exit::CONFIG;
            return out;
        }
    };
    let sievedir = PathBuf::from(conf.path_option("sievedir").unwrap_or_else(|| "/usr/sieve".into()));
    let all = match store.list_prefix("") {
        Ok(a) => a,
        Err(e) => {
            out.stderr.push_str(&format!("fatal error: {e}\n"));
            out.status = crate::util::exit::IOERR;
            return out;
        }
    };
    let sep = if store.cfg.unixhierarchysep { '/' } else { '.' };
    for a in &rest {
        // The argument as an admin names it, then the internal name.
        let (ext, shown) = if users {
            let ext = format!("user{sep}{a}");
            (ext.clone(), format!("'{a}' ('{ext}')\n"))
        } else {
            (a.clone(), format!("'{a}'"))
        };
        let found = if by_path {
            all.iter()
                .find(|e| store.mailbox_dir(&e.name, &e.partition).is_ok_and(|d| d == Path::new(a)))
        } else {
            let ext = if mutf7 { ext.clone() } else { names::utf8_to_mutf7(&ext) };
            let split = ext
                .rsplit_once('@')
                .filter(|_| store.cfg.virtdomains)
                .map(|(r, d)| (format!("{d}!"), r.to_string()));
            let (dom, rest) = split.unwrap_or_else(|| (String::new(), ext.clone()));
            let internal = if sep == '/' {
                rest.replace('.', "^").replace('/', ".")
            } else {
                rest
            };
            let internal = format!("{dom}{internal}");
            all.iter().find(|e| e.name == internal)
        };
        let Some(e) = found else {
            if !quiet {
                out.stderr.push_str(&format!("Invalid mailbox name: {shown}\n"));
            }
            out.status = crate::util::exit::DATAERR;
            if stop {
                out.stderr.push_str("fatal error: Error in processing mailbox. Stopping\n\n");
                return out;
            }
            continue;
        };
        out.status = 0;
        let p = match paths_of(&store, &sievedir, &e.name, &e.partition) {
            Ok(p) => p,
            Err(err) => {
                if !quiet {
                    out.stderr.push_str(&format!("{}: {err}\n", e.name));
                }
                out.status = crate::util::exit::IOERR;
                continue;
            }
        };
        let d = p.data.display();
        match what {
            'a' => out.stdout.push_str(&format!(
                "Archive: {d}\nData: {d}\nMeta: {d}\nSieve: {}\nUser: {}\n",
                p.sieve.display(),
                p.user.display()
            )),
            'j' => out.stdout.push_str(&json(&e.name, &p)),
            'S' => out.stdout.push_str(&format!("{}\n", p.sieve.display())),
            'U' => out.stdout.push_str(&format!("{}\n", p.user.display())),
            _ => out.stdout.push_str(&format!("{d}\n")),
        }
    }
    out
}

pub const CYR_DF_USAGE: &str = "usage: cyr_df [-C <alt_config>] [-m]\n";

/// `cyr_df [-C conf] [-m]`: each partition's size, use and room in KB, as
/// Cyrus's cyr_df prints them (`-m`: the metadata partitions).
pub fn cyr_df(args: &[String]) -> Output {
    let mut out = Output::default();
    let Ok((opts, rest)) = getopt(args, "C:m") else {
        return Output::usage(CYR_DF_USAGE);
    };
    if !rest.is_empty() {
        return Output::usage(CYR_DF_USAGE);
    }
    let mut config = default_config();
    let mut meta = false;
    for o in opts {
        match o {
            Opt::Arg('C', v) => config = v,
            Opt::Flag('m') => meta = true,
            _ => {}
        }
    }
    let conf = match ImapdConf::load(&config, Some("cyr_df")) {
        Ok(c) => c,
        Err(e) => {
            out.stderr.push_str(&format!("fatal error: {e}\n"));
            out.status = crate::util::exit::CONFIG;
            return out;
        }
    };
    let prefix = if meta { "metapartition-" } else { "partition-" };
    let parts: Vec<(String, String)> = conf
        .overflow
        .iter()
        .filter_map(|(k, v)| k.strip_prefix(prefix).map(|n| (n.to_string(), v.clone())))
        .collect();
    out.stdout.push_str(&format!(
        "{:<12} {:>12} {:>12} {:>12} {:>4} {}\n",
        "Partition", "1k-blocks", "Used", "Available", "Use%", "Location"
    ));
    for (name, path) in parts {
        match nix::sys::statvfs::statvfs(path.as_str()) {
            Ok(s) => {
                let k = s.fragment_size();
                let blocks = s.blocks() * k / 1024;
                let used = (s.blocks() - s.blocks_free()) * k / 1024;
                let avail = s.blocks_available() * k / 1024;
                let pct = (used * 100).checked_div(used + avail).unwrap_or(0);
                out.stdout
                    .push_str(&format!("{name:<12} {blocks:>12} {used:>12} {avail:>12} {pct:>3}% {path}\n"));
            }
            Err(e) => {
                out.stderr.push_str(&format!("cyr_df: {path}: {}\n", e.desc()));
                out.status = crate::util::exit::IOERR;
            }
        }
    }
    out
}
