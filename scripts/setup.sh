#!/usr/bin/env bash
# Installs what knetdoctor and its lab need on a fresh Debian machine, then
# builds it. Sourced by demo.sh and test.sh; safe to run again.
set -euo pipefail

PACKAGES=(iproute2 iptables nftables ipvsadm dnsmasq-base nginx-light curl dnsutils
          iputils-ping tcpdump tshark libpcap-dev pkg-config conntrack ipset ethtool procps kmod time tmux
          man-db
          fzf)

# The lab needs root (network namespaces). Run as root, or as a user who
# may sudo: the script that was started (demo.sh, test.sh, this one) runs
# itself again through sudo, keeping the user's Rust toolchain in reach.
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        exec sudo env "PATH=$PATH" \
            "RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup}" "CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}" \
            bash "$0" "$@"
    fi
    echo "knetdoctor's lab needs root (network namespaces): run this as root, or install sudo" >&2
    exit 3
fi

# What the set-up runs is kept in a log; the screen shows one line a step,
# and the log's end when a step fails.
KNETDOCTOR_LOG=${KNETDOCTOR_LOG:-/var/log/knetdoctor-setup.log}
: >>"$KNETDOCTOR_LOG"

# step WHAT COMMAND...: runs COMMAND with its output in the log.
step() {
    local what=$1 started=$SECONDS rc=0
    shift
    printf '==> %s ... ' "$what"
    echo "==> $what: $*" >>"$KNETDOCTOR_LOG"
    "$@" >>"$KNETDOCTOR_LOG" 2>&1 || rc=$?
    if [ "$rc" -eq 0 ]; then
        printf 'done (%ss)\n' $((SECONDS - started))
        return 0
    fi
    printf 'failed (exit %s)\n' "$rc"
    echo "--- the last 30 lines of $KNETDOCTOR_LOG ---" >&2
    tail -n 30 "$KNETDOCTOR_LOG" >&2
    return "$rc"
}

install_packages() {
    # Keep package scripts from starting nginx on the host.
    local created_policy=0 rc=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        created_policy=1
    fi
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"; } || rc=$?
    [ "$created_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
    return "$rc"
}

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    step "installing ${#missing[@]} Debian packages (${missing[*]:0:4} ...)" install_packages "${missing[@]}"
fi

# Debian's kubectl (kubernetes-client), unpacked beside the Kubernetes
# builds rather than installed: the plugin tests run `kubectl knetdoctor`
# through it, and a kubectl already on the machine stays as it is.
KUBECTL_DIR=/var/cache/knetdoctor/kubernetes-client
unpack_kubectl() {
    local deb_dir
    deb_dir=$(mktemp -d)
    chmod 755 "$deb_dir"
    (cd "$deb_dir" && { apt-get download -q kubernetes-client ||
        { apt-get update -q && apt-get download -q kubernetes-client; }; }) &&
        mkdir -p "$KUBECTL_DIR" &&
        dpkg-deb -x "$deb_dir"/kubernetes-client_*.deb "$KUBECTL_DIR"
    local rc=$?
    rm -rf "$deb_dir"
    return "$rc"
}
if [ ! -x "$KUBECTL_DIR/usr/bin/kubectl" ]; then
    step "unpacking Debian's kubectl into $KUBECTL_DIR" unpack_kubectl
fi

# The lab's nodes bridge pod traffic through iptables, as real nodes do.
modprobe br_netfilter 2>/dev/null || true
if [ ! -e /proc/sys/net/bridge/bridge-nf-call-iptables ]; then
    echo "warning: br_netfilter is not available; bridged pod traffic will bypass iptables" >&2
fi
