//! Conversion of xDS protos into the proxy's own config types.
//!
//! Everything the Trellis xDS subset (docs/xds-features.md) does not list is rejected with an
//! error naming the resource and the field path, so the control plane gets a precise NACK.
//! Protobuf types never leave this module.

#![allow(deprecated)] // some rejected proto fields are deprecated upstream

pub mod access_log;
mod capture;
pub mod cluster;
pub mod endpoint;
pub mod ext_authz;
pub mod filters;
mod header_case;
pub mod jwt;
pub mod listener;
pub mod rbac;
pub mod route;
mod stats;
mod tcp;
pub mod tls;
pub mod tracing;
mod upgrade;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::google::protobuf::Any;

/// A resource the proxy cannot accept, with the resource and field path that made it so.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {name}: {detail}")]
pub struct ConvertError {
    /// The resource kind (`Listener`, `RouteConfiguration`, `Cluster`, `ClusterLoadAssignment`).
    pub kind: &'static str,
    /// The resource's name.
    pub name: String,
    /// `field.path: what is wrong`.
    pub detail: String,
}

/// Which resource is being converted: used to build errors.
#[derive(Debug, Clone)]
pub(crate) struct Cx {
    kind: &'static str,
    name: String,
}

impl Cx {
    pub(crate) fn new(kind: &'static str, name: &str) -> Self {
        Cx {
            kind,
            name: name.to_string(),
        }
    }

    /// `path: <detail>`.
    pub(crate) fn err(&self, path: &str, detail: impl std::fmt::Display) -> ConvertError {
        ConvertError {
            kind: self.kind,
            name: self.name.clone(),
            detail: format!("{path}: {detail}"),
        }
    }

    /// A field the subset does not include is set.
    pub(crate) fn unsupported_field(&self, path: &str) -> ConvertError {
        self.err(path, "field is not supported")
    }

    /// A field has a value the subset does not include.
    pub(crate) fn unsupported_value(
        &self,
        path: &str,
        value: impl std::fmt::Display,
    ) -> ConvertError {
        self.err(path, format_args!("{value} is not supported"))
    }

    /// A required field is missing.
    pub(crate) fn missing(&self, path: &str) -> ConvertError {
        self.err(path, "is required")
    }
}

/// Joins a field path: `join("a.b", "c")` is `a.b.c`.
pub(crate) fn join(prefix: &str, field: &str) -> String {
    let field = field.strip_prefix("r#").unwrap_or(field);
    if prefix.is_empty() {
        field.to_string()
    } else {
        format!("{prefix}.{field}")
    }
}

pub(crate) fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// Destructures a proto message exhaustively (so a new proto field fails to compile here) and
/// rejects every field outside the supported list that is not at its default value.
macro_rules! reject_unsupported {
    ($cx:expr, $path:expr, $msg:expr, $ty:path { $($used:ident),* $(,)? } unsupported { $($unused:ident),* $(,)? }) => {{
        let $ty { $($used: _,)* $($unused,)* } = $msg;
        $(
            if !$crate::xds::convert::is_default($unused) {
                return Err($cx.unsupported_field(&$crate::xds::convert::join($path, stringify!($unused))));
            }
        )*
    }};
}
pub(crate) use reject_unsupported;

/// Converts a proto duration; negative values are rejected.
pub(crate) fn duration(
    cx: &Cx,
    path: &str,
    d: &envoy_types::pb::google::protobuf::Duration,
) -> Result<Duration, ConvertError> {
    if d.seconds < 0 || d.nanos < 0 || d.nanos >= 1_000_000_000 {
        return Err(cx.err(path, "must be a non-negative duration"));
    }
    Ok(Duration::new(d.seconds as u64, d.nanos as u32))
}

