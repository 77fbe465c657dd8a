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
NOT_IMPLEMENTED = {"postscreen_cache_map", "postscreen_cache_cleanup_interval", "postscreen_allowlist_interfaces",
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
