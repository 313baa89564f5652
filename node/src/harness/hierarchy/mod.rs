//! A whole kairan tree on one machine: keys, certificates, trust anchors, and in-process
//! relays and clinics, each relay with its own broker (embedded rumqttd on a loopback port
//! the OS hands out, or an external broker such as Mosquitto), all over real MQTT sockets
//! and real on-disk stores. `kairan demo`, the integration tests and `kairan bench` build on it.
//!
//! ```no_run
//! # async fn example() -> Result<(), kairan_node::error::CliError> {
//! let dir = tempfile::tempdir().expect("tempdir");
//! let tree = kairan_node::harness::hierarchy::HierarchyBuilder::new(dir.path())
//!     .prefectures(2)
//!     .districts_per_prefecture(2)
//!     .clinics_per_district(3)
//!     .start()
//!     .await?;
//! tree.wait_subscribed(std::time::Duration::from_secs(10)).await?;
//! # Ok(()) }
//! ```

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use kairan_protocol::cert::ROOT_ISSUER;
use kairan_protocol::{
    Advisory, Certificate, Delivery, Digest, Envelope, Role, Scope, SecretKey, Timestamp, TrustAnchors,
};

use super::external::{ExternalBroker, TreeNodeOnBroker};
use super::places::{PREFECTURE_CODES, district_name};
use crate::authz::{MemberKind, Principal};
use crate::clinic::{self, ClinicHandle};
use crate::config::{BrokerConfig, ClinicConfig, LogSection, NodeConfig, UpstreamConfig};
use crate::error::CliError;
use crate::members::{Members, PasswordHash};
use crate::mqtt::{self, BrokerAddr, Credentials};
use crate::publish::{self, OriginState};
use crate::rabbitmq_config::RabbitPasswordHash;
use crate::relay::{self, RelayHandle, random_password};
use crate::store::Store;

mod running;

pub use running::seal_with_fixture_keys;

/// Periodic catch-up in a test tree: short, so healed faults converge quickly.
const SYNC_INTERVAL: Duration = Duration::from_secs(2);

/// The relay levels of the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    /// The national association.
    National,
    /// Prefectural associations.
    Prefecture,
    /// District associations.
    District,
}

/// Builds and starts a tree.
#[derive(Debug)]
pub struct HierarchyBuilder {
    dir: PathBuf,
    prefectures: usize,
    districts: usize,
    clinics: usize,
    external: HashMap<Level, ExternalBroker>,
    cert_days: i64,
    extra_origins: Vec<String>,
    metrics: Option<SocketAddr>,
    clinic_web: Option<SocketAddr>,
    start_clinics: bool,
    plaintext: bool,
    enroll: bool,
}

/// The origin: key, certificate, chain state, credentials on the national broker.
#[derive(Debug)]
pub struct Origin {
    /// Origin id.
    pub id: String,
    /// Key.
    pub key: SecretKey,
    /// Root-issued certificate.
    pub cert: Envelope,
    /// Chain state.
    pub state: OriginState,
    /// Credentials on the national broker.
    pub credentials: Option<Credentials>,
}

/// A running relay with its place in the tree.
#[derive(Debug)]
pub struct TreeRelay {
    /// Level.
    pub level: Level,
    /// Scope.
    pub scope: Scope,
    /// Index of the parent in [`Hierarchy::relays`] (none for national).
    pub parent: Option<usize>,
    /// The running node (None while stopped by a test).
    pub handle: Option<RelayHandle>,
    /// Its configuration, to restart it.
    pub config_parts: RelayParts,
}

/// Everything needed to (re)build a relay's [`NodeConfig`].
#[derive(Debug, Clone)]
pub struct RelayParts {
    /// Node id.
    pub id: String,
    /// Store dir.
    pub data_dir: PathBuf,
    /// Secret key hex (kept to rebuild the config on restart).
    key_hex: String,
    /// Certificate.
    pub cert: Envelope,
    /// Previous certificates carried after a key rotation.
    pub extra_certs: Vec<Envelope>,
    /// The certificates of the relays above it.
    pub chain: Vec<Envelope>,
    /// Upstream.
    pub upstream: UpstreamConfig,
    /// Broker.
    pub broker: BrokerConfig,
    /// Who may connect to its broker.
    pub members: Members,
    /// Metrics and health endpoint (port 0: a new free port at each start).
    pub metrics: Option<SocketAddr>,
    /// Districts: the recipients file whose directory it publishes (`None`: no directory).
    pub recipients: Option<PathBuf>,
}

