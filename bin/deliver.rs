//! NAME
//!   deliver - deliver a message to the mail store by LMTP (mumail)
//!
//! SYNOPSIS
//!   deliver [-C imapd.conf] [-d] [-e] [-q] [-r|-f sender] [-m mailbox] [-a authid] [user...]
//!
//! DESCRIPTION
//!   A call into mumail::tools::deliver::deliver with the standard input;
//!   the manual page has the flags, the output and the exit statuses.
//!
//! SEE ALSO
//!   deliver(8), lmtpd(8)

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let o = mumail::tools::deliver::deliver(&args, &mut std::io::stdin().lock());
    std::process::exit(o.emit());
}
