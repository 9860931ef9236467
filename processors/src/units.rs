//! Parsing of the human-friendly values processor configs accept: byte sizes
//! (`50MiB`), durations (`30s`) and attribute values written as any YAML
//! scalar. Private to this crate: the agent has its own duration parser for
//! its own settings, and these only serve processor configs.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};

/// `512`, `512B`, `4KiB`, `50MiB`, `1.5GiB`, `2TiB`, or the SI forms `KB`,
/// `MB`, `GB`, `TB` (powers of 1000). Whitespace between number and unit is
/// allowed; the unit is case-sensitive so that `mb` (millibits?) is rejected
/// instead of guessed.
pub(crate) fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let multiplier: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        other => {
            return Err(format!(
                "invalid byte size {text:?}: unknown unit {other:?} (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)"
            ));
        }
    };
    if number.is_empty() {
        return Err(format!("invalid byte size {text:?}: no number"));
    }
    if let Ok(whole) = number.parse::<u64>() {
        return whole
            .checked_mul(multiplier)
            .ok_or_else(|| format!("byte size {text:?} is too large"));
    }
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid byte size {text:?}: {number:?} is not a number"))?;
    let bytes = value * multiplier as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("byte size {text:?} is too large"));
    }
    Ok(bytes.round() as u64)
}

/// A sequence of `<number><unit>` parts: `500ms`, `30s`, `5m`, `1h30m`, `2d`.
/// A bare number is rejected: "30" could mean seconds or milliseconds.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("empty duration".into());
    }
    let mut rest = trimmed;
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(digits);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let seconds_per_unit = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            "" => {
                return Err(format!(
                    "invalid duration {trimmed:?}: missing unit (e.g. 30s, 5m, 1h)"
                ));
            }
            other => {
                return Err(format!(
                    "invalid duration {trimmed:?}: unknown unit {other:?} (use ns, us, ms, s, m, h or d)"
                ));
            }
        };
        let value: f64 = number
            .parse()
            .map_err(|_| format!("invalid duration {trimmed:?}: {number:?} is not a number"))?;
        let part = Duration::try_from_secs_f64(value * seconds_per_unit)
            .map_err(|_| format!("duration {trimmed:?} is out of range"))?;
        total = total
            .checked_add(part)
            .ok_or_else(|| format!("duration {trimmed:?} is out of range"))?;
        rest = next;
    }
    Ok(total)
}

/// `deserialize_with` for `Option<u64>` byte sizes (string with unit or a
/// plain non-negative number of bytes).
pub(crate) fn opt_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    struct BytesVisitor;
    impl<'v> Visitor<'v> for BytesVisitor {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a byte size such as 50MiB, 1GiB or a number of bytes")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            u64::try_from(v)
                .map(Some)
                .map_err(|_| E::custom(format!("byte size must not be negative (got {v})")))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            if v.is_finite() && v >= 0.0 && v < u64::MAX as f64 {
                Ok(Some(v.round() as u64))
            } else {
                Err(E::custom(format!("invalid byte size {v}")))
            }
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            parse_bytes(v).map(Some).map_err(E::custom)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'v>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_any(BytesVisitor)
        }
    }
    d.deserialize_any(BytesVisitor)
}

/// `deserialize_with` for `Option<Duration>` written as `30s`, `5m`, ...
/// A bare number gets the "missing unit" message rather than serde's
/// "expected a string".
pub(crate) fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    #[derive(serde::Deserialize)]
    struct Text(#[serde(deserialize_with = "scalar_string")] String);
    let text: Option<Text> = serde::Deserialize::deserialize(d)?;
    text.map(|Text(t)| parse_duration(&t).map_err(de::Error::custom))
        .transpose()
}

/// `deserialize_with` for a string written as any YAML scalar, so that
/// `value: 1234` (a pid) matches as well as `value: "1234"`.
pub(crate) fn scalar_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct ScalarVisitor;
    impl Visitor<'_> for ScalarVisitor {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string, number or boolean")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
            Ok(v)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
            Ok(v.to_string())
        }
    }
    d.deserialize_any(ScalarVisitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("512"), Ok(512));
        assert_eq!(parse_bytes("512KiB"), Ok(512 * 1024));
        assert_eq!(parse_bytes("50MiB"), Ok(50 << 20));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("1.5 GiB"), Ok(3 << 29));
        assert_eq!(parse_bytes("2MB"), Ok(2_000_000));
        assert!(parse_bytes("5mb").unwrap_err().contains("unknown unit"));
        assert!(parse_bytes("MiB").unwrap_err().contains("no number"));
        assert!(
            parse_bytes("99999999999TiB")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("30").unwrap_err().contains("missing unit"));
        assert!(parse_duration("3 weeks").is_err());
        assert!(parse_duration("").is_err());
    }
}
