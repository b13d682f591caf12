#!/usr/bin/env bash
# Every test, as root: unit tests on the pure core and the lab tests that
# build real network namespaces and verify them with iproute2, ping, curl, dig.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
# Kubernetes 1.20 (Debian's source) and 1.32 (shared/k8s-1.32) for the live
# and control-plane lab tests, cached outside the checkout after the first build.
scripts/build-apiserver.sh >/dev/null
scripts/build-k8s-1.32.sh >/dev/null
cargo test --workspace --locked -- --test-threads=2
