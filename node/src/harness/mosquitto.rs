//! A Mosquitto broker process for one test or bench: its own temp dir, a password file with
//! one user, a loopback port that stays the same across restarts, killed on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::hierarchy::ExternalBroker;
use crate::mqtt::{BrokerAddr, Credentials};

/// A Mosquitto broker process for one test.
#[derive(Debug)]
pub struct Mosquitto {
    child: Option<Child>,
    binary: PathBuf,
    /// Its address.
    pub addr: BrokerAddr,
    /// The one user it accepts.
    pub credentials: Credentials,
    /// Whether it keeps its database on disk across restarts.
    pub persistence: bool,
    dir: tempfile::TempDir,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Finds `program` on PATH, or where distributions install it (`/usr/sbin` is not on a
/// normal user's PATH).
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// A free loopback port for a server that a test may restart on the same port.
///
/// Chosen at random below Linux's ephemeral range (32768–60999 by default): a port from that
/// range could be taken by some outgoing connection's local end while the server is down.
pub fn free_port() -> u16 {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    for _ in 0..200 {
        let port = rng.gen_range(20_000..32_000);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what}: mosquitto did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Mosquitto {
    /// Starts Mosquitto, or returns `None` (printing a notice) when it is not installed and
    /// `KAIRAN_REQUIRE_MOSQUITTO` is not `1`. Panics when it is required and missing.
    pub fn start_if_available(persistence: bool) -> Option<Self> {
        let required = std::env::var("KAIRAN_REQUIRE_MOSQUITTO").is_ok_and(|v| v == "1");
        let Some(binary) = which("mosquitto") else {
            assert!(
                !required,
                "KAIRAN_REQUIRE_MOSQUITTO=1 but mosquitto is not installed (apt-get install -y mosquitto)"
            );
            eprintln!(
                "NOTICE: mosquitto is not installed; skipping this Mosquitto test (set KAIRAN_REQUIRE_MOSQUITTO=1 to fail instead)"
            );
            return None;
        };
        Some(Self::start(binary, persistence))
    }

    fn start(binary: PathBuf, persistence: bool) -> Self {
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
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        let mut text = format!(
            "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\nmax_queued_messages 100000\nmax_inflight_messages 100\n",
            passwd.display()
        );
        if persistence {
            text.push_str(&format!(
                "persistence true\npersistence_location {}/\nautosave_interval 1\n",
                dir.path().display()
            ));
        } else {
            text.push_str("persistence false\n");
        }
        std::fs::write(&conf, text).expect("write mosquitto.conf");
        let mut broker = Self {
            child: None,
            binary,
            addr: BrokerAddr { host: "127.0.0.1".into(), port },
            credentials,
            persistence,
            dir,
        };
        broker.start_again();
        broker
    }

    /// Whether the process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the process with SIGKILL, as a crash would (no final save of its database).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process (again) on the same port with the same configuration and, with
    /// persistence, the same database. Returns once it listens.
    pub fn start_again(&mut self) {
        self.kill();
        let conf = self.dir.path().join("mosquitto.conf");
        self.child = Some(
            Command::new(&self.binary)
                .arg("-c")
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start mosquitto"),
        );
        wait_listening(self.addr.port, "start");
    }

    /// Kills the process (as a crash would) and starts it again at once.
    pub fn restart(&mut self) {
        self.kill();
        self.start_again();
    }

    /// Its directory (configuration, password file, database).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// This broker as the external broker of a tree level.
    pub fn as_external(&self) -> ExternalBroker {
        ExternalBroker { addr: self.addr.clone(), credentials: Some(self.credentials.clone()) }
    }
}
