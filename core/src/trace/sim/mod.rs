//! The path engine: pure simulation over the cluster objects and the
//! nodes' states. Each step reads the entry the kernel would use (route,
//! neigh, FDB, netfilter rule, IPVS service) and says what it decides.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

mod netfilter;
mod outside;
mod overlay;

use netfilter::*;
use outside::*;
use overlay::*;

use super::resolve::{End, classify_ip};
use super::{Branch, DropReason, Hop, Point, Proto, SentTo, Trace, Verdict};
use crate::check::{Finding, FindingId, Subject, iptables::kube_proxy_ruleset};
use crate::dataplane::NodeState;
use crate::dataplane::iptables::RuleSpec;
use crate::dataplane::lookup;
use crate::model::flannel::{BRIDGE_DEVICE, Lease, VTEP_DEVICE, VXLAN_PORT};
use crate::model::kube_proxy::{ProxyMode, proxy_mode};
use crate::model::{Cluster, ClusterNetwork, dns};

/// One node's KUBE-SERVICES, both ways round.
#[derive(Default)]
struct ServiceRules {
    /// (ClusterIP, port, protocol) -> the KUBE-SVC chain.
    chain_by_vip: HashMap<(String, u16, String), String>,
    /// KUBE-SVC chain -> the ClusterIP and port of its first rule (how a
    /// NodePort's chain leads back to the Service it stands for).
    vip_by_chain: HashMap<String, (IpAddr, u16)>,
}

impl ServiceRules {
    fn of(state: &NodeState) -> Option<ServiceRules> {
        let rules = &kube_proxy_ruleset(state)?
            .table("nat")?
            .chain("KUBE-SERVICES")?
            .rules;
        let mut out = ServiceRules::default();
        for r in rules.iter().filter_map(|r| RuleSpec::parse(r).ok()) {
            let (Some(host), Some(port), Some(proto), Some(target)) = (
                r.dst_host(),
                r.dport,
                r.proto.as_deref(),
                r.target
                    .as_deref()
                    .filter(|t| crate::model::kube_proxy::leads_to_service(t)),
            ) else {
                continue;
            };
            if let Ok(ip) = host.parse::<IpAddr>() {
                out.vip_by_chain
                    .entry(target.to_string())
                    .or_insert((ip, port));
            }
            out.chain_by_vip.insert(
                (host.to_string(), port, proto.to_string()),
                target.to_string(),
            );
        }
        Some(out)
    }
}

/// What the engine works over.
pub struct World<'a> {
    pub cluster: &'a Cluster,
    pub nodes: &'a [(String, NodeState)],
    /// `check`'s findings, to name the one that explains a drop.
    pub findings: &'a [Arc<Finding>],
    /// Each node's KUBE-SERVICES, indexed once (10,000 Services are 10,000 rules).
    service_rules: OnceLock<HashMap<String, ServiceRules>>,
    /// Each node's routes, indexed once (5,000 overlay routes per node).
    route_index: OnceLock<HashMap<String, lookup::RouteIndex>>,
}

/// The packet being followed.
#[derive(Debug, Clone)]
struct Packet {
    src: IpAddr,
    dst: IpAddr,
    port: Option<u16>,
    proto: Proto,
    /// The size the sender assumes (its interface MTU).
    size: u32,
}

impl<'a> World<'a> {
    /// A world over these objects, node states and findings.
    pub fn new(
        cluster: &'a Cluster,
        nodes: &'a [(String, NodeState)],
        findings: &'a [Arc<Finding>],
    ) -> Self {
        World {
            cluster,
            nodes,
            findings,
            service_rules: OnceLock::new(),
            route_index: OnceLock::new(),
        }
    }

    /// The node that holds underlay address `ip`: by its Node object, or,
    /// where the API server refused the Nodes list, by a read node's own
    /// addresses (an FDB entry is not called stale for want of a list).
    fn node_at(&self, ip: IpAddr) -> Option<String> {
        let nodes_refused = self
            .cluster
            .refused(crate::model::reading::ApiKind::Nodes)
            .is_some();
        super::resolve::node_by_ip(self.cluster, ip).or_else(|| {
            nodes_refused
                .then(|| {
                    self.nodes
                        .iter()
                        .find(|(_, s)| s.addrs.iter().any(|a| a.address == ip))
                        .map(|(n, _)| n.clone())
                })
                .flatten()
        })
    }

