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
    /// The namespace the knetdoctor agent runs in (`None`: the manifest's
    /// default).
    pub agent_namespace: Option<String>,
    /// The kubeconfig cluster and user to use instead of the context's
    /// (kubectl's `--cluster` and `--user`).
    pub cluster: Option<String>,
    pub user: Option<String>,
}

impl LiveSource {
    /// The namespace of the kubeconfig context in use (as kubectl takes
    /// it for names given without one), when the context sets one. Read
    /// from the file alone: no request is made.
    pub fn context_namespace(&self) -> Option<String> {
        let kc = match &self.kubeconfig {
            Some(path) => Kubeconfig::read_from(path).ok()?,
            None => Kubeconfig::read().ok()?,
        };
        let name = self.context.clone().or(kc.current_context.clone())?;
        kc.contexts
            .iter()
            .find(|c| c.name == name)?
            .context
            .as_ref()?
            .namespace
            .clone()
    }

    /// Where to look for the agents.
    pub fn agent_namespace(&self) -> &str {
        self.agent_namespace
            .as_deref()
            .unwrap_or(crate::agent::api::DEFAULT_NAMESPACE)
    }
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

/// Runs `f` to its end on a runtime of its own, from a thread that is
/// not a runtime's (a command's main thread, a worker).
pub fn block_on<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::env(format!("cannot start the async runtime: {e}"), None))?
        .block_on(f)
}

pub async fn client(src: &LiveSource) -> Result<(Client, String)> {
    let options = KubeConfigOptions {
        context: src.context.clone(),
        cluster: src.cluster.clone(),
        user: src.user.clone(),
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
        None if src.context.is_some() || src.cluster.is_some() || src.user.is_some() => {
            Config::from_kubeconfig(&options)
                .await
                .map_err(|e| Error::env(format!("kubeconfig: {e}"), None))?
        }
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

/// The API server refused to list kind `K` to this identity.
fn forbidden<K: Resource>(s: &kube::core::Status) -> Error
where
    K::DynamicType: Default,
{
    Error::env(
        format!(
            "the API server refused to list {} to you: {}",
            K::plural(&Default::default()),
            s.message
        ),
        Some(
            "knetdoctor reads the cluster as `view` does: ask for the knetdoctor-viewer ClusterRole (`knetdoctor agent manifest` defines it) to be bound to you"
                .to_string(),
        ),
    )
}

/// The live cluster kept current by watches: a reflector per kind, driven
/// on a runtime thread of its own for as long as this lives. Each change
/// after the initial lists is announced on the channel given to
/// [`Reflected::start`]; [`Reflected::cluster`] copies the stores — no
/// re-list, however often the cluster changes.
pub struct Reflected {
    nodes: reflector::Store<Node>,
    pods: reflector::Store<Pod>,
    services: reflector::Store<Service>,
    ingresses: reflector::Store<Ingress>,
    ingress_classes: reflector::Store<IngressClass>,
    network_policies: reflector::Store<NetworkPolicy>,
    slices: Option<reflector::Store<EndpointSlice>>,
    endpoints: Option<reflector::Store<Endpoints>>,
    config_maps: Vec<reflector::Store<ConfigMap>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Starts a reflector on `api`; its changes (after the initial list) go
/// to `changed`. Returns the store once the initial list is in.
async fn reflect<K>(
    api: Api<K>,
    url: &str,
    changed: std::sync::mpsc::Sender<()>,
) -> Result<reflector::Store<K>>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let mut stream = Box::pin(reflector(writer, watcher(api, watcher::Config::default())));
    // A refusal of the initial list is final (the watcher would retry it
    // until the timeout): it is reported at once, with what to do.
    let (refused_tx, refused_rx) = tokio::sync::oneshot::channel::<Error>();
    tokio::spawn(async move {
        let mut refused_tx = Some(refused_tx);
        while let Some(event) = stream.next().await {
            if let Err(watcher::Error::InitialListFailed(kube::Error::Api(s))) = &event
                && (s.is_forbidden() || s.code == 401)
                && let Some(tx) = refused_tx.take()
            {
                let _ = tx.send(forbidden::<K>(s));
                return;
            }
            let change = matches!(
                event,
                Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_))
            );
            if change && changed.send(()).is_err() {
                return;
            }
        }
    });
    // A refusal ends the task, and with it the store's writer: the wait
    // ends at once, and the refusal is the reason.
    let ready = tokio::time::timeout(LIST_TIMEOUT, reader.wait_until_ready())
        .await
        .map_err(|_| unreachable("listing timed out", url))?;
    if let Err(e) = ready {
        return Err(refused_rx.await.unwrap_or_else(|_| unreachable(e, url)));
    }
    Ok(reader)
}