/// A running clinic.
#[derive(Debug)]
pub struct TreeClinic {
    /// Its configuration.
    pub config: ClinicConfig,
    /// Index of its district in [`Hierarchy::relays`].
    pub district: usize,
    /// The running subscriber (None while stopped).
    pub handle: Option<ClinicHandle>,
}

/// A running tree.
#[derive(Debug)]
pub struct Hierarchy {
    /// Base directory (keys, stores).
    pub dir: PathBuf,
    /// Root keys (3, threshold 2).
    pub roots: Vec<SecretKey>,
    /// Trust anchors.
    pub anchors: TrustAnchors,
    /// The origin.
    pub origin: Origin,
    /// Relays: national first, then prefectures, then districts.
    pub relays: Vec<TreeRelay>,
    /// Clinics.
    pub clinics: Vec<TreeClinic>,
    /// The national node's administrator (pushes trust statements to its control topic).
    pub admin: Credentials,
    /// Every member's password, by id (relays, clinics, origins).
    pub passwords: HashMap<String, String>,
    /// External brokers by level (Mosquitto or RabbitMQ configured from the members).
    pub external: HashMap<Level, ExternalBroker>,
    shutdown: CancellationToken,
}

fn failed(what: &str) -> impl Fn(String) -> CliError + '_ {
    move |e| CliError::Failed(format!("{what}: {e}"))
}

