//! NAME
//!   postfix - control the mumail hub (Postfix's postfix(1))
//!
//! SYNOPSIS
//!   postfix [-Dv] [-c config_dir] command
//!
//! DESCRIPTION
//!   start runs postfix-master in the background and returns when it has
//!   written queue_directory/pid/master.pid; start-fg runs it in the
//!   foreground; stop ends it in order (abort at once); status reports
//!   whether it runs; check validates main.cf and master.cf; reload checks
//!   the configuration and signals the hub; flush attempts deferred mail.
//!   Messages are postfix-script's ("starting the Postfix mail system").
//!
//! SEE ALSO
//!   postfix-master(8), postqueue(1)

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(mumail::tools::postfix_ctl::postfix(&args).emit());
}
