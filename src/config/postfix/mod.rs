//! Postfix configuration: main.cf and master.cf readers, `$name` expansion,
//! the parameter registry and the resolved parameter view.

pub mod expand;
pub mod host;
pub mod lines;
pub mod list;
pub mod main_cf;
pub mod master_cf;
pub mod params;
pub mod registry;

pub use main_cf::MainCf;
pub use master_cf::{MasterCf, Service};
pub use params::Params;

/// The configuration directory: `-c DIR`, else `$MAIL_CONFIG`, else
/// `/etc/postfix`.  The second value tells whether it was given explicitly
/// (then `config_directory` is set to it, as Postfix does).
pub fn config_directory(cli: Option<&str>) -> (String, bool) {
    if let Some(d) = cli {
        return (d.to_string(), true);
    }
    match std::env::var("MAIL_CONFIG") {
        Ok(d) if !d.is_empty() => (d, true),
        _ => ("/etc/postfix".to_string(), false),
    }
}