    /// The route `node` (whose state is `state`) picks for `dst`.
    fn route(
        &self,
        node: &str,
        state: &'a NodeState,
        dst: IpAddr,
    ) -> Option<&'a crate::dataplane::state::Route> {
        let all = self.route_index.get_or_init(|| {
            self.nodes
                .iter()
                .map(|(n, s)| (n.clone(), lookup::RouteIndex::build(s)))
                .collect()
        });
        match all.get(node) {
            Some(ix) => ix.route(state, dst),
            None => lookup::route(state, dst),
        }
    }

    /// `node`'s KUBE-SERVICES, indexed on first use.
    fn service_rules(&self, node: &str) -> Option<&ServiceRules> {
        self.service_rules
            .get_or_init(|| {
                self.nodes
                    .iter()
                    .filter_map(|(n, s)| Some((n.clone(), ServiceRules::of(s)?)))
                    .collect()
            })
            .get(node)
    }

    /// The KUBE-SVC chain `node` sends `ip:port/proto` to, if any.
    fn service_chain(&self, node: &str, ip: &str, port: u16, proto: &str) -> Option<&str> {
        self.service_rules(node)?
            .chain_by_vip
            .get(&(ip.to_string(), port, proto.to_string()))
            .map(String::as_str)
    }

    /// The ClusterIP and port whose KUBE-SERVICES rule jumps to `chain` on `node`.
    fn service_vip(&self, node: &str, chain: &str) -> Option<(IpAddr, u16)> {
        self.service_rules(node)?.vip_by_chain.get(chain).copied()
    }

    fn state(&self, node: &str) -> Option<&'a NodeState> {
        self.nodes.iter().find(|(n, _)| n == node).map(|(_, s)| s)
    }

    /// The first finding among `ids` on `node` (or cluster-level when
    /// `None`) that names `about` as one of its subjects, by equality: in a
    /// lab of 101 nodes Node `k8s-node-11` is not `k8s-node-110`.
    fn finding(
        &self,
        ids: &[FindingId],
        node: Option<&str>,
        about: Option<&Subject>,
    ) -> Option<Finding> {
        ids.iter().find_map(|id| {
            self.findings
                .iter()
                .find(|f| {
                    f.id == *id && f.node.as_deref() == node && about.is_none_or(|a| f.names(a))
                })
                .map(|f| (**f).clone())
        })
    }

    /// `hop` with the finding that explains it: the one about `peer` if
    /// there is one, else the first of `ids` on `node`.
    fn with_finding(
        &self,
        hop: Hop,
        ids: &[FindingId],
        node: Option<&str>,
        peer: Option<&str>,
    ) -> Hop {
        let about = peer.map(Subject::node);
        Hop {
            finding: self
                .finding(ids, node, about.as_ref())
                .or_else(|| self.finding(ids, node, None))
                .map(Box::new),
            ..hop
        }
    }

    /// The mismatch finding that names an endpoint at `ip` as stale: an
    /// IPVS real server by its address, or a KUBE-SEP chain whose DNAT on
    /// the finding's node goes to `ip`.
    fn stale_endpoint_finding(&self, ip: IpAddr) -> Option<Finding> {
        let host_is = |hostport: &str| {
            hostport
                .rsplit_once(':')
                .map_or(hostport, |(h, _)| h)
                .parse::<IpAddr>()
                .is_ok_and(|h| h == ip)
        };
        self.findings
            .iter()
            .find(|f| {
                f.objects
                    .iter()
                    .filter(|o| o.mark == Some(crate::check::Mark::Stale))
                    .any(|o| match &o.subject {
                        Subject::RealServer { addr, .. } => host_is(addr),
                        Subject::Chain { table, chain } => f
                            .node
                            .as_deref()
                            .and_then(|n| self.state(n))
                            .and_then(kube_proxy_ruleset)
                            .and_then(|rs| {
                                rs.specs(table, chain)
                                    .iter()
                                    .find_map(|r| r.to_destination.clone())
                            })
                            .is_some_and(|d| host_is(&d)),
                        _ => false,
                    })
            })
            .map(|f| (**f).clone())
    }

    fn lease(&self, node: &str) -> Option<Lease> {
        self.cluster.index().nodes.lease_by_node.get(node).cloned()
    }

    /// The node whose pod CIDR holds `ip`.
    fn node_of_pod_ip(&self, ip: IpAddr) -> Option<String> {
        let IpAddr::V4(v4) = ip else { return None };
        self.cluster
            .index()
            .nodes
            .node_of_pod_ip(v4)
            .map(str::to_string)
    }
}

