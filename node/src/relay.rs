//! The relay node daemon: a [`Machine`] with a relay identity, its own broker (embedded or
//! external), its store ([`crate::store::DiskStore`]), driven by [`crate::mqtt::driver`].
//!
//! ```text
//! parent broker ─▶ upstream (manual acks) ─▶ machine ─▶ store (committed before acking)
//!                                               │
//!                  own broker (embedded or external) ◀── forwards, trust, heads, catch-up
//! ```
//! The national node's upstream is its own broker's ingest topic, where origins publish.

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::authz::{self, Principal};
use crate::clock;
use kairan_protocol::SecretKey;

use crate::config::{BrokerConfig, NodeConfig, UpstreamConfig};
use crate::directory;
use crate::error::NodeError;
use crate::handle::NodeHandle;
use crate::machine::{Attester, Identity, Machine, MachineConfig, Upstream};
use crate::members::PasswordHash;
use crate::metrics::{NodeKind, Telemetry};
use crate::mqtt::driver::{self, LinkConfig, LogOnly, Timing};
use crate::mqtt::{BrokerAddr, Credentials, broker};
use crate::store::{DiskStore, Store};
use crate::tls::{PeerCheck, TrustView};

/// A running relay node.
pub type RelayHandle = NodeHandle;

/// Runs a relay until `shutdown` is cancelled.
pub async fn run(config: NodeConfig, shutdown: CancellationToken) -> Result<(), NodeError> {
    start(config, shutdown).await?.wait().await
}

/// A random password for a node's own clients on its embedded broker.
pub(crate) fn random_password() -> String {
    let mut bytes = [0u8; 16];
    rand::Rng::fill(&mut rand::rngs::OsRng, &mut bytes);
    hex::encode(bytes)
}

