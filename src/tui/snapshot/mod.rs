//! What the dashboard shows, taken in one go off the render thread: the
//! cluster's findings from `check`, the node states they were read from,
//! and per node the entries `expect()` says it should hold, each marked by
//! the finding that names it. The dashboard computes no verdict of its
//! own: an entry's mark is the finding's.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::resources::{Listed, Listing, TraceTarget};

mod blocks;
mod overlay;

pub use blocks::Blocks;
pub use overlay::OverlayExpected;
use overlay::overlay_entries;

use crate::access::ReadVia;
use crate::check::incremental::Verdicts;
use crate::check::reach::{NotRead, Unreached};
use crate::check::runs::Tally;
use crate::check::{self, Finding, FindingId, Findings, Subject};
use crate::dataplane::{Mac, NodeState};
use crate::model::index::{HashMap, HashSet};
use crate::model::kube_proxy::ProxyMode;
use crate::model::reading::ApiKind;
use crate::model::{Cluster, expect};

/// How an entry stands against what flannel or kube-proxy would program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    Ok,
    Missing,
    Wrong,
    Stale,
    /// Another finding names it (its ID says how).
    Other(FindingId),
}

impl Mark {
    fn from(f: &Finding, mark: check::Mark) -> Mark {
        match mark {
            check::Mark::Missing => Mark::Missing,
            check::Mark::Wrong => Mark::Wrong,
            check::Mark::Stale => Mark::Stale,
            check::Mark::Other => Mark::Other(f.id),
        }
    }

    pub fn label(&self) -> &str {
        match self {
            Mark::Ok => "ok",
            Mark::Missing => "missing",
            Mark::Wrong => "wrong",
            Mark::Stale => "stale",
            Mark::Other(id) => id.as_str(),
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
    pub finding: Option<(FindingId, String)>,
}

/// A node's entries: flannel's (its devices, the neigh, FDB entry and
/// route per peer, the overlay entries nothing expects) and kube-proxy's
/// (its Service and endpoint chains, nftables elements or IPVS servers).
/// Kept apart because a route, neigh or FDB change re-marks the 15,000
/// overlay lines of a 5,000-node cluster while kube-proxy's 40,000 lines
/// for 10,000 Services stay as they were, and the other way round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeEntries {
    pub overlay: Blocks,
    pub proxy: Blocks,
    /// What the overview says of them.
    pub summary: NodeSummary,
    /// kube-proxy's chains as read (iptables mode), kept to mark them
    /// again while the rules stay.
    pub tree: Option<Arc<ChainTree>>,
    /// flannel's expected lines before any finding marks them, kept while
    /// the Nodes, the ConfigMaps and the node's MTU stay: a change of the
    /// node's findings marks its 15,000 lines (5,000 peers) again without
    /// writing them again.
    pub overlay_expected: Option<Arc<OverlayExpected>>,
}

/// A read node's overlay and kube-proxy state in a few numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeSummary {
    /// Peers whose neigh, FDB entry and route are all as flannel writes them.
    pub peers_ok: usize,
    /// Peers the node should reach (every other node with a lease).
    pub peers: usize,
    /// The proxier whose state the node holds, and the Services it has
    /// programmed (KUBE-SERVICES' Service chains, `service-ips` elements
    /// or IPVS virtual servers).
    pub proxy: Option<(ProxyMode, usize)>,
}

impl NodeEntries {
    /// flannel's entries, then kube-proxy's.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.overlay.iter().chain(self.proxy.iter())
    }

    pub fn len(&self) -> usize {
        self.overlay.len() + self.proxy.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A node's line in the overview: what the API says of it, and what was
/// read of its dataplane — or, in words, why nothing was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    pub name: String,
    /// Whether its dataplane was read (a lab node, or this machine); the
    /// others are known from the API only.
    pub read: bool,
    /// Pods scheduled on it.
    pub pods: usize,
    /// Its flannel lease: pod CIDR, VtepMAC and public address.
    pub lease: Option<(ipnet::Ipv4Net, Mac, std::net::Ipv4Addr)>,
    /// Read nodes: peers, kube-proxy's mode and Services.
    pub summary: Option<NodeSummary>,
    /// Read nodes: the iptables backends holding rules (`nft`, `legacy`).
    pub iptables: Vec<String>,
    /// How it was read ([`Snapshot::with_reading`]).
    pub via: Option<ReadVia>,
    /// Why it was not read, when the source said.
    pub not_read: Option<Unreached>,
    /// Findings about flannel's state and the node itself, by severity.
    pub node_findings: [usize; 3],
    /// Findings about kube-proxy's rules, by severity.
    pub proxy_findings: [usize; 3],
}

/// The cluster's objects in numbers, for the header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub nodes: usize,
    pub pods: usize,
    pub services: usize,
    /// Endpoints in the EndpointSlices: ready, of all.
    pub endpoints_ready: usize,
    pub endpoints: usize,
    pub ingresses: usize,
}

impl Totals {
    pub fn of(cluster: &Cluster) -> Totals {
        Totals::with_endpoints(cluster, endpoints_of(cluster.endpoint_slices.iter()))
    }

    /// The totals of `cluster`, where the kinds `changed` are all that
    /// changed since `before` (whose totals these are): the endpoints are
    /// counted again only when the slices changed, and then, when the
    /// watches replaced slices in place, only the replaced ones — not
    /// 30,000 endpoints of 10,000 slices for each endpoint or pod that
    /// changes.
    fn after(self, before: &Cluster, cluster: &Cluster, changed: &BTreeSet<ApiKind>) -> Totals {
        let slices = &cluster.endpoint_slices;
        let endpoints = if !changed.contains(&ApiKind::Endpoints) {
            (self.endpoints_ready, self.endpoints)
        } else if let Some(replaced) = slices.replaced(&before.endpoint_slices) {
            let went = endpoints_of(replaced.iter().map(|(_, o)| *o));
            let came = endpoints_of(replaced.iter().map(|(n, _)| *n));
            (
                (self.endpoints_ready + came.0).saturating_sub(went.0),
                (self.endpoints + came.1).saturating_sub(went.1),
            )
        } else {
            endpoints_of(slices.iter())
        };
        Totals::with_endpoints(cluster, endpoints)
    }

