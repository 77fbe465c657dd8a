#![no_main]
// PROXY headers as a load balancer (or anyone) may send them: read as the
// smtpd reads them, a byte count at a time, `step` never panics and never
// asks for more than a bounded header.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    use mumail::proto::haproxy::{step, Step};
    let mut buf: Vec<u8> = Vec::new();
    loop {
        match step(&buf) {
            Ok(Step::Done(_)) | Err(_) => break,
            Ok(Step::Need(n)) => {
                assert!(n > 0 && buf.len() + n <= 16 + 4096, "asked {n} after {}", buf.len());
                if buf.len() + n > data.len() {
                    break;
                }
                buf.extend_from_slice(&data[buf.len()..buf.len() + n]);
            }
        }
    }
});
