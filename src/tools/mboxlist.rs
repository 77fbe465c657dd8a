//! `ctl_mboxlist` (dump and undump of the mailbox list), `cyr_deny`
//! (the user access list) and `mbexamine` (an index dump), with Cyrus's
//! flags and formats.

use super::store_admin::{default_config, prepare};
use super::Output;
use crate::store::userdeny::{self, Deny};
use crate::store::MailboxEntry;
use crate::util::getopt::{getopt, Opt};
use crate::util::json::{self, Json};

pub const CTL_MBOXLIST_USAGE: &str = "usage: ctl_mboxlist [-C <alt_config>] -d [-x] [-y] [-p partition] [-f filename]\n\
       [-x] dump mailboxes.db to stdout, or to filename if specified\n\
       ctl_mboxlist [-C <alt_config>] -u [-f filename]\n\
       [-f filename] undump mailboxes from stdin or filename\n\
       ctl_mboxlist [-C <alt_config>] -m [-a] [-w] [-i]\n\
       [-m] push mailboxes to the MUPDATE master\n";

/// The ACL's `id\trights\t` pairs.
fn acl_pairs(acl: &str) -> Vec<(&str, &str)> {
    let v: Vec<&str> = acl.split('\t').collect();
    v.chunks(2)
        .filter(|p| p.len() == 2 && !p[0].is_empty())
        .map(|p| (p[0], p[1]))
        .collect()
}

/// Cyrus 3.6's dump line of one entry.
fn dump_line(e: &MailboxEntry, created: i64) -> String {
    let q = json::quote;
    let acl: Vec<String> = acl_pairs(&e.acl).iter().map(|(k, v)| format!("{}: {}", q(k), q(v))).collect();
    let server = if e.server.is_empty() {
        String::new()
    } else {
        format!(", \"server\": {}", q(&e.server))
    };
    format!(
        "{}: {{\"name\": {}, \"mtime\": \"{created}\", \"uidvalidity\": \"{}\", \"createdmodseq\": \"1\", \"foldermodseq\": \"1\", \"mbtype\": {}, \"partition\": {}{server}, \"acl\": {{{}}}, \"uniqueid\": {}, \"name_history\": []}}",
        q(&e.name),
        q(&e.name),
        e.uidvalidity,
        q(&e.mbtype),
        q(&e.partition),
        acl.join(", "),
        q(&e.uniqueid)
    )
}

/// Entries of a dump: Cyrus 3.6's JSON object, or 3.4's lines
/// (`name TAB mbtype [server!]partition acl`).  Err names the line.
pub fn parse_dump(text: &str) -> Result<Vec<MailboxEntry>, String> {
    if text.trim_start().starts_with('{') {
        let v = json::parse(text)?;
        let Json::Object(m) = v else { return Err("not an object".into()) };
        let mut out = Vec::new();
        for (name, e) in m {
            let s = |k: &str| e.get(k).and_then(Json::as_str).unwrap_or("").to_string();
            let acl = match e.get("acl") {
                Some(Json::Object(a)) => a.iter().map(|(k, v)| format!("{k}\t{}\t", v.as_str().unwrap_or(""))).collect(),
                _ => String::new(),
            };
            let mbtype = s("mbtype");
            if mbtype.contains('d') {
                // A tombstone of a deleted name: nothing to create.
                continue;
            }
            out.push(MailboxEntry {
                name,
                uniqueid: s("uniqueid"),
                partition: s("partition"),
                acl,
                mbtype: if mbtype.is_empty() { "e".into() } else { mbtype },
                server: s("server"),
                uidvalidity: s("uidvalidity").parse().unwrap_or(0),
            });
        }
        return Ok(out);
    }
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let (name, rest) = line.split_once('\t').ok_or(format!("line {}: no tab after the name", i + 1))?;
        let mut f = rest.splitn(3, ' ');
        let (_ty, place, acl) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
        let (server, partition) = match place.split_once('!') {
            Some((s, p)) => (s.to_string(), p.to_string()),
            None => (String::new(), place.to_string()),
        };
        out.push(MailboxEntry {
            name: name.to_string(),
            uniqueid: String::new(),
            partition,
            acl: acl.to_string(),
            mbtype: "e".into(),
            server,
            uidvalidity: 0,
        });
    }
    Ok(out)
}

