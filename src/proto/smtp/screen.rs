//! postscreen(8)'s built-in SMTP engine, sans I/O: what a client that is
//! not (yet) let through to smtpd talks to.  It never accepts mail: every
//! RCPT gets the session's refusal (the failed test's 550, or the 450 a
//! client gets while it passes the "after 220 greeting" tests), and DATA
//! or BDAT ends the session.  It also makes those tests: command
//! pipelining, non-SMTP commands and bare newlines.  Replies and log texts
//! are Postfix 3.7's, checked against the real postscreen in
//! tests/hub_vs_postfix.rs.

/// What a failed test does (`postscreen_*_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Count the test as failed (no cache entry), go on as if passed.
    Ignore,
    /// Refuse every RCPT with a 550 until the client leaves.
    Enforce,
    /// Reply 521 and hang up.
    Drop,
}

impl Action {
    pub fn parse(v: &str) -> Option<Action> {
        match v.trim().to_ascii_lowercase().as_str() {
            "ignore" => Some(Action::Ignore),
            "enforce" => Some(Action::Enforce),
            "drop" => Some(Action::Drop),
            _ => None,
        }
    }
}

/// The engine's settings (from main.cf's postscreen_* parameters).
#[derive(Debug, Clone)]
pub struct EngineConf {
    pub myhostname: String,
    /// EHLO keywords after the host name, already filtered.
    pub ehlo_keywords: Vec<String>,
    pub helo_required: bool,
    pub disable_vrfy: bool,
    pub command_count_limit: usize,
    /// The deep tests: None when not enabled, else the action.
    pub pipelining: Option<Action>,
    pub bare_newline: Option<Action>,
    pub non_smtp_command: Option<Action>,
    /// `postscreen_non_smtp_command_action`: applied to forbidden
    /// commands even when the test is not enabled, as Postfix does.
    pub non_smtp_action: Action,
}

/// The answer to one command line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// The reply (lines joined by CRLF, no final CRLF); empty: none.
    pub reply: String,
    /// Lines for the log, in order.
    pub log: Vec<String>,
    /// Hang up after the reply.
    pub close: bool,
}

/// A deep test's state during the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Test {
    Todo,
    Passed,
    Failed,
}

pub const PROTOCOL_ERROR_550: &str = "550 5.5.1 Protocol error";
pub const PROTOCOL_ERROR_521: &str = "521 5.5.1 Protocol error";
/// The RCPT reply while a client passes the "after 220" tests.
pub const RETRY_LATER: &str = "450 4.3.2 Service currently unavailable";
const NON_SMTP_DROP: &str = "521 5.7.0 Error: I can break rules, too. Goodbye.";

pub struct Engine {
    conf: EngineConf,
    /// `[addr]:port`, as postscreen names clients.
    client: String,
    helo: Option<String>,
    esmtp: bool,
    sender: Option<String>,
    /// The last command's verb (`CONNECT` before the first).
    last: String,
    commands: usize,
    /// What RCPT and VRFY get.
    rcpt_reply: String,
    /// An `enforce` test failed in this session.
    pub enforced: bool,
    pub pipelining: Test,
    pub bare_newline: Test,
    pub non_smtp_command: Test,
}

/// `<addr>` or `addr` after `FROM:`/`TO:`, as postscreen extracts it:
/// a source route dropped, quoted parts kept whole (quotes and all).
fn extract_addr(s: &str) -> String {
    let s = s.trim_start();
    let (mut rest, stop) = match s.strip_prefix('<') {
        Some(r) => (r, '>'),
        None => (s, ' '),
    };
    if rest.starts_with('@') {
        if let Some(i) = rest.find(':') {
            rest = &rest[i + 1..];
        }
    }
    let mut out = String::new();
    let mut quoted = false;
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c == stop && !quoted => break,
            '"' => {
                quoted = !quoted;
                out.push(c);
            }
            '\\' => {
                out.push(c);
                match chars.next() {
                    Some(n) => out.push(n),
                    None => break,
                }
            }
            c => out.push(c),
        }
    }
    out
}

use super::log_escape as escape;

