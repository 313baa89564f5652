//! A hostile member: a plain MQTT client (rumqttc, MQTT 3.1.1) connecting to a running node's
//! broker with a member's real credentials, doing what a taken-over machine would do, and
//! telling exactly what the broker answered — a refused CONNECT, a SUBACK failure, a
//! disconnection after a publish, or nothing at all (Mosquitto drops a publish its ACL denies
//! and still acknowledges it, as MQTT 3.1.1 gives it no way to say no).
//!
//! It never reconnects: once the broker drops it, it stays dropped, so a test sees the
//! disconnection instead of a silent retry.

use std::collections::VecDeque;
use std::time::Duration;

use kairan_node::mqtt::{self, BrokerAddr, Credentials};
use rumqttc::{AsyncClient, ConnectionError, Event, Packet, Publish, QoS, SubscribeReasonCode};
use tokio::sync::mpsc;

/// How long to wait for a broker's answer to one packet.
const ANSWER: Duration = Duration::from_secs(5);

/// What the broker did with a publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// Acknowledged (PUBACK). Mosquitto acknowledges what its ACL drops, too.
    Acked,
    /// The broker closed the connection (the embedded broker, on a publish the permission
    /// table refuses).
    Disconnected(String),
}

/// What the broker did with a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscribed {
    /// SUBACK granted it.
    Granted,
    /// SUBACK refused it (return code 0x80).
    Refused,
    /// The broker closed the connection.
    Disconnected(String),
}

/// A connected hostile member.
#[derive(Debug)]
pub struct Member {
    /// Its username.
    pub username: String,
    client: AsyncClient,
    events: mpsc::UnboundedReceiver<Result<Event, String>>,
    inbox: VecDeque<Publish>,
    closed: Option<String>,
}

/// Polls `eventloop` until its first error, handing every event over; never reconnects.
fn spawn_poller(mut eventloop: rumqttc::EventLoop) -> mpsc::UnboundedReceiver<Result<Event, String>> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(event) => {
                    if tx.send(Ok(event)).is_err() {
                        return;
                    }
                }
                Err(error) => {
                    let text = match error {
                        ConnectionError::ConnectionRefused(code) => format!("connection refused: {code:?}"),
                        other => other.to_string(),
                    };
                    let _ = tx.send(Err(text));
                    return;
                }
            }
        }
    });
    rx
}

impl Member {
    /// Connects to `addr` as `credentials` with client id `client_id` (clean session). `Err`
    /// says how the broker refused (`connection refused: NotAuthorized`, …).
    pub async fn connect(
        addr: &BrokerAddr,
        credentials: &Credentials,
        client_id: &str,
    ) -> Result<Self, String> {
        let options = mqtt::client::client_options(client_id, addr, Some(credentials), true, false);
        let (client, eventloop) = AsyncClient::new(options, 4096);
        let mut member = Member {
            username: credentials.username.clone(),
            client,
            events: spawn_poller(eventloop),
            inbox: VecDeque::new(),
            closed: None,
        };
        loop {
            match member.next(ANSWER).await {
                Some(Ok(Event::Incoming(Packet::ConnAck(_)))) => return Ok(member),
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error),
                None => return Err("no CONNACK".into()),
            }
        }
    }

    /// Connects with the client id equal to the username, as kairan's own clients do.
    pub async fn connect_as(addr: &BrokerAddr, credentials: &Credentials) -> Result<Self, String> {
        Self::connect(addr, credentials, &credentials.username).await
    }

    /// The next event within `wait`; `None` on timeout. A received publish is kept in the inbox.
    async fn next(&mut self, wait: Duration) -> Option<Result<Event, String>> {
        if let Some(closed) = &self.closed {
            return Some(Err(closed.clone()));
        }
        let event = match tokio::time::timeout(wait, self.events.recv()).await {
            Ok(Some(event)) => event,
            Ok(None) => Err("event loop ended".into()),
            Err(_) => return None,
        };
        match &event {
            Ok(Event::Incoming(Packet::Publish(publish))) => self.inbox.push_back(publish.clone()),
            Err(error) => self.closed = Some(error.clone()),
            Ok(_) => {}
        }
        Some(event)
    }

    /// Subscribes to `filter` (QoS 1) and says what the broker answered.
    pub async fn subscribe(&mut self, filter: &str) -> Subscribed {
        if let Err(error) = self.client.try_subscribe(filter, QoS::AtLeastOnce) {
            return Subscribed::Disconnected(error.to_string());
        }
        loop {
            match self.next(ANSWER).await {
                Some(Ok(Event::Incoming(Packet::SubAck(ack)))) => {
                    return match ack.return_codes.first() {
                        Some(SubscribeReasonCode::Success(_)) => Subscribed::Granted,
                        _ => Subscribed::Refused,
                    };
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => return Subscribed::Disconnected(error),
                None => return Subscribed::Disconnected("no SUBACK".into()),
            }
        }
    }

    /// Publishes `payload` on `topic` (QoS 1) and says what the broker did.
    pub async fn publish(&mut self, topic: &str, payload: Vec<u8>, retain: bool) -> Published {
        if let Err(error) = self.client.try_publish(topic, QoS::AtLeastOnce, retain, payload) {
            return Published::Disconnected(error.to_string());
        }
        loop {
            match self.next(ANSWER).await {
                Some(Ok(Event::Incoming(Packet::PubAck(_)))) => return Published::Acked,
                Some(Ok(_)) => {}
                Some(Err(error)) => return Published::Disconnected(error),
                None => return Published::Disconnected("no PUBACK".into()),
            }
        }
    }

    /// Queues `count` publishes at once (QoS 1) and waits for their acknowledgements; returns
    /// how many the broker acknowledged before it stopped answering or closed the connection.
    pub async fn publish_many(&mut self, topic: &str, payloads: Vec<Vec<u8>>, retain: bool) -> usize {
        let total = payloads.len();
        for payload in payloads {
            if self.client.try_publish(topic, QoS::AtLeastOnce, retain, payload).is_err() {
                break;
            }
        }
        let mut acked = 0;
        while acked < total {
            match self.next(ANSWER).await {
                Some(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            }
        }
        acked
    }

    /// Everything received until nothing more came for `quiet` (or `at_most` passed).
    pub async fn received(&mut self, quiet: Duration, at_most: Duration) -> Vec<Publish> {
        let deadline = tokio::time::Instant::now() + at_most;
        while tokio::time::Instant::now() < deadline {
            match self.next(quiet).await {
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            }
        }
        self.inbox.drain(..).collect()
    }

    /// The next message received within `wait`, if any.
    pub async fn next_message(&mut self, wait: Duration) -> Option<Publish> {
        let deadline = tokio::time::Instant::now() + wait;
        while self.inbox.is_empty() && tokio::time::Instant::now() < deadline {
            match self.next(deadline - tokio::time::Instant::now()).await {
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            }
        }
        self.inbox.pop_front()
    }

    /// Whether the broker has closed the connection (after waiting up to `wait` for it).
    pub async fn is_disconnected(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        while self.closed.is_none() && tokio::time::Instant::now() < deadline {
            let _ = self.next(Duration::from_millis(50)).await;
        }
        self.closed.is_some()
    }

    /// Disconnects politely.
    pub async fn leave(mut self) {
        let _ = self.client.try_disconnect();
        let _ = self.next(Duration::from_millis(100)).await;
    }
}
