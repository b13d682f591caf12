//! Verdicts: pure functions from the cluster objects and node states to
//! findings. No I/O here; `inspect` gathers, faces present.

pub mod cluster;
pub mod finding;
pub mod findings;
pub mod flannel;
pub mod id;
pub mod incremental;
pub mod iptables;
pub mod ipvs;
pub mod nftables;
pub mod reach;
pub mod runs;
pub mod text;

pub use finding::{
    Finding, FindingId, Mark, Named, ObjectRef, Owner, RepairAction, Severity, Subject,
    first_naming, first_naming_where, naming,
};
pub use findings::Findings;

use crate::dataplane::NodeState;
use crate::dataplane::state::UnreadSource;
use crate::model::reading::{CheckGroup, Skipped};
use crate::model::{Cluster, ClusterNetwork};
use flannel::PeersJudged;

/// Every finding for the cluster and the given nodes' states, sorted by
/// node (cluster-level first), severity and ID.
pub fn run(cluster: &Cluster, nodes: &[(String, NodeState)]) -> Vec<Finding> {
    let mut out = Vec::new();
    cluster::check(cluster, &mut out);
    let net = ClusterNetwork::from_cluster(cluster);
    for (node, state) in nodes {
        check_node(cluster, node, state, net.as_ref(), &mut out);
    }
    sort(&mut out);
    out
}

/// The exit code of an answer made of these findings: 0 healthy, 1 a
/// finding about the cluster or a node, 5 incomplete — nothing wrong in
/// what could be read, but the API server refused some of it (RBAC), so
/// "healthy" cannot be said.
pub fn exit_code(findings: &[Finding]) -> u8 {
    if findings.iter().any(|f| f.id != FindingId::ApiUnreadable) {
        1
    } else if findings.is_empty() {
        0
    } else {
        INCOMPLETE
    }
}

/// The exit code of an answer whose reading was incomplete.
pub const INCOMPLETE: u8 = 5;

/// Each finding behind an `Arc` of its own, as the dashboard's kept
/// verdicts and the views that read them hold findings.
pub fn share(findings: Vec<Finding>) -> Vec<std::sync::Arc<Finding>> {
    findings.into_iter().map(std::sync::Arc::new).collect()
}

/// The finding in `f`, taken out when `f` is its only holder (copied
/// otherwise).
pub fn unshare(f: std::sync::Arc<Finding>) -> Finding {
    std::sync::Arc::try_unwrap(f).unwrap_or_else(|f| (*f).clone())
}

fn sort<F: std::borrow::Borrow<Finding>>(findings: &mut [F]) {
    findings.sort_by(|a, b| order(a.borrow(), b.borrow()));
}

/// The order `check` lists findings in: by node (the cluster's first),
/// severity, ID and summary.
fn order(a: &Finding, b: &Finding) -> std::cmp::Ordering {
    (&a.node, a.severity, a.id.as_str(), &a.summary).cmp(&(
        &b.node,
        b.severity,
        b.id.as_str(),
        &b.summary,
    ))
}

/// The findings of one node's dataplane.
pub fn check_node(
    cluster: &Cluster,
    node: &str,
    state: &NodeState,
    net: Option<&ClusterNetwork>,
    out: &mut Vec<Finding>,
) {
    out.extend(check_iptables(cluster, node, state, net));
    check_node_but_iptables(cluster, node, state, net, out);
}

/// What reads the node's iptables: kube-proxy's and flannel's chains. The
/// costly part of a node's check (a 10,000-Service ruleset is 113,000
/// rules); it depends on the cluster objects, the rulesets and nothing
/// else of the node's state but what [`IptablesInputs`] holds, so that
/// the live path re-runs it only when those change.
pub fn check_iptables(
    cluster: &Cluster,
    node: &str,
    state: &NodeState,
    net: Option<&ClusterNetwork>,
) -> Vec<Finding> {
    let ports = crate::model::kube_proxy::service_ports(cluster);
    judge_iptables(cluster, &ports, node, state, net, None)
        .findings()
        .cloned()
        .collect()
}

/// [`check_iptables`] with the cluster's Service ports worked out once
/// for every node, and kept apart per port: with `before` (the node's
/// findings from the same rules and inputs, and the ports changed since)
/// only those ports' chains are judged again.
pub fn judge_iptables(
    cluster: &Cluster,
    ports: &[crate::model::kube_proxy::ServicePort],
    node: &str,
    state: &NodeState,
    net: Option<&ClusterNetwork>,
    before: Option<(
        iptables::NodeRules,
        &std::collections::BTreeSet<iptables::PortKey>,
    )>,
) -> iptables::NodeRules {
    let inputs = IptablesInputs::of(cluster, state);
    match net {
        Some(net) if !inputs.unread => {
            let skipped = Skipped::of(&cluster.unread);
            iptables::check_node(ports, node, state, net, inputs.mode, &skipped, before)
        }
        _ => iptables::NodeRules::default(),
    }
}

/// Everything of a node's state [`check_iptables`] reads besides the
/// rulesets themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IptablesInputs {
    /// Which proxier's rules are judged (it follows from the rulesets and
    /// the nftables tables).
    pub mode: crate::model::kube_proxy::ProxyMode,
    /// The rules could not be read: nothing is judged.
    pub unread: bool,
}

