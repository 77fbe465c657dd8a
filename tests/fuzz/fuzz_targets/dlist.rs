#![no_main]
// Cyrus's dlist (what a Cyrus back end sends in an XFER's SYNCAPPLY, and
// 3.6's cyrus.header) on any input: never a panic; a parsed value
// rendered parses back to itself.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    use mumail::proto::dlist::*;
    if let Ok(v) = parse(data) {
        let mut out = Vec::new();
        render(&v, &mut out);
        assert_eq!(parse(&out).as_ref(), Ok(&v));
    }
    let _ = parse_keyed(data);
    let _ = file_marker(data);
});
