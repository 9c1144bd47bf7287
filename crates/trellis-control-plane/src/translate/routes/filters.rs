//! Per-route config of the HTTP filters (`fault`, `cors`) and the filter chain every HTTP
//! connection manager gets: `fault`, `cors`, `router`, as istiod builds it.

use envoy_types::pb::envoy::config::route::v3::Route;
use envoy_types::pb::envoy::extensions::filters::common::fault::v3::{
    FaultDelay, fault_delay::FaultDelaySecifier,
};
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::{Cors, CorsPolicy};
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::{
    FaultAbort, HttpFault, fault_abort::ErrorType,
};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpFilter, http_filter,
};
use envoy_types::pb::google::protobuf::BoolValue;
use trellis_api::StringMatch;
use trellis_api::networking::{HttpRoute, UnmatchedPreflights};
use trellis_xds::{to_any, type_url};

use super::matching::string_matcher;
use crate::translate::proto::{CORS, CORS_POLICY_TYPE, CORS_TYPE, FAULT, FAULT_TYPE, fraction};

/// The upgrades every connection manager lets through: WebSocket, as istiod emits.
pub fn upgrade_configs() -> Vec<envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::UpgradeConfig>{
    vec![envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::UpgradeConfig {
        upgrade_type: "websocket".to_string(),
        ..Default::default()
    }]
}

/// The HTTP filters of every connection manager, in order.
pub fn http_filters() -> Vec<HttpFilter> {
    let filter = |name: &str, any| HttpFilter {
        name: name.to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(any)),
        ..Default::default()
    };
    vec![
        filter(FAULT, to_any(FAULT_TYPE, &HttpFault::default())),
        filter(CORS, to_any(CORS_TYPE, &Cors::default())),
        filter(
            type_url::names::ROUTER,
            to_any(type_url::ROUTER, &Router::default()),
        ),
    ]
}

/// Sets the rule's fault and CORS policies on the route.
pub fn apply(route: &mut Route, http: &HttpRoute) {
    if let Some(fault) = &http.fault {
        let delay = fault.delay.as_ref().and_then(|d| {
            let fixed = d.fixed_delay?;
            let percent = d
                .percentage
                .map(|p| p.value)
                .or(d.percent.map(f64::from))
                .unwrap_or(100.0);
            Some(FaultDelay {
                fault_delay_secifier: Some(FaultDelaySecifier::FixedDelay(
                    crate::translate::proto::duration(fixed.as_std()),
                )),
                percentage: Some(fraction(percent)),
            })
        });
        let abort = fault.abort.as_ref().and_then(|a| {
            let error_type = if let Some(status) = a.http_status {
                ErrorType::HttpStatus(u32::try_from(status).ok()?)
            } else {
                ErrorType::GrpcStatus(grpc_code(a.grpc_status.as_deref()?)?)
            };
            Some(FaultAbort {
                error_type: Some(error_type),
                percentage: Some(fraction(a.percentage.map_or(100.0, |p| p.value))),
                ..Default::default()
            })
        });
        if delay.is_some() || abort.is_some() {
            let config = HttpFault {
                delay,
                abort,
                ..Default::default()
            };
            route
                .typed_per_filter_config
                .insert(FAULT.to_string(), to_any(FAULT_TYPE, &config));
        }
    }
    if let Some(cors) = &http.cors_policy {
        let mut origins: Vec<_> = cors
            .allow_origin
            .iter()
            .map(|o| string_matcher(&StringMatch::Exact(o.clone())))
            .collect();
        origins.extend(cors.allow_origins.iter().map(string_matcher));
        let policy = CorsPolicy {
            allow_origin_string_match: origins,
            allow_methods: cors.allow_methods.join(","),
            allow_headers: cors.allow_headers.join(","),
            expose_headers: cors.expose_headers.join(","),
            max_age: cors
                .max_age
                .map(|d| d.as_std().as_secs().to_string())
                .unwrap_or_default(),
            allow_credentials: cors.allow_credentials.map(|value| BoolValue { value }),
            forward_not_matching_preflights: match cors.unmatched_preflights {
                Some(UnmatchedPreflights::Ignore) => Some(BoolValue { value: false }),
                _ => None,
            },
            ..Default::default()
        };
        route
            .typed_per_filter_config
            .insert(CORS.to_string(), to_any(CORS_POLICY_TYPE, &policy));
    }
}

/// A gRPC status name (`UNAVAILABLE`) or number as its code.
fn grpc_code(name: &str) -> Option<u32> {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    name.parse().ok().or_else(|| {
        NAMES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(name))
            .and_then(|i| u32::try_from(i).ok())
    })
}
