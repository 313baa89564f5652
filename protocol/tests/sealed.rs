//! Sealed advisories end to end, through the real envelope and delivery verification: named
//! clinics and groups open what was sealed to them and nobody else does; a wrong key, a
//! truncated ciphertext, a moved wrap and a recipient list edited after signing are refused
//! with their own reason codes; unsealed RED is refused. The property test over seal/open
//! and single-byte mutations and the sizes at district scale are in `tests/sealed_properties.rs`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kairan_protocol::delivery::verify_parsed;
use kairan_protocol::directory::{RecipientDirectory, verify_directory};
use kairan_protocol::fixtures::Hierarchy;
use kairan_protocol::fixtures::sealed::{
    CLINICS, confidential_advisory, directory, group_key, recipient, rng, sealed_amber_strict, sealed_red,
    signed_directory, signed_group_key,
};
use kairan_protocol::sealed::{
    Confidential, Slot, To, open_group_key, open_sealed, open_sealed_group, seal, verify_group_key,
};
use kairan_protocol::{Advisory, Delivery, Error, RevocationSet, Scope, Tlp, Verified, VerifyContext};
use serde_json::Value;

/// An edit of a signed advisory payload, as JSON.
type Edit = fn(&mut Value);

fn verify(tree: &Hierarchy, delivery: &Delivery) -> Result<Verified<Delivery>, Error> {
    let revocations = RevocationSet::default();
    let ctx = VerifyContext { anchors: &tree.anchors, revocations: &revocations, now: tree.later() };
    kairan_protocol::verify_delivery(&delivery.to_json(), ctx)
}

/// The advisory as it reaches the clinics: through `jp`, `jp-13` and `jp-13-chuo`, verified.
fn delivered(tree: &Hierarchy, advisory: &Advisory) -> Verified<Delivery> {
    verify(tree, &tree.delivery(advisory, 3)).expect("a sealed advisory verifies like any other")
}

fn code<T: std::fmt::Debug>(result: Result<T, Error>) -> &'static str {
    result.map_or_else(|e| e.code(), |_| "ok")
}

fn slot_of(advisory: &mut Advisory) -> &mut kairan_protocol::sealed::Sealed {
    advisory.sealed.as_mut().expect("sealed")
}

#[test]
fn red_to_two_named_clinics_is_read_by_exactly_those_two() {
    let tree = Hierarchy::standard();
    let verified = delivered(&tree, &sealed_red());
    let expected = Confidential::of(&confidential_advisory(Tlp::Red, 1));
    for clinic in &CLINICS[..2] {
        let content = open_sealed(&verified, clinic, &recipient(clinic)).expect("a recipient opens it");
        assert_eq!(content, expected);
        assert_eq!(content.reveal(verified.advisory()).title.get("ja"), "テスト注意喚起");
    }
    let third = recipient(CLINICS[2]);
    assert_eq!(code(open_sealed(&verified, CLINICS[2], &third)), "not_a_recipient");
    // The third clinic's key offered for a recipient's slot.
    assert_eq!(code(open_sealed(&verified, CLINICS[0], &third)), "wrong_recipient_key");
    // No plaintext on the wire: not in the delivery, not in the signed payload.
    let wire = verified.value().to_json();
    let payload = &verified.value().advisory.payload;
    for secret in
        ["テスト注意喚起", "Test advisory", "試験用", "VPN", "JPCERT", "CVE-2021-20837", "ransomware"]
    {
        for (what, bytes) in [("delivery", wire.as_slice()), ("payload", payload.as_slice())] {
            assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "{secret:?} in the {what}");
        }
    }
    // What a relay sees: metadata and the recipient list.
    let advisory = verified.advisory();
    assert_eq!(advisory.tlp, Tlp::Red);
    assert!(advisory.title.0.is_empty());
    let listed: Vec<&str> = advisory.sealed.as_ref().expect("sealed").clinics().collect();
    assert_eq!(listed, CLINICS[..2]);
}

#[test]
fn amber_strict_to_the_district_group_is_read_by_every_clinic_holding_the_epoch() {
    let tree = Hierarchy::standard();
    let revocations = RevocationSet::default();
    let ctx = VerifyContext { anchors: &tree.anchors, revocations: &revocations, now: tree.later() };
    let part = verify_group_key(&signed_group_key(&tree).to_json(), ctx).expect("group key verifies");
    let verified = delivered(&tree, &sealed_amber_strict());
    let expected = Confidential::of(&confidential_advisory(Tlp::AmberStrict, 1));
    for clinic in CLINICS {
        let key = open_group_key(&part, clinic, &recipient(clinic)).expect("member unwraps");
        assert_eq!(key.epoch(), 1);
        assert_eq!(open_sealed_group(&verified, &key).expect("opens"), expected);
    }
    assert_eq!(code(open_group_key(&part, "minato-clinic", &recipient("minato-clinic"))), "not_a_recipient");
    assert_eq!(code(open_group_key(&part, CLINICS[0], &recipient(CLINICS[1]))), "wrong_recipient_key");
    assert_eq!(code(open_sealed_group(&verified, &group_key(2))), "wrong_group_epoch");
    // No named slot: a clinic's own key does not open it without the group key.
    assert_eq!(code(open_sealed(&verified, CLINICS[0], &recipient(CLINICS[0]))), "not_a_recipient");
}

