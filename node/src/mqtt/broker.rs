//! The embedded broker: rmqtt (pinned), on a runtime and a thread of its own, enforcing the
//! permission table ([`crate::authz`]) through its hooks — who may connect (password hash,
//! client id equal to the username), what each may subscribe to, where each may publish and
//! set or clear retained messages. A member that publishes where it may not is disconnected.
//!
//! With a TLS identity ([`crate::tls::BrokerIdentity`], the certificate of the relay's own key)
//! it listens for TLS only. rmqtt's TLS listener reads PEM files: they are written into a
//! private temporary directory, read when the listener is built, and removed at once. rmqtt
//! offers TLS 1.2 besides 1.3 and no setting to refuse it; every kairan client offers 1.3
//! only, so every kairan link is TLS 1.3 (`docs/design.md`, "Transport security").
//!
//! The broker lives exactly as long as its [`EmbeddedBroker`]: dropping it stops the runtime,
//! which closes every connection and releases the port (rmqtt has no shutdown API of its own;
//! a runtime per broker is what releases everything — see `docs/design.md`). Sessions and
//! retained messages are in memory: a restarted node republishes its retained state, and its
//! children catch up.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rmqtt::codec::v5::SubscribeAckReason;
use rmqtt::context::ServerContext;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType, Type};
use rmqtt::net::Builder;
use rmqtt::retain::RetainStorage;
use rmqtt::server::MqttServer;
use rmqtt::types::{AuthResult, PublishAclResult, Retain, SubscribeAclResult, TopicFilter, TopicName};
use tokio::sync::RwLock;
use tracing::{info, warn};

use crate::authz::Grants;
use crate::machine::MAX_PACKET_BYTES;
use crate::members::Members;
use crate::tls::BrokerIdentity;
use crate::topics;

/// Retained messages kept at most, and their bytes (only the node's publisher sets any).
const MAX_RETAINED: usize = 10_000;
const MAX_RETAINED_BYTES: usize = 64 << 20;
/// Messages queued for an offline session at most (QoS 1 drops the oldest; catch-up covers
/// what a child misses).
const MAX_OFFLINE_QUEUE: usize = 1_000;
/// How long an offline child's persistent session is kept.
const SESSION_EXPIRY: Duration = Duration::from_secs(24 * 3600);

/// A running embedded broker. Dropping it stops it.
#[derive(Debug)]
pub struct EmbeddedBroker {
    /// The address it listens on.
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Who may do what on this broker: the grants of every member and of the node's own clients.
struct Policy {
    members: Members,
    grants: HashMap<String, Grants>,
}

/// Starts the broker of node `node` on `listen` for `members` (the node's own clients must
/// be among them), serving TLS with `tls` (plaintext without). Returns once it accepts
/// connections.
pub fn start(
    node: &str,
    national: bool,
    listen: SocketAddr,
    members: Members,
    tls: Option<BrokerIdentity>,
) -> Result<EmbeddedBroker, String> {
    let grants = members
        .iter()
        .map(|(id, member)| (id.clone(), Grants::of(node, national, &member.principal)))
        .collect();
    let policy = Arc::new(Policy { members, grants });
    let tls_on = tls.is_some();
    let (bound_tx, bound_rx) = std::sync::mpsc::channel::<Result<SocketAddr, String>>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let name = node.to_owned();
    let thread = std::thread::Builder::new()
        .name(format!("broker-{node}"))
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name(format!("broker-{name}"))
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    let _ = bound_tx.send(Err(format!("broker runtime: {error}")));
                    return;
                }
            };
            runtime.block_on(serve(policy, listen, tls, bound_tx, stop_rx));
            // Ends every task of the broker, connections included, and frees the port.
            runtime.shutdown_timeout(Duration::from_secs(1));
        })
        .map_err(|e| format!("cannot start the broker thread: {e}"))?;
    let addr = bound_rx
        .recv_timeout(Duration::from_secs(10))
        .map_err(|_| format!("the embedded broker did not start listening on {listen}"))??;
    info!(node = %node, %addr, "embedded broker listening{}", if tls_on { " (TLS)" } else { " (plaintext)" });
    Ok(EmbeddedBroker { addr, stop: Some(stop_tx), thread: Some(thread) })
}

async fn serve(
    policy: Arc<Policy>,
    listen: SocketAddr,
    tls: Option<BrokerIdentity>,
    bound: std::sync::mpsc::Sender<Result<SocketAddr, String>>,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    let scx = ServerContext::new().busy_check_enable(false).build().await;
    let registry = scx.extends.hook_mgr().register();
    for kind in [Type::ClientAuthenticate, Type::ClientSubscribeCheckAcl, Type::MessagePublishCheckAcl] {
        registry.add(kind, Box::new(Enforcer { policy: policy.clone() })).await;
    }
    registry.start().await;
    *scx.extends.retain_mut().await = Box::new(BoundedRetain::default());
    let listener = match listener(listen, tls.as_ref()) {
        Ok(listener) => listener,
        Err(error) => {
            let _ = bound.send(Err(format!("broker.listen {listen}: {error}")));
            return;
        }
    };
    let addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(error) => {
            let _ = bound.send(Err(format!("broker.listen {listen}: {error}")));
            return;
        }
    };
    let server = MqttServer::new(scx).listener_by_id(listener, addr.port()).build();
    let _ = bound.send(Ok(addr));
    tokio::select! {
        result = server.run() => {
            if let Err(error) = result {
                warn!(%error, "embedded broker stopped");
            }
        }
        _ = stop => {}
    }
}

