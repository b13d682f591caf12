//! Publishing the lab's objects to an API server (`lab up --kubeconfig`),
//! so `check`, `inspect` and `trace` can run live against the lab. Objects
//! are server-side applied, then their status is patched through the status
//! subresource (there is no kubelet). The API server owns default/kubernetes.

use std::collections::BTreeSet;
use std::path::Path;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod, Service, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde::Serialize;
use serde_json::json;

use crate::error::{Error, Result};
use crate::inspect::live::block_on;
use crate::inspect::live::{self, LiveSource};
use crate::model::Cluster;

const MANAGER: &str = "knetdoctor-lab";

fn api_err(what: &str, e: kube::Error) -> Error {
    Error::env(
        format!("publishing the lab to the API server: {what}: {e}"),
        None,
    )
}

async fn apply<K>(api: &Api<K>, name: &str, obj: &K) -> Result<()>
where
    K: kube::Resource + Clone + Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut body = serde_json::to_value(obj).map_err(|e| Error::env(e.to_string(), None))?;
    if let Some(m) = body.as_object_mut() {
        m.remove("status");
    }
    api.patch(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(body),
    )
    .await
    .map_err(|e| api_err(name, e))?;
    Ok(())
}

fn namespaces(c: &Cluster) -> BTreeSet<String> {
    c.pods
        .iter()
        .map(|p| &p.metadata)
        .chain(c.services.iter().map(|s| &s.metadata))
        .chain(c.ingresses.iter().map(|i| &i.metadata))
        .chain(c.config_maps.iter().map(|m| &m.metadata))
        .filter_map(|m| m.namespace.clone())
        .collect()
}

fn is_api_owned(s: &Service) -> bool {
    (s.metadata.namespace.as_deref(), s.metadata.name.as_deref())
        == (Some("default"), Some("kubernetes"))
}

async fn publish_async(c: &Cluster, kubeconfig: &Path) -> Result<()> {
    let (client, _) = live::client(&LiveSource {
        kubeconfig: Some(kubeconfig.to_path_buf()),
        ..Default::default()
    })
    .await?;
    let ns_api: Api<Namespace> = Api::all(client.clone());
    for ns in namespaces(c) {
        let obj = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(ns.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        apply(&ns_api, &ns, &obj).await?;
        // The ServiceAccount admission plugin (on by default) refuses pods
        // whose namespace has no `default` account yet; the controller
        // manager makes it in time, the lab does not wait for it.
        let sa_api: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
        let sa = ServiceAccount {
            metadata: kube::api::ObjectMeta {
                name: Some("default".into()),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        match sa_api.create(&Default::default(), &sa).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(api_err(&format!("{ns}/default service account"), e)),
        }
    }
    let nodes: Api<Node> = Api::all(client.clone());
    for n in &c.nodes {
        let name = n.metadata.name.clone().unwrap_or_default();
        apply(&nodes, &name, n).await?;
        nodes
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": n.status })),
            )
            .await
            .map_err(|e| api_err(&name, e))?;
    }
    for p in &c.pods {
        let (ns, name) = (
            p.metadata.namespace.clone().unwrap_or_default(),
            p.metadata.name.clone().unwrap_or_default(),
        );
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let mut clean = p.clone();
        clean.metadata.uid = None;
        // No kubelet mounts anything: the pods need no API token (servers
        // before 1.22 refuse a pod whose token Secret does not exist yet).
        if let Some(spec) = clean.spec.as_mut() {
            spec.automount_service_account_token = Some(false);
        }
        apply(&api, &name, &clean).await?;
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": p.status })),
        )
        .await
        .map_err(|e| api_err(&name, e))?;
    }
    for s in c.services.iter().filter(|s| !is_api_owned(s)) {
        let api: Api<Service> = Api::namespaced(
            client.clone(),
            s.metadata.namespace.as_deref().unwrap_or_default(),
        );
        apply(&api, s.metadata.name.as_deref().unwrap_or_default(), s).await?;
    }
    // Servers before 1.21 have no discovery/v1: their endpoints controller
    // derives Endpoints from the pods' readiness instead.
    if live::serves_endpointslice_v1(&client).await {
        for s in &c.endpoint_slices {
            let api: Api<EndpointSlice> = Api::namespaced(
                client.clone(),
                s.metadata.namespace.as_deref().unwrap_or_default(),
            );
            apply(&api, s.metadata.name.as_deref().unwrap_or_default(), s).await?;
        }
    }
    let classes: Api<IngressClass> = Api::all(client.clone());
    for ic in &c.ingress_classes {
        apply(
            &classes,
            ic.metadata.name.as_deref().unwrap_or_default(),
            ic,
        )
        .await?;
    }
    for i in &c.ingresses {
        let api: Api<Ingress> = Api::namespaced(
            client.clone(),
            i.metadata.namespace.as_deref().unwrap_or_default(),
        );
        apply(&api, i.metadata.name.as_deref().unwrap_or_default(), i).await?;
    }
    for m in &c.config_maps {
        let api: Api<ConfigMap> = Api::namespaced(
            client.clone(),
            m.metadata.namespace.as_deref().unwrap_or_default(),
        );
        apply(&api, m.metadata.name.as_deref().unwrap_or_default(), m).await?;
    }
    Ok(())
}

