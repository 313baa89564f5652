//! A relay broker's TLS identity: an X.509 certificate for the relay's own Ed25519 kairan key,
//! self-signed with that key, carrying the relay's kairan certificates (its own and the ones
//! above it, up to the root-issued national one) in a private, non-critical extension — and
//! the reading of such a certificate on the other side.
//!
//! The X.509 wrapper certifies nothing by itself: a child believes the key only because the
//! kairan certificates inside chain to its trust anchors and name the key as its configured
//! parent ([`super::verify`]), and the TLS handshake proves the broker holds the key. The
//! certificates travel inside the handshake so that a child needs no file beyond its anchors,
//! and so that a relay rotating its key is recognised by children that never saw the new
//! certificate.
//!
//! The files are PEM: the certificate (`CERTIFICATE`) and the key as unencrypted PKCS#8
//! (`PRIVATE KEY`, RFC 8410) — what Mosquitto's `certfile`/`keyfile`, RabbitMQ's
//! `ssl_options.certfile`/`keyfile` and rmqtt's TLS listener load.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rcgen::{
    CertificateParams, CustomExtension, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyUsagePurpose, PublicKeyData, SerialNumber, SignatureAlgorithm, SigningKey,
};
use x509_parser::prelude::{FromDer, X509Certificate};

use kairan_protocol::limits::MAX_CERTS;
use kairan_protocol::{Certificate, Digest, Envelope, PublicKey, SecretKey, Timestamp};

use super::TlsError;

/// The extension that carries the kairan certificates: `2.25.2512605605985017033`. An OID
/// under `2.25` is normally a UUID read as an integer; every RFC 9562 UUID with a version
/// (1–8) is at least 2^76, so an arc below 2^64 — the most rcgen writes — can collide with none.
pub const KAIRAN_CERTS_OID: &[u64] = &[2, 25, 2_512_605_605_985_017_033];

/// `id-Ed25519` (RFC 8410).
const ED25519_OID: &str = "1.3.101.112";

/// The extension's content, at most (16 certificates of at most 64 KiB each is far more than a
/// chain holds; the bound keeps a hostile broker from making the child parse megabytes).
const MAX_EXTENSION_BYTES: usize = 256 * 1024;

/// A broker's TLS identity, ready for a TLS server.
#[derive(Clone)]
pub struct BrokerIdentity {
    /// The relay id it is for.
    pub relay: String,
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PKCS#8 PEM. Secret.
    pub key_pem: String,
}

impl std::fmt::Debug for BrokerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerIdentity").field("relay", &self.relay).finish_non_exhaustive()
    }
}

/// What a broker presented: its key and the kairan certificates it carries (unverified).
#[derive(Debug, Clone)]
pub struct Presented {
    /// The key the handshake was signed with.
    pub key: PublicKey,
    /// The kairan certificates from the extension, as carried.
    pub certs: Vec<Envelope>,
}

/// rcgen signs through this: the relay's own key.
struct RelaySigner<'k>(&'k SecretKey);

impl PublicKeyData for RelaySigner<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.0.public().as_bytes()
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &rcgen::PKCS_ED25519
    }
}

impl SigningKey for RelaySigner<'_> {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        Ok(self.0.sign(message).to_vec())
    }
}

fn offset_time(at: Timestamp) -> Result<time::OffsetDateTime, TlsError> {
    let nanos = i128::from(at.unix_ms()) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .map_err(|e| TlsError::Identity(format!("time {at}: {e}")))
}

/// The TLS identity of relay key `key` certified by `cert`, carrying `cert` and `chain` (the
/// certificates above it). Valid as long as `cert` is.
pub fn broker_identity(
    key: &SecretKey,
    cert: &Envelope,
    chain: &[Envelope],
) -> Result<BrokerIdentity, TlsError> {
    let info = Certificate::decode(&cert.payload).map_err(|e| TlsError::Identity(e.to_string()))?;
    if info.key != *key.public() {
        return Err(TlsError::Identity(format!(
            "the certificate is for key {}, not for the key given ({})",
            info.key.keyid().short(),
            key.keyid().short()
        )));
    }
    let mut carried = Vec::with_capacity(chain.len() + 1);
    carried.push(cert.clone());
    carried.extend(chain.iter().filter(|above| *above != cert).cloned());
    if carried.len() > MAX_CERTS {
        return Err(TlsError::Identity(format!("{} certificates; at most {MAX_CERTS}", carried.len())));
    }
    let json = serde_json::to_string(&carried).map_err(|e| TlsError::Identity(e.to_string()))?;
    let content = der_utf8_string(&json);
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, info.subject.clone());
    name.push(DnType::OrganizationName, "kairan relay");
    params.distinguished_name = name;
    params.not_before = offset_time(info.not_before)?;
    params.not_after = offset_time(info.not_after)?;
    // The certificate digest, positive: one serial per kairan certificate.
    let mut serial = Digest::of(&cert.payload).as_bytes()[..16].to_vec();
    serial[0] &= 0x7f;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages =
        vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params.custom_extensions = vec![CustomExtension::from_oid_content(KAIRAN_CERTS_OID, content)];
    let signed = params
        .self_signed(&RelaySigner(key))
        .map_err(|e| TlsError::Identity(format!("cannot write the X.509 certificate: {e}")))?;
    Ok(BrokerIdentity {
        relay: info.subject,
        cert_der: signed.der().to_vec(),
        cert_pem: signed.pem(),
        key_pem: private_key_pem(key),
    })
}

