//! The broker-side attacks of the authorization issue (client ids, reads and writes outside a
//! member's row, retained messages, catch-up topics) against a tree whose relays use Mosquitto,
//! configured from the members as `kairan broker mosquitto-config` writes it: password file,
//! ACL, `use_username_as_clientid`. Mosquitto answers differently from the embedded broker —
//! it acknowledges a publish its ACL drops (MQTT 3.1.1 gives it no way to refuse one) and
//! gives a connecting member its own username as client id instead of refusing another — so
//! these tests assert what reaches the victims. `KAIRAN_REQUIRE_MOSQUITTO=1` (CI) makes a
//! missing Mosquitto a failure.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kairan_node::authz::{Grants, MemberKind, Principal};
use kairan_node::harness::external::ExternalBroker;
use kairan_node::harness::hierarchy::{Hierarchy, HierarchyBuilder, Level};
use kairan_node::machine::serve::{REPEAT_WINDOW_MS, REQUEST_BURST, REQUESTS_PER_SEC};
use kairan_node::mqtt::{BrokerAddr, Credentials};
use kairan_node::store::Store;
use kairan_node::topics;
use kairan_protocol::sync::{SyncRequest, SyncResponse, verify_page};
use kairan_protocol::{Delivery, Digest, RevocationSet, Scope, Tlp, VerifyContext};
use kairan_tests::Mosquitto;
use kairan_tests::checks::{
    SETTLE, a_year_from, chain_of, clinic, clinic_index, key, metric, mint, publish, relay, root_statement,
    still_delivers, stored_trust, sync_cursor, wait_delivered, wait_until,
};
use kairan_tests::member::{Member, Published, Subscribed};

/// National → Tokyo → chuo, minato → two clinics each, every level on its own Mosquitto
/// (both districts share one); metrics on. `None` when Mosquitto is missing (and not required).
async fn tree(dir: &std::path::Path) -> Option<Hierarchy> {
    let mut builder = HierarchyBuilder::new(dir)
        // Plaintext on loopback: the attacks are on authorization, the same with TLS; the
        // member clients here are bare MQTT (TLS has its own tests in tls.rs).
        .insecure_plaintext(true)
        .prefectures(1)
        .districts_per_prefecture(2)
        .clinics_per_district(2)
        .with_metrics();
    for level in [Level::National, Level::Prefecture, Level::District] {
        builder = builder.external_broker(level, Mosquitto::prepare_if_available(false)?);
    }
    let tree = builder.start().await.expect("tree starts");
    tree.wait_subscribed(SETTLE).await.expect("subscribed");
    Some(tree)
}

fn broker_of(tree: &Hierarchy, id: &str) -> BrokerAddr {
    relay(tree, id).broker.clone().unwrap_or_else(|| panic!("{id} has no broker"))
}

fn member(tree: &Hierarchy, id: &str) -> Credentials {
    tree.credentials_of(id).expect("a member")
}

fn request(after: u64, scope: &str) -> Vec<u8> {
    SyncRequest {
        after,
        scope: Scope::parse(scope).expect("scope"),
        limit: 512,
        trust: None,
        tlog: None,
        prove: Vec::new(),
    }
    .to_json()
}

