//! `inspect pod|svc|ingress|dns NAME`: one object and everything it links
//! to, up and down — Ingress -> Service -> endpoints -> Pods -> Nodes ->
//! the node entries that carry the traffic — with the findings of `check`
//! that touch any of them. Presentation only: the verdicts come from check.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use k8s_openapi::Metadata;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

use crate::check::{Finding, ObjectRef, Subject};
use crate::dataplane::NodeState;
use crate::error::{Error, Result};
use crate::model::flannel::{Lease, VTEP_DEVICE};
use crate::model::shared::Objects;
use crate::model::{Cluster, dns, kube_proxy};

/// One line of the linked view.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    /// Indentation level (0 = the object itself).
    pub depth: usize,
    /// What this line is: `Service`, `endpoint`, `Pod`, `Node`, `route`, `chain`, `dns`, ...
    pub kind: String,
    pub text: String,
    /// Whether the link holds (`None`: nothing to verify).
    pub ok: Option<bool>,
    /// The object the line is about, for following the link (the
    /// dashboard's Enter) without reading it back out of `text`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<ObjectRef>,
}

/// The linked view of one object.
#[derive(Debug, Clone, Serialize)]
pub struct LinkedView {
    pub object: ObjectRef,
    pub lines: Vec<Line>,
    /// Findings about this object or anything it links to.
    pub findings: Vec<Finding>,
    /// The lists the API server refused: the view is read in part.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unread: Vec<crate::model::reading::Unreadable>,
}

struct Builder<'a> {
    cluster: &'a Cluster,
    nodes: &'a [(String, NodeState)],
    /// `check`'s findings on the same cluster and nodes.
    findings: &'a [Arc<Finding>],
    /// Per node, the first finding naming each subject (built once: a
    /// view of a pod has an overlay line for every node read).
    named: HashMap<
        &'a str,
        crate::model::index::HashMap<&'a Subject, (&'a Finding, crate::check::Mark)>,
    >,
    lines: Vec<Line>,
    related: Vec<ObjectRef>,
    related_nodes: Vec<String>,
}

fn name_of(ns: Option<&str>, name: Option<&str>) -> String {
    format!("{}/{}", ns.unwrap_or(""), name.unwrap_or(""))
}

/// Splits `ns/name`, or `name` with the default namespace.
fn split(name: &str, namespace: &str) -> (String, String) {
    match name.split_once('/') {
        Some((ns, n)) => (ns.to_string(), n.to_string()),
        None => (namespace.to_string(), name.to_string()),
    }
}

/// `ns/name` of any object, the form names are listed and asked for in.
fn qualified<T: Metadata<Ty = ObjectMeta>>(o: &T) -> String {
    name_of(
        o.metadata().namespace.as_deref(),
        o.metadata().name.as_deref(),
    )
}

/// The object the user asked for: `ns/name` exactly, or — when they gave a
/// bare name — `name` in `namespace`, else the first `name` in any
/// namespace (people rarely remember which namespace a pod lives in).
fn find_named<'c, T: Metadata<Ty = ObjectMeta>>(
    items: &'c Objects<T>,
    kind: &str,
    asked: &str,
    namespace: &str,
) -> Result<&'c T> {
    let (ns, n) = split(asked, namespace);
    let name_is = |o: &&T| o.metadata().name.as_deref() == Some(n.as_str());
    items
        .iter()
        .filter(name_is)
        .find(|o| o.metadata().namespace.as_deref() == Some(ns.as_str()))
        .or_else(|| {
            (!asked.contains('/'))
                .then(|| items.iter().find(name_is))
                .flatten()
        })
        .ok_or_else(|| not_found(kind, asked, items.iter().map(qualified).collect()))
}

fn not_found(kind: &str, wanted: &str, candidates: Vec<String>) -> Error {
    let hint = crate::suggest::did_you_mean(wanted, candidates.iter().map(String::as_str))
        .unwrap_or_else(|| {
            format!(
                "{} {kind}s exist; `-A` style names are ns/name",
                candidates.len()
            )
        });
    Error::usage(format!("no {kind} {wanted:?}"), Some(hint))
}

