//! Findings from the API objects alone: nodes' flannel leases, Services and
//! their endpoints, kube-dns and kubelet's clusterDNS, Ingresses, policies
//! flannel does not enforce, CoreDNS's forwarding.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::finding::{Finding, FindingId, ObjectRef, RepairAction, Severity, Subject};
use crate::dataplane::NodeState;
use crate::model::Cluster;
use crate::model::flannel::{Lease, LeaseError};
use crate::model::reading::{CheckGroup, Skipped};

const KUBE_DNS: (&str, &str) = ("kube-system", "kube-dns");

/// All cluster-level findings.
pub fn check(cluster: &Cluster, out: &mut Vec<Finding>) {
    check_unreadable(cluster, out);
    for group in GROUPS {
        check_group(cluster, group, out);
    }
}

/// The groups of cluster-wide verdicts, in the order [`check`] gives
/// them; each reads only the kinds [`CheckGroup::kinds`] names, so that
/// the live path re-runs a group only when those change.
pub const GROUPS: [CheckGroup; 5] = [
    CheckGroup::Leases,
    CheckGroup::ServiceEndpoints,
    CheckGroup::ClusterDns,
    CheckGroup::Ingresses,
    CheckGroup::NetworkPolicies,
];

/// One group's cluster-wide findings (none for a group that judges node
/// state, or whose objects were refused).
pub fn check_group(cluster: &Cluster, group: CheckGroup, out: &mut Vec<Finding>) {
    if !Skipped::of(&cluster.unread).runs(group) {
        return;
    }
    match group {
        CheckGroup::Leases => check_leases(cluster, out),
        CheckGroup::ServiceEndpoints => check_services(cluster, out),
        CheckGroup::ClusterDns => {
            check_cluster_dns(cluster, out);
            check_coredns(cluster, out);
        }
        CheckGroup::Ingresses => check_ingresses(cluster, out),
        CheckGroup::NetworkPolicies => check_network_policies(cluster, out),
        CheckGroup::Overlay | CheckGroup::PodDevices | CheckGroup::KubeProxy => {}
    }
}

fn check_network_policies(cluster: &Cluster, out: &mut Vec<Finding>) {
    for np in &cluster.network_policies {
        let (ns, name) = (
            np.metadata.namespace.clone().unwrap_or_default(),
            np.metadata.name.clone().unwrap_or_default(),
        );
        out.push(
            Finding::new(FindingId::NetworkPolicyNotEnforced, Severity::Warning, None, format!("NetworkPolicy {ns}/{name} exists but flannel does not enforce NetworkPolicies"))
                .object(ObjectRef::namespaced("NetworkPolicy", &ns, name))
                .repair(RepairAction::Manual { what: "add a policy engine (e.g. Calico in policy-only mode, 'canal') or remove the policy".into() }),
        );
    }
}

/// A warning per list the API server refused, naming the checks skipped
/// because of it and what to grant.
pub fn check_unreadable(cluster: &Cluster, out: &mut Vec<Finding>) {
    for u in &cluster.unread {
        let skipped: Vec<&str> = Skipped::because_of(u).iter().map(|g| g.what()).collect();
        let skipped = match skipped.is_empty() {
            true => "no check reads them".to_string(),
            false => format!("{} skipped", skipped.join(", ")),
        };
        out.push(
            Finding::new(
                FindingId::ApiUnreadable,
                Severity::Warning,
                None,
                format!("{}: {} → {skipped}", u.scope(), u.refusal()),
            )
            .object(Subject::ApiList {
                kind: u.kind,
                namespace: u.namespace.clone(),
                read_instead: u.read_instead.clone(),
            })
            .evidence("list and watch allowed", u.message.clone())
            .repair(RepairAction::Manual {
                what: u.remedy().to_string(),
            }),
        );
    }
}

