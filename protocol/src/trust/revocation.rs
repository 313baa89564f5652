//! Revocation statements (`application/vnd.kairan.revocation+json`) and the set of revoked
//! certificates in force.
//!
//! A revocation names one **certificate** by its digest (`sha256:` of the certificate
//! envelope's payload bytes), not a key: revoking a key means revoking each of its
//! certificates. It travels with the revoked certificate (in the trust bundle's `certs`), so
//! that every verifier knows the certificate's issuer chain, scope and `not_after`. Who may
//! sign which statement, and in which order a set of statements is evaluated, is
//! [`super::bundle`]'s business.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cert::{Certificate, VerifiedCert};
use crate::envelope::{Envelope, REVOCATION_TYPE, encode_payload};
use crate::error::{Error, Result};
use crate::keys::{Digest, KeyId, SecretKey};
use crate::time::Timestamp;

/// A revocation statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    /// The revoked certificate: `sha256:` of its envelope's payload bytes.
    pub cert: Digest,
    /// The revoked certificate's subject, for people; must equal the certificate's.
    pub subject: String,
    /// Who revokes: [`crate::cert::ROOT_ISSUER`] or the revoking relay's subject id.
    pub issuer: String,
    /// The issuer's control-stream sequence number (1, 2, …); informational.
    pub seq: u64,
    /// When the statement was signed.
    pub issued_at: Timestamp,
    /// From when signatures verified with the certificate are refused.
    pub effective_at: Timestamp,
    /// Why, for people (`key compromised`, `node retired`).
    pub reason: String,
}

impl Revocation {
    /// A statement revoking the certificate `cert` (an envelope), by `issuer`, effective from
    /// `effective_at`. Fails if the envelope's payload is not a certificate.
    pub fn of_cert(
        cert: &Envelope,
        issuer: &str,
        seq: u64,
        issued_at: Timestamp,
        effective_at: Timestamp,
        reason: &str,
    ) -> Result<Self> {
        let decoded = Certificate::decode(&cert.payload)?;
        Ok(Self {
            cert: Digest::of(&cert.payload),
            subject: decoded.subject,
            issuer: issuer.to_owned(),
            seq,
            issued_at,
            effective_at,
            reason: reason.to_owned(),
        })
    }

    /// Signs the statement (a threshold of root keys, or the revoking relay's key).
    pub fn sign(&self, signers: &[&SecretKey]) -> Envelope {
        Envelope::sign(REVOCATION_TYPE, encode_payload(self), signers)
    }
}

/// One revoked certificate in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedCert {
    /// The earliest `effective_at` of the accepted statements revoking it.
    pub effective_at: Timestamp,
    /// The certificate's subject.
    pub subject: String,
    /// The certificate's key.
    pub keyid: KeyId,
}

/// The revoked certificates in force: certificate digest → effective time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationSet {
    revoked: BTreeMap<Digest, RevokedCert>,
}

impl RevocationSet {
    /// Adds a revoked certificate; for one certificate revoked twice, the earliest effective
    /// time wins.
    pub fn insert(&mut self, digest: Digest, revoked: RevokedCert) {
        match self.revoked.get_mut(&digest) {
            Some(entry) if entry.effective_at <= revoked.effective_at => {}
            Some(entry) => *entry = revoked,
            None => {
                self.revoked.insert(digest, revoked);
            }
        }
    }

    /// Refuses the certificate `cert` for something signed (dated) at `signed_at` if it was
    /// revoked by then (`effective_at ≤ signed_at`).
    pub fn check(&self, cert: &VerifiedCert, signed_at: Timestamp, what: &str) -> Result<()> {
        self.check_digest(&cert.digest, signed_at, what)
    }

    /// As [`RevocationSet::check`], by certificate digest.
    pub fn check_digest(&self, digest: &Digest, signed_at: Timestamp, what: &str) -> Result<()> {
        match self.revoked.get(digest) {
            Some(revoked) if signed_at >= revoked.effective_at => Err(Error::Revoked {
                cert: digest.to_string(),
                keyid: revoked.keyid.to_string(),
                subject: revoked.subject.clone(),
                effective_at: revoked.effective_at,
                what: what.to_owned(),
            }),
            _ => Ok(()),
        }
    }

    /// The entry of a revoked certificate.
    pub fn get(&self, digest: &Digest) -> Option<&RevokedCert> {
        self.revoked.get(digest)
    }

    /// The revoked certificates, by digest.
    pub fn iter(&self) -> impl Iterator<Item = (&Digest, &RevokedCert)> {
        self.revoked.iter()
    }

    /// Number of revoked certificates.
    pub fn len(&self) -> usize {
        self.revoked.len()
    }

    /// Whether no certificate is revoked.
    pub fn is_empty(&self) -> bool {
        self.revoked.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::ROOT_ISSUER;
    use crate::fixtures::Hierarchy;

    #[test]
    fn a_revocation_names_the_certificate_digest() {
        let tree = Hierarchy::standard();
        let revocation =
            Revocation::of_cert(&tree.origin_cert, ROOT_ISSUER, 1, tree.now, tree.now, "retired")
                .expect("cert");
        assert_eq!(revocation.cert, Digest::of(&tree.origin_cert.payload));
        assert_eq!(revocation.subject, "mhlw");
        let payload = String::from_utf8(encode_payload(&revocation)).expect("UTF-8");
        assert!(payload.starts_with(&format!("{{\"cert\":\"{}\",\"subject\":\"mhlw\"", revocation.cert)));
        let not_a_cert = tree.sign_advisory(&crate::fixtures::sample_advisory("mhlw", 1, None));
        assert!(Revocation::of_cert(&not_a_cert, ROOT_ISSUER, 1, tree.now, tree.now, "x").is_err());
    }

    #[test]
    fn revocation_applies_from_its_effective_time_and_the_earliest_wins() {
        let tree = Hierarchy::standard();
        let digest = Digest::of(&tree.origin_cert.payload);
        let entry = |at: Timestamp| RevokedCert {
            effective_at: at,
            subject: "mhlw".into(),
            keyid: tree.origin_key.keyid().clone(),
        };
        let mut set = RevocationSet::default();
        set.insert(digest, entry(tree.now));
        set.insert(digest, entry(tree.now.plus_secs(60)));
        assert!(set.check_digest(&digest, tree.now.plus_ms(-1), "advisory").is_ok());
        assert_eq!(set.check_digest(&digest, tree.now, "advisory").map_err(|e| e.code()), Err("revoked_key"));
        set.insert(digest, entry(tree.now.plus_secs(-60)));
        assert_eq!(set.get(&digest).map(|r| r.effective_at), Some(tree.now.plus_secs(-60)));
        assert!(set.check_digest(&Digest::of(b"other"), tree.now, "advisory").is_ok());
        assert_eq!(set.len(), 1);
    }
}
