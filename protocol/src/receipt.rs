//! Clinic receipts (`application/vnd.kairan.receipt+json`): a clinic's signed statement that it
//! stored an advisory, and when a person opened it.
//!
//! A clinic signs one receipt per advisory when it stores it, and signs it again with
//! `opened_at` when the advisory is first opened (the later receipt supersedes the earlier: a
//! receiver keeps, per clinic and advisory, the one with `opened_at` if any). It travels to the
//! clinic's district as [`ReceiptMessage`]: the envelope and the clinic's certificate. The
//! clinic's certificate is issued by its district relay, so the district verifies a receipt
//! with its own chain as extra certificates ([`verify_receipt`]): one signature by a key
//! certified `clinic`, the certificate's subject is the receipt's `clinic`, valid and not
//! revoked at `received_at`, no time in the future, `opened_at` not before `received_at`.
//! The district then checks that the clinic's scope lies inside its own (node behaviour) and
//! counts it in its coverage statement ([`crate::coverage`]).

use serde::{Deserialize, Serialize};

use crate::advisory::check_id;
use crate::cert::{CertSet, Role, VerifiedCert};
use crate::delivery::{VerifyContext, first_passing, not_in_future, signer_candidates, single_signer};
use crate::envelope::{Envelope, RECEIPT_TYPE, decode_payload, encode_payload};
use crate::error::{Error, Result};
use crate::keys::{Digest, SecretKey};
use crate::limits::MAX_CERTS;
use crate::scope::Scope;
use crate::time::Timestamp;
use crate::verified::{Verifiable, Verified};

/// Largest receipt message: a receipt, a clinic certificate and a little room.
pub const MAX_RECEIPT_MESSAGE_BYTES: usize = 8 * 1024;

/// What a clinic states about one advisory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// The clinic's id (its certificate's subject).
    pub clinic: String,
    /// The advisory's digest.
    pub advisory: Digest,
    /// When the clinic stored it.
    pub received_at: Timestamp,
    /// When a person first opened it; absent until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opened_at: Option<Timestamp>,
}

/// A receipt as it travels: the envelope and the clinic's certificate (the district adds its
/// own chain when verifying).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptMessage {
    /// DSSE envelope of the receipt, signed by the clinic key.
    pub receipt: Envelope,
    /// The clinic's certificate (and any above it the sender has).
    pub certs: Vec<Envelope>,
}

