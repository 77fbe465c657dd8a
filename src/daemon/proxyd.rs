//! proxyd and pop3proxyd: a Murder front end's IMAP and POP3 (Cyrus's
//! imapd and pop3d when `mupdate_server` is set and `proxyservers` is
//! not).  The client logs in on the front end (its passwords are checked
//! here, through saslauthd); the front end finds the back end of the
//! user's INBOX in the local MUPDATE replica, logs in there as
//! `proxy_authname` for the user (SASL PLAIN with the user as authzid),
//! answers the client with the back end's own reply and from then on
//! joins the two streams byte for byte, as Cyrus's pop3d does (its
//! `bitpipe`).  IMAP sessions are then routed per command
//! (`imap_proxy`): other users' and shared folders on other back ends,
//! LIST merged across back ends, cross-back-end COPY/MOVE, referrals.

use super::cyrus::ServerInfo;
use super::front::{backend_line, pipe, Front};
use super::imapd::io::{CommandLimits, Frame, Input, Output, ReadError, MAX_SMALL_LITERAL};
use crate::mail::Secret;
use crate::proto::imap::command::{self, Kind};
use crate::server::listen::Io;
use crate::server::Conn;
use crate::store::murder::State;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

const PREAUTH_IDLE: Duration = Duration::from_secs(60);

pub struct Proxyd {
    pub front: Arc<Front>,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub implicit_tls: bool,
    pub pop3: bool,
    /// Logged-in sessions, for `maxlogins_per_user` and `_per_host`.
    pub logins: super::cyrus::Logins,
    /// The bounds on a command before login (`maxliteral`, `maxword`,
    /// `maxquoted`, `literalminus`); after it the back end's apply.
    pub limits: CommandLimits,
}

type Rd = tokio::io::ReadHalf<Box<dyn Io>>;
type Wr = tokio::io::WriteHalf<Box<dyn Io>>;

/// A logged-in back-end connection and its reply to the login.
type Backend = (String, tokio::io::BufReader<super::peer_tls::PeerIo>);

/// Where a login leads: the back end's reply line for the client, and
/// the logged-in back-end connection.
struct Joined {
    reply: String,
    backend: tokio::io::BufReader<super::peer_tls::PeerIo>,
    /// The user (authzid) and their INBOX's back end.
    user: String,
    server: String,
    /// Who the back ends are asked to log in: the user, or with
    /// `imapmagicplus` the name given (`user+`, `user+detail`), which the
    /// back end takes as Cyrus's does.
    login_as: String,
    /// The session's count in `maxlogins_per_user`/`_per_host`, kept
    /// while it lasts.
    _slot: super::cyrus::LoginSlot,
}

