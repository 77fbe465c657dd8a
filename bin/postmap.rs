//! NAME
//!   postmap - Postfix lookup table query and check (mumail hub)
//!
//! SYNOPSIS
//!   postmap [-Nfinoprsuvw] [-c config_dir] [-q key] [map_type:]file...
//!
//! DESCRIPTION
//!   -q key prints the value of key from the first table that has it (exit
//!   status 0, or 1 when not found); -q - reads keys from stdin and prints
//!   key TAB value for each found; -s lists a table. Without -q or -s the
//!   source files are checked as postmap does while building, with its
//!   duplicate-entry warnings. The hub reads hash:, btree: and lmdb:
//!   tables from their text source, so no indexed file is written.
//!
//! SEE ALSO
//!   postconf(5), postfix-master(8)

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut stdin = std::io::stdin().lock();
    std::process::exit(mumail::tools::postmap::postmap(&args, &mut stdin).emit());
}
