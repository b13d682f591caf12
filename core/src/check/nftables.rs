//! kube-proxy in nftables mode, against the table it would write
//! (`model::kube_proxy_nft`): the Service ports first (each with ready
//! endpoints in `service-ips` and its NodePort in `service-nodeports`,
//! leading to exactly those endpoints), then whatever else differs in the
//! table — its fixed chains (dispatch, masquerading, the endpoint checks),
//! the rejects for ports without endpoints, stale elements and chains.

use super::finding::{Finding, ObjectRef, RepairAction, Severity, Subject};
use super::id::FindingId;
use crate::dataplane::NodeState;
use crate::dataplane::nft_table::{NftTableSpec, TableDiff, element_key};
use crate::dataplane::nftables::ServiceKey;
use crate::model::cluster::ClusterNetwork;
use crate::model::{Cluster, kube_proxy, kube_proxy_nft};

/// The repair every finding here asks for: kube-proxy's table written
/// whole, as kube-proxy writes it on a full sync.
fn rewrite() -> RepairAction {
    RepairAction::NftablesTable {
        family: "ip".into(),
        table: "kube-proxy".into(),
        owner: "kube-proxy".into(),
    }
}

/// What a fixed chain of kube-proxy's table is for: what breaks without it.
fn purpose(chain: &str) -> &'static str {
    match chain {
        "services" | "nat-prerouting" | "nat-output" => {
            "Service addresses are not translated: connections to ClusterIPs and NodePorts reach no endpoint"
        }
        "masquerading" | "nat-postrouting" | "mark-for-masquerade" => {
            "Service traffic marked for SNAT is not masqueraded: replies from endpoints bypass the DNAT and the client drops them"
        }
        "service-endpoints-check"
        | "nodeport-endpoints-check"
        | "reject-chain"
        | "filter-input"
        | "filter-forward"
        | "filter-output" => {
            "connections to Service ports without endpoints are not refused: clients wait for a timeout"
        }
        "cluster-ips-check" | "filter-output-post-dnat" => {
            "connections to unused ports of ClusterIPs are not refused"
        }
        _ => "load-balancer source ranges are not enforced",
    }
}

/// The findings of a node kube-proxy programs in nftables mode.
pub fn check_node(
    cluster: &Cluster,
    node: &str,
    state: &NodeState,
    net: Option<&ClusterNetwork>,
    out: &mut Vec<Finding>,
) {
    let n = Some(node);
    let ports = kube_proxy::service_ports(cluster);
    let Some(table) = &state.kube_proxy_nft else {
        if ports.iter().any(|p| !p.endpoints.is_empty()) {
            out.push(
                Finding::new(FindingId::KubeProxyNftablesNotProgrammed, Severity::Error, n, "no nftables table ip kube-proxy: kube-proxy (nftables mode) has not programmed this node; it is probably not running")
                    .object(Subject::NodeState(crate::dataplane::state::UnreadSource::Nftables))
                    .repair(RepairAction::Manual { what: "check the kube-proxy pod on this node (kubectl -n kube-system get pods -l k8s-app=kube-proxy -o wide)".into() })
                    .repair(rewrite()),
            );
        }
        return;
    };
    // Services already reported: their chains and elements are not
    // reported again as table differences.
    let mut reported: Vec<String> = Vec::new();
    for sp in ports.iter().filter(|p| !p.endpoints.is_empty()) {
        let keys = std::iter::once(ServiceKey::Ip(sp.cluster_ip, sp.protocol.clone(), sp.port))
            .chain(
                sp.node_port
                    .map(|np| ServiceKey::NodePort(sp.protocol.clone(), np)),
            );
        for key in keys {
            let map = key.map();
            let svc = ObjectRef::namespaced("Service", &sp.namespace, &sp.service);
            match table.lookup(&key) {
                None => {
                    reported.push(format!("{}/{}/", sp.namespace, sp.service));
                    out.push(
                        Finding::new(FindingId::KubeProxyNftablesServiceMissing, Severity::Error, n, format!("{}: no element {key} in kube-proxy's nftables map {map}: its traffic is not sent to the endpoints", sp.name()))
                            .object(svc.clone())
                            .evidence(format!("{map} element {key}"), "none")
                            .repair(rewrite()),
                    )
                }
                Some(chain) => {
                    let got = table.endpoints(chain);
                    if got != sp.endpoints {
                        reported.push(format!("{}/{}/", sp.namespace, sp.service));
                        out.push(
                            Finding::new(FindingId::KubeProxyNftablesEndpointsMismatch, Severity::Error, n, format!("{}: kube-proxy's nftables chain {chain} leads to other endpoints than the ready ones", sp.name()))
                                .object(svc)
                                .evidence(sp.endpoints.join(", "), got.join(", "))
                                .repair(rewrite()),
                        );
                    }
                }
            }
        }
    }
    let expected = kube_proxy_nft::for_node(&ports, cluster, node, net.map(|n| n.cluster_cidr));
    table_differences(node, &expected, &table.table, &reported, out);
}

