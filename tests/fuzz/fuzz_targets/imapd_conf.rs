#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // @include is filtered out: the fuzzer must not read arbitrary files.
    if data.windows(8).any(|w| w.eq_ignore_ascii_case(b"@include")) {
        return;
    }
    let _ = mumail::config::cyrus::ImapdConf::parse("imapd.conf", data, Some("imap"));
});
