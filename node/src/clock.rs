//! The one place the node reads the wall clock. The protocol and the relay core never do.
//!
//! A running node reads it through its [`Clock`]: the system clock, or — in tests that play a
//! machine whose clock is wrong — the system clock shifted by a fixed offset.

use std::time::{SystemTime, UNIX_EPOCH};

use kairan_protocol::Timestamp;

/// The current time.
pub fn now() -> Timestamp {
    let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    Timestamp::from_unix_ms(i64::try_from(unix_ms).unwrap_or(i64::MAX))
}

/// A node's clock: the system clock shifted by a fixed offset (zero outside tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Clock {
    offset_ms: i64,
}

impl Clock {
    /// The system clock.
    pub const SYSTEM: Clock = Clock { offset_ms: 0 };

    /// The system clock shifted by `offset_ms` (negative: behind). For tests of clock skew.
    pub fn skewed(offset_ms: i64) -> Self {
        Self { offset_ms }
    }

    /// The current time on this clock.
    pub fn now(&self) -> Timestamp {
        now().plus_ms(self.offset_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skewed_clock_is_the_system_clock_shifted() {
        let before = now();
        let behind = Clock::skewed(-10_000).now();
        let after = now();
        assert!(
            behind.unix_ms() >= before.unix_ms() - 10_000 && behind.unix_ms() <= after.unix_ms() - 10_000
        );
        assert!(Clock::SYSTEM.now().unix_ms() >= before.unix_ms());
    }
}
