//! The live cluster through kube-rs: kubeconfig discovery as kubectl does it
//! (`--kubeconfig`, `$KUBECONFIG`, `~/.kube/config`, in-cluster), `--context`,
//! and for each kind a reflector (list + watch) whose store is snapshotted
//! once its initial list is in. Servers without discovery.k8s.io/v1
//! EndpointSlices (1.20 and before) are read through core/v1 Endpoints.

use std::fmt::Debug;
use std::hash::Hash;
use std::path::PathBuf;
use std::time::Duration;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, NetworkPolicy};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client, Config, Resource};
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::model::reading::{self, ApiKind, Unreadable};
use crate::model::shared::Objects;
use crate::model::trim::Trim;
use crate::model::{Cluster, convert};

/// How to reach the cluster, kubectl-style.
#[derive(Debug, Clone, Default)]
pub struct LiveSource {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    /// Only this namespace's Pods, Services, endpoints and Ingresses (`-n`);
    /// `None` is every namespace (`-A`, the default for checks).
    pub namespace: Option<String>,
    /// The namespace to read when the whole cluster's lists of a kind are
    /// refused (the command's `-n`); `None`: the kubeconfig context's.
    pub namespace_if_refused: Option<String>,
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
        let (_, context) = self.kubeconfig_context()?;
        context.context?.namespace
    }

    /// The kubeconfig and the context in use (`--context`, else the
    /// current one), read from the file alone.
    fn kubeconfig_context(&self) -> Option<(Kubeconfig, kube::config::NamedContext)> {
        let kc = match &self.kubeconfig {
            Some(path) => Kubeconfig::read_from(path).ok()?,
            None => Kubeconfig::read().ok()?,
        };
        let name = self.context.clone().or(kc.current_context.clone())?;
        let context = kc.contexts.iter().find(|c| c.name == name)?.clone();
        Some((kc, context))
    }

    /// The API server this source talks to and the CA it trusts for it
    /// (file or data), from the kubeconfig alone: two kubeconfigs with the
    /// same are the same cluster, whoever their users.
    pub fn server_identity(&self) -> Option<(String, Option<String>)> {
        let (kc, context) = self.kubeconfig_context()?;
        let cluster_name = match &self.cluster {
            Some(c) => c.clone(),
            None => context.context?.cluster,
        };
        let cluster = kc
            .clusters
            .iter()
            .find(|c| c.name == cluster_name)?
            .cluster
            .as_ref()?;
        let ca = cluster
            .certificate_authority
            .clone()
            .or(cluster.certificate_authority_data.clone());
        Some((cluster.server.clone()?, ca))
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
/// How many times in a row the initial list of a kind may fail (the
/// watcher tries again after a back-off: 0.8 s, then 1.6 s) before the
/// reading says so, with the server's last answer. A list that is coming
/// in has no deadline of its own: the client's read timeout (30 s of
/// silence) ends a stalled one. A whole deadline of 60 s ended lists that
/// were only slow — 150,000 pods from a loaded API server, still
/// streaming — as "cannot reach the Kubernetes API".
const LIST_ATTEMPTS: u32 = 3;
/// How long an initial list may take in all before the reading gives up
/// on it: far beyond a loaded API server's 150,000 pods (76 s in the
/// `tui_watch` lab, its 2 cores shared with etcd and three kube-proxies).
const LIST_LIMIT: Duration = Duration::from_secs(600);

/// The API server answers but could not list `kind`: `why`, the last of
/// [`LIST_ATTEMPTS`] failures.
fn list_failed(kind: ApiKind, why: &str, url: &str) -> Error {
    Error::env(
        format!(
            "the Kubernetes API at {url} answers but could not list {kind} ({LIST_ATTEMPTS} attempts): {why}"
        ),
        Some(format!(
            "see the API server's log (and etcd's); `kubectl get {} -A` with the same settings should fail the same way",
            kind.to_string().to_lowercase()
        )),
    )
}

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
    // One cheap request first, so an unreachable server fails fast and
    // clearly. An answer, even a refusal, means the server is there: a 401
    // is about the credentials, a 403 (a cluster that hides /version) is
    // for the lists to tell.
    let answer = tokio::time::timeout(CONNECT_TIMEOUT * 2, client.apiserver_version())
        .await
        .map_err(|_| unreachable("no answer", &url))?;
    match answer {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 401 => return Err(unauthorized(&s.message, &url)),
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        Err(e) => return Err(unreachable(e, &url)),
    }
    Ok((client, url))
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The server did not accept the credentials (401), in its words.
fn unauthorized(message: &str, url: &str) -> Error {
    Error::env(
        format!(
            "the Kubernetes API at {url} did not accept your credentials (401 Unauthorized): {message}"
        ),
        Some(reading::RENEW.to_string()),
    )
}

/// Every list was refused: the identity may read nothing knetdoctor
/// needs. The server's first answer names the user; the hint says what
/// to grant.
fn refused_everything(refused: &[Unreadable], url: &str) -> Error {
    match refused.iter().find(|u| u.code == 401) {
        Some(u) => unauthorized(&u.message, url),
        None => {
            let what: Vec<String> = refused.iter().map(Unreadable::scope).collect();
            Error::env(
                format!(
                    "the Kubernetes API at {url} refused every list knetdoctor needs ({}): {}",
                    what.join(", "),
                    refused.first().map_or("", |u| u.message.as_str())
                ),
                Some(reading::GRANT.to_string()),
            )
        }
    }
}

/// True if the server serves discovery.k8s.io/v1 EndpointSlices.
pub(crate) async fn serves_endpointslice_v1(client: &Client) -> bool {
    client
        .list_api_group_resources("discovery.k8s.io/v1")
        .await
        .is_ok_and(|r| r.resources.iter().any(|x| x.name == "endpointslices"))
}

/// The lists refused so far, by kind and namespace, shared by the
/// reflector tasks: a refusal is recorded when the server answers 403 or
/// 401 and forgotten at the next event (the watcher keeps retrying with
/// its backoff, so a role bound later is picked up without a restart).
type Refusals = Arc<Mutex<BTreeMap<(ApiKind, Option<String>), Unreadable>>>;

/// The server's Status if the watcher's error is a refusal (403, 401).
fn refusal(e: &watcher::Error) -> Option<&kube::core::Status> {
    let s = match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => s,
        watcher::Error::WatchError(s) => s,
        _ => return None,
    };
    (s.code == 403 || s.code == 401).then_some(s)
}

