//! Keeping a verified bundle small: pruning what no longer matters, and cutting it into
//! self-contained pieces that each fit one MQTT packet.
//!
//! A **piece** is itself a [`TrustBundle`]: one accepted revocation with exactly the
//! certificates it needs, or the accepted anchor rotations alone. Every piece also carries the
//! accepted rotations (everything root-signed in it is checked against the anchors they put in
//! force), so each piece verifies on its own from the configured anchors. A piece's id is the
//! digest of the statement it carries (the revocation's payload; for the rotations piece, the
//! last rotation's payload), so the same statement has the same id whichever node cut it.
//! Merging every piece, in any order, gives the bundle back (in canonical form).

use crate::keys::Digest;
use crate::limits::REVOCATION_GRACE_MS;
use crate::time::Timestamp;
use crate::verified::Verified;

use super::bundle::{AcceptedRevocation, BundleFacts, TrustBundle};
use super::revocation::{RevocationSet, RevokedCert};

/// One self-contained part of a trust bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustPiece {
    /// The digest of the statement it carries: a revocation's payload, or the last rotation's.
    pub id: Digest,
    /// The piece, as a bundle (canonical form).
    pub bundle: TrustBundle,
}

impl TrustPiece {
    /// Compact JSON (the piece as a bundle): at most [`crate::limits::MAX_PIECE_BYTES`].
    pub fn to_json(&self) -> Vec<u8> {
        self.bundle.to_json()
    }
}

impl Verified<TrustBundle> {
    /// The bundle without what no longer matters at `now`: refused statements, revocations of
    /// certificates that expired more than [`REVOCATION_GRACE_MS`] before `now`, and
    /// certificates no remaining statement needs. Canonical form; the facts are those of the
    /// remaining statements (which stay accepted: removing revocations never refuses one).
    pub fn pruned(&self, now: Timestamp) -> Verified<TrustBundle> {
        let (bundle, facts) = (self.value(), self.facts());
        let kept: Vec<&AcceptedRevocation> = facts
            .revocations
            .iter()
            .filter(|r| r.revoked_not_after.plus_ms(REVOCATION_GRACE_MS) >= now)
            .collect();
        let mut cert_indices: Vec<usize> = kept.iter().flat_map(|r| r.certs.iter().copied()).collect();
        cert_indices.sort_unstable();
        cert_indices.dedup();
        let pruned = TrustBundle {
            certs: cert_indices.iter().map(|i| bundle.certs[*i].clone()).collect(),
            revocations: kept.iter().map(|r| bundle.revocations[r.index].clone()).collect(),
            rotations: bundle.rotations[..facts.rotations].to_vec(),
        }
        .canonical();
        // Where each kept certificate and statement now sits.
        let cert_at =
            |old: usize| pruned.certs.iter().position(|c| *c == bundle.certs[old]).unwrap_or_default();
        let statement_at = |old: usize| {
            pruned.revocations.iter().position(|r| *r == bundle.revocations[old]).unwrap_or_default()
        };
        let mut revoked = RevocationSet::default();
        let revocations = kept
            .into_iter()
            .map(|r| {
                let entry = RevokedCert {
                    effective_at: r.revocation.effective_at,
                    subject: r.revocation.subject.clone(),
                    keyid: r.revoked_keyid.clone(),
                };
                revoked.insert(r.revocation.cert, entry);
                let mut certs: Vec<usize> = r.certs.iter().map(|i| cert_at(*i)).collect();
                certs.sort_unstable();
                AcceptedRevocation { index: statement_at(r.index), certs, ..r.clone() }
            })
            .collect();
        let facts = BundleFacts {
            anchors: facts.anchors.clone(),
            rotations: facts.rotations,
            revocations,
            revoked,
            refused: Vec::new(),
        };
        Verified::new(pruned, facts)
    }

    /// The accepted statements as self-contained pieces: the rotations piece first (when a
    /// rotation was accepted), then one piece per accepted revocation, in evaluation order.
    pub fn pieces(&self) -> Vec<TrustPiece> {
        let (bundle, facts) = (self.value(), self.facts());
        let rotations = bundle.rotations[..facts.rotations].to_vec();
        let mut pieces = Vec::new();
        if let Some(last) = rotations.last() {
            let piece = TrustBundle { rotations: rotations.clone(), ..TrustBundle::default() };
            pieces.push(TrustPiece { id: Digest::of(&last.payload), bundle: piece });
        }
        for revocation in &facts.revocations {
            let piece = TrustBundle {
                certs: revocation.certs.iter().map(|i| bundle.certs[*i].clone()).collect(),
                revocations: vec![bundle.revocations[revocation.index].clone()],
                rotations: rotations.clone(),
            };
            pieces.push(TrustPiece { id: revocation.id, bundle: piece.canonical() });
        }
        pieces
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::Hierarchy;

    #[test]
    fn an_empty_bundle_has_no_pieces_and_prunes_to_itself() {
        let tree = Hierarchy::standard();
        let verified = TrustBundle::default().verify(&tree.anchors, tree.now).expect("bundle");
        assert!(verified.pieces().is_empty());
        assert_eq!(verified.pruned(tree.now).value(), &TrustBundle::default());
    }

    #[test]
    fn pruning_renumbers_what_it_keeps() {
        let tree = Hierarchy::standard();
        let bundle = tree.root_revocation(&tree.origin_cert, tree.now).merged(&tree.relay_revocation(
            1,
            &tree.relays[2].cert,
            &[],
            tree.now,
            tree.now,
        ));
        let verified = bundle.verify(&tree.anchors, tree.now).expect("bundle");
        let pruned = verified.pruned(tree.now);
        for accepted in &pruned.facts().revocations {
            let statement = &pruned.value().revocations[accepted.index];
            assert_eq!(Digest::of(&statement.payload), accepted.id);
            assert!(accepted.certs.iter().all(|i| *i < pruned.value().certs.len()));
        }
        assert_eq!(pruned.facts().revoked, verified.facts().revoked);
    }
}
