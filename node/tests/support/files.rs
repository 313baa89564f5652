//! A chain tree written to disk for real `kairan` processes: national → prefecture →
//! district → N clinics, every file a real deployment would have.
//!
//! ```text
//! DIR/trust.toml                     root keys 2 of 3 (DIR/keys/root-*.key, never used by nodes)
//! DIR/keys/mhlw.key, certs/mhlw.cert.json   the origin, certified by the root
//! DIR/nodes/ID/{node.toml, members.toml, ID.key, ID.pub, ID.cert.json, data/, log}
//! DIR/clinics/ID/{clinic.toml, data/, log}
//! ```
//! Each embedded broker listens on a port chosen once (below the ephemeral range), so a
//! relay restarted after `kill -9` comes back on the same address. The district may instead
//! use an external broker (Mosquitto), configured from the district's members file by the
//! same generator `kairan broker mosquitto-config` uses. Members files hold password hashes,
//! kinds and scopes (relays: the certificate their parent issued them), mode 0600.

use std::path::{Path, PathBuf};

use rand::Rng;

use kairan_node::authz::MemberKind;
use kairan_node::keyfile::{render_trust, write_pair};
use kairan_node::members::{MemberRow, MembersFile, PasswordHash};
use kairan_node::mqtt::{BrokerAddr, Credentials};
use kairan_protocol::cert::ROOT_ISSUER;
use kairan_protocol::{Certificate, Envelope, Role, Scope, SecretKey, TrustAnchors};

use super::mosquitto::free_port;

/// The member of the national broker the crash harness follows the national's log as (a
/// child of scope `jp`; its password is the origin's).
pub const CONFIRM_MEMBER: &str = "confirm";

/// The relay levels, top down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    /// The national association (ingest from origins).
    National,
    /// A prefectural association.
    Prefecture,
    /// A district association (serves the clinics).
    District,
}

impl Level {
    /// All levels, top down.
    pub const ALL: [Level; 3] = [Level::National, Level::Prefecture, Level::District];

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Level::National => "national",
            Level::Prefecture => "prefecture",
            Level::District => "district",
        }
    }
}

/// What to write.
#[derive(Debug, Clone)]
pub struct TreeSpec {
    /// Number of clinics under the district.
    pub clinics: usize,
    /// An external broker for the district level (its address).
    pub district_broker: Option<BrokerAddr>,
    /// `[log] level` of every process.
    pub log_level: String,
    /// `upstream.sync_interval_secs` of every relay and clinic.
    pub sync_interval_secs: u64,
    /// Embedded brokers in plaintext (`broker.insecure_plaintext`): for the syscall-order
    /// test, which reads the MQTT packets a relay writes to its sockets.
    pub plaintext: bool,
}

/// A relay as written.
#[derive(Debug, Clone)]
pub struct RelayFiles {
    /// Node id.
    pub id: String,
    /// Level.
    pub level: Level,
    /// Certified scope.
    pub scope: Scope,
    /// Its directory.
    pub dir: PathBuf,
    /// node.toml.
    pub config: PathBuf,
    /// The store directory.
    pub data_dir: PathBuf,
    /// Where its children connect (its embedded broker, or the external one).
    pub broker: BrokerAddr,
    /// Whether that broker is embedded (dies with the relay).
    pub embedded: bool,
}

/// A clinic as written.
#[derive(Debug, Clone)]
pub struct ClinicFiles {
    /// Clinic id.
    pub id: String,
    /// Its directory.
    pub dir: PathBuf,
    /// clinic.toml.
    pub config: PathBuf,
    /// DATA_DIR (the sled inbox is DATA_DIR/store, the copies DATA_DIR/advisories).
    pub data_dir: PathBuf,
}

/// The origin as written (it publishes from the test process).
#[derive(Debug)]
pub struct OriginFiles {
    /// Origin id.
    pub id: String,
    /// Its key.
    pub key: SecretKey,
    /// Its root-issued certificate.
    pub cert: Envelope,
    /// Its credentials on the national broker.
    pub credentials: Credentials,
}

/// A whole tree on disk.
#[derive(Debug)]
pub struct TreeFiles {
    /// The trust anchors (also in DIR/trust.toml).
    pub anchors: TrustAnchors,
    /// The origin.
    pub origin: OriginFiles,
    /// National, prefecture, district.
    pub relays: Vec<RelayFiles>,
    /// The district's clinics.
    pub clinics: Vec<ClinicFiles>,
}

fn new_key() -> SecretKey {
    loop {
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill(&mut seed);
        if let Ok(key) = SecretKey::from_seed(&seed) {
            return key;
        }
    }
}

fn password() -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill(&mut bytes);
    hex::encode(bytes)
}

