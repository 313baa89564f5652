//! Deciding about one delivery: verification against the trust in force, routing (scope and
//! the hop it must arrive with), deduplication, the origin's sequence rules, and — for a
//! relay — the hop attestation and the record to store and forward.
//!
//! [`Holdings`] is what a node must remember to decide: the digests it holds, the head of
//! each chain (origin, scope), and the last relay_seq it assigned. It is committed to at decision time; the
//! machine makes the decision durable before anything leaves the node, and a node that
//! cannot persist stops and is rebuilt from its store.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;

use kairan_protocol::sequence::{ChainHead, ChainId, SeqDecision, classify};
use kairan_protocol::{
    Certificate, Delivery, Digest, Envelope, Error, HopInput, RevocationSet, Scope, SecretKey, Timestamp,
    TrustAnchors, Verified, VerifyContext, attest, verify_delivery,
};

use super::io::Accepted;
use crate::store::{ForkRecord, Rejection, RestoredState, StoredDelivery};

/// Where a node's input must come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// The national node's ingest topic: deliveries as published by origins, with no hop.
    Ingest,
    /// A parent relay (its id): the last hop must be the parent's.
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
    /// The certificates of the relays above this one, up to a root-issued one: sent with
    /// every signed catch-up page so a child can check the page's signer up to the anchors
    /// (the machine also learns them from the deliveries it accepts).
    pub chain: Vec<Envelope>,
}

/// What a node is, for deciding.
#[derive(Debug)]
pub struct Identity {
    /// This node's id (relay id or clinic id).
    pub id: String,
    /// This node's certified scope.
    pub scope: Scope,
    /// Where input must come from.
    pub upstream: Upstream,
    /// Present for a relay; absent for a clinic.
    pub attester: Option<Attester>,
}

/// What was decided about one delivery.
#[derive(Debug)]
pub enum Decision {
    /// Verified and new: store, then acknowledge and forward / show.
    Accepted(Box<Accepted>),
    /// Already held: acknowledge, nothing else.
    Duplicate(Digest),
    /// Refused: record the rejection, acknowledge, never forward.
    Rejected(Rejection),
    /// Verified, but a second history of its origin: keep for audit, alarm, never forward.
    Fork(Box<ForkRecord>),
    /// This relay cannot attest now (its own certificate is expired or not yet valid): do not
    /// acknowledge; the broker redelivers once the certificate is renewed.
    Held(String),
    /// Refused only because of this node's clock (something not valid *yet*): hold and try
    /// again; if it is still refused after a while, the prepared rejection is final.
    NotYet(Rejection),
}

/// What a node holds, in memory, to decide.
#[derive(Debug, Default)]
pub struct Holdings {
    held: HashSet<Digest>,
    held_at: HashMap<(ChainId, u64), Digest>,
    heads: HashMap<ChainId, ChainHead>,
    last_relay_seq: u64,
}

impl Holdings {
    /// What `state` holds.
    pub fn restore(state: &RestoredState) -> Self {
        let mut holdings = Holdings {
            heads: state.heads.iter().cloned().collect(),
            last_relay_seq: state.last_relay_seq,
            ..Holdings::default()
        };
        for (chain, seq, digest) in &state.held {
            holdings.held.insert(*digest);
            holdings.held_at.insert((chain.clone(), *seq), *digest);
        }
        holdings
    }

    /// Whether a digest is held.
    pub fn holds(&self, digest: &Digest) -> bool {
        self.held.contains(digest)
    }

    /// The head of a chain.
    pub fn head(&self, chain: &ChainId) -> Option<ChainHead> {
        self.heads.get(chain).copied()
    }

    /// Last relay sequence number assigned.
    pub fn last_relay_seq(&self) -> u64 {
        self.last_relay_seq
    }

