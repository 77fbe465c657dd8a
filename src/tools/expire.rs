//! `cyr_expire`, `ipurge` and `unexpunge` over the mumail store, with
//! Cyrus's flags and output.

use super::store_admin::{cache_of, default_config, prepare};
use super::Output;
use crate::store::{Record, FLAG_DELETED, FLAG_FLAGGED};
use crate::util::getopt::{getopt, Opt};

use crate::util::unix_now as now;

/// cyr_expire's durations: a number (fractions allowed) of days, or with
/// a `d`, `h`, `m` or `s` suffix.  Seconds.
pub fn duration(v: &str) -> Option<f64> {
    let (num, unit) = match v.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&v[..i], c),
        _ => (v, 'd'),
    };
    let n: f64 = num.parse().ok().filter(|n: &f64| n.is_finite() && *n >= 0.0)?;
    Some(
        n * match unit {
            'd' => 86400.0,
            'h' => 3600.0,
            'm' => 60.0,
            's' => 1.0,
            _ => return None,
        },
    )
}

pub const CYR_EXPIRE_USAGE: &str = "Usage: cyr_expire [OPTIONS] {mailbox|users}\n\
Expire messages and duplicate delivery database entries.\n\n\
-a                       skip annotation lookup\n\
-c                       do not expire conversations\n\
-h                       print this help and exit\n\
-p <mailbox-prefix>      specify prefix for mailboxes\n\
-t                       remove user flags which are not used\n\
-u <user-id>             specify user id for mailbox lookup\n\
-v                       enable verbose output\n\
-x                       do not expunge messages\n\
-C <config-file>         use <config-file> instead of config from imapd.conf\n\
-A <archive-duration>    \n\
-D <delete-duration>     \n\
-E <expire-duration>     \n\
-X <expunge-duration>    \n";

/// `cyr_expire -C conf [-E d] [-X d] [-D d] [-p prefix] [-u user] [-v] [-x] [-a]`.
/// Messages older than a mailbox's `expire` annotation are expunged
/// (flagged ones kept); `-X` removes the files of messages expunged
/// before the cutoff, `-D` deleted mailboxes, `-E` duplicate records.
/// Verbose lines go to stderr as Cyrus's do.
pub fn cyr_expire(args: &[String]) -> Output {
    let mut out = Output::default();
    let usage = |out: &mut Output, msg: &str| {
        out.stderr.push_str(msg);
        out.stderr.push_str(CYR_EXPIRE_USAGE);
        out.status = crate::util::exit::USAGE;
    };
    let Ok((opts, _rest)) = getopt(args, "C:A:D:E:X:p:u:vxatch") else {
        usage(&mut out, "");
        return out;
    };
    let mut config = default_config();
    let (mut del, mut dup, mut xp, mut verbose, mut no_expunge, mut skip_annot) = (None, None, None, false, false, false);
    let (mut prefix, mut user, mut any) = (None::<String>, None::<String>, false);
    for o in opts {
        let d = |v: &str| duration(v);
        match o {
            Opt::Arg('C', v) => config = v,
            Opt::Arg('D', v) => (del, any) = (d(&v), true),
            Opt::Arg('E', v) => (dup, any) = (d(&v), true),
            Opt::Arg('X', v) => (xp, any) = (d(&v), true),
            Opt::Arg('A', _) | Opt::Flag('t') => any = true,
            Opt::Arg('p', v) => prefix = Some(v),
            Opt::Arg('u', v) => user = Some(v),
            Opt::Flag('v') => verbose = true,
            Opt::Flag('x') => no_expunge = true,
            Opt::Flag('a') => skip_annot = true,
            Opt::Flag('h') => {
                out.stdout.push_str(CYR_EXPIRE_USAGE);
                return out;
            }
            _ => {}
        }
    }
    if !any {
        usage(&mut out, "Missing arguments.\n");
        return out;
    }
    let args: Vec<String> = user.iter().cloned().collect();
    let (store, mut names) = match prepare("cyr_expire", &config, &args, user.is_some(), true) {
        Ok(v) => v,
        Err(o) => return o,
    };
    if let Some(p) = &prefix {
        let p = p.replace('/', ".");
        names.retain(|n| n.starts_with(&p));
    }
    let t = now();
    let mut errs = String::new();
    let mut v = |s: String| {
        if verbose {
            out.stderr.push_str(&s);
            out.stderr.push('\n');
        }
    };
    let (mut expired, mut expunged, mut total, mut boxes) = (0usize, 0usize, 0usize, 0usize);
    if let Some(x) = xp.filter(|_| !no_expunge) {
        v(format!(
            "Expunging deleted messages in mailboxes older than {:.2} days",
            x / 86400.0
        ));
    }
    let mut failed = false;
    for n in &names {
        boxes += 1;
        // The expire annotation: messages older than it go (not flagged).
        if !skip_annot && !store.cfg.is_deleted(n) {
            if let Ok(Some(days)) = store.expire_days(n).map(|d| d.filter(|d| *d > 0)) {
                let cut = t - days as i64 * 86400;
                if let Ok((_, rows)) = store.index(n) {
                    let uids: Vec<u32> = rows.iter().map(|r| r.0).collect();
                    let old: Vec<u32> = store
                        .records_for(n, &uids)
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|r: &Record| !r.expunged() && r.flags & FLAG_FLAGGED == 0 && r.internaldate < cut)
                        .map(|r| r.uid)
                        .collect();
                    if !old.is_empty() {
                        v(format!("expunging {} messages in {n} older than {days} days", old.len()));
                        expired += store.expunge_uids(n, &old).map(|g| g.len()).unwrap_or(0);
                    }
                }
            }
        }
        if let Some(x) = xp.filter(|_| !no_expunge) {
            v(format!("cleaning up expunged messages in {n}"));
            match store.cleanup_expunged(n, t - x as i64) {
                Ok(c) => {
                    expunged += c.removed;
                    total += c.records;
                }
                Err(e) => {
                    errs.push_str(&format!("cyr_expire: {n}: {e}\n"));
                    failed = true;
                }
            }
        }
    }
    if xp.is_some() && !no_expunge {
        v(format!(
            "Expired {expired} and expunged {expunged} out of {total} messages from {boxes} mailboxes"
        ));
    }
    if let Some(e) = dup {
        match store.expire_duplicates(t - e as i64) {
            Ok(k) => v(format!("Expired {k} duplicate delivery entries")),
            Err(e) => {
                errs.push_str(&format!("cyr_expire: duplicate database: {e}\n"));
                failed = true;
            }
        }
    }
    if let Some(d) = del {
        v(format!("Removing deleted mailboxes older than {:.2} days", d / 86400.0));
        let mut removed = 0;
        for n in &names {
            let Some(at) = store.deleted_at(n) else { continue };
            if at > t - d as i64 {
                continue;
            }
            v(format!("Removing: {n}"));
            match store.delete_now(n) {
                Ok(()) => removed += 1,
                Err(e) => {
                    errs.push_str(&format!("cyr_expire: {n}: {e}\n"));
                    failed = true;
                }
            }
        }
        v(format!("Removed {removed} deleted mailboxes"));
    }
    out.stderr.push_str(&errs);
    if failed {
        out.status = 1;
    }
    out
}

