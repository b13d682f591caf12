//! Decoding captured frames: Ethernet, VLAN, ARP, IPv4, IPv6, ICMP, TCP,
//! UDP (etherparse), VXLAN on flannel's UDP 8472 (and 4789) down to the
//! inner frame, DNS messages on port 53 (hickory-proto), and the HTTP
//! request or status line on port 80. Never panics: whatever cannot be read
//! is reported in `error`, with everything decoded up to that point.

use std::net::IpAddr;

use etherparse::{LaxNetSlice, LaxSlicedPacket, LinkSlice, NetSlice, SlicedPacket, TransportSlice};
use serde::Serialize;

use super::link::{Cooked, Link};

/// UDP ports decoded as VXLAN by default (flannel's and IANA's).
pub const VXLAN_PORTS: [u16; 2] = [8472, 4789];

/// The network layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Net {
    Ipv4 {
        src: IpAddr,
        dst: IpAddr,
        ttl: u8,
        len: u16,
        /// The identification field: with src, dst and protocol, one packet.
        id: u16,
    },
    Ipv6 {
        src: IpAddr,
        dst: IpAddr,
        hop_limit: u8,
    },
    Arp {
        op: u16,
        sender: Option<IpAddr>,
        /// The sender's hardware address (what a reply says `is-at`).
        sender_mac: Option<String>,
        target: Option<IpAddr>,
    },
}

/// TCP flags as the header carries them (FIN 0x01, SYN 0x02, RST 0x04,
/// PSH 0x08, ACK 0x10), printed as tcpdump prints them (`S`, `S.`, `R.`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;

    /// tcpdump's letter for each flag, in its order (print-tcp.c's
    /// `tcp_flag_values`): `[S.]`, `[F.]`, `[SEW]` (SYN with ECN).
    pub const LETTERS: [(u8, u8); 8] = [
        (Self::FIN, b'F'),
        (Self::SYN, b'S'),
        (Self::RST, b'R'),
        (Self::PSH, b'P'),
        (Self::ACK, b'.'),
        (Self::URG, b'U'),
        (Self::ECE, b'E'),
        (Self::CWR, b'W'),
    ];

    /// Whether every flag in `mask` is set.
    pub fn has(self, mask: u8) -> bool {
        self.0 & mask == mask
    }
    /// A connection's first packet: SYN and nothing else.
    pub fn is_bare_syn(self) -> bool {
        self.0 == Self::SYN
    }
}

impl std::fmt::Display for TcpFlags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text: String = Self::LETTERS
            .into_iter()
            .filter(|(bit, _)| self.has(*bit))
            .map(|(_, c)| char::from(c))
            .collect();
        f.pad(&text)
    }
}

impl Serialize for TcpFlags {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What an ICMP message is; printed as the capture lines name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IcmpKind {
    EchoRequest,
    EchoReply,
    /// Destination unreachable, with etherparse's reason (`port`,
    /// `fragmentationneeded { next_hop_mtu: 1400 }`, ...).
    Unreachable(String),
    /// Any other ICMPv4 type, by etherparse's name for it.
    Other(String),
    /// An ICMPv6 message by type number.
    V6(u8),
}

impl IcmpKind {
    /// An echo request or reply (what ping sends and gets).
    pub fn is_echo(&self) -> bool {
        matches!(self, IcmpKind::EchoRequest | IcmpKind::EchoReply)
    }
}

impl std::fmt::Display for IcmpKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IcmpKind::EchoRequest => f.pad("echo request"),
            IcmpKind::EchoReply => f.pad("echo reply"),
            IcmpKind::Unreachable(why) => f.pad(&format!("unreachable {why}")),
            IcmpKind::Other(name) => f.pad(name),
            IcmpKind::V6(t) => f.pad(&format!("icmp6 type {t}")),
        }
    }
}

impl Serialize for IcmpKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The transport layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "protocol", rename_all = "lowercase")]
pub enum Transport {
    Tcp {
        src_port: u16,
        dst_port: u16,
        flags: TcpFlags,
        seq: u32,
        payload_len: usize,
    },
    Udp {
        src_port: u16,
        dst_port: u16,
        payload_len: usize,
    },
    Icmp {
        kind: IcmpKind,
        id: Option<u16>,
        seq: Option<u16>,
    },
    Other {
        number: u8,
    },
}

