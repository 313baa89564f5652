//! The MQTT client side (rumqttc): broker URLs, connections (through a TLS tunnel for
//! `mqtts://`, [`crate::tls`]) with options that avoid rumqttc's known traps, reconnect backoff,
//! and an event loop polled on a task of its own.

use std::time::Duration;

use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Transport};
use tokio::sync::mpsc;

pub use crate::machine::MAX_PACKET_BYTES;
use crate::tls::{PeerCheck, TlsError, Tunnel};

/// rumqttc's limit for reaching the broker and its CONNACK: above the tunnel's own connect and
/// handshake limits (5 s each), so a refusal is the tunnel's, and reported as such.
const CONNECTION_TIMEOUT_SECS: u64 = 15;

/// Capacity of rumqttc's request channel. It must exceed the acknowledgements that can be
/// outstanding (the broker's in-flight window) so that acking from the processing task can
/// never wait on a full channel while the polling task waits on the processing task.
pub const REQUEST_CHANNEL_CAPACITY: usize = 1024;

/// Username and password for a broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Username.
    pub username: String,
    /// Password.
    pub password: String,
}

/// A broker address from an `mqtts://host:port` (TLS 1.3) or `mqtt://host:port` (plaintext) URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    /// Host name or IP.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// `mqtts://`: TLS 1.3, the broker's identity checked.
    pub tls: bool,
}

impl BrokerAddr {
    /// Parses `mqtts://host:port` (port defaults to 8883) or `mqtt://host:port` (1883).
    pub fn parse(url: &str) -> Result<Self, String> {
        let (rest, tls, default_port) = if let Some(rest) = url.strip_prefix("mqtts://") {
            (rest, true, 8883)
        } else if let Some(rest) = url.strip_prefix("mqtt://") {
            (rest, false, 1883)
        } else {
            return Err(format!("{url:?} must start with mqtts:// (TLS) or mqtt://"));
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':').filter(|(host, _)| !host.ends_with(':')) {
            Some((host, port)) => {
                (host, port.parse::<u16>().map_err(|_| format!("{url:?}: port {port:?} is not a number"))?)
            }
            None => (rest, default_port),
        };
        if host.is_empty() {
            return Err(format!("{url:?} has no host"));
        }
        Ok(Self { host: host.trim_start_matches('[').trim_end_matches(']').to_owned(), port, tls })
    }

    /// A TLS address on `addr`.
    pub fn tls(addr: std::net::SocketAddr) -> Self {
        Self { host: addr.ip().to_string(), port: addr.port(), tls: true }
    }

    /// A plaintext address on `addr`.
    pub fn plaintext(addr: std::net::SocketAddr) -> Self {
        Self { host: addr.ip().to_string(), port: addr.port(), tls: false }
    }

    /// The URL form.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}", self.host, self.port)
        } else {
            format!("{scheme}://{}:{}", self.host, self.port)
        }
    }

    /// Whether the host is this machine (`localhost`, 127.0.0.0/8, `::1`): traffic to it never
    /// leaves the machine.
    pub fn is_loopback(&self) -> bool {
        self.host.eq_ignore_ascii_case("localhost")
            || self.host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// Refuses a plaintext address off this machine unless the operator opted out of TLS in
    /// writing (`opted_out`); `field` names the setting in the message.
    pub fn check_transport(&self, field: &str, opted_out: bool) -> Result<(), String> {
        if self.tls || self.is_loopback() || opted_out {
            return Ok(());
        }
        Err(format!(
            "{} is plaintext over the network: broker passwords and advisories would cross it in clear; \
             use mqtts:// (TLS 1.3), or set {} to accept that",
            self.url(),
            opt_out_field(field)
        ))
    }
}

