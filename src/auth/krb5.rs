//! `kerberos5`: gets an initial ticket with the password from the KDC and
//! verifies it against a key from the host keytab (krb5_verify_init_creds
//! with ap_req_nofail), so that a spoofed KDC cannot log anyone in — as
//! saslauthd's auth_krb5.  MIT krb5 through its C API (no bindgen): the
//! realm comes from the login, then the request, then krb5.conf; the
//! keytab from saslauthd.conf `krb5_keytab`, `KRB5_KTNAME` or the default;
//! the verifying service from `krb5_verify_principal` (default `host`).

use super::{BoxFut, Credentials, Mechanism, Notes, Verdict};
use crate::config::sasl::SaslauthdConf;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::Arc;

type Ctx = *mut c_void;
type Princ = *mut c_void;
type Keytab = *mut c_void;

/// `krb5_verify_init_creds_opt` (flags, ap_req_nofail).
#[repr(C)]
struct VerifyOpt {
    flags: i32,
    ap_req_nofail: c_int,
}
const VERIFY_AP_REQ_NOFAIL: i32 = 0x0001;
const KRB5_NT_SRV_HST: i32 = 3;

#[link(name = "krb5")]
unsafe extern "C" {
    fn krb5_init_context(ctx: *mut Ctx) -> i32;
    fn krb5_free_context(ctx: Ctx);
    fn krb5_parse_name(ctx: Ctx, name: *const c_char, princ: *mut Princ) -> i32;
    fn krb5_free_principal(ctx: Ctx, p: Princ);
    fn krb5_get_init_creds_password(
        ctx: Ctx,
        creds: *mut c_void,
        client: Princ,
        password: *const c_char,
        prompter: *const c_void,
        data: *mut c_void,
        start_time: i32,
        in_tkt_service: *const c_char,
        options: *const c_void,
    ) -> i32;
    fn krb5_free_cred_contents(ctx: Ctx, creds: *mut c_void);
    fn krb5_sname_to_principal(ctx: Ctx, host: *const c_char, sname: *const c_char, kind: i32, ret: *mut Princ) -> i32;
    fn krb5_kt_resolve(ctx: Ctx, name: *const c_char, kt: *mut Keytab) -> i32;
    fn krb5_kt_default(ctx: Ctx, kt: *mut Keytab) -> i32;
    fn krb5_kt_close(ctx: Ctx, kt: Keytab) -> i32;
    fn krb5_verify_init_creds(ctx: Ctx, creds: *mut c_void, server: Princ, keytab: Keytab, ccache: *mut c_void, opt: *mut VerifyOpt)
        -> i32;
    fn krb5_unparse_name(ctx: Ctx, p: Princ, name: *mut *mut c_char) -> i32;
    fn krb5_free_unparsed_name(ctx: Ctx, name: *mut c_char);
    fn krb5_get_error_message(ctx: Ctx, code: i32) -> *const c_char;
    fn krb5_free_error_message(ctx: Ctx, msg: *const c_char);
}

/// Error codes that mean "wrong password / no such user", not an outage.
const KRB5KDC_ERR_C_PRINCIPAL_UNKNOWN: i32 = -1765328378;
const KRB5KDC_ERR_PREAUTH_FAILED: i32 = -1765328360;
const KRB5KRB_AP_ERR_BAD_INTEGRITY: i32 = -1765328353;
const KRB5_PREAUTH_FAILED: i32 = -1765328174;
const KRB5KDC_ERR_CLIENT_REVOKED: i32 = -1765328366;
const KRB5KDC_ERR_KEY_EXP: i32 = -1765328361;

/// Owns a krb5 context and frees everything on drop.
struct Session {
    ctx: Ctx,
    princs: Vec<Princ>,
    keytab: Keytab,
    creds: Option<Box<[u64; 64]>>,
}

impl Session {
    fn new() -> Result<Session, String> {
        let mut ctx: Ctx = std::ptr::null_mut();
        // SAFETY: out-parameter.
        let rc = unsafe { krb5_init_context(&mut ctx) };
        if rc != 0 {
            return Err(format!("krb5_init_context failed ({rc})"));
        }
        Ok(Session {
            ctx,
            princs: Vec::new(),
            keytab: std::ptr::null_mut(),
            creds: None,
        })
    }

