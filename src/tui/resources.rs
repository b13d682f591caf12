//! The cluster's objects for the resources view — Ingresses, Services, their
//! DNS names, Pods and Nodes — each with the first `check` finding that
//! names it, and the linked view of one of them (`inspect`'s, so the
//! dashboard and the command line show the same links). Pure: no I/O.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::check::{Finding, FindingId, ObjectRef, Subject};
use crate::inspect::chain::{self, LinkedView};
use crate::model::index::HashMap;
use crate::model::reading::ApiKind;
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
}

/// A line as a view shows it: the resource and the first finding naming it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listed<'a> {
    pub kind: Kind,
    pub name: &'a str,
    pub detail: &'a str,
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

/// The resources view's lines for one set of objects, Ingresses first and
/// Nodes last, with the lines a finding about each object marks. Built in
/// sections, one per [`Kind`], each shared by every listing after it
/// until the objects it shows change: a watch event for one EndpointSlice
/// lists the DNS names again, not 150,000 pods (175,000 lines at scale,
/// 0.1 s). A change in the findings only marks lines again
/// ([`Listing::marks`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Listing {
    /// In [`Kind::ALL`]'s order.
    sections: Vec<Arc<Section>>,
}

/// One kind's lines.
#[derive(Debug, Default, PartialEq, Eq)]
struct Section {
    rows: Vec<Resource>,
    /// The lines of each object, by the kind `check` writes and `ns/name`
    /// (a node: its name): a Service's line, and in the DNS names'
    /// section its names' lines.
    lines_of: HashMap<(&'static str, String), Vec<u32>>,
}

impl Section {
    /// `rows`, each marked by its own object or by the one given beside it.
    fn of(rows: impl Iterator<Item = (Resource, Option<(Kind, String)>)>) -> Section {
        let mut section = Section::default();
        for (r, by) in rows {
            let (kind, name) = by.unwrap_or_else(|| (r.kind, r.name.clone()));
            let line = section.rows.len() as u32;
            section
                .lines_of
                .entry((kind.object_kind(), name))
                .or_default()
                .push(line);
            section.rows.push(r);
        }
        section
    }
}

impl Kind {
    /// The kinds of API objects a section of this kind shows.
    fn reads(self) -> &'static [ApiKind] {
        match self {
            Kind::Ingress => &[ApiKind::Ingresses],
            Kind::Service => &[ApiKind::Services],
            Kind::Dns => &[ApiKind::Services, ApiKind::Endpoints],
            Kind::Pod => &[ApiKind::Pods],
            Kind::Node => &[ApiKind::Nodes],
        }
    }
}

impl Listing {
    /// Every object of the cluster.
    pub fn of(cluster: &Cluster) -> Listing {
        Listing::after(cluster, None)
    }

    /// Every object of the cluster, taking over from `before` the sections
    /// whose objects are not among the kinds `changed`.
    pub fn after(cluster: &Cluster, before: Option<(&Listing, &BTreeSet<ApiKind>)>) -> Listing {
        let sections = Kind::ALL
            .into_iter()
            .enumerate()
            .map(|(i, kind)| match before {
                Some((b, changed)) if !kind.reads().iter().any(|k| changed.contains(k)) => {
                    b.sections[i].clone()
                }
                _ => Arc::new(section(cluster, kind)),
            })
            .collect();
        Listing { sections }
    }

    /// Every line, in order.
    pub fn rows(&self) -> impl Iterator<Item = &Resource> {
        self.sections.iter().flat_map(|s| &s.rows)
    }

