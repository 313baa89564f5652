//! Attacks 5–8 of the authorization issue — client ids, catch-up, what brokers let members do,
//! and the smaller ones — against a running tree over real MQTT with embedded brokers. Each
//! attacker is a plain MQTT client holding a member's real credentials (the member's own node
//! stopped first where the attacker takes its place: a machine taken over). The Mosquitto
//! variants are in `attacks_mosquitto.rs`; attacks 1–4 (trust) in `attacks_trust.rs`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kairan_node::harness::hierarchy::{Hierarchy, HierarchyBuilder};
use kairan_node::machine::serve::{REPEAT_WINDOW_MS, REQUEST_BURST, REQUESTS_PER_SEC};
use kairan_node::mqtt::{BrokerAddr, Credentials};
use kairan_node::store::Store;
use kairan_node::topics;
use kairan_protocol::sync::{SyncRequest, SyncResponse, parse_response, verify_page};
use kairan_protocol::{Delivery, Digest, RevocationSet, Scope, Tlp, VerifyContext};
use kairan_tests::checks::{
    SETTLE, chain_of, clinic, clinic_index, metric, publish, relay, root_statement, still_delivers,
    sync_cursor, wait_delivered, wait_metric, wait_until,
};
use kairan_tests::member::{Member, Published, Subscribed};

/// National → Tokyo → chuo, minato → two clinics each; embedded brokers, metrics on.
async fn tree(dir: &std::path::Path) -> Hierarchy {
    let tree = HierarchyBuilder::new(dir)
        // Plaintext on loopback: the attacks are on authorization, the same with TLS; the
        // member clients here are bare MQTT (TLS has its own tests in tls.rs).
        .insecure_plaintext(true)
        .prefectures(1)
        .districts_per_prefecture(2)
        .clinics_per_district(2)
        .extra_origins(&["rogue"])
        .with_metrics()
        .start()
        .await
        .expect("tree starts");
    tree.wait_subscribed(SETTLE).await.expect("subscribed");
    tree
}

/// The broker relay `id` runs for its children.
fn broker_of(tree: &Hierarchy, id: &str) -> BrokerAddr {
    relay(tree, id).broker.clone().unwrap_or_else(|| panic!("{id} has no broker"))
}

fn member(tree: &Hierarchy, id: &str) -> Credentials {
    tree.credentials_of(id).expect("a member")
}

/// Publishes an advisory of the tree's origin with this scope and TLP; waits until every clinic
/// in scope holds it.
async fn publish_tlp(tree: &mut Hierarchy, scope: &str, id: &str, tlp: Tlp) -> Digest {
    let mut advisory = kairan_tests::advisory(scope, id, tree.now());
    advisory.tlp = tlp;
    // RED and AMBER+STRICT travel sealed (issue 8): relays route them by their clear metadata.
    let (bytes, digest) =
        if tlp.must_be_sealed() { tree.sign_next_sealed(advisory) } else { tree.sign_next(advisory) };
    tree.publish_raw(bytes).await.expect("published");
    wait_delivered(tree, digest, scope).await;
    digest
}

/// A catch-up request as a child sends it (its scope as given).
fn request(after: u64, scope: &str, trust: Option<Digest>) -> Vec<u8> {
    SyncRequest {
        after,
        scope: Scope::parse(scope).expect("scope"),
        limit: 512,
        trust,
        tlog: None,
        prove: Vec::new(),
    }
    .to_json()
}

fn digests(page: &SyncResponse) -> BTreeSet<Digest> {
    page.deliveries.iter().map(|d| Digest::of(&d.advisory.payload)).collect()
}

// ---------------------------------------------------------------------------------------------
// (5) Client-id takeover
// ---------------------------------------------------------------------------------------------

