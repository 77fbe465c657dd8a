//! The queue listing of `mailq` / `postqueue -p` (Postfix's showq and
//! showq_compat formats) and `postqueue -j` (one JSON object per message),
//! read from the queue files and the `defer/` logs.  Queues are listed in
//! showq's order: incoming, active, deferred, hold.

use super::{Queue, QueueName};
use crate::util::json::quote;

/// One message as listed.
pub struct Entry {
    pub queue: QueueName,
    pub qid: String,
    pub arrival: i64,
    pub size: u64,
    pub sender: String,
    /// Open recipients with their last deferral reason.
    pub rcpts: Vec<(String, Option<String>)>,
}

/// Reads the defer log of a message: `recipient TAB reason` lines.
pub fn defer_reasons(q: &Queue, qid: &str) -> Vec<(String, String)> {
    std::fs::read_to_string(q.defer_log(qid))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('\t').map(|(a, r)| (a.to_string(), r.to_string())))
        .collect()
}

/// Every message in the queues.
pub fn entries(q: &Queue) -> Vec<Entry> {
    let mut out = Vec::new();
    for name in [QueueName::Incoming, QueueName::Active, QueueName::Deferred, QueueName::Hold] {
        for (qid, _) in q.list(name).unwrap_or_default() {
            let Ok((env, content)) = q.read(name, &qid) else { continue };
            let reasons = defer_reasons(q, &qid);
            let rcpts = env
                .rcpts
                .iter()
                .filter(|r| !r.done)
                .map(|r| {
                    (
                        r.addr.clone(),
                        reasons.iter().find(|(a, _)| *a == r.addr).map(|(_, why)| why.clone()),
                    )
                })
                .collect();
            out.push(Entry {
                queue: name,
                qid,
                arrival: env.arrival.0,
                size: content.len() as u64,
                sender: env.sender,
                rcpts,
            });
        }
    }
    out
}

fn status(q: QueueName) -> &'static str {
    match q {
        QueueName::Active => "*",
        QueueName::Hold => "!",
        _ => "",
    }
}

/// `mailq` output.  `empty_sender` is `$empty_address_recipient`.
pub fn listing(entries: &[Entry], empty_sender: &str) -> String {
    if entries.is_empty() {
        return "Mail queue is empty\n".into();
    }
    let mut out = format!(
        "{:<11} {:>7} {:<20} {}\n",
        "-Queue ID-", "--Size--", "----Arrival Time----", "-Sender/Recipient-------"
    );
    let mut total = 0u64;
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        total += e.size;
        let sender = if e.sender.is_empty() { empty_sender } else { &e.sender };
        let when: String = crate::util::codec::ctime(e.arrival).chars().take(20).collect();
        out.push_str(&format!(
            "{:<11} {:>7} {:<20.20} {}\n",
            format!("{}{}", e.qid, status(e.queue)),
            e.size,
            when,
            sender
        ));
        // Recipients with a reason first (as the defer log lists them),
        // the reason printed when it changes; then the others.
        let mut last: Option<&str> = None;
        for (addr, why) in e.rcpts.iter().filter(|(_, w)| w.is_some()) {
            let why = why.as_deref().unwrap_or("");
            if last != Some(why) {
                let pad = 76usize.saturating_sub(why.len());
                out.push_str(&format!("{:pad$}({why})\n", ""));
                last = Some(why);
            }
            out.push_str(&format!("{:<11} {:>7} {:<20} {addr}\n", "", "", ""));
        }
        for (addr, _) in e.rcpts.iter().filter(|(_, w)| w.is_none()) {
            out.push_str(&format!("{:<11} {:>7} {:<20} {addr}\n", "", "", ""));
        }
    }
    let n = entries.len();
    out.push_str(&format!(
        "\n-- {} Kbytes in {n} Request{}.\n",
        total / 1024,
        if n == 1 { "" } else { "s" }
    ));
    out
}

/// `postqueue -j` output.
pub fn json(entries: &[Entry], empty_sender: &str) -> String {
    let mut out = String::new();
    for e in entries {
        let sender = if e.sender.is_empty() { empty_sender } else { &e.sender };
        let rcpts: Vec<String> = e
            .rcpts
            .iter()
            .map(|(a, w)| match w {
                Some(w) => format!("{{\"address\": {}, \"delay_reason\": {}}}", quote(a), quote(w)),
                None => format!("{{\"address\": {}}}", quote(a)),
            })
            .collect();
        out.push_str(&format!(
            "{{\"queue_name\": {}, \"queue_id\": {}, \"arrival_time\": {}, \"message_size\": {}, \"forced_expire\": false, \"sender\": {}, \"recipients\": [{}]}}\n",
            quote(e.queue.as_str()),
            quote(&e.qid),
            e.arrival,
            e.size,
            quote(sender),
            rcpts.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_as_postfix() {
        let why = "connect to hub.example.com[/tmp/pfq/nonexist]: No such file or directory";
        let es = vec![
            Entry {
                queue: QueueName::Deferred,
                qid: "3ACCC999189".into(),
                arrival: 0,
                size: 420,
                sender: "sender@example.org".into(),
                rcpts: vec![
                    ("bob@example.com".into(), Some(why.into())),
                    ("carol@example.com".into(), Some(why.into())),
                ],
            },
            Entry {
                queue: QueueName::Hold,
                qid: "53F2C99918F".into(),
                arrival: 0,
                size: 415,
                sender: String::new(),
                rcpts: vec![("held@example.com".into(), None)],
            },
        ];
        let l = listing(&es, "MAILER-DAEMON");
        let lines: Vec<&str> = l.lines().collect();
        assert_eq!(lines[0], "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------");
        assert!(
            lines[1].starts_with("3ACCC999189     420 ") && lines[1].ends_with("  sender@example.org"),
            "{}",
            lines[1]
        );
        assert_eq!(lines[2], format!("    ({why})"));
        assert_eq!(lines[3], format!("{:41}bob@example.com", ""));
        assert!(
            lines[6].starts_with("53F2C99918F!     415 ") && lines[6].ends_with("  MAILER-DAEMON"),
            "{}",
            lines[6]
        );
        assert_eq!(*lines.last().unwrap(), "-- 0 Kbytes in 2 Requests.");
        assert_eq!(listing(&[], "x"), "Mail queue is empty\n");
        let j = json(&es[1..], "MAILER-DAEMON");
        assert_eq!(
            j,
            "{\"queue_name\": \"hold\", \"queue_id\": \"53F2C99918F\", \"arrival_time\": 0, \"message_size\": 415, \"forced_expire\": false, \"sender\": \"MAILER-DAEMON\", \"recipients\": [{\"address\": \"held@example.com\"}]}\n"
        );
    }
}