/// `ctl_mboxlist -d [-p partition] [-f file]` or `-u [-f file]`.
pub fn ctl_mboxlist(args: &[String], stdin: &mut dyn std::io::Read) -> Output {
    let mut out = Output::default();
    let Ok((opts, _)) = getopt(args, "C:duf:p:xyamwi") else {
        return Output::usage(CTL_MBOXLIST_USAGE);
    };
    let (mut config, mut dump, mut undump, mut file, mut part) = (default_config(), false, false, None::<String>, None::<String>);
    let (mut push, mut local_wins, mut dry, mut ask) = (false, false, false, false);
    for o in opts {
        match o {
            Opt::Arg('C', v) => config = v,
            Opt::Flag('d') => dump = true,
            Opt::Flag('u') => undump = true,
            Opt::Arg('f', v) => file = Some(v),
            Opt::Arg('p', v) => part = Some(v),
            Opt::Flag('m') => push = true,
            Opt::Flag('a') => local_wins = true,
            Opt::Flag('w') => dry = true,
            Opt::Flag('i') => ask = true,
            _ => {}
        }
    }
    if push {
        let (store, _) = match prepare("ctl_mboxlist", &config, &[], false, true) {
            Ok(v) => v,
            Err(o) => return o,
        };
        return mupdate_sync(&config, &store, local_wins, dry, ask, stdin);
    }
    if dump == undump {
        return Output::usage(CTL_MBOXLIST_USAGE);
    }
    let (store, _) = match prepare("ctl_mboxlist", &config, &[], false, true) {
        Ok(v) => v,
        Err(o) => return o,
    };
    if dump {
        let all = match store.dump() {
            Ok(a) => a,
            Err(e) => {
                out.stderr.push_str(&format!("ctl_mboxlist: {e}\n"));
                out.status = 1;
                return out;
            }
        };
        let lines: Vec<String> = all
            .iter()
            .filter(|(e, _)| part.as_ref().is_none_or(|p| *p == e.partition))
            .map(|(e, t)| dump_line(e, *t))
            .collect();
        let text = format!("{{\n{}\n}}\n", lines.join(",\n"));
        match file {
            Some(f) => {
                if let Err(e) = std::fs::write(&f, text) {
                    out.stderr.push_str(&format!("ctl_mboxlist: {f}: {e}\n"));
                    out.status = crate::util::exit::IOERR;
                }
            }
            None => out.stdout = text,
        }
        return out;
    }
    let mut text = String::new();
    let read = match &file {
        Some(f) => std::fs::read_to_string(f).map(|t| text = t),
        None => stdin.read_to_string(&mut text).map(|_| ()),
    };
    if let Err(e) = read {
        out.stderr
            .push_str(&format!("ctl_mboxlist: {}: {e}\n", file.as_deref().unwrap_or("stdin")));
        out.status = crate::util::exit::IOERR;
        return out;
    }
    let entries = match parse_dump(&text) {
        Ok(e) => e,
        Err(e) => {
            out.stderr
                .push_str(&format!("ctl_mboxlist: {}: {e}\n", file.as_deref().unwrap_or("stdin")));
            out.status = crate::util::exit::DATAERR;
            return out;
        }
    };
    for e in entries {
        if let Err(err) = store.undump(&e) {
            out.stderr.push_str(&format!("ctl_mboxlist: {}: {err}\n", e.name));
            out.status = 1;
        }
    }
    out
}

