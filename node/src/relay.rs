//! The relay node daemon: upstream subscriber → relay core → store → downstream publisher.
//!
//! ```text
//! parent broker ─▶ upstream (rumqttc, manual acks) ─▶ core ─▶ store (sled, flushed)
//!                                                        │
//!                  own broker (embedded or external) ◀── publisher (reads the store's log)
//! ```
//! Three tasks joined by bounded channels. The upstream task only polls its event loop and
//! hands publishes to the processor; the processor decides (core), persists and flushes,
//! then acknowledges upstream and wakes the publisher. The publisher reads the output log
//! from the store — the store is its queue — so what was stored before a crash is published
//! after restart. It never publishes from a task other than its own event loop's, and uses
//! `try_publish` there, so it cannot deadlock on rumqttc's request channel.
//!
//! Shutdown: the token stops the upstream task (no new input); the processor finishes what
//! it already took; the publisher drains the log and waits for the broker's acks until the
//! grace deadline; the store is flushed last.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Packet, Publish, QoS};
use tokio::sync::{Mutex, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::broker;
use crate::clock;
use crate::config::{BrokerConfig, NodeConfig, UpstreamConfig};
use crate::core::{Accepted, Attester, Core, CoreConfig, Counters, Upstream};
use crate::error::CliError;
use crate::heads;
use crate::intake::{CatchUp, Sink, TrustInput, intake_loop, upstream_loop};
use crate::mqtt::{self, Backoff, BrokerAddr, Credentials, REQUEST_CHANNEL_CAPACITY};
use crate::store::{SledStore, Store, StoreError};
use crate::sync::{self, RateLimiter};
use crate::trust_state::{self, TrustState};

/// Publishes handed from the upstream task to the processor, at most.
const PROCESS_QUEUE: usize = 256;
/// Unacknowledged publishes the publisher keeps in flight.
const PUBLISH_WINDOW: usize = 64;
/// Cursor name of the highest relay_seq confirmed by the own broker.
const PUBLISHED_CURSOR: &str = "published";

/// A running relay node.
#[derive(Debug)]
pub struct RelayHandle {
    /// Node id.
    pub id: String,
    /// The broker children connect to.
    pub broker: BrokerAddr,
    /// Credentials of this node's own clients on that broker.
    pub internal_credentials: Option<Credentials>,
    store: SledStore,
    counters: Arc<Mutex<Counters>>,
    subscribed: Arc<AtomicBool>,
    shutdown: CancellationToken,
    join: JoinHandle<Result<(), CliError>>,
}

impl RelayHandle {
    /// Whether the node is connected upstream with all its subscriptions acknowledged.
    pub fn is_subscribed(&self) -> bool {
        self.subscribed.load(Ordering::SeqCst)
    }

    /// The node's store (shared with the running node).
    pub fn store(&self) -> &SledStore {
        &self.store
    }

    /// Counters since start.
    pub async fn counters(&self) -> Counters {
        *self.counters.lock().await
    }

    /// Asks the node to stop.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Waits for the node to stop.
    pub async fn wait(self) -> Result<(), CliError> {
        self.join.await.map_err(|e| CliError::Failed(format!("node task: {e}")))?
    }
}

fn store_failed(error: StoreError) -> CliError {
    CliError::Failed(format!("{error}; stopping so nothing is acknowledged that is not stored"))
}

/// Runs a relay until `shutdown` is cancelled.
pub async fn run(config: NodeConfig, shutdown: CancellationToken) -> Result<(), CliError> {
    start(config, shutdown).await?.wait().await
}

/// Starts a relay: opens the store, starts the broker and the tasks.
pub async fn start(config: NodeConfig, shutdown: CancellationToken) -> Result<RelayHandle, CliError> {
    let store = SledStore::open(&config.data_dir).map_err(|e| CliError::Failed(e.to_string()))?;
    let integrity = store.check_integrity().map_err(store_failed)?;
    let state = store.restore().map_err(store_failed)?;
    let last_relay_seq = state.last_relay_seq;
    let id = config.id.clone();
    let anchors_configured = config.anchors.clone();
    let core = Core::restore(
        CoreConfig {
            id: id.clone(),
            scope: config.cert_info.scope.clone(),
            upstream: match &config.upstream {
                UpstreamConfig::Ingest => Upstream::Ingest,
                UpstreamConfig::Parent { parent, .. } => Upstream::Relay(parent.clone()),
            },
            attester: Some(Attester { key: config.key, cert: config.cert, extra_certs: config.extra_certs }),
            anchors: config.anchors,
        },
        state,
    );

    let (own_addr, internal) = match config.broker {
        BrokerConfig::Embedded { listen, mut members } => {
            let internal = Credentials { username: format!("{id}.internal"), password: random_password() };
            members.insert(internal.username.clone(), internal.password.clone());
            let started = tokio::task::spawn_blocking({
                let id = id.clone();
                move || broker::start(&id, listen, members)
            })
            .await
            .map_err(|e| CliError::Failed(e.to_string()))?
            .map_err(CliError::Failed)?;
            (BrokerAddr::from(started.addr), Some(internal))
        }
        BrokerConfig::External { addr, credentials } => (addr, credentials),
    };
    let (upstream_addr, upstream_credentials, client_id, mut filters, catch_up) = match &config.upstream {
        UpstreamConfig::Ingest => {
            (own_addr.clone(), internal.clone(), format!("{id}-ingest"), vec![mqtt::ingest_topic(&id)], None)
        }
        UpstreamConfig::Parent { addr, parent, credentials } => (
            addr.clone(),
            credentials.clone(),
            id.clone(),
            mqtt::delivery_filters(parent, &config.cert_info.scope),
            Some(CatchUp {
                parent: parent.clone(),
                child: id.clone(),
                scope: config.cert_info.scope.clone(),
                interval: config.sync_interval,
            }),
        ),
    };
    if let Some(catch_up) = &catch_up {
        filters.push(catch_up.response_topic());
    }
    // Trust bundles: the parent's retained bundle, or at the national node the control topic.
    let trust_topic = match &config.upstream {
        UpstreamConfig::Ingest => trust_state::control_topic(&id),
        UpstreamConfig::Parent { parent, .. } => trust_state::trust_topic(parent),
    };
    filters.push(trust_topic.clone());
    // Signed heads: the parent's retained heads, or at the national node what origins send.
    let head_prefix = match &config.upstream {
        UpstreamConfig::Ingest => heads::ingest_heads_topic(&id),
        UpstreamConfig::Parent { parent, .. } => heads::heads_prefix(parent),
    };
    filters.push(match &config.upstream {
        UpstreamConfig::Ingest => head_prefix.clone(),
        UpstreamConfig::Parent { .. } => format!("{head_prefix}+"),
    });
    let (trust, warning) =
        TrustState::load(&store, anchors_configured.clone(), clock::now()).map_err(store_failed)?;
    if let Some(warning) = warning {
        warn!(node = %id, "{warning}");
    }
    let (trust_tx, trust_rx) = watch::channel(trust.json().map(Arc::new));
    let (heads_tx, heads_rx) = mpsc::channel::<(String, Vec<u8>)>(HEADS_QUEUE);
    info!(
        node = %id,
        scope = %config.cert_info.scope,
        broker = %own_addr.url(),
        upstream = %upstream_addr.url(),
        held = integrity,
        last_relay_seq,
        "relay node starting"
    );

    let counters = Arc::new(Mutex::new(Counters::default()));
    let (latest_tx, latest_rx) = watch::channel(last_relay_seq);
    let drain = CancellationToken::new();
    let publisher = tokio::spawn(publisher_loop(
        store.clone(),
        latest_rx,
        trust_rx,
        heads_rx,
        own_addr.clone(),
        internal.clone(),
        format!("{id}-out"),
        id.clone(),
        drain.clone(),
        config.grace,
    ));
    let options =
        mqtt::client_options(&client_id, &upstream_addr, upstream_credentials.as_ref(), false, true);
    let (client, eventloop) = AsyncClient::new(options, REQUEST_CHANNEL_CAPACITY);
    let (queue_tx, queue_rx) = mpsc::channel(PROCESS_QUEUE);
    let subscribed = Arc::new(AtomicBool::new(false));
    let upstream = tokio::spawn(upstream_loop(
        client.clone(),
        eventloop,
        filters,
        queue_tx,
        shutdown.clone(),
        id.clone(),
        subscribed.clone(),
    ));
    let processor = tokio::spawn(intake_loop(
        core,
        store.clone(),
        client,
        queue_rx,
        catch_up,
        TrustInput { state: trust, topics: vec![trust_topic], head_prefix },
        RelaySink { latest: latest_tx, trust: trust_tx, heads: heads_tx },
        counters.clone(),
        shutdown.clone(),
    ));

    let join = tokio::spawn({
        let store = store.clone();
        let id = id.clone();
        async move {
            let _ = upstream.await;
            let processed = processor.await.map_err(|e| CliError::Failed(e.to_string()))?;
            drain.cancel();
            let published = publisher.await.map_err(|e| CliError::Failed(e.to_string()))?;
            store.flush().await.map_err(store_failed)?;
            info!(node = %id, "relay node stopped; store flushed");
            processed.and(published)
        }
    });
    Ok(RelayHandle {
        id,
        broker: own_addr,
        internal_credentials: internal,
        store,
        counters,
        subscribed,
        shutdown,
        join,
    })
}

/// Wakes the publisher when a delivery or a trust bundle is durable.
struct RelaySink {
    latest: watch::Sender<u64>,
    trust: watch::Sender<Option<Arc<Vec<u8>>>>,
    heads: mpsc::Sender<(String, Vec<u8>)>,
}

impl Sink for RelaySink {
    fn accepted(&mut self, accepted: &Accepted) -> Result<(), CliError> {
        self.latest.send_replace(accepted.record.relay_seq);
        Ok(())
    }

    fn trust_changed(&mut self, bundle: &[u8]) {
        self.trust.send_replace(Some(Arc::new(bundle.to_vec())));
    }

    fn head_changed(&mut self, origin: &str, message: &[u8]) {
        // Bounded: if the publisher is behind, this head is skipped; a newer one follows and
        // the retained copy upstream is re-sent on every reconnect.
        let _ = self.heads.try_send((origin.to_owned(), message.to_vec()));
    }
}

pub(crate) fn random_password() -> String {
    let mut bytes = [0u8; 16];
    rand::Rng::fill(&mut rand::rngs::OsRng, &mut bytes);
    hex::encode(bytes)
}

/// Heads waiting for the publisher, at most.
const HEADS_QUEUE: usize = 64;
/// Catch-up requests answered per child and second, sustained.
const SYNC_REQUESTS_PER_SEC: u32 = 20;
/// Catch-up requests a child may send in a burst.
const SYNC_REQUEST_BURST: u32 = 40;
/// Log entries scanned for one catch-up page at most.
const SYNC_SCAN_LIMIT: usize = 4096;
/// Log entries read from the store at a time while building a catch-up page.
const SYNC_SCAN_CHUNK: usize = 32;

/// Answers one catch-up request from the store. Answers go out with QoS 0 (they do not
/// count as outstanding deliveries); a lost answer is asked for again at the child's next
/// tick.
/// Publishes the trust bundle retained on `kairan/v1/<node>/trust` (QoS 0: it is retained,
/// re-sent on every subscribe, and also carried in catch-up answers).
fn publish_trust(client: &AsyncClient, node: &str, bundle: Option<&Vec<u8>>) {
    if let Some(bundle) = bundle {
        if client.try_publish(trust_state::trust_topic(node), QoS::AtMostOnce, true, bundle.clone()).is_err()
        {
            debug!(node = %node, "trust bundle not republished now: request channel full");
        }
    }
}

/// Publishes an origin's newest signed head retained on `kairan/v1/<node>/heads/<origin>`.
fn publish_head(client: &AsyncClient, node: &str, origin: &str, message: &[u8]) {
    if client.try_publish(heads::heads_topic(node, origin), QoS::AtMostOnce, true, message.to_vec()).is_err()
    {
        debug!(node = %node, %origin, "head not republished now: request channel full");
    }
}

fn answer_sync_request(
    store: &SledStore,
    client: &AsyncClient,
    node: &str,
    request: &Publish,
    last_relay_seq: u64,
    bundle: Option<&Vec<u8>>,
    limiter: &mut RateLimiter,
) -> Result<(), CliError> {
    let Some(child) = sync::child_of_request_topic(node, &request.topic) else {
        return Ok(());
    };
    if !limiter.allow(child, clock::now()) {
        warn!(node = %node, %child, "catch-up request over the rate limit; dropped");
        return Ok(());
    }
    let parsed = match sync::parse_request(&request.payload) {
        Ok(parsed) => parsed,
        Err(error) => {
            warn!(node = %node, %child, %error, "catch-up request refused");
            return Ok(());
        }
    };
    if limiter.is_repeat(child, parsed.after, clock::now()) {
        debug!(node = %node, %child, after = parsed.after, "catch-up request repeats one just answered; dropped");
        return Ok(());
    }
    // Read the log lazily, a chunk at a time, and only what is durable. A page takes a few
    // dozen entries: reading (and decoding) up to the scan limit for every request starves
    // this loop — and with it the acks and pings of the own broker — when many children
    // catch up at once. The log may already hold a record the processor is still flushing;
    // one lost in a crash would be taken by the next delivery's relay_seq.
    let mut position = parsed.after;
    let mut scanned = 0usize;
    let mut chunk = std::collections::VecDeque::new();
    let mut failure = None;
    let entries = std::iter::from_fn(|| {
        if chunk.is_empty() && scanned < SYNC_SCAN_LIMIT && position < last_relay_seq {
            match store.log_after(position, SYNC_SCAN_CHUNK) {
                Ok(read) => chunk.extend(read),
                Err(error) => failure = Some(error),
            }
        }
        let entry = chunk.pop_front().filter(|entry| entry.relay_seq <= last_relay_seq)?;
        position = entry.relay_seq;
        scanned += 1;
        Some(entry)
    });
    let mut response = sync::build_response(&parsed, entries, last_relay_seq);
    if let Some(error) = failure {
        return Err(store_failed(error));
    }
    if let Some(bundle) = bundle {
        if parsed.trust != Some(kairan_protocol::Digest::of(bundle)) {
            // Only when the answer stays one MQTT packet; otherwise the child takes the bundle
            // from the retained trust topic.
            let room = mqtt::MAX_PACKET_BYTES.saturating_sub(response.to_json().len() + 1024);
            if bundle.len() <= room {
                response.trust = kairan_protocol::TrustBundle::from_json(bundle).ok();
            }
        }
    }
    debug!(node = %node, %child, after = parsed.after, sent = response.deliveries.len(), scanned_upto = response.scanned_upto, "catch-up answered");
    if client
        .try_publish(sync::response_topic(node, child), QoS::AtMostOnce, false, response.to_json())
        .is_err()
    {
        debug!(node = %node, %child, "catch-up answer dropped: request channel full");
    }
    Ok(())
}

/// Publishes the output log to the own broker, in relay_seq order, at least once.
#[allow(clippy::too_many_arguments)] // one call site; these are the task's inputs
async fn publisher_loop(
    store: SledStore,
    mut latest: watch::Receiver<u64>,
    mut trust: watch::Receiver<Option<Arc<Vec<u8>>>>,
    mut heads: mpsc::Receiver<(String, Vec<u8>)>,
    addr: BrokerAddr,
    credentials: Option<Credentials>,
    client_id: String,
    node: String,
    drain: CancellationToken,
    grace: Duration,
) -> Result<(), CliError> {
    let mut confirmed = store.cursor(PUBLISHED_CURSOR).map_err(store_failed)?;
    let mut backoff = Backoff::new();
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut latest_open = true;
    // Topic per scope, computed once per scope string.
    let mut topics: HashMap<String, String> = HashMap::new();
    let mut limiter = RateLimiter::new(SYNC_REQUESTS_PER_SEC, SYNC_REQUEST_BURST);
    let mut trust_open = true;
    let mut heads_open = true;
    // The newest head per origin, re-published on every (re)connection.
    let mut latest_heads: std::collections::BTreeMap<String, Vec<u8>> = std::collections::BTreeMap::new();
    'connection: loop {
        let options = mqtt::client_options(&client_id, &addr, credentials.as_ref(), true, false);
        let (client, eventloop) = AsyncClient::new(options, REQUEST_CHANNEL_CAPACITY);
        // Polled on a task of its own: `poll()` must never be dropped mid-write (see
        // `mqtt::spawn_poll`), and this loop selects over other inputs too.
        let mut events = mqtt::spawn_poll(eventloop);
        let mut sent_upto = confirmed;
        let mut outstanding = 0usize;
        let mut connected = false;
        loop {
            let newest = *latest.borrow();
            if connected && outstanding < PUBLISH_WINDOW && sent_upto < newest {
                let batch = store.log_after(sent_upto, PUBLISH_WINDOW - outstanding).map_err(store_failed)?;
                // Durable before forwarded: `newest` is the last relay_seq the processor has
                // flushed; a later record in the log may still be in flight to the disk.
                for record in batch.into_iter().take_while(|record| record.relay_seq <= newest) {
                    let topic = topics
                        .entry(record.scope.clone())
                        .or_insert_with(|| mqtt::deliveries_topic(&node, &record.scope))
                        .clone();
                    if client
                        .try_publish(topic.clone(), QoS::AtLeastOnce, false, record.delivery.into_bytes())
                        .is_err()
                    {
                        break; // request channel full: the event loop drains it below
                    }
                    sent_upto = record.relay_seq;
                    outstanding += 1;
                    info!(node = %node, digest = %record.digest, relay_seq = record.relay_seq, %topic, "forwarded");
                }
            }
            if deadline.is_some() && outstanding == 0 && sent_upto >= *latest.borrow() {
                break 'connection;
            }
            let wait_for_deadline = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = events.recv() => match event.unwrap_or(Err(rumqttc::ConnectionError::RequestsDone)) {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        connected = true;
                        backoff.reset();
                        debug!(node = %node, "publisher connected to own broker");
                        // Children's catch-up requests are answered on this connection.
                        if let Err(error) = client.try_subscribe(sync::request_filter(&node), QoS::AtMostOnce) {
                            warn!(node = %node, %error, "cannot subscribe to catch-up requests");
                        }
                        publish_trust(&client, &node, trust.borrow().as_deref());
                        for (origin, message) in &latest_heads {
                            publish_head(&client, &node, origin, message);
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(request))) => {
                        let bundle = trust.borrow().clone();
                        answer_sync_request(&store, &client, &node, &request, *latest.borrow(), bundle.as_deref(), &mut limiter)?;
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        outstanding = outstanding.saturating_sub(1);
                        if outstanding == 0 && sent_upto > confirmed {
                            // Publishes go out in relay_seq order: with none outstanding,
                            // everything up to sent_upto is confirmed by the broker.
                            confirmed = sent_upto;
                            store.set_cursor(PUBLISHED_CURSOR, confirmed).map_err(store_failed)?;
                        }
                    }
                    Ok(_) => {}
                    Err(error) => {
                        let delay = backoff.next_delay();
                        warn!(node = %node, %error, retry_in_ms = delay.as_millis() as u64, "own broker connection lost; republishing from the store");
                        if deadline.is_some() {
                            break 'connection;
                        }
                        tokio::time::sleep(delay).await;
                        continue 'connection;
                    }
                },
                head = heads.recv(), if heads_open => match head {
                    Some((origin, message)) => {
                        if connected {
                            publish_head(&client, &node, &origin, &message);
                        }
                        latest_heads.insert(origin, message);
                    }
                    None => heads_open = false,
                },
                changed = trust.changed(), if trust_open => {
                    match changed {
                        Ok(()) if connected => publish_trust(&client, &node, trust.borrow().as_deref()),
                        Ok(()) => {}
                        Err(_) => trust_open = false,
                    }
                }
                changed = latest.changed(), if latest_open => {
                    if changed.is_err() {
                        latest_open = false;
                    }
                }
                () = drain.cancelled(), if deadline.is_none() => {
                    deadline = Some(tokio::time::Instant::now() + grace);
                }
                () = wait_for_deadline => {
                    warn!(node = %node, unconfirmed = outstanding, "grace period over; unconfirmed deliveries are republished at next start");
                    break 'connection;
                }
            }
        }
    }
    store.flush().await.map_err(store_failed)?;
    Ok(())
}
