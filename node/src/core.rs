//! The relay core: sans-IO. It takes events (delivery bytes, `now`) and returns what to do
//! (store, forward, ack, record a rejection, raise an alarm). Adapters do the I/O.
//!
//! The same core serves a relay (it attests a hop and forwards) and a clinic (it only keeps
//! an inbox). It holds in memory the indexes it needs to decide — which digests are held and
//! each origin's chain head — rebuilt from the store at start ([`Core::restore`]). The
//! adapter must persist an [`Outcome`] before acting on it; if persisting fails the process
//! stops and the core is rebuilt from what the store holds.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use kairan_protocol::head::{Head, verify_head};
use kairan_protocol::sequence::{ChainHead, SeqDecision, classify};
use kairan_protocol::{
    Certificate, Delivery, Digest, Envelope, Error, HopInput, RevocationSet, Scope, SecretKey, Timestamp,
    TrustAnchors, Verified, VerifyContext, attest, verify_delivery,
};

use crate::store::{ForkRecord, Rejection, RestoredState, StoredDelivery};

/// Where this node's input must come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// The national node's ingest topic: deliveries as published by origins, with no hop.
    Ingest,
    /// A parent relay: the last hop must be this relay's.
    Relay(String),
}

/// A relay's signing identity.
#[derive(Debug)]
pub struct Attester {
    /// The relay key.
    pub key: SecretKey,
    /// The relay certificate envelope (must certify `key`).
    pub cert: Envelope,
    /// Further certificates carried in every forwarded delivery: after a key rotation, the
    /// relay's previous certificate, which still certifies the key its children's
    /// certificates were issued under.
    pub extra_certs: Vec<Envelope>,
}

/// What a core is.
#[derive(Debug)]
pub struct CoreConfig {
    /// This node's id (relay id or clinic id).
    pub id: String,
    /// This node's certified scope.
    pub scope: Scope,
    /// Where input must come from.
    pub upstream: Upstream,
    /// Present for a relay; absent for a clinic.
    pub attester: Option<Attester>,
    /// The trust anchors.
    pub anchors: TrustAnchors,
}

/// An accepted delivery: store `record`, then forward it (relay) or show it (clinic).
#[derive(Debug)]
pub struct Accepted {
    /// What to store (for a relay, the delivery with this relay's hop, as forwarded).
    pub record: StoredDelivery,
    /// The verified delivery as received.
    pub verified: Verified<Delivery>,
    /// Where it sits in its origin's chain (accept, gap, backfill).
    pub sequence: SeqDecision,
}

/// What the core decided about one input.
#[derive(Debug)]
pub enum Outcome {
    /// Verified and new: store, then forward / show.
    Accepted(Box<Accepted>),
    /// Already held: acknowledge, do nothing else.
    Duplicate {
        /// The digest held.
        digest: Digest,
    },
    /// Refused: record the rejection, acknowledge, never forward.
    Rejected(Rejection),
    /// Verified, but a second history of its origin: keep for audit, alarm, never forward.
    Fork(Box<ForkRecord>),
    /// This relay cannot attest now (its own certificate is expired or not yet valid): do not
    /// acknowledge; the broker redelivers after the certificate is renewed and the node restarted.
    Held {
        /// Why.
        reason: String,
    },
}

/// What the core decided about a signed head.
#[derive(Debug)]
pub enum HeadOutcome {
    /// Newer than any head seen of this origin: republish it (relay); if it states more than
    /// is held (`missing` = Some((from, to))), advisories were withheld or are in flight —
    /// report the gap and catch up.
    Newer {
        /// The origin.
        origin: String,
        /// The head.
        head: Head,
        /// Sequence numbers the head says exist and this node does not hold.
        missing: Option<(u64, u64)>,
    },
    /// Not newer than a head already seen.
    Known,
    /// Refused.
    Rejected(Rejection),
}

