//! The Sendmail 8 milter protocol, MTA side (what Postfix's milter8 client
//! speaks, protocol version 6): packet framing, the commands an MTA sends
//! and the replies a filter gives.  Sans-I/O: the daemon moves the bytes.
//!
//! A packet is a 4-byte big-endian length (command byte included), one
//! command byte, then the payload; strings end in NUL.

/// Protocol version sent in option negotiation (Postfix's default
/// `milter_protocol = 6`).
pub const VERSION: u32 = 6;

/// Actions the MTA lets a filter take (SMFIF_*): add headers, change the
/// body, add and delete recipients, change headers, quarantine, change
/// the sender, add recipients with ESMTP arguments, set macro lists.
pub const ACTIONS: u32 = 0x1ff;
pub const SMFIF_SETSYMLIST: u32 = 0x100;

/// Protocol steps (SMFIP_*): the MTA offers every one of them.
pub const PROTOCOL: u32 = 0x1f_ffff;
pub const NOCONNECT: u32 = 0x1;
pub const NOHELO: u32 = 0x2;
pub const NOMAIL: u32 = 0x4;
pub const NORCPT: u32 = 0x8;
pub const NOBODY: u32 = 0x10;
pub const NOHDRS: u32 = 0x20;
pub const NOEOH: u32 = 0x40;
pub const NR_HDR: u32 = 0x80;
pub const NOUNKNOWN: u32 = 0x100;
pub const NODATA: u32 = 0x200;
pub const SKIP: u32 = 0x400;
pub const RCPT_REJ: u32 = 0x800;
pub const NR_CONN: u32 = 0x1000;
pub const NR_HELO: u32 = 0x2000;
pub const NR_MAIL: u32 = 0x4000;
pub const NR_RCPT: u32 = 0x8000;
pub const NR_DATA: u32 = 0x1_0000;
pub const NR_UNKN: u32 = 0x2_0000;
pub const NR_EOH: u32 = 0x4_0000;
pub const NR_BODY: u32 = 0x8_0000;
pub const HDR_LEADSPC: u32 = 0x10_0000;

/// The largest packet accepted from a filter (a body replacement chunk,
/// a header): larger ones are a protocol error.
pub const MAX_PACKET: usize = 1 << 20;

/// The largest body chunk sent (libmilter's MILTER_CHUNK_SIZE).
pub const CHUNK: usize = 65535;

/// Command bytes (SMFIC_*).
pub mod cmd {
    pub const ABORT: u8 = b'A';
    pub const BODY: u8 = b'B';
    pub const CONNECT: u8 = b'C';
    pub const MACRO: u8 = b'D';
    pub const BODYEOB: u8 = b'E';
    pub const HELO: u8 = b'H';
    pub const HEADER: u8 = b'L';
    pub const MAIL: u8 = b'M';
    pub const EOH: u8 = b'N';
    pub const OPTNEG: u8 = b'O';
    pub const QUIT: u8 = b'Q';
    pub const RCPT: u8 = b'R';
    pub const DATA: u8 = b'T';
}

/// One packet: length, command byte, payload.
pub fn packet(cmd: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(payload.len() + 5);
    p.extend_from_slice(&((payload.len() + 1) as u32).to_be_bytes());
    p.push(cmd);
    p.extend_from_slice(payload);
    p
}

/// NUL-terminated strings, one after the other.
pub fn strings<S: AsRef<[u8]>>(parts: &[S]) -> Vec<u8> {
    let mut v = Vec::new();
    for p in parts {
        // A NUL inside a value would end it early on the filter's side.
        v.extend(p.as_ref().iter().map(|&b| if b == 0 { b' ' } else { b }));
        v.push(0);
    }
    v
}

/// Option negotiation: version, actions offered, protocol steps offered.
pub fn optneg(actions: u32, protocol: u32) -> Vec<u8> {
    let mut p = Vec::with_capacity(12);
    p.extend_from_slice(&VERSION.to_be_bytes());
    p.extend_from_slice(&actions.to_be_bytes());
    p.extend_from_slice(&protocol.to_be_bytes());
    packet(cmd::OPTNEG, &p)
}

/// The macros for the command `stage` (`C`, `H`, `M`, `R`, `T`, `L`, `N`,
/// `E`): name/value pairs.
pub fn macros(stage: u8, pairs: &[(String, String)]) -> Vec<u8> {
    let mut p = vec![stage];
    for (n, v) in pairs {
        p.extend_from_slice(&strings(&[n, v]));
    }
    packet(cmd::MACRO, &p)
}

