//! Catch-up: a child asks its parent for every delivery after a point of the parent's
//! output log, in pages, and the parent answers from its store.
//!
//! MQTT persistent sessions cover short gaps; they do not cover a broker restart, a lost
//! session, or a child that was off for a week. So a child sends a [`SyncRequest`] on
//! `kairan/v1/<parent>/sync/<child>/req` whenever it (re)connects and periodically; the
//! parent answers on `…/sync/<child>/resp` with the deliveries of its output log after
//! `after` whose scope overlaps the child's, up to a page of [`PAGE_BYTES`] (one MQTT packet), and
//! tells how far it scanned. The child processes them like live deliveries (verify, dedup),
//! stores its cursor (`scanned_upto`), and asks for the next page while the parent has more.
//! Nothing in a response is trusted: every delivery is verified as usual.
//!
//! Pure functions only; the relay and clinic adapters do the I/O.

use kairan_protocol::{Delivery, Scope};

pub use kairan_protocol::sync::{
    MAX_SYNC_PAGE_BYTES, MAX_SYNC_PAGE_ENTRIES, MAX_SYNC_REQUEST_BYTES, MAX_SYNC_RESPONSE_BYTES, SyncRequest,
    SyncResponse, parse_request, parse_response,
};

use crate::mqtt::MAX_PACKET_BYTES;
use crate::store::StoredDelivery;

/// Delivery bytes in one answer at most. An answer travels as one MQTT packet, and every
/// client and the embedded broker refuse packets larger than [`MAX_PACKET_BYTES`] (a client
/// that receives one drops its connection, asks again, and never catches up), so a page stays
/// well below it — the protocol's [`MAX_SYNC_PAGE_BYTES`] is larger. The rest of the packet
/// holds the topic and the answer's other fields.
pub const PAGE_BYTES: usize = {
    let budget = MAX_PACKET_BYTES - 16 * 1024;
    if budget < MAX_SYNC_PAGE_BYTES { budget } else { MAX_SYNC_PAGE_BYTES }
};

/// `kairan/v1/<parent>/sync/<child>/req`.
pub fn request_topic(parent: &str, child: &str) -> String {
    format!("kairan/v1/{parent}/sync/{child}/req")
}

/// `kairan/v1/<parent>/sync/<child>/resp`.
pub fn response_topic(parent: &str, child: &str) -> String {
    format!("kairan/v1/{parent}/sync/{child}/resp")
}

/// The filter a parent subscribes to for every child's requests.
pub fn request_filter(parent: &str) -> String {
    format!("kairan/v1/{parent}/sync/+/req")
}

/// The child id in a request topic of `parent`, if the topic is one.
pub fn child_of_request_topic<'t>(parent: &str, topic: &'t str) -> Option<&'t str> {
    let rest = topic.strip_prefix("kairan/v1/")?.strip_prefix(parent)?.strip_prefix("/sync/")?;
    let child = rest.strip_suffix("/req")?;
    (!child.is_empty() && !child.contains('/')).then_some(child)
}

/// Builds the answer to `request` from log entries after `request.after`, in order (the
/// caller reads them from its store), up to `last_relay_seq`, the last durable one: entries
/// beyond it are not answered. Stops at the page limits; entries out of the child's scope
/// are skipped but count as scanned.
pub fn build_response(
    request: &SyncRequest,
    entries: impl IntoIterator<Item = StoredDelivery>,
    last_relay_seq: u64,
) -> SyncResponse {
    let mut response = SyncResponse {
        after: request.after,
        scanned_upto: request.after,
        last_relay_seq,
        deliveries: Vec::new(),
        trust: None,
    };
    let mut page_bytes = 0usize;
    for entry in entries {
        if entry.relay_seq <= request.after {
            continue;
        }
        // Only what is durable: the store also shows writes whose flush is still in flight,
        // and a crash before that flush reuses their relay_seqs for other deliveries, which a
        // child whose cursor already passed them would never ask for. `last_relay_seq` is the
        // last flushed one (found by the simulator, seed 54).
        if entry.relay_seq > last_relay_seq {
            break;
        }
        let in_scope = Scope::parse(&entry.scope).is_ok_and(|scope| scope.overlaps(&request.scope));
        if in_scope {
            if response.deliveries.len() as u32 >= request.limit {
                break;
            }
            // Stop before the page would outgrow one MQTT packet (a page always takes its
            // first delivery: one delivery alone always fits).
            let size = entry.delivery.len() + 1;
            if !response.deliveries.is_empty() && page_bytes + size > PAGE_BYTES {
                break;
            }
            // A stored delivery that no longer parses is skipped; the store's integrity check
            // reports it at start.
            if let Ok(delivery) = Delivery::from_json(entry.delivery.as_bytes()) {
                page_bytes += size;
                response.deliveries.push(delivery);
            }
        }
        response.scanned_upto = entry.relay_seq;
    }
    response
}

