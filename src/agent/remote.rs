//! The client side: nodes reached through their agents. One connection and
//! one runtime serve every node of a command; reading N nodes is N creates,
//! one watch and one delete-collection, whatever N is.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use kube::ResourceExt;
use kube::api::ListParams;
use kube::runtime::watcher;
use serde::de::DeserializeOwned;

use super::api::{
    Answer, CaptureSpec, DropsSpec, NodeAgent, NodePayload, NodeRead, NodeReadSpec, NodeRepair,
    NodeRepairSpec, PUBLISHED_LABEL, ReadKind, RepairKind,
};
use super::batch::{Batch, Request, answered, unique_name};
use super::repair::{PlanSent, RepairAnswer};
use super::wire::{Wire, refused};
use crate::access::NodeAccess;
use crate::check::reach::Unreached;
use crate::dataplane::{Netns, NodeState};
use crate::error::{Error, Result};
use crate::inspect::live::LiveSource;

/// How long a node-state read may take before its agent is called silent.
pub(super) const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a repair may take (a plan of thousands of iptables rules
/// restores in seconds; a lock held by another repair fails at once).
const REPAIR_TIMEOUT: Duration = Duration::from_secs(120);

/// The agents of one cluster, as one client sees them.
pub struct Agents {
    rt: tokio::runtime::Runtime,
    wire: Wire,
    /// Every node with a `NodeAgent`, and how long ago it renewed.
    present: BTreeMap<String, Presence>,
    /// The cluster does not serve the agent's kinds.
    not_installed: bool,
    /// The API server refused to list the agents to this identity (its
    /// message): the cluster's objects may still be readable.
    refused: Option<String>,
}

/// An agent as its `NodeAgent` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Presence {
    /// Seconds since it last renewed.
    pub silent: u64,
    pub heartbeat: u64,
}

impl Presence {
    /// Renewed within three heartbeats (a missed beat or two is a slow
    /// API server, not a dead agent).
    pub fn live(&self) -> bool {
        self.silent <= 3 * self.heartbeat.max(1)
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl Agents {
    /// Connects to the cluster `live` names and lists its agents (in
    /// `namespace`). A cluster without the agent's API is not an error:
    /// every node is then "not installed".
    pub fn connect(live: &LiveSource, namespace: &str) -> Result<Arc<Agents>> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Error::env(format!("cannot start the async runtime: {e}"), None))?;
        let client = rt.block_on(crate::inspect::live::client(live))?.0;
        let wire = Wire {
            client,
            namespace: namespace.to_string(),
        };
        let listed = rt.block_on(wire.api::<NodeAgent>().list(&ListParams::default()));
        let mut forbidden = None;
        let (present, not_installed) = match listed {
            Ok(list) => {
                let now = now_secs();
                let present = list
                    .items
                    .into_iter()
                    .map(|a| {
                        let renewed = a.status.and_then(|s| s.renewed).unwrap_or(0);
                        (
                            a.spec.node,
                            Presence {
                                silent: now.saturating_sub(renewed),
                                heartbeat: u64::from(a.spec.heartbeat_seconds),
                            },
                        )
                    })
                    .collect();
                (present, false)
            }
            Err(kube::Error::Api(s)) if s.code == 404 => (BTreeMap::new(), true),
            Err(kube::Error::Api(s)) if s.is_forbidden() => {
                forbidden = Some(s.message);
                (BTreeMap::new(), false)
            }
            Err(e) => return Err(refused(e, "list the agents (nodeagents)")),
        };
        Ok(Arc::new(Agents {
            rt,
            wire,
            present,
            not_installed,
            refused: forbidden,
        }))
    }