/// The payload of the connect command: host name, family (`4`, `6`, `U`
/// for unknown), port, address.
pub fn connect(host: &str, addr: Option<std::net::IpAddr>, port: u16) -> Vec<u8> {
    let mut p = strings(&[host]);
    match addr {
        Some(a) => {
            p.push(if a.is_ipv4() { b'4' } else { b'6' });
            p.extend_from_slice(&port.to_be_bytes());
            p.extend_from_slice(&strings(&[a.to_string()]));
        }
        None => p.push(b'U'),
    }
    p
}

/// A header as the filter sees it: name, then the value with its one
/// leading space removed unless the filter asked for it (HDR_LEADSPC).
pub fn header(name: &[u8], value: &[u8], leadspc: bool) -> Vec<u8> {
    let value = if !leadspc && value.first() == Some(&b' ') {
        &value[1..]
    } else {
        value
    };
    packet(cmd::HEADER, &strings(&[name, value]))
}

/// A reply or modification request from a filter (SMFIR_*).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Option negotiation: version, actions, protocol steps, and any macro
    /// lists asked for (stage index, space-separated names).
    Optneg {
        version: u32,
        actions: u32,
        protocol: u32,
        symlists: Vec<(u32, String)>,
    },
    Accept,
    Continue,
    Discard,
    Reject,
    Tempfail,
    /// `y`: a full SMTP reply, `550 5.7.1 text`.
    ReplyCode(String),
    Progress,
    Skip,
    /// `f`/`4`: give up the connection with a 421 (SMFIR_CONN_FAIL,
    /// SMFIR_SHUTDOWN).
    Shutdown,
    AddHeader(Vec<u8>, Vec<u8>),
    InsHeader(u32, Vec<u8>, Vec<u8>),
    ChgHeader(u32, Vec<u8>, Vec<u8>),
    AddRcpt(String, Option<String>),
    DelRcpt(String),
    ReplBody(Vec<u8>),
    ChgFrom(String, Option<String>),
    Quarantine(String),
}

impl Reply {
    /// True for the replies that end a step (the rest are modification
    /// requests or progress notes that precede one).
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Reply::Accept
                | Reply::Continue
                | Reply::Discard
                | Reply::Reject
                | Reply::Tempfail
                | Reply::ReplyCode(_)
                | Reply::Skip
                | Reply::Shutdown
                | Reply::Optneg { .. }
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtoError(pub String);

impl std::fmt::Display for ProtoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The length of the packet at the start of `buf` (header included) once
/// known; an error for an empty or oversized packet.
pub fn packet_len(buf: &[u8]) -> Result<Option<usize>, ProtoError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let n = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if n == 0 || n > MAX_PACKET {
        return Err(ProtoError(format!("bad packet length {n}")));
    }
    Ok(Some(n + 4))
}