/// Starts a relay: opens the store, starts the broker and the driver.
pub async fn start(config: NodeConfig, shutdown: CancellationToken) -> Result<RelayHandle, NodeError> {
    let telemetry = Telemetry::start(
        config.metrics,
        NodeKind::Relay,
        &config.id,
        config.data_dir.clone(),
        config.sync_interval,
        &shutdown,
    )
    .await?;
    let store = DiskStore::open(&config.data_dir)?;
    let held = store.check_integrity()?;
    telemetry.store_opened(held);
    let restored = store.restore()?;
    let last_relay_seq = restored.last_relay_seq;
    let id = config.id.clone();
    let scope = config.cert_info.scope.clone();
    let national = matches!(config.upstream, UpstreamConfig::Ingest);
    let upstream = match &config.upstream {
        UpstreamConfig::Ingest => Upstream::Ingest,
        UpstreamConfig::Parent { parent, .. } => Upstream::Relay(parent.clone()),
    };
    // The broker's TLS identity (the relay's own key and certificates), and the keys this
    // node's own clients accept from their broker: the current one and, after a rotation, the
    // previous ones (an external broker may still present the old certificate).
    let tls_identity = match &config.broker {
        BrokerConfig::Embedded { tls: true, .. } => {
            let identity = crate::tls::broker_identity(&config.key, &config.cert, &config.chain)
                .map_err(|e| NodeError::Config(format!("node.cert: {e}")))?;
            check_identity(&identity, &config.anchors)?;
            Some(identity)
        }
        _ => None,
    };
    let mut own_keys = vec![config.key.public().clone()];
    for extra in &config.extra_certs {
        if let Ok(cert) = kairan_protocol::Certificate::decode(&extra.payload) {
            own_keys.push(cert.key);
        }
    }
    let own_check = PeerCheck::Own { node: id.clone(), keys: own_keys };
    // The directory client signs with the relay key too (`crate::directory`).
    let mut signing_chain = vec![config.cert.clone()];
    signing_chain.extend(config.chain.iter().cloned());
    let signer = directory::Signer {
        id: id.clone(),
        scope: scope.clone(),
        key: SecretKey::from_hex(&config.key.to_hex())
            .map_err(|e| NodeError::Config(format!("node.key: {e}")))?,
        chain: signing_chain,
    };
    let own_directory = config
        .recipients
        .clone()
        .map(|recipients| directory::OwnFiles { recipients, data_dir: config.data_dir.clone() });
    let anchors = config.anchors.clone();
    let attester =
        Attester { key: config.key, cert: config.cert, extra_certs: config.extra_certs, chain: config.chain };
    let identity = Identity { id: id.clone(), scope: scope.clone(), upstream, attester: Some(attester) };
    let sync_interval_ms = u64::try_from(config.sync_interval.as_millis()).unwrap_or(u64::MAX);
    let children = config.members.children();
    let machine_config =
        MachineConfig { identity, anchors: config.anchors.clone(), sync_interval_ms, children };
    let machine = Machine::new(machine_config, restored, clock::now());

    // This node's own clients on its broker: the publisher, and on the national node the
    // ingest client. Embedded: a fresh random password each start; external: the configured one.
    let (own_addr, own_password, broker) = match config.broker {
        BrokerConfig::Embedded { listen, tls } => {
            if !tls {
                warn!(node = %id, %listen, "INSECURE: the embedded broker listens WITHOUT TLS (broker.insecure_plaintext = true): children's passwords and every advisory cross the network in clear");
            }
            let password = random_password();
            let mut members = config.members.clone();
            let hash = PasswordHash::new(&password);
            members.insert(Principal::Publisher, &authz::publisher_username(&id), hash.clone());
            members.insert(Principal::Directory, &authz::directory_username(&id), hash.clone());
            if national {
                members.insert(Principal::Ingest, &authz::ingest_username(&id), hash);
            }
            let name = id.clone();
            let started = tokio::task::spawn_blocking(move || {
                broker::start(&name, national, listen, members, tls_identity)
            })
            .await
            .map_err(|e| NodeError::Task(e.to_string()))?
            .map_err(NodeError::Broker)?;
            let addr = if tls { BrokerAddr::tls(started.addr) } else { BrokerAddr::plaintext(started.addr) };
            (addr, Some(password), Some(started))
        }
        BrokerConfig::External { addr, password } => {
            if !addr.tls && !addr.is_loopback() {
                warn!(node = %id, broker = %addr.url(), "INSECURE: the external broker is plaintext over the network (broker.insecure_plaintext = true)");
            }
            (addr, password, None)
        }
    };
    let own = |username: String| own_password.clone().map(|password| Credentials { username, password });
    let own_peer = own_addr.tls.then(|| own_check.clone());
    let mut parent_link: Option<(String, TrustView)> = None;
    let upstream_link = match config.upstream {
        UpstreamConfig::Ingest => {
            let username = authz::ingest_username(&id);
            LinkConfig {
                addr: own_addr.clone(),
                peer: own_peer.clone(),
                credentials: own(username.clone()),
                client_id: username,
            }
        }
        UpstreamConfig::Parent { addr, credentials, parent } => {
            if !addr.tls && !addr.is_loopback() {
                warn!(node = %id, broker = %addr.url(), "INSECURE: upstream.url is plaintext over the network (upstream.insecure_plaintext = true)");
            }
            let view = TrustView::new(config.anchors.clone());
            parent_link = Some((parent.clone(), view.clone()));
            let peer = PeerCheck::Relay { expected: parent, trust: view };
            LinkConfig { addr, peer: Some(peer), credentials, client_id: id.clone() }
        }
    };
    let publisher = authz::publisher_username(&id);
    let downstream = LinkConfig {
        addr: own_addr.clone(),
        peer: own_peer,
        credentials: own(publisher.clone()),
        client_id: publisher.clone(),
    };
    info!(
        node = %id,
        %scope,
        broker = %own_addr.url(),
        upstream = %upstream_link.addr.url(),
        members = config.members.iter().count(),
        held,
        last_relay_seq,
        "relay node starting"
    );
    let running = driver::spawn(
        machine,
        store.clone(),
        upstream_link,
        Some(downstream),
        telemetry.sink(LogOnly),
        shutdown.clone(),
        Timing { grace: config.grace, clock: clock::Clock::SYSTEM },
    )?;
    let directory_username = authz::directory_username(&id);
    let directory_client = directory::task::DirectoryClient {
        signer,
        own: own_directory,
        link: LinkConfig {
            addr: own_addr.clone(),
            peer: own_addr.tls.then(|| own_check.clone()),
            credentials: own(directory_username.clone()),
            client_id: directory_username,
        },
        up: parent_link.as_ref().map(|(parent, _)| directory::task::Up {
            parent: parent.clone(),
            client: running.upstream_client.clone(),
            connected: running.subscribed.clone(),
        }),
        trust: parent_link.map(|(_, view)| view),
        anchors,
    };
    let directory_task = directory::task::spawn(directory_client, shutdown.clone());
    // The embedded broker stops after the driver: the node's clients disconnect first.
    let driver = running.join;
    let with_broker = tokio::spawn(async move {
        let result = driver.await;
        let _ = directory_task.await;
        drop(broker);
        result.map_err(|e| NodeError::Task(format!("driver: {e}")))?
    });
    let join = finish(with_broker, id.clone(), "relay node stopped; store flushed");
    let internal = own_password.map(|password| Credentials { username: publisher, password });
    let broker = Some((own_addr, internal));
    let metrics_addr = telemetry.started(running.subscribed.clone());
    let mut handle = NodeHandle::new(id, broker, store, running.counters, running.subscribed, shutdown, join);
    handle.metrics = metrics_addr;
    handle.upstream_error = running.upstream_error;
    Ok(handle)
}

/// Refuses to start a broker whose certificate no child could accept (`node.chain` missing a
/// certificate above the relay); warns when it is only a matter of time (expired, not yet valid).
fn check_identity(
    identity: &crate::tls::BrokerIdentity,
    anchors: &kairan_protocol::TrustAnchors,
) -> Result<(), NodeError> {
    match crate::tls::verify::self_check(identity, anchors) {
        Ok(None) => Ok(()),
        Ok(Some(why)) => {
            warn!(node = %identity.relay, %why, "children will refuse this relay's broker until its certificate is renewed");
            Ok(())
        }
        Err(error) => Err(NodeError::Config(format!(
            "node.chain: children could not accept this relay's broker: {error} (list the certificates above this relay, up to the root-issued national one)"
        ))),
    }
}

/// Logs `stopped` once the driver ended cleanly.
pub(crate) fn finish(
    driver: tokio::task::JoinHandle<Result<(), NodeError>>,
    id: String,
    stopped: &'static str,
) -> tokio::task::JoinHandle<Result<(), NodeError>> {
    tokio::spawn(async move {
        let result = driver.await.map_err(|e| NodeError::Task(format!("driver: {e}")))?;
        if result.is_ok() {
            info!(node = %id, "{stopped}");
        }
        result
    })
}
