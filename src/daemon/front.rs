//! What a Murder front end's proxies share: imapd.conf, the local
//! MUPDATE replica (`{configdirectory}/mupdate.db`) with its kick socket,
//! the back-end credentials (`proxy_authname`, `<host>_password` or
//! `proxy_password`), and the byte pipe that joins a client to its back
//! end once both sides have logged in (Cyrus's `bitpipe`).

use super::peer_tls::{needs_starttls, PeerIo};
use crate::config::cyrus::ImapdConf;
use crate::log::Logger;
use crate::store::murder::{server_of, Lookup, State};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Connecting to a back end, and each of its replies while logging in.
pub const BACKEND_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Front {
    pub conf: ImapdConf,
    pub log: Arc<Logger>,
    pub servername: String,
    lookup: Lookup,
    kick: PathBuf,
    sessions: std::sync::atomic::AtomicU64,
    /// `auth_mech: pts`: users' `group:` identifiers, so that LIST
    /// reaches the back ends of folders shared with their groups.
    pts: Option<crate::auth::pts::Pts>,
    /// IMAP back-end connections kept after their session's LOGOUT.
    pub pool: Arc<super::backend_pool::Pool>,
}

/// Whether imapd.conf makes this host a dedicated front end (Cyrus:
/// `mupdate_server` set, `proxyservers` unset, `mupdate_config` standard).
pub fn is_frontend(conf: &ImapdConf) -> bool {
    let set = |n: &str| conf.get(n).is_some_and(|v| !v.is_empty() && v != "(null)");
    set("mupdate_server") && !set("proxyservers") && conf.get("mupdate_config").unwrap_or("standard") == "standard"
}

/// Whether the imapd.conf named by a store daemon's arguments makes
/// this host a front end (imapd, pop3d and lmtpd then proxy, as in Cyrus:
/// the role is the configuration's, not the program name's).
pub fn frontend_args(args: &[String], ident: &str) -> bool {
    super::cyrus::parse_args(args)
        .ok()
        .and_then(|a| ImapdConf::load(&a.config, Some(ident)).ok())
        .is_some_and(|c| is_frontend(&c))
}

impl Front {
    /// Loads imapd.conf as service `ident` (`CYRUS_SERVICE` when master
    /// starts us).
    pub fn load(config: &str, ident: &str) -> Result<Front, String> {
        let ident = std::env::var("CYRUS_SERVICE").unwrap_or_else(|_| ident.to_string());
        let conf = ImapdConf::load(config, Some(&ident)).map_err(|e| e.to_string())?;
        conf.apply_umask();
        let log = Arc::new(Logger::for_cyrus(&conf, &ident)?);
        let configdir = PathBuf::from(conf.path_option("configdirectory").unwrap_or_default());
        let pts = crate::auth::pts::from_conf(&conf)?;
        Ok(Front {
            pts,
            servername: super::cyrus::servername(&conf),
            lookup: Lookup::new(&configdir.join(crate::store::murder::FILE)),
            kick: configdir.join("socket/mupdate.target"),
            sessions: Default::default(),
            pool: Default::default(),
            log,
            conf,
        })
    }

    pub fn session_id(&self) -> String {
        let n = self.sessions.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        format!("{}-{}-{n}", self.servername, std::process::id())
    }

    /// Where a mailbox is: its state and server, from the local replica;
    /// on a miss or a reservation the replica is kicked and asked again.
    pub async fn locate(&self, name: &str) -> Result<Option<(State, String)>, String> {
        Ok(self.entry(name).await?.map(|e| (e.state, server_of(&e.location).to_string())))
    }

    /// `locate`'s whole entry (location and ACL).
    pub async fn entry(&self, name: &str) -> Result<Option<crate::store::murder::Entry>, String> {
        for attempt in 0..2 {
            // A point read of the replica's WAL database (readers never
            // wait on its writer): tens of microseconds, called inline.
            // block_in_place would hand the worker's runtime to another
            // thread for every recipient and every SELECT, which cost a
            // proxied LMTP message more than the read itself.
            let found = self.lookup.get(name).map_err(|e| e.to_string())?;
            match found {
                Some(e) if e.state == State::Active || attempt == 1 => return Ok(Some(e)),
                None if attempt == 1 => return Ok(None),
                _ => kick(&self.kick).await,
            }
        }
        Ok(None)
    }

