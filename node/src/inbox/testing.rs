//! Test inboxes: advisories signed by the protocol's fixture hierarchy, carried over its three
//! relays, written as the clinic writes its readable copies.

use std::path::Path;

use kairan_protocol::fixtures::{self, Hierarchy};
use kairan_protocol::sealed::{To, seal};
use kairan_protocol::{Advisory, Digest, Kind, Localized, Tlp};

/// Signs and delivers `advisory`, then writes its copy as inbox entry `inbox_seq`.
pub(crate) fn store(hierarchy: &Hierarchy, dir: &Path, inbox_seq: u64, advisory: &Advisory) -> Digest {
    let copies = super::copies_dir(dir);
    std::fs::create_dir_all(&copies).expect("copies dir");
    let delivery = hierarchy.delivery(advisory, 3);
    let digest = Digest::of(&delivery.advisory.payload);
    super::write_copy(&copies, &digest, inbox_seq, hierarchy.later(), &delivery.to_json())
        .expect("write copy");
    digest
}

/// The `seq`-th advisory of the fixture origin: `kind` referencing `references`. Odd ones are
/// TLP:AMBER in clear; even ones TLP:RED, sealed to the fixture clinics 1 and 2 (their content
/// is encrypted, so the inbox shows them as sealed).
pub(crate) fn advisory(seq: u64, prev: Option<Digest>, kind: Kind, references: &[Digest]) -> Advisory {
    let mut advisory = fixtures::sample_advisory("mhlw", seq, prev);
    advisory.kind = kind;
    advisory.references = references.to_vec();
    advisory.id = format!("MHLW-TEST-{seq:03}");
    advisory.tlp = Tlp::Amber;
    advisory.title = Localized::new("ja", &format!("テスト注意喚起 第{seq}報"))
        .with("en", &format!("Test advisory {seq}"));
    if seq % 2 == 0 {
        advisory.tlp = Tlp::Red;
        advisory.handling = "指定された受信者限り / named recipients only".into();
        advisory = seal_to_fixture_clinics(&advisory, &format!("inbox-testing-{seq}"));
    }
    advisory
}

/// `advisory` (TLP:RED or AMBER+STRICT, in clear) sealed to the fixture clinics 1 and 2 with
/// the fixture RNG named `label`.
pub(crate) fn seal_to_fixture_clinics(advisory: &Advisory, label: &str) -> Advisory {
    let clinics = fixtures::sealed::CLINICS;
    let (one, two) = (fixtures::sealed::recipient(clinics[0]), fixtures::sealed::recipient(clinics[1]));
    let to = [To::Clinic(clinics[0], one.public()), To::Clinic(clinics[1], two.public())];
    seal(advisory, &to, &mut fixtures::sealed::rng(label)).expect("seal")
}

/// An inbox in `dir` with an alert (1), an update of it (2) and a cancel of the update's
/// original (3); returns the digests in order.
pub(crate) fn alert_update_cancel(hierarchy: &Hierarchy, dir: &Path) -> Vec<Digest> {
    let first = store(hierarchy, dir, 1, &advisory(1, None, Kind::Alert, &[]));
    let second = store(hierarchy, dir, 2, &advisory(2, Some(first), Kind::Update, &[first]));
    let third = store(hierarchy, dir, 3, &advisory(3, Some(second), Kind::Cancel, &[first]));
    vec![first, second, third]
}

/// Rewrites the copy of `digest` with its advisory changed by `change` (keeping the signature,
/// which then no longer verifies).
pub(crate) fn tamper(dir: &Path, digest: &Digest, change: impl FnOnce(&mut Advisory)) {
    let path = super::copy_path(&super::copies_dir(dir), digest);
    let text = std::fs::read_to_string(&path).expect("copy");
    let mut entry: super::InboxEntry = serde_json::from_str(&text).expect("entry");
    let mut advisory: Advisory = serde_json::from_slice(&entry.delivery.advisory.payload).expect("advisory");
    change(&mut advisory);
    entry.delivery.advisory.payload = advisory.to_payload();
    std::fs::write(&path, serde_json::to_vec(&entry).expect("json")).expect("write");
}
