//! NAME
//!   postsuper - Postfix superintendent: delete, hold, release, requeue
//!
//! SYNOPSIS
//!   postsuper [-v] [-c config_dir] [-d queue_id] [-h queue_id]
//!   [-H queue_id] [-r queue_id] [queue...]
//!
//! DESCRIPTION
//!   Each queue_id may be ALL or - (IDs read from stdin). -d deletes (from
//!   hold, incoming, active, deferred), -h puts on hold, -H releases from
//!   hold into deferred for immediate delivery, -r requeues. The queue
//!   names limit the operation. A summary per operation goes to stderr
//!   (`postsuper: Deleted: 2 messages`), one log line per message.
//!
//! SECURITY
//!   Root only ("use of this command is reserved for the superuser").
//!
//! SEE ALSO
//!   postqueue(1), postfix-master(8)

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut stdin = std::io::stdin().lock();
    std::process::exit(mumail::tools::postqueue::postsuper(&args, &mut stdin).emit());
}
