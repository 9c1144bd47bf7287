//! `apply` and `remove`: change a config file and wait until every proxy is up to date; after an
//! `apply`, `/debug/config` must show no error for the file (and the expected warning, if any).

use crate::mesh::Mesh;
use crate::scenario::run::RunOptions;
use crate::scenario::{FileDef, RemoveDef};

/// Writes the file, waits until it is served everywhere, and checks its diagnostics.
pub(in crate::scenario) async fn apply(
    f: &FileDef,
    options: &RunOptions,
    mesh: &mut Mesh,
) -> anyhow::Result<String> {
    mesh.apply(&f.file, &f.content).await?;
    let s = mesh.wait_synced(options.sync_deadline()).await?;
    let note = check_applied(f, options, mesh).await?;
    Ok(format!(
        "applied {}, generation {}{note}",
        f.file, s.generation
    ))
}

/// Removes the file and waits until the change is served everywhere.
pub(in crate::scenario) async fn remove(
    r: &RemoveDef,
    options: &RunOptions,
    mesh: &mut Mesh,
) -> anyhow::Result<String> {
    mesh.remove(&r.file).await?;
    let s = mesh.wait_synced(options.sync_deadline()).await?;
    Ok(format!("removed {}, generation {}", r.file, s.generation))
}

/// Whether an error in `/debug/config` is about `file` (the control plane ends each error with
/// the path of the file it comes from).
fn error_names_file(error: &str, file: &str) -> bool {
    error.contains(&format!("/{file})")) || error.contains(&format!("/{file}:"))
}

/// After a valid file was applied and synced: `/debug/config` shows no error for it and, if
/// asked, the expected warning. Returns a note for the step's line.
pub(super) async fn check_applied(
    f: &FileDef,
    options: &RunOptions,
    mesh: &Mesh,
) -> anyhow::Result<String> {
    let deadline = options.sync_deadline();
    let file = f.file.as_str();
    mesh.wait_config(deadline, &format!("no error for {file}"), |c| {
        !c.diagnostics
            .errors
            .iter()
            .any(|e| error_names_file(e, file))
    })
    .await?;
    let Some(want) = &f.expect_warning else {
        return Ok(String::new());
    };
    let c = mesh
        .wait_config(deadline, &format!("a warning containing {want:?}"), |c| {
            c.diagnostics.warnings.iter().any(|w| w.contains(want))
        })
        .await?;
    let warning = c
        .diagnostics
        .warnings
        .iter()
        .find(|w| w.contains(want))
        .cloned()
        .unwrap_or_default();
    Ok(format!("; warning: {warning}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_matched_to_their_file() {
        assert!(error_names_file(
            "VirtualService default/echo: bad (the file's last good content stays in force: /tmp/x/config/vs.yaml)",
            "vs.yaml"
        ));
        assert!(!error_names_file(
            "bad (nothing from this file is applied: /tmp/x/config/other-vs.yaml)",
            "vs.yaml"
        ));
    }
}
