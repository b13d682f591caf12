//! Following one packet across interfaces: the same inner IP packet seen
//! on cni0, on flannel.1 and encapsulated on eth0 (and on the remote node
//! when it is captured too) is one group, with the time between hops.

use std::collections::HashMap;

use serde::Serialize;

use std::net::IpAddr;

use super::decode::{Frame, IcmpKind, Net, Transport};
use super::view;

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

/// What identifies one IP packet wherever it is seen: addresses, the IPv4
/// identification, and the transport's own identity. Plain integers, so a
/// million frames hash cheaply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PacketKey {
    src: u32,
    dst: u32,
    id: u16,
    l4: L4Key,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum L4Key {
    Tcp {
        sp: u16,
        dp: u16,
        flags: u8,
        seq: u32,
    },
    Udp {
        sp: u16,
        dp: u16,
        len: usize,
    },
    Echo {
        request: bool,
        id: u16,
        seq: u16,
    },
    /// Other ICMP, by a hash of its kind.
    Icmp(u64),
    Proto(u8),
    None,
}

/// How a packet was carried across the underlay: its VXLAN VNI and the
/// outer IPv4 identification. Two encapsulations of the same inner bytes
/// (a retransmitted RST, whose inner IP id is 0) differ in the outer id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Outer {
    pub vni: u32,
    pub ip_id: u16,
}

/// The key of a decoded frame (its VXLAN inner packet when it has one),
/// with how it was carried.
pub fn frame_key(f: &Frame) -> Option<(PacketKey, Option<Outer>)> {
    let (inner, outer) = match &f.vxlan {
        Some(x) => {
            let ip_id = match &f.net {
                Some(Net::Ipv4 { id, .. }) => *id,
                _ => 0,
            };
            (&*x.inner, Some(Outer { vni: x.vni, ip_id }))
        }
        None => (f, None),
    };
    let Some(Net::Ipv4 {
        src: IpAddr::V4(src),
        dst: IpAddr::V4(dst),
        id,
        ..
    }) = &inner.net
    else {
        return None;
    };
    let l4 = match &inner.transport {
        Some(Transport::Icmp {
            kind,
            id: Some(i),
            seq: Some(s),
        }) if kind.is_echo() => L4Key::Echo {
            request: *kind == IcmpKind::EchoRequest,
            id: *i,
            seq: *s,
        },
        Some(Transport::Tcp {
            src_port,
            dst_port,
            flags,
            seq,
            ..
        }) => L4Key::Tcp {
            sp: *src_port,
            dp: *dst_port,
            flags: flags.0,
            seq: *seq,
        },
        Some(Transport::Udp {
            src_port,
            dst_port,
            payload_len,
        }) => L4Key::Udp {
            sp: *src_port,
            dp: *dst_port,
            len: *payload_len,
        },
        Some(Transport::Icmp { kind, .. }) => {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            kind.hash(&mut h);
            L4Key::Icmp(h.finish())
        }
        Some(Transport::Other { number }) => L4Key::Proto(*number),
        None => L4Key::None,
    };
    Some((
        PacketKey {
            src: u32::from(*src),
            dst: u32::from(*dst),
            id: *id,
            l4,
        },
        outer,
    ))
}

