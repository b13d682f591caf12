//! Synthetic clusters for benchmarks: any number of nodes, pods and
//! Services, shaped like a real flannel + kube-proxy cluster, and the node
//! state flannel and kube-proxy would leave on one of its nodes. Pure and
//! deterministic.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ContainerPort, Node, NodeSpec, Pod, PodCondition, PodSpec, PodStatus,
    Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::dataplane::NodeState;
use crate::dataplane::state::{
    Addr, Attachment, BridgePort, FdbEntry, Link, Neigh, Route, Sysctls, Vxlan,
};
use crate::model::flannel::{self, Lease, annotation};
use crate::model::{Cluster, ClusterNetwork, expect};

/// The size of a synthetic cluster.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    pub nodes: usize,
    pub pods: usize,
    pub services: usize,
    pub endpoints_per_service: usize,
}

impl Size {
    /// The scale: 5,000 nodes, 150,000 pods, 10,000 Services with 3 endpoints.
    pub const LARGE: Size = Size {
        nodes: 5000,
        pods: 150_000,
        services: 10_000,
        endpoints_per_service: 3,
    };
}

/// The pod network: 100.64.0.0/10 holds 16,384 /24 node subnets.
pub const CLUSTER_CIDR: &str = "100.64.0.0/10";

fn meta(ns: Option<&str>, name: String, labels: &[(&str, String)]) -> ObjectMeta {
    ObjectMeta {
        namespace: ns.map(str::to_string),
        name: Some(name),
        labels: (!labels.is_empty()).then(|| {
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect()
        }),
        ..Default::default()
    }
}

fn node_name(i: usize) -> String {
    format!("node-{i:05}")
}

fn pod_cidr(i: usize) -> Ipv4Net {
    Ipv4Net::new(
        Ipv4Addr::new(100, 64 + (i / 256) as u8, (i % 256) as u8, 0),
        24,
    )
    .expect("valid")
}

fn public_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, (i / 250) as u8, (i % 250 + 1) as u8)
}

fn vtep_mac(i: usize) -> String {
    format!(
        "02:00:00:{:02x}:{:02x}:{:02x}",
        (i >> 16) & 0xff,
        (i >> 8) & 0xff,
        i & 0xff
    )
}

fn pod_ip(node: usize, slot: usize) -> Ipv4Addr {
    let net = pod_cidr(node).network().octets();
    Ipv4Addr::new(net[0], net[1], net[2], (slot + 2) as u8)
}