fn listener(listen: SocketAddr, tls: Option<&BrokerIdentity>) -> rmqtt::Result<rmqtt::net::Listener> {
    let inflight = NonZeroU16::new(100).unwrap_or(NonZeroU16::MIN);
    let builder = Builder::new()
        .name("kairan")
        .laddr(listen)
        .reuseaddr(Some(true))
        // Without this, a client without a username skips the authentication hook.
        .allow_anonymous(false)
        .max_packet_size(u32::try_from(MAX_PACKET_BYTES).unwrap_or(u32::MAX))
        .max_inflight(inflight)
        .max_mqueue_len(MAX_OFFLINE_QUEUE)
        // rmqtt's default expires queued messages after 5 minutes; advisories must not.
        .message_expiry_interval(Duration::ZERO)
        .session_expiry_interval(SESSION_EXPIRY)
        .max_connections(20_000);
    let Some(identity) = tls else {
        return builder.bind()?.tcp();
    };
    // rmqtt reads the files while the listener is built; they are removed right after.
    let dir = crate::tls::tunnel::private_dir("kairan-broker-tls-")?;
    let (cert, key) = (dir.path().join("broker.crt"), dir.path().join("broker.key"));
    std::fs::write(&cert, &identity.cert_pem)?;
    crate::secrets::write_private(&key, identity.key_pem.as_bytes())?;
    let path = |p: &std::path::Path| p.display().to_string();
    builder.tls_cert(Some(path(&cert))).tls_key(Some(path(&key))).bind()?.tls()
}

/// The permission table, as rmqtt hooks.
struct Enforcer {
    policy: Arc<Policy>,
}

impl Enforcer {
    fn grants(&self, username: &str) -> Option<&Grants> {
        self.policy.grants.get(username)
    }
}

#[async_trait]
impl Handler for Enforcer {
    async fn hook(&self, param: &Parameter, accumulated: Option<HookResult>) -> ReturnType {
        match param {
            Parameter::ClientAuthenticate(connect) => {
                let username = connect.username().map(|u| u.to_string()).unwrap_or_default();
                let password = connect.password().map(|p| p.to_vec()).unwrap_or_default();
                let client_id = connect.client_id().to_string();
                let result = match self.policy.members.authenticate(&username, &password) {
                    None => AuthResult::BadUsernameOrPassword,
                    // Refused before rmqtt would hand the session over: no member can take
                    // over another's client id.
                    Some(_) if client_id != username => {
                        warn!(%username, %client_id, "connection refused: the client id must be the username");
                        AuthResult::NotAuthorized
                    }
                    Some(_) => AuthResult::Allow(false, None),
                };
                (false, Some(HookResult::AuthResult(result)))
            }
            Parameter::ClientSubscribeCheckAcl(session, subscribe) => {
                let username = session.id.username_ref();
                let allowed = self.grants(username).is_some_and(|g| g.may_subscribe(&subscribe.topic_filter));
                let result = if allowed {
                    SubscribeAclResult::new_success(subscribe.opts.qos(), None)
                } else {
                    warn!(%username, filter = %subscribe.topic_filter, "subscription refused by the permission table");
                    SubscribeAclResult::new_failure(SubscribeAckReason::NotAuthorized)
                };
                (false, Some(HookResult::SubscribeAclResult(result)))
            }
            Parameter::MessagePublishCheckAcl(session, publish) => {
                let username = session.id.username_ref();
                let allowed =
                    self.grants(username).is_some_and(|g| g.may_publish(&publish.topic, publish.retain));
                let result = if allowed {
                    PublishAclResult::allow()
                } else {
                    warn!(
                        %username,
                        topic = %publish.topic,
                        retain = publish.retain,
                        "publish refused by the permission table; disconnecting"
                    );
                    PublishAclResult::rejected(true, Some("not authorized".into()))
                };
                (false, Some(HookResult::PublishAclResult(result)))
            }
            _ => (true, accumulated),
        }
    }
}

/// Retained messages, bounded (only the node's publisher may set any).
#[derive(Default)]
struct BoundedRetain {
    inner: RwLock<HashMap<TopicName, Retain>>,
}

#[async_trait]
impl RetainStorage for BoundedRetain {
    fn enable(&self) -> bool {
        true
    }

    async fn set(&self, topic: &TopicName, retain: Retain, _expiry: Option<Duration>) -> rmqtt::Result<()> {
        let mut map = self.inner.write().await;
        if retain.publish.payload.is_empty() {
            map.remove(topic);
            return Ok(());
        }
        let bytes: usize = map.values().map(|r| r.publish.payload.len()).sum();
        if !map.contains_key(topic)
            && (map.len() >= MAX_RETAINED || bytes + retain.publish.payload.len() > MAX_RETAINED_BYTES)
        {
            // An error here would abort the publisher's connection.
            warn!(%topic, "retained store full; retained message not kept");
            return Ok(());
        }
        map.insert(topic.clone(), retain);
        Ok(())
    }

    async fn get(&self, filter: &TopicFilter) -> rmqtt::Result<Vec<(TopicName, Retain)>> {
        let map = self.inner.read().await;
        Ok(map
            .iter()
            .filter(|(topic, _)| topics::matches(filter, topic))
            .map(|(topic, retain)| (topic.clone(), retain.clone()))
            .collect())
    }

    async fn count(&self) -> isize {
        isize::try_from(self.inner.read().await.len()).unwrap_or(isize::MAX)
    }

    async fn max(&self) -> isize {
        isize::try_from(MAX_RETAINED).unwrap_or(isize::MAX)
    }
}
