//! # kairan-node
//!
//! The `kairan` binary and its library: the command line, key and certificate files, the
//! advisory authoring format, provenance rendering — and (as they land) the relay node, the
//! clinic subscriber, the publisher and the demo.
//!
//! ## Layout
//! - [`cli`]: argument definitions (clap) and dispatch of every command.
//! - [`keyfile`]: key files (0600, refused if group/other-readable), certificates, trust file.
//! - [`draft`]: the TOML advisory authoring format, its template and the sample advisories.
//! - [`formats`]: advisories as CSAF 2.0/2.1, CAP 1.2 and STIX 2.1 (export), and CSAF and CAP
//!   back to the authoring format (import).
//! - [`provenance`]: who signed and who carried a verified delivery, as text or JSON.
//! - [`bench`]: `kairan bench`, end-to-end latency and throughput of a whole tree, with a
//!   chain of Mosquitto bridges measured side by side.
//! - [`clock`]: the one place that reads the wall clock.
//! - [`error`]: [`error::CliError`] and its exit codes (64 bad usage/config, 1 refused).
//!
//! ## Trust model
//! Every program is configured with the trust anchors only. Nothing is shown or forwarded
//! unless `kairan_protocol` verified it; functions downstream of verification take
//! `Verified<Delivery>`.

#![forbid(unsafe_code)]

pub mod bench;
pub mod broker;
pub mod cli;
pub mod clinic;
pub mod clock;
pub mod config;
pub mod core;
pub mod demo;
pub mod draft;
pub mod error;
pub mod formats;
pub mod heads;
pub mod hierarchy;
pub mod intake;
pub mod keyfile;
pub mod logging;
pub mod mqtt;
pub mod provenance;
pub mod publish;
pub mod recovery_bench;
pub mod relay;
pub mod store;
pub mod sync;
pub mod trust_state;