fn check_leases(cluster: &Cluster, out: &mut Vec<Finding>) {
    let mut leases: Vec<Lease> = Vec::new();
    for node in &cluster.nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        match Lease::from_node(node) {
            Ok(l) => leases.push(l),
            Err(e @ (LeaseError::NoPodCidr(_) | LeaseError::BadPodCidr(..))) => out.push(
                Finding::new(FindingId::NodeNoPodCidr, Severity::Error, Some(&name), e.to_string())
                    .object(ObjectRef::new("Node", &name))
                    .repair(RepairAction::Manual { what: "allocate pod CIDRs (kube-controller-manager --allocate-node-cidrs --cluster-cidr) or set spec.podCIDR".into() }),
            ),
            // Read and said, not judged: the checks cover the IPv4 overlay.
            Err(e @ LeaseError::Ipv6Only(..)) => out.push(
                Finding::new(FindingId::NodeIpv6Only, Severity::Info, Some(&name), e.to_string())
                    .object(ObjectRef::new("Node", &name)),
            ),
            Err(e) => out.push(
                Finding::new(FindingId::NodeNoFlannelLease, Severity::Error, Some(&name), format!("{e}: other nodes cannot program routes to it"))
                    .object(ObjectRef::new("Node", &name))
                    .repair(RepairAction::Manual { what: "check the kube-flannel pod on this node; it writes these annotations when it starts".into() }),
            ),
        }
    }
    // Sorted by network address, a CIDR can only overlap those that start
    // before its broadcast address: a sweep instead of every pair.
    leases.sort_by_key(|l| (l.pod_cidr.network(), l.pod_cidr.prefix_len()));
    for (i, a) in leases.iter().enumerate() {
        for b in leases[i + 1..]
            .iter()
            .take_while(|b| b.pod_cidr.network() <= a.pod_cidr.broadcast())
        {
            if a.pod_cidr.contains(&b.pod_cidr.network())
                || b.pod_cidr.contains(&a.pod_cidr.network())
            {
                out.push(
                    Finding::new(
                        FindingId::PodCidrOverlap,
                        Severity::Error,
                        None,
                        format!(
                            "pod CIDRs of {} ({}) and {} ({}) overlap",
                            a.node, a.pod_cidr, b.node, b.pod_cidr
                        ),
                    )
                    .object(ObjectRef::new("Node", &a.node))
                    .object(ObjectRef::new("Node", &b.node))
                    .repair(RepairAction::Manual {
                        what: "give one node a new podCIDR (delete and re-register it)".into(),
                    }),
                );
            }
        }
    }
}

fn svc_ref(svc: &Service) -> ObjectRef {
    ObjectRef::namespaced(
        "Service",
        svc.metadata.namespace.as_deref().unwrap_or(""),
        svc.metadata.name.clone().unwrap_or_default(),
    )
}

fn check_services(cluster: &Cluster, out: &mut Vec<Finding>) {
    for (ns, name, spec, svc) in cluster.service_specs() {
        check_service(cluster, ns, name, spec, svc, out);
    }
}

