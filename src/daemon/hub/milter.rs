//! The MTA side of the Sendmail 8 milter protocol, as Postfix runs it for
//! `smtpd_milters` (smtpd(8) for the SMTP events, cleanup(8) for the
//! message) and `non_smtpd_milters` (pickup): option negotiation, the
//! macros of `milter_*_macros`, the replies and modification requests,
//! `milter_default_action` when a filter cannot be reached or misbehaves.
//!
//! Replies as Postfix gives them: `r` → `550 5.7.1 Command rejected`,
//! `t` → `451 4.7.1 Service unavailable - try again later`, `y` → the
//! filter's own text; header changes count Postfix's own Received: header
//! (which the filters are not shown) as the first header.

use crate::config::postfix::list::{split_list, strip_braces};
use crate::config::postfix::Params;
use crate::proto::milter::{self as m, Reply};
use crate::server::listen::Io;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

pub const REJECT: &str = "550 5.7.1 Command rejected";
pub const TEMPFAIL: &str = "451 4.7.1 Service unavailable - try again later";
/// `milter_default_action = reject`.
pub const UNAVAILABLE: &str = "550 5.5.0 Service unavailable";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Default {
    Accept,
    Tempfail,
    Reject,
    Quarantine,
}

/// One filter of the list, with its per-filter overrides
/// (`{ inet:host:port, default_action=accept, ... }`).
#[derive(Clone, Debug)]
pub struct Spec {
    pub endpoint: String,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub content_timeout: Duration,
    pub default_action: Default,
}

/// `smtpd_milters` or `non_smtpd_milters` and the `milter_*` parameters.
#[derive(Debug)]
pub struct MilterConf {
    pub specs: Vec<Spec>,
    /// Macro names per command byte (`C`, `H`, `M`, `R`, `T`, `N`, `E`).
    pub macros: Vec<(u8, Vec<String>)>,
    pub daemon_name: String,
    pub v: String,
}

/// A per-filter time (`10s`, `2m`; a bare number is seconds).
pub(crate) fn parse_time(v: &str) -> Option<Duration> {
    let (num, mult) = match v.chars().last()? {
        's' => (&v[..v.len() - 1], 1),
        'm' => (&v[..v.len() - 1], 60),
        'h' => (&v[..v.len() - 1], 3600),
        'd' => (&v[..v.len() - 1], 86400),
        _ => (v, 1),
    };
    num.parse::<u64>().ok().map(|n| Duration::from_secs(n.saturating_mul(mult)))
}

fn parse_default(v: &str) -> Option<Default> {
    Some(match v {
        "accept" => Default::Accept,
        "tempfail" => Default::Tempfail,
        "reject" => Default::Reject,
        "quarantine" => Default::Quarantine,
        _ => return None,
    })
}

