#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(cf) = mumail::config::postfix::MainCf::parse("main.cf", data) {
        let p = mumail::config::postfix::Params { main: cf, ..Default::default() };
        for n in p.main.entries.keys() {
            let _ = p.get(n);
        }
        let _ = p.unused();
    }
});