/// `ctl_mboxlist -m [-a] [-w] [-i]`: makes the MUPDATE master agree with
/// this back end, as Cyrus's does at start: entries the master has for
/// this server but the back end does not are removed; every local
/// mailbox the master lacks or has differently is activated, unless the
/// master places it on another server, in which case the local copy is
/// deleted (`-a`: activated anyway; `-i`: asked first).  `-w` only says
/// what would be done.
fn mupdate_sync(
    config: &str,
    store: &crate::store::Store,
    local_wins: bool,
    dry: bool,
    ask: bool,
    stdin: &mut dyn std::io::Read,
) -> Output {
    use crate::daemon::mupdate::client::{default_port, Client, Creds};
    let mut out = Output::default();
    let conf = match crate::config::cyrus::ImapdConf::load(config, Some("ctl_mboxlist")) {
        Ok(c) => {
            c.apply_umask();
            c
        }
        Err(e) => {
            out.stderr.push_str(&format!("fatal error: {e}\n"));
            out.status = crate::util::exit::CONFIG;
            return out;
        }
    };
    let Some(server) = conf
        .get("mupdate_server")
        .filter(|s| !s.is_empty() && *s != "(null)")
        .map(str::to_string)
    else {
        out.stderr.push_str("ctl_mboxlist: mupdate_server is not set\n");
        out.status = crate::util::exit::CONFIG;
        return out;
    };
    let servername = crate::daemon::cyrus::servername(&conf);
    let replicated = conf.get("mupdate_config") == Some("replicated");
    let loc = |part: &str| {
        if replicated {
            part.to_string()
        } else {
            format!("{servername}!{part}")
        }
    };
    let local: Vec<crate::store::MailboxEntry> = match store.list_prefix("") {
        Ok(l) => l.into_iter().filter(|e| !store.cfg.is_deleted(&e.name)).collect(),
        Err(e) => {
            out.stderr.push_str(&format!("ctl_mboxlist: {e}\n"));
            out.status = 1;
            return out;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            out.stderr.push_str(&format!("ctl_mboxlist: {e}\n"));
            out.status = crate::util::exit::OSERR;
            return out;
        }
    };
    let mut answers = String::new();
    if ask {
        let _ = stdin.read_to_string(&mut answers);
    }
    let mut answers = answers.lines().map(str::to_string).collect::<Vec<_>>().into_iter();
    let mut doomed: Vec<String> = Vec::new();
    let r: Result<(), String> = rt.block_on(async {
        let mut c = Client::login(&server, default_port(&conf), &Creds::from_conf(&conf))
            .await
            .map_err(|e| format!("couldn't connect to mupdate server: {e}"))?;
        let theirs: std::collections::BTreeMap<String, crate::store::murder::Entry> = if replicated {
            Default::default()
        } else {
            c.list(Some(&format!("{servername}!")))
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .collect()
        };
        let mine: std::collections::BTreeSet<&str> = local.iter().map(|e| e.name.as_str()).collect();
        for name in theirs.keys().filter(|n| !mine.contains(n.as_str())) {
            if dry {
                out.stdout.push_str(&format!("Remove from MUPDATE: {name}\n"));
            } else {
                c.delete(name).await.map_err(|e| format!("{name}: {e}"))?;
            }
        }
        for e in &local {
            let want = loc(&e.partition);
            if theirs
                .get(&e.name)
                .is_some_and(|t| t.state == crate::store::murder::State::Active && t.location == want && t.acl == e.acl)
            {
                continue;
            }
            let elsewhere = match c.find(&e.name).await.map_err(|x| x.to_string())? {
                Some(t) => crate::store::murder::server_of(&t.location) != crate::store::murder::server_of(&want),
                None => false,
            };
            if elsewhere && !local_wins && !replicated {
                if dry {
                    out.stdout.push_str(&format!("Remove Local Mailbox: {}\n", e.name));
                    continue;
                }
                if ask {
                    out.stdout
                        .push_str(&format!("{} is on another server; delete the local copy? (y/n) ", e.name));
                    if !answers.next().is_some_and(|a| a.trim().eq_ignore_ascii_case("y")) {
                        continue;
                    }
                }
                doomed.push(e.name.clone());
                continue;
            }
            if dry {
                out.stdout.push_str(&format!("Force Activate: {}\n", e.name));
            } else {
                c.activate(&e.name, &want, &e.acl).await.map_err(|x| format!("{}: {x}", e.name))?;
            }
        }
        c.logout().await;
        Ok(())
    });
    for name in doomed.iter().rev() {
        if let Err(e) = store.delete_local(name) {
            out.stderr.push_str(&format!("ctl_mboxlist: {name}: {e}\n"));
            out.status = 1;
        }
    }
    if let Err(e) = r {
        out.stderr.push_str(&format!("ctl_mboxlist: {e}\n"));
        out.status = if e.starts_with("couldn't connect") {
            crate::util::exit::TEMPFAIL
        } else {
            1
        };
    }
    out
}

