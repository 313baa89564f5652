//! One test (or more) per rejection reason: each builds a delivery (or envelope, certificate
//! set, revocation, anchors) that is wrong in exactly one way and asserts that the verifier
//! refuses it with exactly that [`Error::code`] and variant.
//!
//! Bad inputs are built from the deterministic fixture hierarchy
//! (root 2-of-3 → origin `mhlw`, relays `jp` → `jp-13` → `jp-13-chuo`). Bad hops are
//! hand-built [`Hop`] values signed with [`Hop::sign`] through [`Chain`], whose default
//! output is proven byte-identical to the fixture's own 3-hop delivery, so every negative test
//! differs from a valid delivery only by what it changes.

use base64::Engine as _;
use kairan_protocol::cert::ROOT_ISSUER;
use kairan_protocol::envelope::{ADVISORY_TYPE, CERT_TYPE, HOP_TYPE};
use kairan_protocol::fixtures::{self, Hierarchy};
use kairan_protocol::limits::{
    MAX_CERTS, MAX_DELIVERY_BYTES, MAX_ENVELOPE_BYTES, MAX_HOPS, MAX_PAYLOAD_BYTES,
};
use kairan_protocol::trust::RootKey;
use kairan_protocol::{
    Advisory, Certificate, Delivery, Digest, Envelope, Error, Hop, HopInput, Kind, Localized, PublicKey,
    Result, Revocation, RevocationSet, Role, Scope, SecretKey, Timestamp, TrustAnchors, TrustBundle,
    Verified, VerifyContext, attest, verify_delivery, verify_parsed,
};

/// Asserts that `$result` is an error with reason code `$code` whose value matches `$pattern`
/// (matched against `&Error`), and evaluates to the error.
macro_rules! assert_rejected {
    ($result:expr, $code:literal, $pattern:pat $(if $guard:expr)?) => {{
        let err: Error = match $result {
            Ok(_) => panic!("accepted; expected {}", $code),
            Err(err) => err,
        };
        assert_eq!(err.code(), $code, "wrong reason: {err}");
        assert!(matches!(&err, $pattern $(if $guard)?), "right code, unexpected details: {err:?}");
        err
    }};
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn sample() -> Advisory {
    fixtures::sample_advisory("mhlw", 1, None)
}

fn scope(text: &str) -> Scope {
    Scope::parse(text).expect("valid scope")
}

fn no_revocations() -> RevocationSet {
    RevocationSet::default()
}

/// Serializes and verifies `delivery` at `now` (through the byte-level entry point).
fn verify_at(
    tree: &Hierarchy,
    delivery: &Delivery,
    revocations: &RevocationSet,
    now: Timestamp,
) -> Result<Verified<Delivery>> {
    verify_delivery(&delivery.to_json(), VerifyContext { anchors: &tree.anchors, revocations, now })
}

/// Serializes and verifies `delivery` at [`Hierarchy::later`] with no revocations.
fn verify(tree: &Hierarchy, delivery: &Delivery) -> Result<Verified<Delivery>> {
    verify_at(tree, delivery, &no_revocations(), tree.later())
}

/// A delivery of `advisory` signed by the fixture origin, carrying every fixture certificate
/// and no hop.
fn published(tree: &Hierarchy, advisory: &Advisory) -> Delivery {
    Delivery { advisory: tree.sign_advisory(advisory), certs: tree.delivery_certs(), hops: vec![] }
}

/// A certificate issued by fixture relay `issuer` (an index into `tree.relays`), valid from a day
/// before the fixture's `now` for a year.
fn child_cert(
    tree: &Hierarchy,
    issuer: usize,
    subject: &str,
    key: &PublicKey,
    role: Role,
    scope_text: &str,
) -> Certificate {
    let issuer = &tree.relays[issuer];
    Certificate {
        serial: format!("{}-{subject}", issuer.id),
        issuer: issuer.id.clone(),
        subject: subject.into(),
        key: key.clone(),
        roles: vec![role],
        scope: scope(scope_text),
        not_before: tree.now.plus_secs(-24 * 3600),
        not_after: tree.now.plus_secs(365 * 24 * 3600),
    }
}

/// The fixture origin certificate, decoded (to re-issue variants of it).
fn origin_certificate(tree: &Hierarchy) -> Certificate {
    Certificate::decode(&tree.origin_cert.payload).expect("fixture origin certificate decodes")
}

/// The certificate of fixture relay `index`, decoded.
fn relay_certificate(tree: &Hierarchy, index: usize) -> Certificate {
    Certificate::decode(&tree.relays[index].cert.payload).expect("fixture relay certificate decodes")
}

/// Builds a delivery hop by hop, by hand, so a test can get exactly one thing wrong.
///
/// Hop `i` is timed like the fixture's: received at `now + 10 s·i + 1 s`, forwarded a second
/// later, `relay_seq` 1. Certificates: every fixture certificate.
struct Chain<'t> {
    tree: &'t Hierarchy,
    delivery: Delivery,
    digest: Digest,
    tip: Digest,
    upstream: String,
}

impl<'t> Chain<'t> {
    fn new(tree: &'t Hierarchy, advisory: &Advisory) -> Self {
        let delivery = published(tree, advisory);
        let digest = Digest::of(&delivery.advisory.payload);
        Self { tree, delivery, digest, tip: digest, upstream: advisory.origin.clone() }
    }

    /// The correctly linked next hop, attested by `relay_id` with `key`.
    fn hop_by(&self, relay_id: &str, key: &SecretKey) -> Hop {
        let index = i64::try_from(self.delivery.hops.len()).expect("few hops");
        let received_at = self.tree.now.plus_secs(10 * index + 1);
        Hop {
            advisory: self.digest,
            relay: relay_id.into(),
            keyid: key.keyid().clone(),
            upstream: self.upstream.clone(),
            received_at,
            forwarded_at: received_at.plus_secs(1),
            relay_seq: 1,
            prev: self.tip,
        }
    }

    /// The correctly linked next hop of fixture relay `relay`.
    fn next_hop(&self, relay: usize) -> Hop {
        let relay = &self.tree.relays[relay];
        self.hop_by(&relay.id, &relay.key)
    }

    /// Signs `hop` with `key` and appends it; later hops link to it.
    fn push(&mut self, hop: &Hop, key: &SecretKey) -> &mut Self {
        let envelope = hop.sign(key);
        self.tip = Digest::of(&envelope.payload);
        self.upstream = hop.relay.clone();
        self.delivery.hops.push(envelope);
        self
    }

    /// Appends the correct hop of fixture relay `relay`.
    fn relay(&mut self, relay: usize) -> &mut Self {
        let tree = self.tree;
        let hop = self.next_hop(relay);
        self.push(&hop, &tree.relays[relay].key)
    }

    fn delivery(&self) -> Delivery {
        self.delivery.clone()
    }
}

/// The payload bytes of `envelope` with `from` replaced by `to` (exactly once).
fn replaced(payload: &[u8], from: &str, to: &str) -> Vec<u8> {
    let text = std::str::from_utf8(payload).expect("payloads are UTF-8");
    assert_eq!(text.matches(from).count(), 1, "{from:?} must occur once in {text}");
    text.replace(from, to).into_bytes()
}

// ---------------------------------------------------------------------------------------------
// Accepted
// ---------------------------------------------------------------------------------------------

