//! The GSSAPI SASL mechanism (RFC 4752) over MIT Kerberos's GSS-API C
//! library (libgssapi_krb5, no bindgen): the server side that IMAP, POP3,
//! SMTP, LMTP and MUPDATE offer when a keytab is readable, and the client
//! side our daemons use to log in to each other with a keytab instead of
//! a shared password.  Only the "no security layer" option is offered and
//! accepted, as Cyrus's servers negotiate it under TLS or on trusted
//! networks.  The exchanges are sans-I/O: each `step` takes the peer's
//! decoded token and returns the next one to send.

use std::ffi::{c_int, c_void, CStr, CString};
use std::ptr::{null, null_mut};

type Minor = u32;
type Major = u32;

#[repr(C)]
struct Buffer {
    length: usize,
    value: *mut c_void,
}

impl Buffer {
    fn empty() -> Buffer {
        Buffer {
            length: 0,
            value: null_mut(),
        }
    }

    /// A view of `b` (GSS-API does not write through input buffers).
    fn of(b: &[u8]) -> Buffer {
        Buffer {
            length: b.len(),
            value: b.as_ptr() as *mut c_void,
        }
    }

    fn take(&mut self) -> Vec<u8> {
        let v = if self.value.is_null() || self.length == 0 {
            Vec::new()
        } else {
            // SAFETY: the library filled `value` with `length` bytes.
            unsafe { std::slice::from_raw_parts(self.value.cast::<u8>(), self.length) }.to_vec()
        };
        let mut minor = 0;
        // SAFETY: releasing a buffer the library allocated (or an empty one).
        unsafe { gss_release_buffer(&mut minor, self) };
        v
    }
}

#[repr(C)]
struct OidDesc {
    length: u32,
    elements: *mut c_void,
}
type Oid = *mut OidDesc;
type Name = *mut c_void;
type Ctx = *mut c_void;
type Cred = *mut c_void;

const COMPLETE: Major = 0;
const CONTINUE_NEEDED: Major = 1;
const C_GSS_CODE: c_int = 1;
const C_MECH_CODE: c_int = 2;
const C_INITIATE: c_int = 1;
const MUTUAL: u32 = 2;
const SEQUENCE: u32 = 8;
const INTEG: u32 = 32;
/// The "no security layer" bit of RFC 4752's negotiation octet.
const LAYER_NONE: u8 = 1;

#[link(name = "gssapi_krb5")]
unsafe extern "C" {
    static GSS_C_NT_HOSTBASED_SERVICE: Oid;
    static GSS_C_NT_USER_NAME: Oid;
    fn gss_accept_sec_context(
        minor: *mut Minor,
        ctx: *mut Ctx,
        cred: Cred,
        input: *mut Buffer,
        bindings: *const c_void,
        src_name: *mut Name,
        mech: *mut Oid,
        output: *mut Buffer,
        flags: *mut u32,
        time: *mut u32,
        delegated: *mut Cred,
    ) -> Major;
    fn gss_init_sec_context(
        minor: *mut Minor,
        cred: Cred,
        ctx: *mut Ctx,
        target: Name,
        mech: Oid,
        req_flags: u32,
        time_req: u32,
        bindings: *const c_void,
        input: *mut Buffer,
        actual_mech: *mut Oid,
        output: *mut Buffer,
        ret_flags: *mut u32,
        time_rec: *mut u32,
    ) -> Major;
    fn gss_wrap(
        minor: *mut Minor,
        ctx: Ctx,
        conf: c_int,
        qop: u32,
        input: *mut Buffer,
        conf_state: *mut c_int,
        output: *mut Buffer,
    ) -> Major;
    fn gss_unwrap(minor: *mut Minor, ctx: Ctx, input: *mut Buffer, output: *mut Buffer, conf_state: *mut c_int, qop: *mut u32) -> Major;
    fn gss_display_name(minor: *mut Minor, name: Name, out: *mut Buffer, ty: *mut Oid) -> Major;
    fn gss_import_name(minor: *mut Minor, input: *mut Buffer, ty: Oid, out: *mut Name) -> Major;
    fn gss_inquire_context(
        minor: *mut Minor,
        ctx: Ctx,
        src: *mut Name,
        targ: *mut Name,
        lifetime: *mut u32,
        mech: *mut Oid,
        flags: *mut u32,
        local: *mut c_int,
        open: *mut c_int,
    ) -> Major;
    fn gss_acquire_cred(
        minor: *mut Minor,
        name: Name,
        time_req: u32,
        mechs: *mut c_void,
        usage: c_int,
        cred: *mut Cred,
        actual_mechs: *mut *mut c_void,
        time_rec: *mut u32,
    ) -> Major;
    fn gss_release_buffer(minor: *mut Minor, b: *mut Buffer) -> Major;
    fn gss_release_name(minor: *mut Minor, n: *mut Name) -> Major;
    fn gss_release_cred(minor: *mut Minor, c: *mut Cred) -> Major;
    fn gss_delete_sec_context(minor: *mut Minor, ctx: *mut Ctx, out: *mut Buffer) -> Major;
    fn gss_display_status(minor: *mut Minor, status: u32, ty: c_int, mech: Oid, msg_ctx: *mut u32, out: *mut Buffer) -> Major;
    fn krb5_gss_register_acceptor_identity(keytab: *const std::ffi::c_char) -> Major;
}

