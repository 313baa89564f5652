//! Hostile input injected at random nodes, as someone with access to a broker would publish
//! it: forged advisories and hops (signed by uncertified keys), tampered advisories and hops
//! (signed bytes changed), genuine deliveries replayed where they do not belong, and an
//! origin equivocating (a second advisory for a sequence number already taken).
//!
//! Every forged, tampered or equivocating advisory digest goes into the run's `bad` set:
//! no node may ever store it. Misrouted and forged-hop inputs carry genuine advisories: they
//! must be rejected where injected, and the advisory still arrives the legitimate way.

use bytes::Bytes;
use rand::Rng;
use std::fmt;

use kairan_node::store::Store;
use kairan_node::topics;
use kairan_protocol::cert::ROOT_ISSUER;
use kairan_protocol::envelope::ADVISORY_TYPE;
use kairan_protocol::fixtures::sample_advisory;
use kairan_protocol::{Certificate, Delivery, Digest, Envelope, Hop, Role, Scope};

use super::tree::{Level, derive_key};
use super::world::{Msg, Sim, Tag};

/// What the adversary does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AttackKind {
    /// An advisory signed by an uncertified key (with a certificate from rogue roots, or
    /// with the genuine origin certificate).
    ForgedOrigin,
    /// A genuine advisory with a hop signed by an uncertified key posing as the parent.
    ForgedRelay,
    /// A genuine delivery whose advisory payload was changed.
    TamperedAdvisory,
    /// A genuine delivery whose last hop payload was changed.
    TamperedHop,
    /// A genuine delivery, validly relayed, replayed at a node it is not for.
    Misrouted,
    /// The origin key signs a second advisory for a sequence number the national node holds.
    Equivocation,
}

impl AttackKind {
    /// Whether the input carries a genuine advisory (only its hops or route are wrong).
    pub fn carries_genuine(self) -> bool {
        matches!(self, AttackKind::ForgedRelay | AttackKind::TamperedHop | AttackKind::Misrouted)
    }
}

impl fmt::Display for AttackKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AttackKind::ForgedOrigin => "forged-origin",
            AttackKind::ForgedRelay => "forged-relay",
            AttackKind::TamperedAdvisory => "tampered-advisory",
            AttackKind::TamperedHop => "tampered-hop",
            AttackKind::Misrouted => "misrouted",
            AttackKind::Equivocation => "equivocation",
        })
    }
}

/// A planned attack (its kind may fall back to `ForgedOrigin` when what it needs, e.g. a
/// stored delivery to tamper with, does not exist yet at injection time).
#[derive(Debug, Clone)]
pub struct Attack {
    /// Kind.
    pub kind: AttackKind,
    /// Node it is injected at.
    pub target: usize,
    /// Simulated time.
    pub at: u64,
}

const KINDS: [AttackKind; 6] = [
    AttackKind::ForgedOrigin,
    AttackKind::ForgedRelay,
    AttackKind::TamperedAdvisory,
    AttackKind::TamperedHop,
    AttackKind::Misrouted,
    AttackKind::Equivocation,
];

impl Sim {
    pub(super) fn plan_attack(&mut self, window: u64) -> Attack {
        let kind = KINDS[self.rng.gen_range(0..KINDS.len())];
        let target = if kind == AttackKind::Equivocation { 0 } else { self.random_node() };
        let at = self.rng.gen_range(0..window);
        Attack { kind, target, at }
    }

