//! The input side shared by relays and clinics: the upstream connection, the processing loop
//! (decide with the core, persist and flush, acknowledge), and catch-up from the parent.
//!
//! The upstream task only polls its rumqttc event loop and hands [`Input`]s to the processing
//! loop over a bounded channel; it never publishes or subscribes itself (rumqttc deadlocks
//! when the polling task waits on its own request channel). The processing loop acknowledges
//! each publish only after the store flushed what it decided, sends catch-up requests when
//! the connection comes up, periodically, and while the parent has more pages.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Packet, Publish, QoS};
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use kairan_protocol::sequence::SeqDecision;
use kairan_protocol::{Digest, Scope};

use crate::clock;
use crate::core::{Accepted, Core, Counters, HeadOutcome, Outcome};
use crate::error::CliError;
use crate::mqtt::Backoff;
use crate::store::{SledStore, Store, StoreError};
use crate::sync::{self, MAX_SYNC_PAGE_ENTRIES, RateLimiter, SyncRequest};
use crate::trust_state::{TrustChange, TrustState};

/// What the upstream task hands to the processing loop.
#[derive(Debug)]
pub enum Input {
    /// The connection is up (again) and subscriptions were requested.
    Connected,
    /// A message arrived.
    Publish(Publish),
}

/// A gap asks for the page at the same cursor again only after this long.
const GAP_REQUEST_SPACING: Duration = Duration::from_secs(1);
/// A periodic tick repeats an unanswered request (same cursor) only after this long: a parent
/// slow to answer — busy, or back from a restart with every child catching up — would
/// otherwise receive the same request at every tick from every child and send each page again
/// and again, answering ever more slowly. A (re)connection always asks at once.
const TICK_REPEAT_SPACING: Duration = Duration::from_secs(5);

/// Refused live inputs processed per input topic and second, sustained; past it the loop
/// throttles (per publisher route: the ingest topic, the parent's topics).
pub const REFUSALS_PER_SEC: u32 = 200;
/// Refused live inputs processed per input topic in a burst before throttling.
pub const REFUSALS_BURST: u32 = 200;

/// Cursor name of the parent's output log position this node has caught up to.
pub const SYNC_CURSOR: &str = "sync";