impl Engine {
    /// `rcpt_reply`: the failed test's refusal, or None for a client that
    /// only has the "after 220" tests to pass.
    pub fn new(conf: EngineConf, client: String, rcpt_reply: Option<&str>) -> Engine {
        let todo = |t: Option<Action>| if t.is_some() { Test::Todo } else { Test::Passed };
        Engine {
            pipelining: todo(conf.pipelining),
            bare_newline: todo(conf.bare_newline),
            non_smtp_command: todo(conf.non_smtp_command),
            conf,
            client,
            helo: None,
            esmtp: false,
            sender: None,
            last: "CONNECT".into(),
            commands: 0,
            enforced: rcpt_reply.is_some(),
            rcpt_reply: rcpt_reply.unwrap_or(RETRY_LATER).to_string(),
        }
    }

    /// The last command's verb, for `... after X` lines.
    pub fn last(&self) -> &str {
        &self.last
    }

    /// All enabled deep tests passed (set when the client reaches RCPT).
    pub fn deep_passed(&self) -> bool {
        [self.pipelining, self.bare_newline, self.non_smtp_command]
            .iter()
            .all(|t| *t == Test::Passed)
    }

    /// A failed test: enforce it, or say how the session ends.
    fn fail(&mut self, action: Action, step: &mut Step, drop_reply: &str) -> bool {
        match action {
            Action::Ignore => false,
            Action::Enforce => {
                self.enforced = true;
                self.rcpt_reply = PROTOCOL_ERROR_550.into();
                false
            }
            Action::Drop => {
                step.reply = drop_reply.into();
                step.close = true;
                true
            }
        }
    }

    /// One command line (without its line end).  `bare_lf`: it ended in
    /// a LF without CR; `pending`: bytes the client sent after it before
    /// any reply (command pipelining).
    pub fn line(&mut self, line: &[u8], bare_lf: bool, pending: &[u8], forbidden: &dyn Fn(&str) -> bool) -> Step {
        let mut step = Step::default();
        let text = String::from_utf8_lossy(line).into_owned();
        let text = text.trim_end_matches([' ', '\t']);
        let (verb, args) = match text.trim_start().split_once([' ', '\t']) {
            Some((v, a)) => (v.to_string(), a.trim().to_string()),
            None => (text.trim_start().to_string(), String::new()),
        };
        let up = verb.to_ascii_uppercase();
        if bare_lf && self.bare_newline == Test::Todo {
            self.bare_newline = Test::Failed;
            step.log
                .push(format!("BARE NEWLINE from {} after {}", self.client, escape(line, 100)));
            let action = self.conf.bare_newline.unwrap_or(Action::Ignore);
            if self.fail(action, &mut step, PROTOCOL_ERROR_521) {
                return step;
            }
        }
        let known = matches!(
            up.as_str(),
            "HELO" | "EHLO" | "MAIL" | "RCPT" | "DATA" | "BDAT" | "RSET" | "NOOP" | "VRFY" | "ETRN" | "QUIT" | "STARTTLS"
        );
        if !known && (forbidden(&verb) || is_header(&verb)) {
            step.log.push(format!(
                "NON-SMTP COMMAND from {} after {}: {}",
                self.client,
                self.last,
                escape(text.as_bytes(), 100)
            ));
            if self.non_smtp_command == Test::Todo {
                self.non_smtp_command = Test::Failed;
            }
            let action = self.conf.non_smtp_command.unwrap_or(self.conf.non_smtp_action);
            if self.fail(action, &mut step, NON_SMTP_DROP) {
                return step;
            }
        }
        self.commands += 1;
        if self.commands > self.conf.command_count_limit {
            step.log
                .push(format!("COMMAND COUNT LIMIT from {} after {}", self.client, self.last));
            step.reply = format!("421 {} Service unavailable - try again later", self.conf.myhostname);
            step.close = true;
            return step;
        }
        if !pending.is_empty() && self.pipelining == Test::Todo {
            self.pipelining = Test::Failed;
            step.log.push(format!(
                "COMMAND PIPELINING from {} after {}: {}",
                self.client,
                escape(verb.as_bytes(), 100),
                escape(pending, 100)
            ));
            let action = self.conf.pipelining.unwrap_or(Action::Ignore);
            if self.fail(action, &mut step, PROTOCOL_ERROR_521) {
                return step;
            }
        }
        step.reply = self.command(&up, &args, &mut step.log, &mut step.close);
        if known {
            self.last = up;
        } else {
            self.last = "UNKNOWN".into();
        }
        step
    }

