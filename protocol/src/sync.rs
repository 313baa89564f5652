//! Catch-up messages: a child asks its parent for the deliveries of the parent's output log
//! after a point, and the parent answers in pages. These are the wire types and their
//! bounded, strict parsers; the topics and the paging logic live in the node crate.
//!
//! The parent signs each page: a small statement naming the child, the page's bounds and the
//! digests of its deliveries, carried in the response with the parent's certificate chain
//! ([`page`]: [`sign_page`], [`verify_page`]). A child accepts a page only through
//! [`verify_page`], so nobody else who can publish on the answer topic can move its cursor.
//! The deliveries themselves are then verified like live ones, and a trust bundle in the
//! response is merged and verified like one from the trust topic.

use serde::{Deserialize, Serialize};

use crate::delivery::Delivery;
use crate::envelope::Envelope;
use crate::error::{Error, Result};
use crate::head::HeadMessage;
use crate::keys::Digest;
use crate::limits::{MAX_DELIVERY_BYTES, MAX_ENVELOPE_BYTES};
use crate::scope::Scope;
use crate::trust::TrustBundle;

pub mod page;

pub use page::{PageFacts, PageStatement, log_proof_digest, sign_page, verify_page, verify_parsed_page};

/// Largest sync request accepted (bytes); anything larger is refused unparsed.
pub const MAX_SYNC_REQUEST_BYTES: usize = 1024;
/// Largest page of deliveries in one response (serialized bytes, approximately).
pub const MAX_SYNC_PAGE_BYTES: usize = 768 * 1024;
/// Largest sync response accepted: a page plus one maximal delivery of overshoot, room for the
/// signed page statement and the parent's certificate chain, and 4 KiB for the other fields.
pub const MAX_SYNC_RESPONSE_BYTES: usize = MAX_SYNC_PAGE_BYTES
    + MAX_DELIVERY_BYTES
    + 2 * MAX_ENVELOPE_BYTES
    + 4096
    + MAX_PAGE_CHECKPOINT_BYTES
    + MAX_LOG_PROOF_HASHES * 48
    + MAX_INCLUSION_PROOFS * (MAX_INCLUSION_HASHES * 48 + 64);
/// Most deliveries a child may ask for in one page.
pub const MAX_SYNC_PAGE_ENTRIES: u32 = 512;
/// Most heads one answer may carry (one per origin).
pub const MAX_SYNC_HEADS: usize = 64;
/// Largest checkpoint note a page may carry (bytes). A relay's own checkpoint is about 200
/// bytes; the room is for cosignature lines a later version may add.
pub const MAX_PAGE_CHECKPOINT_BYTES: usize = 4096;
/// Most hashes in a page's consistency proof: a proof between trees of at most `2^64` leaves
/// has fewer than 128.
pub const MAX_LOG_PROOF_HASHES: usize = 128;
/// Most inclusion proofs a child may ask for in one request (and a page may carry).
pub const MAX_INCLUSION_PROOFS: usize = 8;
/// Most hashes in one inclusion proof (the depth of a tree of `2^64` leaves).
pub const MAX_INCLUSION_HASHES: usize = 64;

fn malformed(what: &str, reason: String) -> Error {
    Error::MalformedPayload { payload_type: what.to_owned(), reason }
}

/// A child's request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    /// Send deliveries whose relay_seq is greater than this.
    pub after: u64,
    /// The child's scope: only overlapping deliveries are sent.
    pub scope: Scope,
    /// At most this many deliveries.
    pub limit: u32,
    /// Digest of the child's trust bundle; the parent includes its own when it differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<Digest>,
    /// The size of the parent's transparency log the child last verified (0 for none): the
    /// parent answers with its latest checkpoint and a consistency proof from this size
    /// ([`LogProof`]). Absent: the child does not check the parent's log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tlog: Option<u64>,
    /// Leaves (0-based indexes: a delivery's `relay_seq - 1` in the parent's hop) whose
    /// inclusion in the answer's checkpoint the child asks the parent to prove; at most
    /// [`MAX_INCLUSION_PROOFS`], only with `tlog`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prove: Vec<u64>,
}

/// An inclusion proof (RFC 9162 §2.1.3) of one leaf in the tree of a [`LogProof`]'s
/// checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inclusion {
    /// The leaf's index (0-based).
    pub index: u64,
    /// The audit path, nearest the leaf first, each hash in standard base64.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proof: Vec<String>,
}

impl Inclusion {
    /// The proof's hashes, decoded; `None` if one is not 32 bytes of canonical base64.
    pub fn hashes(&self) -> Option<Vec<crate::tlog::Hash>> {
        self.proof.iter().map(|h| crate::tlog::Hash::from_base64(h)).collect()
    }
}