pub const IPURGE_USAGE: &str = "usage: ipurge [-f] [-s] [-C <alt_config>] [-x] [-X] [-i] [-o] [-n] [-v] [-M]\n\
\t-d days | -b bytes|-k Kbytes|-m Mbytes\n\
\t[mboxpattern1 ... [mboxpatternN]]\n\
\tthere are no defaults and at least one of -d, -b, -k, -m\n\
\tmust be specified\n\
\tif no mboxpattern is given ipurge works on all mailboxes\n\
\t -x specifies an exact match for days or size\n\
\t -f force also to delete mail below user.* and INBOX.*\n\
\t -s skip over messages that are flagged.\n\
\t -X use delivery time instead of date header for date matches.\n\
\t -i invert match logic: -x means not eq, date is for newer, size is for smaller.\n\
\t -o only purge messages that are deleted.\n\
\t -n only print messages that would be deleted (dry run).\n\
\t -v enable verbose output/logging.\n\
\t -M don't recurse into mailboxes.\n";

/// `ipurge`: expunges messages older (`-d`) or larger (`-b -k -m`) than
/// given, in shared mailboxes unless `-f`.
pub fn ipurge(args: &[String]) -> Output {
    let mut out = Output::default();
    let Ok((opts, rest)) = getopt(args, "C:d:b:k:m:fsXioxnvM") else {
        return Output::usage(IPURGE_USAGE);
    };
    let mut config = default_config();
    let (mut days, mut size) = (None::<i64>, None::<u64>);
    let (mut force, mut skip_flagged, mut delivery, mut invert, mut only_deleted, mut exact, mut dry, mut verbose, mut norec) =
        (false, false, false, false, false, false, false, false, false);
    for o in opts {
        let num = |v: &str| v.parse::<i64>().ok().filter(|n| *n >= 0);
        match o {
            Opt::Arg('C', v) => config = v,
            Opt::Arg('d', v) => days = num(&v),
            Opt::Arg('b', v) => size = num(&v).map(|n| n as u64),
            Opt::Arg('k', v) => size = num(&v).map(|n| n as u64 * 1024),
            Opt::Arg('m', v) => size = num(&v).map(|n| n as u64 * 1024 * 1024),
            Opt::Flag('f') => force = true,
            Opt::Flag('s') => skip_flagged = true,
            Opt::Flag('X') => delivery = true,
            Opt::Flag('i') => invert = true,
            Opt::Flag('o') => only_deleted = true,
            Opt::Flag('x') => exact = true,
            Opt::Flag('n') => dry = true,
            Opt::Flag('v') => verbose = true,
            Opt::Flag('M') => norec = true,
            _ => {}
        }
    }
    if days.is_none() && size.is_none() {
        return Output::usage(IPURGE_USAGE);
    }
    let (store, names) = match prepare("ipurge", &config, &rest, false, !norec) {
        Ok(v) => v,
        Err(o) => return o,
    };
    let t = now();
    for n in names {
        let is_user = crate::store::names::owner_of(&n).2;
        if (is_user && !force) || store.cfg.is_deleted(&n) {
            continue;
        }
        let Ok(e) = store.lookup(&n).map(|e| e.ok_or(())) else { continue };
        let Ok(e) = e else { continue };
        let recs: Vec<Record> = store
            .records(&n)
            .unwrap_or_default()
            .into_iter()
            .filter(|r| !r.expunged())
            .collect();
        let (mut tot, mut totb, mut del, mut delb) = (0u64, 0u64, 0u64, 0u64);
        let mut gone = Vec::new();
        out.stdout.push_str(&format!("Working on {n}...\n"));
        for r in &recs {
            tot += 1;
            totb += r.size;
            if skip_flagged && r.flags & FLAG_FLAGGED != 0 || only_deleted && r.flags & FLAG_DELETED == 0 {
                continue;
            }
            let hit = if let Some(d) = days {
                let when = if delivery {
                    r.internaldate
                } else {
                    sent_date(&store, &e.partition, &n, r).unwrap_or(r.internaldate)
                };
                let age = (t - when) / 86400;
                if exact {
                    (age == d) != invert
                } else if invert {
                    age < d
                } else {
                    age > d
                }
            } else {
                let s = size.unwrap_or(0);
                if exact {
                    (r.size == s) != invert
                } else if invert {
                    r.size < s
                } else {
                    r.size > s
                }
            };
            if hit {
                if verbose || dry {
                    out.stdout.push_str(&format!("UID: {}\n\tSize: {}\n", r.uid, r.size));
                }
                del += 1;
                delb += r.size;
                gone.push(r.uid);
            }
        }
        if !dry && !gone.is_empty() {
            if let Err(err) = store.expunge_uids(&n, &gone) {
                out.stderr.push_str(&format!("ipurge: {n}: {err}\n"));
                out.status = 1;
            }
        }
        out.stdout.push_str(&format!(
            "Total messages    \t\t {tot}\nTotal bytes       \t\t {totb}\nDeleted messages  \t\t {del}\nDeleted bytes     \t\t {delb}\nRemaining messages\t\t {}\nRemaining bytes   \t\t {}\n",
            tot - del,
            totb - delb
        ));
    }
    out
}

