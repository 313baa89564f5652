//! Signed heads over a real tree: a withheld advisory is noticed and reported by every
//! clinic, and a feed with no fresh head is reported frozen.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kairan_node::harness::hierarchy::{Hierarchy, HierarchyBuilder};
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
