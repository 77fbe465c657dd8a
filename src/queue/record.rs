//! Queue files: Postfix's record framing (a type byte, the length in 7-bit
//! groups least significant first with the high bit meaning "more", the
//! data) holding our envelope and content.  The record letters follow
//! Postfix's `rec_type.h` where the meaning is the same (`T` arrival, `S`
//! sender, `A` attribute, `O` original recipient (here: DSN ORCPT), `R`
//! recipient, `D` done recipient, `M` content start, `N` content, `X` extracted, `E` end), but
//! content is stored in chunks, not lines, so the files are ours, not
//! `postcat`'s.  Ours alone: `n` DSN NOTIFY, `o` the recipient before
//! rewriting (`orig_to`), `f` recipient flags, `w` whether the delay
//! warning went out (one byte, `0` or `1`, rewritten in place).  A file without `E` is
//! incomplete and never delivered.
//!
//! A recipient is marked done in place by overwriting its `R` with `D`
//! (as Postfix's qmgr does), so partial delivery needs one byte written.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub addr: String,
    /// RFC 3461 ORCPT (`rfc822;addr`), if given.
    pub orcpt: Option<String>,
    /// RFC 3461 NOTIFY (comma list, upper case), if given.
    pub notify: Option<String>,
    /// The address as received, when cleanup (canonical_maps,
    /// virtual_alias_maps) or local(8) aliasing rewrote it: logged as
    /// `orig_to=<…>`.
    pub orig: Option<String>,
    /// Produced by local alias expansion: not expanded again.
    pub no_alias: bool,
    pub done: bool,
    /// Offset of the `R`/`D` type byte in the file (set when read/written).
    pub offset: u64,
}

impl Recipient {
    pub fn with_addr(mut self, addr: String) -> Recipient {
        self.addr = addr;
        self
    }

