//! `pam`: the PAM service named by the request's service field (`imap`,
//! `pop`, `smtp`, …, i.e. `/etc/pam.d/<service>`), authenticate then
//! account management, as saslauthd's auth_pam: `OK`, `NO PAM auth error`,
//! `NO PAM acct error`, `NO PAM start error`.  Each transaction runs on the
//! bounded blocking pool, so a slow module never stalls the daemon.

use super::{BoxFut, Credentials, Mechanism, Notes, Verdict};
use nonstick::{AuthnFlags, ConversationAdapter, Result as PamResult, Transaction, TransactionBuilder};
use std::ffi::{OsStr, OsString};
use std::sync::Arc;

struct Answers {
    user: String,
    password: String,
}

impl ConversationAdapter for Answers {
    fn prompt(&self, _request: impl AsRef<OsStr>) -> PamResult<OsString> {
        Ok(OsString::from(&self.user))
    }
    fn masked_prompt(&self, _request: impl AsRef<OsStr>) -> PamResult<OsString> {
        Ok(OsString::from(&self.password))
    }
    fn error_msg(&self, _message: impl AsRef<OsStr>) {}
    fn info_msg(&self, _message: impl AsRef<OsStr>) {}
}

fn check_blocking(service: &str, user: &str, password: &str) -> (Verdict, Notes) {
    // An empty service would select no configuration: use "other".
    let service = if service.is_empty() { "other" } else { service };
    let conv = Answers {
        user: user.to_string(),
        password: password.to_string(),
    };
    let mut txn = match TransactionBuilder::new_with_service(service)
        .username(user)
        .build(conv.into_conversation())
    {
        Ok(t) => t,
        Err(e) => return (Verdict::No("PAM start error".into()), vec![format!("pam_start({service}): {e}")]),
    };
    match txn.authenticate(AuthnFlags::SILENT) {
        Ok(()) => {}
        // pam_krb5 with no KDC, pam_sss offline, pam_ldap with no server.
        Err(nonstick::ErrorCode::AuthInfoUnavailable) => {
            return (
                Verdict::unavailable("PAM auth error"),
                vec![format!("pam({service}): authentication information unavailable")],
            )
        }
        Err(_) => return (Verdict::No("PAM auth error".into()), vec![]),
    }
    if txn.account_management(AuthnFlags::SILENT).is_err() {
        return (Verdict::No("PAM acct error".into()), vec![]);
    }
    (Verdict::Ok, vec![])
}

pub struct Pam {
    pub pool: Arc<tokio::sync::Semaphore>,
}

impl Mechanism for Pam {
    fn name(&self) -> &'static str {
        "pam"
    }

    fn check<'a>(&'a self, c: &'a Credentials) -> BoxFut<'a, (Verdict, Notes)> {
        Box::pin(async move {
            let (svc, user, pw) = (c.service.clone(), c.login.clone(), c.password.expose().clone());
            super::blocking(&self.pool, move || check_blocking(&svc, &user, &pw))
                .await
                .unwrap_or_else(|| (Verdict::No("PAM auth error".into()), vec!["pam: worker failed".into()]))
        })
    }
}
