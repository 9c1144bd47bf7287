//! Transparent capture fields of a `Listener`: `use_original_dst`, `bind_to_port` and the
//! `envoy.filters.listener.original_dst` listener filter (see [`config::ListenerCapture`]).

use envoy_types::pb::envoy::config::listener::v3 as proto;
use envoy_types::pb::envoy::extensions::filters::listener::original_dst::v3::OriginalDst;

use super::{ConvertError, Cx, decode_any, join};
use crate::config;

/// The original destination listener filter's name.
pub const ORIGINAL_DST: &str = "envoy.filters.listener.original_dst";
/// Its config type (no fields).
pub const ORIGINAL_DST_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst";

/// The listener-level fields; `original_dst_filter` says whether the listener filter is there.
pub fn listener_capture(l: &proto::Listener, original_dst_filter: bool) -> config::ListenerCapture {
    config::ListenerCapture {
        use_original_dst: l.use_original_dst.is_some_and(|b| b.value),
        original_dst_filter,
        bind_to_port: l.bind_to_port.is_none_or(|b| b.value),
    }
}

/// Checks the original destination listener filter's config (an empty `OriginalDst`).
pub fn original_dst_filter(
    cx: &Cx,
    path: &str,
    f: &proto::ListenerFilter,
) -> Result<(), ConvertError> {
    match &f.config_type {
        None => Ok(()),
        Some(proto::listener_filter::ConfigType::TypedConfig(any)) => {
            let tpath = join(path, "typed_config");
            let OriginalDst {} = decode_any(cx, &tpath, any, ORIGINAL_DST_TYPE)?;
            Ok(())
        }
        Some(proto::listener_filter::ConfigType::ConfigDiscovery(_)) => {
            Err(cx.unsupported_field(&join(path, "config_discovery")))
        }
    }
}

/// `filter_chain_match.destination_port` (a TCP port).
pub fn destination_port(
    cx: &Cx,
    path: &str,
    m: &proto::FilterChainMatch,
) -> Result<Option<u16>, ConvertError> {
    match &m.destination_port {
        None => Ok(None),
        Some(p) => u16::try_from(p.value)
            .ok()
            .filter(|p| *p != 0)
            .map(Some)
            .ok_or_else(|| {
                cx.err(
                    &join(path, "destination_port"),
                    format_args!("{} is not a TCP port", p.value),
                )
            }),
    }
}

/// `Cluster.upstream_bind_config`: only `source_address` with port 0 (any port) is supported —
/// captured mode's inbound clusters connect to the app from `127.0.0.6`.
pub fn upstream_bind(
    cx: &Cx,
    b: &envoy_types::pb::envoy::config::core::v3::BindConfig,
) -> Result<std::net::IpAddr, ConvertError> {
    use envoy_types::pb::envoy::config::core::v3 as core;
    let path = "upstream_bind_config";
    super::reject_unsupported!(cx, path, b, core::BindConfig { source_address }
        unsupported { freebind, socket_options, extra_source_addresses, additional_source_addresses, local_address_selector, validate_network_namespaces });
    let sa = b
        .source_address
        .clone()
        .ok_or_else(|| cx.missing(&join(path, "source_address")))?;
    let address = core::Address {
        address: Some(core::address::Address::SocketAddress(sa)),
    };
    let addr = super::socket_address(cx, path, Some(&address))?;
    if addr.port() != 0 {
        return Err(cx.err(
            &join(path, "source_address.port_value"),
            "only 0 (any port) is supported",
        ));
    }
    Ok(addr.ip())
}

#[cfg(test)]
mod tests;
