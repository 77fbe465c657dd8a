#![no_main]
// The DATA receiver: any split of the input gives the same content and
// the same end; the content never holds a line "." (unstuffing) that could
// be mistaken for the end, and never exceeds the limit.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    use mumail::proto::smtp::{DataEnd, DataReceiver};
    let limit = 4096;
    let mut whole = DataReceiver::new(limit);
    let end_whole = whole.feed(data);
    let mut parts = DataReceiver::new(limit);
    let mut used = 0;
    let mut end_parts = DataEnd::More;
    for chunk in data.chunks(7) {
        match parts.feed(chunk) {
            DataEnd::Done(n) => {
                end_parts = DataEnd::Done(used + n);
                break;
            }
            DataEnd::More => used += chunk.len(),
        }
    }
    assert_eq!(end_whole, end_parts);
    assert_eq!(whole.data, parts.data);
    assert!(whole.data.len() <= limit);
    if let DataEnd::Done(n) = end_whole {
        assert!(data[..n].ends_with(b".\r\n"));
    }
});
