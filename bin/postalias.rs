//! NAME
//!   postalias - Postfix alias database query and check (mumail hub)
//!
//! SYNOPSIS
//!   postalias [-Nfinoprsuvw] [-c config_dir] [-q key] [map_type:]file...
//!
//! DESCRIPTION
//!   postmap(1) for aliases(5) sources ("name: value, value"): -q key, -q -,
//!   -s (listed as "name:<TAB>value"); without them each source is checked
//!   with postalias's warnings ("need name:value pair", duplicate entries).
//!   The hub reads alias tables from their text source: no .db is written.
//!
//! SEE ALSO
//!   newaliases(1), postmap(1), aliases(5)

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut stdin = std::io::stdin().lock();
    std::process::exit(mumail::tools::postmap::postalias(&args, &mut stdin).emit());
}
