//! NAME
//!   mailq - list the mail queue (Postfix sendmail -bp)
//!
//! SYNOPSIS
//!   mailq [-v] [-C config_dir]
//!
//! DESCRIPTION
//!   Prints the queue as postqueue -p does.
//!
//! SEE ALSO
//!   postqueue(1), postsuper(1)

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(mumail::tools::postqueue::mailq(&args).emit());
}
