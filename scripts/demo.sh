#!/usr/bin/env bash
# The main job on the embedded default: install what is missing, build,
# bring up the seed lab (one progress line a step, the details in the set-up
# log), show whether every path works, take the guided tour of one fault
# (break, check, trace, repair, undo, heal), then open the dashboard on a
# terminal. Runs as root, or as a user who may sudo (it asks sudo itself).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
step "building knetdoctor (release; a few minutes the first time)" cargo build --release --locked
kd=target/release/knetdoctor
bring_up() {
    if $kd lab status --no-probe >/dev/null 2>&1; then
        # Up: start the tour from a healthy lab.
        $kd lab heal
    else
        $kd lab down || true
        $kd lab up
    fi
}
step "bringing the seed lab up (3 nodes, 7 pods, in kdlab-seed-* namespaces)" bring_up
echo
$kd lab status || true
echo
# On a terminal the tour waits for Enter before each command; elsewhere
# it runs straight through.
$kd lab tour
echo
if [ -t 0 ] && [ -t 1 ]; then
    # The dashboard (q quits). Break something from another terminal
    # (`knetdoctor lab break neigh-missing`) and watch it appear.
    $kd tui
fi
echo "Dashboard:    $kd   (q quits; ? lists the keys)"
echo "Faults:       $kd lab break --list;  $kd lab break fdb-stale-dst;  $kd check;  $kd lab heal"
echo "Remove it:    $kd lab down"
echo "Set-up log:   $KNETDOCTOR_LOG"
