//! POSIX getopt(3), as the original tools parse their flags (clustered
//! flags, `-cDIR` and `-c DIR`, `--` ends options; operands may follow).

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opt {
    Flag(char),
    Arg(char, String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetoptError {
    /// `illegal option -- x` / `invalid option -- 'x'`
    Unknown(char),
    /// `option requires an argument -- x`
    MissingArg(char),
}

/// Parses `args` (without argv[0]) against a getopt spec such as `"ac:dx#"`.
/// Options stop at the first operand, like POSIX getopt with a leading `+`.
pub fn getopt(args: &[String], spec: &str) -> Result<(Vec<Opt>, Vec<String>), GetoptError> {
    let takes_arg = |c: char| spec.find(c).map(|i| spec[i + c.len_utf8()..].starts_with(':'));
    let mut opts = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            i += 1;
            break;
        }
        if !a.starts_with('-') || a == "-" {
            break;
        }
        let chars: Vec<char> = a[1..].chars().collect();
        let mut j = 0;
        while j < chars.len() {
            let c = chars[j];
            match takes_arg(c) {
                None => return Err(GetoptError::Unknown(c)),
                Some(false) => opts.push(Opt::Flag(c)),
                Some(true) => {
                    let rest: String = chars[j + 1..].iter().collect();
                    if !rest.is_empty() {
                        opts.push(Opt::Arg(c, rest));
                    } else if i + 1 < args.len() {
                        i += 1;
                        opts.push(Opt::Arg(c, args[i].clone()));
                    } else {
                        return Err(GetoptError::MissingArg(c));
                    }
                    break;
                }
            }
            j += 1;
        }
        i += 1;
    }
    Ok((opts, args[i..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn forms() {
        let (o, rest) = getopt(&s(&["-nx", "-c", "/d", "-o", "a=b", "name"]), "c:no:x").unwrap();
        assert_eq!(
            o,
            vec![
                Opt::Flag('n'),
                Opt::Flag('x'),
                Opt::Arg('c', "/d".into()),
                Opt::Arg('o', "a=b".into())
            ]
        );
        assert_eq!(rest, s(&["name"]));
        let (o, _) = getopt(&s(&["-c/d", "-#"]), "c:#").unwrap();
        assert_eq!(o, vec![Opt::Arg('c', "/d".into()), Opt::Flag('#')]);
        assert_eq!(getopt(&s(&["-z"]), "a"), Err(GetoptError::Unknown('z')));
        assert_eq!(getopt(&s(&["-c"]), "c:"), Err(GetoptError::MissingArg('c')));
    }
}
