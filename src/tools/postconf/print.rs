//! postconf output formats: `name = value` with white space normalised,
//! `-f` folding at 80 columns with a 4-space indent, master.cf entries at
//! their column goals.

use crate::config::postfix::Service;

pub const LINE_LIMIT: usize = 80;
pub const INDENT: &str = "    ";

/// Joins words, folding before a word that would pass column 80.
pub fn fold_words<'a>(words: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::new();
    let mut len = 0;
    for w in words {
        if len > INDENT.len() && len + 1 + w.len() > LINE_LIMIT {
            out.push('\n');
            out.push_str(INDENT);
            len = INDENT.len();
        } else if len > 0 {
            out.push(' ');
            len += 1;
        }
        out.push_str(w);
        len += w.len();
    }
    out
}

/// One `name = value` line (no newline).
pub fn param_line(name: &str, value: &str, fold: bool) -> String {
    let words: Vec<&str> = value.split_ascii_whitespace().collect();
    if fold {
        fold_words([name, "="].into_iter().chain(words.iter().copied()))
    } else if words.is_empty() {
        format!("{name} =")
    } else {
        format!("{name} = {}", words.join(" "))
    }
}

/// A value alone (`-h`).
pub fn value_line(value: &str, fold: bool) -> String {
    let words: Vec<&str> = value.split_ascii_whitespace().collect();
    if fold {
        fold_words(words)
    } else {
        words.join(" ")
    }
}

/// A master.cf entry as `postconf -M` prints it.
pub fn master_entry(s: &Service, fold: bool) -> String {
    const GOALS: [usize; 7] = [0, 11, 17, 25, 33, 41, 49];
    let fields = [&s.name, &s.kind, &s.private, &s.unpriv, &s.chroot, &s.wakeup, &s.maxproc];
    let mut out = String::new();
    for (f, goal) in fields.iter().zip(GOALS) {
        if !out.is_empty() {
            loop {
                out.push(' ');
                if out.len() >= goal {
                    break;
                }
            }
        }
        out.push_str(f);
    }
    // Command column: at least one space, goal 57.
    loop {
        out.push(' ');
        if out.len() >= 57 {
            break;
        }
    }
    let args = s.display_args();
    out.push_str(&args[0]);
    let mut len = out.len();
    let mut in_options = true;
    let mut force_wrap = false;
    let mut i = 1;
    while i < args.len() {
        let mut item = args[i].clone();
        if in_options && !item.starts_with('-') {
            in_options = false;
        } else if in_options && item == "-o" && i + 1 < args.len() {
            item = format!("-o {}", args[i + 1]);
            i += 1;
            force_wrap = true;
        }
        let wrap = fold && (force_wrap || (len > INDENT.len() && len + 1 + item.len() >= LINE_LIMIT));
        if wrap {
            out.push('\n');
            out.push_str(INDENT);
            len = INDENT.len();
        } else {
            out.push(' ');
            len += 1;
        }
        // After an option with a value, the next item starts a new line.
        force_wrap = item.starts_with("-o ");
        out.push_str(&item);
        len += item.len();
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::postfix::MasterCf;

    #[test]
    fn fold_boundary() {
        // Postfix 3.7: a line of exactly 80 columns stays, 81 folds.
        let v = format!("bb {}", "x".repeat(66));
        assert_eq!(param_line("myorigin", &v, true).lines().next().unwrap().len(), 80);
        let v = format!("bb {}", "x".repeat(67));
        assert_eq!(param_line("myorigin", &v, true), format!("myorigin = bb\n    {}", "x".repeat(67)));
        assert_eq!(param_line("a", "  x \t y ", false), "a = x y");
        assert_eq!(param_line("a", "", false), "a =");
    }

    #[test]
    fn master_columns() {
        let cf = MasterCf::parse(
            "m",
            b"smtp inet n - n - - smtpd -o {a = b c} -o d=e\nlongservicename-here unix - - n - - smtp\n",
        )
        .unwrap();
        assert_eq!(
            master_entry(&cf.services[0], false),
            "smtp       inet  n       -       n       -       -       smtpd -o {a=b c} -o d=e"
        );
        assert_eq!(
            master_entry(&cf.services[0], true),
            "smtp       inet  n       -       n       -       -       smtpd\n    -o {a=b c}\n    -o d=e"
        );
        assert_eq!(
            master_entry(&cf.services[1], false),
            "longservicename-here unix - -    n       -       -       smtp"
        );
    }
}