    /// The back ends holding mailboxes `user` may see (by ACL: the user,
    /// anyone, or one of the user's groups under `auth_mech: pts`; every
    /// back end for an admin), from the replica.  When the directory
    /// cannot be asked, the groups' back ends are left out (logged); the
    /// back ends themselves decide what is shown.
    pub async fn list_servers(&self, user: &str) -> Vec<String> {
        let admin = self.conf.get("admins").unwrap_or("").split_whitespace().any(|a| a == user);
        let mut groups = Vec::new();
        if let (Some(pts), false) = (&self.pts, admin) {
            match pts.groups(user).await {
                Ok((g, note)) => {
                    if let Some(n) = note {
                        self.log
                            .warning(&format!("ptload(): groups of {user}: {n}; using the expired cached list"));
                    }
                    groups = g;
                }
                Err(e) => self
                    .log
                    .error(&format!("ptload(): groups of {user}: {e}; LIST without their folders")),
            }
        }
        let mut ids: Vec<&str> = if admin { Vec::new() } else { vec![user, "anyone", "anonymous"] };
        ids.extend(groups.iter().map(String::as_str));
        match crate::util::block_inline(|| self.lookup.servers_for(&ids)) {
            Ok(v) => v,
            Err(e) => {
                self.log.error(&format!("IOERROR: listing servers for {user}: {e}"));
                Vec::new()
            }
        }
    }

    /// `virtdomains` is on (`userid` or `on`).
    pub fn virtdomains(&self) -> bool {
        !matches!(self.conf.get("virtdomains"), Some("off") | Some("no") | None)
    }

    /// A user's INBOX name in this configuration.
    pub fn inbox_of(&self, user: &str) -> Option<String> {
        let c = &self.conf;
        crate::store::names::user_inbox(
            user,
            c.get_switch("unixhierarchysep"),
            self.virtdomains(),
            c.get("defaultdomain").unwrap_or(""),
        )
        .ok()
    }

    /// The back end for a new mailbox that has no parent (a new user's
    /// INBOX, a new top-level shared folder), as Cyrus's front end picks
    /// it: `defaultserver` when set, else one of `serverlist` by
    /// `serverlist_select_mode` (default freespace-most) and
    /// `serverlist_select_soft_usage_limit`, from the free space each back
    /// end reports (its `freespace/total` or `freespace/percent/most`
    /// server annotation, asked as the proxy identity).  None without
    /// either option, or when no back end answers.
    pub async fn new_mailbox_server(&self) -> Option<String> {
        use crate::store::placement::{choose, roll, Mode, Space};
        if let Some(s) = self.conf.get("defaultserver").filter(|s| !s.is_empty()) {
            return Some(s.to_string());
        }
        let servers: Vec<String> = self.conf.get("serverlist")?.split_whitespace().map(str::to_string).collect();
        let mode = Mode::parse(self.conf.get("serverlist_select_mode").unwrap_or("freespace-most"));
        let spaces: Vec<Option<Space>> = if mode == Mode::Random {
            servers.iter().map(|_| Some(Space { fs: 0, avail: 1, total: 1 })).collect()
        } else {
            let entry = if mode == Mode::FreespaceMost {
                "freespace/total"
            } else {
                "freespace/percent/most"
            };
            let asks = servers.iter().enumerate().map(|(i, server)| async move {
                let space = tokio::time::timeout(super::cyrus::client_timeout(&self.conf), server_space(&self.conf, server, entry))
                    .await
                    .ok()
                    .flatten();
                if space.is_none() {
                    self.log.warning(&format!("serverlist: {server}: no free space reported; left out"));
                }
                // Each back end is a place of its own.
                space.map(|(avail, total)| Space {
                    fs: i as u64,
                    avail,
                    total,
                })
            });
            join_all(asks).await
        };
        let soft = self.conf.get_int("serverlist_select_soft_usage_limit");
        choose(mode, &spaces, soft, roll()).map(|i| servers[i].clone())
    }

