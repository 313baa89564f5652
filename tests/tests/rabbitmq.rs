//! RabbitMQ (3.10, its MQTT plugin) as the external broker of the district and the
//! prefectural level, configured by `kairan broker rabbitmq-config`'s generator from the members.
//! `.ci/run` sets `KAIRAN_REQUIRE_RABBITMQ=1`, so a missing RabbitMQ fails these tests there;
//! elsewhere they are skipped with a printed notice. Each RabbitMQ node takes about ten seconds
//! to boot, so each test starts as few as it needs.
//!
//! What RabbitMQ 3.10 does differently and these tests pin down (`docs/rabbitmq.md`):
//! retained messages are not delivered through wildcard subscriptions (a child joining late gets
//! its parent's trust bundle and heads from its signed catch-up pages instead); a forbidden
//! subscribe or publish closes the connection.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, Packet, QoS, SubscribeReasonCode};

use kairan_node::harness::hierarchy::{Hierarchy, HierarchyBuilder, Level};
use kairan_node::mqtt::{BrokerAddr, Credentials};
use kairan_node::store::Store;
use kairan_node::topics;
use kairan_protocol::cert::ROOT_ISSUER;
use kairan_protocol::{Digest, Revocation, Scope, TrustBundle};
use kairan_tests::{RabbitMq, advisory};

const SETTLE: Duration = Duration::from_secs(60);

/// What a subscription attempt came to.
#[derive(Debug, PartialEq, Eq)]
enum Subscribed {
    /// Acknowledged; the topics of the messages received within the wait.
    Granted(Vec<String>),
    /// Refused: a failure code in SUBACK, or the connection closed.
    Refused(String),
}

/// Connects as `credentials` with `client_id`, subscribes to `filter` and collects what
/// arrives within `wait` of the acknowledgement.
async fn try_subscribe(
    addr: &BrokerAddr,
    credentials: &Credentials,
    client_id: &str,
    filter: &str,
    wait: Duration,
) -> Subscribed {
    let options = kairan_node::mqtt::client::client_options(client_id, addr, Some(credentials), true, false);
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    if let Err(error) = client.try_subscribe(filter, QoS::AtLeastOnce) {
        return Subscribed::Refused(format!("queue subscribe: {error}"));
    }
    let mut granted_at: Option<Instant> = None;
    let mut received = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if granted_at.is_some_and(|at| at.elapsed() > wait) || Instant::now() > deadline {
            break;
        }
        match tokio::time::timeout(Duration::from_millis(200), eventloop.poll()).await {
            Err(_) => {}
            Ok(Ok(Event::Incoming(Packet::SubAck(ack)))) => {
                if ack.return_codes.iter().any(|code| matches!(code, SubscribeReasonCode::Failure)) {
                    return Subscribed::Refused("SUBACK failure".into());
                }
                granted_at = Some(Instant::now());
            }
            Ok(Ok(Event::Incoming(Packet::Publish(publish)))) => received.push(publish.topic),
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return Subscribed::Refused(format!("connection closed: {error}")),
        }
    }
    let _ = client.try_disconnect();
    match granted_at {
        Some(_) => Subscribed::Granted(received),
        None => Subscribed::Refused("no SUBACK".into()),
    }
}

fn expected_by_scope(tree: &Hierarchy, published: &[(Digest, Scope)], clinic: usize) -> BTreeSet<Digest> {
    published.iter().filter(|(_, s)| tree.clinics[clinic].config.scope.overlaps(s)).map(|(d, _)| *d).collect()
}

fn clinic_has_trust(tree: &Hierarchy, index: usize) -> bool {
    let handle = tree.clinics[index].handle.as_ref().expect("clinic running");
    handle.store().blob("trust_bundle").ok().flatten().is_some()
}

/// A root revocation of a certificate nobody uses: a trust update that changes no delivery.
fn unrelated_revocation(tree: &Hierarchy) -> TrustBundle {
    let key = kairan_protocol::SecretKey::from_seed(&[0x42; 32]).expect("key");
    let now = tree.now();
    let window = (now.plus_secs(-60), now.plus_secs(3600));
    let jp = Scope::parse("jp").expect("scope");
    let cert = kairan_protocol::Certificate::for_key(
        "retired",
        ROOT_ISSUER,
        "retired-origin",
        key.public(),
        kairan_protocol::Role::Origin,
        &jp,
        window,
    )
    .sign(&[&tree.roots[0], &tree.roots[1]]);
    let revocation = Revocation::of_cert(&cert, ROOT_ISSUER, 1, now, now, "retired")
        .expect("certificate")
        .sign(&[&tree.roots[0], &tree.roots[2]]);
    TrustBundle { certs: vec![cert], revocations: vec![revocation], ..TrustBundle::default() }
}

