//! `kairan tls cert` (a relay broker's TLS certificate and key, for Mosquitto, RabbitMQ or any
//! broker that loads PEM files), and what the one-shot clients (`kairan publish`,
//! `kairan trust push`) check about the broker they reach.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::config::NodeConfig;
use crate::error::CliError;
use crate::keyfile;
use crate::mqtt::BrokerAddr;
use crate::tls::{BrokerIdentity, PeerCheck, TrustView, broker_identity};

/// Arguments of `kairan tls cert`.
#[derive(Debug, Args)]
pub struct CertArgs {
    /// The relay's node.toml (its node.key, node.cert and node.chain are used).
    #[arg(long, conflicts_with_all = ["key", "cert"])]
    pub config: Option<PathBuf>,
    /// The relay's secret key (instead of --config).
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,
    /// The relay's certificate (instead of --config).
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,
    /// The certificates above it, up to the root-issued national one (with --key/--cert).
    #[arg(long)]
    pub chain: Vec<PathBuf>,
    /// Directory to write ID.crt.pem and ID.key.pem (mode 0600) into.
    #[arg(long)]
    pub out: PathBuf,
}

/// The identity for a node.toml, or for explicit key and certificate files.
pub(super) fn identity_of(args: &CertArgs) -> Result<BrokerIdentity, CliError> {
    let identity = match (&args.config, &args.key, &args.cert) {
        (Some(path), _, _) => {
            let config = NodeConfig::load(path)?;
            broker_identity(&config.key, &config.cert, &config.chain)
        }
        (None, Some(key), Some(cert)) => {
            let key = keyfile::load_secret(key)?;
            let envelope = keyfile::load_envelope(cert)?;
            let chain =
                args.chain.iter().map(|p| keyfile::load_envelope(p)).collect::<Result<Vec<_>, _>>()?;
            broker_identity(&key, &envelope, &chain)
        }
        _ => return Err(CliError::Usage("give --config NODE_TOML, or --key and --cert".into())),
    };
    identity.map_err(|e| CliError::Usage(e.to_string()))
}

/// Writes `identity` as `DIR/ID.crt.pem` and `DIR/ID.key.pem` (0600); returns both paths.
pub(super) fn write_identity(identity: &BrokerIdentity, dir: &Path) -> Result<(PathBuf, PathBuf), CliError> {
    std::fs::create_dir_all(dir).map_err(|e| CliError::io(dir, e))?;
    let cert = dir.join(format!("{}.crt.pem", identity.relay));
    let key = dir.join(format!("{}.key.pem", identity.relay));
    std::fs::write(&cert, &identity.cert_pem).map_err(|e| CliError::io(&cert, e))?;
    crate::secrets::write_private(&key, identity.key_pem.as_bytes()).map_err(|e| CliError::io(&key, e))?;
    Ok((cert, key))
}

/// `kairan tls cert`.
pub fn cert(args: &CertArgs) -> Result<(), CliError> {
    let identity = identity_of(args)?;
    if let Some(path) = &args.config {
        let anchors = NodeConfig::load(path)?.anchors;
        match crate::tls::verify::self_check(&identity, &anchors) {
            Ok(None) => {}
            Ok(Some(why)) => eprintln!("warning: children will refuse this certificate now: {why}"),
            Err(error) => {
                return Err(CliError::Config(format!(
                    "node.chain: children could not accept this certificate: {error} (list the certificates above the relay, up to the root-issued national one)"
                )));
            }
        }
    }
    let (cert, key) = write_identity(&identity, &args.out)?;
    println!(
        "wrote {} and {} (mode 0600): the TLS certificate of relay {}'s key, carrying its kairan certificates",
        cert.display(),
        key.display(),
        identity.relay
    );
    println!(
        "Mosquitto:  certfile {}\n            keyfile {}\n            tls_version tlsv1.3",
        cert.display(),
        key.display()
    );
    println!(
        "RabbitMQ:   ssl_options.certfile = {}\n            ssl_options.keyfile = {}\n            ssl_options.versions.1 = tlsv1.3",
        cert.display(),
        key.display()
    );
    Ok(())
}

/// The broker `--to` names and whom it must be: the relay `node`, its key chained to the
/// anchors of `--trust` (required for `mqtts://`). A plaintext `--to` off this machine needs
/// `--insecure-plaintext`.
pub(super) fn target(
    to: &str,
    node: &str,
    trust: Option<&Path>,
    insecure_plaintext: bool,
) -> Result<(BrokerAddr, Option<PeerCheck>), CliError> {
    let addr = BrokerAddr::parse(to).map_err(|e| CliError::Usage(format!("--to: {e}")))?;
    addr.check_transport("--to", insecure_plaintext).map_err(|e| CliError::Usage(format!("--to: {e}")))?;
    if !addr.tls {
        if !addr.is_loopback() {
            tracing::warn!(broker = %addr.url(), "INSECURE: plaintext MQTT over the network (--insecure-plaintext)");
        }
        return Ok((addr, None));
    }
    let trust = trust.ok_or_else(|| {
        CliError::Usage(format!(
            "--trust: needed with {} (the broker must prove it is relay {node} with a key chained to these anchors)",
            addr.url()
        ))
    })?;
    let anchors = keyfile::load_trust(trust).map_err(|e| CliError::Usage(format!("--trust: {e}")))?;
    let peer = PeerCheck::Relay { expected: node.to_owned(), trust: TrustView::new(anchors) };
    Ok((addr, Some(peer)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_off_this_machine_and_tls_without_anchors_are_refused() {
        let error = target("mqtt://relay.jp.example:1883", "jp", None, false).expect_err("refused");
        assert!(error.to_string().contains("--to: mqtt://relay.jp.example:1883 is plaintext"), "{error}");
        assert!(error.to_string().contains("--insecure-plaintext"), "{error}");
        assert!(target("mqtt://relay.jp.example:1883", "jp", None, true).is_ok());
        assert!(target("mqtt://127.0.0.1:1883", "jp", None, false).is_ok());
        let error = target("mqtts://relay.jp.example", "jp", None, false).expect_err("no anchors");
        assert!(
            error.to_string().starts_with("--trust: needed with mqtts://relay.jp.example:8883"),
            "{error}"
        );
    }
}
