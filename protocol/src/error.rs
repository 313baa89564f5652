//! The one error type of the protocol crate.

use crate::time::Timestamp;

/// Why an input was refused. Every variant names exactly what failed.
///
/// [`Error::code`] gives a stable snake-case reason code for logs, stored rejections and
/// JSON output; the `Display` text is for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input is larger than the limit for its kind; refused before parsing.
    #[error("oversize input: {what} is {actual} bytes/entries, limit {limit}")]
    Oversize {
        /// What was too large (`delivery`, `envelope`, `payload`, `signatures`, …).
        what: &'static str,
        /// The limit from [`crate::limits`].
        limit: usize,
        /// The size found.
        actual: usize,
    },
    /// The envelope (or delivery/bundle) JSON does not have the DSSE shape.
    #[error("malformed envelope: {0}")]
    MalformedEnvelope(String),
    /// The envelope carries a different `payloadType` from the one expected here.
    #[error("wrong payload type: expected {expected}, found {found}")]
    WrongPayloadType {
        /// The type this position requires.
        expected: String,
        /// The type the envelope declares.
        found: String,
    },
    /// A signature names a known key but does not verify (`verify_strict`) over the PAE.
    #[error("bad signature by key {keyid} on {what}")]
    BadSignature {
        /// What was signed (`advisory`, `certificate`, `hop 2`, …).
        what: String,
        /// The key id whose signature failed.
        keyid: String,
    },
    /// A signature names a key that is not a trust anchor or not certified for this role.
    #[error("unknown signer {keyid} on {what}")]
    UnknownSigner {
        /// What was signed.
        what: String,
        /// The key id hint that matched no usable key.
        keyid: String,
    },
    /// The envelope has no signature at all, or fewer distinct anchor keys than the threshold.
    #[error("threshold not met on {what}: {found} distinct valid signatures, {needed} needed")]
    ThresholdNotMet {
        /// What was signed.
        what: String,
        /// The threshold.
        needed: usize,
        /// Distinct key ids with a valid signature.
        found: usize,
    },
    /// A public key is a small-order ("weak") point; refused when loaded.
    #[error("weak public key refused: {0}")]
    WeakKey(String),
    /// A public or secret key is not 32 bytes of valid hex / a valid curve point.
    #[error("malformed key: {0}")]
    MalformedKey(String),
    /// The payload verified but is not valid JSON of the expected shape.
    #[error("malformed {payload_type} payload: {reason}")]
    MalformedPayload {
        /// The payload type.
        payload_type: String,
        /// What the decoder said.
        reason: String,
    },
    /// The advisory decoded but breaks a rule of the advisory format.
    #[error("invalid advisory: {0}")]
    InvalidAdvisory(String),
    /// A certificate is past its `not_after`.
    #[error("certificate {subject} (serial {serial}) expired at {not_after}; now {now}")]
    CertExpired {
        /// The certificate's subject id.
        subject: String,
        /// Its serial.
        serial: String,
        /// Its end of validity.
        not_after: Timestamp,
        /// The time it was checked at.
        now: Timestamp,
    },
    /// A certificate is before its `not_before`.
    #[error("certificate {subject} (serial {serial}) not valid before {not_before}; now {now}")]
    CertNotYetValid {
        /// The certificate's subject id.
        subject: String,
        /// Its serial.
        serial: String,
        /// Its start of validity.
        not_before: Timestamp,
        /// The time it was checked at.
        now: Timestamp,
        /// Whether that time was the verifier's own clock (`now`), so that the refusal may only
        /// mean that clock is behind ([`Error::is_clock_dependent`]), rather than a time the
        /// signer wrote (an advisory's `issued_at`, a hop's `forwarded_at`, …), which is final.
        against_now: bool,
    },
    /// A certificate does not allow what its key did (e.g. a relay key signing an advisory).
    #[error("role not allowed: {0}")]
    RoleNotAllowed(String),
    /// A scope does not nest where it must (cert in issuer, advisory in origin, relay on path).
    #[error("scope violation: {what}: {scope} is not inside {allowed}")]
    ScopeViolation {
        /// Which relation failed.
        what: String,
        /// The scope found.
        scope: String,
        /// The scope it had to lie within (or overlap).
        allowed: String,
    },
    /// The certificate used to verify a signature was revoked at or before the time the object
    /// claims to be signed.
    #[error("revoked certificate {cert} of key {keyid} ({subject}) since {effective_at} used for {what}")]
    Revoked {
        /// The digest of the revoked certificate (`sha256:` of its payload).
        cert: String,
        /// The key id of the revoked certificate's key.
        keyid: String,
        /// The subject of the revoked certificate.
        subject: String,
        /// When the revocation took effect.
        effective_at: Timestamp,
        /// What it signed.
        what: String,
    },
    /// The advisory's `expires_at` is not after `now`.
    #[error("advisory expired at {expires_at}; now {now}")]
    AdvisoryExpired {
        /// The advisory's expiry.
        expires_at: Timestamp,
        /// The time it was checked at.
        now: Timestamp,
    },
    /// A signed time lies in the future beyond the tolerated clock skew.
    #[error("{what} is dated {at}, in the future (now {now})")]
    FromTheFuture {
        /// What carried the time.
        what: String,
        /// The time it claims.
        at: Timestamp,
        /// The verifier's time.
        now: Timestamp,
    },
    /// Hops do not link: wrong advisory digest, `prev`, `upstream`, signer or a repeated relay.
    #[error("broken hop chain at hop {index}: {reason}")]
    BrokenHopChain {
        /// 0-based position of the failing hop.
        index: usize,
        /// What did not link.
        reason: String,
    },
    /// Hop times decrease along the chain (beyond the tolerated skew).
    #[error("hop times out of order at hop {index}: {reason}")]
    HopTimesOutOfOrder {
        /// 0-based position of the failing hop.
        index: usize,
        /// Which two times disagree.
        reason: String,
    },
    /// More hops than [`crate::limits::MAX_HOPS`].
    #[error("too many hops: {count}, limit {limit}")]
    TooManyHops {
        /// Hops found.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// More certificates than [`crate::limits::MAX_CERTS`].
    #[error("too many certificates: {count}, limit {limit}")]
    TooManyCerts {
        /// Certificates found.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A certificate in the delivery or bundle does not chain to the trust anchors.
    #[error("certificate chain broken: {0}")]
    BrokenCertChain(String),
    /// One key is certified under two different subjects, or under two scopes neither of which
    /// contains the other, in one set of certificates.
    #[error("conflicting certificates of key {keyid}: {first} and {second}")]
    ConflictingCerts {
        /// The key id certified twice.
        keyid: String,
        /// The first certificate (subject, scope, digest).
        first: String,
        /// The one that conflicts with it.
        second: String,
    },
    /// A relay-signed revocation of a certificate that was not issued at or below the revoker,
    /// or by a revoker whose own certificate was not valid (or already revoked) when it signed.
    #[error("revocation not authorized: {0}")]
    RevocationNotAuthorized(String),
    /// A revocation names a certificate (by digest) that does not travel with it.
    #[error("revoked certificate {digest} is not carried with its revocation")]
    RevokedCertMissing {
        /// The digest the revocation names.
        digest: String,
    },
    /// A revocation beyond the number a bundle carries ([`crate::limits::MAX_REVOCATIONS`],
    /// [`crate::limits::MAX_RELAY_REVOCATIONS`], [`crate::limits::MAX_REVOCATIONS_PER_ISSUER`]).
    #[error("revocation limit reached for {issuer}: {limit}")]
    TooManyRevocations {
        /// The issuer whose statement was refused (`root` or a relay id).
        issuer: String,
        /// The limit that was reached.
        limit: usize,
    },
    /// A signed catch-up page statement that does not match the page it came with, or the child
    /// that received it.
    #[error("sync page does not match its statement: {0}")]
    PageMismatch(String),
    /// Trust anchors are inconsistent (threshold 0 or above the number of keys, duplicates).
    #[error("invalid trust anchors: {0}")]
    InvalidAnchors(String),
    /// A Merkle inclusion proof (RFC 9162 §2.1.3.2) does not lead from the leaf to the root.
    #[error("bad inclusion proof: {0}")]
    BadInclusionProof(String),
    /// A Merkle consistency proof (RFC 9162 §2.1.4.2) does not link the two tree heads.
    #[error("bad consistency proof: {0}")]
    BadConsistencyProof(String),
    /// A request about a Merkle tree that the tree cannot answer: a leaf index at or past the
    /// tree size, an old size above the new one, a frontier whose hashes do not match its size,
    /// or a hash reader that answered with the wrong number of hashes.
    #[error("invalid tree request: {0}")]
    InvalidTreeRequest(String),
    /// A signed note (c2sp.org/signed-note) that does not have the note syntax.
    #[error("malformed note: {0}")]
    MalformedNote(String),
    /// A note verifier key (`<name>+<hex key id>+<base64 type||key>`) that does not parse.
    #[error("malformed verifier key: {0}")]
    MalformedVerifierKey(String),
    /// A note with no valid signature by any of the keys it was checked against.
    #[error("unverified note: {0}")]
    UnverifiedNote(String),
    /// A note whose text is not a checkpoint (c2sp.org/tlog-checkpoint), or not the one expected.
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(String),
    /// An advisory labelled TLP:AMBER+STRICT or TLP:RED that is not sealed.
    #[error("{tlp} advisories must be sealed (encrypted to their recipients)")]
    SealingRequired {
        /// The label (`TLP:RED`, `TLP:AMBER+STRICT`).
        tlp: String,
    },
    /// A `sealed` object that breaks a rule of the sealed format (suite, slot shapes and
    /// lengths, duplicates, a sealed label other than AMBER+STRICT and RED, confidential fields
    /// in clear, a group slot on RED), or decrypted content that is not the confidential JSON.
    #[error("malformed sealed advisory: {0}")]
    MalformedSealed(String),
    /// The opener is not among the recipients of a sealed advisory.
    #[error("{recipient} is not a recipient of sealed advisory {advisory}")]
    NotARecipient {
        /// The clinic id (or `group <scope>`) that tried to open it.
        recipient: String,
        /// The advisory's id.
        advisory: String,
    },
    /// The recipient's slot was sealed to another key than the one offered.
    #[error("wrong key for {recipient}: sealed to key {sealed_to}, key held is {held}")]
    WrongRecipientKey {
        /// The clinic id.
        recipient: String,
        /// The key id the slot names.
        sealed_to: String,
        /// The key id of the key offered.
        held: String,
    },
    /// A group slot sealed under another epoch than the group key offered.
    #[error("sealed to group {scope} epoch {sealed}, key held is epoch {held}")]
    WrongGroupEpoch {
        /// The group scope.
        scope: String,
        /// The epoch the advisory was sealed under.
        sealed: u64,
        /// The epoch of the key offered.
        held: u64,
    },
    /// A wrapped key or the ciphertext of a sealed advisory does not authenticate under the
    /// right key: truncated or altered.
    #[error("sealed advisory corrupt: {0}")]
    SealedCorrupt(String),
}

impl Error {
    /// A stable, snake-case reason code (for logs, stored rejections, JSON and tests).
    pub fn code(&self) -> &'static str {
        match self {
            Error::Oversize { .. } => "oversize_input",
            Error::MalformedEnvelope(_) => "malformed_envelope",
            Error::WrongPayloadType { .. } => "wrong_payload_type",
            Error::BadSignature { .. } => "bad_signature",
            Error::UnknownSigner { .. } => "unknown_signer",
            Error::ThresholdNotMet { .. } => "threshold_not_met",
            Error::WeakKey(_) => "weak_key",
            Error::MalformedKey(_) => "malformed_key",
            Error::MalformedPayload { .. } => "malformed_payload",
            Error::InvalidAdvisory(_) => "invalid_advisory",
            Error::CertExpired { .. } => "cert_expired",
            Error::CertNotYetValid { .. } => "cert_not_yet_valid",
            Error::RoleNotAllowed(_) => "role_not_allowed",
            Error::ScopeViolation { .. } => "scope_violation",
            Error::Revoked { .. } => "revoked_key",
            Error::AdvisoryExpired { .. } => "advisory_expired",
            Error::FromTheFuture { .. } => "from_the_future",
            Error::BrokenHopChain { .. } => "broken_hop_chain",
            Error::HopTimesOutOfOrder { .. } => "hop_times_out_of_order",
            Error::TooManyHops { .. } => "too_many_hops",
            Error::TooManyCerts { .. } => "too_many_certs",
            Error::BrokenCertChain(_) => "broken_cert_chain",
            Error::ConflictingCerts { .. } => "conflicting_certs",
            Error::RevocationNotAuthorized(_) => "revocation_not_authorized",
            Error::RevokedCertMissing { .. } => "revoked_cert_missing",
            Error::TooManyRevocations { .. } => "revocation_limit",
            Error::PageMismatch(_) => "page_mismatch",
            Error::InvalidAnchors(_) => "invalid_anchors",
            Error::BadInclusionProof(_) => "bad_inclusion_proof",
            Error::BadConsistencyProof(_) => "bad_consistency_proof",
            Error::InvalidTreeRequest(_) => "invalid_tree_request",
            Error::MalformedNote(_) => "malformed_note",
            Error::MalformedVerifierKey(_) => "malformed_verifier_key",
            Error::UnverifiedNote(_) => "unverified_note",
            Error::MalformedCheckpoint(_) => "malformed_checkpoint",
            Error::SealingRequired { .. } => "sealing_required",
            Error::MalformedSealed(_) => "malformed_sealed",
            Error::NotARecipient { .. } => "not_a_recipient",
            Error::WrongRecipientKey { .. } => "wrong_recipient_key",
            Error::WrongGroupEpoch { .. } => "wrong_group_epoch",
            Error::SealedCorrupt(_) => "sealed_corrupt",
        }
    }

    /// Whether the refusal depends only on the verifier's clock being behind: a certificate
    /// not yet valid at the verifier's `now`, or a signed time later than `now` plus the
    /// tolerated skew. Such an input may verify later (or on a machine whose clock is right):
    /// hold it and retry rather than refusing it for good. Every other refusal is final for
    /// the same input, trust state and a later `now` (a certificate or an advisory expiring,
    /// or a revocation arriving, only ever refuses more).
    pub fn is_clock_dependent(&self) -> bool {
        matches!(self, Error::CertNotYetValid { against_now: true, .. } | Error::FromTheFuture { .. })
    }
}

/// Result with the protocol [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
