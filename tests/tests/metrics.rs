//! Metrics and health of running nodes: a tree over real MQTT with every node's endpoint on a
//! loopback port; an advisory, a head and a forgery are published; the national relay, a
//! district relay and a clinic are scraped. Each exposition must pass `promtool check metrics`
//! and show the counters moved; `/healthz` and `/readyz` answer and follow the broker
//! connections. The alert rules pass `promtool check rules` and their unit tests (`promtool
//! test rules`); the dashboard is JSON, its queries parse, and every `kairan_…` name in it and
//! in the rules is a metric the nodes export.
//!
//! promtool comes from Debian's `prometheus` package. Without it the promtool steps are skipped
//! with a notice, unless `KAIRAN_REQUIRE_PROMTOOL=1` (CI), which makes them fail.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kairan_node::harness::hierarchy::{HierarchyBuilder, Level};
use kairan_node::harness::mosquitto::which;
use kairan_node::metrics::http::get;
use kairan_node::metrics::names;

const SETTLE: Duration = Duration::from_secs(30);

/// promtool, or `None` (with a notice) when it is missing and not required.
fn promtool() -> Option<PathBuf> {
    let required = std::env::var("KAIRAN_REQUIRE_PROMTOOL").is_ok_and(|v| v == "1");
    let found = which("promtool");
    assert!(
        found.is_some() || !required,
        "KAIRAN_REQUIRE_PROMTOOL=1 but promtool is not installed (apt-get install -y prometheus)"
    );
    if found.is_none() {
        eprintln!(
            "NOTICE: promtool is not installed; skipping the promtool checks (apt-get install -y prometheus, or set KAIRAN_REQUIRE_PROMTOOL=1 to fail instead)"
        );
    }
    found
}

