//! `knetdoctor agent`: runs on one node (a DaemonSet's pod, host network),
//! watches only the requests labelled with its node, answers each in its
//! status, and keeps its `NodeAgent` renewed so clients know it is there.
//! It opens no listening socket: every byte goes out to the API server.
//! Node work (netlink, iptables-save, a repair) runs on threads of its own
//! so a slow read never holds up the watches or the heartbeat.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::ResourceExt;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::watcher;

use super::api::{
    Answer, AnswerError, NODE_LABEL, NodeAgent, NodeAgentSpec, NodeAgentStatus, NodePayload,
    NodeRead, NodeRepair, PUBLISHED_LABEL, Phase, ProbeSpec, ReadKind, RepairKind,
};
use super::repair::{PlanSent, RepairAnswer};
use super::wire::{Wire, refused};
use crate::access::target::PodNamespaces;
use crate::access::{InNamespace, NodeAccess};
use crate::capture::dropwatch::owners::Owners;
use crate::dataplane::Netns;
use crate::error::{Error, Result};
use crate::inspect::live::LiveSource;
use crate::repair::{apply, journal};
use crate::trace::probe::station::{self, NodeProbe};

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The node it answers for.
    pub node: String,
    /// The namespace of its kinds.
    pub namespace: String,
    pub live: LiveSource,
    /// Its pod's name (the downward API's `POD_NAME`), for `NodeAgent`.
    pub pod: String,
    pub heartbeat: Duration,
    /// The pods' network namespaces to read (empty: containerd's `cni-*`).
    pub pod_netns: Vec<String>,
    /// Requests older than this are deleted (with their payloads).
    pub ttl: Duration,
    /// Where the node's repair journals are kept.
    pub state_dir: PathBuf,
    /// How often the published state is read again without a kernel
    /// notification (iptables sends none).
    pub publish_every: Duration,
}

/// Runs until SIGTERM or SIGINT; then withdraws its `NodeAgent` so clients
/// see "no agent" at once rather than after three missed heartbeats.
pub fn run(opts: Options) -> Result<u8> {
    // SIGTERM ends the agent through its own shutdown (withdrawn from the
    // cluster, probe tables removed), not a probe's handler.
    crate::trace::probe::nftrace::signals_handled_elsewhere();
    // Two workers: the node work on plain threads reaches the API server
    // through this runtime's handle, so it must drive I/O on its own.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::env(format!("cannot start the async runtime: {e}"), None))?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .map_err(|e| Error::env(format!("cannot watch for signals: {e}"), None))?;
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            let _ = stop_tx.send(());
        }
    });
    let result = rt.block_on(serve(opts, stop_rx));
    crate::trace::probe::nftrace::remove_in_place();
    result
}

async fn serve(opts: Options, stop: tokio::sync::oneshot::Receiver<()>) -> Result<u8> {
    let (client, url) = crate::inspect::live::client(&opts.live).await?;
    let wire = Wire {
        client,
        namespace: opts.namespace.clone(),
    };
    let agent = Arc::new(Agent {
        wire,
        rt: tokio::runtime::Handle::current(),
        incarnation: format!(
            "{}.{}.{}",
            if opts.pod.is_empty() {
                "agent"
            } else {
                &opts.pod
            },
            std::process::id(),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ),
        opts,
        seen: Mutex::new(HashSet::new()),
        stops: Mutex::new(HashMap::new()),
    });
    agent.announce().await?;
    super::publish::spawn(
        agent.rt.clone(),
        agent.wire.clone(),
        agent.node(),
        agent.opts.publish_every,
    );
    tracing::info!(node = %agent.opts.node, server = %url, "agent serving");
    let result = tokio::select! {
        r = agent.clone().heartbeat() => r,
        r = agent.clone().watch::<NodeRead>() => r,
        r = agent.clone().watch::<NodeRepair>() => r,
        r = agent.clone().collect_garbage() => r,
        _ = stop => Ok(()),
    };
    agent.withdraw().await;
    result.map(|()| 0)
}