fn new_key() -> Result<SecretKey, CliError> {
    let mut seed = [0u8; 32];
    rand::Rng::fill(&mut rand::rngs::OsRng, &mut seed);
    SecretKey::from_seed(&seed).map_err(|e| CliError::Failed(e.to_string()))
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

impl HierarchyBuilder {
    /// A tree rooted in `dir`: by default 2 prefectures × 2 districts × 3 clinics.
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            prefectures: 2,
            districts: 2,
            clinics: 3,
            external: HashMap::new(),
            cert_days: 365,
            extra_origins: Vec::new(),
            metrics: None,
            clinic_web: None,
            start_clinics: true,
            plaintext: false,
            enroll: false,
        }
    }

    /// Every broker plaintext (`broker.insecure_plaintext`), every link `mqtt://` on loopback:
    /// only to show what TLS hides (`scripts/tls-capture.sh`). TLS 1.3 by default.
    pub fn insecure_plaintext(mut self, on: bool) -> Self {
        self.plaintext = on;
        self
    }

    /// Number of prefectural relays (1..=47).
    pub fn prefectures(mut self, count: usize) -> Self {
        self.prefectures = count.clamp(1, 47);
        self
    }

    /// Districts under each prefecture.
    pub fn districts_per_prefecture(mut self, count: usize) -> Self {
        self.districts = count.max(1);
        self
    }

    /// Clinics under each district.
    pub fn clinics_per_district(mut self, count: usize) -> Self {
        self.clinics = count;
        self
    }

    /// More origin members of the national broker (uncertified: hostile origins in tests).
    pub fn extra_origins(mut self, ids: &[&str]) -> Self {
        self.extra_origins = ids.iter().map(|id| (*id).to_owned()).collect();
        self
    }

    /// Every node serves metrics and health on a free loopback port (`NodeHandle::metrics`).
    pub fn with_metrics(self) -> Self {
        Self { metrics: Some(loopback()), ..self }
    }

    /// Every clinic serves its web inbox on a free loopback port (off by default).
    pub fn clinic_web(mut self, on: bool) -> Self {
        self.clinic_web = on.then(loopback);
        self
    }

    /// Whether the clinics start with the tree (default); when not, a test starts each with
    /// [`Hierarchy::start_clinic`], e.g. to join after retained state was published.
    pub fn start_clinics(mut self, start: bool) -> Self {
        self.start_clinics = start;
        self
    }

    /// Enroll every clinic as a volunteer does (`kairan enroll request` / `issue`, through
    /// [`crate::enroll`]): each clinic gets its own keys and its district's certificate and
    /// broker password; every district keeps a recipients file and publishes its signed
    /// recipient directory; each clinic opens sealed advisories with its recipient key.
    pub fn enroll_clinics(mut self, on: bool) -> Self {
        self.enroll = on;
        self
    }

    /// Relays of `level` publish to this Mosquitto or RabbitMQ (prepared, not started: the
    /// tree configures it from the members of those relays) instead of embedded brokers.
    pub fn external_broker(mut self, level: Level, broker: impl Into<ExternalBroker>) -> Self {
        self.external.insert(level, broker.into());
        self
    }

    /// Creates keys and certificates and starts every relay and clinic, top down.
    pub async fn start(self) -> Result<Hierarchy, CliError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| CliError::io(&self.dir, e))?;
        let now = crate::clock::now();
        let not_before = now.plus_secs(-3600);
        let not_after = now.plus_secs(self.cert_days * 24 * 3600);
        let roots = (0..3).map(|_| new_key()).collect::<Result<Vec<_>, _>>()?;
        let anchors = TrustAnchors::numbered(2, roots.iter().map(SecretKey::public))
            .map_err(|e| CliError::Failed(e.to_string()))?;
        std::fs::write(self.dir.join("trust.toml"), crate::keyfile::render_trust(&anchors))
            .map_err(|e| CliError::io(&self.dir, e))?;
        let window = (not_before, not_after);
        let certify = |serial: String,
                       issuer: &str,
                       subject: &str,
                       key: &SecretKey,
                       role: Role,
                       scope: &Scope,
                       signers: &[&SecretKey]| {
            Certificate::for_key(serial, issuer, subject, key.public(), role, scope, window).sign(signers)
        };
        let jp = Scope::parse("jp").map_err(failed("scope"))?;
        let origin_key = new_key()?;
        let origin_cert = certify(
            "root-origin-mhlw".into(),
            ROOT_ISSUER,
            "mhlw",
            &origin_key,
            Role::Origin,
            &jp,
            &[&roots[0], &roots[1]],
        );
        let origin_password = random_password();

        // Plan the tree: (id, level, scope, parent index, key, cert).
        struct Planned {
            id: String,
            level: Level,
            scope: Scope,
            parent: Option<usize>,
            key: SecretKey,
            cert: Envelope,
        }
        let mut planned: Vec<Planned> = Vec::new();
        let national_key = new_key()?;
        let national_cert = certify(
            "root-relay-jp".into(),
            ROOT_ISSUER,
            "jp",
            &national_key,
            Role::Relay,
            &jp,
            &[&roots[0], &roots[2]],
        );
        planned.push(Planned {
            id: "jp".into(),
            level: Level::National,
            scope: jp.clone(),
            parent: None,
            key: national_key,
            cert: national_cert,
        });
        for code in PREFECTURE_CODES.iter().take(self.prefectures) {
            let id = format!("jp-{code}");
            let scope = jp.child(code).map_err(failed("scope"))?;
            let key = new_key()?;
            let cert = certify(format!("jp-{id}"), "jp", &id, &key, Role::Relay, &scope, &[&planned[0].key]);
            planned.push(Planned { id, level: Level::Prefecture, scope, parent: Some(0), key, cert });
        }
        let prefecture_count = planned.len() - 1;
        for prefecture in 1..=prefecture_count {
            for district in 0..self.districts {
                let code = planned[prefecture].scope.segments().last().cloned().unwrap_or_default();
                let name = district_name(&code, district);
                let id = format!("{}-{name}", planned[prefecture].id);
                let scope = planned[prefecture].scope.child(&name).map_err(failed("scope"))?;
                let key = new_key()?;
                let parent_id = planned[prefecture].id.clone();
                let cert = certify(
                    format!("{parent_id}-{name}"),
                    &parent_id,
                    &id,
                    &key,
                    Role::Relay,
                    &scope,
                    &[&planned[prefecture].key],
                );
                planned.push(Planned {
                    id,
                    level: Level::District,
                    scope,
                    parent: Some(prefecture),
                    key,
                    cert,
                });
            }
        }

        // Members: each relay's children (and the origin, on the national broker).
        let mut passwords: HashMap<String, String> = HashMap::new();
        let mut clinic_plan: Vec<(String, usize)> = Vec::new();
        for (index, relay) in planned.iter().enumerate() {
            if relay.level == Level::District {
                for number in 1..=self.clinics {
                    clinic_plan.push((format!("{}-c{number}", relay.id), index));
                }
            }
        }
        for relay in &planned {
            passwords.insert(relay.id.clone(), random_password());
        }
        // Enrollment (`kairan enroll`): the clinic's keys and request, the district's issuing
        // into a members file and a recipients file; the members file's password is the one
        // the clinic then uses.
        let mut enrolled: HashMap<String, std::sync::Arc<kairan_protocol::sealed::RecipientSecret>> =
            HashMap::new();
        let mut recipients_files: HashMap<usize, PathBuf> = HashMap::new();
        if self.enroll {
            for (index, relay) in planned.iter().enumerate().filter(|(_, r)| r.level == Level::District) {
                let base = self.dir.join("enroll").join(&relay.id);
                std::fs::create_dir_all(&base).map_err(|e| CliError::io(&base, e))?;
                recipients_files.insert(index, base.join("recipients.toml"));
            }
            for (clinic_id, district) in &clinic_plan {
                let relay = &planned[*district];
                let base = self.dir.join("enroll").join(&relay.id);
                let files = crate::enroll::request(clinic_id, &base.join("clinics"))?;
                let bytes = std::fs::read(&files.request).map_err(|e| CliError::io(&files.request, e))?;
                let request = crate::enroll::verify_request(&bytes)?;
                let cert = Certificate::decode(&relay.cert.payload)
                    .map_err(|e| failed("district cert")(e.to_string()))?;
                let district = crate::enroll::District {
                    id: &relay.id,
                    key: &relay.key,
                    cert: &cert,
                    members: &base.join("members.toml"),
                    recipients: &base.join("recipients.toml"),
                };
                let issued = crate::enroll::issue(&district, &request, 30, false)?;
                passwords.insert(clinic_id.clone(), issued.password);
                let secret = crate::keyfile::load_recipient(&files.recipient_key)?;
                enrolled.insert(clinic_id.clone(), std::sync::Arc::new(secret));
            }
        }
        for (clinic_id, _) in &clinic_plan {
            passwords.entry(clinic_id.clone()).or_insert_with(random_password);
        }
        for origin in &self.extra_origins {
            passwords.insert(origin.clone(), random_password());
        }
        passwords.insert("mhlw".into(), origin_password.clone());

        let admin = Credentials { username: "admin".into(), password: random_password() };
        let hashes: HashMap<String, PasswordHash> =
            passwords.iter().map(|(id, password)| (id.clone(), PasswordHash::new(password))).collect();
        let member = |id: &str, kind: MemberKind, scope: Option<&Scope>, members: &mut Members| {
            let principal = Principal::Member { id: id.to_owned(), kind, scope: scope.cloned() };
            let hash = hashes.get(id).cloned().unwrap_or_else(|| PasswordHash::new(""));
            members.insert(principal, id, hash);
        };
        let mut member_lists: Vec<Members> = Vec::new();
        for (index, relay) in planned.iter().enumerate() {
            let mut members = Members::default();
            for child in planned.iter().filter(|p| p.parent == Some(index)) {
                member(&child.id, MemberKind::Relay, Some(&child.scope), &mut members);
            }
            for (clinic_id, _) in clinic_plan.iter().filter(|(_, d)| *d == index) {
                member(clinic_id, MemberKind::Clinic, Some(&relay.scope), &mut members);
            }
            if relay.level == Level::National {
                let origin = Principal::Member { id: "mhlw".into(), kind: MemberKind::Origin, scope: None };
                members.insert(origin, "mhlw", PasswordHash::new(&origin_password));
                let principal =
                    Principal::Member { id: admin.username.clone(), kind: MemberKind::Admin, scope: None };
                members.insert(principal, &admin.username, PasswordHash::new(&admin.password));
                for origin in &self.extra_origins {
                    member(origin, MemberKind::Origin, None, &mut members);
                }
            }
            member_lists.push(members);
        }
        // External brokers: configured (password file and ACL, or definitions) from the members
        // of the relays that use them, as `kairan broker mosquitto-config` or
        // `kairan broker rabbitmq-config` does, then started.
        let own_passwords: Vec<String> = planned.iter().map(|_| random_password()).collect();
        let chain_of = |index: usize| {
            let mut chain = Vec::new();
            let mut above = planned[index].parent;
            while let Some(parent) = above {
                chain.push(planned[parent].cert.clone());
                above = planned[parent].parent;
            }
            chain
        };
        let mut external = self.external;
        if external.values().any(ExternalBroker::is_rabbitmq) {
            // RabbitMQ keeps its own kind of hash (`kairan members add --rabbitmq`).
            for members in &mut member_lists {
                let ids: Vec<String> = members.iter().map(|(id, _)| id.clone()).collect();
                for id in ids {
                    let password =
                        if id == admin.username { Some(&admin.password) } else { passwords.get(&id) };
                    if let Some(password) = password {
                        members.set_rabbitmq_password(&id, RabbitPasswordHash::new(password));
                    }
                }
            }
        }
        for (level, broker) in &mut external {
            let at_level: Vec<usize> = (0..planned.len()).filter(|i| planned[*i].level == *level).collect();
            let nodes: Vec<TreeNodeOnBroker<'_>> = at_level
                .iter()
                .map(|&i| TreeNodeOnBroker {
                    id: &planned[i].id,
                    national: planned[i].level == Level::National,
                    members: &member_lists[i],
                    own_password: &own_passwords[i],
                })
                .collect();
            // What `kairan tls cert` writes for each node: its key's certificate.
            let identities = if self.plaintext || !broker.takes_tls() {
                Vec::new()
            } else {
                at_level
                    .iter()
                    .map(|&i| crate::tls::broker_identity(&planned[i].key, &planned[i].cert, &chain_of(i)))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| failed("tls")(e.to_string()))?
            };
            broker.start_for(&nodes, &identities).map_err(failed("external broker"))?;
        }

        let shutdown = CancellationToken::new();
        let mut relays: Vec<TreeRelay> = Vec::new();
        for (index, relay) in planned.iter().enumerate() {
            let broker = match external.get(&relay.level) {
                Some(external) => BrokerConfig::External {
                    addr: external.addr_of(&relay.id),
                    password: Some(own_passwords[index].clone()),
                },
                None => BrokerConfig::Embedded { listen: loopback(), tls: !self.plaintext },
            };
            let upstream = match relay.parent {
                None => UpstreamConfig::Ingest,
                Some(parent) => {
                    let addr = broker_of(&relays[parent])?;
                    let password = passwords.get(&relay.id).cloned().unwrap_or_default();
                    let credentials = Some(Credentials { username: relay.id.clone(), password });
                    UpstreamConfig::Parent { addr, parent: planned[parent].id.clone(), credentials }
                }
            };
            let parts = RelayParts {
                id: relay.id.clone(),
                data_dir: self.dir.join("nodes").join(&relay.id),
                key_hex: relay.key.to_hex(),
                cert: relay.cert.clone(),
                extra_certs: Vec::new(),
                chain: chain_of(index),
                upstream,
                broker,
                members: member_lists[index].clone(),
                metrics: self.metrics,
                recipients: recipients_files.get(&index).cloned(),
            };
            let mut tree_relay = TreeRelay {
                level: relay.level,
                scope: relay.scope.clone(),
                parent: relay.parent,
                handle: None,
                config_parts: parts,
            };
            let handle = start_relay(&tree_relay.config_parts, &anchors, &shutdown).await?;
            // A restart binds the embedded broker to the same address: children keep theirs.
            if let BrokerConfig::Embedded { tls, .. } = tree_relay.config_parts.broker {
                let addr = relay_broker(&handle)?;
                let listen = format!("{}:{}", addr.host, addr.port)
                    .parse()
                    .map_err(|e| failed("listen")(format!("{e}")))?;
                tree_relay.config_parts.broker = BrokerConfig::Embedded { listen, tls };
            }
            tree_relay.handle = Some(handle);
            relays.push(tree_relay);
        }
        let origin_credentials = Some(Credentials { username: "mhlw".into(), password: origin_password });
        let mut clinics = Vec::new();
        for (clinic_id, district) in clinic_plan {
            let addr = broker_of(&relays[district])?;
            let password = passwords.get(&clinic_id).cloned().unwrap_or_default();
            let credentials = Some(Credentials { username: clinic_id.clone(), password });
            let config = ClinicConfig {
                id: clinic_id.clone(),
                scope: relays[district].scope.clone(),
                data_dir: self.dir.join("clinics").join(&clinic_id),
                anchors: anchors.clone(),
                addr,
                district: relays[district].config_parts.id.clone(),
                credentials,
                lang: "ja".into(),
                announce: false,
                // An enrolled clinic's own recipient key; otherwise the fixture key of this
                // clinic id (what `sign_next_sealed*` seal to), so that the announcement, the
                // web page and `kairan inbox` open what is sealed to it, as a configured clinic
                // does.
                recipient_key: Some(enrolled.get(&clinic_id).cloned().unwrap_or_else(|| {
                    std::sync::Arc::new(kairan_protocol::fixtures::sealed::recipient(&clinic_id))
                })),
                sync_interval: SYNC_INTERVAL,
                log: LogSection::default(),
                metrics: self.metrics,
                web: self.clinic_web,
                clock: crate::clock::Clock::SYSTEM,
            };
            let handle = match self.start_clinics {
                true => Some(clinic::start(config.clone(), shutdown.child_token()).await?),
                false => None,
            };
            clinics.push(TreeClinic { config, district, handle });
        }
        Ok(Hierarchy {
            dir: self.dir,
            roots,
            anchors,
            origin: Origin {
                id: "mhlw".into(),
                key: origin_key,
                cert: origin_cert,
                state: OriginState::default(),
                credentials: origin_credentials,
            },
            relays,
            clinics,
            admin,
            passwords,
            external,
            shutdown,
        })
    }
}

