//! Real `kairan` processes: started with their configuration, output appended to a log file
//! in their directory (so restarts accumulate), killed with SIGKILL as a crash would, stopped
//! with SIGTERM as an operator would.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// One daemon (`kairan node` or `kairan clinic`) that a test starts, kills and restarts.
#[derive(Debug)]
pub struct Daemon {
    /// A name for reports (its node or clinic id).
    pub name: String,
    binary: PathBuf,
    args: Vec<OsString>,
    /// Its log file (stdout and stderr of every run).
    pub log: PathBuf,
    child: Option<Child>,
    /// How many times it was started.
    pub starts: u32,
    /// How many times it was killed with SIGKILL.
    pub kills: u32,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Daemon {
    /// `binary ARGS…`, logging to `log`. Not started yet.
    pub fn new(name: &str, binary: &Path, args: &[&std::ffi::OsStr], log: &Path) -> Self {
        Self {
            name: name.to_owned(),
            binary: binary.to_owned(),
            args: args.iter().map(|a| a.to_os_string()).collect(),
            log: log.to_owned(),
            child: None,
            starts: 0,
            kills: 0,
        }
    }

    /// Starts it (it must not be running).
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| panic!("{}: {e}", self.log.display()));
        let err = log.try_clone().expect("log handle");
        let child = Command::new(&self.binary)
            .args(&self.args)
            .env_remove("KAIRAN_LOG")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.name));
        self.child = Some(child);
        self.starts += 1;
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: the process gets no chance to flush or say goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.kills += 1;
        }
    }

    /// If it exited on its own, its status (and it is no longer running).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(status)
    }

    /// Sends SIGTERM (no-op when not running).
    pub fn signal_term(&self) {
        if let Some(pid) = self.pid() {
            let status = Command::new("kill").args(["-TERM", &pid.to_string()]).status().expect("run kill");
            assert!(status.success(), "kill -TERM {pid} ({}) failed", self.name);
        }
    }

    /// Waits for it to exit after [`Self::signal_term`]; `None` when it did not in time (it is
    /// then killed).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut()?;
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                self.kill9();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// How many lines of its log contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        std::fs::read_to_string(&self.log).unwrap_or_default().lines().filter(|l| l.contains(needle)).count()
    }
}
