//! Fixtures the translation tests share: Istio YAML in, a proxy's identity, decoded resources out.

use std::path::Path;

use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use trellis_xds::{NodeIdentity, ProxyType};

use crate::model::MeshModel;
use crate::xds::ProxyResources;

/// The mesh model of `yaml` (Istio documents), which must parse without errors.
pub fn model(yaml: &str) -> MeshModel {
    let parsed = trellis_api::parse_documents(Path::new("mesh.yaml"), yaml);
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    MeshModel::build(&parsed.resources)
}

/// A sidecar at `ip` in `namespace` (workload `w`, service account `default`, no labels, no app
/// IP, no SDS); tests override what they need with struct update syntax.
pub fn sidecar(ip: &str, namespace: &str) -> NodeIdentity {
    NodeIdentity {
        proxy_type: ProxyType::Sidecar,
        ip: ip.parse().expect("ip"),
        workload: "w".into(),
        namespace: namespace.into(),
        service_account: "default".into(),
        labels: Default::default(),
        app_ip: None,
        sds: false,
        interception: trellis_xds::InterceptionMode::None,
    }
}

/// The resource of `type_url` named `name` in `out`, decoded as `M`.
pub fn decode<M: Message + Default>(out: &ProxyResources, type_url: &str, name: &str) -> M {
    let any = out
        .by_type
        .get(type_url)
        .and_then(|m| m.get(name))
        .unwrap_or_else(|| panic!("no {type_url} named {name}"));
    decode_any(any)
}

/// Decodes a typed config (`Any`) as `M`.
pub fn decode_any<M: Message + Default>(any: &Any) -> M {
    M::decode(any.value.as_slice()).expect("decodes")
}
