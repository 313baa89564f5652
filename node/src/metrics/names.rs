//! Every metric a node exports — name, type, labels, help — and the functions that keep
//! label values to a bounded set. `docs/metrics.md` documents the same list (a test checks
//! that it names every metric here).

/// Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (resets at restart).
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Observations in buckets.
    Histogram,
}

/// One exported metric.
#[derive(Debug, Clone, Copy)]
pub struct Def {
    /// Full name, `kairan_…`.
    pub name: &'static str,
    /// Type.
    pub kind: Kind,
    /// Label names.
    pub labels: &'static [&'static str],
    /// The `# HELP` text.
    pub help: &'static str,
}

const fn def(name: &'static str, kind: Kind, labels: &'static [&'static str], help: &'static str) -> Def {
    Def { name, kind, labels, help }
}

use Kind::{Counter, Gauge, Histogram};

pub const NODE_INFO: &str = "kairan_node_info";
pub const READY: &str = "kairan_ready";
pub const UPSTREAM_SUBSCRIBED: &str = "kairan_upstream_subscribed";
pub const DOWNSTREAM_CONNECTED: &str = "kairan_downstream_connected";
pub const ACCEPTED: &str = "kairan_deliveries_accepted_total";
pub const REJECTED: &str = "kairan_deliveries_rejected_total";
pub const DUPLICATES: &str = "kairan_deliveries_duplicate_total";
pub const FORWARDED: &str = "kairan_deliveries_forwarded_total";
pub const FORKS: &str = "kairan_forks_total";
pub const GAPS: &str = "kairan_gaps_total";
pub const FEEDS_FROZEN: &str = "kairan_feeds_frozen_total";
pub const FEED_FROZEN: &str = "kairan_feed_frozen";
pub const HEAD_AGE: &str = "kairan_head_age_seconds";
pub const HEAD_SEQUENCE: &str = "kairan_head_sequence";
pub const HEADS_REFUSED: &str = "kairan_heads_refused_total";
pub const TRUST_UPDATES: &str = "kairan_trust_updates_total";
pub const TRUST_REFUSED: &str = "kairan_trust_refused_total";
pub const TRUST_REVOKED_KEYS: &str = "kairan_trust_revoked_keys";
pub const HELD: &str = "kairan_inputs_held_total";
pub const DEFERRED: &str = "kairan_inputs_deferred_total";
pub const THROTTLED: &str = "kairan_input_throttled_total";
pub const STORE_ANOMALIES: &str = "kairan_store_anomalies_total";
pub const LOG_FORKS: &str = "kairan_log_forks_total";
pub const STORE_DELIVERIES: &str = "kairan_store_deliveries";
pub const STORE_DISK_BYTES: &str = "kairan_store_disk_bytes";
pub const COMMIT_DURATION: &str = "kairan_commit_duration_seconds";
pub const CATCHUP_CURSOR: &str = "kairan_catchup_cursor";
pub const CATCHUP_PARENT_LATEST: &str = "kairan_catchup_parent_latest";
pub const CATCHUP_BEHIND: &str = "kairan_catchup_behind_entries";
pub const CATCHUP_PAGES: &str = "kairan_catchup_pages_total";
pub const CATCHUP_LAST_PAGE: &str = "kairan_catchup_last_page_timestamp_seconds";
pub const CATCHUP_PARENT_BEHIND: &str = "kairan_catchup_parent_behind_total";
pub const CATCHUP_PAGES_REFUSED: &str = "kairan_catchup_pages_refused_total";
pub const SYNC_REQUESTS: &str = "kairan_relay_sync_requests_total";
pub const CHILD_LAG: &str = "kairan_relay_child_lag_entries";
pub const CHILD_LAST_REQUEST: &str = "kairan_relay_child_last_request_timestamp_seconds";
pub const CHILDREN_ACTIVE: &str = "kairan_relay_children_active";
pub const CHILDREN_UNTRACKED: &str = "kairan_relay_children_untracked_total";

/// Every metric, in the order `docs/metrics.md` lists them.
pub const ALL: &[Def] = &[
    def(NODE_INFO, Gauge, &["id", "kind"], "Always 1: the node's id and kind (relay or clinic)."),
    def(READY, Gauge, &[], "1 when /readyz answers 200 (store open, upstream subscribed, own broker up)."),
    def(
        UPSTREAM_SUBSCRIBED,
        Gauge,
        &[],
        "1 while the upstream connection is up with its subscriptions acknowledged.",
    ),
    def(DOWNSTREAM_CONNECTED, Gauge, &[], "1 while a relay's connection to its own broker is up."),
    def(ACCEPTED, Counter, &["path"], "Deliveries verified and stored durably, by path (live or catch_up)."),
    def(
        REJECTED,
        Counter,
        &["reason"],
        "Deliveries refused, by reason code (recorded durably, never forwarded).",
    ),
    def(DUPLICATES, Counter, &[], "Deliveries already held, dropped."),
    def(
        FORWARDED,
        Counter,
        &[],
        "Deliveries a relay published to its own broker (republished ones count again).",
    ),
    def(FORKS, Counter, &[], "Second advisories for a taken origin sequence number, kept for audit."),
    def(
        GAPS,
        Counter,
        &["found_by"],
        "Gaps in an origin chain reported, by what revealed them (sequence or head).",
    ),
    def(
        FEEDS_FROZEN,
        Counter,
        &[],
        "Frozen feeds reported: a chain's newest head expired with no fresher one.",
    ),
    def(
        FEED_FROZEN,
        Gauge,
        &["origin", "scope"],
        "1 while the chain's feed is frozen (its newest head expired), else 0.",
    ),
    def(
        HEAD_AGE,
        Gauge,
        &["origin", "scope"],
        "Seconds since the issued_at of the chain's (origin, scope) newest verified head.",
    ),
    def(
        HEAD_SEQUENCE,
        Gauge,
        &["origin", "scope"],
        "Sequence number named by the chain's (origin, scope) newest verified head.",
    ),
    def(HEADS_REFUSED, Counter, &["reason"], "Signed heads refused, by reason code."),
    def(TRUST_UPDATES, Counter, &[], "Trust bundles put in force (durably)."),
    def(
        TRUST_REFUSED,
        Counter,
        &["reason"],
        "Trust bundles, or statements of a bundle otherwise applied, refused, by reason code; what was refused changed nothing.",
    ),
    def(
        TRUST_REVOKED_KEYS,
        Gauge,
        &[],
        "Revoked keys in the trust bundle in force (after its last update here).",
    ),
    def(HELD, Counter, &[], "Inputs left unacknowledged because this relay's own certificate is unusable."),
    def(
        DEFERRED,
        Counter,
        &[],
        "Inputs held because this node's clock is behind (not valid yet), tried again.",
    ),
    def(THROTTLED, Counter, &[], "Times refused input outran the refusal budget and input was slowed down."),
    def(
        STORE_ANOMALIES,
        Counter,
        &[],
        "Times the store could not give back what the output log should hold.",
    ),
    def(
        LOG_FORKS,
        Counter,
        &[],
        "Times the parent showed two checkpoints of its transparency log that cannot both be true (evidence kept).",
    ),
    def(STORE_DELIVERIES, Gauge, &[], "Deliveries held in the store."),
    def(STORE_DISK_BYTES, Gauge, &[], "Bytes on disk (allocated blocks) under the node's data directory."),
    def(
        COMMIT_DURATION,
        Histogram,
        &[],
        "Seconds from the driver starting a store commit (one fsync) to its completion.",
    ),
    def(CATCHUP_CURSOR, Gauge, &[], "This node's catch-up cursor in its parent's output log (relay_seq)."),
    def(
        CATCHUP_PARENT_LATEST,
        Gauge,
        &[],
        "The parent's last durable relay_seq, as its last catch-up page said.",
    ),
    def(CATCHUP_BEHIND, Gauge, &[], "Parent log entries past the catch-up cursor at the last page."),
    def(CATCHUP_PAGES, Counter, &[], "Catch-up pages applied durably."),
    def(CATCHUP_LAST_PAGE, Gauge, &[], "Unix time of the last catch-up page applied."),
    def(
        CATCHUP_PARENT_BEHIND,
        Counter,
        &[],
        "Times the parent's log ended before the cursor (cursor rewound).",
    ),
    def(CATCHUP_PAGES_REFUSED, Counter, &[], "Catch-up answers that did not parse."),
    def(
        SYNC_REQUESTS,
        Counter,
        &["outcome"],
        "Children's catch-up requests, by outcome (answered, rate_limited, malformed, repeat, other).",
    ),
    def(
        CHILD_LAG,
        Gauge,
        &["child"],
        "Entries of this relay's durable log past the child's last answered request.",
    ),
    def(CHILD_LAST_REQUEST, Gauge, &["child"], "Unix time of the child's last answered catch-up request."),
    def(
        CHILDREN_ACTIVE,
        Gauge,
        &[],
        "Distinct children whose catch-up request arrived within two sync intervals.",
    ),
    def(CHILDREN_UNTRACKED, Counter, &[], "Catch-up requests from children past the per-child series limit."),
];

/// Upper bounds of the commit-duration buckets, in seconds: an fsync on a fast SSD takes well
/// under a millisecond, on a busy disk hundreds.
pub const COMMIT_BUCKETS: &[f64] =
    &[0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// At most this many distinct `reason` values per metric; more fall into `other`.
pub const MAX_REASONS: usize = 64;
/// At most this many children get series of their own (a district serves up to 2,000 clinics).
pub const MAX_CHILDREN: usize = 4096;
/// At most this many chains (origin, scope) get series of their own: origins are certified by
/// the root, and a node sees only the chains of the scopes it is entitled to.
pub const MAX_CHAINS: usize = 1024;

/// A reason code as a label value: the protocol's codes are short snake_case words; anything
/// else becomes `other`.
pub fn reason_label(code: &str) -> &str {
    let well_formed = !code.is_empty()
        && code.len() <= 48
        && code.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if well_formed { code } else { "other" }
}

/// The outcome label of a dropped catch-up request, from the machine's explanation.
pub fn drop_outcome(reason: &str) -> &'static str {
    if reason.starts_with("over the rate limit") {
        "rate_limited"
    } else if reason.starts_with("malformed") {
        "malformed"
    } else if reason.starts_with("repeats") {
        "repeat"
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        let mut seen = std::collections::BTreeSet::new();
        for def in ALL {
            assert!(seen.insert(def.name), "{} listed twice", def.name);
            assert!(def.name.starts_with("kairan_"), "{}", def.name);
            assert!(def.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{}", def.name);
            assert_eq!(def.kind == Counter, def.name.ends_with("_total"), "{}", def.name);
            assert!(!def.help.is_empty());
        }
    }

    #[test]
    fn docs_name_every_metric() {
        let docs = include_str!("../../../docs/metrics.md");
        for def in ALL {
            assert!(docs.contains(&format!("`{}`", def.name)), "docs/metrics.md lacks {}", def.name);
        }
    }

    #[test]
    fn label_values_stay_bounded() {
        assert_eq!(reason_label("bad_signature"), "bad_signature");
        assert_eq!(reason_label("Bad Signature"), "other");
        assert_eq!(reason_label(""), "other");
        assert_eq!(reason_label(&"x".repeat(200)), "other");
        assert_eq!(drop_outcome("over the rate limit"), "rate_limited");
        assert_eq!(drop_outcome("malformed: limit 0"), "malformed");
        assert_eq!(drop_outcome("repeats the request after 3 just answered"), "repeat");
        assert_eq!(drop_outcome("anything new"), "other");
    }
}
