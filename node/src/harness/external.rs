//! An external broker for a level of a test tree: Mosquitto or RabbitMQ, prepared by a test
//! and configured by the tree from the members of the relays that publish to it.

use super::mosquitto::Mosquitto;
use super::rabbitmq::RabbitMq;
use crate::members::{Members, PasswordHash};
use crate::mosquitto_config::NodeOnBroker;
use crate::mqtt::BrokerAddr;
use crate::rabbitmq_config::{NodeOnRabbit, RabbitPasswordHash};
use crate::tls::BrokerIdentity;

/// One node that publishes to the broker, as the tree knows it.
#[derive(Debug, Clone, Copy)]
pub struct TreeNodeOnBroker<'a> {
    /// The node id.
    pub id: &'a str,
    /// Whether it is the national node.
    pub national: bool,
    /// Its members (with RabbitMQ hashes when the broker is RabbitMQ).
    pub members: &'a Members,
    /// Its own clients' password.
    pub own_password: &'a str,
}

/// An external broker of a test tree.
#[derive(Debug)]
pub enum ExternalBroker {
    /// A Mosquitto process.
    Mosquitto(Mosquitto),
    /// A RabbitMQ node with its MQTT plugin.
    RabbitMq(RabbitMq),
}

impl From<Mosquitto> for ExternalBroker {
    fn from(broker: Mosquitto) -> Self {
        Self::Mosquitto(broker)
    }
}

impl From<RabbitMq> for ExternalBroker {
    fn from(broker: RabbitMq) -> Self {
        Self::RabbitMq(broker)
    }
}

impl ExternalBroker {
    /// Its address.
    pub fn addr(&self) -> &BrokerAddr {
        match self {
            Self::Mosquitto(broker) => &broker.addr,
            Self::RabbitMq(broker) => &broker.addr,
        }
    }

    /// Whether it is RabbitMQ (its members need RabbitMQ password hashes).
    pub fn is_rabbitmq(&self) -> bool {
        matches!(self, Self::RabbitMq(_))
    }

    /// The address node `id` connects to: Mosquitto with TLS has a listener per node (its
    /// certificate); RabbitMQ, one plaintext listener for all.
    pub fn addr_of(&self, id: &str) -> BrokerAddr {
        match self {
            Self::Mosquitto(broker) => broker.addr_of(id).unwrap_or_else(|| broker.addr.clone()),
            Self::RabbitMq(broker) => broker.addr.clone(),
        }
    }

    /// Whether the tree gives it TLS identities (Mosquitto does; the RabbitMQ of the tests
    /// listens in plaintext on loopback, see `docs/rabbitmq.md`).
    pub fn takes_tls(&self) -> bool {
        matches!(self, Self::Mosquitto(_))
    }

    /// Configures it for `nodes` (as `kairan broker mosquitto-config` or
    /// `kairan broker rabbitmq-config` would) and starts it; `tls` holds one identity per
    /// node (what `kairan tls cert` writes), or none for plaintext.
    pub fn start_for(
        &mut self,
        nodes: &[TreeNodeOnBroker<'_>],
        tls: &[BrokerIdentity],
    ) -> Result<(), String> {
        match self {
            Self::Mosquitto(broker) => {
                let hashes: Vec<PasswordHash> =
                    nodes.iter().map(|n| PasswordHash::new(n.own_password)).collect();
                let on: Vec<NodeOnBroker<'_>> = nodes
                    .iter()
                    .zip(&hashes)
                    .map(|(n, hash)| NodeOnBroker {
                        id: n.id,
                        national: n.national,
                        members: n.members,
                        own_clients: hash,
                    })
                    .collect();
                broker.start_for(&on, tls)
            }
            Self::RabbitMq(broker) => {
                let hashes: Vec<RabbitPasswordHash> =
                    nodes.iter().map(|n| RabbitPasswordHash::new(n.own_password)).collect();
                let on: Vec<NodeOnRabbit<'_>> = nodes
                    .iter()
                    .zip(&hashes)
                    .map(|(n, hash)| NodeOnRabbit {
                        id: n.id,
                        national: n.national,
                        members: n.members,
                        own_clients: hash,
                    })
                    .collect();
                broker.start_for(&on)
            }
        }
    }

    /// Kills it with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        match self {
            Self::Mosquitto(broker) => broker.kill(),
            Self::RabbitMq(broker) => broker.kill(),
        }
    }

    /// Starts it again with the same configuration (and data, where it keeps any).
    pub fn start_again(&mut self) -> Result<(), String> {
        match self {
            Self::Mosquitto(broker) => {
                broker.start_again();
                Ok(())
            }
            Self::RabbitMq(broker) => broker.start_again(),
        }
    }

    /// The Mosquitto, if it is one.
    pub fn as_mosquitto_mut(&mut self) -> Option<&mut Mosquitto> {
        match self {
            Self::Mosquitto(broker) => Some(broker),
            Self::RabbitMq(_) => None,
        }
    }

    /// The RabbitMQ, if it is one.
    pub fn as_rabbitmq_mut(&mut self) -> Option<&mut RabbitMq> {
        match self {
            Self::RabbitMq(broker) => Some(broker),
            Self::Mosquitto(_) => None,
        }
    }
}