impl Reflected {
    /// Connects, lists every kind and keeps watching; blocks until the
    /// initial lists are in.
    pub fn start(src: &LiveSource, changed: std::sync::mpsc::Sender<()>) -> Result<Reflected> {
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let src = src.clone();
        std::thread::spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(Error::env(
                        format!("cannot start the async runtime: {e}"),
                        None,
                    )));
                    return;
                }
            };
            rt.block_on(async move {
                let (stop_tx, stop) = tokio::sync::oneshot::channel();
                match Self::connect(&src, changed, stop_tx).await {
                    Ok(r) => {
                        let _ = ready_tx.send(Ok(r));
                        // The reflectors run until the Reflected is dropped.
                        let _ = stop.await;
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            });
        });
        ready
            .recv()
            .map_err(|_| Error::env("the watch thread ended before the lists were in", None))?
    }

    async fn connect(
        src: &LiveSource,
        changed: std::sync::mpsc::Sender<()>,
        stop: tokio::sync::oneshot::Sender<()>,
    ) -> Result<Reflected> {
        let (client, url) = client(src).await?;
        let ns = &src.namespace;
        let c = || changed.clone();
        let v1_slices = serves_endpointslice_v1(&client).await;
        let mut config_maps = Vec::new();
        for ns in ["kube-system", "kube-flannel"] {
            config_maps.push(reflect(Api::namespaced(client.clone(), ns), &url, c()).await?);
        }
        Ok(Reflected {
            nodes: reflect(Api::all(client.clone()), &url, c()).await?,
            pods: reflect(api(&client, ns), &url, c()).await?,
            services: reflect(api(&client, ns), &url, c()).await?,
            ingresses: reflect(api(&client, ns), &url, c()).await?,
            ingress_classes: reflect(Api::all(client.clone()), &url, c()).await?,
            network_policies: reflect(api(&client, ns), &url, c()).await?,
            slices: if v1_slices {
                Some(reflect(api(&client, ns), &url, c()).await?)
            } else {
                None
            },
            endpoints: if v1_slices {
                None
            } else {
                Some(reflect(api(&client, ns), &url, c()).await?)
            },
            config_maps,
            stop: Some(stop),
        })
    }

    /// The cluster as the watches have it now.
    pub fn cluster(&self) -> Cluster {
        fn all<K: Resource + Clone>(s: &reflector::Store<K>) -> Vec<K>
        where
            K::DynamicType: Eq + Hash + Clone,
        {
            // A store is a hash map: its order changes from one read to
            // the next. By namespace and name, every answer reads the same.
            let mut v: Vec<K> = s.state().iter().map(|o| (**o).clone()).collect();
            v.sort_by(|a, b| {
                (a.meta().namespace.as_deref(), a.meta().name.as_deref())
                    .cmp(&(b.meta().namespace.as_deref(), b.meta().name.as_deref()))
            });
            v
        }
        // Field by field: the index is the model's own (built on first use).
        let mut c = Cluster::default();
        c.nodes = all(&self.nodes);
        c.pods = all(&self.pods);
        c.services = all(&self.services);
        c.ingresses = all(&self.ingresses);
        c.ingress_classes = all(&self.ingress_classes);
        c.network_policies = all(&self.network_policies);
        c.endpoint_slices = match (&self.slices, &self.endpoints) {
            (Some(s), _) => all(s),
            (None, Some(e)) => all(e).iter().map(convert::endpoints_to_slice).collect(),
            (None, None) => Vec::new(),
        };
        for store in &self.config_maps {
            c.config_maps.extend(
                all(store)
                    .into_iter()
                    .filter(crate::model::cluster::reads_config_map),
            );
        }
        c.invalidate_index();
        c
    }
}

impl Drop for Reflected {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Reads the live cluster once (blocking): the reflectors' initial lists,
/// then they stop.
pub fn load(src: &LiveSource) -> Result<Cluster> {
    let (changed, _) = std::sync::mpsc::channel();
    Ok(Reflected::start(src, changed)?.cluster())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// kubectl's rule: the context in use (--context, else the current
    /// one) names the namespace for names given without one.
    #[test]
    fn the_contexts_namespace_is_the_default_for_bare_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: \"https://10.255.0.1:6443\"}\nusers:\n- name: u\n  user: {token: x}\ncontexts:\n- name: dev\n  context: {cluster: c, user: u, namespace: test-net}\n- name: bare\n  context: {cluster: c, user: u}\ncurrent-context: dev\n",
        )
        .unwrap();
        let src = |context: Option<&str>| LiveSource {
            kubeconfig: Some(path.clone()),
            context: context.map(str::to_string),
            ..Default::default()
        };
        assert_eq!(src(None).context_namespace().as_deref(), Some("test-net"));
        assert_eq!(src(Some("bare")).context_namespace(), None);
        assert_eq!(src(Some("nosuch")).context_namespace(), None);
    }
}
