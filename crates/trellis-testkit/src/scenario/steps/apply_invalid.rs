//! `apply_invalid`: write a file the control plane must reject; the last good config stays in
//! force and the generation served does not advance.

use anyhow::{Context, bail};

use crate::mesh::Mesh;
use crate::scenario::InvalidFileDef;
use crate::scenario::run::RunOptions;

/// Writes the invalid file, waits for the expected error, and checks that neither the applied
/// nor the served generation moved.
pub(in crate::scenario) async fn run(
    a: &InvalidFileDef,
    options: &RunOptions,
    mesh: &mut Mesh,
) -> anyhow::Result<String> {
    let before = mesh
        .debug_config()
        .await
        .context("reading /debug/config before the change")?;
    let served_before = mesh.syncz().await?.generation;
    let already: Vec<String> = before.diagnostics.errors.clone();
    let want = a.expect_error.as_str();
    mesh.apply(&a.file, &a.content).await?;
    let deadline = options.sync_deadline();
    // An error that was not listed before the write proves the new content was read; an
    // identical error already listed (the same mistake written twice) only once nothing newer
    // came up by the deadline.
    let fresh = mesh
        .wait_config(deadline, &format!("a new error containing {want:?}"), |c| {
            c.diagnostics
                .errors
                .iter()
                .any(|e| e.contains(want) && !already.contains(e))
        })
        .await;
    let report = match fresh {
        Ok(c) => c,
        Err(e) if already.iter().any(|x| x.contains(want)) => mesh
            .debug_config()
            .await
            .ok()
            .filter(|c| c.diagnostics.errors.iter().any(|x| x.contains(want)))
            .ok_or(e)?,
        Err(e) => return Err(e.context(format!("{} was not rejected as expected", a.file))),
    };
    let error = report
        .diagnostics
        .errors
        .iter()
        .find(|e| e.contains(want))
        .cloned()
        .unwrap_or_default();
    if report.generation != before.generation {
        bail!(
            "the rejected {} changed the applied config: /debug/config generation {} -> {} (error: {error})",
            a.file,
            before.generation,
            report.generation
        );
    }
    let served = mesh.syncz().await?.generation;
    if served != served_before {
        bail!(
            "the rejected {} changed the served config: generation {served_before} -> {served} (error: {error})",
            a.file
        );
    }
    Ok(format!(
        "{} rejected, generation stays {served}: {error}",
        a.file
    ))
}
