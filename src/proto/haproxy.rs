//! The HAProxy PROXY protocol (versions 1 and 2), which an up-stream load
//! balancer sends before anything else to name the client it relays
//! (Postfix's `smtpd_upstream_proxy_protocol = haproxy`).  Sans-I/O: the
//! caller reads what `step` asks for and calls it again with everything
//! read so far, so that not one byte after the header is consumed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The version 2 signature.
const V2_SIG: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The longest version 1 header (with its CRLF).
const V1_MAX: usize = 107;
/// The longest version 2 address block read (TLVs after the addresses
/// are skipped, but not beyond this).
const V2_MAX: usize = 4096;

/// The endpoints a header names: (client, server).  None: the proxy's
/// own connection (v2 LOCAL, a health check); the socket's addresses
/// stand.  (Postfix 3.7 refuses v1 UNKNOWN and v2 UNSPEC; so do we, with
/// its reasons.)
pub type Endpoints = Option<(SocketAddr, SocketAddr)>;

#[derive(Debug, PartialEq)]
pub enum Step {
    /// Read this many more bytes, then call again.
    Need(usize),
    /// The whole header was read.
    Done(Endpoints),
}

/// What to do with the bytes read so far (empty at first).
pub fn step(buf: &[u8]) -> Result<Step, &'static str> {
    match buf.first() {
        None => Ok(Step::Need(1)),
        Some(b'\r') => v2(buf),
        // Anything else is read as a version 1 line (to its end, for the
        // log) and refused there unless it is one.
        Some(_) => v1(buf),
    }
}

fn v1(buf: &[u8]) -> Result<Step, &'static str> {
    if !buf.ends_with(b"\r\n") {
        if buf.len() >= V1_MAX {
            return Err("unrecognized protocol header");
        }
        return Ok(Step::Need(1));
    }
    let line = std::str::from_utf8(&buf[..buf.len() - 2]).map_err(|_| "unrecognized protocol header")?;
    let mut f = line.split(' ');
    if f.next() != Some("PROXY") {
        return Err("unrecognized protocol header");
    }
    let family = f.next().unwrap_or("");
    if family != "TCP4" && family != "TCP6" {
        return Err("bad or missing protocol type");
    }
    let addr = |s: Option<&str>, what: &'static str| -> Result<IpAddr, &'static str> {
        let a: IpAddr = s.ok_or(what)?.parse().map_err(|_| what)?;
        match (family, a) {
            ("TCP4", IpAddr::V4(_)) | ("TCP6", IpAddr::V6(_)) => Ok(a),
            _ => Err(what),
        }
    };
    let client = addr(f.next(), "bad or missing client address")?;
    let server = addr(f.next(), "bad or missing server address")?;
    let port = |s: Option<&str>, what: &'static str| -> Result<u16, &'static str> {
        let s = s.ok_or(what)?;
        // Decimal digits only, no leading zero (the specification's form).
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0')) {
            return Err(what);
        }
        s.parse().map_err(|_| what)
    };
    let cport = port(f.next(), "bad or missing client port")?;
    let sport = port(f.next(), "bad or missing server port")?;
    if f.next().is_some() {
        return Err("unrecognized protocol header");
    }
    Ok(Step::Done(Some((SocketAddr::new(client, cport), SocketAddr::new(server, sport)))))
}

