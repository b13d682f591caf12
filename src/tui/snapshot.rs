//! What the dashboard shows, taken in one go off the render thread: the
//! cluster's findings from `check`, the node states they were read from,
//! and per node the entries `expect()` says it should hold, each marked by
//! the finding that names it. The dashboard computes no verdict of its
//! own: an entry's mark is the finding's.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::resources::{Resource, TraceTarget};

use crate::check::{Finding, Severity};
use crate::dataplane::NodeState;
use crate::model::{Cluster, expect};

/// How an entry stands against what flannel would program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    Ok,
    Missing,
    Wrong,
    Stale,
    /// Another finding names it (its ID).
    Other(String),
}

impl Mark {
    fn of(finding_id: &str) -> Mark {
        if finding_id.contains("missing") {
            Mark::Missing
        } else if finding_id.contains("stale") {
            Mark::Stale
        } else if finding_id.contains("unbound") {
            Mark::Missing
        } else if finding_id.contains("wrong")
            || finding_id.contains("mismatch")
            || finding_id.contains("not-permanent")
            || finding_id.contains("drift")
        {
            Mark::Wrong
        } else {
            Mark::Other(finding_id.to_string())
        }
    }

    pub fn label(&self) -> &str {
        match self {
            Mark::Ok => "ok",
            Mark::Missing => "missing",
            Mark::Wrong => "wrong",
            Mark::Stale => "stale",
            Mark::Other(id) => id,
        }
    }
}

/// One line of a node's view: what should be there, what is, the mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `device`, `route`, `neigh` or `fdb`.
    pub kind: &'static str,
    pub expected: String,
    pub mark: Mark,
    /// The finding that marks it, and its summary.
    pub finding: Option<(String, String)>,
}

/// A node's line in the overview.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    pub name: String,
    /// Whether its dataplane was read (a lab node, or this machine); the
    /// others are known from the API only.
    pub read: bool,
    /// Findings about flannel's state and the node itself, by severity.
    pub node_findings: [usize; 3],
    /// Findings about kube-proxy's rules, by severity.
    pub proxy_findings: [usize; 3],
}

/// Everything one frame needs.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Where it was read from (`lab seed`, a bundle path, a kubeconfig).
    pub source: String,
    pub nodes: Vec<NodeRow>,
    pub findings: Vec<Finding>,
    /// Per node, its entries against `expect()`.
    pub entries: BTreeMap<String, Vec<Entry>>,
    /// Per read node, what `repair` would do.
    pub plans: BTreeMap<String, crate::repair::Plan>,
    /// The cluster and node states it was built from (the linked and trace
    /// views work on them).
    pub cluster: Arc<Cluster>,
    pub states: Arc<Vec<(String, NodeState)>>,
    /// Ingresses, Services, DNS names, Pods and Nodes, marked.
    pub resources: Vec<Resource>,
    /// What a trace can start or end at.
    pub trace_targets: Vec<TraceTarget>,
}

fn severity_index(s: Severity) -> usize {
    match s {
        Severity::Error => 0,
        Severity::Warning => 1,
        Severity::Info => 2,
    }
}

fn is_proxy(f: &Finding) -> bool {
    f.id.starts_with("kube-proxy") || f.id.starts_with("ipvs")
}

impl Snapshot {
    /// Builds the snapshot from what `check` read and found.
    pub fn build(
        source: String,
        cluster: Arc<Cluster>,
        states: Arc<Vec<(String, NodeState)>>,
        findings: Vec<Finding>,
    ) -> Snapshot {
        // Every node the API knows, then any read node it does not.
        let mut names: Vec<String> = cluster
            .nodes
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        for (name, _) in states.iter() {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        let mut nodes: Vec<NodeRow> = names
            .into_iter()
            .map(|name| NodeRow {
                read: states.iter().any(|(n, _)| *n == name),
                name,
                node_findings: [0; 3],
                proxy_findings: [0; 3],
            })
            .collect();
        let index: std::collections::HashMap<String, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i))
            .collect();
        for f in &findings {
            let Some(&row) = f.node.as_ref().and_then(|n| index.get(n)) else {
                continue;
            };
            let row = &mut nodes[row];
            let counts = if is_proxy(f) {
                &mut row.proxy_findings
            } else {
                &mut row.node_findings
            };
            counts[severity_index(f.severity)] += 1;
        }
        let mut entries = BTreeMap::new();
        let mut plans = BTreeMap::new();
        let net = crate::model::ClusterNetwork::from_cluster(&cluster);
        for (name, state) in states.iter() {
            entries.insert(name.clone(), node_entries(&cluster, name, state, &findings));
            let expected = net
                .as_ref()
                .map(|net| expect::iptables(&cluster, name, net))
                .unwrap_or_default();
            let plan = crate::repair::plan(name, &findings, state, &expected, &Default::default());
            plans.insert(name.clone(), plan);
        }
        let resources = super::resources::list(&cluster, &findings);
        let trace_targets = super::resources::trace_targets(&cluster, &resources);
        Snapshot {
            source,
            nodes,
            findings,
            entries,
            plans,
            cluster,
            states,
            resources,
            trace_targets,
        }
    }

    /// The findings of one node, or of the cluster (`None`).
    pub fn findings_of<'a>(&'a self, node: Option<&'a str>) -> impl Iterator<Item = &'a Finding> {
        self.findings
            .iter()
            .filter(move |f| f.node.as_deref() == node)
    }
}

