//! What `trellis pods up` runs: a small YAML file of services and workloads, or
//! `--workload SERVICE/VERSION` flags, turned into the launcher's [`MeshSpec`].

use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;
use trellis_testkit::mesh::{Dataplane, MeshSpec, ServiceSpec, WorkloadSpec};

/// The workloads file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    services: Vec<Service>,
    workloads: Vec<Workload>,
}

/// A service in the workloads file; only the name is required.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Service {
    name: String,
    #[serde(default = "default_port")]
    port: u16,
    #[serde(default = "default_protocol")]
    protocol: String,
    #[serde(default = "default_namespace")]
    namespace: String,
}

/// A workload in the workloads file; only the service is required.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Workload {
    service: String,
    #[serde(default = "default_version")]
    version: String,
    #[serde(default)]
    calls: Vec<String>,
}

fn default_port() -> u16 {
    9080
}
fn default_protocol() -> String {
    "HTTP".into()
}
fn default_namespace() -> String {
    "default".into()
}
fn default_version() -> String {
    "v1".into()
}

/// Reads a workloads file; services a workload names but the file does not list are HTTP on
/// port 9080 in `default`.
pub fn from_file(path: &Path, base: Ipv4Addr, dataplane: Dataplane) -> anyhow::Result<MeshSpec> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&text, base, dataplane).with_context(|| format!("{}", path.display()))
}

fn parse(text: &str, base: Ipv4Addr, dataplane: Dataplane) -> anyhow::Result<MeshSpec> {
    let file: File = serde_yaml::from_str(text)?;
    let mut services: Vec<ServiceSpec> = file
        .services
        .into_iter()
        .map(|s| ServiceSpec {
            name: s.name,
            namespace: s.namespace,
            port: s.port,
            protocol: s.protocol,
        })
        .collect();
    let workloads = file
        .workloads
        .into_iter()
        .map(|w| (w.service, w.version, w.calls))
        .collect();
    build(&mut services, workloads, base, dataplane)
}

/// `SERVICE/VERSION` flags (the version defaults to v1).
pub fn from_flags(
    flags: &[String],
    base: Ipv4Addr,
    dataplane: Dataplane,
) -> anyhow::Result<MeshSpec> {
    let mut workloads = Vec::new();
    for f in flags {
        let (service, version) = f.split_once('/').unwrap_or((f, "v1"));
        if service.is_empty() || version.is_empty() {
            bail!("--workload {f:?} must be SERVICE/VERSION");
        }
        workloads.push((service.to_string(), version.to_string(), Vec::new()));
    }
    build(&mut Vec::new(), workloads, base, dataplane)
}

fn build(
    services: &mut Vec<ServiceSpec>,
    workloads: Vec<(String, String, Vec<String>)>,
    base: Ipv4Addr,
    dataplane: Dataplane,
) -> anyhow::Result<MeshSpec> {
    if workloads.is_empty() {
        bail!("no workloads");
    }
    let mut specs: Vec<WorkloadSpec> = Vec::new();
    for (service, version, calls) in workloads {
        if !services.iter().any(|s| s.name == service) {
            services.push(ServiceSpec {
                name: service.clone(),
                namespace: default_namespace(),
                port: default_port(),
                protocol: default_protocol(),
            });
        }
        let instance = specs
            .iter()
            .filter(|w| w.service == service && w.version == version)
            .count() as u32;
        specs.push(WorkloadSpec {
            service,
            version,
            instance,
            calls,
        });
    }
    Ok(MeshSpec {
        base,
        dataplane,
        services: std::mem::take(services),
        workloads: specs,
        extra_yaml: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Ipv4Addr = Ipv4Addr::new(127, 77, 0, 0);

    #[test]
    fn file_with_defaults() -> anyhow::Result<()> {
        let spec = parse(
            "services:\n- {name: db, port: 5432, protocol: TCP}\nworkloads:\n- {service: reviews}\n\
             - {service: reviews, version: v2, calls: [http://db:5432/]}\n- {service: db}\n",
            BASE,
            Dataplane::Trellis,
        )?;
        assert_eq!(spec.services.len(), 2);
        assert_eq!(spec.services[0].port, 5432);
        assert_eq!(spec.services[1].name, "reviews");
        assert_eq!(spec.services[1].port, 9080);
        assert_eq!(spec.workloads[0].version, "v1");
        assert_eq!(spec.workloads[1].calls.len(), 1);
        assert!(parse("workloads: []\nextra: 1\n", BASE, Dataplane::Trellis).is_err());
        Ok(())
    }

    #[test]
    fn flags() -> anyhow::Result<()> {
        let spec = from_flags(
            &["reviews/v1".into(), "reviews/v1".into(), "ratings".into()],
            BASE,
            Dataplane::Envoy,
        )?;
        assert_eq!(spec.workloads[1].instance, 1);
        assert_eq!(spec.workloads[2].version, "v1");
        assert_eq!(spec.services.len(), 2);
        assert!(from_flags(&["/v1".into()], BASE, Dataplane::Envoy).is_err());
        Ok(())
    }
}
