//! The identity a proxy presents to the control plane, in Istio's node format
//! (`TYPE~IP~WORKLOAD.NAMESPACE~NAMESPACE.svc.cluster.local`) with Istio's metadata keys.

use std::collections::BTreeMap;
use std::net::IpAddr;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};

/// Metadata keys carried in `Node.metadata`.
pub mod keys {
    /// The workload's namespace.
    pub const NAMESPACE: &str = "NAMESPACE";
    /// The workload's name.
    pub const WORKLOAD_NAME: &str = "WORKLOAD_NAME";
    /// The workload's service account.
    pub const SERVICE_ACCOUNT: &str = "SERVICE_ACCOUNT";
    /// Comma-separated IPs of the workload; the first one is used.
    pub const INSTANCE_IPS: &str = "INSTANCE_IPS";
    /// A struct of the workload's labels.
    pub const LABELS: &str = "LABELS";
    /// How traffic reaches the proxy: `NONE` is explicit mode, `REDIRECT` is transparent
    /// capture by iptables (Istio's values).
    pub const INTERCEPTION_MODE: &str = "INTERCEPTION_MODE";
    /// Explicit mode: the IP the application listens on.
    pub const APP_IP: &str = "TRELLIS_APP_IP";
    /// `"true"` when the proxy has a workload certificate over SDS (`default`/`ROOTCA`): only
    /// then does the control plane give it mutual TLS (Istio's former `SDS` node metadata).
    pub const SDS: &str = "SDS";
}

/// Whether the proxy is a workload's sidecar or a gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProxyType {
    /// A sidecar next to one workload.
    #[default]
    Sidecar,
    /// A gateway (ingress or egress).
    Router,
}

impl ProxyType {
    /// The node-id prefix Istio uses for this type.
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyType::Sidecar => "sidecar",
            ProxyType::Router => "router",
        }
    }
}

/// How an application's traffic reaches its proxy (Istio's `INTERCEPTION_MODE`): the control
/// plane emits a different listener shape for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InterceptionMode {
    /// Explicit mode: the app uses the proxy as its `HTTP_PROXY`; inbound listeners own the
    /// service ports.
    #[default]
    None,
    /// Transparent capture: iptables `REDIRECT`s outbound TCP to 15001 and inbound TCP to 15006.
    Redirect,
}

impl InterceptionMode {
    /// Istio's metadata value.
    pub fn as_str(self) -> &'static str {
        match self {
            InterceptionMode::None => "NONE",
            InterceptionMode::Redirect => "REDIRECT",
        }
    }

    /// Reads Istio's metadata value; anything but `REDIRECT` (incl. `TPROXY`, which Trellis does
    /// not implement) is treated as explicit mode.
    fn parse(value: Option<&str>) -> Self {
        match value {
            Some("REDIRECT") => InterceptionMode::Redirect,
            _ => InterceptionMode::None,
        }
    }
}

/// Who a proxy is: everything the control plane needs to compute its config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    /// Sidecar or gateway.
    pub proxy_type: ProxyType,
    /// The workload's IP (explicit mode: the loopback address the proxy owns).
    pub ip: IpAddr,
    /// The workload's name.
    pub workload: String,
    /// The workload's namespace.
    pub namespace: String,
    /// The workload's service account.
    pub service_account: String,
    /// The workload's labels.
    pub labels: BTreeMap<String, String>,
    /// Explicit mode: where the application listens. `None` means the app shares `ip`.
    pub app_ip: Option<IpAddr>,
    /// Whether the proxy has a workload certificate (secure mode): mutual TLS needs it.
    pub sds: bool,
    /// How traffic reaches the proxy: explicit (default) or captured by iptables.
    pub interception: InterceptionMode,
}

/// A node the control plane cannot make sense of.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NodeParseError {
    /// The id is not `TYPE~IP~WORKLOAD.NAMESPACE~DOMAIN`.
    #[error(
        "node id {0:?} is not of the form TYPE~IP~WORKLOAD.NAMESPACE~NAMESPACE.svc.cluster.local"
    )]
    BadId(String),
    /// The type part is neither `sidecar` nor `router`.
    #[error("node id {0:?}: unknown proxy type {1:?} (expected sidecar or router)")]
    BadType(String, String),
    /// The IP part (or `TRELLIS_APP_IP`) is not an IP address.
    #[error("node id {0:?}: {1:?} is not an IP address")]
    BadIp(String, String),
}

