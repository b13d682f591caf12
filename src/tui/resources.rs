//! The cluster's objects for the resources view — Ingresses, Services, their
//! DNS names, Pods and Nodes — each with the first `check` finding that
//! names it, and the linked view of one of them (`inspect`'s, so the
//! dashboard and the command line show the same links). Pure: no I/O.

use std::collections::HashMap;

use crate::check::{Finding, FindingId, ObjectRef, Subject};
use crate::inspect::chain::{self, LinkedView};
use crate::model::{Cluster, dns};

/// The kinds the resources view lists, in the order traffic meets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Ingress,
    Service,
    Dns,
    Pod,
    Node,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Ingress,
        Kind::Service,
        Kind::Dns,
        Kind::Pod,
        Kind::Node,
    ];

    /// The short name shown in lists (kubectl's).
    pub fn label(self) -> &'static str {
        match self {
            Kind::Ingress => "ing",
            Kind::Service => "svc",
            Kind::Dns => "dns",
            Kind::Pod => "pod",
            Kind::Node => "node",
        }
    }

    /// The kind a `:` command names (`:pods`, `:po`, `:svc`, ...).
    pub fn from_word(w: &str) -> Option<Kind> {
        Some(match w {
            "ing" | "ingress" | "ingresses" => Kind::Ingress,
            "svc" | "service" | "services" => Kind::Service,
            "dns" => Kind::Dns,
            "po" | "pod" | "pods" => Kind::Pod,
            "no" | "node" | "nodes" => Kind::Node,
            _ => return None,
        })
    }

    /// The kind `check` writes in a finding's object for this one.
    fn object_kind(self) -> &'static str {
        match self {
            Kind::Ingress => "Ingress",
            Kind::Service => "Service",
            Kind::Dns => "dns",
            Kind::Pod => "Pod",
            Kind::Node => "Node",
        }
    }
}

/// One line of the resources view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub kind: Kind,
    /// `ns/name`; a DNS name's FQDN; a node's name.
    pub name: String,
    /// What the list shows beside the name (IP, type, node, hosts).
    pub detail: String,
    /// The first finding naming it.
    pub finding: Option<FindingId>,
}

/// What a trace can start or end at, as `trace` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceTarget {
    pub kind: Kind,
    /// The text `trace` resolves (`ns/name`, an FQDN, `http://host/path`).
    pub text: String,
}

fn qualified(m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    format!(
        "{}/{}",
        m.namespace.as_deref().unwrap_or(""),
        m.name.as_deref().unwrap_or("")
    )
}

/// Every object, Ingresses first and Nodes last, each marked by the first
/// finding that names it (a DNS name by its Service's).
pub fn list(cluster: &Cluster, findings: &[Finding]) -> Vec<Resource> {
    list_marked(cluster, &Marks::of(findings))
}

/// The finding that marks each object (by kind and `ns/name`) and node:
/// the first that names it. Two equal sets of marks give the same list.
#[derive(Debug, PartialEq, Eq)]
pub struct Marks<'a>(HashMap<(&'a str, String), FindingId>);