    /// Builds attack `index` against the current state and sends it to its target.
    pub(super) fn inject(&mut self, index: usize) {
        let Attack { kind, target, .. } = self.attacks[index].clone();
        let built = match kind {
            AttackKind::ForgedOrigin => None,
            AttackKind::ForgedRelay => self.forged_relay(target),
            AttackKind::TamperedAdvisory => self.tampered_advisory(target),
            AttackKind::TamperedHop => self.tampered_hop(target),
            AttackKind::Misrouted => self.misrouted(target),
            AttackKind::Equivocation => self.equivocation(),
        };
        let (delivery, bad) = match built {
            Some(built) => built,
            None => {
                self.attacks[index].kind = AttackKind::ForgedOrigin;
                self.forged_origin(target)
            }
        };
        self.log(target, || {
            format!("attack #{index}: {kind} planned, {} injected", self.attacks[index].kind)
        });
        if let Some(bad) = bad {
            self.bad.insert(bad);
        }
        self.stats.attacks_sent += 1;
        let payload = Bytes::from(delivery.to_json());
        // Published where the target reads: its parent's broker, on the topic of its own scope
        // (or the national ingest), whatever the delivery inside says.
        let topic = match self.nodes[target].parent {
            Some(parent) => topics::deliveries(&self.nodes[parent].id, &self.nodes[target].scope.to_string()),
            None => topics::ingest_of(&self.nodes[0].id, &self.tree.origins[0].id),
        };
        self.send(target, target, Msg::Publish { topic, payload, tag: Tag::Injected(index), qos1: true });
    }

    /// Genuine advisories already published, preferring those in `target`'s scope.
    fn published_for(&mut self, target: usize) -> Option<usize> {
        let scope = self.nodes[target].scope.clone();
        let published: Vec<usize> =
            (0..self.tree.genuine.len()).filter(|g| self.tree.genuine[*g].publish_at <= self.now).collect();
        let in_scope: Vec<usize> =
            published.iter().copied().filter(|g| self.tree.genuine[*g].scope.overlaps(&scope)).collect();
        let pool = if in_scope.is_empty() { published } else { in_scope };
        (!pool.is_empty()).then(|| pool[self.rng.gen_range(0..pool.len())])
    }

    /// The delivery of genuine advisory `g` as `target`'s parent stored (and forwarded) it,
    /// or as published when the target is the national node or its parent does not hold it.
    fn as_delivered(&self, target: usize, g: usize) -> Delivery {
        let digest = self.tree.genuine[g].digest;
        self.nodes[target]
            .parent
            .and_then(|parent| self.nodes[parent].store.get(&digest).ok().flatten())
            .and_then(|r| Delivery::from_json(&r.delivery).ok())
            .unwrap_or_else(|| self.tree.genuine[g].ingest.clone())
    }

    fn forged_origin(&mut self, target: usize) -> (Delivery, Option<Digest>) {
        let origin = self.rng.gen_range(0..self.tree.origins.len());
        let origin_id = self.tree.origins[origin].id.clone();
        let rogue = derive_key(self.seed, "rogue-origin");
        let with_rogue_roots = self.rng.gen_bool(0.5);
        let cert = if with_rogue_roots {
            let roots = [derive_key(self.seed, "rogue-root-1"), derive_key(self.seed, "rogue-root-2")];
            Certificate {
                serial: format!("root-origin-{origin_id}"),
                issuer: ROOT_ISSUER.into(),
                subject: origin_id.clone(),
                key: rogue.public().clone(),
                roles: vec![Role::Origin],
                scope: Scope::parse("jp").unwrap_or_else(|e| panic!("{e}")),
                not_before: self.tree.not_before,
                not_after: self.tree.not_after,
            }
            .sign(&[&roots[0], &roots[1]])
        } else {
            self.tree.origins[origin].cert.clone()
        };
        let seq = self.rng.gen_range(1..=self.tree.genuine.len() as u64 + 1);
        let mut advisory = sample_advisory(&origin_id, seq, None);
        advisory.id = format!("forged-{}-{}", self.now, self.stats.attacks_sent);
        advisory.scope = self.nodes[target].scope.clone();
        advisory.issued_at = self.local_now(target).plus_secs(-1);
        advisory.expires_at = advisory.issued_at.plus_secs(30 * 24 * 3600);
        let envelope = Envelope::sign(ADVISORY_TYPE, advisory.to_payload(), &[&rogue]);
        let digest = Digest::of(&envelope.payload);
        (Delivery { advisory: envelope, certs: vec![cert], hops: Vec::new() }, Some(digest))
    }

