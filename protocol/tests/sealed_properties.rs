//! Properties of sealed advisories and their sizes at district scale.
//!
//! (a) For any confidential content and any RNG seed, what is sealed to a clinic opens to the
//! same content through a verified delivery, and any single-byte change of the ciphertext or
//! of the clinic's wrap (re-signed by the origin, so verification passes) is refused by
//! opening. (b) `sizes_at_district_scale` measures, from this implementation, the bytes of a
//! sealed advisory to 2 named clinics, the cost of each further named clinic, what 2,000 would
//! cost (and that sealing to them is refused), the bytes with one group slot instead, and the
//! size and time of the group-key messages of one membership change at 2,000 clinics. Run it
//! with `--nocapture` to see the figures (`docs/performance.md` quotes them).

use std::time::Instant;

use kairan_protocol::delivery::verify_parsed;
use kairan_protocol::fixtures::Hierarchy;
use kairan_protocol::fixtures::sealed::{CLINICS, confidential_advisory, group_key, recipient, rng};
use kairan_protocol::limits::{MAX_ENVELOPE_BYTES, MAX_PAYLOAD_BYTES};
use kairan_protocol::sealed::{
    GroupKeyStatement, RecipientSecret, Slot, To, distribute_group_key, open_sealed, seal,
};
use kairan_protocol::{Advisory, Delivery, Localized, RevocationSet, Tlp, Verified, VerifyContext};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

fn verified(tree: &Hierarchy, advisory: &Advisory) -> Verified<Delivery> {
    let revocations = RevocationSet::default();
    let ctx = VerifyContext { anchors: &tree.anchors, revocations: &revocations, now: tree.later() };
    verify_parsed(tree.delivery(advisory, 0), ctx).expect("verifies")
}

fn sealed_with(title: &str, body: &str, seed: u64) -> Advisory {
    let mut advisory = confidential_advisory(Tlp::Red, 1);
    advisory.title = Localized::new("ja", title);
    advisory.body = Localized::new("ja", body).with("en", body);
    let one = recipient(CLINICS[0]);
    seal(&advisory, &[To::Clinic(CLINICS[0], one.public())], &mut rng(&format!("prop-{seed}")))
        .expect("seals")
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::with_cases(64)
    })]

    #[test]
    fn seal_then_open_round_trips(title in "\\PC{1,60}", body in "\\PC{0,400}", seed in any::<u64>()) {
        prop_assume!(!title.trim().is_empty());
        let tree = Hierarchy::standard();
        let advisory = sealed_with(&title, &body, seed);
        let content = open_sealed(&verified(&tree, &advisory), CLINICS[0], &recipient(CLINICS[0]));
        let content = content.expect("the recipient opens it");
        prop_assert_eq!(content.title.get("ja"), title.as_str());
        prop_assert_eq!(content.body.get("en"), body.as_str());
    }

    #[test]
    fn any_single_byte_change_is_refused(seed in any::<u64>(), at in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let tree = Hierarchy::standard();
        let original = sealed_with("題", "本文", seed);
        let sealed = original.sealed.as_ref().expect("sealed");
        let Slot::Clinic { enc, key, .. } = &sealed.recipients[0] else { unreachable!("a clinic slot") };
        let (ct_len, enc_len, key_len) = (sealed.ciphertext.len(), enc.len(), key.len());
        let mut mutated = original.clone();
        let sealed = mutated.sealed.as_mut().expect("sealed");
        let position = at.index(ct_len + enc_len + key_len);
        let Slot::Clinic { enc, key, .. } = &mut sealed.recipients[0] else { unreachable!("a clinic slot") };
        if position < ct_len {
            sealed.ciphertext[position] ^= flip;
        } else if position < ct_len + enc_len {
            enc[position - ct_len] ^= flip;
        } else {
            key[position - ct_len - enc_len] ^= flip;
        }
        let result = open_sealed(&verified(&tree, &mutated), CLINICS[0], &recipient(CLINICS[0]));
        prop_assert_eq!(result.map_err(|e| e.code()), Err("sealed_corrupt"));
    }
}

