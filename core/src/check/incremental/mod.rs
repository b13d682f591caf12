//! Verdicts kept between changes (the dashboard's live path): a node's
//! findings depend only on the cluster objects and that node's own state
//! (`check_node`), and the cluster-wide ones only on the objects
//! (`cluster::check`). Each verdict is worked out again only when what it
//! reads changed: the nodes whose state differs; the cluster-wide groups
//! whose kinds of objects changed; for a change of Services or their
//! endpoints alone, the Services it touched (their checks, their ports'
//! kube-proxy chains on each node). The result is always what
//! [`super::run`] gives for the same inputs (a property test holds them
//! equal over random changes).
//!
//! Within a changed node, its iptables are judged again only when the
//! rulesets (or the proxy mode, or whether they were read) changed: that
//! is most of a node's check (113,000 rules for 10,000 Services). A
//! route, neighbour or device change costs the rest but flannel's
//! verdicts on its 4,999 peers: those are kept per peer, and only the
//! peers whose neigh, FDB entries or route changed are judged again
//! ([`overlay`]).
//!
//! Scale (the 5,000-node synthetic cluster, one node read): an unchanged
//! node costs one equality comparison of its state; a node whose rules
//! changed, its whole check (0.1–0.3 s, `benches/check_scale`); an
//! endpoint going NotReady, ~50 ms in all (`benches/tui_render`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

mod overlay;

use overlay::OverlayVerdicts;

use super::iptables::{self, NodeRules};
use super::runs::Run;
use super::{
    Finding, Findings, IptablesInputs, check_node_rest, cluster, judge_iptables, share, sort,
};
use crate::dataplane::NodeState;
use crate::model::kube_proxy::{self, ServicePort};
use crate::model::reading::{ApiKind, CheckGroup, Skipped};
use crate::model::{Cluster, ClusterNetwork};

/// The states a set of verdicts was computed from, as the reader shares
/// them with the views.
pub type States = Arc<Vec<(String, NodeState)>>;

/// One node's findings, in the two parts the live path re-checks apart.
#[derive(Debug)]
struct NodeVerdicts {
    /// From its iptables ([`judge_iptables`]), with what else they read.
    iptables: NodeRules,
    /// The same findings, sorted.
    iptables_sorted: Run,
    inputs: IptablesInputs,
    /// flannel's ([`super::check_node_overlay`]): its VTEP and entries
    /// per peer, kept per peer.
    overlay: OverlayVerdicts,
    /// Everything else ([`check_node_rest`]).
    rest: Run,
    /// flannel's and the rest, merged (kept while both are).
    base: Run,
    /// Every finding of the node, sorted: the iptables' merged into
    /// `base`.
    merged: Run,
    /// How its state compared with the one before, for the snapshot
    /// built next (which would otherwise compare them again).
    compared: Compared,
}

/// What an update found of one node's state against the state the
/// update before judged: the snapshot built after it reuses this instead
/// of comparing 113,000 rules (at scale) a second time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compared {
    /// The whole state is equal.
    pub state_same: bool,
    /// Its iptables rulesets are equal (`None`: not compared, the node
    /// being new or its proxy mode changed).
    pub rules_same: Option<bool>,
}