    /// The objects of `cluster` counted, with its endpoints (ready, all).
    fn with_endpoints(cluster: &Cluster, (endpoints_ready, endpoints): (usize, usize)) -> Totals {
        Totals {
            nodes: cluster.nodes.len(),
            pods: cluster.pods.len(),
            services: cluster.services.len(),
            endpoints_ready,
            endpoints,
            ingresses: cluster.ingresses.len(),
        }
    }
}

/// The ready endpoints and all endpoints of `slices`.
fn endpoints_of<'a>(
    slices: impl Iterator<Item = &'a k8s_openapi::api::discovery::v1::EndpointSlice>,
) -> (usize, usize) {
    let endpoints = slices.flat_map(|s| &s.endpoints);
    endpoints.fold((0, 0), |(ready, all), ep| {
        let r = crate::model::cluster::endpoint_ready(ep);
        (ready + usize::from(r), all + 1)
    })
}

/// How the node states of a snapshot were read: when, through what, and
/// why the nodes that were not read were not.
#[derive(Debug, Clone)]
pub struct Reading {
    pub at: std::time::SystemTime,
    pub via: Vec<(String, ReadVia)>,
    pub not_read: Arc<Vec<NotRead>>,
}

/// Everything one frame needs.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Where it was read from (`lab seed`, a bundle path, a kubeconfig).
    pub source: String,
    /// When the node states were read ([`Snapshot::with_reading`]).
    pub read_at: Option<std::time::SystemTime>,
    /// When the reader began the reading this snapshot shows: whatever the
    /// kernel or the API server changed before then is in it (a bench
    /// times a change's way to the screen by it).
    pub reading_began: Option<std::time::Instant>,
    /// What that reading cost, phase by phase.
    pub reading_cost: Option<ReadingCost>,
    pub totals: Totals,
    /// Each shared with the snapshots after it until it changes.
    pub nodes: Vec<Arc<NodeRow>>,
    /// The reading whose ways and reasons the rows hold
    /// ([`Snapshot::with_reading`]): the same again (the reader keeps the
    /// list of unread nodes while no whole reading asks again) leaves the
    /// rows as they are, unvisited.
    pub(crate) rows_reading: Option<Reading>,
    /// Sorted as `check` sorts them, a shared run per node (the kept
    /// verdicts' own); shared with the nodes' plans.
    pub findings: Findings,
    /// Per node, its entries against `expect()`.
    pub entries: BTreeMap<String, NodeEntries>,
    /// Per read node, what `repair` would do (worked out when first
    /// asked for: [`Snapshot::plan`]).
    pub plans: BTreeMap<String, LazyPlan>,
    /// The cluster and node states it was built from (the linked and trace
    /// views work on them).
    pub cluster: Arc<Cluster>,
    pub states: Arc<Vec<(String, NodeState)>>,
    /// Ingresses, Services, DNS names, Pods and Nodes (shared with the
    /// next snapshot while the objects stay the same: 175,000 lines at
    /// scale).
    pub resources: Arc<Listing>,
    /// Each resource line's mark: the first finding naming its object,
    /// worked out when a view first asks ([`Snapshot::marks`]): at scale
    /// the findings name 45,000 subjects, and a change on its way to the
    /// overview does not wait for the resources view's marks.
    pub resource_marks: std::sync::OnceLock<Vec<Option<FindingId>>>,
    /// What a trace can start or end at.
    pub trace_targets: Arc<Vec<TraceTarget>>,
}

/// What one reading cost the reader, phase by phase: where a slow
/// change's way to the screen went when the reader, not the wait for it,
/// was slow (the watch bench prints its slowest readings so;
/// `RUST_LOG=knetdoctor::reading=debug` logs each).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadingCost {
    /// The objects: copied from the watches' stores, read, or kept.
    pub objects: std::time::Duration,
    /// The nodes' states read (or kept) and judged with the objects.
    pub gather: std::time::Duration,
    /// Of `gather`, the verdicts' update (`check::incremental`).
    pub judge: std::time::Duration,
    /// The snapshot built from them ([`Snapshot::build_after`]).
    pub build: std::time::Duration,
    /// The reader thread's CPU time over all of it.
    pub cpu: std::time::Duration,
    /// Its time runnable but waiting for a core (`None`: the kernel keeps
    /// no count); beyond `cpu` and this, the reading was blocked (the
    /// kernel's reads, a lock).
    pub waited: Option<std::time::Duration>,
    /// The page faults the reader took (fresh memory zeroed by the
    /// kernel, counted in `cpu`).
    pub faults: u64,
    /// The kinds whose index was built again, not taken over
    /// ([`Cluster::index_built_again`]).
    pub indexed: BTreeSet<ApiKind>,
    /// The kinds of objects that changed.
    pub changed: BTreeSet<ApiKind>,
    /// Whether every node's state was read again (else only notified
    /// kernels' tables, or none).
    pub whole: bool,
    /// The kinds copied whole from the watches' stores (after a re-list),
    /// not object by object.
    pub kinds_copied: BTreeSet<ApiKind>,
}

/// The snapshot a new one follows, and what changed since: what did not
/// is taken over ([`Snapshot::build_after`]).
#[derive(Clone, Copy)]
pub struct After<'a> {
    pub snapshot: &'a Snapshot,
    /// The kinds of objects that differ ([`Cluster::changed_kinds`]).
    pub changed: &'a BTreeSet<ApiKind>,
    /// The reader's kept verdicts, which compared each node's state with
    /// the snapshot's already (at scale, 113,000 rules not compared twice).
    pub verdicts: Option<&'a Verdicts>,
}

/// The kinds a node's expected state (`expect::node`, a plan's source)
/// reads.
const PLAN_READS: [ApiKind; 5] = [
    ApiKind::Nodes,
    ApiKind::Pods,
    ApiKind::Services,
    ApiKind::Endpoints,
    ApiKind::ConfigMaps,
];