/// Polls the upstream connection and hands inputs to the processing loop.
pub async fn upstream_loop(
    client: AsyncClient,
    mut eventloop: rumqttc::EventLoop,
    filters: Vec<String>,
    queue: mpsc::Sender<Input>,
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
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    awaited_subacks = awaited_subacks.saturating_sub(1);
                    if awaited_subacks == 0 {
                        subscribed.store(true, Ordering::SeqCst);
                        if queue.send(Input::Connected).await.is_err() {
                            break;
                        }
                    }
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    if queue.send(Input::Publish(publish)).await.is_err() {
                        break;
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

/// Persists an outcome and flushes.
pub async fn persist(store: &SledStore, outcome: &Outcome) -> Result<(), StoreError> {
    if matches!(outcome, Outcome::Duplicate { .. } | Outcome::Held { .. }) {
        return Ok(());
    }
    record(store, outcome)?;
    store.flush().await
}

/// Catch-up from the parent: where to ask, and how far this node got.
#[derive(Debug, Clone)]
pub struct CatchUp {
    /// The parent's node id.
    pub parent: String,
    /// This node's id (its name in the sync topics).
    pub child: String,
    /// This node's scope.
    pub scope: Scope,
    /// Time between periodic requests.
    pub interval: Duration,
}

impl CatchUp {
    /// The topic this node receives answers on (add it to the upstream filters).
    pub fn response_topic(&self) -> String {
        sync::response_topic(&self.parent, &self.child)
    }
}

/// What the processing loop reports besides deciding.
pub trait Sink: Send {
    /// A delivery was accepted and is durable.
    fn accepted(&mut self, accepted: &Accepted) -> Result<(), CliError>;
    /// A new trust bundle is in force and durable (its JSON).
    fn trust_changed(&mut self, _bundle: &[u8]) {}
    /// A newer verified head of `origin` arrived (the head message JSON).
    fn head_changed(&mut self, _origin: &str, _message: &[u8]) {}
}

/// Applies a trust bundle: merge, verify, store and flush, then hand it to the core and the sink.
async fn apply_trust(
    trust: &mut TrustState,
    core: &mut Core,
    store: &SledStore,
    bytes: &[u8],
    node: &str,
    sink: &mut impl Sink,
) -> Result<(), CliError> {
    match trust.apply(bytes, clock::now()) {
        Ok(TrustChange::Unchanged) => Ok(()),
        Ok(TrustChange::Updated(json)) => {
            trust.save(store).map_err(store_failed)?;
            store.flush().await.map_err(store_failed)?;
            core.set_anchors(trust.anchors().clone());
            core.set_revocations(trust.revoked().clone());
            info!(
                node = %node,
                revoked_keys = trust.revoked().len(),
                rotations = trust.bundle().rotations.len(),
                "trust bundle updated"
            );
            sink.trust_changed(&json);
            Ok(())
        }
        Err(error) => {
            warn!(node = %node, reason = error.code(), "trust bundle refused, nothing changed: {error}");
            Ok(())
        }
    }
}

/// The loop's trust inputs.
#[derive(Debug)]
pub struct TrustInput {
    /// The state loaded at start.
    pub state: TrustState,
    /// Topics that carry bundles (the parent's trust topic; the national node's control topic).
    pub topics: Vec<String>,
    /// Topics that carry signed heads start with this (the parent's `…/heads/`, or the
    /// national node's own `…/ingest-heads`).
    pub head_prefix: String,
}

/// Decides, persists, acknowledges, catches up. Returns when the upstream task ends.
#[allow(clippy::too_many_arguments)] // two call sites (relay, clinic); these are the loop's inputs
pub async fn intake_loop(
    mut core: Core,
    store: SledStore,
    client: AsyncClient,
    mut queue: mpsc::Receiver<Input>,
    catch_up: Option<CatchUp>,
    trust_input: TrustInput,
    mut sink: impl Sink,
    counters: Arc<Mutex<Counters>>,
    shutdown: CancellationToken,
) -> Result<(), CliError> {
    let TrustInput { state: mut trust, topics: trust_topics, head_prefix } = trust_input;
    let mut refusals = RateLimiter::new(REFUSALS_PER_SEC, REFUSALS_BURST);
    core.set_anchors(trust.anchors().clone());
    core.set_revocations(trust.revoked().clone());
    let node = core.id().to_owned();
    let response_topic = catch_up.as_ref().map(CatchUp::response_topic);
    let mut cursor = store.cursor(SYNC_CURSOR).map_err(store_failed)?;
    let mut ticker =
        tokio::time::interval(catch_up.as_ref().map_or(Duration::from_secs(3600), |c| c.interval));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    // The cursor and time of the last catch-up request: a burst of gaps (a parent back from
    // a crash forwards what it has in a new order) asks once, not once per delivery — every
    // answer is a page the parent reads and sends, and many children may be asking.
    let mut last_request: Option<(u64, tokio::time::Instant)> = None;
    loop {
        let (input, tick) = tokio::select! {
            input = queue.recv() => match input {
                Some(input) => (input, false),
                None => break,
            },
            _ = ticker.tick() => (Input::Connected, true),
        };
        let publish = match input {
            Input::Connected => {
                // Every tick: a feed whose newest head has expired is frozen (or withheld).
                for head in core.newly_frozen(clock::now()) {
                    error!(
                        node = %node,
                        origin = %head.origin,
                        seq = head.seq,
                        expired_at = %head.expires_at,
                        "FEED FROZEN: no fresh signed head from this origin"
                    );
                }
                *counters.lock().await = core.counters();
                let repeat = tick
                    && last_request
                        .is_some_and(|(after, at)| after == cursor && at.elapsed() < TICK_REPEAT_SPACING);
                if let (Some(catch_up), false) = (&catch_up, repeat) {
                    request_page(&client, catch_up, cursor, trust.digest()).await;
                    last_request = Some((cursor, tokio::time::Instant::now()));
                }
                continue;
            }
            Input::Publish(publish) => publish,
        };
        if publish.topic.starts_with(&head_prefix) {
            match core.on_head(&publish.payload, &publish.topic, clock::now()) {
                HeadOutcome::Newer { origin, head, missing } => {
                    if let Some((from, to)) = missing {
                        warn!(node = %node, %origin, from, to, head_seq = head.seq, "GAP: the origin's signed head names advisories not held here; catching up");
                        if let Some(catch_up) = &catch_up {
                            request_page(&client, catch_up, cursor, trust.digest()).await;
                        }
                    }
                    sink.head_changed(&origin, &publish.payload);
                }
                HeadOutcome::Known => {}
                HeadOutcome::Rejected(rejection) => {
                    warn!(node = %node, reason = %rejection.code, source = %rejection.source, "head refused: {}", rejection.message);
                    store.put_rejection(&rejection).map_err(store_failed)?;
                    store.flush().await.map_err(store_failed)?;
                }
            }
            let _ = client.ack(&publish).await;
        } else if trust_topics.contains(&publish.topic) {
            apply_trust(&mut trust, &mut core, &store, &publish.payload, &node, &mut sink).await?;
            let _ = client.ack(&publish).await;
        } else if Some(&publish.topic) == response_topic.as_ref() {
            let Some(catch_up) = &catch_up else { continue };
            match sync::parse_response(&publish.payload) {
                Ok(response) if response.after == cursor => {
                    if let Some(bundle) = &response.trust {
                        apply_trust(&mut trust, &mut core, &store, &bundle.to_json(), &node, &mut sink)
                            .await?;
                    }
                    let count = response.deliveries.len();
                    // One flush for the whole page (durable before anything is forwarded), not
                    // one per delivery: a node back from a week offline catches up hundreds.
                    let mut outcomes = Vec::with_capacity(response.deliveries.len());
                    let mut held = false;
                    for delivery in &response.deliveries {
                        let outcome =
                            core.on_delivery(&delivery.to_json(), crate::core::SYNC_SOURCE, clock::now());
                        if matches!(outcome, Outcome::Held { .. }) {
                            // Cannot process now: keep the cursor so these pages come again.
                            held = true;
                            report(&outcome, &node, &mut sink)?;
                            break;
                        }
                        record(&store, &outcome).map_err(|e| stop(&node, &shutdown, e))?;
                        outcomes.push(outcome);
                    }
                    if !held {
                        cursor = response.scanned_upto;
                        store.set_cursor(SYNC_CURSOR, cursor).map_err(store_failed)?;
                    }
                    store.flush().await.map_err(store_failed)?;
                    for outcome in &outcomes {
                        report(outcome, &node, &mut sink)?;
                    }
                    if count > 0 || response.has_more() {
                        info!(node = %node, received = count, caught_up_to = cursor, parent_latest = response.last_relay_seq, "catch-up page");
                    }
                    if response.has_more() {
                        request_page(&client, catch_up, cursor, trust.digest()).await;
                        last_request = Some((cursor, tokio::time::Instant::now()));
                    }
                }
                // An answer to an older request (a page already applied): ignore.
                Ok(response) => {
                    debug!(node = %node, after = response.after, cursor, "stale catch-up page ignored")
                }
                Err(error) => warn!(node = %node, %error, "catch-up response refused"),
            }
            let _ = client.ack(&publish).await;
        } else {
            let outcome = core.on_delivery(&publish.payload, &publish.topic, clock::now());
            let refused = matches!(outcome, Outcome::Rejected(_));
            let decided = decide(&store, &outcome, &node, &mut sink, &shutdown).await?;
            if refused {
                // Bad input costs a verification each: past the budget of refusals per input
                // topic, the loop slows down instead of dropping anything. The broker's
                // in-flight window then holds the flood back; genuine deliveries queued behind
                // it are delayed, never lost.
                let mut throttled = false;
                while !refusals.allow(&publish.topic, clock::now()) {
                    if !throttled {
                        warn!(node = %node, source = %publish.topic, "refusing input faster than {REFUSALS_PER_SEC}/s: throttling this input");
                        throttled = true;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            if let (true, Some(catch_up)) = (decided.gap, &catch_up) {
                // A jump in an origin's chain: ask the parent for what we missed now (unless
                // that was just asked).
                let asked = last_request
                    .is_some_and(|(after, at)| after == cursor && at.elapsed() < GAP_REQUEST_SPACING);
                if !asked {
                    request_page(&client, catch_up, cursor, trust.digest()).await;
                    last_request = Some((cursor, tokio::time::Instant::now()));
                }
            }
            // Durable now: acknowledge upstream (a lost ack only means a redelivered duplicate).
            if decided.ack {
                if let Err(error) = client.ack(&publish).await {
                    debug!(%error, "ack not sent; the delivery will be redelivered and deduplicated");
                }
            }
        }
        *counters.lock().await = core.counters();
    }
    Ok(())
}

async fn request_page(client: &AsyncClient, catch_up: &CatchUp, after: u64, trust: Option<Digest>) {
    let request = SyncRequest { after, scope: catch_up.scope.clone(), limit: MAX_SYNC_PAGE_ENTRIES, trust };
    let topic = sync::request_topic(&catch_up.parent, &catch_up.child);
    if let Err(error) = client.publish(topic, QoS::AtMostOnce, false, request.to_json()).await {
        debug!(%error, "catch-up request not sent; retried at the next tick");
    }
}

fn store_failed(error: StoreError) -> CliError {
    CliError::Failed(format!("{error}; stopping so nothing is acknowledged that is not stored"))
}

/// What the loop does after deciding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Decided {
    /// An origin chain jumped: catch up now.
    gap: bool,
    /// Acknowledge upstream (false only when the node cannot process it now).
    ack: bool,
}

/// Records an outcome in the store without flushing.
fn record(store: &SledStore, outcome: &Outcome) -> Result<(), StoreError> {
    match outcome {
        Outcome::Accepted(accepted) => store.put_accepted(&accepted.record),
        Outcome::Rejected(rejection) => store.put_rejection(rejection).map(|_| ()),
        Outcome::Fork(fork) => store.put_fork(fork),
        Outcome::Duplicate { .. } | Outcome::Held { .. } => Ok(()),
    }
}

fn stop(node: &str, shutdown: &CancellationToken, error: StoreError) -> CliError {
    error!(node = %node, %error, "store failed; stopping");
    shutdown.cancel();
    store_failed(error)
}

/// Persists (and flushes) an outcome, then reports it.
async fn decide(
    store: &SledStore,
    outcome: &Outcome,
    node: &str,
    sink: &mut impl Sink,
    shutdown: &CancellationToken,
) -> Result<Decided, CliError> {
    if let Err(error) = persist(store, outcome).await {
        return Err(stop(node, shutdown, error));
    }
    report(outcome, node, sink)
}

/// Logs a durable outcome and hands accepted deliveries to the sink.
fn report(outcome: &Outcome, node: &str, sink: &mut impl Sink) -> Result<Decided, CliError> {
    let mut gap = false;
    let mut ack = true;
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
                    gap = true;
                    warn!(node = %node, origin = %record.origin, from, to, "gap in origin chain: advisories missing; catching up")
                }
                SeqDecision::Backfill => {
                    info!(node = %node, origin = %record.origin, seq = record.seq, "backfilled")
                }
                _ => {}
            }
            sink.accepted(accepted)?;
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
        Outcome::Held { reason } => {
            ack = false;
            error!(node = %node, "not processed, left unacknowledged for redelivery: {reason}");
        }
    }
    Ok(Decided { gap, ack })
}
