//! Where the cluster and its nodes are read from: a lab that is up, an
//! offline bundle (or plain kubectl directory), or a live API server.

use std::path::PathBuf;

use crate::dataplane::NodeState;
use crate::error::{Error, Result};
use crate::lab::LabState;
use crate::model::Cluster;

use super::live::LiveSource;
use super::node::{self, lab_node_source};

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
    /// No node state: cluster-level checks only.
    None,
}

/// A cluster plus the node states to check it against.
pub struct Target {
    pub cluster: ClusterFrom,
    pub nodes: NodesFrom,
    /// A directory unpacked from a bundle tarball, removed with the target.
    _unpacked: Option<tempfile::TempDir>,
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
            let (dir, unpacked) = if super::bundle::is_tarball(&path) {
                let (tmp, dir) = super::bundle::unpack(&path)?;
                (dir, Some(tmp))
            } else {
                (path, None)
            };
            return Ok(Target {
                cluster: ClusterFrom::Bundle(dir.clone()),
                nodes: NodesFrom::Bundle(dir),
                _unpacked: unpacked,
            });
        }
        let state = LabState::load(lab)?;
        let lab_up = state.is_some();
        if let Some(live) = live {
            // Node states come from the lab only if it was published to this
            // very API server; a real cluster's nodes are not the lab's.
            let canonical =
                |p: &std::path::Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
            let published_here = state
                .as_ref()
                .and_then(|s| s.kubeconfig.as_deref())
                .zip(live.kubeconfig.as_deref())
                .is_some_and(|(a, b)| canonical(a) == canonical(b));
            return Ok(Target {
                cluster: ClusterFrom::Live(live),
                nodes: if published_here {
                    NodesFrom::Lab(lab.to_string())
                } else {
                    NodesFrom::None
                },
                _unpacked: None,
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
        })
    }

    /// The cluster objects.
    pub fn cluster(&self) -> Result<Cluster> {
        match &self.cluster {
            ClusterFrom::Lab(name) => {
                super::kubectl::read_dir(&LabState::require(name)?.cluster_dir())
            }
            ClusterFrom::Bundle(dir) => super::bundle::read_cluster(dir),
            ClusterFrom::Live(src) => super::live::load(src),
        }
    }

    /// The names of the nodes whose state can be read.
    pub fn node_names(&self) -> Result<Vec<String>> {
        match &self.nodes {
            NodesFrom::Lab(name) => Ok(LabState::require(name)?
                .topology
                .nodes
                .iter()
                .map(|n| n.name.clone())
                .collect()),
            NodesFrom::Bundle(dir) => super::bundle::node_names(dir),
            NodesFrom::None => Ok(Vec::new()),
        }
    }

    /// Reads the states of `only` (or every node), in parallel.
    pub fn node_states(&self, only: Option<&str>) -> Result<Vec<(String, NodeState)>> {
        let names = self.node_names()?;
        let wanted: Vec<String> = match only {
            Some(n) if names.iter().any(|x| x == n) => vec![n.to_string()],
            Some(n) => {
                let hint = crate::suggest::did_you_mean(n, names.iter().map(String::as_str))
                    .unwrap_or_else(|| format!("nodes: {}", names.join(", ")));
                return Err(Error::usage(format!("no node {n:?}"), Some(hint)));
            }
            None => names,
        };
        match &self.nodes {
            NodesFrom::Lab(name) => {
                let state = LabState::require(name)?;
                std::thread::scope(|s| {
                    let handles: Vec<_> = wanted
                        .iter()
                        .map(|n| {
                            let src = lab_node_source(&state, n);
                            s.spawn(move || node::read(&src).map(|st| (n.clone(), st)))
                        })
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| h.join().expect("node reader thread"))
                        .collect()
                })
            }
            NodesFrom::Bundle(dir) => wanted
                .into_iter()
                .map(|n| super::bundle::read_node(dir, &n).map(|s| (n, s)))
                .collect(),
            NodesFrom::None => Ok(Vec::new()),
        }
    }
}
