//! The Sieve interpreter's unit tests (the differential ones against
//! the real Cyrus are in tests/store_vs_cyrus.rs).

use super::compare::{glob, order};
use super::*;

fn outcome(script: &str, header: &str, to: &str) -> Vec<Action> {
    let s = parse(script.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let f = crate::mail::mime::fields(header.as_bytes());
    run(
        &s,
        &Message {
            size: 1000,
            ..Message::plain(&f, header.as_bytes(), "sender@example.org", to)
        },
    )
    .unwrap()
}

fn into(m: &str) -> Action {
    Action::FileInto {
        mailbox: m.into(),
        flags: vec![],
        create: false,
        special_use: None,
    }
}

fn keep(flags: &[&str]) -> Action {
    Action::Keep {
        flags: flags.iter().map(|s| s.to_string()).collect(),
    }
}

#[test]
fn variables_and_match_variables() {
    let h = "Subject: [acme-users] [fwd] version 1.0 is out\r\nList-Id: Sieve WG <ietf-mta-filters@imc.org>\r\nFrom: Ann <ann@example.org>\r\n\r\n";
    let go = |script: &str| {
        outcome(
            &format!("require [\"fileinto\", \"variables\", \"regex\", \"relational\"];\r\n{script}"),
            h,
            "u",
        )
    };
    // RFC 5229's own example: the leftmost `*` takes as little as it can.
    assert_eq!(
        go(
            r#"if header :matches "Subject" "[*] *" { fileinto "INBOX.${1}.x"; set "rest" "${2}"; }
              if string :is "${rest}" "[fwd] version 1.0 is out" { fileinto "ok"; }"#
        ),
        vec![into("INBOX.acme-users.x"), into("ok")]
    );
    assert_eq!(
        go(r#"if header :matches "List-Id" "*<*@*" { fileinto "lists.${2}"; }"#),
        vec![into("lists.ietf-mta-filters")]
    );
    // Modifiers, in their order of precedence; unknown names are empty.
    assert_eq!(
        go(
            r#"set :upperfirst :lower "a" "hELLO wORLD"; set :length "n" "${a}"; set :quotewildcard "q" "a*b?";
              fileinto "${a}/${n}/${q}/${nosuch}/${}";"#
        ),
        vec![into(r"Hello world/11/a\*b\?//${}")]
    );
    // :regex captures; a failed match leaves the variables as they were.
    assert_eq!(
        go(r#"if address :regex "from" "^([a-z]+)@(.*)$" { set "who" "${1}"; }
              if header :matches "Subject" "nomatch*" { stop; }
              fileinto "${who}-${2}";"#),
        vec![into("ann-example.org")]
    );
    // :count counts non-empty strings.
    assert_eq!(
        go(r#"set "e" ""; if string :count "eq" ["${e}", "x"] "1" { fileinto "one"; }"#),
        vec![into("one")]
    );
    // Without the extension, "${...}" is text.
    let plain = outcome("require \"fileinto\";\r\nfileinto \"${1}\";", h, "u");
    assert_eq!(plain, vec![into("${1}")]);
    assert!(parse(b"require \"variables\"; set :lower :upper \"a\" \"b\";").is_err());
    assert!(parse(b"require \"variables\"; set \"1a\" \"b\";").is_err());
    assert!(parse(b"set \"a\" \"b\";").is_err());
}

#[test]
fn includes_and_their_variables() {
    let h = "Subject: hello\r\n\r\n";
    let f = crate::mail::mime::fields(h.as_bytes());
    let lib = |global: bool, n: &str| -> Option<Result<Script, String>> {
        let src = match (global, n) {
            (false, "sub") => {
                "require [\"fileinto\", \"include\", \"variables\"];\r\nglobal \"who\";\r\nfileinto \"sub-${who}\";\r\nset \"local\" \"x\";\r\nreturn;\r\nfileinto \"never\";"
            }
            (true, "spam") => "require \"fileinto\"; fileinto \"spam-${who}\";",
            (false, "loop") => "require \"include\"; include \"loop\";",
            (false, "broken") => "fileinto \"x\";",
            _ => return None,
        };
        Some(parse(src.as_bytes()).map_err(|e| e.to_string()))
    };
    let go = |script: &str| {
        let s = parse(script.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        run(
            &s,
            &Message {
                size: 10,
                include: &lib,
                ..Message::plain(&f, h.as_bytes(), "", "u")
            },
        )
    };
    // A global variable is shared; a local one is not; `return` ends
    // the included script; `:once`; a global script without the
    // variables extension sees "${who}" as text.
    assert_eq!(
        go(r#"require ["include", "variables", "fileinto"]; global "who"; set "who" "ann";
              include "sub"; include :once "sub"; include :global "spam"; fileinto "after-${local}";"#),
        Ok(vec![into("sub-ann"), into("spam-${who}"), into("after-")])
    );
    assert_eq!(go(r#"require "include"; include :optional "nosuch";"#), Ok(vec![keep(&[])]));
    assert!(go(r#"require "include"; include "nosuch";"#)
        .unwrap_err()
        .contains("no such script"));
    assert!(go(r#"require "include"; include "loop";"#).unwrap_err().contains("loop"));
    assert!(go(r#"require "include"; include "broken";"#).is_err());
    // In the main script, `return` is `stop`.
    assert_eq!(go(r#"require ["include", "fileinto"]; return; fileinto "x";"#), Ok(vec![keep(&[])]));
    assert!(parse(b"require \"include\"; global \"x\";").is_err());
    assert!(parse(b"require \"include\"; include :global :personal \"x\";").is_err());
}

#[test]
fn dates_of_headers_and_now() {
    // Fri, 04 Dec 2026 23:30:00 -0800 is Sat 07:30 UTC.
    let h = "Date: Fri, 04 Dec 2026 23:30:00 -0800\r\nReceived: from x by y; Tue, 1 Dec 2026 10:00:00 +0000\r\n\r\n";
    let f = crate::mail::mime::fields(h.as_bytes());
    let msg = Message {
        size: 10,
        ..Message::plain(&f, h.as_bytes(), "", "u")
    };
    let now = 1_796_482_400; // 2026-12-05 14:53:20 UTC
    let hit = |test: &str| {
        let script = format!("require [\"date\", \"relational\", \"fileinto\"];\r\nif {test} {{ fileinto \"hit\"; }}\r\n");
        let s = parse(script.as_bytes()).unwrap_or_else(|e| panic!("{test}: {e}"));
        run_at(&s, &msg, now).unwrap().iter().any(|a| matches!(a, Action::FileInto { .. }))
    };
    assert!(hit(r#"date :originalzone "date" "date" "2026-12-04""#));
    assert!(hit(r#"date :zone "+0000" "date" "weekday" "6""#));
    assert!(hit(r#"date :zone "+0100" "date" "iso8601" "2026-12-05T08:30:00+01:00""#));
    assert!(hit(r#"date :originalzone "date" "zone" "-0800""#));
    assert!(hit(r#"date :zone "+0000" "received" "date" "2026-12-01""#));
    assert!(hit(r#"date :zone "+0000" "date" "julian" "61379""#));
    assert!(hit(r#"currentdate :zone "+0000" "time" "14:53:20""#));
    assert!(hit(r#"currentdate :zone "+0000" :value "ge" "date" "2026-12-01""#));
    assert!(!hit(r#"currentdate :zone "+0000" :value "gt" "date" "2026-12-05""#));
    assert!(hit(r#"currentdate :zone "+0000" :matches "std11" "Sat, 05 Dec 2026 *""#));
    // A missing or unreadable date fails the test.
    assert!(!hit(r#"date "x-none" "year" "2026""#));
    assert!(hit(r#"not date :count "eq" "x-none" "year" "1""#));
    for bad in [
        r#"date :zone "CET" "date" "year" "2026""#,
        r#"currentdate "fortnight" "1""#,
        r#"currentdate :originalzone "year" "1""#,
    ] {
        let script = format!("require \"date\";\r\nif {bad} {{ stop; }}\r\n");
        assert!(parse(script.as_bytes()).is_err(), "{bad}");
    }
    assert!(parse(b"if currentdate \"year\" \"2026\" { stop; }").is_err());
}

#[test]
fn tests_and_actions() {
    let s = r#"require ["fileinto", "imap4flags", "envelope", "subaddress", "relational", "comparator-i;ascii-numeric", "copy"];
# a comment
/* a bracketed
   comment */
if header :contains "subject" ["money", "offer"] { fileinto "INBOX.spam"; stop; }
if address :domain :is "from" "Example.COM" { addflag "\\Flagged work"; }
if envelope :detail "to" "lists" { fileinto :copy "INBOX.lists"; }
if header :value "ge" :comparator "i;ascii-numeric" "x-spam-score" "10" { discard; }
if header :matches "subject" "re: *?x" { setflag "\\Answered"; }
"#;
    let h = "From: A <a@example.com>\r\nSubject: Big money\r\n\r\n";
    assert_eq!(
        outcome(s, h, "u7@x"),
        vec![Action::FileInto {
            mailbox: "INBOX.spam".into(),
            special_use: None,
            flags: vec![],
            create: false
        }]
    );
    let h = "From: A <a@example.com>\r\nSubject: hello\r\n\r\n";
    assert_eq!(outcome(s, h, "u7+lists@x").len(), 2);
    assert_eq!(outcome(s, h, "u7@x"), vec![keep(&["\\Flagged", "work"])]);
    let h = "From: b@other.org\r\nX-Spam-Score: 012\r\nSubject: x\r\n\r\n";
    assert_eq!(outcome(s, h, "u7@x"), vec![Action::Discard]);
    let h = "From: b@other.org\r\nX-Spam-Score: 9\r\nSubject: RE: abcx\r\n\r\n";
    assert_eq!(outcome(s, h, "u7@x"), vec![keep(&["\\Answered"])]);
}

/// RFC 5490: every mailbox named must exist (the real Cyrus 3.6 says
/// true when one of them does).
#[test]
fn mailboxexists_wants_them_all() {
    let s = parse(b"require \"mailbox\";\nif mailboxexists [\"a\", \"b\"] { discard; }").unwrap();
    let f = crate::mail::mime::fields(b"Subject: x\r\n\r\n");
    let with = |known: &[&str]| {
        let may = |m: &str| known.contains(&m);
        let m = Message {
            size: 1,
            may_file: &may,
            ..Message::plain(&f, b"", "", "u")
        };
        run(&s, &m).unwrap()
    };
    assert_eq!(with(&["a", "b"]), vec![Action::Discard]);
    assert_eq!(with(&["a"]), vec![keep(&[])]);
}

#[test]
fn glob_and_numeric_order() {
    let g = |p: &str, s: &str| glob(&p.chars().collect::<Vec<_>>(), &s.chars().collect::<Vec<_>>());
    assert!(g("*", ""));
    assert!(g("a*b?c", "axxbyc"));
    assert!(!g("a*b?c", "axxbc"));
    assert!(g("\\*x", "*x"));
    assert!(!g("\\*x", "ax"));
    assert!(g("*.example.*", "mail.example.org"));
    assert_eq!(order(Cmp::Numeric, "10", "9"), std::cmp::Ordering::Greater);
    assert_eq!(order(Cmp::Numeric, "abc", "9"), std::cmp::Ordering::Greater);
    assert_eq!(order(Cmp::Numeric, "007", "7"), std::cmp::Ordering::Equal);
}

#[test]
fn bad_scripts_name_the_line() {
    let e = |s: &str| parse(s.as_bytes()).unwrap_err().to_string();
    assert_eq!(e("keep;\nfileinto \"x\";"), "line 2: fileinto requires \"fileinto\"");
    assert_eq!(
        e("require \"nosuch\";"),
        "line 1: Unsupported feature(s) in \"require\": \"nosuch\""
    );
    assert_eq!(e("if true {\nkeep;\n"), "line 2: missing '}'");
    assert_eq!(e("keep\n"), "line 1: syntax error, missing ';'");
    assert_eq!(e("elsif true { keep; }"), "line 1: elsif without if");
    assert_eq!(
        e("keep;\nrequire \"fileinto\";"),
        "line 2: require must come before any other command"
    );
    assert_eq!(e("\"unterminated"), "line 1: unterminated string");
    assert!(e(&format!("{}true{}", "if not ".repeat(100), " { keep; }")).contains("too deep"));
}

#[test]
fn multiline_text_and_escapes() {
    let s = parse(b"require \"reject\";\nreject text:\r\nline one\r\n..dotted\r\n.\r\n;\nif header :is \"x\" \"a\\\"b\\\\c\" { keep; }")
        .unwrap();
    match &s.cmds[0] {
        Cmd::Reject { reason, .. } => assert_eq!(reason, "line one\r\n.dotted\r\n"),
        c => panic!("{c:?}"),
    }
    let with_x = |h: &str| {
        let f = crate::mail::mime::fields(h.as_bytes());
        let m = Message {
            size: 1,
            ..Message::plain(&f, h.as_bytes(), "", "u")
        };
        run(&s, &m)
    };
    // The header matched (the escapes read right): keep with reject.
    assert!(with_x("X: a\"b\\c\r\n\r\n").is_err());
    assert_eq!(
        with_x("X: ab\\c\r\n\r\n"),
        Ok(vec![Action::Reject {
            reason: "line one\r\n.dotted\r\n".into(),
            ereject: false
        }])
    );
}

/// Runs `script` on `raw` with an environment and ids seen before.
fn exec(script: &str, raw: &str, seen: &dyn Fn(&str, &str) -> bool) -> Result<Outcome, String> {
    let s = parse(script.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let f = crate::mail::mime::fields(raw.as_bytes());
    let env = |n: &str| (n == "host").then(|| "mx1.example.org".to_string());
    let m = Message {
        may_file: &|_| true,
        environment: &env,
        seen,
        ..Message::plain(&f, raw.as_bytes(), "s@example.net", "u@example.org")
    };
    execute(&s, &m, 0)
}

#[test]
fn editheader_changes_what_later_tests_and_the_copy_see() {
    let raw = "Received: from a\r\n\tby b; x\r\nX-M: 1\r\nSubject: s\r\nX-M: 2\r\nX-M: 3\r\n\r\nbody\r\n";
    let o = exec(
        r#"require ["editheader", "index", "variables", "fileinto"];
           addheader "X-Top" "t";
           addheader :last "X-End" "café au lait";
           deleteheader :index 1 :last "x-m";
           deleteheader :is "X-M" "1";
           if header :index 1 "x-m" "2" { fileinto "two"; }
           if exists "X-Top" { fileinto "top"; }
           set "h" "x-m"; deleteheader "${h}";"#,
        raw,
        &never_seen,
    )
    .unwrap();
    assert_eq!(o.actions, vec![into("two"), into("top")]);
    // The folded field is kept as it was; the added one is encoded.
    assert_eq!(
        String::from_utf8(o.header.unwrap()).unwrap(),
        "X-Top: t\r\nReceived: from a\r\n\tby b; x\r\nSubject: s\r\nX-End: =?UTF-8?Q?caf=C3=A9_au_lait?=\r\n\r\n"
    );
    // Received and Auto-Submitted may be added, never deleted.
    for name in ["received", "Auto-Submitted"] {
        let e = parse(format!("require \"editheader\"; deleteheader \"{name}\";").as_bytes()).unwrap_err();
        assert_eq!(e.msg, "MUST NOT delete Received or Auto-Submitted headers");
    }
    let o = exec(
        r#"require ["editheader", "variables"]; set "r" "received"; deleteheader "${r}"; addheader "Received" "x";"#,
        raw,
        &never_seen,
    )
    .unwrap();
    assert!(String::from_utf8(o.header.unwrap())
        .unwrap()
        .starts_with("Received: x\r\nReceived: from a\r\n\tby b; x\r\n"));
    // Without editing, no new header.
    assert_eq!(exec("keep;", raw, &never_seen).unwrap().header, None);
    assert!(parse(b"require \"editheader\"; addheader \"a b\" \"x\";").is_err());
    assert!(parse(b"addheader \"a\" \"x\";").is_err());
}

#[test]
fn ihave_error_environment_encoded_character() {
    let raw = "Subject: =?utf-8?q?AB=C3=A9?=\r\n\r\n";
    // A block under an ihave of what we lack is neither checked nor run.
    let o = exec(
        r#"require ["ihave", "fileinto"];
           if ihave "x-nosuch" { xnosuch :z 1; fileinto "no"; }
           if ihave ["fileinto", "environment"] { if environment "host" "mx1.example.org" { fileinto "env"; } }
           if not ihave "nosuch" { fileinto "lacks"; }"#,
        raw,
        &never_seen,
    )
    .unwrap();
    assert_eq!(o.actions, vec![into("env"), into("lacks")]);
    // Outside the block, environment still needs its require.
    assert!(parse(b"require \"ihave\"; if ihave \"environment\" { keep; } if environment \"host\" \"x\" { keep; }").is_err());
    // Refused by sieve_extensions: not had.
    let s = parse_with(b"require \"ihave\"; if ihave \"editheader\" { addheader \"a\" \"b\"; }", &|e| {
        e != "editheader"
    })
    .unwrap();
    assert!(matches!(&s.cmds[0], Cmd::If { branches, .. } if branches[0].1.is_empty()));
    // error: a runtime error.
    assert_eq!(
        exec(r#"require "ihave"; error "no way";"#, raw, &never_seen),
        Err("error: no way".into())
    );
    // An unknown item fails the test.
    let o = exec(
        r#"require ["environment", "fileinto"]; if environment :matches "x" "*" { fileinto "x"; }"#,
        raw,
        &never_seen,
    )
    .unwrap();
    assert_eq!(o.actions, vec![keep(&[])]);
    // Encoded characters: hex bytes and code points; malformed ones
    // are left as they are; a surrogate is an error.
    let o = exec(
        r#"require ["encoded-character", "fileinto"];
           if header :is "subject" "${hex: 41 42}${Unicode:E9}" { fileinto "${hex:7a}${hex:}${hex:zz}"; }"#,
        raw,
        &never_seen,
    )
    .unwrap();
    assert_eq!(o.actions, vec![into("z${hex:}${hex:zz}")]);
    assert!(parse(b"require \"encoded-character\"; fileinto \"${unicode:D800}\";").is_err());
    assert!(parse(b"require \"encoded-character\"; fileinto \"${hex:ff}\";").is_err());
}

#[test]
fn duplicate_and_index() {
    let raw = "Message-ID: <m1@x>\r\nX-K: k\r\nDate: Wed, 01 Jan 2020 10:00:00 +0000\r\nDate: Fri, 01 Jan 2021 10:00:00 +0000\r\n\r\n";
    let script = r#"require ["duplicate", "fileinto", "index", "date"];
        if duplicate { fileinto "seen-id"; }
        if duplicate :handle "h" :header "x-k" :seconds 60 :last { fileinto "seen-k"; }
        if duplicate :uniqueid "u" { fileinto "seen-u"; }
        if duplicate :header "x-none" { fileinto "never"; }
        if date :index 2 "date" "year" "2021" { fileinto "second"; }
        if date :index 1 :last "date" "year" "2021" { fileinto "last"; }
        if date "date" "year" "2020" { fileinto "first"; }"#;
    let o = exec(script, raw, &never_seen).unwrap();
    assert_eq!(o.actions, vec![into("second"), into("last"), into("first")]);
    assert_eq!(
        o.tracks,
        vec![
            Track {
                handle: "".into(),
                id: "<m1@x>".into(),
                seconds: None,
                last: false,
                seen: false,
            },
            Track {
                handle: "h".into(),
                id: "k".into(),
                seconds: Some(60),
                last: true,
                seen: false,
            },
            Track {
                handle: "".into(),
                id: "u".into(),
                seconds: None,
                last: false,
                seen: false,
            },
        ]
    );
    // What was remembered, per handle.
    let o = exec(script, raw, &|h, id| (h, id) == ("h", "k") || (h, id) == ("", "u")).unwrap();
    assert_eq!(o.actions[..2], [into("seen-k"), into("seen-u")]);
    assert!(o.tracks[1].seen && !o.tracks[0].seen);
    assert!(parse(b"require \"index\"; if header :last \"x\" \"y\" { keep; }").is_err());
    assert!(parse(b"require \"index\"; if header :index 0 \"x\" \"y\" { keep; }").is_err());
    assert!(parse(b"if header :index 1 \"x\" \"y\" { keep; }").is_err());
    assert!(parse(b"require \"duplicate\"; if duplicate :header \"a\" :uniqueid \"b\" { keep; }").is_err());
}

#[test]
fn special_use_mailboxid_metadata_fcc() {
    let raw = "Subject: s\r\n\r\n";
    let f = crate::mail::mime::fields(raw.as_bytes());
    let lookup = |q: Query<'_>| match q {
        Query::SpecialUse("\\Junk") => Some("Spam".to_string()),
        Query::HasSpecialUse("Spam", "\\Junk") => Some(String::new()),
        Query::MailboxId("id-1") => Some("ById".to_string()),
        Query::Metadata(Some("Spam"), "/private/comment") => Some("hello".to_string()),
        Query::Metadata(None, "/shared/admin") => Some("mailto:x".to_string()),
        _ => None,
    };
    let run = |script: &str| {
        let s = parse(script.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let m = Message {
            lookup: &lookup,
            ..Message::plain(&f, raw.as_bytes(), "s@x", "u@x")
        };
        execute(&s, &m, 0).unwrap().actions
    };
    let junk = |m: &str, u: Option<&str>| Action::FileInto {
        mailbox: m.into(),
        flags: vec![],
        create: true,
        special_use: u.map(String::from),
    };
    assert_eq!(
        run(r#"require ["special-use", "fileinto", "mailbox"];
               fileinto :specialuse "\\Junk" :create "Junk";
               fileinto :specialuse "\\Archive" :create "Archive";"#),
        vec![junk("Spam", Some("\\Junk")), junk("Archive", Some("\\Archive"))]
    );
    assert_eq!(
        run(r#"require ["special-use", "mailboxid", "fileinto"];
               if allof (specialuse_exists "\\Junk", specialuse_exists "Spam" "\\Junk",
                         not specialuse_exists ["\\Junk", "\\Archive"], not specialuse_exists "Other" "\\Junk",
                         mailboxidexists "id-1", not mailboxidexists ["id-1", "id-2"]) {
                 fileinto :mailboxid "id-1" "Named"; fileinto :mailboxid "id-2" "Named";
               }"#),
        vec![into("ById"), into("Named")]
    );
    assert_eq!(
        run(r#"require ["mboxmetadata", "servermetadata", "fileinto"];
               if allof (metadata "Spam" "/private/comment" "hello", metadataexists "Spam" "/private/comment",
                         not metadataexists "Spam" ["/private/comment", "/shared/comment"],
                         servermetadata :matches "/shared/admin" "mailto:*", servermetadataexists "/shared/admin",
                         not metadata "INBOX" "/private/comment" "") { fileinto "yes"; }"#),
        vec![into("yes")]
    );
    let a = run(r#"require ["vacation", "fcc", "special-use", "imap4flags", "mailbox"];
           vacation :fcc "Sent" :create :specialuse "\\Junk" :flags ["\\Seen", "a b"] "away";"#);
    let Action::Vacation(v) = &a[0] else { panic!("{a:?}") };
    assert_eq!(
        v.fcc,
        Some(Fcc {
            mailbox: "Spam".into(),
            create: true,
            flags: vec!["\\Seen".into(), "a".into(), "b".into()],
            special_use: Some("\\Junk".into()),
            mailbox_id: None,
        })
    );
    // As Cyrus 3.6, :fcc without its require.
    assert!(parse(b"require \"vacation\"; vacation :fcc \"x\" \"r\";").is_ok());
    assert!(parse(b"require [\"vacation\", \"fcc\"]; vacation :create \"r\";").is_err());
    assert!(parse(b"require \"fileinto\"; fileinto :specialuse \"\\\\Junk\" \"x\";").is_err());
}

#[test]
fn enotify() {
    let raw = "From: =?utf-8?q?J=C3=B6rg?= <j@x>\r\nSubject: hi\r\n\r\n";
    let o = exec(
        r#"require ["enotify", "variables", "imap4flags"];
           notify "mailto:a@example.org";
           notify "mailto:a@example.org";
           set :encodeurl :upper "q" "a b&c/é";
           notify :from "me@x" :importance "1" :options ["o"] :message "see ${q}" "mailto:b@x?subject=S";
           if valid_notify_method ["mailto:a@b", "mailto:c@d?cc=e@f"] { keep; }
           if valid_notify_method "xmpp:a@b" { discard; }
           if notify_method_capability :is "mailto:a@b" "Online" "maybe" { keep :flags "maybe"; }"#,
        raw,
        &never_seen,
    )
    .unwrap();
    let n = |method: &str, from: Option<&str>, importance: u8, options: &[&str], message: &str| {
        Action::Notify(Notify {
            method: method.into(),
            from: from.map(String::from),
            importance,
            options: options.iter().map(|o| o.to_string()).collect(),
            message: message.into(),
            id: None,
        })
    };
    assert_eq!(
        o.actions,
        vec![
            // The same notification twice is one.
            n("mailto:a@example.org", None, 2, &[], "Jörg <j@x>: hi"),
            n("mailto:b@x?subject=S", Some("me@x"), 1, &["o"], "see A%20B%26C%2F%C3%89"),
            keep(&["maybe"]),
        ]
    );
    assert_eq!(
        mailto("MAILTO:a@x,%62@y?cc=c@z&bcc=d@z&subject=Hello%20there&body=b%0Ad&x-other=1"),
        Some(Mailto {
            to: vec!["a@x".into(), "b@y".into()],
            cc: vec!["c@z".into()],
            bcc: vec!["d@z".into()],
            subject: Some("Hello there".into()),
            body: Some("b\nd".into()),
        })
    );
    for bad in [
        "mailto:",
        "mailto:nobody",
        "mailto:a b@x",
        "mailto:a@x?cc=%zz",
        "tel:123",
        "mailto:<a@x>",
    ] {
        assert_eq!(mailto(bad), None, "{bad}");
    }
    // The older draft: :method mailto with the addresses as options,
    // the server's method without one, $...$ in the message, and
    // denotify by :id and priority.
    let o = exec(
        r#"require "notify";
           notify :method "mailto" :options ["a@x", "b@x"] :id "one" :message "$from$ / $subject$ / $env-from$ / $text[3]$ / $other$";
           notify :options "c@x" :id "two" :low;
           notify :method "mailto" :options "d@x" :id "three" :high;
           notify :method "mailto" :options "e@x" :id "four" :high;
           denotify :is "two";
           denotify :matches "th*" :high;"#,
        "From: A <a@y>\r\nSubject: S\r\n\r\nbody\r\n",
        &never_seen,
    )
    .unwrap();
    let methods: Vec<(&str, &str, u8)> = o
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Notify(n) => Some((n.method.as_str(), n.message.as_str(), n.importance)),
            _ => None,
        })
        .collect();
    assert_eq!(
        methods,
        [
            ("mailto:a@x,b@x", "A <a@y> / S / s@example.net / bod / $other$", 2),
            ("mailto:e@x", "A <a@y>: S", 1)
        ]
    );
    assert!(parse(b"require \"notify\"; notify :low :high;").is_err());
    assert!(parse(b"denotify;").is_err());
    assert!(parse(b"require \"enotify\"; notify :importance \"4\" \"mailto:a@b\";").is_err());
    // :encodeurl only with enotify.
    assert!(parse(b"require \"variables\"; set :encodeurl \"a\" \"b\";").is_err());
    assert!(parse(b"notify \"mailto:a@b\";").is_err());
}

#[test]
fn redirect_dsn_and_deliverby() {
    let dsn = |script: &str| -> RedirectDsn {
        let s = parse(format!("require [\"redirect-dsn\", \"redirect-deliverby\"]; {script}").as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        match &s.cmds[0] {
            Cmd::Redirect { dsn, .. } => dsn.clone(),
            c => panic!("{c:?}"),
        }
    };
    let d = dsn(r#"redirect :notify "success, Failure" :ret "hdrs" :bytimerelative 600 :bymode "return" :bytrace "a@b";"#);
    assert_eq!(
        d.params(true, true, 0),
        (" RET=HDRS BY=600;RT".into(), " NOTIFY=SUCCESS,FAILURE".into())
    );
    // Only what the MTA offers.
    assert_eq!(d.params(false, false, 0), (String::new(), String::new()));
    assert_eq!(d.params(true, false, 0).0, " RET=HDRS");
    // An absolute time: seconds from now; one past can only notify.
    let d = dsn(r#"redirect :bytimeabsolute "2030-01-01T01:00:00+01:00" :bymode "return" "a@b";"#);
    assert_eq!(d.by.unwrap().time, 1_893_456_000);
    assert_eq!(d.params(true, true, 1_893_455_000).0, " BY=1000;R");
    assert_eq!(d.params(true, true, 1_893_457_000).0, " BY=-1000;N");
    for bad in [
        r#"redirect :notify "NEVER,SUCCESS" "a@b";"#,
        r#"redirect :ret "ALL" "a@b";"#,
        r#"redirect :bymode "return" "a@b";"#,
        r#"redirect :bytimeabsolute "tomorrow" "a@b";"#,
        r#"redirect :bytimerelative 1 :bytimeabsolute "2030-01-01T00:00:00Z" "a@b";"#,
    ] {
        assert!(
            parse(format!("require [\"redirect-dsn\", \"redirect-deliverby\"]; {bad}").as_bytes()).is_err(),
            "{bad}"
        );
    }
    assert!(parse(b"redirect :notify \"NEVER\" \"a@b\";").is_err());
    assert!(parse(b"redirect :bytimerelative 5 \"a@b\";").is_err());
}

#[test]
fn vnd_cyrus_log() {
    let raw = "Subject: hello\r\n\r\n";
    // The texts, variables expanded, in order; the message is kept.
    let o = exec(
        r#"require ["vnd.cyrus.log", "variables"];
           if header :matches "subject" "*" { log "subject ${1}"; }
           log "second";"#,
        raw,
        &never_seen,
    )
    .unwrap();
    assert_eq!(o.logs, ["subject hello", "second"]);
    assert_eq!(o.actions, vec![keep(&[])]);
    // Only with its require, and with one string.
    assert!(parse(b"log \"x\";").is_err());
    assert!(parse(b"require \"vnd.cyrus.log\"; log;").is_err());
    assert!(parse(b"require \"vnd.cyrus.log\"; log \"a\" \"b\";").is_err());
    // Its older name, as Cyrus takes it.
    assert!(parse(b"require \"x-cyrus-log\"; log \"a\";").is_ok());
}
