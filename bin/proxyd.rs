//! NAME
//!   proxyd - the Murder front end's IMAP proxy (Cyrus imapd as proxy)
//!
//! SYNOPSIS
//!   proxyd [-C imapd.conf] [-s] [-L listen]...
//!
//! DESCRIPTION
//!   Logs IMAP users in on the front end and joins each session to the
//!   back end of the user's INBOX, as the local MUPDATE replica says.
//!   imapd runs this when imapd.conf makes the host a front end.
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
//!   imapd(8), mupdate(8), pop3proxyd(8), lmtpproxyd(8)

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(mumail::daemon::proxyd::main("proxyd", &args, false));
}
