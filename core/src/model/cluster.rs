//! The cluster's objects as the API server serves them (k8s-openapi types),
//! and the kubectl-style JSON List files they travel in.

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Node, Pod, Service, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, NetworkPolicy};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use serde::{Deserialize, Serialize};

use super::index::{ClusterIndex, IndexSeed, PodIndex, SliceIndex};
use super::reading::ApiKind;
use super::shared::Objects;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Every object knetdoctor reasons about. Secrets are never part of it.
///
/// Treat it as immutable once built: lookups go through an index that is
/// built on first use (mutating the vectors afterwards needs a fresh Cluster).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Cluster {
    pub nodes: Objects<Node>,
    pub pods: Objects<Pod>,
    pub services: Objects<Service>,
    pub endpoint_slices: Objects<EndpointSlice>,
    pub ingresses: Objects<Ingress>,
    pub ingress_classes: Objects<IngressClass>,
    pub config_maps: Objects<ConfigMap>,
    #[serde(default)]
    pub network_policies: Objects<NetworkPolicy>,
    /// The lists the API server refused to the reader (RBAC): the kinds
    /// above are then incomplete, and the verdicts that read them skipped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unread: Vec<super::reading::Unreadable>,
    #[serde(skip)]
    pub(crate) index: OnceLock<ClusterIndex>,
    /// Index parts taken over from a reading before (its pods' and
    /// nodes' when they are the same objects).
    #[serde(skip)]
    pub(crate) index_seed: IndexSeed,
}

/// The ConfigMaps knetdoctor reads (never Secrets), by namespace and name:
/// the live reader lists only these and `collect` writes only these.
pub const READ_CONFIG_MAPS: [(&str, &str); 6] = [
    ("kube-system", "coredns"),
    ("kube-system", "kube-proxy"),
    ("kube-system", "kubelet-config"),
    ("kube-system", "kubeadm-config"),
    ("kube-flannel", "kube-flannel-cfg"),
    ("kube-system", "kube-flannel-cfg"),
];

/// The same objects (the index, built from them, is left out): how the
/// live path tells a re-read that changed nothing from one that did.
impl PartialEq for Cluster {
    fn eq(&self, other: &Cluster) -> bool {
        self.nodes == other.nodes
            && self.pods == other.pods
            && self.services == other.services
            && self.endpoint_slices == other.endpoint_slices
            && self.ingresses == other.ingresses
            && self.ingress_classes == other.ingress_classes
            && self.config_maps == other.config_maps
            && self.network_policies == other.network_policies
            && self.unread == other.unread
    }
}

/// Calls `each` with every object that differs between `now` and
/// `before` in what `same` compares, matched by namespace and name, and
/// with each object in one only (both versions of one that differs). An
/// object shared by both is the same without a comparison.
fn differing<'a, T: k8s_openapi::Metadata<Ty = ObjectMeta>>(
    now: &'a Objects<T>,
    before: &'a Objects<T>,
    same: impl Fn(&T, &T) -> bool,
    mut each: impl FnMut(&'a T),
) {
    fn key<T: k8s_openapi::Metadata<Ty = ObjectMeta>>(o: &T) -> (&str, &str) {
        let m = o.metadata();
        (
            m.namespace.as_deref().unwrap_or_default(),
            m.name.as_deref().unwrap_or_default(),
        )
    }
    // The live reader brings a list up to date in place, object by
    // object: position by position the objects are the same `Arc`s but
    // for the few that changed, found without a map (hashing 10,000
    // slices' names twice was most of a reading's verdicts). A list whose
    // positions moved (an object added or removed) is matched by name.
    if let Some(replaced) = now.replaced(before)
        // A place that holds another object: matched by name.
        && replaced.iter().all(|(o, b)| key(*o) == key(*b))
    {
        for (o, b) in replaced {
            if !same(o, b) {
                each(o);
                each(b);
            }
        }
        return;
    }
    // Borrowed names: 10,000 EndpointSlices are matched without a copy.
    let by_name: super::index::HashMap<(&str, &str), &Arc<T>> =
        before.shared().map(|o| (key(&**o), o)).collect();
    let mut seen = super::index::HashMap::default();
    for o in now.shared() {
        let k = key(&**o);
        match by_name.get(&k) {
            Some(b) if Arc::ptr_eq(b, o) || same(b, o) => {}
            Some(b) => {
                each(o);
                each(b);
            }
            None => each(o),
        }
        seen.insert(k, ());
    }
    for (k, b) in &by_name {
        if !seen.contains_key(k) {
            each(b);
        }
    }
}