/// A node's repair plan, worked out when first asked for: a plan that
/// restores kube-proxy's chains needs the node's whole expected ruleset
/// (0.25 s for 10,000 Services), which a change must not wait for on its
/// way to the screen. The reader's plan worker works it out once the
/// snapshot is sent; the repair view waits for it if it comes first.
#[derive(Debug, Clone, Default)]
pub struct LazyPlan {
    /// Every finding of the snapshot it was made for (shared, not
    /// copied: 15,000 a node at scale were copied into every snapshot):
    /// the cluster's and the node's are the plan's only input besides the
    /// objects and the state. Those of a `-n` view are a part of them.
    findings: Findings,
    plan: Arc<std::sync::OnceLock<crate::repair::Plan>>,
}

/// Sets each node's row to its findings' counts, by kind and severity
/// (its run's, counted when the run was made): a shared row is copied
/// only when its counts change.
fn tally(nodes: &mut [Arc<NodeRow>], only: Option<&[usize]>, findings: &Findings) {
    each_row(nodes, only, |row| {
        let t = (findings.run(Some(&row.name))).map_or_else(Tally::default, |r| r.tally);
        if (row.node_findings, row.proxy_findings) != (t.node, t.proxy) {
            let r = Arc::make_mut(row);
            (r.node_findings, r.proxy_findings) = (t.node, t.proxy);
        }
    });
}

/// `f` on every row, or on `only` these.
fn each_row(
    nodes: &mut [Arc<NodeRow>],
    only: Option<&[usize]>,
    mut f: impl FnMut(&mut Arc<NodeRow>),
) {
    match only {
        Some(only) => only.iter().for_each(|i| f(&mut nodes[*i])),
        None => nodes.iter_mut().for_each(f),
    }
}

/// The rows a reading may change when they are the last snapshot's (the
/// same nodes, in the same order): the nodes read now or before, and those
/// with findings now or before. At scale that is 3 rows of 5,000; each
/// row was visited three times per reading, each visit a cache miss on a
/// loaded machine.
fn rows_to_visit(
    nodes: &[Arc<NodeRow>],
    index: &crate::model::index::ClusterIndex,
    names: impl Iterator<Item = impl AsRef<str>>,
) -> Vec<usize> {
    let api_rows = index.nodes.node_by_name.len();
    let mut at: Vec<usize> = names
        .filter_map(|name| {
            let name = name.as_ref();
            let at = index.nodes.node_by_name.get(name).copied();
            // A read node the API does not know is in the rows after them
            // (and any row not where the index says, looked for).
            at.filter(|i| nodes.get(*i).is_some_and(|r| r.name == name))
                .or_else(|| {
                    let (from, rest) = match nodes.get(api_rows..) {
                        Some(rest) if at.is_none() => (api_rows, rest),
                        _ => (0, nodes),
                    };
                    Some(from + rest.iter().position(|r| r.name == name)?)
                })
        })
        .collect();
    at.sort_unstable();
    at.dedup();
    at
}

impl Snapshot {
    /// The snapshot as `-n NS` shows it: that namespace's Pods, Services,
    /// DNS names and Ingresses, the nodes, and every finding except those
    /// about another namespace's objects (a node's dataplane belongs to
    /// every namespace).
    pub fn in_namespace(mut self, ns: &str) -> Snapshot {
        use super::resources::Kind;
        // The lines kept keep the marks the whole list gave them.
        self.marks();
        // A new list: the plans keep working from the whole one.
        self.findings = Findings::of_sorted(
            self.findings
                .iter()
                .filter(|f| {
                    f.in_namespace(ns)
                        || !f
                            .objects
                            .iter()
                            .any(|o| o.subject.object().is_some_and(|o| o.namespace.is_some()))
                })
                .cloned()
                .collect(),
        );
        let (resources, marks) = self.resources.retain(self.marks(), |r| match r.kind {
            Kind::Node => true,
            Kind::Dns => r.name.split('.').nth(1) == Some(ns),
            Kind::Pod | Kind::Service | Kind::Ingress => {
                r.name.split_once('/').is_some_and(|(n, _)| n == ns)
            }
        });
        self.trace_targets = Arc::new(super::resources::trace_targets(&self.cluster, &resources));
        self.resources = Arc::new(resources);
        self.resource_marks = marks.into();
        tally(&mut self.nodes, None, &self.findings);
        self.source = format!("{} · namespace {ns}", self.source);
        self
    }

    /// Builds the snapshot from what `check` read and found.
    pub fn build(
        source: String,
        cluster: Arc<Cluster>,
        states: Arc<Vec<(String, NodeState)>>,
        findings: Vec<Finding>,
    ) -> Snapshot {
        let findings = Findings::of_sorted(check::share(findings));
        Snapshot::build_after(source, cluster, states, findings, None)
    }