    fn command(&mut self, verb: &str, args: &str, log: &mut Vec<String>, close: &mut bool) -> String {
        match verb {
            "HELO" | "EHLO" if args.is_empty() => format!("501 Syntax: {verb} hostname"),
            // HELO keeps the protocol an earlier EHLO set.
            "HELO" => {
                self.helo = Some(args.to_string());
                self.sender = None;
                format!("250 {}", self.conf.myhostname)
            }
            "EHLO" => {
                self.helo = Some(args.to_string());
                self.esmtp = true;
                self.sender = None;
                let mut lines = vec![self.conf.myhostname.clone()];
                lines.extend(self.conf.ehlo_keywords.iter().cloned());
                let n = lines.len();
                lines
                    .iter()
                    .enumerate()
                    .map(|(i, l)| format!("250{}{l}", if i + 1 == n { ' ' } else { '-' }))
                    .collect::<Vec<_>>()
                    .join("\r\n")
            }
            "MAIL" => {
                if self.conf.helo_required && self.helo.is_none() {
                    return "503 5.5.1 Error: send HELO/EHLO first".into();
                }
                if self.sender.is_some() {
                    return "503 5.5.1 Error: nested MAIL command".into();
                }
                // Only the colon is looked for: `MAIL TO:<x>` passes.
                match args.split_once(':') {
                    Some((_, addr)) => {
                        self.sender = Some(extract_addr(addr));
                        "250 2.1.0 Ok".into()
                    }
                    None => "501 5.5.4 Syntax: MAIL FROM:<address>".into(),
                }
            }
            "RCPT" => {
                let Some(sender) = self.sender.clone() else {
                    return "503 5.5.1 Error: need MAIL command".into();
                };
                match args.split_once(':') {
                    Some((_, addr)) => {
                        // A client that got this far has passed the
                        // deep tests it did not fail.
                        for t in [&mut self.pipelining, &mut self.bare_newline, &mut self.non_smtp_command] {
                            if *t == Test::Todo {
                                *t = Test::Passed;
                            }
                        }
                        log.push(format!(
                            "NOQUEUE: reject: RCPT from {}: {}; from=<{sender}>, to=<{}>, proto={}, helo=<{}>",
                            self.client,
                            self.rcpt_reply,
                            extract_addr(addr),
                            if self.esmtp { "ESMTP" } else { "SMTP" },
                            self.helo.as_deref().unwrap_or("")
                        ));
                        self.rcpt_reply.clone()
                    }
                    None => "501 5.5.4 Syntax: RCPT TO:<address>".into(),
                }
            }
            // Both end the session, whatever the reply.
            "DATA" | "BDAT" => {
                log.push(format!("{verb} without valid RCPT from {}", self.client));
                *close = true;
                match (&self.sender, verb) {
                    (_, "DATA") if !args.is_empty() => "501 5.5.4 Syntax: DATA".into(),
                    (_, "BDAT") if args.is_empty() => "501 5.5.4 Syntax: BDAT count [LAST]".into(),
                    (None, "DATA") => "503 5.5.1 Error: need RCPT command".into(),
                    (None, _) => "554 5.5.1 Error: need MAIL command".into(),
                    _ => "554 5.5.1 Error: no valid recipients".into(),
                }
            }
            "RSET" => {
                self.sender = None;
                "250 2.0.0 Ok".into()
            }
            "NOOP" => "250 2.0.0 Ok".into(),
            "VRFY" if self.conf.disable_vrfy => "502 5.5.1 VRFY command is disabled".into(),
            "VRFY" if args.is_empty() => "501 5.5.4 Syntax: VRFY address".into(),
            "VRFY" => self.rcpt_reply.clone(),
            "ETRN" if args.is_empty() => "500 Syntax: ETRN domain".into(),
            "ETRN" => "458 Unable to queue messages".into(),
            "QUIT" => {
                *close = true;
                "221 2.0.0 Bye".into()
            }
            "STARTTLS" => "502 5.5.1 Error: command not implemented".into(),
            _ => "502 5.5.2 Error: command not recognized".into(),
        }
    }
}

