//! Decoded objects given back the spare room of their lists. JSON says no
//! list's length before its end, so serde fills each `Vec` by pushing and
//! it ends with room for up to twice what it holds, and for at least four
//! when its items are small: one PodCondition keeps room for four (640 B),
//! one ContainerStatus for four (3 KiB). Over the 150,000 pods of a large
//! cluster that is 75 MiB of the load's 1.1 GiB for the synthetic pods
//! (one condition, one port) and several hundred MiB for real ones (five
//! conditions, a status per container). Giving it back costs a copy of
//! the small lists only.

use k8s_openapi::api::core::v1::{Container, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// An object whose lists can be cut to their length.
pub trait Compact {
    /// Cuts every list the object holds (at any depth that holds many) to
    /// its length.
    fn compact(&mut self);
}

fn fit<T>(v: &mut Vec<T>) {
    v.shrink_to_fit();
}

fn fit_some<T>(v: &mut Option<Vec<T>>) {
    if let Some(v) = v {
        v.shrink_to_fit();
    }
}

fn meta(m: &mut ObjectMeta) {
    fit_some(&mut m.owner_references);
    fit_some(&mut m.finalizers);
    fit_some(&mut m.managed_fields);
}

fn container(c: &mut Container) {
    fit_some(&mut c.ports);
    fit_some(&mut c.env);
    fit_some(&mut c.env_from);
    fit_some(&mut c.volume_mounts);
    fit_some(&mut c.args);
    fit_some(&mut c.command);
}

impl Compact for Pod {
    fn compact(&mut self) {
        meta(&mut self.metadata);
        if let Some(s) = &mut self.spec {
            s.containers.iter_mut().for_each(container);
            fit(&mut s.containers);
            if let Some(init) = &mut s.init_containers {
                init.iter_mut().for_each(container);
                fit(init);
            }
            fit_some(&mut s.volumes);
            fit_some(&mut s.tolerations);
        }
        if let Some(s) = &mut self.status {
            fit_some(&mut s.conditions);
            fit_some(&mut s.container_statuses);
            fit_some(&mut s.init_container_statuses);
            fit_some(&mut s.pod_ips);
            fit_some(&mut s.host_ips);
        }
    }
}

impl Compact for Node {
    fn compact(&mut self) {
        meta(&mut self.metadata);
        if let Some(s) = &mut self.spec {
            fit_some(&mut s.pod_cidrs);
            fit_some(&mut s.taints);
        }
        if let Some(s) = &mut self.status {
            fit_some(&mut s.addresses);
            fit_some(&mut s.conditions);
            fit_some(&mut s.images);
        }
    }
}

impl Compact for Service {
    fn compact(&mut self) {
        meta(&mut self.metadata);
        if let Some(s) = &mut self.spec {
            fit_some(&mut s.ports);
            fit_some(&mut s.cluster_ips);
            fit_some(&mut s.ip_families);
            fit_some(&mut s.external_ips);
        }
    }
}

impl Compact for EndpointSlice {
    fn compact(&mut self) {
        meta(&mut self.metadata);
        for e in &mut self.endpoints {
            fit(&mut e.addresses);
        }
        fit(&mut self.endpoints);
        fit_some(&mut self.ports);
    }
}

#[cfg(test)]
mod tests {
    use super::Compact;
    use k8s_openapi::api::core::v1::Pod;

    /// A pod as serde decodes it holds room for four of each small list;
    /// compacted, exactly what it has, and the same pod.
    #[test]
    fn lists_hold_what_they_have() {
        let json = r#"{"metadata":{"name":"p","namespace":"a"},
            "spec":{"containers":[{"name":"c","ports":[{"containerPort":80}]}]},
            "status":{"conditions":[{"type":"Ready","status":"True"}],
                      "containerStatuses":[{"name":"c","image":"i","imageID":"",
                        "ready":true,"restartCount":0}],
                      "podIPs":[{"ip":"10.244.1.5"}]}}"#;
        let decoded: Pod = serde_json::from_str(json).unwrap();
        let status = decoded.status.as_ref().unwrap();
        // What this test is about: serde leaves spare room.
        assert!(status.conditions.as_ref().unwrap().capacity() > 1);
        let mut pod = decoded.clone();
        pod.compact();
        assert_eq!(pod, decoded);
        let spec = pod.spec.as_ref().unwrap();
        let status = pod.status.as_ref().unwrap();
        let caps = [
            spec.containers.capacity(),
            spec.containers[0].ports.as_ref().unwrap().capacity(),
            status.conditions.as_ref().unwrap().capacity(),
            status.container_statuses.as_ref().unwrap().capacity(),
            status.pod_ips.as_ref().unwrap().capacity(),
        ];
        assert_eq!(caps, [1; 5]);
    }
}