impl NodeIdentity {
    /// The node id in Istio's format.
    pub fn node_id(&self) -> String {
        format!(
            "{}~{}~{}.{}~{}.svc.cluster.local",
            self.proxy_type.as_str(),
            self.ip,
            self.workload,
            self.namespace,
            self.namespace
        )
    }

    /// The Envoy `Node` message a proxy sends on every xDS stream.
    pub fn to_node(&self) -> Node {
        let mut fields = BTreeMap::new();
        let mut put = |key: &str, value: String| {
            fields.insert(key.to_string(), string_value(value));
        };
        put(keys::NAMESPACE, self.namespace.clone());
        put(keys::WORKLOAD_NAME, self.workload.clone());
        put(keys::SERVICE_ACCOUNT, self.service_account.clone());
        put(keys::INSTANCE_IPS, self.ip.to_string());
        put(
            keys::INTERCEPTION_MODE,
            self.interception.as_str().to_string(),
        );
        if let Some(app_ip) = self.app_ip {
            put(keys::APP_IP, app_ip.to_string());
        }
        if self.sds {
            put(keys::SDS, "true".to_string());
        }
        let labels = self
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), string_value(v.clone())))
            .collect();
        fields.insert(
            keys::LABELS.to_string(),
            Value {
                kind: Some(Kind::StructValue(Struct { fields: labels })),
            },
        );
        Node {
            id: self.node_id(),
            cluster: format!("{}.{}", self.workload, self.namespace),
            metadata: Some(Struct {
                fields: fields.into_iter().collect(),
            }),
            ..Default::default()
        }
    }

    /// The same metadata as JSON, for an Envoy bootstrap file.
    pub fn metadata_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        map.insert(keys::NAMESPACE.into(), self.namespace.clone().into());
        map.insert(keys::WORKLOAD_NAME.into(), self.workload.clone().into());
        map.insert(
            keys::SERVICE_ACCOUNT.into(),
            self.service_account.clone().into(),
        );
        map.insert(keys::INSTANCE_IPS.into(), self.ip.to_string().into());
        map.insert(
            keys::INTERCEPTION_MODE.into(),
            self.interception.as_str().into(),
        );
        if let Some(app_ip) = self.app_ip {
            map.insert(keys::APP_IP.into(), app_ip.to_string().into());
        }
        if self.sds {
            map.insert(keys::SDS.into(), "true".into());
        }
        let labels: serde_json::Map<String, serde_json::Value> = self
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into()))
            .collect();
        map.insert(keys::LABELS.into(), labels.into());
        serde_json::Value::Object(map)
    }

    /// Reads a node back, as the control plane does when a stream opens. The id is authoritative
    /// for type, IP, workload and namespace; metadata adds the rest.
    pub fn from_node(node: &Node) -> Result<Self, NodeParseError> {
        let id = node.id.as_str();
        let parts: Vec<&str> = id.split('~').collect();
        let [kind, ip, workload_ns, _domain] = parts.as_slice() else {
            return Err(NodeParseError::BadId(id.to_string()));
        };
        let proxy_type = match *kind {
            "sidecar" => ProxyType::Sidecar,
            "router" => ProxyType::Router,
            other => return Err(NodeParseError::BadType(id.to_string(), other.to_string())),
        };
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| NodeParseError::BadIp(id.to_string(), ip.to_string()))?;
        let (workload, namespace) = workload_ns
            .rsplit_once('.')
            .filter(|(w, n)| !w.is_empty() && !n.is_empty())
            .ok_or_else(|| NodeParseError::BadId(id.to_string()))?;
        let meta = node.metadata.as_ref();
        let text = |key: &str| meta.and_then(|m| m.fields.get(key)).and_then(as_str);
        let labels = meta
            .and_then(|m| m.fields.get(keys::LABELS))
            .and_then(|v| match &v.kind {
                Some(Kind::StructValue(s)) => Some(s),
                _ => None,
            })
            .map(|s| {
                s.fields
                    .iter()
                    .filter_map(|(k, v)| as_str(v).map(|v| (k.clone(), v.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let app_ip = match text(keys::APP_IP) {
            Some(s) => Some(
                s.parse()
                    .map_err(|_| NodeParseError::BadIp(id.to_string(), s.to_string()))?,
            ),
            None => None,
        };
        Ok(NodeIdentity {
            proxy_type,
            ip,
            workload: workload.to_string(),
            namespace: namespace.to_string(),
            service_account: text(keys::SERVICE_ACCOUNT).unwrap_or("default").to_string(),
            labels,
            app_ip,
            sds: text(keys::SDS) == Some("true"),
            interception: InterceptionMode::parse(text(keys::INTERCEPTION_MODE)),
        })
    }

    /// Where the application listens: `app_ip` in explicit mode, else the workload IP.
    pub fn app_ip(&self) -> IpAddr {
        self.app_ip.unwrap_or(self.ip)
    }

    /// Istio's canonical service of this workload (see [`canonical_service`]).
    pub fn canonical_service(&self) -> &str {
        canonical_service(&self.labels, &self.workload)
    }
}

/// The labels Istio reads a workload's canonical service from, in order.
pub const CANONICAL_SERVICE_LABELS: [&str; 3] = [
    "service.istio.io/canonical-name",
    "app.kubernetes.io/name",
    "app",
];
/// The labels Istio reads a workload's canonical revision from, in order.
pub const CANONICAL_REVISION_LABELS: [&str; 3] = [
    "service.istio.io/canonical-revision",
    "app.kubernetes.io/version",
    "version",
];

/// Istio's canonical service: the first of [`CANONICAL_SERVICE_LABELS`], else the workload
/// name. One rule for metrics, endpoint metadata and the dashboard, so they name alike.
pub fn canonical_service<'a>(labels: &'a BTreeMap<String, String>, workload: &'a str) -> &'a str {
    CANONICAL_SERVICE_LABELS
        .iter()
        .find_map(|k| labels.get(*k))
        .map_or(workload, String::as_str)
}

/// Istio's canonical revision: the first of [`CANONICAL_REVISION_LABELS`], else `latest`.
pub fn canonical_revision(labels: &BTreeMap<String, String>) -> &str {
    CANONICAL_REVISION_LABELS
        .iter()
        .find_map(|k| labels.get(*k))
        .map_or("latest", String::as_str)
}

fn string_value(s: String) -> Value {
    Value {
        kind: Some(Kind::StringValue(s)),
    }
}

fn as_str(v: &Value) -> Option<&str> {
    match &v.kind {
        Some(Kind::StringValue(s)) => Some(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> NodeIdentity {
        NodeIdentity {
            proxy_type: ProxyType::Sidecar,
            ip: "127.0.10.2".parse().expect("ip"),
            workload: "reviews-v1".into(),
            namespace: "bookinfo".into(),
            service_account: "reviews".into(),
            labels: [("app".to_string(), "reviews".to_string())].into(),
            app_ip: Some("127.0.10.102".parse().expect("ip")),
            sds: true,
            interception: InterceptionMode::None,
        }
    }

    #[test]
    fn node_round_trips_through_envoy_node() {
        let id = sample();
        let node = id.to_node();
        assert_eq!(
            node.id,
            "sidecar~127.0.10.2~reviews-v1.bookinfo~bookinfo.svc.cluster.local"
        );
        assert_eq!(NodeIdentity::from_node(&node), Ok(id));
    }

    #[test]
    fn captured_nodes_say_redirect() {
        let id = NodeIdentity {
            interception: InterceptionMode::Redirect,
            ..sample()
        };
        let node = id.to_node();
        let mode = node
            .metadata
            .as_ref()
            .and_then(|m| m.fields.get(keys::INTERCEPTION_MODE))
            .and_then(as_str);
        assert_eq!(mode, Some("REDIRECT"));
        assert_eq!(id.metadata_json()[keys::INTERCEPTION_MODE], "REDIRECT");
        assert_eq!(NodeIdentity::from_node(&node), Ok(id));
    }

    #[test]
    fn bad_ids_say_what_is_wrong() {
        let node = |id: &str| Node {
            id: id.into(),
            ..Default::default()
        };
        assert_eq!(
            NodeIdentity::from_node(&node("just-a-name")),
            Err(NodeParseError::BadId("just-a-name".into()))
        );
        assert_eq!(
            NodeIdentity::from_node(&node("waypoint~1.2.3.4~a.b~b.svc.cluster.local")),
            Err(NodeParseError::BadType(
                "waypoint~1.2.3.4~a.b~b.svc.cluster.local".into(),
                "waypoint".into()
            ))
        );
        assert_eq!(
            NodeIdentity::from_node(&node("sidecar~nope~a.b~b.svc.cluster.local")),
            Err(NodeParseError::BadIp(
                "sidecar~nope~a.b~b.svc.cluster.local".into(),
                "nope".into()
            ))
        );
    }
}