impl PacketKey {
    /// Which of `n` correlators sharing a capture takes this packet: every
    /// sighting of one packet goes to the same one.
    pub fn shard(&self, n: usize) -> usize {
        let mix = (u64::from(self.src) << 32 | u64::from(self.dst))
            ^ u64::from(self.id).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (mix.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n.max(1)
    }
}

/// The key of a frame seen through the fast [`view`], with how it was carried.
pub fn view_key(v: &view::View) -> (PacketKey, Option<Outer>) {
    let (ip, outer) = match &v.vxlan {
        Some((vni, inner)) => (
            inner,
            Some(Outer {
                vni: *vni,
                ip_id: v.outer.id,
            }),
        ),
        None => (&v.outer, None),
    };
    let l4 = match ip.l4 {
        view::L4::Tcp {
            src_port,
            dst_port,
            flags,
            seq,
            ..
        } => L4Key::Tcp {
            sp: src_port,
            dp: dst_port,
            flags: flags & 0x1f,
            seq,
        },
        view::L4::Udp {
            src_port,
            dst_port,
            payload_len,
        } => L4Key::Udp {
            sp: src_port,
            dp: dst_port,
            len: usize::from(payload_len),
        },
        view::L4::Echo { request, id, seq } => L4Key::Echo { request, id, seq },
    };
    (
        PacketKey {
            src: u32::from_be_bytes(ip.src),
            dst: u32::from_be_bytes(ip.dst),
            id: ip.id,
            l4,
        },
        outer,
    )
}

/// How a group names its packet: `10.2.2.50 > 10.2.0.42 icmp echo request
/// id 5 seq 1 ipid 7`; other ICMP by the kind the decoder gave it.
fn describe(k: &PacketKey, icmp_kind: Option<&IcmpKind>) -> String {
    use view::{addr, num};
    let mut o = Vec::with_capacity(80);
    addr(&mut o, k.src.to_be_bytes());
    o.extend_from_slice(b" > ");
    addr(&mut o, k.dst.to_be_bytes());
    o.push(b' ');
    match k.l4 {
        L4Key::Echo { request, id, seq } => {
            o.extend_from_slice(if request {
                b"icmp echo request id "
            } else {
                b"icmp echo reply id "
            });
            num(&mut o, id);
            o.extend_from_slice(b" seq ");
            num(&mut o, seq);
        }
        L4Key::Tcp { sp, dp, flags, seq } => {
            o.extend_from_slice(b"tcp ");
            num(&mut o, sp);
            o.extend_from_slice(b" > ");
            num(&mut o, dp);
            o.extend_from_slice(b" [");
            view::flags_text(flags, &mut o);
            o.extend_from_slice(b"] seq ");
            num(&mut o, seq);
        }
        L4Key::Udp { sp, dp, len } => {
            o.extend_from_slice(b"udp ");
            num(&mut o, sp);
            o.extend_from_slice(b" > ");
            num(&mut o, dp);
            o.extend_from_slice(b" len ");
            num(&mut o, len);
        }
        L4Key::Icmp(_) => {
            o.extend_from_slice(b"icmp ");
            match icmp_kind {
                Some(k) => o.extend_from_slice(k.to_string().as_bytes()),
                None => o.push(b'?'),
            }
        }
        L4Key::Proto(n) => {
            o.extend_from_slice(b"proto ");
            num(&mut o, n);
        }
        L4Key::None => {}
    }
    o.extend_from_slice(b" ipid ");
    num(&mut o, k.id);
    String::from_utf8(o).unwrap_or_default()
}

/// One sighting kept while correlating: the interface by its index.
#[derive(Debug, Clone, Copy)]
struct Seen {
    iface: u16,
    at: f64,
    outer: Option<Outer>,
}

/// A packet's sightings: the first inline (most packets are seen once), the
/// rest with the packet's name once there is something to follow.
struct Entry {
    order: u64,
    first: Seen,
    more: Option<Box<(String, Vec<Seen>)>>,
}

impl Entry {
    fn sightings(&self) -> impl Iterator<Item = &Seen> {
        std::iter::once(&self.first).chain(self.more.iter().flat_map(|m| m.1.iter()))
    }
}

/// How long a packet is waited for on further interfaces after its first
/// sighting. One packet crosses a node's interfaces within microseconds
/// and reaches the next node within a millisecond or so; keeping only this
/// much in memory keeps the table small however long the capture is.
pub const WINDOW_SECS: f64 = 0.1;

/// Follows packets across interfaces as frames arrive, keyed by integers,
/// over a sliding window of [`WINDOW_SECS`].
#[derive(Default)]
pub struct Correlator {
    labels: Vec<String>,
    entries: HashMap<PacketKey, Entry, foldhash::fast::RandomState>,
    /// First sightings in arrival order, for expiry.
    expiry: std::collections::VecDeque<(f64, PacketKey, u64)>,
    /// The latest time seen (frames of different interfaces interleave).
    now: f64,
    /// Groups whose window has passed.
    done: Vec<(u64, String, Vec<Seen>)>,
    next: u64,
    last_label: Option<u16>,
}

impl Correlator {
    /// One frame of packet `key` seen on `iface` at `at` seconds, carried
    /// in VXLAN as `outer`; `icmp_kind` names ICMP other than echo.
    pub fn push(
        &mut self,
        iface: &str,
        at: f64,
        key: PacketKey,
        outer: Option<Outer>,
        icmp_kind: Option<&IcmpKind>,
    ) {
        // Most frames come from the interface of the frame before.
        let i = match self.last_label {
            Some(i) if self.labels[usize::from(i)] == iface => i,
            _ => {
                let i = match self.labels.iter().position(|l| l == iface) {
                    Some(i) => i,
                    None => {
                        self.labels.push(iface.to_string());
                        self.labels.len() - 1
                    }
                } as u16;
                self.last_label = Some(i);
                i
            }
        };
        let order = self.next;
        self.push_indexed(order, i, at, key, outer, icmp_kind);
    }

