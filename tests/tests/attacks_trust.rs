//! Attacks 1–4 of the authorization issue, on trust, against a running tree over real MQTT
//! (embedded brokers): each is carried out as the issue reproduced it — with a member's real
//! credentials and keys — and must change nothing but what the attacker was entitled to.
//! The Mosquitto variants of the broker-side parts are in `attacks_mosquitto.rs`.

use std::time::Duration;

use kairan_node::harness::hierarchy::{Hierarchy, HierarchyBuilder};
use kairan_node::topics;
use kairan_protocol::limits::{MAX_PIECE_BYTES, MAX_REVOCATIONS_PER_ISSUER};
use kairan_protocol::{Digest, Role, Timestamp, TrustBundle};
use kairan_tests::checks::{
    SETTLE, a_year_from, chain_of, key, metric, mint, relay, relay_statement, revoked_certs, root_statement,
    still_delivers, stored_trust, wait_metric, wait_until_within,
};
use kairan_tests::member::{Member, Published};

const DAY: i64 = 24 * 3600;

/// How many certificates the root revokes in attack 3.
const ROOT_REVOCATIONS: usize = 200;

/// National → `prefectures` × `districts` × one clinic each, embedded brokers, metrics on.
async fn tree(dir: &std::path::Path, prefectures: usize, districts: usize) -> Hierarchy {
    let tree = HierarchyBuilder::new(dir)
        // Plaintext on loopback: the attacks are on authorization, the same with TLS; the
        // member clients here are bare MQTT (TLS has its own tests in tls.rs).
        .insecure_plaintext(true)
        .prefectures(prefectures)
        .districts_per_prefecture(districts)
        .clinics_per_district(1)
        .extra_origins(&["nisc"])
        .with_metrics()
        .start()
        .await
        .expect("tree starts");
    tree.wait_subscribed(SETTLE).await.expect("subscribed");
    tree
}

fn index(tree: &Hierarchy, id: &str) -> usize {
    tree.relay_index(id).unwrap_or_else(|| panic!("no relay {id}"))
}

