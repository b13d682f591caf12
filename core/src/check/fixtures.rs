//! The seed cluster (the lab's topology and objects) with the node state
//! captured from the seed lab's k8s-node-12, healthy, and the same node in
//! IPVS mode: what the verdict tests (here and in the application) judge.

use crate::dataplane::NodeState;
use crate::lab::objects;
use crate::lab::topology::{LabParams, Topology};
use crate::model::Cluster;

/// The seed cluster and k8s-node-12's state as the lab reads it.
pub fn seed() -> (Cluster, NodeState) {
    let topo = Topology::new(LabParams {
        name: "seed".into(),
        nodes: 3,
        pods_per_node: 1,
    })
    .unwrap();
    let cluster = objects::cluster(&topo, &|_| true);
    let state: NodeState = serde_json::from_str(include_str!(
        "../../../tests/fixtures/nodestate/seed-k8s-node-12.json"
    ))
    .unwrap();
    (cluster, state)
}

/// The seed cluster with kube-proxy in IPVS mode, and k8s-node-12 with
/// kube-ipvs0 and the virtual servers `ipvsadm -Ln` printed.
pub fn ipvs_seed() -> (Cluster, NodeState) {
    use crate::dataplane::state::{Addr, Link};
    let (mut c, mut s) = seed();
    let cm = c
        .config_maps
        .iter_mut()
        .find(|m| m.metadata.name.as_deref() == Some("kube-proxy"))
        .unwrap();
    let conf =
        cm.data.as_ref().unwrap()["config.conf"].replace("mode: \"iptables\"", "mode: \"ipvs\"");
    cm.data.as_mut().unwrap().insert("config.conf".into(), conf);
    s.links.push(Link {
        ifindex: 99,
        name: "kube-ipvs0".into(),
        kind: Some("dummy".into()),
        mtu: 1500,
        mac: None,
        up: false,
        lower_up: false,
        operstate: "DOWN".into(),
        master: None,
        link_ifindex: None,
        link_netnsid: None,
        vxlan: None,
        bridge_port: None,
    });
    for ip in ["10.1.0.1", "10.1.0.10", "10.1.59.153", "10.1.61.17"] {
        s.addrs.push(Addr {
            ifindex: 99,
            dev: "kube-ipvs0".into(),
            address: ip.parse().unwrap(),
            prefix_len: 32,
            scope: "global".into(),
        });
    }
    s.ipvs = crate::dataplane::ipvs::parse_list(include_str!(
        "../../../tests/fixtures/ipvs/seed-node-12.ipvsadm-Ln.txt"
    ))
    .unwrap()
    .into();
    (c, s)
}
