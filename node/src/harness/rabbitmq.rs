//! A private RabbitMQ node for one test or bench: its own Erlang node name, its own
//! directories (database, logs, configuration, Erlang cookie) in a temp dir, a loopback MQTT
//! port and an Erlang distribution port chosen free, killed on drop. It is configured the way
//! an operator configures one: definitions and `rabbitmq.conf` written by
//! `kairan broker rabbitmq-config` ([`crate::rabbitmq_config`]) from the members of the nodes
//! that use it, with the MQTT plugin enabled through its own enabled-plugins file. The host's
//! `epmd` is shared (RabbitMQ starts one if none runs).
//!
//! A RabbitMQ node takes about ten seconds to boot on a small machine; tests that use one start
//! it once and put several relays on it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::mosquitto::{free_port, which};
use crate::mqtt::BrokerAddr;
use crate::rabbitmq_config::{self, NodeOnRabbit, RabbitSettings};

/// Where Debian installs the server script that runs as the calling user (the one in
/// `/usr/sbin` switches to the `rabbitmq` user and its system-wide directories).
const DEBIAN_SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
/// How long a boot may take at most on a loaded 2-core machine.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// A RabbitMQ node for one test.
#[derive(Debug)]
pub struct RabbitMq {
    child: Option<Child>,
    server: PathBuf,
    /// Its MQTT address.
    pub addr: BrokerAddr,
    node_name: String,
    dist_port: u16,
    dir: tempfile::TempDir,
}

