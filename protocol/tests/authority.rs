//! Authorization attacks on trust at the protocol level: a member can do only what its
//! certificate allows. One test per reproduced attack (numbers as in the security issue), and
//! the rules they rest on.

use kairan_protocol::cert::ROOT_ISSUER;
use kairan_protocol::fixtures::{self, Hierarchy};
use kairan_protocol::limits::{MAX_REVOCATIONS_PER_ISSUER, REVOCATION_GRACE_MS};
use kairan_protocol::sync::{SyncResponse, sign_page, verify_page};
use kairan_protocol::trust::AnchorRotation;
use kairan_protocol::{
    Certificate, Delivery, Digest, Envelope, PublicKey, Revocation, RevocationSet, Role, Scope, SecretKey,
    Timestamp, TrustAnchors, TrustBundle, Verified, VerifyContext, verify_delivery,
};
use proptest::prelude::*;

const DAY: i64 = 24 * 3600;

fn scope(text: &str) -> Scope {
    Scope::parse(text).expect("scope")
}

/// A certificate issued by fixture relay `issuer` for `key`, valid over `window`.
fn mint(
    tree: &Hierarchy,
    issuer: usize,
    subject: &str,
    key: &PublicKey,
    role: Role,
    scope_text: &str,
    window: (Timestamp, Timestamp),
) -> Envelope {
    let relay = &tree.relays[issuer];
    Certificate::for_key(
        format!("{}-{subject}", relay.id),
        &relay.id,
        subject,
        key,
        role,
        &scope(scope_text),
        window,
    )
    .sign(&[&relay.key])
}

fn year(tree: &Hierarchy) -> (Timestamp, Timestamp) {
    (tree.now.plus_secs(-DAY), tree.now.plus_secs(365 * DAY))
}

fn verify(tree: &Hierarchy, bundle: TrustBundle) -> Verified<TrustBundle> {
    bundle.verify(&tree.anchors, tree.later()).expect("a well-formed bundle is never refused whole")
}

fn refused(verified: &Verified<TrustBundle>) -> Vec<&'static str> {
    verified.refused().iter().map(|r| r.error.code()).collect()
}

fn delivery_code(tree: &Hierarchy, revocations: &RevocationSet, delivery: &Delivery) -> &'static str {
    let ctx = VerifyContext { anchors: &tree.anchors, revocations, now: tree.later() };
    verify_delivery(&delivery.to_json(), ctx).map_or_else(|e| e.code(), |_| "ok")
}

// ---------------------------------------------------------------------------------------------
// (1) a relay revoking a key it never certified
// ---------------------------------------------------------------------------------------------

#[test]
fn attack_1_a_district_minted_certificate_of_the_ministry_key_revokes_only_itself() {
    let tree = Hierarchy::standard();
    let district = 2;
    // The district certifies the ministry's public key under a made-up subject, and revokes it.
    let minted =
        mint(&tree, district, "made-up", tree.origin_key.public(), Role::Clinic, "jp/13/chuo", year(&tree));
    let bundle = tree.relay_revocation(district, &minted, &[], tree.now, tree.now.plus_secs(-DAY));
    let verified = verify(&tree, bundle);
    assert_eq!(verified.facts().revocations.len(), 1, "a district may revoke what it issued");
    let revoked = verified.revoked();
    assert!(revoked.get(&Digest::of(&minted.payload)).is_some());
    assert!(revoked.get(&Digest::of(&tree.origin_cert.payload)).is_none());
    // The ministry's real certificate still verifies its advisories.
    let delivery = tree.delivery(&fixtures::sample_advisory("mhlw", 1, None), 3);
    assert_eq!(delivery_code(&tree, revoked, &delivery), "ok");

    // Naming the ministry's real certificate is refused: it was not issued at or below the district.
    let forged = Revocation::of_cert(&tree.origin_cert, "jp-13-chuo", 2, tree.now, tree.now, "hostile")
        .expect("certificate")
        .sign(&[&tree.relays[district].key]);
    let mut certs = tree.relay_chain(district);
    certs.push(tree.origin_cert.clone());
    let verified = verify(&tree, TrustBundle { certs, revocations: vec![forged], rotations: vec![] });
    assert_eq!(refused(&verified), ["revocation_not_authorized"]);
    assert!(verified.revoked().is_empty());
}

