//! NAME
//!   cyr_df - report the store's partitions' use (mumail)
//!
//! SYNOPSIS
//!   cyr_df [-C imapd.conf] [-m]
//!
//! DESCRIPTION
//!   A call into mumail::tools::mbpath::cyr_df; the manual page has the
//!   output.
//!
//! SEE ALSO
//!   cyr_df(8), mbpath(8), imapd.conf(5)

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(mumail::tools::mbpath::cyr_df(&args).emit());
}
