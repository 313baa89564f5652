//! [`NodeMetrics`]: one node's metrics, updated from the machine's [`Event`]s and the driver's
//! commit timings, rendered in the Prometheus text format (0.0.4) on each scrape.
//!
//! Each node has a recorder of its own (never the process-global one): the harness runs many
//! nodes in one process. Values derived from time — head ages, active children — and from
//! the disk are computed when scraped.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, Label, Metadata, Recorder, SharedString};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use kairan_protocol::Timestamp;
use kairan_protocol::sequence::ChainId;

use super::health::Health;
use super::names::{self as n, Kind};
use crate::machine::{Event, SYNC_SOURCE};

static METADATA: Metadata<'static> = Metadata::new("kairan_node", metrics::Level::INFO, None);

/// Whether a node is a relay or a clinic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// A relay node (`kairan node`).
    Relay,
    /// A clinic subscriber (`kairan clinic`).
    Clinic,
}

/// What is remembered between events to compute values at scrape time.
#[derive(Debug, Default)]
struct State {
    /// Newest head of each chain: its issued_at.
    heads: BTreeMap<ChainId, Timestamp>,
    /// Last catch-up request of each tracked child.
    children: HashMap<String, Timestamp>,
    /// Reason values seen, per metric (bounded by [`n::MAX_REASONS`]).
    reasons: BTreeSet<(&'static str, String)>,
}

/// One node's metrics.
#[derive(Debug)]
pub struct NodeMetrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    health: Health,
    data_dir: PathBuf,
    active_window_ms: i64,
    commit: Histogram,
    store_deliveries: Gauge,
    state: Mutex<State>,
}

