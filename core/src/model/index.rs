//! Lookups over the cluster objects, built once: pod by IP, name, node and
//! label; Service by name and by ClusterIP:port; EndpointSlices by Service;
//! node by name; Ingress paths by host. A cluster of 150,000 pods and
//! 10,000 Services is otherwise a quadratic scan away from every check.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use ipnet::Ipv4Net;

use super::cluster::{Cluster, SERVICE_NAME_LABEL};
use super::flannel::Lease;
use super::shared::Objects;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;

type Key = (String, String);

/// The index's maps hash with foldhash: keys are the cluster's own names,
/// not an attacker's, and SipHash was a tenth of indexing 150,000 pods.
pub type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// The same hashing for sets (the views' marks and subjects).
pub type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// Indexes into the vectors of one [`Cluster`] (positions, not copies).
/// The pods', nodes', Services' and slices' parts are shared with the
/// index of the reading before when their objects are (a watch event for
/// one EndpointSlice indexes neither 150,000 pods nor 10,000 Services
/// again): see [`Cluster::reuse_index_of`].
///
/// [`Cluster::reuse_index_of`]: super::Cluster::reuse_index_of
#[derive(Debug, Clone, Default)]
pub struct ClusterIndex {
    pub pods: Arc<PodIndex>,
    pub nodes: Arc<NodeIndex>,
    pub services: Arc<ServiceIndex>,
    pub slices: Arc<SliceIndex>,
    /// host -> (ingress, rule, path) positions.
    pub ingress_paths_by_host: HashMap<String, Vec<(usize, usize, usize)>>,
}

/// Services by name and by ClusterIP and port.
#[derive(Debug, Clone, Default)]
pub struct ServiceIndex {
    pub service_by_name: HashMap<Key, usize>,
    /// (ClusterIP, "port/PROTO") -> Service.
    pub service_by_vip: HashMap<Key, usize>,
}

/// EndpointSlices by their Service (namespace, `kubernetes.io/service-name`).
#[derive(Debug, Clone, Default)]
pub struct SliceIndex {
    pub slices_by_service: HashMap<Key, Vec<usize>>,
}

/// Pods by IP, name, node, label and namespace.
#[derive(Debug, Clone, Default)]
pub struct PodIndex {
    pub pod_by_ip: HashMap<String, usize>,
    pub pod_by_name: HashMap<Key, usize>,
    pub pods_by_node: HashMap<String, Vec<usize>>,
    /// (namespace, "key=value") -> pods carrying that label.
    pub pods_by_label: HashMap<Key, Vec<usize>>,
    pub pods_by_namespace: HashMap<String, Vec<usize>>,
}

/// Nodes by name and address, their flannel leases and pod CIDRs.
#[derive(Debug, Clone, Default)]
pub struct NodeIndex {
    pub node_by_name: HashMap<String, usize>,
    /// flannel leases of the nodes that have one, by node name.
    pub lease_by_node: HashMap<String, Lease>,
    /// node name by flannel public-ip and by InternalIP.
    pub node_by_address: HashMap<IpAddr, String>,
    /// (pod CIDR, node), sorted by network address for lookups by pod IP.
    pub pod_cidrs: Vec<(Ipv4Net, String)>,
}

/// Index parts that may be taken over instead of built.
#[derive(Debug, Clone, Default)]
pub struct IndexSeed {
    pub pods: Option<Arc<PodIndex>>,
    pub nodes: Option<Arc<NodeIndex>>,
    pub services: Option<Arc<ServiceIndex>>,
    pub slices: Option<Arc<SliceIndex>>,
}

