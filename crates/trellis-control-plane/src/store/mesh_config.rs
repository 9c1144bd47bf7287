//! The mesh config file (`--mesh-config`): re-read on every reload of the store, with the same
//! rule as the config directory: an invalid edit is reported and the last good content stays.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use trellis_api::MeshConfig;

/// One mesh config file and its last good content.
#[derive(Debug)]
pub(super) struct MeshConfigFile {
    path: PathBuf,
    /// Hash of the text last read (`None`: not read yet, or missing).
    seen: Option<u64>,
    /// The last content that parsed, and its hash.
    good: (Option<u64>, Arc<MeshConfig>),
    /// Errors of the text last read.
    errors: Vec<String>,
}

impl MeshConfigFile {
    pub(super) fn new(path: PathBuf) -> Self {
        MeshConfigFile {
            path,
            seen: None,
            good: (None, Arc::new(MeshConfig::default())),
            errors: Vec::new(),
        }
    }

    /// The file.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Re-reads the file. A missing file is the default mesh config (so it can be created later).
    pub(super) fn reload(&mut self) {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                self.errors = vec![format!("{}: cannot read: {e}", self.path.display())];
                return;
            }
        };
        let hash = super::hash_of(&text);
        if self.seen == Some(hash) {
            return;
        }
        self.seen = Some(hash);
        match MeshConfig::parse(&text) {
            Ok(config) => {
                self.good = (Some(hash), Arc::new(config));
                self.errors.clear();
            }
            Err(errors) => {
                self.errors = errors
                    .iter()
                    .map(|e| format!("{}: mesh config: {e}", self.path.display()))
                    .collect();
            }
        }
    }

    /// The config in force.
    pub(super) fn config(&self) -> Arc<MeshConfig> {
        self.good.1.clone()
    }

    /// Identifies the content in force (for change detection).
    pub(super) fn fingerprint(&self) -> Option<u64> {
        self.good.0
    }

    /// Errors of the last read, each saying the last good content stays in force.
    pub(super) fn errors(&self) -> Vec<String> {
        let kept = if self.good.0.is_some() {
            "the file's last good content stays in force"
        } else {
            "Istio's defaults stay in force"
        };
        self.errors
            .iter()
            .map(|e| format!("{e} ({kept}: {})", self.path.display()))
            .collect()
    }
}