/// Follows `src` to `dst`.
pub fn trace(world: &World, src: &End, dst: &End, proto: Proto, port: Option<u16>) -> Trace {
    let mut t = Trace {
        source: src.label(),
        destination: dst.label(),
        protocol: proto,
        port,
        hops: Vec::new(),
        branches: Vec::new(),
        reachable: false,
        path_mtu: None,
        sent_to: None,
        unread: world.cluster.unread.clone(),
    };
    match src {
        End::Pod { ip, node, .. } => from_pod(world, &mut t, *ip, node, dst, proto, port),
        End::Outside { ip } => from_outside(world, &mut t, *ip, dst, proto, port),
        other => t
            .hops
            .push(Hop::new(Point::FromPod, None, None, "source").drop(
                DropReason::NoRoute,
                format!(
                    "tracing from {} is not supported: start from a pod or an outside address",
                    other.label()
                ),
            )),
    }
    t.reachable = t.hops.iter().all(|h| h.verdict != Verdict::Drop)
        && !t.branches.is_empty()
        && t.branches.iter().all(|b| b.reachable);
    t.path_mtu = t
        .branches
        .iter()
        .flat_map(|b| b.hops.iter())
        .filter_map(|h| h.mtu)
        .min();
    t
}

fn pod_mtu(world: &World, node: &str, ip: IpAddr) -> u32 {
    world
        .state(node)
        .and_then(|s| s.attachments.iter().find(|a| a.addrs.contains(&ip)))
        .map(|a| a.mtu)
        .unwrap_or(1450)
}

fn from_pod(
    world: &World,
    t: &mut Trace,
    src_ip: IpAddr,
    node: &str,
    dst: &End,
    proto: Proto,
    port: Option<u16>,
) {
    let Some((dst, pkt)) = aim(world, t, src_ip, node, dst, proto, port) else {
        return;
    };
    let dst_ip = pkt.dst;
    // A pod's loopback is its own: the packet never leaves its namespace.
    if dst_ip.is_loopback() {
        t.branches.push(Branch {
            label: format!("to {dst_ip}"),
            hops: vec![
                Hop::new(Point::ToPod, None, Some("lo"), "the pod's own loopback")
                    .evidence(format!("{dst_ip} never leaves the pod's network namespace")),
            ],
            reachable: true,
        });
        return;
    }
    t.hops.push(leave_pod(world, node, src_ip));
    if t.hops.last().is_some_and(|h| h.verdict == Verdict::Drop) {
        return;
    }
    match &dst {
        // A Service: kube-proxy's DNAT on the source node forks the path.
        End::Service {
            namespace, name, ..
        } => to_service(world, t, node, pkt, namespace, name),
        End::NodePort { node: np_node, .. } => to_nodeport(world, t, node, &pkt, np_node),
        _ => {
            let same_bridge = world.node_of_pod_ip(dst_ip).as_deref() == Some(node);
            t.branches.push(branch(
                world,
                node,
                &pkt,
                format!("to {}", dst.label()),
                !same_bridge,
            ));
        }
    }
}