/// The parent's latest checkpoint and the proof that it extends what the child verified
/// (`docs/protocol.md` §18.12). The checkpoint is a note signed with the parent's relay key;
/// the signed page statement binds the whole object by its digest ([`page::log_proof_digest`]),
/// so a proof that fails is the parent's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogProof {
    /// The checkpoint (c2sp.org/tlog-checkpoint signed note, text).
    pub checkpoint: String,
    /// The size the proof starts from: the request's `tlog`.
    pub from: u64,
    /// The consistency proof (RFC 9162 §2.1.4) from `from` to the checkpoint's size, each hash
    /// in standard base64; empty when `from` is 0, equal to the size, or past it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consistency: Vec<String>,
    /// The inclusion proofs the request asked for (`prove`), of the leaves below the
    /// checkpoint's size.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inclusion: Vec<Inclusion>,
}

impl LogProof {
    /// The proof's hashes, decoded; `None` if one is not 32 bytes of canonical base64.
    pub fn hashes(&self) -> Option<Vec<crate::tlog::Hash>> {
        self.consistency.iter().map(|h| crate::tlog::Hash::from_base64(h)).collect()
    }
}

/// A parent's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncResponse {
    /// The request's `after`.
    pub after: u64,
    /// The parent scanned its log up to this relay_seq (the child's next `after`).
    pub scanned_upto: u64,
    /// The parent's latest relay_seq: more pages follow while `scanned_upto` is below it.
    pub last_relay_seq: u64,
    /// Deliveries in relay_seq order, as the parent forwarded them.
    pub deliveries: Vec<Delivery>,
    /// The parent's signed statement of this page ([`PageStatement`], signed with its relay
    /// key). Absent only from answers of parents that do not sign: [`verify_page`] refuses them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<Envelope>,
    /// The parent's certificate chain up to the anchors, to verify the statement.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certs: Vec<Envelope>,
    /// The parent's trust bundle, when the child's differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<TrustBundle>,
    /// The parent's newest signed head of each origin (head messages as on the heads topic,
    /// each verified by the child on its own), on the last page of a round: what the retained heads topic carries,
    /// for a child whose broker does not deliver retained messages to it (RabbitMQ 3.10 does
    /// not through wildcard subscriptions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub heads: Vec<HeadMessage>,
    /// The parent's latest checkpoint and a consistency proof, when the request asked
    /// (`tlog`) and the parent keeps a log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tlog: Option<LogProof>,
}

/// Parses a request: size first, then strict JSON, then the page limit.
pub fn parse_request(bytes: &[u8]) -> Result<SyncRequest> {
    if bytes.len() > MAX_SYNC_REQUEST_BYTES {
        return Err(Error::Oversize {
            what: "sync request",
            limit: MAX_SYNC_REQUEST_BYTES,
            actual: bytes.len(),
        });
    }
    let request: SyncRequest =
        serde_json::from_slice(bytes).map_err(|e| malformed("sync request", e.to_string()))?;
    if request.prove.len() > MAX_INCLUSION_PROOFS {
        return Err(malformed(
            "sync request",
            format!("{} inclusion proofs asked (at most {MAX_INCLUSION_PROOFS})", request.prove.len()),
        ));
    }
    if request.limit == 0 || request.limit > MAX_SYNC_PAGE_ENTRIES {
        return Err(malformed(
            "sync request",
            format!("limit {} must be 1..={MAX_SYNC_PAGE_ENTRIES}", request.limit),
        ));
    }
    Ok(request)
}

/// Parses a response: size first, then strict JSON.
pub fn parse_response(bytes: &[u8]) -> Result<SyncResponse> {
    if bytes.len() > MAX_SYNC_RESPONSE_BYTES {
        return Err(Error::Oversize {
            what: "sync response",
            limit: MAX_SYNC_RESPONSE_BYTES,
            actual: bytes.len(),
        });
    }
    let response: SyncResponse =
        serde_json::from_slice(bytes).map_err(|e| malformed("sync response", e.to_string()))?;
    if response.scanned_upto < response.after {
        return Err(malformed("sync response", "scanned_upto is before after".into()));
    }
    if response.heads.len() > MAX_SYNC_HEADS {
        return Err(malformed("sync response", format!("more than {MAX_SYNC_HEADS} heads")));
    }
    if let Some(proof) = &response.tlog {
        if proof.checkpoint.len() > MAX_PAGE_CHECKPOINT_BYTES {
            return Err(malformed(
                "sync response",
                format!(
                    "checkpoint of {} bytes (at most {MAX_PAGE_CHECKPOINT_BYTES})",
                    proof.checkpoint.len()
                ),
            ));
        }
        if proof.inclusion.len() > MAX_INCLUSION_PROOFS
            || proof.inclusion.iter().any(|i| i.proof.len() > MAX_INCLUSION_HASHES)
        {
            return Err(malformed(
                "sync response",
                format!(
                    "more than {MAX_INCLUSION_PROOFS} inclusion proofs or one of more than {MAX_INCLUSION_HASHES} hashes"
                ),
            ));
        }
        if proof.consistency.len() > MAX_LOG_PROOF_HASHES {
            return Err(malformed(
                "sync response",
                format!(
                    "consistency proof of {} hashes (at most {MAX_LOG_PROOF_HASHES})",
                    proof.consistency.len()
                ),
            ));
        }
    }
    Ok(response)
}

