//! saslauthd's command line (Cyrus SASL 2.1.28 getopt `a:cdhO:lm:n:rs:t:vV`)
//! with its messages and exit codes.

use crate::util::getopt::{getopt, GetoptError, Opt};

pub const USAGE: &str = "usage: saslauthd [options]

option information:
  -a <authmech>  Selects the authentication mechanism to use.
  -c             Enable credential caching.
  -d             Debugging (don't detach from tty, implies -V)
  -r             Combine the realm with the login before passing to authentication mechanism
                 Ex. login: \"foo\" realm: \"bar\" will get passed as login: \"foo@bar\"
                 The realm name is passed untouched.
  -O <option>    Optional argument to pass to the authentication
                 mechanism.
  -l             Disable accept() locking. Increases performance, but
                 may not be compatible with some operating systems.
  -m <path>      Alternate path for the saslauthd working directory,
                 must be absolute.
  -n <procs>     Number of worker processes to create.
  -s <kilobytes> Size of the credential cache (in kilobytes)
  -t <seconds>   Timeout for items in the credential cache (in seconds)
  -v             Display version information and available mechs
  -V             Enable verbose logging
  -h             Display this message.
";

/// The compile-time run directory of RHEL's saslauthd.
pub const DEFAULT_RUN_PATH: &str = "/run/saslauthd";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub mech: String,
    pub mech_option: Option<String>,
    pub run_path: String,
    pub workers: usize,
    pub cache: bool,
    pub cache_kb: Option<usize>,
    pub cache_ttl: u64,
    pub realm_join: bool,
    pub no_accept_lock: bool,
    pub debug: bool,
    pub verbose: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mech: String::new(),
            mech_option: None,
            run_path: DEFAULT_RUN_PATH.into(),
            workers: 5,
            cache: false,
            cache_kb: None,
            cache_ttl: 28800,
            realm_join: false,
            no_accept_lock: false,
            debug: false,
            verbose: false,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Run(Options),
    Version,
    /// Print usage and version, exit with this status.
    Usage(i32),
    /// A start-up error: message (logged as saslauthd logs it), exit status.
    Fail(String, i32),
}

pub fn parse(args: &[String]) -> Action {
    let (opts, _rest) = match getopt(args, "a:cdhO:lm:n:rs:t:vV") {
        Ok(v) => v,
        Err(GetoptError::Unknown(c)) => {
            eprintln!("saslauthd: invalid option -- '{c}'");
            return Action::Usage(0);
        }
        Err(GetoptError::MissingArg(c)) => {
            eprintln!("saslauthd: option requires an argument -- '{c}'");
            return Action::Usage(0);
        }
    };
    let mut o = Options::default();
    for opt in opts {
        match opt {
            Opt::Arg('a', m) => o.mech = m,
            Opt::Arg('O', v) => o.mech_option = Some(v),
            Opt::Arg('m', p) => o.run_path = p,
            Opt::Arg('n', n) => match n.parse() {
                Ok(n) => o.workers = n,
                Err(_) => return Action::Fail(format!("invalid number of worker processes: {n}"), 1),
            },
            Opt::Arg('s', n) => match n.parse::<usize>() {
                Ok(n) if n > 0 => o.cache_kb = Some(n),
                _ => return Action::Fail(format!("invalid cache size: {n}"), 1),
            },
            Opt::Arg('t', n) => match n.parse() {
                Ok(n) => o.cache_ttl = n,
                Err(_) => return Action::Fail(format!("invalid cache timeout: {n}"), 1),
            },
            Opt::Flag('c') => o.cache = true,
            Opt::Flag('d') => {
                o.debug = true;
                o.verbose = true;
            }
            Opt::Flag('r') => o.realm_join = true,
            Opt::Flag('l') => o.no_accept_lock = true,
            Opt::Flag('V') => o.verbose = true,
            Opt::Flag('v') => return Action::Version,
            Opt::Flag('h') => return Action::Usage(0),
            _ => {}
        }
    }
    if !o.run_path.starts_with('/') {
        return Action::Fail("-m requires an absolute pathname".into(), 1);
    }
    if o.mech.is_empty() {
        return Action::Fail("no authentication mechanism specified".into(), 0);
    }
    Action::Run(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(a: &[&str]) -> Action {
        parse(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn flags() {
        let Action::Run(o) = p(&[
            "-a",
            "ldap",
            "-O",
            "/etc/saslauthd.conf",
            "-m",
            "/run/x",
            "-n",
            "8",
            "-c",
            "-s",
            "64",
            "-t",
            "600",
            "-r",
            "-d",
        ]) else {
            panic!()
        };
        assert_eq!(
            (
                o.mech.as_str(),
                o.run_path.as_str(),
                o.workers,
                o.cache,
                o.cache_kb,
                o.cache_ttl,
                o.realm_join,
                o.debug,
                o.verbose
            ),
            ("ldap", "/run/x", 8, true, Some(64), 600, true, true, true)
        );
        assert_eq!(o.mech_option.as_deref(), Some("/etc/saslauthd.conf"));
        let Action::Run(o) = p(&["-a", "pam"]) else { panic!() };
        assert_eq!((o.run_path.as_str(), o.workers, o.cache_ttl), ("/run/saslauthd", 5, 28800));
        assert_eq!(p(&["-v"]), Action::Version);
        assert_eq!(p(&["-h"]), Action::Usage(0));
        // Observed with saslauthd 2.1.28: messages and exit statuses.
        assert_eq!(p(&["-m", "/x"]), Action::Fail("no authentication mechanism specified".into(), 0));
        assert_eq!(
            p(&["-a", "shadow", "-m", "relative"]),
            Action::Fail("-m requires an absolute pathname".into(), 1)
        );
    }
}