#[test]
fn a_relay_revokes_below_itself_and_itself_but_never_above_or_beside() {
    let tree = Hierarchy::standard();
    let tokyo = 1;
    // Tokyo revokes its district: accepted.
    let below = tree.relay_revocation(tokyo, &tree.relays[2].cert, &[], tree.now, tree.now);
    assert_eq!(verify(&tree, below).facts().revocations.len(), 1);
    // Tokyo revokes its own certificate: accepted.
    let itself = tree.relay_revocation(tokyo, &tree.relays[1].cert, &[], tree.now, tree.now);
    assert_eq!(verify(&tree, itself).facts().revocations.len(), 1);
    // The district revokes Tokyo or the national relay: refused.
    for above in [0, 1] {
        let upward = tree.relay_revocation(2, &tree.relays[above].cert, &[], tree.now, tree.now);
        assert_eq!(refused(&verify(&tree, upward)), ["revocation_not_authorized"], "relay {above}");
    }
    // Osaka's relay (certified by the national relay) revokes a Tokyo district: refused.
    let osaka_key = fixtures::key("relay-jp-27");
    let osaka = mint(&tree, 0, "jp-27", osaka_key.public(), Role::Relay, "jp/27", year(&tree));
    let revocation = Revocation::of_cert(&tree.relays[2].cert, "jp-27", 1, tree.now, tree.now, "hostile")
        .expect("certificate")
        .sign(&[&osaka_key]);
    let mut certs = tree.relay_chain(2);
    certs.push(osaka);
    let verified = verify(&tree, TrustBundle { certs, revocations: vec![revocation], rotations: vec![] });
    assert_eq!(refused(&verified), ["revocation_not_authorized"]);
}

#[test]
fn a_revocation_must_name_its_signer_and_travel_with_its_certificate() {
    let tree = Hierarchy::standard();
    // Signed by Tokyo, naming the national relay as issuer.
    let liar = Revocation::of_cert(&tree.relays[2].cert, "jp", 1, tree.now, tree.now, "x")
        .expect("certificate")
        .sign(&[&tree.relays[1].key]);
    let verified =
        verify(&tree, TrustBundle { certs: tree.relay_chain(2), revocations: vec![liar], rotations: vec![] });
    assert_eq!(refused(&verified), ["broken_cert_chain"]);
    // The root names a certificate that is not carried.
    let mut bundle = tree.root_revocation(&tree.origin_cert, tree.now);
    bundle.certs.clear();
    assert_eq!(refused(&verify(&tree, bundle)), ["revoked_cert_missing"]);
    // The subject must be the revoked certificate's.
    let mut revocation =
        Revocation::of_cert(&tree.origin_cert, ROOT_ISSUER, 1, tree.now, tree.now, "x").expect("certificate");
    revocation.subject = "nisc".into();
    let wrong = revocation.sign(&[&tree.roots[0], &tree.roots[2]]);
    let bundle =
        TrustBundle { certs: vec![tree.origin_cert.clone()], revocations: vec![wrong], rotations: vec![] };
    assert_eq!(refused(&verify(&tree, bundle)), ["malformed_payload"]);
}

// ---------------------------------------------------------------------------------------------
// (2) a root-revoked relay still signing revocations
// ---------------------------------------------------------------------------------------------

#[test]
fn attack_2_a_root_revoked_relay_cannot_revoke_afterwards_in_any_order() {
    let tree = Hierarchy::standard();
    let tokyo = &tree.relays[1];
    let root = tree.root_revocation(&tokyo.cert, tree.now.plus_secs(60));
    // Tokyo revokes its district after the root's revocation took effect, and before it.
    let late = tree.relay_revocation(1, &tree.relays[2].cert, &[], tree.now.plus_secs(61), tree.now);
    let early = tree.relay_revocation(1, &tree.relays[2].cert, &[], tree.now.plus_secs(59), tree.now);
    for bundles in [[&root, &late], [&late, &root]] {
        let merged = bundles[0].merged(bundles[1]);
        let verified = merged.verify(&tree.anchors, tree.now.plus_secs(120)).expect("bundle");
        assert_eq!(refused(&verified), ["revoked_key"]);
        assert_eq!(verified.facts().revocations.len(), 1);
        assert!(verified.facts().revocations[0].by_root);
    }
    let merged = early.merged(&root);
    let verified = merged.verify(&tree.anchors, tree.now.plus_secs(120)).expect("bundle");
    assert_eq!(verified.facts().revocations.len(), 2, "signed before its revocation took effect");
}