/// Converts `address.socket_address{address, port_value}` (IP literals only: no DNS).
pub(crate) fn socket_address(
    cx: &Cx,
    path: &str,
    address: Option<&core::Address>,
) -> Result<SocketAddr, ConvertError> {
    use core::address::Address as A;
    let address = address.ok_or_else(|| cx.missing(path))?;
    let sa = match &address.address {
        Some(A::SocketAddress(sa)) => sa,
        Some(A::Pipe(_)) => return Err(cx.unsupported_field(&join(path, "pipe"))),
        Some(A::EnvoyInternalAddress(_)) => {
            return Err(cx.unsupported_field(&join(path, "envoy_internal_address")));
        }
        None => return Err(cx.missing(&join(path, "socket_address"))),
    };
    let path = join(path, "socket_address");
    reject_unsupported!(cx, &path, sa, core::SocketAddress { address, port_specifier }
        unsupported { protocol, resolver_name, ipv4_compat, network_namespace_filepath });
    let ip: IpAddr = sa.address.parse().map_err(|_| {
        cx.err(
            &join(&path, "address"),
            format_args!("{:?} is not an IP address", sa.address),
        )
    })?;
    Ok(SocketAddr::new(ip, socket_port(cx, &path, sa)?))
}

/// The numeric port of a socket address (named ports are not supported).
pub(crate) fn socket_port(
    cx: &Cx,
    path: &str,
    sa: &core::SocketAddress,
) -> Result<u16, ConvertError> {
    let port = match &sa.port_specifier {
        Some(core::socket_address::PortSpecifier::PortValue(p)) => *p,
        Some(core::socket_address::PortSpecifier::NamedPort(_)) => {
            return Err(cx.unsupported_field(&join(path, "named_port")));
        }
        None => return Err(cx.missing(&join(path, "port_value"))),
    };
    u16::try_from(port).map_err(|_| {
        cx.err(
            &join(path, "port_value"),
            format_args!("{port} is not a port"),
        )
    })
}

/// Accepts only `{ads: {}}` config sources (with an optional `resource_api_version: V3`).
pub(crate) fn ads_config_source(
    cx: &Cx,
    path: &str,
    source: Option<&core::ConfigSource>,
) -> Result<(), ConvertError> {
    use core::config_source::ConfigSourceSpecifier as S;
    let source = source.ok_or_else(|| cx.missing(path))?;
    reject_unsupported!(cx, path, source, core::ConfigSource { resource_api_version, config_source_specifier }
        unsupported { authorities, initial_fetch_timeout });
    if source.resource_api_version != core::ApiVersion::Auto as i32
        && source.resource_api_version != core::ApiVersion::V3 as i32
    {
        return Err(cx.unsupported_value(
            &join(path, "resource_api_version"),
            source.resource_api_version,
        ));
    }
    match &source.config_source_specifier {
        Some(S::Ads(_)) => Ok(()),
        Some(S::Path(_)) => Err(cx.unsupported_field(&join(path, "path"))),
        Some(S::PathConfigSource(_)) => {
            Err(cx.unsupported_field(&join(path, "path_config_source")))
        }
        Some(S::ApiConfigSource(_)) => Err(cx.unsupported_field(&join(path, "api_config_source"))),
        Some(S::Self_(_)) => Err(cx.unsupported_field(&join(path, "self"))),
        None => Err(cx.missing(&join(path, "ads"))),
    }
}

/// Decodes an `Any` that must carry `type_url`.
pub(crate) fn decode_any<M: prost::Message + Default>(
    cx: &Cx,
    path: &str,
    any: &Any,
    type_url: &str,
) -> Result<M, ConvertError> {
    if any.type_url != type_url {
        return Err(cx.unsupported_value(&join(path, "@type"), &any.type_url));
    }
    M::decode(any.value.as_slice()).map_err(|e| cx.err(path, format_args!("cannot decode: {e}")))
}

/// Decodes a resource from a `DiscoveryResponse`; errors name the type since the name is unknown.
pub fn decode_resource<M: prost::Message + Default>(
    kind: &'static str,
    index: usize,
    any: &Any,
    type_url: &str,
) -> Result<M, ConvertError> {
    let cx = Cx::new(kind, &format!("resources[{index}]"));
    decode_any(&cx, "", any, type_url).map_err(|mut e| {
        e.detail = e.detail.trim_start_matches(": ").to_string();
        e
    })
}

#[cfg(test)]
mod tests;
