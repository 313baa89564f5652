//! A Mosquitto broker process for one test or bench: its own temp dir, a loopback port that
//! stays the same across restarts, killed on drop. It is configured the way an operator
//! configures one: the password file and ACL written by `kairan broker mosquitto-config`
//! ([`crate::mosquitto_config`]) from the members of the nodes that use it, and for TLS one
//! listener per node presenting that node's certificate (`kairan tls cert`), TLS 1.3 only.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::collections::HashMap;

use crate::mosquitto_config::{self, BrokerSettings, MosquittoListener, NodeOnBroker, TlsFiles};
use crate::mqtt::BrokerAddr;
use crate::tls::BrokerIdentity;

/// A Mosquitto broker process for one test.
#[derive(Debug)]
pub struct Mosquitto {
    child: Option<Child>,
    binary: PathBuf,
    /// Its (first) address: `mqtts://` unless started without TLS identities.
    pub addr: BrokerAddr,
    /// The address of each node's listener.
    listeners: HashMap<String, BrokerAddr>,
    /// Whether it keeps its database on disk across restarts.
    pub persistence: bool,
    dir: tempfile::TempDir,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false)
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
    /// A Mosquitto ready to be configured and started ([`Mosquitto::start_for`]), or `None`
    /// (printing a notice) when it is not installed and `KAIRAN_REQUIRE_MOSQUITTO` is not `1`.
    /// Panics when it is required and missing.
    pub fn prepare_if_available(persistence: bool) -> Option<Self> {
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
        let dir = tempfile::tempdir().expect("temp dir for mosquitto");
        let port = free_port();
        Some(Self {
            child: None,
            binary,
            addr: BrokerAddr { host: "127.0.0.1".into(), port, tls: true },
            listeners: HashMap::new(),
            persistence,
            dir,
        })
    }

    /// Writes the password file, ACL and configuration for `nodes` (what
    /// `kairan broker mosquitto-config` writes) and starts the broker: with `tls` (one
    /// identity per node, in order), a TLS 1.3 listener per node, the first on
    /// [`Mosquitto::addr`]; with none, one plaintext listener there.
    pub fn start_for(&mut self, nodes: &[NodeOnBroker<'_>], tls: &[BrokerIdentity]) -> Result<(), String> {
        let passwd = self.dir.path().join("kairan.passwd");
        let acl = self.dir.path().join("kairan.acl");
        let database = format!("{}/", self.dir.path().display());
        let mut listeners = Vec::new();
        self.listeners.clear();
        if tls.is_empty() {
            self.addr.tls = false;
            listeners.push(MosquittoListener { host: "127.0.0.1".into(), port: self.addr.port, tls: None });
            for node in nodes {
                self.listeners.insert(node.id.to_owned(), self.addr.clone());
            }
        } else {
            if tls.len() != nodes.len() {
                return Err(format!("{} nodes but {} TLS identities", nodes.len(), tls.len()));
            }
            self.addr.tls = true;
            for (index, (node, identity)) in nodes.iter().zip(tls).enumerate() {
                let port = if index == 0 { self.addr.port } else { free_port() };
                let cert = self.dir.path().join(format!("{}.crt.pem", node.id));
                let key = self.dir.path().join(format!("{}.key.pem", node.id));
                std::fs::write(&cert, &identity.cert_pem).map_err(|e| e.to_string())?;
                crate::secrets::write_private(&key, identity.key_pem.as_bytes())
                    .map_err(|e| e.to_string())?;
                let files = TlsFiles { cert: cert.display().to_string(), key: key.display().to_string() };
                listeners.push(MosquittoListener { host: "127.0.0.1".into(), port, tls: Some(files) });
                self.listeners
                    .insert(node.id.to_owned(), BrokerAddr { host: "127.0.0.1".into(), port, tls: true });
            }
        }
        let settings = BrokerSettings {
            listeners: &listeners,
            passwd_path: &passwd.display().to_string(),
            acl_path: &acl.display().to_string(),
            persistence: self.persistence.then_some(database.as_str()),
        };
        let files = mosquitto_config::generate(nodes, &settings)?;
        crate::secrets::write_private(&passwd, files.passwd.as_bytes()).map_err(|e| e.to_string())?;
        std::fs::write(&acl, files.acl).map_err(|e| e.to_string())?;
        let mut conf = files.conf;
        // Run as root (tests here do), Mosquitto would drop to the `mosquitto` user before
        // reading the 0600 password file the test wrote.
        if running_as_root() {
            conf.push_str("user root\n");
        }
        if self.persistence {
            conf.push_str("autosave_interval 1\n");
        }
        std::fs::write(self.dir.path().join("mosquitto.conf"), conf).map_err(|e| e.to_string())?;
        self.start_again();
        Ok(())
    }

    /// The address of node `id`'s listener.
    pub fn addr_of(&self, id: &str) -> Option<BrokerAddr> {
        self.listeners.get(id).cloned()
    }

    /// The process id while it runs (a test reads its memory from `/proc`).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
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
        let mut ports: Vec<u16> = self.listeners.values().map(|a| a.port).collect();
        ports.push(self.addr.port);
        ports.sort_unstable();
        ports.dedup();
        for port in ports {
            wait_listening(port, "start");
        }
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
}
