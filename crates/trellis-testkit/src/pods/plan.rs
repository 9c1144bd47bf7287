//! The pod network's address plan, the names that resolve inside pods, and the Istio YAML
//! that tells the control plane about the pods.
//!
//! | address (`10.x.y.0/24`) | what |
//! | --- | --- |
//! | `.1` | the control plane pod (`15010`, `15012`, `15014`) |
//! | `.2` | the `client` pod: a sidecar, no app (tests and the demo send from it) |
//! | `.3` | the `outside` pod: an echo app, no sidecar, no capture (a host outside the mesh) |
//! | `.(10+i)` | workload `i`'s pod: its app and its captured sidecar |
//! | `.(200+j)` | service `j`'s virtual address (only in hosts files and the `ServiceEntry`) |

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use anyhow::{Context, bail};
use serde_json::json;

pub(super) use crate::mesh::service_of;
use crate::mesh::{MeshSpec, ServiceSpec, workload_name};

/// The label Istio's injector puts on workloads with a sidecar (auto mTLS keys on it).
const TLS_MODE_LABEL: &str = "security.istio.io/tlsMode";
/// The most workloads one pod network holds (`.10`–`.199`).
pub const MAX_POD_WORKLOADS: usize = 190;
/// The most services one pod network holds (`.200`–`.254`).
pub const MAX_POD_SERVICES: usize = 55;
/// The name of the control plane's pod.
pub const CONTROL_PLANE_POD: &str = "cp";
/// The name of the pod with a sidecar and no app, where clients run.
pub const CLIENT_POD: &str = "client";
/// The name of the pod outside the mesh (no sidecar, no capture) with an echo app.
pub const OUTSIDE_POD: &str = "outside";

/// The addresses of one pod network, `10.x.y.0/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodPlan {
    subnet: [u8; 2],
}

impl PodPlan {
    /// The pod network for a mesh base `127.x.y.0`: `10.x.y.0/24`, so meshes that do not share
    /// a loopback `/24` do not share a pod subnet either.
    pub fn for_base(base: Ipv4Addr) -> anyhow::Result<Self> {
        let o = base.octets();
        if o[0] != 127 || o[3] != 0 {
            bail!("mesh base address {base} must be of the form 127.x.y.0");
        }
        Ok(PodPlan {
            subnet: [o[1], o[2]],
        })
    }

    /// The two middle octets (`x`, `y`), as [`trellis_capture::PodNetwork::create`] takes them.
    pub fn subnet(&self) -> [u8; 2] {
        self.subnet
    }

    /// `10.x.y.n`.
    pub fn host(&self, n: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, self.subnet[0], self.subnet[1], n)
    }

    /// The control plane pod's address.
    pub fn control_plane(&self) -> Ipv4Addr {
        self.host(1)
    }

    /// The host number of workload `i`'s pod.
    pub fn workload_host(&self, i: usize) -> u8 {
        10 + i.min(MAX_POD_WORKLOADS - 1) as u8
    }

    /// Service `j`'s virtual address.
    pub fn service_vip(&self, j: usize) -> Ipv4Addr {
        self.host(200 + j.min(MAX_POD_SERVICES - 1) as u8)
    }
}

/// Checks that the spec fits a pod network.
pub(super) fn validate(spec: &MeshSpec) -> anyhow::Result<()> {
    if spec.workloads.len() > MAX_POD_WORKLOADS {
        bail!(
            "a pod mesh holds at most {MAX_POD_WORKLOADS} workloads, not {}",
            spec.workloads.len()
        );
    }
    if spec.services.len() > MAX_POD_SERVICES {
        bail!(
            "a pod mesh holds at most {MAX_POD_SERVICES} services, not {}",
            spec.services.len()
        );
    }
    let mut names = std::collections::BTreeSet::new();
    for w in &spec.workloads {
        service_of(spec, w)?;
        let name = workload_name(w);
        if [CONTROL_PLANE_POD, CLIENT_POD, OUTSIDE_POD].contains(&name.as_str()) {
            bail!("workload name {name} is reserved for a pod of the launcher");
        }
        if !names.insert(name.clone()) {
            bail!("two workloads are named {name}");
        }
    }
    Ok(())
}

/// The names of a service inside a pod: `NAME`, `NAME.NS`, `NAME.NS.svc` and the full host,
/// as Kubernetes' search path makes them resolve.
pub fn service_names(s: &ServiceSpec) -> Vec<String> {
    vec![
        s.name.clone(),
        format!("{}.{}", s.name, s.namespace),
        format!("{}.{}.svc", s.name, s.namespace),
        s.host(),
    ]
}

