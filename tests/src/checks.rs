//! What the attack tests observe on a running tree: refusals counted by the nodes' metrics
//! (with their reason codes), the trust each node holds, the catch-up cursor, and whether a
//! genuine advisory still reaches every clinic afterwards.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kairan_node::handle::NodeHandle;
use kairan_node::harness::hierarchy::Hierarchy;
use kairan_node::store::{SYNC_CURSOR, Store, TRUST_BLOB};
use kairan_protocol::{
    Certificate, Digest, Envelope, PublicKey, Revocation, Role, Scope, SecretKey, Timestamp, TrustBundle,
};

/// How long a tree gets to show an expected effect.
pub const SETTLE: Duration = Duration::from_secs(30);

/// The running relay `id` of `tree`.
pub fn relay<'t>(tree: &'t Hierarchy, id: &str) -> &'t NodeHandle {
    let index = tree.relay_index(id).unwrap_or_else(|| panic!("no relay {id}"));
    tree.relays[index].handle.as_ref().unwrap_or_else(|| panic!("relay {id} is stopped"))
}

/// The running clinic `id` of `tree`.
pub fn clinic<'t>(tree: &'t Hierarchy, id: &str) -> &'t NodeHandle {
    tree.clinics
        .iter()
        .find(|c| c.config.id == id)
        .and_then(|c| c.handle.as_ref())
        .unwrap_or_else(|| panic!("clinic {id} is not running"))
}

/// Index of clinic `id`.
pub fn clinic_index(tree: &Hierarchy, id: &str) -> usize {
    tree.clinics.iter().position(|c| c.config.id == id).unwrap_or_else(|| panic!("no clinic {id}"))
}

/// Polls `condition` until it holds; panics with `what` after [`SETTLE`].
pub async fn wait_until(what: &str, condition: impl FnMut() -> bool) {
    wait_until_within(what, SETTLE, condition).await;
}

/// Polls `condition` until it holds; panics with `what` after `timeout`.
pub async fn wait_until_within(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The value of the series written exactly as `series` (name and labels) in `node`'s metrics;
/// 0 when absent. The tree must be built `with_metrics()`.
pub async fn metric(node: &NodeHandle, series: &str) -> f64 {
    let addr: SocketAddr = node.metrics.unwrap_or_else(|| panic!("{} serves no metrics", node.id));
    let (status, body) = kairan_node::metrics::http::get(addr, "/metrics").await.expect("scrape");
    assert_eq!(status, 200, "{}: /metrics answered {status}", node.id);
    body.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok()).unwrap_or(0.0)
}

