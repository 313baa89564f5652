//! The downstream window of a relay: publishes its output log to its own broker in relay_seq
//! order, at least once, only what is durable.
//!
//! Deliveries are forwarded from memory (the bytes just committed), never re-read; what is
//! not in memory — after a restart, a reconnection that outlived the in-memory window, or a
//! burst larger than it — is read back from the store. The broker acknowledges publishes in
//! order (MQTT 3.1.1 §4.6), and the confirmed position is written to the store with the next
//! commit: after a crash, everything after it is published again, and children deduplicate.

use std::collections::BTreeMap;

use bytes::Bytes;

use kairan_protocol::Digest;

use super::io::Query;

/// Unacknowledged publishes in flight to the own broker, at most.
pub const WINDOW: usize = 64;
/// Deliveries kept in memory for forwarding, at most; beyond it they are read back.
pub const CACHE_CAP: usize = 1024;

/// A delivery ready to forward.
#[derive(Debug, Clone)]
pub struct Forward {
    /// Digest.
    pub digest: Digest,
    /// Topic (by the advisory's scope).
    pub topic: String,
    /// The delivery as forwarded.
    pub payload: Bytes,
}

/// What the publisher wants done next.
#[derive(Debug)]
pub enum Step {
    /// Publish this delivery (QoS 1).
    Send(u64, Forward),
    /// Read these log entries back from the store.
    Read(Query),
}

/// The window's state.
#[derive(Debug)]
pub struct Publisher {
    connected: bool,
    confirmed: u64,
    next: u64,
    in_flight: usize,
    sent_upto: u64,
    cache: BTreeMap<u64, Forward>,
    reading: bool,
}

impl Publisher {
    /// A publisher resuming after `confirmed` (the stored cursor).
    pub fn new(confirmed: u64) -> Self {
        Self {
            connected: false,
            confirmed,
            next: confirmed + 1,
            in_flight: 0,
            sent_upto: confirmed,
            cache: BTreeMap::new(),
            reading: false,
        }
    }

    /// The highest relay_seq the broker confirmed.
    pub fn confirmed(&self) -> u64 {
        self.confirmed
    }

    /// Whether nothing is in flight and everything up to `durable` was sent.
    pub fn is_idle(&self, durable: u64) -> bool {
        self.in_flight == 0 && self.next > durable
    }

    /// Whether the own broker is connected.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Keeps a decided delivery in memory for forwarding once it is durable.
    pub fn offer(&mut self, relay_seq: u64, forward: Forward) {
        if relay_seq >= self.next && self.cache.len() < CACHE_CAP {
            self.cache.insert(relay_seq, forward);
        }
    }

    /// The connection to the own broker is up: everything unconfirmed goes out again.
    pub fn connected(&mut self) {
        self.connected = true;
        self.rewind();
    }

    /// The connection is lost.
    pub fn disconnected(&mut self) {
        self.connected = false;
        self.rewind();
    }

    fn rewind(&mut self) {
        self.next = self.confirmed + 1;
        self.sent_upto = self.confirmed;
        self.in_flight = 0;
    }

    /// Log entries read back from the store.
    pub fn read_back(&mut self, entries: impl IntoIterator<Item = (u64, Forward)>) {
        self.reading = false;
        for (relay_seq, forward) in entries {
            if relay_seq >= self.next {
                self.cache.insert(relay_seq, forward);
            }
        }
    }

    /// A read came back without the entry the window needs next: it is not in the store.
    pub fn missing_next(&self) -> bool {
        !self.reading && !self.cache.contains_key(&self.next)
    }

    /// The broker acknowledged one publish (in order). Returns the new confirmed position when
    /// it moved: with nothing in flight, everything sent is confirmed.
    pub fn acked(&mut self) -> Option<u64> {
        self.in_flight = self.in_flight.saturating_sub(1);
        if self.in_flight == 0 && self.sent_upto > self.confirmed {
            self.confirmed = self.sent_upto;
            let confirmed = self.confirmed;
            self.cache.retain(|relay_seq, _| *relay_seq > confirmed);
            return Some(confirmed);
        }
        None
    }

    /// What to do next, given the last durable relay_seq.
    pub fn poll(&mut self, durable: u64) -> Option<Step> {
        if !self.connected || self.in_flight >= WINDOW || self.next > durable || self.reading {
            return None;
        }
        match self.cache.get(&self.next) {
            Some(forward) => {
                let step = Step::Send(self.next, forward.clone());
                self.sent_upto = self.next;
                self.next += 1;
                self.in_flight += 1;
                Some(step)
            }
            None => {
                self.reading = true;
                let limit = WINDOW.max(CACHE_CAP.saturating_sub(self.cache.len()).min(4 * WINDOW));
                Some(Step::Read(Query::Log { after: self.next - 1, upto: durable, limit }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forward(n: u64) -> Forward {
        Forward { digest: Digest::of(&n.to_be_bytes()), topic: format!("t/{n}"), payload: Bytes::new() }
    }

    fn sends(publisher: &mut Publisher, durable: u64) -> Vec<u64> {
        let mut sent = Vec::new();
        while let Some(Step::Send(relay_seq, _)) = publisher.poll(durable) {
            sent.push(relay_seq);
        }
        sent
    }

    #[test]
    fn sends_only_what_is_durable_in_order_and_confirms_when_all_acked() {
        let mut publisher = Publisher::new(0);
        for n in 1..=3 {
            publisher.offer(n, forward(n));
        }
        assert!(publisher.poll(3).is_none(), "not connected");
        publisher.connected();
        assert_eq!(sends(&mut publisher, 2), vec![1, 2], "3 is not durable yet");
        assert_eq!(publisher.acked(), None);
        assert_eq!(publisher.acked(), Some(2));
        assert_eq!(sends(&mut publisher, 3), vec![3]);
        assert_eq!(publisher.acked(), Some(3));
        assert!(publisher.is_idle(3));
    }

    #[test]
    fn a_reconnection_sends_the_unconfirmed_again() {
        let mut publisher = Publisher::new(0);
        publisher.offer(1, forward(1));
        publisher.offer(2, forward(2));
        publisher.connected();
        assert_eq!(sends(&mut publisher, 2), vec![1, 2]);
        publisher.disconnected();
        publisher.connected();
        assert_eq!(sends(&mut publisher, 2), vec![1, 2], "unconfirmed: again");
    }

    #[test]
    fn after_a_restart_it_reads_back_from_the_store() {
        let mut publisher = Publisher::new(5);
        publisher.connected();
        let Some(Step::Read(Query::Log { after, upto, .. })) = publisher.poll(7) else { panic!("read back") };
        assert_eq!((after, upto), (5, 7));
        assert!(publisher.poll(7).is_none(), "one read at a time");
        publisher.read_back([(6, forward(6)), (7, forward(7))]);
        assert_eq!(sends(&mut publisher, 7), vec![6, 7]);
    }

    #[test]
    fn the_window_bounds_what_is_in_flight() {
        let mut publisher = Publisher::new(0);
        for n in 1..=100 {
            publisher.offer(n, forward(n));
        }
        publisher.connected();
        assert_eq!(sends(&mut publisher, 100).len(), WINDOW);
    }
}