impl crate::server::Service for Proxyd {
    async fn serve(self: Arc<Self>, conn: Conn) {
        let peer = conn.peer();
        let mut io = conn.into_io();
        let mut ssf = 0;
        if self.implicit_tls {
            let Some(acc) = self.tls.clone() else { return };
            match Box::pin(tokio_rustls::TlsAcceptor::from(acc).accept(io)).await {
                Ok(t) => {
                    let summary = crate::util::tls::server_summary(t.get_ref().1);
                    self.front.log.info(&format!("starttls: {summary}"));
                    ssf = crate::util::tls::server_ssf(t.get_ref().1);
                    io = Box::new(t)
                }
                Err(e) => {
                    self.front.log.info(&format!("TLS negotiation failed: {peer}: {e}"));
                    return;
                }
            }
        }
        let (r, w) = tokio::io::split(io);
        let mut s = Session {
            p: self.clone(),
            input: Input::new(r),
            w: Output::new(w),
            host: crate::server::peer::ClientHost::new(&peer),
            peer,
            tls: self.implicit_tls,
            ssf,
            sid: self.front.session_id(),
        };
        let joined = if self.pop3 {
            Box::pin(s.pop3()).await
        } else {
            Box::pin(s.imap()).await
        };
        let Ok(Some(j)) = joined else {
            let _ = s.w.flush().await;
            return;
        };
        // Anything the client pipelined after its login goes first.
        let (r, pending) = s.input.into_parts();
        let client = r.unsplit(s.w.into_inner());
        let Joined {
            mut reply,
            mut backend,
            user,
            login_as,
            server,
            _slot,
        } = j;
        if !self.pop3 {
            // What a later session reusing a connection to this back end
            // is told (its text; the tag is the client's).
            self.front.pool.note_login(&server, &reply);
        }
        if !self.pop3 && self.front.conf.get_switch("proxyd_disable_mailbox_referrals") {
            // The back end's capabilities, less the referrals this front
            // end will not give.
            reply = reply.replacen(" MAILBOX-REFERRALS", "", 1);
        }
        let mut client = client;
        reply.push_str("\r\n");
        if client.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
        // Held no longer than needed: an IDLE session lasts.
        drop(reply);
        if self.pop3 && !pending.is_empty() && backend.get_mut().write_all(&pending).await.is_err() {
            return;
        }
        // Bytes the back end sent after its reply (none, normally).
        let early = backend.buffer().to_vec();
        if !early.is_empty() && client.write_all(&early).await.is_err() {
            return;
        }
        if self.pop3 {
            drop((user, login_as, server));
            let lost = "-ERR [SYS/TEMP] Lost connection to the mailbox server\r\n";
            Box::pin(pipe(client, backend.into_inner(), lost, b"+OK")).await;
        } else {
            // IMAP: each command to the back end of the mailbox it names.
            let router = super::imap_proxy::Router::new(self.front.clone(), &user, &login_as, &server, backend.into_inner());
            drop((user, login_as, server));
            Box::pin(router.run(client, pending)).await;
        }
    }
}

struct Session {
    p: Arc<Proxyd>,
    input: Input<Rd>,
    w: Output<Wr>,
    /// The client's address.
    peer: String,
    /// Cyrus's client host text, `name [addr]`, for log lines.
    host: crate::server::peer::ClientHost,
    tls: bool,
    /// Its strength for `sasl_minimum_layer` (0 without TLS).
    ssf: u32,
    sid: String,
}

impl Session {
    async fn out(&mut self, s: &str) -> Result<(), ReadError> {
        self.w.write_all(s.as_bytes()).await?;
        Ok(())
    }

    /// Counts `authzid`'s login in `maxlogins_per_user`/`_per_host`; past
    /// a limit, logs and answers `refusal` ("tag NO", "-ERR") with
    /// Cyrus's words and gives None.
    /// The user a login name stands for: without `+detail` where
    /// `imapmagicplus` (IMAP) or `popsubfolders` (POP3) allow it.
    fn base_user(&self, authzid: &str) -> String {
        if plus_names(&self.p.front.conf, self.p.pop3) {
            super::cyrus::split_subfolder(authzid, self.p.front.virtdomains()).0
        } else {
            authzid.to_string()
        }
    }

    async fn admit(&mut self, authzid: &str, refusal: &str) -> Result<Option<super::cyrus::LoginSlot>, ReadError> {
        match self.p.logins.admit(&self.p.front.conf, authzid, &self.peer) {
            Ok(s) => Ok(Some(s)),
            Err(why) => {
                self.p.front.log.error(&format!("Too many open connections ({why})"));
                self.out(&format!("{refusal} Too many open connections ({why})\r\n")).await?;
                Ok(None)
            }
        }
    }

    /// Ends the session as Cyrus's `fatal` does: an untagged BYE with
    /// the reason, which is logged.
    async fn fatal(&mut self, why: &str) -> Result<(), ReadError> {
        self.p.front.log.error(&format!("Fatal error: {why}"));
        self.out(&format!("* BYE {why}\r\n")).await?;
        self.w.shutdown().await?;
        self.input.drain(1 << 20, Duration::from_secs(2)).await;
        Ok(())
    }

    fn plaintext_ok(&self) -> bool {
        !self.tls_required() && (self.tls || self.p.front.conf.get_switch("allowplaintext"))
    }

