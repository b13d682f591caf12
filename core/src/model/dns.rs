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
        records_of_service(cluster, ns, name, spec, domain, &mut out);
    }
    out.extend(cluster.pods.iter().filter_map(|p| pod_record(p, domain)));
    out.sort();
    out.dedup();
    out
}

/// The Services' records of [`records`] only, in its order (no pod's:
/// 150,000 of them at scale, which a list of Service names skips).
pub fn service_records(cluster: &Cluster, domain: &str) -> Vec<Record> {
    let mut out = Vec::new();
    for (ns, name, spec, _) in cluster.service_specs() {
        records_of_service(cluster, ns, name, spec, domain, &mut out);
    }
    out.sort();
    out.dedup();
    out
}

/// The A records of one name, as [`records`] has them, without building
/// the others (a name is looked up among 150,000 pods' names).
pub fn lookup(cluster: &Cluster, fqdn: &str, domain: &str) -> Vec<Record> {
    let mut out = Vec::new();
    let Some(rest) = fqdn
        .trim_end_matches('.')
        .strip_suffix(domain)
        .and_then(|r| r.strip_suffix('.'))
    else {
        return out;
    };
    let mut parts = rest.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(name), Some(ns), Some("svc"), None) => {
            if let Some(spec) = cluster.service(ns, name).and_then(|s| s.spec.as_ref()) {
                records_of_service(cluster, ns, name, spec, domain, &mut out);
            }
        }
        (Some(dashed), Some(ns), Some("pod"), None) => {
            let ip = dashed.replace('-', ".");
            out.extend(
                cluster
                    .pod_by_ip(&ip)
                    .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
                    .and_then(|p| pod_record(p, domain))
                    .filter(|r| r.name == fqdn.trim_end_matches('.')),
            );
        }
        _ => {}
    }
    out.sort();
    out.dedup();
    out
}

/// Whether a Service's name resolves to its endpoints (a headless one,
/// `clusterIP: None`): only then do its records read its EndpointSlices.
pub fn reads_endpoints(spec: &k8s_openapi::api::core::v1::ServiceSpec) -> bool {
    spec.cluster_ip.as_deref() == Some("None")
}

/// `<svc>.<ns>.svc.<domain>`: the ClusterIP, or a headless Service's ready
/// endpoint addresses.
fn records_of_service(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    spec: &k8s_openapi::api::core::v1::ServiceSpec,
    domain: &str,
    out: &mut Vec<Record>,
) {
    let fqdn = format!("{name}.{ns}.svc.{domain}");
    match spec.cluster_ip.as_deref() {
        _ if reads_endpoints(spec) => {
            for slice in cluster.slices_for(ns, name) {
                for ep in &slice.endpoints {
                    if !super::cluster::endpoint_ready(ep) {
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
        // A records: the IPv4 ClusterIP (a dual-stack Service's may come
        // second in `clusterIPs`).
        Some(_) => {
            if let Some(ip) = super::cluster::service_ipv4(spec) {
                out.push(Record { name: fqdn, ip });
            }
        }
        None => {}
    }
}

/// `a-b-c-d.<ns>.pod.<domain>` of a pod not on the host network.
fn pod_record(pod: &k8s_openapi::api::core::v1::Pod, domain: &str) -> Option<Record> {
    let ns = pod.metadata.namespace.as_deref()?;
    let ip = pod.status.as_ref()?.pod_ip.as_deref()?;
    if pod.spec.as_ref().and_then(|s| s.host_network) == Some(true) {
        return None;
    }
    let addr = ip.parse::<Ipv4Addr>().ok()?;
    Some(Record {
        name: format!("{}.{ns}.pod.{domain}", ip.replace('.', "-")),
        ip: addr,
    })
}

/// The resolv.conf kubelet writes for a ClusterFirst pod in `namespace`.
pub fn pod_resolv_conf(namespace: &str, cluster_dns: Ipv4Addr, domain: &str) -> String {
    format!(
        "search {namespace}.svc.{domain} svc.{domain} {domain}\nnameserver {cluster_dns}\noptions ndots:5\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_answers_every_name_as_records_does() {
        let (cluster, _) = crate::check::fixtures::seed();
        let all = records(&cluster, CLUSTER_DOMAIN);
        assert!(all.iter().any(|r| r.name.contains(".pod.")));
        for r in &all {
            let want: Vec<Record> = all.iter().filter(|x| x.name == r.name).cloned().collect();
            assert_eq!(
                lookup(&cluster, &r.name, CLUSTER_DOMAIN),
                want,
                "{}",
                r.name
            );
        }
        for miss in [
            "nope.default.svc.cluster.local",
            "10-9-9-9.default.pod.cluster.local",
            "kubernetes.default.svc.example.org",
            "kubernetes.default.svc",
        ] {
            assert!(lookup(&cluster, miss, CLUSTER_DOMAIN).is_empty(), "{miss}");
        }
    }
}
