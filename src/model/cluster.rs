//! The cluster's objects as the API server serves them (k8s-openapi types),
//! and the kubectl-style JSON List files they travel in.

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, NetworkPolicy};
use serde::{Deserialize, Serialize};

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Every object knetdoctor reasons about. Secrets are never part of it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub pods: Vec<Pod>,
    pub services: Vec<Service>,
    pub endpoint_slices: Vec<EndpointSlice>,
    pub ingresses: Vec<Ingress>,
    pub ingress_classes: Vec<IngressClass>,
    pub config_maps: Vec<ConfigMap>,
    #[serde(default)]
    pub network_policies: Vec<NetworkPolicy>,
}

impl Cluster {
    /// The node named `name`.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(name))
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
        namespace: &'a str,
        name: &'a str,
    ) -> impl Iterator<Item = &'a EndpointSlice> + 'a {
        self.endpoint_slices.iter().filter(move |s| {
            s.metadata.namespace.as_deref() == Some(namespace)
                && s.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(SERVICE_NAME_LABEL))
                    .map(String::as_str)
                    == Some(name)
        })
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
                if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                    continue;
                }
                out.extend(ep.addresses.iter().map(|a| format!("{a}:{port_number}")));
            }
        }
        out
    }

    /// Pods scheduled on `node`.
    pub fn pods_on<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a Pod> + 'a {
        self.pods
            .iter()
            .filter(move |p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
    }
}

/// The cluster-wide addressing flannel and kube-proxy are configured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterNetwork {
    /// flannel's `Network` (and kube-proxy's `clusterCIDR`).
    pub cluster_cidr: Ipv4Net,
}

impl ClusterNetwork {
    /// Reads `Network` from flannel's `kube-flannel-cfg` ConfigMap
    /// (`net-conf.json`), in the namespaces flannel is deployed to.
    pub fn from_cluster(cluster: &Cluster) -> Option<Self> {
        #[derive(Deserialize)]
        struct NetConf {
            #[serde(rename = "Network")]
            network: Ipv4Net,
        }
        ["kube-flannel", "kube-system"]
            .iter()
            .filter_map(|ns| cluster.config_map(ns, "kube-flannel-cfg"))
            .filter_map(|cm| cm.data.as_ref()?.get("net-conf.json"))
            .filter_map(|text| serde_json::from_str::<NetConf>(text).ok())
            .map(|c| ClusterNetwork {
                cluster_cidr: c.network,
            })
            .next()
    }
}
