#!/bin/sh
# Packages a knetdoctor binary for krew and writes its plugin manifest:
#
#   deploy/krew/krew-manifest.sh BINARY VERSION URL OUTDIR
#
# OUTDIR gets knetdoctor-linux-amd64.tar.gz (the binary as `knetdoctor`)
# and knetdoctor.yaml, the
# krew-index manifest whose platform entry names URL (where the archive
# will be published, e.g. a release asset) and the archive's sha256.
# Before publishing, `kubectl krew install --manifest=OUTDIR/knetdoctor.yaml
# --archive=OUTDIR/knetdoctor-linux-amd64.tar.gz` installs it locally.
# The manifest is rendered from .krew.yaml at the repository's root, the
# krew-release-bot template that renders it for releases made on GitHub.
set -eu
if [ $# -ne 4 ]; then
    echo "usage: $0 BINARY VERSION URL OUTDIR" >&2
    exit 2
fi
binary=$1 version=$2 url=$3 out=$4
case $version in
    v[0-9]*) ;;
    *) echo "$0: VERSION must look like v0.1.0 (krew requires the v)" >&2; exit 2 ;;
esac
[ -x "$binary" ] || { echo "$0: $binary is not an executable" >&2; exit 2; }
mkdir -p "$out"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
install -m 755 "$binary" "$stage/knetdoctor"
archive="$out/knetdoctor-linux-amd64.tar.gz"
# Reproducible: fixed owner, order and times.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 \
    -C "$stage" -cf - knetdoctor | gzip -n > "$archive"
sha=$(sha256sum "$archive" | cut -d' ' -f1)
# The manifest is .krew.yaml rendered as krew-release-bot renders it:
# the tag for {{ .TagName }}, and the addURIAndSha call made uri + sha256.
template=$(dirname "$0")/../../.krew.yaml
awk -v version="$version" -v url="$url" -v sha="$sha" '
    /addURIAndSha/ {
        indent = substr($0, 1, index($0, "{{") - 1)
        print indent "uri: " url
        print indent "sha256: " sha
        next
    }
    { gsub(/\{\{ \.TagName \}\}/, version); print }
' "$template" > "$out/knetdoctor.yaml"
echo "$archive"
echo "$out/knetdoctor.yaml"