#[test]
fn the_three_hop_fixture_delivery_verifies() {
    let tree = Hierarchy::standard();
    let advisory = sample();
    let delivery = tree.delivery(&advisory, 3);
    let verified = verify(&tree, &delivery).expect("the fixture delivery verifies");
    assert_eq!(verified.advisory(), &advisory);
    assert_eq!(verified.digest(), Digest::of(&advisory.to_payload()));
    assert_eq!(verified.origin_cert().subject, "mhlw");
    let relays: Vec<&str> = verified.hops().map(|hop| hop.relay.as_str()).collect();
    assert_eq!(relays, ["jp", "jp-13", "jp-13-chuo"]);
    let upstreams: Vec<&str> = verified.hops().map(|hop| hop.upstream.as_str()).collect();
    assert_eq!(upstreams, ["mhlw", "jp", "jp-13"]);
    assert_eq!(verified.value(), &delivery);
}

#[test]
fn hand_built_chain_is_byte_identical_to_the_fixture() {
    // The negative tests below build hops with `Chain`; this proves that, left alone, it builds
    // exactly what the crate's own `attest` builds.
    let tree = Hierarchy::standard();
    let mut chain = Chain::new(&tree, &sample());
    chain.relay(0).relay(1).relay(2);
    assert_eq!(chain.delivery().to_json(), tree.delivery(&sample(), 3).to_json());
    verify(&tree, &chain.delivery()).expect("hand-built chain verifies");
}

#[test]
fn attest_output_verifies_again() {
    let tree = Hierarchy::standard();
    let advisory = sample();
    // Re-attest the last fixture hop ourselves: same bytes as the fixture's 3-hop delivery.
    let two = verify(&tree, &tree.delivery(&advisory, 2)).expect("2 hops verify");
    let district = &tree.relays[2];
    let received_at = tree.now.plus_secs(21);
    let three = attest(
        &two,
        &HopInput {
            relay_id: &district.id,
            relay_key: &district.key,
            relay_cert: &district.cert,
            received_at,
            forwarded_at: received_at.plus_secs(1),
            relay_seq: 1,
        },
    );
    assert_eq!(three, tree.delivery(&advisory, 3));
    let three = verify(&tree, &three).expect("3 hops verify");

    // And one relay further down, certified by the district: attest adds its certificate.
    let key = fixtures::key("relay-jp-13-chuo-nihonbashi");
    let cert =
        child_cert(&tree, 2, "jp-13-chuo-nihonbashi", key.public(), Role::Relay, "jp/13/chuo/nihonbashi")
            .sign(&[&district.key]);
    let received_at = tree.now.plus_secs(31);
    let four = attest(
        &three,
        &HopInput {
            relay_id: "jp-13-chuo-nihonbashi",
            relay_key: &key,
            relay_cert: &cert,
            received_at,
            forwarded_at: received_at.plus_secs(2),
            relay_seq: 7,
        },
    );
    assert!(four.certs.contains(&cert));
    assert_eq!(four.hops.len(), 4);
    let four = verify(&tree, &four).expect("4 hops verify");
    let last = four.hops().last().expect("a last hop");
    assert_eq!(
        (last.relay.as_str(), last.upstream.as_str(), last.relay_seq),
        ("jp-13-chuo-nihonbashi", "jp-13-chuo", 7)
    );
    assert_eq!(last.prev, three.facts().chain_tip);
    // Attesting does not touch what was already there.
    assert_eq!(four.advisory, three.advisory);
    assert_eq!(four.hops[..3], three.hops[..]);
}

// ---------------------------------------------------------------------------------------------
// bad_signature
// ---------------------------------------------------------------------------------------------

#[test]
fn bad_signature_tampered_advisory_payload() {
    let tree = Hierarchy::standard();
    let mut delivery = tree.delivery(&sample(), 3);
    // A well-formed, valid advisory payload, but not the one that was signed.
    delivery.advisory.payload =
        replaced(&delivery.advisory.payload, "\"severity\":\"severe\"", "\"severity\":\"minor\"");
    assert_rejected!(
        verify(&tree, &delivery),
        "bad_signature",
        Error::BadSignature { what, .. } if what == "advisory"
    );
}

#[test]
fn bad_signature_tampered_hop() {
    let tree = Hierarchy::standard();
    let mut delivery = tree.delivery(&sample(), 3);
    let hop = &mut delivery.hops[1];
    hop.payload = replaced(&hop.payload, "\"relay_seq\":1", "\"relay_seq\":2");
    assert_rejected!(
        verify(&tree, &delivery),
        "bad_signature",
        Error::BadSignature { what, .. } if what == "hop 1"
    );
}

#[test]
fn bad_signature_tampered_certificate() {
    let tree = Hierarchy::standard();
    let mut delivery = tree.delivery(&sample(), 3);
    // Widen the Tokyo relay's scope to the whole country, keeping its issuer's signature.
    let cert = &mut delivery.certs[2];
    cert.payload = replaced(&cert.payload, "\"scope\":\"jp/13\"", "\"scope\":\"jp\"");
    assert_rejected!(
        verify(&tree, &delivery),
        "bad_signature",
        Error::BadSignature { what, .. } if what == "certificate #2"
    );

    // The same on a root-signed certificate (two signatures, both now bad).
    let mut delivery = tree.delivery(&sample(), 3);
    let cert = &mut delivery.certs[0];
    cert.payload = replaced(&cert.payload, "\"subject\":\"mhlw\"", "\"subject\":\"nisc\"");
    assert_rejected!(
        verify(&tree, &delivery),
        "bad_signature",
        Error::BadSignature { what, .. } if what == "certificate #0"
    );
}

#[test]
fn bad_signature_signature_from_another_key_under_the_right_keyid() {
    let tree = Hierarchy::standard();
    let mut delivery = tree.delivery(&sample(), 3);
    // The origin's keyid hint, but a signature made with the Tokyo relay's key.
    let forged = Envelope::sign(ADVISORY_TYPE, delivery.advisory.payload.clone(), &[&tree.relays[1].key]);
    delivery.advisory.signatures[0].sig = forged.signatures[0].sig.clone();
    assert_rejected!(
        verify(&tree, &delivery),
        "bad_signature",
        Error::BadSignature { what, .. } if what == "advisory"
    );
}

// ---------------------------------------------------------------------------------------------
// unknown_signer
// ---------------------------------------------------------------------------------------------

#[test]
fn unknown_signer_advisory_signed_by_an_uncertified_key() {
    let tree = Hierarchy::standard();
    let rogue = fixtures::key("rogue-origin");
    let mut delivery = tree.delivery(&sample(), 3);
    delivery.advisory = Envelope::sign(ADVISORY_TYPE, sample().to_payload(), &[&rogue]);
    assert_rejected!(
        verify(&tree, &delivery),
        "unknown_signer",
        Error::UnknownSigner { what, keyid } if what == "advisory" && keyid == rogue.keyid().as_str()
    );
}

#[test]
fn unknown_signer_advisory_of_another_origin() {
    // Signed by the certified mhlw key, but claiming to come from another origin.
    let tree = Hierarchy::standard();
    let delivery = published(&tree, &fixtures::sample_advisory("nisc", 1, None));
    assert_rejected!(
        verify(&tree, &delivery),
        "unknown_signer",
        Error::UnknownSigner { keyid, .. } if keyid == tree.origin_key.keyid().as_str()
    );
}