#[test]
fn an_ancestor_revocation_with_an_earlier_effective_time_applies_to_earlier_statements() {
    // The national relay revokes Tokyo effective an hour ago, in a statement issued now; a
    // Tokyo statement issued ten minutes ago (after the effective time) is refused although
    // it was issued first: statements are evaluated shallowest revoker first.
    let tree = Hierarchy::standard();
    let national = tree.relay_revocation(0, &tree.relays[1].cert, &[], tree.now, tree.now.plus_secs(-3600));
    let tokyo = tree.relay_revocation(1, &tree.relays[2].cert, &[], tree.now.plus_secs(-600), tree.now);
    let verified = verify(&tree, tokyo.merged(&national));
    assert_eq!(refused(&verified), ["revoked_key"]);
    assert_eq!(verified.facts().revocations[0].revocation.issuer, "jp");
}

// ---------------------------------------------------------------------------------------------
// (3) bounded and prunable, in pieces
// ---------------------------------------------------------------------------------------------

#[test]
fn attack_3_expired_revocations_and_unneeded_certificates_are_pruned() {
    let tree = Hierarchy::standard();
    let clinic_key = fixtures::key("clinic-1");
    let short = (tree.now.plus_secs(-DAY), tree.now.plus_secs(DAY));
    let clinic = mint(&tree, 2, "clinic-1", clinic_key.public(), Role::Clinic, "jp/13/chuo", short);
    let bundle = tree
        .relay_revocation(2, &clinic, &[], tree.now, tree.now)
        .merged(&tree.root_revocation(&tree.origin_cert, tree.now));
    let verified = verify(&tree, bundle);
    assert_eq!(verified.facts().revocations.len(), 2);
    // Within the grace period after the clinic certificate expired: both kept.
    let within = tree.now.plus_secs(DAY).plus_ms(REVOCATION_GRACE_MS);
    assert_eq!(verified.pruned(within).facts().revocations.len(), 2);
    // Past it: the clinic's revocation and the certificates only it needed are dropped.
    let pruned = verified.pruned(within.plus_ms(1));
    assert_eq!(pruned.facts().revocations.len(), 1);
    assert_eq!(pruned.value().certs, vec![tree.origin_cert.clone()]);
    assert_eq!(pruned.facts().revoked.len(), 1);
    // The pruned bundle verifies to the same facts.
    let again = pruned.value().clone().verify(&tree.anchors, tree.later()).expect("bundle");
    assert_eq!(again.facts(), pruned.facts());
}

#[test]
fn the_bundle_comes_in_self_contained_pieces_that_merge_back() {
    let tree = Hierarchy::standard();
    let bundle = tree
        .relay_revocation(1, &tree.relays[2].cert, &[], tree.now, tree.now)
        .merged(&tree.root_revocation(&tree.origin_cert, tree.now))
        .merged(&tree.relay_revocation(0, &tree.relays[1].cert, &[], tree.now, tree.now.plus_secs(3600)));
    let verified = verify(&tree, bundle.clone());
    let pieces = verified.pieces();
    assert_eq!(pieces.len(), 3);
    let mut merged = TrustBundle::default();
    for piece in &pieces {
        assert!(piece.to_json().len() <= kairan_protocol::limits::MAX_PIECE_BYTES);
        let alone = verify(&tree, piece.bundle.clone());
        assert_eq!(alone.facts().revocations.len(), 1, "each piece verifies on its own");
        assert_eq!(alone.facts().revocations[0].id, piece.id);
        merged = merged.merged(&piece.bundle);
    }
    assert_eq!(merged, bundle.canonical());
    assert_eq!(verify(&tree, merged).facts(), verified.facts());
}

