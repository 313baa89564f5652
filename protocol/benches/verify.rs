//! Delivery verification cost, beside the cost of one Ed25519 `verify_strict`.
//!
//! Run: `cargo bench -p kairan-protocol --bench verify -- --warm-up-time 1 --measurement-time 3`
//! Results and the machine they were measured on: `docs/performance.md`.
//!
//! The fixture delivery has passed 3 relays (national `jp`, prefecture `jp-13`, district
//! `jp-13-chuo`), so it carries the origin certificate and 3 relay certificates. Verifying it
//! checks 10 Ed25519 signatures: 2 root signatures on each of the two root-issued
//! certificates (origin, national relay), 1 on each of the two relay-issued certificates,
//! 1 on the advisory and 1 on each of the 3 hops.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use kairan_protocol::envelope::pae;
use kairan_protocol::{Delivery, HopInput, RevocationSet, VerifyContext, attest, fixtures, verify_delivery};

fn delivery_verification(c: &mut Criterion) {
    let tree = fixtures::Hierarchy::standard();
    let advisory = fixtures::sample_advisory("mhlw", 1, None);
    let revocations = RevocationSet::default();
    let ctx = VerifyContext { anchors: &tree.anchors, revocations: &revocations, now: tree.later() };

    let three_hops = tree.delivery(&advisory, 3).to_json();
    let parsed = Delivery::from_json(&three_hops).expect("fixture delivery parses");
    let signature_count = parsed.advisory.signatures.len()
        + parsed.certs.iter().map(|e| e.signatures.len()).sum::<usize>()
        + parsed.hops.iter().map(|e| e.signatures.len()).sum::<usize>();
    assert_eq!(parsed.certs.len(), 4, "origin certificate + 3 relay certificates");
    assert_eq!(parsed.hops.len(), 3);
    assert_eq!(signature_count, 10);
    verify_delivery(&three_hops, ctx).expect("fixture delivery verifies");

    // One signature on its own: the origin's signature over the advisory's PAE.
    let envelope = &parsed.advisory;
    let message = pae(&envelope.payload_type, &envelope.payload);
    let signature = envelope.signatures[0].sig.clone();
    let origin_key = tree.origin_key.public().clone();
    assert!(origin_key.verify_strict(&message, &signature));

    // The district's view before it attests: a verified delivery that passed 2 relays.
    let two_hops = tree.delivery(&advisory, 2).to_json();
    let received = verify_delivery(&two_hops, ctx).expect("2-hop delivery verifies");
    let district = &tree.relays[2];
    let hop_input = HopInput {
        relay_id: &district.id,
        relay_key: &district.key,
        relay_cert: &district.cert,
        received_at: tree.now.plus_secs(21),
        forwarded_at: tree.now.plus_secs(22),
        relay_seq: 1,
    };

    let mut group = c.benchmark_group("protocol");
    group.bench_function("verify_delivery (3 hops, 4 certs, 10 signatures)", |b| {
        b.iter(|| verify_delivery(black_box(&three_hops), ctx).expect("verifies"))
    });
    group.bench_function("verify_strict (1 signature)", |b| {
        b.iter(|| black_box(&origin_key).verify_strict(black_box(&message), black_box(&signature)))
    });
    group.bench_function("Delivery::from_json (3 hops, parse only)", |b| {
        b.iter(|| Delivery::from_json(black_box(&three_hops)).expect("parses"))
    });
    group.bench_function("attest (1 hop signed, delivery cloned)", |b| {
        b.iter(|| attest(black_box(&received), black_box(&hop_input)))
    });
    group.finish();
}

criterion_group!(benches, delivery_verification);
criterion_main!(benches);