    /// `proxy_authname` and its password for `server` (`<shorthost>_password`,
    /// else `proxy_password`).
    pub fn credentials(&self, server: &str) -> (String, String) {
        proxy_credentials(&self.conf, server)
    }

    /// A SASL PLAIN response for `user` as the proxy identity.
    pub fn plain_for(&self, server: &str, user: &str) -> String {
        plain_ir(&self.conf, server, user)
    }

    /// A back-end IMAP session for `user` on `server`: one kept from an
    /// earlier session of theirs (`backend_pool`), else a new login.
    pub async fn imap_session(&self, server: &str, user: &str) -> Result<(String, tokio::io::BufReader<PeerIo>), String> {
        match self.pool.take(server, user) {
            Some((ok, io)) => Ok((ok, tokio::io::BufReader::new(io))),
            None => self.imap_login(server, user).await,
        }
    }

    /// Logs in to `server`'s IMAP for `user` (SASL PLAIN as the proxy
    /// identity, the user as authzid); the back end's tagged OK line.
    pub async fn imap_login(&self, server: &str, user: &str) -> Result<(String, tokio::io::BufReader<PeerIo>), String> {
        imap_login(&self.conf, server, user).await
    }

    /// A TCP connection to `server`'s `service` port (or its own
    /// `host:port`).
    pub async fn connect(&self, server: &str, service: &str, default_port: u16) -> Result<PeerIo, String> {
        let from = super::cyrus::client_bind(&self.conf).await;
        connect_service(server, service, default_port, super::cyrus::client_timeout(&self.conf), from).await
    }
}

