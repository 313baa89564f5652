//! Certificates (`application/vnd.kairan.cert+json`) and chain verification up to the anchors.
//!
//! The root (a threshold of anchor keys) certifies origins and the national relay; each relay
//! certifies its children (relays and clinics) within its own scope. A certificate set is
//! verified as a whole by a worklist from the anchors: root-signed certificates first, then
//! each certificate once a certificate for its signing key is verified. Whatever is never
//! reached does not chain to the anchors (an unknown signer, or a loop) and fails the whole set.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::advisory::check_id;
use crate::envelope::{CERT_TYPE, Envelope, decode_payload, encode_payload};
use crate::error::{Error, Result};
use crate::keys::{KeyId, PublicKey, SecretKey};
use crate::limits::{MAX_CHAIN_DEPTH, MAX_CLOCK_SKEW_MS};
use crate::scope::Scope;
use crate::time::Timestamp;
use crate::trust::{RevocationSet, TrustAnchors};

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

    /// Checks the validity window at `at`.
    pub fn check_validity(&self, at: Timestamp) -> Result<()> {
        if at.plus_ms(MAX_CLOCK_SKEW_MS) < self.not_before {
            return Err(Error::CertNotYetValid {
                subject: self.subject.clone(),
                serial: self.serial.clone(),
                not_before: self.not_before,
                now: at,
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
}

/// A set of certificates every one of which chains to the trust anchors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertSet {
    certs: Vec<VerifiedCert>,
}

impl CertSet {
    /// The verified certificates, in the order they were verified (issuers before subjects).
    pub fn certs(&self) -> &[VerifiedCert] {
        &self.certs
    }

    /// The first certificate for `keyid` granting `role`. `Err(None)` if no certificate has the
    /// key at all, `Err(Some(cert))` if one has it without the role.
    pub fn find(&self, keyid: &str, role: Role) -> std::result::Result<&VerifiedCert, Option<&VerifiedCert>> {
        let mut with_key = self.certs.iter().filter(|v| v.cert.key.keyid().as_str() == keyid).peekable();
        let first = with_key.peek().copied();
        with_key.find(|v| v.cert.has_role(role)).ok_or(first)
    }

    /// The issuer chain of the certificate at `index`, from it up to the root.
    pub fn chain_of(&self, index: usize) -> Vec<&VerifiedCert> {
        let mut chain = Vec::new();
        let mut next = self.certs.get(index);
        while let Some(current) = next {
            chain.push(current);
            next = match current.issuer {
                Issuer::Cert(parent) if chain.len() <= self.certs.len() => self.certs.get(parent),
                _ => None,
            };
        }
        chain
    }

    /// Verifies `envelopes` against the anchors at `now`. Every envelope must chain.
    pub fn verify(
        envelopes: &[Envelope],
        anchors: &TrustAnchors,
        revocations: &RevocationSet,
        now: Timestamp,
    ) -> Result<Self> {
        let mut set = CertSet::default();
        // Worklist from the anchors: root-signed certificates first; a certificate signed by
        // one relay key waits until a certificate for that key is verified. Linear in the
        // number of certificates, whatever their order; loops and unknown issuers never
        // become ready.
        let mut ready: VecDeque<(usize, Option<usize>)> = VecDeque::new();
        let mut waiting: HashMap<&str, Vec<usize>> = HashMap::new();
        for (index, envelope) in envelopes.iter().enumerate() {
            if envelope.payload_type != CERT_TYPE {
                return Err(Error::WrongPayloadType {
                    expected: CERT_TYPE.to_owned(),
                    found: envelope.payload_type.clone(),
                });
            }
            envelope.check_shape().map_err(|e| at_cert(index, e))?;
            let hints: Vec<&str> = envelope.keyid_hints().collect();
            if hints.is_empty() {
                return Err(Error::ThresholdNotMet {
                    what: format!("certificate #{index}"),
                    needed: anchors.threshold(),
                    found: 0,
                });
            }
            if hints.iter().all(|hint| anchors.key(hint).is_some()) {
                ready.push_back((index, None));
            } else if let [hint] = hints[..] {
                waiting.entry(hint).or_default().push(index);
            }
        }
        let mut depths: Vec<usize> = Vec::with_capacity(envelopes.len());
        let mut verified = vec![false; envelopes.len()];
        while let Some((index, parent)) = ready.pop_front() {
            let depth = parent.map_or(1, |p| depths[p] + 1);
            if depth > MAX_CHAIN_DEPTH {
                return Err(Error::BrokenCertChain(format!(
                    "certificate #{index} is {depth} certificates below the root; at most {MAX_CHAIN_DEPTH}"
                )));
            }
            let cert = set.verify_one(index, &envelopes[index], parent, anchors, revocations, now)?;
            verified[index] = true;
            let position = set.certs.len();
            let keyid = cert.cert.key.keyid().as_str().to_owned();
            set.certs.push(cert);
            depths.push(depth);
            if let Some(children) = waiting.remove(keyid.as_str()) {
                ready.extend(children.into_iter().map(|child| (child, Some(position))));
            }
        }
        match verified.iter().position(|done| !done) {
            None => Ok(set),
            Some(index) => {
                let keyid = envelopes[index].keyid_hints().next().unwrap_or("").to_owned();
                Err(Error::UnknownSigner { what: format!("certificate #{index}"), keyid })
            }
        }
    }

    /// Verifies one certificate whose signer is trusted: the root (`parent` None) or the key
    /// of the certificate at `parent` (a relay certificate for that key is preferred).
    fn verify_one(
        &self,
        index: usize,
        envelope: &Envelope,
        parent: Option<usize>,
        anchors: &TrustAnchors,
        revocations: &RevocationSet,
        now: Timestamp,
    ) -> Result<VerifiedCert> {
        let what = format!("certificate #{index}");
        let (cert, issuer) = match parent {
            None => {
                let signers =
                    envelope.verify_with(CERT_TYPE, &what, anchors.threshold(), |hint| anchors.key(hint))?;
                let cert = Certificate::decode(&envelope.payload)?;
                if cert.issuer != ROOT_ISSUER {
                    return Err(Error::BrokenCertChain(format!(
                        "{what} ({}) is signed by the root but names issuer {:?}",
                        cert.subject, cert.issuer
                    )));
                }
                if cert.has_role(Role::Clinic) {
                    return Err(Error::RoleNotAllowed(format!(
                        "the root does not certify clinic keys ({})",
                        cert.subject
                    )));
                }
                (cert, Issuer::Root(signers))
            }
            Some(first_parent) => {
                let parent_key = self.certs[first_parent].cert.key.keyid();
                let parent_index = self
                    .certs
                    .iter()
                    .position(|v| v.cert.key.keyid() == parent_key && v.cert.has_role(Role::Relay))
                    .unwrap_or(first_parent);
                let parent = &self.certs[parent_index].cert;
                envelope.verify_by(CERT_TYPE, &what, &parent.key)?;
                let cert = Certificate::decode(&envelope.payload)?;
                if !parent.has_role(Role::Relay) {
                    return Err(Error::RoleNotAllowed(format!(
                        "{} is not a relay and cannot certify {}",
                        parent.subject, cert.subject
                    )));
                }
                if cert.issuer != parent.subject {
                    return Err(Error::BrokenCertChain(format!(
                        "{what} ({}) names issuer {:?} but is signed by {}",
                        cert.subject, cert.issuer, parent.subject
                    )));
                }
                if cert.has_role(Role::Origin) {
                    return Err(Error::RoleNotAllowed(format!(
                        "relay {} cannot certify origin {}: origins are certified by the root",
                        parent.subject, cert.subject
                    )));
                }
                if !parent.scope.contains(&cert.scope) {
                    return Err(Error::ScopeViolation {
                        what: format!(
                            "certificate of {} outside its issuer {}",
                            cert.subject, parent.subject
                        ),
                        scope: cert.scope.to_string(),
                        allowed: parent.scope.to_string(),
                    });
                }
                revocations.check(parent.key.keyid(), cert.not_before, &what)?;
                (cert, Issuer::Cert(parent_index))
            }
        };
        cert.check_validity(now)?;
        Ok(VerifiedCert { cert, issuer, input_index: index })
    }
}

fn at_cert(index: usize, error: Error) -> Error {
    match error {
        Error::MalformedEnvelope(reason) => {
            Error::MalformedEnvelope(format!("certificate #{index}: {reason}"))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::Hierarchy;

    #[test]
    fn standard_chain_verifies() {
        let tree = Hierarchy::standard();
        let envelopes = tree.delivery_certs();
        let set = CertSet::verify(&envelopes, &tree.anchors, &RevocationSet::default(), tree.now)
            .expect("verifies");
        assert_eq!(set.certs().len(), envelopes.len());
        let district = set.find(tree.relays[2].key.keyid().as_str(), Role::Relay).expect("district cert");
        assert_eq!(district.cert.subject, "jp-13-chuo");
    }

    #[test]
    fn order_of_certificates_does_not_matter() {
        let tree = Hierarchy::standard();
        let mut envelopes = tree.delivery_certs();
        envelopes.reverse();
        assert!(CertSet::verify(&envelopes, &tree.anchors, &RevocationSet::default(), tree.now).is_ok());
    }

    #[test]
    fn certificate_outside_issuer_scope_is_refused() {
        let tree = Hierarchy::standard();
        let rogue = SecretKey::from_seed(&[42; 32]).expect("seed");
        let cert = Certificate {
            serial: "x1".into(),
            issuer: "jp-13".into(),
            subject: "jp-27-kita".into(),
            key: rogue.public().clone(),
            roles: vec![Role::Relay],
            scope: Scope::parse("jp/27/kita").expect("scope"),
            not_before: tree.now.plus_secs(-60),
            not_after: tree.now.plus_secs(3600),
        };
        let mut envelopes = tree.delivery_certs();
        envelopes.push(cert.sign(&[&tree.relays[1].key]));
        let err = CertSet::verify(&envelopes, &tree.anchors, &RevocationSet::default(), tree.now)
            .expect_err("refused");
        assert_eq!(err.code(), "scope_violation");
    }

    #[test]
    fn a_loop_of_certificates_does_not_chain() {
        let tree = Hierarchy::standard();
        let (a, b) = (SecretKey::from_seed(&[1; 32]).expect("a"), SecretKey::from_seed(&[2; 32]).expect("b"));
        let make = |subject: &str, key: &SecretKey, issuer: &str, signer: &SecretKey| {
            Certificate {
                serial: format!("{subject}-1"),
                issuer: issuer.into(),
                subject: subject.into(),
                key: key.public().clone(),
                roles: vec![Role::Relay],
                scope: Scope::parse("jp").expect("scope"),
                not_before: tree.now.plus_secs(-60),
                not_after: tree.now.plus_secs(60),
            }
            .sign(&[signer])
        };
        let envelopes = vec![make("a", &a, "b", &b), make("b", &b, "a", &a)];
        let err = CertSet::verify(&envelopes, &tree.anchors, &RevocationSet::default(), tree.now)
            .expect_err("loop");
        assert_eq!(err.code(), "unknown_signer");
    }

    #[test]
    fn expired_and_future_certificates_are_refused() {
        let tree = Hierarchy::standard();
        let envelopes = tree.delivery_certs();
        let late = tree.now.plus_secs(400 * 24 * 3600);
        let err =
            CertSet::verify(&envelopes, &tree.anchors, &RevocationSet::default(), late).expect_err("expired");
        assert_eq!(err.code(), "cert_expired");
        let early = tree.now.plus_secs(-400 * 24 * 3600);
        let err =
            CertSet::verify(&envelopes, &tree.anchors, &RevocationSet::default(), early).expect_err("early");
        assert_eq!(err.code(), "cert_not_yet_valid");
    }
}