#[link(name = "krb5")]
unsafe extern "C" {
    fn krb5_init_context(ctx: *mut *mut c_void) -> i32;
    fn krb5_free_context(ctx: *mut c_void);
    fn krb5_get_default_realm(ctx: *mut c_void, realm: *mut *mut std::ffi::c_char) -> i32;
    fn krb5_free_default_realm(ctx: *mut c_void, realm: *mut std::ffi::c_char);
}

/// The library's words for a failure (major, then minor status).
fn status_text(major: Major, minor: Minor) -> String {
    let mut parts = Vec::new();
    for (code, ty) in [(major, C_GSS_CODE), (minor, C_MECH_CODE)] {
        if code == 0 {
            continue;
        }
        let mut msg_ctx = 0u32;
        loop {
            let mut m = 0;
            let mut out = Buffer::empty();
            // SAFETY: out is released by take().
            let r = unsafe { gss_display_status(&mut m, code, ty, null_mut(), &mut msg_ctx, &mut out) };
            if r != COMPLETE {
                break;
            }
            let t = String::from_utf8_lossy(&out.take()).into_owned();
            if !t.is_empty() {
                parts.push(t);
            }
            if msg_ctx == 0 {
                break;
            }
        }
    }
    if parts.is_empty() {
        format!("GSS-API error {major:#x}/{minor}")
    } else {
        parts.join(": ")
    }
}

fn failed(major: Major) -> bool {
    major & 0xffff_0000 != 0
}

fn display(name: Name) -> Result<String, String> {
    let (mut minor, mut out) = (0, Buffer::empty());
    // SAFETY: name is a valid name handle; out released by take().
    let r = unsafe { gss_display_name(&mut minor, name, &mut out, null_mut()) };
    if failed(r) {
        return Err(status_text(r, minor));
    }
    Ok(String::from_utf8_lossy(&out.take()).into_owned())
}

fn import(name: &str, ty: Oid) -> Result<Name, String> {
    let (mut minor, mut out) = (0, null_mut());
    let mut b = Buffer::of(name.as_bytes());
    // SAFETY: b views `name` for the call only.
    let r = unsafe { gss_import_name(&mut minor, &mut b, ty, &mut out) };
    if failed(r) {
        return Err(format!("{name}: {}", status_text(r, minor)));
    }
    Ok(out)
}

fn release_name(n: &mut Name) {
    if !n.is_null() {
        let mut minor = 0;
        // SAFETY: a name the library returned.
        unsafe { gss_release_name(&mut minor, n) };
        *n = null_mut();
    }
}

/// The default realm of krb5.conf.
pub fn default_realm() -> Option<String> {
    let mut ctx = null_mut();
    // SAFETY: plain libkrb5 calls; everything allocated is freed here.
    unsafe {
        if krb5_init_context(&mut ctx) != 0 {
            return None;
        }
        let mut r = null_mut();
        let out = if krb5_get_default_realm(ctx, &mut r) == 0 && !r.is_null() {
            let s = CStr::from_ptr(r).to_string_lossy().into_owned();
            krb5_free_default_realm(ctx, r);
            Some(s)
        } else {
            None
        };
        krb5_free_context(ctx);
        out
    }
}

/// Sets the keytab servers accept with (Cyrus's `sasl_keytab`, smtpd.conf
/// `keytab`); once per process, before the first exchange.
pub fn use_keytab(path: &str) -> Result<(), String> {
    let c = CString::new(path).map_err(|_| "keytab path has a NUL byte".to_string())?;
    // SAFETY: the library copies the string.
    let r = unsafe { krb5_gss_register_acceptor_identity(c.as_ptr()) };
    if failed(r) {
        return Err(format!("keytab {path}: {}", status_text(r, 0)));
    }
    Ok(())
}

