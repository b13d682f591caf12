//! What flannel's VXLAN backend programs, mirrored from flannel's
//! `pkg/backend/vxlan`: for every remote node R seen from node L
//!
//! - route `R.podCIDR via R.podCIDR.network dev flannel.1 onlink`
//! - neigh `R.podCIDR.network lladdr R.VtepMAC dev flannel.1 PERMANENT`
//! - FDB   `R.VtepMAC dst R.public-ip dev flannel.1 self permanent`
//!
//! programmed in the order neigh, FDB, route; and locally flannel.1 (VNI 1,
//! UDP 8472, nolearning, `L.podCIDR.network/32`, MTU = underlay - 50) plus
//! the FLANNEL-POSTRTG (nat) and FLANNEL-FWD (filter) chains.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

use crate::dataplane::Mac;
use k8s_openapi::api::core::v1::Node;
use serde::{Deserialize, Serialize};

use crate::dataplane::iptables::Ruleset;

/// The VXLAN device name flannel uses for VNI 1.
pub const VTEP_DEVICE: &str = "flannel.1";
/// The bridge the CNI plugin puts pods on.
pub const BRIDGE_DEVICE: &str = "cni0";
/// flannel's VXLAN UDP port (Linux's historic default, not IANA's 4789).
pub const VXLAN_PORT: u16 = 8472;
/// The VNI flannel uses by default.
pub const VNI: u32 = 1;
/// VXLAN over IPv4 costs 50 bytes: outer Ethernet 14 + IP 20 + UDP 8 + VXLAN 8.
pub const VXLAN_OVERHEAD: u32 = 50;

/// Node annotation keys flannel's kube subnet manager writes.
pub mod annotation {
    pub const BACKEND_DATA: &str = "flannel.alpha.coreos.com/backend-data";
    pub const BACKEND_TYPE: &str = "flannel.alpha.coreos.com/backend-type";
    pub const PUBLIC_IP: &str = "flannel.alpha.coreos.com/public-ip";
    /// A dual-stack node's IPv6 lease (flannel `EnableIPv6`).
    pub const BACKEND_V6_DATA: &str = "flannel.alpha.coreos.com/backend-v6-data";
    pub const PUBLIC_IPV6: &str = "flannel.alpha.coreos.com/public-ipv6";
    pub const KUBE_SUBNET_MANAGER: &str = "flannel.alpha.coreos.com/kube-subnet-manager";
}

/// `backend-data` as flannel serializes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendData {
    #[serde(rename = "VNI")]
    pub vni: u32,
    #[serde(rename = "VtepMAC")]
    pub vtep_mac: String,
}

/// One node's flannel lease: what every other node programs towards it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub node: String,
    pub pod_cidr: Ipv4Net,
    pub public_ip: Ipv4Addr,
    pub vni: u32,
    pub vtep_mac: Mac,
    /// Its IPv6 lease on a dual-stack cluster: read and shown, not checked
    /// (the checks and the lab cover flannel's IPv4 overlay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v6: Option<LeaseV6>,
}

/// flannel's IPv6 lease of a dual-stack node: the IPv6 entry of
/// `spec.podCIDRs`, and flannel's `public-ipv6` and `backend-v6-data`
/// annotations where it wrote them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseV6 {
    pub pod_cidr: Ipv6Net,
    pub public_ip: Option<Ipv6Addr>,
    pub vtep_mac: Option<Mac>,
}

impl LeaseV6 {
    /// The IPv6 lease of `node`, if it has an IPv6 pod CIDR; annotations
    /// that do not parse are left out (they are not checked).
    pub fn from_node(node: &Node) -> Option<LeaseV6> {
        let pod_cidr = node
            .spec
            .as_ref()?
            .pod_cidrs
            .iter()
            .flatten()
            .find_map(|c| c.parse::<Ipv6Net>().ok())?;
        let annotations = node.metadata.annotations.as_ref();
        let get = |key: &str| annotations.and_then(|a| a.get(key));
        Some(LeaseV6 {
            pod_cidr: pod_cidr.trunc(),
            public_ip: get(annotation::PUBLIC_IPV6).and_then(|ip| ip.parse().ok()),
            vtep_mac: get(annotation::BACKEND_V6_DATA)
                .and_then(|d| serde_json::from_str::<BackendDataV6>(d).ok())
                .and_then(|d| d.vtep_mac?.parse().ok()),
        })
    }
}