/// The live cluster kept current by watches: a reflector per kind, driven
/// on a runtime thread of its own for as long as this lives. Each change
/// after the initial lists is announced on the channel given to
/// [`Reflected::start`]; [`Reflected::cluster`] copies the stores — no
/// re-list, however often the cluster changes. A list the server refuses
/// leaves its store empty and is said in the cluster's `unread`.
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
    sink: Sink,
    /// The objects last copied out of the stores (no index): a kind no
    /// watch event touched since is shared with the next reading.
    last: Mutex<Option<Cluster>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// An object's namespace (none for a Node) and name.
type Key = (Option<String>, String);

/// Where reflectors report to: the change channel, the refusals, the
/// namespaces read instead of refused cluster-wide lists, and how many
/// lists were answered.
#[derive(Clone)]
struct Sink {
    changed: crate::signal::Signal,
    refusals: Refusals,
    instead: Arc<Mutex<BTreeMap<ApiKind, String>>>,
    listed: Arc<AtomicUsize>,
    /// The kinds whose stores changed since [`Reflected::cluster`] last
    /// copied them (the others are kept, not copied again), each with the
    /// objects that changed (namespace, name), or `None`: read it whole
    /// (a re-list, a refusal).
    dirty: Arc<Mutex<Dirty>>,
}

