//! The CNI portmap plugin's chains for pods with a `hostPort`, as the
//! flannel CNI chain (flannel -> bridge -> portmap) programs them.

use k8s_openapi::api::core::v1::Pod;
use sha2::{Digest, Sha512};

use crate::dataplane::iptables::Ruleset;

/// Mark bit portmap uses for hairpin masquerade.
const SETMARK: &str = "0x2000/0x2000";

/// One hostPort mapping on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub pod: String,
    pub pod_ip: String,
    pub protocol: String,
    pub host_port: u16,
    pub container_port: u16,
    /// The pod UID (the sandbox id stands in for it in chain names).
    pub id: String,
}

/// The hostPorts of pods that have an IP.
pub fn host_ports<'a>(pods: impl Iterator<Item = &'a Pod>) -> Vec<HostPort> {
    let mut out = Vec::new();
    for pod in pods {
        let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()) else {
            continue;
        };
        let id = pod.metadata.uid.clone().unwrap_or_default();
        for c in pod.spec.iter().flat_map(|s| &s.containers) {
            for p in c.ports.iter().flatten() {
                if let Some(hp) = p.host_port {
                    out.push(HostPort {
                        pod: pod.metadata.name.clone().unwrap_or_default(),
                        pod_ip: ip.clone(),
                        protocol: p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase(),
                        host_port: hp as u16,
                        container_port: p.container_port as u16,
                        id: id.clone(),
                    });
                }
            }
        }
    }
    out
}

/// The CNI network name flannel's CNI config uses.
pub const NETWORK_NAME: &str = "cbr0";

/// `CNI-DN-<hash>`: the per-sandbox DNAT chain, named as the CNI plugins'
/// `MustFormatChainNameWithPrefix` names it: sha512 of network name + sandbox
/// id in hex, the whole name cut to iptables' 28 characters.
pub fn dnat_chain(id: &str) -> String {
    let digest = Sha512::digest(format!("{NETWORK_NAME}{id}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let mut name = format!("CNI-DN-{hex}");
    name.truncate(28);
    name
}

/// Appends the portmap chains for `ports` on a node whose pods live in `pod_cidr`.
pub fn program_iptables(rs: &mut Ruleset, ports: &[HostPort], pod_cidr: &str) {
    if ports.is_empty() {
        return;
    }
    let nat = rs.table_mut("nat");
    nat.append(
        "PREROUTING",
        "-m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
    );
    nat.append(
        "OUTPUT",
        "-m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
    );
    nat.append(
        "POSTROUTING",
        "-m comment --comment \"CNI portfwd requiring masquerade\" -j CNI-HOSTPORT-MASQ",
    );
    nat.append(
        "CNI-HOSTPORT-MASQ",
        format!("-m mark --mark {SETMARK} -j MASQUERADE"),
    );
    nat.append(
        "CNI-HOSTPORT-SETMARK",
        format!(
            "-m comment --comment \"CNI portfwd masquerade mark\" -j MARK --set-xmark {SETMARK}"
        ),
    );
    for hp in ports {
        let chain = dnat_chain(&hp.id);
        let proto = &hp.protocol;
        nat.append(
            "CNI-HOSTPORT-DNAT",
            format!(
                "-p {proto} -m comment --comment \"dnat name: \\\"cbr0\\\" id: \\\"{}\\\"\" -m multiport --dports {} -j {chain}",
                hp.id, hp.host_port
            ),
        );
        let port = format!("-p {proto} -m {proto} --dport {}", hp.host_port);
        nat.append(
            &chain,
            format!("-s {pod_cidr} {port} -j CNI-HOSTPORT-SETMARK"),
        );
        nat.append(
            &chain,
            format!("-s 127.0.0.1/32 {port} -j CNI-HOSTPORT-SETMARK"),
        );
        nat.append(
            &chain,
            format!(
                "{port} -j DNAT --to-destination {}:{}",
                hp.pod_ip, hp.container_port
            ),
        );
    }
}
