//! Token buckets keyed by a name, and repeat detection, on the machine's clock.

use std::collections::HashMap;

use kairan_protocol::Timestamp;

/// Keys kept at most: a flood of distinct keys cannot grow the table without limit (past it
/// the table starts over, which only forgives past use).
const MAX_KEYS: usize = 100_000;

/// Token bucket per key: `rate` actions per second sustained, `burst` at once.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    rate_per_sec: u32,
    burst: u32,
    buckets: HashMap<String, (f64, i64)>,
}

impl RateLimiter {
    /// A limiter allowing `rate_per_sec` sustained and `burst` at once, per key.
    pub fn new(rate_per_sec: u32, burst: u32) -> Self {
        Self { rate_per_sec, burst, buckets: HashMap::new() }
    }

    fn refill(&mut self, key: &str, now: Timestamp) -> &mut (f64, i64) {
        if self.buckets.len() >= MAX_KEYS && !self.buckets.contains_key(key) {
            self.buckets.clear();
        }
        let burst = f64::from(self.burst);
        let rate = f64::from(self.rate_per_sec);
        let bucket = self.buckets.entry(key.to_owned()).or_insert((burst, now.unix_ms()));
        let elapsed_ms = (now.unix_ms() - bucket.1).max(0);
        bucket.0 = (bucket.0 + elapsed_ms as f64 * rate / 1000.0).min(burst);
        bucket.1 = now.unix_ms().max(bucket.1);
        bucket
    }

    /// Whether `key` may act at `now` (and takes a token if so).
    pub fn allow(&mut self, key: &str, now: Timestamp) -> bool {
        let bucket = self.refill(key, now);
        if bucket.0 >= 1.0 {
            bucket.0 -= 1.0;
            true
        } else {
            false
        }
    }

    /// When `key` will next have a token (`now` if it has one), without taking it.
    pub fn next_token_at(&mut self, key: &str, now: Timestamp) -> Timestamp {
        let rate = f64::from(self.rate_per_sec.max(1));
        let bucket = self.refill(key, now);
        if bucket.0 >= 1.0 {
            return now;
        }
        let wait_ms = ((1.0 - bucket.0) * 1000.0 / rate).ceil() as i64;
        now.plus_ms(wait_ms.max(1))
    }
}

/// Remembers, per key, the last value answered and when: the same request again within the
/// window is a repeat. A child waiting for an answer asks again at its next tick; when the
/// parent is slow — busy, or back from a restart with every child catching up — the repeats
/// queue up behind the first request, and answering each would send the same page many times
/// over, making the parent slower still.
#[derive(Debug, Clone)]
pub struct RepeatFilter {
    window_ms: i64,
    answered: HashMap<String, (u64, i64)>,
}

impl RepeatFilter {
    /// A filter treating the same value within `window_ms` as a repeat.
    pub fn new(window_ms: i64) -> Self {
        Self { window_ms, answered: HashMap::new() }
    }

    /// Whether `key` asks for `value` again within the window of its previous answer (if not,
    /// this request is remembered as answered now).
    pub fn is_repeat(&mut self, key: &str, value: u64, now: Timestamp) -> bool {
        if self.answered.len() >= MAX_KEYS && !self.answered.contains_key(key) {
            self.answered.clear();
        }
        match self.answered.get(key) {
            Some((previous, at)) if *previous == value && (now.unix_ms() - *at) < self.window_ms => true,
            _ => {
                self.answered.insert(key.to_owned(), (value, now.unix_ms()));
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_then_the_rate() {
        let mut limiter = RateLimiter::new(10, 3);
        let t0 = Timestamp::from_unix_ms(1_000_000);
        assert!((0..3).all(|_| limiter.allow("a", t0)));
        assert!(!limiter.allow("a", t0), "burst spent");
        assert_eq!(limiter.next_token_at("a", t0), t0.plus_ms(100), "one token per 100 ms at 10/s");
        assert!(limiter.allow("b", t0), "per key");
        assert!(limiter.allow("a", t0.plus_ms(100)));
        assert!(!limiter.allow("a", t0.plus_ms(100)));
    }

    #[test]
    fn a_repeated_request_within_the_window_is_a_repeat() {
        let mut filter = RepeatFilter::new(1_000);
        let t0 = Timestamp::from_unix_ms(1_000_000);
        assert!(!filter.is_repeat("a", 7, t0), "first request");
        assert!(filter.is_repeat("a", 7, t0.plus_ms(500)), "same page, answer still fresh");
        assert!(!filter.is_repeat("b", 7, t0.plus_ms(500)), "per key");
        assert!(!filter.is_repeat("a", 9, t0.plus_ms(600)), "the next page");
        assert!(!filter.is_repeat("a", 9, t0.plus_ms(1_600)), "asked again later");
    }
}