/// `backend-v6-data`: flannel writes `null` for backends without one.
#[derive(Deserialize)]
struct BackendDataV6 {
    #[serde(rename = "VtepMAC")]
    vtep_mac: Option<String>,
}

/// Why a node has no usable lease (each is a finding for `check`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    #[error("node {0} has no spec.podCIDR")]
    NoPodCidr(String),
    #[error("node {0} has an unparsable spec.podCIDR {1:?}")]
    BadPodCidr(String, String),
    /// An IPv6-only node: flannel's IPv4 overlay does not reach it.
    #[error(
        "node {0}'s pod network is IPv6 only ({1}): knetdoctor checks flannel's IPv4 VXLAN overlay, so this node's lease is shown and not checked"
    )]
    Ipv6Only(String, Ipv6Net),
    #[error("node {node} lacks annotation {key}")]
    MissingAnnotation { node: String, key: &'static str },
    #[error("node {node}: annotation {key} is malformed: {why}")]
    BadAnnotation {
        node: String,
        key: &'static str,
        why: String,
    },
}

impl Lease {
    /// Reads the lease from a Node's `spec.podCIDR` and flannel annotations.
    pub fn from_node(node: &Node) -> Result<Self, LeaseError> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let cidr_text = node
            .spec
            .as_ref()
            .and_then(|s| s.pod_cidr.clone())
            .ok_or_else(|| LeaseError::NoPodCidr(name.clone()))?;
        if let Ok(v6) = cidr_text.parse::<Ipv6Net>() {
            return Err(LeaseError::Ipv6Only(name, v6.trunc()));
        }
        let pod_cidr: Ipv4Net = cidr_text
            .parse()
            .map_err(|_| LeaseError::BadPodCidr(name.clone(), cidr_text.clone()))?;
        let annotations = node.metadata.annotations.clone().unwrap_or_default();
        let get = |key: &'static str| {
            annotations
                .get(key)
                .cloned()
                .ok_or_else(|| LeaseError::MissingAnnotation {
                    node: name.clone(),
                    key,
                })
        };
        let data_text = get(annotation::BACKEND_DATA)?;
        let data: BackendData =
            serde_json::from_str(&data_text).map_err(|e| LeaseError::BadAnnotation {
                node: name.clone(),
                key: annotation::BACKEND_DATA,
                why: e.to_string(),
            })?;
        let ip_text = get(annotation::PUBLIC_IP)?;
        let public_ip = ip_text.parse().map_err(|_| LeaseError::BadAnnotation {
            node: name.clone(),
            key: annotation::PUBLIC_IP,
            why: format!("{ip_text:?} is not an IPv4 address"),
        })?;
        let vtep_mac = data
            .vtep_mac
            .parse()
            .map_err(|why| LeaseError::BadAnnotation {
                node: name.clone(),
                key: annotation::BACKEND_DATA,
                why,
            })?;
        Ok(Lease {
            node: name,
            pod_cidr: pod_cidr.trunc(),
            public_ip,
            vni: data.vni,
            vtep_mac,
            v6: LeaseV6::from_node(node),
        })
    }

    /// The address flannel puts on flannel.1 and uses as the peer gateway:
    /// the pod CIDR's network address.
    pub fn gateway(&self) -> Ipv4Addr {
        self.pod_cidr.network()
    }

    /// The cni0 address: the first host of the pod CIDR.
    pub fn bridge_address(&self) -> Ipv4Net {
        let first = u32::from(self.pod_cidr.network()) + 1;
        Ipv4Net::new(Ipv4Addr::from(first), self.pod_cidr.prefix_len())
            .expect("prefix from a valid net")
    }
}

/// The three entries node L holds for one remote node, in flannel's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerEntries {
    pub peer: String,
    /// route dst; gateway = `neigh_ip`, dev flannel.1, onlink.
    pub route_dst: Ipv4Net,
    pub neigh_ip: Ipv4Addr,
    pub vtep_mac: Mac,
    /// FDB dst.
    pub public_ip: Ipv4Addr,
}

/// What `local` must hold for every other lease.
pub fn peer_entries<'a>(
    local: &str,
    leases: impl IntoIterator<Item = &'a Lease>,
) -> Vec<PeerEntries> {
    leases
        .into_iter()
        .filter(|l| l.node != local)
        .map(|l| PeerEntries {
            peer: l.node.clone(),
            route_dst: l.pod_cidr,
            neigh_ip: l.gateway(),
            vtep_mac: l.vtep_mac,
            public_ip: l.public_ip,
        })
        .collect()
}

