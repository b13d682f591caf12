#!/usr/bin/env bash
# The main job on the embedded default: bring up the seed lab, show whether
# every path works, then open the dashboard on it (on a terminal; otherwise
# print the check and a node's dataplane as knetdoctor reads it).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo build --release --locked
kd=target/release/knetdoctor
$kd lab status >/dev/null 2>&1 || { $kd lab down >/dev/null 2>&1 || true; $kd lab up; }
$kd lab status || true
if [ -t 0 ] && [ -t 1 ]; then
    # On a terminal: the dashboard (q quits). Break something from another
    # terminal (`knetdoctor lab break route-missing`) and watch it appear.
    $kd tui
else
    $kd check || true
    $kd inspect node k8s-node-12
fi
echo
echo "Try a fault:  $kd lab break --list;  $kd lab break route-missing;  $kd check;  $kd repair --node k8s-node-12;  $kd lab heal"
echo "Dashboard:    $kd   (q quits)"
echo "Remove it:    $kd lab down"
