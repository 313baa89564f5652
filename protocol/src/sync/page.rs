//! Signed catch-up pages (`application/vnd.kairan.sync-page+json`).
//!
//! A parent answering a child's catch-up request signs a [`PageStatement`] with its relay key:
//! the child's id, the page's `after`, `scanned_upto` and `last_relay_seq`, and the digests of
//! the page's deliveries (their advisory digests) in order. The statement travels in the
//! [`SyncResponse`] with the parent's certificate chain. [`verify_page`] checks the chain to
//! the anchors, that the signer is a relay certified as the parent the child expects, the
//! signature, and that the statement describes this page, for this child, exactly.

use serde::{Deserialize, Serialize};

use crate::advisory::check_id;
use crate::cert::{CertSet, Role, VerifiedCert};
use crate::delivery::{VerifyContext, first_passing, signer_candidates, single_signer};
use crate::envelope::{Envelope, SYNC_PAGE_TYPE, decode_payload, encode_payload};
use crate::error::{Error, Result};
use crate::keys::{Digest, SecretKey};
use crate::limits::MAX_CERTS;
use crate::verified::{Verifiable, Verified};

use super::{LogProof, MAX_SYNC_PAGE_ENTRIES, SyncResponse, parse_response};

/// What a parent states about one page it sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageStatement {
    /// The child it answers (its node id: the `<child>` of the answer topic).
    pub child: String,
    /// The request's `after`.
    pub after: u64,
    /// How far the parent scanned its log.
    pub scanned_upto: u64,
    /// The parent's latest durable relay_seq.
    pub last_relay_seq: u64,
    /// The advisory digest of each delivery of the page, in page order.
    pub deliveries: Vec<Digest>,
    /// The digest of the page's [`LogProof`] (its compact JSON), when it carries one: the
    /// parent stands by the consistency proof it sent, so a proof that fails is evidence
    /// against it, not against whoever relayed the page. Absent otherwise (old statements
    /// still verify).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tlog: Option<Digest>,
}

/// The digest a page statement gives a [`LogProof`].
pub fn log_proof_digest(proof: &LogProof) -> Digest {
    Digest::of(&serde_json::to_vec(proof).unwrap_or_default())
}

impl PageStatement {
    /// The statement describing `response`, for `child`.
    pub fn of(response: &SyncResponse, child: &str) -> Self {
        Self {
            child: child.to_owned(),
            after: response.after,
            scanned_upto: response.scanned_upto,
            last_relay_seq: response.last_relay_seq,
            deliveries: response.deliveries.iter().map(|d| d.claimed_digest()).collect(),
            tlog: response.tlog.as_ref().map(log_proof_digest),
        }
    }
}

/// What verifying a page established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageFacts {
    /// The verified statement (it equals the page's fields).
    pub statement: PageStatement,
    /// The parent's certificate that signed it.
    pub parent: VerifiedCert,
}

impl Verifiable for SyncResponse {
    type Facts = PageFacts;
}

/// Signs `response` for `child` with the parent's relay key, attaching the parent's
/// certificate chain (its own certificate and those up to a root-issued one).
pub fn sign_page(
    mut response: SyncResponse,
    child: &str,
    relay_key: &SecretKey,
    chain: &[Envelope],
) -> SyncResponse {
    let statement = PageStatement::of(&response, child);
    response.statement = Some(Envelope::sign(SYNC_PAGE_TYPE, encode_payload(&statement), &[relay_key]));
    response.certs = chain.to_vec();
    response
}

/// Parses a sync response (bounded, [`parse_response`]) and verifies its page statement: the
/// only way for a child to accept a page.
pub fn verify_page(
    bytes: &[u8],
    expected_parent: &str,
    child: &str,
    ctx: VerifyContext<'_>,
) -> Result<Verified<SyncResponse>> {
    verify_parsed_page(parse_response(bytes)?, expected_parent, child, ctx)
}

