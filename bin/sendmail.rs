//! NAME
//!   sendmail - Postfix to Sendmail compatibility interface (mumail hub)
//!
//! SYNOPSIS
//!   sendmail [-tiv] [-oi] [-f sender] [-F full_name] [-C config_dir]
//!   [-bp] [-bs] [-bi] [-q] [recipient ...]
//!
//! DESCRIPTION
//!   Reads a message from standard input (until end of file, or a line with
//!   a single dot unless -i or -oi) and hands it to the running hub through
//!   queue_directory/public/pickup. -t adds the To, Cc and Bcc recipients
//!   and removes Bcc; -f/-r set the envelope sender; -F the full name used
//!   in an added From. -bp lists the queue (mailq), -q flushes it, -bi
//!   rebuilds the aliases, -bs runs SMTP on stdin/stdout through the hub's
//!   public/smtpd with the access controls off. The options Postfix
//!   accepts and ignores are accepted and ignored.
//!
//! SECURITY
//!   Unprivileged; the hub learns the submitting user from the socket.
//!
//! DIAGNOSTICS
//!   sysexits codes: 75 when recipients are missing or the mail system is
//!   down, 65 for a message over message_size_limit, 64 for bad options.
//!
//! SEE ALSO
//!   mailq(1), postqueue(1), postfix-master(8)

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut stdin = std::io::stdin().lock();
    std::process::exit(mumail::tools::sendmail::sendmail(&args, &mut stdin).emit());
}