/// `Name:` (a mail header sent as a command).
fn is_header(word: &str) -> bool {
    let Some(name) = word.strip_suffix(':') else {
        return false;
    };
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf() -> EngineConf {
        EngineConf {
            myhostname: "mx.example".into(),
            ehlo_keywords: vec!["SIZE 10240000".into(), "8BITMIME".into()],
            helo_required: false,
            disable_vrfy: false,
            command_count_limit: 3,
            pipelining: Some(Action::Enforce),
            bare_newline: None,
            non_smtp_command: None,
            non_smtp_action: Action::Drop,
        }
    }

    fn no(_: &str) -> bool {
        false
    }

    #[test]
    fn refuses_every_recipient_and_logs_it() {
        let mut e = Engine::new(conf(), "[192.0.2.1]:4000".into(), Some("550 5.3.2 Service currently unavailable"));
        assert_eq!(
            e.line(b"EHLO c", false, b"", &no).reply,
            "250-mx.example\r\n250-SIZE 10240000\r\n250 8BITMIME"
        );
        assert_eq!(e.line(b"MAIL FROM:<@r:a@b>", false, b"", &no).reply, "250 2.1.0 Ok");
        let s = e.line(b"RCPT TO:\"x y\"@z", false, b"", &no);
        assert_eq!(s.reply, "550 5.3.2 Service currently unavailable");
        assert_eq!(
            s.log,
            [
                r#"NOQUEUE: reject: RCPT from [192.0.2.1]:4000: 550 5.3.2 Service currently unavailable; from=<a@b>, to=<"x y"@z>, proto=ESMTP, helo=<c>"#
            ]
        );
    }

    #[test]
    fn command_count_limit_at_and_past_the_limit() {
        let mut e = Engine::new(conf(), "[192.0.2.1]:4000".into(), None);
        for _ in 0..3 {
            assert_eq!(e.line(b"NOOP", false, b"", &no).reply, "250 2.0.0 Ok");
        }
        let s = e.line(b"NOOP", false, b"", &no);
        assert!(s.close);
        assert_eq!(s.reply, "421 mx.example Service unavailable - try again later");
        assert_eq!(s.log, ["COMMAND COUNT LIMIT from [192.0.2.1]:4000 after NOOP"]);
    }

    #[test]
    fn deep_tests_pass_at_rcpt_and_fail_on_pipelining() {
        let mut e = Engine::new(conf(), "[192.0.2.1]:4000".into(), None);
        e.line(b"HELO c", false, b"", &no);
        e.line(b"MAIL FROM:<a@b>", false, b"", &no);
        assert_eq!(e.line(b"RCPT TO:<c@d>", false, b"", &no).reply, RETRY_LATER);
        assert!(e.deep_passed());
        let mut e = Engine::new(conf(), "[192.0.2.1]:4000".into(), None);
        let s = e.line(b"EHLO c", false, b"MAIL FROM:<a@b>\r\n", &no);
        assert_eq!(
            s.log,
            ["COMMAND PIPELINING from [192.0.2.1]:4000 after EHLO: MAIL FROM:<a@b>\\r\\n"]
        );
        assert_eq!(e.pipelining, Test::Failed);
        assert!(e.enforced && !e.deep_passed());
    }

    #[test]
    fn forbidden_commands_drop_the_session() {
        let mut e = Engine::new(conf(), "[192.0.2.1]:4000".into(), None);
        let s = e.line(b"GET / HTTP/1.0", false, b"", &|w| w == "GET");
        assert!(s.close);
        assert_eq!(s.reply, NON_SMTP_DROP);
        assert_eq!(s.log, ["NON-SMTP COMMAND from [192.0.2.1]:4000 after CONNECT: GET / HTTP/1.0"]);
    }

    #[test]
    fn data_without_recipients_ends_the_session() {
        let mut e = Engine::new(conf(), "[192.0.2.1]:4000".into(), None);
        let s = e.line(b"DATA", false, b"", &no);
        assert_eq!((s.reply.as_str(), s.close), ("503 5.5.1 Error: need RCPT command", true));
        assert_eq!(s.log, ["DATA without valid RCPT from [192.0.2.1]:4000"]);
    }
}
