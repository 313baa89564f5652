//! DSSE v1 envelopes: pre-authentication encoding, signing, strict verification.
//!
//! The signature of every kairan object is Ed25519 over
//! `PAE(type, payload) = "DSSEv1" SP len(type) SP type SP len(payload) SP payload`.
//! The payload is decoded only after a signature over it has verified.
//!
//! kairan is stricter than the DSSE minimum on purpose: *every* signature on an envelope must
//! name a key the verifier accepts in that position and must verify. An envelope therefore
//! holds no byte that verification ignores, which is what lets a single flipped byte anywhere
//! in a delivery be detected (see the mutation property test).

use std::collections::BTreeSet;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::keys::{KeyId, PublicKey, SecretKey};
use crate::limits::{MAX_ENVELOPE_BYTES, MAX_PAYLOAD_BYTES, MAX_SIGNATURES};

/// `payloadType` of advisories.
pub const ADVISORY_TYPE: &str = "application/vnd.kairan.advisory+json";
/// `payloadType` of certificates.
pub const CERT_TYPE: &str = "application/vnd.kairan.cert+json";
/// `payloadType` of hop attestations.
pub const HOP_TYPE: &str = "application/vnd.kairan.hop+json";
/// `payloadType` of revocation statements.
pub const REVOCATION_TYPE: &str = "application/vnd.kairan.revocation+json";
/// `payloadType` of signed origin heads.
pub const HEAD_TYPE: &str = "application/vnd.kairan.head+json";
/// `payloadType` of root-anchor rotation statements.
pub const ANCHORS_TYPE: &str = "application/vnd.kairan.anchors+json";
/// `payloadType` of a parent's signed statement of one catch-up page.
pub const SYNC_PAGE_TYPE: &str = "application/vnd.kairan.sync-page+json";
/// `payloadType` of the national node's signed acceptance of an advisory (durably stored).
pub const ACCEPTANCE_TYPE: &str = "application/vnd.kairan.acceptance+json";
/// `payloadType` of a district's signed recipient directory (part of one version).
pub const RECIPIENTS_TYPE: &str = "application/vnd.kairan.recipients+json";
/// `payloadType` of a district's group-key message (part of one epoch).
pub const GROUP_KEY_TYPE: &str = "application/vnd.kairan.group-key+json";
/// `payloadType` of clinic receipts.
pub const RECEIPT_TYPE: &str = "application/vnd.kairan.receipt+json";
/// `payloadType` of a district's coverage statement (receipts counted).
pub const COVERAGE_TYPE: &str = "application/vnd.kairan.coverage+json";

/// The DSSE v1 pre-authentication encoding of a payload and its type.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload_type.len() + payload.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

/// One DSSE signature: a key id hint and the 64-byte Ed25519 signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeSignature {
    /// Lowercase hex SHA-256 of the signer's raw public key. A hint for lookup only.
    pub keyid: String,
    /// The signature bytes (standard base64 with padding on the wire).
    #[serde(with = "base64_bytes")]
    pub sig: Vec<u8>,
}

/// A DSSE v1 envelope, as JSON on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// The exact signed payload bytes (standard base64 with padding on the wire).
    #[serde(with = "base64_bytes")]
    pub payload: Vec<u8>,
    /// The payload type, e.g. [`ADVISORY_TYPE`].
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// One or more signatures.
    pub signatures: Vec<EnvelopeSignature>,
}

impl Envelope {
    /// Signs `payload` under `payload_type` with each of `signers`.
    pub fn sign(payload_type: &str, payload: Vec<u8>, signers: &[&SecretKey]) -> Self {
        let message = pae(payload_type, &payload);
        let signatures = signers
            .iter()
            .map(|signer| EnvelopeSignature {
                keyid: signer.keyid().as_str().to_owned(),
                sig: signer.sign(&message).to_vec(),
            })
            .collect();
        Self { payload, payload_type: payload_type.to_owned(), signatures }
    }

