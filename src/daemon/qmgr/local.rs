//! local(8), the part a mail hub uses: `alias_maps` expansion of local
//! recipients (recursively, with `:include:` files), forwarding the
//! expansion as a new message (`status=sent (forwarded as ID)`, with a
//! `Delivered-To:` header and `owner-` alias senders), loop detection,
//! and handing everything else to `mailbox_transport` (`passing <…> to
//! transport=…`), and running an alias's `"|command"` as `default_privs`
//! (through pipe(8)'s machinery).  Delivery to files and mbox mailboxes is
//! not done by this hub: such recipients are deferred with a reason.

use super::lmtp::{Outcome, Reply};
use super::resolve::{self, Class, Dest};
use super::Qmgr;
use crate::queue::{Envelope, QueueName, Recipient};
use std::collections::HashSet;
use std::sync::Arc;

pub enum Step {
    /// Deliver through this transport (mailbox_transport).
    Pass(Dest),
    /// Finished here (forwarded, deferred, bounced).
    Done(Outcome),
}

/// Largest `:include:` file read.
const INCLUDE_MAX: u64 = 1 << 20;
/// Alias nesting depth.
const DEPTH_MAX: usize = 100;

fn defer(why: &str) -> Step {
    Step::Done(Outcome::Deferred(Reply::local(450, "4.3.0", why), why.to_string()))
}

/// The `Delivered-To:` values in the message header, lower case.
fn delivered_to(content: &[u8]) -> HashSet<String> {
    let (end, _) = crate::mail::mime::header_end(content);
    crate::mail::mime::fields(&content[..end])
        .into_iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("delivered-to"))
        .map(|(_, v)| String::from_utf8_lossy(crate::mail::mime::trim(&v)).to_ascii_lowercase())
        .collect()
}

impl Qmgr {
    /// local(8) for recipient `i` of the message.
    pub(super) async fn local(self: &Arc<Self>, qid: &str, env: &Envelope, content: &Arc<Vec<u8>>, i: usize) -> Step {
        let r = &env.rcpts[i];
        if !r.no_alias {
            if delivered_to(content).contains(&r.addr.to_ascii_lowercase()) {
                let why = format!("mail forwarding loop for {}", r.addr);
                return Step::Done(Outcome::Bounced(Reply::local(554, "5.4.6", &why), why));
            }
            let mut leaves = Vec::new();
            let mut visited = HashSet::new();
            match self.expand(&r.addr, 0, &mut visited, &mut leaves) {
                Err(why) => return defer(&why),
                Ok(false) => {}
                Ok(true) => {
                    // `|command` elements run first; the first failure is
                    // the recipient's outcome (nothing forwarded yet).
                    let (commands, leaves): (Vec<String>, Vec<String>) = leaves.into_iter().partition(|l| l.starts_with('|'));
                    let mut last = None;
                    for c in &commands {
                        match self.command(qid, env, content, r, &c[1..]).await {
                            Outcome::Sent(reply) => last = Some(reply),
                            other => return Step::Done(other),
                        }
                    }
                    if leaves.is_empty() {
                        if let Some(reply) = last {
                            return Step::Done(Outcome::Sent(reply));
                        }
                    }
                    let (local, _) = resolve::split(&r.addr);
                    let owner = match self.s().cleanup.alias(&format!("owner-{local}")) {
                        Ok(Some(_)) => Some(format!("owner-{local}@{}", self.s().conf.myorigin)),
                        Ok(None) => None,
                        Err(_) => return defer("alias database unavailable"),
                    };
                    return match self.forward(env, content, r, leaves, owner).await {
                        Ok(id) => Step::Done(Outcome::Sent(Reply::local(250, "2.0.0", format!("forwarded as {id}")))),
                        Err(why) => defer(&why),
                    };
                }
            }
        }
        let settings = self.s();
        let spec = &settings.conf.mailbox_transport;
        if spec.is_empty() {
            return defer("mailbox delivery is not done by this hub: set mailbox_transport");
        }
        let (transport, nexthop) = spec.split_once(':').unwrap_or((spec.as_str(), ""));
        self.agent_log("local")
            .info(&format!("{qid}: passing <{}> to transport={transport}", r.addr));
        let nexthop = if nexthop.is_empty() {
            resolve::split(&r.addr).1
        } else {
            nexthop.to_string()
        };
        Step::Pass(Dest {
            transport: transport.to_string(),
            nexthop,
        })
    }

    /// Expands `addr`'s alias into `leaves`; false when it has none.
    fn expand(&self, addr: &str, depth: usize, visited: &mut HashSet<String>, leaves: &mut Vec<String>) -> Result<bool, String> {
        if depth > DEPTH_MAX {
            return Err(format!("alias expansion too deep for {addr}"));
        }
        visited.insert(addr.to_ascii_lowercase());
        let (local, _) = resolve::split(addr);
        let Some(targets) = self
            .s()
            .cleanup
            .alias(local)
            .map_err(|_| "alias database unavailable".to_string())?
        else {
            return Ok(false);
        };
        let mut work: Vec<String> = targets.into_iter().rev().collect();
        let mut includes = 0;
        while let Some(t) = work.pop() {
            if let Some(path) = t.strip_prefix(":include:") {
                includes += 1;
                if includes > DEPTH_MAX {
                    return Err(format!("too many :include: files for {addr}"));
                }
                let text = read_include(path)?;
                let mut more: Vec<String> = text
                    .lines()
                    .filter(|l| !l.trim_start().starts_with('#'))
                    .flat_map(crate::config::postfix::list::split_list)
                    .map(|v| v.trim().trim_matches('"').to_string())
                    .filter(|v| !v.is_empty())
                    .collect();
                more.reverse();
                work.extend(more);
                continue;
            }
            if t.starts_with('|') {
                let allowed = self.s().params.get("allow_mail_to_commands").unwrap_or_default();
                if !crate::config::postfix::list::split_list(&allowed).contains(&"alias") {
                    return Err(format!("mail to command is restricted (alias {local})"));
                }
                leaves.push(t);
                continue;
            }
            if t.starts_with('/') {
                return Err(format!("delivery to file is not done by this hub (alias {local})"));
            }
            let a = resolve::canonical(&self.s().conf, &t);
            let local_class = resolve::class(&self.s().conf, &resolve::split(&a).1) == Class::Local;
            if local_class && !visited.contains(&a.to_ascii_lowercase()) {
                if !self.expand(&a, depth + 1, visited, leaves)? {
                    leaves.push(a);
                }
            } else {
                leaves.push(a);
            }
        }
        Ok(true)
    }