    /// As [`Snapshot::build`], taking over from the snapshot before what
    /// did not change: a node's overlay lines when its state, its flannel
    /// findings, the Nodes and ConfigMaps are the same; its kube-proxy
    /// lines when its proxy state and findings and the ConfigMaps are;
    /// its plan when its state and findings and what a plan reads are;
    /// the resources list when none of its kinds changed. Building them
    /// walks the node's expected state (its 4,999 peers, kube-proxy's
    /// rules for 10,000 Services) and 175,000 objects.
    pub fn build_after(
        source: String,
        cluster: Arc<Cluster>,
        states: Arc<Vec<(String, NodeState)>>,
        findings: Findings,
        after: Option<After<'_>>,
    ) -> Snapshot {
        let index = cluster.index();
        let read: HashMap<&str, &NodeState> = states.iter().map(|(n, s)| (n.as_str(), s)).collect();
        // The rows before, shared, when the nodes, their pods' index and
        // the read nodes' names are the same (a watch event for a slice or
        // a pod's status, a kernel's notification): of 5,000 rows at scale
        // only those whose state or findings changed are copied below.
        let rows_kept = after.as_ref().is_some_and(|a| {
            let b = a.snapshot;
            b.cluster.nodes.same(&cluster.nodes)
                && Arc::ptr_eq(&b.cluster.index().pods, &index.pods)
                && b.states
                    .iter()
                    .map(|(n, _)| n)
                    .eq(states.iter().map(|(n, _)| n))
        });
        let mut nodes: Vec<Arc<NodeRow>> = match after.as_ref().map(|a| a.snapshot) {
            Some(b) if rows_kept => b.nodes.clone(),
            // Every node the API knows, then any read node it does not.
            _ => {
                let mut names: Vec<String> = cluster
                    .nodes
                    .iter()
                    .filter_map(|n| n.metadata.name.clone())
                    .collect();
                for (name, _) in states.iter() {
                    if !index.nodes.node_by_name.contains_key(name) {
                        names.push(name.clone());
                    }
                }
                names
                    .into_iter()
                    .map(|name| {
                        Arc::new(NodeRow {
                            read: false,
                            pods: index.pods.pods_by_node.get(&name).map_or(0, Vec::len),
                            lease: index
                                .nodes
                                .lease_by_node
                                .get(&name)
                                .map(|l| (l.pod_cidr, l.vtep_mac, l.public_ip)),
                            summary: None,
                            iptables: Vec::new(),
                            via: None,
                            not_read: None,
                            name,
                            node_findings: [0; 3],
                            proxy_findings: [0; 3],
                        })
                    })
                    .collect()
            }
        };
        let visit = (after.as_ref().map(|a| a.snapshot))
            .filter(|_| rows_kept)
            .map(|b| {
                let read = (states.iter().chain(b.states.iter())).map(|(n, _)| n.as_str());
                let found = (findings.runs().chain(b.findings.runs())).filter_map(|(n, _)| n);
                rows_to_visit(&nodes, index, read.chain(found))
            });
        let visit = visit.as_deref();
        each_row(&mut nodes, visit, |row| {
            let state = read.get(row.name.as_str());
            let backends = state.iter().flat_map(|s| &s.iptables).map(|b| &b.backend);
            if row.read != state.is_some() || !row.iptables.iter().eq(backends.clone()) {
                let r = Arc::make_mut(row);
                r.read = state.is_some();
                r.iptables = backends.cloned().collect();
            }
        });
        drop(read);
        let before = after.as_ref().map(|a| {
            let states: HashMap<&str, &NodeState> = a
                .snapshot
                .states
                .iter()
                .map(|(n, s)| (n.as_str(), s))
                .collect();
            (a, &a.snapshot.findings, states)
        });
        tally(&mut nodes, visit, &findings);
        let mut entries = BTreeMap::new();
        let mut plans = BTreeMap::new();
        let unchanged = |kinds: &[ApiKind]| {
            before
                .as_ref()
                .is_some_and(|(a, ..)| !kinds.iter().any(|k| a.changed.contains(k)))
        };
        let overlay_objects_same = unchanged(&check::incremental::OVERLAY_READS);
        let proxy_objects_same = unchanged(&[ApiKind::ConfigMaps]);
        let plan_objects_same = unchanged(&PLAN_READS);
        let cluster_findings_same = before.as_ref().is_some_and(|(_, theirs, _)| {
            findings.same_run(theirs, None) || findings.of(None).eq(theirs.of(None))
        });
        for (name, state) in states.iter() {
            let shared_findings = findings.of(Some(name));
            let old = before.as_ref().and_then(|(a, theirs, old_states)| {
                Some((
                    a.snapshot.entries.get(name)?,
                    a.snapshot.plans.get(name)?,
                    *theirs,
                    *old_states.get(name.as_str())?,
                ))
            });
            // What the kept verdicts compared of this node against the
            // previous snapshot's state is not compared again.
            let compared = before
                .as_ref()
                .and_then(|(a, ..)| a.verdicts?.compared(&a.snapshot.states, name));
            let state_same = old.is_some_and(|(.., old_state)| {
                compared.map_or_else(|| old_state == state, |c| c.state_same)
            });
            // The findings gone or come since: none when the node's run is
            // the one before; otherwise told apart by pointer, a read
            // node's 15,000 walked and only those that differ read.
            let differing =
                old.map(
                    |(_, _, theirs, _)| match findings.same_run(theirs, Some(name)) {
                        true => check::runs::Differing::default(),
                        false => check::runs::differing(
                            theirs.slices_of(Some(name)),
                            findings.slices_of(Some(name)),
                        ),
                    },
                );
            let findings_same = differing.as_ref().is_some_and(|d| d.is_empty());
            let kube_proxy = |f: &&Arc<Finding>| f.id.is_kube_proxy();
            let proxy_same = differing
                .as_ref()
                .is_some_and(|d| !d.all().any(|f| kube_proxy(&f)));
            let others_same = differing
                .as_ref()
                .is_some_and(|d| d.all().all(|f| kube_proxy(&f)));
            let proxy_findings = || -> Vec<&Finding> {
                let mine = (findings.run(Some(name)))
                    .map(check::runs::kube_proxy_of)
                    .unwrap_or_default();
                mine.into_iter().map(|f| &**f).collect()
            };
            // kube-proxy's lines depend on its state, findings and mode;
            // the tree read from its rules, on its state and mode.
            let same_rules = old.filter(|(_, _, _, old_state)| {
                proxy_objects_same
                    && same_proxy_state(old_state, state, compared.and_then(|c| c.rules_same))
            });
            let (proxy, services, tree) = match same_rules {
                Some((e, ..)) if proxy_same => (e.proxy.clone(), e.summary.proxy, e.tree.clone()),
                Some((e, ..)) => {
                    // The same tree, marked again where the findings
                    // naming it changed.
                    let changed =
                        subjects(differing.iter().flat_map(|d| d.all()).filter(kube_proxy));
                    let before = e.tree.clone().map(|t| (t, &e.proxy, &changed));
                    let (entries, services, tree) =
                        proxy_entries(&cluster, state, &proxy_findings(), before);
                    (entries, Some(services), tree)
                }
                None => {
                    let (entries, services, tree) =
                        proxy_entries(&cluster, state, &proxy_findings(), None);
                    (entries, Some(services), tree)
                }
            };
            // flannel's, on its state, its other findings and the leases.
            let (overlay, peers, overlay_expected) = old
                .filter(|_| overlay_objects_same && state_same && others_same)
                .map(|(e, ..)| {
                    let peers = (e.summary.peers_ok, e.summary.peers);
                    (e.overlay.clone(), peers, e.overlay_expected.clone())
                })
                .unwrap_or_else(|| {
                    // The lines as written for the leases before, marked
                    // again where the findings naming them changed.
                    let kept = old.filter(|_| overlay_objects_same).and_then(|(e, ..)| {
                        let expected = e.overlay_expected.as_ref()?;
                        let changed = subjects(differing.iter().flat_map(|d| d.all()));
                        Some((expected, &e.overlay, changed))
                    });
                    let kept = (kept.as_ref()).map(|(expected, blocks, changed)| overlay::Before {
                        expected,
                        blocks,
                        changed,
                    });
                    let node_findings: Vec<&Finding> =
                        shared_findings.clone().map(|f| &**f).collect();
                    overlay_entries(&cluster, name, state, &node_findings, kept)
                });
            entries.insert(
                name.clone(),
                NodeEntries {
                    overlay,
                    overlay_expected,
                    proxy,
                    tree,
                    summary: NodeSummary {
                        peers_ok: peers.0,
                        peers: peers.1,
                        proxy: services,
                    },
                },
            );
            let plan = old
                .filter(|_| {
                    plan_objects_same && state_same && findings_same && cluster_findings_same
                })
                .map(|(_, plan, ..)| plan.clone())
                .unwrap_or_else(|| LazyPlan {
                    findings: findings.clone(),
                    plan: Arc::default(),
                });
            plans.insert(name.clone(), plan);
        }
        // The resources list, section by section; the trace targets
        // (its lines and the Ingresses' URLs) when any of it changed.
        let (resources, trace_targets) = match after {
            Some(a) if a.changed.is_empty() => (
                a.snapshot.resources.clone(),
                a.snapshot.trace_targets.clone(),
            ),
            _ => {
                let before = after.map(|a| (&*a.snapshot.resources, listing_changes(&cluster, &a)));
                let listing = Listing::after(&cluster, before.as_ref().map(|(r, c)| (*r, c)));
                let targets = match after {
                    Some(a)
                        if listing.same(&a.snapshot.resources)
                            && !a.changed.contains(&ApiKind::Ingresses) =>
                    {
                        a.snapshot.trace_targets.clone()
                    }
                    _ => Arc::new(super::resources::trace_targets(&cluster, &listing)),
                };
                (Arc::new(listing), targets)
            }
        };
        each_row(&mut nodes, visit, |row| {
            let summary = entries.get(&row.name).map(|e: &NodeEntries| e.summary);
            if row.summary != summary {
                Arc::make_mut(row).summary = summary;
            }
        });
        // The rows before hold the reading before's ways and reasons.
        let rows_reading = (after.as_ref())
            .filter(|_| rows_kept)
            .and_then(|a| a.snapshot.rows_reading.clone());
        let totals = match after {
            Some(a) => (a.snapshot.totals).after(&a.snapshot.cluster, &cluster, a.changed),
            None => Totals::of(&cluster),
        };
        Snapshot {
            source,
            read_at: None,
            reading_began: None,
            reading_cost: None,
            totals,
            nodes,
            rows_reading,
            findings,
            entries,
            plans,
            cluster,
            states,
            resources,
            resource_marks: Default::default(),
            trace_targets,
        }
    }

