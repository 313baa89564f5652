//! Support for the crash harness (`node/tests/crash.rs`): a tree written to disk for real
//! `kairan` processes, the processes themselves, and Mosquitto.
//!
//! The harness lives in this package because only a package's own integration tests get
//! `CARGO_BIN_EXE_kairan`. The Mosquitto launcher is the harness's
//! (`kairan_node::harness::mosquitto`), shared with `kairan-tests`.
//!
//! ## Layout
//! - [`files`]: keys, certificates, trust file, node.toml / members.toml / clinic.toml.
//! - [`procs`]: a daemon process: start, `kill -9`, SIGTERM, its log.
//! - [`mosquitto`]: a Mosquitto process, restartable on the same port.

// Each test binary that includes this module uses a part of it.
#![allow(dead_code)]

pub mod files;
pub mod procs;

pub use kairan_node::harness::mosquitto;