/// Findings kept per node and for the cluster, with the states they were
/// computed from. Each finding is shared (an `Arc`) and each part kept
/// sorted: the whole list handed out is the cluster's run and each
/// node's, shared as they are ([`Findings`]). At scale (45,000
/// findings) cloning and sorting them took 100–370 ms of a reading
/// (`benches/tui_watch`); merging their pointers into one list, and
/// dropping the one before, still took 1.7 ms of an endpoint change's
/// 7 ms (`benches/tui_render`).
#[derive(Debug, Default)]
pub struct Verdicts {
    /// The cluster-wide findings: what was refused, then one list per
    /// group of [`cluster::GROUPS`].
    cluster: Vec<Vec<Arc<Finding>>>,
    /// The same, sorted.
    cluster_sorted: Run,
    nodes: HashMap<String, NodeVerdicts>,
    /// The states the node findings are for (the reader's own `Arc`: no
    /// copy is kept).
    states: Option<States>,
    /// The states the last update compared with (its predecessor's), by
    /// identity only: a weak reference keeps their allocation's address
    /// from being reused, not the states themselves alive.
    compared_with: Option<std::sync::Weak<Vec<(String, NodeState)>>>,
    /// kube-proxy's Service ports as of the last update.
    ports: Arc<Vec<ServicePort>>,
    /// The [`CheckGroup::ServiceEndpoints`] findings, per Service.
    by_service: BTreeMap<(String, String), Vec<Arc<Finding>>>,
    /// The Services, EndpointSlices and pods of the last update (shared,
    /// no copy), to tell which Services a change touched.
    services_read: Cluster,
    /// How many nodes the last update checked (for tests and the status
    /// line).
    pub last_checked: usize,
    /// How many of those had their iptables checked again.
    pub last_rules_checked: usize,
    /// How many had flannel's verdicts worked out again.
    pub last_overlay_checked: usize,
    /// How many peers' entries those judged again (all of a node's when
    /// its flannel verdicts were worked out whole).
    pub last_peers_judged: usize,
    /// The Services the last update found touched, when it judged a
    /// change of Services or endpoints alone Service by Service.
    pub last_touched: Option<BTreeSet<(String, String)>>,
}

impl Verdicts {
    /// No verdicts yet: the first update checks everything.
    pub fn new() -> Verdicts {
        Verdicts::default()
    }

