//! The test and demonstration harness: a whole kairan tree in one process, and the programs
//! built on it. Behind the `harness` feature: the relay and the clinic do not need it.
//!
//! ## Layout
//! - [`hierarchy`]: keys, certificates and an in-process tree of relays and clinics, each
//!   relay with its own broker, over real MQTT sockets and real stores.
//! - [`demo`]: `kairan demo`; [`demo_sealed`]: its TLP:RED step (a sealed advisory, two recipients).
//! - [`bench`]: `kairan bench`, latency and throughput beside a chain of Mosquitto bridges.
//! - [`recovery_bench`]: `kairan bench-recovery`.
//! - [`mosquitto`]: a Mosquitto process on a free loopback port (tests, benches).
//! - [`rabbitmq`]: a private RabbitMQ node (MQTT plugin) on free loopback ports (tests, benches).
//! - [`external`]: either of them as the external broker of a level of a tree.
//! - `places`: the prefectures a tree takes and the names of its districts.

pub mod bench;
pub mod clinic_bench;
pub mod demo;
pub mod demo_sealed;
pub mod external;
pub mod hierarchy;
pub mod mosquitto;
mod places;
pub mod rabbitmq;
pub mod recovery_bench;