/// The broker a relay's children connect to.
fn broker_of(relay: &TreeRelay) -> Result<BrokerAddr, CliError> {
    match &relay.config_parts.broker {
        BrokerConfig::External { addr, .. } => Ok(addr.clone()),
        BrokerConfig::Embedded { .. } => {
            let handle =
                relay.handle.as_ref().ok_or_else(|| CliError::Failed("parent not running".into()))?;
            relay_broker(handle)
        }
    }
}

async fn start_relay(
    parts: &RelayParts,
    anchors: &TrustAnchors,
    shutdown: &CancellationToken,
) -> Result<RelayHandle, CliError> {
    let key = SecretKey::from_hex(&parts.key_hex).map_err(|e| CliError::Failed(e.to_string()))?;
    let cert_info = Certificate::decode(&parts.cert.payload).map_err(|e| CliError::Failed(e.to_string()))?;
    let config = NodeConfig {
        id: parts.id.clone(),
        data_dir: parts.data_dir.clone(),
        key,
        cert: parts.cert.clone(),
        cert_info,
        extra_certs: parts.extra_certs.clone(),
        chain: parts.chain.clone(),
        anchors: anchors.clone(),
        upstream: parts.upstream.clone(),
        broker: parts.broker.clone(),
        members: parts.members.clone(),
        members_path: None,
        recipients: parts.recipients.clone(),
        grace: Duration::from_secs(5),
        sync_interval: SYNC_INTERVAL,
        log: LogSection::default(),
        metrics: parts.metrics,
    };
    relay::start(config, shutdown.child_token()).await.map_err(CliError::from)
}

/// The broker a running relay's children connect to.
pub fn relay_broker(handle: &RelayHandle) -> Result<BrokerAddr, CliError> {
    handle.broker.clone().ok_or_else(|| CliError::Failed(format!("{} has no broker", handle.id)))
}
