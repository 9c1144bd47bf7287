//! Config sources. A directory of Istio YAML is the whole truth in universal mode: it is
//! re-read when it changes, and every file keeps its last good content, so an invalid edit is
//! reported and never half-applied while the rest of the mesh keeps its config.

mod mesh_config;
mod watch;

pub use watch::watch_dir;

use std::collections::BTreeMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use trellis_api::{MeshConfig, Resource, ValidationError, Warning};

use mesh_config::MeshConfigFile;

/// What the last reload found wrong or suspicious, for logs and `/debug/config`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Diagnostics {
    /// Errors: the files they come from keep their last good content.
    pub errors: Vec<String>,
    /// Warnings: the config is applied, but probably not what the user meant.
    pub warnings: Vec<String>,
}

#[derive(Debug)]
struct FileState {
    /// Hash of the content last read.
    seen: u64,
    /// Hash of the content that last parsed cleanly, and its resources.
    good: Option<(u64, Vec<Resource>)>,
    /// Errors of the content last read (empty when it is the good one).
    errors: Vec<ValidationError>,
}

/// A directory of YAML files with the last good content of each.
#[derive(Debug)]
pub struct DirStore {
    dir: PathBuf,
    files: BTreeMap<PathBuf, FileState>,
    /// The mesh config file, when one is configured.
    mesh: Option<MeshConfigFile>,
}

/// The result of a reload.
#[derive(Debug)]
pub struct Loaded {
    /// Resources from every file's last good content, sorted by kind/namespace/name.
    pub resources: Vec<Resource>,
    /// Errors and warnings.
    pub diagnostics: Diagnostics,
    /// The mesh config in force (Istio's defaults without a file).
    pub mesh: Arc<MeshConfig>,
    /// Whether the resources or the mesh config differ from the previous reload.
    pub changed: bool,
}

/// A config directory that cannot be read at all.
#[derive(Debug, thiserror::Error)]
#[error("cannot read config directory {dir}: {source}")]
pub struct StoreError {
    dir: PathBuf,
    source: std::io::Error,
}

