//! Attack-catalogue cases at the protocol level that are not single rejection reasons:
//! reordered hops, deeply nested and non-UTF-8 JSON. (See docs/security.md.)

use kairan_protocol::fixtures::{self, Hierarchy};
use kairan_protocol::{RevocationSet, VerifyContext, verify_delivery};

fn code(bytes: &[u8], tree: &Hierarchy) -> &'static str {
    let revocations = RevocationSet::default();
    let ctx = VerifyContext { anchors: &tree.anchors, revocations: &revocations, now: tree.later() };
    verify_delivery(bytes, ctx).map_or_else(|e| e.code(), |_| "ok")
}

#[test]
fn reordered_hops_break_the_chain() {
    let tree = Hierarchy::standard();
    let mut delivery = tree.delivery(&fixtures::sample_advisory("mhlw", 1, None), 3);
    assert_eq!(code(&delivery.to_json(), &tree), "ok");
    delivery.hops.swap(0, 1);
    assert_eq!(code(&delivery.to_json(), &tree), "broken_hop_chain");
    let mut dropped = tree.delivery(&fixtures::sample_advisory("mhlw", 1, None), 3);
    dropped.hops.remove(1);
    assert_eq!(code(&dropped.to_json(), &tree), "broken_hop_chain");
}

#[test]
fn deeply_nested_json_is_refused_without_exhausting_the_stack() {
    let tree = Hierarchy::standard();
    for depth in [200, 10_000, 120_000] {
        let nested = format!("{{\"advisory\":{}{}}}", "[".repeat(depth), "]".repeat(depth));
        assert_eq!(code(nested.as_bytes(), &tree), "malformed_envelope", "depth {depth}");
    }
    let objects = format!("{}{}", "{\"a\":".repeat(36_000), "}".repeat(36_000));
    assert_eq!(code(objects.as_bytes(), &tree), "malformed_envelope");
}

#[test]
fn invalid_utf8_is_refused() {
    let tree = Hierarchy::standard();
    let mut bytes = tree.delivery(&fixtures::sample_advisory("mhlw", 1, None), 1).to_json();
    bytes[2] = 0xff;
    assert_eq!(code(&bytes, &tree), "malformed_envelope");
}
