//! Dumping a namespace's links, addresses, routes, rules, neighbours and FDB
//! over one rtnetlink socket, plus the sysctls that matter.

use std::collections::HashMap;
use std::net::IpAddr;

use futures::TryStreamExt;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoPortData, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo,
    LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteFlags, RouteMessage};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use rtnetlink::{Handle, IpVersion};

use ipnet::IpNet;

use super::netns::Netns;
use super::state::*;
use super::sysctl;
use super::{Mac, RouteDst};
use crate::error::{Error, Result};

/// Reads the whole [`NodeState`] of `netns`.
pub fn read_node_state(netns: &Netns) -> Result<NodeState> {
    let label = match netns {
        Netns::Current => None,
        other => Some(other.display_name()),
    };
    let mut state = netns.run(|| -> Result<NodeState> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::env(format!("cannot start the async runtime: {e}"), None))?;
        let mut state = rt.block_on(dump_all())?;
        let devices: Vec<String> = state.links.iter().map(|l| l.name.clone()).collect();
        state.sysctls = sysctl::read(&devices);
        Ok(state)
    })??;
    state.netns = label;
    Ok(state)
}

fn nl_err(what: &str) -> impl Fn(rtnetlink::Error) -> Error + '_ {
    move |e| Error::Netlink(format!("dumping {what}: {e}"))
}

async fn dump_all() -> Result<NodeState> {
    let (conn, handle, _) = rtnetlink::new_connection()
        .map_err(|e| Error::env(format!("cannot open a netlink socket: {e}"), None))?;
    tokio::spawn(conn);
    let links: Vec<LinkMessage> = handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(nl_err("links"))?;
    let names: HashMap<u32, String> = links
        .iter()
        .map(|m| (m.header.index, link_name(m)))
        .collect();
    let name_of = |i: u32| names.get(&i).cloned().unwrap_or_else(|| format!("if{i}"));

    let addrs: Vec<AddressMessage> = handle
        .address()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(nl_err("addresses"))?;
    let routes = dump_routes(&handle).await?;
    let rules: Vec<RuleMessage> = handle
        .rule()
        .get(IpVersion::V4)
        .execute()
        .try_collect()
        .await
        .map_err(nl_err("rules"))?;
    let neighs: Vec<NeighbourMessage> = handle
        .neighbours()
        .get()
        .execute()
        .try_collect::<Vec<_>>()
        .await
        .map_err(nl_err("neighbours"))?
        .into_iter()
        .filter(|m| matches!(m.header.family, AddressFamily::Inet | AddressFamily::Inet6))
        .collect();
    let fdb: Vec<NeighbourMessage> = handle
        .neighbours()
        .get()
        .set_address_family(AddressFamily::Bridge)
        .execute()
        .try_collect()
        .await
        .map_err(nl_err("the bridge FDB"))?;

    Ok(NodeState {
        netns: None,
        links: links.iter().map(|m| convert_link(m, &name_of)).collect(),
        addrs: addrs
            .iter()
            .filter_map(|m| convert_addr(m, &name_of))
            .collect(),
        routes: routes
            .iter()
            .filter_map(|m| convert_route(m, &name_of))
            .collect(),
        rules: rules.iter().map(|m| convert_rule(m, &name_of)).collect(),
        neighs: neighs
            .iter()
            .filter_map(|m| convert_neigh(m, &name_of))
            .collect(),
        fdb: fdb
            .iter()
            .filter_map(|m| convert_fdb(m, &name_of))
            .collect(),
        ..Default::default()
    })
}

async fn dump_routes(handle: &Handle) -> Result<Vec<RouteMessage>> {
    let mut all = Vec::new();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        let mut msg = RouteMessage::default();
        msg.header.address_family = family;
        let mut routes: Vec<RouteMessage> = handle
            .route()
            .get(msg)
            .execute()
            .try_collect()
            .await
            .map_err(nl_err("routes"))?;
        all.append(&mut routes);
    }
    Ok(all)
}

