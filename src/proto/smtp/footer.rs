//! `smtpd_reject_footer`: text appended to a 4XX/5XX reply, each footer
//! line repeating the reply's code and enhanced status code (Postfix's
//! smtp_reply_footer).  In the template `\n` starts a new line and a
//! leading `\c` joins the first footer line to the reply's last line;
//! `$name`, `${name}` and `$(name)` are replaced by `lookup`'s value (none:
//! empty).

/// `reply` (one or more lines joined by CRLF, without a final CRLF) with
/// the footer; the reply as it was when it is not an SMTP reply.
pub fn add_footer(reply: &str, template: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let lines: Vec<&str> = reply.split("\r\n").collect();
    let well_formed = lines.iter().all(|l| {
        let b = l.as_bytes();
        b.len() >= 3 && b[..3].iter().all(u8::is_ascii_digit) && matches!(b.get(3), None | Some(b' ') | Some(b'-'))
    });
    let Some(last) = lines.last().filter(|_| well_formed && !template.is_empty()) else {
        return reply.to_string();
    };
    let code = &last[..3];
    let status = last
        .get(4..)
        .and_then(|t| t.split(' ').next())
        .filter(|d| super::enhanced_status(d));
    let prefix = |more: bool| {
        let sep = if more { '-' } else { ' ' };
        match status {
            Some(d) => format!("{code}{sep}{d} "),
            None => format!("{code}{sep}"),
        }
    };
    let mut out = reply.to_string();
    let parts: Vec<&str> = template.split("\\n").collect();
    let mut added = false;
    for (i, part) in parts.iter().enumerate() {
        let more = i + 1 < parts.len();
        let text = match part.strip_prefix("\\c").filter(|_| i == 0) {
            Some(rest) => rest,
            None => {
                out.push_str("\r\n");
                out.push_str(&prefix(more));
                added = true;
                part
            }
        };
        out.push_str(&expand(text, lookup));
    }
    if added {
        // The reply's last line now has lines after it.
        let at = reply.len() - last.len() + 3;
        if reply.len() > at {
            out.replace_range(at..at + 1, "-");
        } else {
            out.insert(at, '-');
        }
    }
    out
}

/// `$name`, `${name}`, `$(name)`; `$$` is a dollar sign.
fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, tail) = match after.chars().next() {
            Some('$') => {
                out.push('$');
                rest = &after[1..];
                continue;
            }
            Some(open @ ('{' | '(')) => {
                let close = if open == '{' { '}' } else { ')' };
                match after.find(close) {
                    Some(j) => (&after[1..j], &after[j + 1..]),
                    None => (after, ""),
                }
            }
            _ => {
                let n = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..n], &after[n..])
            }
        };
        out.push_str(&lookup(name).unwrap_or_default());
        rest = tail;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<String> {
        match name {
            "client_address" => Some("192.0.2.9".into()),
            "server_name" => Some("mx.example.edu".into()),
            _ => None,
        }
    }

    #[test]
    fn footers() {
        let f = |r: &str, t: &str| add_footer(r, t, &vars);
        assert_eq!(f("554 5.7.1 Go away", "Call 555"), "554-5.7.1 Go away\r\n554 5.7.1 Call 555");
        assert_eq!(f("450 Later", "x\\ny"), "450-Later\r\n450-x\r\n450 y");
        assert_eq!(
            f("550 5.1.1 Unknown", "\\c (see $server_name)"),
            "550 5.1.1 Unknown (see mx.example.edu)"
        );
        assert_eq!(
            f("550-5.1.1 One\r\n451 4.3.0 Two", "client ${client_address}$(nothing)"),
            "550-5.1.1 One\r\n451-4.3.0 Two\r\n451 4.3.0 client 192.0.2.9"
        );
        assert_eq!(f("550 5.1.1 x", "\\cA\\nB"), "550-5.1.1 xA\r\n550 5.1.1 B");
        assert_eq!(f("550 costs $$5", "$$"), "550-costs $$5\r\n550 $");
        // Not an SMTP reply: unchanged.
        assert_eq!(f("hello", "x"), "hello");
        assert_eq!(f("5500 x", "x"), "5500 x");
    }
}
