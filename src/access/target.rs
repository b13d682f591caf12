//! Where the cluster and its nodes are read from: a lab that is up, an
//! offline bundle (or plain kubectl directory), or a live API server —
//! whose nodes are read where this process can reach them: the lab's when
//! it was published there; else this host when it is one of them, and
//! every other node through its knetdoctor agent.

use std::path::PathBuf;

use std::sync::{Arc, OnceLock};

use super::{BundleNode, InNamespace, NodeAccess};
use crate::agent::remote::{AgentNode, Agents};
use crate::check::Finding;
use crate::check::reach::{NotRead, Unreached};
use crate::dataplane::NodeState;
use crate::error::{Error, Result};
use crate::inspect::live::LiveSource;
use crate::lab::LabState;
use crate::model::Cluster;

/// Where the cluster objects come from.
pub enum ClusterFrom {
    Lab(String),
    Bundle(PathBuf),
    Live(LiveSource),
}

/// Where node states come from.
pub enum NodesFrom {
    Lab(String),
    Bundle(PathBuf),
    /// A live cluster's nodes: this machine under its host name (`here`,
    /// a node when the cluster has a Node of that name), every other node
    /// through its agent.
    Live {
        here: Option<String>,
        cluster: LiveSource,
    },
}

/// Where the pods' namespaces of the nodes in reach are: a lab's under its
/// prefix (labs side by side reuse the same addresses), else anywhere on
/// this machine (containerd's `cni-*`, any process's sandbox).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodNamespaces {
    Prefixed(String),
    /// Exactly these named namespaces (an agent told its pods').
    Named(Vec<String>),
    Anywhere,
}

/// What every command reads first: the cluster, the states of the nodes
/// in reach, check's findings on them, and the cluster's nodes that were
/// not read (so no one takes their silence for health). The findings are
/// `check`'s list, or the dashboard's kept verdicts, each shared.
pub struct Gathered<F = Vec<Arc<Finding>>> {
    /// Shared: the dashboard keeps it between re-reads of node states.
    pub cluster: Arc<Cluster>,
    /// Shared: the dashboard keeps them with its verdicts and snapshot.
    pub states: Arc<Vec<(String, NodeState)>>,
    pub findings: F,
    pub not_read: Vec<NotRead>,
}

/// A cluster plus the node states to check it against.
pub struct Target {
    pub cluster: ClusterFrom,
    pub nodes: NodesFrom,
    /// A directory unpacked from a bundle tarball, removed with the target.
    _unpacked: Option<tempfile::TempDir>,
    /// The live cluster's agents, listed once on first use.
    agents: OnceLock<Arc<Agents>>,
    /// Nodes reached through agents are read from what the agents
    /// publish (see [`super::Source::published`]).
    pub published: bool,
}

impl Target {
    /// Picks the target: `--bundle` wins; `--kubeconfig`/`--context` read the
    /// cluster live (node states from lab `lab` if it is up, as when the lab
    /// was published with `lab up --kubeconfig`); otherwise lab `lab`.
    pub fn from_flags(
        bundle: Option<PathBuf>,
        lab: &str,
        live: Option<LiveSource>,
    ) -> Result<Target> {
        if let Some(path) = bundle {
            let (dir, unpacked) = if crate::inspect::bundle::is_tarball(&path) {
                let (tmp, dir) = crate::inspect::bundle::unpack(&path)?;
                (dir, Some(tmp))
            } else {
                (path, None)
            };
            return Ok(Target {
                cluster: ClusterFrom::Bundle(dir.clone()),
                nodes: NodesFrom::Bundle(dir),
                _unpacked: unpacked,
                agents: OnceLock::new(),
                published: false,
            });
        }
        let state = LabState::load(lab)?;
        let lab_up = state.is_some();
        if let Some(live) = live {
            // Node states come from the lab only if it was published to this
            // very API server; a real cluster's nodes are not the lab's.
            // The same server and CA as the lab's own kubeconfig: the
            // lab's API server, whichever of its users reads it.
            let published_here = state
                .as_ref()
                .and_then(|s| s.kubeconfig.clone())
                .and_then(|k| {
                    LiveSource {
                        kubeconfig: Some(k),
                        ..Default::default()
                    }
                    .server_identity()
                })
                .is_some_and(|lab| live.server_identity() == Some(lab));
            return Ok(Target {
                nodes: if published_here {
                    NodesFrom::Lab(lab.to_string())
                } else {
                    NodesFrom::Live {
                        here: super::host_name(),
                        cluster: live.clone(),
                    }
                },
                cluster: ClusterFrom::Live(live),
                _unpacked: None,
                agents: OnceLock::new(),
                published: false,
            });
        }
        // A lab run by the real control plane: its cluster is what that API
        // server holds, its nodes are the lab's.
        if let Some(s) = &state
            && s.control_plane.is_some()
            && let Some(kubeconfig) = &s.kubeconfig
        {
            return Ok(Target {
                cluster: ClusterFrom::Live(LiveSource {
                    kubeconfig: Some(kubeconfig.clone()),
                    ..Default::default()
                }),
                nodes: NodesFrom::Lab(lab.to_string()),
                _unpacked: None,
                agents: OnceLock::new(),
                published: false,
            });
        }
        if !lab_up {
            return Err(Error::env(
                format!(
                    "no cluster to read: lab {lab:?} is not up, and neither --bundle nor --kubeconfig was given"
                ),
                Some(format!(
                    "start the lab (`knetdoctor lab up --name {lab}`), pass --bundle DIR from `knetdoctor collect`, or --kubeconfig FILE"
                )),
            ));
        }
        Ok(Target {
            cluster: ClusterFrom::Lab(lab.to_string()),
            nodes: NodesFrom::Lab(lab.to_string()),
            _unpacked: None,
            agents: OnceLock::new(),
            published: false,
        })
    }

