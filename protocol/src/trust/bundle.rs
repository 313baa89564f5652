//! The trust bundle: certificates, revocations and anchor rotations, each statement signed on
//! its own and verified on its own.
//!
//! Verifying a bundle ([`TrustBundle::verify`]) refuses it as a whole only when it is larger
//! than the limits; otherwise it returns the statements it accepts and those it refuses, each
//! with its reason:
//! 1. the rotations, in order, from the configured anchors: a chain, so a refused rotation
//!    refuses every later one;
//! 2. the certificates, as a pool (structure only; see `trust::evaluate`);
//! 3. each revocation's signature (`authenticate`);
//! 4. the authenticated revocations in a fixed order — root statements first, then relay
//!    statements by the depth of the revoker (shallowest first), then by `issued_at`, then by
//!    digest — each authorized against the revocations accepted before it, then counted against
//!    the limits. So a statement of a revoked relay fails whatever order the bundle lists it in.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::envelope::{ANCHORS_TYPE, Envelope};
use crate::error::{Error, Result};
use crate::keys::{Digest, KeyId};
use crate::limits::{
    MAX_BUNDLE_BYTES, MAX_BUNDLE_CERTS, MAX_MERGED_CERTS, MAX_MERGED_REVOCATIONS, MAX_RELAY_REVOCATIONS,
    MAX_REVOCATIONS, MAX_REVOCATIONS_PER_ISSUER, MAX_ROTATIONS, MAX_ROTATIONS_PIECE_BYTES,
};
use crate::time::Timestamp;
use crate::verified::{Verifiable, Verified};

use super::anchors::{AnchorRotation, TrustAnchors};
use super::evaluate::{Context, authenticate, authorize};
use super::revocation::{Revocation, RevocationSet};

/// The retained trust bundle (and each of its pieces): certificates, revocations and anchor
/// rotations, each signed on its own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustBundle {
    /// Certificates the statements need (revoked certificates, revokers' chains).
    #[serde(default)]
    pub certs: Vec<Envelope>,
    /// Revocation statements.
    #[serde(default)]
    pub revocations: Vec<Envelope>,
    /// Root-anchor rotations, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rotations: Vec<Envelope>,
}

/// Which kind of statement a refusal is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatementKind {
    /// A revocation (index into [`TrustBundle::revocations`]).
    Revocation,
    /// An anchor rotation (index into [`TrustBundle::rotations`]).
    Rotation,
}

/// A statement of the bundle that was refused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Revocation or rotation.
    pub kind: StatementKind,
    /// Its position in the bundle's list of that kind.
    pub index: usize,
    /// `sha256:` of its payload.
    pub id: Digest,
    /// Why (its [`Error::code`] is the reason code).
    pub error: Error,
}

/// A revocation statement the bundle verification accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedRevocation {
    /// `sha256:` of its payload: the statement's id (and its piece's).
    pub id: Digest,
    /// Its position in [`TrustBundle::revocations`].
    pub index: usize,
    /// The decoded statement.
    pub revocation: Revocation,
    /// Whether the root signed it (else the relay `revocation.issuer`).
    pub by_root: bool,
    /// The key of the revoked certificate.
    pub revoked_keyid: KeyId,
    /// The revoked certificate's `not_after` (it is pruned a grace period after it).
    pub revoked_not_after: Timestamp,
    /// The certificates it needs: indices into [`TrustBundle::certs`], ascending.
    pub certs: Vec<usize>,
}

/// What verifying a bundle established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleFacts {
    /// The anchors in force after the accepted rotations (the configured ones if none).
    pub anchors: TrustAnchors,
    /// How many rotations were accepted: always the first ones of the bundle's list.
    pub rotations: usize,
    /// The accepted revocations, in evaluation order.
    pub revocations: Vec<AcceptedRevocation>,
    /// The revoked certificates in force.
    pub revoked: RevocationSet,
    /// The refused statements: rotations, then revocations refused at authentication (in
    /// bundle order), then those refused at authorization (in evaluation order).
    pub refused: Vec<Refusal>,
}