impl<'a> Builder<'a> {
    fn new(
        cluster: &'a Cluster,
        nodes: &'a [(String, NodeState)],
        findings: &'a [Arc<Finding>],
    ) -> Self {
        let mut per_node: HashMap<&str, Vec<&Finding>> = HashMap::new();
        for f in findings {
            if let Some(n) = f.node.as_deref() {
                per_node.entry(n).or_default().push(f);
            }
        }
        Builder {
            cluster,
            nodes,
            findings,
            named: per_node
                .into_iter()
                .map(|(n, fs)| (n, crate::check::first_naming(fs)))
                .collect(),
            lines: Vec::new(),
            related: Vec::new(),
            related_nodes: Vec::new(),
        }
    }

    fn line(&mut self, depth: usize, kind: &str, text: impl Into<String>, ok: Option<bool>) {
        self.lines.push(Line {
            depth,
            kind: kind.into(),
            text: text.into(),
            ok,
            target: None,
        });
    }

    /// The last line is about `o`.
    fn to(&mut self, o: ObjectRef) {
        if let Some(l) = self.lines.last_mut() {
            l.target = Some(o);
        }
    }

    /// The first finding on `node` that names `s`: the linked view marks
    /// an entry broken exactly when check does.
    fn finding_on(&self, node: &str, s: &Subject) -> Option<&'a Finding> {
        self.named.get(node)?.get(s).map(|(f, _)| *f)
    }

    /// The Pod with address `ip`, as findings name it.
    fn pod_ref(&self, ip: Ipv4Addr) -> Option<Subject> {
        let p = self.cluster.pod_by_ip(&ip.to_string())?;
        Some(Subject::Object(ObjectRef::namespaced(
            "Pod",
            p.metadata.namespace.as_deref().unwrap_or(""),
            p.metadata.name.clone().unwrap_or_default(),
        )))
    }

    fn state(&self, node: &str) -> Option<&'a NodeState> {
        self.nodes.iter().find(|(n, _)| n == node).map(|(_, s)| s)
    }

    /// The pod, its node, and what each checked node holds to reach it.
    fn pod(&mut self, pod: &Pod, depth: usize) {
        let (ns, name) = (
            pod.metadata.namespace.clone().unwrap_or_default(),
            pod.metadata.name.clone().unwrap_or_default(),
        );
        let status = pod.status.clone().unwrap_or_default();
        let ready = status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let ip = status.pod_ip.clone().unwrap_or_else(|| "-".into());
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        self.related.push(ObjectRef::namespaced("Pod", &ns, &name));
        self.line(
            depth,
            "Pod",
            format!(
                "{ns}/{name}  {ip}  {}  on {node}",
                if ready { "Ready" } else { "NotReady" }
            ),
            Some(ready),
        );
        self.to(ObjectRef::namespaced("Pod", &ns, &name));
        self.node(&node, ip.parse().ok(), depth + 1);
    }

    /// The node a pod runs on, and how every other checked node reaches its pod CIDR.
    fn node(&mut self, node: &str, pod_ip: Option<Ipv4Addr>, depth: usize) {
        if !self.related_nodes.iter().any(|n| n == node) {
            self.related_nodes.push(node.to_string());
        }
        let lease = self.cluster.node(node).map(Lease::from_node);
        match lease {
            Some(Ok(l)) => {
                self.line(
                    depth,
                    "Node",
                    format!(
                        "{node}  public-ip {}  podCIDR {}  VtepMAC {}",
                        l.public_ip, l.pod_cidr, l.vtep_mac
                    ),
                    Some(true),
                );
                self.to(ObjectRef::node(node));
                if let (Some(ip), Some(state)) = (pod_ip, self.state(node)) {
                    let att = state
                        .attachments
                        .iter()
                        .find(|a| a.addrs.contains(&ip.into()));
                    if let Some(a) = att {
                        let host = a
                            .peer_ifindex
                            .and_then(|i| state.links.iter().find(|l| l.ifindex == i));
                        // The veth holds unless check found something wrong
                        // with the pod's interfaces on its node.
                        let pod = self.pod_ref(ip);
                        let ok = pod.is_none_or(|p| self.finding_on(node, &p).is_none());
                        self.line(
                            depth + 1,
                            "veth",
                            format!(
                                "{} <-> pod eth0 mtu {}{}",
                                host.map(|h| h.name.as_str()).unwrap_or("(missing)"),
                                a.mtu,
                                host.map(|h| format!(
                                    " master {}",
                                    h.master.clone().unwrap_or_default()
                                ))
                                .unwrap_or_default()
                            ),
                            Some(ok),
                        );
                    }
                }
                let peers: Vec<String> = self
                    .nodes
                    .iter()
                    .filter(|(n, _)| n != node)
                    .map(|(n, _)| n.clone())
                    .collect();
                for from in peers {
                    let gw = l.gateway();
                    let dev = VTEP_DEVICE.to_string();
                    // Each entry as check judged it on `from`.
                    let route = Subject::Route {
                        dst: l.pod_cidr.into(),
                        table: 254,
                    };
                    let neigh = Subject::Neigh {
                        ip: gw.into(),
                        dev: dev.clone(),
                    };
                    let fdb = Subject::Fdb {
                        mac: l.vtep_mac,
                        dev,
                    };
                    let ok = |s: &Subject| self.finding_on(&from, s).is_none();
                    let (route_ok, neigh_ok, fdb_ok) = (ok(&route), ok(&neigh), ok(&fdb));
                    let mark = |b: bool| if b { "ok" } else { "BROKEN" };
                    self.line(
                        depth + 1,
                        "overlay",
                        format!(
                            "from {from}: route {} {}, neigh {gw} {}, fdb {} {}",
                            l.pod_cidr,
                            mark(route_ok),
                            mark(neigh_ok),
                            l.vtep_mac,
                            mark(fdb_ok)
                        ),
                        Some(route_ok && neigh_ok && fdb_ok),
                    );
                }
            }
            Some(Err(e)) => {
                self.line(depth, "Node", format!("{node}: {e}"), Some(false));
                self.to(ObjectRef::node(node));
            }
            // Not listed because the API server refused it: unknown, not
            // broken.
            None if let Some(u) = self.cluster.refused(crate::model::reading::ApiKind::Nodes) => {
                self.line(
                    depth,
                    "Node",
                    format!("{node} (Nodes could not be read: {})", u.refusal()),
                    None,
                )
            }
            None => self.line(
                depth,
                "Node",
                format!("{node} (no such Node object)"),
                Some(false),
            ),
        }
    }

    /// A Service: its DNS name, ports, kube-proxy chains per node, endpoints, pods.
    fn service(&mut self, svc: &Service, depth: usize) {
        let (ns, name) = (
            svc.metadata.namespace.clone().unwrap_or_default(),
            svc.metadata.name.clone().unwrap_or_default(),
        );
        let spec = svc.spec.clone().unwrap_or_default();
        self.related
            .push(ObjectRef::namespaced("Service", &ns, &name));
        let ip = spec.cluster_ip.clone().unwrap_or_else(|| "-".into());
        self.line(
            depth,
            "Service",
            format!(
                "{ns}/{name}  {}  {ip}",
                spec.type_.clone().unwrap_or_else(|| "ClusterIP".into())
            ),
            None,
        );
        self.to(ObjectRef::namespaced("Service", &ns, &name));
        self.line(
            depth + 1,
            "dns",
            format!("{name}.{ns}.svc.{} -> {ip}", dns::CLUSTER_DOMAIN),
            None,
        );
        let ports = kube_proxy::service_ports_of(self.cluster, &ns, &name);
        for sp in &ports {
            let np = sp
                .node_port
                .map(|n| format!("  nodePort {n}"))
                .unwrap_or_default();
            self.line(
                depth + 1,
                "port",
                format!(
                    "{}/{}{np}  chain {}  {} ready endpoint(s)",
                    sp.port,
                    sp.protocol,
                    sp.svc_chain(),
                    sp.endpoints.len()
                ),
                Some(!sp.endpoints.is_empty()),
            );
            // The names this port's chain may have (kube-proxy's hashing
            // changed over versions); check names the one the node uses.
            let chains: Vec<Subject> = sp
                .hashed_names()
                .iter()
                .map(|n| Subject::chain("nat", crate::model::hash::svc_chain(n, &sp.protocol)))
                .collect();
            let svc = Subject::Object(ObjectRef::namespaced("Service", &ns, &name));
            for (node, state) in self.nodes {
                let Some(rs) = crate::check::iptables::kube_proxy_ruleset(state) else {
                    continue;
                };
                let have: Vec<String> = rs
                    .table("nat")
                    .and_then(|t| t.chain(&sp.svc_chain()).cloned())
                    .map(|c| {
                        c.rules
                            .iter()
                            .filter_map(|r| {
                                crate::dataplane::iptables::RuleSpec::parse(r).ok()?.target
                            })
                            .filter(|t| t.starts_with("KUBE-SEP-"))
                            .collect()
                    })
                    .unwrap_or_default();
                let want: Vec<String> = sp.endpoints.iter().map(|e| sp.sep_chain(e)).collect();
                let ok = !self.findings.iter().any(|f| {
                    f.node.as_deref() == Some(node.as_str())
                        && f.id.owner() == crate::check::Owner::KubeProxy
                        && f.names(&svc)
                        && chains.iter().any(|c| f.names(c))
                });
                self.line(
                    depth + 2,
                    "chain",
                    format!(
                        "{node}: {} of {} endpoint chains{}",
                        have.iter().filter(|h| want.contains(h)).count(),
                        want.len(),
                        if ok { "" } else { " (mismatch)" }
                    ),
                    Some(ok),
                );
            }
        }
        let cluster = self.cluster;
        let selected = match spec.selector.as_ref() {
            Some(sel) => cluster.pods_selected(&ns, sel),
            None => Vec::new(),
        };
        if spec.selector.as_ref().is_some_and(|s| !s.is_empty()) && selected.is_empty() {
            self.line(
                depth + 1,
                "Pod",
                "(the selector matches no pod)",
                Some(false),
            );
        }
        for p in &selected {
            self.pod(p, depth + 1);
        }
    }
}

