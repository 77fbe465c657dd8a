//! Delivery status notifications in Postfix's format (bounce(8) with the
//! default templates): non-delivery reports, delay warnings, success
//! reports and the postmaster's copies — RFC 3464 multipart/report with
//! the notification text, the delivery-status part with `X-Postfix-*`
//! fields, and the returned message (headers only for delay warnings,
//! with `RET=HDRS`, or beyond `bounce_size_limit`).

/// Which template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Failed,
    Delayed,
    Success,
}

/// One recipient in a report.
pub struct Failed<'a> {
    pub addr: &'a str,
    pub orcpt: Option<&'a str>,
    /// `failed`, `delayed`, `delivered`, `relayed`.
    pub action: &'a str,
    pub status: &'a str,
    /// Why, as logged (`host … said: … (in reply to … command)`).
    pub reason: &'a str,
    /// The remote reply (`550 5.1.1 …`) when a server gave one.
    pub diagnostic: Option<&'a str>,
    /// `dns; host` of the server that answered.
    pub remote_mta: Option<&'a str>,
}

pub struct Notice<'a> {
    pub kind: Kind,
    /// The notice goes to the postmaster (a copy, or a double bounce).
    pub postmaster: bool,
    /// Who gets it (`To:`).
    pub to: &'a str,
    /// Return only the headers (`RET=HDRS`).
    pub ret_hdrs: bool,
    /// RFC 3461 ENVID of the original.
    pub envid: Option<&'a str>,
    /// `maximal_queue_lifetime` and `delay_warning_time`, seconds.
    pub max_queue_time: i64,
    pub delay_warning_time: i64,
    pub myhostname: &'a str,
    pub myorigin: &'a str,
    pub mail_name: &'a str,
    /// The bounce's own queue ID.
    pub qid: &'a str,
    pub orig_qid: &'a str,
    pub sender: &'a str,
    pub arrival: i64,
    pub now: i64,
    pub size_limit: usize,
}

/// Folds `<addr>: reason` at 79 columns with 4-space continuation
/// lines, as bounce(8) prints recipient reasons.
fn fold(text: &str) -> String {
    let mut out = String::new();
    let mut col = 0;
    for (i, w) in text.split(' ').enumerate() {
        if i > 0 {
            if col + 1 + w.len() > 79 {
                out.push_str("\n    ");
                col = 4;
            } else {
                out.push(' ');
                col += 1;
            }
        }
        out.push_str(w);
        col += w.len();
    }
    out
}

fn date(t: i64) -> String {
    crate::util::codec::mail_date(t)
}

const CLOSING: &str = "For further assistance, please send mail to postmaster.\n\n\
    If you do so, please include this problem report. You can\n\
    delete your own text from the attached returned message.\n\n";

/// The template's subject and text (before "The mail system").
fn template(n: &Notice<'_>) -> (&'static str, String) {
    match n.kind {
        Kind::Failed => (
            if n.postmaster {
                "Postmaster Copy: Undelivered Mail"
            } else {
                "Undelivered Mail Returned to Sender"
            },
            format!(
                "I'm sorry to have to inform you that your message could not\n\
                 be delivered to one or more recipients. It's attached below.\n\n{CLOSING}"
            ),
        ),
        Kind::Delayed => (
            if n.postmaster {
                "Postmaster Warning: Delayed Mail"
            } else {
                "Delayed Mail (still being retried)"
            },
            format!(
                "####################################################################\n\
                 # THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\n\
                 ####################################################################\n\n\
                 Your message could not be delivered for more than {} hour(s).\n\
                 It will be retried until it is {} day(s) old.\n\n{CLOSING}",
                n.delay_warning_time / 3600,
                n.max_queue_time / 86400
            ),
        ),
        Kind::Success => (
            "Successful Mail Delivery Report",
            "Your message was successfully delivered to the destination(s)\n\
             listed below. If the message was delivered to mailbox you will\n\
             receive no further notifications. Otherwise you may still receive\n\
             notifications of mail delivery errors from other systems.\n\n"
                .to_string(),
        ),
    }
}

