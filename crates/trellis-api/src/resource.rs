//! A typed Istio resource, the kinds Trellis knows, and their one-line summaries.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::meta::{ObjectMeta, ResourceKey, Source};
use crate::networking::{
    DestinationRule, Gateway, ServiceEntry, Sidecar, VirtualService, WorkloadEntry, WorkloadGroup,
};
use crate::security::{AuthorizationPolicy, PeerAuthentication, RequestAuthentication};
use crate::telemetry::Telemetry;

/// One parsed and validated Istio resource.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resource {
    /// Its metadata.
    pub meta: ObjectMeta,
    /// Where it was read from.
    #[serde(skip)]
    pub source: Source,
    /// Its typed spec.
    pub spec: Spec,
}

/// The typed spec of every kind Trellis models.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
#[allow(clippy::large_enum_variant)] // resources are few and long-lived; boxing would only add noise for users
pub enum Spec {
    /// networking.istio.io VirtualService.
    VirtualService(VirtualService),
    /// networking.istio.io DestinationRule.
    DestinationRule(DestinationRule),
    /// networking.istio.io ServiceEntry.
    ServiceEntry(ServiceEntry),
    /// networking.istio.io WorkloadEntry.
    WorkloadEntry(WorkloadEntry),
    /// networking.istio.io Gateway.
    Gateway(Gateway),
    /// networking.istio.io Sidecar.
    Sidecar(Sidecar),
    /// networking.istio.io WorkloadGroup.
    WorkloadGroup(WorkloadGroup),
    /// security.istio.io PeerAuthentication.
    PeerAuthentication(PeerAuthentication),
    /// security.istio.io RequestAuthentication.
    RequestAuthentication(RequestAuthentication),
    /// security.istio.io AuthorizationPolicy.
    AuthorizationPolicy(AuthorizationPolicy),
    /// telemetry.istio.io Telemetry.
    Telemetry(Telemetry),
}

impl Spec {
    /// The kind name of this spec.
    pub fn kind(&self) -> &'static str {
        match self {
            Spec::VirtualService(_) => "VirtualService",
            Spec::DestinationRule(_) => "DestinationRule",
            Spec::ServiceEntry(_) => "ServiceEntry",
            Spec::WorkloadEntry(_) => "WorkloadEntry",
            Spec::Gateway(_) => "Gateway",
            Spec::Sidecar(_) => "Sidecar",
            Spec::WorkloadGroup(_) => "WorkloadGroup",
            Spec::PeerAuthentication(_) => "PeerAuthentication",
            Spec::RequestAuthentication(_) => "RequestAuthentication",
            Spec::AuthorizationPolicy(_) => "AuthorizationPolicy",
            Spec::Telemetry(_) => "Telemetry",
        }
    }
}

/// An Istio kind known to Trellis: its API group, served versions, and whether it is modelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindInfo {
    /// API group, e.g. `networking.istio.io`.
    pub group: &'static str,
    /// Kind name.
    pub kind: &'static str,
    /// Versions Istio serves for it.
    pub versions: &'static [&'static str],
    /// Whether Trellis parses it (otherwise it is ignored with a warning).
    pub supported: bool,
}

const NETWORKING: &[&str] = &["v1", "v1beta1", "v1alpha3"];
const SECURITY: &[&str] = &["v1", "v1beta1"];

