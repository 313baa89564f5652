//! The clinic subscriber: subscribes to its district's deliveries with a persistent session,
//! verifies every delivery itself (it trusts no relay), keeps each advisory once in its sled
//! inbox, and announces new ones on the terminal.
//!
//! sled allows one process per database, so the daemon also writes a readable copy of each
//! accepted delivery to `DATA_DIR/advisories/<digest>.json` (written to a temporary file and
//! renamed, so a reader never sees half a file). `kairan inbox` reads those copies — while
//! the daemon runs — and verifies each one again before showing it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rumqttc::AsyncClient;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

use kairan_protocol::{Delivery, Digest, RevocationSet, Timestamp, Verified, VerifyContext, verify_delivery};

use crate::config::ClinicConfig;
use crate::core::{Accepted, Core, CoreConfig, Counters, Upstream};
use crate::error::CliError;
use crate::intake::{CatchUp, Sink, TrustInput, intake_loop, upstream_loop};
use crate::mqtt::{self, REQUEST_CHANNEL_CAPACITY};
use crate::provenance::Provenance;
use crate::store::{SledStore, Store};
use crate::trust_state::{self, TrustState};

/// A readable copy of an inbox entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InboxEntry {
    /// Advisory digest.
    pub digest: Digest,
    /// Inbox sequence number.
    pub inbox_seq: u64,
    /// When it arrived.
    pub received_at: Timestamp,
    /// The delivery as received.
    pub delivery: Delivery,
}

/// A running clinic subscriber.
#[derive(Debug)]
pub struct ClinicHandle {
    /// Clinic id.
    pub id: String,
    store: SledStore,
    counters: Arc<Mutex<Counters>>,
    subscribed: Arc<AtomicBool>,
    shutdown: CancellationToken,
    join: JoinHandle<Result<(), CliError>>,
}

impl ClinicHandle {
    /// Whether the subscriber is connected with all its subscriptions acknowledged.
    pub fn is_subscribed(&self) -> bool {
        self.subscribed.load(Ordering::SeqCst)
    }

    /// The inbox store.
    pub fn store(&self) -> &SledStore {
        &self.store
    }

    /// Counters since start.
    pub async fn counters(&self) -> Counters {
        *self.counters.lock().await
    }

    /// Asks the subscriber to stop.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Waits for it to stop.
    pub async fn wait(self) -> Result<(), CliError> {
        self.join.await.map_err(|e| CliError::Failed(format!("clinic task: {e}")))?
    }
}

/// Runs the clinic subscriber until `shutdown`.
pub async fn run(config: ClinicConfig, shutdown: CancellationToken) -> Result<(), CliError> {
    start(config, shutdown).await?.wait().await
}

fn store_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("store")
}

fn copies_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("advisories")
}

/// Starts the clinic subscriber.
pub async fn start(config: ClinicConfig, shutdown: CancellationToken) -> Result<ClinicHandle, CliError> {
    let store = SledStore::open(&store_dir(&config.data_dir)).map_err(|e| CliError::Failed(e.to_string()))?;
    let held = store.check_integrity().map_err(|e| CliError::Failed(e.to_string()))?;
    let state = store.restore().map_err(|e| CliError::Failed(e.to_string()))?;
    let copies = copies_dir(&config.data_dir);
    std::fs::create_dir_all(&copies).map_err(|e| CliError::io(&copies, e))?;
    // Rewrite any copy missing after a crash between store flush and copy write.
    for record in store.all().map_err(|e| CliError::Failed(e.to_string()))? {
        if !copy_path(&copies, &record.digest).exists() {
            write_copy(&copies, &record.digest, record.relay_seq, record.received_at, &record.delivery)?;
        }
    }
    let core = Core::restore(
        CoreConfig {
            id: config.id.clone(),
            scope: config.scope.clone(),
            upstream: Upstream::Relay(config.district.clone()),
            attester: None,
            anchors: config.anchors.clone(),
        },
        state,
    );
    info!(clinic = %config.id, district = %config.district, broker = %config.addr.url(), held, "clinic subscriber starting");
    let options = mqtt::client_options(&config.id, &config.addr, config.credentials.as_ref(), false, true);
    let (client, eventloop) = AsyncClient::new(options, REQUEST_CHANNEL_CAPACITY);
    let (queue_tx, queue_rx) = mpsc::channel(256);
    let catch_up = CatchUp {
        parent: config.district.clone(),
        child: config.id.clone(),
        scope: config.scope.clone(),
        interval: config.sync_interval,
    };
    let mut filters = mqtt::delivery_filters(&config.district, &config.scope);
    filters.push(catch_up.response_topic());
    let trust_topic = trust_state::trust_topic(&config.district);
    filters.push(trust_topic.clone());
    let head_prefix = crate::heads::heads_prefix(&config.district);
    filters.push(format!("{head_prefix}+"));
    let (trust, warning) = TrustState::load(&store, config.anchors.clone(), crate::clock::now())
        .map_err(|e| CliError::Failed(e.to_string()))?;
    if let Some(warning) = warning {
        tracing::warn!(clinic = %config.id, "{warning}");
    }
    let subscribed = Arc::new(AtomicBool::new(false));
    let upstream = tokio::spawn(upstream_loop(
        client.clone(),
        eventloop,
        filters,
        queue_tx,
        shutdown.clone(),
        config.id.clone(),
        subscribed.clone(),
    ));
    let counters = Arc::new(Mutex::new(Counters::default()));
    let sink = ClinicSink { config: config.clone(), copies: copies.clone() };
    let processor = tokio::spawn(intake_loop(
        core,
        store.clone(),
        client,
        queue_rx,
        Some(catch_up),
        TrustInput { state: trust, topics: vec![trust_topic], head_prefix },
        sink,
        counters.clone(),
        shutdown.clone(),
    ));
    let join = tokio::spawn({
        let store = store.clone();
        async move {
            let _ = upstream.await;
            let processed = processor.await.map_err(|e| CliError::Failed(e.to_string()))?;
            store.flush().await.map_err(|e| CliError::Failed(e.to_string()))?;
            processed
        }
    });
    Ok(ClinicHandle { id: config.id, store, counters, subscribed, shutdown, join })
}