impl IptablesInputs {
    pub fn of(cluster: &Cluster, state: &NodeState) -> IptablesInputs {
        IptablesInputs {
            mode: crate::model::kube_proxy::node_proxy_mode(cluster, state),
            unread: state
                .unread
                .iter()
                .any(|u| matches!(u.source, UnreadSource::Iptables { .. })),
        }
    }
}

/// The rest of a node's findings: flannel's devices, entries, sysctls and
/// policy rules, pods, IPVS, nftables, DNS conntrack, what was not read.
pub fn check_node_but_iptables(
    cluster: &Cluster,
    node: &str,
    state: &NodeState,
    net: Option<&ClusterNetwork>,
    out: &mut Vec<Finding>,
) {
    check_node_overlay(cluster, node, state, net, out);
    check_node_rest(cluster, node, state, net, out);
}

/// flannel's part of a node's check: its VTEP, bridge, the entries per
/// peer, its sysctls and rules, its nftables table. It reads the Nodes'
/// leases and flannel's net-conf alone ([`incremental::OVERLAY_READS`]),
/// so a change of Services, endpoints or pods leaves it standing: at
/// 5,000 nodes it is most of a node's check but iptables (15,000 entries).
pub fn check_node_overlay(
    cluster: &Cluster,
    node: &str,
    state: &NodeState,
    net: Option<&ClusterNetwork>,
    out: &mut Vec<Finding>,
) {
    out.extend(
        check_node_overlay_parts(cluster, node, state, net, PeersJudged::All).into_findings(),
    );
}

/// [`check_node_overlay`]'s findings by part (its order: the devices,
/// the peers', the rest), for the live path to keep each peer's apart.
pub fn check_node_overlay_parts(
    cluster: &Cluster,
    node: &str,
    state: &NodeState,
    net: Option<&ClusterNetwork>,
    judged: PeersJudged,
) -> flannel::NodeParts {
    // What the API server refused is reported once, cluster-wide; the
    // verdicts that read it are not run against what is missing.
    let api = Skipped::of(&cluster.unread);
    let mut parts = match api.runs(CheckGroup::Overlay) {
        true => flannel::check_node_parts(cluster, node, state, judged),
        false => flannel::NodeParts::default(),
    };
    let out = &mut parts.after_peers;
    flannel::check_sysctls(node, state, out);
    flannel::check_rules(node, state, out);
    if let Some(net) = net.filter(|n| n.nftables)
        && api.runs(CheckGroup::Overlay)
        && !state
            .unread
            .iter()
            .any(|u| matches!(u.source, UnreadSource::Nftables))
    {
        nftables::check_flannel(cluster, node, state, net, out);
    }
    parts
}

/// The rest of a node's check but iptables: its pods' veths, what could
/// not be read, IPVS or kube-proxy's nftables, DNS conntrack.
pub fn check_node_rest(
    cluster: &Cluster,
    node: &str,
    state: &NodeState,
    net: Option<&ClusterNetwork>,
    out: &mut Vec<Finding>,
) {
    let api = Skipped::of(&cluster.unread);
    if api.runs(CheckGroup::PodDevices) {
        flannel::check_pods(cluster, node, state, out);
    }
    let mode = crate::model::kube_proxy::node_proxy_mode(cluster, state);
    unread(node, state, out);
    // What was not read is reported above, not judged as if it were empty.
    let not_read = |f: fn(&UnreadSource) -> bool| state.unread.iter().any(|u| f(&u.source));
    let kube_proxy = api.runs(CheckGroup::KubeProxy);
    if kube_proxy
        && mode == crate::model::kube_proxy::ProxyMode::Ipvs
        && !not_read(|s| matches!(s, UnreadSource::Ipvs | UnreadSource::Ipset))
    {
        ipvs::check_node(cluster, node, state, out);
    }
    if kube_proxy
        && mode == crate::model::kube_proxy::ProxyMode::Nftables
        && !not_read(|s| matches!(s, UnreadSource::Nftables))
    {
        nftables::check_node(cluster, node, state, net, out);
    }
    if api.runs(CheckGroup::ClusterDns) {
        cluster::check_dns_conntrack(cluster, node, state, out);
    }
}

/// A finding for each part of the node's state that could not be read or
/// parsed: rules, IPVS and ipsets are what kube-proxy's verdicts stand on
/// (errors); conntrack, offloads and pod namespaces are lesser (warnings).
fn unread(node: &str, state: &NodeState, out: &mut Vec<Finding>) {
    for u in &state.unread {
        let severity = match u.source {
            UnreadSource::Iptables { .. } | UnreadSource::Ipvs | UnreadSource::Ipset => {
                Severity::Error
            }
            _ => Severity::Warning,
        };
        out.push(
            Finding::new(
                FindingId::NodeStateUnreadable,
                severity,
                Some(node),
                format!(
                    "{} of {node} could not be read: {}; nothing that depends on them was checked",
                    u.source, u.cause
                ),
            )
            .object(Subject::NodeState(u.source.clone()))
            .evidence("readable", u.cause.clone())
            .repair(RepairAction::Manual {
                what: format!(
                    "make {} readable on {node} (the tool installed, the output as iptables-save/ipvsadm print it), then check again",
                    u.source
                ),
            }),
        );
    }
}

/// The seed cluster and node state the tests judge (also the application's
/// tests, through the `fixtures` feature).
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
#[cfg(test)]
mod tests;
