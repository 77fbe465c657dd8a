//! Group commit for deliveries (lmtpd): concurrent deliveries into one
//! owner's database are committed together.  Each delivery is queued for
//! its owner; whoever gets the owner's connection takes every queued
//! delivery and runs them in one transaction (a savepoint each, so one
//! refusal — over quota, unknown mailbox — rolls back only itself), then
//! fsyncs each touched mailbox directory once and commits once (one WAL
//! fsync).  Each caller returns only after the commit that holds its own
//! delivery, so a `250` still follows its own data's fsync.

use super::db::Store;
use super::lifecycle::ensure_state_in;
use super::ops::{charge_quota_as, sync_dir, Cached, Delivery, MailboxEntry, NewMessage, QuotaCheck, Staged};
use super::{Result, StoreError};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// One recipient's copy: everything owned, so that another thread may
/// commit it.
pub struct DeliveryJob {
    pub name: String,
    pub staged: Arc<Staged>,
    pub cached: Arc<Cached>,
    pub internaldate: i64,
    pub quota: QuotaCheck,
    /// (Message-ID, recipient) for duplicate suppression.
    pub dup: Option<(String, String)>,
    /// Filled in by `deliver_grouped`.
    pub partition: String,
    /// System flags (`FLAG_*`) and keywords (space-separated) it gets.
    pub flags: u32,
    pub keywords: String,
}

/// A queued delivery: the job, its mailbox's list entry (read before the
/// owner's lock) and where its result goes.
type Queued = (DeliveryJob, MailboxEntry, Arc<Slot>);

#[derive(Default)]
struct Slot {
    result: Mutex<Option<Result<Delivery>>>,
    /// Set (under `result`'s lock) when the owner's connection came free
    /// with this delivery still queued: its thread commits next.
    kicked: AtomicBool,
    done: Condvar,
}

/// Deliveries waiting for a commit, per owner database.
#[derive(Default)]
pub struct Pending(Mutex<HashMap<PathBuf, Vec<Queued>>>);

fn copy_err(e: &StoreError) -> StoreError {
    match e {
        StoreError::NotFound => StoreError::NotFound,
        StoreError::OverQuota => StoreError::OverQuota,
        other => StoreError::Db(other.to_string()),
    }
}

impl Store {
    /// Delivers one copy, committed together with the deliveries other
    /// threads make into the same owner meanwhile.
    pub fn deliver_grouped(&self, job: DeliveryJob) -> Result<Delivery> {
        let name = job.name.clone();
        let r = self.deliver_grouped_in(job);
        // Moved away (XFER) or deleted while this delivery waited: its
        // record was made again under a name no longer listed, where no
        // one will see it.  Refused (4xx), the retry finds the mailbox
        // where it is now.
        if matches!(r, Ok(Delivery::Delivered(_))) && self.lookup(&name)?.is_none() {
            return Err(StoreError::NotFound);
        }
        r
    }

