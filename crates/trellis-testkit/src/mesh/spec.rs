//! What mesh to run: services, workloads, data plane and options, and the Istio YAML
//! (`ServiceEntry` per service, `WorkloadEntry` per workload) that describes it to the control
//! plane.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::addresses::{ADMIN_PORT, AddressPlan, MAX_WORKLOADS, OUTBOUND_PORT};

/// Which data plane the sidecars are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dataplane {
    /// `trellis proxy`.
    Trellis,
    /// A stock Envoy supervised by `trellis agent`.
    Envoy,
}

impl Dataplane {
    /// Both data planes, Trellis first.
    pub const ALL: [Dataplane; 2] = [Dataplane::Trellis, Dataplane::Envoy];

    /// `trellis` or `envoy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Dataplane::Trellis => "trellis",
            Dataplane::Envoy => "envoy",
        }
    }
}

impl fmt::Display for Dataplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Dataplane {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "trellis" => Ok(Dataplane::Trellis),
            "envoy" => Ok(Dataplane::Envoy),
            other => bail!("unknown data plane {other:?} (expected trellis or envoy)"),
        }
    }
}

/// A service of the mesh: one `ServiceEntry` with one port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// The short name (`reviews`); the host is `NAME.NAMESPACE.svc.cluster.local`.
    pub name: String,
    /// The namespace.
    pub namespace: String,
    /// The service port (also the port the apps listen on).
    pub port: u16,
    /// `HTTP` or `HTTP2`.
    pub protocol: String,
}

impl ServiceSpec {
    /// The fully qualified host name.
    pub fn host(&self) -> String {
        format!("{}.{}.svc.cluster.local", self.name, self.namespace)
    }
}

/// One workload: an echo app plus its sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WorkloadSpec {
    /// The service (name) it belongs to.
    pub service: String,
    /// Its `version` label.
    pub version: String,
    /// Its index among the workloads of that service and version (0, 1, …).
    pub instance: u32,
    /// URLs the echo app calls on every request (through its sidecar).
    pub calls: Vec<String>,
}

/// How echo apps are run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EchoMode {
    /// As `trellis echo` processes (closest to reality).
    #[default]
    Process,
    /// As tasks in the calling process.
    InProcess,
}

/// What mesh to run.
#[derive(Debug, Clone)]
pub struct MeshSpec {
    /// The `/24` to use: `127.x.y.0`.
    pub base: Ipv4Addr,
    /// Which data plane the sidecars are.
    pub dataplane: Dataplane,
    /// The services.
    pub services: Vec<ServiceSpec>,
    /// The workloads.
    pub workloads: Vec<WorkloadSpec>,
    /// More Istio YAML written to `extra.yaml` before the control plane starts (may be empty).
    pub extra_yaml: String,
}

/// How to run it.
#[derive(Debug, Clone)]
pub struct MeshOptions {
    /// The `trellis` binary (the demo passes `current_exe()`).
    pub trellis_bin: PathBuf,
    /// Where the config directory and all logs go (created; an old `config/` in it is replaced).
    pub run_dir: PathBuf,
    /// The Envoy binary for [`Dataplane::Envoy`]; `None` finds it with [`crate::envoy::find_envoy`].
    pub envoy_bin: Option<PathBuf>,
    /// How long the whole mesh may take to come up and sync.
    pub startup_timeout: Duration,
    /// Echo apps as processes or in-process tasks.
    pub echo: EchoMode,
    /// The client sidecar's namespace.
    pub client_namespace: String,
    /// Extra labels of the client sidecar (besides `app=client`).
    pub client_labels: BTreeMap<String, String>,
    /// The client's locality (`region/zone/subzone`); when set or when `client_labels` are,
    /// the client gets a WorkloadEntry (selected by no service) carrying them.
    pub client_locality: Option<String>,
    /// Per workload name: its locality, written to its WorkloadEntry.
    pub workload_localities: BTreeMap<String, String>,
    /// Per workload name: extra labels for its WorkloadEntry and sidecar.
    pub workload_labels: BTreeMap<String, BTreeMap<String, String>>,
    /// Echo apps without a sidecar (outside the mesh), as `(name, version, listen address)`.
    pub externals: Vec<(String, String, SocketAddr)>,
    /// Secure mode, Istio's default: every sidecar gets a workload token, talks to the control
    /// plane over TLS (15012), obtains its certificate from the mesh CA, and its workload is
    /// labelled `security.istio.io/tlsMode: istio`, so sidecars speak mutual TLS (auto mTLS).
    pub mtls: bool,
    /// Secure mode: the workload certificate lifetime the sidecars ask for (default 24 h).
    pub cert_ttl: Option<Duration>,
    /// The control plane's `--jwks-refresh-interval` (its default when `None`).
    pub jwks_refresh: Option<Duration>,
    /// Istio's mesh config (YAML) for the control plane's `--mesh-config`; `None`: defaults.
    pub mesh_config: Option<String>,
    /// Gateways: router proxies on `BASE.(200+i)`.
    pub gateways: Vec<super::GatewaySpec>,
    /// Server credentials for the gateways, signed by a test CA (see [`super::TestCredentials`]).
    pub credentials: Vec<super::CredentialSpec>,
    /// Per service name: its ServiceEntry port as written, instead of the one derived from its
    /// protocol (a scenario's `port_name` / `app_protocol`).
    pub service_ports: BTreeMap<String, serde_json::Value>,
}