fn link_name(m: &LinkMessage) -> String {
    m.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        })
        .unwrap_or_else(|| format!("if{}", m.header.index))
}

pub use crate::dataplane::state::format_mac;

fn convert_link(m: &LinkMessage, name_of: &dyn Fn(u32) -> String) -> Link {
    let mut link = Link {
        ifindex: m.header.index,
        name: link_name(m),
        kind: None,
        mtu: 0,
        mac: None,
        up: m.header.flags.contains(LinkFlags::Up),
        lower_up: m.header.flags.contains(LinkFlags::LowerUp),
        operstate: "UNKNOWN".into(),
        master: None,
        link_ifindex: None,
        link_netnsid: None,
        vxlan: None,
        bridge_port: None,
    };
    for attr in &m.attributes {
        match attr {
            LinkAttribute::Mtu(v) => link.mtu = *v,
            LinkAttribute::Address(a) if !a.is_empty() => link.mac = Some(format_mac(a)),
            LinkAttribute::OperState(s) => link.operstate = s.to_string(),
            LinkAttribute::Controller(i) => link.master = Some(name_of(*i)),
            LinkAttribute::Link(i) => link.link_ifindex = Some(*i),
            LinkAttribute::LinkNetNsId(i) => link.link_netnsid = Some(*i),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfo::Kind(k) => link.kind = Some(k.to_string()),
                        LinkInfo::Data(InfoData::Vxlan(v)) => {
                            link.vxlan = Some(convert_vxlan(v, name_of))
                        }
                        LinkInfo::PortData(InfoPortData::BridgePort(p)) => {
                            link.bridge_port = Some(BridgePort {
                                hairpin: p
                                    .iter()
                                    .any(|a| matches!(a, InfoBridgePort::HairpinMode(true))),
                            })
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    link
}

fn convert_vxlan(attrs: &[InfoVxlan], name_of: &dyn Fn(u32) -> String) -> Vxlan {
    let mut v = Vxlan {
        vni: 0,
        local: None,
        dev_ifindex: None,
        dev: None,
        port: 0,
        learning: true,
    };
    for a in attrs {
        match a {
            InfoVxlan::Id(id) => v.vni = *id,
            InfoVxlan::Local(ip) => v.local = Some(IpAddr::V4(*ip)),
            InfoVxlan::Local6(ip) => v.local = Some(IpAddr::V6(*ip)),
            InfoVxlan::Link(i) => {
                v.dev_ifindex = Some(*i);
                v.dev = Some(name_of(*i));
            }
            InfoVxlan::Port(p) => v.port = *p,
            InfoVxlan::Learning(l) => v.learning = *l,
            _ => {}
        }
    }
    v
}

/// iproute2's names for address and route scopes.
pub fn scope_name(scope: u8) -> String {
    match scope {
        0 => "global".into(),
        200 => "site".into(),
        253 => "link".into(),
        254 => "host".into(),
        255 => "nowhere".into(),
        n => n.to_string(),
    }
}

fn convert_addr(m: &AddressMessage, name_of: &dyn Fn(u32) -> String) -> Option<Addr> {
    let address = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    let address = address.or_else(|| {
        m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        })
    })?;
    Some(Addr {
        ifindex: m.header.index,
        dev: name_of(m.header.index),
        address,
        prefix_len: m.header.prefix_len,
        scope: scope_name(u8::from(m.header.scope)),
    })
}

/// iproute2's names for routing protocols (/usr/share/iproute2/rt_protos).
pub fn protocol_name(proto: u8) -> String {
    match proto {
        0 => "unspec",
        1 => "redirect",
        2 => "kernel",
        3 => "boot",
        4 => "static",
        8 => "gated",
        9 => "ra",
        10 => "mrt",
        11 => "zebra",
        12 => "bird",
        13 => "dnrouted",
        14 => "xorp",
        15 => "ntk",
        16 => "dhcp",
        42 => "babel",
        186 => "bgp",
        187 => "isis",
        188 => "ospf",
        189 => "rip",
        192 => "eigrp",
        n => return n.to_string(),
    }
    .into()
}

/// iproute2's names for route types.
pub fn route_type_name(kind: u8) -> String {
    match kind {
        1 => "unicast",
        2 => "local",
        3 => "broadcast",
        4 => "anycast",
        5 => "multicast",
        6 => "blackhole",
        7 => "unreachable",
        8 => "prohibit",
        9 => "throw",
        10 => "nat",
        n => return n.to_string(),
    }
    .into()
}

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(ip) => Some(IpAddr::V4(*ip)),
        RouteAddress::Inet6(ip) => Some(IpAddr::V6(*ip)),
        _ => None,
    }
}