/// Waits until `node`'s `series` is at least `at_least`; returns its value.
pub async fn wait_metric(node: &NodeHandle, series: &str, at_least: f64) -> f64 {
    let deadline = Instant::now() + SETTLE;
    loop {
        let value = metric(node, series).await;
        if value >= at_least {
            return value;
        }
        assert!(Instant::now() < deadline, "{}: {series} stayed at {value} (< {at_least})", node.id);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The trust bundle `node` holds durably (empty when none).
pub fn stored_trust(node: &NodeHandle) -> TrustBundle {
    match node.store().blob(TRUST_BLOB).expect("store") {
        Some(bytes) => TrustBundle::from_json(&bytes).expect("stored bundle parses"),
        None => TrustBundle::default(),
    }
}

/// The digests of the certificates revoked by the statements in `bundle`.
pub fn revoked_certs(bundle: &TrustBundle) -> BTreeSet<Digest> {
    bundle
        .revocations
        .iter()
        .map(|envelope| {
            let revocation: Revocation = serde_json::from_slice(&envelope.payload).expect("revocation");
            revocation.cert
        })
        .collect()
}

/// `node`'s catch-up cursor in its parent's log, as stored.
pub fn sync_cursor(node: &NodeHandle) -> u64 {
    node.store().cursor(SYNC_CURSOR).expect("store")
}

/// Publishes a fresh advisory of the tree's origin for `scope` and returns its digest.
pub async fn publish(tree: &mut Hierarchy, scope: &str, id: &str) -> Digest {
    let (bytes, digest) = tree.sign_next(crate::advisory(scope, id, tree.now()));
    tree.publish_raw(bytes).await.expect("the origin publishes");
    digest
}

/// Waits until every running clinic whose scope overlaps `scope` holds `digest`.
pub async fn wait_delivered(tree: &Hierarchy, digest: Digest, scope: &str) {
    let scope = Scope::parse(scope).expect("scope");
    let clinics = tree.clinics_in(&scope);
    let deadline = Instant::now() + SETTLE;
    loop {
        let missing: Vec<&str> = clinics
            .iter()
            .filter(|i| tree.clinics[**i].handle.is_some())
            .filter(|i| !tree.inbox(**i).expect("inbox").contains(&digest))
            .map(|i| tree.clinics[*i].config.id.as_str())
            .collect();
        if missing.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "{digest} did not reach {missing:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The genuine origin still reaches every clinic in `scope`: publishes and waits.
pub async fn still_delivers(tree: &mut Hierarchy, scope: &str, id: &str) -> Digest {
    let digest = publish(tree, scope, id).await;
    wait_delivered(tree, digest, scope).await;
    digest
}

/// A certificate for `key` signed by relay `issuer` (`issuer_key`), valid over `window`: what a
/// relay — or a hostile one — mints.
pub fn mint(
    issuer: (&str, &SecretKey),
    subject: &str,
    key: &PublicKey,
    role: Role,
    scope: &str,
    window: (Timestamp, Timestamp),
) -> Envelope {
    let scope = Scope::parse(scope).expect("scope");
    Certificate::for_key(format!("{}-{subject}", issuer.0), issuer.0, subject, key, role, &scope, window)
        .sign(&[issuer.1])
}

/// From an hour before `now` to a year after it.
pub fn a_year_from(now: Timestamp) -> (Timestamp, Timestamp) {
    (now.plus_secs(-3600), now.plus_secs(365 * 24 * 3600))
}

/// A bundle in which relay `revoker` of `tree` revokes `cert` (which chains to it through
/// `between`), carrying the certificates the statement needs.
pub fn relay_statement(
    tree: &Hierarchy,
    revoker: usize,
    cert: &Envelope,
    between: &[Envelope],
    times: (Timestamp, Timestamp),
) -> TrustBundle {
    let id = &tree.relays[revoker].config_parts.id;
    let (issued_at, effective_at) = times;
    let revocation =
        Revocation::of_cert(cert, id, 1, issued_at, effective_at, "hostile").expect("a certificate");
    let mut certs = vec![cert.clone()];
    certs.extend_from_slice(between);
    certs.extend(chain_of(tree, revoker));
    let key = tree.relay_key(revoker).expect("relay key");
    TrustBundle { certs, revocations: vec![revocation.sign(&[&key])], rotations: Vec::new() }
}

/// A bundle in which the root (2 of 3) revokes `cert`, carrying it and `chain` (the
/// certificates above it, if a relay issued it), effective from `effective_at`.
pub fn root_statement(
    tree: &Hierarchy,
    cert: &Envelope,
    chain: &[Envelope],
    effective_at: Timestamp,
) -> TrustBundle {
    let now = tree.now();
    let revocation = Revocation::of_cert(
        cert,
        kairan_protocol::cert::ROOT_ISSUER,
        1,
        now,
        effective_at,
        "key compromised",
    )
    .expect("a certificate");
    let mut certs = vec![cert.clone()];
    certs.extend_from_slice(chain);
    TrustBundle {
        certs,
        revocations: vec![revocation.sign(&[&tree.roots[0], &tree.roots[1]])],
        rotations: Vec::new(),
    }
}

/// A fresh key derived from `label` (deterministic, distinct per label).
pub fn key(label: &str) -> SecretKey {
    use sha2::Digest as _;
    let seed: [u8; 32] = sha2::Sha256::digest(label.as_bytes()).into();
    SecretKey::from_seed(&seed).expect("key")
}

/// The certificates of relay `index` and of every relay above it (what its statements carry).
pub fn chain_of(tree: &Hierarchy, index: usize) -> Vec<Envelope> {
    let mut certs = vec![tree.relays[index].config_parts.cert.clone()];
    certs.extend(tree.relays[index].config_parts.chain.iter().cloned());
    certs
}
