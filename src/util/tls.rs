//! TLS helpers shared by servers and clients: a certificate verifier
//! that accepts any server certificate, and the session summary Postfix
//! and Cyrus log (`TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256
//! bits)`), with OpenSSL's cipher names.

/// A client that does not check the server's certificate (saslauthd's
/// `ldap_tls_check_peer: no`, Postfix's `may`/`encrypt` TLS levels); the
/// handshake signatures are still verified.
#[derive(Debug)]
pub struct NoPeerCheck(pub std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoPeerCheck {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// OpenSSL's name of a cipher suite and its (used/algorithm) key bits.
fn openssl_cipher(suite: rustls::CipherSuite) -> (String, u32) {
    let iana = format!("{suite:?}");
    let bits = if iana.contains("AES_128") { 128 } else { 256 };
    if let Some(rest) = iana.strip_prefix("TLS13_") {
        return (format!("TLS_{rest}"), bits);
    }
    // TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 → ECDHE-RSA-AES256-GCM-SHA384
    let Some((kx, enc)) = iana.strip_prefix("TLS_").and_then(|r| r.split_once("_WITH_")) else {
        return (iana, bits);
    };
    let enc = enc
        .replace("AES_128", "AES128")
        .replace("AES_256", "AES256")
        .replace("CHACHA20_POLY1305_SHA256", "CHACHA20_POLY1305");
    (format!("{}-{}", kx.replace('_', "-"), enc.replace('_', "-")), bits)
}

/// `TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)`.
pub fn summary(version: Option<rustls::ProtocolVersion>, suite: Option<rustls::SupportedCipherSuite>) -> String {
    let v = match version {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
        Some(other) => format!("{other:?}"),
        None => "TLS".to_string(),
    };
    match suite {
        Some(s) => {
            let (name, bits) = openssl_cipher(s.suite());
            format!("{v} with cipher {name} ({bits}/{bits} bits)")
        }
        None => v,
    }
}

/// The strength of a server-side TLS session as Cyrus gives it to SASL
/// (the external SSF): the cipher's key bits, 0 before the handshake.
pub fn server_ssf(c: &rustls::ServerConnection) -> u32 {
    c.negotiated_cipher_suite().map_or(0, |s| openssl_cipher(s.suite()).1)
}

/// What Cyrus logs after a server-side handshake (`starttls: ...`):
/// `TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits new) no
/// authentication` (no client certificates are asked for).
pub fn server_summary(c: &rustls::ServerConnection) -> String {
    let s = summary(c.protocol_version(), c.negotiated_cipher_suite());
    match s.strip_suffix(" bits)") {
        Some(head) => format!("{head} bits new) no authentication"),
        None => format!("{s} no authentication"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cipher_names() {
        assert_eq!(
            openssl_cipher(rustls::CipherSuite::TLS13_AES_256_GCM_SHA384),
            ("TLS_AES_256_GCM_SHA384".into(), 256)
        );
        assert_eq!(
            openssl_cipher(rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
            ("ECDHE-RSA-AES128-GCM-SHA256".into(), 128)
        );
        assert_eq!(
            openssl_cipher(rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
            ("ECDHE-ECDSA-CHACHA20-POLY1305".into(), 256)
        );
    }
}
