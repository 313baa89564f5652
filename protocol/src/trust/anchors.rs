//! Trust anchors (k of n root keys) and anchor rotations.
//!
//! The anchors are configured into every program and never travel over MQTT; a trust bundle
//! may carry a chain of rotations, each signed by a threshold of the anchors in force before
//! it and a threshold of the new ones.

use serde::{Deserialize, Serialize};

use crate::envelope::{ANCHORS_TYPE, Envelope, decode_payload, encode_payload};
use crate::error::{Error, Result};
use crate::keys::{KeyId, PublicKey, SecretKey};
use crate::limits::MAX_CLOCK_SKEW_MS;
use crate::time::Timestamp;

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
    }
}
