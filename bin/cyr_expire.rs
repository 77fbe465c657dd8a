//! NAME
//!   cyr_expire - Cyrus's cyr_expire over the mumail store
//!
//! SYNOPSIS
//!   see cyr_expire(8)
//!
//! DESCRIPTION
//!   A call into mumail::tools::expire::cyr_expire; the manual page has the flags and
//!   the output format.
//!
//! SEE ALSO
//!   cyr_expire(8), imapd.conf(5)

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(mumail::tools::expire::cyr_expire(&args).emit());
}