/// Resident memory of a Mosquitto process, in KiB.
fn rss_kib(broker: &ExternalBroker) -> u64 {
    let ExternalBroker::Mosquitto(mosquitto) = broker else { panic!("the district broker is Mosquitto") };
    let pid = mosquitto.pid().expect("mosquitto runs");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// A subscription outside a member's row. Mosquitto 2.0.11 grants it in the SUBACK (return
/// code 1) and then delivers nothing on it that the ACL does not let the member read; the
/// tests check that with [`assert_within_row`] once traffic has flowed.
async fn subscribe_outside_row(member: &mut Member, filter: &str) {
    let outcome = member.subscribe(filter).await;
    assert!(matches!(outcome, Subscribed::Granted | Subscribed::Refused), "{filter}: {outcome:?}");
}

/// What child `id` (`kind`, `scope`) may read on `node`'s broker.
fn row(node: &str, id: &str, kind: MemberKind, scope: &str) -> Vec<String> {
    let principal =
        Principal::Member { id: id.into(), kind, scope: Some(Scope::parse(scope).expect("scope")) };
    Grants::of(node, node == "jp", &principal).read
}

/// Every message received lies within the member's row.
fn assert_within_row(received: &[rumqttc::Publish], read: &[String]) {
    for message in received {
        let topic = message.topic.to_string();
        assert!(read.iter().any(|filter| topics::matches(filter, &topic)), "read outside its row: {topic}");
    }
}

// ---------------------------------------------------------------------------------------------
// (5) client ids
// ---------------------------------------------------------------------------------------------

/// Attack 5 on Mosquitto: a member naming another's client id gets its own session
/// (`use_username_as_clientid`), never the other's: the national's ingest client keeps
/// storing what the origin publishes, a district's publisher keeps publishing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_attack_5_a_client_id_names_no_one_but_its_member() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(mut tree) = tree(dir.path()).await else { return };
    let tokyo = tree.relay_index("jp-13").expect("tokyo");
    let c1 = clinic_index(&tree, "jp-13-chuo-c1");
    // The taken-over machines' own nodes stop (their sessions are the attackers' own).
    tree.stop_clinic(c1).await.expect("stop clinic");
    tree.stop_relay(tokyo).await.expect("stop prefecture");
    let national = broker_of(&tree, "jp");
    let mut impostors = Vec::new();
    for client_id in ["jp~ingest", "jp~out", "mhlw", "admin"] {
        let mut impostor =
            Member::connect(&national, &member(&tree, "jp-13"), client_id).await.expect("connects");
        // It is the prefecture, whatever it called itself: the ingest topics are not its row.
        subscribe_outside_row(&mut impostor, &topics::ingest_filter("jp")).await;
        impostors.push(impostor);
    }
    let district = broker_of(&tree, "jp-13-chuo");
    for client_id in ["jp-13-chuo~out", "jp-13-chuo-c2", "jp-13-minato~out"] {
        let impostor =
            Member::connect(&district, &member(&tree, "jp-13-chuo-c1"), client_id).await.expect("connects");
        impostors.push(impostor);
    }
    // The national stores the origin's advisory; minato's clinics (under a publisher a clinic
    // named) and chuo's other clinic get the district's forwards.
    let digest = publish(&mut tree, "jp", "during-attack-5").await;
    wait_until("the national stores it", || relay(&tree, "jp").store().contains(&digest).expect("store"))
        .await;
    for impostor in &mut impostors {
        let got = impostor.received(Duration::from_millis(100), Duration::from_millis(300)).await;
        assert!(
            got.is_empty(),
            "an impostor received {:?}",
            got.iter().map(|p| p.topic.to_string()).collect::<Vec<_>>()
        );
    }
    for impostor in impostors {
        impostor.leave().await;
    }
    tree.restart_relay(tokyo).await.expect("restart");
    tree.start_clinic(c1).await.expect("restart");
    tree.wait_subscribed(SETTLE).await.expect("subscribed");
    wait_delivered(&tree, digest, "jp").await;
    still_delivers(&mut tree, "jp", "after-attack-5").await;
    tree.shutdown().await.expect("clean shutdown");
}

// ---------------------------------------------------------------------------------------------
// (1, 7) reads and writes outside a member's row, retained messages
// ---------------------------------------------------------------------------------------------