#[test]
fn unknown_signer_hop_signed_by_an_uncertified_key() {
    let tree = Hierarchy::standard();
    let rogue = fixtures::key("relay-rogue");
    let mut chain = Chain::new(&tree, &sample());
    chain.relay(0);
    let hop = chain.hop_by("jp-13", &rogue);
    chain.push(&hop, &rogue);
    assert_rejected!(
        verify(&tree, &chain.delivery()),
        "unknown_signer",
        Error::UnknownSigner { what, keyid } if what == "hop 1" && keyid == rogue.keyid().as_str()
    );
}

#[test]
fn unknown_signer_certificate_by_an_uncertified_issuer() {
    let tree = Hierarchy::standard();
    let rogue = fixtures::key("relay-rogue");
    let subject = fixtures::key("relay-jp-13-rogue-child");
    let mut cert = child_cert(&tree, 1, "jp-13-x", subject.public(), Role::Relay, "jp/13/x");
    cert.issuer = "rogue".into();
    let mut delivery = tree.delivery(&sample(), 3);
    delivery.certs.push(cert.sign(&[&rogue]));
    assert_rejected!(
        verify(&tree, &delivery),
        "unknown_signer",
        Error::UnknownSigner { what, keyid } if what == "certificate #4" && keyid == rogue.keyid().as_str()
    );
}

// ---------------------------------------------------------------------------------------------
// weak_key
// ---------------------------------------------------------------------------------------------

/// The identity point's encoding (y = 1): order 1, the textbook weak key.
fn identity_key_hex() -> String {
    let mut identity = [0u8; 32];
    identity[0] = 1;
    hex::encode(identity)
}

#[test]
fn weak_key_in_a_correctly_signed_certificate() {
    let tree = Hierarchy::standard();
    let placeholder = fixtures::key("relay-jp-13-weak");
    let cert = child_cert(&tree, 1, "jp-13-weak", placeholder.public(), Role::Relay, "jp/13/weak");
    let payload = replaced(&cert.to_payload(), &placeholder.public().to_hex(), &identity_key_hex());
    // Correctly signed by its issuer: only the subject key is wrong.
    let envelope = Envelope::sign(CERT_TYPE, payload, &[&tree.relays[1].key]);
    let mut delivery = tree.delivery(&sample(), 3);
    delivery.certs.push(envelope.clone());
    assert_rejected!(verify(&tree, &delivery), "weak_key", Error::WeakKey(key) if *key == identity_key_hex());

    // The same certificate issued by the root (2 of 3).
    let origin = origin_certificate(&tree);
    let payload = replaced(&origin.to_payload(), &origin.key.to_hex(), &identity_key_hex());
    let mut delivery = tree.delivery(&sample(), 3);
    delivery.certs[0] = Envelope::sign(CERT_TYPE, payload, &[&tree.roots[0], &tree.roots[1]]);
    assert_rejected!(verify(&tree, &delivery), "weak_key", Error::WeakKey(_));
}

#[test]
fn weak_key_refused_when_loaded() {
    assert_rejected!(PublicKey::from_hex(&identity_key_hex()), "weak_key", Error::WeakKey(_));
    // Another small-order point: y = -1 (order 2).
    let mut minus_one = [0xffu8; 32];
    minus_one[0] = 0xec;
    minus_one[31] = 0x7f;
    assert_rejected!(PublicKey::from_bytes(&minus_one), "weak_key", Error::WeakKey(_));
}

// ---------------------------------------------------------------------------------------------
// cert_expired, cert_not_yet_valid
// ---------------------------------------------------------------------------------------------

#[test]
fn cert_expired_relay_certificate() {
    let tree = Hierarchy::standard();
    let mut cert = relay_certificate(&tree, 2);
    cert.not_before = tree.now.plus_secs(-2 * 24 * 3600);
    cert.not_after = tree.now.plus_secs(-1);
    let mut delivery = tree.delivery(&sample(), 3);
    delivery.certs[3] = cert.sign(&[&tree.relays[1].key]);
    assert_rejected!(
        verify(&tree, &delivery),
        "cert_expired",
        Error::CertExpired { subject, not_after, .. }
            if subject == "jp-13-chuo" && *not_after == tree.now.plus_secs(-1)
    );
}

#[test]
fn cert_expired_when_verified_after_the_validity_window() {
    let tree = Hierarchy::standard();
    let delivery = tree.delivery(&sample(), 3);
    let late = tree.now.plus_secs(366 * 24 * 3600);
    assert_rejected!(
        verify_at(&tree, &delivery, &no_revocations(), late),
        "cert_expired",
        Error::CertExpired { .. }
    );
}

#[test]
fn cert_not_yet_valid_relay_certificate() {
    let tree = Hierarchy::standard();
    let mut cert = relay_certificate(&tree, 2);
    cert.not_before = tree.later().plus_secs(3600);
    let mut delivery = tree.delivery(&sample(), 3);
    delivery.certs[3] = cert.sign(&[&tree.relays[1].key]);
    assert_rejected!(
        verify(&tree, &delivery),
        "cert_not_yet_valid",
        Error::CertNotYetValid { subject, .. } if subject == "jp-13-chuo"
    );
}

#[test]
fn cert_not_yet_valid_advisory_issued_before_its_origin_certificate() {
    // The origin certificate is valid now, but the advisory claims a time before it.
    let tree = Hierarchy::standard();
    let mut advisory = sample();
    advisory.issued_at = tree.now.plus_secs(-2 * 24 * 3600);
    let delivery = published(&tree, &advisory);
    assert_rejected!(
        verify(&tree, &delivery),
        "cert_not_yet_valid",
        Error::CertNotYetValid { subject, .. } if subject == "mhlw"
    );
}

// ---------------------------------------------------------------------------------------------
// scope_violation
// ---------------------------------------------------------------------------------------------

#[test]
fn scope_violation_advisory_outside_its_origin_certificate() {
    // The origin is re-certified (correctly, by 2 roots) for Tokyo only; the advisory is national.
    let tree = Hierarchy::standard();
    let mut cert = origin_certificate(&tree);
    cert.scope = scope("jp/13");
    let mut delivery = published(&tree, &sample());
    delivery.certs[0] = cert.sign(&[&tree.roots[0], &tree.roots[2]]);
    assert_rejected!(
        verify(&tree, &delivery),
        "scope_violation",
        Error::ScopeViolation { scope, allowed, .. } if scope == "jp" && allowed == "jp/13"
    );

    // And an advisory for another country under the national origin certificate.
    let mut advisory = sample();
    advisory.scope = scope("kr");
    assert_rejected!(
        verify(&tree, &published(&tree, &advisory)),
        "scope_violation",
        Error::ScopeViolation { .. }
    );
}

