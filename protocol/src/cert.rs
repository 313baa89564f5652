//! Certificates (`application/vnd.kairan.cert+json`), and which of several certificates of one
//! key is used.
//!
//! The root (a threshold of anchor keys) certifies origins and the national relay; each relay
//! certifies its children (relays and clinics) within its own scope. Certificate sets are
//! verified up to the anchors in [`set`] ([`CertSet`]). A certificate is named by its
//! *digest*, `sha256:` of its payload bytes (as advisories are): that is what a revocation
//! names.
//!
//! One key may hold several certificates (a renewal, a re-parenting). Wherever one must be
//! chosen, the candidates are tried in one fixed order, never the input order
//! ([`preference`]): latest `not_before` first, then smallest digest; the first that satisfies
//! every check of the position is used. Two certificates of one key that disagree on who the
//! key is (different subjects, or scopes neither of which contains the other) are a conflict
//! (`conflicting_certs`, [`check_no_conflict`]).

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::advisory::check_id;
use crate::envelope::{CERT_TYPE, Envelope, decode_payload, encode_payload};
use crate::error::{Error, Result};
use crate::keys::{Digest, KeyId, PublicKey, SecretKey};
use crate::limits::MAX_CLOCK_SKEW_MS;
use crate::scope::Scope;
use crate::time::Timestamp;

pub mod set;

pub use set::CertSet;

/// The issuer id of certificates signed by the root anchors.
pub const ROOT_ISSUER: &str = "root";

/// What a certified key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Signs advisories (certified by the root only).
    Origin,
    /// Attests hops and certifies child relays and clinics within its scope.
    Relay,
    /// Signs receipts.
    Clinic,
}

/// A certificate payload: binds a subject key to an id, roles, a scope and a validity window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Certificate {
    /// Issuer-unique serial.
    pub serial: String,
    /// The issuer's id: [`ROOT_ISSUER`] or the issuing relay's subject id.
    pub issuer: String,
    /// The subject's id (origin id, relay node id, clinic id).
    pub subject: String,
    /// The subject's public key, 64 lowercase hex characters.
    pub key: PublicKey,
    /// What the key may do.
    pub roles: Vec<Role>,
    /// The region the subject acts for.
    pub scope: Scope,
    /// Start of validity.
    pub not_before: Timestamp,
    /// End of validity.
    pub not_after: Timestamp,
}

/// The wire shape before key checks, so a weak key is reported as such.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CertificateWire {
    serial: String,
    issuer: String,
    subject: String,
    key: String,
    roles: Vec<Role>,
    scope: Scope,
    not_before: Timestamp,
    not_after: Timestamp,
}

impl Certificate {
    /// A certificate of `key` for `subject`, with one role, valid over `window`
    /// (`not_before`, `not_after`); sign it with [`Certificate::sign`].
    pub fn for_key(
        serial: impl Into<String>,
        issuer: &str,
        subject: &str,
        key: &PublicKey,
        role: Role,
        scope: &Scope,
        window: (Timestamp, Timestamp),
    ) -> Self {
        Self {
            serial: serial.into(),
            issuer: issuer.to_owned(),
            subject: subject.to_owned(),
            key: key.clone(),
            roles: vec![role],
            scope: scope.clone(),
            not_before: window.0,
            not_after: window.1,
        }
    }

    /// The exact payload bytes to sign.
    pub fn to_payload(&self) -> Vec<u8> {
        encode_payload(self)
    }

    /// Signs this certificate with the issuer key(s): several root keys for a root-issued one.
    pub fn sign(&self, issuer_keys: &[&SecretKey]) -> Envelope {
        Envelope::sign(CERT_TYPE, self.to_payload(), issuer_keys)
    }

    /// Decodes a verified certificate payload and checks its fields.
    pub fn decode(payload: &[u8]) -> Result<Self> {
        let wire: CertificateWire = decode_payload(CERT_TYPE, payload)?;
        let malformed =
            |reason: String| Error::MalformedPayload { payload_type: CERT_TYPE.to_owned(), reason };
        for (field, id) in [("serial", &wire.serial), ("issuer", &wire.issuer), ("subject", &wire.subject)] {
            check_id(field, id).map_err(malformed)?;
        }
        if wire.roles.is_empty() || wire.roles.len() > 3 {
            return Err(malformed("roles must name 1 to 3 roles".into()));
        }
        if wire.roles.iter().enumerate().any(|(i, role)| wire.roles[..i].contains(role)) {
            return Err(malformed("a role is listed twice".into()));
        }
        if wire.not_after <= wire.not_before {
            return Err(malformed("not_after must be after not_before".into()));
        }
        let key = PublicKey::from_hex(&wire.key)?;
        Ok(Self {
            serial: wire.serial,
            issuer: wire.issuer,
            subject: wire.subject,
            key,
            roles: wire.roles,
            scope: wire.scope,
            not_before: wire.not_before,
            not_after: wire.not_after,
        })
    }

    /// Whether the certificate grants `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Checks the validity window at `at`, a time a signer wrote (an advisory's `issued_at`,
    /// a hop's `forwarded_at`, …): a refusal is final.
    pub fn check_validity(&self, at: Timestamp) -> Result<()> {
        self.check_window(at, false)
    }