/// Everything linked to Pod `name`.
pub fn pod(
    cluster: &Cluster,
    nodes: &[(String, NodeState)],
    findings: &[Arc<Finding>],
    name: &str,
    namespace: &str,
) -> Result<LinkedView> {
    let pod = find_named(&cluster.pods, "pod", name, namespace)?;
    let mut b = Builder::new(cluster, nodes, findings);
    b.pod(pod, 0);
    let (ns, n) = (
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
    );
    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .unwrap_or_default();
    b.line(
        1,
        "dns",
        format!(
            "{}.{ns}.pod.{} -> {ip}",
            ip.replace('.', "-"),
            dns::CLUSTER_DOMAIN
        ),
        None,
    );
    for svc in cluster.services.iter().filter(|s| {
        s.metadata.namespace.as_deref() == Some(ns.as_str())
            && s.spec
                .as_ref()
                .and_then(|sp| sp.selector.as_ref())
                .is_some_and(|sel| {
                    !sel.is_empty()
                        && sel.iter().all(|(k, v)| {
                            pod.metadata.labels.as_ref().and_then(|l| l.get(k)) == Some(v)
                        })
                })
    }) {
        let sname = svc.metadata.name.clone().unwrap_or_default();
        let is_ep = cluster.endpoint_slices.iter().any(|s| {
            s.endpoints
                .iter()
                .any(|e| e.addresses.contains(&ip) && crate::model::cluster::endpoint_ready(e))
        });
        b.line(
            1,
            "Service",
            format!(
                "selected by {ns}/{sname}{}",
                if is_ep {
                    " (a ready endpoint)"
                } else {
                    " (not a ready endpoint)"
                }
            ),
            Some(is_ep),
        );
        b.to(ObjectRef::namespaced("Service", &ns, &sname));
        b.related.push(ObjectRef::namespaced("Service", &ns, sname));
    }
    Ok(b.finish(ObjectRef::namespaced("Pod", &ns, n)))
}