/// The namespace of service `name` (`default` if the spec has no such service).
pub(super) fn namespace_of(spec: &MeshSpec, name: &str) -> String {
    spec.services
        .iter()
        .find(|s| s.name == name)
        .map_or_else(|| "default".to_string(), |s| s.namespace.clone())
}

/// A pod's DNS search path in namespace `ns`, as Kubernetes writes it.
pub(super) fn search_domains(ns: &str) -> Vec<String> {
    vec![
        format!("{ns}.svc.cluster.local"),
        "svc.cluster.local".to_string(),
        "cluster.local".to_string(),
    ]
}

/// Every pod's hosts entries: each service's names on its virtual address, and `outside` on
/// the outside pod's address.
pub(super) fn hosts_entries(
    spec: &MeshSpec,
    plan: &PodPlan,
    outside: bool,
) -> Vec<(IpAddr, Vec<String>)> {
    let mut out: Vec<(IpAddr, Vec<String>)> = spec
        .services
        .iter()
        .enumerate()
        .map(|(j, s)| (plan.service_vip(j).into(), service_names(s)))
        .collect();
    if outside {
        out.push((plan.host(3).into(), vec![OUTSIDE_POD.to_string()]));
    }
    out
}

/// The Istio YAML for the pods: a `ServiceEntry` per service (with its virtual address, so
/// TCP services route by destination) and a `WorkloadEntry` per workload pod, labelled for
/// auto mTLS.
pub(super) fn mesh_yaml(spec: &MeshSpec, plan: &PodPlan) -> anyhow::Result<String> {
    let mut docs = Vec::new();
    for (j, s) in spec.services.iter().enumerate() {
        docs.push(json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "ServiceEntry",
            "metadata": {"name": s.name, "namespace": s.namespace},
            "spec": {
                "hosts": [s.host()],
                "addresses": [plan.service_vip(j).to_string()],
                "location": "MESH_INTERNAL",
                "resolution": "STATIC",
                "ports": [crate::scenario::service_port_json(s.port, &s.protocol)],
                "workloadSelector": {"labels": {"app": s.name}},
            }
        }));
    }
    for (i, w) in spec.workloads.iter().enumerate() {
        let s = service_of(spec, w)?;
        let labels = BTreeMap::from([
            ("app".to_string(), s.name.clone()),
            ("version".to_string(), w.version.clone()),
            (TLS_MODE_LABEL.to_string(), "istio".to_string()),
        ]);
        docs.push(json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "WorkloadEntry",
            "metadata": {"name": workload_name(w), "namespace": s.namespace},
            "spec": {
                "address": plan.host(plan.workload_host(i)).to_string(),
                "labels": labels,
                "serviceAccount": s.name,
            },
        }));
    }
    let mut out =
        String::from("# Generated by trellis-testkit: the pods' services and workloads.\n");
    for d in docs {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&d).context("serializing mesh.yaml")?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::{Dataplane, echo_mesh};

    #[test]
    fn plan_follows_the_mesh_base() -> anyhow::Result<()> {
        let p = PodPlan::for_base(Ipv4Addr::new(127, 235, 4, 0))?;
        assert_eq!(p.control_plane(), Ipv4Addr::new(10, 235, 4, 1));
        assert_eq!(p.host(p.workload_host(1)), Ipv4Addr::new(10, 235, 4, 11));
        assert_eq!(p.service_vip(0), Ipv4Addr::new(10, 235, 4, 200));
        assert!(PodPlan::for_base(Ipv4Addr::new(10, 0, 0, 0)).is_err());
        Ok(())
    }

    #[test]
    fn yaml_has_addresses_and_tls_mode() -> anyhow::Result<()> {
        let spec = echo_mesh(Ipv4Addr::new(127, 1, 2, 0), Dataplane::Trellis, &["v1"]);
        let plan = PodPlan::for_base(spec.base)?;
        let yaml = mesh_yaml(&spec, &plan)?;
        assert!(yaml.contains("10.1.2.200"), "{yaml}");
        assert!(yaml.contains("address: 10.1.2.10"), "{yaml}");
        assert!(yaml.contains("security.istio.io/tlsMode: istio"), "{yaml}");
        let hosts = hosts_entries(&spec, &plan, true);
        assert_eq!(hosts[0].1[0], "echo");
        assert_eq!(hosts[1].1, vec!["outside".to_string()]);
        Ok(())
    }
}
