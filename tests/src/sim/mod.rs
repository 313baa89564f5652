//! A deterministic simulator of the whole tree around the real node state machine.
//!
//! Every national, prefectural and district relay and every clinic is the daemon's own
//! [`kairan_node::machine::Machine`] with real keys and certificates — the same code the
//! daemon drives, with its catch-up, publisher window, group commit, trust updates, heads and
//! throttling. What the simulator replaces is the I/O: MQTT becomes a network of messages
//! with loss, duplication, delays (hence reordering) and partitions, and brokers that route
//! by topic and keep retained messages; sled becomes a [`kairan_node::store::MemStore`] disk
//! whose commits take time and are lost in a crash; processes crash and restart from what
//! was committed. Time is simulated, so a run of the national tree covers minutes of
//! simulated time in however much wall time verification takes.
//!
//! `docs/simulation.md` describes the model and the invariants and reports the runs.
//!
//! ```no_run
//! use kairan_tests::sim::{SimConfig, run};
//! match run(42, &SimConfig::reduced()) {
//!     Ok(report) => println!("quiescent at {} ms", report.quiescent_at_ms),
//!     Err(failure) => panic!("{failure}"), // names the seed and how to replay it
//! }
//! ```
//!
//! ## Layout
//! - [`config`]: [`Scale`] (reduced 2×2×3, full 47×19×112, or any `PxDxC`), [`SimConfig`]
//!   (faults, timing, re-verification), read from `KAIRAN_SIM_SCALE` / `KAIRAN_SIM_ADVISORIES`.
//! - `tree`: keys derived from the seed, certificates made as the harness makes them, the
//!   genuine advisories and trust updates of the run.
//! - `world`: the event queue, planning, the heal, quiescence; [`run`], [`Report`], [`Failure`].
//! - `node`: a node — the machine, its disk, its actions performed, crash and restart, the
//!   online invariants on what is committed.
//! - `net`: the network and the brokers (topic routing, retained messages), and what each
//!   input must come to (genuine accepted, hostile refused).
//! - `adversary`: forged, tampered, misrouted and equivocating input.
//! - `hostile`: hostile members — floods, forged heads, junk trust bundles, bogus requests.
//! - `member`: the brokers' permission table (`kairan_node::authz::Grants`) applied to every
//!   publish and subscription of the model, and a hostile member's moves against it: topics
//!   outside its rows, a catch-up request for the whole country, a forged page for a sibling,
//!   a revocation of an origin by a relay that minted a certificate for the origin's key.
//! - `check`: the invariants checked once the tree is quiescent.

mod adversary;
mod check;
pub mod config;
mod hostile;
mod member;
mod net;
mod node;
mod tree;
mod world;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

pub use adversary::AttackKind;
pub use config::{Faults, Scale, SimConfig, Targets, Timing, VerifyStored};
pub use hostile::HostileKind;
pub use tree::EPOCH;
pub use world::{Failure, Report, Stats, run};

/// Runs `seeds` on up to `threads` threads (each run is single-threaded and independent, so
/// this changes nothing in any run). Returns every report, in seed order, or every failure.
pub fn run_many(seeds: &[u64], config: &SimConfig, threads: usize) -> Result<Vec<Report>, Vec<Failure>> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Result<Report, Failure>)>> = Mutex::new(Vec::with_capacity(seeds.len()));
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    let Some(&seed) = seeds.get(index) else { break };
                    let result = run(seed, config);
                    results.lock().unwrap_or_else(|e| e.into_inner()).push((index, result));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.sort_by_key(|(index, _)| *index);
    let mut reports = Vec::new();
    let mut failures = Vec::new();
    for (_, result) in results {
        match result {
            Ok(report) => reports.push(report),
            Err(failure) => failures.push(failure),
        }
    }
    if failures.is_empty() { Ok(reports) } else { Err(failures) }
}

/// The seeds selected by the environment: `KAIRAN_SIM_SEED=<n>` replays that one seed;
/// otherwise `KAIRAN_SIM_SEEDS=<count>` (from `KAIRAN_SIM_FIRST_SEED`, default 0) or
/// `default_count` seeds from 0.
pub fn seeds_from_env(default_count: u64) -> Result<Vec<u64>, String> {
    let number = |name: &str| -> Result<Option<u64>, String> {
        match std::env::var(name) {
            Ok(text) => {
                text.trim().parse().map(Some).map_err(|_| format!("{name}={text:?}: expected a number"))
            }
            Err(_) => Ok(None),
        }
    };
    if let Some(seed) = number("KAIRAN_SIM_SEED")? {
        return Ok(vec![seed]);
    }
    let first = number("KAIRAN_SIM_FIRST_SEED")?.unwrap_or(0);
    let count = number("KAIRAN_SIM_SEEDS")?.unwrap_or(default_count);
    Ok((first..first.saturating_add(count)).collect())
}
