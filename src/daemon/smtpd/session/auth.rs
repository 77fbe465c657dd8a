//! AUTH: PLAIN and LOGIN checked through saslauthd, GSSAPI (with the
//! krb5 feature), and the mechanisms a session offers
//! (`smtpd_sasl_security_options`, `smtpd_sasl_mechanism_filter`).

use super::*;

impl Session<'_> {
    async fn auth_line(&mut self, prompt: &str) -> std::io::Result<Option<String>> {
        self.reply(prompt).await?;
        match self.line(self.d.conf.sasl_response_limit).await? {
            Some(l) if !self.discard => Ok(Some(String::from_utf8_lossy(&l).into_owned())),
            Some(_) => {
                self.discard = false;
                Ok(Some("\u{1}too long".into()))
            }
            None => Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "lost connection")),
        }
    }

    /// The AUTH mechanisms this session offers: those with the security
    /// properties `smtpd_sasl_security_options` asks for, or
    /// `smtpd_sasl_tls_security_options` under TLS.
    pub(super) fn mechanisms(&self) -> Vec<&'static str> {
        let c = &self.d.conf;
        let sec = if self.tls { &c.sasl_tls_security } else { &c.sasl_security };
        let all: &[&'static str] = if self.d.gssapi {
            &["GSSAPI", "PLAIN", "LOGIN"]
        } else {
            &["PLAIN", "LOGIN"]
        };
        // smtpd_sasl_mechanism_filter: the first entry that names the
        // mechanism decides (a `!` one refuses it); unnamed ones are not
        // offered.
        let filter = &c.sasl_mechanism_filter;
        let passes = |m: &str| filter.is_empty() || filter.iter().find(|(_, n)| n == "*" || n == m).is_some_and(|(neg, _)| !neg);
        all.iter().copied().filter(|m| sec.allows(m) && passes(m)).collect()
    }

    pub(super) async fn auth(&mut self, mech: String, ir: Option<String>) -> R {
        let c = &self.d.conf;
        if !c.sasl_auth_enable || (c.tls_auth_only && !self.tls) {
            self.count("auth", false);
            return self.error("503 5.5.1 Error: authentication not enabled").await;
        }
        if self.sasl.is_some() {
            self.count("auth", false);
            return self.error("503 5.5.1 Error: already authenticated").await;
        }
        if self.sender.is_some() {
            self.count("auth", false);
            return self.error("503 5.5.1 Error: MAIL transaction in progress").await;
        }
        if !self.mechanisms().contains(&mech.as_str()) {
            self.count("auth", false);
            return self
                .error("535 5.7.8 Error: authentication failed: Invalid authentication mechanism")
                .await;
        }
        #[cfg(feature = "krb5")]
        if mech == "GSSAPI" && self.d.gssapi {
            return self.auth_gssapi(ir).await;
        }
        let decode = |s: &str| crate::util::base64_decode(s.trim());
        let creds: Result<(String, Vec<u8>), &'static str> = match mech.as_str() {
            "PLAIN" => {
                let resp = match ir {
                    Some(r) if r == "=" => String::new(),
                    Some(r) => r,
                    None => match self.auth_line("334 ").await? {
                        Some(r) => r,
                        None => String::new(),
                    },
                };
                if resp.trim() == "*" {
                    Err("501 5.7.0 Authentication aborted")
                } else if resp.starts_with('\u{1}') {
                    Err("500 5.5.6 SASL response limit exceeded")
                } else {
                    match decode(&resp) {
                        None => Err("501 5.5.2 Invalid base64 data in initial response"),
                        Some(raw) => {
                            let parts: Vec<&[u8]> = raw.split(|&b| b == 0).collect();
                            if parts.len() == 3 {
                                Ok((String::from_utf8_lossy(parts[1]).into_owned(), parts[2].to_vec()))
                            } else {
                                Err("535 5.7.8 Error: authentication failed: bad protocol / cancel")
                            }
                        }
                    }
                }
            }
            "LOGIN" => {
                let u = match ir {
                    Some(r) => Some(r),
                    None => self.auth_line("334 VXNlcm5hbWU6").await?,
                };
                let u = u.unwrap_or_default();
                if u.trim() == "*" {
                    Err("501 5.7.0 Authentication aborted")
                } else if let Some(user) = decode(&u) {
                    let p = self.auth_line("334 UGFzc3dvcmQ6").await?.unwrap_or_default();
                    if p.trim() == "*" {
                        Err("501 5.7.0 Authentication aborted")
                    } else {
                        match decode(&p) {
                            Some(pw) => Ok((String::from_utf8_lossy(&user).into_owned(), pw)),
                            None => Err("501 5.5.2 Invalid base64 data in continued response"),
                        }
                    }
                } else {
                    Err("501 5.5.2 Invalid base64 data in initial response")
                }
            }
            _ => Err("535 5.7.8 Error: authentication failed: Invalid authentication mechanism"),
        };
        let (user, pw) = match creds {
            Ok(c) => c,
            Err(r) => {
                self.count("auth", false);
                return self.error(r).await;
            }
        };
        let path = self.d.saslauthd_path.clone();
        let (service, realm) = (&self.d.conf.sasl_service, &self.d.conf.sasl_local_domain);
        match crate::daemon::saslauthd_client::check(&path, &user, &Secret::new(pw), service, realm).await {
            Ok(true) => {
                self.sasl = Some((mech, user));
                self.count("auth", true);
                self.reply("235 2.7.0 Authentication successful").await?;
                Ok(Flow::Go)
            }
            Ok(false) => {
                self.d.log.warning(&format!(
                    "{}: SASL {mech} authentication failed: authentication failure, sasl_username={user}",
                    self.client()
                ));
                self.count("auth", false);
                self.error("535 5.7.8 Error: authentication failed: authentication failure").await
            }
            Err(e) => {
                self.d
                    .log
                    .warning(&format!("{}: SASL {mech} authentication failed: {e}", self.client()));
                self.count("auth", false);
                self.error("454 4.7.0 Temporary authentication failure: generic failure").await
            }
        }
    }

    /// AUTH GSSAPI (RFC 4752): `334` challenges until the exchange ends.
    #[cfg(feature = "krb5")]
    async fn auth_gssapi(&mut self, ir: Option<String>) -> R {
        use crate::auth::gssapi::{Server, Step};
        let mut server = Server::new(&self.d.conf.sasl_service);
        let mut resp = match ir {
            Some(r) if r == "=" => String::new(),
            Some(r) => r,
            None => self.auth_line("334 ").await?.unwrap_or_default(),
        };
        let failed = loop {
            if resp.trim() == "*" {
                self.count("auth", false);
                return self.error("501 5.7.0 Authentication aborted").await;
            }
            if resp.starts_with('\u{1}') {
                self.count("auth", false);
                return self.error("500 5.5.6 SASL response limit exceeded").await;
            }
            let Some(token) = crate::util::base64_decode(resp.trim()) else {
                self.count("auth", false);
                return self.error("501 5.5.2 Invalid base64 data in continued response").await;
            };
            match server.step(&token) {
                Ok(Step::Send(c)) => {
                    resp = self
                        .auth_line(&format!("334 {}", crate::util::base64_encode(&c)))
                        .await?
                        .unwrap_or_default();
                }
                Ok(Step::Done(a)) => {
                    let realm = crate::auth::gssapi::default_realm();
                    match crate::auth::gssapi::principal_to_user(&a.principal, realm.as_deref(), "") {
                        Ok(user) if a.authzid.is_empty() || a.authzid == user => {
                            self.sasl = Some(("GSSAPI".into(), user));
                            self.count("auth", true);
                            self.reply("235 2.7.0 Authentication successful").await?;
                            return Ok(Flow::Go);
                        }
                        Ok(user) => break format!("authorization failure, sasl_username={user}"),
                        Err(e) => break e,
                    }
                }
                Err(e) => break format!("generic failure: {e}"),
            }
        };
        self.d
            .log
            .warning(&format!("{}: SASL GSSAPI authentication failed: {failed}", self.client()));
        self.count("auth", false);
        self.error("535 5.7.8 Error: authentication failed: generic failure").await
    }
}
