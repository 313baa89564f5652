//! Prometheus metrics and health of a relay node or a clinic subscriber (`[metrics] listen`).
//!
//! ```text
//! driver ─ Event ─▶ Observed sink ─▶ NodeMetrics (counters, gauges, commit histogram)
//!    │ commit took t ─────┘   └─▶ the node's own sink (log only, clinic inbox)
//!    └ own broker up/down ──▶ Health ◀── store opened, upstream subscribed
//!                                 ▲
//! GET /metrics /healthz /readyz ──┘  (axum, on the node's runtime, local address)
//! ```
//! Nothing here decides anything: the machine's events are counted as they are reported.
//! With no `[metrics]` section a node runs no server and keeps no metrics.
//!
//! ## Layout
//! - [`names`]: every metric (name, type, labels, help) and the label bounds.
//! - [`registry`]: [`NodeMetrics`], events to values, rendering.
//! - [`health`]: [`Health`], what `/readyz` answers.
//! - [`http`]: the endpoint, and a minimal GET for tests and the harness.
//! - [`disk`]: bytes on disk of the data directory.

pub mod disk;
pub mod health;
pub mod http;
pub mod names;
pub mod registry;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio_util::sync::{CancellationToken, DropGuard};

pub use health::Health;
pub use registry::{NodeKind, NodeMetrics};

use crate::error::NodeError;
use crate::machine::Event;
use crate::mqtt::driver::Sink;

/// A node's metrics while it starts: off (no `[metrics]`), or a running endpoint.
#[derive(Debug)]
pub struct Telemetry {
    running: Option<(Arc<NodeMetrics>, SocketAddr)>,
    /// Stops the endpoint if the node fails to start; disarmed by [`Telemetry::started`].
    guard: Option<DropGuard>,
}

impl Telemetry {
    /// Starts the endpoint on `listen` (when given) before anything else of the node, so
    /// `/healthz` answers while the store opens. It stops with `shutdown`.
    pub async fn start(
        listen: Option<SocketAddr>,
        kind: NodeKind,
        id: &str,
        data_dir: PathBuf,
        sync_interval: Duration,
        shutdown: &CancellationToken,
    ) -> Result<Self, NodeError> {
        let Some(listen) = listen else { return Ok(Self { running: None, guard: None }) };
        let metrics = Arc::new(NodeMetrics::new(kind, id, data_dir, sync_interval));
        let stop = shutdown.child_token();
        let addr = http::serve(listen, metrics.clone(), stop.clone()).await?;
        Ok(Self { running: Some((metrics, addr)), guard: Some(stop.drop_guard()) })
    }

    /// The store is open and holds `held` deliveries.
    pub fn store_opened(&self, held: usize) {
        if let Some((metrics, _)) = &self.running {
            metrics.store_opened(held);
        }
    }

    /// `inner`, observed: every event and commit is counted before `inner` sees it.
    pub fn sink<K: Sink>(&self, inner: K) -> Observed<K> {
        Observed { inner, metrics: self.running.as_ref().map(|(metrics, _)| metrics.clone()) }
    }

    /// The node started: readiness follows the driver's upstream flag; returns the bound
    /// address of the endpoint, if any.
    pub fn started(mut self, subscribed: Arc<AtomicBool>) -> Option<SocketAddr> {
        if let Some(guard) = self.guard.take() {
            let _ = guard.disarm();
        }
        let (metrics, addr) = self.running.take()?;
        metrics.health().attach_upstream(subscribed);
        Some(addr)
    }
}

/// A [`Sink`] that counts what passes through it, then hands it on.
#[derive(Debug)]
pub struct Observed<K> {
    inner: K,
    metrics: Option<Arc<NodeMetrics>>,
}

impl<K: Sink> Sink for Observed<K> {
    fn on_event(&mut self, event: &Event) -> Result<(), NodeError> {
        if let Some(metrics) = &self.metrics {
            metrics.observe(event, crate::clock::now());
        }
        self.inner.on_event(event)
    }

    fn on_commit(&mut self, elapsed: Duration) {
        if let Some(metrics) = &self.metrics {
            metrics.observe_commit(elapsed);
        }
        self.inner.on_commit(elapsed);
    }

    fn on_downstream(&mut self, up: bool) {
        if let Some(metrics) = &self.metrics {
            metrics.health().set_downstream(up);
        }
        self.inner.on_downstream(up);
    }
}