impl DirStore {
    /// A store over `dir` (nothing is read until `reload`).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DirStore {
            dir: dir.into(),
            files: BTreeMap::new(),
            mesh: None,
        }
    }

    /// The same store, also reading the mesh config from `path` (a missing file means
    /// Istio's defaults).
    pub fn with_mesh_config(mut self, path: impl Into<PathBuf>) -> Self {
        self.mesh = Some(MeshConfigFile::new(path.into()));
        self
    }

    /// The mesh config file, if any (watched beside the directory).
    pub fn mesh_config_path(&self) -> Option<&Path> {
        self.mesh.as_ref().map(MeshConfigFile::path)
    }

    /// The directory this store reads.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Re-reads the directory.
    pub fn reload(&mut self) -> Result<Loaded, StoreError> {
        let before = self.good_fingerprint();
        let mesh_before = self.mesh.as_ref().and_then(MeshConfigFile::fingerprint);
        if let Some(m) = &mut self.mesh {
            m.reload();
        }
        let paths = config_files(&self.dir).map_err(|source| StoreError {
            dir: self.dir.clone(),
            source,
        })?;
        self.files.retain(|p, _| paths.contains(p));
        let mut previous: BTreeMap<PathBuf, Option<(u64, Vec<Resource>)>> = BTreeMap::new();
        let mut fresh: Vec<PathBuf> = Vec::new();
        for path in &paths {
            let Ok(text) = std::fs::read_to_string(path) else {
                continue; // vanished between listing and reading, or not text: next reload
            };
            let hash = hash_of(&text);
            let state = self.files.entry(path.clone()).or_insert(FileState {
                seen: hash.wrapping_add(1),
                good: None,
                errors: Vec::new(),
            });
            if state.seen == hash {
                continue;
            }
            state.seen = hash;
            previous.insert(path.clone(), state.good.clone());
            let parsed = trellis_api::parse_documents(path, &text);
            if parsed.errors.is_empty() {
                state.good = Some((hash, parsed.resources));
                state.errors.clear();
                fresh.push(path.clone());
            } else {
                state.errors = parsed.errors;
            }
        }
        // Cross-resource checks on what changed: a file that introduces a delegation cycle is
        // rejected as a whole (its previous good content, if any, stays in force).
        for path in fresh {
            let all: Vec<Resource> = self
                .files
                .values()
                .filter_map(|f| f.good.as_ref())
                .flat_map(|(_, r)| r.iter().cloned())
                .collect();
            let errors: Vec<ValidationError> = crate::model::delegation_errors(&all)
                .into_iter()
                .filter_map(|(ns, name, message)| {
                    let state = self.files.get(&path)?;
                    let resource = state.good.as_ref()?.1.iter().find(|r| {
                        r.meta.namespace == ns
                            && r.meta.name == name
                            && r.kind() == "VirtualService"
                    })?;
                    let (p, reason) = message
                        .split_once(": ")
                        .map(|(p, r)| (p.to_string(), r.to_string()))
                        .unwrap_or_default();
                    Some(ValidationError {
                        file: path.clone(),
                        resource: Some(resource.key()),
                        path: p,
                        reason,
                    })
                })
                .collect();
            if !errors.is_empty()
                && let Some(state) = self.files.get_mut(&path)
            {
                state.good = previous.remove(&path).flatten();
                state.errors = errors;
            }
        }
        let mut resources: Vec<Resource> = self
            .files
            .values()
            .filter_map(|f| f.good.as_ref())
            .flat_map(|(_, r)| r.iter().cloned())
            .collect();
        resources.sort_by_key(|r| r.key());
        let mut diagnostics = Diagnostics::default();
        for (path, state) in &self.files {
            for error in &state.errors {
                let kept = if state.good.is_some() {
                    "the file's last good content stays in force"
                } else {
                    "nothing from this file is applied"
                };
                diagnostics
                    .errors
                    .push(format!("{error} ({kept}: {})", path.display()));
            }
        }
        if let Some(m) = &self.mesh {
            diagnostics.errors.extend(m.errors());
            // AuthorizationPolicy CUSTOM names a provider of the mesh config.
            diagnostics
                .errors
                .extend(crate::translate::authz::custom::provider_errors(
                    &resources,
                    &m.config(),
                ));
        }
        let warnings: Vec<Warning> = trellis_api::check_references(&resources);
        diagnostics.warnings = warnings.iter().map(ToString::to_string).collect();
        // AuthorizationPolicy CUSTOM: one provider per workload.
        let root_namespace = self
            .mesh
            .as_ref()
            .and_then(|m| m.config().root_namespace.clone())
            .unwrap_or_else(|| "istio-system".to_string());
        diagnostics
            .warnings
            .extend(crate::translate::authz::custom::provider_conflicts(
                &resources,
                &root_namespace,
            ));
        // Security policies bound with targetRef(s): sidecars ignore them.
        diagnostics
            .warnings
            .extend(crate::translate::authz::target_ref_warnings(&resources));
        Ok(Loaded {
            resources,
            diagnostics,
            mesh: self
                .mesh
                .as_ref()
                .map_or_else(Default::default, MeshConfigFile::config),
            changed: before != self.good_fingerprint()
                || mesh_before != self.mesh.as_ref().and_then(MeshConfigFile::fingerprint),
        })
    }

    fn good_fingerprint(&self) -> Vec<(PathBuf, u64)> {
        self.files
            .iter()
            .filter_map(|(p, f)| f.good.as_ref().map(|(h, _)| (p.clone(), *h)))
            .collect()
    }
}

fn hash_of(text: &str) -> u64 {
    let mut h = DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// YAML and JSON files below `dir`, recursively, sorted, hidden ones skipped.
fn config_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current)? {
            let entry = entry?;
            let path = entry.path();
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            if hidden {
                continue;
            }
            if entry.file_type()?.is_dir() {
                pending.push(path);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            ) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests;
