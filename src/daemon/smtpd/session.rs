//! One SMTP session: the command loop, the transaction state, DATA/BDAT
//! into the queue, AUTH through saslauthd, STARTTLS, XCLIENT/XFORWARD, and
//! Postfix's `connect`/`client=`/`reject:`/`disconnect` log lines.

use super::check::{Early, Facts, Verdict};
use super::dnscheck::{Answers, NameStatus};
use super::Smtpd;
use crate::mail::Secret;
use crate::proto::smtp::{self, BdatReceiver, Command, DataEnd, DataReceiver, Verb};
use crate::queue::{Draft, Envelope, QueueError, QueueName, Recipient};
use crate::server::listen::Io;
use std::net::IpAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod auth;
mod commands;
mod message;

/// Read chunk.
const CHUNK: usize = 64 * 1024;

/// Postfix's command table order, for the `disconnect` statistics.
const STAT_NAMES: &[&str] = &[
    "helo", "ehlo", "xclient", "xforward", "starttls", "auth", "mail", "rcpt", "data", "bdat", "rset", "noop", "vrfy", "etrn", "quit",
    "unknown",
];

#[derive(Default)]
struct MailParams {
    size: Option<u64>,
    ret: Option<String>,
    envid: Option<String>,
    smtputf8: bool,
}

struct Session<'a> {
    d: &'a Smtpd,
    io: Box<dyn Io>,
    inbuf: Vec<u8>,
    pos: usize,
    discard: bool,
    out: Vec<u8>,
    ip: IpAddr,
    /// The socket's peer address (XCLIENT changes `ip` only).
    sock_ip: IpAddr,
    name: String,
    /// The unverified reverse name (`check_reverse_client_hostname_*`).
    reverse_name: String,
    name_status: NameStatus,
    reverse_status: NameStatus,
    /// Commands sent ahead of replies without PIPELINING.
    ill_pipelining: bool,
    /// The EHLO keywords not offered to this client (upper case):
    /// `smtpd_discard_ehlo_keywords` or the address maps' answer.
    discard_kw: Vec<String>,
    /// DNS answers for the restrictions, kept for the session.
    dns: Answers,
    helo: Option<String>,
    esmtp: bool,
    tls: bool,
    /// The Received header's TLS lines (`smtpd_tls_received_header`).
    tls_received: Option<String>,
    sasl: Option<(String, String)>,
    sender: Option<String>,
    params: MailParams,
    rcpts: Vec<Recipient>,
    rcpt_tried: usize,
    /// Recipients past `smtpd_recipient_limit` in this transaction: only
    /// those past `smtpd_recipient_overshoot_limit` are errors.
    overshoot: usize,
    draft: Option<Draft>,
    /// BDAT in progress (and whether an error discards the rest).
    bdat: Option<(BdatReceiver, bool)>,
    stats: [(u32, u32); 16],
    /// Postfix's error count: each refused command adds one; a received
    /// message forgives them.  From `smtpd_soft_error_limit` on, every
    /// reply waits `smtpd_error_sleep_time`; at `smtpd_hard_error_limit`
    /// the session ends.
    errors: usize,
    /// Commands a client can repeat without limit (HELO, EHLO, RSET, NOOP,
    /// VRFY, ETRN, XCLIENT, XFORWARD, `smtpd_noop_commands`): past
    /// `smtpd_junk_command_limit` each one counts as an error.
    junk: usize,
    last: &'static str,
    xforward: Vec<(String, String)>,
    /// An access table said HOLD: the message goes to the hold queue.
    hold: bool,
    /// `smtpd_delay_reject = no` and the client list refused the client at
    /// connect: every command but QUIT gets 503.
    access_denied: bool,
    /// The server's address of the connection.
    local_ip: IpAddr,
    /// `smtpd_milters` of this session.
    milters: Option<crate::daemon::hub::milter::Milters>,
    /// A transaction ended since the filters last heard: they get an abort
    /// before the next event.
    milter_dirty: bool,
    /// A filter asked to end the session (421 sent).
    closing: bool,
    /// A filter refused the connection or HELO: every MAIL gets this.
    milter_reject: Option<String>,
    /// access(5) message actions of this transaction.
    acts: Acts,
    /// Policy servers' actions for the command being checked.
    policy: std::collections::HashMap<String, String>,
    /// (client port, server port) of the connection.
    ports: (u16, u16),
    /// When the session began (the policy request's `instance`).
    started: std::time::Duration,
    /// Transactions begun (MAIL commands accepted) in this session.
    transactions: u32,
}

/// Which checks a policy lookup runs ahead of.
#[derive(Clone, Copy)]
pub(super) enum Eval {
    Rcpt,
    Data,
    Early(Early),
    EndOfData,
}

enum Flow {
    Go,
    Quit,
}

type R = std::io::Result<Flow>;

/// access(5) DISCARD, PREPEND, REDIRECT, BCC and FILTER of a transaction.
#[derive(Default)]
struct Acts {
    discard: bool,
    prepend: Vec<String>,
    redirect: Option<String>,
    bcc: Vec<String>,
    filter: Option<String>,
}

/// A MAIL/RCPT event's payload for the filters: `<addr>` and the ESMTP
/// parameters as given.
fn esmtp_args(addr: &str, params: &[smtp::Param]) -> Vec<u8> {
    let mut parts = vec![format!("<{addr}>")];
    for (k, v) in params {
        parts.push(match v {
            Some(v) => format!("{k}={v}"),
            None => k.clone(),
        });
    }
    crate::proto::milter::strings(&parts)
}

