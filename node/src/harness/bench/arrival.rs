//! Arrival detection (one polling thread for every receiver) and the publisher client both
//! sides of the bench share.

use super::*;

// ---------------------------------------------------------------------------------------------
// Arrival detection

/// What one message is, to a receiver.
#[derive(Debug, Clone, Copy)]
pub(super) enum Item {
    /// A kairan advisory, by digest.
    Advisory(Digest),
    /// A Mosquitto bench message, by id.
    Message(u64),
}

/// Who must hold every item.
#[derive(Debug, Clone)]
pub(super) enum Receivers {
    /// kairan stores (clinics or relays).
    Stores(Vec<DiskStore>),
    /// Mosquitto subscribers' received ids.
    Subscribers(Vec<Arc<Mutex<HashSet<u64>>>>),
}

impl Receivers {
    pub(super) fn len(&self) -> usize {
        match self {
            Receivers::Stores(stores) => stores.len(),
            Receivers::Subscribers(subscribers) => subscribers.len(),
        }
    }

    pub(super) fn holds(&self, index: usize, item: Item) -> Result<bool, CliError> {
        match (self, item) {
            (Receivers::Stores(stores), Item::Advisory(digest)) => {
                stores[index].contains(&digest).map_err(|e| CliError::Failed(e.to_string()))
            }
            (Receivers::Subscribers(subscribers), Item::Message(id)) => subscribers[index]
                .lock()
                .map(|received| received.contains(&id))
                .map_err(|_| CliError::Failed("a subscriber task panicked".into())),
            _ => Err(CliError::Failed("bench: item and receiver kinds differ".into())),
        }
    }
}

/// Blocks until every receiver holds every item; returns when that was first seen.
pub(super) fn wait_all_blocking(
    receivers: &Receivers,
    items: &[Item],
    timeout: Duration,
) -> Result<Instant, CliError> {
    let started = Instant::now();
    // Items are checked in order per receiver: `next[r]` items are known to be held by r.
    let mut next = vec![0usize; receivers.len()];
    let mut pending: Vec<usize> = (0..receivers.len()).collect();
    loop {
        let mut still = Vec::with_capacity(pending.len());
        for &receiver in &pending {
            while next[receiver] < items.len() && receivers.holds(receiver, items[next[receiver]])? {
                next[receiver] += 1;
                watchdog::beat();
            }
            if next[receiver] < items.len() {
                still.push(receiver);
            }
        }
        pending = still;
        if pending.is_empty() {
            return Ok(Instant::now());
        }
        if started.elapsed() > timeout {
            let least = pending.iter().map(|r| next[*r]).min().unwrap_or(0);
            return Err(CliError::Failed(format!(
                "{} of {} receivers still miss items after {timeout:?} (the slowest holds {least} of {})",
                pending.len(),
                receivers.len(),
                items.len()
            )));
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Starts the detector on a blocking thread (it starts looking at once).
pub(super) fn spawn_wait_all(
    receivers: Receivers,
    items: Vec<Item>,
    timeout: Duration,
) -> JoinHandle<Result<Instant, CliError>> {
    tokio::task::spawn_blocking(move || wait_all_blocking(&receivers, &items, timeout))
}

pub(super) async fn joined(handle: JoinHandle<Result<Instant, CliError>>) -> Result<Instant, CliError> {
    handle.await.map_err(|e| CliError::Failed(format!("arrival detector: {e}")))?
}

// ---------------------------------------------------------------------------------------------
// Publisher

/// One persistent MQTT connection publishing with QoS 1.
#[derive(Debug)]
pub(super) struct Publisher {
    pub(super) client: AsyncClient,
    pub(super) task: JoinHandle<()>,
    /// The TLS tunnel of an `mqtts://` broker (kept as long as the connection).
    _tunnel: Option<crate::tls::Tunnel>,
}

impl Publisher {
    pub(super) async fn connect(
        addr: &BrokerAddr,
        peer: Option<crate::tls::PeerCheck>,
        credentials: Option<&Credentials>,
        client_id: &str,
    ) -> Result<Self, CliError> {
        let link = mqtt::LinkConfig {
            addr: addr.clone(),
            peer,
            credentials: credentials.cloned(),
            client_id: client_id.to_owned(),
        };
        let connection = mqtt::connect(&link, true, false, REQUEST_CHANNEL_CAPACITY)
            .map_err(|e| CliError::Failed(e.to_string()))?;
        let (client, mut eventloop, tunnel) = (connection.client, connection.eventloop, connection.tunnel);
        let connected = Arc::new(AtomicBool::new(false));
        let last_error = Arc::new(Mutex::new(None::<String>));
        let task = tokio::spawn({
            let (connected, last_error) = (connected.clone(), last_error.clone());
            async move {
                loop {
                    match eventloop.poll().await {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => connected.store(true, Ordering::SeqCst),
                        Ok(_) => {}
                        Err(error) => {
                            connected.store(false, Ordering::SeqCst);
                            if let Ok(mut last) = last_error.lock() {
                                *last = Some(error.to_string());
                            }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while !connected.load(Ordering::SeqCst) {
            if Instant::now() > deadline {
                task.abort();
                let reason =
                    last_error.lock().ok().and_then(|e| e.clone()).unwrap_or_else(|| "no answer".into());
                return Err(CliError::Failed(format!(
                    "bench publisher cannot connect to {}: {reason}",
                    addr.url()
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(Self { client, task, _tunnel: tunnel })
    }

    pub(super) async fn publish(&self, topic: &str, bytes: Vec<u8>) -> Result<(), CliError> {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, bytes)
            .await
            .map_err(|e| CliError::Failed(format!("bench publish: {e}")))
    }

    pub(super) async fn close(self) {
        let _ = self.client.try_disconnect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.task.abort();
    }
}
