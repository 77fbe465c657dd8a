//! Kerberos string-to-key for the AES-SHA1 enctypes (RFC 3962): PBKDF2
//! with HMAC-SHA1 over the password and the principal's salt, then
//! DK(tkey, "kerberos").  libk5crypto's own PBKDF2 (Debian builds its
//! built-in crypto) costs ~5 ms of CPU per login at the default 4,096
//! iterations; here the HMAC pads are hashed once, SHA-1 runs on SHA-NI
//! and the AES block on AES-NI where the CPU has them, so a worker spends
//! a fraction of the CPU per login.  Keys live only for one login and are
//! wiped after use.

use aes::cipher::{BlockEncrypt, KeyInit};

/// aes128-cts-hmac-sha1-96 and aes256-cts-hmac-sha1-96.
pub const AES128_CTS_HMAC_SHA1_96: i32 = 17;
pub const AES256_CTS_HMAC_SHA1_96: i32 = 18;
/// RFC 3962's default when the KDC sends no s2kparams.
pub const DEFAULT_ITERATIONS: u32 = 4096;
/// A KDC asking for more is not followed here (the slow path decides).
pub const MAX_ITERATIONS: u32 = 1_000_000;

/// n-fold("kerberos", 128), the DK constant of string-to-key (RFC 3961
/// §5.1 and its appendix A.1 test vector).
const KERBEROS_FOLDED: [u8; 16] = [
    0x6b, 0x65, 0x72, 0x62, 0x65, 0x72, 0x6f, 0x73, 0x7b, 0x9b, 0x5b, 0x2b, 0x93, 0x13, 0x2b, 0x93,
];

/// Key length in bytes for an AES-SHA1 enctype, None for the others.
pub fn key_len(enctype: i32) -> Option<usize> {
    match enctype {
        AES128_CTS_HMAC_SHA1_96 => Some(16),
        AES256_CTS_HMAC_SHA1_96 => Some(32),
        _ => None,
    }
}

/// Iteration count from the KDC's s2kparams (empty = default; otherwise
/// 4 bytes big-endian; RFC 3962 §4).
pub fn iterations(params: &[u8]) -> Option<u32> {
    match params {
        [] => Some(DEFAULT_ITERATIONS),
        [a, b, c, d] => {
            let n = u32::from_be_bytes([*a, *b, *c, *d]);
            (n > 0 && n <= MAX_ITERATIONS).then_some(n)
        }
        _ => None,
    }
}

/// A derived key, wiped on drop.
pub struct Key(pub Vec<u8>);