/// What a Service's verdicts read of a pod beside its namespace and name
/// ([`crate::check`]'s `check_service`): the labels its selector matches
/// and the containers whose ports it targets. A kubelet's status write
/// changes neither.
fn service_reads(p: &Pod) -> (Option<&BTreeMap<String, String>>, Option<&Vec<Container>>) {
    (
        p.metadata.labels.as_ref(),
        p.spec.as_ref().map(|s| &s.containers),
    )
}

/// Whether a Service's `selector` matches `pod`'s labels (every pair
/// among them; the namespace is the caller's to compare), as the endpoint
/// controller matches them.
pub fn selects(selector: &BTreeMap<String, String>, pod: &Pod) -> bool {
    let labels = pod.metadata.labels.as_ref();
    (selector.iter()).all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// Whether knetdoctor reads this ConfigMap.
/// A Service's IPv4 ClusterIP: what kube-proxy's IPv4 proxier serves and
/// the overlay carries. A dual-stack Service lists it in `clusterIPs`,
/// perhaps after an IPv6 one (then `clusterIP` is the IPv6 one).
pub fn service_ipv4(spec: &ServiceSpec) -> Option<std::net::Ipv4Addr> {
    spec.cluster_ips
        .iter()
        .flatten()
        .chain(&spec.cluster_ip)
        .find_map(|ip| ip.parse().ok())
}

/// Whether kube-proxy sends traffic to an endpoint: one without a
/// `ready` condition counts as ready, as kube-proxy reads it.
pub fn endpoint_ready(ep: &Endpoint) -> bool {
    ep.conditions.as_ref().and_then(|c| c.ready) != Some(false)
}

/// Every ClusterIP of a Service, as the API lists them (`clusterIPs`,
/// else `clusterIP`); empty for a headless one.
pub fn service_ips(spec: &ServiceSpec) -> Vec<String> {
    match &spec.cluster_ips {
        Some(all) if !all.is_empty() => all.clone(),
        _ => spec.cluster_ip.iter().cloned().collect(),
    }
    .into_iter()
    .filter(|ip| ip != "None")
    .collect()
}

pub fn reads_config_map(cm: &ConfigMap) -> bool {
    READ_CONFIG_MAPS.iter().any(|(ns, name)| {
        cm.metadata.namespace.as_deref() == Some(ns) && cm.metadata.name.as_deref() == Some(name)
    })
}

impl Cluster {
    /// No object of any kind knetdoctor reads.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
            && self.pods.is_empty()
            && self.services.is_empty()
            && self.endpoint_slices.is_empty()
            && self.ingresses.is_empty()
            && self.ingress_classes.is_empty()
            && self.config_maps.is_empty()
            && self.network_policies.is_empty()
    }

    /// The refusal of `kind`'s list, if the API server refused it (in
    /// any scope).
    pub fn refused(&self, kind: super::reading::ApiKind) -> Option<&super::reading::Unreadable> {
        self.unread.iter().find(|u| u.kind == kind)
    }

    /// The kinds whose objects differ from `before`'s; a kind the live
    /// reader kept from `before` (the same [`Shared`]) costs nothing to
    /// compare. A change in what was refused changes every kind (the
    /// verdicts skipped follow it).
    pub fn changed_kinds(&self, before: &Cluster) -> BTreeSet<ApiKind> {
        use ApiKind::*;
        if self.unread != before.unread {
            return ApiKind::ALL.into_iter().collect();
        }
        [
            (Nodes, self.nodes != before.nodes),
            (Pods, self.pods != before.pods),
            (Services, self.services != before.services),
            (Endpoints, self.endpoint_slices != before.endpoint_slices),
            (Ingresses, self.ingresses != before.ingresses),
            (
                IngressClasses,
                self.ingress_classes != before.ingress_classes,
            ),
            (ConfigMaps, self.config_maps != before.config_maps),
            (
                NetworkPolicies,
                self.network_policies != before.network_policies,
            ),
        ]
        .into_iter()
        .filter_map(|(kind, changed)| changed.then_some(kind))
        .collect()
    }

    /// The Services (namespace, name) whose object, EndpointSlices or
    /// selected pods differ from `before`'s in what their verdicts read:
    /// what a change of Services, endpoints or pods touched, for the
    /// verdicts judged per Service. A pod counts for the Services whose
    /// selector matches it, before or now, when its labels or containers
    /// changed (not its status: a kubelet's write touches no Service).
    pub fn changed_services(&self, before: &Cluster) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        if !self.services.same(&before.services) {
            differing(&self.services, &before.services, Service::eq, |s| {
                out.insert(super::index::ns_name(&s.metadata));
            });
        }
        if !self.endpoint_slices.same(&before.endpoint_slices) {
            let service_of = |s: &EndpointSlice| {
                let svc = s.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
                Some((
                    s.metadata.namespace.clone().unwrap_or_default(),
                    svc.clone(),
                ))
            };
            differing(
                &self.endpoint_slices,
                &before.endpoint_slices,
                EndpointSlice::eq,
                |s| out.extend(service_of(s)),
            );
        }
        if !self.pods.same(&before.pods) {
            let mut pods: BTreeMap<&str, Vec<&Pod>> = BTreeMap::new();
            let same = |a: &Pod, b: &Pod| service_reads(a) == service_reads(b);
            differing(&self.pods, &before.pods, same, |p| {
                let ns = p.metadata.namespace.as_deref().unwrap_or_default();
                pods.entry(ns).or_default().push(p);
            });
            // One pass over the Services, however many pods changed.
            if !pods.is_empty() {
                for (ns, name, spec, _) in self.service_specs() {
                    let Some(selector) = spec.selector.as_ref().filter(|s| !s.is_empty()) else {
                        continue;
                    };
                    if pods
                        .get(ns)
                        .is_some_and(|p| p.iter().any(|p| selects(selector, p)))
                    {
                        out.insert((ns.to_string(), name.to_string()));
                    }
                }
            }
        }
        out
    }

    /// Forgets the indexes; call after changing the vectors.
    pub fn invalidate_index(&mut self) {
        self.index = OnceLock::new();
        self.index_seed = IndexSeed::default();
    }

    /// Takes over the index parts of `before` whose objects this cluster
    /// shares (the live reader keeps unchanged kinds): the pods', the
    /// nodes' and the Services', and the slices' while every position
    /// holds a slice of the same Service; when `before` has built its
    /// index.
    pub fn reuse_index_of(&mut self, before: &Cluster) {
        let Some(ix) = before.index.get() else {
            return;
        };
        self.index = OnceLock::new();
        self.index_seed = IndexSeed {
            pods: PodIndex::same_keys(&self.pods, &before.pods).then(|| ix.pods.clone()),
            nodes: self.nodes.same(&before.nodes).then(|| ix.nodes.clone()),
            services: self
                .services
                .same(&before.services)
                .then(|| ix.services.clone()),
            slices: SliceIndex::same_keys(&self.endpoint_slices, &before.endpoint_slices)
                .then(|| ix.slices.clone()),
        };
    }

    /// The kinds whose index this cluster built again rather than took
    /// over from `before` ([`Cluster::reuse_index_of`]): at scale the
    /// pods' is 150,000 pods indexed (~60 ms), and their lines listed
    /// again. Nothing when either index is not built yet.
    pub fn index_built_again(&self, before: &Cluster) -> BTreeSet<ApiKind> {
        let (Some(now), Some(was)) = (self.index.get(), before.index.get()) else {
            return BTreeSet::new();
        };
        [
            (ApiKind::Pods, Arc::ptr_eq(&now.pods, &was.pods)),
            (ApiKind::Nodes, Arc::ptr_eq(&now.nodes, &was.nodes)),
            (ApiKind::Services, Arc::ptr_eq(&now.services, &was.services)),
            (ApiKind::Endpoints, Arc::ptr_eq(&now.slices, &was.slices)),
        ]
        .into_iter()
        .filter_map(|(kind, kept)| (!kept).then_some(kind))
        .collect()
    }

    /// The indexes (built on first use).
    pub fn index(&self) -> &ClusterIndex {
        self.index
            .get_or_init(|| ClusterIndex::build(self, &self.index_seed))
    }

    /// The node named `name`.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.index()
            .nodes
            .node_by_name
            .get(name)
            .map(|i| &self.nodes[*i])
    }

    /// The Pod with this IP.
    pub fn pod_by_ip(&self, ip: &str) -> Option<&Pod> {
        self.index().pods.pod_by_ip.get(ip).map(|i| &self.pods[*i])
    }

    /// The Pod `namespace/name`.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<&Pod> {
        self.index()
            .pods
            .pod_by_name
            .get(&(namespace.to_string(), name.to_string()))
            .map(|i| &self.pods[*i])
    }

    /// The Service `namespace/name`.
    pub fn service(&self, namespace: &str, name: &str) -> Option<&Service> {
        self.index()
            .services
            .service_by_name
            .get(&(namespace.to_string(), name.to_string()))
            .map(|i| &self.services[*i])
    }

    /// The Service answering on ClusterIP `ip`, `port`/`protocol` (TCP, UDP).
    pub fn service_by_vip(&self, ip: &str, port: i32, protocol: &str) -> Option<&Service> {
        self.index()
            .services
            .service_by_vip
            .get(&(
                ip.to_string(),
                format!("{port}/{}", protocol.to_ascii_uppercase()),
            ))
            .map(|i| &self.services[*i])
    }

    /// Every Service that has a namespace, a name and a spec, with them
    /// unpacked (the shape every check and expectation starts from).
    pub fn service_specs(&self) -> impl Iterator<Item = (&str, &str, &ServiceSpec, &Service)> {
        self.services.iter().filter_map(|s| {
            Some((
                s.metadata.namespace.as_deref()?,
                s.metadata.name.as_deref()?,
                s.spec.as_ref()?,
                s,
            ))
        })
    }

    /// Pods in `namespace` whose labels match every pair of `selector`
    /// (an empty selector selects nothing, as for Services).
    pub fn pods_selected<'a>(
        &'a self,
        namespace: &str,
        selector: &BTreeMap<String, String>,
    ) -> Vec<&'a Pod> {
        let ix = self.index();
        let mut lists: Vec<&Vec<usize>> = Vec::new();
        for (k, v) in selector {
            match ix
                .pods
                .pods_by_label
                .get(&(namespace.to_string(), format!("{k}={v}")))
            {
                Some(l) => lists.push(l),
                None => return Vec::new(),
            }
        }
        lists.sort_by_key(|l| l.len());
        let Some((first, rest)) = lists.split_first() else {
            return Vec::new();
        };
        first
            .iter()
            .filter(|i| rest.iter().all(|l| l.binary_search(i).is_ok()))
            .map(|i| &self.pods[*i])
            .collect()
    }

    /// The ConfigMap `namespace/name`.
    pub fn config_map(&self, namespace: &str, name: &str) -> Option<&ConfigMap> {
        self.config_maps.iter().find(|c| {
            c.metadata.namespace.as_deref() == Some(namespace)
                && c.metadata.name.as_deref() == Some(name)
        })
    }

    /// The EndpointSlices of Service `namespace/name` (by the
    /// `kubernetes.io/service-name` label, as kube-proxy finds them).
    pub fn slices_for<'a>(
        &'a self,
        namespace: &str,
        name: &str,
    ) -> impl Iterator<Item = &'a EndpointSlice> + 'a {
        self.index()
            .slices
            .slices_by_service
            .get(&(namespace.to_string(), name.to_string()))
            .into_iter()
            .flatten()
            .map(|i| &self.endpoint_slices[*i])
    }

    /// Ready endpoints (`IP:port`) of one port of Service `namespace/name`,
    /// matched by port name and protocol as kube-proxy matches them; an
    /// endpoint without a `ready` condition counts as ready.
    pub fn ready_endpoints(
        &self,
        namespace: &str,
        name: &str,
        port_name: &str,
        protocol: &str,
    ) -> Vec<String> {
        let mut out = Vec::new();
        for slice in self.slices_for(namespace, name) {
            let port = slice.ports.iter().flatten().find(|p| {
                p.name.as_deref().unwrap_or("") == port_name
                    && p.protocol
                        .as_deref()
                        .unwrap_or("TCP")
                        .eq_ignore_ascii_case(protocol)
            });
            let Some(port_number) = port.and_then(|p| p.port) else {
                continue;
            };
            for ep in &slice.endpoints {
                if !endpoint_ready(ep) {
                    continue;
                }
                out.extend(ep.addresses.iter().map(|a| format!("{a}:{port_number}")));
            }
        }
        out
    }

    /// Pods scheduled on `node`.
    pub fn pods_on<'a>(&'a self, node: &str) -> impl Iterator<Item = &'a Pod> + 'a {
        self.index()
            .pods
            .pods_by_node
            .get(node)
            .into_iter()
            .flatten()
            .map(|i| &self.pods[*i])
    }
}