#[test]
fn a_relay_past_its_revocation_limit_is_refused_and_the_root_still_fits() {
    let tree = Hierarchy::standard();
    let mut bundle = TrustBundle::default();
    for i in 0..=MAX_REVOCATIONS_PER_ISSUER {
        let key = fixtures::key(&format!("clinic-{i}"));
        let clinic =
            mint(&tree, 2, &format!("clinic-{i}"), key.public(), Role::Clinic, "jp/13/chuo", year(&tree));
        bundle = bundle.merged(&tree.relay_revocation(2, &clinic, &[], tree.now, tree.now));
    }
    let bundle = bundle.merged(&tree.root_revocation(&tree.origin_cert, tree.now));
    let verified = verify(&tree, bundle);
    assert_eq!(refused(&verified), ["revocation_limit"]);
    assert_eq!(verified.facts().revocations.len(), MAX_REVOCATIONS_PER_ISSUER + 1);
    assert!(verified.facts().revocations[0].by_root, "root statements are evaluated first");
}

// ---------------------------------------------------------------------------------------------
// (4) one bad certificate refusing everything
// ---------------------------------------------------------------------------------------------

#[test]
fn attack_4_an_expired_certificate_in_the_pool_refuses_only_what_needs_it() {
    let tree = Hierarchy::standard();
    // An expired relay below Tokyo, and a revocation it signed after it expired.
    let minato_key = fixtures::key("relay-jp-13-minato");
    let old = (tree.now.plus_secs(-30 * DAY), tree.now.plus_secs(-DAY));
    let minato = mint(&tree, 1, "jp-13-minato", minato_key.public(), Role::Relay, "jp/13/minato", old);
    let clinic_key = fixtures::key("clinic-minato");
    let clinic = Certificate::for_key(
        "m-1",
        "jp-13-minato",
        "clinic-minato",
        clinic_key.public(),
        Role::Clinic,
        &scope("jp/13/minato"),
        old,
    )
    .sign(&[&minato_key]);
    let late = Revocation::of_cert(&clinic, "jp-13-minato", 1, tree.now, tree.now, "x").expect("certificate");
    let mut certs = tree.relay_chain(1);
    certs.extend([minato, clinic]);
    let stale = TrustBundle { certs, revocations: vec![late.sign(&[&minato_key])], rotations: vec![] };
    // A garbage certificate too (bad signature): nobody needs it.
    let mut garbage = tree.relays[2].cert.clone();
    garbage.signatures[0].sig[3] ^= 1;
    let junk = TrustBundle { certs: vec![garbage], ..TrustBundle::default() };
    // A genuine root revocation still gets through, in whatever bundle it comes.
    let genuine = tree.root_revocation(&tree.origin_cert, tree.now);
    let verified = verify(&tree, stale.merged(&junk).merged(&genuine));
    assert_eq!(refused(&verified), ["cert_expired"]);
    assert_eq!(verified.facts().revocations.len(), 1);
    assert!(verified.revoked().get(&Digest::of(&tree.origin_cert.payload)).is_some());
    // Pruned, nothing of the stale statement or the junk remains.
    let pruned = verified.pruned(tree.later());
    assert_eq!(pruned.value(), &genuine.canonical());
}

// ---------------------------------------------------------------------------------------------
// (6) unsigned catch-up answers
// ---------------------------------------------------------------------------------------------

fn signed_page(tree: &Hierarchy, signer: &SecretKey, chain: &[Envelope]) -> SyncResponse {
    let delivery = tree.delivery(&fixtures::sample_advisory("mhlw", 1, None), 2);
    let page = SyncResponse {
        after: 4,
        scanned_upto: 9,
        last_relay_seq: 12,
        deliveries: vec![delivery],
        ..Default::default()
    };
    sign_page(page, "jp-13-chuo", signer, chain)
}

fn page_code(tree: &Hierarchy, page: &SyncResponse, child: &str) -> &'static str {
    let revocations = RevocationSet::default();
    let ctx = VerifyContext { anchors: &tree.anchors, revocations: &revocations, now: tree.later() };
    verify_page(&page.to_json(), "jp-13", child, ctx).map_or_else(|e| e.code(), |_| "ok")
}