/// The keytab a server would accept with: the configured one, else
/// `KRB5_KTNAME`, else /etc/krb5.keytab; Some when it is readable (only
/// then is GSSAPI offered).
pub fn server_keytab(configured: &str) -> Option<String> {
    let p = if !configured.is_empty() {
        configured.to_string()
    } else if let Ok(k) = std::env::var("KRB5_KTNAME") {
        k
    } else {
        "/etc/krb5.keytab".to_string()
    };
    let path = p.strip_prefix("FILE:").unwrap_or(&p).to_string();
    std::fs::File::open(&path).ok().map(|_| path)
}

/// Who a server exchange authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// The client's principal (`user@REALM`).
    pub principal: String,
    /// The authorization identity the client asked for (may be empty).
    pub authzid: String,
}

/// What to send next.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// A challenge (server) or response (client) token.
    Send(Vec<u8>),
    /// The exchange succeeded; a server has nothing more to send.
    Done(Authenticated),
}

enum ServerState {
    Accepting,
    /// Context complete, its last token sent: the client's empty reply
    /// is expected next.
    WaitEmpty,
    /// The security-layer offer is sent: the client's choice is next.
    WaitLayer,
    Finished,
}

/// The server side of one GSSAPI exchange.
pub struct Server {
    ctx: Ctx,
    src: Name,
    service: String,
    state: ServerState,
}

// SAFETY: the context is used by one task at a time; MIT's GSS-API allows
// a context to move between threads.
unsafe impl Send for Server {}

impl Drop for Server {
    fn drop(&mut self) {
        let mut minor = 0;
        release_name(&mut self.src);
        if !self.ctx.is_null() {
            // SAFETY: a context the library created.
            unsafe { gss_delete_sec_context(&mut minor, &mut self.ctx, null_mut()) };
        }
    }
}

impl Server {
    /// `service` is the SASL service name (`imap`, `pop`, `smtp`, `lmtp`,
    /// `mupdate`): the ticket must be for `service/host@REALM`.
    pub fn new(service: &str) -> Server {
        Server {
            ctx: null_mut(),
            src: null_mut(),
            service: service.to_string(),
            state: ServerState::Accepting,
        }
    }

    /// The next challenge for the client's `token`; an error ends the
    /// exchange (the reason is for the log, not for the client).
    pub fn step(&mut self, token: &[u8]) -> Result<Step, String> {
        match self.state {
            ServerState::Accepting => {
                let (mut minor, mut out) = (0, Buffer::empty());
                let mut input = Buffer::of(token);
                release_name(&mut self.src);
                // SAFETY: all out-parameters are owned here and released.
                let r = unsafe {
                    gss_accept_sec_context(
                        &mut minor,
                        &mut self.ctx,
                        null_mut(),
                        &mut input,
                        null(),
                        &mut self.src,
                        null_mut(),
                        &mut out,
                        null_mut(),
                        null_mut(),
                        null_mut(),
                    )
                };
                let out = out.take();
                if failed(r) {
                    return Err(status_text(r, minor));
                }
                if r == CONTINUE_NEEDED {
                    return Ok(Step::Send(out));
                }
                self.check_target()?;
                if !out.is_empty() {
                    self.state = ServerState::WaitEmpty;
                    return Ok(Step::Send(out));
                }
                self.offer_layers()
            }
            ServerState::WaitEmpty => {
                if !token.is_empty() {
                    return Err("expected an empty response after the context was established".into());
                }
                self.offer_layers()
            }
            ServerState::WaitLayer => {
                let msg = unwrap(self.ctx, token)?;
                if msg.len() < 4 {
                    return Err("security layer response is too short".into());
                }
                if msg[0] != LAYER_NONE {
                    return Err(format!("client asked for security layer {:#x}; only none is offered", msg[0]));
                }
                self.state = ServerState::Finished;
                Ok(Step::Done(Authenticated {
                    principal: display(self.src)?,
                    authzid: String::from_utf8(msg[4..].to_vec()).map_err(|_| "authorization id is not UTF-8")?,
                }))
            }
            ServerState::Finished => Err("exchange already finished".into()),
        }
    }

    /// The ticket must be for this service, not for another key that
    /// happens to be in the keytab (`host/`, `smtp/`, ...).
    fn check_target(&self) -> Result<(), String> {
        let (mut minor, mut targ) = (0, null_mut());
        // SAFETY: targ is released below.
        let r = unsafe {
            gss_inquire_context(
                &mut minor,
                self.ctx,
                null_mut(),
                &mut targ,
                null_mut(),
                null_mut(),
                null_mut(),
                null_mut(),
                null_mut(),
            )
        };
        if failed(r) {
            return Err(status_text(r, minor));
        }
        let name = display(targ);
        release_name(&mut targ);
        let name = name?;
        let svc = name.split(['/', '@']).next().unwrap_or("");
        if svc != self.service {
            return Err(format!("ticket is for {name}, not for service {}", self.service));
        }
        Ok(())
    }

