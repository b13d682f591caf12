//! Following one packet across interfaces: the same inner IP packet seen
//! on cni0, on flannel.1 and encapsulated on eth0 (and on the remote node
//! when it is captured too) is one group, with the time between hops.

use std::collections::HashMap;

use serde::Serialize;

use super::decode::{Frame, Net, Transport};

/// One sighting of a packet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sighting {
    pub iface: String,
    /// Seconds since the capture started.
    pub at: f64,
    /// Seen inside VXLAN (with this VNI).
    pub vni: Option<u32>,
    /// Seconds since the previous sighting.
    pub delta: f64,
}

/// One packet and where it was seen, in time order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    /// `10.2.2.50 > 10.2.0.42 icmp echo request id 5 seq 1`, ...
    pub packet: String,
    pub sightings: Vec<Sighting>,
    /// First to last sighting, in seconds.
    pub span: f64,
}

/// What identifies one IP packet wherever it is seen: addresses, protocol,
/// the IPv4 identification, and the transport's own identity.
fn key(f: &Frame) -> Option<(String, Option<u32>)> {
    let (inner, vni) = match &f.vxlan {
        Some(x) => (&*x.inner, Some(x.vni)),
        None => (f, None),
    };
    let Some(Net::Ipv4 { src, dst, id, .. }) = &inner.net else {
        return None;
    };
    let l4 = match &inner.transport {
        Some(Transport::Icmp {
            kind,
            id: Some(i),
            seq: Some(s),
        }) => format!("icmp {kind} id {i} seq {s}"),
        Some(Transport::Tcp {
            src_port,
            dst_port,
            flags,
            seq,
            ..
        }) => format!("tcp {src_port} > {dst_port} [{flags}] seq {seq}"),
        Some(Transport::Udp {
            src_port,
            dst_port,
            payload_len,
        }) => format!("udp {src_port} > {dst_port} len {payload_len}"),
        Some(Transport::Icmp { kind, .. }) => format!("icmp {kind}"),
        Some(Transport::Other { number }) => format!("proto {number}"),
        None => String::new(),
    };
    Some((format!("{src} > {dst} {l4} ipid {id}"), vni))
}

/// Groups `(iface, at, frame)` sightings of the same packet; packets seen
/// once stay out (nothing to follow). Groups come in order of first sighting.
pub fn correlate(frames: &[(String, f64, Frame)]) -> Vec<Group> {
    let mut order: Vec<String> = Vec::new();
    let mut groups: HashMap<String, Vec<Sighting>> = HashMap::new();
    for (iface, at, f) in frames {
        let Some((k, vni)) = key(f) else { continue };
        let list = groups.entry(k.clone()).or_insert_with(|| {
            order.push(k.clone());
            Vec::new()
        });
        list.push(Sighting {
            iface: iface.clone(),
            at: *at,
            vni,
            delta: 0.0,
        });
    }
    order
        .into_iter()
        .filter_map(|k| {
            let mut s = groups.remove(&k)?;
            if s.len() < 2 {
                return None;
            }
            order_hops(&mut s);
            let first = s[0].at;
            let mut prev = first;
            for x in &mut s {
                x.delta = x.at - prev;
                prev = x.at;
            }
            let span = s.last().map(|x| x.at - first).unwrap_or(0.0);
            Some(Group {
                packet: k,
                sightings: s,
                span,
            })
        })
        .collect()
}

/// Orders sightings by kernel timestamp. Equal timestamps are common (the
/// kernel decapsulates VXLAN in the same buffer, keeping its timestamp), so
/// ties follow the path: outgoing bridge -> VTEP -> underlay, incoming the
/// reverse. A packet is incoming on a node when, of that node's sightings
/// (labels `node/iface` when several nodes are captured), an encapsulated
/// one is among the earliest and a plain one among the latest.
fn order_hops(s: &mut [Sighting]) {
    let split = |x: &Sighting| -> (String, String) {
        match x.iface.rsplit_once('/') {
            Some((node, dev)) => (node.to_string(), dev.to_string()),
            None => (String::new(), x.iface.clone()),
        }
    };
    let incoming = |node: &str| -> bool {
        let on_node: Vec<&Sighting> = s.iter().filter(|x| split(x).0 == node).collect();
        let first = on_node.iter().map(|x| x.at).fold(f64::INFINITY, f64::min);
        let last = on_node
            .iter()
            .map(|x| x.at)
            .fold(f64::NEG_INFINITY, f64::max);
        first < last
            && on_node.iter().any(|x| x.at == first && x.vni.is_some())
            && on_node.iter().any(|x| x.at == last && x.vni.is_none())
    };
    let ranks: Vec<u8> = s
        .iter()
        .map(|x| {
            let (node, dev) = split(x);
            let outward = if x.vni.is_some() {
                2
            } else if dev == crate::model::flannel::BRIDGE_DEVICE {
                0
            } else if dev == crate::model::flannel::VTEP_DEVICE {
                1
            } else {
                2
            };
            if incoming(&node) {
                2 - outward
            } else {
                outward
            }
        })
        .collect();
    let mut ranked: Vec<(u8, Sighting)> = ranks.into_iter().zip(s.iter().cloned()).collect();
    ranked.sort_by(|a, b| a.1.at.total_cmp(&b.1.at).then(a.0.cmp(&b.0)));
    for (slot, (_, x)) in s.iter_mut().zip(ranked) {
        *slot = x;
    }
}

