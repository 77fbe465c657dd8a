#![no_main]
use mumail::proto::imap::command::{literal_marker, parse};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    for line in data.split(|&c| c == b'\n') {
        let _ = literal_marker(line);
    }
    match parse(data) {
        // A parsed command has a non-empty tag without '+'.
        Ok(c) => assert!(!c.tag.is_empty() && !c.tag.contains('+')),
        Err(e) => assert!(!e.text.is_empty()),
    }
});
