//! One revocation statement of a bundle, on its own: who signed it ([`authenticate`]) and
//! whether the signer may revoke that certificate at that time ([`authorize`]).
//!
//! Both run against the bundle's certificate *pool*: its certificates verified structurally
//! (signatures, issuers, roles, scopes, depth; [`CertSet::pool`]). Times and revocations are
//! checked per statement, on the certificates that statement needs, so an expired or broken
//! certificate in the pool refuses only the statements that need it.

use std::collections::HashMap;

use crate::advisory::check_id;
use crate::cert::set::Pool;
use crate::cert::{CertSet, Certificate, Issuer, ROOT_ISSUER, Role, check_no_conflict};
use crate::envelope::{Envelope, REVOCATION_TYPE, decode_payload};
use crate::error::{Error, Result};
use crate::keys::{Digest, KeyId};
use crate::limits::{MAX_CLOCK_SKEW_MS, MAX_SHORT_TEXT_CHARS, MAX_STATEMENT_PIECE_BYTES};
use crate::time::Timestamp;

use super::anchors::TrustAnchors;
use super::bundle::TrustBundle;
use super::revocation::{Revocation, RevocationSet, RevokedCert};

/// What statements are checked against: the bundle's certificates, verified as a pool.
#[derive(Debug)]
pub(super) struct Context<'a> {
    /// The bundle's certificate envelopes.
    pub envelopes: &'a [Envelope],
    /// The pool: what chains, and why the rest does not.
    pub pool: Pool,
    /// Digest of a certificate payload → the first envelope carrying it.
    pub by_digest: HashMap<Digest, usize>,
    /// The anchors in force (after the bundle's rotations).
    pub anchors: &'a TrustAnchors,
    /// The verifier's time.
    pub now: Timestamp,
}

impl<'a> Context<'a> {
    pub fn new(envelopes: &'a [Envelope], anchors: &'a TrustAnchors, now: Timestamp) -> Self {
        let pool = CertSet::pool(envelopes, anchors);
        let mut by_digest = HashMap::new();
        for (index, envelope) in envelopes.iter().enumerate() {
            by_digest.entry(Digest::of(&envelope.payload)).or_insert(index);
        }
        Self { envelopes, pool, by_digest, anchors, now }
    }
}

/// A statement whose signature verified.
#[derive(Debug, Clone)]
pub(super) struct Signed {
    /// Position in the bundle's revocations.
    pub index: usize,
    /// `sha256:` of its payload.
    pub id: Digest,
    /// The decoded statement.
    pub revocation: Revocation,
    /// The relay key that signed it; `None` for the root.
    pub signer: Option<KeyId>,
    /// Evaluation rank: 0 for the root, else the revoker's depth below the root.
    pub rank: usize,
}

/// What an accepted statement establishes.
#[derive(Debug, Clone)]
pub(super) struct Authorized {
    /// The revoked certificate, as it enters the revocation set.
    pub revoked: RevokedCert,
    /// The revoked certificate's `not_after` (for pruning).
    pub not_after: Timestamp,
    /// The certificates it needs (indices into the bundle's certs), ascending.
    pub certs: Vec<usize>,
}