    /// Whether node `name` has a live agent, or why it is not reached.
    pub fn reach(&self, name: &str) -> std::result::Result<(), Unreached> {
        if self.not_installed {
            return Err(Unreached::AgentNotInstalled);
        }
        if let Some(message) = &self.refused {
            return Err(Unreached::AgentsForbidden {
                message: message.clone(),
            });
        }
        match self.present.get(name) {
            Some(p) if p.live() => Ok(()),
            Some(p) => Err(Unreached::AgentSilent { seconds: p.silent }),
            None => Err(Unreached::NoAgent),
        }
    }

    /// How long an agent may take to take a request: three of the longest
    /// heartbeats (an agent that renews runs its watches too).
    pub(super) fn take_timeout(&self) -> Duration {
        let beat = self
            .present
            .values()
            .map(|p| p.heartbeat)
            .max()
            .unwrap_or(2);
        Duration::from_secs(3 * beat.max(1))
    }

    /// The runtime every request of this client runs on.
    pub(super) fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.rt
    }

    /// The connection to the agents' namespace.
    pub(super) fn wire(&self) -> &Wire {
        &self.wire
    }

    /// The nodes with a live agent.
    pub fn live_nodes(&self) -> Vec<String> {
        self.present
            .iter()
            .filter(|(_, p)| p.live())
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The states of `nodes`, read by their agents at once.
    pub fn read_states(&self, nodes: &[String]) -> Vec<(String, Result<NodeState>)> {
        self.read_all(nodes, read_spec(ReadKind::State, None, None), READ_TIMEOUT)
    }

    /// Asks every node of `nodes` for the same read, in one batch, and
    /// parses each answer as a `T`.
    fn read_all<T: DeserializeOwned>(
        &self,
        nodes: &[String],
        spec: NodeReadSpec,
        timeout: Duration,
    ) -> Vec<(String, Result<T>)> {
        let requests: Vec<NodeRead> = nodes
            .iter()
            .map(|n| {
                NodeRead::new(
                    "",
                    NodeReadSpec {
                        node: n.clone(),
                        ..spec.clone()
                    },
                )
            })
            .collect();
        let verb = match spec.read {
            ReadKind::State => "read",
            ReadKind::Capture => "capture",
            ReadKind::Probe => "probe",
            ReadKind::Drops => "drops",
        };
        let answers = self.rt.block_on(self.ask(requests, verb, timeout));
        nodes
            .iter()
            .cloned()
            .zip(answers)
            .map(|(n, body)| {
                let parsed = body.and_then(|b| parse(&n, &b));
                (n, parsed)
            })
            .collect()
    }

    /// The states the agents of `nodes` last published (one list for all
    /// of them): the dashboard's read, fresh within a moment of a kernel
    /// change, without asking any agent.
    pub fn published(&self, nodes: &[String]) -> Vec<(String, Result<NodeState>)> {
        let listed = self.rt.block_on(
            self.wire
                .api::<NodePayload>()
                .list(&ListParams::default().labels(PUBLISHED_LABEL)),
        );
        let list = match listed {
            Ok(l) => l.items,
            Err(e) => {
                let e = super::api::AnswerError::from(&refused(e, "read the published states"));
                return nodes
                    .iter()
                    .map(|n| (n.clone(), Err(e.clone().into_error(n))))
                    .collect();
            }
        };
        nodes
            .iter()
            .map(|n| {
                let mut parts: Vec<&NodePayload> = list
                    .iter()
                    .filter(|p| p.labels().get(PUBLISHED_LABEL) == Some(n))
                    .collect();
                parts.sort_by_key(|p| p.spec.index);
                let state = match parts.first().and_then(|p| p.spec.payload.clone()) {
                    None => Err(Error::env(
                        format!("the agent on {n} has published no state yet"),
                        None,
                    )),
                    Some(d) => {
                        let data: Vec<String> = parts.iter().map(|p| p.spec.data.clone()).collect();
                        super::payload::decode(&d, &data).and_then(|b| parse::<NodeState>(n, &b))
                    }
                };
                (n.clone(), state)
            })
            .collect()
    }

    /// Sends on `changed` whenever an agent publishes a new state, until
    /// the receiver is gone (on this connection's runtime).
    pub fn watch_published(&self, changed: crate::signal::Signal) {
        let api = self.wire.api::<NodePayload>();
        self.rt.spawn(async move {
            let mut events = Box::pin(watcher(
                api,
                watcher::Config::default().labels(PUBLISHED_LABEL),
            ));
            while let Some(e) = events.next().await {
                if matches!(e, Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)))
                    && !changed.send()
                {
                    return;
                }
            }
        });
    }

    /// Captures on `nodes` at once, each through its agent.
    pub fn capture(
        &self,
        nodes: &[String],
        spec: &CaptureSpec,
    ) -> Result<Vec<(String, Result<crate::capture::remote::RemoteCapture>)>> {
        crate::capture::remote::check_bounds(spec)?;
        // The capture's own time, then as long as a read may take.
        let timeout = Duration::from_secs(u64::from(spec.seconds)) + READ_TIMEOUT;
        Ok(self.read_all(
            nodes,
            read_spec(ReadKind::Capture, Some(spec), None),
            timeout,
        ))
    }

    /// Has the agents of `nodes` watch their kernel's drops for
    /// `spec.seconds`, at once; what each saw.
    pub fn drops(
        &self,
        nodes: &[String],
        spec: &DropsSpec,
    ) -> Result<
        Vec<(
            String,
            Result<crate::capture::dropwatch::remote::RemoteDrops>,
        )>,
    > {
        crate::capture::dropwatch::remote::check_bounds(spec)?;
        let timeout = Duration::from_secs(u64::from(spec.seconds)) + READ_TIMEOUT;
        Ok(self.read_all(nodes, read_spec(ReadKind::Drops, None, Some(spec)), timeout))
    }

    /// Sends `spec` (and its plan) to `node`'s agent and waits for its answer.
    pub fn repair(&self, spec: NodeRepairSpec, plan: Option<&PlanSent>) -> Result<RepairAnswer> {
        let node = spec.node.clone();
        let body = self.rt.block_on(async {
            let mut spec = spec;
            let name = unique_name(&format!("repair-{node}"));
            if let Some(plan) = plan {
                let bytes = serde_json::to_vec(plan).map_err(|e| Error::internal(e.to_string()))?;
                let enc = super::payload::encode(&bytes);
                // The parts go first: the agent takes the request as soon
                // as it exists.
                self.wire.put_parts_named(&name, &node, &enc.parts).await?;
                spec.digest = Some(plan.digest());
                spec.plan = Some(enc.payload);
            }
            let with_parts = spec.plan.as_ref().is_some_and(|p| p.parts > 0);
            let req = NodeRepair::new(&name, spec);
            let answer = self
                .ask(vec![req], "repair", REPAIR_TIMEOUT)
                .await
                .remove(0);
            if with_parts {
                self.wire.delete_parts(&name).await;
            }
            answer
        })?;
        parse(&node, &body)
    }

    /// Creates `requests` (one per node), waits until each is answered or
    /// `timeout` passes, reads the answers and deletes the requests.
    async fn ask<K: Request>(
        &self,
        requests: Vec<K>,
        verb: &str,
        timeout: Duration,
    ) -> Vec<Result<Vec<u8>>> {
        let mut batch = Batch::new(&self.wire, verb, self.take_timeout());
        let mut sent = batch.create(requests).await;
        batch.wait(&mut sent, answered, timeout).await;
        let mut out = Vec::with_capacity(sent.len());
        for s in sent {
            out.push(batch.body(s).await);
        }
        batch.delete().await;
        out
    }
}