    /// `tls_required`: no authentication of any kind before TLS.
    fn tls_required(&self) -> bool {
        !self.tls && self.p.front.conf.get_switch("tls_required")
    }

    /// `sasl_minimum_layer` is met by this session's TLS.
    fn sasl_layer_ok(&self) -> bool {
        super::cyrus::sasl_layer_ok(&self.p.front.conf, self.ssf)
    }

    fn imap_caps(&self) -> String {
        let mut c = String::from("IMAP4rev1 LITERAL+ ID ENABLE");
        if self.p.tls.is_some() && !self.tls {
            c.push_str(" STARTTLS");
        }
        // No mechanism (nor SASL-IR) below `sasl_minimum_layer`.
        let layer = self.sasl_layer_ok();
        if !self.plaintext_ok() {
            c.push_str(" LOGINDISABLED");
        } else if layer {
            c.push_str(" AUTH=PLAIN");
        }
        if !self.tls_required() && layer {
            c.push_str(" SASL-IR");
        }
        let m = self.p.front.conf.get("mupdate_server").unwrap_or("");
        c.push_str(&format!(" MUPDATE=mupdate://{m}/"));
        super::cyrus::configured_capabilities(&self.p.front.conf, c)
    }

    /// TLS on the client side, after the OK (pipelined plaintext dropped).
    async fn starttls(&mut self) -> Result<(), ReadError> {
        let Some(acc) = self.p.tls.clone() else {
            return Err(ReadError::Eof);
        };
        self.w.flush().await?;
        match super::imapd::io::start_tls(&mut self.input, &mut self.w, acc).await {
            Ok((summary, ssf)) => {
                self.p.front.log.info(&format!("starttls: {summary}"));
                self.tls = true;
                self.ssf = ssf;
                Ok(())
            }
            Err(e) => {
                self.p
                    .front
                    .log
                    .info(&format!("STARTTLS negotiation failed: {}: {e}", self.host.get().await));
                Err(ReadError::Eof)
            }
        }
    }