/// Issue, attack 5: the embedded broker did not tie a client id to its username; a prefecture
/// member connected as the national's internal ingest client id received the origin's
/// advisories (which `kairan publish` reported acknowledged), and the national never stored them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_5_no_member_can_take_over_another_client_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tree = tree(dir.path()).await;
    let national = tree.national_broker().expect("national broker");
    let tokyo = member(&tree, "jp-13");
    // The prefecture's real password, under the names of the national's own clients, of the
    // origin and of the administrator: refused before any session is touched.
    for client_id in ["jp~ingest", "jp~out", "mhlw", "admin", "rogue"] {
        let refused = Member::connect(&national, &tokyo, client_id).await.map(|m| m.username);
        assert_eq!(refused, Err("connection refused: NotAuthorized".into()), "client id {client_id}");
    }
    // The internal clients' usernames are not members: no password of a member opens them.
    for username in ["jp~ingest", "jp~out"] {
        let impostor = Credentials { username: username.into(), password: tokyo.password.clone() };
        let refused = Member::connect_as(&national, &impostor).await.map(|m| m.username);
        assert_eq!(refused, Err("connection refused: BadUserNamePassword".into()), "{username}");
    }
    // On a district's broker: a clinic as its district's publisher, as its sibling, as the
    // district itself.
    let chuo_broker = broker_of(&tree, "jp-13-chuo");
    let c1 = member(&tree, "jp-13-chuo-c1");
    for client_id in ["jp-13-chuo~out", "jp-13-chuo-c2", "jp-13-chuo"] {
        let refused = Member::connect(&chuo_broker, &c1, client_id).await.map(|m| m.username);
        assert_eq!(refused, Err("connection refused: NotAuthorized".into()), "client id {client_id}");
    }
    // The victims never noticed: the national stores the origin's next advisory (the
    // acknowledgement `kairan publish` reports means it reached the national's own client),
    // and every clinic gets it.
    let digest = still_delivers(&mut tree, "jp", "after-attack-5").await;
    assert!(relay(&tree, "jp").store().contains(&digest).expect("store"));
    tree.shutdown().await.expect("clean shutdown");
}

// ---------------------------------------------------------------------------------------------
// (6) Catch-up trusted the child's word
// ---------------------------------------------------------------------------------------------

/// Issue, attack 6: the child name in the sync topic and the scope in the request were
/// self-declared: a district asked for scope `jp` and received another district's TLP:RED
/// advisory; a member answered a sibling's request with `scanned_upto = 2^64-2` and the
/// sibling never caught up again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_6_catch_up_answers_the_authenticated_member_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tree = tree(dir.path()).await;
    let everyone = publish_tlp(&mut tree, "jp", "for-everyone", Tlp::Green).await;
    let ours = publish_tlp(&mut tree, "jp/13/chuo", "for-chuo", Tlp::Amber).await;
    let theirs = publish_tlp(&mut tree, "jp/13/minato", "for-minato-only", Tlp::Red).await;
    let (chuo, tokyo) =
        (tree.relay_index("jp-13-chuo").expect("chuo"), tree.relay_index("jp-13").expect("tokyo"));
    tree.stop_relay(chuo).await.expect("stop");
    let broker = broker_of(&tree, "jp-13");
    let mut attacker = Member::connect_as(&broker, &member(&tree, "jp-13-chuo")).await.expect("connects");
    assert_eq!(attacker.subscribe(&topics::sync_response("jp-13", "jp-13-chuo")).await, Subscribed::Granted);
    for filter in [topics::sync_response("jp-13", "jp-13-minato"), topics::sync_response_filter("jp-13")] {
        assert_eq!(attacker.subscribe(&filter).await, Subscribed::Refused, "{filter}");
    }
    // It asks for the whole country: it gets its own scope's advisories, signed for it. (Once
    // the repeat window has passed: the district's own node may just have asked the same.)
    tokio::time::sleep(Duration::from_millis(REPEAT_WINDOW_MS as u64 + 500)).await;
    let outcome =
        attacker.publish(&topics::sync_request("jp-13", "jp-13-chuo"), request(0, "jp", None), false).await;
    assert_eq!(outcome, Published::Acked);
    let answer = attacker.next_message(SETTLE).await.expect("an answer");
    let ctx =
        VerifyContext { anchors: &tree.anchors, revocations: &RevocationSet::default(), now: tree.now() };
    let page = verify_page(&answer.payload, "jp-13", "jp-13-chuo", ctx).expect("signed for chuo");
    let page = page.value();
    assert_eq!(digests(page), BTreeSet::from([everyone, ours]), "never {theirs}");
    assert!(page.trust.is_none(), "no bundle to send yet");
    // It cannot ask in its sibling's name, nor answer its sibling.
    let forged = SyncResponse {
        after: 0,
        scanned_upto: u64::MAX - 1,
        last_relay_seq: u64::MAX - 1,
        ..SyncResponse::default()
    };
    let attempts = [
        (topics::sync_request("jp-13", "jp-13-minato"), request(0, "jp", None)),
        (topics::sync_response("jp-13", "jp-13-minato"), forged.to_json()),
        (topics::sync_request("jp-13", "made-up"), request(0, "jp", None)),
    ];
    for (topic, bytes) in attempts {
        let mut attacker = Member::connect_as(&broker, &member(&tree, "jp-13-chuo")).await.expect("connects");
        let outcome = attacker.publish(&topic, bytes, false).await;
        assert!(matches!(outcome, Published::Disconnected(_)), "{topic}: {outcome:?}");
    }
    // Should anything else publish there (a compromised broker: here the prefecture's own
    // publisher), the sibling checks the page's signature: unsigned, signed by the district's
    // key, or the parent's page for another child — all refused, the cursor unmoved.
    let minato = tree.relay_index("jp-13-minato").expect("minato");
    let cursor_before = sync_cursor(relay(&tree, "jp-13-minato"));
    let chuo_key = tree.relay_key(chuo).expect("key");
    let tokyo_key = tree.relay_key(tokyo).expect("key");
    let by_sibling =
        kairan_protocol::sync::sign_page(forged.clone(), "jp-13-minato", &chuo_key, &chain_of(&tree, chuo));
    let for_sibling =
        kairan_protocol::sync::sign_page(forged.clone(), "jp-13-chuo", &tokyo_key, &chain_of(&tree, tokyo));
    for page in [forged.clone(), by_sibling, for_sibling] {
        tree.inject(tokyo, &topics::sync_response("jp-13", "jp-13-minato"), page.to_json())
            .await
            .expect("injected");
    }
    wait_metric(relay(&tree, "jp-13-minato"), "kairan_catchup_pages_refused_total", 3.0).await;
    let after_forgeries = sync_cursor(relay(&tree, "jp-13-minato"));
    assert!(after_forgeries <= cursor_before.max(3), "cursor moved to {after_forgeries}");
    // The sibling still catches up: stopped, it misses an advisory, restarted, it fetches it.
    tree.stop_relay(minato).await.expect("stop");
    let missed = publish(&mut tree, "jp", "while-minato-was-down").await;
    tree.restart_relay(minato).await.expect("restart");
    tree.restart_relay(chuo).await.expect("restart");
    tree.wait_subscribed(SETTLE).await.expect("subscribed");
    wait_delivered(&tree, missed, "jp").await;
    let tokyo_log = relay(&tree, "jp-13").store().log_after(0, 10_000).expect("log").len() as u64;
    wait_until("minato's cursor reaches Tokyo's log end", || {
        sync_cursor(relay(&tree, "jp-13-minato")) == tokyo_log
    })
    .await;
    tree.shutdown().await.expect("clean shutdown");
}

