//! A small JSON reader and string quoting, for the text formats Cyrus's
//! tools exchange (`ctl_mboxlist -d` dumps).  Numbers, booleans and null
//! are kept as their text.

#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Str(String),
    /// A number, `true`, `false` or `null`, as written.
    Scalar(String),
    Array(Vec<Json>),
    /// Members in document order.
    Object(Vec<(String, Json)>),
}

impl Json {
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) | Json::Scalar(s) => Some(s),
            _ => None,
        }
    }
}

/// Parses one JSON value (nesting limited to 64); Err names the byte offset.
pub fn parse(text: &str) -> Result<Json, String> {
    let b = text.as_bytes();
    let mut i = 0;
    let v = value(b, &mut i, 0)?;
    skip_ws(b, &mut i);
    if i != b.len() {
        return Err(format!("trailing data at byte {i}"));
    }
    Ok(v)
}

fn skip_ws(b: &[u8], i: &mut usize) {
    while *i < b.len() && b[*i].is_ascii_whitespace() {
        *i += 1;
    }
}

fn value(b: &[u8], i: &mut usize, depth: usize) -> Result<Json, String> {
    if depth > 64 {
        return Err("nesting too deep".into());
    }
    skip_ws(b, i);
    match b.get(*i) {
        Some(b'"') => Ok(Json::Str(string(b, i)?)),
        Some(b'{') => {
            *i += 1;
            let mut m = Vec::new();
            loop {
                skip_ws(b, i);
                if b.get(*i) == Some(&b'}') {
                    *i += 1;
                    return Ok(Json::Object(m));
                }
                if !m.is_empty() {
                    if b.get(*i) != Some(&b',') {
                        return Err(format!("expected , at byte {i}"));
                    }
                    *i += 1;
                    skip_ws(b, i);
                    // Cyrus 3.6's dump can end an object with ",}".
                    if b.get(*i) == Some(&b'}') {
                        *i += 1;
                        return Ok(Json::Object(m));
                    }
                }
                if b.get(*i) != Some(&b'"') {
                    return Err(format!("expected a key at byte {i}"));
                }
                let k = string(b, i)?;
                skip_ws(b, i);
                if b.get(*i) != Some(&b':') {
                    return Err(format!("expected : at byte {i}"));
                }
                *i += 1;
                m.push((k, value(b, i, depth + 1)?));
            }
        }
        Some(b'[') => {
            *i += 1;
            let mut a = Vec::new();
            loop {
                skip_ws(b, i);
                if b.get(*i) == Some(&b']') {
                    *i += 1;
                    return Ok(Json::Array(a));
                }
                if !a.is_empty() {
                    if b.get(*i) != Some(&b',') {
                        return Err(format!("expected , at byte {i}"));
                    }
                    *i += 1;
                }
                a.push(value(b, i, depth + 1)?);
            }
        }
        Some(_) => {
            let start = *i;
            while *i < b.len() && (b[*i].is_ascii_alphanumeric() || matches!(b[*i], b'-' | b'+' | b'.')) {
                *i += 1;
            }
            if start == *i {
                return Err(format!("unexpected byte at {start}"));
            }
            Ok(Json::Scalar(String::from_utf8_lossy(&b[start..*i]).into()))
        }
        None => Err("unexpected end".into()),
    }
}

fn string(b: &[u8], i: &mut usize) -> Result<String, String> {
    *i += 1;
    let mut out: Vec<u8> = Vec::new();
    while let Some(&c) = b.get(*i) {
        *i += 1;
        match c {
            b'"' => return String::from_utf8(out).map_err(|_| "string is not UTF-8".into()),
            b'\\' => {
                let e = *b.get(*i).ok_or("unexpected end")?;
                *i += 1;
                match e {
                    b'n' => out.push(b'\n'),
                    b't' => out.push(b'\t'),
                    b'r' => out.push(b'\r'),
                    b'b' => out.push(8),
                    b'f' => out.push(12),
                    b'u' => {
                        let hex = b.get(*i..*i + 4).ok_or("short \\u escape")?;
                        *i += 4;
                        let n = u32::from_str_radix(std::str::from_utf8(hex).map_err(|_| "bad \\u")?, 16).map_err(|_| "bad \\u escape")?;
                        let ch = char::from_u32(n).unwrap_or('\u{FFFD}');
                        out.extend_from_slice(ch.to_string().as_bytes());
                    }
                    other => out.push(other),
                }
            }
            _ => out.push(c),
        }
    }
    Err("unterminated string".into())
}

/// A JSON string literal.
pub fn quote(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            '\r' => o.push_str("\\r"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cyrus_dump_shapes() {
        let v = parse("{\n\"a\": {\"name\": \"a\", \"acl\": {\"anyone\": \"lrs\"}, \"h\": [], \"n\": 12},\n}").unwrap();
        let a = v.get("a").unwrap();
        assert_eq!(a.get("acl").unwrap().get("anyone").unwrap().as_str(), Some("lrs"));
        assert_eq!(a.get("n").unwrap().as_str(), Some("12"));
        assert_eq!(parse(&quote("x\"\t\\é")).unwrap(), Json::Str("x\"\t\\é".into()));
        assert!(parse("{\"a\": ").is_err());
        assert!(parse(&"[".repeat(100)).is_err());
    }
}