impl MeshOptions {
    /// Defaults: 60 s startup, echo apps as processes, client in `default`.
    pub fn new(trellis_bin: impl Into<PathBuf>, run_dir: impl Into<PathBuf>) -> Self {
        MeshOptions {
            trellis_bin: trellis_bin.into(),
            run_dir: run_dir.into(),
            envoy_bin: None,
            startup_timeout: Duration::from_secs(60),
            echo: EchoMode::Process,
            client_namespace: "default".to_string(),
            client_labels: BTreeMap::new(),
            client_locality: None,
            workload_localities: BTreeMap::new(),
            workload_labels: BTreeMap::new(),
            externals: Vec::new(),
            mtls: true,
            cert_ttl: None,
            jwks_refresh: None,
            mesh_config: None,
            gateways: Vec::new(),
            credentials: Vec::new(),
            service_ports: BTreeMap::new(),
        }
    }
}

/// A Bookinfo-like mesh for the demo: `productpage` v1 calls `reviews`; `reviews` v1, v2, v3
/// (v2 and v3 call `ratings`); `ratings` v1. Every service is HTTP on port 9080 in `default`.
pub fn bookinfo(base: Ipv4Addr, dataplane: Dataplane) -> MeshSpec {
    let service = |name: &str| ServiceSpec {
        name: name.to_string(),
        namespace: "default".to_string(),
        port: 9080,
        protocol: "HTTP".to_string(),
    };
    let workload = |service: &str, version: &str, calls: &[&str]| WorkloadSpec {
        service: service.to_string(),
        version: version.to_string(),
        instance: 0,
        calls: calls.iter().map(|c| c.to_string()).collect(),
    };
    let reviews = "http://reviews.default.svc.cluster.local:9080/reviews/0";
    let ratings = "http://ratings.default.svc.cluster.local:9080/ratings/0";
    MeshSpec {
        base,
        dataplane,
        services: vec![
            service("productpage"),
            service("reviews"),
            service("ratings"),
        ],
        workloads: vec![
            workload("productpage", "v1", &[reviews]),
            workload("reviews", "v1", &[]),
            workload("reviews", "v2", &[ratings]),
            workload("reviews", "v3", &[ratings]),
            workload("ratings", "v1", &[]),
        ],
        extra_yaml: String::new(),
    }
}

/// The smallest mesh for tests: one HTTP service `echo` on port 9080 in `default`, with one
/// workload (instance 0, no calls) per version.
pub fn echo_mesh(base: Ipv4Addr, dataplane: Dataplane, versions: &[&str]) -> MeshSpec {
    MeshSpec {
        base,
        dataplane,
        services: vec![ServiceSpec {
            name: "echo".into(),
            namespace: "default".into(),
            port: 9080,
            protocol: "HTTP".into(),
        }],
        workloads: versions
            .iter()
            .map(|v| WorkloadSpec {
                service: "echo".into(),
                version: v.to_string(),
                instance: 0,
                calls: vec![],
            })
            .collect(),
        extra_yaml: String::new(),
    }
}

