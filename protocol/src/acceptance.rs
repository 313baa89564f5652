//! Signed acceptances (`application/vnd.kairan.acceptance+json`): the national node's word to
//! an origin that an advisory is stored durably.
//!
//! A broker's PUBACK says only that the *broker* holds a message; an embedded broker holds it
//! in memory, so a crash of the national node right after the PUBACK would lose it. The
//! national node therefore signs an [`Acceptance`] with its relay key once the advisory is in a
//! durable commit (or, for a copy it already holds, once everything written before is durable)
//! and publishes it to the origin. `kairan publish` reports success only when an acceptance for
//! its digest verifies with [`verify_acceptance`]; otherwise it publishes the same bytes again.

use serde::{Deserialize, Serialize};

use crate::advisory::check_id;
use crate::cert::{CertSet, Role, VerifiedCert};
use crate::delivery::{VerifyContext, first_passing, signer_candidates, single_signer};
use crate::envelope::{ACCEPTANCE_TYPE, Envelope, decode_payload, encode_payload};
use crate::error::{Error, Result};
use crate::keys::{Digest, SecretKey};
use crate::limits::MAX_CERTS;
use crate::time::Timestamp;
use crate::verified::{Verifiable, Verified};

/// Largest acceptance message accepted (a statement and a short certificate chain).
pub const MAX_ACCEPTANCE_BYTES: usize = 64 * 1024;

/// What the national node states: it holds `digest`, from `origin`, durably.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Acceptance {
    /// The node that stored it (the national node's id).
    pub node: String,
    /// The origin whose ingest topic it came on.
    pub origin: String,
    /// The advisory digest (`sha256:` of the advisory envelope's payload).
    pub digest: Digest,
    /// When the node decided to accept it (the node's clock).
    pub accepted_at: Timestamp,
}

/// An acceptance as it travels: the signed statement and the signer's certificate chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptanceMessage {
    /// DSSE envelope of an [`Acceptance`], signed by the node's relay key.
    pub statement: Envelope,
    /// The node's certificate and those above it, up to a root-issued one.
    pub certs: Vec<Envelope>,
}

impl AcceptanceMessage {
    /// JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// What verifying an acceptance established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptanceFacts {
    /// The certificate of the node that signed it.
    pub signer: VerifiedCert,
}

impl Verifiable for Acceptance {
    type Facts = AcceptanceFacts;
}

impl Acceptance {
    /// Signs this acceptance with the node's relay key, attaching its certificate chain.
    pub fn sign(&self, relay_key: &SecretKey, chain: &[Envelope]) -> AcceptanceMessage {
        let statement = Envelope::sign(ACCEPTANCE_TYPE, encode_payload(self), &[relay_key]);
        AcceptanceMessage { statement, certs: chain.to_vec() }
    }
}