fn v2(buf: &[u8]) -> Result<Step, &'static str> {
    let n = buf.len().min(V2_SIG.len());
    if buf[..n] != V2_SIG[..n] {
        return Err("unrecognized protocol header");
    }
    if buf.len() < 16 {
        return Ok(Step::Need(16 - buf.len()));
    }
    let (ver_cmd, fam) = (buf[12], buf[13]);
    let len = u16::from_be_bytes([buf[14], buf[15]]) as usize;
    if ver_cmd >> 4 != 2 {
        return Err("unsupported protocol version");
    }
    if len > V2_MAX {
        return Err("unrecognized protocol header");
    }
    if buf.len() < 16 + len {
        return Ok(Step::Need(16 + len - buf.len()));
    }
    let body = &buf[16..16 + len];
    match ver_cmd & 0x0f {
        // LOCAL: the proxy's own connection (a health check).
        0 => return Ok(Step::Done(None)),
        1 => {}
        _ => return Err("unsupported protocol command"),
    }
    let be16 = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    match fam {
        0x11 => {
            if body.len() < 12 {
                return Err("bad or missing client address");
            }
            let c = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            let s = Ipv4Addr::new(body[4], body[5], body[6], body[7]);
            Ok(Step::Done(Some((
                SocketAddr::new(IpAddr::V4(c), be16(&body[8..])),
                SocketAddr::new(IpAddr::V4(s), be16(&body[10..])),
            ))))
        }
        0x21 => {
            if body.len() < 36 {
                return Err("bad or missing client address");
            }
            let ip6 = |b: &[u8]| Ipv6Addr::from(<[u8; 16]>::try_from(b).unwrap_or([0; 16]));
            Ok(Step::Done(Some((
                SocketAddr::new(IpAddr::V6(ip6(&body[..16])), be16(&body[32..])),
                SocketAddr::new(IpAddr::V6(ip6(&body[16..32])), be16(&body[34..])),
            ))))
        }
        _ => Err("unsupported network protocol"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `bytes` as a reader would: what `step` asks for, no more.
    fn run(bytes: &[u8]) -> Result<(Endpoints, usize), &'static str> {
        let mut buf = Vec::new();
        loop {
            match step(&buf)? {
                Step::Done(e) => return Ok((e, buf.len())),
                Step::Need(n) => {
                    if buf.len() + n > bytes.len() {
                        return Err("eof");
                    }
                    buf.extend_from_slice(&bytes[buf.len()..buf.len() + n]);
                }
            }
        }
    }

    #[test]
    fn version_1() {
        let h = b"PROXY TCP4 10.1.2.3 127.0.0.1 40000 25\r\nEHLO x\r\n";
        let (e, used) = run(h).unwrap();
        assert_eq!(used, 40);
        assert_eq!(e, Some(("10.1.2.3:40000".parse().unwrap(), "127.0.0.1:25".parse().unwrap())));
        let (e, _) = run(b"PROXY TCP6 2001:db8::1 ::1 1 587\r\n").unwrap();
        assert_eq!(e.unwrap().0, "[2001:db8::1]:1".parse().unwrap());
        assert_eq!(run(b"PROXY UNKNOWN\r\n"), Err("bad or missing protocol type"));
        for (bad, why) in [
            (&b"EHLO x\r\n"[..], "unrecognized protocol header"),
            (b"PROXZ TCP4\r\n", "unrecognized protocol header"),
            (b"PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n", "bad or missing protocol type"),
            (b"PROXY TCP4 ::1 1.2.3.4 1 2\r\n", "bad or missing client address"),
            (b"PROXY TCP4 1.2.3.4 1.2.3.4 01 2\r\n", "bad or missing client port"),
            (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 65536\r\n", "bad or missing server port"),
            (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n", "unrecognized protocol header"),
        ] {
            assert_eq!(run(bad), Err(why), "{}", String::from_utf8_lossy(bad));
        }
        // Never more than 107 bytes without a CRLF.
        let long = [b"PROXY ".as_slice(), &[b'1'; 200]].concat();
        assert_eq!(run(&long), Err("unrecognized protocol header"));
    }

    #[test]
    fn version_2() {
        let mut h = V2_SIG.to_vec();
        h.extend_from_slice(&[0x21, 0x11, 0, 12, 10, 1, 2, 3, 127, 0, 0, 1, 0x9c, 0x40, 0, 25]);
        h.extend_from_slice(b"EHLO x\r\n");
        let (e, used) = run(&h).unwrap();
        assert_eq!(used, 28);
        assert_eq!(e, Some(("10.1.2.3:40000".parse().unwrap(), "127.0.0.1:25".parse().unwrap())));
        // TLVs after the addresses are skipped.
        let mut t = V2_SIG.to_vec();
        t.extend_from_slice(&[0x21, 0x11, 0, 15, 10, 1, 2, 3, 127, 0, 0, 1, 0, 1, 0, 2, 0x04, 0, 0]);
        assert_eq!(run(&t).unwrap().1, 31);
        let mut local = V2_SIG.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(run(&local).unwrap(), (None, 16));
        let mut v3 = V2_SIG.to_vec();
        v3.extend_from_slice(&[0x31, 0x11, 0, 0]);
        assert_eq!(run(&v3), Err("unsupported protocol version"));
        let mut udp = V2_SIG.to_vec();
        udp.extend_from_slice(&[0x21, 0x12, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(run(&udp), Err("unsupported network protocol"));
        let mut unspec = V2_SIG.to_vec();
        unspec.extend_from_slice(&[0x21, 0x00, 0, 0]);
        assert_eq!(run(&unspec), Err("unsupported network protocol"));
        let mut short = V2_SIG.to_vec();
        short.extend_from_slice(&[0x21, 0x11, 0, 4, 1, 2, 3, 4]);
        assert_eq!(run(&short), Err("bad or missing client address"));
        assert_eq!(run(b"\r\n\r\nXXXXXXXXXXXXXXXX"), Err("unrecognized protocol header"));
    }
}
