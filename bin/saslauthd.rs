//! NAME
//!     saslauthd - sasl authentication server (mumail)
//! SYNOPSIS
//!     saslauthd -a authmech [-Vdhlcrv] [-O option] [-m run_path] [-n threads] [-s size] [-t timeout]
//! DESCRIPTION
//!     Answers plaintext password checks from libsasl clients (Postfix,
//!     Cyrus) on <run_path>/mux, checking them with shadow, pam, ldap,
//!     kerberos5 or rimap, as Cyrus SASL 2.1.28's saslauthd does.
//! SECURITY
//!     Runs as root to read /etc/shadow or use PAM; the socket is mode 0777
//!     and access is gated by the run directory's permissions.  Passwords
//!     are never logged; the cache keeps salted SHA-256 digests only.
//! DIAGNOSTICS
//!     syslog facility auth (stderr with -d).
//! SEE ALSO
//!     testsaslauthd(8), saslauthd.conf

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(mumail::daemon::saslauthd::main(&args));
}
