//! Hostile input against a running tree: every case gets a precise rejection, nothing is
//! forwarded, nothing is lost, and the nodes keep serving. (The protocol-level cases —
//! every rejection reason, byte flips, oversize input — are in protocol/tests.)

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kairan_node::harness::hierarchy::{Hierarchy, HierarchyBuilder};
use kairan_node::mqtt::{self, BrokerAddr, Credentials};
use kairan_node::store::Store;
use kairan_node::topics::{deliveries as deliveries_topic, ingest_of};
use kairan_protocol::{Advisory, Digest, Timestamp};
use rumqttc::{ConnectReturnCode, Event, Packet};

const SETTLE: Duration = Duration::from_secs(20);

fn advisory(id: &str, now: Timestamp) -> Advisory {
    kairan_tests::advisory("jp", id, now)
}

async fn tree(dir: &std::path::Path) -> Hierarchy {
    let tree = HierarchyBuilder::new(dir)
        .prefectures(1)
        .districts_per_prefecture(1)
        .clinics_per_district(2)
        .extra_origins(&["rogue"])
        .start()
        .await
        .expect("tree starts");
    tree.wait_subscribed(SETTLE).await.expect("subscribed");
    tree
}

async fn still_serving(tree: &mut Hierarchy, expected: &mut BTreeSet<Digest>, id: &str) {
    let (bytes, digest) = tree.sign_next(advisory(id, tree.now()));
    tree.publish_raw(bytes).await.expect("published");
    expected.insert(digest);
    let wanted = expected.clone();
    tree.wait_for_inboxes(|_| wanted.clone(), SETTLE).await.expect("still serving");
}

async fn wait_rejection(tree: &Hierarchy, relay: usize, code: &str, count: usize) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let rejections =
            tree.relays[relay].handle.as_ref().expect("running").store().rejections().expect("rejections");
        if rejections.iter().filter(|r| r.code == code).count() >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {code} rejection recorded among {} rejections",
            rejections.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bytes_are_refused_and_the_node_keeps_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tree = tree(dir.path()).await;
    let mut expected = BTreeSet::new();
    // Deeply nested JSON inside the size limit, invalid UTF-8, bad base64, oversize input.
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes();
    let invalid_utf8 = b"{\"advisory\":\"\xff\xfe\xfd\"}".to_vec();
    let bad_base64 = br#"{"advisory":{"payload":"%%%","payloadType":"application/vnd.kairan.advisory+json","signatures":[]},"certs":[]}"#.to_vec();
    let oversize = vec![b' '; kairan_protocol::limits::MAX_DELIVERY_BYTES + 1];
    for (bytes, code) in [
        (nested, "malformed_envelope"),
        (invalid_utf8, "malformed_envelope"),
        (bad_base64, "malformed_envelope"),
        (oversize, "oversize_input"),
    ] {
        tree.inject(0, &ingest_of("jp", "mhlw"), bytes).await.expect("injected");
        wait_rejection(&tree, 0, code, 1).await;
    }
    still_serving(&mut tree, &mut expected, "after-garbage").await;
    tree.shutdown().await.expect("clean shutdown");
}

