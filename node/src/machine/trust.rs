//! A node's trust state: the configured anchors, the trust bundle in force (revocations, the
//! certificates they need, anchor rotations), and what follows from it — the anchors in
//! force and the revoked certificates.
//!
//! Bundles arrive on the parent's retained trust topic, in catch-up answers, and — at the
//! national node — on its own control topic where administrators push signed statements. An
//! incoming bundle is merged with the current one and every statement of the merged bundle is
//! verified on its own: the accepted ones stay (pruned of revocations whose certificate expired
//! long ago, and of certificates nothing needs), the refused ones are dropped and reported, and
//! one bad statement never blocks the others. The machine uses the result at once (it only ever
//! makes the node stricter), commits it, and republishes it to the children once it is durable.

use kairan_protocol::Verified;
use kairan_protocol::trust::{Refusal, TrustPiece};
use kairan_protocol::{Digest, RevocationSet, Timestamp, TrustAnchors, TrustBundle};

/// The trust state of a node.
#[derive(Debug, Clone)]
pub struct TrustState {
    configured: TrustAnchors,
    bundle: TrustBundle,
    anchors: TrustAnchors,
    revoked: RevocationSet,
    digest: Option<Digest>,
    refused: Vec<Refusal>,
    kept: Option<Verified<TrustBundle>>,
}

/// What applying a bundle did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustChange {
    /// Nothing new in it.
    Unchanged,
    /// The merged bundle is in force now (its JSON, to store and republish).
    Updated(Vec<u8>),
}

impl TrustState {
    /// The state with no bundle: the configured anchors, nothing revoked.
    pub fn new(configured: TrustAnchors) -> Self {
        Self {
            anchors: configured.clone(),
            configured,
            bundle: TrustBundle::default(),
            revoked: RevocationSet::default(),
            digest: None,
            refused: Vec::new(),
            kept: None,
        }
    }

    /// The state from a stored bundle. Its statements are verified again, each on its own:
    /// those that no longer verify are reported and dropped, the others stay in force.
    pub fn restore(
        configured: TrustAnchors,
        stored: Option<&[u8]>,
        now: Timestamp,
    ) -> (Self, Option<String>) {
        let mut state = Self::new(configured);
        let Some(bytes) = stored else {
            return (state, None);
        };
        let warning = match state.apply(bytes, now) {
            Ok(_) if state.refused.is_empty() => None,
            Ok(_) => Some(format!(
                "stored trust bundle: {} statement(s) no longer verify and were dropped ({}); the others are in force",
                state.refused.len(),
                describe(&state.refused)
            )),
            Err(error) => Some(format!("stored trust bundle does not verify ({error}); starting without it")),
        };
        (state, warning)
    }

    /// Merges `incoming` (bundle JSON) into the current bundle and keeps every statement of
    /// the merge that verifies. `Err` when the incoming bundle is malformed or oversize, or
    /// when nothing of it was accepted and some of it was refused (the first refusal).
    pub fn apply(&mut self, incoming: &[u8], now: Timestamp) -> Result<TrustChange, kairan_protocol::Error> {
        let incoming = TrustBundle::from_json(incoming)?;
        let merged = self.bundle.merged(&incoming);
        if merged == self.bundle {
            return Ok(TrustChange::Unchanged);
        }
        let verified = merged.verify(&self.configured, now)?;
        self.refused = verified.refused().to_vec();
        let kept = verified.pruned(now);
        if *kept.value() == self.bundle {
            return match self.refused.first() {
                Some(refusal) => Err(refusal.error.clone()),
                None => Ok(TrustChange::Unchanged),
            };
        }
        self.anchors = kept.anchors().clone();
        self.revoked = kept.revoked().clone();
        let json = kept.value().to_json();
        self.digest = (!kept.value().certs.is_empty()
            || !kept.value().revocations.is_empty()
            || !kept.value().rotations.is_empty())
        .then(|| Digest::of(&json));
        self.bundle = kept.value().clone();
        self.kept = Some(kept);
        Ok(TrustChange::Updated(json))
    }

    /// The anchors in force.
    pub fn anchors(&self) -> &TrustAnchors {
        &self.anchors
    }

    /// The revoked certificates.
    pub fn revoked(&self) -> &RevocationSet {
        &self.revoked
    }

