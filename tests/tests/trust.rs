//! Trust updates through the same channel: revocation, certificate expiry and renewal, relay
//! key rotation — over a real tree.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kairan_node::harness::hierarchy::{Hierarchy, HierarchyBuilder};
use kairan_node::store::Store;
use kairan_protocol::cert::ROOT_ISSUER;
use kairan_protocol::{Advisory, Digest, Revocation, Timestamp, TrustBundle, VerifyContext, verify_delivery};

const SETTLE: Duration = Duration::from_secs(20);

fn advisory(id: &str, now: Timestamp) -> Advisory {
    kairan_tests::advisory("jp", id, now)
}

async fn tree(dir: &std::path::Path) -> Hierarchy {
    let tree = HierarchyBuilder::new(dir)
        .prefectures(2)
        .districts_per_prefecture(2)
        .clinics_per_district(2)
        .start()
        .await
        .expect("tree starts");
    tree.wait_subscribed(SETTLE).await.expect("subscribed");
    tree
}

fn everyone_has_trust(tree: &Hierarchy) -> bool {
    let relays = tree
        .relays
        .iter()
        .filter_map(|r| r.handle.as_ref())
        .all(|h| h.store().blob("trust_bundle").ok().flatten().is_some());
    let clinics = tree
        .clinics
        .iter()
        .filter_map(|c| c.handle.as_ref())
        .all(|h| h.store().blob("trust_bundle").ok().flatten().is_some());
    relays && clinics
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_origin_key_is_refused_everywhere_and_older_advisories_still_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tree = tree(dir.path()).await;
    let (bytes, before) = tree.sign_next(advisory("before-revocation", tree.now()));
    tree.publish_raw(bytes).await.expect("published");
    tree.wait_for_inboxes(|_| BTreeSet::from([before]), SETTLE).await.expect("delivered");

    // The root (2 of 3) revokes the origin key from now on.
    let effective_at = tree.now();
    let revocation =
        Revocation::of_cert(&tree.origin.cert, ROOT_ISSUER, 1, effective_at, effective_at, "key compromised")
            .expect("certificate")
            .sign(&[&tree.roots[0], &tree.roots[2]]);
    let bundle = TrustBundle {
        certs: vec![tree.origin.cert.clone()],
        revocations: vec![revocation],
        ..TrustBundle::default()
    };
    let started = Instant::now();
    tree.push_trust(bundle.to_json()).await.expect("pushed");
    while !everyone_has_trust(&tree) {
        assert!(started.elapsed() < SETTLE, "revocation did not reach every node");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "revocation reached all {} relays and {} clinics in {:?}",
        tree.relays.len(),
        tree.clinics.len(),
        started.elapsed()
    );

    // Anything the revoked key signs now is refused at the first hop and reaches nobody.
    let (bytes, after) = tree.sign_next(advisory("after-revocation", tree.now()));
    tree.publish_raw(bytes).await.expect("published");
    let deadline = Instant::now() + SETTLE;
    loop {
        let rejections =
            tree.relays[0].handle.as_ref().expect("national").store().rejections().expect("rejections");
        if let Some(rejection) = rejections.iter().find(|r| r.claimed_digest == Some(after)) {
            assert_eq!(rejection.code, "revoked_key");
            break;
        }
        assert!(Instant::now() < deadline, "national did not refuse the revoked key");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for index in 0..tree.clinics.len() {
        assert_eq!(tree.inbox(index).expect("inbox"), BTreeSet::from([before]), "only the older advisory");
    }

    // A clinic still verifies the older advisory with the revocation in force.
    let clinic = tree.clinics[0].handle.as_ref().expect("clinic");
    let record = clinic.store().get(&before).expect("get").expect("held");
    let verified_bundle = bundle.verify(&tree.anchors, tree.now()).expect("bundle verifies");
    let ctx = VerifyContext {
        anchors: &tree.anchors,
        revocations: &verified_bundle.facts().revoked,
        now: tree.now(),
    };
    verify_delivery(&record.delivery, ctx).expect("signed before the revocation: still valid");
    tree.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_a_relay_key_loses_and_rejects_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tree = tree(dir.path()).await;
    let tokyo = tree.relay_index("jp-13").expect("tokyo");
    let mut published = BTreeSet::new();
    for number in 0..12 {
        if number == 6 {
            // The districts' certificates stay those issued under the old key.
            tree.rotate_relay_key(tokyo).await.expect("rotated");
        }
        let (bytes, digest) = tree.sign_next(advisory(&format!("rotation-{number}"), tree.now()));
        tree.publish_raw(bytes).await.expect("published");
        published.insert(digest);
    }
    tree.wait_for_inboxes(|_| published.clone(), SETTLE).await.expect("every advisory arrived");
    for relay in &tree.relays {
        let rejections = relay.handle.as_ref().expect("running").store().rejections().expect("rejections");
        assert!(rejections.is_empty(), "{} rejected: {rejections:?}", relay.config_parts.id);
    }
    for clinic in &tree.clinics {
        let rejections = clinic.handle.as_ref().expect("running").store().rejections().expect("rejections");
        assert!(rejections.is_empty(), "{} rejected: {rejections:?}", clinic.config.id);
    }
    tree.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_relay_certificate_holds_deliveries_until_renewed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tree = tree(dir.path()).await;
    let tokyo = tree.relay_index("jp-13").expect("tokyo");
    tree.reissue_relay_cert(tokyo, Duration::from_secs(2)).await.expect("short-lived certificate");
    tree.wait_subscribed(SETTLE).await.expect("subscribed");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (bytes, digest) = tree.sign_next(advisory("while-expired", tree.now()));
    tree.publish_raw(bytes).await.expect("published");
    let tokyo_scope = tree.relays[tokyo].scope.clone();
    let expected = |clinic: usize| -> BTreeSet<Digest> {
        let _ = clinic;
        BTreeSet::from([digest])
    };
    // Osaka's clinics get it; Tokyo's relay holds it (unacknowledged, not rejected).
    let deadline = Instant::now() + SETTLE;
    loop {
        let osaka_done = tree
            .clinics
            .iter()
            .enumerate()
            .filter(|(_, c)| !tokyo_scope.contains(&c.config.scope))
            .all(|(i, _)| tree.inbox(i).map(|s| s.contains(&digest)).unwrap_or(false));
        if osaka_done {
            break;
        }
        assert!(Instant::now() < deadline, "Osaka did not receive it");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!tree.relays[tokyo].handle.as_ref().expect("tokyo").store().contains(&digest).expect("store"));
    assert!(
        tree.relays[tokyo]
            .handle
            .as_ref()
            .expect("tokyo")
            .store()
            .rejections()
            .expect("rejections")
            .is_empty()
    );
    // Renewal: a new certificate for the same key; the held delivery flows on.
    tree.reissue_relay_cert(tokyo, Duration::from_secs(365 * 24 * 3600)).await.expect("renewed");
    tree.wait_for_inboxes(expected, SETTLE).await.expect("delivered after renewal");
    tree.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_anchors_rotate_by_old_and_new_thresholds_through_the_control_stream() {
    use kairan_protocol::trust::{AnchorRotation, RootKey};
    use kairan_protocol::{Certificate, SecretKey, TrustAnchorsFile};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tree = tree(dir.path()).await;
    // Root-level certificates are first re-issued by keys that stay (root-1 and root-2).
    let national_cert = Certificate::decode(&tree.relays[0].config_parts.cert.payload).expect("cert");
    let reissued = national_cert.sign(&[&tree.roots[0], &tree.roots[1]]);
    tree.stop_relay(0).await.expect("stop");
    let old = std::mem::replace(&mut tree.relays[0].config_parts.cert, reissued.clone());
    tree.restart_relay(0).await.expect("restart");
    // Every relay below presents the certificates above it in its broker's TLS certificate,
    // made at start from `node.chain`: the operators put the reissued one there and restart
    // (docs/design.md, "Root rotation and TLS identities").
    for index in 1..tree.relays.len() {
        tree.stop_relay(index).await.expect("stop");
        for cert in &mut tree.relays[index].config_parts.chain {
            if *cert == old {
                *cert = reissued.clone();
            }
        }
        tree.restart_relay(index).await.expect("restart");
    }
    tree.wait_subscribed(SETTLE).await.expect("subscribed");
    // Rotation: root-3 is replaced by root-4; signed by 2 old and 2 new keys.
    let root4 = SecretKey::from_seed(&[0x44; 32]).expect("key");
    let roots = vec![
        RootKey { id: "root-1".into(), key: tree.roots[0].public().clone() },
        RootKey { id: "root-2".into(), key: tree.roots[1].public().clone() },
        RootKey { id: "root-4".into(), key: root4.public().clone() },
    ];
    let rotation =
        AnchorRotation { seq: 1, issued_at: tree.now(), anchors: TrustAnchorsFile { threshold: 2, roots } }
            .sign(&[&tree.roots[0], &tree.roots[2], &tree.roots[1], &root4]);
    let bundle = TrustBundle { rotations: vec![rotation], ..TrustBundle::default() };
    tree.push_trust(bundle.to_json()).await.expect("pushed");
    let started = Instant::now();
    while !everyone_has_trust(&tree) {
        assert!(started.elapsed() < SETTLE, "rotation did not reach every node");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Advisories still flow under the new anchors.
    let (bytes, digest) = tree.sign_next(advisory("after-rotation", tree.now()));
    tree.publish_raw(bytes).await.expect("published");
    tree.wait_for_inboxes(|_| BTreeSet::from([digest]), SETTLE)
        .await
        .expect("delivered under the new anchors");
    // A certificate signed by the retired root-3 (with root-1) no longer counts: threshold 2 of
    // the new anchors is not met by root-1 alone, so a delivery carrying it is refused.
    let origin_cert = Certificate::decode(&tree.origin.cert.payload).expect("cert");
    tree.origin.cert = origin_cert.sign(&[&tree.roots[0], &tree.roots[2]]);
    let (bytes, refused) = tree.sign_next(advisory("old-root-cert", tree.now()));
    tree.publish_raw(bytes).await.expect("published");
    let deadline = Instant::now() + SETTLE;
    loop {
        let rejections =
            tree.relays[0].handle.as_ref().expect("national").store().rejections().expect("rejections");
        if let Some(rejection) = rejections.iter().find(|r| r.claimed_digest == Some(refused)) {
            assert_eq!(rejection.code, "unknown_signer", "{}", rejection.message);
            break;
        }
        assert!(Instant::now() < deadline, "the retired root key was still accepted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tree.shutdown().await.expect("clean shutdown");
}

/// `kairan inbox` applies the revocations in force when it verifies again: a root revocation
/// of the origin key backdated to before an advisory it signed (the key was found to have
/// leaked earlier) makes every clinic's inbox refuse that advisory, naming `revoked_key`,
/// though it verified when it arrived; an edited trust copy is reported, not trusted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbox_applies_a_backdated_revocation_to_what_it_already_holds() {
    use kairan_node::inbox::listing::Inbox;
    use kairan_node::inbox::{Recipient, trust_copy_path};

    let dir = tempfile::tempdir().expect("tempdir");
    let mut tree = tree(dir.path()).await;
    let (bytes, held) = tree.sign_next(advisory("signed-with-a-leaked-key", tree.now()));
    tree.publish_raw(bytes).await.expect("published");
    tree.wait_for_inboxes(|_| BTreeSet::from([held]), SETTLE).await.expect("delivered");
    let reader = |index: usize| Recipient { clinic: tree.clinics[index].config.id.clone(), key: None };
    for index in 0..tree.clinics.len() {
        let inbox = Inbox::read_as(&tree.clinics[index].config.data_dir, &tree.anchors, &reader(index))
            .expect("inbox");
        assert!(inbox.get(&held).is_some(), "shown before the revocation");
    }

    let effective_at = tree.now().plus_secs(-3600);
    let revocation = Revocation::of_cert(
        &tree.origin.cert,
        ROOT_ISSUER,
        1,
        tree.now(),
        effective_at,
        "key leaked an hour ago",
    )
    .expect("certificate")
    .sign(&[&tree.roots[0], &tree.roots[2]]);
    let bundle = TrustBundle {
        certs: vec![tree.origin.cert.clone()],
        revocations: vec![revocation],
        ..TrustBundle::default()
    };
    tree.push_trust(bundle.to_json()).await.expect("pushed");
    let deadline = Instant::now() + SETTLE;
    while !tree.clinics.iter().all(|clinic| trust_copy_path(&clinic.config.data_dir).exists()) {
        assert!(Instant::now() < deadline, "the trust copy was not written at every clinic");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for index in 0..tree.clinics.len() {
        let data_dir = &tree.clinics[index].config.data_dir;
        let inbox = Inbox::read_as(data_dir, &tree.anchors, &reader(index)).expect("inbox");
        assert!(
            inbox.get(&held).is_none(),
            "{}: a revoked origin's advisory is not shown",
            tree.clinics[index].config.id
        );
        assert!(
            inbox.refused.iter().any(|refused| refused.reason.contains("revoked_key")),
            "{}: refused naming the reason: {:?}",
            tree.clinics[index].config.id,
            inbox.refused
        );
        assert!(
            tree.clinics[index].handle.as_ref().expect("running").store().get(&held).expect("get").is_some(),
            "the store keeps it (evidence); only display refuses it"
        );
    }
    // A trust copy edited on disk does not verify: reported, and its revocations not used.
    let data_dir = tree.clinics[0].config.data_dir.clone();
    let text = std::fs::read_to_string(trust_copy_path(&data_dir)).expect("copy");
    // The revocation's own signature, changed.
    let at = text.find("\"revocations\"").expect("the copy holds revocations");
    let edited = format!("{}{}", &text[..at], text[at..].replacen("\"sig\":\"", "\"sig\":\"AAAA", 1));
    assert_ne!(edited, text, "the revocation has a signature");
    std::fs::write(trust_copy_path(&data_dir), edited).expect("edit");
    let inbox = Inbox::read_as(&data_dir, &tree.anchors, &reader(0)).expect("inbox");
    assert!(
        inbox.refused.iter().any(|r| r.file == "trust-bundle.json" && r.reason.contains("does not verify")),
        "{:?}",
        inbox.refused
    );
    tree.shutdown().await.expect("clean shutdown");
}