/// A request for the same page from the same child within this long of answering it is a
/// repeat, dropped (see [`RateLimiter::is_repeat`]).
pub const REPEAT_WINDOW_MS: i64 = 1_000;

/// Token bucket per child: `rate` requests per second sustained, `burst` at once; and the
/// last page answered per child, to drop repeats.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    rate_per_sec: u32,
    burst: u32,
    buckets: std::collections::HashMap<String, (f64, i64)>,
    answered: std::collections::HashMap<String, (u64, i64)>,
}

impl RateLimiter {
    /// A limiter allowing `rate_per_sec` sustained and `burst` at once, per key.
    pub fn new(rate_per_sec: u32, burst: u32) -> Self {
        Self {
            rate_per_sec,
            burst,
            buckets: std::collections::HashMap::new(),
            answered: std::collections::HashMap::new(),
        }
    }

    /// Whether `key` asks for the page after `after` again within [`REPEAT_WINDOW_MS`] of
    /// the answer to its previous request for it (if not, this request is remembered as
    /// answered now). A child waiting for an answer asks again at its next tick; when the
    /// parent is slow — busy, or back from a restart with every child catching up — the
    /// repeats queue up behind the first request, and answering each would send the same page
    /// many times over, making the parent slower still.
    pub fn is_repeat(&mut self, key: &str, after: u64, now: kairan_protocol::Timestamp) -> bool {
        if self.answered.len() > 100_000 && !self.answered.contains_key(key) {
            self.answered.clear();
        }
        match self.answered.get(key) {
            Some((page, at)) if *page == after && (now.unix_ms() - *at) < REPEAT_WINDOW_MS => true,
            _ => {
                self.answered.insert(key.to_owned(), (after, now.unix_ms()));
                false
            }
        }
    }

