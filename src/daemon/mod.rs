//! The daemons: where protocol codecs meet authentication and storage.
//! One directory per daemon; each is a session state machine over `proto`
//! plus `auth` / `store` / `queue`.

pub mod backend_pool;
pub mod cyrus;
pub mod front;
pub mod hub;
pub mod imap_proxy;
pub mod imapd;
pub mod lmtpd;
pub mod lmtpproxy;
pub mod master;
pub mod mupdate;
pub mod peer_tls;
pub mod pop3d;
pub mod proxyd;
pub mod qmgr;
pub mod saslauthd;
pub mod saslauthd_client;
pub mod smtpd;
pub mod timsieved;