#[test]
fn scope_violation_osaka_relay_carries_a_tokyo_advisory() {
    let tree = Hierarchy::standard();
    let mut advisory = sample();
    advisory.scope = scope("jp/13");
    let osaka = fixtures::key("relay-jp-27");
    let mut chain = Chain::new(&tree, &advisory);
    chain.delivery.certs.push(
        child_cert(&tree, 0, "jp-27", osaka.public(), Role::Relay, "jp/27").sign(&[&tree.relays[0].key]),
    );
    chain.relay(0);
    // First the control: the same chain through Tokyo verifies.
    let mut tokyo = Chain::new(&tree, &advisory);
    tokyo.relay(0).relay(1);
    verify(&tree, &tokyo.delivery()).expect("Tokyo carries a Tokyo advisory");
    let hop = chain.hop_by("jp-27", &osaka);
    chain.push(&hop, &osaka);
    assert_rejected!(
        verify(&tree, &chain.delivery()),
        "scope_violation",
        Error::ScopeViolation { what, scope, allowed }
            if what.starts_with("hop 1") && scope == "jp/13" && allowed == "jp/27"
    );
}

#[test]
fn scope_violation_relay_not_below_the_previous_relay() {
    // Osaka's relay is certified by the national relay, so its certificate is fine, but it
    // cannot follow Tokyo's relay on a path (advisory for the whole country).
    let tree = Hierarchy::standard();
    let osaka = fixtures::key("relay-jp-27");
    let mut chain = Chain::new(&tree, &sample());
    chain.delivery.certs.push(
        child_cert(&tree, 0, "jp-27", osaka.public(), Role::Relay, "jp/27").sign(&[&tree.relays[0].key]),
    );
    chain.relay(0).relay(1);
    let hop = chain.hop_by("jp-27", &osaka);
    chain.push(&hop, &osaka);
    assert_rejected!(
        verify(&tree, &chain.delivery()),
        "scope_violation",
        Error::ScopeViolation { what, scope, allowed }
            if what.starts_with("hop 2") && scope == "jp/27" && allowed == "jp/13"
    );
}

#[test]
fn scope_violation_child_certificate_outside_its_issuer() {
    let tree = Hierarchy::standard();
    let key = fixtures::key("relay-jp-27-kita");
    let mut delivery = tree.delivery(&sample(), 3);
    delivery.certs.push(
        child_cert(&tree, 1, "jp-27-kita", key.public(), Role::Relay, "jp/27/kita")
            .sign(&[&tree.relays[1].key]),
    );
    assert_rejected!(
        verify(&tree, &delivery),
        "scope_violation",
        Error::ScopeViolation { scope, allowed, .. } if scope == "jp/27/kita" && allowed == "jp/13"
    );
}

// ---------------------------------------------------------------------------------------------
// revoked_key
// ---------------------------------------------------------------------------------------------

/// Verifies `bundle` (revocations with the certificates they need) and returns the revoked
/// certificates in force; every statement must be accepted.
fn revocation_set(tree: &Hierarchy, bundle: TrustBundle) -> RevocationSet {
    let verified = bundle.verify(&tree.anchors, tree.later()).expect("bundle verifies");
    assert!(verified.refused().is_empty(), "refused: {:?}", verified.refused());
    verified.revoked().clone()
}

fn origin_revocation(tree: &Hierarchy, effective_at: Timestamp) -> TrustBundle {
    let revocation = Revocation::of_cert(
        &tree.origin_cert,
        ROOT_ISSUER,
        1,
        tree.now.plus_secs(30),
        effective_at,
        "key compromised",
    )
    .expect("certificate");
    TrustBundle {
        certs: vec![tree.origin_cert.clone()],
        revocations: vec![revocation.sign(&[&tree.roots[1], &tree.roots[2]])],
        rotations: vec![],
    }
}

#[test]
fn revoked_key_origin_revoked_before_the_advisory_was_issued() {
    let tree = Hierarchy::standard();
    let delivery = tree.delivery(&sample(), 3);
    let revoked = revocation_set(&tree, origin_revocation(&tree, tree.now.plus_secs(-3600)));
    assert_rejected!(
        verify_at(&tree, &delivery, &revoked, tree.later()),
        "revoked_key",
        Error::Revoked { cert, keyid, subject, what, .. }
            if keyid == tree.origin_key.keyid().as_str() && subject == "mhlw" && what == "advisory"
                && *cert == Digest::of(&tree.origin_cert.payload).to_string()
    );
    // Revoked only after it was issued: what the key signed before stays verifiable.
    let later_revocation = revocation_set(&tree, origin_revocation(&tree, tree.now.plus_secs(1)));
    verify_at(&tree, &delivery, &later_revocation, tree.later()).expect("signed before the revocation");
}

#[test]
fn revoked_key_relay_revoked_by_its_issuer() {
    let tree = Hierarchy::standard();
    let district = &tree.relays[2];
    let at = tree.now.plus_secs(20);
    let revoked = revocation_set(&tree, tree.relay_revocation(1, &district.cert, &[], at, at));
    // The district forwarded at now + 22 s, after the revocation took effect.
    assert_rejected!(
        verify_at(&tree, &tree.delivery(&sample(), 3), &revoked, tree.later()),
        "revoked_key",
        Error::Revoked { keyid, what, .. } if keyid == district.key.keyid().as_str() && what == "hop 2"
    );
    // The two hops before it are unaffected.
    verify_at(&tree, &tree.delivery(&sample(), 2), &revoked, tree.later()).expect("2 hops verify");
}

#[test]
fn revoked_key_issuer_revoked_before_it_certified_a_child() {
    // The Tokyo relay's certificate is revoked; a certificate it issues afterwards does not chain.
    let tree = Hierarchy::standard();
    let tokyo = &tree.relays[1];
    let revoked = revocation_set(&tree, tree.relay_revocation(0, &tokyo.cert, &[], tree.now, tree.now));
    let key = fixtures::key("relay-jp-13-minato");
    let mut cert = child_cert(&tree, 1, "jp-13-minato", key.public(), Role::Relay, "jp/13/minato");
    cert.not_before = tree.now.plus_secs(10);
    let mut delivery = tree.delivery(&sample(), 1);
    delivery.certs.push(tree.relays[1].cert.clone());
    delivery.certs.push(cert.sign(&[&tokyo.key]));
    assert_rejected!(
        verify_at(&tree, &delivery, &revoked, tree.later()),
        "revoked_key",
        Error::Revoked { keyid, .. } if keyid == tokyo.key.keyid().as_str()
    );
}

#[test]
fn revoked_key_is_per_certificate_not_per_key() {
    // Revoking one certificate of a key leaves its other certificates usable: the ministry's
    // key certified again by the root (a renewal) still signs after the old one is revoked.
    let tree = Hierarchy::standard();
    let revoked = revocation_set(&tree, origin_revocation(&tree, tree.now.plus_secs(-3600)));
    let mut renewal = origin_certificate(&tree);
    renewal.serial = "root-0002b".into();
    let mut delivery = tree.delivery(&sample(), 3);
    delivery.certs.push(renewal.sign(&[&tree.roots[0], &tree.roots[2]]));
    let verified = verify_at(&tree, &delivery, &revoked, tree.later()).expect("the renewal is used");
    assert_eq!(verified.origin_cert().serial, "root-0002b");
}

// ---------------------------------------------------------------------------------------------
// wrong_payload_type
// ---------------------------------------------------------------------------------------------

