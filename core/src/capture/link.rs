//! The link-layer headers capture files carry, down to the EtherType and
//! the network-layer bytes the decoders read. `tcpdump -i any` writes Linux
//! "cooked" headers (LINKTYPE_LINUX_SLL, and LINUX_SLL2 since libpcap 1.10)
//! instead of Ethernet: the packet's direction, and in SLL2 the interface
//! index, are all that is left of the link, and are kept to show. Raw IP
//! and BSD loopback (NULL, LOOP) have no EtherType at all.

use serde::{Deserialize, Serialize};

/// A capture's link type (the LINKTYPE_* number pcap and pcapng record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Link {
    Ethernet,
    LinuxSll,
    LinuxSll2,
    /// IPv4 or IPv6 by the version nibble (LINKTYPE_RAW and its aliases).
    RawIp,
    Ipv4,
    Ipv6,
    /// BSD loopback: a 4-byte address family in the writer's byte order.
    Null,
    /// OpenBSD loopback: the family in network byte order.
    Loop,
}

impl Link {
    /// The link type with LINKTYPE number `code`, or `None` for one this
    /// decoder does not read.
    pub fn from_code(code: u32) -> Option<Link> {
        Some(match code {
            1 => Link::Ethernet,
            113 => Link::LinuxSll,
            276 => Link::LinuxSll2,
            // LINKTYPE_RAW, and DLT_RAW's values on some systems.
            101 | 12 | 14 => Link::RawIp,
            228 => Link::Ipv4,
            229 => Link::Ipv6,
            0 => Link::Null,
            108 => Link::Loop,
            _ => return None,
        })
    }

    /// The names libpcap gives the link types it reads, for errors.
    pub const READ: &'static str = "Ethernet (1), LINUX_SLL (113), LINUX_SLL2 (276), raw IP (101, 228, 229), NULL (0) and LOOP (108)";
}

/// Which way a packet went, as a cooked header records it (tcpdump's
/// `In`, `Out`, `B`, `M`, `P`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// To this host.
    In,
    Broadcast,
    Multicast,
    /// To another host, seen in promiscuous mode.
    OtherHost,
    /// Sent by this host.
    Out,
}

impl Direction {
    fn from_packet_type(t: u16) -> Option<Direction> {
        Some(match t {
            0 => Direction::In,
            1 => Direction::Broadcast,
            2 => Direction::Multicast,
            3 => Direction::OtherHost,
            4 => Direction::Out,
            _ => return None,
        })
    }

    /// As tcpdump prints it.
    pub fn tcpdump(self) -> &'static str {
        match self {
            Direction::In => "In",
            Direction::Broadcast => "B",
            Direction::Multicast => "M",
            Direction::OtherHost => "P",
            Direction::Out => "Out",
        }
    }
}

/// What a cooked header says besides the EtherType.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Cooked {
    pub direction: Option<Direction>,
    /// The interface index (SLL2 only).
    pub ifindex: Option<u32>,
}

impl Cooked {
    /// tcpdump's prefix for it (`ifindex 3 In `), empty when it says nothing.
    pub fn prefix(&self) -> String {
        let mut s = String::new();
        if let Some(i) = self.ifindex {
            s.push_str(&format!("ifindex {i} "));
        }
        if let Some(d) = self.direction {
            s.push_str(d.tcpdump());
            s.push(' ');
        }
        s
    }
}

/// A frame under a link header other than Ethernet: the EtherType of what
/// follows, the bytes from the network layer on, and what the header said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stripped<'a> {
    pub ether_type: u16,
    pub payload: &'a [u8],
    pub cooked: Cooked,
}

