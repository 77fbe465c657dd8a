//! pipe(8): delivery to a command named in master.cf
//! (`mailman unix - n n - - pipe flags=FR user=list argv=/path ${nexthop} ${user}`).
//! The attributes `flags=` (`B D F O R X h q u . >`), `user=` (required,
//! never root), `argv=` (last), `size=`, `eol=`, `directory=` and
//! `null_sender=`; `${…}` macros, repeated per recipient where they name
//! one; the exit status read as sysexits(3) codes the way pipe(8) reads
//! them; `<service>_time_limit` (default `command_time_limit`).

use super::lmtp::{Outcome, Reply};
use crate::daemon::hub::spawn::{self, Spawner, Status};

#[derive(Debug, Clone)]
pub struct PipeConf {
    flags: String,
    uid: u32,
    gid: u32,
    argv: Vec<String>,
    size: Option<u64>,
    eol: String,
    directory: String,
    null_sender: String,
    /// The status text on success (default `delivered via X service`).
    sent_text: Option<String>,
}

impl PipeConf {
    /// local(8)'s delivery to an alias's `|command`: through /bin/sh as
    /// `uid`/`gid`, with a From_ line, Return-Path, X-Original-To and
    /// Delivered-To.
    pub fn local_command(uid: u32, gid: u32, command: &str, directory: &str) -> PipeConf {
        PipeConf {
            flags: "FROD".into(),
            uid,
            gid,
            argv: vec!["/bin/sh".into(), "-c".into(), command.into()],
            size: None,
            eol: "\n".into(),
            directory: directory.to_string(),
            null_sender: "MAILER-DAEMON".into(),
            sent_text: Some(format!("delivered to command: {command}")),
        }
    }
}

/// The master.cf arguments after `pipe` (its `-o` settings skipped).
pub fn parse(args: &[String]) -> Result<PipeConf, String> {
    let mut c = PipeConf {
        flags: String::new(),
        uid: 0,
        gid: 0,
        argv: Vec::new(),
        size: None,
        eol: "\n".into(),
        directory: String::new(),
        null_sender: "MAILER-DAEMON".into(),
        sent_text: None,
    };
    let mut user = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "-o" {
            it.next();
            continue;
        }
        if a.starts_with('-') {
            continue;
        }
        let Some((k, v)) = a.split_once('=') else {
            return Err(format!("unknown attribute name: {a}"));
        };
        match k {
            "flags" => c.flags = v.to_string(),
            "user" => user = Some(v.to_string()),
            "size" => c.size = Some(v.parse().map_err(|_| format!("bad size= value: {v}"))?),
            "eol" => c.eol = v.replace("\\r", "\r").replace("\\n", "\n"),
            "directory" => c.directory = v.to_string(),
            "null_sender" => c.null_sender = v.to_string(),
            "argv" => {
                c.argv.push(v.to_string());
                c.argv.extend(it.by_ref().cloned());
            }
            _ => return Err(format!("unknown attribute name: {k}")),
        }
    }
    if c.argv.is_empty() || c.argv[0].is_empty() {
        return Err("missing argv= command-line attribute".into());
    }
    let user = user.ok_or("missing user= command-line attribute")?;
    let (name, group) = match user.split_once(':') {
        Some((u, g)) => (u.to_string(), Some(g.to_string())),
        None => (user.clone(), None),
    };
    let u = nix::unistd::User::from_name(&name)
        .ok()
        .flatten()
        .ok_or_else(|| format!("user= command-line attribute: unknown user name: {name}"))?;
    if u.uid.is_root() {
        return Err("user= command-line attribute specifies root privileges".into());
    }
    c.uid = u.uid.as_raw();
    c.gid = match group {
        Some(g) => nix::unistd::Group::from_name(&g)
            .ok()
            .flatten()
            .ok_or_else(|| format!("user= command-line attribute: unknown group name: {g}"))?
            .gid
            .as_raw(),
        None => u.gid.as_raw(),
    };
    if c.gid == 0 {
        return Err("user= command-line attribute specifies privileged group id 0".into());
    }
    Ok(c)
}

/// What the command is run for.
pub struct Ctx<'a> {
    pub qid: &'a str,
    pub service: &'a str,
    pub nexthop: &'a str,
    pub sender: &'a str,
    pub rcpts: &'a [String],
    /// Original recipients (before rewriting), one per recipient.
    pub origs: &'a [String],
    pub attrs: &'a [(String, String)],
    pub arrival: i64,
    pub content: &'a [u8],
    pub time_limit: u64,
    pub delimiter: &'a str,
    /// `export_environment` as NAME=value.
    pub env: Vec<String>,
}

