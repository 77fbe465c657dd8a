#![no_main]
// The SMTP command parser on any line: never a panic; every parsed path
// re-parses to itself.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    use mumail::proto::smtp::{check_path, parse, Command};
    match parse(data) {
        Command::Mail(p, _) | Command::Rcpt(p, _) => {
            assert_eq!(check_path(&p).as_deref(), Some(p.as_str()));
        }
        _ => {}
    }
});
