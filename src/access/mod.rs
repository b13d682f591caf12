//! How knetdoctor reaches a node: one answer to "read node N, enter its
//! namespace to write, capture or probe, keep its repair journal there",
//! chosen once from the flags. A lab node, this host, a named namespace
//! and a bundle's node are the implementations today; an agent on a
//! remote node becomes one more. inspect, trace and repair take what this
//! module hands them and never ask where a node lives.

pub mod target;

use std::path::PathBuf;

pub use target::{Gathered, Target};

use crate::dataplane::{Netns, NodeState};
use crate::error::{Error, Result};
use crate::inspect::node::{self as reader, NodeSource};
use crate::lab::LabState;

/// How a node's dataplane was read: what the dashboard's overview says
/// beside its numbers, so that "healthy" is never confused with "nothing
/// was looked at".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadVia {
    /// A lab node's namespace, entered from here.
    Lab,
    /// This machine, a node of the cluster.
    ThisHost,
    /// The node's knetdoctor agent.
    Agent,
    /// A bundle collected earlier.
    Bundle,
}

impl ReadVia {
    pub fn label(self) -> &'static str {
        match self {
            ReadVia::Lab => "lab",
            ReadVia::ThisHost => "this host",
            ReadVia::Agent => "agent",
            ReadVia::Bundle => "bundle",
        }
    }
}

/// Where to read from, as the flags say: a bundle, a live API server, or
/// a lab (whose name also picks the lab a live cluster may be published from).
#[derive(Debug, Clone, Default)]
pub struct Source {
    pub bundle: Option<PathBuf>,
    pub lab: String,
    pub live: Option<crate::inspect::live::LiveSource>,
    /// Nodes reached through agents are read from the states the agents
    /// publish (the dashboard), not by asking each.
    pub published: bool,
}

impl Source {
    /// The target these flags name.
    pub fn target(&self) -> Result<Target> {
        let mut t = Target::from_flags(self.bundle.clone(), &self.lab, self.live.clone())?;
        t.published = self.published;
        Ok(t)
    }

    /// What the dashboard's title says it reads.
    pub fn describe(&self) -> String {
        match (
            &self.bundle,
            self.live.as_ref().and_then(|l| l.kubeconfig.as_ref()),
        ) {
            (Some(b), _) => format!("bundle {}", b.display()),
            (None, Some(k)) => format!("live {}", k.display()),
            _ => format!("lab {}", self.lab),
        }
    }
}

/// One node, reachable some way.
pub trait NodeAccess: Send + Sync {
    /// The node's name as the cluster knows it (`None`: a namespace read
    /// as it is, not known as a node).
    fn name(&self) -> Option<&str>;
    /// What its kernel holds now.
    fn read(&self) -> Result<NodeState>;
    /// Its state after its kernel said its tables changed, `before` being
    /// the last reading: where the kernel's tables can be read apart from
    /// what the tools read, only they are (see
    /// [`crate::inspect::node::read_kernel_tables`]).
    fn read_kernel_tables(&self, before: &NodeState) -> Result<NodeState> {
        let _ = before;
        self.read()
    }
    /// The namespace to enter to change it, capture on it or probe from
    /// it, or why this process cannot.
    fn netns(&self) -> Result<Netns>;
    /// Where its repair journals and lock live, or why it cannot be
    /// repaired from here.
    fn journal_dir(&self) -> Result<PathBuf>;
    /// The namespaces of its pods, where this process can enter them.
    fn pod_namespaces(&self) -> Vec<Netns> {
        Vec::new()
    }
    /// The agent this node is reached through, when it is: a repair then
    /// goes to the agent instead of through a namespace entered here.
    fn agent(&self) -> Option<&crate::agent::remote::AgentNode> {
        None
    }
}

/// This machine's host name: the one place it is asked. A real node's
/// kubelet registers under it unless `--hostname-override` says otherwise.
pub fn host_name() -> Option<String> {
    nix::unistd::gethostname()
        .ok()
        .map(|h| h.to_string_lossy().into_owned())
}

/// A node this process reaches by entering a network namespace: a lab
/// node's (its pods' namespaces known, journals in the lab's run
/// directory), this machine's own (containerd's pod namespaces, journals
/// under the state directory), or one given by `--netns` (not a node
/// knetdoctor repairs).
pub struct InNamespace {
    source: NodeSource,
    /// Where its repair journals live; `None`: not repairable from here.
    journals: Option<PathBuf>,
}

impl InNamespace {
    /// Node `node` of the lab whose state is `state`.
    pub fn lab_node(state: &LabState, node: &str) -> InNamespace {
        let netns = state
            .topology
            .nodes
            .iter()
            .find(|n| n.name == node)
            .map(|n| n.netns.clone())
            .unwrap_or_default();
        InNamespace {
            source: NodeSource {
                node: Some(node.to_string()),
                netns: Netns::named(netns),
                pod_netns: state
                    .topology
                    .pods_on(node)
                    .map(|p| p.netns.clone())
                    .collect(),
            },
            journals: Some(
                crate::lab::state::lab_dir(&state.topology.params.name)
                    .join("repair")
                    .join(node),
            ),
        }
    }