async fn connect_result(
    tree: &Hierarchy,
    addr: &BrokerAddr,
    credentials: Option<&Credentials>,
) -> Result<ConnectReturnCode, String> {
    let client_id = credentials.map_or("intruder", |c| c.username.as_str());
    let link = mqtt::LinkConfig {
        addr: addr.clone(),
        peer: Some(tree.peer_of(0)),
        credentials: credentials.cloned(),
        client_id: client_id.to_owned(),
    };
    let connection = mqtt::connect(&link, true, false, 10).expect("client");
    let mut eventloop = connection.eventloop;
    match tokio::time::timeout(Duration::from_secs(5), eventloop.poll()).await {
        Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) => Ok(ack.code),
        Ok(Ok(other)) => Err(format!("unexpected {other:?}")),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("timeout".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_clients_are_refused_by_the_embedded_broker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = tree(dir.path()).await;
    let addr = tree.national_broker().expect("national broker");
    let anonymous = connect_result(&tree, &addr, None).await;
    assert!(!matches!(anonymous, Ok(ConnectReturnCode::Success)), "anonymous accepted: {anonymous:?}");
    let wrong = Credentials { username: "mhlw".into(), password: "not-the-password".into() };
    let guessed = connect_result(&tree, &addr, Some(&wrong)).await;
    assert!(!matches!(guessed, Ok(ConnectReturnCode::Success)), "wrong password accepted: {guessed:?}");
    // The origin's real credentials work (the broker is not refusing everyone).
    let origin = connect_result(&tree, &addr, tree.origin.credentials.as_ref()).await;
    assert!(matches!(origin, Ok(ConnectReturnCode::Success)), "{origin:?}");
    tree.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clinic_publishing_into_a_delivery_topic_is_refused_by_the_broker_and_reaches_no_inbox() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tree = tree(dir.path()).await;
    let mut expected = BTreeSet::new();
    still_serving(&mut tree, &mut expected, "genuine").await;
    // Clinic 0 uses its own credentials on its district's broker: the permission table lets a
    // clinic write only its own catch-up request topic.
    let clinic = &tree.clinics[0].config;
    let district = tree.clinics[0].district;
    let topic = deliveries_topic(&tree.relays[district].config_parts.id, &clinic.scope.to_string());
    let attacker = kairan_protocol::SecretKey::from_seed(&[0x77; 32]).expect("key");
    let mut forged = kairan_tests::chain_delivery(
        &tree,
        &advisory("from-a-clinic", tree.now()),
        &[0, 1, district],
        tree.now(),
    );
    forged.advisory = kairan_protocol::Envelope::sign(
        kairan_protocol::envelope::ADVISORY_TYPE,
        advisory("from-a-clinic", tree.now()).to_payload(),
        &[&attacker],
    );
    // And a replay of a genuine delivery.
    let genuine_digest = *expected.iter().next().expect("one");
    let stored = tree.clinics[1]
        .handle
        .as_ref()
        .expect("clinic")
        .store()
        .get(&genuine_digest)
        .expect("get")
        .expect("held");
    for bytes in [forged.to_json(), stored.delivery.to_vec()] {
        let refused = kairan_node::publish::publish_acked(
            &clinic.addr,
            Some(&tree.peer_of(district)),
            clinic.credentials.as_ref(),
            &topic,
            bytes,
            Duration::from_secs(5),
        )
        .await;
        assert!(refused.is_err(), "the broker let a clinic publish into its district's delivery topic");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for index in 0..tree.clinics.len() {
        assert_eq!(tree.inbox(index).expect("inbox"), expected, "no forged or doubled entry");
        let counters = tree.clinics[index].handle.as_ref().expect("clinic").counters().await;
        assert_eq!(counters.rejected, 0, "nothing reached a clinic to refuse");
    }
    still_serving(&mut tree, &mut expected, "after-clinic-attack").await;
    tree.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_publisher_is_throttled_and_genuine_advisories_still_flow() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tree = tree(dir.path()).await;
    let mut expected = BTreeSet::new();
    let attacker = kairan_protocol::SecretKey::from_seed(&[0x55; 32]).expect("key");
    // Five times the refusal burst, as fast as one connection can send them.
    let count = 5 * kairan_node::machine::REFUSALS_BURST as usize;
    let now = tree.now();
    let addr = tree.national_broker().expect("broker");
    // A hostile origin member (credentials on the national broker, no certificate) floods its
    // own ingest topic: the refusals are throttled on that topic only.
    let rogue = tree.credentials_of("rogue").expect("rogue origin");
    let link = mqtt::LinkConfig {
        addr: addr.clone(),
        peer: Some(tree.peer_of(0)),
        credentials: Some(rogue.clone()),
        client_id: "rogue".into(),
    };
    let connection = mqtt::connect(&link, true, false, 4096).expect("client");
    let (client, mut eventloop, _tunnel) = (connection.client, connection.eventloop, connection.tunnel);
    let poller = tokio::spawn(async move {
        let mut acks = 0;
        while acks < count {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => acks += 1,
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    for number in 0..count {
        let mut delivery =
            kairan_tests::chain_delivery(&tree, &advisory(&format!("flood-{number}"), now), &[], now);
        delivery.advisory = kairan_protocol::Envelope::sign(
            kairan_protocol::envelope::ADVISORY_TYPE,
            advisory(&format!("flood-{number}"), now).to_payload(),
            &[&attacker],
        );
        client
            .publish(ingest_of("jp", "rogue"), rumqttc::QoS::AtLeastOnce, false, delivery.to_json())
            .await
            .expect("queued");
    }
    // A genuine advisory published in the middle of the flood's backlog still arrives.
    still_serving(&mut tree, &mut expected, "during-flood").await;
    let _ = tokio::time::timeout(SETTLE, poller).await;
    // Every forgery was refused with its reason (none dropped unrecorded, none stored), and
    // the refusals were throttled: they took at least (count - burst) / rate seconds.
    wait_rejection(&tree, 0, "unknown_signer", count).await;
    still_serving(&mut tree, &mut expected, "after-flood").await;
    tree.shutdown().await.expect("clean shutdown");
}