#[test]
fn attack_6_catch_up_pages_are_accepted_only_as_signed_by_the_parent() {
    let tree = Hierarchy::standard();
    let genuine = signed_page(&tree, &tree.relays[1].key, &tree.relay_chain(1));
    assert_eq!(page_code(&tree, &genuine, "jp-13-chuo"), "ok");
    // A sibling that can publish on the answer topic moves the cursor to the end.
    let mut tampered = genuine.clone();
    tampered.scanned_upto = u64::MAX - 1;
    tampered.last_relay_seq = u64::MAX - 1;
    assert_eq!(page_code(&tree, &tampered, "jp-13-chuo"), "page_mismatch");
    // The same, re-signed with its own (certified) key: not the parent.
    let sibling_key = fixtures::key("relay-jp-13-minato");
    let sibling =
        mint(&tree, 1, "jp-13-minato", sibling_key.public(), Role::Relay, "jp/13/minato", year(&tree));
    let mut chain = vec![sibling];
    chain.extend(tree.relay_chain(1));
    let mut forged = signed_page(&tree, &sibling_key, &chain);
    forged.scanned_upto = u64::MAX - 1;
    forged.last_relay_seq = u64::MAX - 1;
    let forged = sign_page(forged, "jp-13-chuo", &sibling_key, &chain);
    assert_eq!(page_code(&tree, &forged, "jp-13-chuo"), "unknown_signer");
    // A stranger's key: no certificate.
    let stranger = signed_page(&tree, &fixtures::key("stranger"), &tree.relay_chain(1));
    assert_eq!(page_code(&tree, &stranger, "jp-13-chuo"), "unknown_signer");
    // The parent's genuine page for another child, replayed.
    assert_eq!(page_code(&tree, &genuine, "jp-13-nihonbashi"), "page_mismatch");
    // A delivery dropped from, or added to, a genuine page.
    let mut fewer = genuine.clone();
    fewer.deliveries.clear();
    assert_eq!(page_code(&tree, &fewer, "jp-13-chuo"), "page_mismatch");
    // The statement itself edited: its signature fails.
    let mut edited = genuine.clone();
    if let Some(statement) = &mut edited.statement {
        statement.payload = String::from_utf8_lossy(&statement.payload)
            .replace("\"scanned_upto\":9", "\"scanned_upto\":99")
            .into_bytes();
    }
    assert_eq!(page_code(&tree, &edited, "jp-13-chuo"), "bad_signature");
    // No statement at all.
    let mut unsigned = genuine;
    unsigned.statement = None;
    assert_eq!(page_code(&tree, &unsigned, "jp-13-chuo"), "threshold_not_met");
}

#[test]
fn a_page_from_a_revoked_parent_is_refused() {
    let tree = Hierarchy::standard();
    let page = signed_page(&tree, &tree.relays[1].key, &tree.relay_chain(1));
    let revoked = verify(&tree, tree.root_revocation(&tree.relays[1].cert, tree.now)).revoked().clone();
    let ctx = VerifyContext { anchors: &tree.anchors, revocations: &revoked, now: tree.later() };
    let err = verify_page(&page.to_json(), "jp-13", "jp-13-chuo", ctx).expect_err("revoked");
    assert_eq!(err.code(), "revoked_key");
}

// ---------------------------------------------------------------------------------------------
// (8) certificate choice and clock-dependent refusals
// ---------------------------------------------------------------------------------------------

#[test]
fn attack_8_certificate_choice_does_not_depend_on_input_order() {
    let tree = Hierarchy::standard();
    // The origin key is certified twice by the root (a renewal); the renewal is revoked.
    let mut renewal = Certificate::decode(&tree.origin_cert.payload).expect("decodes");
    renewal.serial = "root-0009".into();
    renewal.not_before = tree.now.plus_secs(-3600);
    let renewal = renewal.sign(&[&tree.roots[1], &tree.roots[2]]);
    let revoked = verify(&tree, tree.root_revocation(&renewal, tree.now.plus_secs(-DAY))).revoked().clone();
    let base = tree.delivery(&fixtures::sample_advisory("mhlw", 1, None), 3);
    for certs in [
        [vec![renewal.clone()], base.certs.clone()].concat(),
        [base.certs.clone(), vec![renewal.clone()]].concat(),
    ] {
        let delivery = Delivery { certs, ..base.clone() };
        let ctx = VerifyContext { anchors: &tree.anchors, revocations: &revoked, now: tree.later() };
        let verified = verify_delivery(&delivery.to_json(), ctx).expect("the unrevoked certificate is used");
        assert_eq!(verified.origin_cert().serial, "root-0001");
        let none = RevocationSet::default();
        let ctx = VerifyContext { anchors: &tree.anchors, revocations: &none, now: tree.later() };
        let verified = verify_delivery(&delivery.to_json(), ctx).expect("verifies");
        assert_eq!(verified.origin_cert().serial, "root-0009", "latest not_before first");
    }
}

