//! What the live reader keeps of each object it watches: what the
//! verdicts and views read, not the server's bookkeeping. Two reasons, at
//! the scale of a 5,000-node cluster:
//!
//! - a write that changes nothing knetdoctor reads is no change: the
//!   controller manager rewrites Nodes' taints and TTL annotation, and
//!   kubelets their conditions' heartbeats, about ten Nodes a second;
//!   kept whole, each rewrite made the dashboard judge every Node again
//!   (0.75–8.4 s a reading). Trimmed, the rewrite equals what the store
//!   holds and is dropped at the watch;
//! - memory: `managedFields` alone is most of a small object.
//!
//! A Node keeps what flannel's lease and kube-proxy's node addresses are
//! read from ([`super::flannel`], [`super::kube_proxy_nft`]); every other
//! kind keeps all but the bookkeeping. A new verdict that reads another
//! field of a Node adds it here (the test `keeps_what_is_read` fails
//! otherwise, for the fields the tests' clusters set).

use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Node, NodeSpec, NodeStatus, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, NetworkPolicy};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::compact::Compact;

/// The prefix of the Node annotations flannel writes (its lease).
pub const FLANNEL_ANNOTATIONS: &str = "flannel.alpha.coreos.com/";

/// An object as the live reader keeps it.
pub trait Trim {
    /// Drops what no verdict or view reads.
    fn trim(&mut self);
}

/// The server's bookkeeping, which changes on every write:
/// `resourceVersion` and `managedFields` (kubectl leaves the latter out of
/// its output too). The watch keeps its own resource version.
fn bookkeeping(meta: &mut ObjectMeta) {
    meta.resource_version = None;
    meta.managed_fields = None;
}

macro_rules! bookkeeping_only {
    ($($kind:ty),*) => {$(
        impl Trim for $kind {
            fn trim(&mut self) {
                bookkeeping(&mut self.metadata);
            }
        }
    )*};
}

/// The kinds a large cluster has thousands of also give back their lists'
/// spare room ([`Compact`]).
macro_rules! bookkeeping_and_compact {
    ($($kind:ty),*) => {$(
        impl Trim for $kind {
            fn trim(&mut self) {
                bookkeeping(&mut self.metadata);
                self.compact();
            }
        }
    )*};
}

bookkeeping_and_compact!(Pod, Service, EndpointSlice);

bookkeeping_only!(Endpoints, Ingress, IngressClass, NetworkPolicy, ConfigMap);

impl Trim for Node {
    /// Its name and labels, flannel's annotations, its pod CIDRs and
    /// addresses: not its conditions, taints, images or capacity.
    fn trim(&mut self) {
        let m = &mut self.metadata;
        bookkeeping(m);
        if let Some(a) = m.annotations.as_mut() {
            a.retain(|k, _| k.starts_with(FLANNEL_ANNOTATIONS));
        }
        self.spec = self.spec.take().map(|s| NodeSpec {
            pod_cidr: s.pod_cidr,
            pod_cidrs: s.pod_cidrs,
            provider_id: s.provider_id,
            ..Default::default()
        });
        self.status = self.status.take().map(|s| NodeStatus {
            addresses: s.addresses,
            ..Default::default()
        });
        self.compact();
    }
}

#[cfg(test)]
mod tests {
    use super::Trim;
    use crate::check;
    use crate::model::Cluster;

    /// Every verdict on the trimmed cluster is what it is on the whole one.
    fn trimmed(c: &Cluster) -> Cluster {
        let mut t = c.clone();
        t.nodes.iter_mut().for_each(Trim::trim);
        t.pods.iter_mut().for_each(Trim::trim);
        t.services.iter_mut().for_each(Trim::trim);
        t.endpoint_slices.iter_mut().for_each(Trim::trim);
        t.ingresses.iter_mut().for_each(Trim::trim);
        t.ingress_classes.iter_mut().for_each(Trim::trim);
        t.config_maps.iter_mut().for_each(Trim::trim);
        t.network_policies.iter_mut().for_each(Trim::trim);
        Cluster {
            index: Default::default(),
            index_seed: Default::default(),
            ..t
        }
    }

    #[test]
    fn keeps_what_is_read() {
        let (cluster, state) = check::fixtures::seed();
        let states = [("k8s-node-12".to_string(), state)];
        let whole = check::run(&cluster, &states);
        let t = trimmed(&cluster);
        assert_eq!(check::run(&t, &states), whole);
        // The seed's Nodes carry what a kubelet writes: it is gone.
        assert!(
            cluster.nodes[0]
                .status
                .as_ref()
                .is_some_and(|s| s.conditions.is_some())
        );
        let n = &t.nodes[0];
        assert!(n.status.as_ref().is_some_and(|s| s.conditions.is_none()));
        assert!(
            n.metadata
                .annotations
                .iter()
                .flatten()
                .all(|(k, _)| k.starts_with(super::FLANNEL_ANNOTATIONS))
        );
        // A rewrite of a taint and a heartbeat is no change once trimmed.
        let mut rewritten = cluster.nodes[0].clone();
        rewritten.metadata.resource_version = Some("99999".into());
        rewritten.spec.get_or_insert_default().taints = Some(vec![Default::default()]);
        rewritten
            .metadata
            .annotations
            .get_or_insert_default()
            .insert("node.alpha.kubernetes.io/ttl".into(), "15".into());
        rewritten.trim();
        assert_eq!(rewritten, t.nodes[0]);
    }
}
