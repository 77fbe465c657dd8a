//! IMAP4rev1/rev2 (RFC 3501, RFC 9051) as Cyrus speaks it: the command
//! reader (lines and literals), the command parser, and the renderings of
//! messages (ENVELOPE, BODYSTRUCTURE, sections), and IMAP URLs.

pub mod command;
pub mod render;
pub mod stream;
pub mod url;
