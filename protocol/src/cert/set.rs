//! Certificate sets, verified up to the anchors level by level.
//!
//! Level 1 is the root-signed certificates; level `d + 1` is the certificates signed by a key
//! whose first verified certificates are on level `d`. Within a level, certificates are checked
//! in input order; a certificate's issuer is chosen among the verified certificates of its
//! signing key on the level above, in the fixed order of [`super::preference`], so the outcome
//! never depends on the input order. Whatever is never reached does not chain to the anchors
//! (an unknown signer, or a loop).
//!
//! Two modes: [`CertSet::verify`] (deliveries, heads, pages) wants every certificate to chain,
//! be valid at `now`, have an unrevoked issuer and no conflicting twin, and refuses the whole
//! set at the first failure. The *pool* mode (trust bundles) checks only what does not depend
//! on time or on revocations — signatures, issuers, roles, scopes, depth — and records each
//! failure against its certificate, so that one bad certificate refuses only the statements
//! that need it.

use std::collections::HashMap;

use crate::envelope::{CERT_TYPE, Envelope};
use crate::error::{Error, Result};
use crate::keys::Digest;
use crate::limits::MAX_CHAIN_DEPTH;
use crate::time::Timestamp;
use crate::trust::{RevocationSet, TrustAnchors};

use super::{Certificate, Issuer, ROOT_ISSUER, Role, VerifiedCert, check_no_conflict, preference};

/// How a set is checked.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Mode<'r> {
    /// Every certificate chains, is valid at `now`, its issuer is not revoked at its
    /// `not_before`, and no two certificates of one key conflict; the first failure refuses all.
    Strict {
        /// Revocations in force.
        revocations: &'r RevocationSet,
        /// The verifier's time.
        now: Timestamp,
    },
    /// Signatures, issuers, roles, scopes and depth only; failures recorded per certificate.
    Pool,
}

/// The outcome of the pool mode: the certificates that chain, and why each other one does not.
#[derive(Debug, Clone, Default)]
pub(crate) struct Pool {
    /// The certificates that chain (structurally).
    pub set: CertSet,
    /// Input index and reason of each certificate that does not.
    pub refused: Vec<(usize, Error)>,
}

/// A set of certificates every one of which chains to the trust anchors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertSet {
    certs: Vec<VerifiedCert>,
}

impl CertSet {
    /// The verified certificates, level by level (issuers before subjects).
    pub fn certs(&self) -> &[VerifiedCert] {
        &self.certs
    }

    /// The certificates of `keyid` granting `role`, in the order they are tried
    /// ([`super::preference`]: latest `not_before` first, then smallest digest).
    pub fn candidates(&self, keyid: &str, role: Role) -> Vec<&VerifiedCert> {
        let mut found: Vec<&VerifiedCert> = self
            .certs
            .iter()
            .filter(|v| v.cert.key.keyid().as_str() == keyid && v.cert.has_role(role))
            .collect();
        found.sort_by(|a, b| preference(a, b));
        found
    }

    /// The preferred certificate of `keyid` granting `role` (the first of
    /// [`CertSet::candidates`]). `Err(None)` if no certificate has the key at all,
    /// `Err(Some(cert))` (the preferred one of the key) if some have it without the role.
    pub fn find(&self, keyid: &str, role: Role) -> std::result::Result<&VerifiedCert, Option<&VerifiedCert>> {
        if let Some(first) = self.candidates(keyid, role).first() {
            return Ok(first);
        }
        let mut with_key: Vec<&VerifiedCert> =
            self.certs.iter().filter(|v| v.cert.key.keyid().as_str() == keyid).collect();
        with_key.sort_by(|a, b| preference(a, b));
        Err(with_key.first().copied())
    }

    /// The position in [`CertSet::certs`] of a certificate borrowed from this set.
    pub fn index_of(&self, cert: &VerifiedCert) -> Option<usize> {
        self.certs.iter().position(|c| std::ptr::eq(c, cert))
    }

    /// The position of the (first verified) certificate with this digest.
    pub fn by_digest(&self, digest: &Digest) -> Option<usize> {
        self.certs.iter().position(|c| c.digest == *digest)
    }