    /// Parses envelope JSON, refusing oversize input before parsing.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(Error::Oversize { what: "envelope", limit: MAX_ENVELOPE_BYTES, actual: bytes.len() });
        }
        let envelope: Envelope =
            serde_json::from_slice(bytes).map_err(|e| Error::MalformedEnvelope(e.to_string()))?;
        envelope.check_shape()?;
        Ok(envelope)
    }

    /// Checks the limits and shape that parsing alone does not (counts, sizes, signature length).
    pub fn check_shape(&self) -> Result<()> {
        if self.payload.len() > MAX_PAYLOAD_BYTES {
            return Err(Error::Oversize {
                what: "payload",
                limit: MAX_PAYLOAD_BYTES,
                actual: self.payload.len(),
            });
        }
        if self.signatures.len() > MAX_SIGNATURES {
            return Err(Error::Oversize {
                what: "signatures",
                limit: MAX_SIGNATURES,
                actual: self.signatures.len(),
            });
        }
        if let Some(bad) = self.signatures.iter().find(|s| s.keyid.len() > 64) {
            return Err(Error::MalformedEnvelope(format!(
                "key id hint of {} characters; key ids are 64 hex characters",
                bad.keyid.len()
            )));
        }
        if let Some(bad) = self.signatures.iter().find(|s| s.sig.len() != 64) {
            return Err(Error::MalformedEnvelope(format!(
                "signature by {:?} is {} bytes, Ed25519 signatures are 64",
                bad.keyid,
                bad.sig.len()
            )));
        }
        Ok(())
    }

    /// The compact JSON form.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing a struct of strings and byte vectors cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The key id hints of the signatures, in order.
    pub fn keyid_hints(&self) -> impl Iterator<Item = &str> {
        self.signatures.iter().map(|s| s.keyid.as_str())
    }

    /// Verifies that every signature is by one of the keys `lookup` accepts and verifies
    /// strictly, and that at least `threshold` distinct keys signed. Returns the distinct key
    /// ids that signed, in first-seen order. `what` names the object in errors.
    ///
    /// Order of checks: payload type, then each signature in order (unknown signer, then
    /// signature), then the threshold.
    pub fn verify_with<'k>(
        &self,
        expected_type: &str,
        what: &str,
        threshold: usize,
        lookup: impl Fn(&str) -> Option<&'k PublicKey>,
    ) -> Result<Vec<KeyId>> {
        if self.payload_type != expected_type {
            return Err(Error::WrongPayloadType {
                expected: expected_type.to_owned(),
                found: self.payload_type.clone(),
            });
        }
        self.check_shape()?;
        let message = pae(&self.payload_type, &self.payload);
        let mut seen = BTreeSet::new();
        let mut signers = Vec::new();
        for signature in &self.signatures {
            let key = lookup(&signature.keyid).ok_or_else(|| Error::UnknownSigner {
                what: what.to_owned(),
                keyid: signature.keyid.clone(),
            })?;
            if !key.verify_strict(&message, &signature.sig) {
                return Err(Error::BadSignature { what: what.to_owned(), keyid: signature.keyid.clone() });
            }
            if seen.insert(key.keyid().clone()) {
                signers.push(key.keyid().clone());
            }
        }
        let needed = threshold.max(1);
        if signers.len() < needed {
            return Err(Error::ThresholdNotMet { what: what.to_owned(), needed, found: signers.len() });
        }
        Ok(signers)
    }

    /// Verifies that the envelope is signed by `key` (and only by it).
    pub fn verify_by(&self, expected_type: &str, what: &str, key: &PublicKey) -> Result<()> {
        self.verify_with(expected_type, what, 1, |hint| (hint == key.keyid().as_str()).then_some(key))
            .map(|_| ())
    }
}