/// Waits until every running relay and clinic holds a trust bundle revoking exactly `certs`;
/// says which node holds what otherwise.
async fn wait_everyone_revokes(tree: &Hierarchy, certs: &[Digest]) {
    let wanted: std::collections::BTreeSet<Digest> = certs.iter().copied().collect();
    let deadline = std::time::Instant::now() + SETTLE;
    loop {
        let relays = tree.relays.iter().filter_map(|r| r.handle.as_ref());
        let clinics = tree.clinics.iter().filter_map(|c| c.handle.as_ref());
        let differing: Vec<String> = relays
            .chain(clinics)
            .map(|node| (node.id.clone(), revoked_certs(&stored_trust(node))))
            .filter(|(_, held)| *held != wanted)
            .map(|(id, held)| format!("{id} revokes {held:?}"))
            .collect();
        if differing.is_empty() {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "wanted {wanted:?}; {differing:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn digest_of(cert: &kairan_protocol::Envelope) -> Digest {
    Digest::of(&cert.payload)
}

// ---------------------------------------------------------------------------------------------
// (1) Any relay could revoke any key in the country
// ---------------------------------------------------------------------------------------------

/// Issue, attack 1: a district certified the ministry's public key under a made-up subject,
/// revoked it effective 2000-01-01 and pushed that to its parent's trust topic; every node
/// then refused the ministry's genuine advisories for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_1_a_district_cannot_revoke_the_ministry_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tree = tree(dir.path(), 1, 2).await;
    let (chuo, tokyo) = (index(&tree, "jp-13-chuo"), index(&tree, "jp-13"));
    let district_key = tree.relay_key(chuo).expect("key");
    let now = tree.now();
    let year_2000 = Timestamp::parse_rfc3339("2000-01-01T00:00:00Z").expect("time");
    let minted = mint(
        ("jp-13-chuo", &district_key),
        "made-up",
        tree.origin.key.public(),
        Role::Clinic,
        "jp/13/chuo",
        a_year_from(now),
    );
    // What the issue reproduced: a revocation of the minted certificate. And the direct
    // attempt: a revocation naming the ministry's real certificate, signed by the district.
    let of_minted = relay_statement(&tree, chuo, &minted, &[], (now, year_2000));
    let of_ministry = relay_statement(&tree, chuo, &tree.origin.cert, &[], (now, year_2000));

    // The district's machine is taken over: its node stops, the attacker holds its key and
    // password. On its parent's broker it may only ask for catch-up: every trust or control
    // publish, retained or not, costs it its connection.
    tree.stop_relay(chuo).await.expect("stop");
    let parent_broker = tree.relays[tokyo].handle.as_ref().and_then(|h| h.broker.clone()).expect("broker");
    let credentials = tree.credentials_of("jp-13-chuo").expect("member");
    let attempts = [
        (topics::trust_piece("jp-13", "0000"), true),
        (topics::trust("jp-13"), true),
        (topics::trust("jp-13"), false),
        (topics::control("jp-13"), false),
        (topics::control("jp"), false),
    ];
    for (topic, retain) in attempts {
        for bundle in [&of_minted, &of_ministry] {
            let mut member =
                Member::connect_as(&parent_broker, &credentials).await.expect("a member connects");
            let outcome = member.publish(&topic, bundle.to_json(), retain).await;
            assert!(
                matches!(outcome, Published::Disconnected(_)),
                "the district published on {topic} (retain {retain}): {outcome:?}"
            );
        }
    }
    // It is no member of the national node's broker at all.
    let national_broker = tree.national_broker().expect("national broker");
    let refused = Member::connect_as(&national_broker, &credentials).await;
    assert!(refused.is_err(), "a district connected to the national broker");
    assert_eq!(metric(relay(&tree, "jp-13"), "kairan_trust_updates_total").await, 0.0);
    tree.restart_relay(chuo).await.expect("restart");
    tree.wait_subscribed(SETTLE).await.expect("subscribed");

    // The only way in is the national control topic (the administrator). The statement naming
    // the ministry's certificate is refused there: the district did not issue it.
    tree.push_trust(of_ministry.to_json()).await.expect("pushed");
    let national = relay(&tree, "jp");
    wait_metric(national, "kairan_trust_refused_total{reason=\"revocation_not_authorized\"}", 1.0).await;
    // The minted certificate's revocation is the district's right — and revokes only that
    // certificate, not the key's other one.
    tree.push_trust(of_minted.to_json()).await.expect("pushed");
    wait_everyone_revokes(&tree, &[digest_of(&minted)]).await;
    // The ministry's next genuine advisory reaches every clinic.
    still_delivers(&mut tree, "jp", "after-attack-1").await;
    tree.shutdown().await.expect("clean shutdown");
}

// ---------------------------------------------------------------------------------------------
// (2) A root-revoked relay still signed revocations
// ---------------------------------------------------------------------------------------------

/// Issue, attack 2: revocations by a relay were checked against the unrevoked set, so a relay
/// the root had revoked went on revoking. Both orders: its statement before and after the
/// root's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_2_a_root_revoked_relay_cannot_revoke_in_either_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tree = tree(dir.path(), 2, 1).await;
    let (osaka, kita) = (index(&tree, "jp-27"), index(&tree, "jp-27-kita"));
    let national_chain = chain_of(&tree, 0);
    let osaka_cert = tree.relays[osaka].config_parts.cert.clone();
    let kita_cert = tree.relays[kita].config_parts.cert.clone();
    let t0 = tree.now();
    // Osaka's statement comes first (it is in force then, and revokes its district)…
    let early = relay_statement(&tree, osaka, &kita_cert, &[], (t0, t0));
    tree.push_trust(early.to_json()).await.expect("pushed");
    wait_everyone_revokes(&tree, &[digest_of(&kita_cert)]).await;
    // …then the root revokes Osaka from before that statement: the statement goes, everywhere.
    let root = root_statement(&tree, &osaka_cert, &national_chain, t0.plus_secs(-60));
    tree.push_trust(root.to_json()).await.expect("pushed");
    wait_everyone_revokes(&tree, &[digest_of(&osaka_cert)]).await;
    // A statement Osaka signs now is refused outright.
    let late = relay_statement(&tree, osaka, &kita_cert, &[], (tree.now(), tree.now()));
    tree.push_trust(late.to_json()).await.expect("pushed");
    wait_metric(relay(&tree, "jp"), "kairan_trust_refused_total{reason=\"revoked_key\"}", 1.0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    wait_everyone_revokes(&tree, &[digest_of(&osaka_cert)]).await;
    // Tokyo is untouched.
    still_delivers(&mut tree, "jp/13", "after-attack-2").await;
    tree.shutdown().await.expect("clean shutdown");
}

// ---------------------------------------------------------------------------------------------
// (3) The trust bundle only grew and was sent whole
// ---------------------------------------------------------------------------------------------

/// Issue, attack 3: past ~272 KiB the relay could not publish its bundle, reconnected in a
/// loop and stopped forwarding; a few hundred revocations or one member minting certificates
/// got there. Now one relay holds at most 64 statements in force, the rest of the set is the
/// root's, and the set travels as small retained pieces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_3_a_large_trust_set_travels_in_pieces_and_deliveries_keep_flowing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tree = tree(dir.path(), 1, 1).await;
    let (tokyo, chuo) = (index(&tree, "jp-13"), index(&tree, "jp-13-chuo"));
    let chuo_key = tree.relay_key(chuo).expect("key");
    let tokyo_key = tree.relay_key(tokyo).expect("key");
    let now = tree.now();
    let issued = |issuer: (&str, &kairan_protocol::SecretKey), prefix: &str, count: usize, scope: &str| {
        (0..count)
            .map(|n| {
                let subject = format!("{prefix}-{n}");
                mint(issuer, &subject, key(&subject).public(), Role::Clinic, scope, a_year_from(now))
            })
            .collect::<Vec<_>>()
    };
    // One member (the district) mints certificates and revokes them, past its limit.
    let by_district =
        issued(("jp-13-chuo", &chuo_key), "minted", MAX_REVOCATIONS_PER_ISSUER + 16, "jp/13/chuo");
    // The root revokes another 200 (certificates the prefecture issued): together more than
    // one MQTT packet (272 KiB) holds.
    let by_root = issued(("jp-13", &tokyo_key), "retired", ROOT_REVOCATIONS, "jp/13");
    let tokyo_chain = chain_of(&tree, tokyo);
    let mut statements: Vec<TrustBundle> =
        by_district.iter().map(|cert| relay_statement(&tree, chuo, cert, &[], (now, now))).collect();
    statements.extend(by_root.iter().map(|cert| root_statement(&tree, cert, &tokyo_chain, now)));
    // Pushed in bundles that each fit one MQTT packet.
    for chunk in statements.chunks(16) {
        let bundle = chunk.iter().fold(TrustBundle::default(), |all, one| all.merged(one));
        tree.push_trust(bundle.to_json()).await.expect("pushed");
    }
    let expected = MAX_REVOCATIONS_PER_ISSUER + ROOT_REVOCATIONS;
    let national = relay(&tree, "jp");
    wait_metric(national, "kairan_trust_revoked_keys", expected as f64).await;
    // Each level verifies the pieces it receives before it republishes them; on a loaded
    // 2-core machine three levels of 264 statements took longer than SETTLE.
    wait_until_within("every node holds the whole set", 3 * SETTLE, || {
        let relays = tree.relays.iter().filter_map(|r| r.handle.as_ref());
        let clinics = tree.clinics.iter().filter_map(|c| c.handle.as_ref());
        let held: Vec<(String, usize)> = relays
            .chain(clinics)
            .map(|node| (node.id.clone(), stored_trust(node).revocations.len()))
            .collect();
        println!("held: {held:?}");
        held.iter().all(|(_, count)| *count == expected)
    })
    .await;
    let whole = stored_trust(national).to_json().len();
    println!("{expected} revocations in force: {whole} bytes as one bundle");
    assert!(whole > 272 * 1024, "the set should outgrow one MQTT packet ({whole} bytes)");
    // The district's statements past its limit were refused for space, not kept.
    let held = revoked_certs(&stored_trust(national));
    let by_district_held = by_district.iter().filter(|cert| held.contains(&digest_of(cert))).count();
    assert_eq!(by_district_held, MAX_REVOCATIONS_PER_ISSUER, "the district's statements in force");
    wait_metric(national, "kairan_trust_refused_total{reason=\"revocation_limit\"}", 1.0).await;

    // What a child sees: one small retained piece per statement on its parent's broker.
    let clinic = tree.clinics[0].config.id.clone();
    tree.stop_clinic(0).await.expect("stop clinic");
    let credentials = tree.credentials_of(&clinic).expect("member");
    let broker = tree.relays[chuo].handle.as_ref().and_then(|h| h.broker.clone()).expect("broker");
    let mut member = Member::connect_as(&broker, &credentials).await.expect("connects");
    assert_eq!(
        member.subscribe(&format!("{}/#", topics::trust("jp-13-chuo"))).await,
        kairan_tests::member::Subscribed::Granted
    );
    let pieces = member.received(Duration::from_secs(2), SETTLE).await;
    let largest = pieces.iter().map(|p| p.payload.len()).max().unwrap_or(0);
    println!("{} retained pieces, the largest {largest} bytes", pieces.len());
    assert_eq!(pieces.len(), expected);
    assert!(pieces.iter().all(|p| p.retain), "pieces are retained");
    assert!(largest <= MAX_PIECE_BYTES, "a piece of {largest} bytes");
    member.leave().await;
    tree.start_clinic(0).await.expect("restart clinic");
    tree.wait_subscribed(SETTLE).await.expect("subscribed");
    still_delivers(&mut tree, "jp", "after-attack-3").await;
    tree.shutdown().await.expect("clean shutdown");
}

