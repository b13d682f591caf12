//! Why the kernel freed a packet (pure: the I/O is `capture::dropwatch` in
//! the application). A small BPF program on the `kfree_skb` tracepoint
//! copies, for every packet the kernel drops, the reason, the code address
//! that freed it, the device and its network namespace, and the first
//! [`WINDOW`] bytes from the link header on; this module reads that record
//! ([`DropRecord`]), names the reason with the running kernel's own enum
//! (never a table of ours) and the address with its kallsyms
//! ([`Symbols`]), and decodes the headers so a drop can be matched to a
//! packet like any captured frame.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::decode::{Frame, decode_link};
use super::link::Link;

/// How many bytes of each dropped packet are kept, from its link header:
/// enough for Ethernet, IPv4, UDP, VXLAN and the inner Ethernet, IPv4 and
/// transport headers (14 + 20 + 8 + 8 + 14 + 20 + 20 = 104).
pub const WINDOW: usize = 128;

/// The record's size: [`WINDOW`] bytes after a 72-byte header.
pub const RECORD_SIZE: usize = HEADER + WINDOW;
const HEADER: usize = 72;

/// A `u16` header offset the kernel has not set (`(u16)~0U`).
const UNSET: u16 = 0xffff;

/// The record the BPF program writes, field by field. Its layout (bytes,
/// little-endian as the machine): reason u64 @0, location u64 @8, device
/// pointer @16 (scratch), head @24, data @32, len u32 @40, mac_header u16
/// @44, network_header u16 @46, tail u32 @48, protocol be16 @52, ifindex
/// u32 @56, netns inode u32 @60, net pointer @64 (scratch), bytes @72.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropRecord {
    pub reason: u32,
    pub location: u64,
    pub head: u64,
    pub data: u64,
    /// The packet's length on the wire side of the kernel (skb->len).
    pub len: u32,
    pub mac_header: u16,
    pub network_header: u16,
    /// The end of the linear data, as an offset from `head`.
    pub tail: u32,
    /// The EtherType, in host order.
    pub protocol: u16,
    pub ifindex: u32,
    pub netns: u32,
    pub bytes: [u8; WINDOW],
}

/// The field offsets of [`DropRecord`] within a record, for the program
/// that writes it.
pub mod at {
    pub const REASON: i16 = 0;
    pub const LOCATION: i16 = 8;
    pub const DEV: i16 = 16;
    pub const HEAD: i16 = 24;
    pub const DATA: i16 = 32;
    pub const LEN: i16 = 40;
    pub const MAC_HEADER: i16 = 44;
    pub const NETWORK_HEADER: i16 = 46;
    pub const TAIL: i16 = 48;
    pub const PROTOCOL: i16 = 52;
    pub const PAD: i16 = 54;
    pub const IFINDEX: i16 = 56;
    pub const NETNS: i16 = 60;
    pub const NET: i16 = 64;
    pub const BYTES: i16 = 72;
}

impl DropRecord {
    /// Reads a record; `None` when it is shorter than [`RECORD_SIZE`].
    pub fn parse(b: &[u8]) -> Option<DropRecord> {
        if b.len() < RECORD_SIZE {
            return None;
        }
        let u64_at = |o: i16| u64::from_ne_bytes(b[o as usize..o as usize + 8].try_into().unwrap());
        let u32_at = |o: i16| u32::from_ne_bytes(b[o as usize..o as usize + 4].try_into().unwrap());
        let u16_at = |o: i16| u16::from_ne_bytes(b[o as usize..o as usize + 2].try_into().unwrap());
        Some(DropRecord {
            reason: u64_at(at::REASON) as u32,
            location: u64_at(at::LOCATION),
            head: u64_at(at::HEAD),
            data: u64_at(at::DATA),
            len: u32_at(at::LEN),
            mac_header: u16_at(at::MAC_HEADER),
            network_header: u16_at(at::NETWORK_HEADER),
            tail: u32_at(at::TAIL),
            protocol: u16::from_be_bytes(b[52..54].try_into().unwrap()),
            ifindex: u32_at(at::IFINDEX),
            netns: u32_at(at::NETNS),
            bytes: b[HEADER..RECORD_SIZE].try_into().unwrap(),
        })
    }

