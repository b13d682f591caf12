//! `lab break FAULT`: one realistic fault at a time, each undone exactly by
//! `lab heal`. Kernel faults are applied with iproute2 and recorded with
//! their undo; iptables and cluster-object faults are transformations of
//! what the lab renders, so healing is re-rendering without them.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::topology::{LabNode, PodRole, Topology};
use crate::model::Ruleset;
use crate::model::flannel::VTEP_DEVICE;
use crate::model::kube_proxy::ServicePort;

/// A fault the lab can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    RouteMissing,
    RouteWrongGw,
    NeighMissing,
    NeighWrongMac,
    FdbMissing,
    FdbStaleDst,
    VtepDown,
    VtepMtu,
    Cni0AddrWrong,
    IpForwardOff,
    ForwardDrop,
    PodVethDown,
    SvcChainMissing,
    SepStale,
    NodeportMissing,
    MasqMissing,
    DnsDown,
    IngressBackendPort,
}

/// Where a fault lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// One node's dataplane, towards one peer node.
    Peer,
    /// One node's dataplane.
    Node,
    /// The cluster (objects and every node's view of them).
    Cluster,
}

/// The MTU vtep-mtu sets on flannel.1 (below the pods' 1450).
pub const BROKEN_VTEP_MTU: u32 = 1400;
/// The underlay address fdb-stale-dst points at: nobody lives there.
pub const STALE_VTEP_DST: Ipv4Addr = Ipv4Addr::new(192, 168, 56, 253);
/// The wrong MAC neigh-wrong-mac installs.
pub const WRONG_VTEP_MAC: &str = "02:de:ad:be:ef:01";
/// The Service port ingress-backend-port points the Ingress at.
pub const WRONG_INGRESS_PORT: i32 = 8080;

impl Fault {
    /// Every fault, in `--list` order (the declaration order).
    pub fn all() -> &'static [Fault] {
        &[
            Fault::RouteMissing,
            Fault::RouteWrongGw,
            Fault::NeighMissing,
            Fault::NeighWrongMac,
            Fault::FdbMissing,
            Fault::FdbStaleDst,
            Fault::VtepDown,
            Fault::VtepMtu,
            Fault::Cni0AddrWrong,
            Fault::IpForwardOff,
            Fault::ForwardDrop,
            Fault::PodVethDown,
            Fault::SvcChainMissing,
            Fault::SepStale,
            Fault::NodeportMissing,
            Fault::MasqMissing,
            Fault::DnsDown,
            Fault::IngressBackendPort,
        ]
    }

    /// The kebab-case name used on the command line (and in JSON).
    pub fn name(self) -> &'static str {
        match self {
            Fault::RouteMissing => "route-missing",
            Fault::RouteWrongGw => "route-wrong-gw",
            Fault::NeighMissing => "neigh-missing",
            Fault::NeighWrongMac => "neigh-wrong-mac",
            Fault::FdbMissing => "fdb-missing",
            Fault::FdbStaleDst => "fdb-stale-dst",
            Fault::VtepDown => "vtep-down",
            Fault::VtepMtu => "vtep-mtu",
            Fault::Cni0AddrWrong => "cni0-addr-wrong",
            Fault::IpForwardOff => "ip-forward-off",
            Fault::ForwardDrop => "forward-drop",
            Fault::PodVethDown => "pod-veth-down",
            Fault::SvcChainMissing => "svc-chain-missing",
            Fault::SepStale => "sep-stale",
            Fault::NodeportMissing => "nodeport-missing",
            Fault::MasqMissing => "masq-missing",
            Fault::DnsDown => "dns-down",
            Fault::IngressBackendPort => "ingress-backend-port",
        }
    }

    /// Where the fault lands.
    pub fn scope(self) -> Scope {
        use Fault::*;
        match self {
            RouteMissing | RouteWrongGw | NeighMissing | NeighWrongMac | FdbMissing
            | FdbStaleDst | SepStale => Scope::Peer,
            DnsDown | IngressBackendPort => Scope::Cluster,
            _ => Scope::Node,
        }
    }

    /// One line on what the fault does and what it breaks.
    pub fn describe(self) -> &'static str {
        use Fault::*;
        match self {
            RouteMissing => {
                "deletes the flannel.1 route to the peer's pod CIDR: pods on NODE cannot reach pods on PEER"
            }
            RouteWrongGw => {
                "points the route to the peer's pod CIDR at .1 instead of .0 (no neigh for it): NODE -> PEER pods fail"
            }
            NeighMissing => {
                "deletes the PERMANENT neigh for the peer's VTEP gateway: NODE -> PEER pods fail"
            }
            NeighWrongMac => {
                "gives the peer's VTEP gateway a MAC no node owns: NODE -> PEER pods fail"
            }
            FdbMissing => {
                "deletes the FDB entry of the peer's VtepMAC: NODE cannot encapsulate towards PEER"
            }
            FdbStaleDst => {
                "points the peer's FDB entry at 192.168.56.253, as if PEER had moved: NODE -> PEER pods fail"
            }
            VtepDown => {
                "sets flannel.1 down on NODE (the kernel drops its routes and neigh): no cross-node traffic for NODE"
            }
            VtepMtu => {
                "sets flannel.1's MTU to 1400, below the pods' 1450: full-size packets from NODE's pods to other nodes fail"
            }
            Cni0AddrWrong => {
                "replaces cni0's .1 address with .254: NODE's pods lose their gateway (same-node traffic still works)"
            }
            IpForwardOff => {
                "sets net.ipv4.ip_forward=0 on NODE: nothing is routed to or from NODE's pods"
            }
            ForwardDrop => {
                "FORWARD policy DROP without the FLANNEL-FWD accept rules on NODE: new forwarded flows are dropped"
            }
            PodVethDown => {
                "sets the host end of NODE's nginx pod veth down: that pod is unreachable"
            }
            SvcChainMissing => {
                "removes linux0224-nginx's KUBE-SVC chain on NODE: its ClusterIP fails from NODE's pods"
            }
            SepStale => {
                "swaps PEER's nginx endpoint chain on NODE for one that DNATs to a dead pod IP: some ClusterIP requests fail"
            }
            NodeportMissing => {
                "removes the KUBE-NODEPORTS rule for 30005 on NODE: NODE:30005 fails from outside"
            }
            MasqMissing => {
                "removes flannel's FLANNEL-POSTRTG masquerade on NODE: its pods cannot reach the outside client"
            }
            DnsDown => {
                "stops dnsmasq in both CoreDNS pods (they turn NotReady, kube-proxy rejects kube-dns): DNS fails"
            }
            IngressBackendPort => {
                "points the Ingress at linux0224-nginx:8080, a port the Service lacks: the ingress answers 503"
            }
        }
    }

    /// Whether the fault is applied by re-rendering iptables.
    /// Faults in kube-proxy's own chains.
    pub fn is_kube_proxy(self) -> bool {
        use Fault::*;
        matches!(self, SvcChainMissing | SepStale | NodeportMissing)
    }

    pub fn is_iptables(self) -> bool {
        use Fault::*;
        matches!(
            self,
            ForwardDrop | SvcChainMissing | SepStale | NodeportMissing | MasqMissing
        )
    }
}

