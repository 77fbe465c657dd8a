//! Delivery status notifications (Postfix's bounce(8) service as the
//! queue manager uses it): non-delivery reports to the sender, delay
//! warnings once a message is older than `delay_warning_time`, success
//! reports for `NOTIFY=SUCCESS`, each filtered by the recipients' DSN
//! NOTIFY; the postmaster's copies per `notify_classes` (`bounce`,
//! `delay`), and double bounces (`2bounce`) when a bounce itself fails.
//! Postmaster notices are sent from `double_bounce_sender`; when one of
//! those fails it is discarded, never notified again.

use super::bounce::{self, Kind};
use super::lmtp::Reply;
use super::Qmgr;
use crate::config::postfix::Params;
use crate::queue::{Envelope, QueueName, Recipient};
use std::sync::Arc;
use std::time::Duration;

/// The notification settings.
pub struct NoticeConf {
    pub delay_warning_time: Duration,
    pub classes: Vec<String>,
    pub bounce_rcpt: String,
    pub twobounce_rcpt: String,
    pub delay_rcpt: String,
    /// `double_bounce_sender@$myorigin`.
    pub double_bounce: String,
}

impl NoticeConf {
    pub fn load(p: &Params, myorigin: &str) -> NoticeConf {
        let qualify = |v: String| if v.contains('@') { v } else { format!("{v}@{myorigin}") };
        let get = |n: &str, d: &str| {
            p.get(n)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| d.into())
        };
        NoticeConf {
            delay_warning_time: p.get_time("delay_warning_time").unwrap_or(Duration::ZERO),
            classes: crate::config::postfix::list::split_list(&get("notify_classes", "resource, software"))
                .into_iter()
                .map(|c| c.to_ascii_lowercase())
                .collect(),
            bounce_rcpt: qualify(get("bounce_notice_recipient", "postmaster")),
            twobounce_rcpt: qualify(get("2bounce_notice_recipient", "postmaster")),
            delay_rcpt: qualify(get("delay_notice_recipient", "postmaster")),
            double_bounce: qualify(get("double_bounce_sender", "double-bounce")),
        }
    }

    fn class(&self, c: &str) -> bool {
        self.classes.iter().any(|x| x == c)
    }
}

/// One recipient to report: its index, the reply, the reason as logged,
/// and the DSN action.
#[derive(Clone)]
pub struct Entry {
    pub idx: usize,
    pub reply: Reply,
    pub why: String,
    pub action: &'static str,
}

/// Does the recipient's NOTIFY ask for this kind of report (no NOTIFY:
/// failures and delays, as RFC 3461 leaves to the MTA)?
fn wants(r: &Recipient, what: &str) -> bool {
    match &r.notify {
        None => what != "SUCCESS",
        Some(n) => n.split(',').any(|x| x.trim() == what),
    }
}

impl Qmgr {
    /// The sender's and the postmaster's notices after one delivery
    /// attempt: `bounced`, `delivered` (for NOTIFY=SUCCESS) and, once per
    /// message, the still `deferred` recipients for a delay warning.
    pub(super) async fn notices(
        self: &Arc<Self>,
        qid: &str,
        env: &Envelope,
        content: &[u8],
        bounced: Vec<Entry>,
        delivered: Vec<Entry>,
        deferred: Vec<Entry>,
        age: Duration,
    ) {
        let settings = self.s();
        let nc = &settings.notices;
        let postmaster_notice = !env.sender.is_empty() && env.sender.eq_ignore_ascii_case(&nc.double_bounce);
        if !bounced.is_empty() {
            if postmaster_notice {
                self.agent_log("bounce")
                    .warning(&format!("{qid}: undeliverable postmaster notification discarded"));
            } else if env.sender.is_empty() {
                // A bounce that bounced: the postmaster gets it if asked.
                if nc.class("2bounce") {
                    self.notice(qid, env, content, Kind::Failed, &bounced, &nc.twobounce_rcpt, true)
                        .await;
                }
            } else {
                let mine: Vec<Entry> = bounced.iter().filter(|e| wants(&env.rcpts[e.idx], "FAILURE")).cloned().collect();
                if !mine.is_empty() {
                    self.notice(qid, env, content, Kind::Failed, &mine, &env.sender, false).await;
                }
                if nc.class("bounce") {
                    self.notice(qid, env, content, Kind::Failed, &bounced, &nc.bounce_rcpt, true).await;
                }
            }
        }
        if !delivered.is_empty() && !env.sender.is_empty() && !postmaster_notice {
            let mine: Vec<Entry> = delivered.iter().filter(|e| wants(&env.rcpts[e.idx], "SUCCESS")).cloned().collect();
            if !mine.is_empty() {
                self.notice(qid, env, content, Kind::Success, &mine, &env.sender, false).await;
            }
        }
        let warn_time = nc.delay_warning_time;
        if !deferred.is_empty() && !warn_time.is_zero() && age >= warn_time && !env.warned && !env.sender.is_empty() && !postmaster_notice {
            let Some(off) = env.warn_offset else { return };
            let mine: Vec<Entry> = deferred.iter().filter(|e| wants(&env.rcpts[e.idx], "DELAY")).cloned().collect();
            if !mine.is_empty() {
                self.notice(qid, env, content, Kind::Delayed, &mine, &env.sender, false).await;
            }
            if nc.class("delay") {
                self.notice(qid, env, content, Kind::Delayed, &deferred, &nc.delay_rcpt, true).await;
            }
            if let Err(e) = self.queue.mark_warned(QueueName::Active, qid, off) {
                self.log
                    .warning(&format!("{qid}: cannot record the delay warning: {}", crate::util::strerror(&e)));
            }
        }
    }

