//! `kairan members add` (a row of a members file, with the password hashed),
//! `kairan broker mosquitto-config` (Mosquitto's password file, ACL and configuration) and
//! `kairan broker rabbitmq-config` (RabbitMQ's definitions and configuration), from the
//! members files of the nodes that use the broker.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::authz::MemberKind;
use crate::config::{BrokerConfig, NodeConfig, UpstreamConfig};
use crate::error::CliError;
use crate::members::{MemberRow, MembersFile, PasswordHash};
use crate::mosquitto_config::{self, BrokerSettings, MosquittoListener, NodeOnBroker, TlsFiles};
use crate::rabbitmq_config::{self, NodeOnRabbit, RabbitPasswordHash, RabbitSettings};

/// Arguments of `kairan members add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// The members file (created, mode 0600, if missing).
    #[arg(long)]
    pub members: PathBuf,
    /// The member's id: its username and client id.
    #[arg(long)]
    pub id: String,
    /// relay | clinic | origin | admin.
    #[arg(long, value_parser = parse_kind)]
    pub kind: MemberKind,
    /// Clinics: the scope (inside the node's).
    #[arg(long)]
    pub scope: Option<String>,
    /// Relays: the certificate this node issued them (path as written into the file).
    #[arg(long)]
    pub cert: Option<String>,
    /// File holding the member's password (mode 0600); without it, read from standard input.
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// Also store the password as RabbitMQ keeps it (salted SHA-256, one round: use a random
    /// password of 16 characters or more), for a node whose broker is RabbitMQ.
    #[arg(long)]
    pub rabbitmq: bool,
}

fn parse_kind(text: &str) -> Result<MemberKind, String> {
    match text {
        "relay" => Ok(MemberKind::Relay),
        "clinic" => Ok(MemberKind::Clinic),
        "origin" => Ok(MemberKind::Origin),
        "admin" => Ok(MemberKind::Admin),
        other => Err(format!("{other:?}: expected relay, clinic, origin or admin")),
    }
}

/// Adds (or replaces) a member with its password hashed.
pub fn add(args: &AddArgs) -> Result<(), CliError> {
    kairan_protocol::advisory::check_id("--id", &args.id).map_err(CliError::Usage)?;
    match (args.kind, &args.scope, &args.cert) {
        (MemberKind::Clinic, None, _) => return Err(CliError::Usage("a clinic needs --scope".into())),
        (MemberKind::Relay, _, None) => {
            return Err(CliError::Usage("a relay needs --cert: the certificate this node issued it".into()));
        }
        _ => {}
    }
    let password = match &args.password_file {
        Some(path) => crate::secrets::read_private(path, "password file").map_err(CliError::Usage)?,
        None => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).map_err(|e| CliError::io(Path::new("-"), e))?;
            line
        }
    };
    let password = password.trim();
    if password.len() < 12 {
        return Err(CliError::Usage("the password must have at least 12 characters".into()));
    }
    let mut file = MembersFile::load_or_default(&args.members).map_err(CliError::Usage)?;
    file.members.retain(|row| row.id != args.id);
    file.members.push(MemberRow {
        id: args.id.clone(),
        kind: args.kind,
        password_hash: PasswordHash::new(password).to_string(),
        cert: args.cert.clone(),
        scope: args.scope.clone(),
        rabbitmq_password_hash: args.rabbitmq.then(|| RabbitPasswordHash::new(password).to_string()),
        password: None,
    });
    file.save(&args.members).map_err(CliError::Failed)?;
    println!("member {} ({:?}) in {}", args.id, args.kind, args.members.display());
    Ok(())
}

/// Arguments of `kairan broker mosquitto-config`.
#[derive(Debug, Args)]
pub struct MosquittoArgs {
    /// The node.toml of each node that uses this Mosquitto (`broker.external`, with
    /// `broker.members` and `broker.password_file`).
    #[arg(long = "config", required = true)]
    pub configs: Vec<PathBuf>,
    /// Where Mosquitto listens, HOST:PORT: with TLS, one per --config, in the same order (each
    /// node's listener presents that node's certificate).
    #[arg(long, default_value = "0.0.0.0:8883")]
    pub listen: Vec<String>,
    /// Directory to write kairan.passwd (0600), kairan.acl, mosquitto.conf and each node's
    /// ID.crt.pem and ID.key.pem (0600) into.
    #[arg(long)]
    pub out: PathBuf,
    /// Keep Mosquitto's database in this directory.
    #[arg(long)]
    pub persistence: Option<String>,
    /// One plaintext listener instead of TLS: passwords and advisories cross the network in clear.
    #[arg(long)]
    pub insecure_plaintext: bool,
}

/// `HOST:PORT` of `--listen`.
fn host_port(listen: &str) -> Result<(String, u16), CliError> {
    listen
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host.to_owned(), port.parse::<u16>().ok()?)))
        .ok_or_else(|| CliError::Usage(format!("--listen {listen:?}: expected HOST:PORT")))
}

/// The node configurations and the plaintext password of each node's own clients on the
/// external broker (`broker.password_file`).
fn load_external(paths: &[PathBuf], broker: &str) -> Result<Vec<(NodeConfig, String)>, CliError> {
    let mut nodes = Vec::new();
    for path in paths {
        let config = NodeConfig::load(path)?;
        match &config.broker {
            BrokerConfig::External { password: Some(password), .. } => {
                let password = password.clone();
                nodes.push((config, password));
            }
            _ => {
                return Err(CliError::Usage(format!(
                    "{}: set broker.external and broker.password_file (its own clients' password on {broker})",
                    path.display()
                )));
            }
        }
    }
    Ok(nodes)
}