    /// The live cluster's agents (connected and listed on first use).
    fn agents(&self) -> Result<Option<&Arc<Agents>>> {
        let NodesFrom::Live { cluster, .. } = &self.nodes else {
            return Ok(None);
        };
        if let Some(a) = self.agents.get() {
            return Ok(Some(a));
        }
        let a = Agents::connect(cluster, cluster.agent_namespace())?;
        Ok(Some(self.agents.get_or_init(|| a)))
    }

    /// The API server the cluster objects are read from, when they are
    /// read live: `--kubeconfig`'s, or the API server of a lab run by the
    /// real control plane. The dashboard watches it instead of listing
    /// every kind again on each reading (150,000 pods take seconds).
    pub fn live_cluster(&self) -> Option<&LiveSource> {
        match &self.cluster {
            ClusterFrom::Live(src) => Some(src),
            ClusterFrom::Lab(_) | ClusterFrom::Bundle(_) => None,
        }
    }

    /// The cluster objects.
    pub fn cluster(&self) -> Result<Cluster> {
        match &self.cluster {
            ClusterFrom::Lab(name) => {
                crate::inspect::kubectl::read_dir(&LabState::require(name)?.cluster_dir())
            }
            ClusterFrom::Bundle(dir) => crate::inspect::bundle::read_cluster(dir),
            ClusterFrom::Live(src) => crate::inspect::live::load(src),
        }
    }

    /// Every node in reach.
    pub fn nodes(&self) -> Result<Vec<Box<dyn NodeAccess>>> {
        self.in_reach(None)
    }

    /// Node `name`, if it is in reach; a clear error (with the names that
    /// are) if it is not.
    pub fn node(&self, name: &str) -> Result<Box<dyn NodeAccess>> {
        Ok(self.in_reach(Some(name))?.remove(0))
    }

    /// The nodes in reach (only `only`, which must be one of them), each
    /// source read once: a lab's state file is read once per call, not
    /// once for the names and again for the namespaces.
    fn in_reach(&self, only: Option<&str>) -> Result<Vec<Box<dyn NodeAccess>>> {
        let lab = match &self.nodes {
            NodesFrom::Lab(lab) => Some(LabState::require(lab)?),
            _ => None,
        };
        let agents = self.agents()?;
        let mut names: Vec<String> = match (&self.nodes, &lab) {
            (_, Some(state)) => state
                .topology
                .nodes
                .iter()
                .map(|n| n.name.clone())
                .collect(),
            (NodesFrom::Bundle(dir), _) => crate::inspect::bundle::node_names(dir)?,
            (NodesFrom::Live { here, .. }, _) => here.iter().cloned().collect(),
            _ => Vec::new(),
        };
        if let Some(a) = agents {
            for n in a.live_nodes() {
                if !names.contains(&n) {
                    names.push(n);
                }
            }
        }
        let wanted: Vec<&String> = match only {
            Some(o) => match names.iter().find(|n| *n == o) {
                Some(n) => vec![n],
                None => return Err(self.not_in_reach(o, &names)),
            },
            None => names.iter().collect(),
        };
        Ok(wanted
            .into_iter()
            .map(|n| -> Box<dyn NodeAccess> {
                match (&self.nodes, &lab) {
                    (_, Some(state)) => Box::new(InNamespace::lab_node(state, n)),
                    (NodesFrom::Bundle(dir), _) => {
                        Box::new(BundleNode::new(dir.clone(), n.clone()))
                    }
                    (NodesFrom::Live { here, .. }, _) if here.as_ref() == Some(n) => {
                        Box::new(InNamespace::this_host(n))
                    }
                    _ => match agents {
                        Some(a) => Box::new(AgentNode::new(a.clone(), n.clone())),
                        None => Box::new(InNamespace::this_host(n)),
                    },
                }
            })
            .collect())
    }

