//! Recovery measurements for `kairan bench --recovery`: how long a child takes to catch up a
//! backlog it missed, and how long a revocation takes to reach every clinic of the demo tree.
//! Real in-process nodes over real MQTT sockets and real stores, like the demo.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kairan_protocol::cert::ROOT_ISSUER;
use kairan_protocol::{Advisory, Revocation, TrustBundle, fixtures};

use super::hierarchy::HierarchyBuilder;
use crate::error::CliError;
use crate::store::Store;

pub(crate) fn advisory(id: String, now: kairan_protocol::Timestamp) -> Advisory {
    let mut advisory = fixtures::sample_advisory("mhlw", 1, None);
    advisory.id = id;
    advisory.issued_at = now;
    advisory.expires_at = now.plus_secs(7 * 24 * 3600);
    advisory
}

/// Whether `store` holds at least `count` deliveries, read without decoding the store: relay
/// sequence numbers run from 1 without holes, so it does when one is stored past `count - 1`.
/// (Decoding every held delivery at each poll, 20 ms apart, took a core's worth of the CPU
/// the nodes under measurement were sharing.)
fn holds_at_least(store: &impl Store, count: usize) -> bool {
    count == 0 || store.log_after(count as u64 - 1, 1).is_ok_and(|after| !after.is_empty())
}

/// Result of the catch-up measurement.
#[derive(Debug, Clone)]
pub struct CatchUpFigures {
    /// Advisories missed.
    pub missed: usize,
    /// Time to publish them while the district was down (national and prefecture storing).
    pub publish_time: Duration,
    /// From the district's restart until it held them all.
    pub district_caught_up: Duration,
    /// From the district's restart until its clinic held them all.
    pub clinic_caught_up: Duration,
}

/// A district relay is stopped, `missed` advisories are published, the district is restarted:
/// how long until it, and its clinic, hold them all.
pub async fn catch_up(missed: usize) -> Result<CatchUpFigures, CliError> {
    let dir = tempfile::tempdir().map_err(|e| CliError::Failed(e.to_string()))?;
    let mut tree = HierarchyBuilder::new(dir.path())
        .prefectures(1)
        .districts_per_prefecture(1)
        .clinics_per_district(1)
        .start()
        .await?;
    tree.wait_subscribed(Duration::from_secs(20)).await?;
    let district = tree.relay_index("jp-13-chuo").ok_or_else(|| CliError::Failed("no district".into()))?;
    tree.stop_relay(district).await?;
    let started = Instant::now();
    let mut expected = BTreeSet::new();
    let now = tree.now();
    let mut backlog = Vec::with_capacity(missed);
    for number in 0..missed {
        let (bytes, digest) = tree.sign_next(advisory(format!("backlog-{number}"), now));
        backlog.push(bytes);
        expected.insert(digest);
    }
    tree.publish_many(backlog, 32).await?;
    // Wait until the prefecture holds them all (the backlog exists upstream).
    let prefecture = tree.relay_index("jp-13").ok_or_else(|| CliError::Failed("no prefecture".into()))?;
    while !tree.relays[prefecture].handle.as_ref().is_some_and(|h| holds_at_least(h.store(), missed)) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let publish_time = started.elapsed();
    let restarted = Instant::now();
    tree.restart_relay(district).await?;
    while !tree.relays[district].handle.as_ref().is_some_and(|h| holds_at_least(h.store(), missed)) {
        if restarted.elapsed() > Duration::from_secs(1800) {
            return Err(CliError::Failed(format!("the district did not hold all {missed} after 30 min")));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let district_caught_up = restarted.elapsed();
    while !tree.clinics[0].handle.as_ref().is_some_and(|h| holds_at_least(h.store(), missed)) {
        if restarted.elapsed() > Duration::from_secs(1800) {
            return Err(CliError::Failed(format!("the clinic did not hold all {missed} after 30 min")));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let clinic_caught_up = restarted.elapsed();
    // Once the count is reached, check the clinic holds exactly the backlog (one full read).
    tree.wait_for_inboxes(|_| expected.clone(), Duration::from_secs(60)).await?;
    tree.shutdown().await?;
    Ok(CatchUpFigures { missed, publish_time, district_caught_up, clinic_caught_up })
}

/// The demo tree (2 prefectures × 2 districts × 3 clinics): a root revocation is pushed to
/// the national control topic; how long until every relay and clinic has it stored.
pub async fn revocation_reach() -> Result<Duration, CliError> {
    let dir = tempfile::tempdir().map_err(|e| CliError::Failed(e.to_string()))?;
    let tree = HierarchyBuilder::new(dir.path()).start().await?;
    tree.wait_subscribed(Duration::from_secs(20)).await?;
    let now = tree.now();
    let revocation = Revocation::of_cert(&tree.origin.cert, ROOT_ISSUER, 1, now, now, "benchmark")
        .map_err(|e| CliError::Failed(e.to_string()))?
        .sign(&[&tree.roots[0], &tree.roots[1]]);
    let bundle = TrustBundle {
        certs: vec![tree.origin.cert.clone()],
        revocations: vec![revocation],
        rotations: Vec::new(),
    };
    let started = Instant::now();
    tree.push_trust(bundle.to_json()).await?;
    loop {
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
        if relays && clinics {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            return Err(CliError::Failed("revocation did not reach every node in 60 s".into()));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let reach = started.elapsed();
    tree.shutdown().await?;
    Ok(reach)
}