    /// Checks the password here.
    async fn check(&self, authzid: &str, authcid: &str, pass: Vec<u8>, mech: &str) -> Result<(), &'static str> {
        let front = &self.p.front;
        if authzid != authcid && !front.conf.get("admins").unwrap_or("").split_whitespace().any(|a| a == authcid) {
            return Err("authorization failure");
        }
        let service = if self.p.pop3 { "pop" } else { "imap" };
        match super::cyrus::check_password(&front.conf, service, authcid, &Secret::new(pass)).await {
            Ok(true) => Ok(()),
            Ok(false) => {
                front.log.info(&super::cyrus::badlogin_line(self.host.get().await, mech, authcid));
                tokio::time::sleep(front.conf.failed_login_pause()).await;
                Err("authentication failure")
            }
            Err(e) => {
                front.log.warning(&format!("login: {}: {e}", self.host.get().await));
                Err("temporary failure")
            }
        }
    }

    /// A login name made canonical (`username_tolower`, the default
    /// domain); with `+detail` allowed (`plus_names`), the user part only:
    /// the detail keeps its case (a POP3 folder's name).
    fn canon(&self, id: &str) -> String {
        let conf = &self.p.front.conf;
        if !plus_names(conf, self.p.pop3) {
            return super::cyrus::canon_userid(conf, id);
        }
        match super::cyrus::split_subfolder(id, self.p.front.virtdomains()) {
            (u, Some(f)) => super::cyrus::join_subfolder(&super::cyrus::canon_userid(conf, &u), &f),
            (u, None) => super::cyrus::canon_userid(conf, &u),
        }
    }

    /// The back end of `user`'s INBOX.
    async fn place(&self, user: &str) -> Result<String, &'static str> {
        let front = &self.p.front;
        let Some(inbox) = front.inbox_of(user) else {
            return Err("invalid user");
        };
        match front.locate(&inbox).await {
            Ok(Some((State::Active, server))) => Ok(server),
            Ok(Some((State::Reserved, _))) => Err("mailbox is being moved"),
            // No mailbox yet: the back end Cyrus would pick for it
            // (`defaultserver`, else the freest of `serverlist`) creates
            // it at login (its autocreate); an admin without a mailbox
            // starts on any back end (commands naming mailboxes go where
            // those are).
            Ok(None) => match front.new_mailbox_server().await {
                Some(s) => Ok(s),
                None if front.conf.get("admins").unwrap_or("").split_whitespace().any(|a| a == user) => {
                    front.list_servers(user).await.into_iter().next().ok_or("no mailbox")
                }
                None if front.conf.get("serverlist").is_some() => Err("temporary failure"),
                None => Err("no mailbox"),
            },
            Err(e) => {
                front.log.error(&format!("IOERROR: looking up {inbox}: {e}"));
                Err("temporary failure")
            }
        }
    }

    /// The password check and, meanwhile, the back end's login for the
    /// user (one wait instead of two); the back-end session is used only
    /// when the password was right, and dropped otherwise.
    async fn authorize(
        &self,
        authzid: &str,
        authcid: &str,
        pass: Vec<u8>,
        mech: &str,
    ) -> Result<(String, Result<Backend, String>), &'static str> {
        // `popsubfolders` (POP3), `imapmagicplus` (IMAP): `user+folder`
        // lives where the user does and logs in as the user; the back end
        // gets the whole name and serves the folder (or, over IMAP, the
        // view the plus asks for).
        let conf = &self.p.front.conf;
        let (user, base_authcid) = if plus_names(conf, self.p.pop3) {
            let vd = self.p.front.virtdomains();
            (
                super::cyrus::split_subfolder(authzid, vd).0,
                super::cyrus::split_subfolder(authcid, vd).0,
            )
        } else {
            (authzid.to_string(), authcid.to_string())
        };
        let join = async {
            let server = self.place(&user).await?;
            let b = if self.p.pop3 {
                self.pop3_backend(&server, authzid).await
            } else {
                self.imap_backend(&server, authzid).await
            };
            Ok::<_, &'static str>((server, b))
        };
        let check_zid = if authzid == authcid { base_authcid.as_str() } else { user.as_str() };
        let (checked, joined) = tokio::join!(self.check(check_zid, &base_authcid, pass, mech), join);
        checked?;
        joined
    }

    // ---- IMAP ----

    async fn imap(&mut self) -> Result<Option<Joined>, ReadError> {
        let greet = format!(
            "* OK [CAPABILITY {}] {}server ready\r\n",
            self.imap_caps(),
            ServerInfo::of(&self.p.front.conf).greeting(&self.p.front.servername, "IMAP"),
        );
        self.out(&greet).await?;
        loop {
            self.w.flush().await?;
            let limits = self.p.limits;
            let raw = match self.input.command(&mut self.w, &limits, PREAUTH_IDLE).await? {
                Frame::Command(c) => c,
                Frame::LineTooLong => {
                    self.out("* BAD Line too long\r\n").await?;
                    continue;
                }
                Frame::LiteralTooBig(t) => {
                    if let Some(r) = t.reply() {
                        self.out(&format!("{} {r}\r\n", t.tag)).await?;
                    }
                    match t.bye() {
                        Some(why) => {
                            self.fatal(why).await?;
                            return Ok(None);
                        }
                        None => continue,
                    }
                }
                Frame::Fatal(why) => {
                    self.fatal(why).await?;
                    return Ok(None);
                }
            };
            let cmd = match command::parse(&raw) {
                Ok(c) => c,
                Err(e) => {
                    let tag = e.tag.unwrap_or_else(|| "*".into());
                    self.out(&format!("{tag} BAD {}\r\n", e.text)).await?;
                    continue;
                }
            };
            let tag = cmd.tag.clone();
            match cmd.kind {
                Kind::Capability => {
                    let c = self.imap_caps();
                    self.out(&format!("* CAPABILITY {c}\r\n{tag} OK Completed\r\n")).await?;
                }
                Kind::Noop => self.out(&format!("{tag} OK Completed\r\n")).await?,
                Kind::Logout => {
                    self.out(&format!("* BYE LOGOUT received\r\n{tag} OK Completed\r\n")).await?;
                    return Ok(None);
                }
                Kind::StartTls if self.p.tls.is_some() && !self.tls => {
                    self.out(&format!("{tag} OK Begin TLS negotiation now\r\n")).await?;
                    self.starttls().await?;
                }
                Kind::Login(user, pass) => {
                    if !self.plaintext_ok() {
                        self.out(&format!("{tag} NO Login only available under a layer\r\n")).await?;
                        continue;
                    }
                    if let Some(j) = self.imap_login(&tag, &user, &user, pass, "plaintext").await? {
                        return Ok(Some(j));
                    }
                }
                Kind::Authenticate(..) if self.tls_required() => {
                    self.out(&format!("{tag} NO Authenticate only available under a layer\r\n")).await?;
                }
                Kind::Authenticate(mech, _) if mech.eq_ignore_ascii_case("PLAIN") && !self.sasl_layer_ok() => {
                    self.out(&format!("{tag} NO mechanism too weak for this user\r\n")).await?
                }
                Kind::Authenticate(mech, ir) if mech.eq_ignore_ascii_case("PLAIN") => {
                    if !self.plaintext_ok() {
                        self.out(&format!("{tag} NO Authentication failed: encryption needed\r\n")).await?;
                        continue;
                    }
                    let resp = match ir {
                        Some(r) => r.into_bytes(),
                        None => {
                            self.out("+ \r\n").await?;
                            self.w.flush().await?;
                            self.input.line(4096, PREAUTH_IDLE).await?.unwrap_or_default()
                        }
                    };
                    if resp == b"*" {
                        self.out(&format!("{tag} BAD Client canceled authentication\r\n")).await?;
                        continue;
                    }
                    let Some((authzid, authcid, pass)) = plain_response(&resp) else {
                        self.out(&format!("{tag} NO Authentication failed: bad protocol / cancel\r\n"))
                            .await?;
                        continue;
                    };
                    if let Some(j) = self.imap_login(&tag, &authzid, &authcid, pass, "PLAIN").await? {
                        return Ok(Some(j));
                    }
                }
                Kind::Authenticate(..) => self.out(&format!("{tag} NO no mechanism available\r\n")).await?,
                _ => self.out(&format!("{tag} BAD Please login first\r\n")).await?,
            }
        }
    }

    async fn imap_login(
        &mut self,
        tag: &str,
        authzid: &str,
        authcid: &str,
        pass: Vec<u8>,
        mech: &str,
    ) -> Result<Option<Joined>, ReadError> {
        let (authzid, authcid) = (&self.canon(authzid), &self.canon(authcid));
        let (server, backend) = match self.authorize(authzid, authcid, pass, mech).await {
            Ok(v) => v,
            Err("temporary failure") | Err("mailbox is being moved") => {
                self.out(&format!("{tag} NO [UNAVAILABLE] Login failed: temporary failure\r\n"))
                    .await?;
                return Ok(None);
            }
            Err(why) => {
                self.out(&format!("{tag} NO Login failed: {why}\r\n")).await?;
                return Ok(None);
            }
        };
        match backend {
            Ok((ok, backend)) => {
                let user = self.base_user(authzid);
                // `maxlogins_per_user` counts the user, whatever `+detail`
                // they gave, as Cyrus's (and our back ends) do.
                let Some(slot) = self.admit(&user, &format!("{tag} NO")).await? else {
                    return Ok(None);
                };
                self.p.front.log.info(&format!(
                    "login: {} {authzid} {mech} User logged in SESSIONID=<{}> via {server}",
                    self.host.get().await,
                    self.sid
                ));
                if mech == "plaintext" && !self.tls {
                    tokio::time::sleep(self.p.front.conf.plaintext_login_pause()).await;
                }
                // The back end's OK, under the client's tag.
                let text = ok.split_once(' ').map_or("OK", |(_, t)| t);
                Ok(Some(Joined {
                    reply: format!("{tag} {text}"),
                    backend,
                    user,
                    login_as: authzid.to_string(),
                    server,
                    _slot: slot,
                }))
            }
            Err(e) => {
                self.p
                    .front
                    .log
                    .error(&format!("couldn't authenticate to backend server {server}: {e}"));
                self.out(&format!("{tag} NO [UNAVAILABLE] Server(s) unavailable to complete operation\r\n"))
                    .await?;
                Ok(None)
            }
        }
    }

    async fn imap_backend(&self, server: &str, user: &str) -> Result<Backend, String> {
        self.p.front.imap_session(server, user).await
    }

    // ---- POP3 ----

    async fn pop3(&mut self) -> Result<Option<Joined>, ReadError> {
        let host = self.p.front.servername.clone();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.out(&format!(
            "+OK {}server ready <{}.{now}@{host}>\r\n",
            ServerInfo::of(&self.p.front.conf).greeting(&host, "POP3"),
            std::process::id()
        ))
        .await?;
        let mut user: Option<String> = None;
        loop {
            self.w.flush().await?;
            let Some(line) = self.input.line(1024, PREAUTH_IDLE).await? else {
                self.out("-ERR Line too long\r\n").await?;
                continue;
            };
            let line = String::from_utf8_lossy(&line).into_owned();
            let (cmd, arg) = line.split_once(' ').map_or((line.as_str(), None), |(c, a)| (c, Some(a)));
            match cmd.to_ascii_uppercase().as_str() {
                "CAPA" => {
                    let mut c = String::from("+OK List of capabilities follows\r\n");
                    if self.p.tls.is_some() && !self.tls {
                        c.push_str("STLS\r\n");
                    }
                    if self.plaintext_ok() {
                        if self.sasl_layer_ok() {
                            c.push_str("SASL PLAIN\r\n");
                        }
                        c.push_str("USER\r\n");
                    }
                    c.push_str("TOP\r\nUIDL\r\nPIPELINING\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n");
                    if let Some(i) = ServerInfo::of(&self.p.front.conf).implementation() {
                        c.push_str(&i);
                        c.push_str("\r\n");
                    }
                    c.push_str(".\r\n");
                    self.out(&c).await?;
                }
                "STLS" if self.p.tls.is_some() && !self.tls => {
                    self.out("+OK Begin TLS negotiation\r\n").await?;
                    self.starttls().await?;
                }
                "QUIT" => {
                    self.out("+OK\r\n").await?;
                    return Ok(None);
                }
                "NOOP" => self.out("+OK\r\n").await?,
                "USER" if self.plaintext_ok() => {
                    user = arg.map(str::to_string);
                    self.out("+OK Name is a valid mailbox\r\n").await?;
                }
                "USER" => self.out("-ERR [AUTH] USER command only available under a layer\r\n").await?,
                "AUTH" if self.tls_required() => self.out("-ERR [AUTH] AUTH command only available under a layer\r\n").await?,
                "AUTH" if !self.sasl_layer_ok() && arg.is_some_and(|a| a.to_ascii_uppercase().starts_with("PLAIN")) => {
                    self.out("-ERR [AUTH] authenticating: mechanism too weak for this user\r\n").await?
                }
                "PASS" => {
                    let Some(u) = user.take() else {
                        self.out("-ERR [AUTH] Must give USER command\r\n").await?;
                        continue;
                    };
                    let pass = arg.unwrap_or("").as_bytes().to_vec();
                    if let Some(j) = self.pop3_login(&u, &u, pass, "USER").await? {
                        return Ok(Some(j));
                    }
                }
                "AUTH" if self.plaintext_ok() && arg.is_some_and(|a| a.to_ascii_uppercase().starts_with("PLAIN")) => {
                    let ir = arg.and_then(|a| a.split_once(' ')).map(|(_, i)| i.to_string());
                    let resp = match ir {
                        Some(i) => i,
                        None => {
                            self.out("+ \r\n").await?;
                            self.w.flush().await?;
                            String::from_utf8_lossy(&self.input.line(4096, PREAUTH_IDLE).await?.unwrap_or_default()).into_owned()
                        }
                    };
                    let Some((authzid, authcid, pass)) = plain_response(resp.as_bytes()) else {
                        self.out("-ERR [AUTH] authenticating: bad protocol / cancel\r\n").await?;
                        continue;
                    };
                    if let Some(j) = self.pop3_login(&authzid, &authcid, pass, "PLAIN").await? {
                        return Ok(Some(j));
                    }
                }
                _ => self.out("-ERR Unrecognized command\r\n").await?,
            }
        }
    }

    async fn pop3_login(&mut self, authzid: &str, authcid: &str, pass: Vec<u8>, mech: &str) -> Result<Option<Joined>, ReadError> {
        let (authzid, authcid) = (&self.canon(authzid), &self.canon(authcid));
        let (server, backend) = match self.authorize(authzid, authcid, pass, mech).await {
            Ok(v) => v,
            Err("authentication failure") | Err("authorization failure") => {
                self.out("-ERR [AUTH] Invalid login\r\n").await?;
                return Ok(None);
            }
            Err(_) => {
                self.out("-ERR [SYS/TEMP] Unable to open maildrop\r\n").await?;
                return Ok(None);
            }
        };
        match backend {
            Ok((ok, backend)) => {
                let Some(slot) = self.admit(&self.base_user(authzid), "-ERR").await? else {
                    return Ok(None);
                };
                self.p.front.log.info(&format!(
                    "login: {} {authzid} {mech} User logged in via {server}",
                    self.host.get().await
                ));
                if mech == "USER" && !self.tls {
                    tokio::time::sleep(self.p.front.conf.plaintext_login_pause()).await;
                }
                Ok(Some(Joined {
                    reply: ok,
                    backend,
                    user: authzid.to_string(),
                    login_as: authzid.to_string(),
                    server,
                    _slot: slot,
                }))
            }
            Err(e) => {
                self.p
                    .front
                    .log
                    .error(&format!("couldn't authenticate to backend server {server}: {e}"));
                self.out("-ERR [SYS/TEMP] Authentication to backend server failed\r\n").await?;
                Ok(None)
            }
        }
    }

    async fn pop3_backend(&self, server: &str, user: &str) -> Result<Backend, String> {
        use super::front::write_line;
        let tcp = self.p.front.connect(server, "pop3", 110).await?;
        let mut b = tokio::io::BufReader::new(tcp);
        let greet = backend_line(&mut b).await?;
        if !greet.starts_with("+OK") {
            return Err(format!("greeting {greet}"));
        }
        // CAPA, as Cyrus asks it: the SASL mechanisms and STLS.
        async fn capa(b: &mut tokio::io::BufReader<super::peer_tls::PeerIo>) -> Result<(Vec<String>, bool), String> {
            write_line(b, "CAPA").await?;
            let (mut mechs, mut stls) = (Vec::new(), false);
            loop {
                let l = backend_line(b).await?;
                if l == "." || l.starts_with("-ERR") {
                    return Ok((mechs, stls));
                }
                if let Some(m) = l.strip_prefix("SASL ") {
                    mechs = m.split_whitespace().map(str::to_string).collect();
                }
                stls |= l.eq_ignore_ascii_case("STLS");
            }
        }
        let (mut mechs, stls) = capa(&mut b).await?;
        // No password for this back end: GSSAPI when its CAPA offers it.
        let kerberos = cfg!(feature = "krb5") && self.p.front.credentials(server).1.is_empty() && mechs.iter().any(|m| m == "GSSAPI");
        if super::peer_tls::needs_starttls(server, &mechs, if kerberos { "GSSAPI" } else { "PLAIN" }, stls) {
            write_line(&mut b, "STLS").await?;
            let l = backend_line(&mut b).await?;
            if !l.starts_with("+OK") {
                return Err(format!("STLS: {l}"));
            }
            b = tokio::io::BufReader::new(super::peer_tls::handshake(b.into_inner(), server, &self.p.front.conf).await?);
            mechs = capa(&mut b).await?.0;
        }
        #[cfg(feature = "krb5")]
        if kerberos && mechs.iter().any(|m| m == "GSSAPI") {
            let principal = crate::auth::gssapi::named_principal(&self.p.front.credentials(server).0);
            let (host, _) = super::mupdate::client::split_server(server, 110);
            let l = super::front::auth_gssapi_lines(&mut b, "pop", &host, &principal, user, ("+ ", "+OK")).await?;
            return Ok((l, b));
        }
        let _ = &mechs;
        let ir = self.p.front.plain_for(server, user);
        write_line(&mut b, &format!("AUTH PLAIN {ir}")).await?;
        let l = backend_line(&mut b).await?;
        if l.starts_with("+OK") {
            Ok((l, b))
        } else {
            Err(l)
        }
    }
}

