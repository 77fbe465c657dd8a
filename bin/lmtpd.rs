//! NAME
//!   lmtpd - deliver mail into the mumail store by LMTP (Cyrus lmtpd)
//!
//! SYNOPSIS
//!   lmtpd [-C imapd.conf] [-a] [-L listen]...
//!
//! DESCRIPTION
//!   Accepts LMTP (RFC 2033) on `lmtpsocket` (or the -L addresses, or
//!   sockets from systemd) and delivers each recipient's copy into the
//!   store, answering once per recipient after DATA. UNIX-socket clients
//!   are trusted as postman; TCP clients authenticate unless -a.
//!
//! SECURITY
//!   Writes the mail spool and the index databases; runs as cyrus.
//!
//! CONFIGURATION PARAMETERS
//!   configdirectory, partition-*, defaultpartition, lmtpsocket,
//!   maxmessagesize, duplicatesuppression, autocreate_post,
//!   autocreate_quota, lmtp_over_quota_perm_failure, lmtp_downcase_rcpt,
//!   sasl_pwcheck_method, sasl_saslauthd_path, servername.
//!
//! SEE ALSO
//!   imapd(8), master(8), imapd.conf(5)

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(mumail::daemon::lmtpd::main(&args));
}
