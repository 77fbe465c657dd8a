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

/// One DER element: (tag, contents, what follows).
fn der(buf: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = buf.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        (rest[..n].iter().fold(0usize, |a, &b| a << 8 | b as usize), &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// OpenSSL 3's names of the curves rustls speaks.
fn curve_name(oid: &[u8]) -> Option<&'static str> {
    match oid {
        [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07] => Some("prime256v1"),
        [0x2b, 0x81, 0x04, 0x00, 0x22] => Some("secp384r1"),
        [0x2b, 0x81, 0x04, 0x00, 0x23] => Some("secp521r1"),
        _ => None,
    }
}

/// What Postfix's Received header says of the server's TLS 1.3
/// signature, from the certificate rustls signs with:
/// `server-signature RSA-PSS (2048 bits) server-digest SHA512` (rustls
/// prefers PSS with SHA-512 where the client offers it, as clients do),
/// `server-signature ECDSA (prime256v1) server-digest SHA256`.
pub fn server_signature(cert: &[u8]) -> Option<String> {
    const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    const EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    let (_, cert, _) = der(cert)?;
    let (_, mut tbs, _) = der(cert)?;
    if tbs.first() == Some(&0xa0) {
        tbs = der(tbs)?.2;
    }
    // serial, signature, issuer, validity, subject
    for _ in 0..5 {
        tbs = der(tbs)?.2;
    }
    let (_, spki, _) = der(tbs)?;
    let (_, alg, rest) = der(spki)?;
    let (_, oid, params) = der(alg)?;
    let (_, key, _) = der(rest)?;
    if oid == RSA {
        let (_, seq, _) = der(key.get(1..)?)?;
        let (_, modulus, _) = der(seq)?;
        let m: &[u8] = &modulus[modulus.iter().position(|&b| b != 0)?..];
        let bits = m.len() * 8 - m[0].leading_zeros() as usize;
        Some(format!("server-signature RSA-PSS ({bits} bits) server-digest SHA512"))
    } else if oid == EC {
        let (_, curve, _) = der(params)?;
        let name = curve_name(curve)?;
        let digest = match name {
            "prime256v1" => "SHA256",
            "secp384r1" => "SHA384",
            _ => "SHA512",
        };
        Some(format!("server-signature ECDSA ({name}) server-digest {digest}"))
    } else {
        None
    }
}

/// `smtpd_tls_received_header`: the lines Postfix adds to its Received
/// header after `from ...` (continuations with a tab): the protocol and
/// cipher, for TLS 1.3 the key exchange and server signature, then
/// `(No client certificate requested)`.
pub fn received_lines(c: &rustls::ServerConnection, signature: Option<&str>) -> String {
    let summary = summary(c.protocol_version(), c.negotiated_cipher_suite());
    let mut out = format!("\t(using {summary}");
    if c.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3) {
        let kex = c.negotiated_key_exchange_group().map(|g| match format!("{:?}", g.name()).as_str() {
            "secp256r1" => "ECDHE (prime256v1)".to_string(),
            "secp384r1" => "ECDHE (secp384r1)".to_string(),
            "secp521r1" => "ECDHE (secp521r1)".to_string(),
            other => other.to_string(),
        });
        let parts: Vec<String> = kex
            .map(|k| format!("key-exchange {k}"))
            .into_iter()
            .chain(signature.map(str::to_string))
            .collect();
        if !parts.is_empty() {
            out.push_str(&format!("\r\n\t {}", parts.join(" ")));
        }
    }
    out.push_str(")\r\n\t(No client certificate requested)\r\n");
    out
}

/// The TLS versions of Postfix's `*_tls_protocols` syntax that rustls
/// can speak (TLS 1.2 and 1.3): `>=TLSv1.2`, `<=TLSv1.3`, `!TLSv1.2`
/// exclusions or a list of versions to include.  Exclusions of SSLv2 to
/// TLSv1.1 are already met; a list that leaves none of the two is an
/// error.
pub fn protocol_versions(spec: &str) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, String> {
    const NAMES: [&str; 6] = ["sslv2", "sslv3", "tlsv1", "tlsv1.1", "tlsv1.2", "tlsv1.3"];
    let rank = |name: &str| {
        NAMES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(name))
            .ok_or_else(|| format!("invalid TLS protocol list \"{spec}\": unknown protocol {name}"))
    };
    let (mut min, mut max) = (0, NAMES.len() - 1);
    let mut excluded = [false; 6];
    let mut included: Option<[bool; 6]> = None;
    for word in spec.split([',', ' ', '\t', ':']).filter(|w| !w.is_empty()) {
        if let Some(v) = word.strip_prefix(">=") {
            min = min.max(rank(v)?);
        } else if let Some(v) = word.strip_prefix("<=") {
            max = max.min(rank(v)?);
        } else if let Some(v) = word.strip_prefix('!') {
            excluded[rank(v)?] = true;
        } else {
            included.get_or_insert([false; 6])[rank(word)?] = true;
        }
    }
    let on = |i: usize| i >= min && i <= max && !excluded[i] && included.is_none_or(|inc| inc[i]);
    let mut out = Vec::new();
    if on(5) {
        out.push(&rustls::version::TLS13);
    }
    if on(4) {
        out.push(&rustls::version::TLS12);
    }
    if out.is_empty() {
        return Err(format!("TLS protocol list \"{spec}\" leaves neither TLSv1.2 nor TLSv1.3"));
    }
    Ok(out)
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

    #[test]
    fn protocol_lists() {
        let v = |s: &str| {
            protocol_versions(s).map(|v| {
                v.iter()
                    .map(|p| {
                        if p.version == rustls::ProtocolVersion::TLSv1_3 {
                            "1.3"
                        } else {
                            "1.2"
                        }
                    })
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(v(">=TLSv1").unwrap(), ["1.3", "1.2"]);
        assert_eq!(v("!SSLv2, !SSLv3, !TLSv1, !TLSv1.1").unwrap(), ["1.3", "1.2"]);
        assert_eq!(v(">=TLSv1.3").unwrap(), ["1.3"]);
        assert_eq!(v("<=TLSv1.2").unwrap(), ["1.2"]);
        assert_eq!(v("!TLSv1.3").unwrap(), ["1.2"]);
        assert_eq!(v("TLSv1.3 TLSv1.1").unwrap(), ["1.3"]);
        assert_eq!(v("").unwrap(), ["1.3", "1.2"]);
        assert!(v("<=TLSv1.1").is_err());
        assert!(v("!TLSv1.2 !TLSv1.3").is_err());
        assert!(v("TLSv9").unwrap_err().contains("unknown protocol TLSv9"));
    }
}