/// Issue, attack 6 (rate): limits keyed on the made-up name in the topic, so 300 requests
/// (12 KB) drew 29 MB of answers. Now the name is the authenticated member's, each member has
/// its rate (burst 40, then 20/s), repeats of a page just answered are dropped, and the node
/// has a global answer budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_6_a_flood_of_catch_up_requests_draws_a_bounded_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tree = tree(dir.path()).await;
    for number in 0..10 {
        publish(&mut tree, "jp/13", &format!("backlog-{number}")).await;
    }
    let last = publish(&mut tree, "jp/13", "backlog-last").await;
    wait_delivered(&tree, last, "jp/13").await;
    // A bundle the parent holds, so that a request claiming to lack it draws it too.
    let retired = kairan_tests::checks::mint(
        ("jp-13", &tree.relay_key(1).expect("key")),
        "retired",
        kairan_tests::checks::key("retired").public(),
        kairan_protocol::Role::Clinic,
        "jp/13",
        kairan_tests::checks::a_year_from(tree.now()),
    );
    tree.push_trust(root_statement(&tree, &retired, &chain_of(&tree, 1), tree.now()).to_json())
        .await
        .expect("pushed");
    wait_until("Tokyo holds the bundle", || {
        !kairan_tests::checks::stored_trust(relay(&tree, "jp-13")).revocations.is_empty()
    })
    .await;
    let chuo = tree.relay_index("jp-13-chuo").expect("chuo");
    tree.stop_relay(chuo).await.expect("stop");
    let broker = broker_of(&tree, "jp-13");
    let mut attacker = Member::connect_as(&broker, &member(&tree, "jp-13-chuo")).await.expect("connects");
    assert_eq!(attacker.subscribe(&topics::sync_response("jp-13", "jp-13-chuo")).await, Subscribed::Granted);
    let requests: Vec<Vec<u8>> = (0..300u64).map(|n| request(n % 10, "jp", None)).collect();
    let request_bytes: usize = requests.iter().map(Vec::len).sum();
    let started = Instant::now();
    let acked = attacker.publish_many(&topics::sync_request("jp-13", "jp-13-chuo"), requests, false).await;
    assert_eq!(acked, 300, "the broker takes the member's requests on its own topic");
    let answers = attacker.received(Duration::from_secs(2), SETTLE).await;
    let elapsed = started.elapsed();
    let answer_bytes: usize = answers.iter().map(|a| a.payload.len()).sum();
    let with_bundle =
        answers.iter().filter(|a| parse_response(&a.payload).is_ok_and(|p| p.trust.is_some())).count();
    println!(
        "300 requests ({request_bytes} bytes) drew {} answers ({answer_bytes} bytes, {with_bundle} with the bundle) in {elapsed:?}",
        answers.len()
    );
    let allowed = REQUEST_BURST as f64 + REQUESTS_PER_SEC as f64 * elapsed.as_secs_f64() + 1.0;
    assert!((answers.len() as f64) <= allowed, "{} answers, at most {allowed:.0} allowed", answers.len());
    let tokyo = relay(&tree, "jp-13");
    assert!(metric(tokyo, "kairan_relay_sync_requests_total{outcome=\"rate_limited\"}").await > 0.0);
    // A request naming the bundle it holds gets no bundle.
    let held = tokyo.store().blob(kairan_node::store::TRUST_BLOB).expect("store").expect("bundle");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut attacker = Member::connect_as(&broker, &member(&tree, "jp-13-chuo")).await.expect("connects");
    assert_eq!(attacker.subscribe(&topics::sync_response("jp-13", "jp-13-chuo")).await, Subscribed::Granted);
    let knows = request(500, "jp", Some(Digest::of(&held)));
    assert_eq!(
        attacker.publish(&topics::sync_request("jp-13", "jp-13-chuo"), knows, false).await,
        Published::Acked
    );
    let answer = attacker.next_message(SETTLE).await.expect("an answer");
    assert!(parse_response(&answer.payload).expect("page").trust.is_none(), "it has the bundle already");
    // The sibling is still answered.
    tree.restart_relay(chuo).await.expect("restart");
    still_delivers(&mut tree, "jp", "after-the-request-flood").await;
    tree.shutdown().await.expect("clean shutdown");
}