    /// The bundle in force.
    pub fn bundle(&self) -> &TrustBundle {
        &self.bundle
    }

    /// The statements refused by the last [`TrustState::apply`] that changed or verified
    /// anything (each with its reason code), for reporting.
    pub fn last_refused(&self) -> &[Refusal] {
        &self.refused
    }

    /// Digest of the bundle JSON in force (None when empty): children send theirs in catch-up
    /// requests so a parent includes its bundle only when it differs.
    pub fn digest(&self) -> Option<Digest> {
        self.digest
    }

    /// The bundle in force as self-contained pieces (one per revocation, one for the anchor
    /// rotations), each small enough for one MQTT packet: what a relay publishes retained.
    pub fn pieces(&self) -> Vec<TrustPiece> {
        self.kept.as_ref().map(Verified::pieces).unwrap_or_default()
    }

    /// The bundle JSON, if any.
    pub fn json(&self) -> Option<Vec<u8>> {
        self.digest.map(|_| self.bundle.to_json())
    }
}

fn describe(refused: &[Refusal]) -> String {
    let codes: Vec<String> = refused.iter().map(|r| format!("{} {}", r.id.short(), r.error.code())).collect();
    codes.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use kairan_protocol::fixtures::Hierarchy;

    #[test]
    fn applying_a_root_revocation_revokes_and_is_idempotent() {
        let tree = Hierarchy::standard();
        let mut state = TrustState::new(tree.anchors.clone());
        let bundle = tree.root_revocation(&tree.origin_cert, tree.now);
        let change = state.apply(&bundle.to_json(), tree.now).expect("applies");
        assert!(matches!(change, TrustChange::Updated(_)));
        assert_eq!(state.revoked().len(), 1);
        assert_eq!(state.apply(&bundle.to_json(), tree.now).expect("again"), TrustChange::Unchanged);
    }

    #[test]
    fn an_older_bundle_cannot_roll_a_revocation_back() {
        let tree = Hierarchy::standard();
        let mut state = TrustState::new(tree.anchors.clone());
        let with = tree.root_revocation(&tree.origin_cert, tree.now);
        state.apply(&with.to_json(), tree.now).expect("applies");
        // Replaying the empty bundle from before (a rollback attempt) changes nothing.
        assert_eq!(
            state.apply(&TrustBundle::default().to_json(), tree.now).expect("merges"),
            TrustChange::Unchanged
        );
        assert_eq!(state.revoked().len(), 1);
    }

    #[test]
    fn a_bundle_that_does_not_verify_changes_nothing() {
        let tree = Hierarchy::standard();
        let mut state = TrustState::new(tree.anchors.clone());
        let mut bundle = tree.root_revocation(&tree.origin_cert, tree.now);
        bundle.revocations[0].signatures.truncate(1); // only one root key signed
        let err = state.apply(&bundle.to_json(), tree.now).expect_err("threshold");
        assert_eq!(err.code(), "threshold_not_met");
        assert!(state.revoked().is_empty());
        assert_eq!(state.digest(), None);
    }

    #[test]
    fn one_bad_statement_does_not_block_the_others_nor_a_restart() {
        let tree = Hierarchy::standard();
        let mut state = TrustState::new(tree.anchors.clone());
        let mut bad = tree.root_revocation(&tree.relays[0].cert, tree.now);
        bad.revocations[0].signatures.truncate(1);
        let good = tree.root_revocation(&tree.origin_cert, tree.now);
        let change = state.apply(&bad.merged(&good).to_json(), tree.now).expect("the good one applies");
        let TrustChange::Updated(json) = change else { panic!("updated") };
        assert_eq!(state.revoked().len(), 1);
        assert_eq!(state.last_refused().len(), 1);
        assert_eq!(state.bundle(), &good.canonical(), "the refused statement is not kept");
        // A year and more later the origin certificate has expired: the stored bundle still
        // restores (no longer refused as a whole), its expired revocation pruned after the
        // grace period.
        let (restored, warning) = TrustState::restore(tree.anchors.clone(), Some(&json), tree.later());
        assert_eq!((restored.revoked().len(), warning), (1, None));
        let much_later = tree.now.plus_secs(500 * 24 * 3600);
        let (restored, warning) = TrustState::restore(tree.anchors.clone(), Some(&json), much_later);
        assert_eq!((restored.revoked().len(), warning), (0, None));
    }
}
