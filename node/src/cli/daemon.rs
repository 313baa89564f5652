//! `kairan node`, `kairan clinic`, `kairan publish`, `kairan inbox`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config::{self, ClinicConfig, NodeConfig};
use crate::error::CliError;
use crate::keyfile;
use crate::mqtt::Credentials;
use crate::publish::{self, PublishRequest};

/// Arguments of `kairan node`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct NodeArgs {
    /// The node configuration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Log format: human or json (overrides log.format).
    #[arg(long)]
    pub log_format: Option<String>,
    /// Other actions.
    #[command(subcommand)]
    pub action: Option<ConfigAction>,
}

/// Actions besides running.
#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Print a commented default configuration.
    GenerateConfig,
}

/// Arguments of `kairan clinic`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ClinicArgs {
    /// The clinic configuration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Log format: human or json.
    #[arg(long)]
    pub log_format: Option<String>,
    /// Other actions.
    #[command(subcommand)]
    pub action: Option<ConfigAction>,
}

/// Arguments of `kairan publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The origin's secret key.
    #[arg(long)]
    pub key: PathBuf,
    /// The origin's certificate (root-issued, role origin).
    #[arg(long)]
    pub cert: PathBuf,
    /// The national node's broker, mqtts://host:port (TLS 1.3: it must prove it is relay NODE).
    #[arg(long)]
    pub to: String,
    /// The national node's id (its ingest topic is kairan/v1/NODE/ingest).
    #[arg(long, default_value = "jp")]
    pub node: String,
    /// Accept a plaintext mqtt:// broker off this machine: the password and the advisory cross
    /// the network in clear.
    #[arg(long)]
    pub insecure_plaintext: bool,
    /// Username on the broker (default: the origin id).
    #[arg(long)]
    pub username: Option<String>,
    /// File holding the password on the broker (or set KAIRAN_PUBLISH_PASSWORD).
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// Chain state file (default: KEY with extension .state.json).
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// The trust anchors file: the national node's signed acceptance must chain to it, and
    /// with mqtts:// the broker's key must be certified as relay NODE by them.
    #[arg(long)]
    pub trust: PathBuf,
    /// Seconds to keep publishing until the national node confirms it stored the advisory
    /// (then exit 75; running again publishes the same bytes first).
    #[arg(long, default_value_t = 60)]
    pub wait: u64,
    /// Only publish a fresh signed head of the chain state (a heartbeat; run it from a timer
    /// more often than every 24 hours so children can tell a quiet feed from a frozen one).
    #[arg(long)]
    pub head: bool,
    /// Seal the advisory (TLP:RED or TLP:AMBER+STRICT) to this clinic (repeatable): its
    /// recipient key comes from the verified recipient directories on the national broker.
    #[arg(long = "seal-to", value_name = "CLINIC_ID")]
    pub seal_to: Vec<String>,
    /// Seal the advisory (TLP:AMBER+STRICT) to every clinic of this scope's directory
    /// (repeatable), at most 64 clinics in all.
    #[arg(long = "seal-to-scope", value_name = "SCOPE")]
    pub seal_to_scope: Vec<kairan_protocol::Scope>,
    /// Authoring file (TOML) to sign, or an already signed envelope (JSON); `-` for stdin.
    #[arg(required_unless_present = "head")]
    pub file: Option<PathBuf>,
}

/// Arguments of `kairan inbox`.
#[derive(Debug, Args)]
pub struct InboxArgs {
    /// The clinic configuration file (for the inbox directory and the trust anchors).
    #[arg(long)]
    pub config: PathBuf,
    /// List or show.
    #[command(subcommand)]
    pub action: InboxAction,
}

/// `kairan inbox list|show`.
#[derive(Debug, Subcommand)]
pub enum InboxAction {
    /// One line per advisory, oldest first, with its state (current, superseded, cancelled).
    List {
        /// Print as JSON (the same as the web inbox's /api/inbox).
        #[arg(long)]
        json: bool,
    },
    /// One advisory in full, with its state, history and verified provenance.
    Show {
        /// Its digest (`sha256:…`, or a unique prefix of the hex).
        digest: String,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Failed(format!("cannot start the async runtime: {e}")))
}

/// A token cancelled on SIGINT or SIGTERM.
pub(crate) fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) =
                (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
            else {
                return;
            };
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                _ = int.recv() => tracing::info!("SIGINT: shutting down"),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        cancel.cancel();
    });
    token
}