/// An injected fault and how to take it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveFault {
    pub fault: Fault,
    pub node: Option<String>,
    pub peer: Option<String>,
    /// What was done, in words.
    pub detail: String,
    /// `ip -batch` lines (in the node's namespace) that undo it.
    pub undo_ip: Vec<String>,
    /// `bridge -batch` lines that undo it.
    pub undo_bridge: Vec<String>,
    /// Sysctls to set back.
    pub undo_sysctl: Vec<(String, String)>,
    /// The node's rules before the fault, for a fault in flannel's chains on
    /// a lab whose rules are not knetdoctor's to render (`--control-plane`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules_before: Option<String>,
}

/// The kernel changes that inject a fault: `ip` and `bridge` batch lines and
/// sysctls for the node, plus the matching undo.
#[derive(Debug, Default)]
pub struct KernelChange {
    pub ip: Vec<String>,
    pub bridge: Vec<String>,
    pub sysctl: Vec<(String, String)>,
    pub undo_ip: Vec<String>,
    pub undo_bridge: Vec<String>,
    pub undo_sysctl: Vec<(String, String)>,
    pub detail: String,
    /// Flush the neighbour caches of the node's pods, so a changed gateway
    /// address takes effect now rather than when cached entries expire.
    pub flush_pod_neigh: bool,
}

fn route_line(peer: &LabNode) -> String {
    let gw = peer.pod_cidr.network();
    format!(
        "route replace {} via {gw} dev {VTEP_DEVICE} onlink",
        peer.pod_cidr
    )
}

fn neigh_line(peer: &LabNode) -> String {
    format!(
        "neigh replace {} lladdr {} dev {VTEP_DEVICE} nud permanent",
        peer.pod_cidr.network(),
        peer.vtep_mac
    )
}

fn fdb_line(peer: &LabNode) -> String {
    format!(
        "fdb replace {} dev {VTEP_DEVICE} dst {} self permanent",
        peer.vtep_mac, peer.ip
    )
}

