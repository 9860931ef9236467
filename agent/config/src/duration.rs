//! Durations written the way collector users write them: `10s`, `500ms`, `1m`.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

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

/// `#[serde(deserialize_with = "duration::deserialize")]` for `Duration` fields.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Secs(f64),
    }
    match Raw::deserialize(d)? {
        Raw::Text(s) => parse_duration(&s).map_err(serde::de::Error::custom),
        Raw::Secs(s) => Duration::try_from_secs_f64(s)
            .map_err(|_| serde::de::Error::custom(format!("invalid duration {s}: out of range"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
