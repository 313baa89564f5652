//! [`NodeHandle`]: what the starter of a relay node or a clinic subscriber keeps — its store,
//! its counters, its broker address, a way to stop it and to wait for it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::NodeError;
use crate::machine::Counters;
use crate::mqtt::{BrokerAddr, Credentials};
use crate::store::DiskStore;

/// A running relay node or clinic subscriber.
#[derive(Debug)]
pub struct NodeHandle {
    /// Node id.
    pub id: String,
    /// The broker children connect to (relays).
    pub broker: Option<BrokerAddr>,
    /// Credentials of this node's own clients on that broker.
    pub internal_credentials: Option<Credentials>,
    /// Where its metrics and health endpoint listens (`[metrics]`), if it has one.
    pub metrics: Option<SocketAddr>,
    /// Where a clinic serves its web inbox, when it does.
    pub web: Option<std::net::SocketAddr>,
    /// Why the upstream connection failed last (`None` while connected): a TLS refusal names
    /// what the broker presented.
    pub upstream_error: crate::mqtt::driver::UpstreamError,
    store: DiskStore,
    counters: Arc<Mutex<Counters>>,
    subscribed: Arc<AtomicBool>,
    shutdown: CancellationToken,
    join: JoinHandle<Result<(), NodeError>>,
}

impl NodeHandle {
    /// A handle on a running driver.
    pub(crate) fn new(
        id: String,
        broker: Option<(BrokerAddr, Option<Credentials>)>,
        store: DiskStore,
        counters: Arc<Mutex<Counters>>,
        subscribed: Arc<AtomicBool>,
        shutdown: CancellationToken,
        join: JoinHandle<Result<(), NodeError>>,
    ) -> Self {
        let (broker, internal_credentials) = match broker {
            Some((addr, credentials)) => (Some(addr), credentials),
            None => (None, None),
        };
        Self {
            id,
            broker,
            internal_credentials,
            metrics: None,
            web: None,
            upstream_error: Default::default(),
            store,
            counters,
            subscribed,
            shutdown,
            join,
        }
    }

    /// Why the upstream connection failed last, if it is down.
    pub fn upstream_error(&self) -> Option<String> {
        self.upstream_error.lock().ok().and_then(|slot| slot.clone())
    }

    /// Whether the node is connected upstream with all its subscriptions acknowledged.
    pub fn is_subscribed(&self) -> bool {
        self.subscribed.load(Ordering::SeqCst)
    }

    /// The node's store (shared with the running node; read it, never write it).
    pub fn store(&self) -> &DiskStore {
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
    pub async fn wait(self) -> Result<(), NodeError> {
        self.join.await.map_err(|e| NodeError::Task(format!("node task: {e}")))?
    }
}
