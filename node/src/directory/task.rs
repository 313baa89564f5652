//! The directory client of a running relay: one connection to its own broker as `<node>~dir`
//! (reads `<node>/directory/#`, writes `<node>/recipients/#`), and the relay's upstream
//! connection (shared with the driver: the broker binds one client id per member) to state
//! directories on the parent's broker. It only publishes from its own task, never from the
//! task polling an event loop (rumqttc deadlocks then).
//!
//! Retained messages on a broker are lost when the broker restarts (the embedded broker keeps
//! them in memory), so everything is stated again whenever a connection comes up.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rumqttc::{AsyncClient, Event as MqttEvent, Packet, QoS};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use kairan_protocol::{Digest, RevocationSet, TrustAnchors, VerifyContext};

use super::{Book, Own, OwnFiles, Received, Signer, current};
use crate::clock;
use crate::mqtt::client::{self, Backoff, REQUEST_CHANNEL_CAPACITY};
use crate::mqtt::driver::LinkConfig;
use crate::tls::TrustView;
use crate::topics::{self, Topic};

/// How often the recipients file is checked for a change.
pub const POLL: Duration = Duration::from_secs(1);
/// How often everything is stated again even without a reconnection (a publish dropped
/// because the client's request queue was full is repaired by then; retained messages make
/// the repetition harmless).
pub const RESTATE: Duration = Duration::from_secs(300);

/// The parent's broker, through the relay's upstream connection.
#[derive(Debug, Clone)]
pub struct Up {
    /// The parent's id (owner of the topics).
    pub parent: String,
    /// The upstream client (shared with the driver).
    pub client: AsyncClient,
    /// Whether the upstream connection is up.
    pub connected: Arc<AtomicBool>,
}

/// What the directory client needs.
#[derive(Debug)]
pub struct DirectoryClient {
    /// The relay's identity for signing.
    pub signer: Signer,
    /// Districts: its recipients file and data dir.
    pub own: Option<OwnFiles>,
    /// `<node>~dir` on the own broker.
    pub link: LinkConfig,
    /// The parent's broker (none on the national node).
    pub up: Option<Up>,
    /// The trust the relay holds now (kept current by the driver), if it has a parent.
    pub trust: Option<TrustView>,
    /// The configured anchors (when there is no view).
    pub anchors: TrustAnchors,
}

/// Starts the directory client; it ends when `shutdown` is cancelled.
pub fn spawn(client: DirectoryClient, shutdown: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(run(client, shutdown))
}

type Events = mpsc::Receiver<Result<MqttEvent, rumqttc::ConnectionError>>;

async fn recv_some(events: Option<&mut Events>) -> Option<Result<MqttEvent, rumqttc::ConnectionError>> {
    match events {
        Some(events) => events.recv().await,
        None => std::future::pending().await,
    }
}

/// The own broker connection (a new client per attempt).
struct Local {
    client: Option<AsyncClient>,
    events: Option<Events>,
    _tunnel: Option<crate::tls::Tunnel>,
    reconnect_at: Option<Instant>,
    backoff: Backoff,
    /// The last connection failure logged.
    last_error: Option<String>,
}

struct State {
    config: DirectoryClient,
    own: Option<Own>,
    /// How many own parts were last stated (to clear parts a smaller version no longer has).
    stated_parts: usize,
    book: Book,
    up_was: bool,
    /// The last failure to sign the own directory (logged once, not every second).
    last_error: Option<String>,
}

async fn run(config: DirectoryClient, shutdown: CancellationToken) {
    let mut local = Local {
        client: None,
        events: None,
        _tunnel: None,
        reconnect_at: Some(Instant::now()),
        backoff: Backoff::new(),
        last_error: None,
    };
    let mut state =
        State { config, own: None, stated_parts: 0, book: Book::default(), up_was: false, last_error: None };
    let mut poll = tokio::time::interval(POLL);
    let mut restate = tokio::time::interval_at(Instant::now() + RESTATE, RESTATE);
    loop {
        let reconnect_at = local.reconnect_at;
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = async { match reconnect_at { Some(at) => tokio::time::sleep_until(at).await, None => std::future::pending().await } } => {
                local.reconnect_at = None;
                match client::connect(&state.config.link, true, false, REQUEST_CHANNEL_CAPACITY) {
                    Ok(connection) => {
                        local.events = Some(client::spawn_poll(connection.eventloop));
                        local.client = Some(connection.client);
                        local._tunnel = connection.tunnel;
                    }
                    Err(error) => {
                        let delay = local.backoff.next_delay();
                        warn!(node = %state.config.signer.id, %error, "directory client cannot connect to own broker");
                        local.reconnect_at = Some(Instant::now() + delay);
                    }
                }
            }
            event = recv_some(local.events.as_mut()) => match event {
                Some(Ok(MqttEvent::Incoming(Packet::ConnAck(_)))) => {
                    local.backoff.reset();
                    local.last_error = None;
                    if let Some(client) = &local.client {
                        let filter = topics::directory_filter(&state.config.signer.id);
                        if let Err(error) = client.try_subscribe(filter, QoS::AtLeastOnce) {
                            warn!(%error, "directory client: subscribe failed");
                        }
                        state.state_own_locally(client);
                    }
                }
                Some(Ok(MqttEvent::Incoming(Packet::Publish(publish)))) => {
                    state.on_child_part(&publish.topic, &publish.payload);
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => {
                    // Once per distinct reason: a broker configured before the directory client
                    // existed refuses `<node>~dir` until its configuration is generated again.
                    let reason = error.to_string();
                    if local.last_error.as_ref() != Some(&reason) {
                        warn!(node = %state.config.signer.id, error = %reason, "directory client lost its own broker (an external broker needs `kairan broker mosquitto-config` run again for the <node>~dir user)");
                        local.last_error = Some(reason);
                    }
                    local.client = None;
                    local.events = None;
                    local._tunnel = None;
                    local.reconnect_at = Some(Instant::now() + local.backoff.next_delay());
                }
                None => {
                    local.client = None;
                    local.events = None;
                    local._tunnel = None;
                    local.reconnect_at = Some(Instant::now() + local.backoff.next_delay());
                }
            },
            _ = poll.tick() => state.on_tick(local.client.as_ref()),
            _ = restate.tick() => {
                if let Some(client) = &local.client {
                    state.state_own_locally(client);
                }
                state.state_own_upward();
                state.state_book_upward();
            }
        }
    }
    if let Some(client) = local.client {
        let _ = client.try_disconnect();
    }
}