    fn offer_layers(&mut self) -> Result<Step, String> {
        // No security layer; no maximum size since none is offered.
        let offer = wrap(self.ctx, &[LAYER_NONE, 0, 0, 0])?;
        self.state = ServerState::WaitLayer;
        Ok(Step::Send(offer))
    }
}

fn wrap(ctx: Ctx, msg: &[u8]) -> Result<Vec<u8>, String> {
    let (mut minor, mut out) = (0, Buffer::empty());
    let mut input = Buffer::of(msg);
    // SAFETY: out released by take().
    let r = unsafe { gss_wrap(&mut minor, ctx, 0, 0, &mut input, null_mut(), &mut out) };
    let out = out.take();
    if failed(r) {
        return Err(status_text(r, minor));
    }
    Ok(out)
}

fn unwrap(ctx: Ctx, token: &[u8]) -> Result<Vec<u8>, String> {
    let (mut minor, mut out) = (0, Buffer::empty());
    let mut input = Buffer::of(token);
    // SAFETY: out released by take().
    let r = unsafe { gss_unwrap(&mut minor, ctx, &mut input, &mut out, null_mut(), null_mut()) };
    let out = out.take();
    if failed(r) {
        return Err(status_text(r, minor));
    }
    Ok(out)
}

/// Maps a client principal to a login name as Cyrus does: the realm is
/// dropped when it is the default realm or one of `loginrealms`; any
/// other realm is a cross-realm login and refused.
pub fn principal_to_user(principal: &str, default_realm: Option<&str>, loginrealms: &str) -> Result<String, String> {
    let Some((user, realm)) = principal.rsplit_once('@') else {
        return Ok(principal.to_string());
    };
    let ok = default_realm.is_some_and(|d| d.eq_ignore_ascii_case(realm))
        || loginrealms
            .split([' ', ',', '\t'])
            .any(|r| !r.is_empty() && r.eq_ignore_ascii_case(realm));
    if !ok {
        return Err(format!("cross-realm login {principal} denied"));
    }
    Ok(user.to_string())
}

enum ClientState {
    Initiating,
    WaitLayer,
    Finished,
}

/// The client side: logs in to `service@host` with the credentials of
/// the ccache (`KRB5CCNAME`) or, for daemons, of the client keytab
/// (`KRB5_CLIENT_KTNAME`), asking to act as `authzid`.
pub struct Client {
    ctx: Ctx,
    target: Name,
    cred: Cred,
    authzid: String,
    state: ClientState,
}

// SAFETY: as for Server.
unsafe impl Send for Client {}

impl Drop for Client {
    fn drop(&mut self) {
        let mut minor = 0;
        release_name(&mut self.target);
        // SAFETY: handles the library created.
        unsafe {
            if !self.cred.is_null() {
                gss_release_cred(&mut minor, &mut self.cred);
            }
            if !self.ctx.is_null() {
                gss_delete_sec_context(&mut minor, &mut self.ctx, null_mut());
            }
        }
    }
}

impl Client {
    /// `principal`: whose credentials to use (`imap/fe.example.edu`), or
    /// empty for the default ones.
    pub fn new(service: &str, host: &str, principal: &str, authzid: &str) -> Result<Client, String> {
        // SAFETY: the static OID is provided by the library.
        let target = import(&format!("{service}@{host}"), unsafe { GSS_C_NT_HOSTBASED_SERVICE })?;
        let mut c = Client {
            ctx: null_mut(),
            target,
            cred: null_mut(),
            authzid: authzid.to_string(),
            state: ClientState::Initiating,
        };
        if !principal.is_empty() {
            // SAFETY: the static OID is provided by the library.
            let mut name = import(principal, unsafe { GSS_C_NT_USER_NAME })?;
            let mut minor = 0;
            // SAFETY: cred is released in Drop; name below.
            let r = unsafe { gss_acquire_cred(&mut minor, name, 0, null_mut(), C_INITIATE, &mut c.cred, null_mut(), null_mut()) };
            release_name(&mut name);
            if failed(r) {
                return Err(format!("credentials of {principal}: {}", status_text(r, minor)));
            }
        }
        Ok(c)
    }