    /// local(8)'s delivery to an alias's `|command`, as `default_privs`.
    async fn command(&self, qid: &str, env: &Envelope, content: &[u8], r: &Recipient, command: &str) -> Outcome {
        let settings = self.s();
        let p = &settings.params;
        let who = p.get("default_privs").unwrap_or_else(|| "nobody".into());
        let Some(u) = nix::unistd::User::from_name(&who).ok().flatten().filter(|u| !u.uid.is_root()) else {
            let why = format!("mail system configuration error: default_privs: unknown or privileged user {who}");
            return Outcome::Deferred(Reply::local(450, "4.3.5", &why), why);
        };
        let (local, domain) = resolve::split(&r.addr);
        let ext = match resolve::split_ext(&settings.conf, local) {
            Some((b, e)) if !b.is_empty() => e.trim_start_matches(|c| settings.conf.recipient_delimiter.contains(c)).to_string(),
            _ => String::new(),
        };
        let orig = r.orig.clone().unwrap_or_else(|| r.addr.clone());
        let env_vars = vec![
            format!("HOME={}", u.dir.display()),
            format!("LOGNAME={}", u.name),
            format!("USER={}", u.name),
            format!("SHELL={}", u.shell.display()),
            "PATH=/usr/bin:/bin".to_string(),
            format!("SENDER={}", env.sender),
            format!("RECIPIENT={}", r.addr),
            format!("LOCAL={local}"),
            format!("DOMAIN={domain}"),
            format!("EXTENSION={ext}"),
            format!("ORIGINAL_RECIPIENT={orig}"),
        ];
        let time_limit = p
            .get_time("local_command_time_limit")
            .or_else(|_| p.get_time("command_time_limit"))
            .map(|d| d.as_secs())
            .unwrap_or(1000);
        let dir = p.get("command_execution_directory").unwrap_or_default();
        let conf = super::pipe::PipeConf::local_command(u.uid.as_raw(), u.gid.as_raw(), command, &dir);
        let rcpts = [r.addr.clone()];
        let origs = [orig];
        let ctx = super::pipe::Ctx {
            qid,
            service: "local",
            nexthop: &domain,
            sender: &env.sender,
            rcpts: &rcpts,
            origs: &origs,
            attrs: &env.attrs,
            arrival: env.arrival.0,
            content,
            time_limit,
            delimiter: &settings.conf.recipient_delimiter,
            env: env_vars,
        };
        super::pipe::deliver(&self.spawner(), &conf, &ctx).await
    }

    /// A new queue file for the expansion, through cleanup's rewriting
    /// (which also drops duplicate addresses);
    /// durable before the original recipient is marked done.
    async fn forward(
        self: &Arc<Self>,
        env: &Envelope,
        content: &[u8],
        r: &Recipient,
        leaves: Vec<String>,
        owner: Option<String>,
    ) -> Result<String, String> {
        let orig = r.orig.clone().unwrap_or_else(|| r.addr.clone());
        let rcpts = leaves
            .into_iter()
            .map(|addr| Recipient {
                orig: Some(orig.clone()),
                no_alias: true,
                orcpt: r.orcpt.clone(),
                notify: r.notify.clone(),
                ..Recipient::new(&addr)
            })
            .collect();
        let rcpts = self.s().cleanup.recipients(rcpts).map_err(|e| {
            self.agent_log("cleanup").warning(&e.0);
            "queue file write error".to_string()
        })?;
        if rcpts.is_empty() {
            return Err(format!("no recipient in alias lookup result for {}", r.addr));
        }
        let draft = self.queue.create().map_err(|e| format!("cannot create queue file: {e}"))?;
        let id = draft.qid.clone();
        let mut body = format!("Delivered-To: {}\r\n", r.addr).into_bytes();
        body.extend_from_slice(content);
        let fwd = Envelope {
            sender: owner.unwrap_or_else(|| env.sender.clone()),
            attrs: vec![("protocol".into(), "local".into())],
            rcpts,
            ..Default::default()
        };
        let body = Arc::new(body);
        let fwd = self
            .queue
            .commit(draft, fwd, body.clone())
            .await
            .map_err(|e| format!("cannot write queue file: {e}"))?;
        self.submit(id.clone(), QueueName::Incoming, Some((fwd, body)));
        Ok(id)
    }
}

fn read_include(path: &str) -> Result<String, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| format!("cannot open include file {path}: {}", crate::util::strerror(&e)))?;
    let mut text = String::new();
    f.take(INCLUDE_MAX)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read include file {path}: {}", crate::util::strerror(&e)))?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    #[test]
    fn delivered_to_header_only() {
        let m = b"Delivered-To: A@x.org\r\nSubject: s\r\ndelivered-to:  b@y\r\n\r\nDelivered-To: c@z\r\n";
        let d = super::delivered_to(m);
        assert!(d.contains("a@x.org") && d.contains("b@y") && !d.contains("c@z"));
    }
}