/// The destination as the pod sends to it (a DNS name resolved first)
/// and the packet it sends; `None` when the trace already ended.
fn aim(
    world: &World,
    t: &mut Trace,
    src_ip: IpAddr,
    node: &str,
    dst: &End,
    proto: Proto,
    port: Option<u16>,
) -> Option<(End, Packet)> {
    // Names first, as the pod's resolver would.
    let dst = match dst {
        End::Dns { name } => resolve_name(world, t, src_ip, node, name)?,
        other => other.clone(),
    };
    let (dst_ip, port) = match &dst {
        End::Pod { ip, .. } | End::Outside { ip } | End::Node { ip, .. } => (*ip, port),
        End::Service { ip, port: p, .. } => (*ip, port.or(*p)),
        End::NodePort { ip, port: p, .. } => (*ip, Some(*p)),
        End::Url { .. } | End::Dns { .. } => {
            t.hops.push(
                Hop::new(Point::FromPod, Some(node), Some("eth0"), "source").drop(
                    DropReason::NoSuchHost,
                    "trace a URL from outside (SRC = an outside address)",
                ),
            );
            return None;
        }
    };
    t.sent_to = Some(SentTo {
        proto,
        ip: dst_ip,
        port,
        http: None,
    });
    let pkt = Packet {
        src: src_ip,
        dst: dst_ip,
        port,
        proto,
        size: pod_mtu(world, node, src_ip),
    };
    Some((dst, pkt))
}

/// A Service's ClusterIP from a pod: kube-proxy's DNAT on `node` picks an
/// endpoint; each is a branch.
fn to_service(
    world: &World,
    t: &mut Trace,
    node: &str,
    mut pkt: Packet,
    namespace: &str,
    name: &str,
) {
    if pkt.port.is_none() {
        // No port given: the Service's first port of this protocol.
        pkt.port = first_port(world, namespace, name, pkt.proto);
        if let Some(sent) = t.sent_to.as_mut() {
            sent.port = pkt.port;
        }
    }
    let targets = match service_targets(world, node, &pkt, &format!("{namespace}/{name}")) {
        Ok((hop, targets)) => {
            t.hops.push(hop);
            targets
        }
        Err(hop) => {
            t.hops.push(hop);
            return;
        }
    };
    for ((ip, port), label) in targets {
        let mut p = pkt.clone();
        p.dst = ip;
        p.port = Some(port);
        t.branches.push(branch(world, node, &p, label, true));
    }
}

/// The first port of Service `namespace/name` with protocol `proto`.
fn first_port(world: &World, namespace: &str, name: &str, proto: Proto) -> Option<u16> {
    world
        .cluster
        .service(namespace, name)?
        .spec
        .as_ref()?
        .ports
        .as_ref()?
        .iter()
        .find(|p| {
            p.protocol
                .as_deref()
                .unwrap_or("TCP")
                .eq_ignore_ascii_case(proto.name())
        })
        .map(|p| p.port as u16)
}

