//! Benchmark (prints figures; not a test): our saslauthd against Debian's
//! saslauthd 2.1.28 on the same back ends — ldap (search + bind) on the
//! same slapd, kerberos5 on the same KDC, shadow on the same file — driven
//! by a load client that speaks the mux protocol directly, one request per
//! connection: logins/s and p50/p99 latency, sequential and 16 concurrent
//! clients, ours with and without -c.  Run as root:
//!     cargo bench --bench saslauthd            (BENCH_N=4000 by default)
//!     BENCH_MECHS=ldap,shadow cargo bench --bench saslauthd
//!     BENCH_SASL_DEBUG=1 cargo bench --bench saslauthd   (daemons with -d)
//!     BENCH_DAEMONS="mumail -c" cargo bench --bench saslauthd   (some rows)

#[path = "../tests/harness/mod.rs"]
mod harness;
use harness::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn load(mux: &Path, n: usize, clients: usize, users: &[&str]) -> (f64, Duration, Duration, usize) {
    let per = n / clients;
    let start = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let mux = mux.to_path_buf();
            let users: Vec<String> = users.iter().map(|s| s.to_string()).collect();
            std::thread::spawn(move || {
                let mut lat = Vec::with_capacity(per);
                let mut ok = 0;
                for i in 0..per {
                    let u = &users[(c + i) % users.len()];
                    let t = Instant::now();
                    let r = mux_req(&mux, u.as_bytes());
                    lat.push(t.elapsed());
                    ok += r as usize;
                }
                (lat, ok)
            })
        })
        .collect();
    let mut lat = Vec::new();
    let mut ok = 0;
    for h in handles {
        let (l, o) = h.join().unwrap();
        lat.extend(l);
        ok += o;
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    (lat.len() as f64 / secs, p(0.50), p(0.99), ok)
}

fn mux_req(mux: &Path, user: &[u8]) -> bool {
    reply_text(&mux_raw(mux, user)).starts_with("OK")
}

fn mux_raw(mux: &Path, user: &[u8]) -> Vec<u8> {
    harness::mux(mux, user, b"testpw", b"imap", b"")
}

/// A saslauthd started as in production: without -d it forks, and the
/// parent exits once the child serves; stopped by the pid file's pid.
struct Daemon(PathBuf);

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = std::fs::read_to_string(self.0.join("saslauthd.pid")).unwrap_or_default();
        let Ok(pid) = pid.trim().parse::<i32>() else { return };
        let pid = nix::unistd::Pid::from_raw(pid);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        // Gone when signal 0 finds no such process.
        wait_for("saslauthd exit", Duration::from_secs(20), || {
            nix::sys::signal::kill(pid, None).is_err()
        });
    }
}

fn daemon(program: &Path, binds: &[(PathBuf, &str)], run: &Path, args: &[&str], env: &[(&str, String)]) -> Daemon {
    let status = saslauthd_command(program, binds, run, false, args, env).status().unwrap();
    assert!(status.success(), "{} {args:?}: {status}", program.display());
    wait_mux(run);
    Daemon(run.to_path_buf())
}