/// Checks the signature of revocation `index`: a threshold of anchors (issuer `root`), or one
/// relay key certified in the pool under the statement's `issuer`. Then the fields.
pub(super) fn authenticate(index: usize, envelope: &Envelope, ctx: &Context<'_>) -> Result<Signed> {
    let what = "revocation";
    if envelope.payload_type != REVOCATION_TYPE {
        return Err(Error::WrongPayloadType {
            expected: REVOCATION_TYPE.into(),
            found: envelope.payload_type.clone(),
        });
    }
    envelope.check_shape()?;
    let hints: Vec<&str> = envelope.keyid_hints().collect();
    let by_root = !hints.is_empty() && hints.iter().all(|h| ctx.anchors.key(h).is_some());
    let (revocation, signer, rank) = if by_root {
        envelope.verify_with(REVOCATION_TYPE, what, ctx.anchors.threshold(), |h| ctx.anchors.key(h))?;
        let revocation: Revocation = decode_payload(REVOCATION_TYPE, &envelope.payload)?;
        if revocation.issuer != ROOT_ISSUER {
            return Err(Error::BrokenCertChain(format!(
                "revocation signed by the root names issuer {:?}",
                revocation.issuer
            )));
        }
        (revocation, None, 0)
    } else {
        let hint = hints.first().copied().unwrap_or_default();
        let certs = ctx.pool.set.candidates(hint, Role::Relay);
        let Some(first) = certs.first() else {
            return Err(Error::UnknownSigner { what: what.into(), keyid: hint.to_owned() });
        };
        envelope.verify_by(REVOCATION_TYPE, what, &first.cert.key)?;
        let revocation: Revocation = decode_payload(REVOCATION_TYPE, &envelope.payload)?;
        let named = certs.iter().filter(|c| c.cert.subject == revocation.issuer);
        let Some(rank) = named.map(|c| c.depth).min() else {
            return Err(Error::BrokenCertChain(format!(
                "revocation names issuer {:?} but is signed by {}",
                revocation.issuer, first.cert.subject
            )));
        };
        (revocation, Some(first.cert.key.keyid().clone()), rank)
    };
    let malformed = |reason: String| Error::MalformedPayload { payload_type: REVOCATION_TYPE.into(), reason };
    check_id("subject", &revocation.subject).map_err(malformed)?;
    if revocation.reason.chars().count() > MAX_SHORT_TEXT_CHARS {
        return Err(malformed("reason too long".into()));
    }
    if revocation.issued_at > ctx.now.plus_ms(MAX_CLOCK_SKEW_MS) {
        return Err(Error::FromTheFuture { what: what.into(), at: revocation.issued_at, now: ctx.now });
    }
    let id = Digest::of(&envelope.payload);
    Ok(Signed { index, id, revocation, signer, rank })
}

/// Whether the signer of `signed` may revoke the certificate it names, given the revocations
/// accepted before it (`revoked`); and which certificates that takes.
pub(super) fn authorize(
    signed: &Signed,
    envelope: &Envelope,
    ctx: &Context<'_>,
    revoked: &RevocationSet,
) -> Result<Authorized> {
    let revocation = &signed.revocation;
    let digest = revocation.cert;
    let missing = || Error::RevokedCertMissing { digest: digest.to_string() };
    let (cert, certs) = match &signed.signer {
        // The root may revoke any certificate: it need only travel with the statement.
        None => {
            // Carry an envelope of it that chains if there is one (a twin with a broken
            // signature has the same payload), else the first one carried.
            let chained = ctx.pool.set.by_digest(&digest).map(|p| ctx.pool.set.certs()[p].input_index);
            let index = chained.or_else(|| ctx.by_digest.get(&digest).copied()).ok_or_else(missing)?;
            (Certificate::decode(&ctx.envelopes[index].payload)?, vec![index])
        }
        Some(signer) => relay_authority(revocation, signer, ctx, revoked)?,
    };
    if cert.subject != revocation.subject {
        return Err(Error::MalformedPayload {
            payload_type: REVOCATION_TYPE.into(),
            reason: format!(
                "names subject {:?} but the revoked certificate's subject is {:?}",
                revocation.subject, cert.subject
            ),
        });
    }
    let piece = TrustBundle {
        certs: certs.iter().map(|i| ctx.envelopes[*i].clone()).collect(),
        revocations: vec![envelope.clone()],
        rotations: Vec::new(),
    };
    let size = piece.canonical().to_json().len();
    if size > MAX_STATEMENT_PIECE_BYTES {
        return Err(Error::Oversize { what: "trust piece", limit: MAX_STATEMENT_PIECE_BYTES, actual: size });
    }
    let revoked = RevokedCert {
        effective_at: revocation.effective_at,
        subject: cert.subject.clone(),
        keyid: cert.key.keyid().clone(),
    };
    Ok(Authorized { revoked, not_after: cert.not_after, certs })
}

