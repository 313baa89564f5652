//! Configuration files of `kairan node` and `kairan clinic`: TOML read through the `config`
//! crate with `KAIRAN__SECTION__KEY` environment overrides, then checked into typed
//! configs. Every error names the field (`upstream.url: …`); `main` exits 64 on them.
//! Relative paths are relative to the configuration file's directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use kairan_protocol::sealed::RecipientSecret;
use kairan_protocol::{Certificate, Envelope, Role, Scope, SecretKey, TrustAnchors};

use crate::error::CliError;
use crate::keyfile;
use crate::members::{Members, NodeView};
use crate::mqtt::{BrokerAddr, Credentials};
use crate::secrets;

/// Reads a TOML file plus `KAIRAN__…` environment overrides into `T`.
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<T, CliError> {
    let built = config::Config::builder()
        .add_source(config::File::from(path).format(config::FileFormat::Toml).required(true))
        .add_source(config::Environment::with_prefix("KAIRAN").separator("__"))
        .build()
        .map_err(|e| CliError::Config(format!("{}: {e}", path.display())))?;
    built.try_deserialize().map_err(|e| CliError::Config(format!("{}: {e}", path.display())))
}

fn field(name: &str, message: impl std::fmt::Display) -> CliError {
    CliError::Config(format!("{name}: {message}"))
}

fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() { path.to_owned() } else { base.join(path) }
}

/// `[node]` of node.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// Node id (the subject of its certificate).
    pub id: String,
    /// Directory of the store.
    pub data_dir: PathBuf,
    /// Secret key file (mode 0600).
    pub key: PathBuf,
    /// Certificate envelope file.
    pub cert: PathBuf,
    /// Trust-anchors file.
    pub trust: PathBuf,
    /// Seconds to finish in-flight work on shutdown (default 10).
    #[serde(default)]
    pub shutdown_grace_secs: Option<u64>,
    /// Previous certificates to keep carrying after a key rotation (their keys issued the
    /// children's certificates), e.g. `["certs/jp-13.2025.cert.json"]`.
    #[serde(default)]
    pub extra_certs: Vec<PathBuf>,
    /// The certificates of the relays above this one, up to the root-issued national one
    /// (e.g. `["certs/jp.cert.json"]` for a prefecture): they go with every signed catch-up
    /// page so children can check it from the start; deliveries carry them too.
    #[serde(default)]
    pub chain: Vec<PathBuf>,
    /// District relays: the recipients file (`kairan enroll issue` writes it, next to the
    /// members file): the node signs its clinics' recipient keys as its recipient directory
    /// and publishes it (`crate::directory`). Absent: no directory.
    #[serde(default)]
    pub recipients: Option<PathBuf>,
}

/// `[upstream]`: where input comes from.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    /// National node: take origins' deliveries from this node's own ingest topic.
    #[serde(default)]
    pub ingest: bool,
    /// The parent's broker, `mqtts://host:port` (TLS 1.3; the broker must present the parent's
    /// certified relay key). `mqtt://` only on this machine, or with `insecure_plaintext`.
    pub url: Option<String>,
    /// Accept a plaintext `mqtt://` URL off this machine: the password and every advisory
    /// cross the network in clear. Logged as a warning at every connection.
    #[serde(default)]
    pub insecure_plaintext: bool,
    /// The parent node's id.
    pub parent: Option<String>,
    /// Username on the parent's broker (default: this node's id).
    pub username: Option<String>,
    /// Password on the parent's broker.
    pub password: Option<String>,
    /// File holding the password (alternative to `password`).
    pub password_file: Option<PathBuf>,
    /// Seconds between periodic catch-up requests to the parent (default 60). Catch-up also
    /// runs at every (re)connect and whenever an origin's chain jumps.
    pub sync_interval_secs: Option<u64>,
}

/// `[broker]`: where this node publishes to its children.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerSection {
    /// Embedded broker listen address (default 127.0.0.1:1883; port 0 = any free port).
    pub listen: Option<String>,
    /// Members file (mode 0600; `[[members]] id, kind, password_hash, cert | scope`): the
    /// children, and on the national node the origins and administrators. Whom the broker lets
    /// in and what it lets each do, and whom catch-up answers (see `crate::members`).
    pub members: Option<PathBuf>,
    /// Use this external broker (`mqtts://host:port`, e.g. Mosquitto configured by
    /// `kairan broker mosquitto-config` with the certificate of `kairan tls cert`) instead of
    /// the embedded one.
    pub external: Option<String>,
    /// The embedded broker listens in plaintext, or `external` may be a plaintext `mqtt://`
    /// URL off this machine: passwords and advisories cross the network in clear. Logged as
    /// a warning at start.
    #[serde(default)]
    pub insecure_plaintext: bool,
    /// Password of this node's own clients (`<id>~out`, `<id>~ingest`) on the external broker.
    pub password: Option<String>,
    /// File holding that password (mode 0600).
    pub password_file: Option<PathBuf>,
}