/// The findings of one Service against its pods and endpoints (the
/// [`CheckGroup::ServiceEndpoints`] group, one Service of it: the live
/// path re-checks the Services a change touched).
pub fn check_service(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    spec: &k8s_openapi::api::core::v1::ServiceSpec,
    svc: &Service,
    out: &mut Vec<Finding>,
) {
    {
        if spec.type_.as_deref() == Some("ExternalName") {
            return;
        }
        let Some(selector) = spec.selector.as_ref().filter(|s| !s.is_empty()) else {
            return; // Endpoints managed by hand (like default/kubernetes).
        };
        let pods: Vec<&Pod> = cluster.pods_selected(ns, selector);

        if pods.is_empty() {
            let sel: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push(
                Finding::new(
                    FindingId::ServiceSelectorMatchesNothing,
                    Severity::Error,
                    None,
                    format!("Service {ns}/{name} selects no pod ({})", sel.join(",")),
                )
                .object(svc_ref(svc))
                .evidence(
                    format!("pods labelled {}", sel.join(",")),
                    "none in namespace",
                )
                .repair(RepairAction::Manual {
                    what: format!("fix the selector of Service {ns}/{name} or the pods' labels"),
                }),
            );
            return;
        }
        for port in spec.ports.iter().flatten() {
            let proto = port.protocol.as_deref().unwrap_or("TCP");
            match &port.target_port {
                Some(IntOrString::String(named)) => {
                    let resolved = pods.iter().any(|p| {
                        p.spec
                            .iter()
                            .flat_map(|s| &s.containers)
                            .flat_map(|c| c.ports.iter().flatten())
                            .any(|cp| cp.name.as_deref() == Some(named.as_str()))
                    });
                    if !resolved {
                        out.push(
                            Finding::new(FindingId::ServiceNamedPortUnresolved, Severity::Error, None, format!("Service {ns}/{name} targets port {named:?}, which no selected container names"))
                                .object(svc_ref(svc))
                                .repair(RepairAction::Manual { what: format!("name a containerPort {named:?} or use a number as targetPort") }),
                        );
                    }
                }
                target => {
                    let number = match target {
                        Some(IntOrString::Int(n)) => *n,
                        _ => port.port,
                    };
                    let declared: Vec<i32> = pods
                        .iter()
                        .flat_map(|p| p.spec.iter().flat_map(|s| &s.containers))
                        .flat_map(|c| c.ports.iter().flatten())
                        .filter(|cp| cp.protocol.as_deref().unwrap_or("TCP") == proto)
                        .map(|cp| cp.container_port)
                        .collect();
                    if !declared.is_empty() && !declared.contains(&number) {
                        out.push(
                            Finding::new(FindingId::ServiceTargetPortUnexposed, Severity::Warning, None, format!("Service {ns}/{name} targets {number}/{proto}, which no selected container declares"))
                                .object(svc_ref(svc))
                                .evidence(format!("containerPort {number}"), format!("declared {declared:?}")),
                        );
                    }
                }
            }
        }
        let ready: usize = spec
            .ports
            .iter()
            .flatten()
            .map(|p| {
                cluster
                    .ready_endpoints(
                        ns,
                        name,
                        p.name.as_deref().unwrap_or(""),
                        p.protocol.as_deref().unwrap_or("TCP"),
                    )
                    .len()
            })
            .max()
            .unwrap_or(0);
        if ready == 0 {
            let not_ready: Vec<String> = pods
                .iter()
                .filter_map(|p| p.metadata.name.clone())
                .collect();
            let (id, what) = if (ns, name) == KUBE_DNS {
                (
                    FindingId::KubeDnsNoEndpoints,
                    "kube-dns has no ready endpoints: every DNS lookup in the cluster fails"
                        .to_string(),
                )
            } else {
                (
                    FindingId::ServiceNoEndpoints,
                    format!("Service {ns}/{name} has no ready endpoints: connections are rejected"),
                )
            };
            out.push(
                Finding::new(id, Severity::Error, None, what)
                    .object(svc_ref(svc))
                    .evidence(format!("ready endpoints among {}", not_ready.join(", ")), "none ready")
                    .repair(RepairAction::Manual { what: format!("find why the pods of {ns}/{name} fail readiness (kubectl -n {ns} describe pod)") }),
            );
        }
    }
}

/// kube-dns's ClusterIP, the address every pod's resolv.conf should name.
fn kube_dns_ip(cluster: &Cluster) -> Option<&str> {
    cluster
        .service(KUBE_DNS.0, KUBE_DNS.1)?
        .spec
        .as_ref()?
        .cluster_ip
        .as_deref()
}

