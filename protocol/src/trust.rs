//! Trust anchors, revocation statements and the trust bundle.
//!
//! The anchors are the root public keys and a threshold `k` of `n`; they are configured into
//! every program and never travel over MQTT. Revocations are signed by the root threshold or
//! by a relay whose certified scope contains the revoked certificate's scope, and take effect
//! at `effective_at`: whatever the revoked key signed at or after that time is refused, what it
//! signed before stays verifiable.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cert::{CertSet, ROOT_ISSUER, Role};
use crate::envelope::{ANCHORS_TYPE, Envelope, REVOCATION_TYPE, decode_payload, encode_payload};
use crate::error::{Error, Result};
use crate::keys::{KeyId, PublicKey, SecretKey};
use crate::limits::{
    MAX_BUNDLE_BYTES, MAX_BUNDLE_CERTS, MAX_CLOCK_SKEW_MS, MAX_REVOCATIONS, MAX_SHORT_TEXT_CHARS,
};
use crate::scope::Scope;
use crate::time::Timestamp;
use crate::verified::{Verifiable, Verified};

/// One root key of the anchors file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootKey {
    /// A name for people (`root-1`).
    pub id: String,
    /// The public key, 64 lowercase hex characters.
    pub key: PublicKey,
}

/// The trust-anchors file: root keys and how many of them must sign a root-level object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustAnchorsFile {
    /// `k` of `k`-of-`n`.
    pub threshold: usize,
    /// The `n` root keys.
    pub roots: Vec<RootKey>,
}

/// Checked trust anchors: distinct keys, 1 ≤ threshold ≤ number of keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustAnchors {
    threshold: usize,
    roots: Vec<RootKey>,
}

impl TrustAnchors {
    /// Checks an anchors file.
    pub fn new(file: TrustAnchorsFile) -> Result<Self> {
        if file.roots.is_empty() {
            return Err(Error::InvalidAnchors("no root keys".into()));
        }
        if file.threshold == 0 || file.threshold > file.roots.len() {
            return Err(Error::InvalidAnchors(format!(
                "threshold {} must be between 1 and the number of root keys ({})",
                file.threshold,
                file.roots.len()
            )));
        }
        for (index, root) in file.roots.iter().enumerate() {
            if file.roots[..index].iter().any(|other| other.key == root.key) {
                return Err(Error::InvalidAnchors(format!("root key {} is listed twice", root.id)));
            }
        }
        Ok(Self { threshold: file.threshold, roots: file.roots })
    }

    /// Anchors of `keys`, named `root-1`, `root-2`, … in order, with `threshold`.
    pub fn numbered<'k>(threshold: usize, keys: impl IntoIterator<Item = &'k PublicKey>) -> Result<Self> {
        let roots = keys
            .into_iter()
            .enumerate()
            .map(|(i, key)| RootKey { id: format!("root-{}", i + 1), key: key.clone() })
            .collect();
        Self::new(TrustAnchorsFile { threshold, roots })
    }

    /// The threshold `k`.
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// The root keys.
    pub fn roots(&self) -> &[RootKey] {
        &self.roots
    }

    /// The root key with this key id.
    pub fn key(&self, keyid: &str) -> Option<&PublicKey> {
        self.roots.iter().map(|r| &r.key).find(|k| k.keyid().as_str() == keyid)
    }

    /// The file form.
    pub fn to_file(&self) -> TrustAnchorsFile {
        TrustAnchorsFile { threshold: self.threshold, roots: self.roots.clone() }
    }
}

/// A revocation statement (`application/vnd.kairan.revocation+json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    /// The revoked key.
    pub keyid: KeyId,
    /// The subject id of the revoked key's certificate.
    pub subject: String,
    /// The scope of the revoked key's certificate.
    pub scope: Scope,
    /// Who revokes: [`ROOT_ISSUER`] or a relay id.
    pub issuer: String,
    /// The issuer's control-stream sequence number (1, 2, …).
    pub seq: u64,
    /// When the statement was signed.
    pub issued_at: Timestamp,
    /// From when the key's signatures are refused.
    pub effective_at: Timestamp,
    /// Why, for people (`key compromised`, `node retired`).
    pub reason: String,
}

impl Revocation {
    /// Signs the statement.
    pub fn sign(&self, signers: &[&SecretKey]) -> Envelope {
        Envelope::sign(REVOCATION_TYPE, encode_payload(self), signers)
    }