fn convert_route(m: &RouteMessage, name_of: &dyn Fn(u32) -> String) -> Option<Route> {
    let h = &m.header;
    let mut table = u32::from(h.table);
    let mut dst_ip = None;
    let mut route = Route {
        kind: route_type_name(u8::from(h.kind)),
        dst: RouteDst::Default,
        gateway: None,
        dev: None,
        oif: None,
        table: 0,
        protocol: protocol_name(u8::from(h.protocol)),
        scope: scope_name(u8::from(h.scope)),
        prefsrc: None,
        metric: None,
        flags: Vec::new(),
    };
    for a in &m.attributes {
        match a {
            RouteAttribute::Destination(d) => dst_ip = route_ip(d),
            RouteAttribute::Gateway(g) => route.gateway = route_ip(g),
            RouteAttribute::Oif(i) => {
                route.oif = Some(*i);
                route.dev = Some(name_of(*i));
            }
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::PrefSource(p) => route.prefsrc = route_ip(p),
            RouteAttribute::Priority(p) => route.metric = Some(*p),
            _ => {}
        }
    }
    route.table = table;
    route.dst = match dst_ip {
        None if h.destination_prefix_length == 0 => RouteDst::Default,
        None => return None,
        Some(ip) => RouteDst::Net(IpNet::new(ip, h.destination_prefix_length).ok()?),
    };
    for (flag, name) in [
        (RouteFlags::Onlink, "onlink"),
        (RouteFlags::Linkdown, "linkdown"),
        (RouteFlags::Dead, "dead"),
        (RouteFlags::Pervasive, "pervasive"),
        (RouteFlags::Offload, "offload"),
    ] {
        if h.flags.contains(flag) {
            route.flags.push(name.into());
        }
    }
    Some(route)
}

fn convert_rule(m: &RuleMessage, name_of: &dyn Fn(u32) -> String) -> Rule {
    let _ = name_of;
    let h = &m.header;
    let mut rule = Rule {
        priority: 0,
        family: "inet".into(),
        table: u32::from(h.table),
        src: None,
        dst: None,
        iif: None,
        oif: None,
        fwmark: None,
        fwmask: None,
        action: match h.action {
            RuleAction::ToTable => "to_tbl",
            RuleAction::Goto => "goto",
            RuleAction::Nop => "nop",
            RuleAction::Blackhole => "blackhole",
            RuleAction::Unreachable => "unreachable",
            RuleAction::Prohibit => "prohibit",
            _ => "unspec",
        }
        .into(),
    };
    for a in &m.attributes {
        match a {
            RuleAttribute::Priority(p) => rule.priority = *p,
            RuleAttribute::Table(t) => rule.table = *t,
            RuleAttribute::Source(ip) => rule.src = Some(format!("{ip}/{}", h.src_len)),
            RuleAttribute::Destination(ip) => rule.dst = Some(format!("{ip}/{}", h.dst_len)),
            RuleAttribute::Iifname(n) => rule.iif = Some(n.clone()),
            RuleAttribute::Oifname(n) => rule.oif = Some(n.clone()),
            RuleAttribute::FwMark(v) => rule.fwmark = Some(*v),
            RuleAttribute::FwMask(v) => rule.fwmask = Some(*v),
            _ => {}
        }
    }
    rule
}