/// Attacks 7 (and the broker half of 1) on Mosquitto: reads outside the row are refused;
/// writes outside it are dropped (acknowledged, delivered to no one, retained nowhere);
/// the one topic a member writes keeps at most one retained message, so a flood does not
/// grow the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_attack_7_members_read_and_write_only_their_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(mut tree) = tree(dir.path()).await else { return };
    let tokyo_key = tree.relay_key(1).expect("key");
    let retired = mint(
        ("jp-13", &tokyo_key),
        "retired",
        key("retired").public(),
        kairan_protocol::Role::Clinic,
        "jp/13",
        a_year_from(tree.now()),
    );
    tree.push_trust(root_statement(&tree, &retired, &chain_of(&tree, 1), tree.now()).to_json())
        .await
        .expect("pushed");
    publish(&mut tree, "jp", "with-a-head").await;
    tree.publish_head(Duration::from_secs(3600)).await.expect("head");
    wait_until("the clinics hold the bundle", || {
        tree.clinics.iter().filter_map(|c| c.handle.as_ref()).all(|c| !stored_trust(c).revocations.is_empty())
    })
    .await;
    let c1 = clinic_index(&tree, "jp-13-chuo-c1");
    tree.stop_clinic(c1).await.expect("stop clinic");
    let district = broker_of(&tree, "jp-13-chuo");
    let attacker_id = member(&tree, "jp-13-chuo-c1");
    let mut attacker = Member::connect_as(&district, &attacker_id).await.expect("connects");
    for filter in [
        "#".to_owned(),
        "kairan/#".to_owned(),
        "$SYS/#".to_owned(),
        format!("{}/#", topics::deliveries_root("jp-13-chuo")),
        format!("{}/#", topics::deliveries_root("jp-13-minato")),
        format!("{}/#", topics::trust("jp-13-minato")),
        topics::sync_response("jp-13-chuo", "jp-13-chuo-c2"),
        topics::sync_response_filter("jp-13-chuo"),
        topics::sync_request_filter("jp-13-chuo"),
    ] {
        subscribe_outside_row(&mut attacker, &filter).await;
    }
    for filter in topics::delivery_filters("jp-13-chuo", &Scope::parse("jp/13/chuo").expect("scope")) {
        assert_eq!(attacker.subscribe(&filter).await, Subscribed::Granted, "its own row: {filter}");
    }
    // The other district on the same Mosquitto gets an AMBER+STRICT advisory: not this member.
    let mut strict = kairan_tests::advisory("jp/13/minato", "minato-strict", tree.now());
    strict.tlp = Tlp::AmberStrict;
    let (bytes, strict_digest) = tree.sign_next_sealed(strict);
    tree.publish_raw(bytes).await.expect("published");
    wait_delivered(&tree, strict_digest, "jp/13/minato").await;
    let seen = attacker.received(Duration::from_millis(500), Duration::from_secs(2)).await;
    assert_within_row(&seen, &row("jp-13-chuo", "jp-13-chuo-c1", MemberKind::Clinic, "jp/13/chuo"));
    let seen: BTreeSet<Digest> = seen
        .iter()
        .filter_map(|p| Delivery::from_json(&p.payload).ok())
        .map(|d| Digest::of(&d.advisory.payload))
        .collect();
    assert!(!seen.contains(&strict_digest), "a chuo clinic read minato's AMBER+STRICT advisory");
    attacker.leave().await;

    // Writes outside the row: clearing retained trust pieces and heads, a forged delivery.
    let mut reader = Member::connect_as(&district, &attacker_id).await.expect("connects");
    let retained = retained_state(&mut reader).await;
    reader.leave().await;
    assert!(retained.contains(&topics::heads("jp-13-chuo", &mhlw_jp())), "{retained:?}");
    let mut writer = Member::connect_as(&district, &attacker_id).await.expect("connects");
    for topic in &retained {
        assert_eq!(
            writer.publish(topic, Vec::new(), true).await,
            Published::Acked,
            "Mosquitto acknowledges and drops"
        );
    }
    let forged = kairan_tests::chain_delivery(
        &tree,
        &kairan_tests::advisory("jp", "forged", tree.now()),
        &[0, 1, 2],
        tree.now(),
    );
    let mut tampered = forged.clone();
    tampered.advisory.payload.push(b' ');
    assert_eq!(
        writer.publish(&topics::deliveries("jp-13-chuo", "jp"), tampered.to_json(), false).await,
        Published::Acked
    );
    writer.leave().await;
    let mut reader = Member::connect_as(&district, &attacker_id).await.expect("connects");
    assert_eq!(retained_state(&mut reader).await, retained, "retained state changed");
    reader.leave().await;
    let c2 = clinic(&tree, "jp-13-chuo-c2");
    assert!(c2.store().rejections().expect("rejections").is_empty(), "the forged delivery reached a clinic");

    // A district (a member of Tokyo's Mosquitto) pushing a revocation at its parent's trust and
    // control topics: dropped, Tokyo never sees it.
    let chuo = tree.relay_index("jp-13-chuo").expect("chuo");
    let minted = mint(
        ("jp-13-chuo", &tree.relay_key(chuo).expect("key")),
        "made-up",
        tree.origin.key.public(),
        kairan_protocol::Role::Clinic,
        "jp/13/chuo",
        a_year_from(tree.now()),
    );
    let hostile = kairan_tests::checks::relay_statement(&tree, chuo, &minted, &[], (tree.now(), tree.now()));
    tree.stop_relay(chuo).await.expect("stop district");
    let prefecture = broker_of(&tree, "jp-13");
    let mut district_attacker =
        Member::connect_as(&prefecture, &member(&tree, "jp-13-chuo")).await.expect("connects");
    for (topic, retain) in [
        (topics::trust_piece("jp-13", "0000"), true),
        (topics::trust("jp-13"), false),
        (topics::control("jp-13"), false),
    ] {
        assert_eq!(district_attacker.publish(&topic, hostile.to_json(), retain).await, Published::Acked);
    }
    district_attacker.leave().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let tokyo = relay(&tree, "jp-13");
    assert_eq!(stored_trust(tokyo).revocations.len(), 1, "Tokyo took the district's statement");
    assert_eq!(metric(tokyo, "kairan_trust_refused_total{reason=\"revocation_not_authorized\"}").await, 0.0);
    tree.restart_relay(chuo).await.expect("restart district");

    // A retained flood: on 200 topics outside the row, and 200 times on its own request topic.
    let broker = tree.external.get(&Level::District).expect("district mosquitto");
    let before = rss_kib(broker);
    let mut flooder = Member::connect_as(&district, &attacker_id).await.expect("connects");
    let big = vec![b'x'; 100 * 1024];
    let mut acked = 0;
    for n in 0..200 {
        let topic = format!("{}/flood-{n}", topics::trust("jp-13-chuo"));
        acked += flooder.publish_many(&topic, vec![big.clone()], true).await;
    }
    acked += flooder
        .publish_many(&topics::sync_request("jp-13-chuo", "jp-13-chuo-c1"), vec![big.clone(); 200], true)
        .await;
    flooder.leave().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib(tree.external.get(&Level::District).expect("district mosquitto"));
    println!("Mosquitto RSS {before} KiB before, {after} KiB after {acked} retained publishes of 100 KiB");
    assert!(after < before + 16 * 1024, "the broker grew from {before} to {after} KiB");
    tree.start_clinic(c1).await.expect("restart clinic");
    tree.wait_subscribed(SETTLE).await.expect("subscribed");
    still_delivers(&mut tree, "jp", "after-attack-7").await;
    tree.shutdown().await.expect("clean shutdown");
}