/// Everything linked to Service `name`.
pub fn service(
    cluster: &Cluster,
    nodes: &[(String, NodeState)],
    findings: &[Arc<Finding>],
    name: &str,
    namespace: &str,
) -> Result<LinkedView> {
    let (ns, n) = split(name, namespace);
    let svc = find_service(cluster, &ns, &n, name)?;
    let mut b = Builder::new(cluster, nodes, findings);
    for ing in ingresses_to(cluster, &ns, &n) {
        b.line(0, "Ingress", format!("reached from Ingress {ing}"), None);
        let (ins, iname) = split(&ing, &ns);
        b.to(ObjectRef::namespaced("Ingress", &ins, iname));
    }
    b.service(svc, 0);
    Ok(b.finish(ObjectRef::namespaced("Service", &ns, n)))
}

fn find_service<'c>(cluster: &'c Cluster, ns: &str, n: &str, asked: &str) -> Result<&'c Service> {
    cluster.service(ns, n).ok_or_else(|| {
        not_found(
            "service",
            asked,
            cluster.services.iter().map(qualified).collect(),
        )
    })
}

fn ingresses_to(cluster: &Cluster, ns: &str, svc: &str) -> Vec<String> {
    cluster
        .ingresses
        .iter()
        .filter(|i| i.metadata.namespace.as_deref() == Some(ns))
        .filter(|i| {
            i.spec
                .iter()
                .flat_map(|s| s.rules.iter().flatten())
                .flat_map(|r| r.http.iter().flat_map(|h| &h.paths))
                .any(|p| p.backend.service.as_ref().is_some_and(|b| b.name == svc))
        })
        .map(qualified)
        .collect()
}

