//! Durations as human-readable strings (`"60s"`, `"250ms"`, `"1h 30m"`) in every format.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer, de::Error};

pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_duration(*d))
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(|e| {
        D::Error::custom(format!(
            "`{s}` is not a duration ({e}); write e.g. 500ms, 10s, 5m"
        ))
    })
}