/// Counters since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Gaps reported (a head or a sequence jump showed advisories this node does not hold).
    pub gaps_reported: u64,
    /// Frozen feeds reported (an origin's newest head expired with no fresher one).
    pub feeds_frozen: u64,
    /// Accepted deliveries.
    pub accepted: u64,
    /// Duplicates dropped.
    pub duplicates: u64,
    /// Rejections.
    pub rejected: u64,
    /// Forks.
    pub forks: u64,
}

/// The `source` of deliveries that arrive in catch-up pages.
pub const SYNC_SOURCE: &str = "sync";

/// The relay core.
#[derive(Debug)]
pub struct Core {
    config: CoreConfig,
    revocations: RevocationSet,
    heads: HashMap<String, ChainHead>,
    held_at: HashMap<(String, u64), Digest>,
    held: HashSet<Digest>,
    last_relay_seq: u64,
    counters: Counters,
    heads_seen: BTreeMap<String, Head>,
    frozen_reported: BTreeSet<(String, u64)>,
}

impl Core {
    /// A core resuming from `state` (empty for a new node).
    pub fn restore(config: CoreConfig, state: RestoredState) -> Self {
        let mut core = Core {
            config,
            revocations: RevocationSet::default(),
            heads: state.heads.into_iter().collect(),
            held_at: HashMap::new(),
            held: HashSet::new(),
            last_relay_seq: state.last_relay_seq,
            counters: Counters::default(),
            heads_seen: BTreeMap::new(),
            frozen_reported: BTreeSet::new(),
        };
        for (origin, seq, digest) in state.held {
            core.held.insert(digest);
            core.held_at.insert((origin, seq), digest);
        }
        core
    }

    /// This node's id.
    pub fn id(&self) -> &str {
        &self.config.id
    }

    /// This node's scope.
    pub fn scope(&self) -> &Scope {
        &self.config.scope
    }

    /// The trust anchors.
    pub fn anchors(&self) -> &TrustAnchors {
        &self.config.anchors
    }

    /// Replaces the revocations in force.
    pub fn set_revocations(&mut self, revocations: RevocationSet) {
        self.revocations = revocations;
    }

    /// Replaces the anchors in force (after a verified anchor rotation).
    pub fn set_anchors(&mut self, anchors: TrustAnchors) {
        self.config.anchors = anchors;
    }

    /// Counters since start.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Last relay sequence number assigned.
    pub fn last_relay_seq(&self) -> u64 {
        self.last_relay_seq
    }

    /// Whether a digest is held.
    pub fn holds(&self, digest: &Digest) -> bool {
        self.held.contains(digest)
    }

    /// The head of an origin's chain.
    pub fn head(&self, origin: &str) -> Option<ChainHead> {
        self.heads.get(origin).copied()
    }

    /// Decides about a signed head (a `HeadMessage`) that arrived from `source` at `now`.
    pub fn on_head(&mut self, bytes: &[u8], source: &str, now: Timestamp) -> HeadOutcome {
        let ctx = VerifyContext { anchors: &self.config.anchors, revocations: &self.revocations, now };
        let verified = match verify_head(bytes, ctx) {
            Ok(verified) => verified,
            Err(error) => {
                self.counters.rejected += 1;
                return HeadOutcome::Rejected(Rejection {
                    at: now,
                    claimed_digest: None,
                    code: error.code().to_owned(),
                    message: format!("head: {error}"),
                    source: source.to_owned(),
                    size: bytes.len(),
                });
            }
        };
        let head = verified.facts().clone();
        let newer = self
            .heads_seen
            .get(&head.origin)
            .is_none_or(|seen| (head.seq, head.issued_at) > (seen.seq, seen.issued_at));
        if !newer {
            return HeadOutcome::Known;
        }
        let held = self.heads.get(&head.origin).map_or(0, |h| h.seq);
        let missing = (head.seq > held).then_some((held + 1, head.seq));
        if missing.is_some() {
            self.counters.gaps_reported += 1;
        }
        self.heads_seen.insert(head.origin.clone(), head.clone());
        HeadOutcome::Newer { origin: head.origin.clone(), head, missing }
    }