    fn not_in_reach(&self, name: &str, names: &[String]) -> Error {
        if let NodesFrom::Live { here, .. } = &self.nodes {
            let why = match self.agents() {
                Ok(Some(a)) => a.reach(name).err().unwrap_or(Unreached::NoAgent),
                _ => Unreached::OutOfReach,
            };
            let here = here.as_deref().unwrap_or("a machine of unknown name");
            return Error::env(
                format!(
                    "{name}'s dataplane is out of reach from here ({here}): {}",
                    why.explain()
                ),
                Some(format!(
                    "install the knetdoctor agent (`knetdoctor agent manifest | kubectl apply -f -`), run knetdoctor on {name} itself, or read a bundle collected there (--bundle)"
                )),
            );
        }
        let hint = crate::suggest::did_you_mean(name, names.iter().map(String::as_str))
            .unwrap_or_else(|| format!("nodes: {}", names.join(", ")));
        Error::usage(format!("no node {name:?}"), Some(hint))
    }

    /// Reads the states of `only` (or every node in reach), in parallel;
    /// the first node that cannot be read fails the whole.
    pub fn node_states(&self, only: Option<&str>) -> Result<Vec<(String, NodeState)>> {
        self.read_states(only)?
            .into_iter()
            .map(|(n, s)| s.map(|s| (n, s)))
            .collect()
    }

