//! postqueue(1), mailq(1) and postsuper(1): the queue commands, with
//! Postfix's flags, messages and exit codes.  postqueue and mailq ask the
//! running hub over `public/showq` (and read the queue directly, with
//! Postfix's warning, when the hub is down); postsuper works on the queue
//! files itself (root only) and then asks the hub to rescan.

use super::Output;
use crate::config::postfix::{config_directory, Params};
use crate::queue::{showq, Queue, QueueName};
use crate::util::exit;
use crate::util::getopt::{getopt, Opt};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

fn load(config: Option<&str>, prog: &str) -> Result<(Params, PathBuf), Output> {
    let (dir, explicit) = config_directory(config);
    let p = Params::load(&dir, explicit).map_err(|e| Output {
        stderr: format!("{prog}: fatal: {e}\n"),
        status: exit::CONFIG,
        ..Output::default()
    })?;
    let q = PathBuf::from(p.get("queue_directory").unwrap_or_else(|| "/var/spool/postfix".into()));
    Ok((p, q))
}

/// One request to the hub's showq socket; None when the hub is down.
fn ask(qdir: &Path, req: &str) -> Option<String> {
    let mut s = std::os::unix::net::UnixStream::connect(qdir.join("public/showq")).ok()?;
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(60)));
    s.write_all(format!("{req}\n").as_bytes()).ok()?;
    let mut out = String::new();
    s.take(256 << 20).read_to_string(&mut out).ok()?;
    Some(out)
}

fn fatal(prog: &str, text: &str, status: i32) -> Output {
    Output {
        stderr: format!("{prog}: fatal: {text}\n"),
        status,
        ..Output::default()
    }
}

/// The listing read straight from the queue files.
fn direct(p: &Params, qdir: &Path, json: bool) -> Result<String, String> {
    let depth = p.get_int("hash_queue_depth", 1, 0).unwrap_or(1) as usize;
    let q = Queue::open_readonly(qdir, depth);
    let e = showq::entries(&q);
    let empty = p.get("empty_address_recipient").unwrap_or_else(|| "MAILER-DAEMON".into());
    Ok(if json {
        showq::json(&e, &empty)
    } else {
        showq::listing(&e, &empty)
    })
}

fn listing(p: &Params, qdir: &Path, json: bool, prog: &str) -> Output {
    match ask(qdir, if json { "json" } else { "showq" }) {
        Some(text) => Output {
            stdout: text,
            ..Output::default()
        },
        None => match direct(p, qdir, json) {
            Ok(text) => Output {
                stdout: text,
                stderr: format!("{prog}: warning: Mail system is down -- accessing queue directly\n"),
                ..Output::default()
            },
            Err(e) => fatal(prog, &e, exit::UNAVAILABLE),
        },
    }
}

const POSTQUEUE_USAGE: &str =
    "postqueue: fatal: usage: postqueue -f | postqueue -i queueid | postqueue -j | postqueue -p | postqueue -s site\n";

pub fn postqueue(args: &[String]) -> Output {
    let Ok((opts, rest)) = getopt(args, "c:fi:jps:v") else {
        return Output::usage(POSTQUEUE_USAGE);
    };
    if !rest.is_empty() {
        return Output::usage(POSTQUEUE_USAGE);
    }
    let config = opts.iter().find_map(|o| match o {
        Opt::Arg('c', v) => Some(v.as_str()),
        _ => None,
    });
    let (p, qdir) = match load(config, "postqueue") {
        Ok(x) => x,
        Err(o) => return o,
    };
    let mode = opts.iter().find(|o| !matches!(o, Opt::Arg('c', _) | Opt::Flag('v')));
    match mode {
        Some(Opt::Flag('p')) => listing(&p, &qdir, false, "postqueue"),
        Some(Opt::Flag('j')) => listing(&p, &qdir, true, "postqueue"),
        Some(Opt::Flag('f')) => flush(&qdir, "flush", "Cannot flush mail queue - mail system is down"),
        Some(Opt::Arg('i', id)) => flush(&qdir, &format!("flush-id {id}"), "Cannot flush mail queue - mail system is down"),
        Some(Opt::Arg('s', site)) => flush(
            &qdir,
            &format!("flush-site {site}"),
            &format!("Flush service is not configured for destination \"{site}\""),
        ),
        _ => Output::usage(POSTQUEUE_USAGE),
    }
}

fn flush(qdir: &Path, req: &str, down: &str) -> Output {
    match ask(qdir, req) {
        Some(r) if r.starts_with("error: ") => fatal("postqueue", r.trim_start_matches("error: ").trim_end(), exit::UNAVAILABLE),
        Some(_) => Output::default(),
        None => fatal("postqueue", down, exit::UNAVAILABLE),
    }
}

/// mailq: `sendmail -bp`.
pub fn mailq(args: &[String]) -> Output {
    let Ok((opts, _)) = getopt(args, "C:v") else {
        return Output::usage("usage: mailq [-v] [-C config_dir]\n");
    };
    let config = opts.iter().find_map(|o| match o {
        Opt::Arg('C', v) => Some(v.as_str()),
        _ => None,
    });
    match load(config, "sendmail") {
        Ok((p, q)) => listing(&p, &q, false, "sendmail"),
        Err(o) => o,
    }
}

const POSTSUPER_USAGE: &str = "postsuper: fatal: usage: postsuper [-c config_dir] [-d queue_id (delete)] [-h queue_id (hold)] [-H queue_id (un-hold)] [-r queue_id (requeue)] [-v (verbose)] [queue...]\n";

