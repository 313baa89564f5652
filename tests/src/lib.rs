//! Support for kairan's multi-node integration tests (`tests/tests/*.rs`): an external
//! Mosquitto or RabbitMQ broker started per test, and builders for deliveries that a test injects at any
//! level of a running tree.
//!
//! ## Layout
//! - [`Mosquitto`] (from `kairan_node::harness`): a Mosquitto process on a free loopback port
//!   with a password file, killed on drop; `KAIRAN_REQUIRE_MOSQUITTO=1` (CI) makes a missing
//!   `mosquitto` a failure, not a skip.
//! - [`RabbitMq`] (from `kairan_node::harness`): a private RabbitMQ node (MQTT plugin) per
//!   test, configured from the members, killed on drop; `KAIRAN_REQUIRE_RABBITMQ=1` (CI) makes
//!   a missing `rabbitmq-server` a failure, not a skip.
//! - [`chain_delivery`]: a delivery carried by the given relays, hops signed by their keys,
//!   whatever the advisory says — so tests can inject expired or out-of-scope input that
//!   the real relays above would have refused.
//! - [`leaks`]: looking for an advisory's text where it must not be (files, what a member
//!   received, a `tcpdump` capture of the loopback interface), as is and inside base64.
//! - [`member`]: a hostile member — a plain MQTT client with a member's real credentials —
//!   and exactly what the broker answered it (refused CONNECT, SUBACK failure, disconnection).
//! - [`checks`]: what the attack tests observe on a running tree (metrics with reason codes,
//!   stored trust, cursors, a genuine advisory still reaching every clinic).
//! - [`sim`]: the deterministic simulator — the real relay core and catch-up in every node of
//!   a seeded, simulated national tree with message loss, duplication, delays, partitions and
//!   crashes; invariants checked after the faults heal (`docs/simulation.md`).

use kairan_node::harness::hierarchy::Hierarchy;
use kairan_protocol::envelope::ADVISORY_TYPE;
use kairan_protocol::{Advisory, Delivery, Digest, Envelope, Hop, SecretKey, Timestamp};

pub mod checks;
pub mod leaks;
pub mod member;
pub mod sim;

pub use kairan_node::harness::mosquitto::{Mosquitto, free_port};
pub use kairan_node::harness::rabbitmq::RabbitMq;

/// Signs `advisory` with the tree's origin key (no sequence bookkeeping) and carries it
/// through `relays` (indexes into `tree.relays`, top down), each hop signed by that relay's
/// key with the given times. Nothing is verified: this is how a test forges what a
/// compromised or careless upstream might send.
pub fn chain_delivery(tree: &Hierarchy, advisory: &Advisory, relays: &[usize], now: Timestamp) -> Delivery {
    chain_delivery_of(tree, (&tree.origin.key, &tree.origin.cert), advisory, relays, now)
}

/// [`chain_delivery`] for another origin: `origin` is its key and certificate.
pub fn chain_delivery_of(
    tree: &Hierarchy,
    origin: (&SecretKey, &Envelope),
    advisory: &Advisory,
    relays: &[usize],
    now: Timestamp,
) -> Delivery {
    let envelope = Envelope::sign(ADVISORY_TYPE, advisory.to_payload(), &[origin.0]);
    let digest = Digest::of(&envelope.payload);
    let mut delivery = Delivery { advisory: envelope, certs: vec![origin.1.clone()], hops: Vec::new() };
    let mut prev = digest;
    let mut upstream = advisory.origin.clone();
    for &index in relays {
        let key: SecretKey = tree.relay_key(index).expect("relay key");
        let relay = &tree.relays[index];
        let hop = Hop {
            advisory: digest,
            relay: relay.config_parts.id.clone(),
            keyid: key.keyid().clone(),
            upstream: upstream.clone(),
            received_at: now,
            forwarded_at: now,
            relay_seq: 1_000_000,
            prev,
        };
        let signed = hop.sign(&key);
        prev = Digest::of(&signed.payload);
        upstream = relay.config_parts.id.clone();
        delivery.certs.push(relay.config_parts.cert.clone());
        delivery.hops.push(signed);
    }
    delivery
}

/// A valid advisory of the tree's origin for tests: `scope`, `id`, issued at `now`, valid one
/// day (the origin, `seq` and `prev` are set when [`Hierarchy::sign_next`] signs it).
pub fn advisory(scope: &str, id: &str, now: Timestamp) -> Advisory {
    let mut advisory = kairan_protocol::fixtures::sample_advisory("mhlw", 1, None);
    advisory.id = id.into();
    advisory.scope = kairan_protocol::Scope::parse(scope).expect("scope");
    advisory.issued_at = now;
    advisory.expires_at = now.plus_secs(24 * 3600);
    advisory
}