    /// Number of deliveries held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Decides about delivery bytes that arrived from `source` at `now`.
    pub fn decide(
        &mut self,
        identity: &Identity,
        anchors: &TrustAnchors,
        revocations: &RevocationSet,
        bytes: &Bytes,
        source: &str,
        now: Timestamp,
    ) -> Decision {
        // A cheap check before any signature work: a copy of an advisory already held (a
        // redelivery, or a sibling replaying it) is a duplicate whatever its hops.
        if let Ok(delivery) = Delivery::from_json(bytes) {
            let claimed = delivery.claimed_digest();
            if self.held.contains(&claimed) {
                return Decision::Duplicate(claimed);
            }
        }
        if let Some(attester) = &identity.attester {
            if let Err(error) =
                Certificate::decode(&attester.cert.payload).and_then(|cert| cert.check_validity(now))
            {
                return Decision::Held(format!("own certificate unusable: {error}"));
            }
        }
        let ctx = VerifyContext { anchors, revocations, now };
        let verified = match verify_delivery(bytes, ctx).and_then(|v| check_route(identity, v)) {
            Ok(verified) => verified,
            Err(error) if error.is_clock_dependent() => {
                return Decision::NotYet(rejection(bytes, source, now, &error));
            }
            Err(error) => return Decision::Rejected(rejection(bytes, source, now, &error)),
        };
        let digest = verified.digest();
        if self.held.contains(&digest) {
            return Decision::Duplicate(digest);
        }
        let advisory = verified.advisory();
        // Sequence numbers count within the advisory's chain (origin, exact scope).
        let (chain, seq) = (advisory.chain(), advisory.seq);
        let held_at_seq = self.held_at.get(&(chain.clone(), seq)).copied();
        let sequence = classify(self.heads.get(&chain).copied(), seq, advisory.prev, digest, held_at_seq);
        if let SeqDecision::Fork { seq: contested } = sequence {
            return Decision::Fork(Box::new(ForkRecord {
                digest,
                origin: chain.origin.clone(),
                scope: chain.scope.to_string(),
                seq: contested,
                held: self.held_at.get(&(chain, contested)).copied(),
                at: now,
                delivery: String::from_utf8_lossy(bytes).into_owned(),
            }));
        }
        let relay_seq = self.last_relay_seq + 1;
        let stored = match &identity.attester {
            Some(attester) => Bytes::from(forwarded(identity, attester, &verified, relay_seq, now)),
            None => bytes.clone(),
        };
        let record = StoredDelivery {
            digest,
            origin: chain.origin.clone(),
            seq,
            scope: advisory.scope.to_string(),
            relay_seq,
            received_at: now,
            delivery: stored,
        };
        self.last_relay_seq = relay_seq;
        self.held.insert(digest);
        self.held_at.insert((chain.clone(), seq), digest);
        if !matches!(sequence, SeqDecision::Backfill) {
            self.heads.insert(chain, ChainHead { seq, digest });
        }
        Decision::Accepted(Box::new(Accepted { record, verified, sequence, source: source.to_owned() }))
    }
}

/// The delivery as this relay forwards it: its hop attestation added, and its extra
/// certificates after a key rotation.
fn forwarded(
    identity: &Identity,
    attester: &Attester,
    verified: &Verified<Delivery>,
    relay_seq: u64,
    now: Timestamp,
) -> Vec<u8> {
    let hop = HopInput {
        relay_id: &identity.id,
        relay_key: &attester.key,
        relay_cert: &attester.cert,
        received_at: now,
        forwarded_at: now,
        relay_seq,
    };
    let mut forwarded = attest(verified, &hop);
    for extra in &attester.extra_certs {
        if !forwarded.certs.contains(extra) {
            forwarded.certs.push(extra.clone());
        }
    }
    forwarded.to_json()
}

