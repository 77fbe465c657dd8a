//! A back end's link to the MUPDATE master: the store's `Directory`.
//! Every create, rename, delete and ACL change is sent as Cyrus's back
//! ends send it (RESERVE, ACTIVATE `servername!partition` with the ACL,
//! DELETE) before the store answers; no master, no change.  One
//! connection is kept and reused (Cyrus opens one per operation), and
//! opened again once when it has broken.
//!
//! The store calls from blocking threads; the link lives on its own
//! thread with a small runtime, so that it works from any caller.

use super::client::{Client, ClientError, Creds};
use crate::config::cyrus::ImapdConf;
use crate::store::murder::{DirOp, Directory};
use std::sync::mpsc as std_mpsc;
use std::sync::Mutex;

type Req = (Vec<DirOp>, std_mpsc::Sender<Result<(), String>>);

pub struct Pusher {
    tx: Mutex<tokio::sync::mpsc::UnboundedSender<Req>>,
}

/// Whether this node pushes its mailboxes: `mupdate_server` is set and
/// it is a back end (`proxyservers` set) or the topology is not
/// `standard` (every unified or replicated server holds mail).
pub fn is_backend(conf: &ImapdConf) -> bool {
    let set = |n: &str| conf.get(n).is_some_and(|v| !v.is_empty() && v != "(null)");
    set("mupdate_server") && (set("proxyservers") || conf.get("mupdate_config").unwrap_or("standard") != "standard")
}

impl Pusher {
    pub fn start(conf: &ImapdConf, log: std::sync::Arc<crate::log::Logger>) -> Result<Pusher, String> {
        let server = conf.get("mupdate_server").unwrap_or("").to_string();
        let port = super::client::default_port(conf);
        let creds = Creds::from_conf(conf);
        let servername = super::super::cyrus::servername(conf);
        let replicated = conf.get("mupdate_config") == Some("replicated");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("mupdate link: {e}"))?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Req>();
        std::thread::Builder::new()
            .name("mupdate-push".into())
            .spawn(move || {
                rt.block_on(async move {
                    let mut link: Option<Client> = None;
                    while let Some((ops, reply)) = rx.recv().await {
                        let loc = |part: &str| {
                            if replicated {
                                part.to_string()
                            } else {
                                format!("{servername}!{part}")
                            }
                        };
                        let mut r = Err(ClientError::Link(String::new()));
                        // A kept connection may have gone stale: once more
                        // on a fresh one.
                        for _ in 0..2 {
                            if link.is_none() {
                                match Client::login(&server, port, &creds).await {
                                    Ok(c) => link = Some(c),
                                    Err(e) => {
                                        r = Err(e);
                                        break;
                                    }
                                }
                            }
                            let Some(c) = link.as_mut() else { break };
                            r = run(c, &ops, &loc).await;
                            match &r {
                                Err(ClientError::Link(_)) => link = None,
                                _ => break,
                            }
                        }
                        if let Err(e) = &r {
                            log.error(&format!("MUPDATE: can't update mailbox entries {ops:?} on {server}: {e}"));
                        }
                        let _ = reply.send(r.map_err(|e| text(&e)));
                    }
                })
            })
            .map_err(|e| format!("mupdate link: {e}"))?;
        Ok(Pusher { tx: Mutex::new(tx) })
    }
}

async fn run(c: &mut Client, ops: &[DirOp], loc: &impl Fn(&str) -> String) -> Result<(), ClientError> {
    for op in ops {
        match op {
            DirOp::Reserve { name, partition } => c.reserve(name, &loc(partition)).await?,
            DirOp::Activate { name, partition, acl } => c.activate(name, &loc(partition), acl).await?,
            // Already gone from the master is what we want.
            DirOp::Delete { name } => match c.delete(name).await {
                Err(ClientError::Refused(_)) | Ok(()) => {}
                Err(e) => return Err(e),
            },
        }
    }
    Ok(())
}

/// Cyrus's texts for MUPDATE failures (mupdate_err.et).
fn text(e: &ClientError) -> String {
    match e {
        ClientError::Connect(_) => "no connection to server".into(),
        ClientError::Auth(_) => "no authentication to server".into(),
        ClientError::Refused(_) => "unable to reserve mailbox on mupdate server".into(),
        ClientError::Link(w) if w.contains("timed out") => "timed out waiting for server response".into(),
        ClientError::Link(_) => "the mupdate operation failed".into(),
    }
}

impl Directory for Pusher {
    fn push(&self, ops: &[DirOp]) -> Result<(), String> {
        let (tx, rx) = std_mpsc::channel();
        let sent = self.tx.lock().unwrap_or_else(|p| p.into_inner()).send((ops.to_vec(), tx));
        if sent.is_err() {
            return Err("the mupdate operation failed".into());
        }
        rx.recv().unwrap_or_else(|_| Err("the mupdate operation failed".into()))
    }
}
