//! The live cluster through kube-rs: kubeconfig discovery as kubectl does it
//! (`--kubeconfig`, `$KUBECONFIG`, `~/.kube/config`, in-cluster), `--context`,
//! and for each kind a reflector (list + watch) whose store is snapshotted
//! once its initial list is in. Servers without discovery.k8s.io/v1
//! EndpointSlices (1.20 and before) are read through core/v1 Endpoints.

use std::fmt::Debug;
use std::hash::Hash;
use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, NetworkPolicy};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{reflector, watcher};
use kube::{Api, Client, Config, Resource};
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::model::{Cluster, convert};

/// How to reach the cluster, kubectl-style.
#[derive(Debug, Clone, Default)]
pub struct LiveSource {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    /// Only this namespace's Pods, Services, endpoints and Ingresses (`-n`);
    /// `None` is every namespace (`-A`, the default for checks).
    pub namespace: Option<String>,
}

/// How long reaching the API server may take before we say so.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the initial lists may take.
const LIST_TIMEOUT: Duration = Duration::from_secs(60);

fn unreachable(what: impl std::fmt::Display, url: &str) -> Error {
    Error::env(
        format!("cannot reach the Kubernetes API at {url}: {what}"),
        Some("check --kubeconfig / --context (`kubectl cluster-info` should work with the same settings)".to_string()),
    )
}

pub async fn client(src: &LiveSource) -> Result<(Client, String)> {
    let options = KubeConfigOptions {
        context: src.context.clone(),
        ..Default::default()
    };
    let mut config = match &src.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).map_err(|e| {
                Error::env(
                    format!("cannot read kubeconfig {}: {e}", path.display()),
                    None,
                )
            })?;
            Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(|e| {
                    Error::env(
                        format!("kubeconfig {}: {e}", path.display()),
                        Some("check --context".to_string()),
                    )
                })?
        }
        None if src.context.is_some() => Config::from_kubeconfig(&options)
            .await
            .map_err(|e| Error::env(format!("kubeconfig: {e}"), None))?,
        None => Config::infer().await.map_err(|e| {
            Error::env(
                format!("no cluster configured: {e}"),
                Some(
                    "pass --kubeconfig FILE, set $KUBECONFIG, or use --lab / --bundle".to_string(),
                ),
            )
        })?,
    };
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config.read_timeout = Some(Duration::from_secs(30));
    let url = config.cluster_url.to_string();
    let client = Client::try_from(config).map_err(|e| unreachable(e, &url))?;
    // One cheap request first, so an unreachable server fails fast and clearly.
    tokio::time::timeout(CONNECT_TIMEOUT * 2, client.apiserver_version())
        .await
        .map_err(|_| unreachable("no answer", &url))?
        .map_err(|e| unreachable(e, &url))?;
    Ok((client, url))
}

/// Lists and watches `api` until its store holds the initial list, then
/// returns a snapshot.
async fn snapshot<K>(api: Api<K>, url: &str) -> Result<Vec<K>>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let mut stream = Box::pin(reflector(writer, watcher(api, watcher::Config::default())));
    let drive = async {
        loop {
            tokio::select! {
                ready = reader.wait_until_ready() => {
                    ready.map_err(|e| unreachable(e, url))?;
                    return Ok(());
                }
                event = stream.next() => match event {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(unreachable(format!("{} {}: {e}", K::group(&Default::default()), K::kind(&Default::default())), url)),
                    None => return Err(unreachable("the watch ended", url)),
                },
            }
        }
    };
    tokio::time::timeout(LIST_TIMEOUT, drive)
        .await
        .map_err(|_| unreachable("listing timed out", url))??;
    Ok(reader.state().iter().map(|o| (**o).clone()).collect())
}

fn api<K>(client: &Client, namespace: &Option<String>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// True if the server serves discovery.k8s.io/v1 EndpointSlices.
pub(crate) async fn serves_endpointslice_v1(client: &Client) -> bool {
    client
        .list_api_group_resources("discovery.k8s.io/v1")
        .await
        .is_ok_and(|r| r.resources.iter().any(|x| x.name == "endpointslices"))
}

async fn load_async(src: &LiveSource) -> Result<Cluster> {
    let (client, url) = client(src).await?;
    let ns = &src.namespace;
    let mut c = Cluster {
        nodes: snapshot(Api::<Node>::all(client.clone()), &url).await?,
        pods: snapshot(api::<Pod>(&client, ns), &url).await?,
        services: snapshot(api::<Service>(&client, ns), &url).await?,
        ingresses: snapshot(api::<Ingress>(&client, ns), &url).await?,
        ingress_classes: snapshot(Api::<IngressClass>::all(client.clone()), &url).await?,
        network_policies: snapshot(api::<NetworkPolicy>(&client, ns), &url).await?,
        ..Default::default()
    };
    if serves_endpointslice_v1(&client).await {
        c.endpoint_slices = snapshot(api::<EndpointSlice>(&client, ns), &url).await?;
    } else {
        let endpoints: Vec<Endpoints> = snapshot(api::<Endpoints>(&client, ns), &url).await?;
        c.endpoint_slices = endpoints.iter().map(convert::endpoints_to_slice).collect();
    }
    // The configuration knetdoctor reads (never Secrets).
    for (ns, name) in [
        ("kube-system", "coredns"),
        ("kube-system", "kube-proxy"),
        ("kube-system", "kubelet-config"),
        ("kube-system", "kubeadm-config"),
        ("kube-flannel", "kube-flannel-cfg"),
        ("kube-system", "kube-flannel-cfg"),
    ] {
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        if let Some(cm) = cms.get_opt(name).await.map_err(|e| unreachable(e, &url))? {
            c.config_maps.push(cm);
        }
    }
    c.invalidate_index();
    Ok(c)
}

/// Reads the live cluster (blocking; runs its own runtime).
pub fn load(src: &LiveSource) -> Result<Cluster> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::env(format!("cannot start the async runtime: {e}"), None))?;
    rt.block_on(load_async(src))
}