    /// Brings the verdicts up to date and returns every finding, sorted as
    /// [`super::run`] sorts them, in runs shared with the verdicts kept. `changed` names the kinds whose objects
    /// differ from the last update's (the caller knows: watch events, a
    /// re-read file; [`Cluster::changed_kinds`]); node states are compared
    /// here. A verdict is worked out again only when what it reads
    /// changed: a cluster-wide group when its kinds did
    /// ([`CheckGroup::kinds`](crate::model::reading::CheckGroup::kinds)), a node's iptables when its rules or
    /// [`IPTABLES_READS`] did, flannel's verdicts on a node when its
    /// state or [`OVERLAY_READS`] did, the rest of a node when its state
    /// or [`NODE_READS`] did.
    pub fn update(
        &mut self,
        cluster: &Cluster,
        changed: &BTreeSet<ApiKind>,
        states: &States,
    ) -> Findings {
        let first = self.states.is_none();
        let reads = |kinds: &[ApiKind]| first || kinds.iter().any(|k| changed.contains(k));
        if first {
            self.cluster = vec![Vec::new(); 1 + cluster::GROUPS.len()];
        }
        // What was refused is a kind's change too (every kind, then).
        let cluster_changed = first || !changed.is_empty();
        if cluster_changed {
            let mut out = Vec::new();
            cluster::check_unreadable(cluster, &mut out);
            self.cluster[0] = out.into_iter().map(Arc::new).collect();
        }
        // Only the Services, their endpoints or the pods changed (not the
        // mode, the network or what was refused): the verdicts per Service
        // are worked out again for the Services touched alone (a pod's
        // status written by its kubelet touches none; judging 10,000
        // Services again took 22 ms of such a reading).
        let per_service = !first
            && changed
                .iter()
                .all(|k| matches!(k, ApiKind::Services | ApiKind::Endpoints | ApiKind::Pods));
        let touched = per_service.then(|| cluster.changed_services(&self.services_read));
        for (group, out) in cluster::GROUPS.into_iter().zip(&mut self.cluster[1..]) {
            if !reads(&group.kinds().collect::<Vec<_>>()) {
                continue;
            }
            out.clear();
            if group != CheckGroup::ServiceEndpoints {
                let mut found = Vec::new();
                cluster::check_group(cluster, group, &mut found);
                out.extend(found.into_iter().map(Arc::new));
                continue;
            }
            if !Skipped::of(&cluster.unread).runs(group) {
                self.by_service.clear();
                continue;
            }
            match &touched {
                Some(t) => self.by_service.retain(|k, _| !t.contains(k)),
                None => self.by_service.clear(),
            }
            let mut judge = |ns: &str, name: &str, spec, svc| {
                let mut found = Vec::new();
                cluster::check_service(cluster, ns, name, spec, svc, &mut found);
                if !found.is_empty() {
                    let found = found.into_iter().map(Arc::new).collect();
                    self.by_service
                        .insert((ns.to_string(), name.to_string()), found);
                }
            };
            match &touched {
                Some(t) => {
                    for (ns, name) in t {
                        // A Service deleted leaves nothing to judge.
                        if let Some(svc) = cluster.service(ns, name)
                            && let Some(spec) = &svc.spec
                        {
                            judge(ns, name, spec, svc);
                        }
                    }
                }
                None => {
                    for (ns, name, spec, svc) in cluster.service_specs() {
                        judge(ns, name, spec, svc);
                    }
                }
            }
            out.extend(self.by_service.values().flatten().cloned());
        }
        let rules_read = reads(&IPTABLES_READS);
        let overlay_read = reads(&OVERLAY_READS);
        let rest_read = reads(&NODE_READS);
        // kube-proxy's view of the Services, worked out once for every
        // node; the ports that differ from the last update's.
        let mut changed_ports = BTreeSet::new();
        if reads(&[ApiKind::Services, ApiKind::Endpoints]) {
            self.ports = Arc::new(match &touched {
                Some(t) => {
                    // The touched Services' ports, before and now (the
                    // others' are the same by construction).
                    changed_ports = iptables::ports_of_services(&self.ports, t).collect();
                    let before = std::mem::take(&mut self.ports);
                    let before = Arc::try_unwrap(before).unwrap_or_else(|b| (*b).clone());
                    let ports = kube_proxy::service_ports_after(cluster, before, t);
                    changed_ports.extend(iptables::ports_of_services(&ports, t));
                    ports
                }
                None => kube_proxy::service_ports(cluster),
            });
        }
        self.services_read = Cluster::default();
        self.services_read.services = cluster.services.clone();
        self.services_read.endpoint_slices = cluster.endpoint_slices.clone();
        self.services_read.pods = cluster.pods.clone();
        let before: HashMap<&str, &NodeState> = match &self.states {
            Some(old) => old.iter().map(|(n, s)| (n.as_str(), s)).collect(),
            None => HashMap::new(),
        };
        let net = ClusterNetwork::from_cluster(cluster);
        let mut nodes = HashMap::with_capacity(states.len());
        let (mut checked, mut rules_checked, mut overlay_checked) = (0, 0, 0);
        let mut peers_judged = 0;
        for (name, state) in states.iter() {
            let old = before.get(name.as_str());
            let kept = self.nodes.remove(name).filter(|_| old.is_some());
            let state_same = old.is_some_and(|old| *old == state);
            let verdicts = match kept {
                Some(v) if state_same && !rules_read && !overlay_read && !rest_read => {
                    NodeVerdicts {
                        compared: Compared {
                            state_same: true,
                            rules_same: Some(true),
                        },
                        ..v
                    }
                }
                kept => {
                    checked += 1;
                    let inputs = IptablesInputs::of(cluster, state);
                    let rules_same = match (&kept, old) {
                        (Some(_), Some(_)) if state_same => Some(true),
                        (Some(v), Some(old)) if v.inputs == inputs => {
                            Some(old.iptables == state.iptables)
                        }
                        _ => None,
                    };
                    // A route, neighbour or device changed: the rulesets
                    // (113,000 rules at scale) need not be judged again.
                    // Kept whole, brought up to date port by port, or
                    // judged anew.
                    let (iptables, overlay, rest, rules_before, base) = match kept {
                        Some(v) => {
                            let rules_kept = rules_same == Some(true);
                            let (iptables, rules_before) = if rules_kept && !rules_read {
                                (Some((v.iptables, v.iptables_sorted)), None)
                            } else if rules_kept && per_service {
                                (None, Some(v.iptables))
                            } else {
                                (None, None)
                            };
                            // The same objects: the peers whose entries
                            // changed alone are judged again.
                            let overlay = match (state_same, overlay_read, old) {
                                (true, false, _) => Some(v.overlay),
                                (false, false, Some(old)) => {
                                    let after =
                                        v.overlay.after(cluster, name, old, state, net.as_ref());
                                    after.map(|(o, judged)| {
                                        overlay_checked += 1;
                                        peers_judged += judged;
                                        o
                                    })
                                }
                                _ => None,
                            };
                            let rest = Some(v.rest).filter(|_| state_same && !rest_read);
                            let base = Some(v.base)
                                .filter(|_| state_same && overlay.is_some() && rest.is_some());
                            (iptables, overlay, rest, rules_before, base)
                        }
                        None => (None, None, None, None, None),
                    };
                    // The same rules, a few Services' ports changed: their
                    // chains alone are judged again.
                    let by_port = rules_before.map(|b| (b, &changed_ports));
                    let (iptables, iptables_sorted) = iptables.unwrap_or_else(|| {
                        rules_checked += 1;
                        let rules = judge_iptables(
                            cluster,
                            &self.ports,
                            name,
                            state,
                            net.as_ref(),
                            by_port,
                        );
                        let sorted = Run::of(rules.shared().collect(), Some(name));
                        (rules, sorted)
                    });
                    let overlay = overlay.unwrap_or_else(|| {
                        overlay_checked += 1;
                        let (o, judged) =
                            OverlayVerdicts::judged(cluster, name, state, net.as_ref());
                        peers_judged += judged;
                        o
                    });
                    let rest = rest.unwrap_or_else(|| {
                        let mut out = Vec::new();
                        check_node_rest(cluster, name, state, net.as_ref(), &mut out);
                        Run::of(share(out), Some(name))
                    });
                    let base = base.unwrap_or_else(|| Run::merged(&overlay.all, &rest));
                    NodeVerdicts {
                        merged: Run::merged(&iptables_sorted, &base),
                        iptables,
                        iptables_sorted,
                        inputs,
                        overlay,
                        rest,
                        base,
                        compared: Compared {
                            state_same,
                            rules_same,
                        },
                    }
                }
            };
            nodes.insert(name.clone(), verdicts);
        }
        drop(before);
        self.nodes = nodes;
        self.compared_with = self.states.take().as_ref().map(Arc::downgrade);
        self.states = Some(states.clone());
        self.last_checked = checked;
        self.last_rules_checked = rules_checked;
        self.last_overlay_checked = overlay_checked;
        self.last_peers_judged = peers_judged;
        self.last_touched = touched;
        if cluster_changed {
            self.cluster_sorted = Run::of(self.cluster.iter().flatten().cloned().collect(), None);
        }
        // The cluster's run, then each node's by name: `run`'s order
        // without a comparison, and each run shared as the verdicts hold
        // it, when each run is about its node alone. Otherwise the runs
        // one after another in `run`'s order of equal findings, sorted
        // together (the stable sort merges the runs it finds).
        let mut names: Vec<&str> = states.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        let distinct = names.windows(2).all(|w| w[0] != w[1]);
        let runs_own =
            distinct && self.cluster_sorted.own && self.nodes.values().all(|v| v.merged.own);
        if runs_own {
            let nodes = names.iter().map(|n| self.nodes[*n].merged.clone());
            return Findings::of_runs(std::iter::once(self.cluster_sorted.clone()).chain(nodes));
        }
        let mut all: Vec<Arc<Finding>> = (self.cluster_sorted.iter())
            .chain(states.iter().flat_map(|(n, _)| self.nodes[n].merged.iter()))
            .cloned()
            .collect();
        sort(&mut all);
        Findings::of_sorted(all)
    }
}

