//! A user's Sieve scripts, kept where Cyrus keeps them with
//! `mailbox_legacy_dirs` (and where Cyrus 2.x kept them): in
//! `<sievedir>/<hash>/<user>/`, each script as `<name>.script`, the
//! active one named by the symbolic link `defaultbc` → `<name>.bc`.
//! Cyrus compiled each script into that `.bc`; we run the source and
//! write no bytecode, so a `.bc` left by Cyrus is removed when its
//! script is replaced, renamed or deleted here (it would be stale).
//! Written as Cyrus's timsieved writes them: a new file, fsynced, renamed
//! over the old, the directory fsynced.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The link naming the active script.
const ACTIVE: &str = "defaultbc";

pub struct Scripts {
    dir: PathBuf,
}

/// The longest script name, in octets: `<name>.script` and its temporary
/// twin stay under the file system's 255.
pub const MAX_NAME: usize = 200;

/// A script name as RFC 5804 allows it (UTF-8, no control characters,
/// not empty) that also makes a file name (no `/`, not too long).
pub fn valid_name(name: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(name).ok()?;
    let bad = |c: char| {
        c == '/' || c.is_control() || c == '\u{2028}' || c == '\u{2029}' // is_control: C0, DEL and C1
    };
    (!s.is_empty() && s.len() <= MAX_NAME && !s.chars().any(bad)).then_some(s)
}

impl Scripts {
    /// The scripts of the user whose INBOX is `inbox` (internal name).
    pub fn of(sievedir: &Path, inbox: &str, fulldirhash: bool) -> Scripts {
        Scripts {
            dir: super::names::sieve_dir(sievedir, inbox, fulldirhash),
        }
    }

    /// The scripts in `dir` (a directory `of` named).
    pub fn at(dir: PathBuf) -> Scripts {
        Scripts { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.script"))
    }

    /// The scripts' names, sorted, and which one is active.
    pub fn list(&self) -> std::io::Result<(Vec<String>, Option<String>)> {
        let mut names = Vec::new();
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((names, None)),
            Err(e) => return Err(e),
        };
        for e in rd {
            let e = e?;
            let f = e.file_name();
            if let Some(n) = f.to_str().and_then(|f| f.strip_suffix(".script")) {
                if valid_name(n.as_bytes()).is_some() && e.file_type()?.is_file() {
                    names.push(n.to_string());
                }
            }
        }
        names.sort();
        let active = self.active().filter(|a| names.contains(a));
        Ok((names, active))
    }

    /// The active script's name (the `defaultbc` link's target, less
    /// `.bc`), whether or not its source is there.
    pub fn active(&self) -> Option<String> {
        let link = std::fs::read_link(self.dir.join(ACTIVE)).ok()?;
        let name = link.file_name()?.to_str()?.to_string();
        Some(name.strip_suffix(".bc").unwrap_or(&name).to_string())
    }

    pub fn exists(&self, name: &str) -> bool {
        self.file(name).is_file()
    }

    /// A script's source, read up to `max` octets (Err past that).
    pub fn get(&self, name: &str, max: u64) -> std::io::Result<Option<Vec<u8>>> {
        let f = match std::fs::File::open(self.file(name)) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut src = Vec::new();
        f.take(max + 1).read_to_end(&mut src)?;
        if src.len() as u64 > max {
            return Err(std::io::Error::other(format!(
                "{}: larger than {max} bytes",
                self.file(name).display()
            )));
        }
        Ok(Some(src))
    }

