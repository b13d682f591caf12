//! Picking the probe out of what the captures saw (pure): by its source
//! port or echo id, and — where masquerade gave the SYN another source port
//! — by the IP id it kept; replies are what answers one of those.

use crate::trace::Proto;
use std::collections::HashSet;
use std::net::IpAddr;

use super::verdict::{Direction, Place, Seen};
use crate::capture::Frame;
use crate::capture::decode::{IcmpKind, Net, TcpFlags, Transport};

/// The sightings of the probe among `(place, at, frame)`, in time order.
pub fn identify(frames: &[(Place, f64, Frame)], proto: Proto, tag: u16, src: IpAddr) -> Vec<Seen> {
    let probe = Probe::new(frames.iter().map(|(_, _, f)| f), proto, tag, src);
    let mut seen: Vec<Seen> = frames
        .iter()
        .filter_map(|(place, at, f)| {
            let (s, d, _, t) = view(f)?;
            Some(Seen {
                at_iface: place.clone(),
                direction: probe.direction(s, d, t.as_ref())?,
                at: *at,
                packet: f.line(),
                dst: Some(d),
            })
        })
        .collect();
    seen.sort_by(|a, b| a.at.total_cmp(&b.at));
    seen
}

/// For each of `more` (the headers of packets the kernel dropped), whether
/// it was the probe's request or reply, judged with the senders the
/// captures `frames` and `more` show.
pub fn directions(
    frames: &[(Place, f64, Frame)],
    more: &[&Frame],
    proto: Proto,
    tag: u16,
    src: IpAddr,
) -> Vec<Option<Direction>> {
    let all = frames.iter().map(|(_, _, f)| f).chain(more.iter().copied());
    let probe = Probe::new(all, proto, tag, src);
    more.iter()
        .map(|f| {
            let (s, d, _, t) = view(f)?;
            probe.direction(s, d, t.as_ref())
        })
        .collect()
}

/// A frame's IPv4 header fields and transport, inside VXLAN if it is
/// encapsulated.
fn view(f: &Frame) -> Option<(IpAddr, IpAddr, u16, Option<Transport>)> {
    let inner = f.vxlan.as_ref().map(|x| &*x.inner).unwrap_or(f);
    match &inner.net {
        Some(Net::Ipv4 { src, dst, id, .. }) => Some((*src, *dst, *id, inner.transport.clone())),
        _ => None,
    }
}

/// The source port of a bare SYN.
fn syn_from(t: &Option<Transport>) -> Option<u16> {
    match t {
        Some(Transport::Tcp {
            src_port, flags, ..
        }) if flags.is_bare_syn() => Some(*src_port),
        _ => None,
    }
}

/// The (address, port) pairs the probe is sent from: as sent, then the
/// same SYN (by IP ID) after any SNAT on the way.
fn senders<'f>(
    frames: impl Iterator<Item = &'f Frame> + Clone,
    proto: Proto,
    tag: u16,
    src: IpAddr,
) -> HashSet<(IpAddr, u16)> {
    let mut senders: HashSet<(IpAddr, u16)> = HashSet::new();
    senders.insert((src, tag));
    if proto != Proto::Tcp {
        return senders;
    }
    let ids: HashSet<u16> = frames
        .clone()
        .filter_map(view)
        .filter(|(_, _, _, t)| syn_from(t) == Some(tag))
        .map(|(_, _, id, _)| id)
        .collect();
    for f in frames {
        if let Some((s, _, id, t)) = view(f)
            && let Some(port) = syn_from(&t)
            && (port == tag || ids.contains(&id))
        {
            senders.insert((s, port));
        }
    }
    senders
}

/// What the probe was and who sent it, to tell its frames from others.
struct Probe {
    proto: Proto,
    tag: u16,
    src: IpAddr,
    senders: HashSet<(IpAddr, u16)>,
    source_ips: HashSet<IpAddr>,
}

