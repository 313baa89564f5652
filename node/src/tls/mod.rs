//! TLS 1.3 on every MQTT link, with the parent's identity bound to its kairan relay key
//! (`docs/design.md`, "Transport security").
//!
//! - A relay's broker presents an X.509 certificate for the relay's own Ed25519 key that
//!   carries the relay's kairan certificates ([`identity`]); the embedded broker makes it at
//!   every start, `kairan tls cert` writes it for Mosquitto and RabbitMQ.
//! - A child accepts the broker only if that key is certified, in its own trust chain, as the
//!   relay it is configured for — valid, unrevoked — and the handshake proves the broker holds
//!   it ([`verify`]). No other PKI, no host names.
//! - rumqttc is built without TLS (its TLS features pull a vulnerable rustls-webpki), so every
//!   client connection goes through a [`tunnel`]: rumqttc speaks plain MQTT to a Unix socket in
//!   a private directory, and each connection there is carried to the broker over TLS 1.3.
//!
//! ## Layout
//! - [`identity`]: the broker's certificate and key (PEM), and reading a presented certificate.
//! - [`verify`]: [`PeerCheck`], [`TrustView`] and the rustls verifier.
//! - [`tunnel`]: [`Tunnel`], the client side.

use std::sync::Arc;

use rustls::ClientConfig;
use rustls::crypto::CryptoProvider;

pub mod identity;
pub mod tunnel;
pub mod verify;

pub use identity::{BrokerIdentity, broker_identity};
pub use tunnel::Tunnel;
pub use verify::{PeerCheck, TrustView};

/// Why a TLS connection or a TLS identity was refused. Every message names the broker and
/// exactly what was wrong.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// Nothing listens there, or the network failed.
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        /// The broker.
        url: String,
        /// What the OS said.
        reason: String,
    },
    /// The other end did not answer with TLS (a plaintext listener closes or answers MQTT).
    #[error("no TLS at {url}: {detail} (is it a plaintext mqtt:// listener?)")]
    NoTls {
        /// The broker.
        url: String,
        /// What happened instead of a handshake.
        detail: String,
    },
    /// The handshake did not finish in time.
    #[error("no TLS at {url}: the handshake did not finish within {secs} s")]
    Timeout {
        /// The broker.
        url: String,
        /// The limit.
        secs: u64,
    },
    /// The presented certificate is not X.509 we can read.
    #[error("{url} presents a TLS certificate that cannot be read: {reason}")]
    BadCertificate {
        /// The broker.
        url: String,
        /// Why.
        reason: String,
    },
    /// The presented key is not Ed25519: not a kairan relay key.
    #[error(
        "{url} presents a TLS certificate for a key of algorithm {algorithm}, not a kairan relay's Ed25519 key"
    )]
    NotEd25519 {
        /// The broker.
        url: String,
        /// The key algorithm's OID.
        algorithm: String,
    },
    /// The certificate carries no kairan certificates.
    #[error(
        "{url} presents key {keyid} in a TLS certificate without kairan certificates (not written by `kairan tls cert`)"
    )]
    NoKairanCerts {
        /// The broker.
        url: String,
        /// The presented key.
        keyid: String,
    },
    /// The carried kairan certificates do not verify (expired, unknown signer, …).
    #[error("{url} does not prove it is relay {expected}: its kairan certificates do not verify: {source}")]
    Certificates {
        /// The broker.
        url: String,
        /// The relay it should be.
        expected: String,
        /// What verification said.
        source: Box<kairan_protocol::Error>,
    },
    /// No carried certificate certifies the presented key as a relay.
    #[error("{url} presents key {keyid}, which none of its kairan certificates certifies as a relay")]
    NotCertified {
        /// The broker.
        url: String,
        /// The presented key.
        keyid: String,
    },
    /// The key is another relay's.
    #[error(
        "{url} presents the key of relay {found} (keyid {keyid}), not of the configured parent {expected}"
    )]
    WrongRelay {
        /// The broker.
        url: String,
        /// Whose key it is.
        found: String,
        /// Whose it should be.
        expected: String,
        /// The presented key.
        keyid: String,
    },
    /// The parent's certificate for the key is revoked.
    #[error("{url} presents a revoked relay key: {source}")]
    Revoked {
        /// The broker.
        url: String,
        /// The revocation.
        source: Box<kairan_protocol::Error>,
    },
    /// A node's own broker presents a key that is not the node's.
    #[error("{url} presents key {keyid}, not {node}'s own key ({pinned})")]
    NotOwnKey {
        /// The broker.
        url: String,
        /// The presented key.
        keyid: String,
        /// The node.
        node: String,
        /// The keys accepted.
        pinned: String,
    },
    /// Any other handshake failure.
    #[error("TLS handshake with {url} failed: {reason}")]
    Handshake {
        /// The broker.
        url: String,
        /// What rustls said.
        reason: String,
    },
    /// The local side (tunnel socket, configuration) failed.
    #[error("TLS: {0}")]
    Local(String),
    /// A TLS identity cannot be made from the key and certificates given.
    #[error("TLS certificate: {0}")]
    Identity(String),
}

/// The crypto provider of every TLS connection: aws-lc-rs, the one rmqtt's TLS listener uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A TLS 1.3-only client configuration that accepts exactly what `check` accepts at `url`.
pub fn client_config(url: &str, check: PeerCheck) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let verifier = verify::KairanVerifier { url: url.to_owned(), check, provider: provider.clone() };
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Local(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A TLS 1.3-only server configuration presenting `identity` (tests' brokers; the embedded
/// broker is configured through rmqtt's listener from the same PEM files).
pub fn server_config(identity: &BrokerIdentity) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes())
        .map_err(|e| TlsError::Identity(e.to_string()))?;
    let cert = rustls::pki_types::CertificateDer::from(identity.cert_der.clone());
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Local(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .map_err(|e| TlsError::Identity(e.to_string()))?;
    Ok(Arc::new(config))
}
