//! `trellis capture` as a user runs it (printing only: installing rules needs a network
//! namespace, which trellis-capture's own tests cover).

use std::process::Command;

fn trellis(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(args)
        .output()
        .expect("trellis runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn print_shows_istio_style_rules_with_the_given_exclusions() {
    let (code, out, err) = trellis(&[
        "capture",
        "print",
        "-u",
        "1500",
        "-x",
        "10.1.0.0/16",
        "-d",
        "22",
    ]);
    assert_eq!(code, 0, "{err}");
    for line in [
        "-A TRELLIS_OUTPUT -m owner --uid-owner 1500 -j RETURN",
        "-A TRELLIS_OUTPUT -d 10.1.0.0/16 -j RETURN",
        "-A TRELLIS_INBOUND -p tcp --dport 22 -j RETURN",
        "-A TRELLIS_REDIRECT -p tcp -j REDIRECT --to-ports 15001",
        "-A TRELLIS_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006",
    ] {
        assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
    }
}

#[test]
fn a_bad_cidr_is_refused_with_the_reason() {
    let (code, _, err) = trellis(&["capture", "print", "-x", "10.0.0.0/33"]);
    assert_eq!(code, 2, "clap usage error");
    assert!(
        err.contains("\"10.0.0.0/33\" is not a CIDR (prefix is longer than the address)"),
        "{err}"
    );
}
