//! BPF filters from Kubernetes names: the addresses a pod or Service uses,
//! matched plainly (cni0, flannel.1) and inside VXLAN on the underlay,
//! where a `host` filter sees only the nodes' addresses. The inner IPv4
//! source sits 42 bytes past the UDP header (UDP 8 + VXLAN 8 + Ethernet 14
//! + 12) and the destination 46.

use crate::trace::Proto;
use std::net::Ipv4Addr;

/// A filter matching traffic to or from any of `ips`, plain or carried in
/// VXLAN on `vxlan_ports`.
pub fn for_addresses(ips: &[Ipv4Addr], vxlan_ports: &[u16]) -> String {
    if ips.is_empty() {
        // Nothing can match: a filter that says so rather than capturing everything.
        return "less 0".into();
    }
    let plain: Vec<String> = ips.iter().map(|ip| format!("host {ip}")).collect();
    let hex: Vec<String> = ips
        .iter()
        .map(|ip| format!("0x{:08x}", u32::from(*ip)))
        .collect();
    let inner: Vec<String> = hex
        .iter()
        .flat_map(|h| [format!("udp[42:4] = {h}"), format!("udp[46:4] = {h}")])
        .collect();
    let ports: Vec<String> = vxlan_ports
        .iter()
        .map(|p| format!("udp dst port {p}"))
        .collect();
    format!(
        "({}) or (({}) and ({}))",
        plain.join(" or "),
        ports.join(" or "),
        inner.join(" or ")
    )
}

/// A filter for one probe and everything about it: TCP/UDP by its source
/// port either way, ICMP echo by its id, ICMP errors, plain and inside
/// VXLAN (inner IPv4 without options: protocol at udp[39], the transport
/// header at udp[50]).
pub fn for_probe(proto: Proto, tag: u16, vxlan_ports: &[u16]) -> String {
    let (plain, inner) = match proto {
        Proto::Icmp => (
            format!("icmp[4:2] = {tag} or icmp[0] = 3 or icmp[0] = 11"),
            format!("udp[39] = 1 and (udp[54:2] = {tag} or udp[50] = 3 or udp[50] = 11)"),
        ),
        // Every SYN and RST for the moment the probe runs: masquerade may
        // give the SYN another source port (`--random-fully`); it is then
        // recognised by its IP id.
        Proto::Tcp => (
            "tcp[tcpflags] & (tcp-syn|tcp-rst) != 0 or icmp[0] = 3 or icmp[0] = 11".to_string(),
            "(udp[39] = 6 and udp[63] & 0x06 != 0) or (udp[39] = 1 and (udp[50] = 3 or udp[50] = 11))"
                .to_string(),
        ),
        Proto::Udp => (
            format!("udp port {tag} or icmp[0] = 3 or icmp[0] = 11"),
            format!(
                "(udp[39] = 17 and (udp[50:2] = {tag} or udp[52:2] = {tag})) or (udp[39] = 1 and (udp[50] = 3 or udp[50] = 11))"
            ),
        ),
    };
    let ports: Vec<String> = vxlan_ports
        .iter()
        .map(|p| format!("udp dst port {p}"))
        .collect();
    format!("({plain}) or (({}) and ({inner}))", ports.join(" or "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_inside_vxlan() {
        let f = for_addresses(&["10.2.0.42".parse().unwrap()], &[8472]);
        assert_eq!(
            f,
            "(host 10.2.0.42) or ((udp dst port 8472) and (udp[42:4] = 0x0a02002a or udp[46:4] = 0x0a02002a))"
        );
        assert_eq!(for_addresses(&[], &[8472]), "less 0");
    }
}
