//! mumail-migrate's per-user records: what was copied (`State`) and the
//! UIDs given to a local source's messages (`Ids`).

use super::*;

/// A record file: its complete lines (a line cut short by a kill during
/// its write is dropped: what it announced is redone) and, to `write`,
/// the file opened for appending with that cut-off tail removed.
fn open_record(path: &Path, write: bool) -> Result<(String, Option<std::fs::File>), String> {
    let mut text = std::fs::read_to_string(path).unwrap_or_default();
    text.truncate(text.rfind('\n').map_or(0, |i| i + 1));
    if !write {
        return Ok((text, None));
    }
    let whole = text.len() as u64;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|f| {
            if f.metadata()?.len() > whole {
                f.set_len(whole)?;
            }
            Ok(f)
        })
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((text, Some(f)))
}

/// Appends lines to a record file with one sync.
fn append_synced(file: Option<&mut std::fs::File>, text: &str) -> Result<(), String> {
    let f = file.ok_or("record file not open")?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_data())
        .map_err(|e| format!("state: {e}"))
}

/// The UIDs given to a local source's messages, per folder and key: the
/// file `<state>/<user>.ids`, lines `<uid> TAB <key> TAB <folder>`, each
/// synced before the UID is used.
#[derive(Default)]
pub(super) struct Ids {
    pub(super) map: BTreeMap<String, BTreeMap<String, u32>>,
    pub(super) file: Option<std::fs::File>,
}

impl Ids {
    pub(super) fn load(path: &Path, write: bool) -> Result<Ids, String> {
        let (text, file) = open_record(path, write)?;
        let mut ids = Ids { file, ..Ids::default() };
        for (i, l) in text.lines().enumerate() {
            let mut w = l.splitn(3, '\t');
            let (Some(uid), Some(key), Some(folder)) = (w.next(), w.next(), w.next()) else {
                return Err(format!("{}, line {}: bad line", path.display(), i + 1));
            };
            let uid: u32 = uid.parse().map_err(|_| format!("{}, line {}: bad UID", path.display(), i + 1))?;
            ids.map.entry(folder.to_string()).or_default().insert(key.to_string(), uid);
        }
        Ok(ids)
    }

    /// UIDs for a folder's messages: the recorded ones, new ones (above
    /// every UID the folder had) for keys not seen before.
    pub(super) fn assign<'a>(
        &mut self,
        folder: &'a crate::tools::local_source::Folder,
    ) -> Result<BTreeMap<u32, &'a crate::tools::local_source::Message>, String> {
        let known = self.map.entry(folder.name.clone()).or_default();
        let mut next = known.values().max().map_or(1, |u| u + 1);
        let mut new = String::new();
        let mut out = BTreeMap::new();
        for m in &folder.messages {
            let uid = match known.get(&m.key) {
                Some(u) => *u,
                None => {
                    known.insert(m.key.clone(), next);
                    new += &format!("{next}\t{}\t{}\n", m.key, folder.name);
                    next += 1;
                    next - 1
                }
            };
            out.insert(uid, m);
        }
        if self.file.is_some() && !new.is_empty() {
            append_synced(self.file.as_mut(), &new)?;
        }
        Ok(out)
    }
}

/// One user's record of what was copied.
#[derive(Default)]
pub(super) struct State {
    /// folder → (source uidvalidity, destination uidvalidity).
    pub(super) validity: BTreeMap<String, (u32, u32)>,
    /// folder → source uid → destination uid.
    pub(super) map: BTreeMap<String, BTreeMap<u32, u32>>,
    /// folder → source uid → destination uidnext at the APPEND.
    pub(super) pending: BTreeMap<String, BTreeMap<u32, u32>>,
    pub(super) file: Option<std::fs::File>,
}

impl State {
    /// Reads the record; `write` opens it for appending (not in a dry run).
    pub(super) fn load(path: &Path, write: bool) -> Result<State, String> {
        let (text, file) = open_record(path, write)?;
        let mut st = State { file, ..State::default() };
        for (i, l) in text.lines().enumerate() {
            // Two numbers at the end; the folder may hold blanks.
            let w: Vec<&str> = l.rsplitn(3, ' ').collect();
            let bad = || format!("{}, line {}: bad state line", path.display(), i + 1);
            if w.len() != 3 {
                return Err(bad());
            }
            let (kind, folder) = w[2].split_once(' ').ok_or_else(bad)?;
            let a: u32 = w[1].parse().map_err(|_| bad())?;
            let b: u32 = w[0].parse().map_err(|_| bad())?;
            match kind {
                "V" => {
                    st.validity.insert(folder.to_string(), (a, b));
                    st.map.remove(folder);
                    st.pending.remove(folder);
                }
                "P" => {
                    st.pending.entry(folder.to_string()).or_default().insert(a, b);
                }
                "M" => {
                    st.map.entry(folder.to_string()).or_default().insert(a, b);
                    if let Some(p) = st.pending.get_mut(folder) {
                        p.remove(&a);
                    }
                }
                _ => return Err(bad()),
            }
        }
        Ok(st)
    }

    /// Appends a line and syncs it before anything else happens.
    pub(super) fn record(&mut self, line: String) -> Result<(), String> {
        self.record_all(std::iter::once(line))
    }

    /// Appends lines with one sync.
    pub(super) fn record_all(&mut self, lines: impl Iterator<Item = String>) -> Result<(), String> {
        let text: String = lines.map(|l| l + "\n").collect();
        append_synced(self.file.as_mut(), &text)
    }
}