/// What changed from `old` to `new`: findings that appeared (`+`) and
/// went (`-`), as `+id (node)`.
pub fn changes(old: &Snapshot, new: &Snapshot) -> Vec<String> {
    let key = |f: &Finding| format!("{} ({})", f.id, f.node.as_deref().unwrap_or("cluster"));
    let before: std::collections::BTreeSet<String> = old.findings.iter().map(key).collect();
    let after: std::collections::BTreeSet<String> = new.findings.iter().map(key).collect();
    after
        .difference(&before)
        .map(|k| format!("+{k}"))
        .chain(before.difference(&after).map(|k| format!("-{k}")))
        .collect()
}

/// kube-proxy's tree on the node: each Service rule of KUBE-SERVICES, the
/// endpoint chains its KUBE-SVC chain picks (with probability and DNAT),
/// marked by the finding naming the Service's chain; then the chains
/// findings say are missing.
fn chain_entries(state: &NodeState, mine: &[&Finding]) -> Vec<Entry> {
    let mut out = Vec::new();
    let finding_on = |chain: &str| {
        let name = format!("nat/{chain}");
        mine.iter().find(|f| {
            f.objects
                .iter()
                .any(|o| o.kind == "chain" && o.name == name)
        })
    };
    let Some(rs) = crate::check::iptables::kube_proxy_ruleset(state) else {
        return out;
    };
    let mut shown = std::collections::HashSet::new();
    for r in rs.specs("nat", "KUBE-SERVICES") {
        let Some(svc) = r.target.clone().filter(|t| t.starts_with("KUBE-SVC-")) else {
            continue;
        };
        let f = finding_on(&svc);
        out.push(Entry {
            kind: "svc",
            expected: format!(
                "{} {}:{} → {svc}",
                r.comment.clone().unwrap_or_default(),
                r.dst_host().unwrap_or("?"),
                r.dport.map(|p| p.to_string()).unwrap_or_default()
            ),
            mark: f.map(|f| Mark::of(&f.id)).unwrap_or(Mark::Ok),
            finding: f.map(|f| (f.id.clone(), f.summary.clone())),
        });
        for sep in rs.specs("nat", &svc) {
            let Some(t) = sep.target.clone().filter(|t| t.starts_with("KUBE-SEP-")) else {
                continue;
            };
            let dnat = rs
                .specs("nat", &t)
                .iter()
                .find_map(|d| d.to_destination.clone())
                .unwrap_or_else(|| "?".into());
            out.push(Entry {
                kind: "sep",
                expected: format!(
                    "  {t} → {dnat}{}",
                    sep.probability
                        .map(|p| format!("  p={p:.3}"))
                        .unwrap_or_default()
                ),
                mark: Mark::Ok,
                finding: None,
            });
        }
        shown.insert(svc);
    }
    for f in mine {
        for o in f.objects.iter().filter(|o| o.kind == "chain") {
            let chain = o.name.trim_start_matches("nat/");
            if chain.starts_with("KUBE-SVC-") && !shown.contains(chain) {
                shown.insert(chain.to_string());
                out.push(Entry {
                    kind: "svc",
                    expected: format!("{chain} (not in KUBE-SERVICES)"),
                    mark: Mark::of(&f.id),
                    finding: Some((f.id.clone(), f.summary.clone())),
                });
            }
        }
    }
    out
}

