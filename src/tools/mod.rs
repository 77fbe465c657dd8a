//! The administration tools' logic (postconf, cyr_info, …); `bin/*` only
//! calls `main` here, so the tools can be tested in-process.

pub mod cyr_info;
pub mod cyrus_spool;
pub mod deliver;
pub mod expire;
pub mod local_source;
pub mod mboxlist;
pub mod mbpath;
pub mod migrate;
pub mod postconf;
pub mod postfix_ctl;
pub mod postmap;
pub mod postqueue;
pub mod sendmail;
pub mod store_admin;
pub mod testsaslauthd;

/// Captured output of a tool run: what it printed and its exit status.
#[derive(Debug, Default)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
    pub status: i32,
}

impl Output {
    /// A usage error: the usage text on stderr, exit 64 (EX_USAGE).
    pub fn usage(text: &str) -> Output {
        Output {
            stderr: text.to_string(),
            status: crate::util::exit::USAGE,
            ..Output::default()
        }
    }

    /// Writes the captured output to the real stdout/stderr; returns the status.
    pub fn emit(self) -> i32 {
        use std::io::Write;
        let _ = std::io::stdout().write_all(self.stdout.as_bytes());
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().write_all(self.stderr.as_bytes());
        self.status
    }
}