/// `[log]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// `human` (default) or `json`.
    pub format: Option<String>,
    /// A tracing filter, e.g. `info` or `kairan_node=debug` (default `info`).
    pub level: Option<String>,
}

/// `[metrics]`: the local Prometheus and health endpoint (off when absent).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Address to serve `/metrics`, `/healthz` and `/readyz` on, e.g. `127.0.0.1:9464`
    /// (port 0 = any free port).
    pub listen: Option<String>,
}

/// The checked `[metrics] listen` address: `None` when metrics are off.
fn metrics_listen(section: &MetricsSection) -> Result<Option<SocketAddr>, CliError> {
    section
        .listen
        .as_ref()
        .map(|text| text.parse().map_err(|e| field("metrics.listen", format!("{text:?}: {e}"))))
        .transpose()
}

/// node.toml as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeFile {
    /// `[node]`.
    pub node: NodeSection,
    /// `[upstream]`.
    #[serde(default)]
    pub upstream: UpstreamSection,
    /// `[broker]`.
    #[serde(default)]
    pub broker: BrokerSection,
    /// `[log]`.
    #[serde(default)]
    pub log: LogSection,
    /// `[metrics]`.
    #[serde(default)]
    pub metrics: MetricsSection,
}

/// Where a node's input comes from, checked.
#[derive(Debug, Clone)]
pub enum UpstreamConfig {
    /// Own ingest topic on own broker.
    Ingest,
    /// A parent relay's broker.
    Parent {
        /// Broker address.
        addr: BrokerAddr,
        /// Parent node id.
        parent: String,
        /// Credentials.
        credentials: Option<Credentials>,
    },
}

/// Where a node publishes, checked.
#[derive(Debug, Clone)]
pub enum BrokerConfig {
    /// rmqtt in this process, enforcing the permission table for the members.
    Embedded {
        /// Listen address.
        listen: SocketAddr,
        /// TLS 1.3 with the certificate of the relay's key (false only with
        /// `broker.insecure_plaintext`).
        tls: bool,
    },
    /// An existing broker, configured from the same members file.
    External {
        /// Broker address.
        addr: BrokerAddr,
        /// The password of this node's own clients on it.
        password: Option<String>,
    },
}

/// A checked relay node configuration.
#[derive(Debug)]
pub struct NodeConfig {
    /// Node id.
    pub id: String,
    /// Store directory.
    pub data_dir: PathBuf,
    /// Relay key.
    pub key: SecretKey,
    /// Relay certificate envelope.
    pub cert: Envelope,
    /// Its decoded payload.
    pub cert_info: Certificate,
    /// Previous certificates carried after a key rotation.
    pub extra_certs: Vec<Envelope>,
    /// The certificates of the relays above this one.
    pub chain: Vec<Envelope>,
    /// Trust anchors.
    pub anchors: TrustAnchors,
    /// Input.
    pub upstream: UpstreamConfig,
    /// Output.
    pub broker: BrokerConfig,
    /// Who may connect to the node's broker, as what.
    pub members: Members,
    /// The members file it was read from (`broker.members`), if any.
    pub members_path: Option<PathBuf>,
    /// The recipients file (`node.recipients`), if any: the node publishes its directory.
    pub recipients: Option<PathBuf>,
    /// Shutdown grace period.
    pub grace: Duration,
    /// Periodic catch-up interval.
    pub sync_interval: Duration,
    /// Log settings.
    pub log: LogSection,
    /// Where to serve metrics and health (`None`: off).
    pub metrics: Option<SocketAddr>,
}

fn password(
    name: &str,
    inline: &Option<String>,
    file: &Option<PathBuf>,
    base: &Path,
) -> Result<Option<String>, CliError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(field(name, "give password or password_file, not both")),
        (Some(password), None) => Ok(Some(password.clone())),
        (None, Some(path)) => {
            let path = resolve(base, path);
            let text = secrets::read_private(&path, "password file")
                .map_err(|e| field(&format!("{name}_file"), e))?;
            Ok(Some(text.trim().to_owned()))
        }
        (None, None) => Ok(None),
    }
}