    /// Node `name`'s repair plan (`None`: its dataplane was not read).
    pub fn plan(&self, name: &str) -> Option<&crate::repair::Plan> {
        let (_, state) = self.states.iter().find(|(n, _)| n == name)?;
        self.plan_of(name, state)
    }

    fn plan_of(&self, name: &str, state: &NodeState) -> Option<&crate::repair::Plan> {
        let lazy = self.plans.get(name)?;
        Some(lazy.plan.get_or_init(|| {
            // What kube-proxy's and flannel's tables should hold is worked
            // out only for a plan that restores a table.
            let expected = || {
                crate::model::ClusterNetwork::from_cluster(&self.cluster)
                    .map(|net| expect::node(&self.cluster, name, &net, state))
                    .unwrap_or_default()
            };
            // The cluster's findings, then the node's: as `check` lists them.
            let all = &lazy.findings;
            let findings = (all.of(None)).chain(all.of(Some(name))).map(|f| &**f);
            crate::repair::plan(name, findings, state, expected, &Default::default())
        }))
    }

    /// Works out every node's plan not worked out yet (the reader's plan
    /// worker does, once the snapshot is on its way to the screen).
    pub fn work_out_plans(&self) {
        for (name, state) in self.states.iter() {
            self.plan_of(name, state);
        }
    }

    /// The snapshot with how its nodes were read: when, through what, and
    /// why the others were not (the overview says it in words).
    pub fn with_reading(mut self, reading: &Reading) -> Snapshot {
        self.read_at = Some(reading.at);
        let same = self
            .rows_reading
            .as_ref()
            .is_some_and(|r| r.via == reading.via && Arc::ptr_eq(&r.not_read, &reading.not_read));
        if same {
            return self;
        }
        self.rows_reading = Some(reading.clone());
        let via: HashMap<&str, ReadVia> =
            reading.via.iter().map(|(n, v)| (n.as_str(), *v)).collect();
        let why: HashMap<&str, &Unreached> = reading
            .not_read
            .iter()
            .map(|n| (n.node.as_str(), &n.why))
            .collect();
        for row in &mut self.nodes {
            let v = via.get(row.name.as_str()).copied().filter(|_| row.read);
            let not_read = why.get(row.name.as_str()).copied().filter(|_| !row.read);
            if row.via != v || row.not_read.as_ref() != not_read {
                let r = Arc::make_mut(row);
                r.via = v;
                r.not_read = not_read.cloned();
            }
        }
        self
    }