    /// Verifies a revocation envelope: root threshold, or a certified relay (in `certs`) whose
    /// scope contains the revoked scope.
    pub fn verify(
        envelope: &Envelope,
        anchors: &TrustAnchors,
        certs: &CertSet,
        now: Timestamp,
    ) -> Result<Self> {
        let what = "revocation";
        let hints: Vec<&str> = envelope.keyid_hints().collect();
        let by_root = !hints.is_empty() && hints.iter().all(|h| anchors.key(h).is_some());
        let revocation: Revocation = if by_root {
            envelope.verify_with(REVOCATION_TYPE, what, anchors.threshold(), |h| anchors.key(h))?;
            let revocation: Revocation = decode_payload(REVOCATION_TYPE, &envelope.payload)?;
            if revocation.issuer != ROOT_ISSUER {
                return Err(Error::BrokenCertChain(format!(
                    "revocation signed by the root names issuer {:?}",
                    revocation.issuer
                )));
            }
            revocation
        } else {
            let hint = hints.first().copied().unwrap_or("");
            let issuer = certs
                .find(hint, Role::Relay)
                .map_err(|_| Error::UnknownSigner { what: what.into(), keyid: hint.to_owned() })?;
            envelope.verify_by(REVOCATION_TYPE, what, &issuer.cert.key)?;
            let revocation: Revocation = decode_payload(REVOCATION_TYPE, &envelope.payload)?;
            if revocation.issuer != issuer.cert.subject {
                return Err(Error::BrokenCertChain(format!(
                    "revocation names issuer {:?} but is signed by {}",
                    revocation.issuer, issuer.cert.subject
                )));
            }
            // A relay may revoke only a key certified below it: the revoked key's certificate
            // must be in the set, match what the statement says, and have the revoking relay's
            // key among its issuers (or be the relay's own).
            let revoker_key = issuer.cert.key.keyid();
            let revoked: Vec<usize> = (0..certs.certs().len())
                .filter(|i| *certs.certs()[*i].cert.key.keyid() == revocation.keyid)
                .collect();
            if revoked.is_empty() {
                return Err(Error::BrokenCertChain(format!(
                    "revocation by {} names key {} whose certificate is not given",
                    issuer.cert.subject,
                    revocation.keyid.short()
                )));
            }
            let below_revoker = revoked.iter().any(|index| {
                let chain = certs.chain_of(*index);
                let cert = &certs.certs()[*index].cert;
                cert.subject == revocation.subject
                    && cert.scope == revocation.scope
                    && chain.iter().any(|link| link.cert.key.keyid() == revoker_key)
            });
            if !below_revoker {
                return Err(Error::ScopeViolation {
                    what: format!(
                        "revocation of {} by {}: the revoked certificate (subject and scope as stated) was not issued at or below the revoker",
                        revocation.subject, issuer.cert.subject
                    ),
                    scope: revocation.scope.to_string(),
                    allowed: issuer.cert.scope.to_string(),
                });
            }
            revocation
        };
        if revocation.reason.chars().count() > MAX_SHORT_TEXT_CHARS {
            return Err(Error::MalformedPayload {
                payload_type: REVOCATION_TYPE.into(),
                reason: "reason too long".into(),
            });
        }
        if revocation.issued_at > now.plus_ms(MAX_CLOCK_SKEW_MS) {
            return Err(Error::FromTheFuture { what: what.into(), at: revocation.issued_at, now });
        }
        Ok(revocation)
    }
}

/// The revoked keys in force: key id → (effective time, subject).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationSet {
    revoked: BTreeMap<KeyId, (Timestamp, String)>,
}

impl RevocationSet {
    /// Adds a verified revocation; the earliest effective time wins.
    pub fn insert(&mut self, revocation: &Revocation) {
        let entry = self
            .revoked
            .entry(revocation.keyid.clone())
            .or_insert((revocation.effective_at, revocation.subject.clone()));
        if revocation.effective_at < entry.0 {
            *entry = (revocation.effective_at, revocation.subject.clone());
        }
    }

    /// Refuses `keyid` signing something dated `signed_at` if it was revoked by then.
    pub fn check(&self, keyid: &KeyId, signed_at: Timestamp, what: &str) -> Result<()> {
        match self.revoked.get(keyid) {
            Some((effective_at, subject)) if signed_at >= *effective_at => Err(Error::Revoked {
                keyid: keyid.to_string(),
                subject: subject.clone(),
                effective_at: *effective_at,
                what: what.to_owned(),
            }),
            _ => Ok(()),
        }
    }