/// Builds the cluster. Pods are spread round-robin over nodes; the first
/// `services * endpoints_per_service` pods back the Services.
pub fn cluster(size: Size) -> Cluster {
    let mut c = Cluster::default();
    for i in 0..size.nodes {
        let mut m = meta(None, node_name(i), &[]);
        m.annotations = Some(
            [
                (
                    annotation::BACKEND_DATA,
                    format!("{{\"VNI\":1,\"VtepMAC\":\"{}\"}}", vtep_mac(i)),
                ),
                (annotation::BACKEND_TYPE, "vxlan".to_string()),
                (annotation::PUBLIC_IP, public_ip(i).to_string()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        );
        c.nodes.push(Node {
            metadata: m,
            spec: Some(NodeSpec {
                pod_cidr: Some(pod_cidr(i).to_string()),
                ..Default::default()
            }),
            status: None,
        });
    }
    let backing = size.services * size.endpoints_per_service;
    let per_node = size.pods.div_ceil(size.nodes.max(1));
    assert!(per_node <= 250, "at most 250 pods per node fit a /24");
    for p in 0..size.pods {
        let node = p % size.nodes;
        let slot = p / size.nodes;
        // A Service's backing pods share its namespace.
        let ns = format!(
            "ns-{:03}",
            if p < backing {
                p / size.endpoints_per_service
            } else {
                p
            } % 100
        );
        let app = if p < backing {
            format!("svc-{:05}", p / size.endpoints_per_service)
        } else {
            format!("worker-{}", p % 997)
        };
        c.pods.push(Pod {
            metadata: meta(Some(&ns), format!("pod-{p:06}"), &[("app", app)]),
            spec: Some(PodSpec {
                node_name: Some(node_name(node)),
                containers: vec![Container {
                    name: "app".into(),
                    ports: Some(vec![ContainerPort {
                        container_port: 8080,
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                pod_ip: Some(pod_ip(node, slot).to_string()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        });
    }
    for s in 0..size.services {
        // Service s is backed by pods s*k .. s*k+k-1, all in namespace ns-(s % 100).
        let first = s * size.endpoints_per_service;
        let ns = format!("ns-{:03}", s % 100);
        let name = format!("svc-{s:05}");
        let ip = Ipv4Addr::new(
            10,
            96 + (s / 65536) as u8,
            ((s / 256) % 256) as u8,
            (s % 256) as u8,
        );
        let node_port = (s % 10 == 0).then(|| 30000 + (s / 10 % 2768) as i32);
        c.services.push(Service {
            metadata: meta(Some(&ns), name.clone(), &[]),
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip.to_string()),
                type_: Some(
                    if node_port.is_some() {
                        "NodePort"
                    } else {
                        "ClusterIP"
                    }
                    .into(),
                ),
                selector: Some(BTreeMap::from([("app".to_string(), name.clone())])),
                ports: Some(vec![ServicePort {
                    port: 80,
                    protocol: Some("TCP".into()),
                    target_port: Some(IntOrString::Int(8080)),
                    node_port,
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            status: None,
        });
        let endpoints = (first..first + size.endpoints_per_service)
            .map(|p| Endpoint {
                addresses: vec![pod_ip(p % size.nodes, p / size.nodes).to_string()],
                conditions: Some(EndpointConditions {
                    ready: Some(true),
                    serving: Some(true),
                    terminating: Some(false),
                }),
                node_name: Some(node_name(p % size.nodes)),
                ..Default::default()
            })
            .collect();
        c.endpoint_slices.push(EndpointSlice {
            metadata: meta(
                Some(&ns),
                format!("{name}-abcde"),
                &[("kubernetes.io/service-name", name)],
            ),
            address_type: "IPv4".into(),
            endpoints,
            ports: Some(vec![EndpointPort {
                name: Some(String::new()),
                port: Some(8080),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
        });
    }
    c.config_maps.push(ConfigMap {
        metadata: meta(Some("kube-flannel"), "kube-flannel-cfg".into(), &[]),
        data: Some(BTreeMap::from([(
            "net-conf.json".to_string(),
            format!("{{\"Network\": \"{CLUSTER_CIDR}\", \"Backend\": {{\"Type\": \"vxlan\"}}}}"),
        )])),
        ..Default::default()
    });
    c.invalidate_index();
    c
}

/// The ruleset text kube-proxy, flannel and portmap would leave on node `i`
/// (what `iptables-save` would print, up to its formatting).
pub fn iptables_text(cluster: &Cluster, i: usize) -> String {
    let net =
        ClusterNetwork::from_cluster(cluster).expect("synthetic clusters carry kube-flannel-cfg");
    expect::iptables(cluster, &node_name(i), &net).render()
}

/// The node state flannel would leave on node `i`, without iptables (parse
/// [`iptables_text`] for that): devices, one route, neigh and FDB entry per
/// peer, the pods' veths.
pub fn node_state(cluster: &Cluster, i: usize) -> NodeState {
    let me = Lease::from_node(&cluster.nodes[i]).expect("synthetic nodes have leases");
    let mut s = NodeState {
        sysctls: Sysctls {
            ip_forward: Some(true),
            bridge_nf_call_iptables: Some(true),
            ..Default::default()
        },
        ..Default::default()
    };
    let link = |ifindex: u32, name: &str, kind: Option<&str>, mtu: u32, mac: String| Link {
        ifindex,
        name: name.into(),
        kind: kind.map(str::to_string),
        mtu,
        mac: Some(mac),
        up: true,
        lower_up: true,
        operstate: "UP".into(),
        master: None,
        link_ifindex: None,
        link_netnsid: None,
        vxlan: None,
        bridge_port: None,
    };
    s.links
        .push(link(1, "lo", None, 65536, "00:00:00:00:00:00".into()));
    s.links.push(link(
        2,
        "eth0",
        Some("veth"),
        1500,
        "52:54:00:00:00:01".into(),
    ));
    let mut vtep = link(
        3,
        flannel::VTEP_DEVICE,
        Some("vxlan"),
        1450,
        me.vtep_mac.to_string(),
    );
    vtep.vxlan = Some(Vxlan {
        vni: 1,
        local: Some(IpAddr::V4(me.public_ip)),
        dev_ifindex: Some(2),
        dev: Some("eth0".into()),
        port: flannel::VXLAN_PORT,
        learning: false,
    });
    s.links.push(vtep);
    s.links.push(link(
        4,
        flannel::BRIDGE_DEVICE,
        Some("bridge"),
        1450,
        "52:54:00:00:00:02".into(),
    ));
    let addr = |ifindex: u32, dev: &str, a: Ipv4Addr, len: u8| Addr {
        ifindex,
        dev: dev.into(),
        address: IpAddr::V4(a),
        prefix_len: len,
        scope: "global".into(),
    };
    s.addrs.push(addr(2, "eth0", me.public_ip, 16));
    s.addrs
        .push(addr(3, flannel::VTEP_DEVICE, me.gateway(), 32));
    s.addrs.push(addr(
        4,
        flannel::BRIDGE_DEVICE,
        me.bridge_address().addr(),
        24,
    ));
    s.vxlan_tx_checksum
        .insert(flannel::VTEP_DEVICE.into(), false);
    // The kernel's own routes for those addresses.
    let kernel_route =
        |kind: &str, dst: String, dev: &str, table: u32, scope: &str, src: Ipv4Addr| Route {
            kind: kind.into(),
            dst: dst.parse().expect("a prefix the generator wrote"),
            gateway: None,
            dev: Some(dev.into()),
            oif: None,
            table,
            protocol: "kernel".into(),
            scope: scope.into(),
            prefsrc: Some(IpAddr::V4(src)),
            metric: None,
            flags: Vec::new(),
        };
    let underlay = Ipv4Net::new(me.public_ip, 16).expect("valid").trunc();
    s.routes.push(kernel_route(
        "unicast",
        me.pod_cidr.to_string(),
        flannel::BRIDGE_DEVICE,
        254,
        "link",
        me.bridge_address().addr(),
    ));
    s.routes.push(kernel_route(
        "unicast",
        underlay.to_string(),
        "eth0",
        254,
        "link",
        me.public_ip,
    ));
    for (dev, a) in [
        ("eth0", me.public_ip),
        (flannel::VTEP_DEVICE, me.gateway()),
        (flannel::BRIDGE_DEVICE, me.bridge_address().addr()),
    ] {
        s.routes.push(kernel_route(
            "local",
            format!("{a}/32"),
            dev,
            255,
            "host",
            a,
        ));
    }
    for (k, p) in cluster.pods_on(&me.node).enumerate() {
        let ifindex = 10 + k as u32;
        let mut veth = link(
            ifindex,
            &format!("veth{k:08x}"),
            Some("veth"),
            1450,
            format!("52:54:01:00:{:02x}:{:02x}", k / 256, k % 256),
        );
        veth.master = Some(flannel::BRIDGE_DEVICE.into());
        veth.bridge_port = Some(BridgePort { hairpin: true });
        s.links.push(veth);
        let ip: IpAddr = p
            .status
            .as_ref()
            .and_then(|st| st.pod_ip.as_deref())
            .and_then(|i| i.parse().ok())
            .expect("pod ip");
        s.attachments.push(Attachment {
            netns: format!("cni-{k}"),
            ifname: "eth0".into(),
            mac: None,
            mtu: 1450,
            up: true,
            addrs: vec![ip],
            peer_ifindex: Some(ifindex),
        });
    }
    for peer in flannel::peer_entries(
        &me.node,
        &cluster
            .nodes
            .iter()
            .filter_map(|n| Lease::from_node(n).ok())
            .collect::<Vec<_>>(),
    ) {
        s.neighs.push(Neigh {
            ifindex: 3,
            dev: flannel::VTEP_DEVICE.into(),
            dst: IpAddr::V4(peer.neigh_ip),
            lladdr: Some(peer.vtep_mac.to_string()),
            state: vec!["PERMANENT".into()],
            flags: Vec::new(),
        });
        s.fdb.push(FdbEntry {
            ifindex: 3,
            dev: flannel::VTEP_DEVICE.into(),
            mac: peer.vtep_mac,
            dst: Some(IpAddr::V4(peer.public_ip)),
            vni: None,
            port: None,
            vlan: None,
            master: None,
            flags: vec!["self".into()],
            state: "permanent".into(),
        });
        s.routes.push(Route {
            kind: "unicast".into(),
            dst: peer.route_dst.into(),
            gateway: Some(IpAddr::V4(peer.neigh_ip)),
            dev: Some(flannel::VTEP_DEVICE.into()),
            oif: Some(3),
            table: 254,
            protocol: "boot".into(),
            scope: "global".into(),
            prefsrc: None,
            metric: None,
            flags: vec!["onlink".into()],
        });
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_synthetic_cluster_is_healthy() {
        let c = cluster(Size {
            nodes: 20,
            pods: 600,
            services: 100,
            endpoints_per_service: 3,
        });
        let mut s = node_state(&c, 7);
        s.iptables
            .push(crate::dataplane::state::IptablesBackendState {
                backend: "legacy".into(),
                ruleset: crate::dataplane::iptables::save::parse(&iptables_text(&c, 7)).unwrap(),
                raw: None,
            });
        let findings = crate::check::run(&c, &[(node_name(7), s)]);
        assert!(findings.is_empty(), "{findings:#?}");
        let ports = crate::model::kube_proxy::service_ports(&c);
        assert_eq!(ports.len(), 100);
        assert!(
            ports.iter().all(|p| p.endpoints.len() == 3),
            "every Service has its 3 endpoints"
        );
    }
}
