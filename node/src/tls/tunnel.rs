//! The client side of TLS: a Unix socket that carries each connection made to it to one broker
//! over TLS 1.3.
//!
//! rumqttc is built without TLS (its TLS features pull rustls-webpki 0.102, which has open
//! advisories), and it offers no way to hand it a stream; it does connect to Unix sockets. So
//! a [`Tunnel`] listens on a socket in a directory only this user can enter (a temporary
//! directory, mode 0700), and for each connection rumqttc makes — the first one and every
//! reconnection — connects to the broker, runs the TLS 1.3 handshake with the link's
//! [`PeerCheck`], and copies bytes both ways. A refused handshake closes rumqttc's connection
//! (its event loop reports an error, the caller backs off and retries) and is kept, precise,
//! for the caller to report ([`Tunnel::last_error`]). Nothing crosses the network, or the
//! loopback interface, in clear. When the node's trust changes (a revocation arrives), every
//! open connection is checked again and closed if its broker is no longer acceptable.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::net::{TcpStream, UnixListener, UnixStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::identity::{Presented, presented};
use super::{PeerCheck, TlsError, client_config};
use crate::mqtt::BrokerAddr;

/// Connecting to the broker, at most.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The TLS handshake, at most.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often an open connection is checked again even when the trust did not change (the
/// parent's certificate may expire while connected).
const RECHECK_INTERVAL: Duration = Duration::from_secs(60);

/// The last error of a link, shared with whoever reports it.
pub type LastError = Arc<Mutex<Option<String>>>;

fn set(last: &LastError, value: Option<String>) {
    if let Ok(mut slot) = last.lock() {
        *slot = value;
    }
}

/// A running tunnel to one broker. Dropping it stops it and removes its socket.
#[derive(Debug)]
pub struct Tunnel {
    socket: PathBuf,
    last_error: LastError,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Where the tunnel connects, and how to check it.
#[derive(Clone)]
struct Target {
    url: String,
    host: String,
    port: u16,
    connector: TlsConnector,
    check: PeerCheck,
}

impl Tunnel {
    /// Starts a tunnel to `addr` (an `mqtts://` broker) accepting what `check` accepts. Must be
    /// called within a tokio runtime.
    pub fn open(addr: &BrokerAddr, check: PeerCheck) -> Result<Self, TlsError> {
        let url = addr.url();
        let connector = TlsConnector::from(client_config(&url, check.clone())?);
        // Mode 0700: no other user can reach the socket (tempfile would leave it to the umask).
        let dir =
            private_dir("kairan-tls-").map_err(|e| TlsError::Local(format!("tunnel directory: {e}")))?;
        let socket = dir.path().join("broker.sock");
        let listener = UnixListener::bind(&socket)
            .map_err(|e| TlsError::Local(format!("tunnel socket {}: {e}", socket.display())))?;
        let target = Target { url, host: addr.host.clone(), port: addr.port, connector, check };
        let last_error: LastError = Arc::default();
        let stop = CancellationToken::new();
        tokio::spawn(serve(listener, target, last_error.clone(), stop.clone()));
        Ok(Self { socket, last_error, stop, _dir: dir })
    }

    /// The socket rumqttc connects to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Why the last connection attempt failed, or was closed; `None` after a handshake that
    /// succeeded.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|slot| slot.clone())
    }

    /// The slot [`Tunnel::last_error`] reads, to share.
    pub fn last_error_slot(&self) -> LastError {
        self.last_error.clone()
    }
}

/// A temporary directory only this user can enter (mode 0700), removed when dropped.
pub fn private_dir(prefix: &str) -> std::io::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new().prefix(prefix).permissions(std::fs::Permissions::from_mode(0o700)).tempdir()
}

