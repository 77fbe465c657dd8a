//! A front end's replica of the master's table: log in to
//! `mupdate_server`, `UPDATE`, make the local table equal to the dump
//! (a diff by name), then apply each streamed change.  A NOOP goes to
//! the master every `mupdate_retry_delay` seconds; when one is not
//! answered by the next, or the link breaks, reconnect after
//! `retry_delay + random(retry_delay/2)` and resync in full.  The local
//! table keeps serving meanwhile.

use super::client::{entry_of, Client, Creds};
use super::{Kick, Mupdate};
use crate::proto::mupdate::Response;
use crate::store::murder::Entry;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Changes applied in one transaction at most.
const BATCH: usize = 4096;

pub async fn run(m: Arc<Mupdate>, mut kicks: mpsc::Receiver<Kick>) {
    let server = m.conf.get("mupdate_server").unwrap_or("").to_string();
    let port = super::client::default_port(&m.conf);
    let creds = Creds::from_conf(&m.conf);
    let delay = m.conf.get_int("mupdate_retry_delay").max(1) as u64;
    loop {
        match session(&m, &server, port, &creds, delay, &mut kicks).await {
            Ok(()) => {}
            Err(e) => m.log.error(&format!("mupdate: {e}; retrying")),
        }
        // Kicks while the master is away are answered at once: the local
        // copy is all there is.
        let wait = delay + rand_below(delay / 2 + 1);
        let until = tokio::time::Instant::now() + Duration::from_secs(wait);
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => break,
                k = kicks.recv() => match k {
                    Some(k) => { let _ = k.send(()); }
                    None => return,
                },
            }
        }
    }
}

fn rand_below(n: u64) -> u64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    u64::from_le_bytes(b) % n.max(1)
}

async fn apply(m: &Arc<Mupdate>, batch: Vec<(String, Option<Entry>)>) -> Result<(), String> {
    let m2 = m.clone();
    tokio::task::spawn_blocking(move || m2.apply(&batch))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

async fn session(
    m: &Arc<Mupdate>,
    server: &str,
    port: u16,
    creds: &Creds,
    delay: u64,
    kicks: &mut mpsc::Receiver<Kick>,
) -> Result<(), String> {
    let mut c = Client::login(server, port, creds).await.map_err(|e| e.to_string())?;
    let tag = c.send("UPDATE", &[]).await.map_err(|e| e.to_string())?;
    // The dump, into memory, until the tagged OK.
    let mut all: BTreeMap<String, Entry> = BTreeMap::new();
    loop {
        match c.response(Duration::from_secs(600)).await.map_err(|e| e.to_string())? {
            Response::Ok { tag: t, .. } if t == tag => break,
            Response::No { text, .. } | Response::Bad { text, .. } | Response::Bye { text, .. } => {
                return Err(format!("master refused UPDATE: {text}"))
            }
            r => {
                if let Some((name, Some(e))) = entry_of(r) {
                    all.insert(name, e);
                }
            }
        }
    }
    let total = all.len();
    let m2 = m.clone();
    let changed = tokio::task::spawn_blocking(move || m2.db.replace_all(all, |d| m2.queue(d)))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    m.log.info(&format!(
        "mupdate: synchronized with {server}: {total} mailboxes, {changed} changes"
    ));
    // Streaming: changes, NOOP round trips for kicks and liveness.
    let tick = Duration::from_secs(delay);
    let mut noop: Option<(String, Vec<Kick>)> = None;
    let mut waiting: Vec<Kick> = Vec::new();
    let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + tick, tick);
    loop {
        tokio::select! {
            r = c.response(Duration::from_secs(365 * 86400)) => {
                let mut batch = Vec::new();
                let mut next = Some(r.map_err(|e| e.to_string())?);
                while let Some(r) = next.take() {
                    match r {
                        Response::Ok { tag: t, .. } if noop.as_ref().is_some_and(|(n, _)| *n == t) => {
                            if !batch.is_empty() {
                                apply(m, std::mem::take(&mut batch)).await?;
                            }
                            if let Some((_, ks)) = noop.take() {
                                for k in ks {
                                    let _ = k.send(());
                                }
                            }
                        }
                        Response::Bye { text, .. } => return Err(format!("master said BYE: {text}")),
                        Response::Untagged(t) if t.first().is_some_and(|f| f.bytes().eq_ignore_ascii_case(b"BYE")) => {
                            return Err("master said BYE".into())
                        }
                        r => {
                            if let Some(ch) = entry_of(r) {
                                batch.push(ch);
                            }
                        }
                    }
                    if batch.len() < BATCH {
                        next = c.buffered().map_err(|e| e.to_string())?;
                    }
                }
                if !batch.is_empty() {
                    apply(m, batch).await?;
                }
            }
            k = kicks.recv() => {
                let Some(k) = k else { return Ok(()) };
                waiting.push(k);
                if noop.is_none() {
                    let t = c.send("NOOP", &[]).await.map_err(|e| e.to_string())?;
                    noop = Some((t, std::mem::take(&mut waiting)));
                }
            }
            _ = timer.tick() => {
                if noop.is_some() {
                    return Err(format!("connection to master {server} timed out"));
                }
                let t = c.send("NOOP", &[]).await.map_err(|e| e.to_string())?;
                noop = Some((t, std::mem::take(&mut waiting)));
            }
        }
        // Kicks that came while a NOOP was out ride the next one.
        if noop.is_none() && !waiting.is_empty() {
            let t = c.send("NOOP", &[]).await.map_err(|e| e.to_string())?;
            noop = Some((t, std::mem::take(&mut waiting)));
        }
    }
}
