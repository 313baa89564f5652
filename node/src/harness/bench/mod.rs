//! `kairan bench`: end-to-end latency and sustained throughput of the relay hierarchy, with a
//! chain of Mosquitto bridges measured side by side in the same run.
//!
//! For each clinic count N the bench starts a tree in this process with
//! [`HierarchyBuilder`] — national → 1 prefecture → D districts → N/D clinics, every relay
//! with its embedded broker on a loopback port, every relay and clinic with its sled store
//! in a temporary directory — and measures, through depth 4 (three relays, then the clinic):
//!
//! - **latency**: one advisory at a time, from handing it to the publisher's MQTT client to
//!   the moment every one of the N clinic stores holds it (verified, stored, flushed);
//!   p50 and p99 over the samples;
//! - **throughput**: K advisories published back to back; advisories/s until every clinic
//!   holds all K (deliveries/s = K·N/s), and, for kairan, until every relay of each level
//!   holds all K (the relay chain alone).
//!
//! Then, when `mosquitto` is installed, the same topology as a chain of Mosquitto processes
//! bridged child → parent (`topic bench/# in 1`), N rumqttc subscribers (QoS 1, persistent
//! sessions) on the district brokers, the same payload size, the same publisher client and
//! the same arrival detector: pure MQTT transport, no verification and no storage. The ratio
//! kairan ÷ Mosquitto is the price of verify + store + attest at each hop.
//!
//! D (districts) is 1 for N ≤ 10, 2 for N ≤ 100, 4 above: a real district association serves
//! up to ~2,000 clinics, but this splits the clinic fan-out over several relays and brokers
//! the way the real tree does, without making the chain deeper. Every clinic runs in this
//! process (its own MQTT connection, its own sled database), so N = 1,000 means ~1,000
//! databases and ~2,000 loopback sockets: run with `ulimit -n 65536` (checked at start).
//!
//! Arrival is detected by one polling thread (200 µs period) that asks each clinic store
//! `contains(digest)` — or each subscriber's set of received ids for Mosquitto — so both
//! sides are measured by the same detector with the same resolution. Both sides publish
//! through one persistent MQTT connection (QoS 1), so connection set-up is not counted.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, Packet, QoS};

use crate::progress::Progress;
use tokio::task::JoinHandle;

use kairan_protocol::Digest;

use super::hierarchy::{HierarchyBuilder, Level};
use crate::draft::{AdvisoryDraft, SAMPLES};
use crate::error::CliError;
use crate::mqtt::{self, BrokerAddr, Credentials, REQUEST_CHANNEL_CAPACITY};
use crate::store::{DiskStore, Store};

mod arrival;
mod kairan;
mod mosquitto;
mod report;

use arrival::*;
use kairan::*;
use mosquitto::*;
use report::*;

/// How often the arrival detector looks at every receiver that is still missing something.
const POLL_INTERVAL: Duration = Duration::from_micros(200);
/// Latency samples always taken, even past the time budget.
const MIN_SAMPLES: usize = 10;
/// Advisories always published for throughput, even past the delivery budget.
const MIN_BATCH: usize = 10;
/// The Mosquitto topic (bridged with `topic bench/# in 1`).
const BENCH_TOPIC: &str = "bench/advisories";
/// Ids of Mosquitto warm-up messages start here (measured messages count from 0).
const PROBE_ID_BASE: u64 = 1 << 40;

/// What `kairan bench` runs.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Clinic counts to measure, in order.
    pub clinics: Vec<usize>,
    /// Advisories published back to back for throughput (at most; see `max_deliveries`).
    pub advisories: usize,
    /// Latency samples (at most; see `latency_budget`).
    pub latency_samples: usize,
    /// Also measure a chain of Mosquitto bridges (skipped with a notice if not installed).
    pub mosquitto: bool,
    /// The throughput batch is cut to `max(10, max_deliveries / N)` advisories so that one
    /// run at N = 1,000 does not take minutes.
    pub max_deliveries: usize,
    /// Latency sampling stops after this long (per system and N), once 10 samples are in.
    pub latency_budget: Duration,
    /// Pause between latency samples (the pipeline is idle when a sample starts).
    pub pause: Duration,
    /// Districts for every N (default: 1 for N ≤ 10, 2 for N ≤ 100, 4 above).
    pub districts: Option<usize>,
    /// Longest wait for one arrival or one batch before the run fails.
    pub timeout: Duration,
    /// Progress lines on stderr.
    pub progress: bool,
    /// The broker the district relays publish to (their clinics' broker).
    pub district_broker: DistrictBroker,
}