#[test]
fn a_key_certified_as_two_identities_is_refused() {
    let tree = Hierarchy::standard();
    let base = tree.delivery(&fixtures::sample_advisory("mhlw", 1, None), 3);
    let made_up =
        mint(&tree, 2, "made-up", tree.origin_key.public(), Role::Clinic, "jp/13/chuo", year(&tree));
    let delivery = Delivery { certs: [base.certs.clone(), vec![made_up]].concat(), ..base.clone() };
    assert_eq!(delivery_code(&tree, &RevocationSet::default(), &delivery), "conflicting_certs");
    // Same subject but a scope beside the first: a conflict too.
    let beside = fixtures::key("relay-jp-13-chuo");
    let twin = mint(&tree, 0, "jp-13-chuo", beside.public(), Role::Relay, "jp/27", year(&tree));
    let delivery = Delivery { certs: [base.certs.clone(), vec![twin]].concat(), ..base };
    assert_eq!(delivery_code(&tree, &RevocationSet::default(), &delivery), "conflicting_certs");
}

#[test]
fn attack_8_refusals_that_depend_only_on_a_slow_clock_say_so() {
    let tree = Hierarchy::standard();
    let delivery = tree.delivery(&fixtures::sample_advisory("mhlw", 1, None), 3);
    let none = RevocationSet::default();
    let at = |now: Timestamp| {
        verify_delivery(
            &delivery.to_json(),
            VerifyContext { anchors: &tree.anchors, revocations: &none, now },
        )
    };
    // The verifier's clock is 10 s behind the last hop: from the future, hold and retry.
    let slow = at(tree.now.plus_secs(22 - 10)).expect_err("slow clock");
    assert_eq!(slow.code(), "from_the_future");
    assert!(slow.is_clock_dependent());
    // Two days behind: the certificates are not yet valid, hold and retry.
    let very_slow = at(tree.now.plus_secs(-2 * DAY)).expect_err("very slow clock");
    assert_eq!(very_slow.code(), "cert_not_yet_valid");
    assert!(very_slow.is_clock_dependent());
    // An advisory dated before its origin's certificate: final, whatever the clock.
    let mut advisory = fixtures::sample_advisory("mhlw", 1, None);
    advisory.issued_at = tree.now.plus_secs(-2 * DAY);
    let early = tree.delivery(&advisory, 0);
    let ctx = VerifyContext { anchors: &tree.anchors, revocations: &none, now: tree.later() };
    let err = verify_delivery(&early.to_json(), ctx).expect_err("before its certificate");
    assert_eq!(err.code(), "cert_not_yet_valid");
    assert!(!err.is_clock_dependent());
    // Expired and revoked are final.
    let late = at(tree.now.plus_secs(400 * DAY)).expect_err("late");
    assert!(!late.is_clock_dependent());
}

// ---------------------------------------------------------------------------------------------
// Rotations, and pieces merged in any order
// ---------------------------------------------------------------------------------------------

#[test]
fn rotations_are_a_chain_and_travel_in_every_piece() {
    let tree = Hierarchy::standard();
    let new_keys: Vec<SecretKey> = (0..3).map(|i| fixtures::key(&format!("new-root-{i}"))).collect();
    let next = TrustAnchors::numbered(2, new_keys.iter().map(SecretKey::public)).expect("anchors");
    let rotation = |seq: u64| AnchorRotation { seq, issued_at: tree.now, anchors: next.to_file() };
    let first = rotation(1).sign(&[&tree.roots[0], &tree.roots[1], &new_keys[0], &new_keys[1]]);
    let misnumbered = rotation(3).sign(&[&new_keys[0], &new_keys[1]]);
    let after = rotation(3).sign(&[&new_keys[0], &new_keys[2]]);
    let revocation = Revocation::of_cert(&tree.origin_cert, ROOT_ISSUER, 1, tree.now, tree.now, "retired")
        .expect("certificate")
        .sign(&[&new_keys[1], &new_keys[2]]);
    let bundle = TrustBundle {
        certs: vec![tree.origin_cert.clone()],
        revocations: vec![revocation],
        rotations: vec![first.clone(), misnumbered, after],
    };
    let verified = verify(&tree, bundle);
    assert_eq!(verified.facts().rotations, 1);
    assert_eq!(verified.anchors(), &next);
    assert_eq!(refused(&verified), ["malformed_payload", "unknown_signer"]);
    assert_eq!(verified.facts().revocations.len(), 1, "signed by the rotated anchors");
    let pieces = verified.pieces();
    assert_eq!(pieces.len(), 2);
    assert_eq!(pieces[0].id, Digest::of(&first.payload));
    for piece in &pieces {
        assert_eq!(piece.bundle.rotations, vec![first.clone()]);
        let alone = verify(&tree, piece.bundle.clone());
        assert!(alone.refused().is_empty());
        assert_eq!(alone.anchors(), &next);
    }
}

