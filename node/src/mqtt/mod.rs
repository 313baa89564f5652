//! MQTT: the client side (rumqttc), the embedded broker, and the driver that runs a node's
//! state machine over both. Every topic string comes from [`crate::topics`].
//!
//! ## Layout
//! - [`client`]: broker addresses (`mqtts://`, `mqtt://`), connections (TLS through
//!   [`crate::tls::Tunnel`]), reconnect backoff, event-loop polling.
//! - [`broker`]: the embedded broker.
//! - [`driver`]: runs a [`crate::machine::Machine`] over MQTT and a [`crate::store::Store`].

pub mod broker;
pub mod client;
pub mod driver;

pub use client::{
    BrokerAddr, Connection, Credentials, LinkConfig, MAX_PACKET_BYTES, REQUEST_CHANNEL_CAPACITY, connect,
};
