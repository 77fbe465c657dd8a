//! NAME
//!   mbexamine - Cyrus's mbexamine over the mumail store
//!
//! SYNOPSIS
//!   see mbexamine(8)
//!
//! DESCRIPTION
//!   A call into mumail::tools::mboxlist::mbexamine; the manual page has the flags and
//!   the output format.
//!
//! SEE ALSO
//!   mbexamine(8), imapd.conf(5)

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(mumail::tools::mboxlist::mbexamine(&args).emit());
}
