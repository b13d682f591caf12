//! kube-proxy's IPVS mode on a node: a virtual server per ClusterIP:port
//! (and per node address for NodePorts) whose real servers are the ready
//! endpoints, with every ClusterIP bound on kube-ipvs0.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::finding::{Finding, FindingId, Mark, ObjectRef, RepairAction, Severity, Subject};
use crate::dataplane::NodeState;
use crate::model::Cluster;
use crate::model::kube_proxy::{self, IPVS_DEVICE};

/// The node addresses kube-proxy serves NodePorts on: every global IPv4
/// address except those on kube-ipvs0.
fn node_addresses(state: &NodeState) -> Vec<IpAddr> {
    state
        .addrs
        .iter()
        .filter(|a| a.address.is_ipv4() && a.scope == "global" && a.dev != IPVS_DEVICE)
        .map(|a| a.address)
        .collect()
}

fn resync() -> RepairAction {
    RepairAction::Manual { what: "restart kube-proxy on this node (it rebuilds IPVS state on start); check its log for IPVS errors".into() }
}

/// All IPVS findings for `node`.
pub fn check_node(cluster: &Cluster, node: &str, state: &NodeState, out: &mut Vec<Finding>) {
    let n = Some(node);
    if state.link(IPVS_DEVICE).is_none() {
        out.push(
            Finding::new(FindingId::IpvsDeviceMissing, Severity::Error, n, format!("kube-proxy runs in IPVS mode but {IPVS_DEVICE} does not exist: no ClusterIP is served here"))
                .object(Subject::device(IPVS_DEVICE))
                .repair(resync()),
        );
        return;
    }
    let bound: BTreeSet<IpAddr> = state.addrs_of(IPVS_DEVICE).map(|a| a.address).collect();
    let node_ips = node_addresses(state);
    for sp in kube_proxy::service_ports(cluster) {
        let svc = ObjectRef::namespaced("Service", &sp.namespace, &sp.service);
        let want: BTreeSet<String> = sp.endpoints.iter().cloned().collect();
        let mut vips = vec![format!("{}:{}", sp.cluster_ip, sp.port)];
        if let Some(np) = sp.node_port {
            vips.extend(node_ips.iter().map(|ip| format!("{ip}:{np}")));
        }
        if !bound.contains(&IpAddr::V4(sp.cluster_ip)) {
            out.push(
                Finding::new(FindingId::IpvsClusterIpUnbound, Severity::Error, n, format!("ClusterIP {} of {} is not bound on {IPVS_DEVICE}: the node does not accept it", sp.cluster_ip, sp.name()))
                    .object(svc.clone())
                    .evidence(format!("{}/32 on {IPVS_DEVICE}", sp.cluster_ip), "absent")
                    .repair(resync()),
            );
        }
        for vip in vips {
            let vs = Subject::VirtualServer {
                proto: sp.protocol.clone(),
                addr: vip.clone(),
            };
            // A finding about this Service's virtual server.
            let about = |id, summary: String| {
                Finding::new(id, Severity::Error, n, summary)
                    .object(svc.clone())
                    .object(vs.clone())
            };
            match state
                .ipvs
                .iter()
                .find(|v| v.proto == sp.protocol && v.addr == vip)
            {
                None => out.push(
                    about(
                        FindingId::IpvsVirtualServerMissing,
                        format!(
                            "no IPVS virtual server {}/{vip} for {}",
                            sp.protocol,
                            sp.name()
                        ),
                    )
                    .evidence(
                        format!("{} {vip} -> {}", sp.protocol, sp.endpoints.join(" ")),
                        "absent",
                    )
                    .repair(resync()),
                ),
                Some(v) => {
                    let have: BTreeSet<String> = v.reals.iter().map(|r| r.addr.clone()).collect();
                    if have != want {
                        let missing: Vec<&String> = want.difference(&have).collect();
                        let stale: Vec<&String> = have.difference(&want).collect();
                        let mut f = about(
                            FindingId::IpvsRealServersMismatch,
                            format!(
                                "IPVS {}/{vip} real servers do not match {}'s ready endpoints",
                                sp.protocol,
                                sp.name()
                            ),
                        )
                        .evidence(
                            format!("{want:?}"),
                            format!("missing {missing:?} stale {stale:?}"),
                        )
                        .repair(resync());
                        let real = |addr: &String| Subject::RealServer {
                            proto: sp.protocol.clone(),
                            vip: vip.clone(),
                            addr: addr.clone(),
                        };
                        for a in missing {
                            f = f.part(real(a), Mark::Missing);
                        }
                        for a in stale {
                            f = f.part(real(a), Mark::Stale);
                        }
                        out.push(f);
                    }
                }
            }
        }
    }
}