    /// Node `name` of lab `lab`, which must be up.
    pub fn find_lab_node(lab: &str, name: &str) -> Result<InNamespace> {
        let state = LabState::load(lab)?.ok_or_else(|| {
            Error::env(
                format!("no node {name:?}: lab {lab:?} is not up and no --netns was given"),
                Some(format!(
                    "start the lab (`knetdoctor lab up --name {lab}`) or name a namespace with --netns"
                )),
            )
        })?;
        let names: Vec<&str> = state
            .topology
            .nodes
            .iter()
            .map(|n| n.name.as_str())
            .collect();
        if !names.contains(&name) {
            let hint = crate::suggest::did_you_mean(name, names.iter().copied())
                .unwrap_or_else(|| format!("its nodes: {}", names.join(", ")));
            return Err(Error::usage(
                format!("lab {lab:?} has no node {name:?}"),
                Some(hint),
            ));
        }
        Ok(InNamespace::lab_node(&state, name))
    }

    /// This machine, as node `name` of the cluster.
    pub fn this_host(name: &str) -> InNamespace {
        InNamespace {
            source: NodeSource {
                node: Some(name.to_string()),
                netns: Netns::Current,
                pod_netns: reader::cri_namespaces(),
            },
            journals: Some(crate::repair::journal::journal_dir(name)),
        }
    }

    /// This machine as node `name`, its pods in the namespaces named
    /// `pod_netns` (none named: containerd's): how the agent reads the
    /// node it runs on.
    pub fn this_host_with(name: &str, pod_netns: Vec<String>) -> InNamespace {
        let mut node = InNamespace::this_host(name);
        if !pod_netns.is_empty() {
            node.source.pod_netns = pod_netns;
        }
        node
    }

    /// A namespace given by name or path, or the current one when nothing
    /// names a node: read and entered as it is.
    pub fn given(name: Option<&str>, netns: Netns) -> InNamespace {
        let pod_netns = if netns == Netns::Current {
            reader::cri_namespaces()
        } else {
            Vec::new()
        };
        InNamespace {
            source: NodeSource {
                node: name.map(str::to_string),
                netns,
                pod_netns,
            },
            journals: None,
        }
    }
}

impl NodeAccess for InNamespace {
    fn name(&self) -> Option<&str> {
        self.source.node.as_deref()
    }
    fn read(&self) -> Result<NodeState> {
        reader::read(&self.source)
    }
    fn read_kernel_tables(&self, before: &NodeState) -> Result<NodeState> {
        reader::read_kernel_tables(&self.source, before)
    }
    fn netns(&self) -> Result<Netns> {
        Ok(self.source.netns.clone())
    }
    fn pod_namespaces(&self) -> Vec<Netns> {
        self.source.pod_netns.iter().map(Netns::named).collect()
    }
    fn journal_dir(&self) -> Result<PathBuf> {
        self.journals.clone().ok_or_else(|| {
            Error::usage(
                format!(
                    "{} is not a node knetdoctor can repair",
                    self.source.netns.display_name()
                ),
                Some("repair a lab node, or the node this runs on (--node its name)".to_string()),
            )
        })
    }
}

/// A node as an offline bundle recorded it: read only.
pub struct BundleNode {
    dir: PathBuf,
    name: String,
}

impl BundleNode {
    pub fn new(dir: PathBuf, name: String) -> BundleNode {
        BundleNode { dir, name }
    }
}

impl NodeAccess for BundleNode {
    fn name(&self) -> Option<&str> {
        Some(&self.name)
    }
    fn read(&self) -> Result<NodeState> {
        crate::inspect::bundle::read_node(&self.dir, &self.name)
    }
    fn netns(&self) -> Result<Netns> {
        Err(Error::env(
            format!(
                "{} is recorded in a bundle: there is no namespace to enter",
                self.name
            ),
            Some(format!("run knetdoctor on {} itself", self.name)),
        ))
    }
    fn journal_dir(&self) -> Result<PathBuf> {
        self.netns().map(|_| PathBuf::new())
    }
}

/// The node `name` names for `inspect node` and `capture`: an explicit
/// namespace wins; else a node of lab `lab` when it is up; else this
/// machine when `name` is its host name; no name: the current namespace.
pub fn resolve(name: Option<&str>, netns: Option<&str>, lab: &str) -> Result<Box<dyn NodeAccess>> {
    if let Some(ns) = netns {
        let netns = if ns.contains('/') {
            Netns::Path(ns.into())
        } else {
            Netns::named(ns)
        };
        return Ok(Box::new(InNamespace::given(name, netns)));
    }
    let Some(name) = name else {
        return Ok(Box::new(InNamespace::given(None, Netns::Current)));
    };
    match InNamespace::find_lab_node(lab, name) {
        Ok(node) => Ok(Box::new(node)),
        Err(_) if host_name().as_deref() == Some(name) && LabState::load(lab)?.is_none() => {
            Ok(Box::new(InNamespace::this_host(name)))
        }
        Err(e) => Err(e),
    }
}