impl ReceiptMessage {
    /// Compact JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

impl Receipt {
    /// Signs the receipt with the clinic's key; `chain` is the clinic's certificate.
    pub fn sign(&self, clinic_key: &SecretKey, chain: &[Envelope]) -> ReceiptMessage {
        let envelope = Envelope::sign(RECEIPT_TYPE, encode_payload(self), &[clinic_key]);
        ReceiptMessage { receipt: envelope, certs: chain.to_vec() }
    }
}

/// What [`verify_receipt`] established.
#[derive(Debug, Clone)]
pub struct ReceiptFacts {
    /// The receipt.
    pub receipt: Receipt,
    /// The clinic certificate that signed it.
    pub signer: VerifiedCert,
}

impl ReceiptFacts {
    /// The clinic's certified scope.
    pub fn scope(&self) -> &Scope {
        &self.signer.cert.scope
    }
}

impl Verifiable for ReceiptMessage {
    type Facts = ReceiptFacts;
}

/// Verifies a receipt message at `now`, with `extra_certs` (the verifier's own chain, which
/// issued the clinic's certificate) beside the message's certificates.
pub fn verify_receipt(
    bytes: &[u8],
    extra_certs: &[Envelope],
    ctx: VerifyContext<'_>,
) -> Result<Verified<ReceiptMessage>> {
    if bytes.len() > MAX_RECEIPT_MESSAGE_BYTES {
        return Err(Error::Oversize {
            what: "receipt",
            limit: MAX_RECEIPT_MESSAGE_BYTES,
            actual: bytes.len(),
        });
    }
    let message: ReceiptMessage = serde_json::from_slice(bytes)
        .map_err(|e| Error::MalformedPayload { payload_type: RECEIPT_TYPE.into(), reason: e.to_string() })?;
    if message.certs.len() > MAX_CERTS {
        return Err(Error::TooManyCerts { count: message.certs.len(), limit: MAX_CERTS });
    }
    let mut all = message.certs.clone();
    all.extend(extra_certs.iter().filter(|cert| !message.certs.contains(cert)).cloned());
    let certs = CertSet::verify(&all, ctx.anchors, ctx.revocations, ctx.now)?;
    let what = "receipt";
    let signer = single_signer(&message.receipt, RECEIPT_TYPE, what)?;
    let candidates = signer_candidates(&certs, signer, Role::Clinic, what)?;
    message.receipt.verify_by(RECEIPT_TYPE, what, &candidates[0].cert.key)?;
    let receipt: Receipt = decode_payload(RECEIPT_TYPE, &message.receipt.payload)?;
    let malformed = |reason: String| Error::MalformedPayload { payload_type: RECEIPT_TYPE.into(), reason };
    check_id("clinic", &receipt.clinic).map_err(malformed)?;
    if receipt.opened_at.is_some_and(|opened| opened < receipt.received_at) {
        return Err(malformed("opened_at is before received_at".into()));
    }
    let signed_by = first_passing(&candidates, |cert| {
        if cert.cert.subject != receipt.clinic {
            return Err(Error::UnknownSigner {
                what: format!(
                    "receipt of clinic {} signed by the key of {}",
                    receipt.clinic, cert.cert.subject
                ),
                keyid: signer.to_owned(),
            });
        }
        cert.cert.check_validity(receipt.received_at)?;
        not_in_future("receipt received_at", receipt.received_at, ctx.now)?;
        if let Some(opened) = receipt.opened_at {
            not_in_future("receipt opened_at", opened, ctx.now)?;
        }
        ctx.revocations.check(cert, receipt.received_at, what)
    })?
    .clone();
    Ok(Verified::new(message, ReceiptFacts { receipt, signer: signed_by }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RevocationSet;
    use crate::fixtures::Hierarchy;

    #[test]
    fn a_clinic_receipt_verifies_with_its_district_chain_and_names_its_scope() {
        let tree = Hierarchy::standard();
        let (clinic_key, clinic_cert) = tree.clinic("chuo-clinic-1");
        let receipt = Receipt {
            clinic: "chuo-clinic-1".into(),
            advisory: Digest::of(b"advisory"),
            received_at: tree.now,
            opened_at: Some(tree.now.plus_secs(60)),
        };
        let bytes = receipt.sign(&clinic_key, std::slice::from_ref(&clinic_cert)).to_json();
        let revocations = RevocationSet::default();
        let ctx = VerifyContext { anchors: &tree.anchors, revocations: &revocations, now: tree.later() };
        let verified = verify_receipt(&bytes, &tree.relay_chain(2), ctx).expect("verifies");
        assert_eq!(verified.facts().receipt, receipt);
        assert_eq!(verified.facts().scope().to_string(), "jp/13/chuo");
        // Without the district's chain the clinic's certificate does not reach a root.
        assert!(verify_receipt(&bytes, &[], ctx).is_err());
        // In another clinic's name: unknown_signer.
        let forged = Receipt { clinic: "chuo-clinic-2".into(), ..receipt.clone() };
        let bytes = forged.sign(&clinic_key, std::slice::from_ref(&clinic_cert)).to_json();
        let error = verify_receipt(&bytes, &tree.relay_chain(2), ctx).expect_err("refused");
        assert_eq!(error.code(), "unknown_signer");
        // Opened before it was received: malformed.
        let backwards = Receipt { opened_at: Some(tree.now.plus_secs(-60)), ..receipt.clone() };
        let bytes = backwards.sign(&clinic_key, std::slice::from_ref(&clinic_cert)).to_json();
        assert_eq!(
            verify_receipt(&bytes, &tree.relay_chain(2), ctx).expect_err("refused").code(),
            "malformed_payload"
        );
        // A relay key is not a clinic key: role_not_allowed.
        let bytes = receipt.sign(&tree.relays[2].key, std::slice::from_ref(&clinic_cert)).to_json();
        assert!(verify_receipt(&bytes, &tree.relay_chain(2), ctx).is_err());
        // From the future.
        let ahead = Receipt { received_at: tree.later().plus_secs(3600), opened_at: None, ..receipt };
        let bytes = ahead.sign(&clinic_key, std::slice::from_ref(&clinic_cert)).to_json();
        assert_eq!(
            verify_receipt(&bytes, &tree.relay_chain(2), ctx).expect_err("refused").code(),
            "from_the_future"
        );
    }
}