impl Sink {
    fn new(changed: crate::signal::Signal) -> Sink {
        Sink {
            changed,
            refusals: Arc::default(),
            instead: Arc::default(),
            listed: Arc::default(),
            dirty: Arc::default(),
        }
    }

    /// Whether the list of `kind` in `ns` (or everywhere) is refused now.
    fn refused(&self, kind: ApiKind, ns: Option<&str>) -> bool {
        self.refusals
            .lock()
            .is_ok_and(|r| r.contains_key(&(kind, ns.map(str::to_string))))
    }

    /// The lists refused now, each with the namespace read instead.
    fn unread(&self) -> Vec<Unreadable> {
        let instead = self.instead.lock().map(|i| i.clone()).unwrap_or_default();
        self.refusals
            .lock()
            .map(|r| {
                r.values()
                    .map(|u| Unreadable {
                        read_instead: match u.namespace {
                            None => instead.get(&u.kind).cloned(),
                            Some(_) => None,
                        },
                        ..u.clone()
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The kinds whose stores changed, each with the objects that did
/// (namespace, name), or `None`: the kind is read whole.
type Dirty = BTreeMap<ApiKind, Option<BTreeSet<Key>>>;

/// How a first list ended without its objects.
enum Unlisted {
    /// Refused (401, 403): said in the cluster's `unread`, the store empty.
    Refused,
    /// Failed [`LIST_ATTEMPTS`] times in a row; the last failure.
    Failing(String),
}

/// A failed list in the server's words (its status code, reason and
/// message), or the client's.
fn list_error(e: &watcher::Error) -> String {
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s)) => {
            format!("{} {}: {}", s.code, s.reason, s.message)
        }
        e => e.to_string(),
    }
}

/// Starts a reflector on `api` (kind `kind`, `namespace` or all); its
/// changes (after the initial list) go to the sink. Returns the store once
/// the initial list is in or has been refused: a refusal takes one round
/// trip, not the list timeout.
async fn reflect<K>(
    api: Api<K>,
    kind: ApiKind,
    namespace: Option<&str>,
    url: &str,
    sink: &Sink,
) -> Result<reflector::Store<K>>
where
    K: Resource + Trim + PartialEq + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let (reader, mut writer) = reflector::store();
    // The first list whole, in one answer: as recent as etcd's (what a
    // one-shot `check` needs), which a 1.31+ server serves from its watch
    // cache. Paged by 500, each page after the first came from etcd:
    // 150,000 pods took 300 pages at up to a second each and the list
    // timed out. Each object is kept trimmed ([`Trim`]).
    let mut stream = Box::pin(
        watcher(
            api,
            watcher::Config {
                page_size: None,
                ..Default::default()
            },
        )
        .default_backoff()
        .modify(K::trim),
    );
    let store = reader.clone();
    let key = (kind, namespace.map(str::to_string));
    // The first list's end other than its objects: refused, or failing.
    let (unlisted_tx, unlisted_rx) = tokio::sync::oneshot::channel::<Unlisted>();
    let sink = sink.clone();
    tokio::spawn(async move {
        let mut unlisted_tx = Some(unlisted_tx);
        let mut failed_lists = 0;
        let mut listed_before = false;
        while let Some(event) = stream.next().await {
            // The first list failing again and again (not refused: a 5xx,
            // a timeout) is said once, with the server's last answer.
            match &event {
                Err(e) if !listed_before && refusal(e).is_none() => {
                    failed_lists += 1;
                    if failed_lists >= LIST_ATTEMPTS
                        && let Some(tx) = unlisted_tx.take()
                    {
                        let _ = tx.send(Unlisted::Failing(list_error(e)));
                    }
                }
                // Each attempt starts with `Init`: only objects or the
                // list's end are an answer.
                Ok(watcher::Event::Init) | Err(_) => {}
                Ok(_) => failed_lists = 0,
            }
            // An object written again with nothing kept changed (a Node's
            // taints, a heartbeat): no change to read.
            let news = match &event {
                Ok(watcher::Event::Apply(o)) => store
                    .get(&reflector::ObjectRef::from_obj(o))
                    .is_none_or(|kept| *kept != *o),
                Ok(watcher::Event::Delete(_)) => true,
                _ => false,
            };
            if let Ok(e) = &event {
                writer.apply_watcher_event(e);
            }
            let now_refused = match &event {
                Err(e) => refusal(e).map(|s| Unreadable {
                    kind: key.0,
                    namespace: key.1.clone(),
                    code: s.code,
                    message: s.message.clone(),
                    read_instead: None,
                }),
                Ok(_) => None,
            };
            let was = {
                let Ok(mut r) = sink.refusals.lock() else {
                    return;
                };
                match &now_refused {
                    Some(u) => r.insert(key.clone(), u.clone()).is_some(),
                    None if event.is_ok() => r.remove(&key).is_some(),
                    None => false,
                }
            };
            if now_refused.is_some()
                && let Some(tx) = unlisted_tx.take()
            {
                let _ = tx.send(Unlisted::Refused);
            }
            // A re-list (after a watch expired) replaces the store: a
            // change too, unlike the first list, which the reading starts
            // from.
            let relisted = matches!(event, Ok(watcher::Event::InitDone)) && listed_before;
            listed_before |= matches!(event, Ok(watcher::Event::InitDone));
            let change = relisted || news || now_refused.is_some() != was;
            if !change {
                continue;
            }
            // Marked before the word goes out: the store already holds
            // the change, and the mark stays until a reading copies it.
            let object = match &event {
                Ok(watcher::Event::Apply(o) | watcher::Event::Delete(o)) if !relisted => Some((
                    o.meta().namespace.clone(),
                    o.meta().name.clone().unwrap_or_default(),
                )),
                _ => None,
            };
            // When each change arrived (`KNETDOCTOR_LOG=knetdoctor::watch=trace`;
            // the tui_watch bench splits a change's way to the screen here).
            if let Some((ns, name)) = &object {
                tracing::trace!(target: "knetdoctor::watch", kind = ?key.0, namespace = ns.as_deref().unwrap_or(""), name = name.as_str(), "changed");
            }
            if relisted {
                tracing::debug!(target: "knetdoctor::watch", kind = ?key.0, "re-listed: the next reading copies the kind whole");
            }
            if let Ok(mut d) = sink.dirty.lock() {
                let objects = d.entry(key.0).or_insert_with(|| Some(BTreeSet::new()));
                match (object, objects.as_mut()) {
                    (Some(o), Some(set)) => {
                        set.insert(o);
                    }
                    _ => *objects = None,
                }
            }
            if !sink.changed.send() {
                return;
            }
        }
    });
    // A refusal or failure first: once sent it stays, even if the task has
    // ended since (a one-shot reading drops its change channel). A task
    // that ended without one sent neither.
    let answer = async {
        let unlisted = async {
            match unlisted_rx.await {
                Ok(u) => u,
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            u = unlisted => match u {
                Unlisted::Refused => Ok(false),
                Unlisted::Failing(why) => Err(list_failed(kind, &why, url)),
            },
            r = reader.wait_until_ready() => match r {
                Ok(()) => Ok(true),
                Err(_) => Err(unreachable("the list ended without an answer", url)),
            },
        }
    };
    let listed = tokio::time::timeout(LIST_LIMIT, answer)
        .await
        .map_err(|_| {
            Error::env(
                format!(
                    "the Kubernetes API at {url} has not finished listing {kind} after {} s",
                    LIST_LIMIT.as_secs()
                ),
                Some(format!(
                    "it answers, but slowly: see its load; `kubectl get {} -A` should be as slow",
                    kind.to_string().to_lowercase()
                )),
            )
        })??;
    if listed {
        sink.listed.fetch_add(1, Ordering::Relaxed);
    }
    Ok(reader)
}

/// Reflects a namespaced kind in `ns` (or all namespaces); when the
/// whole cluster's list is refused and `fallback` names a namespace the
/// user may read, that namespace's list stands in, said as such.
async fn reflect_in<K>(
    client: &Client,
    kind: ApiKind,
    ns: Option<&str>,
    fallback: Option<&str>,
    url: &str,
    sink: &Sink,
) -> Result<reflector::Store<K>>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Trim
        + PartialEq
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let store = reflect(api(client, ns), kind, ns, url, sink).await?;
    match (ns, fallback) {
        (None, Some(only)) if sink.refused(kind, None) => {
            if let Ok(mut i) = sink.instead.lock() {
                i.insert(kind, only.to_string());
            }
            reflect(api(client, Some(only)), kind, Some(only), url, sink).await
        }
        _ => Ok(store),
    }
}

impl Reflected {
    /// Connects, lists every kind and keeps watching; blocks until the
    /// initial lists are in.
    pub fn start(src: &LiveSource, changed: crate::signal::Signal) -> Result<Reflected> {
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let src = src.clone();
        let spawned = std::thread::Builder::new()
            .name("kd-watches".into())
            .spawn(move || {
                // Each watch event is on its way to a screen.
                crate::sched::latency_sensitive();
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
        if let Err(e) = spawned {
            return Err(Error::env(
                format!("cannot start the watch thread: {e}"),
                None,
            ));
        }
        ready
            .recv()
            .map_err(|_| Error::env("the watch thread ended before the lists were in", None))?
    }

    async fn connect(
        src: &LiveSource,
        changed: crate::signal::Signal,
        stop: tokio::sync::oneshot::Sender<()>,
    ) -> Result<Reflected> {
        let (client, url) = client(src).await?;
        let sink = Sink::new(changed);
        let ns = src.namespace.as_deref();
        let fallback = src
            .namespace_if_refused
            .clone()
            .or_else(|| src.context_namespace());
        let fb = fallback.as_deref();
        let v1_slices = serves_endpointslice_v1(&client).await;
        let mut config_maps = Vec::new();
        for ns in ["kube-system", "kube-flannel"] {
            let api = Api::namespaced(client.clone(), ns);
            config_maps.push(reflect(api, ApiKind::ConfigMaps, Some(ns), &url, &sink).await?);
        }
        let c = &client;
        let r = Reflected {
            nodes: reflect(Api::all(c.clone()), ApiKind::Nodes, None, &url, &sink).await?,
            pods: reflect_in(c, ApiKind::Pods, ns, fb, &url, &sink).await?,
            services: reflect_in(c, ApiKind::Services, ns, fb, &url, &sink).await?,
            ingresses: reflect_in(c, ApiKind::Ingresses, ns, fb, &url, &sink).await?,
            ingress_classes: reflect(
                Api::all(c.clone()),
                ApiKind::IngressClasses,
                None,
                &url,
                &sink,
            )
            .await?,
            network_policies: reflect_in(c, ApiKind::NetworkPolicies, ns, fb, &url, &sink).await?,
            slices: match v1_slices {
                true => Some(reflect_in(c, ApiKind::Endpoints, ns, fb, &url, &sink).await?),
                false => None,
            },
            endpoints: match v1_slices {
                false => Some(reflect_in(c, ApiKind::Endpoints, ns, fb, &url, &sink).await?),
                true => None,
            },
            config_maps,
            sink: sink.clone(),
            last: Mutex::new(None),
            stop: Some(stop),
        };
        // Nothing at all may be read: that is no answer, partial or not.
        if sink.listed.load(Ordering::Relaxed) == 0 {
            return Err(refused_everything(&sink.unread(), &url));
        }
        Ok(r)
    }

    /// The cluster as the watches have it now: the kinds changed since
    /// the last call brought up to date from their stores (object by
    /// object, where the events said which), the others shared with it.
    pub fn cluster(&self) -> Cluster {
        self.cluster_noting().0
    }

    /// [`Reflected::cluster`], and the kinds it copied whole from their
    /// stores since the last call (a re-list, a refusal): at 150,000 pods
    /// such a copy is most of a reading, which the dashboard's reading
    /// cost says.
    pub fn cluster_noting(&self) -> (Cluster, BTreeSet<ApiKind>) {
        // Taken before the stores are read: a change landing meanwhile is
        // marked again and copied next time.
        let dirty = self
            .sink
            .dirty
            .lock()
            .map(|mut d| std::mem::take(&mut *d))
            .unwrap_or_default();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let kept = last.as_ref();
        // A kind is copied when it changed or nothing was copied before.
        fn fresh<K: Clone>(
            kept: Option<&Cluster>,
            dirty: bool,
            kind: fn(&Cluster) -> &Objects<K>,
            read: impl FnOnce() -> Objects<K>,
        ) -> Objects<K> {
            match kept {
                Some(c) if !dirty => kind(c).clone(),
                _ => read(),
            }
        }
        // A kind read from one store: kept, brought up to date object by
        // object (the ones whose events came), or read whole.
        // (A kind copied whole after the first is noted in `whole`.)
        fn read<K: Resource + Clone>(
            (kind, dirty, whole): (ApiKind, &Dirty, &mut BTreeSet<ApiKind>),
            kept: Option<&Objects<K>>,
            store: &reflector::Store<K>,
        ) -> Objects<K>
        where
            K::DynamicType: Default + Eq + Hash + Clone,
        {
            match (kept, dirty.get(&kind)) {
                (Some(k), None) => k.clone(),
                (Some(k), Some(Some(keys))) => refreshed(k, store, keys),
                (kept, _) => {
                    if kept.is_some() {
                        whole.insert(kind);
                    }
                    Objects::from_shared(all(store))
                }
            }
        }
        use ApiKind as A;
        let d = |k: ApiKind| dirty.contains_key(&k);
        // Field by field: the index is the model's own (built on first use).
        let mut c = Cluster::default();
        let mut whole = BTreeSet::new();
        // Each kind read from its store into its field of `c`.
        macro_rules! read_kind {
            ($($field:ident: $kind:ident),*) => {$(
                c.$field = read((A::$kind, &dirty, &mut whole), kept.map(|c| &c.$field), &self.$field);
            )*};
        }
        read_kind!(
            nodes: Nodes,
            pods: Pods,
            services: Services,
            ingresses: Ingresses,
            ingress_classes: IngressClasses,
            network_policies: NetworkPolicies
        );
        c.endpoint_slices = match &self.slices {
            Some(s) => read(
                (A::Endpoints, &dirty, &mut whole),
                kept.map(|c| &c.endpoint_slices),
                s,
            ),
            None => fresh(
                kept,
                d(A::Endpoints),
                |c| &c.endpoint_slices,
                || match (&self.slices, &self.endpoints) {
                    (Some(s), _) => Objects::from_shared(all(s)),
                    (None, Some(e)) => all(e)
                        .iter()
                        .map(|e| convert::endpoints_to_slice(e))
                        .collect(),
                    (None, None) => Objects::default(),
                },
            ),
        };
        c.config_maps = fresh(
            kept,
            d(A::ConfigMaps),
            |c| &c.config_maps,
            || {
                let read = self.config_maps.iter().flat_map(all);
                Objects::from_shared(
                    read.filter(|c| crate::model::cluster::reads_config_map(c))
                        .collect(),
                )
            },
        );
        c.unread = self.sink.unread();
        *last = Some(c.clone());
        (c, whole)
    }
}

/// Every object of a store, sorted.
fn all<K: Resource + Clone>(s: &reflector::Store<K>) -> Vec<Arc<K>>
where
    K::DynamicType: Eq + Hash + Clone,
{
    // The store's own objects, shared (no copy: 10,000 slices took
    // 137–700 ms to copy at scale). A store is a hash map: its
    // order changes from one read to the next. By namespace and
    // name, every answer reads the same.
    let mut v = s.state();
    v.sort_by(|a, b| {
        (a.meta().namespace.as_deref(), a.meta().name.as_deref())
            .cmp(&(b.meta().namespace.as_deref(), b.meta().name.as_deref()))
    });
    v
}

/// A kind's list after the events for `keys` (namespace, name): `kept`,
/// sorted by namespace and name as [`all`] sorts, with each of those
/// objects as the store holds it now (put in, replaced or taken out): the
/// chunks on their paths copied, none sorted again.
fn refreshed<K: Resource + Clone>(
    kept: &Objects<K>,
    store: &reflector::Store<K>,
    keys: &BTreeSet<Key>,
) -> Objects<K>
where
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let mut v = kept.clone();
    for (ns, name) in keys {
        let at = v.binary_search_by(|o| {
            (o.meta().namespace.as_deref(), o.meta().name.as_deref())
                .cmp(&(ns.as_deref(), Some(name.as_str())))
        });
        let mut r = reflector::ObjectRef::<K>::new(name);
        if let Some(ns) = ns {
            r = r.within(ns);
        }
        match (at, store.get(&r)) {
            (Ok(i), Some(o)) => {
                v.set(i, o);
            }
            (Ok(i), None) => {
                v.remove(i);
            }
            (Err(i), Some(o)) => v.insert(i, o),
            (Err(_), None) => {}
        }
    }
    v
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
    Ok(Reflected::start(src, changed.into())?.cluster())
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

    /// A reading brings a kind up to date from its store object by object:
    /// a pod replaced, one gone, one new, each in its sorted place, every
    /// other the very object the last reading had.
    #[test]
    fn a_kind_is_brought_up_to_date_in_place() {
        let pod = |ns: &str, name: &str, ip: &str| {
            let mut p = Pod::default();
            p.metadata.namespace = Some(ns.into());
            p.metadata.name = Some(name.into());
            p.status.get_or_insert_default().pod_ip = Some(ip.into());
            p
        };
        let (store, mut writer) = reflector::store::<Pod>();
        for i in 0..300 {
            let ns = if i % 2 == 0 { "a" } else { "b" };
            writer.apply_watcher_event(&watcher::Event::Apply(pod(
                ns,
                &format!("p{i:03}"),
                "10.0.0.1",
            )));
        }
        let kept = Objects::from_shared(all(&store));
        writer.apply_watcher_event(&watcher::Event::Apply(pod("a", "p100", "10.0.0.2")));
        writer.apply_watcher_event(&watcher::Event::Delete(pod("b", "p201", "")));
        writer.apply_watcher_event(&watcher::Event::Apply(pod("b", "p150x", "10.0.0.3")));
        let keys: BTreeSet<Key> = [("a", "p100"), ("b", "p201"), ("b", "p150x"), ("a", "never")]
            .iter()
            .map(|(ns, n)| (Some(ns.to_string()), n.to_string()))
            .collect();
        let now = refreshed(&kept, &store, &keys);
        let names = |o: &Objects<Pod>| -> Vec<String> {
            o.iter().map(|p| p.metadata.name.clone().unwrap()).collect()
        };
        assert_eq!(names(&now), names(&Objects::from_shared(all(&store))));
        assert_eq!(now.len(), 300);
        let ip = |name: &str| {
            let p = now
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(name))
                .unwrap();
            p.status.as_ref().unwrap().pod_ip.clone().unwrap()
        };
        assert_eq!(
            (ip("p100"), ip("p150x")),
            ("10.0.0.2".into(), "10.0.0.3".into())
        );
        // Untouched pods are the kept ones, not copies.
        assert!(Arc::ptr_eq(
            now.shared().next().unwrap(),
            kept.shared().next().unwrap()
        ));
        assert!(now.shared().last().unwrap().metadata.name.as_deref() == Some("p299"));
        assert!(Arc::ptr_eq(
            now.shared().last().unwrap(),
            kept.shared().last().unwrap()
        ));
    }
}