/// What an application payload says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum App {
    Dns {
        id: u16,
        response: bool,
        name: String,
        qtype: String,
        rcode: String,
        answers: Vec<IpAddr>,
    },
    HttpRequest {
        method: String,
        path: String,
        host: Option<String>,
    },
    HttpResponse {
        status: u16,
    },
}

/// VXLAN encapsulation and the frame it carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Vxlan {
    pub vni: u32,
    pub inner: Box<Frame>,
}

/// One decoded frame.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Frame {
    pub src_mac: Option<String>,
    pub dst_mac: Option<String>,
    pub vlan: Option<u16>,
    pub net: Option<Net>,
    pub transport: Option<Transport>,
    pub app: Option<App>,
    pub vxlan: Option<Vxlan>,
    /// What stopped decoding (a truncated or malformed header).
    pub error: Option<String>,
    /// What a cooked (`-i any`) header said: direction, interface index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooked: Option<Cooked>,
}

fn mac(b: [u8; 6]) -> String {
    crate::dataplane::state::format_mac(&b)
}

/// Decodes an Ethernet frame; `vxlan_ports` are the UDP ports to look into.
pub fn decode(data: &[u8], vxlan_ports: &[u16]) -> Frame {
    decode_depth(data, vxlan_ports, 0)
}

/// Decodes a frame under `link`'s header (what `tcpdump -i any` writes,
/// raw IP, loopback), or an Ethernet frame.
pub fn decode_link(data: &[u8], link: Link, vxlan_ports: &[u16]) -> Frame {
    if link == Link::Ethernet {
        return decode(data, vxlan_ports);
    }
    let mut f = Frame::default();
    match super::link::strip(link, data) {
        Err(e) => f.error = Some(e),
        Ok(s) => {
            f.cooked = (s.cooked != Cooked::default()).then_some(s.cooked);
            match SlicedPacket::from_ether_type(etherparse::EtherType(s.ether_type), s.payload) {
                Ok(p) => fill(&mut f, &p, vxlan_ports, 0),
                Err(e) => {
                    let lax = LaxSlicedPacket::from_ether_type(
                        etherparse::EtherType(s.ether_type),
                        s.payload,
                    );
                    if !fill_truncated(&mut f, &lax, vxlan_ports, 0) {
                        f.error = Some(format!("{e}"));
                    }
                }
            }
        }
    }
    f
}

fn decode_depth(data: &[u8], vxlan_ports: &[u16], depth: u8) -> Frame {
    let mut f = Frame::default();
    let p = match SlicedPacket::from_ethernet(data) {
        Ok(p) => p,
        Err(e) => {
            if let Ok(lax) = LaxSlicedPacket::from_ethernet(data)
                && fill_truncated(&mut f, &lax, vxlan_ports, depth)
            {
                return f;
            }
            f.error = Some(format!("{e}"));
            if data.len() >= 12 {
                f.dst_mac = Some(mac(data[0..6].try_into().expect("6 bytes")));
                f.src_mac = Some(mac(data[6..12].try_into().expect("6 bytes")));
            }
            return f;
        }
    };
    fill(&mut f, &p, vxlan_ports, depth);
    f
}

/// A packet cut short (a capture's snap length, the first bytes of a
/// dropped packet the kernel reports) decoded as far as it goes: its
/// headers say it is longer than what is here, which the strict decode
/// refuses. Only a cut within the payload, or in the transport header
/// (the transport is then left out), is read so; `false` when the damage
/// is anything else, so it is reported as malformed.
fn fill_truncated(f: &mut Frame, p: &LaxSlicedPacket<'_>, vxlan_ports: &[u16], depth: u8) -> bool {
    use etherparse::err::packet::SliceError;
    let cut_short = match &p.stop_err {
        None => true,
        Some((SliceError::Len(_), _)) => true,
        Some(_) => false,
    };
    let Some(net) = &p.net else { return false };
    if !cut_short {
        return false;
    }
    if let Some(LinkSlice::Ethernet2(e)) = &p.link {
        f.src_mac = Some(mac(e.source()));
        f.dst_mac = Some(mac(e.destination()));
    }
    let (net, protocol) = match net {
        LaxNetSlice::Ipv4(ip) => (ipv4(&ip.header()), Some(ip.header().protocol().0)),
        LaxNetSlice::Ipv6(ip) => (ipv6(&ip.header()), None),
        LaxNetSlice::Arp(a) => (arp(a), None),
    };
    f.net = Some(net);
    match &p.transport {
        Some(t) => fill_transport(f, t, vxlan_ports, depth),
        None => f.transport = protocol.map(|number| Transport::Other { number }),
    }
    true
}