/// Runs promtool with `args`, `stdin` piped in; panics with its output unless it succeeds.
fn run_promtool(promtool: &Path, args: &[&str], stdin: &str, what: &str) {
    let mut child = Command::new(promtool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write to promtool");
    let output = child.wait_with_output().expect("promtool output");
    let said =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    // promtool check metrics exits 0 with no lint problem (3 with problems, 1 on a parse error).
    assert!(output.status.success(), "promtool {args:?} failed on {what}:\n{said}\n--- input:\n{stdin}");
}

/// The value of the series written exactly as `series` (name and labels), if present.
fn value(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Scrapes `addr` until `done` holds for the exposition; returns it.
async fn scrape_until(addr: SocketAddr, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + SETTLE;
    loop {
        let (status, body) = get(addr, "/metrics").await.expect("scrape");
        assert_eq!(status, 200, "{what}: /metrics answered {status}");
        if done(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{what}: metrics did not show it in time:\n{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_ready(addr: SocketAddr, what: &str) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let (status, body) = get(addr, "/readyz").await.expect("readyz");
        if status == 200 {
            assert_eq!(body, "ready\n");
            return;
        }
        assert_eq!(status, 503, "{what}: {body}");
        assert!(body.starts_with("not ready: "), "{what}: {body}");
        assert!(Instant::now() < deadline, "{what} never became ready: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_relays_and_clinics_export_metrics_that_promtool_accepts() {
    let promtool = promtool();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tree = HierarchyBuilder::new(dir.path())
        .prefectures(1)
        .districts_per_prefecture(1)
        .clinics_per_district(2)
        .with_metrics()
        .start()
        .await
        .expect("tree starts");
    tree.wait_subscribed(SETTLE).await.expect("subscribed");
    let endpoint = |handle: Option<&kairan_node::handle::NodeHandle>| {
        handle.and_then(|h| h.metrics).expect("node has a metrics endpoint")
    };
    let national = endpoint(tree.relays[0].handle.as_ref());
    let district = endpoint(tree.relays[2].handle.as_ref());
    let clinic = endpoint(tree.clinics[0].handle.as_ref());
    let clinic_id = tree.clinics[0].config.id.clone();
    for (addr, what) in [(national, "national"), (district, "district"), (clinic, "clinic")] {
        assert_eq!(get(addr, "/healthz").await.expect("healthz"), (200, "ok\n".to_owned()), "{what}");
        wait_ready(addr, what).await;
    }

    let (bytes, digest) = tree.sign_next(kairan_tests::advisory("jp", "metrics-1", tree.now()));
    tree.publish_raw(bytes).await.expect("published");
    tree.publish_head(Duration::from_secs(3600)).await.expect("head published");
    tree.publish_raw(b"{\"advisory\": 1}".to_vec()).await.expect("forgery published");
    tree.wait_for_inboxes(|_| BTreeSet::from([digest]), SETTLE).await.expect("delivered");

    let national_text = scrape_until(national, "national", |t| {
        t.lines().any(|l| l.starts_with("kairan_deliveries_rejected_total{reason="))
            && value(t, "kairan_deliveries_forwarded_total").is_some_and(|v| v >= 1.0)
    })
    .await;
    assert_eq!(value(&national_text, "kairan_deliveries_accepted_total{path=\"live\"}"), Some(1.0));
    assert!(national_text.contains("kairan_node_info{id=\"jp\",kind=\"relay\"} 1"), "{national_text}");

    let lag_series = format!("kairan_relay_child_lag_entries{{child=\"{clinic_id}\"}}");
    let district_text = scrape_until(district, "district", |t| {
        value(t, "kairan_deliveries_forwarded_total").is_some_and(|v| v >= 1.0)
            && value(t, "kairan_head_age_seconds{origin=\"mhlw\",scope=\"jp\"}").is_some()
            && value(t, &lag_series).is_some()
    })
    .await;
    assert!(value(&district_text, "kairan_commit_duration_seconds_count").is_some_and(|v| v >= 1.0));
    assert!(value(&district_text, "kairan_relay_children_active").is_some_and(|v| v >= 1.0));
    assert!(
        value(&district_text, "kairan_relay_sync_requests_total{outcome=\"answered\"}")
            .is_some_and(|v| v >= 1.0)
    );
    assert_eq!(value(&district_text, "kairan_ready"), Some(1.0));
    assert_eq!(value(&district_text, "kairan_downstream_connected"), Some(1.0));
    assert!(value(&district_text, "kairan_store_disk_bytes").is_some_and(|v| v > 0.0));

    let clinic_text = scrape_until(clinic, "clinic", |t| {
        value(t, "kairan_store_deliveries") == Some(1.0)
            && value(t, "kairan_head_age_seconds{origin=\"mhlw\",scope=\"jp\"}").is_some()
            && value(t, "kairan_catchup_cursor").is_some()
    })
    .await;
    let accepted = ["live", "catch_up"]
        .iter()
        .filter_map(|path| {
            value(&clinic_text, &format!("kairan_deliveries_accepted_total{{path=\"{path}\"}}"))
        })
        .sum::<f64>();
    assert_eq!(accepted, 1.0, "{clinic_text}");
    assert_eq!(value(&clinic_text, "kairan_head_sequence{origin=\"mhlw\",scope=\"jp\"}"), Some(1.0));
    assert_eq!(value(&clinic_text, "kairan_feed_frozen{origin=\"mhlw\",scope=\"jp\"}"), Some(0.0));
    assert!(!clinic_text.contains("kairan_deliveries_forwarded_total"), "a clinic forwards nothing");

    if let Some(promtool) = &promtool {
        for (text, what) in
            [(&national_text, "national"), (&district_text, "district"), (&clinic_text, "clinic")]
        {
            run_promtool(promtool, &["check", "metrics"], text, what);
        }
    }
    tree.shutdown().await.expect("shutdown");
}

/// Waits until `/readyz` of `addr` answers 503 with exactly `reason`.
async fn wait_not_ready(addr: SocketAddr, what: &str, reason: &str) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let (status, body) = get(addr, "/readyz").await.expect("readyz");
        if status == 503 && body == format!("not ready: {reason}\n") {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: /readyz still answers {status} {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Readiness follows the connections: the prefecture publishes to Mosquitto and the district
/// reads from it; while Mosquitto is down the prefecture's own broker connection is down and
/// the district's upstream is not subscribed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_broker_connections() {
    let Some(broker) = kairan_tests::Mosquitto::prepare_if_available(false) else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tree = HierarchyBuilder::new(dir.path())
        .prefectures(1)
        .districts_per_prefecture(1)
        .clinics_per_district(1)
        .external_broker(Level::Prefecture, broker)
        .with_metrics()
        .start()
        .await
        .expect("tree starts");
    tree.wait_subscribed(SETTLE).await.expect("subscribed");
    let endpoint =
        |index: usize| tree.relays[index].handle.as_ref().and_then(|h| h.metrics).expect("endpoint");
    let (prefecture, district) = (endpoint(1), endpoint(2));
    wait_ready(prefecture, "prefecture").await;
    wait_ready(district, "district").await;
    tree.external.get_mut(&Level::Prefecture).expect("mosquitto").kill();
    wait_not_ready(prefecture, "prefecture", "own broker connection down").await;
    wait_not_ready(district, "district", "upstream not subscribed").await;
    let (status, text) = get(prefecture, "/metrics").await.expect("scrape");
    assert_eq!(status, 200);
    assert_eq!(value(&text, "kairan_ready"), Some(0.0));
    assert_eq!(value(&text, "kairan_downstream_connected"), Some(0.0));
    assert_eq!(get(district, "/healthz").await.expect("healthz").0, 200, "alive all the same");
    tree.external.get_mut(&Level::Prefecture).expect("mosquitto").start_again().expect("mosquitto restarts");
    wait_ready(prefecture, "prefecture").await;
    wait_ready(district, "district").await;
    tree.shutdown().await.expect("shutdown");
}

/// Every `kairan_…` name in `text`, less a histogram's series suffix.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("kairan_") {
        let tail = &rest[start..];
        let end = tail.find(|c: char| !(c.is_ascii_lowercase() || c == '_')).unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_count", "_sum"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        found.insert(base.to_owned());
        rest = &tail[end..];
    }
    found
}

/// The dashboard's queries as recording rules, so `promtool check rules` parses each one
/// (Grafana's variables replaced by what they stand for).
fn dashboard_as_rules(dashboard: &serde_json::Value) -> String {
    let mut rules = String::from("groups:\n  - name: kairan-dashboard-queries\n    rules:\n");
    let panels = dashboard["panels"].as_array().expect("panels");
    let exprs = panels.iter().flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default());
    for (index, target) in exprs.enumerate() {
        let expr = target["expr"].as_str().expect("a target has an expr");
        let expr = expr.replace("$__rate_interval", "5m").replace("$job", ".*").replace("$instance", ".*");
        let quoted = serde_json::to_string(&expr).expect("quote");
        rules.push_str(&format!("      - record: kairan:dashboard_query_{index}\n        expr: {quoted}\n"));
    }
    rules
}

#[test]
fn the_dashboard_and_the_rules_parse_and_use_only_exported_metrics() {
    let known: BTreeSet<&str> = names::ALL.iter().map(|def| def.name).collect();
    let mut dashboard = serde_json::Value::Null;
    for path in ["deploy/grafana/kairan.json", "deploy/prometheus/kairan-alerts.yml"] {
        let text = std::fs::read_to_string(repo_file(path)).expect("read");
        if path.ends_with(".json") {
            dashboard = serde_json::from_str(&text).expect("dashboard is JSON");
            assert!(dashboard["panels"].as_array().is_some_and(|p| p.len() >= 10), "dashboard has panels");
        }
        let used = metric_names(&text);
        assert!(used.len() >= 5, "{path} uses kairan metrics");
        for name in &used {
            assert!(known.contains(name.as_str()), "{path} uses {name}, which no node exports");
        }
    }
    let Some(promtool) = promtool() else { return };
    let rules = repo_file("deploy/prometheus/kairan-alerts.yml");
    run_promtool(&promtool, &["check", "rules", rules.to_str().expect("path")], "", "the alert rules");
    let tests = repo_file("deploy/prometheus/kairan-alerts.test.yml");
    run_promtool(&promtool, &["test", "rules", tests.to_str().expect("path")], "", "the alert rule tests");
    let dir = tempfile::tempdir().expect("tempdir");
    let queries = dir.path().join("dashboard-queries.yml");
    std::fs::write(&queries, dashboard_as_rules(&dashboard)).expect("write");
    run_promtool(
        &promtool,
        &["check", "rules", queries.to_str().expect("path")],
        "",
        "the dashboard queries",
    );
}
