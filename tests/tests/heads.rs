//! Signed heads over a real tree: a withheld advisory is noticed and reported by every
//! clinic, and a feed with no fresh head is reported frozen. Chains and heads are per
//! (origin, scope): a district learns nothing of the advisories of a sibling's scope (no gap,
//! no frozen feed, no head), while one withheld from its own chain is still reported.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kairan_node::harness::hierarchy::{Hierarchy, HierarchyBuilder, Level};
use kairan_node::store::Store;
use kairan_protocol::{Advisory, Timestamp};

const SETTLE: Duration = Duration::from_secs(20);

fn advisory(id: &str, now: Timestamp) -> Advisory {
    kairan_tests::advisory("jp", id, now)
}

async fn tree(dir: &std::path::Path) -> Hierarchy {
    let tree = HierarchyBuilder::new(dir)
        .prefectures(1)
        .districts_per_prefecture(2)
        .clinics_per_district(2)
        .start()
        .await
        .expect("tree starts");
    tree.wait_subscribed(SETTLE).await.expect("subscribed");
    tree
}

async fn wait_all_clinics(
    tree: &Hierarchy,
    what: &str,
    check: impl Fn(kairan_node::machine::Counters) -> bool,
) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let mut all = true;
        for clinic in &tree.clinics {
            all &= check(clinic.handle.as_ref().expect("clinic").counters().await);
        }
        if all {
            return;
        }
        assert!(Instant::now() < deadline, "not every clinic {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withheld_advisory_is_reported_by_every_clinic_and_caught_up_when_released() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tree = tree(dir.path()).await;
    let (first, first_digest) = tree.sign_next(advisory("first", tree.now()));
    tree.publish_raw(first).await.expect("published");
    tree.wait_for_inboxes(|_| BTreeSet::from([first_digest]), SETTLE).await.expect("first delivered");
    // The second advisory is signed, and the head says so, but the advisory is withheld.
    let (withheld, withheld_digest) = tree.sign_next(advisory("withheld", tree.now()));
    tree.publish_head(Duration::from_secs(600)).await.expect("head published");
    wait_all_clinics(&tree, "reported the gap", |c| c.gaps_reported >= 1).await;
    // Released: every clinic catches up and holds both.
    tree.publish_raw(withheld).await.expect("published");
    tree.wait_for_inboxes(|_| BTreeSet::from([first_digest, withheld_digest]), SETTLE)
        .await
        .expect("caught up");
    tree.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_without_a_fresh_head_is_reported_frozen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = tree(dir.path()).await;
    // A head that expires in one second, and no fresher one: the feed is frozen.
    tree.publish_head(Duration::from_secs(1)).await.expect("head published");
    wait_all_clinics(&tree, "reported the frozen feed", |c| c.feeds_frozen >= 1).await;
    tree.shutdown().await.expect("clean shutdown");
}

/// Counters of relay `index` and of every clinic of it.
async fn district_counters(tree: &Hierarchy, index: usize) -> Vec<(String, kairan_node::machine::Counters)> {
    let relay = &tree.relays[index];
    let mut all =
        vec![(relay.config_parts.id.clone(), relay.handle.as_ref().expect("relay").counters().await)];
    for clinic in tree.clinics.iter().filter(|c| c.district == index) {
        all.push((clinic.config.id.clone(), clinic.handle.as_ref().expect("clinic").counters().await));
    }
    all
}

async fn wait_district(
    tree: &Hierarchy,
    index: usize,
    what: &str,
    check: impl Fn(&kairan_node::machine::Counters) -> bool,
) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let counters = district_counters(tree, index).await;
        if counters.iter().all(|(_, c)| check(c)) {
            return;
        }
        assert!(Instant::now() < deadline, "not every node of the district {what}: {counters:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sibling_districts_chain_is_invisible_while_a_withheld_advisory_of_the_own_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tree = tree(dir.path()).await;
    let districts: Vec<usize> =
        (0..tree.relays.len()).filter(|i| tree.relays[*i].level == Level::District).collect();
    let (a, b) = (districts[0], districts[1]);
    let (scope_a, scope_b) = (tree.relays[a].scope.clone(), tree.relays[b].scope.clone());
    // Several advisories for district A only, then the head of A's chain. (Headed once they
    // are delivered: a head that overtakes its advisory is a gap at A until catch-up closes
    // it, and A's own chain is to be seen complete below.)
    let mut held_by_a = BTreeSet::new();
    for n in 1..=3 {
        let (bytes, digest) =
            tree.sign_next(kairan_tests::advisory(&scope_a.to_string(), &format!("a{n}"), tree.now()));
        tree.publish_raw(bytes).await.expect("published");
        held_by_a.insert(digest);
    }
    let clinic_districts: Vec<usize> = tree.clinics.iter().map(|c| c.district).collect();
    let in_a = |clinic: usize| clinic_districts[clinic] == a;
    tree.wait_for_inboxes(|c| if in_a(c) { held_by_a.clone() } else { BTreeSet::new() }, SETTLE)
        .await
        .expect("A's advisories reach A's clinics only");
    tree.publish_head_of(&scope_a, Duration::from_secs(600)).await.expect("head published");
    // Then a head of A's chain that goes stale at once: A's feed is frozen.
    tree.publish_head_of(&scope_a, Duration::from_secs(1)).await.expect("head published");
    wait_district(&tree, a, "saw A's heads and its frozen feed", |c| {
        c.heads_newer >= 1 && c.feeds_frozen >= 1
    })
    .await;
    // Catch-up rounds (every 2 s) would carry A's heads to B if parents did not filter them.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for (node, counters) in district_counters(&tree, b).await {
        assert_eq!(
            (
                counters.gaps_reported,
                counters.feeds_frozen,
                counters.heads_newer,
                counters.heads_out_of_scope
            ),
            (0, 0, 0, 0),
            "{node} learned something of A's chain: {counters:?}"
        );
    }
    let b_store = tree.relays[b].handle.as_ref().expect("b").store().all().expect("store");
    assert!(b_store.is_empty(), "B holds none of A's advisories");
    for (node, counters) in district_counters(&tree, a).await {
        assert_eq!(counters.gaps_reported, 0, "{node}: A's own chain is complete");
    }
    // B's own chain: the first advisory delivered, the second signed and headed, but withheld.
    let (b1, b1_digest) = tree.sign_next(kairan_tests::advisory(&scope_b.to_string(), "b1", tree.now()));
    tree.publish_raw(b1).await.expect("published");
    tree.wait_for_inboxes(|c| if in_a(c) { held_by_a.clone() } else { BTreeSet::from([b1_digest]) }, SETTLE)
        .await
        .expect("b1 reaches B's clinics");
    let (_withheld, _) = tree.sign_next(kairan_tests::advisory(&scope_b.to_string(), "b2", tree.now()));
    tree.publish_head_of(&scope_b, Duration::from_secs(600)).await.expect("head published");
    wait_district(&tree, b, "reported the withheld advisory", |c| c.gaps_reported >= 1).await;
    for (node, counters) in district_counters(&tree, a).await {
        assert_eq!((counters.gaps_reported, counters.heads_out_of_scope), (0, 0), "{node} saw B's chain");
    }
    tree.shutdown().await.expect("clean shutdown");
}
