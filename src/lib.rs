//! mumail: drop-in replacements for the Postfix hub, the Cyrus IMAP store and
//! Murder, and saslauthd, reading their configuration files unchanged.
//!
//! Layering (enforced by `tests/layering.rs`):
//! - `util`: no mail knowledge; `mail`: mail vocabulary.
//! - `proto`: sans-I/O codecs; imports only `util` and `mail`.
//! - `config`: the configuration dialects; imports `util`, `mail`.
//! - `log`: line formatters and writers; imports `util`, `config`.
//! - `queue`: the hub's queue files and group commit; `tables`: Postfix
//!   lookup tables; both import `util`, `mail`, `config`.
//! - `server`: the daemon skeleton; knows no protocol.
//! - `tools`: the administration commands' logic.
//! - `bin/*`: a manual-page header and a call into the library.

pub mod auth;
pub mod config;
pub mod daemon;
pub mod dns;
pub mod log;
pub mod mail;
pub mod proto;
pub mod queue;
pub mod server;
pub mod sieve;
pub mod store;
pub mod tables;
pub mod tools;
pub mod util;