fn ipv4(h: &etherparse::Ipv4HeaderSlice<'_>) -> Net {
    Net::Ipv4 {
        src: IpAddr::V4(h.source_addr()),
        dst: IpAddr::V4(h.destination_addr()),
        ttl: h.ttl(),
        len: h.total_len(),
        id: h.identification(),
    }
}

fn ipv6(h: &etherparse::Ipv6HeaderSlice<'_>) -> Net {
    Net::Ipv6 {
        src: IpAddr::V6(h.source_addr()),
        dst: IpAddr::V6(h.destination_addr()),
        hop_limit: h.hop_limit(),
    }
}

fn arp(a: &etherparse::ArpPacketSlice<'_>) -> Net {
    let ip = |b: &[u8]| -> Option<IpAddr> { <[u8; 4]>::try_from(b).ok().map(IpAddr::from) };
    Net::Arp {
        op: a.operation().0,
        sender: ip(a.sender_protocol_addr()),
        sender_mac: <[u8; 6]>::try_from(a.sender_hw_addr()).ok().map(mac),
        target: ip(a.target_protocol_addr()),
    }
}

/// Everything above the link layer, from etherparse's slices.
fn fill(f: &mut Frame, p: &SlicedPacket<'_>, vxlan_ports: &[u16], depth: u8) {
    if let Some(LinkSlice::Ethernet2(e)) = &p.link {
        f.src_mac = Some(mac(e.source()));
        f.dst_mac = Some(mac(e.destination()));
    }
    f.vlan = p.link_exts.iter().find_map(|x| match x {
        etherparse::LinkExtSlice::Vlan(v) => Some(v.vlan_identifier().value()),
        _ => None,
    });
    f.net = match &p.net {
        Some(NetSlice::Ipv4(ip)) => Some(ipv4(&ip.header())),
        Some(NetSlice::Ipv6(ip)) => Some(ipv6(&ip.header())),
        Some(NetSlice::Arp(a)) => Some(arp(a)),
        None => None,
    };
    match &p.transport {
        Some(t) => fill_transport(f, t, vxlan_ports, depth),
        None => {
            if let Some(NetSlice::Ipv4(ip)) = &p.net {
                f.transport = Some(Transport::Other {
                    number: ip.header().protocol().0,
                });
            }
        }
    }
}

/// The transport header and what it carries (VXLAN, DNS, HTTP).
fn fill_transport(f: &mut Frame, t: &TransportSlice<'_>, vxlan_ports: &[u16], depth: u8) {
    match t {
        TransportSlice::Tcp(t) => {
            let mut flags = TcpFlags::default();
            for (on, bit) in [
                (t.syn(), TcpFlags::SYN),
                (t.fin(), TcpFlags::FIN),
                (t.rst(), TcpFlags::RST),
                (t.psh(), TcpFlags::PSH),
                (t.ack(), TcpFlags::ACK),
                (t.urg(), TcpFlags::URG),
                (t.ece(), TcpFlags::ECE),
                (t.cwr(), TcpFlags::CWR),
            ] {
                if on {
                    flags.0 |= bit;
                }
            }
            let payload = t.payload();
            f.transport = Some(Transport::Tcp {
                src_port: t.source_port(),
                dst_port: t.destination_port(),
                flags,
                seq: t.sequence_number(),
                payload_len: payload.len(),
            });
            let dns_port = t.destination_port() == 53 || t.source_port() == 53;
            if dns_port {
                f.app = dns_over_tcp(payload);
            } else if http_start(payload) {
                // By content, on any port: a NodePort, a Service's 8443.
                f.app = http(payload);
            }
        }
        TransportSlice::Udp(u) => {
            let payload = u.payload();
            f.transport = Some(Transport::Udp {
                src_port: u.source_port(),
                dst_port: u.destination_port(),
                payload_len: payload.len(),
            });
            if vxlan_ports.contains(&u.destination_port()) && depth == 0 {
                f.vxlan = vxlan(payload, vxlan_ports, depth);
            } else if u.destination_port() == 53 || u.source_port() == 53 {
                f.app = dns(payload);
            }
        }
        TransportSlice::Icmpv4(i) => {
            let (kind, id, seq) = match i.icmp_type() {
                etherparse::Icmpv4Type::EchoRequest(h) => {
                    (IcmpKind::EchoRequest, Some(h.id), Some(h.seq))
                }
                etherparse::Icmpv4Type::EchoReply(h) => {
                    (IcmpKind::EchoReply, Some(h.id), Some(h.seq))
                }
                etherparse::Icmpv4Type::DestinationUnreachable(d) => (
                    IcmpKind::Unreachable(format!("{d:?}").to_lowercase()),
                    None,
                    None,
                ),
                other => (
                    IcmpKind::Other(
                        format!("{other:?}")
                            .split(['(', ' ', '{'])
                            .next()
                            .unwrap_or("icmp")
                            .to_lowercase(),
                    ),
                    None,
                    None,
                ),
            };
            f.transport = Some(Transport::Icmp { kind, id, seq });
        }
        TransportSlice::Icmpv6(i) => {
            f.transport = Some(Transport::Icmp {
                kind: IcmpKind::V6(i.type_u8()),
                id: None,
                seq: None,
            })
        }
        other => {
            f.transport = Some(Transport::Other {
                number: transport_protocol(other),
            })
        }
    }
}

