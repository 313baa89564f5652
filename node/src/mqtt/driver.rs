//! The one async driver: runs a [`Machine`] over real MQTT connections and a [`Store`], for
//! relays and clinics alike. It holds no decision — it performs the machine's actions and
//! feeds back what happened.
//!
//! ```text
//! parent broker ─▶ upstream task (rumqttc, manual acks) ─▶ ┐
//!                                                          ├─▶ driver ─▶ Machine
//! own broker ◀─▶ downstream connection (relays) ◀───────── ┘     │
//!                                    store.commit on a blocking thread (one at a time)
//! ```
//! The upstream task only polls its event loop and hands events over a bounded channel; it
//! never publishes or subscribes itself (rumqttc deadlocks when the polling task waits on its
//! own request channel). The downstream event loop is polled on a task of its own too
//! (`spawn_poll`: rumqttc's `poll` is not cancel-safe).
//!
//! Shutdown: the token stops input; the machine commits what it decided; the driver waits for
//! the own broker to confirm what was forwarded, until the grace deadline; the last commit
//! makes the confirmed cursor durable.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event as MqttEvent, Packet, Publish, QoS};
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use kairan_protocol::Timestamp;

pub use super::client::LinkConfig;
use super::client::{self, Backoff, Connection, REQUEST_CHANNEL_CAPACITY};
use crate::clock::Clock;
use crate::error::NodeError;
use crate::machine::{self, Action, Counters, Event, Link, Machine, Outgoing, Qos};
use crate::report;
use crate::store::{Store, StoreError};
use crate::tls::{PeerCheck, TrustView};

/// Upstream events handed to the driver, at most.
const UPSTREAM_QUEUE: usize = 256;

/// Why the upstream link is down, as last seen (a TLS refusal names what the broker presented).
pub type UpstreamError = Arc<SyncMutex<Option<String>>>;

/// What a running node reports besides its log: the clinic keeps readable copies and prints
/// announcements.
pub trait Sink: Send + 'static {
    /// Called for every event, after it is logged.
    fn on_event(&mut self, _event: &Event) -> Result<(), NodeError> {
        Ok(())
    }

    /// Called when a commit completed (durably or not), with the time since the driver
    /// started it.
    fn on_commit(&mut self, _elapsed: Duration) {}

    /// Called when the own broker connection (relays) comes up or goes down.
    fn on_downstream(&mut self, _up: bool) {}
}

/// Time as a driver sees it.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long shutdown waits for the own broker to confirm what was forwarded.
    pub grace: Duration,
    /// The node's clock (the system clock outside tests).
    pub clock: Clock,
}

/// A sink that does nothing more than the log.
#[derive(Debug, Default)]
pub struct LogOnly;

impl Sink for LogOnly {}

/// What the caller keeps of a running driver.
#[derive(Debug)]
pub struct Running {
    /// Counters since start, updated as the machine works.
    pub counters: Arc<Mutex<Counters>>,
    /// Whether the upstream connection is up with its subscriptions acknowledged.
    pub subscribed: Arc<AtomicBool>,
    /// Why the upstream connection failed last (`None` while connected).
    pub upstream_error: UpstreamError,
    /// The driver task.
    pub join: JoinHandle<Result<(), NodeError>>,
    /// The upstream client, for the directory client to state directories on the parent's
    /// broker with the member's one session (never used from the polling task).
    pub upstream_client: AsyncClient,
}

/// Runs `machine` over `store`, its upstream link and (relays) its downstream link until
/// `shutdown` is cancelled; `timing.grace` bounds how long it waits for the own broker then.
/// A TLS upstream link checks its broker with the trust the machine holds, kept current.
pub fn spawn<S: Store>(
    machine: Machine,
    store: S,
    upstream: LinkConfig,
    downstream: Option<LinkConfig>,
    sink: impl Sink,
    shutdown: CancellationToken,
    timing: Timing,
) -> Result<Running, NodeError> {
    let Timing { grace, clock } = timing;
    let counters = Arc::new(Mutex::new(machine.counters()));
    let subscribed = Arc::new(AtomicBool::new(false));
    let upstream_error: UpstreamError = Arc::default();
    let trust_view = match &upstream.peer {
        Some(PeerCheck::Relay { trust, .. }) => {
            let (anchors, revocations) = machine.trust_in_force();
            trust.update(anchors, revocations);
            Some(trust.clone())
        }
        _ => None,
    };
    let connection = client::connect(&upstream, false, true, REQUEST_CHANNEL_CAPACITY)
        .map_err(|e| NodeError::Task(format!("upstream {}: {e}", upstream.addr.url())))?;
    let client = connection.client.clone();
    let upstream_client = client.clone();
    let (queue_tx, queue_rx) = mpsc::channel(UPSTREAM_QUEUE);
    let upstream_task = tokio::spawn(upstream_loop(
        connection,
        machine.upstream_filters(),
        queue_tx,
        shutdown.clone(),
        UpstreamLabel {
            node: machine.id().to_owned(),
            url: upstream.addr.url(),
            plaintext: !upstream.addr.tls && !upstream.addr.is_loopback(),
        },
        subscribed.clone(),
        upstream_error.clone(),
    ));
    let driver = Driver {
        label: machine.id().to_owned(),
        downstream_filters: machine.downstream_filters(),
        machine,
        store,
        upstream: client,
        messages: HashMap::new(),
        next_message: 0,
        downstream: downstream.map(Downstream::new),
        counters: counters.clone(),
        sink,
        trust_view,
        clock,
    };
    let join = tokio::spawn(async move {
        let result = driver.run(queue_rx, shutdown.clone(), grace).await;
        // Whatever ended the driver, stop the upstream task too.
        shutdown.cancel();
        let _ = upstream_task.await;
        result
    });
    Ok(Running { counters, subscribed, upstream_error, join, upstream_client })
}

