//! mumail-migrate's local sources: a user's Maildir++ tree or mbox files.
//!
//! A folder is listed once per run: each message gets a stable key (a
//! Maildir file's base name; for mbox, a digest of the message as it will
//! be sent, with an occurrence number for copies), its flags, its internal
//! date and its exact size as sent (line ends made CRLF; for mbox, the
//! status headers removed and `>From ` unquoted).  Bodies are read again
//! when a batch is copied.  Problems (a truncated Maildir file, a broken
//! mbox separator, bytes before the first `From ` line, a message over the
//! size limit) are reported per message and the rest goes on.

use std::io::{BufRead, Read, Seek};
use std::path::{Path, PathBuf};

/// The largest message read (as mumail-migrate's IMAP path).
const MAX_MESSAGE: u64 = 256 << 20;

#[derive(Debug, Clone)]
pub struct Message {
    pub key: String,
    pub flags: Vec<String>,
    /// Internal date, seconds since the epoch (UTC).
    pub time: i64,
    /// Bytes as sent.
    pub size: u64,
    loc: Loc,
}

#[derive(Debug, Clone)]
enum Loc {
    File(PathBuf),
    Mbox { path: PathBuf, offset: u64, len: u64 },
}

#[derive(Debug, Default)]
pub struct Folder {
    /// Relative to the personal namespace, `/` between levels, modified
    /// UTF-7; `INBOX` for the inbox.
    pub name: String,
    pub messages: Vec<Message>,
    /// One line per message left out, with the reason.
    pub problems: Vec<String>,
}

impl Message {
    /// The message as it is sent to the destination.
    pub fn read(&self) -> Result<Vec<u8>, String> {
        match &self.loc {
            Loc::File(p) => {
                let raw = read_limited(p)?;
                Ok(crlf(&raw))
            }
            Loc::Mbox { path, offset, len } => {
                let mut f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
                f.seek(std::io::SeekFrom::Start(*offset)).map_err(|e| e.to_string())?;
                let mut raw = vec![0u8; *len as usize];
                f.read_exact(&mut raw).map_err(|e| format!("{}: {e}", path.display()))?;
                Ok(mbox_message(&raw).0)
            }
        }
    }
}

fn read_limited(p: &Path) -> Result<Vec<u8>, String> {
    crate::tools::cyrus_spool::read_limited(p, MAX_MESSAGE)
}

/// Bare LF (and a lone CR) become CRLF.
fn crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 40);
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'\r' if raw.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 1;
            }
            b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// A name from the file system as an IMAP name: kept if it is ASCII
/// (modified UTF-7 already, as Courier and Dovecot write them), else
/// encoded.
fn imap_name(s: &str) -> String {
    if s.is_ascii() {
        s.to_string()
    } else {
        crate::store::names::utf8_to_mutf7(s)
    }
}

fn mtime(p: &Path) -> i64 {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64)
}

// ---- Maildir ----

/// Every folder of a Maildir++ tree: the root's `cur`/`new` are INBOX,
/// each `.A.B` directory the folder `A/B`.
pub fn maildir(root: &Path) -> Result<Vec<Folder>, String> {
    if !root.join("cur").is_dir() {
        return Err(format!("{}: not a Maildir (no cur/)", root.display()));
    }
    let mut out = vec![maildir_folder(root, "INBOX".to_string())];
    let mut subs: Vec<(String, PathBuf)> = std::fs::read_dir(root)
        .map_err(|e| format!("{}: {e}", root.display()))?
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let name = n.strip_prefix('.')?;
            (!name.is_empty() && name != "." && e.path().join("cur").is_dir()).then(|| (imap_name(&name.replace('.', "/")), e.path()))
        })
        .collect();
    subs.sort();
    for (name, dir) in subs {
        out.push(maildir_folder(&dir, name));
    }
    Ok(out)
}

