//! master.cf editing (`postconf -M name/type=entry`, `-MX`, `-M#`,
//! `-F name/type/field=value`, `-P name/type/param=value`, `-PX`).  An
//! edited entry is rewritten as `postconf -Mf` prints it; everything else in
//! the file stays byte for byte, comment lines inside an entry included.

use super::print::master_entry;
use crate::config::postfix::master_cf::{MasterCf, Service, FIELD_NAMES};

pub enum Op {
    /// `-M name/type=whole entry`
    SetEntry(String, String),
    RemoveEntry(String),
    CommentEntry(String),
    /// `-F name/type/field=value`
    SetField(String, String, String),
    /// `-P name/type/param=value`
    SetParam(String, String, String),
    RemoveParam(String, String),
}

fn split_key(k: &str) -> Option<(&str, &str, Option<&str>)> {
    let mut p = k.splitn(3, '/');
    let n = p.next()?;
    let t = p.next()?;
    Some((n, t, p.next()))
}

/// Parses the operands of one edit mode into operations.
pub fn parse_ops(mode: char, remove: bool, comment: bool, operands: &[String]) -> Result<Vec<Op>, String> {
    let mut ops = Vec::new();
    for o in operands {
        let op = match (mode, remove, comment) {
            ('M', true, _) => Op::RemoveEntry(o.clone()),
            ('M', _, true) => Op::CommentEntry(o.clone()),
            ('M', _, _) => {
                let (k, v) = o
                    .split_once('=')
                    .ok_or_else(|| format!("missing '=' after attribute name: \"{o}\""))?;
                Op::SetEntry(k.trim().to_string(), v.trim().to_string())
            }
            ('P', true, _) => {
                let (k, p) = o
                    .rsplit_once('/')
                    .ok_or_else(|| format!("-PX requires service_name/type/parameter arguments: \"{o}\""))?;
                Op::RemoveParam(k.to_string(), p.to_string())
            }
            ('P', _, _) | ('F', _, _) => {
                let (k, v) = o
                    .split_once('=')
                    .ok_or_else(|| format!("missing '=' after attribute name: \"{o}\""))?;
                let (k, name) = k
                    .trim()
                    .rsplit_once('/')
                    .ok_or_else(|| format!("invalid parameter specification: \"{o}\""))?;
                let v = v.trim().to_string();
                if mode == 'P' {
                    if v.contains(|c: char| c.is_ascii_whitespace()) {
                        return Err("-Pe does not accept whitespace in parameter value".into());
                    }
                    Op::SetParam(k.to_string(), name.to_string(), v)
                } else {
                    Op::SetField(k.to_string(), name.to_string(), v)
                }
            }
            _ => return Err(format!("-{mode}X and -{mode}# are not supported")),
        };
        ops.push(op);
    }
    Ok(ops)
}

fn target(op: &Op) -> &str {
    match op {
        Op::SetEntry(k, _)
        | Op::RemoveEntry(k)
        | Op::CommentEntry(k)
        | Op::SetField(k, _, _)
        | Op::SetParam(k, _, _)
        | Op::RemoveParam(k, _) => k,
    }
}

fn op_text(op: &Op) -> String {
    match op {
        Op::SetEntry(k, v) => format!("{k}={v}"),
        Op::RemoveEntry(k) | Op::CommentEntry(k) => k.clone(),
        Op::SetField(k, f, v) | Op::SetParam(k, f, v) => format!("{k}/{f}={v}"),
        Op::RemoveParam(k, p) => format!("{k}/{p}"),
    }
}

