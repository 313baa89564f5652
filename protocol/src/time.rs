//! Timestamps: UTC instants with millisecond precision, written as RFC 3339 strings.
//!
//! The protocol never reads a clock: callers pass `now` in as a [`Timestamp`].

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A UTC instant, milliseconds since the Unix epoch.
///
/// On the wire it is an RFC 3339 string in UTC with millisecond precision,
/// e.g. `2021-12-01T09:00:00.000Z`. Parsing accepts any RFC 3339 offset and
/// normalises to UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The instant `unix_ms` milliseconds after the Unix epoch.
    pub const fn from_unix_ms(unix_ms: i64) -> Self {
        Self(unix_ms)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn unix_ms(self) -> i64 {
        self.0
    }

    /// This instant plus `ms` milliseconds (saturating).
    pub const fn plus_ms(self, ms: i64) -> Self {
        Self(self.0.saturating_add(ms))
    }

    /// This instant plus `secs` seconds (saturating).
    pub const fn plus_secs(self, secs: i64) -> Self {
        Self(self.0.saturating_add(secs.saturating_mul(1000)))
    }

    /// Parses an RFC 3339 string.
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        let parsed = OffsetDateTime::parse(text, &Rfc3339).ok()?;
        let unix_ms = parsed.unix_timestamp_nanos() / 1_000_000;
        i64::try_from(unix_ms).ok().map(Self)
    }

    /// The RFC 3339 form used on the wire (UTC, milliseconds, `Z`).
    pub fn to_rfc3339(self) -> String {
        let nanos = i128::from(self.0) * 1_000_000;
        match OffsetDateTime::from_unix_timestamp_nanos(nanos) {
            Ok(instant) => {
                let date = instant.date();
                let clock = instant.time();
                format!(
                    "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                    date.year(),
                    u8::from(date.month()),
                    date.day(),
                    clock.hour(),
                    clock.minute(),
                    clock.second(),
                    clock.millisecond()
                )
            }
            // Out of the representable calendar range; only reachable with absurd inputs
            // built in code, never from parsed text (parsing bounds the range).
            Err(_) => format!("@{}ms", self.0),
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Timestamp::parse_rfc3339(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("not an RFC 3339 time: {text:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_rfc3339() {
        let at = Timestamp::parse_rfc3339("2021-12-01T09:00:00.123Z").expect("parses");
        assert_eq!(at.to_rfc3339(), "2021-12-01T09:00:00.123Z");
        assert_eq!(Timestamp::parse_rfc3339(&at.to_rfc3339()), Some(at));
    }

    #[test]
    fn normalises_offsets_to_utc() {
        let tokyo = Timestamp::parse_rfc3339("2021-12-01T18:00:00+09:00").expect("parses");
        assert_eq!(tokyo.to_rfc3339(), "2021-12-01T09:00:00.000Z");
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(Timestamp::parse_rfc3339("yesterday"), None);
        assert_eq!(Timestamp::parse_rfc3339("2021-13-01T00:00:00Z"), None);
    }
}
