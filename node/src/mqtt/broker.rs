//! The embedded broker: rumqttd on its own thread, with a username and password per member
//! and anonymous clients refused.
//!
//! rumqttd keeps everything in memory (persistent sessions survive client reconnects, not a
//! broker restart), has no topic ACLs and no graceful shutdown: the thread lives until the
//! process exits. Everything that crosses it is signed, so a member publishing where it
//! should not is refused by the verifier of whoever receives it.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

use crate::machine::MAX_PACKET_BYTES;

/// A running embedded broker.
#[derive(Debug)]
pub struct EmbeddedBroker {
    /// The address it listens on.
    pub addr: SocketAddr,
}

/// Picks a free port on `ip` when `listen` has port 0 (rumqttd does not report the port it
/// bound, so the port is chosen here and handed to it).
fn resolve_port(listen: SocketAddr) -> std::io::Result<SocketAddr> {
    if listen.port() != 0 {
        return Ok(listen);
    }
    let probe = TcpListener::bind(listen)?;
    probe.local_addr()
}

/// Starts rumqttd on `listen` accepting exactly the `members` (username → password).
/// Returns once the broker accepts TCP connections.
pub fn start(
    name: &str,
    listen: SocketAddr,
    members: HashMap<String, String>,
) -> Result<EmbeddedBroker, String> {
    let addr = resolve_port(listen).map_err(|e| format!("broker.listen {listen}: {e}"))?;
    let connections = ConnectionSettings {
        connection_timeout_ms: 10_000,
        max_payload_size: MAX_PACKET_BYTES,
        max_inflight_count: 100,
        auth: Some(members),
        external_auth: None,
        dynamic_filters: true,
    };
    let server = ServerSettings {
        name: format!("{name}-v4"),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 10_010,
            max_outgoing_packet_count: 200,
            max_segment_size: 16 * 1024 * 1024,
            max_segment_count: 8,
            ..RouterConfig::default()
        },
        v4: Some(HashMap::from([("v4".to_owned(), server)])),
        ..Config::default()
    };
    let thread_name = format!("broker-{name}");
    std::thread::Builder::new()
        .name(thread_name)
        .spawn(move || {
            let mut broker = Broker::new(config);
            if let Err(error) = broker.start() {
                tracing::error!(%error, "embedded broker stopped");
            }
        })
        .map_err(|e| format!("cannot start broker thread: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if Instant::now() > deadline {
            return Err(format!("embedded broker did not start listening on {addr}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(EmbeddedBroker { addr })
}
