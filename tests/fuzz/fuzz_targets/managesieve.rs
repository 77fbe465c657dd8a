#![no_main]
// The ManageSieve command parser on any input, consumed as timsieved
// consumes it: never a panic, each step uses no more than it was given
// and makes progress, a literal over the bound is never kept.  A string
// as a client sends it (quoted, else `{n+}`) parses back to itself.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    use mumail::proto::managesieve::*;
    let lim = Limits { line: 256, literal: 64 };
    let mut pos = 0;
    while pos < data.len() {
        match parse_command(&data[pos..], lim) {
            Parsed::Incomplete => break,
            Parsed::Done { used, value } => {
                assert!(used > 0 && pos + used <= data.len());
                if let Command::PutScript { script, .. } = &value {
                    assert!(script.len() <= lim.literal + lim.line);
                }
                pos += used;
            }
            Parsed::Bad { used, discard, to_eol, .. } => {
                assert!(pos + used <= data.len());
                // Skip as the session does.
                pos += used;
                pos = pos.saturating_add(discard.min(usize::MAX as u64) as usize).min(data.len());
                if to_eol {
                    match data[pos..].iter().position(|&b| b == b'\n') {
                        Some(i) => pos += i + 1,
                        None => break,
                    }
                } else if used == 0 {
                    break;
                }
            }
        }
    }
    let _ = parse_sasl_response(data, lim);
    if data.len() <= 64 {
        let mut line = b"NOOP ".to_vec();
        mumail::proto::imap::render::client_string(&mut line, data);
        line.extend_from_slice(b"\r\n");
        if let Parsed::Done { value: Command::Noop { tag: Some(t) }, .. } = parse_command(&line, lim) {
            if std::str::from_utf8(data).is_ok() {
                assert_eq!(t, data);
            }
        }
    }
});
