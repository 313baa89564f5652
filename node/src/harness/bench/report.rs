//! The bench report: the machine, the figures, the ratios, as Markdown.

use super::*;

// ---------------------------------------------------------------------------------------------
// Report

/// What the report says about the machine.
#[derive(Debug, Clone, Default)]
pub(super) struct Machine {
    pub(super) cpu: Option<String>,
    pub(super) cores: usize,
    pub(super) memory_gib: Option<f64>,
    pub(super) open_files: Option<u64>,
    /// Load average (1, 5, 15 min) when the bench started: other work on the machine.
    pub(super) load: Option<String>,
    /// 4 KiB writes + fdatasync per second on one file in the temporary directory: what one
    /// durable store write costs on this disk.
    pub(super) fsyncs_per_sec: Option<f64>,
}

/// Times 100 × (4 KiB write + fdatasync) on a file in the temporary directory.
pub(super) fn fsync_rate() -> Option<f64> {
    let mut file = tempfile::tempfile().ok()?;
    let block = [0u8; 4096];
    let started = Instant::now();
    for _ in 0..100 {
        file.write_all(&block).ok()?;
        file.sync_data().ok()?;
    }
    Some(100.0 / started.elapsed().as_secs_f64().max(1e-9))
}

/// Threads, open descriptors and resident memory of this process (Linux `/proc`).
pub(super) fn process_resources() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(str::to_owned)
    };
    let fds = std::fs::read_dir("/proc/self/fd").ok()?.count();
    let rss_mib = field("VmRSS:")?.parse::<f64>().ok()? / 1024.0;
    Some(format!("{} threads, {fds} open descriptors, {rss_mib:.0} MiB resident", field("Threads:")?))
}

/// `/proc/loadavg`'s first three fields.
pub(super) fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

impl Machine {
    pub(super) fn probe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|line| line.starts_with("model name"))
            .and_then(|line| line.split_once(':'))
            .map(|(_, model)| model.trim().to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_gib = meminfo
            .lines()
            .find(|line| line.starts_with("MemTotal:"))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kib| kib.parse::<f64>().ok())
            .map(|kib| kib / (1024.0 * 1024.0));
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let open_files = limits
            .lines()
            .find(|line| line.starts_with("Max open files"))
            .and_then(|line| line.split_whitespace().nth(3))
            .and_then(|soft| soft.parse::<u64>().ok());
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        Self { cpu, cores, memory_gib, open_files, load: load_average(), fsyncs_per_sec: fsync_rate() }
    }
}

pub(super) fn ms(duration: Option<Duration>) -> String {
    duration.map_or_else(|| "–".into(), |d| format!("{:.2} ms", d.as_secs_f64() * 1000.0))
}

pub(super) fn rate(value: Option<f64>) -> String {
    value.map_or_else(|| "–".into(), |v| if v >= 100.0 { format!("{v:.0}") } else { format!("{v:.1}") })
}

pub(super) fn ratio(kairan: Option<f64>, mosquitto: Option<f64>) -> String {
    match (kairan, mosquitto) {
        (Some(k), Some(m)) if m > 0.0 => format!("{:.1}×", k / m),
        _ => "–".into(),
    }
}

pub(super) fn secs(duration: Option<Duration>) -> Option<f64> {
    duration.map(|d| d.as_secs_f64())
}