/// What the upstream task hands to the driver.
#[derive(Debug)]
enum UpstreamEvent {
    Connected,
    Disconnected,
    Message(Publish),
}

/// The own broker connection of a relay: a new client (and tunnel) per connection attempt.
struct Downstream {
    config: LinkConfig,
    client: Option<AsyncClient>,
    tunnel: Option<crate::tls::Tunnel>,
    events: Option<mpsc::Receiver<Result<MqttEvent, rumqttc::ConnectionError>>>,
    reconnect_at: Option<Instant>,
    backoff: Backoff,
}

impl Downstream {
    fn new(config: LinkConfig) -> Self {
        Self {
            config,
            client: None,
            tunnel: None,
            events: None,
            reconnect_at: Some(Instant::now()),
            backoff: Backoff::new(),
        }
    }

    fn connect(&mut self, label: &str) {
        match client::connect(&self.config, true, false, REQUEST_CHANNEL_CAPACITY) {
            Ok(Connection { client, eventloop, tunnel }) => {
                self.events = Some(client::spawn_poll(eventloop));
                self.client = Some(client);
                self.tunnel = tunnel;
                self.reconnect_at = None;
            }
            Err(error) => {
                let delay = self.lost();
                warn!(node = %label, %error, retry_in_ms = delay.as_millis() as u64, "cannot connect to own broker");
            }
        }
    }

    /// Why the last connection failed, as the tunnel saw it, if it did.
    fn explain(&self, error: &rumqttc::ConnectionError) -> String {
        self.tunnel.as_ref().and_then(crate::tls::Tunnel::last_error).unwrap_or_else(|| error.to_string())
    }

    fn lost(&mut self) -> Duration {
        self.client = None;
        self.tunnel = None;
        self.events = None;
        let delay = self.backoff.next_delay();
        self.reconnect_at = Some(Instant::now() + delay);
        delay
    }
}

struct Driver<S: Store, K: Sink> {
    label: String,
    downstream_filters: Vec<String>,
    machine: Machine,
    store: S,
    upstream: AsyncClient,
    messages: HashMap<machine::MsgId, Publish>,
    next_message: machine::MsgId,
    downstream: Option<Downstream>,
    counters: Arc<Mutex<Counters>>,
    sink: K,
    /// What the upstream TLS check trusts: kept equal to the machine's trust in force.
    trust_view: Option<TrustView>,
    clock: Clock,
}

