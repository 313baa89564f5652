//! What a simulation run is: the size of the tree, the advisories, the faults and the timing.
//! A run is a pure function of `(seed, SimConfig)`, and a config is a pure function of the
//! scale and the advisory count ([`SimConfig::for_scale`]), so a seed and those two values
//! replay a run exactly.

use std::fmt;

/// The shape of the tree: 1 national, `prefectures`, `districts_per_prefecture` under each,
/// `clinics_per_district` under each district.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scale {
    /// Prefectural relays (1..=47).
    pub prefectures: usize,
    /// Districts under each prefecture.
    pub districts_per_prefecture: usize,
    /// Clinics under each district.
    pub clinics_per_district: usize,
}

impl Scale {
    /// The CI scale: 2 prefectures × 2 districts × 3 clinics (19 nodes).
    pub const REDUCED: Scale = Scale { prefectures: 2, districts_per_prefecture: 2, clinics_per_district: 3 };
    /// The national tree: 47 prefectures × 19 districts (893) × 112 clinics (100,016).
    pub const FULL: Scale =
        Scale { prefectures: 47, districts_per_prefecture: 19, clinics_per_district: 112 };

    /// `reduced`, `full`, or `PxDxC` (e.g. `47x19x112`).
    pub fn parse(text: &str) -> Result<Scale, String> {
        match text.trim() {
            "reduced" => return Ok(Self::REDUCED),
            "full" => return Ok(Self::FULL),
            _ => {}
        }
        let parts: Vec<&str> = text.trim().split('x').collect();
        let numbers: Vec<usize> = parts.iter().filter_map(|p| p.parse().ok()).collect();
        match numbers.as_slice() {
            [p, d, c] if parts.len() == 3 && (1..=47).contains(p) && *d >= 1 && *c >= 1 => {
                Ok(Scale { prefectures: *p, districts_per_prefecture: *d, clinics_per_district: *c })
            }
            _ => Err(format!(
                "scale {text:?}: expected `reduced`, `full` or PxDxC with 1 ≤ P ≤ 47, D ≥ 1, C ≥ 1"
            )),
        }
    }

    /// Relays: national, prefectures and districts.
    pub fn relays(&self) -> usize {
        1 + self.prefectures + self.prefectures * self.districts_per_prefecture
    }

    /// Clinics.
    pub fn clinics(&self) -> usize {
        self.prefectures * self.districts_per_prefecture * self.clinics_per_district
    }
}

impl fmt::Display for Scale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}x{}", self.prefectures, self.districts_per_prefecture, self.clinics_per_district)
    }
}

/// Where a number of faults strike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Targets {
    /// This many, each at a node of a level drawn uniformly (national, prefecture, district,
    /// clinic), so that the few upper relays take their share in a small tree.
    AnyLevel(usize),
    /// This many at each level: national, prefectures, districts, clinics (a node of the
    /// level drawn uniformly each time).
    PerLevel([usize; 4]),
}

/// The faults injected before the heal time. After it: no loss, no duplication, no crash,
/// no partition (delays stay: they are the network, not a fault).
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// Probability that a message is lost.
    pub loss: f64,
    /// Probability that a message is delivered twice (each copy with its own delay).
    pub duplicate: f64,
    /// Probability that a message takes the slow path (`Timing::slow_delay_ms`).
    pub slow: f64,
    /// Scheduled node crashes (nodes and times drawn at random).
    pub crashes: Targets,
    /// Probability that a node crashes while a flush is in flight (the write is lost, the
    /// input was not acknowledged).
    pub crash_in_flush: f64,
    /// Probability that a relay crashes after the flush but before it forwarded (the store
    /// has it; the publisher republishes from its durable cursor at restart).
    pub crash_before_forward: f64,
    /// Probability that an unacknowledged input is redelivered after the receiver restarts
    /// (the broker kept the session); otherwise it is lost.
    pub redeliver: f64,
    /// Partitions: a random subtree cut off from its parent for a while.
    pub partitions: Targets,
    /// Hostile inputs injected at random nodes (forged, tampered, misrouted, equivocating).
    pub attacks: usize,
    /// Moves of hostile members (a compromised relay or clinic with broker credentials):
    /// floods of junk, forged heads, junk trust bundles, bogus catch-up requests.
    pub hostile_moves: usize,
    /// Genuine trust updates the root pushes into the national control topic (each revokes
    /// one more key that no genuine party uses): every node must end up holding the last.
    pub trust_pushes: usize,
    /// Each node's clock is off by up to this many ms either way (kept below half the
    /// protocol's 5 s skew allowance, so that honest nodes always agree).
    pub clock_skew_ms: i64,
}

/// Simulated durations, in ms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timing {
    /// Faults happen in `[0, fault_window_ms)`; the heal is at `fault_window_ms`.
    pub fault_window_ms: u64,
    /// Origins publish in `[0, publish_window_ms)`.
    pub publish_window_ms: u64,
    /// Periodic catch-up interval of every child (the real default: 60 s).
    pub sync_interval_ms: u64,
    /// An origin publishes again after this long until the national node holds the advisory.
    pub ingest_retry_ms: u64,
    /// Normal one-way delay range.
    pub delay_ms: (u64, u64),
    /// Slow-path delay range.
    pub slow_delay_ms: (u64, u64),
    /// Time a flush takes.
    pub flush_ms: (u64, u64),
    /// How long a crashed node stays down.
    pub downtime_ms: (u64, u64),
    /// How long a partition lasts.
    pub partition_ms: (u64, u64),
    /// After the heal, the run fails if it is not quiescent within this long.
    pub settle_limit_ms: u64,
    /// Quiescence is checked this often after the heal.
    pub check_interval_ms: u64,
}

