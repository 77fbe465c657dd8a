//! Configuration: one reader per dialect, each driven by its parameter
//! registry, and typed views that daemons build once at start (and again on
//! reload).  Errors carry the original programs' wording, with file and line.
//!
//! - `postfix`: main.cf, master.cf, `$name` expansion, the parameter registry.
//! - `cyrus`: imapd.conf (with `@include` and service overrides), cyrus.conf.
//! - `sasl`: /etc/sysconfig/saslauthd and /etc/saslauthd.conf.

pub mod cyrus;
pub mod postfix;
pub mod sasl;

/// A configuration error, displayed exactly as the original program words it
/// after its `fatal: ` (Postfix) or `fatal error: ` (Cyrus) prefix.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be opened or read.
    Io { path: String, err: std::io::Error },
    /// Bad content; the message names file and line in the original wording.
    Syntax(String),
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::Io { path, err } => {
                write!(f, "open {path}: {}", crate::util::strerror(err))
            }
            ConfigError::Syntax(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Reads a whole configuration file, bounded: config files over this size
/// are refused rather than read into memory.
pub const MAX_CONFIG_FILE: u64 = 64 * 1024 * 1024;

pub fn read_file(path: &str) -> Result<Vec<u8>, ConfigError> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|err| ConfigError::Io {
        path: path.to_string(),
        err,
    })?;
    let mut buf = Vec::new();
    f.take(MAX_CONFIG_FILE + 1).read_to_end(&mut buf).map_err(|err| ConfigError::Io {
        path: path.to_string(),
        err,
    })?;
    if buf.len() as u64 > MAX_CONFIG_FILE {
        return Err(ConfigError::Syntax(format!("{path}: file is larger than {MAX_CONFIG_FILE} bytes")));
    }
    Ok(buf)
}