fn set_param(s: &mut Service, name: &str, value: Option<&str>) {
    let mut argv = vec![s.argv[0].clone()];
    let mut done = false;
    let mut i = 1;
    let mut last_opt_end = 1;
    while i < s.argv.len() {
        let a = &s.argv[i];
        if a == "-o" && i + 1 < s.argv.len() {
            let v = &s.argv[i + 1];
            if v.split_once('=').map(|(n, _)| n.trim()) == Some(name) {
                if let Some(val) = value {
                    argv.push("-o".into());
                    argv.push(format!("{name}={val}"));
                    last_opt_end = argv.len();
                }
                done = true;
            } else {
                argv.push(a.clone());
                argv.push(v.clone());
                last_opt_end = argv.len();
            }
            i += 2;
            continue;
        }
        if a.starts_with('-') && !done {
            argv.push(a.clone());
            last_opt_end = argv.len();
        } else {
            argv.push(a.clone());
        }
        i += 1;
    }
    if !done {
        if let Some(val) = value {
            argv.insert(last_opt_end, format!("{name}={val}"));
            argv.insert(last_opt_end, "-o".into());
        }
    }
    s.argv = argv;
}

/// Applies `ops` in order to master.cf text; returns the new text and
/// warnings.
pub fn apply(path: &str, text: &str, ops: &[Op]) -> Result<(String, Vec<String>), String> {
    let mut text = text.to_string();
    let mut warnings = Vec::new();
    for op in ops {
        let (t, w) = apply_one(path, &text, std::slice::from_ref(op))?;
        text = t;
        warnings.extend(w);
    }
    Ok((text, warnings))
}