/// The kernel side of `fault` on `node` towards `peer` (empty for faults
/// that live in iptables or the cluster objects).
pub fn kernel_change(
    fault: Fault,
    topo: &Topology,
    node: &LabNode,
    peer: &LabNode,
) -> KernelChange {
    use Fault::*;
    let mut k = KernelChange::default();
    let gw = peer.pod_cidr.network();
    match fault {
        RouteMissing => {
            k.ip.push(format!(
                "route del {} via {gw} dev {VTEP_DEVICE} onlink",
                peer.pod_cidr
            ));
            k.undo_ip.push(route_line(peer));
            k.detail = format!("deleted route {} via {gw} dev {VTEP_DEVICE}", peer.pod_cidr);
        }
        RouteWrongGw => {
            let wrong = Ipv4Addr::from(u32::from(gw) + 1);
            k.ip.push(format!(
                "route replace {} via {wrong} dev {VTEP_DEVICE} onlink",
                peer.pod_cidr
            ));
            k.undo_ip.push(route_line(peer));
            k.detail = format!("route {} now via {wrong} (should be {gw})", peer.pod_cidr);
        }
        NeighMissing => {
            k.ip.push(format!("neigh del {gw} dev {VTEP_DEVICE}"));
            k.undo_ip.push(neigh_line(peer));
            k.detail = format!("deleted neigh {gw} lladdr {}", peer.vtep_mac);
        }
        NeighWrongMac => {
            k.ip.push(format!(
                "neigh replace {gw} lladdr {WRONG_VTEP_MAC} dev {VTEP_DEVICE} nud permanent"
            ));
            k.undo_ip.push(neigh_line(peer));
            k.detail = format!(
                "neigh {gw} now {WRONG_VTEP_MAC} (should be {})",
                peer.vtep_mac
            );
        }
        FdbMissing => {
            k.bridge.push(format!(
                "fdb del {} dev {VTEP_DEVICE} dst {} self",
                peer.vtep_mac, peer.ip
            ));
            k.undo_bridge.push(fdb_line(peer));
            k.detail = format!("deleted fdb {} dst {}", peer.vtep_mac, peer.ip);
        }
        FdbStaleDst => {
            k.bridge.push(format!(
                "fdb replace {} dev {VTEP_DEVICE} dst {STALE_VTEP_DST} self permanent",
                peer.vtep_mac
            ));
            k.undo_bridge.push(fdb_line(peer));
            k.detail = format!(
                "fdb {} now dst {STALE_VTEP_DST} (should be {})",
                peer.vtep_mac, peer.ip
            );
        }
        VtepDown => {
            k.ip.push(format!("link set {VTEP_DEVICE} down"));
            k.undo_ip.push(format!("link set {VTEP_DEVICE} up"));
            // Taking the device down flushes its routes and neighbours.
            for p in topo.nodes.iter().filter(|p| p.name != node.name) {
                k.undo_ip.push(neigh_line(p));
                k.undo_ip.push(route_line(p));
            }
            k.detail = format!("{VTEP_DEVICE} down");
        }
        VtepMtu => {
            k.ip.push(format!("link set {VTEP_DEVICE} mtu {BROKEN_VTEP_MTU}"));
            k.undo_ip.push(format!(
                "link set {VTEP_DEVICE} mtu {}",
                crate::model::flannel::vtep_mtu(super::topology::UNDERLAY_MTU)
            ));
            k.detail = format!("{VTEP_DEVICE} mtu {BROKEN_VTEP_MTU}");
        }
        Cni0AddrWrong => {
            let good = crate::model::flannel::Lease {
                node: node.name.clone(),
                pod_cidr: node.pod_cidr,
                public_ip: node.ip,
                vni: 1,
                vtep_mac: node.vtep_mac.parse().unwrap_or_default(),
                v6: None,
            }
            .bridge_address();
            let o = node.pod_cidr.network().octets();
            let wrong = format!(
                "{}.{}.{}.254/{}",
                o[0],
                o[1],
                o[2],
                node.pod_cidr.prefix_len()
            );
            k.ip.push(format!("addr del {good} dev cni0"));
            k.ip.push(format!("addr add {wrong} dev cni0"));
            k.undo_ip.push(format!("addr del {wrong} dev cni0"));
            k.undo_ip.push(format!("addr add {good} dev cni0"));
            k.detail = format!("cni0 has {wrong} instead of {good}");
            k.flush_pod_neigh = true;
        }
        IpForwardOff => {
            k.sysctl.push(("net.ipv4.ip_forward".into(), "0".into()));
            k.undo_sysctl
                .push(("net.ipv4.ip_forward".into(), "1".into()));
            k.detail = "net.ipv4.ip_forward = 0".into();
        }
        PodVethDown => {
            if let Some(pod) = topo.pods_on(&node.name).find(|p| p.role == PodRole::Nginx) {
                k.ip.push(format!("link set {} down", pod.host_veth));
                k.undo_ip.push(format!("link set {} up", pod.host_veth));
                k.detail = format!(
                    "{} (pod {}/{}) down",
                    pod.host_veth, pod.namespace, pod.name
                );
            }
        }
        ForwardDrop => k.detail = "FORWARD policy DROP, FLANNEL-FWD removed".into(),
        SvcChainMissing => {
            k.detail = "KUBE-SVC chain of test-svc-ns/linux0224-nginx removed".into()
        }
        SepStale => {
            k.detail = format!(
                "endpoint chain for {}'s nginx pod replaced by one for a dead IP",
                peer.name
            )
        }
        NodeportMissing => k.detail = "KUBE-NODEPORTS rule for 30005 removed".into(),
        MasqMissing => k.detail = "FLANNEL-POSTRTG removed".into(),
        DnsDown => k.detail = "dnsmasq stopped in every CoreDNS pod".into(),
        IngressBackendPort => k.detail = format!("test-ingress backend port {WRONG_INGRESS_PORT}"),
    }
    k
}

