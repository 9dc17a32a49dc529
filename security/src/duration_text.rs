//! Durations in configuration files as people write them in the seed: `365d`, `24h`, `10m`.
//!
//! Reading accepts anything humantime parses (`1h 30m`, `90days`); writing uses the largest
//! unit that divides the value exactly, so written defaults look like the seed's.

use serde::{Deserialize, Deserializer, Serializer};
use std::time::Duration;

/// `86400 s` → `1d`, `5400 s` → `90m`, `0 s` → `0s`.
pub fn format(d: Duration) -> String {
    let secs = d.as_secs();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if secs > 0 && secs.is_multiple_of(size) && d.subsec_nanos() == 0 {
            return format!("{}{unit}", secs / size);
        }
    }
    humantime::format_duration(d).to_string()
}

pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*d))
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "{text:?} is not a duration ({e}); write e.g. 365d, 24h, 10m"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_the_seed_and_reads_back() {
        for (secs, text) in [
            (365 * 86_400, "365d"),
            (86_400, "1d"),
            (8 * 3600, "8h"),
            (600, "10m"),
            (90, "1m 30s"),
        ] {
            assert_eq!(format(Duration::from_secs(secs)), text);
            assert_eq!(
                humantime::parse_duration(text).ok(),
                Some(Duration::from_secs(secs))
            );
        }
    }
}
