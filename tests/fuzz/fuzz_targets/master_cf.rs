#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(cf) = mumail::config::postfix::MasterCf::parse("master.cf", data) {
        for s in &cf.services {
            let _ = mumail::tools::postconf::print::master_entry(s, true);
            let _ = s.overrides();
        }
    }
});