/// Keeps a readable copy of each accepted delivery and announces it.
struct ClinicSink {
    config: ClinicConfig,
    copies: PathBuf,
}

impl Sink for ClinicSink {
    fn accepted(&mut self, accepted: &Accepted) -> Result<(), CliError> {
        let record = &accepted.record;
        write_copy(&self.copies, &record.digest, record.relay_seq, record.received_at, &record.delivery)?;
        if self.config.announce {
            println!("{}", announce(&accepted.verified, &self.config, record.received_at));
        }
        Ok(())
    }
}

fn copy_path(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join(format!("{}.json", digest.to_string().trim_start_matches("sha256:")))
}

fn write_copy(
    dir: &Path,
    digest: &Digest,
    inbox_seq: u64,
    received_at: Timestamp,
    delivery: &str,
) -> Result<(), CliError> {
    let delivery = Delivery::from_json(delivery.as_bytes())
        .map_err(|e| CliError::Failed(format!("stored delivery: {e}")))?;
    let entry = InboxEntry { digest: *digest, inbox_seq, received_at, delivery };
    let path = copy_path(dir, digest);
    let temporary = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(&entry).unwrap_or_default();
    std::fs::write(&temporary, bytes).map_err(|e| CliError::io(&temporary, e))?;
    std::fs::rename(&temporary, &path).map_err(|e| CliError::io(&path, e))
}

/// Japan Standard Time, for people: `2021-12-01 18:00:00 JST`.
pub fn jst(at: Timestamp) -> String {
    let shifted = at.plus_secs(9 * 3600).to_rfc3339();
    format!("{} {} JST", &shifted[..10], &shifted[11..19])
}

/// Time of day in Japan Standard Time with milliseconds: `18:00:00.123`.
pub fn jst_clock(at: Timestamp) -> String {
    at.plus_secs(9 * 3600).to_rfc3339()[11..23].to_owned()
}

/// The terminal announcement of a new advisory (TLP banner first).
pub fn announce(verified: &Verified<Delivery>, config: &ClinicConfig, now: Timestamp) -> String {
    let advisory = verified.advisory();
    let lang = config.lang.as_str();
    let rule = "═".repeat(72);
    let path: Vec<String> = std::iter::once(format!("{} ({})", advisory.origin, jst(advisory.issued_at)))
        .chain(verified.hops().map(|hop| format!("{} ({})", hop.relay, jst(hop.forwarded_at))))
        .chain(std::iter::once(format!("{} ({})", config.id, jst(now))))
        .collect();
    let mut out = String::new();
    out.push_str(&format!("{rule}\n"));
    out.push_str(&format!(" {}  取扱: {}\n", advisory.tlp, advisory.handling));
    out.push_str(&format!(
        " 重要度: {} ({:?})   種別: {:?}   状態: {:?}   対象: {}\n",
        advisory.severity.label_ja(),
        advisory.severity,
        advisory.kind,
        advisory.status,
        advisory.scope
    ));
    out.push_str(&format!(" {}\n", advisory.title.get(lang)));
    out.push_str(&format!(" {}\n", advisory.summary.get(lang)));
    out.push_str(&format!(" 発信元: {} ({}, seq {})\n", advisory.origin, advisory.id, advisory.seq));
    out.push_str(&format!(" 経路: {}\n", path.join(" → ")));
    out.push_str(&format!(" 検証済み / verified: {}\n", verified.digest()));
    out.push_str(&rule);
    out
}

/// What [`read_inbox`] found: the verified entries, and the refused ones (file name, reason).
pub type InboxListing = (Vec<(InboxEntry, Provenance)>, Vec<(String, String)>);

/// Reads the inbox copies in `data_dir`, verifying each (at its arrival time) again.
/// Returns the verified entries and the refused ones (file name, reason).
pub fn read_inbox(
    data_dir: &Path,
    anchors: &kairan_protocol::TrustAnchors,
) -> Result<InboxListing, CliError> {
    let dir = copies_dir(data_dir);
    let mut entries = Vec::new();
    let mut refused = Vec::new();
    let listing = match std::fs::read_dir(&dir) {
        Ok(listing) => listing,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((entries, refused)),
        Err(e) => return Err(CliError::io(&dir, e)),
    };
    let revocations = RevocationSet::default();
    for item in listing {
        let path = item.map_err(|e| CliError::io(&dir, e))?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let bytes = std::fs::read(&path).map_err(|e| CliError::io(&path, e))?;
        let entry: InboxEntry = match serde_json::from_slice(&bytes) {
            Ok(entry) => entry,
            Err(e) => {
                refused.push((name, format!("unreadable: {e}")));
                continue;
            }
        };
        let ctx = VerifyContext { anchors, revocations: &revocations, now: entry.received_at };
        match verify_delivery(&entry.delivery.to_json(), ctx) {
            Ok(verified) if verified.digest() == entry.digest => {
                let provenance = Provenance::of(&verified, anchors, entry.received_at);
                entries.push((entry, provenance));
            }
            Ok(verified) => refused.push((
                name,
                format!("digest mismatch: file says {}, content is {}", entry.digest, verified.digest()),
            )),
            Err(error) => refused.push((name, format!("{}: {error}", error.code()))),
        }
    }
    entries.sort_by_key(|(entry, _)| entry.inbox_seq);
    Ok((entries, refused))
}