    /// The resources view's lines, each with its mark.
    pub fn listed(&self) -> impl Iterator<Item = Listed<'_>> {
        self.resources.rows().enumerate().map(|(i, r)| Listed {
            kind: r.kind,
            name: &r.name,
            detail: &r.detail,
            finding: self.marks().get(i).copied().flatten(),
        })
    }

    /// Each resource line's mark ([`Listing::marks`]), worked out on first use.
    pub fn marks(&self) -> &[Option<FindingId>] {
        self.resource_marks
            .get_or_init(|| self.resources.marks(self.findings.iter()))
    }

    /// The findings of one node, or of the cluster (`None`).
    pub fn findings_of<'a>(&'a self, node: Option<&'a str>) -> impl Iterator<Item = &'a Finding> {
        self.findings.of(node).map(|f| &**f)
    }
}

/// The kinds whose change the resources list must show: `after`'s
/// changes, but not the pods when their index is the one before, nor the
/// endpoints when every Service they touched resolves to its ClusterIP (a
/// DNS name reads endpoints only for a headless Service): an endpoint
/// going NotReady lists 10,000 Services' names again otherwise.
fn listing_changes(cluster: &Cluster, after: &After<'_>) -> BTreeSet<ApiKind> {
    let mut changed = after.changed.clone();
    // A pod's line is its name, IP and node, which its index reads: the
    // index shared, the 150,000 lines are the same (a kubelet's status
    // write listed them all again, 90 ms of a reading at scale).
    if Arc::ptr_eq(&cluster.index().pods, &after.snapshot.cluster.index().pods) {
        changed.remove(&ApiKind::Pods);
    }
    let touched = after.verdicts.and_then(|v| v.last_touched.as_ref());
    if let Some(touched) = touched
        && changed.iter().all(|k| *k == ApiKind::Endpoints)
        && touched.iter().all(|(ns, name)| {
            cluster
                .service(ns, name)
                .and_then(|s| s.spec.as_ref())
                .is_some_and(|spec| !crate::model::dns::reads_endpoints(spec))
        })
    {
        changed.remove(&ApiKind::Endpoints);
    }
    changed
}

/// `HH:MM:SS UTC` of `t`: when a snapshot was read, when a change was seen.
pub fn utc_clock(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() % 86_400)
        .unwrap_or(0);
    format!(
        "{:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Lets go of a snapshot on a thread of its own: the last holder of a
/// snapshot frees what it alone held (at scale, a re-read node's 15,000
/// findings and lines: 5 ms), and the render thread, which usually holds a
/// snapshot last, would do it on the next change's way to the screen.
pub fn retire(s: Arc<Snapshot>) {
    static RETIRED: std::sync::OnceLock<Option<std::sync::mpsc::Sender<Arc<Snapshot>>>> =
        std::sync::OnceLock::new();
    let to = RETIRED.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Arc<Snapshot>>();
        std::thread::Builder::new()
            .name("retired snapshots".into())
            .spawn(move || rx.into_iter().for_each(drop))
            .ok()
            .map(|_| tx)
    });
    // With no such thread, here.
    if let Some(to) = to {
        let _ = to.send(s);
    }
}

/// What came and went between two snapshots' findings, as the header's
/// last change says it: `+id (node)` for each kind of finding that came,
/// then `-id (node)` for each that went (a second endpoint of the same
/// kind gone stale is news too). Node by node, walked side by side
/// ([`check::runs::differing`]): only the findings that differ are read.
/// This runs on the render thread for every snapshot; it once formatted
/// and sorted all 45,000 findings of three lab nodes beside 5,000 peers,
/// and later hashed a changed node's 15,000 IDs twice.
pub fn changes(old: &Snapshot, new: &Snapshot) -> Vec<String> {
    let (before, after) = (&old.findings, &new.findings);
    let nodes: BTreeSet<Option<&str>> = (before.runs().map(|(n, _)| n))
        .chain(after.runs().map(|(n, _)| n))
        .collect();
    let (mut gained, mut lost) = (BTreeSet::new(), BTreeSet::new());
    for node in nodes.into_iter().filter(|n| !after.same_run(before, *n)) {
        let d = check::runs::differing(before.slices_of(node), after.slices_of(node));
        let name = node.unwrap_or("cluster");
        let named = |f: &&Arc<Finding>| format!("{} ({name})", f.id);
        gained.extend(d.came.iter().map(named));
        lost.extend(d.went.iter().map(named));
    }
    (gained.into_iter().map(|k| format!("+{k}")))
        .chain(lost.into_iter().map(|k| format!("-{k}")))
        .collect()
}