/// Routing checks on top of verification: the delivery concerns this node's scope and came
/// the way it must (from ingest with no hop, or with the parent's hop last).
fn check_route(identity: &Identity, verified: Verified<Delivery>) -> Result<Verified<Delivery>, Error> {
    let advisory_scope = &verified.advisory().scope;
    if !identity.scope.overlaps(advisory_scope) {
        return Err(Error::ScopeViolation {
            what: format!("advisory delivered to {}, whose scope does not overlap it", identity.id),
            scope: advisory_scope.to_string(),
            allowed: identity.scope.to_string(),
        });
    }
    let hop_count = verified.facts().hops.len();
    let last_relay = verified.hops().last().map(|hop| hop.relay.clone());
    match (&identity.upstream, last_relay) {
        (Upstream::Ingest, None) => Ok(verified),
        (Upstream::Ingest, Some(relay)) => Err(Error::BrokenHopChain {
            index: hop_count - 1,
            reason: format!("ingest takes deliveries as published, this one was already relayed by {relay}"),
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

/// The record of a refused input.
pub fn rejection(bytes: &[u8], source: &str, now: Timestamp, error: &Error) -> Rejection {
    Rejection {
        at: now,
        claimed_digest: Delivery::from_json(bytes).ok().map(|d| d.claimed_digest()),
        code: error.code().to_owned(),
        message: error.to_string(),
        source: source.to_owned(),
        size: bytes.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kairan_protocol::fixtures::{self, Hierarchy};

    fn identity(tree: &Hierarchy, index: usize, upstream: Upstream) -> Identity {
        let relay = &tree.relays[index];
        Identity {
            id: relay.id.clone(),
            scope: relay.scope.clone(),
            upstream,
            attester: Some(Attester {
                key: SecretKey::from_hex(&relay.key.to_hex()).expect("key"),
                cert: relay.cert.clone(),
                extra_certs: Vec::new(),
                chain: Vec::new(),
            }),
        }
    }

    fn decide(
        holdings: &mut Holdings,
        who: &Identity,
        tree: &Hierarchy,
        bytes: Vec<u8>,
        at: Timestamp,
    ) -> Decision {
        holdings.decide(who, &tree.anchors, &RevocationSet::default(), &Bytes::from(bytes), "t", at)
    }

    #[test]
    fn national_accepts_attests_and_dedups() {
        let tree = Hierarchy::standard();
        let national = identity(&tree, 0, Upstream::Ingest);
        let mut held = Holdings::default();
        let advisory = fixtures::sample_advisory("mhlw", 1, None);
        let bytes = tree.delivery(&advisory, 0).to_json();
        let Decision::Accepted(accepted) =
            decide(&mut held, &national, &tree, bytes.clone(), tree.now.plus_secs(1))
        else {
            panic!("accepted")
        };
        assert_eq!(accepted.record.relay_seq, 1);
        // The forwarded delivery verifies downstream with the national hop on it.
        let prefecture = identity(&tree, 1, Upstream::Relay("jp".into()));
        let outcome = decide(
            &mut Holdings::default(),
            &prefecture,
            &tree,
            accepted.record.delivery.to_vec(),
            tree.now.plus_secs(2),
        );
        assert!(matches!(outcome, Decision::Accepted(_)), "{outcome:?}");
        assert!(matches!(
            decide(&mut held, &national, &tree, bytes, tree.now.plus_secs(3)),
            Decision::Duplicate(_)
        ));
        assert_eq!((held.len(), held.last_relay_seq()), (1, 1));
    }

    #[test]
    fn wrong_upstream_and_out_of_scope_are_rejected() {
        let tree = Hierarchy::standard();
        let advisory = fixtures::sample_advisory("mhlw", 1, None);
        // A delivery that skipped the national relay, injected at the prefecture.
        let prefecture = identity(&tree, 1, Upstream::Relay("jp".into()));
        let Decision::Rejected(rejection) = decide(
            &mut Holdings::default(),
            &prefecture,
            &tree,
            tree.delivery(&advisory, 0).to_json(),
            tree.later(),
        ) else {
            panic!("rejected")
        };
        assert_eq!(rejection.code, "broken_hop_chain");
        // An Osaka advisory offered to Tokyo's district.
        let mut osaka = fixtures::sample_advisory("mhlw", 1, None);
        osaka.scope = Scope::parse("jp/27").expect("scope");
        let district = identity(&tree, 2, Upstream::Relay("jp-13".into()));
        let Decision::Rejected(rejection) = decide(
            &mut Holdings::default(),
            &district,
            &tree,
            tree.delivery(&osaka, 1).to_json(),
            tree.later(),
        ) else {
            panic!("rejected")
        };
        assert_eq!(rejection.code, "scope_violation");
    }

    #[test]
    fn second_history_is_a_fork_and_a_jump_is_a_gap() {
        let tree = Hierarchy::standard();
        let national = identity(&tree, 0, Upstream::Ingest);
        let mut held = Holdings::default();
        let first = fixtures::sample_advisory("mhlw", 1, None);
        let first_bytes = tree.delivery(&first, 0).to_json();
        assert!(matches!(
            decide(&mut held, &national, &tree, first_bytes, tree.later()),
            Decision::Accepted(_)
        ));
        let mut other = first.clone();
        other.id = "different".into();
        let fork = decide(&mut held, &national, &tree, tree.delivery(&other, 0).to_json(), tree.later());
        assert!(matches!(fork, Decision::Fork(_)), "{fork:?}");
        let ahead = fixtures::sample_advisory("mhlw", 4, Some(Digest::of(b"3")));
        let Decision::Accepted(accepted) =
            decide(&mut held, &national, &tree, tree.delivery(&ahead, 0).to_json(), tree.later())
        else {
            panic!("accepted")
        };
        assert_eq!(accepted.sequence, SeqDecision::Gap { from: 2, to: 3 });
    }

    #[test]
    fn each_scope_is_its_own_chain() {
        let tree = Hierarchy::standard();
        let national = identity(&tree, 0, Upstream::Ingest);
        let mut held = Holdings::default();
        let scoped = |scope: &str, seq: u64, prev: Option<Digest>| {
            let mut advisory = fixtures::sample_advisory("mhlw", seq, prev);
            advisory.scope = Scope::parse(scope).expect("scope");
            advisory.id = format!("{scope}-{seq}");
            advisory
        };
        // Seq 1 of two chains: both first links, no gap and no fork between them.
        for scope in ["jp/13", "jp/27"] {
            let Decision::Accepted(accepted) = decide(
                &mut held,
                &national,
                &tree,
                tree.delivery(&scoped(scope, 1, None), 0).to_json(),
                tree.later(),
            ) else {
                panic!("accepted")
            };
            assert_eq!(accepted.sequence, SeqDecision::Accept, "{scope}");
        }
        let jp13 = held.head(&ChainId::new("mhlw", Scope::parse("jp/13").expect("scope"))).expect("head");
        let next = scoped("jp/13", 2, Some(jp13.digest));
        let Decision::Accepted(accepted) =
            decide(&mut held, &national, &tree, tree.delivery(&next, 0).to_json(), tree.later())
        else {
            panic!("accepted")
        };
        assert_eq!(accepted.sequence, SeqDecision::Accept);
        // Seq 3 of jp/27 after its 1: the gap is 2 of that chain.
        let Decision::Accepted(accepted) = decide(
            &mut held,
            &national,
            &tree,
            tree.delivery(&scoped("jp/27", 3, Some(Digest::of(b"2"))), 0).to_json(),
            tree.later(),
        ) else {
            panic!("accepted")
        };
        assert_eq!(accepted.sequence, SeqDecision::Gap { from: 2, to: 2 });
    }

    #[test]
    fn an_expired_own_certificate_holds_input() {
        let tree = Hierarchy::standard();
        let national = identity(&tree, 0, Upstream::Ingest);
        let advisory = fixtures::sample_advisory("mhlw", 1, None);
        let long_after = tree.now.plus_secs(400 * 24 * 3600);
        let outcome = decide(
            &mut Holdings::default(),
            &national,
            &tree,
            tree.delivery(&advisory, 0).to_json(),
            long_after,
        );
        assert!(matches!(outcome, Decision::Held(_)), "{outcome:?}");
    }
}
