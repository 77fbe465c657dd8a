#![no_main]
// The MUPDATE parsers on any input: never a panic.  A command's
// arguments survive rendering and re-parsing; a response parser that
// consumes input consumes no more than it was given; a data response
// rendered from its own fields parses back to itself.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    use mumail::proto::mupdate::*;
    let p = parse_command(data);
    if let Ok(Kind::Activate { name, location, acl }) = &p.cmd {
        let again = render_command("t", "ACTIVATE", &[name, location, acl]);
        assert_eq!(parse_command(&again).cmd, p.cmd);
    }
    let mut pos = 0;
    while let Ok(Some((r, n))) = parse_response(&data[pos..]) {
        assert!(n > 0 && pos + n <= data.len());
        pos += n;
        if let Response::Mailbox { tag, name, location, acl } = &r {
            if !tag.is_empty() && tag.bytes().all(|c| c.is_ascii_alphanumeric()) {
                let mut out = Vec::new();
                render_mailbox(&mut out, tag, name, location, acl);
                if let Ok(Some((back, m))) = parse_response(&out) {
                    assert_eq!(m, out.len());
                    assert_eq!(back, r);
                }
            }
        }
    }
});