// ---------------------------------------------------------------------------------------------
// (7) Brokers authenticated but did not authorize
// ---------------------------------------------------------------------------------------------

/// Issue, attack 7: any member read every topic of its broker (other districts' AMBER+STRICT
/// deliveries, others' sync answers), deleted the retained trust bundle with an empty publish
/// and grew the broker's memory without bound with retained messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_7_members_read_and_write_only_their_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tree = tree(dir.path()).await;
    let retired = kairan_tests::checks::mint(
        ("jp-13", &tree.relay_key(1).expect("key")),
        "retired",
        kairan_tests::checks::key("retired").public(),
        kairan_protocol::Role::Clinic,
        "jp/13",
        kairan_tests::checks::a_year_from(tree.now()),
    );
    tree.push_trust(root_statement(&tree, &retired, &chain_of(&tree, 1), tree.now()).to_json())
        .await
        .expect("pushed");
    publish(&mut tree, "jp", "with-a-head").await;
    tree.publish_head(Duration::from_secs(3600)).await.expect("head");
    let c1 = clinic_index(&tree, "jp-13-chuo-c1");
    wait_until("the clinic holds the bundle", || {
        !kairan_tests::checks::stored_trust(clinic(&tree, "jp-13-chuo-c1")).revocations.is_empty()
    })
    .await;
    // Two machines taken over: the district chuo (a member of Tokyo's broker) and the clinic
    // c1 (a member of chuo's broker).
    tree.stop_clinic(c1).await.expect("stop clinic");
    let chuo = tree.relay_index("jp-13-chuo").expect("chuo");
    tree.stop_relay(chuo).await.expect("stop district");
    let tokyo_broker = broker_of(&tree, "jp-13");
    let mut district =
        Member::connect_as(&tokyo_broker, &member(&tree, "jp-13-chuo")).await.expect("connects");
    for filter in [
        "#".to_owned(),
        "kairan/#".to_owned(),
        "$SYS/#".to_owned(),
        format!("{}/#", topics::deliveries_root("jp-13")),
        format!("{}/#", topics::deliveries("jp-13", "jp/13/minato")),
        topics::sync_response("jp-13", "jp-13-minato"),
        topics::sync_response_filter("jp-13"),
        topics::sync_request_filter("jp-13"),
        topics::control("jp-13"),
        format!("{}/#", topics::deliveries_root("jp")),
    ] {
        assert_eq!(district.subscribe(&filter).await, Subscribed::Refused, "{filter}");
    }
    for filter in topics::delivery_filters("jp-13", &Scope::parse("jp/13/chuo").expect("scope")) {
        assert_eq!(district.subscribe(&filter).await, Subscribed::Granted, "its own row: {filter}");
    }
    // Another district's AMBER+STRICT advisory: it reaches minato's clinics, never chuo.
    let strict = publish_tlp(&mut tree, "jp/13/minato", "minato-strict", Tlp::AmberStrict).await;
    let seen = district.received(Duration::from_millis(500), Duration::from_secs(2)).await;
    assert!(
        seen.iter()
            .all(|p| Delivery::from_json(&p.payload).map(|d| Digest::of(&d.advisory.payload)) != Ok(strict)),
        "the district read another district's AMBER+STRICT advisory"
    );
    district.leave().await;

    // The clinic: the retained trust pieces and heads of its district are there to read…
    tree.restart_relay(chuo).await.expect("restart district");
    tree.wait_subscribed(SETTLE).await.expect("subscribed");
    let chuo_broker = broker_of(&tree, "jp-13-chuo");
    let mut clinic_member =
        Member::connect_as(&chuo_broker, &member(&tree, "jp-13-chuo-c1")).await.expect("connects");
    let retained = retained_state(&mut clinic_member).await;
    assert!(
        retained.iter().any(|t| t.starts_with(&format!("{}/", topics::trust("jp-13-chuo")))),
        "{retained:?}"
    );
    assert!(retained.contains(&topics::heads("jp-13-chuo", &mhlw_jp())), "{retained:?}");
    assert_eq!(
        clinic_member.subscribe(&topics::sync_response("jp-13-chuo", "jp-13-chuo-c2")).await,
        Subscribed::Refused
    );
    clinic_member.leave().await;
    // …but not to clear, nor to overwrite; nor may it publish deliveries or retained requests.
    let mut writes: Vec<(String, Vec<u8>, bool)> =
        retained.iter().map(|t| (t.clone(), Vec::new(), true)).collect();
    writes.push((topics::trust("jp-13-chuo"), b"{}".to_vec(), true));
    writes.push((topics::deliveries("jp-13-chuo", "jp"), b"{}".to_vec(), false));
    writes.push((topics::sync_request("jp-13-chuo", "jp-13-chuo-c1"), request(0, "jp", None), true));
    writes.push((topics::sync_request("jp-13-chuo", "jp-13-chuo-c2"), request(0, "jp", None), false));
    for (topic, bytes, retain) in writes {
        let mut attacker =
            Member::connect_as(&chuo_broker, &member(&tree, "jp-13-chuo-c1")).await.expect("connects");
        let outcome = attacker.publish(&topic, bytes, retain).await;
        assert!(matches!(outcome, Published::Disconnected(_)), "{topic} (retain {retain}): {outcome:?}");
    }
    // A flood of retained messages ends at the first one.
    let mut flooder =
        Member::connect_as(&chuo_broker, &member(&tree, "jp-13-chuo-c1")).await.expect("connects");
    let flood: Vec<Vec<u8>> = (0..1000).map(|_| vec![b'x'; 100 * 1024]).collect();
    let kept = flooder.publish_many(&topics::sync_request("jp-13-chuo", "jp-13-chuo-c1"), flood, true).await;
    assert_eq!(kept, 0, "retained messages accepted");
    assert!(flooder.is_disconnected(Duration::from_secs(5)).await);
    // The retained state is whole: a fresh subscription reads the same topics.
    let mut reader =
        Member::connect_as(&chuo_broker, &member(&tree, "jp-13-chuo-c1")).await.expect("connects");
    assert_eq!(retained_state(&mut reader).await, retained, "retained state changed");
    reader.leave().await;
    tree.start_clinic(c1).await.expect("restart clinic");
    tree.wait_subscribed(SETTLE).await.expect("subscribed");
    still_delivers(&mut tree, "jp", "after-attack-7").await;
    tree.shutdown().await.expect("clean shutdown");
}