impl Drop for Key {
    fn drop(&mut self) {
        for b in self.0.iter_mut() {
            // SAFETY: a valid &mut u8; volatile so the wipe is not elided.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

/// The RFC 3962 string-to-key; None for an enctype it does not cover.
pub fn string_to_key(enctype: i32, password: &[u8], salt: &[u8], iterations: u32) -> Option<Key> {
    let len = key_len(enctype)?;
    let n = std::num::NonZeroU32::new(iterations)?;
    let tkey = Key(pbkdf2_hmac_sha1(password, salt, n.get(), len));
    // DK(tkey, "kerberos"): E(tkey, constant), then E of the previous
    // block until the key length is reached (RFC 3961 §5.1 DR).
    let mut out = Key(Vec::with_capacity(len));
    let mut block = aes::Block::from(KERBEROS_FOLDED);
    let encrypt = |b: &mut aes::Block| match len {
        16 => aes::Aes128::new_from_slice(&tkey.0).ok().map(|c| c.encrypt_block(b)),
        _ => aes::Aes256::new_from_slice(&tkey.0).ok().map(|c| c.encrypt_block(b)),
    };
    while out.0.len() < len {
        encrypt(&mut block)?;
        let take = (len - out.0.len()).min(16);
        out.0.extend_from_slice(&block[..take]);
    }
    for b in block.iter_mut() {
        *b = 0;
    }
    Some(out)
}

const SHA1_INIT: [u32; 5] = [0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0];

fn compress(state: &mut [u32; 5], block: &[u8; 64]) {
    sha1::compress(state, &[sha1::digest::generic_array::GenericArray::clone_from_slice(block)]);
}

fn digest_bytes(state: &[u32; 5]) -> [u8; 20] {
    let mut out = [0u8; 20];
    for (i, w) in state.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
    }
    out
}

/// Finishes a SHA-1 whose first `prefix` bytes (a multiple of 64) are
/// already in `state`, over `msg`.
fn sha1_finish(mut state: [u32; 5], prefix: usize, msg: &[u8]) -> [u8; 20] {
    let mut chunks = msg.chunks_exact(64);
    for c in &mut chunks {
        let mut b = [0u8; 64];
        b.copy_from_slice(c);
        compress(&mut state, &b);
    }
    let rest = chunks.remainder();
    let bits = ((prefix + msg.len()) as u64) * 8;
    let mut b = [0u8; 128];
    b[..rest.len()].copy_from_slice(rest);
    b[rest.len()] = 0x80;
    let end = if rest.len() < 56 { 64 } else { 128 };
    b[end - 8..end].copy_from_slice(&bits.to_be_bytes());
    for half in b[..end].chunks_exact(64) {
        let mut blk = [0u8; 64];
        blk.copy_from_slice(half);
        compress(&mut state, &blk);
    }
    digest_bytes(&state)
}

/// PBKDF2 (RFC 8018) with HMAC-SHA1, the HMAC pads hashed once and each
/// iteration two compressions of a pre-padded block.
fn pbkdf2_hmac_sha1(password: &[u8], salt: &[u8], iterations: u32, len: usize) -> Vec<u8> {
    let mut k = [0u8; 64];
    if password.len() > 64 {
        k[..20].copy_from_slice(&sha1_finish(SHA1_INIT, 0, password));
    } else {
        k[..password.len()].copy_from_slice(password);
    }
    let (mut ipad, mut opad) = ([0x36u8; 64], [0x5cu8; 64]);
    for i in 0..64 {
        ipad[i] ^= k[i];
        opad[i] ^= k[i];
    }
    let (mut si, mut so) = (SHA1_INIT, SHA1_INIT);
    compress(&mut si, &ipad);
    compress(&mut so, &opad);
    for b in k.iter_mut().chain(ipad.iter_mut()).chain(opad.iter_mut()) {
        // SAFETY: a valid &mut u8; volatile so the wipe is not elided.
        unsafe { std::ptr::write_volatile(b, 0) };
    }
    // One 20-byte message after a 64-byte pad: 84 bytes = 672 bits.
    let mut block = [0u8; 64];
    block[20] = 0x80;
    block[56..].copy_from_slice(&672u64.to_be_bytes());
    let mut out = Vec::with_capacity(len + 20);
    let mut index = 1u32;
    while out.len() < len {
        let mut first = salt.to_vec();
        first.extend_from_slice(&index.to_be_bytes());
        let inner = sha1_finish(si, 64, &first);
        let mut u = sha1_finish(so, 64, &inner);
        let mut t = u;
        for _ in 1..iterations {
            block[..20].copy_from_slice(&u);
            let mut st = si;
            compress(&mut st, &block);
            block[..20].copy_from_slice(&digest_bytes(&st));
            let mut st = so;
            compress(&mut st, &block);
            u = digest_bytes(&st);
            for (a, b) in t.iter_mut().zip(u.iter()) {
                *a ^= b;
            }
        }
        out.extend_from_slice(&t);
        index += 1;
    }
    block.fill(0);
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn pbkdf2_matches_ring() {
        // ring's PBKDF2 as an independent oracle, incl. long keys/salts.
        for (pw, salt, n) in [
            (&b"password"[..], &b"salt"[..], 1u32),
            (b"password", b"ATHENA.MIT.EDUraeburn", 1200),
            (&[7u8; 100][..], &[9u8; 70][..], 3),
            (b"x", &[1u8; 55][..], 2),
            (b"x", &[1u8; 56][..], 2),
        ] {
            let mut want = [0u8; 32];
            ring::pbkdf2::derive(
                ring::pbkdf2::PBKDF2_HMAC_SHA1,
                std::num::NonZeroU32::new(n).unwrap(),
                salt,
                pw,
                &mut want,
            );
            assert_eq!(hex(&pbkdf2_hmac_sha1(pw, salt, n, 32)), hex(&want), "{n}");
        }
        // RFC 6070 vector: "password"/"salt", 2 iterations.
        assert_eq!(
            hex(&pbkdf2_hmac_sha1(b"password", b"salt", 2, 20)),
            "ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957"
        );
    }

    #[test]
    fn iteration_params() {
        assert_eq!(iterations(&[]), Some(4096));
        assert_eq!(iterations(&[0, 0, 0x10, 0]), Some(4096));
        assert_eq!(iterations(&[0, 0, 0, 0]), None);
        assert_eq!(iterations(&[0xff, 0, 0, 0]), None);
        assert_eq!(iterations(&[1, 2]), None);
        assert!(string_to_key(23, b"x", b"y", 1).is_none());
    }
}