/// The broker of the district level in the kairan tree of the bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DistrictBroker {
    /// Each district relay's embedded broker (rmqtt).
    #[default]
    Embedded,
    /// One Mosquitto for all districts, configured from their members.
    Mosquitto,
    /// One RabbitMQ node (MQTT plugin) for all districts, configured from their members.
    Rabbitmq,
}

impl DistrictBroker {
    /// Its name in the report.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Embedded => "embedded (rmqtt, one per district)",
            Self::Mosquitto => "Mosquitto (one for all districts)",
            Self::Rabbitmq => "RabbitMQ 3.10 MQTT plugin (one node for all districts)",
        }
    }
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            clinics: vec![10, 100, 1000],
            advisories: 200,
            latency_samples: 100,
            mosquitto: true,
            max_deliveries: 10_000,
            latency_budget: Duration::from_secs(30),
            pause: Duration::from_millis(10),
            districts: None,
            timeout: Duration::from_secs(120),
            progress: true,
            district_broker: DistrictBroker::Embedded,
        }
    }
}

/// Parses `10,100,1000` (spaces and `_` allowed inside a number, as in `1_000`).
pub fn parse_clinic_counts(text: &str) -> Result<Vec<usize>, String> {
    let counts = text
        .split(',')
        .map(|part| {
            let digits: String = part.chars().filter(|c| !c.is_whitespace() && *c != '_').collect();
            match digits.parse::<usize>() {
                Ok(0) => Err(format!("clinic count {part:?} must be at least 1")),
                Ok(count) => Ok(count),
                Err(_) => Err(format!("clinic count {part:?} is not a number")),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    if counts.is_empty() {
        return Err("no clinic counts".into());
    }
    Ok(counts)
}

/// The default number of districts for `clinics` clinics.
pub fn default_districts(clinics: usize) -> usize {
    match clinics {
        0..=10 => 1,
        11..=100 => 2,
        _ => 4,
    }
}

/// `kairan bench` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Clinic counts, comma-separated.
    #[arg(long, default_value = "10,100,1000")]
    pub clinics: String,
    /// Advisories published back to back for throughput (cut to max(10, 10000/N) per N).
    #[arg(long, default_value_t = 200)]
    pub advisories: usize,
    /// Latency samples per N (sampling stops after 30 s once 10 are in).
    #[arg(long, default_value_t = 100)]
    pub samples: usize,
    /// Districts for every N (default 1 for N ≤ 10, 2 for N ≤ 100, 4 above).
    #[arg(long)]
    pub districts: Option<usize>,
    /// Do not run the Mosquitto bridge chain.
    #[arg(long)]
    pub no_mosquitto: bool,
    /// The district relays' broker in the kairan tree: embedded, mosquitto or rabbitmq.
    #[arg(long, value_enum, default_value_t = DistrictBroker::Embedded)]
    pub district_broker: DistrictBroker,
    /// Append the markdown report to this file (it is always printed on stdout).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Show the nodes' logs (warnings and above otherwise).
    #[arg(long)]
    pub verbose: bool,
}

/// Runs `kairan bench` from parsed arguments: builds a multi-thread runtime, prints the
/// markdown report on stdout and appends it to `--out`.
pub fn cli(args: &BenchArgs) -> Result<(), CliError> {
    crate::logging::init(None, Some(if args.verbose { "info" } else { "warn" }));
    let options = BenchOptions {
        clinics: parse_clinic_counts(&args.clinics)
            .map_err(|e| CliError::Usage(format!("--clinics: {e}")))?,
        advisories: args.advisories.max(1),
        latency_samples: args.samples.max(1),
        mosquitto: !args.no_mosquitto,
        districts: args.districts,
        district_broker: args.district_broker,
        ..BenchOptions::default()
    };
    let report = run_blocking(options)?;
    print!("{report}");
    if let Some(path) = &args.out {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| CliError::io(path, e))?;
        file.write_all(report.as_bytes()).map_err(|e| CliError::io(path, e))?;
    }
    Ok(())
}

/// Runs the bench on a new multi-thread runtime (the clap-free entry point).
///
/// A watchdog thread ends the process (exit 70) if a measurement makes no progress for
/// [`STALL_LIMIT`]: a deadlocked node blocks the runtime's worker threads, and then no
/// timeout inside the runtime can fire.
pub fn run_blocking(options: BenchOptions) -> Result<String, CliError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Failed(e.to_string()))?;
    watchdog::start();
    runtime.block_on(run(options))
}