/// postsuper -d/-h/-H/-r, each with a queue ID, `ALL` or `-` (IDs on
/// stdin), optionally limited to the named queues.
pub fn postsuper(args: &[String], stdin: &mut dyn std::io::BufRead) -> Output {
    let opts = match getopt(args, "c:d:h:H:r:v") {
        Ok((o, rest)) => (o, rest),
        Err(e) => {
            let c = match e {
                crate::util::getopt::GetoptError::Unknown(c) | crate::util::getopt::GetoptError::MissingArg(c) => c,
            };
            return Output::usage(&format!("postsuper: invalid option -- '{c}'\n{POSTSUPER_USAGE}"));
        }
    };
    let (opts, queues) = opts;
    if !nix::unistd::geteuid().is_root() {
        return fatal("postsuper", "use of this command is reserved for the superuser", 1);
    }
    let config = opts.iter().find_map(|o| match o {
        Opt::Arg('c', v) => Some(v.as_str()),
        _ => None,
    });
    let (p, qdir) = match load(config, "postsuper") {
        Ok(x) => x,
        Err(o) => return o,
    };
    let mut names = Vec::new();
    for q in &queues {
        match QueueName::ALL.iter().find(|n| n.as_str() == q) {
            Some(n) => names.push(*n),
            None => return fatal("postsuper", &format!("invalid directory name: {q}"), 1),
        }
    }
    let depth = p.get_int("hash_queue_depth", 1, 0).unwrap_or(1) as usize;
    let queue = Queue::open_readonly(&qdir, depth);
    let log = crate::log::Logger::for_postfix(&p, "postsuper").ok();
    let mut stdin_ids: Option<Vec<String>> = None;
    // -r passes the recipients through cleanup's mapping again.
    let rewriter = crate::daemon::hub::conf::HubConf::load(&p)
        .ok()
        .and_then(|c| crate::daemon::hub::cleanup::Rewriter::load(&p, &c).ok());
    let pickup_log = crate::log::Logger::for_postfix(&p, "pickup").ok();
    let mut requeued: Vec<(String, String)> = Vec::new();
    let mut out = Output::default();
    for o in &opts {
        let (op, arg) = match o {
            Opt::Arg(c @ ('d' | 'h' | 'H' | 'r'), a) => (*c, a.clone()),
            _ => continue,
        };
        let default: &[QueueName] = match op {
            'd' => &[QueueName::Hold, QueueName::Incoming, QueueName::Active, QueueName::Deferred],
            'h' => &[QueueName::Incoming, QueueName::Active, QueueName::Deferred],
            'H' => &[QueueName::Hold],
            _ => &[QueueName::Incoming, QueueName::Active, QueueName::Deferred, QueueName::Hold],
        };
        let scope: Vec<QueueName> = if names.is_empty() {
            default.to_vec()
        } else {
            names.iter().copied().filter(|n| default.contains(n)).collect()
        };
        let ids: Vec<String> = if arg == "ALL" {
            scope
                .iter()
                .flat_map(|q| queue.list(*q).unwrap_or_default().into_iter().map(|(id, _)| id))
                .collect()
        } else if arg == "-" {
            let ids = stdin_ids.get_or_insert_with(|| {
                let mut v = Vec::new();
                let mut l = String::new();
                while stdin.read_line(&mut l).unwrap_or(0) > 0 {
                    v.extend(l.split_whitespace().map(str::to_string));
                    l.clear();
                }
                v
            });
            ids.clone()
        } else {
            vec![arg.clone()]
        };
        let mut n = 0;
        for id in ids {
            // Queue IDs only: never a path.
            if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
                continue;
            }
            let Some((from, _)) = queue.find(&id) else { continue };
            if !scope.contains(&from) {
                continue;
            }
            let (ok, what) = match op {
                'd' => (queue.remove(from, &id).is_ok(), "removed"),
                'h' => (queue.move_to(&id, from, QueueName::Hold).is_ok(), "placed on hold"),
                'H' => (
                    queue
                        .move_to(&id, from, QueueName::Deferred)
                        .map(|_| queue.set_next_try(QueueName::Deferred, &id, 0))
                        .is_ok(),
                    "released from hold",
                ),
                _ => match queue.requeue(from, &id, |r| match &rewriter {
                    Some(rw) => rw.recipients(r).map_err(|e| e.0),
                    None => Ok(r),
                }) {
                    Ok(new) => {
                        requeued.push((id.clone(), new));
                        (true, "requeued")
                    }
                    Err(e) => {
                        if let Some(l) = &log {
                            l.warning(&format!("{id}: cannot requeue: {e}"));
                        }
                        (false, "")
                    }
                },
            };
            if ok {
                if op == 'd' {
                    let _ = std::fs::remove_file(queue.defer_log(&id));
                }
                if let Some(l) = &log {
                    l.info(&format!("{id}: {what}"));
                }
                n += 1;
            }
        }
        let s = if n == 1 { "" } else { "s" };
        let summary = match op {
            'd' => format!("Deleted: {n} message{s}"),
            'h' => format!("Placed on hold: {n} message{s}"),
            'H' => format!("Released from hold: {n} message{s}"),
            _ => format!("Requeued: {n} message{s}"),
        };
        out.stderr.push_str(&format!("postsuper: {summary}\n"));
    }
    // pickup(8)'s line for each message that came back with a new ID.
    for (old, new) in &requeued {
        if let (Some(l), Ok((env, _))) = (&pickup_log, queue.read(QueueName::Incoming, new)) {
            l.info(&format!("{new}: uid=0 from=<{}> orig_id={old}", env.sender));
        }
    }
    // Let the running hub see what moved.
    let _ = ask(&qdir, "rescan");
    out
}