const PER_RCPT: &[&str] = &["recipient", "user", "extension", "mailbox", "domain", "original_recipient"];

/// sysexits(3) as pipe(8) reports them: (code, dsn, text).
const SYSEXITS: &[(i32, &str, &str)] = &[
    (64, "5.3.0", "command line usage error"),
    (65, "5.6.0", "data format error"),
    (66, "5.3.0", "cannot open input"),
    (67, "5.1.1", "user unknown"),
    (68, "5.1.2", "host name unknown"),
    (69, "5.3.0", "service unavailable"),
    (70, "5.3.0", "internal software error"),
    (71, "4.3.0", "system resource problem"),
    (72, "5.3.0", "critical OS file missing"),
    (73, "5.2.0", "can't create user output file"),
    (74, "5.3.0", "input/output error"),
    (75, "4.3.0", "temporary failure"),
    (76, "5.5.0", "remote error in protocol"),
    (77, "5.7.0", "permission denied"),
    (78, "5.3.5", "local configuration error"),
];

fn quote_local(addr: &str, on: bool) -> String {
    if on {
        crate::mail::addr_list::external(addr)
    } else {
        addr.to_string()
    }
}

impl PipeConf {
    fn flag(&self, c: char) -> bool {
        self.flags.contains(c)
    }

    /// The value of a macro (`i`: the recipient for per-recipient ones).
    fn value(&self, name: &str, ctx: &Ctx, i: usize) -> Option<String> {
        let fold_user = |s: &str| if self.flag('u') { s.to_ascii_lowercase() } else { s.to_string() };
        let fold_host = |s: &str| if self.flag('h') { s.to_ascii_lowercase() } else { s.to_string() };
        let rcpt = ctx.rcpts.get(i).map(String::as_str).unwrap_or("");
        let (local, domain) = rcpt.rsplit_once('@').unwrap_or((rcpt, ""));
        let (user, ext) = match ctx.delimiter.chars().find_map(|d| local.find(d)) {
            Some(p) if p > 0 => (&local[..p], &local[p + 1..]),
            _ => (local, ""),
        };
        let attr = |n: &str| ctx.attrs.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let client = attr("client").unwrap_or_default();
        Some(match name {
            "sender" if ctx.sender.is_empty() => self.null_sender.clone(),
            "sender" => quote_local(ctx.sender, self.flag('q')),
            "recipient" => {
                let r = format!(
                    "{}{}",
                    fold_user(local),
                    if domain.is_empty() {
                        String::new()
                    } else {
                        format!("@{}", fold_host(domain))
                    }
                );
                quote_local(&r, self.flag('q'))
            }
            "original_recipient" => quote_local(ctx.origs.get(i).map(String::as_str).unwrap_or(rcpt), self.flag('q')),
            "user" => fold_user(user),
            "extension" => fold_user(ext),
            "mailbox" => fold_user(local),
            "domain" => fold_host(domain),
            "nexthop" => fold_host(ctx.nexthop),
            "queue_id" => ctx.qid.to_string(),
            "size" => ctx.content.len().to_string(),
            "client_hostname" => client.split('[').next().unwrap_or("").to_string(),
            "client_address" => client
                .split('[')
                .nth(1)
                .map(|s| s.trim_end_matches(']').to_string())
                .unwrap_or_default(),
            "client_helo" => attr("helo").unwrap_or_default(),
            "client_protocol" => attr("protocol").unwrap_or_default(),
            "sasl_method" => attr("sasl_method").unwrap_or_default(),
            "sasl_username" => attr("sasl_username").unwrap_or_default(),
            "sasl_sender" | "client_port" => String::new(),
            _ => return None,
        })
    }

