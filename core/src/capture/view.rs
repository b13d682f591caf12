//! A borrowed, allocation-free view of the frames a flannel node carries
//! most — Ethernet, IPv4, TCP/UDP/ICMP echo, and VXLAN with such a frame
//! inside — in the spirit of smoltcp's `wire` layer: typed fields read
//! straight from the buffer. It is the fast path for printing and
//! correlating millions of frames; anything else (IPv6, ARP, VLAN, DNS and
//! HTTP payloads, fragments, ICMP errors, malformed headers) is `None`, and
//! the caller falls back to the full decoder ([`super::decode`]), whose
//! output the view reproduces byte for byte (tested).

use std::io::Write;

use super::link::Link;

/// The transport part of an IPv4 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    Tcp {
        src_port: u16,
        dst_port: u16,
        flags: u8,
        seq: u32,
        payload_len: u16,
    },
    Udp {
        src_port: u16,
        dst_port: u16,
        payload_len: u16,
    },
    Echo {
        request: bool,
        id: u16,
        seq: u16,
    },
}

/// An IPv4 packet's fields that matter for printing and correlation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ip4 {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub id: u16,
    pub l4: L4,
}

/// A frame: the IPv4 packet, and the one VXLAN carries when it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    pub outer: Ip4,
    /// VNI and the inner packet.
    pub vxlan: Option<(u32, Ip4)>,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Views `frame` when it is one of the common shapes; `None` otherwise.
pub fn view(frame: &[u8], vxlan_ports: &[u16]) -> Option<View> {
    view_from(ip4(frame)?, vxlan_ports)
}

fn view_from((outer, udp_payload): (Ip4, Option<&[u8]>), vxlan_ports: &[u16]) -> Option<View> {
    let vxlan = match (outer.l4, udp_payload) {
        (L4::Udp { dst_port, .. }, Some(p)) if vxlan_ports.contains(&dst_port) => {
            if p.len() < 8 || p[0] & 0x08 == 0 {
                None
            } else {
                let vni = u32::from_be_bytes([0, p[4], p[5], p[6]]);
                let (inner, _) = ip4(&p[8..])?;
                Some((vni, inner))
            }
        }
        _ => None,
    };
    Some(View { outer, vxlan })
}

/// One Ethernet + IPv4 frame; the UDP payload rides along for VXLAN.
fn ip4(frame: &[u8]) -> Option<(Ip4, Option<&[u8]>)> {
    if frame.len() < 34 || be16(frame, 12) != 0x0800 {
        return None;
    }
    ip4_packet(&frame[14..])
}

/// One IPv4 packet (under whatever link header).
fn ip4_packet(ip: &[u8]) -> Option<(Ip4, Option<&[u8]>)> {
    if ip.len() < 20 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(be16(ip, 2));
    if ip[0] >> 4 != 4 || ihl < 20 || total < ihl || total > ip.len() || be16(ip, 6) & 0x3fff != 0 {
        return None;
    }
    let p = &ip[ihl..total];
    let (l4, udp_payload) = match ip[9] {
        6 => {
            if p.len() < 20 {
                return None;
            }
            let off = usize::from(p[12] >> 4) * 4;
            if off < 20 || off > p.len() {
                return None;
            }
            let (src_port, dst_port) = (be16(p, 0), be16(p, 2));
            let payload = &p[off..];
            // A payload the full decoder reads as HTTP or DNS: leave it to it.
            if super::decode::http_start(payload) || src_port == 53 || dst_port == 53 {
                return None;
            }
            (
                L4::Tcp {
                    src_port,
                    dst_port,
                    flags: p[13],
                    seq: u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
                    payload_len: payload.len() as u16,
                },
                None,
            )
        }
        17 => {
            if p.len() < 8 {
                return None;
            }
            let len = usize::from(be16(p, 4));
            let (src_port, dst_port) = (be16(p, 0), be16(p, 2));
            if len < 8 || len > p.len() || src_port == 53 || dst_port == 53 {
                return None;
            }
            (
                L4::Udp {
                    src_port,
                    dst_port,
                    payload_len: (len - 8) as u16,
                },
                Some(&p[8..len]),
            )
        }
        1 => {
            if p.len() < 8 || p[1] != 0 || (p[0] != 8 && p[0] != 0) {
                return None;
            }
            (
                L4::Echo {
                    request: p[0] == 8,
                    id: be16(p, 4),
                    seq: be16(p, 6),
                },
                None,
            )
        }
        _ => return None,
    };
    Some((
        Ip4 {
            src: [ip[12], ip[13], ip[14], ip[15]],
            dst: [ip[16], ip[17], ip[18], ip[19]],
            id: be16(ip, 4),
            l4,
        },
        udp_payload,
    ))
}

/// Appends `n` in decimal, without `fmt`.
pub(crate) fn num(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Appends a dotted IPv4 address.
pub(crate) fn addr(out: &mut Vec<u8>, a: [u8; 4]) {
    for (i, b) in a.iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        num(out, *b);
    }
}

/// The flags as the full decoder spells them (tcpdump's letters).
pub fn flags_text(flags: u8, out: &mut Vec<u8>) {
    for (bit, c) in super::decode::TcpFlags::LETTERS {
        if flags & bit != 0 {
            out.push(c);
        }
    }
}

