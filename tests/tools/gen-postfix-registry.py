#!/usr/bin/env python3
"""Regenerate src/config/postfix/params.tsv from a real Postfix's `postconf -d`.

Facts only (parameter names and default values) are taken from the installed
Postfix; the status column comes from mumail's own decisions (SUPPORTED below).
Run on a Debian machine with the `postfix` package installed:
    python3 tests/tools/gen-postfix-registry.py > src/config/postfix/params.tsv
"""
import os, re, subprocess, tempfile

# Defaults that depend on the host, computed at run time by mumail.
HOST = {"myhostname", "mydomain", "mynetworks", "process_id"}
# Defaults fixed when Postfix is built; mumail uses the RHEL build's values.
BUILD_RHEL = {
    "alias_maps": "hash:/etc/aliases",
    "daemon_directory": "/usr/libexec/postfix",
    "html_directory": "no",
    "mailq_path": "/usr/bin/mailq.postfix",
    "newaliases_path": "/usr/bin/newaliases.postfix",
    "sendmail_path": "/usr/sbin/sendmail.postfix",
    "readme_directory": "/usr/share/doc/postfix/README_FILES",
    "sample_directory": "/usr/share/doc/postfix/samples",
    "shlib_directory": "/usr/lib64/postfix",
    "meta_directory": "/etc/postfix",
    "manpage_directory": "/usr/share/man",
}
# Parameters the hub implements (or will, per the open issues); others are
# accepted and ignored with one warning by the daemons that read main.cf.
SUPPORTED_PREFIXES = ("smtpd_", "lmtp_", "smtp_", "queue_", "qmgr_", "default_", "bounce_",
                      "maximal_", "minimal_", "delay_", "virtual_", "relay_", "transport_",
                      "local_", "alias_", "recipient_", "sender_", "mydestination", "my",
                      "inet_", "message_size", "line_length", "header_size", "hopcount",
                      "syslog_", "maillog_", "mail_", "compatibility", "config_", "command_",
                      "daemon_", "data_", "unknown_", "reject_", "access_", "soft_bounce",
                      "append_", "tls_", "broken_sasl", "smtputf8", "masquerade", "canonical",
                      "show_user", "empty_address", "parent_domain", "propagate", "process_",
                      "ipc_", "max_", "in_flow", "debug_peer", "notify_classes", "double_bounce",
                      "error_notice", "2bounce", "setgid_group", "mailbox_", "fallback_",
                      "internal_mail", "enable_long_queue_ids", "strict_", "allow_",
                      "disable_vrfy", "anvil_", "stress", "postscreen_")
# (postscreen_*: daemon::smtpd::postscreen; the cache is in memory.)
# Supported outside those prefixes.
SUPPORTED_NAMES = {"non_smtpd_milters", "hopcount_limit", "header_size_limit", "milter_command_timeout", "milter_connect_macros",
                   "milter_connect_timeout", "milter_content_timeout", "milter_data_macros",
                   "milter_default_action", "milter_end_of_data_macros", "milter_end_of_header_macros",
                   "milter_helo_macros", "milter_macro_daemon_name", "milter_macro_v",
                   "milter_mail_macros", "milter_rcpt_macros", "always_add_missing_headers", "body_checks",
                   "body_checks_size_limit", "cyrus_sasl_config_path", "defer_code", "export_environment",
                   "hash_queue_depth", "header_checks", "maps_rbl_reject_code", "message_drop_headers",
                   "mime_header_checks", "nested_header_checks", "non_fqdn_reject_code", "rbl_reply_maps",
                   "relayhost", "remote_header_rewrite_domain", "content_filter", "receive_override_options",
                   "postscreen_upstream_proxy_protocol", "postscreen_upstream_proxy_timeout",
                   "plaintext_reject_code", "multi_recipient_bounce_reject_code", "respectful_logging", "permit_mx_backup_networks"}