    /// The issuer chain of the certificate at `index`, from it up to the root.
    pub fn chain_of(&self, index: usize) -> Vec<&VerifiedCert> {
        self.chain_indices(index).into_iter().filter_map(|i| self.certs.get(i)).collect()
    }

    /// The positions of the chain of the certificate at `index`, from it up to the root.
    pub fn chain_indices(&self, index: usize) -> Vec<usize> {
        let mut chain = Vec::new();
        let mut next = self.certs.get(index).map(|_| index);
        while let Some(current) = next {
            chain.push(current);
            next = match self.certs[current].issuer {
                Issuer::Cert(parent) if chain.len() <= self.certs.len() => Some(parent),
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
        evaluate(envelopes, anchors, Mode::Strict { revocations, now }).map(|pool| pool.set)
    }

    /// The certificates of `envelopes` that verify together at `now`, in their order: each is
    /// kept if it verifies with those kept so far (repeated until nothing more is kept). For a
    /// carried chain in which some certificates no longer count — superseded by a root
    /// rotation, expired, revoked — while a reissued one does: [`CertSet::verify`] of the
    /// result succeeds, and is empty only if nothing verifies.
    pub fn usable(
        envelopes: &[Envelope],
        anchors: &TrustAnchors,
        revocations: &RevocationSet,
        now: Timestamp,
    ) -> Vec<Envelope> {
        if Self::verify(envelopes, anchors, revocations, now).is_ok() {
            return envelopes.to_vec();
        }
        let mut kept: Vec<Envelope> = Vec::new();
        let mut rest: Vec<&Envelope> = envelopes.iter().collect();
        loop {
            let before = rest.len();
            rest.retain(|envelope| {
                let mut trial = kept.clone();
                trial.push((*envelope).clone());
                let verifies = Self::verify(&trial, anchors, revocations, now).is_ok();
                if verifies {
                    kept = trial;
                }
                !verifies
            });
            if rest.len() == before || rest.is_empty() {
                break;
            }
        }
        // In the order given.
        envelopes.iter().filter(|envelope| kept.contains(envelope)).cloned().collect()
    }

    /// The pool mode: structural checks only, failures recorded per certificate.
    pub(crate) fn pool(envelopes: &[Envelope], anchors: &TrustAnchors) -> Pool {
        evaluate(envelopes, anchors, Mode::Pool).unwrap_or_default()
    }

    /// Verifies one certificate of level `depth`: root-signed on level 1, else signed by the
    /// key of one of `parents` (that key's certificates on the level above).
    fn verify_one(
        &self,
        index: usize,
        envelope: &Envelope,
        depth: usize,
        parents: &HashMap<String, Vec<usize>>,
        anchors: &TrustAnchors,
        mode: Mode<'_>,
    ) -> Result<VerifiedCert> {
        let what = format!("certificate #{index}");
        let (cert, issuer) = if depth == 1 {
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
        } else {
            let hint = envelope.keyid_hints().next().unwrap_or_default();
            let candidates = parents.get(hint).map(Vec::as_slice).unwrap_or_default();
            let Some(&first) = candidates.first() else {
                return Err(Error::UnknownSigner { what, keyid: hint.to_owned() });
            };
            envelope.verify_by(CERT_TYPE, &what, &self.certs[first].cert.key)?;
            let cert = Certificate::decode(&envelope.payload)?;
            // Issuer candidates: relay certificates first, then those naming the right subject
            // and containing the scope, then the fixed preference; the first that passes wins,
            // the first one's refusal is reported.
            let rank = |v: &VerifiedCert| {
                (
                    v.cert.has_role(Role::Relay),
                    v.cert.subject == cert.issuer,
                    v.cert.scope.contains(&cert.scope),
                )
            };
            let mut order = candidates.to_vec();
            order.sort_by(|a, b| {
                let (a, b) = (&self.certs[*a], &self.certs[*b]);
                rank(b).cmp(&rank(a)).then_with(|| preference(a, b))
            });
            let mut refusal = None;
            let mut chosen = None;
            for parent in order {
                match self.check_issuer(&what, &cert, parent, mode) {
                    Ok(()) => {
                        chosen = Some(parent);
                        break;
                    }
                    Err(error) => {
                        refusal.get_or_insert(error);
                    }
                }
            }
            match (chosen, refusal) {
                (Some(parent), _) => (cert, Issuer::Cert(parent)),
                (None, Some(error)) => return Err(error),
                (None, None) => return Err(Error::UnknownSigner { what, keyid: hint.to_owned() }),
            }
        };
        if let Mode::Strict { now, .. } = mode {
            cert.check_validity_now(now)?;
        }
        let digest = Digest::of(&envelope.payload);
        Ok(VerifiedCert { cert, issuer, input_index: index, digest, depth })
    }

    /// Whether the certificate at `parent` may have issued `cert`.
    fn check_issuer(&self, what: &str, cert: &Certificate, parent: usize, mode: Mode<'_>) -> Result<()> {
        let issuer = &self.certs[parent];
        let parent_cert = &issuer.cert;
        if !parent_cert.has_role(Role::Relay) {
            return Err(Error::RoleNotAllowed(format!(
                "{} is not a relay and cannot certify {}",
                parent_cert.subject, cert.subject
            )));
        }
        if cert.issuer != parent_cert.subject {
            return Err(Error::BrokenCertChain(format!(
                "{what} ({}) names issuer {:?} but is signed by {}",
                cert.subject, cert.issuer, parent_cert.subject
            )));
        }
        if cert.has_role(Role::Origin) {
            return Err(Error::RoleNotAllowed(format!(
                "relay {} cannot certify origin {}: origins are certified by the root",
                parent_cert.subject, cert.subject
            )));
        }
        if !parent_cert.scope.contains(&cert.scope) {
            return Err(Error::ScopeViolation {
                what: format!("certificate of {} outside its issuer {}", cert.subject, parent_cert.subject),
                scope: cert.scope.to_string(),
                allowed: parent_cert.scope.to_string(),
            });
        }
        if let Mode::Strict { revocations, .. } = mode {
            revocations.check(issuer, cert.not_before, what)?;
        }
        Ok(())
    }
}

/// The level-by-level worklist. In strict mode the first failure is returned as `Err`; in pool
/// mode failures are collected and the result is always `Ok`.
fn evaluate(envelopes: &[Envelope], anchors: &TrustAnchors, mode: Mode<'_>) -> Result<Pool> {
    let strict = matches!(mode, Mode::Strict { .. });
    let refuse = |refused: &mut Vec<(usize, Error)>, index: usize, error: Error| -> Result<()> {
        if strict {
            return Err(error);
        }
        refused.push((index, error));
        Ok(())
    };
    let mut out = Pool::default();
    let mut settled = vec![false; envelopes.len()];
    let mut level: Vec<usize> = Vec::new();
    let mut waiting: HashMap<&str, Vec<usize>> = HashMap::new();
    for (index, envelope) in envelopes.iter().enumerate() {
        let hints: Vec<&str> = envelope.keyid_hints().collect();
        let pre = if envelope.payload_type != CERT_TYPE {
            Err(Error::WrongPayloadType {
                expected: CERT_TYPE.to_owned(),
                found: envelope.payload_type.clone(),
            })
        } else if let Err(error) = envelope.check_shape() {
            Err(at_cert(index, error))
        } else if hints.is_empty() {
            Err(Error::ThresholdNotMet {
                what: format!("certificate #{index}"),
                needed: anchors.threshold(),
                found: 0,
            })
        } else {
            Ok(())
        };
        if let Err(error) = pre {
            settled[index] = true;
            refuse(&mut out.refused, index, error)?;
        } else if hints.iter().all(|hint| anchors.key(hint).is_some()) {
            level.push(index);
        } else if let [hint] = hints[..] {
            waiting.entry(hint).or_default().push(index);
        }
    }
    let mut parents: HashMap<String, Vec<usize>> = HashMap::new();
    let mut depth = 1;
    while !level.is_empty() {
        let mut accepted: Vec<usize> = Vec::new();
        for &index in &level {
            settled[index] = true;
            let result = if depth > MAX_CHAIN_DEPTH {
                Err(Error::BrokenCertChain(format!(
                    "certificate #{index} is {depth} certificates below the root; at most {MAX_CHAIN_DEPTH}"
                )))
            } else {
                out.set.verify_one(index, &envelopes[index], depth, &parents, anchors, mode).and_then(
                    |cert| {
                        if strict {
                            for other in out.set.certs.iter().filter(|o| o.cert.key == cert.cert.key) {
                                check_no_conflict(other, &cert)?;
                            }
                        }
                        Ok(cert)
                    },
                )
            };
            match result {
                Ok(cert) => {
                    accepted.push(out.set.certs.len());
                    out.set.certs.push(cert);
                }
                Err(error) => refuse(&mut out.refused, index, error)?,
            }
        }
        // A key's children are released by its first level with verified certificates; those
        // certificates are the candidates for their issuer.
        let mut next: Vec<usize> = Vec::new();
        let mut first_seen: HashMap<String, Vec<usize>> = HashMap::new();
        for position in accepted {
            let keyid = out.set.certs[position].cert.key.keyid().as_str().to_owned();
            if !parents.contains_key(&keyid) {
                first_seen.entry(keyid).or_default().push(position);
            }
        }
        for (keyid, positions) in first_seen {
            if let Some(children) = waiting.remove(keyid.as_str()) {
                next.extend(children);
            }
            parents.insert(keyid, positions);
        }
        next.sort_unstable();
        level = next;
        depth += 1;
    }
    for (index, envelope) in envelopes.iter().enumerate() {
        if !settled[index] {
            let keyid = envelope.keyid_hints().next().unwrap_or_default().to_owned();
            refuse(
                &mut out.refused,
                index,
                Error::UnknownSigner { what: format!("certificate #{index}"), keyid },
            )?;
        }
    }
    Ok(out)
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
    use crate::keys::SecretKey;
    use crate::scope::Scope;

    fn strict(envelopes: &[Envelope], tree: &Hierarchy, now: Timestamp) -> Result<CertSet> {
        CertSet::verify(envelopes, &tree.anchors, &RevocationSet::default(), now)
    }

    #[test]
    fn standard_chain_verifies_level_by_level() {
        let tree = Hierarchy::standard();
        let envelopes = tree.delivery_certs();
        let set = strict(&envelopes, &tree, tree.now).expect("verifies");
        assert_eq!(set.certs().len(), envelopes.len());
        let district = set.find(tree.relays[2].key.keyid().as_str(), Role::Relay).expect("district cert");
        assert_eq!((district.cert.subject.as_str(), district.depth), ("jp-13-chuo", 3));
        assert_eq!(district.digest, Digest::of(&tree.relays[2].cert.payload));
        let chain: Vec<&str> = set
            .chain_of(set.index_of(district).expect("in set"))
            .iter()
            .map(|v| v.cert.subject.as_str())
            .collect();
        assert_eq!(chain, ["jp-13-chuo", "jp-13", "jp"]);
    }

    #[test]
    fn usable_keeps_what_still_verifies_after_a_root_rotation() {
        let tree = Hierarchy::standard();
        // The national certificate is signed by root-1 and root-3; root-3 is then retired and
        // the certificate reissued by root-1 and root-2.
        let national = Certificate::decode(&tree.relays[0].cert.payload).expect("cert");
        let reissued = national.sign(&[&tree.roots[0], &tree.roots[1]]);
        let root4 = SecretKey::from_seed(&[0x44; 32]).expect("key");
        let rotated =
            TrustAnchors::numbered(2, [tree.roots[0].public(), tree.roots[1].public(), root4.public()])
                .expect("anchors");
        let chain = vec![
            tree.relays[2].cert.clone(),
            tree.relays[1].cert.clone(),
            tree.relays[0].cert.clone(),
            reissued.clone(),
        ];
        let none = RevocationSet::default();
        assert!(CertSet::verify(&chain, &rotated, &none, tree.now).is_err(), "the old certificate fails all");
        let usable = CertSet::usable(&chain, &rotated, &none, tree.now);
        assert_eq!(usable, vec![tree.relays[2].cert.clone(), tree.relays[1].cert.clone(), reissued]);
        let set = CertSet::verify(&usable, &rotated, &none, tree.now).expect("verifies");
        assert!(set.find(tree.relays[2].key.keyid().as_str(), Role::Relay).is_ok());
        // Before the rotation everything verifies and is kept as it is.
        assert_eq!(CertSet::usable(&chain, &tree.anchors, &none, tree.now), chain);
        // Nothing usable: empty.
        assert!(CertSet::usable(&chain[..2], &rotated, &none, tree.now).is_empty());
    }

    #[test]
    fn order_of_certificates_does_not_matter() {
        let tree = Hierarchy::standard();
        let mut envelopes = tree.delivery_certs();
        envelopes.reverse();
        assert!(strict(&envelopes, &tree, tree.now).is_ok());
    }

    #[test]
    fn certificate_outside_issuer_scope_is_refused() {
        let tree = Hierarchy::standard();
        let rogue = SecretKey::from_seed(&[42; 32]).expect("seed");
        let window = (tree.now.plus_secs(-60), tree.now.plus_secs(3600));
        let scope = Scope::parse("jp/27/kita").expect("scope");
        let cert =
            Certificate::for_key("x1", "jp-13", "jp-27-kita", rogue.public(), Role::Relay, &scope, window);
        let mut envelopes = tree.delivery_certs();
        envelopes.push(cert.sign(&[&tree.relays[1].key]));
        let err = strict(&envelopes, &tree, tree.now).expect_err("refused");
        assert_eq!(err.code(), "scope_violation");
    }

    #[test]
    fn a_loop_of_certificates_does_not_chain() {
        let tree = Hierarchy::standard();
        let (a, b) = (SecretKey::from_seed(&[1; 32]).expect("a"), SecretKey::from_seed(&[2; 32]).expect("b"));
        let window = (tree.now.plus_secs(-60), tree.now.plus_secs(60));
        let scope = Scope::parse("jp").expect("scope");
        let make = |subject: &str, key: &SecretKey, issuer: &str, signer: &SecretKey| {
            Certificate::for_key(
                format!("{subject}-1"),
                issuer,
                subject,
                key.public(),
                Role::Relay,
                &scope,
                window,
            )
            .sign(&[signer])
        };
        let envelopes = vec![make("a", &a, "b", &b), make("b", &b, "a", &a)];
        let err = strict(&envelopes, &tree, tree.now).expect_err("loop");
        assert_eq!(err.code(), "unknown_signer");
    }

    #[test]
    fn expired_and_future_certificates_are_refused() {
        let tree = Hierarchy::standard();
        let envelopes = tree.delivery_certs();
        let err = strict(&envelopes, &tree, tree.now.plus_secs(400 * 24 * 3600)).expect_err("expired");
        assert_eq!(err.code(), "cert_expired");
        let err = strict(&envelopes, &tree, tree.now.plus_secs(-400 * 24 * 3600)).expect_err("early");
        assert_eq!(err.code(), "cert_not_yet_valid");
        assert!(err.is_clock_dependent());
    }

    #[test]
    fn the_pool_records_failures_per_certificate() {
        let tree = Hierarchy::standard();
        let mut envelopes = tree.delivery_certs();
        // An expired certificate is fine in the pool (time is checked per use); a bad
        // signature refuses that certificate and what hangs below it only.
        let mut broken = envelopes[2].clone();
        broken.signatures[0].sig[0] ^= 1;
        envelopes[2] = broken;
        let pool = CertSet::pool(&envelopes, &tree.anchors);
        let subjects: Vec<&str> = pool.set.certs().iter().map(|v| v.cert.subject.as_str()).collect();
        assert_eq!(subjects, ["mhlw", "jp"]);
        let codes: Vec<(usize, &str)> = pool.refused.iter().map(|(i, e)| (*i, e.code())).collect();
        assert_eq!(codes, [(2, "bad_signature"), (3, "unknown_signer")]);
    }
}
