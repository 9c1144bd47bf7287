//! What both ends of xDS share: type URLs, the node identity a proxy presents, and helpers to
//! pack resources into `Any`. Keeping these in one place stops the control plane, the proxy and
//! the Envoy agent from drifting apart on names.

pub mod nds;
pub mod node;
pub mod stats;
pub mod telemetry;
pub mod type_url;

pub use node::{InterceptionMode, NodeIdentity, NodeParseError, ProxyType};

/// Packs a prost message as a `google.protobuf.Any` under its Envoy type URL.
pub fn to_any<M: prost::Message>(
    type_url: &str,
    message: &M,
) -> envoy_types::pb::google::protobuf::Any {
    envoy_types::pb::google::protobuf::Any {
        type_url: type_url.to_string(),
        value: message.encode_to_vec(),
    }
}