impl MilterConf {
    /// The filters named by `list_param`; None when it is empty.
    pub fn load(p: &Params, list_param: &str) -> Result<Option<MilterConf>, crate::config::ConfigError> {
        let list = p.get(list_param).unwrap_or_default();
        let bad = crate::config::ConfigError::Syntax;
        let default = p.get("milter_default_action").unwrap_or_default();
        let default = parse_default(default.trim()).ok_or_else(|| bad(format!("invalid milter_default_action value: \"{default}\"")))?;
        let (ct, cmt, cnt) = (
            p.get_time("milter_connect_timeout")?,
            p.get_time("milter_command_timeout")?,
            p.get_time("milter_content_timeout")?,
        );
        let mut specs = Vec::new();
        for tok in split_list(&list) {
            let (inner, open) = strip_braces(tok);
            if open {
                return Err(bad(format!("{list_param}: missing '}}' in \"{tok}\"")));
            }
            let mut parts = split_list(inner).into_iter();
            let Some(endpoint) = parts.next() else { continue };
            if !(endpoint.starts_with("inet:") || endpoint.starts_with("unix:") || endpoint.starts_with('/')) {
                return Err(bad(format!("{list_param}: unsupported milter endpoint \"{endpoint}\"")));
            }
            let mut s = Spec {
                endpoint: endpoint.to_string(),
                connect_timeout: ct,
                command_timeout: cmt,
                content_timeout: cnt,
                default_action: default,
            };
            for kv in parts {
                let Some((k, v)) = kv.split_once('=') else {
                    return Err(bad(format!("{list_param}: bad milter attribute \"{kv}\"")));
                };
                let (k, v) = (k.trim(), v.trim());
                let time = |v: &str| parse_time(v).ok_or_else(|| bad(format!("{list_param}: invalid {k} value: \"{v}\"")));
                match k {
                    "connect_timeout" => s.connect_timeout = time(v)?,
                    "command_timeout" => s.command_timeout = time(v)?,
                    "content_timeout" => s.content_timeout = time(v)?,
                    "default_action" => {
                        s.default_action = parse_default(v).ok_or_else(|| bad(format!("{list_param}: invalid default_action: \"{v}\"")))?
                    }
                    // Per-filter protocol and macro overrides: the defaults
                    // are what every filter in use negotiates.
                    "protocol" | "macro_deamon_name" | "macro_v" => {}
                    _ => return Err(bad(format!("{list_param}: unknown milter attribute \"{k}\""))),
                }
            }
            specs.push(s);
        }
        if specs.is_empty() {
            return Ok(None);
        }
        let names = |n: &str| -> Vec<String> { p.get(n).unwrap_or_default().split_whitespace().map(str::to_string).collect() };
        Ok(Some(MilterConf {
            specs,
            macros: vec![
                (b'C', names("milter_connect_macros")),
                (b'H', names("milter_helo_macros")),
                (b'M', names("milter_mail_macros")),
                (b'R', names("milter_rcpt_macros")),
                (b'T', names("milter_data_macros")),
                (b'L', names("milter_end_of_header_macros")),
                (b'N', names("milter_end_of_header_macros")),
                (b'B', names("milter_end_of_data_macros")),
                (b'E', names("milter_end_of_data_macros")),
            ],
            daemon_name: p.get("milter_macro_daemon_name").unwrap_or_default(),
            v: p.get("milter_macro_v").unwrap_or_default(),
        }))
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Live,
    /// Accepted the connection (or was skipped by default_action=accept):
    /// not asked again in this session.
    Off,
    /// Accepted the message: not asked again until the next one.
    MessageOff,
    /// Failed with default_action tempfail/reject/quarantine.
    Failed(Default),
}

struct Filter {
    spec: Spec,
    io: Option<Box<dyn Io>>,
    protocol: u32,
    actions: u32,
    symlists: Vec<(u8, Vec<String>)>,
    state: State,
}

/// What an event decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Continue,
    /// An SMTP reply refusing the command or message.
    Reject(String),
    /// Accept and throw away (message stage).
    Discard,
    /// Close the session with a 421.
    Shutdown,
}

/// Everything the filters asked for at the end of a message.
#[derive(Debug, Default)]
pub struct Changes {
    pub verdict: Option<Verdict>,
    /// Quarantine reason: the message goes to `hold`.
    pub hold: Option<String>,
    /// The header fields (Postfix's Received: first), each with CRLF.
    pub headers: Option<Vec<Vec<u8>>>,
    pub body: Option<Vec<u8>>,
    pub add_rcpts: Vec<String>,
    pub del_rcpts: Vec<String>,
    pub sender: Option<String>,
}

impl Changes {
    /// Applies the envelope changes to `sender` and `rcpts` (a deleted
    /// recipient matches the address as given or as rewritten) and returns
    /// the message to queue: `head` (our Received:) and `content` (the
    /// other headers, the blank line at `body_at`, the body) with the
    /// filters' header and body changes.
    pub fn apply(
        self,
        head: &[u8],
        content: &[u8],
        body_at: usize,
        sender: &mut String,
        rcpts: &mut Vec<crate::queue::Recipient>,
    ) -> Vec<u8> {
        if let Some(s) = self.sender {
            *sender = s;
        }
        rcpts.retain(|r| {
            let orig = r.orig.as_deref().unwrap_or(&r.addr);
            !self
                .del_rcpts
                .iter()
                .any(|d| d.eq_ignore_ascii_case(orig) || d.eq_ignore_ascii_case(&r.addr))
        });
        for a in self.add_rcpts {
            if !rcpts.iter().any(|r| r.addr.eq_ignore_ascii_case(&a)) {
                rcpts.push(crate::queue::Recipient::new(&a));
            }
        }
        let mut full = Vec::with_capacity(content.len() + head.len() + 256);
        match self.headers {
            Some(h) => {
                for f in &h {
                    full.extend_from_slice(f);
                }
                full.extend_from_slice(b"\r\n");
            }
            None => {
                full.extend_from_slice(head);
                full.extend_from_slice(&content[..body_at]);
            }
        }
        full.extend_from_slice(self.body.as_deref().unwrap_or(&content[body_at..]));
        full
    }
}

