//! Postfix list values: elements separated by `, \t\r\n`, with `{ }` grouping
//! that protects white space (`mystrtokq` with CHARS_COMMA_SP / CHARS_BRACE).

/// Splits `text` into tokens at any of `seps`, keeping `{...}` groups whole.
pub fn tokens<'a>(text: &'a str, seps: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && seps.as_bytes().contains(&b[i]) {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let start = i;
        let mut level = 0i32;
        while i < b.len() {
            match b[i] {
                b'{' => level += 1,
                b'}' => level -= 1,
                c if level <= 0 && seps.as_bytes().contains(&c) => break,
                _ => {}
            }
            i += 1;
        }
        out.push(&text[start..i]);
    }
    out
}

/// A list parameter's elements (`a, b {c d}` → `a`, `b`, `{c d}`).
pub fn split_list(text: &str) -> Vec<&str> {
    tokens(text, ", \t\r\n")
}

/// Strips one `{ }` pair and the white space inside it (Postfix `extpar`).
/// Returns the payload and whether the closing brace was missing.
pub fn strip_braces(tok: &str) -> (&str, bool) {
    match tok.strip_prefix('{') {
        Some(rest) => match rest.strip_suffix('}') {
            Some(inner) => (inner.trim(), false),
            None => (rest.trim(), true),
        },
        None => (tok, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists() {
        assert_eq!(split_list("a, b,c\td"), vec!["a", "b", "c", "d"]);
        assert_eq!(split_list("inline:{ {k = v w} }, x"), vec!["inline:{ {k = v w} }", "x"]);
        assert_eq!(split_list(" ,, "), Vec::<&str>::new());
        assert_eq!(strip_braces("{ a = b }"), ("a = b", false));
        assert_eq!(strip_braces("{a = b"), ("a = b", true));
    }
}
