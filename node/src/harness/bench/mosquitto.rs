//! The Mosquitto side of the bench: a chain of bridged Mosquitto processes and subscribers.

use super::*;

/// Finds `mosquitto` (the harness's launcher looks where distributions install it).
pub(super) fn find_mosquitto() -> Option<PathBuf> {
    crate::harness::mosquitto::which("mosquitto")
}

/// Mosquitto processes, killed when dropped (also on error paths).
#[derive(Debug, Default)]
pub(super) struct MosquittoChain {
    pub(super) children: Vec<(String, Child)>,
}

impl Drop for MosquittoChain {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The configuration of one broker of the chain; `parent` = (bridge name, parent port).
pub(super) fn mosquitto_config(port: u16, parent: Option<(&str, u16)>, log: &Path) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "# kairan bench: one broker of the Mosquitto bridge chain");
    let _ = writeln!(text, "listener {port} 127.0.0.1");
    let _ = writeln!(text, "allow_anonymous true");
    // No persistence: Mosquitto's persistence is a periodic snapshot, never a write per
    // message, so it would not make the comparison closer to kairan's flushed stores anyway.
    let _ = writeln!(text, "persistence false");
    // The same in-flight window as kairan's brokers and clients (100), and no queue cut-off
    // for the throughput batch.
    let _ = writeln!(text, "max_inflight_messages 100");
    let _ = writeln!(text, "max_queued_messages 100000");
    let _ = writeln!(text, "log_dest file {}", log.display());
    let _ = writeln!(text, "log_type error");
    let _ = writeln!(text, "log_type warning");
    let _ = writeln!(text, "log_type notice");
    if let Some((name, parent_port)) = parent {
        let _ = writeln!(text, "connection {name}");
        let _ = writeln!(text, "address 127.0.0.1:{parent_port}");
        let _ = writeln!(text, "topic bench/# in 1");
        let _ = writeln!(text, "cleansession false");
        let _ = writeln!(text, "bridge_protocol_version mqttv311");
        let _ = writeln!(text, "restart_timeout 1");
    }
    text
}

