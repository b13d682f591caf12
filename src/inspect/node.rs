//! Resolving "which node" to a network namespace and reading it.

use crate::dataplane::{Netns, NodeState, read_node_state};
use crate::error::{Error, Result};
use crate::lab::LabState;

/// Where a node's state was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSource {
    /// The node's name, when known (a lab node).
    pub node: Option<String>,
    pub netns: Netns,
}

/// Picks the namespace for `inspect node [NAME] [--netns NS]`: an explicit
/// namespace wins; a NAME is a node of lab `lab`; neither means here.
pub fn resolve_node(name: Option<&str>, netns: Option<&str>, lab: &str) -> Result<NodeSource> {
    if let Some(ns) = netns {
        return Ok(NodeSource {
            node: name.map(str::to_string),
            netns: Netns::named(ns),
        });
    }
    let Some(name) = name else {
        return Ok(NodeSource {
            node: None,
            netns: Netns::Current,
        });
    };
    let state = LabState::load(lab)?.ok_or_else(|| {
        Error::env(
            format!("no node {name:?}: lab {lab:?} is not up and no --netns was given"),
            Some(format!(
                "start the lab (`knetdoctor lab up --name {lab}`) or name a namespace with --netns"
            )),
        )
    })?;
    let node = state
        .topology
        .nodes
        .iter()
        .find(|n| n.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = state
                .topology
                .nodes
                .iter()
                .map(|n| n.name.as_str())
                .collect();
            let close: Vec<&str> = names.iter().copied().filter(|n| similar(n, name)).collect();
            Error::usage(
                format!("lab {lab:?} has no node {name:?}"),
                Some(if close.is_empty() {
                    format!("its nodes: {}", names.join(", "))
                } else {
                    format!("did you mean {}?", close.join(" or "))
                }),
            )
        })?;
    Ok(NodeSource {
        node: Some(node.name.clone()),
        netns: Netns::named(&node.netns),
    })
}

/// Close enough to suggest: one contains the other, or edit distance <= 2.
pub fn similar(a: &str, b: &str) -> bool {
    a.contains(b) || b.contains(a) || edit_distance(a, b) <= 2
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push(
                (prev[j] + usize::from(ca != *cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Reads the node's state.
pub fn read(source: &NodeSource) -> Result<NodeState> {
    read_node_state(&source.netns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names() {
        assert!(similar("k8s-node-12", "k8s-node-21"));
        assert!(similar("k8s-node-12", "node-12"));
        assert!(!similar("k8s-master-10", "k8s-node-12"));
    }
}