    /// Whether `key` may act at `now` (and takes a token if so).
    pub fn allow(&mut self, key: &str, now: kairan_protocol::Timestamp) -> bool {
        // Bound the table: a flood of distinct keys cannot grow it without limit.
        if self.buckets.len() > 100_000 && !self.buckets.contains_key(key) {
            self.buckets.clear();
        }
        let burst = f64::from(self.burst);
        let (tokens, last_ms) = self.buckets.entry(key.to_owned()).or_insert((burst, now.unix_ms()));
        let elapsed_ms = (now.unix_ms() - *last_ms).max(0);
        *tokens = (*tokens + elapsed_ms as f64 * f64::from(self.rate_per_sec) / 1000.0).min(burst);
        *last_ms = now.unix_ms();
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kairan_protocol::fixtures::{self, Hierarchy};
    use kairan_protocol::{Digest, Timestamp};

    fn entry(tree: &Hierarchy, relay_seq: u64, scope: &str) -> StoredDelivery {
        let mut advisory = fixtures::sample_advisory("mhlw", 1, None);
        advisory.id = format!("a-{relay_seq}");
        advisory.scope = Scope::parse(scope).expect("scope");
        let delivery = tree.delivery(&advisory, 1);
        StoredDelivery {
            digest: Digest::of(&delivery.advisory.payload),
            origin: "mhlw".into(),
            seq: 1,
            scope: scope.into(),
            relay_seq,
            received_at: Timestamp::from_unix_ms(0),
            delivery: String::from_utf8(delivery.to_json()).expect("utf8"),
        }
    }

    #[test]
    fn answers_stop_at_the_last_durable_entry() {
        // Entry 3 is in the store but its flush has not completed (the caller's latest
        // durable relay_seq is 2): it is neither sent nor scanned.
        let tree = Hierarchy::standard();
        let log = vec![entry(&tree, 1, "jp"), entry(&tree, 2, "jp"), entry(&tree, 3, "jp")];
        let request =
            SyncRequest { after: 1, scope: Scope::parse("jp/13").expect("scope"), limit: 10, trust: None };
        let response = build_response(&request, log, 2);
        assert_eq!((response.deliveries.len(), response.scanned_upto, response.has_more()), (1, 2, false));
    }

    #[test]
    fn pages_by_scope_and_limit() {
        let tree = Hierarchy::standard();
        let log: Vec<StoredDelivery> = vec![
            entry(&tree, 1, "jp"),
            entry(&tree, 2, "jp/27"),
            entry(&tree, 3, "jp/13"),
            entry(&tree, 4, "jp/13/chuo"),
        ];
        let request = SyncRequest {
            after: 0,
            scope: Scope::parse("jp/13/chuo").expect("scope"),
            limit: 2,
            trust: None,
        };
        let first = build_response(&request, log.clone(), 4);
        assert_eq!(first.deliveries.len(), 2);
        assert_eq!(first.scanned_upto, 3, "entry 2 is out of scope but scanned");
        assert!(first.has_more());
        let next = SyncRequest { after: first.scanned_upto, ..request };
        let second = build_response(&next, log, 4);
        assert_eq!((second.deliveries.len(), second.scanned_upto, second.has_more()), (1, 4, false));
        let parsed = parse_response(&second.to_json()).expect("round trip");
        assert_eq!(parsed, second);
    }

    #[test]
    fn a_page_fits_one_mqtt_packet() {
        let tree = Hierarchy::standard();
        let log: Vec<StoredDelivery> = (1..=300).map(|seq| entry(&tree, seq, "jp")).collect();
        let request = SyncRequest {
            after: 0,
            scope: Scope::parse("jp").expect("scope"),
            limit: MAX_SYNC_PAGE_ENTRIES,
            trust: None,
        };
        let page = build_response(&request, log, 300);
        let packet = page.to_json().len() + request_topic("jp", "jp-13").len() + 16;
        assert!(packet <= MAX_PACKET_BYTES, "{packet} bytes in one answer");
        assert!(page.deliveries.len() > 1 && page.has_more(), "{} deliveries", page.deliveries.len());
        assert_eq!(page.scanned_upto, page.deliveries.len() as u64, "the rest is for the next page");
    }

    #[test]
    fn rate_limiter_allows_a_burst_then_the_rate() {
        let mut limiter = RateLimiter::new(10, 3);
        let t0 = Timestamp::from_unix_ms(1_000_000);
        assert!((0..3).all(|_| limiter.allow("a", t0)));
        assert!(!limiter.allow("a", t0), "burst spent");
        assert!(limiter.allow("b", t0), "per key");
        assert!(limiter.allow("a", t0.plus_ms(100)), "one token after 100 ms at 10/s");
        assert!(!limiter.allow("a", t0.plus_ms(100)));
    }

    #[test]
    fn a_repeated_request_for_a_fresh_answer_is_dropped() {
        let mut limiter = RateLimiter::new(10, 3);
        let t0 = Timestamp::from_unix_ms(1_000_000);
        assert!(!limiter.is_repeat("a", 7, t0), "first request");
        assert!(limiter.is_repeat("a", 7, t0.plus_ms(500)), "same page, answer still fresh");
        assert!(!limiter.is_repeat("b", 7, t0.plus_ms(500)), "per child");
        assert!(!limiter.is_repeat("a", 9, t0.plus_ms(600)), "the next page");
        assert!(!limiter.is_repeat("a", 9, t0.plus_ms(600 + REPEAT_WINDOW_MS)), "asked again later");
    }

    #[test]
    fn request_topics_name_the_child() {
        assert_eq!(
            child_of_request_topic("jp-13", &request_topic("jp-13", "jp-13-chuo")),
            Some("jp-13-chuo")
        );
        assert_eq!(child_of_request_topic("jp-13", "kairan/v1/jp-13/sync/a/b/req"), None);
        assert_eq!(child_of_request_topic("jp-13", "kairan/v1/jp-1/sync/a/req"), None);
    }
}
