//! Traffic from outside the cluster: a NodePort, or a URL through the
//! ingress controller's hostPort.

use super::*;
use crate::check::FindingId;

/// From outside the cluster: to a NodePort, or to an Ingress URL.
pub(super) fn from_outside(
    world: &World,
    t: &mut Trace,
    src_ip: IpAddr,
    dst: &End,
    proto: Proto,
    port: Option<u16>,
) {
    match dst {
        End::NodePort { node, ip, port: np } => {
            t.sent_to = Some(SentTo { proto, ip: *ip, port: Some(*np), http: None });
            t.hops.push(Hop::new(Point::FromUnderlay, Some(node), Some("eth0"), format!("{src_ip} -> {ip}:{np}/{proto}")));
            let pkt = Packet { src: src_ip, dst: *ip, port: Some(*np), proto, size: 1450 };
            match nodeport_targets(world, node, &pkt) {
                Ok((hop, targets)) => {
                    t.hops.push(hop);
                    // KUBE-MARK-MASQ: the reply comes back through this node.
                    let masq = world.lease(node).map(|l| IpAddr::V4(l.gateway())).unwrap_or(*ip);
                    for ((tip, tport), label) in targets {
                        let p = Packet { src: masq, dst: tip, port: Some(tport), proto, size: 1450 };
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

/// From a pod on `node` to a NodePort of `np_node`: to that node's address
/// (over the underlay unless it is this node), then kube-proxy's
/// KUBE-SERVICES -> KUBE-NODEPORTS there (`--dst-type LOCAL`), the DNAT to
/// an endpoint, and on to it.
pub(super) fn to_nodeport(world: &World, t: &mut Trace, node: &str, pkt: &Packet, np_node: &str) {
    if np_node != node {
        // Not a local address here: no DNAT on this node, routed out of eth0.
        let mut hops = Vec::new();
        deliver(world, node, pkt, true, &mut hops);
        let dropped = hops.iter().any(|h| h.verdict == Verdict::Drop);
        t.hops.extend(hops);
        if dropped {
            return;
        }
        t.hops.push(Hop::new(
            Point::FromUnderlay,
            Some(np_node),
            Some("eth0"),
            format!("to {}:{}/{}", pkt.dst, pkt.port.unwrap_or(0), pkt.proto),
        ));
    }
    match nodeport_targets(world, np_node, pkt) {
        Ok((hop, targets)) => {
            t.hops.push(hop);
            // KUBE-MARK-MASQ: the reply comes back through the NodePort's node.
            let masq = world
                .lease(np_node)
                .map(|l| IpAddr::V4(l.gateway()))
                .unwrap_or(pkt.dst);
            for ((tip, tport), label) in targets {
                let p = Packet {
                    src: masq,
                    dst: tip,
                    port: Some(tport),
                    ..pkt.clone()
                };
                t.branches.push(branch(world, np_node, &p, label, true));
            }
        }
        Err(hop) => t.hops.push(hop),
    }
}

pub(super) fn from_outside_url(
    world: &World,
    t: &mut Trace,
    src_ip: IpAddr,
    host: &str,
    path: &str,
) {
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
    t.sent_to = Some(SentTo {
        proto: Proto::Tcp,
        ip: node_ip,
        port: Some(80),
        http: Some((host.to_string(), path.to_string())),
    });
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
            proto: Proto::Tcp,
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
                    FindingId::IngressBackendPortMissing,
                    FindingId::IngressBackendServiceMissing,
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
                proto: Proto::Tcp,
                size: pod_mtu(world, &node, ctrl_ip),
            };
            let same = world.node_of_pod_ip(ip).as_deref() == Some(node.as_str());
            t.branches
                .push(branch(world, &node, &pkt, format!("upstream {ep}"), !same));
        }
    }
}
