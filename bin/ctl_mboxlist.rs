//! NAME
//!   ctl_mboxlist - Cyrus's ctl_mboxlist over the mumail store
//!
//! SYNOPSIS
//!   see ctl_mboxlist(8)
//!
//! DESCRIPTION
//!   A call into mumail::tools::mboxlist::ctl_mboxlist; the manual page has the flags and
//!   the output format.
//!
//! SEE ALSO
//!   ctl_mboxlist(8), imapd.conf(5)

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(mumail::tools::mboxlist::ctl_mboxlist(&args, &mut std::io::stdin()).emit());
}
