//! flannel's share of a node: flannel.1, cni0, and per peer the neigh, FDB
//! and route entries `expect::flannel` says the node must hold; the
//! sysctls forwarding depends on; the pods' veths and MTUs.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use ipnet::Ipv4Net;

use super::finding::{Finding, FindingId, Mark, ObjectRef, RepairAction, Severity, Subject};
use crate::dataplane::state::{Addr, FdbEntry, Link, Neigh, Route};
use crate::dataplane::{Mac, NodeState, RouteDst};
use crate::model::Cluster;
use crate::model::expect::{self, FlannelExpectation};
use crate::model::flannel::{BRIDGE_DEVICE, VNI, VTEP_DEVICE, VXLAN_PORT, vtep_mtu};
use crate::model::index::HashMap as FastMap;

/// Addresses as evidence: space-separated, or `none`.
fn listed(addrs: &[Ipv4Net]) -> String {
    if addrs.is_empty() {
        return "none".into();
    }
    addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The underlay MTU: the device flannel.1 rides on, else eth0, else 1500.
fn underlay_mtu(state: &NodeState) -> u32 {
    let dev = state
        .link(VTEP_DEVICE)
        .and_then(|l| l.vxlan.as_ref())
        .and_then(|v| v.dev.clone());
    dev.as_deref()
        .or(Some("eth0"))
        .and_then(|d| state.link(d))
        .map(|l| l.mtu)
        .unwrap_or(1500)
}

/// flannel's findings on a node in the parts the live path keeps apart,
/// in the order the check lists them ([`NodeParts::into_findings`]): a lab node beside 5,000 unreached peers
/// has 15,000 findings about its peers' entries, and a deleted route
/// changes one peer's. Kept per peer, a change of a few entries is
/// judged again for those peers alone ([`PeersJudged::ChangedSince`]).
#[derive(Debug, Default)]
pub struct NodeParts {
    /// flannel.1 (missing, down, its settings) and cni0.
    pub devices: Vec<Finding>,
    /// Each peer's neigh, FDB entry and route.
    pub peers: Peers,
    /// After them: what the node's tables hold beyond the peers' entries
    /// (routes that take pod CIDRs away, FDB entries of no current node);
    /// in `check::check_node_overlay_parts`, also the sysctls, the policy
    /// rules and flannel's nftables.
    pub after_peers: Vec<Finding>,
}

impl NodeParts {
    /// Every finding, part after part: the devices', the peers' in the
    /// expectation's order, the rest.
    pub fn into_findings(self) -> impl Iterator<Item = Finding> {
        let peers = match self.peers {
            Peers::Judged(peers) => peers,
            Peers::NotJudged | Peers::Rechecked(_) => Vec::new(),
        };
        (self.devices.into_iter())
            .chain(peers.into_iter().flatten())
            .chain(self.after_peers)
    }
}

/// Whether the peers' entries are judged one by one.
#[derive(Debug, Default)]
pub enum Peers {
    /// They are not: the node has no lease, or flannel.1 is missing or
    /// down (one finding in `devices` then names every peer's entries).
    #[default]
    NotJudged,
    /// One list per peer of the node's expectation, in its order.
    Judged(Vec<Vec<Finding>>),
    /// Those whose entries changed ([`PeersJudged::ChangedSince`]).
    Rechecked(Rechecked),
}

/// Which peers [`check_node_parts`] judges.
#[derive(Debug, Clone, Copy)]
pub enum PeersJudged<'a> {
    All,
    /// Those whose neigh, FDB entries or route differ from the node's
    /// state before: the caller keeps the others' findings. Only those
    /// peers' verdicts can differ when no object changed (the caller
    /// knows: `check::incremental`).
    ChangedSince(&'a NodeState),
}

/// The peers [`PeersJudged::ChangedSince`] judged again.
#[derive(Debug)]
pub struct Rechecked {
    /// Each peer's index in the node's expectation, and its findings.
    pub judged: Vec<(usize, Vec<Finding>)>,
    /// The peers the node's expectation holds.
    pub peers: usize,
}

/// flannel's findings on `node` by part; the peers' as `judged` says.
pub fn check_node_parts(
    cluster: &Cluster,
    node: &str,
    state: &NodeState,
    judged: PeersJudged,
) -> NodeParts {
    let n = Some(node);
    let mut parts = NodeParts::default();
    let exp = match expect::flannel(cluster, node, underlay_mtu(state)) {
        Ok(e) => e,
        // The node's own lease is missing: a cluster-level finding says so.
        Err(_) => return parts,
    };
    let out = &mut parts.devices;
    let vtep = state.link(VTEP_DEVICE);
    match vtep {
        None => {
            out.push(
                Finding::new(
                    FindingId::VtepMissing,
                    Severity::Error,
                    n,
                    format!(
                        "{VTEP_DEVICE} does not exist: flanneld has not set up VXLAN on this node"
                    ),
                )
                .object(Subject::device(VTEP_DEVICE))
                .repair(RepairAction::Manual {
                    what:
                        "start (or restart) the kube-flannel pod on this node; it creates flannel.1"
                            .into(),
                }),
            );
            return parts;
        }
        Some(l) if !l.up => {
            out.push(
                Finding::new(
                    FindingId::VtepDown,
                    Severity::Error,
                    n,
                    format!(
                        "{VTEP_DEVICE} is down: no cross-node pod traffic from or to this node"
                    ),
                )
                .object(Subject::device(VTEP_DEVICE))
                .evidence(
                    "UP",
                    format!(
                        "{} (routes and neighbours via it were flushed with it)",
                        l.operstate
                    ),
                )
                .repair(RepairAction::LinkUp {
                    dev: VTEP_DEVICE.into(),
                }),
            );
            // Taking the device down flushed its routes and neighbours: restoring
            // them belongs to this finding's repair, not to one finding per peer.
            let mut f = out.pop().expect("just pushed");
            for p in &exp.peers {
                f.repair.extend(peer_actions(p, true, false, true));
                f = f
                    .part(peer_neigh(p), Mark::Missing)
                    .part(peer_route(p), Mark::Missing);
            }
            out.push(f);
            check_vtep_settings(l, &exp, state, n, out);
            return parts;
        }
        Some(l) => check_vtep_settings(l, &exp, state, n, out),
    }
    check_bridge(state, &exp, n, out);
    let tables = PeerTables::of(state);
    let judge = |p| {
        let mut out = Vec::new();
        check_peer(p, &tables, n, &mut out);
        out
    };
    parts.peers = match judged {
        PeersJudged::All => Peers::Judged(exp.peers.iter().map(judge).collect()),
        PeersJudged::ChangedSince(before) => {
            let old = PeerTables::of(before);
            let differ = |p: &crate::model::flannel::PeerEntries| {
                let gw = IpAddr::V4(p.neigh_ip);
                let dst = RouteDst::from(p.route_dst);
                old.neighs.get(&gw) != tables.neighs.get(&gw)
                    || old.fdbs.get(&p.vtep_mac) != tables.fdbs.get(&p.vtep_mac)
                    || old.routes.get(&dst) != tables.routes.get(&dst)
            };
            Peers::Rechecked(Rechecked {
                judged: (exp.peers.iter().enumerate())
                    .filter(|(_, p)| differ(p))
                    .map(|(i, p)| (i, judge(p)))
                    .collect(),
                peers: exp.peers.len(),
            })
        }
    };
    check_shadowing(state, &exp, n, &mut parts.after_peers);
    check_stale_fdb(cluster, state, n, &mut parts.after_peers);
    parts
}

/// What a peer's verdicts read of a node's state, indexed in one pass:
/// 5,000 peers would otherwise scan 5,000 entries each. Built twice per
/// kernel change (the state before and now), so hashed with foldhash.
struct PeerTables<'a> {
    /// The first neighbour on flannel.1 per address.
    neighs: FastMap<IpAddr, &'a Neigh>,
    /// The FDB entries on flannel.1 per MAC.
    fdbs: FastMap<Mac, Vec<&'a FdbEntry>>,
    /// The first route in the main table per destination.
    routes: FastMap<RouteDst, &'a Route>,
}