fn clinic_id(index: usize) -> String {
    format!("jp-13-chuo-c{index:04}")
}

#[test]
fn sizes_at_district_scale() {
    let tree = Hierarchy::standard();
    let clinics: Vec<(String, RecipientSecret)> =
        (1..=2000).map(|i| (clinic_id(i), RecipientSecret::from_seed(&[(i % 251) as u8 + 1; 32]))).collect();
    let named = |n: usize| -> Vec<To<'_>> {
        clinics.iter().take(n).map(|(id, secret)| To::Clinic(id, secret.public())).collect()
    };
    let cleartext = confidential_advisory(Tlp::Red, 1);
    let sizes = |advisory: &Advisory| {
        let envelope = tree.sign_advisory(advisory).to_json().len();
        let delivery = tree.delivery(advisory, 3).to_json().len();
        (advisory.to_payload().len(), envelope, delivery)
    };
    let clear = {
        let mut amber = cleartext.clone();
        amber.tlp = Tlp::Amber;
        sizes(&amber)
    };
    let two = sizes(&seal(&cleartext, &named(2), &mut rng("size-2")).expect("seals"));
    let three = sizes(&seal(&cleartext, &named(3), &mut rng("size-3")).expect("seals"));
    let max = sizes(&seal(&cleartext, &named(64), &mut rng("size-64")).expect("seals"));
    let per_clinic = three.0 - two.0;
    let at_2000 = two.0 + 1998 * per_clinic;
    let refused = seal(&cleartext, &named(2000), &mut rng("size-2000")).map_err(|e| e.code());
    assert_eq!(refused, Err("oversize_input"), "2,000 named clinics are refused before any cryptography");
    assert!(at_2000 > MAX_PAYLOAD_BYTES && max.1 <= MAX_ENVELOPE_BYTES);

    let mut strict = cleartext.clone();
    strict.tlp = Tlp::AmberStrict;
    let group = group_key(1);
    let grouped = sizes(&seal(&strict, &[To::Group(&group)], &mut rng("size-group")).expect("seals"));

    let members: Vec<(&str, _)> = clinics.iter().map(|(id, secret)| (id.as_str(), secret.public())).collect();
    let started = Instant::now();
    let parts: Vec<GroupKeyStatement> =
        distribute_group_key("jp-13-chuo", &group_key(2), &members, tree.now, &mut rng("rekey"))
            .expect("wraps");
    let signed: Vec<Vec<u8>> =
        parts.iter().map(|part| part.sign(&tree.relays[2].key, &tree.relay_chain(2)).to_json()).collect();
    let elapsed = started.elapsed();
    let total: usize = signed.iter().map(Vec::len).sum();
    let largest = signed.iter().map(Vec::len).max().unwrap_or_default();
    let statements: usize =
        parts.iter().map(|p| p.sign(&tree.relays[2].key, &[]).statement.to_json().len()).sum();
    assert!(largest <= kairan_protocol::directory::MAX_STATEMENT_MESSAGE_BYTES);

    println!("sealed advisory sizes (payload / signed envelope / delivery after 3 hops, bytes):");
    println!("  cleartext AMBER (same content):       {} / {} / {}", clear.0, clear.1, clear.2);
    println!("  RED to 2 named clinics:               {} / {} / {}", two.0, two.1, two.2);
    println!("  RED to 64 named clinics (the limit):  {} / {} / {}", max.0, max.1, max.2);
    println!("  each further named clinic:            {per_clinic} bytes of payload");
    println!(
        "  RED to 2,000 named clinics:           {at_2000} bytes of payload (refused; limit {MAX_PAYLOAD_BYTES})"
    );
    println!("  AMBER+STRICT to the district group:   {} / {} / {}", grouped.0, grouped.1, grouped.2);
    println!("membership change at 2,000 clinics (new epoch key wrapped to each):");
    println!(
        "  {} parts, {total} bytes signed with chains ({statements} without), largest {largest}, {:.0} ms (debug build)",
        parts.len(),
        elapsed.as_secs_f64() * 1000.0
    );
}
