//! `cargo xtask`: project automation.
//!
//! `cargo xtask conformance [--dataplane trellis|envoy|all] [--filter TEXT]` builds the `trellis`
//! binary, runs every scenario in `conformance/scenarios/**/*.yaml` on each selected data plane,
//! prints a pass/fail table, writes `target/conformance/report.json`, and exits non-zero if any
//! scenario failed.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use serde::Serialize;
use trellis_testkit::mesh::{Dataplane, EchoMode};
use trellis_testkit::scenario::{self, RunOptions, Scenario};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Trellis project automation")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the conformance scenarios on Trellis and/or Envoy.
    Conformance(ConformanceArgs),
    /// Benchmark Trellis against Envoy side by side (release builds; see docs/benchmarks.md).
    /// Arguments go to `trellis-bench`, e.g. `cargo xtask bench sidecar --quick`.
    Bench {
        /// `trellis-bench` arguments (`sidecar`, `control-plane`, `all`, `--quick`, `--help`, ...).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
        /// Use debug builds (fast to build; only for checking that the benchmark runs).
        #[arg(long)]
        debug: bool,
    },
}

#[derive(clap::Args)]
struct ConformanceArgs {
    /// Which data plane(s) to run on.
    #[arg(long, value_enum, default_value_t = DataplaneArg::All)]
    dataplane: DataplaneArg,
    /// Only scenarios whose name contains this text.
    #[arg(long)]
    filter: Option<String>,
    /// Skip `cargo build -p trellis` (use the existing target/debug/trellis).
    #[arg(long)]
    no_build: bool,
    /// Only parse the scenario files, run nothing.
    #[arg(long)]
    check: bool,
    /// Run the echo apps inside xtask instead of as `trellis echo` processes.
    #[arg(long)]
    echo_in_process: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DataplaneArg {
    Trellis,
    Envoy,
    All,
}

impl DataplaneArg {
    fn selected(self) -> Vec<Dataplane> {
        match self {
            DataplaneArg::Trellis => vec![Dataplane::Trellis],
            DataplaneArg::Envoy => vec![Dataplane::Envoy],
            DataplaneArg::All => Dataplane::ALL.to_vec(),
        }
    }
}

#[derive(Serialize)]
struct Report {
    scenarios: Vec<ReportEntry>,
    nacks: BTreeMap<String, usize>,
}

#[derive(Serialize)]
struct ReportEntry {
    name: String,
    dataplane: String,
    passed: bool,
    /// The scenario does not apply to this data plane (its `dataplanes` key): neither passed
    /// nor failed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    skipped: bool,
    detail: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Conformance(args) => conformance(args),
        Cmd::Bench { args, debug } => bench(&args, debug),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { root.join(p) })
        .unwrap_or_else(|| root.join("target"))
}