/// An agent's answer as the type the client expects.
pub(super) fn parse<T: DeserializeOwned>(node: &str, body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| {
        Error::env(
            format!("the agent on {node} sent an answer that does not parse: {e}"),
            Some("the agent and this client may be different versions of knetdoctor".to_string()),
        )
    })
}

/// The request kinds a client sends.
pub trait HasAnswer {
    fn node(&self) -> &str;
    fn answer(&self) -> Option<&Answer>;
}

impl HasAnswer for NodeRead {
    fn node(&self) -> &str {
        &self.spec.node
    }
    fn answer(&self) -> Option<&Answer> {
        self.status.as_ref()
    }
}

impl HasAnswer for NodeRepair {
    fn node(&self) -> &str {
        &self.spec.node
    }
    fn answer(&self) -> Option<&Answer> {
        self.status.as_ref()
    }
}

/// A node reached through its agent.
pub struct AgentNode {
    agents: Arc<Agents>,
    name: String,
}

impl AgentNode {
    pub fn new(agents: Arc<Agents>, name: String) -> AgentNode {
        AgentNode { agents, name }
    }

    /// Applies `plan` on the node; the agent refuses it unless the node
    /// still matches.
    pub fn apply(&self, plan: &PlanSent) -> Result<crate::repair::journal::Journal> {
        match self
            .agents
            .repair(self.spec(RepairKind::Apply, None), Some(plan))?
        {
            RepairAnswer::Applied(j) => Ok(j),
            other => Err(unexpected(&self.name, &other)),
        }
    }

