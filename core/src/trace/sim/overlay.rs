//! The overlay: flannel.1's neigh and FDB, the underlay, decapsulation on
//! the remote node, delivery to the pod's veth, and the way back.

use super::*;
use crate::check::FindingId;
use crate::dataplane::Mac;

/// cni0 to the destination pod's veth on `node`.
pub(super) fn to_pod(
    world: &World,
    node: &str,
    state: &NodeState,
    pkt: &Packet,
    hops: &mut Vec<Hop>,
) {
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
            let finding = world.stale_endpoint_finding(pkt.dst).map(Box::new);
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
        Some(h)
            if h.up && att.up && h.master.as_deref() == Some(BRIDGE_DEVICE) && pkt.size > h.mtu =>
        {
            hops.push(
                world.with_finding(
                    Hop::new(
                        Point::ToPod,
                        Some(node),
                        Some(&h.name),
                        format!("{BRIDGE_DEVICE} -> {}", h.name),
                    )
                    .drop(
                        DropReason::Mtu,
                        format!("{} bytes do not fit {}'s mtu {}", pkt.size, h.name, h.mtu),
                    )
                    .mtu(h.mtu),
                    &[FindingId::PodVethMtuMismatch],
                    Some(node),
                    None,
                ),
            )
        }
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
                .evidence(format!("delivered to {pod} ({}) mtu {}", pkt.dst, att.mtu))
                .mtu(att.mtu),
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
                &[FindingId::PodVethDown, FindingId::PodVethNotOnBridge],
                Some(node),
                None,
            ),
        ),
        None => hops.push(
            world.with_finding(
                Hop::new(Point::ToPod, Some(node), None, "veth")
                    .drop(DropReason::VethDown, "the pod's veth has no peer here"),
                &[FindingId::PodVethMissing],
                Some(node),
                None,
            ),
        ),
    }
}

/// flannel.1: neigh (gateway -> VtepMAC), FDB (VtepMAC -> node), the
/// underlay, and decapsulation on the remote node, then on to the pod.
pub(super) fn overlay(
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
                &[FindingId::VtepDown, FindingId::VtepMissing],
                Some(node),
                None,
            ),
        );
        return;
    };
    if pkt.size > vtep.mtu {
        hops.push(world.with_finding(
            Hop::new(Point::ToOverlay, Some(node), Some(VTEP_DEVICE), format!("{VTEP_DEVICE} mtu {}", vtep.mtu)).drop(DropReason::Mtu, format!("the sender assumes mtu {} but {VTEP_DEVICE} carries mtu {}: full-size packets are dropped (DF)", pkt.size, vtep.mtu)).mtu(vtep.mtu),
            &[FindingId::VtepMtuWrong, FindingId::MtuMismatch],
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
    let (mac, remote_ip, b_name) = match vtep_walk(world, a, gw) {
        VtepWalk::To { mac, dst, node: b } => (mac, dst, b),
        failed => {
            hops.push(walk_drop(
                world,
                &failed,
                node,
                gw,
                dst_node.as_deref(),
                Leg::Out,
            ));
            return;
        }
    };
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
                .map(|r| r.dst.to_string())
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
        Some(l) if l.up && l.mac_addr() == Some(mac) => hops.push(
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
                    &[FindingId::VtepDown],
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
                    &[FindingId::VtepMacDrift, FindingId::NeighWrongMac],
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
            &[FindingId::IpForwardOff],
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
pub(super) fn return_path(world: &World, pkt: &Packet, hops: &mut Vec<Hop>) {
    let Some(dst_node) = world.node_of_pod_ip(pkt.dst) else {
        return;
    };
    let src_node = world
        .node_of_pod_ip(pkt.src)
        .or_else(|| world.node_at(pkt.src));
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
    // Full-size replies: the destination pod sends at its own MTU.
    let reply = Packet {
        src: pkt.dst,
        dst: pkt.src,
        port: None,
        proto: pkt.proto,
        size: pod_mtu(world, &dst_node, pkt.dst),
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
                    &[FindingId::Cni0AddrWrong],
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
                &[FindingId::VtepDown, FindingId::RouteMissing],
                Some(&dst_node),
                None,
            )),
        }
    }
    // A warning on the way back (a reply fragmented) is shown with it.
    hops.extend(back.iter().filter(|h| h.verdict == Verdict::Warn).cloned());
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

/// Whether a full-size reply of `proto` carries DF. TCP and UDP sockets
/// discover the path MTU (DF set); the kernel answers an ICMP echo from its
/// own ICMP socket, which is IP_PMTUDISC_DONT (net/ipv4/icmp.c): no DF, so
/// a hop with a smaller MTU fragments the reply instead of dropping it.
fn reply_sets_df(proto: Proto) -> bool {
    proto != Proto::Icmp
}

pub(super) fn overlay_reply(
    world: &World,
    node: &str,
    b: &NodeState,
    gw: Option<IpAddr>,
    reply: &Packet,
    out: &mut Vec<Hop>,
) {
    let towards = world.node_of_pod_ip(reply.dst);
    if let Some(vtep) = b
        .link(VTEP_DEVICE)
        .filter(|l| l.up && reply.size > l.mtu && !reply_sets_df(reply.proto))
    {
        // Without DF the node fragments what flannel.1 cannot carry whole.
        out.push(
            Hop::new(
                Point::ReturnPath,
                Some(node),
                Some(VTEP_DEVICE),
                format!("{VTEP_DEVICE} mtu {}", vtep.mtu),
            )
            .warn(format!(
                "echo replies leave the pod at up to {} bytes without DF; {VTEP_DEVICE} (mtu {}) fragments them",
                reply.size, vtep.mtu
            )),
        );
    }
    if let Some(vtep) = b
        .link(VTEP_DEVICE)
        .filter(|l| l.up && reply.size > l.mtu && reply_sets_df(reply.proto))
    {
        out.push(world.with_finding(
            Hop::new(
                Point::ReturnPath,
                Some(node),
                Some(VTEP_DEVICE),
                format!("{VTEP_DEVICE} mtu {}", vtep.mtu),
            )
            .drop(
                DropReason::Mtu,
                format!(
                    "replies leave the pod at mtu {} but {VTEP_DEVICE} carries mtu {}: full-size replies are dropped (DF)",
                    reply.size, vtep.mtu
                ),
            ),
            &[FindingId::VtepMtuWrong, FindingId::MtuMismatch],
            Some(node),
            None,
        ));
        return;
    }
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
                &[FindingId::VtepDown],
                Some(node),
                None,
            ),
        );
        return;
    }
    let Some(gw) = gw else { return };
    let walk = vtep_walk(world, b, gw);
    if !matches!(walk, VtepWalk::To { .. }) {
        out.push(walk_drop(
            world,
            &walk,
            node,
            gw,
            towards.as_deref(),
            Leg::Back,
        ));
    }
}

