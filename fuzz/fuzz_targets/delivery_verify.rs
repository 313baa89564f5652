//! Fuzz target: arbitrary bytes into `kairan_protocol::verify_delivery`.
//!
//! The verifier is configured as a clinic would be, with the fixture trust anchors (root keys
//! `root-1..3`, threshold 2) at the fixture time `Hierarchy::later()` (FIXTURE_NOW + 60 s, after
//! every fixture hop), so the seed deliveries in `corpus/delivery_verify/` verify and mutations
//! of them reach every check. Whatever the input, verification must return `Ok` or `Err`, never
//! panic, and an `Ok` must be internally consistent.

#![no_main]

use std::sync::OnceLock;

use kairan_protocol::fixtures::Hierarchy;
use kairan_protocol::keys::Digest;
use kairan_protocol::limits::{MAX_CERTS, MAX_HOPS};
use kairan_protocol::{RevocationSet, VerifyContext, verify_delivery};
use libfuzzer_sys::fuzz_target;

struct Fixture {
    tree: Hierarchy,
    revocations: RevocationSet,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| Fixture { tree: Hierarchy::standard(), revocations: RevocationSet::default() })
}

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    let ctx = VerifyContext {
        anchors: &fixture.tree.anchors,
        revocations: &fixture.revocations,
        now: fixture.tree.later(),
    };
    match verify_delivery(data, ctx) {
        Ok(verified) => {
            // What verification established must agree with the wire form it vouches for.
            assert_eq!(verified.digest(), Digest::of(&verified.value().advisory.payload));
            assert_eq!(verified.hops().count(), verified.value().hops.len());
            assert!(verified.value().hops.len() <= MAX_HOPS);
            assert!(verified.value().certs.len() <= MAX_CERTS);
            assert_eq!(verified.advisory().origin, verified.origin_cert().subject);
            assert!(verified.origin_cert().scope.contains(&verified.advisory().scope));
        }
        Err(error) => {
            // Every refusal has a stable reason code.
            assert!(!error.code().is_empty());
        }
    }
});
