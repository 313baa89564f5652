//! What a relay publishes about trust: the retained trust pieces, and the certificate chain
//! its signed catch-up pages carry.

use std::collections::BTreeMap;

use bytes::Bytes;

use kairan_protocol::acceptance::Acceptance;
use kairan_protocol::{CertSet, Certificate, Digest, Envelope, Role, Timestamp};

use super::super::io::{Event, Link, Qos};
use super::super::publisher::Publisher;
use super::Machine;
use crate::topics;

/// Early catch-up requests a relay keeps until its chain verifies (one per child; members only).
const MAX_HELD_REQUESTS: usize = 4096;

impl Machine {
    /// Publishes the trust in force as retained pieces (each small, self-contained: one
    /// MQTT packet whatever the size of the whole) and clears the pieces pruned since.
    pub(super) fn publish_trust(&mut self) {
        if !self.publisher.as_ref().is_some_and(Publisher::is_connected) {
            return;
        }
        let node = self.identity.id.clone();
        let mut current = BTreeMap::new();
        for piece in self.trust.pieces() {
            let topic = topics::trust_piece(&node, piece.id.to_string().trim_start_matches("sha256:"));
            if !self.pieces.contains_key(&topic) {
                self.publish(
                    Link::Downstream,
                    topic.clone(),
                    Bytes::from(piece.to_json()),
                    Qos::AtMostOnce,
                    true,
                );
            }
            current.insert(topic, ());
        }
        let pruned: Vec<String> = self.pieces.keys().filter(|t| !current.contains_key(*t)).cloned().collect();
        for topic in pruned {
            self.publish(Link::Downstream, topic, Bytes::new(), Qos::AtMostOnce, true);
        }
        self.pieces = current;
    }

    /// Publishes the signed acceptance of `digest` to `origin` (QoS 0: an origin that misses
    /// it publishes again, and a duplicate is answered with the acceptance again).
    pub(super) fn publish_acceptance(&mut self, origin: String, digest: Digest, at: Timestamp) {
        if !self.publisher.as_ref().is_some_and(Publisher::is_connected) {
            return;
        }
        // Computes `chain_in_force` if the chain or the trust changed since.
        self.chain_ready(at);
        let Some(attester) = &self.identity.attester else { return };
        let node = self.identity.id.clone();
        let acceptance = Acceptance { node: node.clone(), origin: origin.clone(), digest, accepted_at: at };
        let message = acceptance.sign(&attester.key, &self.chain_in_force);
        let topic = topics::accepted(&node, &origin);
        self.publish(Link::Downstream, topic, Bytes::from(message.to_json()), Qos::AtMostOnce, false);
    }

    /// Keeps the certificates a signed page must carry: this relay's own and those of the
    /// relays above it (taken from the parent's verified pages and from the deliveries this
    /// relay accepts, which carry them).
    pub(super) fn learn_chain(&mut self, certs: &[Envelope], now: Timestamp) {
        let mut learned = false;
        for cert in certs {
            let relay = Certificate::decode(&cert.payload).is_ok_and(|c| c.has_role(Role::Relay));
            if relay && !self.chain.contains(cert) {
                self.chain.push(cert.clone());
                learned = true;
            }
        }
        if learned {
            self.chain_checked = None;
            self.answer_held_requests(now);
        }
    }

    /// Keeps a catch-up request that came before the chain verified (the latest per child).
    pub(super) fn hold_request(&mut self, child: &str, payload: &[u8]) {
        if self.held_requests.len() >= MAX_HELD_REQUESTS && !self.held_requests.contains_key(child) {
            let reason = "this relay does not yet hold the certificates from its own up to a root-issued one, \
                          and holds as many early requests as it keeps";
            self.report(Event::SyncDropped { child: child.to_owned(), reason: reason.into() });
            return;
        }
        self.held_requests.insert(child.to_owned(), payload.to_vec());
    }

    /// Answers the held requests once the chain verifies.
    pub(super) fn answer_held_requests(&mut self, now: Timestamp) {
        if self.held_requests.is_empty() || !self.chain_ready(now) {
            return;
        }
        for (child, payload) in std::mem::take(&mut self.held_requests) {
            self.answer_request(&child, &payload, now);
        }
    }

    /// Whether the chain verifies to the anchors at `now` with this relay's own key certified
    /// `relay` in it: until it does, a child could not verify this relay's pages, so it does
    /// not answer (the child asks again). Cached until the chain or the trust changes, and
    /// re-checked on each tick (certificates expire).
    pub(super) fn chain_ready(&mut self, now: Timestamp) -> bool {
        if let Some(ready) = self.chain_checked {
            return ready;
        }
        let Some(attester) = &self.identity.attester else { return false };
        let keyid = attester.key.public().keyid().as_str().to_owned();
        // What still verifies: after a root rotation or a renewal the chain holds certificates
        // that no longer count beside the reissued ones that do.
        self.chain_in_force = CertSet::usable(&self.chain, self.trust.anchors(), self.trust.revoked(), now);
        let ready = CertSet::verify(&self.chain_in_force, self.trust.anchors(), self.trust.revoked(), now)
            .is_ok_and(|set| set.find(&keyid, Role::Relay).is_ok());
        self.chain_checked = Some(ready);
        ready
    }
}
