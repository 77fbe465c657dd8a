//! The back-end to back-end half of XFER (admins only, capability
//! `X-MUMAIL-XFER`): the source back end logs in to the target as its
//! `proxy_authname` and sends each mailbox as XAPPLY commands, in
//! internal names.  Cyrus moves mailboxes with its replication protocol
//! or the legacy UNDUMP of its own file formats; a store with other files
//! needs its own words, kept as few as XFER needs:
//!
//! ```text
//! XAPPLY MAILBOX name partition uniqueid uidvalidity created acl specialuse annotations
//! XAPPLY RECORDS name (uid modseq flags internaldate tz savedate keywords body|NIL) ...
//! XAPPLY STATE name uidnext highestmodseq recentuid keywords
//! XAPPLY USER inbox data
//! XAPPLY ACTIVATE name
//! XAPPLY ANNOTS name uids data
//! ```
//!
//! ANNOTS replaces the per-message annotations (RFC 5257) of the listed
//! UIDs (`1,3:5`) by `data`'s `uid TAB entry TAB userid TAB hex(value)`
//! lines; it follows the RECORDS of those UIDs.
//!
//! mumail-migrate's later passes from a Cyrus spool write into active
//! mailboxes with two more, keeping the source's UIDs:
//!
//! ```text
//! XAPPLY MERGE name uidvalidity lo hi (uid modseq flags internaldate tz savedate keywords NIL) ...
//! XAPPLY ADD name uidvalidity (uid modseq flags internaldate tz savedate keywords body) ...
//! ```
//!
//! MERGE lists every live source record with a UID in `[lo, hi)`: the
//! target expunges its live records in that range the list lacks, sets
//! the flags of those it has, and answers `OK [XMERGED missing reflagged
//! removed stale]` where `missing` names the UIDs (at or above its UIDNEXT)
//! it lacks (comma-separated, `-` for none), which ADD then brings.
//!
//! Numbers are decimal (`tz` may be negative); `acl`, `specialuse`,
//! `keywords` and `data` are strings; `annotations` and `data` hold
//! tab-separated lines; a record's body is a literal, or NIL when the
//! target already has the file (a flag change) or it is gone (an
//! expunged record).

use super::*;
use crate::proto::imap::render::client_string;

/// One index record as sent; `body` is the message file.
#[derive(Debug, Clone, PartialEq)]
pub struct XRecord {
    pub uid: u32,
    pub modseq: u64,
    pub flags: u32,
    pub internaldate: i64,
    pub tz: i32,
    pub savedate: i64,
    pub keywords: String,
    pub body: Option<Vec<u8>>,
}