#[test]
fn group_key_and_directory_must_be_signed_by_the_relay_of_exactly_that_scope() {
    let tree = Hierarchy::standard();
    let revocations = RevocationSet::default();
    let ctx = VerifyContext { anchors: &tree.anchors, revocations: &revocations, now: tree.later() };
    let verified = verify_directory(&signed_directory(&tree).to_json(), ctx).expect("directory verifies");
    assert_eq!(verified.key_of(CLINICS[1]), Some(recipient(CLINICS[1]).public()));
    assert_eq!(verified.facts().cert.subject, "jp-13-chuo");
    // The prefecture relay signing the district's directory (as itself): its scope is not the
    // directory's.
    let mut by_parent = directory();
    by_parent.relay = "jp-13".into();
    let signed = by_parent.sign(&tree.relays[1].key, &tree.relay_chain(1));
    assert_eq!(code(verify_directory(&signed.to_json(), ctx)), "scope_violation");
    // An entry outside the district.
    let mut outside = directory();
    outside.recipients[0].scope = Scope::parse("jp/13/minato").expect("scope");
    let signed = outside.sign(&tree.relays[2].key, &tree.relay_chain(2));
    assert_eq!(code(verify_directory(&signed.to_json(), ctx)), "scope_violation");
    // Edited after signing: an entry's key replaced.
    let mut json: Value = serde_json::from_slice(&signed_directory(&tree).to_json()).expect("json");
    let payload = STANDARD.decode(json["statement"]["payload"].as_str().expect("payload")).expect("b64");
    let mut statement: RecipientDirectory = serde_json::from_slice(&payload).expect("directory");
    statement.recipients[0].key = recipient("mallory").public().clone();
    json["statement"]["payload"] = STANDARD.encode(serde_json::to_vec(&statement).expect("json")).into();
    assert_eq!(code(verify_directory(json.to_string().as_bytes(), ctx)), "bad_signature");
    // A group key message is not a directory.
    assert_eq!(code(verify_directory(&signed_group_key(&tree).to_json(), ctx)), "wrong_payload_type");
}

#[test]
fn a_wrong_key_with_a_forged_key_id_is_a_corrupt_wrap() {
    let tree = Hierarchy::standard();
    let mut advisory = sealed_red();
    let mallory = recipient("mallory");
    if let Slot::Clinic { kid, .. } = &mut slot_of(&mut advisory).recipients[0] {
        *kid = mallory.public().kid().to_owned();
    }
    let verified = delivered(&tree, &advisory);
    assert_eq!(code(open_sealed(&verified, CLINICS[0], &mallory)), "sealed_corrupt");
}

#[test]
fn truncated_ciphertext_is_refused_precisely() {
    let tree = Hierarchy::standard();
    // Truncated by the origin (signed that way): verifies, does not open.
    let mut advisory = sealed_red();
    slot_of(&mut advisory).ciphertext.pop();
    let verified = delivered(&tree, &advisory);
    let err = open_sealed(&verified, CLINICS[0], &recipient(CLINICS[0])).expect_err("refused");
    assert_eq!(err.code(), "sealed_corrupt");
    assert!(err.to_string().contains("truncated or altered"), "{err}");
    // Shorter than a tag: refused by validation, so by every relay.
    slot_of(&mut advisory).ciphertext.truncate(15);
    assert_eq!(code(verify(&tree, &tree.delivery(&advisory, 0))), "malformed_sealed");
    // Truncated on the way (after signing): the origin's signature fails.
    let mut delivery = tree.delivery(&sealed_red(), 3);
    let mut json: Value = serde_json::from_slice(&delivery.advisory.payload).expect("json");
    let text = json["sealed"]["ciphertext"].as_str().expect("b64").to_owned();
    let mut bytes = STANDARD.decode(text).expect("b64");
    bytes.truncate(bytes.len() - 1);
    json["sealed"]["ciphertext"] = STANDARD.encode(bytes).into();
    delivery.advisory.payload = serde_json::to_vec(&json).expect("json");
    assert_eq!(code(verify(&tree, &delivery)), "bad_signature");
}

