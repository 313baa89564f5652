//! The clinic subscriber: a [`Machine`] with no attester — it verifies every delivery itself
//! (it trusts no relay), keeps each advisory once in its store and a readable copy for
//! `kairan inbox` ([`crate::inbox::store`]: both durable before the delivery is
//! acknowledged), announces new ones on the terminal and serves the local web inbox
//! ([`crate::web`]).

use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::ClinicConfig;
use crate::error::NodeError;
use crate::handle::NodeHandle;
use crate::inbox::announce;
use crate::inbox::store::InboxStore;
use crate::machine::{Event, Identity, Machine, MachineConfig, Upstream};
use crate::metrics::{NodeKind, Telemetry};
use crate::mqtt::driver::{self, LinkConfig, Sink, Timing};
use crate::relay::finish;
use crate::store::Store;
use crate::tls::{PeerCheck, TrustView};

/// A running clinic subscriber.
pub type ClinicHandle = NodeHandle;

/// Runs the clinic subscriber until `shutdown`.
pub async fn run(config: ClinicConfig, shutdown: CancellationToken) -> Result<(), NodeError> {
    start(config, shutdown).await?.wait().await
}

/// Starts the clinic subscriber.
pub async fn start(config: ClinicConfig, shutdown: CancellationToken) -> Result<ClinicHandle, NodeError> {
    let telemetry = Telemetry::start(
        config.metrics,
        NodeKind::Clinic,
        &config.id,
        config.data_dir.clone(),
        config.sync_interval,
        &shutdown,
    )
    .await?;
    let store = InboxStore::open(&config.data_dir)?;
    let held = store.check_integrity()?;
    telemetry.store_opened(held);
    let restored = store.restore()?;
    if let Some(bundle) = &restored.trust_bundle {
        crate::inbox::write_trust_copy(&config.data_dir, bundle)?;
    }
    let identity = Identity {
        id: config.id.clone(),
        scope: config.scope.clone(),
        upstream: Upstream::Relay(config.district.clone()),
        attester: None,
    };
    let sync_interval_ms = u64::try_from(config.sync_interval.as_millis()).unwrap_or(u64::MAX);
    let machine_config = MachineConfig {
        identity,
        anchors: config.anchors.clone(),
        sync_interval_ms,
        children: Default::default(),
    };
    let machine = Machine::new(machine_config, restored, config.clock.now());
    info!(clinic = %config.id, district = %config.district, broker = %config.addr.url(), held, "clinic subscriber starting");
    // The district's broker must present the district's certified relay key.
    let peer =
        PeerCheck::Relay { expected: config.district.clone(), trust: TrustView::new(config.anchors.clone()) };
    let upstream = LinkConfig {
        addr: config.addr.clone(),
        peer: Some(peer),
        credentials: config.credentials.clone(),
        client_id: config.id.clone(),
    };
    let id = config.id.clone();
    let web = match config.web {
        Some(listen) => Some(crate::web::start(web_config(&config, listen), shutdown.clone()).await?),
        None => None,
    };
    let web_addr = web.as_ref().map(|server| server.addr);
    let timing = Timing { grace: std::time::Duration::from_secs(5), clock: config.clock };
    let sink = ClinicSink { config, web, store: store.clone() };
    let sink = telemetry.sink(sink);
    let running = driver::spawn(machine, store.clone(), upstream, None, sink, shutdown.clone(), timing)?;
    let join = finish(running.join, id.clone(), "clinic subscriber stopped");
    let metrics_addr = telemetry.started(running.subscribed.clone());
    let disk = store.disk().clone();
    let mut handle = NodeHandle::new(id, None, disk, running.counters, running.subscribed, shutdown, join);
    handle.metrics = metrics_addr;
    handle.web = web_addr;
    handle.upstream_error = running.upstream_error;
    Ok(handle)
}

fn web_config(config: &ClinicConfig, listen: std::net::SocketAddr) -> crate::web::WebConfig {
    crate::web::WebConfig {
        listen,
        data_dir: config.data_dir.clone(),
        anchors: config.anchors.clone(),
        clinic_id: config.id.clone(),
        scope: config.scope.clone(),
        district: config.district.clone(),
        recipient_key: config.recipient_key.clone(),
    }
}

/// Announces each accepted delivery and tells the web inbox (its copy is already written);
/// keeps the trust copy the inbox readers verify with current.
struct ClinicSink {
    config: ClinicConfig,
    web: Option<crate::web::WebServer>,
    store: InboxStore,
}

impl Sink for ClinicSink {
    fn on_event(&mut self, event: &Event) -> Result<(), NodeError> {
        if let Event::TrustUpdated { .. } = event {
            // The bundle in force is durable in the store when this event is emitted.
            if let Some(bundle) = self.store.blob(crate::store::TRUST_BLOB)? {
                crate::inbox::write_trust_copy(&self.config.data_dir, &bundle)?;
                if let Some(web) = &self.web {
                    web.notify();
                }
            }
        }
        if let Event::Accepted(accepted) = event {
            let record = &accepted.record;
            if let Some(web) = &self.web {
                web.notify();
            }
            if self.config.announce {
                println!("{}", announce(&accepted.verified, &self.config, record.received_at));
            }
        }
        Ok(())
    }
}
