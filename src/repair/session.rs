//! A repair of one node as a typed session — plan, apply, undo, history —
//! that the command line and the dashboard drive alike: the CLI prints
//! and asks, the dashboard runs it on a worker thread; neither scrapes
//! the other's output.

use super::apply;
use super::journal::{self, Journal};
use super::plan::{Options, Plan, plan};
use crate::access::{NodeAccess, Target};
use crate::check::FindingId;
use crate::dataplane::NodeState;
use crate::error::{Error, Result};
use crate::model::{Cluster, ClusterNetwork, expect};

/// One node to repair, reached through the seam every command uses.
pub struct Session {
    target: Target,
    node: String,
    access: Box<dyn NodeAccess>,
    opts: Options,
}

/// The node read now and the plan that fixes it.
pub struct Planned {
    pub cluster: Cluster,
    pub state: NodeState,
    pub plan: Plan,
}

/// How an `apply` ended.
#[derive(Debug)]
pub enum Applied {
    /// The plan holds nothing to apply (its manual part may not be empty).
    NothingToDo(Plan),
    /// The person asked said no; nothing changed.
    Declined,
    /// A change failed: the journal says what was made and what failed.
    Failed(Journal),
    /// Every change was made; `left` are the targeted findings that the
    /// node still shows when checked again.
    Done {
        journal: Journal,
        left: Vec<FindingId>,
    },
}

impl Session {
    /// A session on `node` of `target`. Reading does not need the node's
    /// namespace; applying and undoing do, and say so when it is out of reach.
    pub fn open(target: Target, node: &str, opts: Options) -> Result<Session> {
        let access = target.node(node)?;
        Ok(Session {
            target,
            node: node.to_string(),
            access,
            opts,
        })
    }

    /// The node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Where this node's journals are, as the person reads it: a
    /// directory here, or the node's agent.
    pub fn journals_place(&self) -> Result<String> {
        if self.access.agent().is_some() {
            return Ok(format!("on {}, kept by its agent", self.node));
        }
        Ok(self.access.journal_dir()?.display().to_string())
    }

    /// Where journal `id` is, as the person reads it.
    pub fn journal_place(&self, id: &str) -> Result<String> {
        if self.access.agent().is_some() {
            return Ok(format!("{id} on {}, kept by its agent", self.node));
        }
        Ok(self
            .access
            .journal_dir()?
            .join(format!("{id}.json"))
            .display()
            .to_string())
    }

    /// Reads the cluster and the node and plans its repair.
    pub fn plan(&self) -> Result<Planned> {
        let g = self.target.gather(None)?;
        let Some(state) = g
            .states
            .iter()
            .find(|(n, _)| *n == self.node)
            .map(|(_, s)| s.clone())
        else {
            return Err(Error::env(
                format!("{} is not a node of this cluster", self.node),
                Some(
                    match crate::suggest::did_you_mean(
                        &self.node,
                        g.cluster
                            .nodes
                            .iter()
                            .filter_map(|n| n.metadata.name.as_deref()),
                    ) {
                        Some(h) => h,
                        None => "its Node object must exist for a repair to know what to put back"
                            .to_string(),
                    },
                ),
            ));
        };
        let expected = || {
            ClusterNetwork::from_cluster(&g.cluster)
                .map(|net| expect::node(&g.cluster, &self.node, &net, &state))
                .unwrap_or_default()
        };
        let found = g.findings.iter().map(|f| &**f);
        let plan = plan(&self.node, found, &state, expected, &self.opts);
        Ok(Planned {
            cluster: std::sync::Arc::unwrap_or_clone(g.cluster),
            state,
            plan,
        })
    }

