//! The closed vocabulary of findings: every ID `check` can report, who owns
//! what it is about, and how an entry it names stands. A new variant does not
//! compile until it is given its text, its owner and its mark, so a view
//! never guesses from the spelling of an ID.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Whose state a finding is about: the component that programs it (and
/// whose restart or resync rewrites it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Owner {
    /// flanneld and the CNI bridge plugin: flannel.1, cni0, the per-peer
    /// neigh, FDB and route entries, FLANNEL-* chains.
    Flannel,
    /// kube-proxy in iptables mode: KUBE-* chains.
    KubeProxy,
    /// kube-proxy in IPVS mode: kube-ipvs0, virtual and real servers.
    Ipvs,
    /// The node itself: sysctls, policy rules, pods' veths, what could not
    /// be read.
    Node,
    /// The API objects: Services, Endpoints, Ingresses, leases, DNS config.
    Cluster,
}

/// How an entry a finding names stands against what its owner would
/// program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mark {
    /// Expected and absent.
    Missing,
    /// Present with the wrong attributes.
    Wrong,
    /// Present and expected by nothing.
    Stale,
    /// Something else (down, off, unreadable): the finding's ID says what.
    Other,
}

macro_rules! finding_ids {
    ($( $(#[$doc:meta])* $variant:ident = $text:literal, $owner:ident, $mark:ident; )*) => {
        /// A finding's stable ID; serialized as its kebab-case text, which
        /// scripts rely on.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum FindingId {
            $( $(#[$doc])* $variant, )*
        }

        impl FindingId {
            /// Every ID, in declaration order.
            pub const ALL: &'static [FindingId] = &[$(FindingId::$variant,)*];

            /// The ID as users and scripts see it.
            pub fn as_str(self) -> &'static str {
                match self { $(FindingId::$variant => $text,)* }
            }

            /// Whose state the finding is about.
            pub fn owner(self) -> Owner {
                match self { $(FindingId::$variant => Owner::$owner,)* }
            }

            /// How the entries it names stand, unless the finding marks an
            /// entry itself (a mismatch names its missing and stale parts).
            pub fn mark(self) -> Mark {
                match self { $(FindingId::$variant => Mark::$mark,)* }
            }
        }
    };
}

finding_ids! {
    // flannel's VXLAN device and the CNI bridge.
    VtepMissing = "vtep-missing", Flannel, Missing;
    VtepDown = "vtep-down", Flannel, Other;
    VtepMtuWrong = "vtep-mtu-wrong", Flannel, Wrong;
    VtepAddrWrong = "vtep-addr-wrong", Flannel, Wrong;
    VtepConfigWrong = "vtep-config-wrong", Flannel, Wrong;
    VtepMacDrift = "vtep-mac-drift", Flannel, Wrong;
    VxlanTxChecksumOffload = "vxlan-tx-checksum-offload", Flannel, Other;
    Cni0AddrWrong = "cni0-addr-wrong", Flannel, Wrong;
    Cni0Down = "cni0-down", Flannel, Other;
    MtuMismatch = "mtu-mismatch", Flannel, Wrong;
    // flannel's per-peer entries.
    NeighMissing = "neigh-missing", Flannel, Missing;
    NeighWrongMac = "neigh-wrong-mac", Flannel, Wrong;
    NeighNotPermanent = "neigh-not-permanent", Flannel, Wrong;
    FdbMissing = "fdb-missing", Flannel, Missing;
    FdbWrongDst = "fdb-wrong-dst", Flannel, Wrong;
    FdbStale = "fdb-stale", Flannel, Stale;
    RouteMissing = "route-missing", Flannel, Missing;
    RouteWrong = "route-wrong", Flannel, Wrong;
    RouteShadowsPodCidr = "route-shadows-pod-cidr", Flannel, Wrong;
    // flannel's chains.
    ForwardDrop = "forward-drop", Flannel, Missing;
    FlannelMasqMissing = "flannel-masq-missing", Flannel, Missing;
    NodeNoFlannelLease = "node-no-flannel-lease", Flannel, Missing;
    // The node itself.
    IpForwardOff = "ip-forward-off", Node, Wrong;
    BridgeNfCallIptablesOff = "bridge-nf-call-iptables-off", Node, Wrong;
    PolicyRuleMissing = "policy-rule-missing", Node, Missing;
    PodVethMissing = "pod-veth-missing", Node, Missing;
    PodVethDown = "pod-veth-down", Node, Other;
    PodVethNotOnBridge = "pod-veth-not-on-bridge", Node, Wrong;
    PodVethMtuMismatch = "pod-veth-mtu-mismatch", Node, Wrong;
    NodeStateUnreadable = "node-state-unreadable", Node, Other;
    /// A list the API server refused to the reader: the verdicts that
    /// read it were skipped.
    ApiUnreadable = "api-unreadable", Cluster, Other;
    NodeIpv6Only = "node-ipv6-only", Node, Other;
    IptablesBackendSplit = "iptables-backend-split", Node, Wrong;
    DnsConntrackStale = "dns-conntrack-stale", Node, Stale;
    // kube-proxy, iptables mode.
    KubeProxyNotProgrammed = "kube-proxy-not-programmed", KubeProxy, Missing;
    KubeProxySvcChainMissing = "kube-proxy-svc-chain-missing", KubeProxy, Missing;
    KubeProxyNodeportMissing = "kube-proxy-nodeport-missing", KubeProxy, Missing;
    KubeProxyEndpointsMismatch = "kube-proxy-endpoints-mismatch", KubeProxy, Wrong;
    KubeProxyRejectStale = "kube-proxy-reject-stale", KubeProxy, Stale;
    // kube-proxy, nftables mode (table ip kube-proxy).
    KubeProxyNftablesNotProgrammed = "kube-proxy-nftables-not-programmed", KubeProxy, Missing;
    KubeProxyNftablesServiceMissing = "kube-proxy-nftables-service-missing", KubeProxy, Missing;
    KubeProxyNftablesEndpointsMismatch = "kube-proxy-nftables-endpoints-mismatch", KubeProxy, Wrong;
    KubeProxyNftablesChainWrong = "kube-proxy-nftables-chain-wrong", KubeProxy, Wrong;
    KubeProxyNftablesRejectMissing = "kube-proxy-nftables-reject-missing", KubeProxy, Missing;
    KubeProxyNftablesTableDiffers = "kube-proxy-nftables-table-differs", KubeProxy, Stale;
    // flannel, nftables mode (table ip flannel-ipv4).
    FlannelNftablesNotProgrammed = "flannel-nftables-not-programmed", Flannel, Missing;
    FlannelNftablesChainWrong = "flannel-nftables-chain-wrong", Flannel, Wrong;
    // kube-proxy, IPVS mode.
    IpvsDeviceMissing = "ipvs-device-missing", Ipvs, Missing;
    IpvsClusterIpUnbound = "ipvs-cluster-ip-unbound", Ipvs, Missing;
    IpvsVirtualServerMissing = "ipvs-virtual-server-missing", Ipvs, Missing;
    IpvsRealServersMismatch = "ipvs-real-servers-mismatch", Ipvs, Wrong;
    // The API objects.
    NodeNoPodCidr = "node-no-pod-cidr", Cluster, Missing;
    PodCidrOverlap = "pod-cidr-overlap", Cluster, Wrong;
    NetworkPolicyNotEnforced = "network-policy-not-enforced", Cluster, Other;
    ServiceSelectorMatchesNothing = "service-selector-matches-nothing", Cluster, Wrong;
    ServiceNamedPortUnresolved = "service-named-port-unresolved", Cluster, Wrong;
    ServiceTargetPortUnexposed = "service-target-port-unexposed", Cluster, Wrong;
    ServiceNoEndpoints = "service-no-endpoints", Cluster, Missing;
    KubeDnsNoEndpoints = "kube-dns-no-endpoints", Cluster, Missing;
    KubeletConfigUnreadable = "kubelet-config-unreadable", Cluster, Other;
    ClusterDnsMismatch = "cluster-dns-mismatch", Cluster, Wrong;
    IngressClassNoController = "ingress-class-no-controller", Cluster, Missing;
    IngressBackendServiceMissing = "ingress-backend-service-missing", Cluster, Missing;
    IngressBackendPortMissing = "ingress-backend-port-missing", Cluster, Missing;
    CorednsForwardLoop = "coredns-forward-loop", Cluster, Wrong;
}

impl FindingId {
    /// The ID whose text is `s`.
    pub fn parse(s: &str) -> Option<FindingId> {
        FindingId::ALL.iter().copied().find(|id| id.as_str() == s)
    }

    /// Whether kube-proxy (either mode) owns what it is about: the
    /// dashboard counts these apart from flannel's and the node's.
    pub fn is_kube_proxy(self) -> bool {
        matches!(self.owner(), Owner::KubeProxy | Owner::Ipvs)
    }
}

impl std::fmt::Display for FindingId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl Serialize for FindingId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for FindingId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        FindingId::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown finding ID {s:?}")))
    }
}

impl Mark {
    /// The word the views print.
    pub fn label(self) -> &'static str {
        match self {
            Mark::Missing => "missing",
            Mark::Wrong => "wrong",
            Mark::Stale => "stale",
            Mark::Other => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_kebab_case_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for id in FindingId::ALL {
            let s = id.as_str();
            assert!(seen.insert(s), "{s} twice");
            assert!(
                s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{s}"
            );
            let json = serde_json::to_string(id).unwrap();
            assert_eq!(json, format!("\"{s}\""));
            assert_eq!(serde_json::from_str::<FindingId>(&json).unwrap(), *id);
        }
        assert!(serde_json::from_str::<FindingId>("\"no-such-id\"").is_err());
    }

    #[test]
    fn kube_proxy_findings_are_told_apart_by_owner_not_spelling() {
        assert!(FindingId::KubeProxyEndpointsMismatch.is_kube_proxy());
        assert!(FindingId::IpvsClusterIpUnbound.is_kube_proxy());
        assert!(!FindingId::ForwardDrop.is_kube_proxy());
        assert_eq!(FindingId::IpvsClusterIpUnbound.mark(), Mark::Missing);
        assert_eq!(FindingId::KubeProxyRejectStale.mark(), Mark::Stale);
    }
}