fn write(path: &Path, text: impl AsRef<[u8]>) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{}: {e}", parent.display()));
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// A TOML basic string.
fn quoted(text: &str) -> String {
    format!("{text:?}")
}

fn path_str(path: &Path) -> String {
    quoted(&path.display().to_string())
}

impl TreeFiles {
    /// Writes keys, certificates, trust file and every configuration under `dir`.
    pub fn write(dir: &Path, spec: &TreeSpec) -> TreeFiles {
        let now = kairan_node::clock::now();
        let (not_before, not_after) = (now.plus_secs(-3600), now.plus_secs(365 * 24 * 3600));
        let keys_dir = dir.join("keys");
        let roots: Vec<SecretKey> = (0..3).map(|_| new_key()).collect();
        for (index, root) in roots.iter().enumerate() {
            write_pair(&keys_dir, &format!("root-{}", index + 1), root).expect("root key");
        }
        let anchors = TrustAnchors::numbered(2, roots.iter().map(SecretKey::public)).expect("anchors");
        let trust = dir.join("trust.toml");
        write(&trust, render_trust(&anchors));
        let certify = |issuer: &str,
                       subject: &str,
                       key: &SecretKey,
                       role: Role,
                       scope: &Scope,
                       signers: &[&SecretKey]| {
            let serial = format!("{issuer}-{subject}");
            Certificate::for_key(serial, issuer, subject, key.public(), role, scope, (not_before, not_after))
                .sign(signers)
        };

        let jp = Scope::parse("jp").expect("scope");
        let origin_key = new_key();
        write_pair(&keys_dir, "mhlw", &origin_key).expect("origin key");
        let origin_cert =
            certify(ROOT_ISSUER, "mhlw", &origin_key, Role::Origin, &jp, &[&roots[0], &roots[1]]);
        write(&dir.join("certs/mhlw.cert.json"), origin_cert.to_json());
        let origin = OriginFiles {
            id: "mhlw".into(),
            key: origin_key,
            cert: origin_cert,
            credentials: Credentials { username: "mhlw".into(), password: password() },
        };

        // The chain of relays: (id, level, scope, key, cert).
        let national_key = new_key();
        let tokyo = jp.child("13").expect("scope");
        let chuo = tokyo.child("chuo").expect("scope");
        let prefecture_key = new_key();
        let district_key = new_key();
        let chain = [
            (
                "jp",
                Level::National,
                jp.clone(),
                certify(ROOT_ISSUER, "jp", &national_key, Role::Relay, &jp, &[&roots[0], &roots[2]]),
                &national_key,
            ),
            (
                "jp-13",
                Level::Prefecture,
                tokyo.clone(),
                certify("jp", "jp-13", &prefecture_key, Role::Relay, &tokyo, &[&national_key]),
                &prefecture_key,
            ),
            (
                "jp-13-chuo",
                Level::District,
                chuo.clone(),
                certify("jp-13", "jp-13-chuo", &district_key, Role::Relay, &chuo, &[&prefecture_key]),
                &district_key,
            ),
        ];
        let clinic_ids: Vec<String> = (1..=spec.clinics).map(|n| format!("jp-13-chuo-c{n:02}")).collect();
        let clinic_passwords: Vec<String> = clinic_ids.iter().map(|_| password()).collect();
        let relay_passwords: Vec<String> = chain.iter().map(|_| password()).collect();

        let mut relays: Vec<RelayFiles> = Vec::new();
        for (index, (id, level, scope, cert, key)) in chain.iter().enumerate() {
            let node_dir = dir.join("nodes").join(id);
            write_pair(&node_dir, id, key).expect("relay key");
            write(&node_dir.join(format!("{id}.cert.json")), cert.to_json());
            // Who may connect to this relay's broker: its child (with the certificate it
            // issued it) or its clinics, and on the national node the origin.
            let mut members = MembersFile::default();
            let mut add =
                |id: &str, kind: MemberKind, secret: &str, cert: Option<String>, scope: Option<String>| {
                    members.members.push(MemberRow {
                        id: id.to_owned(),
                        kind,
                        password_hash: PasswordHash::new(secret).to_string(),
                        cert,
                        scope,
                        rabbitmq_password_hash: None,
                        password: None,
                    });
                };
            if let Some(child) = chain.get(index + 1) {
                let cert_file = format!("{}.member.cert.json", child.0);
                write(&node_dir.join(&cert_file), child.3.to_json());
                add(child.0, MemberKind::Relay, &relay_passwords[index + 1], Some(cert_file), None);
            } else {
                for (clinic, secret) in clinic_ids.iter().zip(&clinic_passwords) {
                    add(clinic, MemberKind::Clinic, secret, None, Some(scope.to_string()));
                }
            }
            if *level == Level::National {
                add(&origin.id, MemberKind::Origin, &origin.credentials.password, None, None);
                // The harness's observer of the national's log (`crash.rs`, `confirm_loop`).
                add(
                    CONFIRM_MEMBER,
                    MemberKind::Clinic,
                    &origin.credentials.password,
                    None,
                    Some("jp".into()),
                );
            }
            let text = toml::to_string(&members).expect("members toml");
            kairan_node::secrets::write_private(&node_dir.join("members.toml"), text.as_bytes())
                .expect("members");
            let external = if *level == Level::District { spec.district_broker.clone() } else { None };
            let (broker_section, broker) = match &external {
                Some(addr) => {
                    kairan_node::secrets::write_private(
                        &node_dir.join("broker.secret"),
                        password().as_bytes(),
                    )
                    .expect("broker secret");
                    (
                        format!(
                            "external = {}\nmembers = \"members.toml\"\npassword_file = \"broker.secret\"\n",
                            quoted(&addr.url())
                        ),
                        addr.clone(),
                    )
                }
                None => {
                    let port = free_port();
                    (
                        format!(
                            "listen = \"127.0.0.1:{port}\"\nmembers = \"members.toml\"\ninsecure_plaintext = {}\n",
                            spec.plaintext
                        ),
                        BrokerAddr { host: "127.0.0.1".into(), port, tls: !spec.plaintext },
                    )
                }
            };
            let upstream_section = match index.checked_sub(1).map(|p| &relays[p]) {
                None => format!("ingest = true\nsync_interval_secs = {}\n", spec.sync_interval_secs),
                Some(parent) => {
                    let (username, secret) = ((*id).to_owned(), relay_passwords[index].clone());
                    format!(
                        "url = {}\nparent = {}\nusername = {}\npassword = {}\nsync_interval_secs = {}\n",
                        quoted(&parent.broker.url()),
                        quoted(&parent.id),
                        quoted(&username),
                        quoted(&secret),
                        spec.sync_interval_secs
                    )
                }
            };
            // The certificates above it: they go into its broker's TLS certificate, so its
            // children can check its key up to the anchors.
            let above: Vec<String> = chain[..index]
                .iter()
                .map(|(above_id, _, _, above_cert, _)| {
                    let file = format!("{above_id}.above.cert.json");
                    write(&node_dir.join(&file), above_cert.to_json());
                    quoted(&file)
                })
                .collect();
            let config = node_dir.join("node.toml");
            write(
                &config,
                format!(
                    "# {level:?} relay, written by the crash harness\n[node]\nid = {}\ndata_dir = \"data\"\nkey = {}\ncert = {}\nchain = [{}]\ntrust = {}\nshutdown_grace_secs = 5\n\n[upstream]\n{upstream_section}\n[broker]\n{broker_section}\n[log]\nformat = \"human\"\nlevel = {}\n",
                    quoted(id),
                    quoted(&format!("{id}.key")),
                    quoted(&format!("{id}.cert.json")),
                    above.join(", "),
                    path_str(&trust),
                    quoted(&spec.log_level),
                ),
            );
            relays.push(RelayFiles {
                id: (*id).to_owned(),
                level: *level,
                scope: scope.clone(),
                data_dir: node_dir.join("data"),
                dir: node_dir,
                config,
                broker,
                embedded: external.is_none(),
            });
        }

        let district = &relays[2];
        let mut clinics = Vec::new();
        for (id, secret) in clinic_ids.iter().zip(clinic_passwords) {
            let clinic_dir = dir.join("clinics").join(id);
            let username = id.clone();
            let config = clinic_dir.join("clinic.toml");
            write(
                &config,
                format!(
                    "# clinic, written by the crash harness\n[clinic]\nid = {}\nscope = {}\ndata_dir = \"data\"\ntrust = {}\nlang = \"ja\"\nannounce = false\n\n[upstream]\nurl = {}\nparent = {}\nusername = {}\npassword = {}\nsync_interval_secs = {}\n\n[log]\nformat = \"human\"\nlevel = {}\n\n[web]\nenabled = false\n",
                    quoted(id),
                    quoted(&district.scope.to_string()),
                    path_str(&trust),
                    quoted(&district.broker.url()),
                    quoted(&district.id),
                    quoted(&username),
                    quoted(&secret),
                    spec.sync_interval_secs,
                    quoted(&spec.log_level),
                ),
            );
            clinics.push(ClinicFiles {
                id: id.clone(),
                data_dir: clinic_dir.join("data"),
                dir: clinic_dir,
                config,
            });
        }
        TreeFiles { anchors, origin, relays, clinics }
    }

    /// The national relay's broker (origins publish to its ingest topic there).
    pub fn national_broker(&self) -> &BrokerAddr {
        &self.relays[0].broker
    }
}