    /// One argument with its macros expanded for recipient `i`.
    fn expand(&self, arg: &str, ctx: &Ctx, i: usize) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = arg;
        while let Some(p) = rest.find('$') {
            out.push_str(&rest[..p]);
            let after = &rest[p + 1..];
            let (name, next) = if let Some(b) = after.strip_prefix('{') {
                let e = b.find('}').ok_or_else(|| format!("unmatched {{ in {arg}"))?;
                (&b[..e], &b[e + 1..])
            } else if let Some(b) = after.strip_prefix('(') {
                let e = b.find(')').ok_or_else(|| format!("unmatched ( in {arg}"))?;
                (&b[..e], &b[e + 1..])
            } else {
                let e = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..e], &after[e..])
            };
            if name.is_empty() {
                out.push('$');
                rest = after;
                continue;
            }
            out.push_str(&self.value(name, ctx, i).ok_or_else(|| format!("unknown macro name: {name}"))?);
            rest = next;
        }
        out.push_str(rest);
        Ok(out)
    }

    fn argv(&self, ctx: &Ctx) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        for a in &self.argv {
            if PER_RCPT
                .iter()
                .any(|m| a.contains(&format!("${{{m}}}")) || a.contains(&format!("${m}")))
            {
                for i in 0..ctx.rcpts.len() {
                    out.push(self.expand(a, ctx, i)?);
                }
            } else {
                out.push(self.expand(a, ctx, 0)?);
            }
        }
        Ok(out)
    }

    /// The message as the command reads it.
    fn input(&self, ctx: &Ctx) -> Vec<u8> {
        let eol = self.eol.as_bytes();
        let mut out = Vec::with_capacity(ctx.content.len() + 256);
        let sender = if ctx.sender.is_empty() {
            self.null_sender.as_str()
        } else {
            ctx.sender
        };
        if self.flag('F') {
            out.extend_from_slice(format!("From {sender}  {}", asctime(ctx.arrival)).as_bytes());
            out.extend_from_slice(eol);
        }
        if self.flag('R') {
            out.extend_from_slice(format!("Return-Path: <{}>", ctx.sender).as_bytes());
            out.extend_from_slice(eol);
        }
        if self.flag('O') {
            let o = ctx.origs.first().or(ctx.rcpts.first()).map(String::as_str).unwrap_or("");
            out.extend_from_slice(format!("X-Original-To: {o}").as_bytes());
            out.extend_from_slice(eol);
        }
        if self.flag('D') {
            let r = ctx.rcpts.first().map(String::as_str).unwrap_or("");
            out.extend_from_slice(format!("Delivered-To: {r}").as_bytes());
            out.extend_from_slice(eol);
        }
        let data = ctx.content.strip_suffix(b"\r\n").unwrap_or(ctx.content);
        for line in data.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if self.flag('.') && line.starts_with(b".") {
                out.push(b'.');
            }
            if self.flag('>') && line.starts_with(b"From ") {
                out.push(b'>');
            }
            out.extend_from_slice(line);
            out.extend_from_slice(eol);
        }
        if self.flag('B') && !out.ends_with(&[eol, eol].concat()) {
            out.extend_from_slice(eol);
        }
        out
    }
}

/// asctime(3) of a Unix time (UTC): `Wed Dec  2 20:16:04 2026`.
fn asctime(t: i64) -> String {
    let (y, mo, d, hh, mi, ss, wd) = crate::util::codec::civil(t);
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    format!(
        "{} {} {d:>2} {hh:02}:{mi:02}:{ss:02} {y}",
        DAYS[wd as usize % 7],
        MONTHS[(mo as usize).clamp(1, 12) - 1]
    )
}

fn output_text(out: &[u8]) -> String {
    let s = String::from_utf8_lossy(out);
    let s: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    s.trim().to_string()
}

