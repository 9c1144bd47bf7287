//! The mesh config file (Istio's `MeshConfig`) the control plane watches (`--mesh-config`): kept
//! beside, not inside, the config directory, since it is not an Istio resource.

use std::path::{Path, PathBuf};

use super::Mesh;
use super::config_dir::write_atomic;

/// Where the mesh config lives in a run directory.
pub(super) fn mesh_config_file(run_dir: &Path) -> PathBuf {
    run_dir.join("mesh-config").join("mesh.yaml")
}

/// Writes the mesh config (empty: Istio's defaults) before the control plane starts.
pub(super) fn write_mesh_config(run_dir: &Path, yaml: Option<&str>) -> anyhow::Result<PathBuf> {
    let path = mesh_config_file(run_dir);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    write_atomic(&path, yaml.unwrap_or(""))?;
    Ok(path)
}

impl Mesh {
    /// The mesh config file the control plane watches.
    pub fn mesh_config_path(&self) -> PathBuf {
        mesh_config_file(self.run_dir())
    }

    /// The log file of a sidecar (`client` or a workload name): its process's output, where
    /// access logs to `/dev/stdout` end up (Envoy's included: it shares the agent's output).
    pub fn proxy_log_path(&self, workload: &str) -> PathBuf {
        let kind = match self.spec().dataplane {
            super::Dataplane::Trellis => "proxy",
            super::Dataplane::Envoy => "agent",
        };
        self.run_dir().join(format!("{kind}-{workload}.log"))
    }
}
