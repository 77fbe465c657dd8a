//! RFC 5293 editheader: the header a script's addheader and deleteheader
//! leave, which later tests read and the recipient's copies carry.

/// A field name `addheader`/`deleteheader` may name (RFC 5322 ftext).
pub fn valid_field_name(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}

/// Fields `deleteheader` leaves alone (RFC 5293 9: the trace of how the
/// message came); they may be added.
pub(crate) fn protected_field(name: &str) -> bool {
    name.eq_ignore_ascii_case("received") || name.eq_ignore_ascii_case("auto-submitted")
}

/// The header as `editheader` changed it: each field parsed (a name of
/// "" for a line that is not a field) and as it is written.
pub(super) struct Edited {
    pub(super) fields: Vec<(String, Vec<u8>)>,
    pub(super) raw: Vec<Vec<u8>>,
}

impl Edited {
    pub(super) fn of(raw_msg: &[u8]) -> Edited {
        let (end, _) = crate::mail::mime::header_end(raw_msg);
        let mut head = &raw_msg[..end];
        // Without the empty line that ends it.
        head = head.strip_suffix(b"\r\n").or_else(|| head.strip_suffix(b"\n")).unwrap_or(head);
        let mut raw: Vec<Vec<u8>> = Vec::new();
        for line in head.split_inclusive(|&c| c == b'\n') {
            match raw.last_mut() {
                Some(last) if matches!(line.first(), Some(b' ' | b'\t')) => last.extend_from_slice(line),
                _ => raw.push(line.to_vec()),
            }
        }
        for r in &mut raw {
            if !r.ends_with(b"\n") {
                r.extend_from_slice(b"\r\n");
            }
        }
        let fields = raw.iter().map(|r| crate::mail::mime::fields(r).pop().unwrap_or_default()).collect();
        Edited { fields, raw }
    }

    pub(super) fn add(&mut self, last: bool, name: &str, value: &str) {
        let v = encode_header_value(value);
        let raw = format!("{name}: {v}\r\n").into_bytes();
        let parsed = crate::mail::mime::fields(&raw).pop().unwrap_or_default();
        if last {
            self.fields.push(parsed);
            self.raw.push(raw);
        } else {
            self.fields.insert(0, parsed);
            self.raw.insert(0, raw);
        }
    }
}

/// An `addheader` value as a field's: unfolded, and in RFC 2047 encoded
/// words when it is not ASCII.
fn encode_header_value(v: &str) -> String {
    let v: String = v.chars().map(|c| if c == '\r' || c == '\n' { ' ' } else { c }).collect();
    if v.is_ascii() {
        return v;
    }
    let mut words = Vec::new();
    let mut cur = String::new();
    for c in v.chars() {
        let mut e = String::new();
        if c.is_ascii_alphanumeric() || "!*+-/".contains(c) {
            e.push(c);
        } else if c == ' ' {
            e.push('_');
        } else {
            let mut b = [0u8; 4];
            for x in c.encode_utf8(&mut b).bytes() {
                e.push_str(&format!("={x:02X}"));
            }
        }
        if cur.len() + e.len() > 63 {
            words.push(std::mem::take(&mut cur));
        }
        cur.push_str(&e);
    }
    words.push(cur);
    words.iter().map(|w| format!("=?UTF-8?Q?{w}?=")).collect::<Vec<_>>().join("\r\n ")
}
