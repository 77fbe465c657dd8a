//! Typed views of main.cf for the hub: one struct per component, built
//! once from the resolved parameters (a master.cf service's `-o` overrides
//! included), so that no session parses a parameter again.  Defaults come
//! from the registry through `Params`; nothing here repeats one.

use crate::config::postfix::list::split_list;
use crate::config::postfix::Params;
use crate::config::ConfigError;
use std::time::Duration;

pub use crate::tables::cidr::{canonical_ip, match_networks, Cidr};

/// A domain list (`mydestination`, `relay_domains`): names, lower case.
/// `parent` = the parameter is in `parent_domain_matches_subdomains`.
#[derive(Debug, Clone, Default)]
pub struct DomainList {
    pub names: Vec<String>,
    pub parent: bool,
}

impl DomainList {
    pub fn matches(&self, domain: &str) -> bool {
        let d = domain.trim_end_matches('.').to_ascii_lowercase();
        self.names.iter().any(|n| {
            if let Some(sub) = n.strip_prefix('.') {
                d.ends_with(&format!(".{sub}"))
            } else {
                d == *n || (self.parent && d.ends_with(&format!(".{n}")))
            }
        })
    }
}

fn bad(name: &str, v: &str) -> ConfigError {
    ConfigError::Syntax(format!("bad {name} value: {v}"))
}

/// The hub-wide settings (trivial-rewrite, qmgr, delivery agents).
#[derive(Debug, Clone)]
pub struct HubConf {
    pub myhostname: String,
    pub mydomain: String,
    pub myorigin: String,
    pub mail_name: String,
    pub mydestination: DomainList,
    pub relay_domains: DomainList,
    pub virtual_mailbox_domains: DomainList,
    pub virtual_alias_domains: DomainList,
    pub mynetworks: Vec<Cidr>,
    pub recipient_delimiter: String,
    pub queue_directory: String,
    pub hash_queue_depth: usize,
    pub minimal_backoff: Duration,
    pub maximal_backoff: Duration,
    pub queue_run_delay: Duration,
    pub maximal_queue_lifetime: Duration,
    pub bounce_queue_lifetime: Duration,
    pub local_transport: String,
    /// `alias_maps` specs: these tables are aliases(5) sources wherever
    /// they appear (`local_recipient_maps = … $alias_maps`).
    pub alias_maps: Vec<String>,
    pub mailbox_transport: String,
    pub virtual_transport: String,
    pub relay_transport: String,
    pub default_transport: String,
    pub relayhost: String,
    pub soft_bounce: bool,
    pub empty_address_recipient: String,
    pub double_bounce_sender: String,
    pub bounce_notice_recipient: String,
    pub lmtp_lhlo_name: String,
    pub smtp_helo_name: String,
    pub default_concurrency: usize,
    pub default_rcpt_limit: usize,
    pub parent_domain_matches: Vec<String>,
}