    /// The packet's headers as copied and how to read them. The copy starts
    /// at the link header when the kernel set one (else at `data`); where
    /// the network header is 14 bytes further it is Ethernet, and otherwise
    /// the bytes from the network header on are read as raw IP. Only what
    /// lies before `tail` is the packet's.
    pub fn packet(&self) -> (Link, &[u8]) {
        let data_at = self.data.saturating_sub(self.head);
        let start = if self.mac_header != UNSET {
            u64::from(self.mac_header)
        } else {
            data_at
        };
        let net = if self.network_header != UNSET {
            u64::from(self.network_header)
        } else {
            data_at
        };
        let valid = u64::from(self.tail)
            .saturating_sub(start)
            .min(WINDOW as u64) as usize;
        let bytes = &self.bytes[..valid];
        match net.checked_sub(start) {
            Some(14) => (Link::Ethernet, bytes),
            Some(n) if (n as usize) < valid => (Link::RawIp, &bytes[n as usize..]),
            _ => (Link::RawIp, bytes),
        }
    }
}

/// One packet the kernel dropped, named and placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelDrop {
    /// The kernel's reason (`NETFILTER_DROP`, `IP_INNOROUTES`, ...).
    pub reason: String,
    /// The function that freed it (`nf_hook_slow`), from kallsyms.
    pub function: String,
    /// The EtherType of the packet (2048 for IPv4).
    pub protocol: u16,
    /// The inode of the network namespace of the device it was on (what
    /// `ls -iL /run/netns` shows); 0 when it had no device.
    pub netns: u32,
    /// That device's index in its namespace; 0 when it had none.
    pub ifindex: u32,
    /// When it was read, nanoseconds since the epoch (within the reader's
    /// 10 ms poll of the kernel's queue).
    pub ts_nanos: u64,
    /// How to read `header`.
    pub link: Link,
    /// The packet's first bytes (up to [`WINDOW`]).
    #[serde(with = "crate::wire_bytes")]
    pub header: Vec<u8>,
}

impl KernelDrop {
    /// A record named: the reason from the kernel's enum (its number when
    /// the enum does not list it), the function from kallsyms.
    pub fn from_record(
        r: &DropRecord,
        reasons: &BTreeMap<u32, String>,
        symbols: &Symbols,
        ts_nanos: u64,
    ) -> KernelDrop {
        let (link, bytes) = r.packet();
        KernelDrop {
            reason: reasons
                .get(&r.reason)
                .cloned()
                .unwrap_or_else(|| format!("reason {}", r.reason)),
            function: symbols
                .function(r.location)
                .map(str::to_string)
                .unwrap_or_else(|| format!("0x{:x}", r.location)),
            protocol: r.protocol,
            netns: r.netns,
            ifindex: r.ifindex,
            ts_nanos,
            link,
            header: bytes.to_vec(),
        }
    }

    /// The headers decoded, as a captured frame would be.
    pub fn frame(&self, vxlan_ports: &[u16]) -> Frame {
        decode_link(&self.header, self.link, vxlan_ports)
    }
}

/// The kernel's reason names by number, from its `enum skb_drop_reason`
/// (`SKB_DROP_REASON_NETFILTER_DROP` is shown as the tracepoint shows it,
/// `NETFILTER_DROP`).
pub fn reason_names(members: impl IntoIterator<Item = (String, u32)>) -> BTreeMap<u32, String> {
    members
        .into_iter()
        .map(|(name, n)| {
            let short = name
                .strip_prefix("SKB_DROP_REASON_")
                .unwrap_or(&name)
                .to_string();
            (n, short)
        })
        .collect()
}

