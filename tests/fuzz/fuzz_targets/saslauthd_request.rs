#![no_main]
use mumail::proto::saslauthd::{decode_reply, decode_request, encode_request};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = decode_reply(data);
    if let Ok(Some((r, used))) = decode_request(data) {
        // decode -> encode reproduces exactly the bytes consumed.
        let again = encode_request(&r.login, r.password.expose(), &r.service, &r.realm);
        assert_eq!(&data[..used], &again[..]);
    }
});
