//! NAME
//!   imapd - IMAP4rev1 server of the mumail store (Cyrus imapd)
//!
//! SYNOPSIS
//!   imapd [-C imapd.conf] [-s] [-L listen]...
//!
//! DESCRIPTION
//!   Serves IMAP (RFC 3501) from the store that lmtpd delivers into,
//!   with Cyrus's greeting, capabilities, namespaces and reply texts.
//!   Listens on the -L addresses, sockets from systemd, or port 143.
//!
//! SECURITY
//!   Reads and writes the mail spool and the index databases; checks
//!   passwords through saslauthd; runs as cyrus.
//!
//! CONFIGURATION PARAMETERS
//!   configdirectory, partition-*, admins, allowplaintext, altnamespace,
//!   unixhierarchysep, virtdomains, autocreate_quota, maxmessagesize,
//!   timeout, sasl_pwcheck_method, sasl_saslauthd_path, servername.
//!
//! SEE ALSO
//!   lmtpd(8), master(8), imapd.conf(5)

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(mumail::daemon::imapd::main(&args));
}