    /// A decoded frame seen on `iface` at `at` (frames that are not IPv4
    /// have nothing to follow).
    pub fn push_frame(&mut self, iface: &str, at: f64, f: &Frame) {
        if let Some((key, outer)) = frame_key(f) {
            self.push(iface, at, key, outer, icmp_kind(f));
        }
    }

    /// [`Correlator::push`] with the interface already an index into the
    /// labels the groups will be named with, and `order` the caller's
    /// sequence number of the frame (groups come in this order): for
    /// correlators that share the work of one capture.
    pub fn push_indexed(
        &mut self,
        order: u64,
        iface: u16,
        at: f64,
        key: PacketKey,
        outer: Option<Outer>,
        icmp_kind: Option<&IcmpKind>,
    ) {
        let seen = Seen { iface, at, outer };
        self.now = self.now.max(at);
        while let Some((t, k, o)) = self.expiry.front().copied() {
            if t >= self.now - WINDOW_SECS {
                break;
            }
            self.expiry.pop_front();
            // The entry this expiry is for (a packet with the same key
            // seen again since is an entry of its own).
            if self.entries.get(&k).is_some_and(|e| e.order == o)
                && let Some(e) = self.entries.remove(&k)
                && let Some(more) = e.more
            {
                let (packet, mut rest) = *more;
                rest.insert(0, e.first);
                self.done.push((e.order, packet, rest));
            }
        }
        // One packet crosses an interface once (bare, or encapsulated: a
        // file of one interface holds both), and keeps its outer header
        // across the underlay: a second sighting on the same interface in
        // the same form, or one carried with another outer id, is another
        // packet.
        if let Some(e) = self.entries.get(&key)
            && e.sightings().any(|x| {
                (x.iface == iface && x.outer.is_some() == outer.is_some())
                    || matches!((x.outer, outer), (Some(a), Some(b)) if a.ip_id != b.ip_id)
            })
            && let Some(e) = self.entries.remove(&key)
            && let Some(more) = e.more
        {
            let (packet, mut rest) = *more;
            rest.insert(0, e.first);
            self.done.push((e.order, packet, rest));
        }
        match self.entries.entry(key) {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                let e = e.get_mut();
                e.more
                    .get_or_insert_with(|| Box::new((describe(&key, icmp_kind), Vec::new())))
                    .1
                    .push(seen);
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(Entry {
                    order,
                    first: seen,
                    more: None,
                });
                self.expiry.push_back((at, key, order));
                self.next = self.next.max(order) + 1;
            }
        }
    }

    /// The packets seen more than once, in order of first sighting.
    pub fn groups(mut self) -> Vec<Group> {
        let labels = std::mem::take(&mut self.labels);
        self.groups_ordered(&labels)
            .into_iter()
            .map(|(_, g)| g)
            .collect()
    }

    /// The groups with their order numbers, interfaces named by `labels`.
    pub fn groups_ordered(mut self, labels: &[String]) -> Vec<(u64, Group)> {
        let mut found: Vec<(u64, String, Vec<Seen>)> = std::mem::take(&mut self.done);
        found.extend(self.entries.into_values().filter_map(|e| {
            let (packet, mut rest) = *e.more?;
            rest.insert(0, e.first);
            Some((e.order, packet, rest))
        }));
        found.sort_by_key(|(o, _, _)| *o);
        found
            .into_iter()
            .map(|(order, packet, seen)| {
                let mut s: Vec<Sighting> = seen
                    .into_iter()
                    .map(|x| Sighting {
                        iface: labels[usize::from(x.iface)].clone(),
                        at: x.at,
                        vni: x.outer.map(|o| o.vni),
                        delta: 0.0,
                    })
                    .collect();
                order_hops(&mut s);
                let first = s[0].at;
                let mut prev = first;
                for x in &mut s {
                    x.delta = x.at - prev;
                    prev = x.at;
                }
                let span = s.last().map(|x| x.at - first).unwrap_or(0.0);
                (
                    order,
                    Group {
                        packet,
                        sightings: s,
                        span,
                    },
                )
            })
            .collect()
    }
}

/// The kind of an ICMP message (of the VXLAN inner packet when there is
/// one), which names groups of ICMP other than echo.
pub fn icmp_kind(f: &Frame) -> Option<&IcmpKind> {
    let inner = f.vxlan.as_ref().map(|x| &*x.inner).unwrap_or(f);
    match &inner.transport {
        Some(Transport::Icmp { kind, .. }) => Some(kind),
        _ => None,
    }
}