/// The workload name of a workload: `SERVICE-VERSION-INSTANCE`.
pub fn workload_name(w: &WorkloadSpec) -> String {
    format!("{}-{}-{}", w.service, w.version, w.instance)
}

/// The Istio YAML (`ServiceEntry` per service, `WorkloadEntry` per workload) for a spec.
pub fn mesh_yaml(spec: &MeshSpec) -> anyhow::Result<String> {
    mesh_yaml_with(spec, &MeshOptions::new("trellis", "."))
}

/// The label Istio's injector puts on workloads with a sidecar (auto mTLS keys on it).
pub const TLS_MODE_LABEL: &str = "security.istio.io/tlsMode";

/// [`mesh_yaml`] with the options' localities and labels (and a WorkloadEntry for the client
/// when it has a locality or extra labels); in secure mode workloads carry the tlsMode label.
pub fn mesh_yaml_with(spec: &MeshSpec, options: &MeshOptions) -> anyhow::Result<String> {
    let plan = AddressPlan::new(spec.base)?;
    let mut docs = Vec::new();
    for s in &spec.services {
        docs.push(json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "ServiceEntry",
            "metadata": {"name": s.name, "namespace": s.namespace},
            "spec": {
                "hosts": [s.host()],
                "location": "MESH_INTERNAL",
                "resolution": "STATIC",
                "ports": [options.service_ports.get(&s.name).cloned().unwrap_or_else(
                    || crate::scenario::service_port_json(s.port, &s.protocol)
                )],
                "workloadSelector": {"labels": {"app": s.name}},
            }
        }));
    }
    for (i, w) in spec.workloads.iter().enumerate() {
        let s = service_of(spec, w)?;
        let name = workload_name(w);
        let mut labels = BTreeMap::from([
            ("app".to_string(), s.name.clone()),
            ("version".to_string(), w.version.clone()),
        ]);
        if options.mtls {
            labels.insert(TLS_MODE_LABEL.to_string(), "istio".to_string());
        }
        labels.extend(
            options
                .workload_labels
                .get(&name)
                .cloned()
                .unwrap_or_default(),
        );
        let mut we = json!({
            "address": plan.workload(i).to_string(),
            "labels": labels,
            "serviceAccount": s.name,
        });
        if let Some(l) = options.workload_localities.get(&name) {
            we["locality"] = json!(l);
        }
        docs.push(json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "WorkloadEntry",
            "metadata": {"name": name, "namespace": s.namespace},
            "spec": we,
        }));
    }
    // Gateways are workloads too (as Istio registers gateway pods): a ServiceEntry may select
    // one by its labels, e.g. to pass TLS through one gateway to another. Without the tlsMode
    // label: a gateway's ports are not sidecar inbound ports.
    for (i, g) in options.gateways.iter().enumerate() {
        docs.push(json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "WorkloadEntry",
            "metadata": {"name": g.name, "namespace": g.namespace},
            "spec": {
                "address": plan.gateway(i).to_string(),
                "labels": g.labels,
                "serviceAccount": g.name,
            },
        }));
    }
    if options.client_locality.is_some() || !options.client_labels.is_empty() {
        let mut labels = BTreeMap::from([("app".to_string(), "client".to_string())]);
        labels.extend(options.client_labels.clone());
        let mut we = json!({
            "address": plan.client().to_string(),
            "labels": labels,
            "serviceAccount": "client",
        });
        if let Some(l) = &options.client_locality {
            we["locality"] = json!(l);
        }
        docs.push(json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "WorkloadEntry",
            "metadata": {"name": "client", "namespace": options.client_namespace},
            "spec": we,
        }));
    }
    let mut out =
        String::from("# Generated by trellis-testkit: the mesh's services and workloads.\n");
    for d in docs {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&d).context("serializing mesh.yaml")?);
    }
    Ok(out)
}

