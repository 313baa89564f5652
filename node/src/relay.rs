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
use tracing::{debug, error, info, warn};

use kairan_protocol::sequence::SeqDecision;

use crate::broker;
use crate::clock;
use crate::config::{BrokerConfig, NodeConfig, UpstreamConfig};
use crate::core::{Attester, Core, CoreConfig, Counters, Outcome, Upstream};
use crate::error::CliError;
use crate::mqtt::{self, Backoff, BrokerAddr, Credentials, REQUEST_CHANNEL_CAPACITY};
use crate::store::{SledStore, Store, StoreError};

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
    let core = Core::restore(
        CoreConfig {
            id: id.clone(),
            scope: config.cert_info.scope.clone(),
            upstream: match &config.upstream {
                UpstreamConfig::Ingest => Upstream::Ingest,
                UpstreamConfig::Parent { parent, .. } => Upstream::Relay(parent.clone()),
            },
            attester: Some(Attester { key: config.key, cert: config.cert }),
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
    let (upstream_addr, upstream_credentials, client_id, filters) = match &config.upstream {
        UpstreamConfig::Ingest => (own_addr.clone(), internal.clone(), format!("{id}-ingest"), vec![mqtt::ingest_topic(&id)]),
        UpstreamConfig::Parent { addr, parent, credentials } => {
            (addr.clone(), credentials.clone(), id.clone(), mqtt::delivery_filters(parent, &config.cert_info.scope))
        }
    };
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
        own_addr.clone(),
        internal.clone(),
        format!("{id}-out"),
        id.clone(),
        drain.clone(),
        config.grace,
    ));
    let options = mqtt::client_options(&client_id, &upstream_addr, upstream_credentials.as_ref(), false, true);
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
    let processor = tokio::spawn(process_loop(core, store.clone(), client, queue_rx, latest_tx, counters.clone(), shutdown.clone()));

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
    Ok(RelayHandle { id, broker: own_addr, internal_credentials: internal, store, counters, subscribed, shutdown, join })
}

pub(crate) fn random_password() -> String {
    let mut bytes = [0u8; 16];
    rand::Rng::fill(&mut rand::rngs::OsRng, &mut bytes);
    hex::encode(bytes)
}

