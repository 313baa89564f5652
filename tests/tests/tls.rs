//! TLS 1.3 on every link of a running tree, and a child's refusal of any broker that is not
//! its configured parent (`docs/design.md`, "Transport security"): deliveries, catch-up, trust
//! updates and key rotation over TLS with embedded brokers and Mosquitto; a clinic pointed at
//! another relay's broker, at its district with an expired or a revoked key, or at a plaintext
//! broker refuses it with a precise error and receives nothing.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kairan_node::clinic;
use kairan_node::handle::NodeHandle;
use kairan_node::harness::hierarchy::{Hierarchy, HierarchyBuilder, Level};
use kairan_node::mqtt::BrokerAddr;
use kairan_node::store::Store;
use kairan_protocol::cert::ROOT_ISSUER;
use kairan_protocol::{Digest, Revocation, TrustBundle};
use kairan_tests::{Mosquitto, advisory};
use tokio_util::sync::CancellationToken;

const SETTLE: Duration = Duration::from_secs(30);

fn everyone_has_trust(tree: &Hierarchy) -> bool {
    let relays = tree.relays.iter().filter_map(|r| r.handle.as_ref());
    let clinics = tree.clinics.iter().filter_map(|c| c.handle.as_ref());
    relays.chain(clinics).all(|h| h.store().blob("trust_bundle").ok().flatten().is_some())
}

