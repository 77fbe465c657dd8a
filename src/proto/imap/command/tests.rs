//! The command parser's unit tests.

use super::*;

fn k(s: &str) -> Kind {
    parse(s.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e:?}")).kind
}

#[test]
fn date_time_zone_with_multibyte_characters_is_an_error() {
    let r = parse(b"a APPEND INBOX \"01-Jan-2026 10:00:00 \xd3\xb7ar0\" {1+}\r\nx");
    assert!(r.is_err());
}

#[test]
fn literals_markers() {
    assert_eq!(literal_marker(b"A1 LOGIN {5}"), Some((5, false)));
    assert_eq!(literal_marker(b"A1 APPEND x {12+}"), Some((12, true)));
    assert_eq!(literal_marker(b"A1 APPEND x ~{3}"), Some((3, false)));
    assert_eq!(literal_marker(b"A1 {x}"), None);
    assert_eq!(literal_marker(b"A1 {99999999999999999999}"), None);
}

#[test]
fn common_commands() {
    assert_eq!(k("a LOGIN fred \"sec ret\""), Kind::Login("fred".into(), b"sec ret".to_vec()));
    assert_eq!(k("a login {4}\r\nfred {2+}\r\npw"), Kind::Login("fred".into(), b"pw".to_vec()));
    assert_eq!(k("a SELECT inbox"), Kind::Select("INBOX".into(), SelectParams::default()));
    let c = parse(b"a UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)] BODY[1.1]<0.80> BINARY.SIZE[2])").unwrap();
    assert!(c.uid);
    let Kind::Fetch { items, .. } = c.kind else { panic!() };
    assert_eq!(items.len(), 4);
    assert_eq!(
        items[1],
        FetchItem::BodySection {
            path: vec![],
            section: Section::HeaderFields(vec!["SUBJECT".into(), "FROM".into()]),
            partial: None,
            peek: true
        }
    );
    assert_eq!(
        k("a STORE 1,3:5 +FLAGS.SILENT (\\Seen $Label)"),
        Kind::Store {
            set: SeqSet::Ranges(vec![(1, 1), (3, 5)]),
            mode: StoreMode::Add,
            silent: true,
            flags: vec!["\\Seen".into(), "$Label".into()],
            unchangedsince: None
        }
    );
    let Kind::Append(m, msgs) = k("a APPEND Sent (\\Seen) \"05-Mar-2026 10:00:00 +0100\" {3}\r\nabc") else {
        panic!()
    };
    assert_eq!(m, "Sent");
    assert_eq!(msgs[0].date, Some((1_772_701_200, 60)));
    assert_eq!(msgs[0].data, b"abc");
    // SEARCH=FUZZY: the key as given (Cyrus without a search engine
    // finds nothing at all; the differential test leaves it out).
    let Kind::Search { key, .. } = k("a SEARCH FUZZY SUBJECT offer") else {
        panic!()
    };
    assert_eq!(key, SearchKey::Header("subject".into(), "offer".into()));
    assert!(matches!(k("a UID XMOVE 1:3 Other"), Kind::Move(..)));
    let Kind::Search { key, .. } = k("a SEARCH OR FROM x NOT SEEN SINCE 1-Feb-2026 UID 1:5") else {
        panic!()
    };
    assert!(matches!(key, SearchKey::And(ref v) if v.len() == 3));
    assert_eq!(
        k("a SETQUOTA user/fred (storage 100 X-NUM-FOLDERS -1 x-annotation-storage 5)"),
        Kind::SetQuota(
            "user/fred".into(),
            vec![
                ("STORAGE".into(), 100),
                ("X-NUM-FOLDERS".into(), -1),
                ("X-ANNOTATION-STORAGE".into(), 5)
            ]
        )
    );
    // cyradm's single resource (a space before the parenthesis) is taken,
    // its run-together pairs are not.
    assert_eq!(
        k("5 SETQUOTA user/u7 (STORAGE 5000 )"),
        Kind::SetQuota("user/u7".into(), vec![("STORAGE".into(), 5000)])
    );
    let e = parse(b"5 SETQUOTA user/u7 (X-NUM-FOLDERS 10STORAGE 5000 )").unwrap_err();
    assert_eq!(e.text, "Invalid quota list in Setquota");
    assert!(matches!(k("a LIST \"\" *"), Kind::List { .. }));
    assert!(matches!(
        k("a LIST (SUBSCRIBED) \"\" (INBOX %) RETURN (CHILDREN STATUS (MESSAGES))"),
        Kind::List { .. }
    ));
}

#[test]
fn errors_carry_tag_and_cyrus_text() {
    let e = parse(b"a1 FROB").unwrap_err();
    assert_eq!((e.tag.as_deref(), e.text.as_str()), (Some("a1"), "Unrecognized command"));
    let e = parse(b"a1 SELECT").unwrap_err();
    assert_eq!(e.text, "Missing required argument to Select");
    let e = parse(b"a1 NOOP x").unwrap_err();
    assert_eq!(e.text, "Unexpected extra arguments to Noop");
    assert_eq!(parse(b"").unwrap_err().tag, None);
    assert!(parse(b"a FETCH 0 FLAGS").is_err());
    assert!(parse(b"a LOGIN {10}\r\nabc").is_err());
    // Hostile nesting is bounded.
    let deep = format!("a SEARCH {}ALL{}", "(".repeat(200), ")".repeat(200));
    assert!(parse(deep.as_bytes()).is_err());
}

#[test]
fn quoted_strings_take_any_escaped_byte_as_cyrus() {
    assert_eq!(k(r#"a LOGIN fred "a\"b\\c""#), Kind::Login("fred".into(), br#"a"b\c"#.to_vec()));
    assert_eq!(k(r#"a LOGIN fred "p\w\%d""#), Kind::Login("fred".into(), b"pw%d".to_vec()));
    assert!(parse(br#"a LOGIN fred "abc\"#).is_err());
    assert!(parse(b"a LOGIN fred \"abc").is_err());
}