/// The opt-out beside a URL setting: `upstream.url` → `upstream.insecure_plaintext = true`;
/// a command-line flag `--to` → `--insecure-plaintext`.
pub fn opt_out_field(field: &str) -> String {
    match field.rsplit_once('.') {
        Some((section, _)) => format!("{section}.insecure_plaintext = true"),
        None => "--insecure-plaintext".to_owned(),
    }
}

/// One MQTT connection of a node: the broker, whom it must be, the credentials, the client id.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// The broker.
    pub addr: BrokerAddr,
    /// Whom the broker must prove to be (`mqtts://`); `None` for plaintext.
    pub peer: Option<PeerCheck>,
    /// Credentials on it.
    pub credentials: Option<Credentials>,
    /// The client id.
    pub client_id: String,
}

/// A client connection: rumqttc's client and event loop, and the TLS tunnel the connection
/// goes through (kept as long as the event loop is polled: dropping it closes the link).
pub struct Connection {
    /// The client.
    pub client: AsyncClient,
    /// Its event loop.
    pub eventloop: EventLoop,
    /// The tunnel of an `mqtts://` link.
    pub tunnel: Option<Tunnel>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("tunnel", &self.tunnel).finish_non_exhaustive()
    }
}

impl Connection {
    /// The reason the last connection attempt failed, as the tunnel saw it (TLS refusals), or
    /// else as rumqttc did.
    pub fn explain(&self, error: &ConnectionError) -> String {
        self.tunnel.as_ref().and_then(Tunnel::last_error).unwrap_or_else(|| error.to_string())
    }
}

/// Opens a client for `link`: fixed client id, persistent session unless `clean`, large
/// packets, manual acks when asked. An `mqtts://` link goes through a TLS tunnel checking
/// `link.peer`. Must be called within a tokio runtime.
pub fn connect(
    link: &LinkConfig,
    clean: bool,
    manual_acks: bool,
    capacity: usize,
) -> Result<Connection, TlsError> {
    let credentials = link.credentials.as_ref();
    let (options, tunnel) = if link.addr.tls {
        let check = link.peer.clone().ok_or_else(|| {
            TlsError::Local(format!("{}: a TLS link needs to know whom the broker must be", link.addr.url()))
        })?;
        let tunnel = Tunnel::open(&link.addr, check)?;
        let socket = tunnel.socket().display().to_string();
        let mut options = options_for(&link.client_id, socket, 0, credentials, clean, manual_acks);
        options.set_transport(Transport::Unix);
        (options, Some(tunnel))
    } else {
        (client_options(&link.client_id, &link.addr, credentials, clean, manual_acks), None)
    };
    let (client, mut eventloop) = AsyncClient::new(options, capacity);
    let mut network = eventloop.network_options();
    network.set_connection_timeout(CONNECTION_TIMEOUT_SECS);
    eventloop.set_network_options(network);
    Ok(Connection { client, eventloop, tunnel })
}

/// Plaintext client options: fixed client id, persistent session (unless `clean`), large
/// packets, manual acks when asked, credentials. (Links use [`connect`].)
pub fn client_options(
    client_id: &str,
    addr: &BrokerAddr,
    credentials: Option<&Credentials>,
    clean: bool,
    manual_acks: bool,
) -> MqttOptions {
    options_for(client_id, addr.host.clone(), addr.port, credentials, clean, manual_acks)
}

fn options_for(
    client_id: &str,
    host: String,
    port: u16,
    credentials: Option<&Credentials>,
    clean: bool,
    manual_acks: bool,
) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, host, port);
    options.set_keep_alive(Duration::from_secs(15));
    options.set_clean_session(clean);
    options.set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
    options.set_manual_acks(manual_acks);
    options.set_inflight(100);
    options.set_request_channel_capacity(REQUEST_CHANNEL_CAPACITY);
    if let Some(credentials) = credentials {
        options.set_credentials(credentials.username.clone(), credentials.password.clone());
    }
    options
}

/// The longest wait between two connection attempts, in milliseconds.
pub const RECONNECT_CAP_MS: u64 = 5_000;