/// A mailbox's list entry and what hangs on it.
#[derive(Debug, Clone, PartialEq)]
pub struct XMailbox {
    pub name: String,
    pub partition: String,
    pub uniqueid: String,
    pub uidvalidity: u32,
    pub created: i64,
    /// Cyrus internal form (`id\trights\t…`).
    pub acl: String,
    pub specialuse: String,
    /// `entry TAB userid TAB hex(value)` lines.
    pub annotations: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum XApply {
    Mailbox(XMailbox),
    Records(String, Vec<XRecord>),
    State {
        name: String,
        uidnext: u32,
        highestmodseq: u64,
        recentuid: u32,
        keywords: String,
    },
    User(String, String),
    Activate(String),
    /// Per-message annotations: mailbox, UID set, lines.
    Annots(String, String, String),
    Merge {
        name: String,
        uidvalidity: u32,
        lo: u32,
        hi: u32,
        records: Vec<XRecord>,
    },
    Add {
        name: String,
        uidvalidity: u32,
        records: Vec<XRecord>,
    },
}

/// The most records one XAPPLY RECORDS may carry.
pub const MAX_RECORDS: usize = 10_000;

fn signed(p: &mut P) -> Result<i64, String> {
    let neg = p.eat(b'-');
    let n = p.number()? as i64;
    Ok(if neg { -n } else { n })
}

fn text(p: &mut P) -> Result<String, String> {
    String::from_utf8(p.string()?).map_err(|_| "Invalid characters".to_string())
}

fn u32_of(n: u64) -> Result<u32, String> {
    u32::try_from(n).map_err(|_| "Invalid number".to_string())
}

/// A list of ` (record)` items.
fn records(p: &mut P) -> Result<Vec<XRecord>, String> {
    let mut v = Vec::new();
    while p.eat(b' ') {
        if v.len() >= MAX_RECORDS {
            return err("Too many records");
        }
        p.expect(b'(')?;
        let uid = u32_of(p.number()?)?;
        p.sp()?;
        let modseq = p.number()?;
        p.sp()?;
        let flags = u32_of(p.number()?)?;
        p.sp()?;
        let internaldate = signed(p)?;
        p.sp()?;
        let tz = i32::try_from(signed(p)?).map_err(|_| "Invalid number")?;
        p.sp()?;
        let savedate = signed(p)?;
        p.sp()?;
        let keywords = text(p)?;
        p.sp()?;
        let body = if p.s[p.i..].starts_with(b"NIL") {
            p.i += 3;
            None
        } else {
            Some(p.literal()?)
        };
        p.expect(b')')?;
        if uid == 0 {
            return err("Invalid number");
        }
        v.push(XRecord {
            uid,
            modseq,
            flags,
            internaldate,
            tz,
            savedate,
            keywords,
            body,
        });
    }
    Ok(v)
}

pub(super) fn parse(p: &mut P) -> Result<XApply, String> {
    p.sp()?;
    let what = p.atom()?.to_ascii_uppercase();
    p.sp()?;
    let name = p.astr()?;
    Ok(match what.as_str() {
        "MAILBOX" => {
            p.sp()?;
            let partition = p.astr()?;
            p.sp()?;
            let uniqueid = p.astr()?;
            p.sp()?;
            let uidvalidity = u32_of(p.number()?)?;
            p.sp()?;
            let created = signed(p)?;
            p.sp()?;
            let acl = text(p)?;
            p.sp()?;
            let specialuse = text(p)?;
            p.sp()?;
            let annotations = text(p)?;
            XApply::Mailbox(XMailbox {
                name,
                partition,
                uniqueid,
                uidvalidity,
                created,
                acl,
                specialuse,
                annotations,
            })
        }
        "RECORDS" => XApply::Records(name, records(p)?),
        "MERGE" => {
            p.sp()?;
            let uidvalidity = u32_of(p.number()?)?;
            p.sp()?;
            let lo = u32_of(p.number()?)?;
            p.sp()?;
            let hi = u32_of(p.number()?)?;
            XApply::Merge {
                name,
                uidvalidity,
                lo,
                hi,
                records: records(p)?,
            }
        }
        "ADD" => {
            p.sp()?;
            let uidvalidity = u32_of(p.number()?)?;
            XApply::Add {
                name,
                uidvalidity,
                records: records(p)?,
            }
        }
        "STATE" => {
            p.sp()?;
            let uidnext = u32_of(p.number()?)?;
            p.sp()?;
            let highestmodseq = p.number()?;
            p.sp()?;
            let recentuid = u32_of(p.number()?)?;
            p.sp()?;
            let keywords = text(p)?;
            XApply::State {
                name,
                uidnext,
                highestmodseq,
                recentuid,
                keywords,
            }
        }
        "USER" => {
            p.sp()?;
            XApply::User(name, text(p)?)
        }
        "ACTIVATE" => XApply::Activate(name),
        "ANNOTS" => {
            p.sp()?;
            let uids = p.atom()?;
            p.sp()?;
            XApply::Annots(name, uids, text(p)?)
        }
        _ => return err("Unrecognized XAPPLY item"),
    })
}

fn render_records(out: &mut Vec<u8>, recs: &[XRecord]) {
    for r in recs {
        out.extend_from_slice(format!(" ({} {} {} {} {} {} ", r.uid, r.modseq, r.flags, r.internaldate, r.tz, r.savedate).as_bytes());
        client_string(out, r.keywords.as_bytes());
        match &r.body {
            Some(b) => {
                out.extend_from_slice(format!(" {{{}+}}\r\n", b.len()).as_bytes());
                out.extend_from_slice(b);
            }
            None => out.extend_from_slice(b" NIL"),
        }
        out.push(b')');
    }
}

/// The command (with its tag, CRLF-terminated) for one XAPPLY.
pub fn render(tag: &str, x: &XApply) -> Vec<u8> {
    let mut out = format!("{tag} XAPPLY ").into_bytes();
    match x {
        XApply::Mailbox(m) => {
            out.extend_from_slice(b"MAILBOX ");
            client_string(&mut out, m.name.as_bytes());
            out.push(b' ');
            client_string(&mut out, m.partition.as_bytes());
            out.push(b' ');
            client_string(&mut out, m.uniqueid.as_bytes());
            out.extend_from_slice(format!(" {} {} ", m.uidvalidity, m.created).as_bytes());
            client_string(&mut out, m.acl.as_bytes());
            out.push(b' ');
            client_string(&mut out, m.specialuse.as_bytes());
            out.push(b' ');
            client_string(&mut out, m.annotations.as_bytes());
        }
        XApply::Records(name, recs) => {
            out.extend_from_slice(b"RECORDS ");
            client_string(&mut out, name.as_bytes());
            render_records(&mut out, recs);
        }
        XApply::Merge {
            name,
            uidvalidity,
            lo,
            hi,
            records,
        } => {
            out.extend_from_slice(b"MERGE ");
            client_string(&mut out, name.as_bytes());
            out.extend_from_slice(format!(" {uidvalidity} {lo} {hi}").as_bytes());
            render_records(&mut out, records);
        }
        XApply::Add {
            name,
            uidvalidity,
            records,
        } => {
            out.extend_from_slice(b"ADD ");
            client_string(&mut out, name.as_bytes());
            out.extend_from_slice(format!(" {uidvalidity}").as_bytes());
            render_records(&mut out, records);
        }
        XApply::State {
            name,
            uidnext,
            highestmodseq,
            recentuid,
            keywords,
        } => {
            out.extend_from_slice(b"STATE ");
            client_string(&mut out, name.as_bytes());
            out.extend_from_slice(format!(" {uidnext} {highestmodseq} {recentuid} ").as_bytes());
            client_string(&mut out, keywords.as_bytes());
        }
        XApply::User(inbox, data) => {
            out.extend_from_slice(b"USER ");
            client_string(&mut out, inbox.as_bytes());
            out.push(b' ');
            client_string(&mut out, data.as_bytes());
        }
        XApply::Activate(name) => {
            out.extend_from_slice(b"ACTIVATE ");
            client_string(&mut out, name.as_bytes());
        }
        XApply::Annots(name, uids, data) => {
            out.extend_from_slice(b"ANNOTS ");
            client_string(&mut out, name.as_bytes());
            out.push(b' ');
            out.extend_from_slice(uids.as_bytes());
            out.push(b' ');
            client_string(&mut out, data.as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::super::{parse as parse_cmd, Kind};
    use super::*;

    fn round(x: XApply) {
        let wire = render("X1", &x);
        let cmd = parse_cmd(wire.strip_suffix(b"\r\n").unwrap()).unwrap();
        assert_eq!(cmd.kind, Kind::XApply(x));
    }

    #[test]
    fn every_item_survives_the_wire() {
        round(XApply::Mailbox(XMailbox {
            name: "user.bob".into(),
            partition: "default".into(),
            uniqueid: "0b0e-11".into(),
            uidvalidity: 1_700_000_000,
            created: 1_700_000_001,
            acl: "bob\tlrswipkxtecdan\tanyone\tlr\t".into(),
            specialuse: "".into(),
            annotations: "/comment\t\t6869\n".into(),
        }));
        round(XApply::Records(
            "user.bob.Sent \"x\"".into(),
            vec![
                XRecord {
                    uid: 1,
                    modseq: 7,
                    flags: 16,
                    internaldate: 1_600_000_000,
                    tz: -300,
                    savedate: 1_600_000_100,
                    keywords: "$Forwarded Junk".into(),
                    body: Some(b"Subject: a\r\n\r\n(NIL) {3}\r\n".to_vec()),
                },
                XRecord {
                    uid: 5,
                    modseq: 9,
                    flags: 0x8000_0000,
                    internaldate: 0,
                    tz: 60,
                    savedate: 0,
                    keywords: "".into(),
                    body: None,
                },
            ],
        ));
        round(XApply::State {
            name: "user.bob".into(),
            uidnext: 6,
            highestmodseq: 9,
            recentuid: 5,
            keywords: "Junk $Forwarded".into(),
        });
        round(XApply::User("user.bob".into(), "sub\tuser.bob.Sent\nseen\tx\t1\t0\t1:5\n".into()));
        round(XApply::Activate("user.bob".into()));
        let rec = |uid: u32, body: Option<&[u8]>| XRecord {
            uid,
            modseq: 3,
            flags: 2,
            internaldate: 1_500_000_000,
            tz: 0,
            savedate: 0,
            keywords: "work".into(),
            body: body.map(<[u8]>::to_vec),
        };
        round(XApply::Merge {
            name: "user.bob".into(),
            uidvalidity: 77,
            lo: 1,
            hi: 9,
            records: vec![rec(1, None), rec(8, None)],
        });
        round(XApply::Add {
            name: "user.bob".into(),
            uidvalidity: 77,
            records: vec![rec(9, Some(b"Subject: x\r\n\r\ny\r\n"))],
        });
    }

    #[test]
    fn bad_items_are_refused() {
        for bad in [
            &b"X1 XAPPLY FROB user.bob"[..],
            b"X1 XAPPLY RECORDS user.bob (0 1 0 0 0 0 \"\" NIL)",
            b"X1 XAPPLY RECORDS user.bob (1 1 0 0 0 0 \"\" {5+}\r\nab)",
            b"X1 XAPPLY STATE user.bob 99999999999 1 1 \"\"",
            b"X1 XAPPLY MAILBOX user.bob",
        ] {
            assert!(parse_cmd(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
