//! Small constructors for the Envoy messages every translator needs.

use envoy_types::pb::envoy::config::core::v3::{
    Address, AggregatedConfigSource, ApiVersion, ConfigSource, SocketAddress, address,
    config_source::ConfigSourceSpecifier, socket_address::PortSpecifier,
};
use envoy_types::pb::google::protobuf::Duration;

/// `IP:PORT` as an Envoy address.
pub fn socket_address(ip: impl ToString, port: u32) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: ip.to_string(),
            port_specifier: Some(PortSpecifier::PortValue(port)),
            ..Default::default()
        })),
    }
}

/// "Fetch this over the ADS stream".
pub fn ads() -> ConfigSource {
    ConfigSource {
        config_source_specifier: Some(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
        resource_api_version: ApiVersion::V3 as i32,
        ..Default::default()
    }
}

/// A protobuf duration from a std one.
pub fn duration(d: std::time::Duration) -> Duration {
    Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// HTTP filter name of fault injection.
pub const FAULT: &str = "envoy.filters.http.fault";
/// Type URL of its config (`HTTPFault`, on the filter and per route).
pub const FAULT_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault";
/// HTTP filter name of CORS.
pub const CORS: &str = "envoy.filters.http.cors";
/// Type URL of the CORS filter's (empty) config.
pub const CORS_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors";
/// Type URL of a route's CORS policy.
pub const CORS_POLICY_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy";
/// Retry host predicate name: avoid hosts already tried.
pub const PREVIOUS_HOSTS: &str = "envoy.retry_host_predicates.previous_hosts";
/// Type URL of its config.
pub const PREVIOUS_HOSTS_TYPE: &str =
    "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate";

/// A percentage (0..=100, fractions allowed) as Istio sends it: per million.
pub fn fraction(percent: f64) -> envoy_types::pb::envoy::r#type::v3::FractionalPercent {
    use envoy_types::pb::envoy::r#type::v3::{
        FractionalPercent, fractional_percent::DenominatorType,
    };
    let numerator = (percent.clamp(0.0, 100.0) * 10_000.0).round() as u32;
    FractionalPercent {
        numerator,
        denominator: DenominatorType::Million as i32,
    }
}