    /// Origins whose newest head is stale at `now` (their feed is frozen, or withheld).
    pub fn stale_heads(&self, now: Timestamp) -> Vec<&Head> {
        self.heads_seen.values().filter(|head| head.is_stale(now)).collect()
    }

    /// Stale heads not reported before: each frozen feed is reported once per head.
    pub fn newly_frozen(&mut self, now: Timestamp) -> Vec<Head> {
        let fresh: Vec<Head> = self
            .heads_seen
            .values()
            .filter(|head| {
                head.is_stale(now) && !self.frozen_reported.contains(&(head.origin.clone(), head.seq))
            })
            .cloned()
            .collect();
        for head in &fresh {
            self.frozen_reported.insert((head.origin.clone(), head.seq));
            self.counters.feeds_frozen += 1;
        }
        fresh
    }

    /// Decides about delivery bytes that arrived from `source` at `now`.
    pub fn on_delivery(&mut self, bytes: &[u8], source: &str, now: Timestamp) -> Outcome {
        // A cheap check before any signature work: a copy of an advisory already held (a
        // redelivery, or a sibling replaying it) is a duplicate whatever its hops.
        let parsed = Delivery::from_json(bytes).ok();
        if let Some(delivery) = &parsed {
            let claimed = delivery.claimed_digest();
            if self.held.contains(&claimed) {
                self.counters.duplicates += 1;
                return Outcome::Duplicate { digest: claimed };
            }
        }
        if let Some(attester) = &self.config.attester {
            if let Err(error) =
                Certificate::decode(&attester.cert.payload).and_then(|cert| cert.check_validity(now))
            {
                return Outcome::Held { reason: format!("own certificate unusable: {error}") };
            }
        }
        let ctx = VerifyContext { anchors: &self.config.anchors, revocations: &self.revocations, now };
        let verified = match verify_delivery(bytes, ctx).and_then(|v| self.check_route(v)) {
            Ok(verified) => verified,
            Err(error) => return self.reject(bytes, source, now, &error),
        };
        let digest = verified.digest();
        if self.held.contains(&digest) {
            self.counters.duplicates += 1;
            return Outcome::Duplicate { digest };
        }
        let advisory = verified.advisory();
        let (origin, seq) = (advisory.origin.clone(), advisory.seq);
        let held_at_seq = self.held_at.get(&(origin.clone(), seq)).copied();
        let sequence = classify(self.heads.get(&origin).copied(), seq, advisory.prev, digest, held_at_seq);
        if let SeqDecision::Fork { seq: contested } = sequence {
            self.counters.forks += 1;
            return Outcome::Fork(Box::new(ForkRecord {
                digest,
                origin: origin.clone(),
                seq: contested,
                held: self.held_at.get(&(origin, contested)).copied(),
                at: now,
                delivery: String::from_utf8_lossy(bytes).into_owned(),
            }));
        }
        let relay_seq = self.last_relay_seq + 1;
        let stored_delivery = match &self.config.attester {
            Some(attester) => {
                let hop = HopInput {
                    relay_id: &self.config.id,
                    relay_key: &attester.key,
                    relay_cert: &attester.cert,
                    received_at: now,
                    forwarded_at: now,
                    relay_seq,
                };
                let mut forwarded = attest(&verified, &hop);
                for extra in &attester.extra_certs {
                    if !forwarded.certs.contains(extra) {
                        forwarded.certs.push(extra.clone());
                    }
                }
                forwarded.to_json()
            }
            None => bytes.to_vec(),
        };
        let record = StoredDelivery {
            digest,
            origin: origin.clone(),
            seq,
            scope: advisory.scope.to_string(),
            relay_seq,
            received_at: now,
            delivery: String::from_utf8_lossy(&stored_delivery).into_owned(),
        };
        // Commit to the in-memory indexes now: the adapter persists the record before acting
        // on it, and stops the process (rebuilding from the store) if it cannot.
        self.last_relay_seq = relay_seq;
        self.held.insert(digest);
        self.held_at.insert((origin.clone(), seq), digest);
        if !matches!(sequence, SeqDecision::Backfill) {
            self.heads.insert(origin, ChainHead { seq, digest });
        }
        self.counters.accepted += 1;
        if matches!(sequence, SeqDecision::Gap { .. }) {
            self.counters.gaps_reported += 1;
        }
        Outcome::Accepted(Box::new(Accepted { record, verified, sequence }))
    }