/// kubelet's clusterDNS (kubeadm's kubelet-config ConfigMap) vs kube-dns's ClusterIP.
fn check_cluster_dns(cluster: &Cluster, out: &mut Vec<Finding>) {
    let Some(dns_ip) = kube_dns_ip(cluster).map(str::to_string) else {
        return;
    };
    let Some(text) = cluster
        .config_map("kube-system", "kubelet-config")
        .and_then(|c| c.data.as_ref()?.get("kubelet").cloned())
    else {
        return;
    };
    #[derive(serde::Deserialize)]
    struct KubeletConfig {
        #[serde(rename = "clusterDNS", default)]
        cluster_dns: Vec<String>,
    }
    let dns = match serde_yaml_ng::from_str::<KubeletConfig>(&text) {
        Ok(c) => c.cluster_dns,
        Err(e) => {
            out.push(
                Finding::new(
                    FindingId::KubeletConfigUnreadable,
                    Severity::Warning,
                    None,
                    format!("kube-system/kubelet-config is not valid YAML: {e}"),
                )
                .object(ObjectRef::namespaced(
                    "ConfigMap",
                    "kube-system",
                    "kubelet-config",
                )),
            );
            return;
        }
    };
    if !dns.is_empty() && !dns.contains(&dns_ip) {
        out.push(
            Finding::new(FindingId::ClusterDnsMismatch, Severity::Error, None, format!("kubelet's clusterDNS ({}) is not kube-dns's ClusterIP {dns_ip}: pods' resolv.conf points nowhere", dns.join(",")))
                .object(ObjectRef::namespaced("ConfigMap", "kube-system", "kubelet-config"))
                .object(ObjectRef::namespaced("Service", KUBE_DNS.0, KUBE_DNS.1))
                .evidence(dns_ip.clone(), dns.join(","))
                .repair(RepairAction::Manual { what: format!("set clusterDNS to [{dns_ip}] in the kubelet config and restart kubelet") }),
        );
    }
}

fn check_ingresses(cluster: &Cluster, out: &mut Vec<Finding>) {
    for ing in &cluster.ingresses {
        let (Some(ns), Some(name), Some(spec)) = (
            ing.metadata.namespace.as_deref(),
            ing.metadata.name.as_deref(),
            ing.spec.as_ref(),
        ) else {
            continue;
        };
        let ing_ref = ObjectRef::namespaced("Ingress", ns, name);
        let class = spec.ingress_class_name.clone().or_else(|| {
            ing.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("kubernetes.io/ingress.class").cloned())
        });
        let default_class = cluster.ingress_classes.iter().any(|c| {
            c.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("ingressclass.kubernetes.io/is-default-class"))
                .map(String::as_str)
                == Some("true")
        });
        match &class {
            // Clusters before IngressClass (1.18) name the class only in an annotation.
            Some(c) if !cluster.ingress_classes.is_empty() && !cluster.ingress_classes.iter().any(|ic| ic.metadata.name.as_deref() == Some(c.as_str())) => out.push(

                Finding::new(FindingId::IngressClassNoController, Severity::Error, None, format!("Ingress {ns}/{name} asks for class {c:?}, which no IngressClass (controller) serves"))
                    .object(ing_ref.clone())
                    .repair(RepairAction::Manual { what: format!("create IngressClass {c:?} for your controller, or change ingressClassName") }),
            ),
            None if !default_class && !cluster.ingress_classes.is_empty() => out.push(
                Finding::new(FindingId::IngressClassNoController, Severity::Warning, None, format!("Ingress {ns}/{name} names no class and no IngressClass is the default"))
                    .object(ing_ref.clone()),
            ),
            _ => {}
        }
        let backends = spec
            .rules
            .iter()
            .flatten()
            .flat_map(|r| {
                r.http.iter().flat_map(move |h| {
                    h.paths
                        .iter()
                        .map(move |p| (r.host.clone().unwrap_or_default(), p))
                })
            })
            .filter_map(|(host, p)| {
                Some((
                    host,
                    p.path.clone().unwrap_or_else(|| "/".into()),
                    p.backend.service.clone()?,
                ))
            });
        for (host, path, b) in backends {
            // Looked up, not searched for: each path among 10,000
            // Services, again on every endpoint change of a live reading.
            let Some(svc) = cluster.service(ns, &b.name) else {
                out.push(
                    Finding::new(FindingId::IngressBackendServiceMissing, Severity::Error, None, format!("Ingress {ns}/{name} routes {host}{path} to Service {}, which does not exist", b.name))
                        .object(ing_ref.clone())
                        .repair(RepairAction::Manual { what: format!("create Service {ns}/{} or fix the Ingress backend", b.name) }),
                );
                continue;
            };
            let ports: Vec<_> = svc
                .spec
                .iter()
                .flat_map(|s| s.ports.iter().flatten())
                .collect();
            let found = b.port.as_ref().is_none_or(|bp| {
                ports.iter().any(|sp| {
                    bp.number == Some(sp.port) || (bp.name.is_some() && bp.name == sp.name)
                })
            });
            if !found {
                let want = b
                    .port
                    .as_ref()
                    .map(|p| {
                        p.number
                            .map(|n| n.to_string())
                            .or(p.name.clone())
                            .unwrap_or_default()
                    })
                    .unwrap_or_default();
                let have: Vec<String> = ports
                    .iter()
                    .map(|p| {
                        p.name
                            .clone()
                            .map(|n| format!("{n}:{}", p.port))
                            .unwrap_or_else(|| p.port.to_string())
                    })
                    .collect();
                out.push(
                    Finding::new(FindingId::IngressBackendPortMissing, Severity::Error, None, format!("Ingress {ns}/{name} routes {host}{path} to {}:{want}, a port the Service does not have: the controller answers 503", b.name))
                        .object(ing_ref.clone())
                        .object(svc_ref(svc))
                        .evidence(format!("a Service port {want}"), format!("ports {}", have.join(",")))
                        .repair(RepairAction::Manual { what: format!("change the Ingress backend port to one of {}", have.join(",")) }),
                );
            }
        }
    }
}

