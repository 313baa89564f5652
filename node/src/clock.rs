//! The one place the node reads the wall clock. The protocol and the relay core never do.

use std::time::{SystemTime, UNIX_EPOCH};

use kairan_protocol::Timestamp;

/// The current time.
pub fn now() -> Timestamp {
    let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    Timestamp::from_unix_ms(i64::try_from(unix_ms).unwrap_or(i64::MAX))
}