const IPV4: u16 = 0x0800;
const IPV6: u16 = 0x86dd;

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Strips `link`'s header from `data` (not Ethernet: the decoders read
/// that whole); why not, when it is cut short or names no known protocol.
pub fn strip(link: Link, data: &[u8]) -> Result<Stripped<'_>, String> {
    let short = |need: usize| {
        format!(
            "{} bytes, shorter than a {link:?} header ({need})",
            data.len()
        )
    };
    let by_version = |payload: &[u8]| match payload.first().map(|b| b >> 4) {
        Some(4) => Ok(IPV4),
        Some(6) => Ok(IPV6),
        Some(v) => Err(format!("raw IP with version {v}")),
        None => Err("an empty raw IP packet".to_string()),
    };
    let family = |f: u32| match f {
        2 => Ok(IPV4),
        // BSDs number AF_INET6 differently.
        10 | 24 | 28 | 30 => Ok(IPV6),
        other => Err(format!("loopback address family {other}")),
    };
    let (ether_type, payload, cooked) = match link {
        Link::Ethernet => return Err("an Ethernet frame is decoded whole".to_string()),
        Link::LinuxSll => {
            if data.len() < 16 {
                return Err(short(16));
            }
            let cooked = Cooked {
                direction: Direction::from_packet_type(be16(data, 0)),
                ifindex: None,
            };
            (be16(data, 14), &data[16..], cooked)
        }
        Link::LinuxSll2 => {
            if data.len() < 20 {
                return Err(short(20));
            }
            let cooked = Cooked {
                direction: Direction::from_packet_type(u16::from(data[10])),
                ifindex: Some(u32::from_be_bytes([data[4], data[5], data[6], data[7]])),
            };
            (be16(data, 0), &data[20..], cooked)
        }
        Link::RawIp => (by_version(data)?, data, Cooked::default()),
        Link::Ipv4 => (IPV4, data, Cooked::default()),
        Link::Ipv6 => (IPV6, data, Cooked::default()),
        Link::Null | Link::Loop => {
            if data.len() < 4 {
                return Err(short(4));
            }
            let raw = [data[0], data[1], data[2], data[3]];
            let f = if link == Link::Loop {
                u32::from_be_bytes(raw)
            } else {
                // The writer's byte order: the small value is the right one.
                u32::from_le_bytes(raw).min(u32::from_be_bytes(raw))
            };
            (family(f)?, &data[4..], Cooked::default())
        }
    };
    Ok(Stripped {
        ether_type,
        payload,
        cooked,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cooked_headers_give_the_ethertype_direction_and_interface() {
        // SLL: packet type 4 (outgoing), ARPHRD 1, addr len 6, MAC, pad, IPv4.
        let mut sll = vec![0, 4, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00];
        sll.extend_from_slice(&[0x45, 0]);
        let s = strip(Link::LinuxSll, &sll).unwrap();
        assert_eq!(s.ether_type, IPV4);
        assert_eq!(s.payload, &[0x45, 0]);
        assert_eq!(s.cooked.prefix(), "Out ");
        // SLL2: protocol, reserved, ifindex 3, ARPHRD 1, packet type 0 (in).
        let mut sll2 = vec![0x86, 0xdd, 0, 0, 0, 0, 0, 3, 0, 1, 0, 6];
        sll2.extend_from_slice(&[1, 2, 3, 4, 5, 6, 0, 0, 0x60]);
        let s = strip(Link::LinuxSll2, &sll2).unwrap();
        assert_eq!((s.ether_type, s.payload), (IPV6, &[0x60][..]));
        assert_eq!(s.cooked.prefix(), "ifindex 3 In ");
        assert!(
            strip(Link::LinuxSll2, &sll2[..19])
                .unwrap_err()
                .contains("19 bytes")
        );
    }

    #[test]
    fn raw_and_loopback_are_told_by_version_and_family() {
        assert_eq!(strip(Link::RawIp, &[0x45]).unwrap().ether_type, IPV4);
        assert_eq!(strip(Link::RawIp, &[0x60]).unwrap().ether_type, IPV6);
        assert!(strip(Link::RawIp, &[0x15]).is_err());
        assert_eq!(
            strip(Link::Null, &[2, 0, 0, 0, 0x45]).unwrap().ether_type,
            IPV4
        );
        assert_eq!(
            strip(Link::Null, &[0, 0, 0, 30, 0x60]).unwrap().ether_type,
            IPV6
        );
        assert_eq!(
            strip(Link::Loop, &[0, 0, 0, 2, 0x45]).unwrap().payload,
            &[0x45]
        );
        assert_eq!(Link::from_code(276), Some(Link::LinuxSll2));
        assert_eq!(Link::from_code(147), None);
    }
}