/// CoreDNS forwarding to a loopback address loops back into itself (the
/// `loop` plugin then crashes CoreDNS).
fn check_coredns(cluster: &Cluster, out: &mut Vec<Finding>) {
    let Some(corefile) = cluster
        .config_map("kube-system", "coredns")
        .and_then(|c| c.data.as_ref()?.get("Corefile").cloned())
    else {
        return;
    };
    for line in corefile.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"forward") {
            let loopback: Vec<&&str> = words
                .iter()
                .skip(2)
                .filter(|w| w.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()))
                .collect();
            if !loopback.is_empty() {
                out.push(
                    Finding::new(FindingId::CorednsForwardLoop, Severity::Error, None, format!("CoreDNS forwards to {} — a loopback resolver: queries loop back into CoreDNS", loopback.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(",")))
                        .object(ObjectRef::namespaced("ConfigMap", "kube-system", "coredns"))
                        .repair(RepairAction::Manual { what: "forward to a real upstream (not 127.0.0.0/8), or point kubelet --resolv-conf at the real resolv.conf".into() }),
                );
            }
        }
    }
}

/// DNS conntrack entries whose replies come from a pod that no longer
/// exists: clients keep sending there until the entry times out.
pub fn check_dns_conntrack(
    cluster: &Cluster,
    node: &str,
    state: &NodeState,
    out: &mut Vec<Finding>,
) {
    let Some(dns_ip) = kube_dns_ip(cluster).and_then(|ip| ip.parse::<IpAddr>().ok()) else {
        return;
    };
    // A pod's IP as the API wrote it, through the index; only an address
    // not found so (an IPv6 one written another way) parses every pod's,
    // once: at 150,000 pods that parse was an eighth of a reading.
    let by_ip = &cluster.index().pods.pod_by_ip;
    let parsed: std::cell::OnceCell<std::collections::HashSet<IpAddr>> = Default::default();
    let is_pod = |ip: &IpAddr| {
        by_ip.contains_key(&ip.to_string())
            || parsed
                .get_or_init(|| by_ip.keys().filter_map(|ip| ip.parse().ok()).collect())
                .contains(ip)
    };
    let mut stale: BTreeMap<IpAddr, usize> = BTreeMap::new();
    for e in state
        .conntrack_dns
        .iter()
        .filter(|e| e.orig_dst == dns_ip && e.reply_src != dns_ip)
    {
        if !is_pod(&e.reply_src) {
            *stale.entry(e.reply_src).or_default() += 1;
        }
    }
    for (ip, count) in stale {
        out.push(
            Finding::new(FindingId::DnsConntrackStale, Severity::Warning, Some(node), format!("{count} DNS conntrack entries still send kube-dns traffic to {ip}, a pod that no longer exists"))
                .object(ObjectRef::namespaced("Service", KUBE_DNS.0, KUBE_DNS.1))
                .evidence("replies from current CoreDNS pods", format!("{count} entries replied by {ip}"))
                .repair(RepairAction::Manual { what: format!("conntrack -D -p udp --orig-dst {dns_ip} --reply-src {ip}") }),
        );
    }
}