/// The first hops out of a pod: its eth0, and its veth on cni0.
fn leave_pod(world: &World, node: &str, src_ip: IpAddr) -> Hop {
    let Some(state) = world.state(node) else {
        return Hop::new(
            Point::ToBridge,
            Some(node),
            Some(BRIDGE_DEVICE),
            "node state",
        )
        .warn("no state read for this node; hops on it are assumed");
    };
    let att = state.attachments.iter().find(|a| a.addrs.contains(&src_ip));
    let host = att
        .and_then(|a| a.peer_ifindex)
        .and_then(|i| state.links.iter().find(|l| l.ifindex == i));
    let on_bridge = |a: &crate::dataplane::state::Attachment, h: &crate::dataplane::state::Link| {
        a.up && h.up && h.master.as_deref() == Some(BRIDGE_DEVICE)
    };
    match (att, host) {
        (Some(a), Some(h)) if on_bridge(a, h) && h.mtu < a.mtu => world.with_finding(
            Hop::new(
                Point::ToBridge,
                Some(node),
                Some(&h.name),
                format!("veth {}", h.name),
            )
            .drop(
                DropReason::Mtu,
                format!(
                    "the pod sends up to {} bytes but {} takes {}",
                    a.mtu, h.name, h.mtu
                ),
            ),
            &[FindingId::PodVethMtuMismatch],
            Some(node),
            None,
        ),
        (Some(a), Some(h)) if on_bridge(a, h) => Hop::new(
            Point::ToBridge,
            Some(node),
            Some(&h.name),
            format!("veth {} <-> pod eth0, port of {BRIDGE_DEVICE}", h.name),
        )
        .evidence(format!("pod eth0 mtu {}", a.mtu)),
        (Some(_), Some(h)) => veth_off_bridge(world, node, h),
        (Some(_), None) => world.with_finding(
            Hop::new(Point::ToBridge, Some(node), None, "veth").drop(
                DropReason::VethDown,
                "the pod's veth has no peer on the node",
            ),
            &[FindingId::PodVethMissing],
            Some(node),
            None,
        ),
        (None, _) => Hop::new(
            Point::ToBridge,
            Some(node),
            Some(BRIDGE_DEVICE),
            "pod namespace",
        )
        .warn("the pod's interface was not read; assuming its veth is on cni0"),
    }
}

/// A pod's veth that is down or not a port of cni0.
fn veth_off_bridge(world: &World, node: &str, h: &crate::dataplane::state::Link) -> Hop {
    world.with_finding(
        Hop::new(
            Point::ToBridge,
            Some(node),
            Some(&h.name),
            format!("veth {}", h.name),
        )
        .drop(
            DropReason::VethDown,
            format!(
                "{} is {}{}",
                h.name,
                if h.up { "up" } else { "DOWN" },
                h.master
                    .as_ref()
                    .map(|m| format!(", master {m}"))
                    .unwrap_or_else(|| ", not on cni0".into())
            ),
        ),
        &[FindingId::PodVethDown, FindingId::PodVethNotOnBridge],
        Some(node),
        None,
    )
}

/// Resolves `name` as the pod would: its search list over cluster DNS
/// records, after checking that kube-dns itself answers.
fn resolve_name(
    world: &World,
    t: &mut Trace,
    src_ip: IpAddr,
    node: &str,
    name: &str,
) -> Option<End> {
    let ns = world
        .cluster
        .pod_by_ip(&src_ip.to_string())
        .and_then(|p| p.metadata.namespace.clone())
        .unwrap_or_else(|| "default".into());
    if let Some(svc) = world.cluster.service("kube-system", "kube-dns") {
        let dns_ip = IpAddr::V4(
            svc.spec
                .as_ref()
                .and_then(crate::model::cluster::service_ipv4)?,
        );
        if let Some(hop) = dns_unreachable(world, src_ip, &ns, node, dns_ip) {
            t.hops.push(hop);
            // What fails is the query itself: that is what a probe sends.
            t.sent_to = Some(SentTo {
                proto: Proto::Udp,
                ip: dns_ip,
                port: Some(53),
                http: None,
            });
            return None;
        }
    }
    let records = dns::records(world.cluster, dns::CLUSTER_DOMAIN);
    for candidate in crate::inspect::chain::search_candidates(name, &ns) {
        if let Some(r) = records.iter().find(|r| r.name == candidate) {
            t.hops.push(
                Hop::new(
                    Point::Dns,
                    Some(node),
                    None,
                    format!("search list of namespace {ns}, ndots:5"),
                )
                .evidence(format!("{candidate} -> {}", r.ip)),
            );
            return Some(classify_ip(world.cluster, IpAddr::V4(r.ip)));
        }
    }
    t.hops.push(
        Hop::new(
            Point::Dns,
            Some(node),
            None,
            format!("search list of namespace {ns}"),
        )
        .drop(
            DropReason::NoSuchHost,
            format!("{name}: NXDOMAIN for every search domain"),
        ),
    );
    None
}