    /// Routing checks on top of verification: the delivery concerns this node's scope and
    /// came the way it must (from ingest with no hop, or with the parent's hop last).
    fn check_route(&self, verified: Verified<Delivery>) -> Result<Verified<Delivery>, Error> {
        let advisory_scope = &verified.advisory().scope;
        if !self.config.scope.overlaps(advisory_scope) {
            return Err(Error::ScopeViolation {
                what: format!("advisory delivered to {}, whose scope does not overlap it", self.config.id),
                scope: advisory_scope.to_string(),
                allowed: self.config.scope.to_string(),
            });
        }
        let hop_count = verified.facts().hops.len();
        let last_relay = verified.hops().last().map(|hop| hop.relay.clone());
        match (&self.config.upstream, last_relay) {
            (Upstream::Ingest, None) => Ok(verified),
            (Upstream::Ingest, Some(relay)) => Err(Error::BrokenHopChain {
                index: hop_count - 1,
                reason: format!(
                    "ingest takes deliveries as published, this one was already relayed by {relay}"
                ),
            }),
            (Upstream::Relay(parent), Some(relay)) if relay == *parent => Ok(verified),
            (Upstream::Relay(parent), last) => Err(Error::BrokenHopChain {
                index: hop_count,
                reason: format!(
                    "expected the last hop from parent {parent}, found {}",
                    last.unwrap_or_else(|| "no hop".into())
                ),
            }),
        }
    }

