//! The Prometheus scrape config a user adds to watch the demo mesh: every sidecar's Istio
//! metrics (Trellis: Istio's proxy port 15090; Envoy: its admin API) and the control plane's
//! monitoring port.

use trellis_testkit::mesh::{Dataplane, Mesh};

/// `scrape_configs` entries for the running mesh, as YAML.
pub fn scrape_config(mesh: &Mesh) -> String {
    let targets: Vec<String> = mesh
        .proxies()
        .iter()
        .map(|p| match mesh.spec().dataplane {
            Dataplane::Trellis => format!("'{}:15090'", p.ip),
            Dataplane::Envoy => format!("'{}'", p.admin()),
        })
        .collect();
    format!(
        "scrape_configs:\n\
         - job_name: trellis-sidecars\n  scrape_interval: 5s\n  metrics_path: /stats/prometheus\n  static_configs:\n  - targets: [{}]\n\
         - job_name: trellis-control-plane\n  scrape_interval: 5s\n  metrics_path: /metrics\n  static_configs:\n  - targets: ['{}']\n",
        targets.join(", "),
        mesh.monitoring_address()
    )
}
