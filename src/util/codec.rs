//! Base64 (RFC 4648) for SASL exchanges, and dates in RFC 5322 and IMAP
//! form, computed without a time zone database (UTC or a fixed offset).

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Lower-case hex (GUIDs, XFER's annotation values).
pub fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

/// `hex`'s inverse; None for an odd length or a non-hex digit.
pub fn unhex(h: &str) -> Option<Vec<u8>> {
    if !h.len().is_multiple_of(2) {
        return None;
    }
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(h.get(i..i + 2)?, 16).ok())
        .collect()
}

pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        out.push(B64[(n >> 18) as usize & 63] as char);
        out.push(B64[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 { B64[(n >> 6) as usize & 63] as char } else { '=' });
        out.push(if c.len() > 2 { B64[n as usize & 63] as char } else { '=' });
    }
    out
}

/// Strict decoding (SASL responses): None on any bad character or length.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    if !s.len().is_multiple_of(4) {
        return None;
    }
    let val = |c: u8| B64.iter().position(|&x| x == c).map(|p| p as u32);
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    for (i, q) in s.chunks(4).enumerate() {
        let last = i == s.len() / 4 - 1;
        let pad = q.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &q[..4 - pad] {
            n = n << 6 | val(c)?;
        }
        n <<= 6 * pad as u32;
        out.push((n >> 16) as u8);
        if pad < 2 {
            out.push((n >> 8) as u8);
        }
        if pad < 1 {
            out.push(n as u8);
        }
    }
    Some(out)
}

/// (year, month 1-12, day, hour, minute, second, weekday 0=Sunday).
pub fn civil(t: i64) -> (i64, u32, u32, u32, u32, u32, u32) {
    let days = t.div_euclid(86400);
    let secs = t.rem_euclid(86400);
    // Howard Hinnant's days-from-civil inverse.
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z.rem_euclid(146097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = if m <= 2 { y + 1 } else { y };
    let wd = (days + 4).rem_euclid(7) as u32;
    (y, m, d, (secs / 3600) as u32, (secs % 3600 / 60) as u32, (secs % 60) as u32, wd)
}

/// Seconds since the epoch of a civil UTC time.
pub fn from_civil(y: i64, m: u32, d: u32, hh: u32, mm: u32, ss: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146097 + doe - 719468) * 86400 + hh as i64 * 3600 + mm as i64 * 60 + ss as i64
}