/// Where flannel.1 sends a frame for gateway `gw`: the neigh entry gives the
/// VTEP MAC, the FDB entry for that MAC the remote address, and that
/// address a node. Used going out and for the reply.
pub(super) enum VtepWalk {
    NoNeigh,
    NoFdb { mac: Mac },
    Stale { mac: Mac, dst: IpAddr },
    To { mac: Mac, dst: IpAddr, node: String },
}

pub(super) fn vtep_walk(world: &World, state: &NodeState, gw: IpAddr) -> VtepWalk {
    let Some(mac) = state
        .neighs
        .iter()
        .find(|n| n.dev == VTEP_DEVICE && n.dst == gw)
        .and_then(|n| n.mac())
    else {
        return VtepWalk::NoNeigh;
    };
    let Some(dst) = state
        .fdb
        .iter()
        .find(|f| f.dev == VTEP_DEVICE && f.mac == mac)
        .and_then(|f| f.dst)
    else {
        return VtepWalk::NoFdb { mac };
    };
    match world.node_at(dst) {
        Some(node) => VtepWalk::To { mac, dst, node },
        None => VtepWalk::Stale { mac, dst },
    }
}

/// The dropping hop for a walk that did not reach a node: neigh and FDB
/// failures at `point`, a stale FDB destination at `stale_point`.
/// Which way a packet crosses the overlay: the hops it is seen at and how
/// a drop is worded.
#[derive(Clone, Copy)]
enum Leg {
    /// From the source node towards the destination.
    Out,
    /// The reply, from the destination's node back.
    Back,
}

impl Leg {
    /// Where flannel.1's neigh and FDB lookups are observed.
    fn point(self) -> Point {
        match self {
            Leg::Out => Point::ToOverlay,
            Leg::Back => Point::ReturnPath,
        }
    }
    /// Where a stale FDB entry's VXLAN packet goes astray.
    fn stale_point(self) -> Point {
        match self {
            Leg::Out => Point::Underlay,
            Leg::Back => Point::ReturnPath,
        }
    }
    fn suffix(self) -> &'static str {
        match self {
            Leg::Out => "",
            Leg::Back => " on the way back",
        }
    }
}

fn walk_drop(
    world: &World,
    walk: &VtepWalk,
    node: &str,
    gw: IpAddr,
    towards: Option<&str>,
    leg: Leg,
) -> Hop {
    let (point, stale_point, suffix) = (leg.point(), leg.stale_point(), leg.suffix());
    let (hop, ids): (Hop, &[FindingId]) = match walk {
        VtepWalk::NoNeigh => (
            Hop::new(point, Some(node), Some(VTEP_DEVICE), format!("neigh {gw} dev {VTEP_DEVICE}"))
                .drop(DropReason::NoNeigh, format!("no MAC for gateway {gw}{suffix}: flannel.1 does no ARP (nolearning, no L3 miss handler)")),
            &[FindingId::RouteWrong, FindingId::NeighMissing],
        ),
        VtepWalk::NoFdb { mac } => (
            Hop::new(point, Some(node), Some(VTEP_DEVICE), format!("neigh {gw} lladdr {mac}; fdb {mac}"))
                .drop(DropReason::NoFdb, format!("no FDB entry for {mac}{suffix}: the frame cannot be encapsulated")),
            &[FindingId::NeighWrongMac, FindingId::FdbMissing],
        ),
        VtepWalk::Stale { mac, dst } => (
            Hop::new(stale_point, Some(node), Some(VTEP_DEVICE), format!("fdb {mac} dst {dst}; UDP {VXLAN_PORT} to {dst}"))
                .drop(DropReason::VtepUnreachable, format!("no node has {dst}{suffix}: the FDB entry is stale")),
            &[FindingId::FdbWrongDst, FindingId::FdbStale],
        ),
        VtepWalk::To { .. } => unreachable!("walk_drop is only called for failed walks"),
    };
    world.with_finding(hop, ids, Some(node), towards)
}
