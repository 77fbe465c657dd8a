//! The commands that describe the server rather than move mail: the
//! EHLO reply (with the keywords `smtpd_discard_ehlo_keywords` and its
//! address maps leave out), VRFY (checked by the recipient restrictions),
//! and `smtpd_command_filter`'s rewriting of command lines.

use super::*;

impl Session<'_> {
    /// `smtpd_command_filter`: the table's answer for the line (leading
    /// white space removed) replaces it.
    pub(super) fn filter_command(&self, line: &[u8]) -> Option<Vec<u8>> {
        let spec = &self.d.conf.command_filter;
        if spec.is_empty() {
            return None;
        }
        let text = String::from_utf8_lossy(line);
        let text = text.trim_start();
        let t = self.d.tables.get(spec).ok()?;
        let new = t.lookup(text).ok()??;
        if new != text {
            let cut = |s: &str| s.chars().take(100).collect::<String>();
            self.d.log.info(&format!(
                "{}: replacing command \"{}\" with \"{}\"",
                self.client(),
                cut(text),
                cut(&new)
            ));
        }
        Some(new.into_bytes())
    }

    pub(super) async fn vrfy(&mut self, arg: String) -> R {
        if self.d.conf.disable_vrfy {
            self.count("vrfy", false);
            return self.error("502 5.5.1 VRFY command is disabled").await;
        }
        let a = arg.trim().trim_start_matches('<').trim_end_matches('>').to_string();
        if a.is_empty() {
            self.count("vrfy", false);
            let r = if self.d.conf.smtputf8_enable {
                "501 5.5.4 Syntax: VRFY address [SMTPUTF8]"
            } else {
                "501 5.5.4 Syntax: VRFY address"
            };
            return self.error(r).await;
        }
        // The recipient restrictions, as for RCPT.
        let addr = crate::daemon::qmgr::resolve::canonical(&self.d.hub.conf, &a);
        self.dns_lookups(Some(&addr)).await;
        self.policy_lookups(Eval::Rcpt, "VRFY", Some(&addr)).await;
        let (verdict, warnings) = {
            let checker = self.d.checker();
            let v = checker.rcpt(&self.facts(Some(&addr)));
            (v, checker.warnings.take())
        };
        for (kind, w) in warnings {
            self.log_whatsup(kind, "VRFY", &w, Some(&a));
        }
        if let Verdict::Reject(mut r) = verdict {
            if addr != a {
                r = r.replacen(&format!("<{addr}>"), &format!("<{a}>"), 1);
            }
            self.count("vrfy", false);
            self.log_reject("VRFY", &r, Some(&a));
            return self.error(&r).await;
        }
        self.count("vrfy", true);
        self.reply(&format!("252 2.0.0 {a}")).await?;
        Ok(Flow::Go)
    }

    /// The EHLO keywords to leave out: the address maps' answer for the
    /// client, else `smtpd_discard_ehlo_keywords`; logged as Postfix does
    /// (the known keywords, unless `silent-discard` is among them).
    pub(super) fn discarded_keywords(&self) -> Vec<String> {
        let c = &self.d.conf;
        let mapped = match self.d.discard_maps.lookup(&self.ip.to_string()) {
            Ok(Some(v)) => Some(
                crate::config::postfix::list::split_list(&v)
                    .into_iter()
                    .map(str::to_ascii_uppercase)
                    .collect(),
            ),
            Ok(None) => None,
            Err(e) => {
                self.d.log.warning(&format!(
                    "smtpd_discard_ehlo_keyword_address_maps: lookup error for {}: {e}",
                    self.ip
                ));
                None
            }
        };
        let words: Vec<String> = mapped.unwrap_or_else(|| c.discard_ehlo_keywords.clone());
        if let Some(names) = smtp::discard_log_names(&words) {
            self.d.log.info(&format!("discarding EHLO keywords: {names}"));
        }
        words
    }

    pub(super) async fn ehlo(&mut self) -> std::io::Result<()> {
        let c = &self.d.conf;
        let mut kw: Vec<String> = vec!["PIPELINING".into()];
        kw.push(if c.message_size_limit > 0 {
            format!("SIZE {}", c.message_size_limit)
        } else {
            "SIZE".into()
        });
        if !c.disable_vrfy {
            kw.push("VRFY".into());
        }
        kw.push("ETRN".into());
        if self.d.tls.is_some() && !self.tls {
            kw.push("STARTTLS".into());
        }
        if c.sasl_auth_enable && (self.tls || !c.tls_auth_only) {
            let mechs = self.mechanisms();
            if !mechs.is_empty() {
                kw.push(format!("AUTH {}", mechs.join(" ")));
                if c.broken_sasl_auth_clients {
                    kw.push(format!("AUTH={}", mechs.join(" ")));
                }
            }
        }
        if crate::daemon::hub::conf::match_networks(&c.xclient_hosts, self.ip) {
            kw.push("XCLIENT NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN DESTADDR DESTPORT".into());
        }
        if crate::daemon::hub::conf::match_networks(&c.xforward_hosts, self.ip) {
            kw.push("XFORWARD NAME ADDR PROTO HELO SOURCE PORT IDENT".into());
        }
        kw.extend(["ENHANCEDSTATUSCODES", "8BITMIME", "DSN"].map(String::from));
        if c.smtputf8_enable {
            kw.push("SMTPUTF8".into());
        }
        kw.push("CHUNKING".into());
        self.discard_kw = self.discarded_keywords();
        kw.retain(|k| !self.discard_kw.contains(&k.split([' ', '=']).next().unwrap_or("").to_string()));
        if self.milter_reject.as_deref().is_some_and(|r| r.starts_with('5')) {
            kw.retain(|k| k == "ENHANCEDSTATUSCODES");
        }
        let mut lines = vec![self.d.hub.conf.myhostname.clone()];
        lines.extend(kw);
        self.out.extend_from_slice(smtp::reply(250, &lines.join("\n")).as_bytes());
        Ok(())
    }
}