fn maildir_folder(dir: &Path, name: String) -> Folder {
    let mut f = Folder { name, ..Folder::default() };
    // Dovecot's keyword letters: `a` is the name on line `0 name`.
    let keywords: Vec<(char, String)> = std::fs::read_to_string(dir.join("dovecot-keywords"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (n, k) = l.split_once(' ')?;
            let n: u8 = n.parse().ok().filter(|n| *n < 26)?;
            Some(((b'a' + n) as char, k.to_string()))
        })
        .collect();
    for sub in ["new", "cur"] {
        let Ok(rd) = std::fs::read_dir(dir.join(sub)) else { continue };
        let mut names: Vec<String> = rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        for n in names.into_iter().filter(|n| !n.starts_with('.')) {
            let path = dir.join(sub).join(&n);
            let (base, info) = n.split_once(':').unwrap_or((&n, ""));
            let mut flags = Vec::new();
            if let Some(letters) = info.strip_prefix("2,") {
                for c in letters.chars() {
                    match c {
                        'D' => flags.push("\\Draft".to_string()),
                        'F' => flags.push("\\Flagged".to_string()),
                        'P' => flags.push("$Forwarded".to_string()),
                        'R' => flags.push("\\Answered".to_string()),
                        'S' => flags.push("\\Seen".to_string()),
                        'T' => flags.push("\\Deleted".to_string()),
                        c => flags.extend(keywords.iter().filter(|(l, _)| *l == c).map(|(_, k)| k.clone())),
                    }
                }
            }
            // `,S=<size>` (Dovecot, Courier): the file's size when written.
            let want: Option<u64> = base.split(',').find_map(|p| p.strip_prefix("S=")?.parse().ok());
            let body = match read_limited(&path) {
                Ok(b) => b,
                Err(e) => {
                    f.problems.push(format!("{}: {e}", f.name));
                    continue;
                }
            };
            if let Some(w) = want.filter(|w| (body.len() as u64) < *w) {
                f.problems.push(format!("{}: {n}: truncated ({} of {w} bytes)", f.name, body.len()));
                continue;
            }
            if body.is_empty() {
                f.problems.push(format!("{}: {n}: empty file", f.name));
                continue;
            }
            f.messages.push(Message {
                key: base.to_string(),
                flags,
                time: mtime(&path),
                size: crlf(&body).len() as u64,
                loc: Loc::File(path),
            });
        }
    }
    f
}

/// The subscriptions a Maildir++ tree records (Dovecot's `subscriptions`,
/// Courier's `courierimapsubscribed`), as relative names.
pub fn maildir_subscriptions(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for (file, prefix) in [("subscriptions", ""), ("courierimapsubscribed", "INBOX.")] {
        for l in std::fs::read_to_string(root.join(file)).unwrap_or_default().lines() {
            let l = l.trim();
            if l.is_empty() || l.starts_with("V\t") || l == "V 2" {
                continue;
            }
            let n = l.strip_prefix(prefix).unwrap_or(l);
            out.push(imap_name(&n.replace(['.', '\t'], "/")));
        }
    }
    out
}

// ---- mbox ----

/// Every mbox file under `dir` (a folder per file, `A/B` for `A/B` or
/// Thunderbird's `A.sbd/B`; a file named `inbox` is INBOX), and the inbox
/// file `inbox` if given.
pub fn mbox(dir: &Path, inbox: Option<&Path>) -> Result<Vec<Folder>, String> {
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    if let Some(i) = inbox.filter(|i| i.exists()) {
        files.push(("INBOX".to_string(), i.to_path_buf()));
    }
    walk(dir, dir, &mut files)?;
    files.sort();
    let mut out: Vec<Folder> = Vec::new();
    for (name, path) in files {
        if out.iter().any(|f| f.name == name) {
            continue;
        }
        out.push(mbox_folder(&path, name));
    }
    Ok(out)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<(), String> {
    let rd = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for e in rd.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        // Dot files (.subscriptions, .imap index directories), Thunderbird's
        // summaries.
        if n.starts_with('.') || n.ends_with(".msf") {
            continue;
        }
        let p = e.path();
        let ft = e.file_type().map_err(|e| e.to_string())?;
        if ft.is_dir() {
            walk(root, &p, out)?;
        } else if ft.is_file() {
            let rel = p.strip_prefix(root).unwrap_or(&p).to_string_lossy().replace(".sbd/", "/");
            let name = if rel.eq_ignore_ascii_case("inbox") {
                "INBOX".to_string()
            } else {
                imap_name(&rel)
            };
            out.push((name, p));
        }
    }
    Ok(())
}