/// Verifies the page statement of a parsed response, in this order: counts; a statement is
/// present; the certificates chain (at `now`, with the revocations in force); one signature by
/// a key certified `relay`; the signature; the statement decodes; the signer's certificate is
/// the expected parent's and not revoked at `now`; the statement matches the page and the child.
pub fn verify_parsed_page(
    response: SyncResponse,
    expected_parent: &str,
    child: &str,
    ctx: VerifyContext<'_>,
) -> Result<Verified<SyncResponse>> {
    let what = "sync page";
    let entries = MAX_SYNC_PAGE_ENTRIES as usize;
    if response.deliveries.len() > entries {
        return Err(Error::Oversize {
            what: "sync page deliveries",
            limit: entries,
            actual: response.deliveries.len(),
        });
    }
    if response.certs.len() > MAX_CERTS {
        return Err(Error::TooManyCerts { count: response.certs.len(), limit: MAX_CERTS });
    }
    let Some(envelope) = &response.statement else {
        return Err(Error::ThresholdNotMet { what: format!("{what} (no statement)"), needed: 1, found: 0 });
    };
    let certs = CertSet::verify(&response.certs, ctx.anchors, ctx.revocations, ctx.now)?;
    let signer = single_signer(envelope, SYNC_PAGE_TYPE, what)?;
    let candidates = signer_candidates(&certs, signer, Role::Relay, what)?;
    envelope.verify_by(SYNC_PAGE_TYPE, what, &candidates[0].cert.key)?;
    let statement: PageStatement = decode_payload(SYNC_PAGE_TYPE, &envelope.payload)?;
    let malformed = |reason: String| Error::MalformedPayload { payload_type: SYNC_PAGE_TYPE.into(), reason };
    check_id("child", &statement.child).map_err(malformed)?;
    if statement.deliveries.len() > entries {
        return Err(malformed(format!("{} deliveries; at most {entries}", statement.deliveries.len())));
    }
    let parent = first_passing(&candidates, |parent| {
        if parent.cert.subject != expected_parent {
            return Err(Error::UnknownSigner {
                what: format!("{what} signed by {}, not the parent {expected_parent}", parent.cert.subject),
                keyid: signer.to_owned(),
            });
        }
        ctx.revocations.check(parent, ctx.now, what)
    })?
    .clone();
    let mismatch = |field: &str, stated: String, found: String| {
        Err(Error::PageMismatch(format!("{field}: the statement says {stated}, the page {found}")))
    };
    if statement.child != child {
        return mismatch("child", statement.child.clone(), child.to_owned());
    }
    for (field, stated, found) in [
        ("after", statement.after, response.after),
        ("scanned_upto", statement.scanned_upto, response.scanned_upto),
        ("last_relay_seq", statement.last_relay_seq, response.last_relay_seq),
    ] {
        if stated != found {
            return mismatch(field, stated.to_string(), found.to_string());
        }
    }
    let carried: Vec<Digest> = response.deliveries.iter().map(|d| d.claimed_digest()).collect();
    if statement.deliveries != carried {
        let at = statement.deliveries.iter().zip(&carried).take_while(|(a, b)| a == b).count();
        let stated = format!("{} deliveries", statement.deliveries.len());
        return mismatch(
            "deliveries",
            stated,
            format!("{} deliveries, first difference at {at}", carried.len()),
        );
    }
    let carried = response.tlog.as_ref().map(log_proof_digest);
    if statement.tlog != carried {
        let show = |d: Option<Digest>| d.map_or_else(|| "none".to_owned(), |d| d.to_string());
        return mismatch("tlog", show(statement.tlog), show(carried));
    }
    Ok(Verified::new(response, PageFacts { statement, parent }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{self, Hierarchy};
    use crate::trust::RevocationSet;

    fn page(tree: &Hierarchy) -> SyncResponse {
        let delivery = tree.delivery(&fixtures::sample_advisory("mhlw", 1, None), 2);
        SyncResponse {
            after: 4,
            scanned_upto: 9,
            last_relay_seq: 12,
            deliveries: vec![delivery],
            ..Default::default()
        }
    }

    fn check(tree: &Hierarchy, response: &SyncResponse, child: &str) -> Result<Verified<SyncResponse>> {
        let revocations = RevocationSet::default();
        let ctx = VerifyContext { anchors: &tree.anchors, revocations: &revocations, now: tree.later() };
        verify_page(&response.to_json(), "jp-13", child, ctx)
    }

    #[test]
    fn a_signed_page_verifies_and_names_its_deliveries() {
        let tree = Hierarchy::standard();
        let chain = [tree.relays[1].cert.clone(), tree.relays[0].cert.clone()];
        let signed = sign_page(page(&tree), "jp-13-chuo", &tree.relays[1].key, &chain);
        let verified = check(&tree, &signed, "jp-13-chuo").expect("verifies");
        assert_eq!(verified.facts().statement.deliveries, vec![signed.deliveries[0].claimed_digest()]);
        assert_eq!(verified.facts().parent.cert.subject, "jp-13");
    }

    #[test]
    fn the_log_proof_is_bound_by_the_statement() {
        let tree = Hierarchy::standard();
        let chain = [tree.relays[1].cert.clone(), tree.relays[0].cert.clone()];
        let mut with_proof = page(&tree);
        with_proof.tlog =
            Some(LogProof { checkpoint: "c\n".into(), from: 0, consistency: vec![], inclusion: vec![] });
        let mut signed = sign_page(with_proof, "jp-13-chuo", &tree.relays[1].key, &chain);
        assert!(check(&tree, &signed, "jp-13-chuo").is_ok());
        if let Some(proof) = &mut signed.tlog {
            proof.from = 1;
        }
        assert_eq!(check(&tree, &signed, "jp-13-chuo").map_err(|e| e.code()).err(), Some("page_mismatch"));
        signed.tlog = None;
        assert_eq!(check(&tree, &signed, "jp-13-chuo").map_err(|e| e.code()).err(), Some("page_mismatch"));
    }

    #[test]
    fn an_unsigned_page_is_refused() {
        let tree = Hierarchy::standard();
        assert_eq!(
            check(&tree, &page(&tree), "jp-13-chuo").map_err(|e| e.code()).err(),
            Some("threshold_not_met")
        );
    }
}