/// The kinds a node's iptables verdicts read: kube-proxy's Services and
/// their endpoints, and the ConfigMaps that say the proxy mode and the
/// cluster network.
pub const IPTABLES_READS: [ApiKind; 3] =
    [ApiKind::Services, ApiKind::Endpoints, ApiKind::ConfigMaps];

/// The kinds flannel's verdicts on a node read ([`check_node_overlay`]):
/// the Nodes' leases and flannel's net-conf.
pub const OVERLAY_READS: [ApiKind; 2] = [ApiKind::Nodes, ApiKind::ConfigMaps];

/// The kinds the rest of a node's verdicts read ([`check_node_rest`]: the
/// pods' veths, IPVS and nftables, DNS conntrack): all but Ingresses,
/// IngressClasses and NetworkPolicies.
pub const NODE_READS: [ApiKind; 5] = [
    ApiKind::Nodes,
    ApiKind::Pods,
    ApiKind::Services,
    ApiKind::Endpoints,
    ApiKind::ConfigMaps,
];

impl Verdicts {
    /// How node `node`'s state compared with its state in `before` (the
    /// states the previous snapshot shows), if the last update compared
    /// exactly those.
    pub fn compared(&self, before: &States, node: &str) -> Option<Compared> {
        let with = self.compared_with.as_ref()?;
        if !std::ptr::eq(with.as_ptr(), Arc::as_ptr(before)) {
            return None;
        }
        self.nodes.get(node).map(|v| v.compared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::{self, Size};
    use proptest::prelude::*;

    const SIZE: Size = Size {
        nodes: 12,
        pods: 48,
        services: 6,
        endpoints_per_service: 2,
    };

    /// One change a live cluster sees.
    #[derive(Debug, Clone)]
    enum Change {
        /// A node loses its route, neigh and FDB entry towards a peer.
        DropPeerEntries { node: usize, peer: usize },
        /// A node's FDB entry for a peer's VtepMAC points elsewhere.
        FdbElsewhere { node: usize, peer: usize },
        /// A node's flannel.1 goes down.
        VtepDown { node: usize },
        /// A node loses one of kube-proxy's Service chains.
        DropServiceChain { node: usize, chain: usize },
        /// A node's state is read again unchanged.
        Reread { node: usize },
        /// An endpoint of a Service turns NotReady (or Ready again).
        ToggleEndpoint { slice: usize },
        /// A pod is deleted.
        DeletePod { pod: usize },
        /// A pod's Ready condition flips (its kubelet's status write).
        TogglePodReady { pod: usize },
        /// The pods a Service selects lose their labels: it selects none.
        UnlabelPods { service: usize },
        /// The pods a Service selects declare another port than it targets.
        RenumberPods { service: usize },
        /// A Service loses its ports.
        ServiceWithoutPorts { service: usize },
    }

    fn change() -> impl Strategy<Value = Change> {
        let n = SIZE.nodes;
        prop_oneof![
            (0..n, 0..n).prop_map(|(node, peer)| Change::DropPeerEntries { node, peer }),
            (0..n, 0..n).prop_map(|(node, peer)| Change::FdbElsewhere { node, peer }),
            (0..n).prop_map(|node| Change::VtepDown { node }),
            (0..n, 0..64usize).prop_map(|(node, chain)| Change::DropServiceChain { node, chain }),
            (0..n).prop_map(|node| Change::Reread { node }),
            (0..SIZE.services).prop_map(|slice| Change::ToggleEndpoint { slice }),
            (0..SIZE.pods).prop_map(|pod| Change::DeletePod { pod }),
            (0..SIZE.pods).prop_map(|pod| Change::TogglePodReady { pod }),
            (0..SIZE.services).prop_map(|service| Change::UnlabelPods { service }),
            (0..SIZE.services).prop_map(|service| Change::RenumberPods { service }),
            (0..SIZE.services).prop_map(|service| Change::ServiceWithoutPorts { service }),
        ]
    }

    /// Applies `c`.
    fn apply(c: &Change, cluster: &mut Cluster, states: &mut [(String, NodeState)]) {
        match *c {
            Change::DropPeerEntries { node, peer } => {
                let gw = gateway_of(cluster, peer);
                let s = &mut states[node].1;
                if let Some(gw) = gw {
                    s.routes.retain(|r| r.gateway != Some(gw));
                    s.neighs.retain(|n| n.dst != gw);
                }
            }
            Change::FdbElsewhere { node, peer } => {
                let mac = crate::model::flannel::Lease::from_node(&cluster.nodes[peer])
                    .ok()
                    .map(|l| l.vtep_mac);
                for f in &mut states[node].1.fdb {
                    if Some(f.mac) == mac {
                        f.dst = Some(std::net::IpAddr::from([192, 0, 2, 9]));
                    }
                }
            }
            Change::VtepDown { node } => {
                for l in &mut states[node].1.links {
                    if l.name == crate::model::flannel::VTEP_DEVICE {
                        l.up = false;
                    }
                }
            }
            Change::DropServiceChain { node, chain } => {
                let rs = &mut states[node].1.iptables[0].ruleset;
                let svc: Vec<String> = rs
                    .table("nat")
                    .map(|t| t.chains().iter().map(|c| c.name.clone()))
                    .into_iter()
                    .flatten()
                    .filter(|c| c.starts_with("KUBE-SVC-"))
                    .collect();
                if !svc.is_empty() {
                    rs.table_mut("nat").remove_chain(&svc[chain % svc.len()]);
                }
            }
            // Read again: an equal state, not the same one.
            Change::Reread { node } => {
                states[node].1 = states[node].1.clone();
            }
            Change::ToggleEndpoint { slice } => {
                if let Some(ep) = cluster
                    .endpoint_slices
                    .get_mut(slice)
                    .and_then(|s| s.endpoints.first_mut())
                {
                    let c = ep.conditions.get_or_insert_with(Default::default);
                    c.ready = Some(c.ready == Some(false));
                }
                cluster.invalidate_index();
            }
            Change::DeletePod { pod } => {
                if pod < cluster.pods.len() {
                    cluster.pods.remove(pod);
                }
                cluster.invalidate_index();
            }
            Change::TogglePodReady { pod } => {
                if let Some(status) = cluster.pods.get_mut(pod).and_then(|p| p.status.as_mut()) {
                    let ready = status.conditions.iter_mut().flatten();
                    for c in ready.filter(|c| c.type_ == "Ready") {
                        c.status = if c.status == "True" { "False" } else { "True" }.into();
                    }
                }
                cluster.invalidate_index();
            }
            Change::UnlabelPods { service } => {
                for i in selected_by(cluster, service) {
                    cluster.pods[i].metadata.labels = None;
                }
                cluster.invalidate_index();
            }
            Change::RenumberPods { service } => {
                for i in selected_by(cluster, service) {
                    let spec = cluster.pods[i].spec.get_or_insert_default();
                    let ports = spec
                        .containers
                        .iter_mut()
                        .flat_map(|c| c.ports.iter_mut().flatten());
                    for p in ports {
                        p.container_port = 9090;
                    }
                }
                cluster.invalidate_index();
            }
            Change::ServiceWithoutPorts { service } => {
                if let Some(spec) = cluster
                    .services
                    .get_mut(service)
                    .and_then(|s| s.spec.as_mut())
                {
                    spec.ports = None;
                }
                cluster.invalidate_index();
            }
        }
    }

    /// The positions of the pods Service `service` selects.
    fn selected_by(cluster: &Cluster, service: usize) -> Vec<usize> {
        let selected = |p: &k8s_openapi::api::core::v1::Pod| {
            let svc = cluster.services.get(service)?;
            let selector = svc.spec.as_ref()?.selector.as_ref()?;
            let ns = p.metadata.namespace == svc.metadata.namespace;
            Some(ns && crate::model::cluster::selects(selector, p))
        };
        (0..cluster.pods.len())
            .filter(|&i| selected(&cluster.pods[i]) == Some(true))
            .collect()
    }

    /// Node `i`'s flannel gateway, as its peers' routes and neighbours name it.
    fn gateway_of(cluster: &Cluster, i: usize) -> Option<std::net::IpAddr> {
        let l = crate::model::flannel::Lease::from_node(cluster.nodes.get(i)?).ok()?;
        Some(std::net::IpAddr::V4(l.gateway()))
    }

    /// The findings as values, after checking that the handle reads
    /// back whole: by index, by node and counted as its runs say.
    fn unshared(found: &Findings) -> Vec<Finding> {
        let all: Vec<&Arc<Finding>> = found.iter().collect();
        assert_eq!(found.len(), all.len());
        assert_eq!(
            found.tally(),
            super::super::runs::Tally::of(all.iter().copied())
        );
        for (i, f) in all.iter().enumerate() {
            assert!(Arc::ptr_eq(found.get(i).expect("each index"), f));
        }
        for (node, run) in found.runs() {
            assert!(run.iter().all(|f| f.node.as_deref() == node));
            assert_eq!(run.tally, super::super::runs::Tally::of(run.iter()));
        }
        all.into_iter().map(|f| (**f).clone()).collect()
    }

    fn states_of(cluster: &Cluster) -> Vec<(String, NodeState)> {
        (0..SIZE.nodes)
            .map(|i| {
                let mut s = synthetic::node_state(cluster, i);
                s.iptables = vec![crate::dataplane::state::IptablesBackendState {
                    backend: "nft".into(),
                    ruleset: crate::dataplane::iptables::save::parse(&synthetic::iptables_text(
                        cluster, i,
                    ))
                    .expect("synthetic rules parse"),
                    raw: None,
                }]
                .into();
                (
                    cluster.nodes[i].metadata.name.clone().unwrap_or_default(),
                    s,
                )
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// After every change of a random sequence, the kept verdicts are
        /// the full check's; a change of node states alone re-checks only
        /// the nodes whose state changed, their rules only where the rules
        /// changed; a change of objects the rules do not read (pods)
        /// judges no rules again.
        #[test]
        fn incremental_equals_full_after_every_change(changes in proptest::collection::vec(change(), 1..12)) {
            let mut cluster = synthetic::cluster(SIZE);
            let mut states = states_of(&cluster);
            let mut v = Verdicts::new();
            let all = ApiKind::ALL.into_iter().collect();
            let first = v.update(&cluster, &all, &Arc::new(states.clone()));
            prop_assert_eq!(unshared(&first), super::super::run(&cluster, &states));
            prop_assert_eq!(v.last_checked, SIZE.nodes);
            for c in &changes {
                let before = states.clone();
                let objects_before = cluster.clone();
                apply(c, &mut cluster, &mut states);
                let kinds = cluster.changed_kinds(&objects_before);
                let changed_nodes = states.iter().zip(&before).filter(|(a, b)| a != b).count();
                let changed_rules = states
                    .iter()
                    .zip(&before)
                    .filter(|(a, b)| a.1.iptables != b.1.iptables)
                    .count();
                let got = v.update(&cluster, &kinds, &Arc::new(states.clone()));
                prop_assert_eq!(unshared(&got), super::super::run(&cluster, &states), "after {:?}", c);
                if kinds.is_empty() {
                    prop_assert_eq!(v.last_checked, changed_nodes, "after {:?}", c);
                }
                if !IPTABLES_READS.iter().any(|k| kinds.contains(k)) {
                    // Only a change of rules has them judged again.
                    prop_assert_eq!(v.last_rules_checked, changed_rules, "after {:?}", c);
                }
                // A pod's status touches no Service's verdicts.
                if let Change::TogglePodReady { .. } = *c {
                    prop_assert_eq!(v.last_touched.as_ref().map(|t| t.len()), Some(0), "after {:?}", c);
                }
                if !OVERLAY_READS.iter().any(|k| kinds.contains(k)) {
                    // Endpoints, Services or pods leave flannel's verdicts
                    // standing where the node's state did not change.
                    prop_assert_eq!(v.last_overlay_checked, changed_nodes, "after {:?}", c);
                }
                // A peer's entries changed on a node whose VTEP is up:
                // that peer alone is judged again.
                if let Change::DropPeerEntries { node, .. } | Change::FdbElsewhere { node, .. } = *c
                    && kinds.is_empty()
                {
                    let up = states[node].1.link(crate::model::flannel::VTEP_DEVICE).is_some_and(|l| l.up);
                    let judged = usize::from(changed_nodes == 1 && up);
                    prop_assert_eq!(v.last_peers_judged, judged, "after {:?}", c);
                }
            }
        }
    }
}