fn transport_protocol(t: &TransportSlice) -> u8 {
    match t {
        TransportSlice::Igmp(_) => 2,
        _ => 0,
    }
}

/// VXLAN: 8 bytes (flags with the I bit, 24-bit VNI), then an Ethernet frame.
fn vxlan(payload: &[u8], vxlan_ports: &[u16], depth: u8) -> Option<Vxlan> {
    if payload.len() < 8 || payload[0] & 0x08 == 0 {
        return None;
    }
    let vni = u32::from_be_bytes([0, payload[4], payload[5], payload[6]]);
    Some(Vxlan {
        vni,
        inner: Box::new(decode_depth(&payload[8..], vxlan_ports, depth + 1)),
    })
}

fn dns(payload: &[u8]) -> Option<App> {
    let m = hickory_proto::op::Message::from_vec(payload).ok()?;
    let q = m.queries.first();
    Some(App::Dns {
        id: m.metadata.id,
        response: matches!(
            m.metadata.message_type,
            hickory_proto::op::MessageType::Response
        ),
        name: q.map(|q| q.name().to_string()).unwrap_or_default(),
        qtype: q.map(|q| q.query_type().to_string()).unwrap_or_default(),
        rcode: m.metadata.response_code.to_string(),
        answers: m
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                hickory_proto::rr::RData::A(a) => Some(IpAddr::V4(a.0)),
                hickory_proto::rr::RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })
            .collect(),
    })
}

/// A DNS message over TCP: after its 2-byte length (RFC 1035 4.2.2), when
/// the segment holds all of it.
fn dns_over_tcp(payload: &[u8]) -> Option<App> {
    let len = usize::from(u16::from_be_bytes([*payload.first()?, *payload.get(1)?]));
    dns(payload.get(2..2 + len)?)
}

/// Whether a TCP payload starts as HTTP/1 does: a status line or a request
/// line's method and a space. Cheap enough for every segment.
pub fn http_start(payload: &[u8]) -> bool {
    const STARTS: [&[u8]; 10] = [
        b"HTTP/",
        b"GET ",
        b"POST ",
        b"PUT ",
        b"HEAD ",
        b"DELETE ",
        b"OPTIONS ",
        b"PATCH ",
        b"CONNECT ",
        b"TRACE ",
    ];
    STARTS.iter().any(|s| payload.starts_with(s))
}

/// The HTTP request line (and Host header) or the status line.
fn http(payload: &[u8]) -> Option<App> {
    let head = std::str::from_utf8(&payload[..payload.len().min(2048)])
        .ok()
        .or_else(|| {
            // A multi-byte character cut by the limit: decode what precedes it.
            std::str::from_utf8(&payload[..payload.len().min(2048)])
                .err()
                .and_then(|e| std::str::from_utf8(&payload[..e.valid_up_to()]).ok())
        })?;
    let first = head.lines().next()?;
    let mut words = first.split_whitespace();
    let (a, b, c) = (words.next()?, words.next()?, words.next());
    if let Some(version) = a.strip_prefix("HTTP/") {
        let _ = version;
        return Some(App::HttpResponse {
            status: b.parse().ok()?,
        });
    }
    if c.is_some_and(|v| v.starts_with("HTTP/")) && a.chars().all(|ch| ch.is_ascii_uppercase()) {
        let host = head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("host").then(|| v.trim().to_string())
        });
        return Some(App::HttpRequest {
            method: a.to_string(),
            path: b.to_string(),
            host,
        });
    }
    None
}

