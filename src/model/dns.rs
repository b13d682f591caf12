//! The names CoreDNS's kubernetes plugin answers for the cluster domain:
//! `<svc>.<ns>.svc.<domain>` -> ClusterIP (headless: the ready endpoint
//! IPs), and `a-b-c-d.<ns>.pod.<domain>` -> the pod IP.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::cluster::Cluster;

/// kubelet's default cluster domain.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// One A record.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Record {
    pub name: String,
    pub ip: Ipv4Addr,
}

/// Every A record CoreDNS would serve for `cluster`.
pub fn records(cluster: &Cluster, domain: &str) -> Vec<Record> {
    let mut out = Vec::new();
    for (ns, name, spec, _) in cluster.service_specs() {
        let fqdn = format!("{name}.{ns}.svc.{domain}");
        match spec.cluster_ip.as_deref() {
            Some("None") => {
                for slice in cluster.slices_for(ns, name) {
                    for ep in &slice.endpoints {
                        if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                            continue;
                        }
                        out.extend(
                            ep.addresses
                                .iter()
                                .filter_map(|a| a.parse().ok())
                                .map(|ip| Record {
                                    name: fqdn.clone(),
                                    ip,
                                }),
                        );
                    }
                }
            }
            Some(ip) => {
                if let Ok(ip) = ip.parse() {
                    out.push(Record { name: fqdn, ip });
                }
            }
            None => {}
        }
    }
    for pod in &cluster.pods {
        let (Some(ns), Some(ip)) = (
            pod.metadata.namespace.as_deref(),
            pod.status.as_ref().and_then(|s| s.pod_ip.as_deref()),
        ) else {
            continue;
        };
        if pod.spec.as_ref().and_then(|s| s.host_network) == Some(true) {
            continue;
        }
        if let Ok(addr) = ip.parse::<Ipv4Addr>() {
            out.push(Record {
                name: format!("{}.{ns}.pod.{domain}", ip.replace('.', "-")),
                ip: addr,
            });
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The resolv.conf kubelet writes for a ClusterFirst pod in `namespace`.
pub fn pod_resolv_conf(namespace: &str, cluster_dns: Ipv4Addr, domain: &str) -> String {
    format!(
        "search {namespace}.svc.{domain} svc.{domain} {domain}\nnameserver {cluster_dns}\noptions ndots:5\n"
    )
}