impl HubConf {
    pub fn load(p: &Params) -> Result<HubConf, ConfigError> {
        let s = |n: &str| p.get(n).unwrap_or_default().trim().to_string();
        let parents: Vec<String> = split_list(&s("parent_domain_matches_subdomains"))
            .into_iter()
            .map(str::to_string)
            .collect();
        let dl = |n: &str| -> DomainList {
            DomainList {
                names: split_list(&s(n))
                    .into_iter()
                    .filter(|t| !t.contains(':') && !t.starts_with('/'))
                    .map(|t| t.to_ascii_lowercase())
                    .collect(),
                parent: parents.iter().any(|x| x == n),
            }
        };
        let mut mynetworks = Vec::new();
        for t in split_list(&s("mynetworks")) {
            match Cidr::parse(t) {
                Some(c) => mynetworks.push(c),
                None if t.contains(':') && !t.starts_with('[') => {} // a table: a later issue
                None => return Err(bad("mynetworks", t)),
            }
        }
        let lim = |n: &str| -> Result<usize, ConfigError> { Ok(p.get_int(n, 1, 0)? as usize) };
        Ok(HubConf {
            myhostname: s("myhostname"),
            mydomain: s("mydomain"),
            myorigin: s("myorigin"),
            mail_name: s("mail_name"),
            mydestination: dl("mydestination"),
            relay_domains: dl("relay_domains"),
            virtual_mailbox_domains: dl("virtual_mailbox_domains"),
            virtual_alias_domains: dl("virtual_alias_domains"),
            mynetworks,
            recipient_delimiter: s("recipient_delimiter"),
            queue_directory: s("queue_directory"),
            hash_queue_depth: p.get_int("hash_queue_depth", 1, 0)? as usize,
            minimal_backoff: p.get_time("minimal_backoff_time")?,
            maximal_backoff: p.get_time("maximal_backoff_time")?,
            queue_run_delay: p.get_time("queue_run_delay")?,
            maximal_queue_lifetime: p.get_time("maximal_queue_lifetime")?,
            bounce_queue_lifetime: p.get_time("bounce_queue_lifetime")?,
            local_transport: s("local_transport"),
            alias_maps: split_list(&s("alias_maps")).into_iter().map(str::to_string).collect(),
            mailbox_transport: s("mailbox_transport"),
            virtual_transport: s("virtual_transport"),
            relay_transport: s("relay_transport"),
            default_transport: s("default_transport"),
            relayhost: s("relayhost"),
            soft_bounce: p.get_bool("soft_bounce")?,
            empty_address_recipient: s("empty_address_recipient"),
            double_bounce_sender: s("double_bounce_sender"),
            bounce_notice_recipient: s("2bounce_notice_recipient"),
            lmtp_lhlo_name: s("lmtp_lhlo_name"),
            smtp_helo_name: s("smtp_helo_name"),
            default_concurrency: lim("default_destination_concurrency_limit")?,
            default_rcpt_limit: lim("default_destination_recipient_limit")?,
            parent_domain_matches: parents,
        })
    }

