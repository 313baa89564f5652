//! Deliveries: what one MQTT message carries, and the one entry point that verifies it.
//!
//! `{"advisory": Envelope, "certs": [Envelope…], "hops": [Envelope…]}`: the origin's envelope
//! untouched, the certificates needed to verify it and its hops, and one hop attestation per
//! relay it passed.
//!
//! Order of checks in [`verify_delivery`] (each step only runs if the previous passed):
//! 1. byte size ≤ [`MAX_DELIVERY_BYTES`]; 2. JSON shape; counts of hops and certs;
//! 3. every certificate chains to the anchors (signatures, roles, scope nesting, validity at
//!    `now`, issuer revocation); 4. the advisory: exactly one signature, by a key certified
//!    `origin`; decode; validate; origin id = certificate subject; scope inside the
//!    certificate's; issued within the certificate's validity, not in the future, not expired;
//!    signer not revoked at `issued_at`; 5. each hop in order: exactly one signature, by a
//!    key certified `relay`; decode; names this advisory; `keyid` and `relay` match the
//!    signer; `prev` and `upstream` link to the previous hop (or the advisory); no relay twice;
//!    relay scope overlaps the advisory's and nests in the previous relay's; times increase;
//!    signer not revoked at `forwarded_at`.
//!
//! Where a key holds several certificates with the role needed, they are tried in the fixed
//! order of [`CertSet::candidates`] and the first that passes every check of the position is
//! used; "not revoked" always means that *certificate* was not revoked by the time given.

use serde::{Deserialize, Serialize};

use crate::advisory::Advisory;
use crate::cert::{CertSet, Certificate, Role, VerifiedCert};
use crate::envelope::{ADVISORY_TYPE, Envelope, HOP_TYPE, decode_payload};
use crate::error::{Error, Result};
use crate::hop::Hop;
use crate::keys::{Digest, SecretKey};
use crate::limits::{MAX_CERTS, MAX_CLOCK_SKEW_MS, MAX_DELIVERY_BYTES, MAX_HOPS};
use crate::time::Timestamp;
use crate::trust::{RevocationSet, TrustAnchors};
use crate::verified::{Verifiable, Verified};

/// A delivery as carried on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delivery {
    /// The origin's advisory envelope, untouched.
    pub advisory: Envelope,
    /// Certificates needed to verify the advisory and the hops.
    pub certs: Vec<Envelope>,
    /// One attestation per relay, in path order.
    #[serde(default)]
    pub hops: Vec<Envelope>,
}

/// What verifying a delivery established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryFacts {
    /// The decoded, validated advisory.
    pub advisory: Advisory,
    /// Its digest (`sha256:` of the payload bytes).
    pub digest: Digest,
    /// The verified certificates.
    pub certs: CertSet,
    /// Index into `certs` of the origin's certificate.
    pub origin_cert: usize,
    /// The decoded hops, in path order, each with the index of its relay's certificate.
    pub hops: Vec<(Hop, usize)>,
    /// Digest of the last hop's payload (or the advisory digest when there is no hop):
    /// the `prev` of the next hop.
    pub chain_tip: Digest,
}

impl Verifiable for Delivery {
    type Facts = DeliveryFacts;
}

/// What a verifier needs besides the input: the anchors, the revocations in force and `now`.
#[derive(Debug, Clone, Copy)]
pub struct VerifyContext<'a> {
    /// The trust anchors.
    pub anchors: &'a TrustAnchors,
    /// Revoked keys.
    pub revocations: &'a RevocationSet,
    /// The verifier's time.
    pub now: Timestamp,
}

impl Delivery {
    /// Parses delivery JSON: size first, then shape, then counts.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_DELIVERY_BYTES {
            return Err(Error::Oversize { what: "delivery", limit: MAX_DELIVERY_BYTES, actual: bytes.len() });
        }
        let delivery: Delivery =
            serde_json::from_slice(bytes).map_err(|e| Error::MalformedEnvelope(e.to_string()))?;
        if delivery.hops.len() > MAX_HOPS {
            return Err(Error::TooManyHops { count: delivery.hops.len(), limit: MAX_HOPS });
        }
        if delivery.certs.len() > MAX_CERTS {
            return Err(Error::TooManyCerts { count: delivery.certs.len(), limit: MAX_CERTS });
        }
        Ok(delivery)
    }

    /// Compact JSON (what is published).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The digest of the advisory payload, without verifying anything. For logging a
    /// rejection only: never trust it.
    pub fn claimed_digest(&self) -> Digest {
        Digest::of(&self.advisory.payload)
    }
}

