//! Workload tokens for sidecars, minted with `trellis token create` against a mesh's CA
//! directory — the way an operator gives a workload its identity. One place for the explicit
//! mesh, the pod mesh, the benchmark and tests.

use std::path::Path;
use std::process::{Command, Output};

use anyhow::{Context, bail};

/// The `trellis token create` command for `namespace`/`service_account`.
fn command(bin: &Path, ca_dir: &Path, namespace: &str, service_account: &str) -> Command {
    let mut command = Command::new(bin);
    command
        .args(["token", "create", "--namespace", namespace])
        .args(["--service-account", service_account, "--ca-dir"])
        .arg(ca_dir);
    command
}

/// The token the command printed, or why there is none.
fn token_of(output: Output) -> anyhow::Result<String> {
    let token = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if !output.status.success() || token.is_empty() {
        bail!(
            "trellis token create failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(token)
}

/// A workload token for `namespace`/`service_account` (async: runs the command on Tokio).
pub async fn mint_token(
    bin: &Path,
    ca_dir: &Path,
    namespace: &str,
    service_account: &str,
) -> anyhow::Result<String> {
    let output = tokio::process::Command::from(command(bin, ca_dir, namespace, service_account))
        .output()
        .await
        .with_context(|| format!("running {} token create", bin.display()))?;
    token_of(output)
}

/// [`mint_token`] for callers without a runtime (the pod launcher).
pub fn mint_token_blocking(
    bin: &Path,
    ca_dir: &Path,
    namespace: &str,
    service_account: &str,
) -> anyhow::Result<String> {
    let output = command(bin, ca_dir, namespace, service_account)
        .output()
        .with_context(|| format!("running {} token create", bin.display()))?;
    token_of(output)
}
