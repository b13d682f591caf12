//! Netfilter decisions: kube-proxy's DNAT (iptables or IPVS) for a Service
//! address or a NodePort, filter FORWARD, and the masquerade on the way out.

use super::*;
use crate::check::FindingId;
use crate::dataplane::nftables::ServiceKey;

pub(super) type Targets = Vec<((IpAddr, u16), String)>;

/// kube-proxy's DNAT for a Service address on `node`: the hop that decides,
/// and each endpoint with its probability.
pub(super) fn service_targets(
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
    let proto = pkt.proto.name();
    if crate::model::kube_proxy::node_proxy_mode(world.cluster, state) == ProxyMode::Nftables {
        let IpAddr::V4(dst) = pkt.dst else {
            return Err(at_nft_table(node).drop(
                DropReason::NoServiceRule,
                "IPv6 Services go through table ip6 kube-proxy, which trace does not follow",
            ));
        };
        return nftables_targets(
            world,
            node,
            state,
            ServiceKey::Ip(dst, proto.to_string(), port),
        );
    }
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
                &[FindingId::IpvsVirtualServerMissing],
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
            &[FindingId::KubeProxyNotProgrammed],
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
                &[FindingId::KubeDnsNoEndpoints, FindingId::ServiceNoEndpoints],
                None,
                None,
            ));
        }
        return Err(world.with_finding(
            Hop::new(Point::NetfilterNat, Some(node), None, "nat KUBE-SERVICES").drop(DropReason::NoServiceRule, format!("no rule for {dst}:{port}/{proto}: the ClusterIP is not translated and has no route")),
            &[FindingId::KubeProxySvcChainMissing],
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

/// A hop at kube-proxy's nftables table on `node`.
fn at_nft_table(node: &str) -> Hop {
    Hop::new(
        Point::NetfilterNat,
        Some(node),
        None,
        "nftables ip kube-proxy",
    )
}

/// kube-proxy in nftables mode: the packet's element (`key`) in its map,
/// the chain it leads to, and that chain's endpoints (each
/// equally likely: a `numgen random` vmap); without the table, kube-proxy
/// has not programmed the node.
fn nftables_targets(
    world: &World,
    node: &str,
    state: &NodeState,
    key: ServiceKey,
) -> Result<(Hop, Targets), Hop> {
    let map = key.map();
    let Some(table) = &state.kube_proxy_nft else {
        return Err(world.with_finding(
            at_nft_table(node).drop(
                DropReason::NoServiceRule,
                "kube-proxy (nftables mode) has not programmed this node",
            ),
            &[FindingId::KubeProxyNftablesNotProgrammed],
            Some(node),
            None,
        ));
    };
    let Some(chain) = table.lookup(&key).map(str::to_string) else {
        if table.rejects(&key) {
            return Err(world.with_finding(
                Hop::new(
                    Point::NetfilterNat,
                    Some(node),
                    None,
                    format!("nftables ip kube-proxy no-endpoint {key} -> reject-chain"),
                )
                .drop(
                    DropReason::RejectedByKubeProxy,
                    "the Service port has no ready endpoints: kube-proxy rejects",
                ),
                &[FindingId::KubeDnsNoEndpoints, FindingId::ServiceNoEndpoints],
                None,
                None,
            ));
        }
        return Err(world.with_finding(
            Hop::new(
                Point::NetfilterNat,
                Some(node),
                None,
                format!("nftables ip kube-proxy {map}"),
            )
            .drop(DropReason::NoServiceRule, format!("no element {key}")),
            &[FindingId::KubeProxyNftablesServiceMissing],
            Some(node),
            None,
        ));
    };
    let endpoints = table.endpoints(&chain);
    let n = endpoints.len();
    let decided_by = format!("nftables ip kube-proxy {map} {key} -> {chain}");
    if n == 0 {
        return Err(Hop::new(Point::NetfilterNat, Some(node), None, decided_by)
            .drop(DropReason::NoEndpoints, "the chain makes no DNAT"));
    }
    let targets = endpoints
        .iter()
        .filter_map(|e| {
            let p = 1.0 / n as f64;
            Some((parse_ipport(e)?, format!("{chain} DNAT {e} (p={p:.3})")))
        })
        .collect();
    Ok((
        Hop::new(Point::NetfilterNat, Some(node), None, decided_by)
            .evidence(format!("{n} endpoint(s), chosen by numgen random")),
        targets,
    ))
}

pub(super) fn parse_ipport(s: &str) -> Option<(IpAddr, u16)> {
    let (ip, port) = s.rsplit_once(':')?;
    Some((ip.parse().ok()?, port.parse().ok()?))
}

pub(super) fn forward_verdict(world: &World, node: &str, state: &NodeState) -> Option<Hop> {
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
            &[FindingId::ForwardDrop],
            Some(node),
            None,
        ),
    )
}

