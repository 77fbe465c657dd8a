//! The saslauthd `mux` protocol (Cyrus SASL 2.1.28 `saslauthd/ipc_unix.c`,
//! `lib/checkpw.c`): the client sends four counted strings — login,
//! password, service, realm — each a 16-bit big-endian length and that many
//! bytes; the server answers one counted string starting `OK` or `NO`.  One
//! request per connection.  Sans-I/O: bytes in, a request or reply out.

use crate::mail::Secret;

/// Longest field saslauthd accepts (`MAX_REQ_LEN`).
pub const MAX_REQ_LEN: usize = 256;
/// Longest request: four length words and four maximal fields.
pub const MAX_REQUEST: usize = 4 * (2 + MAX_REQ_LEN);
/// libsasl reads at most this much of a reply (it truncates the rest).
pub const MAX_REPLY: usize = 1023;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub login: Vec<u8>,
    pub password: Secret<Vec<u8>>,
    pub service: Vec<u8>,
    pub realm: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// A length word over `MAX_REQ_LEN`; saslauthd answers `NO ` and stops.
    FieldTooLong,
}

/// Decodes a request from the bytes received so far: `Ok(None)` while
/// incomplete, `Ok(Some((request, consumed)))` when whole.
pub fn decode_request(buf: &[u8]) -> Result<Option<(Request, usize)>, DecodeError> {
    let mut fields: Vec<Vec<u8>> = Vec::with_capacity(4);
    let mut pos = 0;
    for _ in 0..4 {
        let Some(len) = buf.get(pos..pos + 2) else { return Ok(None) };
        let len = u16::from_be_bytes([len[0], len[1]]) as usize;
        if len > MAX_REQ_LEN {
            return Err(DecodeError::FieldTooLong);
        }
        let Some(data) = buf.get(pos + 2..pos + 2 + len) else {
            return Ok(None);
        };
        fields.push(data.to_vec());
        pos += 2 + len;
    }
    let realm = fields.pop().unwrap_or_default();
    let service = fields.pop().unwrap_or_default();
    let password = fields.pop().unwrap_or_default();
    let login = fields.pop().unwrap_or_default();
    Ok(Some((
        Request {
            login,
            password: Secret::new(password),
            service,
            realm,
        },
        pos,
    )))
}

/// A request as libsasl / testsaslauthd send it (fields over 256 bytes are
/// the caller's problem: the server refuses them).
pub fn encode_request(login: &[u8], password: &[u8], service: &[u8], realm: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + login.len() + password.len() + service.len() + realm.len());
    for f in [login, password, service, realm] {
        let len = f.len().min(u16::MAX as usize);
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.extend_from_slice(&f[..len]);
    }
    out
}

/// The counted reply.
pub fn encode_reply(text: &str) -> Vec<u8> {
    let t = &text.as_bytes()[..text.len().min(u16::MAX as usize)];
    let mut out = Vec::with_capacity(2 + t.len());
    out.extend_from_slice(&(t.len() as u16).to_be_bytes());
    out.extend_from_slice(t);
    out
}

/// Decodes a reply: `Ok(None)` while incomplete; replies longer than
/// `MAX_REPLY` are truncated as libsasl does.
pub fn decode_reply(buf: &[u8]) -> Option<Vec<u8>> {
    let len = u16::from_be_bytes([*buf.first()?, *buf.get(1)?]) as usize;
    let data = buf.get(2..2 + len)?;
    Some(data[..len.min(MAX_REPLY)].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn real_transcript_bytes() {
        // ref/transcripts/saslauthd-protocol.transcript.txt (saslauthd 2.1.28).
        let c = hex("0002753700067465737470770004696d6170000a70656572732e74657374");
        let (r, n) = decode_request(&c).unwrap().unwrap();
        assert_eq!(n, c.len());
        assert_eq!(
            (
                r.login.as_slice(),
                r.password.expose().as_slice(),
                r.service.as_slice(),
                r.realm.as_slice()
            ),
            (&b"u7"[..], &b"testpw"[..], &b"imap"[..], &b"peers.test"[..])
        );
        assert_eq!(encode_request(b"u7", b"testpw", b"imap", b"peers.test"), c);
        assert_eq!(
            encode_reply("NO Incorrect password"),
            hex("00154e4f20496e636f72726563742070617373776f7264")
        );
        assert_eq!(encode_reply("OK"), hex("00024f4b"));
        let (r, _) = decode_request(&hex("0000000000000000")).unwrap().unwrap();
        assert!(r.login.is_empty() && r.realm.is_empty());
    }

    #[test]
    fn incomplete_and_limits() {
        let full = encode_request(b"u", b"p", b"imap", b"");
        for cut in 0..full.len() {
            assert_eq!(decode_request(&full[..cut]), Ok(None), "cut at {cut}");
        }
        let at_limit = encode_request(&[b'a'; 256], b"p", b"s", b"r");
        assert!(decode_request(&at_limit).unwrap().is_some());
        let over = encode_request(&[b'a'; 257], b"p", b"s", b"r");
        assert_eq!(decode_request(&over), Err(DecodeError::FieldTooLong));
        // The length word alone is enough to refuse.
        assert_eq!(decode_request(&[0x01, 0x01]), Err(DecodeError::FieldTooLong));
        assert_eq!(decode_reply(&hex("00024f4b")), Some(b"OK".to_vec()));
        assert_eq!(decode_reply(&[0, 5, b'N']), None);
    }
}
