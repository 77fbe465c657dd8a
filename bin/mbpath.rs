//! NAME
//!   mbpath - where the store keeps a mailbox (mumail)
//!
//! SYNOPSIS
//!   mbpath [-C imapd.conf] [-l] [-m] [-q] [-s] [-7] [-u|-p] [-a|-j|-A|-D|-M|-S|-U] mailbox...
//!
//! DESCRIPTION
//!   A call into mumail::tools::mbpath::mbpath; the manual page has the
//!   flags and the output.
//!
//! SEE ALSO
//!   mbpath(8), cyr_df(8), imapd.conf(5)

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(mumail::tools::mbpath::mbpath(&args).emit());
}
