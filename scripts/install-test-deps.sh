#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh machine of this project's kind
# (Debian with the Rust toolchain, Go, Python 3 and pip; root; Debian, PyPI and the Go module
# proxy reachable). Idempotent: each step is skipped when its tool is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=()
command -v protoc >/dev/null || apt_packages+=(protobuf-compiler)
# etcd-client's build imports google/protobuf/*.proto (well-known types), shipped in libprotobuf-dev.
[ -f /usr/include/google/protobuf/descriptor.proto ] || apt_packages+=(libprotobuf-dev)
if [ ${#apt_packages[@]} -gt 0 ]; then
  echo "install-test-deps: apt-get install ${apt_packages[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${apt_packages[@]}" >/dev/null
fi

# cargo-machete: `make lint` checks for unused dependencies with it (pinned, built once).
machete_version=0.9.2
if ! cargo machete --version 2>/dev/null | grep -qx "$machete_version"; then
  cargo install --locked --quiet cargo-machete --version "$machete_version"
fi

# Python tools for the chart tests and the libsodium cross-check, in a project venv.
venv=.venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
stamp="$venv/.requirements.sha"
want=$(sha256sum scripts/requirements-test.txt | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "install-test-deps: pip install -r scripts/requirements-test.txt"
  "$venv/bin/pip" install -q --disable-pip-version-check -r scripts/requirements-test.txt
  echo "$want" > "$stamp"
fi
# The real control plane: etcd, kube-apiserver and kubectl, built from pinned Go modules
# (tools/etcd, tools/kubernetes) once per version into ~/.cache/eargate-tools.
bin=$(bash scripts/build-control-plane.sh)
echo "install-test-deps: $("$bin/kube-apiserver" --version), kubectl $("$bin/kubectl" version --client -o json | sed -n 's/.*"gitVersion": "\(.*\)".*/\1/p' | head -1), etcd $("$bin/etcd" --version | head -1 | awk '{print $3}'), protoc $(protoc --version | awk '{print $2}'), cargo-machete $(cargo machete --version), python venv ready"