/// How much of what was stored is verified again at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyStored {
    /// Every stored delivery of every node.
    All,
    /// Every stored delivery of every relay, and of this many clinics drawn at random.
    Sample(usize),
}

/// A simulation configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Tree shape.
    pub scale: Scale,
    /// Genuine advisories published.
    pub advisories: usize,
    /// Number of origins (1..=3), each root-certified for `jp`.
    pub origins: usize,
    /// Faults.
    pub faults: Faults,
    /// Timing.
    pub timing: Timing,
    /// Final re-verification.
    pub verify: VerifyStored,
}

/// Above this many clinics, a run uses the full-scale profile.
const LARGE_CLINICS: usize = 1_000;

impl SimConfig {
    /// The CI profile: a tiny tree (2×2×3), 4 advisories, heavy faults.
    pub fn reduced() -> Self {
        Self::for_scale(Scale::REDUCED, None)
    }

    /// The full national tree.
    pub fn full() -> Self {
        Self::for_scale(Scale::FULL, None)
    }

    /// The profile for `scale`: up to 1,000 clinics the small-tree profile (every stored
    /// delivery re-verified), above it the large-tree profile (sampled re-verification, fault
    /// counts scaled to the tree). `advisories` overrides the profile's count.
    pub fn for_scale(scale: Scale, advisories: Option<usize>) -> Self {
        let large = scale.clinics() > LARGE_CLINICS;
        let timing = Timing {
            fault_window_ms: 300_000,
            publish_window_ms: 240_000,
            sync_interval_ms: 60_000,
            ingest_retry_ms: 20_000,
            delay_ms: (1, 80),
            slow_delay_ms: (500, 20_000),
            flush_ms: (1, 40),
            downtime_ms: (500, 90_000),
            partition_ms: (2_000, 150_000),
            settle_limit_ms: 30 * 60_000,
            check_interval_ms: 5_000,
        };
        if large {
            let relays = scale.relays();
            // Faults per level: a few at the top, more below (the national node crashing
            // every few seconds would only test that nothing arrives).
            let per_level = |n: usize, p: usize, d: usize, c: usize| {
                Targets::PerLevel([n, p.min(scale.prefectures), d.min(relays), c.min(scale.clinics())])
            };
            Self {
                scale,
                advisories: advisories.unwrap_or(5),
                origins: 2,
                faults: Faults {
                    loss: 0.05,
                    duplicate: 0.03,
                    slow: 0.03,
                    crashes: per_level(2, 12, 60, 160),
                    crash_in_flush: 0.000_5,
                    crash_before_forward: 0.02,
                    redeliver: 0.5,
                    partitions: per_level(1, 6, 30, 60),
                    attacks: (relays / 5).max(20),
                    hostile_moves: (relays / 10).max(10),
                    trust_pushes: 2,
                    clock_skew_ms: 2_000,
                },
                timing,
                verify: VerifyStored::Sample(2_000),
            }
        } else {
            Self {
                scale,
                advisories: advisories.unwrap_or(4),
                origins: 2,
                faults: Faults {
                    loss: 0.15,
                    duplicate: 0.1,
                    slow: 0.1,
                    crashes: Targets::AnyLevel(3),
                    crash_in_flush: 0.03,
                    crash_before_forward: 0.1,
                    redeliver: 0.5,
                    partitions: Targets::AnyLevel(2),
                    attacks: 4,
                    hostile_moves: 4,
                    trust_pushes: 1,
                    clock_skew_ms: 2_000,
                },
                timing,
                verify: VerifyStored::All,
            }
        }
    }

    /// From `KAIRAN_SIM_SCALE` (`reduced` by default, `full`, or `PxDxC`) and
    /// `KAIRAN_SIM_ADVISORIES`, with `default` as the scale when the variable is unset.
    pub fn from_env(default: Scale) -> Result<Self, String> {
        let scale = match std::env::var("KAIRAN_SIM_SCALE") {
            Ok(text) => Scale::parse(&text)?,
            Err(_) => default,
        };
        let advisories = match std::env::var("KAIRAN_SIM_ADVISORIES") {
            Ok(text) => Some(
                text.trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=10_000).contains(n))
                    .ok_or_else(|| format!("KAIRAN_SIM_ADVISORIES={text:?}: expected 1..=10000"))?,
            ),
            Err(_) => None,
        };
        Ok(Self::for_scale(scale, advisories))
    }

    /// The environment that selects this configuration again.
    pub fn replay_env(&self) -> String {
        format!("KAIRAN_SIM_SCALE={} KAIRAN_SIM_ADVISORIES={}", self.scale, self.advisories)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_parse() {
        assert_eq!(Scale::parse("reduced"), Ok(Scale::REDUCED));
        assert_eq!(Scale::parse("full"), Ok(Scale::FULL));
        assert_eq!(Scale::parse("3x4x5").map(|s| s.clinics()), Ok(60));
        assert_eq!(Scale::parse(&Scale::FULL.to_string()), Ok(Scale::FULL));
        assert!(Scale::parse("48x1x1").is_err());
        assert!(Scale::parse("2x2").is_err());
        assert_eq!(Scale::FULL.clinics(), 100_016);
        assert_eq!(Scale::FULL.relays(), 1 + 47 + 893);
    }
}