fn cstr(p: &[u8]) -> Result<(&[u8], &[u8]), ProtoError> {
    match p.iter().position(|&b| b == 0) {
        Some(i) => Ok((&p[..i], &p[i + 1..])),
        None => Err(ProtoError("string without a NUL".into())),
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn u32_at(p: &[u8], at: usize) -> Result<u32, ProtoError> {
    p.get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| ProtoError("short packet".into()))
}

/// Decodes one complete packet (as delimited by `packet_len`).
pub fn decode(pkt: &[u8]) -> Result<Reply, ProtoError> {
    let Some((&code, p)) = pkt.get(4..).and_then(|b| b.split_first()) else {
        return Err(ProtoError("empty packet".into()));
    };
    let two = |p: &[u8]| -> Result<(Vec<u8>, Vec<u8>), ProtoError> {
        let (a, rest) = cstr(p)?;
        let (b, _) = cstr(rest)?;
        Ok((a.to_vec(), b.to_vec()))
    };
    let addr_args = |p: &[u8]| -> Result<(String, Option<String>), ProtoError> {
        let (a, rest) = cstr(p)?;
        let args = cstr(rest).ok().map(|(x, _)| text(x)).filter(|x| !x.is_empty());
        Ok((text(a), args))
    };
    Ok(match code {
        b'O' => {
            let (version, actions, protocol) = (u32_at(p, 0)?, u32_at(p, 4)?, u32_at(p, 8)?);
            let mut symlists = Vec::new();
            let mut rest = &p[12.min(p.len())..];
            while rest.len() >= 4 {
                let stage = u32_at(rest, 0)?;
                let (names, r) = cstr(&rest[4..])?;
                symlists.push((stage, text(names)));
                rest = r;
            }
            Reply::Optneg {
                version,
                actions,
                protocol,
                symlists,
            }
        }
        b'a' => Reply::Accept,
        b'c' => Reply::Continue,
        b'd' => Reply::Discard,
        b'r' => Reply::Reject,
        b't' => Reply::Tempfail,
        b'p' => Reply::Progress,
        b's' => Reply::Skip,
        b'f' | b'4' => Reply::Shutdown,
        b'y' => Reply::ReplyCode(text(cstr(p).map(|(a, _)| a).unwrap_or(p))),
        b'h' => {
            let (n, v) = two(p)?;
            Reply::AddHeader(n, v)
        }
        b'i' | b'm' => {
            let idx = u32_at(p, 0)?;
            let (n, v) = two(&p[4..])?;
            if code == b'i' {
                Reply::InsHeader(idx, n, v)
            } else {
                Reply::ChgHeader(idx, n, v)
            }
        }
        b'+' | b'2' => {
            let (a, args) = addr_args(p)?;
            Reply::AddRcpt(a, args)
        }
        b'-' => Reply::DelRcpt(text(cstr(p)?.0)),
        b'b' => Reply::ReplBody(p.to_vec()),
        b'e' => {
            let (a, args) = addr_args(p)?;
            Reply::ChgFrom(a, args)
        }
        b'q' => Reply::Quarantine(text(cstr(p).map(|(a, _)| a).unwrap_or(p))),
        c => return Err(ProtoError(format!("unknown reply code {:?}", c as char))),
    })
}

/// Macro stage indexes of a SETSYMLIST request (SMFIM_*), as the command
/// byte whose macros they name.
pub fn symlist_stage(i: u32) -> Option<u8> {
    Some(match i {
        0 => b'C',
        1 => b'H',
        2 => b'M',
        3 => b'R',
        4 => b'T',
        5 => b'E',
        6 => b'N',
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_round_trip_and_bad_input_is_an_error() {
        assert_eq!(packet(b'c', b""), vec![0, 0, 0, 1, b'c']);
        assert_eq!(decode(&packet(b'c', b"")).unwrap(), Reply::Continue);
        assert_eq!(
            decode(&packet(b'y', b"550 5.7.1 no\0")).unwrap(),
            Reply::ReplyCode("550 5.7.1 no".into())
        );
        let mut ins = 1u32.to_be_bytes().to_vec();
        ins.extend_from_slice(b"X-A\0 v\0");
        assert_eq!(
            decode(&packet(b'i', &ins)).unwrap(),
            Reply::InsHeader(1, b"X-A".to_vec(), b" v".to_vec())
        );
        assert_eq!(
            decode(&packet(b'2', b"<a@b>\0NOTIFY=NEVER\0")).unwrap(),
            Reply::AddRcpt("<a@b>".into(), Some("NOTIFY=NEVER".into()))
        );
        let mut o = optneg(ACTIONS, 0);
        o.extend_from_slice(&[]);
        let mut reply = o[5..].to_vec();
        reply.extend_from_slice(&2u32.to_be_bytes());
        reply.extend_from_slice(b"{auth_authen} i\0");
        match decode(&packet(b'O', &reply)).unwrap() {
            Reply::Optneg { version, symlists, .. } => {
                assert_eq!(version, 6);
                assert_eq!(symlists, vec![(2, "{auth_authen} i".to_string())]);
            }
            r => panic!("{r:?}"),
        }
        assert!(decode(&packet(b'h', b"X-A\0no-nul")).is_err());
        assert!(decode(&packet(b'i', b"\0\0")).is_err());
        assert!(decode(&packet(b'Z', b"")).is_err());
        assert!(packet_len(&[0, 0, 0, 0]).is_err());
        assert!(packet_len(&[0x7f, 0, 0, 0]).is_err());
        assert_eq!(packet_len(&[0, 0, 0, 3]).unwrap(), Some(7));
        assert_eq!(packet_len(&[0, 0]).unwrap(), None);
        assert_eq!(header(b"Subject", b" hi", false), packet(b'L', b"Subject\0hi\0"));
        assert_eq!(header(b"Subject", b" hi", true), packet(b'L', b"Subject\0 hi\0"));
        assert_eq!(strings(&["a\0b"]), b"a b\0".to_vec());
        let ip: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(connect("localhost", Some(ip), 25), b"localhost\x004\x00\x19127.0.0.1\x00".to_vec());
    }
}