pub const CYR_DENY_USAGE: &str = "Usage: cyr_deny [-C <altconfig>] [ -s services ] [ -m message ] user\n\
       cyr_deny [-C <altconfig>] -a user\n\
       cyr_deny [-C <altconfig>] -l\n";

/// `cyr_deny [-s services] [-m message] user`, `-a user`, `-l`.
pub fn cyr_deny(args: &[String]) -> Output {
    let mut out = Output::default();
    let Ok((opts, rest)) = getopt(args, "C:s:m:al") else {
        return Output::usage(CYR_DENY_USAGE);
    };
    let (mut config, mut services, mut message, mut allow, mut list) = (default_config(), "*".to_string(), None, false, false);
    for o in opts {
        match o {
            Opt::Arg('C', v) => config = v,
            Opt::Arg('s', v) => services = v,
            Opt::Arg('m', v) => message = Some(v),
            Opt::Flag('a') => allow = true,
            Opt::Flag('l') => list = true,
            _ => {}
        }
    }
    if (list && !rest.is_empty()) || (!list && rest.len() != 1) || (list && allow) {
        return Output::usage(CYR_DENY_USAGE);
    }
    let conf = match crate::config::cyrus::ImapdConf::load(&config, Some("cyr_deny")) {
        Ok(c) => {
            c.apply_umask();
            c
        }
        Err(e) => {
            out.stderr.push_str(&format!("fatal error: {e}\n"));
            out.status = crate::util::exit::CONFIG;
            return out;
        }
    };
    let path = userdeny::path(
        std::path::Path::new(conf.get("configdirectory").unwrap_or("/var/lib/imap")),
        conf.get("userdeny_db_path"),
    );
    let mut all = match userdeny::load(&path) {
        Ok(a) => a,
        Err(e) => {
            out.stderr.push_str(&format!("cyr_deny: failed to open deny db: {e}\n"));
            out.status = crate::util::exit::IOERR;
            return out;
        }
    };
    if list {
        out.stdout
            .push_str(&format!("{:<30} {:<20} {}\n", "Username", "Service(s)", "Message"));
        for d in &all {
            out.stdout.push_str(&format!("{:<30} {:<20} {}\n", d.user, d.services, d.message));
        }
        return out;
    }
    let user = rest[0].clone();
    all.retain(|d| d.user != user);
    if !allow {
        all.push(Deny {
            user,
            services,
            message: message.unwrap_or_else(|| userdeny::DEFAULT_MESSAGE.to_string()),
        });
    }
    if let Err(e) = userdeny::save(&path, &all) {
        out.stderr.push_str(&format!("cyr_deny: failed to write deny db: {e}\n"));
        out.status = crate::util::exit::IOERR;
    }
    out
}

pub const MBEXAMINE_USAGE: &str = "usage: mbexamine [-C <alt_config>] [-u uid | -s seq] [-q] mailbox...\n";