impl MosquittoChain {
    /// Starts one broker and waits until it accepts connections.
    pub(super) fn start(
        &mut self,
        binary: &Path,
        dir: &Path,
        name: &str,
        parent: Option<(&str, u16)>,
    ) -> Result<u16, CliError> {
        let port = crate::harness::mosquitto::free_port();
        let config_path = dir.join(format!("{name}.conf"));
        let log_path = dir.join(format!("{name}.log"));
        std::fs::write(&config_path, mosquitto_config(port, parent, &log_path))
            .map_err(|e| CliError::io(&config_path, e))?;
        let child = Command::new(binary)
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| CliError::Failed(format!("cannot start {}: {e}", binary.display())))?;
        self.children.push((name.to_owned(), child));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            let exited = self.children.last_mut().and_then(|(_, child)| child.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(CliError::Failed(format!(
                    "mosquitto {name} did not start listening on {addr}: {}",
                    log.trim()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(port)
    }
}

/// One subscriber standing in for a clinic: records the ids it received.
#[derive(Debug)]
pub(super) struct Subscriber {
    pub(super) received: Arc<Mutex<HashSet<u64>>>,
    pub(super) subscribed: Arc<AtomicBool>,
    pub(super) client: AsyncClient,
    pub(super) task: JoinHandle<()>,
}

pub(super) fn message_id(payload: &[u8]) -> Option<u64> {
    payload.get(..8).and_then(|head| head.try_into().ok()).map(u64::from_be_bytes)
}

/// The bench payload: the kairan delivery bytes with the message id in the first 8 bytes.
pub(super) fn stamped(payload: &[u8], id: u64) -> Vec<u8> {
    let mut bytes = payload.to_vec();
    if bytes.len() < 8 {
        bytes.resize(8, b' ');
    }
    bytes[..8].copy_from_slice(&id.to_be_bytes());
    bytes
}

pub(super) fn start_subscriber(
    addr: &BrokerAddr,
    client_id: &str,
    duplicates: Arc<AtomicU64>,
) -> Result<Subscriber, CliError> {
    // The clinics' client options: persistent session, QoS 1, large packets; acks automatic
    // (there is nothing to store first).
    let options = mqtt::client::client_options(client_id, addr, None, false, false);
    let (client, mut eventloop) = AsyncClient::new(options, REQUEST_CHANNEL_CAPACITY);
    client
        .try_subscribe("bench/#", QoS::AtLeastOnce)
        .map_err(|e| CliError::Failed(format!("subscribe: {e}")))?;
    let received = Arc::new(Mutex::new(HashSet::new()));
    let subscribed = Arc::new(AtomicBool::new(false));
    let task = tokio::spawn({
        let (received, subscribed) = (received.clone(), subscribed.clone());
        async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        if let Some(id) = message_id(&publish.payload) {
                            let fresh = received.lock().map(|mut set| set.insert(id)).unwrap_or(true);
                            if !fresh {
                                duplicates.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => subscribed.store(true, Ordering::SeqCst),
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }
    });
    Ok(Subscriber { received, subscribed, client, task })
}

pub(super) async fn bench_mosquitto(
    binary: &Path,
    shape: &Shape,
    payload: &[u8],
    options: &BenchOptions,
    started: Instant,
) -> Result<Measured, CliError> {
    let setup_started = Instant::now();
    let temp = tempfile::Builder::new()
        .prefix("kairan-bench-mosquitto-")
        .tempdir()
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let mut chain = MosquittoChain::default();
    let national = chain.start(binary, temp.path(), "national", None)?;
    let prefecture =
        chain.start(binary, temp.path(), "prefecture", Some(("prefecture-to-national", national)))?;
    let mut district_ports = Vec::new();
    for district in 0..shape.districts {
        let name = format!("district-{}", district + 1);
        let bridge = format!("{name}-to-prefecture");
        district_ports.push(chain.start(binary, temp.path(), &name, Some((&bridge, prefecture)))?);
    }
    let duplicates = Arc::new(AtomicU64::new(0));
    let mut subscribers = Vec::with_capacity(shape.clinics);
    for (district, port) in district_ports.iter().enumerate() {
        let addr = BrokerAddr { host: "127.0.0.1".into(), port: *port, tls: false };
        for clinic in 0..shape.per_district {
            subscribers.push(start_subscriber(
                &addr,
                &format!("bench-d{}-c{}", district + 1, clinic + 1),
                duplicates.clone(),
            )?);
        }
    }
    let result = async {
        let deadline =
            Instant::now() + Duration::from_secs(30) + Duration::from_millis(50 * shape.clinics as u64);
        while !subscribers.iter().all(|s| s.subscribed.load(Ordering::SeqCst)) {
            if Instant::now() > deadline {
                return Err(CliError::Failed("Mosquitto subscribers did not all subscribe in time".into()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let receivers = Receivers::Subscribers(subscribers.iter().map(|s| s.received.clone()).collect());
        let publisher = Publisher::connect(
            &BrokerAddr { host: "127.0.0.1".into(), port: national, tls: false },
            None,
            None,
            "bench-publisher",
        )
        .await?;
        // The bridges connect on their own schedule: probe until a message crosses all of them.
        let mut probe = PROBE_ID_BASE;
        loop {
            publisher.publish(BENCH_TOPIC, stamped(payload, probe)).await?;
            match joined(spawn_wait_all(
                receivers.clone(),
                vec![Item::Message(probe)],
                Duration::from_millis(500),
            ))
            .await
            {
                Ok(_) => break,
                Err(_) if Instant::now() < deadline => probe += 1,
                Err(error) => {
                    return Err(CliError::Failed(format!("the Mosquitto bridges did not connect: {error}")));
                }
            }
        }
        let setup = setup_started.elapsed();
        progress(
            options,
            started,
            &format!(
                "  mosquitto: {} brokers bridged, {} subscribers in {:.1}s",
                chain.children.len(),
                subscribers.len(),
                setup.as_secs_f64()
            ),
        );
        let mut id = 0u64;
        let mut take = |count: usize| -> Vec<(Vec<u8>, Item)> {
            (0..count)
                .map(|_| {
                    id += 1;
                    (stamped(payload, id), Item::Message(id))
                })
                .collect()
        };
        let workload = Workload {
            warmup: vec![(stamped(payload, probe + 1), Item::Message(probe + 1))],
            samples: take(options.latency_samples),
            batch: take(shape.batch),
        };
        let measured =
            measure("mosquitto", &publisher, BENCH_TOPIC, &receivers, &[], workload, options, started).await;
        publisher.close().await;
        let run = measured?;
        Ok(Measured {
            latencies: run.latencies,
            batch: run.batch,
            batch_elapsed: run.batch_elapsed,
            relay_elapsed: Vec::new(),
            published_bytes: payload.len(),
            received_bytes: payload.len(),
            setup,
            resources: None,
        })
    }
    .await;
    for subscriber in subscribers {
        let _ = subscriber.client.try_disconnect();
        subscriber.task.abort();
    }
    let repeated = duplicates.load(Ordering::Relaxed);
    if repeated > 0 {
        progress(
            options,
            started,
            &format!("  mosquitto: {repeated} duplicate deliveries (QoS 1 redelivery)"),
        );
    }
    drop(chain);
    drop(temp);
    result
}