#[test]
fn wrong_payload_type_advisory_signed_as_a_hop() {
    let tree = Hierarchy::standard();
    let mut delivery = tree.delivery(&sample(), 3);
    delivery.advisory = Envelope::sign(HOP_TYPE, sample().to_payload(), &[&tree.origin_key]);
    assert_rejected!(
        verify(&tree, &delivery),
        "wrong_payload_type",
        Error::WrongPayloadType { expected, found } if expected == ADVISORY_TYPE && found == HOP_TYPE
    );
}

#[test]
fn wrong_payload_type_hop_envelope_in_place_of_the_advisory() {
    let tree = Hierarchy::standard();
    let mut delivery = tree.delivery(&sample(), 3);
    delivery.advisory = delivery.hops[0].clone();
    assert_rejected!(
        verify(&tree, &delivery),
        "wrong_payload_type",
        Error::WrongPayloadType { expected, found } if expected == ADVISORY_TYPE && found == HOP_TYPE
    );
}

#[test]
fn wrong_payload_type_in_hop_and_cert_positions() {
    let tree = Hierarchy::standard();
    let mut delivery = tree.delivery(&sample(), 3);
    delivery.hops[1] = delivery.certs[2].clone();
    assert_rejected!(
        verify(&tree, &delivery),
        "wrong_payload_type",
        Error::WrongPayloadType { expected, found } if expected == HOP_TYPE && found == CERT_TYPE
    );
    let mut delivery = tree.delivery(&sample(), 3);
    delivery.certs.push(delivery.advisory.clone());
    assert_rejected!(
        verify(&tree, &delivery),
        "wrong_payload_type",
        Error::WrongPayloadType { expected, found } if expected == CERT_TYPE && found == ADVISORY_TYPE
    );
}

// ---------------------------------------------------------------------------------------------
// malformed_payload
// ---------------------------------------------------------------------------------------------

#[test]
fn malformed_payload_validly_signed_non_json() {
    let tree = Hierarchy::standard();
    let mut delivery = tree.delivery(&sample(), 3);
    delivery.advisory =
        Envelope::sign(ADVISORY_TYPE, "注意喚起 (not JSON)".as_bytes().to_vec(), &[&tree.origin_key]);
    assert_rejected!(
        verify(&tree, &delivery),
        "malformed_payload",
        Error::MalformedPayload { payload_type, .. } if payload_type == ADVISORY_TYPE
    );
}

#[test]
fn malformed_payload_json_with_an_unknown_field() {
    let tree = Hierarchy::standard();
    let payload = replaced(&sample().to_payload(), "{\"origin\":", "{\"priority\":1,\"origin\":");
    let mut delivery = tree.delivery(&sample(), 0);
    delivery.advisory = Envelope::sign(ADVISORY_TYPE, payload, &[&tree.origin_key]);
    let err = assert_rejected!(
        verify(&tree, &delivery),
        "malformed_payload",
        Error::MalformedPayload { payload_type, .. } if payload_type == ADVISORY_TYPE
    );
    assert!(err.to_string().contains("priority"), "{err}");
}

#[test]
fn malformed_payload_hop_with_an_unknown_field() {
    let tree = Hierarchy::standard();
    let mut chain = Chain::new(&tree, &sample());
    let hop = chain.next_hop(0);
    let payload =
        replaced(&hop.sign(&tree.relays[0].key).payload, "{\"advisory\":", "{\"note\":\"x\",\"advisory\":");
    chain.delivery.hops.push(Envelope::sign(HOP_TYPE, payload, &[&tree.relays[0].key]));
    assert_rejected!(
        verify(&tree, &chain.delivery()),
        "malformed_payload",
        Error::MalformedPayload { payload_type, .. } if payload_type == HOP_TYPE
    );
}

#[test]
fn malformed_payload_certificate_with_empty_roles() {
    let tree = Hierarchy::standard();
    let placeholder = fixtures::key("relay-jp-13-x");
    let cert = child_cert(&tree, 1, "jp-13-x", placeholder.public(), Role::Relay, "jp/13/x");
    let payload = replaced(&cert.to_payload(), "\"roles\":[\"relay\"]", "\"roles\":[]");
    let mut delivery = tree.delivery(&sample(), 3);
    delivery.certs.push(Envelope::sign(CERT_TYPE, payload, &[&tree.relays[1].key]));
    assert_rejected!(
        verify(&tree, &delivery),
        "malformed_payload",
        Error::MalformedPayload { payload_type, .. } if payload_type == CERT_TYPE
    );
}

// ---------------------------------------------------------------------------------------------
// broken_hop_chain
// ---------------------------------------------------------------------------------------------

#[test]
fn broken_hop_chain_wrong_prev() {
    let tree = Hierarchy::standard();
    let mut chain = Chain::new(&tree, &sample());
    chain.relay(0);
    let mut hop = chain.next_hop(1);
    hop.prev = chain.digest; // the advisory digest instead of hop 0's
    chain.push(&hop, &tree.relays[1].key);
    assert_rejected!(
        verify(&tree, &chain.delivery()),
        "broken_hop_chain",
        Error::BrokenHopChain { index: 1, reason } if reason.starts_with("prev")
    );
}

#[test]
fn broken_hop_chain_wrong_upstream() {
    let tree = Hierarchy::standard();
    let mut chain = Chain::new(&tree, &sample());
    chain.relay(0);
    let mut hop = chain.next_hop(1);
    hop.upstream = "mhlw".into(); // skips the national relay
    chain.push(&hop, &tree.relays[1].key);
    assert_rejected!(
        verify(&tree, &chain.delivery()),
        "broken_hop_chain",
        Error::BrokenHopChain { index: 1, reason } if reason.starts_with("upstream")
    );

    let mut chain = Chain::new(&tree, &sample());
    let mut hop = chain.next_hop(0);
    hop.upstream = "nisc".into(); // the first hop must name the origin
    chain.push(&hop, &tree.relays[0].key);
    assert_rejected!(
        verify(&tree, &chain.delivery()),
        "broken_hop_chain",
        Error::BrokenHopChain { index: 0, .. }
    );
}

#[test]
fn broken_hop_chain_hop_for_another_advisory() {
    let tree = Hierarchy::standard();
    let other = fixtures::sample_advisory("mhlw", 2, Some(Digest::of(&sample().to_payload())));
    let mut chain = Chain::new(&tree, &sample());
    let mut hop = chain.next_hop(0);
    hop.advisory = Digest::of(&other.to_payload());
    chain.push(&hop, &tree.relays[0].key);
    assert_rejected!(
        verify(&tree, &chain.delivery()),
        "broken_hop_chain",
        Error::BrokenHopChain { index: 0, reason } if reason.starts_with("attests")
    );

    // A whole valid hop chain of another advisory, transplanted onto this one.
    let mut delivery = published(&tree, &sample());
    delivery.hops = tree.delivery(&other, 3).hops;
    assert_rejected!(verify(&tree, &delivery), "broken_hop_chain", Error::BrokenHopChain { index: 0, .. });
}

#[test]
fn broken_hop_chain_same_relay_twice() {
    let tree = Hierarchy::standard();
    let mut chain = Chain::new(&tree, &sample());
    chain.relay(0).relay(1).relay(0);
    assert_rejected!(
        verify(&tree, &chain.delivery()),
        "broken_hop_chain",
        Error::BrokenHopChain { index: 2, reason } if reason.contains("twice")
    );
}

