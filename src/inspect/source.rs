//! Where the cluster and its nodes are read from: a lab that is up, or an
//! offline bundle directory.

use std::path::PathBuf;

use crate::dataplane::NodeState;
use crate::error::{Error, Result};
use crate::lab::LabState;
use crate::model::Cluster;

use super::node::{self, lab_node_source};

/// A cluster plus the node states to check it against.
pub enum Target {
    /// A lab that is up, by name.
    Lab(String),
    /// A directory written by `collect`.
    Bundle(PathBuf),
}

impl Target {
    /// Picks the target from `--bundle` or `--lab`.
    pub fn from_flags(bundle: Option<PathBuf>, lab: &str) -> Result<Target> {
        match bundle {
            Some(dir) => Ok(Target::Bundle(dir)),
            None => {
                if LabState::load(lab)?.is_none() {
                    return Err(Error::env(
                        format!(
                            "no cluster to read: lab {lab:?} is not up and no --bundle was given"
                        ),
                        Some(format!(
                            "start the lab (`knetdoctor lab up --name {lab}`) or pass --bundle DIR from `knetdoctor collect`"
                        )),
                    ));
                }
                Ok(Target::Lab(lab.to_string()))
            }
        }
    }

    /// The cluster objects.
    pub fn cluster(&self) -> Result<Cluster> {
        match self {
            Target::Lab(name) => {
                crate::inspect::kubectl::read_dir(&LabState::require(name)?.cluster_dir())
            }
            Target::Bundle(dir) => super::bundle::read_cluster(dir),
        }
    }

    /// The names of the nodes whose state can be read.
    pub fn node_names(&self) -> Result<Vec<String>> {
        match self {
            Target::Lab(name) => Ok(LabState::require(name)?
                .topology
                .nodes
                .iter()
                .map(|n| n.name.clone())
                .collect()),
            Target::Bundle(dir) => super::bundle::node_names(dir),
        }
    }

    /// Reads the states of `only` (or every node), in parallel.
    pub fn node_states(&self, only: Option<&str>) -> Result<Vec<(String, NodeState)>> {
        let names = self.node_names()?;
        let wanted: Vec<String> = match only {
            Some(n) if names.iter().any(|x| x == n) => vec![n.to_string()],
            Some(n) => {
                let close: Vec<&str> = names
                    .iter()
                    .map(String::as_str)
                    .filter(|x| node::similar(x, n))
                    .collect();
                return Err(Error::usage(
                    format!("no node {n:?}"),
                    Some(if close.is_empty() {
                        format!("nodes: {}", names.join(", "))
                    } else {
                        format!("did you mean {}?", close.join(" or "))
                    }),
                ));
            }
            None => names,
        };
        match self {
            Target::Lab(name) => {
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
            Target::Bundle(dir) => wanted
                .into_iter()
                .map(|n| super::bundle::read_node(dir, &n).map(|s| (n, s)))
                .collect(),
        }
    }
}
