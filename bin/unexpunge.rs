//! NAME
//!   unexpunge - Cyrus's unexpunge over the mumail store
//!
//! SYNOPSIS
//!   see unexpunge(8)
//!
//! DESCRIPTION
//!   A call into mumail::tools::expire::unexpunge; the manual page has the flags and
//!   the output format.
//!
//! SEE ALSO
//!   unexpunge(8), imapd.conf(5)

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(mumail::tools::expire::unexpunge(&args).emit());
}