/// An object's (namespace, name).
pub(crate) fn ns_name(m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Key {
    (
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
    )
}

impl ClusterIndex {
    /// Builds every index in one pass over each kind (the pods' on one
    /// thread, their labels on another), taking over the parts `seed`
    /// holds.
    pub fn build(c: &Cluster, seed: &IndexSeed) -> Self {
        fn part<T>(seed: &Option<Arc<T>>, build: impl FnOnce() -> T) -> Arc<T> {
            seed.clone().unwrap_or_else(|| Arc::new(build()))
        }
        let mut ix = ClusterIndex {
            pods: part(&seed.pods, || PodIndex::build(c)),
            nodes: part(&seed.nodes, || NodeIndex::build(c)),
            services: part(&seed.services, || ServiceIndex::build(c)),
            slices: part(&seed.slices, || SliceIndex::build(c)),
            ..ClusterIndex::default()
        };
        ix.index_ingresses(c);
        ix
    }
}

impl PodIndex {
    fn build(c: &Cluster) -> Self {
        let (mut ix, labels) = std::thread::scope(|s| {
            let labels = s.spawn(|| Self::pods_by_label(c));
            let mut ix = PodIndex::default();
            ix.index_pods(c);
            (ix, labels.join().expect("indexing labels does not panic"))
        });
        ix.pods_by_label = labels;
        ix
    }

    fn pods_by_label(c: &Cluster) -> HashMap<Key, Vec<usize>> {
        let mut by: HashMap<Key, Vec<usize>> = HashMap::default();
        for (i, p) in c.pods.iter().enumerate() {
            let ns = p.metadata.namespace.as_deref().unwrap_or_default();
            for (k, v) in p.metadata.labels.iter().flatten() {
                by.entry((ns.to_string(), format!("{k}={v}")))
                    .or_default()
                    .push(i);
            }
        }
        by
    }

    fn index_pods(&mut self, c: &Cluster) {
        let ix = self;
        ix.pod_by_ip.reserve(c.pods.len());
        ix.pod_by_name.reserve(c.pods.len());
        for (i, p) in c.pods.iter().enumerate() {
            let key = ns_name(&p.metadata);
            if let Some(ip) = p.status.as_ref().and_then(|s| s.pod_ip.clone()) {
                ix.pod_by_ip.insert(ip, i);
            }
            if let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
                match ix.pods_by_node.get_mut(node) {
                    Some(v) => v.push(i),
                    None => {
                        ix.pods_by_node.insert(node.to_string(), vec![i]);
                    }
                }
            }
            match ix.pods_by_namespace.get_mut(&key.0) {
                Some(v) => v.push(i),
                None => {
                    ix.pods_by_namespace.insert(key.0.clone(), vec![i]);
                }
            }
            ix.pod_by_name.insert(key, i);
        }
    }
}

impl PodIndex {
    /// What the index reads of a pod: its namespace, name and labels,
    /// its IP and its node.
    fn key(p: &Pod) -> PodKey<'_> {
        let m = &p.metadata;
        let ip = p.status.as_ref().and_then(|s| s.pod_ip.as_deref());
        let node = p.spec.as_ref().and_then(|s| s.node_name.as_deref());
        (
            m.namespace.as_deref(),
            m.name.as_deref(),
            m.labels.as_ref(),
            ip,
            node,
        )
    }

    /// Whether `a` and `b` index the same: at every position the same
    /// pod, or one whose name, labels, IP and node are the same (a
    /// kubelet's status write, a pod's most common change, touches none
    /// of them; indexing 150,000 pods again took 60 ms of such a reading).
    pub fn same_keys(a: &Objects<Pod>, b: &Objects<Pod>) -> bool {
        a.same_by(b, |x, y| Self::key(x) == Self::key(y))
    }
}

/// A pod's namespace, name, labels, IP and node ([`PodIndex::key`]).
type PodKey<'a> = (
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a std::collections::BTreeMap<String, String>>,
    Option<&'a str>,
    Option<&'a str>,
);