    pub fn undo(&self, id: &str) -> Result<crate::repair::journal::Journal> {
        match self
            .agents
            .repair(self.spec(RepairKind::Undo, Some(id)), None)?
        {
            RepairAnswer::Undone(j) => Ok(j),
            other => Err(unexpected(&self.name, &other)),
        }
    }

    /// The agents this node is reached through (to ask several at once).
    pub fn agents(&self) -> &Arc<Agents> {
        &self.agents
    }

    pub fn history(&self) -> Result<Vec<crate::repair::journal::Journal>> {
        match self
            .agents
            .repair(self.spec(RepairKind::History, None), None)?
        {
            RepairAnswer::History(h) => Ok(h),
            other => Err(unexpected(&self.name, &other)),
        }
    }

    fn spec(&self, action: RepairKind, journal: Option<&str>) -> NodeRepairSpec {
        NodeRepairSpec {
            node: self.name.clone(),
            action,
            plan: None,
            digest: None,
            journal: journal.map(str::to_string),
        }
    }
}

fn unexpected(node: &str, a: &RepairAnswer) -> Error {
    let kind = match a {
        RepairAnswer::Applied(_) => "applied",
        RepairAnswer::Undone(_) => "undone",
        RepairAnswer::History(_) => "history",
    };
    Error::internal(format!(
        "the agent on {node} answered {kind:?} to another question"
    ))
}

impl NodeAccess for AgentNode {
    fn name(&self) -> Option<&str> {
        Some(&self.name)
    }
    fn read(&self) -> Result<NodeState> {
        self.agents
            .read_states(std::slice::from_ref(&self.name))
            .remove(0)
            .1
    }
    fn netns(&self) -> Result<Netns> {
        Err(Error::env(
            format!(
                "{} is reached through its agent: there is no namespace to enter from here",
                self.name
            ),
            Some(format!("run this on {} itself", self.name)),
        ))
    }
    fn journal_dir(&self) -> Result<std::path::PathBuf> {
        Err(Error::env(
            format!(
                "{}'s repair journals are on the node, kept by its agent",
                self.name
            ),
            Some(format!(
                "`knetdoctor repair --node {} --history` lists them",
                self.name
            )),
        ))
    }
    fn agent(&self) -> Option<&AgentNode> {
        Some(self)
    }
}

/// A read request's spec, the node left to fill in.
fn read_spec(
    read: ReadKind,
    capture: Option<&CaptureSpec>,
    drops: Option<&DropsSpec>,
) -> NodeReadSpec {
    NodeReadSpec {
        node: String::new(),
        read,
        capture: capture.cloned(),
        probe: None,
        drops: drops.cloned(),
    }
}
