//! The message phase of an SMTP session: DATA and BDAT, the end-of-data
//! restrictions, the filters (milters) and access table actions, and the
//! queueing of the message with cleanup's rewriting.

use super::*;

impl Session<'_> {
    /// The recipient named by DATA and END-OF-MESSAGE log lines: Postfix's
    /// smtpd_check_data/eod name it only when there is just one.
    pub(super) fn only_rcpt(&self) -> Option<&str> {
        match self.rcpts.as_slice() {
            [r] => Some(r.addr.as_str()),
            _ => None,
        }
    }

    /// `smtpd_forbidden_commands`: words (any case) and tables.
    pub(super) fn forbidden(&self, word: &str) -> bool {
        super::super::check::forbidden_command(&self.d.tables, &self.d.conf.forbidden_commands, word)
    }

    /// The filters' DATA event.
    pub(super) async fn milter_data(&mut self, verb: &str) -> Option<String> {
        self.milters.as_ref()?;
        let rcpt = self.only_rcpt().map(str::to_string);
        self.milter_event(b'T', Vec::new(), verb, rcpt.as_deref()).await
    }

    /// The checks shared by DATA and BDAT; a reply when refused.
    pub(super) fn refuse_data(&self, verb: &str) -> Option<String> {
        if self.rcpts.is_empty() {
            if self.sender.is_none() {
                return Some("503 5.5.1 Error: need RCPT command".into());
            }
            return Some("554 5.5.1 Error: no valid recipients".into());
        }
        let checker = self.d.checker();
        let v = checker.data(&self.facts(None));
        for (kind, w) in checker.warnings.take() {
            self.log_whatsup(kind, verb, &w, self.only_rcpt());
        }
        if let Verdict::Reject(r) = v {
            self.log_reject(verb, &r, self.only_rcpt());
            return Some(r);
        }
        None
    }

    pub(super) async fn data(&mut self, args: bool) -> R {
        self.dns_lookups(None).await;
        self.policy_lookups(Eval::Data, "DATA", None).await;
        if let Some(r) = self.refuse_data("DATA") {
            self.count("data", false);
            return self.error(&r).await;
        }
        if let Some(r) = self.milter_data("DATA").await {
            self.count("data", false);
            return self.error(&r).await;
        }
        if args {
            self.count("data", false);
            return self.error("501 5.5.4 Syntax: DATA").await;
        }
        self.reply("354 End data with <CR><LF>.<CR><LF>").await?;
        let mut rx = DataReceiver::new(self.d.conf.message_size_limit.max(1));
        if self.d.conf.message_size_limit == 0 {
            rx = DataReceiver::new(usize::MAX);
        }
        loop {
            match rx.feed(&self.inbuf[self.pos..]) {
                DataEnd::Done(n) => {
                    self.pos += n;
                    break;
                }
                DataEnd::More => self.pos = self.inbuf.len(),
            }
            if !self.fill().await? {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "lost connection"));
            }
        }
        if rx.too_big {
            self.count("data", false);
            self.reset();
            return self.error("552 5.3.4 Error: message file too big").await;
        }
        if rx.bare_lf
            && self.d.conf.bare_newline == crate::daemon::hub::conf::BareNewline::Reject
            && !crate::daemon::hub::conf::match_networks(&self.d.conf.bare_newline_exclusions, self.ip)
        {
            self.count("data", false);
            self.reset();
            let r = format!(
                "{} 5.5.2 {} Error: bare <LF> received",
                self.d.conf.bare_newline_reject_code, self.d.hub.conf.myhostname
            );
            self.log_reject("DATA", &r, None);
            return self.error(&r).await;
        }
        let reply = self.queue(std::mem::take(&mut rx.data), None).await;
        let ok = reply.starts_with('2');
        self.count("data", ok);
        self.forgive(ok);
        self.reply(&reply).await?;
        Ok(Flow::Go)
    }

    pub(super) async fn bdat(&mut self, n: u64, last: bool) -> R {
        if self.bdat.is_none() {
            self.dns_lookups(None).await;
            self.policy_lookups(Eval::Data, "BDAT", None).await;
            let refused = match self.refuse_data("BDAT") {
                Some(r) => Some(r),
                None => self.milter_data("BDAT").await,
            };
            if let Some(r) = refused {
                // The chunk is read and thrown away (RFC 3030 3).
                self.skip(n).await?;
                self.count("bdat", false);
                return self.error(&r).await;
            }
            let limit = if self.d.conf.message_size_limit == 0 {
                usize::MAX
            } else {
                self.d.conf.message_size_limit
            };
            self.bdat = Some((BdatReceiver::new(limit), false));
        }
        if n == 0 && !last {
            self.skip(0).await?;
            self.count("bdat", false);
            return self.error("551 5.7.1 Null BDAT request").await;
        }
        let (mut rx, failed) = self.bdat.take().unwrap_or_else(|| (BdatReceiver::new(0), true));
        let over = !failed && rx.would_exceed(n);
        if failed || over {
            self.skip(n).await?;
            self.count("bdat", false);
            let r = if over {
                "552 5.3.4 Chunk exceeds message size limit".to_string()
            } else {
                format!("551 5.0.0 Discarded {n} bytes after earlier error")
            };
            if last {
                self.reset();
            } else {
                self.bdat = Some((rx, true));
            }
            return self.error(&r).await;
        }
        let mut left = n;
        while left > 0 {
            if self.pos == self.inbuf.len() && !self.fill().await? {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "lost connection"));
            }
            let take = (self.inbuf.len() - self.pos).min(left as usize);
            rx.feed(&self.inbuf[self.pos..self.pos + take]);
            self.pos += take;
            left -= take as u64;
        }
        if !last {
            self.bdat = Some((rx, false));
            self.count("bdat", true);
            self.reply(&format!("250 2.0.0 Ok: {n} bytes")).await?;
            return Ok(Flow::Go);
        }
        let total = rx.size;
        let reply = self.queue(std::mem::take(&mut rx.data), Some(total)).await;
        let ok = reply.starts_with('2');
        self.count("bdat", ok);
        self.forgive(ok);
        self.reply(&reply).await?;
        Ok(Flow::Go)
    }

    /// Reads and drops `n` bytes of chunk data.
    pub(super) async fn skip(&mut self, mut n: u64) -> std::io::Result<()> {
        while n > 0 {
            if self.pos == self.inbuf.len() && !self.fill().await? {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "lost connection"));
            }
            let take = (self.inbuf.len() - self.pos).min(n as usize);
            self.pos += take;
            n -= take as u64;
        }
        Ok(())
    }

    /// Adds the Received header (and, for local clients, a missing
    /// Message-Id/Date as cleanup does), commits the queue file, hands it
    /// to the queue manager; the reply to send.
    pub(super) async fn queue(&mut self, content: Vec<u8>, bdat_total: Option<u64>) -> String {
        if let Some(r) = self.end_of_data().await {
            self.reset();
            return r;
        }
        let Some(draft) = self.draft.take() else {
            self.reset();
            return "451 4.3.0 Error: queue file write error".into();
        };
        let qid = draft.qid.clone();
        if self.acts.discard {
            // access(5) DISCARD: claimed delivered, thrown away.
            drop(draft);
            self.reset();
            return match bdat_total {
                Some(n) => format!("250 2.0.0 Ok: {n} bytes queued as {qid}"),
                None => format!("250 2.0.0 Ok: queued as {qid}"),
            };
        }
        let (acts_redirect, acts_bcc) = (self.acts.redirect.clone(), self.acts.bcc.clone());
        let hub = &self.d.hub.conf;
        let now = crate::util::unix_now();
        let date = crate::util::codec::mail_date(now);
        let helo = self.helo.clone().unwrap_or_else(|| self.name.clone());
        let addr = if self.ip.is_ipv6() {
            format!("IPv6:{}", self.ip)
        } else {
            self.ip.to_string()
        };
        let mut proto = self.proto().to_string();
        if self.tls {
            proto.push('S');
        }
        if self.sasl.is_some() {
            proto.push('A');
        }
        let mut head = String::new();
        for p in &self.acts.prepend {
            head.push_str(p);
            head.push_str("\r\n");
        }
        head.push_str(&format!("Received: from {helo} ({} [{addr}])\r\n", self.name));
        if let Some(lines) = &self.tls_received {
            head.push_str(lines);
        }
        if let Some((_, user)) = self.sasl.as_ref().filter(|_| self.d.conf.sasl_authenticated_header) {
            let shown: String = user.chars().map(|c| if c.is_control() { '?' } else { c }).collect();
            head.push_str(&format!("\t(Authenticated sender: {shown})\r\n"));
        }
        head.push_str(&format!("\tby {} ({}) with {proto} id {qid}", hub.myhostname, hub.mail_name));
        if self.rcpts.len() == 1 {
            head.push_str(&format!("\r\n\tfor <{}>; {date}\r\n", self.rcpts[0].addr));
        } else {
            head.push_str(&format!(";\r\n\t{date}\r\n"));
        }
        let cleanup = &self.d.hub.cleanup;
        let mut log_tail = format!(
            "from {}; from=<{}> to=<{}> proto={}",
            self.client(),
            self.sender.as_deref().unwrap_or_default(),
            self.rcpts.first().map(|r| r.addr.as_str()).unwrap_or_default(),
            self.proto()
        );
        if let Some(h) = &self.helo {
            log_tail.push_str(&format!(" helo=<{h}>"));
        }
        let over = self.d.conf.receive_override;
        let envelope = if over.no_address_mappings {
            Ok((self.sender.clone().unwrap_or_default(), std::mem::take(&mut self.rcpts)))
        } else {
            cleanup.envelope(self.sender.as_deref().unwrap_or_default(), std::mem::take(&mut self.rcpts))
        };
        let rewritten = envelope.and_then(|(sender, rcpts)| {
            let job = crate::daemon::hub::headers::Job {
                checks: !over.no_header_body_checks,
                context: if over.no_address_mappings || over.no_header_address_rewriting {
                    None
                } else {
                    self.header_context()
                },
                sender: &sender,
                qid: &qid,
                now,
                full_name: "",
                end_header: false,
                log_tail: log_tail.clone(),
            };
            let mut cleaned = cleanup.headers(&content, &job)?;
            // access(5) REDIRECT and BCC; a header check's REDIRECT,
            // decided later, wins.
            if cleaned.redirect.is_none() {
                cleaned.redirect = acts_redirect;
            }
            cleaned.bcc.extend(acts_bcc);
            let rcpts = cleanup.check_recipients(rcpts, &cleaned)?;
            Ok((sender, rcpts, cleaned))
        });
        drop(content);
        let (sender, rcpts, cleaned) = match rewritten {
            Ok(v) => v,
            Err(e) => {
                self.d.cleanup_log.warning(&format!("{qid}: {}", e.0));
                drop(draft);
                self.reset();
                return "451 4.3.0 Error: queue file write error".into();
            }
        };
        for l in &cleaned.log {
            self.d.cleanup_log.info(&format!("{qid}: {l}"));
        }
        for w in &cleaned.warnings {
            self.d.cleanup_log.warning(&format!("{qid}: {w}"));
        }
        match &cleaned.verdict {
            Some(crate::daemon::hub::headers::Verdict::Reject(reply)) => {
                drop(draft);
                self.reset();
                return reply.clone();
            }
            Some(crate::daemon::hub::headers::Verdict::Discard) => {
                drop(draft);
                self.reset();
                return match bdat_total {
                    Some(n) => format!("250 2.0.0 Ok: {n} bytes queued as {qid}"),
                    None => format!("250 2.0.0 Ok: queued as {qid}"),
                };
            }
            Some(crate::daemon::hub::headers::Verdict::Hold) => self.hold = true,
            None => {}
        }

        let (mut sender, mut rcpts) = (sender, rcpts);
        let mut full = Vec::with_capacity(cleaned.content.len() + head.len());
        if self.milters.is_some() {
            let (fields, body_at) = crate::daemon::hub::headers::raw_fields(&cleaned.content);
            let body = &cleaned.content[body_at..];
            let ch = match self.milters.as_mut() {
                Some(m) => {
                    m.facts.qid = Some(qid.clone());
                    m.message(head.as_bytes(), &fields, body).await
                }
                None => Default::default(),
            };
            self.milter_dirty = true;
            let tail = format!(
                "; from=<{}> to=<{}> proto={}{}",
                self.sender.as_deref().unwrap_or_default(),
                rcpts.first().map(|r| r.addr.as_str()).unwrap_or_default(),
                self.proto(),
                self.helo.as_ref().map(|h| format!(" helo=<{h}>")).unwrap_or_default()
            );
            let what = |kind: &str, text: &str| format!("{qid}: milter-{kind}: END-OF-MESSAGE from {}: {text}{tail}", self.client());
            use crate::daemon::hub::milter::Verdict as MV;
            match &ch.verdict {
                Some(MV::Reject(r)) => {
                    // cleanup logs the text without the reply code.
                    self.d.cleanup_log.info(&what("reject", r.get(4..).unwrap_or(r)));
                    drop(draft);
                    self.reset();
                    return r.clone();
                }
                Some(MV::Shutdown) => {
                    let r = format!("421 4.7.0 {} Error: closing connection", self.d.hub.conf.myhostname);
                    self.d.cleanup_log.info(&what("reject", &r[4..]));
                    self.closing = true;
                    drop(draft);
                    self.reset();
                    return r;
                }
                Some(MV::Discard) => {
                    self.d.cleanup_log.info(&what("discard", "milter triggers DISCARD action"));
                    drop(draft);
                    self.reset();
                    return match bdat_total {
                        Some(n) => format!("250 2.0.0 Ok: {n} bytes queued as {qid}"),
                        None => format!("250 2.0.0 Ok: queued as {qid}"),
                    };
                }
                Some(MV::Continue) | None => {}
            }
            if let Some(reason) = &ch.hold {
                self.d.cleanup_log.info(&what("hold", reason));
                self.hold = true;
            }
            full = ch.apply(head.as_bytes(), &cleaned.content, body_at, &mut sender, &mut rcpts);
        } else {
            full.extend_from_slice(head.as_bytes());
            full.extend_from_slice(&cleaned.content);
        }
        drop(cleaned.content);
        if rcpts.is_empty() {
            // Filters deleted every recipient: nothing to deliver.
            self.d.cleanup_log.info(&format!(
                "{qid}: discard: END-OF-MESSAGE from {}: no recipients left",
                self.client()
            ));
            drop(draft);
            self.reset();
            return match bdat_total {
                Some(n) => format!("250 2.0.0 Ok: {n} bytes queued as {qid}"),
                None => format!("250 2.0.0 Ok: queued as {qid}"),
            };
        }
        let mut env = Envelope {
            sender,
            rcpts,
            ..Default::default()
        };
        env.attrs.push(("client".into(), self.peer()));
        if let Some(h) = &self.helo {
            env.attrs.push(("helo".into(), h.clone()));
        }
        env.attrs.push(("protocol".into(), proto));
        // content_filter (this service's, e.g. empty on a reinjection
        // listener), or a header/body check's FILTER.
        let filter = cleaned
            .filter
            .clone()
            .or_else(|| self.acts.filter.clone())
            .unwrap_or_else(|| self.d.conf.content_filter.clone());
        if !filter.is_empty() {
            env.attrs.push(("content_filter".into(), filter));
        }
        if let Some((m, u)) = &self.sasl {
            env.attrs.push(("sasl_method".into(), m.clone()));
            env.attrs.push(("sasl_username".into(), u.clone()));
        }
        if let Some(r) = &self.params.ret {
            env.attrs.push(("dsn_ret".into(), r.clone()));
        }
        if let Some(e) = &self.params.envid {
            env.attrs.push(("dsn_envid".into(), e.clone()));
        }
        let full = Arc::new(full);
        let res = self.d.hub.queue.commit(draft, env, full.clone()).await;
        let hold = self.hold;
        self.reset();
        match res {
            Ok(env) => {
                let log = &self.d.cleanup_log;
                log.info(&format!("{qid}: message-id={}", cleaned.message_id.as_deref().unwrap_or("<>")));
                if let Some(id) = &cleaned.resent_message_id {
                    log.info(&format!("{qid}: resent-message-id={id}"));
                }
                if hold {
                    let _ = self.d.hub.queue.move_to(&qid, QueueName::Incoming, QueueName::Hold);
                } else {
                    self.d.hub.qmgr.submit(qid.clone(), QueueName::Incoming, Some((env, full)));
                }
                match bdat_total {
                    Some(n) => format!("250 2.0.0 Ok: {n} bytes queued as {qid}"),
                    None => format!("250 2.0.0 Ok: queued as {qid}"),
                }
            }
            Err(QueueError::NoSpace) => {
                self.d
                    .log
                    .warning(&format!("{qid}: queue file write error: No space left on device"));
                "452 4.3.1 Insufficient system storage".into()
            }
            Err(e) => {
                self.d.log.warning(&format!("{qid}: queue file write error: {e}"));
                "451 4.3.0 Error: queue file write error".into()
            }
        }
    }

    /// access(5) message actions found by a check: logged as Postfix's
    /// smtpd does, applied when the message is queued.
    pub(super) fn take_actions(&mut self, actions: Vec<(&'static str, String, String)>, stage: &str, rcpt: Option<&str>) {
        for (kind, arg, text) in actions {
            if kind != "prepend" {
                self.log_whatsup(kind, stage, &text, rcpt);
            }
            let a = &mut self.acts;
            match kind {
                "discard" => a.discard = true,
                "prepend" => a.prepend.push(arg),
                "redirect" => a.redirect = Some(arg),
                "bcc" => a.bcc.push(arg),
                _ => a.filter = Some(arg),
            }
        }
    }

    /// One SMTP event for the filters (`C`, `H`, `M`, `R`, `T`): their
    /// refusal, logged as Postfix's `milter-reject:` line.
    pub(super) async fn milter_event(&mut self, code: u8, payload: Vec<u8>, stage: &str, rcpt: Option<&str>) -> Option<String> {
        use crate::daemon::hub::milter::Verdict as MV;
        let qid = self.draft.as_ref().map(|d| d.qid.clone());
        let auth = self.sasl.clone();
        let dirty = std::mem::take(&mut self.milter_dirty);
        let m = self.milters.as_mut()?;
        if dirty {
            m.abort().await;
        }
        m.facts.qid = qid;
        m.facts.auth = auth;
        match m.event(code, payload).await {
            MV::Continue | MV::Discard => None,
            MV::Reject(r) => {
                self.log_whatsup("milter-reject", stage, &r, rcpt);
                Some(r)
            }
            MV::Shutdown => {
                self.closing = true;
                let r = format!("421 4.7.0 {} Error: closing connection", self.d.hub.conf.myhostname);
                self.log_whatsup("milter-reject", stage, &r, rcpt);
                Some(r)
            }
        }
    }

    /// One list that `smtpd_delay_reject = no` runs early; the reply when it
    /// refuses (logged as Postfix does, `stage` naming the command).
    pub(super) async fn early(&mut self, which: Early, stage: &str, rcpt: Option<&str>) -> Option<String> {
        let l = match which {
            Early::Client => &self.d.conf.client_restrictions,
            Early::Helo => &self.d.conf.helo_restrictions,
            Early::Sender => &self.d.conf.sender_restrictions,
        };
        // (The sender's stage also has smtpd_reject_unlisted_sender.)
        let unlisted = which == Early::Sender && self.d.conf.reject_unlisted_sender;
        if self.d.conf.delay_reject || (l.is_empty() && !unlisted) {
            return None;
        }
        let queries = self.d.checker().early_queries(which, &self.facts(None));
        if !queries.is_empty() {
            crate::daemon::smtpd::dnscheck::fill(crate::dns::Dns::shared(), &mut self.dns, queries).await;
        }
        self.policy_lookups(Eval::Early(which), stage, rcpt).await;
        let checker = self.d.checker();
        let v = checker.early(which, &self.facts(None));
        let hold = checker.hold.take();
        let actions = checker.actions.take();
        if !matches!(v, Verdict::Reject(_)) {
            self.take_actions(actions, stage, rcpt);
        }
        for (kind, w) in checker.warnings.take() {
            self.log_whatsup(kind, stage, &w, rcpt);
        }
        match v {
            Verdict::Reject(r) => {
                self.log_reject(stage, &r, rcpt);
                Some(r)
            }
            _ => {
                if let Some(text) = hold {
                    self.hold = true;
                    self.log_whatsup("hold", stage, &text, rcpt);
                }
                None
            }
        }
    }

    /// `smtpd_end_of_data_restrictions` (smtpd_check_eod): the reply when
    /// they refuse the message just received. Unlike Postfix, whose smtpd
    /// keeps the refused transaction open (the next MAIL gets `503 5.5.1
    /// Error: nested MAIL command` unless the client sends RSET), the
    /// transaction ends here, as RFC 5321 clients expect.
    pub(super) async fn end_of_data(&mut self) -> Option<String> {
        if self.d.conf.end_of_data_restrictions.is_empty() {
            return None;
        }
        let queries = self.d.checker().end_of_data_queries(&self.facts(None));
        if !queries.is_empty() {
            crate::daemon::smtpd::dnscheck::fill(crate::dns::Dns::shared(), &mut self.dns, queries).await;
        }
        self.policy_lookups(Eval::EndOfData, "END-OF-MESSAGE", None).await;
        let checker = self.d.checker();
        let v = checker.end_of_data(&self.facts(None));
        let last = self.only_rcpt();
        for (kind, w) in checker.warnings.take() {
            self.log_whatsup(kind, "END-OF-MESSAGE", &w, last);
        }
        match v {
            Verdict::Reject(r) => {
                self.log_reject("END-OF-MESSAGE", &r, last);
                Some(r)
            }
            _ => None,
        }
    }

    /// smtpd_check_rewrite: the header rewrite context of this client
    /// (`local_header_rewrite_clients`, `remote_header_rewrite_domain`).
    pub(super) fn header_context(&self) -> Option<crate::daemon::hub::headers::Context> {
        use crate::daemon::hub::headers::Context;
        let c = &self.d.conf;
        let plain = crate::daemon::hub::conf::canonical_ip;
        let ip = plain(self.ip);
        let mut it = c.header_rewrite_clients.iter();
        while let Some(e) = it.next() {
            let table = |spec: &str| {
                self.d
                    .tables
                    .get(spec)
                    .ok()
                    .and_then(|t| t.lookup(&ip.to_string()).ok().flatten())
                    .is_some()
            };
            let hit = match e.as_str() {
                // Postfix checks the socket's address here, the XCLIENT one
                // everywhere else.
                "permit_inet_interfaces" => c.inet_addrs.contains(&plain(self.sock_ip)),
                "permit_mynetworks" => crate::daemon::hub::conf::match_networks(&self.d.hub.conf.mynetworks, ip),
                "permit_sasl_authenticated" => self.sasl.is_some(),
                "check_address_map" => it.next().is_some_and(|spec| table(spec)),
                spec if spec.contains(':') => table(spec),
                _ => false,
            };
            if hit {
                return Some(Context::Local);
            }
        }
        (!c.remote_header_rewrite_domain.is_empty()).then(|| Context::Remote(c.remote_header_rewrite_domain.clone()))
    }
}
