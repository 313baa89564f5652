//! The clinic subscriber: a [`Machine`] with no attester — it verifies every delivery itself
//! (it trusts no relay), keeps each advisory once in its sled inbox, writes a readable copy
//! for `kairan inbox` ([`crate::inbox`]), announces new ones on the terminal and serves the
//! local web inbox ([`crate::web`]).

use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::ClinicConfig;
use crate::error::NodeError;
use crate::handle::NodeHandle;
use crate::inbox::{self, announce, copies_dir, write_copy};
use crate::machine::{Event, Identity, Machine, MachineConfig, Upstream};
use crate::metrics::{NodeKind, Telemetry};
use crate::mqtt::driver::{self, LinkConfig, Sink, Timing};
use crate::relay::finish;
use crate::store::{SledStore, Store};

/// A running clinic subscriber.
pub type ClinicHandle = NodeHandle;

/// Runs the clinic subscriber until `shutdown`.
pub async fn run(config: ClinicConfig, shutdown: CancellationToken) -> Result<(), NodeError> {
    start(config, shutdown).await?.wait().await
}

fn store_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("store")
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
    let store = SledStore::open(&store_dir(&config.data_dir))?;
    let held = store.check_integrity()?;
    telemetry.store_opened(held);
    let restored = store.restore()?;
    let copies = copies_dir(&config.data_dir);
    std::fs::create_dir_all(&copies).map_err(|e| NodeError::io(&copies, e))?;
    // Rewrite any copy missing after a crash between the commit and the copy write.
    for record in store.all()? {
        if !inbox::copy_path(&copies, &record.digest).exists() {
            write_copy(&copies, &record.digest, record.relay_seq, record.received_at, &record.delivery)?;
        }
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
    let upstream = LinkConfig {
        addr: config.addr.clone(),
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
    let sink = ClinicSink { config, copies, web };
    let sink = telemetry.sink(sink);
    let running = driver::spawn(machine, store.clone(), upstream, None, sink, shutdown.clone(), timing);
    let join = finish(running.join, id.clone(), "clinic subscriber stopped");
    let metrics_addr = telemetry.started(running.subscribed.clone());
    let mut handle = NodeHandle::new(id, None, store, running.counters, running.subscribed, shutdown, join);
    handle.metrics = metrics_addr;
    handle.web = web_addr;
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
    }
}

/// Keeps a readable copy of each accepted delivery, announces it and tells the web inbox.
struct ClinicSink {
    config: ClinicConfig,
    copies: PathBuf,
    web: Option<crate::web::WebServer>,
}

impl Sink for ClinicSink {
    fn on_event(&mut self, event: &Event) -> Result<(), NodeError> {
        if let Event::Accepted(accepted) = event {
            let record = &accepted.record;
            write_copy(&self.copies, &record.digest, record.relay_seq, record.received_at, &record.delivery)?;
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
