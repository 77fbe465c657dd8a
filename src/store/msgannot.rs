//! Per-message annotations (RFC 5257, Cyrus's ANNOTATE-EXPERIMENT-1):
//! (uid, entry, userid, value) rows in the mailbox owner's database next
//! to the records; the userid is empty for a `.shared` value and the
//! user's for a `.priv` one.  A value is never empty: storing NIL or ""
//! removes it.  Changing one gives the message a new MODSEQ, as Cyrus
//! does, so CONDSTORE clients and other sessions see it.

use super::db::lock;
use super::ops::state_of;
use super::{Record, Result, Store, StoreError};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

#[derive(Debug, Clone, PartialEq)]
pub struct MsgAnnot {
    pub uid: u32,
    pub entry: String,
    pub userid: String,
    pub value: Vec<u8>,
}

/// One write: entry, userid ("" for shared), value (empty removes).
pub type AnnotWrite = (String, String, Vec<u8>);

/// Every annotation of `uids` (in that order; entries and userids in byte
/// order, as Cyrus's database keys sort) in mailbox `id`, those of `user`
/// and the shared ones, or everyone's with `None`.
pub(super) fn read(c: &Connection, id: i64, uids: &[u32], user: Option<&str>) -> Result<Vec<MsgAnnot>> {
    let mut st = c.prepare_cached(
        "SELECT entry, userid, value FROM msgannot WHERE mailbox=?1 AND uid=?2 AND (?3 IS NULL OR userid='' OR userid=?3) ORDER BY entry, userid",
    )?;
    let mut out = Vec::new();
    for &u in uids {
        let rows = st.query_map(params![id, u as i64, user], |r| {
            Ok(MsgAnnot {
                uid: u,
                entry: r.get(0)?,
                userid: r.get(1)?,
                value: r.get(2)?,
            })
        })?;
        for a in rows {
            out.push(a?);
        }
    }
    Ok(out)
}

/// Adds `annots` to mailbox `id` under new UIDs (`map`: old → new).
pub(super) fn insert_mapped(c: &Connection, id: i64, annots: &[MsgAnnot], map: &[(u32, u32)]) -> Result<()> {
    let mut put = c.prepare_cached("INSERT OR REPLACE INTO msgannot(mailbox, uid, entry, userid, value) VALUES(?1, ?2, ?3, ?4, ?5)")?;
    let map: std::collections::HashMap<u32, u32> = map.iter().copied().collect();
    for a in annots {
        if let Some(&to) = map.get(&a.uid) {
            put.execute(params![id, to as i64, a.entry, a.userid, a.value])?;
        }
    }
    Ok(())
}

impl Store {
    /// The annotations of `uids` in `name` that `user` may see (shared and
    /// their own), or everyone's with `None`.
    pub fn msg_annotations(&self, name: &str, uids: &[u32], user: Option<&str>) -> Result<Vec<MsgAnnot>> {
        let oc = self.owner(name)?;
        let c = lock(&oc);
        let Some(s) = state_of(&c, name)? else {
            return Err(StoreError::NotFound);
        };
        read(&c, s.id, uids, user)
    }

    /// Applies `writes` to each live message of `uids`; a message whose
    /// annotations changed gets a new MODSEQ and is returned.
    /// `unchangedsince` (CONDSTORE) skips messages modified after it and
    /// reports them in the second list.
    pub fn store_msg_annotations(
        &self,
        name: &str,
        uids: &[u32],
        writes: &[AnnotWrite],
        unchangedsince: Option<u64>,
    ) -> Result<(Vec<Record>, Vec<u32>)> {
        // Growth is held against X-ANNOTATION-STORAGE (the whole command
        // is refused once it would pass a limit).
        let headroom = if writes.iter().any(|w| !w.2.is_empty()) {
            self.annotation_headroom(name)?
        } else {
            None
        };
        let mut more = 0i64;
        self.change_each(
            name,
            uids,
            unchangedsince,
            |_, _| Ok(()),
            |tx, id, r, modseq| {
                let u = r.uid as i64;
                let mut touched = false;
                for (entry, userid, value) in writes {
                    let was: Option<Vec<u8>> = tx
                        .prepare_cached("SELECT value FROM msgannot WHERE mailbox=?1 AND uid=?2 AND entry=?3 AND userid=?4")?
                        .query_row(params![id, u, entry, userid], |x| x.get(0))
                        .optional()?;
                    if was.as_deref().unwrap_or_default() == value.as_slice() {
                        continue;
                    }
                    more += value.len() as i64 - was.as_ref().map_or(0, |w| w.len() as i64);
                    if headroom.is_some_and(|h| more > h) {
                        return Err(StoreError::OverQuota);
                    }
                    if value.is_empty() {
                        tx.prepare_cached("DELETE FROM msgannot WHERE mailbox=?1 AND uid=?2 AND entry=?3 AND userid=?4")?
                            .execute(params![id, u, entry, userid])?;
                    } else {
                        tx.prepare_cached(
                            "INSERT OR REPLACE INTO msgannot(mailbox, uid, entry, userid, value) VALUES(?1, ?2, ?3, ?4, ?5)",
                        )?
                        .execute(params![id, u, entry, userid, value])?;
                    }
                    touched = true;
                }
                if touched {
                    tx.prepare_cached("UPDATE msg SET modseq=?3 WHERE mailbox=?1 AND uid=?2")?
                        .execute(params![id, u, modseq as i64])?;
                }
                Ok(touched)
            },
        )
    }

    /// XFER's ANNOTS on an arriving mailbox: the annotations of `uids`
    /// become `annots` (the source's, MODSEQs already carried by the
    /// records).
    pub fn import_msg_annotations(&self, name: &str, uids: &[u32], annots: &[MsgAnnot]) -> Result<()> {
        self.arriving(name)?;
        let oc = self.owner(name)?;
        let mut c = lock(&oc);
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let s = state_of(&tx, name)?.ok_or(StoreError::NotFound)?;
        for u in uids {
            tx.execute("DELETE FROM msgannot WHERE mailbox=?1 AND uid=?2", params![s.id, *u as i64])?;
        }
        let same: Vec<(u32, u32)> = uids.iter().map(|u| (*u, *u)).collect();
        insert_mapped(&tx, s.id, annots, &same)?;
        tx.commit()?;
        Ok(())
    }
}
