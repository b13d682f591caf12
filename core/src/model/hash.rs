//! kube-proxy's chain names, computed exactly as kube-proxy computes them.
//!
//! kube-proxy names its per-service chains by hashing the service-port name
//! and protocol (and, for endpoint chains, the endpoint `IP:port`) with
//! sha256, encoding in standard base32 and keeping 16 characters. Above 1000
//! endpoints it drops rule comments, so the hash is the only reliable way to
//! map a chain back to a Service.

use sha2::{Digest, Sha256};

/// `ns/name:port` as kube-proxy's `ServicePortName.String()` prints it; an
/// unnamed port leaves off the `:port` part.
pub fn service_port_name(namespace: &str, name: &str, port_name: &str) -> String {
    if port_name.is_empty() {
        format!("{namespace}/{name}")
    } else {
        format!("{namespace}/{name}:{port_name}")
    }
}

fn hash16(input: &str) -> String {
    let digest = Sha256::digest(input.as_bytes());
    let encoded = data_encoding::BASE32.encode(&digest);
    encoded[..16].to_string()
}

/// The 16-character hash kube-proxy uses for a service port and protocol
/// (protocol lower-case, as kube-proxy passes it).
pub fn port_proto_hash(service_port_name: &str, protocol: &str) -> String {
    hash16(&format!(
        "{service_port_name}{}",
        protocol.to_ascii_lowercase()
    ))
}

/// `KUBE-SVC-<hash>`: the chain that load-balances one service port.
pub fn svc_chain(service_port_name: &str, protocol: &str) -> String {
    format!("KUBE-SVC-{}", port_proto_hash(service_port_name, protocol))
}

/// `KUBE-EXT-<hash>`: the chain for traffic arriving from outside (NodePort).
pub fn ext_chain(service_port_name: &str, protocol: &str) -> String {
    format!("KUBE-EXT-{}", port_proto_hash(service_port_name, protocol))
}

/// `KUBE-SEP-<hash>`: the chain that DNATs to one endpoint (`IP:port`).
pub fn sep_chain(service_port_name: &str, protocol: &str, endpoint: &str) -> String {
    let input = format!(
        "{service_port_name}{}{endpoint}",
        protocol.to_ascii_lowercase()
    );
    format!("KUBE-SEP-{}", hash16(&input))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_kube_proxy_test_vectors() {
        assert_eq!(
            svc_chain("default/kubernetes:https", "tcp"),
            "KUBE-SVC-NPX46M4PTMTKRN6Y"
        );
        assert_eq!(
            svc_chain("kube-system/kube-dns:dns", "UDP"),
            "KUBE-SVC-TCOU7JCQXEZGVUNU"
        );
    }

    #[test]
    fn unnamed_port_has_no_colon() {
        assert_eq!(
            service_port_name("test-svc-ns", "nodeport-service", ""),
            "test-svc-ns/nodeport-service"
        );
    }

    #[test]
    fn endpoint_changes_sep_hash() {
        let a = sep_chain("ns/s:p", "tcp", "10.2.0.42:80");
        let b = sep_chain("ns/s:p", "tcp", "10.2.0.43:80");
        assert_ne!(a, b);
        assert!(a.starts_with("KUBE-SEP-") && a.len() == 25);
    }
}