/// The complete notification message (CRLF line ends).
pub fn build(n: &Notice<'_>, failed: &[Failed<'_>], original: &[u8]) -> Vec<u8> {
    let boundary = format!("{}.{}/{}", n.orig_qid, n.now, n.myhostname);
    let (y, mo, d, hh, mi, ss, _) = crate::util::codec::civil(n.now);
    let (subject, text) = template(n);
    let mut m = String::new();
    m.push_str(&format!(
        "Received: by {} ({})\n\tid {}; {}\n",
        n.myhostname,
        n.mail_name,
        n.qid,
        date(n.now)
    ));
    m.push_str(&format!("Date: {}\n", date(n.now)));
    m.push_str(&format!("From: Mail Delivery System <MAILER-DAEMON@{}>\n", n.myorigin));
    m.push_str(&format!("Subject: {subject}\n"));
    m.push_str(&format!("To: {}\n", n.to));
    m.push_str("Auto-Submitted: auto-replied\nMIME-Version: 1.0\n");
    m.push_str(&format!(
        "Content-Type: multipart/report; report-type=delivery-status;\n\tboundary=\"{boundary}\"\n"
    ));
    m.push_str("Content-Transfer-Encoding: 8bit\n");
    m.push_str(&format!(
        "Message-Id: <{y:04}{mo:02}{d:02}{hh:02}{mi:02}{ss:02}.{}@{}>\n\n",
        n.qid, n.myhostname
    ));
    m.push_str("This is a MIME-encapsulated message.\n\n");
    m.push_str(&format!(
        "--{boundary}\nContent-Description: Notification\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
    ));
    m.push_str(&format!(
        "This is the mail system at host {}.\n\n{text}{:>19}The mail system\n\n",
        n.myhostname, ""
    ));
    for f in failed {
        m.push_str(&fold(&format!("<{}>: {}", f.addr, f.reason)));
        m.push('\n');
    }
    m.push_str(&format!(
        "\n--{boundary}\nContent-Description: Delivery report\nContent-Type: message/delivery-status\n\n"
    ));
    m.push_str(&format!(
        "Reporting-MTA: dns; {}\nX-Postfix-Queue-ID: {}\n",
        n.myhostname, n.orig_qid
    ));
    m.push_str(&format!("X-Postfix-Sender: rfc822; {}\n", n.sender));
    if let Some(e) = n.envid {
        m.push_str(&format!("Original-Envelope-Id: {e}\n"));
    }
    m.push_str(&format!("Arrival-Date: {}\n", date(n.arrival)));
    for f in failed {
        m.push_str(&format!("\nFinal-Recipient: rfc822; {}\n", f.addr));
        if let Some(o) = f.orcpt {
            m.push_str(&format!("Original-Recipient: {o}\n"));
        }
        m.push_str(&format!("Action: {}\nStatus: {}\n", f.action, f.status));
        if let Some(r) = f.remote_mta {
            m.push_str(&format!("Remote-MTA: {r}\n"));
        }
        match f.diagnostic {
            Some(d) => m.push_str(&format!("Diagnostic-Code: smtp; {d}\n")),
            None => m.push_str(&format!("Diagnostic-Code: X-Postfix; {}\n", f.reason)),
        }
        if n.kind == Kind::Delayed {
            m.push_str(&format!("Will-Retry-Until: {}\n", date(n.arrival + n.max_queue_time)));
        }
    }
    // Postmaster copies and delay warnings carry only the headers.
    let headers_only = n.ret_hdrs || n.postmaster || n.kind == Kind::Delayed || original.len() > n.size_limit;
    let (ctype, body): (&str, &[u8]) = if headers_only {
        let he = crate::mail::mime::header_end(original).0;
        ("text/rfc822-headers", &original[..he.min(original.len())])
    } else {
        ("message/rfc822", original)
    };
    let what = match n.kind {
        Kind::Failed => "Undelivered ",
        Kind::Delayed => "Delayed ",
        Kind::Success => "Delivered ",
    };
    m.push_str(&format!(
        "\n--{boundary}\nContent-Description: {what}{}\nContent-Type: {ctype}\nContent-Transfer-Encoding: 8bit\n\n",
        if headers_only { "Message Headers" } else { "Message" }
    ));
    m.push_str(&format!("Return-Path: <{}>\n", n.sender));
    let mut out = m.replace('\n', "\r\n").into_bytes();
    out.extend_from_slice(body);
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape() {
        let mut n = Notice {
            kind: Kind::Failed,
            postmaster: false,
            to: "sender@example.com",
            ret_hdrs: false,
            envid: None,
            max_queue_time: 5 * 86400,
            delay_warning_time: 4 * 3600,
            myhostname: "hub.example.com",
            myorigin: "example.com",
            mail_name: "Postfix",
            qid: "568439A8025",
            orig_qid: "48ABD9A8005",
            sender: "sender@example.com",
            arrival: 1_795_889_074,
            now: 1_795_889_074,
            size_limit: 50000,
        };
        let f = [Failed {
            addr: "carol@example.com",
            orcpt: Some("rfc822;carol@example.com"),
            action: "failed",
            status: "5.1.1",
            reason:
                "host hub.example.com[/var/lib/imap/socket/lmtp] said: 550 5.1.1 Mailbox does not exist (in reply to end of DATA command)",
            diagnostic: Some("550 5.1.1 Mailbox does not exist"),
            remote_mta: Some("dns; hub.example.com"),
        }];
        let m = String::from_utf8(build(&n, &f, b"Subject: hi\r\n\r\nbody\r\n")).unwrap();
        assert!(m.contains("\r\nSubject: Undelivered Mail Returned to Sender\r\n"));
        assert!(m.contains("From: Mail Delivery System <MAILER-DAEMON@example.com>\r\n"));
        assert!(m.contains("boundary=\"48ABD9A8005.1795889074/hub.example.com\""));
        assert!(m.contains("<carol@example.com>: host hub.example.com[/var/lib/imap/socket/lmtp] said: 550\r\n    5.1.1 Mailbox does not exist (in reply to end of DATA command)\r\n"));
        assert!(
            m.contains("Status: 5.1.1\r\nRemote-MTA: dns; hub.example.com\r\nDiagnostic-Code: smtp; 550 5.1.1 Mailbox does not exist\r\n")
        );
        assert!(m.contains(
            "Return-Path: <sender@example.com>\r\nSubject: hi\r\n\r\nbody\r\n\r\n--48ABD9A8005.1795889074/hub.example.com--\r\n"
        ));
        assert!(m.contains("                   The mail system\r\n"));
        n.kind = Kind::Delayed;
        let m = String::from_utf8(build(&n, &f, b"Subject: hi\r\n\r\nbody\r\n")).unwrap();
        assert!(m.contains("\r\nSubject: Delayed Mail (still being retried)\r\n"));
        assert!(
            m.contains("Your message could not be delivered for more than 4 hour(s).\r\nIt will be retried until it is 5 day(s) old.\r\n")
        );
        assert!(m.contains("Will-Retry-Until: "));
        assert!(m.contains("Content-Description: Delayed Message Headers\r\nContent-Type: text/rfc822-headers\r\n"));
        assert!(!m.contains("body"));
        n.kind = Kind::Failed;
        n.postmaster = true;
        let m = String::from_utf8(build(&n, &f, b"Subject: hi\r\n\r\nbody\r\n")).unwrap();
        assert!(m.contains("\r\nSubject: Postmaster Copy: Undelivered Mail\r\n"));
    }
}
