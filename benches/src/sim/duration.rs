//! Durations as people write them in profiles and on the command line:
//! `500ms`, `30s`, `5m`, `1h`, `1.5s`, or a bare number of seconds — the
//! same spelling as the agent's config, so one habit serves both.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A [`Duration`] that parses from and prints as `30s`, `500ms`, ...
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub fn from_secs(secs: u64) -> HumanDuration {
        HumanDuration(Duration::from_secs(secs))
    }

    pub fn from_millis(millis: u64) -> HumanDuration {
        HumanDuration(Duration::from_millis(millis))
    }
}

/// Parse `text` with the agent's own duration syntax.
pub use phoenix_processors::time::parse_duration as parse;

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s).map(HumanDuration)
    }
}

impl fmt::Display for HumanDuration {
    /// The largest unit that shows the value exactly (`90s` stays `90s`,
    /// `120s` prints as `2m`), so a printed profile reads back identically.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        const UNITS: [(u128, &str); 7] = [
            (86_400_000_000_000, "d"),
            (3_600_000_000_000, "h"),
            (60_000_000_000, "m"),
            (1_000_000_000, "s"),
            (1_000_000, "ms"),
            (1_000, "us"),
            (1, "ns"),
        ];
        if nanos == 0 {
            return f.write_str("0s");
        }
        for (size, unit) in UNITS {
            if nanos.is_multiple_of(size) {
                return write!(f, "{}{unit}", nanos / size);
            }
        }
        write!(f, "{nanos}ns")
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    /// A string (`30s`) or a bare number of seconds (`30`, `0.5`).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HumanDuration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 500ms, 30s, 5m or a number of seconds")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                parse(v).map(HumanDuration).map_err(E::custom)
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<HumanDuration, E> {
                Ok(HumanDuration::from_secs(v))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<HumanDuration, E> {
                u64::try_from(v)
                    .map(HumanDuration::from_secs)
                    .map_err(|_| E::custom(format!("invalid duration {v}: must not be negative")))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<HumanDuration, E> {
                Duration::try_from_secs_f64(v)
                    .map(HumanDuration)
                    .map_err(|_| E::custom(format!("invalid duration {v}")))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_round_trip() {
        for (text, d) in [
            ("500ms", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("1.5s", Duration::from_millis(1500)),
            ("3", Duration::from_secs(3)),
            ("2d", Duration::from_secs(172_800)),
        ] {
            assert_eq!(parse(text), Ok(d), "{text}");
            let shown = HumanDuration(d).to_string();
            assert_eq!(parse(&shown), Ok(d), "{shown}");
        }
        assert_eq!(HumanDuration::from_secs(90).to_string(), "90s");
        assert_eq!(HumanDuration::from_millis(1500).to_string(), "1500ms");
        assert_eq!(HumanDuration::default().to_string(), "0s");
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        for bad in [
            "",
            "ten seconds",
            "10 parsecs",
            "-5s",
            "1e400",
            "99999999999999999999999999h",
            ".",
            "1..2s",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn yaml_accepts_strings_and_numbers() {
        let d: HumanDuration = serde_norway::from_str("45s").expect("string");
        assert_eq!(d.0, Duration::from_secs(45));
        let d: HumanDuration = serde_norway::from_str("2").expect("integer");
        assert_eq!(d.0, Duration::from_secs(2));
        let d: HumanDuration = serde_norway::from_str("0.25").expect("float");
        assert_eq!(d.0, Duration::from_millis(250));
        assert!(serde_norway::from_str::<HumanDuration>("-3").is_err());
        assert!(serde_norway::from_str::<HumanDuration>("[1]").is_err());
    }
}
