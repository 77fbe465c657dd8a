//! Local submission (Postfix's postdrop + pickup + cleanup for sendmail):
//! the hub's `public/pickup` socket.  The client (sendmail) sends
//! `FROM <sender>\n`, `RCPT <addr>\n`…, `FULLNAME <name>\n` (optional),
//! `DATA <n>\n` and n bytes of message; the submitting user is the
//! socket's peer (SO_PEERCRED), never a claim.  The hub adds
//! `Received: by <myhostname> (Postfix, from userid N)` and, as cleanup
//! does for local mail, a missing Message-Id, Date and From, queues the
//! message durably and answers `OK <qid>` or `ERR <text>`.

use super::Hub;
use crate::log::Logger;
use crate::queue::{Envelope, QueueError, QueueName, Recipient};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

pub struct Pickup {
    pub hub: Arc<Hub>,
    pub log: Arc<Logger>,
    pub cleanup_log: Arc<Logger>,
    pub message_size_limit: usize,
    /// `non_smtpd_milters`.
    pub milters: Option<Arc<super::milter::MilterConf>>,
    /// `content_filter`.
    pub content_filter: String,
}

struct Request {
    sender: Option<String>,
    rcpts: Vec<String>,
    fullname: Option<String>,
    data: Vec<u8>,
}

/// Most recipients in one submission.
const MAX_RCPTS: usize = 10_000;

impl Pickup {
    async fn read(&self, io: &mut tokio::io::BufReader<tokio::net::UnixStream>) -> Result<Request, String> {
        let mut r = Request {
            sender: None,
            rcpts: Vec::new(),
            fullname: None,
            data: Vec::new(),
        };
        loop {
            let mut line = Vec::new();
            let n = (&mut *io)
                .take(4096)
                .read_until(b'\n', &mut line)
                .await
                .map_err(|e| e.to_string())?;
            if n == 0 || !line.ends_with(b"\n") {
                return Err("malformed request".into());
            }
            let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            let (k, v) = line.split_once(' ').unwrap_or((line.as_str(), ""));
            match k {
                "FROM" => r.sender = Some(v.to_string()),
                "RCPT" if r.rcpts.len() < MAX_RCPTS => r.rcpts.push(v.to_string()),
                "RCPT" => return Err("too many recipients".into()),
                "FULLNAME" => r.fullname = Some(v.to_string()),
                "DATA" => {
                    let n: usize = v.parse().map_err(|_| "malformed request".to_string())?;
                    if self.message_size_limit > 0 && n > self.message_size_limit {
                        return Err("message file too big".into());
                    }
                    r.data = vec![0; n];
                    io.read_exact(&mut r.data).await.map_err(|e| e.to_string())?;
                    return Ok(r);
                }
                _ => return Err("malformed request".into()),
            }
        }
    }