# Under those prefixes but not implemented, and changing how mail is
# handled: main.cf setting one gets the "not implemented; ignored" warning.
NOT_IMPLEMENTED = {
                   # Listed under a supported prefix, but not (yet) applied by any daemon:
                   "allow_mail_to_files", "allow_min_user", "allow_percent_hack", "allow_untrusted_routing",
                   "bounce_template_file", "command_expansion_filter", "default_delivery_slot_cost",
                   "default_delivery_slot_discount", "default_delivery_slot_loan",
                   "default_delivery_status_filter", "default_destination_concurrency_failed_cohort_limit",
                   "default_destination_concurrency_negative_feedback",
                   "default_destination_concurrency_positive_feedback", "default_destination_rate_delay",
                   "default_extra_recipient_limit", "default_filter_nexthop",
                   "default_minimum_delivery_slots", "default_recipient_limit",
                   "default_recipient_refill_delay", "default_recipient_refill_limit",
                   "default_transport_rate_delay", "default_verp_delimiters",
                   "delay_logging_resolution_limit", "empty_address_default_transport_maps_lookup_key",
                   "empty_address_local_login_sender_maps_lookup_key",
                   "empty_address_relayhost_maps_lookup_key", "enable_long_queue_ids",
                   "error_notice_recipient", "in_flow_delay", "internal_mail_filter_classes",
                   "lmtp_address_preference", "lmtp_address_verify_target", "lmtp_balance_inet_protocols",
                   "lmtp_bind_address_enforce", "lmtp_cname_overrides_servername",
                   "lmtp_connection_cache_destinations", "lmtp_connection_cache_on_demand",
                   "lmtp_connection_cache_time_limit", "lmtp_connection_reuse_count_limit",
                   "lmtp_connection_reuse_time_limit", "lmtp_defer_if_no_mx_address_found",
                   "lmtp_delivery_status_filter", "lmtp_discard_lhlo_keyword_address_maps",
                   "lmtp_discard_lhlo_keywords", "lmtp_dns_reply_filter", "lmtp_dns_resolver_options",
                   "lmtp_dns_support_level", "lmtp_min_data_rate", "lmtp_per_request_deadline",
                   "lmtp_pix_workaround_delay_time", "lmtp_pix_workaround_maps",
                   "lmtp_pix_workaround_threshold_time", "lmtp_pix_workarounds",
                   "lmtp_quote_rfc821_envelope", "lmtp_randomize_addresses", "lmtp_reply_filter",
                   "lmtp_sasl_auth_cache_name", "lmtp_sasl_auth_cache_time", "lmtp_sasl_auth_soft_bounce",
                   "lmtp_sasl_tls_verified_security_options", "lmtp_send_dummy_mail_auth",
                   "lmtp_send_xforward_command", "lmtp_sender_dependent_authentication",
                   "lmtp_skip_5xx_greeting", "lmtp_skip_quit_response", "lmtp_tls_block_early_mail_reply",
                   "lmtp_tls_connection_reuse", "lmtp_tls_dcert_file", "lmtp_tls_dkey_file",
                   "lmtp_tls_eccert_file", "lmtp_tls_eckey_file", "lmtp_tls_enforce_peername",
                   "lmtp_tls_exclude_ciphers", "lmtp_tls_fingerprint_cert_match",
                   "lmtp_tls_fingerprint_digest", "lmtp_tls_force_insecure_host_tlsa_lookup",
                   "lmtp_tls_mandatory_ciphers", "lmtp_tls_mandatory_exclude_ciphers",
                   "lmtp_tls_note_starttls_offer", "lmtp_tls_scert_verifydepth", "lmtp_tls_servername",
                   "lmtp_tls_trust_anchor_file", "lmtp_xforward_timeout", "local_command_shell",
                   "local_delivery_status_filter", "local_login_sender_maps", "mail_spool_directory",
                   "mailbox_delivery_lock", "mailbox_size_limit", "mailbox_transport_maps",
                   "maillog_file_compressor", "maillog_file_rotate_suffix", "qmgr_clog_warn_time",
                   "qmgr_fudge_factor", "qmgr_message_recipient_limit", "qmgr_message_recipient_minimum",
                   "queue_file_attribute_count_limit", "smtp_address_preference",
                   "smtp_address_verify_target", "smtp_always_send_ehlo", "smtp_balance_inet_protocols",
                   "smtp_bind_address_enforce", "smtp_cname_overrides_servername",
                   "smtp_connection_cache_destinations", "smtp_connection_cache_on_demand",
                   "smtp_connection_cache_time_limit", "smtp_connection_reuse_count_limit",
                   "smtp_connection_reuse_time_limit", "smtp_defer_if_no_mx_address_found",
                   "smtp_delivery_status_filter", "smtp_dns_reply_filter", "smtp_dns_resolver_options",
                   "smtp_dns_support_level", "smtp_min_data_rate", "smtp_never_send_ehlo",
                   "smtp_per_request_deadline", "smtp_pix_workaround_delay_time", "smtp_pix_workaround_maps",
                   "smtp_pix_workaround_threshold_time", "smtp_pix_workarounds",
                   "smtp_quote_rfc821_envelope", "smtp_randomize_addresses", "smtp_reply_filter",
                   "smtp_sasl_auth_cache_name", "smtp_sasl_auth_cache_time", "smtp_sasl_auth_soft_bounce",
                   "smtp_sasl_tls_verified_security_options", "smtp_send_dummy_mail_auth",
                   "smtp_send_xforward_command", "smtp_sender_dependent_authentication",
                   "smtp_skip_5xx_greeting", "smtp_skip_quit_response", "smtp_tls_block_early_mail_reply",
                   "smtp_tls_connection_reuse", "smtp_tls_dane_insecure_mx_policy", "smtp_tls_dcert_file",
                   "smtp_tls_dkey_file", "smtp_tls_eccert_file", "smtp_tls_eckey_file",
                   "smtp_tls_enforce_peername", "smtp_tls_exclude_ciphers",
                   "smtp_tls_fingerprint_cert_match", "smtp_tls_fingerprint_digest",
                   "smtp_tls_force_insecure_host_tlsa_lookup", "smtp_tls_mandatory_ciphers",
                   "smtp_tls_mandatory_exclude_ciphers", "smtp_tls_note_starttls_offer",
                   "smtp_tls_scert_verifydepth", "smtp_tls_servername", "smtp_tls_trust_anchor_file",
                   "smtp_xforward_timeout", "smtpd_tls_eecdh_grade", "smtpd_tls_exclude_ciphers",
                   "smtpd_tls_mandatory_ciphers", "smtpd_tls_mandatory_exclude_ciphers",
                   "smtputf8_autodetect_classes", "strict_7bit_headers", "strict_8bitmime",
                   "strict_8bitmime_body", "strict_mailbox_ownership", "strict_mime_encoding_domain",
                   "strict_smtputf8", "tls_append_default_CA", "tls_config_file",
                   "tls_config_name", "tls_dane_digests", "tls_disable_workarounds", "tls_eecdh_auto_curves",
                   "tls_eecdh_strong_curve", "tls_eecdh_ultra_curve", "tls_export_cipherlist",
                   "tls_high_cipherlist", "tls_legacy_public_key_fingerprints", "tls_low_cipherlist",
                   "tls_medium_cipherlist", "tls_null_cipherlist", "tls_preempt_cipherlist",
                   "tls_server_sni_maps", "tls_ssl_options", "tls_wildcard_matches_multiple_labels",
                   "transport_retry_time", "unknown_relay_recipient_reject_code",
                   "unknown_virtual_alias_reject_code", "unknown_virtual_mailbox_reject_code",
                   "virtual_alias_address_length_limit", "virtual_delivery_status_filter",
                   "virtual_gid_maps", "virtual_mailbox_base", "virtual_mailbox_limit",
                   "virtual_mailbox_lock", "virtual_minimum_uid", "virtual_uid_maps",
                   "postscreen_cache_map", "postscreen_cache_cleanup_interval", "postscreen_allowlist_interfaces",
                   "postscreen_whitelist_interfaces",
                   "postscreen_expansion_filter",
                   "postscreen_watchdog_timeout", "postscreen_tls_security_level", "postscreen_use_tls",
                   "postscreen_enforce_tls",
                   "smtpd_proxy_filter", "smtpd_proxy_options", "smtpd_proxy_ehlo", "smtpd_proxy_timeout",
                   "smtpd_milter_maps",
                   "smtpd_sasl_exceptions_networks",
                   "sender_bcc_maps", "recipient_bcc_maps",
                   "sender_dependent_relayhost_maps", "sender_dependent_default_transport_maps",
                   "mailbox_command", "mailbox_command_maps", "fallback_transport", "fallback_transport_maps",
                   "smtp_tls_per_site", "lmtp_tls_per_site",
                   "lmtp_header_checks", "lmtp_body_checks", "lmtp_mime_header_checks", "lmtp_generic_maps",
                   "smtp_header_checks", "smtp_body_checks", "smtp_mime_header_checks", "smtp_generic_maps",
                   "smtpd_client_auth_rate_limit", "smtpd_client_new_tls_session_rate_limit",
                   "relay_clientcerts", "smtpd_authorized_verp_clients", "lmtp_fallback_relay",
                   "smtp_fallback_relay",
                   # smtpd: queue file timing, ETRN lists, notification history,
                   # per-request deadlines, DNS reply filtering, permit logging.
                   "smtpd_delay_open_until_valid_rcpt", "smtpd_dns_reply_filter", "smtpd_etrn_restrictions",
                   "smtpd_expansion_filter", "smtpd_forbid_unauth_pipelining", "smtpd_history_flush_threshold",
                   "smtpd_min_data_rate", "smtpd_per_request_deadline",
                   # smtpd TLS that rustls does not do: client certificates,
                   # DSA/ECDSA second certificates, DH parameters, the session
                   # cache database (rustls keeps its own in memory).
                   "smtpd_tls_CAfile", "smtpd_tls_CApath", "smtpd_tls_ask_ccert", "smtpd_tls_req_ccert",
                   "smtpd_tls_ccert_verifydepth", "smtpd_tls_fingerprint_digest",
                   "smtpd_tls_always_issue_session_ids", "smtpd_tls_dcert_file", "smtpd_tls_dkey_file",
                   "smtpd_tls_eccert_file", "smtpd_tls_eckey_file", "smtpd_tls_dh1024_param_file",
                   "smtpd_tls_dh512_param_file", "smtpd_tls_session_cache_database",
                   "smtpd_tls_session_cache_timeout"}