/// Postfix's is_header(): a header name (printable, no space or colon)
/// followed by a colon, such as a message header sent as a command.
fn is_header(word: &str) -> bool {
    let Some(name) = word.strip_suffix(':') else {
        return false;
    };
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

fn stat_index(name: &str) -> usize {
    STAT_NAMES.iter().position(|n| *n == name).unwrap_or(15)
}

/// `hangup`: the connection cannot be served (an up-stream proxy's
/// header was wrong): Postfix's `421 4.3.0 ... Server local error`.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    d: &Smtpd,
    io: Box<dyn Io>,
    ip: IpAddr,
    local: IpAddr,
    ports: (u16, u16),
    peer: super::PeerName,
    over: bool,
    hangup: bool,
) {
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut s = Session {
        d,
        io,
        inbuf: Vec::new(),
        pos: 0,
        discard: false,
        out: Vec::new(),
        ip,
        sock_ip: ip,
        local_ip: local,
        name: peer.name,
        reverse_name: peer.reverse_name,
        name_status: peer.status,
        reverse_status: peer.reverse_status,
        ill_pipelining: false,
        discard_kw: Vec::new(),
        dns: Answers::default(),
        helo: None,
        esmtp: false,
        tls: false,
        tls_received: None,
        sasl: None,
        sender: None,
        params: MailParams::default(),
        rcpts: Vec::new(),
        rcpt_tried: 0,
        overshoot: 0,
        draft: None,
        bdat: None,
        stats: [(0, 0); 16],
        errors: 0,
        junk: 0,
        last: "CONNECT",
        xforward: Vec::new(),
        hold: false,
        access_denied: false,
        milters: None,
        milter_dirty: false,
        closing: false,
        milter_reject: None,
        acts: Acts::default(),
        policy: Default::default(),
        ports,
        started,
        transactions: 0,
    };
    d.log.info(&format!("connect from {}", s.client()));
    if hangup {
        let _ = s.reply(&format!("421 4.3.0 {} Server local error", d.hub.conf.myhostname)).await;
        let _ = s.flush().await;
        // (An aborted session's count, as Postfix logs it here.)
        d.log.info(&format!("disconnect from {} commands=0/0", s.client()));
        return;
    }
    let refused = if over {
        Some(("Connection concurrency limit exceeded", d.conf.client_connection_count_limit + 1))
    } else if !d.rate_ok(ip, super::Event::Connection) {
        Some(("Connection rate limit exceeded", d.conf.connection_rate_limit as usize + 1))
    } else {
        None
    };
    if let Some((what, n)) = refused {
        d.log
            .warning(&format!("{what}: {n} from {} for service {}", s.client(), d.conf.service));
        let _ = s
            .reply(&format!(
                "421 4.7.0 {} Error: too many connections from {ip}",
                d.hub.conf.myhostname
            ))
            .await;
        let _ = s.flush().await;
        s.disconnect();
        return;
    }
    // smtps (wrapper mode): the TLS handshake comes before the greeting.
    let res = match (d.conf.wrappermode, d.tls.clone()) {
        (false, _) => s.session().await,
        (true, Some(cfg)) => match s.tls_handshake(cfg).await {
            Ok(()) => s.session().await,
            Err(e) => Err(e),
        },
        (true, None) => {
            d.log.warning(&format!(
                "service {}: smtpd_tls_wrappermode needs smtpd_tls_cert_file and smtpd_tls_key_file",
                d.conf.service
            ));
            s.disconnect();
            return;
        }
    };
    if let Err(e) = res {
        let what = if e.kind() == std::io::ErrorKind::TimedOut {
            let _ = s
                .reply(&format!("421 4.4.2 {} Error: timeout exceeded", d.hub.conf.myhostname))
                .await;
            let _ = s.flush().await;
            "timeout"
        } else {
            "lost connection"
        };
        d.log.info(&format!("{what} after {} from {}", s.last, s.client()));
    }
    s.disconnect();
}