#[test]
fn broken_hop_chain_hop_names_another_relay_than_its_signer() {
    let tree = Hierarchy::standard();
    // `relay` names the district, `keyid` and signature are Tokyo's.
    let mut chain = Chain::new(&tree, &sample());
    chain.relay(0);
    let mut hop = chain.next_hop(1);
    hop.relay = "jp-13-chuo".into();
    chain.push(&hop, &tree.relays[1].key);
    assert_rejected!(
        verify(&tree, &chain.delivery()),
        "broken_hop_chain",
        Error::BrokenHopChain { index: 1, reason } if reason.starts_with("names relay")
    );

    // `keyid` names the district's key, `relay` and signature are Tokyo's.
    let mut chain = Chain::new(&tree, &sample());
    chain.relay(0);
    let mut hop = chain.next_hop(1);
    hop.keyid = tree.relays[2].key.keyid().clone();
    chain.push(&hop, &tree.relays[1].key);
    assert_rejected!(
        verify(&tree, &chain.delivery()),
        "broken_hop_chain",
        Error::BrokenHopChain { index: 1, reason } if reason.starts_with("names relay")
    );
}

// ---------------------------------------------------------------------------------------------
// hop_times_out_of_order
// ---------------------------------------------------------------------------------------------

#[test]
fn hop_times_out_of_order_received_before_the_previous_hop_forwarded() {
    let tree = Hierarchy::standard();
    let build = |skew_ms: i64| {
        let mut chain = Chain::new(&tree, &sample());
        chain.relay(0); // forwarded at now + 2 s
        let mut hop = chain.next_hop(1);
        hop.received_at = tree.now.plus_secs(2).plus_ms(-skew_ms);
        chain.push(&hop, &tree.relays[1].key);
        chain.delivery()
    };
    // Within the 5 s clock skew: accepted. Beyond it: refused.
    verify(&tree, &build(5_000)).expect("5 s of skew is tolerated");
    assert_rejected!(
        verify(&tree, &build(5_001)),
        "hop_times_out_of_order",
        Error::HopTimesOutOfOrder { index: 1, reason } if reason.contains("previous hop forwarded_at")
    );
    assert_rejected!(
        verify(&tree, &build(6_000)),
        "hop_times_out_of_order",
        Error::HopTimesOutOfOrder { index: 1, .. }
    );
}

#[test]
fn hop_times_out_of_order_first_hop_received_before_the_advisory_was_issued() {
    let tree = Hierarchy::standard();
    let mut chain = Chain::new(&tree, &sample());
    let mut hop = chain.next_hop(0);
    hop.received_at = tree.now.plus_secs(-6);
    chain.push(&hop, &tree.relays[0].key);
    assert_rejected!(
        verify(&tree, &chain.delivery()),
        "hop_times_out_of_order",
        Error::HopTimesOutOfOrder { index: 0, reason } if reason.contains("advisory issued_at")
    );
}

#[test]
fn hop_times_out_of_order_forwarded_before_received() {
    let tree = Hierarchy::standard();
    let mut chain = Chain::new(&tree, &sample());
    chain.relay(0);
    let mut hop = chain.next_hop(1);
    hop.forwarded_at = hop.received_at.plus_ms(-1);
    chain.push(&hop, &tree.relays[1].key);
    chain.relay(2);
    assert_rejected!(
        verify(&tree, &chain.delivery()),
        "hop_times_out_of_order",
        Error::HopTimesOutOfOrder { index: 1, reason } if reason.starts_with("forwarded_at")
    );
}

// ---------------------------------------------------------------------------------------------
// too_many_hops, too_many_certs, oversize_input
// ---------------------------------------------------------------------------------------------

#[test]
fn too_many_hops() {
    let tree = Hierarchy::standard();
    let mut delivery = tree.delivery(&sample(), 1);
    delivery.hops = vec![delivery.hops[0].clone(); MAX_HOPS + 1];
    assert_rejected!(
        verify(&tree, &delivery),
        "too_many_hops",
        Error::TooManyHops { count, limit } if *count == MAX_HOPS + 1 && *limit == MAX_HOPS
    );
    // The parsed entry point checks again.
    let ctx = VerifyContext { anchors: &tree.anchors, revocations: &no_revocations(), now: tree.later() };
    assert_rejected!(verify_parsed(delivery, ctx), "too_many_hops", Error::TooManyHops { .. });
}

#[test]
fn too_many_certs() {
    let tree = Hierarchy::standard();
    let mut delivery = tree.delivery(&sample(), 3);
    while delivery.certs.len() <= MAX_CERTS {
        delivery.certs.push(tree.origin_cert.clone());
    }
    assert_eq!(delivery.certs.len(), MAX_CERTS + 1);
    assert_rejected!(
        verify(&tree, &delivery),
        "too_many_certs",
        Error::TooManyCerts { count, limit } if *count == MAX_CERTS + 1 && *limit == MAX_CERTS
    );
    let ctx = VerifyContext { anchors: &tree.anchors, revocations: &no_revocations(), now: tree.later() };
    assert_rejected!(verify_parsed(delivery, ctx), "too_many_certs", Error::TooManyCerts { .. });
}

#[test]
fn oversize_input_delivery() {
    let tree = Hierarchy::standard();
    // A valid delivery followed by JSON whitespace up to one byte over the limit.
    let mut bytes = tree.delivery(&sample(), 3).to_json();
    bytes.resize(MAX_DELIVERY_BYTES, b' ');
    let ctx = VerifyContext { anchors: &tree.anchors, revocations: &no_revocations(), now: tree.later() };
    verify_delivery(&bytes, ctx).expect("exactly at the limit is accepted");
    bytes.push(b' ');
    assert_rejected!(
        verify_delivery(&bytes, ctx),
        "oversize_input",
        Error::Oversize { what: "delivery", limit, actual }
            if *limit == MAX_DELIVERY_BYTES && *actual == MAX_DELIVERY_BYTES + 1
    );
}

#[test]
fn oversize_input_envelope_payload() {
    // An advisory that is valid by every content rule (12,000-character bodies), but whose
    // payload is above the payload limit.
    let tree = Hierarchy::standard();
    let mut advisory = sample();
    advisory.body = Localized::new("ja", &"本".repeat(12_000)).with("en", &"b".repeat(12_000));
    advisory.validate().expect("content rules allow it");
    let payload = advisory.to_payload();
    assert!(payload.len() > MAX_PAYLOAD_BYTES);
    let delivery = published(&tree, &advisory);
    assert_rejected!(
        verify(&tree, &delivery),
        "oversize_input",
        Error::Oversize { what: "payload", limit, actual }
            if *limit == MAX_PAYLOAD_BYTES && *actual == payload.len()
    );
}

#[test]
fn oversize_input_standalone_envelope() {
    let tree = Hierarchy::standard();
    let mut bytes = tree.sign_advisory(&sample()).to_json();
    bytes.resize(MAX_ENVELOPE_BYTES + 1, b' ');
    assert_rejected!(Envelope::from_json(&bytes), "oversize_input", Error::Oversize { what: "envelope", .. });
}

// ---------------------------------------------------------------------------------------------
// invalid_advisory, advisory_expired, from_the_future
// ---------------------------------------------------------------------------------------------

