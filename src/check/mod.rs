//! Verdicts: pure functions from the cluster objects and node states to
//! findings. No I/O here; `inspect` gathers, faces present.

pub mod cluster;
pub mod finding;
pub mod flannel;
pub mod iptables;
pub mod ipvs;
pub mod text;

pub use finding::{Finding, ObjectRef, RepairAction, Severity};

use crate::dataplane::NodeState;
use crate::model::{Cluster, ClusterNetwork};

/// Every finding for the cluster and the given nodes' states, sorted by
/// node (cluster-level first), severity and ID.
pub fn run(cluster: &Cluster, nodes: &[(String, NodeState)]) -> Vec<Finding> {
    let mut out = Vec::new();
    cluster::check(cluster, &mut out);
    let net = ClusterNetwork::from_cluster(cluster);
    for (node, state) in nodes {
        check_node(cluster, node, state, net.as_ref(), &mut out);
    }
    out.sort_by(|a, b| {
        (&a.node, a.severity, &a.id, &a.summary).cmp(&(&b.node, b.severity, &b.id, &b.summary))
    });
    out
}

/// The findings of one node's dataplane.
pub fn check_node(
    cluster: &Cluster,
    node: &str,
    state: &NodeState,
    net: Option<&ClusterNetwork>,
    out: &mut Vec<Finding>,
) {
    flannel::check_node(cluster, node, state, out);
    flannel::check_sysctls(node, state, out);
    flannel::check_rules(node, state, out);
    flannel::check_pods(cluster, node, state, out);
    let mode = crate::model::kube_proxy::proxy_mode(cluster);
    if let Some(net) = net {
        iptables::check_node(cluster, node, state, net, mode, out);
    }
    if mode == crate::model::kube_proxy::ProxyMode::Ipvs {
        ipvs::check_node(cluster, node, state, out);
    }

    cluster::check_dns_conntrack(cluster, node, state, out);
}

#[cfg(test)]
pub(crate) mod tests;