    /// The first token (`None` input) and each next one; `Done` after the
    /// security-layer answer has been produced (it is in the last `Send`).
    pub fn step(&mut self, token: Option<&[u8]>) -> Result<Step, String> {
        match self.state {
            ClientState::Initiating => {
                let (mut minor, mut out) = (0, Buffer::empty());
                let mut input = Buffer::of(token.unwrap_or(&[]));
                let ip: *mut Buffer = if token.is_some() { &mut input } else { null_mut() };
                // SAFETY: out released by take().
                let r = unsafe {
                    gss_init_sec_context(
                        &mut minor,
                        self.cred,
                        &mut self.ctx,
                        self.target,
                        null_mut(),
                        MUTUAL | SEQUENCE | INTEG,
                        0,
                        null(),
                        ip,
                        null_mut(),
                        &mut out,
                        null_mut(),
                        null_mut(),
                    )
                };
                let out = out.take();
                if failed(r) {
                    return Err(status_text(r, minor));
                }
                if r == COMPLETE {
                    self.state = ClientState::WaitLayer;
                }
                Ok(Step::Send(out))
            }
            ClientState::WaitLayer => {
                let msg = unwrap(self.ctx, token.unwrap_or(&[]))?;
                if msg.len() < 4 || msg[0] & LAYER_NONE == 0 {
                    return Err("server offers no usable security layer".into());
                }
                let mut answer = vec![LAYER_NONE, 0, 0, 0];
                answer.extend_from_slice(self.authzid.as_bytes());
                self.state = ClientState::Finished;
                Ok(Step::Send(wrap(self.ctx, &answer)?))
            }
            ClientState::Finished => Err("exchange already finished".into()),
        }
    }

    pub fn finished(&self) -> bool {
        matches!(self.state, ClientState::Finished)
    }
}

/// A client login as a protocol drives it: base64 in and out, the
/// library's calls (which may reach the KDC) on tokio's blocking pool.
pub struct Login {
    client: Option<Client>,
}

impl Login {
    /// Starts a login to `service@host` (see `Client::new`); the base64
    /// initial response.
    pub async fn start(service: &str, host: &str, principal: &str, authzid: &str) -> Result<(Login, String), String> {
        let (svc, h, p, z) = (service.to_string(), host.to_string(), principal.to_string(), authzid.to_string());
        let (client, first) = tokio::task::spawn_blocking(move || {
            let mut c = Client::new(&svc, &h, &p, &z)?;
            let t = c.step(None)?;
            Ok::<_, String>((c, t))
        })
        .await
        .map_err(|e| e.to_string())??;
        let Step::Send(first) = first else {
            return Err("GSSAPI: no initial token".into());
        };
        Ok((Login { client: Some(client) }, crate::util::base64_encode(&first)))
    }

    /// The base64 answer to a base64 challenge (empty once the exchange
    /// is over on our side).
    pub async fn answer(&mut self, challenge: &str) -> Result<String, String> {
        let Some(mut client) = self.client.take() else {
            return Err("GSSAPI: login already failed".into());
        };
        if client.finished() {
            self.client = Some(client);
            return Ok(String::new());
        }
        let challenge = crate::util::base64_decode(challenge.trim()).ok_or("GSSAPI: bad base64 challenge")?;
        let (client, step) = tokio::task::spawn_blocking(move || {
            let r = client.step(Some(&challenge));
            (client, r)
        })
        .await
        .map_err(|e| e.to_string())?;
        self.client = Some(client);
        Ok(match step? {
            Step::Send(t) => crate::util::base64_encode(&t),
            Step::Done(_) => String::new(),
        })
    }
}

/// A principal named in a proxy or MUPDATE login setting (it has a `/`
/// or an `@`), or empty for the default credentials.
pub fn named_principal(who: &str) -> String {
    if who.contains('/') || who.contains('@') {
        who.to_string()
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_map_to_users_as_cyrus() {
        let d = Some("MUMAIL.TEST");
        assert_eq!(principal_to_user("u1@MUMAIL.TEST", d, "").unwrap(), "u1");
        assert_eq!(principal_to_user("u1@mumail.test", d, "").unwrap(), "u1");
        assert!(principal_to_user("u1@OTHER.TEST", d, "").is_err());
        assert_eq!(principal_to_user("u1@OTHER.TEST", d, "AD.TEST OTHER.TEST").unwrap(), "u1");
        // A front end's service principal, as proxyservers lists it.
        assert_eq!(principal_to_user("imap/fe@MUMAIL.TEST", d, "").unwrap(), "imap/fe");
        assert!(principal_to_user("u1@MUMAIL.TEST", None, "").is_err());
    }
}
