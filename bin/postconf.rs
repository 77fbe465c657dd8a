//! NAME
//!     postconf - Postfix configuration utility (mumail)
//! SYNOPSIS
//!     postconf [-dfhHnx] [-c config_dir] [-o name=value] [name ...]
//!     postconf -e [-c config_dir] name=value ...
//!     postconf -X|-# [-c config_dir] name ...
//!     postconf -M|-F|-P [-fx] [-c config_dir] [service[/type[/name]] ...]
//! DESCRIPTION
//!     Prints main.cf and master.cf as Postfix 3.7's postconf does, and edits
//!     main.cf in place.  See postconf(1).
//! SECURITY
//!     Reads the configuration directory; -e/-X/-# rewrite main.cf atomically.
//! DIAGNOSTICS
//!     Warnings and fatal errors on stderr; exit 0 on success, 1 on error.
//! SEE ALSO
//!     postconf(5), master(5)

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(mumail::tools::postconf::run(&args).emit());
}
