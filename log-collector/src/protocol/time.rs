//! Civil time without a time library: RFC 3339 parsing (any offset) and formatting (UTC),
//! and the RFC 3164 `Mmm dd hh:mm:ss` stamp, all as Unix nanoseconds.

const NANOS: i64 = 1_000_000_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn digits(s: &[u8], at: usize, n: usize) -> Option<u32> {
    let part = s.get(at..at + n)?;
    part.iter().try_fold(0u32, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
    })
}

/// Parses `YYYY-MM-DDThh:mm:ss[.frac](Z|±hh:mm)` (also a space or `t` for `T`, `z`).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let year = digits(b, 0, 4)?;
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let (hour, min, sec) = (digits(b, 11, 2)?, digits(b, 14, 2)?, digits(b, 17, 2)?);
    if b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
        return None;
    }
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac: i64 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        let mut scale = NANOS / 10;
        while let Some(&c) = b.get(i).filter(|c| c.is_ascii_digit()) {
            frac += i64::from(c - b'0') * scale;
            scale /= 10;
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset_secs: i64 = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let oh = i64::from(digits(b, i + 1, 2)?);
            let om = i64::from(digits(b, i + 4, 2)?);
            let off = oh * 3600 + om * 60;
            if sign == b'+' {
                off
            } else {
                -off
            }
        }
        _ => return None,
    };
    let days = days_from_civil(i64::from(year), month, day);
    let secs =
        days * 86_400 + i64::from(hour) * 3600 + i64::from(min) * 60 + i64::from(sec) - offset_secs;
    secs.checked_mul(NANOS)?.checked_add(frac)
}

/// Appends [`format_rfc3339`]'s text without allocating.
pub fn write_rfc3339(nanos: i64, out: &mut Vec<u8>) {
    let secs = nanos.div_euclid(NANOS);
    let micros = nanos.rem_euclid(NANOS) / 1000;
    let tod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    if !(0..=9999).contains(&y) {
        out.extend_from_slice(format_rfc3339(nanos).as_bytes());
        return;
    }
    let mut b = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, width: usize, mut v: u64| {
        for i in (0..width).rev() {
            b[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, y as u64);
    put(5, 2, u64::from(m));
    put(8, 2, u64::from(d));
    put(11, 2, (tod / 3600) as u64);
    put(14, 2, (tod % 3600 / 60) as u64);
    put(17, 2, (tod % 60) as u64);
    put(20, 6, micros as u64);
    out.extend_from_slice(&b);
}

/// Formats Unix nanoseconds as RFC 3339 UTC with microseconds: `2026-11-25T19:27:08.123456Z`.
pub fn format_rfc3339(nanos: i64) -> String {
    let secs = nanos.div_euclid(NANOS);
    let sub = nanos.rem_euclid(NANOS);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60,
        sub / 1000
    )
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// Parses RFC 3164's `Mmm dd hh:mm:ss` (day space-padded) in UTC, in the year of `now`
/// (the previous year if that would put it more than a day in the future).
pub fn parse_bsd_stamp(s: &[u8], now: i64) -> Option<i64> {
    if s.len() < 15 || s[3] != b' ' || s[6] != b' ' || s[9] != b':' || s[12] != b':' {
        return None;
    }
    let month = MONTHS.iter().position(|m| m[..] == s[..3])? as u32 + 1;
    let day = match (s[4], s[5]) {
        (b' ', d) if d.is_ascii_digit() => u32::from(d - b'0'),
        (a, b) if a.is_ascii_digit() && b.is_ascii_digit() => {
            u32::from(a - b'0') * 10 + u32::from(b - b'0')
        }
        _ => return None,
    };
    let (hour, min, sec) = (digits(s, 7, 2)?, digits(s, 10, 2)?, digits(s, 13, 2)?);
    if !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let (year, _, _) = civil_from_days(now.div_euclid(NANOS).div_euclid(86_400));
    let at = |y: i64| {
        (days_from_civil(y, month, day) * 86_400
            + i64::from(hour) * 3600
            + i64::from(min) * 60
            + i64::from(sec))
            * NANOS
    };
    let t = at(year);
    Some(if t > now + 86_400 * NANOS {
        at(year - 1)
    } else {
        t
    })
}

/// Unix seconds as a float (Python's `record.created`) to nanoseconds, rounded to the
/// microsecond so that binary fractions like `.25` come out exact.
pub fn secs_to_nanos(secs: f64) -> i64 {
    let whole = secs.floor();
    let micros = ((secs - whole) * 1e6).round() as i64;
    (whole as i64)
        .saturating_mul(NANOS)
        .saturating_add(micros * 1000)
}

/// Now, as Unix nanoseconds.
pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip_and_offsets() {
        let t = parse_rfc3339("2026-11-25T19:27:08.123456Z").unwrap();
        assert_eq!(format_rfc3339(t), "2026-11-25T19:27:08.123456Z");
        let mut out = Vec::new();
        write_rfc3339(t, &mut out);
        assert_eq!(out, b"2026-11-25T19:27:08.123456Z");
        for n in [0, -1, 1_999_999_999_999_999_999, -86_400_000_000_001] {
            let mut out = Vec::new();
            write_rfc3339(n, &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), format_rfc3339(n));
        }
        let off = parse_rfc3339("2026-11-25T20:27:08.123456+01:00").unwrap();
        assert_eq!(off, t);
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2003-10-11T22:14:15.003Z"),
            Some(1_065_910_455_003_000_000)
        );
        for bad in [
            "",
            "2026-13-01T00:00:00Z",
            "2026-11-25T19:27:08",
            "2026-11-25T19:27:08.Z",
            "x",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn civil_round_trip() {
        for days in [-800_000, -1, 0, 1, 59, 60, 11_000, 20_000, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn bsd_stamp_uses_the_current_year() {
        let now = parse_rfc3339("2026-11-25T19:27:08Z").unwrap();
        assert_eq!(
            parse_bsd_stamp(b"Nov 25 19:00:01", now),
            parse_rfc3339("2026-11-25T19:00:01Z")
        );
        assert_eq!(
            parse_bsd_stamp(b"Dec 31 23:59:59", now),
            parse_rfc3339("2025-12-31T23:59:59Z")
        );
        assert_eq!(
            parse_bsd_stamp(b"Feb  3 01:02:03", now),
            parse_rfc3339("2026-02-03T01:02:03Z")
        );
        assert_eq!(parse_bsd_stamp(b"Foo 25 19:00:01", now), None);
    }
}
