//! NAME
//!   pop3proxyd - the Murder front end's POP3 proxy (Cyrus pop3d as proxy)
//!
//! SYNOPSIS
//!   pop3proxyd [-C imapd.conf] [-s] [-L listen]...
//!
//! DESCRIPTION
//!   Logs POP3 users in on the front end and joins each session to the
//!   back end of the user's INBOX, as the local MUPDATE replica says.
//!   pop3d runs this when imapd.conf makes the host a front end.
//!
//! SECURITY
//!   Checks passwords through saslauthd; logs in to back ends as
//!   proxy_authname for the user.
//!
//! CONFIGURATION PARAMETERS
//!   configdirectory, servername, mupdate_server, proxy_authname,
//!   proxy_password, <host>_password, serverlist, allowplaintext, admins,
//!   tls_server_cert, tls_server_key.
//!
//! SEE ALSO
//!   pop3d(8), mupdate(8), proxyd(8), lmtpproxyd(8)

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(mumail::daemon::proxyd::main("pop3proxyd", &args, true));
}