/// The dead endpoint sep-stale points at: `.250` in PEER's pod CIDR.
pub fn dead_endpoint(peer: &LabNode) -> String {
    let o = peer.pod_cidr.network().octets();
    format!("{}.{}.{}.250:80", o[0], o[1], o[2])
}

/// Applies an iptables fault to the node's rendered ruleset.
pub fn transform_ruleset(
    rs: &mut Ruleset,
    fault: Fault,
    ports: &[ServicePort],
    topo: &Topology,
    peer: Option<&str>,
) {
    let nginx = ports
        .iter()
        .find(|p| p.namespace == "test-svc-ns" && p.service == "linux0224-nginx");
    match fault {
        Fault::ForwardDrop => {
            let filter = rs.table_mut("filter");
            filter.remove_chain("FLANNEL-FWD");
            filter.chain_mut("FORWARD").policy = Some("DROP".into());
        }
        Fault::MasqMissing => rs.table_mut("nat").remove_chain("FLANNEL-POSTRTG"),
        Fault::SvcChainMissing => {
            if let Some(sp) = nginx {
                rs.table_mut("nat").remove_chain(&sp.svc_chain());
            }
        }
        Fault::NodeportMissing => {
            rs.table_mut("nat")
                .chain_mut("KUBE-NODEPORTS")
                .rules
                .retain(|r| !r.contains(&format!("--dport {}", super::objects::NODE_PORT)));
        }
        Fault::SepStale => {
            let (Some(sp), Some(peer)) = (
                nginx,
                peer.and_then(|p| topo.nodes.iter().find(|n| n.name == p)),
            ) else {
                return;
            };
            let Some(live) = sp.endpoints.iter().find(|e| {
                e.split(':')
                    .next()
                    .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
                    .is_some_and(|ip| peer.pod_cidr.contains(&ip))
            }) else {
                return;
            };
            let dead = dead_endpoint(peer);
            let (old, new) = (sp.sep_chain(live), sp.sep_chain(&dead));
            let live_ip = live.split(':').next().unwrap_or_default().to_string();
            let dead_ip = dead.split(':').next().unwrap_or_default().to_string();
            let nat = rs.table_mut("nat");
            let live_32 = format!("{live_ip}/32");
            let dead_32 = format!("{dead_ip}/32");
            for (name, rules) in nat.rules_mut() {
                let is_old = name == old;
                for r in rules.iter_mut() {
                    if is_old {
                        *r = r.replace(live, &dead).replace(&live_32, &dead_32);
                    } else if r.ends_with(&format!("-j {old}")) {
                        *r = r.replace(&old, &new).replace(live, &dead);
                    }
                }
            }
            nat.rename_chain(&old, &new);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::IptablesBackend;
    use crate::lab::control_plane::K8sVersion;

    /// The names the command line takes are the names JSON and the state
    /// file carry: one vocabulary, written once per enum.
    #[test]
    fn command_line_names_are_the_serialized_names() {
        let json = |v: serde_json::Value| v.as_str().unwrap().to_string();
        for f in Fault::all() {
            assert_eq!(json(serde_json::to_value(f).unwrap()), f.name());
        }
        assert_eq!(Fault::all().len(), 18);
        for b in IptablesBackend::ALL {
            assert_eq!(json(serde_json::to_value(b).unwrap()), b.name());
        }
        for v in K8sVersion::ALL {
            assert_eq!(json(serde_json::to_value(v).unwrap()), v.name());
        }
    }
}
