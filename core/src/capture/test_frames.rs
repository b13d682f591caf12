//! Frames the capture unit tests build: a pod-to-pod ICMP echo and the same
//! frame as flannel carries it over the underlay (VXLAN in UDP 8472).

use etherparse::PacketBuilder;

/// An ICMP echo request `src` -> `dst` with identifier `id`, sequence 1 and
/// 56 bytes of payload (what `ping` sends).
pub fn icmp_echo(src: [u8; 4], dst: [u8; 4], id: u16) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, dst, 64)
        .icmpv4_echo_request(id, 1)
        .write(&mut out, &[0u8; 56])
        .expect("an echo request always serialises");
    out
}

/// `inner` wrapped as flannel's VTEP sends it from node 12 to node 10:
/// VXLAN header with `vni`, UDP 40000 -> 8472.
pub fn in_vxlan(inner: &[u8], vni: u32) -> Vec<u8> {
    let mut payload = vec![0x08, 0, 0, 0];
    payload.extend_from_slice(&vni.to_be_bytes()[1..]);
    payload.push(0);
    payload.extend_from_slice(inner);
    let mut out = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 3], [2, 0, 0, 0, 0, 4])
        .ipv4([192, 168, 56, 12], [192, 168, 56, 10], 64)
        .udp(40000, 8472)
        .write(&mut out, &payload)
        .expect("a UDP datagram always serialises");
    out
}
