//! The path engine: pure simulation over the cluster objects and the
//! nodes' states. Each step reads the entry the kernel would use (route,
//! neigh, FDB, netfilter rule, IPVS service) and says what it decides.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::OnceLock;

use super::resolve::{End, classify_ip, node_by_ip};
use super::{Branch, DropReason, Hop, Point, Trace, Verdict};
use crate::check::{Finding, iptables::kube_proxy_ruleset};
use crate::dataplane::NodeState;
use crate::dataplane::iptables::RuleSpec;
use crate::dataplane::lookup;
use crate::model::flannel::{BRIDGE_DEVICE, Lease, VTEP_DEVICE, VXLAN_PORT};
use crate::model::kube_proxy::{ProxyMode, proxy_mode};
use crate::model::{Cluster, ClusterNetwork, dns};

/// (ClusterIP, port, protocol) -> the KUBE-SVC chain, per node.
type ServiceRules = HashMap<String, HashMap<(String, u16, String), String>>;

/// What the engine works over.
pub struct World<'a> {
    pub cluster: &'a Cluster,
    pub nodes: &'a [(String, NodeState)],
    /// `check`'s findings, to name the one that explains a drop.
    pub findings: &'a [Finding],
    /// Each node's KUBE-SERVICES, indexed once (10,000 Services are 10,000 rules).
    service_rules: OnceLock<ServiceRules>,
    /// Each node's routes, indexed once (5,000 overlay routes per node).
    route_index: OnceLock<HashMap<String, lookup::RouteIndex>>,
}

/// The packet being followed.
#[derive(Debug, Clone)]
struct Packet {
    src: IpAddr,
    dst: IpAddr,
    port: Option<u16>,
    proto: String,
    /// The size the sender assumes (its interface MTU).
    size: u32,
}

impl<'a> World<'a> {
    /// A world over these objects, node states and findings.
    pub fn new(
        cluster: &'a Cluster,
        nodes: &'a [(String, NodeState)],
        findings: &'a [Finding],
    ) -> Self {
        World {
            cluster,
            nodes,
            findings,
            service_rules: OnceLock::new(),
            route_index: OnceLock::new(),
        }
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

    /// The KUBE-SVC chain `node` sends `ip:port/proto` to, if any.
    fn service_chain(&self, node: &str, ip: &str, port: u16, proto: &str) -> Option<&str> {
        let all = self.service_rules.get_or_init(|| {
            self.nodes
                .iter()
                .filter_map(|(n, s)| {
                    let rs = kube_proxy_ruleset(s)?;
                    let map = rs
                        .table("nat")?
                        .chain("KUBE-SERVICES")?
                        .rules
                        .iter()
                        .filter_map(|r| RuleSpec::parse(r).ok())
                        .filter_map(|r| {
                            Some((
                                (r.dst_host()?.to_string(), r.dport?, r.proto.clone()?),
                                r.target.clone()?,
                            ))
                        })
                        .collect();
                    Some((n.clone(), map))
                })
                .collect()
        });
        all.get(node)?
            .get(&(ip.to_string(), port, proto.to_string()))
            .map(String::as_str)
    }

    fn state(&self, node: &str) -> Option<&'a NodeState> {
        self.nodes.iter().find(|(n, _)| n == node).map(|(_, s)| s)
    }

    /// The first finding among `ids` on `node` (or cluster-level when `None`).
    fn finding(&self, ids: &[&str], node: Option<&str>, about: Option<&str>) -> Option<Finding> {
        ids.iter().find_map(|id| {
            self.findings
                .iter()
                .find(|f| {
                    f.id == *id
                        && f.node.as_deref() == node
                        && about.is_none_or(|a| {
                            f.objects.iter().any(|o| o.name.contains(a)) || f.summary.contains(a)
                        })
                })
                .cloned()
        })
    }

    fn with_finding(&self, hop: Hop, ids: &[&str], node: Option<&str>, about: Option<&str>) -> Hop {
        Hop {
            finding: self
                .finding(ids, node, about)
                .or_else(|| self.finding(ids, node, None))
                .map(Box::new),
            ..hop
        }
    }

    fn lease(&self, node: &str) -> Option<Lease> {
        self.cluster.index().lease_by_node.get(node).cloned()
    }

    /// The node whose pod CIDR holds `ip`.
    fn node_of_pod_ip(&self, ip: IpAddr) -> Option<String> {
        let IpAddr::V4(v4) = ip else { return None };
        self.cluster.index().node_of_pod_ip(v4).map(str::to_string)
    }
}