    /// A domain this hub is the final destination for (any class but
    /// relay/default), for `reject_unauth_destination`.
    pub fn is_final(&self, domain: &str) -> bool {
        self.mydestination.matches(domain)
            || self.virtual_mailbox_domains.matches(domain)
            || self.virtual_alias_domains.matches(domain)
            || domain.eq_ignore_ascii_case("localhost")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BareNewline {
    /// Accept (stored as CRLF); only CRLF.CRLF ends DATA.
    Normalize,
    Reject,
}

/// One smtpd service's settings.
#[derive(Debug, Clone)]
pub struct SmtpdConf {
    pub service: String,
    pub banner: String,
    /// `smtpd_reject_footer`, unexpanded (its `$name`s are the session's).
    pub reject_footer: String,
    pub message_size_limit: usize,
    /// `queue_minfree`: bytes of free queue space below which mail waits.
    pub queue_minfree: u64,
    pub line_length_limit: usize,
    pub recipient_limit: usize,
    /// `smtpd_recipient_overshoot_limit`.
    pub recipient_overshoot_limit: usize,
    pub timeout: Duration,
    pub helo_required: bool,
    pub disable_vrfy: bool,
    pub smtputf8_enable: bool,
    /// `strict_rfc821_envelopes`: MAIL and RCPT addresses in brackets.
    pub strict_rfc821_envelopes: bool,
    pub delay_reject: bool,
    pub client_restrictions: Vec<String>,
    pub helo_restrictions: Vec<String>,
    pub sender_restrictions: Vec<String>,
    pub relay_restrictions: Vec<String>,
    pub recipient_restrictions: Vec<String>,
    /// `smtpd_restriction_classes`: each class's restriction list, by name.
    pub restriction_classes: std::collections::HashMap<String, Vec<String>>,
    /// `smtpd_sender_login_maps`: who owns which sender address.
    pub sender_login_maps: Vec<String>,
    pub data_restrictions: Vec<String>,
    /// `smtpd_end_of_data_restrictions`.
    pub end_of_data_restrictions: Vec<String>,
    /// `smtpd_policy_service_*`: the defaults of `check_policy_service`.
    pub policy: crate::daemon::smtpd::policy::Defaults,
    pub relay_before_recipient: bool,
    pub reject_unlisted_recipient: bool,
    /// `smtpd_reject_unlisted_sender`.
    pub reject_unlisted_sender: bool,
    /// `smtpd_null_access_lookup_key`: the null sender's access(5) key.
    pub null_access_lookup_key: String,
    pub local_recipient_maps: Vec<String>,
    pub virtual_mailbox_maps: Vec<String>,
    pub relay_recipient_maps: Vec<String>,
    pub unknown_local_recipient_reject_code: u16,
    pub relay_domains_reject_code: u16,
    pub access_map_reject_code: u16,
    pub access_map_defer_code: u16,
    /// `smtpd_milters` (with the `milter_*` parameters).
    pub milters: Option<std::sync::Arc<super::milter::MilterConf>>,
    /// `smtpd_forbidden_commands`.
    pub forbidden_commands: Vec<String>,
    /// `content_filter` (with the service's `-o` overrides).
    pub content_filter: String,
    /// `receive_override_options`.
    pub receive_override: ReceiveOverride,
    pub reject_code: u16,
    pub defer_code: u16,
    pub unknown_address_reject_code: u16,
    pub non_fqdn_reject_code: u16,
    /// `plaintext_reject_code` (`reject_plaintext_session`).
    pub plaintext_reject_code: u16,
    /// `multi_recipient_bounce_reject_code`.
    pub multi_recipient_bounce_reject_code: u16,
    /// DNS restrictions: `maps_rbl_reject_code`, `default_rbl_reply`
    /// (unexpanded template), `rbl_reply_maps`.
    pub maps_rbl_reject_code: u16,
    pub default_rbl_reply: String,
    pub rbl_reply_maps: Vec<String>,
    pub unknown_client_reject_code: u16,
    pub unknown_hostname_reject_code: u16,
    /// `unknown_address_tempfail_action` and
    /// `unknown_helo_hostname_tempfail_action` (`defer_if_permit` or `defer`).
    pub unknown_address_tempfail_action: String,
    pub unknown_helo_hostname_tempfail_action: String,
    pub reject_tempfail_action: String,
    pub show_user_unknown_table_name: bool,
    pub soft_bounce: bool,
    pub bare_newline: BareNewline,
    pub bare_newline_reject_code: u16,
    /// `smtpd_forbid_bare_newline_exclusions` (default `$mynetworks`).
    pub bare_newline_exclusions: Vec<Cidr>,
    pub client_connection_count_limit: usize,
    /// anvil(8) rates per `anvil_rate_time_unit`: connections, messages,
    /// recipients (0 = no limit).
    pub connection_rate_limit: u32,
    pub message_rate_limit: u32,
    pub recipient_rate_limit: u32,
    pub rate_time_unit: Duration,
    /// `smtpd_client_event_limit_exceptions` (default `$mynetworks`).
    pub event_limit_exceptions: Vec<Cidr>,
    pub peername_lookup: bool,
    /// `smtpd_client_port_logging`: `name[addr]:port` in log lines.
    pub client_port_logging: bool,
    /// `smtpd_upstream_proxy_protocol = haproxy`: each connection starts
    /// with a PROXY header naming the client, read within
    /// `smtpd_upstream_proxy_timeout`.
    pub upstream_proxy: Option<Duration>,
    pub hard_error_limit: usize,
    /// `smtpd_soft_error_limit` errors on, each reply waits
    /// `smtpd_error_sleep_time`.
    pub soft_error_limit: usize,
    pub error_sleep_time: Duration,
    /// `smtpd_junk_command_limit`.
    pub junk_command_limit: usize,
    /// `smtpd_noop_commands`: answered `250 2.0.0 Ok` and otherwise ignored.
    pub noop_commands: Vec<String>,
    pub sasl_auth_enable: bool,
    /// `broken_sasl_auth_clients`: AUTH also offered as `AUTH=` (for old
    /// Outlook clients).
    pub broken_sasl_auth_clients: bool,
    /// `smtpd_sasl_security_options` (before TLS) and
    /// `smtpd_sasl_tls_security_options` (under TLS).
    pub sasl_security: SaslSecurity,
    pub sasl_tls_security: SaslSecurity,
    /// `smtpd_sasl_service` and `smtpd_sasl_local_domain`: the service
    /// and realm saslauthd is asked for.
    pub sasl_service: String,
    pub sasl_local_domain: String,
    /// `smtpd_sasl_response_limit`: the longest AUTH response line.
    pub sasl_response_limit: usize,
    /// `smtpd_sasl_mechanism_filter`: (negated, name) entries, `*` for
    /// `static:all` or `static:rest`; empty offers every mechanism.
    pub sasl_mechanism_filter: Vec<(bool, String)>,
    /// `smtpd_starttls_timeout`: the TLS handshake's time limit.
    pub starttls_timeout: Duration,
    pub tls_auth_only: bool,
    /// `smtpd_tls_security_level = encrypt` (or the older
    /// `smtpd_enforce_tls`): MAIL needs TLS first, AUTH only under TLS.
    pub enforce_tls: bool,
    /// `smtpd_tls_wrappermode`: TLS from the first byte (smtps, 465).
    pub wrappermode: bool,
    /// `smtpd_tls_loglevel` (1: log each TLS session).
    pub tls_loglevel: i64,
    /// `smtpd_tls_received_header`.
    pub tls_received_header: bool,
    /// `smtpd_sasl_authenticated_header`: the login in the Received header.
    pub sasl_authenticated_header: bool,
    pub saslauthd_path: String,
    pub xclient_hosts: Vec<Cidr>,
    pub xforward_hosts: Vec<Cidr>,
    pub discard_ehlo_keywords: Vec<String>,
    /// `smtpd_discard_ehlo_keyword_address_maps` (by client address).
    pub discard_ehlo_maps: Vec<String>,
    /// `smtpd_command_filter`: a table that rewrites command lines.
    pub command_filter: String,
    /// `smtpd_reject_footer_maps` (by the complete reply).
    pub reject_footer_maps: Vec<String>,
    /// `smtpd_log_access_permit_actions`: names, `!name`, `type:table`.
    pub log_permit_actions: Vec<String>,
    /// `local_header_rewrite_clients`, as written.
    pub header_rewrite_clients: Vec<String>,
    pub remote_header_rewrite_domain: String,
    /// The addresses of `inet_interfaces` (`permit_inet_interfaces`).
    pub inet_addrs: Vec<std::net::IpAddr>,
    /// The local mail system's addresses for `permit_mx_backup`:
    /// `inet_interfaces` and `proxy_interfaces`.
    pub own_addrs: Vec<std::net::IpAddr>,
    /// `permit_mx_backup_networks`.
    pub mx_backup_networks: Vec<Cidr>,
}

/// The addresses `inet_interfaces` stands for: `all` is every
/// interface's, `loopback-only` 127.0.0.1 and ::1.
pub fn inet_addrs(v: &str) -> Vec<std::net::IpAddr> {
    let mut out = Vec::new();
    for i in split_list(v) {
        match i {
            "all" => out.extend(crate::config::postfix::host::HostFacts::probe().addrs.iter().map(|a| a.addr)),
            "loopback-only" | "localhost" => {
                out.push(std::net::Ipv4Addr::LOCALHOST.into());
                out.push(std::net::Ipv6Addr::LOCALHOST.into());
            }
            other => {
                if let Ok(ip) = other.trim_start_matches('[').trim_end_matches(']').parse() {
                    out.push(ip);
                }
            }
        }
    }
    out
}

/// Cyrus SASL security properties a mechanism must have
/// (`smtpd_sasl_security_options`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SaslSecurity {
    pub noplaintext: bool,
    pub noactive: bool,
    pub nodictionary: bool,
    pub mutual_auth: bool,
    pub forward_secrecy: bool,
}

impl SaslSecurity {
    pub fn parse(name: &str, v: &str) -> Result<SaslSecurity, ConfigError> {
        let mut o = SaslSecurity::default();
        for w in split_list(v) {
            match w.to_ascii_lowercase().as_str() {
                "noplaintext" => o.noplaintext = true,
                "noactive" => o.noactive = true,
                "nodictionary" => o.nodictionary = true,
                "mutual_auth" => o.mutual_auth = true,
                "forward_secrecy" => o.forward_secrecy = true,
                // We offer no anonymous mechanism.
                "noanonymous" => {}
                _ => return Err(bad(name, w)),
            }
        }
        Ok(o)
    }