    /// Number of revoked keys.
    pub fn len(&self) -> usize {
        self.revoked.len()
    }

    /// Whether no key is revoked.
    pub fn is_empty(&self) -> bool {
        self.revoked.is_empty()
    }
}

/// A root-anchor rotation (`application/vnd.kairan.anchors+json`): the complete new anchors,
/// signed by a threshold of the anchors in force *and* a threshold of the new ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchorRotation {
    /// Rotation number: 1 for the first rotation after the configured anchors, +1 each time.
    pub seq: u64,
    /// When it was signed.
    pub issued_at: Timestamp,
    /// The anchors in force after it.
    pub anchors: TrustAnchorsFile,
}

impl AnchorRotation {
    /// Signs the rotation with old and new root keys.
    pub fn sign(&self, signers: &[&SecretKey]) -> Envelope {
        Envelope::sign(ANCHORS_TYPE, encode_payload(self), signers)
    }

    /// Verifies a rotation against the anchors in force: every signature is by an old or a
    /// new root key, at least `old.threshold` distinct old keys and `new.threshold` distinct
    /// new keys signed. Returns the new anchors.
    pub fn verify(
        envelope: &Envelope,
        current: &TrustAnchors,
        now: Timestamp,
    ) -> Result<(Self, TrustAnchors)> {
        let what = "anchor rotation";
        if envelope.payload_type != ANCHORS_TYPE {
            return Err(Error::WrongPayloadType {
                expected: ANCHORS_TYPE.into(),
                found: envelope.payload_type.clone(),
            });
        }
        envelope.check_shape()?;
        // The new keys are only known from the payload, so first establish that a threshold
        // of the anchors in force signed these exact bytes; only then decode them.
        let message = crate::envelope::pae(&envelope.payload_type, &envelope.payload);
        let mut old_signers: Vec<&KeyId> = Vec::new();
        for signature in &envelope.signatures {
            if let Some(key) = current.key(&signature.keyid) {
                if !key.verify_strict(&message, &signature.sig) {
                    return Err(Error::BadSignature { what: what.into(), keyid: signature.keyid.clone() });
                }
                if !old_signers.contains(&key.keyid()) {
                    old_signers.push(key.keyid());
                }
            }
        }
        if old_signers.len() < current.threshold() {
            return Err(Error::ThresholdNotMet {
                what: format!("{what} (current anchors)"),
                needed: current.threshold(),
                found: old_signers.len(),
            });
        }
        let claimed: AnchorRotation = decode_payload(ANCHORS_TYPE, &envelope.payload)?;
        let next = TrustAnchors::new(claimed.anchors.clone())?;
        let signers = envelope
            .verify_with(ANCHORS_TYPE, what, 1, |hint| current.key(hint).or_else(|| next.key(hint)))?;
        let old_count = signers.iter().filter(|k| current.key(k.as_str()).is_some()).count();
        let new_count = signers.iter().filter(|k| next.key(k.as_str()).is_some()).count();
        if old_count < current.threshold() {
            return Err(Error::ThresholdNotMet {
                what: format!("{what} (current anchors)"),
                needed: current.threshold(),
                found: old_count,
            });
        }
        if new_count < next.threshold() {
            return Err(Error::ThresholdNotMet {
                what: format!("{what} (new anchors)"),
                needed: next.threshold(),
                found: new_count,
            });
        }
        if claimed.issued_at > now.plus_ms(MAX_CLOCK_SKEW_MS) {
            return Err(Error::FromTheFuture { what: what.into(), at: claimed.issued_at, now });
        }
        Ok((claimed, next))
    }
}

/// The retained trust bundle: certificates, revocations and anchor rotations, each signed
/// on its own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustBundle {
    /// Certificates (relays' own chains, renewals).
    #[serde(default)]
    pub certs: Vec<Envelope>,
    /// Revocation statements.
    #[serde(default)]
    pub revocations: Vec<Envelope>,
    /// Root-anchor rotations, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rotations: Vec<Envelope>,
}

