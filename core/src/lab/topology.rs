//! The lab's shape, computed before anything touches the kernel: node and
//! pod names, addresses, VTEP MACs, namespace and device names. Pure, so the
//! same topology can be recomputed by `lab down` and by tests.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Every namespace the lab makes starts with this, then the lab's name.
pub const NETNS_PREFIX: &str = "kdlab-";
/// The underlay: eth0 of every node, and the outside client.
pub const UNDERLAY: &str = "192.168.56.0/24";
/// The pod network (flannel `Network`).
pub const CLUSTER_CIDR: &str = "10.2.0.0/16";
/// The Service network.
pub const SERVICE_CIDR: &str = "10.1.0.0/16";
/// kube-dns's ClusterIP.
pub const CLUSTER_DNS: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 10);
/// The underlay MTU; pods, cni0 and flannel.1 get 50 less.
pub const UNDERLAY_MTU: u32 = 1500;
/// The outside client's underlay address.
pub const OUTSIDE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 56, 254);
/// The most nodes one underlay /24 holds with room for the client.
pub const MAX_NODES: usize = 200;
/// The most pods of the nginx Deployment per node that fit the /24 layout.
pub const MAX_PODS_PER_NODE: usize = 200;

/// What `lab up` was asked to build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabParams {
    pub name: String,
    pub nodes: usize,
    pub pods_per_node: usize,
}

/// What a pod does in the lab (decides which process, if any, runs in it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PodRole {
    /// test-svc-ns nginx: an HTTP responder answering with the pod's name.
    Nginx,
    /// kube-system coredns: dnsmasq answering cluster.local.
    CoreDns,
    /// nginx-ingress controller: nginx configured from the Ingress objects.
    Ingress,
    /// test-net busybox: a client with no server.
    Busybox,
}

/// One node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabNode {
    pub name: String,
    pub netns: String,
    pub ip: Ipv4Addr,
    pub pod_cidr: Ipv4Net,
    pub vtep_mac: String,
    /// The switch port (in the underlay namespace) eth0 is cabled to.
    pub switch_port: String,
}

/// One pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabPod {
    pub namespace: String,
    pub name: String,
    pub node: String,
    pub ip: Ipv4Addr,
    pub netns: String,
    /// The host end of the pod's veth, on cni0.
    pub host_veth: String,
    pub role: PodRole,
    pub uid: String,
}

/// The whole lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    pub params: LabParams,
    pub underlay_netns: String,
    pub outside_netns: String,
    pub nodes: Vec<LabNode>,
    pub pods: Vec<LabPod>,
}

/// Checks a lab name: lower-case letters and digits only, so that one lab's
/// namespace prefix can never be a prefix of another's.
pub fn validate_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 16
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(Error::usage(
            format!("invalid lab name {name:?}"),
            Some("use 1-16 lower-case letters and digits, e.g. --name seed".to_string()),
        ));
    }
    Ok(())
}

/// `kdlab-<name>-`: the prefix of every namespace of lab `name`.
pub fn netns_prefix(name: &str) -> String {
    format!("{NETNS_PREFIX}{name}-")
}

fn digest(parts: &[&str]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    h.finalize().into()
}

/// A stable, locally administered unicast MAC for a node's flannel.1.
fn vtep_mac(lab: &str, node: &str) -> String {
    let d = digest(&["vtep", lab, node]);
    let mut b = [d[0], d[1], d[2], d[3], d[4], d[5]];
    b[0] = (b[0] & 0xfe) | 0x02;
    crate::dataplane::state::format_mac(&b)
}