/// DER of a UTF8String holding `text` (the extension's value is DER, as X.509 wants).
fn der_utf8_string(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut der = vec![0x0c];
    let length = bytes.len();
    if length < 0x80 {
        der.push(length as u8);
    } else {
        let significant: Vec<u8> = length.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        der.push(0x80 | significant.len() as u8);
        der.extend(significant);
    }
    der.extend_from_slice(bytes);
    der
}

/// The key as unencrypted PKCS#8 v1 (RFC 8410 §7: `PrivateKeyInfo` with the 32-byte seed).
pub fn private_key_pem(key: &SecretKey) -> String {
    // SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING seed } }
    const PREFIX: [u8; 16] =
        [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
    let mut der = PREFIX.to_vec();
    der.extend(hex::decode(key.to_hex()).unwrap_or_default());
    pem("PRIVATE KEY", &der)
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut text = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        text.push_str(&String::from_utf8_lossy(line));
        text.push('\n');
    }
    text.push_str(&format!("-----END {label}-----\n"));
    text
}

/// Reads what a broker presented: an X.509 certificate for an Ed25519 key carrying kairan
/// certificates. Nothing in it is trusted yet.
pub fn presented(der: &[u8], url: &str) -> Result<Presented, TlsError> {
    let unreadable = |reason: String| TlsError::BadCertificate { url: url.to_owned(), reason };
    let (_, x509) = X509Certificate::from_der(der).map_err(|e| unreadable(e.to_string()))?;
    let spki = x509.public_key();
    let algorithm = spki.algorithm.algorithm.to_id_string();
    if algorithm != ED25519_OID {
        return Err(TlsError::NotEd25519 { url: url.to_owned(), algorithm });
    }
    let raw: [u8; 32] = spki
        .subject_public_key
        .data
        .as_ref()
        .try_into()
        .map_err(|_| unreadable("an Ed25519 key that is not 32 bytes".into()))?;
    let key = PublicKey::from_bytes(&raw).map_err(|e| unreadable(e.to_string()))?;
    let wanted: Vec<u64> = KAIRAN_CERTS_OID.to_vec();
    let extension = x509
        .extensions()
        .iter()
        .find(|ext| ext.oid.iter().is_some_and(|arcs| arcs.eq(wanted.iter().copied())))
        .ok_or_else(|| TlsError::NoKairanCerts { url: url.to_owned(), keyid: key.keyid().to_string() })?;
    if extension.value.len() > MAX_EXTENSION_BYTES {
        return Err(unreadable(format!("kairan extension of {} bytes", extension.value.len())));
    }
    let (_, text) = x509_parser::asn1_rs::Utf8String::from_der(extension.value)
        .map_err(|e| unreadable(format!("kairan extension: {e}")))?;
    let certs: Vec<Envelope> =
        serde_json::from_str(&text.string()).map_err(|e| unreadable(format!("kairan extension: {e}")))?;
    if certs.len() > MAX_CERTS {
        return Err(unreadable(format!("{} kairan certificates; at most {MAX_CERTS}", certs.len())));
    }
    Ok(Presented { key, certs })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kairan_protocol::fixtures::Hierarchy;

    #[test]
    fn a_written_identity_reads_back_with_its_key_and_certificates() {
        let tree = Hierarchy::standard();
        let relay = &tree.relays[1];
        let chain = vec![tree.relays[0].cert.clone()];
        let identity = broker_identity(&relay.key, &relay.cert, &chain).expect("identity");
        let read = presented(&identity.cert_der, "mqtts://x").expect("reads");
        assert_eq!(read.key, *relay.key.public());
        assert_eq!(read.certs, vec![relay.cert.clone(), tree.relays[0].cert.clone()]);
        assert!(identity.cert_pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(identity.key_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(!format!("{identity:?}").contains("PRIVATE"), "Debug never shows the key");
    }

    #[test]
    fn an_identity_for_another_key_is_refused() {
        let tree = Hierarchy::standard();
        let error = broker_identity(&tree.relays[0].key, &tree.relays[1].cert, &[]).expect_err("refused");
        assert!(error.to_string().contains("not for the key given"), "{error}");
    }

    #[test]
    fn long_utf8_strings_have_long_form_lengths() {
        assert_eq!(der_utf8_string("ab"), vec![0x0c, 2, b'a', b'b']);
        let long = "x".repeat(300);
        assert_eq!(&der_utf8_string(&long)[..4], &[0x0c, 0x82, 0x01, 0x2c]);
    }
}