/// How long a measurement may go without any receiver advancing before the watchdog of
/// [`run_blocking`] gives up.
pub const STALL_LIMIT: Duration = Duration::from_secs(120);

/// Progress beats from the measurement, and the thread that watches them.
mod watchdog {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    static EPOCH: OnceLock<Instant> = OnceLock::new();
    static LAST_BEAT_MS: AtomicU64 = AtomicU64::new(0);
    static ARMED: AtomicBool = AtomicBool::new(false);
    static PHASE: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

    fn now_ms() -> u64 {
        EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
    }

    /// Something advanced.
    pub(super) fn beat() {
        LAST_BEAT_MS.store(now_ms(), Ordering::Relaxed);
    }

    /// A measurement starts (`Some`) or ends (`None`); only measurements are watched.
    pub(super) fn phase(name: Option<&str>) {
        if let Ok(mut phase) = PHASE.lock() {
            *phase = name.unwrap_or_default().to_owned();
        }
        beat();
        ARMED.store(name.is_some(), Ordering::SeqCst);
    }

    pub(super) fn start() {
        beat();
        let spawned = std::thread::Builder::new().name("bench-watchdog".into()).spawn(|| {
            loop {
                std::thread::sleep(Duration::from_secs(1));
                let silent = Duration::from_millis(now_ms().saturating_sub(LAST_BEAT_MS.load(Ordering::Relaxed)));
                if ARMED.load(Ordering::SeqCst) && silent > super::STALL_LIMIT {
                    let phase = PHASE.lock().map(|p| p.clone()).unwrap_or_default();
                    eprintln!(
                        "kairan bench: no progress for {}s during {phase}: the nodes in this process are stuck \
                         (a deadlock blocks the runtime, so nothing can time out); giving up. \
                         Attach a debugger (gdb -p {}) before this message next time to see where.",
                        silent.as_secs(),
                        std::process::id()
                    );
                    std::process::exit(70);
                }
            }
        });
        if let Err(error) = spawned {
            eprintln!("kairan bench: no watchdog ({error}); a stuck node would hang the bench");
        }
    }
}

/// Runs the bench; returns the markdown report.
pub async fn run(options: BenchOptions) -> Result<String, CliError> {
    if options.clinics.is_empty() || options.clinics.contains(&0) {
        return Err(CliError::Usage("clinic counts must be at least 1".into()));
    }
    let largest = options.clinics.iter().copied().max().unwrap_or(0);
    let machine = Machine::probe();
    let needed = needed_files(largest, options.districts.unwrap_or_else(|| default_districts(largest)));
    if let Some(limit) = machine.open_files {
        if limit < needed {
            return Err(CliError::Usage(format!(
                "the open-file limit is {limit}, but {largest} clinics need about {needed} descriptors \
                 (a sled database and two loopback sockets per clinic): run `ulimit -n 65536` first, \
                 or bench fewer clinics (--clinics 10,100)"
            )));
        }
    }
    let mosquitto = if options.mosquitto {
        let found = find_mosquitto();
        if found.is_none() {
            eprintln!(
                "kairan bench: mosquitto is not installed (not on PATH nor in /usr/sbin): the Mosquitto column is skipped"
            );
        }
        found
    } else {
        None
    };
    let started = Instant::now();
    if options.progress {
        let systems = if mosquitto.is_some() { 2 } else { 1 };
        if let Ok(mut guard) = PROGRESS.lock() {
            *guard = Some(Progress::new("kairan bench", (options.clinics.len() * systems) as u64));
        }
    }
    let mut results = Vec::new();
    for &clinics in &options.clinics {
        let districts = options.districts.unwrap_or_else(|| default_districts(clinics)).clamp(1, clinics);
        let per_district = clinics.div_ceil(districts);
        let total = per_district * districts;
        let batch = options.advisories.min((options.max_deliveries / total).max(MIN_BATCH)).max(1);
        let shape = Shape { clinics: total, districts, per_district, batch };
        progress(
            &options,
            started,
            &format!("N = {total}: kairan, {districts} district(s) × {per_district} clinics"),
        );
        let (kairan, payload) = bench_kairan(&shape, &options, started).await?;
        progress_step(&options, &format!("N = {total}: kairan measured"));
        let reference = match &mosquitto {
            Some(binary) => {
                progress(
                    &options,
                    started,
                    &format!("N = {total}: Mosquitto bridge chain ({} processes)", 2 + districts),
                );
                let measured = bench_mosquitto(binary, &shape, &payload, &options, started).await?;
                progress_step(&options, &format!("N = {total}: Mosquitto measured"));
                Some(measured)
            }
            None => None,
        };
        results.push(NResult { shape, kairan, mosquitto: reference });
    }
    if let Some(progress) = PROGRESS.lock().ok().and_then(|mut guard| guard.take()) {
        progress.finish("measured");
    }
    Ok(render(&options, &machine, mosquitto.as_deref(), &results, started.elapsed()))
}