/// The subscriptions of an mbox directory (`.subscriptions`, UW's
/// `.mailboxlist`).
pub fn mbox_subscriptions(dir: &Path) -> Vec<String> {
    [".subscriptions", ".mailboxlist"]
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(dir.join(f))
                .unwrap_or_default()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .map(|l| imap_name(&l))
        .collect()
}

/// The date of a `From ` separator line (`From sender Www Mmm dd hh:mm:ss
/// yyyy`, maybe with a zone or `remote from ...` after it), as seconds.
pub fn from_line_date(line: &str) -> Option<i64> {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let w: Vec<&str> = line.strip_prefix("From ")?.split_whitespace().collect();
    // The weekday names where the date starts (the sender may hold blanks).
    let days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let i = (1..w.len()).find(|&i| days.contains(&w[i]) && w.len() >= i + 5)?;
    let mon = MONTHS.iter().position(|m| *m == w[i + 1])? as u32 + 1;
    let day: u32 = w[i + 2].parse().ok().filter(|d| (1..=31).contains(d))?;
    let t: Vec<u32> = w[i + 3].split(':').map(|x| x.parse().ok()).collect::<Option<Vec<u32>>>()?;
    if t.len() < 2 || t[0] > 23 || t[1] > 59 {
        return None;
    }
    // The year follows the time, or a zone sits between them.
    let year: i64 = w[i + 4..]
        .iter()
        .find_map(|y| y.parse().ok().filter(|y: &i64| (1970..=9999).contains(y)))?;
    Some(crate::util::codec::from_civil(
        year,
        mon,
        day,
        t[0],
        t[1],
        t.get(2).copied().unwrap_or(0),
    ))
}

/// Header fields an mbox keeps for itself, not part of the message
/// (Dovecot and UW hide them too).
const MBOX_FIELDS: [&str; 7] = [
    "status",
    "x-status",
    "x-keywords",
    "x-uid",
    "x-imap",
    "x-imapbase",
    "content-length",
];

/// One raw mbox message (after its `From ` line): the message as sent
/// (status fields removed, `>From ` unquoted once, CRLF) and its flags; None
/// as flags for UW's folder-data pseudo message.
fn mbox_message(raw: &[u8]) -> (Vec<u8>, Option<Vec<String>>) {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 40);
    let mut flags = Vec::new();
    let mut pseudo = false;
    let mut in_header = true;
    let mut skipping = false;
    for line in raw.split_inclusive(|&c| c == b'\n') {
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if in_header {
            if text.is_empty() {
                in_header = false;
                out.extend_from_slice(b"\r\n");
                continue;
            }
            let cont = text.first().is_some_and(|c| *c == b' ' || *c == b'\t');
            if !cont {
                let name = text.split(|&c| c == b':').next().unwrap_or(b"");
                let name = String::from_utf8_lossy(name).to_ascii_lowercase();
                skipping = MBOX_FIELDS.contains(&name.trim());
                if skipping {
                    let value = String::from_utf8_lossy(&text[name.len().min(text.len())..]);
                    let value = value.trim_start_matches(':').trim();
                    match name.trim() {
                        "status" if value.contains('R') => flags.push("\\Seen".to_string()),
                        "x-status" => {
                            for (c, f) in [('A', "\\Answered"), ('F', "\\Flagged"), ('T', "\\Draft"), ('D', "\\Deleted")] {
                                if value.contains(c) {
                                    flags.push(f.to_string());
                                }
                            }
                        }
                        "x-keywords" => flags.extend(
                            value
                                .split([' ', ','])
                                .filter(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_graphic() && !"(){%*\"\\]".contains(c)))
                                .map(str::to_string),
                        ),
                        "x-imap" | "x-imapbase" => pseudo = true,
                        _ => {}
                    }
                }
            }
            if !skipping {
                out.extend_from_slice(text);
                out.extend_from_slice(b"\r\n");
            }
            continue;
        }
        // mboxrd: one `>` comes off a quoted `From ` line.
        let body = if text.starts_with(b">") && text.iter().skip_while(|&&c| c == b'>').take(5).eq(b"From ".iter()) {
            &text[1..]
        } else {
            text
        };
        out.extend_from_slice(body);
        if line.ends_with(b"\n") {
            out.extend_from_slice(b"\r\n");
        }
    }
    if in_header && !out.is_empty() {
        // A message with headers only.
        out.extend_from_slice(b"\r\n");
    }
    (out, (!pseudo).then_some(flags))
}