    pub fn new(addr: &str) -> Recipient {
        Recipient {
            addr: addr.to_string(),
            orcpt: None,
            notify: None,
            orig: None,
            no_alias: false,
            done: false,
            offset: 0,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// Arrival time: seconds and microseconds.
    pub arrival: (i64, u32),
    pub sender: String,
    /// `name=value` attributes: client, helo, protocol, sasl, dsn.
    pub attrs: Vec<(String, String)>,
    pub rcpts: Vec<Recipient>,
    /// The sender was warned of the delay (`delay_warning_time`).
    pub warned: bool,
    /// Offset of the `w` record's flag byte (files written before the
    /// record existed have none and are never warned).
    pub warn_offset: Option<u64>,
}

impl Envelope {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Content chunk size in `N` records.
const CHUNK: usize = 1 << 16;

fn put(out: &mut Vec<u8>, t: u8, data: &[u8]) {
    out.push(t);
    let mut n = data.len();
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    }
    out.extend_from_slice(data);
}

/// Serialises envelope and content into a complete queue file; fills in
/// each recipient's offset.
pub fn encode(env: &mut Envelope, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 512);
    put(&mut out, b'T', format!("{} {}", env.arrival.0, env.arrival.1).as_bytes());
    env.warn_offset = Some(out.len() as u64 + 2);
    put(&mut out, b'w', if env.warned { b"1" } else { b"0" });
    put(&mut out, b'S', env.sender.as_bytes());
    for (n, v) in &env.attrs {
        put(&mut out, b'A', format!("{n}={v}").as_bytes());
    }
    for r in &mut env.rcpts {
        if let Some(o) = &r.orcpt {
            put(&mut out, b'O', o.as_bytes());
        }
        if let Some(n) = &r.notify {
            put(&mut out, b'n', n.as_bytes());
        }
        if let Some(o) = &r.orig {
            put(&mut out, b'o', o.as_bytes());
        }
        if r.no_alias {
            put(&mut out, b'f', b"noalias");
        }
        r.offset = out.len() as u64;
        put(&mut out, if r.done { b'D' } else { b'R' }, r.addr.as_bytes());
    }
    put(&mut out, b'M', b"");
    for c in content.chunks(CHUNK) {
        put(&mut out, b'N', c);
    }
    put(&mut out, b'X', b"");
    put(&mut out, b'E', b"");
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// Ends before `E` (being written, or torn).
    Incomplete,
    /// Not a queue file.
    Corrupt(&'static str),
}

/// Reads a queue file; the content is returned as a range into `data`'s
/// chunks joined.
pub fn decode(data: &[u8]) -> Result<(Envelope, Vec<u8>), RecordError> {
    let mut env = Envelope::default();
    let mut content = Vec::new();
    let mut pos = 0usize;
    let (mut orcpt, mut notify, mut orig, mut no_alias) = (None, None, None, false);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    loop {
        let start = pos;
        let Some(&t) = data.get(pos) else {
            return Err(RecordError::Incomplete);
        };
        pos += 1;
        let mut len = 0usize;
        let mut shift = 0;
        loop {
            let Some(&b) = data.get(pos) else {
                return Err(RecordError::Incomplete);
            };
            pos += 1;
            if shift > 35 {
                return Err(RecordError::Corrupt("record length overflow"));
            }
            len |= ((b & 0x7f) as usize) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        let Some(body) = data.get(pos..pos + len) else {
            return Err(RecordError::Incomplete);
        };
        pos += len;
        match t {
            b'T' => {
                let s = text(body);
                let mut it = s.split(' ');
                let sec = it.next().and_then(|v| v.parse().ok());
                let usec = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                env.arrival = (sec.ok_or(RecordError::Corrupt("bad arrival time"))?, usec);
            }
            b'S' => env.sender = text(body),
            b'w' => {
                env.warned = body == b"1";
                env.warn_offset = Some(pos as u64 - len as u64);
            }
            b'A' => {
                let s = text(body);
                let (n, v) = s.split_once('=').ok_or(RecordError::Corrupt("bad attribute"))?;
                env.attrs.push((n.to_string(), v.to_string()));
            }
            b'O' => orcpt = Some(text(body)),
            b'n' => notify = Some(text(body)),
            b'o' => orig = Some(text(body)),
            b'f' => no_alias = body == b"noalias",
            b'R' | b'D' => env.rcpts.push(Recipient {
                addr: text(body),
                orcpt: orcpt.take(),
                notify: notify.take(),
                orig: orig.take(),
                no_alias: std::mem::take(&mut no_alias),
                done: t == b'D',
                offset: start as u64,
            }),
            b'M' | b'X' => {}
            b'N' => content.extend_from_slice(body),
            b'E' => return Ok((env, content)),
            _ => return Err(RecordError::Corrupt("unknown record type")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_done_marking() {
        let mut env = Envelope {
            arrival: (1_800_000_000, 123456),
            sender: "a@b".into(),
            attrs: vec![("client".into(), "x[1.2.3.4]".into())],
            rcpts: vec![
                Recipient::new("x@y"),
                Recipient {
                    orcpt: Some("rfc822;X@y".into()),
                    notify: Some("NEVER".into()),
                    orig: Some("alias@y".into()),
                    no_alias: true,
                    ..Recipient::new("z@y")
                },
            ],
            ..Default::default()
        };
        let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut f = encode(&mut env, &content);
        let (e2, c2) = decode(&f).unwrap();
        assert_eq!(e2, env);
        assert_eq!(c2, content);
        f[env.rcpts[1].offset as usize] = b'D';
        let (e3, _) = decode(&f).unwrap();
        assert!(!e3.rcpts[0].done && e3.rcpts[1].done && !e3.warned);
        f[env.warn_offset.unwrap() as usize] = b'1';
        assert!(decode(&f).unwrap().0.warned);
        for cut in [0, 1, 10, f.len() - 1] {
            assert_eq!(decode(&f[..cut]), Err(RecordError::Incomplete));
        }
        assert_eq!(decode(b"Z\x00E\x00"), Err(RecordError::Corrupt("unknown record type")));
        assert_eq!(
            decode(b"N\xff\xff\xff\xff\xff\xff\x01"),
            Err(RecordError::Corrupt("record length overflow"))
        );
    }
}