/// The run's progress: one step per system measured at each N; each phase as the bar's message
/// on a terminal, a line otherwise.
static PROGRESS: Mutex<Option<Progress>> = Mutex::new(None);

fn progress(options: &BenchOptions, started: Instant, text: &str) {
    if !options.progress {
        return;
    }
    match PROGRESS.lock().ok().as_mut().and_then(|guard| guard.as_mut()) {
        Some(progress) => progress.phase(text.trim_start()),
        None => eprintln!("[{:>7.1}s] {text}", started.elapsed().as_secs_f64()),
    }
}

fn progress_step(options: &BenchOptions, text: &str) {
    if let Some(progress) = PROGRESS.lock().ok().as_mut().and_then(|guard| guard.as_mut()) {
        if options.progress {
            progress.step(text);
        }
    }
}

/// Descriptors needed for `clinics` clinics: per clinic a sled database (its file and its
/// directory lock) and two loopback socket ends (client and embedded broker), plus the relays
/// and headroom.
fn needed_files(clinics: usize, districts: usize) -> u64 {
    (clinics as u64) * 5 + (districts as u64 + 2) * 16 + 512
}

/// The tree shape for one N.
#[derive(Debug, Clone, Copy)]
struct Shape {
    pub(super) clinics: usize,
    pub(super) districts: usize,
    pub(super) per_district: usize,
    pub(super) batch: usize,
}

/// One system's figures for one N.
#[derive(Debug, Clone)]
struct Measured {
    pub(super) latencies: Vec<Duration>,
    pub(super) batch: usize,
    pub(super) batch_elapsed: Duration,
    /// Per relay level: when every relay of the level held all K, from the first publish.
    pub(super) relay_elapsed: Vec<(&'static str, Duration)>,
    pub(super) published_bytes: usize,
    pub(super) received_bytes: usize,
    pub(super) setup: Duration,
    /// This process after the throughput run (kairan only: every node is in it).
    pub(super) resources: Option<String>,
}

impl Measured {
    fn percentile(&self, p: f64) -> Option<Duration> {
        percentile(&self.latencies, p)
    }

    fn advisories_per_sec(&self) -> f64 {
        self.batch as f64 / self.batch_elapsed.as_secs_f64().max(1e-9)
    }

