//! NAME
//!   postfix-master - the mumail hub: smtpd services, queue manager and
//!   delivery agents in one process (Postfix master(8) and its children)
//!
//! SYNOPSIS
//!   postfix-master [-Ddistvw] [-c config_dir] [-e exit_time]
//!
//! DESCRIPTION
//!   Reads main.cf and master.cf from the configuration directory (-c,
//!   $MAIL_CONFIG, /etc/postfix), recovers the queue under
//!   queue_directory, then serves every `inet` service whose command is
//!   smtpd (with its -o overrides) and delivers queued mail through the
//!   master.cf transports lmtp, smtp, pipe, error, retry and discard. It stays in the
//!   foreground; postfix(1) start runs it in the background.
//!
//! SECURITY
//!   Binds the SMTP ports as root, then runs as mail_owner. Writes only
//!   the queue; never a mailbox. A helper process started before that
//!   keeps root only to run pipe(8) commands as their user= and alias
//!   commands as default_privs.
//!
//! DIAGNOSTICS
//!   Postfix-style log lines tagged $syslog_name/smtpd, /cleanup, /qmgr,
//!   /lmtp, /bounce; fatal configuration errors exit 78.
//!
//! CONFIGURATION PARAMETERS
//!   queue_directory, mail_owner, inet_interfaces, myhostname, mydomain,
//!   myorigin, mydestination, mynetworks, relay_domains, the smtpd_*
//!   restriction lists, message_size_limit, line_length_limit,
//!   local_recipient_maps, mailbox_transport, local_transport,
//!   virtual_transport, relay_transport, default_transport, relayhost,
//!   minimal_backoff_time, maximal_backoff_time, queue_run_delay,
//!   maximal_queue_lifetime, bounce_queue_lifetime, soft_bounce.
//!
//! SEE ALSO
//!   postconf(5), master(5), smtpd(8), qmgr(8), lmtp(8)

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(mumail::daemon::hub::main(&args));
}
