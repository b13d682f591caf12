//! Older API shapes turned into the ones the model reasons about, so
//! clusters that serve only them (Kubernetes 1.20 and before, or a dump
//! without EndpointSlices) are understood the same way.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use super::cluster::SERVICE_NAME_LABEL;

/// core/v1 Endpoints as the EndpointSlice the endpointslice controller
/// would mirror it to (addresses ready, notReadyAddresses not ready).
pub fn endpoints_to_slice(ep: &Endpoints) -> EndpointSlice {
    let name = ep.metadata.name.clone().unwrap_or_default();
    let mut labels = BTreeMap::new();
    labels.insert(SERVICE_NAME_LABEL.to_string(), name.clone());
    let mut endpoints = Vec::new();
    let mut ports: Vec<EndpointPort> = Vec::new();
    for subset in ep.subsets.iter().flatten() {
        for p in subset.ports.iter().flatten() {
            let port = EndpointPort {
                name: p.name.clone(),
                port: Some(p.port),
                protocol: p.protocol.clone(),
                ..Default::default()
            };
            if !ports.contains(&port) {
                ports.push(port);
            }
        }
        for (addrs, ready) in [
            (&subset.addresses, true),
            (&subset.not_ready_addresses, false),
        ] {
            for a in addrs.iter().flatten() {
                endpoints.push(Endpoint {
                    addresses: vec![a.ip.clone()],
                    conditions: Some(EndpointConditions {
                        ready: Some(ready),
                        serving: Some(ready),
                        terminating: Some(false),
                    }),
                    node_name: a.node_name.clone(),
                    target_ref: a.target_ref.clone(),
                    ..Default::default()
                });
            }
        }
    }
    EndpointSlice {
        metadata: ObjectMeta {
            namespace: ep.metadata.namespace.clone(),
            name: Some(format!("{name}-from-endpoints")),
            labels: Some(labels),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints,
        ports: Some(ports),
    }
}

/// An `extensions/v1beta1` or `networking.k8s.io/v1beta1` Ingress (backends
/// as `serviceName`/`servicePort`) in the v1 shape.
pub fn ingress_v1beta1(value: &Value) -> Option<Ingress> {
    let metadata: ObjectMeta = serde_json::from_value(value.get("metadata")?.clone()).ok()?;
    let spec = value.get("spec")?;
    let backend = |b: &Value| -> Option<IngressBackend> {
        let name = b.get("serviceName")?.as_str()?.to_string();
        let port = match b.get("servicePort")? {
            Value::Number(n) => ServiceBackendPort {
                number: n.as_i64().map(|n| n as i32),
                name: None,
            },
            Value::String(s) => match s.parse::<i32>() {
                Ok(n) => ServiceBackendPort {
                    number: Some(n),
                    name: None,
                },
                Err(_) => ServiceBackendPort {
                    number: None,
                    name: Some(s.clone()),
                },
            },
            _ => return None,
        };
        Some(IngressBackend {
            service: Some(IngressServiceBackend {
                name,
                port: Some(port),
            }),
            resource: None,
        })
    };
    let rules = spec.get("rules").and_then(Value::as_array).map(|rules| {
        rules
            .iter()
            .map(|r| IngressRule {
                host: r.get("host").and_then(Value::as_str).map(str::to_string),
                http: r.get("http").map(|h| HTTPIngressRuleValue {
                    paths: h
                        .get("paths")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|p| {
                            Some(HTTPIngressPath {
                                path: p.get("path").and_then(Value::as_str).map(str::to_string),
                                path_type: p
                                    .get("pathType")
                                    .and_then(Value::as_str)
                                    .unwrap_or("ImplementationSpecific")
                                    .to_string(),
                                backend: backend(p.get("backend")?)?,
                            })
                        })
                        .collect(),
                }),
            })
            .collect()
    });
    let class = spec
        .get("ingressClassName")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            metadata
                .annotations
                .as_ref()?
                .get("kubernetes.io/ingress.class")
                .cloned()
        });
    Some(Ingress {
        metadata,
        spec: Some(IngressSpec {
            ingress_class_name: class,
            default_backend: spec.get("backend").and_then(backend),
            rules,
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// EndpointSlices derived from Pods the way the endpoints controller does,
/// for sources that carry no endpoints at all (`kubectl cluster-info dump`):
/// pods in the Service's namespace matching its selector, with an IP; ready
/// when their Ready condition is True; target ports resolved by number or
/// by container port name.
pub fn slices_from_pods(cluster: &super::Cluster) -> Vec<EndpointSlice> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let mut out = Vec::new();
    for (ns, name, spec, _) in cluster.service_specs() {
        let Some(selector) = spec.selector.as_ref().filter(|s| !s.is_empty()) else {
            continue;
        };
        let pods: Vec<_> = cluster
            .pods
            .iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
            .filter(|p| super::cluster::selects(selector, p))
            .filter(|p| p.status.as_ref().and_then(|s| s.pod_ip.as_ref()).is_some())
            .collect();
        let ports: Vec<EndpointPort> = spec
            .ports
            .iter()
            .flatten()
            .filter_map(|sp| {
                let number = match &sp.target_port {
                    Some(IntOrString::Int(n)) => Some(*n),
                    Some(IntOrString::String(named)) => pods.iter().find_map(|p| {
                        p.spec
                            .iter()
                            .flat_map(|s| &s.containers)
                            .flat_map(|c| c.ports.iter().flatten())
                            .find(|cp| cp.name.as_deref() == Some(named.as_str()))
                            .map(|cp| cp.container_port)
                    }),
                    None => Some(sp.port),
                }?;
                Some(EndpointPort {
                    name: Some(sp.name.clone().unwrap_or_default()),
                    port: Some(number),
                    protocol: sp.protocol.clone(),
                    ..Default::default()
                })
            })
            .collect();
        let endpoints = pods
            .iter()
            .map(|p| {
                let ready = p
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                Endpoint {
                    addresses: vec![
                        p.status
                            .as_ref()
                            .and_then(|s| s.pod_ip.clone())
                            .unwrap_or_default(),
                    ],
                    conditions: Some(EndpointConditions {
                        ready: Some(ready),
                        serving: Some(ready),
                        terminating: Some(false),
                    }),
                    node_name: p.spec.as_ref().and_then(|s| s.node_name.clone()),
                    ..Default::default()
                }
            })
            .collect();
        let mut labels = BTreeMap::new();
        labels.insert(SERVICE_NAME_LABEL.to_string(), name.to_string());
        out.push(EndpointSlice {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(format!("{name}-from-pods")),
                labels: Some(labels),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            endpoints,
            ports: Some(ports),
        });
    }
    out
}