/// Runs the command once for all of `ctx.rcpts`; the one outcome.
pub async fn deliver(spawner: &Spawner, conf: &PipeConf, ctx: &Ctx<'_>) -> Outcome {
    let defer = |dsn: &str, why: String| Outcome::Deferred(Reply::local(450, dsn, &why), why);
    let bounce = |dsn: &str, why: String| Outcome::Bounced(Reply::local(550, dsn, &why), why);
    if (conf.flag('D') || conf.flag('O')) && ctx.rcpts.len() > 1 {
        return defer(
            "4.3.5",
            format!(
                "mail system configuration error: flags D and O need {}_destination_recipient_limit = 1",
                ctx.service
            ),
        );
    }
    if let Some(limit) = conf.size {
        if ctx.content.len() as u64 > limit {
            return bounce("5.2.3", "message file too big".into());
        }
    }
    let argv = match conf.argv(ctx) {
        Ok(a) => a,
        Err(e) => return defer("4.3.5", format!("mail system configuration error: {e}")),
    };
    let req = spawn::Request {
        uid: conf.uid,
        gid: conf.gid,
        timeout: ctx.time_limit,
        dir: if conf.directory.is_empty() {
            "/".into()
        } else {
            conf.directory.clone()
        },
        argv: argv.clone(),
        env: ctx.env.clone(),
        input: conf.input(ctx),
    };
    // The command as the status names it (local(8)'s shell command line).
    let shown = if conf.sent_text.is_some() {
        argv.last().cloned().unwrap_or_default()
    } else {
        argv[0].clone()
    };
    let o = spawner.run(req).await;
    let out = output_text(&o.output);
    let with_output = |t: &str| {
        if out.is_empty() {
            t.to_string()
        } else {
            format!("{t}. Command output: {out}")
        }
    };
    match o.status {
        Status::Exit(0) => {
            let text = conf
                .sent_text
                .clone()
                .unwrap_or_else(|| format!("delivered via {} service", ctx.service));
            Outcome::Sent(Reply::local(250, "2.0.0", &text))
        }
        Status::Exit(code) => match SYSEXITS.iter().find(|(c, _, _)| *c == code) {
            Some((_, dsn, text)) if dsn.starts_with('4') => defer(dsn, with_output(text)),
            Some((_, dsn, text)) => bounce(dsn, with_output(text)),
            None => bounce("5.3.0", with_output(&format!("Command died with status {code}: \"{}\"", shown))),
        },
        Status::Signal(sig) => defer("4.3.0", with_output(&format!("Command died with signal {sig}: \"{}\"", shown))),
        Status::Timeout => defer("4.3.0", format!("Command time limit exceeded: \"{}\"", shown)),
        Status::Error(e) => defer("4.3.0", format!("system resource problem: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx<'a>(rcpts: &'a [String], origs: &'a [String], content: &'a [u8]) -> Ctx<'a> {
        Ctx {
            qid: "4AB12",
            service: "mailman",
            nexthop: "Lists.Example.EDU",
            sender: "",
            rcpts,
            origs,
            attrs: &[],
            arrival: 1_764_706_564,
            content,
            time_limit: 10,
            delimiter: "+",
            env: vec![],
        }
    }

    #[test]
    fn attributes_macros_and_input() {
        let args: Vec<String> = "flags=FRDO.>hu user=nobody argv=/usr/bin/x ${nexthop} ${user} -e $extension ${sender} ${recipient}"
            .split(' ')
            .map(String::from)
            .collect();
        let c = parse(&args).unwrap();
        let rcpts = vec!["Dev+Tag@Lists.Example.EDU".to_string()];
        let origs = vec!["dev-alias@example.edu".to_string()];
        let content = b"Subject: x\r\n\r\n.dot\r\nFrom me\r\nend\r\n";
        let cx = ctx(&rcpts, &origs, content);
        assert_eq!(
            c.argv(&cx).unwrap(),
            [
                "/usr/bin/x",
                "lists.example.edu",
                "dev",
                "-e",
                "tag",
                "MAILER-DAEMON",
                "dev+tag@lists.example.edu"
            ]
        );
        assert_eq!(
            String::from_utf8(c.input(&cx)).unwrap(),
            "From MAILER-DAEMON  Tue Dec  2 20:16:04 2025\nReturn-Path: <>\nX-Original-To: dev-alias@example.edu\n\
             Delivered-To: Dev+Tag@Lists.Example.EDU\nSubject: x\n\n..dot\n>From me\nend\n"
        );
        for (bad, why) in [
            ("flags=F argv=/x", "missing user="),
            ("user=root argv=/x", "root privileges"),
            ("user=nobody", "missing argv="),
            ("user=nobody color=red argv=/x", "unknown attribute name: color"),
            ("user=no-such-user-here argv=/x", "unknown user name"),
        ] {
            let a: Vec<String> = bad.split(' ').map(String::from).collect();
            let e = parse(&a).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let c = parse(&["user=nobody".into(), "argv=/x".into(), "${recipient}".into(), "${bogus}".into()]).unwrap();
        assert!(c.argv(&cx).unwrap_err().contains("unknown macro name: bogus"));
        let two = vec!["a@x".to_string(), "b@x".to_string()];
        let c = parse(&["user=nobody".into(), "argv=/x".into(), "--to=${recipient}".into()]).unwrap();
        assert_eq!(c.argv(&ctx(&two, &two, b"")).unwrap(), ["/x", "--to=a@x", "--to=b@x"]);
    }
}
