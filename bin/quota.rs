//! NAME
//!   quota - Cyrus's quota over the mumail store
//!
//! SYNOPSIS
//!   see quota(8)
//!
//! DESCRIPTION
//!   A call into mumail::tools::store_admin::quota; the manual page has the
//!   flags and the output format.
//!
//! SEE ALSO
//!   quota(8), imapd(8)

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(mumail::tools::store_admin::quota(&args).emit());
}