/// Groups `(iface, at, frame)` sightings of the same packet; packets seen
/// once stay out (nothing to follow). Groups come in order of first sighting.
pub fn correlate(frames: &[(String, f64, Frame)]) -> Vec<Group> {
    let mut c = Correlator::default();
    for (iface, at, f) in frames {
        c.push_frame(iface, *at, f);
    }
    c.groups()
}

/// Orders sightings by kernel timestamp. Equal timestamps are common (the
/// kernel decapsulates VXLAN in the same buffer, keeping its timestamp), so
/// ties follow the path: outgoing bridge -> VTEP -> underlay, incoming the
/// reverse. A packet is incoming on a node when, of that node's sightings
/// (labels `node/iface` when several nodes are captured), an encapsulated
/// one is among the earliest and a plain one among the latest.
fn order_hops(s: &mut [Sighting]) {
    // Already in strict time order (the common case): nothing to decide.
    if s.windows(2).all(|w| w[0].at < w[1].at) {
        return;
    }
    fn split(x: &Sighting) -> (&str, &str) {
        x.iface.rsplit_once('/').unwrap_or(("", x.iface.as_str()))
    }
    let incoming = |node: &str| -> bool {
        let on_node = || s.iter().filter(|x| split(x).0 == node);
        let first = on_node().map(|x| x.at).fold(f64::INFINITY, f64::min);
        let last = on_node().map(|x| x.at).fold(f64::NEG_INFINITY, f64::max);
        first < last
            && on_node().any(|x| x.at == first && x.vni.is_some())
            && on_node().any(|x| x.at == last && x.vni.is_none())
    };
    let mut nodes: Vec<(&str, bool)> = Vec::new();
    let mut ranks: Vec<u8> = Vec::with_capacity(s.len());
    for x in s.iter() {
        let (node, dev) = split(x);
        let inc = match nodes.iter().find(|(n, _)| *n == node) {
            Some((_, i)) => *i,
            None => {
                let i = incoming(node);
                nodes.push((node, i));
                i
            }
        };
        let outward = if x.vni.is_some() {
            2
        } else if dev == crate::model::flannel::BRIDGE_DEVICE {
            0
        } else if dev == crate::model::flannel::VTEP_DEVICE {
            1
        } else {
            2
        };
        ranks.push(if inc { 2 - outward } else { outward });
    }
    let mut idx: Vec<usize> = (0..s.len()).collect();
    idx.sort_by(|&a, &b| s[a].at.total_cmp(&s[b].at).then(ranks[a].cmp(&ranks[b])));
    if idx.iter().enumerate().all(|(i, &j)| i == j) {
        return;
    }
    let sorted: Vec<Sighting> = idx.iter().map(|&j| s[j].clone()).collect();
    for (slot, x) in s.iter_mut().zip(sorted) {
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
    fn a_retransmitted_packet_is_never_merged_with_the_first() {
        // The same inner RST (IP id 0, as Linux sends RSTs) sent twice:
        // on cni0 and flannel.1 each time, on the underlay with the outer
        // id the node gave each encapsulation.
        let rst = {
            let mut out = Vec::new();
            etherparse::PacketBuilder::ethernet2([1; 6], [2; 6])
                .ipv4([10, 2, 0, 42], [10, 2, 2, 50], 64)
                .tcp(80, 40000, 0, 0)
                .rst()
                .write(&mut out, &[])
                .unwrap();
            out
        };
        let wrapped = |outer_id: u16| {
            let mut f = vxlan(&rst);
            // The outer IPv4 identification (and its checksum is not read).
            f[14 + 4..14 + 6].copy_from_slice(&outer_id.to_be_bytes());
            f
        };
        let frames: Vec<(String, f64, Frame)> = [
            ("cni0", 1.0, rst.clone()),
            ("flannel.1", 1.000_01, rst.clone()),
            ("eth0", 1.000_02, wrapped(100)),
            ("cni0", 1.02, rst.clone()),
            ("flannel.1", 1.020_01, rst.clone()),
            ("eth0", 1.020_02, wrapped(101)),
            // The second encapsulation arriving elsewhere, one more time.
            ("node-10/eth0", 1.020_03, wrapped(100)),
        ]
        .into_iter()
        .map(|(i, t, f)| (i.to_string(), t, decode(&f, &VXLAN_PORTS)))
        .collect();
        let groups = correlate(&frames);
        let hops: Vec<Vec<&str>> = groups
            .iter()
            .map(|g| g.sightings.iter().map(|s| s.iface.as_str()).collect())
            .collect();
        assert_eq!(
            hops,
            [
                vec!["cni0", "flannel.1", "eth0"],
                vec!["cni0", "flannel.1", "eth0"],
            ],
            "{groups:?}"
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