    fn err(&self, code: i32) -> String {
        // SAFETY: the message is freed with the matching call.
        unsafe {
            let m = krb5_get_error_message(self.ctx, code);
            if m.is_null() {
                return format!("krb5 error {code}");
            }
            let s = CStr::from_ptr(m).to_string_lossy().into_owned();
            krb5_free_error_message(self.ctx, m);
            s
        }
    }

    fn principal(&mut self, name: &str) -> Result<Princ, i32> {
        let n = CString::new(name).map_err(|_| -1)?;
        let mut p: Princ = std::ptr::null_mut();
        // SAFETY: valid context and C string.
        let rc = unsafe { krb5_parse_name(self.ctx, n.as_ptr(), &mut p) };
        if rc != 0 {
            return Err(rc);
        }
        self.princs.push(p);
        Ok(p)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // SAFETY: each pointer was produced by this context.
        unsafe {
            if let Some(c) = self.creds.as_mut() {
                krb5_free_cred_contents(self.ctx, c.as_mut_ptr().cast());
            }
            for p in &self.princs {
                krb5_free_principal(self.ctx, *p);
            }
            if !self.keytab.is_null() {
                krb5_kt_close(self.ctx, self.keytab);
            }
            krb5_free_context(self.ctx);
        }
    }
}

pub struct Krb5 {
    keytab: Option<String>,
    verify_service: String,
    pool: Arc<tokio::sync::Semaphore>,
}

impl Krb5 {
    pub fn new(c: &SaslauthdConf, pool: Arc<tokio::sync::Semaphore>) -> Krb5 {
        let keytab = Some(c.get("krb5_keytab").to_string()).filter(|s| !s.is_empty());
        Krb5 {
            keytab,
            verify_service: c.get("krb5_verify_principal").to_string(),
            pool,
        }
    }
}

fn unparse(s: &Session, p: Princ) -> Option<String> {
    let mut out: *mut c_char = std::ptr::null_mut();
    // SAFETY: out-parameter freed below with the matching call.
    let rc = unsafe { krb5_unparse_name(s.ctx, p, &mut out) };
    if rc != 0 || out.is_null() {
        return None;
    }
    // SAFETY: NUL-terminated string from libkrb5.
    let name = unsafe { CStr::from_ptr(out) }.to_string_lossy().into_owned();
    unsafe { krb5_free_unparsed_name(s.ctx, out) };
    Some(name)
}

fn realm_of(principal: &str) -> &str {
    principal.rsplit_once('@').map_or("", |(_, r)| r)
}