struct Agent {
    wire: Wire,
    opts: Options,
    /// Requests taken by this process (by UID): a re-list after a watch
    /// restart must not answer one twice.
    seen: Mutex<HashSet<String>>,
    /// The stop flags of the probe watches under way, by request UID.
    stops: Mutex<HashMap<String, Arc<AtomicBool>>>,
    /// The runtime the node work (on threads of its own) reaches the API
    /// server through: one runtime and one connection for the process.
    rt: tokio::runtime::Handle,
    /// This agent process among the node's agents over time: a repair
    /// Lease held by another incarnation was left by an agent that is gone
    /// (one agent runs per node), and is taken over.
    incarnation: String,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// A request kind the agent answers.
trait Request: super::api::Kind {
    fn answer(&self) -> Option<&Answer>;
    /// The work, on a thread of its own.
    fn work(&self, agent: &Agent) -> Result<Vec<u8>>;
    /// Whether the client asks the work under way to stop (a probe's watch).
    fn stop_requested(&self) -> bool {
        false
    }
}

impl Request for NodeRead {
    fn answer(&self) -> Option<&Answer> {
        self.status.as_ref()
    }
    fn work(&self, agent: &Agent) -> Result<Vec<u8>> {
        match self.spec.read {
            ReadKind::State => {
                let state = agent.node().read()?;
                serde_json::to_vec(&state).map_err(|e| Error::internal(e.to_string()))
            }
            ReadKind::Capture => {
                let spec = self.spec.capture.as_ref().ok_or_else(|| {
                    Error::usage("a capture request says nothing of what to capture", None)
                })?;
                let captured = crate::capture::remote::capture_here(spec)?;
                serde_json::to_vec(&captured).map_err(|e| Error::internal(e.to_string()))
            }
            ReadKind::Drops => {
                let spec = self.spec.drops.as_ref().ok_or_else(|| {
                    Error::usage("a drops request says nothing of how long to watch", None)
                })?;
                let node = agent.node();
                let seen =
                    crate::capture::dropwatch::remote::drops_here(spec, &agent.opts.node, &node)?;
                serde_json::to_vec(&seen).map_err(|e| Error::internal(e.to_string()))
            }
            ReadKind::Probe => {
                let spec = self.spec.probe.as_ref().ok_or_else(|| {
                    Error::usage("a probe request says nothing of the probe", None)
                })?;
                let seen = agent.probe(self, spec)?;
                serde_json::to_vec(&seen).map_err(|e| Error::internal(e.to_string()))
            }
        }
    }
    fn stop_requested(&self) -> bool {
        self.spec
            .probe
            .as_ref()
            .is_some_and(|p| p.stop == Some(true))
    }
}

impl Request for NodeRepair {
    fn answer(&self) -> Option<&Answer> {
        self.status.as_ref()
    }
    fn work(&self, agent: &Agent) -> Result<Vec<u8>> {
        let answer = agent.repair(self)?;
        serde_json::to_vec(&answer).map_err(|e| Error::internal(e.to_string()))
    }
}

impl Agent {
    fn node(&self) -> InNamespace {
        InNamespace::this_host_with(&self.opts.node, self.opts.pod_netns.clone())
    }

    fn journals(&self) -> PathBuf {
        journal::journal_dir_in(&self.opts.state_dir, &self.opts.node)
    }