/// A TCP connection to `server`'s `service` port (or its own
/// `host:port`), as Cyrus reaches its peers, given up after `timeout`
/// (`client_timeout`); from the address `from` (`client_bind`).
pub async fn connect_service(
    server: &str,
    service: &str,
    default_port: u16,
    timeout: Duration,
    from: Option<std::net::IpAddr>,
) -> Result<PeerIo, String> {
    let port = super::cyrus::service_port(service).unwrap_or(default_port);
    let (host, port) = super::mupdate::client::split_server(server, port);
    let tcp = tokio::time::timeout(timeout, super::cyrus::tcp_connect(&host, port, from))
        .await
        .map_err(|_| format!("{server}: connect timed out"))?
        .map_err(|e| format!("{server}:{port}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    Ok(Box::new(tcp))
}

/// A back end's free space (KiB: available, total) from its server
/// annotation `/shared/vendor/cmu/cyrus-imapd/<entry>` ("avail;total"),
/// asked as the proxy identity (which autocreates nothing).
async fn server_space(conf: &ImapdConf, server: &str, entry: &str) -> Option<(u64, u64)> {
    let (_, mut b) = imap_login(conf, server, "").await.ok()?;
    let cmd = format!("F1 GETMETADATA \"\" (\"/shared/vendor/cmu/cyrus-imapd/{entry}\")\r\nF2 LOGOUT\r\n");
    b.get_mut().write_all(cmd.as_bytes()).await.ok()?;
    let mut found = None;
    loop {
        let l = backend_line(&mut b).await.ok()?;
        if l.starts_with("F1 ") {
            return found;
        }
        if l.starts_with("* METADATA ") {
            // The value is the line's last quoted string.
            let v = l.rsplit('"').nth(1).unwrap_or("");
            found = v.split_once(';').and_then(|(a, t)| Some((a.parse().ok()?, t.parse().ok()?)));
        }
    }
}

/// Runs the futures together; their outputs in order.
async fn join_all<F: std::future::Future>(fs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = fs.map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in pinned.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *o = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// The SASL mechanisms of an IMAP capability list (`AUTH=X` atoms).
pub fn imap_mechs(caps: &str) -> Vec<String> {
    caps.split([' ', ']'])
        .filter_map(|w| w.strip_prefix("AUTH=").or_else(|| w.strip_prefix("auth=")))
        .map(str::to_string)
        .collect()
}

/// Logs in to `server`'s IMAP as `proxy_authname` with SASL PLAIN for
/// `authzid` (a user, or empty: the proxy identity itself, as XFER logs
/// in); the server's tagged OK line and the connection.
pub async fn imap_login(conf: &ImapdConf, server: &str, authzid: &str) -> Result<(String, tokio::io::BufReader<PeerIo>), String> {
    let from = super::cyrus::client_bind(conf).await;
    let tcp = connect_service(server, "imap", 143, super::cyrus::client_timeout(conf), from).await?;
    let mut b = tokio::io::BufReader::new(tcp);
    let greet = backend_line(&mut b).await?;
    if !greet.starts_with("* OK") {
        return Err(format!("greeting {greet}"));
    }
    // The capabilities: from the greeting, again after STARTTLS.
    let mut caps = greet;
    // No password for this back end, and it offers GSSAPI: log in with
    // Kerberos credentials (the ccache, or the keytab in
    // `KRB5_CLIENT_KTNAME`) instead of a shared secret.
    let kerberos = cfg!(feature = "krb5") && caps.contains("AUTH=GSSAPI") && proxy_credentials(conf, server).1.is_empty();
    let want = if kerberos { "GSSAPI" } else { "PLAIN" };
    if needs_starttls(server, &imap_mechs(&caps), want, caps.contains(" STARTTLS")) {
        write_line(&mut b, "S01 STARTTLS").await?;
        let (_, st) = collect_tagged(&mut b, "S01", 65536).await?;
        if !st.starts_with("OK") {
            return Err(format!("STARTTLS: {st}"));
        }
        b = tokio::io::BufReader::new(super::peer_tls::handshake(b.into_inner(), server, conf).await?);
        write_line(&mut b, "C01 CAPABILITY").await?;
        let (lines, st) = collect_tagged(&mut b, "C01", 65536).await?;
        if !st.starts_with("OK") {
            return Err(format!("CAPABILITY: {st}"));
        }
        caps = lines
            .iter()
            .map(|l| String::from_utf8_lossy(l).trim_end().to_string())
            .collect::<Vec<_>>()
            .join(" ");
    }
    #[cfg(feature = "krb5")]
    if kerberos {
        let principal = crate::auth::gssapi::named_principal(&proxy_credentials(conf, server).0);
        let (host, _) = super::mupdate::client::split_server(server, 143);
        let l = authenticate_gssapi(&mut b, "P01", "imap", &host, &principal, authzid, caps.contains("SASL-IR")).await?;
        return Ok((l, b));
    }
    let ir = plain_ir(conf, server, authzid);
    let l = authenticate_plain(&mut b, "P01", &ir, caps.contains("SASL-IR")).await?;
    Ok((l, b))
}

/// `tag AUTHENTICATE GSSAPI` as `principal` (empty: the default
/// credentials) to `service@host`, for `authzid`: the tagged OK line, or
/// Err with the reason.
#[cfg(feature = "krb5")]
#[allow(clippy::too_many_arguments)]
pub async fn authenticate_gssapi<S: AsyncRead + AsyncWrite + Unpin>(
    b: &mut tokio::io::BufReader<S>,
    tag: &str,
    service: &str,
    host: &str,
    principal: &str,
    authzid: &str,
    sasl_ir: bool,
) -> Result<String, String> {
    let (mut login, first) = crate::auth::gssapi::Login::start(service, host, principal, authzid).await?;
    let mut pending = if sasl_ir {
        write_line(b, &format!("{tag} AUTHENTICATE GSSAPI {first}")).await?;
        None
    } else {
        write_line(b, &format!("{tag} AUTHENTICATE GSSAPI")).await?;
        Some(first)
    };
    loop {
        let l = backend_line(b).await?;
        if let Some(rest) = l.strip_prefix('+') {
            let reply = match pending.take() {
                Some(t) => t,
                None => login.answer(rest).await?,
            };
            write_line(b, &reply).await?;
        } else if let Some(rest) = l.strip_prefix(tag).and_then(|r| r.strip_prefix(' ')) {
            return if rest.starts_with("OK") { Ok(l) } else { Err(l) };
        }
    }
}

/// AUTH GSSAPI on a POP3 (`+ ` challenges, `+OK`) or LMTP/SMTP (`334 `,
/// `235`) back end: the success line, or Err with the refusal.
#[cfg(feature = "krb5")]
pub async fn auth_gssapi_lines<S: AsyncRead + AsyncWrite + Unpin>(
    b: &mut tokio::io::BufReader<S>,
    service: &str,
    host: &str,
    principal: &str,
    authzid: &str,
    (challenge, success): (&str, &str),
) -> Result<String, String> {
    let (mut login, first) = crate::auth::gssapi::Login::start(service, host, principal, authzid).await?;
    write_line(b, &format!("AUTH GSSAPI {first}")).await?;
    loop {
        let l = backend_line(b).await?;
        // An empty challenge may come without its trailing space.
        let rest = l.strip_prefix(challenge).or_else(|| (l == challenge.trim_end()).then_some(""));
        if let Some(rest) = rest {
            let reply = login.answer(rest).await?;
            write_line(b, &reply).await?;
        } else if l.starts_with(success) {
            return Ok(l);
        } else {
            return Err(l);
        }
    }
}

/// `line` and CRLF to a peer, flushed (a TLS record goes out now).
pub async fn write_line<S: AsyncRead + AsyncWrite + Unpin>(b: &mut tokio::io::BufReader<S>, line: &str) -> Result<(), String> {
    let w = b.get_mut();
    w.write_all(format!("{line}\r\n").as_bytes()).await.map_err(|e| e.to_string())?;
    w.flush().await.map_err(|e| e.to_string())
}

/// `tag AUTHENTICATE PLAIN` with the base64 response `ir` (sent at once
/// with SASL-IR, else after the server's `+`): the tagged OK line, or Err
/// with the tagged line that refused.
pub async fn authenticate_plain<S: AsyncRead + AsyncWrite + Unpin>(
    b: &mut tokio::io::BufReader<S>,
    tag: &str,
    ir: &str,
    sasl_ir: bool,
) -> Result<String, String> {
    let cmd = if sasl_ir {
        format!("{tag} AUTHENTICATE PLAIN {ir}")
    } else {
        format!("{tag} AUTHENTICATE PLAIN")
    };
    write_line(b, &cmd).await?;
    loop {
        let l = backend_line(b).await?;
        if l.starts_with('+') {
            write_line(b, ir).await?;
        } else if let Some(rest) = l.strip_prefix(tag).and_then(|r| r.strip_prefix(' ')) {
            return if rest.starts_with("OK") { Ok(l) } else { Err(l) };
        }
    }
}

/// A SASL PLAIN response for `authzid` as the proxy identity.
fn plain_ir(conf: &ImapdConf, server: &str, authzid: &str) -> String {
    let (who, pw) = proxy_credentials(conf, server);
    crate::util::base64_encode(format!("{authzid}\0{who}\0{pw}").as_bytes())
}

/// `proxy_authname` and its password for `server` (`<shorthost>_password`,
/// else `proxy_password`): how front ends log in to back ends, and back
/// ends to each other for XFER.
pub fn proxy_credentials(conf: &ImapdConf, server: &str) -> (String, String) {
    let who = conf.get("proxy_authname").unwrap_or("proxy").to_string();
    let short = server.split(['.', ':']).next().unwrap_or(server);
    let pw = conf
        .overflow(&format!("{short}_password"))
        .or_else(|| conf.get("proxy_password").filter(|p| *p != "(null)"))
        .unwrap_or("")
        .to_string();
    (who, pw)
}

/// Asks the local replica to catch up with the master; waits for its
/// `ok` (bounded).
pub async fn kick(path: &std::path::Path) {
    let work = async {
        let mut s = tokio::net::UnixStream::connect(path).await.ok()?;
        let mut b = [0u8; 2];
        s.read_exact(&mut b).await.ok()
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), work).await;
}

/// A line from a back end while logging in (bounded, timed).
pub async fn backend_line<R: AsyncRead + Unpin>(r: &mut tokio::io::BufReader<R>) -> Result<String, String> {
    use tokio::io::AsyncBufReadExt;
    let mut l = Vec::new();
    let n = tokio::time::timeout(BACKEND_TIMEOUT, (&mut *r).take(65536).read_until(b'\n', &mut l))
        .await
        .map_err(|_| "timed out waiting for the back end".to_string())?
        .map_err(|e| e.to_string())?;
    if n == 0 || !l.ends_with(b"\n") {
        return Err("connection closed by the back end".into());
    }
    Ok(String::from_utf8_lossy(&l).trim_end().to_string())
}

/// A read buffer that grows while data streams (a FETCH of many
/// messages) and falls back to a small one when traffic is light (10,000
/// idle sessions hold 1 KB per direction, not 8 or 16).
pub struct Buf(pub Vec<u8>);

impl Default for Buf {
    fn default() -> Self {
        Self::new()
    }
}

impl Buf {
    const SMALL: usize = 1024;
    const LARGE: usize = 64 * 1024;

    pub fn new() -> Buf {
        Buf(vec![0; Self::SMALL])
    }

    /// A read that filled the buffer goes straight to the large one (a
    /// FETCH answer of 200 KB is then four reads, not eight); one that
    /// used less than an eighth of a large buffer goes back to the small.
    pub fn after_read(&mut self, n: usize) {
        let len = self.0.len();
        if n == len && len < Self::LARGE {
            self.0 = vec![0; Self::LARGE];
        } else if n < len / 8 && len > Self::SMALL {
            self.0 = vec![0; Self::SMALL];
        }
    }
}

/// Joins client and back end until either side ends.  When the back end
/// goes away without a `bye` line of its own, the client is sent
/// `lost` (`* BYE ...` / `-ERR ...`) so that it knows.
pub async fn pipe<C, B>(client: C, backend: B, lost: &str, bye_marker: &[u8])
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut br, mut bw) = tokio::io::split(backend);
    let mut cbuf = Buf::new();
    let mut bbuf = Buf::new();
    let mut said_bye = false;
    loop {
        tokio::select! {
            n = cr.read(&mut cbuf.0) => match n {
                Ok(n) if n > 0 => {
                    if bw.write_all(&cbuf.0[..n]).await.is_err() || bw.flush().await.is_err() {
                        break;
                    }
                    cbuf.after_read(n);
                }
                _ => {
                    let _ = bw.shutdown().await;
                    return;
                }
            },
            n = br.read(&mut bbuf.0) => match n {
                Ok(n) if n > 0 => {
                    if bbuf.0[..n].windows(bye_marker.len()).any(|w| w == bye_marker) {
                        said_bye = true;
                    }
                    // TLS: the record goes out now, not with the next one.
                    if cw.write_all(&bbuf.0[..n]).await.is_err() || cw.flush().await.is_err() {
                        return;
                    }
                    bbuf.after_read(n);
                }
                _ => break,
            },
        }
    }
    if !said_bye {
        let _ = cw.write_all(lost.as_bytes()).await;
    }
    let _ = cw.flush().await;
    let _ = cw.shutdown().await;
}

