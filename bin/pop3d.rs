//! NAME
//!   pop3d - POP3 server of the mumail store (Cyrus pop3d)
//!
//! SYNOPSIS
//!   pop3d [-C imapd.conf] [-s] [-L listen]...
//!
//! DESCRIPTION
//!   Serves each user's INBOX by POP3 (RFC 1939, CAPA, STLS, AUTH) on port
//!   110 (or the -L addresses, master's socket, or systemd's), with Cyrus
//!   pop3d's replies; -s for implicit TLS (pop3s). Passwords are checked
//!   through saslauthd.
//!
//! SECURITY
//!   Reads the spool, expunges what users delete; runs as cyrus.
//!
//! CONFIGURATION PARAMETERS
//!   configdirectory, partition-*, allowplaintext, popminpoll, poptimeout,
//!   popuseimapflags, popuseacl, popexpiretime, autocreate_quota,
//!   tls_server_cert, tls_server_key, sasl_pwcheck_method,
//!   sasl_saslauthd_path, servername.
//!
//! SEE ALSO
//!   imapd(8), master(8), imapd.conf(5)

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(mumail::daemon::pop3d::main(&args));
}
