//! `shadow`: the user's entry from the shadow database (getspnam_r, so NSS
//! sources work as with saslauthd) checked with crypt(3) from libxcrypt,
//! which knows every format RHEL and Debian write (yescrypt `$y$`, SHA-512
//! `$6$`, SHA-256 `$5$`, MD5 `$1$`, bcrypt `$2b$`, DES).  Replies as
//! saslauthd 2.1.28: `OK`, `NO Invalid username`, `NO Incorrect password`.

use super::{BoxFut, Credentials, Mechanism, Notes, Verdict};
use std::ffi::{CStr, CString};
use std::sync::Arc;

#[link(name = "crypt")]
unsafe extern "C" {
    /// libxcrypt: reentrant crypt with an explicit work area size.
    fn crypt_rn(phrase: *const libc::c_char, setting: *const libc::c_char, data: *mut libc::c_void, size: libc::c_int)
        -> *mut libc::c_char;
}

/// libxcrypt's `struct crypt_data` is 32768 bytes.
const CRYPT_DATA_SIZE: usize = 32768;

/// crypt(3) of `password` with the setting (salt and method) of `hash`;
/// true when it reproduces `hash`.  Constant-time comparison.
pub fn crypt_matches(password: &[u8], hash: &str) -> bool {
    let (Ok(p), Ok(h)) = (CString::new(password), CString::new(hash)) else {
        return false;
    };
    let mut data = vec![0u8; CRYPT_DATA_SIZE];
    // SAFETY: crypt_rn writes only inside `data` (size given) and returns
    // a pointer into it or NULL.
    let out = unsafe { crypt_rn(p.as_ptr(), h.as_ptr(), data.as_mut_ptr().cast(), CRYPT_DATA_SIZE as libc::c_int) };
    if out.is_null() {
        return false;
    }
    // SAFETY: non-NULL result is a NUL-terminated string inside `data`.
    let computed = unsafe { CStr::from_ptr(out) }.to_bytes();
    // "*0"/"*1" are libxcrypt's failure tokens.
    !computed.starts_with(b"*") && crate::util::ct_eq(computed, hash.as_bytes())
}

/// The hashed password of `user` from the shadow database.
fn shadow_hash(user: &str) -> Result<Option<String>, String> {
    let name = CString::new(user).map_err(|_| "NUL in user name".to_string())?;
    let mut sp: libc::spwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16384];
    let mut result: *mut libc::spwd = std::ptr::null_mut();
    // SAFETY: all pointers refer to live buffers of the stated sizes.
    let rc = unsafe { libc::getspnam_r(name.as_ptr(), &mut sp, buf.as_mut_ptr(), buf.len(), &mut result) };
    if result.is_null() {
        return if rc == 0 || rc == libc::ENOENT {
            Ok(None)
        } else {
            Err(format!("getspnam_r: {}", nix::errno::Errno::from_raw(rc).desc()))
        };
    }
    // SAFETY: on success sp_pwdp points into `buf`.
    let pw = unsafe { CStr::from_ptr(sp.sp_pwdp) }.to_string_lossy().into_owned();
    Ok(Some(pw))
}

pub struct Shadow {
    pub pool: Arc<tokio::sync::Semaphore>,
}

impl Mechanism for Shadow {
    fn name(&self) -> &'static str {
        "shadow"
    }

    fn check<'a>(&'a self, c: &'a Credentials) -> BoxFut<'a, (Verdict, Notes)> {
        Box::pin(async move {
            let login = c.login.clone();
            let pw = c.password.expose().clone();
            let r = super::blocking(&self.pool, move || match shadow_hash(&login) {
                Ok(None) => (Verdict::No("Invalid username".into()), vec![]),
                Ok(Some(h)) if crypt_matches(pw.as_bytes(), &h) => (Verdict::Ok, vec![]),
                Ok(Some(_)) => (Verdict::No("Incorrect password".into()), vec![]),
                Err(e) => (Verdict::No("Invalid username".into()), vec![format!("shadow: {e}")]),
            })
            .await;
            r.unwrap_or_else(|| {
                (
                    Verdict::No("internal mechanism failure".into()),
                    vec!["shadow: worker failed".into()],
                )
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::crypt_matches;

    #[test]
    fn crypt_formats() {
        // Hashes made with libxcrypt's own tools for the password "testpw".
        let cases = [
            "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$VenyQ/qDW5Xn.MprYXtgDx22lRcn07mCRXnZXj7jdB5",
            "$6$saltsalt$VBFFeVHdeQeT5fvFaHfOXzT9tShDx.GqV.MDHnrJOLfAZnXxHf0bKmtUZoIftgtgMXLdzhaVh7Tzf2TQjufJz0",
            "$5$saltsalt$CsXUD./auZDSh14NsX173OYfxHktYjk/1R/8izT7Ke1",
            "$1$saltsalt$XBF9f0dels9PmAf924c2l.",
            "$2b$05$saltsaltsaltsaltsaltsugA86Hhr0vqbjl7WFYXj4GNUZ3A7k7y2",
            "savgQBs/mIdYo",
        ];
        for h in cases {
            assert!(crypt_matches(b"testpw", h), "{h}");
            assert!(!crypt_matches(b"wrong", h), "{h}");
        }
        assert!(!crypt_matches(b"x", "!"));
        assert!(!crypt_matches(b"x", ""));
        assert!(!crypt_matches(b"x", "*"));
    }
}