    /// Checks the validity window at the verifier's own time `now`: a certificate not yet
    /// valid is then a refusal that may only mean the verifier's clock is behind
    /// ([`Error::is_clock_dependent`]).
    pub fn check_validity_now(&self, now: Timestamp) -> Result<()> {
        self.check_window(now, true)
    }

    fn check_window(&self, at: Timestamp, against_now: bool) -> Result<()> {
        if at.plus_ms(MAX_CLOCK_SKEW_MS) < self.not_before {
            return Err(Error::CertNotYetValid {
                subject: self.subject.clone(),
                serial: self.serial.clone(),
                not_before: self.not_before,
                now: at,
                against_now,
            });
        }
        if at > self.not_after {
            return Err(Error::CertExpired {
                subject: self.subject.clone(),
                serial: self.serial.clone(),
                not_after: self.not_after,
                now: at,
            });
        }
        Ok(())
    }
}

/// Who signed a verified certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Issuer {
    /// A threshold of root anchors; the key ids that signed.
    Root(Vec<KeyId>),
    /// The certificate at this index of the same [`CertSet`].
    Cert(usize),
}

/// A certificate that chains to the anchors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCert {
    /// The decoded certificate.
    pub cert: Certificate,
    /// Who signed it.
    pub issuer: Issuer,
    /// Its position in the input list.
    pub input_index: usize,
    /// Its digest: `sha256:` of the envelope's payload bytes. Revocations name it.
    pub digest: Digest,
    /// Certificates from the root down to it, itself included (1 for a root-issued one).
    pub depth: usize,
}

/// The order in which certificates of one key are tried: latest `not_before` first, then the
/// smallest digest. Total and independent of input order.
pub fn preference(a: &VerifiedCert, b: &VerifiedCert) -> Ordering {
    b.cert.not_before.cmp(&a.cert.not_before).then_with(|| a.digest.cmp(&b.digest))
}

/// Refuses two certificates of the same key that disagree on who the key is: different
/// subjects, or scopes neither of which contains the other (`conflicting_certs`). Certificates
/// of different keys never conflict; a renewal (same subject, same or nested scope) does not.
pub fn check_no_conflict(a: &VerifiedCert, b: &VerifiedCert) -> Result<()> {
    if a.cert.key != b.cert.key {
        return Ok(());
    }
    let nested = a.cert.scope.contains(&b.cert.scope) || b.cert.scope.contains(&a.cert.scope);
    if a.cert.subject == b.cert.subject && nested {
        return Ok(());
    }
    let describe = |v: &VerifiedCert| format!("{} (scope {}, {})", v.cert.subject, v.cert.scope, v.digest);
    Err(Error::ConflictingCerts {
        keyid: a.cert.key.keyid().to_string(),
        first: describe(a),
        second: describe(b),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::Hierarchy;

    fn verified(cert: Certificate, digest: Digest) -> VerifiedCert {
        VerifiedCert { cert, issuer: Issuer::Root(Vec::new()), input_index: 0, digest, depth: 1 }
    }

    #[test]
    fn renewals_do_not_conflict_but_other_identities_do() {
        let tree = Hierarchy::standard();
        let base = Certificate::decode(&tree.relays[1].cert.payload).expect("decodes");
        let a = verified(base.clone(), Digest::of(b"a"));
        let mut renewal = base.clone();
        renewal.not_before = renewal.not_before.plus_secs(3600);
        renewal.scope = Scope::parse("jp/13/chuo").expect("scope");
        assert!(check_no_conflict(&a, &verified(renewal, Digest::of(b"b"))).is_ok());
        let mut renamed = base.clone();
        renamed.subject = "made-up".into();
        let err = check_no_conflict(&a, &verified(renamed, Digest::of(b"c"))).expect_err("subject");
        assert_eq!(err.code(), "conflicting_certs");
        let mut elsewhere = base;
        elsewhere.scope = Scope::parse("jp/27").expect("scope");
        let err = check_no_conflict(&a, &verified(elsewhere, Digest::of(b"d"))).expect_err("scope");
        assert_eq!(err.code(), "conflicting_certs");
    }

    #[test]
    fn preference_is_latest_not_before_then_smallest_digest() {
        let tree = Hierarchy::standard();
        let base = Certificate::decode(&tree.relays[1].cert.payload).expect("decodes");
        let mut later = base.clone();
        later.not_before = later.not_before.plus_secs(1);
        let (x, y) = (Digest::of(b"x"), Digest::of(b"y"));
        let (small, large) = if x < y { (x, y) } else { (y, x) };
        let mut list = [verified(base.clone(), small), verified(later, large), verified(base, large)];
        list.sort_by(preference);
        assert_eq!(list[0].digest, large);
        assert!(list[0].cert.not_before > list[1].cert.not_before);
        assert_eq!((list[1].digest, list[2].digest), (small, large));
    }

    #[test]
    fn validity_refusals_say_whether_they_depend_on_the_clock() {
        let tree = Hierarchy::standard();
        let cert = Certificate::decode(&tree.relays[1].cert.payload).expect("decodes");
        let early = cert.not_before.plus_secs(-60);
        assert!(cert.check_validity_now(early).expect_err("early").is_clock_dependent());
        assert!(!cert.check_validity(early).expect_err("early").is_clock_dependent());
        let late = cert.not_after.plus_secs(1);
        assert!(!cert.check_validity_now(late).expect_err("late").is_clock_dependent());
    }
}