/// kube-proxy's IPVS state on the node: each virtual server with its real
/// servers, marked by the IPVS finding that names its address; then what
/// findings say is missing (a virtual server, a ClusterIP on kube-ipvs0).
fn ipvs_entries(state: &NodeState, mine: &[&Finding]) -> Vec<Entry> {
    let ipvs: Vec<&&Finding> = mine.iter().filter(|f| f.id.starts_with("ipvs")).collect();
    let entry = |kind, expected: String, f: Option<&&&Finding>| Entry {
        kind,
        expected,
        mark: f.map(|f| Mark::of(&f.id)).unwrap_or(Mark::Ok),
        finding: f.map(|f| (f.id.clone(), f.summary.clone())),
    };
    let mut out = Vec::new();
    for v in &state.ipvs {
        // Findings name a virtual server as `PROTO/ADDR:PORT` in their summary.
        let named = format!("{}/{} ", v.proto, v.addr);
        let f = ipvs.iter().find(|f| f.summary.contains(&named));
        out.push(entry(
            "ipvs",
            format!(
                "{} {} {}{}  ({} real)",
                v.proto,
                v.addr,
                v.scheduler,
                v.persistent
                    .map(|p| format!(" persistent {p}"))
                    .unwrap_or_default(),
                v.reals.len()
            ),
            f,
        ));
        for r in &v.reals {
            out.push(entry(
                "real",
                format!("  -> {} {} weight {}", r.addr, r.forward, r.weight),
                None,
            ));
        }
    }
    for f in ipvs.iter().filter(|f| f.id != "ipvs-real-servers-mismatch") {
        out.push(entry(
            "ipvs",
            format!("{} (not on the node)", f.summary),
            Some(f),
        ));
    }
    out
}

/// The node's expected devices and per-peer entries, each marked by the
/// finding naming it; then what findings name that nothing expects (stale).
fn node_entries(
    cluster: &Cluster,
    node: &str,
    state: &NodeState,
    findings: &[Finding],
) -> Vec<Entry> {
    let mine: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.node.as_deref() == Some(node))
        .collect();
    let marked = |kind: &'static str, name: &str, expected: String| {
        let f = mine
            .iter()
            .find(|f| f.objects.iter().any(|o| o.kind == kind && o.name == name));
        Entry {
            kind,
            expected,
            mark: f.map(|f| Mark::of(&f.id)).unwrap_or(Mark::Ok),
            finding: f.map(|f| (f.id.clone(), f.summary.clone())),
        }
    };
    let mut out = Vec::new();
    let mtu = state.link("eth0").map(|l| l.mtu).unwrap_or(1500);
    let Ok(exp) = expect::flannel(cluster, node, mtu) else {
        return out;
    };
    let vtep = crate::model::flannel::VTEP_DEVICE;
    out.push(marked(
        "device",
        vtep,
        format!(
            "{vtep} vxlan id 1 mtu {} mac {}",
            exp.vtep_mtu, exp.lease.vtep_mac
        ),
    ));
    out.push(marked(
        "device",
        "cni0",
        format!("cni0 {}", exp.bridge_address),
    ));
    let mut named = Vec::new();
    for p in &exp.peers {
        let route = p.route_dst.to_string();
        let neigh = format!("{} dev {vtep}", p.neigh_ip);
        let fdb = format!("{} dev {vtep}", p.vtep_mac);
        out.push(marked(
            "neigh",
            &neigh,
            format!(
                "{} lladdr {} PERMANENT  ({})",
                p.neigh_ip, p.vtep_mac, p.peer
            ),
        ));
        out.push(marked(
            "fdb",
            &fdb,
            format!("{} dst {} self permanent", p.vtep_mac, p.public_ip),
        ));
        out.push(marked(
            "route",
            &route,
            format!("{route} via {} dev {vtep} onlink", p.neigh_ip),
        ));
        named.extend([("route", route), ("neigh", neigh), ("fdb", fdb)]);
    }
    if crate::model::kube_proxy::proxy_mode(cluster) == crate::model::kube_proxy::ProxyMode::Ipvs {
        out.extend(ipvs_entries(state, &mine));
    } else {
        out.extend(chain_entries(state, &mine));
    }
    for f in &mine {
        for o in &f.objects {
            let overlay = matches!(o.kind.as_str(), "route" | "neigh" | "fdb");
            if overlay && !named.iter().any(|(k, n)| *k == o.kind && *n == o.name) {
                out.push(Entry {
                    kind: match o.kind.as_str() {
                        "route" => "route",
                        "neigh" => "neigh",
                        _ => "fdb",
                    },
                    expected: format!("{} (not expected)", o.name),
                    mark: Mark::Stale,
                    finding: Some((f.id.clone(), f.summary.clone())),
                });
            }
        }
    }
    out
}
