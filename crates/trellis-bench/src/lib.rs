//! Trellis benchmarks.
//!
//! - [`sidecar`]: a side-by-side data-plane benchmark on one machine — `direct` (client → app,
//!   the floor), `trellis` (client → Trellis sidecar → Trellis sidecar → app) and `envoy` (the
//!   same with Envoy sidecars) — driven by the same control plane and Istio config. Latency at
//!   fixed rates (open loop, no coordinated omission), maximum throughput (closed loop), proxy
//!   CPU per request and memory (tiny and large configs), proxy start-to-ready and config
//!   change-to-applied times.
//! - [`control_plane`]: a control-plane scale simulator with N lightweight ADS clients.
//!
//! Outputs go to `target/bench/`: `report.md`, `sidecar.json`, `latency.svg`,
//! `control-plane.json` (see `docs/benchmarks.md`).

pub mod common;
pub mod control_plane;
pub mod loadgen;
pub mod procfs;
pub mod report;
pub mod sidecar;
pub mod stats;
pub mod svg;