REJECTED = set()

def postconf_d(master_text):
    with tempfile.TemporaryDirectory() as d:
        open(os.path.join(d, "main.cf"), "w").close()
        with open(os.path.join(d, "master.cf"), "w") as f:
            f.write(master_text)
        out = subprocess.run(["postconf", "-c", d, "-d"], capture_output=True, text=True).stdout
    res = {}
    for line in out.splitlines():
        if line.endswith(" ="):
            name, value = line[:-2], ""
        else:
            name, _, value = line.partition(" = ")
        res[name] = value
    return res

def kind(v):
    if v in ("yes", "no"):
        return "bool"
    if re.fullmatch(r"-?\d+", v):
        return "int"
    if re.fullmatch(r"\d+[smhdw]", v):
        return "time"
    return "str"

base = postconf_d("")
print("# name\ttype\tclass\tstatus\tdefault (generated by tests/tools/gen-postfix-registry.py from postconf -d of Postfix %s)" % base["mail_version"])
for name in sorted(base):
    v = base[name]
    cls = "fixed"
    if name in HOST:
        cls = "host"
    elif name in BUILD_RHEL:
        cls = "build"
        v = BUILD_RHEL[name]
    status = "supported" if name.startswith(SUPPORTED_PREFIXES) or name in SUPPORTED_NAMES else "ignored"
    if name in NOT_IMPLEMENTED:
        status = "ignored"
    if name in REJECTED:
        status = "rejected"
    print("%s\t%s\t%s\t%s\t%s" % (name, kind(v), cls, status, v))
# Service-defined parameter templates: which commands define which suffixes.
for cmd in ("smtp", "lmtp", "local", "virtual", "error", "pipe", "spawn", "discard", "smtpd"):
    extra = postconf_d("zzsvc unix - - n - - %s\n" % cmd)
    for name in sorted(extra):
        if name.startswith("zzsvc_"):
            print("@%s\t%s\t%s\tservice\tsupported\t%s" % (cmd, name[len("zzsvc"):], kind(extra[name]), extra[name]))