    /// Whether a mechanism we offer has the properties asked for (Cyrus
    /// SASL's flags: PLAIN and LOGIN send the password; GSSAPI resists
    /// active attacks and authenticates both ends, without forward
    /// secrecy or dictionary-attack resistance).
    pub fn allows(&self, mech: &str) -> bool {
        match mech {
            "PLAIN" | "LOGIN" => !(self.noplaintext || self.noactive || self.nodictionary || self.mutual_auth || self.forward_secrecy),
            "GSSAPI" => !(self.nodictionary || self.forward_secrecy),
            _ => false,
        }
    }
}

/// `receive_override_options` (what a reinjection listener after a
/// content filter turns off).
#[derive(Clone, Copy, Debug, Default)]
pub struct ReceiveOverride {
    pub no_unknown_recipient_checks: bool,
    pub no_address_mappings: bool,
    pub no_header_body_checks: bool,
    pub no_milters: bool,
    pub no_header_address_rewriting: bool,
}

impl ReceiveOverride {
    pub fn parse(v: &str) -> Result<ReceiveOverride, ConfigError> {
        let mut o = ReceiveOverride::default();
        for w in split_list(v) {
            match w {
                "no_unknown_recipient_checks" => o.no_unknown_recipient_checks = true,
                "no_address_mappings" => o.no_address_mappings = true,
                "no_header_body_checks" => o.no_header_body_checks = true,
                "no_milters" => o.no_milters = true,
                "no_header_address_rewriting" => o.no_header_address_rewriting = true,
                // Postfix's own checks with nothing to turn off here.
                "no_8bit_mime_checks" | "no_smtputf8_checks" => {}
                _ => return Err(bad("receive_override_options", w)),
            }
        }
        Ok(o)
    }
}

fn restriction_list(v: &str) -> Vec<String> {
    split_list(v).into_iter().map(str::to_string).collect()
}

impl SmtpdConf {
    /// `p` carries the service's `-o` overrides.
    pub fn load(p: &Params, service: &str) -> Result<SmtpdConf, ConfigError> {
        let s = |n: &str| p.get(n).unwrap_or_default().trim().to_string();
        let code = |n: &str| -> Result<u16, ConfigError> { Ok(p.get_int(n, 200, 599)? as u16) };
        let hosts = |n: &str| -> Vec<Cidr> { split_list(&s(n)).into_iter().filter_map(Cidr::parse).collect() };
        let bare = match s("smtpd_forbid_bare_newline").as_str() {
            "reject" => BareNewline::Reject,
            "yes" | "no" | "normalize" | "" => BareNewline::Normalize,
            v => return Err(bad("smtpd_forbid_bare_newline", v)),
        };
        let size = p.get_int("message_size_limit", 0, 0)? as usize;
        let enforce_tls = match s("smtpd_tls_security_level").as_str() {
            "" => p.get_bool("smtpd_enforce_tls")?,
            "encrypt" => true,
            "may" | "none" => false,
            v => return Err(bad("smtpd_tls_security_level", v)),
        };
        let over = ReceiveOverride::parse(&s("receive_override_options"))?;
        let sasl_auth_enable = p.get_bool("smtpd_sasl_auth_enable")?;
        match s("smtpd_sasl_type").as_str() {
            "cyrus" => {}
            v if sasl_auth_enable => {
                return Err(ConfigError::Syntax(format!(
                    "smtpd_sasl_type = {v}: unsupported SASL server implementation (mumail speaks to saslauthd: cyrus)"
                )))
            }
            _ => {}
        }
        let mut mechanism_filter = Vec::new();
        for w in split_list(&s("smtpd_sasl_mechanism_filter")) {
            let (neg, name) = match w.strip_prefix('!') {
                Some(n) => (true, n),
                None => (false, w),
            };
            let name = match name.to_ascii_lowercase().as_str() {
                "static:all" | "static:rest" => "*".to_string(),
                n if n.contains(':') || n.starts_with('/') => return Err(bad("smtpd_sasl_mechanism_filter", w)),
                n => n.to_ascii_uppercase(),
            };
            mechanism_filter.push((neg, name));
        }
        let upstream_proxy = match s("smtpd_upstream_proxy_protocol").trim() {
            "" => None,
            "haproxy" => Some(p.get_time("smtpd_upstream_proxy_timeout")?),
            v => return Err(bad("smtpd_upstream_proxy_protocol", v)),
        };
        Ok(SmtpdConf {
            service: service.to_string(),
            banner: s("smtpd_banner"),
            reject_footer: p.raw("smtpd_reject_footer").unwrap_or_default().trim().to_string(),
            message_size_limit: size,
            queue_minfree: p.get_int("queue_minfree", 0, 0)? as u64,
            line_length_limit: p.get_int("line_length_limit", 80, 0)? as usize,
            recipient_limit: p.get_int("smtpd_recipient_limit", 1, 0)? as usize,
            recipient_overshoot_limit: p.get_int("smtpd_recipient_overshoot_limit", 0, 0)? as usize,
            timeout: p.get_time("smtpd_timeout")?,
            helo_required: p.get_bool("smtpd_helo_required")?,
            disable_vrfy: p.get_bool("disable_vrfy_command")?,
            smtputf8_enable: p.get_bool("smtputf8_enable")?,
            strict_rfc821_envelopes: p.get_bool("strict_rfc821_envelopes")?,
            delay_reject: p.get_bool("smtpd_delay_reject")?,
            client_restrictions: restriction_list(&s("smtpd_client_restrictions")),
            helo_restrictions: restriction_list(&s("smtpd_helo_restrictions")),
            sender_restrictions: restriction_list(&s("smtpd_sender_restrictions")),
            relay_restrictions: restriction_list(&s("smtpd_relay_restrictions")),
            recipient_restrictions: restriction_list(&s("smtpd_recipient_restrictions")),
            restriction_classes: split_list(&s("smtpd_restriction_classes"))
                .into_iter()
                .map(|c| (c.to_string(), restriction_list(&s(c))))
                .collect(),
            sender_login_maps: restriction_list(&s("smtpd_sender_login_maps")),
            data_restrictions: restriction_list(&s("smtpd_data_restrictions")),
            end_of_data_restrictions: restriction_list(&s("smtpd_end_of_data_restrictions")),
            policy: crate::daemon::smtpd::policy::Defaults::load(p)?,
            relay_before_recipient: p.get_bool("smtpd_relay_before_recipient_restrictions")?,
            reject_unlisted_recipient: p.get_bool("smtpd_reject_unlisted_recipient")? && !over.no_unknown_recipient_checks,
            reject_unlisted_sender: p.get_bool("smtpd_reject_unlisted_sender")? && !over.no_unknown_recipient_checks,
            null_access_lookup_key: s("smtpd_null_access_lookup_key"),
            local_recipient_maps: restriction_list(&s("local_recipient_maps")),
            virtual_mailbox_maps: restriction_list(&s("virtual_mailbox_maps")),
            relay_recipient_maps: restriction_list(&s("relay_recipient_maps")),
            unknown_local_recipient_reject_code: code("unknown_local_recipient_reject_code")?,
            relay_domains_reject_code: code("relay_domains_reject_code")?,
            access_map_reject_code: code("access_map_reject_code")?,
            access_map_defer_code: code("access_map_defer_code")?,
            milters: super::milter::MilterConf::load(p, "smtpd_milters")?.map(std::sync::Arc::new),
            forbidden_commands: restriction_list(&s("smtpd_forbidden_commands")),
            content_filter: s("content_filter"),
            receive_override: over,
            reject_code: code("reject_code")?,
            defer_code: code("defer_code")?,
            unknown_address_reject_code: code("unknown_address_reject_code")?,
            non_fqdn_reject_code: code("non_fqdn_reject_code")?,
            plaintext_reject_code: code("plaintext_reject_code")?,
            multi_recipient_bounce_reject_code: code("multi_recipient_bounce_reject_code")?,
            maps_rbl_reject_code: code("maps_rbl_reject_code")?,
            default_rbl_reply: p.raw("default_rbl_reply").unwrap_or_default(),
            rbl_reply_maps: restriction_list(&s("rbl_reply_maps")),
            unknown_client_reject_code: code("unknown_client_reject_code")?,
            unknown_hostname_reject_code: code("unknown_hostname_reject_code")?,
            unknown_address_tempfail_action: s("unknown_address_tempfail_action"),
            unknown_helo_hostname_tempfail_action: s("unknown_helo_hostname_tempfail_action"),
            reject_tempfail_action: s("reject_tempfail_action"),
            show_user_unknown_table_name: p.get_bool("show_user_unknown_table_name")?,
            soft_bounce: p.get_bool("soft_bounce")?,
            bare_newline: bare,
            bare_newline_reject_code: code("smtpd_forbid_bare_newline_reject_code").unwrap_or(550),
            client_connection_count_limit: p.get_int("smtpd_client_connection_count_limit", 0, 0)? as usize,
            connection_rate_limit: p.get_int("smtpd_client_connection_rate_limit", 0, 0)? as u32,
            message_rate_limit: p.get_int("smtpd_client_message_rate_limit", 0, 0)? as u32,
            recipient_rate_limit: p.get_int("smtpd_client_recipient_rate_limit", 0, 0)? as u32,
            rate_time_unit: p.get_time("anvil_rate_time_unit")?,
            event_limit_exceptions: hosts("smtpd_client_event_limit_exceptions"),
            bare_newline_exclusions: hosts("smtpd_forbid_bare_newline_exclusions"),
            peername_lookup: p.get_bool("smtpd_peername_lookup")?,
            client_port_logging: p.get_bool("smtpd_client_port_logging")?,
            upstream_proxy,
            hard_error_limit: p.get_int("smtpd_hard_error_limit", 1, 0)? as usize,
            soft_error_limit: p.get_int("smtpd_soft_error_limit", 1, 0)? as usize,
            error_sleep_time: p.get_time("smtpd_error_sleep_time")?,
            junk_command_limit: p.get_int("smtpd_junk_command_limit", 1, 0)? as usize,
            noop_commands: restriction_list(&s("smtpd_noop_commands")),
            sasl_auth_enable,
            broken_sasl_auth_clients: p.get_bool("broken_sasl_auth_clients")?,
            sasl_service: s("smtpd_sasl_service"),
            sasl_local_domain: s("smtpd_sasl_local_domain"),
            sasl_response_limit: p.get_int("smtpd_sasl_response_limit", 1, 0)? as usize,
            sasl_mechanism_filter: mechanism_filter,
            starttls_timeout: p.get_time("smtpd_starttls_timeout")?,
            sasl_security: SaslSecurity::parse("smtpd_sasl_security_options", &s("smtpd_sasl_security_options"))?,
            sasl_tls_security: SaslSecurity::parse("smtpd_sasl_tls_security_options", &s("smtpd_sasl_tls_security_options"))?,
            tls_auth_only: p.get_bool("smtpd_tls_auth_only")? || enforce_tls,
            enforce_tls,
            wrappermode: p.get_bool("smtpd_tls_wrappermode")?,
            tls_loglevel: p.get_int("smtpd_tls_loglevel", 0, 0)?,
            tls_received_header: p.get_bool("smtpd_tls_received_header")?,
            sasl_authenticated_header: p.get_bool("smtpd_sasl_authenticated_header")?,
            saslauthd_path: String::new(),
            xclient_hosts: hosts("smtpd_authorized_xclient_hosts"),
            xforward_hosts: hosts("smtpd_authorized_xforward_hosts"),
            discard_ehlo_keywords: split_list(&s("smtpd_discard_ehlo_keywords"))
                .into_iter()
                .map(|k| k.to_ascii_uppercase())
                .collect(),
            discard_ehlo_maps: restriction_list(&s("smtpd_discard_ehlo_keyword_address_maps")),
            command_filter: s("smtpd_command_filter"),
            reject_footer_maps: restriction_list(&s("smtpd_reject_footer_maps")),
            log_permit_actions: restriction_list(&s("smtpd_log_access_permit_actions")),
            header_rewrite_clients: restriction_list(&s("local_header_rewrite_clients")),
            remote_header_rewrite_domain: s("remote_header_rewrite_domain"),
            inet_addrs: inet_addrs(&s("inet_interfaces")),
            own_addrs: {
                let mut v = inet_addrs(&s("inet_interfaces"));
                v.extend(inet_addrs(&s("proxy_interfaces")));
                v
            },
            mx_backup_networks: hosts("permit_mx_backup_networks"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_and_domains() {
        let nets: Vec<Cidr> = ["!10.1.0.0/16", "10.0.0.0/8", "[::1]/128", "192.0.2.7"]
            .iter()
            .map(|t| Cidr::parse(t).unwrap())
            .collect();
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        assert!(match_networks(&nets, ip("10.2.3.4")));
        assert!(!match_networks(&nets, ip("10.1.3.4")));
        assert!(match_networks(&nets, ip("::1")));
        assert!(match_networks(&nets, ip("::ffff:192.0.2.7")));
        assert!(!match_networks(&nets, ip("192.0.2.8")));
        assert!(Cidr::parse("1.2.3.4/33").is_none());
        let d = DomainList {
            names: vec!["example.com".into(), ".sub.org".into()],
            parent: false,
        };
        assert!(d.matches("Example.COM") && !d.matches("a.example.com"));
        assert!(d.matches("x.sub.org") && !d.matches("sub.org"));
        let d = DomainList { parent: true, ..d };
        assert!(d.matches("a.example.com"));
    }

    #[test]
    fn seed_sample_config_loads() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/etc/postfix/seed");
        let p = Params::load(dir, true).unwrap();
        let hub = HubConf::load(&p).unwrap();
        assert_eq!(hub.mailbox_transport, "lmtp:inet:frontend.example.edu:2003");
        assert!(hub.mydestination.matches("example.edu"));
        crate::daemon::hub::cleanup::Rewriter::load(&p, &hub).unwrap();
        let mut seen = Vec::new();
        for svc in p.master.services.iter().filter(|s| s.kind == "inet") {
            let mut sp = p.clone();
            for (k, v) in svc.overrides() {
                sp.overrides.insert(k, v);
            }
            let c = SmtpdConf::load(&sp, &svc.name).unwrap();
            seen.push((svc.name.clone(), c.enforce_tls, c.wrappermode, c.tls_auth_only, c.sasl_auth_enable));
        }
        assert_eq!(
            seen,
            vec![
                ("smtp".to_string(), false, false, false, false),
                ("submission".to_string(), true, false, true, true),
                ("smtps".to_string(), false, true, false, true),
            ]
        );
    }
}
