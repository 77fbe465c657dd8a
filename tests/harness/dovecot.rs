//! The real Dovecot 2.3 in a temp dir (Maildir, passwd-file users) for
//! migrations from Dovecot and for benchmarks.  Its imap and pop3
//! programs come from Debian's dovecot-imapd and dovecot-pop3d packages,
//! downloaded once into a cache and unpacked in the temp dir: installing
//! them would remove cyrus-imapd (both provide imap-server).  dovecot-core
//! (the master, auth and login processes) must be installed.

use super::*;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Dovecot {
    pub conf: PathBuf,
    pub dir: PathBuf,
    pub imap_port: u16,
    pub pop_port: u16,
}

/// Where the downloaded dovecot-imapd and dovecot-pop3d packages are kept
/// between runs.
const DEB_CACHE: &str = "/var/cache/mumail-tests/dovecot";

/// The unpacked packages' root (cached), or why they are not there.
fn unpacked() -> Result<PathBuf, String> {
    let root = Path::new(DEB_CACHE).join("root");
    if root.join("usr/lib/dovecot/imap").exists() {
        return Ok(root);
    }
    // Built aside and renamed into place, so that parallel tests never
    // see half of it.
    let tmp = Path::new(DEB_CACHE).join(format!("tmp.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(tmp.join("debs")).map_err(|e| e.to_string())?;
    let got = Command::new("apt-get")
        .args(["download", "dovecot-imapd", "dovecot-pop3d"])
        .current_dir(tmp.join("debs"))
        .output()
        .map_err(|e| e.to_string())?;
    if !got.status.success() {
        return Err(format!("apt-get download: {}", String::from_utf8_lossy(&got.stderr)));
    }
    for e in std::fs::read_dir(tmp.join("debs")).map_err(|e| e.to_string())?.flatten() {
        let st = Command::new("dpkg-deb").arg("-x").arg(e.path()).arg(tmp.join("root")).status();
        if !st.map(|s| s.success()).unwrap_or(false) {
            return Err(format!("dpkg-deb -x {}", e.path().display()));
        }
    }
    if std::fs::rename(tmp.join("root"), &root).is_err() && !root.join("usr/lib/dovecot/imap").exists() {
        return Err(format!("cannot move {} into place", root.display()));
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(root)
}

impl Dovecot {
    /// Whether Dovecot can run here (dovecot-core installed; the
    /// packages downloadable).
    pub fn available() -> Result<(), String> {
        if !Path::new("/usr/sbin/dovecot").exists() {
            return Err("dovecot-core is not installed".into());
        }
        unpacked().map(|_| ())
    }

    /// Dovecot with Maildir++ mail in `dir/mail/<user>`, the users given
    /// (password testpw), IMAP and POP3 on new loopback ports.
    pub fn start(dir: &Path, users: &[&str]) -> Result<Dovecot, String> {
        Dovecot::available()?;
        let bin = unpacked()?.join("usr/lib/dovecot");
        for d in ["run", "state", "mail"] {
            std::fs::create_dir_all(dir.join(d)).map_err(|e| e.to_string())?;
        }
        Command::new("chown")
            .arg("nobody")
            .arg(dir.join("mail"))
            .status()
            .map_err(|e| e.to_string())?;
        let passwd: String = users.iter().map(|u| format!("{u}:{{PLAIN}}testpw\n")).collect();
        std::fs::write(dir.join("passwd"), passwd).map_err(|e| e.to_string())?;
        let (imap_port, pop_port) = (free_port(), free_port());
        let d = dir.display();
        let mut conf = format!(
            "base_dir = {d}/run\nstate_dir = {d}/state\nlog_path = {d}/dovecot.log\nprotocols = imap pop3\nlisten = 127.0.0.1\n\
             ssl = no\ndisable_plaintext_auth = no\nauth_mechanisms = plain login\nfirst_valid_uid = 0\n\
             mail_location = maildir:{d}/mail/%u\n\
             passdb {{\n  driver = passwd-file\n  args = {d}/passwd\n}}\n\
             userdb {{\n  driver = static\n  args = uid=nobody gid=nogroup home={d}/mail/%u\n}}\n\
             service imap-login {{\n  inet_listener imap {{\n    port = {imap_port}\n  }}\n  inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
             service pop3-login {{\n  inet_listener pop3 {{\n    port = {pop_port}\n  }}\n  inet_listener pop3s {{\n    port = 0\n  }}\n}}\n"
        );
        for s in ["imap-login", "pop3-login"] {
            // The login services have a block already: add the path.
            let key = format!("service {s} {{\n");
            conf = conf.replace(&key, &format!("{key}  executable = {}/{s}\n", bin.display()));
        }
        for s in [
            "imap",
            "pop3",
            "imap-urlauth",
            "imap-urlauth-login",
            "imap-urlauth-worker",
            "imap-hibernate",
        ] {
            conf.push_str(&format!("service {s} {{\n  executable = {}/{s}\n}}\n", bin.display()));
        }
        let path = dir.join("dovecot.conf");
        std::fs::write(&path, conf).map_err(|e| e.to_string())?;
        let st = Command::new("/usr/sbin/dovecot")
            .arg("-c")
            .arg(&path)
            .status()
            .map_err(|e| e.to_string())?;
        if !st.success() {
            return Err(format!("dovecot -c {} failed", path.display()));
        }
        wait_tcp(imap_port);
        Ok(Dovecot {
            conf: path,
            dir: dir.to_path_buf(),
            imap_port,
            pop_port,
        })
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = Command::new("/usr/sbin/dovecot").arg("-c").arg(&self.conf).arg("stop").output();
    }
}
