//! NAME
//!   mupdate - the Cyrus Murder's mailbox directory (RFC 3656)
//!
//! SYNOPSIS
//!   mupdate [-C imapd.conf] [-m | -a] [-L listen]...
//!
//! DESCRIPTION
//!   With -m, the MUPDATE master: back ends record their mailboxes in it,
//!   front ends look them up and stream its changes.  Without -m, a front
//!   end's replica of the master (mupdate_server), answering lookups from
//!   a local copy that survives the master's outages.  -a chooses master
//!   mode when mupdate_server is an address of this host.
//!
//! SECURITY
//!   Only identities in admins may authenticate.  Keeps its table in
//!   {configdirectory}/mupdate.db; runs as cyrus.
//!
//! CONFIGURATION PARAMETERS
//!   configdirectory, servername, admins, allowplaintext, sasl_mech_list,
//!   sasl_pwcheck_method, sasl_saslauthd_path, mupdate_config,
//!   mupdate_server, mupdate_port, mupdate_username, mupdate_authname,
//!   mupdate_password, mupdate_retry_delay, mupdate_connections_max,
//!   mupdate_workers_*, tls_server_cert, tls_server_key.
//!
//! SEE ALSO
//!   master(8), ctl_mboxlist(8), imapd.conf(5)

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(mumail::daemon::mupdate::main(&args));
}