impl Verifiable for TrustBundle {
    type Facts = BundleFacts;
}

impl TrustBundle {
    /// Parses bundle JSON, refusing oversize input first.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_BUNDLE_BYTES {
            return Err(Error::Oversize {
                what: "trust bundle",
                limit: MAX_BUNDLE_BYTES,
                actual: bytes.len(),
            });
        }
        let bundle: TrustBundle =
            serde_json::from_slice(bytes).map_err(|e| Error::MalformedEnvelope(e.to_string()))?;
        bundle.check_counts(MAX_BUNDLE_CERTS, MAX_REVOCATIONS)?;
        Ok(bundle)
    }

    fn check_counts(&self, certs: usize, revocations: usize) -> Result<()> {
        if self.certs.len() > certs {
            return Err(Error::TooManyCerts { count: self.certs.len(), limit: certs });
        }
        if self.revocations.len() > revocations {
            return Err(Error::Oversize {
                what: "revocations",
                limit: revocations,
                actual: self.revocations.len(),
            });
        }
        if self.rotations.len() > MAX_ROTATIONS {
            return Err(Error::Oversize {
                what: "rotations",
                limit: MAX_ROTATIONS,
                actual: self.rotations.len(),
            });
        }
        Ok(())
    }

    /// Compact JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The same bundle in canonical form: certificates and revocations each sorted by the
    /// digest of their payload, then by their JSON bytes, exact duplicates removed; rotations
    /// unchanged. Two bundles holding the same envelopes have the same canonical form.
    pub fn canonical(&self) -> TrustBundle {
        TrustBundle {
            certs: canonical_list(self.certs.iter()),
            revocations: canonical_list(self.revocations.iter()),
            rotations: self.rotations.clone(),
        }
    }

    /// The union of this bundle and `other`, in canonical form: every certificate and
    /// revocation envelope of either (exact envelopes: nothing is ever dropped because another
    /// envelope has the same payload); the rotations of `other` when they extend this bundle's,
    /// else this bundle's. Merging is commutative and associative for certificates and
    /// revocations. Verify the result before using it.
    pub fn merged(&self, other: &TrustBundle) -> TrustBundle {
        let rotations =
            if other.rotations.len() > self.rotations.len() && other.rotations.starts_with(&self.rotations) {
                other.rotations.clone()
            } else {
                self.rotations.clone()
            };
        TrustBundle {
            certs: canonical_list(self.certs.iter().chain(&other.certs)),
            revocations: canonical_list(self.revocations.iter().chain(&other.revocations)),
            rotations,
        }
    }

    /// Verifies every statement of the bundle on its own, from the configured anchors, at
    /// `now`. Refused as a whole only if it holds more than [`MAX_MERGED_CERTS`] certificates,
    /// [`MAX_MERGED_REVOCATIONS`] revocations or [`MAX_ROTATIONS`] rotations (a held bundle
    /// merged with an incoming one stays within these); otherwise the facts list what was
    /// accepted and what was refused.
    pub fn verify(self, configured: &TrustAnchors, now: Timestamp) -> Result<Verified<TrustBundle>> {
        self.check_counts(MAX_MERGED_CERTS, MAX_MERGED_REVOCATIONS)?;
        let mut refused = Vec::new();
        let (anchors, rotations) = self.verify_rotations(configured, now, &mut refused);
        let ctx = Context::new(&self.certs, &anchors, now);
        let mut signed = Vec::new();
        let mut refused_revocations = Vec::new();
        for (index, envelope) in self.revocations.iter().enumerate() {
            match authenticate(index, envelope, &ctx) {
                Ok(statement) => signed.push(statement),
                Err(error) => refused_revocations.push(Refusal {
                    kind: StatementKind::Revocation,
                    index,
                    id: Digest::of(&envelope.payload),
                    error,
                }),
            }
        }
        signed.sort_by(|a, b| {
            (a.rank, a.revocation.issued_at, a.id).cmp(&(b.rank, b.revocation.issued_at, b.id))
        });
        let mut revoked = RevocationSet::default();
        let mut accepted: Vec<AcceptedRevocation> = Vec::new();
        let mut seen: HashSet<Digest> = HashSet::new();
        let mut per_issuer: HashMap<String, usize> = HashMap::new();
        let mut relay_count = 0;
        for statement in signed {
            if seen.contains(&statement.id) {
                continue; // the same statement again, with other signatures: once is enough
            }
            let envelope = &self.revocations[statement.index];
            let by_root = statement.signer.is_none();
            let issuer = statement.revocation.issuer.clone();
            let outcome = authorize(&statement, envelope, &ctx, &revoked).and_then(|authorized| {
                let issued = per_issuer.get(&issuer).copied().unwrap_or_default();
                let limit = if accepted.len() >= MAX_REVOCATIONS {
                    Some(MAX_REVOCATIONS)
                } else if by_root {
                    None
                } else if relay_count >= MAX_RELAY_REVOCATIONS {
                    Some(MAX_RELAY_REVOCATIONS)
                } else {
                    (issued >= MAX_REVOCATIONS_PER_ISSUER).then_some(MAX_REVOCATIONS_PER_ISSUER)
                };
                match limit {
                    Some(limit) => Err(Error::TooManyRevocations { issuer: issuer.clone(), limit }),
                    None => Ok(authorized),
                }
            });
            match outcome {
                Ok(authorized) => {
                    seen.insert(statement.id);
                    if !by_root {
                        relay_count += 1;
                        *per_issuer.entry(issuer).or_default() += 1;
                    }
                    revoked.insert(statement.revocation.cert, authorized.revoked.clone());
                    accepted.push(AcceptedRevocation {
                        id: statement.id,
                        index: statement.index,
                        revocation: statement.revocation,
                        by_root,
                        revoked_keyid: authorized.revoked.keyid,
                        revoked_not_after: authorized.not_after,
                        certs: authorized.certs,
                    });
                }
                Err(error) => refused_revocations.push(Refusal {
                    kind: StatementKind::Revocation,
                    index: statement.index,
                    id: statement.id,
                    error,
                }),
            }
        }
        refused.extend(refused_revocations);
        let facts = BundleFacts { anchors, rotations, revocations: accepted, revoked, refused };
        Ok(Verified::new(self, facts))
    }

    /// The rotations as a chain from the configured anchors: each verified by the anchors in
    /// force before it, numbered in order, and the chain's piece within its size limit. The
    /// first refusal ends the chain. Returns the anchors in force and the number accepted.
    fn verify_rotations(
        &self,
        configured: &TrustAnchors,
        now: Timestamp,
        refused: &mut Vec<Refusal>,
    ) -> (TrustAnchors, usize) {
        let mut anchors = configured.clone();
        let mut accepted = 0;
        for (index, envelope) in self.rotations.iter().enumerate() {
            let id = Digest::of(&envelope.payload);
            let outcome = if accepted < index {
                Err(Error::UnknownSigner {
                    what: format!("anchor rotation {}: it follows a refused rotation", index + 1),
                    keyid: envelope.keyid_hints().next().unwrap_or_default().to_owned(),
                })
            } else {
                AnchorRotation::verify(envelope, &anchors, now).and_then(|(rotation, next)| {
                    if rotation.seq != index as u64 + 1 {
                        return Err(Error::MalformedPayload {
                            payload_type: ANCHORS_TYPE.into(),
                            reason: format!(
                                "rotation {} found where {} was expected",
                                rotation.seq,
                                index + 1
                            ),
                        });
                    }
                    let chain =
                        TrustBundle { rotations: self.rotations[..=index].to_vec(), ..Self::default() };
                    let size = chain.to_json().len();
                    if size > MAX_ROTATIONS_PIECE_BYTES {
                        return Err(Error::Oversize {
                            what: "anchor rotations",
                            limit: MAX_ROTATIONS_PIECE_BYTES,
                            actual: size,
                        });
                    }
                    Ok(next)
                })
            };
            match outcome {
                Ok(next) => {
                    anchors = next;
                    accepted += 1;
                }
                Err(error) => refused.push(Refusal { kind: StatementKind::Rotation, index, id, error }),
            }
        }
        (anchors, accepted)
    }
}