/// Everything linked to Ingress `name`.
pub fn ingress(
    cluster: &Cluster,
    nodes: &[(String, NodeState)],
    findings: &[Arc<Finding>],
    name: &str,
    namespace: &str,
) -> Result<LinkedView> {
    let ing = find_named(&cluster.ingresses, "ingress", name, namespace)?;
    let (ns, n) = (
        ing.metadata.namespace.clone().unwrap_or_default(),
        ing.metadata.name.clone().unwrap_or_default(),
    );
    let mut b = Builder::new(cluster, nodes, findings);
    b.related.push(ObjectRef::namespaced("Ingress", &ns, &n));
    let spec = ing.spec.clone().unwrap_or_default();
    let class = spec
        .ingress_class_name
        .clone()
        .unwrap_or_else(|| "(default)".into());
    let controller = cluster
        .ingress_classes
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some(class.as_str()))
        .and_then(|c| c.spec.as_ref()?.controller.clone());
    b.line(
        0,
        "Ingress",
        format!(
            "{ns}/{n}  class {class}  controller {}",
            controller.clone().unwrap_or_else(|| "(none)".into())
        ),
        Some(controller.is_some() || cluster.ingress_classes.is_empty()),
    );
    b.to(ObjectRef::namespaced("Ingress", &ns, n.clone()));
    for rule in spec.rules.iter().flatten() {
        for p in rule.http.iter().flat_map(|h| &h.paths) {
            let Some(backend) = &p.backend.service else {
                continue;
            };
            let port = backend
                .port
                .as_ref()
                .map(|bp| {
                    bp.number
                        .map(|n| n.to_string())
                        .or(bp.name.clone())
                        .unwrap_or_default()
                })
                .unwrap_or_default();
            b.line(
                1,
                "rule",
                format!(
                    "{}{} ({}) -> {}:{port}",
                    rule.host.clone().unwrap_or_else(|| "*".into()),
                    p.path.clone().unwrap_or_else(|| "/".into()),
                    p.path_type,
                    backend.name
                ),
                None,
            );
            match find_service(cluster, &ns, &backend.name, &backend.name) {
                Ok(svc) => {
                    let has_port =
                        svc.spec
                            .iter()
                            .flat_map(|s| s.ports.iter().flatten())
                            .any(|sp| {
                                sp.port.to_string() == port
                                    || sp.name.as_deref() == Some(port.as_str())
                            });
                    if !has_port {
                        b.line(
                            2,
                            "port",
                            format!("Service {ns}/{} has no port {port}", backend.name),
                            Some(false),
                        );
                    }
                    b.service(svc, 2);
                }
                Err(_) => b.line(
                    2,
                    "Service",
                    format!("{ns}/{} does not exist", backend.name),
                    Some(false),
                ),
            }
        }
    }
    Ok(b.finish(ObjectRef::namespaced("Ingress", &ns, n)))
}