/// flannel.1's MTU for a given underlay MTU.
pub fn vtep_mtu(underlay_mtu: u32) -> u32 {
    underlay_mtu.saturating_sub(VXLAN_OVERHEAD)
}

const MASQ_COMMENT: &str = "-m comment --comment \"flanneld masq\"";
const FWD_COMMENT: &str = "-m comment --comment \"flanneld forward\"";

/// Appends flannel's FLANNEL-POSTRTG (nat) and FLANNEL-FWD (filter) chains
/// and their jumps, as flannel's iptables traffic manager writes them.
pub fn program_iptables(rs: &mut Ruleset, cluster_cidr: Ipv4Net, local_pod_cidr: Ipv4Net) {
    let nat = rs.table_mut("nat");
    nat.append("POSTROUTING", format!("{MASQ_COMMENT} -j FLANNEL-POSTRTG"));
    let c = "FLANNEL-POSTRTG";
    nat.append(
        c,
        format!("-m mark --mark 0x4000/0x4000 {MASQ_COMMENT} -j RETURN"),
    );
    nat.append(
        c,
        format!("-s {local_pod_cidr} -d {cluster_cidr} {MASQ_COMMENT} -j RETURN"),
    );
    nat.append(
        c,
        format!("-s {cluster_cidr} -d {local_pod_cidr} {MASQ_COMMENT} -j RETURN"),
    );
    nat.append(
        c,
        format!("! -s {cluster_cidr} -d {local_pod_cidr} {MASQ_COMMENT} -j RETURN"),
    );
    nat.append(
        c,
        format!("-s {cluster_cidr} ! -d 224.0.0.0/4 {MASQ_COMMENT} -j MASQUERADE --random-fully"),
    );
    nat.append(
        c,
        format!(
            "! -s {cluster_cidr} -d {cluster_cidr} {MASQ_COMMENT} -j MASQUERADE --random-fully"
        ),
    );
    let filter = rs.table_mut("filter");
    filter.append("FORWARD", format!("{FWD_COMMENT} -j FLANNEL-FWD"));
    filter.append(
        "FLANNEL-FWD",
        format!("-s {cluster_cidr} {FWD_COMMENT} -j ACCEPT"),
    );
    filter.append(
        "FLANNEL-FWD",
        format!("-d {cluster_cidr} {FWD_COMMENT} -j ACCEPT"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn node(name: &str, cidr: &str, ip: &str, mac: &str) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                annotations: Some(
                    [
                        (
                            annotation::BACKEND_DATA.to_string(),
                            format!("{{\"VNI\":1,\"VtepMAC\":\"{mac}\"}}"),
                        ),
                        (annotation::PUBLIC_IP.to_string(), ip.to_string()),
                    ]
                    .into_iter()
                    .collect(),
                ),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                pod_cidr: Some(cidr.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn peers_skip_self_and_use_network_address_as_gateway() {
        let leases: Vec<Lease> = [
            node("a", "10.2.0.0/24", "192.168.56.10", "AA:00:00:00:00:01"),
            node("b", "10.2.1.0/24", "192.168.56.11", "aa:00:00:00:00:02"),
        ]
        .iter()
        .map(|n| Lease::from_node(n).unwrap())
        .collect();
        let p = peer_entries("a", &leases);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].neigh_ip.to_string(), "10.2.1.0");
        assert_eq!(p[0].public_ip.to_string(), "192.168.56.11");
        assert_eq!(leases[0].vtep_mac.to_string(), "aa:00:00:00:00:01");
        assert_eq!(leases[1].bridge_address().to_string(), "10.2.1.1/24");
    }

    #[test]
    fn missing_annotation_is_named() {
        let mut n = node("a", "10.2.0.0/24", "192.168.56.10", "aa:00:00:00:00:01");
        n.metadata
            .annotations
            .as_mut()
            .unwrap()
            .remove(annotation::PUBLIC_IP);
        assert_eq!(
            Lease::from_node(&n),
            Err(LeaseError::MissingAnnotation {
                node: "a".into(),
                key: annotation::PUBLIC_IP
            })
        );
    }

    #[test]
    fn vtep_mtu_subtracts_vxlan_overhead() {
        assert_eq!(vtep_mtu(1500), 1450);
    }
}