fn uid(lab: &str, ns: &str, name: &str) -> String {
    let d = digest(&["uid", lab, ns, name]);
    let h: String = d.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Five characters from the alphabet Kubernetes uses for name suffixes.
fn suffix(seed: &[&str]) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    digest(seed)
        .iter()
        .take(5)
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// The seed cluster's placement (from the course notes): the three nginx
/// replicas, CoreDNS, the ingress controller and busybox, by node index.
const SEED_PODS: [(&str, &str, usize, u8, PodRole); 7] = [
    (
        "test-svc-ns",
        "nginx-56d58c56c7-zl6ms",
        0,
        42,
        PodRole::Nginx,
    ),
    (
        "test-svc-ns",
        "nginx-56d58c56c7-2zp46",
        1,
        117,
        PodRole::Nginx,
    ),
    (
        "test-svc-ns",
        "nginx-56d58c56c7-mr7p9",
        2,
        132,
        PodRole::Nginx,
    ),
    (
        "kube-system",
        "coredns-6d56c8448f-g6m9z",
        0,
        2,
        PodRole::CoreDns,
    ),
    (
        "kube-system",
        "coredns-6d56c8448f-ws7rb",
        1,
        2,
        PodRole::CoreDns,
    ),
    (
        "nginx-ingress",
        "nginx-ingress-75c88594dc-klfqc",
        0,
        6,
        PodRole::Ingress,
    ),
    (
        "test-net",
        "busybox-deployment-5db9ff768-zrlxw",
        2,
        50,
        PodRole::Busybox,
    ),
];

impl Topology {
    /// Computes the lab for `params` (checked: name, 1..=200 nodes, 3 at least
    /// for the seed placement).
    pub fn new(params: LabParams) -> Result<Self> {
        validate_name(&params.name)?;
        if !(3..=MAX_NODES).contains(&params.nodes) {
            return Err(Error::usage(
                format!("--nodes {} is out of range", params.nodes),
                Some(format!("the lab needs 3 to {MAX_NODES} nodes")),
            ));
        }
        if !(1..=MAX_PODS_PER_NODE).contains(&params.pods_per_node) {
            return Err(Error::usage(
                format!("--pods-per-node {} is out of range", params.pods_per_node),
                Some(format!("use 1 to {MAX_PODS_PER_NODE}")),
            ));
        }
        let lab = params.name.as_str();
        let prefix = netns_prefix(lab);
        let nodes: Vec<LabNode> = (0..params.nodes)
            .map(|i| {
                let octet = 10 + i;
                let name = if i == 0 {
                    format!("k8s-master-{octet}")
                } else {
                    format!("k8s-node-{octet}")
                };
                LabNode {
                    netns: format!("{prefix}{name}"),
                    ip: Ipv4Addr::new(192, 168, 56, octet as u8),
                    pod_cidr: Ipv4Net::new(Ipv4Addr::new(10, 2, i as u8, 0), 24)
                        .expect("valid /24"),
                    vtep_mac: vtep_mac(lab, &name),
                    switch_port: format!("port{octet}"),
                    name,
                }
            })
            .collect();

        let mut pods = Vec::new();
        let mut add = |ns: &str, name: String, node: &LabNode, host: u8, role: PodRole| {
            let o = node.pod_cidr.network().octets();
            pods.push(LabPod {
                namespace: ns.to_string(),
                host_veth: format!("veth{}", &hex8(&digest(&[lab, ns, &name]))),
                netns: format!("{prefix}pod-{name}"),
                uid: uid(lab, ns, &name),
                ip: Ipv4Addr::new(o[0], o[1], o[2], host),
                node: node.name.clone(),
                name,
                role,
            });
        };
        for (ns, name, node, host, role) in SEED_PODS {
            add(ns, name.to_string(), &nodes[node], host, role);
        }
        // Further nginx replicas: pods_per_node per node in all, seed ones included.
        let reserved = [2u8, 6, 42, 50, 117, 132];
        for (i, node) in nodes.iter().enumerate() {
            let have = usize::from(i < 3);
            let mut host = 9u8;
            for k in have..params.pods_per_node {
                host = (host + 1..=254)
                    .find(|h| !reserved.contains(h))
                    .expect("fits in /24");
                let name = format!(
                    "nginx-56d58c56c7-{}",
                    suffix(&[lab, &node.name, &k.to_string()])
                );
                add("test-svc-ns", name, node, host, PodRole::Nginx);
            }
        }
        Ok(Topology {
            underlay_netns: format!("{prefix}underlay"),
            outside_netns: format!("{prefix}outside"),
            params,
            nodes,
            pods,
        })
    }

    /// Every namespace the lab creates, underlay first.
    pub fn all_netns(&self) -> Vec<String> {
        let mut v = vec![self.underlay_netns.clone(), self.outside_netns.clone()];
        v.extend(self.nodes.iter().map(|n| n.netns.clone()));
        v.extend(self.pods.iter().map(|p| p.netns.clone()));
        v
    }

    /// The node named `name`, or an error listing the lab's nodes.
    pub fn node(&self, name: &str) -> Result<&LabNode> {
        self.nodes.iter().find(|n| n.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
            Error::usage(
                format!("the lab has no node {name:?}"),
                Some(format!("nodes: {}", names.join(", "))),
            )
        })
    }

    /// Pods on node `name`.
    pub fn pods_on<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a LabPod> + 'a {
        self.pods.iter().filter(move |p| p.node == name)
    }

    /// The pods with `role`.
    pub fn pods_with(&self, role: PodRole) -> impl Iterator<Item = &LabPod> {
        self.pods.iter().filter(move |p| p.role == role)
    }
}

fn hex8(d: &[u8; 32]) -> String {
    d.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> Topology {
        Topology::new(LabParams {
            name: "seed".into(),
            nodes: 3,
            pods_per_node: 1,
        })
        .unwrap()
    }

    #[test]
    fn seed_matches_the_course_notes() {
        let t = seed();
        let names: Vec<_> = t.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["k8s-master-10", "k8s-node-11", "k8s-node-12"]);
        assert_eq!(t.nodes[2].ip.to_string(), "192.168.56.12");
        assert_eq!(t.nodes[1].pod_cidr.to_string(), "10.2.1.0/24");
        let nginx: Vec<_> = t
            .pods_with(PodRole::Nginx)
            .map(|p| p.ip.to_string())
            .collect();
        assert_eq!(nginx, ["10.2.0.42", "10.2.1.117", "10.2.2.132"]);
        assert_eq!(t.pods.len(), 7);
    }

    #[test]
    fn names_are_unique_and_fit_the_kernel() {
        let t = Topology::new(LabParams {
            name: "big".into(),
            nodes: 20,
            pods_per_node: 10,
        })
        .unwrap();
        let mut ips: Vec<_> = t.pods.iter().map(|p| p.ip).collect();
        ips.sort();
        ips.dedup();
        assert_eq!(ips.len(), t.pods.len());
        let mut ns = t.all_netns();
        ns.sort();
        ns.dedup();
        assert_eq!(ns.len(), 2 + 20 + t.pods.len());
        assert!(t.pods.iter().all(|p| p.host_veth.len() <= 15));
        assert_eq!(t.pods_with(PodRole::Nginx).count(), 200);
        assert!(t.nodes.iter().all(|n| {
            let first = u8::from_str_radix(&n.vtep_mac[..2], 16).unwrap();
            first & 1 == 0 && first & 2 == 2
        }));
    }

    #[test]
    fn names_cannot_nest() {
        assert!(validate_name("a-b").is_err());
        assert!(validate_name("").is_err());
        assert!(validate_name("Seed").is_err());
        assert!(validate_name("seed2").is_ok());
    }
}