fn credentials(
    id: &str,
    user: &Option<String>,
    password: Option<String>,
) -> Result<Option<Credentials>, CliError> {
    // The broker binds client ids to usernames, and a node's client id is its id.
    if let Some(user) = user.as_ref().filter(|user| *user != id) {
        return Err(field(
            "upstream.username",
            format!("{user:?}: the username on the parent's broker is the node id {id:?}"),
        ));
    }
    Ok(password.map(|password| Credentials { username: id.to_owned(), password }))
}

/// Loads a relay's identity: key (0600), certificate granting `relay` for `id`.
fn load_identity(
    id: &str,
    key: &Path,
    cert: &Path,
    role: Role,
) -> Result<(SecretKey, Envelope, Certificate), CliError> {
    let secret = keyfile::load_secret(key).map_err(|e| field("node.key", e))?;
    let envelope = keyfile::load_envelope(cert).map_err(|e| field("node.cert", e))?;
    let info = Certificate::decode(&envelope.payload).map_err(|e| field("node.cert", e))?;
    if info.key != *secret.public() {
        return Err(field(
            "node.cert",
            format!("certifies key {} but node.key is {}", info.key.keyid().short(), secret.keyid().short()),
        ));
    }
    if info.subject != id {
        return Err(field("node.cert", format!("is for {:?} but node.id is {id:?}", info.subject)));
    }
    if !info.has_role(role) {
        return Err(field("node.cert", format!("does not grant the {role:?} role")));
    }
    Ok((secret, envelope, info))
}