/// A SASL PLAIN response (base64, `=` for empty): authzid (the authcid
/// when empty), authcid, password.
/// Whether login names may carry a `+detail` for the back end:
/// `popsubfolders` for POP3, `imapmagicplus` for IMAP.
fn plus_names(conf: &crate::config::cyrus::ImapdConf, pop3: bool) -> bool {
    conf.get_switch(if pop3 { "popsubfolders" } else { "imapmagicplus" })
}

fn plain_response(resp: &[u8]) -> Option<(String, String, Vec<u8>)> {
    let raw = if resp == b"=" {
        Vec::new()
    } else {
        crate::util::base64_decode(&String::from_utf8_lossy(resp))?
    };
    let parts: Vec<&[u8]> = raw.split(|&c| c == 0).collect();
    let [zid, cid, pass] = parts[..] else {
        return None;
    };
    if cid.is_empty() {
        return None;
    }
    let authcid = String::from_utf8_lossy(cid).into_owned();
    let authzid = if zid.is_empty() {
        authcid.clone()
    } else {
        String::from_utf8_lossy(zid).into_owned()
    };
    Some((authzid, authcid, pass.to_vec()))
}

/// imapd's or pop3d's `main` on a front end.
pub fn main(prog: &str, args: &[String], pop3: bool) -> i32 {
    use crate::util::exit;
    let a = match super::cyrus::parse_args(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{prog}: {e}");
            return exit::USAGE;
        }
    };
    let ident = match (pop3, a.tls) {
        (true, true) => "pop3s",
        (true, false) => "pop3",
        (false, true) => "imaps",
        (false, false) => "imap",
    };
    let front = match Front::load(&a.config, ident) {
        Ok(f) => Arc::new(f),
        Err(e) => {
            eprintln!("{prog}: fatal: {e}");
            return exit::CONFIG;
        }
    };
    crate::log::install_panic_hook(front.log.clone());
    super::cyrus::tune_malloc();
    let tls = match super::cyrus::tls_config(&front.conf) {
        Ok(t) => t,
        Err(e) => {
            front.log.fatal(&e);
            eprintln!("{prog}: fatal: {e}");
            return exit::CONFIG;
        }
    };
    let svc = Arc::new(Proxyd {
        front: front.clone(),
        tls,
        implicit_tls: a.tls,
        pop3,
        logins: Default::default(),
        limits: CommandLimits::from_conf(&front.conf, MAX_SMALL_LITERAL).without_args(),
    });
    let default = if pop3 { "110" } else { "143" };
    let specs = if a.listen.is_empty() {
        vec![default.to_string()]
    } else {
        a.listen.clone()
    };
    let limits = crate::server::Limits {
        max_conns: super::cyrus::max_conns(),
        keepalive: super::cyrus::keepalive(&front.conf),
        ..Default::default()
    };
    super::cyrus::serve_until_term(prog, &front.log, &specs, svc, limits, || {}, true)
}