async fn serve(listener: UnixListener, target: Target, last_error: LastError, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((local, _)) => {
                    tokio::spawn(carry(local, target.clone(), last_error.clone(), stop.clone()));
                }
                Err(error) => {
                    error!(broker = %target.url, %error, "TLS tunnel: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// Carries one connection: handshake, then bytes both ways until either side closes, the
/// tunnel stops, or the broker is no longer acceptable.
async fn carry(mut local: UnixStream, target: Target, last_error: LastError, stop: CancellationToken) {
    let (mut remote, presented) = match handshake(&target).await {
        Ok(connected) => connected,
        // A parent that is down or restarting is not a refusal: the driver reconnects, as it
        // does without TLS. Only a broker that answered and was not acceptable is an error.
        Err(refusal @ TlsError::Unreachable { .. }) => {
            warn!(broker = %target.url, %refusal, "broker unreachable");
            set(&last_error, Some(refusal.to_string()));
            return;
        }
        // A broker restarting can accept the TCP connection and drop it mid-handshake once;
        // a plaintext listener does it every time. Refused as an error from the second
        // identical failure in a row, a warning the first time.
        Err(refusal @ TlsError::NoTls { .. }) => {
            let text = refusal.to_string();
            if last_error.lock().is_ok_and(|last| last.as_deref() == Some(text.as_str())) {
                error!(broker = %target.url, %refusal, "TLS connection refused");
            } else {
                warn!(broker = %target.url, %refusal, "TLS handshake failed; retrying");
            }
            set(&last_error, Some(text));
            return;
        }
        Err(refusal) => {
            error!(broker = %target.url, %refusal, "TLS connection refused");
            set(&last_error, Some(refusal.to_string()));
            return;
        }
    };
    set(&last_error, None);
    tokio::select! {
        result = tokio::io::copy_bidirectional(&mut local, &mut remote) => {
            if let Err(error) = result {
                debug!(broker = %target.url, %error, "TLS tunnel connection ended");
            }
        }
        () = stop.cancelled() => {}
        refusal = recheck(&target, &presented) => {
            error!(broker = %target.url, %refusal, "closing the TLS connection: the broker is no longer acceptable");
            set(&last_error, Some(refusal.to_string()));
        }
    }
}

/// Returns once the broker that presented `presented` is refused by the trust now held.
async fn recheck(target: &Target, presented: &Presented) -> TlsError {
    let mut changed = match &target.check {
        PeerCheck::Relay { trust, .. } => Some(trust.changed()),
        PeerCheck::Own { .. } => None,
    };
    loop {
        match changed.as_mut() {
            Some(receiver) => {
                tokio::select! {
                    result = receiver.changed() => if result.is_err() { changed = None; },
                    () = tokio::time::sleep(RECHECK_INTERVAL) => {}
                }
            }
            None => tokio::time::sleep(RECHECK_INTERVAL).await,
        }
        if let Err(refusal) = target.check.check(&target.url, presented, crate::clock::now()) {
            return refusal;
        }
    }
}

async fn handshake(target: &Target) -> Result<(TlsStream<TcpStream>, Presented), TlsError> {
    let url = &target.url;
    let unreachable = |reason: String| TlsError::Unreachable { url: url.clone(), reason };
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((target.host.as_str(), target.port)))
        .await
        .map_err(|_| unreachable(format!("no connection within {} s", CONNECT_TIMEOUT.as_secs())))?
        .map_err(|e| unreachable(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(target.host.clone())
        .map_err(|e| TlsError::Local(format!("{url}: host {:?}: {e}", target.host)))?;
    let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, target.connector.connect(name, tcp))
        .await
        .map_err(|_| TlsError::Timeout { url: url.clone(), secs: HANDSHAKE_TIMEOUT.as_secs() })?
        .map_err(|e| handshake_error(url, &e))?;
    let der = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .ok_or_else(|| TlsError::Handshake { url: url.clone(), reason: "no certificate".into() })?;
    let presented = presented(der, url)?;
    let reached = target.check.check(url, &presented, crate::clock::now())?;
    info!(broker = %url, %reached, "TLS 1.3 connection up");
    Ok((tls, presented))
}

/// Our own refusal if the verifier made one; otherwise what happened, named.
fn handshake_error(url: &str, error: &std::io::Error) -> TlsError {
    let rustls_error = error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls_error {
        Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other))) => {
            match other.0.downcast_ref::<TlsError>() {
                Some(refusal) => refusal.clone(),
                None => TlsError::Handshake { url: url.to_owned(), reason: other.to_string() },
            }
        }
        Some(rustls::Error::InvalidMessage(message)) => TlsError::NoTls {
            url: url.to_owned(),
            detail: format!("it answered with something that is not TLS ({message:?})"),
        },
        Some(other) => TlsError::Handshake { url: url.to_owned(), reason: other.to_string() },
        None if error.kind() == std::io::ErrorKind::UnexpectedEof
            || error.kind() == std::io::ErrorKind::ConnectionReset =>
        {
            TlsError::NoTls {
                url: url.to_owned(),
                detail: format!("it closed the connection during the handshake ({error})"),
            }
        }
        None => TlsError::Handshake { url: url.to_owned(), reason: error.to_string() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{TrustView, broker_identity, server_config};
    use kairan_protocol::cert::ROOT_ISSUER;
    use kairan_protocol::fixtures::Hierarchy;
    use kairan_protocol::{Certificate, Envelope, Role, TrustAnchors};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The fixture relays (jp, jp-13, jp-13-chuo) with certificates valid now (the tunnel
    /// checks at the wall clock; the fixture's own certificates are of 2021): each relay's
    /// key and certificate chain, own certificate first.
    fn current_relays() -> (TrustAnchors, Vec<(kairan_protocol::SecretKey, Vec<Envelope>)>) {
        let tree = Hierarchy::standard();
        let now = crate::clock::now();
        let window = (now.plus_secs(-3600), now.plus_secs(3600));
        let mut relays: Vec<(kairan_protocol::SecretKey, Vec<Envelope>)> = Vec::new();
        for relay in &tree.relays {
            let (issuer, signers, above) = match relays.last() {
                None => (ROOT_ISSUER.to_owned(), vec![&tree.roots[0], &tree.roots[1]], Vec::new()),
                Some((key, chain)) => {
                    let parent = Certificate::decode(&chain[0].payload).expect("decodes");
                    (parent.subject, vec![key], chain.clone())
                }
            };
            let cert = Certificate::for_key(
                "s",
                &issuer,
                &relay.id,
                relay.key.public(),
                Role::Relay,
                &relay.scope,
                window,
            )
            .sign(&signers);
            let mut chain = vec![cert];
            chain.extend(above);
            relays.push((kairan_protocol::SecretKey::from_hex(&relay.key.to_hex()).expect("key"), chain));
        }
        (tree.anchors, relays)
    }

    /// A TLS 1.3 echo server presenting relay `index`'s identity.
    async fn echo_server(relays: &[(kairan_protocol::SecretKey, Vec<Envelope>)], index: usize) -> BrokerAddr {
        let (key, chain) = &relays[index];
        let identity = broker_identity(key, &chain[0], &chain[1..]).expect("identity");
        let acceptor = tokio_rustls::TlsAcceptor::from(server_config(&identity).expect("server config"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut tls) = acceptor.accept(tcp).await {
                        let mut buffer = [0u8; 5];
                        if tls.read_exact(&mut buffer).await.is_ok() {
                            let _ = tls.write_all(&buffer).await;
                            let _ = tls.flush().await;
                        }
                    }
                });
            }
        });
        BrokerAddr { host: "127.0.0.1".into(), port: addr.port(), tls: true }
    }

    fn expecting(anchors: &TrustAnchors, relay: &str) -> PeerCheck {
        PeerCheck::Relay { expected: relay.into(), trust: TrustView::new(anchors.clone()) }
    }

    async fn round_trip(tunnel: &Tunnel) -> std::io::Result<[u8; 5]> {
        let mut local = UnixStream::connect(tunnel.socket()).await?;
        local.write_all(b"hello").await?;
        let mut answer = [0u8; 5];
        local.read_exact(&mut answer).await?;
        Ok(answer)
    }

    #[tokio::test]
    async fn the_expected_relays_broker_is_reached_and_another_is_refused() {
        let (anchors, relays) = current_relays();
        let addr = echo_server(&relays, 1).await;
        let tunnel = Tunnel::open(&addr, expecting(&anchors, "jp-13")).expect("tunnel");
        assert_eq!(&round_trip(&tunnel).await.expect("echo"), b"hello");
        assert_eq!(tunnel.last_error(), None);

        let tunnel = Tunnel::open(&addr, expecting(&anchors, "jp-13-chuo")).expect("tunnel");
        assert!(round_trip(&tunnel).await.is_err(), "the connection is closed");
        let error = tunnel.last_error().expect("an error is kept");
        assert!(error.contains("presents the key of relay jp-13 "), "{error}");
        assert!(error.contains("not of the configured parent jp-13-chuo"), "{error}");

        let own = PeerCheck::Own { node: "jp-13".into(), keys: vec![relays[1].0.public().clone()] };
        let tunnel = Tunnel::open(&addr, own).expect("tunnel");
        assert_eq!(&round_trip(&tunnel).await.expect("echo"), b"hello");
    }

    #[tokio::test]
    async fn a_plaintext_listener_is_named_as_such() {
        let (anchors, _) = current_relays();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        // What a plaintext MQTT broker does with a ClientHello: reads it and hangs up.
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let mut buffer = [0u8; 64];
                let _ = tcp.read(&mut buffer).await;
            }
        });
        let addr = BrokerAddr { host: "127.0.0.1".into(), port, tls: true };
        let tunnel = Tunnel::open(&addr, expecting(&anchors, "jp")).expect("tunnel");
        assert!(round_trip(&tunnel).await.is_err());
        let error = tunnel.last_error().expect("an error is kept");
        assert!(error.starts_with(&format!("no TLS at mqtts://127.0.0.1:{port}")), "{error}");
    }

    #[tokio::test]
    async fn the_socket_directory_is_private_and_removed_with_the_tunnel() {
        use std::os::unix::fs::PermissionsExt;
        let (anchors, _) = current_relays();
        let addr = BrokerAddr { host: "127.0.0.1".into(), port: 9, tls: true };
        let tunnel = Tunnel::open(&addr, expecting(&anchors, "jp")).expect("tunnel");
        let dir = tunnel.socket().parent().expect("dir").to_owned();
        let mode = std::fs::metadata(&dir).expect("dir").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        drop(tunnel);
        assert!(!dir.exists(), "removed with the tunnel");
    }
}