    /// Creates (or takes over) this node's `NodeAgent`.
    async fn announce(&self) -> Result<()> {
        let api = self.wire.api::<NodeAgent>();
        let mut me = NodeAgent::new(
            &self.opts.node,
            NodeAgentSpec {
                node: self.opts.node.clone(),
                pod: self.opts.pod.clone(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                heartbeat_seconds: self.opts.heartbeat.as_secs().max(1) as u32,
            },
        );
        me.metadata.labels = Some([(NODE_LABEL.to_string(), self.opts.node.clone())].into());
        let _ = api.delete(&self.opts.node, &DeleteParams::default()).await;
        api.create(&PostParams::default(), &me)
            .await
            .map_err(|e| refused(e, "announce the agent (nodeagents)"))?;
        self.renew().await
    }

    async fn renew(&self) -> Result<()> {
        let status = NodeAgentStatus {
            renewed: Some(now_secs()),
        };
        self.wire
            .api::<NodeAgent>()
            .patch_status(
                &self.opts.node,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "status": status })),
            )
            .await
            .map(drop)
            .map_err(|e| refused(e, "renew the agent (nodeagents/status)"))
    }

    async fn withdraw(&self) {
        super::publish::withdraw(&self.wire, &self.opts.node).await;
        let _ = self
            .wire
            .api::<NodeAgent>()
            .delete(&self.opts.node, &DeleteParams::default())
            .await;
        tracing::info!(node = %self.opts.node, "agent withdrawn");
    }

    async fn heartbeat(self: Arc<Self>) -> Result<()> {
        loop {
            tokio::time::sleep(self.opts.heartbeat).await;
            if let Err(e) = self.renew().await {
                // The object may have been deleted by hand: announce again.
                tracing::warn!("heartbeat: {e}");
                let _ = self.announce().await;
            }
        }
    }

    /// Watches requests of kind `K` for this node and answers each new one
    /// on a task of its own.
    async fn watch<K: Request>(self: Arc<Self>) -> Result<()> {
        let selector = format!("{NODE_LABEL}={}", self.opts.node);
        let api = self.wire.api::<K>();
        let mut events = Box::pin(watcher(api, watcher::Config::default().labels(&selector)));
        while let Some(event) = events.next().await {
            let req = match event {
                Ok(watcher::Event::Apply(r) | watcher::Event::InitApply(r)) => r,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!("watching {}: {e}", K::plural(&()));
                    continue;
                }
            };
            let uid = req.uid().unwrap_or_default();
            let fresh = self
                .seen
                .lock()
                .map(|mut s| s.insert(uid.clone()))
                .unwrap_or(false);
            if !fresh {
                if req.stop_requested()
                    && let Some(flag) = self.stops.lock().ok().and_then(|s| s.get(&uid).cloned())
                {
                    flag.store(true, Ordering::Relaxed);
                }
                continue;
            }
            let agent = self.clone();
            tokio::spawn(async move { agent.take(req).await });
        }
        Ok(())
    }

    async fn take<K: Request>(self: Arc<Self>, req: K) {
        let name = req.name_any();
        match req.answer().and_then(|a| a.phase) {
            Some(Phase::Done | Phase::Failed) => return,
            // Taken by an agent process that is gone (this one has not
            // seen it): it will never answer.
            Some(Phase::Running | Phase::Armed) => {
                let e = Error::env(
                    "the agent stopped while at work on this request",
                    Some(format!(
                        "for a repair, `knetdoctor repair --node {} --history` shows how far it got and --undo puts it back",
                        self.opts.node
                    )),
                );
                self.patch(&req, failed(&e)).await;
                return;
            }
            None => {}
        }
        self.patch(
            &req,
            Answer {
                phase: Some(Phase::Running),
                ..Default::default()
            },
        )
        .await;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let agent = self.clone();
        let work = req.clone();
        std::thread::spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work.work(&agent)))
                .unwrap_or_else(|_| Err(Error::internal("the agent's worker panicked")));
            let _ = tx.send(r);
        });
        let result = rx
            .await
            .unwrap_or_else(|_| Err(Error::internal("the agent's worker vanished")));
        let answer = match result {
            Ok(body) => {
                let enc = super::payload::encode(&body);
                match self.wire.put_parts(&req, &self.opts.node, &enc.parts).await {
                    Ok(()) => Answer {
                        phase: Some(Phase::Done),
                        payload: Some(enc.payload),
                        error: None,
                    },
                    Err(e) => failed(&e),
                }
            }
            Err(e) => failed(&e),
        };
        tracing::info!(request = %name, phase = ?answer.phase, "answered");
        self.patch(&req, answer).await;
    }

    async fn patch<K: Request>(&self, req: &K, answer: Answer) {
        let r = self
            .wire
            .api::<K>()
            .patch_status(
                &req.name_any(),
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "status": answer })),
            )
            .await;
        if let Err(e) = r {
            tracing::warn!(request = %req.name_any(), "cannot answer: {e}");
        }
    }

    /// Deletes this node's requests (and payload parts) older than the TTL:
    /// a client that died before cleaning up leaves nothing for long.
    async fn collect_garbage(self: Arc<Self>) -> Result<()> {
        let every = self.opts.ttl.min(Duration::from_secs(60));
        loop {
            tokio::time::sleep(every).await;
            self.delete_old::<NodeRead>().await;
            self.delete_old::<NodeRepair>().await;
            self.delete_old::<NodePayload>().await;
        }
    }

    async fn delete_old<K: super::api::Kind>(&self) {
        let api = self.wire.api::<K>();
        // The published state is renewed in place, not old.
        let lp = ListParams::default().labels(&format!(
            "{NODE_LABEL}={},!{PUBLISHED_LABEL}",
            self.opts.node
        ));
        let Ok(list) = api.list(&lp).await else {
            return;
        };
        let limit = now_secs().saturating_sub(self.opts.ttl.as_secs()) as i64;
        for o in list.items {
            let old = o
                .meta()
                .creation_timestamp
                .as_ref()
                .is_some_and(|t| t.0.as_second() < limit);
            if old {
                let _ = api.delete(&o.name_any(), &DeleteParams::background()).await;
            }
        }
    }

    /// This node's part in a probe: watch the path's devices, say so
    /// (`Armed`), then send (on the source's node) or watch until the
    /// client says stop or the spec's seconds pass.
    fn probe(&self, req: &NodeRead, spec: &ProbeSpec) -> Result<NodeProbe> {
        let uid = req.uid().unwrap_or_default();
        // Stopped before it was taken: arm, see nothing, answer at once.
        let stop = Arc::new(AtomicBool::new(req.stop_requested()));
        if let Ok(mut stops) = self.stops.lock() {
            stops.insert(uid.clone(), stop.clone());
        }
        let result = (|| {
            // One kernel is one node: every drop here is this node's.
            let drops = station::DropsWatch::start(spec.proto, spec.tag);
            let armed = station::arm(&self.opts.node, &Netns::Current, spec)?;
            if armed.tracing() {
                std::thread::sleep(station::SUBSCRIBE);
            }
            self.rt.block_on(self.patch(
                req,
                Answer {
                    phase: Some(Phase::Armed),
                    ..Default::default()
                },
            ));
            let sent = match &spec.send {
                Some(send) => Some(station::send_from(
                    &self.pod_namespaces(),
                    spec.proto,
                    spec.tag,
                    send,
                )),
                None => {
                    let limit = Duration::from_secs(u64::from(spec.seconds.min(MAX_WATCH_SECONDS)));
                    let started = std::time::Instant::now();
                    while !stop.load(Ordering::Relaxed) && started.elapsed() < limit {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    None
                }
            };
            let mut seen = armed.finish(spec.proto, spec.tag);
            match drops {
                Ok(w) => {
                    let mut owners = Owners::default();
                    let _ = owners.add(&self.opts.node, &self.node());
                    seen.drops = w.finish(&owners);
                }
                Err(why) => seen.drops_note = Some(why),
            }
            seen.sent = sent.transpose()?;
            Ok(seen)
        })();
        if let Ok(mut stops) = self.stops.lock() {
            stops.remove(&uid);
        }
        result
    }

    /// Where this node's pods keep their namespaces: the ones it was
    /// told, else anywhere on the node.
    fn pod_namespaces(&self) -> PodNamespaces {
        if self.opts.pod_netns.is_empty() {
            PodNamespaces::Anywhere
        } else {
            PodNamespaces::Named(self.opts.pod_netns.clone())
        }
    }

    /// A repair request's work: under the node's repair Lease and lock.
    fn repair(&self, req: &NodeRepair) -> Result<RepairAnswer> {
        let dir = self.journals();
        match req.spec.action {
            RepairKind::History => Ok(RepairAnswer::History(journal::history(&dir))),
            RepairKind::Undo => {
                let id = req
                    .spec
                    .journal
                    .as_deref()
                    .ok_or_else(|| Error::usage("an undo request names no journal", None))?;
                let _lease = self.lease(req)?;
                let _lock = journal::lock(&dir)?;
                apply::undo(&Netns::Current, &dir, id).map(RepairAnswer::Undone)
            }
            RepairKind::Apply => {
                let (payload, digest) = req
                    .spec
                    .plan
                    .as_ref()
                    .zip(req.spec.digest.as_ref())
                    .ok_or_else(|| {
                        Error::usage("an apply request carries no plan or no digest", None)
                    })?;
                let body = self.rt.block_on(self.wire.body(&req.name_any(), payload))?;
                let sent: PlanSent = serde_json::from_slice(&body).map_err(|e| {
                    Error::usage(format!("the plan sent does not parse: {e}"), None)
                })?;
                if sent.node != self.opts.node {
                    return Err(Error::usage(
                        format!(
                            "a plan for {} was sent to the agent on {}",
                            sent.node, self.opts.node
                        ),
                        None,
                    ));
                }
                let _lease = self.lease(req)?;
                let _lock = journal::lock(&dir)?;
                // What the steps replace, read under the lock: what the
                // journal records is what the repair changes.
                let now = self.node().read()?;
                sent.verify(digest, &now)?;
                apply::apply(&Netns::Current, &self.opts.node, &sent.steps, &now, &dir)
                    .map(RepairAnswer::Applied)
            }
        }
    }

    /// Takes the node's repair Lease for `req` (one repair per node, seen
    /// cluster-wide), or says which request holds it.
    fn lease(&self, req: &NodeRepair) -> Result<LeaseGuard> {
        let name = format!("knetdoctor-repair-{}", self.opts.node);
        let api = self.wire.api::<Lease>();
        let holder = format!("{}/{}", self.incarnation, req.name_any());
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.clone()),
                lease_duration_seconds: Some(LEASE_SECONDS),
                renew_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
                ..Default::default()
            }),
        };
        let taken = self.rt.block_on(async {
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(None),
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    let held = api
                        .get(&name)
                        .await
                        .map_err(|e| refused(e, "read the repair lease"))?;
                    let spec = held.spec.clone().unwrap_or_default();
                    let holder = spec.holder_identity.clone().unwrap_or_default();
                    let (incarnation, request) =
                        holder.split_once('/').unwrap_or(("", holder.as_str()));
                    let expired = spec.renew_time.as_ref().is_none_or(|t| {
                        t.0.as_second() + i64::from(spec.lease_duration_seconds.unwrap_or(0))
                            < now_secs() as i64
                    });
                    if incarnation == self.incarnation && !expired {
                        return Ok(Some(request.to_string()));
                    }
                    // Left by an agent that is gone, or lapsed: take it
                    // over (a conflict here means another request took it
                    // first).
                    let mut next = lease.clone();
                    next.metadata.resource_version = held.metadata.resource_version;
                    match api.replace(&name, &PostParams::default(), &next).await {
                        Ok(_) => Ok(None),
                        Err(kube::Error::Api(s)) if s.code == 409 => {
                            Ok(Some("another request".to_string()))
                        }
                        Err(e) => Err(refused(e, "take the repair lease")),
                    }
                }
                Err(e) => Err(refused(e, "take the repair lease (leases)")),
            }
        })?;
        if let Some(other) = taken {
            return Err(Error::env(
                format!(
                    "another repair of {} is under way (request {other})",
                    self.opts.node
                ),
                Some("wait for it to finish, then run again".to_string()),
            ));
        }
        Ok(LeaseGuard {
            rt: self.rt.clone(),
            wire: self.wire.clone(),
            name,
        })
    }
}