/// The retained trust pieces and heads a clinic of chuo reads on its district's broker.
async fn retained_state(clinic: &mut Member) -> BTreeSet<String> {
    assert_eq!(clinic.subscribe(&format!("{}/#", topics::trust("jp-13-chuo"))).await, Subscribed::Granted);
    let chuo = kairan_protocol::Scope::parse("jp/13/chuo").expect("scope");
    for filter in topics::heads_filters("jp-13-chuo", &chuo) {
        assert_eq!(clinic.subscribe(&filter).await, Subscribed::Granted, "{filter}");
    }
    let messages = clinic.received(Duration::from_millis(500), SETTLE).await;
    messages.into_iter().filter(|p| p.retain).map(|p| p.topic.to_string()).collect()
}

// ---------------------------------------------------------------------------------------------
// (6) catch-up topics
// ---------------------------------------------------------------------------------------------

/// Attack 6 on Mosquitto: the answer has the asking member's scope whatever it asks; it
/// cannot read, ask for or answer a sibling; a flood of requests draws a bounded answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_attack_6_catch_up_answers_the_authenticated_member_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(mut tree) = tree(dir.path()).await else { return };
    let everyone = publish(&mut tree, "jp", "for-everyone").await;
    let ours = publish(&mut tree, "jp/13/chuo", "for-chuo").await;
    let mut red = kairan_tests::advisory("jp/13/minato", "for-minato-only", tree.now());
    red.tlp = Tlp::Red;
    let (bytes, theirs) = tree.sign_next_sealed(red);
    tree.publish_raw(bytes).await.expect("published");
    wait_delivered(&tree, theirs, "jp/13/minato").await;
    wait_delivered(&tree, ours, "jp/13/chuo").await;
    let chuo = tree.relay_index("jp-13-chuo").expect("chuo");
    tree.stop_relay(chuo).await.expect("stop");
    let broker = broker_of(&tree, "jp-13");
    let credentials = member(&tree, "jp-13-chuo");
    let mut attacker = Member::connect_as(&broker, &credentials).await.expect("connects");
    assert_eq!(attacker.subscribe(&topics::sync_response("jp-13", "jp-13-chuo")).await, Subscribed::Granted);
    for filter in [topics::sync_response("jp-13", "jp-13-minato"), topics::sync_response_filter("jp-13")] {
        subscribe_outside_row(&mut attacker, &filter).await;
    }
    // Once the repeat window has passed (the district's own node may just have asked the same).
    tokio::time::sleep(Duration::from_millis(REPEAT_WINDOW_MS as u64 + 500)).await;
    assert_eq!(
        attacker.publish(&topics::sync_request("jp-13", "jp-13-chuo"), request(0, "jp"), false).await,
        Published::Acked
    );
    let answer = attacker.next_message(SETTLE).await.expect("an answer");
    let ctx =
        VerifyContext { anchors: &tree.anchors, revocations: &RevocationSet::default(), now: tree.now() };
    let page = verify_page(&answer.payload, "jp-13", "jp-13-chuo", ctx).expect("signed for chuo");
    let got: BTreeSet<Digest> =
        page.value().deliveries.iter().map(|d| Digest::of(&d.advisory.payload)).collect();
    assert_eq!(got, BTreeSet::from([everyone, ours]), "never {theirs}");
    // In the sibling's name, under a made-up name, as the sibling's parent: dropped.
    let minato_before = sync_cursor(relay(&tree, "jp-13-minato"));
    let forged = SyncResponse {
        after: 0,
        scanned_upto: u64::MAX - 1,
        last_relay_seq: u64::MAX - 1,
        ..SyncResponse::default()
    };
    for (topic, bytes) in [
        (topics::sync_request("jp-13", "jp-13-minato"), request(0, "jp")),
        (topics::sync_request("jp-13", "made-up"), request(0, "jp")),
        (topics::sync_response("jp-13", "jp-13-minato"), forged.to_json()),
    ] {
        assert_eq!(attacker.publish(&topic, bytes, false).await, Published::Acked, "{topic}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let minato = relay(&tree, "jp-13-minato");
    assert_eq!(
        metric(minato, "kairan_catchup_pages_refused_total").await,
        0.0,
        "the forged page reached minato"
    );
    assert!(
        sync_cursor(minato) >= minato_before && sync_cursor(minato) < 1_000_000,
        "minato's cursor moved off"
    );
    assert_eq!(
        metric(relay(&tree, "jp-13"), "kairan_relay_sync_requests_total{outcome=\"other\"}").await,
        0.0,
        "a request in another name reached Tokyo"
    );
    // 300 requests at once: bounded by the member's rate.
    let requests: Vec<Vec<u8>> = (0..300u64).map(|n| request(n % 10, "jp")).collect();
    let started = Instant::now();
    let _ = attacker.received(Duration::from_millis(100), Duration::from_millis(200)).await;
    attacker.publish_many(&topics::sync_request("jp-13", "jp-13-chuo"), requests, false).await;
    let answers = attacker.received(Duration::from_secs(2), SETTLE).await;
    let elapsed = started.elapsed();
    assert_within_row(&answers, &row("jp-13", "jp-13-chuo", MemberKind::Relay, "jp/13/chuo"));
    let bytes: usize = answers.iter().map(|a| a.payload.len()).sum();
    println!("Mosquitto: 300 requests drew {} answers ({bytes} bytes) in {elapsed:?}", answers.len());
    let allowed = REQUEST_BURST as f64 + REQUESTS_PER_SEC as f64 * elapsed.as_secs_f64() + 1.0;
    assert!((answers.len() as f64) <= allowed, "{} answers, at most {allowed:.0}", answers.len());
    attacker.leave().await;
    tree.restart_relay(chuo).await.expect("restart");
    tree.wait_subscribed(SETTLE).await.expect("subscribed");
    still_delivers(&mut tree, "jp", "after-attack-6").await;
    tree.shutdown().await.expect("clean shutdown");
}

/// The chain of the origin's advisories for all of Japan.
fn mhlw_jp() -> kairan_protocol::sequence::ChainId {
    kairan_protocol::sequence::ChainId::new("mhlw", kairan_protocol::Scope::parse("jp").expect("scope"))
}
