//! # kairan-node
//!
//! The `kairan` binary and its library: the relay node, the clinic subscriber, the publisher
//! and the command line around them.
//!
//! A node — relay or clinic — is a sans-IO state machine ([`machine`]) that decides
//! everything: verification, sequence rules, catch-up, the publisher window, trust updates,
//! heads, throttling. One async driver ([`mqtt::driver`]) runs it over real MQTT and a
//! [`store::Store`]; the simulator in the `kairan-tests` crate runs the very same machine over
//! an in-memory store and a simulated network.
//!
//! ## Layout
//! - [`machine`]: the node state machine (no clock, no tokio, no sled, no MQTT type).
//! - [`store`]: the [`store::Store`] trait, [`store::DiskStore`] (segment log + sled index), [`store::MemStore`].
//! - [`topics`]: every `kairan/v1/…` topic, built and parsed.
//! - [`audit_bundle`]: one advisory's provenance and log inclusions as offline evidence
//!   (`kairan audit advisory`, `audit bundle`, `audit verify-bundle`).
//! - [`authz`]: the permission table — what each kind of client may read, write and retain.
//! - [`members`]: the members file (hashed passwords, kinds, scopes).
//! - [`mosquitto_config`]: Mosquitto's password and ACL files, from the same table.
//! - [`rabbitmq_config`]: RabbitMQ's definitions (users, permissions, topic permissions) and
//!   `rabbitmq.conf` for its MQTT plugin, from the same table.
//! - [`secrets`]: secret files readable by their owner only.
//! - [`mqtt`]: the MQTT client, the embedded broker, the driver.
//! - [`tls`]: TLS 1.3 on every link — the broker's certificate for its relay key, the check
//!   that a broker is the configured parent, the client tunnel.
//! - [`relay`], [`clinic`]: the two daemons, thin: configuration to machine and driver.
//! - [`handle`]: [`handle::NodeHandle`], a running daemon.
//! - [`inbox`]: the clinic's readable copies, `kairan inbox`, the terminal announcement; the
//!   inbox's current state (updates and cancels applied) and its JSON forms.
//! - [`web`]: the clinic's local web inbox (axum, askama), served by `kairan clinic`.
//! - [`report`]: machine events as log lines.
//! - [`metrics`]: Prometheus metrics, `/healthz` and `/readyz` of a relay or clinic (`[metrics]`).
//! - [`publish`]: `kairan publish` (origins).
//! - [`config`]: node.toml and clinic.toml, checked, every error naming the field.
//! - [`cli`]: argument definitions (clap) and dispatch of every command.
//! - [`keyfile`]: key files (0600, refused if group/other-readable), certificates, trust file.
//! - [`draft`]: the TOML advisory authoring format, its template and the sample advisories.
//! - [`formats`]: advisories as CSAF 2.0/2.1, CAP 1.2 and STIX 2.1 (export), and CSAF and CAP
//!   back to the authoring format (import).
//! - [`provenance`]: who signed and who carried a verified delivery, as text or JSON.
//! - [`progress`]: progress of long commands — a bar on a terminal, plain lines otherwise.
//! - [`clock`]: the one place that reads the wall clock.
//! - [`logging`]: tracing setup (human or JSON lines).
//! - [`error`]: [`error::CliError`] (exit codes) and [`error::NodeError`] (daemons).
//! - `harness` (feature `harness`, on by default): a whole tree in one process — the
//!   in-process tree builder, `kairan demo`, `kairan bench`, `kairan bench-recovery`, the
//!   Mosquitto and RabbitMQ launchers. It is not part of the relay or the clinic.
//!
//! ## Trust model
//! Every program is configured with the trust anchors only. Nothing is stored, shown or
//! forwarded unless `kairan_protocol` verified it; everything downstream of verification
//! takes `Verified<Delivery>`. A signature proves who wrote something, not that its sender
//! may send it: routing (scope, the hop a delivery must arrive with) is checked too.

#![forbid(unsafe_code)]

pub mod audit_bundle;
pub mod authz;
pub mod cli;
pub mod clinic;
pub mod clock;
pub mod config;
pub mod directory;
pub mod draft;
pub mod enroll;
pub mod error;
pub mod formats;
pub mod handle;
#[cfg(feature = "harness")]
pub mod harness;
pub mod inbox;
pub mod keyfile;
pub mod logging;
pub mod machine;
pub mod members;
pub mod metrics;
pub mod mosquitto_config;
pub mod mqtt;
pub mod progress;
pub mod provenance;
pub mod publish;
pub mod rabbitmq_config;
pub mod recipients;
pub mod relay;
pub mod report;
pub mod sealing;
pub mod secrets;
pub mod store;
pub mod tls;
pub mod topics;
pub mod web;
