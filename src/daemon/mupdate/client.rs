//! The MUPDATE client, as Cyrus's back ends, replicas and `ctl_mboxlist`
//! speak it: connect to `mupdate_server`, read the banner, AUTHENTICATE
//! PLAIN with a LITERAL+ initial response (`mupdate_authname`,
//! `mupdate_username`, `mupdate_password`), then commands.  Every read
//! has a timeout and a size bound.

use crate::config::cyrus::ImapdConf;
use crate::mail::Secret;
use crate::proto::mupdate::{self as proto, Banner, Response};
use crate::store::murder::{Entry, State};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Connecting, the banner, one reply: each must finish within this.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// Unparsed input kept at most (one response with its literals).
const MAX_BUFFERED: usize = 3 * proto::MAX_STRING + 4096;

#[derive(Debug)]
pub enum ClientError {
    /// No connection (refused, unreachable, name unknown).
    Connect(String),
    /// The server refused the login.
    Auth(String),
    /// The server said NO/BAD to a command.
    Refused(String),
    /// Broken, closed or timed-out connection, or a malformed response.
    Link(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Connect(s) => write!(f, "cannot connect to mupdate server: {s}"),
            ClientError::Auth(s) => write!(f, "mupdate authentication failed: {s}"),
            ClientError::Refused(s) => write!(f, "mupdate server refused: {s}"),
            ClientError::Link(s) => write!(f, "mupdate connection: {s}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// Who we log in as (`mupdate_*` options).
#[derive(Clone)]
pub struct Creds {
    pub authname: String,
    /// The authorization id; empty: the authname.
    pub username: String,
    pub password: Secret<Vec<u8>>,
    /// The TLS client settings (`tls_client_*`), for STARTTLS.
    pub conf: std::sync::Arc<ImapdConf>,
}

impl Creds {
    pub fn from_conf(conf: &ImapdConf) -> Creds {
        let get = |n: &str| conf.get(n).filter(|v| *v != "(null)").unwrap_or("").to_string();
        Creds {
            authname: get("mupdate_authname"),
            username: get("mupdate_username"),
            password: Secret::new(get("mupdate_password").into_bytes()),
            conf: std::sync::Arc::new(conf.clone()),
        }
    }
}

/// `host`, `host:port`, `[v6]:port`: host and port (`default` when none
/// is given, as Cyrus then uses the `mupdate` service's port).
pub fn split_server(server: &str, default: u16) -> (String, u16) {
    let s = server.split('/').next().unwrap_or(server);
    if let Some(rest) = s.strip_prefix('[') {
        if let Some((h, p)) = rest.split_once(']') {
            let port = p.strip_prefix(':').and_then(|p| p.parse().ok()).unwrap_or(default);
            return (h.to_string(), port);
        }
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => match p.parse() {
            Ok(port) => (h.to_string(), port),
            Err(_) => (s.to_string(), default),
        },
        _ => (s.to_string(), default),
    }
}

/// The port of `mupdate` in /etc/services, else `mupdate_port`.
pub fn default_port(conf: &ImapdConf) -> u16 {
    crate::daemon::cyrus::service_port("mupdate").unwrap_or_else(|| u16::try_from(conf.get_int("mupdate_port")).unwrap_or(3905))
}

pub struct Client {
    io: crate::daemon::peer_tls::PeerIo,
    /// The server as named (`host:port[/tls]`).
    server: String,
    buf: Vec<u8>,
    pos: usize,
    pub banner: Banner,
    next_tag: u32,
    /// `host:port` as connected.
    pub peer: String,
}

impl Client {
    /// Connects to `server` (from the address `from`, `client_bind`) and
    /// reads its banner.
    pub async fn connect(server: &str, default_port: u16, from: Option<std::net::IpAddr>) -> Result<Client, ClientError> {
        let (host, port) = split_server(server, default_port);
        let peer = format!("{host}:{port}");
        let io = tokio::time::timeout(TIMEOUT, crate::daemon::cyrus::tcp_connect(&host, port, from))
            .await
            .map_err(|_| ClientError::Connect(format!("{peer}: timed out")))?
            .map_err(|e| ClientError::Connect(format!("{peer}: {e}")))?;
        let _ = io.set_nodelay(true);
        let mut c = Client {
            io: Box::new(io),
            server: server.to_string(),
            buf: Vec::new(),
            pos: 0,
            banner: Banner::default(),
            next_tag: 0,
            peer,
        };
        c.read_banner().await?;
        Ok(c)
    }

    /// The banner, up to its `* OK` (again after STARTTLS).
    async fn read_banner(&mut self) -> Result<(), ClientError> {
        let c = self;
        c.banner = Banner::default();
        loop {
            match c.response(TIMEOUT).await? {
                Response::Untagged(t) => {
                    if t.first().is_some_and(|f| f.bytes().eq_ignore_ascii_case(b"BYE")) {
                        let why = t
                            .get(1)
                            .map(|x| String::from_utf8_lossy(x.bytes()).into_owned())
                            .unwrap_or_default();
                        return Err(ClientError::Connect(format!("{}: {why}", c.peer)));
                    }
                    if c.banner.take(&t) {
                        break;
                    }
                }
                other => return Err(ClientError::Link(format!("unexpected banner line {other:?}"))),
            }
        }
        Ok(())
    }

    /// STARTTLS, the handshake, and the banner the server sends again.
    async fn starttls(&mut self, creds: &Creds) -> Result<(), ClientError> {
        self.write(b"S01 STARTTLS\r\n").await?;
        loop {
            let line = self.raw_line(TIMEOUT).await?;
            let text = String::from_utf8_lossy(&line).into_owned();
            if text.starts_with("S01 OK") {
                break;
            }
            if text.starts_with("S01 ") || text.starts_with("* BYE") {
                return Err(ClientError::Auth(format!("{}: STARTTLS: {text}", self.peer)));
            }
        }
        if self.pos < self.buf.len() {
            return Err(ClientError::Link("data after the STARTTLS reply".into()));
        }
        self.buf.clear();
        self.pos = 0;
        let plain: crate::daemon::peer_tls::PeerIo = Box::new(tokio::io::duplex(1).0);
        let io = std::mem::replace(&mut self.io, plain);
        self.io = crate::daemon::peer_tls::handshake(io, &self.server, &creds.conf)
            .await
            .map_err(ClientError::Connect)?;
        self.read_banner().await
    }

    /// Connects and logs in: the usual start of every client.
    pub async fn login(server: &str, default_port: u16, creds: &Creds) -> Result<Client, ClientError> {
        let from = crate::daemon::cyrus::client_bind(&creds.conf).await;
        let mut c = Client::connect(server, default_port, from).await?;
        c.authenticate(creds).await?;
        Ok(c)
    }

    /// AUTHENTICATE "PLAIN" with the initial response as a LITERAL+, as
    /// Cyrus's saslclient sends it.
    pub async fn authenticate(&mut self, creds: &Creds) -> Result<(), ClientError> {
        // TLS first when the server name asks for it, or when what we
        // would log in with is offered only after STARTTLS.
        let kerberos = cfg!(feature = "krb5") && creds.password.expose().is_empty() && self.banner.mechs.iter().any(|m| m == "GSSAPI");
        let want = if kerberos { "GSSAPI" } else { "PLAIN" };
        if crate::daemon::peer_tls::needs_starttls(&self.server, &self.banner.mechs, want, self.banner.starttls) {
            self.starttls(creds).await?;
        }
        // No password and the server offers GSSAPI: Kerberos credentials
        // (the ccache, or the keytab in `KRB5_CLIENT_KTNAME`).
        #[cfg(feature = "krb5")]
        if creds.password.expose().is_empty() && self.banner.mechs.iter().any(|m| m == "GSSAPI") {
            return self.authenticate_gssapi(creds).await;
        }
        if !self.banner.mechs.iter().any(|m| m == "PLAIN") {
            return Err(ClientError::Auth(format!(
                "{} offers no PLAIN (mechanisms: {})",
                self.peer,
                self.banner.mechs.join(" ")
            )));
        }
        let mut raw = Vec::new();
        raw.extend_from_slice(creds.username.as_bytes());
        raw.push(0);
        raw.extend_from_slice(creds.authname.as_bytes());
        raw.push(0);
        raw.extend_from_slice(creds.password.expose());
        let b64 = crate::util::base64_encode(&raw);
        let tag = "A01";
        let cmd = format!("{tag} AUTHENTICATE \"PLAIN\" {{{}+}}\r\n{b64}\r\n", b64.len());
        self.write(cmd.as_bytes()).await?;
        loop {
            let line = self.raw_line(TIMEOUT).await?;
            let text = String::from_utf8_lossy(&line).into_owned();
            if let Some(rest) = text.strip_prefix(&format!("{tag} OK")) {
                let _ = rest;
                return Ok(());
            }
            if let Some(rest) = text.strip_prefix(&format!("{tag} ")) {
                return Err(ClientError::Auth(rest.trim().trim_matches('"').to_string()));
            }
            if text.starts_with("* BYE") {
                return Err(ClientError::Auth(text));
            }
            // A challenge PLAIN does not expect: cancel.
            self.write(b"*\r\n").await?;
        }
    }

    /// AUTHENTICATE "GSSAPI" as `mupdate_authname` when it names a
    /// principal (`mupdate/be1.example.edu`), else the default one; the
    /// server's challenges and our responses are bare base64 lines.
    #[cfg(feature = "krb5")]
    async fn authenticate_gssapi(&mut self, creds: &Creds) -> Result<(), ClientError> {
        let host = self
            .peer
            .rsplit_once(':')
            .map(|(h, _)| h.to_string())
            .unwrap_or_else(|| self.peer.clone());
        let principal = crate::auth::gssapi::named_principal(&creds.authname);
        let authzid = if creds.username == creds.authname {
            ""
        } else {
            creds.username.as_str()
        };
        let (mut login, b64) = crate::auth::gssapi::Login::start("mupdate", &host, &principal, authzid)
            .await
            .map_err(ClientError::Auth)?;
        let tag = "A01";
        self.write(format!("{tag} AUTHENTICATE \"GSSAPI\" {{{}+}}\r\n{b64}\r\n", b64.len()).as_bytes())
            .await?;
        loop {
            let line = self.raw_line(TIMEOUT).await?;
            let text = String::from_utf8_lossy(&line).into_owned();
            if text.starts_with(&format!("{tag} OK")) {
                return Ok(());
            }
            if let Some(rest) = text.strip_prefix(&format!("{tag} ")) {
                return Err(ClientError::Auth(rest.trim().trim_matches('"').to_string()));
            }
            if text.starts_with("* BYE") {
                return Err(ClientError::Auth(text));
            }
            let reply = login.answer(&text).await.map_err(ClientError::Auth)?;
            self.write(format!("{reply}\r\n").as_bytes()).await?;
        }
    }

    async fn write(&mut self, b: &[u8]) -> Result<(), ClientError> {
        let w = &mut self.io;
        let write = async {
            w.write_all(b).await?;
            w.flush().await
        };
        tokio::time::timeout(TIMEOUT, write)
            .await
            .map_err(|_| ClientError::Link("write timed out".into()))?
            .map_err(|e| ClientError::Link(format!("write: {e}")))
    }

    /// Reads more input (cancel-safe: bytes are kept only once read).
    async fn fill(&mut self, timeout: Duration) -> Result<(), ClientError> {
        if self.pos > 0 && self.pos * 2 >= self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        if self.buf.len() - self.pos > MAX_BUFFERED {
            return Err(ClientError::Link("response too large".into()));
        }
        let mut chunk = vec![0u8; 65536];
        let n = tokio::time::timeout(timeout, self.io.read(&mut chunk))
            .await
            .map_err(|_| ClientError::Link("timed out waiting for the server".into()))?
            .map_err(|e| ClientError::Link(format!("read: {e}")))?;
        if n == 0 {
            return Err(ClientError::Link("connection closed by server".into()));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    async fn raw_line(&mut self, timeout: Duration) -> Result<Vec<u8>, ClientError> {
        loop {
            if let Some(n) = self.buf[self.pos..].iter().position(|&c| c == b'\n') {
                let mut l = self.buf[self.pos..self.pos + n].to_vec();
                self.pos += n + 1;
                if l.last() == Some(&b'\r') {
                    l.pop();
                }
                return Ok(l);
            }
            self.fill(timeout).await?;
        }
    }

    /// The next response; cancel-safe.
    pub async fn response(&mut self, timeout: Duration) -> Result<Response, ClientError> {
        loop {
            if let Some(r) = self.buffered()? {
                return Ok(r);
            }
            self.fill(timeout).await?;
        }
    }

    /// A response already in the buffer, if a whole one is.
    pub fn buffered(&mut self) -> Result<Option<Response>, ClientError> {
        match proto::parse_response(&self.buf[self.pos..]) {
            Ok(Some((r, n))) => {
                self.pos += n;
                Ok(Some(r))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(ClientError::Link(e.to_string())),
        }
    }

    /// Sends a command; its tag.
    pub async fn send(&mut self, word: &str, args: &[&str]) -> Result<String, ClientError> {
        self.next_tag += 1;
        let tag = format!("X{}", self.next_tag);
        self.write(&proto::render_command(&tag, word, args)).await?;
        Ok(tag)
    }

    /// A command whose answer is OK/NO/BAD, collecting data responses.
    pub async fn call(&mut self, word: &str, args: &[&str]) -> Result<Vec<(String, Entry)>, ClientError> {
        let tag = self.send(word, args).await?;
        let mut data = Vec::new();
        loop {
            match self.response(TIMEOUT).await? {
                Response::Ok { tag: t, .. } if t == tag => return Ok(data),
                Response::No { tag: t, text } | Response::Bad { tag: t, text } if t == tag => return Err(ClientError::Refused(text)),
                Response::Bye { text, .. } => return Err(ClientError::Link(format!("server said BYE: {text}"))),
                Response::Untagged(t) if t.first().is_some_and(|f| f.bytes().eq_ignore_ascii_case(b"BYE")) => {
                    return Err(ClientError::Link("server said BYE".into()))
                }
                r => {
                    if let Some((name, Some(e))) = entry_of(r) {
                        data.push((name, e));
                    }
                }
            }
        }
    }

    pub async fn activate(&mut self, name: &str, location: &str, acl: &str) -> Result<(), ClientError> {
        self.call("ACTIVATE", &[name, location, acl]).await.map(|_| ())
    }

    pub async fn reserve(&mut self, name: &str, location: &str) -> Result<(), ClientError> {
        self.call("RESERVE", &[name, location]).await.map(|_| ())
    }

    pub async fn delete(&mut self, name: &str) -> Result<(), ClientError> {
        self.call("DELETE", &[name]).await.map(|_| ())
    }

    pub async fn find(&mut self, name: &str) -> Result<Option<Entry>, ClientError> {
        Ok(self
            .call("FIND", &[name])
            .await?
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, e)| e))
    }

    pub async fn list(&mut self, prefix: Option<&str>) -> Result<Vec<(String, Entry)>, ClientError> {
        match prefix {
            Some(p) => self.call("LIST", &[p]).await,
            None => self.call("LIST", &[]).await,
        }
    }

    pub async fn logout(mut self) {
        let _ = self.call("LOGOUT", &[]).await;
    }
}

/// A data response as (name, new entry or None for DELETE).
pub fn entry_of(r: Response) -> Option<(String, Option<Entry>)> {
    match r {
        Response::Mailbox { name, location, acl, .. } => Some((
            name,
            Some(Entry {
                state: State::Active,
                location,
                acl,
            }),
        )),
        Response::Reserve { name, location, .. } => Some((
            name,
            Some(Entry {
                state: State::Reserved,
                location,
                acl: String::new(),
            }),
        )),
        Response::Delete { name, .. } => Some((name, None)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::split_server;

    #[test]
    fn server_strings_split_as_cyrus_reads_them() {
        assert_eq!(split_server("m.example.org", 3905), ("m.example.org".into(), 3905));
        assert_eq!(split_server("127.0.0.1:24905", 3905), ("127.0.0.1".into(), 24905));
        assert_eq!(split_server("[::1]:24905", 3905), ("::1".into(), 24905));
        assert_eq!(split_server("::1", 3905), ("::1".into(), 3905));
        assert_eq!(split_server("m:2/tls", 3905), ("m".into(), 2));
    }
}