#[test]
fn invalid_advisory_empty_title() {
    let tree = Hierarchy::standard();
    let mut advisory = sample();
    advisory.title = Localized::new("ja", "　 ").with("en", "English only");
    let err = assert_rejected!(
        verify(&tree, &published(&tree, &advisory)),
        "invalid_advisory",
        Error::InvalidAdvisory(_)
    );
    assert!(err.to_string().contains("title"), "{err}");
}

#[test]
fn invalid_advisory_expires_before_issued() {
    let tree = Hierarchy::standard();
    let mut advisory = sample();
    advisory.expires_at = advisory.issued_at.plus_secs(-1);
    let err = assert_rejected!(
        verify(&tree, &published(&tree, &advisory)),
        "invalid_advisory",
        Error::InvalidAdvisory(_)
    );
    assert!(err.to_string().contains("expires_at"), "{err}");
}

#[test]
fn invalid_advisory_cancel_without_references() {
    let tree = Hierarchy::standard();
    let mut advisory = sample();
    advisory.kind = Kind::Cancel;
    let err = assert_rejected!(
        verify(&tree, &published(&tree, &advisory)),
        "invalid_advisory",
        Error::InvalidAdvisory(_)
    );
    assert!(err.to_string().contains("must reference"), "{err}");
    // With a reference it is accepted.
    advisory.references.push(Digest::of(b"an earlier advisory"));
    verify(&tree, &published(&tree, &advisory)).expect("a cancel with references verifies");
}

#[test]
fn advisory_expired() {
    let tree = Hierarchy::standard();
    let mut advisory = sample();
    advisory.expires_at = tree.now.plus_secs(30);
    // Relayed in time (the fixture verifies before each hop), checked after expiry.
    let delivery = tree.delivery(&advisory, 3);
    assert_rejected!(
        verify(&tree, &delivery),
        "advisory_expired",
        Error::AdvisoryExpired { expires_at, now }
            if *expires_at == tree.now.plus_secs(30) && *now == tree.later()
    );
    // Expiry is exclusive: at exactly `expires_at` the advisory is expired.
    let at_expiry = tree.now.plus_secs(30);
    assert_rejected!(
        verify_at(&tree, &tree.delivery(&advisory, 2), &no_revocations(), at_expiry),
        "advisory_expired",
        Error::AdvisoryExpired { .. }
    );
}

#[test]
fn from_the_future_advisory() {
    let tree = Hierarchy::standard();
    let mut advisory = sample();
    advisory.issued_at = tree.now.plus_secs(3600);
    advisory.expires_at = advisory.issued_at.plus_secs(24 * 3600);
    let delivery = published(&tree, &advisory);
    assert_rejected!(
        verify_at(&tree, &delivery, &no_revocations(), tree.now),
        "from_the_future",
        Error::FromTheFuture { what, at, now }
            if what.contains("advisory") && *at == advisory.issued_at && *now == tree.now
    );
    // 5 s of clock skew is tolerated.
    advisory.issued_at = tree.now.plus_secs(5);
    verify_at(&tree, &published(&tree, &advisory), &no_revocations(), tree.now).expect("within skew");
}

#[test]
fn from_the_future_hop() {
    // Verified at now + 10 s, the district's hop (forwarded at now + 22 s) is in the future.
    let tree = Hierarchy::standard();
    let delivery = tree.delivery(&sample(), 3);
    assert_rejected!(
        verify_at(&tree, &delivery, &no_revocations(), tree.now.plus_secs(10)),
        "from_the_future",
        Error::FromTheFuture { what, .. } if what.starts_with("hop 2")
    );
}

// ---------------------------------------------------------------------------------------------
// threshold_not_met
// ---------------------------------------------------------------------------------------------

#[test]
fn threshold_not_met_root_certificate_signed_by_one_root() {
    let tree = Hierarchy::standard();
    let cert = origin_certificate(&tree);
    let mut delivery = tree.delivery(&sample(), 3);
    delivery.certs[0] = cert.sign(&[&tree.roots[0]]);
    assert_rejected!(
        verify(&tree, &delivery),
        "threshold_not_met",
        Error::ThresholdNotMet { what, needed: 2, found: 1 } if what == "certificate #0"
    );
    // The same root twice counts once.
    delivery.certs[0] = cert.sign(&[&tree.roots[2], &tree.roots[2]]);
    assert_rejected!(
        verify(&tree, &delivery),
        "threshold_not_met",
        Error::ThresholdNotMet { needed: 2, found: 1, .. }
    );
    // Any two distinct roots are enough.
    delivery.certs[0] = cert.sign(&[&tree.roots[1], &tree.roots[2]]);
    verify(&tree, &delivery).expect("2 of 3 roots");
}

#[test]
fn threshold_not_met_unsigned_envelopes() {
    let tree = Hierarchy::standard();
    let mut delivery = tree.delivery(&sample(), 3);
    delivery.advisory.signatures.clear();
    assert_rejected!(
        verify(&tree, &delivery),
        "threshold_not_met",
        Error::ThresholdNotMet { needed: 1, found: 0, .. }
    );
    let mut delivery = tree.delivery(&sample(), 3);
    delivery.certs[1].signatures.clear();
    assert_rejected!(verify(&tree, &delivery), "threshold_not_met", Error::ThresholdNotMet { found: 0, .. });
}

// ---------------------------------------------------------------------------------------------
// role_not_allowed
// ---------------------------------------------------------------------------------------------

#[test]
fn role_not_allowed_advisory_signed_by_a_relay_key() {
    let tree = Hierarchy::standard();
    let mut delivery = tree.delivery(&sample(), 3);
    delivery.advisory = Envelope::sign(ADVISORY_TYPE, sample().to_payload(), &[&tree.relays[0].key]);
    assert_rejected!(
        verify(&tree, &delivery),
        "role_not_allowed",
        Error::RoleNotAllowed(reason) if reason.contains("Origin")
    );
}

#[test]
fn role_not_allowed_hop_signed_by_the_origin_key() {
    let tree = Hierarchy::standard();
    let mut chain = Chain::new(&tree, &sample());
    let hop = chain.hop_by("mhlw", &tree.origin_key);
    chain.push(&hop, &tree.origin_key);
    assert_rejected!(
        verify(&tree, &chain.delivery()),
        "role_not_allowed",
        Error::RoleNotAllowed(reason) if reason.contains("Relay")
    );
}

#[test]
fn role_not_allowed_clinic_certifies_another_key() {
    let tree = Hierarchy::standard();
    let clinic = fixtures::key("clinic-0001");
    let other = fixtures::key("clinic-0002");
    let clinic_cert = child_cert(&tree, 2, "clinic-0001", clinic.public(), Role::Clinic, "jp/13/chuo");
    let mut forged = clinic_cert.clone();
    forged.serial = "clinic-0001-1".into();
    forged.issuer = "clinic-0001".into();
    forged.subject = "clinic-0002".into();
    forged.key = other.public().clone();
    let mut delivery = tree.delivery(&sample(), 3);
    delivery.certs.push(clinic_cert.sign(&[&tree.relays[2].key]));
    verify(&tree, &delivery).expect("the clinic's own certificate is fine");
    delivery.certs.push(forged.sign(&[&clinic]));
    assert_rejected!(
        verify(&tree, &delivery),
        "role_not_allowed",
        Error::RoleNotAllowed(reason) if reason.contains("clinic-0001 is not a relay")
    );
}

