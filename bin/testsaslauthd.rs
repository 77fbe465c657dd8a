//! NAME
//!     testsaslauthd - test utility for the SASL authentication server (mumail)
//! SYNOPSIS
//!     testsaslauthd -u username -p password [-r realm] [-s servicename] [-f socket path] [-R repeatnum]
//! DESCRIPTION
//!     Sends one request per repetition to saslauthd and prints
//!     `N: OK "Success."` or `N: NO "authentication failed"`, as Cyrus
//!     SASL's testsaslauthd does.
//! DIAGNOSTICS
//!     Exit status 0 when every check succeeded, 255 otherwise, 1 on usage.
//! SEE ALSO
//!     saslauthd(8)

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(mumail::tools::testsaslauthd::run(&args).emit());
}
