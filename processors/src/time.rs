//! Time as text, in one place: RFC 3339 timestamps (Unix nanoseconds into
//! dates and back, without a date crate: nothing needs more than UTC
//! formatting and "how many nanoseconds since the epoch") and durations
//! written the Collector's way (`10s`, `500ms`), for configs and command lines.
//!
//! - the procfs receiver writes `process.creation.time` with
//!   [`format_rfc3339_millis`] (`2026-11-25T17:36:12.340Z`);
//! - the filter's `min_age` reads it back with [`parse_rfc3339_nanos`];
//! - the console exporter stamps its reports with [`format_rfc3339_seconds`]
//!   (`2026-11-25T17:36:12Z`).
//!
//! The calendar arithmetic (Howard Hinnant's `days_from_civil` and
//! `civil_from_days`, proleptic Gregorian) lives here once. A `u64` of
//! nanoseconds reaches 2554, so every formatted year has four digits.

use std::fmt::Write as _;
use std::time::Duration;

const NANOS_PER_SEC: u64 = 1_000_000_000;
const NANOS_PER_MILLI: u64 = 1_000_000;
const SECS_PER_DAY: u64 = 86_400;
/// Days from 0000-03-01 to 1970-01-01.
const DAYS_TO_EPOCH: i64 = 719_468;
const DAYS_PER_ERA: i64 = 146_097;

/// `unix_nanos` as RFC 3339 in UTC with milliseconds, e.g.
/// `2026-11-25T17:36:12.340Z` (always 24 characters). Sub-millisecond
/// nanoseconds truncate: an instant never rounds into the next second.
pub fn format_rfc3339_millis(unix_nanos: u64) -> String {
    format_rfc3339(unix_nanos, true)
}

/// `unix_nanos` as RFC 3339 in UTC to the second, e.g.
/// `2026-11-25T17:36:12Z` (always 20 characters; the fraction truncates).
pub fn format_rfc3339_seconds(unix_nanos: u64) -> String {
    format_rfc3339(unix_nanos, false)
}

fn format_rfc3339(unix_nanos: u64, millis: bool) -> String {
    let secs = unix_nanos / NANOS_PER_SEC;
    let (year, month, day) = civil_from_days(secs / SECS_PER_DAY);
    let sod = secs % SECS_PER_DAY;
    let mut out = String::with_capacity(24);
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    );
    if millis {
        let _ = write!(out, ".{:03}", unix_nanos % NANOS_PER_SEC / NANOS_PER_MILLI);
    }
    out.push('Z');
    out
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` as nanoseconds since the Unix
/// epoch. `None` for anything malformed, before 1970 or beyond what a `u64`
/// of nanoseconds holds: a process whose age cannot be told is kept rather
/// than guessed at.
pub fn parse_rfc3339_nanos(text: &str) -> Option<u64> {
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
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
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
    era * DAYS_PER_ERA + doe - DAYS_TO_EPOCH
}

/// The inverse: (year, month, day) of a day count since 1970-01-01. Only
/// days on or after the epoch reach it (formatting takes `u64` nanoseconds),
/// so unsigned arithmetic cannot underflow.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + DAYS_TO_EPOCH as u64;
    let era = z / DAYS_PER_ERA as u64;
    let doe = z % DAYS_PER_ERA as u64; // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of March-based year
    let mp = (5 * doy + 2) / 153; // March = 0
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Parse `500ms`, `10s`, `2m`, `1h`, `1d`, `1.5s` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: expected e.g. 10s, 500ms, 1m"))?;
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "ns" => 1e-9,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        other => {
            return Err(format!(
                "invalid duration {text:?}: unknown unit {other:?} (use ns, us, ms, s, m, h, d)"
            ));
        }
    };
    Duration::try_from_secs_f64(value * scale)
        .map_err(|_| format!("invalid duration {text:?}: out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: u64 = 1_000_000;
    const S: u64 = 1_000_000_000;

    #[test]
    fn formats_known_instants_with_millis() {
        assert_eq!(format_rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_rfc3339_millis(1_795_628_172_340 * MS),
            "2026-11-25T17:36:12.340Z"
        );
        assert_eq!(
            format_rfc3339_millis(951_782_400_000 * MS),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(
            format_rfc3339_millis(946_684_799_999 * MS),
            "1999-12-31T23:59:59.999Z"
        );
        assert_eq!(
            format_rfc3339_millis(4_107_585_600_001 * MS),
            "2100-03-01T12:00:00.001Z"
        );
        // Sub-millisecond nanos truncate rather than round into the next second.
        assert_eq!(
            format_rfc3339_millis(999_999_999),
            "1970-01-01T00:00:00.999Z"
        );
        assert_eq!(format_rfc3339_millis(u64::MAX), "2554-07-21T23:34:33.709Z");
    }

    #[test]
    fn formats_known_instants_to_the_second() {
        assert_eq!(format_rfc3339_seconds(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_rfc3339_seconds(951_782_400 * S),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(
            format_rfc3339_seconds(4_102_444_799 * S),
            "2099-12-31T23:59:59Z"
        );
        assert_eq!(
            format_rfc3339_seconds(1_795_628_172_340 * MS),
            "2026-11-25T17:36:12Z"
        );
        assert_eq!(format_rfc3339_seconds(S - 1), "1970-01-01T00:00:00Z");
    }

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

    proptest! {
        #[test]
        fn any_instant_formats_to_fixed_width(nanos in any::<u64>()) {
            let millis = format_rfc3339_millis(nanos);
            prop_assert_eq!(millis.len(), 24);
            prop_assert!(millis.ends_with('Z'));
            let seconds = format_rfc3339_seconds(nanos);
            prop_assert_eq!(seconds.len(), 20);
            prop_assert_eq!(&seconds[..19], &millis[..19]);
            prop_assert!(seconds.ends_with('Z'));
        }

        #[test]
        fn formatted_instants_parse_back(nanos in any::<u64>()) {
            prop_assert_eq!(
                parse_rfc3339_nanos(&format_rfc3339_millis(nanos)),
                Some(nanos / MS * MS)
            );
            prop_assert_eq!(
                parse_rfc3339_nanos(&format_rfc3339_seconds(nanos)),
                Some(nanos / S * S)
            );
        }

        #[test]
        fn days_round_trip_through_the_calendar(days in 0u64..213_503) {
            // Consecutive days are either the next day of the month or day 1.
            let (y0, m0, d0) = civil_from_days(days);
            let (y1, m1, d1) = civil_from_days(days + 1);
            prop_assert!((y1, m1, d1) > (y0, m0, d0));
            prop_assert!(d1 == d0 + 1 || d1 == 1);
            prop_assert!((1..=12).contains(&m0) && (1..=31).contains(&d0));
            prop_assert!(d0 <= days_in_month(y0, m0));
            prop_assert_eq!(days_from_civil(y0 as i64, m0, d0), days as i64);
        }
    }

    #[test]
    fn parses_collector_style_durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_duration("ten seconds").is_err());
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("").is_err());
        // Out of range is an error, never a panic.
        assert!(parse_duration("99999999999999999999h").is_err());
    }
}
