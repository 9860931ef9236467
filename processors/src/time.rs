//! Parsing of `process.creation.time` (RFC 3339, as the receiver writes it:
//! `2026-11-25T17:36:12.340Z`) without a date crate: the filter's `min_age`
//! needs nothing more than "how many nanoseconds since the epoch".

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` as nanoseconds since the Unix
/// epoch. `None` for anything malformed or before 1970: a process whose age
/// cannot be told is kept rather than guessed at.
pub(crate) fn parse_rfc3339_nanos(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    let second = digits(&b[17..19])?;
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }

    let mut rest = &b[19..];
    let mut nanos: u64 = 0;
    if let Some((&b'.', frac)) = rest.split_first() {
        let len = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if len == 0 {
            return None;
        }
        // Only the first nine digits matter for nanoseconds.
        let mut scale = 100_000_000;
        for &c in frac.iter().take(len.min(9)) {
            nanos += u64::from(c - b'0') * scale;
            scale /= 10;
        }
        rest = &frac[len..];
    }

    let offset_secs: i64 = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let h = digits(&[*h1, *h2])? as i64;
            let m = digits(&[*m1, *m2])? as i64;
            if h > 23 || m > 59 {
                return None;
            }
            let s = h * 3600 + m * 60;
            if *sign == b'+' { s } else { -s }
        }
        _ => return None,
    };

    let days = days_from_civil(year as i64, month, day);
    let local = days * 86_400 + (hour * 3600 + minute * 60 + second) as i64;
    let utc = u64::try_from(local - offset_secs).ok()?;
    utc.checked_mul(1_000_000_000)?.checked_add(nanos)
}

fn digits(b: &[u8]) -> Option<u64> {
    b.iter().try_fold(0u64, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u64::from(c - b'0'))
    })
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given date (proleptic Gregorian): Howard
/// Hinnant's `days_from_civil`, with years starting in March so the leap day
/// comes last.
fn days_from_civil(year: i64, month: u64, day: u64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // 0..=399
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn known_instants() {
        assert_eq!(parse_rfc3339_nanos("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_nanos("2026-11-25T17:36:12.340Z"),
            Some(1_795_628_172_340 * MS)
        );
        assert_eq!(
            parse_rfc3339_nanos("2000-02-29T00:00:00.000Z"),
            Some(951_782_400_000 * MS)
        );
        assert_eq!(
            parse_rfc3339_nanos("1999-12-31T23:59:59.999Z"),
            Some(946_684_799_999 * MS)
        );
        assert_eq!(
            parse_rfc3339_nanos("2000-01-01T01:00:00+01:00"),
            Some(946_684_800_000 * MS)
        );
        assert_eq!(
            parse_rfc3339_nanos("1970-01-01T00:00:00.000000001Z"),
            Some(1)
        );
    }

    #[test]
    fn malformed_is_none() {
        for bad in [
            "",
            "2026-11-25",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-11-25T17:36:12",
            "2026-11-25T17:36:12.Z",
            "2026-11-25T25:00:00Z",
            "1969-12-31T23:59:59Z",
            "2026-11-25T17:36:12Zjunk",
            "２026-11-25T17:36:12Z",
        ] {
            assert_eq!(parse_rfc3339_nanos(bad), None, "{bad}");
        }
    }
}
