//! The mailbox list as `ctl_mboxlist` sees it: every entry with its
//! creation time for `-d`, and `-u`'s undump, which keeps the uniqueid
//! and UIDVALIDITY a dump carries (clients' caches stay valid).

use super::db::lock;
use super::{MailboxEntry, Result, Store, StoreError};
use rusqlite::params;

impl Store {
    /// Every entry with its creation time, by name.
    pub fn dump(&self) -> Result<Vec<(MailboxEntry, i64)>> {
        let c = lock(&self.list);
        let mut st = c.prepare(&format!("SELECT {}, created FROM mbox ORDER BY name", super::ops::ENTRY_COLS))?;
        let rows = st
            .query_map([], |r| Ok((super::ops::entry_from_row(r)?, r.get(7)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Undumps one entry: a new mailbox is created with the entry's
    /// partition, ACL, uniqueid and UIDVALIDITY; an existing one gets the
    /// entry's ACL (its identity stays).  Returns whether it was new.
    pub fn undump(&self, e: &MailboxEntry) -> Result<bool> {
        if e.partition.is_empty() || self.cfg.partition_root(&e.partition).is_none() {
            return Err(StoreError::NoPartition(e.partition.clone()));
        }
        if self.lookup(&e.name)?.is_some() {
            self.set_acl(&e.name, &e.acl)?;
            return Ok(false);
        }
        self.create(&e.name, Some(&e.partition), Some(&e.acl))?;
        let uv = if e.uidvalidity > 0 { Some(e.uidvalidity as i64) } else { None };
        {
            let c = lock(&self.list);
            if !e.uniqueid.is_empty() {
                c.execute("UPDATE mbox SET uniqueid=?2 WHERE name=?1", params![e.name, e.uniqueid])?;
            }
            if let Some(uv) = uv {
                c.execute("UPDATE mbox SET uidvalidity=?2 WHERE name=?1", params![e.name, uv])?;
            }
            if !e.server.is_empty() {
                c.execute("UPDATE mbox SET server=?2 WHERE name=?1", params![e.name, e.server])?;
            }
        }
        let oc = self.owner(&e.name)?;
        let c = lock(&oc);
        if !e.uniqueid.is_empty() {
            c.execute("UPDATE mailbox SET uniqueid=?2 WHERE name=?1", params![e.name, e.uniqueid])?;
        }
        if let Some(uv) = uv {
            c.execute("UPDATE mailbox SET uidvalidity=?2 WHERE name=?1", params![e.name, uv])?;
        }
        Ok(true)
    }
}
