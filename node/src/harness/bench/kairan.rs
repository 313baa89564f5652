//! The kairan side of the bench: a tree started in this process, measured.

use super::*;

// ---------------------------------------------------------------------------------------------
// kairan

/// Measures kairan at one N; also returns the delivery bytes an origin publishes, for the
/// Mosquitto side.
pub(super) async fn bench_kairan(
    shape: &Shape,
    options: &BenchOptions,
    started: Instant,
) -> Result<(Measured, Vec<u8>), CliError> {
    let setup_started = Instant::now();
    let temp = tempfile::Builder::new()
        .prefix("kairan-bench-")
        .tempdir()
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let mut builder = HierarchyBuilder::new(temp.path())
        .prefectures(1)
        .districts_per_prefecture(shape.districts)
        .clinics_per_district(shape.per_district);
    let unavailable =
        |what: &str| CliError::Usage(format!("--district-broker {what}: {what} is not installed"));
    builder = match options.district_broker {
        DistrictBroker::Embedded => builder,
        DistrictBroker::Mosquitto => builder.external_broker(
            Level::District,
            crate::harness::mosquitto::Mosquitto::prepare_if_available(false)
                .ok_or_else(|| unavailable("mosquitto"))?,
        ),
        DistrictBroker::Rabbitmq => builder.external_broker(
            Level::District,
            crate::harness::rabbitmq::RabbitMq::prepare_if_available()
                .ok_or_else(|| unavailable("rabbitmq"))?,
        ),
    };
    let mut tree = builder.start().await?;
    let connect_timeout = Duration::from_secs(30) + Duration::from_millis(50 * shape.clinics as u64);
    tree.wait_subscribed(connect_timeout).await?;
    let setup = setup_started.elapsed();
    progress(
        options,
        started,
        &format!(
            "  kairan: {} relays and {} clinics connected in {:.1}s",
            tree.relays.len(),
            tree.clinics.len(),
            setup.as_secs_f64()
        ),
    );

    let stores = |handles: Vec<Option<&DiskStore>>| -> Result<Receivers, CliError> {
        handles
            .into_iter()
            .map(|store| store.cloned().ok_or_else(|| CliError::Failed("a node is stopped".into())))
            .collect::<Result<Vec<_>, _>>()
            .map(Receivers::Stores)
    };
    let clinics = stores(tree.clinics.iter().map(|c| c.handle.as_ref().map(|h| h.store())).collect())?;
    let mut levels = Vec::new();
    for (name, level) in
        [("national", Level::National), ("prefecture", Level::Prefecture), ("district", Level::District)]
    {
        let relays =
            tree.relays.iter().filter(|r| r.level == level).map(|r| r.handle.as_ref().map(|h| h.store()));
        levels.push((name, stores(relays.collect())?));
    }

    // The payload: the first sample advisory, re-dated to now, a distinct id per message.
    let (name, text) = SAMPLES[0];
    let mut draft =
        AdvisoryDraft::parse(text).map_err(|e| CliError::Failed(format!("sample {name}: {e}")))?;
    draft.issued_at = None;
    draft.expires_at = None;
    draft.valid_days = Some(30);
    let base = draft
        .into_advisory(crate::clock::now(), None)
        .map_err(|e| CliError::Failed(format!("sample {name}: {e}")))?;
    let mut next = |number: usize| -> (Vec<u8>, Item) {
        let mut advisory = base.clone();
        advisory.id = format!("{}-BENCH-{number:06}", base.id);
        let (bytes, digest) = tree.sign_next(advisory);
        (bytes, Item::Advisory(digest))
    };
    let mut number = 0usize;
    let mut take = |count: usize| -> Vec<(Vec<u8>, Item)> {
        (0..count)
            .map(|_| {
                number += 1;
                next(number)
            })
            .collect()
    };
    let workload =
        Workload { warmup: take(2), samples: take(options.latency_samples), batch: take(shape.batch) };
    let payload = workload.warmup.first().map(|(bytes, _)| bytes.clone()).unwrap_or_default();
    let first_digest = match workload.warmup.first() {
        Some((_, Item::Advisory(digest))) => Some(*digest),
        _ => None,
    };

    let addr = tree.national_broker()?;
    // The broker binds client ids to usernames: the origin connects as itself.
    let client_id = tree.origin.credentials.as_ref().map_or("mhlw", |c| c.username.as_str()).to_owned();
    let publisher =
        Publisher::connect(&addr, Some(tree.peer_of(0)), tree.origin.credentials.as_ref(), &client_id)
            .await?;
    let measured = measure(
        "kairan",
        &publisher,
        &crate::topics::ingest_of(&tree.national().config_parts.id, &tree.origin.id),
        &clinics,
        &levels,
        workload,
        options,
        started,
    )
    .await;
    publisher.close().await;
    // What a clinic holds: the delivery with one hop attestation per relay.
    let resources = process_resources();
    let received_bytes = match (first_digest, tree.clinics.first().and_then(|c| c.handle.as_ref())) {
        (Some(digest), Some(handle)) => {
            handle.store().get(&digest).ok().flatten().map_or(0, |r| r.delivery.len())
        }
        _ => 0,
    };
    // The bench's own handles on the stores go first, so that each database closes with its
    // node (and before its directory is removed).
    drop(clinics);
    drop(levels);
    progress(options, started, "  kairan: shutting the tree down");
    // A relay that cannot stop must not hang the bench.
    let grace = Duration::from_secs(60) + Duration::from_millis(20 * shape.clinics as u64);
    let stopped = tokio::time::timeout(grace, tree.shutdown())
        .await
        .unwrap_or_else(|_| Err(CliError::Failed(format!("the tree did not shut down within {grace:?}"))));
    let run = measured?;
    stopped?;
    drop(temp);
    let measured = Measured {
        latencies: run.latencies,
        batch: run.batch,
        batch_elapsed: run.batch_elapsed,
        relay_elapsed: run.relay_elapsed,
        published_bytes: payload.len(),
        received_bytes,
        setup,
        resources,
    };
    Ok((measured, payload))
}
