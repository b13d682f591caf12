//! Which of the cluster's nodes were not read, and why: said with every
//! answer so that no one takes a node's silence for health, and so that
//! the person knows what would reach it.

use serde::{Deserialize, Serialize};

/// A node of the cluster whose dataplane was not read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotRead {
    pub node: String,
    pub why: Unreached,
}

/// Why a node was not read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum Unreached {
    /// Neither this machine nor an agent reaches it (a bundle, a lab, this
    /// host: the source has no state for it).
    OutOfReach,
    /// The cluster serves the agent's API, but no agent runs on the node.
    NoAgent,
    /// Its agent stopped renewing its presence this many seconds ago.
    AgentSilent { seconds: u64 },
    /// The cluster does not serve the agent's API at all.
    AgentNotInstalled,
    /// Its agent was asked and failed or did not answer.
    AgentFailed { error: String },
    /// The API server refused to list the agents to this identity (its
    /// message): a role that reads the cluster's objects but may not ask
    /// the agents.
    AgentsForbidden { message: String },
}

impl Unreached {
    /// What to tell the person, after the node names.
    pub fn explain(&self) -> String {
        match self {
            Unreached::OutOfReach => {
                "out of reach from here: run knetdoctor on each, or read a bundle collected there"
                    .to_string()
            }
            Unreached::NoAgent => "no knetdoctor agent runs there: is its DaemonSet's pod scheduled?".to_string(),
            Unreached::AgentSilent { seconds } => {
                format!("its agent has not renewed for {seconds} s: is its pod running?")
            }
            Unreached::AgentNotInstalled => {
                "the knetdoctor agent is not installed: `knetdoctor agent manifest | kubectl apply -f -`"
                    .to_string()
            }
            Unreached::AgentFailed { error } => format!("its agent: {error}"),
            Unreached::AgentsForbidden { message } => format!(
                "you may not ask the knetdoctor agents ({message}): the knetdoctor-viewer role (`knetdoctor agent manifest`) lets you"
            ),
        }
    }
}

/// The lines that say which nodes were not read, grouped by reason.
pub fn lines(not_read: &[NotRead]) -> Vec<String> {
    let mut groups: Vec<(&Unreached, Vec<&str>)> = Vec::new();
    for n in not_read {
        match groups.iter_mut().find(|(w, _)| *w == &n.why) {
            Some((_, names)) => names.push(&n.node),
            None => groups.push((&n.why, vec![&n.node])),
        }
    }
    groups
        .into_iter()
        .map(|(why, names)| format!("not read: {} ({})", names.join(", "), why.explain()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_are_grouped_by_reason_in_order() {
        let n = |node: &str, why: Unreached| NotRead {
            node: node.into(),
            why,
        };
        let l = lines(&[
            n("a", Unreached::NoAgent),
            n("b", Unreached::AgentSilent { seconds: 9 }),
            n("c", Unreached::NoAgent),
        ]);
        assert_eq!(l.len(), 2);
        assert!(
            l[0].starts_with("not read: a, c (no knetdoctor agent"),
            "{l:?}"
        );
        assert!(
            l[1].contains("b (its agent has not renewed for 9 s"),
            "{l:?}"
        );
        let json = serde_json::to_value(n("a", Unreached::AgentSilent { seconds: 9 })).unwrap();
        assert_eq!(json["why"]["reason"], "agent-silent");
    }
}