/// The longest a probe's watch lasts when its client never stops it.
const MAX_WATCH_SECONDS: u32 = 300;

/// How long a repair Lease holds without its holder (a repair takes
/// milliseconds to a few seconds; a dead agent's Lease lapses after this).
const LEASE_SECONDS: i32 = 60;

/// Releases the repair Lease when the repair ends.
struct LeaseGuard {
    rt: tokio::runtime::Handle,
    wire: Wire,
    name: String,
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let api = self.wire.api::<Lease>();
        let name = self.name.clone();
        let _ = self.rt.block_on(async move {
            api.delete(&name, &DeleteParams::default())
                .await
                .map(drop)
                .map_err(|e| refused(e, "release the repair lease"))
        });
    }
}

fn failed(e: &Error) -> Answer {
    Answer {
        phase: Some(Phase::Failed),
        payload: None,
        error: Some(AnswerError::from(e)),
    }
}

impl From<&Error> for AnswerError {
    fn from(e: &Error) -> Self {
        let (message, hint) = match e {
            Error::Usage { what, hint } | Error::Environment { what, hint } => {
                (what.clone(), hint.clone())
            }
            other => (other.to_string(), None),
        };
        AnswerError {
            code: e.exit_code() as u8,
            message,
            hint,
        }
    }
}

impl AnswerError {
    /// The error as the client raises it: the same exit code and hint,
    /// the message saying it came from the agent on `node`.
    pub fn into_error(self, node: &str) -> Error {
        let what = format!("the agent on {node}: {}", self.message);
        match self.code {
            2 => Error::usage(what, self.hint),
            4 => Error::internal(what),
            _ => Error::env(what, self.hint),
        }
    }
}