/// Polls the upstream connection and hands publishes to the processor. Never publishes.
pub(crate) async fn upstream_loop(
    client: AsyncClient,
    mut eventloop: rumqttc::EventLoop,
    filters: Vec<String>,
    queue: mpsc::Sender<Publish>,
    shutdown: CancellationToken,
    label: String,
    subscribed: Arc<AtomicBool>,
) {
    let mut backoff = Backoff::new();
    let mut awaited_subacks = 0usize;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            event = eventloop.poll() => match event {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    backoff.reset();
                    info!(node = %label, session_present = ack.session_present, "connected upstream");
                    awaited_subacks = filters.len();
                    // Subscribing goes through the request channel, which this task drains:
                    // do it from another task.
                    let (client, filters) = (client.clone(), filters.clone());
                    tokio::spawn(async move {
                        for filter in filters {
                            if let Err(error) = client.subscribe(filter, QoS::AtLeastOnce).await {
                                warn!(%error, "subscribe failed");
                            }
                        }
                    });
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    if queue.send(publish).await.is_err() {
                        break;
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    awaited_subacks = awaited_subacks.saturating_sub(1);
                    if awaited_subacks == 0 {
                        subscribed.store(true, Ordering::SeqCst);
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    subscribed.store(false, Ordering::SeqCst);
                    let delay = backoff.next_delay();
                    warn!(node = %label, %error, retry_in_ms = delay.as_millis() as u64, "upstream connection lost");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }
    let _ = client.try_disconnect();
    // Give the event loop a moment to send DISCONNECT so the broker keeps our session cleanly.
    let _ = tokio::time::timeout(Duration::from_millis(200), async {
        while let Ok(event) = eventloop.poll().await {
            if matches!(event, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                break;
            }
        }
    })
    .await;
}

/// Decides, persists, acknowledges, wakes the publisher.
async fn process_loop(
    mut core: Core,
    store: SledStore,
    client: AsyncClient,
    mut queue: mpsc::Receiver<Publish>,
    latest: watch::Sender<u64>,
    counters: Arc<Mutex<Counters>>,
    shutdown: CancellationToken,
) -> Result<(), CliError> {
    let node = core.id().to_owned();
    while let Some(publish) = queue.recv().await {
        let now = clock::now();
        let outcome = core.on_delivery(&publish.payload, &publish.topic, now);
        let persisted = persist(&store, &outcome).await;
        if let Err(error) = persisted {
            error!(node = %node, %error, "store failed; stopping");
            shutdown.cancel();
            return Err(store_failed(error));
        }
        // Durable now: acknowledge upstream (a lost ack only means a redelivered duplicate).
        if let Err(error) = client.ack(&publish).await {
            debug!(%error, "ack not sent; the delivery will be redelivered and deduplicated");
        }
        match outcome {
            Outcome::Accepted(accepted) => {
                let record = &accepted.record;
                info!(
                    node = %node,
                    digest = %record.digest,
                    origin = %record.origin,
                    seq = record.seq,
                    relay_seq = record.relay_seq,
                    scope = %record.scope,
                    "accepted"
                );
                match accepted.sequence {
                    SeqDecision::Gap { from, to } => {
                        warn!(node = %node, origin = %record.origin, from, to, "gap in origin chain: advisories missing")
                    }
                    SeqDecision::Backfill => info!(node = %node, origin = %record.origin, seq = record.seq, "backfilled"),
                    _ => {}
                }
                latest.send_replace(record.relay_seq);
            }
            Outcome::Duplicate { digest } => debug!(node = %node, %digest, "duplicate dropped"),
            Outcome::Rejected(rejection) => warn!(
                node = %node,
                digest = %rejection.claimed_digest.map(|d| d.to_string()).unwrap_or_else(|| "-".into()),
                reason = %rejection.code,
                source = %rejection.source,
                "rejected: {}",
                rejection.message
            ),
            Outcome::Fork(fork) => error!(
                node = %node,
                digest = %fork.digest,
                origin = %fork.origin,
                seq = fork.seq,
                "FORK: origin signed two advisories for one sequence number; kept for audit, not forwarded"
            ),
        }
        *counters.lock().await = core.counters();
    }
    Ok(())
}

pub(crate) async fn persist(store: &SledStore, outcome: &Outcome) -> Result<(), StoreError> {
    match outcome {
        Outcome::Accepted(accepted) => store.put_accepted(&accepted.record)?,
        Outcome::Rejected(rejection) => {
            store.put_rejection(rejection)?;
        }
        Outcome::Fork(fork) => store.put_fork(fork)?,
        Outcome::Duplicate { .. } => return Ok(()),
    }
    store.flush().await
}

/// Publishes the output log to the own broker, in relay_seq order, at least once.
#[allow(clippy::too_many_arguments)] // one call site; these are the task's inputs
async fn publisher_loop(
    store: SledStore,
    mut latest: watch::Receiver<u64>,
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
    'connection: loop {
        let options = mqtt::client_options(&client_id, &addr, credentials.as_ref(), true, false);
        let (client, mut eventloop) = AsyncClient::new(options, REQUEST_CHANNEL_CAPACITY);
        let mut sent_upto = confirmed;
        let mut outstanding = 0usize;
        let mut connected = false;
        loop {
            let newest = *latest.borrow();
            if connected && outstanding < PUBLISH_WINDOW && sent_upto < newest {
                let batch = store.log_after(sent_upto, PUBLISH_WINDOW - outstanding).map_err(store_failed)?;
                for record in batch {
                    let topic = topics
                        .entry(record.scope.clone())
                        .or_insert_with(|| mqtt::deliveries_topic(&node, &record.scope))
                        .clone();
                    if client.try_publish(topic.clone(), QoS::AtLeastOnce, false, record.delivery.into_bytes()).is_err() {
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
                event = eventloop.poll() => match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        connected = true;
                        backoff.reset();
                        debug!(node = %node, "publisher connected to own broker");
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