    /// Reads the states of `only` (or every node in reach), in parallel:
    /// nodes entered here on threads, nodes reached by agents in one batch.
    fn read_states(&self, only: Option<&str>) -> Result<Vec<(String, Result<NodeState>)>> {
        let nodes = match only {
            Some(n) => vec![self.node(n)?],
            None => self.nodes()?,
        };
        let (remote, local): (Vec<_>, Vec<_>) = nodes.iter().partition(|n| n.agent().is_some());
        let remote: Vec<String> = remote
            .iter()
            .filter_map(|n| n.name().map(str::to_string))
            .collect();
        let agents = self.agents()?;
        std::thread::scope(|s| {
            let batch = s.spawn(|| match agents {
                Some(a) if !remote.is_empty() && self.published => a.published(&remote),
                Some(a) if !remote.is_empty() => a.read_states(&remote),
                _ => Vec::new(),
            });
            let handles: Vec<_> = local
                .iter()
                .map(|n| s.spawn(move || (n.name().unwrap_or_default().to_string(), n.read())))
                .collect();
            let mut out: Vec<(String, Result<NodeState>)> = handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        (
                            String::new(),
                            Err(Error::internal("a node reader thread panicked")),
                        )
                    })
                })
                .collect();
            out.extend(batch.join().unwrap_or_default());
            Ok(out)
        })
    }

    /// The cluster, the states of the nodes in reach (of `only`, when
    /// given) that the cluster knows, check's findings, and the cluster's
    /// nodes left unread.
    pub fn gather(&self, only: Option<&str>) -> Result<Gathered> {
        let cluster = self.cluster()?;
        self.gather_on(Arc::new(cluster), only)
    }

    /// As `gather`, on a cluster already read (the dashboard's watches).
    pub fn gather_on(&self, cluster: Arc<Cluster>, only: Option<&str>) -> Result<Gathered> {
        self.gather_judged(cluster, only, |c, s| {
            crate::check::share(crate::check::run(c, s))
        })
    }

    /// The node states after the kernels of `notified` said their tables
    /// changed: those nodes' kernel tables read again
    /// ([`NodeAccess::read_kernel_tables`]), every other node's state, and
    /// everyone's rules, as `before` holds them. An error when a notified
    /// node cannot be read: the caller reads every node whole instead.
    pub fn states_after_notice(
        &self,
        before: &[(String, NodeState)],
        notified: &std::collections::BTreeSet<String>,
    ) -> Result<Vec<(String, NodeState)>> {
        before
            .iter()
            .map(|(name, state)| {
                let state = match notified.contains(name) {
                    true => self.node(name)?.read_kernel_tables(state)?,
                    false => state.clone(),
                };
                Ok((name.clone(), state))
            })
            .collect()
    }

    /// As `gather_on`, the findings given by `judge` (the dashboard's
    /// kept verdicts, which re-check only what changed).
    pub fn gather_judged<F>(
        &self,
        cluster: Arc<Cluster>,
        only: Option<&str>,
        judge: impl FnOnce(&Cluster, &Arc<Vec<(String, NodeState)>>) -> F,
    ) -> Result<Gathered<F>> {
        // Where Nodes could not be listed (RBAC), every node read counts:
        // its node-local verdicts stand without the Node object.
        let nodes_refused = cluster
            .refused(crate::model::reading::ApiKind::Nodes)
            .is_some();
        let here = match &self.nodes {
            NodesFrom::Live { here, .. } => here.as_deref(),
            _ => None,
        };
        // This host stays a node only if the cluster says so.
        let known = |n: &str| cluster.node(n).is_some() || (nodes_refused && Some(n) != here);
        let mut failed: Vec<NotRead> = Vec::new();
        let states = match &self.nodes {
            // This host is a node only if the cluster says so (a laptop
            // with a kubeconfig is not one); an agent is asked only when
            // one runs.
            NodesFrom::Live { .. } => {
                if let Some(o) = only
                    && !known(o)
                {
                    return Err(self.not_in_reach(o, &[]));
                }
                let read = self.read_states(only)?;
                let mut states = Vec::new();
                for (node, r) in read {
                    match r {
                        Ok(s) if known(&node) => states.push((node, s)),
                        Ok(_) => {}
                        // Asked for one node: its failure is the answer.
                        Err(e) if only.is_some() => return Err(e),
                        Err(e) => failed.push(NotRead {
                            node,
                            why: Unreached::AgentFailed {
                                error: e.to_string(),
                            },
                        }),
                    }
                }
                states
            }
            _ => self.node_states(only)?,
        };
        let states = Arc::new(states);
        let findings = judge(&cluster, &states);
        let mut not_read: Vec<NotRead> = if only.is_some() {
            Vec::new()
        } else {
            let agents = self.agents()?;
            cluster
                .nodes
                .iter()
                .filter_map(|n| n.metadata.name.clone())
                .filter(|n| !states.iter().any(|(s, _)| s == n))
                .filter(|n| !failed.iter().any(|f| &f.node == n))
                .map(|node| NotRead {
                    why: agents
                        .and_then(|a| a.reach(&node).err())
                        .unwrap_or(Unreached::OutOfReach),
                    node,
                })
                .collect::<Vec<_>>()
                .into_iter()
                .chain(failed)
                .collect()
        };
        // By name, whatever order the API server listed them in.
        not_read.sort_by(|a, b| a.node.cmp(&b.node));
        Ok(Gathered {
            cluster,
            states,
            findings,
            not_read,
        })
    }

    /// How `node`'s state is read when it is.
    pub fn read_via(&self, node: &str) -> super::ReadVia {
        match &self.nodes {
            NodesFrom::Lab(_) => super::ReadVia::Lab,
            NodesFrom::Bundle(_) => super::ReadVia::Bundle,
            NodesFrom::Live { here, .. } if here.as_deref() == Some(node) => {
                super::ReadVia::ThisHost
            }
            NodesFrom::Live { .. } => super::ReadVia::Agent,
        }
    }

    /// Where the pods of the nodes in reach keep their namespaces.
    fn pod_namespaces(&self) -> PodNamespaces {
        match &self.nodes {
            NodesFrom::Lab(lab) => PodNamespaces::Prefixed(crate::lab::topology::netns_prefix(lab)),
            _ => PodNamespaces::Anywhere,
        }
    }

    /// How `trace --probe` reaches the path's nodes: those entered here,
    /// the others through their agents (a live cluster's), and where the
    /// source's namespace may be.
    pub fn probe_options(
        &self,
        timeout: std::time::Duration,
        size: Option<usize>,
    ) -> Result<crate::trace::probe::Options> {
        Ok(crate::trace::probe::Options {
            nodes: self.reachable(),
            remote: self
                .agents()?
                .map(|a| a.clone() as Arc<dyn crate::trace::probe::Remote>),
            pods: self.pod_namespaces(),
            timeout,
            size,
            owners: Arc::new(self.drop_owners()),
        })
    }

    /// The namespaces of the nodes this process can enter, theirs and
    /// their pods', to place the kernel's drops.
    fn drop_owners(&self) -> crate::capture::dropwatch::owners::Owners {
        let mut owners = crate::capture::dropwatch::owners::Owners::default();
        for n in self.nodes().unwrap_or_default() {
            if let Some(name) = n.name().map(str::to_string)
                && n.agent().is_none()
            {
                // A namespace gone since the nodes were listed drops nothing.
                let _ = owners.add(&name, n.as_ref());
            }
        }
        owners
    }

    /// The namespaces of the nodes this process can enter.
    fn reachable(&self) -> Vec<(String, crate::dataplane::Netns)> {
        self.nodes()
            .unwrap_or_default()
            .iter()
            .filter_map(|n| Some((n.name()?.to_string(), n.netns().ok()?)))
            .collect()
    }
}