/// The first finding naming each subject, with its mark (`check::first_naming`).
type Marks<'a> = HashMap<&'a Subject, (&'a Finding, check::Mark)>;

/// An entry for `s`, marked by the first finding that names it.
fn marked(by: &Marks, kind: &'static str, s: &Subject, expected: String) -> Entry {
    let f = by.get(s);
    Entry {
        kind,
        expected,
        mark: f.map_or(Mark::Ok, |(f, m)| Mark::from(f, *m)),
        finding: f.map(|(f, _)| (f.id, f.summary.clone())),
    }
}

/// The parts of `about` the findings naming it ([`check::naming`]) say
/// are missing (a mismatch's endpoint chains or real servers), as `kind`
/// entries.
fn missing_parts(
    naming: &HashMap<&Subject, Vec<&Finding>>,
    about: &Subject,
    kind: &'static str,
) -> Vec<Entry> {
    let mut out = Vec::new();
    for f in naming.get(about).into_iter().flatten() {
        for o in f
            .objects
            .iter()
            .filter(|o| o.mark == Some(check::Mark::Missing))
        {
            let expected = match &o.subject {
                Subject::Chain { chain, .. } => format!("  {chain} (not on the node)"),
                Subject::RealServer { addr, .. } => format!("  -> {addr} (not on the node)"),
                _ => continue,
            };
            out.push(Entry {
                kind,
                expected,
                mark: Mark::Missing,
                finding: Some((f.id, f.summary.clone())),
            });
        }
    }
    out
}

/// kube-proxy's tree on the node: each Service rule of KUBE-SERVICES, the
/// endpoint chains its KUBE-SVC chain picks (with probability and DNAT),
/// each marked by the finding naming that chain (a stale endpoint chain
/// reads `stale`), the endpoint chains a finding says are missing; then
/// the Service chains findings say are missing.
/// With `before` (the blocks marked from the same tree, and the subjects
/// whose findings changed since), only the blocks holding one of those
/// subjects are marked again.
fn chain_entries(
    tree: &ChainTree,
    mine: &[&Finding],
    before: Option<(&Blocks, &Changed)>,
) -> (Blocks, usize) {
    let again: HashSet<usize> = before
        .into_iter()
        .flat_map(|(_, changed)| changed.iter())
        .filter_map(|s| tree.block_of.get(*s))
        .flatten()
        .copied()
        .collect();
    // A Service chain findings name that KUBE-SERVICES does not jump to.
    let unlisted = |s: &Subject| {
        matches!(s, Subject::Chain { chain, .. }
            if chain.starts_with("KUBE-SVC-") && !tree.svc_chains.contains(chain))
    };
    // The findings whose marks are read: with the blocks before, those
    // naming a subject of a block marked again or an unlisted chain. A lab
    // node's thousands of others were hashed into both maps again for
    // each endpoint change (an eighth of such a reading).
    let read: Vec<&Finding> = match before {
        None => mine.to_vec(),
        Some(_) => {
            let subjects: HashSet<&Subject> = (again.iter())
                .flat_map(|i| {
                    let svc = &tree.services[*i];
                    std::iter::once(&svc.subject).chain(svc.seps.iter().map(|(s, _)| s))
                })
                .collect();
            (mine.iter().copied())
                .filter(|f| f.subjects().any(|s| subjects.contains(s) || unlisted(s)))
                .collect()
        }
    };
    let by = &check::first_naming(read.iter().copied());
    let naming = check::naming(read.iter().copied());
    let mark = |i: usize| -> Arc<[Entry]> {
        let svc = &tree.services[i];
        let mut out = vec![marked(by, "svc", &svc.subject, svc.line.clone())];
        for (subject, line) in &svc.seps {
            out.push(marked(by, "sep", subject, line.clone()));
        }
        out.extend(missing_parts(&naming, &svc.subject, "sep"));
        out.into()
    };
    let blocks = Blocks::rebuilt(
        tree.services.len(),
        before.map(|(b, _)| b),
        |i| again.contains(&i),
        mark,
    );
    // The Service chains findings name that KUBE-SERVICES does not jump
    // to: from the findings alone (a few), never kept.
    let mut out = Vec::new();
    let mut shown = HashSet::default();
    for f in &read {
        for s in f.subjects() {
            let Subject::Chain { chain, .. } = s else {
                continue;
            };
            if unlisted(s) && shown.insert(chain.as_str()) {
                out.push(marked(
                    by,
                    "svc",
                    s,
                    format!("{chain} (not in KUBE-SERVICES)"),
                ));
            }
        }
    }
    (blocks.then(out.into()), tree.svc_chains.len())
}

/// Subjects whose findings changed between two snapshots.
type Changed<'a> = HashSet<&'a Subject>;

/// The subjects the findings that went or came name
/// ([`check::runs::differing`]).
fn subjects<'a>(differing: impl Iterator<Item = &'a Arc<Finding>>) -> Changed<'a> {
    differing.flat_map(|f| f.subjects()).collect()
}

/// kube-proxy's tree as read from the node's rules, before any finding
/// marks it: 70,000 rules parsed for 10,000 Services, so it is kept while
/// the rules stay and a change of findings (an endpoint going NotReady)
/// only marks it again.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ChainTree {
    services: Vec<SvcLines>,
    /// The blocks each chain's line is in (its Service's: a Service chain
    /// two rules of KUBE-SERVICES jump to is in two).
    block_of: HashMap<Subject, Vec<usize>>,
    /// The Service chains KUBE-SERVICES jumps to.
    svc_chains: HashSet<String>,
}

/// A Service rule of KUBE-SERVICES and the endpoint chains its chain picks.
#[derive(Debug, PartialEq, Eq)]
struct SvcLines {
    chain: String,
    subject: Subject,
    line: String,
    seps: Vec<(Subject, String)>,
}

impl ChainTree {
    fn of(state: &NodeState) -> ChainTree {
        let mut services = Vec::new();
        let Some(rs) = crate::check::iptables::kube_proxy_ruleset(state) else {
            return ChainTree::default();
        };
        for r in rs.specs("nat", "KUBE-SERVICES") {
            let Some(svc) = r.target.clone().filter(|t| t.starts_with("KUBE-SVC-")) else {
                continue;
            };
            let line = format!(
                "{} {}:{} → {svc}",
                r.comment.clone().unwrap_or_default(),
                r.dst_host().unwrap_or("?"),
                r.dport.map(|p| p.to_string()).unwrap_or_default()
            );
            let seps = rs
                .specs("nat", &svc)
                .into_iter()
                .filter_map(|sep| {
                    let t = sep.target.clone().filter(|t| t.starts_with("KUBE-SEP-"))?;
                    let dnat = rs
                        .specs("nat", &t)
                        .iter()
                        .find_map(|d| d.to_destination.clone())
                        .unwrap_or_else(|| "?".into());
                    let line = format!(
                        "  {t} → {dnat}{}",
                        sep.probability
                            .map(|p| format!("  p={p:.3}"))
                            .unwrap_or_default()
                    );
                    Some((Subject::chain("nat", t), line))
                })
                .collect();
            services.push(SvcLines {
                subject: Subject::chain("nat", svc.clone()),
                chain: svc,
                line,
                seps,
            });
        }
        let mut block_of: HashMap<Subject, Vec<usize>> = Default::default();
        for (i, svc) in services.iter().enumerate() {
            let subjects = std::iter::once(&svc.subject).chain(svc.seps.iter().map(|(s, _)| s));
            for s in subjects {
                block_of.entry(s.clone()).or_default().push(i);
            }
        }
        let svc_chains = services.iter().map(|s| s.chain.clone()).collect();
        ChainTree {
            services,
            block_of,
            svc_chains,
        }
    }
}

