//! NAME
//!   timsieved - ManageSieve server of the mumail store (Cyrus timsieved)
//!
//! SYNOPSIS
//!   timsieved [-C imapd.conf] [-L listen]...
//!
//! DESCRIPTION
//!   Lets users upload, list, activate and delete their Sieve scripts by
//!   ManageSieve (RFC 5804) on port 4190 (or the -L addresses, master's
//!   socket, or systemd's), with Cyrus timsieved's replies. Scripts are
//!   checked before they are stored, and kept in `sievedir` where lmtpd
//!   runs them. Passwords are checked through saslauthd.
//!
//! SECURITY
//!   Writes the users' script directories under sievedir; runs as cyrus.
//!
//! CONFIGURATION PARAMETERS
//!   sievedir, sieve_maxscripts, sieve_maxscriptsize, sieve_extensions,
//!   allowplaintext, admins, proxyservers, timeout, tls_server_cert,
//!   tls_server_key, sasl_pwcheck_method, sasl_saslauthd_path.
//!
//! SEE ALSO
//!   lmtpd(8), sieveshell(1), master(8), imapd.conf(5)

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(mumail::daemon::timsieved::main(&args));
}