/// The facts the macros are made of.
#[derive(Default, Clone)]
pub struct Facts {
    pub myhostname: String,
    pub daemon_addr: String,
    pub client_name: String,
    pub client_addr: String,
    pub client_port: u16,
    pub qid: Option<String>,
    pub auth: Option<(String, String)>,
    pub mail: Option<(String, String, String)>,
    pub rcpt: Option<(String, String, String)>,
}

/// The filters of one SMTP session (or one non-SMTP message).
pub struct Milters {
    filters: Vec<Filter>,
    conf: std::sync::Arc<MilterConf>,
    pub log: std::sync::Arc<crate::log::Logger>,
    pub facts: Facts,
}

fn normalize_lines(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() + 8);
    let mut prev = 0u8;
    for &b in v {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

impl Milters {
    pub fn new(conf: std::sync::Arc<MilterConf>, log: std::sync::Arc<crate::log::Logger>, facts: Facts) -> Milters {
        let filters = conf
            .specs
            .iter()
            .map(|s| Filter {
                spec: s.clone(),
                io: None,
                protocol: 0,
                actions: 0,
                symlists: Vec::new(),
                state: State::Live,
            })
            .collect();
        Milters { filters, conf, log, facts }
    }

    fn macro_value(&self, name: &str) -> Option<String> {
        let f = &self.facts;
        let n = name.trim_start_matches('{').trim_end_matches('}');
        let v = match n {
            "j" => f.myhostname.clone(),
            "daemon_name" => self.conf.daemon_name.clone(),
            "daemon_addr" => f.daemon_addr.clone(),
            "v" => self.conf.v.clone(),
            "_" => format!("{} [{}]", f.client_name, f.client_addr),
            "client_addr" => f.client_addr.clone(),
            "client_name" => f.client_name.clone(),
            "client_port" => f.client_port.to_string(),
            "i" => f.qid.clone()?,
            "auth_type" => f.auth.as_ref()?.0.clone(),
            "auth_authen" => f.auth.as_ref()?.1.clone(),
            "mail_addr" => f.mail.as_ref()?.0.clone(),
            "mail_host" => f.mail.as_ref()?.1.clone(),
            "mail_mailer" => f.mail.as_ref()?.2.clone(),
            "rcpt_addr" => f.rcpt.as_ref()?.0.clone(),
            "rcpt_host" => f.rcpt.as_ref()?.1.clone(),
            "rcpt_mailer" => f.rcpt.as_ref()?.2.clone(),
            _ => return None,
        };
        Some(v)
    }

    fn macros_for(&self, i: usize, stage: u8) -> Vec<u8> {
        let names = self.filters[i]
            .symlists
            .iter()
            .chain(self.conf.macros.iter())
            .find(|(s, _)| *s == stage)
            .map(|(_, n)| n.clone())
            .unwrap_or_default();
        let pairs: Vec<(String, String)> = names.iter().filter_map(|n| self.macro_value(n).map(|v| (n.clone(), v))).collect();
        // Postfix sends the macro packet even when no value is known.
        m::macros(stage, &pairs)
    }

    fn fail(&mut self, i: usize, why: &str) -> Verdict {
        let f = &mut self.filters[i];
        self.log.warning(&format!("milter {}: {why}", f.spec.endpoint));
        f.io = None;
        let d = f.spec.default_action;
        f.state = match d {
            Default::Accept => State::Off,
            d => State::Failed(d),
        };
        failed_verdict(d)
    }

    async fn open(&mut self, i: usize) -> Result<(), String> {
        let spec = self.filters[i].spec.clone();
        let connect = async {
            crate::server::listen::connect_endpoint(&spec.endpoint)
                .await
                .map_err(|e| e.to_string())
        };
        let io = tokio::time::timeout(spec.connect_timeout, connect)
            .await
            .map_err(|_| "connect timeout".to_string())?
            .map_err(|e| format!("connect: {e}"))?;
        let f = &mut self.filters[i];
        f.io = Some(io);
        send(f, &m::optneg(m::ACTIONS, m::PROTOCOL), spec.command_timeout).await?;
        match read_reply(f, spec.command_timeout).await? {
            Reply::Optneg {
                version,
                actions,
                protocol,
                symlists,
            } => {
                if !(2..=6).contains(&version) {
                    return Err(format!("unsupported protocol version {version}"));
                }
                f.actions = actions & m::ACTIONS;
                f.protocol = protocol;
                f.symlists = symlists
                    .into_iter()
                    .filter_map(|(s, names)| Some((m::symlist_stage(s)?, names.split_whitespace().map(str::to_string).collect())))
                    .collect();
                Ok(())
            }
            r => Err(format!("unexpected reply to option negotiation: {r:?}")),
        }
    }

    /// Sends one SMTP event (`C`, `H`, `M`, `R`, `T`) to every live filter
    /// in turn; the first refusal ends it.
    pub async fn event(&mut self, code: u8, payload: Vec<u8>) -> Verdict {
        let (skip_flag, noreply_flag) = match code {
            b'C' => (m::NOCONNECT, m::NR_CONN),
            b'H' => (m::NOHELO, m::NR_HELO),
            b'M' => (m::NOMAIL, m::NR_MAIL),
            b'R' => (m::NORCPT, m::NR_RCPT),
            _ => (m::NODATA, m::NR_DATA),
        };
        for i in 0..self.filters.len() {
            match self.filters[i].state {
                State::Off | State::MessageOff => continue,
                State::Failed(d) => return failed_verdict(d),
                State::Live => {}
            }
            if self.filters[i].io.is_none() {
                if let Err(e) = self.open(i).await {
                    let v = self.fail(i, &e);
                    if v != Verdict::Continue {
                        return v;
                    }
                    continue;
                }
            }
            let f = &self.filters[i];
            if f.protocol & skip_flag != 0 {
                continue;
            }
            let wait = f.protocol & noreply_flag == 0;
            let t = f.spec.command_timeout;
            let mut out = self.macros_for(i, code);
            out.extend_from_slice(&m::packet(code, &payload));
            let f = &mut self.filters[i];
            if let Err(e) = send(f, &out, t).await {
                let v = self.fail(i, &e);
                if v != Verdict::Continue {
                    return v;
                }
                continue;
            }
            if !wait {
                continue;
            }
            let reply = loop {
                match read_reply(&mut self.filters[i], t).await {
                    Ok(r) if r.is_final() => break Ok(r),
                    Ok(_) => continue,
                    Err(e) => break Err(e),
                }
            };
            match reply {
                Err(e) => {
                    let v = self.fail(i, &e);
                    if v != Verdict::Continue {
                        return v;
                    }
                }
                Ok(Reply::Continue | Reply::Skip) => {}
                Ok(Reply::Accept) => {
                    self.filters[i].state = if matches!(code, b'C' | b'H') {
                        State::Off
                    } else {
                        State::MessageOff
                    };
                }
                Ok(Reply::Reject) => return Verdict::Reject(REJECT.into()),
                Ok(Reply::Tempfail) => return Verdict::Reject(TEMPFAIL.into()),
                Ok(Reply::ReplyCode(r)) => return Verdict::Reject(checked_reply(&r)),
                Ok(Reply::Shutdown) => return Verdict::Shutdown,
                Ok(Reply::Discard) => return Verdict::Discard,
                Ok(r) => {
                    let v = self.fail(i, &format!("unexpected reply {r:?}"));
                    if v != Verdict::Continue {
                        return v;
                    }
                }
            }
        }
        Verdict::Continue
    }

    /// The message: headers (Postfix's Received: first, not shown to the
    /// filters), body; what the filters decided and changed.
    pub async fn message(&mut self, received: &[u8], fields: &[&[u8]], body: &[u8]) -> Changes {
        let mut ch = Changes::default();
        let mut headers: Vec<Vec<u8>> = std::iter::once(received.to_vec())
            .chain(fields.iter().map(|f| f.to_vec()))
            .collect();
        let mut changed_headers = false;
        for i in 0..self.filters.len() {
            match self.filters[i].state {
                State::Off | State::MessageOff => continue,
                State::Failed(Default::Quarantine) => {
                    ch.hold = Some("milter triggers HOLD action".into());
                    continue;
                }
                State::Failed(d) => {
                    ch.verdict = Some(failed_verdict(d));
                    return ch;
                }
                State::Live => {}
            }
            if self.filters[i].io.is_none() {
                if let Err(e) = self.open(i).await {
                    match self.fail(i, &e) {
                        Verdict::Continue => {
                            if self.filters[i].state == State::Failed(Default::Quarantine) {
                                ch.hold = Some("milter triggers HOLD action".into());
                            }
                            continue;
                        }
                        v => {
                            ch.verdict = Some(v);
                            return ch;
                        }
                    }
                }
            }
            match self.one_message(i, &headers[1..], body).await {
                Err(e) => match self.fail(i, &e) {
                    Verdict::Continue => {
                        if self.filters[i].state == State::Failed(Default::Quarantine) {
                            ch.hold = Some("milter triggers HOLD action".into());
                        }
                    }
                    v => {
                        ch.verdict = Some(v);
                        return ch;
                    }
                },
                Ok((verdict, mods)) => {
                    let leadspc = self.filters[i].protocol & m::HDR_LEADSPC != 0;
                    let mut new_body: Option<Vec<u8>> = None;
                    for r in mods {
                        match r {
                            Reply::AddHeader(n, v) => {
                                headers.push(field(&n, &v, leadspc));
                                changed_headers = true;
                            }
                            Reply::InsHeader(idx, n, v) => {
                                let at = (idx as usize).min(headers.len());
                                headers.insert(at, field(&n, &v, leadspc));
                                changed_headers = true;
                            }
                            Reply::ChgHeader(idx, n, v) => {
                                change_header(&mut headers, idx, &n, &v, leadspc);
                                changed_headers = true;
                            }
                            Reply::AddRcpt(a, _) => ch.add_rcpts.push(strip_angle(&a)),
                            Reply::DelRcpt(a) => ch.del_rcpts.push(strip_angle(&a)),
                            Reply::ChgFrom(a, _) => ch.sender = Some(strip_angle(&a)),
                            Reply::ReplBody(b) => new_body.get_or_insert_with(Vec::new).extend_from_slice(&b),
                            // Postfix logs its own text, not the reason.
                            Reply::Quarantine(_) => ch.hold = Some("milter triggers HOLD action".into()),
                            _ => {}
                        }
                    }
                    if let Some(b) = new_body {
                        ch.body = Some(normalize_lines(&b));
                    }
                    match verdict {
                        Reply::Accept | Reply::Continue | Reply::Skip => {}
                        Reply::Discard => {
                            ch.verdict = Some(Verdict::Discard);
                            return ch;
                        }
                        Reply::Reject => {
                            ch.verdict = Some(Verdict::Reject(REJECT.into()));
                            return ch;
                        }
                        Reply::Tempfail => {
                            ch.verdict = Some(Verdict::Reject(TEMPFAIL.into()));
                            return ch;
                        }
                        Reply::ReplyCode(r) => {
                            ch.verdict = Some(Verdict::Reject(checked_reply(&r)));
                            return ch;
                        }
                        Reply::Shutdown => {
                            ch.verdict = Some(Verdict::Shutdown);
                            return ch;
                        }
                        _ => {}
                    }
                }
            }
        }
        if changed_headers {
            ch.headers = Some(headers);
        }
        ch
    }

    /// One filter's look at the message: its final reply and the
    /// modifications it asked for.  Step by step, as Postfix: each header,
    /// the end of headers and each body chunk waits for its reply (unless
    /// the filter said it gives none), so that a refusal stops the rest.
    async fn one_message(&mut self, i: usize, fields: &[Vec<u8>], body: &[u8]) -> Result<(Reply, Vec<Reply>), String> {
        let (proto, t) = (self.filters[i].protocol, self.filters[i].spec.content_timeout);
        let leadspc = proto & m::HDR_LEADSPC != 0;
        let mut steps: Vec<(Vec<u8>, bool)> = Vec::new();
        if proto & m::NOHDRS == 0 {
            for f in fields {
                let colon = f.iter().position(|&b| b == b':').unwrap_or(f.len());
                let name = &f[..colon];
                let mut value = f.get(colon + 1..).unwrap_or_default().to_vec();
                while value.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    value.pop();
                }
                // Folded lines reach the filter with bare newlines.
                let value: Vec<u8> = value.iter().copied().filter(|&b| b != b'\r').collect();
                let mut out = self.macros_for(i, b'L');
                out.extend_from_slice(&m::header(name, &value, leadspc));
                steps.push((out, proto & m::NR_HDR == 0));
            }
        }
        if proto & m::NOEOH == 0 {
            let mut out = self.macros_for(i, b'N');
            out.extend_from_slice(&m::packet(m::cmd::EOH, b""));
            steps.push((out, proto & m::NR_EOH == 0));
        }
        if proto & m::NOBODY == 0 {
            for chunk in body.chunks(m::CHUNK) {
                let mut out = self.macros_for(i, b'B');
                out.extend_from_slice(&m::packet(m::cmd::BODY, chunk));
                steps.push((out, proto & m::NR_BODY == 0));
            }
        }
        let mut eom = self.macros_for(i, b'E');
        eom.extend_from_slice(&m::packet(m::cmd::BODYEOB, b""));
        let f = &mut self.filters[i];
        for (out, wait) in steps {
            send(f, &out, t).await?;
            if !wait {
                continue;
            }
            let r = loop {
                let r = read_reply(f, t).await?;
                if r.is_final() {
                    break r;
                }
            };
            match r {
                Reply::Continue => {}
                // Skip: no more body chunks wanted.
                Reply::Skip => break,
                other => return Ok((other, Vec::new())),
            }
        }
        send(f, &eom, t).await?;
        let mut mods = Vec::new();
        loop {
            let r = read_reply(f, t).await?;
            if r.is_final() {
                return Ok((r, mods));
            }
            if r != Reply::Progress {
                mods.push(r);
            }
        }
    }

    /// End of a transaction (RSET, message done): filters forget it.
    pub async fn abort(&mut self) {
        for f in &mut self.filters {
            if f.state == State::MessageOff {
                f.state = State::Live;
            }
            if f.io.is_some() {
                let t = f.spec.command_timeout;
                if send(f, &m::packet(m::cmd::ABORT, b""), t).await.is_err() {
                    f.io = None;
                }
            }
        }
    }

    /// End of the session.
    pub async fn quit(&mut self) {
        for f in &mut self.filters {
            if f.io.is_some() {
                let t = f.spec.command_timeout;
                let _ = send(f, &m::packet(m::cmd::QUIT, b""), t).await;
                f.io = None;
            }
        }
    }
}

