//! RFC 3339 timestamps for `process.creation.time`, without a date crate:
//! the receiver formats one per new process and needs nothing else from one.

use std::fmt::Write as _;

const NANOS_PER_SEC: u64 = 1_000_000_000;
const SECS_PER_DAY: u64 = 86_400;

/// `unix_nanos` as RFC 3339 in UTC with milliseconds, e.g. `2026-11-25T17:36:12.340Z`.
pub fn rfc3339_millis(unix_nanos: u64) -> String {
    let secs = unix_nanos / NANOS_PER_SEC;
    let millis = (unix_nanos % NANOS_PER_SEC) / 1_000_000;
    let (year, month, day) = civil_from_days(secs / SECS_PER_DAY);
    let sod = secs % SECS_PER_DAY;
    let mut out = String::with_capacity(24);
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    );
    out
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar: Howard Hinnant's `civil_from_days`, shifted so the year starts
/// in March and the leap day falls last.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // 719_468 days from 0000-03-01 to 1970-01-01; u64 nanos end in 2554,
    // so no era is negative and unsigned arithmetic cannot underflow.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097; // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of March-based year
    let mp = (5 * doy + 2) / 153; // March = 0
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(millis: u64) -> u64 {
        millis * 1_000_000
    }

    #[test]
    fn known_instants() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(ms(1_795_628_172_340)),
            "2026-11-25T17:36:12.340Z"
        );
        assert_eq!(
            rfc3339_millis(ms(951_782_400_000)),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(
            rfc3339_millis(ms(946_684_799_999)),
            "1999-12-31T23:59:59.999Z"
        );
        assert_eq!(
            rfc3339_millis(ms(4_107_585_600_001)),
            "2100-03-01T12:00:00.001Z"
        );
        // Sub-millisecond nanos truncate rather than round into the next second.
        assert_eq!(rfc3339_millis(999_999_999), "1970-01-01T00:00:00.999Z");
    }

    proptest! {
        #[test]
        fn any_instant_formats_to_fixed_width(nanos in any::<u64>()) {
            let s = rfc3339_millis(nanos);
            prop_assert_eq!(s.len(), 24);
            prop_assert!(s.ends_with('Z'));
        }

        #[test]
        fn days_round_trip_through_the_calendar(days in 0u64..213_503) {
            // Consecutive days are either the next day of the month or day 1.
            let (y0, m0, d0) = civil_from_days(days);
            let (y1, m1, d1) = civil_from_days(days + 1);
            prop_assert!((y1, m1, d1) > (y0, m0, d0));
            prop_assert!(d1 == d0 + 1 || d1 == 1);
            prop_assert!((1..=12).contains(&m0) && (1..=31).contains(&d0));
        }
    }
}