/// The retained topics a clinic's subscriptions to its district's trust pieces and heads show.
async fn retained_state(clinic: &mut Member) -> BTreeSet<String> {
    let district = "jp-13-chuo";
    assert_eq!(clinic.subscribe(&format!("{}/#", topics::trust(district))).await, Subscribed::Granted);
    let chuo = kairan_protocol::Scope::parse("jp/13/chuo").expect("scope");
    for filter in topics::heads_filters(district, &chuo) {
        assert_eq!(clinic.subscribe(&filter).await, Subscribed::Granted, "{filter}");
    }
    let messages = clinic.received(Duration::from_millis(500), SETTLE).await;
    messages.into_iter().filter(|p| p.retain).map(|p| p.topic.to_string()).collect()
}

// ---------------------------------------------------------------------------------------------
// (8) The smaller ones
// ---------------------------------------------------------------------------------------------

/// Issue, attack 8a: refusal throttling keyed on the topic, so varying the topic skipped it.
/// Now each origin may publish on its own ingest topics only — the topic is the authenticated
/// member — and every other topic costs it its connection before any refusal is processed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_8_a_member_cannot_vary_the_topic_to_skip_the_throttle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tree = tree(dir.path()).await;
    let national = tree.national_broker().expect("broker");
    let rogue = member(&tree, "rogue");
    let forged = b"{\"advisory\":{}}".to_vec();
    for topic in [
        topics::ingest_of("jp", "mhlw"),
        topics::ingest_of("jp", "rogue-2"),
        format!("{}/more", topics::ingest_of("jp", "rogue")),
        topics::ingest_heads_of("jp", "mhlw"),
        topics::control("jp"),
        topics::deliveries("jp", "jp"),
        topics::heads("jp", &mhlw_jp()),
        topics::trust_piece("jp", "0000"),
    ] {
        let mut attacker = Member::connect_as(&national, &rogue).await.expect("connects");
        let outcome = attacker.publish(&topic, forged.clone(), false).await;
        assert!(matches!(outcome, Published::Disconnected(_)), "{topic}: {outcome:?}");
    }
    let jp = relay(&tree, "jp");
    assert!(jp.store().rejections().expect("rejections").is_empty(), "nothing reached the national");
    // On its own topics it is refused and throttled there (see hostile::a_flood_from_one_…).
    let mut attacker = Member::connect_as(&national, &rogue).await.expect("connects");
    assert_eq!(
        attacker.publish(&topics::ingest_of("jp", "rogue"), forged.clone(), false).await,
        Published::Acked
    );
    assert_eq!(
        attacker.publish(&topics::ingest_heads_of("jp", "rogue"), forged, false).await,
        Published::Acked
    );
    wait_metric(jp, "kairan_deliveries_rejected_total{reason=\"malformed_envelope\"}", 1.0).await;
    wait_metric(jp, "kairan_heads_refused_total{reason=\"malformed_envelope\"}", 1.0).await;
    still_delivers(&mut tree, "jp", "after-attack-8a").await;
    tree.shutdown().await.expect("clean shutdown");
}

