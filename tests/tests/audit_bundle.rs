//! `kairan audit advisory` / `audit bundle` / `audit verify-bundle` over the stores of a
//! running tree (issue 9): one advisory's provenance with every relay's log inclusion is
//! gathered from the national, prefectural and district relays' stores and a clinic's, and
//! verifies with the trust anchors alone; any edited piece of the bundle is refused, naming
//! the piece.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use kairan_node::audit_bundle::{AuditBundle, AuditError, collect, verify_bundle};
use kairan_node::harness::hierarchy::{Hierarchy, HierarchyBuilder};
use kairan_node::progress::{Mode, Progress};

fn quiet() -> Progress {
    Progress::with_mode("audit", 0, Mode::Quiet)
}

const SETTLE: Duration = Duration::from_secs(30);

/// A tree of one district with one clinic, two advisories published (the second one audited,
/// so that its leaf is not the first of any log), stopped so that every store is flushed.
async fn audited_tree(dir: &std::path::Path) -> (Hierarchy, String, Vec<String>, Vec<PathBuf>) {
    let mut tree = HierarchyBuilder::new(dir)
        .prefectures(1)
        .districts_per_prefecture(1)
        .clinics_per_district(1)
        .start()
        .await
        .expect("tree starts");
    tree.wait_subscribed(SETTLE).await.expect("subscribed");
    let now = tree.now();
    let scope = tree.clinics[0].config.scope.to_string();
    let (first, first_digest) = tree.sign_next(kairan_tests::advisory("jp", "audit-first", now));
    tree.publish_raw(first).await.expect("published");
    let (second, digest) = tree.sign_next(kairan_tests::advisory(&scope, "audit-second", now));
    tree.publish_raw(second).await.expect("published");
    tree.wait_for_inboxes(|_| BTreeSet::from([first_digest, digest]), SETTLE).await.expect("delivered");
    // Each relay signs a checkpoint once the commit holding the delivery is durable.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut stores: Vec<PathBuf> = vec![tree.clinics[0].config.data_dir.join("store")];
    stores.extend(tree.relays.iter().map(|relay| relay.config_parts.data_dir.clone()));
    let relays: Vec<String> = tree.relays.iter().map(|relay| relay.config_parts.id.clone()).collect();
    (tree, digest.to_string(), relays, stores)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_advisory_bundle_from_every_store_verifies_offline_and_any_edit_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (tree, digest, relays, stores) = audited_tree(dir.path()).await;
    let anchors = tree.anchors.clone();
    tree.shutdown().await.expect("clean shutdown");
    let relays: Vec<&str> = relays.iter().map(String::as_str).collect();

    // By id, from every store: the clinic's copy is the most downstream one.
    let bundle = collect(&stores, "audit-second", &anchors, &mut quiet()).expect("collected");
    assert_eq!(bundle.advisory, digest);
    let report = verify_bundle(&bundle, &anchors).expect("the bundle verifies");
    let path: Vec<&str> = report.provenance.hops.iter().map(|hop| hop.relay.as_str()).collect();
    assert_eq!(path, relays, "every hop, in path order");
    let logged: Vec<&str> = report.logs.iter().map(|log| log.node.as_str()).collect();
    assert_eq!(logged, relays, "each relay's log inclusion");
    assert!(report.unlogged.is_empty(), "{:?}", report.unlogged);
    for (log, hop) in report.logs.iter().zip(&report.provenance.hops) {
        assert_eq!(log.index + 1, hop.relay_seq, "{}: leaf relay_seq − 1", log.node);
        assert!(log.size > log.index, "{}", log.node);
    }
    assert!(
        report.coverage.as_deref().is_some_and(|c| c.contains("receipts")),
        "coverage is said to be missing"
    );

    // The bundle is a file: it round-trips through JSON unchanged and verifies again.
    let json = serde_json::to_vec(&bundle).expect("json");
    let read: AuditBundle = serde_json::from_slice(&json).expect("parses");
    assert_eq!(read, bundle);

    // From the district's store alone: one relay's evidence, the others named as unlogged.
    let district_only =
        collect(&stores[stores.len() - 1..], &digest, &anchors, &mut quiet()).expect("collected");
    let report = verify_bundle(&district_only, &anchors).expect("verifies");
    assert_eq!(report.logs.len(), 1);
    assert_eq!(report.unlogged.len(), relays.len() - 1, "{:?}", report.unlogged);

    // Nothing found.
    assert!(matches!(
        collect(&stores, "no-such-advisory", &anchors, &mut quiet()),
        Err(AuditError::NotFound(_))
    ));

    // Every edit is refused, naming the piece.
    let refused = |edited: &AuditBundle| match verify_bundle(edited, &anchors) {
        Err(AuditError::Refused { what, reason }) => format!("{what}: {reason}"),
        other => panic!("an edited bundle must be refused, got {other:?}"),
    };
    let mut edited = bundle.clone();
    edited.delivery = edited.delivery.replacen("\"sig\":\"", "\"sig\":\"AAAA", 1);
    assert!(refused(&edited).starts_with("the delivery"), "{}", refused(&edited));
    // A relay's copy changed by one space: the leaf hash no longer matches its checkpoint.
    let mut edited = bundle.clone();
    edited.logs[1].delivery = edited.logs[1].delivery.replacen(":", ": ", 1);
    assert!(refused(&edited).contains("inclusion proof"), "{}", refused(&edited));
    let mut edited = bundle.clone();
    let first = edited.logs[1].proof[0].clone();
    edited.logs[1].proof.reverse();
    edited.logs[1].proof.push(first);
    assert!(refused(&edited).contains("inclusion proof"), "{}", refused(&edited));
    let mut edited = bundle.clone();
    edited.logs[0].checkpoint = edited.logs[0].checkpoint.replacen('\n', "\n1", 1);
    assert!(refused(&edited).contains("checkpoint"), "{}", refused(&edited));
    let mut edited = bundle.clone();
    edited.logs[2].relay_seq += 1;
    assert!(refused(&edited).contains(relays[2]), "{}", refused(&edited));
    let mut edited = bundle.clone();
    // Another relay's evidence presented as this one's: its key does not sign that log.
    edited.logs[0].node = relays[1].to_owned();
    let _ = refused(&edited);
    let mut edited = bundle.clone();
    edited.advisory = edited.logs[0].checkpoint.clone();
    let _ = refused(&edited);
}
