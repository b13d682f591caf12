#!/usr/bin/env bash
# Installs what knetdoctor and its lab need on a fresh Debian machine, then
# builds it. Sourced by demo.sh and test.sh; safe to run again.
set -euo pipefail

PACKAGES=(iproute2 iptables nftables ipvsadm dnsmasq-base nginx-light curl dnsutils
          iputils-ping tcpdump tshark libpcap-dev pkg-config conntrack ipset ethtool procps kmod time tmux
          man-db
          fzf)

if [ "$(id -u)" -ne 0 ]; then
    echo "knetdoctor's lab needs root (network namespaces): run this with sudo" >&2
    exit 3
fi

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    # Keep package scripts from starting nginx on the host.
    created_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        created_policy=1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    [ "$created_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi

# Debian's kubectl (kubernetes-client), unpacked beside the Kubernetes
# builds rather than installed: the plugin tests run `kubectl knetdoctor`
# through it, and a kubectl already on the machine stays as it is.
KUBECTL_DIR=/var/cache/knetdoctor/kubernetes-client
if [ ! -x "$KUBECTL_DIR/usr/bin/kubectl" ]; then
    deb_dir=$(mktemp -d)
    chmod 755 "$deb_dir"
    (cd "$deb_dir" && { apt-get download -qq kubernetes-client 2>/dev/null ||
        { apt-get update -qq && apt-get download -qq kubernetes-client; }; })
    mkdir -p "$KUBECTL_DIR"
    dpkg-deb -x "$deb_dir"/kubernetes-client_*.deb "$KUBECTL_DIR"
    rm -rf "$deb_dir"
fi

# The lab's nodes bridge pod traffic through iptables, as real nodes do.
modprobe br_netfilter 2>/dev/null || true
if [ ! -e /proc/sys/net/bridge/bridge-nf-call-iptables ]; then
    echo "warning: br_netfilter is not available; bridged pod traffic will bypass iptables" >&2
fi