impl Drop for RabbitMq {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The server script to run, if RabbitMQ is installed.
fn server_script() -> Option<PathBuf> {
    let debian = PathBuf::from(DEBIAN_SERVER);
    if debian.is_file() {
        return Some(debian);
    }
    which("rabbitmq-server")
}

/// Sends SIGKILL to the process group `group_id`.
///
/// The group is passed after `--` on purpose: procps-ng 4.0.2's `kill` (Debian 12) reads
/// `kill -KILL -2289` as `kill(-2, SIGKILL)`, its first digit only, and a group id starting with
/// 1 became `kill(-1, SIGKILL)`: every process the user may signal, the whole machine for root.
/// That is what killed entire CI runs when they reached the RabbitMQ tests.
fn kill_process_group(group_id: u32) {
    let _ = Command::new("kill")
        .args(["-s", "KILL", "--"])
        .arg(format!("-{group_id}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl RabbitMq {
    /// A RabbitMQ ready to be configured and started ([`RabbitMq::start_for`]), or `None`
    /// (printing a notice) when it is not installed and `KAIRAN_REQUIRE_RABBITMQ` is not `1`.
    /// Panics when it is required and missing.
    pub fn prepare_if_available() -> Option<Self> {
        let required = std::env::var("KAIRAN_REQUIRE_RABBITMQ").is_ok_and(|v| v == "1");
        let Some(server) = server_script() else {
            assert!(
                !required,
                "KAIRAN_REQUIRE_RABBITMQ=1 but RabbitMQ is not installed (apt-get install -y rabbitmq-server)"
            );
            eprintln!(
                "NOTICE: rabbitmq-server is not installed; skipping this RabbitMQ test (set KAIRAN_REQUIRE_RABBITMQ=1 to fail instead)"
            );
            return None;
        };
        let dir = tempfile::tempdir().expect("temp dir for rabbitmq");
        let port = free_port();
        let mut dist_port = free_port();
        while dist_port == port {
            dist_port = free_port();
        }
        Some(Self {
            child: None,
            server,
            addr: BrokerAddr { host: "127.0.0.1".into(), port, tls: false },
            node_name: format!("kairan-{port}-{dist_port}@localhost"),
            dist_port,
            dir,
        })
    }

    /// Writes the definitions and configuration for `nodes` (what
    /// `kairan broker rabbitmq-config` writes), enables the MQTT plugin and starts the node.
    /// Returns once its MQTT listener accepts connections.
    pub fn start_for(&mut self, nodes: &[NodeOnRabbit<'_>]) -> Result<(), String> {
        let definitions = self.dir.path().join("kairan-definitions.json");
        let definitions_path = definitions.display().to_string();
        let settings = RabbitSettings {
            listen: ("127.0.0.1", self.addr.port),
            definitions_path: &definitions_path,
            quorum_queues: false,
        };
        let files = rabbitmq_config::generate(nodes, &settings)?;
        crate::secrets::write_private(&definitions, files.definitions.as_bytes())
            .map_err(|e| e.to_string())?;
        let mut conf = files.conf;
        conf.push_str("log.console = false\nlog.file.level = warning\n");
        std::fs::write(self.dir.path().join("rabbitmq.conf"), conf).map_err(|e| e.to_string())?;
        // What `rabbitmq-plugins --offline enable rabbitmq_mqtt` writes.
        std::fs::write(self.dir.path().join("enabled_plugins"), "[rabbitmq_mqtt].\n")
            .map_err(|e| e.to_string())?;
        self.start_again()
    }

    /// Whether the process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the node (its whole process group) with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The server script runs the Erlang VM as a child, in the group we gave it.
            kill_process_group(child.id());
            let _ = child.kill();
            let _ = child.wait();
        }
        // The Erlang VM can outlive its group (it was seen left running, adopted by init, after
        // test runs): kill it by the pid it wrote, once, and forget the file.
        let pid_file = self.dir.path().join("rabbitmq.pid");
        if let Some(pid) =
            std::fs::read_to_string(&pid_file).ok().and_then(|text| text.trim().parse::<u32>().ok())
        {
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--"])
                .arg(pid.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = std::fs::remove_file(&pid_file);
        }
    }

    /// Starts the node (again) with the same name, port, configuration and database. Returns
    /// once its MQTT listener accepts connections.
    pub fn start_again(&mut self) -> Result<(), String> {
        self.kill();
        let dir = self.dir.path();
        let log = std::fs::File::create(dir.join("server.out")).map_err(|e| e.to_string())?;
        let log_err = log.try_clone().map_err(|e| e.to_string())?;
        let mut command = Command::new(&self.server);
        command
            .env("HOME", dir)
            .env("RABBITMQ_NODENAME", &self.node_name)
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq.conf"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", dir.join("advanced.config"))
            .env("RABBITMQ_CONF_ENV_FILE", dir.join("rabbitmq-env.conf"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("RABBITMQ_PLUGINS_EXPAND_DIR", dir.join("plugins-expand"))
            .env("RABBITMQ_PID_FILE", dir.join("rabbitmq.pid"))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        self.child = Some(command.spawn().map_err(|e| format!("start {}: {e}", self.server.display()))?);
        let deadline = Instant::now() + BOOT_TIMEOUT;
        while std::net::TcpStream::connect(("127.0.0.1", self.addr.port)).is_err() {
            let exited = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.child = None;
                return Err(format!("rabbitmq exited ({status}) before listening; see {}", dir.display()));
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!("rabbitmq did not listen on {} within {BOOT_TIMEOUT:?}", self.addr.port));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// Kills the node (as a crash would) and starts it again.
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        self.start_again()
    }

    /// Its directory (configuration, definitions, database, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The group is killed, and only the group: with the `kill -KILL -PGID` form, procps-ng 4.0.2
    /// signalled group `-<first digit>` instead, so the sleeper survived (or, for a group id
    /// starting with 1, every process on the machine died).
    #[test]
    fn kill_process_group_kills_exactly_that_group() {
        let mut bystander = Command::new("sleep").arg("60").spawn().expect("spawn bystander");
        let mut command = Command::new("sleep");
        command.arg("60");
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut sleeper = command.spawn().expect("spawn sleep");
        kill_process_group(sleeper.id());
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = sleeper.try_wait().expect("try_wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "the process group {} was not killed", sleeper.id());
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9));
        assert!(bystander.try_wait().expect("try_wait").is_none(), "a process outside the group died");
        let _ = bystander.kill();
        let _ = bystander.wait();
    }
}
