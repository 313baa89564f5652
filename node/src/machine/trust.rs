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
//! Pieces that arrive together are verified together ([`PieceBatch`]).

use kairan_protocol::Verified;
use kairan_protocol::limits::{MAX_BUNDLE_CERTS, MAX_REVOCATIONS};
use kairan_protocol::trust::{Refusal, TrustPiece};

use super::io::MsgId;
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
        self.apply_bundle(&TrustBundle::from_json(incoming)?, now)
    }

    /// [`TrustState::apply`] for a bundle already parsed (pieces gathered by a [`PieceBatch`]).
    pub fn apply_bundle(
        &mut self,
        incoming: &TrustBundle,
        now: Timestamp,
    ) -> Result<TrustChange, kairan_protocol::Error> {
        let merged = self.bundle.merged(incoming);
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

/// How long trust pieces arriving together are gathered before they are verified together.
pub const PIECE_BATCH_MS: i64 = 200;

/// Trust pieces from the parent, gathered to be verified together.
///
/// A parent publishes its set as one retained message per statement, so a child receives up
/// to a thousand of them at once (at every subscription). Verifying the merged set again for
/// each would cost time quadratic in the set — about a minute for 300 statements in a debug
/// build — while deliveries wait behind it. The first piece after a quiet spell is applied at
/// once (a single revocation is not delayed); pieces arriving within [`PIECE_BATCH_MS`] after
/// it are gathered and verified together when the window closes, or as soon as the batch
/// holds as much as one bundle may.
#[derive(Debug, Default)]
pub struct PieceBatch {
    gathered: TrustBundle,
    acks: Vec<MsgId>,
    window_until: Option<Timestamp>,
}

impl PieceBatch {
    /// Whether a piece arriving at `now` joins a batch (a window is open) rather than being
    /// applied at once; opens a window when none is.
    pub fn gathers(&mut self, now: Timestamp) -> bool {
        if self.window_until.is_some_and(|until| now < until) || !self.is_empty() {
            return true;
        }
        self.window_until = Some(now.plus_ms(PIECE_BATCH_MS));
        false
    }

    /// Adds a piece (and the message to acknowledge once it is applied). Returns whether the
    /// batch is full and must be applied now.
    pub fn add(&mut self, piece: TrustBundle, ack: MsgId) -> bool {
        let TrustBundle { certs, revocations, rotations } = piece;
        self.gathered.certs.extend(certs);
        self.gathered.revocations.extend(revocations);
        // Rotations form one chain: keep the longest that extends what is gathered.
        if rotations.len() > self.gathered.rotations.len() && rotations.starts_with(&self.gathered.rotations)
        {
            self.gathered.rotations = rotations;
        }
        self.acks.push(ack);
        self.gathered.revocations.len() >= MAX_REVOCATIONS || self.gathered.certs.len() >= MAX_BUNDLE_CERTS
    }

    /// When the gathered pieces are due, if any are gathered.
    pub fn due_at(&self) -> Option<Timestamp> {
        if self.is_empty() { None } else { self.window_until }
    }

    /// The gathered pieces and their messages, if due at `now` (or `force`d); a new window
    /// opens behind them, so a burst still arriving is gathered again.
    pub fn take(&mut self, now: Timestamp, force: bool) -> Option<(TrustBundle, Vec<MsgId>)> {
        if self.is_empty() || !(force || self.window_until.is_none_or(|until| now >= until)) {
            return None;
        }
        self.window_until = Some(now.plus_ms(PIECE_BATCH_MS));
        Some((std::mem::take(&mut self.gathered), std::mem::take(&mut self.acks)))
    }

    /// The upstream connection is gone: the gathered pieces stay (they verify on their own),
    /// their messages are not acknowledged on another connection.
    pub fn connection_lost(&mut self) {
        self.acks.clear();
    }

    fn is_empty(&self) -> bool {
        self.acks.is_empty()
            && self.gathered.revocations.is_empty()
            && self.gathered.certs.is_empty()
            && self.gathered.rotations.is_empty()
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
