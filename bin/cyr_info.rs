//! NAME
//!     cyr_info - show Cyrus configuration (mumail)
//! SYNOPSIS
//!     cyr_info [-C imapd.conf] [-M cyrus.conf] [-n service] conf|conf-all|conf-default|conf-lint|services|proc|version
//! DESCRIPTION
//!     Reads imapd.conf exactly as Cyrus 3.x does and prints it as Cyrus
//!     3.6's cyr_info does.  See cyr_info(8).
//! DIAGNOSTICS
//!     `fatal error: ...` on stderr and exit 78 (EX_CONFIG) for a bad file.
//! SEE ALSO
//!     imapd.conf(5), cyrus.conf(5)

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(mumail::tools::cyr_info::run(&args).emit());
}