/// The pod's query to kube-dns traced as a packet of its own: the hop
/// that says why it fails, or `None` when it gets there.
fn dns_unreachable(
    world: &World,
    src_ip: IpAddr,
    ns: &str,
    node: &str,
    dns_ip: IpAddr,
) -> Option<Hop> {
    let sub = trace(
        world,
        &End::Pod {
            namespace: ns.to_string(),
            name: String::new(),
            ip: src_ip,
            node: node.to_string(),
        },
        &End::Service {
            namespace: "kube-system".into(),
            name: "kube-dns".into(),
            ip: dns_ip,
            port: Some(53),
        },
        Proto::Udp,
        Some(53),
    );
    if sub.reachable {
        return None;
    }
    let why = sub
        .hops
        .iter()
        .chain(sub.branches.iter().flat_map(|b| &b.hops))
        .find(|h| h.verdict == Verdict::Drop)
        .cloned();
    let mut hop = Hop::new(
        Point::Dns,
        Some(node),
        None,
        format!("kube-dns {dns_ip}:53/udp"),
    )
    .drop(
        DropReason::DnsUnavailable,
        format!(
            "queries to kube-dns fail{}",
            why.as_ref()
                .map(|h| format!(": {} ({})", h.evidence, h.decided_by))
                .unwrap_or_default()
        ),
    );
    hop.finding = why.and_then(|h| h.finding).or_else(|| {
        world
            .finding(&[FindingId::KubeDnsNoEndpoints], None, None)
            .map(Box::new)
    });
    Some(hop)
}

/// From `node`, where the packet is routed (after leaving a pod or after
/// DNAT), to its destination; then the way back. `routed` is false for
/// pod-to-pod traffic that stays on one bridge.
fn branch(world: &World, node: &str, pkt: &Packet, label: String, routed: bool) -> Branch {
    let mut hops = Vec::new();
    deliver(world, node, pkt, routed, &mut hops);
    let delivered = hops.iter().all(|h| h.verdict != Verdict::Drop);
    if delivered {
        return_path(world, pkt, &mut hops);
    }
    let reachable = hops.iter().all(|h| h.verdict != Verdict::Drop);
    Branch {
        label,
        hops,
        reachable,
    }
}

fn deliver(world: &World, node: &str, pkt: &Packet, routed: bool, hops: &mut Vec<Hop>) {
    let Some(a) = world.state(node) else {
        hops.push(
            Hop::new(Point::Routing, Some(node), None, "node state")
                .warn("no state read for this node"),
        );
        return;
    };
    if !routed {
        // Same bridge: cni0 switches it; br_netfilter still runs FORWARD.
        if forwarded(world, node, a, hops) {
            to_pod(world, node, a, pkt, hops);
        }
        return;
    }
    if let Some(h) = no_pod_gateway(world, node, a, pkt).or_else(|| no_forwarding(world, node, a)) {
        hops.push(h);
        return;
    }
    let Some(route) = world.route(node, a, pkt.dst) else {
        hops.push(no_route(world, node, a, pkt));
        return;
    };
    let rdesc = route_text(route);
    if route.kind == "local" {
        hops.push(
            Hop::new(Point::Routing, Some(node), route.dev.as_deref(), rdesc)
                .evidence("a local address"),
        );
        hops.push(
            Hop::new(
                Point::ToHost,
                Some(node),
                route.dev.as_deref(),
                "local delivery",
            )
            .evidence(format!("{} is this node's", pkt.dst)),
        );
        return;
    }
    hops.push(Hop::new(
        Point::Routing,
        Some(node),
        route.dev.as_deref(),
        rdesc.clone(),
    ));
    if !forwarded(world, node, a, hops) {
        return;
    }
    match route.dev.as_deref() {
        Some(BRIDGE_DEVICE) => to_pod(world, node, a, pkt, hops),
        Some(VTEP_DEVICE) => overlay(world, node, a, route.gateway, pkt, hops),
        Some(dev) => outward(world, node, a, dev, pkt, hops),
        None => hops.push(
            Hop::new(Point::Routing, Some(node), None, rdesc)
                .drop(DropReason::NoRoute, format!("a {} route", route.kind)),
        ),
    }
}