    fn deliver_grouped_in(&self, job: DeliveryJob) -> Result<Delivery> {
        // The list entry is read here, before the owner's lock: the mailbox
        // list is never locked while an owner database is.  Nothing here
        // waits for the owner's connection (a delivery blocked on it while
        // a batch commits would miss that batch and the next one, and every
        // delivery would commit alone): a missing state record is made in
        // the batch's own transaction.
        let e = self.lookup(&job.name)?.ok_or(StoreError::NotFound)?;
        let mut job = job;
        job.partition = e.partition.clone();
        let key = self.owner_db_path(&job.name);
        let oc = self.owner(&job.name)?;
        let slot = Arc::new(Slot::default());
        {
            let mut p = self.pending.0.lock().unwrap_or_else(|p| p.into_inner());
            p.entry(key.clone()).or_default().push((job, e, slot.clone()));
        }
        loop {
            // Whoever holds the connection commits for everyone queued.
            let guard = match oc.try_lock() {
                Ok(g) => Some(g),
                Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) => None,
            };
            if let Some(mut c) = guard {
                let batch = {
                    let mut p = self.pending.0.lock().unwrap_or_else(|p| p.into_inner());
                    p.remove(&key).unwrap_or_default()
                };
                if !batch.is_empty() {
                    self.commit_batch(&mut c, batch);
                }
                drop(c);
                // Deliveries queued meanwhile found the connection busy:
                // one of their threads takes it now rather than at its
                // next poll.
                self.kick_next(&key);
            }
            let r = slot.result.lock().unwrap_or_else(|p| p.into_inner());
            let (mut r, _) = slot
                .done
                .wait_timeout_while(r, Duration::from_millis(2), |r| {
                    r.is_none() && !slot.kicked.swap(false, Ordering::Relaxed)
                })
                .unwrap_or_else(|p| p.into_inner());
            if let Some(res) = r.take() {
                return res;
            }
        }
    }

    /// Wakes the thread of the first delivery still queued for `key`.
    fn kick_next(&self, key: &std::path::Path) {
        let next = {
            let p = self.pending.0.lock().unwrap_or_else(|p| p.into_inner());
            p.get(key).and_then(|v| v.first()).map(|(_, _, s)| s.clone())
        };
        if let Some(s) = next {
            let _r = s.result.lock().unwrap_or_else(|p| p.into_inner());
            s.kicked.store(true, Ordering::Relaxed);
            s.done.notify_all();
        }
    }

    fn commit_batch(&self, c: &mut Connection, batch: Vec<Queued>) {
        let mut results: Vec<Result<Delivery>> = Vec::with_capacity(batch.len());
        let mut dirs: Vec<PathBuf> = Vec::new();
        let outcome = (|| -> Result<()> {
            let mut tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for (job, entry, _) in &batch {
                let r = (|| -> Result<Delivery> {
                    let sp = tx.savepoint()?;
                    let d = self.deliver_in(&sp, job, entry, &mut dirs)?;
                    sp.commit()?;
                    Ok(d)
                })();
                results.push(r);
            }
            dirs.sort();
            dirs.dedup();
            for d in &dirs {
                sync_dir(d)?;
            }
            tx.commit()?;
            Ok(())
        })();
        if let Err(e) = outcome {
            for r in results.iter_mut().filter(|r| r.is_ok()) {
                *r = Err(copy_err(&e));
            }
            while results.len() < batch.len() {
                results.push(Err(copy_err(&e)));
            }
        }
        for ((job, _, slot), r) in batch.into_iter().zip(results) {
            if r.is_ok() {
                self.notify(&job.name);
            }
            *slot.result.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
            slot.done.notify_all();
        }
    }

    /// One delivery inside the batch's transaction (no commit).
    fn deliver_in(&self, tx: &Connection, job: &DeliveryJob, entry: &MailboxEntry, dirs: &mut Vec<PathBuf>) -> Result<Delivery> {
        let s = ensure_state_in(tx, entry)?;
        if let Some((msgid, rcpt)) = &job.dup {
            let seen = tx
                .prepare_cached("SELECT 1 FROM dup WHERE msgid=?1 AND rcpt=?2")?
                .query_row(params![msgid, rcpt], |_| Ok(true))
                .optional()?
                .is_some();
            if seen {
                return Ok(Delivery::Duplicate);
            }
            tx.prepare_cached("INSERT INTO dup(msgid, rcpt, t) VALUES(?1, ?2, ?3)")?
                .execute(params![msgid, rcpt, super::ops::now()])?;
        }
        let bytes = job.staged.size as i64;
        charge_quota_as(tx, &job.name, bytes, 1, job.quota)?;
        if job.staged.partition != job.partition {
            return Err(StoreError::Invalid("staged on another partition"));
        }
        let dir = self.mailbox_dir(&job.name, &job.partition)?;
        let uid = s.uidnext;
        let modseq = s.highestmodseq + 1;
        // The directory is made only when missing, not tried per message.
        if !dir.is_dir() {
            std::fs::create_dir_all(&dir)?;
        }
        self.link_into(&job.staged, &dir, uid)?;
        let nm = NewMessage {
            staged: &job.staged,
            flags: job.flags,
            keywords: job.keywords.clone(),
            internaldate: job.internaldate,
            tz: 0,
            cached: &job.cached,
        };
        Self::insert_record(tx, s.id, uid, modseq, &nm)?;
        tx.prepare_cached("UPDATE mailbox SET uidnext=?2, highestmodseq=?3, exists_=exists_+1, size=size+?4 WHERE id=?1")?
            .execute(params![s.id, uid as i64 + 1, modseq as i64, bytes])?;
        dirs.push(dir);
        Ok(Delivery::Delivered(uid))
    }
}