impl State {
    fn context_parts(&self) -> (TrustAnchors, RevocationSet) {
        match &self.config.trust {
            Some(view) => view.snapshot(),
            None => (self.config.anchors.clone(), RevocationSet::default()),
        }
    }

    /// A part a child stated on this broker: verified, kept if newest, stated upward.
    fn on_child_part(&mut self, topic: &str, payload: &[u8]) {
        let node = self.config.signer.id.clone();
        let Some(Topic::Directory { scope, part }) = topics::parse(&node, topic) else {
            return;
        };
        if payload.is_empty() {
            return; // a part cleared by its relay
        }
        let (anchors, revocations) = self.context_parts();
        let ctx = VerifyContext { anchors: &anchors, revocations: &revocations, now: clock::now() };
        match self.book.receive(&self.config.signer.scope, scope, part, payload, ctx) {
            Ok(Received::Accepted(scope, part)) => {
                debug!(node = %node, %scope, part, "directory part verified");
                if let Some(up) = &self.config.up {
                    let target = topics::directory_part(&up.parent, &scope, part);
                    if let Err(error) =
                        up.client.try_publish(target, QoS::AtLeastOnce, true, payload.to_vec())
                    {
                        warn!(node = %node, %error, "directory part not stated upstream (stated again at reconnect)");
                    }
                }
            }
            Ok(Received::Stale) => debug!(node = %node, topic, "older directory version dropped"),
            Err(reason) => warn!(node = %node, topic, %reason, "directory part refused; not relayed"),
        }
    }

    /// Checks the recipients file and the upstream link; states what changed.
    fn on_tick(&mut self, local: Option<&AsyncClient>) {
        let mut changed = false;
        if let Some(files) = &self.config.own {
            let content = std::fs::read(&files.recipients).unwrap_or_default();
            let digest = Digest::of(&content).to_string();
            if self.own.as_ref().is_none_or(|own| own.version.content != digest) {
                match current(&self.config.signer, &files.recipients, &files.data_dir, clock::now()) {
                    Ok(own) => {
                        self.last_error = None;
                        info!(
                            node = %self.config.signer.id,
                            version = own.version.version,
                            clinics = own.clinics,
                            parts = own.parts.len(),
                            "recipient directory signed"
                        );
                        self.own = Some(own);
                        changed = true;
                    }
                    Err(error) => {
                        if self.last_error.as_ref() != Some(&error) {
                            warn!(node = %self.config.signer.id, %error, "recipient directory not signed");
                            self.last_error = Some(error);
                        }
                    }
                }
            }
        }
        let up_now = self.config.up.as_ref().is_some_and(|up| up.connected.load(Ordering::SeqCst));
        let reconnected = up_now && !self.up_was;
        self.up_was = up_now;
        if changed {
            if let Some(client) = local {
                self.state_own_locally(client);
            }
            self.state_own_upward();
        }
        if reconnected {
            // The parent's broker may have restarted and lost every retained part.
            if !changed {
                self.state_own_upward();
            }
            self.state_book_upward();
        }
    }

    fn state_own_locally(&mut self, client: &AsyncClient) {
        let Some(own) = &self.own else { return };
        let node = &self.config.signer.id;
        for (index, bytes) in own.parts.iter().enumerate() {
            let topic = topics::recipients_part(node, part_number(index));
            if let Err(error) = client.try_publish(topic, QoS::AtLeastOnce, true, bytes.clone()) {
                warn!(node = %node, %error, "directory part not stated on own broker");
            }
        }
        for index in own.parts.len()..self.stated_parts {
            let _ = client.try_publish(
                topics::recipients_part(node, part_number(index)),
                QoS::AtLeastOnce,
                true,
                Vec::new(),
            );
        }
        self.stated_parts = self.stated_parts.max(own.parts.len());
    }

    fn state_own_upward(&self) {
        let (Some(own), Some(up)) = (&self.own, &self.config.up) else { return };
        let scope = &self.config.signer.scope;
        for (index, bytes) in own.parts.iter().enumerate() {
            let topic = topics::directory_part(&up.parent, scope, part_number(index));
            if let Err(error) = up.client.try_publish(topic, QoS::AtLeastOnce, true, bytes.clone()) {
                warn!(node = %self.config.signer.id, %error, "directory part not stated upstream");
            }
        }
    }

    fn state_book_upward(&self) {
        let Some(up) = &self.config.up else { return };
        for (scope, part, bytes) in self.book.parts() {
            let Ok(scope) = kairan_protocol::Scope::parse(scope) else { continue };
            let topic = topics::directory_part(&up.parent, &scope, part);
            if let Err(error) = up.client.try_publish(topic, QoS::AtLeastOnce, true, bytes.to_vec()) {
                warn!(node = %self.config.signer.id, %error, "directory part not stated upstream");
            }
        }
    }
}

fn part_number(index: usize) -> u32 {
    u32::try_from(index + 1).unwrap_or(u32::MAX)
}
