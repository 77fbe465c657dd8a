#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(c) = mumail::config::cyrus::CyrusConf::parse("cyrus.conf", data) {
        let _ = c.service_entries();
    }
});