    /// Applies what the node needs now: takes its lock before reading it
    /// (what the journal records is then what the repair changes), plans,
    /// lets `confirm` see the plan, reads and plans again and refuses a
    /// plan the node no longer matches, applies, and checks again.
    pub fn apply(&self, confirm: impl FnOnce(&Plan) -> bool) -> Result<Applied> {
        if let Some(agent) = self.access.agent() {
            return self.apply_through(agent, confirm);
        }
        let netns = self.access.netns()?;
        let dir = self.access.journal_dir()?;
        let lock = journal::lock(&dir)?;
        let plan = match self.shown(confirm)? {
            Ok(p) => p.plan,
            Err(ended) => return Ok(ended),
        };
        // The node as it is now: something other than a repair (flanneld, a
        // person) may have changed it while the plan was read or shown.
        let now = self.plan()?;
        if now
            .plan
            .steps
            .iter()
            .map(|s| &s.action)
            .ne(plan.steps.iter().map(|s| &s.action))
        {
            return Err(Error::env(
                format!(
                    "{} changed since the plan was made ({} action(s) planned, {} needed now); nothing was changed",
                    self.node,
                    plan.steps.len(),
                    now.plan.steps.len()
                ),
                Some(format!(
                    "look at the new plan with `knetdoctor repair --node {}`, then apply it",
                    self.node
                )),
            ));
        }
        let j = apply::apply(&netns, &self.node, &now.plan.steps, &now.state, &dir)?;
        let applied = self.checked(j, &plan, now.cluster);
        drop(lock);
        applied
    }

    /// Applies through the node's agent: the plan shown is sent with what
    /// each step replaces; the agent takes the node's Lease and lock, reads
    /// the node and refuses the plan unless it still matches.
    fn apply_through(
        &self,
        agent: &crate::agent::remote::AgentNode,
        confirm: impl FnOnce(&Plan) -> bool,
    ) -> Result<Applied> {
        let Planned {
            plan,
            state,
            cluster,
        } = match self.shown(confirm)? {
            Ok(p) => p,
            Err(ended) => return Ok(ended),
        };
        let sent = crate::agent::repair::PlanSent::new(&self.node, &plan.steps, &state);
        let j = agent.apply(&sent)?;
        self.checked(j, &plan, cluster)
    }

    /// Plans and lets `confirm` see the plan: the plan to apply, or how
    /// the repair ended before anything changed.
    fn shown(
        &self,
        confirm: impl FnOnce(&Plan) -> bool,
    ) -> Result<std::result::Result<Planned, Applied>> {
        let planned = self.plan()?;
        if planned.plan.is_empty() {
            return Ok(Err(Applied::NothingToDo(planned.plan)));
        }
        refuse_unsupported(&planned.plan)?;
        if !confirm(&planned.plan) {
            return Ok(Err(Applied::Declined));
        }
        #[cfg(debug_assertions)]
        apply::test_hook::pause("planned");
        Ok(Ok(planned))
    }

    /// A journal's outcome: failed, or done with the targeted findings the
    /// node, read again, still shows.
    fn checked(&self, j: Journal, plan: &Plan, cluster: Cluster) -> Result<Applied> {
        if j.entries.iter().any(|e| e.error.is_some()) {
            return Ok(Applied::Failed(j));
        }
        let after = self
            .target
            .gather_on(std::sync::Arc::new(cluster), Some(&self.node))?;
        let targeted: Vec<FindingId> = plan.steps.iter().map(|s| s.finding).collect();
        let mut left: Vec<FindingId> = after
            .findings
            .iter()
            .filter(|f| f.node.as_deref() == Some(self.node.as_str()) && targeted.contains(&f.id))
            .map(|f| f.id)
            .collect();
        left.dedup();
        Ok(Applied::Done { journal: j, left })
    }

    /// Puts back what repair `id` replaced, newest first, under the lock.
    pub fn undo(&self, id: &str) -> Result<Journal> {
        if let Some(agent) = self.access.agent() {
            return agent.undo(id);
        }
        let netns = self.access.netns()?;
        let dir = self.access.journal_dir()?;
        let _lock = journal::lock(&dir)?;
        apply::undo(&netns, &dir, id)
    }

    /// The node's past repairs, newest last.
    pub fn history(&self) -> Result<Vec<Journal>> {
        if let Some(agent) = self.access.agent() {
            return agent.history();
        }
        Ok(journal::history(&self.access.journal_dir()?))
    }
}

/// A plan with a step `--apply` does not make is refused before anything
/// changes.
fn refuse_unsupported(plan: &Plan) -> Result<()> {
    let unsupported: Vec<String> = plan
        .steps
        .iter()
        .filter(|s| !apply::supported(s))
        .map(|s| crate::check::text::action_line(&s.action))
        .collect();
    if unsupported.is_empty() {
        return Ok(());
    }
    Err(Error::usage(
        format!(
            "this plan has actions --apply cannot make: {}",
            unsupported.join("; ")
        ),
        Some("leave them out with --only and make them by hand".to_string()),
    ))
}