/// A relay-signed statement: the revoked certificate's chain must pass through a certificate
/// of the revoker (its key and subject), and one of the revoker's certificates must be valid
/// at `issued_at` with its whole chain, not revoked by then, and with unrevoked issuers.
fn relay_authority(
    revocation: &Revocation,
    signer: &KeyId,
    ctx: &Context<'_>,
    revoked: &RevocationSet,
) -> Result<(Certificate, Vec<usize>)> {
    let set = &ctx.pool.set;
    let Some(position) = set.by_digest(&revocation.cert) else {
        // Carried but not chaining: say why; not carried at all: missing.
        let carried = ctx.by_digest.get(&revocation.cert);
        let why = carried.and_then(|index| ctx.pool.refused.iter().find(|(i, _)| i == index));
        return Err(match why {
            Some((_, error)) => error.clone(),
            None => Error::RevokedCertMissing { digest: revocation.cert.to_string() },
        });
    };
    let chain = set.chain_indices(position);
    let is_revoker = |i: &usize| {
        let cert = &set.certs()[*i].cert;
        cert.key.keyid() == signer && cert.subject == revocation.issuer
    };
    let Some(through) = chain.iter().position(is_revoker) else {
        return Err(Error::RevocationNotAuthorized(format!(
            "the certificate of {} ({}) was not issued at or below {}",
            revocation.subject, revocation.cert, revocation.issuer
        )));
    };
    let mut refusal = None;
    for revoker in set.candidates(signer.as_str(), Role::Relay) {
        if revoker.cert.subject != revocation.issuer {
            continue;
        }
        let Some(at) = set.index_of(revoker) else { continue };
        match revoker_in_force(set, at, revocation.issued_at, revoked) {
            Ok(revoker_chain) => {
                let mut needed: Vec<usize> =
                    chain[..through.max(1)].iter().chain(&revoker_chain).copied().collect();
                needed.sort_unstable();
                needed.dedup();
                for (n, a) in needed.iter().enumerate() {
                    for b in &needed[n + 1..] {
                        check_no_conflict(&set.certs()[*a], &set.certs()[*b])?;
                    }
                }
                let inputs = needed.iter().map(|i| set.certs()[*i].input_index);
                let mut certs: Vec<usize> = inputs.collect();
                certs.sort_unstable();
                certs.dedup();
                return Ok((set.certs()[position].cert.clone(), certs));
            }
            Err(error) => {
                refusal.get_or_insert(error);
            }
        }
    }
    Err(refusal.unwrap_or_else(|| {
        Error::RevocationNotAuthorized(format!("no certificate of {} signed this", revocation.issuer))
    }))
}

/// The chain of the revoker's certificate at `at` if it was in force at `issued_at`: every
/// certificate of it valid then, the revoker's not revoked by then, each issuer not revoked at
/// its child's `not_before`.
fn revoker_in_force(
    set: &CertSet,
    at: usize,
    issued_at: Timestamp,
    revoked: &RevocationSet,
) -> Result<Vec<usize>> {
    let what = "revocation (its signer's certificate)";
    revoked.check(&set.certs()[at], issued_at, what)?;
    let chain = set.chain_indices(at);
    for link in &chain {
        let link = &set.certs()[*link];
        link.cert.check_validity(issued_at)?;
        if let Issuer::Cert(parent) = link.issuer {
            revoked.check(&set.certs()[parent], link.cert.not_before, what)?;
        }
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::Hierarchy;

    #[test]
    fn statements_rank_by_their_revokers_depth() {
        let tree = Hierarchy::standard();
        let root = tree.root_revocation(&tree.origin_cert, tree.now);
        let tokyo = tree.relay_revocation(1, &tree.relays[2].cert, &[], tree.now, tree.now);
        let bundle = root.merged(&tokyo);
        let ctx = Context::new(&bundle.certs, &tree.anchors, tree.now);
        let ranks: Vec<(usize, bool)> = bundle
            .revocations
            .iter()
            .enumerate()
            .map(|(i, e)| authenticate(i, e, &ctx).map(|s| (s.rank, s.signer.is_none())).expect("signed"))
            .collect();
        assert!(ranks.contains(&(0, true)) && ranks.contains(&(2, false)), "{ranks:?}");
    }

    #[test]
    fn a_relay_statement_needs_the_revoked_certificate_and_the_revokers_chain() {
        let tree = Hierarchy::standard();
        let bundle = tree.relay_revocation(1, &tree.relays[2].cert, &[], tree.now, tree.now);
        let ctx = Context::new(&bundle.certs, &tree.anchors, tree.now);
        let signed = authenticate(0, &bundle.revocations[0], &ctx).expect("signed");
        let authorized =
            authorize(&signed, &bundle.revocations[0], &ctx, &RevocationSet::default()).expect("authorized");
        assert_eq!(authorized.certs, vec![0, 1, 2]);
        assert_eq!(authorized.revoked.subject, "jp-13-chuo");
        // Without the revoker's own certificate in the pool, its key is unknown.
        let without: Vec<Envelope> =
            bundle.certs.iter().filter(|c| **c != tree.relays[1].cert).cloned().collect();
        let ctx = Context::new(&without, &tree.anchors, tree.now);
        let err = authenticate(0, &bundle.revocations[0], &ctx).expect_err("no revoker");
        assert_eq!(err.code(), "unknown_signer");
    }
}
