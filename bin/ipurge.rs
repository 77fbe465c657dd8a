//! NAME
//!   ipurge - Cyrus's ipurge over the mumail store
//!
//! SYNOPSIS
//!   see ipurge(8)
//!
//! DESCRIPTION
//!   A call into mumail::tools::expire::ipurge; the manual page has the flags and
//!   the output format.
//!
//! SEE ALSO
//!   ipurge(8), imapd.conf(5)

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(mumail::tools::expire::ipurge(&args).emit());
}