/// Follows `src` to `dst`.
pub fn trace(world: &World, src: &End, dst: &End, proto: &str, port: Option<u16>) -> Trace {
    let mut t = Trace {
        source: src.label(),
        destination: dst.label(),
        protocol: proto.to_string(),
        port,
        hops: Vec::new(),
        branches: Vec::new(),
        reachable: false,
        path_mtu: None,
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
        .filter_map(|h| {
            h.evidence
                .split("mtu ")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
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
    proto: &str,
    port: Option<u16>,
) {
    let size = pod_mtu(world, node, src_ip);
    // Names first, as the pod's resolver would.
    let dst = match dst {
        End::Dns { name } => match resolve_name(world, t, src_ip, node, name) {
            Some(end) => end,
            None => return,
        },
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
            return;
        }
    };
    let pkt = Packet {
        src: src_ip,
        dst: dst_ip,
        port,
        proto: proto.to_string(),
        size,
    };
    t.hops.push(leave_pod(world, node, src_ip));
    if t.hops.last().is_some_and(|h| h.verdict == Verdict::Drop) {
        return;
    }
    // A Service: kube-proxy's DNAT on the source node forks the path.
    if let End::Service {
        namespace, name, ..
    } = &dst
    {
        let mut pkt = pkt.clone();
        if pkt.port.is_none() {
            // No port given: the Service's first port of this protocol.
            pkt.port = world.cluster.service(namespace, name).and_then(|s| {
                s.spec
                    .as_ref()?
                    .ports
                    .as_ref()?
                    .iter()
                    .find(|p| {
                        p.protocol
                            .as_deref()
                            .unwrap_or("TCP")
                            .eq_ignore_ascii_case(proto)
                    })
                    .map(|p| p.port as u16)
            });
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
        for (target, label) in targets {
            let mut p = pkt.clone();
            let (ip, tport) = target;
            p.dst = ip;
            p.port = Some(tport);
            t.branches.push(branch(world, node, &p, label, true));
        }
        return;
    }
    let same_bridge = world.node_of_pod_ip(dst_ip).as_deref() == Some(node);
    t.branches.push(branch(
        world,
        node,
        &pkt,
        format!("to {}", dst.label()),
        !same_bridge,
    ));
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
    match (att, host) {
        (Some(a), Some(h)) if a.up && h.up && h.master.as_deref() == Some(BRIDGE_DEVICE) => {
            Hop::new(
                Point::ToBridge,
                Some(node),
                Some(&h.name),
                format!("veth {} <-> pod eth0, port of {BRIDGE_DEVICE}", h.name),
            )
            .evidence(format!("pod eth0 mtu {}", a.mtu))
        }
        (Some(_), Some(h)) => world.with_finding(
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
            &["pod-veth-down", "pod-veth-not-on-bridge"],
            Some(node),
            None,
        ),
        (Some(_), None) => world.with_finding(
            Hop::new(Point::ToBridge, Some(node), None, "veth").drop(
                DropReason::VethDown,
                "the pod's veth has no peer on the node",
            ),
            &["pod-veth-missing"],
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
    let dns_svc = world.cluster.service("kube-system", "kube-dns");
    if let Some(svc) = dns_svc {
        let dns_ip: IpAddr = svc
            .spec
            .as_ref()
            .and_then(|s| s.cluster_ip.as_deref())
            .and_then(|i| i.parse().ok())?;
        let sub = trace(
            world,
            &End::Pod {
                namespace: ns.clone(),
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
            "udp",
            Some(53),
        );
        if !sub.reachable {
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
                    .finding(&["kube-dns-no-endpoints"], None, None)
                    .map(Box::new)
            });
            t.hops.push(hop);
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
            let end = classify_ip(world.cluster, IpAddr::V4(r.ip));
            return Some(end);
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

type Targets = Vec<((IpAddr, u16), String)>;

/// kube-proxy's DNAT for a Service address on `node`: the hop that decides,
/// and each endpoint with its probability.
fn service_targets(
    world: &World,
    node: &str,
    pkt: &Packet,
    svc_name: &str,
) -> Result<(Hop, Targets), Hop> {
    let Some(state) = world.state(node) else {
        return Err(
            Hop::new(Point::NetfilterNat, Some(node), None, "kube-proxy")
                .drop(DropReason::NoServiceRule, "no state read for this node"),
        );
    };
    let port = pkt.port.unwrap_or(0);
    let proto = pkt.proto.as_str();
    if proxy_mode(world.cluster) == ProxyMode::Ipvs {
        let addr = format!("{}:{port}", pkt.dst);
        return match state
            .ipvs
            .iter()
            .find(|v| v.proto == proto && v.addr == addr)
        {
            Some(v) if !v.reals.is_empty() => {
                let n = v.reals.len();
                let targets = v
                    .reals
                    .iter()
                    .filter_map(|r| {
                        Some((
                            parse_ipport(&r.addr)?,
                            format!("real server {} ({} 1/{n})", r.addr, v.scheduler),
                        ))
                    })
                    .collect();
                Ok((
                    Hop::new(
                        Point::NetfilterNat,
                        Some(node),
                        None,
                        format!("IPVS {proto} {addr} {}", v.scheduler),
                    )
                    .evidence(format!("{n} real server(s)")),
                    targets,
                ))
            }
            Some(_) => Err(Hop::new(
                Point::NetfilterNat,
                Some(node),
                None,
                format!("IPVS {proto} {addr}"),
            )
            .drop(DropReason::NoEndpoints, "no real servers")),
            None => Err(world.with_finding(
                Hop::new(Point::NetfilterNat, Some(node), None, "IPVS").drop(
                    DropReason::NoServiceRule,
                    format!("no virtual server {proto} {addr}"),
                ),
                &["ipvs-virtual-server-missing"],
                Some(node),
                None,
            )),
        };
    }
    let Some(rs) = kube_proxy_ruleset(state) else {
        return Err(world.with_finding(
            Hop::new(Point::NetfilterNat, Some(node), None, "nat KUBE-SERVICES").drop(
                DropReason::NoServiceRule,
                "kube-proxy has not programmed this node",
            ),
            &["kube-proxy-not-programmed"],
            Some(node),
            None,
        ));
    };
    let dst = pkt.dst.to_string();
    let matches = |r: &RuleSpec| {
        r.dst_host() == Some(dst.as_str())
            && r.dport == Some(port)
            && r.proto.as_deref() == Some(proto)
    };
    let Some(svc_chain) = world
        .service_chain(node, &dst, port, proto)
        .map(str::to_string)
    else {
        if rs
            .specs("filter", "KUBE-SERVICES")
            .iter()
            .any(|r| matches(r) && r.jumps_to("REJECT"))
        {
            return Err(world.with_finding(
                Hop::new(
                    Point::NetfilterNat,
                    Some(node),
                    None,
                    format!("filter KUBE-SERVICES -d {dst}/32 --dport {port} -j REJECT"),
                )
                .drop(
                    DropReason::RejectedByKubeProxy,
                    format!("{svc_name} has no endpoints: kube-proxy rejects"),
                ),
                &["kube-dns-no-endpoints", "service-no-endpoints"],
                None,
                None,
            ));
        }
        return Err(world.with_finding(
            Hop::new(Point::NetfilterNat, Some(node), None, "nat KUBE-SERVICES").drop(DropReason::NoServiceRule, format!("no rule for {dst}:{port}/{proto}: the ClusterIP is not translated and has no route")),
            &["kube-proxy-svc-chain-missing"],
            Some(node),
            None,
        ));
    };
    let mut remaining = 1.0f64;
    let mut targets = Vec::new();
    for r in rs.specs("nat", &svc_chain).iter().filter(|r| {
        r.target
            .as_deref()
            .is_some_and(|t| t.starts_with("KUBE-SEP-"))
    }) {
        let sep = r.target.clone().unwrap_or_default();
        let p = r.probability.unwrap_or(1.0);
        let effective = remaining * p;
        remaining *= 1.0 - p;
        let dnat = rs
            .specs("nat", &sep)
            .iter()
            .find_map(|x| x.to_destination.clone());
        if let Some(t) = dnat.as_deref().and_then(parse_ipport) {
            targets.push((
                t,
                format!("{sep} DNAT {} (p={effective:.3})", dnat.unwrap_or_default()),
            ));
        }
    }
    if targets.is_empty() {
        return Err(Hop::new(
            Point::NetfilterNat,
            Some(node),
            None,
            format!("nat {svc_chain}"),
        )
        .drop(
            DropReason::NoEndpoints,
            "the service chain jumps to no endpoint",
        ));
    }
    let n = targets.len();
    Ok((
        Hop::new(
            Point::NetfilterNat,
            Some(node),
            None,
            format!("nat KUBE-SERVICES -d {dst}/32 --dport {port} -j {svc_chain}"),
        )
        .evidence(format!("{n} endpoint chain(s)")),
        targets,
    ))
}

fn parse_ipport(s: &str) -> Option<(IpAddr, u16)> {
    let (ip, port) = s.rsplit_once(':')?;
    Some((ip.parse().ok()?, port.parse().ok()?))
}

fn forward_verdict(world: &World, node: &str, state: &NodeState) -> Option<Hop> {
    let rs = state.iptables.iter().map(|b| &b.ruleset).find(|rs| {
        rs.table("filter")
            .and_then(|t| t.chain("FORWARD"))
            .is_some()
    })?;
    let filter = rs.table("filter")?;
    let policy = filter
        .chain("FORWARD")
        .and_then(|c| c.policy.clone())
        .unwrap_or_else(|| "ACCEPT".into());
    if policy != "DROP" {
        return None;
    }
    let cidr = ClusterNetwork::from_cluster(world.cluster)
        .map(|n| n.cluster_cidr.to_string())
        .unwrap_or_default();
    let jumped = filter.chain("FORWARD").is_some_and(|c| {
        c.rules
            .iter()
            .filter_map(|r| RuleSpec::parse(r).ok())
            .any(|r| r.jumps_to("FLANNEL-FWD"))
    });
    let accepts = filter.chain("FLANNEL-FWD").is_some_and(|c| {
        c.rules
            .iter()
            .filter_map(|r| RuleSpec::parse(r).ok())
            .any(|r| {
                r.jumps_to("ACCEPT")
                    && (r.src.as_ref().is_some_and(|s| s.value == cidr)
                        || r.dst.as_ref().is_some_and(|d| d.value == cidr))
            })
    });
    if jumped && accepts {
        return Some(
            Hop::new(
                Point::NetfilterFilter,
                Some(node),
                None,
                format!("filter FLANNEL-FWD -s/-d {cidr} -j ACCEPT"),
            )
            .evidence("accepted (FORWARD policy DROP)"),
        );
    }
    Some(
        world.with_finding(
            Hop::new(
                Point::NetfilterFilter,
                Some(node),
                None,
                "filter FORWARD policy DROP",
            )
            .drop(
                DropReason::ForwardDropped,
                "no accept rule for pod traffic (FLANNEL-FWD missing)",
            ),
            &["forward-drop"],
            Some(node),
            None,
        ),
    )
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
        if let Some(h) = forward_verdict(world, node, a) {
            let dropped = h.verdict == Verdict::Drop;
            hops.push(h);
            if dropped {
                return;
            }
        }
        to_pod(world, node, a, pkt, hops);
        return;
    }
    if let Some(lease) = world.lease(node)
        && world.cluster.pod_by_ip(&pkt.src.to_string()).is_some()
        && lease.pod_cidr.contains(&match pkt.src {
            IpAddr::V4(v) => v,
            _ => std::net::Ipv4Addr::UNSPECIFIED,
        })
    {
        let gw = lease.bridge_address();
        if !a
            .addrs_of(BRIDGE_DEVICE)
            .any(|x| x.address == IpAddr::V4(gw.addr()))
        {
            hops.push(
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
                    &["cni0-addr-wrong"],
                    Some(node),
                    None,
                ),
            );
            return;
        }
    }
    if a.sysctls.ip_forward == Some(false) {
        hops.push(world.with_finding(
            Hop::new(Point::Routing, Some(node), None, "net.ipv4.ip_forward").drop(
                DropReason::IpForwardOff,
                "ip_forward is 0: the node does not route",
            ),
            &["ip-forward-off"],
            Some(node),
            None,
        ));
        return;
    }
    let Some(route) = world.route(node, a, pkt.dst) else {
        let vtep_down = a.link(VTEP_DEVICE).is_some_and(|l| !l.up);
        hops.push(world.with_finding(
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
            &["vtep-down", "route-missing"],
            Some(node),
            None,
        ));
        return;
    };
    let rdesc = format!(
        "{} {}{}dev {}{}",
        if route.table == 255 { "local" } else { "route" },
        route.dst,
        route
            .gateway
            .map(|g| format!(" via {g} "))
            .unwrap_or_else(|| " ".into()),
        route.dev.clone().unwrap_or_default(),
        if route.onlink() { " onlink" } else { "" }
    );
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
    if let Some(h) = forward_verdict(world, node, a) {
        let dropped = h.verdict == Verdict::Drop;
        hops.push(h);
        if dropped {
            return;
        }
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

/// Out of the cluster (towards an underlay address): needs the masquerade.
fn outward(world: &World, node: &str, a: &NodeState, dev: &str, pkt: &Packet, hops: &mut Vec<Hop>) {
    let cidr = ClusterNetwork::from_cluster(world.cluster).map(|n| n.cluster_cidr);
    let from_pod = cidr.is_some_and(|c| matches!(pkt.src, IpAddr::V4(v) if c.contains(&v)));
    let leaves_cluster = cidr.is_some_and(|c| !matches!(pkt.dst, IpAddr::V4(v) if c.contains(&v)));
    if from_pod && leaves_cluster {
        let masq = a.iptables.iter().any(|b| {
            b.ruleset.table("nat").is_some_and(|t| {
                t.chain("POSTROUTING").is_some_and(|c| {
                    c.rules
                        .iter()
                        .filter_map(|r| RuleSpec::parse(r).ok())
                        .any(|r| r.jumps_to("FLANNEL-POSTRTG"))
                }) && t.chain("FLANNEL-POSTRTG").is_some_and(|c| {
                    c.rules
                        .iter()
                        .filter_map(|r| RuleSpec::parse(r).ok())
                        .any(|r| r.jumps_to("MASQUERADE"))
                })
            })
        });
        if !masq {
            hops.push(
                world.with_finding(
                    Hop::new(
                        Point::NetfilterNat,
                        Some(node),
                        Some(dev),
                        "nat POSTROUTING",
                    )
                    .drop(
                        DropReason::NoMasquerade,
                        format!(
                            "{} leaves with its pod address; replies cannot find their way back",
                            pkt.src
                        ),
                    ),
                    &["flannel-masq-missing"],
                    Some(node),
                    None,
                ),
            );
            return;
        }
        hops.push(
            Hop::new(
                Point::NetfilterNat,
                Some(node),
                Some(dev),
                "nat FLANNEL-POSTRTG -j MASQUERADE",
            )
            .evidence(format!("source becomes {node}'s address on {dev}")),
        );
    }
    hops.push(
        Hop::new(
            Point::Underlay,
            Some(node),
            Some(dev),
            format!("out of {dev}"),
        )
        .evidence(format!("to {}", pkt.dst)),
    );
}

/// cni0 to the destination pod's veth on `node`.
fn to_pod(world: &World, node: &str, state: &NodeState, pkt: &Packet, hops: &mut Vec<Hop>) {
    let att = state
        .attachments
        .iter()
        .find(|a| a.addrs.contains(&pkt.dst));
    let Some(att) = att else {
        if world.cluster.pod_by_ip(&pkt.dst.to_string()).is_some() {
            hops.push(
                Hop::new(
                    Point::ToPod,
                    Some(node),
                    Some(BRIDGE_DEVICE),
                    "pod namespace",
                )
                .warn("the destination pod's interface was not read; assuming it is up"),
            );
        } else {
            // A stale endpoint: the finding sits on the node whose chain DNATs here.
            let dead = pkt.dst.to_string();
            let finding = world
                .findings
                .iter()
                .find(|f| {
                    (f.id == "kube-proxy-endpoints-mismatch"
                        || f.id == "ipvs-real-servers-mismatch")
                        && f.actual.as_deref().is_some_and(|a| a.contains(&dead))
                })
                .cloned()
                .map(Box::new);
            let mut hop = Hop::new(
                Point::ToPod,
                Some(node),
                Some(BRIDGE_DEVICE),
                format!("{BRIDGE_DEVICE} neighbours"),
            )
            .drop(
                DropReason::NoSuchPod,
                format!("no pod has {} on {node} (a stale endpoint?)", pkt.dst),
            );
            hop.finding = finding;
            hops.push(hop);
        }
        return;
    };
    let host = att
        .peer_ifindex
        .and_then(|i| state.links.iter().find(|l| l.ifindex == i));
    match host {
        Some(h) if h.up && att.up && h.master.as_deref() == Some(BRIDGE_DEVICE) => {
            let pod = world
                .cluster
                .pod_by_ip(&pkt.dst.to_string())
                .map(|p| {
                    format!(
                        "{}/{}",
                        p.metadata.namespace.clone().unwrap_or_default(),
                        p.metadata.name.clone().unwrap_or_default()
                    )
                })
                .unwrap_or_default();
            hops.push(
                Hop::new(
                    Point::ToPod,
                    Some(node),
                    Some(&h.name),
                    format!("{BRIDGE_DEVICE} -> {} -> pod eth0", h.name),
                )
                .evidence(format!("delivered to {pod} ({}) mtu {}", pkt.dst, att.mtu)),
            );
        }
        Some(h) => hops.push(
            world.with_finding(
                Hop::new(
                    Point::ToPod,
                    Some(node),
                    Some(&h.name),
                    format!("{BRIDGE_DEVICE} -> {}", h.name),
                )
                .drop(
                    DropReason::VethDown,
                    format!(
                        "{} is {}",
                        h.name,
                        if h.up { "not on cni0" } else { "DOWN" }
                    ),
                ),
                &["pod-veth-down", "pod-veth-not-on-bridge"],
                Some(node),
                None,
            ),
        ),
        None => hops.push(
            world.with_finding(
                Hop::new(Point::ToPod, Some(node), None, "veth")
                    .drop(DropReason::VethDown, "the pod's veth has no peer here"),
                &["pod-veth-missing"],
                Some(node),
                None,
            ),
        ),
    }
}

/// flannel.1: neigh (gateway -> VtepMAC), FDB (VtepMAC -> node), the
/// underlay, and decapsulation on the remote node, then on to the pod.
fn overlay(
    world: &World,
    node: &str,
    a: &NodeState,
    gw: Option<IpAddr>,
    pkt: &Packet,
    hops: &mut Vec<Hop>,
) {
    let vtep = a.link(VTEP_DEVICE);
    let Some(vtep) = vtep.filter(|l| l.up) else {
        hops.push(
            world.with_finding(
                Hop::new(Point::ToOverlay, Some(node), Some(VTEP_DEVICE), VTEP_DEVICE)
                    .drop(DropReason::VtepDown, "flannel.1 is down or missing"),
                &["vtep-down", "vtep-missing"],
                Some(node),
                None,
            ),
        );
        return;
    };
    if pkt.size > vtep.mtu {
        hops.push(world.with_finding(
            Hop::new(Point::ToOverlay, Some(node), Some(VTEP_DEVICE), format!("{VTEP_DEVICE} mtu {}", vtep.mtu)).drop(DropReason::Mtu, format!("the sender assumes mtu {} but {VTEP_DEVICE} carries mtu {}: full-size packets are dropped (DF)", pkt.size, vtep.mtu)),
            &["vtep-mtu-wrong", "mtu-mismatch"],
            Some(node),
            None,
        ));
        return;
    }
    let dst_node = world.node_of_pod_ip(pkt.dst);
    let Some(gw) = gw else {
        hops.push(
            Hop::new(Point::ToOverlay, Some(node), Some(VTEP_DEVICE), "route").drop(
                DropReason::NoNeigh,
                "the route via flannel.1 has no gateway",
            ),
        );
        return;
    };
    let Some(neigh) = a
        .neighs
        .iter()
        .find(|n| n.dev == VTEP_DEVICE && n.dst == gw && n.lladdr.is_some())
    else {
        hops.push(world.with_finding(
            Hop::new(Point::ToOverlay, Some(node), Some(VTEP_DEVICE), format!("neigh {gw} dev {VTEP_DEVICE}")).drop(DropReason::NoNeigh, format!("no MAC for gateway {gw}: flannel.1 does no ARP (nolearning, no L3 miss handler)")),
            &["route-wrong", "neigh-missing"],
            Some(node),
            dst_node.as_deref(),
        ));
        return;
    };
    let mac = neigh.lladdr.clone().unwrap_or_default();
    let Some(fdb) = a
        .fdb
        .iter()
        .find(|f| f.dev == VTEP_DEVICE && f.mac == mac && f.dst.is_some())
    else {
        hops.push(
            world.with_finding(
                Hop::new(
                    Point::ToOverlay,
                    Some(node),
                    Some(VTEP_DEVICE),
                    format!("neigh {gw} lladdr {mac}; fdb {mac}"),
                )
                .drop(
                    DropReason::NoFdb,
                    format!("no FDB entry for {mac}: the frame cannot be encapsulated"),
                ),
                &["neigh-wrong-mac", "fdb-missing"],
                Some(node),
                dst_node.as_deref(),
            ),
        );
        return;
    };
    let remote_ip = fdb.dst.expect("filtered on dst");
    hops.push(
        Hop::new(
            Point::ToOverlay,
            Some(node),
            Some(VTEP_DEVICE),
            format!("neigh {gw} lladdr {mac} PERMANENT; fdb {mac} dst {remote_ip} self permanent"),
        )
        .evidence(format!(
            "VXLAN VNI {} mtu {}",
            vtep.vxlan.as_ref().map(|v| v.vni).unwrap_or(1),
            vtep.mtu
        )),
    );
    let Some(b_name) = node_by_ip(world.cluster, remote_ip) else {
        hops.push(
            world.with_finding(
                Hop::new(
                    Point::Underlay,
                    Some(node),
                    Some("eth0"),
                    format!("UDP {VXLAN_PORT} to {remote_ip}"),
                )
                .drop(
                    DropReason::VtepUnreachable,
                    format!("no node has {remote_ip}: the FDB entry is stale"),
                ),
                &["fdb-wrong-dst", "fdb-stale"],
                Some(node),
                dst_node.as_deref(),
            ),
        );
        return;
    };
    let underlay = world.route(node, a, remote_ip);
    hops.push(
        Hop::new(
            Point::Underlay,
            Some(node),
            underlay.and_then(|r| r.dev.as_deref()),
            format!(
                "UDP {VXLAN_PORT} {} -> {remote_ip} ({b_name})",
                vtep.vxlan
                    .as_ref()
                    .and_then(|v| v.local)
                    .map(|l| l.to_string())
                    .unwrap_or_default()
            ),
        )
        .evidence(format!(
            "outer {} via {}",
            remote_ip,
            underlay
                .map(|r| r.dst.clone())
                .unwrap_or_else(|| "?".into())
        )),
    );
    let Some(b) = world.state(&b_name) else {
        hops.push(
            Hop::new(Point::FromOverlay, Some(&b_name), None, "node state")
                .warn("no state read for the remote node"),
        );
        return;
    };
    match b.link(VTEP_DEVICE) {
        Some(l) if l.up && l.mac.as_deref() == Some(mac.as_str()) => hops.push(
            Hop::new(
                Point::FromOverlay,
                Some(&b_name),
                Some(VTEP_DEVICE),
                format!("{VTEP_DEVICE} {mac}"),
            )
            .evidence("decapsulated"),
        ),
        Some(l) if !l.up => {
            hops.push(
                world.with_finding(
                    Hop::new(
                        Point::FromOverlay,
                        Some(&b_name),
                        Some(VTEP_DEVICE),
                        VTEP_DEVICE,
                    )
                    .drop(DropReason::VtepDown, "the remote flannel.1 is down"),
                    &["vtep-down"],
                    Some(&b_name),
                    None,
                ),
            );
            return;
        }
        _ => {
            hops.push(
                world.with_finding(
                    Hop::new(
                        Point::FromOverlay,
                        Some(&b_name),
                        Some(VTEP_DEVICE),
                        VTEP_DEVICE,
                    )
                    .drop(
                        DropReason::VtepUnreachable,
                        format!("the frame is for {mac}, which is not {b_name}'s VTEP"),
                    ),
                    &["vtep-mac-drift", "neigh-wrong-mac"],
                    None,
                    None,
                ),
            );
            return;
        }
    }
    // On the remote node the packet is routed again.
    if b.sysctls.ip_forward == Some(false) {
        hops.push(world.with_finding(
            Hop::new(Point::Routing, Some(&b_name), None, "net.ipv4.ip_forward").drop(
                DropReason::IpForwardOff,
                "ip_forward is 0: the node does not route",
            ),
            &["ip-forward-off"],
            Some(&b_name),
            None,
        ));
        return;
    }
    match world.route(&b_name, b, pkt.dst) {
        Some(r) if r.dev.as_deref() == Some(BRIDGE_DEVICE) => hops.push(Hop::new(
            Point::Routing,
            Some(&b_name),
            Some(BRIDGE_DEVICE),
            format!("route {} dev {BRIDGE_DEVICE}", r.dst),
        )),
        Some(r) if r.kind == "local" => {
            hops.push(
                Hop::new(
                    Point::ToHost,
                    Some(&b_name),
                    r.dev.as_deref(),
                    "local delivery",
                )
                .evidence(format!("{} is {b_name}'s", pkt.dst)),
            );
            return;
        }
        other => {
            hops.push(
                Hop::new(Point::Routing, Some(&b_name), None, "main table").drop(
                    DropReason::NoRoute,
                    format!(
                        "{b_name} routes {} {}",
                        pkt.dst,
                        other
                            .map(|r| format!("to {}", r.dev.clone().unwrap_or_default()))
                            .unwrap_or_else(|| "nowhere".into())
                    ),
                ),
            );
            return;
        }
    }
    if let Some(h) = forward_verdict(world, &b_name, b) {
        let dropped = h.verdict == Verdict::Drop;
        hops.push(h);
        if dropped {
            return;
        }
    }
    to_pod(world, &b_name, b, pkt, hops);
}

/// The reply: from the destination's node back to the source, checking the
/// entries that carry it (the source is the masquerade address for traffic
/// that was SNATed).
fn return_path(world: &World, pkt: &Packet, hops: &mut Vec<Hop>) {
    let Some(dst_node) = world.node_of_pod_ip(pkt.dst) else {
        return;
    };
    let src_node = world
        .node_of_pod_ip(pkt.src)
        .or_else(|| node_by_ip(world.cluster, pkt.src));
    let Some(src_node) = src_node else { return };
    if src_node == dst_node {
        hops.push(
            Hop::new(
                Point::ReturnPath,
                Some(&dst_node),
                Some(BRIDGE_DEVICE),
                "same node",
            )
            .evidence("replies stay on the node; conntrack undoes any DNAT"),
        );
        return;
    }
    let reply = Packet {
        src: pkt.dst,
        dst: pkt.src,
        port: None,
        proto: pkt.proto.clone(),
        size: 0,
    };
    let mut back = Vec::new();
    // The reply leaves the pod through its default gateway on cni0.
    if let (Some(lease), Some(b)) = (world.lease(&dst_node), world.state(&dst_node)) {
        let gw = lease.bridge_address();
        if !b
            .addrs_of(BRIDGE_DEVICE)
            .any(|x| x.address == IpAddr::V4(gw.addr()))
        {
            back.push(
                world.with_finding(
                    Hop::new(
                        Point::ReturnPath,
                        Some(&dst_node),
                        Some(BRIDGE_DEVICE),
                        format!("pod default route via {}", gw.addr()),
                    )
                    .drop(
                        DropReason::NoGateway,
                        format!("the reply has no gateway: {BRIDGE_DEVICE} lacks {gw}"),
                    ),
                    &["cni0-addr-wrong"],
                    Some(&dst_node),
                    None,
                ),
            );
        }
    }
    if let Some(b) = world.state(&dst_node) {
        match world.route(&dst_node, b, reply.dst) {
            Some(r) if r.dev.as_deref() == Some(VTEP_DEVICE) => {
                overlay_reply(world, &dst_node, b, r.gateway, &reply, &mut back)
            }
            Some(_) => {}
            None => back.push(world.with_finding(
                Hop::new(Point::ReturnPath, Some(&dst_node), None, "main table").drop(
                    DropReason::NoRoute,
                    format!("{dst_node} has no route back to {}", reply.dst),
                ),
                &["vtep-down", "route-missing"],
                Some(&dst_node),
                None,
            )),
        }
    }
    match back.iter().find(|h| h.verdict == Verdict::Drop) {
        Some(drop) => hops.push(Hop {
            point: Point::ReturnPath,
            ..drop.clone()
        }),
        None => hops.push(
            Hop::new(
                Point::ReturnPath,
                Some(&dst_node),
                Some(VTEP_DEVICE),
                format!("{dst_node} -> {src_node} over the overlay"),
            )
            .evidence("route, neigh and FDB back are in place; conntrack undoes the NAT"),
        ),
    }
}

fn overlay_reply(
    world: &World,
    node: &str,
    b: &NodeState,
    gw: Option<IpAddr>,
    reply: &Packet,
    out: &mut Vec<Hop>,
) {
    let towards = world.node_of_pod_ip(reply.dst);
    if b.link(VTEP_DEVICE).is_none_or(|l| !l.up) {
        out.push(
            world.with_finding(
                Hop::new(
                    Point::ReturnPath,
                    Some(node),
                    Some(VTEP_DEVICE),
                    VTEP_DEVICE,
                )
                .drop(DropReason::VtepDown, "flannel.1 is down"),
                &["vtep-down"],
                Some(node),
                None,
            ),
        );
        return;
    }
    let Some(gw) = gw else { return };
    let Some(neigh) = b
        .neighs
        .iter()
        .find(|n| n.dev == VTEP_DEVICE && n.dst == gw && n.lladdr.is_some())
    else {
        out.push(
            world.with_finding(
                Hop::new(
                    Point::ReturnPath,
                    Some(node),
                    Some(VTEP_DEVICE),
                    format!("neigh {gw}"),
                )
                .drop(
                    DropReason::NoNeigh,
                    format!("no MAC for {gw} on the way back"),
                ),
                &["route-wrong", "neigh-missing"],
                Some(node),
                towards.as_deref(),
            ),
        );
        return;
    };
    let mac = neigh.lladdr.clone().unwrap_or_default();
    match b
        .fdb
        .iter()
        .find(|f| f.dev == VTEP_DEVICE && f.mac == mac && f.dst.is_some())
    {
        None => out.push(
            world.with_finding(
                Hop::new(
                    Point::ReturnPath,
                    Some(node),
                    Some(VTEP_DEVICE),
                    format!("fdb {mac}"),
                )
                .drop(
                    DropReason::NoFdb,
                    format!("no FDB entry for {mac} on the way back"),
                ),
                &["neigh-wrong-mac", "fdb-missing"],
                Some(node),
                towards.as_deref(),
            ),
        ),
        Some(f) if node_by_ip(world.cluster, f.dst.expect("filtered")).is_none() => out.push(
            world.with_finding(
                Hop::new(
                    Point::ReturnPath,
                    Some(node),
                    Some(VTEP_DEVICE),
                    format!("fdb {mac} dst {}", f.dst.expect("filtered")),
                )
                .drop(
                    DropReason::VtepUnreachable,
                    "the FDB entry back points at no node",
                ),
                &["fdb-wrong-dst"],
                Some(node),
                towards.as_deref(),
            ),
        ),
        Some(_) => {}
    }
}

/// From outside the cluster: to a NodePort, or to an Ingress URL.
fn from_outside(
    world: &World,
    t: &mut Trace,
    src_ip: IpAddr,
    dst: &End,
    proto: &str,
    port: Option<u16>,
) {
    match dst {
        End::NodePort { node, ip, port: np } => {
            t.hops.push(Hop::new(Point::FromUnderlay, Some(node), Some("eth0"), format!("{src_ip} -> {ip}:{np}/{proto}")));
            let pkt = Packet { src: src_ip, dst: *ip, port: Some(*np), proto: proto.to_string(), size: 1450 };
            match nodeport_targets(world, node, &pkt) {
                Ok((hop, targets)) => {
                    t.hops.push(hop);
                    // KUBE-MARK-MASQ: the reply comes back through this node.
                    let masq = world.lease(node).map(|l| IpAddr::V4(l.gateway())).unwrap_or(*ip);
                    for ((tip, tport), label) in targets {
                        let p = Packet { src: masq, dst: tip, port: Some(tport), proto: proto.to_string(), size: 1450 };
                        t.branches.push(branch(world, node, &p, label, true));
                    }
                }
                Err(hop) => t.hops.push(hop),
            }
        }
        End::Url { host, path } => from_outside_url(world, t, src_ip, host, path),
        other => t.hops.push(Hop::new(Point::FromUnderlay, None, None, "outside").drop(
            DropReason::NoRoute,
            format!("from outside, reach {} through a NodePort (node:port) or the ingress (http://host/path)", other.label()),
        )),
    }
    let _ = port;
}

fn nodeport_targets(world: &World, node: &str, pkt: &Packet) -> Result<(Hop, Targets), Hop> {
    let Some(state) = world.state(node) else {
        return Err(
            Hop::new(Point::NetfilterNat, Some(node), None, "kube-proxy")
                .drop(DropReason::NoNodePortRule, "no state read for this node"),
        );
    };
    let Some(rs) = kube_proxy_ruleset(state) else {
        return Err(world.with_finding(
            Hop::new(Point::NetfilterNat, Some(node), None, "nat KUBE-NODEPORTS").drop(
                DropReason::NoNodePortRule,
                "kube-proxy has not programmed this node",
            ),
            &["kube-proxy-not-programmed"],
            Some(node),
            None,
        ));
    };
    let port = pkt.port.unwrap_or(0);
    let rule = rs
        .table("nat")
        .and_then(|t| t.chain("KUBE-NODEPORTS"))
        .and_then(|c| {
            c.rules
                .iter()
                .filter_map(|r| RuleSpec::parse(r).ok())
                .find(|r| r.dport == Some(port) && r.proto.as_deref() == Some(pkt.proto.as_str()))
        });
    let Some(rule) = rule else {
        return Err(world.with_finding(
            Hop::new(Point::NetfilterNat, Some(node), None, "nat KUBE-NODEPORTS").drop(
                DropReason::NoNodePortRule,
                format!("no rule for {}/{port}", pkt.proto),
            ),
            &["kube-proxy-nodeport-missing"],
            Some(node),
            None,
        ));
    };
    // KUBE-EXT-x -> KUBE-SVC-x: find the Service by its ClusterIP rule jumping to the same SVC chain.
    let ext = rule.target.clone().unwrap_or_default();
    let svc_chain = rs
        .table("nat")
        .and_then(|t| t.chain(&ext))
        .and_then(|c| {
            c.rules
                .iter()
                .filter_map(|r| RuleSpec::parse(r).ok())
                .find_map(|r| r.target.filter(|t| t.starts_with("KUBE-SVC-")))
        })
        .unwrap_or(ext.clone());
    let vip = rs
        .table("nat")
        .and_then(|t| t.chain("KUBE-SERVICES"))
        .and_then(|c| {
            c.rules
                .iter()
                .filter_map(|r| RuleSpec::parse(r).ok())
                .find(|r| r.jumps_to(&svc_chain))
        })
        .and_then(|r| Some((r.dst_host()?.parse::<IpAddr>().ok()?, r.dport?)));
    let Some((vip, vport)) = vip else {
        return Err(
            Hop::new(Point::NetfilterNat, Some(node), None, format!("nat {ext}")).drop(
                DropReason::NoServiceRule,
                "the NodePort's service chain has no ClusterIP rule",
            ),
        );
    };
    let inner = Packet {
        dst: vip,
        port: Some(vport),
        ..pkt.clone()
    };
    let (hop, targets) = service_targets(world, node, &inner, &svc_chain)?;
    Ok((
        Hop {
            decided_by: format!("nat KUBE-NODEPORTS --dport {port} -j {ext} -> {svc_chain}"),
            ..hop
        },
        targets,
    ))
}

fn from_outside_url(world: &World, t: &mut Trace, src_ip: IpAddr, host: &str, path: &str) {
    // The controller: the pod with hostPort 80 (as ingress-nginx runs on bare metal).
    let controller = world.cluster.pods.iter().find(|p| {
        p.spec
            .iter()
            .flat_map(|s| &s.containers)
            .flat_map(|c| c.ports.iter().flatten())
            .any(|cp| cp.host_port == Some(80))
    });
    let Some(ctrl) = controller else {
        t.hops.push(
            Hop::new(Point::Ingress, None, None, "ingress controller").drop(
                DropReason::IngressNoBackend,
                "no pod listens on hostPort 80",
            ),
        );
        return;
    };
    let node = ctrl
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default();
    let ctrl_ip: IpAddr = ctrl
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .and_then(|i| i.parse().ok())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let node_ip = world
        .lease(&node)
        .map(|l| IpAddr::V4(l.public_ip))
        .unwrap_or(ctrl_ip);
    t.hops.push(Hop::new(
        Point::FromUnderlay,
        Some(&node),
        Some("eth0"),
        format!("{src_ip} -> {node_ip}:80 Host: {host}"),
    ));
    t.hops.push(
        Hop::new(
            Point::NetfilterNat,
            Some(&node),
            None,
            "nat CNI-HOSTPORT-DNAT --dport 80",
        )
        .evidence(format!("DNAT to the controller {ctrl_ip}:80")),
    );
    let mut to_ctrl = Vec::new();
    deliver(
        world,
        &node,
        &Packet {
            src: src_ip,
            dst: ctrl_ip,
            port: Some(80),
            proto: "tcp".into(),
            size: 1450,
        },
        true,
        &mut to_ctrl,
    );
    let failed = to_ctrl.iter().any(|h| h.verdict == Verdict::Drop);
    t.hops.extend(to_ctrl);
    if failed {
        return;
    }
    // The rule for host + longest matching path, then the backend Service port.
    let mut best: Option<(
        usize,
        String,
        k8s_openapi::api::networking::v1::IngressServiceBackend,
        String,
    )> = None;
    for ing in &world.cluster.ingresses {
        let ns = ing.metadata.namespace.clone().unwrap_or_default();
        for rule in ing
            .spec
            .iter()
            .flat_map(|s| s.rules.iter().flatten())
            .filter(|r| r.host.as_deref().is_none_or(|h| h == host))
        {
            for p in rule.http.iter().flat_map(|h| &h.paths) {
                let prefix = p.path.clone().unwrap_or_else(|| "/".into());
                if path.starts_with(&prefix)
                    && best.as_ref().is_none_or(|b| prefix.len() > b.0)
                    && let Some(b) = &p.backend.service
                {
                    best = Some((prefix.len(), ns.clone(), b.clone(), prefix.clone()));
                }
            }
        }
    }
    let Some((_, ns, backend, prefix)) = best else {
        t.hops.push(
            Hop::new(Point::Ingress, Some(&node), None, format!("host {host}")).drop(
                DropReason::NoSuchHost,
                format!("no Ingress rule for {host}{path}: the default backend answers 404"),
            ),
        );
        return;
    };
    let want = backend.port.clone().unwrap_or_default();
    let sp = world
        .cluster
        .service(&ns, &backend.name)
        .and_then(|s| s.spec.clone())
        .and_then(|spec| {
            spec.ports.unwrap_or_default().into_iter().find(|p| {
                want.number == Some(p.port) || (want.name.is_some() && want.name == p.name)
            })
        });
    let Some(sp) = sp else {
        t.hops.push(
            world.with_finding(
                Hop::new(
                    Point::Ingress,
                    Some(&node),
                    None,
                    format!(
                        "{host}{prefix} -> {}:{}",
                        backend.name,
                        want.number
                            .map(|n| n.to_string())
                            .or(want.name.clone())
                            .unwrap_or_default()
                    ),
                )
                .drop(
                    DropReason::IngressNoBackend,
                    "the Service has no such port: the controller answers 503",
                ),
                &[
                    "ingress-backend-port-missing",
                    "ingress-backend-service-missing",
                ],
                None,
                None,
            ),
        );
        return;
    };
    let endpoints = world.cluster.ready_endpoints(
        &ns,
        &backend.name,
        sp.name.as_deref().unwrap_or(""),
        sp.protocol.as_deref().unwrap_or("TCP"),
    );
    if endpoints.is_empty() {
        t.hops.push(
            Hop::new(
                Point::Ingress,
                Some(&node),
                None,
                format!("{host}{prefix} -> {ns}/{}", backend.name),
            )
            .drop(
                DropReason::NoEndpoints,
                "no ready endpoints: the controller answers 503",
            ),
        );
        return;
    }
    t.hops.push(
        Hop::new(
            Point::Ingress,
            Some(&node),
            None,
            format!(
                "Ingress {host}{prefix} -> {ns}/{}:{}",
                backend.name, sp.port
            ),
        )
        .evidence(format!(
            "{} ready endpoint(s), proxied directly from the controller",
            endpoints.len()
        )),
    );
    for ep in endpoints {
        if let Some((ip, port)) = parse_ipport(&ep) {
            let pkt = Packet {
                src: ctrl_ip,
                dst: ip,
                port: Some(port),
                proto: "tcp".into(),
                size: pod_mtu(world, &node, ctrl_ip),
            };
            let same = world.node_of_pod_ip(ip).as_deref() == Some(node.as_str());
            t.branches
                .push(branch(world, &node, &pkt, format!("upstream {ep}"), !same));
        }
    }
}