/// Exponential reconnect backoff with jitter: 100 ms doubling to 5 s.
///
/// The cap is what a child waits, at worst, after its parent's broker is back: with 30 s a
/// clinic came back 15–30 s after its restarted district (half of its catch-up time). 5 s
/// still spreads a district's 2,000 clinics over 2.5 s (800 connections per second, which the
/// embedded broker accepts), and a refused connection to a host that is down costs nothing.
#[derive(Debug, Clone)]
pub struct Backoff {
    attempt: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Backoff {
    /// A fresh backoff.
    pub fn new() -> Self {
        Self { attempt: 0 }
    }

    /// Forget past failures (after a successful connect).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The next delay: uniformly random in [cap/2, cap], cap = min(5 s, 100 ms · 2^attempt).
    pub fn next_delay(&mut self) -> Duration {
        let cap_ms = 100u64.saturating_mul(1u64 << self.attempt.min(20)).min(RECONNECT_CAP_MS);
        self.attempt = self.attempt.saturating_add(1);
        let jitter = rand::Rng::gen_range(&mut rand::thread_rng(), cap_ms / 2..=cap_ms);
        Duration::from_millis(jitter)
    }
}

/// Polls `eventloop` on a task of its own and hands over its events through a channel, for a
/// loop that also waits on other things.
///
/// rumqttc's `EventLoop::poll` is not cancel-safe: it writes with `write_all` and clears its
/// write buffer only afterwards, so a poll dropped while a large publish is half written to a
/// full socket leaves the whole packet in the buffer, and the next poll writes it again from
/// the start — the broker receives the first part twice, a corrupted stream. A `select!` over
/// `poll()` and anything else drops polls. Here a poll always runs to its end; receiving from
/// the channel is cancel-safe. The task ends after handing over an error (callers then build a
/// new client) or once the receiver is dropped.
pub fn spawn_poll(mut eventloop: EventLoop) -> mpsc::Receiver<Result<Event, ConnectionError>> {
    let (events, receiver) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                // Nobody listens any more: the connection is abandoned, cutting a write is harmless.
                () = events.closed() => break,
                event = eventloop.poll() => {
                    let failed = event.is_err();
                    if events.send(event).await.is_err() || failed {
                        break;
                    }
                }
            }
        }
    });
    receiver
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        assert_eq!(
            BrokerAddr::parse("mqtt://127.0.0.1:18830"),
            Ok(BrokerAddr { host: "127.0.0.1".into(), port: 18830, tls: false })
        );
        assert_eq!(BrokerAddr::parse("mqtt://broker").map(|a| a.port), Ok(1883));
        assert_eq!(BrokerAddr::parse("mqtts://broker").map(|a| (a.port, a.tls)), Ok((8883, true)));
        assert_eq!(BrokerAddr::parse("mqtts://[::1]:9").map(|a| a.url()), Ok("mqtts://[::1]:9".into()));
        assert!(BrokerAddr::parse("http://x").is_err());
        assert!(BrokerAddr::parse("mqtt://x:notaport").is_err());
    }

    #[test]
    fn plaintext_off_this_machine_needs_the_written_opt_out() {
        let remote = BrokerAddr::parse("mqtt://relay.example.jp:1883").expect("parses");
        let error = remote.check_transport("upstream.url", false).expect_err("refused");
        assert!(error.contains("mqtt://relay.example.jp:1883 is plaintext over the network"), "{error}");
        assert!(error.contains("upstream.insecure_plaintext = true"), "{error}");
        assert!(remote.check_transport("upstream.url", true).is_ok());
        for local in
            ["mqtt://127.0.0.1:1883", "mqtt://localhost", "mqtt://[::1]:1883", "mqtts://relay.example.jp"]
        {
            let addr = BrokerAddr::parse(local).expect("parses");
            assert!(addr.check_transport("upstream.url", false).is_ok(), "{local}");
        }
    }

    /// A "broker" that accepts one client, acknowledges its CONNECT, lets its socket fill up,
    /// then reads `count` QoS 0 publishes and checks each arrived whole: publish `i` has
    /// topic `t` and `size` bytes of value `i`.
    async fn slow_broker(listener: tokio::net::TcpListener, count: usize, size: usize) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut buffer: Vec<u8> = Vec::new();
        // One MQTT packet from the front of `buffer`: (first byte, body), if complete.
        let take = |buffer: &mut Vec<u8>| -> Option<(u8, Vec<u8>)> {
            let (mut length, mut shift, mut at) = (0usize, 0, 1);
            loop {
                let byte = *buffer.get(at)?;
                length |= usize::from(byte & 0x7f) << shift;
                shift += 7;
                at += 1;
                if byte & 0x80 == 0 {
                    break;
                }
            }
            if buffer.len() < at + length {
                return None;
            }
            let packet: Vec<u8> = buffer.drain(..at + length).collect();
            Some((packet[0], packet[at..].to_vec()))
        };
        let mut chunk = vec![0u8; 64 * 1024];
        let connect = loop {
            if let Some(packet) = take(&mut buffer) {
                break packet;
            }
            let read = socket.read(&mut chunk).await.expect("read");
            assert!(read > 0, "client went away");
            buffer.extend_from_slice(&chunk[..read]);
        };
        assert_eq!(connect.0, 0x10, "CONNECT first");
        socket.write_all(&[0x20, 0x02, 0x00, 0x00]).await.expect("CONNACK");
        // Read nothing for a while: the client's writes block on a full socket.
        tokio::time::sleep(Duration::from_millis(300)).await;
        for index in 0..count {
            let (header, body) = loop {
                if let Some(packet) = take(&mut buffer) {
                    break packet;
                }
                let read = socket.read(&mut chunk).await.expect("read");
                assert!(read > 0, "client went away");
                buffer.extend_from_slice(&chunk[..read]);
            };
            assert_eq!(header, 0x30, "publish {index}: a QoS 0 PUBLISH");
            assert_eq!(&body[..3], b"\x00\x01t", "publish {index}: topic");
            let payload = &body[3..];
            assert_eq!(payload.len(), size, "publish {index}: length");
            assert!(payload.iter().all(|b| *b == index as u8), "publish {index}: corrupted payload");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_loop_selecting_over_polled_events_never_corrupts_large_writes() {
        let (count, size) = (24, 200_000);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = BrokerAddr::plaintext(listener.local_addr().expect("addr"));
        let broker = tokio::spawn(slow_broker(listener, count, size));
        let (client, eventloop) = rumqttc::AsyncClient::new(
            client_options("writer", &addr, None, true, false),
            REQUEST_CHANNEL_CAPACITY,
        );
        for index in 0..count {
            client
                .try_publish("t", rumqttc::QoS::AtMostOnce, false, vec![index as u8; size])
                .expect("queued");
        }
        // The relay publisher's shape: a select over events and other inputs that fire often
        // (here a 1 ms tick). With `eventloop.poll()` in place of `events.recv()` this loop
        // cuts writes and the broker sees a corrupted stream.
        let mut events = spawn_poll(eventloop);
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        let deadline = tokio::time::sleep(Duration::from_secs(20));
        tokio::pin!(deadline);
        while !broker.is_finished() {
            tokio::select! {
                event = events.recv() => {
                    if let Some(Err(error)) = event {
                        panic!("connection failed: {error}");
                    }
                }
                _ = tick.tick() => {}
                () = &mut deadline => panic!("the broker did not receive every publish"),
            }
        }
        broker.await.expect("every publish arrived whole");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let mut backoff = Backoff::new();
        let first = backoff.next_delay();
        assert!(first <= Duration::from_millis(100));
        for _ in 0..30 {
            assert!(backoff.next_delay() <= Duration::from_millis(RECONNECT_CAP_MS));
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }
}
