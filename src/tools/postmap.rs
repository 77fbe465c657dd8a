//! postmap(1): query (`-q key`, `-q -`), list (`-s`) and check Postfix
//! lookup tables with Postfix's output and exit codes.  mumail's hub reads
//! `hash:`/`btree:`/`lmdb:` tables from their text source, so building a
//! table (`postmap file`) checks the source and reports duplicates as
//! postmap does, and writes no indexed file.  postalias(1) is the same
//! program over aliases(5) sources (`name: value`), and newaliases runs
//! it on `alias_database`.

use super::Output;
use crate::tables::{alias_entries, source_entries, Table};
use crate::util::getopt::{getopt, Opt};
use std::io::BufRead;

/// Which of the two programs is running.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Prog {
    Postmap,
    Postalias,
}

impl Prog {
    fn name(self) -> &'static str {
        match self {
            Prog::Postmap => "postmap",
            Prog::Postalias => "postalias",
        }
    }
}

fn fatal_as(prog: Prog, text: &str) -> Output {
    Output {
        stderr: format!("{}: fatal: {text}\n", prog.name()),
        status: 1,
        ..Output::default()
    }
}

/// `type:name`, with `default_database_type` for a bare file name.
fn spec(arg: &str, default_type: &str) -> String {
    if arg.contains(':') {
        arg.to_string()
    } else {
        format!("{default_type}:{arg}")
    }
}

fn open(prog: Prog, spec: &str) -> Result<Table, Output> {
    let fatal = |t: &str| fatal_as(prog, t);
    let t = if prog == Prog::Postalias {
        Table::open_alias(spec)
    } else {
        Table::open(spec)
    };
    let t = t.map_err(|e| match e {
        crate::tables::TableError::Unsupported(s) if !s.starts_with("inline:") => {
            fatal(&format!("unsupported dictionary type: {}", s.split(':').next().unwrap_or("")))
        }
        crate::tables::TableError::Unsupported(s) => fatal(&format!("bad syntax: \"{s}\"; need \"inline:{{name=value...}}\"")),
        e => fatal(&e.to_string()),
    })?;
    if let Some(src) = t.source() {
        if !std::path::Path::new(src).exists() {
            return Err(fatal(&format!("open database {src}.db: No such file or directory")));
        }
    }
    Ok(t)
}

pub fn postmap(args: &[String], stdin: &mut dyn BufRead) -> Output {
    run(Prog::Postmap, args, stdin)
}

pub fn postalias(args: &[String], stdin: &mut dyn BufRead) -> Output {
    run(Prog::Postalias, args, stdin)
}

/// newaliases (`sendmail -bi`): postalias on every `alias_database`.
pub fn newaliases(config: Option<&str>) -> Output {
    let (dir, explicit) = crate::config::postfix::config_directory(config);
    let params = match crate::config::postfix::Params::load_main(&dir, explicit) {
        Ok(p) => p,
        Err(e) => return fatal_as(Prog::Postalias, &e.to_string()),
    };
    let mut args = vec!["-c".to_string(), dir.clone()];
    args.extend(
        crate::config::postfix::list::split_list(&params.get("alias_database").unwrap_or_default())
            .into_iter()
            .map(str::to_string),
    );
    if args.len() == 2 {
        return Output::default();
    }
    run(Prog::Postalias, &args, &mut std::io::empty())
}