/// kube-proxy's nftables table on the node: each `service-ips` element
/// with the endpoints its chain DNATs to, marked by the finding that names
/// its Service; then the Services a finding says have no element.
fn nft_entries(state: &NodeState, mine: &[&Finding], by: &Marks) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut shown = HashSet::default();
    // `service-HASH-ns/name/proto/port`: the Service the chain serves.
    let service_of = |chain: &str| -> Option<Subject> {
        let rest = chain.strip_prefix("service-")?.split_once('-')?.1;
        let mut parts = rest.splitn(3, '/');
        let (ns, name) = (parts.next()?, parts.next()?);
        Some(check::finding::ObjectRef::namespaced("Service", ns, name).into())
    };
    if let Some(table) = &state.kube_proxy_nft {
        for ((ip, proto, port), chain) in &table.service_ips {
            let subject =
                service_of(chain).unwrap_or_else(|| Subject::chain("ip kube-proxy", chain.clone()));
            out.push(marked(
                by,
                "svc",
                &subject,
                format!("{ip} . {proto} . {port} → {chain}"),
            ));
            for e in table.endpoints(chain) {
                out.push(marked(by, "sep", &subject, format!("  → dnat to {e}")));
            }
            shown.insert(subject);
        }
    }
    for f in mine
        .iter()
        .filter(|f| f.id == check::FindingId::KubeProxyNftablesServiceMissing)
    {
        for s in f.subjects() {
            if shown.insert(s.clone()) {
                out.push(marked(
                    by,
                    "svc",
                    s,
                    format!("{} (no element in service-ips)", s.name()),
                ));
            }
        }
    }
    out
}

/// kube-proxy's IPVS state on the node: each virtual server with its real
/// servers, each marked by the IPVS finding that names it (a stale real
/// server reads `stale`, a missing one is listed); then what findings say
/// is missing (a virtual server, a ClusterIP on kube-ipvs0, the device).
fn ipvs_entries(state: &NodeState, mine: &[&Finding]) -> Vec<Entry> {
    let ipvs: Vec<&Finding> = mine
        .iter()
        .copied()
        .filter(|f| f.id.owner() == check::Owner::Ipvs)
        .collect();
    let by = check::first_naming(ipvs.iter().copied());
    let naming = check::naming(ipvs.iter().copied());
    let mut out = Vec::new();
    let mut on_node = Vec::new();
    for v in &state.ipvs {
        let vs = Subject::VirtualServer {
            proto: v.proto.clone(),
            addr: v.addr.clone(),
        };
        out.push(marked(
            &by,
            "ipvs",
            &vs,
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
        ));
        for r in &v.reals {
            let real = Subject::RealServer {
                proto: v.proto.clone(),
                vip: v.addr.clone(),
                addr: r.addr.clone(),
            };
            out.push(marked(
                &by,
                "real",
                &real,
                format!("  -> {} {} weight {}", r.addr, r.forward, r.weight),
            ));
        }
        out.extend(missing_parts(&naming, &vs, "real"));
        on_node.push(vs);
    }
    for f in ipvs
        .iter()
        .filter(|f| !on_node.iter().any(|vs| f.names(vs)))
    {
        out.push(Entry {
            kind: "ipvs",
            expected: format!("{} (not on the node)", f.summary),
            mark: Mark::from(f, f.id.mark()),
            finding: Some((f.id, f.summary.clone())),
        });
    }
    out
}

/// Whether two states of a node hold the same kube-proxy state: its
/// rulesets, nftables tables and IPVS servers (which proxier runs follows
/// from them and the cluster). `rules_same`: the rulesets' comparison
/// if the caller made it already.
fn same_proxy_state(a: &NodeState, b: &NodeState, rules_same: Option<bool>) -> bool {
    rules_same.unwrap_or_else(|| a.iptables == b.iptables)
        && a.nft_tables == b.nft_tables
        && a.kube_proxy_nft == b.kube_proxy_nft
        && a.ipvs == b.ipvs
}

/// kube-proxy's entries on the node in the mode it runs, marked by its
/// findings (`mine`: the node's kube-proxy and IPVS findings); with the
/// mode and the Services the node has programmed.
fn proxy_entries(
    cluster: &Cluster,
    state: &NodeState,
    mine: &[&Finding],
    before: Option<(Arc<ChainTree>, &Blocks, &Changed)>,
) -> (Blocks, (ProxyMode, usize), Option<Arc<ChainTree>>) {
    let mode = crate::model::kube_proxy::node_proxy_mode(cluster, state);
    let (entries, services, tree) = match mode {
        ProxyMode::Ipvs => (
            Blocks::one(ipvs_entries(state, mine)),
            state.ipvs.len(),
            None,
        ),
        ProxyMode::Nftables => (
            Blocks::one(nft_entries(
                state,
                mine,
                &check::first_naming(mine.iter().copied()),
            )),
            state
                .kube_proxy_nft
                .as_ref()
                .map_or(0, |t| t.service_ips.len()),
            None,
        ),
        ProxyMode::Iptables => {
            let (tree, marked) = match before {
                Some((tree, blocks, changed)) => (tree, Some((blocks, changed))),
                None => (Arc::new(ChainTree::of(state)), None),
            };
            let (entries, services) = chain_entries(&tree, mine, marked);
            (entries, services, Some(tree))
        }
    };
    (entries, (mode, services), tree)
}