impl Session<'_> {
    /// The client as logs and replies name it: `name[addr]`, with
    /// `:port` under `smtpd_client_port_logging`.
    fn client(&self) -> String {
        if self.d.conf.client_port_logging {
            format!("{}[{}]:{}", self.name, self.ip, self.ports.0)
        } else {
            self.peer()
        }
    }

    /// `name[addr]` (the queue file's client attribute).
    fn peer(&self) -> String {
        format!("{}[{}]", self.name, self.ip)
    }

    fn qid_or_noqueue(&self) -> String {
        self.draft.as_ref().map_or_else(|| "NOQUEUE".to_string(), |d| d.qid.clone())
    }

    fn count(&mut self, name: &str, ok: bool) {
        let i = stat_index(name);
        self.stats[i].1 += 1;
        if ok {
            self.stats[i].0 += 1;
        }
    }

    fn disconnect(&self) {
        let mut parts = Vec::new();
        let (mut ok, mut all) = (0, 0);
        for (i, (o, t)) in self.stats.iter().enumerate() {
            if *t == 0 {
                continue;
            }
            ok += o;
            all += t;
            if o == t {
                parts.push(format!("{}={o}", STAT_NAMES[i]));
            } else {
                parts.push(format!("{}={o}/{t}", STAT_NAMES[i]));
            }
        }
        let cmds = if ok == all {
            format!("commands={ok}")
        } else {
            format!("commands={ok}/{all}")
        };
        parts.push(cmds);
        self.d.log.info(&format!("disconnect from {} {}", self.client(), parts.join(" ")));
    }

    async fn reply(&mut self, line: &str) -> std::io::Result<()> {
        self.pace().await?;
        let footed;
        let line = match self.footer(line) {
            Some(f) => {
                footed = f;
                footed.as_str()
            }
            None => line,
        };
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(b"\r\n");
        if self.out.len() > CHUNK {
            self.flush().await?;
        }
        Ok(())
    }

    /// `smtpd_reject_footer` (or `smtpd_reject_footer_maps`' answer for
    /// the complete reply) after a 4XX/5XX reply, with the session's
    /// `$client_address`, `$client_port`, `$server_name` and `$localtime`.
    fn footer(&self, reply: &str) -> Option<String> {
        if !reply.starts_with(['4', '5']) {
            return None;
        }
        let mapped = match self.d.footer_maps.lookup(reply) {
            Ok(v) => v,
            Err(e) => {
                self.d
                    .log
                    .warning(&format!("smtpd_reject_footer_maps: lookup error for \"{reply}\": {e}"));
                None
            }
        };
        let template = mapped.as_deref().unwrap_or(&self.d.conf.reject_footer);
        if template.is_empty() {
            return None;
        }
        let lookup = |name: &str| match name {
            "client_address" => Some(self.ip.to_string()),
            "client_port" => Some(self.ports.0.to_string()),
            "server_name" => Some(self.d.hub.conf.myhostname.clone()),
            "localtime" => Some(crate::log::timestamp(std::time::SystemTime::now())),
            _ => None,
        };
        Some(crate::proto::smtp::footer::add_footer(reply, template, &lookup))
    }

    /// A client past `smtpd_soft_error_limit` errors waits
    /// `smtpd_error_sleep_time` before each reply (the reply then goes out
    /// at once, as Postfix flushes after the delay).
    async fn pace(&mut self) -> std::io::Result<()> {
        let c = &self.d.conf;
        if self.errors >= c.soft_error_limit && !c.error_sleep_time.is_zero() {
            self.flush().await?;
            tokio::time::sleep(c.error_sleep_time).await;
        }
        Ok(())
    }

    /// After DATA or the last BDAT: a received message forgives the
    /// client's earlier errors and junk commands, a refused one is an error.
    fn forgive(&mut self, received: bool) {
        if received {
            self.errors = 0;
            self.junk = 0;
        } else {
            self.errors += 1;
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            let out = std::mem::take(&mut self.out);
            tokio::time::timeout(self.d.conf.timeout, self.io.write_all(&out))
                .await
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "timeout"))??;
            self.io.flush().await?;
        }
        Ok(())
    }

    /// Reads more input; false at EOF.
    async fn fill(&mut self) -> std::io::Result<bool> {
        // Pipelined replies go out before we wait for the client.
        self.flush().await?;
        if self.pos > 0 {
            self.inbuf.drain(..self.pos);
            self.pos = 0;
        }
        // Read into spare capacity (not zeroed first: that cost a 64 KB
        // memset per read).
        self.inbuf.reserve(CHUNK);
        let n = match tokio::time::timeout(self.d.conf.timeout, self.io.read_buf(&mut self.inbuf)).await {
            Ok(r) => r?,
            Err(_) => return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "timeout")),
        };
        Ok(n > 0)
    }

    /// One input line without its line end, at most `limit` bytes (the
    /// rest of a longer line is discarded, as Postfix 3.7 does).
    async fn line(&mut self, limit: usize) -> std::io::Result<Option<Vec<u8>>> {
        loop {
            let pending = &self.inbuf[self.pos..];
            if let Some(i) = pending.iter().position(|&b| b == b'\n') {
                let mut l = pending[..i].to_vec();
                self.pos += i + 1;
                if std::mem::take(&mut self.discard) {
                    continue;
                }
                if l.last() == Some(&b'\r') {
                    l.pop();
                }
                return Ok(Some(l));
            }
            if self.discard {
                self.pos = self.inbuf.len();
            } else if pending.len() > limit {
                let l = pending[..limit].to_vec();
                self.pos = self.inbuf.len();
                self.discard = true;
                return Ok(Some(l));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    fn reset(&mut self) {
        self.milter_dirty = self.milters.is_some();
        self.acts = Acts::default();
        self.sender = None;
        self.params = MailParams::default();
        self.rcpts.clear();
        self.rcpt_tried = 0;
        self.overshoot = 0;
        self.draft = None;
        self.bdat = None;
        self.hold = false;
    }

    async fn session(&mut self) -> std::io::Result<()> {
        let res = self.session_inner().await;
        if let Some(m) = self.milters.as_mut() {
            m.quit().await;
        }
        res
    }

    async fn session_inner(&mut self) -> std::io::Result<()> {
        if let Some(conf) = self.d.conf.milters.clone().filter(|_| !self.d.conf.receive_override.no_milters) {
            let facts = crate::daemon::hub::milter::Facts {
                myhostname: self.d.hub.conf.myhostname.clone(),
                daemon_addr: self.local_ip.to_string(),
                client_name: self.name.clone(),
                client_addr: self.ip.to_string(),
                ..Default::default()
            };
            self.milters = Some(crate::daemon::hub::milter::Milters::new(conf, self.d.log.clone(), facts));
            let payload = crate::proto::milter::connect(&self.name, Some(self.ip), 0);
            if let Some(r) = self.milter_event(b'C', payload, "CONNECT", None).await {
                if self.closing {
                    self.reply(&r).await?;
                    return self.flush().await;
                }
                self.milter_reject = Some(r);
            }
        }
        {
            match self.early(Early::Client, "CONNECT", None).await {
                // The refusal replaces the greeting; every command but QUIT
                // is then refused (smtpd_proto's access_denied).
                Some(r) => {
                    self.access_denied = true;
                    self.reply(&r).await?;
                    self.errors += 1;
                }
                // A filter refused the connection for good: Postfix's greeting
                // says so (the session goes on, every MAIL refused).
                None if self.milter_reject.as_deref().is_some_and(|r| r.starts_with('5')) => {
                    let host = self.d.hub.conf.myhostname.clone();
                    self.reply(&format!("554 {host} ESMTP not accepting connections")).await?;
                }
                None => {
                    let banner = self.d.conf.banner.clone();
                    self.reply(&format!("220 {banner}")).await?;
                }
            }
        }
        loop {
            // (Before each command, as in Postfix: a refused greeting can
            // reach a hard limit of 1.)
            if self.errors >= self.d.conf.hard_error_limit {
                self.reply(&format!("421 4.7.0 {} Error: too many errors", self.d.hub.conf.myhostname))
                    .await?;
                self.flush().await?;
                self.d
                    .log
                    .info(&format!("too many errors after {} from {}", self.last, self.client()));
                return Ok(());
            }
            let Some(line) = self.line(self.d.conf.line_length_limit).await? else {
                self.flush().await?;
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "lost connection"));
            };
            match self.command(&line).await? {
                Flow::Go if !self.closing => {}
                Flow::Go | Flow::Quit => {
                    self.flush().await?;
                    return Ok(());
                }
            }
        }
    }

    /// Postfix's improper-pipelining test: input already waiting after a
    /// command that must end a pipelined group, or after any command when
    /// the client did not get PIPELINING (HELO, or the keyword discarded).
    fn check_pipelining(&mut self, name: &str) {
        if self.ill_pipelining || self.pos >= self.inbuf.len() || matches!(name, "bdat" | "starttls" | "quit") {
            return;
        }
        let offered = self.esmtp && !self.discard_kw.iter().any(|k| k == "PIPELINING");
        if offered && !matches!(name, "helo" | "ehlo" | "data" | "noop" | "vrfy" | "etrn") {
            return;
        }
        self.ill_pipelining = true;
        let pending = &self.inbuf[self.pos..self.inbuf.len().min(self.pos + 100)];
        let mut shown = String::new();
        for &b in pending {
            match b {
                b'\r' => shown.push_str("\\r"),
                b'\n' => shown.push_str("\\n"),
                b'\t' => shown.push_str("\\t"),
                0x20..=0x7e => shown.push(b as char),
                _ => shown.push('?'),
            }
        }
        let verb = name.to_ascii_uppercase();
        self.d
            .log
            .info(&format!("improper command pipelining after {verb} from {}: {shown}", self.client()));
    }

    /// Looks up what the restrictions of RCPT (with a recipient) or DATA
    /// will ask of the DNS, once per session.
    async fn dns_lookups(&mut self, rcpt: Option<&str>) {
        let queries = {
            let c = self.d.checker();
            let f = self.facts(rcpt);
            if rcpt.is_some() {
                c.rcpt_queries(&f)
            } else {
                c.data_queries(&f)
            }
        };
        if !queries.is_empty() {
            super::dnscheck::fill(crate::dns::Dns::shared(), &mut self.dns, queries).await;
        }
    }

    /// Asks the policy servers that the checks of `which` reach, in their
    /// order, each once for this command: the checks run dry until they
    /// get past every `check_policy_service` they meet.  A server is asked
    /// only if the evaluation gets to it, as in Postfix.
    pub(super) async fn policy_lookups(&mut self, which: Eval, state: &str, rcpt: Option<&str>) {
        self.policy.clear();
        if !self.d.has_policy {
            return;
        }
        // Each round answers one more service; a list has only so many.
        for _ in 0..32 {
            let need = {
                let c = self.d.checker();
                let f = self.facts(rcpt);
                match which {
                    Eval::Rcpt => c.rcpt(&f),
                    Eval::Data => c.data(&f),
                    Eval::Early(e) => c.early(e, &f),
                    Eval::EndOfData => c.end_of_data(&f),
                }
            };
            let Verdict::Need(arg) = need else { return };
            let queue_dir = std::path::Path::new(&self.d.hub.conf.queue_directory);
            let action = match self.d.conf.policy.service(&arg, queue_dir) {
                Ok(svc) => {
                    let req = self.policy_request(state, rcpt, &svc.policy_context);
                    self.d.policy.ask(&svc, &req, &self.d.log).await
                }
                Err(e) => {
                    self.d.log.warning(&format!("restriction check_policy_service: {e}"));
                    "451 4.3.5 Server configuration error".to_string()
                }
            };
            self.policy.insert(arg, action);
        }
    }

    /// The policy delegation request of this command (SMTPD_POLICY_README).
    fn policy_request(&self, state: &str, rcpt: Option<&str>, context: &str) -> String {
        let (method, user) = match &self.sasl {
            Some((m, u)) => (m.clone(), u.clone()),
            None => (String::new(), String::new()),
        };
        let qid = self.draft.as_ref().map(|d| d.qid.clone()).unwrap_or_default();
        let attrs: Vec<(&str, String)> = vec![
            ("request", "smtpd_access_policy".into()),
            ("protocol_state", state.into()),
            ("protocol_name", self.proto().into()),
            ("client_address", self.ip.to_string()),
            ("client_name", self.name.clone()),
            ("client_port", self.ports.0.to_string()),
            ("reverse_client_name", self.reverse_name.clone()),
            ("server_address", self.local_ip.to_string()),
            ("server_port", self.ports.1.to_string()),
            ("helo_name", self.helo.clone().unwrap_or_default()),
            ("sender", self.sender.clone().unwrap_or_default()),
            ("recipient", rcpt.unwrap_or_default().to_string()),
            // Non-zero only at DATA and END-OF-MESSAGE (SMTPD_POLICY_README).
            (
                "recipient_count",
                if matches!(state, "DATA" | "BDAT" | "END-OF-MESSAGE") {
                    self.rcpts.len()
                } else {
                    0
                }
                .to_string(),
            ),
            ("queue_id", qid),
            (
                "instance",
                format!(
                    "{:x}.{:x}.{:x}.{}",
                    std::process::id(),
                    self.started.as_secs(),
                    self.started.subsec_micros(),
                    self.transactions
                ),
            ),
            ("size", self.params.size.unwrap_or(0).to_string()),
            ("etrn_domain", String::new()),
            ("stress", String::new()),
            ("sasl_method", method),
            ("sasl_username", user),
            ("sasl_sender", String::new()),
            ("ccert_subject", String::new()),
            ("ccert_issuer", String::new()),
            ("ccert_fingerprint", String::new()),
            ("ccert_pubkey_fingerprint", String::new()),
            ("encryption_protocol", String::new()),
            ("encryption_cipher", String::new()),
            ("encryption_keysize", "0".into()),
            // Postfix 3.7 ends here (3.8 adds compatibility_level and
            // mail_version).
            ("policy_context", context.into()),
        ];
        super::policy::request(&attrs)
    }

    /// A refusal: the reply (paced by the errors before it), then one
    /// more error.
    async fn error(&mut self, reply: &str) -> R {
        self.reply(reply).await?;
        self.errors += 1;
        Ok(Flow::Go)
    }

    /// Counts a command Postfix flags as repeatable: past
    /// `smtpd_junk_command_limit` each is an error too.
    fn junk_command(&mut self) {
        let n = self.junk;
        self.junk += 1;
        if n > self.d.conf.junk_command_limit {
            self.errors += 1;
        }
    }

    async fn command(&mut self, line: &[u8]) -> R {
        let filtered = self.filter_command(line);
        let line = filtered.as_deref().unwrap_or(line);
        // smtpd_noop_commands: answered before anything else, not counted
        // in the statistics.
        if !self.d.conf.noop_commands.is_empty() {
            let text = String::from_utf8_lossy(line);
            if let Some(word) = text.split_whitespace().next() {
                if self.d.conf.noop_commands.iter().any(|c| c.eq_ignore_ascii_case(word)) {
                    self.reply("250 2.0.0 Ok").await?;
                    self.junk_command();
                    return Ok(Flow::Go);
                }
            }
        }
        let flow = self.dispatch(line).await;
        // (Postfix's SMTPD_CMD_FLAG_LIMIT commands.)
        if matches!(
            self.last,
            "HELO" | "EHLO" | "RSET" | "NOOP" | "VRFY" | "ETRN" | "XCLIENT" | "XFORWARD"
        ) && !self.access_denied
        {
            self.junk_command();
        }
        flow
    }

    async fn dispatch(&mut self, line: &[u8]) -> R {
        let cmd = smtp::parse_strict(line, self.d.conf.strict_rfc821_envelopes);
        let name: &'static str = match &cmd {
            Command::Helo(_) => "helo",
            Command::Ehlo(_) => "ehlo",
            Command::Mail(..) | Command::BadPath(Verb::Mail) => "mail",
            Command::Rcpt(..) | Command::BadPath(Verb::Rcpt) => "rcpt",
            Command::Data(_) => "data",
            Command::Bdat(..) => "bdat",
            Command::Rset => "rset",
            Command::Noop => "noop",
            Command::Quit => "quit",
            Command::Vrfy(_) => "vrfy",
            Command::Etrn(_) => "etrn",
            Command::StartTls => "starttls",
            Command::Auth(..) => "auth",
            Command::Xclient(_) => "xclient",
            Command::Xforward(_) => "xforward",
            Command::Unknown(_) => "unknown",
            Command::Syntax(_) => {
                let verb = String::from_utf8_lossy(line)
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase();
                STAT_NAMES.iter().find(|n| **n == verb).copied().unwrap_or("unknown")
            }
        };
        self.last = match name {
            "helo" => "HELO",
            "ehlo" => "EHLO",
            "mail" => "MAIL",
            "rcpt" => "RCPT",
            "data" => "DATA",
            "bdat" => "BDAT",
            "rset" => "RSET",
            "noop" => "NOOP",
            "quit" => "QUIT",
            "vrfy" => "VRFY",
            "etrn" => "ETRN",
            "starttls" => "STARTTLS",
            "auth" => "AUTH",
            "xclient" => "XCLIENT",
            "xforward" => "XFORWARD",
            _ => "UNKNOWN",
        };
        self.check_pipelining(name);
        if self.access_denied && name != "quit" {
            self.count(name, false);
            return self.error(&format!("503 5.7.0 Error: access denied for {}", self.client())).await;
        }
        // RFC 3030: after BDAT only BDAT, RSET, QUIT and NOOP.  (MAIL is
        // refused as nested first, as Postfix checks.)
        if self.bdat.is_some() && matches!(name, "rcpt" | "data") {
            self.count(name, false);
            let up = name.to_ascii_uppercase();
            return self.error(&format!("503 5.5.1 Error: {up} after BDAT")).await;
        }
        let flow = match cmd {
            Command::Syntax("500 Syntax: ETRN domain") if self.sender.is_some() => {
                self.count(name, false);
                self.error("503 Error: MAIL transaction in progress").await
            }
            Command::Syntax(r) => {
                self.count(name, false);
                self.error(r).await?;
                // 521 closes the session (BDAT syntax: the chunk size is
                // unknown, the stream cannot be resynchronised).
                if r.starts_with("521") {
                    return Ok(Flow::Quit);
                }
                Ok(Flow::Go)
            }
            Command::Unknown(_) => {
                self.count("unknown", false);
                let text = String::from_utf8_lossy(line).into_owned();
                let word = text.split_whitespace().next().unwrap_or_default();
                if is_header(word) || self.forbidden(word) {
                    let shown: String = text.chars().take(100).collect();
                    self.d.log.warning(&format!("non-SMTP command from {}: {shown}", self.client()));
                    self.reply("221 2.7.0 Error: I can break rules, too. Goodbye.").await?;
                    return Ok(Flow::Quit);
                }
                self.error("500 5.5.2 Error: command not recognized").await
            }
            Command::Helo(h) => {
                if let Some(r) = self.helo_checks(h, "HELO").await {
                    self.count(name, false);
                    return self.error(&r).await;
                }
                // (An earlier EHLO's ESMTP stays, as Postfix keeps it.)
                self.count(name, true);
                let host = self.d.hub.conf.myhostname.clone();
                self.reply(&format!("250 {host}")).await?;
                Ok(Flow::Go)
            }
            Command::Ehlo(h) => {
                if let Some(r) = self.helo_checks(h, "EHLO").await {
                    self.count(name, false);
                    return self.error(&r).await;
                }
                self.esmtp = true;
                self.count(name, true);
                self.ehlo().await?;
                Ok(Flow::Go)
            }
            Command::Mail(from, params) => self.mail(from, params).await,
            Command::BadPath(Verb::Mail) => {
                self.illegal_address(line, "MAIL");
                self.count(name, false);
                self.error("501 5.1.7 Bad sender address syntax").await
            }
            Command::Rcpt(to, params) => self.rcpt(to, params).await,
            Command::BadPath(Verb::Rcpt) => {
                self.illegal_address(line, "RCPT");
                self.count(name, false);
                self.error("501 5.1.3 Bad recipient address syntax").await
            }
            Command::Data(args) => self.data(args).await,
            Command::Bdat(n, last) => self.bdat(n, last).await,
            Command::Rset => {
                self.reset();
                self.count(name, true);
                self.reply("250 2.0.0 Ok").await?;
                Ok(Flow::Go)
            }
            Command::Noop => {
                self.count(name, true);
                self.reply("250 2.0.0 Ok").await?;
                Ok(Flow::Go)
            }
            Command::Quit => {
                self.count(name, true);
                self.reply("221 2.0.0 Bye").await?;
                Ok(Flow::Quit)
            }
            Command::Vrfy(arg) => self.vrfy(arg).await,
            Command::Etrn(_) if self.sender.is_some() => {
                self.count(name, false);
                self.error("503 Error: MAIL transaction in progress").await
            }
            Command::Etrn(domain) => {
                let d = domain.trim_start_matches(['@', '#']).to_string();
                if self.d.hub.conf.relay_domains.matches(&d) {
                    self.count(name, true);
                    self.d.hub.qmgr.scan_deferred(true);
                    self.reply("250 Queuing started").await?;
                    Ok(Flow::Go)
                } else {
                    self.count(name, false);
                    let shown: String = domain.chars().take(100).collect();
                    self.d.log.warning(&format!("reject: ETRN {shown}... from {}", self.client()));
                    self.error(&format!("459 <{domain}>: service unavailable")).await
                }
            }
            Command::StartTls => self.starttls().await,
            Command::Auth(mech, ir) => self.auth(mech, ir).await,
            Command::Xclient(attrs) => self.xclient(attrs).await,
            Command::Xforward(attrs) => {
                if self.sender.is_some() {
                    self.count(name, false);
                    return self.error("503 5.5.1 Error: MAIL transaction in progress").await;
                }
                if !crate::daemon::hub::conf::match_networks(&self.d.conf.xforward_hosts, self.ip) {
                    self.count(name, false);
                    return self.error("550 5.7.0 Error: insufficient authorization").await;
                }
                let Some(attrs) = attrs else {
                    self.count(name, false);
                    return self.error("501 5.5.4 Syntax: XFORWARD attribute=value...").await;
                };
                self.count(name, true);
                self.xforward.extend(attrs);
                self.reply("250 2.0.0 Ok").await?;
                Ok(Flow::Go)
            }
        };
        flow
    }

    /// HELO/EHLO: the session restarts with this name, then the helo
    /// list (`smtpd_delay_reject = no`) and the filters see it; the
    /// refusal to send, if any.  A filter's refusal is kept for MAIL (the
    /// greeting stays 250, as in Postfix); only its request to close the
    /// session is answered here.
    async fn helo_checks(&mut self, h: String, verb: &str) -> Option<String> {
        self.reset();
        self.helo = Some(h);
        if let Some(r) = self.early(Early::Helo, verb, None).await {
            self.helo = None;
            return Some(r);
        }
        if let Some(r) = self.milter_reject.clone() {
            // A filter refused the connection or an earlier HELO: logged
            // again, the reply stays 250 (EHLO without extensions), MAIL
            // gets the refusal.
            self.log_whatsup("milter-reject", verb, &r, None);
        } else if self.milters.is_some() {
            let payload = crate::proto::milter::strings(&[self.helo.clone().unwrap_or_default()]);
            if let Some(r) = self.milter_event(b'H', payload, verb, None).await {
                if self.closing {
                    self.helo = None;
                    return Some(r);
                }
                self.milter_reject = Some(r);
            }
        }
        None
    }

    fn facts<'b>(&'b self, rcpt: Option<&'b str>) -> Facts<'b> {
        Facts {
            client_name: &self.name,
            reverse_name: &self.reverse_name,
            name_status: self.name_status,
            reverse_status: self.reverse_status,
            ill_pipelining: self.ill_pipelining,
            dns: &self.dns,
            policy: &self.policy,
            client_addr: self.ip,
            sock_addr: self.sock_ip,
            helo: self.helo.as_deref(),
            sasl_user: self.sasl.as_ref().map(|(_, u)| u.as_str()),
            sender: self.sender.as_deref(),
            rcpt,
            tls: self.tls,
            rcpt_count: self.rcpts.len(),
        }
    }

    fn proto(&self) -> &'static str {
        if self.esmtp {
            "ESMTP"
        } else {
            "SMTP"
        }
    }

    /// Postfix's `reject:` line.
    fn log_reject(&self, stage: &str, reply: &str, rcpt: Option<&str>) {
        self.log_whatsup("reject", stage, reply, rcpt)
    }

    /// A `reject:`/`reject_warning:` line (smtpd_check.c's log_whatsup).
    fn log_whatsup(&self, what: &str, stage: &str, reply: &str, rcpt: Option<&str>) {
        let mut l = format!("{}: {what}: {stage} from {}: {reply};", self.qid_or_noqueue(), self.client());
        if let Some(s) = &self.sender {
            l.push_str(&format!(" from=<{s}>"));
        }
        if let Some(r) = rcpt {
            l.push_str(&format!(" to=<{r}>"));
        }
        l.push_str(&format!(" proto={}", self.proto()));
        if let Some(h) = &self.helo {
            l.push_str(&format!(" helo=<{h}>"));
        }
        self.d.log.info(&l);
    }

    /// Postfix's warning for a malformed MAIL or RCPT address.
    fn illegal_address(&self, line: &[u8], verb: &str) {
        if let Some(a) = smtp::illegal_address(line, self.d.conf.strict_rfc821_envelopes) {
            self.d.log.warning(&format!(
                "Illegal address syntax from {} in {verb} command: {}",
                self.client(),
                // printable(..., '?') as Postfix shows it.
                a.chars()
                    .map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' })
                    .collect::<String>()
            ));
        }
    }

    async fn mail(&mut self, mut from: String, params: Vec<smtp::Param>) -> R {
        let milter_args = self.milters.is_some().then(|| esmtp_args(&from, &params));
        let c = &self.d.conf;
        if c.helo_required && self.helo.is_none() {
            self.count("mail", false);
            return self.error("503 5.5.1 Error: send HELO/EHLO first").await;
        }
        if self.sender.is_some() {
            self.count("mail", false);
            return self.error("503 5.5.1 Error: nested MAIL command").await;
        }
        if c.enforce_tls && !self.tls {
            self.count("mail", false);
            return self.error("530 5.7.0 Must issue a STARTTLS command first").await;
        }
        let mut mp = MailParams::default();
        for (k, v) in params {
            let bad = match (k.to_ascii_uppercase().as_str(), v.as_deref()) {
                ("SIZE", Some(n)) => match n.parse::<u64>() {
                    Ok(n) => {
                        mp.size = Some(n);
                        None
                    }
                    Err(_) => Some("501 5.5.4 Bad message size syntax".to_string()),
                },
                ("BODY", Some(b)) if b.eq_ignore_ascii_case("8BITMIME") || b.eq_ignore_ascii_case("7BIT") => None,
                ("BODY", Some(b)) => Some(format!("501 5.5.4 Bad BODY syntax: {b}")),
                ("RET", Some(r)) if r.eq_ignore_ascii_case("FULL") || r.eq_ignore_ascii_case("HDRS") => {
                    mp.ret = Some(r.to_ascii_uppercase());
                    None
                }
                ("RET", _) => Some("501 5.5.4 Bad RET parameter syntax".into()),
                ("ENVID", Some(e)) if smtp::xtext_decode(e).is_some() => {
                    mp.envid = smtp::xtext_decode(e);
                    None
                }
                ("ENVID", _) => Some("501 5.5.4 Bad ENVID parameter syntax".into()),
                ("SMTPUTF8", None) if c.smtputf8_enable => {
                    mp.smtputf8 = true;
                    None
                }
                ("AUTH", Some(_)) => None,
                (_, Some(v)) => Some(format!("555 5.5.4 Unsupported option: {k}={v}")),
                (_, None) => Some(format!("555 5.5.4 Unsupported option: {k}")),
            };
            if let Some(r) = bad {
                self.count("mail", false);
                return self.error(&r).await;
            }
        }
        if let Some(n) = mp.size {
            if c.message_size_limit > 0 && n > c.message_size_limit as u64 {
                self.count("mail", false);
                let r = "552 5.3.4 Message size exceeds fixed limit";
                self.d.log.info(&format!(
                    "NOQUEUE: reject: MAIL from {}: {r}; from=<{from}> proto={}{}",
                    self.client(),
                    self.proto(),
                    self.helo.as_ref().map(|h| format!(" helo=<{h}>")).unwrap_or_default()
                ));
                return self.error(r).await;
            }
        }
        if !mp.smtputf8 && !from.is_ascii() {
            self.count("mail", false);
            return self.error("553 5.6.7 Must declare SMTPUTF8 to send unicode address").await;
        }
        if !c.delay_reject {
            // The sender is named in the checks and their log lines.
            self.sender = Some(from);
            let r = self.early(Early::Sender, "MAIL", None).await;
            from = self.sender.take().unwrap_or_default();
            if let Some(r) = r {
                self.count("mail", false);
                return self.error(&r).await;
            }
        }
        if !self.d.rate_ok(self.ip, super::Event::Message) {
            self.count("mail", false);
            self.d.log.warning(&format!(
                "Message delivery request rate limit exceeded: {} from {} for service {}",
                self.d.conf.message_rate_limit + 1,
                self.client(),
                self.d.conf.service
            ));
            return self.error(&format!("450 4.7.1 Error: too much mail from {}", self.ip)).await;
        }
        if self.low_space() {
            self.count("mail", false);
            self.d.log.warning(&format!(
                "not enough free space in mail queue: {} bytes < 1.5*message size limit",
                self.free_space()
            ));
            return self.error("452 4.3.1 Insufficient system storage").await;
        }
        if let Some(r) = self.milter_reject.clone() {
            self.sender = Some(from);
            self.log_whatsup("milter-reject", "MAIL", &r, None);
            self.sender = None;
            self.count("mail", false);
            return self.error(&r).await;
        }
        if let Some(args) = milter_args {
            let d = crate::daemon::qmgr::resolve::resolve(&self.d.hub.conf, &from);
            if let Some(m) = self.milters.as_mut() {
                m.facts.mail = Some((from.clone(), d.nexthop, d.transport));
            }
            self.sender = Some(from);
            let r = self.milter_event(b'M', args, "MAIL", None).await;
            from = self.sender.take().unwrap_or_default();
            if let Some(r) = r {
                self.count("mail", false);
                return self.error(&r).await;
            }
        }
        self.sender = Some(from);
        self.params = mp;
        self.transactions += 1;
        self.count("mail", true);
        self.reply("250 2.1.0 Ok").await?;
        Ok(Flow::Go)
    }

    fn free_space(&self) -> u64 {
        let path = std::ffi::CString::new(self.d.hub.queue.dir.as_os_str().as_encoded_bytes()).unwrap_or_default();
        // SAFETY: a valid C path and a zeroed statvfs out-parameter.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
            return u64::MAX;
        }
        st.f_bavail as u64 * st.f_frsize as u64
    }

    /// Postfix's smtpd_check_queue: free space below queue_minfree or below
    /// 1.5 x message_size_limit.
    fn low_space(&self) -> bool {
        let need = (self.d.conf.message_size_limit as u64).saturating_mul(3) / 2;
        let minfree = self.d.conf.queue_minfree;
        if need == 0 && minfree == 0 {
            return false;
        }
        let free = self.free_space();
        free < need || (minfree > 0 && free <= minfree)
    }

    async fn rcpt(&mut self, to: String, params: Vec<smtp::Param>) -> R {
        let milter_args = self.milters.is_some().then(|| esmtp_args(&to, &params));
        if self.sender.is_none() {
            self.count("rcpt", false);
            return self.error("503 5.5.1 Error: need MAIL command").await;
        }
        if self.rcpts.len() >= self.d.conf.recipient_limit {
            self.count("rcpt", false);
            self.reply("452 4.5.3 Error: too many recipients").await?;
            self.overshoot += 1;
            if self.overshoot > self.d.conf.recipient_overshoot_limit {
                self.errors += 1;
            }
            return Ok(Flow::Go);
        }
        if !self.d.rate_ok(self.ip, super::Event::Recipient) {
            self.count("rcpt", false);
            self.d.log.warning(&format!(
                "Recipient address rate limit exceeded: {} from {} for service {}",
                self.d.conf.recipient_rate_limit + 1,
                self.client(),
                self.d.conf.service
            ));
            return self.error(&format!("450 4.7.1 Error: too many recipients from {}", self.ip)).await;
        }
        self.rcpt_tried += 1;
        let mut r = Recipient::new(&to);
        for (k, v) in params {
            let bad = match (k.to_ascii_uppercase().as_str(), v.as_deref()) {
                ("NOTIFY", Some(n)) => {
                    let up = n.to_ascii_uppercase();
                    let items: Vec<&str> = up.split(',').collect();
                    let ok = (items == ["NEVER"]) || items.iter().all(|i| matches!(*i, "SUCCESS" | "FAILURE" | "DELAY"));
                    r.notify = Some(up.clone());
                    (!ok).then_some("501 5.5.4 Error: Bad NOTIFY parameter syntax")
                }
                ("ORCPT", Some(o)) => match o.split_once(';').and_then(|(t, a)| smtp::xtext_decode(a).map(|a| (t, a))) {
                    Some((t, a)) if !t.is_empty() => {
                        r.orcpt = Some(format!("{};{a}", t.to_ascii_lowercase()));
                        None
                    }
                    _ => Some("501 5.5.4 Error: Bad ORCPT parameter syntax"),
                },
                _ => {
                    let text = match v {
                        Some(v) => format!("555 5.5.4 Unsupported option: {k}={v}"),
                        None => format!("555 5.5.4 Unsupported option: {k}"),
                    };
                    self.count("rcpt", false);
                    return self.error(&text).await;
                }
            };
            if let Some(b) = bad {
                self.count("rcpt", false);
                return self.error(b).await;
            }
        }
        let addr = crate::daemon::qmgr::resolve::canonical(&self.d.hub.conf, &to);
        self.dns_lookups(Some(&addr)).await;
        self.policy_lookups(Eval::Rcpt, "RCPT", Some(&addr)).await;
        let (verdict, hold, warnings, actions) = {
            let checker = self.d.checker();
            let v = checker.rcpt(&self.facts(Some(&addr)));
            (v, checker.hold.take(), checker.warnings.take(), checker.actions.take())
        };
        for (kind, w) in warnings {
            self.log_whatsup(kind, "RCPT", &w, Some(&to));
        }
        // A message already to be discarded is not held (nor logged so).
        // The action is logged when found, as Postfix does, even if a
        // later restriction rejects the recipient; only an accepted
        // recipient holds the message.
        if let (Some(text), false) = (&hold, self.acts.discard) {
            self.hold |= !matches!(verdict, Verdict::Reject(_));
            let l = format!(
                "{}: hold: RCPT from {}: {text}; from=<{}> to=<{to}> proto={} helo=<{}>",
                self.qid_or_noqueue(),
                self.client(),
                self.sender.as_deref().unwrap_or(""),
                self.proto(),
                self.helo.as_deref().unwrap_or("")
            );
            self.d.log.info(&l);
        }
        if !matches!(verdict, Verdict::Reject(_)) {
            self.take_actions(actions, "RCPT", Some(&to));
        }
        if let Verdict::Reject(mut reply) = verdict {
            // Replies name the address as the client gave it.
            if addr != to {
                reply = reply.replacen(&format!("<{addr}>"), &format!("<{to}>"), 1);
            }
            self.count("rcpt", false);
            self.log_reject("RCPT", &reply, Some(&to));
            return self.error(&reply).await;
        }
        if let Some(args) = milter_args {
            let d = crate::daemon::qmgr::resolve::resolve(&self.d.hub.conf, &addr);
            if let Some(m) = self.milters.as_mut() {
                m.facts.rcpt = Some((addr.clone(), d.nexthop, d.transport));
            }
            if let Some(r) = self.milter_event(b'R', args, "RCPT", Some(&to)).await {
                self.count("rcpt", false);
                return self.error(&r).await;
            }
        }
        if self.draft.is_none() {
            match self.d.hub.queue.create() {
                Ok(dr) => {
                    let mut l = format!("{}: client={}", dr.qid, self.client());
                    if let Some((m, u)) = &self.sasl {
                        l.push_str(&format!(", sasl_method={m}, sasl_username={u}"));
                    }
                    self.d.log.info(&l);
                    self.draft = Some(dr);
                }
                Err(e) => {
                    self.count("rcpt", false);
                    self.d.log.warning(&format!("queue file creation failed: {e}"));
                    let reply = if matches!(e, QueueError::NoSpace) {
                        "452 4.3.1 Insufficient system storage"
                    } else {
                        "451 4.3.0 Error: queue file write error"
                    };
                    return self.error(reply).await;
                }
            }
        }
        r.addr = addr;
        self.rcpts.push(r);
        self.count("rcpt", true);
        self.reply("250 2.1.5 Ok").await?;
        Ok(Flow::Go)
    }

    async fn starttls(&mut self) -> R {
        let Some(cfg) = self.d.tls.clone() else {
            self.count("starttls", false);
            return self.error("502 5.5.1 Error: command not implemented").await;
        };
        if self.tls {
            self.count("starttls", false);
            return self.error("554 5.5.1 Error: TLS already active").await;
        }
        self.count("starttls", true);
        self.reply("220 2.0.0 Ready to start TLS").await?;
        self.flush().await?;
        // Input pipelined after STARTTLS is discarded (CVE-2011-0411).
        self.inbuf.clear();
        self.pos = 0;
        self.discard = false;
        self.tls_handshake(cfg).await?;
        self.helo = None;
        self.esmtp = false;
        self.sasl = None;
        self.reset();
        Ok(Flow::Go)
    }

    /// The server side of a TLS handshake on the session's connection
    /// (after STARTTLS, or at connect in wrapper mode).
    async fn tls_handshake(&mut self, cfg: Arc<rustls::ServerConfig>) -> std::io::Result<()> {
        let io = std::mem::replace(&mut self.io, Box::new(tokio::io::duplex(1).0));
        let limit = self.d.conf.starttls_timeout;
        match tokio::time::timeout(limit, tokio_rustls::TlsAcceptor::from(cfg).accept(io)).await {
            Ok(Ok(t)) => {
                if self.d.conf.tls_loglevel >= 1 {
                    let (_, conn) = t.get_ref();
                    let summary = crate::util::tls::summary(conn.protocol_version(), conn.negotiated_cipher_suite());
                    self.d
                        .log
                        .info(&format!("Anonymous TLS connection established from {}: {summary}", self.client()));
                }
                if self.d.conf.tls_received_header {
                    let sig = self.d.tls_signature.as_deref();
                    self.tls_received = Some(crate::util::tls::received_lines(t.get_ref().1, sig));
                }
                self.io = Box::new(t);
                self.tls = true;
                Ok(())
            }
            Ok(Err(e)) => {
                self.d.log.warning(&format!("TLS library problem: {e}"));
                Err(std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "TLS handshake failed"))
            }
            Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "timeout")),
        }
    }

    async fn xclient(&mut self, attrs: Option<Vec<(String, String)>>) -> R {
        if self.sender.is_some() {
            self.count("xclient", false);
            return self.error("503 5.5.1 Error: MAIL transaction in progress").await;
        }
        if !crate::daemon::hub::conf::match_networks(&self.d.conf.xclient_hosts, self.ip) {
            self.count("xclient", false);
            return self.error("550 5.7.0 Error: insufficient authorization").await;
        }
        let Some(attrs) = attrs else {
            self.count("xclient", false);
            return self.error("501 5.5.4 Syntax: XCLIENT attribute=value...").await;
        };
        // NAME without REVERSE_NAME stands for both (as Postfix takes it).
        let reverse_given = attrs.iter().any(|(k, _)| k == "REVERSE_NAME");
        for (k, v) in &attrs {
            let v = smtp::xtext_decode(v).unwrap_or_else(|| v.clone());
            let unknown = v == "[UNAVAILABLE]" || v == "[TEMPUNAVAIL]";
            let status = match v.as_str() {
                "[UNAVAILABLE]" => NameStatus::Perm,
                "[TEMPUNAVAIL]" => NameStatus::Temp,
                _ => NameStatus::Ok,
            };
            match k.as_str() {
                "NAME" => {
                    let name = if unknown { "unknown".to_string() } else { v };
                    if !reverse_given {
                        self.reverse_status = status;
                        self.reverse_name = name.clone();
                    }
                    self.name = name;
                    self.name_status = status;
                }
                "REVERSE_NAME" => {
                    self.reverse_status = status;
                    self.reverse_name = if unknown { "unknown".into() } else { v };
                }
                "ADDR" => {
                    if let Ok(ip) = v.trim_start_matches("IPV6:").trim_start_matches("IPv6:").parse::<IpAddr>() {
                        self.ip = ip;
                    }
                }
                "HELO" => self.helo = (!unknown).then_some(v),
                "PROTO" => self.esmtp = v.eq_ignore_ascii_case("ESMTP"),
                "LOGIN" => self.sasl = (!unknown).then(|| ("XCLIENT".to_string(), v)),
                "PORT" | "DESTADDR" | "DESTPORT" => {}
                _ => {
                    self.count("xclient", false);
                    return self.error(&format!("501 5.5.4 Bad XCLIENT attribute name: {k}")).await;
                }
            }
        }
        self.count("xclient", true);
        let banner = self.d.conf.banner.clone();
        self.reply(&format!("220 {banner}")).await?;
        Ok(Flow::Go)
    }
}