pub(super) fn node(args: &NodeArgs) -> Result<(), CliError> {
    if let Some(ConfigAction::GenerateConfig) = args.action {
        print!("{}", config::NODE_TEMPLATE);
        return Ok(());
    }
    let path = args.config.as_ref().ok_or_else(|| {
        CliError::Usage("kairan node needs --config FILE (or: kairan node generate-config)".into())
    })?;
    let config = NodeConfig::load(path)?;
    crate::logging::init(
        args.log_format.as_deref().or(config.log.format.as_deref()),
        config.log.level.as_deref(),
    );
    runtime()?.block_on(async {
        let shutdown = shutdown_on_signals();
        crate::relay::run(config, shutdown).await.map_err(CliError::from)
    })
}

pub(super) fn clinic(args: &ClinicArgs) -> Result<(), CliError> {
    if let Some(ConfigAction::GenerateConfig) = args.action {
        print!("{}", config::CLINIC_TEMPLATE);
        return Ok(());
    }
    let path = args.config.as_ref().ok_or_else(|| {
        CliError::Usage("kairan clinic needs --config FILE (or: kairan clinic generate-config)".into())
    })?;
    let config = ClinicConfig::load(path)?;
    crate::logging::init(
        args.log_format.as_deref().or(config.log.format.as_deref()),
        config.log.level.as_deref(),
    );
    runtime()?.block_on(async {
        let shutdown = shutdown_on_signals();
        crate::clinic::run(config, shutdown).await.map_err(CliError::from)
    })
}

pub(super) fn publish(args: &PublishArgs) -> Result<(), CliError> {
    let key = keyfile::load_secret(&args.key)?;
    let cert = keyfile::load_envelope(&args.cert)?;
    let (addr, peer) = super::tls::target(&args.to, &args.node, Some(&args.trust), args.insecure_plaintext)?;
    let password = match &args.password_file {
        Some(path) => {
            Some(std::fs::read_to_string(path).map_err(|e| CliError::io(path, e))?.trim().to_owned())
        }
        None => std::env::var("KAIRAN_PUBLISH_PASSWORD").ok(),
    };
    let origin = kairan_protocol::Certificate::decode(&cert.payload)
        .map_err(|e| CliError::Usage(format!("--cert: {e}")))?
        .subject;
    let credentials = password.map(|password| Credentials {
        username: args.username.clone().unwrap_or_else(|| origin.clone()),
        password,
    });
    let state_path = args.state.clone().unwrap_or_else(|| args.key.with_extension("state.json"));
    let anchors = keyfile::load_trust(&args.trust)?;
    let wait = std::time::Duration::from_secs(args.wait);
    let request = PublishRequest {
        key,
        cert,
        addr,
        node: args.node.clone(),
        credentials,
        peer,
        state_path,
        anchors,
        wait,
        seal: (!args.seal_to.is_empty() || !args.seal_to_scope.is_empty()).then(|| crate::sealing::SealTo {
            ids: args.seal_to.clone(),
            scopes: args.seal_to_scope.clone(),
        }),
    };
    let Some(file) = &args.file else {
        if request.seal.is_some() {
            return Err(CliError::Usage(
                "--seal-to/--seal-to-scope seal an advisory; --head publishes none".into(),
            ));
        }
        let state = publish::read_state(&request.state_path)?;
        let chains = runtime()?.block_on(publish::publish_heads(&request, &state))?;
        for (scope, chain) in chains {
            println!(
                "head of {origin} for {scope} at seq {} published to {}; acknowledged by the broker",
                chain.seq,
                request.addr.url()
            );
        }
        return Ok(());
    };
    let input = super::read_input(file)?;
    let published = runtime()?.block_on(publish::publish(&request, &input))?;
    if !published.sealed_to.is_empty() {
        println!(
            "sealed to {} clinic(s): {} (keys from the verified recipient directories on {})",
            published.sealed_to.len(),
            published.sealed_to.join(", "),
            request.addr.url()
        );
    }
    println!(
        "published {} (origin {origin} seq {}) to {}; stored by {} (signed acceptance verified, {} publish(es))",
        published.digest,
        published.seq,
        request.addr.url(),
        request.node,
        published.attempts
    );
    Ok(())
}

pub(super) fn inbox(args: &InboxArgs) -> Result<(), CliError> {
    let config = ClinicConfig::load(&args.config)?;
    match &args.action {
        InboxAction::List { json } => crate::inbox::command::list(&config, *json),
        InboxAction::Show { digest, json } => crate::inbox::command::show(&config, digest, *json),
    }
}
