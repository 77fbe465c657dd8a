//! NAME
//!   lmtpproxyd - the Murder front end's LMTP proxy (Cyrus lmtpd as proxy)
//!
//! SYNOPSIS
//!   lmtpproxyd [-C imapd.conf] [-a] [-L listen]...
//!
//! DESCRIPTION
//!   Accepts LMTP from the hub and delivers each recipient through the
//!   back end that holds its mailbox, as the local MUPDATE replica says.
//!   lmtpd runs this when imapd.conf makes the host a front end.
//!
//! SECURITY
//!   Reads the replica's table; logs in to back ends as proxy_authname.
//!
//! CONFIGURATION PARAMETERS
//!   configdirectory, servername, mupdate_server, proxy_authname,
//!   proxy_password, <host>_password, lmtp_downcase_rcpt, lmtpsocket,
//!   maxmessagesize, admins.
//!
//! SEE ALSO
//!   lmtpd(8), mupdate(8), imapd.conf(5)

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(mumail::daemon::lmtpproxy::main(&args));
}
