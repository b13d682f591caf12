//! A repair carried by the agent keeps the local repair's promise: what is
//! applied is exactly the plan the person saw. The client sends the steps
//! with what it saw each one replace, and a digest of both; the agent
//! recomputes what each step replaces on the node as it is now, under the
//! node's lock, and refuses when the digest no longer matches — the plan
//! was altered, or the node changed since it was shown.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::dataplane::NodeState;
use crate::error::{Error, Result};
use crate::repair::journal::Journal;
use crate::repair::plan::{Before, Step, before};

/// The body of an apply request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanSent {
    pub node: String,
    pub steps: Vec<Step>,
    /// What each step replaces, as the client read the node.
    pub before: Vec<Before>,
}

/// The body of an answer to a repair request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RepairAnswer {
    /// Applied (or stopped at a change the kernel refused: see the entries).
    Applied(Journal),
    Undone(Journal),
    History(Vec<Journal>),
}

impl PlanSent {
    /// The steps of a plan for `node`, with what they replace on `state`.
    pub fn new(node: &str, steps: &[Step], state: &NodeState) -> PlanSent {
        PlanSent {
            node: node.to_string(),
            steps: steps.to_vec(),
            before: steps.iter().map(|s| before(&s.action, state)).collect(),
        }
    }

    /// SHA-256 over the node, the steps and what they replace.
    pub fn digest(&self) -> String {
        digest_of(&self.node, &self.steps, &self.before)
    }

    /// Whether the node as it is now (`now`) is the node the plan was made
    /// for, and the plan the one `digest` names.
    pub fn verify(&self, digest: &str, now: &NodeState) -> Result<()> {
        let seen_now: Vec<Before> = self.steps.iter().map(|s| before(&s.action, now)).collect();
        if digest_of(&self.node, &self.steps, &self.before) != digest {
            return Err(Error::usage(
                "the plan sent does not match its digest; nothing was changed",
                Some("run the repair again from an unmodified client".to_string()),
            ));
        }
        if digest_of(&self.node, &self.steps, &seen_now) != digest {
            let changed = self
                .before
                .iter()
                .zip(&seen_now)
                .filter(|(a, b)| a != b)
                .count();
            return Err(Error::env(
                format!(
                    "{} changed since the plan was made ({changed} of {} planned change(s) would now replace something else); nothing was changed",
                    self.node,
                    self.steps.len()
                ),
                Some(format!(
                    "look at the new plan with `knetdoctor repair --node {}`, then apply it",
                    self.node
                )),
            ));
        }
        Ok(())
    }
}

fn digest_of(node: &str, steps: &[Step], before: &[Before]) -> String {
    // serde_json writes struct fields in declaration order: the same
    // plan gives the same bytes on the client and on the agent.
    let bytes = serde_json::to_vec(&(node, steps, before)).unwrap_or_default();
    data_encoding::HEXLOWER.encode(&Sha256::digest(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use knetdoctor_core::check::fixtures;

    /// k8s-node-12 of the seed cluster without its overlay routes.
    fn broken() -> (NodeState, Vec<Step>) {
        let (cluster, mut state) = fixtures::seed();
        state
            .routes
            .retain(|r| r.dev.as_deref() != Some("flannel.1"));
        let states = vec![("k8s-node-12".to_string(), state.clone())];
        let findings = crate::check::run(&cluster, &states);
        let plan = crate::repair::plan::plan(
            "k8s-node-12",
            &findings,
            &state,
            Default::default,
            &Default::default(),
        );
        assert!(
            !plan.steps.is_empty(),
            "the fixture needs something to repair"
        );
        (state, plan.steps)
    }

    #[test]
    fn the_node_it_was_made_for_passes() {
        let (state, steps) = broken();
        let sent = PlanSent::new("n", &steps, &state);
        sent.verify(&sent.digest(), &state).unwrap();
    }

    #[test]
    fn a_changed_node_or_an_altered_plan_is_refused() {
        let (state, steps) = broken();
        let sent = PlanSent::new("n", &steps, &state);
        let digest = sent.digest();
        // Something put a route back meanwhile, differently.
        let mut now = state.clone();
        let mut moved = now.routes[0].clone();
        moved.dst = match &steps[0].action {
            crate::check::RepairAction::RouteReplace { dst, .. } => {
                crate::dataplane::RouteDst::Net((*dst).into())
            }
            other => panic!("expected a route first, got {other:?}"),
        };
        moved.dev = Some("eth0".into());
        now.routes.push(moved);
        let e = sent.verify(&digest, &now).unwrap_err();
        assert!(
            e.to_string().contains("changed since the plan was made"),
            "{e}"
        );
        assert_eq!(e.exit_code(), 3);
        let mut altered = sent.clone();
        altered.steps.pop();
        let e = altered.verify(&digest, &state).unwrap_err();
        assert!(e.to_string().contains("does not match its digest"), "{e}");
    }
}
