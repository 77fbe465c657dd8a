//! TLS from a Murder node to its peers (a front end to its back ends,
//! every node to the MUPDATE master, a back end to the target of an
//! XFER), when Cyrus's `backend_connect` would use it: STARTTLS at once
//! when the server name carries the `/tls` option (`host:port/tls`), or
//! when the peer offers no SASL mechanism usable in the clear but offers
//! STARTTLS (a peer with `allowplaintext: no`).
//!
//! The peer's certificate must chain to `tls_client_ca_file` /
//! `tls_client_ca_dir` (else the system's CA bundle) and name the host
//! connected to.  A client certificate comes from
//! `<shorthost>_client_cert`/`<shorthost>_client_key`, else
//! `tls_client_cert`/`tls_client_key`, as Cyrus picks them.

use super::front::BACKEND_TIMEOUT;
use crate::config::cyrus::ImapdConf;
use crate::server::listen::Io;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// A connection to a peer: TCP, or TLS over it after STARTTLS.
pub type PeerIo = Box<dyn Io>;

/// The CA bundles of RHEL and Debian, tried in this order when no
/// `tls_client_ca_*` is set.
const SYSTEM_CA: &[&str] = &["/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/certs/ca-certificates.crt"];

/// Whether `server` asks for TLS (`host:port/tls[/noauth]`).
pub fn tls_option(server: &str) -> bool {
    server.split('/').skip(1).any(|o| o == "tls")
}

/// Whether a peer offering `mechs` (AUTH mechanisms) and `starttls` must
/// be asked for TLS before we log in with `want` (PLAIN, or GSSAPI): the
/// server name says so, or `want` is offered only after STARTTLS.
pub fn needs_starttls(server: &str, mechs: &[String], want: &str, starttls: bool) -> bool {
    tls_option(server) || (starttls && !mechs.iter().any(|m| m.eq_ignore_ascii_case(want)))
}

/// The host part of a server name, up to the first `.` (`mail1` for
/// `mail1.example.com:143/tls`): Cyrus's prefix for per-peer options.
fn short_host(server: &str) -> &str {
    server.split(['.', ':', '/']).next().unwrap_or(server)
}

/// The client configuration for `server`, built once per set of files.
pub fn client_config(conf: &ImapdConf, server: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    static CACHE: OnceLock<Mutex<HashMap<[String; 4], Arc<rustls::ClientConfig>>>> = OnceLock::new();
    let short = short_host(server);
    let get = |k: &str| conf.get(k).filter(|v| !v.is_empty()).unwrap_or("").to_string();
    let per_host = |k: &str, fallback: &str| {
        conf.overflow(&format!("{short}_{k}"))
            .map(|v| (format!("{short}_{k}"), v.to_string()))
            .unwrap_or_else(|| (fallback.to_string(), get(fallback)))
    };
    let (cert_name, cert) = per_host("client_cert", "tls_client_cert");
    let (key_name, key) = per_host("client_key", "tls_client_key");
    let (mut ca_file, ca_dir) = (get("tls_client_ca_file"), get("tls_client_ca_dir"));
    let mut ca_file_name = "tls_client_ca_file";
    if ca_file.is_empty() && ca_dir.is_empty() {
        ca_file = SYSTEM_CA
            .iter()
            .find(|p| std::path::Path::new(p).exists())
            .map(|p| p.to_string())
            .ok_or("no CA certificates to check the peer with (set tls_client_ca_file)")?;
        ca_file_name = "the system CA bundle";
    }
    let key_of = [ca_file.clone(), ca_dir.clone(), cert.clone(), key.clone()];
    let cache = CACHE.get_or_init(Default::default);
    if let Some(c) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key_of) {
        return Ok(c.clone());
    }
    let files = crate::auth::ldap::TlsFiles {
        check_peer: true,
        ca_file: (ca_file_name, &ca_file),
        ca_dir: ("tls_client_ca_dir", &ca_dir),
        cert: (&cert_name, &cert),
        key: (&key_name, &key),
    };
    let cfg = crate::auth::ldap::tls_client_config(&files)?.ok_or("no TLS client configuration")?;
    cache.lock().unwrap_or_else(|p| p.into_inner()).insert(key_of, cfg.clone());
    Ok(cfg)
}

/// The TLS handshake with `server` over `io` (after its STARTTLS reply).
pub async fn handshake(io: PeerIo, server: &str, conf: &ImapdConf) -> Result<PeerIo, String> {
    let cfg = client_config(conf, server)?;
    let (host, _) = super::mupdate::client::split_server(server, 0);
    let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| format!("{host}: {e}"))?;
    let t = tokio::time::timeout(BACKEND_TIMEOUT, tokio_rustls::TlsConnector::from(cfg).connect(name, io))
        .await
        .map_err(|_| format!("{server}: TLS negotiation timed out"))?
        .map_err(|e| format!("{server}: TLS negotiation failed: {e}"))?;
    Ok(Box::new(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn when_to_ask_for_tls() {
        let plain = vec!["PLAIN".to_string(), "LOGIN".to_string()];
        let none: Vec<String> = Vec::new();
        // Offered in the clear: no TLS unless the name asks for it.
        assert!(!needs_starttls("b1.example.com", &plain, "PLAIN", true));
        assert!(needs_starttls("b1.example.com:143/tls", &plain, "PLAIN", true));
        assert!(needs_starttls("b1:143/noauth/tls", &plain, "PLAIN", false));
        // PLAIN only after STARTTLS (allowplaintext: no).
        assert!(needs_starttls("b1.example.com", &none, "PLAIN", true));
        // No STARTTLS either: try in the clear and let the peer refuse.
        assert!(!needs_starttls("b1.example.com", &none, "PLAIN", false));
        assert_eq!(short_host("mail1.example.com:143/tls"), "mail1");
        assert_eq!(short_host("127.0.0.2"), "127");
    }
}