/// The differences the Service checks above did not already name.
fn table_differences(
    node: &str,
    expected: &NftTableSpec,
    actual: &NftTableSpec,
    reported: &[String],
    out: &mut Vec<Finding>,
) {
    let n = Some(node);
    let of_reported = |chain: &str| reported.iter().any(|r| chain.contains(&format!("-{r}")));
    let mut other: Vec<String> = Vec::new();
    for d in expected.diff(actual) {
        match &d {
            TableDiff::ChainMissing { chain } | TableDiff::ChainDiffers { chain }
                if !chain.contains('/') =>
            {
                out.push(chain_wrong(
                    FindingId::KubeProxyNftablesChainWrong,
                    node,
                    "kube-proxy",
                    chain,
                    purpose(chain),
                    (expected, actual),
                    rewrite(),
                ));
            }
            TableDiff::ElementsMissing { set, elem }
                if set == "no-endpoint-services" || set == "no-endpoint-nodeports" =>
            {
                let keys: Vec<String> = elem.iter().map(element_key).collect();
                out.push(
                    Finding::new(FindingId::KubeProxyNftablesRejectMissing, Severity::Warning, n, format!("kube-proxy's nftables map {set} lacks {}: connections to these Service ports without endpoints are not refused, clients wait for a timeout", keys.join(", ")))
                        .object(Subject::chain("ip kube-proxy", set.clone()))
                        .evidence(keys.join(", "), "none")
                        .repair(rewrite()),
                );
            }
            // Named by the Service checks above.
            TableDiff::ElementsMissing { set, .. }
                if set == "service-ips" || set == "service-nodeports" => {}
            TableDiff::ChainMissing { chain }
            | TableDiff::ChainDiffers { chain }
            | TableDiff::ChainExtra { chain }
                if of_reported(chain) => {}
            // kube-proxy flushes a chain it no longer needs at once and
            // deletes it a while later: an empty extra chain is its way.
            TableDiff::ChainExtra { chain }
                if actual.chains.get(chain).is_none_or(|c| c.rules.is_empty()) => {}
            _ => other.push(d.to_string()),
        }
    }
    if !other.is_empty() {
        let shown: Vec<&str> = other.iter().take(5).map(String::as_str).collect();
        let more = other.len().saturating_sub(shown.len());
        out.push(
            Finding::new(
                FindingId::KubeProxyNftablesTableDiffers,
                Severity::Warning,
                n,
                format!(
                    "kube-proxy's nftables table differs from what it writes for these objects: {}{}",
                    shown.join("; "),
                    if more > 0 { format!(" (and {more} more)") } else { String::new() }
                ),
            )
            .object(Subject::chain("ip kube-proxy", "*"))
            .evidence("the table kube-proxy writes", other.join("; "))
            .repair(rewrite()),
        );
    }
}

/// flannel in nftables mode: its `table ip flannel-ipv4` against the one
/// it writes for the node's pod CIDR (the forward accepts and the
/// masquerade rules).
pub fn check_flannel(
    cluster: &Cluster,
    node: &str,
    state: &NodeState,
    net: &ClusterNetwork,
    out: &mut Vec<Finding>,
) {
    let n = Some(node);
    let Some(lease) = cluster
        .node(node)
        .and_then(|x| crate::model::flannel::Lease::from_node(x).ok())
    else {
        return; // the lease's own finding says why
    };
    let (family, name) = crate::model::flannel_nft::TABLE;
    let rewrite = || RepairAction::NftablesTable {
        family: family.into(),
        table: name.into(),
        owner: "flannel".into(),
    };
    let expected = crate::model::flannel_nft::table(net.cluster_cidr, lease.pod_cidr);
    let Some(actual) = &state.flannel_nft else {
        out.push(
            Finding::new(FindingId::FlannelNftablesNotProgrammed, Severity::Error, n, format!("no nftables table {family} {name}: flannel (EnableNFTables) has not written its rules here, so pod traffic leaving the cluster is not masqueraded"))
                .object(Subject::NodeState(crate::dataplane::state::UnreadSource::Nftables))
                .evidence(format!("table {family} {name}"), "none")
                .repair(rewrite()),
        );
        return;
    };
    for d in expected.diff(actual) {
        let (TableDiff::ChainMissing { chain } | TableDiff::ChainDiffers { chain }) = &d else {
            continue;
        };
        let what = if chain == "postrtg" {
            "pod traffic leaving the cluster network keeps its pod IP and gets no reply"
        } else {
            "forwarded pod traffic is not accepted where a FORWARD policy drops"
        };
        out.push(chain_wrong(
            FindingId::FlannelNftablesChainWrong,
            node,
            "flannel",
            chain,
            what,
            (&expected, actual),
            rewrite(),
        ));
    }
}

/// The finding that `chain` of the expected table (as `owner` writes it)
/// is missing or other in the actual one, and what that breaks.
fn chain_wrong(
    id: FindingId,
    node: &str,
    owner: &str,
    chain: &str,
    breaks: &str,
    (expected, actual): (&NftTableSpec, &NftTableSpec),
    repair: RepairAction,
) -> Finding {
    let how = match actual.chains.contains_key(chain) {
        false => "missing".to_string(),
        true => format!("not as {owner} writes it"),
    };
    let rules = |t: &NftTableSpec| {
        t.chains
            .get(chain)
            .map(|c| format!("{} rule(s)", c.rules.len()))
    };
    Finding::new(
        id,
        Severity::Error,
        Some(node),
        format!("{owner}'s nftables chain {chain} is {how}: {breaks}"),
    )
    .object(Subject::chain(
        &format!("{} {}", expected.family, expected.name),
        chain,
    ))
    .evidence(
        rules(expected).unwrap_or_default(),
        rules(actual).unwrap_or_else(|| "no chain".into()),
    )
    .repair(repair)
}