/// Issue, attack 8b: when one key had two certificates, which one verified depended on their
/// order in the delivery — a revoked renewal listed first got a genuine advisory refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_8_certificate_choice_does_not_depend_on_input_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tree = tree(dir.path()).await;
    let mut renewal = kairan_protocol::Certificate::decode(&tree.origin.cert.payload).expect("cert");
    renewal.serial = "root-origin-mhlw-renewal".into();
    renewal.not_before = tree.now().plus_secs(-60);
    let renewal = renewal.sign(&[&tree.roots[1], &tree.roots[2]]);
    tree.push_trust(root_statement(&tree, &renewal, &[], tree.now().plus_secs(-60)).to_json())
        .await
        .expect("pushed");
    wait_until("every node revokes the renewal", || {
        tree.clinics
            .iter()
            .filter_map(|c| c.handle.as_ref())
            .all(|c| !kairan_tests::checks::stored_trust(c).revocations.is_empty())
    })
    .await;
    let original = tree.origin.cert.clone();
    let mut expected = BTreeSet::new();
    for (number, certs) in [vec![renewal.clone(), original.clone()], vec![original.clone(), renewal.clone()]]
        .into_iter()
        .enumerate()
    {
        let (bytes, digest) =
            tree.sign_next(kairan_tests::advisory("jp", &format!("order-{number}"), tree.now()));
        let delivery = Delivery { certs, ..Delivery::from_json(&bytes).expect("delivery") };
        tree.publish_raw(delivery.to_json()).await.expect("published");
        expected.insert(digest);
    }
    for digest in &expected {
        wait_delivered(&tree, *digest, "jp").await;
    }
    assert!(relay(&tree, "jp").store().rejections().expect("rejections").is_empty());
    // A key certified under a second identity (a district minting one for the ministry's key)
    // is refused outright, whatever the order.
    let district_key = tree.relay_key(2).expect("key");
    let twin = kairan_tests::checks::mint(
        ("jp-13-chuo", &district_key),
        "made-up",
        tree.origin.key.public(),
        kairan_protocol::Role::Clinic,
        "jp/13/chuo",
        kairan_tests::checks::a_year_from(tree.now()),
    );
    let (bytes, digest) = tree.sign_next(kairan_tests::advisory("jp", "twin", tree.now()));
    let mut delivery = Delivery::from_json(&bytes).expect("delivery");
    delivery.certs.push(twin);
    delivery.certs.extend(chain_of(&tree, 2));
    tree.publish_raw(delivery.to_json()).await.expect("published");
    let jp = relay(&tree, "jp");
    wait_metric(jp, "kairan_deliveries_rejected_total{reason=\"conflicting_certs\"}", 1.0).await;
    assert!(!jp.store().contains(&digest).expect("store"));
    tree.shutdown().await.expect("clean shutdown");
}

