//! postfix(1), the control command: `start` (the hub in the background),
//! `stop`, `status`, `check`, `flush`, `reload`, with postfix-script's
//! messages and exit codes.  The hub's pid is in
//! `queue_directory/pid/master.pid`, as RHEL's unit expects.

use super::Output;
use crate::config::postfix::{config_directory, Params};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn say(out: &mut Output, text: &str) {
    out.stderr.push_str(&format!("postfix/postfix-script: {text}\n"));
}

fn fail(text: &str) -> Output {
    let mut o = Output {
        status: 1,
        ..Output::default()
    };
    say(&mut o, &format!("fatal: {text}"));
    o
}

/// The running hub's pid, if its pid file names a live process.
fn running(pidfile: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).ok()?;
    Some(pid)
}

/// postfix-master: beside this program, else /usr/libexec/mumail.
fn master_program() -> PathBuf {
    if let Ok(me) = std::env::current_exe() {
        let p = me.with_file_name("postfix-master");
        if p.exists() {
            return p;
        }
    }
    PathBuf::from("/usr/libexec/mumail/postfix-master")
}

/// Loads and checks the configuration as the hub would at start.
fn check(p: &Params) -> Result<(), String> {
    crate::daemon::hub::conf::HubConf::load(p).map_err(|e| e.to_string())?;
    for s in p
        .master
        .services
        .iter()
        .filter(|s| (s.kind == "inet" || s.kind == "pass") && s.command() == "smtpd")
    {
        let mut sp = p.clone();
        for (k, v) in s.overrides() {
            sp.overrides.insert(k, v);
        }
        crate::daemon::hub::conf::SmtpdConf::load(&sp, &s.name).map_err(|e| e.to_string())?;
    }
    Ok(())
}

pub fn postfix(args: &[String]) -> Output {
    let mut config = None;
    let mut rest = Vec::new();
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "-c" => {
                config = args.get(i + 1).cloned();
                i += 1;
            }
            "-D" | "-v" => {}
            a => rest.push(a.to_string()),
        }
        i += 1;
    }
    let Some(cmd) = rest.first().cloned() else {
        return Output::usage("postfix: fatal: usage: postfix [-c config_dir] [-Dv] command\n");
    };
    let (dir, explicit) = config_directory(config.as_deref());
    let p = match Params::load(&dir, explicit) {
        Ok(p) => p,
        Err(e) => return fail(&e.to_string()),
    };
    let qdir = PathBuf::from(p.get("queue_directory").unwrap_or_else(|| "/var/spool/postfix".into()));
    let pidfile = qdir.join("pid/master.pid");
    let mut out = Output::default();
    match cmd.as_str() {
        "check" => match check(&p) {
            Ok(()) => out,
            Err(e) => fail(&e),
        },
        "status" => match running(&pidfile) {
            Some(pid) => {
                say(&mut out, &format!("the Postfix mail system is running: PID: {pid}"));
                out
            }
            None => {
                let mut o = Output {
                    status: 1,
                    ..Output::default()
                };
                say(&mut o, "the Postfix mail system is not running");
                o
            }
        },
        "start" | "start-fg" => {
            if running(&pidfile).is_some() {
                return fail("the Postfix mail system is already running");
            }
            if let Err(e) = check(&p) {
                return fail(&e);
            }
            say(&mut out, "starting the Postfix mail system");
            let mut cmd = std::process::Command::new(master_program());
            if explicit {
                cmd.args(["-c", &dir]);
            }
            if rest[0] == "start-fg" {
                let st = cmd.status();
                out.status = st.ok().and_then(|s| s.code()).unwrap_or(1);
                return out;
            }
            use std::os::unix::process::CommandExt;
            cmd.stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .process_group(0);
            if let Err(e) = cmd.spawn() {
                return fail(&format!("cannot run {}: {e}", master_program().display()));
            }
            // Done when the hub has written its pid (it has bound its
            // ports and recovered the queue by then).
            let end = Instant::now() + Duration::from_secs(30);
            while running(&pidfile).is_none() {
                if Instant::now() > end {
                    return fail("the mail system did not start; see the mail log");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            out
        }
        "stop" | "abort" => {
            let Some(pid) = running(&pidfile) else {
                return fail("the Postfix mail system is not running");
            };
            say(
                &mut out,
                if cmd == "stop" {
                    "stopping the Postfix mail system"
                } else {
                    "aborting the Postfix mail system"
                },
            );
            let sig = if cmd == "stop" {
                nix::sys::signal::Signal::SIGTERM
            } else {
                nix::sys::signal::Signal::SIGKILL
            };
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
            let end = Instant::now() + Duration::from_secs(30);
            while running(&pidfile).is_some() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(50));
            }
            out
        }
        "reload" => {
            let Some(pid) = running(&pidfile) else {
                return fail("the Postfix mail system is not running");
            };
            if let Err(e) = check(&p) {
                return fail(&e);
            }
            say(&mut out, "refreshing the Postfix mail system");
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGHUP);
            out
        }
        "flush" => super::postqueue::postqueue(&[String::from("-c"), dir, String::from("-f")]),
        other => fail(&format!("unknown command: '{other}'")),
    }
}