/// Every Istio kind from Istio's CRDs, modelled or not.
pub const KINDS: &[KindInfo] = &[
    KindInfo {
        group: "networking.istio.io",
        kind: "VirtualService",
        versions: NETWORKING,
        supported: true,
    },
    KindInfo {
        group: "networking.istio.io",
        kind: "DestinationRule",
        versions: NETWORKING,
        supported: true,
    },
    KindInfo {
        group: "networking.istio.io",
        kind: "ServiceEntry",
        versions: NETWORKING,
        supported: true,
    },
    KindInfo {
        group: "networking.istio.io",
        kind: "WorkloadEntry",
        versions: NETWORKING,
        supported: true,
    },
    KindInfo {
        group: "networking.istio.io",
        kind: "Gateway",
        versions: NETWORKING,
        supported: true,
    },
    KindInfo {
        group: "networking.istio.io",
        kind: "Sidecar",
        versions: NETWORKING,
        supported: true,
    },
    KindInfo {
        group: "networking.istio.io",
        kind: "WorkloadGroup",
        versions: NETWORKING,
        supported: true,
    },
    KindInfo {
        group: "networking.istio.io",
        kind: "EnvoyFilter",
        versions: &["v1alpha3"],
        supported: false,
    },
    KindInfo {
        group: "networking.istio.io",
        kind: "ProxyConfig",
        versions: &["v1beta1"],
        supported: false,
    },
    KindInfo {
        group: "security.istio.io",
        kind: "PeerAuthentication",
        versions: SECURITY,
        supported: true,
    },
    KindInfo {
        group: "security.istio.io",
        kind: "RequestAuthentication",
        versions: SECURITY,
        supported: true,
    },
    KindInfo {
        group: "security.istio.io",
        kind: "AuthorizationPolicy",
        versions: SECURITY,
        supported: true,
    },
    KindInfo {
        group: "telemetry.istio.io",
        kind: "Telemetry",
        versions: &["v1", "v1alpha1"],
        supported: true,
    },
    KindInfo {
        group: "extensions.istio.io",
        kind: "WasmPlugin",
        versions: &["v1alpha1"],
        supported: false,
    },
    KindInfo {
        group: "extensions.istio.io",
        kind: "TrafficExtension",
        versions: &["v1alpha1"],
        supported: false,
    },
];

/// Looks up a kind in an API group.
pub fn kind_info(group: &str, kind: &str) -> Option<&'static KindInfo> {
    KINDS.iter().find(|k| k.group == group && k.kind == kind)
}

impl Resource {
    /// The kind name, e.g. `VirtualService`.
    pub fn kind(&self) -> &'static str {
        self.spec.kind()
    }

    /// The identity of this resource.
    pub fn key(&self) -> ResourceKey {
        ResourceKey {
            kind: self.kind(),
            namespace: self.meta.namespace.clone(),
            name: self.meta.name.clone(),
        }
    }

    /// One line describing the resource, for `trellis validate`.
    pub fn summary(&self) -> String {
        let detail = match &self.spec {
            Spec::VirtualService(vs) => {
                let mut s = format!("hosts {}, {} http route(s)", list(&vs.hosts), vs.http.len());
                if !vs.tcp.is_empty() {
                    s.push_str(&format!(", {} tcp route(s)", vs.tcp.len()));
                }
                if !vs.tls.is_empty() {
                    s.push_str(&format!(", {} tls route(s)", vs.tls.len()));
                }
                if !vs.gateways.is_empty() {
                    s.push_str(&format!(", gateways {}", list(&vs.gateways)));
                }
                s
            }
            Spec::DestinationRule(dr) => {
                format!("host {}, {} subset(s)", dr.host, dr.subsets.len())
            }
            Spec::ServiceEntry(se) => format!(
                "hosts {}, {} port(s), resolution {}",
                list(&se.hosts),
                se.ports.len(),
                se.resolution_or_default()
            ),
            Spec::WorkloadEntry(we) => format!(
                "address {}, labels {}",
                we.address.as_deref().unwrap_or("<none>"),
                labels(&we.labels)
            ),
            Spec::Gateway(gw) => format!(
                "{} server(s), selector {}",
                gw.servers.len(),
                labels(&gw.selector)
            ),
            Spec::Sidecar(sc) => format!(
                "{} ingress, {} egress listener(s)",
                sc.ingress.len(),
                sc.egress.len()
            ),
            Spec::WorkloadGroup(wg) => format!(
                "template labels {}",
                labels(
                    wg.template
                        .as_ref()
                        .map(|t| &t.labels)
                        .unwrap_or(&BTreeMap::new())
                )
            ),
            Spec::PeerAuthentication(pa) => format!(
                "mtls {}",
                pa.mtls
                    .as_ref()
                    .and_then(|m| m.mode)
                    .map_or("UNSET", |m| m.as_str())
            ),
            Spec::RequestAuthentication(ra) => format!("{} jwt rule(s)", ra.jwt_rules.len()),
            Spec::AuthorizationPolicy(ap) => format!(
                "action {}, {} rule(s)",
                ap.action.map_or("ALLOW", |a| a.as_str()),
                ap.rules.len()
            ),
            Spec::Telemetry(t) => format!(
                "{} tracing, {} metrics, {} access logging",
                t.tracing.len(),
                t.metrics.len(),
                t.access_logging.len()
            ),
        };
        format!("{}: {detail}", self.key())
    }
}

fn list(items: &[String]) -> String {
    format!("[{}]", items.join(", "))
}

fn labels(labels: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{{{}}}", inner.join(","))
}
