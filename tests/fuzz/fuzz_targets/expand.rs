#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let f = |n: &str| match n {
        "a" => Some("$b".to_string()),
        "b" => Some(text.to_string()),
        "compatibility_level" => Some("2".to_string()),
        _ => None,
    };
    let mut e = mumail::config::postfix::expand::Expander::new(&f);
    let _ = e.expand(&text);
});