/// Parses and verifies a delivery. The only way to obtain a `Verified<Delivery>`.
pub fn verify_delivery(bytes: &[u8], ctx: VerifyContext<'_>) -> Result<Verified<Delivery>> {
    verify_parsed(Delivery::from_json(bytes)?, ctx)
}

/// Verifies an already parsed delivery (counts are checked again).
pub fn verify_parsed(delivery: Delivery, ctx: VerifyContext<'_>) -> Result<Verified<Delivery>> {
    if delivery.hops.len() > MAX_HOPS {
        return Err(Error::TooManyHops { count: delivery.hops.len(), limit: MAX_HOPS });
    }
    if delivery.certs.len() > MAX_CERTS {
        return Err(Error::TooManyCerts { count: delivery.certs.len(), limit: MAX_CERTS });
    }
    let certs = CertSet::verify(&delivery.certs, ctx.anchors, ctx.revocations, ctx.now)?;
    let (advisory, digest, origin_cert) = verify_advisory_in(&delivery.advisory, &certs, ctx)?;
    let mut hops: Vec<(Hop, usize)> = Vec::with_capacity(delivery.hops.len());
    let mut chain_tip = digest;
    for (index, envelope) in delivery.hops.iter().enumerate() {
        let previous = hops.last().map(|(hop, cert)| (hop, &certs.certs()[*cert]));
        let chain =
            HopChain { advisory: &advisory, digest, expected_prev: chain_tip, previous, earlier: &hops };
        let (hop, cert_index) = verify_hop(index, envelope, &chain, &certs, ctx)?;
        chain_tip = Digest::of(&envelope.payload);
        hops.push((hop, cert_index));
    }
    Ok(Verified::new(delivery, DeliveryFacts { advisory, digest, certs, origin_cert, hops, chain_tip }))
}

/// Verifies a bare advisory envelope given the origin certificate set.
pub(crate) fn verify_advisory_in(
    envelope: &Envelope,
    certs: &CertSet,
    ctx: VerifyContext<'_>,
) -> Result<(Advisory, Digest, usize)> {
    let what = "advisory";
    let signer = single_signer(envelope, ADVISORY_TYPE, what)?;
    let candidates = signer_candidates(certs, signer, Role::Origin, what)?;
    envelope.verify_by(ADVISORY_TYPE, what, &candidates[0].cert.key)?;
    let advisory: Advisory = decode_payload(ADVISORY_TYPE, &envelope.payload)?;
    advisory.validate()?;
    let origin = first_passing(&candidates, |origin| {
        let cert = &origin.cert;
        if advisory.origin != cert.subject {
            return Err(Error::UnknownSigner {
                what: format!(
                    "advisory of origin {:?} signed by the key of {}",
                    advisory.origin, cert.subject
                ),
                keyid: signer.to_owned(),
            });
        }
        advisory.check_scope(&cert.scope)?;
        cert.check_validity(advisory.issued_at)?;
        not_in_future("advisory issued_at", advisory.issued_at, ctx.now)?;
        if advisory.expires_at <= ctx.now {
            return Err(Error::AdvisoryExpired { expires_at: advisory.expires_at, now: ctx.now });
        }
        ctx.revocations.check(origin, advisory.issued_at, what)
    })?;
    let index = certs.index_of(origin).unwrap_or_default();
    Ok((advisory, Digest::of(&envelope.payload), index))
}

/// Where the hop chain stands when hop `index` is checked.
struct HopChain<'a> {
    advisory: &'a Advisory,
    digest: Digest,
    expected_prev: Digest,
    previous: Option<(&'a Hop, &'a VerifiedCert)>,
    earlier: &'a [(Hop, usize)],
}

