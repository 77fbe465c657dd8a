//! NAME
//!   cyr_deny - Cyrus's cyr_deny over the mumail store
//!
//! SYNOPSIS
//!   see cyr_deny(8)
//!
//! DESCRIPTION
//!   A call into mumail::tools::mboxlist::cyr_deny; the manual page has the flags and
//!   the output format.
//!
//! SEE ALSO
//!   cyr_deny(8), imapd.conf(5)

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(mumail::tools::mboxlist::cyr_deny(&args).emit());
}