impl ServiceIndex {
    fn build(c: &Cluster) -> Self {
        let mut ix = ServiceIndex::default();
        for (i, s) in c.services.iter().enumerate() {
            ix.service_by_name.insert(ns_name(&s.metadata), i);
            // Every ClusterIP of a dual-stack Service leads to it.
            for (spec, ip) in s.spec.iter().flat_map(|spec| {
                super::cluster::service_ips(spec)
                    .into_iter()
                    .map(move |ip| (spec, ip))
            }) {
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
        ix
    }
}

impl SliceIndex {
    fn build(c: &Cluster) -> Self {
        let mut ix = SliceIndex::default();
        for (i, s) in c.endpoint_slices.iter().enumerate() {
            if let Some(key) = Self::key(s) {
                ix.slices_by_service
                    .entry((key.0.to_string(), key.1.to_string()))
                    .or_default()
                    .push(i);
            }
        }
        ix
    }

    /// What a slice is indexed by: its namespace and Service.
    fn key(s: &EndpointSlice) -> Option<(&str, &str)> {
        let svc = s.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
        Some((s.metadata.namespace.as_deref().unwrap_or_default(), svc))
    }

    /// Whether `a` and `b` index the same: the same Service at every
    /// position (an endpoint going NotReady changes a slice, not this).
    pub fn same_keys(a: &Objects<EndpointSlice>, b: &Objects<EndpointSlice>) -> bool {
        a.same_by(b, |x, y| Self::key(x) == Self::key(y))
    }
}

impl ClusterIndex {
    fn index_ingresses(&mut self, c: &Cluster) {
        let ix = self;
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
    }
}

impl NodeIndex {
    fn build(c: &Cluster) -> Self {
        let mut ix = NodeIndex::default();
        for (i, n) in c.nodes.iter().enumerate() {
            let name = n.metadata.name.clone().unwrap_or_default();
            ix.node_by_name.insert(name.clone(), i);
            for a in n
                .status
                .iter()
                .flat_map(|s| s.addresses.iter().flatten())
                .filter(|a| a.type_ == "InternalIP")
            {
                if let Ok(ip) = a.address.parse() {
                    ix.node_by_address.insert(ip, name.clone());
                }
            }
            if let Ok(lease) = Lease::from_node(n) {
                ix.node_by_address
                    .insert(IpAddr::V4(lease.public_ip), name.clone());
                ix.pod_cidrs.push((lease.pod_cidr, name.clone()));
                ix.lease_by_node.insert(name, lease);
            }
        }
        ix.pod_cidrs
            .sort_by_key(|(net, _)| (net.network(), std::cmp::Reverse(net.prefix_len())));
        ix
    }

    /// The node whose pod CIDR holds `ip` (the last CIDR starting at or
    /// before it, if it contains it).
    pub fn node_of_pod_ip(&self, ip: Ipv4Addr) -> Option<&str> {
        let i = self
            .pod_cidrs
            .partition_point(|(net, _)| net.network() <= ip);
        self.pod_cidrs[..i]
            .iter()
            .rev()
            .take(2)
            .find(|(net, _)| net.contains(&ip))
            .map(|(_, n)| n.as_str())
    }
}

#[cfg(test)]
mod tests {
    use crate::synthetic::{Size, cluster};

    /// 3 nodes, 12 pods, 4 Services with 2 endpoints each.
    fn small() -> crate::model::Cluster {
        cluster(Size {
            nodes: 3,
            pods: 12,
            services: 4,
            endpoints_per_service: 2,
        })
    }

    /// A reading whose slices changed only in their endpoints keeps the
    /// slices' index; one where a slice moved to another Service builds
    /// it again (and finds the slice under its new Service).
    #[test]
    fn the_slices_index_is_kept_while_every_slice_keeps_its_service() {
        use crate::model::cluster::SERVICE_NAME_LABEL;
        use std::sync::Arc;
        let before = small();
        let built = before.index().slices.clone();
        let mut c = before.clone();
        let e = &mut c.endpoint_slices[1].endpoints[0];
        e.conditions.get_or_insert_with(Default::default).ready = Some(false);
        c.reuse_index_of(&before);
        assert!(Arc::ptr_eq(&c.index().slices, &built), "kept");
        assert!(Arc::ptr_eq(&c.index().services, &before.index().services));
        let mut moved = before.clone();
        let ns = moved.endpoint_slices[1].metadata.namespace.clone().unwrap();
        let labels = moved.endpoint_slices[1].metadata.labels.as_mut().unwrap();
        labels.insert(SERVICE_NAME_LABEL.into(), "elsewhere".into());
        moved.reuse_index_of(&before);
        assert!(!Arc::ptr_eq(&moved.index().slices, &built), "built again");
        assert_eq!(
            moved
                .index()
                .slices
                .slices_by_service
                .get(&(ns, "elsewhere".into())),
            Some(&vec![1])
        );
    }

    /// A pod's status written again keeps the pods' index; its IP
    /// changed builds it again, and finds the pod by its new IP.
    #[test]
    fn the_pods_index_is_kept_while_what_it_reads_is_the_same() {
        use std::sync::Arc;
        let before = small();
        let built = before.index().pods.clone();
        let mut c = before.clone();
        c.pods[3].status.get_or_insert_default().conditions = None;
        c.reuse_index_of(&before);
        assert!(Arc::ptr_eq(&c.index().pods, &built), "kept");
        assert!(c.index_built_again(&before).is_empty(), "every part kept");
        let mut moved = before.clone();
        moved.pods[3].status.get_or_insert_default().pod_ip = Some("10.244.9.9".into());
        moved.reuse_index_of(&before);
        assert!(!Arc::ptr_eq(&moved.index().pods, &built), "built again");
        assert_eq!(
            moved.index_built_again(&before),
            [crate::model::reading::ApiKind::Pods].into()
        );
        assert_eq!(moved.index().pods.pod_by_ip.get("10.244.9.9"), Some(&3));
        let mut relabelled = before.clone();
        relabelled.pods[3].metadata.labels = None;
        relabelled.reuse_index_of(&before);
        assert!(!Arc::ptr_eq(&relabelled.index().pods, &built), "labels");
    }

    #[test]
    fn node_lookups_by_pod_ip_and_address() {
        let c = cluster(Size {
            nodes: 300,
            pods: 600,
            services: 10,
            endpoints_per_service: 3,
        });
        let ix = &c.index().nodes;
        assert_eq!(ix.lease_by_node.len(), 300);
        assert_eq!(
            ix.node_of_pod_ip("100.64.1.7".parse().unwrap()),
            Some("node-00001")
        );
        assert_eq!(
            ix.node_of_pod_ip("100.65.43.9".parse().unwrap()),
            Some("node-00299")
        );
        assert_eq!(ix.node_of_pod_ip("100.66.0.1".parse().unwrap()), None);
        assert_eq!(
            ix.node_by_address
                .get(&"192.168.0.2".parse().unwrap())
                .map(String::as_str),
            Some("node-00001")
        );
    }
}