/// Waits until `handle`'s upstream link reports an error containing `needle`; returns it.
async fn refusal(handle: &NodeHandle, needle: &str) -> String {
    let deadline = Instant::now() + SETTLE;
    loop {
        if let Some(error) = handle.upstream_error().filter(|e| e.contains(needle)) {
            return error;
        }
        assert!(
            Instant::now() < deadline,
            "no refusal containing {needle:?}; last error {:?}",
            handle.upstream_error()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A clinic like clinic `index` (same id, scope, credentials and parent), with its own inbox,
/// connecting to `addr` instead of its district's broker.
async fn stray_clinic(tree: &Hierarchy, index: usize, addr: BrokerAddr, name: &str) -> NodeHandle {
    let mut config = tree.clinics[index].config.clone();
    config.addr = addr;
    config.data_dir = tree.dir.join("stray").join(name);
    clinic::start(config, CancellationToken::new()).await.expect("clinic starts")
}

/// Publishes one advisory for all of Japan and waits until every running clinic holds it.
async fn deliver(tree: &mut Hierarchy, expected: &mut BTreeSet<Digest>, id: &str) {
    let (bytes, digest) = tree.sign_next(advisory("jp", id, tree.now()));
    tree.publish_raw(bytes).await.expect("published");
    expected.insert(digest);
    let all = expected.clone();
    tree.wait_for_inboxes(|_| all.clone(), SETTLE).await.expect("delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_link_is_tls_and_deliveries_catch_up_trust_and_key_rotation_flow() {
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
    tree.wait_subscribed(SETTLE).await.expect("subscribed over TLS");
    for relay in &tree.relays {
        let handle = relay.handle.as_ref().expect("running");
        let url = handle.broker.as_ref().expect("broker").url();
        assert!(url.starts_with("mqtts://127.0.0.1:"), "{}: {url}", relay.config_parts.id);
        assert_eq!(handle.upstream_error(), None);
    }
    assert!(tree.clinics.iter().all(|c| c.config.addr.tls), "every clinic connects with TLS");
    let mut expected = BTreeSet::new();
    deliver(&mut tree, &mut expected, "tls-1").await;

    // Catch-up over TLS: a clinic down while an advisory passes gets it when it is back.
    tree.stop_clinic(0).await.expect("stop");
    let (bytes, missed) = tree.sign_next(advisory("jp", "tls-while-down", tree.now()));
    tree.publish_raw(bytes).await.expect("published");
    expected.insert(missed);
    let running: BTreeSet<usize> = (1..tree.clinics.len()).collect();
    let all = expected.clone();
    tree.wait_for_inboxes(|_| all.clone(), SETTLE).await.expect("the others have it");
    assert!(running.iter().all(|i| tree.inbox(*i).expect("inbox").contains(&missed)));
    tree.start_clinic(0).await.expect("restart");
    let all = expected.clone();
    tree.wait_for_inboxes(|_| all.clone(), SETTLE).await.expect("caught up over TLS");

    // Key rotation. The prefecture (embedded broker) presents its new key at once; the
    // districts accept it because their trust chain certifies it as jp-13. The district on
    // Mosquitto keeps presenting its old key until its certificate is rewritten; its clinics
    // and its own publisher still accept that one.
    let tokyo = tree.relay_index("jp-13").expect("tokyo");
    let chuo = tree.relay_index("jp-13-chuo").expect("chuo");
    tree.rotate_relay_key(tokyo).await.expect("prefecture rotated");
    tree.rotate_relay_key(chuo).await.expect("district rotated");
    tree.wait_subscribed(SETTLE).await.expect("everyone reconnected after the rotations");
    deliver(&mut tree, &mut expected, "tls-after-rotation").await;

    // A trust update through the control stream reaches every node over TLS.
    let effective_at = tree.now().plus_secs(3600);
    let revocation =
        Revocation::of_cert(&tree.origin.cert, ROOT_ISSUER, 1, tree.now(), effective_at, "retired next hour")
            .expect("certificate")
            .sign(&[&tree.roots[0], &tree.roots[1]]);
    let bundle = TrustBundle {
        certs: vec![tree.origin.cert.clone()],
        revocations: vec![revocation],
        ..TrustBundle::default()
    };
    tree.push_trust(bundle.to_json()).await.expect("pushed");
    let started = Instant::now();
    while !everyone_has_trust(&tree) {
        assert!(started.elapsed() < SETTLE, "the trust update did not reach every node");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    deliver(&mut tree, &mut expected, "tls-after-trust-update").await;
    tree.shutdown().await.expect("clean shutdown");
}

async fn embedded_tree(dir: &std::path::Path) -> Hierarchy {
    let tree = HierarchyBuilder::new(dir)
        .prefectures(1)
        .districts_per_prefecture(2)
        .clinics_per_district(1)
        .start()
        .await
        .expect("tree starts");
    tree.wait_subscribed(SETTLE).await.expect("subscribed");
    tree
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clinic_refuses_another_relays_broker_and_a_plaintext_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tree = embedded_tree(dir.path()).await;
    let mut expected = BTreeSet::new();
    deliver(&mut tree, &mut expected, "before").await;
    // Clinic 0 belongs to district A; district B's broker presents B's key.
    let (a, b) = (tree.clinics[0].district, tree.clinics[1].district);
    let (a_id, b_id) = (tree.relays[a].config_parts.id.clone(), tree.relays[b].config_parts.id.clone());
    let b_broker = kairan_node::harness::hierarchy::relay_broker(tree.relays[b].handle.as_ref().expect("b"))
        .expect("broker");
    let stray = stray_clinic(&tree, 0, b_broker.clone(), "other-relay").await;
    let error = refusal(&stray, "not of the configured parent").await;
    assert_eq!(
        error,
        format!(
            "{} presents the key of relay {b_id} (keyid {}), not of the configured parent {a_id}",
            b_broker.url(),
            tree.relay_key(b).expect("key").keyid()
        )
    );
    assert!(!stray.is_subscribed());

    // A plaintext broker (rmqtt without TLS) where the clinic expects TLS.
    let plaintext = kairan_node::mqtt::broker::start(
        "impostor",
        false,
        "127.0.0.1:0".parse().expect("addr"),
        kairan_node::members::Members::default(),
        None,
    )
    .expect("plaintext broker");
    let addr = BrokerAddr { tls: true, ..BrokerAddr::plaintext(plaintext.addr) };
    let stray_plain = stray_clinic(&tree, 0, addr.clone(), "plaintext").await;
    let error = refusal(&stray_plain, "no TLS at").await;
    assert!(error.starts_with(&format!("no TLS at {}: ", addr.url())), "{error}");
    assert!(error.ends_with("(is it a plaintext mqtt:// listener?)"), "{error}");

    // Neither received anything; the tree still delivers.
    deliver(&mut tree, &mut expected, "after").await;
    for stray in [stray, stray_plain] {
        assert!(stray.store().all().expect("inbox").is_empty(), "a refused broker delivered nothing");
        stray.shutdown();
        stray.wait().await.expect("stops");
    }
    drop(plaintext);
    tree.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clinic_refuses_its_district_once_the_districts_key_has_expired() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tree = embedded_tree(dir.path()).await;
    let district = tree.clinics[0].district;
    tree.reissue_relay_cert(district, Duration::from_secs(3)).await.expect("short-lived certificate");
    tree.wait_subscribed(SETTLE).await.expect("accepted while valid");
    tokio::time::sleep(Duration::from_millis(3500)).await;
    // The district restarts with its expired certificate: its broker presents it, and the
    // clinic refuses it on reconnection.
    tree.stop_relay(district).await.expect("stop");
    tree.restart_relay(district).await.expect("restart");
    let clinic = tree.clinics[0].handle.as_ref().expect("clinic");
    let error = refusal(clinic, "expired at").await;
    let id = &tree.relays[district].config_parts.id;
    assert!(error.contains(&format!("does not prove it is relay {id}: its kairan certificates do not verify: certificate {id} (serial ")), "{error}");
    assert!(!clinic.is_subscribed());
    // Renewed, it is accepted again.
    tree.reissue_relay_cert(district, Duration::from_secs(24 * 3600)).await.expect("renewed");
    tree.wait_subscribed(SETTLE).await.expect("accepted after renewal");
    tree.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clinic_drops_and_refuses_its_district_once_the_districts_key_is_revoked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = embedded_tree(dir.path()).await;
    let district = tree.clinics[0].district;
    let cert = tree.relays[district].config_parts.cert.clone();
    let revocation = Revocation::of_cert(&cert, ROOT_ISSUER, 1, tree.now(), tree.now(), "server compromised")
        .expect("certificate")
        .sign(&[&tree.roots[0], &tree.roots[1]]);
    let bundle = TrustBundle { certs: vec![cert], revocations: vec![revocation], ..TrustBundle::default() };
    tree.push_trust(bundle.to_json()).await.expect("pushed");
    // The revocation reaches the clinic through the district itself; the clinic then closes
    // the open connection and refuses every new one.
    let clinic = tree.clinics[0].handle.as_ref().expect("clinic");
    let error = refusal(clinic, "presents a revoked relay key").await;
    let id = &tree.relays[district].config_parts.id;
    assert!(error.contains(&format!("({id}) since")), "{error}");
    assert!(error.contains(&format!("used for the TLS identity of {id}")), "{error}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!clinic.is_subscribed(), "the clinic stays away from a revoked district");
    // The other district's clinic is untouched.
    let other = tree.clinics[1].handle.as_ref().expect("clinic");
    assert!(other.is_subscribed() && other.upstream_error().is_none());
    tree.shutdown().await.expect("clean shutdown");
}

/// What `scripts/tls-capture.sh` runs under `tcpdump -i lo`: a one-clinic tree starts (the
/// clinic connects), an origin publishes a TLP:AMBER advisory and the clinic receives it. It
/// then writes what must never be readable on the wire to `$KAIRAN_CAPTURE_NEEDLES`, one
/// `name<TAB>text` a line: the clinic's password, the advisory's titles, the titles as they
/// read inside the base64 payload (each of the three alignments), and a piece of that payload.
/// `KAIRAN_CAPTURE_PLAINTEXT=1` runs the same tree without TLS: the script's proof that the
/// capture and the search would find them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by scripts/tls-capture.sh under tcpdump"]
async fn capture_probe() {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    let needles_path = std::env::var_os("KAIRAN_CAPTURE_NEEDLES").expect("KAIRAN_CAPTURE_NEEDLES");
    let plaintext = std::env::var("KAIRAN_CAPTURE_PLAINTEXT").is_ok_and(|v| v == "1");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tree = HierarchyBuilder::new(dir.path())
        .prefectures(1)
        .districts_per_prefecture(1)
        .clinics_per_district(1)
        .insecure_plaintext(plaintext)
        .start()
        .await
        .expect("tree starts");
    tree.wait_subscribed(SETTLE).await.expect("subscribed");
    let marker = format!("{:016x}", rand::random::<u64>());
    let mut amber = advisory("jp", &format!("capture-{marker}"), tree.now());
    amber.tlp = kairan_protocol::Tlp::Amber;
    let (title_ja, title_en) = (
        format!("院内ネットワーク機器の認証回避の脆弱性 {marker}"),
        format!("Authentication bypass in clinic network appliances {marker}"),
    );
    amber.title = kairan_protocol::Localized::new("ja", &title_ja).with("en", &title_en);
    let (bytes, digest) = tree.sign_next(amber);
    tree.publish_raw(bytes.clone()).await.expect("published");
    tree.wait_for_inboxes(|_| BTreeSet::from([digest]), SETTLE).await.expect("the clinic received it");
    let clinic = &tree.clinics[0].config;
    let password = clinic.credentials.as_ref().expect("credentials").password.clone();
    let delivery: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
    let payload = delivery["advisory"]["payload"].as_str().expect("payload").to_owned();
    let mut needles = vec![
        ("password".to_owned(), password),
        ("title-ja".to_owned(), title_ja.clone()),
        ("title-en".to_owned(), title_en.clone()),
        ("payload".to_owned(), payload[payload.len() / 2 - 32..payload.len() / 2 + 32].to_owned()),
    ];
    for (name, title) in [("ja", &title_ja), ("en", &title_en)] {
        for shift in 0..3 {
            let mut shifted = vec![0u8; shift];
            shifted.extend_from_slice(title.as_bytes());
            let encoded = STANDARD.encode(&shifted);
            let start = if shift == 0 { 0 } else { 4 };
            needles
                .push((format!("title-{name}-base64-{shift}"), encoded[start..encoded.len() - 4].to_owned()));
        }
    }
    let text: String = needles.iter().map(|(name, needle)| format!("{name}\t{needle}\n")).collect();
    std::fs::write(&needles_path, text).expect("needles written");
    tree.shutdown().await.expect("clean shutdown");
}
