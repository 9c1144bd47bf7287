//! Readiness, as Istio's health port (15021) reports it: `GET /healthz/ready` answers `200` only
//! once the first full config is applied (CDS and LDS, the EDS and RDS resources they reference,
//! and the workload certificate in secure mode) and `503` before that and while draining.
//!
//! Once complete, readiness stays (a later push that adds a cluster whose endpoints are still on
//! their way does not make a serving proxy unready), as Envoy's init manager runs only once.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::config::{Cluster, Discovery, Endpoints, Listener, RouteSource, RouteTable};

/// The path Istio's readiness probe asks on the health port.
pub const READY_PATH: &str = "/healthz/ready";

/// Whether the proxy should get traffic, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// The first full config is applied and the proxy is not draining.
    Ready,
    /// Still waiting for config; says what is missing.
    Initializing(String),
    /// Shutting down: no new traffic.
    Draining,
}

impl Readiness {
    /// Whether traffic may be sent.
    pub fn is_ready(&self) -> bool {
        matches!(self, Readiness::Ready)
    }

    /// Envoy's server state name (`LIVE`, `PRE_INITIALIZING`, `DRAINING`).
    pub fn state(&self) -> &'static str {
        match self {
            Readiness::Ready => "LIVE",
            Readiness::Initializing(_) => "PRE_INITIALIZING",
            Readiness::Draining => "DRAINING",
        }
    }
}

/// What the health port reports; implemented by the running proxy.
pub trait ReadinessSource: Send + Sync + 'static {
    /// The proxy's readiness now.
    fn readiness(&self) -> Readiness;
}

/// The config the proxy has applied so far; `None` for a type not received yet.
#[derive(Debug, Clone, Copy)]
pub struct Applied<'a> {
    /// CDS.
    pub clusters: Option<&'a [Cluster]>,
    /// EDS, every assignment received.
    pub endpoints: &'a [Endpoints],
    /// LDS.
    pub listeners: Option<&'a [Listener]>,
    /// RDS, every route table received.
    pub routes: &'a [RouteTable],
    /// Secure mode only: whether the workload certificate is there.
    pub certificate: Option<bool>,
}

impl Applied<'_> {
    /// What the first full config still lacks, or `None` when it is complete.
    pub fn missing(&self) -> Option<String> {
        let Some(clusters) = self.clusters else {
            return Some("waiting for CDS".into());
        };
        let Some(listeners) = self.listeners else {
            return Some("waiting for LDS".into());
        };
        if self.certificate == Some(false) {
            return Some("waiting for the workload certificate".into());
        }
        let have: BTreeSet<&str> = self
            .endpoints
            .iter()
            .map(|e| e.cluster_name.as_str())
            .collect();
        let eds: Vec<&str> = clusters
            .iter()
            .filter_map(|c| match &c.discovery {
                Discovery::Eds { service_name } => Some(service_name.as_str()),
                _ => None,
            })
            .filter(|name| !have.contains(name))
            .collect();
        if let Some(first) = eds.first() {
            return Some(format!("waiting for EDS {first} ({} missing)", eds.len()));
        }
        let have: BTreeSet<&str> = self.routes.iter().map(|r| r.name.as_str()).collect();
        let rds: BTreeSet<&str> = listeners
            .iter()
            .flat_map(|l| &l.filter_chains)
            .filter_map(|c| match &c.hcm.routes {
                RouteSource::Rds(name) => Some(name.as_str()),
                RouteSource::Inline(_) => None,
            })
            .filter(|name| !have.contains(name))
            .collect();
        rds.first()
            .map(|first| format!("waiting for RDS {first} ({} missing)", rds.len()))
    }
}

/// Health server errors.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// The server failed.
    #[error("health server: {0}")]
    Serve(#[from] std::io::Error),
}

type Source = Arc<dyn ReadinessSource>;

/// The health port's router: `GET /healthz/ready`.
pub fn router(source: Source) -> Router {
    Router::new()
        .route(READY_PATH, get(ready))
        .with_state(source)
}

/// Serves the health port on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    source: Source,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HealthError> {
    axum::serve(listener, router(source))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

/// `200 LIVE`, or `503` with the state and what is missing.
pub fn response(readiness: &Readiness) -> Response {
    match readiness {
        Readiness::Ready => (StatusCode::OK, "LIVE\n").into_response(),
        Readiness::Initializing(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("PRE_INITIALIZING: {why}\n"),
        )
            .into_response(),
        Readiness::Draining => (StatusCode::SERVICE_UNAVAILABLE, "DRAINING\n").into_response(),
    }
}

async fn ready(State(s): State<Source>) -> Response {
    response(&s.readiness())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HttpFilters, LbPolicy, UpstreamProtocol};

    fn eds_cluster(name: &str) -> Cluster {
        Cluster::with_defaults(
            name,
            Discovery::Eds {
                service_name: name.into(),
            },
            LbPolicy::RoundRobin,
            UpstreamProtocol::Http1,
        )
    }

    fn rds_listener(route: &str) -> Listener {
        Listener::plain(
            "l",
            "127.0.0.1:0".parse().expect("addr"),
            "l",
            RouteSource::Rds(route.into()),
            HttpFilters::default(),
        )
    }

    fn table(name: &str) -> RouteTable {
        RouteTable {
            name: name.into(),
            virtual_hosts: Vec::new(),
        }
    }

    #[test]
    fn waits_for_every_type_and_each_referenced_resource() {
        let clusters = [eds_cluster("a")];
        let listeners = [rds_listener("r")];
        let endpoints = [Endpoints {
            cluster_name: "a".into(),
            endpoints: Vec::new(),
        }];
        let routes = [table("r")];
        let complete = Applied {
            clusters: Some(&clusters),
            endpoints: &endpoints,
            listeners: Some(&listeners),
            routes: &routes,
            certificate: None,
        };
        assert_eq!(complete.missing(), None);
        let cases = [
            (
                Applied {
                    clusters: None,
                    ..complete
                },
                "waiting for CDS",
            ),
            (
                Applied {
                    listeners: None,
                    ..complete
                },
                "waiting for LDS",
            ),
            (
                Applied {
                    endpoints: &[],
                    ..complete
                },
                "waiting for EDS a (1 missing)",
            ),
            (
                Applied {
                    routes: &[],
                    ..complete
                },
                "waiting for RDS r (1 missing)",
            ),
            (
                Applied {
                    certificate: Some(false),
                    ..complete
                },
                "waiting for the workload certificate",
            ),
        ];
        for (applied, want) in cases {
            assert_eq!(applied.missing().as_deref(), Some(want));
        }
        let with_cert = Applied {
            certificate: Some(true),
            ..complete
        };
        assert_eq!(with_cert.missing(), None);
    }

    #[test]
    fn states_are_envoys() {
        assert_eq!(Readiness::Ready.state(), "LIVE");
        assert_eq!(Readiness::Draining.state(), "DRAINING");
        assert!(!Readiness::Initializing("x".into()).is_ready());
        assert_eq!(
            response(&Readiness::Draining).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