/// Decodes a verified payload as JSON of type `T`.
pub(crate) fn decode_payload<T: serde::de::DeserializeOwned>(
    payload_type: &str,
    payload: &[u8],
) -> Result<T> {
    serde_json::from_slice(payload)
        .map_err(|e| Error::MalformedPayload { payload_type: payload_type.to_owned(), reason: e.to_string() })
}

/// Encodes a payload struct as compact JSON bytes (the bytes that get signed).
pub(crate) fn encode_payload<T: Serialize>(value: &T) -> Vec<u8> {
    // Our payload types serialize only strings, numbers, lists and maps with string keys.
    serde_json::to_vec(value).unwrap_or_default()
}

/// Serde adapter: bytes as standard base64 with padding, decoded strictly.
pub(crate) mod base64_bytes {
    use super::*;

    pub fn serialize<S: serde::Serializer>(
        bytes: &[u8],
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        STANDARD.decode(text.as_bytes()).map_err(|e| serde::de::Error::custom(format!("bad base64: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SecretKey {
        SecretKey::from_seed(&[seed; 32]).expect("valid seed")
    }

    #[test]
    fn pae_matches_the_dsse_spec_example() {
        // From the DSSE v1 protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn sign_then_verify() {
        let signer = key(1);
        let envelope = Envelope::sign(ADVISORY_TYPE, b"{}".to_vec(), &[&signer]);
        let parsed = Envelope::from_json(&envelope.to_json()).expect("parses");
        parsed.verify_by(ADVISORY_TYPE, "advisory", signer.public()).expect("verifies");
    }

    #[test]
    fn wrong_type_and_wrong_key_are_refused() {
        let signer = key(1);
        let envelope = Envelope::sign(ADVISORY_TYPE, b"{}".to_vec(), &[&signer]);
        assert_eq!(
            envelope.verify_by(HOP_TYPE, "hop", signer.public()).map_err(|e| e.code()),
            Err("wrong_payload_type")
        );
        assert_eq!(
            envelope.verify_by(ADVISORY_TYPE, "advisory", key(2).public()).map_err(|e| e.code()),
            Err("unknown_signer")
        );
    }

    #[test]
    fn threshold_counts_each_keyid_once() {
        let (a, b) = (key(1), key(2));
        let keys = [a.public().clone(), b.public().clone()];
        let lookup = |hint: &str| keys.iter().find(|k| k.keyid().as_str() == hint);
        let twice_a = Envelope::sign(CERT_TYPE, b"{}".to_vec(), &[&a, &a]);
        let err = twice_a.verify_with(CERT_TYPE, "certificate", 2, lookup).expect_err("one distinct key");
        assert_eq!(err, Error::ThresholdNotMet { what: "certificate".into(), needed: 2, found: 1 });
        let both = Envelope::sign(CERT_TYPE, b"{}".to_vec(), &[&a, &b]);
        assert_eq!(both.verify_with(CERT_TYPE, "certificate", 2, lookup).expect("2 of 2").len(), 2);
    }

    #[test]
    fn tampered_payload_is_a_bad_signature() {
        let signer = key(1);
        let mut envelope = Envelope::sign(ADVISORY_TYPE, b"{\"a\":1}".to_vec(), &[&signer]);
        envelope.payload[5] ^= 1;
        assert_eq!(
            envelope.verify_by(ADVISORY_TYPE, "advisory", signer.public()).map_err(|e| e.code()),
            Err("bad_signature")
        );
    }

    #[test]
    fn oversize_and_bad_base64_are_refused_before_verification() {
        let huge = vec![b' '; MAX_ENVELOPE_BYTES + 1];
        assert_eq!(Envelope::from_json(&huge).map_err(|e| e.code()), Err("oversize_input"));
        let bad = br#"{"payload":"!!!","payloadType":"x","signatures":[]}"#;
        assert_eq!(Envelope::from_json(bad).map_err(|e| e.code()), Err("malformed_envelope"));
    }
}