fn mbox_folder(path: &Path, name: String) -> Folder {
    let mut f = Folder { name, ..Folder::default() };
    let file = match std::fs::File::open(path) {
        Ok(x) => x,
        Err(e) => {
            f.problems.push(format!("{}: {}: {e}", f.name, path.display()));
            return f;
        }
    };
    let mut r = std::io::BufReader::new(file);
    let mut pos = 0u64;
    let mut lineno = 0usize;
    let mut prev_blank = true;
    // The message being read: (offset of its first line, the From line's
    // date, its line number).
    let mut cur: Option<(u64, i64, usize)> = None;
    let mut stray = 0u64;
    let mut seen: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    let mut line = Vec::new();
    let finish = |f: &mut Folder, seen: &mut std::collections::BTreeMap<String, usize>, start: u64, end: u64, time: i64, at: usize| {
        // The blank line before the next `From ` belongs to the separator.
        let len = end - start;
        if len > MAX_MESSAGE {
            f.problems
                .push(format!("{}: message at line {at}: larger than {MAX_MESSAGE} bytes", f.name));
            return;
        }
        let mut raw = vec![0u8; len as usize];
        let read = std::fs::File::open(path).and_then(|mut x| {
            x.seek(std::io::SeekFrom::Start(start))?;
            x.read_exact(&mut raw)
        });
        if let Err(e) = read {
            f.problems.push(format!("{}: message at line {at}: {e}", f.name));
            return;
        }
        let mut trimmed = raw.len();
        if raw.ends_with(b"\n\n") || raw.ends_with(b"\r\n\r\n") {
            trimmed -= if raw.ends_with(b"\r\n\r\n") { 2 } else { 1 };
        }
        let (msg, flags) = mbox_message(&raw[..trimmed]);
        let Some(flags) = flags else { return };
        let digest = ring::digest::digest(&ring::digest::SHA256, &msg);
        let hex: String = digest.as_ref()[..12].iter().map(|b| format!("{b:02x}")).collect();
        let n = seen.entry(hex.clone()).or_default();
        *n += 1;
        f.messages.push(Message {
            key: format!("{hex}#{n}"),
            flags,
            time,
            size: msg.len() as u64,
            loc: Loc::Mbox {
                path: path.to_path_buf(),
                offset: start,
                len: trimmed as u64,
            },
        });
    };
    loop {
        line.clear();
        // Lines are read in pieces of at most 64 KB: a longer line is
        // message text, never a separator.
        let n = match (&mut r).take(64 << 10).read_until(b'\n', &mut line) {
            Ok(n) => n,
            Err(e) => {
                f.problems.push(format!("{}: {}: {e}", f.name, path.display()));
                break;
            }
        };
        if n == 0 {
            break;
        }
        lineno += 1;
        let start = pos;
        pos += n as u64;
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        // A separator follows a blank line; the first may follow anything.
        if (prev_blank || cur.is_none()) && text.starts_with(b"From ") {
            match from_line_date(&String::from_utf8_lossy(text)) {
                Some(t) => {
                    if let Some((s, time, at)) = cur.take() {
                        finish(&mut f, &mut seen, s, start, time, at);
                    } else if stray > 0 {
                        f.problems
                            .push(format!("{}: {stray} bytes before the first From line left out", f.name));
                    }
                    cur = Some((pos, t, lineno));
                    prev_blank = false;
                    continue;
                }
                None => f.problems.push(format!(
                    "{}: line {lineno}: a From line without a date, kept as text of the message before",
                    f.name
                )),
            }
        }
        if cur.is_none() && !text.is_empty() {
            stray += n as u64;
        }
        prev_blank = text.is_empty() && line.ends_with(b"\n");
    }
    if let Some((s, time, at)) = cur.take() {
        finish(&mut f, &mut seen, s, pos, time, at);
    } else if stray > 0 {
        f.problems.push(format!("{}: {stray} bytes without a From line left out", f.name));
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_lines() {
        let t = from_line_date("From alice@example.org Mon Jan  1 00:00:00 2001").unwrap();
        assert_eq!(crate::util::codec::imap_date(t, 0), "01-Jan-2001 00:00:00 +0000");
        assert!(from_line_date("From MAILER-DAEMON Fri Jul  8 12:08:34 2011 +0200").is_some());
        assert!(from_line_date("From a b c Sat Feb 29 23:59:59 2020 remote from x").is_some());
        assert_eq!(from_line_date("From here we go"), None);
        assert_eq!(from_line_date("From x Mon Foo  1 00:00:00 2001"), None);
    }

    #[test]
    fn mbox_messages_and_problems() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("Sent");
        std::fs::write(
            &p,
            "junk before\n\
             From a@b Mon Jan  1 00:00:00 2001\nSubject: one\nStatus: RO\nX-Status: AF\nX-Keywords: $Work\n\nbody\n>From the start\n\n\
             From here on it is text\n\n\
             From a@b Tue Jan  2 00:00:00 2001\nSubject: two\n\nsecond\n\n\
             From a@b Tue Jan  2 00:00:00 2001\nSubject: two\n\nsecond\n",
        )
        .unwrap();
        let f = mbox_folder(&p, "Sent".into());
        assert_eq!(f.messages.len(), 3, "{f:?}");
        let one = f.messages[0].read().unwrap();
        assert_eq!(
            String::from_utf8(one.clone()).unwrap(),
            "Subject: one\r\n\r\nbody\r\nFrom the start\r\n\r\nFrom here on it is text\r\n"
        );
        assert_eq!(f.messages[0].size, one.len() as u64);
        assert_eq!(f.messages[0].flags, vec!["\\Seen", "\\Answered", "\\Flagged", "$Work"]);
        // Identical copies get different keys.
        assert_eq!(f.messages[1].key.split('#').next(), f.messages[2].key.split('#').next());
        assert_ne!(f.messages[1].key, f.messages[2].key);
        assert_eq!(f.messages[2].read().unwrap(), b"Subject: two\r\n\r\nsecond\r\n");
        assert_eq!(f.problems.len(), 2, "{:?}", f.problems);
        assert!(f.problems[0].contains("12 bytes before the first From line"), "{:?}", f.problems);
        assert!(f.problems[1].contains("line 11: a From line without a date"), "{:?}", f.problems);
    }

    #[test]
    fn maildir_folders_flags_and_truncation() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        for d in ["cur", "new", "tmp", ".Archive.2019/cur", ".Archive.2019/new", ".Entw&APw-rfe/cur"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("dovecot-keywords"), "0 $Work\n1 Later\n").unwrap();
        std::fs::write(root.join("cur/100.M1.h,S=15:2,RSb"), "Subject: a\n\nhi\n").unwrap();
        std::fs::write(root.join("new/101.M2.h"), "Subject: b\r\n\r\nyo\r\n").unwrap();
        std::fs::write(root.join(".Archive.2019/cur/102.M3.h,S=999:2,T"), "Subject: cut\n").unwrap();
        let f = maildir(root).unwrap();
        let names: Vec<&str> = f.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["INBOX", "Archive/2019", "Entw&APw-rfe"]);
        let inbox = &f[0];
        assert_eq!(inbox.messages.len(), 2);
        let a = inbox.messages.iter().find(|m| m.key == "100.M1.h,S=15").unwrap();
        assert_eq!(a.flags, vec!["\\Answered", "\\Seen", "Later"]);
        assert_eq!(a.read().unwrap(), b"Subject: a\r\n\r\nhi\r\n");
        assert_eq!(a.size, 18);
        // Dovecot's keyword letters are read from its own file only.
        std::fs::rename(root.join("cur/100.M1.h,S=15:2,RSb"), root.join("cur/100.M1.h,S=15:2,Sa")).unwrap();
        let f2 = maildir(root).unwrap();
        let a = f2[0].messages.iter().find(|m| m.key == "100.M1.h,S=15").unwrap();
        assert_eq!(a.flags, vec!["\\Seen", "$Work"]);
        assert!(f[1].messages.is_empty());
        assert!(f[1].problems[0].contains("truncated (13 of 999 bytes)"), "{:?}", f[1].problems);
        assert!(maildir(&root.join("nothing")).is_err());
    }
}