fn failed_verdict(d: Default) -> Verdict {
    match d {
        Default::Accept | Default::Quarantine => Verdict::Continue,
        Default::Tempfail => Verdict::Reject(TEMPFAIL.into()),
        Default::Reject => Verdict::Reject(UNAVAILABLE.into()),
    }
}

/// A filter's `y` reply, used only if it is a 4xx/5xx SMTP reply.
fn checked_reply(r: &str) -> String {
    let ok = r.len() >= 3 && r.as_bytes()[..3].iter().all(u8::is_ascii_digit) && matches!(r.as_bytes()[0], b'4' | b'5');
    if ok {
        r.replace("\r\n", " ").replace('\n', " ")
    } else {
        TEMPFAIL.into()
    }
}

fn strip_angle(a: &str) -> String {
    a.trim().trim_start_matches('<').trim_end_matches('>').to_string()
}

/// A header field as Postfix writes a filter's one: `Name: value` (or
/// `Name:value` when the filter negotiated leading spaces), CRLF ends.
fn field(name: &[u8], value: &[u8], leadspc: bool) -> Vec<u8> {
    let mut f = name.to_vec();
    f.push(b':');
    if !leadspc {
        f.push(b' ');
    }
    f.extend_from_slice(&normalize_lines(value));
    if !f.ends_with(b"\r\n") {
        f.extend_from_slice(b"\r\n");
    }
    f
}

