//! Durations in configs, written the way collector users write them:
//! `10s`, `500ms`, `1m` (the parser is `phoenix_processors::time`'s, shared
//! with the command-line tools).

use std::time::Duration;

use serde::{Deserialize, Deserializer};

pub use phoenix_processors::time::parse_duration;

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

/// `#[serde(default, deserialize_with = "duration::deserialize_some")]` for
/// `Option<Duration>` fields whose absence means something of its own.
pub fn deserialize_some<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    deserialize(d).map(Some)
}
