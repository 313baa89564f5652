//! The MQTT client side (rumqttc): broker URLs, client options that avoid rumqttc's known
//! traps, reconnect backoff, and an event loop polled on a task of its own.

use std::time::Duration;

use rumqttc::{ConnectionError, Event, EventLoop, MqttOptions};
use tokio::sync::mpsc;

pub use crate::machine::MAX_PACKET_BYTES;

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

/// A broker address from an `mqtt://host:port` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    /// Host name or IP.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl BrokerAddr {
    /// Parses `mqtt://host:port` (port defaults to 1883).
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url.strip_prefix("mqtt://").ok_or_else(|| format!("{url:?} must start with mqtt://"))?;
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) => {
                (host, port.parse::<u16>().map_err(|_| format!("{url:?}: port {port:?} is not a number"))?)
            }
            None => (rest, 1883),
        };
        if host.is_empty() {
            return Err(format!("{url:?} has no host"));
        }
        Ok(Self { host: host.trim_start_matches('[').trim_end_matches(']').to_owned(), port })
    }

    /// The URL form.
    pub fn url(&self) -> String {
        format!("mqtt://{}:{}", self.host, self.port)
    }
}

impl From<std::net::SocketAddr> for BrokerAddr {
    fn from(addr: std::net::SocketAddr) -> Self {
        Self { host: addr.ip().to_string(), port: addr.port() }
    }
}

/// Client options: fixed client id, persistent session (unless `clean`), large packets,
/// manual acks when asked, credentials.
pub fn client_options(
    client_id: &str,
    addr: &BrokerAddr,
    credentials: Option<&Credentials>,
    clean: bool,
    manual_acks: bool,
) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, addr.host.clone(), addr.port);
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

/// Exponential reconnect backoff with full jitter: 100 ms doubling to 30 s.
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

    /// The next delay: uniformly random in [cap/2, cap], cap = min(30 s, 100 ms · 2^attempt).
    pub fn next_delay(&mut self) -> Duration {
        let cap_ms = 100u64.saturating_mul(1u64 << self.attempt.min(20)).min(30_000);
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
            Ok(BrokerAddr { host: "127.0.0.1".into(), port: 18830 })
        );
        assert_eq!(BrokerAddr::parse("mqtt://broker").map(|a| a.port), Ok(1883));
        assert!(BrokerAddr::parse("http://x").is_err());
        assert!(BrokerAddr::parse("mqtt://x:notaport").is_err());
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
        let addr = BrokerAddr::from(listener.local_addr().expect("addr"));
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
            assert!(backoff.next_delay() <= Duration::from_secs(30));
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }
}