/// `mbexamine [-u uid] [-s seq] mailbox...`: the mailbox's header and
/// every index record, as Cyrus's index dump lays them out.
pub fn mbexamine(args: &[String]) -> Output {
    let mut out = Output::default();
    let Ok((opts, rest)) = getopt(args, "C:u:s:q") else {
        return Output::usage(MBEXAMINE_USAGE);
    };
    let (mut config, mut uid, mut seq) = (default_config(), None::<u32>, None::<usize>);
    for o in opts {
        match o {
            Opt::Arg('C', v) => config = v,
            Opt::Arg('u', v) => uid = v.parse().ok(),
            Opt::Arg('s', v) => seq = v.parse().ok(),
            _ => {}
        }
    }
    let (store, names) = match prepare("mbexamine", &config, &rest, false, false) {
        Ok(v) => v,
        Err(o) => return o,
    };
    for n in names {
        let (Ok(Some(e)), Ok(st), Ok(recs)) = (store.lookup(&n), store.state(&n), store.all_records(&n)) else {
            out.stderr.push_str(&format!("mbexamine: {n}: cannot open\n"));
            out.status = 1;
            continue;
        };
        let dir = store
            .mailbox_dir(&n, &e.partition)
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        let kw = if st.keywords.is_empty() {
            "[none]".to_string()
        } else {
            st.keywords.join(" ")
        };
        let o = &mut out.stdout;
        o.push_str(&format!(
            "Examining {n}... Mailbox Header Info:\n  Path to mailbox: {dir}\n  Mailbox ACL: {}\n  Unique ID: {}\n  User Flags: {kw}\n\n",
            e.acl, e.uniqueid
        ));
        let live: Vec<_> = recs.iter().filter(|r| !r.expunged()).collect();
        let count = |bit: u32| live.iter().filter(|r| r.flags & bit != 0).count();
        o.push_str(&format!(
            " Index Header Info:\n  Number of Messages: {}  Mailbox Size: {} bytes\n  UIDValidity: {}  Last UID: {}\n  Deleted: {}  Answered: {}  Flagged: {}\n  Highest Mod Sequence: {}\n\n Message Info:\n",
            st.exists,
            st.size,
            st.uidvalidity,
            st.uidnext.saturating_sub(1),
            count(crate::store::FLAG_DELETED),
            count(crate::store::FLAG_ANSWERED),
            count(crate::store::FLAG_FLAGGED),
            st.highestmodseq
        ));
        for (i, r) in recs.iter().enumerate() {
            if uid.is_some_and(|u| u != r.uid) || seq.is_some_and(|s| s != i + 1) {
                continue;
            }
            let guid: String = r.guid.iter().map(|b| format!("{b:02x}")).collect();
            let internal = if r.flags & crate::store::FLAG_UNLINKED != 0 {
                "EXPUNGED UNLINKED"
            } else if r.expunged() {
                "EXPUNGED"
            } else {
                ""
            };
            o.push_str(&format!(
                "{:06}> UID:{:08}   INT_DATE:{} SAVEDATE:{} SIZE:{:<6}\n      > HDRSIZE:{:<6} SYSFLAGS:{:08X} GUID:{guid} MODSEQ:{}\n      > INTERNALFLAGS:{internal}\n      > USERFLAGS: {}\n",
                i + 1,
                r.uid,
                r.internaldate,
                r.savedate,
                r.size,
                r.header_size,
                r.flags & 0xFFFF,
                r.modseq,
                r.keywords
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dumps_parse_back() {
        let e = MailboxEntry {
            name: "user.fred.Sent".into(),
            uniqueid: "abc".into(),
            partition: "default".into(),
            acl: "fred\tlrswipkxtecdan\tanyone\tlrs\t".into(),
            mbtype: "e".into(),
            server: String::new(),
            uidvalidity: 1796120174,
        };
        let text = format!("{{\n{}\n}}\n", dump_line(&e, 5));
        assert_eq!(parse_dump(&text).unwrap(), vec![e.clone()]);
        let old = parse_dump("user.fred.Sent\t0 default fred\tlrswipkxtecdan\tanyone\tlrs\t\n").unwrap();
        assert_eq!(old[0].acl, e.acl);
        assert_eq!(old[0].partition, "default");
        assert!(parse_dump("{\"x\": ").is_err());
    }
}