/// Parses and verifies an acceptance message, in this order: size; JSON shape; counts; the
/// certificates chain to the anchors at `now` with the revocations in force; one signature by
/// a key certified `relay`; the signature; the statement decodes; the signer's certificate is
/// `expected_node`'s and not revoked at `now`.
pub fn verify_acceptance(
    bytes: &[u8],
    expected_node: &str,
    ctx: VerifyContext<'_>,
) -> Result<Verified<Acceptance>> {
    let what = "acceptance";
    if bytes.len() > MAX_ACCEPTANCE_BYTES {
        return Err(Error::Oversize {
            what: "acceptance message",
            limit: MAX_ACCEPTANCE_BYTES,
            actual: bytes.len(),
        });
    }
    let message: AcceptanceMessage = serde_json::from_slice(bytes).map_err(|e| Error::MalformedPayload {
        payload_type: ACCEPTANCE_TYPE.into(),
        reason: e.to_string(),
    })?;
    if message.certs.len() > MAX_CERTS {
        return Err(Error::TooManyCerts { count: message.certs.len(), limit: MAX_CERTS });
    }
    let certs = CertSet::verify(&message.certs, ctx.anchors, ctx.revocations, ctx.now)?;
    let signer = single_signer(&message.statement, ACCEPTANCE_TYPE, what)?;
    let candidates = signer_candidates(&certs, signer, Role::Relay, what)?;
    message.statement.verify_by(ACCEPTANCE_TYPE, what, &candidates[0].cert.key)?;
    let acceptance: Acceptance = decode_payload(ACCEPTANCE_TYPE, &message.statement.payload)?;
    let malformed = |reason: String| Error::MalformedPayload { payload_type: ACCEPTANCE_TYPE.into(), reason };
    check_id("node", &acceptance.node).map_err(malformed)?;
    check_id("origin", &acceptance.origin).map_err(malformed)?;
    let signed_by = first_passing(&candidates, |cert| {
        if cert.cert.subject != expected_node || acceptance.node != expected_node {
            return Err(Error::UnknownSigner {
                what: format!("{what} by {} for {}, not {expected_node}", cert.cert.subject, acceptance.node),
                keyid: signer.to_owned(),
            });
        }
        ctx.revocations.check(cert, ctx.now, what)
    })?
    .clone();
    Ok(Verified::new(acceptance, AcceptanceFacts { signer: signed_by }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::Hierarchy;
    use crate::trust::RevocationSet;

    fn acceptance(tree: &Hierarchy) -> Acceptance {
        Acceptance {
            node: "jp".into(),
            origin: "mhlw".into(),
            digest: Digest::of(b"advisory"),
            accepted_at: tree.later(),
        }
    }

    fn check(tree: &Hierarchy, bytes: &[u8], node: &str) -> Result<Verified<Acceptance>> {
        let revocations = RevocationSet::default();
        let ctx = VerifyContext { anchors: &tree.anchors, revocations: &revocations, now: tree.later() };
        verify_acceptance(bytes, node, ctx)
    }

    #[test]
    fn an_acceptance_signed_by_the_national_node_verifies() {
        let tree = Hierarchy::standard();
        let message = acceptance(&tree).sign(&tree.relays[0].key, &[tree.relays[0].cert.clone()]);
        let verified = check(&tree, &message.to_json(), "jp").expect("verifies");
        assert_eq!(verified.value(), &acceptance(&tree));
        assert_eq!(verified.facts().signer.cert.subject, "jp");
    }

    #[test]
    fn an_acceptance_by_another_relay_is_refused() {
        let tree = Hierarchy::standard();
        let chain = [tree.relays[1].cert.clone(), tree.relays[0].cert.clone()];
        let mut claimed = acceptance(&tree);
        claimed.node = "jp-13".into();
        let by_prefecture = claimed.sign(&tree.relays[1].key, &chain);
        let refused = check(&tree, &by_prefecture.to_json(), "jp").map_err(|e| e.code()).err();
        assert_eq!(refused, Some("unknown_signer"));
        // Signed by the prefecture but claiming to be the national node's.
        let forged = acceptance(&tree).sign(&tree.relays[1].key, &chain);
        assert_eq!(check(&tree, &forged.to_json(), "jp").map_err(|e| e.code()).err(), Some("unknown_signer"));
    }

    #[test]
    fn an_edited_acceptance_is_refused() {
        let tree = Hierarchy::standard();
        let mut message = acceptance(&tree).sign(&tree.relays[0].key, &[tree.relays[0].cert.clone()]);
        let mut edited = acceptance(&tree);
        edited.digest = Digest::of(b"another advisory");
        message.statement.payload = encode_payload(&edited);
        assert_eq!(check(&tree, &message.to_json(), "jp").map_err(|e| e.code()).err(), Some("bad_signature"));
    }

    #[test]
    fn junk_and_oversize_are_refused() {
        let tree = Hierarchy::standard();
        assert_eq!(check(&tree, b"{", "jp").map_err(|e| e.code()).err(), Some("malformed_payload"));
        let big = vec![b' '; MAX_ACCEPTANCE_BYTES + 1];
        assert_eq!(check(&tree, &big, "jp").map_err(|e| e.code()).err(), Some("oversize_input"));
        let unsigned = AcceptanceMessage {
            statement: Envelope {
                payload_type: ACCEPTANCE_TYPE.into(),
                payload: encode_payload(&acceptance(&tree)),
                signatures: Vec::new(),
            },
            certs: vec![tree.relays[0].cert.clone()],
        };
        assert!(check(&tree, &unsigned.to_json(), "jp").is_err());
    }
}
