//! NAME
//!   postqueue - Postfix queue control (mumail hub)
//!
//! SYNOPSIS
//!   postqueue [-v] [-c config_dir] -f | -i queue_id | -j | -p | -s site
//!
//! DESCRIPTION
//!   -p lists the queue in mailq's format, -j as one JSON object per
//!   message; -f flushes (attempts every deferred message now), -i one
//!   deferred message, -s a fast_flush destination. The running hub
//!   answers over queue_directory/public/showq; when it is down, -p and -j
//!   read the queue directly with Postfix's warning and -f fails with exit
//!   status 69.
//!
//! SECURITY
//!   Needs no privilege to ask the hub; reading the queue directly needs
//!   access to queue_directory.
//!
//! SEE ALSO
//!   mailq(1), postsuper(1), postfix-master(8)

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(mumail::tools::postqueue::postqueue(&args).emit());
}
