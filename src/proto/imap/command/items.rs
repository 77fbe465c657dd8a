//! The FETCH attribute and SEARCH key grammars (RFC 3501 §9 with
//! BINARY, CONDSTORE, WITHIN, SAVEDATE and OBJECTID), split from the
//! command parser they serve.

use super::*;

fn section_path(p: &mut P) -> Result<(Vec<u32>, Section), String> {
    let mut path = Vec::new();
    loop {
        if p.peek().is_some_and(|c| c.is_ascii_digit()) {
            path.push(p.nz32()?);
            if !p.eat(b'.') {
                return Ok((path, Section::Full));
            }
            continue;
        }
        break;
    }
    if p.peek() == Some(b']') {
        if !path.is_empty() {
            return err("Invalid body section");
        }
        return Ok((path, Section::Full));
    }
    let name = String::from_utf8_lossy(p.atom_with(b"")?).to_ascii_uppercase();
    let sec = match name.as_str() {
        "HEADER" => Section::Header,
        "TEXT" => Section::Text,
        "MIME" if !path.is_empty() => Section::Mime,
        "HEADER.FIELDS" | "HEADER.FIELDS.NOT" => {
            p.sp()?;
            p.expect(b'(')?;
            if p.peek() == Some(b')') {
                // Cyrus names the item; fetch_att puts it in.
                return err(format!("Invalid field-name in Fetch {{ATT}}[{name}"));
            }
            let mut names = Vec::new();
            loop {
                names.push(p.astr()?);
                if !p.eat(b' ') {
                    break;
                }
            }
            p.expect(b')')?;
            if name == "HEADER.FIELDS" {
                Section::HeaderFields(names)
            } else {
                Section::HeaderFieldsNot(names)
            }
        }
        _ => return err("Invalid body section"),
    };
    Ok((path, sec))
}

/// A section as FETCH's `BODY[...]` spells it, alone (an IMAP URL's
/// `;SECTION=`): the part path and what of it.
pub fn parse_section(s: &[u8]) -> Result<(Vec<u32>, Section), String> {
    let mut p = P { s, i: 0 };
    let r = section_path(&mut p)?;
    if !p.at_end() {
        return err("Invalid body section");
    }
    Ok(r)
}

fn partial(p: &mut P) -> Result<Option<(u32, u32)>, String> {
    if !p.eat(b'<') {
        return Ok(None);
    }
    let a = p.number()?;
    p.expect(b'.')?;
    let b = p.number()?;
    p.expect(b'>')?;
    if a > u32::MAX as u64 || b == 0 || b > u32::MAX as u64 {
        return err("Invalid body partial");
    }
    Ok(Some((a as u32, b as u32)))
}