impl<'a> PeerTables<'a> {
    fn of(state: &'a NodeState) -> PeerTables<'a> {
        let mut neighs: FastMap<IpAddr, &Neigh> = FastMap::default();
        for x in state.neighs.iter().filter(|x| x.dev == VTEP_DEVICE) {
            neighs.entry(x.dst).or_insert(x);
        }
        let mut fdbs: FastMap<Mac, Vec<&FdbEntry>> = FastMap::default();
        for f in state.fdb.iter().filter(|f| f.dev == VTEP_DEVICE) {
            fdbs.entry(f.mac).or_default().push(f);
        }
        let mut routes: FastMap<RouteDst, &Route> = FastMap::default();
        for r in state.routes.iter().filter(|r| r.table == 254) {
            routes.entry(r.dst).or_insert(r);
        }
        PeerTables {
            neighs,
            fdbs,
            routes,
        }
    }
}

/// A route that takes (part of) a pod CIDR away from flannel, as the kernel
/// looks routes up: rules in priority order, the first table with a match
/// wins, the longest prefix within it. So in the main table a route more
/// specific than a pod CIDR wins; in a table an unconditional rule looks up
/// before main, any route overlapping a pod CIDR does (a default route
/// there takes them all); tables after main see only what main lacks.
/// Each route is looked up by its supernets, so 5,000 peers and 5,000 routes
/// stay 5,000 × 24 lookups.
fn check_shadowing(
    state: &NodeState,
    exp: &FlannelExpectation,
    n: Option<&str>,
    out: &mut Vec<Finding>,
) {
    let mut cidrs: HashMap<Ipv4Net, &str> = exp
        .peers
        .iter()
        .map(|p| (p.route_dst, p.peer.as_str()))
        .collect();
    cidrs.insert(exp.lease.pod_cidr, n.unwrap_or("this node"));
    let inet = state.rules.iter().filter(|r| r.family == "inet");
    let main_prio = inet
        .clone()
        .find(|r| r.table == 254)
        .map(|r| r.priority)
        .unwrap_or(32766);
    // Tables looked up before main for all pod traffic (no interface or
    // mark selector; a destination selector, if any, is kept per rule).
    let before: Vec<(u32, Option<Ipv4Net>)> = inet
        .filter(|r| {
            r.priority < main_prio
                && r.action == "to_tbl"
                && !matches!(r.table, 0 | 254 | 255)
                && r.iif.is_none()
                && r.oif.is_none()
                && r.fwmark.is_none()
                && r.src.is_none()
        })
        .map(|r| (r.table, r.dst.as_deref().and_then(|d| d.parse().ok())))
        .collect();
    for r in &state.routes {
        let Some(dst) = r.dst.v4() else {
            continue;
        };
        let taken: Vec<(Ipv4Net, &str)> = if r.table == 254 {
            // Strictly inside a pod CIDR.
            (0..dst.prefix_len())
                .rev()
                .filter_map(|len| Ipv4Net::new(dst.network(), len).ok())
                .find_map(|sup| cidrs.get(&sup.trunc()).map(|o| (sup.trunc(), *o)))
                .into_iter()
                .collect()
        } else if let Some((_, sel)) = before.iter().find(|(t, _)| *t == r.table) {
            // Anything overlapping a pod CIDR that the rule applies to.
            let mut v: Vec<(Ipv4Net, &str)> = cidrs
                .iter()
                .filter(|(c, _)| dst.contains(*c) || c.contains(&dst))
                .filter(|(c, _)| sel.is_none_or(|s| s.contains(*c) || c.contains(&s)))
                .map(|(c, o)| (*c, *o))
                .collect();
            v.sort();
            v
        } else {
            Vec::new()
        };
        let Some((cidr, owner)) = taken.first() else {
            continue;
        };
        let more = if taken.len() > 1 {
            format!(" and {} more pod CIDR(s)", taken.len() - 1)
        } else {
            String::new()
        };
        let place = if r.table == 254 {
            String::new()
        } else {
            format!(" in table {} (looked up before main)", r.table)
        };
        out.push(
            Finding::new(
                FindingId::RouteShadowsPodCidr,
                Severity::Error,
                n,
                format!("the route {}{place} takes {owner}'s pod CIDR {cidr}{more} away from flannel, as the kernel looks routes up", r.dst),
            )
            .object(Subject::Route { dst: r.dst, table: r.table })
            // The pod CIDR's own route no longer carries its traffic.
            .part(Subject::Route { dst: (*cidr).into(), table: 254 }, Mark::Wrong)
            .evidence(
                format!("{cidr} reaches {VTEP_DEVICE} or {BRIDGE_DEVICE}"),
                format!(
                    "{}{} dev {}{place}",
                    r.dst,
                    r.gateway.map(|g| format!(" via {g}")).unwrap_or_default(),
                    r.dev.clone().unwrap_or_default()
                ),
            )
            .repair(RepairAction::RouteDelete {
                dst: r.dst,
                table: r.table,
            }),
        );
    }
}

fn check_vtep_settings(
    l: &Link,
    exp: &FlannelExpectation,
    state: &NodeState,
    n: Option<&str>,
    out: &mut Vec<Finding>,
) {
    let want_mtu = exp.vtep_mtu;
    if l.mtu != want_mtu {
        out.push(
            Finding::new(
                FindingId::VtepMtuWrong,
                Severity::Error,
                n,
                format!(
                    "{VTEP_DEVICE} MTU is {} but the underlay allows {want_mtu}",
                    l.mtu
                ),
            )
            .object(Subject::device(VTEP_DEVICE))
            .evidence(
                format!("mtu {want_mtu} (underlay {} - 50)", want_mtu + 50),
                format!("mtu {}", l.mtu),
            )
            .repair(RepairAction::LinkMtu {
                dev: VTEP_DEVICE.into(),
                mtu: want_mtu,
            }),
        );
    }
    let want_addr = Ipv4Net::from(exp.lease.gateway());
    let addrs: Vec<Ipv4Net> = state.addrs_of(VTEP_DEVICE).filter_map(Addr::v4).collect();
    if !addrs.contains(&want_addr) {
        out.push(
            Finding::new(
                FindingId::VtepAddrWrong,
                Severity::Error,
                n,
                format!("{VTEP_DEVICE} lacks its address {want_addr}"),
            )
            .object(Subject::device(VTEP_DEVICE))
            .evidence(want_addr.to_string(), listed(&addrs))
            .repair(RepairAction::AddrReplace {
                dev: VTEP_DEVICE.into(),
                remove: addrs.clone(),
                add: want_addr,
            }),
        );
    }
    if let Some(v) = &l.vxlan {
        let want_local = IpAddr::V4(exp.lease.public_ip);
        let mut wrong = Vec::new();
        if v.vni != VNI {
            wrong.push(format!("vni {} (want {VNI})", v.vni));
        }
        if v.port != VXLAN_PORT {
            wrong.push(format!("dstport {} (want {VXLAN_PORT})", v.port));
        }
        if v.learning {
            wrong.push("learning on (want nolearning)".into());
        }
        if v.local.is_some() && v.local != Some(want_local) {
            wrong.push(format!(
                "local {} (want the node's public-ip {want_local})",
                v.local.map(|i| i.to_string()).unwrap_or_default()
            ));
        }
        // The underlay: the device that holds the public-ip.
        let underlay = state
            .addrs
            .iter()
            .find(|a| a.address == want_local)
            .map(|a| a.dev.clone());
        if let (Some(want), Some(have)) = (&underlay, &v.dev)
            && want != have
        {
            wrong.push(format!(
                "dev {have} (want {want}, which holds {want_local})"
            ));
        }
        if !wrong.is_empty() {
            // None of these changes in place: flanneld deletes the device
            // and makes it anew, then programs every peer again.
            let spec = crate::dataplane::state::VxlanSpec {
                dev: VTEP_DEVICE.into(),
                vni: VNI,
                local: Some(exp.lease.public_ip),
                underlay: underlay.or_else(|| v.dev.clone()),
                port: VXLAN_PORT,
                learning: false,
                mac: Some(exp.lease.vtep_mac),
                mtu: exp.vtep_mtu,
                addrs: vec![Ipv4Net::from(exp.lease.gateway())],
                up: true,
            };
            let mut f = Finding::new(
                FindingId::VtepConfigWrong,
                Severity::Error,
                n,
                format!("{VTEP_DEVICE} is not configured as flannel's VXLAN backend configures it"),
            )
            .object(Subject::device(VTEP_DEVICE))
            .evidence(
                format!("vxlan id {VNI} local {want_local} dstport {VXLAN_PORT} nolearning"),
                wrong.join(", "),
            )
            .repair(RepairAction::VtepRecreate { spec })
            // A new device comes with the offload flannel turns off.
            .repair(RepairAction::Ethtool {
                dev: VTEP_DEVICE.into(),
                feature: "tx-checksum-ip-generic".into(),
                on: false,
            });
            for p in &exp.peers {
                f.repair.extend(peer_actions(p, true, true, true));
            }
            out.push(f);
        }
    }
    if l.mac_addr() != Some(exp.lease.vtep_mac) {
        out.push(
            Finding::new(FindingId::VtepMacDrift, Severity::Error, n, format!("{VTEP_DEVICE}'s MAC is not the VtepMAC in this node's annotation: peers send to the old MAC"))
                .object(Subject::device(VTEP_DEVICE))
                .object(ObjectRef::new("Node", &exp.lease.node))
                .evidence(format!("mac {} (backend-data VtepMAC)", exp.lease.vtep_mac), format!("mac {}", l.mac.clone().unwrap_or_default()))
                .repair(RepairAction::Manual { what: "restart the kube-flannel pod on this node so it republishes its VtepMAC; peers then reprogram their neigh and FDB entries".into() }),
        );
    }
    if state.vxlan_tx_checksum.get(VTEP_DEVICE) == Some(&true) {
        out.push(
            Finding::new(FindingId::VxlanTxChecksumOffload, Severity::Warning, n, format!("tx checksum offload is on for {VTEP_DEVICE}: kernels with the VXLAN checksum bug send bad UDP checksums (NodePort/ClusterIP delays of ~63 s)"))
                .object(Subject::device(VTEP_DEVICE))
                .evidence("tx-checksum-ip-generic off", "tx-checksum-ip-generic on")
                .repair(RepairAction::Ethtool { dev: VTEP_DEVICE.into(), feature: "tx-checksum-ip-generic".into(), on: false }),
        );
    }
}

fn check_bridge(
    state: &NodeState,
    exp: &FlannelExpectation,
    n: Option<&str>,
    out: &mut Vec<Finding>,
) {
    let Some(br) = state.link(BRIDGE_DEVICE) else {
        // No pods have started yet: the CNI bridge plugin creates cni0 with the first one.
        return;
    };
    let want = exp.bridge_address;
    let addrs: Vec<Ipv4Net> = state.addrs_of(BRIDGE_DEVICE).filter_map(Addr::v4).collect();
    if !addrs.contains(&want) || addrs.len() > 1 {
        out.push(
            Finding::new(FindingId::Cni0AddrWrong, Severity::Error, n, format!("{BRIDGE_DEVICE} does not hold the pod gateway {want}: pods lose their default gateway"))
                .object(Subject::device(BRIDGE_DEVICE))
                .evidence(want.to_string(), listed(&addrs))
                .repair(RepairAction::AddrReplace { dev: BRIDGE_DEVICE.into(), remove: addrs.into_iter().filter(|a| *a != want).collect(), add: want }),
        );
    }
    if br.mtu > exp.vtep_mtu {
        out.push(
            Finding::new(
                FindingId::MtuMismatch,
                Severity::Error,
                n,
                format!("{BRIDGE_DEVICE} has MTU {} but {VTEP_DEVICE} carries {}: full-size packets to other nodes are dropped", br.mtu, exp.vtep_mtu),
            )
            .object(Subject::device(BRIDGE_DEVICE))
            .evidence(format!("mtu <= {}", exp.vtep_mtu), format!("mtu {}", br.mtu))
            .repair(RepairAction::LinkMtu { dev: BRIDGE_DEVICE.into(), mtu: exp.vtep_mtu }),
        );
    }
    if !br.up {
        out.push(
            Finding::new(
                FindingId::Cni0Down,
                Severity::Error,
                n,
                format!("{BRIDGE_DEVICE} is down: pods on this node are cut off"),
            )
            .object(Subject::device(BRIDGE_DEVICE))
            .repair(RepairAction::LinkUp {
                dev: BRIDGE_DEVICE.into(),
            }),
        );
    }
}

/// The neigh entry flannel programs for a peer's VTEP gateway.
fn peer_neigh(p: &crate::model::flannel::PeerEntries) -> Subject {
    Subject::Neigh {
        ip: IpAddr::V4(p.neigh_ip),
        dev: VTEP_DEVICE.into(),
    }
}

/// The route flannel programs to a peer's pod CIDR.
fn peer_route(p: &crate::model::flannel::PeerEntries) -> Subject {
    Subject::Route {
        dst: p.route_dst.into(),
        table: 254,
    }
}

fn peer_actions(
    p: &crate::model::flannel::PeerEntries,
    neigh: bool,
    fdb: bool,
    route: bool,
) -> Vec<RepairAction> {
    let mut v = Vec::new();
    if neigh {
        v.push(RepairAction::NeighReplace {
            dev: VTEP_DEVICE.into(),
            ip: IpAddr::V4(p.neigh_ip),
            mac: p.vtep_mac,
        });
    }
    if fdb {
        v.push(RepairAction::FdbReplace {
            dev: VTEP_DEVICE.into(),
            mac: p.vtep_mac,
            dst: IpAddr::V4(p.public_ip),
        });
    }
    if route {
        v.push(RepairAction::RouteReplace {
            dst: p.route_dst,
            gateway: IpAddr::V4(p.neigh_ip),
            dev: VTEP_DEVICE.into(),
            onlink: true,
        });
    }
    v
}

/// One peer's neigh, FDB entry and route, as flannel programs them:
/// neigh first, then FDB, then route (flannel's own order).
fn check_peer(
    p: &crate::model::flannel::PeerEntries,
    tables: &PeerTables,
    n: Option<&str>,
    out: &mut Vec<Finding>,
) {
    let PeerTables {
        neighs,
        fdbs,
        routes,
    } = tables;
    let peer = ObjectRef::new("Node", &p.peer);
    let dst = p.route_dst.to_string();
    let gw = IpAddr::V4(p.neigh_ip);
    match neighs.get(&gw).copied() {
        None => out.push(
            Finding::new(FindingId::NeighMissing, Severity::Error, n, format!("no neigh entry for {}'s VTEP gateway {gw}: traffic to {dst} cannot be encapsulated", p.peer))
                .object(peer.clone())
                .object(peer_neigh(p))
                .evidence(format!("{gw} lladdr {} PERMANENT", p.vtep_mac), "absent")
                .repair(peer_actions(p, true, false, false).remove(0)),
        ),
        Some(x) if x.mac() != Some(p.vtep_mac) => out.push(
            Finding::new(FindingId::NeighWrongMac, Severity::Error, n, format!("the neigh entry for {}'s VTEP gateway {gw} has the wrong MAC", p.peer))
                .object(peer.clone())
                .object(peer_neigh(p))
                .evidence(format!("lladdr {} (VtepMAC of {})", p.vtep_mac, p.peer), format!("lladdr {}", x.lladdr.clone().unwrap_or_default()))
                .repair(peer_actions(p, true, false, false).remove(0)),
        ),
        Some(x) if !x.permanent() => out.push(
            Finding::new(FindingId::NeighNotPermanent, Severity::Warning, n, format!("the neigh entry for {}'s VTEP gateway {gw} is not PERMANENT and will expire", p.peer))
                .object(peer.clone())
                .evidence("PERMANENT", x.state.join(","))
                .repair(peer_actions(p, true, false, false).remove(0)),
        ),
        Some(_) => {}
    }
    let fdb: Vec<&FdbEntry> = fdbs.get(&p.vtep_mac).cloned().unwrap_or_default();
    let want_dst = IpAddr::V4(p.public_ip);
    if fdb.is_empty() {
        out.push(
            Finding::new(FindingId::FdbMissing, Severity::Error, n, format!("no FDB entry for {}'s VtepMAC: {VTEP_DEVICE} does not know where to send its frames", p.peer))
                .object(peer.clone())
                .object(Subject::Fdb { mac: p.vtep_mac, dev: VTEP_DEVICE.into() })
                .evidence(format!("{} dst {want_dst} self permanent", p.vtep_mac), "absent")
                .repair(peer_actions(p, false, true, false).remove(0)),
        );
    } else if !fdb.iter().any(|f| f.dst == Some(want_dst)) {
        let actual: Vec<String> = fdb
            .iter()
            .map(|f| f.dst.map(|d| d.to_string()).unwrap_or_default())
            .collect();
        out.push(
            Finding::new(FindingId::FdbWrongDst, Severity::Error, n, format!("the FDB entry for {}'s VtepMAC points at {} instead of its public-ip {want_dst}", p.peer, actual.join(",")))
                .object(peer.clone())
                .object(Subject::Fdb { mac: p.vtep_mac, dev: VTEP_DEVICE.into() })
                .evidence(format!("dst {want_dst}"), format!("dst {}", actual.join(",")))
                .repair(peer_actions(p, false, true, false).remove(0)),
        );
    }
    match routes.get(&RouteDst::from(p.route_dst)).copied() {
        None => out.push(
            Finding::new(
                FindingId::RouteMissing,
                Severity::Error,
                n,
                format!("no route to {}'s pod CIDR {dst}", p.peer),
            )
            .object(peer.clone())
            .object(peer_route(p))
            .evidence(format!("{dst} via {gw} dev {VTEP_DEVICE} onlink"), "absent")
            .repair(peer_actions(p, false, false, true).remove(0)),
        ),
        Some(r)
            if r.gateway != Some(gw) || r.dev.as_deref() != Some(VTEP_DEVICE) || !r.onlink() =>
        {
            out.push(
                Finding::new(
                    FindingId::RouteWrong,
                    Severity::Error,
                    n,
                    format!(
                        "the route to {}'s pod CIDR {dst} does not lead to its VTEP",
                        p.peer
                    ),
                )
                .object(peer.clone())
                .object(peer_route(p))
                .evidence(
                    format!("{dst} via {gw} dev {VTEP_DEVICE} onlink"),
                    format!(
                        "{dst} via {} dev {}{}",
                        r.gateway
                            .map(|g| g.to_string())
                            .unwrap_or_else(|| "-".into()),
                        r.dev.clone().unwrap_or_default(),
                        if r.onlink() { " onlink" } else { "" }
                    ),
                )
                .repair(peer_actions(p, false, false, true).remove(0)),
            )
        }
        Some(_) => {}
    }
}

/// FDB entries on flannel.1 whose MAC is no current node's VtepMAC: left
/// behind by a node that was removed or whose VTEP was recreated.
fn check_stale_fdb(cluster: &Cluster, state: &NodeState, n: Option<&str>, out: &mut Vec<Finding>) {
    let macs: HashSet<Mac> = cluster
        .index()
        .nodes
        .lease_by_node
        .values()
        .map(|l| l.vtep_mac)
        .collect();
    let own = state.link(VTEP_DEVICE).and_then(|l| l.mac_addr());
    for f in state
        .fdb
        .iter()
        .filter(|f| f.dev == VTEP_DEVICE && f.dst.is_some())
    {
        if !macs.contains(&f.mac) && own != Some(f.mac) && f.mac != Mac::default() {
            out.push(
                Finding::new(
                    FindingId::FdbStale,
                    Severity::Warning,
                    n,
                    format!(
                        "FDB entry {} on {VTEP_DEVICE} belongs to no current node",
                        f.mac
                    ),
                )
                .object(Subject::Fdb {
                    mac: f.mac,
                    dev: VTEP_DEVICE.into(),
                })
                .evidence(
                    "no entry",
                    format!(
                        "{} dst {}",
                        f.mac,
                        f.dst.map(|d| d.to_string()).unwrap_or_default()
                    ),
                )
                .repair(RepairAction::FdbDelete {
                    dev: VTEP_DEVICE.into(),
                    mac: f.mac,
                    dst: f.dst,
                }),
            );
        }
    }
}

/// Forwarding sysctls.
pub fn check_sysctls(node: &str, state: &NodeState, out: &mut Vec<Finding>) {
    let n = Some(node);
    if state.sysctls.ip_forward == Some(false) {
        out.push(
            Finding::new(
                FindingId::IpForwardOff,
                Severity::Error,
                n,
                "net.ipv4.ip_forward is 0: the node routes nothing to or from its pods",
            )
            .object(Subject::Sysctl("net.ipv4.ip_forward".into()))
            .evidence("1", "0")
            .repair(RepairAction::Sysctl {
                key: "net.ipv4.ip_forward".into(),
                value: "1".into(),
            }),
        );
    }
    if state.sysctls.bridge_nf_call_iptables == Some(false) {
        out.push(
            Finding::new(FindingId::BridgeNfCallIptablesOff, Severity::Error, n, "net.bridge.bridge-nf-call-iptables is 0: Service traffic between pods on this node bypasses kube-proxy's NAT")
                .object(Subject::Sysctl("net.bridge.bridge-nf-call-iptables".into()))
                .evidence("1", "0")
                .repair(RepairAction::Sysctl { key: "net.bridge.bridge-nf-call-iptables".into(), value: "1".into() }),
        );
    }
}

/// The kernel's own IPv4 policy rules (local, main, default): without the
/// `lookup main` rule not one of flannel's routes is consulted. Checked only
/// when the node's rules were read at all (a state without any has none
/// recorded, not none present).
pub fn check_rules(node: &str, state: &NodeState, out: &mut Vec<Finding>) {
    let v4: Vec<&crate::dataplane::state::Rule> =
        state.rules.iter().filter(|r| r.family == "inet").collect();
    if v4.is_empty() {
        return;
    }
    for (priority, table, severity, what) in [
        (
            0,
            255,
            Severity::Error,
            "local: the node no longer recognises its own addresses",
        ),
        (
            32766,
            254,
            Severity::Error,
            "main: not one route of the main table — flannel's included — is consulted; the node routes nothing",
        ),
        (
            32767,
            253,
            Severity::Warning,
            "default: routes in the default table are no longer consulted",
        ),
    ] {
        let present = v4.iter().any(|r| {
            r.priority == priority
                && r.table == table
                && r.action == "to_tbl"
                && r.src.is_none()
                && r.dst.is_none()
                && r.iif.is_none()
                && r.oif.is_none()
                && r.fwmark.is_none()
        });
        if !present {
            out.push(
                Finding::new(
                    FindingId::PolicyRuleMissing,
                    severity,
                    Some(node),
                    format!(
                        "the policy rule `{priority}: from all lookup {}` is missing — {what}",
                        crate::check::text::table_name(table)
                    ),
                )
                .object(Subject::Rule(priority))
                .evidence(
                    format!(
                        "{priority}: from all lookup {}",
                        crate::check::text::table_name(table)
                    ),
                    "absent",
                )
                .repair(RepairAction::RuleAdd { priority, table }),
            );
        }
    }
}

/// The pods' veths on cni0 and the MTUs along pod -> cni0 -> flannel.1.
pub fn check_pods(cluster: &Cluster, node: &str, state: &NodeState, out: &mut Vec<Finding>) {
    let n = Some(node);
    let vtep_ok_mtu = state
        .link(VTEP_DEVICE)
        .map(|l| l.mtu)
        .filter(|m| *m == vtep_mtu(underlay_mtu(state)));
    for pod in cluster.pods_on(node) {
        if pod.spec.as_ref().and_then(|s| s.host_network) == Some(true) {
            continue;
        }
        let (Some(ns), Some(name)) = (
            pod.metadata.namespace.as_deref(),
            pod.metadata.name.as_deref(),
        ) else {
            continue;
        };
        let Some(ip) = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|i| i.parse::<IpAddr>().ok())
        else {
            continue;
        };
        let Some(att) = state.attachments.iter().find(|a| a.addrs.contains(&ip)) else {
            continue;
        };
        let pod_ref = ObjectRef::namespaced("Pod", ns, name);
        let host = att
            .peer_ifindex
            .and_then(|i| state.links.iter().find(|l| l.ifindex == i));
        match host {
            None => out.push(
                Finding::new(
                    FindingId::PodVethMissing,
                    Severity::Error,
                    n,
                    format!("pod {ns}/{name} ({ip}) has no veth peer on this node"),
                )
                .object(pod_ref.clone())
                .repair(RepairAction::Manual {
                    what: format!("delete pod {ns}/{name} so its sandbox (and veth) is recreated"),
                }),
            ),
            Some(l) if !l.up || !att.up => out.push(
                Finding::new(
                    FindingId::PodVethDown,
                    Severity::Error,
                    n,
                    format!("the veth of pod {ns}/{name} ({ip}) is down"),
                )
                .object(pod_ref.clone())
                .object(Subject::device(&l.name))
                .evidence(
                    "UP",
                    if l.up {
                        "pod side DOWN".to_string()
                    } else {
                        format!("{} DOWN", l.name)
                    },
                )
                .repair(RepairAction::LinkUp {
                    dev: l.name.clone(),
                }),
            ),
            Some(l) if l.master.as_deref() != Some(BRIDGE_DEVICE) => out.push(
                Finding::new(
                    FindingId::PodVethNotOnBridge,
                    Severity::Error,
                    n,
                    format!("the veth of pod {ns}/{name} ({ip}) is not a port of {BRIDGE_DEVICE}"),
                )
                .object(pod_ref.clone())
                .object(Subject::device(&l.name))
                .evidence(
                    format!("master {BRIDGE_DEVICE}"),
                    format!(
                        "master {}",
                        l.master.clone().unwrap_or_else(|| "none".into())
                    ),
                )
                .repair(RepairAction::Manual {
                    what: format!("ip link set {} master {BRIDGE_DEVICE}", l.name),
                }),
            ),
            Some(_) => {}
        }
        // The veth's two ends must carry the same size: a frame larger than
        // the receiving end's MTU is dropped without an ICMP error.
        if let Some(l) = host
            && l.mtu < att.mtu
        {
            out.push(
                Finding::new(FindingId::PodVethMtuMismatch, Severity::Error, n, format!("the veth of pod {ns}/{name} has MTU {} on the node but {} in the pod: full-size packets between the pod and {BRIDGE_DEVICE} are dropped", l.mtu, att.mtu))
                    .object(pod_ref.clone())
                    .object(Subject::device(&l.name))
                    .evidence(format!("mtu {}", att.mtu), format!("mtu {}", l.mtu))
                    .repair(RepairAction::LinkMtu { dev: l.name.clone(), mtu: att.mtu }),
            );
        }
        if let Some(vm) = vtep_ok_mtu
            && att.mtu > vm
        {
            out.push(
                Finding::new(FindingId::MtuMismatch, Severity::Error, n, format!("pod {ns}/{name} has MTU {} but {VTEP_DEVICE} carries {vm}: full-size packets to other nodes are dropped", att.mtu))
                    .object(pod_ref)
                    .evidence(format!("pod mtu <= {vm}"), format!("pod mtu {}", att.mtu))
                    .repair(RepairAction::Manual { what: "set the CNI MTU to flannel's (FLANNEL_MTU in /run/flannel/subnet.env) and recreate the pod".into() }),
            );
        }
    }
}