// ---------------------------------------------------------------------------------------------
// (4) One expired certificate wedged every update; a restart dropped every revocation
// ---------------------------------------------------------------------------------------------

/// Issue, attack 4: one expired certificate in the bundle (any member could push a public one)
/// made every later genuine update fail `cert_expired`, and at restart the stored bundle was
/// dropped whole, so revocations silently disappeared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_4_an_expired_certificate_wedges_nothing_and_restarts_keep_every_revocation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tree = tree(dir.path(), 1, 1).await;
    let national_key = tree.relay_key(0).expect("key");
    let now = tree.now();
    // An expired relay certificate the national relay once issued, and a statement that needs it.
    let expired_key = key("jp-99");
    let expired = mint(
        ("jp", &national_key),
        "jp-99",
        expired_key.public(),
        Role::Relay,
        "jp/99",
        (now.plus_secs(-400 * DAY), now.plus_secs(-40 * DAY)),
    );
    let victim = mint(
        ("jp-99", &expired_key),
        "c-99",
        key("c-99").public(),
        Role::Clinic,
        "jp/99",
        (now.plus_secs(-300 * DAY), now.plus_secs(DAY)),
    );
    let revocation =
        kairan_protocol::Revocation::of_cert(&victim, "jp-99", 1, now, now, "retired").expect("cert");
    let needs_expired = TrustBundle {
        certs: [vec![victim.clone(), expired.clone()], chain_of(&tree, 0)].concat(),
        revocations: vec![revocation.sign(&[&expired_key])],
        rotations: Vec::new(),
    };
    tree.push_trust(needs_expired.to_json()).await.expect("pushed");
    let national = relay(&tree, "jp");
    wait_metric(national, "kairan_trust_refused_total{reason=\"cert_expired\"}", 1.0).await;
    // A second origin, certified by the root; the root revokes it — in the same bundle as the
    // expired certificate's statement, and alone.
    let nisc_key = key("nisc");
    let nisc_cert = kairan_protocol::Certificate::for_key(
        "root-origin-nisc",
        kairan_protocol::cert::ROOT_ISSUER,
        "nisc",
        nisc_key.public(),
        Role::Origin,
        &kairan_protocol::Scope::parse("jp").expect("scope"),
        a_year_from(now),
    )
    .sign(&[&tree.roots[0], &tree.roots[1]]);
    let revoke_nisc = root_statement(&tree, &nisc_cert, &[], now);
    tree.push_trust(needs_expired.merged(&revoke_nisc).to_json()).await.expect("pushed");
    // And a relay statement whose signer's certificate runs out in seconds.
    let short_key = key("jp-98");
    let short = mint(
        ("jp", &national_key),
        "jp-98",
        short_key.public(),
        Role::Relay,
        "jp/98",
        (now.plus_secs(-3600), now.plus_secs(4)),
    );
    let retired =
        mint(("jp-98", &short_key), "c-98", key("c-98").public(), Role::Clinic, "jp/98", a_year_from(now));
    let by_short =
        kairan_protocol::Revocation::of_cert(&retired, "jp-98", 1, now, now, "retired").expect("cert");
    let by_short = TrustBundle {
        certs: [vec![retired.clone(), short.clone()], chain_of(&tree, 0)].concat(),
        revocations: vec![by_short.sign(&[&short_key])],
        rotations: Vec::new(),
    };
    tree.push_trust(by_short.to_json()).await.expect("pushed");
    wait_everyone_revokes(&tree, &[digest_of(&nisc_cert), digest_of(&retired)]).await;
    tokio::time::sleep(Duration::from_secs(5)).await;

    // Every node restarts; every revocation it held is in force again.
    for index in (0..tree.relays.len()).rev() {
        tree.stop_relay(index).await.expect("stop");
    }
    for index in 0..tree.clinics.len() {
        tree.stop_clinic(index).await.expect("stop");
    }
    for index in 0..tree.relays.len() {
        tree.restart_relay(index).await.expect("restart");
    }
    for index in 0..tree.clinics.len() {
        tree.start_clinic(index).await.expect("restart");
    }
    tree.wait_subscribed(SETTLE).await.expect("subscribed");
    wait_everyone_revokes(&tree, &[digest_of(&nisc_cert), digest_of(&retired)]).await;
    // The revoked origin is refused at every level it is put to (the national, as published;
    // the prefecture, district and clinic, as carried by their parents).
    let mut advisory = kairan_tests::advisory("jp", "nisc-after-restart", tree.now());
    advisory.origin = "nisc".into();
    for (level, carried_by) in [(0usize, vec![]), (1, vec![0]), (2, vec![0, 1])] {
        let delivery = kairan_tests::chain_delivery_of(
            &tree,
            (&nisc_key, &nisc_cert),
            &advisory,
            &carried_by,
            tree.now(),
        );
        let topic = match carried_by.last() {
            None => topics::ingest_of("jp", "nisc"),
            Some(parent) => topics::deliveries(&tree.relays[*parent].config_parts.id, "jp"),
        };
        let target = carried_by.last().copied().unwrap_or(0);
        let credentials = if carried_by.is_empty() {
            tree.credentials_of("nisc").expect("origin")
        } else {
            tree.relay_publisher(target).expect("publisher")
        };
        tree.inject_as(target, &credentials, &topic, delivery.to_json()).await.expect("injected");
        let node = &tree.relays[level].handle.as_ref().expect("running");
        wait_metric(node, "kairan_deliveries_rejected_total{reason=\"revoked_key\"}", 1.0).await;
    }
    let clinic_delivery =
        kairan_tests::chain_delivery_of(&tree, (&nisc_key, &nisc_cert), &advisory, &[0, 1, 2], tree.now());
    tree.inject(2, &topics::deliveries("jp-13-chuo", "jp"), clinic_delivery.to_json())
        .await
        .expect("injected");
    wait_metric(
        tree.clinics[0].handle.as_ref().expect("clinic"),
        "kairan_deliveries_rejected_total{reason=\"revoked_key\"}",
        1.0,
    )
    .await;
    still_delivers(&mut tree, "jp", "after-attack-4").await;
    tree.shutdown().await.expect("clean shutdown");
}
