//! The parent side of catch-up: which children's requests are answered, and what a page
//! holds.
//!
//! A child sends a [`SyncRequest`] on `kairan/v1/<parent>/sync/<child>/req` whenever it
//! (re)connects, periodically, and when it notices a gap. The parent answers on
//! `…/sync/<child>/resp` with the deliveries of its output log after `after` whose scope
//! overlaps the child's, up to a page that fits one MQTT packet, and tells how far it scanned.
//! Only what is durable is answered: a crash would reuse the relay_seqs of anything else, and
//! a child whose cursor already passed them would never ask for them again.

use kairan_protocol::sync::{MAX_SYNC_PAGE_BYTES, SyncRequest, SyncResponse, parse_request};
use std::collections::BTreeMap;

use kairan_protocol::{Delivery, Scope, Timestamp};

use super::MAX_PACKET_BYTES;
use super::limiter::{RateLimiter, RepeatFilter};
use crate::store::StoredDelivery;

/// Delivery bytes in one answer at most. An answer travels as one MQTT packet, and every
/// client and broker refuses packets larger than [`MAX_PACKET_BYTES`] (a client that receives
/// one drops its connection, asks again, and never catches up), so a page stays well below it
/// — the protocol's [`MAX_SYNC_PAGE_BYTES`] is larger. The rest of the packet holds the topic
/// and the answer's other fields.
pub const PAGE_BYTES: usize = {
    let budget = MAX_PACKET_BYTES - 16 * 1024;
    if budget < MAX_SYNC_PAGE_BYTES { budget } else { MAX_SYNC_PAGE_BYTES }
};

/// Catch-up requests answered per child and second, sustained. A page holds only ~12 deliveries
/// of 21 KB (one MQTT packet), so a child catching up 10,000 asks for ~830 pages: at 20 per
/// second that alone took 42 s. 100 per second does not raise what the node can be made to
/// do: the node-wide budget ([`ANSWERS_PER_SEC`]) bounds that, whoever asks.
pub const REQUESTS_PER_SEC: u32 = 100;
/// Catch-up requests a child may send in a burst.
pub const REQUEST_BURST: u32 = 100;
/// A request for the same page from the same child within this long of answering it is a
/// repeat, dropped.
pub const REPEAT_WINDOW_MS: i64 = 1_000;
/// Log entries scanned for one page at most.
pub const SCAN_LIMIT: usize = 4096;
/// Log entries read from the store at a time while building a page.
pub const SCAN_CHUNK: usize = 32;

/// Answers per second across all children, sustained: a budget a crowd of members (or one
/// member with many identities) cannot exceed.
pub const ANSWERS_PER_SEC: u32 = 400;
/// Answers in a burst across all children (every child of a large district asking after the
/// district restarted).
pub const ANSWER_BURST: u32 = 2_000;

/// Which requests are answered, and with which scope.
#[derive(Debug)]
pub struct Server {
    children: BTreeMap<String, Scope>,
    limiter: RateLimiter,
    budget: RateLimiter,
    repeats: RepeatFilter,
}

impl Server {
    /// A server for `children` (their ids and the scopes they are entitled to).
    pub fn new(children: BTreeMap<String, Scope>) -> Self {
        Self {
            children,
            limiter: RateLimiter::new(REQUESTS_PER_SEC, REQUEST_BURST),
            budget: RateLimiter::new(ANSWERS_PER_SEC, ANSWER_BURST),
            repeats: RepeatFilter::new(REPEAT_WINDOW_MS),
        }
    }

    /// Admits a request from `child` (authenticated by the broker: only it may publish on its
    /// request topic): a member, within its rate and the global budget, well formed, not a
    /// repeat. The request is answered with the child's own scope, whatever it names. `Err`
    /// says why not.
    pub fn admit(&mut self, child: &str, bytes: &[u8], now: Timestamp) -> Result<SyncRequest, String> {
        let scope = self.children.get(child).cloned().ok_or("not a child of this node")?;
        if !self.limiter.allow(child, now) {
            return Err("over the rate limit".into());
        }
        let mut request = parse_request(bytes).map_err(|error| format!("malformed: {error}"))?;
        if self.repeats.is_repeat(child, request.after, now) {
            return Err(format!("repeats the request after {} just answered", request.after));
        }
        if !self.budget.allow("all children", now) {
            return Err("over the node's answer budget".into());
        }
        request.scope = scope;
        Ok(request)
    }
}