/// FORWARD's verdict on `node`, pushed when it has one; false when it drops.
fn forwarded(world: &World, node: &str, a: &NodeState, hops: &mut Vec<Hop>) -> bool {
    match forward_verdict(world, node, a) {
        Some(h) => {
            let dropped = h.verdict == Verdict::Drop;
            hops.push(h);
            !dropped
        }
        None => true,
    }
}

/// A pod's packet on its own node, when cni0 does not hold the pods'
/// default gateway: the pod has nowhere to send it.
fn no_pod_gateway(world: &World, node: &str, a: &NodeState, pkt: &Packet) -> Option<Hop> {
    let lease = world.lease(node)?;
    let IpAddr::V4(src) = pkt.src else {
        return None;
    };
    if world.cluster.pod_by_ip(&pkt.src.to_string()).is_none() || !lease.pod_cidr.contains(&src) {
        return None;
    }
    let gw = lease.bridge_address();
    if a.addrs_of(BRIDGE_DEVICE)
        .any(|x| x.address == IpAddr::V4(gw.addr()))
    {
        return None;
    }
    Some(
        world.with_finding(
            Hop::new(
                Point::Routing,
                Some(node),
                Some(BRIDGE_DEVICE),
                format!("pod default route via {}", gw.addr()),
            )
            .drop(
                DropReason::NoGateway,
                format!("{BRIDGE_DEVICE} does not hold the pods' gateway {gw}"),
            ),
            &[FindingId::Cni0AddrWrong],
            Some(node),
            None,
        ),
    )
}

/// The node does not route at all (ip_forward 0).
fn no_forwarding(world: &World, node: &str, a: &NodeState) -> Option<Hop> {
    (a.sysctls.ip_forward == Some(false)).then(|| {
        world.with_finding(
            Hop::new(Point::Routing, Some(node), None, "net.ipv4.ip_forward").drop(
                DropReason::IpForwardOff,
                "ip_forward is 0: the node does not route",
            ),
            &[FindingId::IpForwardOff],
            Some(node),
            None,
        )
    })
}

/// No route matches the destination (flannel.1 down flushes them all).
fn no_route(world: &World, node: &str, a: &NodeState, pkt: &Packet) -> Hop {
    let vtep_down = a.link(VTEP_DEVICE).is_some_and(|l| !l.up);
    world.with_finding(
        Hop::new(Point::Routing, Some(node), None, "main table").drop(
            DropReason::NoRoute,
            format!(
                "no route to {}{}",
                pkt.dst,
                if vtep_down {
                    " (flannel.1 is down; its routes were flushed)"
                } else {
                    ""
                }
            ),
        ),
        &[FindingId::VtepDown, FindingId::RouteMissing],
        Some(node),
        None,
    )
}

/// A route as `ip route` prints it.
fn route_text(route: &crate::dataplane::state::Route) -> String {
    format!(
        "{} {}{}dev {}{}",
        if route.table == 255 { "local" } else { "route" },
        route.dst,
        route
            .gateway
            .map(|g| format!(" via {g} "))
            .unwrap_or_else(|| " ".into()),
        route.dev.clone().unwrap_or_default(),
        if route.onlink() { " onlink" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{ObjectRef, Severity};

    #[test]
    fn a_peer_is_found_by_its_whole_name() {
        let cluster = Cluster::default();
        let findings: Vec<Finding> = ["k8s-node-110", "k8s-node-11"]
            .iter()
            .map(|peer| {
                Finding::new(
                    FindingId::RouteMissing,
                    Severity::Error,
                    Some("k8s-node-12"),
                    "x",
                )
                .object(ObjectRef::new("Node", *peer))
            })
            .collect();
        let findings = crate::check::share(findings);
        let world = World::new(&cluster, &[], &findings);
        let f = world
            .finding(
                &[FindingId::RouteMissing],
                Some("k8s-node-12"),
                Some(&Subject::node("k8s-node-11")),
            )
            .unwrap();
        assert_eq!(f.objects[0].subject, Subject::node("k8s-node-11"));
    }
}
