//! The hub's `public/showq` socket: what postqueue(1), mailq(1) and
//! postsuper(1) ask of the running hub.  One request line per connection:
//! `showq`, `json` (the queue listing), `flush` (all deferred mail now),
//! `flush-id ID`, `flush-site DOMAIN` (ETRN's fast flush, for
//! `fast_flush_domains`), `rescan` (files that postsuper moved).  The
//! reply is the text to print, or `error: text`.

use super::Hub;
use crate::queue::{showq, QueueName};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

pub struct Showq {
    pub hub: Arc<Hub>,
    pub empty_sender: String,
}

impl Showq {
    async fn answer(&self, req: &str) -> String {
        let q = self.hub.queue.clone();
        let (verb, arg) = req.split_once(' ').unwrap_or((req, ""));
        match verb {
            "showq" | "json" => {
                let empty = self.empty_sender.clone();
                let json = verb == "json";
                tokio::task::spawn_blocking(move || {
                    let e = showq::entries(&q);
                    if json {
                        showq::json(&e, &empty)
                    } else {
                        showq::listing(&e, &empty)
                    }
                })
                .await
                .unwrap_or_default()
            }
            "flush" => {
                self.hub.qmgr.scan_deferred(true);
                String::new()
            }
            "flush-id" => match q.find(arg) {
                Some((QueueName::Deferred, _)) => {
                    self.hub.qmgr.submit(arg.to_string(), QueueName::Deferred, None);
                    String::new()
                }
                _ => format!("error: {arg}: no such queue file in the deferred queue\n"),
            },
            "flush-site" => {
                if self.hub.conf.relay_domains.matches(arg) {
                    self.hub.qmgr.scan_deferred(true);
                    String::new()
                } else {
                    format!("error: Flush service is not configured for destination \"{arg}\"\n")
                }
            }
            "rescan" => {
                self.hub.qmgr.rescan();
                String::new()
            }
            _ => "error: unknown request\n".into(),
        }
    }
}

impl crate::server::Service for Showq {
    async fn serve(self: Arc<Self>, conn: crate::server::Conn) {
        let mut io = tokio::io::BufReader::new(conn.into_io());
        let mut line = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            (&mut io).take(1024).read_until(b'\n', &mut line),
        )
        .await;
        if !matches!(read, Ok(Ok(n)) if n > 0) {
            return;
        }
        let req = String::from_utf8_lossy(&line).trim().to_string();
        let out = self.answer(&req).await;
        let _ = io.get_mut().write_all(out.as_bytes()).await;
        let _ = io.get_mut().shutdown().await;
    }
}

use tokio::io::AsyncReadExt;
