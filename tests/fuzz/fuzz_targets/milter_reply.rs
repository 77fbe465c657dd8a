#![no_main]
// Milter replies as a filter may send them: framing and decoding never
// panic; a decoded reply's packet length is within the limit.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    use mumail::proto::milter::{decode, packet_len, MAX_PACKET};
    let mut rest = data;
    while let Ok(Some(n)) = packet_len(rest) {
        assert!(n <= MAX_PACKET + 4);
        if rest.len() < n {
            break;
        }
        let _ = decode(&rest[..n]);
        rest = &rest[n..];
    }
});