impl Ip4 {
    fn write_line(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"IP ");
        addr(out, self.src);
        match self.l4 {
            L4::Tcp { src_port, .. } | L4::Udp { src_port, .. } => {
                out.push(b'.');
                num(out, src_port);
            }
            L4::Echo { .. } => {}
        }
        out.extend_from_slice(b" > ");
        addr(out, self.dst);
        match self.l4 {
            L4::Tcp { dst_port, .. } | L4::Udp { dst_port, .. } => {
                out.push(b'.');
                num(out, dst_port);
            }
            L4::Echo { .. } => {}
        }
        out.push(b':');
    }

    fn write_transport(&self, out: &mut Vec<u8>) {
        match self.l4 {
            L4::Tcp {
                flags,
                seq,
                payload_len,
                ..
            } => {
                out.extend_from_slice(b" Flags [");
                flags_text(flags, out);
                out.extend_from_slice(b"], seq ");
                num(out, seq);
                out.extend_from_slice(b", length ");
                num(out, payload_len);
            }
            L4::Udp { payload_len, .. } => {
                out.extend_from_slice(b" UDP, length ");
                num(out, payload_len);
            }
            L4::Echo { request, id, seq } => {
                out.extend_from_slice(if request {
                    b" ICMP echo request, id "
                } else {
                    b" ICMP echo reply, id "
                });
                num(out, id);
                out.extend_from_slice(b", seq ");
                num(out, seq);
            }
        }
    }
}

impl View {
    /// Appends the line [`super::Frame::line`] would print.
    pub fn write_line(&self, out: &mut Vec<u8>) {
        self.outer.write_line(out);
        match &self.vxlan {
            Some((vni, inner)) => {
                out.extend_from_slice(b" VXLAN vni ");
                num(out, *vni);
                out.extend_from_slice(b": ");
                inner.write_line(out);
                inner.write_transport(out);
            }
            None => self.outer.write_transport(out),
        }
    }
}

/// [`view`] for a frame under `link`'s header (a cooked one's direction
/// and interface left out).
pub fn view_link(frame: &[u8], link: Link, vxlan_ports: &[u16]) -> Option<View> {
    if link == Link::Ethernet {
        return view(frame, vxlan_ports);
    }
    view_cooked(frame, link, vxlan_ports).map(|(_, v)| v)
}

/// The cooked header's facts and the view of what it carries: the link
/// header stripped once for both.
fn view_cooked(
    frame: &[u8],
    link: Link,
    vxlan_ports: &[u16],
) -> Option<(super::link::Cooked, View)> {
    let s = super::link::strip(link, frame).ok()?;
    if s.ether_type != 0x0800 {
        return None;
    }
    Some((s.cooked, view_from(ip4_packet(s.payload)?, vxlan_ports)?))
}

/// [`write_line`] for a frame under `link`'s header: a cooked header's
/// direction and interface first, as the full decoder prints them.
pub fn write_line_link(
    frame: &[u8],
    link: Link,
    vxlan_ports: &[u16],
    out: &mut Vec<u8>,
) -> Option<super::Frame> {
    if link == Link::Ethernet {
        return write_line(frame, vxlan_ports, out);
    }
    match view_cooked(frame, link, vxlan_ports) {
        Some((cooked, v)) => {
            out.extend_from_slice(cooked.prefix().as_bytes());
            v.write_line(out);
            None
        }
        None => {
            let f = super::decode::decode_link(frame, link, vxlan_ports);
            let _ = write!(out, "{}", f.line());
            Some(f)
        }
    }
}

/// Appends `frame`'s line: through the view when it fits, else through the
/// full decoder, whose frame is handed back for whatever else wants it
/// (DNS, say: the view never covers port 53).
pub fn write_line(frame: &[u8], vxlan_ports: &[u16], out: &mut Vec<u8>) -> Option<super::Frame> {
    match view(frame, vxlan_ports) {
        Some(v) => {
            v.write_line(out);
            None
        }
        None => {
            let f = super::decode(frame, vxlan_ports);
            let _ = write!(out, "{}", f.line());
            Some(f)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::decode::{VXLAN_PORTS, decode};
    use crate::capture::test_frames::{icmp_echo, in_vxlan};
    use proptest::prelude::*;

    fn same(frame: &[u8]) {
        let mut fast = Vec::new();
        write_line(frame, &VXLAN_PORTS, &mut fast);
        assert_eq!(
            String::from_utf8(fast).unwrap(),
            decode(frame, &VXLAN_PORTS).line()
        );
    }

    #[test]
    fn the_view_prints_what_the_decoder_prints() {
        let echo = icmp_echo([10, 2, 2, 50], [10, 2, 0, 42], 7);
        assert!(view(&echo, &VXLAN_PORTS).is_some());
        same(&echo);
        let wrapped = in_vxlan(&echo, 1);
        let v = view(&wrapped, &VXLAN_PORTS).unwrap();
        assert_eq!(
            v.vxlan.map(|(vni, i)| (vni, i.l4)),
            Some((
                1,
                L4::Echo {
                    request: true,
                    id: 7,
                    seq: 1
                }
            ))
        );
        same(&wrapped);
        for flags in 0..=0x1f {
            let mut out = Vec::new();
            etherparse::PacketBuilder::ethernet2([1; 6], [2; 6])
                .ipv4([10, 2, 0, 1], [10, 2, 1, 2], 64)
                .tcp(40000, 80, 99, 500)
                .write(&mut out, &[0u8; 12])
                .unwrap();
            out[14 + 20 + 13] = flags;
            same(&out);
            same(&in_vxlan(&out, 7));
        }
    }

    proptest! {
        #[test]
        fn any_bytes_print_the_same_either_way(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            same(&data);
        }

        #[test]
        fn any_corruption_of_a_vxlan_frame_prints_the_same(at in 0usize..120, byte in any::<u8>()) {
            let mut f = in_vxlan(&icmp_echo([10, 2, 2, 50], [10, 2, 0, 42], 9), 1);
            if at < f.len() {
                f[at] = byte;
            }
            same(&f);
            same(&f[..at.min(f.len())]);
        }
    }
}