fn run(prog: Prog, args: &[String], stdin: &mut dyn BufRead) -> Output {
    let name = prog.name();
    crate::tables::set_warning_sink(Box::new(move |w| eprintln!("{name}: warning: {w}")));
    let fatal = |t: &str| fatal_as(prog, t);
    let usage = format!("{name}: fatal: usage: {name} [-Nfinoprsuvw] [-c config_dir] [-d key] [-q key] [map_type:]file...\n");
    let Ok((opts, files)) = getopt(args, "Nc:d:finopq:rsuvw") else {
        return Output::usage(&usage);
    };
    let config = opts.iter().find_map(|o| match o {
        Opt::Arg('c', v) => Some(v.as_str()),
        _ => None,
    });
    let (dir, explicit) = crate::config::postfix::config_directory(config);
    let params = match crate::config::postfix::Params::load_main(&dir, explicit) {
        Ok(p) => p,
        Err(e) => return fatal(&e.to_string()),
    };
    let default_type = params.get("default_database_type").unwrap_or_else(|| "hash".into());
    if files.is_empty() {
        return Output::usage(&usage);
    }
    let mut tables = Vec::new();
    for f in &files {
        match open(prog, &spec(f, &default_type)) {
            Ok(t) => tables.push(t),
            Err(o) => return o,
        }
    }
    let query = opts.iter().find_map(|o| match o {
        Opt::Arg('q', k) => Some(k.clone()),
        _ => None,
    });
    let mut out = Output::default();
    if let Some(key) = query {
        let keys: Vec<String> = if key == "-" {
            stdin
                .lines()
                .map_while(Result::ok)
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect()
        } else {
            vec![key.clone()]
        };
        let mut found = false;
        for k in &keys {
            for t in &tables {
                match t.lookup(k) {
                    Ok(Some(v)) => {
                        found = true;
                        if key == "-" {
                            out.stdout.push_str(&format!("{k}\t{v}\n"));
                        } else {
                            out.stdout.push_str(&format!("{v}\n"));
                        }
                        break;
                    }
                    Ok(None) => {}
                    Err(e) => return fatal(&e.to_string()),
                }
            }
        }
        out.status = if found { 0 } else { 1 };
        return out;
    }
    if opts.contains(&Opt::Flag('s')) {
        for t in &tables {
            match t.entries() {
                Ok(Some(es)) => {
                    for (k, v) in es {
                        let sep = if prog == Prog::Postalias { ":" } else { "" };
                        out.stdout.push_str(&format!("{k}{sep}\t{v}\n"));
                    }
                }
                Ok(None) => return fatal(&format!("table {}: sequence operation is not supported", t.spec)),
                Err(e) => return fatal(&e.to_string()),
            }
        }
        return out;
    }
    // "Build": check each source as postmap would while building.
    for t in &tables {
        let Some(src) = t.source() else {
            let ty = t.spec.strip_prefix("proxy:").unwrap_or(&t.spec);
            let (ty, name) = ty.split_once(':').unwrap_or((ty, ""));
            if t.is_pattern() {
                return fatal(&format!("unsupported dictionary type: {ty} does not support bulk-mode creation."));
            }
            return fatal(&format!("open {name}: No such file or directory"));
        };
        let text = match std::fs::read_to_string(src) {
            Ok(t) => t,
            Err(e) => return fatal(&format!("open {src}: {}", crate::util::strerror(&e))),
        };
        let mut seen = std::collections::HashSet::new();
        if prog == Prog::Postalias {
            let (entries, bad) = alias_entries(&text);
            for line in bad {
                out.stderr
                    .push_str(&format!("postalias: warning: {src}, line {line}: need name:value pair\n"));
            }
            for (k, _, _) in entries {
                if !seen.insert(k.to_ascii_lowercase()) {
                    out.stderr.push_str(&format!(
                        "postalias: warning: {src}.db: duplicate entry: \"{}\"\n",
                        k.to_ascii_lowercase()
                    ));
                }
            }
            continue;
        }
        for (k, _, line) in source_entries(&text) {
            if !seen.insert(k.to_ascii_lowercase()) {
                out.stderr
                    .push_str(&format!("postmap: warning: {src}, line {line}: duplicate entry: \"{k}\"\n"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_list_and_check() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("main.cf"), "").unwrap();
        std::fs::write(d.path().join("master.cf"), "").unwrap();
        let t = d.path().join("t");
        std::fs::write(&t, "a 1\nb 2\nA 3\n# c\nc  multi\n word\n").unwrap();
        let c = d.path().to_str().unwrap().to_string();
        let run = |args: &[&str], input: &str| {
            let a: Vec<String> = ["-c", &c].iter().chain(args).map(|s| s.to_string()).collect();
            postmap(&a, &mut input.as_bytes())
        };
        let tspec = format!("texthash:{}", t.display());
        let o = run(&["-q", "a", &tspec], "");
        assert_eq!((o.stdout.as_str(), o.status), ("1\n", 0));
        assert_eq!(run(&["-q", "zz", &tspec], "").status, 1);
        let o = run(&["-q", "-", &tspec], "a\nzz\nc\n");
        assert_eq!((o.stdout.as_str(), o.status), ("a\t1\nc\tmulti word\n", 0));
        let o = run(&["-s", &tspec], "");
        assert_eq!(o.stdout, "a\t1\nb\t2\nc\tmulti word\n");
        let o = run(&[t.to_str().unwrap()], "");
        assert_eq!(
            (o.stderr.clone(), o.status),
            (format!("postmap: warning: {}, line 3: duplicate entry: \"A\"\n", t.display()), 0)
        );
        let o = run(&["-q", "x", "nosuch:/x"], "");
        assert_eq!(
            (o.stderr.as_str(), o.status),
            ("postmap: fatal: unsupported dictionary type: nosuch\n", 1)
        );
        let o = run(&["-q", "a", "hash:/nonexistent/x"], "");
        assert_eq!(
            o.stderr,
            "postmap: fatal: open database /nonexistent/x.db: No such file or directory\n"
        );
    }

    #[test]
    fn postalias_and_newaliases() {
        let d = tempfile::tempdir().unwrap();
        let al = d.path().join("aliases");
        std::fs::write(
            &al,
            "root: admin\nPostmaster:   root\nbad line here\nstaff: a, b,\n  c\nroot: dup\n\"quoted name\": x\n",
        )
        .unwrap();
        std::fs::write(d.path().join("main.cf"), format!("alias_database = hash:{}\n", al.display())).unwrap();
        std::fs::write(d.path().join("master.cf"), "").unwrap();
        let c = d.path().to_str().unwrap().to_string();
        let run = |args: &[&str]| {
            let a: Vec<String> = ["-c", &c].iter().chain(args).map(|s| s.to_string()).collect();
            postalias(&a, &mut "".as_bytes())
        };
        let a = al.to_str().unwrap();
        assert_eq!(run(&["-q", "staff", a]).stdout, "a, b, c\n");
        assert_eq!(run(&["-q", "quoted name", a]).stdout, "x\n");
        assert_eq!(run(&["-q", "postmaster", a]).stdout, "root\n");
        assert_eq!(run(&["-q", "nobody", a]).status, 1);
        assert_eq!(
            run(&["-s", a]).stdout,
            "root:\tadmin\npostmaster:\troot\nstaff:\ta, b, c\nquoted name:\tx\n"
        );
        let want =
            format!("postalias: warning: {a}, line 3: need name:value pair\npostalias: warning: {a}.db: duplicate entry: \"root\"\n");
        let o = run(&[a]);
        assert_eq!((o.stderr.as_str(), o.status), (want.as_str(), 0));
        let o = newaliases(Some(&c));
        assert_eq!((o.stderr.as_str(), o.status), (want.as_str(), 0));
        assert!(run(&["-Z"])
            .stderr
            .ends_with("postalias: fatal: usage: postalias [-Nfinoprsuvw] [-c config_dir] [-d key] [-q key] [map_type:]file...\n"));
    }
}
