//! Lookups over the cluster objects, built once: pod by IP, name, node and
//! label; Service by name and by ClusterIP:port; EndpointSlices by Service;
//! node by name; Ingress paths by host. A cluster of 150,000 pods and
//! 10,000 Services is otherwise a quadratic scan away from every check.

use std::collections::HashMap;

use super::cluster::{Cluster, SERVICE_NAME_LABEL};

type Key = (String, String);

/// Indexes into the vectors of one [`Cluster`] (positions, not copies).
#[derive(Debug, Clone, Default)]
pub struct ClusterIndex {
    pub pod_by_ip: HashMap<String, usize>,
    pub pod_by_name: HashMap<Key, usize>,
    pub pods_by_node: HashMap<String, Vec<usize>>,
    /// (namespace, "key=value") -> pods carrying that label.
    pub pods_by_label: HashMap<Key, Vec<usize>>,
    pub pods_by_namespace: HashMap<String, Vec<usize>>,
    pub service_by_name: HashMap<Key, usize>,
    /// (ClusterIP, "port/PROTO") -> Service.
    pub service_by_vip: HashMap<Key, usize>,
    pub slices_by_service: HashMap<Key, Vec<usize>>,
    pub node_by_name: HashMap<String, usize>,
    /// host -> (ingress, rule, path) positions.
    pub ingress_paths_by_host: HashMap<String, Vec<(usize, usize, usize)>>,
}

fn ns_name(m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Key {
    (
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
    )
}

impl ClusterIndex {
    /// Builds every index in one pass over each kind.
    pub fn build(c: &Cluster) -> Self {
        let mut ix = ClusterIndex::default();
        for (i, p) in c.pods.iter().enumerate() {
            let key = ns_name(&p.metadata);
            if let Some(ip) = p.status.as_ref().and_then(|s| s.pod_ip.clone()) {
                ix.pod_by_ip.insert(ip, i);
            }
            if let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone()) {
                ix.pods_by_node.entry(node).or_default().push(i);
            }
            for (k, v) in p.metadata.labels.iter().flatten() {
                ix.pods_by_label
                    .entry((key.0.clone(), format!("{k}={v}")))
                    .or_default()
                    .push(i);
            }
            ix.pods_by_namespace
                .entry(key.0.clone())
                .or_default()
                .push(i);
            ix.pod_by_name.insert(key, i);
        }
        for (i, s) in c.services.iter().enumerate() {
            ix.service_by_name.insert(ns_name(&s.metadata), i);
            if let Some(spec) = &s.spec
                && let Some(ip) = spec.cluster_ip.clone().filter(|ip| ip != "None")
            {
                for p in spec.ports.iter().flatten() {
                    ix.service_by_vip.insert(
                        (
                            ip.clone(),
                            format!("{}/{}", p.port, p.protocol.as_deref().unwrap_or("TCP")),
                        ),
                        i,
                    );
                }
            }
        }
        for (i, s) in c.endpoint_slices.iter().enumerate() {
            if let Some(svc) = s
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
            {
                ix.slices_by_service
                    .entry((
                        s.metadata.namespace.clone().unwrap_or_default(),
                        svc.clone(),
                    ))
                    .or_default()
                    .push(i);
            }
        }
        for (i, n) in c.nodes.iter().enumerate() {
            ix.node_by_name
                .insert(n.metadata.name.clone().unwrap_or_default(), i);
        }
        for (i, ing) in c.ingresses.iter().enumerate() {
            for (r, rule) in ing
                .spec
                .iter()
                .flat_map(|s| s.rules.iter().flatten())
                .enumerate()
            {
                for (p, _) in rule.http.iter().flat_map(|h| &h.paths).enumerate() {
                    ix.ingress_paths_by_host
                        .entry(rule.host.clone().unwrap_or_default())
                        .or_default()
                        .push((i, r, p));
                }
            }
        }
        ix
    }
}