impl Probe {
    /// The probe sent as `proto` with `tag` from `src`, and its senders
    /// after any SNAT as `frames` show them.
    fn new<'f>(
        frames: impl Iterator<Item = &'f Frame> + Clone,
        proto: Proto,
        tag: u16,
        src: IpAddr,
    ) -> Probe {
        let senders = senders(frames, proto, tag, src);
        let source_ips = senders.iter().map(|(ip, _)| *ip).collect();
        Probe {
            proto,
            tag,
            src,
            senders,
            source_ips,
        }
    }

    /// Whether a frame from `s` to `d` is the probe's request, its reply
    /// (or an ICMP error on its way back), or neither.
    fn direction(&self, s: IpAddr, d: IpAddr, t: Option<&Transport>) -> Option<Direction> {
        match (t?, self.proto) {
            (
                Transport::Tcp {
                    src_port,
                    dst_port,
                    flags,
                    ..
                },
                Proto::Tcp,
            ) => {
                if flags.is_bare_syn() && self.senders.contains(&(s, *src_port)) {
                    Some(Direction::Request)
                } else if (flags.has(TcpFlags::SYN) || flags.has(TcpFlags::RST))
                    && self.senders.contains(&(d, *dst_port))
                {
                    Some(Direction::Reply)
                } else {
                    None
                }
            }
            (
                Transport::Udp {
                    src_port, dst_port, ..
                },
                Proto::Udp,
            ) => {
                if *src_port == self.tag && s == self.src {
                    Some(Direction::Request)
                } else if *dst_port == self.tag && d == self.src {
                    Some(Direction::Reply)
                } else {
                    None
                }
            }
            (Transport::Icmp { kind, id, .. }, _) => {
                let ours = self.proto == Proto::Icmp && *id == Some(self.tag);
                match kind {
                    IcmpKind::EchoRequest if ours => Some(Direction::Request),
                    IcmpKind::EchoReply if ours => Some(Direction::Reply),
                    IcmpKind::EchoRequest | IcmpKind::EchoReply => None,
                    // An ICMP error on its way back to the sender.
                    _ if self.source_ips.contains(&d) => Some(Direction::Reply),
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::decode::{VXLAN_PORTS, decode};
    use crate::capture::test_frames::in_vxlan;

    /// A TCP segment from `src:sport` to `dst:dport` with `flags` and IP id `id`.
    fn tcp(
        src: [u8; 4],
        sport: u16,
        dst: [u8; 4],
        dport: u16,
        syn: bool,
        ack: bool,
        id: u16,
    ) -> Vec<u8> {
        let mut t = etherparse::TcpHeader::new(sport, dport, 1, 64240);
        t.syn = syn;
        t.ack = ack;
        let mut out = Vec::new();
        let mut ip = etherparse::Ipv4Header::new(
            t.header_len() as u16,
            64,
            etherparse::IpNumber::TCP,
            src,
            dst,
        )
        .unwrap();
        ip.identification = id;
        etherparse::Ethernet2Header {
            source: [2; 6],
            destination: [4; 6],
            ether_type: etherparse::EtherType::IPV4,
        }
        .write(&mut out)
        .unwrap();
        ip.write(&mut out).unwrap();
        t.checksum = t.calc_checksum_ipv4(&ip, &[]).unwrap();
        t.write(&mut out).unwrap();
        out
    }

    #[test]
    fn a_masqueraded_syn_is_followed_by_its_ip_id_and_its_answer_by_the_new_port() {
        let client = [192, 168, 56, 254];
        let node = [192, 168, 56, 11];
        let masq = [10, 2, 1, 0];
        let pod = [10, 2, 0, 42];
        let eth0 = || Place {
            node: "k8s-node-11".into(),
            device: "eth0".into(),
        };
        let frames = vec![
            (
                eth0(),
                1.0,
                decode(
                    &tcp(client, 41000, node, 30005, true, false, 77),
                    &VXLAN_PORTS,
                ),
            ),
            // After DNAT and masquerade with a random port, inside VXLAN.
            (
                eth0(),
                1.1,
                decode(
                    &in_vxlan(&tcp(masq, 5555, pod, 80, true, false, 77), 1),
                    &VXLAN_PORTS,
                ),
            ),
            // Someone else's SYN.
            (
                eth0(),
                1.15,
                decode(
                    &in_vxlan(&tcp(masq, 6666, pod, 80, true, false, 78), 1),
                    &VXLAN_PORTS,
                ),
            ),
            (
                eth0(),
                1.2,
                decode(
                    &in_vxlan(&tcp(pod, 80, masq, 5555, true, true, 0), 1),
                    &VXLAN_PORTS,
                ),
            ),
            (
                eth0(),
                1.3,
                decode(
                    &tcp(node, 30005, client, 41000, true, true, 0),
                    &VXLAN_PORTS,
                ),
            ),
            // The handshake's ACK is not the probe.
            (
                eth0(),
                1.4,
                decode(
                    &tcp(client, 41000, node, 30005, false, true, 79),
                    &VXLAN_PORTS,
                ),
            ),
        ];
        let seen = identify(&frames, Proto::Tcp, 41000, IpAddr::from(client));
        let dirs: Vec<(f64, Direction)> = seen.iter().map(|s| (s.at, s.direction)).collect();
        assert_eq!(
            dirs,
            [
                (1.0, Direction::Request),
                (1.1, Direction::Request),
                (1.2, Direction::Reply),
                (1.3, Direction::Reply)
            ]
        );
        assert_eq!(seen[1].dst, Some(IpAddr::from(pod)));
    }
}