async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + SETTLE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_levels_deliver_by_scope_carry_trust_and_hold_members_to_their_rows() {
    let (Some(prefecture_broker), Some(district_broker)) =
        (RabbitMq::prepare_if_available(), RabbitMq::prepare_if_available())
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tree = HierarchyBuilder::new(dir.path())
        .prefectures(2)
        .districts_per_prefecture(1)
        .clinics_per_district(2)
        .external_broker(Level::Prefecture, prefecture_broker)
        .external_broker(Level::District, district_broker)
        .start()
        .await
        .expect("tree starts");
    tree.wait_subscribed(SETTLE).await.expect("subscribed");

    // Deliveries reach exactly the clinics in scope, once.
    let now = tree.now();
    let mut published: Vec<(Digest, Scope)> = Vec::new();
    let chuo_scope = tree.clinics[0].config.scope.to_string();
    for (scope, id) in [("jp", "n-1"), ("jp/27", "osaka-1"), (chuo_scope.as_str(), "district-1")] {
        let (bytes, digest) = tree.sign_next(advisory(scope, id, now));
        tree.publish_raw(bytes).await.expect("published");
        published.push((digest, Scope::parse(scope).expect("scope")));
    }
    let expected = |clinic: usize| expected_by_scope(&tree, &published, clinic);
    tree.wait_for_inboxes(&expected, SETTLE).await.expect("inboxes converge");
    for index in 0..tree.clinics.len() {
        let records = tree.clinics[index].handle.as_ref().expect("running").store().all().expect("inbox");
        assert_eq!(records.len(), expected(index).len(), "each advisory once");
    }

    // A trust update flows live through the RabbitMQ levels to every clinic.
    tree.push_trust(unrelated_revocation(&tree).to_json()).await.expect("pushed");
    wait_until("every clinic holds the trust update", || {
        (0..tree.clinics.len()).all(|index| clinic_has_trust(&tree, index))
    })
    .await;

    // A member reads only its rows: clinic 0 on its district's RabbitMQ, with the clinics
    // stopped (a connection under a running client's id would take over its session).
    let genuine = published[0].0;
    let stored =
        tree.clinics[1].handle.as_ref().expect("clinic").store().get(&genuine).expect("get").expect("held");
    tree.stop_clinic(0).await.expect("clinic stops");
    tree.stop_clinic(1).await.expect("clinic stops");
    let clinic = tree.clinics[0].config.clone();
    let sibling = tree.clinics[1].config.id.clone();
    let district = tree.relays[tree.clinics[0].district].config_parts.id.clone();
    let credentials = clinic.credentials.clone().expect("credentials");
    let wait = Duration::from_millis(500);
    let own = topics::sync_response(&district, &clinic.id);
    assert!(
        matches!(
            try_subscribe(&clinic.addr, &credentials, &clinic.id, &own, wait).await,
            Subscribed::Granted(_)
        ),
        "its own answer topic"
    );
    for forbidden in [
        topics::sync_response(&district, &sibling),
        format!("{}/#", topics::deliveries_root(&district)),
        "#".to_owned(),
        topics::sync_request_filter(&district),
    ] {
        let outcome = try_subscribe(&clinic.addr, &credentials, &clinic.id, &forbidden, wait).await;
        assert!(matches!(outcome, Subscribed::Refused(_)), "{forbidden}: {outcome:?}");
    }
    // Under another client id it cannot subscribe at all (its queues are named by client id).
    let outcome = try_subscribe(&clinic.addr, &credentials, &sibling, &own, wait).await;
    assert!(matches!(outcome, Subscribed::Refused(_)), "another's client id: {outcome:?}");
    // A wrong password is refused.
    let wrong = Credentials { username: clinic.id.clone(), password: "not-the-password".into() };
    let outcome = try_subscribe(&clinic.addr, &wrong, &clinic.id, &own, wait).await;
    assert!(matches!(outcome, Subscribed::Refused(_)), "wrong password: {outcome:?}");

    // A member writes only its rows: a forged delivery into the district's delivery topic,
    // and a request in the sibling's name, are refused by the broker. (Forged, not a replayed
    // genuine one: a replay would count as a duplicate, which the clinics' catch-up after
    // their restart may also produce; a refusal of a forgery could only come from this.)
    let delivery_topic = topics::deliveries(&district, &clinic.scope.to_string());
    let mut forged = stored.delivery.to_vec();
    if let Some(byte) = forged.iter_mut().rev().find(|b| b.is_ascii_alphanumeric()) {
        *byte = if *byte == b'A' { b'B' } else { b'A' };
    }
    for (topic, bytes) in [
        (delivery_topic, forged),
        (topics::sync_request(&district, &sibling), b"{\"after\":0,\"scope\":\"jp\",\"limit\":1}".to_vec()),
    ] {
        let refused = kairan_node::publish::publish_acked(
            &clinic.addr,
            None,
            Some(&credentials),
            &topic,
            bytes,
            Duration::from_secs(5),
        )
        .await;
        assert!(refused.is_err(), "RabbitMQ let a clinic publish on {topic}");
    }
    tree.start_clinic(0).await.expect("clinic starts");
    tree.start_clinic(1).await.expect("clinic starts");
    tree.wait_subscribed(SETTLE).await.expect("subscribed");
    tokio::time::sleep(Duration::from_millis(300)).await;
    for index in 0..tree.clinics.len() {
        let counters = tree.clinics[index].handle.as_ref().expect("clinic").counters().await;
        assert_eq!(counters.rejected, 0, "nothing the clinic published reached a clinic");
    }

    // Still serving afterwards.
    let (bytes, digest) = tree.sign_next(advisory("jp", "after", tree.now()));
    tree.publish_raw(bytes).await.expect("published");
    published.push((digest, Scope::parse("jp").expect("scope")));
    let expected = |clinic: usize| expected_by_scope(&tree, &published, clinic);
    tree.wait_for_inboxes(&expected, SETTLE).await.expect("still serving");
    tree.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clinic_joining_a_rabbitmq_district_late_gets_trust_and_heads_from_catch_up() {
    let Some(district_broker) = RabbitMq::prepare_if_available() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tree = HierarchyBuilder::new(dir.path())
        .prefectures(1)
        .districts_per_prefecture(1)
        .clinics_per_district(2)
        .start_clinics(false)
        .external_broker(Level::District, district_broker)
        .start()
        .await
        .expect("tree starts");
    tree.wait_subscribed(SETTLE).await.expect("relays subscribed");
    let district = tree.clinics[0].district;

    // Before any clinic ever subscribed: an advisory, a trust update, and a head that names a
    // second advisory which is withheld. The district keeps its trust and the head retained
    // on RabbitMQ, which a wildcard subscription never receives.
    let (first, first_digest) = tree.sign_next(advisory("jp", "first", tree.now()));
    tree.publish_raw(first).await.expect("published");
    tree.push_trust(unrelated_revocation(&tree).to_json()).await.expect("pushed");
    let (withheld, withheld_digest) = tree.sign_next(advisory("jp", "withheld", tree.now()));
    tree.publish_head(Duration::from_secs(600)).await.expect("head published");
    wait_until("the district holds the advisory and the trust update", || {
        let store = tree.relays[district].handle.as_ref().expect("district").store();
        store.get(&first_digest).ok().flatten().is_some()
            && store.blob("trust_bundle").ok().flatten().is_some()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    for index in 0..tree.clinics.len() {
        tree.start_clinic(index).await.expect("clinic starts");
    }
    tree.wait_for_inboxes(|_| BTreeSet::from([first_digest]), SETTLE).await.expect("caught up");
    wait_until("every clinic holds the trust update", || {
        (0..tree.clinics.len()).all(|index| clinic_has_trust(&tree, index))
    })
    .await;
    // The head came with the catch-up page: each clinic knows the second advisory is missing.
    let deadline = Instant::now() + SETTLE;
    for clinic in &tree.clinics {
        loop {
            let counters = clinic.handle.as_ref().expect("clinic").counters().await;
            if counters.gaps_reported >= 1 {
                break;
            }
            assert!(Instant::now() < deadline, "{} never learned the head", clinic.config.id);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    tree.publish_raw(withheld).await.expect("published");
    tree.wait_for_inboxes(|_| BTreeSet::from([first_digest, withheld_digest]), SETTLE)
        .await
        .expect("released");
    tree.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rabbitmq_district_loses_nothing_when_its_relay_a_clinic_or_the_broker_goes_down() {
    let Some(district_broker) = RabbitMq::prepare_if_available() else {
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
    let district = tree.clinics[0].district;
    let mut published = BTreeSet::new();
    for number in 0..24 {
        match number {
            4 => tree.stop_clinic(0).await.expect("clinic stops"),
            8 => tree.stop_relay(district).await.expect("district stops"),
            12 => tree.restart_relay(district).await.expect("district restarts"),
            16 => {
                // SIGKILL of the RabbitMQ node under both districts, and a restart.
                let broker = tree.external.get_mut(&Level::District).and_then(|b| b.as_rabbitmq_mut());
                broker.expect("rabbitmq").restart().expect("rabbitmq restarts");
            }
            20 => tree.start_clinic(0).await.expect("clinic restarts"),
            _ => {}
        }
        let (bytes, digest) = tree.sign_next(advisory("jp", &format!("m-{number}"), tree.now()));
        tree.publish_raw(bytes).await.expect("published");
        published.insert(digest);
    }
    tree.wait_for_inboxes(|_| published.clone(), Duration::from_secs(120)).await.expect("nothing lost");
    for clinic in &tree.clinics {
        let records = clinic.handle.as_ref().expect("running").store().all().expect("inbox");
        assert_eq!(records.len(), published.len(), "{} holds each advisory once", clinic.config.id);
    }
    tree.shutdown().await.expect("clean shutdown");
}