pub(super) fn render(
    options: &BenchOptions,
    machine: &Machine,
    mosquitto: Option<&Path>,
    results: &[NResult],
    elapsed: Duration,
) -> String {
    let mut out = String::new();
    let now = crate::clock::now().to_rfc3339();
    let _ = writeln!(out, "### kairan bench, {}\n", &now[..now.len().min(19)]);
    let _ = writeln!(
        out,
        "Machine: {} logical CPU(s), {}, {} RAM; open-file limit {}; {} durable 4 KiB writes/s \
         (write + fdatasync, one file); load average {} at start, {} at end. \
         kairan {} ({} build). Whole run {:.0} s.\n",
        machine.cores,
        machine.cpu.as_deref().unwrap_or("unknown CPU"),
        machine.memory_gib.map_or_else(|| "unknown".into(), |g| format!("{g:.1} GiB")),
        machine.open_files.map_or_else(|| "unknown".into(), |n| n.to_string()),
        rate(machine.fsyncs_per_sec),
        machine.load.as_deref().unwrap_or("unknown"),
        load_average().unwrap_or_else(|| "unknown".into()),
        env!("CARGO_PKG_VERSION"),
        if cfg!(debug_assertions) { "DEBUG — not representative" } else { "release" },
        elapsed.as_secs_f64()
    );
    let _ = writeln!(out, "District broker in the kairan tree: {}.\n", options.district_broker.describe());
    match mosquitto {
        Some(binary) => {
            let version = Command::new(binary)
                .arg("-h")
                .output()
                .ok()
                .and_then(|o| String::from_utf8_lossy(&o.stdout).lines().next().map(str::to_owned))
                .unwrap_or_else(|| binary.display().to_string());
            let _ = writeln!(
                out,
                "Reference: {version} ({}), one process per relay, bridged child → parent.\n",
                binary.display()
            );
        }
        None if options.mosquitto => {
            let _ = writeln!(out, "Reference: mosquitto is not installed; the Mosquitto column is empty.\n");
        }
        None => {
            let _ = writeln!(out, "Reference: not run (--no-mosquitto).\n");
        }
    }
    let _ = writeln!(
        out,
        "| N clinics | districts × clinics | kairan p50 | kairan p99 | kairan adv/s | Mosquitto p50 | Mosquitto p99 | Mosquitto adv/s | p50 ratio | adv/s ratio |"
    );
    let _ = writeln!(out, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for result in results {
        let k = &result.kairan;
        let m = result.mosquitto.as_ref();
        let _ = writeln!(
            out,
            "| {} | {} × {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            result.shape.clinics,
            result.shape.districts,
            result.shape.per_district,
            ms(k.percentile(50.0)),
            ms(k.percentile(99.0)),
            rate(Some(k.advisories_per_sec())),
            ms(m.and_then(|m| m.percentile(50.0))),
            ms(m.and_then(|m| m.percentile(99.0))),
            rate(m.map(Measured::advisories_per_sec)),
            ratio(secs(k.percentile(50.0)), secs(m.and_then(|m| m.percentile(50.0)))),
            ratio(m.map(Measured::advisories_per_sec), Some(k.advisories_per_sec())),
        );
    }
    let _ = writeln!(
        out,
        "\nRatios: p50 ratio = kairan latency ÷ Mosquitto latency; adv/s ratio = Mosquitto throughput ÷ kairan throughput (both: how many times the bridge chain is faster).\n"
    );
    for result in results {
        let shape = result.shape;
        let k = &result.kairan;
        let m = result.mosquitto.as_ref();
        let _ = writeln!(
            out,
            "#### N = {} (national → 1 prefecture → {} district(s) → {} clinics each)\n",
            shape.clinics, shape.districts, shape.per_district
        );
        let _ = writeln!(
            out,
            "Payload: {} bytes published (the signed sample advisory with the origin certificate); {} bytes as stored at a clinic (three hop attestations added). Mosquitto carries the published bytes unchanged.\n",
            k.published_bytes, k.received_bytes
        );
        let _ = writeln!(out, "| measure | kairan | Mosquitto bridges | ratio |");
        let _ = writeln!(out, "|---|---:|---:|---:|");
        let lat = |p: f64, label: &str, out: &mut String| {
            let kv = k.percentile(p);
            let mv = m.and_then(|m| m.percentile(p));
            let _ = writeln!(out, "| {label} | {} | {} | {} |", ms(kv), ms(mv), ratio(secs(kv), secs(mv)));
        };
        lat(50.0, "latency p50, publish → all N stored", &mut out);
        lat(99.0, "latency p99", &mut out);
        let _ = writeln!(
            out,
            "| latency samples | {} | {} | |",
            k.latencies.len(),
            m.map_or_else(|| "–".into(), |m| m.latencies.len().to_string())
        );
        let kr = Some(k.advisories_per_sec());
        let mr = m.map(Measured::advisories_per_sec);
        let _ = writeln!(
            out,
            "| throughput, advisories/s (all N hold all K) | {} | {} | {} |",
            rate(kr),
            rate(mr),
            ratio(mr, kr)
        );
        let kd = kr.map(|r| r * shape.clinics as f64);
        let md = mr.map(|r| r * shape.clinics as f64);
        let _ = writeln!(
            out,
            "| throughput, deliveries/s (K·N/s) | {} | {} | {} |",
            rate(kd),
            rate(md),
            ratio(md, kd)
        );
        let _ = writeln!(
            out,
            "| K (advisories back to back), time | {} in {:.2} s | {} | |",
            k.batch,
            k.batch_elapsed.as_secs_f64(),
            m.map_or_else(
                || "–".into(),
                |m| format!("{} in {:.2} s", m.batch, m.batch_elapsed.as_secs_f64())
            )
        );
        for (level, per_sec) in k.relay_advisories_per_sec() {
            let _ = writeln!(
                out,
                "| relays alone: advisories/s until every {level} relay holds all K | {} | – | |",
                rate(Some(per_sec))
            );
        }
        let _ = writeln!(
            out,
            "| set-up (start, connect, subscribe) | {:.1} s | {} | |\n",
            k.setup.as_secs_f64(),
            m.map_or_else(|| "–".into(), |m| format!("{:.1} s", m.setup.as_secs_f64()))
        );
        if let Some(resources) = &k.resources {
            let _ = writeln!(out, "kairan process after the throughput run: {resources}.\n");
        }
    }
    out
}