    pub fn len(&self) -> usize {
        self.sections.iter().map(|s| s.rows.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `other` shares every section with this one (nothing was
    /// listed again).
    pub fn same(&self, other: &Listing) -> bool {
        self.sections.len() == other.sections.len()
            && self
                .sections
                .iter()
                .zip(&other.sections)
                .all(|(a, b)| Arc::ptr_eq(a, b))
    }

    /// Each line's mark: the first of `findings` naming its object (a DNS
    /// name: its Service), and for a node the first finding about it.
    /// Costs what the findings name, not the 175,000 lines.
    pub fn marks<'a>(
        &self,
        findings: impl IntoIterator<Item = &'a Arc<Finding>>,
    ) -> Vec<Option<FindingId>> {
        let mut marks = vec![None; self.len()];
        let mut mark = |kind: &str, name: String, id: FindingId| {
            let Some(kind) = Kind::ALL
                .into_iter()
                .map(Kind::object_kind)
                .find(|k| *k == kind)
            else {
                return;
            };
            let key = (kind, name);
            let mut offset = 0;
            for s in &self.sections {
                for &i in s.lines_of.get(&key).into_iter().flatten() {
                    marks[offset + i as usize].get_or_insert(id);
                }
                offset += s.rows.len();
            }
        };
        let mut last_node: Option<&str> = None;
        // An object's line takes the first finding naming it: the others
        // naming it (a peer is named by its neigh, FDB entry and route on
        // every read node: 45,000 findings for 5,000 lines at scale) are
        // passed over before a name is built for them.
        // foldhash, as the index's maps: 45,000 findings' subjects are
        // hashed a reading, and SipHash was most of the marks' time.
        let mut seen: crate::model::index::HashSet<_> = Default::default();
        for f in findings {
            for o in f.subjects().filter_map(Subject::object) {
                if !seen.insert((o.kind.as_str(), o.namespace.as_deref(), o.name.as_str())) {
                    continue;
                }
                let name = match &o.namespace {
                    Some(ns) => format!("{ns}/{}", o.name),
                    None => o.name.clone(),
                };
                mark(o.kind.as_str(), name, f.id);
            }
            // A node's line is marked by its first finding: the rest of
            // its findings (15,000 a node at scale, sorted together) have
            // nothing to add.
            if let Some(n) = &f.node
                && last_node != Some(n.as_str())
            {
                mark("Node", n.clone(), f.id);
                last_node = Some(n);
            }
        }
        marks
    }

    /// The lines whose `keep` is true, with their marks (`-n NS`).
    pub fn retain(
        &self,
        marks: &[Option<FindingId>],
        keep: impl Fn(&Resource) -> bool,
    ) -> (Listing, Vec<Option<FindingId>>) {
        let mut kept_marks = Vec::new();
        let mut offset = 0;
        let sections = self
            .sections
            .iter()
            .map(|s| {
                let kept: Vec<usize> = (0..s.rows.len()).filter(|&i| keep(&s.rows[i])).collect();
                let mut at = vec![None; s.rows.len()];
                for (new, &old) in kept.iter().enumerate() {
                    at[old] = Some(new as u32);
                }
                let lines_of = s
                    .lines_of
                    .iter()
                    .filter_map(|(k, lines)| {
                        let lines: Vec<u32> =
                            lines.iter().filter_map(|&i| at[i as usize]).collect();
                        (!lines.is_empty()).then(|| (k.clone(), lines))
                    })
                    .collect();
                kept_marks.extend(
                    kept.iter()
                        .map(|&i| marks.get(offset + i).copied().flatten()),
                );
                offset += s.rows.len();
                Arc::new(Section {
                    rows: kept.iter().map(|&i| s.rows[i].clone()).collect(),
                    lines_of,
                })
            })
            .collect();
        (Listing { sections }, kept_marks)
    }
}

/// One kind's lines of the resources view.
fn section(cluster: &Cluster, kind: Kind) -> Section {
    let own = |kind: Kind, name: String, detail: String| (Resource { kind, name, detail }, None);
    match kind {
        Kind::Ingress => Section::of(cluster.ingresses.iter().map(|i| {
            own(
                Kind::Ingress,
                qualified(&i.metadata),
                ingress_urls(i).join(" "),
            )
        })),
        Kind::Service => Section::of(cluster.service_specs().map(|(ns, name, spec, _)| {
            let detail = format!(
                "{} {}",
                spec.type_.as_deref().unwrap_or("ClusterIP"),
                Some(crate::model::cluster::service_ips(spec).join(","))
                    .filter(|ips| !ips.is_empty())
                    .unwrap_or_else(|| "-".into())
            );
            own(Kind::Service, format!("{ns}/{name}"), detail)
        })),
        Kind::Dns => {
            let mut last = String::new();
            let mut rows = Vec::new();
            for r in dns::service_records(cluster, dns::CLUSTER_DOMAIN) {
                // Services' names only (a pod's own name is its IP); a
                // headless Service's name has one record per endpoint: one
                // line, marked by its Service.
                let mut parts = r.name.split('.');
                let (Some(name), Some(ns), Some("svc")) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                if r.name == last {
                    continue;
                }
                let svc = format!("{ns}/{name}");
                last = r.name.clone();
                let row = Resource {
                    kind: Kind::Dns,
                    name: r.name,
                    detail: r.ip.to_string(),
                };
                rows.push((row, Some((Kind::Service, svc))));
            }
            Section::of(rows.into_iter())
        }
        Kind::Pod => Section::of(cluster.pods.iter().map(|p| {
            let status = p.status.as_ref();
            let detail = format!(
                "{}  {}",
                status.and_then(|s| s.pod_ip.as_deref()).unwrap_or("-"),
                p.spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .unwrap_or("-")
            );
            own(Kind::Pod, qualified(&p.metadata), detail)
        })),
        Kind::Node => Section::of(cluster.nodes.iter().map(|n| {
            // Both families' pod CIDRs of a dual-stack node.
            let detail = n
                .spec
                .as_ref()
                .and_then(|s| match &s.pod_cidrs {
                    Some(all) if !all.is_empty() => Some(all.join(", ")),
                    _ => s.pod_cidr.clone(),
                })
                .unwrap_or_default();
            own(
                Kind::Node,
                n.metadata.name.clone().unwrap_or_default(),
                detail,
            )
        })),
    }
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
pub fn trace_targets(cluster: &Cluster, resources: &Listing) -> Vec<TraceTarget> {
    let mut out: Vec<TraceTarget> = resources
        .rows()
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
    findings: &[Arc<Finding>],
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
fn node_view(cluster: &Cluster, findings: &[Arc<Finding>], name: &str) -> LinkedView {
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
            .map(|f| (**f).clone())
            .collect(),
        unread: cluster.unread.clone(),
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
        let findings = crate::check::share(crate::check::run(&cluster, &states));
        let listing = Listing::of(&cluster);
        let marks = listing.marks(&findings);
        let r: Vec<Listed> = listing
            .rows()
            .zip(&marks)
            .map(|(r, m)| Listed {
                kind: r.kind,
                name: &r.name,
                detail: &r.detail,
                finding: *m,
            })
            .collect();
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
        // A DNS name is marked as its Service is; a node by its findings.
        let svc = r
            .iter()
            .find(|x| x.kind == Kind::Service && x.name == "test-svc-ns/linux0224-nginx")
            .unwrap();
        assert_eq!(dns.finding, svc.finding);
        let node_mark = |findings: &[Arc<Finding>]| {
            let at = listing
                .rows()
                .position(|x| x.kind == Kind::Node && x.name == "k8s-node-12")
                .unwrap();
            listing.marks(findings)[at]
        };
        assert_eq!(node_mark(&findings), None, "the seed node is healthy");
        let (_, mut broken) = crate::check::fixtures::seed();
        broken
            .routes
            .retain(|r| r.dev.as_deref() != Some("flannel.1"));
        let broken = [("k8s-node-12".to_string(), broken)];
        let about_node = crate::check::share(crate::check::run(&cluster, &broken));
        assert_eq!(
            node_mark(&about_node),
            Some(crate::check::FindingId::RouteMissing),
            "a node is marked by the first finding about it"
        );
        // No finding, no mark.
        assert!(listing.marks(&[]).iter().all(Option::is_none));
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
        let findings = crate::check::share(crate::check::run(&cluster, &states));
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