/// Statements of every kind: some accepted, some refused because of others (a revoked
/// revoker), some refused on their own (expired revoker, no authority).
fn statements(tree: &Hierarchy) -> Vec<TrustBundle> {
    let clinic = |n: usize| {
        let key = fixtures::key(&format!("clinic-{n}"));
        mint(tree, 2, &format!("clinic-{n}"), key.public(), Role::Clinic, "jp/13/chuo", year(tree))
    };
    let minato_key = fixtures::key("relay-jp-13-minato");
    let old = (tree.now.plus_secs(-30 * DAY), tree.now.plus_secs(-DAY));
    let minato = mint(tree, 1, "jp-13-minato", minato_key.public(), Role::Relay, "jp/13/minato", old);
    let mut expired = tree.relay_revocation(1, &minato, &[], tree.now, tree.now);
    expired.revocations = vec![
        Revocation::of_cert(&minato, "jp-13-minato", 1, tree.now, tree.now, "x")
            .expect("certificate")
            .sign(&[&minato_key]),
    ];
    expired.certs.push(minato);
    let mut unauthorized = tree.relay_revocation(2, &tree.origin_cert, &[], tree.now, tree.now);
    unauthorized.certs.push(tree.origin_cert.clone());
    vec![
        tree.root_revocation(&tree.origin_cert, tree.now.plus_secs(-3600)),
        tree.relay_revocation(1, &tree.relays[2].cert, &[], tree.now.plus_secs(-600), tree.now),
        tree.relay_revocation(0, &tree.relays[1].cert, &[], tree.now, tree.now.plus_secs(-1800)),
        tree.relay_revocation(2, &clinic(1), &[], tree.now.plus_secs(-900), tree.now),
        tree.relay_revocation(2, &clinic(2), &[], tree.now, tree.now),
        tree.relay_revocation(0, &clinic(3), &[tree.relays[2].cert.clone()], tree.now, tree.now),
        expired,
        unauthorized,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::Off)),
        ..ProptestConfig::with_cases(24)
    })]

    #[test]
    fn pieces_merged_in_any_order_give_the_same_set(
        order in Just((0..8usize).collect::<Vec<_>>()).prop_shuffle(),
        pieces_order in Just((0..8usize).collect::<Vec<_>>()).prop_shuffle(),
    ) {
        let tree = Hierarchy::standard();
        let all = statements(&tree);
        let baseline = verify(&tree, all.iter().fold(TrustBundle::default(), |b, s| b.merged(s)));
        prop_assert_eq!(refused(&baseline), ["revoked_key", "cert_expired", "revocation_not_authorized"]);
        // The statements merged in any order: the same bundle, the same facts.
        let shuffled = order.iter().fold(TrustBundle::default(), |b, i| b.merged(&all[*i]));
        let again = verify(&tree, shuffled);
        prop_assert_eq!(again.facts(), baseline.facts());
        // The accepted statements' pieces, applied one by one in any order as a node does
        // (merge, verify, keep what is accepted): the same statements in force at the end.
        let pieces = baseline.pieces();
        let mut held = TrustBundle::default();
        for i in pieces_order.iter().filter(|i| **i < pieces.len()) {
            held = verify(&tree, held.merged(&pieces[*i].bundle)).pruned(tree.later()).value().clone();
        }
        let end = verify(&tree, held);
        prop_assert!(end.refused().is_empty());
        prop_assert_eq!(end.revoked(), baseline.revoked());
        let ids = |v: &Verified<TrustBundle>| {
            let mut ids: Vec<Digest> = v.facts().revocations.iter().map(|r| r.id).collect();
            ids.sort();
            ids
        };
        prop_assert_eq!(ids(&end), ids(&baseline));
    }
}
