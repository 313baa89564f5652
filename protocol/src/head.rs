//! Signed heads (`application/vnd.kairan.head+json`): an origin's statement of the latest
//! advisory of one of its chains (origin, scope: [`ChainId`]), with a short expiry.
//!
//! Origins publish a head of a chain with every advisory of it and periodically in between;
//! relays keep the newest verified head per chain whose scope overlaps theirs and republish it
//! retained under the chain's scope. A child that holds less than a head says has been
//! withheld something (it catches up, and reports the gap); a child whose newest head of a
//! chain has expired knows that feed is frozen. A head names its scope so that it reaches only
//! the nodes entitled to the chain's advisories: the count and timing of a sibling's
//! advisories stay the sibling's.

use serde::{Deserialize, Serialize};

use crate::cert::{CertSet, Role};
use crate::delivery::{VerifyContext, first_passing, not_in_future};
use crate::envelope::{Envelope, HEAD_TYPE, decode_payload, encode_payload};
use crate::error::{Error, Result};
use crate::keys::{Digest, SecretKey};
use crate::limits::{MAX_CERTS, MAX_ENVELOPE_BYTES};
use crate::scope::Scope;
use crate::sequence::ChainId;
use crate::time::Timestamp;
use crate::verified::{Verifiable, Verified};

/// The latest advisory of one chain of an origin, as the origin states it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Head {
    /// Origin id.
    pub origin: String,
    /// The chain's scope: the exact scope of the advisories it numbers.
    pub scope: Scope,
    /// Sequence number of the chain's latest advisory (0 before the first).
    pub seq: u64,
    /// Digest of that advisory (absent when `seq` is 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    /// When the origin signed this head.
    pub issued_at: Timestamp,
    /// After this, the head is stale: a feed with no fresher head is frozen.
    pub expires_at: Timestamp,
}

/// A head with the certificate(s) to verify it, as carried on MQTT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadMessage {
    /// The signed head.
    pub head: Envelope,
    /// The origin's certificate.
    pub certs: Vec<Envelope>,
}

impl Verifiable for HeadMessage {
    type Facts = Head;
}

impl Head {
    /// Signs the head with the origin key, attaching the origin certificate.
    pub fn sign(&self, origin_key: &SecretKey, origin_cert: &Envelope) -> HeadMessage {
        HeadMessage {
            head: Envelope::sign(HEAD_TYPE, encode_payload(self), &[origin_key]),
            certs: vec![origin_cert.clone()],
        }
    }

    /// The chain this head is about.
    pub fn chain(&self) -> ChainId {
        ChainId::new(self.origin.clone(), self.scope.clone())
    }

    /// Whether the head is stale at `now`.
    pub fn is_stale(&self, now: Timestamp) -> bool {
        now >= self.expires_at
    }
}