impl SyncResponse {
    /// Whether the parent has more after this page.
    pub fn has_more(&self) -> bool {
        self.scanned_upto < self.last_relay_seq
    }

    /// Compact JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

impl SyncRequest {
    /// Compact JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_bounded_and_strict() {
        assert_eq!(parse_request(&vec![b' '; 2000]).map_err(|e| e.code()), Err("oversize_input"));
        assert!(parse_request(br#"{"after":1,"scope":"jp","limit":0}"#).is_err());
        assert!(parse_request(br#"{"after":1,"scope":"jp","limit":10,"x":1}"#).is_err());
        assert!(parse_request(br#"{"after":-1,"scope":"jp","limit":10}"#).is_err());
        assert!(parse_request(b"\xff\xfe").is_err());
        assert_eq!(parse_request(br#"{"after":7,"scope":"jp/13","limit":10}"#).map(|r| r.after), Ok(7));
    }

    #[test]
    fn responses_must_not_go_backwards() {
        let bad = br#"{"after":5,"scanned_upto":4,"last_relay_seq":9,"deliveries":[]}"#;
        assert_eq!(parse_response(bad).map_err(|e| e.code()), Err("malformed_payload"));
    }

    #[test]
    fn heads_are_optional_and_bounded() {
        let none = br#"{"after":5,"scanned_upto":9,"last_relay_seq":9,"deliveries":[]}"#;
        assert!(parse_response(none).is_ok_and(|r| r.heads.is_empty()));
        let head = r#"{"head":{"payload":"e30=","payloadType":"application/vnd.kairan.head+json","signatures":[]},"certs":[]}"#;
        let heads = vec![head; MAX_SYNC_HEADS + 1].join(",");
        let many =
            format!(r#"{{"after":5,"scanned_upto":9,"last_relay_seq":9,"deliveries":[],"heads":[{heads}]}}"#);
        assert_eq!(parse_response(many.as_bytes()).map_err(|e| e.code()), Err("malformed_payload"));
    }

    #[test]
    fn log_proofs_are_optional_and_bounded() {
        // A request and a response of a node that predates transparency logs still parse.
        let old = br#"{"after":1,"scope":"jp","limit":10}"#;
        assert_eq!(parse_request(old).map(|r| r.tlog), Ok(None));
        let asked = br#"{"after":1,"scope":"jp","limit":10,"tlog":7,"prove":[3,5]}"#;
        assert_eq!(parse_request(asked).map(|r| (r.tlog, r.prove)), Ok((Some(7), vec![3, 5])));
        let greedy = br#"{"after":1,"scope":"jp","limit":10,"tlog":7,"prove":[1,2,3,4,5,6,7,8,9]}"#;
        assert_eq!(parse_request(greedy).map_err(|e| e.code()), Err("malformed_payload"));
        let hash = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
        let with = format!(
            r#"{{"after":5,"scanned_upto":9,"last_relay_seq":9,"deliveries":[],"tlog":{{"checkpoint":"c","from":3,"consistency":["{hash}"]}}}}"#
        );
        let parsed = parse_response(with.as_bytes()).expect("parses");
        assert_eq!(parsed.tlog.as_ref().and_then(LogProof::hashes).map(|h| h.len()), Some(1));
        assert_eq!(parse_response(&parsed.to_json()).expect("round trip"), parsed);
        let long = vec![format!("\"{hash}\""); MAX_LOG_PROOF_HASHES + 1].join(",");
        let too_long = format!(
            r#"{{"after":5,"scanned_upto":9,"last_relay_seq":9,"deliveries":[],"tlog":{{"checkpoint":"c","from":3,"consistency":[{long}]}}}}"#
        );
        assert_eq!(parse_response(too_long.as_bytes()).map_err(|e| e.code()), Err("malformed_payload"));
        let big = "x".repeat(MAX_PAGE_CHECKPOINT_BYTES + 1);
        let too_big = format!(
            r#"{{"after":5,"scanned_upto":9,"last_relay_seq":9,"deliveries":[],"tlog":{{"checkpoint":"{big}","from":0}}}}"#
        );
        assert_eq!(parse_response(too_big.as_bytes()).map_err(|e| e.code()), Err("malformed_payload"));
    }
}
