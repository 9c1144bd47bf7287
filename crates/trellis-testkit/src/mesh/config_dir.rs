//! The config directory the control plane watches: writing and removing files in it.

use std::path::Path;

use anyhow::{Context, anyhow, bail};

use super::Mesh;

impl Mesh {
    /// Checks the file name and remembers the generation served before a change to it (what
    /// [`Mesh::wait_synced`] waits to see exceeded).
    async fn before_change(&mut self, name: &str) -> anyhow::Result<()> {
        check_file_name(name)?;
        let before = self
            .syncz()
            .await
            .context("reading the generation before the change")?;
        self.generation_before_apply = Some(before.generation);
        Ok(())
    }

    /// Writes (or replaces) `name` in the config directory (atomically: a hidden temporary file
    /// renamed into place), remembering the generation served before.
    pub async fn apply(&mut self, name: &str, yaml: &str) -> anyhow::Result<()> {
        self.before_change(name).await?;
        write_atomic(&self.config_dir.join(name), yaml)
    }

    /// Removes `name` from the config directory, remembering the generation served before.
    pub async fn remove(&mut self, name: &str) -> anyhow::Result<()> {
        self.before_change(name).await?;
        let path = self.config_dir.join(name);
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))
    }
}

/// Fails unless `name` is a plain file name ending in `.yaml` (or `.yml`) other than
/// `mesh.yaml`, the mesh's own.
pub(crate) fn check_file_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty()
        || name.starts_with('.')
        || name.contains('/')
        || name.contains('\\')
        || !(name.ends_with(".yaml") || name.ends_with(".yml"))
        || name == "mesh.yaml"
    {
        bail!(
            "config file name {name:?} must be a plain file name ending in .yaml (and not mesh.yaml)"
        );
    }
    Ok(())
}

/// Writes a file atomically: a hidden temporary file (not `*.yaml`, so watchers skip it) in the
/// same directory, renamed into place.
pub fn write_atomic(path: &Path, contents: &str) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent directory", path.display()))?;
    let file_name = path
        .file_name()
        .ok_or_else(|| anyhow!("{} has no file name", path.display()))?
        .to_string_lossy();
    let tmp = dir.join(format!(".{file_name}.tmp~"));
    std::fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        assert!(check_file_name("vs.yaml").is_ok());
        assert!(check_file_name("../x.yaml").is_err());
        assert!(check_file_name("mesh.yaml").is_err());
        assert!(check_file_name("vs.json").is_err());
    }
}
