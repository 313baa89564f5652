//! Who a node accepts at the other end of a TLS connection, and the rustls verifier that asks.
//!
//! A child accepts its parent's broker only if the key the handshake was signed with is
//! certified — by kairan certificates that chain to the child's trust anchors, valid and
//! unrevoked now, with the revocations the child holds — as the relay the child is configured
//! for ([`PeerCheck::Relay`]). Any relay key so certified is accepted, so a relay rotating its
//! key keeps its children: the old key until its certificate expires or is revoked, the new
//! one from its first handshake. A node's own clients accept only the node's own keys on its
//! own broker ([`PeerCheck::Own`]). X.509 names, dates and issuers are not consulted: the
//! kairan certificates are the trust; the X.509 wrapper only carries them.

use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::sync::watch;

use kairan_protocol::{CertSet, PublicKey, RevocationSet, Role, Timestamp, TrustAnchors};

use super::TlsError;
use super::identity::{BrokerIdentity, Presented, presented};

/// The trust a node holds now — anchors (rotations applied) and revocations — shared with its
/// TLS verifiers. The driver updates it whenever the node's trust bundle changes; open
/// connections are checked again then ([`TrustView::changed`]).
#[derive(Debug, Clone)]
pub struct TrustView {
    inner: Arc<RwLock<(TrustAnchors, RevocationSet)>>,
    version: Arc<watch::Sender<u64>>,
}

impl TrustView {
    /// A view holding `anchors` and no revocation.
    pub fn new(anchors: TrustAnchors) -> Self {
        Self {
            inner: Arc::new(RwLock::new((anchors, RevocationSet::default()))),
            version: Arc::new(watch::Sender::new(0)),
        }
    }

    /// Replaces what the view holds.
    pub fn update(&self, anchors: &TrustAnchors, revocations: &RevocationSet) {
        if let Ok(mut inner) = self.inner.write() {
            *inner = (anchors.clone(), revocations.clone());
        }
        self.version.send_modify(|version| *version += 1);
    }

    /// What it holds now (anchors, revocations).
    pub fn snapshot(&self) -> (TrustAnchors, RevocationSet) {
        self.with(|anchors, revocations| (anchors.clone(), revocations.clone()))
    }

    /// Woken at every update.
    pub fn changed(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    fn with<T>(&self, f: impl FnOnce(&TrustAnchors, &RevocationSet) -> T) -> T {
        match self.inner.read() {
            Ok(inner) => f(&inner.0, &inner.1),
            Err(poisoned) => {
                let inner = poisoned.into_inner();
                f(&inner.0, &inner.1)
            }
        }
    }
}

/// Whom a connection must reach.
#[derive(Debug, Clone)]
pub enum PeerCheck {
    /// The broker of relay `expected`: a key certified as that relay, valid and unrevoked now.
    Relay {
        /// The relay id (the configured parent).
        expected: String,
        /// The anchors and revocations to check with.
        trust: TrustView,
    },
    /// The node's own broker: one of the node's own keys (its current key and, during a key
    /// rotation, the keys of its previous certificates).
    Own {
        /// The node id, for messages.
        node: String,
        /// The keys accepted.
        keys: Vec<PublicKey>,
    },
}

impl PeerCheck {
    /// Checks what a broker at `url` presented, at `now`. On success, says whom it reached.
    pub fn check(&self, url: &str, presented: &Presented, now: Timestamp) -> Result<String, TlsError> {
        let keyid = presented.key.keyid().to_string();
        match self {
            PeerCheck::Own { node, keys } => {
                if keys.contains(&presented.key) {
                    Ok(format!("{node}'s own broker (key {})", presented.key.keyid().short()))
                } else {
                    let pinned =
                        keys.iter().map(|k| k.keyid().short().to_owned()).collect::<Vec<_>>().join(", ");
                    Err(TlsError::NotOwnKey { url: url.to_owned(), keyid, node: node.clone(), pinned })
                }
            }
            PeerCheck::Relay { expected, trust } => trust.with(|anchors, revocations| {
                let certs =
                    CertSet::verify(&presented.certs, anchors, revocations, now).map_err(|source| {
                        TlsError::Certificates {
                            url: url.to_owned(),
                            expected: expected.clone(),
                            source: Box::new(source),
                        }
                    })?;
                let candidates = certs.candidates(&keyid, Role::Relay);
                let Some(first) = candidates.first() else {
                    return Err(TlsError::NotCertified { url: url.to_owned(), keyid });
                };
                let Some(mine) = candidates.iter().find(|c| c.cert.subject == *expected) else {
                    return Err(TlsError::WrongRelay {
                        url: url.to_owned(),
                        found: first.cert.subject.clone(),
                        expected: expected.clone(),
                        keyid,
                    });
                };
                revocations
                    .check(mine, now, &format!("the TLS identity of {expected}"))
                    .map_err(|source| TlsError::Revoked { url: url.to_owned(), source: Box::new(source) })?;
                Ok(format!(
                    "relay {expected} (key {}, certificate {})",
                    presented.key.keyid().short(),
                    mine.digest.short()
                ))
            }),
        }
    }
}

/// Whether children holding `anchors` can accept `identity` as the broker of its relay:
/// `Ok(None)` yes; `Ok(Some(why))` not now (a certificate expired or is not yet valid: the
/// relay runs, its children refuse it until it is renewed); `Err` never (its certificates do
/// not chain to the anchors — usually a certificate above the relay is missing).
pub fn self_check(identity: &BrokerIdentity, anchors: &TrustAnchors) -> Result<Option<String>, TlsError> {
    let url = format!("the TLS certificate of {}", identity.relay);
    let presented = presented(&identity.cert_der, &url)?;
    let check = PeerCheck::Relay { expected: identity.relay.clone(), trust: TrustView::new(anchors.clone()) };
    match check.check(&url, &presented, crate::clock::now()) {
        Ok(_) => Ok(None),
        Err(TlsError::Certificates { source, .. })
            if matches!(
                *source,
                kairan_protocol::Error::CertExpired { .. } | kairan_protocol::Error::CertNotYetValid { .. }
            ) =>
        {
            Ok(Some(source.to_string()))
        }
        Err(error) => Err(error),
    }
}

/// The rustls side: TLS 1.3 only, Ed25519 only, the certificate judged by a [`PeerCheck`].
#[derive(Debug)]
pub(super) struct KairanVerifier {
    pub(super) url: String,
    pub(super) check: PeerCheck,
    pub(super) provider: Arc<CryptoProvider>,
}

/// Our refusal inside a rustls error (taken out again by [`super::tunnel`]).
pub(super) fn refusal(error: TlsError) -> rustls::Error {
    rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(Arc::new(error))))
}