/// One line per group: the packet, then each hop with the time it took.
pub fn group_line(g: &Group) -> String {
    let hops: Vec<String> = g
        .sightings
        .iter()
        .map(|s| {
            format!(
                "{}{} (+{:.0}us)",
                s.iface,
                s.vni.map(|v| format!("[vxlan {v}]")).unwrap_or_default(),
                s.delta * 1e6
            )
        })
        .collect();
    format!("{}: {}", g.packet, hops.join(" -> "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::decode::{VXLAN_PORTS, decode};
    use crate::capture::test_frames::{icmp_echo, in_vxlan};

    fn echo(id: u16) -> Vec<u8> {
        icmp_echo([10, 2, 2, 50], [10, 2, 0, 42], id)
    }

    fn vxlan(inner: &[u8]) -> Vec<u8> {
        in_vxlan(inner, 1)
    }

    #[test]
    fn one_packet_across_three_interfaces() {
        let frames = vec![
            (
                "cni0".to_string(),
                1.000_000,
                decode(&echo(7), &VXLAN_PORTS),
            ),
            (
                "cni0".to_string(),
                1.000_010,
                decode(&echo(8), &VXLAN_PORTS),
            ),
            (
                "flannel.1".to_string(),
                1.000_020,
                decode(&echo(7), &VXLAN_PORTS),
            ),
            (
                "eth0".to_string(),
                1.000_045,
                decode(&vxlan(&echo(7)), &VXLAN_PORTS),
            ),
        ];
        let groups = correlate(&frames);
        assert_eq!(groups.len(), 1, "the packet seen once is not a group");
        let g = &groups[0];
        let hops: Vec<(&str, Option<u32>)> = g
            .sightings
            .iter()
            .map(|s| (s.iface.as_str(), s.vni))
            .collect();
        assert_eq!(
            hops,
            [("cni0", None), ("flannel.1", None), ("eth0", Some(1))]
        );
        assert!((g.span - 45e-6).abs() < 1e-9 && (g.sightings[2].delta - 25e-6).abs() < 1e-9);
        assert_eq!(
            group_line(g),
            "10.2.2.50 > 10.2.0.42 icmp echo request id 7 seq 1 ipid 0: cni0 (+0us) -> flannel.1 (+20us) -> eth0[vxlan 1] (+25us)"
        );
    }

    #[test]
    fn equal_timestamps_follow_the_path() {
        let reply = |t_eth: f64, t_vtep: f64, t_br: f64| {
            vec![
                (
                    "flannel.1".to_string(),
                    t_vtep,
                    decode(&echo(9), &VXLAN_PORTS),
                ),
                ("cni0".to_string(), t_br, decode(&echo(9), &VXLAN_PORTS)),
                (
                    "eth0".to_string(),
                    t_eth,
                    decode(&vxlan(&echo(9)), &VXLAN_PORTS),
                ),
            ]
        };
        let hops = |g: &Group| {
            g.sightings
                .iter()
                .map(|s| s.iface.clone())
                .collect::<Vec<_>>()
        };
        // Incoming: eth0 and flannel.1 share the timestamp, cni0 later.
        assert_eq!(
            hops(&correlate(&reply(2.0, 2.0, 2.1))[0]),
            ["eth0", "flannel.1", "cni0"]
        );
        // Outgoing: cni0 first, flannel.1 and eth0 share theirs.
        assert_eq!(
            hops(&correlate(&reply(2.1, 2.1, 2.0))[0]),
            ["cni0", "flannel.1", "eth0"]
        );
        // All equal: outgoing order.
        assert_eq!(
            hops(&correlate(&reply(2.0, 2.0, 2.0))[0]),
            ["cni0", "flannel.1", "eth0"]
        );
    }

    #[test]
    fn two_nodes_in_one_capture_order_each_node_by_its_own_direction() {
        let at = |label: &str, t: f64, wrapped: bool| {
            let frame = if wrapped { vxlan(&echo(11)) } else { echo(11) };
            (label.to_string(), t, decode(&frame, &VXLAN_PORTS))
        };
        // Ties on both nodes: sending VTEP and underlay, then receiving
        // underlay and VTEP, as the kernel stamps them.
        let frames = vec![
            at("k8s-master-10/cni0", 3.0, false),
            at("k8s-master-10/flannel.1", 3.0, false),
            at("k8s-node-12/eth0", 2.0, true),
            at("k8s-master-10/eth0", 2.5, true),
            at("k8s-node-12/flannel.1", 2.0, false),
            at("k8s-node-12/cni0", 1.0, false),
        ];
        let g = &correlate(&frames)[0];
        let hops: Vec<&str> = g.sightings.iter().map(|s| s.iface.as_str()).collect();
        assert_eq!(
            hops,
            [
                "k8s-node-12/cni0",
                "k8s-node-12/flannel.1",
                "k8s-node-12/eth0",
                "k8s-master-10/eth0",
                "k8s-master-10/flannel.1",
                "k8s-master-10/cni0"
            ]
        );
    }
}
