#![no_main]
// A Sieve script (a user's upload, or one moved from a Cyrus server) on
// any input: never a panic; one that parses runs on a message without
// one either.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(script) = mumail::sieve::parse(data) {
        let raw: &[u8] = b"From: a <a@example.com>\r\nTo: u+x@example.org\r\nSubject: =?utf-8?q?caf=C3=A9?= re: 1\r\nX-Score: 12\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n--b--\r\n";
        let fields = mumail::mail::mime::fields(raw);
        let msg = mumail::sieve::Message {
            fields: &fields,
            size: 4096,
            env_from: "s@example.net",
            env_to: "u+x@example.org",
            raw,
            may_file: &|m| m.len() % 2 == 0,
            include: &|_, n| (n.len() % 3 == 0).then(|| mumail::sieve::parse(b"require \"fileinto\"; fileinto \"inc\";").map_err(|e| e.to_string())),
            environment: &|n| (n == "host").then(|| "mail.example.org".to_string()),
            seen: &|h, id| (h.len() + id.len()) % 2 == 0,
            lookup: &|q| match q {
                mumail::sieve::Query::SpecialUse(u) => (u == "\\Junk").then(|| "INBOX.Junk".to_string()),
                mumail::sieve::Query::Metadata(_, e) => e.starts_with("/private").then(|| "v".to_string()),
                _ => None,
            },
        };
        let _ = mumail::sieve::execute(&script, &msg, 1_700_000_000);
    }
});