impl ServerCertVerifier for KairanVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = presented(end_entity, &self.url).map_err(refusal)?;
        self.check.check(&self.url, &presented, crate::clock::now()).map_err(refusal)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Never reached: the client offers TLS 1.3 only.
        Err(rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls12NotOffered))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::identity::broker_identity;
    use kairan_protocol::fixtures::Hierarchy;

    fn presented_by(tree: &Hierarchy, index: usize) -> Presented {
        let relay = &tree.relays[index];
        let identity =
            broker_identity(&relay.key, &relay.cert, &tree.relay_chain(index)[1..]).expect("identity");
        presented(&identity.cert_der, "mqtts://x").expect("reads")
    }

    fn parent(tree: &Hierarchy, expected: &str) -> PeerCheck {
        PeerCheck::Relay { expected: expected.into(), trust: TrustView::new(tree.anchors.clone()) }
    }

    #[test]
    fn the_configured_parents_certified_key_is_accepted() {
        let tree = Hierarchy::standard();
        let reached = parent(&tree, "jp-13").check("u", &presented_by(&tree, 1), tree.now).expect("accepted");
        assert!(reached.starts_with("relay jp-13 (key "), "{reached}");
    }

    #[test]
    fn another_relays_key_is_refused_naming_both() {
        let tree = Hierarchy::standard();
        let error = parent(&tree, "jp-13")
            .check("mqtts://h:1", &presented_by(&tree, 2), tree.now)
            .expect_err("refused");
        let text = error.to_string();
        assert!(text.contains("presents the key of relay jp-13-chuo"), "{text}");
        assert!(text.contains("not of the configured parent jp-13"), "{text}");
    }

    #[test]
    fn an_expired_or_revoked_key_is_refused() {
        let tree = Hierarchy::standard();
        let after = tree.now.plus_secs(400 * 24 * 3600);
        let error = parent(&tree, "jp-13").check("u", &presented_by(&tree, 1), after).expect_err("expired");
        assert!(error.to_string().contains("expired at"), "{error}");

        let check = parent(&tree, "jp-13");
        let bundle = tree.root_revocation(&tree.relays[1].cert, tree.now.plus_secs(-10));
        let verified = bundle.verify(&tree.anchors, tree.now).expect("bundle");
        if let PeerCheck::Relay { trust, .. } = &check {
            trust.update(&tree.anchors, verified.revoked());
        }
        let error = check.check("u", &presented_by(&tree, 1), tree.now).expect_err("revoked");
        assert!(matches!(error, TlsError::Revoked { .. }), "{error}");
        assert!(error.to_string().contains("revoked certificate"), "{error}");
    }

    #[test]
    fn certificates_that_do_not_chain_are_refused() {
        let tree = Hierarchy::standard();
        let stranger = kairan_protocol::fixtures::key("stranger");
        let other = TrustAnchors::numbered(1, [stranger.public()]).expect("anchors");
        let error = PeerCheck::Relay { expected: "jp".into(), trust: TrustView::new(other) }
            .check("u", &presented_by(&tree, 0), tree.now)
            .expect_err("other anchors");
        assert!(matches!(error, TlsError::Certificates { .. }), "{error}");
    }

    #[test]
    fn own_brokers_accept_only_the_nodes_keys() {
        let tree = Hierarchy::standard();
        let own = PeerCheck::Own { node: "jp-13".into(), keys: vec![tree.relays[1].key.public().clone()] };
        assert!(own.check("u", &presented_by(&tree, 1), tree.now).is_ok());
        let error = own.check("u", &presented_by(&tree, 2), tree.now).expect_err("not own");
        assert!(error.to_string().contains("not jp-13's own key"), "{error}");
    }
}