pub(super) fn nodeport_targets(
    world: &World,
    node: &str,
    pkt: &Packet,
) -> Result<(Hop, Targets), Hop> {
    let Some(state) = world.state(node) else {
        return Err(
            Hop::new(Point::NetfilterNat, Some(node), None, "kube-proxy")
                .drop(DropReason::NoNodePortRule, "no state read for this node"),
        );
    };
    if crate::model::kube_proxy::node_proxy_mode(world.cluster, state) == ProxyMode::Nftables {
        let (port, proto) = (pkt.port.unwrap_or(0), pkt.proto.name());
        return nftables_targets(
            world,
            node,
            state,
            ServiceKey::NodePort(proto.to_string(), port),
        );
    }
    let Some(rs) = kube_proxy_ruleset(state) else {
        return Err(world.with_finding(
            Hop::new(Point::NetfilterNat, Some(node), None, "nat KUBE-NODEPORTS").drop(
                DropReason::NoNodePortRule,
                "kube-proxy has not programmed this node",
            ),
            &[FindingId::KubeProxyNotProgrammed],
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
                .find(|r| {
                    r.dport == Some(port)
                        && r.proto.as_deref() == Some(pkt.proto.name())
                        && r.target
                            .as_deref()
                            .is_some_and(crate::model::kube_proxy::leads_to_service)
                })
        });
    let Some(rule) = rule else {
        return Err(world.with_finding(
            Hop::new(Point::NetfilterNat, Some(node), None, "nat KUBE-NODEPORTS").drop(
                DropReason::NoNodePortRule,
                format!("no rule for {}/{port}", pkt.proto),
            ),
            &[FindingId::KubeProxyNodeportMissing],
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
    let Some((vip, vport)) = world.service_vip(node, &svc_chain) else {
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

/// Out of the cluster (towards an underlay address): needs the masquerade.
pub(super) fn outward(
    world: &World,
    node: &str,
    a: &NodeState,
    dev: &str,
    pkt: &Packet,
    hops: &mut Vec<Hop>,
) {
    let cidr = ClusterNetwork::from_cluster(world.cluster).map(|n| n.cluster_cidr);
    let from_pod = cidr.is_some_and(|c| matches!(pkt.src, IpAddr::V4(v) if c.contains(&v)));
    let leaves_cluster = cidr.is_some_and(|c| !matches!(pkt.dst, IpAddr::V4(v) if c.contains(&v)));
    // A pod address routed anywhere but flannel.1 or cni0 reaches no pod:
    // a route more specific than flannel's took it.
    if cidr.is_some() && !leaves_cluster {
        hops.push(world.with_finding(
            Hop::new(Point::Routing, Some(node), Some(dev), format!("route out of {dev}"))
                .drop(
                    DropReason::NoRoute,
                    format!("{} is a pod address, but the route the kernel picks sends it out of {dev}, away from {VTEP_DEVICE}", pkt.dst),
                ),
            &[FindingId::RouteShadowsPodCidr],
            Some(node),
            None,
        ));
        return;
    }
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
        // flannel in nftables mode masquerades from its own table.
        let nft_masq = a
            .flannel_nft
            .as_ref()
            .is_some_and(crate::model::flannel_nft::masquerades);
        if !masq && !nft_masq {
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
                    &[
                        FindingId::FlannelMasqMissing,
                        FindingId::FlannelNftablesChainWrong,
                        FindingId::FlannelNftablesNotProgrammed,
                    ],
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
                if masq {
                    "nat FLANNEL-POSTRTG -j MASQUERADE"
                } else {
                    "nftables ip flannel-ipv4 postrtg masquerade"
                },
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
