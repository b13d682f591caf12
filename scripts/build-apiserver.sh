#!/usr/bin/env bash
# Builds kube-apiserver and kube-controller-manager 1.20 from Debian's
# kubernetes-client source package (vendored, GOPATH mode, offline) with
# Debian's golang-1.19, for the live-API tests. The binaries are cached in
# $KNETDOCTOR_CACHE (default /var/cache/knetdoctor), outside the checkout,
# so only the first run pays for the build (~8 minutes on 2 cores).
set -euo pipefail
CACHE=${KNETDOCTOR_CACHE:-/var/cache/knetdoctor}
BIN=$CACHE/k8s-1.20/bin
if [ -x "$BIN/kube-apiserver" ] && [ -x "$BIN/kube-controller-manager" ] && [ -x "$BIN/kube-proxy" ] && [ -f "$BIN/.reflect2-patched" ]; then
    echo "$BIN"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# A deb-src entry mirroring the machine's own Debian source.
if ! grep -rqs '^Types: deb-src' /etc/apt/sources.list.d/; then
    sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources > /etc/apt/sources.list.d/knetdoctor-deb-src.sources
fi
apt-get update -qq >&2
apt-get install -y -qq golang-1.19-go etcd-server dpkg-dev rsync openssl >&2
mkdir -p "$CACHE/src" "$BIN"
cd "$CACHE/src"
[ -d kubernetes-*/cmd/kube-apiserver ] 2>/dev/null || apt-get source -qq kubernetes-client >&2
TREE=$(ls -d "$CACHE"/src/kubernetes-*/ | head -1)
export GOPATH=$CACHE/gopath GO111MODULE=off GOFLAGS= GOCACHE=$CACHE/gocache
export PATH=/usr/lib/go-1.19/bin:$PATH
mkdir -p "$GOPATH/src/k8s.io"
ln -sfn "$TREE" "$GOPATH/src/k8s.io/kubernetes"
cd "$GOPATH/src/k8s.io/kubernetes"
# Kubernetes 1.20 vendors modern-go/reflect2 v1.0.1, which links to
# reflect.mapiterinit with its pre-Go-1.18 signature and crashes the API
# server (SIGSEGV in map iteration) when built with Go 1.19. Apply the fix
# reflect2 v1.0.2 made: pass a full-size runtime iterator to mapiterinit.
R=vendor/github.com/modern-go/reflect2
if ! [ -f $R/go_above_118_knetdoctor.go ]; then
    sed -i 's/^func mapiterinit(rtype unsafe.Pointer, m unsafe.Pointer) \*hiter$/func mapiterinit(rtype unsafe.Pointer, m unsafe.Pointer, it *hiter)/' $R/unsafe_link.go
    sed -i 's/hiter:      mapiterinit(type2.rtype, \*(\*unsafe.Pointer)(obj)),/hiter:      newMapIter(type2.rtype, *(*unsafe.Pointer)(obj)),/' $R/unsafe_map.go
    cat > $R/go_above_118_knetdoctor.go <<'GO'
package reflect2

import "unsafe"

// hiterFull has the size and layout of the Go 1.18+ runtime map iterator,
// which mapiterinit and mapiternext write in full.
type hiterFull struct {
	key         unsafe.Pointer
	value       unsafe.Pointer
	t           unsafe.Pointer
	h           unsafe.Pointer
	buckets     unsafe.Pointer
	bptr        unsafe.Pointer
	overflow    unsafe.Pointer
	oldoverflow unsafe.Pointer
	startBucket uintptr
	offset      uint8
	wrapped     bool
	B           uint8
	i           uint8
	bucket      uintptr
	checkBucket uintptr
}

func newMapIter(rtype unsafe.Pointer, m unsafe.Pointer) *hiter {
	it := (*hiter)(unsafe.Pointer(new(hiterFull)))
	mapiterinit(rtype, m, it)
	return it
}
GO
    rm -f "$BIN/kube-apiserver" "$BIN/kube-controller-manager"
fi
# The OpenAPI definitions the API server serves are generated code.
[ -f pkg/generated/openapi/zz_generated.openapi.go ] || make gen_openapi >&2
go build -o "$BIN/kube-apiserver" ./cmd/kube-apiserver >&2
go build -o "$BIN/kube-controller-manager" ./cmd/kube-controller-manager >&2
go build -o "$BIN/kube-proxy" ./cmd/kube-proxy >&2
touch "$BIN/.reflect2-patched"
echo "$BIN"