/// The number the running kernel gives reason `name`.
pub fn reason_number(names: &BTreeMap<u32, String>, name: &str) -> Option<u32> {
    names.iter().find(|(_, n)| *n == name).map(|(k, _)| *k)
}

/// The kernel's text symbols by address (`/proc/kallsyms`), to name the
/// function a code address lies in.
#[derive(Debug, Default, Clone)]
pub struct Symbols {
    by_address: Vec<(u64, String)>,
}

impl Symbols {
    /// From kallsyms' text: `ffffffff81a0c6b0 T nf_hook_slow`, with module
    /// symbols' `[module]` tails ignored. Addresses of zero (what an
    /// unprivileged reader sees) are left out, so such a table is empty.
    pub fn parse(text: &str) -> Symbols {
        let mut by_address: Vec<(u64, String)> = text
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let addr = u64::from_str_radix(f.next()?, 16).ok()?;
                let kind = f.next()?;
                let name = f.next()?;
                (addr != 0 && matches!(kind, "T" | "t")).then(|| (addr, name.to_string()))
            })
            .collect();
        by_address.sort_unstable();
        Symbols { by_address }
    }

    /// Whether there are any (an unprivileged read has none).
    pub fn is_empty(&self) -> bool {
        self.by_address.is_empty()
    }

    /// The function `addr` lies in: the last symbol at or before it.
    pub fn function(&self, addr: u64) -> Option<&str> {
        let i = self.by_address.partition_point(|(a, _)| *a <= addr);
        i.checked_sub(1).map(|i| self.by_address[i].1.as_str())
    }
}

/// How many drops of one reason at one place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropCount {
    pub reason: String,
    pub function: String,
    pub count: usize,
}

