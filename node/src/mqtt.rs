//! MQTT plumbing shared by the relay, the clinic and the publisher: broker URLs, client
//! options that avoid rumqttc's known traps, reconnect backoff, and the topic layout.
//!
//! Topics (`<node>` is the publishing node's id):
//! - `kairan/v1/<node>/ingest`: origins → national relay.
//! - `kairan/v1/<node>/deliveries/<scope path>`: relay → children. A delivery is published
//!   once, under its advisory's scope; a child subscribes to the exact topic of every scope
//!   above its own and to everything under its own scope, so the broker routes by scope and an
//!   advisory for `jp/13` never reaches another prefecture's relay.

use std::time::Duration;

use rumqttc::MqttOptions;

use kairan_protocol::Scope;
use kairan_protocol::limits::MAX_DELIVERY_BYTES;

/// Largest MQTT packet we send or accept: a maximal delivery plus topic and header room.
/// rumqttc's default (10 KiB) is far below a delivery with a full certificate chain.
pub const MAX_PACKET_BYTES: usize = MAX_DELIVERY_BYTES + 16 * 1024;

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

/// `kairan/v1/<node>/ingest`.
pub fn ingest_topic(node: &str) -> String {
    format!("kairan/v1/{node}/ingest")
}

/// `kairan/v1/<node>/deliveries/<scope>`.
pub fn deliveries_topic(node: &str, scope: &str) -> String {
    format!("kairan/v1/{node}/deliveries/{scope}")
}

/// The subscriptions of a child with scope `scope` on its parent `parent`'s broker.
pub fn delivery_filters(parent: &str, scope: &Scope) -> Vec<String> {
    let segments = scope.segments();
    let mut filters: Vec<String> =
        (1..segments.len()).map(|depth| deliveries_topic(parent, &segments[..depth].join("/"))).collect();
    filters.push(format!("{}/#", deliveries_topic(parent, &scope.to_string())));
    filters
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

    #[test]
    fn filters_route_by_scope() {
        let scope = Scope::parse("jp/13/chuo").expect("scope");
        assert_eq!(
            delivery_filters("jp-13", &scope),
            vec![
                "kairan/v1/jp-13/deliveries/jp",
                "kairan/v1/jp-13/deliveries/jp/13",
                "kairan/v1/jp-13/deliveries/jp/13/chuo/#"
            ]
        );
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