/// The Date: header's time of a message (ipurge's default age).
fn sent_date(store: &crate::store::Store, partition: &str, name: &str, r: &Record) -> Option<i64> {
    let path = store.message_path(name, partition, r.uid).ok()?;
    let mut head = vec![0u8; r.header_size.min(64 * 1024) as usize];
    use std::io::Read;
    std::fs::File::open(path).ok()?.read_exact(&mut head).ok()?;
    let fields = crate::mail::mime::fields(&head);
    let v = crate::mail::mime::field(&fields, "date")?;
    crate::daemon::imapd::sort::parse_date(&String::from_utf8_lossy(v))
}

pub const UNEXPUNGE_USAGE: &str = "usage: unexpunge [-C <altconfig>] -l <mailbox> [<uid>...]\n\
       unexpunge [-C <altconfig>] -t time-interval [ -d ] [ -v ] mailbox\n\
       unexpunge [-C <altconfig>] -a [-d] [-v] <mailbox>\n\
       unexpunge [-C <altconfig>] -u [-d] [-v] <mailbox> <uid>...\n";

fn ctime(t: i64) -> String {
    crate::util::codec::ctime(t)
}

/// `unexpunge`: lists (`-l`) or restores (`-a`, `-t interval`, `-u uid…`)
/// messages that delayed expunge kept.
pub fn unexpunge(args: &[String]) -> Output {
    let mut out = Output::default();
    let Ok((opts, rest)) = getopt(args, "C:lt:audvf:") else {
        return Output::usage(UNEXPUNGE_USAGE);
    };
    let mut config = default_config();
    let (mut list, mut all, mut by_uid, mut undelete, mut verbose) = (false, false, false, false, false);
    let (mut within, mut flag) = (None::<i64>, None::<String>);
    let mut modes = 0;
    for o in opts {
        match o {
            Opt::Arg('C', v) => config = v,
            Opt::Flag('l') => (list, modes) = (true, modes + 1),
            Opt::Flag('a') => (all, modes) = (true, modes + 1),
            Opt::Flag('u') => (by_uid, modes) = (true, modes + 1),
            Opt::Arg('t', v) => {
                modes += 1;
                let (num, unit) = match v.char_indices().last() {
                    Some((i, c)) if c.is_ascii_alphabetic() => (&v[..i], c),
                    _ => (v.as_str(), 's'),
                };
                let mult = match unit {
                    'm' => 60,
                    'h' => 3600,
                    'd' => 86400,
                    'w' => 604800,
                    _ => 1,
                };
                within = num.parse::<i64>().ok().map(|n| n * mult);
                if within.is_none() {
                    return Output::usage(UNEXPUNGE_USAGE);
                }
            }
            Opt::Flag('d') => undelete = true,
            Opt::Flag('v') => verbose = true,
            Opt::Arg('f', v) => flag = Some(format!("\\{v}").trim_start_matches('\\').to_string()),
            _ => {}
        }
    }
    if modes != 1 || rest.is_empty() || (by_uid && rest.len() < 2) {
        return Output::usage(UNEXPUNGE_USAGE);
    }
    let uids: Vec<u32> = rest[1..].iter().filter_map(|u| u.parse().ok()).collect();
    let (store, names) = match prepare("unexpunge", &config, &rest[..1], false, false) {
        Ok(v) => v,
        Err(o) => return o,
    };
    let Some(name) = names.into_iter().next() else {
        out.stderr.push_str(&format!("Mailbox {} does not exist\n", rest[0]));
        out.status = 1;
        return out;
    };
    let kept = match store.expunged(&name) {
        Ok(k) => k,
        Err(e) => {
            out.stderr.push_str(&format!("unexpunge: {name}: {e}\n"));
            out.status = 1;
            return out;
        }
    };
    let t = now();
    let chosen: Vec<&Record> = kept
        .iter()
        .filter(|r| {
            if list || by_uid {
                uids.is_empty() || uids.contains(&r.uid)
            } else if let Some(w) = within {
                r.savedate >= t - w
            } else {
                all
            }
        })
        .collect();
    if list {
        let e = store.lookup(&name).ok().flatten();
        for r in chosen {
            let (mut subj, mut sent) = (String::new(), r.internaldate);
            if let Some(e) = &e {
                sent = sent_date(&store, &e.partition, &name, r).unwrap_or(sent);
                if let Ok(p) = store.message_path(&name, &e.partition, r.uid) {
                    if let Ok(d) = std::fs::read(p) {
                        let (he, _) = crate::mail::mime::header_end(&d);
                        let f = crate::mail::mime::fields(&d[..he]);
                        subj = crate::mail::mime::field(&f, "subject")
                            .map(|v| String::from_utf8_lossy(crate::mail::mime::trim(v)).to_string())
                            .unwrap_or_default();
                    }
                }
            }
            out.stdout.push_str(&format!(
                "UID: {}\n\tSize: {}\n\tSent: {}\n\tRecv: {}\n\tExpg: {}\n\tSubj: \"{subj}\"\n\n",
                r.uid,
                r.size,
                ctime(sent),
                ctime(r.internaldate),
                ctime(r.savedate)
            ));
        }
        return out;
    }
    let want: Vec<u32> = chosen.iter().map(|r| r.uid).collect();
    if verbose {
        out.stdout.push_str(&format!("restoring expunged messages in mailbox '{name}'\n"));
    }
    match store.unexpunge(&name, &want, undelete, flag.as_deref(), &cache_of) {
        Ok(done) => {
            if verbose {
                for (old, new) in &done {
                    out.stdout.push_str(&format!("Unexpunged {name}: {old} => {new}\n"));
                }
                out.stdout.push_str(&format!("restored {} expunged messages\n", done.len()));
            }
        }
        Err(e) => {
            out.stderr.push_str(&format!("unexpunge: {name}: {e}\n"));
            out.status = 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations() {
        assert_eq!(super::duration("1.5"), Some(1.5 * 86400.0));
        assert_eq!(super::duration("2h"), Some(7200.0));
        assert_eq!(super::duration("0"), Some(0.0));
        assert_eq!(super::duration("x"), None);
        assert_eq!(super::duration("-1"), None);
    }
}