/// Sorted by payload digest then JSON bytes, exact duplicates removed.
fn canonical_list<'e>(envelopes: impl Iterator<Item = &'e Envelope>) -> Vec<Envelope> {
    let mut keyed: Vec<(Digest, Vec<u8>, &Envelope)> =
        envelopes.map(|e| (Digest::of(&e.payload), e.to_json(), e)).collect();
    keyed.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    keyed.dedup_by(|a, b| a.1 == b.1);
    keyed.into_iter().map(|(_, _, e)| e.clone()).collect()
}

impl Verified<TrustBundle> {
    /// The anchors in force.
    pub fn anchors(&self) -> &TrustAnchors {
        &self.facts().anchors
    }

    /// The revoked certificates in force.
    pub fn revoked(&self) -> &RevocationSet {
        &self.facts().revoked
    }

    /// The refused statements.
    pub fn refused(&self) -> &[Refusal] {
        &self.facts().refused
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::Hierarchy;

    #[test]
    fn counts_beyond_the_limits_refuse_the_whole_bundle() {
        let tree = Hierarchy::standard();
        let one = tree.root_revocation(&tree.origin_cert, tree.now).revocations[0].clone();
        let wire =
            TrustBundle { revocations: vec![one.clone(); MAX_REVOCATIONS + 1], ..TrustBundle::default() };
        assert_eq!(TrustBundle::from_json(&wire.to_json()).map_err(|e| e.code()), Err("oversize_input"));
        let merged =
            TrustBundle { revocations: vec![one; MAX_MERGED_REVOCATIONS + 1], ..TrustBundle::default() };
        assert_eq!(
            merged.verify(&tree.anchors, tree.now).map_err(|e| e.code()).err(),
            Some("oversize_input")
        );
        let certs = TrustBundle {
            certs: vec![tree.origin_cert.clone(); MAX_MERGED_CERTS + 1],
            ..TrustBundle::default()
        };
        assert_eq!(certs.verify(&tree.anchors, tree.now).map_err(|e| e.code()).err(), Some("too_many_certs"));
        let rotations = TrustBundle {
            rotations: vec![tree.origin_cert.clone(); MAX_ROTATIONS + 1],
            ..TrustBundle::default()
        };
        assert_eq!(TrustBundle::from_json(&rotations.to_json()).map_err(|e| e.code()), Err("oversize_input"));
    }

    #[test]
    fn merging_keeps_every_envelope_so_a_forged_twin_cannot_displace_a_statement() {
        let tree = Hierarchy::standard();
        let genuine = tree.root_revocation(&tree.origin_cert, tree.now);
        // The same payload with a broken signature, sorted wherever the bytes put it.
        let mut twin = genuine.clone();
        twin.revocations[0].signatures[0].sig[0] ^= 1;
        for merged in [genuine.merged(&twin), twin.merged(&genuine)] {
            assert_eq!(merged.revocations.len(), 2);
            let verified = merged.verify(&tree.anchors, tree.now).expect("bundle");
            assert_eq!(verified.facts().revocations.len(), 1);
            let codes: Vec<&str> = verified.refused().iter().map(|r| r.error.code()).collect();
            assert_eq!(codes, ["bad_signature"]);
        }
        assert_eq!(genuine.merged(&twin), twin.merged(&genuine), "merging is commutative");
        assert_eq!(genuine.merged(&genuine), genuine.canonical(), "and idempotent");
    }
}