fn verify_hop(
    index: usize,
    envelope: &Envelope,
    chain: &HopChain<'_>,
    certs: &CertSet,
    ctx: VerifyContext<'_>,
) -> Result<(Hop, usize)> {
    let what = format!("hop {index}");
    let signer = single_signer(envelope, HOP_TYPE, &what)?;
    let candidates = signer_candidates(certs, signer, Role::Relay, &what)?;
    envelope.verify_by(HOP_TYPE, &what, &candidates[0].cert.key)?;
    let hop: Hop = decode_payload(HOP_TYPE, &envelope.payload)?;
    if hop.relay_seq == 0 {
        return Err(Error::MalformedPayload {
            payload_type: HOP_TYPE.into(),
            reason: "relay_seq starts at 1".into(),
        });
    }
    let relay = first_passing(&candidates, |relay| check_hop(index, &what, &hop, relay, chain, ctx))?;
    Ok((hop, certs.index_of(relay).unwrap_or_default()))
}

/// Steps of a hop that depend on the relay certificate used (tried for each candidate).
fn check_hop(
    index: usize,
    what: &str,
    hop: &Hop,
    relay: &VerifiedCert,
    chain: &HopChain<'_>,
    ctx: VerifyContext<'_>,
) -> Result<()> {
    let broken = |reason: String| Error::BrokenHopChain { index, reason };
    let advisory = chain.advisory;
    if hop.advisory != chain.digest {
        return Err(broken(format!("attests {} but the advisory is {}", hop.advisory, chain.digest)));
    }
    if hop.keyid != *relay.cert.key.keyid() || hop.relay != relay.cert.subject {
        return Err(broken(format!(
            "names relay {} key {} but is signed by {} key {}",
            hop.relay,
            hop.keyid.short(),
            relay.cert.subject,
            relay.cert.key.keyid().short()
        )));
    }
    if hop.prev != chain.expected_prev {
        return Err(broken(format!("prev is {} but should be {}", hop.prev, chain.expected_prev)));
    }
    let expected_upstream =
        chain.previous.map_or(advisory.origin.as_str(), |(prev_hop, _)| prev_hop.relay.as_str());
    if hop.upstream != expected_upstream {
        return Err(broken(format!("upstream is {:?} but should be {expected_upstream:?}", hop.upstream)));
    }
    if chain.earlier.iter().any(|(other, _)| other.relay == hop.relay) {
        return Err(broken(format!("relay {} appears twice", hop.relay)));
    }
    if !relay.cert.scope.overlaps(&advisory.scope) {
        return Err(Error::ScopeViolation {
            what: format!("{what}: relay {} carried an advisory outside its scope", hop.relay),
            scope: advisory.scope.to_string(),
            allowed: relay.cert.scope.to_string(),
        });
    }
    if let Some((_, parent)) = chain.previous {
        if !parent.cert.scope.contains(&relay.cert.scope) {
            return Err(Error::ScopeViolation {
                what: format!("{what}: relay {} is not below {}", hop.relay, parent.cert.subject),
                scope: relay.cert.scope.to_string(),
                allowed: parent.cert.scope.to_string(),
            });
        }
    }
    let out_of_order = |reason: String| Error::HopTimesOutOfOrder { index, reason };
    let (after_label, after) =
        chain.previous.map_or(("advisory issued_at", advisory.issued_at), |(prev_hop, _)| {
            ("previous hop forwarded_at", prev_hop.forwarded_at)
        });
    if hop.received_at.plus_ms(MAX_CLOCK_SKEW_MS) < after {
        return Err(out_of_order(format!("received_at {} is before {after_label} {after}", hop.received_at)));
    }
    if hop.forwarded_at < hop.received_at {
        return Err(out_of_order(format!(
            "forwarded_at {} is before received_at {}",
            hop.forwarded_at, hop.received_at
        )));
    }
    not_in_future(&format!("{what} forwarded_at"), hop.forwarded_at, ctx.now)?;
    relay.cert.check_validity(hop.forwarded_at)?;
    ctx.revocations.check(relay, hop.forwarded_at, what)
}

/// The first candidate certificate for which `check` passes (candidates are in the fixed
/// order of [`CertSet::candidates`]); if none does, the first candidate's refusal.
pub(crate) fn first_passing<'c>(
    candidates: &[&'c VerifiedCert],
    mut check: impl FnMut(&'c VerifiedCert) -> Result<()>,
) -> Result<&'c VerifiedCert> {
    let mut refusal = None;
    for candidate in candidates {
        match check(candidate) {
            Ok(()) => return Ok(candidate),
            Err(error) => {
                refusal.get_or_insert(error);
            }
        }
    }
    Err(refusal.unwrap_or_else(|| Error::UnknownSigner { what: "signature".into(), keyid: String::new() }))
}