    fn forged_relay(&mut self, target: usize) -> Option<(Delivery, Option<Digest>)> {
        let g = self.published_for(target)?;
        let genuine = &self.tree.genuine[g];
        let rogue = derive_key(self.seed, "rogue-relay");
        let (subject, issuer, scope) = match self.nodes[target].parent {
            Some(parent) => {
                let issuer =
                    self.nodes[parent].parent.map_or(ROOT_ISSUER.to_owned(), |p| self.nodes[p].id.clone());
                (self.nodes[parent].id.clone(), issuer, self.nodes[parent].scope.clone())
            }
            None => ("jp".to_owned(), ROOT_ISSUER.to_owned(), self.nodes[0].scope.clone()),
        };
        let cert = Certificate {
            serial: format!("{issuer}-{subject}"),
            issuer,
            subject: subject.clone(),
            key: rogue.public().clone(),
            roles: vec![Role::Relay],
            scope,
            not_before: self.tree.not_before,
            not_after: self.tree.not_after,
        }
        .sign(&[&rogue]);
        let now = self.local_now(target);
        let hop = Hop {
            advisory: genuine.digest,
            relay: subject,
            keyid: rogue.keyid().clone(),
            upstream: genuine.origin_id.clone(),
            received_at: now,
            forwarded_at: now,
            relay_seq: 1,
            prev: genuine.digest,
        };
        let mut delivery = genuine.ingest.clone();
        delivery.certs.push(cert);
        delivery.hops.push(hop.sign(&rogue));
        Some((delivery, None))
    }

    fn tampered_advisory(&mut self, target: usize) -> Option<(Delivery, Option<Digest>)> {
        let g = self.published_for(target)?;
        let mut delivery = self.as_delivered(target, g);
        let mut payload: serde_json::Value = serde_json::from_slice(&delivery.advisory.payload).ok()?;
        payload["id"] = serde_json::Value::String(format!("tampered-{}", self.now));
        delivery.advisory.payload = serde_json::to_vec(&payload).ok()?;
        let digest = Digest::of(&delivery.advisory.payload);
        Some((delivery, Some(digest)))
    }

    fn tampered_hop(&mut self, target: usize) -> Option<(Delivery, Option<Digest>)> {
        let g = self.published_for(target)?;
        let mut delivery = self.as_delivered(target, g);
        let last = delivery.hops.last_mut()?;
        let mut payload: serde_json::Value = serde_json::from_slice(&last.payload).ok()?;
        payload["relay_seq"] = serde_json::Value::from(999_999u64);
        last.payload = serde_json::to_vec(&payload).ok()?;
        Some((delivery, None))
    }

    fn misrouted(&mut self, target: usize) -> Option<(Delivery, Option<Digest>)> {
        let parent = self.nodes[target].parent;
        let sources: Vec<usize> = (0..self.tree.first_clinic)
            .filter(|r| Some(*r) != parent && *r != target && !self.nodes[*r].store.is_empty())
            .collect();
        if sources.is_empty() {
            return None;
        }
        let relay = sources[self.rng.gen_range(0..sources.len())];
        debug_assert!(self.nodes[relay].level != Level::Clinic);
        let log = self.nodes[relay].store.all().ok()?;
        let record = &log[self.rng.gen_range(0..log.len())];
        let delivery = Delivery::from_json(&record.delivery).ok()?;
        Some((delivery, None))
    }

    fn equivocation(&mut self) -> Option<(Delivery, Option<Digest>)> {
        let held: Vec<usize> = (0..self.tree.genuine.len())
            .filter(|g| self.nodes[0].holds_durably(&self.tree.genuine[*g].digest))
            .collect();
        if held.is_empty() {
            return None;
        }
        let g = held[self.rng.gen_range(0..held.len())];
        let genuine = &self.tree.genuine[g];
        let mut advisory = genuine.advisory.clone();
        advisory.id = format!("{}-equivocation", advisory.id);
        let origin = &self.tree.origins[genuine.origin];
        let envelope = Envelope::sign(ADVISORY_TYPE, advisory.to_payload(), &[&origin.key]);
        let digest = Digest::of(&envelope.payload);
        Some((
            Delivery { advisory: envelope, certs: vec![origin.cert.clone()], hops: Vec::new() },
            Some(digest),
        ))
    }
}
