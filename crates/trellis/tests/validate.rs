//! `trellis validate` as a user runs it: exit codes and the exact lines printed.

use std::path::{Path, PathBuf};
use std::process::Command;

fn validate(files: &[&Path]) -> (i32, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_trellis"));
    command.arg("validate");
    for f in files {
        command.arg("-f").arg(f);
    }
    let out = command.output().expect("trellis runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

const SERVICE: &str = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: reviews}\nspec:\n  hosts: [reviews.default.svc.cluster.local]\n  ports: [{number: 9080, name: http, protocol: HTTP}]\n  resolution: STATIC\n  workloadSelector: {labels: {app: reviews}}\n";

#[test]
fn valid_config_prints_a_summary_per_resource_and_exits_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(dir.path(), "mesh.yaml", SERVICE);
    let (code, out) = validate(&[&file]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok    ServiceEntry default/reviews: hosts [reviews.default.svc.cluster.local], 1 port(s), resolution STATIC"), "{out}");
    assert!(
        out.contains("1 valid resource(s), 0 error(s), 0 warning(s)"),
        "{out}"
    );
}

#[test]
fn every_error_names_file_resource_field_and_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = write(
        dir.path(),
        "bad.yaml",
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\nspec:\n  hosts: [reviews]\n  http:\n  - match: [{uri: {regex: \"/api/(v1\"}}]\n    route:\n    - {destination: {host: reviews}, weight: 150}\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews}\nspec:\n  host: reviews\n  trafficPolicy: {loadBalancr: {simple: RANDOM}}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: ratings}\nspec:\n  hosts: [ratings]\n  http:\n  - route:\n    - destination: {}\n      weight: abc\n",
    );
    let (code, out) = validate(&[&bad]);
    assert_eq!(code, 1, "{out}");
    let file = bad.display();
    for expected in [
        format!(
            "error {file}: VirtualService default/reviews: spec.http[0].match[0].uri.regex: invalid regex \"/api/(v1\": unclosed group"
        ),
        format!(
            "error {file}: VirtualService default/reviews: spec.http[0].route[0].weight: weight 150 is out of range 0..=100"
        ),
        format!(
            "error {file}: DestinationRule default/reviews: spec.trafficPolicy.loadBalancr: unknown field `loadBalancr`"
        ),
        format!(
            "error {file}: VirtualService default/ratings: spec.http[0].route[0].weight: invalid type: string \"abc\", expected i32"
        ),
    ] {
        assert!(
            out.contains(&expected),
            "missing line:\n{expected}\nin:\n{out}"
        );
    }
    assert!(out.contains("0 valid resource(s), 4 error(s)"), "{out}");
}

#[test]
fn an_undefined_subset_is_a_warning_not_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vs = write(
        dir.path(),
        "vs.yaml",
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\nspec:\n  hosts: [reviews]\n  http:\n  - route: [{destination: {host: reviews, subset: v4}}]\n",
    );
    let (code, out) = validate(&[&vs]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("warn  ")
            && out.contains("spec.http[0].route[0].destination.subset")
            && out.contains("\"v4\""),
        "{out}"
    );
}

#[test]
fn istio_bookinfo_samples_validate_unchanged() {
    let samples =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference/istio-samples");
    let Ok(entries) = std::fs::read_dir(&samples) else {
        eprintln!("skipping: {} is not present", samples.display());
        return;
    };
    let mut checked = 0;
    for entry in entries.flatten() {
        let (code, out) = validate(&[&entry.path()]);
        assert_eq!(code, 0, "{}:\n{out}", entry.path().display());
        assert!(out.contains(" 0 error(s)"), "{out}");
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} samples found");
}

#[test]
fn a_missing_path_says_so() {
    let out = Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(["validate", "-f", "/nonexistent/trellis.yaml"])
        .output()
        .expect("trellis runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nonexistent/trellis.yaml does not exist")
    );
}