/// Reads an IMAP server's responses up to the one tagged `tag`: each
/// untagged response whole (literals included) and the tagged status
/// text; at most `max` bytes in all ("response too large" beyond).
pub async fn collect_tagged<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R, tag: &str, max: u64) -> Result<(Vec<Vec<u8>>, String), String> {
    use tokio::io::AsyncBufReadExt;
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    let mut total = 0u64;
    loop {
        let mut l = Vec::new();
        let n = (&mut *r)
            .take(max - total.min(max))
            .read_until(b'\n', &mut l)
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 || !l.ends_with(b"\n") {
            return Err("connection closed by the back end".into());
        }
        total += n as u64;
        if cur.is_empty() && l.starts_with(tag.as_bytes()) && l.get(tag.len()) == Some(&b' ') {
            let text = String::from_utf8_lossy(&l[tag.len() + 1..]).trim_end().to_string();
            return Ok((out, text));
        }
        cur.extend_from_slice(&l);
        let body = l.strip_suffix(b"\r\n").unwrap_or(&l);
        match crate::proto::imap::command::literal_marker(body) {
            Some((len, _)) if total + len <= max => {
                let mut data = vec![0u8; len as usize];
                r.read_exact(&mut data).await.map_err(|e| e.to_string())?;
                total += len;
                cur.extend_from_slice(&data);
            }
            Some(_) => return Err("response too large".into()),
            None => out.push(std::mem::take(&mut cur)),
        }
    }
}