impl NodeMetrics {
    /// Metrics of node `id`; `data_dir` is measured at each scrape; a child counts as active
    /// for two sync intervals after its request.
    pub fn new(kind: NodeKind, id: &str, data_dir: PathBuf, sync_interval: Duration) -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(n::COMMIT_DURATION.into()), n::COMMIT_BUCKETS)
            .map(PrometheusBuilder::build_recorder)
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        for def in n::ALL {
            let help = SharedString::const_str(def.help);
            match def.kind {
                Kind::Counter => recorder.describe_counter(def.name.into(), None, help),
                Kind::Gauge => recorder.describe_gauge(def.name.into(), None, help),
                Kind::Histogram => recorder.describe_histogram(def.name.into(), None, help),
            }
        }
        let handle = recorder.handle();
        let window = sync_interval.saturating_mul(2).as_millis();
        let metrics = Self {
            commit: recorder.register_histogram(&Key::from_static_name(n::COMMIT_DURATION), &METADATA),
            store_deliveries: recorder.register_gauge(&Key::from_static_name(n::STORE_DELIVERIES), &METADATA),
            recorder,
            handle,
            health: Health::new(kind),
            data_dir,
            active_window_ms: i64::try_from(window).unwrap_or(i64::MAX),
            state: Mutex::new(State::default()),
        };
        let kind_label = match kind {
            NodeKind::Relay => "relay",
            NodeKind::Clinic => "clinic",
        };
        metrics.gauge(n::NODE_INFO, &[("id", id), ("kind", kind_label)]).set(1.0);
        // Counters an alert takes a rate of exist from the start, at zero.
        for name in [
            n::DUPLICATES,
            n::FORKS,
            n::FEEDS_FROZEN,
            n::TRUST_UPDATES,
            n::HELD,
            n::DEFERRED,
            n::STORE_ANOMALIES,
            n::LOG_FORKS,
        ] {
            metrics.counter(name, &[]).increment(0);
        }
        metrics.counter(n::ACCEPTED, &[("path", "live")]).increment(0);
        metrics.counter(n::ACCEPTED, &[("path", "catch_up")]).increment(0);
        metrics.counter(n::GAPS, &[("found_by", "sequence")]).increment(0);
        metrics.counter(n::GAPS, &[("found_by", "head")]).increment(0);
        if kind == NodeKind::Relay {
            metrics.counter(n::FORWARDED, &[]).increment(0);
            metrics.counter(n::SYNC_REQUESTS, &[("outcome", "answered")]).increment(0);
            metrics.gauge(n::CHILDREN_ACTIVE, &[]).set(0.0);
        }
        metrics
    }

    /// Readiness of the node.
    pub fn health(&self) -> &Health {
        &self.health
    }

    fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
        let labels: Vec<Label> = labels.iter().map(|(k, v)| Label::new(*k, (*v).to_owned())).collect();
        Key::from_parts(name, labels)
    }

    fn counter(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Counter {
        self.recorder.register_counter(&Self::key(name, labels), &METADATA)
    }

    fn gauge(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Gauge {
        self.recorder.register_gauge(&Self::key(name, labels), &METADATA)
    }

    /// The gauge `name` of one chain (labels `origin`, `scope`).
    fn chain_gauge(&self, name: &'static str, chain: &ChainId) -> Gauge {
        let scope = chain.scope.to_string();
        self.gauge(name, &[("origin", &chain.origin), ("scope", &scope)])
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts `code` under `metric`'s `reason` label, keeping at most [`n::MAX_REASONS`] values.
    fn count_reason(&self, metric: &'static str, code: &str) {
        let mut label = n::reason_label(code).to_owned();
        {
            let mut state = self.state();
            if !state.reasons.contains(&(metric, label.clone())) {
                if state.reasons.iter().filter(|(m, _)| *m == metric).count() >= n::MAX_REASONS {
                    label = "other".into();
                }
                state.reasons.insert((metric, label.clone()));
            }
        }
        self.counter(metric, &[("reason", &label)]).increment(1);
    }

    /// The store held `held` deliveries when it was opened.
    pub fn store_opened(&self, held: usize) {
        self.store_deliveries.set(held as f64);
        self.health.store_opened();
    }

    /// A commit took `elapsed` from start to completion.
    pub fn observe_commit(&self, elapsed: Duration) {
        self.commit.record(elapsed.as_secs_f64());
    }

    /// Counts what `event` says.
    pub fn observe(&self, event: &Event, now: Timestamp) {
        match event {
            Event::Accepted(accepted) => {
                let path = if accepted.source == SYNC_SOURCE { "catch_up" } else { "live" };
                self.counter(n::ACCEPTED, &[("path", path)]).increment(1);
                self.store_deliveries.increment(1.0);
            }
            Event::Duplicate { .. } => self.counter(n::DUPLICATES, &[]).increment(1),
            Event::Rejected(rejection) => self.count_reason(n::REJECTED, &rejection.code),
            Event::Fork(_) => self.counter(n::FORKS, &[]).increment(1),
            Event::Held { .. } => self.counter(n::HELD, &[]).increment(1),
            Event::Deferred { .. } => self.counter(n::DEFERRED, &[]).increment(1),
            Event::Gap { from_head, .. } => {
                let found_by = if *from_head { "head" } else { "sequence" };
                self.counter(n::GAPS, &[("found_by", found_by)]).increment(1);
            }
            Event::HeadNewer { chain, seq, issued_at } => {
                let mut state = self.state();
                if state.heads.contains_key(chain) || state.heads.len() < n::MAX_CHAINS {
                    state.heads.insert(chain.clone(), *issued_at);
                    drop(state);
                    self.chain_gauge(n::HEAD_SEQUENCE, chain).set(*seq as f64);
                    self.chain_gauge(n::FEED_FROZEN, chain).set(0.0);
                }
            }
            Event::HeadRefused(rejection) => self.count_reason(n::HEADS_REFUSED, &rejection.code),
            Event::FeedFrozen { chain, .. } => {
                self.counter(n::FEEDS_FROZEN, &[]).increment(1);
                if self.state().heads.contains_key(chain) {
                    self.chain_gauge(n::FEED_FROZEN, chain).set(1.0);
                }
            }
            Event::TrustUpdated { revoked_keys, .. } => {
                self.counter(n::TRUST_UPDATES, &[]).increment(1);
                self.gauge(n::TRUST_REVOKED_KEYS, &[]).set(*revoked_keys as f64);
            }
            Event::TrustRefused { code, .. } => self.count_reason(n::TRUST_REFUSED, code),
            Event::TrustStoreWarning(_) | Event::StalePage { .. } => {}
            Event::CatchUpPage { cursor, parent_latest, .. } => {
                self.counter(n::CATCHUP_PAGES, &[]).increment(1);
                self.gauge(n::CATCHUP_CURSOR, &[]).set(*cursor as f64);
                self.gauge(n::CATCHUP_PARENT_LATEST, &[]).set(*parent_latest as f64);
                self.gauge(n::CATCHUP_BEHIND, &[]).set(parent_latest.saturating_sub(*cursor) as f64);
                self.gauge(n::CATCHUP_LAST_PAGE, &[]).set(seconds(now));
            }
            Event::ParentBehind { .. } => self.counter(n::CATCHUP_PARENT_BEHIND, &[]).increment(1),
            Event::PageRefused(_) => self.counter(n::CATCHUP_PAGES_REFUSED, &[]).increment(1),
            Event::SyncAnswered { child, after, last_relay_seq, .. } => {
                self.counter(n::SYNC_REQUESTS, &[("outcome", "answered")]).increment(1);
                if self.track_child(child, now) {
                    let lag = last_relay_seq.saturating_sub(*after) as f64;
                    self.gauge(n::CHILD_LAG, &[("child", child)]).set(lag);
                    self.gauge(n::CHILD_LAST_REQUEST, &[("child", child)]).set(seconds(now));
                }
            }
            Event::SyncDropped { child, reason } => {
                self.counter(n::SYNC_REQUESTS, &[("outcome", n::drop_outcome(reason))]).increment(1);
                self.track_child(child, now);
            }
            Event::Throttling { .. } => self.counter(n::THROTTLED, &[]).increment(1),
            Event::Forwarded { .. } => self.counter(n::FORWARDED, &[]).increment(1),
            Event::StoreAnomaly(_) => self.counter(n::STORE_ANOMALIES, &[]).increment(1),
            Event::LogFork(_) => self.counter(n::LOG_FORKS, &[]).increment(1),
            Event::CheckpointSigned { .. }
            | Event::ParentLogVerified { .. }
            | Event::ParentLogStale { .. }
            | Event::InclusionVerified { .. }
            | Event::ParentLogRefused(_) => {}
        }
    }

    /// Notes a request of `child` at `now`; false if the child is past the series limit.
    fn track_child(&self, child: &str, now: Timestamp) -> bool {
        let mut state = self.state();
        if let Some(last) = state.children.get_mut(child) {
            *last = now;
            return true;
        }
        if state.children.len() >= n::MAX_CHILDREN {
            drop(state);
            self.counter(n::CHILDREN_UNTRACKED, &[]).increment(1);
            return false;
        }
        state.children.insert(child.to_owned(), now);
        true
    }

    /// Refreshes what is computed at scrape time and renders the exposition. Walks the data
    /// directory: call it off the async runtime.
    pub fn render(&self, now: Timestamp) -> String {
        let disk = super::disk::usage(&self.data_dir);
        self.gauge(n::STORE_DISK_BYTES, &[]).set(disk as f64);
        let (ready, subscribed, downstream) = self.health.snapshot();
        self.gauge(n::READY, &[]).set(f64::from(u8::from(ready.is_ok())));
        self.gauge(n::UPSTREAM_SUBSCRIBED, &[]).set(f64::from(u8::from(subscribed)));
        if let Some(up) = downstream {
            self.gauge(n::DOWNSTREAM_CONNECTED, &[]).set(f64::from(u8::from(up)));
        }
        let (heads, active) = {
            let state = self.state();
            let active = state
                .children
                .values()
                .filter(|last| now.unix_ms() - last.unix_ms() <= self.active_window_ms)
                .count();
            (state.heads.clone(), active)
        };
        for (chain, issued_at) in &heads {
            let age = (now.unix_ms() - issued_at.unix_ms()) as f64 / 1000.0;
            self.chain_gauge(n::HEAD_AGE, chain).set(age);
        }
        if self.health.kind() == NodeKind::Relay {
            self.gauge(n::CHILDREN_ACTIVE, &[]).set(active as f64);
        }
        self.handle.render()
    }

    /// Drains histogram samples into their buckets (call it periodically: samples gather in
    /// memory until then).
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }
}

fn seconds(at: Timestamp) -> f64 {
    at.unix_ms() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Rejection;

    fn rejection(code: &str) -> Event {
        Event::Rejected(Rejection {
            at: Timestamp::from_unix_ms(0),
            claimed_digest: None,
            code: code.into(),
            message: String::new(),
            source: "t".into(),
            size: 0,
        })
    }

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn events_move_counters_and_gauges() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let metrics =
            NodeMetrics::new(NodeKind::Relay, "jp-13", dir.path().to_owned(), Duration::from_secs(10));
        let now = Timestamp::from_unix_ms(1_000_000);
        metrics.store_opened(5);
        metrics.observe(&rejection("bad_signature"), now);
        metrics.observe(&rejection("bad_signature"), now);
        metrics.observe(&rejection("Not A Code"), now);
        let chain = || ChainId::new("o", kairan_protocol::Scope::parse("jp/13").expect("scope"));
        metrics.observe(&Event::Gap { chain: chain(), from: 2, to: 3, from_head: true }, now);
        metrics.observe(&Event::HeadNewer { chain: chain(), seq: 3, issued_at: now.plus_secs(-90) }, now);
        metrics.observe(&Event::FeedFrozen { chain: chain(), seq: 3, expired_at: now }, now);
        let answered = |child: &str, after| Event::SyncAnswered {
            child: child.into(),
            after,
            sent: 0,
            scanned_upto: after,
            last_relay_seq: 40,
        };
        metrics.observe(&answered("c1", 30), now);
        metrics.observe(&answered("c2", 40), now.plus_secs(-25));
        metrics
            .observe(&Event::SyncDropped { child: "c3".into(), reason: "over the rate limit".into() }, now);
        metrics.observe_commit(Duration::from_millis(3));
        metrics.upkeep();
        let text = metrics.render(now);
        assert_eq!(value(&text, "kairan_deliveries_rejected_total{reason=\"bad_signature\"}"), Some(2.0));
        assert_eq!(value(&text, "kairan_deliveries_rejected_total{reason=\"other\"}"), Some(1.0));
        assert_eq!(value(&text, "kairan_gaps_total{found_by=\"head\"}"), Some(1.0));
        assert_eq!(value(&text, "kairan_gaps_total{found_by=\"sequence\"}"), Some(0.0));
        assert_eq!(value(&text, "kairan_head_age_seconds{origin=\"o\",scope=\"jp/13\"}"), Some(90.0));
        assert_eq!(value(&text, "kairan_feed_frozen{origin=\"o\",scope=\"jp/13\"}"), Some(1.0));
        assert_eq!(value(&text, "kairan_relay_child_lag_entries{child=\"c1\"}"), Some(10.0));
        assert_eq!(value(&text, "kairan_relay_child_lag_entries{child=\"c2\"}"), Some(0.0));
        assert_eq!(value(&text, "kairan_relay_sync_requests_total{outcome=\"rate_limited\"}"), Some(1.0));
        // c1, c2 asked within two sync intervals (20 s) of `now`: c2 at -25 s did not.
        assert_eq!(value(&text, "kairan_relay_children_active"), Some(2.0));
        assert_eq!(value(&text, "kairan_store_deliveries"), Some(5.0));
        assert_eq!(value(&text, "kairan_commit_duration_seconds_count"), Some(1.0));
        assert_eq!(value(&text, "kairan_commit_duration_seconds_bucket{le=\"0.005\"}"), Some(1.0));
        assert_eq!(value(&text, "kairan_ready"), Some(0.0));
        assert!(text.contains("# HELP kairan_deliveries_accepted_total "), "{text}");
        assert!(text.contains("# TYPE kairan_commit_duration_seconds histogram"), "{text}");
        Ok(())
    }

    #[test]
    fn children_past_the_limit_get_no_series() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let metrics = NodeMetrics::new(NodeKind::Relay, "r", dir.path().to_owned(), Duration::from_secs(10));
        let now = Timestamp::from_unix_ms(0);
        for i in 0..=n::MAX_CHILDREN {
            assert_eq!(metrics.track_child(&format!("c{i}"), now), i < n::MAX_CHILDREN);
        }
        assert!(metrics.track_child("c0", now), "a tracked child stays tracked");
        let text = metrics.render(now);
        assert_eq!(value(&text, "kairan_relay_children_untracked_total"), Some(1.0));
        Ok(())
    }
}