fn apply_one(path: &str, text: &str, ops: &[Op]) -> Result<(String, Vec<String>), String> {
    let cf = MasterCf::parse(path, text.as_bytes()).map_err(|e| e.to_string())?;
    let mut lines: Vec<Option<String>> = text
        .split_inclusive('\n')
        .map(|l| Some(l.trim_end_matches('\n').to_string()))
        .collect();
    let mut appended: Vec<String> = Vec::new();
    let mut warnings = Vec::new();
    let is_comment = |l: &str| {
        let t = l.trim_start();
        t.is_empty() || t.starts_with('#')
    };
    for op in ops {
        let Some((name, kind, _)) = split_key(target(op)) else {
            warnings.push(format!("unmatched service_name/type: \"{}\"", op_text(op)));
            continue;
        };
        let found: Vec<&Service> = cf.services.iter().filter(|s| s.name == name && s.kind == kind).collect();
        let Some(svc) = found.last().copied() else {
            if let Op::SetEntry(_, entry) = op {
                let parsed = MasterCf::parse(path, format!("{entry}\n").as_bytes()).map_err(|e| e.to_string())?;
                if let Some(s) = parsed.services.first() {
                    appended.push(master_entry(s, true));
                }
            } else {
                warnings.push(format!("unmatched service_name/type: \"{}\"", op_text(op)));
            }
            continue;
        };
        let mut s = svc.clone();
        let range = (s.line - 1)..s.last_line.min(lines.len());
        let entry_lines: Vec<usize> = range
            .filter(|&i| lines[i].as_deref().is_some_and(|l| !is_comment(l) || i == s.line - 1))
            .collect();
        let new_text = match op {
            Op::RemoveEntry(_) => None,
            Op::CommentEntry(_) => {
                for &i in &entry_lines {
                    if let Some(l) = lines[i].take() {
                        lines[i] = Some(format!("#{l}"));
                    }
                }
                continue;
            }
            Op::SetEntry(_, entry) => {
                let parsed = MasterCf::parse(path, format!("{entry}\n").as_bytes()).map_err(|e| e.to_string())?;
                parsed.services.first().map(|p| master_entry(p, true))
            }
            Op::SetField(_, field, value) => {
                match FIELD_NAMES.iter().position(|f| f == field) {
                    Some(0) => s.name = value.clone(),
                    Some(1) => s.kind = value.clone(),
                    Some(2) => s.private = value.clone(),
                    Some(3) => s.unpriv = value.clone(),
                    Some(4) => s.chroot = value.clone(),
                    Some(5) => s.wakeup = value.clone(),
                    Some(6) => s.maxproc = value.clone(),
                    Some(_) => {
                        let one = format!(
                            "{} {} {} {} {} {} {} {value}\n",
                            s.name, s.kind, s.private, s.unpriv, s.chroot, s.wakeup, s.maxproc
                        );
                        let parsed = MasterCf::parse(path, one.as_bytes()).map_err(|e| e.to_string())?;
                        s.argv = parsed.services[0].argv.clone();
                    }
                    None => return Err(format!("invalid service field name: \"{field}\"")),
                }
                Some(master_entry(&s, true))
            }
            Op::SetParam(_, p, v) => {
                set_param(&mut s, p, Some(v));
                Some(master_entry(&s, true))
            }
            Op::RemoveParam(_, p) => {
                set_param(&mut s, p, None);
                Some(master_entry(&s, true))
            }
        };
        for (n, &i) in entry_lines.iter().enumerate() {
            lines[i] = if n == 0 { new_text.clone() } else { None };
        }
    }
    let mut out = String::new();
    for l in lines.into_iter().flatten() {
        out.push_str(&l);
        out.push('\n');
    }
    for a in appended {
        out.push_str(&a);
        out.push('\n');
    }
    Ok((out, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIG: &str = "# head\nsmtp inet n - n - - smtpd\n  -o a=b\nrelay unix - - n - - smtp\n  -o syslog_name=x\n# tail\n";

    fn run(mode: char, x: bool, c: bool, args: &[&str]) -> String {
        let ops = parse_ops(mode, x, c, &args.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        apply("master.cf", ORIG, &ops).unwrap().0
    }

    #[test]
    fn edits_as_postfix() {
        // Expected texts observed with Postfix 3.7.11's postconf.
        assert_eq!(
            run('M', false, false, &["submission/inet=submission inet n - n - - smtpd -o x=y", "relay/unix=relay unix - - y - 5 smtp"]),
            "# head\nsmtp inet n - n - - smtpd\n  -o a=b\nrelay      unix  -       -       y       -       5       smtp\n# tail\nsubmission inet  n       -       n       -       -       smtpd\n    -o x=y\n"
        );
        assert_eq!(
            run('M', true, false, &["relay/unix"]),
            "# head\nsmtp inet n - n - - smtpd\n  -o a=b\n# tail\n"
        );
        assert_eq!(
            run('M', false, true, &["smtp/inet"]),
            "# head\n#smtp inet n - n - - smtpd\n#  -o a=b\nrelay unix - - n - - smtp\n  -o syslog_name=x\n# tail\n"
        );
        assert_eq!(run('F', false, false, &["smtp/inet/chroot=y"]), "# head\nsmtp       inet  n       -       y       -       -       smtpd\n    -o a=b\nrelay unix - - n - - smtp\n  -o syslog_name=x\n# tail\n");
        assert_eq!(run('P', true, false, &["smtp/inet/a"]), "# head\nsmtp       inet  n       -       n       -       -       smtpd\nrelay unix - - n - - smtp\n  -o syslog_name=x\n# tail\n");
        assert_eq!(
            run('P', false, false, &["smtp/inet/a=c", "smtp/inet/new=v"]),
            "# head\nsmtp       inet  n       -       n       -       -       smtpd\n    -o a=c\n    -o new=v\nrelay unix - - n - - smtp\n  -o syslog_name=x\n# tail\n"
        );
    }

    #[test]
    fn errors_and_warnings() {
        assert_eq!(
            parse_ops('P', false, false, &["smtp/inet/a=v w".to_string()]).err().unwrap(),
            "-Pe does not accept whitespace in parameter value"
        );
        let ops = parse_ops('P', false, false, &["nosuch/unix/a=b".to_string()]).unwrap();
        let (t, w) = apply("m", ORIG, &ops).unwrap();
        assert_eq!(t, ORIG);
        assert_eq!(w, vec!["unmatched service_name/type: \"nosuch/unix/a=b\"".to_string()]);
    }
}
