//! Multi-node integration tests and the simulator live under `tests/`.