impl HeadMessage {
    /// Compact JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Parses and verifies a head message. A stale head still verifies (it still says how far
/// the origin had got); callers check [`Head::is_stale`].
pub fn verify_head(bytes: &[u8], ctx: VerifyContext<'_>) -> Result<Verified<HeadMessage>> {
    let limit = MAX_ENVELOPE_BYTES * 2;
    if bytes.len() > limit {
        return Err(Error::Oversize { what: "head message", limit, actual: bytes.len() });
    }
    let message: HeadMessage =
        serde_json::from_slice(bytes).map_err(|e| Error::MalformedEnvelope(e.to_string()))?;
    if message.certs.len() > MAX_CERTS {
        return Err(Error::TooManyCerts { count: message.certs.len(), limit: MAX_CERTS });
    }
    let certs = CertSet::verify(&message.certs, ctx.anchors, ctx.revocations, ctx.now)?;
    let envelope = &message.head;
    if envelope.payload_type != HEAD_TYPE {
        return Err(Error::WrongPayloadType {
            expected: HEAD_TYPE.into(),
            found: envelope.payload_type.clone(),
        });
    }
    envelope.check_shape()?;
    let [signature] = envelope.signatures.as_slice() else {
        return Err(Error::MalformedEnvelope("a head carries exactly one signature".into()));
    };
    let candidates = certs.candidates(&signature.keyid, Role::Origin);
    if candidates.is_empty() {
        return Err(match certs.find(&signature.keyid, Role::Origin) {
            Err(Some(other)) => {
                Error::RoleNotAllowed(format!("head signed by {}, not an origin", other.cert.subject))
            }
            _ => Error::UnknownSigner { what: "head".into(), keyid: signature.keyid.clone() },
        });
    }
    envelope.verify_by(HEAD_TYPE, "head", &candidates[0].cert.key)?;
    let head: Head = decode_payload(HEAD_TYPE, &envelope.payload)?;
    first_passing(&candidates, |origin| {
        if head.origin != origin.cert.subject {
            return Err(Error::UnknownSigner {
                what: format!(
                    "head of origin {:?} signed by the key of {}",
                    head.origin, origin.cert.subject
                ),
                keyid: signature.keyid.clone(),
            });
        }
        if (head.seq == 0) != head.digest.is_none() {
            return Err(Error::MalformedPayload {
                payload_type: HEAD_TYPE.into(),
                reason: "digest is present exactly when seq > 0".into(),
            });
        }
        if head.expires_at <= head.issued_at {
            return Err(Error::MalformedPayload {
                payload_type: HEAD_TYPE.into(),
                reason: "expires_at is not after issued_at".into(),
            });
        }
        origin.cert.check_validity(head.issued_at)?;
        not_in_future("head", head.issued_at, ctx.now)?;
        ctx.revocations.check(origin, head.issued_at, "head")
    })?;
    Ok(Verified::new(message, head))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::Hierarchy;
    use crate::trust::RevocationSet;

    fn head(tree: &Hierarchy, seq: u64) -> Head {
        Head {
            origin: "mhlw".into(),
            scope: crate::fixtures::scope("jp"),
            seq,
            digest: (seq > 0).then(|| Digest::of(b"latest")),
            issued_at: tree.now,
            expires_at: tree.now.plus_secs(3600),
        }
    }

    #[test]
    fn a_signed_head_verifies_and_goes_stale() {
        let tree = Hierarchy::standard();
        let revocations = RevocationSet::default();
        let ctx = VerifyContext { anchors: &tree.anchors, revocations: &revocations, now: tree.later() };
        let message = head(&tree, 7).sign(&tree.origin_key, &tree.origin_cert);
        let verified = verify_head(&message.to_json(), ctx).expect("verifies");
        assert_eq!(verified.facts().seq, 7);
        assert_eq!(verified.facts().chain().to_string(), "mhlw@jp");
        assert!(!verified.facts().is_stale(tree.later()));
        assert!(verified.facts().is_stale(tree.now.plus_secs(3600)));
    }

    #[test]
    fn a_head_signed_by_a_relay_or_a_stranger_is_refused() {
        let tree = Hierarchy::standard();
        let revocations = RevocationSet::default();
        let ctx = VerifyContext { anchors: &tree.anchors, revocations: &revocations, now: tree.later() };
        let mut message = head(&tree, 7).sign(&tree.relays[0].key, &tree.relays[0].cert);
        assert_eq!(
            verify_head(&message.to_json(), ctx).map_err(|e| e.code()).err(),
            Some("role_not_allowed")
        );
        // The scope is part of the head: one that lacks it, or names no scope, is malformed.
        for payload in [
            br#"{"origin":"mhlw","seq":0,"issued_at":"2026-01-01T00:00:00Z","expires_at":"2026-01-02T00:00:00Z"}"#.as_slice(),
            br#"{"origin":"mhlw","scope":"JP","seq":0,"issued_at":"2026-01-01T00:00:00Z","expires_at":"2026-01-02T00:00:00Z"}"#.as_slice(),
        ] {
            let unscoped = HeadMessage {
                head: Envelope::sign(HEAD_TYPE, payload.to_vec(), &[&tree.origin_key]),
                certs: vec![tree.origin_cert.clone()],
            };
            assert_eq!(
                verify_head(&unscoped.to_json(), ctx).map_err(|e| e.code()).err(),
                Some("malformed_payload")
            );
        }
        message = head(&tree, 7).sign(&crate::fixtures::key("stranger"), &tree.origin_cert);
        assert_eq!(verify_head(&message.to_json(), ctx).map_err(|e| e.code()).err(), Some("unknown_signer"));
    }
}