/// Applies the lab's objects (and their status) to the API server.
pub fn publish(c: &Cluster, kubeconfig: &Path) -> Result<()> {
    block_on(publish_async(c, kubeconfig))
}

async fn delete<K>(api: Api<K>, name: &str) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api
        .delete(
            name,
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(api_err(name, e)),
    }
}

async fn unpublish_async(c: &Cluster, kubeconfig: &Path) -> Result<()> {
    let (client, _) = live::client(&LiveSource {
        kubeconfig: Some(kubeconfig.to_path_buf()),
        ..Default::default()
    })
    .await?;
    let ns = |m: &kube::api::ObjectMeta| m.namespace.clone().unwrap_or_default();
    for i in &c.ingresses {
        delete(
            Api::<Ingress>::namespaced(client.clone(), &ns(&i.metadata)),
            i.metadata.name.as_deref().unwrap_or_default(),
        )
        .await?;
    }
    for ic in &c.ingress_classes {
        delete(
            Api::<IngressClass>::all(client.clone()),
            ic.metadata.name.as_deref().unwrap_or_default(),
        )
        .await?;
    }
    for s in c.services.iter().filter(|s| !is_api_owned(s)) {
        delete(
            Api::<Service>::namespaced(client.clone(), &ns(&s.metadata)),
            s.metadata.name.as_deref().unwrap_or_default(),
        )
        .await?;
    }
    for s in &c.endpoint_slices {
        delete(
            Api::<EndpointSlice>::namespaced(client.clone(), &ns(&s.metadata)),
            s.metadata.name.as_deref().unwrap_or_default(),
        )
        .await
        .ok();
    }
    for p in &c.pods {
        delete(
            Api::<Pod>::namespaced(client.clone(), &ns(&p.metadata)),
            p.metadata.name.as_deref().unwrap_or_default(),
        )
        .await?;
    }
    for m in &c.config_maps {
        delete(
            Api::<ConfigMap>::namespaced(client.clone(), &ns(&m.metadata)),
            m.metadata.name.as_deref().unwrap_or_default(),
        )
        .await?;
    }
    for n in &c.nodes {
        delete(
            Api::<Node>::all(client.clone()),
            n.metadata.name.as_deref().unwrap_or_default(),
        )
        .await?;
    }
    Ok(())
}

/// Deletes what [`publish`] applied.
pub fn unpublish(c: &Cluster, kubeconfig: &Path) -> Result<()> {
    block_on(unpublish_async(c, kubeconfig))
}
