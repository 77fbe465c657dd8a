//! NAME
//!   mumail-migrate - copy users' mail from an IMAP server into the cluster
//!
//! SYNOPSIS
//!   mumail-migrate {-s source | -C cyrus_imapd.conf} -d dest [-a admin:pw]
//!                  [-A admin:pw] [-u userfile] [-S statedir] [-P parallel]
//!                  [-n] [user...]
//!
//! DESCRIPTION
//!   Copies every folder of each user, with flags, keywords and internal
//!   dates; later runs copy only what changed (new, reflagged, expunged);
//!   a killed run restarts where it stopped.  From a Cyrus spool (-C) the
//!   UIDs and UIDVALIDITY are kept.  See mumail-migrate(8).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(mumail::tools::migrate::main(&args));
}