/// NUD state bits as iproute2 prints them in `ip -j neigh`.
pub fn nud_states(bits: u16) -> Vec<String> {
    const NAMES: [(u16, &str); 8] = [
        (0x01, "INCOMPLETE"),
        (0x02, "REACHABLE"),
        (0x04, "STALE"),
        (0x08, "DELAY"),
        (0x10, "PROBE"),
        (0x20, "FAILED"),
        (0x40, "NOARP"),
        (0x80, "PERMANENT"),
    ];
    NAMES
        .iter()
        .filter(|(bit, _)| bits & bit != 0)
        .map(|(_, n)| n.to_string())
        .collect()
}

fn neigh_flag_names(flags: NeighbourFlags) -> Vec<String> {
    [
        (NeighbourFlags::Own, "self"),
        (NeighbourFlags::Controller, "master"),
        (NeighbourFlags::Router, "router"),
        (NeighbourFlags::Proxy, "proxy"),
        (NeighbourFlags::ExtLearned, "extern_learn"),
        (NeighbourFlags::Offloaded, "offload"),
        (NeighbourFlags::Sticky, "sticky"),
    ]
    .iter()
    .filter(|(f, _)| flags.contains(*f))
    .map(|(_, n)| n.to_string())
    .collect()
}

fn neigh_ip(a: &NeighbourAddress) -> Option<IpAddr> {
    match a {
        NeighbourAddress::Inet(ip) => Some(IpAddr::V4(*ip)),
        NeighbourAddress::Inet6(ip) => Some(IpAddr::V6(*ip)),
        // AF_BRIDGE messages (the FDB) carry the VTEP address as raw bytes.
        NeighbourAddress::Other(b) => match b.len() {
            4 => Some(IpAddr::from(<[u8; 4]>::try_from(b.as_slice()).ok()?)),
            16 => Some(IpAddr::from(<[u8; 16]>::try_from(b.as_slice()).ok()?)),
            _ => None,
        },
        _ => None,
    }
}

fn convert_neigh(m: &NeighbourMessage, name_of: &dyn Fn(u32) -> String) -> Option<Neigh> {
    let mut dst = None;
    let mut lladdr = None;
    for a in &m.attributes {
        match a {
            NeighbourAttribute::Destination(d) => dst = neigh_ip(d),
            NeighbourAttribute::LinkLayerAddress(l) => lladdr = Some(format_mac(l)),
            _ => {}
        }
    }
    Some(Neigh {
        ifindex: m.header.ifindex,
        dev: name_of(m.header.ifindex),
        dst: dst?,
        lladdr,
        state: nud_states(u16::from(m.header.state)),
        flags: neigh_flag_names(m.header.flags)
            .into_iter()
            .filter(|f| f != "self" && f != "master")
            .collect(),
    })
}

fn convert_fdb(m: &NeighbourMessage, name_of: &dyn Fn(u32) -> String) -> Option<FdbEntry> {
    let mut mac = None;
    let mut e = FdbEntry {
        ifindex: m.header.ifindex,
        dev: name_of(m.header.ifindex),
        mac: Mac::default(),
        dst: None,
        vni: None,
        port: None,
        vlan: None,
        master: None,
        flags: neigh_flag_names(m.header.flags),
        state: {
            let bits = u16::from(m.header.state);
            if bits & 0x80 != 0 {
                "permanent".into()
            } else if bits & 0x40 != 0 {
                "static".into()
            } else {
                String::new()
            }
        },
    };
    for a in &m.attributes {
        match a {
            // A bridge FDB entry is keyed by an Ethernet address.
            NeighbourAttribute::LinkLayerAddress(l) => {
                mac = <[u8; 6]>::try_from(l.as_slice()).ok().map(Mac)
            }
            NeighbourAttribute::Destination(d) => e.dst = neigh_ip(d),
            NeighbourAttribute::Vni(v) => e.vni = Some(*v),
            NeighbourAttribute::Port(p) => e.port = Some(*p),
            NeighbourAttribute::Vlan(v) => e.vlan = Some(*v),
            NeighbourAttribute::Controller(i) => e.master = Some(name_of(*i)),
            _ => {}
        }
    }
    e.mac = mac?;
    Some(e)
}
