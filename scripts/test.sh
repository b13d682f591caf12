#!/usr/bin/env bash
# Every test, as root (or as a user who may sudo): unit tests on the pure
# core and the lab tests that build real network namespaces and verify them
# with iproute2, ping, curl, dig.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
# Kubernetes 1.20 (Debian's source) and 1.32 (shared/k8s-1.32) for the live
# and control-plane lab tests, cached outside the checkout after the first build.
step "building Kubernetes 1.20 from Debian's source (once: cached in /var/cache/knetdoctor)" scripts/build-apiserver.sh
step "building Kubernetes 1.32 from ../shared/k8s-1.32 (once: cached in /var/cache/knetdoctor)" scripts/build-k8s-1.32.sh
cargo test --workspace --locked -- --test-threads=2