/// The cluster-wide addressing flannel and kube-proxy are configured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterNetwork {
    /// flannel's `Network` (and kube-proxy's `clusterCIDR`).
    pub cluster_cidr: Ipv4Net,
    /// flannel's `IPv6Network` on a dual-stack cluster (`EnableIPv6`):
    /// read and shown, not checked.
    pub ipv6_cidr: Option<ipnet::Ipv6Net>,
    /// flannel writes nftables' `table ip flannel-ipv4` instead of its
    /// iptables chains (`EnableNFTables`).
    pub nftables: bool,
}

impl ClusterNetwork {
    /// Reads `Network` from flannel's `kube-flannel-cfg` ConfigMap
    /// (`net-conf.json`), in the namespaces flannel is deployed to.
    pub fn from_cluster(cluster: &Cluster) -> Option<Self> {
        #[derive(Deserialize)]
        struct NetConf {
            #[serde(rename = "Network")]
            network: Ipv4Net,
            #[serde(rename = "EnableIPv6", default)]
            enable_ipv6: bool,
            #[serde(rename = "IPv6Network")]
            ipv6_network: Option<ipnet::Ipv6Net>,
            #[serde(rename = "EnableNFTables", default)]
            enable_nftables: bool,
        }
        ["kube-flannel", "kube-system"]
            .iter()
            .filter_map(|ns| cluster.config_map(ns, "kube-flannel-cfg"))
            .filter_map(|cm| cm.data.as_ref()?.get("net-conf.json"))
            .filter_map(|text| serde_json::from_str::<NetConf>(text).ok())
            .map(|c| ClusterNetwork {
                cluster_cidr: c.network,
                ipv6_cidr: c.ipv6_network.filter(|_| c.enable_ipv6),
                nftables: c.enable_nftables,
            })
            .next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::{self, Size};

    fn key(ns: &str, name: &str) -> (String, String) {
        (ns.to_string(), name.to_string())
    }

    /// The Services a change touched, whether the list kept its places
    /// (an object replaced where it was, as the live reader does) or not
    /// (one removed, one added): only theirs, and none for a copy or a
    /// pod's status.
    #[test]
    fn changed_services_names_what_changed_in_place_or_moved() {
        let before = synthetic::cluster(Size {
            nodes: 4,
            pods: 60,
            services: 20,
            endpoints_per_service: 3,
        });
        let svc_of = |c: &Cluster, i: usize| {
            let s = &c.endpoint_slices[i];
            key(
                s.metadata.namespace.as_deref().unwrap(),
                &s.metadata.labels.as_ref().unwrap()[SERVICE_NAME_LABEL],
            )
        };
        // A deep copy of every object: nothing changed.
        let mut now = before.clone();
        now.endpoint_slices = before.endpoint_slices.to_vec().into();
        assert_eq!(now.changed_services(&before), BTreeSet::new());
        // One endpoint NotReady, in place.
        let mut now = before.clone();
        now.endpoint_slices[7].endpoints[0]
            .conditions
            .get_or_insert_default()
            .ready = Some(false);
        assert_eq!(
            now.changed_services(&before),
            BTreeSet::from([svc_of(&before, 7)])
        );
        // One slice removed (every later one moves up a place) and its
        // content unchanged elsewhere: that Service alone.
        let mut now = before.clone();
        now.endpoint_slices.remove(3);
        assert_eq!(
            now.changed_services(&before),
            BTreeSet::from([svc_of(&before, 3)])
        );
        // The same length, two places swapped and one changed.
        let mut slices = before.endpoint_slices.to_vec();
        slices.swap(1, 2);
        slices[5].endpoints.clear();
        let mut now = before.clone();
        now.endpoint_slices = slices.into();
        assert_eq!(
            now.changed_services(&before),
            BTreeSet::from([svc_of(&before, 5)])
        );
        // A pod's status written again (its kubelet's): no Service; its
        // labels gone: the Service that selected it.
        let mut now = before.clone();
        let status = now.pods[5].status.get_or_insert_default();
        status.pod_ip = Some("10.244.9.9".into());
        status.conditions = None;
        assert_eq!(now.changed_services(&before), BTreeSet::new());
        now.pods[5].metadata.labels = None;
        let pod = &before.pods[5].metadata;
        let selected_by = key(
            pod.namespace.as_deref().unwrap(),
            &pod.labels.as_ref().unwrap()["app"],
        );
        assert!(before.service(&selected_by.0, &selected_by.1).is_some());
        assert_eq!(
            now.changed_services(&before),
            BTreeSet::from([selected_by.clone()])
        );
        // A pod removed (the later ones move up): its Service.
        let mut now = before.clone();
        now.pods.remove(5);
        assert_eq!(now.changed_services(&before), BTreeSet::from([selected_by]));
        // A Service changed in place.
        let mut now = before.clone();
        now.services[4].spec.get_or_insert_default().cluster_ip = Some("10.96.9.9".into());
        let s = &before.services[4].metadata;
        assert_eq!(
            now.changed_services(&before),
            BTreeSet::from([key(
                s.namespace.as_deref().unwrap(),
                s.name.as_deref().unwrap()
            )])
        );
    }
}