/// Builds the answer to `request` from log entries after `request.after`, in order, up to
/// `upto` (the last durable relay_seq): entries beyond it are not answered. Stops at the page
/// limits; entries out of the child's scope are skipped but count as scanned.
pub fn build_page(
    request: &SyncRequest,
    entries: impl IntoIterator<Item = StoredDelivery>,
    upto: u64,
) -> SyncResponse {
    let mut response = SyncResponse {
        after: request.after,
        scanned_upto: request.after,
        last_relay_seq: upto,
        deliveries: Vec::new(),
        ..SyncResponse::default()
    };
    let mut page_bytes = 0usize;
    for entry in entries {
        if entry.relay_seq <= request.after {
            continue;
        }
        if entry.relay_seq > upto {
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
            if let Ok(delivery) = Delivery::from_json(&entry.delivery) {
                page_bytes += size;
                response.deliveries.push(delivery);
            }
        }
        response.scanned_upto = entry.relay_seq;
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use kairan_protocol::fixtures::{self, Hierarchy};
    use kairan_protocol::sync::{MAX_SYNC_PAGE_ENTRIES, parse_response};
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
            delivery: delivery.to_json().into(),
        }
    }

    fn request(after: u64, scope: &str, limit: u32) -> SyncRequest {
        SyncRequest {
            after,
            scope: Scope::parse(scope).expect("scope"),
            limit,
            trust: None,
            tlog: None,
            prove: Vec::new(),
        }
    }

    #[test]
    fn answers_stop_at_the_last_durable_entry() {
        // Entry 3 is in the store but not durable yet (upto 2): neither sent nor scanned.
        let tree = Hierarchy::standard();
        let log = vec![entry(&tree, 1, "jp"), entry(&tree, 2, "jp"), entry(&tree, 3, "jp")];
        let response = build_page(&request(1, "jp/13", 10), log, 2);
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
        let first = build_page(&request(0, "jp/13/chuo", 2), log.clone(), 4);
        assert_eq!(first.deliveries.len(), 2);
        assert_eq!(first.scanned_upto, 3, "entry 2 is out of scope but scanned");
        assert!(first.has_more());
        let second = build_page(&request(first.scanned_upto, "jp/13/chuo", 2), log, 4);
        assert_eq!((second.deliveries.len(), second.scanned_upto, second.has_more()), (1, 4, false));
        assert_eq!(parse_response(&second.to_json()).expect("round trip"), second);
    }

    #[test]
    fn a_page_fits_one_mqtt_packet() {
        let tree = Hierarchy::standard();
        let log: Vec<StoredDelivery> = (1..=300).map(|seq| entry(&tree, seq, "jp")).collect();
        let page = build_page(&request(0, "jp", MAX_SYNC_PAGE_ENTRIES), log, 300);
        let packet = page.to_json().len() + crate::topics::sync_response("jp", "jp-13").len() + 16;
        assert!(packet <= MAX_PACKET_BYTES, "{packet} bytes in one answer");
        assert!(page.deliveries.len() > 1 && page.has_more(), "{} deliveries", page.deliveries.len());
        assert_eq!(page.scanned_upto, page.deliveries.len() as u64, "the rest is for the next page");
    }

    #[test]
    fn requests_are_admitted_within_rate_and_not_repeated() {
        let children = [("c", "jp/13"), ("d", "jp/13/chuo"), ("e", "jp/13")]
            .into_iter()
            .map(|(id, scope)| (id.to_owned(), Scope::parse(scope).expect("scope")))
            .collect();
        let mut server = Server::new(children);
        let t0 = Timestamp::from_unix_ms(1_000_000);
        let bytes = request(7, "jp/13", 10).to_json();
        assert!(server.admit("c", &bytes, t0).is_ok());
        assert!(server.admit("c", &bytes, t0.plus_ms(10)).is_err(), "repeat");
        assert!(server.admit("c", b"{", t0).is_err(), "malformed");
        assert!(server.admit("stranger", &bytes, t0).is_err(), "not a member");
        let foreign = request(1, "jp", 10).to_json();
        let admitted = server.admit("d", &foreign, t0).expect("admitted");
        assert_eq!(
            admitted.scope.to_string(),
            "jp/13/chuo",
            "answered with the member's scope, not the asked one"
        );
        let burst =
            (0..100).filter(|i| server.admit("e", &request(*i, "jp", 1).to_json(), t0).is_ok()).count();
        assert_eq!(burst, REQUEST_BURST as usize);
    }
}
