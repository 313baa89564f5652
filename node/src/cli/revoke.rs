//! `kairan revoke` and `kairan trust push`: revocations into the control stream.

use std::path::PathBuf;

use clap::Args;

use kairan_protocol::cert::ROOT_ISSUER;
use kairan_protocol::{Certificate, Revocation, Timestamp, TrustBundle};

use crate::clock;
use crate::error::CliError;
use crate::keyfile;
use crate::mqtt::Credentials;

/// Arguments of `kairan revoke`.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The certificate to revoke (revoke each certificate of a key to revoke the key).
    #[arg(long)]
    pub cert: PathBuf,
    /// Revoking key(s): a threshold of root keys, or one relay key above the certificate.
    #[arg(long = "issuer-key", required = true)]
    pub issuer_keys: Vec<PathBuf>,
    /// The revoking relay's certificate (absent for a root revocation).
    #[arg(long)]
    pub issuer_cert: Option<PathBuf>,
    /// Further certificates the revocation needs (repeatable): those linking the revoked
    /// certificate to the revoking relay, and the revoking relay's chain up to the root.
    #[arg(long = "chain")]
    pub chain: Vec<PathBuf>,
    /// From when the key's signatures are refused (RFC 3339); default now.
    #[arg(long, value_parser = super::keys::parse_time)]
    pub effective_at: Option<Timestamp>,
    /// Why (for people).
    #[arg(long)]
    pub reason: String,
    /// The issuer's control-stream sequence number.
    #[arg(long, default_value_t = 1)]
    pub seq: u64,
    /// Write a trust bundle (revocation plus the certificates it needs) here; stdout if absent.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Arguments of `kairan trust push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The national node's broker, mqtts://host:port (TLS 1.3: it must prove it is relay NODE).
    #[arg(long)]
    pub to: String,
    /// The national node's id (its control topic is kairan/v1/NODE/control).
    #[arg(long, default_value = "jp")]
    pub node: String,
    /// The trust anchors: the broker's key must be certified as relay NODE by them (mqtts://).
    #[arg(long)]
    pub trust: Option<PathBuf>,
    /// Accept a plaintext mqtt:// broker off this machine: the password crosses the network in
    /// clear.
    #[arg(long)]
    pub insecure_plaintext: bool,
    /// Username on the broker.
    #[arg(long)]
    pub username: String,
    /// File holding the password.
    #[arg(long)]
    pub password_file: PathBuf,
    /// The trust bundle (JSON), e.g. from `kairan revoke`.
    pub bundle: PathBuf,
}

pub(super) fn revoke(args: &RevokeArgs) -> Result<(), CliError> {
    let revoked_envelope = keyfile::load_envelope(&args.cert)?;
    let revoked = Certificate::decode(&revoked_envelope.payload)
        .map_err(|e| CliError::Usage(format!("--cert: {e}")))?;
    let keys = args.issuer_keys.iter().map(|p| keyfile::load_secret(p)).collect::<Result<Vec<_>, _>>()?;
    let mut certs = vec![revoked_envelope.clone()];
    let issuer = match &args.issuer_cert {
        None => ROOT_ISSUER.to_owned(),
        Some(path) => {
            let envelope = keyfile::load_envelope(path)?;
            let issuer = Certificate::decode(&envelope.payload)
                .map_err(|e| CliError::Usage(format!("--issuer-cert: {e}")))?;
            certs.push(envelope);
            issuer.subject
        }
    };
    for path in &args.chain {
        certs.push(keyfile::load_envelope(path)?);
    }
    let now = clock::now();
    let effective_at = args.effective_at.unwrap_or(now);
    let revocation =
        Revocation::of_cert(&revoked_envelope, &issuer, args.seq, now, effective_at, &args.reason)
            .map_err(|e| CliError::Usage(format!("--cert: {e}")))?;
    let signers: Vec<_> = keys.iter().collect();
    let bundle = TrustBundle { certs, revocations: vec![revocation.sign(&signers)], rotations: Vec::new() }
        .canonical();
    let mut json = bundle.to_json();
    json.push(b'\n');
    match &args.out {
        Some(path) => {
            std::fs::write(path, &json).map_err(|e| CliError::io(path, e))?;
            eprintln!(
                "revocation of {} (certificate {}, key {}) written to {}",
                revoked.subject,
                kairan_protocol::Digest::of(&revoked_envelope.payload).short(),
                revoked.key.keyid().short(),
                path.display()
            );
        }
        None => print!("{}", String::from_utf8_lossy(&json)),
    }
    Ok(())
}

pub(super) fn push(args: &PushArgs) -> Result<(), CliError> {
    let bytes = std::fs::read(&args.bundle).map_err(|e| CliError::io(&args.bundle, e))?;
    TrustBundle::from_json(&bytes).map_err(|e| CliError::Usage(format!("{}: {e}", args.bundle.display())))?;
    let (addr, peer) =
        super::tls::target(&args.to, &args.node, args.trust.as_deref(), args.insecure_plaintext)?;
    let password =
        std::fs::read_to_string(&args.password_file).map_err(|e| CliError::io(&args.password_file, e))?;
    let credentials = Credentials { username: args.username.clone(), password: password.trim().to_owned() };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Failed(e.to_string()))?;
    runtime.block_on(crate::publish::publish_acked(
        &addr,
        peer.as_ref(),
        Some(&credentials),
        &crate::topics::control(&args.node),
        bytes,
        std::time::Duration::from_secs(30),
    ))?;
    println!(
        "trust bundle pushed to {} ({}); acknowledged by the broker",
        addr.url(),
        crate::topics::control(&args.node)
    );
    Ok(())
}
