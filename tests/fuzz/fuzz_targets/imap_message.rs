#![no_main]
use mumail::mail::mime;
use mumail::proto::imap::render::{self, SectionText};

// The MIME parser and every IMAP rendering of an arbitrary message.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (env, bs, body) = render::cache_items(data);
    assert!(env.starts_with('(') && bs.starts_with('(') && body.starts_with('('));
    let p = mime::parse(data);
    for path in [&[][..], &[1], &[1, 1], &[2], &[2, 1, 2], &[3, 1]] {
        for t in [SectionText::Full, SectionText::Header, SectionText::Text, SectionText::Mime, SectionText::HeaderFields(vec!["subject".into()])] {
            if let Some(s) = render::section(data, &p, path, &t) {
                assert!(s.len() <= data.len() + 2);
            }
        }
        if let Some(part) = render::find_part(&p, path) {
            let _ = render::decode_body(data, part);
        }
    }
    let _ = mime::strict_check(data);
});