/// `m` (SMFIR_CHGHEADER): the idx-th field of that name (1-based, 0
/// taken as 1; Postfix's own Received: is not counted) gets the value, or
/// goes when the value is empty; a missing one is added at the end.
fn change_header(headers: &mut Vec<Vec<u8>>, idx: u32, name: &[u8], value: &[u8], leadspc: bool) {
    let want = idx.max(1) as usize;
    let mut seen = 0;
    let mut at = None;
    for (k, h) in headers.iter().enumerate().skip(1) {
        let n = h.iter().position(|&b| b == b':').map(|c| &h[..c]).unwrap_or(&[]);
        if n.eq_ignore_ascii_case(name) {
            seen += 1;
            if seen == want {
                at = Some(k);
                break;
            }
        }
    }
    match (at, value.is_empty()) {
        (Some(k), true) => {
            headers.remove(k);
        }
        (Some(k), false) => headers[k] = field(name, value, leadspc),
        (None, true) => {}
        (None, false) => headers.push(field(name, value, leadspc)),
    }
}

async fn send(f: &mut Filter, bytes: &[u8], t: Duration) -> Result<(), String> {
    let io = f.io.as_mut().ok_or("not connected")?;
    tokio::time::timeout(t, io.write_all(bytes))
        .await
        .map_err(|_| "timeout while sending".to_string())?
        .map_err(|e| format!("write error: {e}"))?;
    tokio::time::timeout(t, io.flush())
        .await
        .map_err(|_| "timeout while sending".to_string())?
        .map_err(|e| format!("write error: {e}"))
}