/// The service workload `w` belongs to.
pub(crate) fn service_of<'a>(
    spec: &'a MeshSpec,
    w: &WorkloadSpec,
) -> anyhow::Result<&'a ServiceSpec> {
    spec.services
        .iter()
        .find(|s| s.name == w.service)
        .ok_or_else(|| {
            anyhow!(
                "workload {} refers to unknown service {:?}",
                workload_name(w),
                w.service
            )
        })
}

/// Checks what the types cannot: the base address, the number of workloads, protocols and ports,
/// and that every workload names a known service and is named once.
pub(super) fn validate(spec: &MeshSpec) -> anyhow::Result<()> {
    AddressPlan::new(spec.base)?;
    if spec.workloads.len() > MAX_WORKLOADS {
        bail!(
            "a mesh holds at most {MAX_WORKLOADS} workloads, not {}",
            spec.workloads.len()
        );
    }
    for s in &spec.services {
        if !matches!(
            s.protocol.as_str(),
            "HTTP" | "HTTP2" | "GRPC" | "TCP" | "AUTO"
        ) {
            bail!(
                "service {}: protocol {:?} is not supported (HTTP, HTTP2, GRPC, TCP or AUTO)",
                s.name,
                s.protocol
            );
        }
        if [ADMIN_PORT, OUTBOUND_PORT, 15006, 15021, 15090].contains(&s.port) || s.port == 0 {
            bail!(
                "service {}: port {} is reserved for the proxy",
                s.name,
                s.port
            );
        }
    }
    let mut names = std::collections::BTreeSet::new();
    for w in &spec.workloads {
        service_of(spec, w)?;
        if !names.insert(workload_name(w)) {
            bail!("two workloads are named {}", workload_name(w));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> MeshSpec {
        MeshSpec {
            base: Ipv4Addr::new(127, 0, 10, 0),
            dataplane: Dataplane::Trellis,
            services: vec![ServiceSpec {
                name: "reviews".into(),
                namespace: "default".into(),
                port: 9080,
                protocol: "HTTP".into(),
            }],
            workloads: vec![
                WorkloadSpec {
                    service: "reviews".into(),
                    version: "v1".into(),
                    instance: 0,
                    calls: vec![],
                },
                WorkloadSpec {
                    service: "reviews".into(),
                    version: "v2".into(),
                    instance: 0,
                    calls: vec![],
                },
            ],
            extra_yaml: String::new(),
        }
    }

    #[test]
    fn yaml_has_service_and_workload_entries() -> anyhow::Result<()> {
        let yaml = mesh_yaml(&spec())?;
        let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&yaml)
            .map(serde_yaml::Value::deserialize)
            .collect::<Result<_, _>>()?;
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[0]["kind"], "ServiceEntry");
        assert_eq!(
            docs[0]["spec"]["hosts"][0],
            "reviews.default.svc.cluster.local"
        );
        assert_eq!(docs[0]["spec"]["ports"][0]["number"], 9080);
        assert_eq!(
            docs[0]["spec"]["workloadSelector"]["labels"]["app"],
            "reviews"
        );
        assert_eq!(docs[2]["kind"], "WorkloadEntry");
        assert_eq!(docs[2]["metadata"]["name"], "reviews-v2-0");
        assert_eq!(docs[2]["spec"]["address"], "127.0.10.11");
        assert_eq!(docs[2]["spec"]["labels"]["version"], "v2");
        assert_eq!(docs[2]["spec"]["serviceAccount"], "reviews");
        Ok(())
    }

    #[test]
    fn validation() {
        let mut s = spec();
        s.base = Ipv4Addr::new(10, 0, 0, 0);
        assert!(validate(&s).is_err());
        let mut s = spec();
        s.workloads[0].service = "nope".into();
        assert!(
            format!(
                "{:#}",
                validate(&s)
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default()
            )
            .contains("nope")
        );
        let mut s = spec();
        s.services[0].protocol = "UDP".into();
        assert!(validate(&s).is_err());
        assert!(validate(&spec()).is_ok());
        assert!(validate(&bookinfo(Ipv4Addr::new(127, 0, 10, 0), Dataplane::Envoy)).is_ok());
    }
}