    async fn submit(&self, r: Request, uid: u32) -> Result<String, String> {
        let conf = &self.hub.conf;
        let login = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok().flatten();
        let user = login.as_ref().map_or_else(|| format!("#{uid}"), |u| u.name.clone());
        let gecos = login
            .as_ref()
            .map(|u| u.gecos.to_string_lossy().split(',').next().unwrap_or("").to_string())
            .unwrap_or_default();
        let sender = match &r.sender {
            Some(s) if s.is_empty() || s == "<>" => String::new(),
            Some(s) => crate::daemon::qmgr::resolve::canonical(conf, s.trim_start_matches('<').trim_end_matches('>')),
            None => crate::daemon::qmgr::resolve::canonical(conf, &user),
        };
        if r.rcpts.is_empty() {
            return Err("Recipient addresses must be specified on the command line or via the -t option".into());
        }
        let draft = self.hub.queue.create().map_err(|e| e.to_string())?;
        let qid = draft.qid.clone();
        let now = crate::util::unix_now();
        let date = crate::util::codec::mail_date(now);
        let head = format!(
            "Received: by {} ({}, from userid {uid})\r\n\tid {qid}; {date}\r\n",
            conf.myhostname, conf.mail_name
        );
        let rcpts = r
            .rcpts
            .iter()
            .map(|a| Recipient::new(&crate::daemon::qmgr::resolve::canonical(conf, a)))
            .collect();
        let cleanup = &self.hub.cleanup;
        let name = r.fullname.clone().unwrap_or(gecos);
        // sendmail(1) input is always in the local header rewrite context.
        let cleaned = cleanup.envelope(&sender, rcpts).and_then(|(env_sender, rcpts)| {
            let job = crate::daemon::hub::headers::Job {
                context: Some(crate::daemon::hub::headers::Context::Local),
                sender: &env_sender,
                qid: &qid,
                now,
                full_name: &name,
                end_header: true,
                checks: true,
                log_tail: format!(
                    "from local; from=<{env_sender}> to=<{}>",
                    rcpts.first().map(|r| r.addr.as_str()).unwrap_or_default()
                ),
            };
            let c = cleanup.headers(&r.data, &job)?;
            let rcpts = cleanup.check_recipients(rcpts, &c)?;
            Ok((env_sender, rcpts, c))
        });
        let (env_sender, rcpts, cleaned) = match cleaned {
            Ok(v) => v,
            Err(e) => {
                self.cleanup_log.warning(&format!("{qid}: {}", e.0));
                return Err("queue file write error".into());
            }
        };
        for l in &cleaned.log {
            self.cleanup_log.info(&format!("{qid}: {l}"));
        }
        for w in &cleaned.warnings {
            self.cleanup_log.warning(&format!("{qid}: {w}"));
        }
        use crate::daemon::hub::headers::Verdict;
        match &cleaned.verdict {
            Some(Verdict::Reject(reply)) => return Err(reply.get(4..).unwrap_or(reply).to_string()),
            Some(Verdict::Discard) => return Ok(qid),
            _ => {}
        }
        let mut hold = cleaned.verdict == Some(Verdict::Hold);
        let (mut env_sender, mut rcpts) = (env_sender, rcpts);

        let mut full = Vec::with_capacity(cleaned.content.len() + head.len());
        match &self.milters {
            Some(conf) => {
                let filtered = self
                    .filter(conf, &qid, &head, &cleaned.content, &mut env_sender, &mut rcpts)
                    .await?;
                let Some((content, held)) = filtered else {
                    return Ok(qid);
                };
                hold |= held;
                full = content;
            }
            None => {
                full.extend_from_slice(head.as_bytes());
                full.extend_from_slice(&cleaned.content);
            }
        }
        if rcpts.is_empty() {
            return Ok(qid);
        }
        let message_id = cleaned.message_id;
        let mut attrs = vec![("protocol".into(), "pickup".into()), ("uid".into(), uid.to_string())];
        let filter = cleaned.filter.unwrap_or_else(|| self.content_filter.clone());
        if !filter.is_empty() {
            attrs.push(("content_filter".into(), filter));
        }
        let env = Envelope {
            sender: env_sender,
            rcpts,
            attrs,
            ..Default::default()
        };
        let full = Arc::new(full);
        let env = match self.hub.queue.commit(draft, env, full.clone()).await {
            Ok(e) => e,
            Err(QueueError::NoSpace) => return Err("No space left on device".into()),
            Err(e) => return Err(e.to_string()),
        };
        self.log
            .info(&format!("{qid}: uid={uid} from=<{}>", r.sender.clone().unwrap_or(user)));
        self.cleanup_log
            .info(&format!("{qid}: message-id={}", message_id.as_deref().unwrap_or("<>")));
        if hold {
            let _ = self.hub.queue.move_to(&qid, QueueName::Incoming, QueueName::Hold);
        } else {
            self.hub.qmgr.submit(qid.clone(), QueueName::Incoming, Some((env, full)));
        }
        Ok(qid)
    }
}

