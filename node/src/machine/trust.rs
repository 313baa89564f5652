//! A node's trust state: the configured anchors, the merged trust bundle (revocations, the
//! certificates they need, anchor rotations), and what follows from it — the anchors in
//! force and the revoked keys.
//!
//! Bundles arrive on the parent's retained trust topic, in catch-up answers, and — at the
//! national node — on its own control topic where administrators push signed statements. An
//! incoming bundle is merged with the current one and the *merged* bundle must verify as a
//! whole before anything changes; the machine then uses it at once (it only ever makes the
//! node stricter), commits it, and republishes it to the children once it is durable.

use kairan_protocol::{Digest, RevocationSet, Timestamp, TrustAnchors, TrustBundle};

/// The trust state of a node.
#[derive(Debug, Clone)]
pub struct TrustState {
    configured: TrustAnchors,
    bundle: TrustBundle,
    anchors: TrustAnchors,
    revoked: RevocationSet,
    digest: Option<Digest>,
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
        }
    }

    /// The state from a stored bundle; one that no longer verifies is reported and ignored.
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
            Ok(_) => None,
            Err(error) => {
                Some(format!("stored trust bundle no longer verifies ({error}); starting without it"))
            }
        };
        (state, warning)
    }

    /// Merges `incoming` (bundle JSON) into the current bundle; the merged bundle must verify.
    pub fn apply(&mut self, incoming: &[u8], now: Timestamp) -> Result<TrustChange, kairan_protocol::Error> {
        let incoming = TrustBundle::from_json(incoming)?;
        let merged = self.bundle.merged(&incoming);
        if merged == self.bundle {
            return Ok(TrustChange::Unchanged);
        }
        let verified = merged.clone().verify(&self.configured, now)?;
        self.anchors = verified.facts().anchors.clone();
        self.revoked = verified.facts().revoked.clone();
        let json = merged.to_json();
        self.digest = Some(Digest::of(&json));
        self.bundle = merged;
        Ok(TrustChange::Updated(json))
    }

    /// The anchors in force.
    pub fn anchors(&self) -> &TrustAnchors {
        &self.anchors
    }

    /// The revoked keys.
    pub fn revoked(&self) -> &RevocationSet {
        &self.revoked
    }

    /// The bundle in force.
    pub fn bundle(&self) -> &TrustBundle {
        &self.bundle
    }

    /// Digest of the bundle JSON in force (None when empty): children send theirs in catch-up
    /// requests so a parent includes its bundle only when it differs.
    pub fn digest(&self) -> Option<Digest> {
        self.digest
    }

    /// The bundle JSON, if any.
    pub fn json(&self) -> Option<Vec<u8>> {
        self.digest.map(|_| self.bundle.to_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kairan_protocol::cert::ROOT_ISSUER;
    use kairan_protocol::fixtures::Hierarchy;
    use kairan_protocol::{Revocation, Scope};

    #[test]
    fn applying_a_root_revocation_revokes_and_is_idempotent() {
        let tree = Hierarchy::standard();
        let mut state = TrustState::new(tree.anchors.clone());
        let revocation = Revocation {
            keyid: tree.origin_key.keyid().clone(),
            subject: "mhlw".into(),
            scope: Scope::parse("jp").expect("scope"),
            issuer: ROOT_ISSUER.into(),
            seq: 1,
            issued_at: tree.now,
            effective_at: tree.now,
            reason: "key compromised".into(),
        }
        .sign(&[&tree.roots[0], &tree.roots[2]]);
        let bundle = TrustBundle { revocations: vec![revocation], ..TrustBundle::default() };
        let change = state.apply(&bundle.to_json(), tree.now).expect("applies");
        assert!(matches!(change, TrustChange::Updated(_)));
        assert_eq!(state.revoked().len(), 1);
        assert_eq!(state.apply(&bundle.to_json(), tree.now).expect("again"), TrustChange::Unchanged);
    }

    #[test]
    fn an_older_bundle_cannot_roll_a_revocation_back() {
        let tree = Hierarchy::standard();
        let mut state = TrustState::new(tree.anchors.clone());
        let revocation = Revocation {
            keyid: tree.origin_key.keyid().clone(),
            subject: "mhlw".into(),
            scope: Scope::parse("jp").expect("scope"),
            issuer: ROOT_ISSUER.into(),
            seq: 1,
            issued_at: tree.now,
            effective_at: tree.now,
            reason: "key compromised".into(),
        }
        .sign(&[&tree.roots[0], &tree.roots[1]]);
        let with = TrustBundle { revocations: vec![revocation], ..TrustBundle::default() };
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
        let revocation = Revocation {
            keyid: tree.origin_key.keyid().clone(),
            subject: "mhlw".into(),
            scope: Scope::parse("jp").expect("scope"),
            issuer: ROOT_ISSUER.into(),
            seq: 1,
            issued_at: tree.now,
            effective_at: tree.now,
            reason: "only one root key signed".into(),
        }
        .sign(&[&tree.roots[0]]);
        let bundle = TrustBundle { revocations: vec![revocation], ..TrustBundle::default() };
        let err = state.apply(&bundle.to_json(), tree.now).expect_err("threshold");
        assert_eq!(err.code(), "threshold_not_met");
        assert!(state.revoked().is_empty());
        assert_eq!(state.digest(), None);
    }
}