    /// Stores a script (new or replacing one), on disk before it returns.
    pub fn put(&self, name: &str, src: &[u8]) -> std::io::Result<()> {
        self.make_dir()?;
        let tmp = self.dir.join(format!("{name}.script.NEW{}", std::process::id()));
        let res = (|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(src)?;
            f.sync_all()?;
            std::fs::rename(&tmp, self.file(name))
        })();
        if res.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        res?;
        self.drop_bytecode(name);
        super::ops::sync_dir(&self.dir)
    }

    /// Deletes a script (not the active one: the caller checks).  False
    /// when there is none of that name.
    pub fn delete(&self, name: &str) -> std::io::Result<bool> {
        match std::fs::remove_file(self.file(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        }
        self.drop_bytecode(name);
        super::ops::sync_dir(&self.dir)?;
        Ok(true)
    }

    /// Renames a script (the caller checks that `old` exists and `new`
    /// does not); the active one stays active under its new name.
    pub fn rename(&self, old: &str, new: &str) -> std::io::Result<()> {
        std::fs::rename(self.file(old), self.file(new))?;
        self.drop_bytecode(old);
        if self.active().as_deref() == Some(old) {
            self.set_active(Some(new))?;
        }
        super::ops::sync_dir(&self.dir)
    }

    /// Makes `name` the active script, or none.
    pub fn set_active(&self, name: Option<&str>) -> std::io::Result<()> {
        let link = self.dir.join(ACTIVE);
        match name {
            None => match std::fs::remove_file(&link) {
                Ok(()) => super::ops::sync_dir(&self.dir),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            },
            Some(n) => {
                self.make_dir()?;
                let tmp = self.dir.join(format!("{ACTIVE}.NEW{}", std::process::id()));
                let _ = std::fs::remove_file(&tmp);
                std::os::unix::fs::symlink(format!("{n}.bc"), &tmp)?;
                std::fs::rename(&tmp, &link)?;
                super::ops::sync_dir(&self.dir)
            }
        }
    }

    /// Cyrus's bytecode of a script changed here no longer matches it.
    fn drop_bytecode(&self, name: &str) {
        let _ = std::fs::remove_file(self.dir.join(format!("{name}.bc")));
    }

    fn make_dir(&self) -> std::io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.dir)
    }
}

use std::os::unix::fs::OpenOptionsExt;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_make_files() {
        assert_eq!(valid_name(b"main"), Some("main"));
        assert_eq!(valid_name("vacances été".as_bytes()), Some("vacances été"));
        assert_eq!(valid_name(b".x"), Some(".x"));
        for bad in [
            &b""[..],
            b"a/b",
            b"a\tb",
            b"a\x7fb",
            b"\xff",
            "a\u{2028}".as_bytes(),
            "a\u{85}".as_bytes(),
        ] {
            assert_eq!(valid_name(bad), None, "{bad:?}");
        }
        assert!(valid_name(&[b'n'; MAX_NAME]).is_some());
        assert!(valid_name(&[b'n'; MAX_NAME + 1]).is_none());
    }

    #[test]
    fn put_list_activate_rename_delete() {
        let d = tempfile::tempdir().unwrap();
        let s = Scripts::of(d.path(), "user.u7", false);
        assert_eq!(s.list().unwrap(), (vec![], None));
        s.put("b", b"keep;").unwrap();
        s.put("a", b"stop;").unwrap();
        // A Cyrus bytecode of the old "a" goes when "a" is replaced.
        std::fs::write(s.dir().join("a.bc"), b"old").unwrap();
        s.put("a", b"discard;").unwrap();
        assert!(!s.dir().join("a.bc").exists());
        assert_eq!(s.get("a", 100).unwrap().unwrap(), b"discard;");
        assert!(s.get("a", 3).is_err());
        s.set_active(Some("a")).unwrap();
        assert_eq!(s.list().unwrap(), (vec!["a".into(), "b".into()], Some("a".into())));
        assert_eq!(std::fs::read_link(s.dir().join("defaultbc")).unwrap(), Path::new("a.bc"));
        s.rename("a", "c").unwrap();
        assert_eq!(s.list().unwrap(), (vec!["b".into(), "c".into()], Some("c".into())));
        s.set_active(None).unwrap();
        assert!(s.delete("c").unwrap());
        assert!(!s.delete("c").unwrap());
        assert_eq!(s.list().unwrap(), (vec!["b".into()], None));
        // No temporary file left behind.
        let files: Vec<_> = std::fs::read_dir(s.dir()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(files, vec![std::ffi::OsString::from("b.script")]);
    }
}