impl NodeConfig {
    /// Reads and checks node.toml.
    pub fn load(path: &Path) -> Result<Self, CliError> {
        let file: NodeFile = read(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::check(file, base)
    }

    /// Checks a parsed node.toml; relative paths are resolved against `base`.
    pub fn check(file: NodeFile, base: &Path) -> Result<Self, CliError> {
        let node = &file.node;
        kairan_protocol::advisory::check_id("node.id", &node.id).map_err(CliError::Config)?;
        let (key, cert, cert_info) =
            load_identity(&node.id, &resolve(base, &node.key), &resolve(base, &node.cert), Role::Relay)?;
        let anchors = keyfile::load_trust(&resolve(base, &node.trust)).map_err(|e| field("node.trust", e))?;
        let up = &file.upstream;
        let upstream = match (up.ingest, &up.url, &up.parent) {
            (true, None, None) => UpstreamConfig::Ingest,
            (true, _, _) => {
                return Err(field(
                    "upstream.ingest",
                    "an ingest node has no upstream.url or upstream.parent",
                ));
            }
            (false, Some(url), Some(parent)) => {
                let addr = BrokerAddr::parse(url).map_err(|e| field("upstream.url", e))?;
                addr.check_transport("upstream.url", up.insecure_plaintext)
                    .map_err(|e| field("upstream.url", e))?;
                kairan_protocol::advisory::check_id("upstream.parent", parent).map_err(CliError::Config)?;
                let password = password("upstream.password", &up.password, &up.password_file, base)?;
                UpstreamConfig::Parent {
                    addr,
                    parent: parent.clone(),
                    credentials: credentials(&node.id, &up.username, password)?,
                }
            }
            (false, None, _) => {
                return Err(field(
                    "upstream.url",
                    "missing: set upstream.url and upstream.parent, or upstream.ingest = true for the national node",
                ));
            }
            (false, Some(_), None) => return Err(field("upstream.parent", "missing: the parent node's id")),
        };
        let broker = broker_config(&file.broker, base)?;
        let national = matches!(upstream, UpstreamConfig::Ingest);
        let view = NodeView { id: &node.id, key: key.public(), scope: &cert_info.scope, national };
        let members = match &file.broker.members {
            None => Members::default(),
            Some(path) => {
                Members::load(&resolve(base, path), base, view).map_err(|e| field("broker.members", e))?
            }
        };
        let grace = Duration::from_secs(node.shutdown_grace_secs.unwrap_or(10));
        if let Some(format) = &file.log.format {
            if format != "human" && format != "json" {
                return Err(field("log.format", format!("{format:?}: expected \"human\" or \"json\"")));
            }
        }
        let extra_certs = node
            .extra_certs
            .iter()
            .map(|path| {
                keyfile::load_envelope(&resolve(base, path)).map_err(|e| field("node.extra_certs", e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let chain = node
            .chain
            .iter()
            .map(|path| keyfile::load_envelope(&resolve(base, path)).map_err(|e| field("node.chain", e)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(NodeConfig {
            id: node.id.clone(),
            data_dir: resolve(base, &node.data_dir),
            key,
            cert,
            cert_info,
            extra_certs,
            chain,
            anchors,
            upstream,
            broker,
            members,
            members_path: file.broker.members.as_ref().map(|path| resolve(base, path)),
            recipients: node.recipients.as_ref().map(|path| resolve(base, path)),
            grace,
            sync_interval: sync_interval(&file.upstream)?,
            metrics: metrics_listen(&file.metrics)?,
            log: file.log,
        })
    }
}

fn sync_interval(upstream: &UpstreamSection) -> Result<Duration, CliError> {
    match upstream.sync_interval_secs {
        Some(0) => Err(field("upstream.sync_interval_secs", "must be at least 1")),
        Some(secs) => Ok(Duration::from_secs(secs)),
        None => Ok(Duration::from_secs(60)),
    }
}

fn broker_config(section: &BrokerSection, base: &Path) -> Result<BrokerConfig, CliError> {
    if let Some(url) = &section.external {
        if section.listen.is_some() {
            return Err(field("broker.external", "an external broker takes no broker.listen"));
        }
        let addr = BrokerAddr::parse(url).map_err(|e| field("broker.external", e))?;
        addr.check_transport("broker.external", section.insecure_plaintext)
            .map_err(|e| field("broker.external", e))?;
        let password = password("broker.password", &section.password, &section.password_file, base)?;
        return Ok(BrokerConfig::External { addr, password });
    }
    if section.password.is_some() || section.password_file.is_some() {
        return Err(field(
            "broker.password",
            "only an external broker takes a password (the embedded one makes its own)",
        ));
    }
    let listen_text = section.listen.clone().unwrap_or_else(|| "127.0.0.1:1883".into());
    let listen: SocketAddr =
        listen_text.parse().map_err(|e| field("broker.listen", format!("{listen_text:?}: {e}")))?;
    Ok(BrokerConfig::Embedded { listen, tls: !section.insecure_plaintext })
}

/// `[clinic]` of clinic.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClinicSection {
    /// Clinic id (its username on the district broker).
    pub id: String,
    /// The clinic's scope (its district's), e.g. `jp/13/chuo`.
    pub scope: String,
    /// Inbox directory.
    pub data_dir: PathBuf,
    /// Trust-anchors file.
    pub trust: PathBuf,
    /// Language to show advisories in (default `ja`).
    pub lang: Option<String>,
    /// Print each new advisory on the terminal (default true).
    pub announce: Option<bool>,
    /// The clinic's recipient key file (`kairan keygen-recipient`), to open sealed advisories
    /// sealed to this clinic for display. Absent: sealed advisories are shown as a notice.
    pub recipient_key: Option<PathBuf>,
}

/// clinic.toml as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClinicFile {
    /// `[clinic]`.
    pub clinic: ClinicSection,
    /// `[upstream]`: the district's broker.
    pub upstream: UpstreamSection,
    /// `[log]`.
    #[serde(default)]
    pub log: LogSection,
    /// `[metrics]`.
    #[serde(default)]
    pub metrics: MetricsSection,
    /// `[web]`: the local web inbox.
    #[serde(default)]
    pub web: crate::web::WebSection,
}

/// A checked clinic configuration.
#[derive(Debug, Clone)]
pub struct ClinicConfig {
    /// Clinic id.
    pub id: String,
    /// Scope.
    pub scope: Scope,
    /// Inbox directory.
    pub data_dir: PathBuf,
    /// Trust anchors.
    pub anchors: TrustAnchors,
    /// District broker.
    pub addr: BrokerAddr,
    /// District node id.
    pub district: String,
    /// Credentials.
    pub credentials: Option<Credentials>,
    /// Display language.
    pub lang: String,
    /// Print each new advisory on the terminal.
    pub announce: bool,
    /// The clinic's recipient key (`[clinic] recipient_key`): opens, for display only, the
    /// sealed advisories sealed to this clinic. Group keys are not supported yet.
    pub recipient_key: Option<std::sync::Arc<RecipientSecret>>,
    /// Periodic catch-up interval.
    pub sync_interval: Duration,
    /// Log settings.
    pub log: LogSection,
    /// Where to serve metrics and health (`None`: off).
    pub metrics: Option<SocketAddr>,
    /// Where the web inbox listens (loopback); `None` when turned off.
    pub web: Option<SocketAddr>,
    /// Its clock: the system clock (not configurable; tests skew it to play a clinic PC
    /// whose clock is wrong).
    pub clock: crate::clock::Clock,
}

impl ClinicConfig {
    /// Reads and checks clinic.toml.
    pub fn load(path: &Path) -> Result<Self, CliError> {
        let file: ClinicFile = read(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::check(file, base)
    }

    /// Checks a parsed clinic.toml.
    pub fn check(file: ClinicFile, base: &Path) -> Result<Self, CliError> {
        let clinic = &file.clinic;
        kairan_protocol::advisory::check_id("clinic.id", &clinic.id).map_err(CliError::Config)?;
        let scope = Scope::parse(&clinic.scope).map_err(|e| field("clinic.scope", e))?;
        let anchors =
            keyfile::load_trust(&resolve(base, &clinic.trust)).map_err(|e| field("clinic.trust", e))?;
        let up = &file.upstream;
        let url = up
            .url
            .as_ref()
            .ok_or_else(|| field("upstream.url", "missing: the district broker, mqtts://host:port"))?;
        let addr = BrokerAddr::parse(url).map_err(|e| field("upstream.url", e))?;
        addr.check_transport("upstream.url", up.insecure_plaintext).map_err(|e| field("upstream.url", e))?;
        let district =
            up.parent.clone().ok_or_else(|| field("upstream.parent", "missing: the district node's id"))?;
        let password = password("upstream.password", &up.password, &up.password_file, base)?;
        let recipient_key = match &clinic.recipient_key {
            Some(path) => Some(std::sync::Arc::new(
                keyfile::load_recipient(&resolve(base, path))
                    .map_err(|e| field("clinic.recipient_key", e))?,
            )),
            None => None,
        };
        Ok(ClinicConfig {
            id: clinic.id.clone(),
            scope,
            data_dir: resolve(base, &clinic.data_dir),
            anchors,
            addr,
            district,
            credentials: credentials(&clinic.id, &up.username, password)?,
            lang: clinic.lang.clone().unwrap_or_else(|| "ja".into()),
            announce: clinic.announce.unwrap_or(true),
            recipient_key,
            sync_interval: sync_interval(up)?,
            metrics: metrics_listen(&file.metrics)?,
            web: file.web.check()?,
            log: file.log,
            clock: crate::clock::Clock::SYSTEM,
        })
    }
}

/// The commented default printed by `kairan node generate-config`.
pub const NODE_TEMPLATE: &str = include_str!("../../deploy/node.example.toml");
/// The commented default printed by `kairan clinic generate-config`.
pub const CLINIC_TEMPLATE: &str = include_str!("../../deploy/clinic.example.toml");

#[cfg(test)]
mod tests {
    use super::*;

    /// clinic.toml in `dir` (with a trust file) whose `[clinic]` ends with `extra`.
    fn clinic_toml(dir: &Path, extra: &str) -> PathBuf {
        let anchors = kairan_protocol::fixtures::Hierarchy::standard().anchors;
        fs_write(&dir.join("trust.toml"), &keyfile::render_trust(&anchors));
        let path = dir.join("clinic.toml");
        fs_write(
            &path,
            &format!(
                "[clinic]\nid = \"chuo-clinic-1\"\nscope = \"jp/13/chuo\"\ndata_dir = \"inbox\"\n\
                 trust = \"trust.toml\"\n{extra}\n[upstream]\nurl = \"mqtts://127.0.0.1:8885\"\n\
                 parent = \"jp-13-chuo\"\npassword = \"pw\"\n"
            ),
        );
        path
    }

    fn fs_write(path: &Path, text: &str) {
        std::fs::write(path, text).expect("write");
    }

    #[test]
    fn recipient_key_is_loaded_and_a_bad_one_is_an_error_naming_the_field() {
        let dir = tempfile::tempdir().expect("tempdir");
        let none = ClinicConfig::load(&clinic_toml(dir.path(), "")).expect("no recipient key");
        assert!(none.recipient_key.is_none());
        let missing = ClinicConfig::load(&clinic_toml(dir.path(), "recipient_key = \"nowhere.x25519\""))
            .expect_err("missing file");
        assert!(matches!(missing, CliError::Config(_)), "{missing:?}");
        assert!(missing.to_string().contains("clinic.recipient_key: "), "{missing}");
        assert!(missing.to_string().contains("nowhere.x25519"), "{missing}");
        let bad = dir.path().join("bad.x25519");
        fs_write(&bad, "zz\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        let err = ClinicConfig::load(&clinic_toml(dir.path(), "recipient_key = \"bad.x25519\""))
            .expect_err("not a key");
        assert!(err.to_string().contains("clinic.recipient_key: "), "{err}");
        assert!(err.to_string().contains("not 64 lowercase hex"), "{err}");
        let good = dir.path().join("clinic.x25519");
        let secret = keyfile::generate_recipient(&good).expect("generate");
        let config = ClinicConfig::load(&clinic_toml(dir.path(), "recipient_key = \"clinic.x25519\""))
            .expect("loads with a recipient key");
        assert_eq!(config.recipient_key.expect("key").public(), secret.public());
    }
}
