//! Support for kairan's multi-node integration tests (`tests/tests/*.rs`): an external
//! Mosquitto broker started per test, and builders for deliveries that a test injects at any
//! level of a running tree.
//!
//! ## Layout
//! - [`Mosquitto`]: a Mosquitto process on a free loopback port with a password file, in its
//!   own temp dir, killed on drop. [`Mosquitto::start_if_available`] honours
//!   `KAIRAN_REQUIRE_MOSQUITTO=1` (CI): then a missing `mosquitto` is a failure, not a skip.
//! - [`chain_delivery`]: a delivery carried by the given relays, hops signed by their keys,
//!   whatever the advisory says — so tests can inject expired or out-of-scope input that
//!   the real relays above would have refused.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kairan_node::hierarchy::{ExternalBroker, Hierarchy};
use kairan_node::mqtt::{BrokerAddr, Credentials};
use kairan_protocol::envelope::ADVISORY_TYPE;
use kairan_protocol::{Advisory, Delivery, Digest, Envelope, Hop, SecretKey, Timestamp};

/// A Mosquitto broker process for one test.
#[derive(Debug)]
pub struct Mosquitto {
    child: Child,
    /// Its address.
    pub addr: BrokerAddr,
    /// The one user it accepts.
    pub credentials: Credentials,
    _dir: tempfile::TempDir,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// A free loopback port (the OS hands it out; the listener is closed before use).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

impl Mosquitto {
    /// Starts Mosquitto, or returns `None` (printing a notice) when it is not installed and
    /// `KAIRAN_REQUIRE_MOSQUITTO` is not `1`. Panics when it is required and missing.
    pub fn start_if_available(persistence: bool) -> Option<Self> {
        let required = std::env::var("KAIRAN_REQUIRE_MOSQUITTO").is_ok_and(|v| v == "1");
        let Some(binary) = which("mosquitto") else {
            assert!(!required, "KAIRAN_REQUIRE_MOSQUITTO=1 but mosquitto is not installed (apt-get install -y mosquitto)");
            eprintln!("NOTICE: mosquitto is not installed; skipping this Mosquitto test (set KAIRAN_REQUIRE_MOSQUITTO=1 to fail instead)");
            return None;
        };
        Some(Self::start(&binary, persistence))
    }

    fn start(binary: &Path, persistence: bool) -> Self {
        let dir = tempfile::tempdir().expect("temp dir for mosquitto");
        let credentials = Credentials { username: "kairan".into(), password: "kairan-test-password".into() };
        let passwd = dir.path().join("passwd");
        let passwd_tool = which("mosquitto_passwd").expect("mosquitto_passwd (package mosquitto)");
        let status = Command::new(passwd_tool)
            .args(["-c", "-b"])
            .arg(&passwd)
            .args([&credentials.username, &credentials.password])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run mosquitto_passwd");
        assert!(status.success(), "mosquitto_passwd failed");
        Self::launch(binary, dir, credentials, persistence, free_port())
    }

    fn launch(binary: &Path, dir: tempfile::TempDir, credentials: Credentials, persistence: bool, port: u16) -> Self {
        let conf = dir.path().join("mosquitto.conf");
        let mut text = format!(
            "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\nmax_queued_messages 100000\nmax_inflight_messages 100\n",
            dir.path().join("passwd").display()
        );
        if persistence {
            text.push_str(&format!("persistence true\npersistence_location {}/\nautosave_interval 1\n", dir.path().display()));
        } else {
            text.push_str("persistence false\n");
        }
        std::fs::write(&conf, text).expect("write mosquitto.conf");
        let child = Command::new(binary)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        let addr = BrokerAddr { host: "127.0.0.1".into(), port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, addr, credentials, _dir: dir }
    }

    /// Kills the process (as a crash would) and starts it again on the same port with the
    /// same configuration and, with persistence, the same database.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let binary = which("mosquitto").expect("mosquitto");
        let conf = self._dir.path().join("mosquitto.conf");
        self.child = Command::new(binary)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("restart mosquitto");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.addr.port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not come back");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// This broker as the external broker of a tree level.
    pub fn as_external(&self) -> ExternalBroker {
        ExternalBroker { addr: self.addr.clone(), credentials: Some(self.credentials.clone()) }
    }
}

/// Signs `advisory` with the tree's origin key (no sequence bookkeeping) and carries it
/// through `relays` (indexes into `tree.relays`, top down), each hop signed by that relay's
/// key with the given times. Nothing is verified: this is how a test forges what a
/// compromised or careless upstream might send.
pub fn chain_delivery(tree: &Hierarchy, advisory: &Advisory, relays: &[usize], now: Timestamp) -> Delivery {
    let envelope = Envelope::sign(ADVISORY_TYPE, advisory.to_payload(), &[&tree.origin.key]);
    let digest = Digest::of(&envelope.payload);
    let mut delivery = Delivery { advisory: envelope, certs: vec![tree.origin.cert.clone()], hops: Vec::new() };
    let mut prev = digest;
    let mut upstream = advisory.origin.clone();
    for &index in relays {
        let key: SecretKey = tree.relay_key(index).expect("relay key");
        let relay = &tree.relays[index];
        let hop = Hop {
            advisory: digest,
            relay: relay.config_parts.id.clone(),
            keyid: key.keyid().clone(),
            upstream: upstream.clone(),
            received_at: now,
            forwarded_at: now,
            relay_seq: 1_000_000,
            prev,
        };
        let signed = hop.sign(&key);
        prev = Digest::of(&signed.payload);
        upstream = relay.config_parts.id.clone();
        delivery.certs.push(relay.config_parts.cert.clone());
        delivery.hops.push(signed);
    }
    delivery
}
