//! Sealed advisories over a running tree (issue 8): a TLP:RED advisory sealed to two of a
//! district's three clinics is opened, for display, by exactly those two with their recipient
//! keys; the third clinic's inbox shows the notice saying it is not a recipient; and its
//! plaintext is in no store or copy on disk, anywhere in the tree.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use kairan_node::harness::hierarchy::HierarchyBuilder;
use kairan_node::inbox::listing::Inbox;
use kairan_node::inbox::{Recipient, SEALED_NOTICE_JA};
use kairan_protocol::fixtures::sealed::recipient;
use kairan_protocol::{Localized, Tlp};
use kairan_tests::disk::files_containing;

const SETTLE: Duration = Duration::from_secs(20);
const SECRET_JA: &str = "封緘試験：指定受信者だけが読める題名";
const SECRET_EN: &str = "Sealed trial title only its named recipients read";
const CLEAR_JA: &str = "平文対照：誰でも読める題名";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_red_advisory_sealed_to_two_clinics_is_opened_by_exactly_those_two_and_stored_sealed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tree = HierarchyBuilder::new(dir.path())
        .prefectures(1)
        .districts_per_prefecture(1)
        .clinics_per_district(3)
        .start()
        .await
        .expect("tree starts");
    tree.wait_subscribed(SETTLE).await.expect("tree subscribed");
    let ids: Vec<String> = tree.clinics.iter().map(|clinic| clinic.config.id.clone()).collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    let keys: Vec<_> = ids.iter().map(|id| Arc::new(recipient(id))).collect();
    let scope = tree.clinics[0].config.scope.to_string();
    let now = tree.now();

    // A control in clear, to show the byte search sees advisory text where it is stored.
    let mut clear = kairan_tests::advisory(&scope, "clear-control", now);
    clear.title = Localized::new("ja", CLEAR_JA).with("en", "Clear control");
    let (bytes, clear_digest) = tree.sign_next(clear);
    tree.publish_raw(bytes).await.expect("published");

    let mut red = kairan_tests::advisory(&scope, "sealed-red-1", now);
    red.tlp = Tlp::Red;
    red.handling = "指定された受信者限り / named recipients only".into();
    red.title = Localized::new("ja", SECRET_JA).with("en", SECRET_EN);
    let to = [(ids[0].as_str(), keys[0].public()), (ids[1].as_str(), keys[1].public())];
    let (bytes, red_digest) = tree.sign_next_sealed_to(red, &to);
    tree.publish_raw(bytes).await.expect("published");
    tree.wait_for_inboxes(|_| BTreeSet::from([clear_digest, red_digest]), SETTLE).await.expect("delivered");

    for (index, id) in ids.iter().enumerate() {
        let reader = Recipient { clinic: id.clone(), key: Some(Arc::clone(&keys[index])) };
        let data_dir = &tree.clinics[index].config.data_dir;
        // The readable copy may land just after the store's record that wait_for_inboxes sees.
        let deadline = std::time::Instant::now() + SETTLE;
        let inbox = loop {
            let inbox = Inbox::read_as(data_dir, &tree.anchors, &reader).expect("inbox");
            if inbox.get(&red_digest).is_some() || std::time::Instant::now() > deadline {
                break inbox;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let item = inbox.get(&red_digest).unwrap_or_else(|| {
            panic!(
                "the sealed advisory is in every inbox: {} items, refused {:?}",
                inbox.items.len(),
                inbox.refused
            )
        });
        assert_eq!(item.advisory.tlp, Tlp::Red);
        if index < 2 {
            assert_eq!(item.provenance.title, SECRET_JA, "{id} opens it");
            assert_eq!((item.advisory.title.get("en"), item.unopened.as_deref()), (SECRET_EN, None), "{id}");
        } else {
            assert_eq!(item.provenance.title, SEALED_NOTICE_JA, "{id} sees the notice");
            let why = item.unopened.as_deref().expect("a reason");
            assert!(why.contains("受信者に含まれていません") && why.contains("not_a_recipient"), "{why}");
            assert!(item.advisory.title.is_blank(), "{id}");
        }
        // Without its key, even a recipient sees only the notice.
        let keyless = Recipient { clinic: id.clone(), key: None };
        let inbox = Inbox::read_as(data_dir, &tree.anchors, &keyless).expect("inbox");
        assert_eq!(inbox.get(&red_digest).expect("there").provenance.title, SEALED_NOTICE_JA);
    }

    let relays: Vec<String> = tree.relays.iter().map(|relay| relay.config_parts.id.clone()).collect();
    tree.shutdown().await.expect("clean shutdown");
    // The control proves the search reads every relay's store and every clinic's store and copy.
    let control = files_containing(dir.path(), CLEAR_JA);
    let found_under = |part: &str| control.iter().any(|path| path.to_string_lossy().contains(part));
    for relay in &relays {
        assert!(found_under(&format!("/nodes/{relay}/")), "control not seen in {relay}'s store: {control:?}");
    }
    for id in &ids {
        for part in [format!("/clinics/{id}/store/"), format!("/clinics/{id}/advisories/")] {
            assert!(found_under(&part), "control not seen under {part}: {control:?}");
        }
    }
    for needle in [SECRET_JA, SECRET_EN] {
        let leaked = files_containing(dir.path(), needle);
        assert!(leaked.is_empty(), "plaintext {needle:?} found on disk in {leaked:?}");
    }
}
