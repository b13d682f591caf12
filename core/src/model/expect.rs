//! `expect()`: what a node's dataplane should hold according to the cluster
//! objects, as flannel, kube-proxy and the CNI plugins would program it.

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::cluster::{Cluster, ClusterNetwork};
use super::flannel::{self, Lease, LeaseError, PeerEntries};
use super::kube_proxy;
use super::portmap;
use crate::dataplane::iptables::Ruleset;

/// flannel's share of one node's expected state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlannelExpectation {
    pub lease: Lease,
    pub vtep_mtu: u32,
    /// cni0's address (`podCIDR .1`).
    pub bridge_address: Ipv4Net,
    /// One entry set per remote node, in flannel's programming order.
    pub peers: Vec<PeerEntries>,
}

/// The flannel devices and per-peer entries `node` should hold. Nodes whose
/// lease cannot be read are left out of the peers (they are findings of
/// their own); the node itself must have a lease.
pub fn flannel(
    cluster: &Cluster,
    node: &str,
    underlay_mtu: u32,
) -> Result<FlannelExpectation, LeaseError> {
    let own = cluster
        .node(node)
        .map(Lease::from_node)
        .unwrap_or_else(|| Err(LeaseError::NoPodCidr(node.to_string())))?;
    // The index holds each node's parsed lease (5,000 at scale); in the
    // API's node order, which is flannel's.
    let by_node = &cluster.index().nodes.lease_by_node;
    let leases = (cluster.nodes.iter()).filter_map(|n| by_node.get(n.metadata.name.as_deref()?));
    Ok(FlannelExpectation {
        bridge_address: own.bridge_address(),
        vtep_mtu: flannel::vtep_mtu(underlay_mtu),
        peers: flannel::peer_entries(node, leases),
        lease: own,
    })
}

/// The full iptables ruleset (filter + nat) `node` should have: the CNI
/// portmap chains, kube-proxy's chains, and flannel's chains, in the order
/// they hook into the built-in chains on a real node.
pub fn iptables(cluster: &Cluster, node: &str, net: &ClusterNetwork) -> Ruleset {
    iptables_of(cluster, node, net, true)
}

/// [`iptables`] with or without kube-proxy's part: a node whose real
/// kube-proxy writes its own chains gets only flannel's and the CNI's.
pub fn iptables_of(
    cluster: &Cluster,
    node: &str,
    net: &ClusterNetwork,
    kube_proxy: bool,
) -> Ruleset {
    let mut rs = Ruleset::default();
    rs.table_mut("filter");
    rs.table_mut("nat");
    let pod_cidr = cluster
        .node(node)
        .and_then(|n| n.spec.as_ref()?.pod_cidr.clone())
        .unwrap_or_default();
    portmap::program_iptables(
        &mut rs,
        &portmap::host_ports(cluster.pods_on(node)),
        &pod_cidr,
    );
    if kube_proxy {
        kube_proxy::program_iptables(
            &mut rs,
            &kube_proxy::service_ports(cluster),
            Some(net.cluster_cidr),
        );
    }
    // In nftables mode flannel writes its table instead (flannel_nft).
    if let Ok(local) = pod_cidr.parse::<Ipv4Net>()
        && !net.nftables
    {
        flannel::program_iptables(&mut rs, net.cluster_cidr, local);
    }
    rs
}

/// Everything `repair` restores a node to: its iptables ruleset and, for a
/// node kube-proxy programs in nftables mode, kube-proxy's table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeExpectation {
    pub iptables: Ruleset,
    /// kube-proxy's table, where kube-proxy runs in nftables mode (built
    /// only there: it costs a walk of every Service port).
    pub kube_proxy_nft: Option<crate::dataplane::nft_table::NftTableSpec>,
    /// flannel's table, where flannel runs in nftables mode.
    pub flannel_nft: Option<crate::dataplane::nft_table::NftTableSpec>,
}

impl NodeExpectation {
    /// The expected nftables table `family name`, if one is expected.
    pub fn nft_table(
        &self,
        family: &str,
        name: &str,
    ) -> Option<&crate::dataplane::nft_table::NftTableSpec> {
        [self.kube_proxy_nft.as_ref(), self.flannel_nft.as_ref()]
            .into_iter()
            .flatten()
            .find(|t| t.family == family && t.name == name)
    }
}

/// What `node`, holding `state`, should hold, for repair.
pub fn node(
    cluster: &Cluster,
    node: &str,
    net: &ClusterNetwork,
    state: &crate::dataplane::NodeState,
) -> NodeExpectation {
    let nftables = kube_proxy::node_proxy_mode(cluster, state) == kube_proxy::ProxyMode::Nftables;
    NodeExpectation {
        iptables: iptables(cluster, node, net),
        kube_proxy_nft: nftables
            .then(|| super::kube_proxy_nft::expected(cluster, node, Some(net.cluster_cidr))),
        flannel_nft: cluster
            .node(node)
            .and_then(|n| super::flannel::Lease::from_node(n).ok())
            .filter(|_| net.nftables)
            .map(|l| super::flannel_nft::table(net.cluster_cidr, l.pod_cidr)),
    }
}