/// RFC 3339 `2026-12-31T23:59:59Z` / `+01:00` to Unix seconds.
pub fn rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if !s.is_ascii() || b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<u32>().ok());
    let (y, mo, d, h, mi, se) = (n(0..4)?, n(5..7)?, n(8..10)?, n(11..13)?, n(14..16)?, n(17..19)?);
    let mut rest = &s[19..];
    if let Some(r) = rest.strip_prefix('.') {
        rest = r.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let off = match rest {
        "Z" | "z" => 0,
        r if r.len() == 6 && (r.starts_with('+') || r.starts_with('-')) && &r[3..4] == ":" => {
            let v = r[1..3].parse::<i64>().ok()? * 3600 + r[4..6].parse::<i64>().ok()? * 60;
            if r.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    Some(from_civil(i64::from(y), mo, d, h, mi, se) - off)
}

/// `%XX` escapes undone: the bytes, and whether every `%` began a
/// well-formed escape (one that does not is kept as it is).
pub fn percent_decode(s: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::with_capacity(s.len());
    let mut clean = true;
    let mut i = 0;
    while i < s.len() {
        let hex = s
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (s[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                clean &= c != b'%';
                out.push(c);
                i += 1;
            }
        }
    }
    (out, clean)
}

pub const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// The server's UTC offset at `t`, in minutes (localtime_r's tm_gmtoff).
pub fn local_offset_min(t: i64) -> i32 {
    let tt = t as libc::time_t;
    // SAFETY: a zeroed tm is a valid out-parameter; localtime_r is
    // thread-safe and writes only into it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    if unsafe { libc::localtime_r(&tt, &mut tm) }.is_null() {
        return 0;
    }
    (tm.tm_gmtoff / 60) as i32
}

fn zone(tz_min: i32) -> String {
    let sign = if tz_min < 0 { '-' } else { '+' };
    let a = tz_min.abs();
    format!("{sign}{:02}{:02}", a / 60, a % 60)
}

/// `Tue, 03 Mar 2026 10:11:12 +0100`
pub fn rfc822_date(t: i64, tz_min: i32) -> String {
    let (y, m, d, hh, mm, ss, wd) = civil(t + tz_min as i64 * 60);
    format!(
        "{}, {d:02} {} {y} {hh:02}:{mm:02}:{ss:02} {}",
        DAYS[wd as usize],
        MONTHS[m as usize - 1],
        zone(tz_min)
    )
}

/// Postfix's mail_date(): RFC 5322 date in the server's zone with the
/// zone's abbreviation as a comment: `Sat, 28 Nov 2026 18:05:20 +0000 (UTC)`.
pub fn mail_date(t: i64) -> String {
    let tt = t as libc::time_t;
    // SAFETY: as in local_offset_min; tm_zone points into libc's static
    // zone table, valid while the process runs.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = !unsafe { libc::localtime_r(&tt, &mut tm) }.is_null();
    let off = if ok { (tm.tm_gmtoff / 60) as i32 } else { 0 };
    let name = if ok && !tm.tm_zone.is_null() {
        unsafe { std::ffi::CStr::from_ptr(tm.tm_zone) }.to_string_lossy().into_owned()
    } else {
        "UTC".into()
    };
    format!("{} ({name})", rfc822_date(t, off))
}

/// ctime(3) in the server's zone: `Tue Dec  1 10:16:17 2026`.
pub fn ctime(t: i64) -> String {
    let (y, m, d, hh, mm, ss, wd) = civil(t + local_offset_min(t) as i64 * 60);
    format!("{} {} {d:2} {hh:02}:{mm:02}:{ss:02} {y}", DAYS[wd as usize], MONTHS[m as usize - 1])
}

/// IMAP date-time: `28-Nov-2026 18:18:14 +0000` (day padded to two).
pub fn imap_date(t: i64, tz_min: i32) -> String {
    let (y, m, d, hh, mm, ss, _) = civil(t + tz_min as i64 * 60);
    format!("{d:02}-{}-{y} {hh:02}:{mm:02}:{ss:02} {}", MONTHS[m as usize - 1], zone(tz_min))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expire_dates() {
        assert_eq!(rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339("2026-12-03T10:00:00Z"), Some(1_796_292_000));
        assert_eq!(rfc3339("2026-12-03T11:30:00.25+01:30"), Some(1_796_292_000));
        assert_eq!(rfc3339("2026-12-03 10:00:00Z"), None);
        assert_eq!(rfc3339("2026-13-03T10:00:00Z"), None);
        assert_eq!(rfc3339("2026-12-03T10:00:00"), None);
    }

    #[test]
    fn percent_escapes() {
        assert_eq!(percent_decode(b"a%20b%2c"), (b"a b,".to_vec(), true));
        // A broken or cut escape stays as it is; multi-byte text is safe.
        assert_eq!(percent_decode("%zz%4 %aé%".as_bytes()), ("%zz%4 %aé%".as_bytes().to_vec(), false));
    }

    #[test]
    fn base64_round_trip() {
        for s in [&b""[..], b"a", b"ab", b"abc", b"\0u\0p"] {
            assert_eq!(base64_decode(&base64_encode(s)).unwrap(), s);
        }
        assert_eq!(base64_encode(b"Username:"), "VXNlcm5hbWU6");
        assert!(base64_decode("abc").is_none());
        assert!(base64_decode("a=bc").is_none());
        assert!(base64_decode("ab!c").is_none());
    }

    #[test]
    fn dates() {
        assert_eq!(rfc822_date(0, 0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(imap_date(1_795_889_894, 0), "28-Nov-2026 18:18:14 +0000");
        assert_eq!(rfc822_date(1_772_529_072, 60), "Tue, 03 Mar 2026 10:11:12 +0100");
        assert_eq!(from_civil(2026, 11, 28, 18, 18, 14), 1_795_889_894);
    }
}