/// A DNS name as a pod in `namespace` resolves it (search list, ndots:5),
/// and what it leads to.
pub fn dns_name(
    cluster: &Cluster,
    nodes: &[(String, NodeState)],
    findings: &[Arc<Finding>],
    name: &str,
    namespace: &str,
) -> Result<LinkedView> {
    let candidates = search_candidates(name, namespace);
    let mut b = Builder::new(cluster, nodes, findings);
    b.line(
        0,
        "dns",
        format!(
            "{name} (from a pod in {namespace}: search {namespace}.svc.{d} svc.{d} {d}, ndots:5)",
            d = dns::CLUSTER_DOMAIN
        ),
        None,
    );
    let mut found = None;
    for c in &candidates {
        let hits = dns::lookup(cluster, c, dns::CLUSTER_DOMAIN);
        b.line(
            1,
            "query",
            format!(
                "{c} -> {}",
                if hits.is_empty() {
                    "NXDOMAIN (the resolver tries the next name)".to_string()
                } else {
                    hits.iter()
                        .map(|r| r.ip.to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                }
            ),
            // A miss before the hit is how search lists work, not a broken link.
            (!hits.is_empty()).then_some(true),
        );
        if !hits.is_empty() {
            found = Some(c.clone());

            break;
        }
    }
    let Some(fqdn) = found else {
        return Err(not_found(
            "DNS name",
            name,
            dns::records(cluster, dns::CLUSTER_DOMAIN)
                .into_iter()
                .map(|r| r.name)
                .collect(),
        ));
    };
    // kube-dns itself: the Service every lookup goes through.
    if let Some(kd) = cluster.service("kube-system", "kube-dns") {
        let ready = kube_proxy::service_ports_of(cluster, "kube-system", "kube-dns")
            .iter()
            .map(|p| p.endpoints.len())
            .max()
            .unwrap_or(0);
        b.line(
            1,
            "Service",
            format!(
                "answered by kube-system/kube-dns {} ({ready} ready endpoint(s))",
                kd.spec
                    .as_ref()
                    .and_then(|s| s.cluster_ip.clone())
                    .unwrap_or_default()
            ),
            Some(ready > 0),
        );
        b.to(ObjectRef::namespaced("Service", "kube-system", "kube-dns"));
        b.related
            .push(ObjectRef::namespaced("Service", "kube-system", "kube-dns"));
    }
    let parts: Vec<&str> = fqdn.split('.').collect();
    if parts.get(2) == Some(&"svc") {
        let svc = find_service(cluster, parts[1], parts[0], &fqdn)?;
        b.service(svc, 1);
    } else if parts.get(2) == Some(&"pod") {
        let ip = parts[0].replace('-', ".");
        if let Some(p) = cluster.pod_by_ip(&ip) {
            b.pod(p, 1);
        }
    }
    Ok(b.finish(ObjectRef::new("dns", fqdn)))
}

/// The names a ClusterFirst pod's resolver tries for `name`, in order:
/// with fewer than 5 dots the search list first, then the name as given.
pub fn search_candidates(name: &str, namespace: &str) -> Vec<String> {
    let name = name.trim_end_matches('.');
    let d = dns::CLUSTER_DOMAIN;
    let search = [
        format!("{namespace}.svc.{d}"),
        format!("svc.{d}"),
        d.to_string(),
    ];
    let mut v: Vec<String> = search.iter().map(|s| format!("{name}.{s}")).collect();
    if name.matches('.').count() >= 5 {
        v.insert(0, name.to_string());
    } else {
        v.push(name.to_string());
    }
    v
}

impl Builder<'_> {
    fn finish(self, object: ObjectRef) -> LinkedView {
        let findings = self
            .findings
            .iter()
            .filter(|f| {
                f.subjects()
                    .any(|s| s.object().is_some_and(|o| self.related.contains(o)))
                    || (f
                        .node
                        .as_ref()
                        .is_some_and(|n| self.related_nodes.contains(n))
                        && f.subjects().any(|s| s.kind() != "Service"))
            })
            .map(|f| (**f).clone())
            .collect();
        LinkedView {
            object,
            lines: self.lines,
            findings,
            unread: self.cluster.unread.clone(),
        }
    }
}

