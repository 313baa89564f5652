//! Hostile members: a district volunteer's server taken over, a clinic PC with malware, a
//! leaked broker password. Unlike the adversary of `adversary.rs` (crafted deliveries), a
//! hostile member uses what a member can publish on its broker: floods of junk (the target
//! must throttle, record every refusal, lose nothing genuine), forged heads, junk trust
//! bundles, and bursts of bogus catch-up requests at its parent (rate limits).

use std::fmt;

use bytes::Bytes;
use rand::Rng;

use kairan_node::topics;
use kairan_protocol::head::Head;
use kairan_protocol::sequence::ChainId;
use kairan_protocol::{Revocation, TrustBundle};

use super::tree::{EPOCH, derive_key};
use super::world::{Msg, Sim, Tag};

/// Junk messages in one flood: more than the refusal burst, so that the target throttles.
const FLOOD: usize = 300;
/// Catch-up requests in one burst of bogus requests.
const REQUEST_BURST: usize = 120;

/// What a hostile member does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum HostileKind {
    /// Junk on the target's input topic, faster than it may refuse it.
    Flood,
    /// A head of a genuine origin, signed by a key that origin never had.
    ForgedHead,
    /// A trust bundle revoking a genuine origin, signed by no one who may.
    JunkTrust,
    /// A burst of catch-up requests at a relay: malformed, huge cursors, too many.
    BogusRequests,
    /// A member tries every topic outside its rows on its parent's broker (`member.rs`).
    Overreach,
    /// A member asks its parent for the whole country's log.
    ScopeGrab,
    /// A member answers a sibling's catch-up request with a forged page.
    ForgedPage,
    /// A relay certifies an origin's key under its own name and revokes the origin.
    MintedRevocation,
}

impl fmt::Display for HostileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HostileKind::Flood => "hostile-flood",
            HostileKind::ForgedHead => "hostile-forged-head",
            HostileKind::JunkTrust => "hostile-junk-trust",
            HostileKind::BogusRequests => "hostile-bogus-requests",
            HostileKind::Overreach => "hostile-member-overreach",
            HostileKind::ScopeGrab => "hostile-member-scope-grab",
            HostileKind::ForgedPage => "hostile-member-forged-page",
            HostileKind::MintedRevocation => "hostile-member-minted-revocation",
        })
    }
}

/// A planned hostile move.
#[derive(Debug, Clone)]
pub struct HostileMove {
    /// Kind.
    pub kind: HostileKind,
    /// The node it is aimed at.
    pub target: usize,
    /// Simulated time.
    pub at: u64,
}

const KINDS: [HostileKind; 8] = [
    HostileKind::Flood,
    HostileKind::ForgedHead,
    HostileKind::JunkTrust,
    HostileKind::BogusRequests,
    HostileKind::Overreach,
    HostileKind::ScopeGrab,
    HostileKind::ForgedPage,
    HostileKind::MintedRevocation,
];

impl Sim {
    pub(super) fn plan_hostile(&mut self, window: u64) -> HostileMove {
        let kind = KINDS[self.rng.gen_range(0..KINDS.len())];
        let target = match kind {
            // A relay (one with children): levels national, prefecture, district.
            HostileKind::BogusRequests => {
                let level = self.rng.gen_range(0..3usize);
                self.node_at_level(level)
            }
            // A member of some broker: any node but the national.
            HostileKind::Overreach | HostileKind::ScopeGrab | HostileKind::ForgedPage => {
                let level = self.rng.gen_range(1..4usize);
                self.node_at_level(level)
            }
            // A relay below the national: a prefecture or a district.
            HostileKind::MintedRevocation => {
                let level = self.rng.gen_range(1..3usize);
                self.node_at_level(level)
            }
            _ => self.random_node(),
        };
        let at = self.rng.gen_range(0..window);
        HostileMove { kind, target, at }
    }