#[test]
fn role_not_allowed_relay_certifies_an_origin_and_root_certifies_a_clinic() {
    let tree = Hierarchy::standard();
    let key = fixtures::key("origin-tokyo");
    let mut delivery = tree.delivery(&sample(), 3);
    delivery.certs.push(
        child_cert(&tree, 1, "tokyo", key.public(), Role::Origin, "jp/13").sign(&[&tree.relays[1].key]),
    );
    assert_rejected!(
        verify(&tree, &delivery),
        "role_not_allowed",
        Error::RoleNotAllowed(reason) if reason.contains("origin")
    );

    let mut cert = origin_certificate(&tree);
    cert.roles = vec![Role::Clinic];
    let mut delivery = tree.delivery(&sample(), 0);
    delivery.certs[0] = cert.sign(&[&tree.roots[0], &tree.roots[1]]);
    assert_rejected!(verify(&tree, &delivery), "role_not_allowed", Error::RoleNotAllowed(_));
}

// ---------------------------------------------------------------------------------------------
// malformed_envelope
// ---------------------------------------------------------------------------------------------

/// The delivery as a JSON value, changed by `edit`, serialized again.
fn edited_json(delivery: &Delivery, edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut value: serde_json::Value = serde_json::from_slice(&delivery.to_json()).expect("delivery JSON");
    edit(&mut value);
    serde_json::to_vec(&value).expect("serializes")
}

fn verify_bytes(tree: &Hierarchy, bytes: &[u8]) -> Result<Verified<Delivery>> {
    verify_delivery(
        bytes,
        VerifyContext { anchors: &tree.anchors, revocations: &no_revocations(), now: tree.later() },
    )
}

#[test]
fn malformed_envelope_bad_base64() {
    let tree = Hierarchy::standard();
    let delivery = tree.delivery(&sample(), 3);
    let bytes = edited_json(&delivery, |v| v["advisory"]["payload"] = "e30=!".into());
    assert_rejected!(
        verify_bytes(&tree, &bytes),
        "malformed_envelope",
        Error::MalformedEnvelope(reason) if reason.contains("base64")
    );
    // Unpadded (non-canonical) base64 of a valid signature is refused too.
    let sig = base64::engine::general_purpose::STANDARD.encode(&delivery.hops[0].signatures[0].sig);
    let bytes =
        edited_json(&delivery, |v| v["hops"][0]["signatures"][0]["sig"] = sig.trim_end_matches('=').into());
    assert_rejected!(verify_bytes(&tree, &bytes), "malformed_envelope", Error::MalformedEnvelope(_));
}

#[test]
fn malformed_envelope_signature_of_wrong_length() {
    let tree = Hierarchy::standard();
    let mut delivery = tree.delivery(&sample(), 3);
    delivery.advisory.signatures[0].sig.pop();
    assert_rejected!(
        verify(&tree, &delivery),
        "malformed_envelope",
        Error::MalformedEnvelope(reason) if reason.contains("63 bytes")
    );
    let mut delivery = tree.delivery(&sample(), 3);
    delivery.hops[2].signatures[0].sig.push(0);
    assert_rejected!(
        verify(&tree, &delivery),
        "malformed_envelope",
        Error::MalformedEnvelope(reason) if reason.contains("65 bytes")
    );
    let mut delivery = tree.delivery(&sample(), 3);
    delivery.certs[1].signatures[1].sig.truncate(32);
    assert_rejected!(
        verify(&tree, &delivery),
        "malformed_envelope",
        Error::MalformedEnvelope(reason) if reason.contains("certificate #1")
    );
}

#[test]
fn malformed_envelope_shapes() {
    let tree = Hierarchy::standard();
    let delivery = tree.delivery(&sample(), 3);
    // Not JSON; a field too many; a field missing.
    assert_rejected!(
        verify_bytes(&tree, b"\xff not json"),
        "malformed_envelope",
        Error::MalformedEnvelope(_)
    );
    let bytes = edited_json(&delivery, |v| v["note"] = "hi".into());
    assert_rejected!(verify_bytes(&tree, &bytes), "malformed_envelope", Error::MalformedEnvelope(_));
    let bytes = edited_json(&delivery, |v| v["advisory"]["signatures"][0]["note"] = "hi".into());
    assert_rejected!(verify_bytes(&tree, &bytes), "malformed_envelope", Error::MalformedEnvelope(_));
    let bytes = edited_json(&delivery, |v| {
        v.as_object_mut().expect("object").remove("certs");
    });
    assert_rejected!(verify_bytes(&tree, &bytes), "malformed_envelope", Error::MalformedEnvelope(_));
    // Two signatures where exactly one is required (even if both are the origin's).
    let mut delivery = tree.delivery(&sample(), 3);
    delivery.advisory =
        Envelope::sign(ADVISORY_TYPE, sample().to_payload(), &[&tree.origin_key, &tree.origin_key]);
    assert_rejected!(
        verify(&tree, &delivery),
        "malformed_envelope",
        Error::MalformedEnvelope(reason) if reason.contains("exactly one")
    );
}

// ---------------------------------------------------------------------------------------------
// The remaining reasons: broken_cert_chain, malformed_key, invalid_anchors
// ---------------------------------------------------------------------------------------------

#[test]
fn broken_cert_chain_issuer_name_does_not_match_the_signer() {
    let tree = Hierarchy::standard();
    let mut cert = relay_certificate(&tree, 1);
    cert.issuer = "jp-99".into();
    let mut delivery = tree.delivery(&sample(), 3);
    delivery.certs[2] = cert.sign(&[&tree.relays[0].key]);
    assert_rejected!(
        verify(&tree, &delivery),
        "broken_cert_chain",
        Error::BrokenCertChain(reason) if reason.contains("jp-99")
    );

    let mut cert = origin_certificate(&tree);
    cert.issuer = "jp".into();
    let mut delivery = tree.delivery(&sample(), 3);
    delivery.certs[0] = cert.sign(&[&tree.roots[0], &tree.roots[1]]);
    assert_rejected!(verify(&tree, &delivery), "broken_cert_chain", Error::BrokenCertChain(_));
}

#[test]
fn malformed_key_in_a_certificate() {
    let tree = Hierarchy::standard();
    let placeholder = fixtures::key("relay-jp-13-x");
    let cert = child_cert(&tree, 1, "jp-13-x", placeholder.public(), Role::Relay, "jp/13/x");
    let payload = replaced(&cert.to_payload(), &placeholder.public().to_hex(), &"zz".repeat(32));
    let mut delivery = tree.delivery(&sample(), 3);
    delivery.certs.push(Envelope::sign(CERT_TYPE, payload, &[&tree.relays[1].key]));
    assert_rejected!(verify(&tree, &delivery), "malformed_key", Error::MalformedKey(_));
}

#[test]
fn invalid_anchors() {
    let tree = Hierarchy::standard();
    let mut file = tree.anchors.to_file();
    file.threshold = 4;
    assert_rejected!(TrustAnchors::new(file.clone()), "invalid_anchors", Error::InvalidAnchors(_));
    file.threshold = 2;
    file.roots.push(RootKey { id: "root-1-again".into(), key: tree.roots[0].public().clone() });
    assert_rejected!(TrustAnchors::new(file), "invalid_anchors", Error::InvalidAnchors(_));
}
