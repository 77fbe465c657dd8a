//! NAME
//!   master - run the store's services from cyrus.conf (Cyrus master)
//!
//! SYNOPSIS
//!   master [-C imapd.conf] [-M cyrus.conf] [-p pidfile] [-d | -D]
//!
//! DESCRIPTION
//!   Runs START entries, binds each SERVICES socket and starts its program
//!   with the socket on fd 4, runs EVENTS on schedule and DAEMON entries,
//!   restarting what dies; SIGTERM stops everything.
//!
//! SEE ALSO
//!   master(8), cyrus.conf(5), imapd(8), lmtpd(8)

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(mumail::daemon::master::main(&args));
}