fn instant_of(at: Timestamp, now: Timestamp) -> Instant {
    let wait_ms = u64::try_from((at.unix_ms() - now.unix_ms()).max(0)).unwrap_or(0);
    Instant::now() + Duration::from_millis(wait_ms)
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn recv_some<T>(receiver: Option<&mut mpsc::Receiver<T>>) -> Option<T> {
    match receiver {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

/// A commit in flight: its id, when the driver started it, the blocking task.
type CommitTask = (u64, Instant, JoinHandle<Result<(), StoreError>>);

async fn join_commit(commit: &mut Option<CommitTask>) -> (u64, Instant, Result<(), StoreError>) {
    match commit {
        Some((id, started, handle)) => {
            let result =
                handle.await.unwrap_or_else(|e| Err(StoreError::Engine(format!("commit task: {e}"))));
            (*id, *started, result)
        }
        None => std::future::pending().await,
    }
}

impl<S: Store, K: Sink> Driver<S, K> {
    async fn run(
        mut self,
        mut upstream_rx: mpsc::Receiver<UpstreamEvent>,
        shutdown: CancellationToken,
        grace: Duration,
    ) -> Result<(), NodeError> {
        let mut commit: Option<CommitTask> = None;
        let mut closing_deadline: Option<Instant> = None;
        let mut upstream_open = true;
        loop {
            self.perform(&mut commit).await?;
            *self.counters.lock().await = self.machine.counters();
            if closing_deadline.is_some() && commit.is_none() && self.machine.is_drained() {
                break;
            }
            let now = self.clock.now();
            let accepts = upstream_open && self.machine.accepts_input(now);
            let wake = self.machine.poll_timeout().map(|at| instant_of(at, now));
            let reconnect_at = self.downstream.as_ref().and_then(|d| d.reconnect_at);
            let downstream_events = self.downstream.as_mut().and_then(|d| d.events.as_mut());
            tokio::select! {
                (id, started, result) = join_commit(&mut commit) => {
                    commit = None;
                    self.sink.on_commit(started.elapsed());
                    result?;
                    self.machine.handle_committed(id, self.clock.now());
                }
                event = recv_some(downstream_events) => self.on_downstream(event, closing_deadline.is_some()),
                event = upstream_rx.recv(), if accepts => match event {
                    Some(UpstreamEvent::Connected) => self.machine.handle_upstream_connected(self.clock.now()),
                    Some(UpstreamEvent::Disconnected) => {
                        // Unacknowledged messages of the lost connection come again on the next.
                        self.messages.clear();
                        self.machine.handle_upstream_disconnected();
                    }
                    Some(UpstreamEvent::Message(publish)) => {
                        self.next_message += 1;
                        let id = self.next_message;
                        let (topic, payload) = (publish.topic.clone(), publish.payload.clone());
                        self.messages.insert(id, publish);
                        self.machine.handle_upstream_message(id, &topic, payload, self.clock.now());
                    }
                    None => upstream_open = false,
                },
                () = sleep_until_some(wake) => self.machine.handle_timeout(self.clock.now()),
                () = sleep_until_some(reconnect_at), if closing_deadline.is_none() => {
                    if let Some(downstream) = &mut self.downstream {
                        downstream.connect(&self.label);
                    }
                }
                () = shutdown.cancelled(), if closing_deadline.is_none() => {
                    closing_deadline = Some(Instant::now() + grace);
                    self.machine.handle_shutdown();
                }
                () = sleep_until_some(closing_deadline) => {
                    warn!(node = %self.label, "grace period over; unconfirmed deliveries are republished at next start");
                    break;
                }
            }
            if !upstream_open && closing_deadline.is_none() {
                closing_deadline = Some(Instant::now() + grace);
                self.machine.handle_shutdown();
            }
        }
        // A commit still in flight completes: it may hold the confirmed cursor.
        if let Some((_, _, handle)) = commit.take() {
            handle.await.map_err(|e| NodeError::Task(format!("commit task: {e}")))??;
        }
        if let Some(client) = self.downstream.as_ref().and_then(|d| d.client.as_ref()) {
            let _ = client.try_disconnect();
        }
        Ok(())
    }

    /// Performs every action the machine has for us.
    async fn perform(&mut self, commit: &mut Option<CommitTask>) -> Result<(), NodeError> {
        while let Some(action) = self.machine.poll_action() {
            match action {
                Action::Commit { id, batch } => {
                    let store = self.store.clone();
                    let started = Instant::now();
                    let task = tokio::task::spawn_blocking(move || store.commit(&batch));
                    *commit = Some((id, started, task));
                }
                Action::Ack(message) => {
                    if let Some(publish) = self.messages.remove(&message) {
                        if let Err(error) = self.upstream.ack(&publish).await {
                            debug!(%error, "ack not sent; the message will be redelivered and deduplicated");
                        }
                    }
                }
                Action::Publish(outgoing) => self.publish(outgoing).await,
                Action::Read { id, query } => {
                    let result = machine::query::run(&self.store, &query)?;
                    self.machine.handle_read(id, result);
                }
                Action::Report(event) => {
                    report::log_event(&self.label, &event);
                    if let (Event::TrustUpdated { .. }, Some(view)) = (&event, &self.trust_view) {
                        let (anchors, revocations) = self.machine.trust_in_force();
                        view.update(anchors, revocations);
                    }
                    self.sink.on_event(&event)?;
                }
            }
        }
        Ok(())
    }

    async fn publish(&mut self, outgoing: Outgoing) {
        let Outgoing { link, topic, payload, qos, retain } = outgoing;
        let client = match link {
            Link::Upstream => Some(&self.upstream),
            Link::Downstream => self.downstream.as_ref().and_then(|d| d.client.as_ref()),
        };
        let Some(client) = client else {
            debug!(node = %self.label, %topic, "not connected; not published");
            return;
        };
        match qos {
            // Deliveries: the machine counts each one in flight until the broker acknowledges
            // it, so it must be queued; the event loop drains the channel on its own task.
            Qos::AtLeastOnce => {
                if let Err(error) = client.publish_bytes(topic, QoS::AtLeastOnce, retain, payload).await {
                    debug!(node = %self.label, %error, "publish not queued; republished after reconnection");
                }
            }
            // Retained state and catch-up traffic: a lost one is sent again or asked for again.
            Qos::AtMostOnce => {
                if client.try_publish(topic, QoS::AtMostOnce, retain, payload.to_vec()).is_err() {
                    debug!(node = %self.label, "request channel full; message dropped (it is sent or asked for again)");
                }
            }
        }
    }

    fn on_downstream(&mut self, event: Option<Result<MqttEvent, rumqttc::ConnectionError>>, closing: bool) {
        let event = event.unwrap_or(Err(rumqttc::ConnectionError::RequestsDone));
        match event {
            Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                debug!(node = %self.label, "connected to own broker");
                if let Some(downstream) = &mut self.downstream {
                    downstream.backoff.reset();
                    if let Some(client) = &downstream.client {
                        for filter in &self.downstream_filters {
                            if let Err(error) = client.try_subscribe(filter.clone(), QoS::AtMostOnce) {
                                warn!(node = %self.label, %error, "cannot subscribe to catch-up requests");
                            }
                        }
                    }
                }
                self.sink.on_downstream(true);
                self.machine.handle_downstream_connected(self.clock.now());
            }
            Ok(MqttEvent::Incoming(Packet::PubAck(_))) => self.machine.handle_downstream_acked(),
            Ok(MqttEvent::Incoming(Packet::Publish(request))) => {
                self.machine.handle_downstream_message(&request.topic, &request.payload, self.clock.now());
            }
            Ok(_) => {}
            Err(error) => {
                self.sink.on_downstream(false);
                self.machine.handle_downstream_disconnected();
                if let Some(downstream) = &mut self.downstream {
                    let error = downstream.explain(&error);
                    let delay = downstream.lost();
                    if closing {
                        downstream.reconnect_at = None;
                    }
                    warn!(
                        node = %self.label,
                        %error,
                        retry_in_ms = delay.as_millis() as u64,
                        "own broker connection lost; republishing from the store"
                    );
                }
            }
        }
    }
}

/// Names of the upstream link for its log lines.
struct UpstreamLabel {
    node: String,
    url: String,
    /// Plaintext off this machine (an operator's written opt-out): warned at every connection.
    plaintext: bool,
}

/// Polls the upstream connection and hands events to the driver.
async fn upstream_loop(
    connection: Connection,
    filters: Vec<String>,
    queue: mpsc::Sender<UpstreamEvent>,
    shutdown: CancellationToken,
    label: UpstreamLabel,
    subscribed: Arc<AtomicBool>,
    last_error: UpstreamError,
) {
    let set_error = |value: Option<String>| {
        if let Ok(mut slot) = last_error.lock() {
            *slot = value;
        }
    };
    let Connection { client, mut eventloop, tunnel } = connection;
    let mut backoff = Backoff::new();
    let mut awaited_subacks = 0usize;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            event = eventloop.poll() => match event {
                Ok(MqttEvent::Incoming(Packet::ConnAck(ack))) => {
                    backoff.reset();
                    set_error(None);
                    if label.plaintext {
                        warn!(node = %label.node, broker = %label.url, "connected upstream WITHOUT TLS: the password and every advisory cross this link in clear");
                    }
                    info!(node = %label.node, broker = %label.url, session_present = ack.session_present, "connected upstream");
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
                Ok(MqttEvent::Incoming(Packet::SubAck(_))) => {
                    awaited_subacks = awaited_subacks.saturating_sub(1);
                    if awaited_subacks == 0 {
                        subscribed.store(true, Ordering::SeqCst);
                        if queue.send(UpstreamEvent::Connected).await.is_err() {
                            break;
                        }
                    }
                }
                Ok(MqttEvent::Incoming(Packet::Publish(publish))) => {
                    if queue.send(UpstreamEvent::Message(publish)).await.is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    let was_subscribed = subscribed.swap(false, Ordering::SeqCst);
                    if was_subscribed && queue.send(UpstreamEvent::Disconnected).await.is_err() {
                        break;
                    }
                    let reason = tunnel.as_ref().and_then(crate::tls::Tunnel::last_error).unwrap_or_else(|| error.to_string());
                    set_error(Some(reason.clone()));
                    let delay = backoff.next_delay();
                    warn!(node = %label.node, error = %reason, retry_in_ms = delay.as_millis() as u64, "upstream connection lost");
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
            if matches!(event, MqttEvent::Outgoing(rumqttc::Outgoing::Disconnect)) {
                break;
            }
        }
    })
    .await;
    drop(tunnel);
}