/// Every `*.yaml` under `dir`, sorted.
fn scenario_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Parses every scenario; a file's `name` must match its path (`AREA/NAME.yaml`).
fn load_scenarios(dir: &Path) -> anyhow::Result<Vec<Scenario>> {
    let mut scenarios = Vec::new();
    let mut errors = Vec::new();
    for path in scenario_files(dir)? {
        match Scenario::load(&path) {
            Ok(s) => {
                let expected = path
                    .strip_prefix(dir)
                    .ok()
                    .map(|p| p.with_extension("").to_string_lossy().replace('\\', "/"))
                    .unwrap_or_default();
                if s.name != expected {
                    errors.push(format!(
                        "{}: name {:?} does not match the file's path (expected {expected:?})",
                        path.display(),
                        s.name
                    ));
                } else {
                    scenarios.push(s);
                }
            }
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    if !errors.is_empty() {
        bail!("invalid scenario files:\n  {}", errors.join("\n  "));
    }
    Ok(scenarios)
}

/// Builds `trellis` and `trellis-bench` and runs the benchmark with `args`.
fn bench(args: &[String], debug: bool) -> anyhow::Result<ExitCode> {
    let root = workspace_root();
    let profile: &[&str] = if debug { &[] } else { &["--release"] };
    let status = std::process::Command::new(env!("CARGO"))
        .args(["build", "-p", "trellis", "-p", "trellis-bench"])
        .args(profile)
        .current_dir(&root)
        .status()?;
    if !status.success() {
        anyhow::bail!("building trellis and trellis-bench failed");
    }
    let dir = target_dir(&root).join(if debug { "debug" } else { "release" });
    // trellis-bench uses the `trellis` binary next to it.
    let status = std::process::Command::new(dir.join("trellis-bench"))
        .args(args)
        .current_dir(&root)
        .status()?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn conformance(args: ConformanceArgs) -> anyhow::Result<ExitCode> {
    let root = workspace_root();
    let scenarios_dir = root.join("conformance").join("scenarios");
    let mut scenarios = load_scenarios(&scenarios_dir)?;
    if let Some(f) = &args.filter {
        scenarios.retain(|s| s.name.contains(f.as_str()));
    }
    if scenarios.is_empty() {
        bail!(
            "no scenario matches{} in {}",
            args.filter
                .as_deref()
                .map(|f| format!(" --filter {f:?}"))
                .unwrap_or_default(),
            scenarios_dir.display()
        );
    }
    if args.check {
        for s in &scenarios {
            println!("ok  {}", s.name);
        }
        return Ok(ExitCode::SUCCESS);
    }

    let target = target_dir(&root);
    if !args.no_build {
        eprintln!("building trellis (cargo build -p trellis)…");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "trellis"])
            .current_dir(&root)
            .status()
            .context("running cargo build -p trellis")?;
        if !status.success() {
            bail!("cargo build -p trellis failed ({status})");
        }
    }
    let trellis_bin = target.join("debug").join("trellis");
    if !trellis_bin.is_file() {
        bail!(
            "{} does not exist; build it with cargo build -p trellis",
            trellis_bin.display()
        );
    }

    let dataplanes = args.dataplane.selected();
    let envoy_bin = if dataplanes.contains(&Dataplane::Envoy) {
        match trellis_testkit::envoy::find_envoy() {
            Ok(p) => Some(Ok(p)),
            Err(e) => Some(Err(format!("{e:#}"))),
        }
    } else {
        None
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let out_dir = target.join("conformance");
    let echo = if args.echo_in_process {
        EchoMode::InProcess
    } else {
        EchoMode::Process
    };
    let entries = runtime.block_on(async {
        tokio::select! {
            entries = run_all(&scenarios, &dataplanes, &trellis_bin, envoy_bin, &out_dir, echo) => Ok(entries),
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted: every process started was stopped")),
        }
    });
    // Dropping the runtime ends any task still holding a mesh (its processes are killed on drop).
    drop(runtime);
    let (entries, nacks) = entries?;

    print_table(&entries);
    let report = Report {
        scenarios: entries,
        nacks: nacks.into_iter().map(|(d, n)| (d.to_string(), n)).collect(),
    };
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let report_path = out_dir.join("report.json");
    std::fs::write(&report_path, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing {}", report_path.display()))?;
    println!("report: {}", report_path.display());
    let failed = report
        .scenarios
        .iter()
        .filter(|e| !e.passed && !e.skipped)
        .count();
    let skipped = report.scenarios.iter().filter(|e| e.skipped).count();
    let ran = report.scenarios.len() - skipped;
    if failed > 0 {
        println!("{failed} of {ran} failed ({skipped} skipped)");
        Ok(ExitCode::FAILURE)
    } else {
        println!("all {ran} passed ({skipped} skipped)");
        Ok(ExitCode::SUCCESS)
    }
}

/// The `/24` of the `n`-th run of this process: `127.(100 + pid % 50).n.0`.
fn base_for(run: usize) -> Ipv4Addr {
    let second = 100 + (std::process::id() % 50) as u8;
    let third = (run % 255) as u8 + 1;
    Ipv4Addr::new(127, second, third, 0)
}

async fn run_all(
    scenarios: &[Scenario],
    dataplanes: &[Dataplane],
    trellis_bin: &Path,
    envoy_bin: Option<Result<PathBuf, String>>,
    out_dir: &Path,
    echo: EchoMode,
) -> (Vec<ReportEntry>, BTreeMap<Dataplane, usize>) {
    let mut entries = Vec::new();
    let mut nacks: BTreeMap<Dataplane, usize> = dataplanes.iter().map(|d| (*d, 0)).collect();
    let mut run = 0;
    for s in scenarios {
        for &dp in dataplanes {
            print!("▶ {:<40} [{dp}] ", s.name);
            let _ = std::io::stdout().flush();
            if !s.runs_on(dp) {
                println!("SKIP (the scenario's dataplanes do not include {dp})");
                entries.push(ReportEntry {
                    name: s.name.clone(),
                    dataplane: dp.to_string(),
                    passed: false,
                    skipped: true,
                    detail: format!("skipped: the scenario's dataplanes do not include {dp}"),
                });
                continue;
            }
            if let Some(why) = s.cannot_run_here() {
                println!("SKIP ({why})");
                entries.push(ReportEntry {
                    name: s.name.clone(),
                    dataplane: dp.to_string(),
                    passed: false,
                    skipped: true,
                    detail: format!("skipped: {why}"),
                });
                continue;
            }
            let envoy = match (&envoy_bin, dp) {
                (Some(Err(e)), Dataplane::Envoy) => {
                    println!("FAIL");
                    println!("    {e}");
                    entries.push(ReportEntry {
                        name: s.name.clone(),
                        dataplane: dp.to_string(),
                        passed: false,
                        skipped: false,
                        detail: e.clone(),
                    });
                    continue;
                }
                (Some(Ok(p)), Dataplane::Envoy) => Some(p.clone()),
                _ => None,
            };
            let run_dir = out_dir
                .join("runs")
                .join(s.name.replace('/', "__"))
                .join(dp.as_str());
            let _ = std::fs::remove_dir_all(&run_dir);
            let mut options = RunOptions::new(
                trellis_bin.to_path_buf(),
                dp,
                base_for(run),
                run_dir.clone(),
            );
            options.envoy_bin = envoy;
            options.echo = echo;
            run += 1;
            let report = scenario::run(s, &options, |line| {
                print!("\n    {line}");
                let _ = std::io::stdout().flush();
            })
            .await;
            println!();
            if report.passed {
                println!("  PASS ({:.1}s)", report.elapsed.as_secs_f64());
            } else {
                println!(
                    "  FAIL ({:.1}s): {}",
                    report.elapsed.as_secs_f64(),
                    report.detail
                );
                println!("    logs: {}", run_dir.display());
            }
            if let Some(n) = nacks.get_mut(&dp) {
                *n += report.nacks;
            }
            entries.push(ReportEntry {
                name: s.name.clone(),
                dataplane: dp.to_string(),
                passed: report.passed,
                skipped: false,
                detail: report.detail,
            });
        }
    }
    (entries, nacks)
}

fn print_table(entries: &[ReportEntry]) {
    let mut names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    names.dedup();
    let mut dps: Vec<&str> = entries.iter().map(|e| e.dataplane.as_str()).collect();
    dps.sort();
    dps.dedup();
    dps.sort_by_key(|d| if *d == "trellis" { 0 } else { 1 });
    let width = names.iter().map(|n| n.len()).max().unwrap_or(8).max(8);
    println!();
    print!("{:<width$}", "scenario");
    for d in &dps {
        print!("  {d:<8}");
    }
    println!();
    for n in names {
        print!("{n:<width$}");
        for d in &dps {
            let cell = entries
                .iter()
                .find(|e| e.name == n && e.dataplane == *d)
                .map(|e| match (e.skipped, e.passed) {
                    (true, _) => "skip",
                    (false, true) => "pass",
                    (false, false) => "FAIL",
                })
                .unwrap_or("-");
            print!("  {cell:<8}");
        }
        println!();
    }
    println!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_file_parses() -> anyhow::Result<()> {
        let dir = workspace_root().join("conformance").join("scenarios");
        let scenarios = load_scenarios(&dir)?;
        for required in [
            "traffic/weighted-split",
            "traffic/header-match",
            "traffic/path-precedence",
            "traffic/subset-routing",
            "traffic/live-config-change",
            "traffic/http2-upstream",
            "traffic/invalid-config-keeps-last-good",
            "resilience/control-plane-restart",
        ] {
            assert!(
                scenarios.iter().any(|s| s.name == required),
                "missing {required}"
            );
        }
        Ok(())
    }

    /// Every piece of Istio YAML in the scenarios (and the generated mesh.yaml) is valid for the
    /// project's strict Istio API parser: scenarios are written exactly as a user would write them.
    #[test]
    fn scenario_yaml_is_valid_istio() -> anyhow::Result<()> {
        let dir = workspace_root().join("conformance").join("scenarios");
        let mut problems = Vec::new();
        for s in load_scenarios(&dir)? {
            let mut docs: Vec<(String, String)> = Vec::new();
            if let Some(c) = &s.config {
                docs.push(("config".into(), c.clone()));
            }
            for (i, step) in s.steps.iter().enumerate() {
                if let Some(a) = &step.apply {
                    docs.push((format!("steps[{i}].apply"), a.content.clone()));
                }
                if let Some(l) = &step.live_change {
                    docs.push((
                        format!("steps[{i}].live_change.apply"),
                        l.apply.content.clone(),
                    ));
                }
            }
            let spec = s.mesh_spec(Ipv4Addr::new(127, 100, 1, 0), Dataplane::Trellis);
            docs.push(("mesh.yaml".into(), trellis_testkit::mesh::mesh_yaml(&spec)?));
            // The test issuer's templates, as the runner expands them.
            let ca = [("JWT_CA_CERT", "/run/jwks-server/ca.pem".to_string())];
            for (origin, text) in docs {
                let text = trellis_testkit::jwt::expand(&text, &ca)?;
                let out =
                    trellis_api::parse_documents(Path::new(&format!("{}:{origin}", s.name)), &text);
                if out.resources.is_empty() {
                    problems.push(format!("{}:{origin}: no resource", s.name));
                }
                problems.extend(out.errors.iter().map(|e| e.to_string()));
            }
        }
        assert!(
            problems.is_empty(),
            "invalid Istio YAML:\n{}",
            problems.join("\n")
        );
        Ok(())
    }

    /// Every `apply_invalid` in the scenarios is rejected by the project's Istio API parser with
    /// an error containing its `expect_error`: the scenario tests the mistake it claims to.
    #[test]
    fn invalid_yaml_in_scenarios_is_rejected_as_expected() -> anyhow::Result<()> {
        let dir = workspace_root().join("conformance").join("scenarios");
        let mut problems = Vec::new();
        let mut checked = 0;
        for s in load_scenarios(&dir)? {
            for (i, step) in s.steps.iter().enumerate() {
                let Some(a) = &step.apply_invalid else {
                    continue;
                };
                checked += 1;
                let origin = format!("{}:steps[{i}].apply_invalid", s.name);
                let out = trellis_api::parse_documents(Path::new(&a.file), &a.content);
                let mut errors: Vec<String> = out.errors.iter().map(|e| e.to_string()).collect();
                // Cross-resource checks the control plane adds (delegation cycles).
                errors.extend(
                    trellis_control_plane::model::delegation_errors(&out.resources)
                        .into_iter()
                        .map(|(_, _, message)| message),
                );
                if !errors.iter().any(|e| e.contains(&a.expect_error)) {
                    problems.push(format!(
                        "{origin}: no error contains {:?}; errors: {errors:?}",
                        a.expect_error
                    ));
                }
            }
        }
        assert!(checked > 0, "no apply_invalid step found");
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        Ok(())
    }

    #[test]
    fn bases_are_distinct_loopback_24s() {
        let a = base_for(0);
        let b = base_for(1);
        assert_ne!(a, b);
        assert_eq!(a.octets()[0], 127);
        assert_eq!(a.octets()[3], 0);
        assert!((100..150).contains(&a.octets()[1]));
    }
}
