//! NAME
//!   reconstruct - Cyrus's reconstruct over the mumail store
//!
//! SYNOPSIS
//!   see reconstruct(8)
//!
//! DESCRIPTION
//!   A call into mumail::tools::store_admin::reconstruct; the manual page has the
//!   flags and the output format.
//!
//! SEE ALSO
//!   reconstruct(8), imapd(8)

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(mumail::tools::store_admin::reconstruct(&args).emit());
}