/// Writes Mosquitto's files for the given nodes.
pub fn mosquitto(args: &MosquittoArgs) -> Result<(), CliError> {
    let loaded = load_external(&args.configs, "Mosquitto")?;
    let hashes: Vec<PasswordHash> = loaded.iter().map(|(_, password)| PasswordHash::new(password)).collect();
    let nodes: Vec<NodeOnBroker<'_>> = loaded
        .iter()
        .zip(&hashes)
        .map(|((config, _), hash)| NodeOnBroker {
            id: &config.id,
            national: matches!(config.upstream, UpstreamConfig::Ingest),
            members: &config.members,
            own_clients: hash,
        })
        .collect();
    std::fs::create_dir_all(&args.out).map_err(|e| CliError::io(&args.out, e))?;
    let mut listeners = Vec::new();
    if args.insecure_plaintext {
        let [listen] = args.listen.as_slice() else {
            return Err(CliError::Usage(
                "--listen: one plaintext listener serves every node; give one".into(),
            ));
        };
        let (host, port) = host_port(listen)?;
        listeners.push(MosquittoListener { host, port, tls: None });
    } else {
        if args.listen.len() != loaded.len() {
            return Err(CliError::Usage(format!(
                "--listen: {} given for {} --config: with TLS each node has a listener of its own (its certificate)",
                args.listen.len(),
                loaded.len()
            )));
        }
        for ((config, _), listen) in loaded.iter().zip(&args.listen) {
            let (host, port) = host_port(listen)?;
            let identity = crate::tls::broker_identity(&config.key, &config.cert, &config.chain)
                .map_err(|e| CliError::Usage(format!("{}: {e}", config.id)))?;
            let (cert, key) = super::tls::write_identity(&identity, &args.out)?;
            let files = TlsFiles { cert: cert.display().to_string(), key: key.display().to_string() };
            listeners.push(MosquittoListener { host, port, tls: Some(files) });
        }
    }
    let passwd = args.out.join("kairan.passwd");
    let acl = args.out.join("kairan.acl");
    let settings = BrokerSettings {
        listeners: &listeners,
        passwd_path: &passwd.display().to_string(),
        acl_path: &acl.display().to_string(),
        persistence: args.persistence.as_deref(),
    };
    let files = mosquitto_config::generate(&nodes, &settings).map_err(CliError::Usage)?;
    crate::secrets::write_private(&passwd, files.passwd.as_bytes()).map_err(|e| CliError::io(&passwd, e))?;
    std::fs::write(&acl, &files.acl).map_err(|e| CliError::io(&acl, e))?;
    let conf = args.out.join("mosquitto.conf");
    std::fs::write(&conf, &files.conf).map_err(|e| CliError::io(&conf, e))?;
    println!("wrote {}, {} and {}", passwd.display(), acl.display(), conf.display());
    Ok(())
}

/// Arguments of `kairan broker rabbitmq-config`.
#[derive(Debug, Args)]
pub struct RabbitArgs {
    /// The node.toml of each node that uses this RabbitMQ (`broker.external`, with
    /// `broker.members` and `broker.password_file`).
    #[arg(long = "config", required = true)]
    pub configs: Vec<PathBuf>,
    /// Where the MQTT listener listens, HOST:PORT.
    #[arg(long, default_value = "0.0.0.0:1883")]
    pub listen: String,
    /// Directory to write kairan-definitions.json (0600) and rabbitmq.conf into.
    #[arg(long)]
    pub out: PathBuf,
    /// Where RabbitMQ will read the definitions (default: in --out).
    #[arg(long)]
    pub definitions_path: Option<String>,
    /// QoS 1 subscriptions in quorum queues (a cluster: replicated across its nodes).
    #[arg(long)]
    pub quorum: bool,
}

/// Writes RabbitMQ's files for the given nodes.
pub fn rabbitmq(args: &RabbitArgs) -> Result<(), CliError> {
    let loaded = load_external(&args.configs, "RabbitMQ")?;
    let hashes: Vec<RabbitPasswordHash> =
        loaded.iter().map(|(_, password)| RabbitPasswordHash::new(password)).collect();
    let nodes: Vec<NodeOnRabbit<'_>> = loaded
        .iter()
        .zip(&hashes)
        .map(|((config, _), hash)| NodeOnRabbit {
            id: &config.id,
            national: matches!(config.upstream, UpstreamConfig::Ingest),
            members: &config.members,
            own_clients: hash,
        })
        .collect();
    let (host, port) = host_port(&args.listen)?;
    let definitions = args.out.join("kairan-definitions.json");
    let definitions_path = args.definitions_path.clone().unwrap_or_else(|| definitions.display().to_string());
    let settings = RabbitSettings {
        listen: (&host, port),
        definitions_path: &definitions_path,
        quorum_queues: args.quorum,
    };
    // Everything is checked before anything is written.
    let files = rabbitmq_config::generate(&nodes, &settings).map_err(CliError::Usage)?;
    std::fs::create_dir_all(&args.out).map_err(|e| CliError::io(&args.out, e))?;
    crate::secrets::write_private(&definitions, files.definitions.as_bytes())
        .map_err(|e| CliError::io(&definitions, e))?;
    let conf = args.out.join("rabbitmq.conf");
    std::fs::write(&conf, &files.conf).map_err(|e| CliError::io(&conf, e))?;
    println!("wrote {} and {}", definitions.display(), conf.display());
    Ok(())
}
