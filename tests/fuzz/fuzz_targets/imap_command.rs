#![no_main]
use mumail::proto::imap::command::{literal_marker, parse, parse_section, CatPart, Kind};
use mumail::proto::imap::url;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    for line in data.split(|&c| c == b'\n') {
        let _ = literal_marker(line);
    }
    match parse(data) {
        // A parsed command has a non-empty tag without '+'.
        Ok(c) => {
            assert!(!c.tag.is_empty() && !c.tag.contains('+'));
            // The URLs of CATENATE and URLAUTH go through the URL parser,
            // and a parsed URL's section through the section grammar.
            let urls: Vec<String> = match c.kind {
                Kind::Append(_, msgs) => msgs
                    .into_iter()
                    .flat_map(|m| m.catenate)
                    .filter_map(|p| match p {
                        CatPart::Url(u) => Some(u),
                        CatPart::Text(_) => None,
                    })
                    .collect(),
                Kind::UrlFetch(v) => v.into_iter().map(|x| x.0).collect(),
                Kind::GenUrlAuth(v) => v.into_iter().map(|x| x.0).collect(),
                _ => Vec::new(),
            };
            for u in urls {
                if let Ok(p) = url::parse(&u) {
                    assert!(p.uid > 0 && p.rump.len() <= u.len());
                    if let Some(s) = p.section {
                        let _ = parse_section(s.as_bytes());
                    }
                }
            }
        }
        Err(e) => assert!(!e.text.is_empty()),
    }
});
