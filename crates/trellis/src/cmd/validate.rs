//! `trellis validate`: the same checks the control plane applies, before you apply.

use std::path::PathBuf;
use std::process::ExitCode;

/// Flags of `trellis validate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files or directories of Istio YAML (directories are read recursively).
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<PathBuf>,
}

/// Prints one line per valid resource, every error and warning; exit 1 if any error.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut resources = Vec::new();
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    for path in &args.files {
        if !path.exists() {
            anyhow::bail!("{} does not exist", path.display());
        }
        let out = trellis_api::load_path(path);
        resources.extend(out.resources);
        errors.extend(out.errors);
        warnings.extend(out.warnings);
    }
    warnings.extend(trellis_api::check_references(&resources));
    for resource in &resources {
        println!("ok    {}", resource.summary());
    }
    for warning in &warnings {
        println!("warn  {warning}");
    }
    for error in &errors {
        println!("error {error}");
    }
    println!(
        "{} valid resource(s), {} error(s), {} warning(s)",
        resources.len(),
        errors.len(),
        warnings.len()
    );
    Ok(if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