async fn read_reply(f: &mut Filter, t: Duration) -> Result<Reply, String> {
    let io = f.io.as_mut().ok_or("not connected")?;
    let mut buf = Vec::new();
    read_packet(io, &mut buf, t).await
}

async fn read_packet<R: AsyncRead + Unpin>(io: &mut R, buf: &mut Vec<u8>, t: Duration) -> Result<Reply, String> {
    let mut head = [0u8; 4];
    tokio::time::timeout(t, io.read_exact(&mut head))
        .await
        .map_err(|_| "timeout while reading a reply".to_string())?
        .map_err(|e| format!("read error: {e}"))?;
    let n = m::packet_len(&head).map_err(|e| e.0)?.unwrap_or(4);
    buf.clear();
    buf.extend_from_slice(&head);
    buf.resize(n, 0);
    tokio::time::timeout(t, io.read_exact(&mut buf[4..]))
        .await
        .map_err(|_| "timeout while reading a reply".to_string())?
        .map_err(|e| format!("read error: {e}"))?;
    m::decode(buf).map_err(|e| e.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_changes_count_as_postfix_does() {
        let mut h: Vec<Vec<u8>> = vec![
            b"Received: x\r\n".to_vec(),
            b"Date: d\r\n".to_vec(),
            b"Subject: s\r\n".to_vec(),
            b"X-Mailer: m\r\n".to_vec(),
        ];
        change_header(&mut h, 1, b"subject", b"new", false);
        change_header(&mut h, 1, b"X-Mailer", b"", false);
        change_header(&mut h, 1, b"X-New", b"created", false);
        change_header(&mut h, 2, b"Date", b"", false);
        h.insert(1, field(b"X-Ins1", b"one", false));
        h.push(field(b"X-Multi", b"a\n\tb", false));
        let all: Vec<u8> = h.concat();
        assert_eq!(
            String::from_utf8(all).unwrap(),
            "Received: x\r\nX-Ins1: one\r\nDate: d\r\nsubject: new\r\nX-New: created\r\nX-Multi: a\r\n\tb\r\n"
        );
        assert_eq!(checked_reply("452 4.3.0 hold on"), "452 4.3.0 hold on");
        assert_eq!(checked_reply("250 ok"), TEMPFAIL);
    }
}