fn main() {
    // Our daemons as built by `cargo bench` (release).
    std::env::set_var("MUMAIL_PROFILE", "release");
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("saslauthd bench: needs root (private mount namespaces)");
        return;
    }
    let n: usize = std::env::var("BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(4000);
    let ours = PathBuf::from(env!("CARGO_BIN_EXE_saslauthd"));
    let real = PathBuf::from("/usr/sbin/saslauthd");
    let d = tempfile::tempdir().unwrap();
    let slapd = Slapd::start(&d.path().join("slapd"));
    let kdc = Kdc::start(&d.path().join("kdc"));
    let binds = private_accounts(d.path());
    let ldap_conf = d.path().join("ldap.conf");
    std::fs::write(&ldap_conf, format!("ldap_servers: {}\nldap_search_base: ou=people,{LDAP_BASE}\nldap_filter: (uid=%u)\nldap_bind_dn: cn=saslauthd,ou=services,{LDAP_BASE}\nldap_password: bindpw\n", slapd.url())).unwrap();
    let krb_conf = d.path().join("krb.conf");
    std::fs::write(&krb_conf, format!("krb5_keytab: {}\n", d.path().join("kdc/krb5.keytab").display())).unwrap();
    let kenv = kdc.env();
    let mechs: Vec<(&str, Vec<String>, Vec<&str>, Vec<(&str, String)>)> = vec![
        (
            "ldap",
            vec!["-O".into(), ldap_conf.display().to_string()],
            vec!["u1", "u2", "u3", "u4", "u5"],
            vec![],
        ),
        (
            "kerberos5",
            vec!["-O".into(), krb_conf.display().to_string()],
            vec!["u1", "u2", "u3"],
            kenv.clone(),
        ),
        ("shadow", vec![], vec!["u7"], vec![]),
    ];
    // As in production by default: no -d (the daemons fork, and log only
    // failures, to syslog); BENCH_SASL_DEBUG=1 runs them with -d, which
    // also logs two lines per request to a file.
    let debug = std::env::var_os("BENCH_SASL_DEBUG").is_some();
    println!(
        "saslauthd benchmark: N={n} requests per row, one request per connection, password right, {}",
        if debug {
            "daemons run with -d (a log line per request and reply)"
        } else {
            "daemons run as in production (no -d)"
        }
    );
    println!(
        "{:<10} {:<22} {:>8} {:>10} {:>10} {:>10} {:>8}",
        "mech", "daemon", "clients", "logins/s", "p50 ms", "p99 ms", "ok"
    );
    let only = std::env::var("BENCH_MECHS").unwrap_or_default();
    let daemons = std::env::var("BENCH_DAEMONS").unwrap_or_default();
    for (mech, extra, users, env) in &mechs {
        if !only.is_empty() && !only.split(',').any(|m| m == *mech) {
            continue;
        }
        let mut base = Vec::new();
        for (label, prog, cache) in [
            ("saslauthd 2.1.28 -n 5", &real, false),
            ("mumail", &ours, false),
            ("mumail -c", &ours, true),
        ] {
            if !prog.exists() || !daemons.is_empty() && !daemons.split(',').any(|d| d == label) {
                continue;
            }
            let run = d.path().join(format!("{mech}-{}", label.replace(' ', "_")));
            let mut args: Vec<&str> = vec!["-a", mech];
            args.extend(extra.iter().map(|s| s.as_str()));
            if cache {
                args.push("-c");
            }
            if prog == &real {
                args.extend(["-n", "5"]);
            }
            let log = d.path().join(format!("{mech}-{}.log", label.replace(' ', "_")));
            // Stopped when dropped, either way.
            let p: Box<dyn std::any::Any> = if debug {
                Box::new(saslauthd(prog, &binds, &run, &args, env, &log))
            } else {
                Box::new(daemon(prog, &binds, &run, &args, env))
            };
            for clients in [1usize, 16] {
                let rows = if *mech == "kerberos5" || *mech == "shadow" { n / 4 } else { n };
                let (rate, p50, p99, ok) = load(&run.join("mux"), rows, clients, users);
                println!(
                    "{:<10} {:<22} {:>8} {:>10.0} {:>10.3} {:>10.3} {:>8}",
                    mech,
                    label,
                    clients,
                    rate,
                    p50.as_secs_f64() * 1e3,
                    p99.as_secs_f64() * 1e3,
                    ok
                );
                if label.starts_with("saslauthd") {
                    base.push(rate);
                } else if let Some(b) = base.get(if clients == 1 { 0 } else { 1 }) {
                    println!("{:<10} {:<22} {:>8} {:>9.1}x", "", "  vs the original", clients, rate / b);
                }
            }
            drop(p);
        }
    }
}
