#!/usr/bin/env bash
# The main job on the embedded default: bring up the seed lab, show whether
# every path works, and show a node's dataplane as knetdoctor reads it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo build --release --locked
kd=target/release/knetdoctor
$kd lab status >/dev/null 2>&1 || { $kd lab down >/dev/null 2>&1 || true; $kd lab up; }
$kd lab status || true
$kd inspect node k8s-node-12
echo
echo "Try a fault:  $kd lab break --list;  $kd lab break route-missing;  $kd lab status;  $kd lab heal"
echo "Remove it:    $kd lab down"