/// Issue, attack 8c: a delivery refused only because a clock was more than 5 s off was
/// refused for good, and the catch-up cursor moved past it. Now it is held and tried again,
/// and the cursor waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_8_a_delivery_refused_only_by_a_clock_is_held_not_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tree = tree(dir.path()).await;
    // The origin's clock is 10 s ahead: the national holds its advisory until it is due.
    let mut early = kairan_tests::advisory("jp", "from-a-fast-clock", tree.now().plus_secs(10));
    early.expires_at = early.issued_at.plus_secs(24 * 3600);
    let (bytes, digest) = tree.sign_next(early);
    tree.publish_raw(bytes).await.expect("published");
    wait_metric(relay(&tree, "jp"), "kairan_inputs_deferred_total", 1.0).await;
    wait_delivered(&tree, digest, "jp").await;
    // A clinic PC whose clock is 10 s slow, restarted after missing an advisory: it sees the
    // advisory (live from its session, and in a catch-up page) as from the future, holds it,
    // and its cursor never passes it until it is accepted.
    let c1 = clinic_index(&tree, "jp-13-chuo-c1");
    tree.stop_clinic(c1).await.expect("stop");
    let missed = publish(&mut tree, "jp", "while-the-clinic-was-off").await;
    let district = |tree: &Hierarchy| relay(tree, "jp-13-chuo").store().log_after(0, 10_000).expect("log");
    wait_until("the district holds it", || district(&tree).iter().any(|e| e.digest == missed)).await;
    let entry = district(&tree).into_iter().find(|e| e.digest == missed).expect("logged");
    tree.clinics[c1].config.clock = kairan_node::clock::Clock::skewed(-10_000);
    tree.start_clinic(c1).await.expect("restart");
    let skewed = clinic(&tree, "jp-13-chuo-c1");
    let deadline = Instant::now() + SETTLE;
    loop {
        // The cursor first: once it is past the delivery, the delivery is durable too.
        let cursor = sync_cursor(skewed);
        if tree.inbox(c1).expect("inbox").contains(&missed) {
            break;
        }
        assert!(cursor < entry.relay_seq, "the cursor passed a held delivery ({cursor})");
        assert!(Instant::now() < deadline, "never accepted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(metric(skewed, "kairan_inputs_deferred_total").await >= 1.0, "it was held first");
    assert!(skewed.store().rejections().expect("rejections").is_empty(), "refused for good");
    let district_log = district(&tree).len() as u64;
    wait_until("the cursor reaches the district's log end", || sync_cursor(skewed) == district_log).await;
    tree.shutdown().await.expect("clean shutdown");
}

/// The chain of the origin's advisories for all of Japan.
fn mhlw_jp() -> kairan_protocol::sequence::ChainId {
    kairan_protocol::sequence::ChainId::new("mhlw", kairan_protocol::Scope::parse("jp").expect("scope"))
}
