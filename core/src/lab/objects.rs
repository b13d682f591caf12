//! The cluster objects that describe the lab, shaped as the API server would
//! serve them, so that `check`, `trace` and the rest see an API view that
//! agrees with the kernel the lab builds.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ContainerPort, Node, NodeAddress, NodeCondition, NodeSpec, NodeStatus,
    Pod, PodCondition, PodIP, PodSpec, PodStatus, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressClass, IngressClassSpec,
    IngressRule, IngressServiceBackend, IngressSpec, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::topology::{CLUSTER_CIDR, CLUSTER_DNS, LabPod, PodRole, SERVICE_CIDR, Topology};
use crate::model::Cluster;
use crate::model::flannel::annotation;

/// The Ingress host of the seed cluster.
pub const INGRESS_HOST: &str = "aoligei.linux0224.com";
/// The NodePort of test-svc-ns/nodeport-service.
pub const NODE_PORT: u16 = 30005;

fn meta(ns: Option<&str>, name: &str, labels: &[(&str, &str)]) -> ObjectMeta {
    ObjectMeta {
        namespace: ns.map(str::to_string),
        name: Some(name.to_string()),
        labels: (!labels.is_empty()).then(|| {
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        }),
        ..Default::default()
    }
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn port(name: &str, port: i32, proto: &str) -> ContainerPort {
    ContainerPort {
        name: (!name.is_empty()).then(|| name.to_string()),
        container_port: port,
        protocol: Some(proto.into()),
        ..Default::default()
    }
}

/// Builds every object of the lab; `ready(pod)` says whether a pod passes
/// its readiness probe (dns-down makes CoreDNS fail it).
pub fn cluster(topo: &Topology, ready: &dyn Fn(&LabPod) -> bool) -> Cluster {
    let mut c = Cluster {
        nodes: topo.nodes.iter().map(node).collect(),
        ..Default::default()
    };
    c.pods = topo.pods.iter().map(|p| pod(topo, p, ready(p))).collect();

    let master_ip = topo.nodes[0].ip.to_string();
    let nginx: Vec<&LabPod> = topo
        .pods
        .iter()
        .filter(|p| p.role == PodRole::Nginx)
        .collect();
    let dns: Vec<&LabPod> = topo
        .pods
        .iter()
        .filter(|p| p.role == PodRole::CoreDns)
        .collect();
    let ports = |v: &[(&str, i32, &str, Option<i32>)]| -> Vec<ServicePort> {
        v.iter()
            .map(|(name, p, proto, np)| ServicePort {
                name: (!name.is_empty()).then(|| name.to_string()),
                port: *p,
                protocol: Some(proto.to_string()),
                target_port: Some(IntOrString::Int(*p)),
                node_port: *np,
                ..Default::default()
            })
            .collect()
    };
    let service =
        |ns: &str, name: &str, ip: &str, ty: &str, sel: &[(&str, &str)], p: Vec<ServicePort>| {
            Service {
                metadata: meta(Some(ns), name, &[]),
                spec: Some(ServiceSpec {
                    cluster_ip: Some(ip.into()),
                    cluster_ips: Some(vec![ip.into()]),
                    type_: Some(ty.into()),
                    selector: (!sel.is_empty()).then(|| map(sel)),
                    ports: Some(p),
                    session_affinity: Some("None".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }
        };
    c.services = vec![
        service(
            "default",
            "kubernetes",
            "10.1.0.1",
            "ClusterIP",
            &[],
            ports(&[("https", 443, "TCP", None)]),
        ),
        service(
            "kube-system",
            "kube-dns",
            &CLUSTER_DNS.to_string(),
            "ClusterIP",
            &[("k8s-app", "kube-dns")],
            ports(&[("dns", 53, "UDP", None), ("dns-tcp", 53, "TCP", None)]),
        ),
        service(
            "test-svc-ns",
            "linux0224-nginx",
            "10.1.59.153",
            "ClusterIP",
            &[("app", "nginx")],
            ports(&[("", 80, "TCP", None)]),
        ),
        service(
            "test-svc-ns",
            "nodeport-service",
            "10.1.61.17",
            "NodePort",
            &[("app", "nginx")],
            ports(&[("", 80, "TCP", Some(NODE_PORT as i32))]),
        ),
    ]
    .into();
    if let Some(spec) = c.services[3].spec.as_mut() {
        spec.external_traffic_policy = Some("Cluster".into());
    }

    let api = Endpoint {
        addresses: vec![master_ip],
        conditions: Some(EndpointConditions {
            ready: Some(true),
            serving: Some(true),
            terminating: Some(false),
        }),
        ..Default::default()
    };
    c.endpoint_slices = vec![
        slice(
            "default",
            "kubernetes",
            vec![api],
            &[("https", 6443, "TCP")],
        ),
        slice(
            "kube-system",
            "kube-dns",
            dns.iter().map(|p| endpoint(p, ready(p))).collect(),
            &[("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")],
        ),
        slice(
            "test-svc-ns",
            "linux0224-nginx",
            nginx.iter().map(|p| endpoint(p, ready(p))).collect(),
            &[("", 80, "TCP")],
        ),
        slice(
            "test-svc-ns",
            "nodeport-service",
            nginx.iter().map(|p| endpoint(p, ready(p))).collect(),
            &[("", 80, "TCP")],
        ),
    ]
    .into();

    c.ingress_classes = vec![IngressClass {
        metadata: meta(None, "nginx", &[]),
        spec: Some(IngressClassSpec {
            controller: Some("k8s.io/ingress-nginx".into()),
            ..Default::default()
        }),
    }]
    .into();
    c.ingresses = vec![ingress(80)].into();
    c.config_maps = config_maps().into();
    c
}

/// test-svc-ns/test-ingress pointing at linux0224-nginx:`service_port`.
pub fn ingress(service_port: i32) -> Ingress {
    Ingress {
        metadata: meta(Some("test-svc-ns"), "test-ingress", &[]),
        spec: Some(IngressSpec {
            ingress_class_name: Some("nginx".into()),
            rules: Some(vec![IngressRule {
                host: Some(INGRESS_HOST.into()),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some("/".into()),
                        path_type: "Prefix".into(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: "linux0224-nginx".into(),
                                port: Some(ServiceBackendPort {
                                    number: Some(service_port),
                                    name: None,
                                }),
                            }),
                            resource: None,
                        },
                    }],
                }),
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn node(n: &super::topology::LabNode) -> Node {
    let role: &[(&str, &str)] = if n.name.contains("master") {
        &[
            ("kubernetes.io/hostname", ""),
            ("node-role.kubernetes.io/control-plane", ""),
        ]
    } else {
        &[("kubernetes.io/hostname", "")]
    };
    let mut m = meta(None, &n.name, role);
    if let Some(l) = m.labels.as_mut() {
        l.insert("kubernetes.io/hostname".into(), n.name.clone());
        l.insert("kubernetes.io/os".into(), "linux".into());
    }
    m.annotations = Some(map(&[
        (
            annotation::BACKEND_DATA,
            &format!("{{\"VNI\":1,\"VtepMAC\":\"{}\"}}", n.vtep_mac),
        ),
        (annotation::BACKEND_TYPE, "vxlan"),
        (annotation::KUBE_SUBNET_MANAGER, "true"),
        (annotation::PUBLIC_IP, &n.ip.to_string()),
    ]));
    Node {
        metadata: m,
        spec: Some(NodeSpec {
            pod_cidr: Some(n.pod_cidr.to_string()),
            pod_cidrs: Some(vec![n.pod_cidr.to_string()]),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            addresses: Some(vec![
                NodeAddress {
                    type_: "InternalIP".into(),
                    address: n.ip.to_string(),
                },
                NodeAddress {
                    type_: "Hostname".into(),
                    address: n.name.clone(),
                },
            ]),
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: Some("KubeletReady".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

fn pod(topo: &Topology, p: &LabPod, ready: bool) -> Pod {
    let host_ip = topo
        .nodes
        .iter()
        .find(|n| n.name == p.node)
        .map(|n| n.ip.to_string());
    let (labels, container): (Vec<(&str, &str)>, Container) = match p.role {
        PodRole::Nginx => (
            vec![("app", "nginx"), ("pod-template-hash", "56d58c56c7")],
            Container {
                name: "nginx".into(),
                image: Some("nginx:1.14.1".into()),
                ports: Some(vec![port("", 80, "TCP")]),
                ..Default::default()
            },
        ),
        PodRole::CoreDns => (
            vec![("k8s-app", "kube-dns"), ("pod-template-hash", "6d56c8448f")],
            Container {
                name: "coredns".into(),
                image: Some("registry.k8s.io/coredns/coredns:v1.10.1".into()),
                ports: Some(vec![port("dns", 53, "UDP"), port("dns-tcp", 53, "TCP")]),
                ..Default::default()
            },
        ),
        PodRole::Ingress => (
            vec![
                ("app", "nginx-ingress"),
                ("pod-template-hash", "75c88594dc"),
            ],
            Container {
                name: "nginx-ingress".into(),
                image: Some("registry.k8s.io/ingress-nginx/controller:v1.9.4".into()),
                ports: Some(vec![ContainerPort {
                    host_port: Some(80),
                    ..port("http", 80, "TCP")
                }]),
                ..Default::default()
            },
        ),
        PodRole::Busybox => (
            vec![("app", "busybox"), ("pod-template-hash", "5db9ff768")],
            Container {
                name: "busybox".into(),
                image: Some("busybox:1.28".into()),
                ..Default::default()
            },
        ),
    };
    let mut m = meta(Some(&p.namespace), &p.name, &labels);
    m.uid = Some(p.uid.clone());
    let status = if ready { "True" } else { "False" };
    Pod {
        metadata: m,
        spec: Some(PodSpec {
            node_name: Some(p.node.clone()),
            containers: vec![container],
            dns_policy: Some("ClusterFirst".into()),
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            pod_ip: Some(p.ip.to_string()),
            pod_ips: Some(vec![PodIP {
                ip: p.ip.to_string(),
            }]),
            host_ip,
            conditions: Some(
                ["Initialized", "Ready", "ContainersReady", "PodScheduled"]
                    .iter()
                    .map(|t| PodCondition {
                        type_: t.to_string(),
                        status: if t.contains("Ready") { status } else { "True" }.into(),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
    }
}

fn endpoint(p: &LabPod, ready: bool) -> Endpoint {
    Endpoint {
        addresses: vec![p.ip.to_string()],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(ready),
            terminating: Some(false),
        }),
        node_name: Some(p.node.clone()),
        target_ref: Some(k8s_openapi::api::core::v1::ObjectReference {
            kind: Some("Pod".into()),
            namespace: Some(p.namespace.clone()),
            name: Some(p.name.clone()),
            uid: Some(p.uid.clone()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn slice(
    ns: &str,
    service: &str,
    endpoints: Vec<Endpoint>,
    ports: &[(&str, i32, &str)],
) -> EndpointSlice {
    EndpointSlice {
        metadata: meta(
            Some(ns),
            &format!("{service}-lab01"),
            &[
                ("kubernetes.io/service-name", service),
                (
                    "endpointslice.kubernetes.io/managed-by",
                    "endpointslice-controller.k8s.io",
                ),
            ],
        ),
        address_type: "IPv4".into(),
        endpoints,
        ports: Some(
            ports
                .iter()
                .map(|(name, port, proto)| EndpointPort {
                    name: Some(name.to_string()),
                    port: Some(*port),
                    protocol: Some(proto.to_string()),
                    ..Default::default()
                })
                .collect(),
        ),
    }
}

fn config_maps() -> Vec<ConfigMap> {
    let cm = |ns: &str, name: &str, data: &[(&str, String)]| ConfigMap {
        metadata: meta(Some(ns), name, &[]),
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        ),
        ..Default::default()
    };
    vec![
        cm(
            "kube-system",
            "coredns",
            &[(
                "Corefile",
                ".:53 {\n    errors\n    health {\n       lameduck 5s\n    }\n    ready\n    kubernetes cluster.local in-addr.arpa ip6.arpa {\n       pods insecure\n       fallthrough in-addr.arpa ip6.arpa\n       ttl 30\n    }\n    prometheus :9153\n    forward . /etc/resolv.conf {\n       max_concurrent 1000\n    }\n    cache 30\n    loop\n    reload\n    loadbalance\n}\n".to_string(),
            )],
        ),
        cm(
            "kube-system",
            "kube-proxy",
            &[(
                "config.conf",
                format!("apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nclusterCIDR: {CLUSTER_CIDR}\nmode: \"iptables\"\niptables:\n  masqueradeAll: false\n  masqueradeBit: 14\n"),
            )],
        ),
        cm(
            "kube-system",
            "kubelet-config",
            &[(
                "kubelet",
                format!("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nclusterDNS:\n- {CLUSTER_DNS}\nclusterDomain: cluster.local\n"),
            )],
        ),
        cm(
            "kube-flannel",
            "kube-flannel-cfg",
            &[
                ("net-conf.json", format!("{{\n  \"Network\": \"{CLUSTER_CIDR}\",\n  \"Backend\": {{\n    \"Type\": \"vxlan\"\n  }}\n}}\n")),
                (
                    "cni-conf.json",
                    "{\n  \"name\": \"cbr0\",\n  \"cniVersion\": \"0.3.1\",\n  \"plugins\": [\n    {\"type\": \"flannel\", \"delegate\": {\"hairpinMode\": true, \"isDefaultGateway\": true}},\n    {\"type\": \"portmap\", \"capabilities\": {\"portMappings\": true}}\n  ]\n}\n".to_string(),
                ),
            ],
        ),
        cm(
            "kube-system",
            "kubeadm-config",
            &[(
                "ClusterConfiguration",
                format!("apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\nnetworking:\n  dnsDomain: cluster.local\n  podSubnet: {CLUSTER_CIDR}\n  serviceSubnet: {SERVICE_CIDR}\n"),
            )],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::topology::LabParams;
    use crate::model::{ClusterNetwork, dns, expect, flannel::Lease, kube_proxy};

    fn seed() -> (Topology, Cluster) {
        let topo = Topology::new(LabParams {
            name: "t".into(),
            nodes: 3,
            pods_per_node: 1,
        })
        .unwrap();
        let c = cluster(&topo, &|_| true);
        (topo, c)
    }

    #[test]
    fn node_objects_carry_the_leases_the_lab_programs() {
        let (topo, c) = seed();
        for n in &topo.nodes {
            let lease = Lease::from_node(c.node(&n.name).unwrap()).unwrap();
            assert_eq!(
                (
                    lease.pod_cidr,
                    lease.public_ip,
                    lease.vtep_mac.to_string().as_str()
                ),
                (n.pod_cidr, n.ip, n.vtep_mac.as_str())
            );
        }
        let e = expect::flannel(&c, "k8s-node-12", 1500).unwrap();
        assert_eq!(e.vtep_mtu, 1450);
        assert_eq!(e.bridge_address.to_string(), "10.2.2.1/24");
        let peers: Vec<_> = e
            .peers
            .iter()
            .map(|p| (p.route_dst.to_string(), p.public_ip.to_string()))
            .collect();
        assert_eq!(
            peers,
            [
                ("10.2.0.0/24".to_string(), "192.168.56.10".to_string()),
                ("10.2.1.0/24".into(), "192.168.56.11".into())
            ]
        );
        assert_eq!(
            ClusterNetwork::from_cluster(&c)
                .unwrap()
                .cluster_cidr
                .to_string(),
            "10.2.0.0/16"
        );
    }

    #[test]
    fn services_resolve_to_the_pods_the_lab_runs() {
        let (_, c) = seed();
        let ports = kube_proxy::service_ports(&c);
        let nginx = ports
            .iter()
            .find(|p| p.service == "linux0224-nginx")
            .unwrap();
        assert_eq!(
            nginx.endpoints,
            ["10.2.0.42:80", "10.2.1.117:80", "10.2.2.132:80"]
        );
        let np = ports
            .iter()
            .find(|p| p.service == "nodeport-service")
            .unwrap();
        assert_eq!(np.node_port, Some(NODE_PORT));
        let dns_udp = ports
            .iter()
            .find(|p| p.service == "kube-dns" && p.protocol == "udp")
            .unwrap();
        assert_eq!(dns_udp.svc_chain(), "KUBE-SVC-TCOU7JCQXEZGVUNU");
        assert_eq!(dns_udp.endpoints, ["10.2.0.2:53", "10.2.1.2:53"]);
        let records = dns::records(&c, dns::CLUSTER_DOMAIN);
        assert!(records.iter().any(
            |r| r.name == "linux0224-nginx.test-svc-ns.svc.cluster.local"
                && r.ip.to_string() == "10.1.59.153"
        ));
    }

    #[test]
    fn not_ready_coredns_turns_into_a_reject_rule() {
        let (topo, _) = seed();
        let c = cluster(&topo, &|p| p.role != PodRole::CoreDns);
        let net = ClusterNetwork::from_cluster(&c).unwrap();
        let rs = expect::iptables(&c, "k8s-node-12", &net).render();
        assert!(rs.contains("-A KUBE-SERVICES -d 10.1.0.10/32 -p udp -m comment --comment \"kube-system/kube-dns:dns has no endpoints\""), "{rs}");
        assert!(!rs.contains("KUBE-SVC-TCOU7JCQXEZGVUNU"));
    }
}
