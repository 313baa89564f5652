//! What a relay publishes about trust: the retained trust pieces, and the certificate chain
//! its signed catch-up pages carry.

use std::collections::BTreeMap;

use bytes::Bytes;

use kairan_protocol::acceptance::Acceptance;
use kairan_protocol::{CertSet, Certificate, Digest, Envelope, Role, Timestamp};

use super::super::io::{Link, Qos};
use super::super::publisher::Publisher;
use super::Machine;
use crate::topics;

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
        let Some(attester) = &self.identity.attester else { return };
        let node = self.identity.id.clone();
        let acceptance = Acceptance { node: node.clone(), origin: origin.clone(), digest, accepted_at: at };
        let message = acceptance.sign(&attester.key, &self.chain);
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
            self.chain_ready(now);
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
        let ready = CertSet::verify(&self.chain, self.trust.anchors(), self.trust.revoked(), now)
            .is_ok_and(|set| set.find(&keyid, Role::Relay).is_ok());
        self.chain_checked = Some(ready);
        ready
    }
}