impl<'a> Marks<'a> {
    pub fn of(findings: &'a [Finding]) -> Marks<'a> {
        let mut named: HashMap<(&str, String), FindingId> = HashMap::new();
        for f in findings {
            for o in f.subjects().filter_map(Subject::object) {
                let key = match &o.namespace {
                    Some(ns) => format!("{ns}/{}", o.name),
                    None => o.name.clone(),
                };
                named.entry((o.kind.as_str(), key)).or_insert(f.id);
            }
            if let Some(n) = &f.node {
                named.entry(("Node", n.clone())).or_insert(f.id);
            }
        }
        Marks(named)
    }
}

/// The cluster's resources, each marked as `marks` say.
pub fn list_marked(cluster: &Cluster, marks: &Marks) -> Vec<Resource> {
    let named = &marks.0;
    let mark = |kind: Kind, name: &str| named.get(&(kind.object_kind(), name.to_string())).copied();
    let mut out = Vec::new();
    for i in &cluster.ingresses {
        let name = qualified(&i.metadata);
        let hosts: Vec<String> = ingress_urls(i);
        out.push(Resource {
            kind: Kind::Ingress,
            finding: mark(Kind::Ingress, &name),
            detail: hosts.join(" "),
            name,
        });
    }
    for (ns, name, spec, _) in cluster.service_specs() {
        let q = format!("{ns}/{name}");
        out.push(Resource {
            kind: Kind::Service,
            finding: mark(Kind::Service, &q),
            detail: format!(
                "{} {}",
                spec.type_.as_deref().unwrap_or("ClusterIP"),
                Some(crate::model::cluster::service_ips(spec).join(","))
                    .filter(|ips| !ips.is_empty())
                    .unwrap_or_else(|| "-".into())
            ),
            name: q,
        });
    }
    let mut last = String::new();
    for r in dns::records(cluster, dns::CLUSTER_DOMAIN) {
        // Services' names only (a pod's own name is its IP); a headless
        // Service's name has one record per endpoint: one line.
        let mut parts = r.name.split('.');
        let (Some(name), Some(ns), Some("svc")) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if r.name == last {
            continue;
        }
        last = r.name.clone();
        let svc = format!("{ns}/{name}");
        out.push(Resource {
            kind: Kind::Dns,
            finding: mark(Kind::Service, &svc),
            detail: r.ip.to_string(),
            name: r.name,
        });
    }
    for p in &cluster.pods {
        let name = qualified(&p.metadata);
        let status = p.status.as_ref();
        out.push(Resource {
            kind: Kind::Pod,
            finding: mark(Kind::Pod, &name),
            detail: format!(
                "{}  {}",
                status.and_then(|s| s.pod_ip.as_deref()).unwrap_or("-"),
                p.spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .unwrap_or("-")
            ),
            name,
        });
    }
    for n in &cluster.nodes {
        let name = n.metadata.name.clone().unwrap_or_default();
        out.push(Resource {
            kind: Kind::Node,
            finding: mark(Kind::Node, &name),
            // Both families' pod CIDRs of a dual-stack node.
            detail: n
                .spec
                .as_ref()
                .and_then(|s| match &s.pod_cidrs {
                    Some(all) if !all.is_empty() => Some(all.join(", ")),
                    _ => s.pod_cidr.clone(),
                })
                .unwrap_or_default(),
            name,
        });
    }
    out
}

/// `http://host/path` for each rule path of an Ingress (no host: `*`).
fn ingress_urls(i: &k8s_openapi::api::networking::v1::Ingress) -> Vec<String> {
    i.spec
        .iter()
        .flat_map(|s| s.rules.iter().flatten())
        .flat_map(|r| {
            let host = r.host.clone().unwrap_or_else(|| "*".into());
            r.http
                .iter()
                .flat_map(|h| &h.paths)
                .map(move |p| format!("http://{host}{}", p.path.as_deref().unwrap_or("/")))
        })
        .collect()
}

/// What a trace may start or end at: pods, Services, DNS names, ingress
/// URLs and nodes, from the resources list.
pub fn trace_targets(cluster: &Cluster, resources: &[Resource]) -> Vec<TraceTarget> {
    let mut out: Vec<TraceTarget> = resources
        .iter()
        .filter(|r| r.kind != Kind::Ingress)
        .map(|r| TraceTarget {
            kind: r.kind,
            text: r.name.clone(),
        })
        .collect();
    for i in &cluster.ingresses {
        for url in ingress_urls(i).into_iter().filter(|u| !u.contains("://*")) {
            out.push(TraceTarget {
                kind: Kind::Ingress,
                text: url,
            });
        }
    }
    out
}

/// The linked view of one object, `inspect`'s, over the snapshot's cluster.
pub fn linked(
    cluster: &Cluster,
    nodes: &[(String, crate::dataplane::NodeState)],
    findings: &[Finding],
    kind: Kind,
    name: &str,
) -> Result<LinkedView, String> {
    let view = match kind {
        Kind::Ingress => chain::ingress(cluster, nodes, findings, name, "default"),
        Kind::Service => chain::service(cluster, nodes, findings, name, "default"),
        Kind::Dns => chain::dns_name(cluster, nodes, findings, name, "default"),
        Kind::Pod => chain::pod(cluster, nodes, findings, name, "default"),
        Kind::Node => return Ok(node_view(cluster, findings, name)),
    };
    view.map_err(|e| e.to_string())
}

/// A node links down to its pods; `inspect` has no node view of its own.
fn node_view(cluster: &Cluster, findings: &[Finding], name: &str) -> LinkedView {
    let mut lines = vec![chain::Line {
        depth: 0,
        kind: "Node".into(),
        text: name.to_string(),
        ok: None,
        target: Some(ObjectRef::node(name)),
    }];
    for p in cluster.pods_on(name) {
        let ip = p.status.as_ref().and_then(|s| s.pod_ip.as_deref());
        lines.push(chain::Line {
            depth: 1,
            kind: "Pod".into(),
            text: format!("{}  {}", qualified(&p.metadata), ip.unwrap_or("-")),
            ok: None,
            target: Some(ObjectRef::namespaced(
                "Pod",
                p.metadata.namespace.as_deref().unwrap_or(""),
                p.metadata.name.clone().unwrap_or_default(),
            )),
        });
    }
    LinkedView {
        object: ObjectRef::node(name),
        lines,
        findings: findings
            .iter()
            .filter(|f| f.node.as_deref() == Some(name))
            .cloned()
            .collect(),
    }
}

/// The object a line of a linked view names, to drill into it.
pub fn target_of(line: &chain::Line) -> Option<(Kind, String)> {
    let o = line.target.as_ref()?;
    let kind = Kind::ALL.into_iter().find(|k| k.object_kind() == o.kind)?;
    let name = match &o.namespace {
        Some(ns) => format!("{ns}/{}", o.name),
        None => o.name.clone(),
    };
    Some((kind, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_cluster_lists_every_kind_and_marks_what_findings_name() {
        let (cluster, state) = crate::check::fixtures::seed();
        let states = vec![("k8s-node-12".to_string(), state)];
        let findings = crate::check::run(&cluster, &states);
        let r = list(&cluster, &findings);
        for k in Kind::ALL {
            assert!(r.iter().any(|x| x.kind == k), "{k:?} missing");
        }
        let dns = r
            .iter()
            .find(|x| x.name == "linux0224-nginx.test-svc-ns.svc.cluster.local")
            .expect("the nginx Service's DNS name");
        assert_eq!(dns.kind, Kind::Dns);
        // Every finding naming a listed object marks it.
        for f in &findings {
            for o in f
                .subjects()
                .filter_map(Subject::object)
                .filter(|o| o.kind == "Service")
            {
                let q = format!("{}/{}", o.namespace.as_deref().unwrap_or(""), o.name);
                let row = r.iter().find(|x| x.kind == Kind::Service && x.name == q);
                assert!(row.is_some_and(|x| x.finding.is_some()), "{q}");
            }
        }
    }

    #[test]
    fn drill_down_names_the_object_of_a_line() {
        // The object a line is about is its typed target, whatever its text says.
        let line = |kind: &str, text: &str, target: Option<ObjectRef>| chain::Line {
            depth: 1,
            kind: kind.into(),
            text: text.into(),
            ok: None,
            target,
        };
        assert_eq!(
            target_of(&line(
                "Pod",
                "ns/other  10.2.1.5  Ready  on n1",
                Some(ObjectRef::namespaced("Pod", "ns", "web-1"))
            )),
            Some((Kind::Pod, "ns/web-1".into()))
        );
        assert_eq!(
            target_of(&line(
                "Ingress",
                "reached from Ingress ns/web",
                Some(ObjectRef::namespaced("Ingress", "ns", "web"))
            )),
            Some((Kind::Ingress, "ns/web".into()))
        );
        assert_eq!(target_of(&line("dns", "a.b -> 1.2.3.4", None)), None);
        // Every Pod, Service and Node line of a real linked view has one.
        let (cluster, state) = crate::check::fixtures::seed();
        let states = vec![("k8s-node-12".to_string(), state)];
        let findings = crate::check::run(&cluster, &states);
        let v = chain::service(
            &cluster,
            &states,
            &findings,
            "test-svc-ns/linux0224-nginx",
            "default",
        )
        .unwrap();
        for l in v.lines.iter().filter(|l| {
            ["Pod", "Service", "Node"].contains(&l.kind.as_str()) && l.ok != Some(false)
        }) {
            assert!(target_of(l).is_some(), "{l:?}");
        }
    }
}
