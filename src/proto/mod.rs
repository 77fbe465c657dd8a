//! Sans-I/O protocol codecs: bytes in, events out; no tokio, no storage.
//! Each codec is fuzzable on its own (`tests/fuzz/`).

pub mod dlist;
pub mod haproxy;
pub mod imap;
pub mod lmtp;
pub mod managesieve;
pub mod milter;
pub mod mupdate;
pub mod saslauthd;
pub mod smtp;
