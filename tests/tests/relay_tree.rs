//! A depth-4 tree (national → prefecture → district → clinic) of real in-process nodes
//! over real MQTT sockets, embedded brokers, real sled stores.

use std::collections::BTreeSet;
use std::time::Duration;

use kairan_node::harness::hierarchy::{Hierarchy, HierarchyBuilder};
use kairan_node::store::Store;
use kairan_node::topics::{deliveries as deliveries_topic, ingest_of};
use kairan_protocol::{Digest, RevocationSet, Scope, VerifyContext, verify_delivery};
use kairan_tests::chain_delivery;

const SETTLE: Duration = Duration::from_secs(20);

use kairan_tests::advisory;

async fn tree(dir: &std::path::Path) -> Hierarchy {
    let tree = HierarchyBuilder::new(dir)
        .prefectures(2)
        .districts_per_prefecture(2)
        .clinics_per_district(2)
        .start()
        .await
        .expect("tree starts");
    tree.wait_subscribed(SETTLE).await.expect("tree subscribed");
    tree
}

/// Every digest any relay or clinic store holds.
fn held_anywhere(tree: &Hierarchy, digest: &Digest) -> Vec<String> {
    let mut holders = Vec::new();
    for relay in &tree.relays {
        if let Some(handle) = &relay.handle {
            if handle.store().contains(digest).expect("store") {
                holders.push(handle.id.clone());
            }
        }
    }
    for (index, clinic) in tree.clinics.iter().enumerate() {
        if tree.inbox(index).expect("inbox").contains(digest) {
            holders.push(clinic.config.id.clone());
        }
    }
    holders
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_in_scope_clinic_gets_every_advisory_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tree = tree(dir.path()).await;
    let now = tree.now();
    let mut published: Vec<(Digest, Scope)> = Vec::new();
    for (scope, id) in
        [("jp", "nation-1"), ("jp/13", "tokyo-1"), ("jp/27/kita", "kita-1"), ("jp", "nation-2")]
    {
        let advisory = advisory(scope, id, now);
        let (bytes, digest) = tree.sign_next(advisory);
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
        let handle = clinic.handle.as_ref().expect("running");
        let records = handle.store().all().expect("inbox");
        // Exactly once: as many records as distinct digests, and exactly the expected ones.
        assert_eq!(records.len(), expected(index).len(), "{}", clinic.config.id);
        assert_eq!(tree.inbox(index).expect("inbox"), expected(index), "{}", clinic.config.id);
        for record in records {
            let ctx = VerifyContext {
                anchors: &tree.anchors,
                revocations: &RevocationSet::default(),
                now: record.received_at,
            };
            let verified = verify_delivery(&record.delivery, ctx).expect("stored delivery verifies");
            assert_eq!(verified.hops().count(), 3, "national, prefecture, district");
            let last = verified.hops().last().expect("hop");
            assert_eq!(last.relay, tree.relays[clinic.district].config_parts.id);
        }
    }
    // Routing: Osaka's relays never even saw the Tokyo advisory.
    let tokyo_digest = published[1].0;
    let osaka = tree.relay_index("jp-27").expect("osaka");
    assert!(
        !tree.relays[osaka].handle.as_ref().expect("running").store().contains(&tokyo_digest).expect("store")
    );
    tree.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tampered_out_of_scope_and_expired_input_is_refused_at_every_level() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = tree(dir.path()).await;
    let now = tree.now();
    let national = 0;
    let tokyo = tree.relay_index("jp-13").expect("tokyo");
    let chuo = tree.relay_index("jp-13-chuo").expect("chuo");
    // (where to inject: relay whose broker carries it, topic; the chain of relays above the
    // receiving node; who receives it)
    let levels: Vec<(usize, String, Vec<usize>, &str)> = vec![
        (national, ingest_of("jp", "mhlw"), vec![], "jp"),
        (national, deliveries_topic("jp", "jp/13"), vec![national], "jp-13"),
        (tokyo, deliveries_topic("jp-13", "jp/13/chuo"), vec![national, tokyo], "jp-13-chuo"),
        (chuo, deliveries_topic("jp-13-chuo", "jp/13/chuo"), vec![national, tokyo, chuo], "jp-13-chuo-c1"),
    ];
    let attacker = kairan_protocol::SecretKey::from_seed(&[0x66; 32]).expect("key");
    let mut cases = 0;
    for (broker_of, topic, chain, receiver) in &levels {
        let base = advisory("jp/13/chuo", &format!("base-{receiver}"), now);
        // Forged: signed by a key the root never certified.
        let mut forged = chain_delivery(&tree, &base, chain, now);
        forged.advisory = kairan_protocol::Envelope::sign(
            kairan_protocol::envelope::ADVISORY_TYPE,
            base.to_payload(),
            &[&attacker],
        );
        // Tampered: a valid delivery with one byte of the advisory payload changed.
        let mut tampered =
            chain_delivery(&tree, &advisory("jp/13/chuo", &format!("tampered-{receiver}"), now), chain, now);
        let position = tampered.advisory.payload.len() / 2;
        tampered.advisory.payload[position] ^= 0x01;
        // Out of scope: an Osaka advisory pushed into Tokyo's subtree (at ingest there is no
        // subtree yet, so the national case uses a scope outside the origin's certificate).
        let outside = if chain.is_empty() { "kr" } else { "jp/27" };
        let out_of_scope =
            chain_delivery(&tree, &advisory(outside, &format!("scope-{receiver}"), now), chain, now);
        // Expired: validly signed, but expired a minute ago.
        let mut old = advisory("jp/13/chuo", &format!("expired-{receiver}"), now);
        old.issued_at = now.plus_secs(-1800);
        old.expires_at = now.plus_secs(-60);
        let expired = chain_delivery(&tree, &old, chain, now.plus_secs(-1700));
        for (delivery, code) in [
            (forged, "unknown_signer"),
            (tampered, "bad_signature"),
            (out_of_scope, "scope_violation"),
            (expired, "advisory_expired"),
        ] {
            let digest = delivery.claimed_digest();
            tree.inject(*broker_of, topic, delivery.to_json()).await.expect("injected");
            let deadline = std::time::Instant::now() + SETTLE;
            let rejection = loop {
                let rejections = if let Some(index) = tree.relay_index(receiver) {
                    tree.relays[index]
                        .handle
                        .as_ref()
                        .expect("running")
                        .store()
                        .rejections()
                        .expect("rejections")
                } else {
                    let clinic = tree.clinics.iter().find(|c| c.config.id == *receiver).expect("clinic");
                    clinic.handle.as_ref().expect("running").store().rejections().expect("rejections")
                };
                if let Some(found) = rejections.into_iter().find(|r| r.claimed_digest == Some(digest)) {
                    break found;
                }
                assert!(std::time::Instant::now() < deadline, "{receiver} never recorded the {code} case");
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            assert_eq!(rejection.code, code, "{receiver}: {}", rejection.message);
            cases += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(
                held_anywhere(&tree, &digest).is_empty(),
                "{code} at {receiver} was stored: {:?}",
                held_anywhere(&tree, &digest)
            );
        }
    }
    assert_eq!(cases, 16);
    // Every node is still serving: a real advisory still reaches every clinic.
    let mut tree = tree;
    let (bytes, digest) = tree.sign_next(advisory("jp", "after-attacks", tree.now()));
    tree.publish_raw(bytes).await.expect("published");
    tree.wait_for_inboxes(|_| BTreeSet::from([digest]), SETTLE).await.expect("still serving");
    tree.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_delivery_is_stored_and_forwarded_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tree = tree(dir.path()).await;
    let (bytes, digest) = tree.sign_next(advisory("jp/13", "twice", tree.now()));
    tree.publish_raw(bytes.clone()).await.expect("first");
    tree.publish_raw(bytes).await.expect("second (a QoS 1 duplicate)");
    let expected = |clinic: usize| -> BTreeSet<Digest> {
        if tree.clinics[clinic].config.scope.overlaps(&Scope::parse("jp/13").expect("scope")) {
            BTreeSet::from([digest])
        } else {
            BTreeSet::new()
        }
    };
    tree.wait_for_inboxes(&expected, SETTLE).await.expect("delivered");
    // The prefecture's forwarded copy, published again on the national broker.
    let tokyo = tree.relay_index("jp-13").expect("tokyo");
    let forwarded =
        tree.relays[0].handle.as_ref().expect("national").store().get(&digest).expect("get").expect("held");
    tree.inject(0, &deliveries_topic("jp", "jp/13"), forwarded.delivery.to_vec())
        .await
        .expect("duplicate injected");
    let deadline = std::time::Instant::now() + SETTLE;
    loop {
        let counters = tree.relays[tokyo].handle.as_ref().expect("tokyo").counters().await;
        if counters.duplicates >= 1 {
            assert_eq!(counters.accepted, 1);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "tokyo never saw the duplicate");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let national = tree.relays[0].handle.as_ref().expect("national").counters().await;
    assert_eq!((national.accepted, national.duplicates), (1, 1));
    for relay in &tree.relays {
        let log = relay.handle.as_ref().expect("running").store().all().expect("log");
        assert!(log.len() <= 1, "{} forwarded {} times", relay.config_parts.id, log.len());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for index in 0..tree.clinics.len() {
        let records = tree.clinics[index].handle.as_ref().expect("running").store().all().expect("inbox");
        assert_eq!(records.len(), expected(index).len());
    }
    tree.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_restarted_cleanly_mid_stream_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tree = tree(dir.path()).await;
    let tokyo = tree.relay_index("jp-13").expect("tokyo");
    let mut published = BTreeSet::new();
    for number in 0..30 {
        if number == 10 {
            tree.stop_relay(tokyo).await.expect("clean stop");
        }
        if number == 20 {
            tree.restart_relay(tokyo).await.expect("restart from its store");
        }
        let (bytes, digest) = tree.sign_next(advisory("jp", &format!("stream-{number}"), tree.now()));
        tree.publish_raw(bytes).await.expect("published");
        published.insert(digest);
    }
    tree.wait_for_inboxes(|_| published.clone(), Duration::from_secs(60)).await.expect("nothing lost");
    let log = tree.relays[tokyo].handle.as_ref().expect("running").store().all().expect("log");
    assert_eq!(log.len(), 30, "tokyo forwarded each advisory once");
    let relay_seqs: Vec<u64> = log.iter().map(|r| r.relay_seq).collect();
    assert_eq!(relay_seqs, (1..=30).collect::<Vec<_>>(), "relay sequence continues across the restart");
    tree.shutdown().await.expect("clean shutdown");
}

/// rmqtt refuses a connection as "service unavailable" when the same client id connects again
/// while its previous connection is still being closed (without a retry, 3 of 5 runs of 120
/// back-to-back connections failed here). `kairan publish` and `kairan trust push` connect
/// with the member's id each time: run in a row, they must not fail for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_many_times_in_a_row_is_never_refused_as_busy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = HierarchyBuilder::new(dir.path())
        .prefectures(1)
        .districts_per_prefecture(1)
        .clinics_per_district(0)
        .start()
        .await
        .expect("tree starts");
    tree.wait_subscribed(SETTLE).await.expect("tree subscribed");
    for number in 0..300 {
        // An empty trust bundle: accepted by the broker, changes nothing at the node.
        tree.push_trust(b"{}".to_vec()).await.unwrap_or_else(|e| panic!("push {number}: {e}"));
    }
    tree.shutdown().await.expect("clean shutdown");
}