impl Pickup {
    /// `non_smtpd_milters`: the filters see a local connection
    /// (`localhost [127.0.0.1]`, HELO `localhost`), the envelope and the
    /// message, as Postfix's cleanup shows them non-SMTP mail.  The
    /// content to queue and whether to hold it; None when a filter
    /// discarded the message; an error (sendmail's) when one refused it.
    async fn filter(
        &self,
        conf: &Arc<super::milter::MilterConf>,
        qid: &str,
        head: &str,
        content: &[u8],
        sender: &mut String,
        rcpts: &mut Vec<Recipient>,
    ) -> Result<Option<(Vec<u8>, bool)>, String> {
        use super::milter::{Milters, Verdict as MV};
        use crate::proto::milter as m;
        let hub = &self.hub.conf;
        let facts = super::milter::Facts {
            myhostname: hub.myhostname.clone(),
            daemon_addr: "127.0.0.1".into(),
            client_name: "localhost".into(),
            client_addr: "127.0.0.1".into(),
            qid: Some(qid.to_string()),
            ..Default::default()
        };
        let mut f = Milters::new(conf.clone(), self.cleanup_log.clone(), facts);
        let localhost: std::net::IpAddr = [127, 0, 0, 1].into();
        let refused = |v: MV| -> Result<Option<(Vec<u8>, bool)>, String> {
            match v {
                MV::Reject(r) => Err(r.get(4..).unwrap_or(&r).to_string()),
                MV::Shutdown => Err("Service unavailable".into()),
                MV::Discard => Ok(None),
                MV::Continue => Ok(Some((Vec::new(), false))),
            }
        };
        let mut steps = vec![
            (b'C', m::connect("localhost", Some(localhost), 0)),
            (b'H', m::strings(&["localhost"])),
            (b'M', m::strings(&[format!("<{sender}>")])),
        ];
        for r in rcpts.iter() {
            steps.push((b'R', m::strings(&[format!("<{}>", r.addr)])));
        }
        steps.push((b'T', Vec::new()));
        for (code, payload) in steps {
            if code == b'R' {
                let a = String::from_utf8_lossy(&payload[1..payload.len().saturating_sub(2)]).into_owned();
                let d = crate::daemon::qmgr::resolve::resolve(hub, &a);
                f.facts.rcpt = Some((a, d.nexthop, d.transport));
            } else if code == b'M' {
                let d = crate::daemon::qmgr::resolve::resolve(hub, sender);
                f.facts.mail = Some((sender.clone(), d.nexthop, d.transport));
            }
            let v = f.event(code, payload).await;
            if v != MV::Continue {
                f.quit().await;
                return refused(v);
            }
        }
        let (fields, body_at) = super::headers::raw_fields(content);
        let body = &content[body_at..];
        let ch = f.message(head.as_bytes(), &fields, body).await;
        f.quit().await;
        if let Some(v) = ch.verdict.clone() {
            if v != MV::Continue {
                if let MV::Reject(r) = &v {
                    self.cleanup_log.info(&format!(
                        "{qid}: milter-reject: END-OF-MESSAGE from localhost[127.0.0.1]: {}; from=<{sender}>",
                        r.get(4..).unwrap_or(r)
                    ));
                }
                return refused(v);
            }
        }
        let held = ch.hold.is_some();
        Ok(Some((ch.apply(head.as_bytes(), content, body_at, sender, rcpts), held)))
    }
}

impl crate::server::Service for Pickup {
    async fn serve(self: Arc<Self>, conn: crate::server::Conn) {
        let crate::server::Conn::Unix(s) = conn else { return };
        let uid = match s.peer_cred() {
            Ok(c) => c.uid(),
            Err(_) => return,
        };
        let mut io = tokio::io::BufReader::new(s);
        let req = tokio::time::timeout(std::time::Duration::from_secs(300), self.read(&mut io)).await;
        let reply = match req {
            Ok(Ok(r)) => match self.submit(r, uid).await {
                Ok(qid) => format!("OK {qid}\n"),
                Err(e) => format!("ERR {e}\n"),
            },
            Ok(Err(e)) => format!("ERR {e}\n"),
            Err(_) => "ERR timeout\n".to_string(),
        };
        let _ = io.get_mut().write_all(reply.as_bytes()).await;
    }
}
