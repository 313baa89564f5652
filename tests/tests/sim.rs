//! The deterministic simulation of the tree (`kairan_tests::sim`, `docs/simulation.md`).
//!
//! - `reduced_scale_seeds`: 100 seeds at the reduced scale (2×2×3), in the default run.
//! - `reduced_scale_1000_seeds` (ignored; `.ci/run` runs it): 1,000 seeds at that scale.
//! - `replay_seed` (ignored): the seeds and scale the environment names — how a printed
//!   failure is replayed, and how the full-scale run is made:
//!   `KAIRAN_SIM_SCALE=full cargo test --release -p kairan-tests --test sim replay_seed -- --ignored --nocapture`.
//!
//! Environment: `KAIRAN_SIM_SEED` (one seed), `KAIRAN_SIM_SEEDS` / `KAIRAN_SIM_FIRST_SEED`
//! (a range), `KAIRAN_SIM_SCALE` (`reduced`, `full`, `PxDxC`), `KAIRAN_SIM_ADVISORIES`.

use std::time::Instant;

use kairan_tests::sim::{self, Report, Scale, SimConfig};

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(2)
}

/// Runs the seeds, panicking with every failure (each names its seed and how to replay it).
fn run_seeds(default_count: u64, default_scale: Scale, label: &str) -> Vec<Report> {
    let config = SimConfig::from_env(default_scale).unwrap_or_else(|e| panic!("{e}"));
    let seeds = sim::seeds_from_env(default_count).unwrap_or_else(|e| panic!("{e}"));
    let threads = if seeds.len() == 1 { 1 } else { threads() };
    let started = Instant::now();
    let result = sim::run_many(&seeds, &config, threads);
    let wall = started.elapsed();
    match result {
        Ok(reports) => {
            let simulated: u64 = reports.iter().map(|r| r.quiescent_at_ms).sum();
            let decisions: u64 = reports.iter().map(|r| r.stats.decisions).sum();
            eprintln!(
                "{label}: {} seeds at scale {} passed in {:.1} s wall on {threads} thread(s); {:.1} simulated hours, {decisions} core decisions",
                reports.len(),
                config.scale,
                wall.as_secs_f64(),
                simulated as f64 / 3_600_000.0
            );
            let sum = |f: fn(&Report) -> u64| reports.iter().map(f).sum::<u64>();
            eprintln!(
                "  faults: {} lost, {} duplicated, {} lost to partitions, {} crashes ({} during a flush, {} before forwarding); {} attacks refused; {} gaps reported; {} catch-up deliveries; {} answers past the durable log",
                sum(|r| r.stats.lost),
                sum(|r| r.stats.duplicated),
                sum(|r| r.stats.lost_partition),
                sum(|r| r.stats.crashes + r.stats.crashes_in_flush + r.stats.crashes_before_forward),
                sum(|r| r.stats.crashes_in_flush),
                sum(|r| r.stats.crashes_before_forward),
                sum(|r| r.stats.attacks_refused),
                sum(|r| r.stats.gaps_reported),
                sum(|r| r.stats.sync_deliveries),
                sum(|r| r.stats.answers_beyond_durable),
            );
            if reports.len() == 1 {
                eprintln!("{:#?}", reports[0]);
            }
            reports
        }
        Err(failures) => {
            let seeds: Vec<String> = failures.iter().map(|f| f.seed.to_string()).collect();
            let mut text =
                format!("{} of {} seeds failed: {}\n", failures.len(), seeds.len(), seeds.join(", "));
            for failure in failures.iter().take(3) {
                text.push_str(&format!("\n{failure}\n"));
            }
            panic!("{text}");
        }
    }
}

#[test]
fn reduced_scale_seeds() {
    let reports = run_seeds(100, Scale::REDUCED, "reduced_scale_seeds");
    // The faults really happen (otherwise the seeds prove little).
    let total = |f: fn(&Report) -> u64| reports.iter().map(f).sum::<u64>();
    if reports.len() >= 100 {
        assert!(total(|r| r.stats.lost) > 0 && total(|r| r.stats.duplicated) > 0);
        assert!(total(|r| r.stats.crashes + r.stats.crashes_in_flush + r.stats.crashes_before_forward) > 0);
        assert!(total(|r| r.stats.partitions) > 0 && total(|r| r.stats.lost_partition) > 0);
        assert!(total(|r| r.stats.attacks_refused) > 0 && total(|r| r.stats.gaps_reported) > 0);
        assert!(total(|r| r.stats.sync_deliveries) > 0, "catch-up delivered something");
        assert!(total(|r| r.stats.checkpoints_signed) > 0, "relays signed checkpoints");
        assert!(total(|r| r.stats.parent_logs_verified) > 0, "children verified their parents' logs");
        assert!(total(|r| r.stats.inclusions_verified) > 0, "children proved deliveries included");
        assert!(total(|r| r.stats.broker_refused) > 0, "hostile members met the permission table");
    }
}

#[test]
#[ignore = "1,000 seeds (about a minute); .ci/run runs it"]
fn reduced_scale_1000_seeds() {
    run_seeds(1_000, Scale::REDUCED, "reduced_scale_1000_seeds");
}

#[test]
#[ignore = "runs what the environment names (KAIRAN_SIM_SEED, KAIRAN_SIM_SCALE=full, …)"]
fn replay_seed() {
    run_seeds(1, Scale::REDUCED, "replay_seed");
}

#[test]
fn a_seed_replays_exactly() {
    let config = SimConfig::reduced();
    let first = sim::run(7, &config).unwrap_or_else(|f| panic!("{f}"));
    let again = sim::run(7, &config).unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(first, again, "same seed, same run");
    let other = sim::run(8, &config).unwrap_or_else(|f| panic!("{f}"));
    assert_ne!(first.trace, other.trace, "another seed, another run");
}

#[test]
fn a_larger_tree_converges() {
    // 3 prefectures × 3 districts × 4 clinics, more advisories: still the small-tree profile.
    let config = SimConfig::for_scale(
        Scale { prefectures: 3, districts_per_prefecture: 3, clinics_per_district: 4 },
        Some(12),
    );
    for seed in 0..3 {
        let report = sim::run(seed, &config).unwrap_or_else(|f| panic!("{f}"));
        assert_eq!(report.clinics, 36);
    }
}