pub(crate) fn single_signer<'e>(envelope: &'e Envelope, expected_type: &str, what: &str) -> Result<&'e str> {
    if envelope.payload_type != expected_type {
        return Err(Error::WrongPayloadType {
            expected: expected_type.to_owned(),
            found: envelope.payload_type.clone(),
        });
    }
    envelope.check_shape()?;
    match envelope.signatures.as_slice() {
        [only] => Ok(only.keyid.as_str()),
        [] => Err(Error::ThresholdNotMet { what: what.to_owned(), needed: 1, found: 0 }),
        more => Err(Error::MalformedEnvelope(format!(
            "{what} must carry exactly one signature, has {}",
            more.len()
        ))),
    }
}

/// The certificates of `keyid` granting `role`, in the order they are tried; at least one.
pub(crate) fn signer_candidates<'c>(
    certs: &'c CertSet,
    keyid: &str,
    role: Role,
    what: &str,
) -> Result<Vec<&'c VerifiedCert>> {
    let found = certs.candidates(keyid, role);
    if !found.is_empty() {
        return Ok(found);
    }
    Err(match certs.find(keyid, role) {
        Err(Some(other)) => Error::RoleNotAllowed(format!(
            "{what} is signed by {}, whose certificate does not grant the {role:?} role",
            other.cert.subject
        )),
        _ => Error::UnknownSigner { what: what.to_owned(), keyid: keyid.to_owned() },
    })
}

pub(crate) fn not_in_future(what: &str, at: Timestamp, now: Timestamp) -> Result<()> {
    if at > now.plus_ms(MAX_CLOCK_SKEW_MS) {
        return Err(Error::FromTheFuture { what: what.to_owned(), at, now });
    }
    Ok(())
}

/// What a relay states about its own handling of a delivery.
#[derive(Debug, Clone)]
pub struct HopInput<'a> {
    /// The relay's node id (its certificate subject).
    pub relay_id: &'a str,
    /// The relay's signing key.
    pub relay_key: &'a SecretKey,
    /// The relay's certificate envelope (added to the delivery's certs if absent).
    pub relay_cert: &'a Envelope,
    /// When it received the delivery.
    pub received_at: Timestamp,
    /// When it forwards it.
    pub forwarded_at: Timestamp,
    /// Its output sequence number for this delivery.
    pub relay_seq: u64,
}

/// Appends this relay's hop attestation (and certificate) to a verified delivery, giving the
/// delivery to forward. `upstream` and `prev` are derived from the verified chain.
pub fn attest(verified: &Verified<Delivery>, input: &HopInput<'_>) -> Delivery {
    let facts = verified.facts();
    let upstream = facts.hops.last().map_or(facts.advisory.origin.clone(), |(hop, _)| hop.relay.clone());
    let hop = Hop {
        advisory: facts.digest,
        relay: input.relay_id.to_owned(),
        keyid: input.relay_key.keyid().clone(),
        upstream,
        received_at: input.received_at,
        forwarded_at: input.forwarded_at,
        relay_seq: input.relay_seq,
        prev: facts.chain_tip,
    };
    let mut delivery = verified.value().clone();
    if !delivery.certs.contains(input.relay_cert) {
        delivery.certs.push(input.relay_cert.clone());
    }
    delivery.hops.push(hop.sign(input.relay_key));
    delivery
}

impl Verified<Delivery> {
    /// The decoded advisory.
    pub fn advisory(&self) -> &Advisory {
        &self.facts().advisory
    }

    /// The advisory digest.
    pub fn digest(&self) -> Digest {
        self.facts().digest
    }

    /// The origin's certificate.
    pub fn origin_cert(&self) -> &Certificate {
        &self.facts().certs.certs()[self.facts().origin_cert].cert
    }

    /// The hops, in path order.
    pub fn hops(&self) -> impl Iterator<Item = &Hop> {
        self.facts().hops.iter().map(|(hop, _)| hop)
    }
}
