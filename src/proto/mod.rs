//! Sans-I/O protocol codecs: bytes in, events out; no tokio, no storage.
//! Each codec is fuzzable on its own (`tests/fuzz/`).  Codecs arrive with
//! the daemons that speak them (saslauthd, LMTP/SMTP, IMAP, POP3, MUPDATE).
