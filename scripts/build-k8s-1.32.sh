#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager and kube-proxy 1.32 from
# ../shared/k8s-1.32 (its README says what it is) with Debian's Go 1.23,
# for the control-plane lab (`lab up --control-plane --k8s 1.32`). Cached
# in $KNETDOCTOR_CACHE/k8s-1.32 (default /var/cache/knetdoctor), outside the
# checkout: about 4.5 minutes cold on 2 cores, seconds after. Prints the
# directory holding the binaries.
set -euo pipefail
CACHE=${KNETDOCTOR_CACHE:-/var/cache/knetdoctor}
OUT=$CACHE/k8s-1.32
BIN=$OUT/bin
if [ -x "$BIN/kube-apiserver" ] && [ -x "$BIN/kube-controller-manager" ] && [ -x "$BIN/kube-proxy" ]; then
    echo "$BIN"
    exit 0
fi
SHARED=${KNETDOCTOR_SHARED:-$(cd "$(dirname "$0")/../.." && pwd)/shared}
if [ ! -x "$SHARED/k8s-1.32/build.sh" ]; then
    echo "no $SHARED/k8s-1.32/build.sh: set KNETDOCTOR_SHARED to the folder holding k8s-1.32/" >&2
    exit 3
fi
mkdir -p "$OUT"
"$SHARED/k8s-1.32/build.sh" "$OUT" >&2
echo "$BIN"