/// The text form: an indented tree, broken links marked, then the findings.
pub fn text(view: &LinkedView) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    for l in &view.lines {
        let mark = match l.ok {
            Some(true) => "ok ",
            Some(false) => "XX ",
            None => "   ",
        };
        let _ = writeln!(o, "{mark}{}{}", "  ".repeat(l.depth), l.text);
    }
    if view.findings.is_empty() {
        let _ = writeln!(o, "\nno findings touch {}", view.object);
    } else {
        let _ = writeln!(o);
        let nodes: Vec<String> = Vec::new();
        o.push_str(
            &crate::check::text::render(&view.findings, &nodes, &[])
                .lines()
                .filter(|l| !l.starts_with("(no node states"))
                .collect::<Vec<_>>()
                .join("\n"),
        );
        o.push('\n');
    }
    if let Some(line) = crate::model::reading::read_in_part(&view.unread) {
        let _ = writeln!(o, "{line}");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_list_follows_ndots() {
        assert_eq!(
            search_candidates("linux0224-nginx", "test-svc-ns"),
            [
                "linux0224-nginx.test-svc-ns.svc.cluster.local",
                "linux0224-nginx.svc.cluster.local",
                "linux0224-nginx.cluster.local",
                "linux0224-nginx"
            ]
        );
        assert_eq!(search_candidates("a.b.c.d.e.f", "x")[0], "a.b.c.d.e.f");
    }

    /// A route to the pod's node that leads the right way but lacks
    /// `onlink`: check says route-wrong, so the linked view says BROKEN
    /// (it once judged the entry itself and said ok).
    #[test]
    fn an_overlay_entry_is_broken_exactly_when_check_says_so() {
        let (cluster, mut state) = crate::check::fixtures::seed();
        let pod = cluster
            .pods
            .iter()
            .find(|p| {
                p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("k8s-node-11")
                    && p.status.as_ref().and_then(|s| s.pod_ip.as_ref()).is_some()
                    && p.spec.as_ref().and_then(|s| s.host_network) != Some(true)
            })
            .expect("a pod on k8s-node-11");
        let name = format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap(),
            pod.metadata.name.as_deref().unwrap()
        );
        let cidr = Lease::from_node(cluster.node("k8s-node-11").unwrap())
            .unwrap()
            .pod_cidr
            .to_string();
        let overlay = |state: &NodeState| {
            let nodes = vec![("k8s-node-12".to_string(), state.clone())];
            let findings = crate::check::run(&cluster, &nodes);
            let v = super::pod(
                &cluster,
                &nodes,
                &crate::check::share(findings.clone()),
                &name,
                "default",
            )
            .unwrap();
            let line = v.lines.into_iter().find(|l| l.kind == "overlay").unwrap();
            let ids: Vec<_> = findings.iter().map(|f| f.id).collect();
            (line, ids)
        };
        let (line, ids) = overlay(&state);
        assert_eq!(line.ok, Some(true), "{line:?} {ids:?}");
        let r = state
            .routes
            .iter_mut()
            .find(|r| r.dst.to_string() == cidr)
            .unwrap();
        r.flags.retain(|f| f != "onlink");
        let (line, ids) = overlay(&state);
        assert!(
            ids.contains(&crate::check::FindingId::RouteWrong),
            "{ids:?}"
        );
        assert_eq!(line.ok, Some(false), "{line:?}");
        assert!(
            line.text.contains(&format!("route {cidr} BROKEN")),
            "{}",
            line.text
        );
    }
}
