//! The Trellis control plane (≈ istiod): reads Istio resources, validates them, keeps a service
//! registry, and configures every proxy over Envoy's xDS API.

pub mod app;
pub mod dashboard;
pub mod model;
pub mod monitoring;
pub mod registry;
pub mod security;
pub mod store;
pub mod translate;
pub mod xds;

pub use app::{ControlPlaneConfig, run};
pub use security::SecurityConfig;
