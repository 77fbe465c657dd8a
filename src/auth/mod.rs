//! Password checking against the directory (saslauthd's mechanisms):
//! `shadow`, `pam`, `ldap`, `kerberos5`, `rimap`, and the credential cache.
//! Blocking mechanisms run on a bounded pool; every check has a deadline;
//! a dependency outage gives a `NO` with its reason logged, never a hang.
//! Passwords only ever travel as `mail::Secret`.

pub mod cache;
#[cfg(feature = "krb5")]
pub mod gssapi;
#[cfg(feature = "krb5")]
pub mod krb5;
#[cfg(feature = "krb5")]
pub mod krb5_s2k;
pub mod ldap;
#[cfg(feature = "pam")]
pub mod pam;
pub mod pts;
pub mod rimap;
pub mod shadow;

use crate::mail::Secret;
use std::future::Future;
use std::pin::Pin;

/// What a mechanism checks: the request's four fields (login possibly
/// rejoined with `@realm` under `-r`).
#[derive(Debug, Clone)]
pub struct Credentials {
    pub login: String,
    pub password: Secret<String>,
    pub service: String,
    pub realm: String,
}

/// A mechanism's answer, as saslauthd words it on the wire (`OK`, `NO reason`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// Success with saslauthd's text after `OK` (rimap).
    OkWith(String),
    No(String),
}

impl Verdict {
    pub fn reply(&self) -> String {
        match self {
            Verdict::Ok => "OK".to_string(),
            Verdict::OkWith(t) => format!("OK {t}"),
            Verdict::No(r) if r.is_empty() => "NO".to_string(),
            Verdict::No(r) => format!("NO {r}"),
        }
    }
    pub fn is_ok(&self) -> bool {
        matches!(self, Verdict::Ok | Verdict::OkWith(_))
    }
    /// A refusal because what checks passwords (the KDC, the directory,
    /// the remote IMAP server) cannot be reached: `NO [UNAVAILABLE] why`.
    /// saslauthd's clients (libsasl, Postfix, Cyrus) see a `NO`; ours
    /// answer a temporary failure instead of "wrong password".
    pub fn unavailable(why: &str) -> Verdict {
        Verdict::No(format!("{UNAVAILABLE} {why}"))
    }
}

/// The mark that opens the text of an "unavailable" `NO`.
pub const UNAVAILABLE: &str = "[UNAVAILABLE]";

pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Something to log from a check (a server down, a timeout), never a secret.
pub type Notes = Vec<String>;

/// One authentication mechanism (`-a NAME`).
pub trait Mechanism: Send + Sync {
    fn name(&self) -> &'static str;
    /// Checks the credentials; notes are log lines for the daemon.
    fn check<'a>(&'a self, c: &'a Credentials) -> BoxFut<'a, (Verdict, Notes)>;
    /// Warnings about the configuration, logged once at start-up.
    fn startup_notes(&self) -> Notes {
        Vec::new()
    }
}

/// The mechanisms this build has, as `saslauthd -v` lists them.
pub fn mechanism_names() -> Vec<&'static str> {
    let mut v = vec![];
    #[cfg(feature = "krb5")]
    v.push("kerberos5");
    #[cfg(feature = "pam")]
    v.push("pam");
    v.extend(["rimap", "shadow", "ldap"]);
    v
}

/// Runs blocking work on tokio's blocking pool under a concurrency bound.
pub async fn blocking<T: Send + 'static>(limit: &tokio::sync::Semaphore, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let _permit = limit.acquire().await.ok()?;
    tokio::task::spawn_blocking(f).await.ok()
}
