//! Addresses in header fields (To/Cc/Bcc for `sendmail -t`): a
//! comma-separated list of `Name <addr>`, bare `addr`, and groups
//! `name: a, b;`, with quoted strings and comments skipped.

/// The addresses of one header value, in order.
pub fn header_addresses(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut angle: Option<String> = None;
    let (mut in_q, mut depth, mut in_angle) = (false, 0usize, false);
    let flush = |cur: &mut String, angle: &mut Option<String>, out: &mut Vec<String>| {
        let a = match angle.take() {
            Some(a) => a,
            None => cur.trim().to_string(),
        };
        let a = a.trim().to_string();
        if !a.is_empty() && !a.contains(' ') {
            out.push(a);
        }
        cur.clear();
    };
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if in_q || depth > 0 => {
                chars.next();
            }
            '"' if depth == 0 && !in_angle => in_q = !in_q,
            '(' if !in_q => depth += 1,
            ')' if !in_q && depth > 0 => depth -= 1,
            _ if in_q || depth > 0 => {}
            '<' => {
                in_angle = true;
                angle = Some(String::new());
            }
            '>' if in_angle => in_angle = false,
            // A group's display name ends at ':'; its list at ';'.
            ':' if !in_angle => cur.clear(),
            ',' | ';' if !in_angle => flush(&mut cur, &mut angle, &mut out),
            c if in_angle => {
                if let Some(a) = angle.as_mut() {
                    a.push(c);
                }
            }
            c => cur.push(c),
        }
    }
    flush(&mut cur, &mut angle, &mut out);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn lists_groups_and_comments() {
        assert_eq!(
            super::header_addresses("\"Doe, J\" <j@x.org>, b@y.org (Bob), team: c@z.org, d@z.org;, <e@w.org>"),
            ["j@x.org", "b@y.org", "c@z.org", "d@z.org", "e@w.org"]
        );
        assert_eq!(super::header_addresses("undisclosed-recipients:;"), Vec::<String>::new());
    }
}
