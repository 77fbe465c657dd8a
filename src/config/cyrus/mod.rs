//! Cyrus configuration: imapd.conf (the option registry, `@include`,
//! `<service>_<option>` overrides, deprecated aliases, the overflow table for
//! `partition-*`, `sasl_*`, `<host>_password`) and cyrus.conf.

pub mod cyrus_conf;
pub mod imapd_conf;
pub mod options;

pub use cyrus_conf::CyrusConf;
pub use imapd_conf::ImapdConf;
