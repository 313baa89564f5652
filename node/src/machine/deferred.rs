//! Input refused only because this node's clock is behind (a certificate not valid *yet*,
//! something dated past the skew allowance): held and tried again, never refused for good on
//! the strength of a local clock. What is still refused after [`HOLD_MS`] is refused for
//! real, with the reason it had, so a wrong date cannot stall the input forever.

use std::collections::VecDeque;

use bytes::Bytes;

use kairan_protocol::Timestamp;

use super::io::MsgId;

/// How long a clock-dependent refusal is held before it becomes final.
pub const HOLD_MS: i64 = 120_000;
/// How often held input is tried again.
pub const RETRY_MS: i64 = 1_000;
/// Held inputs at most: the broker's in-flight window holds the rest back.
pub const MAX_HELD: usize = 256;

/// One held input.
#[derive(Debug, Clone)]
pub struct HeldInput {
    /// The message, for its acknowledgement.
    pub id: MsgId,
    /// Its topic.
    pub topic: String,
    /// Its bytes.
    pub payload: Bytes,
    /// When it was first refused.
    pub since: Timestamp,
}

/// The held inputs, oldest first, and when to try them again.
#[derive(Debug, Default)]
pub struct Deferred {
    held: VecDeque<HeldInput>,
    retry_at: Option<Timestamp>,
}

impl Deferred {
    /// Holds an input (`false` when the queue is full: refuse it for good instead).
    pub fn hold(&mut self, input: HeldInput, now: Timestamp) -> bool {
        if self.held.len() >= MAX_HELD {
            return false;
        }
        self.held.push_back(input);
        self.retry_at.get_or_insert(now.plus_ms(RETRY_MS));
        true
    }

    /// When to try again, if anything is held.
    pub fn retry_at(&self) -> Option<Timestamp> {
        self.retry_at
    }

    /// Everything held, to try again now (the caller holds again what is still too early).
    pub fn take_due(&mut self, now: Timestamp) -> Vec<HeldInput> {
        if self.retry_at.is_none_or(|at| now < at) {
            return Vec::new();
        }
        self.retry_at = None;
        self.held.drain(..).collect()
    }

    /// Whether `input`, still refused at `now`, has been held long enough to refuse for good.
    pub fn expired(input: &HeldInput, now: Timestamp) -> bool {
        Self::expired_at(input.since, now)
    }

    /// Whether something first refused at `since` is old enough at `now` to refuse for good.
    pub fn expired_at(since: Timestamp, now: Timestamp) -> bool {
        now.unix_ms() - since.unix_ms() >= HOLD_MS
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Drops everything (the upstream connection is gone: the broker redelivers it).
    pub fn clear(&mut self) {
        self.held.clear();
        self.retry_at = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_input_comes_back_at_the_retry_time_and_expires() {
        let t0 = Timestamp::from_unix_ms(1_000_000);
        let mut deferred = Deferred::default();
        let input = HeldInput { id: 1, topic: "t".into(), payload: Bytes::new(), since: t0 };
        assert!(deferred.hold(input, t0));
        assert!(deferred.take_due(t0.plus_ms(10)).is_empty(), "not yet");
        let due = deferred.take_due(t0.plus_ms(RETRY_MS));
        assert_eq!(due.len(), 1);
        assert!(!Deferred::expired(&due[0], t0.plus_ms(RETRY_MS)));
        assert!(Deferred::expired(&due[0], t0.plus_ms(HOLD_MS)));
        assert!(deferred.is_empty());
    }
}