/// The drops by reason and function, most frequent first.
pub fn tally<'a>(drops: impl IntoIterator<Item = &'a KernelDrop>) -> Vec<DropCount> {
    let mut counts: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for d in drops {
        *counts.entry((&d.reason, &d.function)).or_default() += 1;
    }
    let mut out: Vec<DropCount> = counts
        .into_iter()
        .map(|((reason, function), count)| DropCount {
            reason: reason.to_string(),
            function: function.to_string(),
            count,
        })
        .collect();
    out.sort_by_key(|c| std::cmp::Reverse(c.count));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::test_frames;

    fn record(mac: u16, net: u16, data_at: u64, tail: u32, bytes: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; RECORD_SIZE];
        let mut put = |o: i16, v: &[u8]| b[o as usize..o as usize + v.len()].copy_from_slice(v);
        put(at::REASON, &12u64.to_ne_bytes());
        put(at::LOCATION, &0xffff_ffff_81a0_c746u64.to_ne_bytes());
        put(at::HEAD, &0x1000u64.to_ne_bytes());
        put(at::DATA, &(0x1000 + data_at).to_ne_bytes());
        put(at::LEN, &84u32.to_ne_bytes());
        put(at::MAC_HEADER, &mac.to_ne_bytes());
        put(at::NETWORK_HEADER, &net.to_ne_bytes());
        put(at::TAIL, &tail.to_ne_bytes());
        put(at::PROTOCOL, &0x0800u16.to_be_bytes());
        put(at::IFINDEX, &7u32.to_ne_bytes());
        put(at::NETNS, &4026532301u32.to_ne_bytes());
        let n = bytes.len().min(WINDOW);
        b[HEADER..HEADER + n].copy_from_slice(&bytes[..n]);
        b
    }

    /// What `/proc/kallsyms` says on this machine (6.18), in part.
    const KALLSYMS: &str = "ffffffff81a0c6b0 T nf_hook_slow\nffffffff81a0c7a0 T nf_hook_slow_list\n0000000000000000 T hidden\nffffffff81b1d2c0 t ip_forward\nffffffff81b1d9f0 T ip_forward_finish\nffffffffc0a01000 t vxlan_xmit\t[vxlan]\nffffffff82000000 D some_data\n";

    #[test]
    fn a_record_is_read_named_and_decoded_as_ethernet() {
        let eth = test_frames::icmp_echo([10, 2, 0, 5], [10, 1, 0, 7], 4242);
        let raw = record(64, 78, 78, 64 + eth.len() as u32, &eth);
        let r = DropRecord::parse(&raw).unwrap();
        assert_eq!(
            (r.reason, r.ifindex, r.netns, r.protocol),
            (12, 7, 4026532301, 0x0800)
        );
        let reasons = reason_names([
            ("SKB_DROP_REASON_NOT_SPECIFIED".to_string(), 2),
            ("SKB_DROP_REASON_NETFILTER_DROP".to_string(), 12),
        ]);
        assert_eq!(reason_number(&reasons, "NOT_SPECIFIED"), Some(2));
        let d = KernelDrop::from_record(&r, &reasons, &Symbols::parse(KALLSYMS), 5);
        assert_eq!(
            (d.reason.as_str(), d.function.as_str()),
            ("NETFILTER_DROP", "nf_hook_slow")
        );
        assert_eq!((d.link, d.header.len()), (Link::Ethernet, eth.len()));
        let f = d.frame(&[8472]);
        assert_eq!(f.line(), decode_link(&eth, Link::Ethernet, &[8472]).line());
        assert!(DropRecord::parse(&raw[..RECORD_SIZE - 1]).is_none());
    }

    #[test]
    fn without_a_link_header_the_bytes_from_the_network_header_are_raw_ip() {
        let eth = test_frames::icmp_echo([10, 2, 0, 5], [10, 1, 0, 7], 4242);
        // No link header set, data at the IP header.
        let r = DropRecord::parse(&record(
            UNSET,
            78,
            78,
            78 + eth.len() as u32 - 14,
            &eth[14..],
        ))
        .unwrap();
        let (link, bytes) = r.packet();
        assert_eq!((link, bytes), (Link::RawIp, &eth[14..]));
        // A link header of another length: read from the network header.
        let r = DropRecord::parse(&record(
            60,
            78,
            60,
            60 + eth.len() as u32 + 4,
            &[&[0u8; 4][..], &eth].concat(),
        ))
        .unwrap();
        assert_eq!(r.packet(), (Link::RawIp, &eth[14..]));
        // Only the bytes before tail are the packet's.
        let r = DropRecord::parse(&record(64, 78, 78, 64 + 20, &eth)).unwrap();
        assert_eq!(r.packet().1.len(), 20);
    }

    #[test]
    fn kallsyms_names_the_function_an_address_lies_in() {
        let s = Symbols::parse(KALLSYMS);
        assert_eq!(s.function(0xffff_ffff_81a0_c746), Some("nf_hook_slow"));
        assert_eq!(
            s.function(0xffff_ffff_81b1_d2c0 + 0x3a0),
            Some("ip_forward")
        );
        assert_eq!(s.function(0xffff_ffff_c0a0_1010), Some("vxlan_xmit"));
        assert_eq!(s.function(0x10), None);
        assert!(Symbols::parse("0000000000000000 T nf_hook_slow\n").is_empty());
    }

    #[test]
    fn tally_counts_by_reason_and_function() {
        let d = |reason: &str| KernelDrop {
            reason: reason.into(),
            function: "nf_hook_slow".into(),
            protocol: 0x0800,
            netns: 1,
            ifindex: 2,
            ts_nanos: 0,
            link: Link::RawIp,
            header: Vec::new(),
        };
        let t = tally(&[d("NETFILTER_DROP"), d("NETFILTER_DROP"), d("IP_INNOROUTES")]);
        assert_eq!((t[0].reason.as_str(), t[0].count), ("NETFILTER_DROP", 2));
        assert_eq!(t.len(), 2);
    }
}
