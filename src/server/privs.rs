//! Dropping privilege after the sockets are bound: to `mail_owner`
//! (Postfix) or the `cyrus` user.  Refuses to "drop" to root.

use nix::unistd::{setgid, setgroups, setuid, Gid, Uid, User};

#[derive(Debug)]
pub enum PrivError {
    NoSuchUser(String),
    IsRoot(String),
    Sys(String, nix::Error),
}

impl std::fmt::Display for PrivError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PrivError::NoSuchUser(u) => write!(f, "unknown user: {u}"),
            PrivError::IsRoot(u) => write!(f, "user {u} has privileged user ID"),
            PrivError::Sys(what, e) => write!(f, "{what}: {}", e.desc()),
        }
    }
}

/// Switches to `user` (and its primary group) if running as root; a no-op
/// otherwise.
pub fn drop_to(user: &str) -> Result<(), PrivError> {
    if !Uid::effective().is_root() {
        return Ok(());
    }
    let u = User::from_name(user)
        .map_err(|e| PrivError::Sys(format!("getpwnam {user}"), e))?
        .ok_or_else(|| PrivError::NoSuchUser(user.into()))?;
    if u.uid.is_root() {
        return Err(PrivError::IsRoot(user.into()));
    }
    setgroups(&[u.gid]).map_err(|e| PrivError::Sys("setgroups".into(), e))?;
    setgid(u.gid).map_err(|e| PrivError::Sys("setgid".into(), e))?;
    setuid(u.uid).map_err(|e| PrivError::Sys("setuid".into(), e))?;
    let _ = Gid::current();
    Ok(())
}