impl Frame {
    /// One line like `tcpdump -nn` prints, with the VXLAN inner frame after
    /// the outer one.
    pub fn line(&self) -> String {
        let mut s = self.cooked.map(|c| c.prefix()).unwrap_or_default();
        s += &match &self.net {
            Some(Net::Ipv4 { src, dst, .. }) | Some(Net::Ipv6 { src, dst, .. }) => {
                let ports = match &self.transport {
                    Some(Transport::Tcp {
                        src_port, dst_port, ..
                    })
                    | Some(Transport::Udp {
                        src_port, dst_port, ..
                    }) => Some((*src_port, *dst_port)),
                    _ => None,
                };
                let v = if matches!(self.net, Some(Net::Ipv6 { .. })) {
                    "IP6"
                } else {
                    "IP"
                };
                match ports {
                    Some((sp, dp)) => format!("{v} {src}.{sp} > {dst}.{dp}:"),
                    None => format!("{v} {src} > {dst}:"),
                }
            }
            Some(Net::Arp {
                op,
                sender,
                sender_mac,
                target,
            }) => {
                let ip = |a: &Option<IpAddr>| a.map(|t| t.to_string()).unwrap_or_default();
                // As tcpdump: who asks for whom, and who answers with what.
                match op {
                    1 => format!("ARP, Request who-has {} tell {}", ip(target), ip(sender)),
                    2 => format!(
                        "ARP, Reply {} is-at {}",
                        ip(sender),
                        sender_mac.clone().unwrap_or_default()
                    ),
                    other => format!("ARP, op {other} {} > {}", ip(sender), ip(target)),
                }
            }
            None => format!(
                "ethertype ? {} > {}",
                self.src_mac.clone().unwrap_or_default(),
                self.dst_mac.clone().unwrap_or_default()
            ),
        };
        if let Some(x) = &self.vxlan {
            s.push_str(&format!(" VXLAN vni {}: {}", x.vni, x.inner.line()));
            return s;
        }
        match &self.transport {
            Some(Transport::Tcp {
                flags,
                seq,
                payload_len,
                ..
            }) => s.push_str(&format!(
                " Flags [{flags}], seq {seq}, length {payload_len}"
            )),
            Some(Transport::Udp { payload_len, .. }) => {
                s.push_str(&format!(" UDP, length {payload_len}"))
            }
            Some(Transport::Icmp { kind, id, seq }) => {
                s.push_str(&format!(" ICMP {kind}"));
                if let (Some(id), Some(seq)) = (id, seq) {
                    s.push_str(&format!(", id {id}, seq {seq}"));
                }
            }
            Some(Transport::Other { number }) => s.push_str(&format!(" ip-proto-{number}")),
            None => {}
        }
        match &self.app {
            Some(App::Dns {
                response: false,
                name,
                qtype,
                id,
                ..
            }) => s.push_str(&format!(" DNS {id} {qtype}? {name}")),
            Some(App::Dns {
                response: true,
                name,
                answers,
                rcode,
                id,
                ..
            }) => {
                let a: Vec<String> = answers.iter().map(|a| a.to_string()).collect();
                s.push_str(&format!(
                    " DNS {id} {rcode} {name} {}",
                    if a.is_empty() {
                        "-".into()
                    } else {
                        a.join(",")
                    }
                ))
            }
            Some(App::HttpRequest { method, path, host }) => s.push_str(&format!(
                " HTTP {method} {path}{}",
                host.as_ref()
                    .map(|h| format!(" Host: {h}"))
                    .unwrap_or_default()
            )),
            Some(App::HttpResponse { status }) => s.push_str(&format!(" HTTP {status}")),
            None => {}
        }
        if let Some(e) = &self.error {
            s.push_str(&format!(" [malformed: {e}]"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;
    use proptest::prelude::*;

    const A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 2];

    use crate::capture::test_frames::in_vxlan;

    fn icmp_echo(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
        crate::capture::test_frames::icmp_echo(src, dst, 5)
    }

    #[test]
    fn a_packet_cut_short_is_decoded_as_far_as_it_goes() {
        // The first 128 bytes of a full-size echo in VXLAN: what the
        // kernel's drop report and a short snap length keep.
        let mut inner = crate::capture::test_frames::icmp_echo([10, 2, 2, 50], [10, 2, 0, 42], 7);
        inner.extend_from_slice(&[0u8; 1300]);
        let ip_len = (inner.len() - 14) as u16;
        inner[16..18].copy_from_slice(&ip_len.to_be_bytes());
        let whole = decode(&in_vxlan(&inner, 1), &VXLAN_PORTS);
        let cut = decode(&in_vxlan(&inner, 1)[..128], &VXLAN_PORTS);
        assert_eq!(cut.error, None);
        assert_eq!(cut.net, whole.net);
        let inner_cut = &cut.vxlan.as_ref().expect("vxlan").inner;
        assert!(matches!(
            inner_cut.transport,
            Some(Transport::Icmp {
                id: Some(7),
                seq: Some(1),
                ..
            })
        ));
        // Cut inside the IP header: still malformed.
        let f = decode(&inner[..24], &VXLAN_PORTS);
        assert!(f.error.is_some() && f.net.is_none());
        // Raw IP, cut within the ICMP header: the protocol is still said.
        let f = decode_link(&inner[14..40], Link::RawIp, &VXLAN_PORTS);
        assert!(
            matches!(
                f.transport,
                Some(Transport::Other { number: 1 }) | Some(Transport::Icmp { .. })
            ),
            "{f:?}"
        );
    }

    #[test]
    fn vxlan_is_decoded_down_to_the_inner_packet() {
        let inner = icmp_echo([10, 2, 2, 50], [10, 2, 0, 42]);
        let f = decode(&in_vxlan(&inner, 1), &VXLAN_PORTS);
        assert_eq!(
            f.net,
            Some(Net::Ipv4 {
                src: "192.168.56.12".parse().unwrap(),
                dst: "192.168.56.10".parse().unwrap(),
                ttl: 64,
                len: 20 + 8 + 8 + inner.len() as u16,
                id: 0
            })
        );
        let x = f.vxlan.as_ref().expect("vxlan");
        assert_eq!(x.vni, 1);
        assert!(
            matches!(x.inner.net, Some(Net::Ipv4 { src, .. }) if src.to_string() == "10.2.2.50")
        );
        assert_eq!(
            x.inner.transport,
            Some(Transport::Icmp {
                kind: IcmpKind::EchoRequest,
                id: Some(5),
                seq: Some(1)
            })
        );
        assert_eq!(
            f.line(),
            "IP 192.168.56.12.40000 > 192.168.56.10.8472: VXLAN vni 1: IP 10.2.2.50 > 10.2.0.42: ICMP echo request, id 5, seq 1"
        );
        // Not the VXLAN port: plain UDP.
        assert!(decode(&in_vxlan(&inner, 1), &[4789]).vxlan.is_none());
    }

    #[test]
    fn http_request_and_status() {
        let mut out = Vec::new();
        let req = b"GET /x HTTP/1.1\r\nHost: aoligei.linux0224.com\r\nUser-Agent: curl\r\n\r\n";
        PacketBuilder::ethernet2(A, B)
            .ipv4([192, 168, 56, 254], [192, 168, 56, 10], 64)
            .tcp(51000, 80, 7, 64240)
            .psh()
            .ack(1)
            .write(&mut out, req)
            .unwrap();
        let f = decode(&out, &VXLAN_PORTS);
        assert_eq!(
            f.app,
            Some(App::HttpRequest {
                method: "GET".into(),
                path: "/x".into(),
                host: Some("aoligei.linux0224.com".into())
            })
        );
        let mut resp = Vec::new();
        PacketBuilder::ethernet2(B, A)
            .ipv4([10, 2, 0, 42], [10, 2, 0, 6], 64)
            .tcp(80, 51000, 9, 64240)
            .ack(8)
            .write(&mut resp, b"HTTP/1.1 503 Service Unavailable\r\n\r\n")
            .unwrap();
        assert_eq!(
            decode(&resp, &VXLAN_PORTS).app,
            Some(App::HttpResponse { status: 503 })
        );
        let mut syn = Vec::new();
        PacketBuilder::ethernet2(A, B)
            .ipv4([10, 2, 2, 50], [10, 1, 59, 153], 64)
            .tcp(40000, 80, 1, 64240)
            .syn()
            .write(&mut syn, &[])
            .unwrap();
        assert!(
            decode(&syn, &VXLAN_PORTS)
                .line()
                .ends_with("Flags [S], seq 1, length 0")
        );
    }

    #[test]
    fn dns_query_and_answer() {
        use hickory_proto::op::{Message, MessageType, OpCode, Query};
        use hickory_proto::rr::{Name, RData, Record, RecordType, rdata::A as ARecord};
        use std::str::FromStr;
        let name = Name::from_str("linux0224-nginx.test-svc-ns.svc.cluster.local.").unwrap();
        let mut q = Message::new(4242, MessageType::Query, OpCode::Query);
        q.add_query(Query::query(name.clone(), RecordType::A));
        let mut r = q.clone();
        r.metadata.message_type = MessageType::Response;
        r.add_answer(Record::from_rdata(
            name,
            30,
            RData::A(ARecord("10.1.59.153".parse().unwrap())),
        ));
        for (msg, response, answers) in [
            (q, false, vec![]),
            (r, true, vec!["10.1.59.153".parse::<IpAddr>().unwrap()]),
        ] {
            let mut out = Vec::new();
            PacketBuilder::ethernet2(A, B)
                .ipv4([10, 2, 2, 50], [10, 1, 0, 10], 64)
                .udp(42533, 53)
                .write(&mut out, &msg.to_vec().unwrap())
                .unwrap();
            match decode(&out, &VXLAN_PORTS).app {
                Some(App::Dns {
                    id,
                    response: r,
                    name,
                    qtype,
                    answers: a,
                    ..
                }) => {
                    assert_eq!((id, r, qtype.as_str(), a), (4242, response, "A", answers));
                    assert_eq!(name, "linux0224-nginx.test-svc-ns.svc.cluster.local.");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn arp() {
        let mut out = Vec::new();
        PacketBuilder::ethernet2(A, [0xff; 6])
            .arp(
                etherparse::ArpPacket::new(
                    etherparse::ArpHardwareId::ETHERNET,
                    etherparse::EtherType::IPV4,
                    etherparse::ArpOperation::REQUEST,
                    &A,
                    &[10, 2, 2, 50],
                    &[0; 6],
                    &[10, 2, 2, 1],
                )
                .unwrap(),
            )
            .write(&mut out)
            .unwrap();
        assert_eq!(
            decode(&out, &VXLAN_PORTS).line(),
            "ARP, Request who-has 10.2.2.1 tell 10.2.2.50"
        );
    }

    #[test]
    fn arp_reply_says_who_is_at_which_mac() {
        let mut out = Vec::new();
        PacketBuilder::ethernet2(B, A)
            .arp(
                etherparse::ArpPacket::new(
                    etherparse::ArpHardwareId::ETHERNET,
                    etherparse::EtherType::IPV4,
                    etherparse::ArpOperation::REPLY,
                    &B,
                    &[10, 2, 2, 1],
                    &A,
                    &[10, 2, 2, 50],
                )
                .unwrap(),
            )
            .write(&mut out)
            .unwrap();
        assert_eq!(
            decode(&out, &VXLAN_PORTS).line(),
            "ARP, Reply 10.2.2.1 is-at 02:00:00:00:00:02"
        );
    }

    fn tcp(sport: u16, dport: u16, payload: &[u8], flags: u8) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2(A, B)
            .ipv4([10, 2, 0, 1], [10, 2, 1, 2], 64)
            .tcp(sport, dport, 7, 500)
            .write(&mut out, payload)
            .unwrap();
        out[14 + 20 + 13] = flags;
        out
    }

    #[test]
    fn tcp_flags_are_spelled_as_tcpdump_spells_them() {
        // A SYN asking for ECN (ECE and CWR): tcpdump prints [SEW].
        let f = decode(&tcp(40000, 80, &[], 0xc2), &VXLAN_PORTS);
        assert!(f.line().contains("Flags [SEW]"), "{}", f.line());
        let f = decode(&tcp(40000, 80, &[], 0x11), &VXLAN_PORTS);
        assert!(f.line().contains("Flags [F.]"), "{}", f.line());
    }

    #[test]
    fn http_on_any_port_and_dns_over_tcp_are_decoded() {
        let get = b"GET /healthz HTTP/1.1\r\nHost: aoligei.linux0224.com\r\n\r\n";
        let f = decode(&tcp(40000, 30005, get, 0x18), &VXLAN_PORTS);
        assert_eq!(
            f.app,
            Some(App::HttpRequest {
                method: "GET".into(),
                path: "/healthz".into(),
                host: Some("aoligei.linux0224.com".into()),
            })
        );
        let f = decode(
            &tcp(30005, 40000, b"HTTP/1.1 503 Service Unavailable\r\n", 0x18),
            &VXLAN_PORTS,
        );
        assert_eq!(f.app, Some(App::HttpResponse { status: 503 }));
        // Not HTTP: a payload that merely starts with capitals.
        let f = decode(&tcp(40000, 30005, b"HELLO there", 0x18), &VXLAN_PORTS);
        assert_eq!(f.app, None);
        // A DNS query over TCP: its 2-byte length, then the message.
        let mut q = hickory_proto::op::Message::new(
            0x1234,
            hickory_proto::op::MessageType::Query,
            hickory_proto::op::OpCode::Query,
        );
        q.add_query(hickory_proto::op::Query::query(
            hickory_proto::rr::Name::from_ascii("kubernetes.default.svc.cluster.local.").unwrap(),
            hickory_proto::rr::RecordType::A,
        ));
        let msg = q.to_vec().unwrap();
        let mut seg = (msg.len() as u16).to_be_bytes().to_vec();
        seg.extend_from_slice(&msg);
        let f = decode(&tcp(40000, 53, &seg, 0x18), &VXLAN_PORTS);
        match f.app {
            Some(App::Dns { id, name, .. }) => {
                assert_eq!(
                    (id, name.as_str()),
                    (0x1234, "kubernetes.default.svc.cluster.local.")
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cooked_frames_decode_to_the_same_packet_with_direction() {
        let eth = icmp_echo([10, 2, 2, 50], [10, 2, 0, 42]);
        // SLL2: protocol IPv4, ifindex 5, ARPHRD_ETHER, outgoing, 6-byte MAC.
        let mut sll2 = vec![0x08, 0x00, 0, 0, 0, 0, 0, 5, 0, 1, 4, 6];
        sll2.extend_from_slice(&A);
        sll2.extend_from_slice(&[0, 0]);
        sll2.extend_from_slice(&eth[14..]);
        let f = decode_link(&sll2, Link::LinuxSll2, &VXLAN_PORTS);
        let plain = decode(&eth, &VXLAN_PORTS);
        assert_eq!(f.line(), format!("ifindex 5 Out {}", plain.line()));
        assert_eq!(
            (f.net.clone(), f.transport.clone()),
            (plain.net, plain.transport)
        );
        let raw = decode_link(&eth[14..], Link::RawIp, &VXLAN_PORTS);
        assert_eq!(raw.line(), decode(&eth, &VXLAN_PORTS).line());
        let cut = decode_link(&sll2[..10], Link::LinuxSll2, &VXLAN_PORTS);
        assert!(cut.error.unwrap().contains("shorter than"));
        let mut fast = Vec::new();
        crate::capture::view::write_line_link(&sll2, Link::LinuxSll2, &VXLAN_PORTS, &mut fast);
        assert_eq!(String::from_utf8(fast).unwrap(), f.line());
    }

    #[test]
    fn kept_corpus_of_malformed_frames() {
        let corpus = include_str!("../../../tests/fixtures/frames/malformed.hex");
        let mut n = 0;
        for line in corpus
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let (hex, what) = line.split_once(' ').unwrap_or((line, ""));
            let bytes: Vec<u8> = (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
                .collect();
            let f = decode(&bytes, &VXLAN_PORTS);
            let inner_error = f.vxlan.as_ref().and_then(|x| x.inner.error.clone());
            assert!(
                f.error.is_some() || inner_error.is_some() || f.vxlan.is_none(),
                "{what}: {f:?}"
            );
            let _ = f.line();
            n += 1;
        }
        assert!(n >= 6);
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let f = decode(&data, &VXLAN_PORTS);
            let _ = f.line();
        }

        #[test]
        fn never_panics_on_truncated_vxlan(cut in 0usize..200, vni in 0u32..(1 << 24)) {
            let frame = in_vxlan(&icmp_echo([10, 2, 2, 50], [10, 2, 0, 42]), vni);
            let f = decode(&frame[..cut.min(frame.len())], &VXLAN_PORTS);
            let _ = f.line();
        }

        #[test]
        fn never_panics_on_corrupted_vxlan(pos in 0usize..140, byte in any::<u8>()) {
            let mut frame = in_vxlan(&icmp_echo([10, 2, 2, 50], [10, 2, 0, 42]), 1);
            let i = pos % frame.len();
            frame[i] = byte;
            let _ = decode(&frame, &VXLAN_PORTS).line();
        }
    }
}