/// What verifying a bundle established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleFacts {
    /// The anchors in force after the bundle's rotations (the configured ones if none).
    pub anchors: TrustAnchors,
    /// The certificates, verified.
    pub certs: CertSet,
    /// The revocations, verified, in input order.
    pub revocations: Vec<Revocation>,
    /// The revoked keys.
    pub revoked: RevocationSet,
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
        if bundle.certs.len() > MAX_BUNDLE_CERTS {
            return Err(Error::TooManyCerts { count: bundle.certs.len(), limit: MAX_BUNDLE_CERTS });
        }
        if bundle.revocations.len() > MAX_REVOCATIONS {
            return Err(Error::Oversize {
                what: "revocations",
                limit: MAX_REVOCATIONS,
                actual: bundle.revocations.len(),
            });
        }
        Ok(bundle)
    }

    /// Compact JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// This bundle with everything of `other` it lacks added (certificates and revocations
    /// by exact envelope; rotations when `other` carries a longer sequence). Verify the
    /// result before using it.
    pub fn merged(&self, other: &TrustBundle) -> TrustBundle {
        let mut merged = self.clone();
        for cert in &other.certs {
            if !merged.certs.contains(cert) {
                merged.certs.push(cert.clone());
            }
        }
        for revocation in &other.revocations {
            if !merged.revocations.contains(revocation) {
                merged.revocations.push(revocation.clone());
            }
        }
        if other.rotations.len() > merged.rotations.len() && other.rotations.starts_with(&merged.rotations) {
            merged.rotations = other.rotations.clone();
        }
        merged
    }

    /// Verifies every rotation (in order, from the configured anchors), certificate and
    /// revocation in the bundle.
    pub fn verify(self, configured: &TrustAnchors, now: Timestamp) -> Result<Verified<TrustBundle>> {
        let mut anchors = configured.clone();
        for (index, envelope) in self.rotations.iter().enumerate() {
            let (rotation, next) = AnchorRotation::verify(envelope, &anchors, now)?;
            if rotation.seq != index as u64 + 1 {
                return Err(Error::MalformedPayload {
                    payload_type: ANCHORS_TYPE.into(),
                    reason: format!("rotation {} found where {} was expected", rotation.seq, index + 1),
                });
            }
            anchors = next;
        }
        let anchors = &anchors;
        let unrevoked = CertSet::verify(&self.certs, anchors, &RevocationSet::default(), now)?;
        let mut revoked = RevocationSet::default();
        let mut revocations = Vec::with_capacity(self.revocations.len());
        for envelope in &self.revocations {
            let revocation = Revocation::verify(envelope, anchors, &unrevoked, now)?;
            revoked.insert(&revocation);
            revocations.push(revocation);
        }
        // Again with the bundle's own revocations in force: a certificate issued by a key
        // revoked in this very bundle (at or before its not_before) fails the bundle.
        let certs = if revoked.is_empty() {
            unrevoked
        } else {
            CertSet::verify(&self.certs, anchors, &revoked, now)?
        };
        let anchors = anchors.clone();
        Ok(Verified::new(self, BundleFacts { anchors, certs, revocations, revoked }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::Hierarchy;

    #[test]
    fn anchors_reject_bad_thresholds_and_duplicates() {
        let tree = Hierarchy::standard();
        let mut file = tree.anchors.to_file();
        file.threshold = 0;
        assert_eq!(TrustAnchors::new(file.clone()).map_err(|e| e.code()), Err("invalid_anchors"));
        file.threshold = 4;
        assert_eq!(TrustAnchors::new(file.clone()).map_err(|e| e.code()), Err("invalid_anchors"));
        file.threshold = 1;
        file.roots.push(file.roots[0].clone());
        assert_eq!(TrustAnchors::new(file).map_err(|e| e.code()), Err("invalid_anchors"));
    }

    #[test]
    fn relay_revokes_inside_its_scope_only() {
        let tree = Hierarchy::standard();
        let certs =
            CertSet::verify(&tree.delivery_certs(), &tree.anchors, &RevocationSet::default(), tree.now)
                .expect("certs");
        let district = &tree.relays[2];
        let mut revocation = Revocation {
            keyid: district.key.keyid().clone(),
            subject: district.id.clone(),
            scope: district.scope.clone(),
            issuer: tree.relays[1].id.clone(),
            seq: 1,
            issued_at: tree.now,
            effective_at: tree.now,
            reason: "key compromised".into(),
        };
        let signed = revocation.sign(&[&tree.relays[1].key]);
        assert!(Revocation::verify(&signed, &tree.anchors, &certs, tree.now).is_ok());
        revocation.scope = Scope::parse("jp/27").expect("scope");
        let signed = revocation.sign(&[&tree.relays[1].key]);
        let err = Revocation::verify(&signed, &tree.anchors, &certs, tree.now).expect_err("outside scope");
        assert_eq!(err.code(), "scope_violation");
    }

    #[test]
    fn a_relay_cannot_revoke_a_key_outside_its_subtree() {
        // The district claims its own scope for the origin's key: refused, the origin's
        // certificate was not issued at or below the district.
        let tree = Hierarchy::standard();
        let certs =
            CertSet::verify(&tree.delivery_certs(), &tree.anchors, &RevocationSet::default(), tree.now)
                .expect("certs");
        let district = &tree.relays[2];
        let forged = Revocation {
            keyid: tree.origin_key.keyid().clone(),
            subject: district.id.clone(),
            scope: district.scope.clone(),
            issuer: district.id.clone(),
            seq: 1,
            issued_at: tree.now,
            effective_at: tree.now,
            reason: "hostile".into(),
        }
        .sign(&[&district.key]);
        let err = Revocation::verify(&forged, &tree.anchors, &certs, tree.now).expect_err("refused");
        assert_eq!(err.code(), "scope_violation");
        // Nor the national relay's key (above it), stating the national scope.
        let national = &tree.relays[0];
        let upward = Revocation {
            keyid: national.key.keyid().clone(),
            subject: national.id.clone(),
            scope: national.scope.clone(),
            issuer: district.id.clone(),
            seq: 2,
            issued_at: tree.now,
            effective_at: tree.now,
            reason: "hostile".into(),
        }
        .sign(&[&district.key]);
        assert!(Revocation::verify(&upward, &tree.anchors, &certs, tree.now).is_err());
    }

    #[test]
    fn anchors_rotate_with_old_and_new_thresholds() {
        let tree = Hierarchy::standard();
        let new_keys: Vec<SecretKey> =
            (0..3).map(|i| crate::fixtures::key(&format!("new-root-{i}"))).collect();
        let rotation = AnchorRotation {
            seq: 1,
            issued_at: tree.now,
            anchors: TrustAnchorsFile {
                threshold: 2,
                roots: new_keys
                    .iter()
                    .enumerate()
                    .map(|(i, k)| RootKey { id: format!("new-root-{i}"), key: k.public().clone() })
                    .collect(),
            },
        };
        let both = rotation.sign(&[&tree.roots[0], &tree.roots[1], &new_keys[0], &new_keys[2]]);
        let (_, next) = AnchorRotation::verify(&both, &tree.anchors, tree.now).expect("rotates");
        assert_eq!(next.roots().len(), 3);
        let old_only = rotation.sign(&[&tree.roots[0], &tree.roots[1]]);
        let err =
            AnchorRotation::verify(&old_only, &tree.anchors, tree.now).expect_err("new threshold missing");
        assert_eq!(err.code(), "threshold_not_met");
        let new_only = rotation.sign(&[&new_keys[0], &new_keys[1]]);
        let err =
            AnchorRotation::verify(&new_only, &tree.anchors, tree.now).expect_err("old threshold missing");
        assert_eq!(err.code(), "threshold_not_met");
        let bundle = TrustBundle { rotations: vec![both], ..TrustBundle::default() };
        let verified = bundle.verify(&tree.anchors, tree.now).expect("bundle with rotation");
        assert_eq!(verified.facts().anchors, next);
    }

    #[test]
    fn revocation_applies_from_its_effective_time() {
        let tree = Hierarchy::standard();
        let mut set = RevocationSet::default();
        set.insert(&Revocation {
            keyid: tree.origin_key.keyid().clone(),
            subject: "mhlw".into(),
            scope: Scope::parse("jp").expect("scope"),
            issuer: ROOT_ISSUER.into(),
            seq: 1,
            issued_at: tree.now,
            effective_at: tree.now,
            reason: "retired".into(),
        });
        assert!(set.check(tree.origin_key.keyid(), tree.now.plus_ms(-1), "advisory").is_ok());
        assert_eq!(
            set.check(tree.origin_key.keyid(), tree.now, "advisory").map_err(|e| e.code()),
            Err("revoked_key")
        );
    }
}