    fn relay_advisories_per_sec(&self) -> Vec<(&'static str, f64)> {
        self.relay_elapsed
            .iter()
            .map(|(level, elapsed)| (*level, self.batch as f64 / elapsed.as_secs_f64().max(1e-9)))
            .collect()
    }
}

#[derive(Debug)]
struct NResult {
    pub(super) shape: Shape,
    pub(super) kairan: Measured,
    pub(super) mosquitto: Option<Measured>,
}

/// Nearest-rank percentile.
fn percentile(values: &[Duration], p: f64) -> Option<Duration> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

// ---------------------------------------------------------------------------------------------
// The measurement both systems share

/// What [`measure`] found.
#[derive(Debug)]
struct Run {
    pub(super) latencies: Vec<Duration>,
    pub(super) batch: usize,
    pub(super) batch_elapsed: Duration,
    pub(super) relay_elapsed: Vec<(&'static str, Duration)>,
}

/// Messages for one system and N: one warm-up, the latency samples, the throughput batch.
#[derive(Debug)]
struct Workload {
    pub(super) warmup: Vec<(Vec<u8>, Item)>,
    pub(super) samples: Vec<(Vec<u8>, Item)>,
    pub(super) batch: Vec<(Vec<u8>, Item)>,
}

#[allow(clippy::too_many_arguments)] // two call sites; these are the run's inputs
async fn measure(
    label: &str,
    publisher: &Publisher,
    topic: &str,
    clinics: &Receivers,
    relays: &[(&'static str, Receivers)],
    workload: Workload,
    options: &BenchOptions,
    started: Instant,
) -> Result<Run, CliError> {
    // Only the kairan side can block the runtime (its nodes run in this process); the
    // Mosquitto side fails by its own timeouts, and an exit there would leave its processes.
    if !relays.is_empty() {
        watchdog::phase(Some(&format!("the {label} measurement at N = {}", clinics.len())));
    }
    let run = measure_unwatched(label, publisher, topic, clinics, relays, workload, options, started).await;
    watchdog::phase(None);
    run
}

#[allow(clippy::too_many_arguments)] // see measure
async fn measure_unwatched(
    label: &str,
    publisher: &Publisher,
    topic: &str,
    clinics: &Receivers,
    relays: &[(&'static str, Receivers)],
    workload: Workload,
    options: &BenchOptions,
    started: Instant,
) -> Result<Run, CliError> {
    // Warm-up: connections, first writes, caches.
    let warmup_items: Vec<Item> = workload.warmup.iter().map(|(_, item)| *item).collect();
    for (bytes, _) in workload.warmup {
        publisher.publish(topic, bytes).await?;
    }
    joined(spawn_wait_all(clinics.clone(), warmup_items, options.timeout)).await?;

    // Latency: one at a time, the pipeline idle before each.
    progress(options, started, &format!("  {label}: latency, up to {} samples", workload.samples.len()));
    let sampling = Instant::now();
    let mut latencies = Vec::with_capacity(workload.samples.len());
    for (bytes, item) in workload.samples {
        if latencies.len() >= MIN_SAMPLES && sampling.elapsed() > options.latency_budget {
            break;
        }
        tokio::time::sleep(options.pause).await;
        let sent = Instant::now();
        publisher.publish(topic, bytes).await?;
        let arrived = joined(spawn_wait_all(clinics.clone(), vec![item], options.timeout)).await?;
        latencies.push(arrived.saturating_duration_since(sent));
    }

    // Throughput: the whole batch back to back; the detectors are looking before the first.
    let count = workload.batch.len();
    progress(options, started, &format!("  {label}: throughput, {count} advisories back to back"));
    tokio::time::sleep(options.pause.max(Duration::from_millis(50))).await;
    let items: Vec<Item> = workload.batch.iter().map(|(_, item)| *item).collect();
    // Every delivery at every clinic is a durable write: allow 20 ms each beyond the timeout.
    let batch_timeout = options.timeout + Duration::from_millis(20 * (count * clinics.len()) as u64);
    let clinic_wait = spawn_wait_all(clinics.clone(), items.clone(), batch_timeout);
    let relay_waits: Vec<_> = relays
        .iter()
        .map(|(level, relays)| (*level, spawn_wait_all(relays.clone(), items.clone(), batch_timeout)))
        .collect();
    let sent = Instant::now();
    for (bytes, _) in workload.batch {
        publisher.publish(topic, bytes).await?;
    }
    let clinics_done = joined(clinic_wait).await?.saturating_duration_since(sent);
    let mut relays_done = Vec::with_capacity(relay_waits.len());
    for (level, wait) in relay_waits {
        relays_done.push((level, joined(wait).await?.saturating_duration_since(sent)));
    }
    Ok(Run { latencies, batch: count, batch_elapsed: clinics_done, relay_elapsed: relays_done })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_clinic_counts() {
        assert_eq!(parse_clinic_counts("10,100,1000"), Ok(vec![10, 100, 1000]));
        assert_eq!(parse_clinic_counts(" 10, 1_000 "), Ok(vec![10, 1000]));
        assert!(parse_clinic_counts("10,0").is_err());
        assert!(parse_clinic_counts("ten").is_err());
    }

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&values, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&values, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&values[..10], 99.0), Some(Duration::from_millis(10)));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn stamps_ids_without_changing_the_size() {
        let payload = b"{\"advisory\":{}}".to_vec();
        let bytes = stamped(&payload, 42);
        assert_eq!(bytes.len(), payload.len());
        assert_eq!(message_id(&bytes), Some(42));
    }

    #[test]
    fn bridge_config_names_the_parent() {
        let text = mosquitto_config(1884, Some(("d1-to-p", 1883)), Path::new("/tmp/x.log"));
        assert!(text.contains("listener 1884 127.0.0.1"));
        assert!(
            text.contains(
                "connection d1-to-p\naddress 127.0.0.1:1883\ntopic bench/# in 1\ncleansession false"
            )
        );
        assert!(!mosquitto_config(1883, None, Path::new("/tmp/x.log")).contains("connection"));
    }
}
