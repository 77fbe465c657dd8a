#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = mumail::config::sasl::Sysconfig::parse("sysconfig", data);
    let _ = mumail::config::sasl::SaslauthdConf::parse("saslauthd.conf", data);
});