/// The blocking check; (verdict, log notes).
///
/// When the user and this host share a realm, the initial ticket is asked
/// for the verifying service itself (`host/<fqdn>`) rather than for
/// `krbtgt`: krb5_verify_init_creds then checks it with the keytab
/// directly, sparing the TGS round trip saslauthd makes; the guarantee is
/// the same — only a KDC that knows our host key can issue it.
fn check_blocking(login: &str, realm: &str, password: &str, keytab: Option<&str>, service: &str) -> (Verdict, Notes) {
    // saslauthd 2.1.28's texts.
    let fail = |why: String| (Verdict::No("saslauthd internal error".into()), vec![format!("kerberos5: {why}")]);
    let init_failed = |why: Option<String>| {
        (
            Verdict::No("krb5_get_init_creds_password failed".into()),
            why.into_iter().map(|w| format!("kerberos5: {w}")).collect::<Vec<_>>(),
        )
    };
    let mut s = match Session::new() {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let name = if !login.contains('@') && !realm.is_empty() {
        format!("{login}@{realm}")
    } else {
        login.to_string()
    };
    let client = match s.principal(&name) {
        Ok(p) => p,
        Err(rc) => return fail(format!("krb5_parse_name({name}): {}", s.err(rc))),
    };
    let Ok(pw) = CString::new(password) else {
        return (Verdict::No(String::new()), vec![]);
    };
    let mut server: Princ = std::ptr::null_mut();
    let Ok(sname) = CString::new(service) else {
        return fail("bad krb5_verify_principal".into());
    };
    // SAFETY: NULL host = this host's name; the principal is freed by Session.
    let rc = unsafe { krb5_sname_to_principal(s.ctx, std::ptr::null(), sname.as_ptr(), KRB5_NT_SRV_HST, &mut server) };
    if rc != 0 {
        return fail(format!("krb5_sname_to_principal: {}", s.err(rc)));
    }
    s.princs.push(server);
    let server_name = unparse(&s, server);
    let client_name = unparse(&s, client).unwrap_or_default();
    let direct = server_name
        .as_deref()
        .filter(|sn| realm_of(sn) == realm_of(&client_name))
        .and_then(|sn| CString::new(sn).ok());
    let mut creds: Box<[u64; 64]> = Box::new([0u64; 64]);
    let in_tkt = direct.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: creds is a zeroed buffer larger than krb5_creds.
    let rc = unsafe {
        krb5_get_init_creds_password(
            s.ctx,
            creds.as_mut_ptr().cast(),
            client,
            pw.as_ptr(),
            std::ptr::null(),
            std::ptr::null_mut(),
            0,
            in_tkt,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        let bad_password = matches!(
            rc,
            KRB5KDC_ERR_C_PRINCIPAL_UNKNOWN
                | KRB5KDC_ERR_PREAUTH_FAILED
                | KRB5KRB_AP_ERR_BAD_INTEGRITY
                | KRB5_PREAUTH_FAILED
                | KRB5KDC_ERR_CLIENT_REVOKED
                | KRB5KDC_ERR_KEY_EXP
        );
        let msg = s.err(rc);
        return init_failed(if bad_password {
            None
        } else {
            Some(format!("krb5_get_init_creds_password: {msg}"))
        });
    }
    s.creds = Some(creds);
    // Verify the ticket with a key we hold: defeats a spoofed KDC.
    let rc = match keytab {
        Some(k) => {
            let Ok(kn) = CString::new(k) else {
                return fail("bad keytab name".into());
            };
            // SAFETY: out-parameter; the keytab is closed by Session.
            unsafe { krb5_kt_resolve(s.ctx, kn.as_ptr(), &mut s.keytab) }
        }
        // SAFETY: as above.
        None => unsafe { krb5_kt_default(s.ctx, &mut s.keytab) },
    };
    if rc != 0 {
        return fail(format!("keytab: {}", s.err(rc)));
    }
    let mut opt = VerifyOpt {
        flags: VERIFY_AP_REQ_NOFAIL,
        ap_req_nofail: 1,
    };
    let creds_ptr = s.creds.as_mut().map(|c| c.as_mut_ptr().cast()).unwrap_or(std::ptr::null_mut());
    // SAFETY: all handles belong to this context.
    let rc = unsafe { krb5_verify_init_creds(s.ctx, creds_ptr, server, s.keytab, std::ptr::null_mut(), &mut opt) };
    if rc != 0 {
        let why = format!("kerberos5: ticket for {name} could not be verified with the keytab: {}", s.err(rc));
        return (Verdict::No("krb5_verify_init_creds failed".into()), vec![why]);
    }
    (Verdict::Ok, vec![])
}

impl Mechanism for Krb5 {
    fn name(&self) -> &'static str {
        "kerberos5"
    }

    fn check<'a>(&'a self, c: &'a Credentials) -> BoxFut<'a, (Verdict, Notes)> {
        Box::pin(async move {
            let (login, realm, pw) = (c.login.clone(), c.realm.clone(), c.password.expose().clone());
            let (kt, svc) = (self.keytab.clone(), self.verify_service.clone());
            super::blocking(&self.pool, move || check_blocking(&login, &realm, &pw, kt.as_deref(), &svc))
                .await
                .unwrap_or_else(|| (Verdict::No(String::new()), vec!["kerberos5: worker failed".into()]))
        })
    }
}
