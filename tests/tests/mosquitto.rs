//! The same depth-4 tree with Mosquitto as the external broker of the prefectural and the
//! district level. `.ci/run` sets `KAIRAN_REQUIRE_MOSQUITTO=1`, so a missing Mosquitto fails
//! these tests there; elsewhere they are skipped with a printed notice.

use std::collections::BTreeSet;
use std::time::Duration;

use kairan_node::harness::hierarchy::{HierarchyBuilder, Level};
use kairan_node::store::Store;
use kairan_protocol::{Digest, RevocationSet, Scope, VerifyContext, verify_delivery};
use kairan_tests::Mosquitto;

const SETTLE: Duration = Duration::from_secs(30);

use kairan_tests::advisory;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tree_with_mosquitto_levels_delivers_exactly_once_by_scope() {
    let (Some(prefecture_broker), Some(district_broker)) =
        (Mosquitto::prepare_if_available(false), Mosquitto::prepare_if_available(false))
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tree = HierarchyBuilder::new(dir.path())
        .prefectures(2)
        .districts_per_prefecture(2)
        .clinics_per_district(2)
        .external_broker(Level::Prefecture, prefecture_broker)
        .external_broker(Level::District, district_broker)
        .start()
        .await
        .expect("tree starts");
    tree.wait_subscribed(SETTLE).await.expect("subscribed");
    let now = tree.now();
    let mut published: Vec<(Digest, Scope)> = Vec::new();
    for (scope, id) in [("jp", "n-1"), ("jp/27", "osaka-1"), ("jp/13/chuo", "chuo-1")] {
        let (bytes, digest) = tree.sign_next(advisory(scope, id, now));
        tree.publish_raw(bytes).await.expect("published");
        published.push((digest, Scope::parse(scope).expect("scope")));
    }
    let expected = |clinic: usize| -> BTreeSet<Digest> {
        published
            .iter()
            .filter(|(_, s)| tree.clinics[clinic].config.scope.overlaps(s))
            .map(|(d, _)| *d)
            .collect()
    };
    tree.wait_for_inboxes(&expected, SETTLE).await.expect("inboxes converge");
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (index, clinic) in tree.clinics.iter().enumerate() {
        let records = clinic.handle.as_ref().expect("running").store().all().expect("inbox");
        assert_eq!(records.len(), expected(index).len(), "{} holds each advisory once", clinic.config.id);
        for record in records {
            let ctx = VerifyContext {
                anchors: &tree.anchors,
                revocations: &RevocationSet::default(),
                now: record.received_at,
            };
            verify_delivery(&record.delivery, ctx).expect("verifies");
        }
    }
    tree.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_publishing_to_mosquitto_restarted_mid_stream_loses_nothing() {
    let Some(district_broker) = Mosquitto::prepare_if_available(false) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tree = HierarchyBuilder::new(dir.path())
        .prefectures(1)
        .districts_per_prefecture(2)
        .clinics_per_district(2)
        .external_broker(Level::District, district_broker)
        .start()
        .await
        .expect("tree starts");
    tree.wait_subscribed(SETTLE).await.expect("subscribed");
    let chuo = tree.relay_index("jp-13-chuo").expect("chuo");
    let mut published = BTreeSet::new();
    for number in 0..24 {
        if number == 8 {
            tree.stop_relay(chuo).await.expect("stop");
        }
        if number == 16 {
            tree.restart_relay(chuo).await.expect("restart");
        }
        let (bytes, digest) = tree.sign_next(advisory("jp", &format!("m-{number}"), tree.now()));
        tree.publish_raw(bytes).await.expect("published");
        published.insert(digest);
    }
    tree.wait_for_inboxes(|_| published.clone(), Duration::from_secs(60)).await.expect("nothing lost");
    tree.shutdown().await.expect("clean shutdown");
}