    /// The topics a hostile member publishes on to reach `target`'s input.
    fn input_topics(&self, target: usize) -> (String, String, String) {
        match self.nodes[target].parent {
            None => {
                let id = &self.nodes[0].id;
                (topics::ingest_of(id, "mhlw"), topics::ingest_heads_of(id, "mhlw"), topics::control(id))
            }
            Some(parent) => {
                let parent_id = &self.nodes[parent].id;
                let scope = self.nodes[target].scope.to_string();
                (
                    topics::deliveries(parent_id, &scope),
                    topics::heads(parent_id, &ChainId::new("mhlw", self.nodes[target].scope.clone())),
                    topics::trust(parent_id),
                )
            }
        }
    }

    pub(super) fn hostile_move(&mut self, number: usize) {
        let HostileMove { kind, target, .. } = self.hostile[number].clone();
        self.stats.hostile_moves += 1;
        self.log(target, || format!("hostile move #{number}: {kind}"));
        let (deliveries, heads, trust) = self.input_topics(target);
        let tag = Tag::Hostile(number);
        match kind {
            HostileKind::Overreach => self.overreach(target),
            HostileKind::ScopeGrab => self.scope_grab(target),
            HostileKind::ForgedPage => self.forged_page(target, number),
            HostileKind::MintedRevocation => self.minted_revocation(target, number),
            HostileKind::Flood => {
                for n in 0..FLOOD {
                    let payload = Bytes::from(format!("{{\"junk\":{n}}}"));
                    self.send(
                        target,
                        target,
                        Msg::Publish { topic: deliveries.clone(), payload, tag, qos1: true },
                    );
                }
            }
            HostileKind::ForgedHead => {
                let origin = &self.tree.origins[0];
                let rogue = derive_key(self.seed, "rogue-head");
                let now = EPOCH.plus_ms(self.now as i64);
                // Of a chain the target is entitled to (its own scope): refused for its
                // signature, not dropped for its scope.
                let head = Head {
                    origin: origin.id.clone(),
                    scope: self.nodes[target].scope.clone(),
                    seq: 1_000,
                    digest: Some(kairan_protocol::Digest::of(b"nothing")),
                    issued_at: now,
                    expires_at: now.plus_secs(3600),
                };
                let payload = Bytes::from(head.sign(&rogue, &origin.cert).to_json());
                self.send(target, target, Msg::Publish { topic: heads, payload, tag, qos1: true });
            }
            HostileKind::JunkTrust => {
                let origin = &self.tree.origins[0];
                let rogue = derive_key(self.seed, "rogue-revoker");
                let now = EPOCH.plus_ms(self.now as i64);
                let revocation = Revocation {
                    cert: kairan_protocol::Digest::of(&origin.cert.payload),
                    subject: origin.id.clone(),
                    issuer: "root".into(),
                    seq: 99,
                    issued_at: now,
                    effective_at: EPOCH.plus_secs(-3600),
                    reason: "hostile".into(),
                }
                .sign(&[&rogue]);
                let bundle = TrustBundle {
                    certs: vec![origin.cert.clone()],
                    revocations: vec![revocation],
                    ..TrustBundle::default()
                };
                let payload = Bytes::from(bundle.to_json());
                self.send(target, target, Msg::Publish { topic: trust, payload, tag, qos1: true });
            }
            HostileKind::BogusRequests => {
                let Some(&child) = self.nodes[target].children.first() else { return };
                let topic = topics::sync_request(&self.nodes[target].id, &self.nodes[child].id);
                // In the child's own scope: asking for another scope is the authorization
                // issue's move (a catch-up answer bound to the member's certificate).
                let scope = self.nodes[child].scope.to_string();
                for n in 0..REQUEST_BURST {
                    let payload = match n % 3 {
                        0 => Bytes::from_static(b"{\"after\":"),
                        1 => Bytes::from(format!(
                            "{{\"after\":{},\"scope\":\"{scope}\",\"limit\":512}}",
                            u64::MAX - 1
                        )),
                        _ => Bytes::from(format!("{{\"after\":{n},\"scope\":\"{scope}\",\"limit\":512}}")),
                    };
                    self.send(target, child, Msg::FromChild { topic: topic.clone(), payload });
                }
            }
        }
    }
}
