//! The proxy's lifecycle around the data path: readiness on Istio's health port (15021) once the
//! first full config is applied, and the drain on shutdown (stop accepting, let in-flight work
//! finish within a drain period).
//!
//! `health` decides readiness and serves `/healthz/ready`; `drain` holds the draining state and
//! runs the drain itself. Both are wired in `app.rs`.

pub mod drain;
pub mod health;

use std::net::SocketAddr;
use std::time::Duration;

pub use drain::Drain;
pub use health::{Readiness, ReadinessSource};

/// Istio's default `terminationDrainDuration`: how long a draining proxy waits for in-flight
/// work before it exits anyway.
pub const DEFAULT_DRAIN_DURATION: Duration = Duration::from_secs(5);

/// How the proxy starts and stops: where readiness is served and how long a drain may take.
#[derive(Debug, Clone)]
pub struct LifecycleConfig {
    /// Istio's health port (`IP:15021`): `GET /healthz/ready`. `None`: not served (the admin
    /// API's `/ready` answers the same).
    pub health_address: Option<SocketAddr>,
    /// How long a drain (SIGTERM, [`crate::ProxyHandle::drain`]) waits for open connections
    /// before the proxy stops anyway.
    pub drain_duration: Duration,
    /// Envoy's listener warming at startup: the first listeners are bound only once the first
    /// full config is applied (the EDS and RDS they need included), so a (re)started proxy never
    /// answers a request with "no route" or "no endpoints" it would have had a moment later.
    /// `false` binds them as soon as LDS arrives (tests that look at a half-configured proxy).
    pub warm_listeners: bool,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            health_address: None,
            drain_duration: DEFAULT_DRAIN_DURATION,
            warm_listeners: false,
        }
    }
}