pub(super) fn fetch_att(p: &mut P, out: &mut Vec<FetchItem>) -> Result<(), String> {
    let st = p.i;
    while p.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == b'.') {
        p.i += 1;
    }
    let name = String::from_utf8_lossy(&p.s[st..p.i]).to_ascii_uppercase();
    use FetchItem::*;
    match name.as_str() {
        "ALL" => out.extend([Flags, InternalDate, Rfc822Size, Envelope]),
        "FAST" => out.extend([Flags, InternalDate, Rfc822Size]),
        "FULL" => out.extend([Flags, InternalDate, Rfc822Size, Envelope, Body]),
        "FLAGS" => out.push(Flags),
        "UID" => out.push(Uid),
        "INTERNALDATE" => out.push(InternalDate),
        "RFC822.SIZE" => out.push(Rfc822Size),
        "ENVELOPE" => out.push(Envelope),
        "BODYSTRUCTURE" => out.push(BodyStructure),
        "RFC822" => out.push(Rfc822),
        "RFC822.HEADER" => out.push(Rfc822Header),
        "RFC822.TEXT" => out.push(Rfc822Text),
        "MODSEQ" => out.push(ModSeq),
        "CREATEDMODSEQ" => out.push(CreatedModSeq),
        "SAVEDATE" => out.push(SaveDate),
        "EMAILID" => out.push(EmailId),
        "THREADID" => out.push(ThreadId),
        "DIGEST.SHA1" => out.push(DigestSha1),
        // RFC 5257: ANNOTATION (entries attribs), each one name or a list.
        "ANNOTATION" => {
            if !p.s[p.i..].starts_with(b" (") {
                return err("invalid Annotation");
            }
            p.i += 2;
            let entries = annotation_names(p)?;
            if !p.eat(b' ') {
                return err("Missing annotation attribute(s)");
            }
            let attribs = annotation_names(p)?;
            p.expect(b')')?;
            out.push(Annotation { entries, attribs });
        }
        "PREVIEW" => {
            // [SP "(" preview-mod *(SP preview-mod) ")"]; LAZY is the
            // only modifier.
            if p.s[p.i..].starts_with(b" (") {
                p.i += 2;
                loop {
                    let st = p.i;
                    while p.peek().is_some_and(|c| c.is_ascii_alphanumeric()) {
                        p.i += 1;
                    }
                    if !p.s[st..p.i].eq_ignore_ascii_case(b"LAZY") {
                        return err("Invalid preview modifier");
                    }
                    if !p.eat(b' ') {
                        break;
                    }
                }
                p.expect(b')')?;
            }
            out.push(Preview);
        }
        "BODY" | "BODY.PEEK" => {
            if p.peek() != Some(b'[') {
                if name == "BODY" {
                    out.push(Body);
                    return Ok(());
                }
                return err("Invalid fetch attribute");
            }
            p.expect(b'[')?;
            let (path, section) = section_path(p).map_err(|e| e.replace("{ATT}", &name))?;
            p.expect(b']')?;
            let partial = partial(p)?;
            out.push(BodySection {
                path,
                section,
                partial,
                peek: name == "BODY.PEEK",
            });
        }
        "BINARY" | "BINARY.PEEK" | "BINARY.SIZE" => {
            p.expect(b'[')?;
            let mut path = Vec::new();
            while p.peek().is_some_and(|c| c.is_ascii_digit()) {
                path.push(p.nz32()?);
                if !p.eat(b'.') {
                    break;
                }
            }
            p.expect(b']')?;
            if name == "BINARY.SIZE" {
                out.push(BinarySize(path));
            } else {
                let partial = partial(p)?;
                out.push(Binary {
                    path,
                    partial,
                    peek: name == "BINARY.PEEK",
                });
            }
        }
        "" => return err("Missing required argument"),
        _ => return err(format!("Invalid Fetch attribute {name}")),
    }
    Ok(())
}

/// The search keys ending SEARCH, SORT and THREAD (an implicit AND).
pub(super) fn search_keys(p: &mut P) -> Result<SearchKey, String> {
    let mut keys = Vec::new();
    loop {
        keys.push(search_key(p, 0)?);
        if !p.eat(b' ') {
            break;
        }
    }
    Ok(if keys.len() == 1 { keys.remove(0) } else { SearchKey::And(keys) })
}