    /// Builds one notice and queues it; logs it as bounce(8) does.
    #[allow(clippy::too_many_arguments)]
    async fn notice(
        self: &Arc<Self>,
        qid: &str,
        env: &Envelope,
        content: &[u8],
        kind: Kind,
        entries: &[Entry],
        to: &str,
        postmaster: bool,
    ) {
        let draft = match self.queue.create() {
            Ok(d) => d,
            Err(e) => {
                self.log.warning(&format!("{qid}: cannot create notification: {e}"));
                return;
            }
        };
        let remote: Vec<Option<String>> = entries
            .iter()
            .map(|e| {
                let host = match e.why.strip_prefix("delivery via ") {
                    Some(rest) => Some(rest),
                    None => e.why.strip_prefix("host ").filter(|_| e.why.contains(" said: ")),
                };
                host.and_then(|h| h.split('[').next())
                    .filter(|h| !h.is_empty() && *h != "none" && e.reply.text.len() > 3)
                    .map(|h| format!("dns; {h}"))
            })
            .collect();
        let list: Vec<bounce::Failed> = entries
            .iter()
            .zip(&remote)
            .map(|(e, rm)| bounce::Failed {
                addr: &env.rcpts[e.idx].addr,
                orcpt: env.rcpts[e.idx].orcpt.as_deref(),
                action: e.action,
                status: &e.reply.dsn,
                reason: &e.why,
                diagnostic: rm.is_some().then_some(e.reply.text.as_str()),
                remote_mta: rm.as_deref(),
            })
            .collect();
        let settings = self.s();
        let n = bounce::Notice {
            kind,
            postmaster,
            to,
            ret_hdrs: env.attr("dsn_ret").is_some_and(|r| r.eq_ignore_ascii_case("HDRS")),
            envid: env.attr("dsn_envid"),
            max_queue_time: settings.conf.maximal_queue_lifetime.as_secs() as i64,
            delay_warning_time: settings.notices.delay_warning_time.as_secs() as i64,
            myhostname: &settings.conf.myhostname,
            myorigin: &settings.conf.myorigin,
            mail_name: &settings.conf.mail_name,
            qid: &draft.qid,
            orig_qid: qid,
            sender: &env.sender,
            arrival: env.arrival.0,
            now: crate::util::unix_now(),
            size_limit: settings.bounce_size_limit,
        };
        let msg = Arc::new(bounce::build(&n, &list, content));
        let nqid = draft.qid.clone();
        let nenv = Envelope {
            sender: if postmaster {
                settings.notices.double_bounce.clone()
            } else {
                String::new()
            },
            rcpts: vec![Recipient::new(to)],
            ..Default::default()
        };
        let what = match (kind, postmaster) {
            (Kind::Failed, false) => "sender non-delivery notification",
            (Kind::Failed, true) => "postmaster non-delivery notification",
            (Kind::Delayed, false) => "sender delay notification",
            (Kind::Delayed, true) => "postmaster delay notification",
            (Kind::Success, _) => "sender delivery status notification",
        };
        match self.queue.commit(draft, nenv, msg.clone()).await {
            Ok(nenv) => {
                self.agent_log("bounce").info(&format!("{qid}: {what}: {nqid}"));
                self.submit(nqid, QueueName::Incoming, Some((nenv, msg)));
            }
            Err(e) => self.log.warning(&format!("{qid}: cannot queue notification: {e}")),
        }
    }
}