    fn reject(&mut self, bytes: &[u8], source: &str, now: Timestamp, error: &Error) -> Outcome {
        self.counters.rejected += 1;
        let claimed_digest = Delivery::from_json(bytes).ok().map(|d| d.claimed_digest());
        Outcome::Rejected(Rejection {
            at: now,
            claimed_digest,
            code: error.code().to_owned(),
            message: error.to_string(),
            source: source.to_owned(),
            size: bytes.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kairan_protocol::fixtures::{self, Hierarchy};

    fn relay_core(tree: &Hierarchy, index: usize, upstream: Upstream) -> Core {
        let relay = &tree.relays[index];
        Core::restore(
            CoreConfig {
                id: relay.id.clone(),
                scope: relay.scope.clone(),
                upstream,
                attester: Some(Attester {
                    key: kairan_protocol::SecretKey::from_hex(&relay.key.to_hex()).expect("key"),
                    cert: relay.cert.clone(),
                    extra_certs: Vec::new(),
                }),
                anchors: tree.anchors.clone(),
            },
            RestoredState::default(),
        )
    }

    #[test]
    fn national_accepts_attests_and_dedups() {
        let tree = Hierarchy::standard();
        let mut national = relay_core(&tree, 0, Upstream::Ingest);
        let advisory = fixtures::sample_advisory("mhlw", 1, None);
        let bytes = tree.delivery(&advisory, 0).to_json();
        let Outcome::Accepted(accepted) = national.on_delivery(&bytes, "ingest", tree.now.plus_secs(1))
        else {
            panic!("accepted")
        };
        assert_eq!(accepted.record.relay_seq, 1);
        // The forwarded delivery verifies downstream with the national hop on it.
        let mut prefecture = relay_core(&tree, 1, Upstream::Relay("jp".into()));
        let outcome =
            prefecture.on_delivery(accepted.record.delivery.as_bytes(), "jp", tree.now.plus_secs(2));
        assert!(matches!(outcome, Outcome::Accepted(_)), "{outcome:?}");
        assert!(matches!(
            national.on_delivery(&bytes, "ingest", tree.now.plus_secs(3)),
            Outcome::Duplicate { .. }
        ));
        assert_eq!(
            national.counters(),
            Counters { accepted: 1, duplicates: 1, rejected: 0, forks: 0, gaps_reported: 0, feeds_frozen: 0 }
        );
    }

    #[test]
    fn wrong_upstream_and_out_of_scope_are_rejected() {
        let tree = Hierarchy::standard();
        let advisory = fixtures::sample_advisory("mhlw", 1, None);
        // A delivery that skipped the national relay, injected at the prefecture.
        let mut prefecture = relay_core(&tree, 1, Upstream::Relay("jp".into()));
        let Outcome::Rejected(rejection) =
            prefecture.on_delivery(&tree.delivery(&advisory, 0).to_json(), "jp", tree.later())
        else {
            panic!("rejected")
        };
        assert_eq!(rejection.code, "broken_hop_chain");
        // An Osaka advisory offered to Tokyo's district.
        let mut osaka = fixtures::sample_advisory("mhlw", 1, None);
        osaka.scope = Scope::parse("jp/27").expect("scope");
        let mut district = relay_core(&tree, 2, Upstream::Relay("jp-13".into()));
        let delivery = tree.delivery(&osaka, 1).to_json();
        let Outcome::Rejected(rejection) = district.on_delivery(&delivery, "jp-13", tree.later()) else {
            panic!("rejected")
        };
        assert_eq!(rejection.code, "scope_violation");
    }

    #[test]
    fn a_head_ahead_of_what_is_held_reports_the_gap() {
        let tree = Hierarchy::standard();
        let mut clinic = relay_core(&tree, 2, Upstream::Relay("jp-13".into()));
        let head = kairan_protocol::head::Head {
            origin: "mhlw".into(),
            seq: 3,
            digest: Some(kairan_protocol::Digest::of(b"third")),
            issued_at: tree.now,
            expires_at: tree.now.plus_secs(600),
        };
        let message = head.sign(&tree.origin_key, &tree.origin_cert).to_json();
        let HeadOutcome::Newer { missing, .. } = clinic.on_head(&message, "heads", tree.later()) else {
            panic!("newer head")
        };
        assert_eq!(missing, Some((1, 3)));
        assert!(matches!(clinic.on_head(&message, "heads", tree.later()), HeadOutcome::Known));
        assert_eq!(clinic.counters().gaps_reported, 1);
        assert_eq!(
            clinic.stale_heads(tree.now.plus_secs(601)).len(),
            1,
            "no fresher head: the feed is frozen"
        );
    }

    #[test]
    fn second_history_is_a_fork_and_a_jump_is_a_gap() {
        let tree = Hierarchy::standard();
        let mut national = relay_core(&tree, 0, Upstream::Ingest);
        let first = fixtures::sample_advisory("mhlw", 1, None);
        let first_digest = kairan_protocol::Digest::of(&first.to_payload());
        assert!(matches!(
            national.on_delivery(&tree.delivery(&first, 0).to_json(), "i", tree.later()),
            Outcome::Accepted(_)
        ));
        let mut other = first.clone();
        other.id = "different".into();
        assert!(matches!(
            national.on_delivery(&tree.delivery(&other, 0).to_json(), "i", tree.later()),
            Outcome::Fork(_)
        ));
        let ahead = fixtures::sample_advisory("mhlw", 4, Some(kairan_protocol::Digest::of(b"3")));
        let Outcome::Accepted(accepted) =
            national.on_delivery(&tree.delivery(&ahead, 0).to_json(), "i", tree.later())
        else {
            panic!("accepted")
        };
        assert_eq!(accepted.sequence, SeqDecision::Gap { from: 2, to: 3 });
        let _ = first_digest;
    }
}