fn search_key(p: &mut P, depth: usize) -> Result<SearchKey, String> {
    if depth > 50 {
        return err("Search too deep");
    }
    if p.eat(b'(') {
        let mut v = Vec::new();
        loop {
            v.push(search_key(p, depth + 1)?);
            if !p.eat(b' ') {
                break;
            }
        }
        p.expect(b')')?;
        return Ok(SearchKey::And(v));
    }
    if p.peek().is_some_and(|c| c.is_ascii_digit() || c == b'*' || c == b'$') {
        return Ok(SearchKey::Seq(p.seq_set()?));
    }
    let name = String::from_utf8_lossy(p.atom_with(b"")?).to_ascii_uppercase();
    use SearchKey as K;
    let flag = |f| Ok(K::Flag(f, true));
    let unflag = |f| Ok(K::Flag(f, false));
    let string_arg = |p: &mut P| -> Result<String, String> {
        p.sp()?;
        Ok(String::from_utf8_lossy(&p.astring()?).into_owned())
    };
    match name.as_str() {
        "ALL" => Ok(K::All),
        "ANSWERED" => flag(1),
        "DELETED" => flag(4),
        "DRAFT" => flag(8),
        "FLAGGED" => flag(2),
        "SEEN" => flag(16),
        "UNANSWERED" => unflag(1),
        "UNDELETED" => unflag(4),
        "UNDRAFT" => unflag(8),
        "UNFLAGGED" => unflag(2),
        "UNSEEN" => unflag(16),
        "NEW" => Ok(K::New),
        "OLD" => Ok(K::Old),
        "RECENT" => Ok(K::Recent(true)),
        "KEYWORD" => Ok(K::Keyword(string_arg(p)?, true)),
        "UNKEYWORD" => Ok(K::Keyword(string_arg(p)?, false)),
        "BCC" | "CC" | "FROM" | "SUBJECT" | "TO" => Ok(K::Header(name.to_ascii_lowercase(), string_arg(p)?)),
        "HEADER" => {
            let h = string_arg(p)?;
            let v = string_arg(p)?;
            Ok(K::Header(h.to_ascii_lowercase(), v))
        }
        "BODY" => Ok(K::Body(string_arg(p)?)),
        "TEXT" => Ok(K::Text(string_arg(p)?)),
        "BEFORE" | "ON" | "SINCE" | "SENTBEFORE" | "SENTON" | "SENTSINCE" => {
            p.sp()?;
            let d = p.date()?;
            Ok(match name.as_str() {
                "BEFORE" => K::Before(d),
                "ON" => K::On(d),
                "SINCE" => K::Since(d),
                "SENTBEFORE" => K::SentBefore(d),
                "SENTON" => K::SentOn(d),
                _ => K::SentSince(d),
            })
        }
        "LARGER" | "SMALLER" | "OLDER" | "YOUNGER" => {
            p.sp()?;
            let n = p.number()?;
            Ok(match name.as_str() {
                "LARGER" => K::Larger(n),
                "SMALLER" => K::Smaller(n),
                "OLDER" => K::Older(n),
                _ => K::Younger(n),
            })
        }
        "SAVEDBEFORE" | "SAVEDON" | "SAVEDSINCE" => {
            p.sp()?;
            let d = p.date()?;
            Ok(match name.as_str() {
                "SAVEDBEFORE" => K::SavedBefore(d),
                "SAVEDON" => K::SavedOn(d),
                _ => K::SavedSince(d),
            })
        }
        "SAVEDATESUPPORTED" => Ok(K::SaveDateSupported),
        // SEARCH=FUZZY (RFC 6203): matched as the key itself (substring
        // matching is already approximate enough for what clients ask).
        "FUZZY" => {
            p.sp()?;
            search_key(p, depth + 1)
        }
        "EMAILID" => Ok(K::EmailId(string_arg(p)?)),
        "ANNOTATION" => {
            p.sp()?;
            let entry = p.astr()?;
            p.sp()?;
            let attrib = p.astr()?;
            p.sp()?;
            Ok(K::Annotation(entry, attrib, p.astring()?))
        }
        "THREADID" => Ok(K::ThreadId(string_arg(p)?)),
        "UID" => {
            p.sp()?;
            Ok(K::Uid(p.seq_set()?))
        }
        "MODSEQ" => {
            p.sp()?;
            // Optional entry-name and entry-type-req (RFC 7162 3.1.5).
            if p.peek() == Some(b'"') {
                p.quoted()?;
                p.sp()?;
                p.atom()?;
                p.sp()?;
            }
            Ok(K::ModSeq(p.number()?))
        }
        "NOT" => {
            p.sp()?;
            Ok(K::Not(Box::new(search_key(p, depth + 1)?)))
        }
        "OR" => {
            p.sp()?;
            let a = search_key(p, depth + 1)?;
            p.sp()?;
            let b = search_key(p, depth + 1)?;
            Ok(K::Or(Box::new(a), Box::new(b)))
        }
        _ => err("Invalid Search criteria"),
    }
}

/// RFC 5257 entries or attribs: one name (wildcards allowed) or a
/// parenthesised list of them.
fn annotation_names(p: &mut P) -> Result<Vec<String>, String> {
    if !p.eat(b'(') {
        return Ok(vec![p.list_mailbox()?]);
    }
    let mut v = Vec::new();
    loop {
        v.push(p.list_mailbox()?);
        if p.eat(b')') {
            return Ok(v);
        }
        p.sp()?;
    }
}

/// RFC 5257 att-annotate: `(entry (attrib value ...) ...)`, a value an
/// nstring (NIL removes).
pub(super) fn att_annotate(p: &mut P) -> Result<AnnotationSet, String> {
    p.expect(b'(')?;
    let mut out = Vec::new();
    loop {
        let entry = p.astr()?;
        p.sp()?;
        if !p.eat(b'(') {
            return err("Missing annotation attribute-values list");
        }
        out.push((entry, p.name_values()?));
        if p.eat(b')') {
            return Ok(out);
        }
        p.sp()?;
    }
}