#[test]
fn a_recipient_list_edited_after_signing_breaks_the_origin_signature() {
    let tree = Hierarchy::standard();
    let edits: [(&str, Edit); 3] = [
        ("drop a recipient", |json| {
            json["sealed"]["recipients"].as_array_mut().expect("list").pop();
        }),
        ("rename a recipient", |json| json["sealed"]["recipients"][1]["id"] = "chuo-clinic-3".into()),
        ("add a recipient", |json| {
            let copy = json["sealed"]["recipients"][0].clone();
            json["sealed"]["recipients"].as_array_mut().expect("list").push(copy);
        }),
    ];
    for (what, edit) in edits {
        let mut delivery = tree.delivery(&sealed_red(), 3);
        let mut json: Value = serde_json::from_slice(&delivery.advisory.payload).expect("json");
        edit(&mut json);
        delivery.advisory.payload = serde_json::to_vec(&json).expect("json");
        assert_eq!(code(verify(&tree, &delivery)), "bad_signature", "{what}");
    }
}

#[test]
fn a_wrap_moved_to_another_advisory_does_not_open() {
    let tree = Hierarchy::standard();
    let original = sealed_red();
    let (one, two) = (recipient(CLINICS[0]), recipient(CLINICS[1]));
    let mut other = confidential_advisory(Tlp::Red, 1);
    other.id = "mhlw-other".into();
    let to = [To::Clinic(CLINICS[0], one.public()), To::Clinic(CLINICS[1], two.public())];
    let mut other = seal(&other, &to, &mut rng("other")).expect("seals");
    // The origin (or anyone who can make it sign) splices the first advisory's wrap and
    // ciphertext in: the binding to id and recipient makes them useless there.
    slot_of(&mut other).recipients[0] = original.sealed.as_ref().expect("sealed").recipients[0].clone();
    let verified = delivered(&tree, &other);
    assert_eq!(code(open_sealed(&verified, CLINICS[0], &one)), "sealed_corrupt");
    slot_of(&mut other).ciphertext = original.sealed.as_ref().expect("sealed").ciphertext.clone();
    let verified = delivered(&tree, &other);
    assert_eq!(code(open_sealed(&verified, CLINICS[1], &two)), "sealed_corrupt");
}

#[test]
fn labels_and_sealing_must_agree() {
    let tree = Hierarchy::standard();
    for tlp in [Tlp::Red, Tlp::AmberStrict] {
        let clear = confidential_advisory(tlp, 1);
        assert_eq!(code(clear.validate()), "sealing_required");
        assert_eq!(code(verify(&tree, &tree.delivery(&clear, 0))), "sealing_required");
    }
    let one = recipient(CLINICS[0]);
    for tlp in [Tlp::Clear, Tlp::Green, Tlp::Amber] {
        let advisory = confidential_advisory(tlp, 1);
        assert_eq!(
            code(seal(&advisory, &[To::Clinic(CLINICS[0], one.public())], &mut rng("x"))),
            "malformed_sealed"
        );
    }
    // RED names its recipients: a group slot is refused.
    let group = group_key(1);
    assert_eq!(
        code(seal(&confidential_advisory(Tlp::Red, 1), &[To::Group(&group)], &mut rng("x"))),
        "malformed_sealed"
    );
    // Confidential text left in clear beside the sealed object.
    let mut leaky = sealed_red();
    leaky.title = confidential_advisory(Tlp::Red, 1).title;
    assert_eq!(code(verify(&tree, &tree.delivery(&leaky, 0))), "malformed_sealed");
    // No recipient, a recipient twice.
    assert_eq!(code(seal(&confidential_advisory(Tlp::Red, 1), &[], &mut rng("x"))), "malformed_sealed");
    let twice = [To::Clinic(CLINICS[0], one.public()), To::Clinic(CLINICS[0], one.public())];
    assert_eq!(code(seal(&confidential_advisory(Tlp::Red, 1), &twice, &mut rng("x"))), "malformed_sealed");
    // Opening a cleartext advisory.
    let revocations = RevocationSet::default();
    let ctx = VerifyContext { anchors: &tree.anchors, revocations: &revocations, now: tree.later() };
    let clear = kairan_protocol::fixtures::sample_advisory("mhlw", 1, None);
    let verified = verify_parsed(tree.delivery(&clear, 0), ctx).expect("verifies");
    assert_eq!(code(open_sealed(&verified, CLINICS[0], &one)), "malformed_sealed");
}

#[test]
fn sealing_is_deterministic_with_a_seeded_rng_and_fresh_without() {
    assert_eq!(sealed_red(), sealed_red());
    let one = recipient(CLINICS[0]);
    let advisory = confidential_advisory(Tlp::Red, 1);
    let a = seal(&advisory, &[To::Clinic(CLINICS[0], one.public())], &mut rng("a")).expect("seals");
    let b = seal(&advisory, &[To::Clinic(CLINICS[0], one.public())], &mut rng("b")).expect("seals");
    assert_ne!(a.sealed, b.sealed, "a fresh content key and encapsulation per seal");
}
