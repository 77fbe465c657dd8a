//! NAME
//!   newaliases - check the alias databases (mumail hub)
//!
//! SYNOPSIS
//!   newaliases [-C config_dir]
//!
//! DESCRIPTION
//!   Runs postalias(1) on every table in alias_database, as sendmail -bi
//!   does. The hub reads alias tables from their text source, so the
//!   change is live without an indexed file; the check reports bad lines.
//!
//! SEE ALSO
//!   postalias(1), sendmail(1)

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut a = vec!["-bi".to_string()];
    a.extend(args);
    std::process::exit(mumail::tools::sendmail::sendmail(&a, &mut std::io::empty()).emit());
}
