//! `kairan publish` succeeds only once the national node stored the advisory durably, with
//! real processes: the national node is killed with SIGKILL right after each publish returns,
//! restarted, and in the end its store must hold every advisory published. A publish whose
//! confirmation cannot come exits 75 and keeps the signed bytes; the next run publishes them
//! first.
//!
//! `KAIRAN_PUBLISH_ROUNDS` sets the number of publish-then-kill rounds (default 12; the
//! ignored `publish_then_kill_many_rounds` runs 100).

mod support;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use kairan_node::store::{DiskStore, Store};

use support::files::{TreeFiles, TreeSpec};
use support::procs::Daemon;

const KAIRAN: &str = env!("CARGO_BIN_EXE_kairan");

struct National {
    daemon: Daemon,
    port: u16,
}

impl National {
    fn start(files: &TreeFiles, dir: &Path) -> National {
        let national = &files.relays[0];
        let args = [OsStr::new("node"), OsStr::new("--config"), national.config.as_os_str()];
        let mut daemon = Daemon::new("jp", Path::new(KAIRAN), &args, &dir.join("jp.log"));
        daemon.start();
        let port = files.national_broker().port;
        let mut national = National { daemon, port };
        national.wait_listening();
        national
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the national node did not listen: {}",
                self.daemon.log_tail(30)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn restart(&mut self) {
        self.daemon.start();
        self.wait_listening();
    }
}

fn setup(dir: &Path) -> TreeFiles {
    let spec = TreeSpec {
        clinics: 0,
        district_broker: None,
        log_level: "info".into(),
        sync_interval_secs: 5,
        plaintext: false,
    };
    let files = TreeFiles::write(dir, &spec);
    kairan_node::secrets::write_private(
        &dir.join("mhlw.secret"),
        files.origin.credentials.password.as_bytes(),
    )
    .expect("secret");
    // The sample, dated now (its own date is older than the test certificates).
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/01-ransomware.toml");
    let text = std::fs::read_to_string(sample)
        .expect("sample")
        .replace("issued_at = \"2021-12-01T10:00:00+09:00\"", "");
    std::fs::write(dir.join("advisory.toml"), text).expect("write");
    files
}

fn publish(dir: &Path, files: &TreeFiles, wait_secs: u64) -> Output {
    let to = files.national_broker().url();
    let wait = wait_secs.to_string();
    Command::new(KAIRAN)
        .args([
            "publish",
            "--key",
            "keys/mhlw.key",
            "--cert",
            "certs/mhlw.cert.json",
            "--trust",
            "trust.toml",
            "--to",
            &to,
            "--node",
            "jp",
            "--password-file",
            "mhlw.secret",
            "--wait",
            &wait,
            "advisory.toml",
        ])
        .current_dir(dir)
        .output()
        .expect("run kairan publish")
}

/// The digest `kairan publish` printed (`published sha256:… (origin …`).
fn digest_of(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("stored by jp"), "{stdout}");
    stdout.split_whitespace().nth(1).expect("digest").to_owned()
}

fn stored(files: &TreeFiles) -> BTreeSet<String> {
    let store = DiskStore::open(&files.relays[0].data_dir).expect("store opens");
    store.all().expect("log").iter().map(|record| record.digest.to_string()).collect()
}

fn rounds(default: usize) -> usize {
    std::env::var("KAIRAN_PUBLISH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn publish_then_kill(count: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = setup(dir.path());
    let mut national = National::start(&files, dir.path());
    let mut published = BTreeSet::new();
    for _ in 0..count {
        published.insert(digest_of(&publish(dir.path(), &files, 60)));
        // Right after the command returned: whatever the node held only in memory dies here.
        national.daemon.kill9();
        national.restart();
    }
    national.daemon.signal_term();
    assert!(national.daemon.wait_exit(Duration::from_secs(20)).is_some(), "the national node stops");
    let held = stored(&files);
    let lost: Vec<&String> = published.difference(&held).collect();
    assert!(lost.is_empty(), "{} of {count} acknowledged advisories lost: {lost:?}", lost.len());
}

#[cfg(unix)]
#[test]
fn kill_9_of_the_national_node_right_after_publish_returns_loses_nothing() {
    publish_then_kill(rounds(12));
}

#[cfg(unix)]
#[test]
#[ignore = "100 rounds of publish and kill -9 (about two minutes)"]
fn publish_then_kill_many_rounds() {
    publish_then_kill(rounds(100));
}

#[cfg(unix)]
#[test]
fn an_unconfirmed_publish_exits_75_and_the_next_run_sends_the_same_bytes_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = setup(dir.path());
    // No national node: nothing can confirm.
    let unconfirmed = publish(dir.path(), &files, 2);
    let stderr = String::from_utf8_lossy(&unconfirmed.stderr);
    assert_eq!(unconfirmed.status.code(), Some(75), "{stderr}");
    assert!(stderr.contains("did not confirm") && stderr.contains("run kairan publish again"), "{stderr}");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("keys/mhlw.state.json")).expect("state"))
            .expect("json");
    assert_eq!(state["chains"]["jp"]["seq"], 1, "seq 1 is signed and kept: {state}");
    let pending = state["pending"].as_str().expect("the signed delivery is kept").to_owned();
    let pending_digest =
        kairan_protocol::Delivery::from_json(pending.as_bytes()).expect("delivery").claimed_digest();
    let mut national = National::start(&files, dir.path());
    let second = digest_of(&publish(dir.path(), &files, 60));
    national.daemon.signal_term();
    assert!(national.daemon.wait_exit(Duration::from_secs(20)).is_some(), "the national node stops");
    let held = stored(&files);
    assert_eq!(
        held,
        BTreeSet::from([pending_digest.to_string(), second]),
        "seq 1 (same bytes) and seq 2 stored"
    );
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("keys/mhlw.state.json")).expect("state"))
            .expect("json");
    assert_eq!(state["chains"]["jp"]["seq"], 2);
    assert!(state.get("pending").is_none(), "{state}");
}
