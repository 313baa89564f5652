//! `kairan bench-clinic`: the memory of a `kairan clinic` process, as an office PC runs it,
//! after it received N advisories (issue 12: ≤ 15 MB RSS after 1,000).
//!
//! The tree (national → Tokyo → Chuo) runs in this process; the clinic is a separate
//! `kairan clinic` process started from this binary with a clinic.toml written as a
//! volunteer would (TLS to its district, password file, announcements and web inbox off), so
//! that its resident set is its own. N advisories are published; once the clinic's readable
//! copies number N (each written after its store commit), the bench reads the process's
//! `VmRSS` and `VmHWM` from `/proc/<pid>/status`, then stops it with SIGTERM.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::CliError;
use crate::harness::hierarchy::HierarchyBuilder;

/// What the bench measured.
#[derive(Debug)]
pub struct ClinicMemory {
    /// Advisories received.
    pub advisories: usize,
    /// Resident set once it held them all, KiB.
    pub rss_kib: u64,
    /// Peak resident set over its life, KiB.
    pub peak_kib: u64,
    /// Resident set after start, before the first advisory, KiB.
    pub idle_kib: u64,
    /// From the first publish until the clinic held them all.
    pub received_in: Duration,
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn copies(data_dir: &Path) -> usize {
    std::fs::read_dir(crate::inbox::copies_dir(data_dir))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .count()
        })
        .unwrap_or(0)
}

/// Stops the child on every path out of the bench.
struct Stopper(Child);

impl Drop for Stopper {
    fn drop(&mut self) {
        // SIGTERM to a positive pid (a clean stop); never a process-group form of kill.
        let _ = Command::new("kill").args(["-s", "TERM", &self.0.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the bench with `advisories` advisories.
pub async fn clinic_memory(advisories: usize) -> Result<ClinicMemory, CliError> {
    let failed = |what: &str, e: &dyn std::fmt::Display| CliError::Failed(format!("{what}: {e}"));
    let dir = tempfile::tempdir().map_err(|e| failed("tempdir", &e))?;
    let mut tree = HierarchyBuilder::new(dir.path())
        .prefectures(1)
        .districts_per_prefecture(1)
        .clinics_per_district(1)
        .start_clinics(false)
        .start()
        .await?;
    tree.wait_subscribed(Duration::from_secs(20)).await?;
    let clinic = tree.clinics[0].config.clone();
    let password = clinic.credentials.as_ref().map(|c| c.password.clone()).unwrap_or_default();
    let home = dir.path().join("clinic-process");
    std::fs::create_dir_all(&home).map_err(|e| CliError::io(&home, e))?;
    let secret = home.join("clinic.secret");
    crate::secrets::write_private(&secret, format!("{password}\n").as_bytes())
        .map_err(|e| CliError::io(&secret, e))?;
    std::fs::write(home.join("trust.toml"), crate::keyfile::render_trust(&tree.anchors))
        .map_err(|e| CliError::io(&home, e))?;
    let config = format!(
        "[clinic]\nid = \"{}\"\nscope = \"{}\"\ndata_dir = \"{}\"\ntrust = \"trust.toml\"\nannounce = false\n\n[upstream]\nurl = \"{}\"\nparent = \"{}\"\npassword_file = \"clinic.secret\"\n\n[log]\nlevel = \"warn\"\n\n[web]\nenabled = false\n",
        clinic.id,
        clinic.scope,
        clinic.data_dir.display(),
        clinic.addr.url(),
        clinic.district
    );
    let config_path = home.join("clinic.toml");
    std::fs::write(&config_path, config).map_err(|e| CliError::io(&config_path, e))?;
    let exe = std::env::current_exe().map_err(|e| failed("current_exe", &e))?;
    let child = Command::new(exe)
        .args(["clinic", "--config"])
        .arg(&config_path)
        .current_dir(&home)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| failed("kairan clinic", &e))?;
    let child = Stopper(child);
    let pid = child.0.id();
    // Let it connect and settle before the idle reading.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_kib =
        status_kib(pid, "VmRSS:").ok_or_else(|| CliError::Failed("the clinic process exited".into()))?;
    let now = tree.now();
    let mut batch = Vec::with_capacity(advisories);
    for number in 0..advisories {
        let (bytes, _) =
            tree.sign_next(crate::harness::recovery_bench::advisory(format!("rss-{number}"), now));
        batch.push(bytes);
    }
    let started = Instant::now();
    tree.publish_many(batch, 32).await?;
    while copies(&clinic.data_dir) < advisories {
        if started.elapsed() > Duration::from_secs(600) {
            return Err(CliError::Failed(format!(
                "the clinic held {} of {advisories} after 10 min",
                copies(&clinic.data_dir)
            )));
        }
        if status_kib(pid, "VmRSS:").is_none() {
            return Err(CliError::Failed("the clinic process exited".into()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let received_in = started.elapsed();
    // Once everything is held, a moment for the last commit's buffers to be released.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_kib =
        status_kib(pid, "VmRSS:").ok_or_else(|| CliError::Failed("the clinic process exited".into()))?;
    let peak_kib = status_kib(pid, "VmHWM:").unwrap_or(rss_kib);
    drop(child);
    tree.shutdown().await?;
    Ok(ClinicMemory { advisories, rss_kib, peak_kib, idle_kib, received_in })
}
